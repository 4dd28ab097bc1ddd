//! The buffer an upload's body is received into: aligned for direct I/O,
//! so that the local store can write the payload of a streamed upload from
//! where it lies (`store/create.rs`).

use bytes::Bytes;

use crate::store::direct_io_alignment;

/// A body received into memory whose first byte is aligned for direct I/O
/// ([`direct_io_alignment`]), so that an object that starts the body (the
/// payload of a streamed upload) can go from there to the disk without a
/// copy. A body of unknown length (a camera's live upload is chunked) grows
/// by moving to a buffer twice as large, aligned again.
pub struct AlignedBody {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedBody {
    /// The least room a body of unknown length gets when it grows.
    pub const MIN_GROWTH: usize = 256 * 1024;

    pub fn with_capacity(capacity: usize) -> Self {
        let align = direct_io_alignment();
        let mut buf: Vec<u8> = Vec::with_capacity(capacity.saturating_add(align));
        let start = buf.as_ptr().align_offset(align);
        // `align_offset` may give up (it says so with usize::MAX): then
        // the body is not aligned.
        if start < align {
            buf.resize(start, 0);
        }
        let start = buf.len();
        Self { buf, start }
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The room the buffer has, from the body's first byte.
    pub fn capacity(&self) -> usize {
        self.buf.capacity() - self.start
    }

    /// The room the buffer will have once it has taken `more` bytes, when
    /// it grows to at most `max` (or to just what it needs, beyond).
    pub fn capacity_for(&self, more: usize, max: usize) -> usize {
        if self.buf.capacity() - self.buf.len() >= more {
            return self.capacity();
        }
        let needed = self.len().saturating_add(more);
        self.capacity()
            .saturating_mul(2)
            .max(Self::MIN_GROWTH)
            .min(max)
            .max(needed)
    }

    pub fn extend(&mut self, piece: &[u8]) {
        self.extend_within(piece, usize::MAX);
    }

    /// Takes `piece`, growing the buffer to at most `max` bytes of room (a
    /// body that can be no longer than a limit never gets more room).
    pub fn extend_within(&mut self, piece: &[u8], max: usize) {
        if self.buf.capacity() - self.buf.len() < piece.len() {
            // Growing the vector itself would keep only the allocator's
            // alignment.
            let mut moved = Self::with_capacity(self.capacity_for(piece.len(), max));
            moved.buf.extend_from_slice(&self.buf[self.start..]);
            *self = moved;
        }
        self.buf.extend_from_slice(piece);
    }

    /// The body, where it lies.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf).slice(self.start..)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Aligned whether its length was known or it grew piece by piece past
    /// every capacity, with every byte in its place.
    #[test]
    fn an_aligned_body_stays_aligned_as_it_grows() {
        let align = direct_io_alignment();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        for capacity in [0, 1000, data.len()] {
            let mut body = AlignedBody::with_capacity(capacity);
            for piece in data.chunks(16_411) {
                body.extend(piece);
            }
            assert_eq!(body.len(), data.len());
            let bytes = body.into_bytes();
            assert_eq!(bytes.as_ptr().align_offset(align), 0, "{capacity}");
            assert!(bytes[..] == data[..], "{capacity}");
        }
    }

    /// A body grown piece by piece within a limit never gets more room
    /// than the limit, and says beforehand how much it will have.
    #[test]
    fn growth_within_a_limit_stops_at_the_limit() {
        let max = 1_000_000;
        // The alignment's padding comes on top of the room asked for.
        let align = direct_io_alignment();
        let mut body = AlignedBody::with_capacity(0);
        for piece in vec![7u8; max].chunks(9_973) {
            let expected = body.capacity_for(piece.len(), max);
            body.extend_within(piece, max);
            assert!((expected..=expected + align).contains(&body.capacity()));
            assert!(body.capacity() <= max + align);
        }
        assert_eq!(body.len(), max);
    }
}
