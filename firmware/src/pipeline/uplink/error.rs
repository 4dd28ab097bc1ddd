//! How one upload failed, as types the uplink branches on: the ingest was
//! not reached (and the TLS error says why), or it refused with a status
//! and a stable [`ErrorCode`], or the camera could not send at all. The
//! uplink never reads an error's text to decide what to do.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use rustls::AlertDescription;
use sealcam_api::ErrorCode;

/// A failed attempt, worth retrying after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No answer from the ingest: the connection, TLS or a timeout failed.
    #[error("cannot reach the ingest at {base}: {detail}; fix: {}", .failure.fix())]
    Unreachable {
        base: String,
        /// The error's whole cause chain, for people.
        detail: String,
        failure: ConnectFailure,
    },
    /// The ingest answered with a refusal that may pass (`429`, `5xx`...).
    #[error("ingest answered {status}: {reason}")]
    Refused {
        status: StatusCode,
        code: ErrorCode,
        reason: String,
        /// The ingest's `Retry-After`, capped.
        retry_after: Option<Duration>,
    },
    /// The ingest refused a fragment as if for good; tried again until
    /// `upload.refusal_tries`, then the fragment is held.
    #[error("ingest refused fragment {sequence} (refusal {tries}): {reason}")]
    Rejected {
        sequence: u64,
        reason: String,
        tries: u32,
    },
    /// The link probe (`whoami`) was refused.
    #[error("ingest answered {status} to whoami")]
    ProbeRefused { status: StatusCode },
    /// The spooled file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The task sending a live upload failed.
    #[error("live upload: {0}")]
    LiveTask(#[from] tokio::task::JoinError),
    /// The ingest answered a live upload before its body ended.
    #[error("the ingest answered before the fragment ended")]
    AnsweredEarly,
}

/// What kind of failure an [`UploadError`] is, for rate-limited logging:
/// errors of one kind differ only in detail (a sequence number, a socket
/// error), so a warning is logged once per kind and outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Unreachable(ConnectFailure),
    Refused(StatusCode),
    ProbeRefused(StatusCode),
    Rejected,
    Read,
    LiveTask,
    AnsweredEarly,
}

impl UploadError {
    /// The failure for `e`, a request to the ingest at `base` that got no
    /// answer.
    pub fn unreachable(base: &str, e: &reqwest::Error) -> Self {
        Self::Unreachable {
            base: base.to_owned(),
            detail: sealcam_base::error_chain(e),
            failure: ConnectFailure::of(e),
        }
    }

    /// Its kind (see [`FailureKind`]).
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Unreachable { failure, .. } => FailureKind::Unreachable(*failure),
            Self::Refused { status, .. } => FailureKind::Refused(*status),
            Self::ProbeRefused { status } => FailureKind::ProbeRefused(*status),
            Self::Rejected { .. } => FailureKind::Rejected,
            Self::Read { .. } => FailureKind::Read,
            Self::LiveTask(_) => FailureKind::LiveTask,
            Self::AnsweredEarly => FailureKind::AnsweredEarly,
        }
    }

    /// How long the ingest asked the camera to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the ingest said this device has too many uploads open.
    pub fn too_many_uploads(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: ErrorCode::TooManyUploads,
                ..
            }
        )
    }
}

/// Why a connection to the ingest failed, from the TLS error in the
/// failure's cause chain (the alert the ingest sent, or what was wrong with
/// its certificate), or else from whether it timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The ingest's certificate did not verify against `upload.ca`.
    ServerCertificate,
    /// The ingest refused this camera's certificate as revoked.
    Revoked,
    /// The ingest refused this camera's certificate otherwise (another
    /// fleet's, expired).
    CertificateRefused,
    /// Nothing answered in time.
    TimedOut,
    /// Anything else: nothing listening, the network.
    NoAnswer,
}

impl ConnectFailure {
    /// Why the request `e` got no answer.
    pub fn of(e: &reqwest::Error) -> Self {
        Self::from_tls(tls_error(e).as_ref(), e.is_timeout())
    }

    /// Why a handshake or read of the camera's own failed with `e`.
    pub fn of_io(e: &std::io::Error) -> Self {
        Self::from_tls(
            tls_error(e).as_ref(),
            e.kind() == std::io::ErrorKind::TimedOut,
        )
    }

    fn from_tls(tls: Option<&rustls::Error>, timed_out: bool) -> Self {
        use AlertDescription as A;
        match tls {
            Some(rustls::Error::InvalidCertificate(_)) => Self::ServerCertificate,
            Some(rustls::Error::AlertReceived(A::CertificateRevoked)) => Self::Revoked,
            Some(rustls::Error::AlertReceived(a)) if CERTIFICATE_ALERTS.contains(a) => {
                Self::CertificateRefused
            }
            _ if timed_out => Self::TimedOut,
            _ => Self::NoAnswer,
        }
    }

    /// What to do about it: for the log and for `sealcamd check`.
    pub fn fix(self) -> &'static str {
        match self {
            Self::ServerCertificate => "upload.ca is not the CA that signed the ingest's certificate",
            Self::Revoked => "the ingest revoked this camera's certificate; ask the operator, then enroll again",
            Self::CertificateRefused => "the ingest refused this camera's certificate (another fleet, expired or revoked); enroll again",
            Self::TimedOut => "nothing answered in time: check upload.url, the network and firewalls",
            Self::NoAnswer => "check upload.url, that sealcam-ingest runs there, and the network",
        }
    }
}

/// The alerts by which a server refuses a client's certificate.
const CERTIFICATE_ALERTS: [AlertDescription; 10] = [
    AlertDescription::CertificateRevoked,
    AlertDescription::BadCertificate,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateUnknown,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateUnobtainable,
    AlertDescription::BadCertificateStatusResponse,
    AlertDescription::BadCertificateHashValue,
    AlertDescription::CertificateRequired,
];

/// The rustls error in `e`'s cause chain, if any. It travels inside an
/// `std::io::Error`, whose `source()` skips the error it wraps, so each
/// I/O error is opened by hand. On an HTTP/2 connection, h2 keeps an I/O
/// error only as its kind and message, and hyper rebuilds an I/O error
/// from those: there the rustls error is recovered from the message,
/// compared whole with what rustls writes for each certificate alert (the
/// one place text is read, because h2 dropped the type).
fn tls_error(e: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let inner = io.get_ref().and_then(|inner| {
                let inner: &(dyn StdError + 'static) = inner;
                tls_error(inner)
            });
            if let Some(tls) = inner.or_else(|| alert_written_as(&io.to_string())) {
                return Some(tls);
            }
        }
        next = err.source();
    }
    None
}

/// The certificate alert whose rustls error reads `message`, if any.
fn alert_written_as(message: &str) -> Option<rustls::Error> {
    CERTIFICATE_ALERTS
        .into_iter()
        .map(rustls::Error::AlertReceived)
        .find(|tls| tls.to_string() == message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_error_inside_an_io_error_is_found() {
        let alert = rustls::Error::AlertReceived(AlertDescription::CertificateRevoked);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert.clone());
        assert_eq!(tls_error(&io), Some(alert.clone()));
        assert_eq!(
            ConnectFailure::from_tls(tls_error(&io).as_ref(), false),
            ConnectFailure::Revoked
        );
        assert_eq!(ConnectFailure::of_io(&io), ConnectFailure::Revoked);
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_error(&other), None);
        assert_eq!(ConnectFailure::of_io(&other), ConnectFailure::NoAnswer);
        // What an HTTP/2 connection keeps of it: the kind and the message.
        let flattened = std::io::Error::new(std::io::ErrorKind::InvalidData, alert.to_string());
        assert_eq!(tls_error(&flattened), Some(alert));
    }

    #[test]
    fn tls_errors_map_to_their_fix() {
        let unknown_issuer =
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let cases = [
            (
                Some(unknown_issuer),
                false,
                ConnectFailure::ServerCertificate,
            ),
            (
                Some(rustls::Error::AlertReceived(
                    AlertDescription::BadCertificate,
                )),
                false,
                ConnectFailure::CertificateRefused,
            ),
            (
                Some(rustls::Error::AlertReceived(
                    AlertDescription::CertificateExpired,
                )),
                true,
                ConnectFailure::CertificateRefused,
            ),
            (
                Some(rustls::Error::AlertReceived(
                    AlertDescription::HandshakeFailure,
                )),
                true,
                ConnectFailure::TimedOut,
            ),
            (None, false, ConnectFailure::NoAnswer),
        ];
        for (tls, timed_out, failure) in cases {
            assert_eq!(
                ConnectFailure::from_tls(tls.as_ref(), timed_out),
                failure,
                "{tls:?}"
            );
        }
    }

    #[test]
    fn failures_of_one_kind_differ_only_in_detail() {
        let cut = |detail: &str, failure| UploadError::Unreachable {
            base: "https://i:8443".into(),
            detail: detail.into(),
            failure,
        };
        let reset = cut("connection reset", ConnectFailure::NoAnswer);
        let closed = cut("connection closed", ConnectFailure::NoAnswer);
        let revoked = cut(
            "received fatal alert: CertificateRevoked",
            ConnectFailure::Revoked,
        );
        assert_eq!(reset.kind(), closed.kind());
        assert_ne!(reset.kind(), revoked.kind());
        assert_eq!(
            revoked.to_string(),
            "cannot reach the ingest at https://i:8443: received fatal alert: CertificateRevoked; fix: the ingest revoked this camera's certificate; ask the operator, then enroll again"
        );
        let refused = |reason: &str| UploadError::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::Unavailable,
            reason: reason.into(),
            retry_after: None,
        };
        assert_eq!(refused("storage down").kind(), refused("disk full").kind());
        assert_eq!(
            refused("storage down").to_string(),
            "ingest answered 503 Service Unavailable: storage down"
        );
    }
}
