//! `sealcamd provision`: the device key and its certificate signing request.
//!
//! The key is created in the TPM (or, in development, in a file), or the
//! existing one is reused: provisioning is idempotent.
//!
//! The CSR is signed by the device key itself (proof of possession) through
//! the same [`ExternalSigner`] interface the TPM key uses, so the private key
//! never has to be read out to make it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RemoteKeyPair, SanType};
use sealcam_format::{DeviceVerifyingKey, Name};
use sealcam_hal::identity::{KeyError, SoftwareKey};
use sealcam_hal::tpm::{self, TpmKey};
use sealcam_transport::{ExternalSigner, Identity};

use crate::config::{Config, KeySource};
use crate::trust::key::DeviceKeyError;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Key(#[from] DeviceKeyError),
    #[error("making the certificate request failed: {0}")]
    Csr(String),
    #[error("cannot write the certificate request {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What provisioning did.
pub struct Provisioned {
    /// The device key, open, for enrollment right after provisioning.
    pub signer: Arc<dyn ExternalSigner>,
    /// The TPM's endorsement-key certificate (DER), when it has one.
    pub ek_certificate: Option<Vec<u8>>,
    /// The TPM that holds the device key, for attestation at enrollment.
    pub tpm: Option<Arc<TpmKey>>,
    pub device: Name,
    pub created: bool,
    pub key_description: String,
    pub fingerprint: String,
    pub csr_path: PathBuf,
}

/// rcgen's view of a key that signs elsewhere.
struct CsrSigner {
    signer: Arc<dyn ExternalSigner>,
    public: Vec<u8>,
}

impl RemoteKeyPair for CsrSigner {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig = self
            .signer
            .sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A CSR for `device`, signed by `signer`, naming the device's identity.
pub fn certificate_request(
    device: &Name,
    signer: Arc<dyn ExternalSigner>,
) -> Result<String, ProvisionError> {
    let public = signer
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let key = KeyPair::from_remote(Box::new(CsrSigner { signer, public }))
        .map_err(|e| ProvisionError::Csr(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, device.as_str());
    params.distinguished_name = dn;
    let uri = Identity::device(device.clone()).uri();
    params.subject_alt_names = vec![SanType::URI(
        uri.try_into()
            .map_err(|e: rcgen::Error| ProvisionError::Csr(e.to_string()))?,
    )];
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| ProvisionError::Csr(e.to_string()))
}

/// Creates the device key (or reuses the existing one) and writes a CSR
/// signed by it. A TPM key is replaced only with `force`.
pub fn provision(
    cfg: &Config,
    force: bool,
    csr_out: Option<&Path>,
) -> Result<Provisioned, ProvisionError> {
    let mut ek_certificate = None;
    let mut tpm_key = None;
    let (signer, created): (Arc<dyn ExternalSigner>, bool) = match &cfg.identity.key {
        KeySource::Tpm(t) => {
            let created = tpm::provision(t, force).map_err(DeviceKeyError::from)?;
            let key = Arc::new(TpmKey::open(t).map_err(DeviceKeyError::from)?);
            ek_certificate = key.ek_certificate().map_err(DeviceKeyError::from)?;
            tpm_key = Some(key.clone());
            (key, matches!(created, tpm::Provisioned::Created(_)))
        }
        KeySource::InsecureSoftware(path) => {
            if force {
                return Err(ProvisionError::Csr(format!(
                    "--force does not replace a software key; remove {} by hand",
                    path.display()
                )));
            }
            match SoftwareKey::load(path) {
                Ok(k) => (Arc::new(k), false),
                Err(KeyError::Missing { .. }) => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(|source| ProvisionError::Write {
                            path: dir.to_owned(),
                            source,
                        })?;
                    }
                    let key = SoftwareKey::create(path).map_err(DeviceKeyError::from)?;
                    (Arc::new(key), true)
                }
                Err(e) => return Err(DeviceKeyError::from(e).into()),
            }
        }
    };
    let csr = certificate_request(&cfg.device, signer.clone())?;
    let csr_path = csr_out
        .map(Path::to_owned)
        .unwrap_or_else(|| cfg.identity.certificate.with_extension("csr"));
    std::fs::write(&csr_path, csr).map_err(|source| ProvisionError::Write {
        path: csr_path.clone(),
        source,
    })?;
    Ok(Provisioned {
        signer: signer.clone(),
        ek_certificate,
        tpm: tpm_key,
        device: cfg.device.clone(),
        created,
        key_description: signer.describe(),
        fingerprint: DeviceVerifyingKey(signer.verifying_key()).fingerprint(),
        csr_path,
    })
}
