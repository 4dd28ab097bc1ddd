//! Uploads fragments to the ingest over mutual TLS: the one being recorded
//! as it is sealed, and the spooled backlog oldest first, together on one
//! HTTP/2 connection.
//!
//! The link is an explicit state machine (drawn in `docs/design/uplink.md`):
//!
//! * **connecting**: one probe (`GET /v1/whoami`) or the oldest backlog
//!   fragment proves the link; no live upload starts.
//! * **streaming**: the fragment being recorded goes on the wire as it is
//!   sealed (`application/vnd.sealcam.fragment-stream`), and the backlog
//!   drains [`BACKLOG_IN_FLIGHT`] at a time with the bandwidth live leaves
//!   (it starts nothing new while live is behind).
//! * **backing off**: after a failure of either lane, nothing is sent for a
//!   capped exponential backoff with full jitter (never shorter than the
//!   ingest's `Retry-After`); then connecting again.
//! * **draining**: capture has ended; the backlog is sent until the spool is
//!   empty or the drain deadline passes (what remains is kept for the next
//!   start).
//!
//! A fragment leaves the spool only when the ingest answers that it is
//! stored durably (201, or 200 for bytes it already had), so a cut at any
//! moment loses nothing and the next try resumes from the first fragment
//! not confirmed. Failures are logged once per outage, not per try.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealcam_format::{GapReason, Name};
use sealcam_transport::{ExternalSigner, TransportError};
use tokio::sync::{watch, Notify};

use crate::config::UploadConfig;
use crate::metrics::DeviceMetrics;
use crate::pipeline::live::LiveReceiver;
use crate::pipeline::spool::{Spool, SpoolError};

mod client;
mod diagnose;
mod error;
mod lanes;
mod link;
mod restarts;

pub use error::{ConnectFailure, FailureKind, UploadError};
use link::Link;
pub use link::LinkState;

/// Why the uplink could not be set up or finish.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("upload TLS setup: {0}")]
    Tls(#[from] TransportError),
    #[error("device certificate {path}: {source}")]
    Certificate {
        path: String,
        #[source]
        source: TransportError,
    },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{remaining} fragments are still in the spool {dir} after {waited:?}: {last_error}. They are kept and upload at the next start")]
    Undrained {
        remaining: usize,
        dir: String,
        waited: Duration,
        last_error: String,
    },
}

/// How one upload attempt ended, when it reached the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now or before (idempotent repeat): delete from the spool.
    Stored,
    /// Refused as if for good (malformed, bad signature, conflicting
    /// bytes): tried again `upload.refusal_tries` times, then held.
    Rejected(String),
    /// No longer in the spool (evicted while waiting).
    Gone,
    /// Damaged in the spool (it does not verify): never sent.
    Damaged(String),
}

/// Backlog uploads in flight at once beside the live one (the ingest
/// allows four per device by default).
pub const BACKLOG_IN_FLIGHT: usize = 2;

/// What the uplink did.
#[derive(Clone, Copy, Debug, Default)]
pub struct UplinkReport {
    pub uploaded: u64,
    pub rejected: u64,
}

pub struct Uplink {
    /// Rebuilt when the device certificate is renewed.
    client: std::sync::RwLock<reqwest::Client>,
    ca: std::path::PathBuf,
    certificate: std::path::PathBuf,
    signer: Arc<dyn ExternalSigner>,
    base: String,
    device: Name,
    stream: Name,
    spool: Arc<Spool>,
    metrics: Arc<DeviceMetrics>,
    uploaded: AtomicU64,
    /// The highest sequence the spool held when this run started: later
    /// ones were sealed in this run.
    backlog_end: Option<u64>,
    /// Fragments sealed in this run that the ingest acknowledged: what
    /// proves a slot on trial (`crate::update::ack`); the backlog of an
    /// earlier release proves nothing about this one.
    fresh_acknowledged: Arc<AtomicU64>,
    rejected: AtomicU64,
    refusals: Refusals,
    refusal_tries: u32,
}

impl Uplink {
    pub fn new(
        cfg: &UploadConfig,
        certificate: &std::path::Path,
        signer: Arc<dyn ExternalSigner>,
        device: Name,
        stream: Name,
        spool: Arc<Spool>,
    ) -> Result<Self, UplinkError> {
        let client = Self::device_client(&cfg.ca, certificate, signer.clone())?;
        let backlog_end = spool.pending()?.iter().map(|s| s.sequence).max();
        Ok(Self {
            client: std::sync::RwLock::new(client),
            ca: cfg.ca.clone(),
            certificate: certificate.to_owned(),
            signer,
            base: cfg.url.clone(),
            device,
            stream,
            spool,
            metrics: Arc::default(),
            uploaded: AtomicU64::new(0),
            backlog_end,
            fresh_acknowledged: Arc::default(),
            rejected: AtomicU64::new(0),
            refusals: Refusals::default(),
            refusal_tries: cfg.refusal_tries,
        })
    }

    /// Where uploads are counted and timed for the metrics endpoint.
    pub fn with_metrics(mut self, metrics: Arc<DeviceMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The mutual-TLS client as it is now.
    pub fn client(&self) -> reqwest::Client {
        match self.client.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The count of fragments sealed in this run and acknowledged by the
    /// ingest, as it grows.
    pub fn fresh_acknowledged(&self) -> Arc<AtomicU64> {
        self.fresh_acknowledged.clone()
    }

    /// The ingest's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Re-reads the device certificate (after renewal) for new connections.
    pub fn reload_certificate(&self) -> Result<(), UplinkError> {
        let client = Self::device_client(&self.ca, &self.certificate, self.signer.clone())?;
        match self.client.write() {
            Ok(mut c) => *c = client,
            Err(poisoned) => *poisoned.into_inner() = client,
        }
        Ok(())
    }
    /// Acts on how an upload of `sequence` ended; `Err` only for the spool.
    fn settle(
        &self,
        link: &Link,
        sequence: u64,
        sent: std::time::Instant,
        result: Result<Outcome, UploadError>,
    ) -> Result<(), UplinkError> {
        let s = self.spool.spooled(sequence);
        match result {
            Ok(Outcome::Stored) => {
                self.refusals.forget(sequence);
                self.metrics
                    .upload_seconds
                    .observe(sent.elapsed().as_secs_f64());
                self.metrics.fragments_uploaded.inc();
                self.spool.remove(&s)?;
                if let Err(e) = self.spool.mark_chain_accepted() {
                    tracing::warn!(error = %e, "cannot note that the ingest accepted this chain");
                }
                self.uploaded.fetch_add(1, Ordering::Relaxed);
                if self.backlog_end.is_none_or(|end| sequence > end) {
                    self.fresh_acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                link.succeeded();
            }
            Ok(Outcome::Gone) => {}
            Ok(Outcome::Rejected(reason)) => {
                // A refusal may be the server's doing: the camera never
                // signs an excuse for it. It tries again a few times, then
                // holds the fragment for an operator (`spool/held.rs`).
                let tries = self.refusals.note(sequence);
                if tries < self.refusal_tries {
                    link.failed(&UploadError::Rejected {
                        sequence,
                        reason,
                        tries,
                    });
                    return Ok(());
                }
                link.succeeded();
                self.refusals.forget(sequence);
                let to = self.spool.hold(&s, &reason)?;
                self.rejected.fetch_add(1, Ordering::Relaxed);
                self.metrics.fragments_rejected.inc();
                tracing::error!(sequence, %reason, tries, held_at = %to.display(), "the ingest keeps refusing this fragment; it is held, and no gap is declared, until an operator decides: `sealcamd spool retry` sends it again, `sealcamd spool drop` gives it up as a declared gap");
            }
            Ok(Outcome::Damaged(why)) => {
                tracing::error!(sequence, file = %s.path.display(), %why, "spooled fragment is damaged (the disk corrupted it); removed and declared as a gap");
                for gap in s.gaps(GapReason::SpoolWriteFailed) {
                    self.spool.declare_gap(&gap)?;
                }
                self.spool.remove(&s)?;
            }
            Err(err) => {
                self.metrics.upload_failures.inc();
                if err.too_many_uploads() {
                    link.one_at_a_time();
                }
                link.failed(&err);
            }
        }
        Ok(())
    }

    /// Uploads until `done` turns true and the spool is empty. After `done`,
    /// gives up after `drain_timeout`, leaving what remains in the spool.
    /// `live` is the recorder's live path, if it has one.
    pub async fn run(
        &self,
        live: Option<LiveReceiver>,
        wake: Arc<Notify>,
        done: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<UplinkReport, UplinkError> {
        let shared = live
            .as_ref()
            .map_or_else(Arc::default, |l| l.shared.clone());
        let link = Link::new(shared.clone());
        let lanes_done = Notify::new();
        let live_lane = async {
            let r = match live {
                Some(live) => self.live_lane(&link, live, &wake).await,
                None => Ok(()),
            };
            shared.release_all();
            lanes_done.notify_one();
            r
        };
        let backlog = self.backlog_lane(&link, &shared, &wake, &lanes_done, done, drain_timeout);
        let (live_result, backlog_result) = tokio::join!(live_lane, backlog);
        live_result?;
        backlog_result?;
        Ok(UplinkReport {
            uploaded: self.uploaded.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        })
    }
}

/// How often the ingest has refused each fragment in this run.
#[derive(Default)]
struct Refusals(std::sync::Mutex<std::collections::HashMap<u64, u32>>);

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more refusal of `sequence`; returns how many so far.
    fn note(&self, sequence: u64) -> u32 {
        let mut m = self.lock();
        let n = m.entry(sequence).or_insert(0);
        *n += 1;
        *n
    }

    fn forget(&self, sequence: u64) {
        self.lock().remove(&sequence);
    }
}
