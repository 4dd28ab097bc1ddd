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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use rand::Rng;
use sealcam_format::fragment::{MEDIA_TYPE, STREAMED_MEDIA_TYPE};
use sealcam_format::{DeclaredGap, DeviceVerifyingKey, GapReason, Name, SealedFragment};
use sealcam_transport::{pem, tls, ExternalSigner, TransportError};
use serde::Deserialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::config::UploadConfig;
use crate::live::{LiveEvent, LiveReceiver, LiveShared};
use crate::metrics::DeviceMetrics;
use crate::spool::{Spool, SpoolError, Spooled};

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
    /// Refused for good (malformed, bad signature, conflicting bytes).
    Rejected(String),
    /// No longer in the spool (evicted while waiting).
    Gone,
    /// Damaged in the spool (it does not verify): never sent.
    Damaged(String),
}

/// A failed attempt that is worth retrying, with the ingest's `Retry-After`
/// and whether the ingest said this device has too many uploads open.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retryable(String, Option<Duration>, bool);

impl Retryable {
    fn new(reason: String) -> Self {
        Self(reason, None, false)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    code: String,
}

/// Backlog uploads in flight at once beside the live one (the ingest
/// allows four per device by default).
pub const BACKLOG_IN_FLIGHT: usize = 2;

/// Live bytes waiting to be sent past which live is behind: the backlog
/// then starts nothing new until live has caught up.
const LIVE_BEHIND_BYTES: usize = 256 << 10;

/// The longest `Retry-After` honoured; a longer one is capped here.
const MAX_RETRY_AFTER_S: u64 = 300;

/// Capped exponential backoff with full jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn step(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let ms = rand::thread_rng().gen_range(0..=cap.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

/// Where the link stands (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Streaming,
    BackingOff { until: Instant },
}

struct LinkInner {
    state: LinkState,
    backoff: Backoff,
    /// The error of the outage in progress, if any.
    failing: Option<String>,
    /// What the outage's last warning said went wrong ([`failure_kind`]):
    /// a warning is logged once per kind, so a cut link that then refuses
    /// the camera's certificate says both, and nothing more.
    warned: Option<String>,
}

/// The link's state machine, shared by the live and backlog lanes.
struct Link {
    inner: Mutex<LinkInner>,
    changed: Notify,
    live: Arc<LiveShared>,
    /// The ingest allows this device one upload at a time (it said
    /// `too-many-uploads`): no live path, one backlog upload at a time.
    single: std::sync::atomic::AtomicBool,
}

impl Link {
    fn new(live: Arc<LiveShared>) -> Self {
        Self {
            inner: Mutex::new(LinkInner {
                state: LinkState::Connecting,
                backoff: Backoff::new(),
                failing: None,
                warned: None,
            }),
            changed: Notify::new(),
            live,
            single: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The ingest refused a second upload at once: from now on, one.
    fn one_at_a_time(&self) {
        if !self.single.swap(true, Ordering::Relaxed) {
            tracing::warn!("the ingest allows this camera one upload at a time (limits.uploads_per_device); fragments upload one by one after they close, with a fragment's more latency");
        }
        self.live.set_accepting(false);
    }

    /// How many backlog uploads may be in flight.
    fn backlog_room(&self) -> usize {
        if self.single.load(Ordering::Relaxed) {
            1
        } else {
            BACKLOG_IN_FLIGHT
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> LinkState {
        self.lock().state
    }

    /// The ingest answered: streaming (again).
    fn succeeded(&self) {
        let mut l = self.lock();
        if l.state != LinkState::Streaming {
            l.state = LinkState::Streaming;
            l.backoff.reset();
            l.warned = None;
            match l.failing.take() {
                Some(err) => tracing::info!(previous_error = %err, "uplink recovered"),
                None => tracing::info!("uplink connected"),
            }
            self.live
                .set_accepting(!self.single.load(Ordering::Relaxed));
            self.changed.notify_waiters();
        }
    }

    /// A try failed: back off (once per failure seen while streaming or
    /// connecting; failures of uploads already in flight add nothing).
    fn failed(&self, err: &str, asked: Option<Duration>) {
        let mut l = self.lock();
        self.live.set_accepting(false);
        if matches!(l.state, LinkState::BackingOff { .. }) {
            tracing::debug!(error = %err, "upload in flight failed too");
            l.failing = Some(err.to_owned());
            return;
        }
        // The ingest's Retry-After is a floor, never a reason to come back
        // sooner than the backoff says.
        let wait = l.backoff.step().max(asked.unwrap_or_default());
        let kind = failure_kind(err);
        if l.failing.is_none() {
            tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload failed; fragments stay in the spool and are retried with backoff");
            l.warned = Some(kind.to_owned());
        } else if l.warned.as_deref() != Some(kind) {
            tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload still failing, now for another reason; fragments stay in the spool");
            l.warned = Some(kind.to_owned());
        } else {
            tracing::debug!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload retry failed");
        }
        l.failing = Some(err.to_owned());
        l.state = LinkState::BackingOff {
            until: Instant::now() + wait,
        };
        self.changed.notify_waiters();
    }

    /// The error of the outage in progress.
    fn last_error(&self) -> String {
        self.lock().failing.clone().unwrap_or_default()
    }

    /// Waits out a backoff (at most until `limit`); then connecting.
    async fn ready(&self, limit: Option<Instant>) -> LinkState {
        loop {
            let state = self.state();
            let LinkState::BackingOff { until } = state else {
                return state;
            };
            let now = Instant::now();
            if now >= until || limit.is_some_and(|l| now >= l) {
                let mut l = self.lock();
                if l.state == state {
                    l.state = LinkState::Connecting;
                }
                return l.state;
            }
            let wake = limit.map_or(until, |l| until.min(l));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

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
    rejected: AtomicU64,
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
            rejected: AtomicU64::new(0),
        })
    }

    /// A mutual-TLS client that presents `certificate` and signs with the
    /// device key, trusting only the fleet CA in `ca`. It speaks HTTP/2 when
    /// the ingest does, and notices a dead connection within about 15 s
    /// (HTTP/2 pings) rather than at the request timeout.
    pub fn device_client(
        ca: &std::path::Path,
        certificate: &std::path::Path,
        signer: Arc<dyn ExternalSigner>,
    ) -> Result<reqwest::Client, UplinkError> {
        let roots = pem::load_roots(ca)?;
        let chain = pem::load_certs(certificate).map_err(|source| UplinkError::Certificate {
            path: certificate.display().to_string(),
            source,
        })?;
        let tls = tls::device_client_config(roots, chain, signer)?;
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .map_err(|e| UplinkError::Client(chain_err(&e)))
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

    fn url(&self, sequence: u64) -> String {
        format!(
            "{}/v1/fragments/{}/{}/{}",
            self.base, self.device, self.stream, sequence
        )
    }

    fn unreachable(&self, e: &reqwest::Error) -> Retryable {
        let chain = chain_err(e);
        let fix = connect_fix(&chain, e.is_timeout());
        Retryable::new(format!(
            "cannot reach the ingest at {}: {chain}; fix: {fix}",
            self.base
        ))
    }

    /// What the ingest's answer to an upload means.
    async fn outcome(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Outcome, Retryable> {
        let resp = resp.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Outcome::Stored);
        }
        // 429 and 503 may say when to come back (seconds; RFC 9110).
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER_S)));
        let text = resp.text().await.unwrap_or_default();
        let (reason, code) = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| (b.error, b.code))
            .unwrap_or((text, String::new()));
        match status.as_u16() {
            400 | 409 | 413 | 422 => Ok(Outcome::Rejected(format!("{status}: {reason}"))),
            _ => Err(Retryable(
                format!("ingest answered {status}: {reason}"),
                retry_after,
                code == "too-many-uploads",
            )),
        }
    }

    /// One attempt to upload one spooled fragment. The file is checked
    /// first: a fragment damaged in the spool is never sent.
    pub async fn upload(&self, s: &Spooled) -> Result<Outcome, Retryable> {
        let bytes = match tokio::fs::read(&s.path).await {
            Ok(b) => b,
            // Evicted from a full spool meanwhile (and declared as a gap).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(e) => {
                return Err(Retryable::new(format!(
                    "cannot read {}: {e}",
                    s.path.display()
                )))
            }
        };
        if let Err(why) = self.check_spooled(s.sequence, &bytes) {
            return Ok(Outcome::Damaged(why));
        }
        let resp = self
            .client()
            .put(self.url(s.sequence))
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(bytes)
            .send()
            .await;
        self.outcome(resp).await
    }

    /// Whether a spooled file is the fragment this camera signed under
    /// that sequence number.
    fn check_spooled(&self, sequence: u64, bytes: &[u8]) -> Result<(), String> {
        let f = SealedFragment::parse(bytes).map_err(|e| e.to_string())?;
        if f.manifest.sequence != sequence {
            return Err(format!("it holds fragment {} instead", f.manifest.sequence));
        }
        f.verify(&DeviceVerifyingKey(self.signer.verifying_key()))
            .map_err(|e| e.to_string())
    }

    /// One probe of the link while connecting with nothing to upload.
    async fn probe(&self) -> Result<(), Retryable> {
        let resp = self
            .client()
            .get(format!("{}/v1/whoami", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Retryable::new(format!(
                "ingest answered {} to whoami",
                resp.status()
            )))
        }
    }

    /// Acts on how an upload of `sequence` ended; `Err` only for the spool.
    fn settle(
        &self,
        link: &Link,
        sequence: u64,
        sent: std::time::Instant,
        result: Result<Outcome, Retryable>,
    ) -> Result<(), UplinkError> {
        let s = self.spool.spooled(sequence);
        match result {
            Ok(Outcome::Stored) => {
                self.metrics
                    .upload_seconds
                    .observe(sent.elapsed().as_secs_f64());
                self.metrics.fragments_uploaded.inc();
                self.spool.remove(&s)?;
                self.uploaded.fetch_add(1, Ordering::Relaxed);
                link.succeeded();
            }
            Ok(Outcome::Gone) => {}
            Ok(Outcome::Rejected(reason)) => {
                link.succeeded();
                // Consumers will miss this sequence number: say why,
                // signed, in the next manifest.
                self.spool
                    .declare_gap(&gap_of(&s, GapReason::RefusedByIngest))?;
                let to = self.spool.reject(&s)?;
                self.rejected.fetch_add(1, Ordering::Relaxed);
                self.metrics.fragments_rejected.inc();
                tracing::error!(sequence, %reason, kept_at = %to.display(), "ingest refused fragment for good");
            }
            Ok(Outcome::Damaged(why)) => {
                tracing::error!(sequence, file = %s.path.display(), %why, "spooled fragment is damaged (the disk corrupted it); removed and declared as a gap");
                self.spool
                    .declare_gap(&gap_of(&s, GapReason::SpoolWriteFailed))?;
                self.spool.remove(&s)?;
            }
            Err(Retryable(err, asked, busy)) => {
                self.metrics.upload_failures.inc();
                if busy {
                    link.one_at_a_time();
                }
                link.failed(&err, asked);
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

    /// Sends the fragment being recorded as it is sealed, until the
    /// recorder ends; every upload it does not finish is left to the backlog.
    async fn live_lane(
        &self,
        link: &Link,
        mut live: LiveReceiver,
        wake: &Notify,
    ) -> Result<(), UplinkError> {
        struct Current {
            sequence: u64,
            body: mpsc::Sender<Result<Bytes, std::io::Error>>,
            response: tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>,
        }
        let mut current: Option<Current> = None;
        let shared = live.shared.clone();
        // The backlog takes a released fragment from here on (if spooled).
        let release = |sequence: u64| {
            shared.release(sequence);
            wake.notify_one();
        };
        // Drops an upload in progress: the ingest sees its body fail, and
        // stores nothing of it.
        let abort = |c: Current| {
            let _ = c
                .body
                .try_send(Err(std::io::Error::other("fragment left the live path")));
            c.response.abort();
            release(c.sequence);
        };
        while let Some(event) = live.rx.recv().await {
            match event {
                LiveEvent::Begin(sequence) => {
                    if let Some(c) = current.take() {
                        abort(c);
                    }
                    if link.state() != LinkState::Streaming {
                        release(sequence);
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(8);
                    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
                    let request = self
                        .client()
                        .put(self.url(sequence))
                        .header(reqwest::header::CONTENT_TYPE, STREAMED_MEDIA_TYPE)
                        .body(body)
                        .send();
                    current = Some(Current {
                        sequence,
                        body: tx,
                        response: tokio::spawn(request),
                    });
                }
                LiveEvent::Bytes(sequence, bytes) => {
                    shared.sent(bytes.len());
                    let Some(c) = current.as_ref().filter(|c| c.sequence == sequence) else {
                        continue;
                    };
                    if c.body.send(Ok(bytes)).await.is_err() {
                        // The request ended early: the connection failed.
                        if let Some(c) = current.take() {
                            let result = match c.response.await {
                                Ok(r) => self.outcome(r).await,
                                Err(e) => Err(Retryable::new(format!("live upload: {e}"))),
                            };
                            let result = match result {
                                Ok(_) => Err(Retryable::new(
                                    "the ingest answered before the fragment ended".into(),
                                )),
                                Err(e) => Err(e),
                            };
                            self.settle(link, c.sequence, std::time::Instant::now(), result)?;
                            release(c.sequence);
                        }
                    }
                }
                LiveEvent::End(sequence, tail) => {
                    let Some(c) = current.take() else {
                        release(sequence);
                        continue;
                    };
                    if c.sequence != sequence {
                        abort(c);
                        release(sequence);
                        continue;
                    }
                    let sent = std::time::Instant::now();
                    let _ = c.body.send(Ok(tail)).await;
                    drop(c.body);
                    // The ack comes within a round trip; the next fragment's
                    // bytes wait in the live buffer meanwhile, so that one
                    // live upload at a time holds a slot at the ingest.
                    let result = match c.response.await {
                        Ok(r) => self.outcome(r).await,
                        Err(e) => Err(Retryable::new(format!("live upload: {e}"))),
                    };
                    self.settle(link, sequence, sent, result)?;
                    release(sequence);
                }
                LiveEvent::Abandon(sequence) => {
                    match current.take() {
                        Some(c) if c.sequence == sequence => abort(c),
                        other => current = other,
                    }
                    release(sequence);
                }
            }
        }
        if let Some(c) = current.take() {
            abort(c);
        }
        Ok(())
    }

    /// Uploads spooled fragments that are not on the live path, oldest
    /// first, a few at a time, while the link is up.
    async fn backlog_lane(
        &self,
        link: &Link,
        live: &LiveShared,
        wake: &Notify,
        lanes_done: &Notify,
        mut done: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<(), UplinkError> {
        let mut in_flight = FuturesUnordered::new();
        let mut sending: BTreeSet<u64> = BTreeSet::new();
        let mut deadline: Option<Instant> = None;
        let mut live_ended = false;
        loop {
            if *done.borrow() && deadline.is_none() {
                deadline = Some(Instant::now() + drain_timeout);
                live.set_accepting(false);
            }
            let pending: Vec<Spooled> = self
                .spool
                .pending()?
                .into_iter()
                .filter(|s| !live.is_claimed(s.sequence) && !sending.contains(&s.sequence))
                .collect();
            let draining = *done.borrow();
            let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
            if draining
                && in_flight.is_empty()
                && live_ended
                && (pending.is_empty() || past_deadline)
            {
                let remaining = self.spool.pending()?.len();
                if remaining == 0 {
                    return Ok(());
                }
                return Err(UplinkError::Undrained {
                    remaining,
                    dir: self.spool.dir().display().to_string(),
                    waited: drain_timeout,
                    last_error: link.last_error(),
                });
            }
            // Draining with nothing left to send, or past the deadline: only
            // what is in flight, and the live lane's last upload, may finish.
            let idle = draining && (pending.is_empty() || past_deadline);
            let state = if idle || !in_flight.is_empty() {
                link.state()
            } else {
                let capturing = !draining;
                tokio::select! {
                    s = link.ready(deadline) => s,
                    // Capture ended during a backoff: the drain deadline starts now.
                    _ = done.changed(), if capturing => continue,
                }
            };
            let room = match state {
                _ if idle => 0,
                LinkState::Streaming if live.queued_bytes() <= LIVE_BEHIND_BYTES => {
                    link.backlog_room()
                }
                // One fragment, or a probe, proves the link.
                LinkState::Connecting => 1,
                _ => 0,
            };
            if !draining
                && state == LinkState::Connecting
                && in_flight.is_empty()
                && pending.is_empty()
            {
                match self.probe().await {
                    Ok(()) => link.succeeded(),
                    Err(Retryable(err, asked, _)) => {
                        self.metrics.upload_failures.inc();
                        link.failed(&err, asked);
                    }
                }
                continue;
            }
            for s in pending
                .into_iter()
                .take(room.saturating_sub(in_flight.len()))
            {
                sending.insert(s.sequence);
                in_flight.push(async move {
                    let sent = std::time::Instant::now();
                    let result = self.upload(&s).await;
                    (s.sequence, sent, result)
                });
            }
            let capturing = !*done.borrow();
            // Live may catch up, or fragments be spooled without a wake-up:
            // look again after a while.
            let look_again = if room == 0 && state == LinkState::Streaming {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            tokio::select! {
                Some((sequence, sent, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    sending.remove(&sequence);
                    self.settle(link, sequence, sent, result)?;
                }
                _ = wake.notified() => {}
                _ = lanes_done.notified(), if !live_ended => live_ended = true,
                _ = done.changed(), if capturing => {}
                _ = link.changed.notified() => {}
                _ = tokio::time::sleep(look_again) => {}
            }
        }
    }
}

/// A body stream from a channel of chunks.
fn tokio_stream_of(
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn chain_err(e: &reqwest::Error) -> String {
    sealcam_base::error_chain(e)
}

/// What kind of failure an uplink error is, for rate-limited logging: the
/// fix of an unreachable ingest, or the status of a refusal. Errors of one
/// kind differ only in detail (a sequence number, a socket error).
fn failure_kind(err: &str) -> &str {
    match err.rsplit_once("; fix: ") {
        Some((_, fix)) => fix,
        None => err.split_once(": ").map_or(err, |(head, _)| head),
    }
}

/// What a failed connection to the ingest most likely means and what to do,
/// from its error chain: for the log and for `sealcamd check`.
pub(crate) fn connect_fix(chain: &str, timed_out: bool) -> &'static str {
    if chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate") {
        "upload.ca is not the CA that signed the ingest's certificate"
    } else if chain.contains("CertificateRevoked") || chain.contains("revoked") {
        "the ingest revoked this camera's certificate; ask the operator, then enroll again"
    } else if chain.contains("BadCertificate")
        || chain.contains("UnknownCA")
        || chain.contains("CertificateExpired")
        || chain.contains("certificate")
    {
        "the ingest refused this camera's certificate (another fleet, expired or revoked); enroll again"
    } else if timed_out {
        "nothing answered in time: check upload.url, the network and firewalls"
    } else {
        "check upload.url, that sealcam-ingest runs there, and the network"
    }
}

/// The gap a spooled fragment that will not be stored leaves, with its
/// time span from its own manifest where that still parses.
fn gap_of(s: &Spooled, reason: GapReason) -> DeclaredGap {
    let (start_unix_ns, end_unix_ns) = s.time_span();
    DeclaredGap {
        reason,
        first_sequence: s.sequence,
        sequence_count: 1,
        start_unix_ns,
        end_unix_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_full_jitter_and_resets() {
        let mut b = Backoff::new();
        let mut caps = Vec::new();
        for _ in 0..10 {
            caps.push(b.next);
            let d = b.step();
            assert!(d <= *caps.last().unwrap_or(&Backoff::MAX));
        }
        assert_eq!(caps[0], Backoff::FIRST);
        assert_eq!(caps[1], Backoff::FIRST * 2);
        assert_eq!(*caps.last().unwrap_or(&Duration::ZERO), Backoff::MAX);
        b.reset();
        assert_eq!(b.next, Backoff::FIRST);
    }

    #[test]
    fn failures_of_one_kind_differ_only_in_detail() {
        let cut =
            "cannot reach the ingest at https://i:8443: connection reset; fix: check upload.url";
        let closed =
            "cannot reach the ingest at https://i:8443: connection closed; fix: check upload.url";
        let revoked = "cannot reach the ingest at https://i:8443: received fatal alert: CertificateRevoked; fix: the ingest revoked this camera's certificate";
        assert_eq!(failure_kind(cut), failure_kind(closed));
        assert_ne!(failure_kind(cut), failure_kind(revoked));
        assert_eq!(
            failure_kind("ingest answered 503 Service Unavailable: storage down"),
            "ingest answered 503 Service Unavailable"
        );
        assert_eq!(failure_kind("cut"), "cut");
    }

    #[tokio::test]
    async fn the_link_backs_off_after_a_failure_then_connects_then_streams() {
        let live = Arc::new(LiveShared::default());
        let link = Link::new(live.clone());
        assert_eq!(link.state(), LinkState::Connecting);
        link.succeeded();
        assert_eq!(link.state(), LinkState::Streaming);
        link.failed("cut", Some(Duration::from_millis(300)));
        let LinkState::BackingOff { until } = link.state() else {
            panic!("not backing off: {:?}", link.state());
        };
        // Retry-After is a floor.
        assert!(until >= Instant::now() + Duration::from_millis(250));
        // A second failure while backing off does not push the time further.
        link.failed("cut again", None);
        assert_eq!(link.state(), LinkState::BackingOff { until });
        let started = Instant::now();
        assert_eq!(link.ready(None).await, LinkState::Connecting);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(link.last_error(), "cut again");
        link.succeeded();
        assert_eq!(link.state(), LinkState::Streaming);
        assert_eq!(link.last_error(), "");
    }
}
