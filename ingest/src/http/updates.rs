//! Update delivery to devices (`docs/ref/protocol.md`, Updates): `GET
//! /v1/updates/{compatible}` answers which bundle is offered (204: none
//! newer than the version the camera reports), `GET /v1/bundles/{sha256}`
//! streams it, from a `Range` offset to resume.
//!
//! Each check carries the camera's installed version and the outcome of
//! its last update: recorded in the audit trail (the call's detail) and in
//! the gauge `sealcam_ingest_device_update_report_seconds`.
//!
//! The ingest cannot make a camera install anything: RAUC on the camera
//! verifies the bundle's signature against its own keyring.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use sealcam_api::update::{
    clean_outcome, compare_versions, valid_version, INSTALLED_VERSION, UPDATE_OUTCOME,
};
use sealcam_api::{media, UpdateOffer};
use sealcam_format::Name;

use super::error::{ApiError, Note};
use super::{AppState, Peer};

/// What a camera reports with a check.
struct Report {
    installed: String,
    outcome: Option<String>,
}

fn report(headers: &HeaderMap) -> Result<Report, ApiError> {
    let installed = headers
        .get(INSTALLED_VERSION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_version(v))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("send the installed release version in the {INSTALLED_VERSION} header (1 to 64 of 0-9 A-Z a-z . + - _ ~)"),
            )
        })?
        .to_owned();
    let outcome = headers
        .get(UPDATE_OUTCOME)
        .map(|v| clean_outcome(&String::from_utf8_lossy(v.as_bytes())))
        .filter(|o| !o.is_empty());
    Ok(Report { installed, outcome })
}

/// `GET /v1/updates/{compatible}`.
pub async fn offer(
    state: &AppState,
    peer: &Peer,
    compatible: Name,
    req: Request,
) -> Result<Response, ApiError> {
    let report = report(req.headers())?;
    let outcome = report.outcome.as_deref().unwrap_or("none");
    state
        .metrics
        .device_update_report(peer.identity.name.as_str(), &report.installed, outcome);
    let note = Note(format!(
        "installed {}; last update: {outcome}",
        report.installed
    ));
    let newest = state.store.updates(&compatible).await?.into_iter().next();
    let mut response = match newest {
        Some(e) if compare_versions(&e.version, &report.installed).is_gt() => Json(UpdateOffer {
            compatible: e.compatible,
            version: e.version,
            size: e.size,
            sha256: e.sha256,
        })
        .into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    };
    response.extensions_mut().insert(note);
    Ok(response)
}

/// The offset of a `Range: bytes=N-` header; `None` for no header or any
/// other form (then the whole bundle is sent, as RFC 9110 allows).
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let n = v.trim().strip_prefix("bytes=")?.strip_suffix('-')?;
    n.parse().ok()
}

/// `GET /v1/bundles/{sha256}`.
pub async fn bundle(
    state: &AppState,
    _peer: &Peer,
    sha256: Name,
    req: Request,
) -> Result<Response, ApiError> {
    let from = range_start(req.headers());
    let Some(range) = state
        .store
        .read_bundle(sha256.as_str(), from.unwrap_or(0))
        .await?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no bundle {sha256} is stored; ask GET /v1/updates/{{compatible}} for the one offered"),
        ));
    };
    let total = range.total;
    if from.is_some_and(|f| f >= total && total > 0) {
        let mut r = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("bundle {sha256} has {total} bytes"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Ok(r);
    }
    let body = Body::from_stream(range.bytes.map_err(std::io::Error::other));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::BUNDLE),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let length = total - range.from;
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if range.from > 0 {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{total}",
            range.from,
            total.saturating_sub(1)
        )) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_ended_byte_ranges_are_honoured() {
        let mut h = HeaderMap::new();
        assert_eq!(range_start(&h), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=100-"));
        assert_eq!(range_start(&h), Some(100));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-99"));
        assert_eq!(range_start(&h), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-5"));
        assert_eq!(range_start(&h), None);
    }
}
