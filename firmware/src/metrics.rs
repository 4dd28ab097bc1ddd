//! The daemon's Prometheus metrics, and the loopback endpoint that serves
//! them (`[metrics] listen`, off by default).
//!
//! Counters are shared with the parts that move them (capture loop,
//! recorder, uplink); what the spool holds and how often the device key
//! signed are read when the endpoint is scraped.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sealcam_transport::signer::CountingSigner;
use tokio::net::TcpListener;

use crate::pipeline::spool::Spool;

/// Every metric sealcamd exports, prefixed `sealcamd_`.
pub struct DeviceMetrics {
    registry: Registry,
    pub frames_captured: Counter,
    pub frames_dropped: Counter,
    pub fragments_sealed: Counter,
    pub fragments_dropped: Counter,
    pub fragments_uploaded: Counter,
    pub fragments_rejected: Counter,
    pub upload_failures: Counter,
    pub upload_seconds: Histogram,
    pub pipeline_restarts: Counter,
    key_signatures: Counter,
    spool_bytes: Gauge,
    spool_fragments: Gauge,
    /// Read at scrape time: the spool, and the signer with the count
    /// already exported.
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    /// The spool, and how many of its evictions are already exported.
    spool: Option<(Arc<Spool>, u64)>,
    signer: Option<(Arc<CountingSigner>, u64)>,
}

impl DeviceMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("sealcamd");
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let frames_captured = counter(&mut r, "frames_captured", "Encoded frames from the camera");
        let frames_dropped = counter(
            &mut r,
            "frames_dropped",
            "Frames not kept: before the first key frame, or in a fragment a full spool refused",
        );
        let fragments_sealed = counter(
            &mut r,
            "fragments_sealed",
            "Fragments sealed, signed and written durably to the spool",
        );
        let fragments_dropped = counter(
            &mut r,
            "fragments_dropped",
            "Fragments lost to a full spool (evicted or refused), each declared as a gap",
        );
        let fragments_uploaded = counter(
            &mut r,
            "fragments_uploaded",
            "Fragments the ingest confirmed stored",
        );
        let fragments_rejected = counter(
            &mut r,
            "fragments_rejected",
            "Fragments the ingest kept refusing, held in the spool's held/ folder for an operator (`sealcamd spool`)",
        );
        let upload_failures = counter(
            &mut r,
            "upload_failures",
            "Uploads that failed and will be retried (network, ingest busy or down): each is a reconnect",
        );
        let upload_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        r.register(
            "upload_seconds",
            "Time from sending a fragment to the ingest's confirmation",
            upload_seconds.clone(),
        );
        let pipeline_restarts = counter(
            &mut r,
            "pipeline_restarts",
            "Capture graphs rebuilt after the camera stalled or failed",
        );
        let key_signatures = counter(
            &mut r,
            "key_signatures",
            "Signatures by the device key (TPM operations): one per fragment plus one per full TLS handshake",
        );
        let spool_bytes = gauge(
            &mut r,
            "spool_bytes",
            "Bytes of sealed fragments waiting in the spool",
        );
        let spool_fragments = gauge(
            &mut r,
            "spool_fragments",
            "Sealed fragments waiting in the spool",
        );
        Self {
            registry: r,
            frames_captured,
            frames_dropped,
            fragments_sealed,
            fragments_dropped,
            fragments_uploaded,
            fragments_rejected,
            upload_failures,
            upload_seconds,
            pipeline_restarts,
            key_signatures,
            spool_bytes,
            spool_fragments,
            sources: Mutex::default(),
        }
    }

    /// The spool whose size is reported, and the signer whose signatures
    /// are counted.
    pub fn observe(&self, spool: Arc<Spool>, signer: Arc<CountingSigner>) {
        let mut s = match self.sources.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let already = signer.count();
        self.key_signatures.inc_by(already);
        s.spool = Some((spool, 0));
        s.signer = Some((signer, already));
    }

    /// The metrics in Prometheus' text format, as of now.
    pub fn render(&self) -> String {
        {
            let mut s = match self.sources.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((signer, exported)) = s.signer.as_mut() {
                let now = signer.count();
                self.key_signatures.inc_by(now.saturating_sub(*exported));
                *exported = now;
            }
            if let Some((spool, exported)) = s.spool.as_mut() {
                let evicted = spool.evicted();
                self.fragments_dropped
                    .inc_by(evicted.saturating_sub(*exported));
                *exported = evicted;
                if let Ok(pending) = spool.pending() {
                    let bytes: u64 = pending
                        .iter()
                        .filter_map(|p| std::fs::metadata(&p.path).ok())
                        .map(|m| m.len())
                        .sum();
                    self.spool_fragments.set(pending.len() as i64);
                    self.spool_bytes
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for DeviceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<DeviceMetrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

fn answer(req: &Request<hyper::body::Incoming>, metrics: &DeviceMetrics) -> Response<Full<Bytes>> {
    let (status, kind, body) = if req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "sealcamd serves /metrics only\n".to_owned(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_its_help() {
        let m = DeviceMetrics::new();
        m.frames_captured.inc();
        let text = m.render();
        for name in [
            "sealcamd_frames_captured_total 1",
            "sealcamd_frames_dropped_total",
            "sealcamd_fragments_sealed_total",
            "sealcamd_fragments_dropped_total",
            "sealcamd_fragments_uploaded_total",
            "sealcamd_fragments_rejected_total",
            "sealcamd_upload_failures_total",
            "sealcamd_upload_seconds_bucket",
            "sealcamd_pipeline_restarts_total",
            "sealcamd_key_signatures_total",
            "sealcamd_spool_bytes",
            "sealcamd_spool_fragments",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
    }
}
