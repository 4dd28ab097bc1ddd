//! The sealed-fragment format, version 1.
//!
//! A camera records a stream as a sequence of *fragments*, each starting at a
//! key frame. Every fragment is sealed on the camera:
//!
//! * each frame is encrypted with AES-256-GCM under a fresh per-fragment data
//!   key, with associated data that binds the device, stream, sequence number,
//!   record index and timing ([`seal`]);
//! * the data key is wrapped with HPKE (RFC 9180, DHKEM(P-256, HKDF-SHA256),
//!   HKDF-SHA256, AES-256-GCM) to every consumer key ([`keys`]);
//! * a [`manifest::Manifest`] names the fragment, chains to the previous
//!   manifest by hash, commits to the sealed payload by the suite's payload
//!   hash (BLAKE3 in suite 2, SHA-256 in suite 1; [`suite`]), and is signed
//!   with the device key (ECDSA P-256).
//!
//! This crate does no I/O. The byte layout is specified in `docs/ref/format.md`.

pub mod bundle;
mod codec;
pub mod coverage;
mod ebml;
pub mod epochs;
pub mod events;
pub mod fragment;
pub mod head;
pub mod keys;
pub mod manifest;
pub mod mkv;
pub mod name;
mod owner_signed;
pub mod recipients;
pub mod restart;
pub mod roster;
pub mod seal;
pub mod suite;
pub mod verify;

pub use fragment::{Record, RecordKind, SealedFragment, SignedManifest};
pub use keys::{ConsumerPublicKey, ConsumerSecretKey, DeviceVerifier, DeviceVerifyingKey, KeyId};
pub use manifest::{DeclaredGap, GapReason, Manifest, ManifestHash, WrappedKey};
pub use name::Name;
pub use seal::{
    Closing, FragmentFile, FragmentSealer, Frame, OpenedFragment, TrackConfig, UnsignedFragment,
};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// What went wrong while decoding or checking sealed bytes.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The input ended before a field was complete.
    #[error("{what} is truncated at byte {offset}: needed {needed} more bytes, {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{what} is invalid at byte {offset}: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    /// The file does not start with the sealed-fragment magic.
    #[error("not a sealed fragment: bad magic bytes (expected {expected:?})")]
    BadMagic { expected: &'static [u8] },
    /// A version this build cannot read.
    #[error("unsupported format version {0}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion(u16),
}

/// What went wrong while sealing, opening or verifying.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The manifest signature does not verify under the device key.
    #[error("manifest signature does not verify with the device key")]
    BadSignature,
    /// The payload does not hash to the value the manifest committed to.
    #[error("sealed payload does not match the manifest's payload hash (content was altered)")]
    PayloadHashMismatch,
    /// The key given is not among the fragment's recipients.
    #[error("key {given} is not a recipient of this fragment; recipients are: {recipients}")]
    NotARecipient { given: KeyId, recipients: String },
    /// HPKE unwrapping of the data key failed.
    #[error("could not unwrap the data key for recipient {0}: wrapped key is corrupt or was made for another key")]
    Unwrap(KeyId),
    /// HPKE wrapping of the data key failed.
    #[error("could not wrap the data key to recipient {0}")]
    Wrap(KeyId),
    /// A record failed AES-GCM authentication.
    #[error("record {index} failed authentication: it was altered, reordered or moved from another fragment")]
    RecordAuthentication { index: u32 },
    /// Sealing needs at least one recipient.
    #[error("no recipients: add at least one consumer public key to the camera config")]
    NoRecipients,
    /// A key file or encoding could not be read.
    #[error("invalid key: {0}")]
    Key(String),
    /// Too many frames or bytes for one fragment.
    #[error("fragment too large: {0}")]
    TooLarge(&'static str),
    /// Records sealed out of the order the format requires.
    #[error("records out of order: {0}")]
    OutOfOrder(&'static str),
}
