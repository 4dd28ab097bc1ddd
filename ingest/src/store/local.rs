//! Create-only, durable writes of new objects to a local directory: the
//! write path of the local backend. Reads, listings and deletes go through
//! `object_store`'s `LocalFileSystem`, which maps object paths to the same
//! files.
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
//! [`create_new_all`] writes several objects that are published in order
//! (a fragment's data, then its key object) with one sync of all their data
//! and one of all their directories, instead of two syncs for each: on a
//! journaling filesystem each sync of a changed file or directory commits the
//! journal, and those commits, not the copying, are most of the cost of a
//! durable write (`docs/benchmarks.md`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

/// Writes each of `objects` as a new file, durably, publishing them in the
/// order given, and returns how many it published: all of them, or up to the
/// first whose name exists (that one and those after it are not written).
/// Missing directories are made, and each new one's parent synced.
/// Every file's data is on disk before any is named, and the names are on
/// disk when this returns. A journaling filesystem (ext4, XFS) makes the
/// names durable in the order they were made, so after a crash a later
/// object is never there without the earlier ones; on one that does not, the
/// caller's retry of the unacknowledged write repairs it.
pub fn create_new_all(objects: &[(&Path, &[u8])]) -> io::Result<usize> {
    create_new_all_as(objects, Naming::Unnamed)
}

/// How new files are made before they are linked into place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Unnamed (`O_TMPFILE`), where the filesystem can; staged otherwise.
    Unnamed,
    /// Always through a named staging file.
    Staged,
}

fn create_new_all_as(objects: &[(&Path, &[u8])], naming: Naming) -> io::Result<usize> {
    let mut written = Vec::with_capacity(objects.len());
    for (dest, bytes) in objects {
        written.push(Unnamed::write(dest, bytes, naming)?);
    }
    for file in &written {
        file.file.sync_data()?;
    }
    let mut published = 0;
    let mut dirs: Vec<&Unnamed> = Vec::with_capacity(written.len());
    for file in &written {
        if !file.link()? {
            break;
        }
        published += 1;
        dirs.push(file);
    }
    for file in dirs {
        rustix::fs::fsync(&file.dir)?;
    }
    Ok(published)
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
        let unnamed = match naming {
            Naming::Unnamed => rustix::fs::openat(
                &dir,
                ".",
                OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ),
            Naming::Staged => Err(Errno::OPNOTSUPP),
        };
        let (file, staged) = match unnamed {
            Ok(fd) => (File::from(fd), None),
            // The filesystem cannot make unnamed files: a named staging file.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
                let mut staged = dest.as_os_str().to_owned();
                staged.push(format!("#{}", rand::random::<u64>()));
                let staged = PathBuf::from(staged);
                let file = File::options().write(true).create_new(true).open(&staged)?;
                (file, Some(staged))
            }
            Err(e) => return Err(e.into()),
        };
        let mut unnamed = Unnamed {
            file,
            dir,
            name,
            staged,
            dest: dest.to_owned(),
        };
        unnamed.file.write_all(bytes)?;
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

    fn create_new(dest: &Path, bytes: &[u8]) -> io::Result<bool> {
        Ok(create_new_all(&[(dest, bytes)])? == 1)
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
}
