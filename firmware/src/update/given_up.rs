//! The releases this camera has given up: each was installed, booted on
//! trial, and did not prove itself. The installer refuses them, so that a
//! broken release still offered by the server is not installed, tried and
//! fallen back from at every check, rebooting the camera each time.
//!
//! How long depends on what was seen:
//! * The boot loader fell back (the slot hung, panicked or lost power
//!   before the health check judged it), or RAUC in it did not answer:
//!   the release is broken on this camera, and refused for good.
//! * The slot ran, but no fragment was acknowledged within the health
//!   timeout. That is what a release that cannot record or upload looks
//!   like, and also what an outage of the network or the ingest looks like
//!   (or someone on the path dropping the camera's traffic for those
//!   minutes). The release is refused for [`WAITS`]`[0]`, then tried
//!   again; after another unproven trial for [`WAITS`]`[1]`; after the
//!   third it is refused for good. An outage during a trial costs a
//!   release a few hours, not the camera's future updates.
//!
//! Kept in the installer's root-only directory: sealcamd's user cannot
//! clear it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::UpdateError;
use crate::config::UpdateConfig;

/// How long an unproven release waits before its next trial, after its
/// first and its second; the third unproven trial gives it up for good.
pub const WAITS: [u64; 2] = [6 * 3600, 24 * 3600];

/// What is known of one release given up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenUp {
    /// Trials it did not pass.
    pub trials: u32,
    /// When it may be tried again (Unix seconds); `None`: never.
    #[serde(default)]
    pub retry_after_unix: Option<u64>,
}

impl GivenUp {
    /// Whether it is refused at `now` (Unix seconds).
    pub fn refused_at(&self, now: u64) -> bool {
        self.retry_after_unix.is_none_or(|t| now < t)
    }
}

/// The list's file.
pub fn path(cfg: &UpdateConfig) -> PathBuf {
    cfg.install_dir.join("given-up.json")
}

/// The file as written: by version. A list of versions (as the first
/// releases with updates wrote) is read as all given up for good.
#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    ByVersion(BTreeMap<String, GivenUp>),
    ForGood(Vec<String>),
}

/// The releases given up; none when the file is missing or unreadable
/// (the running release's version check still refuses older ones).
pub fn read(path: &Path) -> BTreeMap<String, GivenUp> {
    let file = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<File>(&b).ok());
    match file {
        Some(File::ByVersion(map)) => map,
        Some(File::ForGood(list)) => list
            .into_iter()
            .map(|v| {
                let g = GivenUp {
                    trials: 1,
                    retry_after_unix: None,
                };
                (v, g)
            })
            .collect(),
        None => BTreeMap::new(),
    }
}

/// Gives `version` up for good, durably.
pub fn add_for_good(path: &Path, version: &str) -> Result<GivenUp, UpdateError> {
    update(path, version, |g| GivenUp {
        trials: g.map_or(1, |g| g.trials.saturating_add(1)),
        retry_after_unix: None,
    })
}

/// Gives `version` up after a trial without an acknowledged fragment that
/// ended at `now` (Unix seconds): until a later time, or for good after
/// the third.
pub fn add_unproven(path: &Path, version: &str, now: u64) -> Result<GivenUp, UpdateError> {
    update(path, version, |g| {
        // A release already refused for good stays so.
        if g.is_some_and(|g| g.retry_after_unix.is_none()) {
            return GivenUp {
                trials: g.map_or(1, |g| g.trials.saturating_add(1)),
                retry_after_unix: None,
            };
        }
        let trials = g.map_or(1, |g| g.trials.saturating_add(1));
        let wait = usize::try_from(trials - 1).ok().and_then(|i| WAITS.get(i));
        GivenUp {
            trials,
            retry_after_unix: wait.map(|w| now.saturating_add(*w)),
        }
    })
}

fn update(
    path: &Path,
    version: &str,
    next: impl FnOnce(Option<&GivenUp>) -> GivenUp,
) -> Result<GivenUp, UpdateError> {
    let mut all = read(path);
    let g = next(all.get(version));
    all.insert(version.to_owned(), g.clone());
    super::write_json(path, &all)?;
    Ok(g)
}

/// Now, in Unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_release_that_falls_back_is_given_up_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("given-up.json");
        assert!(read(&p).is_empty());
        add_for_good(&p, "2.0").unwrap();
        let g = &read(&p)["2.0"];
        assert_eq!(g.retry_after_unix, None);
        assert!(g.refused_at(u64::MAX));
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read(&p).is_empty());
    }

    #[test]
    fn an_unproven_release_waits_longer_each_time_then_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("given-up.json");
        let first = add_unproven(&p, "2.0", 1000).unwrap();
        assert_eq!(first.trials, 1);
        assert_eq!(first.retry_after_unix, Some(1000 + WAITS[0]));
        assert!(first.refused_at(1000 + WAITS[0] - 1));
        assert!(!first.refused_at(1000 + WAITS[0]));
        let second = add_unproven(&p, "2.0", 50_000).unwrap();
        assert_eq!(second.retry_after_unix, Some(50_000 + WAITS[1]));
        let third = add_unproven(&p, "2.0", 200_000).unwrap();
        assert_eq!((third.trials, third.retry_after_unix), (3, None));
        assert!(third.refused_at(u64::MAX));
        // Others are untouched; one given up for good stays so.
        add_for_good(&p, "2.1").unwrap();
        let again = add_unproven(&p, "2.1", 0).unwrap();
        assert_eq!(again.retry_after_unix, None);
        assert_eq!(read(&p).len(), 2);
    }

    #[test]
    fn the_list_an_earlier_release_wrote_is_given_up_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("given-up.json");
        std::fs::write(&p, br#"["2.0","2.1"]"#).unwrap();
        let all = read(&p);
        assert_eq!(all.keys().collect::<Vec<_>>(), ["2.0", "2.1"]);
        assert!(all.values().all(|g| g.retry_after_unix.is_none()));
    }
}
