//! Enrollment: a one-time token an operator makes for a device
//! (`device add`), consumed by the camera's first request; or a request
//! without one, filed for an operator to approve by the key's fingerprint
//! (`device pending`, `device approve`); and the TPM endorsement-key policy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sealcam_format::Name;

use crate::files::{create_dir, read, replace, sync_dir};
use crate::issue::check_csr;
use crate::pending::{parse_pending_name, pending_file, PendingQueue};
use crate::{CsrError, EkRefusal, EnrollError, FleetCa, PkiError, Role};

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token_path(dir: &Path, device: &Name) -> PathBuf {
    dir.join("enroll").join(format!("{device}.token"))
}

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

impl FleetCa {
    /// Registers a device for enrollment: returns a one-time token valid for
    /// `ttl`. Only the token's SHA-256 is stored. Adding a revoked device again
    /// lets a replacement enroll under its name; every certificate issued to
    /// it before stays revoked for good (`revoke.rs`).
    pub fn add_device(
        &self,
        device: &Name,
        streams: &[Name],
        ttl: Duration,
    ) -> Result<String, PkiError> {
        let dir = self.dir.as_path();
        let token = hex::encode(rand::random::<[u8; 32]>());
        let enroll = dir.join("enroll");
        create_dir(&enroll)?;
        let streams: Vec<&str> = streams.iter().map(Name::as_str).collect();
        let record = format!(
            "sha256={}\nexpires_unix={}\nstreams={}\n",
            hex::encode(sealcam_api::token::token_digest(&token)),
            unix_now() + ttl.as_secs(),
            streams.join(",")
        );
        replace(&token_path(dir, device), &record, 0o600)?;
        // The name is free again; what was issued under it stays revoked.
        self.retire_legacy_mark(device)?;
        let _ = std::fs::remove_file(dir.join("revoked").join("device").join(device.as_str()));
        self.audit(
            "device-add",
            Some(device.as_str()),
            Some(format!(
                "enrollment token valid {} s; streams: {}",
                ttl.as_secs(),
                if streams.is_empty() {
                    "any of its own".to_owned()
                } else {
                    streams.join(",")
                }
            )),
        )?;
        Ok(token)
    }

    /// Consumes a device's enrollment token and issues its certificate.
    /// Only through [`FleetCa::enroll_request`], which checks the TPM
    /// evidence first. The
    /// token is removed before the certificate is issued: it can never be used
    /// twice, even across a crash. Every check that can refuse comes first,
    /// so a refusal leaves the token unused. `proof` is the camera's
    /// [`sealcam_api::token::token_proof`] for `csr_pem`: the token itself
    /// never reaches the ingest that passes the request on.
    pub(crate) fn enroll(
        &self,
        csr_pem: &str,
        proof: &str,
        ek: (&EkPolicy, Option<&[u8]>),
        lifetime: Duration,
    ) -> Result<(Name, String), EnrollError> {
        let dir = self.dir.as_path();
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
        let digest: Option<[u8; 32]> = sha
            .and_then(|h| hex::decode(h).ok())
            .and_then(|d| d.try_into().ok());
        // An HMAC over this CSR keyed with the token's digest, checked in
        // constant time: a proof for another CSR does not pass.
        if !digest.is_some_and(|d| sealcam_api::token::check_token_proof(&d, csr_pem, proof)) {
            return Err(EnrollError::UnknownToken);
        }
        if expires.is_none_or(|e| e < unix_now()) {
            return Err(EnrollError::Expired);
        }
        if self.is_revoked(Role::Device, &csr.device) {
            return Err(EnrollError::Revoked(csr.device));
        }
        ek.0.admit(dir, &csr.device, ek.1)?;
        // Single use: consumed before the certificate is issued.
        std::fs::remove_file(&path).map_err(|_| EnrollError::UnknownToken)?;
        sync_dir(&dir.join("enroll"))?;
        let device = csr.device.clone();
        match self.renew(csr, &streams, lifetime) {
            Ok(certificate) => Ok((device, certificate)),
            Err(PkiError::Revoked { device }) => Err(EnrollError::Revoked(device)),
            Err(e) => Err(e.into()),
        }
    }

    /// Enrollment without a token: the first request files the CSR for an
    /// operator, outside the CA's directory and within the caps of
    /// `pending`; once approved, the same request returns the certificate.
    /// Nothing is written in the CA's directory before an approval exists:
    /// the endorsement-key certificate is checked here but recorded only
    /// when the approved certificate is handed out.
    pub(crate) fn request_approval(
        &self,
        csr_pem: &str,
        ek: (&EkPolicy, Option<&[u8]>),
        pending: &PendingQueue,
    ) -> Result<Approval, EnrollError> {
        let dir = self.dir.as_path();
        let csr = check_csr(csr_pem).map_err(EnrollError::BadCsr)?;
        if self.is_revoked(Role::Device, &csr.device) {
            return Err(EnrollError::Revoked(csr.device));
        }
        ek.0.check(ek.1)?;
        let fingerprint = fingerprint_of(&csr.spki_der);
        let approved = dir.join("approved").join(format!("{}.crt", csr.device));
        if let Ok(pem_text) = std::fs::read_to_string(&approved) {
            let matches = sealcam_transport::pem::parse_first_cert(&pem_text)
                .ok()
                .and_then(|der| sealcam_transport::identity::device_key_from_cert_der(&der).ok())
                .is_some_and(|k| k.fingerprint() == fingerprint);
            if matches {
                ek.0.record(dir, &csr.device, ek.1)?;
                return Ok(Approval::Issued {
                    device: csr.device,
                    certificate: pem_text,
                });
            }
        }
        pending.file(&csr.device, &fingerprint, csr_pem)?;
        Ok(Approval::Pending { fingerprint })
    }

    /// The CSRs waiting for approval.
    pub fn pending_requests(&self) -> Result<Vec<PendingRequest>, PkiError> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.pending_dir) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_pending_name(&name).is_none() {
                continue;
            }
            if let Ok(csr) = check_csr(&read(&entry.path())?) {
                out.push(PendingRequest {
                    fingerprint: fingerprint_of(&csr.spki_der),
                    device: csr.device,
                });
            }
        }
        out.sort_by(|a, b| (&a.device, &a.fingerprint).cmp(&(&b.device, &b.fingerprint)));
        Ok(out)
    }

    /// Approves the pending CSR of `device` if its key has `fingerprint`.
    pub fn approve(
        &self,
        device: &Name,
        fingerprint: &str,
        streams: &[Name],
        lifetime: Duration,
    ) -> Result<(), PkiError> {
        let dir = self.dir.as_path();
        let waiting: Vec<String> = self
            .pending_requests()?
            .into_iter()
            .filter(|p| &p.device == device)
            .map(|p| p.fingerprint)
            .collect();
        let fingerprint = fingerprint.trim();
        let path = pending_file(&self.pending_dir, device, fingerprint);
        if !waiting.iter().any(|f| f.eq_ignore_ascii_case(fingerprint)) {
            return Err(PkiError::BadCsr {
                path,
                reason: CsrError::Fingerprint {
                    actual: if waiting.is_empty() {
                        "none (no request of this device waits)".into()
                    } else {
                        waiting.join(" or ")
                    },
                    expected: fingerprint.to_owned(),
                },
            });
        }
        let csr = check_csr(&read(&path)?).map_err(|reason| PkiError::BadCsr {
            path: path.clone(),
            reason,
        })?;
        let cert = self.renew(csr, streams, lifetime)?;
        let approved = dir.join("approved");
        create_dir(&approved)?;
        replace(&approved.join(format!("{device}.crt")), &cert, 0o644)?;
        let _ = std::fs::remove_file(&path);
        self.audit(
            "device-approve",
            Some(device.as_str()),
            Some(format!("key fingerprint {fingerprint}")),
        )?;
        Ok(())
    }
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
    /// records it for the device. Only once a token or an approval admits
    /// the device.
    pub(crate) fn admit(
        &self,
        dir: &Path,
        device: &Name,
        ek: Option<&[u8]>,
    ) -> Result<(), EnrollError> {
        self.check(ek)?;
        self.record(dir, device, ek)
    }

    /// Checks an EK certificate (or its absence) against the policy,
    /// writing nothing. A certificate that does not parse is refused.
    pub(crate) fn check(&self, ek: Option<&[u8]>) -> Result<(), EnrollError> {
        match ek {
            None if self.required_issuers.is_empty() => Ok(()),
            None => Err(EnrollError::Ek(EkRefusal::Missing)),
            Some(der) => {
                if !self.required_issuers.is_empty()
                    && !self
                        .required_issuers
                        .iter()
                        .any(|ca| sealcam_transport::identity::verify_issued_by(der, ca).is_ok())
                {
                    return Err(EnrollError::Ek(EkRefusal::UnknownMaker));
                }
                match x509_parser::parse_x509_certificate(der) {
                    Ok(([], _)) => Ok(()),
                    _ => Err(EnrollError::Malformed(
                        "ek_certificate is not one DER X.509 certificate".into(),
                    )),
                }
            }
        }
    }

    /// Records a checked EK certificate for the device.
    fn record(&self, dir: &Path, device: &Name, ek: Option<&[u8]>) -> Result<(), EnrollError> {
        if let Some(der) = ek {
            let ek_dir = dir.join("ek");
            create_dir(&ek_dir)?;
            replace(&ek_dir.join(format!("{device}.der")), der, 0o644)?;
        }
        Ok(())
    }
}
