//! Room for a download beside the spool. The update directory and the
//! spool share the data partition on a sealcam image; a bundle that filled
//! it would make the spool drop footage (declared, but lost), and the size
//! of the bundle is the server's to choose (up to `update.max_bytes`). So a
//! bundle is fetched only when, after it, the spool could still grow to
//! `spool.max_bytes` and [`MARGIN`] stays free for the system (the
//! journal, RAUC's status); otherwise it waits for a later check.

use std::path::Path;

/// Kept free for everything else on the partition.
pub const MARGIN: u64 = 64 << 20;

/// What the spool needs kept free beside a download.
#[derive(Clone, Debug)]
pub struct Spool<'a> {
    pub dir: &'a Path,
    pub max_bytes: u64,
}

/// Whether `more` bytes may be written into `dir` now. `Err`: why not, in
/// a line.
pub fn check(dir: &Path, more: u64, spool: &Spool<'_>) -> Result<(), String> {
    let vfs = rustix::fs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    let still = if same_filesystem(dir, spool.dir) {
        spool.max_bytes.saturating_sub(used(spool.dir))
    } else {
        0
    };
    let needed = more.saturating_add(still).saturating_add(MARGIN);
    if free >= needed {
        return Ok(());
    }
    Err(format!(
        "no room for the bundle: it needs {} MiB more, and {} has {} MiB free, of which the spool may still take {} MiB (spool.max_bytes less what it holds) and {} MiB stay free for the system; fetched when there is room (or lower spool.max_bytes)",
        mib(more),
        dir.display(),
        mib(free),
        mib(still),
        mib(MARGIN)
    ))
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // A spool not made yet is on the filesystem its parent is on.
    let dev = |p: &Path| {
        p.ancestors()
            .find_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.dev())
    };
    dev(a).is_some() && dev(a) == dev(b)
}

/// The bytes the files under `dir` hold (links not followed).
pub fn used(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => used(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .fold(0u64, u64::saturating_add)
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_spool_counts_what_it_holds_below_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("front")).unwrap();
        std::fs::write(dir.path().join("front/1.frag"), vec![0u8; 3000]).unwrap();
        std::fs::write(dir.path().join("top"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).unwrap();
        assert_eq!(used(dir.path()), 3100);
        assert_eq!(used(&dir.path().join("missing")), 0);
    }

    #[test]
    fn a_download_leaves_the_spool_its_room() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let small = Spool {
            dir: &spool,
            max_bytes: 1 << 20,
        };
        check(dir.path(), 1 << 20, &small).unwrap();
        // A spool that may grow past what the disk has: nothing fits.
        let huge = Spool {
            dir: &spool,
            max_bytes: u64::MAX / 2,
        };
        let why = check(dir.path(), 1 << 20, &huge).unwrap_err();
        assert!(why.contains("the spool may still take"), "{why}");
        // Nor does a bundle larger than the disk.
        assert!(check(dir.path(), u64::MAX / 2, &small).is_err());
        // A spool elsewhere (/proc is another filesystem) takes nothing
        // from this one.
        let elsewhere = Spool {
            dir: Path::new("/proc"),
            max_bytes: u64::MAX / 2,
        };
        check(dir.path(), 1 << 20, &elsewhere).unwrap();
    }
}
