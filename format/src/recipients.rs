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

use crate::codec::Writer;
use crate::keys::{ConsumerPublicKey, DeviceVerifyingKey};
use crate::manifest::MAX_RECIPIENTS;
use crate::owner_signed::{self, Envelope, Kind};
use crate::{FormatError, SealError};

pub const MAGIC: &[u8; 8] = b"\x89SCR\r\n\x1a\n";
pub const SIGNING_CONTEXT: &[u8] = b"sealcam recipient set v1\0";
const KIND: Kind = Kind {
    magic: MAGIC,
    context: SIGNING_CONTEXT,
    what: "recipient set",
};
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
    envelope: Envelope<'a>,
}

impl RecipientSet {
    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        owner_signed::put_header(&mut out);
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
        Ok(owner_signed::sign(&KIND, &self.encode_body(), owner))
    }
}

impl<'a> SignedRecipientSet<'a> {
    /// Parses a recipient-set file. Never panics on any input.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (envelope, mut b) = Envelope::parse(&KIND, bytes)?;
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
            envelope,
        })
    }

    /// Checks the owner's signature; returns the set only if it holds.
    pub fn verify(self, owner: &DeviceVerifyingKey) -> Result<RecipientSet, SealError> {
        self.envelope.verify(&KIND, owner)?;
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
