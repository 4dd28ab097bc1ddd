//! Turns captured frames into sealed, signed, spooled fragments.
//!
//! A fragment starts at a key frame and closes at the first key frame at or
//! after the fragment duration (or when the track changes, or at the end).
//! Frames are encrypted as they arrive; the data key lives only until the
//! fragment is closed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealcam_format::events::{EventMark, Events};
use sealcam_format::manifest::MAX_GAPS;
use sealcam_format::{
    Closing, DeclaredGap, FragmentSealer, Frame, GapReason, Name, SealError, TrackConfig,
};
use sealcam_hal::capture::CapturedFrame;
use sealcam_transport::{ExternalSigner, SignerError};

use crate::metrics::DeviceMetrics;
use crate::pipeline::events::PostedMark;
use crate::pipeline::live::LiveFeed;
use crate::pipeline::spool::{Admission, ChainState, FullPolicy, Spool, SpoolBounds, SpoolError};
use crate::trust::recipients::RecipientWatcher;

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
    /// Seal an events record in every fragment ([`sealcam_format::events`]).
    marks_on: bool,
    /// Marks for the fragment being recorded.
    marks: Vec<PostedMark>,
}

/// A mark made this long before the fragment it would go into began is
/// dropped, not moved: the daemon was not recording when it was made.
const STALE_MARK_NS: u64 = 60_000_000_000;

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
        if chain.began_without_state && chain.next_sequence == 0 {
            tracing::warn!("no chain state in the spool: the chain starts at sequence 0. On a first start that is right; if this camera lost its storage, the ingest refuses the chain and `sealcamd spool list` says what to do (docs/guide/recovery.md)");
        }
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
            marks_on: false,
            marks: Vec::new(),
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

    /// Seals an events record, with the marks made meanwhile, in every
    /// following fragment (the same size with marks or without).
    pub fn mark_events(&mut self, on: bool) {
        self.marks_on = on;
    }

    /// A mark for the fragment being recorded (or the next one), placed on
    /// the stream clock at its own wall-clock time.
    pub fn mark(&mut self, mark: PostedMark) {
        if self.marks_on {
            self.marks.push(mark);
        }
    }

    /// The marks for the fragment `open` closes: each at its time on the
    /// stream clock, within the fragment; one made long before it began is
    /// dropped with a warning.
    fn take_marks(&mut self, open: &OpenFragment) -> Events {
        let mut marks = Vec::with_capacity(self.marks.len());
        for m in self.marks.drain(..) {
            if m.at_unix_ns.saturating_add(STALE_MARK_NS) < open.start_unix_ns {
                tracing::warn!(kind = m.kind.as_str(), label = %m.label, at_unix_ns = m.at_unix_ns, "an event mark made while nothing was recording is dropped");
                continue;
            }
            let at_ns = match self.anchor {
                Some((unix, pts0)) => {
                    if m.at_unix_ns >= unix {
                        pts0.saturating_add(m.at_unix_ns - unix)
                    } else {
                        pts0.saturating_sub(unix - m.at_unix_ns)
                    }
                }
                None => open.first_pts_ns,
            };
            marks.push(EventMark {
                kind: m.kind,
                at_ns: at_ns.clamp(open.first_pts_ns, open.end_pts_ns.max(open.first_pts_ns)),
                label: m.label,
            });
        }
        if marks.len() > sealcam_format::events::MAX_MARKS {
            tracing::warn!(
                marks = marks.len(),
                kept = sealcam_format::events::MAX_MARKS,
                "more event marks in one fragment than it holds; the rest are counted as dropped"
            );
        }
        Events::of(&marks)
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
        let mut open = open;
        if self.marks_on {
            let events = self.take_marks(&open);
            open.sealer
                .seal_events(&events)
                .map_err(|source| RecordError::Seal { sequence, source })?;
            if let Some(live) = self.live.as_mut() {
                live.payload(sequence, open.sealer.payload());
            }
        }
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
        self.chain = self.chain.advanced(sequence, hash, end_unix_ns);
        self.spool.save_state(&self.chain)
    }
}

#[cfg(test)]
mod tests;
