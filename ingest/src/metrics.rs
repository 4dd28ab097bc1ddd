//! Prometheus metrics, and the operations listener that serves them with
//! `/healthz` and `/readyz` (plain HTTP, meant for a private interface).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `stored` or `already-stored`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The audited action: `upload`, `read`, `connect`, ...
    pub action: String,
    /// The documented error code (`docs/ref/protocol.md`).
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// `device` or `consumer`.
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortReasonLabels {
    /// `api` or `enroll`.
    pub port: String,
    /// Why: `connection-cap`, `address-cap`, `handshake`, ...
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    /// `api` or `enroll`.
    pub port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpdateReportLabels {
    pub device: String,
    /// The release version the camera runs.
    pub version: String,
    /// Its last update's outcome, as it reported it (`none` before any).
    pub outcome: String,
}

/// Every metric the ingest exports.
pub struct Metrics {
    registry: Registry,
    pub fragments: Family<OutcomeLabels, Counter>,
    pub fragment_bytes: Counter,
    pub refusals: Family<RefusalLabels, Counter>,
    pub ack_seconds: Histogram,
    pub storage_errors: Counter,
    pub connections: Family<RoleLabels, Gauge>,
    pub reads: Counter,
    /// Storage requests (listing pages and object reads) per listing of
    /// fragments, each check of a long poll counted as one listing.
    pub listing_reads: Histogram,
    /// Connections closed before a request: over a cap, or their handshake failed.
    pub connections_refused: Family<PortReasonLabels, Counter>,
    /// Connections each port holds now, authenticated or not.
    pub connections_held: Family<PortLabels, Gauge>,
    /// Bytes of upload bodies held in memory now.
    pub buffered_bytes: Gauge,
    /// Each device's last update report: when (Unix seconds), labelled by
    /// what it said; one series per device.
    pub device_updates: Family<UpdateReportLabels, Gauge>,
    device_update_labels: Mutex<HashMap<String, UpdateReportLabels>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sealcam_ingest");
        let fragments = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "fragments",
            "Fragment uploads accepted, by outcome",
            fragments.clone(),
        );
        let fragment_bytes = Counter::default();
        registry.register(
            "fragment_bytes",
            "Bytes of fragments newly stored",
            fragment_bytes.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests and connections refused, by action and error code",
            refusals.clone(),
        );
        let ack_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "upload_ack_seconds",
            "Time from an upload's request to its answer (stored durably or refused)",
            ack_seconds.clone(),
        );
        let storage_errors = Counter::default();
        registry.register(
            "storage_errors",
            "Requests that failed on a storage error",
            storage_errors.clone(),
        );
        let connections = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "connections",
            "Authenticated connections open now, by role",
            connections.clone(),
        );
        let reads = Counter::default();
        registry.register(
            "fragment_reads",
            "Fragments served to consumers",
            reads.clone(),
        );
        let listing_reads = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "listing_storage_reads",
            "Storage requests (listing pages and object reads) per listing of a stream's fragments",
            listing_reads.clone(),
        );
        let connections_refused = Family::<PortReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed before any request, by port and reason",
            connections_refused.clone(),
        );
        let connections_held = Family::<PortLabels, Gauge>::default();
        registry.register(
            "connections_held",
            "Connections each port holds now, from accept on",
            connections_held.clone(),
        );
        let buffered_bytes = Gauge::default();
        registry.register(
            "buffered_bytes",
            "Bytes of upload bodies held in memory now",
            buffered_bytes.clone(),
        );
        let device_updates = Family::<UpdateReportLabels, Gauge>::default();
        registry.register(
            "device_update_report_seconds",
            "When each device last checked for updates (Unix seconds), labelled by its installed version and last update outcome",
            device_updates.clone(),
        );
        Self {
            registry,
            device_updates,
            device_update_labels: Mutex::default(),
            connections_refused,
            connections_held,
            buffered_bytes,
            fragments,
            fragment_bytes,
            refusals,
            ack_seconds,
            storage_errors,
            connections,
            reads,
            listing_reads,
        }
    }

    /// Records a device's update report: its one series now carries
    /// these labels and the time.
    pub fn device_update_report(&self, device: &str, version: &str, outcome: &str) {
        let labels = UpdateReportLabels {
            device: device.to_owned(),
            version: version.to_owned(),
            outcome: outcome.to_owned(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut known = self
            .device_update_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = known.insert(device.to_owned(), labels.clone()) {
            if old != labels {
                self.device_updates.remove(&old);
            }
        }
        self.device_updates.get_or_create(&labels).set(now);
    }

    /// The audit queue's depth and its dropped records (`audit/writer.rs`).
    pub fn register_audit(&mut self, depth: Gauge, dropped: Counter) {
        self.registry.register(
            "audit_queue_depth",
            "Audit records waiting for the audit writer",
            depth,
        );
        self.registry.register(
            "audit_dropped",
            "Audit records dropped (queue full or storage unwritable); each batch is also sealed into the trail",
            dropped,
        );
    }

    pub fn refused(&self, action: &str, code: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                action: action.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    pub fn connection_refused(&self, port: &str, reason: &str) {
        self.connections_refused
            .get_or_create(&PortReasonLabels {
                port: port.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn held_gauge(&self, port: &str) -> Gauge {
        self.connections_held
            .get_or_create(&PortLabels {
                port: port.to_owned(),
            })
            .clone()
    }

    pub fn role_gauge(&self, role: &str) -> Gauge {
        self.connections
            .get_or_create(&RoleLabels {
                role: role.to_owned(),
            })
            .clone()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
struct Ops {
    metrics: Arc<Metrics>,
    store: Store,
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
}

/// Ready when the storage answers a write, a read and a delete in time.
async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(5), ops.store.probe()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage: no answer within 5 s\n".to_owned(),
        ),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until dropped.
pub async fn serve_ops(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, store: Store) {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Ops { metrics, store });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the operations listener stopped");
    }
}

/// The address the operations listener is bound to, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}
