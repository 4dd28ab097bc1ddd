//! The newest release this camera has proved (booted on trial and marked
//! good): a high-water mark. The installer refuses anything older, even
//! after the camera fell back to an older slot: a validly signed bundle of
//! a release between the one it runs and the one it proved is still a
//! downgrade from what this camera is known to run.
//!
//! Kept in the installer's root-only directory beside the releases given
//! up ([`super::given_up`]).

use std::path::{Path, PathBuf};

use sealcam_api::update::compare_versions;

use super::UpdateError;
use crate::config::UpdateConfig;

/// The mark's file.
pub fn path(cfg: &UpdateConfig) -> PathBuf {
    cfg.install_dir.join("proven.json")
}

/// The newest release proved here, if any (or if the file is unreadable:
/// the running release's version check still refuses older ones).
pub fn read(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Raises the mark to `version` if it is newer, durably.
pub fn note(path: &Path, version: &str) -> Result<(), UpdateError> {
    if read(path).is_some_and(|v| compare_versions(&v, version).is_ge()) {
        return Ok(());
    }
    super::write_json(path, version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_mark_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proven.json");
        assert_eq!(read(&p), None);
        note(&p, "1.10").unwrap();
        note(&p, "1.9").unwrap();
        assert_eq!(read(&p).as_deref(), Some("1.10"));
        note(&p, "2.0~rc1").unwrap();
        assert_eq!(read(&p).as_deref(), Some("2.0~rc1"));
        note(&p, "2.0").unwrap();
        assert_eq!(read(&p).as_deref(), Some("2.0"));
    }
}
