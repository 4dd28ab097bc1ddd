//! `sealcamd identity`: what this camera is and how it proves it.

use std::fmt;

use sealcam_format::{DeviceVerifyingKey, Name};
use sealcam_transport::identity::{self, CertSummary};
use sealcam_transport::pem;

use crate::config::{Config, KeySource};
use crate::daemon::DaemonError;
use crate::trust::key;

/// The camera's identity as configured and as certified.
pub struct IdentityReport {
    pub device: Name,
    pub key: String,
    pub fingerprint: String,
    /// The certificate, or why it could not be read.
    pub certificate: Result<CertSummary, String>,
    /// Whether the certificate certifies this key.
    pub matches: bool,
    /// The TPM's endorsement-key certificate, summarised (TPM keys only).
    pub ek: Option<Result<CertSummary, String>>,
}

pub fn report(cfg: &Config) -> Result<IdentityReport, DaemonError> {
    let (key, ek) = key::open_with_ek(&cfg.identity.key)?;
    let ek = ek.map(|der| identity::summarize(&der).map_err(|e| e.to_string()));
    let device_key = DeviceVerifyingKey(key.verifying_key());
    let path = &cfg.identity.certificate;
    let (certificate, matches) = match pem::load_certs(path) {
        Ok(certs) => {
            let matches = identity::device_key_from_cert_der(&certs[0])
                .map(|k| k == device_key)
                .unwrap_or(false);
            (
                identity::summarize(&certs[0]).map_err(|e| e.to_string()),
                matches,
            )
        }
        Err(e) => (Err(e.to_string()), false),
    };
    Ok(IdentityReport {
        device: cfg.device.clone(),
        key: match &cfg.identity.key {
            KeySource::Tpm(t) => format!("TPM handle {:#010x} via {}", t.handle, t.tcti),
            KeySource::InsecureSoftware(p) => format!("INSECURE software key {}", p.display()),
        },
        fingerprint: device_key.fingerprint(),
        certificate,
        matches,
        ek,
    })
}

impl fmt::Display for IdentityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device:       {}", self.device)?;
        writeln!(f, "key:          {}", self.key)?;
        writeln!(
            f,
            "fingerprint:  {} (SHA-256 of the public key)",
            self.fingerprint
        )?;
        match &self.ek {
            Some(Ok(ek)) => writeln!(f, "tpm ek cert:  {} (issuer {})", ek.subject, ek.issuer)?,
            Some(Err(e)) => writeln!(f, "tpm ek cert:  unreadable ({e})")?,
            None => {}
        }
        match &self.certificate {
            Ok(c) => {
                writeln!(f, "certificate:  {}", c.subject)?;
                writeln!(f, "issuer:       {}", c.issuer)?;
                writeln!(
                    f,
                    "valid:        {} .. {}",
                    crate::date::rfc3339(c.not_before),
                    crate::date::rfc3339(c.not_after)
                )?;
                if let Some(id) = &c.identity {
                    writeln!(f, "identity:     {}", id.uri())?;
                }
                write!(
                    f,
                    "key match:    {}",
                    if self.matches {
                        "yes"
                    } else {
                        "NO: the certificate certifies another key"
                    }
                )
            }
            Err(e) => write!(f, "certificate:  none ({e})"),
        }
    }
}
