//! The local backend's disk thread: it takes every write waiting for it
//! and makes them as one batch (`create.rs`), so that uploads that arrive
//! together share their journal commits (group commit), and an upload waits
//! for at most the batch before its own.
//!
//! On a journaling filesystem each sync of a changed file or directory
//! commits the journal, and those commits, not the copying, are most of the
//! cost of a durable write (`docs/history/benchmarks.md`). A write may carry a
//! check, made on the thread against what is on disk and the writes queued
//! ahead of it, so that the check and the write are one step.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;

use super::create::{write_batch, Naming};
use super::fragments::ChainError;

/// A batch ends at this many writes, or at the first write that takes it
/// past [`MAX_BATCH_BYTES`], so that no upload waits behind an unbounded one.
const MAX_BATCH_WRITES: usize = 64;
const MAX_BATCH_BYTES: usize = 64 << 20;

type Reply<T> = tokio::sync::oneshot::Sender<T>;
/// A write's condition, decided on the disk thread from what is at the
/// paths it names (`None` where nothing is): the write is made only if it
/// says `Ok`.
pub type Check = Box<dyn FnOnce(Vec<Option<Bytes>>) -> Result<(), ChainError> + Send>;

/// Why a write was not made.
#[derive(Debug)]
pub enum CheckedWriteError {
    /// Its check refused it.
    Refused(ChainError),
    /// Reading for its check, or writing, failed (or the thread stopped).
    Io(io::Error),
}

/// How many objects a write published, or why it did not.
type Answer = Result<usize, CheckedWriteError>;

/// Objects to publish in order, up to the first whose name exists; if the
/// job has a check, only when the check passes on what is at `reads`.
struct Job {
    reads: Vec<PathBuf>,
    check: Option<Check>,
    objects: Vec<(PathBuf, Bytes)>,
    done: Reply<Answer>,
}

/// The local backend's disk thread (see the module's documentation): it
/// makes the writes, and the small reads of their checks, so that an upload
/// hands its work to another thread once and the thread is mostly awake
/// already when it does. It stops when the
/// last handle to it is dropped, after the jobs it has.
pub struct Disk {
    jobs: mpsc::Sender<Job>,
}

impl Disk {
    pub fn start() -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-disk".into())
            .spawn(move || run(&queue))?;
        Ok(Self { jobs })
    }

    /// Writes each of `objects` as a new file, durably, publishing them in the
    /// order given, and returns how many it published: all of them, or up to the
    /// first whose name exists (that one and those after it are not written).
    /// Missing directories are made, and each new one's parent synced.
    /// Every file's data is on disk before any is named, and the names are on
    /// disk when this returns. A journaling filesystem (ext4, XFS) makes the
    /// names durable in the order they were made, so after a crash a later
    /// object is never there without the earlier ones; on one that does not, the
    /// caller's retry of the unacknowledged write repairs it.
    /// The write is made in the thread's next batch.
    pub async fn create_new_all(&self, objects: Vec<(PathBuf, Bytes)>) -> io::Result<usize> {
        match self.write(Vec::new(), None, objects).await {
            Ok(n) => Ok(n),
            Err(CheckedWriteError::Io(e)) => Err(e),
            // Only a check refuses, and there is none.
            Err(CheckedWriteError::Refused(_)) => {
                Err(io::Error::other("a write without a check was refused"))
            }
        }
    }

    /// [`Self::create_new_all`] if `check` passes on what is at `reads`
    /// (read on the disk thread just before, and seeing the writes queued
    /// ahead of this one as made), or why it did not: the check and the
    /// write are one step, so no other write of this store comes between
    /// them. An upload hands its work to the thread once for both.
    pub async fn create_new_all_if(
        &self,
        reads: Vec<PathBuf>,
        check: Check,
        objects: Vec<(PathBuf, Bytes)>,
    ) -> Answer {
        self.write(reads, Some(check), objects).await
    }

    async fn write(
        &self,
        reads: Vec<PathBuf>,
        check: Option<Check>,
        objects: Vec<(PathBuf, Bytes)>,
    ) -> Answer {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job {
                reads,
                check,
                objects,
                done,
            })
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

fn stopped() -> CheckedWriteError {
    CheckedWriteError::Io(io::Error::other(
        "the local store's disk thread has stopped",
    ))
}

/// A write taken into the batch: its objects, and whom to tell.
type Queued = (Vec<(PathBuf, Bytes)>, Reply<Answer>);

fn run(queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut writes: Vec<Queued> = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let Job {
                reads,
                check,
                objects,
                done,
            } = job;
            // Checked against the disk and the writes ahead of it in this
            // batch, as if those were made already.
            let refused = match check {
                None => None,
                Some(check) => match read_through(&reads, &writes) {
                    Err(e) => Some(Err(CheckedWriteError::Io(e))),
                    Ok(found) => check(found)
                        .err()
                        .map(|r| Err(CheckedWriteError::Refused(r))),
                },
            };
            match refused {
                // The upload may have gone (its client hung up): nothing to
                // tell, here and below.
                Some(answer) => {
                    let _ = done.send(answer);
                }
                None => {
                    bytes += objects.iter().map(|(_, b)| b.len()).sum::<usize>();
                    writes.push((objects, done));
                }
            }
            if writes.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
                next = queue.try_recv().ok();
            }
        }
        if writes.is_empty() {
            continue;
        }
        let objects: Vec<Vec<(&Path, &[u8])>> = writes
            .iter()
            .map(|(objects, _)| objects.iter().map(|(p, b)| (p.as_path(), &b[..])).collect())
            .collect();
        let results = write_batch(&objects, Naming::Unnamed);
        drop(objects);
        for ((_, done), result) in writes.into_iter().zip(results) {
            let _ = done.send(result.map_err(CheckedWriteError::Io));
        }
    }
}

/// The whole of each file at `paths`, `None` where there is none, where
/// an object queued in `writes` is taken as written (the last queued, if
/// several name it). A queued write may still fail; a check that relied on
/// it then decided on a write that was asked for, by an upload that is told
/// it failed and sends it again.
fn read_through(paths: &[PathBuf], writes: &[Queued]) -> io::Result<Vec<Option<Bytes>>> {
    paths
        .iter()
        .map(|path| {
            let queued = writes
                .iter()
                .flat_map(|(objects, _)| objects)
                .rfind(|(p, _)| p == path);
            match queued {
                Some((_, b)) => Ok(Some(b.clone())),
                None => match std::fs::read(path) {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", path.display()),
                    )),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::StoreError;

    /// A check that passes only where nothing is at any of its paths.
    fn nothing_there() -> Check {
        Box::new(
            |found: Vec<Option<Bytes>>| match found.iter().flatten().next() {
                Some(b) => Err(ChainError::Store(StoreError::Damaged {
                    path: "check".into(),
                    reason: format!("found {}", String::from_utf8_lossy(b)),
                })),
                None => Ok(()),
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checked_write_is_made_only_if_its_check_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = Disk::start().unwrap();
        let (a, b) = (tmp.path().join("s/a"), tmp.path().join("s/b"));
        let written = disk
            .create_new_all_if(
                vec![b.clone()],
                nothing_there(),
                vec![(a.clone(), "a".into())],
            )
            .await;
        assert!(matches!(written, Ok(1)), "{written:?}");
        let refused = disk
            .create_new_all_if(
                vec![a.clone()],
                nothing_there(),
                vec![(b.clone(), "b".into())],
            )
            .await;
        match refused {
            Err(CheckedWriteError::Refused(why)) => {
                assert_eq!(why.to_string(), "stored object check is damaged: found a")
            }
            other => panic!("{other:?}"),
        }
        assert!(!b.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_see_every_write_before_them_even_in_their_own_batch() {
        // Pairs of writes that exclude each other, sent at once: each is
        // checked against the other's name. Read, then written, as two
        // steps, both could pass; here exactly one of each pair is made.
        let tmp = tempfile::tempdir().unwrap();
        let disk = std::sync::Arc::new(Disk::start().unwrap());
        let mut tasks = Vec::new();
        for pair in 0..60 {
            for side in ["x", "y"] {
                let other = if side == "x" { "y" } else { "x" };
                let disk = disk.clone();
                let (dest, theirs) = (
                    tmp.path().join(format!("{pair}/{side}")),
                    tmp.path().join(format!("{pair}/{other}")),
                );
                tasks.push(tokio::spawn(async move {
                    let objects = vec![(dest, Bytes::from(side))];
                    disk.create_new_all_if(vec![theirs], nothing_there(), objects)
                        .await
                }));
            }
        }
        let mut made = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(1) => made += 1,
                Err(CheckedWriteError::Refused(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(made, 60);
        for pair in 0..60 {
            let names = std::fs::read_dir(tmp.path().join(pair.to_string()))
                .unwrap()
                .count();
            assert_eq!(names, 1, "pair {pair}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_disk_thread_writes_concurrent_uploads_once_each_and_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = std::sync::Arc::new(Disk::start().unwrap());
        let path = |object: u32| tmp.path().join(format!("s/{object}"));
        let mut tasks = Vec::new();
        // 40 objects, each asked for twice at once, with different bytes,
        // each write checked against what is at its own name: every check
        // finds nothing or a whole object (one that failed would stop the
        // thread, and every write after it with it).
        for i in 0..80u32 {
            let (disk, dest) = (disk.clone(), path(i % 40));
            tasks.push(tokio::spawn(async move {
                let whole = [format!("{}", i % 40), format!("{}", i % 40 + 40)];
                let check: Check = Box::new(move |found| {
                    if let [Some(bytes)] = &found[..] {
                        assert!(whole.iter().any(|w| w.as_bytes() == &bytes[..]));
                    }
                    Ok(())
                });
                let bytes = Bytes::from(format!("{i}"));
                let objects = vec![(dest.clone(), bytes)];
                let written = disk.create_new_all_if(vec![dest], check, objects);
                (i, written.await.unwrap())
            }));
        }
        let mut winners = std::collections::HashMap::new();
        for t in tasks {
            let (i, written) = t.await.unwrap();
            if written == 1 {
                assert!(
                    winners.insert(i % 40, i).is_none(),
                    "object {} written twice",
                    i % 40
                );
            }
        }
        assert_eq!(winners.len(), 40);
        for (object, i) in winners {
            let stored = std::fs::read(path(object)).unwrap();
            assert_eq!(stored, format!("{i}").as_bytes());
        }
    }
}
