//! The uplink's HTTP client: the mutual-TLS connection to the ingest, one
//! upload or probe at a time, and what the ingest's answer means.

use std::sync::Arc;
use std::time::Duration;

use sealcam_api::{media, ErrorBody, Route};
use sealcam_format::{DeviceVerifyingKey, SealedFragment};
use sealcam_transport::{pem, tls, ExternalSigner};

use super::{Outcome, Uplink, UplinkError, UploadError};
use crate::pipeline::spool::Spooled;

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
            .map_err(|e| UplinkError::Client(sealcam_base::error_chain(&e)))
    }

    /// Where fragment `sequence` is uploaded.
    pub(super) fn url(&self, sequence: u64) -> String {
        let route = Route::Upload {
            device: self.device.clone(),
            stream: self.stream.clone(),
            sequence,
        };
        format!("{}{}", self.base, route.path())
    }

    /// What the ingest's answer to an upload means.
    pub(super) async fn outcome(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Outcome, UploadError> {
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) => return Err(self.unreachable(&e).await),
        };
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
        let body = ErrorBody::from_response_text(&crate::answer::text(resp).await);
        match status.as_u16() {
            400 | 409 | 413 | 422 => Ok(Outcome::Rejected(format!("{status}: {}", body.error))),
            _ => Err(UploadError::Refused {
                status,
                code: body.code,
                reason: body.error,
                retry_after,
            }),
        }
    }

    /// One attempt to upload one spooled fragment. The file is checked
    /// first: a fragment damaged in the spool is never sent.
    pub async fn upload(&self, s: &Spooled) -> Result<Outcome, UploadError> {
        let bytes = match tokio::fs::read(&s.path).await {
            Ok(b) => b,
            // Evicted from a full spool meanwhile (and declared as a gap).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(source) => {
                return Err(UploadError::Read {
                    path: s.path.clone(),
                    source,
                })
            }
        };
        if let Err(why) = self.check_spooled(s.sequence, &bytes) {
            return Ok(Outcome::Damaged(why));
        }
        let resp = self
            .client()
            .put(self.url(s.sequence))
            .header(reqwest::header::CONTENT_TYPE, media::FRAGMENT)
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
    pub(super) async fn probe(&self) -> Result<(), UploadError> {
        let resp = match self
            .client()
            .get(format!("{}{}", self.base, Route::WhoAmI.path()))
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) => return Err(self.unreachable(&e).await),
        };
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(UploadError::ProbeRefused { status })
        }
    }
}
