//! Writing a checked bundle into the config directory: each file durably
//! (`sealcam_base::durable`), readable by the daemon's group only (`0640`,
//! group `sealcam`), and the device certificate last, under a staging name
//! until everything else is in place, so that a camera never has a
//! certificate (which is what makes it count as provisioned) beside a
//! config that was not fully written.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sealcam_base::durable::{self, AtomicFile, DurableError};

/// Mode of every installed file: the daemon's group reads, nobody else.
pub const MODE: u32 = 0o640;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the group {0} does not exist (the sealcamd package creates it)")]
    NoGroup(String),
    #[error("cannot read /etc/group: {0}")]
    Groups(#[source] std::io::Error),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error("cannot give {} to group {group} with mode 0640: {source}", path.display())]
    Owner {
        path: PathBuf,
        group: String,
        #[source]
        source: std::io::Error,
    },
}

/// Who the installed files belong to.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

impl Group {
    /// Looks `name` up in `/etc/group` (what systemd-sysusers writes).
    pub fn lookup(name: &str) -> Result<Self, InstallError> {
        let text = std::fs::read_to_string("/etc/group").map_err(InstallError::Groups)?;
        gid_in(&text, name)
            .map(|gid| Self {
                name: name.to_owned(),
                gid,
            })
            .ok_or_else(|| InstallError::NoGroup(name.to_owned()))
    }
}

/// The gid of `name` in the text of an `/etc/group` file.
fn gid_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let n = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?;
        (n == name).then(|| gid.parse().ok()).flatten()
    })
}

/// Gives an open file to `group` with [`MODE`].
fn own(file: &File, path: &Path, group: Option<&Group>) -> Result<(), InstallError> {
    let err = |source, name: &str| InstallError::Owner {
        path: path.to_owned(),
        group: name.to_owned(),
        source,
    };
    let name = group.map_or("(unchanged)", |g| g.name.as_str());
    if let Some(g) = group {
        rustix::fs::fchown(file, None, Some(rustix::fs::Gid::from_raw(g.gid)))
            .map_err(|e| err(e.into(), name))?;
    }
    file.set_permissions(Permissions::from_mode(MODE))
        .map_err(|e| err(e, name))
}

/// Writes `bytes` as `path` durably, owned by `group` with [`MODE`].
pub fn write(path: &Path, bytes: &[u8], group: Option<&Group>) -> Result<(), InstallError> {
    let mut f = AtomicFile::create_with_mode(path, MODE)?;
    let tmp = f.temporary_path().to_owned();
    f.write_all(bytes).map_err(|source| DurableError {
        op: "write",
        path: tmp.clone(),
        source,
    })?;
    own(f.file(), &tmp, group)?;
    f.commit()?;
    Ok(())
}

/// Moves the staged certificate to its name, owned by `group` with
/// [`MODE`]: the step that makes the camera provisioned.
pub fn commit_certificate(
    staged: &Path,
    certificate: &Path,
    group: Option<&Group>,
) -> Result<(), InstallError> {
    let file = File::open(staged).map_err(|source| DurableError {
        op: "open",
        path: staged.to_owned(),
        source,
    })?;
    own(&file, staged, group)?;
    durable::rename(staged, certificate)?;
    Ok(())
}

/// Removes `path` durably if it is there.
pub fn remove_if_present(path: &Path) -> Result<(), DurableError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => durable::remove(path),
        Err(_) => Ok(()),
    }
}

/// The staging name of a file: hidden, beside it.
pub fn staged(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".firstboot-{name}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_found_by_its_exact_name() {
        let text = "root:x:0:\nsealcam-ca:x:998:\nsealcam:x:997:video\nbroken\n";
        assert_eq!(gid_in(text, "sealcam"), Some(997));
        assert_eq!(gid_in(text, "sealcam-ca"), Some(998));
        assert_eq!(gid_in(text, "seal"), None);
        assert_eq!(gid_in(text, "broken"), None);
    }

    #[test]
    fn installed_files_have_mode_0640_and_replace_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealcamd.toml");
        std::fs::write(&path, b"old").unwrap();
        write(&path, b"new", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, MODE);
    }

    #[test]
    fn a_staged_name_is_hidden_beside_its_file() {
        assert_eq!(
            staged(Path::new("/etc/sealcam/device.crt"), ".part"),
            Path::new("/etc/sealcam/.firstboot-device.crt.part")
        );
    }
}
