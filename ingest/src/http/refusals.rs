//! Anonymous refusals (connections over a cap, failed handshakes) counted
//! in metrics at once and sampled into the audit trail: at most one record
//! per port and reason each [`SAMPLE_EVERY`], with the count since the
//! last one, so that a flood of them is not a flood of writes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{AuditLog, Event};
use crate::metrics::Metrics;

/// How often the counts since the last record are written.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Refusals not yet in the audit trail for one port and reason.
#[derive(Default)]
struct Pending {
    count: u64,
    /// The last one's address and what the handshake said, if anything.
    last_addr: Option<SocketAddr>,
    last_detail: Option<String>,
}

type Key = (&'static str, &'static str);

/// Counts refusals and writes their samples.
pub struct Refusals {
    metrics: Arc<Metrics>,
    pending: Mutex<HashMap<Key, Pending>>,
}

impl Refusals {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            pending: Mutex::default(),
        })
    }

    /// One refusal on `port` (`api`, `enroll`) for `reason`; `detail` is
    /// what the TLS layer said, when it said something.
    pub fn refused(
        &self,
        port: &'static str,
        reason: &'static str,
        addr: SocketAddr,
        detail: Option<String>,
    ) {
        self.metrics.connection_refused(port, reason);
        if let Ok(mut p) = self.pending.lock() {
            let e = p.entry((port, reason)).or_default();
            e.count += 1;
            e.last_addr = Some(addr);
            if detail.is_some() {
                e.last_detail = detail;
            }
        }
    }

    /// The records the counts since the last call make, and the counts
    /// cleared.
    fn take(&self) -> Vec<Event> {
        let Ok(mut p) = self.pending.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Event> = p
            .drain()
            .filter(|(_, e)| e.count > 0)
            .map(|((port, reason), e)| Event {
                actor: "anonymous".into(),
                action: "connect".into(),
                target: Some(format!("{port} port")),
                addr: e.last_addr.map(|a| a.to_string()),
                result: "refused".into(),
                detail: Some(match e.last_detail {
                    Some(d) => {
                        format!("{reason}: {} since the last record; the last: {d}", e.count)
                    }
                    None => format!("{reason}: {} since the last record", e.count),
                }),
            })
            .collect();
        out.sort_by(|a, b| a.detail.cmp(&b.detail));
        out
    }

    /// Writes the samples every [`SAMPLE_EVERY`], and logs them, until
    /// aborted.
    pub async fn run(self: Arc<Self>, audit: AuditLog) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush(&audit);
        }
    }

    /// Writes what is pending now (also at shutdown).
    pub fn flush(&self, audit: &AuditLog) {
        for event in self.take() {
            let port = event.target.as_deref().unwrap_or("-");
            let last_addr = event.addr.as_deref().unwrap_or("-");
            let detail = event.detail.as_deref().unwrap_or("-");
            if detail.starts_with("handshake") {
                tracing::warn!(port, last_addr, reason = detail, "TLS handshake refused");
            } else {
                tracing::warn!(port, last_addr, reason = detail, "connections refused");
            }
            audit.record(event);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn many_refusals_make_one_record_per_port_and_reason() {
        let r = Refusals::new(Arc::new(Metrics::new()));
        let addr = SocketAddr::from(([10, 0, 0, 1], 5));
        for _ in 0..1000 {
            r.refused("api", "handshake", addr, Some("bad hello".into()));
        }
        r.refused("enroll", "address-cap", addr, None);
        let events = r.take();
        assert_eq!(events.len(), 2);
        let details: Vec<&str> = events.iter().filter_map(|e| e.detail.as_deref()).collect();
        assert_eq!(
            details,
            [
                "address-cap: 1 since the last record",
                "handshake: 1000 since the last record; the last: bad hello"
            ]
        );
        assert!(r.take().is_empty());
        let m = r.metrics.encode();
        assert!(
            m.contains(
                r#"sealcam_ingest_connections_refused_total{port="api",reason="handshake"} 1000"#
            ),
            "{m}"
        );
    }
}
