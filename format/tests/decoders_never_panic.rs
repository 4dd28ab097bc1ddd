//! Property tests for every decoder of untrusted bytes in the format crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use sealcam_format::{
    Closing, ConsumerSecretKey, DeclaredGap, DeviceVerifyingKey, FragmentSealer, Frame, GapReason,
    KeyId, Manifest, ManifestHash, Name, SealedFragment, SignedManifest, TrackConfig, WrappedKey,
};

fn name() -> impl Strategy<Value = Name> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
        .prop_map(|s| Name::new(&s).expect("strategy yields valid names"))
}

fn gap() -> impl Strategy<Value = DeclaredGap> {
    (
        1u8..=7,
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
                    GapReason::SpoolWriteFailed,
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
        (
            prop::sample::select(sealcam_format::suite::KNOWN_SUITES.to_vec()),
            any::<[u8; 32]>(),
        ),
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
                (suite, sha),
                recips,
                recipient_set_version,
                gaps,
            )| Manifest {
                version: 1,
                suite,
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
                payload_hash: sha,
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
    fn fragment_parser_never_panics_on_mutated_fragments(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (file, key) = sealed();
        let mut bytes = file.clone();
        for (at, v) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(f) = SealedFragment::parse(&bytes) {
            let _ = f.records();
            // Any change that parses is still caught by verification.
            if bytes != file {
                prop_assert!(f.verify(&key).is_err() || f.records().is_err());
            }
        }
    }

    #[test]
    fn any_single_byte_change_is_detected(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (file, key) = sealed();
        let mut bytes = file.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        let accepted = SealedFragment::parse(&bytes)
            .map(|f| f.verify(&key).is_ok() && f.records().is_ok())
            .unwrap_or(false);
        prop_assert!(!accepted, "change at byte {} accepted", i);
    }

    #[test]
    fn seal_then_open_round_trips(
        frames in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..3000), any::<bool>()), 1..8),
        pad in any::<bool>(),
    ) {
        let mut rng = rand::thread_rng();
        let consumer = ConsumerSecretKey::generate(&mut rng);
        let mut s = FragmentSealer::new(Name::new("cam").unwrap(), Name::new("s").unwrap(), 5, &track(), &mut rng).unwrap();
        s.pad_frames(pad);
        let input: Vec<Frame> = frames
            .iter()
            .enumerate()
            .map(|(i, (data, key))| Frame { pts_ns: i as u64 * 10, duration_ns: 10, key_frame: i == 0 || *key, data: data.clone() })
            .collect();
        for f in &input {
            s.push_frame(f).unwrap();
        }
        let u = s.finish(Closing::simple(ManifestHash::GENESIS, 1, 2, &[consumer.public().clone()]), &mut rng).unwrap();
        let file = u.into_file(&[1u8; 64]);
        let opened = SealedFragment::parse(&file).unwrap().open(&consumer).unwrap();
        prop_assert_eq!(opened.frames, input);
        prop_assert_eq!(opened.track, track());
    }
}

fn track() -> TrackConfig {
    TrackConfig {
        codec: 1,
        width: 64,
        height: 48,
        framerate_num: 30,
        framerate_den: 1,
        codec_private: vec![1, 2, 3, 4],
    }
}

/// One real sealed fragment and its device key, made once.
fn sealed() -> (Vec<u8>, DeviceVerifyingKey) {
    use p256::ecdsa::signature::Signer;
    static FILE: std::sync::OnceLock<(Vec<u8>, DeviceVerifyingKey)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let consumer = ConsumerSecretKey::generate(&mut rng);
        let mut s = FragmentSealer::new(
            Name::new("cam").unwrap(),
            Name::new("s").unwrap(),
            1,
            &track(),
            &mut rng,
        )
        .unwrap();
        for i in 0..4u64 {
            s.push_frame(&Frame {
                pts_ns: i,
                duration_ns: 1,
                key_frame: i == 0,
                data: vec![i as u8; 40],
            })
            .unwrap();
        }
        let u = s
            .finish(
                Closing::simple(ManifestHash::GENESIS, 1, 2, &[consumer.public().clone()]),
                &mut rng,
            )
            .unwrap();
        let sig: p256::ecdsa::Signature = dk.sign(&u.signing_message());
        (
            u.into_file(&sig.to_bytes().into()),
            DeviceVerifyingKey(*dk.verifying_key()),
        )
    })
    .clone()
}

proptest! {
    #[test]
    fn split_then_join_gives_back_the_same_bytes(cut in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (file, key) = sealed();
        let f = SealedFragment::parse(&file).unwrap();
        let signed = f.signed_manifest();
        let m = SignedManifest::parse(&signed).unwrap();
        prop_assert!(m.verify(&key).is_ok());
        prop_assert_eq!(m.manifest_hash(), f.manifest_hash());
        prop_assert_eq!(sealcam_format::fragment::join(&signed, f.payload).unwrap(), file.clone());
        // The head served before a streamed payload is what join puts there.
        let head = sealcam_format::fragment::head(&signed, f.payload.len()).unwrap();
        prop_assert_eq!(&file[..head.len()], &head[..]);
        prop_assert_eq!(&file[head.len()..], f.payload);
        // A changed key object never joins into a fragment that verifies.
        let mut bad = signed.clone();
        let i = cut.index(bad.len());
        bad[i] ^= flip;
        let accepted = sealcam_format::fragment::join(&bad, f.payload)
            .ok()
            .and_then(|b| SealedFragment::parse(&b).ok().map(|g| g.verify(&key).is_ok()))
            .unwrap_or(false);
        prop_assert!(!accepted);
    }

    #[test]
    fn a_streamed_upload_joins_into_the_same_fragment_and_a_changed_one_never_verifies(
        cut in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        use sealcam_format::fragment::{join_streamed, split_streamed, streamed_tail};
        let (file, key) = sealed();
        let f = SealedFragment::parse(&file).unwrap();
        let mut body = f.payload.to_vec();
        body.extend_from_slice(&streamed_tail(&f.signed_manifest()));
        prop_assert_eq!(join_streamed(&body).unwrap(), file.clone());
        let (signed, payload) = split_streamed(&body).unwrap();
        let expected = f.signed_manifest();
        prop_assert_eq!(signed, expected.as_slice());
        prop_assert_eq!(payload, f.payload);
        let i = cut.index(body.len());
        body[i] ^= flip;
        let accepted = join_streamed(&body)
            .ok()
            .and_then(|b| SealedFragment::parse(&b).ok().map(|g| g.verify(&key).is_ok()))
            .unwrap_or(false);
        prop_assert!(!accepted);
    }

    #[test]
    fn streamed_upload_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = sealcam_format::fragment::join_streamed(&bytes);
        let _ = SealedFragment::parse_streamed(&bytes);
    }

    /// Parsing a streamed upload where it lies accepts exactly what joining
    /// it into a fragment file and parsing that accepts, with the same
    /// result, however the upload was changed or cut.
    #[test]
    fn a_streamed_upload_parsed_in_place_is_the_joined_fragment(
        at in any::<prop::sample::Index>(),
        flip in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        shorten in any::<bool>(),
    ) {
        use sealcam_format::fragment::{join_streamed, streamed_tail};
        let (file, _) = sealed();
        let f = SealedFragment::parse(&file).unwrap();
        let mut body = f.payload.to_vec();
        body.extend_from_slice(&streamed_tail(&f.signed_manifest()));
        let i = at.index(body.len());
        body[i] ^= flip;
        if shorten {
            body.truncate(cut.index(body.len()));
        }
        let joined = join_streamed(&body);
        let in_place = SealedFragment::parse_streamed(&body);
        match (&joined, &in_place) {
            (Ok(file), Ok(g)) => {
                let j = SealedFragment::parse(file).unwrap();
                prop_assert_eq!(j.manifest_body, g.manifest_body);
                prop_assert_eq!(j.signature, g.signature);
                prop_assert_eq!(j.payload, g.payload);
                prop_assert_eq!(j.manifest_hash(), g.manifest_hash());
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "join: {:?}, in place: {:?}", joined.is_ok(), in_place.is_ok()),
        }
    }

    #[test]
    fn signed_manifest_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = SignedManifest::parse(&bytes);
    }

    #[test]
    fn recipient_set_parser_never_panics(tail in prop::collection::vec(any::<u8>(), 0..800)) {
        let mut bytes = sealcam_format::recipients::MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = sealcam_format::recipients::SignedRecipientSet::parse(&bytes);
        let _ = sealcam_format::recipients::SignedRecipientSet::parse(&tail);
    }
}
