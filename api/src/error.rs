//! Refusals: a stable code that clients branch on, and a reason for people.
//!
//! Every refusal is JSON, `{"error": "one clear reason", "code": "<code>"}`
//! (`docs/ref/protocol.md`, Errors). Clients branch on [`ErrorCode`], never on
//! the reason's text.

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// The documented code of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// 400: the body, a name in the path or the request does not parse
    /// (a roster: or is not signed by the key sent with it).
    Malformed,
    /// 401: enrollment token unknown, used or expired.
    Unauthenticated,
    /// 403: the certificate does not allow this.
    Forbidden,
    /// 404: no such fragment, stream, device certificate, roster or route.
    NotFound,
    /// 405: the route exists, with another method.
    MethodNotAllowed,
    /// 408: the headers or the body did not arrive in time.
    Timeout,
    /// 409: other bytes are stored under this sequence, or the chain does
    /// not link (a security event); a roster older than the one stored.
    Conflict,
    /// 411: a body of unknown length where a length is required.
    LengthRequired,
    /// 413: the fragment exceeds the ingest's limit.
    TooLarge,
    /// 429: this device already has as many uploads in progress as allowed.
    TooManyUploads,
    /// 429: over the device's token bucket; `Retry-After` says when to
    /// come back.
    RateLimited,
    /// 429 without a more precise code.
    TooManyRequests,
    /// 503: storage is unavailable; try again.
    Unavailable,
    /// Another 5xx: the ingest failed; try again.
    Internal,
    /// Any other refusal.
    Refused,
    /// A code this client does not know (a newer ingest): treated by its
    /// status.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code a refusal with `status` carries unless a more precise one
    /// is given (`TooManyUploads`, `RateLimited`).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Malformed,
            401 => Self::Unauthenticated,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            408 => Self::Timeout,
            409 => Self::Conflict,
            411 => Self::LengthRequired,
            413 => Self::TooLarge,
            429 => Self::TooManyRequests,
            503 => Self::Unavailable,
            s if s >= 500 => Self::Internal,
            _ => Self::Refused,
        }
    }

    /// The code as it is sent (`too-many-uploads`), and as metrics and the
    /// audit trail label refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Timeout => "timeout",
            Self::Conflict => "conflict",
            Self::LengthRequired => "length-required",
            Self::TooLarge => "too-large",
            Self::TooManyUploads => "too-many-uploads",
            Self::RateLimited => "rate-limited",
            Self::TooManyRequests => "too-many-requests",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Refused => "refused",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One clear reason, for people.
    pub error: String,
    /// The stable code, for programs. Absent from bodies of ingests older
    /// than the codes; read as [`ErrorCode::Unknown`] then.
    #[serde(default = "unknown")]
    pub code: ErrorCode,
}

fn unknown() -> ErrorCode {
    ErrorCode::Unknown
}

impl ErrorBody {
    /// Reads a refusal's body; a body that is not ours (a proxy's page,
    /// plain text) becomes its own trimmed text as the reason.
    pub fn from_response_text(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_else(|_| Self {
            error: text.trim().to_owned(),
            code: ErrorCode::Unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 16] = [
        ErrorCode::Malformed,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Timeout,
        ErrorCode::Conflict,
        ErrorCode::LengthRequired,
        ErrorCode::TooLarge,
        ErrorCode::TooManyUploads,
        ErrorCode::RateLimited,
        ErrorCode::TooManyRequests,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Refused,
        ErrorCode::Unknown,
    ];

    #[test]
    fn every_code_is_sent_as_its_documented_string() -> Result<(), serde_json::Error> {
        for code in ALL {
            assert_eq!(serde_json::to_string(&code)?, format!("\"{code}\""));
            if code != ErrorCode::Unknown {
                assert_eq!(
                    serde_json::from_str::<ErrorCode>(&format!("\"{code}\""))?,
                    code
                );
            }
        }
        Ok(())
    }

    #[test]
    fn statuses_map_to_the_documented_codes() {
        let cases = [
            (400, "malformed"),
            (401, "unauthenticated"),
            (403, "forbidden"),
            (404, "not-found"),
            (405, "method-not-allowed"),
            (408, "timeout"),
            (409, "conflict"),
            (411, "length-required"),
            (413, "too-large"),
            (429, "too-many-requests"),
            (500, "internal"),
            (502, "internal"),
            (503, "unavailable"),
            (418, "refused"),
        ];
        for (status, code) in cases {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            assert_eq!(ErrorCode::for_status(status).as_str(), code, "{status}");
        }
    }

    #[test]
    fn a_newer_or_missing_code_still_reads() -> Result<(), serde_json::Error> {
        let newer: ErrorBody = serde_json::from_str(r#"{"error":"x","code":"from-the-future"}"#)?;
        assert_eq!(newer.code, ErrorCode::Unknown);
        let older: ErrorBody = serde_json::from_str(r#"{"error":"x"}"#)?;
        assert_eq!(older.code, ErrorCode::Unknown);
        Ok(())
    }

    #[test]
    fn a_body_that_is_not_ours_becomes_the_reason() {
        let body = ErrorBody::from_response_text("  502 Bad Gateway\n");
        assert_eq!(body.error, "502 Bad Gateway");
        assert_eq!(body.code, ErrorCode::Unknown);
    }
}
