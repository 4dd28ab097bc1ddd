//! Signed heads: the camera's own statement, at a fixed interval, of the
//! newest fragment it has sealed for a stream (its sequence, manifest hash
//! and end time) and of when it said so.
//!
//! A fragment proves itself, but nothing in a set of fragments proves that
//! no newer one exists: a server can withhold the tail of a stream, or
//! freeze a live view on the last fragment it chose to show. A head closes
//! that: the camera signs one every few seconds whether or not its uploads
//! get through, so a verifier that holds a head naming sequence 500 knows
//! fragments up to 500 exist, and one whose newest head is minutes old
//! knows it is not seeing the present (the camera is offline, or the
//! server holds its heads back; the report says which evidence points
//! where).
//!
//! ```text
//! head       magic "\x89SCH\r\n\x1a\n" | body_len u32 | body | signature [64]
//! body       format u16 = 1 | device str16 | stream str16 | sequence u64
//!            | manifest_hash [32] | fragment_end_unix_ns u64 | signed_at_unix_ns u64
//! signature  ECDSA P-256 / SHA-256 (r || s) by the device key over
//!            "sealcam head v1\0" || body
//! ```
//!
//! A head is only as good as the key that signed it: a verifier checks it
//! under the key the owner's roster lists for the device at `signed_at`,
//! exactly as a manifest.

use crate::codec::{Reader, Writer};
use crate::keys::DeviceVerifier;
use crate::manifest::ManifestHash;
use crate::name::Name;
use crate::verify::{DeviceKeys, KeyUsed};
use crate::{FormatError, SealError};

/// The first bytes of every signed head.
pub const MAGIC: &[u8; 8] = b"\x89SCH\r\n\x1a\n";
/// What the device's signature covers before the body.
pub const SIGNING_CONTEXT: &[u8] = b"sealcam head v1\0";
const FORMAT: u16 = 1;
/// Bodies are small; anything larger is not a head.
const MAX_BODY: usize = 1024;

/// The newest fragment a camera has sealed for a stream, as it states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub device: Name,
    pub stream: Name,
    /// The newest sealed fragment's sequence number.
    pub sequence: u64,
    /// Its manifest hash: a verifier that holds the fragment can tell it is
    /// the one the head names.
    pub manifest_hash: ManifestHash,
    /// Its wall-clock end.
    pub fragment_end_unix_ns: u64,
    /// When the camera signed this statement.
    pub signed_at_unix_ns: u64,
}

/// A head as received: the body's bytes and the signature over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub head: Head,
    body: Vec<u8>,
    signature: [u8; 64],
}

impl Head {
    /// The canonical body (what is signed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.put_u16(FORMAT);
        out.put_bytes16(self.device.as_str().as_bytes());
        out.put_bytes16(self.stream.as_str().as_bytes());
        out.put_u64(self.sequence);
        out.extend_from_slice(&self.manifest_hash.0);
        out.put_u64(self.fragment_end_unix_ns);
        out.put_u64(self.signed_at_unix_ns);
        out
    }

    /// The exact bytes the device signs.
    pub fn signing_message(&self) -> Vec<u8> {
        [SIGNING_CONTEXT, &self.encode()].concat()
    }

    /// The head with its signature (see [`Head::signing_message`]), as
    /// sent and stored.
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
        let mut r = Reader::new(body, "head");
        let format = r.u16()?;
        if format != FORMAT {
            return Err(FormatError::UnsupportedVersion(format));
        }
        let device = name(&mut r, "device")?;
        let stream = name(&mut r, "stream")?;
        let head = Self {
            device,
            stream,
            sequence: r.u64()?,
            manifest_hash: ManifestHash(r.array()?),
            fragment_end_unix_ns: r.u64()?,
            signed_at_unix_ns: r.u64()?,
        };
        r.finish()?;
        Ok(head)
    }
}

fn name(r: &mut Reader<'_>, field: &'static str) -> Result<Name, FormatError> {
    let offset = r.position();
    let s = r.str16()?;
    Name::new(s).map_err(|e| FormatError::Invalid {
        what: "head",
        offset,
        reason: format!("{field} name: {e}"),
    })
}

impl SignedHead {
    /// Parses a signed head. The signature is not checked: see
    /// [`SignedHead::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "head");
        if r.array::<8>()? != *MAGIC {
            return Err(FormatError::BadMagic { expected: MAGIC });
        }
        let offset = r.position();
        let len = r.u32()? as usize;
        if len > MAX_BODY {
            return Err(FormatError::Invalid {
                what: "head",
                offset,
                reason: format!("body length {len} exceeds {MAX_BODY}"),
            });
        }
        let body = r.take(len)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        let head = Head::decode(&body)?;
        Ok(Self {
            head,
            body,
            signature,
        })
    }

    /// The head, once its signature verifies under `key`.
    pub fn verify(&self, key: &DeviceVerifier) -> Result<&Head, SealError> {
        key.verify(&[SIGNING_CONTEXT, &self.body].concat(), &self.signature)?;
        Ok(&self.head)
    }

    /// Checks the signature under the key `keys` gives for the head's
    /// device at its `signed_at`, as a manifest is checked: with a roster,
    /// every key the roster lists for the device at that instant is tried.
    /// Returns the key that verified, or why none did.
    pub fn verify_with(&self, keys: DeviceKeys<'_>) -> Result<KeyUsed, String> {
        let h = &self.head;
        keys.check_signed_at(
            &h.device,
            h.signed_at_unix_ns,
            "when the head was signed",
            |v| self.verify(v).map(|_| ()).map_err(|e| e.to_string()),
        )
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

    fn head(sequence: u64) -> Head {
        Head {
            device: Name::new("cam1").unwrap(),
            stream: Name::new("front").unwrap(),
            sequence,
            manifest_hash: ManifestHash([7; 32]),
            fragment_end_unix_ns: 1_000,
            signed_at_unix_ns: 2_000,
        }
    }

    fn sign(h: &Head, k: &p256::ecdsa::SigningKey) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = k.sign(&h.signing_message());
        h.to_signed(&sig.to_bytes().into())
    }

    #[test]
    fn a_head_round_trips_and_verifies_only_under_its_key() {
        let k = key(1);
        let bytes = sign(&head(42), &k);
        let parsed = SignedHead::parse(&bytes).unwrap();
        assert_eq!(parsed.verify(&verifier(&k)).unwrap(), &head(42));
        let other = parsed.verify(&verifier(&key(2))).unwrap_err();
        assert!(matches!(other, SealError::BadSignature), "{other}");
    }

    #[test]
    fn a_head_verifies_only_under_a_key_the_roster_lists_at_its_time() {
        use crate::roster::{DeviceRoster, EndReason, KeyEnd, KeyOrigin, KeyRecord};
        let (k, other) = (key(1), key(2));
        let record = |k: &p256::ecdsa::SigningKey, device: &str, end: Option<u64>| KeyRecord {
            device: Name::new(device).unwrap(),
            key: DeviceVerifyingKey(*k.verifying_key()),
            valid_from_unix_ns: 0,
            end: end.map(|at_unix_ns| KeyEnd {
                at_unix_ns,
                reason: EndReason::Revoked,
            }),
            origin: KeyOrigin::Software,
        };
        let roster = |keys| DeviceRoster {
            version: 1,
            issued_unix: 0,
            keys,
        };
        let signed = SignedHead::parse(&sign(&head(3), &k)).unwrap();
        let ok = roster(vec![record(&other, "cam1", None), record(&k, "cam1", None)]);
        let used = signed.verify_with(DeviceKeys::Roster(&ok)).unwrap();
        assert_eq!(used.record.unwrap().index, 1);
        // Listed for another device, or revoked before the head's time.
        for r in [
            roster(vec![record(&k, "cam2", None)]),
            roster(vec![record(&k, "cam1", Some(2_000))]),
            roster(vec![record(&other, "cam1", None)]),
        ] {
            assert!(signed.verify_with(DeviceKeys::Roster(&r)).is_err());
        }
    }

    #[test]
    fn a_changed_byte_fails_to_parse_or_to_verify() {
        let k = key(1);
        let bytes = sign(&head(42), &k);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = SignedHead::parse(&b).is_ok_and(|h| h.verify(&verifier(&k)).is_ok());
            assert!(!ok, "byte {i} changed and the head still verified");
        }
    }

    #[test]
    fn the_signature_is_bound_to_the_head_context() {
        // A manifest-style signature over the same body is not a head.
        let k = key(1);
        let h = head(1);
        let sig: p256::ecdsa::Signature =
            k.sign(&crate::manifest::Manifest::signing_message(&h.encode()));
        let forged = h.to_signed(&sig.to_bytes().into());
        assert!(SignedHead::parse(&forged)
            .unwrap()
            .verify(&verifier(&k))
            .is_err());
    }

    #[test]
    fn oversized_and_foreign_input_is_refused_with_its_reason() {
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&(MAX_BODY as u32 + 1).to_be_bytes());
        let e = SignedHead::parse(&big).unwrap_err();
        assert!(e.to_string().contains("exceeds 1024"), "{e}");
        let e = SignedHead::parse(b"\x89SDR\r\n\x1a\n").unwrap_err();
        assert!(matches!(e, FormatError::BadMagic { .. }), "{e}");
    }

    proptest! {
        #[test]
        fn any_head_round_trips(seq in any::<u64>(), end in any::<u64>(), at in any::<u64>(), hash in any::<[u8; 32]>()) {
            let h = Head { sequence: seq, fragment_end_unix_ns: end, signed_at_unix_ns: at, manifest_hash: ManifestHash(hash), ..head(0) };
            let bytes = h.to_signed(&[0; 64]);
            prop_assert_eq!(SignedHead::parse(&bytes).unwrap().head, h);
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedHead::parse(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = SignedHead::parse(&framed);
        }
    }
}
