//! Property tests for every decoder of untrusted bytes in the format crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use sealcam_format::{
    DeclaredGap, GapReason, KeyId, Manifest, ManifestHash, Name, SealedFragment, WrappedKey,
};

fn name() -> impl Strategy<Value = Name> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
        .prop_map(|s| Name::new(&s).expect("strategy yields valid names"))
}

fn gap() -> impl Strategy<Value = DeclaredGap> {
    (
        1u8..=6,
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        0u64..1_000_000,
    )
        .prop_map(
            |(reason, first_sequence, sequence_count, start, len)| DeclaredGap {
                reason: [
                    GapReason::Restart,
                    GapReason::Crash,
                    GapReason::SpoolEvicted,
                    GapReason::SourceStalled,
                    GapReason::ClockJump,
                    GapReason::RefusedByIngest,
                ][usize::from(reason - 1)],
                first_sequence,
                sequence_count,
                start_unix_ns: start,
                end_unix_ns: start.saturating_add(len),
            },
        )
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        name(),
        name(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        0u64..1_000_000,
        any::<u32>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        prop::collection::vec(
            (
                any::<[u8; 8]>(),
                prop::collection::vec(any::<u8>(), 0..70),
                prop::collection::vec(any::<u8>(), 0..50),
            ),
            1..4,
        ),
        any::<u64>(),
        prop::collection::vec(gap(), 0..4),
    )
        .prop_map(
            |(
                device,
                stream,
                sequence,
                prev,
                start,
                len,
                frame_count,
                payload_len,
                sha,
                recips,
                recipient_set_version,
                gaps,
            )| Manifest {
                version: 1,
                suite: 1,
                recipient_set_version,
                gaps,
                device,
                stream,
                sequence,
                prev: ManifestHash(prev),
                start_unix_ns: start,
                end_unix_ns: start.saturating_add(len),
                frame_count,
                payload_len,
                payload_sha256: sha,
                recipients: recips
                    .into_iter()
                    .map(|(id, enc, ciphertext)| WrappedKey {
                        recipient: KeyId(id),
                        enc,
                        ciphertext,
                    })
                    .collect(),
            },
        )
}

proptest! {
    #[test]
    fn manifest_round_trips(m in manifest()) {
        let body = m.encode();
        prop_assert_eq!(Manifest::decode(&body).unwrap(), m);
    }

    #[test]
    fn manifest_decoder_never_panics_and_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        // Whatever decodes re-encodes to the same bytes: one encoding per manifest.
        if let Ok(m) = Manifest::decode(&bytes) {
            prop_assert_eq!(m.encode(), bytes);
        }
    }

    #[test]
    fn truncated_manifests_are_refused(m in manifest(), cut in 1usize..40) {
        let body = m.encode();
        let cut = cut.min(body.len());
        prop_assert!(Manifest::decode(&body[..body.len() - cut]).is_err());
    }

    #[test]
    fn fragment_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(f) = SealedFragment::parse(&bytes) {
            let _ = f.records();
        }
    }

    #[test]
    fn fragment_parser_never_panics_behind_valid_magic(tail in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = sealcam_format::fragment::MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(f) = SealedFragment::parse(&bytes) {
            let _ = f.records();
        }
    }
}

proptest! {
    #[test]
    fn recipient_set_parser_never_panics(tail in prop::collection::vec(any::<u8>(), 0..800)) {
        let mut bytes = sealcam_format::recipients::MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = sealcam_format::recipients::SignedRecipientSet::parse(&bytes);
        let _ = sealcam_format::recipients::SignedRecipientSet::parse(&tail);
    }
}
