//! The per-fragment manifest: what the device signs.

use std::fmt;

use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::keys::{DeviceVerifyingKey, KeyId};
use crate::name::Name;
use crate::{FormatError, SealError, FORMAT_VERSION};

/// Prefix of the message the device signs, so that a manifest signature can
/// never be mistaken for a signature made for another purpose with the same
/// key (the device key also signs TLS handshakes, whose signed content starts
/// with 64 spaces).
pub const SIGNING_CONTEXT: &[u8] = b"sealcam manifest v1\0";

/// Most recipients one fragment may name.
pub const MAX_RECIPIENTS: usize = 256;

/// SHA-256 of a manifest body; each manifest names its predecessor's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ManifestHash(pub [u8; 32]);

impl ManifestHash {
    /// The "previous hash" of the first fragment of a stream.
    pub const GENESIS: ManifestHash = ManifestHash([0u8; 32]);

    pub fn of_body(body: &[u8]) -> Self {
        Self(Sha256::digest(body).into())
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(Self(v.try_into().ok()?))
    }
}

impl fmt::Display for ManifestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ManifestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManifestHash({self})")
    }
}

/// The data key of a fragment, wrapped with HPKE to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub recipient: KeyId,
    /// HPKE encapsulated key (uncompressed P-256 point, 65 bytes).
    pub enc: Vec<u8>,
    /// HPKE ciphertext of the 32-byte data key (48 bytes).
    pub ciphertext: Vec<u8>,
}

/// Everything the device signs about one fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub version: u16,
    pub device: Name,
    pub stream: Name,
    /// Position of the fragment in its stream, from 0, without holes unless a
    /// gap is declared.
    pub sequence: u64,
    /// Hash of the previous fragment's manifest body, or [`ManifestHash::GENESIS`].
    pub prev: ManifestHash,
    /// Wall-clock time of the first frame, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Wall-clock end of the last frame (its start plus its duration).
    pub end_unix_ns: u64,
    pub frame_count: u32,
    /// Length of the sealed payload that follows the manifest in the file.
    pub payload_len: u64,
    /// SHA-256 over the sealed payload.
    pub payload_sha256: [u8; 32],
    pub recipients: Vec<WrappedKey>,
}

impl Manifest {
    /// The canonical encoding of the manifest body (what is hashed and signed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.recipients.len() * 128);
        out.put_u16(self.version);
        out.put_bytes16(self.device.as_str().as_bytes());
        out.put_bytes16(self.stream.as_str().as_bytes());
        out.put_u64(self.sequence);
        out.extend_from_slice(&self.prev.0);
        out.put_u64(self.start_unix_ns);
        out.put_u64(self.end_unix_ns);
        out.put_u32(self.frame_count);
        out.put_u64(self.payload_len);
        out.extend_from_slice(&self.payload_sha256);
        out.put_u16(self.recipients.len() as u16);
        for r in &self.recipients {
            out.extend_from_slice(&r.recipient.0);
            out.put_bytes16(&r.enc);
            out.put_bytes16(&r.ciphertext);
        }
        out
    }

    /// Decodes a manifest body. Never panics on any input.
    pub fn decode(body: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(body, "manifest");
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let name = |r: &mut Reader<'_>| -> Result<Name, FormatError> {
            let offset = r.position();
            let s = r.str16()?;
            Name::new(s).map_err(|e| FormatError::Invalid {
                what: "manifest",
                offset,
                reason: e.to_string(),
            })
        };
        let device = name(&mut r)?;
        let stream = name(&mut r)?;
        let sequence = r.u64()?;
        let prev = ManifestHash(r.array()?);
        let start_unix_ns = r.u64()?;
        let end_unix_ns = r.u64()?;
        if end_unix_ns < start_unix_ns {
            return Err(FormatError::Invalid {
                what: "manifest",
                offset: r.position(),
                reason: "time range ends before it starts".into(),
            });
        }
        let frame_count = r.u32()?;
        let payload_len = r.u64()?;
        let payload_sha256 = r.array()?;
        let offset = r.position();
        let n = r.u16()? as usize;
        if n == 0 || n > MAX_RECIPIENTS {
            return Err(FormatError::Invalid {
                what: "manifest",
                offset,
                reason: format!("recipient count {n} is outside 1..={MAX_RECIPIENTS}"),
            });
        }
        let mut recipients = Vec::with_capacity(n);
        for _ in 0..n {
            recipients.push(WrappedKey {
                recipient: KeyId(r.array()?),
                enc: r.bytes16()?.to_vec(),
                ciphertext: r.bytes16()?.to_vec(),
            });
        }
        r.finish()?;
        Ok(Self {
            version,
            device,
            stream,
            sequence,
            prev,
            start_unix_ns,
            end_unix_ns,
            frame_count,
            payload_len,
            payload_sha256,
            recipients,
        })
    }

    /// The exact bytes the device signs for an encoded body.
    pub fn signing_message(body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
        m.extend_from_slice(SIGNING_CONTEXT);
        m.extend_from_slice(body);
        m
    }

    /// Checks an ECDSA P-256 / SHA-256 signature (64 bytes, r || s) over `body`.
    pub fn verify_signature(
        body: &[u8],
        signature: &[u8; 64],
        key: &DeviceVerifyingKey,
    ) -> Result<(), SealError> {
        let sig =
            p256::ecdsa::Signature::from_slice(signature).map_err(|_| SealError::BadSignature)?;
        key.0
            .verify(&Self::signing_message(body), &sig)
            .map_err(|_| SealError::BadSignature)
    }

    /// Key ids of the recipients, comma-separated, for messages.
    pub fn recipient_list(&self) -> String {
        self.recipients
            .iter()
            .map(|r| r.recipient.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
