//! Connections: the API port's accept loop (each connection admitted at
//! accept, [`super::admission`]; the enrollment port's is
//! [`super::enroll_port`]), the handshake
//! (within a timeout, closed so that a refused client reads the alert), the
//! check of the peer's certificate, the HTTP timeouts (headers, bodies,
//! idle), and revocation: the CRL reloaded and the connections of revoked
//! certificates closed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::RootCertStore;
use sealcam_transport::{identity, pem, tls, Identity, Role, TransportError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use super::admission::{Admission, Ticket};
use super::idle::{self, Activity};
use super::refusals::Refusals;
use super::{actor, deadline, Peer};
use crate::audit::{AuditLog, Event};
use crate::config::LimitsConfig;
use crate::metrics::Metrics;

/// How long each step of a connection may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The TLS handshake.
    pub handshake: Duration,
    /// A request's headers (HTTP/1.1), and then its body.
    pub body: Duration,
    /// No request in progress.
    pub idle: Duration,
    /// How much of a body dropped unread is read and dropped, so that its
    /// sender reads the answer (the fragment limit).
    pub drain_bytes: u64,
}

impl Timeouts {
    pub fn of(limits: &LimitsConfig) -> Self {
        Self {
            handshake: limits.handshake_timeout.0,
            body: limits.body_timeout.0,
            idle: limits.idle_timeout.0,
            drain_bytes: limits.max_fragment_bytes as u64,
        }
    }
}

/// How long a connection asked to close (idle, stopping) may take to do
/// so before it is cut.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The next connection `admission` takes on `listener`. One over a cap is
/// closed at once: no TLS work, nothing read or written, a reset rather
/// than a TIME_WAIT held here; it is counted and sampled ([`Refusals`]).
pub async fn accept_admitted(
    listener: &TcpListener,
    admission: &Arc<Admission>,
    refusals: &Refusals,
    port: &'static str,
) -> (TcpStream, SocketAddr, Ticket) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match admission.admit(addr.ip()) {
            Ok(ticket) => return (tcp, addr, ticket),
            Err(refusal) => {
                let _ = tcp.set_zero_linger();
                drop(tcp);
                refusals.refused(port, refusal.as_str(), addr, None);
            }
        }
    }
}

/// The HTTP/1.1 and HTTP/2 server of a connection, with its timeouts: the
/// headers within the body timeout (HTTP/1.1), keep-alive pings that close
/// a dead HTTP/2 peer.
pub(super) fn http_builder(
    timeouts: Timeouts,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper ignores the header timeout without a timer.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.body);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(timeouts.idle.min(Duration::from_secs(30))))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// The TLS acceptor of a port: reads the ClientHello, then takes the
/// config [`tls::PreferHybrid`] chooses for it, so that every client that
/// supports X25519MLKEM768 gets it, whatever its order.
#[derive(Clone)]
pub struct TlsAcceptor(Arc<tls::PreferHybrid>);

impl TlsAcceptor {
    pub fn new(configs: tls::PreferHybrid) -> Self {
        Self(Arc::new(configs))
    }

    /// The handshake; on failure, the error and the connection when it is
    /// still there (to close it so that the client reads the alert).
    async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, (std::io::Error, Option<TcpStream>)> {
        let mut lazy =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = match (&mut lazy).await {
            Ok(start) => start,
            Err(e) => return Err((e, lazy.take_io())),
        };
        let config = self.0.config_for(&start.client_hello());
        start
            .into_stream(config)
            .into_fallible()
            .await
            .map_err(|(e, tcp)| (e, Some(tcp)))
    }
}

/// An authenticated connection, so that revocation can close it.
struct OpenConnection {
    serial: Vec<u8>,
    identity: Identity,
    close: Arc<Notify>,
}

/// Serial numbers listed in the CRLs.
pub fn revoked_serials(crls: &[CertificateRevocationListDer<'_>]) -> HashSet<Vec<u8>> {
    crls.iter()
        .filter_map(|der| x509_parser::parse_x509_crl(der.as_ref()).ok())
        .flat_map(|(_, crl)| {
            crl.iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the accept loop and its connections share.
pub struct Shared {
    acceptor: RwLock<TlsAcceptor>,
    /// Serials the CRL lists: checked again after the handshake, so that a
    /// resumed TLS session cannot outlive a revocation.
    revoked: RwLock<HashSet<Vec<u8>>>,
    connections: Mutex<HashMap<u64, OpenConnection>>,
    next_id: AtomicU64,
    material: TlsMaterial,
    pub audit: AuditLog,
    pub timeouts: Timeouts,
    /// Anonymous refusals, counted and sampled into the audit trail.
    pub refusals: Arc<Refusals>,
    /// Set when the ingest stops: connections finish what they do and close.
    pub stopping: tokio::sync::watch::Sender<bool>,
    pub metrics: Arc<Metrics>,
}

/// The server's TLS material and the CRL it was built with.
pub struct TlsMaterial {
    pub roots: RootCertStore,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub crl_path: PathBuf,
}

impl TlsMaterial {
    /// The API port's TLS acceptor with the CRL as it is now on disk, and the
    /// serial numbers the CRL lists.
    pub fn acceptor(&self) -> Result<(TlsAcceptor, HashSet<Vec<u8>>), TransportError> {
        let crls = pem::load_crls(&self.crl_path)?;
        let revoked = revoked_serials(&crls);
        let configs = tls::ingest_server_configs(
            self.roots.clone(),
            self.chain.clone(),
            self.key.clone_key(),
            crls,
            tls::CrlExpiry::Enforce,
        )?;
        Ok((TlsAcceptor::new(configs), revoked))
    }
}

impl Shared {
    /// Builds the API port's TLS config from `material` and the CRL on disk.
    pub fn new(
        material: TlsMaterial,
        audit: AuditLog,
        timeouts: Timeouts,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TransportError> {
        let (acceptor, revoked) = material.acceptor()?;
        Ok(Self {
            acceptor: RwLock::new(acceptor),
            revoked: RwLock::new(revoked),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            material,
            audit,
            timeouts,
            refusals: Refusals::new(metrics.clone()),
            stopping: tokio::sync::watch::channel(false).0,
            metrics,
        })
    }

    /// The CRL file, watched for changes.
    pub fn crl_path(&self) -> &std::path::Path {
        &self.material.crl_path
    }

    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor.read().ok().map(|a| a.clone())
    }

    /// Rebuilds the TLS config with the CRL as it is now on disk, then closes
    /// every open connection whose certificate it revokes. A CRL that is
    /// missing or does not parse is an error, and the previous one stays.
    pub fn reload_crl(&self) -> Result<usize, TransportError> {
        // A list that was there and is gone is not "nothing revoked": the
        // one loaded before stays (a deleted file must not lift revocations).
        if !self.material.crl_path.exists() {
            return Err(TransportError::Read {
                path: self.material.crl_path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the revocation list disappeared; restore it, or revoke again to rewrite it",
                ),
            });
        }
        // A new config also starts a new session cache: no session resumed
        // from before the change skips the revocation check.
        let (acceptor, revoked) = self.material.acceptor()?;
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
            *a = acceptor;
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

    fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revoked
            .read()
            .map(|r| r.contains(serial))
            .unwrap_or(false)
    }
}

/// How long a refused client may go on sending before its connection is cut.
const LINGER: Duration = Duration::from_secs(2);

/// A handshake that did not complete: why, for metrics, and what the TLS
/// layer said.
pub(super) struct HandshakeRefused {
    pub reason: &'static str,
    pub detail: String,
}

/// The TLS handshake of a new connection, within `timeout`; on refusal,
/// why, after the connection is closed so that the client reads the alert
/// ([`linger_close`]).
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeRefused> {
    let accept = acceptor.accept(tcp);
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err((e, tcp))) => {
            if let Some(tcp) = tcp {
                linger_close(tcp).await;
            }
            Err(HandshakeRefused {
                reason: "handshake",
                detail: e.to_string(),
            })
        }
        Err(_) => Err(HandshakeRefused {
            reason: "handshake-timeout",
            detail: format!("no handshake within {} s", timeout.as_secs()),
        }),
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
async fn linger_close(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A connection refused before its first request.
struct Refused {
    /// Who it claimed to be, when its certificate said.
    who: String,
    reason: String,
    /// Refused anonymously (the handshake, or a certificate that names no
    /// one): the category it is counted and sampled under.
    anonymous: Option<&'static str>,
}

impl Refused {
    fn anonymous(reason: String) -> Self {
        Self {
            who: "anonymous".into(),
            reason,
            anonymous: Some("no-identity"),
        }
    }
}

/// An authenticated connection: its TLS stream, who it is and the serial
/// number of its certificate.
struct Authenticated {
    tls: TlsStream<TcpStream>,
    identity: Identity,
    serial: Vec<u8>,
    cert_der: Vec<u8>,
    /// Until the certificate expires: the connection is closed then.
    expires_in: Duration,
}

/// Seconds since the Unix epoch, as certificates state validity.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The handshake and the checks of the peer's certificate.
async fn authenticate(
    acceptor: &TlsAcceptor,
    shared: &Shared,
    tcp: TcpStream,
) -> Result<Authenticated, Refused> {
    let tls = handshake(acceptor, tcp, shared.timeouts.handshake)
        .await
        .map_err(|r| Refused {
            anonymous: Some(r.reason),
            ..Refused::anonymous(r.detail)
        })?;
    let cert_der = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(c) => c.as_ref().to_vec(),
        None => return Err(Refused::anonymous("no client certificate".into())),
    };
    let summary = identity::summarize(&cert_der).map_err(|e| Refused::anonymous(e.to_string()))?;
    let Some(identity) = summary.identity else {
        return Err(Refused::anonymous(TransportError::NoIdentity.to_string()));
    };
    if shared.is_revoked(&summary.serial) {
        return Err(Refused {
            who: actor(&identity),
            reason: "certificate revoked".into(),
            anonymous: None,
        });
    }
    // rustls checks validity in a full handshake, but a resumed session
    // brings the certificate it was made with: checked here for both.
    let now = unix_now();
    if now < summary.not_before || now >= summary.not_after {
        return Err(Refused {
            who: actor(&identity),
            reason: format!(
                "certificate outside its validity ({} .. {} Unix s; now {now})",
                summary.not_before, summary.not_after
            ),
            anonymous: None,
        });
    }
    Ok(Authenticated {
        tls,
        identity,
        serial: summary.serial,
        cert_der,
        expires_in: Duration::from_secs(summary.not_after.saturating_sub(now).unsigned_abs()),
    })
}

/// Serves one connection of the API port: authenticated, registered for
/// revocation, served over HTTP/1.1 or HTTP/2 until it ends, is revoked or
/// the ingest stops.
pub async fn handle_connection(
    acceptor: TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
) {
    let record = |who: String, result: &str, detail: String| {
        shared.audit.record(Event {
            actor: who,
            action: "connect".into(),
            addr: Some(addr.to_string()),
            result: result.into(),
            detail: Some(detail),
            ..Event::default()
        });
    };
    let Authenticated {
        tls,
        identity,
        serial,
        cert_der,
        expires_in,
    } = match authenticate(&acceptor, &shared, tcp).await {
        Ok(a) => a,
        Err(r) => {
            match r.anonymous {
                // Counted, and sampled into the audit trail: never one
                // write (or one log line) each.
                Some(category) => {
                    tracing::debug!(%addr, reason = %r.reason, "connection refused");
                    shared
                        .refusals
                        .refused("api", category, addr, Some(r.reason));
                }
                None => {
                    tracing::warn!(%addr, peer = %r.who, reason = %r.reason, "connection refused");
                    record(r.who, "refused", r.reason);
                }
            }
            return;
        }
    };
    let serial_hex = hex::encode(&serial);
    tracing::info!(%addr, peer = %identity, serial = %serial_hex, "connection authenticated");
    record(
        actor(&identity),
        "ok",
        format!("certificate serial {serial_hex}"),
    );
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
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
    let role = match identity.role {
        Role::Device => "device",
        Role::Consumer => "consumer",
    };
    let peer_name = identity.to_string();
    let peer = Peer {
        identity,
        cert_der: Arc::new(cert_der),
        verifier: Arc::default(),
        last_body_len: Arc::default(),
        serial: serial_hex.into(),
        addr,
    };
    let activity = Activity::new();
    let timeouts = shared.timeouts;
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let busy = activity.begin();
            // A client that waits for `100 Continue` has sent no body to drain.
            let expects_continue = req
                .headers()
                .get(axum::http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let drain = if expects_continue {
                0
            } else {
                timeouts.drain_bytes
            };
            let mut req = req.map(|b| deadline::within(b, timeouts.body, drain));
            req.extensions_mut().insert(peer.clone());
            let answer = app.clone().oneshot(req);
            async move {
                let response = match answer.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, std::convert::Infallible>(Activity::until_sent(response, busy))
            }
        })
    };
    let gauge = shared.metrics.role_gauge(role);
    gauge.inc();
    let mut builder = http_builder(shared.timeouts);
    // Cameras multiplex their live fragment and their backlog on one
    // HTTP/2 connection; the window follows the link's bandwidth-delay
    // product so that one upload can fill a long, fat link.
    builder
        .http2()
        .adaptive_window(true)
        .max_concurrent_streams(64);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let expiry = tokio::time::sleep(expires_in);
    tokio::pin!(expiry);
    let mut stopping = shared.stopping.subscribe();
    if *stopping.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    // Asked to close when idle; cut if it has not after the grace.
    let mut closing: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%addr, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = close.notified() => break,
            _ = &mut expiry => {
                tracing::warn!(%addr, peer = %peer_name, "closing connection: its certificate expired");
                break;
            }
            changed = stopping.changed(), if !*stopping.borrow() => {
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = idle::idle_past(&activity, shared.timeouts.idle), if closing.is_none() => {
                tracing::debug!(%addr, peer = %peer_name, "closing connection: idle");
                conn.as_mut().graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
            }
            () = async { if let Some(c) = closing.as_mut() { c.await } }, if closing.is_some() => break,
        }
    }
    gauge.dec();
    if let Ok(mut conns) = shared.connections.lock() {
        conns.remove(&id);
    }
}
