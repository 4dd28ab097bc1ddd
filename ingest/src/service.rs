//! The ingest as a service: its configuration resolved, its listeners bound
//! (API, enrollment, operations) and its background tasks (CRL watch,
//! retention, audit flush) supervised until it stops. The HTTP API itself
//! is [`crate::http`].
//!
//! Every connection must present a certificate chained to the fleet CA
//! (checked by rustls during the handshake); the certificate's SAN URI names
//! the peer as a device or a consumer. Devices may only `PUT` fragments of
//! their own streams; consumers may only read. See `docs/ref/protocol.md`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sealcam_transport::{pem, tls, TransportError};
use tokio::net::TcpListener;

use crate::audit::{self, AuditError, AuditLog};
use crate::ca_client::{CaClient, CaClientError, CaUrl};
use crate::config::{IngestConfig, LimitsConfig, RetentionConfig};
use crate::crl_sync::{CrlSync, CrlSyncError, Fetched, CRL_CACHE};
use crate::http::admission::Admission;
use crate::http::connection::{self, Shared, Timeouts, TlsAcceptor, TlsMaterial};
use crate::http::enroll_port::{self, EnrollPort};
use crate::http::{self, AppState};
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::store::{StorageConfig, Store, StoreError};

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
    #[error(transparent)]
    Ca(#[from] CaClientError),
    #[error(transparent)]
    Crl(#[from] CrlSyncError),
}

/// The ingest's own directory: the fleet CA's certificate, its server
/// certificate and key, its audit key, the cached revocation list.
const CA_CERT: &str = "ca.crt";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

/// Where the ingest listens and what it uses.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The enrollment endpoint (server-authenticated TLS, token in the body).
    pub enroll_listen: Option<SocketAddr>,
    /// The instance's own directory: the fleet CA's certificate, its server
    /// certificate and key, its audit key and the cached CRL. No CA key.
    pub pki: PathBuf,
    /// Where the CA service is (`[ca] url`).
    pub ca_url: CaUrl,
    pub storage: StorageConfig,
    /// How often the CRL is fetched from the CA service.
    pub crl_poll: Duration,
    /// This instance's name in the audit trail.
    pub audit_instance: String,
    pub audit_flush: Duration,
    pub retention: RetentionConfig,
    pub limits: LimitsConfig,
    /// Prometheus metrics, `/healthz` and `/readyz`, plain HTTP.
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    /// Resolves a configuration file's contents.
    pub fn from_config(c: IngestConfig) -> Result<Self, ServerError> {
        Ok(Self {
            listen: c.listen,
            enroll_listen: c.enroll_listen,
            pki: c.pki,
            ca_url: c.ca.url,
            storage: c.storage,
            crl_poll: c.devices.crl_poll.0,
            audit_instance: c.audit.instance.unwrap_or_else(audit::host_name),
            audit_flush: c.audit.flush_interval.map_or(Duration::from_secs(1), |s| {
                s.0.max(Duration::from_millis(10))
            }),
            retention: c.retention,
            limits: c.limits,
            metrics_listen: c.metrics_listen,
        })
    }

    /// The server's certificate chain and key, the fleet CA and the CRL's
    /// path, from the PKI directory.
    fn tls_material(&self) -> Result<TlsMaterial, TransportError> {
        Ok(TlsMaterial {
            roots: pem::load_roots(&self.pki.join(CA_CERT))?,
            chain: pem::load_certs(&self.pki.join(SERVER_CERT))?,
            key: pem::load_private_key(&self.pki.join(SERVER_KEY))?,
            crl_path: self.pki.join(CRL_CACHE),
        })
    }
}

/// Checks that the PKI files load, a revocation list is there or can be
/// had from the CA service, and the storage answers: what `serve` needs
/// before it can accept a connection.
pub async fn check(cfg: &ServeConfig) -> Result<(), ServerError> {
    let client = CaClient::new(cfg.ca_url.clone(), &cfg.pki)?;
    CrlSync::new(client, &cfg.pki)?.initial().await?;
    cfg.tls_material()?.acceptor()?;
    Store::open(&cfg.storage)?.probe().await?;
    Ok(())
}

pub struct Server {
    listener: TcpListener,
    enroll: Option<(TcpListener, TlsAcceptor)>,
    shared: Arc<Shared>,
    app: Router,
    enroll_app: Router,
    crl_poll: Duration,
    crl: CrlSync,
    audit_task: tokio::task::JoinHandle<()>,
    store: Store,
    retention: RetentionConfig,
    ops: Option<TcpListener>,
    metrics: Arc<Metrics>,
    /// The connections each port holds (`[limits]`).
    admission: Arc<Admission>,
    enroll_admission: Arc<Admission>,
}

/// How long a stopping ingest waits for requests in progress to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

impl Server {
    pub async fn bind(cfg: &ServeConfig) -> Result<Self, ServerError> {
        // The revocation list first: with none at all, nothing starts.
        let ca = CaClient::new(cfg.ca_url.clone(), &cfg.pki)?;
        let mut crl = CrlSync::new(ca.clone(), &cfg.pki)?;
        crl.initial().await?;
        tracing::info!(number = crl.held(), ca = %cfg.ca_url, "revocation list in force");
        let material = cfg.tls_material()?;
        let (chain, key) = (material.chain.clone(), material.key.clone_key());
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
        let mut metrics = Metrics::new();
        let (depth, dropped) = audit_log.queue_metrics();
        metrics.register_audit(depth, dropped);
        let metrics = Arc::new(metrics);
        let shared = Shared::new(
            material,
            audit_log.clone(),
            Timeouts::of(&cfg.limits),
            metrics.clone(),
        )?;
        let admission = Admission::new(
            cfg.limits.max_connections,
            cfg.limits.connections_per_address,
            metrics.held_gauge("api"),
        );
        let enroll_admission = Admission::new(
            cfg.limits.max_enroll_connections,
            cfg.limits.connections_per_address,
            metrics.held_gauge("enroll"),
        );
        let listener = bind(cfg.listen).await?;
        let enroll = match cfg.enroll_listen {
            Some(addr) => {
                let configs = tls::enrollment_server_configs(chain, key)?;
                Some((bind(addr).await?, TlsAcceptor::new(configs)))
            }
            None => None,
        };
        let ops = match cfg.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let state = AppState::new(
            metrics.clone(),
            audit_log,
            Limiter::new(&cfg.limits),
            cfg.limits.max_fragment_bytes,
            cfg.limits.body_timeout.0,
            store.clone(),
            ca,
        )
        .with_buffered_bytes(cfg.limits.buffered_bytes);
        Ok(Self {
            listener,
            enroll,
            shared: Arc::new(shared),
            app: http::api_router(state.clone()),
            enroll_app: http::enroll_router(state),
            crl_poll: cfg.crl_poll,
            crl,
            audit_task,
            store,
            retention: cfg.retention.clone(),
            ops,
            metrics,
            admission,
            enroll_admission,
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
            crl,
            audit_task,
            store,
            retention,
            ops,
            metrics,
            admission,
            enroll_admission,
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
        if let Some((listener, acceptor)) = enroll {
            let port = EnrollPort {
                listener,
                acceptor,
                app: enroll_app,
                admission: enroll_admission,
            };
            tasks.push(tokio::spawn(enroll_port::serve_enrollment(
                port,
                shared.clone(),
            )));
        }
        tasks.push(tokio::spawn(
            shared.refusals.clone().run(shared.audit.clone()),
        ));
        tasks.push(tokio::spawn(watch_crl(shared.clone(), crl, crl_poll)));
        if !retention.is_empty() {
            tasks.push(tokio::spawn(crate::retention::run(
                store,
                shared.audit.clone(),
                retention,
            )));
        }
        tokio::pin!(shutdown);
        loop {
            let (tcp, addr, ticket) = tokio::select! {
                _ = &mut shutdown => break,
                admitted = connection::accept_admitted(&listener, &admission, &shared.refusals, "api") => admitted,
            };
            let Some(acceptor) = shared.acceptor() else {
                break;
            };
            let (app, shared) = (app.clone(), shared.clone());
            connections.spawn(async move {
                let _ticket = ticket;
                connection::handle_connection(acceptor, app, shared, tcp, addr).await
            });
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
        shared.refusals.flush(&shared.audit);
        if let Err(e) = shared.audit.flush().await {
            tracing::error!(error = %e, "the audit trail could not be flushed at shutdown");
        }
        drop(shared);
        audit_task.abort();
    }
}

/// Logs, once per change, that the list in force has passed its
/// `nextUpdate` (the TLS layer refuses every client from then on) or that
/// a current one is in force again.
fn report_expiry(crl: &CrlSync, expired: &mut bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match crl.expired_since(now) {
        Some(at) if !*expired => {
            tracing::error!(
                next_update_unix = at,
                number = crl.held(),
                "SECURITY: the revocation list has expired and the CA service has not issued a newer one; every device and consumer is refused until it does (start sealcam-ca serve, check [ca] url)"
            );
            *expired = true;
        }
        None if *expired => {
            tracing::info!(
                number = crl.held(),
                "a current revocation list is in force again"
            );
            *expired = false;
        }
        _ => {}
    }
}

/// Fetches the CRL from the CA service on every poll, and loads it when it
/// is newer. Each change of state (unreachable, reachable again, an older
/// list offered) is logged once, not at every poll.
async fn watch_crl(shared: Arc<Shared>, mut crl: CrlSync, every: Duration) {
    let mut failing: Option<String> = None;
    let mut refused_older = None;
    let mut expired = false;
    loop {
        report_expiry(&crl, &mut expired);
        tokio::time::sleep(every).await;
        match crl.fetch().await {
            Ok(fetched) => {
                if failing.take().is_some() {
                    tracing::info!(number = crl.held(), "the CA service answers again");
                }
                match fetched {
                    Fetched::Same => {}
                    Fetched::Newer { number } => match shared.reload_crl() {
                        Ok(closed) => {
                            tracing::info!(number, closed, "revocation list reloaded")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot load the revocation list; keeping the previous one")
                        }
                    },
                    Fetched::Older { offered, held } => {
                        if refused_older != Some(offered) {
                            tracing::error!(
                                offered,
                                held,
                                "SECURITY: the CA service offered an older revocation list than the one in force; not taken"
                            );
                            refused_older = Some(offered);
                        }
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                if failing.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        error = %reason,
                        number = crl.held(),
                        cache = %crl.cache().display(),
                        "cannot get the revocation list from the CA service; keeping the last good one"
                    );
                    failing = Some(reason);
                }
            }
        }
    }
}
