//! Device keys.
//!
//! [`SoftwareKey`] is the development key: a P-256 private key in a file
//! (PKCS#8 PEM, mode 0600). It is only ever used when the operator asked for
//! it explicitly (`insecure_software_key`), and the daemon warns at every
//! start, because a key in a file can be copied off the camera.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sealcam_base::durable;
use sealcam_transport::{ExternalSigner, SignerError};

/// What went wrong with a device key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "device key {path} does not exist; run `sealcamd provision --insecure-software-key` first"
    )]
    Missing { path: PathBuf },
    #[error("device key {path} already exists; refusing to replace it (remove it by hand if you mean to re-provision)")]
    Exists { path: PathBuf },
    #[error("cannot access device key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("device key {path} is not a P-256 private key in PKCS#8 PEM form: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("device key {path} is accessible by others (mode {mode:04o}); refusing to use it: run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
}

/// A P-256 device key held in a file. Development only.
pub struct SoftwareKey {
    key: p256::ecdsa::SigningKey,
    path: PathBuf,
}

impl SoftwareKey {
    /// Creates a new key file (mode 0600, never overwriting), durably.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        durable::create_new(path, pem.as_bytes(), 0o600).map_err(|e| {
            if e.already_exists() {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source: e.source,
                }
            }
        })?;
        Ok(Self {
            key,
            path: path.to_owned(),
        })
    }

    /// Loads the key file; refuses one that group or others may access
    /// (any bit of `0o077`), as ssh does, checked on the opened file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::io::Read as _;
        use std::os::unix::fs::PermissionsExt as _;
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyError::Missing {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
        let mut pem = String::new();
        file.read_to_string(&mut pem).map_err(io)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            key,
            path: path.to_owned(),
        })
    }
}

impl ExternalSigner for SoftwareKey {
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError> {
        self.key
            .try_sign(message)
            .map_err(|e| SignerError::Failed(e.to_string()))
    }

    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.key.verifying_key()
    }

    fn describe(&self) -> String {
        format!("INSECURE software key {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_is_private_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let k = SoftwareKey::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            SoftwareKey::create(&path),
            Err(KeyError::Exists { .. })
        ));
        let again = SoftwareKey::load(&path).unwrap();
        assert_eq!(again.verifying_key(), k.verifying_key());
    }

    #[test]
    fn missing_key_says_how_to_fix_it() {
        let err = SoftwareKey::load(Path::new("/nonexistent/device.key"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("sealcamd provision"), "{err}");
    }

    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        SoftwareKey::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SoftwareKey::load(&path).err().unwrap();
        assert!(
            matches!(err, KeyError::Exposed { mode: 0o644, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SoftwareKey::load(&path).is_ok());
    }
}
