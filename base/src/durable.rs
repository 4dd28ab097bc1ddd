//! Durable writes: the one place that writes a file so that, after a crash
//! or a power cut, it is either wholly there or not there at all.
//!
//! A file is written under a temporary name in its own directory, its data
//! is flushed to disk (`fsync`), it is moved to its name (a rename, or a
//! hard link where an existing file must never be replaced), and the
//! directory is flushed too, so that the name survives. On any failure the
//! temporary file is removed and nothing is retried: after a failed
//! `fsync` the file's contents are unknown (PostgreSQL's "fsyncgate"), so
//! the caller starts again from its own copy of the data, or gives up.
//!
//! The temporary names come from `tempfile` (random, created exclusively),
//! so two writers of one directory never share one.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A durable write that failed: what was being done, to which file.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct DurableError {
    /// What failed: `create`, `write`, `fsync`, `rename`, `fsync directory`.
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl DurableError {
    fn new<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// Whether it failed because the name is taken ([`AtomicFile::create_new`]).
    pub fn already_exists(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AlreadyExists
    }
}

/// Whether the file may replace one of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Replace whatever is there, atomically (rename).
    Replace,
    /// Fail with `AlreadyExists` if the name is taken (hard link).
    New,
}

/// A file being written under a temporary name in its target's directory;
/// [`commit`](Self::commit) makes it durable under its name. Dropped
/// without a commit, it leaves nothing behind.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
    dir: PathBuf,
    placement: Placement,
}

impl AtomicFile {
    /// A file that will replace any file named `target` when committed.
    /// Created with mode `0o666` less the umask, as `File::create` does.
    pub fn create(target: &Path) -> Result<Self, DurableError> {
        Self::open(target, Placement::Replace, 0o666)
    }

    /// A file that will take the name `target` only if nothing has it;
    /// committing fails with [`DurableError::already_exists`] otherwise.
    /// `mode` (less the umask) is set when it is created, so the data is
    /// never readable more widely, even for a moment (`0o600` for keys).
    pub fn create_new(target: &Path, mode: u32) -> Result<Self, DurableError> {
        Self::open(target, Placement::New, mode)
    }

    /// A file that will replace `target`, created with `mode` less the umask.
    pub fn create_with_mode(target: &Path, mode: u32) -> Result<Self, DurableError> {
        Self::open(target, Placement::Replace, mode)
    }

    fn open(target: &Path, placement: Placement, mode: u32) -> Result<Self, DurableError> {
        let dir = parent_dir(target).to_owned();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(Permissions::from_mode(mode))
            .tempfile_in(&dir)
            .map_err(DurableError::new("create a temporary file in", &dir))?;
        Ok(Self {
            tmp,
            target: target.to_owned(),
            dir,
            placement,
        })
    }

    /// The open file, to write to.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Where the data is until it is committed.
    pub fn temporary_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes the data, gives the file its name, and flushes the
    /// directory. On failure the temporary file is removed.
    pub fn commit(self) -> Result<(), DurableError> {
        let Self {
            tmp,
            target,
            dir,
            placement,
        } = self;
        tmp.as_file()
            .sync_all()
            .map_err(DurableError::new("fsync", tmp.path()))?;
        match placement {
            Placement::Replace => tmp
                .persist(&target)
                .map(drop)
                .map_err(|e| DurableError::new("rename onto", &target)(e.error))?,
            Placement::New => tmp
                .persist_noclobber(&target)
                .map(drop)
                .map_err(|e| DurableError::new("create", &target)(e.error))?,
        }
        sync_dir(&dir)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` as the file `path`, replacing any file of that name,
/// durably (see the module's documentation).
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)
        .map_err(DurableError::new("write", f.tmp.path()))?;
    f.commit()
}

/// Writes `bytes` as the new file `path` with `mode`, durably; fails with
/// [`DurableError::already_exists`] if `path` exists (which is never
/// replaced).
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DurableError> {
    let mut f = AtomicFile::create_new(path, mode)?;
    f.write_all(bytes)
        .map_err(DurableError::new("write", f.tmp.path()))?;
    f.commit()
}

/// Moves `from` to `to` (replacing `to`) and flushes both directories, so
/// the file is under exactly one of the names after a crash.
pub fn rename(from: &Path, to: &Path) -> Result<(), DurableError> {
    std::fs::rename(from, to).map_err(DurableError::new("rename to", to))?;
    sync_dir(parent_dir(to))?;
    let (a, b) = (parent_dir(from), parent_dir(to));
    if a != b {
        sync_dir(a)?;
    }
    Ok(())
}

/// Removes `path` and flushes its directory, so the removal survives a
/// crash.
pub fn remove(path: &Path) -> Result<(), DurableError> {
    std::fs::remove_file(path).map_err(DurableError::new("remove", path))?;
    sync_dir(parent_dir(path))
}

/// Flushes a directory, so that the names created in or removed from it
/// survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(DurableError::new("fsync directory", dir))
}

/// The directory a file is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replace_writes_and_replaces_leaving_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.crt");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(dir.path()), ["device.crt"]);
    }

    #[test]
    fn create_new_never_replaces_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        create_new(&path, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let err = create_new(&path, b"other", 0o600).unwrap_err();
        assert!(err.already_exists(), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
        assert_eq!(entries(dir.path()), ["key.pem"]);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mkv");
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"half a clip").unwrap();
        }
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_placement_removes_the_temporary_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        // A directory of that name: the rename cannot replace it.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        let err = replace(&path, b"data").unwrap_err();
        assert_eq!(err.op, "rename onto");
        assert!(err.to_string().contains("taken"), "{err}");
        assert_eq!(entries(dir.path()), ["taken"]);
    }

    #[test]
    fn rename_moves_between_directories() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("rejected");
        std::fs::create_dir(&sub).unwrap();
        let from = dir.path().join("a.scf");
        std::fs::write(&from, b"x").unwrap();
        rename(&from, &sub.join("a.scf")).unwrap();
        assert_eq!(entries(dir.path()), ["rejected"]);
        assert_eq!(entries(&sub), ["a.scf"]);
        remove(&sub.join("a.scf")).unwrap();
        assert!(entries(&sub).is_empty());
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("x")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/x")), Path::new("/a"));
    }
}
