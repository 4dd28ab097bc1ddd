//! Issuing certificates: the CA and the server certificate at `init`,
//! device certificates from CSRs made on the camera (its key never leaves
//! it), consumer certificates with a new key; every one recorded under
//! `issued/` for revocation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sealcam_format::Name;
use sealcam_transport::Identity;
use x509_parser::prelude::FromDer;

use crate::files::{create_dir, read, replace, write_new};
use crate::{role_dir, CsrError, FleetCa, PkiError, Role, CA_CERT, CA_KEY};

/// Sets the validity window and a random serial number.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time_now();
    // Backdated for clock skew: 5 minutes, or a quarter of a short lifetime.
    let skew = Duration::from_secs(300).min(lifetime / 4);
    params.not_before = now - skew;
    params.not_after = now + lifetime;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7F; // positive
    serial[0] |= 0x01; // no leading zero byte
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

pub use sealcam_base::parse_lifetime;

pub(crate) fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl FleetCa {
    /// Creates the fleet CA in `dir` (its key `0600`) and its first,
    /// empty, revocation list.
    pub fn init(dir: impl Into<PathBuf>) -> Result<Self, PkiError> {
        let fleet = Self::new(dir);
        let dir = fleet.dir();
        create_dir(dir)?;
        if dir.join(CA_KEY).exists() {
            return Err(PkiError::Exists {
                path: dir.join(CA_KEY),
            });
        }
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut ca = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // A unique name per CA, so that certificates of two fleets never chain
        // by name alone.
        let id: [u8; 4] = rand::random();
        dn.push(
            DnType::CommonName,
            format!("sealcam fleet CA {}", hex::encode(id)),
        );
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca, Duration::from_secs(3650 * 86_400));
        let ca_cert = ca.self_signed(&ca_key)?;
        write_new(&dir.join(CA_KEY), &ca_key.serialize_pem(), 0o600)?;
        write_new(&dir.join(CA_CERT), &ca_cert.pem(), 0o644)?;
        fleet.audit("init", None, Some(format!("fleet CA {}", hex::encode(id))))?;
        fleet.write_crl()?;
        Ok(fleet)
    }

    /// Issues an ingest instance its certificate with a new key: a server
    /// certificate for `server_names` and `server_ips`, and the client
    /// certificate it presents to the CA service, which accepts only
    /// certificates naming an ingest (`urn:sealcam:ingest:<name>`).
    /// Returns (certificate PEM, key PEM).
    pub fn issue_ingest(
        &self,
        name: &Name,
        server_names: &[String],
        server_ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<(String, String), PkiError> {
        let dir = self.dir.as_path();
        let ca = load_ca(dir)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut server = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("sealcam ingest {name}"));
        server.distinguished_name = dn;
        for n in server_names {
            server
                .subject_alt_names
                .push(SanType::DnsName(n.clone().try_into()?));
        }
        for ip in server_ips {
            server.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        server.subject_alt_names.push(SanType::URI(
            format!("{}{name}", sealcam_transport::identity::INGEST_URI_PREFIX).try_into()?,
        ));
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut server, lifetime);
        let cert = server.signed_by(&key, &ca.cert, &ca.key)?;
        record_issued(dir, INGEST_ROLE_DIR, name, &cert)?;
        self.audit(
            "ingest-issue",
            Some(name.as_str()),
            Some(format!(
                "serial {}; valid {} s",
                serial_of(&cert),
                lifetime.as_secs()
            )),
        )?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The CA service's own TLS server certificate, with a new key: made
    /// at each start, kept in memory only, valid a year. Returns (cert
    /// DER, PKCS#8 key DER).
    pub(crate) fn issue_service(
        &self,
        names: &[String],
        ips: &[IpAddr],
    ) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
        let ca = load_ca(self.dir.as_path())?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sealcam CA service");
        params.distinguished_name = dn;
        for n in names {
            params
                .subject_alt_names
                .push(SanType::DnsName(n.clone().try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, Duration::from_secs(365 * 86_400));
        let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }

    /// Issues a device certificate for a checked CSR (a renewal, an
    /// enrollment, an approval), allowed to write `streams`
    /// (empty: any of its own), and records it.
    pub fn renew(
        &self,
        csr: CheckedCsr,
        streams: &[Name],
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let dir = self.dir.as_path();
        // Checked again under the lock that revocation takes: either the
        // revocation is recorded first and this refuses, or this
        // certificate is recorded first and the revocation lists it.
        let _lock = crate::files::lock_dir(dir)?;
        if self.is_revoked(Role::Device, &csr.device) {
            return Err(PkiError::Revoked { device: csr.device });
        }
        let ca = load_ca(dir)?;
        let mut identity = Identity::device(csr.device.clone());
        identity.streams = streams.to_vec();
        let params = leaf_params(&identity, lifetime)?;
        let cert = CertificateSigningRequestParams {
            params,
            public_key: csr.csr.public_key,
        }
        .signed_by(&ca.cert, &ca.key)?;
        record_issued(dir, role_dir(Role::Device), &csr.device, &cert)?;
        self.audit(
            "device-certificate",
            Some(csr.device.as_str()),
            Some(format!(
                "serial {}; streams: {}; valid {} s",
                serial_of(&cert),
                names_or(streams.iter().map(Name::as_str), "any of its own"),
                lifetime.as_secs()
            )),
        )?;
        Ok(cert.pem())
    }

    /// Issues a device certificate from a CSR file (operator-approved path).
    pub fn issue_device(
        &self,
        csr_path: &Path,
        streams: &[Name],
        lifetime: Duration,
    ) -> Result<(Name, String), PkiError> {
        let csr = check_csr(&read(csr_path)?).map_err(|reason| PkiError::BadCsr {
            path: csr_path.to_owned(),
            reason,
        })?;
        let device = csr.device.clone();
        Ok((device, self.renew(csr, streams, lifetime)?))
    }

    /// Issues a consumer certificate with a new key. Returns (cert PEM, key PEM).
    pub fn issue_consumer(
        &self,
        name: &Name,
        reads: &[(Name, Name)],
        lifetime: Duration,
    ) -> Result<(String, String), PkiError> {
        self.consumer_certificate("consumer-issue", name, reads, lifetime)
    }

    fn consumer_certificate(
        &self,
        action: &str,
        name: &Name,
        reads: &[(Name, Name)],
        lifetime: Duration,
    ) -> Result<(String, String), PkiError> {
        let dir = self.dir.as_path();
        let ca = load_ca(dir)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut identity = Identity::consumer(name.clone());
        identity.reads = reads.to_vec();
        let cert = leaf_params(&identity, lifetime)?.signed_by(&key, &ca.cert, &ca.key)?;
        record_issued(dir, role_dir(Role::Consumer), name, &cert)?;
        let streams: Vec<String> = reads.iter().map(|(d, s)| format!("{d}/{s}")).collect();
        self.audit(
            action,
            Some(name.as_str()),
            Some(format!(
                "serial {}; reads: {}; valid {} s",
                serial_of(&cert),
                names_or(
                    streams.iter().map(String::as_str),
                    "every stream (--all-streams)"
                ),
                lifetime.as_secs()
            )),
        )?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Renews consumer `current`'s certificate: the same name and streams,
    /// a fresh key, `lifetime` from now. Refused once the consumer is
    /// revoked.
    pub fn renew_consumer(
        &self,
        current: &Identity,
        lifetime: Duration,
    ) -> Result<(String, String), PkiError> {
        if self.is_revoked(Role::Consumer, &current.name) {
            return Err(PkiError::ConsumerRevoked(current.name.to_string()));
        }
        self.consumer_certificate("consumer-renew", &current.name, &current.reads, lifetime)
    }
}

/// The CA, loaded for issuing.
pub(crate) struct Ca {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: KeyPair,
}

pub(crate) fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    let key = KeyPair::from_pem(&read(&dir.join(CA_KEY))?)?;
    let params = CertificateParams::from_ca_cert_pem(&read(&dir.join(CA_CERT))?)?;
    // Re-signing the CA's own parameters yields an issuer with the same name
    // and key; only its signature bytes differ, and they are not used.
    let cert = params.self_signed(&key)?;
    Ok(Ca { cert, key })
}

fn leaf_params(identity: &Identity, lifetime: Duration) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = identity
        .uris()
        .into_iter()
        .map(|u| u.try_into().map(SanType::URI))
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, lifetime);
    Ok(params)
}

/// Where the certificates of ingest instances are recorded.
pub(crate) const INGEST_ROLE_DIR: &str = "ingest";

/// A certificate signing request whose signature has been checked.
pub struct CheckedCsr {
    /// The device id: the CSR's common name.
    pub device: Name,
    /// The requested key, DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    csr: CertificateSigningRequestParams,
}

/// Parses a CSR and checks its signature (the requester holds the key), its
/// key type (P-256) and its common name (a valid device id).
pub fn check_csr(pem_text: &str) -> Result<CheckedCsr, CsrError> {
    let unreadable = |e: &dyn std::fmt::Display| CsrError::Unreadable(e.to_string());
    let csr = CertificateSigningRequestParams::from_pem(pem_text).map_err(|e| unreadable(&e))?;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem_text.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d)
        .map_err(|e| unreadable(&e))?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| unreadable(&e))?;
    req.verify_signature().map_err(|_| CsrError::Signature)?;
    let cn = req
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or(CsrError::NoCommonName)?;
    let device = Name::new(cn)?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(CsrError::KeyType);
    }
    Ok(CheckedCsr {
        device,
        spki_der: req.certification_request_info.subject_pki.raw.to_vec(),
        csr,
    })
}

/// A certificate's serial, hex.
fn serial_of(cert: &rcgen::Certificate) -> String {
    cert.params()
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.as_ref()))
        .unwrap_or_default()
}

/// `names` joined with commas, or `none` when there are none.
fn names_or<'a>(names: impl Iterator<Item = &'a str>, none: &str) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        none.to_owned()
    } else {
        v.join(",")
    }
}

fn record_issued(
    dir: &Path,
    role: &str,
    name: &Name,
    cert: &rcgen::Certificate,
) -> Result<(), PkiError> {
    let serial = cert
        .params()
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.as_ref()))
        .unwrap_or_default();
    let issued = dir.join("issued").join(role).join(name.as_str());
    create_dir(&issued)?;
    write_new(&issued.join(format!("{serial}.crt")), &cert.pem(), 0o644)
}

/// Writes a certificate (0644) and optionally its key (0600), never overwriting.
pub fn write_issued(
    cert_path: &Path,
    cert: &str,
    key: Option<(&Path, &str)>,
) -> Result<(), PkiError> {
    if let Some((key_path, key)) = key {
        write_new(key_path, key, 0o600)?;
    }
    write_new(cert_path, cert, 0o644)
}

/// Replaces a renewed certificate (0644) and its new key (0600), durably:
/// the key first, so that a crash leaves the old certificate with a key it
/// does not match rather than a new certificate with the old key... either
/// way `renew` again mends it.
pub fn replace_issued(
    cert_path: &Path,
    cert: &str,
    key_path: &Path,
    key: &str,
) -> Result<(), PkiError> {
    replace(key_path, key, 0o600)?;
    replace(cert_path, cert, 0o644)
}
