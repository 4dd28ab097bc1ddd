//! Revocation: every certificate ever issued to an identity listed in the
//! CRL (`crl.pem`, signed by the CA), which the ingest reloads.
//!
//! A revocation is kept per certificate, for good: revoking an identity
//! records the serial number of each certificate issued to it so far in
//! `revoked-serials/`, and nothing ever removes one. Adding the device
//! again (a replacement camera) lets the new one enroll, but every
//! certificate of the old one stays in the CRL, however often it is
//! rewritten.

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
        let now = unix_now();
        if !marker.exists() {
            write_new(&marker, &format!("revoked_unix={now}\n"), 0o644)?;
        }
        let serials_dir = dir.join(REVOKED_SERIALS);
        create_dir(&serials_dir)?;
        let serials = issued_serials(dir, name.as_str());
        for serial in &serials {
            let record = serials_dir.join(serial);
            if !record.exists() {
                write_new(
                    &record,
                    &format!("name={name}\nrevoked_unix={now}\n"),
                    0o644,
                )?;
            }
        }
        self.write_crl()?;
        Ok(serials.len())
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

/// Where each revoked certificate's serial is kept for good.
const REVOKED_SERIALS: &str = "revoked-serials";

/// Serial numbers (hex) of the certificates issued to `name` so far.
fn issued_serials(dir: &Path, name: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("issued").join(name))
        .map(|d| {
            d.flatten()
                .filter_map(|c| {
                    c.file_name()
                        .to_string_lossy()
                        .strip_suffix(".crt")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `revoked_unix=` of a revocation record, if it says.
fn revoked_when(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.trim().strip_prefix("revoked_unix="))
            .and_then(|v| v.parse().ok())
    })
}

/// Serial numbers (hex) of every revoked certificate, with when: each one
/// recorded in `revoked-serials/`, and (for PKI directories from before
/// those records) every certificate issued to an identity revoked now.
fn revoked_serials(dir: &Path) -> Result<Vec<(String, u64)>, PkiError> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join(REVOKED_SERIALS)) {
        for entry in entries.flatten() {
            let serial = entry.file_name().to_string_lossy().into_owned();
            out.push((serial, revoked_when(&entry.path()).unwrap_or_else(unix_now)));
        }
    }
    let Ok(entries) = std::fs::read_dir(dir.join("revoked")) else {
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        return Ok(out);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let when = revoked_when(&entry.path()).unwrap_or_else(unix_now);
        out.extend(issued_serials(dir, &name).into_iter().map(|s| (s, when)));
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}
