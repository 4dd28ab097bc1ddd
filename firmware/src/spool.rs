//! The on-disk spool of sealed fragments.
//!
//! ```text
//! <spool>/<stream>/00000000000000000042.scf   one sealed fragment, complete
//! <spool>/<stream>/chain.state                 next sequence, last manifest hash and end time
//! <spool>/<stream>/running                     a recorder is running (left behind by a crash)
//! <spool>/<stream>/gaps.pending                gaps to declare in the next manifest
//! <spool>/<stream>/.tmp-*                      being written; removed on start
//! ```
//!
//! A fragment counts as spooled once its file and the directory are fsynced.
//! Only sealed bytes are written: the camera cannot decrypt its own spool.
//! After a failed fsync a file is in an unknown state, so it is removed and
//! reported, never retried in place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sealcam_format::{DeclaredGap, GapReason, ManifestHash, Name, SealedFragment};

const SUFFIX: &str = "scf";
const STATE_FILE: &str = "chain.state";
/// Present while a recorder runs; found at start, it means the last run
/// ended uncleanly.
const RUNNING_FILE: &str = "running";
/// Gaps waiting to be declared in the next manifest.
const PENDING_GAPS_FILE: &str = "gaps.pending";
/// The newest owner-signed recipient-set version accepted.
const RECIPIENTS_FILE: &str = "recipients.version";

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
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Where the manifest chain stands: the next sequence number to use and the
/// hash of the last manifest written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainState {
    pub next_sequence: u64,
    pub last_manifest: ManifestHash,
    /// Wall-clock end of the last fragment, for declaring the gap a restart leaves.
    pub last_end_unix_ns: u64,
}

impl Default for ChainState {
    fn default() -> Self {
        Self {
            next_sequence: 0,
            last_manifest: ManifestHash::GENESIS,
            last_end_unix_ns: 0,
        }
    }
}

/// A spooled fragment waiting for upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub sequence: u64,
    pub path: PathBuf,
}

impl Spooled {
    /// The wall-clock span its manifest names, where the file still parses
    /// (`(0, 0)` otherwise): for declaring it as a gap.
    pub fn time_span(&self) -> (u64, u64) {
        fs::read(&self.path)
            .ok()
            .and_then(|b| {
                SealedFragment::parse(&b)
                    .ok()
                    .map(|f| (f.manifest.start_unix_ns, f.manifest.end_unix_ns))
            })
            .unwrap_or((0, 0))
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
/// sequence numbers, with the time span from the fragments' manifests.
fn gaps_of(spooled: &[Spooled]) -> Vec<DeclaredGap> {
    let mut items: Vec<(u64, u64, u64)> = spooled
        .iter()
        .map(|s| {
            let times = s.time_span();
            (s.sequence, times.0, times.1)
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

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync directory"))
}

/// Writes `bytes` to `path` durably via a temp file and a rename.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
    write_parts_durably(dir, name, &[bytes])
}

/// Writes `parts`, in order, as one file: see [`write_durably`].
fn write_parts_durably(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<PathBuf, SpoolError> {
    let tmp = dir.join(format!(".tmp-{name}"));
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp, "create"))?;
    let written = parts
        .iter()
        .try_for_each(|part| f.write_all(part))
        .map_err(io(&tmp, "write"))
        .and_then(|_| f.sync_all().map_err(io(&tmp, "fsync")));
    if let Err(e) = written {
        // The file's state is unknown after a failed write or fsync: drop it.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &path).map_err(io(&path, "rename"))?;
    fsync_dir(dir)?;
    Ok(path)
}

impl Spool {
    /// Opens (creating if needed) the spool of `stream` under `root`, and
    /// removes files left half-written by a crash.
    pub fn open(root: &Path, stream: &Name) -> Result<Self, SpoolError> {
        let dir = root.join(stream.as_str());
        fs::create_dir_all(&dir).map_err(io(&dir, "create directory"))?;
        let spool = Self {
            dir,
            full: std::sync::atomic::AtomicBool::new(false),
            evicted: std::sync::atomic::AtomicU64::new(0),
            gaps_lock: std::sync::Mutex::new(()),
        };
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

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
        let _guard = self.gaps_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut gaps = self.read_pending_gaps()?;
        gaps.push(*gap);
        self.write_pending_gaps(&gaps)
    }

    /// Gaps waiting for a manifest. They stay until [`Spool::clear_gaps`],
    /// called once a manifest declaring them is spooled.
    pub fn pending_gaps(&self) -> Result<Vec<DeclaredGap>, SpoolError> {
        let _guard = self.gaps_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read_pending_gaps()
    }

    /// Forgets the first `n` pending gaps (now declared).
    pub fn clear_gaps(&self, n: usize) -> Result<(), SpoolError> {
        let _guard = self.gaps_lock.lock().unwrap_or_else(|p| p.into_inner());
        let gaps = self.read_pending_gaps()?;
        self.write_pending_gaps(&gaps[n.min(gaps.len())..])
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

    /// Moves a fragment the server refused for good out of the queue.
    pub fn reject(&self, s: &Spooled) -> Result<PathBuf, SpoolError> {
        let dir = self.dir.join("rejected");
        fs::create_dir_all(&dir).map_err(io(&dir, "create directory"))?;
        let to = dir.join(Self::file_name(s.sequence));
        fs::rename(&s.path, &to).map_err(io(&to, "rename"))?;
        fsync_dir(&self.dir)?;
        fsync_dir(&dir)?;
        Ok(to)
    }

    /// Records where the chain stands.
    pub fn save_state(&self, state: &ChainState) -> Result<(), SpoolError> {
        let text = format!(
            "next_sequence={}\nlast_manifest={}\nlast_end_unix_ns={}\n",
            state.next_sequence, state.last_manifest, state.last_end_unix_ns
        );
        write_durably(&self.dir, STATE_FILE, text.as_bytes()).map(|_| ())
    }

    /// Where the chain stands, from the state file and any fragment spooled
    /// after the state was last saved (a crash between the two writes).
    pub fn load_state(&self) -> Result<ChainState, SpoolError> {
        let path = self.dir.join(STATE_FILE);
        let mut state = match fs::read_to_string(&path) {
            Ok(text) => parse_state(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ChainState::default(),
            Err(e) => return Err(io(&path, "read")(e)),
        };
        for s in self.pending()?.into_iter().rev() {
            if s.sequence < state.next_sequence {
                break;
            }
            let bytes = fs::read(&s.path).map_err(io(&s.path, "read"))?;
            match SealedFragment::parse(&bytes) {
                Ok(f) => {
                    state = ChainState {
                        next_sequence: s.sequence + 1,
                        last_manifest: f.manifest_hash(),
                        last_end_unix_ns: f.manifest.end_unix_ns,
                    };
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
            _ => {}
        }
    }
    Ok(ChainState {
        next_sequence: next.ok_or_else(|| bad("next_sequence missing"))?,
        last_manifest: last.ok_or_else(|| bad("last_manifest missing"))?,
        last_end_unix_ns: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_remove_and_state_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let stream = Name::new("front").unwrap();
        let spool = Spool::open(root.path(), &stream).unwrap();
        spool.put(2, b"two").unwrap();
        spool.put(1, b"one").unwrap();
        let p = spool.pending().unwrap();
        assert_eq!(p.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![1, 2]);
        spool.remove(&p[0]).unwrap();
        assert_eq!(spool.pending().unwrap().len(), 1);

        let st = ChainState {
            next_sequence: 3,
            last_manifest: ManifestHash([9; 32]),
            last_end_unix_ns: 77,
        };
        spool.save_state(&st).unwrap();
        assert_eq!(spool.load_state().unwrap(), st);
    }

    #[test]
    fn leftover_temp_files_are_removed_on_open() {
        let root = tempfile::tempdir().unwrap();
        let stream = Name::new("front").unwrap();
        fs::create_dir_all(root.path().join("front")).unwrap();
        fs::write(
            root.path().join("front/.tmp-00000000000000000001.scf"),
            b"torn",
        )
        .unwrap();
        let spool = Spool::open(root.path(), &stream).unwrap();
        assert!(spool.pending().unwrap().is_empty());
        assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 0);
    }

    #[test]
    fn pending_gaps_survive_until_cleared() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
        let g = |first| DeclaredGap {
            reason: GapReason::RefusedByIngest,
            first_sequence: first,
            sequence_count: 1,
            start_unix_ns: 5,
            end_unix_ns: 9,
        };
        spool.declare_gap(&g(1)).unwrap();
        spool.declare_gap(&g(2)).unwrap();
        let again = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
        assert_eq!(again.pending_gaps().unwrap(), vec![g(1), g(2)]);
        again.clear_gaps(1).unwrap();
        assert_eq!(again.pending_gaps().unwrap(), vec![g(2)]);
        assert!(!again.mark_running().unwrap());
        assert!(
            again.mark_running().unwrap(),
            "a marker left behind means an unclean stop"
        );
        again.mark_stopped().unwrap();
        assert!(!again.mark_running().unwrap());
    }

    #[test]
    fn full_spool_drops_the_oldest_and_declares_them() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
        for seq in 0..5 {
            spool.put(seq, &[0u8; 100]).unwrap();
        }
        let bounds = SpoolBounds {
            max_bytes: 350,
            max_age: None,
            when_full: FullPolicy::DropOldest,
        };
        assert_eq!(spool.make_room(&bounds, 100).unwrap(), Admission::Admit);
        let left: Vec<u64> = spool
            .pending()
            .unwrap()
            .iter()
            .map(|s| s.sequence)
            .collect();
        assert_eq!(left, vec![3, 4]);
        let gaps = spool.pending_gaps().unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            (
                gaps[0].reason,
                gaps[0].first_sequence,
                gaps[0].sequence_count
            ),
            (GapReason::SpoolEvicted, 0, 3)
        );
    }

    #[test]
    fn full_spool_can_refuse_new_fragments_instead() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
        spool.put(0, &[0u8; 100]).unwrap();
        let bounds = SpoolBounds {
            max_bytes: 150,
            max_age: None,
            when_full: FullPolicy::StopRecording,
        };
        assert_eq!(spool.make_room(&bounds, 100).unwrap(), Admission::Refuse);
        assert_eq!(spool.pending().unwrap().len(), 1);
        assert!(
            spool.pending_gaps().unwrap().is_empty(),
            "the recorder declares the refused fragment"
        );
    }

    #[test]
    fn corrupt_state_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let stream = Name::new("front").unwrap();
        let spool = Spool::open(root.path(), &stream).unwrap();
        fs::write(spool.dir().join(STATE_FILE), "next_sequence=x\n").unwrap();
        assert!(matches!(
            spool.load_state(),
            Err(SpoolError::BadState { .. })
        ));
    }
}
