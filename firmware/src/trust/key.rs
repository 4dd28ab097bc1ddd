//! The device key, opened where the config says it lives: in the TPM, or
//! (development only, warned about) in a file.

use std::sync::Arc;

use sealcam_hal::identity::{KeyError, SoftwareKey};
use sealcam_hal::tpm::{TpmError, TpmKey};
use sealcam_transport::ExternalSigner;

use crate::config::KeySource;

/// Why the device key could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum DeviceKeyError {
    #[error(transparent)]
    File(#[from] KeyError),
    #[error(transparent)]
    Tpm(#[from] TpmError),
}

/// Opens the device key where the config says it lives.
pub fn open(source: &KeySource) -> Result<Arc<dyn ExternalSigner>, DeviceKeyError> {
    Ok(open_with_tpm(source)?.signer)
}

/// The device key, and the TPM it lives in, if it does.
pub struct OpenedKey {
    pub signer: Arc<dyn ExternalSigner>,
    /// For what else the camera keeps in the TPM: the recipient-set floor
    /// (`sealcam_hal::nv`).
    pub tpm: Option<Arc<TpmKey>>,
}

/// [`open`], with the TPM itself when the key lives in one.
pub fn open_with_tpm(source: &KeySource) -> Result<OpenedKey, DeviceKeyError> {
    match source {
        KeySource::Tpm(tpm) => {
            let key = Arc::new(TpmKey::open(tpm)?);
            Ok(OpenedKey {
                signer: key.clone(),
                tpm: Some(key),
            })
        }
        KeySource::InsecureSoftware(path) => {
            tracing::warn!(
                key = %path.display(),
                "INSECURE: the device key is a software key in a file and can be copied off this camera; use the TPM in production"
            );
            Ok(OpenedKey {
                signer: Arc::new(SoftwareKey::load(path)?),
                tpm: None,
            })
        }
    }
}

/// The TPM's endorsement-key certificate (DER), when the key is in a TPM
/// that has one.
pub type EkCertificate = Option<Vec<u8>>;

/// [`open`], with the TPM's endorsement-key certificate.
pub fn open_with_ek(
    source: &KeySource,
) -> Result<(Arc<dyn ExternalSigner>, EkCertificate), DeviceKeyError> {
    match source {
        KeySource::Tpm(tpm) => {
            let key = TpmKey::open(tpm)?;
            let ek = key.ek_certificate()?;
            Ok((Arc::new(key), ek))
        }
        KeySource::InsecureSoftware(_) => Ok((open(source)?, None)),
    }
}
