//! The development fleet PKI.
//!
//! ```text
//! <pki>/ca.crt  ca.key          the fleet CA (key 0600)
//! <pki>/server.crt server.key   the ingest's TLS certificate (key 0600)
//! <pki>/issued/<id>/<serial>.crt every certificate issued, for revocation
//! <pki>/enroll/<device>.token    a pending enrollment: SHA-256 of the token, expiry
//! <pki>/pending/<device>.csr     a CSR waiting for an operator's approval
//! <pki>/approved/<device>.crt    the certificate an operator approved, for pickup
//! <pki>/revoked/<device>         the device is revoked (contents: when)
//! <pki>/crl.pem                  revocation list signed by the CA
//! <pki>/ek/<device>.der          the TPM endorsement-key certificate a device sent
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
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use sealcam_format::Name;
use sealcam_transport::Identity;
use sha2::{Digest, Sha256};
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
    #[error("{0}")]
    Audit(String),
}

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";

pub(crate) fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
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

/// Parses a lifetime such as `30d`, `12h`, `90s`.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a lifetime; write e.g. 30d, 12h, 10m or 90s"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: a lifetime ends in s, m, h or d")),
    };
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
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
    validity(&mut ca, Duration::from_secs(3650 * 86_400));
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
    validity(&mut server, Duration::from_secs(825 * 86_400));
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    write_new(&dir.join(CA_KEY), &ca_key.serialize_pem(), 0o600)?;
    write_new(&dir.join(CA_CERT), &ca_cert.pem(), 0o644)?;
    write_new(&dir.join(SERVER_KEY), &server_key.serialize_pem(), 0o600)?;
    write_new(&dir.join(SERVER_CERT), &server_cert.pem(), 0o644)?;
    crate::audit::ensure_key(dir).map_err(|e| PkiError::Audit(e.to_string()))?;
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
pub fn check_csr(pem_text: &str) -> Result<CheckedCsr, String> {
    let csr = CertificateSigningRequestParams::from_pem(pem_text).map_err(|e| e.to_string())?;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem_text.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d)
        .map_err(|e| e.to_string())?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| e.to_string())?;
    req.verify_signature().map_err(|_| {
        "its signature does not verify: the requester does not hold the key".to_string()
    })?;
    let cn = req
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or_else(|| "it has no common name (the device id)".to_string())?;
    let device = Name::new(cn).map_err(|e| e.to_string())?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err("the key is not ECDSA P-256".into());
    }
    Ok(CheckedCsr {
        device,
        spki_der: req.certification_request_info.subject_pki.raw.to_vec(),
        csr,
    })
}

/// Issues a device certificate for a checked CSR, allowed to write `streams`
/// (empty: any of its own), and records it.
pub fn issue_for_csr(
    dir: &Path,
    csr: CheckedCsr,
    streams: &[Name],
    lifetime: Duration,
) -> Result<String, PkiError> {
    let ca = load_ca(dir)?;
    let mut identity = Identity::device(csr.device.clone());
    identity.streams = streams.to_vec();
    let params = leaf_params(&identity, lifetime)?;
    let cert = CertificateSigningRequestParams {
        params,
        public_key: csr.csr.public_key,
    }
    .signed_by(&ca.cert, &ca.key)?;
    record_issued(dir, &csr.device, &cert)?;
    Ok(cert.pem())
}

/// Issues a device certificate from a CSR file (operator-approved path).
pub fn issue_device(
    dir: &Path,
    csr_path: &Path,
    streams: &[Name],
    lifetime: Duration,
) -> Result<(Name, String), PkiError> {
    let csr = check_csr(&read(csr_path)?).map_err(|reason| PkiError::BadCsr {
        path: csr_path.to_owned(),
        reason,
    })?;
    let device = csr.device.clone();
    Ok((device, issue_for_csr(dir, csr, streams, lifetime)?))
}

fn record_issued(dir: &Path, name: &Name, cert: &rcgen::Certificate) -> Result<(), PkiError> {
    let serial = cert
        .params()
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.as_ref()))
        .unwrap_or_default();
    let issued = dir.join("issued").join(name.as_str());
    std::fs::create_dir_all(&issued).map_err(|source| PkiError::Io {
        op: "create",
        path: issued.clone(),
        source,
    })?;
    write_new(&issued.join(format!("{serial}.crt")), &cert.pem(), 0o644)?;
    sync_dir(&issued)
}

fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PkiError::Io {
            op: "fsync",
            path: dir.to_owned(),
            source,
        })
}

/// Issues a consumer certificate with a new key. Returns (cert PEM, key PEM).
pub fn issue_consumer(
    dir: &Path,
    name: &Name,
    reads: &[(Name, Name)],
    lifetime: Duration,
) -> Result<(String, String), PkiError> {
    let ca = load_ca(dir)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut identity = Identity::consumer(name.clone());
    identity.reads = reads.to_vec();
    let cert = leaf_params(&identity, lifetime)?.signed_by(&key, &ca.cert, &ca.key)?;
    record_issued(dir, name, &cert)?;
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

/// Why an enrollment token was refused. Deliberately terse towards the
/// camera; the ingest logs the detail.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrollment token is unknown or was already used; ask the operator for a new one (`sealcam-ingest device add`)")]
    UnknownToken,
    #[error(
        "enrollment token expired; ask the operator for a new one (`sealcam-ingest device add`)"
    )]
    Expired,
    #[error("device {0} is revoked; the operator must add it again")]
    Revoked(Name),
    #[error("the certificate request is not acceptable: {0}")]
    BadCsr(String),
    #[error("this fleet requires a genuine TPM: {0}")]
    Ek(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token_path(dir: &Path, device: &Name) -> PathBuf {
    dir.join("enroll").join(format!("{device}.token"))
}

/// Registers a device for enrollment: returns a one-time token valid for
/// `ttl`. Only the token's SHA-256 is stored. Adding a revoked device again
/// lifts the revocation for its future certificates.
pub fn add_device(
    dir: &Path,
    device: &Name,
    streams: &[Name],
    ttl: Duration,
) -> Result<String, PkiError> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let enroll = dir.join("enroll");
    std::fs::create_dir_all(&enroll).map_err(|source| PkiError::Io {
        op: "create",
        path: enroll.clone(),
        source,
    })?;
    let path = token_path(dir, device);
    let tmp = enroll.join(format!(".{device}.token.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let streams: Vec<&str> = streams.iter().map(Name::as_str).collect();
    let record = format!(
        "sha256={}\nexpires_unix={}\nstreams={}\n",
        hex::encode(Sha256::digest(token.as_bytes())),
        unix_now() + ttl.as_secs(),
        streams.join(",")
    );
    write_new(&tmp, &record, 0o600)?;
    std::fs::rename(&tmp, &path).map_err(|source| PkiError::Io {
        op: "rename",
        path: path.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(dir.join("revoked").join(device.as_str()));
    sync_dir(&enroll)?;
    Ok(token)
}

/// Consumes a device's enrollment token and issues its certificate. The
/// token is removed before the certificate is issued: it can never be used
/// twice, even across a crash.
pub fn enroll(
    dir: &Path,
    csr_pem: &str,
    token: &str,
    ek: (&EkPolicy, Option<&[u8]>),
    lifetime: Duration,
) -> Result<(Name, String), EnrollError> {
    let csr = check_csr(csr_pem).map_err(EnrollError::BadCsr)?;
    let path = token_path(dir, &csr.device);
    let record = std::fs::read_to_string(&path).map_err(|_| EnrollError::UnknownToken)?;
    let mut sha = None;
    let mut expires = None;
    let mut streams = Vec::new();
    for line in record.lines() {
        match line.split_once('=') {
            Some(("sha256", v)) => sha = Some(v.to_owned()),
            Some(("expires_unix", v)) => expires = v.parse::<u64>().ok(),
            Some(("streams", v)) => {
                streams = v.split(',').filter_map(|s| Name::new(s).ok()).collect()
            }
            _ => {}
        }
    }
    let given = hex::encode(Sha256::digest(token.as_bytes()));
    // Compare digests, not tokens: the comparison leaks nothing useful.
    if sha.as_deref() != Some(given.as_str()) {
        return Err(EnrollError::UnknownToken);
    }
    // Single use: consume first.
    std::fs::remove_file(&path).map_err(|_| EnrollError::UnknownToken)?;
    sync_dir(&dir.join("enroll"))?;
    if expires.is_none_or(|e| e < unix_now()) {
        return Err(EnrollError::Expired);
    }
    if is_revoked(dir, &csr.device) {
        return Err(EnrollError::Revoked(csr.device));
    }
    ek.0.admit(dir, &csr.device, ek.1)?;
    let device = csr.device.clone();
    Ok((device, issue_for_csr(dir, csr, &streams, lifetime)?))
}

pub fn is_revoked(dir: &Path, device: &Name) -> bool {
    dir.join("revoked").join(device.as_str()).exists()
}

/// Revokes every certificate ever issued to `name` and rewrites the CRL.
/// Returns how many certificates the CRL now lists for it.
pub fn revoke(dir: &Path, name: &Name) -> Result<usize, PkiError> {
    let revoked = dir.join("revoked");
    std::fs::create_dir_all(&revoked).map_err(|source| PkiError::Io {
        op: "create",
        path: revoked.clone(),
        source,
    })?;
    let marker = revoked.join(name.as_str());
    if !marker.exists() {
        write_new(&marker, &format!("revoked_unix={}\n", unix_now()), 0o644)?;
    }
    sync_dir(&revoked)?;
    let count = std::fs::read_dir(dir.join("issued").join(name.as_str()))
        .map(|d| d.count())
        .unwrap_or(0);
    write_crl(dir)?;
    Ok(count)
}

/// Serial numbers (hex) of every certificate issued to a revoked identity.
fn revoked_serials(dir: &Path) -> Result<Vec<(String, u64)>, PkiError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("revoked")) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let when = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| {
                t.trim()
                    .strip_prefix("revoked_unix=")
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or_else(unix_now);
        if let Ok(certs) = std::fs::read_dir(dir.join("issued").join(&name)) {
            for c in certs.flatten() {
                if let Some(serial) = c.file_name().to_string_lossy().strip_suffix(".crt") {
                    out.push((serial.to_owned(), when));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `<pki>/crl.pem` listing every revoked serial, signed by the CA.
pub fn write_crl(dir: &Path) -> Result<(), PkiError> {
    let ca = load_ca(dir)?;
    let now = time_now();
    let mut revoked_certs = Vec::new();
    for (serial, when) in revoked_serials(dir)? {
        let Ok(bytes) = hex::decode(&serial) else {
            continue;
        };
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: time::OffsetDateTime::from_unix_timestamp(when as i64).unwrap_or(now),
            reason_code: Some(RevocationReason::CessationOfOperation),
            invalidity_date: None,
        });
    }
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from_slice(&unix_now().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)?;
    let path = dir.join(CRL);
    let tmp = dir.join(".crl.pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &crl.pem()?, 0o644)?;
    std::fs::rename(&tmp, &path).map_err(|source| PkiError::Io {
        op: "rename",
        path: path.clone(),
        source,
    })?;
    sync_dir(dir)
}

pub const CRL: &str = "crl.pem";

/// A CSR waiting for approval.
#[derive(Debug)]
pub struct PendingRequest {
    pub device: Name,
    /// SHA-256 of the requested public key (as `sealcamd identity` shows it).
    pub fingerprint: String,
}

fn fingerprint_of(spki_der: &[u8]) -> String {
    sealcam_format::DeviceVerifyingKey::from_spki_der(spki_der)
        .map(|k| k.fingerprint())
        .unwrap_or_default()
}

/// What became of an enrollment without a token.
#[derive(Debug)]
pub enum Approval {
    /// Waiting for the operator, who must approve this fingerprint.
    Pending { fingerprint: String },
    /// Approved: the certificate.
    Issued { device: Name, certificate: String },
}

/// Enrollment without a token: the first request files the CSR for an
/// operator; once approved, the same request returns the certificate.
pub fn request_approval(
    dir: &Path,
    csr_pem: &str,
    ek: (&EkPolicy, Option<&[u8]>),
) -> Result<Approval, EnrollError> {
    let csr = check_csr(csr_pem).map_err(EnrollError::BadCsr)?;
    if is_revoked(dir, &csr.device) {
        return Err(EnrollError::Revoked(csr.device));
    }
    ek.0.admit(dir, &csr.device, ek.1)?;
    let fingerprint = fingerprint_of(&csr.spki_der);
    let approved = dir.join("approved").join(format!("{}.crt", csr.device));
    if let Ok(pem_text) = std::fs::read_to_string(&approved) {
        let matches = sealcam_transport::pem::parse_first_cert(&pem_text)
            .ok()
            .and_then(|der| sealcam_transport::identity::device_key_from_cert_der(&der).ok())
            .is_some_and(|k| k.fingerprint() == fingerprint);
        if matches {
            return Ok(Approval::Issued {
                device: csr.device,
                certificate: pem_text,
            });
        }
    }
    let pending = dir.join("pending");
    std::fs::create_dir_all(&pending).map_err(|source| PkiError::Io {
        op: "create",
        path: pending.clone(),
        source,
    })?;
    let path = pending.join(format!("{}.csr", csr.device));
    let tmp = pending.join(format!(".{}.csr.tmp", csr.device));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, csr_pem, 0o644)?;
    std::fs::rename(&tmp, &path).map_err(|source| PkiError::Io {
        op: "rename",
        path: path.clone(),
        source,
    })?;
    sync_dir(&pending)?;
    Ok(Approval::Pending { fingerprint })
}

/// The CSRs waiting for approval.
pub fn pending_requests(dir: &Path) -> Result<Vec<PendingRequest>, PkiError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("pending")) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".csr") {
            continue;
        }
        if let Ok(csr) = check_csr(&read(&entry.path())?) {
            out.push(PendingRequest {
                fingerprint: fingerprint_of(&csr.spki_der),
                device: csr.device,
            });
        }
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(out)
}

/// Approves the pending CSR of `device` if its key has `fingerprint`.
pub fn approve(
    dir: &Path,
    device: &Name,
    fingerprint: &str,
    streams: &[Name],
    lifetime: Duration,
) -> Result<(), PkiError> {
    let path = dir.join("pending").join(format!("{device}.csr"));
    let csr = check_csr(&read(&path)?).map_err(|reason| PkiError::BadCsr {
        path: path.clone(),
        reason,
    })?;
    let actual = fingerprint_of(&csr.spki_der);
    if !actual.eq_ignore_ascii_case(fingerprint.trim()) {
        return Err(PkiError::BadCsr {
            path,
            reason: format!(
                "its key has fingerprint {actual}, not {fingerprint}: compare with `sealcamd identity` on the camera"
            ),
        });
    }
    let cert = issue_for_csr(dir, csr, streams, lifetime)?;
    let approved = dir.join("approved");
    std::fs::create_dir_all(&approved).map_err(|source| PkiError::Io {
        op: "create",
        path: approved.clone(),
        source,
    })?;
    let out = approved.join(format!("{device}.crt"));
    let _ = std::fs::remove_file(&out);
    write_new(&out, &cert, 0o644)?;
    sync_dir(&approved)?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Which TPM endorsement-key certificates a fleet accepts.
#[derive(Clone, Debug, Default)]
pub struct EkPolicy {
    /// DER certificates of the TPM makers' EK-issuing CAs. Empty: an EK
    /// certificate is optional, and recorded when present.
    pub required_issuers: Vec<Vec<u8>>,
}

impl EkPolicy {
    /// Checks an EK certificate (or its absence) against the policy, and
    /// records it for the device.
    pub fn admit(&self, dir: &Path, device: &Name, ek: Option<&[u8]>) -> Result<(), EnrollError> {
        match ek {
            None if self.required_issuers.is_empty() => return Ok(()),
            None => {
                return Err(EnrollError::Ek(
                    "the camera sent no endorsement-key certificate (its TPM has none, or the camera is not using a TPM)".into(),
                ))
            }
            Some(der) => {
                if !self.required_issuers.is_empty()
                    && !self
                        .required_issuers
                        .iter()
                        .any(|ca| sealcam_transport::identity::verify_issued_by(der, ca).is_ok())
                {
                    return Err(EnrollError::Ek(
                        "its endorsement-key certificate was not issued by an accepted TPM maker CA".into(),
                    ));
                }
                let ek_dir = dir.join("ek");
                std::fs::create_dir_all(&ek_dir).map_err(|source| PkiError::Io {
                    op: "create",
                    path: ek_dir.clone(),
                    source,
                })?;
                let path = ek_dir.join(format!("{device}.der"));
                std::fs::write(&path, der).map_err(|source| PkiError::Io {
                    op: "write",
                    path,
                    source,
                })?;
                sync_dir(&ek_dir)?;
            }
        }
        Ok(())
    }
}
