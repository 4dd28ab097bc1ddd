//! A partition of a disk image as a stream of its own: reads, writes and
//! seeks stay inside `[start, start + len)` of the image.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// `len` bytes of `inner` from `start`, with its own position.
pub struct Window<F> {
    inner: F,
    start: u64,
    len: u64,
    pos: u64,
}

impl<F> Window<F> {
    pub fn new(inner: F, start: u64, len: u64) -> Self {
        Self {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    /// The image again.
    pub fn into_inner(self) -> F {
        self.inner
    }

    /// How many bytes of `want` fit before the end, and where they start.
    fn room(&self, want: usize) -> Option<(u64, usize)> {
        let left = self.len.checked_sub(self.pos)?;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(want);
        Some((self.start.checked_add(self.pos)?, n))
    }
}

impl<F: Read + Seek> Read for Window<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((at, n)) = self.room(buf.len()) else {
            return Ok(0);
        };
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(at))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<F: Write + Seek> Write for Window<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((at, n)) = self.room(buf.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the partition's end",
            ));
        };
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the partition's end",
            ));
        }
        self.inner.seek(SeekFrom::Start(at))?;
        let put = self.inner.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F> Seek for Window<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => (0i128, i128::from(n)),
            SeekFrom::End(d) => (i128::from(self.len), i128::from(d)),
            SeekFrom::Current(d) => (i128::from(self.pos), i128::from(d)),
        };
        let new = base + delta;
        let new = u64::try_from(new).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition's start",
            )
        })?;
        self.pos = new;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    proptest! {
        #[test]
        fn reads_and_writes_stay_inside(
            image_len in 0usize..4096,
            start in 0u64..5000,
            len in 0u64..5000,
            at in 0u64..6000,
            data in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let image = vec![0xAAu8; image_len];
            let mut w = Window::new(Cursor::new(image), start, len);
            w.seek(SeekFrom::Start(at)).unwrap();
            let _ = w.write(&data);
            w.seek(SeekFrom::Start(at)).unwrap();
            let mut back = vec![0u8; data.len()];
            let _ = w.read(&mut back);
            let image = w.into_inner().into_inner();
            let end = start.saturating_add(len);
            // (A write past the image's end grows it with zeros, as a
            // file does; partitions are inside the image, so only the
            // image's own bytes matter.)
            for (i, b) in image.iter().take(image_len).enumerate() {
                let i = i as u64;
                if i < start || i >= end {
                    prop_assert_eq!(*b, 0xAA, "byte {} outside the window changed", i);
                }
            }
        }
    }

    #[test]
    fn a_window_reads_its_own_bytes_only() {
        let image: Vec<u8> = (0..100).collect();
        let mut w = Window::new(Cursor::new(image), 10, 5);
        let mut all = Vec::new();
        w.read_to_end(&mut all).unwrap();
        assert_eq!(all, [10, 11, 12, 13, 14]);
        assert!(w.write(b"x").is_err());
        assert!(w.seek(SeekFrom::Current(-10)).is_err());
    }
}
