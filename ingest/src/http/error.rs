//! The HTTP error model: a refusal is a status, a stable code
//! ([`ErrorCode`]) and one clear reason, sent as [`ErrorBody`]
//! (`docs/ref/protocol.md`).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealcam_api::{ErrorBody, ErrorCode};

use crate::store::StoreError;

/// A refusal: status plus one clear reason.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            code: ErrorCode::for_status(status),
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }

    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// The reason of a refusal, kept on the response for the audit trail, the
/// metrics and the log.
#[derive(Clone, Debug)]
pub struct Reason {
    pub code: ErrorCode,
    pub text: String,
}

/// A note on a success for the audit trail (what was issued).
#[derive(Clone, Debug)]
pub struct Note(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.reason.clone(),
            code: self.code,
        });
        let mut r = (self.status, body).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up (RFC 9110).
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r.extensions_mut().insert(Reason {
            code: self.code,
            text: self.reason,
        });
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage error; try again",
        )
    }
}

/// A request's JSON body that axum could not take: its status, its text.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        Self::new(r.status(), r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::new(r.status(), r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> serde_json::Value {
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_refusal_is_json_with_its_code_and_reason() {
        let r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "slow down")
            .with_code(ErrorCode::RateLimited)
            .retry_after(Duration::from_millis(1500))
            .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // Rounded up to whole seconds.
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let reason = r.extensions().get::<Reason>().cloned().unwrap();
        assert_eq!(
            (reason.code, reason.text.as_str()),
            (ErrorCode::RateLimited, "slow down")
        );
        assert_eq!(
            body_of(r).await,
            serde_json::json!({"error": "slow down", "code": "rate-limited"})
        );
        let r = ApiError::new(StatusCode::FORBIDDEN, "no").into_response();
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_storage_error_is_internal_and_says_to_try_again() {
        let e = ApiError::from(StoreError::Damaged {
            path: "p".into(),
            reason: "r".into(),
        });
        assert_eq!((e.status.as_u16(), e.code), (500, ErrorCode::Internal));
        assert_eq!(e.reason, "storage error; try again");
    }
}
