//! The audit and metrics layer: every API call, accepted or refused, is
//! recorded in the audit trail with who made it and counted; a refusal is
//! logged here, and only here.

use std::future::Future;
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use sealcam_api::ErrorCode;

use super::error::{ApiError, Note, Reason};
use crate::audit::{AuditLog, Event};
use crate::metrics::Metrics;

/// How long a request waits for room in a full audit queue.
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who asked for what, as the audit trail records it.
pub struct Call {
    /// `device:NAME`, `consumer:NAME` or `anonymous`.
    pub who: String,
    pub addr: Option<String>,
    /// The route's action (`upload`), or `request`.
    pub action: &'static str,
    pub target: Option<String>,
}

/// Runs a request's handler, then records, counts and (when refused) logs
/// its answer.
pub async fn observe(
    audit: &AuditLog,
    metrics: &Metrics,
    call: Call,
    handled: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    let started = Instant::now();
    let response = handled.await.unwrap_or_else(IntoResponse::into_response);
    if call.action == "upload" {
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
    let detail = reason
        .map(|r| r.text.clone())
        .or_else(|| response.extensions().get::<Note>().map(|n| n.0.clone()))
        .or_else(|| (status != StatusCode::OK).then(|| status.to_string()));
    if !status.is_success() {
        let code = reason.map_or_else(|| ErrorCode::for_status(status), |r| r.code);
        metrics.refused(call.action, code.as_str());
        if status.is_server_error() {
            metrics.storage_errors.inc();
        }
        log_refusal(&call, status, detail.as_deref().unwrap_or_default());
    }
    // A full audit queue slows the request a little (back-pressure) before
    // the record is counted as dropped.
    audit
        .record_within(
            Event {
                actor: call.who,
                action: call.action.into(),
                target: call.target,
                addr: call.addr,
                result: result.into(),
                detail,
            },
            AUDIT_WAIT,
        )
        .await;
    response
}

/// The one log line of a refused request.
fn log_refusal(call: &Call, status: StatusCode, reason: &str) {
    let (addr, peer, action) = (
        call.addr.as_deref().unwrap_or("-"),
        call.who.as_str(),
        call.action,
    );
    let target = call.target.as_deref().unwrap_or("-");
    match (call.action, status) {
        // Other bytes under a stored sequence, or a chain that does not link.
        ("upload", StatusCode::CONFLICT) => {
            tracing::error!(
                addr,
                peer,
                target,
                reason,
                "SECURITY: conflicting fragment refused"
            )
        }
        (_, s) if s.is_server_error() => {
            tracing::error!(addr, peer, action, target, reason, "request failed")
        }
        ("upload", _) => tracing::warn!(addr, peer, target, reason, "fragment refused"),
        ("renew", _) => tracing::warn!(addr, peer, reason, "renewal refused"),
        ("enroll", _) => tracing::warn!(addr, reason, "enrollment refused"),
        _ => tracing::warn!(addr, peer, action, target, reason, "request refused"),
    }
}
