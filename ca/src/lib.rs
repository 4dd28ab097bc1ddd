//! sealcam-ca, the fleet's certificate authority: it issues the ingest's
//! server certificate, device certificates from CSRs made on the cameras,
//! and consumer certificates; it runs enrollment (one-time tokens, or an
//! operator's approval of a pending request); it revokes and signs the CRL.
//!
//! The ingest calls it through [`FleetCa`] (enrollment, renewal) and its
//! operator commands (`sealcam-ingest ca init`, `device add`, `consumer
//! issue`, ...) are thin wrappers over it. It keeps no audit trail of its
//! own: it returns what it did, and the ingest records that.
//!
//! * [`issue`](FleetCa::renew): `issue.rs`, certificates and CSR checks.
//! * [`enroll`](FleetCa::enroll): `enroll.rs`, tokens, pending requests,
//!   approval, the TPM endorsement-key policy.
//! * [`attestation`](FleetCa::attestation_challenge): `attest.rs`, TPM
//!   attestation at enrollment (a stateless challenge, the evidence checks,
//!   the evidence kept per issued key); [`FleetCa::enroll_request`] is
//!   the whole of `POST /v1/enroll`.
//! * [`revoke`](FleetCa::revoke): `revoke.rs`, revocation and the CRL.
//! * `files.rs`: its files, written durably.
//!
//! On disk, in one directory:
//!
//! ```text
//! <pki>/ca.crt  ca.key          the fleet CA (key 0600)
//! <pki>/server.crt server.key   the ingest's TLS certificate (key 0600)
//! <pki>/issued/<id>/<serial>.crt every certificate issued, for revocation
//! <pki>/enroll/<device>.token    a pending enrollment: SHA-256 of the token, expiry
//! <pki>/pending/<device>.csr     a CSR waiting for an operator's approval
//! <pki>/approved/<device>.crt    the certificate an operator approved, for pickup
//! <pki>/revoked/<device>         the device is revoked (contents: when)
//! <pki>/revoked-serials/<serial> a certificate revoked for good (its name, when)
//! <pki>/crl.pem                  revocation list signed by the CA
//! <pki>/ek/<device>.der          the TPM endorsement-key certificate a device sent
//! <pki>/attest.key               the key of the stateless attestation challenges (0600)
//! <pki>/evidence/device/<device>/<fingerprint>.evidence  TPM evidence per issued key
//! ```
//!
//! Device certificates are issued from a CSR made on the camera, so the
//! device key never leaves it. Each certificate names one identity in a SAN
//! URI (`urn:sealcam:device:<id>` or `urn:sealcam:consumer:<name>`).

use std::path::{Path, PathBuf};

mod attest;
mod enroll;
mod error;
mod files;
mod issue;
mod revoke;

pub use attest::{AttestRefusal, CHALLENGE_KEY, CHALLENGE_VALIDITY_S};
pub use enroll::{Approval, EkPolicy, PendingRequest};
pub use error::{CsrError, EkRefusal, EnrollError, PkiError};
pub use issue::{check_csr, parse_lifetime, write_issued, CheckedCsr};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const CRL: &str = "crl.pem";

/// The fleet CA in its directory (see the layout above).
#[derive(Clone, Debug)]
pub struct FleetCa {
    dir: PathBuf,
}

impl FleetCa {
    /// The CA whose files are in `dir` (made by [`FleetCa::init`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use sealcam_format::Name;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_the_layout_once_with_private_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path(), &["ingest.example".into()], &[]).unwrap();
        for key in [CA_KEY, SERVER_KEY] {
            assert_eq!(mode(&ca.dir().join(key)) & 0o077, 0, "{key}");
        }
        for cert in [CA_CERT, SERVER_CERT] {
            assert!(ca.dir().join(cert).exists(), "{cert}");
        }
        let again = FleetCa::init(tmp.path(), &[], &[]).unwrap_err();
        assert!(matches!(again, PkiError::Exists { .. }), "{again}");
        assert!(again.to_string().ends_with(
            "already exists; refusing to overwrite (use another directory or remove it)"
        ));
        // Nothing but the four files: no temporary left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_revoked_consumer_is_listed_in_the_crl() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path(), &[], &[]).unwrap();
        let alice = Name::new("alice").unwrap();
        let (cert, key) = ca
            .issue_consumer(&alice, &[], Duration::from_secs(3600))
            .unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
        assert!(!ca.is_revoked(&alice));
        assert_eq!(ca.revoke(&alice).unwrap(), 1);
        assert!(ca.is_revoked(&alice));
        let crl = std::fs::read_to_string(tmp.path().join(CRL)).unwrap();
        assert!(crl.contains("BEGIN X509 CRL"), "{crl}");
    }

    /// The serial numbers the CRL lists, hex.
    fn crl_serials(dir: &Path) -> Vec<String> {
        use x509_parser::prelude::FromDer;
        let text = std::fs::read(dir.join(CRL)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&pem.contents)
                .unwrap();
        crl.iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect()
    }

    #[test]
    fn a_revoked_certificate_stays_in_the_crl_when_its_name_is_used_again() {
        use x509_parser::prelude::FromDer;
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path(), &[], &[]).unwrap();
        let alice = Name::new("alice").unwrap();
        let (first, _) = ca
            .issue_consumer(&alice, &[], Duration::from_secs(3600))
            .unwrap();
        let der = sealcam_transport::pem::parse_first_cert(&first).unwrap();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        let serial = hex::encode(cert.raw_serial());
        ca.revoke(&alice).unwrap();
        // The name is used again (as `device add` does for a replacement
        // camera): the mark on the name goes, and the CRL is rewritten.
        std::fs::remove_file(tmp.path().join("revoked/alice")).unwrap();
        assert!(!ca.is_revoked(&alice));
        ca.issue_consumer(&alice, &[], Duration::from_secs(3600))
            .unwrap();
        ca.write_crl().unwrap();
        assert_eq!(crl_serials(tmp.path()), std::slice::from_ref(&serial));
        // Revoked again later: both generations are listed, once each.
        assert_eq!(ca.revoke(&alice).unwrap(), 2);
        let listed = crl_serials(tmp.path());
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&serial));
    }

    #[test]
    fn an_unknown_token_is_refused_and_a_device_without_one_waits() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path(), &[], &[]).unwrap();
        let cam = Name::new("cam1").unwrap();
        let token = ca.add_device(&cam, &[], Duration::from_secs(60)).unwrap();
        assert_eq!(token.len(), 64);
        let policy = EkPolicy::default();
        let refused = ca
            .enroll("not a csr", "x", (&policy, None), Duration::from_secs(60))
            .unwrap_err();
        assert!(matches!(refused, EnrollError::BadCsr(_)), "{refused}");
        assert!(ca.pending_requests().unwrap().is_empty());
    }

    #[test]
    fn lifetimes_parse_with_their_unit() {
        assert_eq!(parse_lifetime("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_lifetime("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_lifetime("30").is_err());
        assert!(parse_lifetime("xd").is_err());
    }

    fn csr(common_name: &str) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_csr_is_checked_for_its_device_name() {
        let checked = check_csr(&csr("cam1")).unwrap();
        assert_eq!(checked.device.as_str(), "cam1");
        let Err(bad) = check_csr(&csr("a b")) else {
            panic!("a b passed");
        };
        assert!(matches!(bad, CsrError::Name(_)), "{bad}");
        assert!(bad.to_string().starts_with("invalid name"), "{bad}");
        let Err(garbage) = check_csr("not a csr") else {
            panic!("garbage passed");
        };
        assert!(matches!(garbage, CsrError::Unreadable(_)), "{garbage}");
    }

    #[test]
    fn approval_needs_the_requests_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path(), &[], &[]).unwrap();
        let policy = EkPolicy::default();
        let waiting = ca.request_approval(&csr("cam1"), (&policy, None)).unwrap();
        let Approval::Pending { fingerprint } = waiting else {
            panic!("{waiting:?}");
        };
        let pending = ca.pending_requests().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].fingerprint, fingerprint);
        let cam1 = Name::new("cam1").unwrap();
        let day = Duration::from_secs(86_400);
        let wrong = ca.approve(&cam1, "00", &[], day).unwrap_err();
        assert!(
            matches!(
                &wrong,
                PkiError::BadCsr {
                    reason: CsrError::Fingerprint { .. },
                    ..
                }
            ),
            "{wrong}"
        );
        ca.approve(&cam1, &fingerprint, &[], day).unwrap();
        assert!(ca.pending_requests().unwrap().is_empty());
    }

    #[test]
    fn a_fleet_that_requires_a_tpm_refuses_a_camera_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path(), &[], &[]).unwrap();
        let policy = EkPolicy {
            required_issuers: vec![b"a maker CA".to_vec()],
        };
        let none = ca
            .request_approval(&csr("cam1"), (&policy, None))
            .unwrap_err();
        assert!(
            matches!(none, EnrollError::Ek(EkRefusal::Missing)),
            "{none}"
        );
        assert!(none
            .to_string()
            .starts_with("this fleet requires a genuine TPM: the camera sent no"));
        let other = ca
            .request_approval(&csr("cam1"), (&policy, Some(b"not a certificate")))
            .unwrap_err();
        assert!(
            matches!(other, EnrollError::Ek(EkRefusal::UnknownMaker)),
            "{other}"
        );
        assert!(ca.pending_requests().unwrap().is_empty());
    }
}
