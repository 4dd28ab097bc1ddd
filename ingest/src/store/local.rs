//! Create-only, durable writes of one object to a local directory: the
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

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

/// Writes `bytes` as the new file `dest`, durably: the data, the file and
/// the directory entry are on disk when this returns `Ok(true)`. Returns
/// `Ok(false)`, writing nothing, if `dest` exists. Missing directories are
/// made, and each new one's parent synced.
pub fn create_new(dest: &Path, bytes: &[u8]) -> io::Result<bool> {
    let (dir, name) = match (dest.parent(), dest.file_name()) {
        (Some(d), Some(n)) => (d, n),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file in a directory", dest.display()),
            ))
        }
    };
    let dir_fd = open_dir_making_it(dir)?;
    match rustix::fs::openat(
        &dir_fd,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(fd) => {
            let mut file = File::from(fd);
            file.write_all(bytes)?;
            file.sync_data()?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            match rustix::fs::linkat(CWD, &proc_path, &dir_fd, name, AtFlags::SYMLINK_FOLLOW) {
                Ok(()) => {}
                Err(Errno::EXIST) => return Ok(false),
                // No /proc (a minimal container): the named way below.
                Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
                    return create_new_staged(&dir_fd, dest, bytes)
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The filesystem cannot make unnamed files.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
            return create_new_staged(&dir_fd, dest, bytes)
        }
        Err(e) => return Err(e.into()),
    }
    rustix::fs::fsync(&dir_fd)?;
    Ok(true)
}

/// The same through a named staging file, hard-linked into place.
fn create_new_staged(dir_fd: &impl AsFd, dest: &Path, bytes: &[u8]) -> io::Result<bool> {
    let mut staged = dest.as_os_str().to_owned();
    staged.push(format!("#{}", rand::random::<u64>()));
    let staged = Path::new(&staged);
    let mut file = File::options().write(true).create_new(true).open(staged)?;
    let linked = file
        .write_all(bytes)
        .and_then(|()| file.sync_data())
        .and_then(|()| std::fs::hard_link(staged, dest));
    // The staging name goes whatever happened.
    let removed = std::fs::remove_file(staged);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    removed?;
    rustix::fs::fsync(dir_fd)?;
    Ok(true)
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
        let dir = File::open(tmp.path()).unwrap();
        assert!(create_new_staged(&dir, &dest, b"first").unwrap());
        assert!(!create_new_staged(&dir, &dest, b"second").unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_where_a_directory_should_be_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), b"").unwrap();
        assert!(create_new(&tmp.path().join("a/object"), b"x").is_err());
    }
}
