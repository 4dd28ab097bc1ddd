//! Runs sealcamd: capture and recording on a thread of their own, the uplink
//! on the async runtime, until the source ends or a stop is requested.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealcam_format::DeviceVerifyingKey;
use sealcam_hal::capture::{Capture, CaptureError, CaptureEvent};
use sealcam_hal::identity::{KeyError, SoftwareKey};
use sealcam_hal::tpm::{TpmError, TpmKey};
use sealcam_transport::signer::CountingSigner;
use sealcam_transport::{identity, pem, ExternalSigner, TransportError};
use tokio::sync::{watch, Notify};

use crate::certificate;
use crate::config::{Config, KeySource};
use crate::recipients::{RecipientError, RecipientWatcher};
use crate::recorder::{RecordError, Recorder, RecorderStats};
use crate::spool::{Spool, SpoolError};
use crate::uplink::{Uplink, UplinkError, UplinkReport};
use crate::watchdog::Heartbeat;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tpm(#[from] TpmError),
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
    Recipients(#[from] RecipientError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("capture thread ended abnormally")]
    CaptureThread,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub recorded: RecorderStats,
    pub uplink: UplinkReport,
    /// Signatures the device key made: manifests plus full TLS handshakes.
    pub key_signatures: u64,
}

/// Opens the device key where the config says it lives.
pub fn open_key(source: &KeySource) -> Result<Arc<dyn ExternalSigner>, DaemonError> {
    match source {
        KeySource::Tpm(tpm) => Ok(Arc::new(TpmKey::open(tpm)?)),
        KeySource::InsecureSoftware(path) => {
            tracing::warn!(
                key = %path.display(),
                "INSECURE: the device key is a software key in a file and can be copied off this camera; use the TPM in production"
            );
            Ok(Arc::new(SoftwareKey::load(path)?))
        }
    }
}

/// Loads the device key and checks the certificate certifies it.
pub fn load_identity(cfg: &Config) -> Result<Arc<dyn ExternalSigner>, DaemonError> {
    let key = open_key(&cfg.identity.key)?;
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
    Ok(key)
}

/// Runs until the source ends (bounded test source) or `stop` is set.
pub async fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<RunReport, DaemonError> {
    let counted = Arc::new(CountingSigner::new(load_identity(&cfg)?));
    let signer: Arc<dyn ExternalSigner> = counted.clone();
    let spool = Arc::new(Spool::open(&cfg.spool_dir, &cfg.stream)?);
    let uplink = Uplink::new(
        &cfg.upload,
        &cfg.identity.certificate,
        signer.clone(),
        cfg.device.clone(),
        cfg.stream.clone(),
        spool.clone(),
    )?;
    let signer_for_renewal = signer.clone();
    let mut recorder = Recorder::new(
        cfg.device.clone(),
        cfg.stream.clone(),
        cfg.fragment_duration_ns,
        RecipientWatcher::start(cfg.recipients.clone(), spool.clone())?,
        signer,
        spool.clone(),
    )?;
    recorder.pad_frames(cfg.pad_frames);
    recorder.set_spool_bounds(cfg.spool_bounds);
    let pending = spool.pending()?.len();
    if pending > 0 {
        tracing::info!(
            pending,
            "spool holds fragments from an earlier run; uploading them first"
        );
    }

    let wake = Arc::new(Notify::new());
    let (done_tx, done_rx) = watch::channel(false);
    let capture_settings = cfg.capture.clone();
    let capture_wake = wake.clone();
    let capture_stop = stop.clone();
    let heartbeat = Heartbeat::new();
    let capture_heartbeat = heartbeat.clone();
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let result = record(
                &capture_settings,
                &mut recorder,
                &capture_wake,
                &capture_stop,
                &capture_heartbeat,
            );
            capture_wake.notify_one();
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
    let uplink_result = tokio::select! {
        r = uplink.run(wake, done_rx, drain) => r,
        never = &mut renewal => match never {},
        never = &mut watchdog => match never {},
    };
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

/// The capture loop: frames into the recorder until the end or a stop.
fn record(
    settings: &sealcam_hal::capture::CaptureSettings,
    recorder: &mut Recorder,
    wake: &Notify,
    stop: &AtomicBool,
    heartbeat: &Heartbeat,
) -> Result<(), DaemonError> {
    let mut capture = Capture::start(settings)?;
    tracing::info!(?settings, "capture started");
    sealcam_base::service::ready();
    let result: Result<(), DaemonError> = loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!("stop requested; sealing the open fragment");
            break Ok(());
        }
        match capture.next(Duration::from_millis(200)) {
            Ok(Some(CaptureEvent::Frame(f))) => match recorder.push(f) {
                Ok(Some(_)) => {
                    heartbeat.beat();
                    wake.notify_one();
                }
                Ok(None) => heartbeat.beat(),
                Err(e) => break Err(e.into()),
            },
            Ok(Some(CaptureEvent::EndOfStream)) => {
                tracing::info!("source ended");
                break Ok(());
            }
            Ok(None) => {}
            Err(e) => break Err(e.into()),
        }
    };
    capture.shutdown();
    // Whatever was captured is sealed and spooled, even after an error.
    let closed = recorder.close();
    result?;
    closed?;
    recorder.stopped_cleanly()?;
    Ok(())
}
