//! The envelope of every document the owner signs offline (recipient sets,
//! device rosters): magic, body length, body, and an ECDSA P-256 signature
//! over a context string that names the kind of document, then the body.
//!
//! ```text
//! magic      8 bytes, one per kind of document
//! body_len   u32
//! body       body_len bytes; starts with format u16 = 1 | suite u16 = 1
//! signature  64 bytes, ECDSA P-256 r || s over context || body
//! ```
//!
//! The context keeps a signature of one kind from being taken for another.

use p256::ecdsa::signature::{Signer, Verifier};

use crate::codec::{Reader, Writer};
use crate::keys::DeviceVerifyingKey;
use crate::manifest::SUITE_V1;
use crate::{FormatError, SealError, FORMAT_VERSION};

/// A kind of owner-signed document.
pub(crate) struct Kind {
    pub magic: &'static [u8; 8],
    /// Signed before the body: `sealcam <kind> v1\0`.
    pub context: &'static [u8],
    /// What it is called in errors: `recipient set`.
    pub what: &'static str,
}

/// An owner-signed document as read, signature not yet checked.
pub(crate) struct Envelope<'a> {
    body: &'a [u8],
    signature: [u8; 64],
}

/// The body's header: format version and suite.
pub(crate) fn put_header(out: &mut Vec<u8>) {
    out.put_u16(FORMAT_VERSION);
    out.put_u16(SUITE_V1);
}

/// Signs `body` with the owner key; returns the file.
pub(crate) fn sign(kind: &Kind, body: &[u8], owner: &p256::ecdsa::SigningKey) -> Vec<u8> {
    let mut msg = kind.context.to_vec();
    msg.extend_from_slice(body);
    let sig: p256::ecdsa::Signature = owner.sign(&msg);
    let mut out = kind.magic.to_vec();
    out.put_u32(body.len() as u32);
    out.extend_from_slice(body);
    out.extend_from_slice(&sig.to_bytes());
    out
}

impl<'a> Envelope<'a> {
    /// Splits a file into body and signature, and reads the body's header;
    /// returns the envelope and a reader positioned after the header.
    pub(crate) fn parse(kind: &Kind, bytes: &'a [u8]) -> Result<(Self, Reader<'a>), FormatError> {
        let mut r = Reader::new(bytes, kind.what);
        if r.take(kind.magic.len()).ok() != Some(&kind.magic[..]) {
            return Err(FormatError::BadMagic {
                expected: kind.magic,
            });
        }
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        let signature = r.array::<64>()?;
        r.finish()?;
        let mut b = Reader::new(body, kind.what);
        let version = b.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let offset = b.position();
        let suite = b.u16()?;
        if suite != SUITE_V1 {
            return Err(FormatError::Invalid {
                what: kind.what,
                offset,
                reason: format!("unknown algorithm suite {suite}"),
            });
        }
        Ok((Self { body, signature }, b))
    }

    /// Checks the owner's signature.
    pub(crate) fn verify(&self, kind: &Kind, owner: &DeviceVerifyingKey) -> Result<(), SealError> {
        let mut msg = kind.context.to_vec();
        msg.extend_from_slice(self.body);
        let sig = p256::ecdsa::Signature::from_slice(&self.signature)
            .map_err(|_| SealError::BadSignature)?;
        owner.0.verify(&msg, &sig).map_err(|_| {
            SealError::Key(format!("the {} is not signed by the owner key", kind.what))
        })
    }
}
