//! The releases this camera has given up: each was installed, booted on
//! trial, and did not prove itself. The installer refuses them, so that a
//! broken release still offered by the server is not installed, tried and
//! fallen back from at every check, rebooting the camera each time.
//!
//! How long depends on what was seen:
//! * The boot loader fell back (the slot hung, panicked or lost power
//!   before the health check judged it), or RAUC in it did not answer:
//!   the release is broken on this camera, and refused for good
//!   (`given-up.json`, a list of versions).
//! * The slot ran, but no fragment was acknowledged within the health
//!   timeout. That is what a release that cannot record or upload looks
//!   like, and also what an outage of the network or the ingest looks like
//!   (or someone on the path dropping the camera's traffic for those
//!   minutes). The release waits [`WAITS`]`[0]` (`waiting.json`), then is
//!   tried again; after another unproven trial it waits [`WAITS`]`[1]`;
//!   after the third it is refused for good. An outage during a trial
//!   costs a release a few hours, not the camera's future updates.
//!
//! Two files, not one: the release in the other slot, which runs after a
//! fall back, may be older than this scheme and reads `given-up.json` as a
//! list; it keeps reading it right, and knows nothing of the waits (it
//! gives the release up for good, as it always did).
//!
//! Versions are matched as [`compare_versions`] orders them, so `2.0-0`
//! is refused with `2.0`. Kept in the installer's root-only directory:
//! sealcamd's user cannot clear them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sealcam_api::update::compare_versions;
use serde::{Deserialize, Serialize};

use super::UpdateError;
use crate::config::UpdateConfig;

/// How long an unproven release waits before its next trial, after its
/// first and its second; the third unproven trial gives it up for good.
pub const WAITS: [u64; 2] = [6 * 3600, 24 * 3600];

/// A release waiting after unproven trials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiting {
    /// Unproven trials so far.
    pub trials: u32,
    /// When it may be tried again (Unix seconds).
    pub retry_after_unix: u64,
}

/// What the installer does with a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not given up, or its wait is over.
    Install,
    /// Given up for good.
    Never,
    /// Given up until this time (Unix seconds).
    Until(u64),
}

/// The list of releases given up for good.
pub fn path(cfg: &UpdateConfig) -> PathBuf {
    list_in(&cfg.install_dir)
}

fn list_in(install_dir: &Path) -> PathBuf {
    install_dir.join("given-up.json")
}

fn waiting_in(install_dir: &Path) -> PathBuf {
    install_dir.join("waiting.json")
}

/// The versions given up for good; none when the file is missing or
/// unreadable (the running release's version check still refuses older
/// ones).
pub fn read(path: &Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The versions waiting; none when the file is missing or unreadable.
pub fn read_waiting(path: &Path) -> BTreeMap<String, Waiting> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Gives `version` up for good, durably.
pub fn add(path: &Path, version: &str) -> Result<(), UpdateError> {
    let mut versions = read(path);
    if !versions.insert(version.to_owned()) {
        return Ok(());
    }
    super::write_json(path, &versions)
}

/// Records an unproven trial of `version` that ended at `now` (Unix
/// seconds), in the installer's directory `install_dir`: the release
/// waits, or after its third such trial is given up for good. Returns what
/// the installer will do with it.
pub fn add_unproven(install_dir: &Path, version: &str, now: u64) -> Result<Verdict, UpdateError> {
    let waiting_file = waiting_in(install_dir);
    let mut waiting = read_waiting(&waiting_file);
    let trials = waiting
        .get(version)
        .map_or(1, |w| w.trials.saturating_add(1));
    let wait = usize::try_from(trials.saturating_sub(1))
        .ok()
        .and_then(|i| WAITS.get(i));
    let verdict = match wait {
        Some(w) => {
            let until = now.saturating_add(*w);
            waiting.insert(
                version.to_owned(),
                Waiting {
                    trials,
                    retry_after_unix: until,
                },
            );
            Verdict::Until(until)
        }
        None => {
            add(&list_in(install_dir), version)?;
            waiting.remove(version);
            Verdict::Never
        }
    };
    super::write_json(&waiting_file, &waiting)?;
    Ok(verdict)
}

/// What the installer does with `version` at `now` (Unix seconds), from
/// the lists in `install_dir`.
pub fn verdict(install_dir: &Path, version: &str, now: u64) -> Verdict {
    let same = |v: &String| compare_versions(v, version).is_eq();
    if read(&list_in(install_dir)).iter().any(same) {
        return Verdict::Never;
    }
    let waiting = read_waiting(&waiting_in(install_dir));
    match waiting
        .iter()
        .filter(|(v, _)| same(v))
        .map(|(_, w)| w.retry_after_unix)
        .max()
    {
        Some(until) if now < until => Verdict::Until(until),
        _ => Verdict::Install,
    }
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
        // The file stays the list every release reads.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), r#"["2.0","2.1"]"#);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read(&p).is_empty());
    }

    #[test]
    fn an_unproven_release_waits_longer_each_time_then_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path();
        assert_eq!(verdict(c, "2.0", 0), Verdict::Install);
        let first = add_unproven(c, "2.0", 1000).unwrap();
        assert_eq!(first, Verdict::Until(1000 + WAITS[0]));
        assert_eq!(verdict(c, "2.0", 1000 + WAITS[0] - 1), first);
        assert_eq!(verdict(c, "2.0", 1000 + WAITS[0]), Verdict::Install);
        // The same release however it is written.
        assert_eq!(verdict(c, "2.0-0", 1000), first);
        assert_eq!(
            add_unproven(c, "2.0", 50_000).unwrap(),
            Verdict::Until(50_000 + WAITS[1])
        );
        assert_eq!(add_unproven(c, "2.0", 200_000).unwrap(), Verdict::Never);
        assert_eq!(verdict(c, "2.0", u64::MAX), Verdict::Never);
        assert_eq!(verdict(c, "2.00", 0), Verdict::Never);
        assert!(read(&list_in(c)).contains("2.0"));
        assert!(read_waiting(&waiting_in(c)).is_empty());
        assert_eq!(verdict(c, "2.1", 0), Verdict::Install);
    }
}
