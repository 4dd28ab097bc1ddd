//! The CA's own audit log: every PKI operation, by the service or by an
//! operator command run on the CA's directory, leaves a signed record.
//!
//! Each record is one create-only file, `<ca>/audit/<n:012>.json`, written
//! durably under a lock of its own (`audit/.lock`): its number, time, actor
//! (`operator:USER` or `ca-service`), action, target and detail, the SHA-256
//! of the previous record's file, and an ECDSA P-256 signature over the rest
//! by the CA's audit key (`audit.key`, 0600; verifiers need only
//! `audit.pub`). Changing a record breaks its signature, changing its bytes
//! in any other way breaks the next record's link, and removing one leaves a
//! hole in the numbering. The log's head (`sealcam-ca audit verify` prints
//! it) is what an operator keeps elsewhere to see a cut tail.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::{create_dir, read, write_new};
use crate::{FleetCa, PkiError};

pub const CA_AUDIT_KEY: &str = "audit.key";
pub const CA_AUDIT_PUB: &str = "audit.pub";
const AUDIT_DIR: &str = "audit";

/// One record of the CA's audit log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaRecord {
    pub n: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// `operator:USER`, `operator` or `ca-service`.
    pub actor: String,
    /// `init`, `device-add`, `device-approve`, `device-certificate`,
    /// `device-revoke`, `consumer-issue`, `consumer-renew`,
    /// `consumer-revoke`, `ingest-issue`, `ingest-revoke`, `crl`.
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    /// SHA-256 (hex) of the previous record's file; zeros for the first.
    pub prev: String,
    /// ECDSA P-256 (hex) over this record with `signature` empty.
    pub signature: String,
}

/// The outcome of [`verify_log`].
#[derive(Debug)]
pub struct LogSummary {
    pub records: Vec<CaRecord>,
    /// The hash of the last record's file: the head to keep elsewhere.
    pub head: Option<String>,
    pub problems: Vec<String>,
}

fn key_err(path: &Path, reason: impl ToString) -> PkiError {
    PkiError::BadFile {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The audit key of the CA in `dir`, made on first use.
fn signing_key(dir: &Path) -> Result<SigningKey, PkiError> {
    let path = dir.join(CA_AUDIT_KEY);
    if !path.exists() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| key_err(&path, e))?;
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| key_err(&path, e))?;
        match write_new(&path, &pem, 0o600) {
            // Another process made it first: use theirs.
            Ok(()) | Err(PkiError::Exists { .. }) => {}
            Err(e) => return Err(e),
        }
        match write_new(&dir.join(CA_AUDIT_PUB), &public, 0o644) {
            Ok(()) | Err(PkiError::Exists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    SigningKey::from_pkcs8_pem(&read(&path)?).map_err(|e| key_err(&path, e))
}

/// The CA audit log's public key from a PEM file (`<ca>/audit.pub`).
pub fn load_audit_pub(path: &Path) -> Result<VerifyingKey, PkiError> {
    VerifyingKey::from_public_key_pem(&read(path)?).map_err(|e| key_err(path, e))
}

fn record_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(AUDIT_DIR).join(format!("{n:012}.json"))
}

/// The records' numbers present, ascending.
fn numbers(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir.join(AUDIT_DIR))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

fn unsigned_bytes(r: &CaRecord) -> Vec<u8> {
    let mut r = r.clone();
    r.signature.clear();
    serde_json::to_vec(&r).unwrap_or_default()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl FleetCa {
    /// Appends a signed record of `action` on `target` by this handle's actor.
    pub(crate) fn audit(
        &self,
        action: &str,
        target: Option<&str>,
        detail: Option<String>,
    ) -> Result<(), PkiError> {
        let dir = self.dir();
        let key = signing_key(dir)?;
        let audit = dir.join(AUDIT_DIR);
        create_dir(&audit)?;
        let lock_path = audit.join(".lock");
        let _lock =
            sealcam_base::lock::lock_exclusive(&lock_path, 0o600).map_err(|e| PkiError::Io {
                op: e.op(),
                path: lock_path.clone(),
                source: e.into_io(),
            })?;
        let (n, prev) = match numbers(dir).last() {
            Some(&last) => {
                let bytes =
                    std::fs::read(record_path(dir, last)).map_err(|source| PkiError::Io {
                        op: "read",
                        path: record_path(dir, last),
                        source,
                    })?;
                (last + 1, hex::encode(Sha256::digest(&bytes)))
            }
            None => (0, hex::encode([0u8; 32])),
        };
        let mut record = CaRecord {
            n,
            time: now_rfc3339(),
            actor: self.actor().to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            detail,
            prev,
            signature: String::new(),
        };
        let sig: Signature = key.sign(&unsigned_bytes(&record));
        record.signature = hex::encode(sig.to_bytes());
        let mut line = serde_json::to_string(&record).map_err(|e| key_err(&audit, e))?;
        line.push('\n');
        write_new(&record_path(dir, n), &line, 0o644)
    }
}

/// Reads and verifies the CA audit log of `dir` with `key`.
pub fn verify_log(dir: &Path, key: &VerifyingKey) -> LogSummary {
    let mut s = LogSummary {
        records: Vec::new(),
        head: None,
        problems: Vec::new(),
    };
    let mut prev = hex::encode([0u8; 32]);
    for (expected, n) in numbers(dir).into_iter().enumerate() {
        if n != expected as u64 {
            s.problems
                .push(format!("record {expected} is missing (next present: {n})"));
            break;
        }
        let path = record_path(dir, n);
        let Ok(bytes) = std::fs::read(&path) else {
            s.problems
                .push(format!("{} cannot be read", path.display()));
            break;
        };
        let record: CaRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                s.problems.push(format!("record {n} is not valid: {e}"));
                break;
            }
        };
        if record.n != n {
            s.problems
                .push(format!("record {n} is numbered {}", record.n));
            break;
        }
        if record.prev != prev {
            s.problems.push(format!(
                "record {n} does not follow record {} (changed or replaced)",
                n.saturating_sub(1)
            ));
            break;
        }
        let signed = hex::decode(&record.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .is_some_and(|sig| key.verify(&unsigned_bytes(&record), &sig).is_ok());
        if !signed {
            s.problems.push(format!(
                "record {n} is not signed by the CA's audit key (changed)"
            ));
            break;
        }
        prev = hex::encode(Sha256::digest(&bytes));
        s.head = Some(prev.clone());
        s.records.push(record);
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_chain_and_verify_and_an_edit_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::new(tmp.path()).with_actor("operator:test");
        ca.audit("device-add", Some("cam1"), None).unwrap();
        ca.audit("device-revoke", Some("cam1"), Some("1 certificate".into()))
            .unwrap();
        let key = load_audit_pub(&tmp.path().join(CA_AUDIT_PUB)).unwrap();
        let s = verify_log(tmp.path(), &key);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[1].actor, "operator:test");

        let first = record_path(tmp.path(), 0);
        let edited = std::fs::read_to_string(&first)
            .unwrap()
            .replace("cam1", "cam2");
        std::fs::write(&first, edited).unwrap();
        let s = verify_log(tmp.path(), &key);
        assert!(s.problems[0].contains("not signed"), "{:?}", s.problems);
    }
}
