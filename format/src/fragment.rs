//! The sealed-fragment file: magic, manifest, signature, sealed records.
//!
//! ```text
//! magic          8 bytes  89 53 43 46 0d 0a 1a 0a  ("\x89SCF\r\n\x1a\n")
//! manifest_len   u32
//! manifest       manifest_len bytes (see `Manifest::encode`)
//! signature      64 bytes, ECDSA P-256 r || s over SIGNING_CONTEXT || manifest
//! payload        manifest.payload_len bytes of records, to the end of the file
//! ```
//!
//! A record is
//!
//! ```text
//! kind u8 | flags u8 | pts_ns u64 | duration_ns u64 | ct_len u32 | ciphertext
//! ```
//!
//! Record 0 is the sealed track configuration; records 1..=frame_count are
//! the sealed frames in presentation order.

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::keys::DeviceVerifyingKey;
use crate::manifest::{Manifest, ManifestHash};
use crate::{FormatError, SealError};

/// The first 8 bytes of every sealed fragment file.
pub const MAGIC: &[u8; 8] = b"\x89SCF\r\n\x1a\n";

/// Largest manifest a reader accepts.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;

/// Record flag: the frame is a key frame (decodable on its own).
pub const FLAG_KEY_FRAME: u8 = 0x01;

/// Record flag: the plaintext is `u32 length || frame || zero padding` up to
/// a size bucket, so that frame sizes say less about motion in the scene.
pub const FLAG_PADDED: u8 = 0x02;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// The sealed [`crate::TrackConfig`]: codec, size, codec private data.
    Track = 1,
    /// One sealed video frame (an H.264 access unit).
    Frame = 2,
}

/// One record of a sealed payload, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub index: u32,
    pub kind: RecordKind,
    pub flags: u8,
    pub pts_ns: u64,
    pub duration_ns: u64,
    pub ciphertext: &'a [u8],
}

impl Record<'_> {
    pub(crate) fn encode_header(
        out: &mut Vec<u8>,
        kind: RecordKind,
        flags: u8,
        pts_ns: u64,
        duration_ns: u64,
        ct_len: u32,
    ) {
        out.put_u8(kind as u8);
        out.put_u8(flags);
        out.put_u64(pts_ns);
        out.put_u64(duration_ns);
        out.put_u32(ct_len);
    }

    pub fn is_key_frame(&self) -> bool {
        self.flags & FLAG_KEY_FRAME != 0
    }
}

/// A parsed sealed fragment, borrowing the file's bytes.
#[derive(Debug)]
pub struct SealedFragment<'a> {
    pub manifest: Manifest,
    /// The encoded manifest body, exactly as signed.
    pub manifest_body: &'a [u8],
    pub signature: [u8; 64],
    pub payload: &'a [u8],
}

impl<'a> SealedFragment<'a> {
    /// Parses the file layout and the manifest. Does not check the signature or
    /// the payload hash: see [`SealedFragment::verify`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "fragment");
        if r.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
            return Err(FormatError::BadMagic { expected: MAGIC });
        }
        let offset = r.position();
        let manifest_len = r.u32()? as usize;
        if manifest_len > MAX_MANIFEST_LEN {
            return Err(FormatError::Invalid {
                what: "fragment",
                offset,
                reason: format!("manifest length {manifest_len} exceeds {MAX_MANIFEST_LEN}"),
            });
        }
        let manifest_body = r.take(manifest_len)?;
        let manifest = Manifest::decode(manifest_body)?;
        let signature = r.array::<64>()?;
        let payload_offset = r.position();
        let payload = r.take(r.remaining())?;
        if payload.len() as u64 != manifest.payload_len {
            return Err(FormatError::Invalid {
                what: "fragment",
                offset: payload_offset,
                reason: format!(
                    "payload is {} bytes but the manifest says {}",
                    payload.len(),
                    manifest.payload_len
                ),
            });
        }
        Ok(Self {
            manifest,
            manifest_body,
            signature,
            payload,
        })
    }

    /// Hash of this fragment's manifest body, named by the next fragment.
    pub fn manifest_hash(&self) -> ManifestHash {
        ManifestHash::of_body(self.manifest_body)
    }

    /// Checks the device signature and that the payload matches the manifest.
    pub fn verify(&self, device_key: &DeviceVerifyingKey) -> Result<(), SealError> {
        Manifest::verify_signature(self.manifest_body, &self.signature, device_key)?;
        let digest: [u8; 32] = Sha256::digest(self.payload).into();
        if digest != self.manifest.payload_sha256 {
            return Err(SealError::PayloadHashMismatch);
        }
        Ok(())
    }

    /// Splits the payload into records and checks their structure: one track
    /// record first, then exactly `frame_count` frame records.
    pub fn records(&self) -> Result<Vec<Record<'a>>, FormatError> {
        let mut r = Reader::new(self.payload, "payload");
        let mut out = Vec::new();
        let mut index: u32 = 0;
        while r.remaining() > 0 {
            let offset = r.position();
            let kind = match r.u8()? {
                1 => RecordKind::Track,
                2 => RecordKind::Frame,
                k => {
                    return Err(FormatError::Invalid {
                        what: "payload",
                        offset,
                        reason: format!("unknown record kind {k}"),
                    })
                }
            };
            let expected = if index == 0 {
                RecordKind::Track
            } else {
                RecordKind::Frame
            };
            if kind != expected {
                return Err(FormatError::Invalid {
                    what: "payload",
                    offset,
                    reason: format!("record {index} is a {kind:?} record, expected {expected:?}"),
                });
            }
            let flags = r.u8()?;
            let pts_ns = r.u64()?;
            let duration_ns = r.u64()?;
            let ct_len = r.u32()? as usize;
            let ciphertext = r.take(ct_len)?;
            out.push(Record {
                index,
                kind,
                flags,
                pts_ns,
                duration_ns,
                ciphertext,
            });
            index = index.checked_add(1).ok_or(FormatError::Invalid {
                what: "payload",
                offset,
                reason: "too many records".into(),
            })?;
        }
        let frames = out.len().saturating_sub(1);
        if out.is_empty() || frames != self.manifest.frame_count as usize {
            return Err(FormatError::Invalid {
                what: "payload",
                offset: r.position(),
                reason: format!(
                    "payload holds {frames} frames but the manifest says {}",
                    self.manifest.frame_count
                ),
            });
        }
        Ok(out)
    }
}

/// Assembles a fragment file from its parts.
pub(crate) fn assemble(manifest_body: &[u8], signature: &[u8; 64], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + manifest_body.len() + 64 + payload.len());
    out.extend_from_slice(MAGIC);
    out.put_u32(manifest_body.len() as u32);
    out.extend_from_slice(manifest_body);
    out.extend_from_slice(signature);
    out.extend_from_slice(payload);
    out
}
