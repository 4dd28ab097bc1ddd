//! The CA service's protocol: what an ingest asks `sealcam-ca serve`
//! (`docs/ref/protocol.md`, "The CA service"). The ingest holds no CA key;
//! it passes enrollment through unchanged and asks for renewals and the
//! revocation list.

use serde::{Deserialize, Serialize};

/// Enrollment and every enrollment sub-step (`/v1/enroll`,
/// `/v1/enroll/<step>`): the ingest passes a `POST` under this path from
/// its enrollment port to the CA service as it is, body unchanged, and the
/// CA's answer back as it is.
pub const ENROLL_PATH: &str = "/v1/enroll";

/// `POST`: the TPM attestation challenge, a [`crate::ChallengeRequest`]
/// answered with a [`crate::ChallengeResponse`]; an enrollment sub-step,
/// passed through like enrollment.
pub const CHALLENGE_PATH: &str = "/v1/enroll/challenge";

/// `POST`: a [`CaRenewRequest`], answered with a
/// [`crate::CertificateResponse`].
pub const RENEW_PATH: &str = "/v1/renew";

/// `GET`: the revocation list, PEM, signed by the CA.
pub const CRL_PATH: &str = "/v1/crl";

/// The header in which an ingest names the address of the camera whose
/// request it passes on, for the CA's log.
pub const PEER_HEADER: &str = "x-sealcam-peer";

/// Whether a path is enrollment or one of its sub-steps.
pub fn is_enroll_path(path: &str) -> bool {
    path == ENROLL_PATH
        || path
            .strip_prefix(ENROLL_PATH)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// `POST /v1/renew` to the CA service: a device's renewal, with the
/// certificate the device presented on its connection to the ingest. The
/// CA checks that certificate itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRenewRequest {
    /// The device's certificate request (PEM), as the device sent it.
    pub csr: String,
    /// The certificate the device authenticated with (PEM).
    pub certificate: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_and_its_steps_are_passed_on_and_nothing_else() {
        assert!(is_enroll_path("/v1/enroll"));
        assert!(is_enroll_path("/v1/enroll/challenge"));
        assert!(!is_enroll_path("/v1/enroll/"));
        assert!(!is_enroll_path("/v1/enrollx"));
        assert!(!is_enroll_path("/v1/renew"));
        assert!(!is_enroll_path("/v1/crl"));
    }
}
