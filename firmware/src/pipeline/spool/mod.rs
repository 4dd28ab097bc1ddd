//! The on-disk spool of sealed fragments.
//!
//! ```text
//! <spool>/<stream>/00000000000000000042.scf   one sealed fragment, complete
//! <spool>/<stream>/chain.state                 next sequence, last manifest hash and end time, epoch
//! <spool>/<stream>/chain.accepted              the ingest has stored a fragment of this chain
//! <spool>/<stream>/running                     a recorder is running (left behind by a crash)
//! <spool>/<stream>/gaps.pending                gaps to declare in the next manifest
//! <spool>/<stream>/gaps.lock                   locked while the gaps change
//! <spool>/<stream>/held/<sequence>.scf         refused by the ingest: waits for an operator
//! <spool>/<stream>/held/<sequence>.why         the ingest's last answer
//! <spool>/<stream>/restart-<sequence>.scr      a signed chain restart, waiting for upload
//! <spool>/<stream>/abandoned/<sequence>/       fragments of a chain left behind by a restart
//! <spool>/<stream>/.tmp-*                      being written; removed on start
//! ```
//!
//! A fragment counts as spooled once its file and the directory are fsynced.
//! Only sealed bytes are written: the camera cannot decrypt its own spool.
//! After a failed fsync a file is in an unknown state, so it is removed and
//! reported, never retried in place.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sealcam_base::durable::{self, AtomicFile, DurableError};
use sealcam_format::{DeclaredGap, GapReason, Name, SealedFragment};

mod epoch;
mod held;
mod state;
#[cfg(test)]
use state::STATE_FILE;

pub use epoch::{first_sequence_at, NewEpoch, PendingRestart};
pub use held::Held;
pub use state::ChainState;

const SUFFIX: &str = "scf";

/// What went wrong in the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("spool state {path} is corrupt: {reason}")]
    BadState { path: PathBuf, reason: String },
    #[error("cannot sign the restart record with the device key: {0}")]
    Sign(String),
    #[error("fragment {sequence} is not held in {dir} (`sealcamd spool list` shows what is)")]
    NotHeld { dir: PathBuf, sequence: u64 },
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// A spooled fragment waiting for upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub sequence: u64,
    pub path: PathBuf,
}

impl Spooled {
    /// The gap it leaves if it is never stored, for `reason`.
    pub fn gap(&self, reason: GapReason) -> DeclaredGap {
        let (start_unix_ns, end_unix_ns) = self.time_span();
        DeclaredGap {
            reason,
            first_sequence: self.sequence,
            sequence_count: 1,
            start_unix_ns,
            end_unix_ns: end_unix_ns.max(start_unix_ns),
        }
    }

    /// The gaps to declare if it is never stored: its own, for `reason`,
    /// first, then [`Self::carried_gaps`].
    pub fn gaps(&self, reason: GapReason) -> Vec<DeclaredGap> {
        let mut gaps = vec![self.gap(reason)];
        gaps.extend(self.carried_gaps());
        gaps
    }

    /// The gaps its own manifest declared. A fragment that is never stored
    /// takes its declarations with it: whoever declares it missing declares
    /// these again, with their reasons, or the holes they explained would
    /// look undeclared (a server's deletion). Nothing when the file no
    /// longer parses.
    pub fn carried_gaps(&self) -> Vec<DeclaredGap> {
        self.manifest().map(|m| m.gaps).unwrap_or_default()
    }

    /// The wall-clock span its manifest names, where the file still parses
    /// (`(0, 0)` otherwise): for declaring it as a gap.
    pub fn time_span(&self) -> (u64, u64) {
        self.manifest()
            .map(|m| (m.start_unix_ns, m.end_unix_ns))
            .unwrap_or((0, 0))
    }

    /// Its manifest, where the file still parses.
    fn manifest(&self) -> Option<sealcam_format::Manifest> {
        let bytes = fs::read(&self.path).ok()?;
        SealedFragment::parse(&bytes).ok().map(|f| f.manifest)
    }
}

/// What to do when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop the oldest fragments to make room (the default: keep the present).
    DropOldest,
    /// Keep what is spooled and drop new fragments.
    StopRecording,
}

/// How much the spool may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolBounds {
    pub max_bytes: u64,
    pub max_age: Option<std::time::Duration>,
    pub when_full: FullPolicy,
}

/// Whether a new fragment may be spooled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Full, and the policy keeps what is there: the new fragment is dropped.
    Refuse,
}

/// The gaps that evicting `spooled` leaves: one per run of consecutive
/// sequence numbers, with the time span from the fragments' manifests,
/// then the gaps the evicted fragments themselves declared
/// ([`Spooled::carried_gaps`]).
fn gaps_of(spooled: &[Spooled]) -> Vec<DeclaredGap> {
    let mut carried = Vec::new();
    let mut items: Vec<(u64, u64, u64)> = spooled
        .iter()
        .map(|s| {
            let Some(m) = s.manifest() else {
                return (s.sequence, 0, 0);
            };
            carried.extend(m.gaps);
            (s.sequence, m.start_unix_ns, m.end_unix_ns)
        })
        .collect();
    items.sort_unstable();
    let mut gaps: Vec<DeclaredGap> = Vec::new();
    for (seq, start, end) in items {
        match gaps.last_mut() {
            Some(g) if g.first_sequence + g.sequence_count == seq => {
                g.sequence_count += 1;
                g.start_unix_ns = g.start_unix_ns.min(start);
                g.end_unix_ns = g.end_unix_ns.max(end);
            }
            _ => gaps.push(DeclaredGap {
                reason: GapReason::SpoolEvicted,
                first_sequence: seq,
                sequence_count: 1,
                start_unix_ns: start,
                end_unix_ns: end.max(start),
            }),
        }
    }
    gaps.extend(carried);
    gaps
}

/// The spool of one stream.
pub struct Spool {
    dir: PathBuf,
    /// Whether the last `make_room` found the spool full (log once per episode).
    full: std::sync::atomic::AtomicBool,
    /// Fragments evicted to make room, since the spool was opened.
    evicted: std::sync::atomic::AtomicU64,
    /// Serialises updates of the pending-gaps file between recorder and uplink.
    gaps_lock: std::sync::Mutex<()>,
}

impl From<DurableError> for SpoolError {
    fn from(e: DurableError) -> Self {
        SpoolError::Io {
            path: e.path,
            op: e.op,
            source: e.source,
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    Ok(durable::sync_dir(dir)?)
}

/// Writes `bytes` as the file `name` in `dir`, durably (see
/// [`write_parts_durably`]).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
    write_parts_durably(dir, name, &[bytes])
}

/// Writes `parts`, in order, as the file `name` in `dir` (mode 0600),
/// durably: a temporary file, fsynced, renamed, the directory fsynced. After
/// a failed write or fsync the temporary file is dropped, never retried.
fn write_parts_durably(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<PathBuf, SpoolError> {
    let path = dir.join(name);
    let mut f = AtomicFile::create_with_mode(&path, 0o600)?;
    for part in parts {
        f.write_all(part).map_err(io(f.temporary_path(), "write"))?;
    }
    f.commit()?;
    Ok(path)
}

impl Spool {
    /// Opens (creating if needed) the spool of `stream` under `root`, and
    /// removes files left half-written by a crash.
    pub fn open(root: &Path, stream: &Name) -> Result<Self, SpoolError> {
        let dir = root.join(stream.as_str());
        fs::create_dir_all(&dir).map_err(io(&dir, "create directory"))?;
        let spool = Self::at(dir);
        for entry in fs::read_dir(&spool.dir).map_err(io(&spool.dir, "list"))? {
            let entry = entry.map_err(io(&spool.dir, "list"))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(".tmp-") {
                tracing::warn!(file = %entry.path().display(), "removing a fragment left half-written by a crash");
                fs::remove_file(entry.path()).map_err(io(&entry.path(), "remove"))?;
            }
        }
        Ok(spool)
    }

    /// The spool of `stream` under `root` as it is, for an operator's
    /// command while the daemon may be running: nothing is created or
    /// cleaned up.
    pub fn inspect(root: &Path, stream: &Name) -> Result<Self, SpoolError> {
        let dir = root.join(stream.as_str());
        fs::metadata(&dir).map_err(io(&dir, "open"))?;
        Ok(Self::at(dir))
    }

    fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            full: std::sync::atomic::AtomicBool::new(false),
            evicted: std::sync::atomic::AtomicU64::new(0),
            gaps_lock: std::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file_name(sequence: u64) -> String {
        format!("{sequence:020}.{SUFFIX}")
    }

    /// Stores a sealed fragment durably.
    pub fn put(&self, sequence: u64, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
        self.put_parts(sequence, &[bytes])
    }

    /// Spools a fragment given as consecutive parts (a [`FragmentFile`]'s),
    /// without joining them in memory first.
    ///
    /// [`FragmentFile`]: sealcam_format::FragmentFile
    pub fn put_parts(&self, sequence: u64, parts: &[&[u8]]) -> Result<PathBuf, SpoolError> {
        write_parts_durably(&self.dir, &Self::file_name(sequence), parts)
    }

    /// Where fragment `sequence` is (or would be) spooled.
    pub fn spooled(&self, sequence: u64) -> Spooled {
        Spooled {
            sequence,
            path: self.dir.join(Self::file_name(sequence)),
        }
    }

    /// Fragments waiting for upload, oldest first.
    pub fn pending(&self) -> Result<Vec<Spooled>, SpoolError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))? {
            let entry = entry.map_err(io(&self.dir, "list"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(&format!(".{SUFFIX}"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push(Spooled {
                    sequence: seq,
                    path: entry.path(),
                });
            }
        }
        out.sort_by_key(|s| s.sequence);
        Ok(out)
    }

    /// Deletes an uploaded fragment.
    pub fn remove(&self, s: &Spooled) -> Result<(), SpoolError> {
        match fs::remove_file(&s.path) {
            Ok(()) => {}
            // Evicted while it was being uploaded: already gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&s.path, "remove")(e)),
        }
        fsync_dir(&self.dir)
    }

    /// Makes room for a new fragment of `new_len` bytes within `bounds`:
    /// evicts fragments past the age limit and, when full, the oldest ones
    /// (or, with [`FullPolicy::StopRecording`], refuses the new one). Every
    /// evicted fragment is declared as a gap first, durably.
    pub fn make_room(&self, bounds: &SpoolBounds, new_len: u64) -> Result<Admission, SpoolError> {
        let now = std::time::SystemTime::now();
        let mut pending = Vec::new();
        for s in self.pending()? {
            match fs::metadata(&s.path) {
                Ok(m) => pending.push((s, m.len(), m.modified().ok())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&s.path, "stat")(e)),
            }
        }
        let mut total: u64 = pending.iter().map(|(_, len, _)| len).sum();
        let mut evict = Vec::new();
        let mut keep = Vec::new();
        for (s, len, modified) in pending {
            let too_old = match (bounds.max_age, modified) {
                (Some(max), Some(t)) => now.duration_since(t).map(|age| age > max).unwrap_or(false),
                _ => false,
            };
            if too_old {
                total -= len;
                evict.push(s);
            } else {
                keep.push((s, len));
            }
        }
        let mut admission = Admission::Admit;
        if total + new_len > bounds.max_bytes {
            match bounds.when_full {
                FullPolicy::DropOldest => {
                    for (s, len) in keep {
                        if total + new_len <= bounds.max_bytes {
                            break;
                        }
                        total -= len;
                        evict.push(s);
                    }
                }
                FullPolicy::StopRecording => admission = Admission::Refuse,
            }
        }
        if !evict.is_empty() {
            for gap in gaps_of(&evict) {
                self.declare_gap(&gap)?;
            }
            for s in &evict {
                self.remove(s)?;
            }
            self.evicted
                .fetch_add(evict.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let full = !evict.is_empty() || admission == Admission::Refuse;
        let was_full = self.full.swap(full, std::sync::atomic::Ordering::Relaxed);
        if full && !was_full {
            tracing::warn!(
                evicted = evict.len(),
                refused = admission == Admission::Refuse,
                max_bytes = bounds.max_bytes,
                "spool full: fragments are dropped and declared as gaps until the uplink catches up"
            );
        } else if !full && was_full {
            tracing::info!("spool has room again");
        }
        Ok(admission)
    }

    /// Fragments evicted to make room since the spool was opened.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
