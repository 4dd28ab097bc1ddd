//! Why the ingest closed a connection without a word the camera could read.
//!
//! The ingest refuses a revoked or foreign certificate with a TLS alert,
//! but in TLS 1.3 the client's handshake ends before the server has judged
//! its certificate, so the HTTP client has already queued its request on a
//! connection it believes open. When the alert arrives before the request
//! is written, hyper reports only "connection closed" and the alert is
//! lost: the camera would retry for hours without saying it was revoked.
//! So when a request got no answer for no reason the camera can name, it
//! makes one handshake of its own (a fresh one, never a resumed session),
//! says goodbye at once and reads the ingest's first word: an alert names
//! the reason; a goodbye in return means TLS is fine and the reason lies
//! elsewhere.

use std::time::Duration;

use rustls::pki_types::ServerName;
use sealcam_transport::{pem, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{ConnectFailure, UploadError};
use super::Uplink;

/// How long the diagnostic handshake may take, all of it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl Uplink {
    /// The failure of a request to the ingest that got no answer; when no
    /// TLS error in it says why, [`Self::handshake_says`] is asked.
    pub(super) async fn unreachable(&self, e: &reqwest::Error) -> UploadError {
        let mut err = UploadError::unreachable(&self.base, e);
        if let UploadError::Unreachable { failure, .. } = &mut err {
            if *failure == ConnectFailure::NoAnswer {
                if let Some(found) = self.handshake_says().await {
                    *failure = found;
                }
            }
        }
        err
    }

    /// The reason a fresh handshake with the ingest gives for refusing this
    /// camera, if it refuses it; `None` when it accepts it, or cannot be
    /// reached at all (the request's own error says that).
    async fn handshake_says(&self) -> Option<ConnectFailure> {
        let url = reqwest::Url::parse(&self.base).ok()?;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_or_known_default()?;
        let name = ServerName::try_from(host.to_owned()).ok()?;
        let roots = pem::load_roots(&self.ca).ok()?;
        let chain = pem::load_certs(&self.certificate).ok()?;
        let config = tls::device_client_config(roots, chain, self.signer.clone()).ok()?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
            let mut tls = match connector.connect(name, tcp).await {
                Ok(tls) => tls,
                Err(e) => return refusal(&e),
            };
            // Goodbye at once: an ingest that accepted the certificate
            // answers with its own; one that refused it has sent its alert.
            if let Err(e) = tls.shutdown().await {
                return refusal(&e);
            }
            let mut rest = [0u8; 256];
            loop {
                match tls.read(&mut rest).await {
                    Ok(0) => return None,
                    Ok(_) => continue,
                    Err(e) => return refusal(&e),
                }
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, attempt)
            .await
            .ok()
            .flatten()
    }
}

/// The refusal `e` names, if it names one.
fn refusal(e: &std::io::Error) -> Option<ConnectFailure> {
    match ConnectFailure::of_io(e) {
        ConnectFailure::NoAnswer | ConnectFailure::TimedOut => None,
        named => Some(named),
    }
}
