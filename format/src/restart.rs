//! Chain restarts: the camera's signed statement that a stream's manifest
//! chain begins again (a new *epoch*), because the camera lost the state
//! that continues it (its spool and chain state are gone: a replaced SD
//! card, a re-flash, a failed disk) or because its operator started one
//! after the ingest refused the chain the camera had.
//!
//! The record names the previous epoch's last fragment (sequence and
//! manifest hash) when the camera knows it, and says "unknown" when it does
//! not. The new epoch's first fragment names the record's [`RestartHash`]
//! as its `prev`, so the record and the epoch are bound both ways: a record
//! replayed elsewhere, or one the server made up, does not begin any chain.
//!
//! ```text
//! restart    magic "\x89SCR\r\n\x1a\n" | body_len u32 | body | signature [64]
//! body       format u16 = 1 | device str16 | stream str16 | epoch u64
//!            | first_sequence u64 | previous u8 (0 unknown, 1 known)
//!            [ | previous_sequence u64 | previous_hash [32] ]   (when known)
//!            | reason u8 | signed_at_unix_ns u64
//! signature  ECDSA P-256 / SHA-256 (r || s) by the device key over
//!            "sealcam restart v1\0" || body
//! hash       SHA-256("sealcam restart v1\0" || body): the `prev` of the
//!            epoch's first fragment
//! ```
//!
//! `epoch` is the camera's count of its epochs for the stream, where it
//! knows it (0: unknown, the count was lost with the state). A record is
//! only as good as the key that signed it: a verifier checks it under the
//! key the owner's roster lists for the device at `signed_at`, exactly as a
//! manifest.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::keys::DeviceVerifier;
use crate::manifest::ManifestHash;
use crate::name::Name;
use crate::{FormatError, SealError};

/// The first bytes of every signed restart record.
pub const MAGIC: &[u8; 8] = b"\x89SCR\r\n\x1a\n";
/// What the device's signature (and the record's hash) covers before the body.
pub const SIGNING_CONTEXT: &[u8] = b"sealcam restart v1\0";
const FORMAT: u16 = 1;
/// Bodies are small; anything larger is not a restart record.
const MAX_BODY: usize = 1024;

/// Why a chain begins again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartReason {
    /// The camera found no chain state (no state file, an empty spool)
    /// while it had recorded this stream before.
    LostState = 1,
    /// The camera's operator began a new epoch (`sealcamd spool
    /// new-epoch`), typically after the ingest refused the camera's chain.
    Operator = 2,
}

impl RestartReason {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::LostState),
            2 => Some(Self::Operator),
            _ => None,
        }
    }

    /// For reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::LostState => "the camera lost its state",
            Self::Operator => "the camera's operator began a new epoch",
        }
    }
}

/// The previous epoch's last fragment, as the camera states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviousEnd {
    pub sequence: u64,
    pub hash: ManifestHash,
}

/// What the camera states about a new epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub device: Name,
    pub stream: Name,
    /// The camera's count of its epochs for the stream (0: unknown).
    pub epoch: u64,
    /// The sequence number of the epoch's first fragment.
    pub first_sequence: u64,
    /// The previous epoch's last fragment, where the camera knows it.
    pub previous: Option<PreviousEnd>,
    pub reason: RestartReason,
    pub signed_at_unix_ns: u64,
}

/// SHA-256 over the signing context and a restart record's body: the
/// `prev` the epoch's first fragment names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestartHash(pub ManifestHash);

impl fmt::Display for RestartHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for RestartHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RestartHash({})", self.0)
    }
}

/// A restart record as received: the body's bytes and the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRestart {
    pub restart: Restart,
    body: Vec<u8>,
    signature: [u8; 64],
}

impl Restart {
    /// The canonical body (what is signed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.put_u16(FORMAT);
        out.put_bytes16(self.device.as_str().as_bytes());
        out.put_bytes16(self.stream.as_str().as_bytes());
        out.put_u64(self.epoch);
        out.put_u64(self.first_sequence);
        match self.previous {
            None => out.put_u8(0),
            Some(p) => {
                out.put_u8(1);
                out.put_u64(p.sequence);
                out.extend_from_slice(&p.hash.0);
            }
        }
        out.put_u8(self.reason as u8);
        out.put_u64(self.signed_at_unix_ns);
        out
    }

    /// The exact bytes the device signs.
    pub fn signing_message(&self) -> Vec<u8> {
        [SIGNING_CONTEXT, &self.encode()].concat()
    }

    /// The hash the epoch's first fragment names as its `prev`.
    pub fn hash(&self) -> RestartHash {
        RestartHash(ManifestHash(Sha256::digest(self.signing_message()).into()))
    }

    /// The record with its signature (see [`Restart::signing_message`]),
    /// as sent and stored.
    pub fn to_signed(&self, signature: &[u8; 64]) -> Vec<u8> {
        let body = self.encode();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + body.len() + 64);
        out.extend_from_slice(MAGIC);
        out.put_u32(body.len() as u32);
        out.extend_from_slice(&body);
        out.extend_from_slice(signature);
        out
    }

    fn decode(body: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(body, "restart record");
        let format = r.u16()?;
        if format != FORMAT {
            return Err(FormatError::UnsupportedVersion(format));
        }
        let device = name(&mut r, "device")?;
        let stream = name(&mut r, "stream")?;
        let epoch = r.u64()?;
        let first_sequence = r.u64()?;
        let offset = r.position();
        let previous = match r.u8()? {
            0 => None,
            1 => Some(PreviousEnd {
                sequence: r.u64()?,
                hash: ManifestHash(r.array()?),
            }),
            v => return Err(invalid(offset, format!("previous flag {v} is not 0 or 1"))),
        };
        if previous.is_some_and(|p| p.sequence >= first_sequence) {
            return Err(invalid(
                offset,
                "the previous epoch ends at or after the new epoch's first sequence".into(),
            ));
        }
        let offset = r.position();
        let reason = RestartReason::from_u8(r.u8()?)
            .ok_or_else(|| invalid(offset, "unknown restart reason".into()))?;
        let signed_at_unix_ns = r.u64()?;
        r.finish()?;
        Ok(Self {
            device,
            stream,
            epoch,
            first_sequence,
            previous,
            reason,
            signed_at_unix_ns,
        })
    }
}

fn invalid(offset: usize, reason: String) -> FormatError {
    FormatError::Invalid {
        what: "restart record",
        offset,
        reason,
    }
}

fn name(r: &mut Reader<'_>, field: &'static str) -> Result<Name, FormatError> {
    let offset = r.position();
    let s = r.str16()?;
    Name::new(s).map_err(|e| invalid(offset, format!("{field} name: {e}")))
}

impl SignedRestart {
    /// Parses a signed restart record. The signature is not checked: see
    /// [`SignedRestart::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "restart record");
        if r.array::<8>()? != *MAGIC {
            return Err(FormatError::BadMagic { expected: MAGIC });
        }
        let offset = r.position();
        let len = r.u32()? as usize;
        if len > MAX_BODY {
            return Err(invalid(
                offset,
                format!("body length {len} exceeds {MAX_BODY}"),
            ));
        }
        let body = r.take(len)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        let restart = Restart::decode(&body)?;
        Ok(Self {
            restart,
            body,
            signature,
        })
    }

    /// The hash of the record as received (the body's, see [`Restart::hash`]).
    pub fn hash(&self) -> RestartHash {
        let mut h = Sha256::new();
        h.update(SIGNING_CONTEXT);
        h.update(&self.body);
        RestartHash(ManifestHash(h.finalize().into()))
    }

    /// The record, once its signature verifies under `key`.
    pub fn verify(&self, key: &DeviceVerifier) -> Result<&Restart, SealError> {
        key.verify(&[SIGNING_CONTEXT, &self.body].concat(), &self.signature)?;
        Ok(&self.restart)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use p256::ecdsa::signature::Signer;
    use proptest::prelude::*;

    use super::*;
    use crate::keys::DeviceVerifyingKey;

    fn key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[seed.max(1); 32]).unwrap()
    }

    fn verifier(k: &p256::ecdsa::SigningKey) -> DeviceVerifier {
        DeviceVerifyingKey::from_sec1(k.verifying_key().to_encoded_point(false).as_bytes())
            .unwrap()
            .verifier()
            .unwrap()
    }

    fn restart(previous: Option<PreviousEnd>) -> Restart {
        Restart {
            device: Name::new("cam1").unwrap(),
            stream: Name::new("front").unwrap(),
            epoch: 2,
            first_sequence: 1 << 40,
            previous,
            reason: RestartReason::LostState,
            signed_at_unix_ns: 2_000,
        }
    }

    fn sign(r: &Restart, k: &p256::ecdsa::SigningKey) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = k.sign(&r.signing_message());
        r.to_signed(&sig.to_bytes().into())
    }

    #[test]
    fn a_record_round_trips_and_verifies_only_under_its_key() {
        let k = key(1);
        for previous in [
            None,
            Some(PreviousEnd {
                sequence: 41,
                hash: ManifestHash([9; 32]),
            }),
        ] {
            let r = restart(previous);
            let parsed = SignedRestart::parse(&sign(&r, &k)).unwrap();
            assert_eq!(parsed.verify(&verifier(&k)).unwrap(), &r);
            assert_eq!(parsed.hash(), r.hash());
            let e = parsed.verify(&verifier(&key(2))).unwrap_err();
            assert!(matches!(e, SealError::BadSignature), "{e}");
        }
    }

    #[test]
    fn a_changed_byte_fails_to_parse_or_to_verify() {
        let k = key(1);
        let bytes = sign(&restart(None), &k);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = SignedRestart::parse(&b).is_ok_and(|h| h.verify(&verifier(&k)).is_ok());
            assert!(!ok, "byte {i} changed and the record still verified");
        }
    }

    #[test]
    fn the_hash_is_not_a_manifest_hash_of_the_same_body() {
        let r = restart(None);
        assert_ne!(r.hash().0, ManifestHash::of_body(&r.encode()));
    }

    #[test]
    fn the_signature_is_bound_to_the_restart_context() {
        let k = key(1);
        let r = restart(None);
        let sig: p256::ecdsa::Signature =
            k.sign(&[crate::head::SIGNING_CONTEXT, &r.encode()].concat());
        let forged = r.to_signed(&sig.to_bytes().into());
        assert!(SignedRestart::parse(&forged)
            .unwrap()
            .verify(&verifier(&k))
            .is_err());
    }

    #[test]
    fn a_previous_end_past_the_first_sequence_is_refused() {
        let r = Restart {
            first_sequence: 5,
            ..restart(Some(PreviousEnd {
                sequence: 5,
                hash: ManifestHash::GENESIS,
            }))
        };
        let e = SignedRestart::parse(&r.to_signed(&[0; 64])).unwrap_err();
        assert!(e.to_string().contains("at or after"), "{e}");
    }

    #[test]
    fn oversized_and_foreign_input_is_refused_with_its_reason() {
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&(MAX_BODY as u32 + 1).to_be_bytes());
        let e = SignedRestart::parse(&big).unwrap_err();
        assert!(e.to_string().contains("exceeds 1024"), "{e}");
        let e = SignedRestart::parse(crate::head::MAGIC).unwrap_err();
        assert!(matches!(e, FormatError::BadMagic { .. }), "{e}");
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            epoch in any::<u64>(),
            first in 1..u64::MAX,
            prev in proptest::option::of((any::<u64>(), any::<[u8; 32]>())),
            operator in any::<bool>(),
            at in any::<u64>(),
        ) {
            let r = Restart {
                epoch,
                first_sequence: first,
                previous: prev.map(|(s, h)| PreviousEnd { sequence: s % first, hash: ManifestHash(h) }),
                reason: if operator { RestartReason::Operator } else { RestartReason::LostState },
                signed_at_unix_ns: at,
                ..restart(None)
            };
            let parsed = SignedRestart::parse(&r.to_signed(&[0; 64])).unwrap();
            prop_assert_eq!(parsed.hash(), r.hash());
            prop_assert_eq!(parsed.restart, r);
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedRestart::parse(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            framed.extend_from_slice(&bytes);
            let _ = SignedRestart::parse(&framed);
        }
    }
}
