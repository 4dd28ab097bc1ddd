//! The ingest's HTTP API, one file per concern (`docs/ref/protocol.md`, whose
//! routes, bodies and codes are the types of `sealcam-api`).
//!
//! A request's method and path are decoded once, into a
//! [`sealcam_api::Route`] that dispatch and the audit record both use.
//!
//! * [`route`]: what the ingest adds to a route: the role it asks of the
//!   peer, and how a request for no valid route is audited.
//! * [`error`]: the error model, an [`sealcam_api::ErrorBody`] with a
//!   stable code.
//! * [`audit`]: every call recorded, counted, and a refusal logged.
//! * [`connection`]: the TLS accept loops, the handshake, revocation.
//! * [`upload`]: devices' fragment uploads, checked before they are stored.
//! * [`read`]: consumers' listings, fragment reads and long polls.
//! * [`arrivals`]: the wake-ups of long polls, one per stream waited on.
//! * [`consumer_limit`]: consumers' request rate and concurrency limits.
//! * [`roster`]: owner-signed device rosters, published and read.
//! * [`heads`]: cameras' signed heads, uploaded and read.
//! * [`enroll`]: enrollment, renewal and `whoami`.
//! * [`enroll_port`]: the enrollment port's accept loop and connections.
//! * [`body`]: the buffer an upload's body is received into, aligned for
//!   direct I/O.
//! * [`admission`]: the caps on connections, checked at accept.
//! * [`refusals`]: anonymous refusals counted and sampled into the audit trail.
//! * [`idle`]: whether a connection has a request in progress, and since when not.
//! * [`deadline`]: a request body that must arrive within the body timeout.
//! * [`budget`]: the bytes of upload bodies held in memory, across all uploads.
//! * [`updates`]: update offers and bundles for devices, with their reports.
//!
//! This file holds what the handlers share and the two dispatchers: the
//! API port (mutual TLS) and the enrollment port (server TLS, anonymous).

pub mod admission;
pub mod arrivals;
pub mod audit;
pub mod body;
pub mod budget;
pub mod connection;
pub mod consumer_limit;
pub mod deadline;
pub mod enroll;
pub mod enroll_port;
pub mod error;
pub mod heads;
pub mod idle;
pub mod read;
pub mod refusals;
pub mod restarts;
pub mod roster;
pub mod route;
pub mod updates;
pub mod upload;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sealcam_api::{Route, RouteError};
use sealcam_format::{DeviceVerifier, Name};
use sealcam_transport::{Identity, Role};
use tokio::sync::Notify;

use self::audit::{observe, Call};
use self::error::ApiError;
use crate::audit::AuditLog;
use crate::ca_client::CaClient;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::store::Store;

/// The authenticated peer of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub identity: Identity,
    pub cert_der: Arc<Vec<u8>>,
    /// The certificate's key, ready to verify manifests: made at the
    /// connection's first upload and kept for the others.
    pub verifier: Arc<OnceLock<Result<DeviceVerifier, String>>>,
    /// The length of the connection's last upload: the room its next body
    /// of unknown length is given, so that a camera's chunked uploads, of
    /// much the same length each, are received without moving.
    pub last_body_len: Arc<AtomicUsize>,
    /// The certificate's serial number, hex.
    pub serial: Arc<str>,
    pub addr: SocketAddr,
}

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
    pub limiter: Arc<Limiter>,
    pub max_fragment_bytes: usize,
    pub body_timeout: Duration,
    pub store: Store,
    /// Woken when a fragment of the stream is stored here, for followers.
    arrivals: Arc<arrivals::Arrivals>,
    /// The CA service, which enrolls and renews: the ingest holds no CA key.
    pub ca: CaClient,
    /// Bytes of upload bodies held in memory, across all uploads.
    pub budget: Arc<budget::BufferBudget>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        audit: AuditLog,
        limiter: Limiter,
        max_fragment_bytes: usize,
        body_timeout: Duration,
        store: Store,
        ca: CaClient,
    ) -> Self {
        Self {
            audit,
            limiter: Arc::new(limiter),
            max_fragment_bytes,
            body_timeout,
            store,
            budget: budget::BufferBudget::new(usize::MAX, metrics.buffered_bytes.clone()),
            metrics,
            arrivals: Arc::default(),
            ca,
        }
    }

    /// At most `limit` bytes of upload bodies in memory at once.
    pub fn with_buffered_bytes(mut self, limit: usize) -> Self {
        self.budget = budget::BufferBudget::new(limit, self.metrics.buffered_bytes.clone());
        self
    }

    fn arrivals_of(&self, device: &Name, stream: &Name) -> Arc<Notify> {
        self.arrivals.of(device, stream)
    }

    fn arrived(&self, device: &Name, stream: &Name) {
        self.arrivals.arrived(device, stream)
    }
}

/// The audit trail's name for a peer.
pub fn actor(identity: &Identity) -> String {
    match identity.role {
        Role::Device => format!("device:{}", identity.name),
        Role::Consumer => format!("consumer:{}", identity.name),
    }
}

/// The API port's service: every route but enrollment, for authenticated
/// peers; bodies up to the fragment size limit.
pub fn api_router(state: AppState) -> Router {
    let limit = state.max_fragment_bytes;
    Router::new()
        .fallback(api)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The enrollment port's service: `POST /v1/enroll` and its sub-steps
/// (`/v1/enroll/<step>`), anonymous, passed on to the CA service.
pub fn enroll_router(state: AppState) -> Router {
    Router::new()
        .fallback(enrollment)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Refuses a peer without the role a route needs.
fn require(peer: &Peer, route: &Route) -> Result<(), ApiError> {
    match route::required_role(route) {
        Some((role, what)) if peer.identity.role != role => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not {what}", peer.identity),
        )),
        _ => Ok(()),
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
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{} may not read {what}", peer.identity),
    ))
}

async fn api(State(state): State<AppState>, req: Request) -> Response {
    let Some(peer) = req.extensions().get::<Peer>().cloned() else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no peer").into_response();
    };
    let decoded = match Route::decode(req.method(), req.uri().path()) {
        // Enrollment has its own port: here its path is no route at all.
        Err(RouteError::MethodNotAllowed { .. }) if req.uri().path() == Route::Enroll.path() => {
            Err(RouteError::NotFound)
        }
        decoded => decoded,
    };
    let audited = route::audited(req.method(), req.uri().path(), &decoded);
    let call = Call {
        who: actor(&peer.identity),
        addr: Some(peer.addr.to_string()),
        action: audited.action,
        target: audited.target,
    };
    let handled = dispatch(&state, &peer, decoded, audited.shape, req);
    observe(&state.audit, &state.metrics, call, handled).await
}

/// Checks the peer's role for the route (or for the route whose shape a
/// malformed request has), then runs its handler.
async fn dispatch(
    state: &AppState,
    peer: &Peer,
    decoded: Result<Route, RouteError>,
    shape: Option<Route>,
    req: Request,
) -> Result<Response, ApiError> {
    let asked = decoded.as_ref().ok().or(shape.as_ref());
    let checked = match asked {
        Some(route) => require(peer, route),
        None => Ok(()),
    };
    let route = match checked.and_then(|()| decoded.map_err(ApiError::from)) {
        Ok(route) => route,
        // Whatever the route, a body sent with it is read and dropped
        // (bounded) as the request is dropped, while the refusal is
        // answered (`deadline`).
        Err(refusal) => return Err(refusal),
    };
    let _consumer_slot = consumer_limit::admit(state, peer)?;
    match route {
        Route::Upload {
            device,
            stream,
            sequence,
        } => upload::put_fragment(state, peer, device, stream, sequence, req).await,
        Route::UploadRestart {
            device,
            stream,
            first_sequence,
        } => restarts::put_restart(state, peer, device, stream, first_sequence, req).await,
        Route::ListRestarts { device, stream } => {
            restarts::list_restarts(state, peer, device, stream).await
        }
        Route::ListStreams => read::list_streams(state, peer).await,
        Route::ListFragments { device, stream } => {
            read::list_fragments(state, peer, device, stream, req).await
        }
        Route::ReadFragment {
            device,
            stream,
            sequence,
        } => read::get_fragment(state, peer, device, stream, sequence).await,
        Route::DeviceCertificate { device } => read::get_device_cert(state, peer, device).await,
        Route::DeviceCertificates { device } => {
            read::get_device_cert_history(state, peer, device).await
        }
        Route::UploadHead { device, stream } => heads::put(state, peer, device, stream, req).await,
        Route::ReadHead { device, stream } => heads::read(state, peer, device, stream).await,
        Route::PublishRoster => roster::publish(state, peer, req).await,
        Route::ReadRoster { owner } => roster::read(state, owner).await,
        Route::Renew => enroll::renew(state, peer, req).await,
        Route::WhoAmI => Ok(enroll::whoami(peer)),
        Route::UpdateOffer { compatible } => updates::offer(state, peer, compatible, req).await,
        Route::ReadBundle { sha256 } => updates::bundle(state, peer, sha256, req).await,
        // Served on the enrollment port only.
        Route::Enroll | Route::EnrollChallenge => Err(RouteError::NotFound.into()),
    }
}

async fn enrollment(State(state): State<AppState>, req: Request) -> Response {
    let addr = req.extensions().get::<SocketAddr>().copied();
    let decoded = Route::decode(req.method(), req.uri().path());
    let audited = route::audited(req.method(), req.uri().path(), &decoded);
    let call = Call {
        who: "anonymous".into(),
        addr: addr.map(|a| a.to_string()),
        action: audited.action,
        target: audited.target,
    };
    let is_enroll = sealcam_api::ca::is_enroll_path(req.uri().path());
    let handled = async {
        match decoded {
            // Enrollment and any of its sub-steps go to the CA service as
            // they came: a new step needs no change here.
            _ if is_enroll && req.method() == axum::http::Method::POST => {
                enroll::pass_to_ca(&state, addr, req).await
            }
            Err(e @ RouteError::MethodNotAllowed { .. }) if is_enroll => Err(e.into()),
            // The API port's routes, even malformed, are no route here.
            _ => Err(RouteError::NotFound.into()),
        }
    };
    observe(&state.audit, &state.metrics, call, handled).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::Method;
    use sealcam_api::{ErrorBody, ErrorCode, RoleName};
    use tower::ServiceExt;

    use super::*;
    use crate::config::LimitsConfig;
    use crate::store::StorageConfig;

    struct Api {
        _dir: tempfile::TempDir,
        state: AppState,
    }

    async fn api_state() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        crate::audit::ensure_key(&pki).unwrap();
        let store = Store::open(&StorageConfig::local(dir.path().join("store"))).unwrap();
        let (audit, _task) =
            AuditLog::start(store.clone(), &pki, "t", Duration::from_secs(3600)).unwrap();
        let limits = LimitsConfig::default();
        let state = AppState::new(
            Arc::new(Metrics::new()),
            audit,
            Limiter::new(&limits),
            limits.max_fragment_bytes,
            limits.body_timeout.0,
            store,
            CaClient::new(
                crate::ca_client::CaUrl::Unix(dir.path().join("no-ca.sock")),
                &pki,
            )
            .unwrap(),
        );
        Api { _dir: dir, state }
    }

    fn peer(identity: Identity) -> Peer {
        Peer {
            identity,
            cert_der: Arc::default(),
            verifier: Arc::default(),
            last_body_len: Arc::default(),
            serial: "01".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    fn device() -> Peer {
        peer(Identity::device(Name::new("cam1").unwrap()))
    }

    fn consumer() -> Peer {
        peer(Identity::consumer(Name::new("alice").unwrap()))
    }

    /// Sends a request with an empty body to the API port as `who`.
    async fn send(api: &Api, who: Peer, method: Method, path: &str) -> (StatusCode, Vec<u8>) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .extension(who)
            .body(Body::empty())
            .unwrap();
        let r = api_router(api.state.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body.to_vec())
    }

    async fn refusal(api: &Api, who: Peer, method: Method, path: &str) -> (u16, ErrorCode) {
        let (status, body) = send(api, who, method, path).await;
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        (status.as_u16(), body.code)
    }

    #[tokio::test]
    async fn the_role_is_checked_before_the_names() {
        let api = api_state().await;
        let bad = "/v1/fragments/cam1/a%20b/0";
        assert_eq!(
            refusal(&api, consumer(), Method::PUT, bad).await,
            (403, ErrorCode::Forbidden)
        );
        assert_eq!(
            refusal(&api, device(), Method::PUT, bad).await,
            (400, ErrorCode::Malformed)
        );
        assert_eq!(
            refusal(&api, device(), Method::GET, "/v1/streams").await,
            (403, ErrorCode::Forbidden)
        );
        let metrics = api.state.metrics.encode();
        assert!(
            metrics.contains(r#"action="upload",code="malformed"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"action="upload",code="forbidden"} 1"#),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_are_json_refusals() {
        let api = api_state().await;
        assert_eq!(
            refusal(&api, device(), Method::GET, "/v1/nothing").await,
            (404, ErrorCode::NotFound)
        );
        assert_eq!(
            refusal(&api, consumer(), Method::POST, "/v1/streams").await,
            (405, ErrorCode::MethodNotAllowed)
        );
        // Enrollment is served on its own port only.
        for method in [Method::POST, Method::GET] {
            assert_eq!(
                refusal(&api, device(), method, "/v1/enroll").await,
                (404, ErrorCode::NotFound)
            );
        }
    }

    #[tokio::test]
    async fn whoami_says_who_the_peer_is() {
        let api = api_state().await;
        let (status, body) = send(&api, device(), Method::GET, "/v1/whoami").await;
        assert_eq!(status, StatusCode::OK);
        let who: sealcam_api::WhoAmI = serde_json::from_slice(&body).unwrap();
        assert_eq!((who.role, who.name.as_str()), (RoleName::Device, "cam1"));
    }

    #[tokio::test]
    async fn a_consumer_reads_only_what_it_may() {
        let api = api_state().await;
        let mut bob = consumer();
        bob.identity.reads = vec![(Name::new("cam2").unwrap(), Name::new("front").unwrap())];
        assert_eq!(
            refusal(
                &api,
                bob.clone(),
                Method::GET,
                "/v1/streams/cam1/front/fragments/0"
            )
            .await,
            (403, ErrorCode::Forbidden)
        );
        assert_eq!(
            refusal(&api, bob, Method::GET, "/v1/streams/cam2/front/fragments/0").await,
            (404, ErrorCode::NotFound)
        );
    }

    /// Sends `body` to the API port as `who`.
    async fn send_body(
        api: &Api,
        who: Peer,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .extension(who)
            .body(Body::from(body))
            .unwrap();
        let r = api_router(api.state.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, body.to_vec())
    }

    /// A roster of `version` signed by `owner`, as `PUT /v1/rosters` sends it.
    fn roster_upload(owner: &p256::ecdsa::SigningKey, version: u64) -> Vec<u8> {
        use base64::Engine as _;
        use p256::pkcs8::EncodePublicKey;
        let roster = sealcam_format::roster::DeviceRoster {
            version,
            issued_unix: 0,
            keys: Vec::new(),
        };
        let file = roster.sign(owner).unwrap();
        let pem = owner
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        serde_json::to_vec(&sealcam_api::RosterUpload {
            owner_key: pem,
            roster: base64::engine::general_purpose::STANDARD.encode(file),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn rosters_are_kept_only_signed_and_never_rolled_back() {
        let api = api_state().await;
        let owner = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let fp = sealcam_format::DeviceVerifyingKey(*owner.verifying_key()).fingerprint();
        let put = |who: Peer, body: Vec<u8>| send_body(&api, who, Method::PUT, "/v1/rosters", body);
        // A device may not publish; a consumer may.
        let (status, _) = put(device(), roster_upload(&owner, 2)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = put(consumer(), roster_upload(&owner, 2)).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let receipt: sealcam_api::RosterReceipt = serde_json::from_slice(&body).unwrap();
        assert_eq!((receipt.owner.as_str(), receipt.version), (fp.as_str(), 2));
        let (status, _) = put(consumer(), roster_upload(&owner, 2)).await;
        assert_eq!(status, StatusCode::OK);
        // A lower version: refused.
        let (status, _) = put(consumer(), roster_upload(&owner, 1)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        // Signed by another key than the one sent with it: refused.
        let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let mut forged: serde_json::Value =
            serde_json::from_slice(&roster_upload(&other, 5)).unwrap();
        let genuine: serde_json::Value = serde_json::from_slice(&roster_upload(&owner, 5)).unwrap();
        forged["owner_key"] = genuine["owner_key"].clone();
        let (status, body) = put(consumer(), serde_json::to_vec(&forged).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("not signed by the owner key"));
        let (status, _) = put(consumer(), b"not json".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The newest is served, to any consumer.
        let (status, body) =
            send(&api, consumer(), Method::GET, &format!("/v1/rosters/{fp}")).await;
        assert_eq!(status, StatusCode::OK);
        let served = sealcam_format::roster::SignedDeviceRoster::parse(&body).unwrap();
        assert_eq!(served.roster.version, 2);
        assert_eq!(
            refusal(
                &api,
                consumer(),
                Method::GET,
                &format!("/v1/rosters/{}", "0".repeat(64))
            )
            .await,
            (404, ErrorCode::NotFound)
        );
    }

    #[tokio::test]
    async fn the_certificate_history_is_read_like_the_device() {
        let api = api_state().await;
        let cam1 = Name::new("cam1").unwrap();
        for (serial, der) in [("0a", b"one".as_slice()), ("0b", b"two".as_slice())] {
            api.state
                .store
                .put_device_cert(&cam1, serial, der)
                .await
                .unwrap();
        }
        let (status, body) = send(
            &api,
            consumer(),
            Method::GET,
            "/v1/devices/cam1/certificates",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let certs: Vec<sealcam_api::CertificateEntry> = serde_json::from_slice(&body).unwrap();
        let serials: Vec<&str> = certs.iter().map(|c| c.serial.as_str()).collect();
        assert_eq!(serials, ["0a", "0b"]);
        assert!(certs[0].certificate.contains("BEGIN CERTIFICATE"));
        let mut bob = consumer();
        bob.identity.reads = vec![(Name::new("cam2").unwrap(), Name::new("front").unwrap())];
        assert_eq!(
            refusal(&api, bob, Method::GET, "/v1/devices/cam1/certificates").await,
            (403, ErrorCode::Forbidden)
        );
        assert_eq!(
            refusal(&api, device(), Method::GET, "/v1/devices/cam1/certificates").await,
            (403, ErrorCode::Forbidden)
        );
    }
}
