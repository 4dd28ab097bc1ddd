//! Uploads: a device `PUT`s a fragment of one of its own streams; it is
//! admitted (limits), read (size, time), parsed, verified against the
//! device's certificate and stored in its chain.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealcam_api::{media, ErrorCode, UploadReceipt, UploadStatus};
use sealcam_format::{Name, SealedFragment};
use sealcam_transport::identity;

use super::body::AlignedBody;
use super::budget::Reserved;
use super::error::ApiError;
use super::{AppState, Peer};
use crate::limits;
use crate::store::{ChainError, PutOutcome, StoreError};

fn is_streamed(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media::FRAGMENT_STREAM))
}

/// How long an upload refused for want of memory is told to wait.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads an upload's body: at most the configured size, completely within
/// the body timeout (a sender that stalls is cut off), and only with room
/// reserved for it in the ingest's buffer budget ([`BufferBudget`]). It is
/// read into memory aligned for direct I/O, so that the payload of a
/// streamed upload goes to disk from where it lies ([`AlignedBody`]). The
/// reservation returned holds the room until the body is dropped.
///
/// [`BufferBudget`]: super::budget::BufferBudget
async fn read_body(
    state: &AppState,
    peer: &Peer,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(Bytes, Reserved), ApiError> {
    let limit = state.max_fragment_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the fragment is larger than this ingest's limit of {limit} bytes"),
        )
    };
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the ingest holds as many upload bodies in memory as it may; retry after {} s",
                BUSY_RETRY.as_secs()
            ),
        )
        .retry_after(BUSY_RETRY)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let capacity = match declared {
        Some(n) if n > limit as u64 => return Err(too_large()),
        // At most the limit, so it fits.
        Some(n) => n as usize,
        // Room for one a quarter longer than the last, and at least what
        // a buffer grows by, so that a full budget refuses it here.
        None => {
            let last = peer.last_body_len.load(Ordering::Relaxed);
            last.saturating_add(last / 4)
                .max(AlignedBody::MIN_GROWTH)
                .min(limit)
        }
    };
    // Refused before a byte of the body is read.
    let mut reserved = state.budget.reserve(capacity).ok_or_else(busy)?;
    let mut body = body;
    let receive = async {
        let mut received = AlignedBody::with_capacity(capacity);
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.map_err(|e| {
                if super::deadline::is_deadline(&e) {
                    return timed_out(state);
                }
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body could not be read: {}",
                        sealcam_base::error_chain(&e)
                    ),
                )
            })?;
            if let Some(piece) = frame.data_ref() {
                // Refused as soon as the count passes the limit.
                if piece.len() > limit - received.len() {
                    return Err(too_large());
                }
                let room = received.capacity_for(piece.len(), limit);
                if room > received.capacity() {
                    // The old buffer and the new one, while it moves.
                    if !reserved.grow_to(received.capacity().saturating_add(room)) {
                        return Err(busy());
                    }
                    received.extend_within(piece, limit);
                    reserved.shrink_to(received.capacity());
                } else {
                    received.extend_within(piece, limit);
                }
            }
        }
        peer.last_body_len.store(received.len(), Ordering::Relaxed);
        Ok(received.into_bytes())
    };
    let result = tokio::time::timeout(state.body_timeout, receive)
        .await
        .unwrap_or_else(|_| Err(timed_out(state)));
    // Refused before the sender was done (413, 503): what it still sends
    // is read (bounded) and dropped as the body is dropped, so that it
    // reads the answer instead of a reset connection.
    result.map(|bytes| (bytes, reserved))
}

fn timed_out(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the body did not arrive within {} s",
            state.body_timeout.as_secs()
        ),
    )
}

/// The checks made before an upload's body is read: whether the device may
/// write the stream, and whether it is within its limits. The slot it
/// returns holds the device's place among its concurrent uploads.
fn admit_upload(
    state: &AppState,
    peer: &Peer,
    device: &Name,
    stream: &Name,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    if *device != peer.identity.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may not write streams of device {device}", peer.identity),
        ));
    }
    if !peer.identity.may_write(stream) {
        let allowed: Vec<&str> = peer.identity.streams.iter().map(Name::as_str).collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not write stream {stream}; its certificate allows: {}",
                peer.identity,
                allowed.join(", ")
            ),
        ));
    }
    state.limiter.admit(device).map_err(|r| match r {
        limits::Refusal::Busy { limit } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{limit} uploads of this device are in progress already; wait for one to finish"
            ),
        )
        .with_code(ErrorCode::TooManyUploads),
        limits::Refusal::Rate { retry_after } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "over this device's upload rate; retry after {} ms",
                retry_after.as_millis()
            ),
        )
        .with_code(ErrorCode::RateLimited)
        .retry_after(retry_after),
    })
}

/// `PUT /v1/fragments/{device}/{stream}/{sequence}`.
pub async fn put_fragment(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
    sequence: u64,
    req: Request,
) -> Result<Response, ApiError> {
    // Refused before the body is read: the body is read and dropped
    // (bounded) as the request is dropped, while the refusal is answered.
    let _slot = admit_upload(state, peer, &device, &stream)?;
    let (parts, body) = req.into_parts();
    let malformed = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    let (body, _reserved) = read_body(state, peer, &parts.headers, body).await?;
    // A fragment sent while it was recorded (payload first, manifest last)
    // is parsed where it lies, like a whole one: the payload is stored from
    // the body it arrived in, without a copy.
    let frag = if is_streamed(&parts.headers) {
        SealedFragment::parse_streamed(&body)
    } else {
        SealedFragment::parse(&body)
    }
    .map_err(|e| malformed(e.to_string()))?;
    let m = &frag.manifest;
    if m.device != device || m.stream != stream || m.sequence != sequence {
        return Err(malformed(format!(
            "manifest names {}/{}/{} but the upload is for {device}/{stream}/{sequence}",
            m.device, m.stream, m.sequence
        )));
    }
    let key = peer
        .verifier
        .get_or_init(|| {
            identity::device_key_from_cert_der(&peer.cert_der)
                .map_err(|e| e.to_string())
                .and_then(|k| k.verifier().map_err(|e| e.to_string()))
        })
        .as_ref()
        .map_err(|e| malformed(e.clone()))?;
    frag.verify_with(key)
        .map_err(|e| malformed(e.to_string()))?;
    frag.records().map_err(|e| malformed(e.to_string()))?;
    let hash = frag.manifest_hash();
    let frames = m.frame_count;
    state
        .store
        .put_device_cert(&device, &peer.serial, &peer.cert_der)
        .await?;
    super::restarts::check_epoch_start(state, &frag).await?;
    let conflict = |reason: String| ApiError::new(StatusCode::CONFLICT, reason);
    let outcome = match state.store.put_fragment_in_chain(&frag, &body).await {
        Ok(o) => o,
        Err(ChainError::Broken(b)) => return Err(conflict(b.to_string())),
        Err(ChainError::Store(StoreError::Conflict { .. })) => {
            return Err(conflict(format!(
                "sequence {sequence} is already stored with different content"
            )))
        }
        Err(ChainError::Store(e)) => return Err(e.into()),
    };
    let (status, word) = match outcome {
        PutOutcome::Stored => {
            state.arrived(&device, &stream);
            // What is stored: the payload and the signed manifest.
            let stored = frag.payload.len() + frag.manifest_body.len() + frag.signature.len();
            state.metrics.fragment_bytes.inc_by(stored as u64);
            (StatusCode::CREATED, UploadStatus::Stored)
        }
        PutOutcome::AlreadyStored => (StatusCode::OK, UploadStatus::AlreadyStored),
    };
    state
        .metrics
        .fragments
        .get_or_create(&crate::metrics::OutcomeLabels {
            outcome: word.as_str().into(),
        })
        .inc();
    tracing::info!(peer = %peer.identity, %stream, sequence, frames, status = word.as_str(), "fragment accepted");
    Ok((
        status,
        Json(UploadReceipt {
            status: word,
            sequence,
            manifest: hash.to_string(),
        }),
    )
        .into_response())
}
