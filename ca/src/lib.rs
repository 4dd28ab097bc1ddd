//! sealcam-ca, the fleet's certificate authority: it issues device
//! certificates from CSRs made on the cameras, consumer certificates and
//! the ingest instances' certificates; it runs enrollment (one-time tokens,
//! or an operator's approval of a pending request); it revokes and signs
//! the CRL.
//!
//! It runs as its own process, `sealcam-ca serve` ([`service`]), under its
//! own user: the ingest, which faces the internet, holds no CA key and asks
//! the service to enroll and renew, and fetches the CRL from it. The
//! operator commands (`sealcam-ca init`, `device add`, `consumer issue`,
//! `ingest issue`, ...) are thin wrappers over this library, run as the
//! CA's user (`docs/design/device-identity.md`).
//!
//! * [`issue`](FleetCa::renew): `issue.rs`, certificates and CSR checks.
//! * [`enroll`](FleetCa::enroll): `enroll.rs`, tokens, pending requests,
//!   approval, the TPM endorsement-key policy.
//! * [`attestation`](FleetCa::attestation_challenge): `attest.rs`, TPM
//!   attestation at enrollment (a stateless challenge, the evidence checks,
//!   the evidence kept per issued key); [`FleetCa::enroll_request`] is
//!   the whole of `POST /v1/enroll`.
//! * [`renew_presented`](FleetCa::renew_presented): `renew.rs`, a device's
//!   renewal asked for by an ingest, checked here.
//! * [`revoke`](FleetCa::revoke): `revoke.rs`, revocation and the CRL.
//! * [`service`]: the service the ingests ask (Unix socket or mutual TLS).
//! * `pending.rs`: requests without a token, capped and rate-limited,
//!   outside the CA's directory.
//! * `audit.rs`: the CA's own signed, hash-chained audit log of every PKI
//!   operation, wherever it runs.
//! * `files.rs`: its files, written durably.
//!
//! On disk, in one directory (`/var/lib/sealcam-ca`, mode 0700):
//!
//! ```text
//! <ca>/ca.crt  ca.key                    the fleet CA (key 0600)
//! <ca>/issued/<role>/<name>/<serial>.crt every certificate issued, per role
//!                                        (device, consumer, ingest), for revocation
//! <ca>/enroll/<device>.token             a pending enrollment: SHA-256 of the token, expiry
//! <ca>/approved/<device>.crt             the certificate an operator approved, for pickup
//! <ca>/revoked/<role>/<name>             the identity is revoked (contents: when)
//! <ca>/revoked-serials/<serial>          a certificate revoked for good (its name, when)
//! <ca>/crl.pem  crl.number                revocation list signed by the CA, its number
//! <ca>/ek/<device>.der                   the TPM endorsement-key certificate a device sent
//!                                        (recorded once a token or an approval admits it)
//! <ca>/attest.key                      the key of the stateless attestation challenges (0600)
//! <ca>/audit.key  audit.pub              the key of the CA's audit log (0600), its public half
//! <ca>/audit/<n>.json                    one signed record per PKI operation (`audit.rs`)
//! <ca>/evidence/device/<device>/<fingerprint>.evidence  TPM evidence per issued key
//! ```
//!
//! Requests without a token, which anyone reaching an enrollment port can
//! make, live outside it (`pending.rs`):
//!
//! ```text
//! <ca>.pending/<device>.<fingerprint>.csr  a CSR waiting for an operator's approval
//! ```
//!
//! Device certificates are issued from a CSR made on the camera, so the
//! device key never leaves it. Each certificate names one identity in a SAN
//! URI (`urn:sealcam:device:<id>`, `urn:sealcam:consumer:<name>` or
//! `urn:sealcam:ingest:<name>`).

use std::path::{Path, PathBuf};

mod attest;
mod audit;
mod enroll;
mod error;
mod files;
mod issue;
mod pending;
mod renew;
mod revoke;
pub mod service;

pub use attest::{AttestRefusal, CHALLENGE_KEY, CHALLENGE_VALIDITY_S};
pub use audit::{load_audit_pub, verify_log, CaRecord, LogSummary, CA_AUDIT_KEY, CA_AUDIT_PUB};
pub use enroll::{Approval, EkPolicy, PendingRequest};
pub use error::{CsrError, EkRefusal, EnrollError, PkiError, RenewError};
pub use issue::{check_csr, parse_lifetime, replace_issued, write_issued, CheckedCsr};
pub use pending::{default_pending_dir, PendingLimits, PendingQueue, PENDING_TTL_S};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CRL: &str = "crl.pem";

pub use sealcam_transport::Role;

/// A role's directory under `issued/` and `revoked/`: each role has its
/// own name space.
pub(crate) fn role_dir(role: Role) -> &'static str {
    match role {
        Role::Device => "device",
        Role::Consumer => "consumer",
    }
}

/// The fleet CA in its directory (see the layout above).
#[derive(Clone, Debug)]
pub struct FleetCa {
    dir: PathBuf,
    /// Where requests without a token wait (`pending.rs`), outside `dir`.
    pending_dir: PathBuf,
    /// Who acts through this handle, as the CA's audit log records it.
    actor: String,
}

impl FleetCa {
    /// The CA whose files are in `dir` (made by [`FleetCa::init`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            pending_dir: default_pending_dir(&dir),
            dir,
            actor: "operator".into(),
        }
    }

    /// Records this handle's operations in the CA's audit log as `actor`
    /// (`operator:USER`, `ca-service`).
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Who acts through this handle.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Requests without a token wait in `pending_dir` instead of the
    /// default, `<dir>.pending`.
    #[must_use]
    pub fn with_pending_dir(mut self, pending_dir: impl Into<PathBuf>) -> Self {
        self.pending_dir = pending_dir.into();
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where requests without a token wait.
    pub fn pending_dir(&self) -> &Path {
        &self.pending_dir
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
        let ca = FleetCa::init(tmp.path()).unwrap();
        assert_eq!(mode(&ca.dir().join(CA_KEY)) & 0o077, 0);
        assert_eq!(mode(&ca.dir().join(CA_AUDIT_KEY)) & 0o077, 0);
        for file in [CA_CERT, CRL, "crl.number", CA_AUDIT_PUB, "audit"] {
            assert!(ca.dir().join(file).exists(), "{file}");
        }
        let again = FleetCa::init(tmp.path()).unwrap_err();
        assert!(matches!(again, PkiError::Exists { .. }), "{again}");
        assert!(again.to_string().ends_with(
            "already exists; refusing to overwrite (use another directory or remove it)"
        ));
        // Nothing but the four files, the audit key pair and the audit
        // log: no temporary left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 7);
        // The log: the CA made, then its first CRL.
        let log = verify_log(
            tmp.path(),
            &load_audit_pub(&tmp.path().join(CA_AUDIT_PUB)).unwrap(),
        );
        assert!(log.problems.is_empty(), "{:?}", log.problems);
        let actions: Vec<&str> = log.records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["init", "crl"]);
    }

    #[test]
    fn a_revoked_device_gets_no_new_certificate_until_it_is_added_again() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path()).unwrap();
        let cam1 = Name::new("cam1").unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cam1");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let day = Duration::from_secs(86_400);
        ca.renew(check_csr(&csr).unwrap(), &[], day).unwrap();
        ca.revoke(Role::Device, &cam1).unwrap();
        // Issuing checks revocation under the lock revocation takes, so a
        // renewal racing a revocation cannot leave a certificate the CRL
        // does not list.
        let refused = ca.renew(check_csr(&csr).unwrap(), &[], day).unwrap_err();
        assert!(matches!(refused, PkiError::Revoked { .. }), "{refused}");
        assert!(refused.to_string().contains("sealcam-ca device add cam1"));
    }

    #[test]
    fn a_revoked_consumer_is_listed_in_the_crl() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path()).unwrap();
        let alice = Name::new("alice").unwrap();
        let (cert, key) = ca
            .issue_consumer(&alice, &[], Duration::from_secs(3600))
            .unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
        assert!(!ca.is_revoked(Role::Consumer, &alice));
        assert_eq!(ca.revoke(Role::Consumer, &alice).unwrap(), 1);
        assert!(ca.is_revoked(Role::Consumer, &alice));
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
        let ca = FleetCa::init(tmp.path()).unwrap();
        let alice = Name::new("alice").unwrap();
        let (first, _) = ca
            .issue_consumer(&alice, &[], Duration::from_secs(3600))
            .unwrap();
        let der = sealcam_transport::pem::parse_first_cert(&first).unwrap();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        let serial = hex::encode(cert.raw_serial());
        ca.revoke(Role::Consumer, &alice).unwrap();
        // The name is used again (as `device add` does for a replacement
        // camera): the mark on the name goes, and the CRL is rewritten.
        std::fs::remove_file(tmp.path().join("revoked/consumer/alice")).unwrap();
        assert!(!ca.is_revoked(Role::Consumer, &alice));
        ca.issue_consumer(&alice, &[], Duration::from_secs(3600))
            .unwrap();
        ca.write_crl().unwrap();
        assert_eq!(crl_serials(tmp.path()), std::slice::from_ref(&serial));
        // Revoked again later: both generations are listed, once each.
        assert_eq!(ca.revoke(Role::Consumer, &alice).unwrap(), 2);
        let listed = crl_serials(tmp.path());
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&serial));
    }

    /// The serial number of a PEM certificate, hex.
    fn serial_of(pem_text: &str) -> String {
        use x509_parser::prelude::FromDer;
        let der = sealcam_transport::pem::parse_first_cert(pem_text).unwrap();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        hex::encode(cert.raw_serial())
    }

    #[test]
    fn a_consumer_and_a_device_of_one_name_are_revoked_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path()).unwrap();
        let front = Name::new("front").unwrap();
        let day = Duration::from_secs(86_400);
        let (consumer, _) = ca.issue_consumer(&front, &[], day).unwrap();
        let device = ca
            .renew(check_csr(&csr("front")).unwrap(), &[], day)
            .unwrap();
        assert_eq!(ca.revoke(Role::Consumer, &front).unwrap(), 1);
        assert!(ca.is_revoked(Role::Consumer, &front));
        assert!(!ca.is_revoked(Role::Device, &front));
        assert_eq!(crl_serials(tmp.path()), vec![serial_of(&consumer)]);
        // Adding the device again lifts nothing of the consumer's.
        ca.add_device(&front, &[], day).unwrap();
        assert!(ca.is_revoked(Role::Consumer, &front));
        assert_eq!(ca.revoke(Role::Device, &front).unwrap(), 1);
        let mut both = vec![serial_of(&consumer), serial_of(&device)];
        both.sort();
        assert_eq!(crl_serials(tmp.path()), both);
    }

    #[test]
    fn a_device_added_again_stays_revoked_in_a_directory_from_before_the_role_split() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path()).unwrap();
        // The old layout: issued/<name>/, revoked/<name>.
        let cam = Name::new("cam1").unwrap();
        let day = Duration::from_secs(86_400);
        let cert = ca
            .renew(check_csr(&csr("cam1")).unwrap(), &[], day)
            .unwrap();
        let serial = serial_of(&cert);
        std::fs::create_dir_all(tmp.path().join("issued/cam1")).unwrap();
        std::fs::rename(
            tmp.path().join(format!("issued/device/cam1/{serial}.crt")),
            tmp.path().join(format!("issued/cam1/{serial}.crt")),
        )
        .unwrap();
        std::fs::create_dir_all(tmp.path().join("revoked")).unwrap();
        std::fs::write(tmp.path().join("revoked/cam1"), "revoked_unix=1\n").unwrap();
        assert!(ca.is_revoked(Role::Device, &cam));
        ca.write_crl().unwrap();
        assert_eq!(crl_serials(tmp.path()), vec![serial.clone()]);
        ca.add_device(&cam, &[], day).unwrap();
        assert!(!ca.is_revoked(Role::Device, &cam));
        ca.write_crl().unwrap();
        assert_eq!(crl_serials(tmp.path()), vec![serial]);
    }

    #[test]
    fn the_crl_is_re_signed_only_outside_half_to_all_of_its_lifetime() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path()).unwrap();
        let info = || {
            sealcam_transport::crl::crl_info_of_pem(&std::fs::read(tmp.path().join(CRL)).unwrap())
                .unwrap()
        };
        let week = crate::revoke::CRL_LIFETIME;
        // init's list is current for a week: nothing to do.
        let first = info();
        assert_eq!(ca.refresh_crl(week).unwrap(), None);
        // A service that signs for an hour re-signs the week-long one...
        let hour = Duration::from_secs(3600);
        let number = ca.refresh_crl(hour).unwrap().unwrap();
        let second = info();
        assert_eq!(second.number, number);
        assert!(second.number > first.number);
        let left = second.next_update_unix.unwrap() - crate::enroll::unix_now() as i64;
        assert!((3590..=3600).contains(&left), "{left}");
        // ...and then leaves it until half of the hour is gone.
        assert_eq!(ca.refresh_crl(hour).unwrap(), None);
        assert!(!second.expired_at(crate::enroll::unix_now() as i64));
        assert!(second.expired_at(second.next_update_unix.unwrap()));
    }

    #[test]
    fn each_crl_has_a_higher_number_and_is_checked_against_its_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path()).unwrap();
        let ca_der = sealcam_transport::pem::parse_first_cert(
            &std::fs::read_to_string(tmp.path().join(CA_CERT)).unwrap(),
        )
        .unwrap();
        let first = std::fs::read(tmp.path().join(CRL)).unwrap();
        let n1 = sealcam_transport::crl::check_crl(&first, &ca_der)
            .unwrap()
            .number;
        ca.write_crl().unwrap();
        ca.write_crl().unwrap();
        let third = std::fs::read(tmp.path().join(CRL)).unwrap();
        let n3 = sealcam_transport::crl::check_crl(&third, &ca_der)
            .unwrap()
            .number;
        assert!(n3 >= n1 + 2, "{n1} then {n3}");
        // Another fleet's CA did not sign it.
        let other = tempfile::tempdir().unwrap();
        FleetCa::init(other.path()).unwrap();
        let other_der = sealcam_transport::pem::parse_first_cert(
            &std::fs::read_to_string(other.path().join(CA_CERT)).unwrap(),
        )
        .unwrap();
        let refused = sealcam_transport::crl::check_crl(&third, &other_der).unwrap_err();
        assert!(
            matches!(refused, sealcam_transport::crl::CrlError::Issuer { .. }),
            "{refused}"
        );
    }

    #[test]
    fn an_unknown_token_is_refused_and_a_device_without_one_waits() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::init(tmp.path())
            .unwrap()
            .with_pending_dir(tmp.path().join("p"));
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
        let ca = FleetCa::init(tmp.path())
            .unwrap()
            .with_pending_dir(tmp.path().join("p"));
        let queue = PendingQueue::new(ca.pending_dir().into(), PendingLimits::default());
        let policy = EkPolicy::default();
        let waiting = ca
            .request_approval(&csr("cam1"), (&policy, None), &queue)
            .unwrap();
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
        let ca = FleetCa::init(tmp.path())
            .unwrap()
            .with_pending_dir(tmp.path().join("p"));
        let queue = PendingQueue::new(ca.pending_dir().into(), PendingLimits::default());
        let policy = EkPolicy {
            required_issuers: vec![b"a maker CA".to_vec()],
        };
        let none = ca
            .request_approval(&csr("cam1"), (&policy, None), &queue)
            .unwrap_err();
        assert!(
            matches!(none, EnrollError::Ek(EkRefusal::Missing)),
            "{none}"
        );
        assert!(none
            .to_string()
            .starts_with("this fleet requires a genuine TPM: the camera sent no"));
        let other = ca
            .request_approval(&csr("cam1"), (&policy, Some(b"not a certificate")), &queue)
            .unwrap_err();
        assert!(
            matches!(other, EnrollError::Ek(EkRefusal::UnknownMaker)),
            "{other}"
        );
        assert!(ca.pending_requests().unwrap().is_empty());
    }
}
