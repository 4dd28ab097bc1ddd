//! The audit key pair: the ingest signs each segment's seal with
//! `audit.key`; verifiers need only `audit.pub`.

use std::path::Path;

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};

use super::{AuditError, AUDIT_KEY, AUDIT_PUB};

fn key_err(path: &Path, reason: impl ToString) -> AuditError {
    AuditError::Key {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Creates the audit key pair in `pki_dir` unless it is there.
pub fn ensure_key(pki_dir: &Path) -> Result<(), AuditError> {
    let key_path = pki_dir.join(AUDIT_KEY);
    if key_path.exists() {
        return Ok(());
    }
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_err(&key_path, e))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| key_err(&key_path, e))?;
    sealcam_base::durable::create_new(&key_path, pem.as_bytes(), 0o600)
        .map_err(|e| key_err(&key_path, e))?;
    let pub_path = pki_dir.join(AUDIT_PUB);
    sealcam_base::durable::create_new(&pub_path, public.as_bytes(), 0o644)
        .map_err(|e| key_err(&pub_path, e))
}

pub fn load_signing_key(pki_dir: &Path) -> Result<SigningKey, AuditError> {
    let path = pki_dir.join(AUDIT_KEY);
    let pem = std::fs::read_to_string(&path).map_err(|e| key_err(&path, e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| key_err(&path, e))
}

pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_err(path, e))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| key_err(path, e))
}
