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
