//! Revocation: every certificate ever issued to an identity listed in the
//! CRL (`crl.pem`, signed by the CA), which the ingest reloads.
//!
//! A revocation is kept per certificate, for good: revoking an identity
//! records the serial number of each certificate issued to it so far in
//! `revoked-serials/`, and nothing ever removes one. Adding the device
//! again (a replacement camera) lets the new one enroll, but every
//! certificate of the old one stays in the CRL, however often it is
//! rewritten.
//!
//! Each role has its own name space (`issued/device/<name>/`,
//! `issued/consumer/<name>/`, `revoked/device/<name>`, ...): revoking the
//! consumer `front` never touches the device `front`. Directories from
//! before the split (`issued/<name>/`, `revoked/<name>`) are still read:
//! their revocations stay in the CRL.

use std::path::Path;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use sealcam_format::Name;

use crate::enroll::unix_now;
use crate::files::{create_dir, replace, write_new};
use crate::issue::{load_ca, time_now, INGEST_ROLE_DIR};
use crate::{role_dir, FleetCa, PkiError, Role, CRL};

impl FleetCa {
    /// Whether `name` of `role` is revoked (until it is added again).
    pub fn is_revoked(&self, role: Role, name: &Name) -> bool {
        let dir = self.dir.as_path();
        dir.join("revoked")
            .join(role_dir(role))
            .join(name.as_str())
            .exists()
            || (role == Role::Device && legacy_marker(dir, name.as_str()).is_file())
    }

    /// Whether the certificate with this serial (hex) is revoked for good.
    pub fn is_serial_revoked(&self, serial: &str) -> bool {
        !serial.is_empty()
            && !serial.contains(['/', '.'])
            && self.dir.join(REVOKED_SERIALS).join(serial).exists()
    }

    /// Revokes every certificate ever issued to `name` of `role` and
    /// rewrites the CRL. Returns how many certificates the CRL now lists
    /// for it.
    pub fn revoke(&self, role: Role, name: &Name) -> Result<usize, PkiError> {
        let dir = self.dir.as_path();
        let _lock = crate::files::lock_dir(dir)?;
        let revoked = dir.join("revoked").join(role_dir(role));
        create_dir(&revoked)?;
        let marker = revoked.join(name.as_str());
        let now = unix_now();
        if !marker.exists() {
            write_new(&marker, &format!("revoked_unix={now}\n"), 0o644)?;
        }
        let serials = issued_serials(&dir.join("issued").join(role_dir(role)), name.as_str());
        record_revoked(dir, name, &serials, now)?;
        self.write_crl()?;
        self.audit(
            &format!("{}-revoke", role_dir(role)),
            Some(name.as_str()),
            Some(format!("{} certificates listed in the CRL", serials.len())),
        )?;
        Ok(serials.len())
    }

    /// Revokes every certificate issued to the ingest instance `name`:
    /// the CA service refuses it at its next connection, and every ingest
    /// (and camera) at its next CRL.
    pub fn revoke_ingest(&self, name: &Name) -> Result<usize, PkiError> {
        let dir = self.dir.as_path();
        let serials = issued_serials(&dir.join("issued").join(INGEST_ROLE_DIR), name.as_str());
        record_revoked(dir, name, &serials, unix_now())?;
        self.write_crl()?;
        self.audit(
            "ingest-revoke",
            Some(name.as_str()),
            Some(format!("{} certificates listed in the CRL", serials.len())),
        )?;
        Ok(serials.len())
    }

    /// Before a device's name is used again: keeps the revocation of every
    /// certificate issued under it in a directory from before the role
    /// split, then lifts the old mark on the name.
    pub(crate) fn retire_legacy_mark(&self, device: &Name) -> Result<(), PkiError> {
        let dir = self.dir.as_path();
        let marker = legacy_marker(dir, device.as_str());
        if !marker.is_file() {
            return Ok(());
        }
        let when = revoked_when(&marker).unwrap_or_else(unix_now);
        let serials = issued_serials(&dir.join("issued"), device.as_str());
        record_revoked(dir, device, &serials, when)?;
        std::fs::remove_file(&marker).map_err(|source| PkiError::Io {
            op: "remove",
            path: marker.clone(),
            source,
        })
    }

    /// Writes `<pki>/crl.pem` listing every revoked serial, signed by the
    /// CA, current for [`CRL_LIFETIME`].
    pub fn write_crl(&self) -> Result<(), PkiError> {
        self.write_crl_for(CRL_LIFETIME)
    }

    /// Re-signs the CRL (same revocations, a higher number) if less than
    /// half of `lifetime` is left before its `nextUpdate`, if more than
    /// `lifetime` is (one the operator's commands wrote for
    /// [`CRL_LIFETIME`]: the service's own lifetime rules), or if there is
    /// none: the CA service calls this on a timer, so that the ingests,
    /// which refuse every client once their list has expired, always have
    /// a current one while the CA service runs. Returns the new list's
    /// number when it wrote one.
    pub fn refresh_crl(&self, lifetime: std::time::Duration) -> Result<Option<u64>, PkiError> {
        let dir = self.dir.as_path();
        let _lock = crate::files::lock_dir(dir)?;
        let now = unix_now() as i64;
        let full = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        let half = full / 2;
        let current = std::fs::read(dir.join(CRL))
            .ok()
            .and_then(|pem| sealcam_transport::crl::crl_info_of_pem(&pem).ok());
        if let Some(info) = current {
            if info.next_update_unix.is_some_and(|next| {
                let left = next.saturating_sub(now);
                left > half && left <= full
            }) {
                return Ok(None);
            }
        }
        self.write_crl_for(lifetime)?;
        Ok(std::fs::read_to_string(dir.join(CRL_NUMBER))
            .ok()
            .and_then(|t| t.trim().parse().ok()))
    }

    fn write_crl_for(&self, lifetime: std::time::Duration) -> Result<(), PkiError> {
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
        let number = next_crl_number(dir);
        replace(&dir.join(CRL_NUMBER), format!("{number}\n"), 0o644)?;
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now
                + time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(7)),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.cert, &ca.key)?;
        replace(&dir.join(CRL), &crl.pem()?, 0o644)?;
        self.audit(
            "crl",
            None,
            Some(format!(
                "number {number}; {} serials revoked; current for {} s",
                crl.params().revoked_certs.len(),
                lifetime.as_secs()
            )),
        )
    }
}

/// Records each of `serials` in `revoked-serials/`, for good.
fn record_revoked(dir: &Path, name: &Name, serials: &[String], now: u64) -> Result<(), PkiError> {
    let serials_dir = dir.join(REVOKED_SERIALS);
    create_dir(&serials_dir)?;
    for serial in serials {
        let record = serials_dir.join(serial);
        if !record.exists() {
            write_new(
                &record,
                &format!("name={name}\nrevoked_unix={now}\n"),
                0o644,
            )?;
        }
    }
    Ok(())
}

/// A device's revocation mark in a directory from before the role split.
fn legacy_marker(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("revoked").join(name)
}

/// How long a CRL the operator's commands write stays current; the CA
/// service re-signs it well before, on its own `--crl-lifetime`.
pub const CRL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Where each revoked certificate's serial is kept for good.
const REVOKED_SERIALS: &str = "revoked-serials";

/// The number of the next CRL: the clock's seconds, and always above the
/// number of the CRL there is now, so that an ingest, which never takes a
/// list older than the one it holds, takes every new one.
/// The last number is also kept in `crl.number`, so that a lost or broken
/// `crl.pem` cannot make the numbers go back.
fn next_crl_number(dir: &Path) -> u64 {
    let listed = std::fs::read(dir.join(CRL))
        .ok()
        .and_then(|pem| sealcam_transport::crl::crl_info_of_pem(&pem).ok())
        .map(|info| info.number)
        .unwrap_or(0);
    let kept = std::fs::read_to_string(dir.join(CRL_NUMBER))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    unix_now().max(listed.max(kept).saturating_add(1))
}

/// The number of the last CRL written.
const CRL_NUMBER: &str = "crl.number";

/// Serial numbers (hex) of the certificates issued to `name` so far, in
/// the role's `issued` directory `issued`.
fn issued_serials(issued: &Path, name: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(issued.join(name))
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
/// those records and the role split) every certificate issued to an
/// identity revoked now.
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
        // Per-role directories hold marks whose serials revoke() recorded.
        if !entry.path().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let when = revoked_when(&entry.path()).unwrap_or_else(unix_now);
        out.extend(
            issued_serials(&dir.join("issued"), &name)
                .into_iter()
                .map(|s| (s, when)),
        );
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}
