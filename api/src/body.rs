//! Request and response bodies (JSON), and the listing query.

use serde::{Deserialize, Serialize};

/// `POST /v1/enroll` on the enrollment port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time token from `sealcam-ca device add`; without one the
    /// request is filed for an operator's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The certificate request (PEM), signed by the device key.
    pub csr: String,
    /// The TPM's endorsement-key certificate, base64 DER, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_certificate: Option<String>,
}

/// `POST /v1/renew` on the mutual-TLS port, by a device for itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// The certificate request (PEM) for the same device and key.
    pub csr: String,
}

/// The answer to an enrollment or renewal that issued a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// The device certificate, PEM.
    pub certificate: String,
}

/// The answer (`202`) to an enrollment filed for an operator's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingResponse {
    /// Always `pending`.
    pub status: PendingStatus,
    /// SHA-256 of the key, for the operator to compare with what the camera
    /// shows (`sealcamd identity`).
    pub fingerprint: String,
}

/// The one status of a [`PendingResponse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PendingStatus {
    Pending,
}

impl PendingResponse {
    pub fn new(fingerprint: String) -> Self {
        Self {
            status: PendingStatus::Pending,
            fingerprint,
        }
    }
}

/// What became of an upload the ingest accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadStatus {
    /// Stored durably now (`201`).
    Stored,
    /// The same bytes were stored before (`200`).
    AlreadyStored,
}

impl UploadStatus {
    /// The status as it is sent, and as the metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::AlreadyStored => "already-stored",
        }
    }
}

/// The answer to an accepted upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceipt {
    pub status: UploadStatus,
    pub sequence: u64,
    /// The hash of the fragment's signed manifest.
    pub manifest: String,
}

/// The role a certificate gives its holder, as `whoami` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    Device,
    Consumer,
}

/// `GET /v1/whoami`: who the ingest takes the caller for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub role: RoleName,
    pub name: String,
    /// Devices: the streams the certificate allows (empty: any of its own).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Consumers: the `device/stream` pairs the certificate may read
    /// (empty: all).
    #[serde(default)]
    pub reads: Vec<String>,
    /// The certificate's serial number.
    #[serde(default)]
    pub serial: String,
}

/// One entry of `GET /v1/streams`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub device: String,
    pub stream: String,
}

/// One entry of a fragment listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentEntry {
    pub sequence: u64,
    #[serde(default)]
    pub start_unix_ns: u64,
    #[serde(default)]
    pub end_unix_ns: u64,
    #[serde(default)]
    pub frame_count: u32,
    /// The stored size of the sealed fragment.
    #[serde(default)]
    pub bytes: u64,
}

/// Longest long poll of the fragment list, in seconds.
pub const MAX_WAIT_S: u64 = 60;

/// The query of a fragment listing; every parameter optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentQuery {
    /// Only fragments that end after this time (Unix ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ns: Option<u64>,
    /// Only fragments that start before this time (Unix ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ns: Option<u64>,
    /// Only fragments with a sequence number above this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Only fragments with a sequence number at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    /// Only fragments with a sequence number at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    /// Long poll: if nothing matches, wait up to this many seconds (at most
    /// [`MAX_WAIT_S`]) for a fragment that does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_s: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrollment_without_token_or_ek_sends_only_the_csr() -> Result<(), serde_json::Error> {
        let req = EnrollRequest {
            csr: "CSR".into(),
            ..EnrollRequest::default()
        };
        assert_eq!(serde_json::to_string(&req)?, r#"{"csr":"CSR"}"#);
        Ok(())
    }

    #[test]
    fn bodies_are_sent_as_documented() -> Result<(), serde_json::Error> {
        let pending = serde_json::to_value(PendingResponse::new("ab".into()))?;
        assert_eq!(
            pending,
            serde_json::json!({"status": "pending", "fingerprint": "ab"})
        );
        let receipt = serde_json::to_value(UploadReceipt {
            status: UploadStatus::AlreadyStored,
            sequence: 7,
            manifest: "h".into(),
        })?;
        assert_eq!(
            receipt,
            serde_json::json!({"status": "already-stored", "sequence": 7, "manifest": "h"})
        );
        let who: WhoAmI = serde_json::from_value(serde_json::json!({
            "role": "device", "name": "cam1", "streams": ["front"], "reads": [], "serial": "01"
        }))?;
        assert_eq!(who.role, RoleName::Device);
        Ok(())
    }

    #[test]
    fn an_empty_query_has_no_parameters() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&FragmentQuery::default())?, "{}");
        Ok(())
    }
}
