//! Big-endian byte reading and writing with bounds checks.
//!
//! Every decoder in this crate reads untrusted bytes through [`Reader`], which
//! never panics: a short or malformed input becomes a [`FormatError`].

use crate::FormatError;

/// Reads big-endian fields from a byte slice, failing cleanly at the end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What is being read, for error messages ("manifest", "record 3").
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                what: self.what,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A u16 count of `noun`s, refused outside `min..=max` (`recipient
    /// count 0 is outside 1..=64`, `gap count 70 exceeds 64`).
    pub(crate) fn count16(
        &mut self,
        noun: &str,
        min: usize,
        max: usize,
    ) -> Result<usize, FormatError> {
        let offset = self.pos;
        let n = usize::from(self.u16()?);
        if (min..=max).contains(&n) {
            return Ok(n);
        }
        let reason = if min == 0 {
            format!("{noun} count {n} exceeds {max}")
        } else {
            format!("{noun} count {n} is outside {min}..={max}")
        };
        Err(FormatError::Invalid {
            what: self.what,
            offset,
            reason,
        })
    }

    /// A byte string prefixed by its u16 length.
    pub(crate) fn bytes16(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A UTF-8 string prefixed by its u16 length.
    pub(crate) fn str16(&mut self) -> Result<&'a str, FormatError> {
        let offset = self.pos;
        let raw = self.bytes16()?;
        std::str::from_utf8(raw).map_err(|_| FormatError::Invalid {
            what: self.what,
            offset,
            reason: "string is not UTF-8".into(),
        })
    }

    pub(crate) fn finish(self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::Invalid {
                what: self.what,
                offset: self.pos,
                reason: format!("{} unexpected trailing bytes", self.remaining()),
            });
        }
        Ok(())
    }
}

/// Appends big-endian fields to a byte vector.
pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_bytes16(&mut self, v: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    /// Callers guarantee `v.len() <= u16::MAX` (names and keys are bounded by type).
    fn put_bytes16(&mut self, v: &[u8]) {
        let n = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.put_u16(n);
        self.extend_from_slice(&v[..n as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(bytes: [u8; 2], min: usize, max: usize) -> Result<usize, String> {
        Reader::new(&bytes, "manifest")
            .count16("gap", min, max)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn counts_inside_their_bounds_are_read() {
        assert_eq!(count([0, 0], 0, 64), Ok(0));
        assert_eq!(count([0, 64], 1, 64), Ok(64));
    }

    #[test]
    fn counts_outside_their_bounds_say_which_bound() {
        let below = count([0, 0], 1, 64).unwrap_err();
        assert!(below.contains("gap count 0 is outside 1..=64"), "{below}");
        let above = count([0, 65], 0, 64).unwrap_err();
        assert!(above.contains("gap count 65 exceeds 64"), "{above}");
        assert!(above.contains("manifest"), "{above}");
    }
}
