//! The ingest's mutual-TLS HTTP service.
//!
//! Every connection must present a certificate chained to the fleet CA
//! (checked by rustls during the handshake); the certificate's SAN URI names
//! the peer as a device or a consumer. Devices may only `PUT` fragments of
//! their own streams; consumers may only read. See `docs/ref/protocol.md`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use sealcam_format::{DeviceVerifier, Name, SealedFragment};
use sealcam_transport::{identity, pem, tls, Identity, Role, TransportError};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::audit::{self, AuditError, AuditLog, Event};
use crate::config::{IngestConfig, LimitsConfig, RetentionConfig};
use crate::limits::{self, Limiter};
use crate::metrics::Metrics;
use crate::pki::{self, EnrollError};
use crate::store::{self, PutOutcome, StorageConfig, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TransportError),
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Where the ingest listens and what it uses.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The enrollment endpoint (server-authenticated TLS, token in the body).
    pub enroll_listen: Option<SocketAddr>,
    /// The PKI directory: fleet CA, server certificate, issued certificates,
    /// enrollment tokens, revocations and the CRL.
    pub pki: PathBuf,
    pub storage: StorageConfig,
    /// Lifetime of device certificates issued at enrollment and renewal.
    pub device_cert_lifetime: Duration,
    /// How often the CRL file is checked for changes.
    pub crl_poll: Duration,
    /// Which TPM endorsement-key certificates enrollment accepts.
    pub ek_policy: pki::EkPolicy,
    /// This instance's name in the audit trail.
    pub audit_instance: String,
    pub audit_flush: Duration,
    pub retention: RetentionConfig,
    pub limits: LimitsConfig,
    /// Prometheus metrics, `/healthz` and `/readyz`, plain HTTP.
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    /// Resolves a configuration file's contents (reads the EK CA file).
    pub fn from_config(c: IngestConfig) -> Result<Self, ServerError> {
        let ek_policy = match &c.devices.require_ek_ca {
            Some(path) => pki::EkPolicy {
                required_issuers: pem::load_certs(path)?
                    .into_iter()
                    .map(|c| c.as_ref().to_vec())
                    .collect(),
            },
            None => pki::EkPolicy::default(),
        };
        Ok(Self {
            listen: c.listen,
            enroll_listen: c.enroll_listen,
            pki: c.pki,
            storage: c.storage,
            device_cert_lifetime: c.devices.cert_lifetime.0,
            crl_poll: c.devices.crl_poll.0,
            ek_policy,
            audit_instance: c.audit.instance.unwrap_or_else(audit::host_name),
            audit_flush: c.audit.flush_interval.map_or(Duration::from_secs(1), |s| {
                s.0.max(Duration::from_millis(10))
            }),
            retention: c.retention,
            limits: c.limits,
            metrics_listen: c.metrics_listen,
        })
    }
}

/// Checks that the PKI files load and the storage answers: what `serve`
/// needs before it can accept a connection.
pub async fn check(cfg: &ServeConfig) -> Result<(), ServerError> {
    let roots = pem::load_roots(&cfg.pki.join(pki::CA_CERT))?;
    let chain = pem::load_certs(&cfg.pki.join(pki::SERVER_CERT))?;
    let key = pem::load_private_key(&cfg.pki.join(pki::SERVER_KEY))?;
    let crls = pem::load_crls(&cfg.pki.join(pki::CRL))?;
    tls::ingest_server_config(roots, chain, key, crls)?;
    Store::open(&cfg.storage)?.probe().await?;
    Ok(())
}

/// The authenticated peer of a connection.
#[derive(Clone, Debug)]
struct Peer {
    identity: Identity,
    cert_der: Arc<Vec<u8>>,
    /// The certificate's key, ready to verify manifests: made at the
    /// connection's first upload and kept for the others.
    verifier: Arc<OnceLock<Result<DeviceVerifier, String>>>,
    /// The length of the connection's last upload: the room its next body
    /// of unknown length is given, so that a camera's chunked uploads, of
    /// much the same length each, are received without moving.
    last_body_len: Arc<AtomicUsize>,
    /// The certificate's serial number, hex.
    serial: Arc<str>,
    addr: SocketAddr,
}

/// One wake-up per stream that someone follows.
type Arrivals = HashMap<(Name, Name), Arc<Notify>>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    limiter: Arc<Limiter>,
    max_fragment_bytes: usize,
    body_timeout: Duration,
    store: Store,
    /// Woken when a fragment of the stream is stored here, for followers.
    arrivals: Arc<Mutex<Arrivals>>,
    pki: PathBuf,
    device_cert_lifetime: Duration,
    ek_policy: Arc<pki::EkPolicy>,
}

/// An authenticated connection, so that revocation can close it.
struct OpenConnection {
    serial: Vec<u8>,
    identity: Identity,
    close: Arc<Notify>,
}

/// Serial numbers listed in the CRLs.
fn revoked_serials(
    crls: &[rustls::pki_types::CertificateRevocationListDer<'_>],
) -> HashSet<Vec<u8>> {
    crls.iter()
        .filter_map(|der| x509_parser::parse_x509_crl(der.as_ref()).ok())
        .flat_map(|(_, crl)| {
            crl.iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the accept loops share.
struct Shared {
    acceptor: RwLock<TlsAcceptor>,
    /// Serials the CRL lists: checked again after the handshake, so that a
    /// resumed TLS session cannot outlive a revocation.
    revoked: RwLock<HashSet<Vec<u8>>>,
    connections: Mutex<HashMap<u64, OpenConnection>>,
    next_id: AtomicU64,
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    crl_path: PathBuf,
    audit: AuditLog,
    /// A request's headers must arrive within this.
    header_timeout: Duration,
    /// Set when the ingest stops: connections finish what they do and close.
    stopping: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor.read().ok().map(|a| a.clone())
    }

    /// Rebuilds the TLS config with the CRL as it is now on disk, then closes
    /// every open connection whose certificate it revokes.
    fn reload_crl(&self) -> Result<usize, ServerError> {
        let crls = pem::load_crls(&self.crl_path)?;
        let revoked = revoked_serials(&crls);
        // A new config also starts a new session cache: no session resumed
        // from before the change skips the revocation check.
        let config = tls::ingest_server_config(
            self.roots.clone(),
            self.chain.clone(),
            self.key.clone_key(),
            crls,
        )?;
        let newly: Vec<String> = match self.revoked.read() {
            Ok(old) => revoked
                .iter()
                .filter(|s| !old.contains(*s))
                .map(hex::encode)
                .collect(),
            Err(_) => Vec::new(),
        };
        for serial in newly {
            self.audit.record(Event {
                actor: "operator".into(),
                action: "revoke".into(),
                target: Some(format!("certificate {serial}")),
                result: "ok".into(),
                detail: Some("listed in the revocation list".into()),
                ..Event::default()
            });
        }
        if let Ok(mut a) = self.acceptor.write() {
            *a = TlsAcceptor::from(Arc::new(config));
        }
        if let Ok(mut r) = self.revoked.write() {
            r.clone_from(&revoked);
        }
        let mut closed = 0;
        if let Ok(conns) = self.connections.lock() {
            for c in conns.values().filter(|c| revoked.contains(&c.serial)) {
                tracing::warn!(peer = %c.identity, "closing connection: its certificate was revoked");
                c.close.notify_one();
                closed += 1;
            }
        }
        Ok(closed)
    }
}

/// A refusal: status plus one clear reason, sent as `{"error": "..."}`.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    reason: String,
    retry_after: Option<Duration>,
}

/// The documented error code of a refusal (`docs/ref/protocol.md`).
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "malformed",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "timeout",
        409 => "conflict",
        411 => "length-required",
        413 => "too-large",
        429 => "too-many-requests",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "refused",
    }
}

impl ApiError {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            code: code_for(status),
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// The reason of a refusal (or a note on a success), kept on the response
/// for the audit trail and the metrics.
#[derive(Clone)]
struct Reason {
    code: &'static str,
    text: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": &self.reason, "code": self.code }));
        let mut r = (self.status, body).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up (RFC 9110).
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        r.extensions_mut().insert(Reason {
            code: self.code,
            text: self.reason,
        });
        r
    }
}

fn actor(identity: &Identity) -> String {
    match identity.role {
        Role::Device => format!("device:{}", identity.name),
        Role::Consumer => format!("consumer:{}", identity.name),
    }
}

/// The audited action and target of an API request, from its route.
fn describe(method: &axum::http::Method, path: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let post = *method == axum::http::Method::POST;
    match (method.as_str(), parts.as_slice()) {
        ("PUT", ["v1", "fragments", d, s, n]) => ("upload".into(), Some(format!("{d}/{s}/{n}"))),
        ("GET", ["v1", "streams"]) => ("list".into(), None),
        ("GET", ["v1", "streams", d, s, "fragments"]) => ("list".into(), Some(format!("{d}/{s}"))),
        ("GET", ["v1", "streams", d, s, "fragments", n]) => {
            ("read".into(), Some(format!("{d}/{s}/{n}")))
        }
        ("GET", ["v1", "devices", d, "certificate"]) => {
            ("read-certificate".into(), Some((*d).to_owned()))
        }
        (_, ["v1", "renew"]) if post => ("renew".into(), None),
        (_, ["v1", "whoami"]) => ("whoami".into(), None),
        (_, ["v1", "enroll"]) if post => ("enroll".into(), None),
        _ => {
            let shown: String = path.chars().take(200).collect();
            ("request".into(), Some(format!("{method} {shown}")))
        }
    }
}

/// Records every API call, accepted or refused, with who made it.
/// What the per-request middleware reports to.
#[derive(Clone)]
struct Observers {
    audit: AuditLog,
    metrics: Arc<Metrics>,
}

async fn audit_request(
    State(Observers { audit, metrics }): State<Observers>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (who, addr) = match req.extensions().get::<Peer>() {
        Some(p) => (actor(&p.identity), Some(p.addr.to_string())),
        None => (
            "anonymous".to_owned(),
            req.extensions()
                .get::<SocketAddr>()
                .map(ToString::to_string),
        ),
    };
    let (action, target) = describe(req.method(), req.uri().path());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    if action == "upload" {
        metrics.ack_seconds.observe(started.elapsed().as_secs_f64());
    }
    let status = response.status();
    let result = if status.is_success() {
        "ok"
    } else if status.is_client_error() {
        "refused"
    } else {
        "error"
    };
    let reason = response.extensions().get::<Reason>();
    if !status.is_success() {
        let code = reason.map_or_else(|| code_for(status), |r| r.code);
        metrics.refused(&action, code);
        if status.is_server_error() {
            metrics.storage_errors.inc();
        }
    }
    let detail = reason
        .map(|r| r.text.clone())
        .or_else(|| (status != StatusCode::OK).then(|| status.to_string()));
    audit.record(Event {
        actor: who,
        action,
        target,
        addr,
        result: result.into(),
        detail,
    });
    response
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage error; try again",
        )
    }
}

fn name(s: &str, what: &str) -> Result<Name, ApiError> {
    Name::new(s).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

pub struct Server {
    listener: TcpListener,
    enroll: Option<(TcpListener, TlsAcceptor)>,
    shared: Arc<Shared>,
    app: Router,
    enroll_app: Router,
    crl_poll: Duration,
    audit_task: tokio::task::JoinHandle<()>,
    store: Store,
    retention: RetentionConfig,
    ops: Option<TcpListener>,
    metrics: Arc<Metrics>,
}

/// How long a stopping ingest waits for requests in progress to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Server {
    pub async fn bind(cfg: &ServeConfig) -> Result<Self, ServerError> {
        let roots = pem::load_roots(&cfg.pki.join(pki::CA_CERT))?;
        let chain = pem::load_certs(&cfg.pki.join(pki::SERVER_CERT))?;
        let key = pem::load_private_key(&cfg.pki.join(pki::SERVER_KEY))?;
        let crl_path = cfg.pki.join(pki::CRL);
        let crls = pem::load_crls(&crl_path)?;
        let revoked = revoked_serials(&crls);
        let tls = tls::ingest_server_config(roots.clone(), chain.clone(), key.clone_key(), crls)?;
        let store = Store::open(&cfg.storage)?;
        if !cfg.pki.join(audit::AUDIT_KEY).exists() {
            tracing::warn!(pki = %cfg.pki.display(), "no audit key in the PKI directory; creating one (instances that share a bucket must share it: copy audit.key to each)");
            audit::ensure_key(&cfg.pki)?;
        }
        let (audit_log, audit_task) = AuditLog::start(
            store.clone(),
            &cfg.pki,
            &cfg.audit_instance,
            cfg.audit_flush,
        )?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let listener = bind(cfg.listen).await?;
        let enroll = match cfg.enroll_listen {
            Some(addr) => {
                let config = tls::enrollment_server_config(chain.clone(), key.clone_key())?;
                Some((bind(addr).await?, TlsAcceptor::from(Arc::new(config))))
            }
            None => None,
        };
        let state_store = store.clone();
        let metrics = Arc::new(Metrics::new());
        let ops = match cfg.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let observers = Observers {
            audit: audit_log.clone(),
            metrics: metrics.clone(),
        };
        let state = AppState {
            metrics: metrics.clone(),
            limiter: Arc::new(Limiter::new(&cfg.limits)),
            max_fragment_bytes: cfg.limits.max_fragment_bytes,
            body_timeout: cfg.limits.body_timeout.0,
            store,
            arrivals: Arc::default(),
            pki: cfg.pki.clone(),
            device_cert_lifetime: cfg.device_cert_lifetime,
            ek_policy: Arc::new(cfg.ek_policy.clone()),
        };
        let app = Router::new()
            .route(
                "/v1/fragments/{device}/{stream}/{sequence}",
                put(put_fragment),
            )
            .route("/v1/renew", post(renew))
            .route("/v1/whoami", get(whoami))
            .route("/v1/streams", get(list_streams))
            .route(
                "/v1/streams/{device}/{stream}/fragments",
                get(list_fragments),
            )
            .route(
                "/v1/streams/{device}/{stream}/fragments/{sequence}",
                get(get_fragment),
            )
            .route("/v1/devices/{device}/certificate", get(get_device_cert))
            .layer(DefaultBodyLimit::max(cfg.limits.max_fragment_bytes))
            .layer(axum::middleware::from_fn_with_state(
                observers.clone(),
                audit_request,
            ))
            .with_state(state.clone());
        let enroll_app = Router::new()
            .route("/v1/enroll", post(enroll_device))
            .layer(DefaultBodyLimit::max(64 * 1024))
            .layer(axum::middleware::from_fn_with_state(
                observers,
                audit_request,
            ))
            .with_state(state);
        Ok(Self {
            listener,
            enroll,
            shared: Arc::new(Shared {
                acceptor: RwLock::new(TlsAcceptor::from(Arc::new(tls))),
                revoked: RwLock::new(revoked),
                connections: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                roots,
                chain,
                key,
                crl_path,
                audit: audit_log,
                header_timeout: cfg.limits.body_timeout.0,
                stopping: tokio::sync::watch::channel(false).0,
                metrics: metrics.clone(),
            }),
            app,
            enroll_app,
            crl_poll: cfg.crl_poll,
            audit_task,
            store: state_store,
            retention: cfg.retention.clone(),
            ops,
            metrics,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The operations listener (metrics, health), if configured.
    pub fn ops_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.ops.as_ref().map(TcpListener::local_addr)
    }

    pub fn enroll_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.enroll.as_ref().map(|(l, _)| l.local_addr())
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            enroll,
            shared,
            app,
            enroll_app,
            crl_poll,
            audit_task,
            store,
            retention,
            ops,
            metrics,
        } = self;
        let mut tasks = Vec::new();
        if let Some(ops) = ops {
            tasks.push(tokio::spawn(crate::metrics::serve_ops(
                ops,
                metrics,
                store.clone(),
            )));
        }
        let connections = tokio_util::task::TaskTracker::new();
        if let Some((enroll_listener, acceptor)) = enroll {
            tasks.push(tokio::spawn(serve_enrollment(
                enroll_listener,
                acceptor,
                enroll_app,
            )));
        }
        tasks.push(tokio::spawn(watch_crl(shared.clone(), crl_poll)));
        if !retention.is_empty() {
            tasks.push(tokio::spawn(crate::retention::run(
                store,
                shared.audit.clone(),
                retention,
            )));
        }
        tokio::pin!(shutdown);
        loop {
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
            let Some(acceptor) = shared.acceptor() else {
                break;
            };
            let (app, shared) = (app.clone(), shared.clone());
            connections
                .spawn(async move { handle_connection(acceptor, app, shared, tcp, addr).await });
        }
        // Stop taking requests; let those in progress (uploads above all)
        // finish and be answered.
        drop(listener);
        let _ = shared.stopping.send(true);
        connections.close();
        let open = connections.len();
        if open > 0 {
            tracing::info!(open, "stopping: waiting for requests in progress");
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = connections.len(),
                "stopping: connections still busy after {} s are cut",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        for t in tasks {
            t.abort();
        }
        if let Err(e) = shared.audit.flush().await {
            tracing::error!(error = %e, "the audit trail could not be flushed at shutdown");
        }
        drop(shared);
        audit_task.abort();
    }
}

/// Re-reads the CRL whenever the file changes.
async fn watch_crl(shared: Arc<Shared>, every: Duration) {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = stamp(&shared.crl_path);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&shared.crl_path);
        if now == last {
            continue;
        }
        last = now;
        match shared.reload_crl() {
            Ok(closed) => tracing::info!(closed, "revocation list reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the revocation list; keeping the previous one")
            }
        }
    }
}

async fn serve_enrollment(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "enrollment accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match handshake(&acceptor, tcp).await {
                Ok(tls) => tls,
                Err(reason) => {
                    tracing::warn!(%addr, %reason, "enrollment TLS handshake refused");
                    return;
                }
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(addr);
                    app.clone().oneshot(req)
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a refused client may go on sending before its connection is cut.
const LINGER: Duration = Duration::from_secs(2);

/// The TLS handshake of a new connection, within [`HANDSHAKE_TIMEOUT`]; on
/// refusal, the reason, after the connection is closed so that the client
/// reads the alert ([`linger_close`]).
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, String> {
    let accept = acceptor.accept(tcp).into_fallible();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err((e, tcp))) => {
            linger_close(tcp).await;
            Err(e.to_string())
        }
        Err(_) => Err("handshake timed out".into()),
    }
}

/// Closes a connection whose handshake was refused so that the client reads
/// the alert that says why. The alert is written; a client that sent on at
/// once (TLS 1.3 lets it send right after its Finished) has bytes the server
/// never read, and closing over unread bytes resets the connection, which
/// makes the client's kernel drop the alert unread: it sees "connection
/// reset" and cannot say it was revoked. So our side is shut (FIN after the
/// alert) and what still comes is read and discarded until the client closes
/// or [`LINGER`] passes, as nginx's `lingering_close` does.
async fn linger_close(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn handle_connection(
    acceptor: TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
) {
    let refused = |who: String, reason: String| {
        shared.audit.record(Event {
            actor: who,
            action: "connect".into(),
            addr: Some(addr.to_string()),
            result: "refused".into(),
            detail: Some(reason),
            ..Event::default()
        });
    };
    let tls = match handshake(&acceptor, tcp).await {
        Ok(tls) => tls,
        Err(reason) => {
            tracing::warn!(%addr, %reason, "TLS handshake refused");
            refused("anonymous".into(), reason);
            return;
        }
    };
    let cert_der = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(c) => c.as_ref().to_vec(),
        None => {
            tracing::warn!(%addr, reason = "no client certificate", "connection refused");
            refused("anonymous".into(), "no client certificate".into());
            return;
        }
    };
    let (identity, serial) = match identity::summarize(&cert_der).map(|s| (s.identity, s.serial)) {
        Ok((Some(i), serial)) => (i, serial),
        Ok((None, _)) => {
            tracing::warn!(%addr, reason = %TransportError::NoIdentity, "connection refused");
            refused("anonymous".into(), TransportError::NoIdentity.to_string());
            return;
        }
        Err(e) => {
            tracing::warn!(%addr, reason = %e, "connection refused");
            refused("anonymous".into(), e.to_string());
            return;
        }
    };
    if shared
        .revoked
        .read()
        .map(|r| r.contains(&serial))
        .unwrap_or(false)
    {
        tracing::warn!(%addr, peer = %identity, reason = "certificate revoked", "connection refused");
        refused(actor(&identity), "certificate revoked".into());
        return;
    }
    tracing::info!(%addr, peer = %identity, serial = %hex::encode(&serial), "connection authenticated");
    shared.audit.record(Event {
        actor: actor(&identity),
        action: "connect".into(),
        addr: Some(addr.to_string()),
        result: "ok".into(),
        detail: Some(format!("certificate serial {}", hex::encode(&serial))),
        ..Event::default()
    });
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let serial_for_peer = serial.clone();
    let close = Arc::new(Notify::new());
    if let Ok(mut conns) = shared.connections.lock() {
        conns.insert(
            id,
            OpenConnection {
                serial,
                identity: identity.clone(),
                close: close.clone(),
            },
        );
    }
    let peer_role = identity.role;
    let peer = Peer {
        identity,
        cert_der: Arc::new(cert_der),
        verifier: Arc::default(),
        last_body_len: Arc::default(),
        serial: hex::encode(&serial_for_peer).into(),
        addr,
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            app.clone().oneshot(req)
        });
    let role = match peer_role {
        Role::Device => "device",
        Role::Consumer => "consumer",
    };
    let gauge = shared.metrics.role_gauge(role);
    gauge.inc();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.header_timeout);
    // Cameras multiplex their live fragment and their backlog on one
    // HTTP/2 connection; the window follows the link's bandwidth-delay
    // product so that one upload can fill a long, fat link.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .adaptive_window(true)
        .max_concurrent_streams(64);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let mut stopping = shared.stopping.subscribe();
    if *stopping.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%addr, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = close.notified() => break,
            changed = stopping.changed(), if !*stopping.borrow() => {
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    gauge.dec();
    if let Ok(mut conns) = shared.connections.lock() {
        conns.remove(&id);
    }
}

/// Refuses a consumer that may not read `device`'s `stream`.
fn require_read(peer: &Peer, device: &Name, stream: Option<&Name>) -> Result<(), ApiError> {
    let ok = match stream {
        Some(s) => peer.identity.may_read(device, s),
        None => peer.identity.may_read_device(device),
    };
    if ok {
        return Ok(());
    }
    let what = match stream {
        Some(s) => format!("stream {device}/{s}"),
        None => format!("device {device}"),
    };
    let reason = format!("{} may not read {what}", peer.identity);
    tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "request refused");
    Err(ApiError::new(StatusCode::FORBIDDEN, reason))
}

fn require(peer: &Peer, role: Role, action: &str) -> Result<(), ApiError> {
    if peer.identity.role == role {
        return Ok(());
    }
    let reason = format!("{} may not {action}", peer.identity);
    tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "request refused");
    Err(ApiError::new(StatusCode::FORBIDDEN, reason))
}

fn is_streamed(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case(sealcam_format::fragment::STREAMED_MEDIA_TYPE)
        })
}

/// Reads an upload's body: at most the configured size, completely within
/// the body timeout (a sender that stalls is cut off). It is read into
/// memory aligned for direct I/O, so that the payload of a streamed upload
/// goes to disk from where it lies (`store::AlignedBody`).
async fn read_body(
    state: &AppState,
    peer: &Peer,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, (StatusCode, String)> {
    let limit = state.max_fragment_bytes;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the fragment is larger than this ingest's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let capacity = match declared {
        Some(n) if n > limit as u64 => return Err(too_large()),
        // At most the limit, so it fits.
        Some(n) => n as usize,
        // Room for one a quarter longer than the last.
        None => {
            let last = peer.last_body_len.load(Ordering::Relaxed);
            last.saturating_add(last / 4).min(limit)
        }
    };
    let receive = async {
        let mut received = store::AlignedBody::with_capacity(capacity);
        let mut body = body;
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body could not be read: {}",
                        sealcam_base::error_chain(&e)
                    ),
                )
            })?;
            if let Some(piece) = frame.data_ref() {
                if piece.len() > limit - received.len() {
                    return Err(too_large());
                }
                received.extend(piece);
            }
        }
        peer.last_body_len.store(received.len(), Ordering::Relaxed);
        Ok(received.into_bytes())
    };
    tokio::time::timeout(state.body_timeout, receive)
        .await
        .unwrap_or_else(|_| {
            Err((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    state.body_timeout.as_secs()
                ),
            ))
        })
}

/// The checks made before an upload's body is read: who may write the
/// stream, and whether the device is within its limits. The slot it returns
/// holds the device's place among its concurrent uploads.
fn admit_upload(
    state: &AppState,
    peer: &Peer,
    device: &str,
    stream: &str,
    sequence: u64,
) -> Result<(Name, Name, tokio::sync::OwnedSemaphorePermit), ApiError> {
    require(peer, Role::Device, "upload fragments")?;
    let device = name(device, "device")?;
    let stream = name(stream, "stream")?;
    if device != peer.identity.name {
        let reason = format!("{} may not write streams of device {device}", peer.identity);
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "upload refused");
        return Err(ApiError::new(StatusCode::FORBIDDEN, reason));
    }
    if !peer.identity.may_write(&stream) {
        let allowed: Vec<&str> = peer.identity.streams.iter().map(Name::as_str).collect();
        let reason = format!(
            "{} may not write stream {stream}; its certificate allows: {}",
            peer.identity,
            allowed.join(", ")
        );
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "upload refused");
        return Err(ApiError::new(StatusCode::FORBIDDEN, reason));
    }
    let refuse = |status: StatusCode, reason: String| {
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %stream, sequence, %reason, "fragment refused");
        ApiError::new(status, reason)
    };
    let slot = state.limiter.admit(&device).map_err(|r| match r {
        limits::Refusal::Busy { limit } => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{limit} uploads of this device are in progress already; wait for one to finish"
            ),
        )
        .with_code("too-many-uploads"),
        limits::Refusal::Rate { retry_after } => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "over this device's upload rate; retry after {} ms",
                retry_after.as_millis()
            ),
        )
        .with_code("rate-limited")
        .retry_after(retry_after),
    })?;
    Ok((device, stream, slot))
}

/// Reads and drops the body of an upload refused before it was read, so the
/// sender, still writing, gets to read the refusal (and its `Retry-After`)
/// instead of a reset connection. Bounded like any body: at most the size
/// limit, within the body timeout. A client that asked `Expect:
/// 100-continue` has not sent its body and is not asked for it.
async fn discard_body(state: &AppState, headers: &axum::http::HeaderMap, body: axum::body::Body) {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return;
    }
    let limit = state.max_fragment_bytes as u64;
    let drain = async move {
        let mut body = body;
        let mut seen = 0u64;
        while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(state.body_timeout, drain).await;
}

#[derive(Serialize)]
struct PutResponse {
    status: &'static str,
    sequence: u64,
    manifest: String,
}

async fn put_fragment(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((device, stream, sequence)): Path<(String, String, u64)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<PutResponse>), ApiError> {
    let (device, stream, _slot) = match admit_upload(&state, &peer, &device, &stream, sequence) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            discard_body(&state, &headers, body).await;
            return Err(refusal);
        }
    };
    let refuse = |status: StatusCode, reason: String| {
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %stream, sequence, %reason, "fragment refused");
        ApiError::new(status, reason)
    };
    let body = read_body(&state, &peer, &headers, body)
        .await
        .map_err(|(status, reason)| refuse(status, reason))?;
    // A fragment sent while it was recorded (payload first, manifest last)
    // is parsed where it lies, like a whole one: the payload is stored from
    // the body it arrived in, without a copy.
    let frag = if is_streamed(&headers) {
        SealedFragment::parse_streamed(&body)
    } else {
        SealedFragment::parse(&body)
    }
    .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let m = &frag.manifest;
    if m.device != device || m.stream != stream || m.sequence != sequence {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "manifest names {}/{}/{} but the upload is for {device}/{stream}/{sequence}",
                m.device, m.stream, m.sequence
            ),
        ));
    }
    let key = peer
        .verifier
        .get_or_init(|| {
            identity::device_key_from_cert_der(&peer.cert_der)
                .map_err(|e| e.to_string())
                .and_then(|k| k.verifier().map_err(|e| e.to_string()))
        })
        .as_ref()
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.clone()))?;
    frag.verify_with(key)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    frag.records()
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let hash = frag.manifest_hash();
    let frames = m.frame_count;
    state
        .store
        .put_device_cert(&device, &peer.serial, &peer.cert_der)
        .await?;
    let outcome = match state.store.put_fragment_in_chain(&frag, &body).await {
        Ok(o) => o,
        Err(StoreError::Conflict { .. }) => Err(format!(
            "sequence {sequence} is already stored with different content"
        )),
        Err(e) => return Err(e.into()),
    };
    match outcome {
        Ok(o) => {
            let (status, word) = match o {
                PutOutcome::Stored => {
                    state.arrived(&device, &stream);
                    // What is stored: the payload and the signed manifest.
                    let stored =
                        frag.payload.len() + frag.manifest_body.len() + frag.signature.len();
                    state.metrics.fragment_bytes.inc_by(stored as u64);
                    (StatusCode::CREATED, "stored")
                }
                PutOutcome::AlreadyStored => (StatusCode::OK, "already-stored"),
            };
            state
                .metrics
                .fragments
                .get_or_create(&crate::metrics::OutcomeLabels {
                    outcome: word.into(),
                })
                .inc();
            tracing::info!(peer = %peer.identity, %stream, sequence, frames, status = word, "fragment accepted");
            Ok((
                status,
                Json(PutResponse {
                    status: word,
                    sequence,
                    manifest: hash.to_string(),
                }),
            ))
        }
        Err(reason) => {
            tracing::error!(addr = %peer.addr, peer = %peer.identity, %stream, sequence, %reason, "SECURITY: conflicting fragment refused");
            Err(ApiError::new(StatusCode::CONFLICT, reason))
        }
    }
}

impl AppState {
    fn arrivals_of(&self, device: &Name, stream: &Name) -> Arc<Notify> {
        match self.arrivals.lock() {
            Ok(mut a) => a
                .entry((device.clone(), stream.clone()))
                .or_default()
                .clone(),
            Err(_) => Arc::new(Notify::new()),
        }
    }

    fn arrived(&self, device: &Name, stream: &Name) {
        if let Ok(a) = self.arrivals.lock() {
            if let Some(n) = a.get(&(device.clone(), stream.clone())) {
                n.notify_waiters();
            }
        }
    }
}

#[derive(Serialize)]
struct StreamEntry {
    device: String,
    stream: String,
}

#[derive(Serialize)]
struct WhoAmI {
    role: &'static str,
    name: String,
    /// Devices: the streams the certificate allows (empty: any of its own).
    streams: Vec<String>,
    /// Consumers: the `device/stream` pairs the certificate may read (empty: all).
    reads: Vec<String>,
    serial: String,
}

/// Who the ingest takes the caller for: a device or a consumer checks its
/// certificate is accepted, and what it grants, without side effects.
async fn whoami(Extension(peer): Extension<Peer>) -> Json<WhoAmI> {
    let id = &peer.identity;
    Json(WhoAmI {
        role: match id.role {
            Role::Device => "device",
            Role::Consumer => "consumer",
        },
        name: id.name.to_string(),
        streams: id.streams.iter().map(ToString::to_string).collect(),
        reads: id.reads.iter().map(|(d, s)| format!("{d}/{s}")).collect(),
        serial: peer.serial.to_string(),
    })
}

async fn list_streams(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
) -> Result<Json<Vec<StreamEntry>>, ApiError> {
    require(&peer, Role::Consumer, "read streams")?;
    let who = peer.identity.clone();
    let streams = state.store.streams().await?;
    Ok(Json(
        streams
            .into_iter()
            .filter(|(d, s)| who.may_read(d, s))
            .map(|(d, s)| StreamEntry {
                device: d.to_string(),
                stream: s.to_string(),
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct FragmentQuery {
    /// Only fragments that end after this time (Unix ns).
    from_ns: Option<u64>,
    /// Only fragments that start before this time (Unix ns).
    to_ns: Option<u64>,
    /// Only fragments with a sequence number above this one.
    after: Option<u64>,
    /// Only fragments with a sequence number at least this.
    from_seq: Option<u64>,
    /// Only fragments with a sequence number at most this.
    to_seq: Option<u64>,
    /// Long poll: if nothing matches, wait up to this many seconds (at most
    /// [`MAX_WAIT_S`]) for a fragment that does.
    wait_s: Option<u64>,
}

/// Longest long poll of the fragment list.
pub const MAX_WAIT_S: u64 = 60;

/// How often a long poll looks at the storage for fragments stored by
/// other instances.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

#[derive(Serialize)]
struct FragmentEntry {
    sequence: u64,
    start_unix_ns: u64,
    end_unix_ns: u64,
    frame_count: u32,
    bytes: u64,
}

async fn matching_fragments(
    store: &Store,
    device: &Name,
    stream: &Name,
    q: &FragmentQuery,
) -> Result<Vec<FragmentEntry>, StoreError> {
    let sequences: Vec<u64> = store
        .sequences(device, stream)
        .await?
        .into_iter()
        .filter(|&seq| {
            q.after.is_none_or(|a| seq > a)
                && q.from_seq.is_none_or(|f| seq >= f)
                && q.to_seq.is_none_or(|t| seq <= t)
        })
        .collect();
    let manifests: Vec<(u64, Option<bytes::Bytes>)> = futures_util::stream::iter(sequences)
        .map(|seq| async move {
            Ok::<_, StoreError>((seq, store.signed_manifest(device, stream, seq).await?))
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for (seq, bytes) in manifests {
        // Deleted since the listing.
        let Some(bytes) = bytes else { continue };
        let m = store::parse_signed_manifest(device, stream, seq, &bytes)?.manifest;
        if q.from_ns.is_some_and(|from| m.end_unix_ns < from)
            || q.to_ns.is_some_and(|to| m.start_unix_ns > to)
        {
            continue;
        }
        out.push(FragmentEntry {
            sequence: seq,
            start_unix_ns: m.start_unix_ns,
            end_unix_ns: m.end_unix_ns,
            frame_count: m.frame_count,
            bytes: m.payload_len,
        });
    }
    Ok(out)
}

async fn list_fragments(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((device, stream)): Path<(String, String)>,
    Query(q): Query<FragmentQuery>,
) -> Result<Json<Vec<FragmentEntry>>, ApiError> {
    require(&peer, Role::Consumer, "read streams")?;
    let device = name(&device, "device")?;
    let stream = name(&stream, "stream")?;
    require_read(&peer, &device, Some(&stream))?;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.wait_s.unwrap_or(0).min(MAX_WAIT_S));
    let arrivals = state.arrivals_of(&device, &stream);
    loop {
        // Armed before looking, so an arrival between the look and the
        // wait is not missed.
        let arrived = arrivals.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let entries = matching_fragments(&state.store, &device, &stream, &q).await?;
        if !entries.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(entries));
        }
        tokio::select! {
            _ = arrived => {}
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn get_fragment(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((device, stream, sequence)): Path<(String, String, u64)>,
) -> Result<Response, ApiError> {
    require(&peer, Role::Consumer, "read streams")?;
    let device = name(&device, "device")?;
    let stream = name(&stream, "stream")?;
    require_read(&peer, &device, Some(&stream))?;
    state.metrics.reads.inc();
    let bytes = state
        .store
        .fragment(&device, &stream, sequence)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no fragment {sequence}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.sealcam.fragment")],
        bytes,
    )
        .into_response())
}

async fn get_device_cert(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path(device): Path<String>,
) -> Result<Response, ApiError> {
    require(&peer, Role::Consumer, "read device certificates")?;
    let device = name(&device, "device")?;
    require_read(&peer, &device, None)?;
    let pem = state.store.device_cert(&device).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no certificate stored for that device",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

#[derive(Deserialize)]
struct EnrollRequest {
    /// One-time token; without one the request waits for an operator.
    #[serde(default)]
    token: Option<String>,
    csr: String,
    /// The TPM's endorsement-key certificate, base64 DER, when it has one.
    #[serde(default)]
    ek_certificate: Option<String>,
}

#[derive(Serialize)]
struct CertificateResponse {
    certificate: String,
}

/// `POST /v1/enroll` on the enrollment port: a CSR with a one-time token
/// (answered with the certificate), or without one (filed for an operator's
/// approval: `202` until approved, then the certificate).
async fn enroll_device(
    State(state): State<AppState>,
    Extension(addr): Extension<SocketAddr>,
    Json(req): Json<EnrollRequest>,
) -> Result<Response, ApiError> {
    let (pki_dir, lifetime, policy) = (
        state.pki.clone(),
        state.device_cert_lifetime,
        state.ek_policy.clone(),
    );
    let ek = match req
        .ek_certificate
        .as_deref()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
    {
        Some(Ok(der)) => Some(der),
        Some(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ek_certificate is not base64",
            ));
        }
        None => None,
    };
    let result = tokio::task::spawn_blocking(move || {
        let ek = (policy.as_ref(), ek.as_deref());
        match req.token {
            Some(token) => pki::enroll(&pki_dir, &req.csr, token.trim(), ek, lifetime).map(
                |(device, certificate)| pki::Approval::Issued {
                    device,
                    certificate,
                },
            ),
            None => pki::request_approval(&pki_dir, &req.csr, ek),
        }
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "task failed"))?;
    match result {
        Ok(pki::Approval::Issued {
            device,
            certificate,
        }) => {
            tracing::info!(%addr, %device, "device enrolled");
            let mut r = Json(CertificateResponse { certificate }).into_response();
            r.extensions_mut().insert(Reason {
                code: "ok",
                text: format!("certificate issued for device {device}"),
            });
            Ok(r)
        }
        Ok(pki::Approval::Pending { fingerprint }) => {
            tracing::info!(%addr, %fingerprint, "enrollment request waits for approval (`sealcam-ingest device pending`)");
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "status": "pending", "fingerprint": fingerprint })),
            )
                .into_response())
        }
        Err(e) => {
            tracing::warn!(%addr, reason = %e, "enrollment refused");
            let status = match e {
                EnrollError::UnknownToken | EnrollError::Expired => StatusCode::UNAUTHORIZED,
                EnrollError::Revoked(_) | EnrollError::Ek(_) => StatusCode::FORBIDDEN,
                EnrollError::BadCsr(_) => StatusCode::BAD_REQUEST,
                EnrollError::Pki(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct RenewRequest {
    csr: String,
}

/// `POST /v1/renew`: a device with a valid certificate gets a fresh one for
/// the same key and identity.
async fn renew(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<RenewRequest>,
) -> Result<Json<CertificateResponse>, ApiError> {
    require(&peer, Role::Device, "renew certificates")?;
    let refuse = |status: StatusCode, reason: String| {
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "renewal refused");
        ApiError::new(status, reason)
    };
    let csr = pki::check_csr(&req.csr)
        .map_err(|r| refuse(StatusCode::BAD_REQUEST, format!("certificate request: {r}")))?;
    if csr.device != peer.identity.name {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not renew the certificate of device {}",
                peer.identity, csr.device
            ),
        ));
    }
    let current = identity::device_key_from_cert_der(&peer.cert_der)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let requested = sealcam_format::DeviceVerifyingKey::from_spki_der(&csr.spki_der)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    if current != requested {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the request's key does not match the key of the current certificate (the device key lives in the TPM and does not change)".into(),
        ));
    }
    let (pki_dir, lifetime) = (state.pki.clone(), state.device_cert_lifetime);
    let device = csr.device.clone();
    // The renewed certificate grants exactly what the current one does.
    let streams = peer.identity.streams.clone();
    if pki::is_revoked(&pki_dir, &device) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("device {device} is revoked"),
        ));
    }
    let certificate =
        tokio::task::spawn_blocking(move || pki::issue_for_csr(&pki_dir, csr, &streams, lifetime))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "task failed"))?
            .map_err(|e| {
                tracing::error!(error = %e, "issuing a renewed certificate failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not issue the certificate; try again",
                )
            })?;
    tracing::info!(peer = %peer.identity, "device certificate renewed");
    Ok(Json(CertificateResponse { certificate }))
}
