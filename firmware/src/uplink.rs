//! Uploads spooled fragments to the ingest over mutual TLS.
//!
//! One idempotent `PUT /v1/fragments/{device}/{stream}/{sequence}` per
//! fragment, body streamed from the spool file. A 200 or 201 means the
//! ingest stored the fragment durably, and only then is it deleted from the
//! spool. Network and server errors are retried with capped exponential
//! backoff and jitter; failures are logged once per outage, not per try.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sealcam_format::{DeclaredGap, GapReason, Name};
use sealcam_transport::{pem, tls, ExternalSigner, TransportError};
use serde::Deserialize;
use tokio::sync::{watch, Notify};

use crate::config::UploadConfig;
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
}

/// A failed attempt that is worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retryable(String, Option<Duration>);

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
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
}

/// Capped exponential backoff with full jitter.
/// The longest `Retry-After` honoured; a longer one is capped here.
const MAX_RETRY_AFTER_S: u64 = 300;

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
        let ms = rand::thread_rng().gen_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64);
        Duration::from_millis(ms)
    }
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
        })
    }

    /// A mutual-TLS client that presents `certificate` and signs with the
    /// device key, trusting only the fleet CA in `ca`.
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

    /// One attempt to upload one spooled fragment.
    pub async fn upload(&self, s: &Spooled) -> Result<Outcome, Retryable> {
        let file = match tokio::fs::File::open(&s.path).await {
            Ok(f) => f,
            // Evicted from a full spool meanwhile (and declared as a gap).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(e) => {
                return Err(Retryable(
                    format!("cannot open {}: {e}", s.path.display()),
                    None,
                ))
            }
        };
        let len = file
            .metadata()
            .await
            .map_err(|e| Retryable(format!("cannot stat {}: {e}", s.path.display()), None))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let resp = self
            .client()
            .put(self.url(s.sequence))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/vnd.sealcam.fragment",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let chain = chain_err(&e);
                let fix = connect_fix(&chain, e.is_timeout());
                Retryable(
                    format!(
                        "cannot reach the ingest at {}: {chain}; fix: {fix}",
                        self.base
                    ),
                    None,
                )
            })?;
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
        let reason = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        match status.as_u16() {
            400 | 409 | 413 | 422 => Ok(Outcome::Rejected(format!("{status}: {reason}"))),
            _ => Err(Retryable(
                format!("ingest answered {status}: {reason}"),
                retry_after,
            )),
        }
    }

    /// Uploads until `done` turns true and the spool is empty. After `done`,
    /// gives up after `drain_timeout`, leaving what remains in the spool.
    pub async fn run(
        &self,
        wake: Arc<Notify>,
        mut done: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<UplinkReport, UplinkError> {
        let mut backoff = Backoff::new();
        let mut failing: Option<String> = None;
        let mut report = UplinkReport::default();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if *done.borrow() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + drain_timeout);
            }
            let pending = self.spool.pending()?;
            if pending.is_empty() {
                if *done.borrow() {
                    return Ok(report);
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = done.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            let mut retry_after = None;
            for s in &pending {
                let sent = std::time::Instant::now();
                match self.upload(s).await {
                    Ok(Outcome::Stored) => {
                        self.metrics
                            .upload_seconds
                            .observe(sent.elapsed().as_secs_f64());
                        self.metrics.fragments_uploaded.inc();
                        self.spool.remove(s)?;
                        report.uploaded += 1;
                        backoff.reset();
                        if let Some(err) = failing.take() {
                            tracing::info!(previous_error = %err, "uplink recovered");
                        }
                    }
                    Ok(Outcome::Gone) => {}
                    Ok(Outcome::Rejected(reason)) => {
                        // Consumers will miss this sequence number: say why,
                        // signed, in the next manifest.
                        if let Some(gap) = refused_gap(s) {
                            self.spool.declare_gap(&gap)?;
                        }
                        let to = self.spool.reject(s)?;
                        report.rejected += 1;
                        self.metrics.fragments_rejected.inc();
                        tracing::error!(sequence = s.sequence, %reason, kept_at = %to.display(), "ingest refused fragment for good");
                    }
                    Err(Retryable(err, asked)) => {
                        self.metrics.upload_failures.inc();
                        if failing.is_none() {
                            tracing::warn!(error = %err, "upload failed; fragments stay in the spool and are retried with backoff");
                        } else {
                            tracing::debug!(error = %err, "upload retry failed");
                        }
                        failing = Some(err);
                        // The ingest's Retry-After is a floor, never a
                        // reason to come back sooner than the backoff says.
                        retry_after = Some(backoff.step().max(asked.unwrap_or_default()));
                        break;
                    }
                }
            }
            if let Some(mut wait) = retry_after {
                if let Some(d) = deadline {
                    let now = tokio::time::Instant::now();
                    if now >= d {
                        let remaining = self.spool.pending()?.len();
                        return Err(UplinkError::Undrained {
                            remaining,
                            dir: self.spool.dir().display().to_string(),
                            waited: drain_timeout,
                            last_error: failing.unwrap_or_default(),
                        });
                    }
                    // One last try at the deadline rather than none.
                    wait = wait.min(d - now);
                }
                // Once capture has ended, `done` stays true (and its sender
                // may be gone): only the timer wakes us then.
                let capturing = !*done.borrow();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = done.changed(), if capturing => {}
                }
            }
        }
    }
}

fn chain_err(e: &reqwest::Error) -> String {
    sealcam_base::error_chain(e)
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

/// The gap a refused fragment leaves, from its own manifest.
fn refused_gap(s: &Spooled) -> Option<DeclaredGap> {
    let bytes = std::fs::read(&s.path).ok()?;
    let m = sealcam_format::SealedFragment::parse(&bytes).ok()?.manifest;
    Some(DeclaredGap {
        reason: GapReason::RefusedByIngest,
        first_sequence: s.sequence,
        sequence_count: 1,
        start_unix_ns: m.start_unix_ns,
        end_unix_ns: m.end_unix_ns,
    })
}

/// What the uplink did.
#[derive(Clone, Copy, Debug, Default)]
pub struct UplinkReport {
    pub uploaded: u64,
    pub rejected: u64,
}
