//! Create-only, durable writes of new files to a local directory: how the
//! local backend's disk thread (`disk.rs`) makes a batch of objects. Other
//! reads, listings and deletes go through `object_store`'s
//! `LocalFileSystem`, which maps object paths to the same files.
//!
//! `LocalFileSystem` with fsync writes a named staging file, syncs it,
//! hard-links it into place, syncs the directory, then unlinks the staging
//! file: two directory entries made and one removed per object. Here the
//! file is made without a name (`O_TMPFILE`), its data synced, and then
//! linked under its final name with `linkat`, which fails if the name is
//! taken (create-only, as `link` is), and the directory synced: one entry
//! per object, and a crash at any point leaves either nothing or the whole
//! object. Where the filesystem cannot make unnamed files (some network and
//! FUSE filesystems), a staging file named `<name>#<digits>` is used, which
//! `LocalFileSystem` never lists.
//!
//! A file's whole blocks are written with direct I/O when its bytes start
//! aligned in memory ([`AlignedBody`](crate::http::body::AlignedBody)), past the page cache; the rest goes
//! through it. The order above makes both durable alike.
//!
//! A batch's files are all written, their data synced with one `syncfs`
//! per filesystem, then all named, and each of their directories synced
//! once.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

/// The alignment direct I/O asks of a write's memory, file offset and
/// length: a device's logical block (512 or 4096 bytes), and here at least a
/// page, so that the part of a file written through the page cache shares no
/// page with the part written past it.
pub fn direct_io_alignment() -> usize {
    rustix::param::page_size().max(4096)
}

/// How many of `bytes`, from the start, a file opened for direct I/O can
/// take from where they lie: the whole blocks, if `bytes` starts aligned.
fn direct_bulk(bytes: &[u8]) -> usize {
    let align = direct_io_alignment();
    if bytes.as_ptr().align_offset(align) == 0 {
        bytes.len() - bytes.len() % align
    } else {
        0
    }
}

/// Writes `bytes` into the new, empty `file`. A file opened for direct I/O
/// takes the first `bulk` bytes ([`direct_bulk`]; none for other files)
/// straight from memory to the device, past the page cache: nothing copied
/// into it and nothing left there for writeback to do. The rest, under one
/// block, goes through the page cache. Either way the batch's `syncfs`
/// makes it durable before it is named, as before. A device that refuses
/// the alignment gets it all through the page cache.
fn write_data(file: &File, bytes: &[u8], bulk: usize) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    if bulk > 0 {
        match file.write_all_at(&bytes[..bulk], 0) {
            Ok(()) => done = bulk,
            Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let flags = rustix::fs::fcntl_getfl(file)?;
        rustix::fs::fcntl_setfl(file, flags - OFlags::DIRECT)?;
    }
    file.write_all_at(&bytes[done..], done as u64)
}

/// How new files are made before they are linked into place.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Naming {
    /// Unnamed (`O_TMPFILE`), where the filesystem can; staged otherwise.
    Unnamed,
    /// Always through a named staging file.
    Staged,
}

/// [`Disk::create_new_all`] for each of `writes` at once, with one result each:
/// the data of all their files is synced before any is named, and each
/// directory they name files in is synced once, after all are named. A
/// write that fails does not stop the others.
pub(super) fn write_batch(
    writes: &[Vec<(&Path, &[u8])>],
    naming: Naming,
) -> Vec<io::Result<usize>> {
    let mut written: Vec<io::Result<Vec<Unnamed>>> = writes
        .iter()
        .map(|objects| {
            objects
                .iter()
                .map(|(dest, bytes)| Unnamed::write(dest, bytes, naming))
                .collect()
        })
        .collect();
    sync_data(&mut written);
    // Each write's names, in order; the directories named into, each with
    // the writes that named files in it.
    let mut published: Vec<io::Result<usize>> = Vec::with_capacity(written.len());
    let mut dirs: Vec<(&Path, &OwnedFd, Vec<usize>)> = Vec::new();
    for (i, files) in written.iter().enumerate() {
        let files = match files {
            Ok(files) => files,
            Err(e) => {
                published.push(Err(copy_error(e)));
                continue;
            }
        };
        let mut count = Ok(0);
        for file in files {
            match file.link() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    count = Err(e);
                    break;
                }
            }
            count = count.map(|n| n + 1);
            let dir = file.dest.parent().unwrap_or(Path::new("."));
            match dirs.iter_mut().find(|(d, _, _)| *d == dir) {
                Some((_, _, users)) => users.push(i),
                None => dirs.push((dir, &file.dir, vec![i])),
            }
        }
        published.push(count);
    }
    for (_, fd, users) in dirs {
        if let Err(e) = rustix::fs::fsync(fd) {
            let e = io::Error::from(e);
            for i in users {
                published[i] = Err(copy_error(&e));
            }
        }
    }
    published
}

/// Makes the data of every file written durable: one `syncfs` per
/// filesystem they are on, which writes back all their data and commits the
/// journal once. A `fdatasync` of each instead commits once per file, since a
/// file's blocks are allocated only when its data is written back; `syncfs`
/// also writes what other programs left unsynced on the same filesystem
/// (`docs/guide/deploy.md`: the data directory is best on its own). A write whose
/// filesystem could not be synced fails (Linux reports writeback errors to
/// `syncfs` since 5.8).
fn sync_data(written: &mut [io::Result<Vec<Unnamed>>]) {
    let mut filesystems: Vec<(rustix::fs::Dev, &File)> = Vec::new();
    let mut on: Vec<Vec<rustix::fs::Dev>> = Vec::with_capacity(written.len());
    for files in written.iter_mut() {
        let mut devices = Vec::new();
        if let Ok(all) = files {
            for f in all.iter() {
                match rustix::fs::fstat(&f.file) {
                    Ok(st) => devices.push(st.st_dev),
                    Err(e) => {
                        *files = Err(e.into());
                        break;
                    }
                }
            }
        }
        on.push(devices);
    }
    for (files, devices) in written.iter().zip(&on) {
        if let Ok(all) = files {
            for (f, &dev) in all.iter().zip(devices) {
                if !filesystems.iter().any(|(d, _)| *d == dev) {
                    filesystems.push((dev, &f.file));
                }
            }
        }
    }
    let failed: Vec<(rustix::fs::Dev, io::Error)> = filesystems
        .into_iter()
        .filter_map(|(dev, f)| rustix::fs::syncfs(f).err().map(|e| (dev, e.into())))
        .collect();
    for (files, devices) in written.iter_mut().zip(&on) {
        if let Some((_, e)) = failed.iter().find(|(d, _)| devices.contains(d)) {
            *files = Err(copy_error(e));
        }
    }
}

/// The same error again, for each write it failed.
fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// A new file's data, written but not yet under its name.
struct Unnamed {
    file: File,
    dir: OwnedFd,
    name: OsString,
    /// The staging file's path where the file could not be made unnamed.
    staged: Option<PathBuf>,
    dest: PathBuf,
}

impl Unnamed {
    fn write(dest: &Path, bytes: &[u8], naming: Naming) -> io::Result<Self> {
        let (dir, name) = match (dest.parent(), dest.file_name()) {
            (Some(d), Some(n)) => (d, n.to_owned()),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} names no file in a directory", dest.display()),
                ))
            }
        };
        let dir = open_dir_making_it(dir)?;
        // An unnamed file is named through /proc; without it (a minimal
        // container) the staged way.
        let naming = match naming {
            Naming::Unnamed if !proc_fd_exists() => Naming::Staged,
            n => n,
        };
        let unnamed = |flags: OFlags| {
            rustix::fs::openat(
                &dir,
                ".",
                OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC | flags,
                Mode::from_raw_mode(0o644),
            )
        };
        // Direct I/O for what has whole blocks to give it, where the
        // filesystem takes it (EINVAL where it does not).
        let mut bulk = match naming {
            Naming::Unnamed => direct_bulk(bytes),
            Naming::Staged => 0,
        };
        let unnamed = match naming {
            Naming::Unnamed if bulk > 0 => match unnamed(OFlags::DIRECT) {
                Err(Errno::INVAL) => {
                    bulk = 0;
                    unnamed(OFlags::empty())
                }
                opened => opened,
            },
            Naming::Unnamed => unnamed(OFlags::empty()),
            Naming::Staged => Err(Errno::OPNOTSUPP),
        };
        let (file, staged) = match unnamed {
            Ok(fd) => (File::from(fd), None),
            // The filesystem cannot make unnamed files: a named staging file.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
                bulk = 0;
                let mut staged = dest.as_os_str().to_owned();
                staged.push(format!("#{}", rand::random::<u64>()));
                let staged = PathBuf::from(staged);
                let file = File::options().write(true).create_new(true).open(&staged)?;
                (file, Some(staged))
            }
            Err(e) => return Err(e.into()),
        };
        let unnamed = Unnamed {
            file,
            dir,
            name,
            staged,
            dest: dest.to_owned(),
        };
        write_data(&unnamed.file, bytes, bulk)?;
        Ok(unnamed)
    }

    /// Names the file: `Ok(false)` if the name is taken.
    fn link(&self) -> io::Result<bool> {
        let linked = match &self.staged {
            None => {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
                rustix::fs::linkat(
                    CWD,
                    format!("/proc/self/fd/{fd}"),
                    &self.dir,
                    &self.name,
                    AtFlags::SYMLINK_FOLLOW,
                )
                .map_err(io::Error::from)
            }
            Some(staged) => {
                let linked = std::fs::hard_link(staged, &self.dest);
                // The staging name goes before the directory is synced.
                linked.and_then(|()| std::fs::remove_file(staged))
            }
        };
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Unnamed {
    /// A staging name left by a failure goes (an unnamed file needs
    /// nothing: closing it frees it unless it was linked). It may be gone
    /// already, and there is no one to tell if removing it fails: a staging
    /// name is never listed as an object.
    fn drop(&mut self) {
        if let Some(staged) = &self.staged {
            let _ = std::fs::remove_file(staged);
        }
    }
}

fn proc_fd_exists() -> bool {
    static EXISTS: OnceLock<bool> = OnceLock::new();
    *EXISTS.get_or_init(|| Path::new("/proc/self/fd").exists())
}

/// Opens directory `dir`, making it and any missing parents first; each
/// directory made is made durable by syncing its parent.
fn open_dir_making_it(dir: &Path) -> io::Result<rustix::fd::OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let parent = dir.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", dir.display()),
        )
    })?;
    let parent_fd = open_dir_making_it(parent)?;
    match rustix::fs::mkdirat(&parent_fd, dir_name(dir)?, Mode::from_raw_mode(0o755)) {
        // Another upload made it meanwhile: it syncs the parent.
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::fsync(&parent_fd)?;
    Ok(rustix::fs::open(dir, flags, Mode::empty())?)
}

fn dir_name(dir: &Path) -> io::Result<&std::ffi::OsStr> {
    dir.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no name to make", dir.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::http::body::AlignedBody;

    fn create_new_all_as(objects: &[(&Path, &[u8])], naming: Naming) -> io::Result<usize> {
        write_batch(&[objects.to_vec()], naming).pop().unwrap()
    }

    fn create_new_all(objects: &[(&Path, &[u8])]) -> io::Result<usize> {
        create_new_all_as(objects, Naming::Unnamed)
    }

    fn create_new(dest: &Path, bytes: &[u8]) -> io::Result<bool> {
        Ok(create_new_all(&[(dest, bytes)])? == 1)
    }

    /// Objects of every length around a block, starting aligned (their
    /// whole blocks written past the page cache) or not, made either way,
    /// are stored exactly.
    #[test]
    fn objects_are_stored_exactly_whatever_their_length_and_alignment() {
        let tmp = tempfile::tempdir().unwrap();
        let align = direct_io_alignment();
        for len in [0, 1, align - 1, align, align + 1, 3 * align + 17, 500_000] {
            let data: Vec<u8> = (0..=len).map(|i| (i * 31 % 251) as u8).collect();
            let mut body = AlignedBody::with_capacity(data.len());
            body.extend(&data);
            let body = body.into_bytes();
            assert_eq!(direct_bulk(&body[..len]), len - len % align, "{len}");
            assert_eq!(direct_bulk(&body[1..]), 0, "{len}");
            for (i, bytes) in [&body[..len], &body[1..]].into_iter().enumerate() {
                for naming in [Naming::Unnamed, Naming::Staged] {
                    let unnamed = naming == Naming::Unnamed;
                    let dest = tmp.path().join(format!("{len}-{i}-{unnamed}"));
                    assert_eq!(create_new_all_as(&[(&dest, bytes)], naming).unwrap(), 1);
                    assert_eq!(std::fs::read(&dest).unwrap(), bytes, "{}", dest.display());
                }
            }
        }
    }

    #[test]
    fn writes_once_and_never_over() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("a/b/c/object");
        assert!(create_new(&dest, b"first").unwrap());
        assert!(!create_new(&dest, b"second").unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        // Nothing else is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("object")]);
    }

    #[test]
    fn the_staged_way_writes_once_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("object");
        let first: &[u8] = b"first";
        assert_eq!(
            create_new_all_as(&[(&dest, first)], Naming::Staged).unwrap(),
            1
        );
        assert_eq!(
            create_new_all_as(&[(&dest, b"second")], Naming::Staged).unwrap(),
            0
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn several_are_published_in_order_up_to_the_first_that_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("s/data/1");
        let key = tmp.path().join("s/keys/1");
        let (d, k): (&[u8], &[u8]) = (b"data", b"key");
        assert_eq!(create_new_all(&[(&data, d), (&key, k)]).unwrap(), 2);
        assert_eq!(std::fs::read(&data).unwrap(), b"data");
        assert_eq!(std::fs::read(&key).unwrap(), b"key");

        // The second exists: the first is published, the second untouched.
        let (data2, key2) = (tmp.path().join("s/data/2"), tmp.path().join("s/keys/2"));
        std::fs::write(&key2, b"old").unwrap();
        assert_eq!(create_new_all(&[(&data2, d), (&key2, k)]).unwrap(), 1);
        assert_eq!(std::fs::read(&data2).unwrap(), b"data");
        assert_eq!(std::fs::read(&key2).unwrap(), b"old");

        // The first exists: nothing is written.
        let key3 = tmp.path().join("s/keys/3");
        assert_eq!(create_new_all(&[(&data, b"other"), (&key3, k)]).unwrap(), 0);
        assert_eq!(std::fs::read(&data).unwrap(), b"data");
        assert!(!key3.exists());
        // No staging or stray entries: objects 1 and 2 in each directory.
        for dir in ["s/data", "s/keys"] {
            let names = std::fs::read_dir(tmp.path().join(dir)).unwrap().count();
            assert_eq!(names, 2, "{dir}");
        }
    }

    #[test]
    fn a_file_where_a_directory_should_be_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), b"").unwrap();
        assert!(create_new(&tmp.path().join("a/object"), b"x").is_err());
    }

    #[test]
    fn each_write_of_a_batch_has_its_own_result() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |rel: &str| tmp.path().join(rel);
        std::fs::write(p("blocker"), b"").unwrap();
        std::fs::create_dir(p("taken")).unwrap();
        std::fs::write(p("taken/1"), b"old").unwrap();
        let (a, b, bad, taken, again) = (
            p("s/data/1"),
            p("s/keys/1"),
            p("blocker/1"),
            p("taken/1"),
            p("s/data/1"),
        );
        let results = write_batch(
            &[
                vec![(a.as_path(), &b"a"[..]), (b.as_path(), &b"b"[..])],
                vec![(bad.as_path(), &b"x"[..])],
                vec![(taken.as_path(), &b"new"[..])],
                // The same name as the first write, in the same batch: the
                // first one made wins, as between two batches.
                vec![(again.as_path(), &b"other"[..])],
            ],
            Naming::Unnamed,
        );
        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.map_err(|e| e.kind()))
            .collect();
        assert_eq!(results[0], Ok(2));
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert_eq!(results[2], Ok(0));
        assert_eq!(results[3], Ok(0));
        assert_eq!(std::fs::read(&a).unwrap(), b"a");
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        assert_eq!(std::fs::read(&taken).unwrap(), b"old");
    }
}
