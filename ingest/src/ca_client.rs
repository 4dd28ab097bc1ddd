//! The ingest's side of the CA service (`sealcam-ca serve`): the ingest
//! holds no CA key; it asks the service to enroll and renew, and fetches
//! the revocation list from it (`docs/ref/protocol.md`, "The CA service").
//!
//! Two transports: a Unix socket on the same host (`unix:/path`), or
//! mutual TLS to another host (`https://host:port`), where the ingest
//! presents its own certificate (`server.crt`, issued by `sealcam-ca
//! ingest issue`, naming it `urn:sealcam:ingest:<name>`) and checks the
//! service's against the fleet CA.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sealcam_api::ca::PEER_HEADER;
use sealcam_transport::{pem, tls, TransportError};
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long one exchange with the CA service may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer read from the CA service (a revocation list of some
/// hundred thousand entries).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Where the CA service is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaUrl {
    /// `unix:/run/sealcam-ca/ca.sock`
    Unix(PathBuf),
    /// `https://host:port` (mutual TLS)
    Https { host: String, port: u16 },
}

impl FromStr for CaUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/sealcam-ca/ca.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("https://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: write https://HOST:PORT"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("{s:?}: no host"));
            }
            return Ok(Self::Https {
                host: host.to_owned(),
                port,
            });
        }
        Err(format!(
            "{s:?}: write unix:/path/to/ca.sock or https://HOST:PORT"
        ))
    }
}

impl std::fmt::Display for CaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Https { host, port } if host.contains(':') => {
                write!(f, "https://[{host}]:{port}")
            }
            Self::Https { host, port } => write!(f, "https://{host}:{port}"),
        }
    }
}

impl<'de> Deserialize<'de> for CaUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Why an exchange with the CA service failed.
#[derive(Debug, thiserror::Error)]
pub enum CaClientError {
    #[error("cannot reach the CA service at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with the CA service at {url} failed: {source}")]
    Handshake {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA service at {url} broke off: {source}")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the CA service at {url} did not answer within {} s", TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("the CA service at {url} sent an answer over {MAX_ANSWER} bytes")]
    TooLarge { url: String },
    #[error("the CA service's host name {0:?} is not valid")]
    Name(String),
    #[error("the certificate for talking to the CA service: {0}")]
    Tls(#[from] TransportError),
}

/// An answer of the CA service, as it came.
#[derive(Debug)]
pub struct CaAnswer {
    pub status: StatusCode,
    pub content_type: Option<hyper::header::HeaderValue>,
    /// When to ask again (a refusal of too many requests).
    pub retry_after: Option<hyper::header::HeaderValue>,
    pub body: Bytes,
}

/// A client of the CA service. Cheap to clone; one connection per request
/// (enrollments and CRL polls are rare).
#[derive(Clone)]
pub struct CaClient {
    url: CaUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaClient").field("url", &self.url).finish()
    }
}

impl CaClient {
    /// A client of the service at `url`; over TLS it presents the ingest's
    /// certificate from `pki` and trusts the fleet CA there.
    pub fn new(url: CaUrl, pki: &Path) -> Result<Self, CaClientError> {
        let tls = match &url {
            CaUrl::Unix(_) => None,
            CaUrl::Https { .. } => Some(Arc::new(tls::consumer_client_config(
                pem::load_roots(&pki.join("ca.crt"))?,
                pem::load_certs(&pki.join("server.crt"))?,
                pem::load_private_key(&pki.join("server.key"))?,
            )?)),
        };
        Ok(Self { url, tls })
    }

    pub fn url(&self) -> &CaUrl {
        &self.url
    }

    /// Sends one request; `peer` is the camera's address whose request it
    /// passes on, for the CA's log.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        peer: Option<&str>,
        content_type: Option<&hyper::header::HeaderValue>,
        body: Bytes,
    ) -> Result<CaAnswer, CaClientError> {
        let url = self.url.to_string();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "sealcam-ca");
        if let Some(peer) = peer {
            req = req.header(PEER_HEADER, peer);
        }
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| CaClientError::Name(e.to_string()))?;
        let exchange = async {
            match (&self.url, &self.tls) {
                (CaUrl::Unix(path), _) => {
                    let stream = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(|source| CaClientError::Connect {
                            url: url.clone(),
                            source,
                        })?;
                    exchange(stream, req, &url).await
                }
                (CaUrl::Https { host, port }, Some(tls)) => {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(|source| CaClientError::Connect {
                            url: url.clone(),
                            source,
                        })?;
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|_| CaClientError::Name(host.clone()))?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|source| CaClientError::Handshake {
                            url: url.clone(),
                            source,
                        })?;
                    exchange(stream, req, &url).await
                }
                (CaUrl::Https { .. }, None) => Err(CaClientError::Name(url.clone())),
            }
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| CaClientError::Timeout { url: url.clone() })?
    }
}

async fn exchange<S>(
    stream: S,
    req: Request<Full<Bytes>>,
    url: &str,
) -> Result<CaAnswer, CaClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| CaClientError::Http {
        url: url.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let answer = async {
        let res = sender.send_request(req).await.map_err(http)?;
        let (parts, body) = res.into_parts();
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| CaClientError::TooLarge {
                url: url.to_owned(),
            })?
            .to_bytes();
        Ok(CaAnswer {
            status: parts.status,
            content_type: parts.headers.get(hyper::header::CONTENT_TYPE).cloned(),
            retry_after: parts.headers.get(hyper::header::RETRY_AFTER).cloned(),
            body,
        })
    }
    .await;
    driver.abort();
    answer
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ca_urls_parse_with_their_transport() {
        assert_eq!(
            "unix:/run/sealcam-ca/ca.sock".parse::<CaUrl>(),
            Ok(CaUrl::Unix("/run/sealcam-ca/ca.sock".into()))
        );
        let https = "https://ca.example:9443".parse::<CaUrl>().unwrap();
        assert_eq!(https.to_string(), "https://ca.example:9443");
        assert!("http://ca.example:9443".parse::<CaUrl>().is_err());
        assert!("https://ca.example".parse::<CaUrl>().is_err());
        assert!("unix:".parse::<CaUrl>().is_err());
    }
}
