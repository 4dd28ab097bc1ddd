//! The releases this camera has given up: each was installed, booted on
//! trial, and did not prove itself (the bootloader fell back, or the
//! health check marked it bad). The installer refuses them from then on,
//! so that a broken release still offered by the server is not installed,
//! tried and fallen back from at every check, rebooting the camera each
//! time. A newer release is needed.
//!
//! Kept in the installer's root-only directory: sealcamd's user cannot
//! clear it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::UpdateError;
use crate::config::UpdateConfig;

/// The list's file.
pub fn path(cfg: &UpdateConfig) -> PathBuf {
    cfg.install_dir.join("given-up.json")
}

/// The versions given up; none when the file is missing or unreadable
/// (the running release's version check still refuses older ones).
pub fn read(path: &Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Adds `version` to the list, durably.
pub fn add(path: &Path, version: &str) -> Result<(), UpdateError> {
    let mut versions = read(path);
    if !versions.insert(version.to_owned()) {
        return Ok(());
    }
    super::write_json(path, &versions)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_are_remembered_once_and_a_broken_list_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("given-up.json");
        assert!(read(&p).is_empty());
        add(&p, "2.0").unwrap();
        add(&p, "2.0").unwrap();
        add(&p, "2.1").unwrap();
        assert_eq!(read(&p).into_iter().collect::<Vec<_>>(), ["2.0", "2.1"]);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read(&p).is_empty());
    }
}
