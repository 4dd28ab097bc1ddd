//! The uplink's HTTP client: the mutual-TLS connection to the ingest, one
//! upload or probe at a time, and what the ingest's answer means.

use std::sync::Arc;
use std::time::Duration;

use sealcam_format::fragment::MEDIA_TYPE;
use sealcam_format::{DeviceVerifyingKey, SealedFragment};
use sealcam_transport::{pem, tls, ExternalSigner};
use serde::Deserialize;

use super::{Outcome, Retryable, Uplink, UplinkError};
use crate::pipeline::spool::Spooled;

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    code: String,
}

/// The longest `Retry-After` honoured; a longer one is capped here.
const MAX_RETRY_AFTER_S: u64 = 300;

impl Uplink {
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

    pub(super) fn url(&self, sequence: u64) -> String {
        format!(
            "{}/v1/fragments/{}/{}/{}",
            self.base, self.device, self.stream, sequence
        )
    }

    pub(super) fn unreachable(&self, e: &reqwest::Error) -> Retryable {
        let chain = chain_err(e);
        let fix = connect_fix(&chain, e.is_timeout());
        Retryable::new(format!(
            "cannot reach the ingest at {}: {chain}; fix: {fix}",
            self.base
        ))
    }

    /// What the ingest's answer to an upload means.
    pub(super) async fn outcome(
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
    pub(super) async fn probe(&self) -> Result<(), Retryable> {
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
