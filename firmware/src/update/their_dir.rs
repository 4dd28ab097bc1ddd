//! Working, as root, in a directory sealcamd's user controls (the update
//! directory, `/var/lib/sealcam/update`). That user owns
//! `/var/lib/sealcam` and can put a link to a directory of root's
//! (`/etc`) in the update directory's place; the installer would then
//! remove and write files there as root. [`TheirDir::open`] follows no link
//! in a directory anyone but root may write to, and everything done after
//! names the directory through the open descriptor
//! (`/proc/self/fd/N/...`): a rename of the directory meanwhile changes
//! nothing about where the installer's files go.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// A directory opened without following links an untrusted user could have
/// made.
#[derive(Debug)]
pub struct TheirDir {
    fd: OwnedFd,
    /// The directory's own path, for messages.
    shown: PathBuf,
    /// The path that reaches the directory through `fd`.
    through_fd: PathBuf,
}

impl TheirDir {
    /// Opens `path` component by component: a link is followed only where
    /// the directory holding it is root's alone (owned by root, writable by
    /// no group or other), as `/` and `/var/lib` are. `Err`: why not, in a
    /// line.
    pub fn open(path: &Path) -> Result<Self, String> {
        let start = if path.is_absolute() { "/" } else { "." };
        let mut fd = rustix::fs::open(start, dir_flags(), Mode::empty())
            .map_err(|e| format!("{}: opening {start}: {e}", path.display()))?;
        for component in path.components() {
            let name = match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Prefix(_) => return Err(format!("{}: not a Unix path", path.display())),
                Component::ParentDir => Path::new(".."),
                Component::Normal(name) => Path::new(name),
            };
            let trusted = roots_alone(&fd)
                .map_err(|e| format!("{}: checking who owns a parent: {e}", path.display()))?;
            let flags = if trusted {
                dir_flags()
            } else {
                dir_flags() | OFlags::NOFOLLOW
            };
            fd = rustix::fs::openat(&fd, name, flags, Mode::empty()).map_err(|e| {
                if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                    format!(
                        "{} is not a directory (a link there is not followed: its parent is not root's alone)",
                        path.display()
                    )
                } else {
                    format!("{}: {e}", path.display())
                }
            })?;
        }
        let through_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        // The descriptor's path must work (it does where /proc is mounted,
        // as under systemd's ProtectProc=invisible).
        File::open(&through_fd).map_err(|e| {
            format!(
                "{}: cannot reach it through {} ({e}); /proc must be mounted",
                path.display(),
                through_fd.display()
            )
        })?;
        Ok(Self {
            fd,
            shown: path.to_owned(),
            through_fd,
        })
    }

    /// `name` in this directory, as a path that stays in it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.through_fd.join(name)
    }

    /// The path that reaches this directory through its descriptor.
    pub fn path(&self) -> &Path {
        &self.through_fd
    }

    /// `name` in this directory as the configuration names it, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.shown.join(name)
    }

    /// Whether `name` exists here (of any type, a link not followed).
    pub fn has(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Whether only root can change what the directory `fd` holds.
fn roots_alone(fd: &OwnedFd) -> rustix::io::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(st.st_uid == 0 && st.st_mode & 0o022 == 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_link_in_a_directory_root_does_not_own_alone_is_refused() {
        // A temporary directory is in /tmp, which everyone may write to.
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("sealcam");
        std::fs::create_dir(&theirs).unwrap();
        // As /var/lib/sealcam is sealcamd's user's (tests run as root here,
        // where the temporary directory itself is root's alone).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&theirs, Some(990), Some(990)).unwrap();
        }
        let roots = dir.path().join("etc");
        std::fs::create_dir(&roots).unwrap();
        std::os::unix::fs::symlink(&roots, theirs.join("update")).unwrap();
        let why = TheirDir::open(&theirs.join("update")).unwrap_err();
        assert!(why.contains("not a directory"), "{why}");

        // A real directory is opened, and what is written under it stays
        // there even when the directory is swapped for a link meanwhile.
        std::fs::remove_file(theirs.join("update")).unwrap();
        std::fs::create_dir(theirs.join("update")).unwrap();
        let opened = TheirDir::open(&theirs.join("update")).unwrap();
        assert!(!opened.has("outcome.json"));
        std::fs::rename(theirs.join("update"), theirs.join("moved")).unwrap();
        std::os::unix::fs::symlink(&roots, theirs.join("update")).unwrap();
        sealcam_base::durable::replace(&opened.join("outcome.json"), b"{}").unwrap();
        assert!(opened.has("outcome.json"));
        assert!(theirs.join("moved/outcome.json").exists());
        assert!(!roots.join("outcome.json").exists());
        assert_eq!(
            opened.shown("outcome.json"),
            theirs.join("update/outcome.json")
        );
    }

    #[test]
    fn links_in_roots_directories_are_followed() {
        // /proc/self is a link in a directory of root's (when the tests run
        // as root or not: /proc belongs to root).
        let opened = TheirDir::open(Path::new("/proc/self/fd")).unwrap();
        assert!(opened.path().starts_with("/proc/self/fd"));
        assert!(TheirDir::open(Path::new("/nonexistent-sealcam-dir")).is_err());
    }
}
