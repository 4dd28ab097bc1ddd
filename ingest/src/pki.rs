//! The development fleet PKI.
//!
//! ```text
//! <pki>/ca.crt  ca.key          the fleet CA (key 0600)
//! <pki>/server.crt server.key   the ingest's TLS certificate (key 0600)
//! ```
//!
//! Device certificates are issued from a CSR made on the camera, so the
//! device key never leaves it. Each certificate names one identity in a SAN
//! URI (`urn:sealcam:device:<id>` or `urn:sealcam:consumer:<name>`).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use sealcam_format::Name;
use sealcam_transport::Identity;
use x509_parser::prelude::FromDer;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} already exists; refusing to overwrite (use another directory or remove it)")]
    Exists { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CSR {path} is not acceptable: {reason}")]
    BadCsr { path: PathBuf, reason: String },
}

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let io = |op, source| PkiError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io("create", e)
            }
        })?;
    f.write_all(contents.as_bytes())
        .map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time_now();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Creates the fleet CA and the ingest's server certificate in `dir`.
pub fn init(dir: &Path, server_names: &[String], server_ips: &[IpAddr]) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        op: "create",
        path: dir.to_owned(),
        source,
    })?;
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
    validity(&mut ca, 3650);
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut server = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sealcam ingest");
    server.distinguished_name = dn;
    for n in server_names {
        server
            .subject_alt_names
            .push(SanType::DnsName(n.clone().try_into()?));
    }
    for ip in server_ips {
        server.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut server, 825);
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    write_new(&dir.join(CA_KEY), &ca_key.serialize_pem(), 0o600)?;
    write_new(&dir.join(CA_CERT), &ca_cert.pem(), 0o644)?;
    write_new(&dir.join(SERVER_KEY), &server_key.serialize_pem(), 0o600)?;
    write_new(&dir.join(SERVER_CERT), &server_cert.pem(), 0o644)?;
    Ok(())
}

/// The CA, loaded for issuing.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    let key = KeyPair::from_pem(&read(&dir.join(CA_KEY))?)?;
    let params = CertificateParams::from_ca_cert_pem(&read(&dir.join(CA_CERT))?)?;
    // Re-signing the CA's own parameters yields an issuer with the same name
    // and key; only its signature bytes differ, and they are not used.
    let cert = params.self_signed(&key)?;
    Ok(Ca { cert, key })
}

fn leaf_params(identity: &Identity, days: u32) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days);
    Ok(params)
}

/// Issues a device certificate from a CSR. The device id comes from the
/// CSR's common name and must be a valid name; the CSR's own signature is
/// checked (proof that the requester holds the key).
pub fn issue_device(dir: &Path, csr_path: &Path, days: u32) -> Result<(Name, String), PkiError> {
    let bad = |reason: String| PkiError::BadCsr {
        path: csr_path.to_owned(),
        reason,
    };
    let pem_text = read(csr_path)?;
    let csr =
        CertificateSigningRequestParams::from_pem(&pem_text).map_err(|e| bad(e.to_string()))?;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem_text.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d)
        .map_err(|e| bad(e.to_string()))?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| bad(e.to_string()))?;
    req.verify_signature().map_err(|_| {
        bad("its signature does not verify: the requester does not hold the key".into())
    })?;
    let cn = req
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or_else(|| bad("it has no common name (the device id)".into()))?;
    let device = Name::new(cn).map_err(|e| bad(e.to_string()))?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(bad("the key is not ECDSA P-256".into()));
    }
    let ca = load_ca(dir)?;
    let params = leaf_params(&Identity::device(device.clone()), days)?;
    let cert = CertificateSigningRequestParams {
        params,
        public_key: csr.public_key,
    }
    .signed_by(&ca.cert, &ca.key)?;
    Ok((device, cert.pem()))
}

/// Issues a consumer certificate with a new key. Returns (cert PEM, key PEM).
pub fn issue_consumer(dir: &Path, name: &Name, days: u32) -> Result<(String, String), PkiError> {
    let ca = load_ca(dir)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert =
        leaf_params(&Identity::consumer(name.clone()), days)?.signed_by(&key, &ca.cert, &ca.key)?;
    Ok((cert.pem(), key.serialize_pem()))
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
