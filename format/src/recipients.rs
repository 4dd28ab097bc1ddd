//! Recipient sets: who may decrypt, signed by the owner.
//!
//! The owner of a camera holds an offline P-256 key (`sealcam owner init`).
//! The set of consumer keys a camera seals to is a document the owner signs,
//! with a version that only goes up. A camera accepts a new set only if the
//! owner signed it and its version is newer than the one it has, so nobody
//! between the owner and the camera (the ingest included) can add a
//! recipient or roll the set back. Every manifest names the version it used.
//!
//! ```text
//! magic      8 bytes  89 53 43 52 0d 0a 1a 0a ("\x89SCR\r\n\x1a\n")
//! body_len   u32
//! body       format u16 = 1 | suite u16 = 1 | version u64 | issued_unix u64
//!            | count u16 | count x (label str16, key bytes16: SEC1 uncompressed P-256)
//! signature  64 bytes, ECDSA P-256 r || s over "sealcam recipient set v1\0" || body
//! ```

use p256::ecdsa::signature::{Signer, Verifier};

use crate::codec::{Reader, Writer};
use crate::keys::{ConsumerPublicKey, DeviceVerifyingKey};
use crate::manifest::{MAX_RECIPIENTS, SUITE_V1};
use crate::{FormatError, SealError, FORMAT_VERSION};

pub const MAGIC: &[u8; 8] = b"\x89SCR\r\n\x1a\n";
pub const SIGNING_CONTEXT: &[u8] = b"sealcam recipient set v1\0";
const MAX_LABEL: usize = 64;

/// One consumer in a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// A human label (a name or a role), at most 64 bytes.
    pub label: String,
    pub key: ConsumerPublicKey,
}

/// A versioned set of consumer keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientSet {
    /// Goes up with every change; 0 is reserved for unsigned development lists.
    pub version: u64,
    pub issued_unix: u64,
    pub recipients: Vec<Recipient>,
}

/// A recipient set as read from a file, signature not yet checked.
pub struct SignedRecipientSet<'a> {
    pub set: RecipientSet,
    body: &'a [u8],
    signature: [u8; 64],
}

impl RecipientSet {
    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u16(FORMAT_VERSION);
        out.put_u16(SUITE_V1);
        out.put_u64(self.version);
        out.put_u64(self.issued_unix);
        out.put_u16(self.recipients.len() as u16);
        for r in &self.recipients {
            out.put_bytes16(r.label.as_bytes());
            out.put_bytes16(r.key.sec1().as_bytes());
        }
        out
    }

    /// Checks the set and signs it with the owner key; returns the file.
    pub fn sign(&self, owner: &p256::ecdsa::SigningKey) -> Result<Vec<u8>, SealError> {
        if self.version == 0 {
            return Err(SealError::Key(
                "recipient set version 0 is reserved for development lists".into(),
            ));
        }
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS {
            return Err(SealError::Key(format!(
                "a recipient set holds 1 to {MAX_RECIPIENTS} keys, not {}",
                self.recipients.len()
            )));
        }
        if let Some(r) = self
            .recipients
            .iter()
            .find(|r| r.label.len() > MAX_LABEL || r.label.is_empty())
        {
            return Err(SealError::Key(format!(
                "label {:?} must be 1 to {MAX_LABEL} bytes",
                r.label
            )));
        }
        let body = self.encode_body();
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(&body);
        let sig: p256::ecdsa::Signature = owner.sign(&msg);
        let mut out = MAGIC.to_vec();
        out.put_u32(body.len() as u32);
        out.extend_from_slice(&body);
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

impl<'a> SignedRecipientSet<'a> {
    /// Parses a recipient-set file. Never panics on any input.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "recipient set");
        if r.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
            return Err(FormatError::BadMagic { expected: MAGIC });
        }
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        let signature = r.array::<64>()?;
        r.finish()?;
        let mut b = Reader::new(body, "recipient set");
        let version = b.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let offset = b.position();
        let suite = b.u16()?;
        if suite != SUITE_V1 {
            return Err(FormatError::Invalid {
                what: "recipient set",
                offset,
                reason: format!("unknown algorithm suite {suite}"),
            });
        }
        let set_version = b.u64()?;
        let issued_unix = b.u64()?;
        let n = b.count16("recipient", 1, MAX_RECIPIENTS)?;
        let mut recipients = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = b.position();
            let label = b.str16()?.to_owned();
            let key =
                ConsumerPublicKey::from_sec1(b.bytes16()?).map_err(|e| FormatError::Invalid {
                    what: "recipient set",
                    offset,
                    reason: e.to_string(),
                })?;
            recipients.push(Recipient { label, key });
        }
        b.finish()?;
        Ok(Self {
            set: RecipientSet {
                version: set_version,
                issued_unix,
                recipients,
            },
            body,
            signature,
        })
    }

    /// Checks the owner's signature; returns the set only if it holds.
    pub fn verify(self, owner: &DeviceVerifyingKey) -> Result<RecipientSet, SealError> {
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(self.body);
        let sig = p256::ecdsa::Signature::from_slice(&self.signature)
            .map_err(|_| SealError::BadSignature)?;
        owner.0.verify(&msg, &sig).map_err(|_| {
            SealError::Key("the recipient set is not signed by the owner key".into())
        })?;
        Ok(self.set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ConsumerSecretKey;

    fn set(version: u64) -> RecipientSet {
        let mut rng = rand::thread_rng();
        RecipientSet {
            version,
            issued_unix: 1_790_000_000,
            recipients: vec![
                Recipient {
                    label: "alice".into(),
                    key: ConsumerSecretKey::generate(&mut rng).public().clone(),
                },
                Recipient {
                    label: "bob".into(),
                    key: ConsumerSecretKey::generate(&mut rng).public().clone(),
                },
            ],
        }
    }

    #[test]
    fn signed_set_round_trips_only_under_the_owner_key() {
        let owner = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let server = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let s = set(4);
        let file = s.sign(&owner).unwrap();
        let owner_pub = DeviceVerifyingKey(*owner.verifying_key());
        let parsed = SignedRecipientSet::parse(&file)
            .unwrap()
            .verify(&owner_pub)
            .unwrap();
        assert_eq!(parsed, s);
        // Signed by someone else (the ingest, say): refused.
        let forged = s.sign(&server).unwrap();
        assert!(SignedRecipientSet::parse(&forged)
            .unwrap()
            .verify(&owner_pub)
            .is_err());
        // Any flipped byte: refused.
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            let ok = SignedRecipientSet::parse(&bad)
                .map(|p| p.verify(&owner_pub).is_ok())
                .unwrap_or(false);
            assert!(!ok, "flip at {i} accepted");
        }
    }

    #[test]
    fn version_zero_is_reserved() {
        let owner = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        assert!(set(0).sign(&owner).is_err());
    }
}
