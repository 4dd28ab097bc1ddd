//! The installer's last outcome: written by the installer (root) into the
//! update directory, read by sealcamd, which sends it with each check.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::UpdateError;

/// The file's name in the update directory.
pub const FILE: &str = "outcome.json";

/// What the last installation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `installed`, `refused` or `failed`.
    pub result: String,
    /// The bundle's version, where it was read.
    #[serde(default)]
    pub version: Option<String>,
    /// Why, in one line.
    pub detail: String,
    pub unix_s: u64,
    /// The SHA-256 of the bundle it is about, where the installer had it.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The bundle will never be installed on this camera (by what its
    /// signed manifest says: another compatible, a version not newer, a
    /// release given up): sealcamd does not fetch it again.
    #[serde(default, rename = "final")]
    pub is_final: bool,
    /// The bundle is not installed before this time (Unix seconds): a
    /// release given up after an unproven trial waits
    /// ([`super::given_up`]); sealcamd does not fetch it before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_unix: Option<u64>,
}

impl Outcome {
    pub fn new(result: &str, version: Option<&str>, detail: impl Into<String>) -> Self {
        Self {
            result: result.into(),
            version: version.map(str::to_owned),
            detail: detail.into(),
            unix_s: crate::date::now_unix(),
            sha256: None,
            is_final: false,
            retry_after_unix: None,
        }
    }

    /// About the bundle whose SHA-256 is `sha256`, if known.
    pub fn of_bundle(self, sha256: Option<&str>) -> Self {
        Self {
            sha256: sha256.map(str::to_owned),
            ..self
        }
    }

    /// That bundle is never installed here.
    pub fn for_good(self) -> Self {
        Self {
            is_final: true,
            ..self
        }
    }

    /// That bundle is not installed before `unix_s`.
    pub fn until(self, unix_s: u64) -> Self {
        Self {
            retry_after_unix: Some(unix_s),
            ..self
        }
    }

    /// The one line a check reports (`installed 1.4.0`, `refused 1.2.0: ...`).
    pub fn line(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v}: {}", self.result, self.detail),
            None => format!("{}: {}", self.result, self.detail),
        }
    }
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the outcome durably, replacing the last. Readable by all
/// (0644): root writes it (a durable write's file is 0600), and sealcamd,
/// which reports it, is not root. It holds nothing secret.
pub fn write(dir: &Path, outcome: &Outcome) -> Result<(), UpdateError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let json =
        serde_json::to_vec_pretty(outcome).map_err(|e| UpdateError::Release(e.to_string()))?;
    let file = path(dir);
    let mut f = sealcam_base::durable::AtomicFile::create(&file)?;
    // Readable by sealcamd whatever the writer's umask, set on the open
    // file: sealcamd owns the directory and could swap a name for a link
    // between a rename and a chmod by name.
    f.file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(UpdateError::io("making readable", &file))?;
    f.write_all(&json)
        .map_err(UpdateError::io("writing", &file))?;
    f.commit()?;
    Ok(())
}

/// The last outcome, if there is one that parses.
pub fn read(dir: &Path) -> Option<Outcome> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_outcome_round_trips_as_one_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let o = Outcome::new("refused", Some("1.0"), "older than the running 2.0");
        write(dir.path(), &o).unwrap();
        assert_eq!(read(dir.path()).unwrap(), o);
        assert_eq!(o.line(), "refused 1.0: older than the running 2.0");
    }

    #[test]
    fn finality_and_waits_are_written_and_old_outcomes_are_not_final() {
        let sha = "ab".repeat(32);
        let o = Outcome::new("refused", None, "RAUC does not accept the bundle");
        let waiting = o.clone().of_bundle(Some(&sha)).until(100);
        let json = serde_json::to_string(&waiting).unwrap();
        assert!(json.contains(r#""retry_after_unix":100"#), "{json}");
        let settled = o.of_bundle(Some(&sha)).for_good();
        let json = serde_json::to_string(&settled).unwrap();
        assert!(json.contains(r#""final":true"#), "{json}");
        assert!(!json.contains("retry_after_unix"), "{json}");
        // An outcome written before these fields is never final.
        let old: Outcome =
            serde_json::from_str(r#"{"result":"refused","detail":"x","unix_s":1}"#).unwrap();
        assert!(!old.is_final && old.retry_after_unix.is_none());
    }
}
