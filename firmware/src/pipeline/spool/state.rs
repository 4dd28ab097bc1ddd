//! The spool's small state files beside the fragments: where the manifest
//! chain stands (`chain.state`), the running marker that reveals a crash,
//! the gaps still to declare and the accepted recipient-set version.

use std::fs;
use std::path::Path;

use sealcam_format::{DeclaredGap, GapReason, ManifestHash, SealedFragment};

use super::{fsync_dir, io, write_durably, Spool, SpoolError};

/// The gaps held for writing: the file's lock goes with the file.
struct GapsGuard<'a> {
    _file: sealcam_base::lock::FileLock,
    _thread: std::sync::MutexGuard<'a, ()>,
}

pub(super) const STATE_FILE: &str = "chain.state";
/// Present while a recorder runs; found at start, it means the last run
/// ended uncleanly.
const RUNNING_FILE: &str = "running";
/// Gaps waiting to be declared in the next manifest.
const PENDING_GAPS_FILE: &str = "gaps.pending";
/// Locked (`flock`) while the gaps are read or changed: `sealcamd spool
/// drop` declares a gap while the daemon may be recording.
const GAPS_LOCK_FILE: &str = "gaps.lock";
/// The newest owner-signed recipient-set version accepted.
const RECIPIENTS_FILE: &str = "recipients.version";
/// Present once the ingest has stored a fragment of this spool's chain: a
/// chain that began without state is then the stream's own.
const ACCEPTED_FILE: &str = "chain.accepted";

/// Where the manifest chain stands: the next sequence number to use and the
/// hash of the last manifest written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainState {
    pub next_sequence: u64,
    pub last_manifest: ManifestHash,
    /// Wall-clock end of the last fragment, for declaring the gap a restart leaves.
    pub last_end_unix_ns: u64,
    /// The camera's count of its epochs for the stream (`sealcam_format::restart`);
    /// 0 where it is unknown (the chain began without any state).
    pub epoch: u64,
    /// The chain began here with no state at all (no state file, an empty
    /// spool): a first start, or a camera that lost its state. Whether an
    /// earlier chain of the stream exists is unknown, so a new epoch begun
    /// from it names no previous end.
    pub began_without_state: bool,
}

impl ChainState {
    /// Where a chain stands that begins with no state at all.
    pub fn without_state() -> Self {
        Self {
            epoch: 0,
            began_without_state: true,
            ..Self::default()
        }
    }

    /// The chain moves past a fragment; its epoch stays.
    pub fn advanced(&self, sequence: u64, hash: ManifestHash, end_unix_ns: u64) -> Self {
        Self {
            next_sequence: sequence + 1,
            last_manifest: hash,
            last_end_unix_ns: end_unix_ns,
            ..*self
        }
    }
}

impl Default for ChainState {
    fn default() -> Self {
        Self {
            next_sequence: 0,
            last_manifest: ManifestHash::GENESIS,
            last_end_unix_ns: 0,
            epoch: 1,
            began_without_state: false,
        }
    }
}

impl Spool {
    /// Marks a recorder as running. Returns whether the previous run ended
    /// uncleanly (its marker is still there).
    pub fn mark_running(&self) -> Result<bool, SpoolError> {
        let unclean = self.last_run_unclean();
        write_durably(
            &self.dir,
            RUNNING_FILE,
            format!("pid={}\n", std::process::id()).as_bytes(),
        )?;
        Ok(unclean)
    }

    /// Whether the last run left its running marker behind (it ended uncleanly).
    pub fn last_run_unclean(&self) -> bool {
        self.dir.join(RUNNING_FILE).exists()
    }

    /// Marks a clean stop.
    pub fn mark_stopped(&self) -> Result<(), SpoolError> {
        let path = self.dir.join(RUNNING_FILE);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, "remove")(e)),
        }
    }

    /// The newest recipient-set version this camera accepted (0: none).
    pub fn accepted_recipient_version(&self) -> Result<u64, SpoolError> {
        let path = self.dir.join(RECIPIENTS_FILE);
        match fs::read_to_string(&path) {
            Ok(t) => t.trim().parse().map_err(|_| SpoolError::BadState {
                path,
                reason: "not a version number".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(&path, "read")(e)),
        }
    }

    /// Remembers a newly accepted recipient-set version (durably).
    pub fn accept_recipient_version(&self, version: u64) -> Result<(), SpoolError> {
        write_durably(
            &self.dir,
            RECIPIENTS_FILE,
            format!("{version}\n").as_bytes(),
        )
        .map(|_| ())
    }

    /// Records a gap to declare in the next manifest (durably).
    pub fn declare_gap(&self, gap: &DeclaredGap) -> Result<(), SpoolError> {
        let _guard = self.lock_gaps()?;
        let mut gaps = self.read_pending_gaps()?;
        gaps.push(*gap);
        self.write_pending_gaps(&gaps)
    }

    /// Gaps waiting for a manifest. They stay until [`Spool::clear_gaps`],
    /// called once a manifest declaring them is spooled.
    pub fn pending_gaps(&self) -> Result<Vec<DeclaredGap>, SpoolError> {
        let _guard = self.lock_gaps()?;
        self.read_pending_gaps()
    }

    /// Forgets the first `n` pending gaps (now declared).
    pub fn clear_gaps(&self, n: usize) -> Result<(), SpoolError> {
        let _guard = self.lock_gaps()?;
        let gaps = self.read_pending_gaps()?;
        self.write_pending_gaps(&gaps[n.min(gaps.len())..])
    }

    /// Holds the gaps against this process's other threads and against
    /// other processes (the operator's `sealcamd spool drop`) until dropped.
    fn lock_gaps(&self) -> Result<GapsGuard<'_>, SpoolError> {
        let thread = self.gaps_lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(GAPS_LOCK_FILE);
        let file = sealcam_base::lock::lock_exclusive(&path, 0o644)
            .map_err(|e| io(&path, e.op())(e.into_io()))?;
        Ok(GapsGuard {
            _file: file,
            _thread: thread,
        })
    }

    fn read_pending_gaps(&self) -> Result<Vec<DeclaredGap>, SpoolError> {
        let path = self.dir.join(PENDING_GAPS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path, "read")(e)),
        };
        Ok(text.lines().filter_map(parse_gap).collect())
    }

    fn write_pending_gaps(&self, gaps: &[DeclaredGap]) -> Result<(), SpoolError> {
        let text: String = gaps
            .iter()
            .map(|g| {
                format!(
                    "{} {} {} {} {}\n",
                    g.reason as u8,
                    g.first_sequence,
                    g.sequence_count,
                    g.start_unix_ns,
                    g.end_unix_ns
                )
            })
            .collect();
        write_durably(&self.dir, PENDING_GAPS_FILE, text.as_bytes()).map(|_| ())
    }
    /// Notes that the ingest stored a fragment of this chain (durably, once).
    pub fn mark_chain_accepted(&self) -> Result<(), SpoolError> {
        if self.dir.join(ACCEPTED_FILE).exists() {
            return Ok(());
        }
        write_durably(&self.dir, ACCEPTED_FILE, b"").map(|_| ())
    }

    /// Records where the chain stands.
    pub fn save_state(&self, state: &ChainState) -> Result<(), SpoolError> {
        let text = format!(
            "next_sequence={}\nlast_manifest={}\nlast_end_unix_ns={}\nepoch={}\nbegan_without_state={}\n",
            state.next_sequence,
            state.last_manifest,
            state.last_end_unix_ns,
            state.epoch,
            state.began_without_state
        );
        write_durably(&self.dir, STATE_FILE, text.as_bytes()).map(|_| ())
    }

    /// Where the chain stands, from the state file and any fragment spooled
    /// after the state was last saved (a crash between the two writes).
    pub fn load_state(&self) -> Result<ChainState, SpoolError> {
        let path = self.dir.join(STATE_FILE);
        let mut state = match fs::read_to_string(&path) {
            Ok(text) => parse_state(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ChainState::without_state(),
            Err(e) => return Err(io(&path, "read")(e)),
        };
        if state.began_without_state && self.dir.join(ACCEPTED_FILE).exists() {
            // The ingest stored a fragment of it: the stream's own chain.
            state.began_without_state = false;
        }
        for s in self.pending()?.into_iter().rev() {
            if s.sequence < state.next_sequence {
                break;
            }
            let bytes = fs::read(&s.path).map_err(io(&s.path, "read"))?;
            match SealedFragment::parse(&bytes) {
                Ok(f) => {
                    state = state.advanced(s.sequence, f.manifest_hash(), f.manifest.end_unix_ns);
                    if state.began_without_state && f.manifest.prev != ManifestHash::GENESIS {
                        // The state file is gone but fragments are
                        // spooled: the chain continues from them.
                        state.began_without_state = false;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(file = %s.path.display(), error = %e, "spooled fragment unreadable")
                }
            }
        }
        Ok(state)
    }
}

fn parse_gap(line: &str) -> Option<DeclaredGap> {
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [reason, first_sequence, sequence_count, start_unix_ns, end_unix_ns] = v[..] else {
        return None;
    };
    let reason = match reason {
        1 => GapReason::Restart,
        2 => GapReason::Crash,
        3 => GapReason::SpoolEvicted,
        4 => GapReason::SourceStalled,
        5 => GapReason::ClockJump,
        6 => GapReason::RefusedByIngest,
        7 => GapReason::SpoolWriteFailed,
        _ => return None,
    };
    Some(DeclaredGap {
        reason,
        first_sequence,
        sequence_count,
        start_unix_ns,
        end_unix_ns,
    })
}

fn parse_state(path: &Path, text: &str) -> Result<ChainState, SpoolError> {
    let bad = |reason: &str| SpoolError::BadState {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut next = None;
    let mut last = None;
    let mut end = 0;
    // A state file from before epochs: a chain whose state was kept.
    let mut epoch = 1;
    let mut began_without_state = false;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("next_sequence", v)) => {
                next = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad("next_sequence is not a number"))?,
                )
            }
            Some(("last_manifest", v)) => {
                last = Some(
                    ManifestHash::from_hex(v)
                        .ok_or_else(|| bad("last_manifest is not 64 hex digits"))?,
                )
            }
            Some(("last_end_unix_ns", v)) => {
                end = v
                    .parse::<u64>()
                    .map_err(|_| bad("last_end_unix_ns is not a number"))?
            }
            Some(("epoch", v)) => {
                epoch = v.parse::<u64>().map_err(|_| bad("epoch is not a number"))?
            }
            Some(("began_without_state", v)) => {
                began_without_state = v
                    .parse::<bool>()
                    .map_err(|_| bad("began_without_state is not true or false"))?
            }
            _ => {}
        }
    }
    Ok(ChainState {
        next_sequence: next.ok_or_else(|| bad("next_sequence missing"))?,
        last_manifest: last.ok_or_else(|| bad("last_manifest missing"))?,
        last_end_unix_ns: end,
        epoch,
        began_without_state,
    })
}
