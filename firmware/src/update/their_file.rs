//! Opening, as root, a file in a directory sealcamd's user controls (the
//! update directory, `/run/sealcam`): that user may have put a link to a
//! file of root's there, a FIFO that blocks the reader for ever, or a
//! device. Only a regular file is opened, without following a link and
//! without waiting on a FIFO.

use std::fs::File;
use std::path::Path;

/// The regular file at `path`; `Err`: why not, in a line.
pub fn open_regular(path: &Path) -> Result<File, String> {
    open_regular_shown(path, path)
}

/// [`open_regular`], naming the file `shown` in messages (`path` may be a
/// [`super::their_dir::TheirDir`]'s descriptor path).
pub fn open_regular_shown(path: &Path, shown: &Path) -> Result<File, String> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| format!("{} cannot be opened as a file: {e}", shown.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file", shown.display()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_regular_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root's").unwrap();
        assert!(open_regular(&secret).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(open_regular(&link).is_err());
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Returns at once: no writer is waited for.
        assert!(open_regular(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(open_regular(dir.path()).is_err());
        assert!(open_regular(&dir.path().join("missing")).is_err());
    }
}
