//! Obtaining and renewing the device certificate.
//!
//! * Enrollment: `sealcamd provision --enroll URL --token T` sends the
//!   TPM-signed CSR with a one-time token to the ingest's enrollment endpoint
//!   (server-authenticated TLS; the camera has no certificate yet). A
//!   camera whose TPM has an endorsement-key certificate first proves that
//!   the device key lives in that TPM ([`attest`]).
//! * Renewal: the daemon renews at two thirds of the certificate's life, over
//!   mutual TLS with its current certificate, for the same key. A camera that
//!   was offline past expiry can no longer authenticate and must enroll again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealcam_api::{
    CertificateResponse, ChallengeRequest, ChallengeResponse, EnrollAttestation, EnrollRequest,
    ErrorBody, PendingResponse, RenewRequest, Route,
};
use sealcam_base::durable::{self, DurableError};
use sealcam_format::{DeviceVerifyingKey, Name};
use sealcam_hal::tpm::{TpmError, TpmKey};
use sealcam_transport::identity::{self, CertSummary};
use sealcam_transport::{pem, tls, ExternalSigner, Role};
use serde::Serialize;

use crate::pipeline::uplink::Uplink;
use crate::trust::provision::{certificate_request, ProvisionError};

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot reach the ingest at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the ingest refused: {0}")]
    Refused(String),
    #[error("the ingest returned an unusable certificate: {0}")]
    Unusable(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: DurableError,
    },
    #[error(transparent)]
    Request(#[from] ProvisionError),
    #[error(transparent)]
    Transport(#[from] sealcam_transport::TransportError),
    #[error("TPM attestation: {step} failed: {source}")]
    Tpm {
        step: &'static str,
        #[source]
        source: TpmError,
    },
}

/// What the ingest answered to a certificate request.
enum Answer {
    Certificate(String),
    /// Filed for an operator's approval of the key with this fingerprint.
    Pending(String),
}

async fn post_for_certificate(
    client: &reqwest::Client,
    url: &str,
    body: &impl Serialize,
) -> Result<Answer, CertificateError> {
    let resp =
        client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| CertificateError::Unreachable {
                url: url.to_owned(),
                reason: sealcam_base::error_chain(&e),
            })?;
    let status = resp.status();
    let text = crate::answer::text(resp).await;
    if status == reqwest::StatusCode::ACCEPTED {
        return serde_json::from_str::<PendingResponse>(&text)
            .map(|p| Answer::Pending(p.fingerprint))
            .map_err(|e| CertificateError::Unusable(e.to_string()));
    }
    if !status.is_success() {
        let reason = ErrorBody::from_response_text(&text).error;
        return Err(CertificateError::Refused(format!("{status}: {reason}")));
    }
    serde_json::from_str::<CertificateResponse>(&text)
        .map(|r| Answer::Certificate(r.certificate))
        .map_err(|e| CertificateError::Unusable(e.to_string()))
}

async fn expect_certificate(
    client: &reqwest::Client,
    url: &str,
    body: &impl Serialize,
) -> Result<String, CertificateError> {
    match post_for_certificate(client, url, body).await? {
        Answer::Certificate(c) => Ok(c),
        Answer::Pending(_) => Err(CertificateError::Unusable(
            "the ingest filed the request instead of answering".into(),
        )),
    }
}

/// Checks that a PEM certificate certifies `signer`'s key for `device`.
fn check_issued(
    pem_text: &str,
    device: &Name,
    signer: &dyn ExternalSigner,
) -> Result<CertSummary, CertificateError> {
    let der = pem::parse_first_cert(pem_text)?;
    let key = identity::device_key_from_cert_der(&der)?;
    if key != DeviceVerifyingKey(signer.verifying_key()) {
        return Err(CertificateError::Unusable(
            "it certifies another key than this device's".into(),
        ));
    }
    let summary = identity::summarize(&der)?;
    match &summary.identity {
        Some(id) if id.role == Role::Device && id.name == *device => Ok(summary),
        _ => Err(CertificateError::Unusable(format!(
            "it does not name device {device}"
        ))),
    }
}

/// Writes the certificate durably, replacing the old one atomically.
fn write_certificate(path: &Path, pem_text: &str) -> Result<(), CertificateError> {
    let err = |source| CertificateError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| {
            err(DurableError {
                op: "create directory",
                path: dir.to_owned(),
                source,
            })
        })?;
    }
    durable::replace(path, pem_text.as_bytes()).map_err(err)
}

/// How to enroll.
pub struct Enrollment<'a> {
    /// The ingest's enrollment endpoint, `https://host:port`.
    pub url: &'a str,
    /// One-time token from `sealcam-ca device add`; without one, the
    /// request waits for an operator's approval.
    pub token: Option<&'a str>,
    /// How long to wait for an approval.
    pub wait: Duration,
    /// The fleet CA that signed the ingest's certificate.
    pub ca: &'a Path,
    /// The TPM's endorsement-key certificate, sent so the fleet can record
    /// (or require) a genuine TPM.
    pub ek_certificate: Option<&'a [u8]>,
    /// The TPM holding the device key: when its endorsement key has a
    /// certificate, the enrollment carries the proof that the device key
    /// is resident in it ([`attest`]).
    pub tpm: Option<Arc<TpmKey>>,
}

/// Runs a blocking TPM step off the async threads.
async fn tpm_step<T: Send + 'static>(
    step: &'static str,
    f: impl FnOnce() -> Result<T, TpmError> + Send + 'static,
) -> Result<T, CertificateError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|source| CertificateError::Tpm { step, source }),
        Err(_) => Err(CertificateError::Unusable(format!(
            "the TPM task of {step} stopped"
        ))),
    }
}

/// The camera's half of TPM attestation at enrollment
/// (`docs/design/device-identity.md`): a fresh attestation key under the
/// endorsement key, the enrolling authority's challenge for it, the
/// credential activated by the TPM, and TPM2_Certify of the device key with
/// the secret it released. Returns the EK certificate and the evidence to
/// send, or `None` when the TPM has no EK certificate (nothing to attest
/// against).
pub async fn attest(
    client: &reqwest::Client,
    base_url: &str,
    tpm: Arc<TpmKey>,
) -> Result<Option<(Vec<u8>, EnrollAttestation)>, CertificateError> {
    let t = tpm.clone();
    let endorsement = tpm_step("reading the endorsement key", move || t.endorsement()).await?;
    let Some(ek_certificate) = endorsement.certificate else {
        return Ok(None);
    };
    let t = tpm.clone();
    let ak = tpm_step("creating the attestation key", move || {
        t.create_attestation_key(endorsement.kind)
    })
    .await?;
    let url = format!("{base_url}{}", Route::EnrollChallenge.path());
    let request = ChallengeRequest {
        ek_certificate: ek_certificate.clone(),
        attestation_key: ak.public.clone(),
    };
    let resp = client.post(&url).json(&request).send().await.map_err(|e| {
        CertificateError::Unreachable {
            url: url.clone(),
            reason: sealcam_base::error_chain(&e),
        }
    })?;
    let status = resp.status();
    let text = crate::answer::text(resp).await;
    if !status.is_success() {
        let reason = ErrorBody::from_response_text(&text).error;
        return Err(CertificateError::Refused(format!("{status}: {reason}")));
    }
    let challenge: ChallengeResponse =
        serde_json::from_str(&text).map_err(|e| CertificateError::Unusable(e.to_string()))?;
    let (t, key) = (tpm.clone(), ak.clone());
    let secret = tpm_step("activating the credential", move || {
        t.activate_credential(&key, &challenge.id_object, &challenge.encrypted_secret)
    })
    .await?;
    let (t, key) = (tpm, ak.clone());
    let certified = tpm_step("certifying the device key", move || {
        t.certify(&key, secret.as_slice())
    })
    .await?;
    Ok(Some((
        ek_certificate,
        EnrollAttestation {
            issued_unix: challenge.issued_unix,
            attestation_key: ak.public,
            key_public: certified.key_public,
            certify_info: certified.certify_info,
            certify_signature: certified.signature,
        },
    )))
}

/// Enrolls; writes the certificate to `cert_path`.
pub async fn enroll(
    how: &Enrollment<'_>,
    device: &Name,
    signer: Arc<dyn ExternalSigner>,
    cert_path: &Path,
) -> Result<CertSummary, CertificateError> {
    let csr = certificate_request(device, signer.clone())?;
    let config = tls::enrollment_client_config(pem::load_roots(how.ca)?)?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| CertificateError::Unreachable {
            url: how.url.to_owned(),
            reason: e.to_string(),
        })?;
    let base_url = how.url.trim_end_matches('/');
    let url = format!("{base_url}{}", Route::Enroll.path());
    let attested = match &how.tpm {
        Some(tpm) => attest(&client, base_url, tpm.clone()).await?,
        None => None,
    };
    let (ek_certificate, attestation) = match attested {
        Some((ek, evidence)) => (Some(ek), Some(evidence)),
        None => (how.ek_certificate.map(<[u8]>::to_vec), None),
    };
    let body = EnrollRequest {
        token_proof: how
            .token
            .map(|token| sealcam_api::token::token_proof(token, &csr)),
        csr,
        ek_certificate: ek_certificate.map(|ek| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(ek)
        }),
        attestation,
    };
    let deadline = tokio::time::Instant::now() + how.wait;
    let mut announced = false;
    let pem_text = loop {
        match post_for_certificate(&client, &url, &body).await? {
            Answer::Certificate(c) => break c,
            Answer::Pending(fingerprint) => {
                if !announced {
                    tracing::info!(
                        %fingerprint,
                        "waiting for an operator: sealcam-ca device approve {device} --fingerprint {fingerprint}"
                    );
                    announced = true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(CertificateError::Refused(format!(
                        "not approved within {:?}; the request stays filed: approve fingerprint {fingerprint} and run provision --enroll again",
                        how.wait
                    )));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let summary = check_issued(&pem_text, device, signer.as_ref())?;
    write_certificate(cert_path, &pem_text)?;
    Ok(summary)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// When a certificate should be renewed: two thirds into its life.
pub fn renew_at(c: &CertSummary) -> i64 {
    c.not_before + (c.not_after - c.not_before) * 2 / 3
}

/// Renews the certificate at two thirds of its life, forever. Failures are
/// retried with backoff; an expired certificate is reported once.
pub async fn renew_forever(
    cert_path: &Path,
    device: &Name,
    signer: Arc<dyn ExternalSigner>,
    uplink: &Uplink,
) -> std::convert::Infallible {
    let mut retry = Duration::from_secs(5);
    let mut expired_reported = false;
    loop {
        let summary = pem::load_certs(cert_path)
            .map_err(CertificateError::from)
            .and_then(|c| identity::summarize(&c[0]).map_err(CertificateError::from));
        let summary = match summary {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the device certificate for renewal");
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
        };
        let now = unix_now();
        if now >= summary.not_after {
            if !expired_reported {
                tracing::error!(
                    certificate = %cert_path.display(),
                    "the device certificate has expired; the ingest will refuse this camera until it enrolls again (`sealcamd provision --enroll URL --token T`)"
                );
                expired_reported = true;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            continue;
        }
        let due = renew_at(&summary);
        if now < due {
            let wait = Duration::from_secs((due - now).clamp(1, 3600) as u64);
            tokio::time::sleep(wait).await;
            continue;
        }
        match renew_once(cert_path, device, signer.clone(), uplink).await {
            Ok(new) => {
                tracing::info!(not_after = new.not_after, "device certificate renewed");
                retry = Duration::from_secs(5);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "certificate renewal failed");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(600));
            }
        }
    }
}

async fn renew_once(
    cert_path: &Path,
    device: &Name,
    signer: Arc<dyn ExternalSigner>,
    uplink: &Uplink,
) -> Result<CertSummary, CertificateError> {
    let csr = certificate_request(device, signer.clone())?;
    let url = format!("{}{}", uplink.base_url(), Route::Renew.path());
    let pem_text = expect_certificate(&uplink.client(), &url, &RenewRequest { csr }).await?;
    let summary = check_issued(&pem_text, device, signer.as_ref())?;
    write_certificate(cert_path, &pem_text)?;
    uplink
        .reload_certificate()
        .map_err(|e| CertificateError::Unusable(e.to_string()))?;
    Ok(summary)
}
