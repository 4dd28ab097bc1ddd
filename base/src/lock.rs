//! Exclusive locks on a lock file (`flock`), held by whoever changes a
//! file that several processes read, change and rewrite.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An exclusive `flock` on a lock file, released on drop (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

/// Which step of taking a lock failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the lock file: {0}")]
    Open(#[source] io::Error),
    #[error("cannot lock the lock file: {0}")]
    Lock(#[source] io::Error),
}

impl LockError {
    /// The step that failed, for messages: `open` or `lock`.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Open(_) => "open",
            Self::Lock(_) => "lock",
        }
    }

    /// The underlying I/O error.
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Open(e) | Self::Lock(e) => e,
        }
    }
}

/// Waits for, then holds, the exclusive lock on `path` (created with
/// `mode` if missing; its contents are never read or changed).
pub fn lock_exclusive(path: &Path, mode: u32) -> Result<FileLock, LockError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(mode)
        .open(path)
        .map_err(LockError::Open)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| LockError::Lock(e.into()))?;
    Ok(FileLock { _file: file })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = lock_exclusive(&path, 0o600).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _second = lock_exclusive(&p, 0o600).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }
}
