//! sealcamd's note that the ingest acknowledged a fragment sealed in this
//! run: a small file, written durably with the boot id once per run after
//! the first such upload, which `sealcamd health` (root) reads. Fragments
//! an earlier run left in the spool do not count: their upload proves the
//! network, not that this release captures, seals and signs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::UpdateError;

/// What the note says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The kernel's boot id when it was written.
    pub boot_id: String,
    /// Fragments sealed and acknowledged in this run so far.
    pub acknowledged: u64,
    pub unix_s: u64,
}

/// Writes the note (its directory is made if missing).
pub fn write(path: &Path, ack: &Ack) -> Result<(), UpdateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(UpdateError::io("creating", dir))?;
    }
    super::write_json(path, ack)
}

/// The most a note may hold; it is a few dozen bytes.
const MAX_NOTE: u64 = 4096;

/// The note, if there is one that parses. sealcamd writes it and root
/// reads it: only a regular file ([`super::their_file`]), up to
/// [`MAX_NOTE`] bytes.
pub fn read(path: &Path) -> Option<Ack> {
    use std::io::Read;
    let file = super::their_file::open_regular(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_NOTE).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the note proves an acknowledged fragment in boot `boot_id`.
pub fn proves(ack: Option<&Ack>, boot_id: &str) -> bool {
    ack.is_some_and(|a| {
        super::release::normalized(&a.boot_id) == super::release::normalized(boot_id)
            && a.acknowledged > 0
    })
}

/// Writes the note now for `acknowledged` fragments (a run that ends
/// before [`note_forever`] looked again).
pub fn note_now(path: &Path, acknowledged: u64) -> Result<(), UpdateError> {
    let ack = Ack {
        boot_id: super::release::boot_id()?,
        acknowledged,
        unix_s: crate::date::now_unix(),
    };
    write(path, &ack)
}

/// Writes the note once `acknowledged()` is above zero, then keeps it
/// current once a minute. Failures are logged: the health check then
/// finds no note and gives the slot up, which is what it should do with a
/// camera that cannot write its state.
pub async fn note_forever(
    path: std::path::PathBuf,
    acknowledged: impl Fn() -> u64,
) -> std::convert::Infallible {
    let boot_id = match super::release::boot_id() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no boot id; the health check will not see acknowledged fragments");
            return std::future::pending().await;
        }
    };
    let mut written = 0;
    loop {
        let n = acknowledged();
        if n > written {
            let ack = Ack {
                boot_id: boot_id.clone(),
                acknowledged: n,
                unix_s: crate::date::now_unix(),
            };
            match write(&path, &ack) {
                Ok(()) => {
                    if written == 0 {
                        tracing::info!(path = %path.display(), "the ingest acknowledged a fragment in this boot; noted for the health check");
                    }
                    written = n;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot note acknowledged fragments for the health check")
                }
            }
        }
        let wait = if written == 0 { 250 } else { 60_000 };
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_regular_note_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let note = dir.path().join("acknowledged");
        let ack = Ack {
            boot_id: "b".into(),
            acknowledged: 1,
            unix_s: 1,
        };
        write(&note, &ack).unwrap();
        assert_eq!(read(&note), Some(ack));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&note, &link).unwrap();
        assert_eq!(read(&link), None);
        // Past the limit, the note is cut and no longer parses.
        let mut big = vec![b' '; MAX_NOTE as usize];
        big.extend(serde_json::to_vec(&read(&note)).unwrap());
        std::fs::write(&note, big).unwrap();
        assert_eq!(read(&note), None);
    }

    #[test]
    fn only_a_note_of_this_boot_proves_anything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/acknowledged");
        assert!(!proves(read(&p).as_ref(), "b1"));
        let ack = Ack {
            boot_id: "b1".into(),
            acknowledged: 3,
            unix_s: 1,
        };
        write(&p, &ack).unwrap();
        assert!(proves(read(&p).as_ref(), "b1"));
        assert!(!proves(read(&p).as_ref(), "b2"));
    }
}
