//! Revocation: every certificate ever issued to an identity listed in the
//! CRL (`crl.pem`, signed by the CA), which the ingest reloads.

use std::path::Path;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use sealcam_format::Name;

use crate::enroll::unix_now;
use crate::files::{create_dir, replace, write_new};
use crate::issue::{load_ca, time_now};
use crate::{FleetCa, PkiError, CRL};

impl FleetCa {
    pub fn is_revoked(&self, device: &Name) -> bool {
        let dir = self.dir.as_path();
        dir.join("revoked").join(device.as_str()).exists()
    }

    /// Revokes every certificate ever issued to `name` and rewrites the CRL.
    /// Returns how many certificates the CRL now lists for it.
    pub fn revoke(&self, name: &Name) -> Result<usize, PkiError> {
        let dir = self.dir.as_path();
        let revoked = dir.join("revoked");
        create_dir(&revoked)?;
        let marker = revoked.join(name.as_str());
        if !marker.exists() {
            write_new(&marker, &format!("revoked_unix={}\n", unix_now()), 0o644)?;
        }
        let count = std::fs::read_dir(dir.join("issued").join(name.as_str()))
            .map(|d| d.count())
            .unwrap_or(0);
        self.write_crl()?;
        Ok(count)
    }

    /// Writes `<pki>/crl.pem` listing every revoked serial, signed by the CA.
    pub fn write_crl(&self) -> Result<(), PkiError> {
        let dir = self.dir.as_path();
        let ca = load_ca(dir)?;
        let now = time_now();
        let mut revoked_certs = Vec::new();
        for (serial, when) in revoked_serials(dir)? {
            let Ok(bytes) = hex::decode(&serial) else {
                continue;
            };
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: time::OffsetDateTime::from_unix_timestamp(when as i64)
                    .unwrap_or(now),
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
        replace(&dir.join(CRL), &crl.pem()?, 0o644)
    }
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
