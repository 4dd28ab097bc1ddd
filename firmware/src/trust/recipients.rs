//! Whom the camera seals to, and when that changes.
//!
//! With an owner-signed set, the camera accepts a set only if the owner's
//! signature holds and its version is not older than the newest it has
//! accepted: kept in the spool, so a reboot does not reset it, and, where
//! the device key is in a TPM, in the TPM's NV memory too
//! ([`sealcam_hal::nv`]), so that whoever takes the SD card, deletes the
//! spool's record and puts an older set back cannot roll it back. The file is
//! checked again before every fragment: a new set takes effect at the next
//! fragment, and a rejected one leaves the current set in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sealcam_format::recipients::SignedRecipientSet;
use sealcam_format::{ConsumerPublicKey, DeviceVerifyingKey};
use sealcam_hal::nv::RECIPIENT_FLOOR_INDEX;
use sealcam_hal::tpm::{TpmError, TpmKey};

use crate::config::RecipientSource;
use crate::pipeline::spool::{Spool, SpoolError};

#[derive(Debug, thiserror::Error)]
pub enum RecipientError {
    #[error("cannot read recipient set {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recipient set {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("recipient set {path} has version {version}, older than version {accepted} this camera already accepted; sign a set with a higher version")]
    Rollback {
        path: PathBuf,
        version: u64,
        accepted: u64,
    },
    #[error("recipient set {path} has version {version}, older than version {accepted} this camera's TPM holds as accepted (NV index {RECIPIENT_FLOOR_INDEX:#010x}; files deleted or restored on its disk cannot lower it); sign a set with a higher version")]
    RollbackInTpm {
        path: PathBuf,
        version: u64,
        accepted: u64,
    },
    #[error("cannot keep the recipient-set floor in the TPM: {0}")]
    Tpm(#[source] TpmError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The recipients in force, and where newer ones may come from.
pub struct RecipientWatcher {
    source: RecipientSource,
    spool: Arc<Spool>,
    /// Where the floor is kept beyond the disk's reach, if anywhere.
    tpm: Option<Arc<TpmKey>>,
    keys: Vec<ConsumerPublicKey>,
    version: u64,
    /// (modified, length) of the set file when last read.
    stamp: Option<(Option<SystemTime>, u64)>,
}

fn stamp(path: &Path) -> Option<(Option<SystemTime>, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// Reads and verifies a signed set.
fn load(
    path: &Path,
    owner: &DeviceVerifyingKey,
) -> Result<(Vec<ConsumerPublicKey>, u64), RecipientError> {
    let bytes = std::fs::read(path).map_err(|source| RecipientError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| RecipientError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let set = SignedRecipientSet::parse(&bytes)
        .map_err(|e| invalid(e.to_string()))?
        .verify(owner)
        .map_err(|e| invalid(e.to_string()))?;
    Ok((
        set.recipients.into_iter().map(|r| r.key).collect(),
        set.version,
    ))
}

impl RecipientWatcher {
    /// Loads the recipients; a signed set must verify and must not be older
    /// than the one accepted before.
    pub fn start(
        source: RecipientSource,
        spool: Arc<Spool>,
        tpm: Option<Arc<TpmKey>>,
    ) -> Result<Self, RecipientError> {
        let mut w = Self {
            source,
            spool,
            tpm,
            keys: Vec::new(),
            version: 0,
            stamp: None,
        };
        match &w.source {
            RecipientSource::Development(keys) => w.keys = keys.clone(),
            RecipientSource::Signed { set, owner } => {
                let path = set.clone();
                w.stamp = stamp(&path);
                let (keys, version) = load(&path, owner)?;
                w.accept(&path, keys, version)?;
            }
        }
        Ok(w)
    }

    fn accept(
        &mut self,
        path: &Path,
        keys: Vec<ConsumerPublicKey>,
        version: u64,
    ) -> Result<(), RecipientError> {
        let accepted = self.spool.accepted_recipient_version()?;
        let in_tpm = match &self.tpm {
            Some(tpm) => tpm
                .nv_floor(RECIPIENT_FLOOR_INDEX)
                .map_err(RecipientError::Tpm)?,
            None => None,
        };
        if let Some(held) = in_tpm.filter(|held| version < *held) {
            return Err(RecipientError::RollbackInTpm {
                path: path.to_owned(),
                version,
                accepted: held,
            });
        }
        if version < accepted {
            return Err(RecipientError::Rollback {
                path: path.to_owned(),
                version,
                accepted,
            });
        }
        // The TPM first: a crash between the two leaves the floor at least
        // as high as the disk's.
        if let Some(tpm) = &self.tpm {
            if in_tpm.is_none_or(|held| version > held) {
                tpm.nv_raise(RECIPIENT_FLOOR_INDEX, version)
                    .map_err(RecipientError::Tpm)?;
            }
        }
        if version > accepted {
            self.spool.accept_recipient_version(version)?;
        }
        let ids: Vec<String> = keys.iter().map(|k| k.id().to_string()).collect();
        tracing::info!(version, recipients = %ids.join(","), "recipient set in force");
        self.keys = keys;
        self.version = version;
        Ok(())
    }

    /// Re-reads a signed set whose file changed. A newer valid set takes
    /// effect; anything else is reported and the current set stays.
    pub fn refresh(&mut self) {
        let RecipientSource::Signed { set, owner } = &self.source else {
            return;
        };
        let now = stamp(set);
        if now == self.stamp {
            return;
        }
        self.stamp = now;
        let (path, owner) = (set.clone(), owner.clone());
        let result = load(&path, &owner).and_then(|(keys, version)| {
            if version <= self.version {
                return Err(RecipientError::Rollback {
                    path: path.clone(),
                    version,
                    accepted: self.version,
                });
            }
            self.accept(&path, keys, version)
        });
        if let Err(e) = result {
            tracing::error!(error = %e, version_in_force = self.version, "new recipient set refused; the current one stays in force");
        }
    }

    pub fn keys(&self) -> &[ConsumerPublicKey] {
        &self.keys
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealcam_format::recipients::{Recipient, RecipientSet};
    use sealcam_format::{ConsumerSecretKey, Name};

    fn signed(owner: &p256::ecdsa::SigningKey, version: u64, n: usize) -> Vec<u8> {
        let recipients = (0..n)
            .map(|i| Recipient {
                label: format!("r{i}"),
                key: ConsumerSecretKey::generate(&mut rand::thread_rng())
                    .public()
                    .clone(),
            })
            .collect();
        RecipientSet {
            version,
            issued_unix: 1,
            recipients,
        }
        .sign(owner)
        .unwrap()
    }

    #[test]
    fn newer_sets_take_effect_older_and_forged_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), &Name::new("front").unwrap()).unwrap());
        let owner = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let mallory = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let path = dir.path().join("set.rset");
        std::fs::write(&path, signed(&owner, 1, 1)).unwrap();
        let source = RecipientSource::Signed {
            set: path.clone(),
            owner: DeviceVerifyingKey(*owner.verifying_key()),
        };
        let mut w = RecipientWatcher::start(source.clone(), spool.clone(), None).unwrap();
        assert_eq!((w.version(), w.keys().len()), (1, 1));

        // Each write gets a different length, so the change is seen even
        // within one timestamp tick.
        std::fs::write(&path, signed(&owner, 2, 2)).unwrap();
        w.refresh();
        assert_eq!((w.version(), w.keys().len()), (2, 2));
        std::fs::write(&path, signed(&owner, 1, 3)).unwrap();
        w.refresh();
        assert_eq!(w.version(), 2, "rollback refused");
        std::fs::write(&path, signed(&mallory, 9, 4)).unwrap();
        w.refresh();
        assert_eq!(w.version(), 2, "forgery refused");

        // After a restart the accepted version still rules.
        std::fs::write(&path, signed(&owner, 1, 1)).unwrap();
        assert!(matches!(
            RecipientWatcher::start(source, spool, None),
            Err(RecipientError::Rollback {
                version: 1,
                accepted: 2,
                ..
            })
        ));
    }
}
