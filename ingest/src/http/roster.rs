//! Owner-signed device rosters: a consumer publishes one (`PUT
//! /v1/rosters`), any consumer reads the newest for an owner key (`GET
//! /v1/rosters/{owner}`).
//!
//! The ingest is not trusted with provenance: it keeps only a roster that
//! parses and is signed by the owner key sent with it, and never a lower
//! version over a higher one; verifiers check what it serves against the
//! owner key they hold, and pin the newest version they have seen.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use sealcam_api::{media, RosterReceipt, RosterStatus, RosterUpload};
use sealcam_format::roster::SignedDeviceRoster;
use sealcam_format::{DeviceVerifyingKey, Name};

use super::error::ApiError;
use super::{AppState, Peer};
use crate::store::{RosterPut, StoreError};

/// The largest `PUT /v1/rosters` body read: a roster of some ten thousand
/// TPM-evidenced keys, base64.
pub const MAX_ROSTER_BODY: usize = 16 * 1024 * 1024;

fn malformed(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason)
}

/// `PUT /v1/rosters`.
pub async fn publish(state: &AppState, peer: &Peer, req: Request) -> Result<Response, ApiError> {
    let body = axum::body::to_bytes(req.into_body(), MAX_ROSTER_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a roster upload is at most {MAX_ROSTER_BODY} bytes"),
            )
        })?;
    let upload: RosterUpload = serde_json::from_slice(&body)
        .map_err(|e| malformed(format!("the body is not a roster upload: {e}")))?;
    let owner = DeviceVerifyingKey::from_pem(&upload.owner_key)
        .map_err(|e| malformed(format!("owner_key: {e}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(upload.roster.as_bytes())
        .map_err(|e| malformed(format!("roster: not base64: {e}")))?;
    let roster = SignedDeviceRoster::parse(&bytes)
        .map_err(|e| malformed(format!("roster: {e}")))?
        .verify(&owner)
        .map_err(|e| malformed(format!("roster: {e}")))?;
    let fingerprint = owner.fingerprint();
    let owner_name =
        Name::new(&fingerprint).map_err(|e| malformed(format!("owner fingerprint: {e}")))?;
    let outcome = state
        .store
        .put_roster(&owner_name, roster.version, Bytes::from(bytes))
        .await
        .map_err(|e| match e {
            e @ (StoreError::StaleRoster { .. } | StoreError::RosterConflict { .. }) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            e => ApiError::from(e),
        })?;
    tracing::info!(
        consumer = %peer.identity,
        owner = %fingerprint,
        version = roster.version,
        ?outcome,
        "roster published"
    );
    let (status, code) = match outcome {
        RosterPut::Stored => (RosterStatus::Stored, StatusCode::CREATED),
        RosterPut::AlreadyStored => (RosterStatus::AlreadyStored, StatusCode::OK),
    };
    Ok((
        code,
        Json(RosterReceipt {
            status,
            owner: fingerprint,
            version: roster.version,
        }),
    )
        .into_response())
}

/// `GET /v1/rosters/{owner}`: the newest roster stored for the owner key.
pub async fn read(state: &AppState, owner: Name) -> Result<Response, ApiError> {
    let bytes = state.store.newest_roster(&owner).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no roster published for owner key {owner}; the owner publishes one with `sealcam roster publish`"
            ),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, media::ROSTER)], bytes).into_response())
}
