//! Runs sealcamd: capture and recording on a thread of their own, the uplink
//! on the async runtime, until the source ends or a stop is requested.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealcam_format::DeviceVerifyingKey;
use sealcam_hal::capture::{Capture, CaptureError, CaptureEvent};
use sealcam_transport::signer::CountingSigner;
use sealcam_transport::{identity, pem, ExternalSigner, TransportError};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::metrics::DeviceMetrics;
use crate::pipeline::events::EventInbox;
use crate::pipeline::heads::HeadSigner;
use crate::pipeline::recorder::{RecordError, Recorder, RecorderStats};
use crate::pipeline::spool::{Spool, SpoolError};
use crate::pipeline::uplink::{Uplink, UplinkError, UplinkReport};
use crate::trust::certificate;
use crate::trust::key::{self, DeviceKeyError};
use crate::trust::recipients::{RecipientError, RecipientWatcher};
use crate::watchdog::Heartbeat;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Key(#[from] DeviceKeyError),
    #[error("device certificate {path}: {source}; issue one from the CSR that `sealcamd provision` wrote")]
    Certificate {
        path: String,
        #[source]
        source: TransportError,
    },
    #[error("device certificate {path} does not certify this device's key (certificate key {cert}, device key {device}); issue a new certificate from a fresh CSR")]
    CertificateMismatch {
        path: String,
        cert: String,
        device: String,
    },
    #[error("device certificate {path} has expired; enroll again with `sealcamd provision --enroll URL --token T` (ask the operator for a token)")]
    CertificateExpired { path: String },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Events(#[from] crate::pipeline::events::EventError),
    #[error(transparent)]
    Recipients(#[from] RecipientError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("capture thread ended abnormally")]
    CaptureThread,
    #[error("update: {0}")]
    Update(#[from] crate::update::UpdateError),
    #[error("cannot serve metrics on {addr}: {source}; change metrics.listen or free the port")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub recorded: RecorderStats,
    pub uplink: UplinkReport,
    /// Signatures the device key made: manifests plus full TLS handshakes.
    pub key_signatures: u64,
}

/// Loads the device key and checks the certificate certifies it.
pub fn load_identity(cfg: &Config) -> Result<Arc<dyn ExternalSigner>, DaemonError> {
    Ok(load_identity_with_tpm(cfg)?.signer)
}

/// [`load_identity`], with the TPM when the key lives in one.
pub fn load_identity_with_tpm(cfg: &Config) -> Result<key::OpenedKey, DaemonError> {
    let opened = key::open_with_tpm(&cfg.identity.key)?;
    let key = opened.signer.clone();
    let cert_path = cfg.identity.certificate.display().to_string();
    let certs =
        pem::load_certs(&cfg.identity.certificate).map_err(|source| DaemonError::Certificate {
            path: cert_path.clone(),
            source,
        })?;
    let cert_key = identity::device_key_from_cert_der(&certs[0]).map_err(|source| {
        DaemonError::Certificate {
            path: cert_path.clone(),
            source,
        }
    })?;
    let device_key = DeviceVerifyingKey(key.verifying_key());
    if let Ok(summary) = identity::summarize(&certs[0]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if now >= summary.not_after {
            return Err(DaemonError::CertificateExpired { path: cert_path });
        }
    }
    if cert_key != device_key {
        return Err(DaemonError::CertificateMismatch {
            path: cert_path,
            cert: cert_key.fingerprint(),
            device: device_key.fingerprint(),
        });
    }
    Ok(opened)
}

/// Runs until the source ends (bounded test source) or `stop` is set.
pub async fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<RunReport, DaemonError> {
    let key::OpenedKey { signer: key, tpm } = load_identity_with_tpm(&cfg)?;
    let counted = Arc::new(CountingSigner::new(key));
    let signer: Arc<dyn ExternalSigner> = counted.clone();
    let spool = Arc::new(Spool::open(&cfg.spool_dir, &cfg.stream)?);
    let metrics = Arc::new(DeviceMetrics::new());
    metrics.observe(spool.clone(), counted.clone());
    let _metrics_endpoint = match cfg.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Metrics { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            tracing::info!(metrics = %format!("http://{bound}/metrics"), "metrics endpoint listening");
            Some(AbortOnDrop(tokio::spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
            ))))
        }
    };
    let uplink = Uplink::new(
        &cfg.upload,
        &cfg.identity.certificate,
        signer.clone(),
        cfg.device.clone(),
        cfg.stream.clone(),
        spool.clone(),
    )?
    .with_metrics(metrics.clone());
    let signer_for_renewal = signer.clone();
    let heads = HeadSigner {
        device: cfg.device.clone(),
        stream: cfg.stream.clone(),
        signer: signer.clone(),
        spool: spool.clone(),
        interval: cfg.upload.head_interval,
        ca: cfg.upload.ca.clone(),
        certificate: cfg.identity.certificate.clone(),
        client: std::sync::Mutex::new(None),
    };
    let mut recorder = Recorder::new(
        cfg.device.clone(),
        cfg.stream.clone(),
        cfg.fragment_duration_ns,
        RecipientWatcher::start(cfg.recipients.clone(), spool.clone(), tpm)?,
        signer,
        spool.clone(),
    )?;
    recorder.pad_frames(cfg.pad_frames);
    recorder.mark_events(cfg.mark_events);
    let inbox = match cfg.mark_events {
        true => Some(EventInbox::open(spool.dir())?),
        false => None,
    };
    recorder.set_metrics(metrics.clone());
    let live = cfg.upload.live.then(|| {
        let (feed, live) = crate::pipeline::live::channel();
        recorder.set_live(feed);
        live
    });
    recorder.set_spool_bounds(cfg.spool_bounds);
    let pending = spool.pending()?.len();
    if pending > 0 {
        tracing::info!(
            pending,
            "spool holds fragments from an earlier run; uploading them first"
        );
    }

    tracing::info!(
        board = %cfg.board,
        graph = %sealcam_hal::pipeline::describe(&sealcam_hal::pipeline::plan(&cfg.capture)),
        "capture graph"
    );
    let wake = Arc::new(Notify::new());
    let (done_tx, done_rx) = watch::channel(false);
    let heartbeat = Heartbeat::new();
    let mut capture_loop = CaptureLoop {
        settings: cfg.capture.clone(),
        stall_timeout: cfg.stall_timeout,
        bounded: cfg.is_bounded(),
        wake: wake.clone(),
        stop: stop.clone(),
        heartbeat: heartbeat.clone(),
        backoff: RESTART_FIRST,
        metrics: metrics.clone(),
        inbox,
        inbox_looked: std::time::Instant::now(),
    };
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let result = capture_loop.record(&mut recorder);
            capture_loop.wake.notify_one();
            let _ = done_tx.send(true);
            result.map(|()| recorder.stats())
        })
        .map_err(|_| DaemonError::CaptureThread)?;

    let drain = if cfg.is_bounded() {
        cfg.upload.drain_timeout
    } else {
        Duration::from_secs(5)
    };
    let renewal = certificate::renew_forever(
        &cfg.identity.certificate,
        &cfg.device,
        signer_for_renewal,
        &uplink,
    );
    tokio::pin!(renewal);
    let watchdog = async {
        match sealcam_base::service::watchdog_period() {
            Some(period) => crate::watchdog::feed(heartbeat, period).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(watchdog);
    let head_loop = heads.run(&uplink);
    tokio::pin!(head_loop);
    let fresh = uplink.fresh_acknowledged();
    let updates = update_tasks(&cfg, counted.clone(), fresh.clone())?;
    tokio::pin!(updates);
    let uplink_result = tokio::select! {
        r = uplink.run(live, wake, done_rx, drain) => r,
        never = &mut renewal => match never {},
        never = &mut watchdog => match never {},
        never = &mut head_loop => match never {},
        never = &mut updates => match never {},
    };
    let acknowledged = fresh.load(std::sync::atomic::Ordering::Relaxed);
    if cfg.update.enabled && acknowledged > 0 {
        if let Err(e) = crate::update::ack::note_now(&cfg.update.ack_file, acknowledged) {
            tracing::warn!(error = %e, "cannot note acknowledged fragments for the health check");
        }
    }
    // The last word on what was sealed, best effort: a verifier of the
    // whole run then knows where it ends.
    if uplink_result.is_ok() {
        match tokio::time::timeout(FINAL_HEAD_TIMEOUT, heads.once(&uplink)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "final head not sent"),
            Err(_) => tracing::debug!("final head not sent in time"),
        }
    }
    sealcam_base::service::stopping();
    let recorded = tokio::task::spawn_blocking(move || capture.join())
        .await
        .map_err(|_| DaemonError::CaptureThread)?
        .map_err(|_| DaemonError::CaptureThread)??;
    let uplink = uplink_result?;
    Ok(RunReport {
        recorded,
        uplink,
        key_signatures: counted.count(),
    })
}

/// With `[update] enabled`: the scheduled check for updates, and the note
/// for the health check that the ingest acknowledged a fragment sealed in
/// this run (`fresh`; `crate::update`). Otherwise nothing, forever.
fn update_tasks(
    cfg: &Config,
    signer: Arc<CountingSigner>,
    fresh: Arc<std::sync::atomic::AtomicU64>,
) -> Result<impl std::future::Future<Output = std::convert::Infallible>, DaemonError> {
    let enabled = cfg.update.enabled;
    let updater = match enabled {
        true => Some(crate::update::fetch::Updater::new(cfg, signer)?),
        false => None,
    };
    let ack_file = cfg.update.ack_file.clone();
    Ok(async move {
        let Some(updater) = updater else {
            return std::future::pending().await;
        };
        let acknowledged = move || fresh.load(std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            never = updater.run_forever() => never,
            never = crate::update::ack::note_forever(ack_file, acknowledged) => never,
        }
    })
}

/// How long a stopping daemon waits for its last head to be sent.
const FINAL_HEAD_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to wait before rebuilding a failed capture graph: doubling
/// from one second up to thirty.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);

/// Why capture stopped for now.
enum Interruption {
    /// No frame within the stall timeout.
    Stalled(Duration),
    /// An element failed, or a live camera ended its stream.
    Failed(String),
}

/// Whether a failure to start capture may go away by itself (a camera
/// unplugged, busy or not yet there), as opposed to a missing plugin or an
/// impossible graph, which need a person.
fn may_recover(e: &CaptureError) -> bool {
    matches!(
        e,
        CaptureError::NoCamera { .. } | CaptureError::Start(_) | CaptureError::Element { .. }
    )
}

/// The capture side of the daemon, on a thread of its own.
struct CaptureLoop {
    settings: sealcam_hal::capture::CaptureSettings,
    /// No frame for this long: the graph is rebuilt.
    stall_timeout: Duration,
    /// A test source with `num_buffers`: its end is the end of the run.
    bounded: bool,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
    heartbeat: Arc<Heartbeat>,
    /// The wait before the next rebuild.
    backoff: Duration,
    metrics: Arc<DeviceMetrics>,
    /// Where `sealcamd event` leaves marks, with events on.
    inbox: Option<EventInbox>,
    /// When the inbox was last looked at.
    inbox_looked: std::time::Instant,
}

/// How often the inbox of event marks is looked at.
const INBOX_EVERY: Duration = Duration::from_millis(200);

impl CaptureLoop {
    /// Frames into the recorder until the end or a stop. A capture graph
    /// that stalls or fails is torn down and rebuilt with backoff; the
    /// recorder declares the time without frames in the next manifest.
    /// Whatever was captured is sealed and spooled, even after an error.
    fn record(&mut self, recorder: &mut Recorder) -> Result<(), DaemonError> {
        let result = self.run(recorder);
        let closed = recorder.close();
        result?;
        closed?;
        recorder.stopped_cleanly()?;
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Hands the marks waiting in the inbox to the recorder, at most every
    /// [`INBOX_EVERY`]. A failing inbox is logged and tried again: marks
    /// wait in it, and recording goes on.
    fn take_marks(&mut self, recorder: &mut Recorder) {
        let Some(inbox) = &self.inbox else {
            return;
        };
        if self.inbox_looked.elapsed() < INBOX_EVERY {
            return;
        }
        self.inbox_looked = std::time::Instant::now();
        match inbox.take() {
            Ok(marks) => {
                for m in marks {
                    tracing::info!(
                        kind = m.kind.as_str(),
                        "event mark taken; it is sealed into this fragment"
                    );
                    recorder.mark(m);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the event inbox; its marks wait"),
        }
    }

    fn run(&mut self, recorder: &mut Recorder) -> Result<(), DaemonError> {
        let mut started = false;
        let mut restarts = 0u32;
        loop {
            let interruption = match Capture::start(&self.settings) {
                Ok(mut capture) => {
                    tracing::info!(settings = ?self.settings, restarts, "capture started");
                    if !started {
                        sealcam_base::service::ready();
                        started = true;
                    }
                    let outcome = self.feed(&mut capture, recorder);
                    capture.shutdown();
                    match outcome? {
                        None => return Ok(()),
                        Some(i) => i,
                    }
                }
                // Once capture has run, a camera that went away is waited
                // for; at the first start, a missing or unusable camera is a
                // setup problem, reported at once (systemd restarts the
                // service).
                Err(e) if started && may_recover(&e) => Interruption::Failed(e.to_string()),
                Err(e) => return Err(e.into()),
            };
            // An injected test fault fires once per run.
            if let sealcam_hal::capture::Source::TestPattern { fault, .. } =
                &mut self.settings.source
            {
                *fault = None;
            }
            if let Some(closed) = recorder.source_interrupted()? {
                tracing::debug!(sequence = closed, "sealed the fragment cut short");
                self.wake.notify_one();
            }
            restarts += 1;
            self.metrics.pipeline_restarts.inc();
            let retry_in_ms = self.backoff.as_millis() as u64;
            match &interruption {
                Interruption::Stalled(after) => tracing::warn!(
                    after_ms = after.as_millis() as u64,
                    retry_in_ms,
                    "camera delivered no frame; rebuilding the capture graph (the gap is declared in the next manifest)"
                ),
                Interruption::Failed(why) => tracing::warn!(
                    error = %why,
                    retry_in_ms,
                    "capture failed; rebuilding the capture graph (the gap is declared in the next manifest)"
                ),
            }
            // Wait out the backoff, but answer a stop at once.
            let until = std::time::Instant::now() + self.backoff;
            while std::time::Instant::now() < until {
                if self.stopped() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.backoff = (self.backoff * 2).min(RESTART_MAX);
        }
    }

    /// Feeds frames from one capture graph into the recorder. `Ok(None)`:
    /// the run is over (a stop, or the end of a bounded test source).
    fn feed(
        &mut self,
        capture: &mut Capture,
        recorder: &mut Recorder,
    ) -> Result<Option<Interruption>, DaemonError> {
        let mut last_frame = std::time::Instant::now();
        loop {
            if self.stopped() {
                tracing::info!("stop requested; sealing the open fragment");
                return Ok(None);
            }
            match capture.next(Duration::from_millis(200)) {
                Ok(Some(CaptureEvent::Frame(f))) => {
                    last_frame = std::time::Instant::now();
                    self.backoff = RESTART_FIRST;
                    self.take_marks(recorder);
                    if recorder.push(f)?.is_some() {
                        self.wake.notify_one();
                    }
                    self.heartbeat.beat();
                }
                Ok(Some(CaptureEvent::EndOfStream)) if self.bounded => {
                    tracing::info!("source ended");
                    return Ok(None);
                }
                Ok(Some(CaptureEvent::EndOfStream)) => {
                    return Ok(Some(Interruption::Failed(
                        "the camera ended its stream".into(),
                    )))
                }
                Ok(None) => {
                    let quiet = last_frame.elapsed();
                    if quiet >= self.stall_timeout {
                        return Ok(Some(Interruption::Stalled(quiet)));
                    }
                }
                Err(e) => return Ok(Some(Interruption::Failed(e.to_string()))),
            }
        }
    }
}
