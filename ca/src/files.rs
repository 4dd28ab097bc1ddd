//! The CA's files, written through `sealcam_base::durable`: each is wholly
//! there after a crash or not at all, keys created `0600` from the start.

use std::path::Path;

use sealcam_base::durable::{self, AtomicFile, DurableError};
use sealcam_base::lock::{lock_exclusive, FileLock};

use crate::PkiError;

fn pki_error(e: DurableError) -> PkiError {
    if e.already_exists() {
        return PkiError::Exists { path: e.path };
    }
    PkiError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    }
}

/// Writes a new file with `mode`, durably; never over an existing one
/// ([`PkiError::Exists`]).
pub fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    durable::create_new(path, contents.as_bytes(), mode).map_err(pki_error)
}

/// Writes a file with `mode`, durably, replacing any of its name.
pub fn replace(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> Result<(), PkiError> {
    let mut file = AtomicFile::create_with_mode(path, mode).map_err(pki_error)?;
    std::io::Write::write_all(file.file(), contents.as_ref()).map_err(|source| PkiError::Io {
        op: "write",
        path: file.temporary_path().to_owned(),
        source,
    })?;
    file.commit().map_err(pki_error)
}

/// Flushes a directory, so that a removal in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    durable::sync_dir(dir).map_err(pki_error)
}

/// Makes a directory and its parents.
pub fn create_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        op: "create",
        path: dir.to_owned(),
        source,
    })
}

pub fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })
}

/// The CA directory's lock (`ca.lock`), held while a certificate is
/// checked, issued and recorded, and while a revocation is recorded: so a
/// renewal cannot slip a certificate between a revocation's listing of the
/// issued serials and its CRL. Released on drop.
pub(crate) fn lock_dir(dir: &Path) -> Result<FileLock, PkiError> {
    let path = dir.join("ca.lock");
    lock_exclusive(&path, 0o600).map_err(|e| PkiError::Io {
        op: e.op(),
        path,
        source: e.into_io(),
    })
}
