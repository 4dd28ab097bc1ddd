//! A minimal Matroska writer for decrypted clips.
//!
//! Layout, as the KVS producers use: EBML header, a Segment of unknown size,
//! SegmentInfo (timecode scale 1 ms), Tracks (one H.264 track with its `avcC`
//! codec private data), then Clusters of SimpleBlocks. Each fragment becomes
//! one Cluster (split further only if it spans more than 32.7 s, the reach of
//! a block's 16-bit relative timecode). The Segment has unknown size so the
//! output can be written as a stream.

use std::io::{self, Write};

use crate::ebml::{element, id, matroska_header, put_id, uint};
use crate::seal::{Frame, TrackConfig};

const NS_PER_MS: u64 = 1_000_000;
/// The "unknown size" marker, 8 bytes long.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Writes a Matroska stream fragment by fragment.
pub struct MkvWriter<W: Write> {
    out: W,
    /// Presentation time of the first frame written, in ns; clip time 0.
    origin_ns: Option<u64>,
    frames_written: u64,
}

impl<W: Write> MkvWriter<W> {
    /// Writes the EBML header, the Segment start, SegmentInfo and Tracks.
    pub fn new(mut out: W, track: &TrackConfig) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(256 + track.codec_private.len());
        element(&mut buf, id::EBML, &matroska_header());

        put_id(&mut buf, id::SEGMENT);
        buf.extend_from_slice(&UNKNOWN_SIZE);

        let mut info = Vec::new();
        uint(&mut info, id::TIMECODE_SCALE, NS_PER_MS);
        element(&mut info, id::MUXING_APP, b"sealcam");
        element(&mut info, id::WRITING_APP, b"sealcam decrypt");
        element(&mut buf, id::INFO, &info);

        let mut video = Vec::new();
        uint(&mut video, id::PIXEL_WIDTH, track.width.into());
        uint(&mut video, id::PIXEL_HEIGHT, track.height.into());
        let mut entry = Vec::new();
        uint(&mut entry, id::TRACK_NUMBER, 1);
        uint(&mut entry, id::TRACK_UID, 1);
        uint(&mut entry, id::TRACK_TYPE, 1);
        uint(&mut entry, id::FLAG_LACING, 0);
        element(&mut entry, id::CODEC_ID, b"V_MPEG4/ISO/AVC");
        element(&mut entry, id::CODEC_PRIVATE, &track.codec_private);
        if track.framerate_num > 0 && track.framerate_den > 0 {
            let ns =
                1_000_000_000u64 * u64::from(track.framerate_den) / u64::from(track.framerate_num);
            uint(&mut entry, id::DEFAULT_DURATION, ns);
        }
        element(&mut entry, id::VIDEO, &video);
        let mut tracks = Vec::new();
        element(&mut tracks, id::TRACK_ENTRY, &entry);
        element(&mut buf, id::TRACKS, &tracks);

        out.write_all(&buf)?;
        Ok(Self {
            out,
            origin_ns: None,
            frames_written: 0,
        })
    }

    /// Writes one fragment's frames as one Cluster (or more, past 32.7 s).
    pub fn write_fragment(&mut self, frames: &[Frame]) -> io::Result<()> {
        let Some(first) = frames.first() else {
            return Ok(());
        };
        let origin = *self.origin_ns.get_or_insert(first.pts_ns);
        let mut cluster: Option<(u64, Vec<u8>)> = None;
        for f in frames {
            let ms = f.pts_ns.saturating_sub(origin) / NS_PER_MS;
            let fits = |start: u64| ms >= start && ms - start <= i16::MAX as u64;
            if !matches!(&cluster, Some((start, _)) if fits(*start)) {
                if let Some((start, body)) = cluster.take() {
                    self.flush_cluster(start, &body)?;
                }
                cluster = Some((ms, Vec::new()));
            }
            if let Some((start, body)) = cluster.as_mut() {
                let rel = (ms - *start) as i16;
                let mut block = Vec::with_capacity(4 + f.data.len());
                block.push(0x81); // track number 1 as an EBML vint
                block.extend_from_slice(&rel.to_be_bytes());
                block.push(if f.key_frame { 0x80 } else { 0x00 });
                block.extend_from_slice(&f.data);
                element(body, id::SIMPLE_BLOCK, &block);
            }
            self.frames_written += 1;
        }
        if let Some((start, body)) = cluster {
            self.flush_cluster(start, &body)?;
        }
        Ok(())
    }

    fn flush_cluster(&mut self, start_ms: u64, blocks: &[u8]) -> io::Result<()> {
        let mut body = Vec::with_capacity(blocks.len() + 12);
        uint(&mut body, id::TIMECODE, start_ms);
        body.extend_from_slice(blocks);
        let mut out = Vec::with_capacity(body.len() + 12);
        element(&mut out, id::CLUSTER, &body);
        self.out.write_all(&out)
    }

    /// Pushes what is written so far to the output (for live output).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebml::put_size;

    #[test]
    fn sizes_use_the_shortest_vint() {
        let enc = |n| {
            let mut v = Vec::new();
            put_size(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(16_382), [0x7F, 0xFE]);
        assert_eq!(enc(16_383), [0x20, 0x3F, 0xFF]);
    }

    #[test]
    fn ids_keep_their_marker_bytes() {
        let mut v = Vec::new();
        put_id(&mut v, id::SIMPLE_BLOCK);
        put_id(&mut v, id::CLUSTER);
        assert_eq!(v, [0xA3, 0x1F, 0x43, 0xB6, 0x75]);
    }

    #[test]
    fn long_fragments_split_into_clusters() {
        let track = TrackConfig {
            codec: 1,
            width: 2,
            height: 2,
            framerate_num: 1,
            framerate_den: 1,
            codec_private: vec![1],
        };
        let frames: Vec<Frame> = (0..40u64)
            .map(|i| Frame {
                pts_ns: i * 1_000_000_000,
                duration_ns: 1_000_000_000,
                key_frame: i == 0,
                data: vec![0; 4],
            })
            .collect();
        let mut w = MkvWriter::new(Vec::new(), &track).unwrap();
        w.write_fragment(&frames).unwrap();
        let out = w.finish().unwrap();
        let clusters = out
            .windows(4)
            .filter(|w| *w == [0x1F, 0x43, 0xB6, 0x75])
            .count();
        assert_eq!(clusters, 2);
    }
}
