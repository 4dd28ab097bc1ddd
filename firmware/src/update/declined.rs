//! The bundles sealcamd declines to fetch: each one the installer refused
//! for good, or until a time (its [`super::outcome::Outcome`]). The
//! installer's outcome names only the last bundle; a server that offered
//! two refused bundles in turn would have the camera fetch each again at
//! every check, hundreds of megabytes each time. So sealcamd keeps every
//! such refusal it has seen, the newest [`KEEP`], in its update directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use super::UpdateError;

/// The file's name in the update directory.
pub const FILE: &str = "declined.json";

/// How many refusals are kept; the oldest goes first.
pub const KEEP: usize = 32;

/// One refused bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declined {
    pub sha256: String,
    /// The installer's outcome line, which the check reports.
    pub line: String,
    /// Declined until this time (Unix seconds); `None`: for good.
    pub until: Option<u64>,
}

/// The refusals kept, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct List(Vec<Declined>);

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

impl List {
    /// The list in `dir`; empty when missing or unreadable (the next
    /// refusal starts it again).
    pub fn read(dir: &Path) -> Self {
        std::fs::read(path(dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Adds the refusal `o` if it declines its bundle at all. Whether the
    /// list changed.
    pub fn note(&mut self, o: &Outcome) -> bool {
        let Some(sha256) = o.sha256.as_deref() else {
            return false;
        };
        let until = match (o.is_final, o.retry_after_unix) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            (false, None) => return false,
        };
        let entry = Declined {
            sha256: sha256.to_owned(),
            line: o.line(),
            until,
        };
        if self.0.last() == Some(&entry) {
            return false;
        }
        self.0.retain(|d| d.sha256 != sha256);
        self.0.push(entry);
        let excess = self.0.len().saturating_sub(KEEP);
        self.0.drain(..excess);
        true
    }

    /// The refusal that declines `sha256` at `now` (Unix seconds).
    pub fn find(&self, sha256: &str, now: u64) -> Option<&Declined> {
        self.0
            .iter()
            .find(|d| d.sha256 == sha256 && d.until.is_none_or(|t| now < t))
    }

    pub fn write(&self, dir: &Path) -> Result<(), UpdateError> {
        super::write_json(&path(dir), self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refused(sha: &str) -> Outcome {
        Outcome::new("refused", Some("1.0"), "older than the running 2.0")
            .of_bundle(Some(sha))
            .for_good()
    }

    #[test]
    fn every_refusal_seen_is_kept_not_only_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let mut list = List::read(dir.path());
        assert!(list.note(&refused(&a)));
        assert!(!list.note(&refused(&a)));
        let waiting = Outcome::new("failed", Some("1.1"), "unproven")
            .of_bundle(Some(&b))
            .until(100);
        assert!(list.note(&waiting));
        list.write(dir.path()).unwrap();
        let list = List::read(dir.path());
        assert!(list.find(&a, u64::MAX).is_some());
        assert!(list.find(&b, 99).is_some());
        assert!(list.find(&b, 100).is_none());
        assert!(list.find(&"cc".repeat(32), 0).is_none());
        // What may pass later, or names no bundle, is not kept.
        let mut list = List::default();
        assert!(!list.note(&Outcome::new("refused", None, "RAUC").of_bundle(Some(&a))));
        assert!(!list.note(&Outcome::new("refused", None, "x").for_good()));
    }

    #[test]
    fn the_list_keeps_the_newest_and_a_damaged_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = List::default();
        for i in 0..KEEP + 5 {
            list.note(&refused(&format!("{i:064}")));
        }
        assert_eq!(list.0.len(), KEEP);
        assert!(list.find(&format!("{:064}", 0), 0).is_none());
        assert!(list.find(&format!("{:064}", KEEP + 4), 0).is_some());
        std::fs::write(path(dir.path()), b"[{").unwrap();
        assert_eq!(List::read(dir.path()), List::default());
    }
}
