//! Reading the TPM's big-endian marshalling: fixed-size integers and
//! TPM2B buffers (a u16 size, then that many bytes).

use crate::AttestError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        if self.bytes.len() < n {
            return Err(AttestError::Truncated { what: self.what });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, AttestError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, AttestError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, AttestError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, AttestError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A TPM2B: u16 size, then the bytes.
    pub(crate) fn sized(&mut self) -> Result<&'a [u8], AttestError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), AttestError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(AttestError::TrailingBytes {
                what: self.what,
                extra: self.bytes.len(),
            })
        }
    }
}

/// Reads a whole TPM2B wrapper: its size must cover exactly the rest.
pub(crate) fn unwrap_sized<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<&'a [u8], AttestError> {
    let mut r = Reader::new(bytes, what);
    let inner = r.sized()?;
    r.finish()?;
    Ok(inner)
}

/// Appends a TPM2B: u16 size, then the bytes.
pub(crate) fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), AttestError> {
    let n = u16::try_from(bytes.len()).map_err(|_| AttestError::TooLong { len: bytes.len() })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A big-endian number without its leading zero bytes.
pub(crate) fn strip_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    &v[first..]
}

/// A big-endian number left-padded to `N` bytes, if it fits.
pub(crate) fn pad<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    let v = strip_zeros(v);
    if v.len() > N {
        return None;
    }
    let mut out = [0u8; N];
    out[N - v.len()..].copy_from_slice(v);
    Some(out)
}
