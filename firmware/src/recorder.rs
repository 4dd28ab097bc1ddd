//! Turns captured frames into sealed, signed, spooled fragments.
//!
//! A fragment starts at a key frame and closes at the first key frame at or
//! after the fragment duration (or when the track changes, or at the end).
//! Frames are encrypted as they arrive; the data key lives only until the
//! fragment is closed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealcam_format::manifest::MAX_GAPS;
use sealcam_format::{
    Closing, DeclaredGap, FragmentSealer, Frame, GapReason, Name, SealError, TrackConfig,
};
use sealcam_hal::capture::CapturedFrame;
use sealcam_transport::{ExternalSigner, SignerError};

use crate::live::LiveFeed;
use crate::metrics::DeviceMetrics;
use crate::recipients::RecipientWatcher;
use crate::spool::{Admission, ChainState, FullPolicy, Spool, SpoolBounds, SpoolError};

/// The spool's default bound: 1 GiB.
pub const DEFAULT_SPOOL_BYTES: u64 = 1 << 30;

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
    start_unix_ns: u64,
}

/// Counters for logs and, later, metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecorderStats {
    pub fragments: u64,
    pub frames: u64,
    /// Frames dropped because no key frame had started a fragment yet.
    pub frames_before_key_frame: u64,
    /// Fragments sealed but not spooled because the spool was full.
    pub fragments_dropped: u64,
}

pub struct Recorder {
    device: Name,
    stream: Name,
    fragment_duration_ns: u64,
    recipients: RecipientWatcher,
    signer: Arc<dyn ExternalSigner>,
    spool: Arc<Spool>,
    chain: ChainState,
    open: Option<OpenFragment>,
    /// (unix ns, pts ns) of the first frame: maps stream time to wall time.
    anchor: Option<(u64, u64)>,
    /// The gap this run's start leaves after the previous run: its reason
    /// and where the previous run's video ended.
    startup_gap: Option<(GapReason, u64)>,
    /// Capture stopped at this wall time (a stall or a camera error); the
    /// next fragment declares the span up to its start.
    interrupted_since: Option<u64>,
    /// Gaps found while recording (clock jumps), for the next manifest.
    gaps: Vec<DeclaredGap>,
    /// Pad frames to size buckets.
    pad: bool,
    /// The last fragment's payload buffer (still holding its bytes, so its
    /// length says how big the next fragment is likely to be).
    spare_buffer: Option<Vec<u8>>,
    /// How much the spool may hold.
    bounds: SpoolBounds,
    stats: RecorderStats,
    metrics: Arc<DeviceMetrics>,
    /// Where sealed bytes go as they are sealed (the uplink's live path).
    live: Option<LiveFeed>,
    /// The spool failed to store a fragment and has not stored one since
    /// (logged once per episode).
    spool_failing: bool,
}

/// A wall clock that moves this much more or less than the stream clock
/// between two fragments has jumped.
const CLOCK_JUMP_NS: u64 = 2_000_000_000;

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
        recipients: RecipientWatcher,
        signer: Arc<dyn ExternalSigner>,
        spool: Arc<Spool>,
    ) -> Result<Self, SpoolError> {
        let chain = spool.load_state()?;
        // A full or failing disk must not stop the camera: without the
        // marker, a crash in this run is declared as a restart.
        let unclean = spool.mark_running().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot mark the recorder as running");
            spool.last_run_unclean()
        });
        let startup_gap = (chain.next_sequence > 0).then(|| {
            let reason = if unclean {
                GapReason::Crash
            } else {
                GapReason::Restart
            };
            (reason, chain.last_end_unix_ns)
        });
        tracing::info!(
            next_sequence = chain.next_sequence,
            last_manifest = %chain.last_manifest,
            previous_run = if unclean { "ended uncleanly" } else { "ended cleanly" },
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
            startup_gap,
            interrupted_since: None,
            gaps: Vec::new(),
            pad: false,
            spare_buffer: None,
            bounds: SpoolBounds {
                max_bytes: DEFAULT_SPOOL_BYTES,
                max_age: None,
                when_full: FullPolicy::DropOldest,
            },
            stats: RecorderStats::default(),
            metrics: Arc::default(),
            live: None,
            spool_failing: false,
        })
    }

    /// Hands every sealed record to the uplink as it is sealed.
    pub fn set_live(&mut self, feed: LiveFeed) {
        self.live = Some(feed);
    }

    /// Bounds the spool from the next fragment on.
    pub fn set_spool_bounds(&mut self, bounds: SpoolBounds) {
        self.bounds = bounds;
    }

    /// Where frames and fragments are counted for the metrics endpoint.
    pub fn set_metrics(&mut self, metrics: Arc<DeviceMetrics>) {
        self.metrics = metrics;
    }

    /// Pads the frames of every following fragment to size buckets.
    pub fn pad_frames(&mut self, on: bool) {
        self.pad = on;
    }

    /// Marks a clean stop, after the last fragment is closed.
    pub fn stopped_cleanly(&self) -> Result<(), SpoolError> {
        self.spool.mark_stopped()
    }

    /// Checks the stream-to-wall-clock mapping against the wall clock; after
    /// a jump, declares the span and maps from now on.
    fn check_clock(&mut self, pts_ns: u64) {
        let now = unix_now_ns();
        let expected = self.wall_ns(pts_ns);
        if now.abs_diff(expected) > CLOCK_JUMP_NS {
            tracing::warn!(
                expected,
                now,
                "wall clock jumped; declaring the gap and re-anchoring"
            );
            self.gaps.push(DeclaredGap {
                reason: GapReason::ClockJump,
                first_sequence: self.chain.next_sequence,
                sequence_count: 0,
                start_unix_ns: expected.min(now),
                end_unix_ns: expected.max(now),
            });
            self.anchor = Some((now, pts_ns));
        }
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
        self.metrics.frames_captured.inc();
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
                self.metrics.frames_dropped.inc();
                return Ok(closed);
            }
            self.check_clock(frame.pts_ns);
            // A new owner-signed recipient set takes effect here.
            self.recipients.refresh();
            let sequence = self.chain.next_sequence;
            let sealer = FragmentSealer::new(
                self.device.clone(),
                self.stream.clone(),
                sequence,
                &frame.track,
                &mut rand::rngs::OsRng,
            )
            .map_err(|source| RecordError::Seal { sequence, source })?;
            let mut sealer = sealer;
            sealer.pad_frames(self.pad);
            if let Some(buffer) = self.spare_buffer.take() {
                // About the last fragment's size up front, with an eighth to
                // spare, instead of growing (and copying) as frames arrive.
                let expected = buffer.len();
                sealer.reuse_buffer(buffer);
                sealer.reserve(expected + expected / 8);
            }
            self.open = Some(OpenFragment {
                sealer,
                track: frame.track.clone(),
                first_pts_ns: frame.pts_ns,
                end_pts_ns: frame.pts_ns,
                start_unix_ns: self.wall_ns(frame.pts_ns),
            });
            if let Some(live) = self.live.as_mut() {
                live.begin(sequence);
            }
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
            if let Some(live) = self.live.as_mut() {
                live.payload(sequence, open.sealer.payload());
            }
            open.end_pts_ns = open
                .end_pts_ns
                .max(frame.pts_ns.saturating_add(frame.duration_ns));
            self.stats.frames += 1;
        }
        Ok(closed)
    }

    /// Capture stopped (the camera stalled, failed or went away) and will be
    /// restarted: seals what the open fragment holds, and has the next
    /// fragment declare the time without frames as a `SourceStalled` gap.
    /// The restarted graph's timestamps start afresh; they are re-anchored
    /// to the wall clock at the next frame.
    pub fn source_interrupted(&mut self) -> Result<Option<u64>, RecordError> {
        let since = match &self.open {
            Some(o) => self.wall_ns(o.end_pts_ns),
            None => self.interrupted_since.unwrap_or_else(unix_now_ns),
        };
        let closed = self.close()?;
        self.interrupted_since.get_or_insert(since);
        self.anchor = None;
        Ok(closed)
    }

    /// Closes the open fragment, if any: wraps its key, signs, spools.
    pub fn close(&mut self) -> Result<Option<u64>, RecordError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        let sequence = self.chain.next_sequence;
        let start_unix_ns = open.start_unix_ns;
        let end_unix_ns = self.wall_ns(open.end_pts_ns).max(start_unix_ns);
        let spool_err = |source| RecordError::Spool { sequence, source };
        let mut gaps = Vec::new();
        if let Some((reason, since)) = self.startup_gap {
            gaps.push(DeclaredGap {
                reason,
                first_sequence: sequence,
                sequence_count: 0,
                start_unix_ns: since.min(start_unix_ns),
                end_unix_ns: start_unix_ns,
            });
        }
        if let Some(since) = self.interrupted_since {
            gaps.push(DeclaredGap {
                reason: GapReason::SourceStalled,
                first_sequence: sequence,
                sequence_count: 0,
                start_unix_ns: since.min(start_unix_ns),
                end_unix_ns: start_unix_ns,
            });
        }
        gaps.extend(self.gaps.iter().copied());
        let pending = self.spool.pending_gaps().map_err(spool_err)?;
        let room = MAX_GAPS.saturating_sub(gaps.len());
        let declared_pending = pending.len().min(room);
        gaps.extend(pending.into_iter().take(declared_pending));
        let unsigned = open
            .sealer
            .finish(
                Closing {
                    prev: self.chain.last_manifest,
                    start_unix_ns,
                    end_unix_ns,
                    recipients: self.recipients.keys(),
                    recipient_set_version: self.recipients.version(),
                    gaps,
                },
                &mut rand::rngs::OsRng,
            )
            .map_err(|source| RecordError::Seal { sequence, source })?;
        let signature = self
            .signer
            .sign(&unsigned.signing_message())
            .map_err(|source| RecordError::Sign { sequence, source })?;
        let hash = unsigned.manifest_hash();
        let frames = unsigned.manifest.frame_count;
        let signature: [u8; 64] = signature.to_bytes().into();
        let tail = self.live.is_some().then(|| {
            sealcam_format::fragment::streamed_tail(&unsigned.signed_manifest(&signature))
        });
        let file = unsigned.sign(&signature);
        let file_len = file.len();
        let stored = self
            .spool
            .make_room(&self.bounds, file_len as u64)
            .and_then(|admission| match admission {
                Admission::Admit => self.spool.put_parts(sequence, &file.parts()).map(Some),
                Admission::Refuse => Ok(None),
            });
        // The payload buffer (ciphertext only) serves the next fragment.
        self.spare_buffer = Some(file.into_buffer());
        let admitted = match stored {
            Ok(stored) => stored.is_some(),
            Err(e) => {
                self.spool_failed(sequence, hash, (start_unix_ns, end_unix_ns), frames, &e);
                return Ok(None);
            }
        };
        if self.spool_failing {
            self.spool_failing = false;
            tracing::info!(sequence, "the spool stores fragments again; the ones it could not store are declared in this fragment's successor");
        }
        if !admitted {
            // Full and keeping what it has: this fragment is dropped, and
            // the next manifest says so (with what this one declared).
            self.spool
                .declare_gap(&DeclaredGap {
                    reason: GapReason::SpoolEvicted,
                    first_sequence: sequence,
                    sequence_count: 1,
                    start_unix_ns,
                    end_unix_ns,
                })
                .map_err(spool_err)?;
            self.count_dropped(frames);
        }
        if let Err(e) = self.advance(sequence, hash, end_unix_ns) {
            // The fragment is spooled, and the next start finds the chain
            // from it (see `Spool::load_state`).
            tracing::warn!(sequence, error = %e, "chain state not saved");
        }
        if !admitted {
            if let Some(live) = self.live.as_mut() {
                live.abandon();
            }
            return Ok(None);
        }
        // Spooled, and the chain state saved: the live upload may finish.
        if let (Some(live), Some(tail)) = (self.live.as_mut(), tail) {
            live.end(sequence, tail);
        }
        // Declared and durable: forget them.
        self.startup_gap = None;
        self.interrupted_since = None;
        self.gaps.clear();
        self.spool.clear_gaps(declared_pending).map_err(spool_err)?;
        self.stats.fragments += 1;
        self.metrics.fragments_sealed.inc();
        tracing::debug!(
            sequence,
            frames,
            bytes = file_len,
            "fragment sealed and spooled"
        );
        Ok(Some(sequence))
    }

    /// The spool could not store fragment `sequence` (disk full or failing):
    /// the fragment is dropped, the next one that is stored declares it,
    /// and capture goes on. Logged once per episode.
    fn spool_failed(
        &mut self,
        sequence: u64,
        hash: sealcam_format::ManifestHash,
        (start_unix_ns, end_unix_ns): (u64, u64),
        frames: u32,
        error: &SpoolError,
    ) {
        if let Some(live) = self.live.as_mut() {
            live.abandon();
        }
        if !self.spool_failing {
            self.spool_failing = true;
            tracing::error!(
                sequence,
                %error,
                "cannot store fragments in the spool: they are dropped and declared as a gap until it can again; free space on its filesystem or replace the card"
            );
        }
        // Declared in memory: the disk is what failed. A crash before the
        // next stored fragment loses this declaration, and the crash gap
        // then covers the time.
        match self.gaps.iter_mut().find(|g| {
            g.reason == GapReason::SpoolWriteFailed
                && g.first_sequence + g.sequence_count == sequence
        }) {
            Some(g) => {
                g.sequence_count += 1;
                g.end_unix_ns = g.end_unix_ns.max(end_unix_ns);
            }
            None => self.gaps.push(DeclaredGap {
                reason: GapReason::SpoolWriteFailed,
                first_sequence: sequence,
                sequence_count: 1,
                start_unix_ns,
                end_unix_ns,
            }),
        }
        self.count_dropped(frames);
        // Best effort: the same disk is likely to refuse this too. If it
        // does, the next start resumes from the last fragment it stored.
        if let Err(e) = self.advance(sequence, hash, end_unix_ns) {
            tracing::debug!(error = %e, "chain state not saved");
        }
    }

    /// A sealed fragment was not spooled.
    fn count_dropped(&mut self, frames: u32) {
        self.stats.fragments_dropped += 1;
        self.metrics.fragments_dropped.inc();
        self.metrics.frames_dropped.inc_by(u64::from(frames));
    }

    /// The chain moves past fragment `sequence` (stored or not), and the
    /// spool saves where it stands.
    fn advance(
        &mut self,
        sequence: u64,
        hash: sealcam_format::ManifestHash,
        end_unix_ns: u64,
    ) -> Result<(), SpoolError> {
        self.chain = ChainState {
            next_sequence: sequence + 1,
            last_manifest: hash,
            last_end_unix_ns: end_unix_ns,
        };
        self.spool.save_state(&self.chain)
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
            let watcher = RecipientWatcher::start(
                crate::config::RecipientSource::Development(vec![self.consumer.public().clone()]),
                self.spool.clone(),
            )
            .unwrap();
            Recorder::new(
                Name::new("cam").unwrap(),
                Name::new("front").unwrap(),
                1_000_000_000,
                watcher,
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
        rec.stopped_cleanly().unwrap();
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
        // The restart is declared, signed, in the first fragment after it.
        assert_eq!(report.declared.len(), 1);
        assert_eq!(report.declared[0].gap.reason, GapReason::Restart);
        assert_eq!(report.declared[0].declared_by, 2);
    }

    #[test]
    fn an_unclean_stop_is_declared_as_a_crash() {
        let rig = Rig::new();
        let t = track();
        let mut rec = rig.recorder();
        for f in frames(0..10, 10, &t) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        // No stopped_cleanly(): the process died.
        drop(rec);
        let mut rec = rig.recorder();
        for f in frames(100..110, 10, &t) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        let files = rig.spooled();
        let m = SealedFragment::parse(&files[1]).unwrap().manifest;
        assert_eq!(m.gaps.len(), 1);
        assert_eq!(m.gaps[0].reason, GapReason::Crash);
        assert_eq!(m.gaps[0].sequence_count, 0);
    }

    #[test]
    fn a_full_spool_drops_fragments_and_declares_them() {
        let rig = Rig::new();
        let t = track();
        let mut rec = rig.recorder();
        // Room for about two fragments of ten small frames.
        rec.set_spool_bounds(SpoolBounds {
            max_bytes: 2 * 1400,
            max_age: None,
            when_full: FullPolicy::DropOldest,
        });
        for f in frames(0..60, 10, &t) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        let files = rig.spooled();
        assert!(files.len() < 6, "the spool stayed bounded");
        let report = verify_chain(
            files
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b.as_slice())),
            &DeviceVerifyingKey(rig.key.verifying_key()),
        );
        // Everything missing is declared, by the camera, as evicted.
        assert!(report.gaps.is_empty(), "undeclared: {:?}", report.gaps);
        assert!(report
            .declared
            .iter()
            .any(|d| d.gap.reason == GapReason::SpoolEvicted));
    }

    #[test]
    fn pending_gaps_are_declared_once() {
        let rig = Rig::new();
        let t = track();
        let gap = DeclaredGap {
            reason: GapReason::RefusedByIngest,
            first_sequence: 7,
            sequence_count: 1,
            start_unix_ns: 1,
            end_unix_ns: 2,
        };
        rig.spool.declare_gap(&gap).unwrap();
        let mut rec = rig.recorder();
        for f in frames(0..20, 10, &t) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        let files = rig.spooled();
        let first = SealedFragment::parse(&files[0]).unwrap().manifest;
        let second = SealedFragment::parse(&files[1]).unwrap().manifest;
        assert_eq!(first.gaps, vec![gap]);
        assert!(second.gaps.is_empty());
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
