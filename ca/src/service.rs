//! `sealcam-ca serve`: the CA as a service the ingest instances ask, so
//! that the CA key stays in this process and out of the internet-facing
//! one (`docs/design/device-identity.md`).
//!
//! It answers, over HTTP/1.1 (`docs/ref/protocol.md`, "The CA service"):
//!
//! * `POST /v1/enroll` (and any `/v1/enroll/<step>`): a camera's
//!   enrollment request as the camera sent it, passed through by an ingest;
//! * `POST /v1/renew`: a device's renewal, checked here against the
//!   certificate the device presented;
//! * `GET /v1/crl`: the signed revocation list.
//!
//! Two transports: a Unix socket (one host; who may connect is decided by
//! the socket's group and mode), and TCP with mutual TLS (several hosts),
//! where only certificates this CA issued to an ingest instance
//! (`urn:sealcam:ingest:<name>`, `sealcam-ca ingest issue`) and not
//! revoked are accepted.

use crate::{PendingLimits, PendingQueue};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sealcam_api::ca::{
    is_enroll_path, CHALLENGE_PATH, CRL_PATH, ENROLL_PATH, PEER_HEADER, RENEW_PATH,
};
use sealcam_api::{
    CaRenewRequest, CertificateResponse, ChallengeRequest, EnrollRequest, ErrorBody, ErrorCode,
    PendingResponse,
};
use sealcam_transport::{pem, tls, TransportError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;

use crate::{Approval, EkPolicy, EnrollError, FleetCa, PkiError, RenewError, CA_CERT, CRL};

/// The largest request body the CA service reads.
const MAX_BODY: usize = 64 * 1024;

/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the CA service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `unix:/run/sealcam-ca/ca.sock`
    Unix(PathBuf),
    /// `tls:0.0.0.0:9443` (mutual TLS, ingest certificates only)
    Tls(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/sealcam-ca/ca.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tls:") {
            return addr
                .parse()
                .map(Self::Tls)
                .map_err(|e| format!("{addr:?}: {e}; write tls:ADDRESS:PORT"));
        }
        Err(format!(
            "{s:?}: write unix:/path/to/ca.sock or tls:ADDRESS:PORT"
        ))
    }
}

/// What the CA service needs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The CA's directory (`sealcam-ca init`).
    pub dir: PathBuf,
    pub listen: Listen,
    /// Mode of the Unix socket: who may connect (`0o660`: the socket's
    /// group, of which the ingest's user is a member).
    pub socket_mode: u32,
    /// Names and addresses in the TLS listener's own certificate, which
    /// the service issues itself at start (a new key each start).
    pub tls_names: Vec<String>,
    pub tls_ips: Vec<IpAddr>,
    /// Lifetime of device certificates issued at enrollment and renewal.
    pub device_cert_lifetime: Duration,
    /// Which TPM endorsement-key certificates enrollment accepts.
    pub ek_policy: EkPolicy,
    /// How long each CRL the service signs stays current (`nextUpdate`);
    /// it re-signs when half of that is left.
    pub crl_lifetime: Duration,
    /// Where requests without a token wait; `None`: `<dir>.pending`.
    pub pending_dir: Option<PathBuf>,
    /// Caps on requests without a token.
    pub pending: PendingLimits,
}

/// Why the CA service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {what}: {source}")]
    Bind {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA directory {dir} is not usable: {source}")]
    Pki {
        dir: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error(transparent)]
    Tls(#[from] TransportError),
}

enum Listener {
    Unix(UnixListener, PathBuf),
    Tls(TcpListener, TlsAcceptor),
}

/// The CA service, bound and ready to serve.
pub struct CaService {
    listener: Listener,
    state: Arc<State>,
}

struct State {
    ca: FleetCa,
    lifetime: Duration,
    ek_policy: EkPolicy,
    crl_lifetime: Duration,
    pending: PendingQueue,
}

impl CaService {
    /// Checks the CA's directory and binds the listener.
    pub async fn bind(cfg: &ServiceConfig) -> Result<Self, ServiceError> {
        let mut ca = FleetCa::new(&cfg.dir).with_actor("ca-service");
        if let Some(p) = &cfg.pending_dir {
            ca = ca.with_pending_dir(p);
        }
        let pending = PendingQueue::new(ca.pending_dir().to_owned(), cfg.pending);
        let pki = |source| ServiceError::Pki {
            dir: cfg.dir.clone(),
            source,
        };
        // Loading the CA now fails early on a wrong directory or a key this
        // user may not read; a CRL is written if there is none yet, or if
        // the one there is near its end.
        crate::issue::load_ca(&cfg.dir).map_err(pki)?;
        ca.refresh_crl(cfg.crl_lifetime).map_err(pki)?;
        let listener = match &cfg.listen {
            Listen::Unix(path) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                let bind_err = |source| ServiceError::Bind {
                    what: format!("unix:{}", path.display()),
                    source,
                };
                // A socket left by a previous run is removed; any other file
                // in its place is not ours to remove.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if meta.file_type().is_socket() {
                        std::fs::remove_file(path).map_err(bind_err)?;
                    }
                }
                let listener = UnixListener::bind(path).map_err(bind_err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.socket_mode))
                    .map_err(bind_err)?;
                Listener::Unix(listener, path.clone())
            }
            Listen::Tls(addr) => {
                let (chain, key) = ca
                    .issue_service_cert(&cfg.tls_names, &cfg.tls_ips)
                    .map_err(pki)?;
                let roots = pem::load_roots(&cfg.dir.join(CA_CERT))?;
                let crls = pem::load_crls(&cfg.dir.join(CRL))?;
                // The CA's own list, which it rewrites itself: its age
                // says nothing about revocations the CA has missed.
                let config =
                    tls::ingest_server_config(roots, chain, key, crls, tls::CrlExpiry::Ignore)?;
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ServiceError::Bind {
                            what: format!("tls:{addr}"),
                            source,
                        })?;
                Listener::Tls(listener, TlsAcceptor::from(Arc::new(config)))
            }
        };
        Ok(Self {
            listener,
            state: Arc::new(State {
                ca,
                lifetime: cfg.device_cert_lifetime,
                ek_policy: cfg.ek_policy.clone(),
                crl_lifetime: cfg.crl_lifetime,
                pending,
            }),
        })
    }

    /// Where it listens, for the log and for tests (`tls:` with port 0).
    pub fn local_addr(&self) -> String {
        match &self.listener {
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
            Listener::Tls(l, _) => match l.local_addr() {
                Ok(a) => format!("tls:{a}"),
                Err(e) => format!("tls:? ({e})"),
            },
        }
    }

    /// Serves until `shutdown` completes, re-signing the CRL on a timer.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let state = self.state;
        let refresher = tokio::spawn(refresh_crl(state.clone()));
        let _stop_refresher = AbortOnDrop(refresher);
        tokio::pin!(shutdown);
        match self.listener {
            Listener::Unix(listener, path) => {
                loop {
                    let stream = tokio::select! {
                        _ = &mut shutdown => break,
                        accepted = listener.accept() => match accepted {
                            Ok((s, _)) => s,
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    tokio::spawn(serve_connection(state.clone(), stream, "unix".into()));
                }
                let _ = std::fs::remove_file(path);
            }
            Listener::Tls(listener, acceptor) => loop {
                let (tcp, addr) = tokio::select! {
                    _ = &mut shutdown => break,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (state, acceptor) = (state.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let tls =
                        match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::warn!(%addr, error = %e, "TLS handshake refused");
                                return;
                            }
                            Err(_) => return,
                        };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.as_ref().to_vec());
                    match cert.map(|der| state.admit_ingest(&der)) {
                        Some(Ok(name)) => {
                            serve_connection(state, tls, format!("ingest {name} at {addr}")).await
                        }
                        Some(Err(reason)) => {
                            tracing::warn!(%addr, %reason, "connection refused: not an ingest of this fleet")
                        }
                        None => tracing::warn!(%addr, "connection refused: no certificate"),
                    }
                });
            },
        }
    }
}

impl State {
    /// An ingest instance's certificate, already chained to the CA by the
    /// handshake: it must name an ingest and not be revoked.
    fn admit_ingest(&self, der: &[u8]) -> Result<sealcam_format::Name, String> {
        use x509_parser::prelude::FromDer;
        let name = sealcam_transport::identity::ingest_name_of_cert(der)
            .map_err(|_| "its certificate names no ingest (urn:sealcam:ingest:<name>)")?;
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        if self.ca.is_serial_revoked(&hex::encode(cert.raw_serial())) {
            return Err(format!("the certificate of ingest {name} is revoked"));
        }
        Ok(name)
    }
}

async fn serve_connection<S>(state: Arc<State>, stream: S, who: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let who = Arc::new(who);
    let service = hyper::service::service_fn(move |req| {
        let (state, who) = (state.clone(), who.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(&state, &who, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(REQUEST_TIMEOUT)
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended");
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(b) => respond(status, "application/json", b),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: reason.into(),
        code: ErrorCode::for_status(status),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    respond(status, "application/json", bytes)
}

async fn handle(state: &Arc<State>, who: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let peer = parts
        .headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request bodies are at most {MAX_BODY} bytes"),
            )
        }
    };
    let path = parts.uri.path();
    let answer = match (&parts.method, path) {
        (&Method::GET, CRL_PATH) => crl(state),
        (&Method::POST, ENROLL_PATH) => enroll(state, &body).await,
        (&Method::POST, RENEW_PATH) => renew(state, &body).await,
        (&Method::POST, CHALLENGE_PATH) => enroll_challenge(state, &body).await,
        (&Method::POST, p) if is_enroll_path(p) => {
            refuse(StatusCode::NOT_FOUND, format!("no enrollment step {p}"))
        }
        (_, p) => refuse(StatusCode::NOT_FOUND, format!("no route {p}")),
    };
    tracing::info!(
        %who,
        camera = %peer,
        method = %parts.method,
        path,
        status = answer.status().as_u16(),
        "request"
    );
    answer
}

fn crl(state: &State) -> Response<Full<Bytes>> {
    match std::fs::read(state.ca.dir().join(CRL)) {
        Ok(b) => respond(StatusCode::OK, "application/x-pem-file", b),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the revocation list");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the revocation list cannot be read",
            )
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the CRL current: looks every quarter of its lifetime (at most
/// hourly) and re-signs it when half of its lifetime is left, so that a
/// fresh list is always there for the ingests to fetch.
async fn refresh_crl(state: Arc<State>) {
    let every =
        (state.crl_lifetime / 4).clamp(Duration::from_millis(250), Duration::from_secs(3600));
    loop {
        tokio::time::sleep(every).await;
        let (ca, lifetime) = (state.ca.clone(), state.crl_lifetime);
        match blocking(move || ca.refresh_crl(lifetime)).await {
            Ok(Ok(Some(number))) => tracing::info!(number, "revocation list re-signed"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot re-sign the revocation list; the ingests refuse every client once the current one expires")
            }
            Err(_) => tracing::error!("the task re-signing the revocation list failed"),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response<Full<Bytes>>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "task failed"))
}

async fn enroll(state: &Arc<State>, body: &[u8]) -> Response<Full<Bytes>> {
    let req: EnrollRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("enrollment request: {e}")),
    };
    let state = state.clone();
    let result = blocking(move || {
        state
            .ca
            .enroll_request(&req, &state.ek_policy, state.lifetime, &state.pending)
    })
    .await;
    match result {
        Err(r) => r,
        Ok(Ok(Approval::Issued {
            device,
            certificate,
        })) => {
            tracing::warn!(%device, "AUDIT: device enrolled");
            json(StatusCode::OK, &CertificateResponse { certificate })
        }
        Ok(Ok(Approval::Pending { fingerprint })) => {
            tracing::info!(%fingerprint, "enrollment request waits for approval (`sealcam-ca device pending`)");
            json(StatusCode::ACCEPTED, &PendingResponse::new(fingerprint))
        }
        Ok(Err(e)) => enroll_refusal(e),
    }
}

/// `POST /v1/enroll/challenge`: the credential a camera's TPM must
/// activate before it enrolls with TPM evidence (`attest.rs`). Stateless.
async fn enroll_challenge(state: &Arc<State>, body: &[u8]) -> Response<Full<Bytes>> {
    let req: ChallengeRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("challenge request: {e}")),
    };
    let state = state.clone();
    match blocking(move || state.ca.attestation_challenge(&state.ek_policy, &req)).await {
        Err(r) => r,
        Ok(Ok(challenge)) => json(StatusCode::OK, &challenge),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "attestation challenge refused");
            enroll_refusal(e)
        }
    }
}

fn enroll_refusal(e: EnrollError) -> Response<Full<Bytes>> {
    let status = match e {
        EnrollError::UnknownToken | EnrollError::Expired => StatusCode::UNAUTHORIZED,
        EnrollError::Revoked(_) | EnrollError::Ek(_) | EnrollError::Attestation(_) => {
            StatusCode::FORBIDDEN
        }
        EnrollError::BadCsr(_) | EnrollError::Malformed(_) => StatusCode::BAD_REQUEST,
        EnrollError::Busy {
            ref reason,
            retry_after,
        } => {
            tracing::warn!(%reason, "enrollment request without a token refused");
            let mut r = refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            if let Ok(v) = http::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return r;
        }
        EnrollError::Pki(ref p) => {
            tracing::error!(error = %p, "enrollment failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    refuse(status, e.to_string())
}

async fn renew(state: &Arc<State>, body: &[u8]) -> Response<Full<Bytes>> {
    let req: CaRenewRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("renewal request: {e}")),
    };
    let state = state.clone();
    let result = blocking(move || {
        state
            .ca
            .renew_presented(&req.certificate, &req.csr, state.lifetime)
    })
    .await;
    match result {
        Err(r) => r,
        Ok(Ok(certificate)) => json(StatusCode::OK, &CertificateResponse { certificate }),
        Ok(Err(e)) => {
            let status = match e {
                RenewError::BadCsr(_) | RenewError::OtherKey => StatusCode::BAD_REQUEST,
                RenewError::NotOurs(_) | RenewError::OtherDevice { .. } => StatusCode::FORBIDDEN,
                RenewError::Revoked(_) => StatusCode::FORBIDDEN,
                RenewError::Pki(ref p) => {
                    tracing::error!(error = %p, "renewal failed");
                    return refuse(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not issue the certificate; try again",
                    );
                }
            };
            tracing::warn!(reason = %e, "renewal refused");
            refuse(status, e.to_string())
        }
    }
}

impl FleetCa {
    /// The TLS listener's own certificate: issued at each start with a new
    /// key that never touches the disk.
    fn issue_service_cert(
        &self,
        names: &[String],
        ips: &[IpAddr],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let (cert, key) = self.issue_service(names, ips)?;
        Ok((
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_with_their_transport() {
        assert_eq!(
            "unix:/run/x.sock".parse::<Listen>(),
            Ok(Listen::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            "tls:127.0.0.1:9443".parse::<Listen>(),
            Ok(Listen::Tls(SocketAddr::from(([127, 0, 0, 1], 9443))))
        );
        assert!("127.0.0.1:9443".parse::<Listen>().is_err());
        assert!("unix:".parse::<Listen>().is_err());
    }
}
