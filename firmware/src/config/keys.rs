//! The I/O of loading a config: reading the key files a validated config
//! names. Runs after every section is validated, so a config with a bad
//! field is refused without touching the files it names.

use p256::pkcs8::DecodePublicKey;
use sealcam_format::{ConsumerPublicKey, DeviceVerifyingKey};

use super::sections::{Fields, RecipientFiles};
use super::{ConfigError, RecipientSource};

/// Reads the owner's key or the consumer keys `files` names.
pub(super) fn recipients(
    f: &Fields,
    files: RecipientFiles,
) -> Result<RecipientSource, ConfigError> {
    match files {
        RecipientFiles::Signed { set, owner } => {
            let field = "recipients.owner_public_key";
            let pem = std::fs::read_to_string(&owner)
                .map_err(|e| f.error(field, format!("cannot read {}: {e}", owner.display())))?;
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
                f.error(
                    field,
                    format!("{}: not a P-256 public key: {e}", owner.display()),
                )
            })?;
            Ok(RecipientSource::Signed {
                set,
                owner: DeviceVerifyingKey(key),
            })
        }
        RecipientFiles::Development(paths) => {
            let field = "recipients.public_keys";
            let mut keys = Vec::with_capacity(paths.len());
            for p in paths {
                let pem = std::fs::read_to_string(&p)
                    .map_err(|e| f.error(field, format!("cannot read {}: {e}", p.display())))?;
                let key = ConsumerPublicKey::from_pem(&pem)
                    .map_err(|e| f.error(field, format!("{}: {e}", p.display())))?;
                keys.push(key);
            }
            Ok(RecipientSource::Development(keys))
        }
    }
}
