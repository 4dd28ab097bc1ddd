//! Consumers' requests held to their limits (`limits.rs`): a consumer
//! over its rate or with too many requests in progress is answered `429`
//! with a `Retry-After`, before any work is done for it; devices and other
//! consumers are not affected.

use std::time::Duration;

use axum::http::StatusCode;
use sealcam_api::ErrorCode;
use sealcam_transport::Role;
use tokio::sync::OwnedSemaphorePermit;

use super::error::ApiError;
use super::{AppState, Peer};
use crate::limits::Refusal;

/// How long a consumer with too many requests in progress is asked to wait.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Admits a request of `peer` if it is a consumer within its limits (the
/// permit is its place among its requests in progress: hold it until the
/// request is answered); devices pass (their uploads have limits of their
/// own).
pub fn admit(state: &AppState, peer: &Peer) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    if peer.identity.role != Role::Consumer {
        return Ok(None);
    }
    match state.limiter.admit_consumer(&peer.identity.name) {
        Ok(permit) => Ok(Some(permit)),
        Err(Refusal::Busy { limit }) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{limit} requests of this consumer are in progress already; wait for one to be answered"
            ),
        )
        .with_code(ErrorCode::TooManyRequests)
        .retry_after(BUSY_RETRY)),
        Err(Refusal::Rate { retry_after }) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "over this consumer's request rate; retry after {} ms",
                retry_after.as_millis()
            ),
        )
        .with_code(ErrorCode::RateLimited)
        .retry_after(retry_after)),
    }
}
