//! EBML, the binary markup under Matroska: element IDs, sizes, a writer
//! and a reader that never panics.

use crate::codec::Reader;
use crate::FormatError;

pub(crate) mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const DEFAULT_DURATION: u32 = 0x23_E383;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const ATTACHMENTS: u32 = 0x1941_A469;
    pub const ATTACHED_FILE: u32 = 0x61A7;
    pub const FILE_DESCRIPTION: u32 = 0x467E;
    pub const FILE_NAME: u32 = 0x466E;
    pub const FILE_MEDIA_TYPE: u32 = 0x4660;
    pub const FILE_DATA: u32 = 0x465C;
    pub const FILE_UID: u32 = 0x46AE;
}

pub(crate) fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Writes `n` as the shortest EBML size vint.
pub(crate) fn put_size(out: &mut Vec<u8>, n: u64) {
    // Smallest length L (1..=8) with n < 2^(7L) - 1 (all-ones means unknown).
    let mut len = 1;
    while len < 8 && n >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let marked = n | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

pub(crate) fn element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

pub(crate) fn uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    element(out, id, &bytes[skip..]);
}

/// The body of the EBML header of every Matroska file sealcam writes.
pub(crate) fn matroska_header() -> Vec<u8> {
    let mut ebml = Vec::new();
    uint(&mut ebml, id::EBML_VERSION, 1);
    uint(&mut ebml, id::EBML_READ_VERSION, 1);
    uint(&mut ebml, id::EBML_MAX_ID_LENGTH, 4);
    uint(&mut ebml, id::EBML_MAX_SIZE_LENGTH, 8);
    element(&mut ebml, id::DOC_TYPE, b"matroska");
    uint(&mut ebml, id::DOC_TYPE_VERSION, 4);
    uint(&mut ebml, id::DOC_TYPE_READ_VERSION, 2);
    ebml
}

/// Reads one element that must have ID `want`; returns its body. Sizes of
/// unknown length are refused.
pub(crate) fn read_element<'a>(r: &mut Reader<'a>, want: u32) -> Result<&'a [u8], FormatError> {
    let offset = r.position();
    let mut expected = Vec::with_capacity(4);
    put_id(&mut expected, want);
    let got = r.take(expected.len())?;
    if got != expected.as_slice() {
        return Err(FormatError::Invalid {
            what: "container",
            offset,
            reason: format!(
                "expected element {want:#x}, found bytes {}",
                hex::encode(got)
            ),
        });
    }
    let first = r.u8()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return Err(FormatError::Invalid {
            what: "container",
            offset,
            reason: "invalid element size".into(),
        });
    }
    let mut size = u64::from(first) & ((1u64 << (8 - len)) - 1);
    for _ in 1..len {
        size = (size << 8) | u64::from(r.u8()?);
    }
    if size == (1u64 << (7 * len)) - 1 {
        return Err(FormatError::Invalid {
            what: "container",
            offset,
            reason: "elements of unknown size are not allowed here".into(),
        });
    }
    // One encoding per file: sizes are written in their shortest form.
    let mut shortest = Vec::with_capacity(8);
    put_size(&mut shortest, size);
    if shortest.len() != len {
        return Err(FormatError::Invalid {
            what: "container",
            offset,
            reason: "element size not in its shortest form".into(),
        });
    }
    let size = usize::try_from(size).map_err(|_| FormatError::Invalid {
        what: "container",
        offset,
        reason: "element larger than memory".into(),
    })?;
    r.take(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_elements_read_back() {
        for n in [0usize, 1, 126, 127, 128, 16_382, 16_383, 70_000] {
            let body = vec![0xAB; n];
            let mut out = Vec::new();
            element(&mut out, id::SIMPLE_BLOCK, &body);
            element(&mut out, id::CLUSTER, b"x");
            let mut r = Reader::new(&out, "t");
            assert_eq!(
                read_element(&mut r, id::SIMPLE_BLOCK).unwrap(),
                body.as_slice()
            );
            assert_eq!(read_element(&mut r, id::CLUSTER).unwrap(), b"x");
            assert!(read_element(&mut r, id::CLUSTER).is_err());
        }
    }

    #[test]
    fn unknown_sizes_and_wrong_ids_are_refused() {
        let mut r = Reader::new(&[0xA3, 0xFF], "t");
        assert!(read_element(&mut r, id::SIMPLE_BLOCK).is_err());
        let mut r = Reader::new(&[0xA3, 0x80], "t");
        assert!(read_element(&mut r, id::CLUSTER).is_err());
    }
}
