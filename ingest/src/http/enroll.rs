//! A device's identity: enrollment on its own port and renewal of a valid
//! certificate, both answered by the CA service (`sealcam-ca serve`; the
//! ingest holds no CA key), and `whoami`.

use std::net::SocketAddr;

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealcam_api::ca::RENEW_PATH;
use sealcam_api::{CaRenewRequest, ErrorBody, RenewRequest, RoleName, WhoAmI};
use sealcam_transport::{pem, Role};

use super::error::{ApiError, Note, Reason};
use super::{AppState, Peer};
use crate::ca_client::{CaAnswer, CaClientError};

/// `GET /v1/whoami`: who the ingest takes the caller for: a device or a
/// consumer checks its certificate is accepted, and what it grants, without
/// side effects.
pub fn whoami(peer: &Peer) -> Response {
    let id = &peer.identity;
    Json(WhoAmI {
        role: match id.role {
            Role::Device => RoleName::Device,
            Role::Consumer => RoleName::Consumer,
        },
        name: id.name.to_string(),
        streams: id.streams.iter().map(ToString::to_string).collect(),
        reads: id.reads.iter().map(|(d, s)| format!("{d}/{s}")).collect(),
        serial: peer.serial.to_string(),
    })
    .into_response()
}

/// The CA service's answer, passed back as it came; its reason (or what
/// was issued) noted for the audit trail and the log.
fn from_ca(answer: CaAnswer, what: &str) -> Response {
    let mut r = Response::new(axum::body::Body::from(answer.body.clone()));
    *r.status_mut() = answer.status;
    if let Some(ct) = answer.content_type {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    if let Some(ra) = answer.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, ra);
    }
    if answer.status.is_success() {
        let note = match answer.status {
            StatusCode::ACCEPTED => format!("{what}: waits for an operator's approval"),
            _ => format!("{what}: certificate issued by the CA service"),
        };
        r.extensions_mut().insert(Note(note));
    } else {
        let body = ErrorBody::from_response_text(&String::from_utf8_lossy(&answer.body));
        r.extensions_mut().insert(Reason {
            code: body.code,
            text: body.error,
        });
    }
    r
}

fn ca_unreachable(e: CaClientError) -> ApiError {
    tracing::error!(error = %e, "the CA service cannot be reached");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the fleet CA cannot be reached; try again later",
    )
    .retry_after(std::time::Duration::from_secs(30))
}

/// `POST /v1/enroll`, and any `POST /v1/enroll/<step>`, on the enrollment
/// port: passed to the CA service as it came (path, body, content type),
/// with the camera's address for its log; its answer passed back as it
/// came. The ingest reads nothing of it: the CA decides.
pub async fn pass_to_ca(
    state: &AppState,
    addr: Option<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_owned();
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(req.into_body(), ENROLL_BODY_LIMIT)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("enrollment requests are at most {ENROLL_BODY_LIMIT} bytes"),
            )
        })?;
    let peer = addr.map(|a| a.to_string());
    let answer = state
        .ca
        .request(
            Method::POST,
            &path,
            peer.as_deref(),
            content_type.as_ref(),
            body,
        )
        .await
        .map_err(ca_unreachable)?;
    tracing::info!(
        addr = peer.as_deref().unwrap_or("-"),
        path,
        status = answer.status.as_u16(),
        "enrollment request answered by the CA service"
    );
    Ok(from_ca(answer, "enrollment"))
}

/// The largest enrollment request passed on (as the port's body limit).
pub const ENROLL_BODY_LIMIT: usize = 64 * 1024;

/// `POST /v1/renew`: a device with a valid certificate gets a fresh one for
/// the same key and identity. The CA service checks the request against
/// the certificate the device presented on this connection.
pub async fn renew(state: &AppState, peer: &Peer, req: Request) -> Result<Response, ApiError> {
    let Json(req) = Json::<RenewRequest>::from_request(req, state).await?;
    let body = serde_json::to_vec(&CaRenewRequest {
        csr: req.csr,
        certificate: pem::cert_to_pem(&peer.cert_der),
    })
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let addr = peer.addr.to_string();
    let answer = state
        .ca
        .request(
            Method::POST,
            RENEW_PATH,
            Some(&addr),
            Some(&HeaderValue::from_static("application/json")),
            body.into(),
        )
        .await
        .map_err(ca_unreachable)?;
    if answer.status.is_success() {
        tracing::info!(peer = %peer.identity, "device certificate renewed");
    }
    Ok(from_ca(answer, "renewal"))
}
