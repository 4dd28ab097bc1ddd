//! The sealed-fragment file: a Matroska file whose video is opaque.
//!
//! ```text
//! EBML            DocType "matroska" (version 4, read version 2)
//! Segment
//!   Info          TimestampScale 1 ms, MuxingApp "sealcam"
//!   Tracks        one video track, CodecID "V_SEALCAM/V1"
//!   Attachments   one AttachedFile "manifest.sealcam"
//!                 (application/vnd.sealcam.manifest):
//!                 FileData = manifest body || 64-byte signature
//!   Cluster       Timestamp 0, then one SimpleBlock per record:
//!                 81 00 00 00 | kind u8 | AES-256-GCM ciphertext and tag
//! ```
//!
//! mkvinfo, ffprobe and mkvextract read the structure (and extract the
//! manifest); the sealed content is opaque. The payload that the manifest's
//! SHA-256 covers is the Cluster's body, byte for byte. Every element size is
//! in its shortest form and every element is where the layout puts it, so a
//! fragment has exactly one encoding.
//!
//! Record 0 is the sealed track configuration; records 1..=frame_count are
//! the sealed frames in presentation order; a camera that marks events
//! adds one events record after them ([`crate::events`]). Frame timing and flags travel
//! inside the ciphertext: in the clear are only the fragment's time range
//! (in the manifest) and the records' sizes.

use crate::codec::Reader;
use crate::ebml::{element, id, matroska_header, read_element, uint};
use crate::keys::{DeviceVerifier, DeviceVerifyingKey};
use crate::manifest::{Manifest, ManifestHash};
use crate::{FormatError, SealError};

/// The track's codec id: sealed sealcam records.
pub const CODEC_ID: &str = "V_SEALCAM/V1";
/// The attachment that carries the manifest and its signature.
pub const MANIFEST_FILE_NAME: &str = "manifest.sealcam";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.sealcam.manifest";
const MANIFEST_DESCRIPTION: &str = "sealcam manifest and device signature";

/// Largest manifest a reader accepts.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;

/// Frame flag (inside the ciphertext): the frame is a key frame.
pub const FLAG_KEY_FRAME: u8 = 0x01;

/// Frame flag (inside the ciphertext): the frame bytes are
/// `u32 length || frame || zero padding` up to a size bucket, so that frame
/// sizes say less about motion in the scene.
pub const FLAG_PADDED: u8 = 0x02;

/// The four bytes before a record's kind in its SimpleBlock: track 1,
/// relative timestamp 0, no flags. Real timing is sealed.
const BLOCK_HEADER: [u8; 4] = [0x81, 0x00, 0x00, 0x00];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// The sealed [`crate::TrackConfig`]: codec, size, codec private data.
    Track = 1,
    /// One sealed video frame (an H.264 access unit) with its timing.
    Frame = 2,
    /// The fragment's event marks ([`crate::events`]), after the last
    /// frame, at most one.
    Events = 3,
}

/// One record of a sealed payload, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub index: u32,
    pub kind: RecordKind,
    pub ciphertext: &'a [u8],
}

/// Starts one record's SimpleBlock in a Cluster body, for a ciphertext of
/// `ct_len` bytes that the caller appends; returns where the ciphertext starts.
pub(crate) fn begin_record(cluster_body: &mut Vec<u8>, kind: RecordKind, ct_len: usize) -> usize {
    cluster_body.reserve(ct_len + 16);
    crate::ebml::put_id(cluster_body, id::SIMPLE_BLOCK);
    crate::ebml::put_size(cluster_body, (BLOCK_HEADER.len() + 1 + ct_len) as u64);
    cluster_body.extend_from_slice(&BLOCK_HEADER);
    cluster_body.push(kind as u8);
    cluster_body.len()
}

/// Appends one record, as a SimpleBlock, to a Cluster body.
pub(crate) fn put_record(cluster_body: &mut Vec<u8>, kind: RecordKind, ciphertext: &[u8]) {
    let mut block = Vec::with_capacity(BLOCK_HEADER.len() + 1 + ciphertext.len());
    block.extend_from_slice(&BLOCK_HEADER);
    block.push(kind as u8);
    block.extend_from_slice(ciphertext);
    element(cluster_body, id::SIMPLE_BLOCK, &block);
}

/// The start of every Cluster body: its timestamp, 0.
pub(crate) fn cluster_start() -> Vec<u8> {
    let mut body = Vec::new();
    uint(&mut body, id::TIMECODE, 0);
    body
}

fn info() -> Vec<u8> {
    let mut info = Vec::new();
    uint(&mut info, id::TIMECODE_SCALE, 1_000_000);
    element(&mut info, id::MUXING_APP, b"sealcam");
    element(&mut info, id::WRITING_APP, b"sealcam sealed fragment v1");
    info
}

fn tracks() -> Vec<u8> {
    let mut entry = Vec::new();
    uint(&mut entry, id::TRACK_NUMBER, 1);
    uint(&mut entry, id::TRACK_UID, 1);
    uint(&mut entry, id::TRACK_TYPE, 1);
    uint(&mut entry, id::FLAG_LACING, 0);
    element(&mut entry, id::CODEC_ID, CODEC_ID.as_bytes());
    let mut tracks = Vec::new();
    element(&mut tracks, id::TRACK_ENTRY, &entry);
    tracks
}

fn attachments(manifest_body: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut data = Vec::with_capacity(manifest_body.len() + 64);
    data.extend_from_slice(manifest_body);
    data.extend_from_slice(signature);
    let mut file = Vec::new();
    element(
        &mut file,
        id::FILE_DESCRIPTION,
        MANIFEST_DESCRIPTION.as_bytes(),
    );
    element(&mut file, id::FILE_NAME, MANIFEST_FILE_NAME.as_bytes());
    element(
        &mut file,
        id::FILE_MEDIA_TYPE,
        MANIFEST_MEDIA_TYPE.as_bytes(),
    );
    element(&mut file, id::FILE_DATA, &data);
    uint(&mut file, id::FILE_UID, 1);
    let mut att = Vec::new();
    element(&mut att, id::ATTACHED_FILE, &file);
    att
}

/// Assembles a fragment file from its parts.
pub(crate) fn assemble(manifest_body: &[u8], signature: &[u8; 64], cluster_body: &[u8]) -> Vec<u8> {
    let head = file_head(manifest_body, signature, cluster_body.len());
    let mut out = Vec::with_capacity(head.len() + cluster_body.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(cluster_body);
    out
}

/// Everything of a fragment file before the Cluster's body, which follows it
/// to the end of the file: the payload (nearly all of the file) never has
/// to be copied to make the file.
pub(crate) fn file_head(manifest_body: &[u8], signature: &[u8; 64], cluster_len: usize) -> Vec<u8> {
    let mut segment_head = Vec::with_capacity(manifest_body.len() + 512);
    element(&mut segment_head, id::INFO, &info());
    element(&mut segment_head, id::TRACKS, &tracks());
    element(
        &mut segment_head,
        id::ATTACHMENTS,
        &attachments(manifest_body, signature),
    );
    crate::ebml::put_id(&mut segment_head, id::CLUSTER);
    crate::ebml::put_size(&mut segment_head, cluster_len as u64);
    let mut head = Vec::with_capacity(segment_head.len() + 64);
    element(&mut head, id::EBML, &matroska_header());
    crate::ebml::put_id(&mut head, id::SEGMENT);
    crate::ebml::put_size(&mut head, (segment_head.len() + cluster_len) as u64);
    head.extend_from_slice(&segment_head);
    head
}

/// A parsed sealed fragment, borrowing the file's bytes.
#[derive(Debug)]
pub struct SealedFragment<'a> {
    pub manifest: Manifest,
    /// The encoded manifest body, exactly as signed.
    pub manifest_body: &'a [u8],
    pub signature: [u8; 64],
    /// The Cluster's body: what the manifest's payload hash covers.
    pub payload: &'a [u8],
}

fn expect(what: &'static str, got: &[u8], want: &[u8], offset: usize) -> Result<(), FormatError> {
    if got == want {
        Ok(())
    } else {
        Err(FormatError::Invalid {
            what,
            offset,
            reason: "not the element sealcam writes here".into(),
        })
    }
}

impl<'a> SealedFragment<'a> {
    /// Parses the container and the manifest. Does not check the signature
    /// or the payload hash: see [`SealedFragment::verify`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "fragment");
        let ebml = read_element(&mut r, id::EBML).map_err(|e| match e {
            FormatError::Invalid { offset: 0, .. } | FormatError::Truncated { offset: 0, .. } => {
                FormatError::BadMagic {
                    expected: b"\x1a\x45\xdf\xa3",
                }
            }
            e => e,
        })?;
        expect("EBML header", ebml, &matroska_header(), 0)?;
        let segment = read_element(&mut r, id::SEGMENT)?;
        r.finish()?;
        let mut s = Reader::new(segment, "segment");
        let at = s.position();
        expect("segment info", read_element(&mut s, id::INFO)?, &info(), at)?;
        let at = s.position();
        expect("tracks", read_element(&mut s, id::TRACKS)?, &tracks(), at)?;
        let at = s.position();
        let att = read_element(&mut s, id::ATTACHMENTS)?;
        let (manifest_body, signature) = {
            let mut a = Reader::new(att, "attachments");
            let file = read_element(&mut a, id::ATTACHED_FILE)?;
            a.finish()?;
            let mut f = Reader::new(file, "attached manifest");
            read_element(&mut f, id::FILE_DESCRIPTION)?;
            read_element(&mut f, id::FILE_NAME)?;
            read_element(&mut f, id::FILE_MEDIA_TYPE)?;
            let data = read_element(&mut f, id::FILE_DATA)?;
            if data.len() < 64 || data.len() - 64 > MAX_MANIFEST_LEN {
                return Err(FormatError::Invalid {
                    what: "attached manifest",
                    offset: at,
                    reason: format!("manifest and signature take {} bytes", data.len()),
                });
            }
            let (body, sig) = data.split_at(data.len() - 64);
            let mut signature = [0u8; 64];
            signature.copy_from_slice(sig);
            (body, signature)
        };
        expect(
            "attachments",
            att,
            &attachments(manifest_body, &signature),
            at,
        )?;
        let payload = read_element(&mut s, id::CLUSTER)?;
        s.finish()?;
        let manifest = Manifest::decode(manifest_body)?;
        if payload.len() as u64 != manifest.payload_len {
            return Err(FormatError::Invalid {
                what: "fragment",
                offset: bytes.len() - payload.len(),
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

    /// The fragment made of a signed manifest and its payload, parsed where
    /// they lie: what [`SealedFragment::parse`] makes of [`join`]'s result,
    /// without building it. Fails where [`join`] fails.
    pub fn from_parts(signed_manifest: &'a [u8], payload: &'a [u8]) -> Result<Self, FormatError> {
        let m = SignedManifest::parse(signed_manifest)?;
        if payload.len() as u64 != m.manifest.payload_len {
            return Err(FormatError::Invalid {
                what: "fragment",
                offset: 0,
                reason: format!(
                    "payload is {} bytes but the manifest says {}",
                    payload.len(),
                    m.manifest.payload_len
                ),
            });
        }
        Ok(Self {
            manifest: m.manifest,
            manifest_body: m.body,
            signature: m.signature,
            payload,
        })
    }

    /// A streamed upload (see [`split_streamed`]) parsed where it lies:
    /// the payload and manifest borrow from `body`.
    pub fn parse_streamed(body: &'a [u8]) -> Result<Self, FormatError> {
        let (signed_manifest, payload) = split_streamed(body)?;
        Self::from_parts(signed_manifest, payload)
    }

    /// Hash of this fragment's manifest body, named by the next fragment.
    pub fn manifest_hash(&self) -> ManifestHash {
        ManifestHash::of_body(self.manifest_body)
    }

    /// Checks the device signature and that the payload matches the manifest.
    pub fn verify(&self, device_key: &DeviceVerifyingKey) -> Result<(), SealError> {
        self.verify_with(&device_key.verifier()?)
    }

    /// [`Self::verify`] with a key prepared once for many fragments.
    pub fn verify_with(&self, device_key: &DeviceVerifier) -> Result<(), SealError> {
        Manifest::verify_signature(self.manifest_body, &self.signature, device_key)?;
        // The manifest decoder admits known suites only, so `None` cannot
        // happen; it would still be a mismatch, never a pass.
        let digest = crate::suite::payload_hash(self.manifest.suite, self.payload);
        if digest != Some(self.manifest.payload_hash) {
            return Err(SealError::PayloadHashMismatch);
        }
        Ok(())
    }

    /// Splits the payload into records and checks their structure: one track
    /// record first, then exactly `frame_count` frame records, then at most
    /// one events record.
    pub fn records(&self) -> Result<Vec<Record<'a>>, FormatError> {
        let mut r = Reader::new(self.payload, "cluster");
        let at = r.position();
        expect(
            "cluster timestamp",
            read_element(&mut r, id::TIMECODE)?,
            &[0],
            at,
        )?;
        let mut out = Vec::new();
        let mut index: u32 = 0;
        while r.remaining() > 0 {
            let offset = r.position();
            let block = read_element(&mut r, id::SIMPLE_BLOCK)?;
            let invalid = |reason: String| FormatError::Invalid {
                what: "cluster",
                offset,
                reason,
            };
            if block.len() < BLOCK_HEADER.len() + 1 || block[..BLOCK_HEADER.len()] != BLOCK_HEADER {
                return Err(invalid(format!(
                    "block {index} does not have sealcam's block header"
                )));
            }
            let kind = match block[BLOCK_HEADER.len()] {
                1 => RecordKind::Track,
                2 => RecordKind::Frame,
                3 => RecordKind::Events,
                k => return Err(invalid(format!(
                    "unknown record kind {k} (written by a newer sealcam? update this one to read it)"
                ))),
            };
            let previous = out.last().map(|r: &Record<'_>| r.kind);
            let in_place = matches!(
                (previous, kind),
                (None, RecordKind::Track)
                    | (
                        Some(RecordKind::Track | RecordKind::Frame),
                        RecordKind::Frame | RecordKind::Events
                    )
            );
            if !in_place {
                let expected = match previous {
                    None => "a Track record",
                    Some(RecordKind::Events) => "nothing after the Events record",
                    Some(_) => "a Frame or the Events record",
                };
                return Err(invalid(format!(
                    "record {index} is a {kind:?} record, expected {expected}"
                )));
            }
            out.push(Record {
                index,
                kind,
                ciphertext: &block[BLOCK_HEADER.len() + 1..],
            });
            index = index
                .checked_add(1)
                .ok_or_else(|| invalid("too many records".into()))?;
        }
        let frames = out.iter().filter(|r| r.kind == RecordKind::Frame).count();
        if out.is_empty() || frames != self.manifest.frame_count as usize {
            return Err(FormatError::Invalid {
                what: "cluster",
                offset: r.position(),
                reason: format!(
                    "payload holds {frames} frames but the manifest says {}",
                    self.manifest.frame_count
                ),
            });
        }
        Ok(out)
    }

    /// The manifest as it is attached: the encoded body, then the 64-byte
    /// signature. With [`SealedFragment::payload`] it is all a fragment
    /// holds; [`join`] puts the two back together. The wrapped data keys
    /// live here, so storing it apart from the payload lets a store destroy
    /// the keys without touching the ciphertext.
    pub fn signed_manifest(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.manifest_body.len() + 64);
        out.extend_from_slice(self.manifest_body);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Re-frames `records` (in the order given) under this fragment's
    /// manifest and signature. For tools and tests that need to show what
    /// reordering does; the result fails verification unless the order is
    /// unchanged.
    pub fn reassemble(&self, records: &[Record<'_>]) -> Vec<u8> {
        let mut cluster = cluster_start();
        for r in records {
            put_record(&mut cluster, r.kind, r.ciphertext);
        }
        assemble(self.manifest_body, &self.signature, &cluster)
    }
}

/// A signed manifest on its own (see [`SealedFragment::signed_manifest`]).
#[derive(Debug)]
pub struct SignedManifest<'a> {
    pub manifest: Manifest,
    pub body: &'a [u8],
    pub signature: [u8; 64],
}

impl<'a> SignedManifest<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if bytes.len() < 64 || bytes.len() - 64 > MAX_MANIFEST_LEN {
            return Err(FormatError::Invalid {
                what: "signed manifest",
                offset: 0,
                reason: format!(
                    "{} bytes; a manifest and its signature take 64 to {} bytes",
                    bytes.len(),
                    MAX_MANIFEST_LEN + 64
                ),
            });
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        Ok(Self {
            manifest: Manifest::decode(body)?,
            body,
            signature,
        })
    }

    pub fn manifest_hash(&self) -> ManifestHash {
        ManifestHash::of_body(self.body)
    }

    pub fn verify(&self, device_key: &DeviceVerifyingKey) -> Result<(), SealError> {
        self.verify_with(&device_key.verifier()?)
    }

    /// [`Self::verify`] with a key prepared once for many manifests.
    pub fn verify_with(&self, device_key: &DeviceVerifier) -> Result<(), SealError> {
        Manifest::verify_signature(self.body, &self.signature, device_key)
    }
}

/// Rebuilds the fragment file from a signed manifest and its payload: the
/// exact bytes the device sent, since the encoding is canonical. Fails if
/// the two do not make a well-formed fragment (a payload of another length,
/// say); the payload hash is checked by [`SealedFragment::verify`].
pub fn join(signed_manifest: &[u8], payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    let m = SignedManifest::parse(signed_manifest)?;
    let bytes = assemble(m.body, &m.signature, payload);
    SealedFragment::parse(&bytes)?;
    Ok(bytes)
}

/// The bytes of a fragment file before its payload, from its signed
/// manifest and the payload's length: what [`join`] puts before the
/// payload, so that a stored fragment can be served without holding its
/// payload in memory. The caller checks the length against the manifest.
pub fn head(signed_manifest: &[u8], payload_len: usize) -> Result<Vec<u8>, FormatError> {
    let m = SignedManifest::parse(signed_manifest)?;
    Ok(file_head(m.body, &m.signature, payload_len))
}

/// The media type of a fragment file uploaded whole.
pub const MEDIA_TYPE: &str = "application/vnd.sealcam.fragment";

/// The media type of a fragment uploaded while it is recorded: its payload
/// as sealed, then the signed manifest and its length ([`streamed_tail`]).
pub const STREAMED_MEDIA_TYPE: &str = "application/vnd.sealcam.fragment-stream";

/// Bytes after the signed manifest in a streamed upload: its length.
const STREAMED_TRAILER_LEN: usize = 4;

/// The end of a fragment sent as it is recorded (`application/vnd.sealcam.fragment-stream`):
/// the payload goes first, as each record is sealed, and then this: the
/// signed manifest and its length (`u32`). See `docs/ref/protocol.md`.
pub fn streamed_tail(signed_manifest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed_manifest.len() + STREAMED_TRAILER_LEN);
    out.extend_from_slice(signed_manifest);
    // A signed manifest is far below 4 GiB (at most 256 recipients and 64 gaps).
    out.extend_from_slice(&(signed_manifest.len() as u32).to_be_bytes());
    out
}

/// Splits a streamed upload (`payload ‖ signed manifest ‖ u32 length`) into
/// its signed manifest and payload, as [`join`] takes them.
pub fn split_streamed(body: &[u8]) -> Result<(&[u8], &[u8]), FormatError> {
    let truncated = |needed: usize| FormatError::Truncated {
        what: "streamed fragment",
        offset: 0,
        needed,
        available: body.len(),
    };
    let Some(at) = body.len().checked_sub(STREAMED_TRAILER_LEN) else {
        return Err(truncated(STREAMED_TRAILER_LEN));
    };
    let mut len = [0u8; STREAMED_TRAILER_LEN];
    len.copy_from_slice(&body[at..]);
    let len = u32::from_be_bytes(len) as usize;
    let Some(payload_end) = at.checked_sub(len) else {
        return Err(truncated(len + STREAMED_TRAILER_LEN));
    };
    Ok((&body[payload_end..at], &body[..payload_end]))
}

/// Rebuilds the fragment file from a streamed upload (see [`split_streamed`]).
pub fn join_streamed(body: &[u8]) -> Result<Vec<u8>, FormatError> {
    let (signed_manifest, payload) = split_streamed(body)?;
    join(signed_manifest, payload)
}
