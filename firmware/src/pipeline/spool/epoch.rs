//! Beginning a new epoch of the stream's manifest chain
//! (`sealcam_format::restart`): the camera signs a restart record, keeps
//! it in the spool until the ingest has stored it, and continues its chain
//! from the record's hash at the record's first sequence.
//!
//! ```text
//! <spool>/<stream>/restart-<first_sequence>.scr   signed, waiting for upload
//! <spool>/<stream>/abandoned/<first_sequence>/    the refused chain's fragments
//! ```
//!
//! The new epoch's first sequence is `max(next_sequence, unix_seconds <<
//! 20)`: above every sequence an earlier epoch of the stream can have used
//! (an epoch would need a million fragments a second to reach it), so its
//! fragments never collide with stored ones, without asking the ingest.

use std::fs;
use std::path::PathBuf;

use sealcam_base::durable;
use sealcam_format::restart::{PreviousEnd, Restart, RestartReason};
use sealcam_format::Name;
use sealcam_transport::ExternalSigner;

use super::state::ChainState;
use super::{io, write_durably, Spool, SpoolError};

const RESTART_PREFIX: &str = "restart-";
const RESTART_SUFFIX: &str = ".scr";
const ABANDONED_DIR: &str = "abandoned";

/// Where a new epoch's sequence numbers begin: above any an earlier epoch
/// used (see the module documentation).
pub fn first_sequence_at(next_sequence: u64, now_unix_ns: u64) -> u64 {
    let seconds = now_unix_ns / 1_000_000_000;
    next_sequence.max(seconds.saturating_mul(1 << 20))
}

/// A restart record waiting for upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRestart {
    pub first_sequence: u64,
    pub path: PathBuf,
}

/// A new epoch, begun.
#[derive(Clone, Debug)]
pub struct NewEpoch {
    pub restart: Restart,
    /// Fragments of the chain left behind, moved to `abandoned/` (they can
    /// never be stored: the ingest refused their chain).
    pub abandoned: Vec<u64>,
    pub abandoned_dir: PathBuf,
}

impl Spool {
    /// Begins a new epoch: signs the restart record with `signer`, spools
    /// it for upload and saves the chain state that continues from it.
    ///
    /// The previous epoch's end is named only when the chain state is the
    /// camera's own (it did not begin without state); then its queued
    /// fragments still belong to it and stay queued. Otherwise the chain
    /// the camera had cannot be the stream's (the ingest refuses it), and
    /// its fragments, queued or held, move to `abandoned/`.
    pub fn begin_epoch(
        &self,
        signer: &dyn ExternalSigner,
        device: &Name,
        stream: &Name,
        reason: RestartReason,
        now_unix_ns: u64,
    ) -> Result<NewEpoch, SpoolError> {
        let state = self.load_state()?;
        let known = !state.began_without_state && state.next_sequence > 0;
        let previous = known.then(|| PreviousEnd {
            sequence: state.next_sequence - 1,
            hash: state.last_manifest,
        });
        let first_sequence = first_sequence_at(state.next_sequence, now_unix_ns);
        let restart = Restart {
            device: device.clone(),
            stream: stream.clone(),
            epoch: if known && state.epoch > 0 {
                state.epoch + 1
            } else {
                0
            },
            first_sequence,
            previous,
            reason,
            signed_at_unix_ns: now_unix_ns,
        };
        let signature = signer
            .sign(&restart.signing_message())
            .map_err(|e| SpoolError::Sign(e.to_string()))?;
        let abandoned_dir = self
            .dir
            .join(ABANDONED_DIR)
            .join(first_sequence.to_string());
        let abandoned = if known {
            Vec::new()
        } else {
            self.abandon_chain(&abandoned_dir)?
        };
        write_durably(
            &self.dir,
            &format!("{RESTART_PREFIX}{first_sequence:020}{RESTART_SUFFIX}"),
            &restart.to_signed(&signature.to_bytes().into()),
        )?;
        self.save_state(&ChainState {
            next_sequence: first_sequence,
            last_manifest: restart.hash().0,
            last_end_unix_ns: if known {
                state.last_end_unix_ns
            } else {
                now_unix_ns
            },
            epoch: restart.epoch,
            began_without_state: false,
        })?;
        Ok(NewEpoch {
            restart,
            abandoned,
            abandoned_dir,
        })
    }

    /// Moves every queued and held fragment into `to`.
    fn abandon_chain(&self, to: &std::path::Path) -> Result<Vec<u64>, SpoolError> {
        let mut moved = Vec::new();
        let queued = self.pending()?.into_iter().map(|s| (s.sequence, s.path));
        let held = self.held()?.into_iter().map(|h| (h.sequence, h.path));
        let all: Vec<(u64, PathBuf)> = queued.chain(held).collect();
        if all.is_empty() {
            return Ok(moved);
        }
        fs::create_dir_all(to).map_err(io(to, "create directory"))?;
        for (sequence, path) in all {
            let Some(name) = path.file_name() else {
                continue;
            };
            durable::rename(&path, &to.join(name))?;
            moved.push(sequence);
        }
        // The ingest's reasons for the held ones go with them.
        let held_dir = self.dir.join("held");
        if let Ok(entries) = fs::read_dir(&held_dir) {
            for entry in entries.flatten() {
                durable::rename(&entry.path(), &to.join(entry.file_name()))?;
            }
        }
        Ok(moved)
    }

    /// Restart records waiting for upload, oldest first.
    pub fn pending_restarts(&self) -> Result<Vec<PendingRestart>, SpoolError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))? {
            let entry = entry.map_err(io(&self.dir, "list"))?;
            let name = entry.file_name();
            if let Some(first_sequence) = name
                .to_string_lossy()
                .strip_prefix(RESTART_PREFIX)
                .and_then(|s| s.strip_suffix(RESTART_SUFFIX))
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push(PendingRestart {
                    first_sequence,
                    path: entry.path(),
                });
            }
        }
        out.sort_by_key(|r| r.first_sequence);
        Ok(out)
    }

    /// Forgets a restart record the ingest has stored.
    pub fn restart_uploaded(&self, r: &PendingRestart) -> Result<(), SpoolError> {
        match fs::remove_file(&r.path) {
            Ok(()) => Ok(durable::sync_dir(&self.dir)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&r.path, "remove")(e)),
        }
    }

    /// Fragments set aside when a new epoch began, by epoch directory.
    pub fn abandoned(&self) -> Result<Vec<(PathBuf, usize)>, SpoolError> {
        let dir = self.dir.join(ABANDONED_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, "list")(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let n = fs::read_dir(entry.path())
                .map(|e| {
                    e.flatten()
                        .filter(|f| f.file_name().to_string_lossy().ends_with(".scf"))
                        .count()
                })
                .unwrap_or(0);
            out.push((entry.path(), n));
        }
        out.sort();
        Ok(out)
    }
}
