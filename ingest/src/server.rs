//! The ingest's mutual-TLS HTTP service.
//!
//! Every connection must present a certificate chained to the fleet CA
//! (checked by rustls during the handshake); the certificate's SAN URI names
//! the peer as a device or a consumer. Devices may only `PUT` fragments of
//! their own streams; consumers may only read. See `docs/protocol.md`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sealcam_format::{Name, SealedFragment};
use sealcam_transport::{identity, pem, tls, Identity, Role, TransportError};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::store::{PutOutcome, Store, StoreError};

/// Largest fragment accepted in one upload.
pub const MAX_FRAGMENT_BYTES: usize = 64 * 1024 * 1024;

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
}

/// Where the ingest listens and what it uses.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub fleet_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub data: PathBuf,
}

/// The authenticated peer of a connection.
#[derive(Clone, Debug)]
struct Peer {
    identity: Identity,
    cert_der: Arc<Vec<u8>>,
    addr: SocketAddr,
}

#[derive(Clone)]
struct AppState {
    store: Store,
}

/// A refusal: status plus one clear reason, sent as `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage error; try again".into(),
        )
    }
}

fn name(s: &str, what: &str) -> Result<Name, ApiError> {
    Name::new(s).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
}

impl Server {
    pub async fn bind(cfg: &ServeConfig) -> Result<Self, ServerError> {
        let roots = pem::load_roots(&cfg.fleet_ca)?;
        let chain = pem::load_certs(&cfg.cert)?;
        let key = pem::load_private_key(&cfg.key)?;
        let tls = tls::ingest_server_config(roots, chain, key)?;
        let store = Store::open(&cfg.data)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let app = Router::new()
            .route(
                "/v1/fragments/{device}/{stream}/{sequence}",
                put(put_fragment),
            )
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
            .layer(DefaultBodyLimit::max(MAX_FRAGMENT_BYTES))
            .with_state(AppState { store });
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            app,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, addr) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = self.acceptor.clone();
            let app = self.app.clone();
            tokio::spawn(async move { handle_connection(acceptor, app, tcp, addr).await });
        }
    }
}

async fn handle_connection(
    acceptor: TlsAcceptor,
    app: Router,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%addr, reason = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, reason = "handshake timed out", "TLS handshake refused");
            return;
        }
    };
    let cert_der = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(c) => c.as_ref().to_vec(),
        None => {
            tracing::warn!(%addr, reason = "no client certificate", "connection refused");
            return;
        }
    };
    let identity = match Identity::from_cert_der(&cert_der) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(%addr, reason = %e, "connection refused");
            return;
        }
    };
    tracing::debug!(%addr, peer = %identity, "connection authenticated");
    let peer = Peer {
        identity,
        cert_der: Arc::new(cert_der),
        addr,
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            app.clone().oneshot(req)
        });
    if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%addr, error = %e, "connection ended with an error");
    }
}

fn require(peer: &Peer, role: Role, action: &str) -> Result<(), ApiError> {
    if peer.identity.role == role {
        return Ok(());
    }
    let reason = format!("{} may not {action}", peer.identity);
    tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "request refused");
    Err(ApiError(StatusCode::FORBIDDEN, reason))
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
    body: Bytes,
) -> Result<(StatusCode, Json<PutResponse>), ApiError> {
    require(&peer, Role::Device, "upload fragments")?;
    let device = name(&device, "device")?;
    let stream = name(&stream, "stream")?;
    if device != peer.identity.name {
        let reason = format!("{} may not write streams of device {device}", peer.identity);
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %reason, "upload refused");
        return Err(ApiError(StatusCode::FORBIDDEN, reason));
    }
    let refuse = |status: StatusCode, reason: String| {
        tracing::warn!(addr = %peer.addr, peer = %peer.identity, %stream, sequence, %reason, "fragment refused");
        ApiError(status, reason)
    };
    let frag =
        SealedFragment::parse(&body).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
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
    let key = identity::device_key_from_cert_der(&peer.cert_der)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    frag.verify(&key)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    frag.records()
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let hash = frag.manifest_hash();
    let prev = m.prev;
    let frames = m.frame_count;
    let body_for_store = body.clone();

    let store = state.store.clone();
    let cert_pem = pem::cert_to_pem(&peer.cert_der);
    let (d, s) = (device.clone(), stream.clone());
    let outcome = tokio::task::spawn_blocking(move || -> Result<Result<PutOutcome, String>, StoreError> {
        // Chain continuity with the neighbours already stored.
        if let Some(before) = sequence.checked_sub(1) {
            if let Some(bytes) = store.get(&d, &s, before)? {
                if let Ok(b) = SealedFragment::parse(&bytes) {
                    if b.manifest_hash() != prev {
                        return Ok(Err(format!(
                            "chain broken: fragment {sequence} names previous manifest {prev} but stored fragment {before} has {}",
                            b.manifest_hash()
                        )));
                    }
                }
            }
        }
        if let Some(bytes) = store.get(&d, &s, sequence + 1)? {
            if let Ok(a) = SealedFragment::parse(&bytes) {
                if a.manifest.prev != hash {
                    return Ok(Err(format!(
                        "chain broken: stored fragment {} does not follow this fragment {sequence}",
                        sequence + 1
                    )));
                }
            }
        }
        store.put_device_cert(&d, &cert_pem)?;
        match store.put(&d, &s, sequence, &body_for_store) {
            Ok(o) => Ok(Ok(o)),
            Err(StoreError::Conflict { .. }) => Ok(Err(format!(
                "sequence {sequence} is already stored with different content"
            ))),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "storage task failed".into()))??;
    match outcome {
        Ok(o) => {
            let (status, word) = match o {
                PutOutcome::Stored => (StatusCode::CREATED, "stored"),
                PutOutcome::AlreadyStored => (StatusCode::OK, "already-stored"),
            };
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
            Err(ApiError(StatusCode::CONFLICT, reason))
        }
    }
}

#[derive(Serialize)]
struct StreamEntry {
    device: String,
    stream: String,
}

async fn list_streams(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
) -> Result<Json<Vec<StreamEntry>>, ApiError> {
    require(&peer, Role::Consumer, "read streams")?;
    let streams = tokio::task::spawn_blocking(move || state.store.streams())
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "task failed".into()))??;
    Ok(Json(
        streams
            .into_iter()
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
}

#[derive(Serialize)]
struct FragmentEntry {
    sequence: u64,
    start_unix_ns: u64,
    end_unix_ns: u64,
    frame_count: u32,
    bytes: usize,
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
    let entries = tokio::task::spawn_blocking(move || -> Result<Vec<FragmentEntry>, StoreError> {
        let mut out = Vec::new();
        for seq in state.store.sequences(&device, &stream)? {
            let Some(bytes) = state.store.get(&device, &stream, seq)? else {
                continue;
            };
            let Ok(f) = SealedFragment::parse(&bytes) else {
                continue;
            };
            let m = &f.manifest;
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
                bytes: bytes.len(),
            });
        }
        Ok(out)
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "task failed".into()))??;
    Ok(Json(entries))
}

async fn get_fragment(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((device, stream, sequence)): Path<(String, String, u64)>,
) -> Result<Response, ApiError> {
    require(&peer, Role::Consumer, "read streams")?;
    let device = name(&device, "device")?;
    let stream = name(&stream, "stream")?;
    let bytes = tokio::task::spawn_blocking(move || state.store.get(&device, &stream, sequence))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "task failed".into()))??
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no fragment {sequence}")))?;
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
    let pem = tokio::task::spawn_blocking(move || state.store.device_cert(&device))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "task failed".into()))??
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "no certificate stored for that device".into(),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}
