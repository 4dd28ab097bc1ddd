//! Fragments the ingest refused, held for an operator.
//!
//! A refusal may be the server's doing (a hostile ingest that wants a
//! minute gone, or a misconfigured one), so the camera never turns it into
//! a signed excuse on its own: after `upload.refusal_tries` refusals the
//! fragment moves to `held/`, where it stays, out of the upload queue and
//! out of eviction, until an operator either sends it again
//! ([`Spool::release`], `sealcamd spool retry`) or gives it up
//! ([`Spool::give_up`], `sealcamd spool drop`), which declares the
//! `RefusedByIngest` gap in the next manifest.

use std::fs;
use std::path::PathBuf;

use sealcam_base::durable;
use sealcam_format::{DeclaredGap, GapReason};

use super::{io, Spool, SpoolError, Spooled, SUFFIX};

const HELD_DIR: &str = "held";
const WHY_SUFFIX: &str = "why";

/// A fragment held for an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub sequence: u64,
    pub path: PathBuf,
    /// The ingest's last answer, as the uplink recorded it.
    pub why: String,
}

impl Spool {
    fn held_dir(&self) -> PathBuf {
        self.dir.join(HELD_DIR)
    }

    fn held_paths(&self, sequence: u64) -> (PathBuf, PathBuf) {
        let dir = self.held_dir();
        (
            dir.join(Self::file_name(sequence)),
            dir.join(format!("{sequence:020}.{WHY_SUFFIX}")),
        )
    }

    /// Moves a fragment the ingest keeps refusing out of the queue into
    /// `held/`, with the ingest's answer beside it. Declares nothing.
    pub fn hold(&self, s: &Spooled, why: &str) -> Result<PathBuf, SpoolError> {
        let dir = self.held_dir();
        fs::create_dir_all(&dir).map_err(io(&dir, "create directory"))?;
        let (to, why_path) = self.held_paths(s.sequence);
        durable::replace(&why_path, format!("{why}\n").as_bytes())?;
        durable::rename(&s.path, &to)?;
        Ok(to)
    }

    /// The fragments held, oldest first.
    pub fn held(&self) -> Result<Vec<Held>, SpoolError> {
        let dir = self.held_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, "list")(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir, "list"))?;
            let name = entry.file_name();
            let Some(sequence) = name
                .to_string_lossy()
                .strip_suffix(&format!(".{SUFFIX}"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let (path, why_path) = self.held_paths(sequence);
            let why = match fs::read_to_string(&why_path) {
                Ok(t) => t.trim().to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(io(&why_path, "read")(e)),
            };
            out.push(Held {
                sequence,
                path,
                why,
            });
        }
        out.sort_by_key(|h| h.sequence);
        Ok(out)
    }

    fn held_one(&self, sequence: u64) -> Result<Held, SpoolError> {
        self.held()?
            .into_iter()
            .find(|h| h.sequence == sequence)
            .ok_or_else(|| SpoolError::NotHeld {
                dir: self.held_dir(),
                sequence,
            })
    }

    fn forget_why(&self, sequence: u64) -> Result<(), SpoolError> {
        let why = self.held_paths(sequence).1;
        match fs::remove_file(&why) {
            Ok(()) => Ok(durable::sync_dir(&self.held_dir())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&why, "remove")(e)),
        }
    }

    /// Puts a held fragment back in the upload queue (the operator fixed
    /// what made the ingest refuse it).
    pub fn release(&self, sequence: u64) -> Result<(), SpoolError> {
        let held = self.held_one(sequence)?;
        durable::rename(&held.path, &self.spooled(sequence).path)?;
        self.forget_why(sequence)
    }

    /// Gives a held fragment up: its gap is declared (durably, signed in
    /// the next manifest) as `RefusedByIngest`, with the gaps it declared
    /// itself ([`Spooled::carried_gaps`]), then the file is removed.
    /// Returns its own gap.
    pub fn give_up(&self, sequence: u64) -> Result<DeclaredGap, SpoolError> {
        let held = self.held_one(sequence)?;
        let spooled = Spooled {
            sequence,
            path: held.path.clone(),
        };
        let gap = spooled.gap(GapReason::RefusedByIngest);
        for g in std::iter::once(gap).chain(spooled.carried_gaps()) {
            self.declare_gap(&g)?;
        }
        durable::remove(&held.path)?;
        self.forget_why(sequence)?;
        Ok(gap)
    }
}
