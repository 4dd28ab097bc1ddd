//! Chain restarts: a device `PUT`s the signed record of a new epoch of one
//! of its own streams (`sealcam_format::restart`); consumers list a
//! stream's records to verify across the break.
//!
//! The ingest accepts a record only from the device itself, signed by the
//! key of the certificate it presents (a valid, unrevoked fleet device
//! certificate: the TLS layer has checked that), and stores it
//! create-only; it never removes or replaces anything of an earlier epoch.
//! A fragment at a sequence where a record is stored must name the
//! record's hash as its predecessor ([`check_epoch_start`]).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealcam_api::RestartEntry;
use sealcam_format::restart::SignedRestart;
use sealcam_format::{Name, SealedFragment};
use sealcam_transport::identity;

use super::error::ApiError;
use super::{require_read, AppState, Peer};
use crate::store::{PutOutcome, StoreError};

/// Restart records are small; anything larger is refused unread.
const MAX_RECORD_BYTES: usize = 4096;

/// `PUT /v1/restarts/{device}/{stream}/{first_sequence}`.
pub async fn put_restart(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
    first_sequence: u64,
    req: Request,
) -> Result<Response, ApiError> {
    if device != peer.identity.name || !peer.identity.may_write(&stream) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not begin a new epoch of {device}/{stream}",
                peer.identity
            ),
        ));
    }
    let malformed = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    let body = axum::body::to_bytes(req.into_body(), MAX_RECORD_BYTES)
        .await
        .map_err(|_| {
            malformed(format!(
                "the restart record is larger than {MAX_RECORD_BYTES} bytes or was cut off"
            ))
        })?;
    let signed = SignedRestart::parse(&body).map_err(|e| malformed(e.to_string()))?;
    let r = &signed.restart;
    if r.device != device || r.stream != stream || r.first_sequence != first_sequence {
        return Err(malformed(format!(
            "the record begins {}/{} at {} but the upload is for {device}/{stream}/{first_sequence}",
            r.device, r.stream, r.first_sequence
        )));
    }
    let key = identity::device_key_from_cert_der(&peer.cert_der)
        .map_err(|e| e.to_string())
        .and_then(|k| k.verifier().map_err(|e| e.to_string()))
        .map_err(malformed)?;
    signed.verify(&key).map_err(|_| {
        malformed(
            "the restart record is not signed by the key of the certificate this device presents"
                .into(),
        )
    })?;
    // An epoch begins above everything stored (the camera picks its first
    // sequence above any an earlier epoch could have used). A record below
    // would only make footage already stored fail verification: a stolen
    // camera, before its revocation, could poison its own history.
    if state
        .store
        .restart(&device, &stream, first_sequence)
        .await?
        .is_none()
    {
        if let Some(&newest) = state.store.sequences(&device, &stream).await?.last() {
            if newest >= first_sequence {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "a new epoch of {device}/{stream} must begin above every fragment stored; fragment {newest} is stored, the record begins at {first_sequence}"
                    ),
                ));
            }
        }
    }
    let outcome = state
        .store
        .put_restart(&device, &stream, first_sequence, body)
        .await
        .map_err(|e| match e {
            e @ StoreError::RestartConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            e => e.into(),
        })?;
    let status = match outcome {
        PutOutcome::Stored => StatusCode::CREATED,
        PutOutcome::AlreadyStored => StatusCode::OK,
    };
    tracing::info!(peer = %peer.identity, %stream, first_sequence, epoch = r.epoch, reason = ?r.reason, previous = ?r.previous.map(|p| p.sequence), "chain restart recorded");
    Ok(status.into_response())
}

/// `GET /v1/streams/{device}/{stream}/restarts`.
pub async fn list_restarts(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
) -> Result<Response, ApiError> {
    require_read(peer, &device, Some(&stream))?;
    let entries: Vec<RestartEntry> = state
        .store
        .restarts(&device, &stream)
        .await?
        .into_iter()
        .map(|(first_sequence, bytes)| RestartEntry {
            first_sequence,
            record: hex::encode(bytes),
        })
        .collect();
    Ok(Json(entries).into_response())
}

/// Refuses a fragment that stands where a stored restart record begins an
/// epoch but does not name the record as its predecessor.
pub async fn check_epoch_start(
    state: &AppState,
    frag: &SealedFragment<'_>,
) -> Result<(), ApiError> {
    let m = &frag.manifest;
    let Some(bytes) = state
        .store
        .restart(&m.device, &m.stream, m.sequence)
        .await?
    else {
        return Ok(());
    };
    let Ok(signed) = SignedRestart::parse(&bytes) else {
        return Err(StoreError::Damaged {
            path: format!("restart record {}/{}/{}", m.device, m.stream, m.sequence),
            reason: "does not parse".into(),
        }
        .into());
    };
    if m.prev != signed.hash().0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "chain broken: fragment {} begins the epoch of the stored restart record {} but names previous manifest {}",
                m.sequence,
                signed.hash(),
                m.prev
            ),
        ));
    }
    Ok(())
}
