//! Reading the owner's keys: the private key (offline, signs recipient
//! sets and device rosters) and its public half (what verifiers and
//! cameras trust).

use std::path::Path;

use anyhow::Context;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use sealcam_format::DeviceVerifyingKey;

/// The owner's private key, from `sealcam owner init`.
pub fn load_private(path: &Path) -> anyhow::Result<p256::ecdsa::SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading owner key {}", path.display()))?;
    p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a P-256 private key in PKCS#8 PEM form: {e}",
            path.display()
        )
    })
}

/// The owner's public key (`OWNER.pub` from `sealcam owner init`).
pub fn load_public(path: &Path) -> anyhow::Result<DeviceVerifyingKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    public_from_pem(&pem).with_context(|| path.display().to_string())
}

/// A P-256 public key in PEM (SubjectPublicKeyInfo) form.
pub fn public_from_pem(pem: &str) -> anyhow::Result<DeviceVerifyingKey> {
    p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
        .map(DeviceVerifyingKey)
        .map_err(|e| anyhow::anyhow!("not a P-256 public key: {e}"))
}
