//! Sealing frames into a fragment on the camera, and opening them with a
//! consumer key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::fragment::{
    begin_record, cluster_start, file_head, RecordKind, SealedFragment, FLAG_KEY_FRAME, FLAG_PADDED,
};
use crate::keys::{ConsumerPublicKey, ConsumerSecretKey};
use crate::manifest::{DeclaredGap, Manifest, ManifestHash, WrappedKey, MAX_GAPS, MAX_RECIPIENTS};
use crate::name::Name;
use crate::suite::{PayloadHasher, DEFAULT_SUITE};
use crate::{FormatError, SealError, FORMAT_VERSION};

const RECORD_AAD_CONTEXT: &[u8] = b"sealcam.v1.record\0";
const DATA_KEY_INFO_CONTEXT: &[u8] = b"sealcam.v1.data-key\0";

/// Codec of a track. Version 1 knows H.264 in AVC form (length-prefixed NAL
/// units, `avcC` codec private data), as Matroska's `V_MPEG4/ISO/AVC`.
pub const CODEC_H264_AVC: u8 = 1;

/// What a player needs to decode the frames: sealed as record 0 because
/// H.264 parameter sets are plaintext video metadata too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackConfig {
    pub codec: u8,
    pub width: u32,
    pub height: u32,
    pub framerate_num: u32,
    pub framerate_den: u32,
    /// For H.264: the `avcC` AVCDecoderConfigurationRecord.
    pub codec_private: Vec<u8>,
}

impl TrackConfig {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.codec_private.len());
        out.put_u8(self.codec);
        out.put_u32(self.width);
        out.put_u32(self.height);
        out.put_u32(self.framerate_num);
        out.put_u32(self.framerate_den);
        out.put_u32(self.codec_private.len() as u32);
        out.extend_from_slice(&self.codec_private);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes, "track config");
        let codec = r.u8()?;
        if codec != CODEC_H264_AVC {
            return Err(FormatError::Invalid {
                what: "track config",
                offset: 0,
                reason: format!("unknown codec {codec}"),
            });
        }
        let width = r.u32()?;
        let height = r.u32()?;
        let framerate_num = r.u32()?;
        let framerate_den = r.u32()?;
        let n = r.u32()? as usize;
        let codec_private = r.take(n)?.to_vec();
        r.finish()?;
        Ok(Self {
            codec,
            width,
            height,
            framerate_num,
            framerate_den,
            codec_private,
        })
    }
}

/// One encoded video frame in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Presentation time in nanoseconds on the stream's clock.
    pub pts_ns: u64,
    pub duration_ns: u64,
    pub key_frame: bool,
    pub data: Vec<u8>,
}

/// The identity of a fragment that every record's authenticated data binds.
struct FragmentContext<'a> {
    device: &'a Name,
    stream: &'a Name,
    sequence: u64,
}

impl FragmentContext<'_> {
    /// Authenticated data of record `index`: it cannot move to another
    /// position, fragment, stream or device. (Its timing and flags are inside
    /// the ciphertext, authenticated too.)
    fn record_aad(&self, index: u32, kind: RecordKind) -> Vec<u8> {
        let mut aad = Vec::with_capacity(RECORD_AAD_CONTEXT.len() + 150);
        aad.extend_from_slice(RECORD_AAD_CONTEXT);
        aad.put_bytes16(self.device.as_str().as_bytes());
        aad.put_bytes16(self.stream.as_str().as_bytes());
        aad.put_u64(self.sequence);
        aad.put_u32(index);
        aad.put_u8(kind as u8);
        aad
    }

    fn data_key_info(&self) -> Vec<u8> {
        let mut info = Vec::with_capacity(DATA_KEY_INFO_CONTEXT.len() + 150);
        info.extend_from_slice(DATA_KEY_INFO_CONTEXT);
        info.put_bytes16(self.device.as_str().as_bytes());
        info.put_bytes16(self.stream.as_str().as_bytes());
        info.put_u64(self.sequence);
        info
    }
}

/// The size a padded plaintext of `len` bytes grows to: the next of four
/// buckets per doubling (256, 320, 384, 448, 512, 640, ...), at least 256
/// bytes. At most a quarter more bytes, about an eighth on average.
pub fn padded_len(len: usize) -> usize {
    if len <= 256 {
        return 256;
    }
    let top = usize::BITS - (len - 1).leading_zeros(); // len <= 2^top
    let step = 1usize << (top - 3);
    len.div_ceil(step) * step
}

/// Length of the sealed header before a frame's bytes.
const FRAME_HEADER_LEN: usize = 1 + 8 + 8;

/// Decodes a frame's plaintext (authenticated already).
fn decode_frame(mut pt: Vec<u8>) -> Option<Frame> {
    let flags = *pt.first()?;
    let pts_ns = u64::from_be_bytes(pt.get(1..9)?.try_into().ok()?);
    let duration_ns = u64::from_be_bytes(pt.get(9..17)?.try_into().ok()?);
    pt.drain(..FRAME_HEADER_LEN);
    if flags & FLAG_PADDED != 0 {
        let len = u32::from_be_bytes(pt.get(..4)?.try_into().ok()?) as usize;
        if len > pt.len() - 4 {
            return None;
        }
        pt.drain(..4);
        pt.truncate(len);
    }
    Some(Frame {
        pts_ns,
        duration_ns,
        key_frame: flags & FLAG_KEY_FRAME != 0,
        data: pt,
    })
}

/// The payload is hashed in steps of this many bytes: whole multiples of
/// 16 BLAKE3 chunks keep every update aligned to the hash tree, so all of
/// it is hashed 16 chunks at a time (with AVX-512; fewer lanes elsewhere)
/// instead of chunk by chunk at each record's unaligned edges.
const HASH_STEP: usize = 16 * 1024;

/// Length of an AES-GCM tag.
const TAG_LEN: usize = 16;

/// The AES-256-GCM key of a fragment (AWS-LC: the same implementation the
/// TLS stack uses; it wipes the key schedule when dropped).
fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::Key("AES-256-GCM key setup failed".into()))
}

/// The nonce of record `index`: unique within a fragment, and every fragment
/// has its own key.
fn nonce(index: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&index.to_be_bytes());
    n
}

/// Seals the frames of one fragment as they arrive.
///
/// Holds the fragment's data key until [`FragmentSealer::finish`], which wraps
/// it to the recipients and drops it (zeroized).
pub struct FragmentSealer {
    device: Name,
    stream: Name,
    sequence: u64,
    key: Zeroizing<[u8; 32]>,
    cipher: LessSafeKey,
    payload: Vec<u8>,
    suite: u16,
    /// The payload hash of `payload[..hashed]`, fed in [`HASH_STEP`]s as
    /// records are sealed (their bytes still in cache).
    hasher: PayloadHasher,
    hashed: usize,
    next_index: u32,
    pad: bool,
    /// The events record is sealed: nothing may follow it.
    events_sealed: bool,
}

impl FragmentSealer {
    /// A sealer for the suite cameras write ([`DEFAULT_SUITE`]).
    pub fn new<R: RngCore + CryptoRng>(
        device: Name,
        stream: Name,
        sequence: u64,
        track: &TrackConfig,
        rng: &mut R,
    ) -> Result<Self, SealError> {
        Self::with_suite(device, stream, sequence, track, DEFAULT_SUITE, rng)
    }

    /// A sealer for an explicit suite (test vectors of older suites).
    pub fn with_suite<R: RngCore + CryptoRng>(
        device: Name,
        stream: Name,
        sequence: u64,
        track: &TrackConfig,
        suite: u16,
        rng: &mut R,
    ) -> Result<Self, SealError> {
        let hasher = PayloadHasher::new(suite).ok_or_else(|| FormatError::Invalid {
            what: "sealer",
            offset: 0,
            reason: format!("unknown algorithm suite {suite}"),
        })?;
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        let cipher = aead_key(&key)?;
        let mut s = Self {
            device,
            stream,
            sequence,
            key,
            cipher,
            payload: cluster_start(),
            suite,
            hasher,
            hashed: 0,
            next_index: 0,
            pad: false,
            events_sealed: false,
        };
        let config = track.encode();
        s.push_record(RecordKind::Track, config.len(), |out| {
            out.extend_from_slice(&config)
        })?;
        Ok(s)
    }

    /// Number of frames sealed so far.
    pub fn frame_count(&self) -> u32 {
        self.next_index
            .saturating_sub(1)
            .saturating_sub(u32::from(self.events_sealed))
    }

    /// Bytes of sealed payload so far.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// The payload sealed so far. It only grows: bytes once here never
    /// change, so an uplink can send them while the fragment is recorded.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Builds the payload in `buffer` (emptied first; typically the last
    /// fragment's, from [`FragmentFile::into_buffer`]) so that steady
    /// recording allocates no new memory per fragment.
    pub fn reuse_buffer(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        buffer.extend_from_slice(&self.payload);
        self.payload = buffer;
    }

    /// Makes room for `bytes` more of payload at once, so a fragment of the
    /// expected size (the previous one's, say) is not copied as it grows.
    pub fn reserve(&mut self, bytes: usize) {
        self.payload.reserve(bytes);
    }

    /// Pads every following frame to a size bucket (see [`padded_len`]).
    pub fn pad_frames(&mut self, on: bool) {
        self.pad = on;
    }

    /// Seals one frame: `flags u8 | pts_ns u64 | duration_ns u64 | bytes`,
    /// where bytes are the frame, or with padding `u32 length | frame | zeros`.
    pub fn push_frame(&mut self, frame: &Frame) -> Result<(), SealError> {
        if self.events_sealed {
            return Err(SealError::OutOfOrder("a frame after the events record"));
        }
        let mut flags = if frame.key_frame { FLAG_KEY_FRAME } else { 0 };
        if self.pad {
            flags |= FLAG_PADDED;
        }
        let body = if self.pad {
            padded_len(frame.data.len() + 4)
        } else {
            frame.data.len()
        };
        let len = u32::try_from(frame.data.len())
            .map_err(|_| SealError::TooLarge("frame larger than 4 GiB"))?;
        let pad = self.pad;
        self.push_record(RecordKind::Frame, FRAME_HEADER_LEN + body, |out| {
            let start = out.len();
            out.put_u8(flags);
            out.put_u64(frame.pts_ns);
            out.put_u64(frame.duration_ns);
            if pad {
                out.put_u32(len);
            }
            out.extend_from_slice(&frame.data);
            out.resize(start + FRAME_HEADER_LEN + body, 0);
        })
    }

    /// Seals the fragment's event marks ([`crate::events`]) after its last
    /// frame: one record of fixed size, however many marks (none too). A
    /// camera that marks events calls this for every fragment, just before
    /// [`Self::finish`]; no frame may follow.
    pub fn seal_events(&mut self, events: &crate::events::Events) -> Result<(), SealError> {
        if self.events_sealed {
            return Err(SealError::OutOfOrder(
                "a second events record in one fragment",
            ));
        }
        let plain = events.encode();
        self.push_record(RecordKind::Events, plain.len(), |out| {
            out.extend_from_slice(&plain)
        })?;
        self.events_sealed = true;
        Ok(())
    }

    /// Appends one record's SimpleBlock to the payload: the plaintext is
    /// written by `write` straight into place (`len` bytes) and encrypted
    /// there, so a frame is copied once.
    fn push_record(
        &mut self,
        kind: RecordKind,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), SealError> {
        let index = self.next_index;
        let ctx = FragmentContext {
            device: &self.device,
            stream: &self.stream,
            sequence: self.sequence,
        };
        let aad = ctx.record_aad(index, kind);
        let start = begin_record(&mut self.payload, kind, len + TAG_LEN);
        write(&mut self.payload);
        if self.payload.len() != start + len {
            return Err(SealError::TooLarge("record plaintext length mismatch"));
        }
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce(index)),
                Aad::from(aad.as_slice()),
                &mut self.payload[start..],
            )
            .map_err(|_| SealError::TooLarge("frame exceeds the AES-GCM message limit"))?;
        self.payload.extend_from_slice(tag.as_ref());
        let ready = (self.payload.len() - self.hashed) / HASH_STEP * HASH_STEP;
        if ready > 0 {
            self.hasher
                .update(&self.payload[self.hashed..self.hashed + ready]);
            self.hashed += ready;
        }
        self.next_index = index
            .checked_add(1)
            .ok_or(SealError::TooLarge("more than 2^32 frames in one fragment"))?;
        Ok(())
    }

    /// Wraps the data key to every recipient, drops it, and builds the manifest.
    pub fn finish<R: RngCore + CryptoRng>(
        self,
        closing: Closing<'_>,
        rng: &mut R,
    ) -> Result<UnsignedFragment, SealError> {
        let Closing {
            prev,
            start_unix_ns,
            end_unix_ns,
            recipients,
            recipient_set_version,
            gaps,
        } = closing;
        if gaps.len() > MAX_GAPS {
            return Err(SealError::TooLarge("more than 64 declared gaps"));
        }
        if recipients.is_empty() {
            return Err(SealError::NoRecipients);
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(SealError::TooLarge("more than 256 recipients"));
        }
        let ctx = FragmentContext {
            device: &self.device,
            stream: &self.stream,
            sequence: self.sequence,
        };
        let info = ctx.data_key_info();
        let mut wrapped = Vec::with_capacity(recipients.len());
        for r in recipients {
            let (enc, ciphertext) = r.wrap(&self.key, &info, rng)?;
            wrapped.push(WrappedKey {
                recipient: r.id(),
                enc,
                ciphertext,
            });
        }
        let manifest = Manifest {
            version: FORMAT_VERSION,
            suite: self.suite,
            device: self.device.clone(),
            stream: self.stream.clone(),
            sequence: self.sequence,
            prev,
            start_unix_ns,
            end_unix_ns: end_unix_ns.max(start_unix_ns),
            frame_count: self.frame_count(),
            payload_len: self.payload.len() as u64,
            payload_hash: {
                let mut hasher = self.hasher;
                hasher.update(&self.payload[self.hashed..]);
                hasher.finish()
            },
            recipient_set_version,
            recipients: wrapped,
            gaps,
        };
        let body = manifest.encode();
        Ok(UnsignedFragment {
            manifest,
            body,
            payload: self.payload,
        })
        // `self.key` and `self.cipher` are zeroized on drop here.
    }
}

/// What closing a fragment needs besides its frames.
pub struct Closing<'a> {
    /// Hash of the previous manifest in the stream.
    pub prev: ManifestHash,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub recipients: &'a [ConsumerPublicKey],
    /// Version of the owner-signed recipient set (0: development list).
    pub recipient_set_version: u64,
    /// Gaps since the previous fragment that the device explains.
    pub gaps: Vec<DeclaredGap>,
}

impl<'a> Closing<'a> {
    /// A closing with no gaps and the development recipient list.
    pub fn simple(
        prev: ManifestHash,
        start_unix_ns: u64,
        end_unix_ns: u64,
        recipients: &'a [ConsumerPublicKey],
    ) -> Self {
        Self {
            prev,
            start_unix_ns,
            end_unix_ns,
            recipients,
            recipient_set_version: 0,
            gaps: Vec::new(),
        }
    }
}

/// A sealed fragment waiting for the device signature.
pub struct UnsignedFragment {
    pub manifest: Manifest,
    body: Vec<u8>,
    payload: Vec<u8>,
}

impl UnsignedFragment {
    /// What the device key must sign (ECDSA P-256 with SHA-256).
    pub fn signing_message(&self) -> Vec<u8> {
        Manifest::signing_message(&self.body)
    }

    pub fn manifest_hash(&self) -> ManifestHash {
        ManifestHash::of_body(&self.body)
    }

    /// The manifest as it is attached, given the signature: the key object
    /// (see [`SealedFragment::signed_manifest`]).
    pub fn signed_manifest(&self, signature: &[u8; 64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + signature.len());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(signature);
        out
    }

    /// The fragment file, given the signature (r || s), as its two parts.
    pub fn sign(self, signature: &[u8; 64]) -> FragmentFile {
        FragmentFile {
            head: file_head(&self.body, signature, self.payload.len()),
            payload: self.payload,
        }
    }

    /// The complete fragment file in one buffer, given the signature.
    pub fn into_file(self, signature: &[u8; 64]) -> Vec<u8> {
        self.sign(signature).to_vec()
    }
}

/// A signed fragment file: `head ‖ payload`, kept in two parts so that the
/// payload is written and sent without being copied, and its buffer can
/// serve the next fragment ([`FragmentSealer::reuse_buffer`]).
pub struct FragmentFile {
    head: Vec<u8>,
    payload: Vec<u8>,
}

impl FragmentFile {
    /// The file's bytes, in order.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.payload]
    }

    /// Length of the whole file.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// Whether the file is empty (never, for a sealed fragment).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole file in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.payload);
        out
    }

    /// The payload's buffer, for the next fragment. It held ciphertext only.
    pub fn into_buffer(self) -> Vec<u8> {
        self.payload
    }
}

/// A fragment opened with a consumer key.
#[derive(Debug)]
pub struct OpenedFragment {
    pub track: TrackConfig,
    pub frames: Vec<Frame>,
    /// Its event marks, when the camera seals them (`None`: it does not).
    pub events: Option<crate::events::Events>,
}

impl SealedFragment<'_> {
    /// Unwraps the data key with `key` and decrypts every record.
    ///
    /// Callers that care about provenance check [`SealedFragment::verify`]
    /// first; this checks each record's authenticity under the data key.
    pub fn open(&self, key: &ConsumerSecretKey) -> Result<OpenedFragment, SealError> {
        let data_key = self.data_key(key)?;
        self.open_with_data_key(&data_key)
    }

    /// Unwraps this fragment's data key with `key`, one of its recipients'.
    /// The key opens this fragment only: each fragment has its own.
    pub fn data_key(&self, key: &ConsumerSecretKey) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let id = key.public().id();
        let wrapped = self
            .manifest
            .recipients
            .iter()
            .find(|w| w.recipient == id)
            .ok_or_else(|| SealError::NotARecipient {
                given: id,
                recipients: self.manifest.recipient_list(),
            })?;
        let ctx = FragmentContext {
            device: &self.manifest.device,
            stream: &self.manifest.stream,
            sequence: self.manifest.sequence,
        };
        key.unwrap_key(&wrapped.enc, &wrapped.ciphertext, &ctx.data_key_info())
    }

    /// Decrypts every record with the fragment's data key (from
    /// [`SealedFragment::data_key`] or a disclosure): AES-GCM authenticates
    /// each record, so a key of another fragment, or an altered record,
    /// fails here.
    pub fn open_with_data_key(&self, data_key: &[u8; 32]) -> Result<OpenedFragment, SealError> {
        let ctx = FragmentContext {
            device: &self.manifest.device,
            stream: &self.manifest.stream,
            sequence: self.manifest.sequence,
        };
        let cipher = aead_key(data_key)?;
        let records = self.records()?;
        let mut track = None;
        let mut events = None;
        let mut frames = Vec::with_capacity(records.len().saturating_sub(1));
        for rec in records {
            let aad = ctx.record_aad(rec.index, rec.kind);
            let mut pt = rec.ciphertext.to_vec();
            let len = cipher
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce(rec.index)),
                    Aad::from(aad.as_slice()),
                    &mut pt,
                )
                .map_err(|_| SealError::RecordAuthentication { index: rec.index })?
                .len();
            pt.truncate(len);
            match rec.kind {
                RecordKind::Track => track = Some(TrackConfig::decode(&pt)?),
                RecordKind::Frame => frames.push(decode_frame(pt).ok_or(FormatError::Invalid {
                    what: "record",
                    offset: rec.index as usize,
                    reason: "frame header or padding is malformed".into(),
                })?),
                RecordKind::Events => events = Some(crate::events::Events::decode(&pt)?),
            }
        }
        let track = track.ok_or(FormatError::Invalid {
            what: "payload",
            offset: 0,
            reason: "no track record".into(),
        })?;
        Ok(OpenedFragment {
            track,
            frames,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::assemble;
    use crate::keys::DeviceVerifyingKey;
    use p256::ecdsa::signature::Signer;

    pub(crate) fn track() -> TrackConfig {
        TrackConfig {
            codec: CODEC_H264_AVC,
            width: 320,
            height: 240,
            framerate_num: 30,
            framerate_den: 1,
            codec_private: vec![1, 0x64, 0, 0x1f, 0xff],
        }
    }

    fn frames(n: u64) -> Vec<Frame> {
        (0..n)
            .map(|i| Frame {
                pts_ns: i * 33_333_333,
                duration_ns: 33_333_333,
                key_frame: i == 0,
                data: vec![i as u8; 100 + i as usize],
            })
            .collect()
    }

    fn seal(
        seq: u64,
        recipients: &[ConsumerPublicKey],
        device_key: &p256::ecdsa::SigningKey,
    ) -> Vec<u8> {
        let mut rng = rand::thread_rng();
        let mut s = FragmentSealer::new(
            Name::new("cam1").unwrap(),
            Name::new("front").unwrap(),
            seq,
            &track(),
            &mut rng,
        )
        .unwrap();
        for f in frames(5) {
            s.push_frame(&f).unwrap();
        }
        let u = s
            .finish(
                Closing::simple(ManifestHash::GENESIS, 1_000, 2_000, recipients),
                &mut rng,
            )
            .unwrap();
        let sig: p256::ecdsa::Signature = device_key.sign(&u.signing_message());
        u.into_file(&sig.to_bytes().into())
    }

    /// Seals `frames` (large enough to cross several hash steps) with a
    /// fixed RNG, optionally into a reused buffer.
    fn seal_seeded(suite: u16, frames: &[Frame], buffer: Option<Vec<u8>>) -> FragmentFile {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let consumer = ConsumerSecretKey::generate(&mut rng);
        let mut s = FragmentSealer::with_suite(
            Name::new("cam1").unwrap(),
            Name::new("front").unwrap(),
            9,
            &track(),
            suite,
            &mut rng,
        )
        .unwrap();
        if let Some(buffer) = buffer {
            s.reuse_buffer(buffer);
        }
        for f in frames {
            s.push_frame(f).unwrap();
        }
        s.finish(
            Closing::simple(ManifestHash::GENESIS, 1, 2, &[consumer.public().clone()]),
            &mut rng,
        )
        .unwrap()
        .sign(&[7u8; 64])
    }

    #[test]
    fn a_reused_buffer_and_the_two_part_file_give_the_same_bytes() {
        let big: Vec<Frame> = (0..6u64)
            .map(|i| Frame {
                pts_ns: i,
                duration_ns: 1,
                key_frame: i == 0,
                data: vec![i as u8; 5_000 + 7_919 * i as usize],
            })
            .collect();
        for suite in crate::suite::KNOWN_SUITES {
            let fresh = seal_seeded(suite, &big, None);
            // A buffer full of another fragment's bytes, larger than needed.
            let dirty = vec![0xee; fresh.len() * 2];
            let reused = seal_seeded(suite, &big, Some(dirty));
            assert_eq!(fresh.to_vec(), reused.to_vec(), "suite {suite}");
            assert_eq!(fresh.parts().concat(), fresh.to_vec());
            assert_eq!(fresh.len(), fresh.to_vec().len());
            let file = fresh.to_vec();
            let parsed = SealedFragment::parse(&file).unwrap();
            assert_eq!(parsed.manifest.suite, suite);
            // The incremental, step-wise hash equals a one-shot hash.
            assert_eq!(
                Some(parsed.manifest.payload_hash),
                crate::suite::payload_hash(suite, parsed.payload)
            );
        }
    }

    #[test]
    fn seal_verify_open_round_trip() {
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let a = ConsumerSecretKey::generate(&mut rng);
        let b = ConsumerSecretKey::generate(&mut rng);
        let file = seal(7, &[a.public().clone(), b.public().clone()], &dk);
        let frag = SealedFragment::parse(&file).unwrap();
        frag.verify(&DeviceVerifyingKey(*dk.verifying_key()))
            .unwrap();
        for k in [&a, &b] {
            let opened = frag.open(k).unwrap();
            assert_eq!(opened.track, track());
            assert_eq!(opened.frames, frames(5));
        }
    }

    #[test]
    fn padding_hides_sizes_and_comes_off_again() {
        let mut rng = rand::thread_rng();
        let a = ConsumerSecretKey::generate(&mut rng);
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let mut s = FragmentSealer::new(
            Name::new("c").unwrap(),
            Name::new("s").unwrap(),
            0,
            &track(),
            &mut rng,
        )
        .unwrap();
        s.pad_frames(true);
        let sizes = [1usize, 300, 301, 5000, 5001];
        for (i, n) in sizes.iter().enumerate() {
            s.push_frame(&Frame {
                pts_ns: i as u64,
                duration_ns: 1,
                key_frame: i == 0,
                data: vec![7; *n],
            })
            .unwrap();
        }
        let u = s
            .finish(
                Closing::simple(ManifestHash::GENESIS, 0, 1, &[a.public().clone()]),
                &mut rng,
            )
            .unwrap();
        let sig: p256::ecdsa::Signature = dk.sign(&u.signing_message());
        let file = u.into_file(&sig.to_bytes().into());
        let frag = SealedFragment::parse(&file).unwrap();
        let ct: Vec<usize> = frag.records().unwrap()[1..]
            .iter()
            .map(|r| r.ciphertext.len())
            .collect();
        // 300 and 301 bytes look alike, as do 5000 and 5001.
        assert_eq!(ct[1], ct[2]);
        assert_eq!(ct[3], ct[4]);
        let opened = frag.open(&a).unwrap();
        let got: Vec<usize> = opened.frames.iter().map(|f| f.data.len()).collect();
        assert_eq!(got, sizes);
    }

    #[test]
    fn buckets_cost_at_most_a_quarter() {
        for len in 1..100_000usize {
            let p = padded_len(len);
            assert!(p >= len && (len <= 256 || p * 4 <= len * 5), "{len} -> {p}");
        }
    }

    #[test]
    fn non_recipient_is_told_the_recipient_ids() {
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let a = ConsumerSecretKey::generate(&mut rng);
        let stranger = ConsumerSecretKey::generate(&mut rng);
        let file = seal(0, &[a.public().clone()], &dk);
        let frag = SealedFragment::parse(&file).unwrap();
        let err = frag.open(&stranger).unwrap_err().to_string();
        assert!(err.contains(&a.public().id().to_string()), "{err}");
        assert!(err.contains(&stranger.public().id().to_string()), "{err}");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let vk = DeviceVerifyingKey(*dk.verifying_key());
        let a = ConsumerSecretKey::generate(&mut rng);
        let file = seal(3, &[a.public().clone()], &dk);
        for i in (0..file.len()).step_by(7) {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            let ok = SealedFragment::parse(&bad)
                .map(|f| f.verify(&vk).is_ok())
                .unwrap_or(false);
            assert!(!ok, "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn swapped_frames_fail_authentication() {
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let a = ConsumerSecretKey::generate(&mut rng);
        let file = seal(1, &[a.public().clone()], &dk);
        let frag = SealedFragment::parse(&file).unwrap();
        let recs = frag.records().unwrap();
        // Records 1 and 2 swapped, under the same (re-signed) manifest: as if
        // the device key itself had been used to reorder them.
        let swapped_records = [0usize, 2, 1, 3, 4, 5].map(|i| recs[i].clone());
        let reframed = frag.reassemble(&swapped_records);
        let moved = SealedFragment::parse(&reframed).unwrap();
        let mut m = moved.manifest.clone();
        m.payload_hash = crate::suite::payload_hash(m.suite, moved.payload).unwrap();
        let body = m.encode();
        let sig: p256::ecdsa::Signature = dk.sign(&Manifest::signing_message(&body));
        let swapped = assemble(&body, &sig.to_bytes().into(), moved.payload);
        let frag2 = SealedFragment::parse(&swapped).unwrap();
        frag2
            .verify(&DeviceVerifyingKey(*dk.verifying_key()))
            .unwrap();
        let err = frag2.open(&a).unwrap_err();
        assert!(
            matches!(err, SealError::RecordAuthentication { index: 1 }),
            "{err}"
        );
    }

    #[test]
    fn event_marks_are_sealed_after_the_frames_and_opened_again() {
        use crate::events::{EventKind, EventMark, Events};
        let mut rng = rand::thread_rng();
        let a = ConsumerSecretKey::generate(&mut rng);
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let seal_with = |events: &Events| {
            let mut rng = rand::thread_rng();
            let mut s = FragmentSealer::new(
                Name::new("cam1").unwrap(),
                Name::new("front").unwrap(),
                4,
                &track(),
                &mut rng,
            )
            .unwrap();
            for f in frames(3) {
                s.push_frame(&f).unwrap();
            }
            s.seal_events(events).unwrap();
            // Nothing follows the events record.
            assert!(matches!(
                s.push_frame(&frames(1)[0]),
                Err(SealError::OutOfOrder(_))
            ));
            assert!(matches!(
                s.seal_events(events),
                Err(SealError::OutOfOrder(_))
            ));
            assert_eq!(s.frame_count(), 3);
            let u = s
                .finish(
                    Closing::simple(ManifestHash::GENESIS, 0, 1, &[a.public().clone()]),
                    &mut rng,
                )
                .unwrap();
            let sig: p256::ecdsa::Signature = dk.sign(&u.signing_message());
            u.into_file(&sig.to_bytes().into())
        };
        let door = Events::of(&[EventMark {
            kind: EventKind::Trigger,
            at_ns: 33_333_333,
            label: "door".into(),
        }]);
        let marked = seal_with(&door);
        let quiet = seal_with(&Events::default());
        // The same size with a mark or without: the server learns nothing.
        assert_eq!(marked.len(), quiet.len());
        let frag = SealedFragment::parse(&marked).unwrap();
        frag.verify(&DeviceVerifyingKey(*dk.verifying_key()))
            .unwrap();
        let opened = frag.open(&a).unwrap();
        assert_eq!(opened.frames.len(), 3);
        assert_eq!(opened.events, Some(door));
        // Without the record (a camera that does not mark events): none.
        let plain = seal(1, &[a.public().clone()], &dk);
        let opened = SealedFragment::parse(&plain).unwrap().open(&a).unwrap();
        assert_eq!(opened.events, None);

        // A frame passed off as the events record, under a re-signed
        // manifest (as if the device key did it): the kind is in the AAD.
        let recs = frag.records().unwrap();
        let mut relabelled = recs[..3].to_vec();
        relabelled.push(crate::Record {
            kind: RecordKind::Events,
            ..recs[3].clone()
        });
        let mut payload = crate::fragment::cluster_start();
        for r in &relabelled {
            crate::fragment::put_record(&mut payload, r.kind, r.ciphertext);
        }
        let mut m = frag.manifest.clone();
        m.frame_count = 2;
        m.payload_len = payload.len() as u64;
        m.payload_hash = crate::suite::payload_hash(m.suite, &payload).unwrap();
        let body = m.encode();
        let sig: p256::ecdsa::Signature = dk.sign(&Manifest::signing_message(&body));
        let forged = assemble(&body, &sig.to_bytes().into(), &payload);
        let err = SealedFragment::parse(&forged)
            .unwrap()
            .open(&a)
            .unwrap_err();
        assert!(
            matches!(err, SealError::RecordAuthentication { index: 3 }),
            "{err}"
        );
    }
}
