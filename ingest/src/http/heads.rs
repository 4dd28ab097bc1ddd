//! Signed heads: a camera uploads its newest head of one of its own
//! streams (`PUT /v1/heads/{device}/{stream}`); a consumer who may read
//! the stream reads the newest one stored (`GET
//! /v1/streams/{device}/{stream}/head`).
//!
//! The ingest keeps only a head that parses, names the uploading device
//! and the stream of the path, verifies under the certificate the device
//! presented, and is newer than the newest stored: a verifier checks it
//! again under the owner's roster, and the ingest has no say in it.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sealcam_api::media;
use sealcam_format::head::SignedHead;
use sealcam_format::Name;
use sealcam_transport::identity;

use super::error::ApiError;
use super::{require_read, AppState, Peer};
use crate::store::{HeadPut, StoreError};

/// The largest head upload read (a head is about 160 bytes).
pub const MAX_HEAD_BODY: usize = 4096;

/// How much newer than the newest stored a head must be signed: a device
/// cannot fill the store with heads faster than this.
pub const MIN_HEAD_SPACING_NS: u64 = 1_000_000_000;
/// How far past the ingest's clock a head may be dated (clocks differ).
pub const MAX_HEAD_SKEW_NS: u64 = 300_000_000_000;

fn refused(status: StatusCode, reason: impl Into<String>) -> ApiError {
    ApiError::new(status, reason)
}

/// `PUT /v1/heads/{device}/{stream}`.
pub async fn put(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
    req: Request,
) -> Result<Response, ApiError> {
    if device != peer.identity.name {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!("{} may not write heads of device {device}", peer.identity),
        ));
    }
    if !peer.identity.may_write(&stream) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!("{} may not write stream {stream}", peer.identity),
        ));
    }
    let body: Bytes = axum::body::to_bytes(req.into_body(), MAX_HEAD_BODY)
        .await
        .map_err(|_| {
            refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a head is at most {MAX_HEAD_BODY} bytes"),
            )
        })?;
    let malformed = |reason: String| refused(StatusCode::BAD_REQUEST, reason);
    let signed = SignedHead::parse(&body).map_err(|e| malformed(format!("head: {e}")))?;
    let h = &signed.head;
    if h.device != device || h.stream != stream {
        return Err(malformed(format!(
            "the head names {}/{} but the upload is for {device}/{stream}",
            h.device, h.stream
        )));
    }
    let key = identity::device_key_from_cert_der(&peer.cert_der)
        .map_err(|e| malformed(e.to_string()))?
        .verifier()
        .map_err(|e| malformed(e.to_string()))?;
    signed
        .verify(&key)
        .map_err(|e| malformed(format!("head: {e} under the certificate presented")))?;
    let signed_at = h.signed_at_unix_ns;
    // A head dated in the future would stand as the newest for good and
    // refuse every honest one after it (a camera clock that jumped, or a
    // stolen camera before its revocation).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    if signed_at > now.saturating_add(MAX_HEAD_SKEW_NS) {
        return Err(malformed(format!(
            "head signed at {signed_at} ns, more than {} s after this ingest's clock ({now} ns): check the camera's clock",
            MAX_HEAD_SKEW_NS / 1_000_000_000
        )));
    }
    let newest = state.store.newest_head_time(&device, &stream).await?;
    if let Some(newest) = newest {
        if signed_at != newest && signed_at < newest.saturating_add(MIN_HEAD_SPACING_NS) {
            return Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "a head of {device}/{stream} signed at {newest} ns is stored; a new one must be signed at least {} s later",
                    MIN_HEAD_SPACING_NS / 1_000_000_000
                ),
            ));
        }
    }
    let outcome = state
        .store
        .put_head(&device, &stream, signed_at, body)
        .await
        .map_err(|e| match e {
            e @ StoreError::HeadConflict { .. } => refused(StatusCode::CONFLICT, e.to_string()),
            e => ApiError::from(e),
        })?;
    tracing::debug!(peer = %peer.identity, %stream, sequence = h.sequence, ?outcome, "head accepted");
    Ok(match outcome {
        HeadPut::Stored => StatusCode::CREATED,
        HeadPut::AlreadyStored => StatusCode::OK,
    }
    .into_response())
}

/// `GET /v1/streams/{device}/{stream}/head`.
pub async fn read(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
) -> Result<Response, ApiError> {
    require_read(peer, &device, Some(&stream))?;
    let bytes = state
        .store
        .newest_head(&device, &stream)
        .await?
        .ok_or_else(|| {
            refused(
                StatusCode::NOT_FOUND,
                format!(
                    "no signed head of {device}/{stream} is stored; the camera has not sent one"
                ),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, media::HEAD)], bytes).into_response())
}
