//! The per-fragment manifest: what the device signs.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::keys::{DeviceVerifier, KeyId};
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

pub use crate::suite::SUITE_V1;

/// Most gaps one manifest may declare.
pub const MAX_GAPS: usize = 64;

/// Why fragments or time are missing, as the device declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GapReason {
    /// The daemon stopped cleanly and started again.
    Restart = 1,
    /// The daemon or the device stopped uncleanly (crash, kill, power loss);
    /// the fragment being recorded was lost.
    Crash = 2,
    /// The spool was full and dropped fragments.
    SpoolEvicted = 3,
    /// The camera stopped delivering frames.
    SourceStalled = 4,
    /// The wall clock jumped; the time span is where no video can be.
    ClockJump = 5,
    /// The ingest refused the fragments for good.
    RefusedByIngest = 6,
    /// The camera could not write the fragments to its spool (its disk was
    /// full or failing).
    SpoolWriteFailed = 7,
}

impl GapReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Restart,
            2 => Self::Crash,
            3 => Self::SpoolEvicted,
            4 => Self::SourceStalled,
            5 => Self::ClockJump,
            6 => Self::RefusedByIngest,
            7 => Self::SpoolWriteFailed,
            _ => return None,
        })
    }

    /// Every reason, in code order.
    pub const ALL: [Self; 7] = [
        Self::Restart,
        Self::Crash,
        Self::SpoolEvicted,
        Self::SourceStalled,
        Self::ClockJump,
        Self::RefusedByIngest,
        Self::SpoolWriteFailed,
    ];

    /// Its name on the command line (`--accept-gap refused-by-ingest`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Crash => "crash",
            Self::SpoolEvicted => "spool-evicted",
            Self::SourceStalled => "source-stalled",
            Self::ClockJump => "clock-jump",
            Self::RefusedByIngest => "refused-by-ingest",
            Self::SpoolWriteFailed => "spool-write-failed",
        }
    }

    /// The reason named `name` (see [`GapReason::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether the receiving service could have brought this gap about
    /// without touching the camera: by refusing a fragment until an operator
    /// gave it up (`RefusedByIngest`), or by refusing service until the
    /// camera's spool overflowed (`SpoolEvicted`; a network outage does the
    /// same). A verifier accepts such a gap only when asked to by name.
    pub fn server_can_cause(self) -> bool {
        matches!(self, Self::RefusedByIngest | Self::SpoolEvicted)
    }

    /// Who could have caused a gap of this reason, for reports.
    pub fn who_could_cause(self) -> &'static str {
        match self {
            Self::SpoolEvicted => {
                "the ingest (refusing service until the spool overflowed), the network, or the camera's spool limits"
            }
            Self::RefusedByIngest => {
                "the ingest (refusing the fragment), with the camera operator's consent"
            }
            Self::Restart | Self::Crash => "whoever stops or powers the camera",
            Self::SourceStalled => "the camera's sensor or whoever covers or disconnects it",
            Self::ClockJump => "the camera's clock or its time source",
            Self::SpoolWriteFailed => "the camera's storage",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Restart => "recorder restarted",
            Self::Crash => "recorder interrupted (crash or power loss)",
            Self::SpoolEvicted => {
                "spool full or past its age limit: fragments dropped on the camera"
            }
            Self::SourceStalled => "camera delivered no frames",
            Self::ClockJump => "wall clock jumped",
            Self::RefusedByIngest => "ingest refused the fragments",
            Self::SpoolWriteFailed => {
                "camera's disk full or failing: fragments could not be stored"
            }
        }
    }
}

/// A gap the device explains in a signed manifest: missing sequence numbers
/// (`sequence_count` of them from `first_sequence`; none for a pure time
/// gap) and the time span without video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeclaredGap {
    pub reason: GapReason,
    pub first_sequence: u64,
    pub sequence_count: u64,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
}

impl DeclaredGap {
    /// Whether the gap declares `sequence` missing.
    pub fn covers(&self, sequence: u64) -> bool {
        sequence >= self.first_sequence && sequence - self.first_sequence < self.sequence_count
    }
}

/// Everything the device signs about one fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub version: u16,
    /// The algorithm suite ([`crate::suite`]).
    pub suite: u16,
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
    /// The suite's payload hash over the sealed payload: SHA-256 in suite 1,
    /// BLAKE3-256 in suite 2.
    pub payload_hash: [u8; 32],
    /// Version of the owner-signed recipient set the data key was wrapped
    /// for; 0 for a development list from the camera's config.
    pub recipient_set_version: u64,
    pub recipients: Vec<WrappedKey>,
    /// Gaps before this fragment that the device explains.
    pub gaps: Vec<DeclaredGap>,
}

impl Manifest {
    /// The canonical encoding of the manifest body (what is hashed and signed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.recipients.len() * 128);
        out.put_u16(self.version);
        out.put_u16(self.suite);
        out.put_bytes16(self.device.as_str().as_bytes());
        out.put_bytes16(self.stream.as_str().as_bytes());
        out.put_u64(self.sequence);
        out.extend_from_slice(&self.prev.0);
        out.put_u64(self.start_unix_ns);
        out.put_u64(self.end_unix_ns);
        out.put_u32(self.frame_count);
        out.put_u64(self.payload_len);
        out.extend_from_slice(&self.payload_hash);
        out.put_u64(self.recipient_set_version);
        out.put_u16(self.recipients.len() as u16);
        for r in &self.recipients {
            out.extend_from_slice(&r.recipient.0);
            out.put_bytes16(&r.enc);
            out.put_bytes16(&r.ciphertext);
        }
        out.put_u16(self.gaps.len() as u16);
        for g in &self.gaps {
            out.put_u8(g.reason as u8);
            out.put_u64(g.first_sequence);
            out.put_u64(g.sequence_count);
            out.put_u64(g.start_unix_ns);
            out.put_u64(g.end_unix_ns);
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
        let offset = r.position();
        let suite = r.u16()?;
        if !crate::suite::is_known(suite) {
            return Err(FormatError::Invalid {
                what: "manifest",
                offset,
                reason: format!(
                    "unknown algorithm suite {suite}; this build knows suites {:?}",
                    crate::suite::KNOWN_SUITES
                ),
            });
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
        let payload_hash = r.array()?;
        let recipient_set_version = r.u64()?;
        let n = r.count16("recipient", 1, MAX_RECIPIENTS)?;
        let mut recipients = Vec::with_capacity(n);
        for _ in 0..n {
            recipients.push(WrappedKey {
                recipient: KeyId(r.array()?),
                enc: r.bytes16()?.to_vec(),
                ciphertext: r.bytes16()?.to_vec(),
            });
        }
        let n = r.count16("gap", 0, MAX_GAPS)?;
        let mut gaps = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = r.position();
            let reason = GapReason::from_u8(r.u8()?).ok_or(FormatError::Invalid {
                what: "manifest",
                offset,
                reason: "unknown gap reason".into(),
            })?;
            let gap = DeclaredGap {
                reason,
                first_sequence: r.u64()?,
                sequence_count: r.u64()?,
                start_unix_ns: r.u64()?,
                end_unix_ns: r.u64()?,
            };
            if gap.end_unix_ns < gap.start_unix_ns {
                return Err(FormatError::Invalid {
                    what: "manifest",
                    offset,
                    reason: "gap ends before it starts".into(),
                });
            }
            gaps.push(gap);
        }
        r.finish()?;
        Ok(Self {
            version,
            suite,
            device,
            stream,
            sequence,
            prev,
            start_unix_ns,
            end_unix_ns,
            frame_count,
            payload_len,
            payload_hash,
            recipient_set_version,
            recipients,
            gaps,
        })
    }

    /// The exact bytes the device signs for an encoded body.
    pub fn signing_message(body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
        m.extend_from_slice(SIGNING_CONTEXT);
        m.extend_from_slice(body);
        m
    }

    /// Checks the device's ECDSA P-256 / SHA-256 signature (64 bytes,
    /// r || s) over `body`.
    pub fn verify_signature(
        body: &[u8],
        signature: &[u8; 64],
        key: &DeviceVerifier,
    ) -> Result<(), SealError> {
        key.verify(&Self::signing_message(body), signature)
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

#[cfg(test)]
mod tests {
    use super::GapReason;

    #[test]
    fn every_gap_reason_has_one_name_and_all_lists_every_code() {
        let from_codes: Vec<GapReason> = (0..=u8::MAX).filter_map(GapReason::from_u8).collect();
        assert_eq!(from_codes, GapReason::ALL);
        for r in GapReason::ALL {
            assert_eq!(GapReason::from_name(r.name()), Some(r));
        }
        assert_eq!(GapReason::from_name("Refused"), None);
        let server: Vec<&str> = GapReason::ALL
            .into_iter()
            .filter(|r| r.server_can_cause())
            .map(GapReason::name)
            .collect();
        assert_eq!(server, ["spool-evicted", "refused-by-ingest"]);
    }
}
