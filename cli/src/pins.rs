//! The newest roster version seen per owner key, so that a hostile ingest
//! (or a stale copy) cannot roll a verifier back to an older roster that
//! still lists a key revoked since.
//!
//! ```text
//! $SEALCAM_STATE_DIR/roster-pins          if set (tests, several profiles)
//! $XDG_STATE_HOME/sealcam/roster-pins     otherwise
//! ~/.local/state/sealcam/roster-pins      without XDG_STATE_HOME
//! ```
//!
//! One line per owner key: `<fingerprint> <version>`. Written whole with
//! [`sealcam_base::durable::replace`], under an exclusive lock on
//! `roster-pins.lock` beside it and after reading it again, so that two
//! verifiers running at once never lose each other's pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sealcam_base::durable::{self, DurableError};

/// The environment variable that puts the state directory elsewhere.
pub const STATE_DIR_ENV: &str = "SEALCAM_STATE_DIR";

const FILE: &str = "roster-pins";
const LOCK: &str = "roster-pins.lock";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("no place for the roster pins: set {STATE_DIR_ENV}, XDG_STATE_HOME or HOME")]
    NoStateDir,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line} is damaged ({text:?}); it holds `<owner fingerprint> <version>` per line: repair or remove the line only if you know the version")]
    Damaged {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] DurableError),
    #[error("refusing version {offered} of the roster signed by owner key {owner} ({source_name}): version {pinned} was seen before (pinned in {pins}). An older roster can still list a key revoked since: this is a rollback, by a hostile ingest or a stale copy. Use the newest roster.")]
    RolledBack {
        owner: String,
        source_name: String,
        offered: u64,
        pinned: u64,
        pins: PathBuf,
    },
}

/// The roster pins, in their file.
pub struct Pins {
    path: PathBuf,
    versions: BTreeMap<String, u64>,
}

/// The state directory, from the environment.
pub fn state_dir() -> Result<PathBuf, PinError> {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var(STATE_DIR_ENV) {
        return Ok(d);
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return Ok(d.join("sealcam"));
    }
    var("HOME")
        .map(|h| h.join(".local/state/sealcam"))
        .ok_or(PinError::NoStateDir)
}

impl Pins {
    /// The pins of the state directory ([`state_dir`]).
    pub fn load() -> Result<Self, PinError> {
        Self::load_from(&state_dir()?)
    }

    pub fn load_from(dir: &Path) -> Result<Self, PinError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(PinError::Read { path, source }),
        };
        let mut versions = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(fp, v)| Some((fp.to_owned(), v.trim().parse::<u64>().ok()?)))
                .filter(|(fp, _)| fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()));
            let Some((fp, v)) = parsed else {
                return Err(PinError::Damaged {
                    path,
                    line: i + 1,
                    text: line.to_owned(),
                });
            };
            let e = versions.entry(fp).or_insert(v);
            *e = (*e).max(v);
        }
        Ok(Self { path, versions })
    }

    /// The newest version seen of `owner`'s roster.
    pub fn pinned(&self, owner: &str) -> Option<u64> {
        self.versions.get(owner).copied()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses `version` if a newer one was seen.
    pub fn check(&self, owner: &str, version: u64, source_name: &str) -> Result<(), PinError> {
        match self.pinned(owner) {
            Some(pinned) if pinned > version => Err(PinError::RolledBack {
                owner: owner.to_owned(),
                source_name: source_name.to_owned(),
                offered: version,
                pinned,
                pins: self.path.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks `version` and pins it if it is the newest seen; the file is
    /// written only when the pin moves.
    pub fn check_and_raise(
        &mut self,
        owner: &str,
        version: u64,
        source_name: &str,
    ) -> Result<(), PinError> {
        self.check(owner, version, source_name)?;
        if self.pinned(owner) == Some(version) {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        std::fs::create_dir_all(&dir).map_err(|source| PinError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let _lock = lock(&dir)?;
        // Another verifier may have raised a pin since this one was read.
        for (fp, v) in Self::load_from(&dir)?.versions {
            let e = self.versions.entry(fp).or_insert(v);
            *e = (*e).max(v);
        }
        self.check(owner, version, source_name)?;
        if self.pinned(owner) == Some(version) {
            return Ok(());
        }
        self.versions.insert(owner.to_owned(), version);
        let text: String = self
            .versions
            .iter()
            .map(|(fp, v)| format!("{fp} {v}\n"))
            .collect();
        durable::replace(&self.path, text.as_bytes())?;
        Ok(())
    }
}

/// Holds the exclusive lock on the pins until dropped.
fn lock(dir: &Path) -> Result<sealcam_base::lock::FileLock, PinError> {
    let path = dir.join(LOCK);
    sealcam_base::lock::lock_exclusive(&path, 0o600).map_err(|e| PinError::Lock {
        path,
        source: e.into_io(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_pin_only_rises_and_refuses_what_is_older() {
        let dir = tempfile::tempdir().unwrap();
        let a = "ab".repeat(32);
        let b = "cd".repeat(32);
        let mut pins = Pins::load_from(dir.path()).unwrap();
        pins.check_and_raise(&a, 3, "x").unwrap();
        pins.check_and_raise(&b, 1, "x").unwrap();
        // Read back from the file.
        let mut pins = Pins::load_from(dir.path()).unwrap();
        assert_eq!(pins.pinned(&a), Some(3));
        pins.check_and_raise(&a, 3, "x").unwrap();
        let err = pins.check_and_raise(&a, 2, "the ingest").unwrap_err();
        assert!(
            matches!(
                err,
                PinError::RolledBack {
                    offered: 2,
                    pinned: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("rollback"), "{err}");
        // Another owner's pin is its own.
        pins.check_and_raise(&b, 5, "x").unwrap();
        assert_eq!(Pins::load_from(dir.path()).unwrap().pinned(&a), Some(3));
    }

    #[test]
    fn two_verifiers_at_once_keep_each_others_pins() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        // Both read the (empty) pins, then each raises its own owner's.
        let mut first = Pins::load_from(dir.path()).unwrap();
        let mut second = Pins::load_from(dir.path()).unwrap();
        first.check_and_raise(&a, 4, "x").unwrap();
        second.check_and_raise(&b, 2, "x").unwrap();
        let now = Pins::load_from(dir.path()).unwrap();
        assert_eq!(now.pinned(&a), Some(4));
        assert_eq!(now.pinned(&b), Some(2));
        // And one that read before a raise cannot pin an older version.
        let mut stale = Pins::load_from(dir.path()).unwrap();
        first.check_and_raise(&a, 6, "x").unwrap();
        assert!(stale.check_and_raise(&a, 5, "the ingest").is_err());
        assert_eq!(Pins::load_from(dir.path()).unwrap().pinned(&a), Some(6));
    }

    #[test]
    fn a_damaged_pin_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "nonsense\n").unwrap();
        assert!(matches!(
            Pins::load_from(dir.path()),
            Err(PinError::Damaged { line: 1, .. })
        ));
    }
}
