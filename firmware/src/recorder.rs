//! Turns captured frames into sealed, signed, spooled fragments.
//!
//! A fragment starts at a key frame and closes at the first key frame at or
//! after the fragment duration (or when the track changes, or at the end).
//! Frames are encrypted as they arrive; the data key lives only until the
//! fragment is closed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealcam_format::{ConsumerPublicKey, FragmentSealer, Frame, Name, SealError, TrackConfig};
use sealcam_hal::capture::CapturedFrame;
use sealcam_transport::{ExternalSigner, SignerError};

use crate::spool::{ChainState, Spool, SpoolError};

/// What stopped a fragment from being recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("sealing fragment {sequence} failed: {source}")]
    Seal {
        sequence: u64,
        #[source]
        source: SealError,
    },
    #[error("signing the manifest of fragment {sequence} failed: {source}")]
    Sign {
        sequence: u64,
        #[source]
        source: SignerError,
    },
    #[error("spooling fragment {sequence} failed: {source}")]
    Spool {
        sequence: u64,
        #[source]
        source: SpoolError,
    },
}

struct OpenFragment {
    sealer: FragmentSealer,
    track: Arc<TrackConfig>,
    first_pts_ns: u64,
    end_pts_ns: u64,
}

/// Counters for logs and, later, metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecorderStats {
    pub fragments: u64,
    pub frames: u64,
    /// Frames dropped because no key frame had started a fragment yet.
    pub frames_before_key_frame: u64,
}

pub struct Recorder {
    device: Name,
    stream: Name,
    fragment_duration_ns: u64,
    recipients: Vec<ConsumerPublicKey>,
    signer: Arc<dyn ExternalSigner>,
    spool: Arc<Spool>,
    chain: ChainState,
    open: Option<OpenFragment>,
    /// (unix ns, pts ns) of the first frame: maps stream time to wall time.
    anchor: Option<(u64, u64)>,
    stats: RecorderStats,
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Recorder {
    pub fn new(
        device: Name,
        stream: Name,
        fragment_duration_ns: u64,
        recipients: Vec<ConsumerPublicKey>,
        signer: Arc<dyn ExternalSigner>,
        spool: Arc<Spool>,
    ) -> Result<Self, SpoolError> {
        let chain = spool.load_state()?;
        tracing::info!(
            next_sequence = chain.next_sequence,
            last_manifest = %chain.last_manifest,
            "manifest chain resumes"
        );
        Ok(Self {
            device,
            stream,
            fragment_duration_ns,
            recipients,
            signer,
            spool,
            chain,
            open: None,
            anchor: None,
            stats: RecorderStats::default(),
        })
    }

    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    fn wall_ns(&self, pts_ns: u64) -> u64 {
        match self.anchor {
            Some((unix, pts0)) => unix.saturating_add(pts_ns.saturating_sub(pts0)),
            None => unix_now_ns(),
        }
    }

    /// Adds a frame. Returns the sequence number of a fragment this closed.
    pub fn push(&mut self, frame: CapturedFrame) -> Result<Option<u64>, RecordError> {
        self.anchor
            .get_or_insert_with(|| (unix_now_ns(), frame.pts_ns));
        let mut closed = None;
        if let Some(open) = &self.open {
            let long_enough = frame.pts_ns.saturating_sub(open.first_pts_ns)
                + frame.duration_ns / 2
                >= self.fragment_duration_ns;
            let track_changed =
                !Arc::ptr_eq(&open.track, &frame.track) && *open.track != *frame.track;
            if (frame.key_frame && long_enough) || track_changed {
                closed = self.close()?;
            }
        }
        if self.open.is_none() {
            if !frame.key_frame {
                self.stats.frames_before_key_frame += 1;
                return Ok(closed);
            }
            let sequence = self.chain.next_sequence;
            let sealer = FragmentSealer::new(
                self.device.clone(),
                self.stream.clone(),
                sequence,
                &frame.track,
                &mut rand::rngs::OsRng,
            )
            .map_err(|source| RecordError::Seal { sequence, source })?;
            self.open = Some(OpenFragment {
                sealer,
                track: frame.track.clone(),
                first_pts_ns: frame.pts_ns,
                end_pts_ns: frame.pts_ns,
            });
        }
        if let Some(open) = self.open.as_mut() {
            let sequence = self.chain.next_sequence;
            open.sealer
                .push_frame(&Frame {
                    pts_ns: frame.pts_ns,
                    duration_ns: frame.duration_ns,
                    key_frame: frame.key_frame,
                    data: frame.data,
                })
                .map_err(|source| RecordError::Seal { sequence, source })?;
            open.end_pts_ns = open
                .end_pts_ns
                .max(frame.pts_ns.saturating_add(frame.duration_ns));
            self.stats.frames += 1;
        }
        Ok(closed)
    }

    /// Closes the open fragment, if any: wraps its key, signs, spools.
    pub fn close(&mut self) -> Result<Option<u64>, RecordError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        let sequence = self.chain.next_sequence;
        let unsigned = open
            .sealer
            .finish(
                self.chain.last_manifest,
                self.wall_ns(open.first_pts_ns),
                self.wall_ns(open.end_pts_ns),
                &self.recipients,
                &mut rand::rngs::OsRng,
            )
            .map_err(|source| RecordError::Seal { sequence, source })?;
        let signature = self
            .signer
            .sign(&unsigned.signing_message())
            .map_err(|source| RecordError::Sign { sequence, source })?;
        let hash = unsigned.manifest_hash();
        let frames = unsigned.manifest.frame_count;
        let bytes = unsigned.into_file(&signature.to_bytes().into());
        self.spool
            .put(sequence, &bytes)
            .map_err(|source| RecordError::Spool { sequence, source })?;
        self.chain = ChainState {
            next_sequence: sequence + 1,
            last_manifest: hash,
        };
        self.spool
            .save_state(&self.chain)
            .map_err(|source| RecordError::Spool { sequence, source })?;
        self.stats.fragments += 1;
        tracing::debug!(
            sequence,
            frames,
            bytes = bytes.len(),
            "fragment sealed and spooled"
        );
        Ok(Some(sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use sealcam_format::verify::verify_chain;
    use sealcam_format::{ConsumerSecretKey, DeviceVerifyingKey, SealedFragment};

    struct TestKey(p256::ecdsa::SigningKey);

    impl ExternalSigner for TestKey {
        fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError> {
            Ok(self.0.sign(message))
        }
        fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
            *self.0.verifying_key()
        }
        fn describe(&self) -> String {
            "test key".into()
        }
    }

    const FRAME_NS: u64 = 100_000_000; // 10 fps

    fn track() -> Arc<TrackConfig> {
        Arc::new(TrackConfig {
            codec: 1,
            width: 16,
            height: 16,
            framerate_num: 10,
            framerate_den: 1,
            codec_private: vec![1, 2, 3],
        })
    }

    /// Frames 0..n at 10 fps with a key frame every `gop` frames.
    fn frames(
        range: std::ops::Range<u64>,
        gop: u64,
        track: &Arc<TrackConfig>,
    ) -> Vec<CapturedFrame> {
        range
            .map(|i| CapturedFrame {
                pts_ns: i * FRAME_NS,
                duration_ns: FRAME_NS,
                key_frame: i % gop == 0,
                data: vec![i as u8; 10],
                track: track.clone(),
            })
            .collect()
    }

    struct Rig {
        _dir: tempfile::TempDir,
        spool: Arc<Spool>,
        key: Arc<TestKey>,
        consumer: ConsumerSecretKey,
    }

    impl Rig {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let spool = Arc::new(Spool::open(dir.path(), &Name::new("front").unwrap()).unwrap());
            Self {
                _dir: dir,
                spool,
                key: Arc::new(TestKey(p256::ecdsa::SigningKey::random(
                    &mut rand::rngs::OsRng,
                ))),
                consumer: ConsumerSecretKey::generate(&mut rand::rngs::OsRng),
            }
        }

        fn recorder(&self) -> Recorder {
            Recorder::new(
                Name::new("cam").unwrap(),
                Name::new("front").unwrap(),
                1_000_000_000,
                vec![self.consumer.public().clone()],
                self.key.clone(),
                self.spool.clone(),
            )
            .unwrap()
        }

        fn spooled(&self) -> Vec<Vec<u8>> {
            self.spool
                .pending()
                .unwrap()
                .iter()
                .map(|s| std::fs::read(&s.path).unwrap())
                .collect()
        }
    }

    #[test]
    fn fragments_start_at_key_frames_and_last_the_configured_duration() {
        let rig = Rig::new();
        let mut rec = rig.recorder();
        let t = track();
        // Two leading delta frames, then key frames every 5 frames (0.5 s).
        let mut input = frames(0..2, 1000, &t);
        for f in &mut input {
            f.key_frame = false;
        }
        input.extend(frames(2..32, 5, &t).into_iter().map(|mut f| {
            f.key_frame = (f.pts_ns / FRAME_NS - 2) % 5 == 0;
            f
        }));
        for f in input {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        assert_eq!(rec.stats().frames_before_key_frame, 2);
        let files = rig.spooled();
        // 30 frames, 1 s fragments at 10 fps: 3 fragments of 10 frames.
        let counts: Vec<u32> = files
            .iter()
            .map(|b| SealedFragment::parse(b).unwrap().manifest.frame_count)
            .collect();
        assert_eq!(counts, vec![10, 10, 10]);
        for b in &files {
            let opened = SealedFragment::parse(b)
                .unwrap()
                .open(&rig.consumer)
                .unwrap();
            assert!(opened.frames[0].key_frame);
        }
    }

    #[test]
    fn chain_continues_across_a_restart() {
        let rig = Rig::new();
        let t = track();
        let mut rec = rig.recorder();
        for f in frames(0..20, 10, &t) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        drop(rec);
        // A new process: the chain resumes from the spool's state.
        let mut rec = rig.recorder();
        for f in frames(100..120, 10, &t) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        let files = rig.spooled();
        assert_eq!(files.len(), 4);
        let report = verify_chain(
            files
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b.as_slice())),
            &DeviceVerifyingKey(rig.key.verifying_key()),
        );
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.verified.last().unwrap().sequence, 3);
    }

    #[test]
    fn a_track_change_closes_the_fragment() {
        let rig = Rig::new();
        let mut rec = rig.recorder();
        let t1 = track();
        let t2 = Arc::new(TrackConfig {
            width: 32,
            ..(*t1).clone()
        });
        for f in frames(0..3, 10, &t1) {
            rec.push(f).unwrap();
        }
        // The new track starts with a key frame, well before the duration.
        for f in frames(10..13, 10, &t2) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        let files = rig.spooled();
        assert_eq!(files.len(), 2);
        let second = SealedFragment::parse(&files[1])
            .unwrap()
            .open(&rig.consumer)
            .unwrap();
        assert_eq!(second.track.width, 32);
    }
}
