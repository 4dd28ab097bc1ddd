//! Enrollment requests without a token, waiting for an operator's approval.
//!
//! They come from anyone who reaches an enrollment port, so they live
//! outside the CA's directory (`<ca>.pending/` beside it by default, or
//! `serve --pending-dir`), never among its PKI files, and are bounded: at
//! most [`PendingLimits::max`] requests wait at once, new ones are filed at
//! [`PendingLimits::per_minute`] at most (a token bucket in the service),
//! and a request is filed under its device name *and* key fingerprint,
//! create-only, so that no request can replace another device's, nor
//! another key's for the same name. Requests older than
//! [`PENDING_TTL_S`] are dropped when counting.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sealcam_format::Name;

use crate::files::{create_dir, write_new};
use crate::{EnrollError, PkiError};

/// How long a request waits for approval before it is dropped.
pub const PENDING_TTL_S: u64 = 7 * 24 * 3600;

/// The pending directory of the CA in `ca_dir` when none is named: a
/// sibling, `<ca_dir>.pending`.
pub fn default_pending_dir(ca_dir: &Path) -> PathBuf {
    let mut name = ca_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "ca".into());
    name.push(".pending");
    match ca_dir.parent() {
        Some(parent) => parent.join(name),
        None => PathBuf::from(name),
    }
}

/// The file of `device`'s request for the key with `fingerprint`.
pub(crate) fn pending_file(dir: &Path, device: &Name, fingerprint: &str) -> PathBuf {
    dir.join(format!("{device}.{}.csr", fingerprint.to_ascii_lowercase()))
}

/// `(device, fingerprint)` of a pending file's name.
pub(crate) fn parse_pending_name(name: &str) -> Option<(Name, String)> {
    let stem = name.strip_suffix(".csr")?;
    let (device, fingerprint) = stem.rsplit_once('.')?;
    let ok = fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit());
    Some((Name::new(device).ok()?, fingerprint.to_owned())).filter(|_| ok)
}

/// The caps on requests without a token.
#[derive(Clone, Copy, Debug)]
pub struct PendingLimits {
    /// Requests waiting at once.
    pub max: usize,
    /// New requests filed per minute (with a burst of as many).
    pub per_minute: u32,
}

impl Default for PendingLimits {
    fn default() -> Self {
        Self {
            max: 256,
            per_minute: 30,
        }
    }
}

/// Where the service files pending requests, and its rate limit.
pub struct PendingQueue {
    dir: PathBuf,
    limits: PendingLimits,
    bucket: Mutex<(f64, Instant)>,
}

impl PendingQueue {
    pub fn new(dir: PathBuf, limits: PendingLimits) -> Self {
        let burst = f64::from(limits.per_minute.max(1));
        Self {
            dir,
            limits,
            bucket: Mutex::new((burst, Instant::now())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files `csr_pem` for an operator, unless the same request waits
    /// already (then nothing is written). Refused when too many wait or
    /// requests come too fast.
    pub(crate) fn file(
        &self,
        device: &Name,
        fingerprint: &str,
        csr_pem: &str,
    ) -> Result<(), EnrollError> {
        let path = pending_file(&self.dir, device, fingerprint);
        if path.exists() {
            return Ok(());
        }
        if self.waiting()? >= self.limits.max {
            return Err(EnrollError::Busy {
                reason: format!(
                    "{} enrollment requests already wait for an operator",
                    self.limits.max
                ),
                retry_after: Duration::from_secs(3600),
            });
        }
        self.take_token()?;
        create_dir(&self.dir)?;
        match write_new(&path, csr_pem, 0o600) {
            Ok(()) | Err(PkiError::Exists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// How many requests wait now; drops those past [`PENDING_TTL_S`].
    fn waiting(&self) -> Result<usize, PkiError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_pending_name(&name).is_none() {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > PENDING_TTL_S);
            if old {
                let _ = std::fs::remove_file(entry.path());
            } else {
                n += 1;
            }
        }
        Ok(n)
    }

    fn take_token(&self) -> Result<(), EnrollError> {
        let rate = f64::from(self.limits.per_minute.max(1)) / 60.0;
        let burst = f64::from(self.limits.per_minute.max(1));
        let mut b = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
        b.1 = now;
        if b.0 < 1.0 {
            let wait = ((1.0 - b.0) / rate).ceil().max(1.0);
            return Err(EnrollError::Busy {
                reason: "too many enrollment requests without a token".into(),
                retry_after: Duration::from_secs_f64(wait),
            });
        }
        b.0 -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_names_round_trip_and_the_default_is_beside_the_ca() {
        let device = Name::new("cam1").unwrap();
        let fp = "AB".repeat(32);
        let p = pending_file(Path::new("/x"), &device, &fp);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            parse_pending_name(name),
            Some((device, fp.to_ascii_lowercase()))
        );
        assert_eq!(parse_pending_name("cam1.csr"), None);
        assert_eq!(
            default_pending_dir(Path::new("/var/lib/sealcam-ca")),
            Path::new("/var/lib/sealcam-ca.pending")
        );
    }

    #[test]
    fn filing_is_capped_and_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let q = PendingQueue::new(
            dir.path().join("p"),
            PendingLimits {
                max: 3,
                per_minute: 2,
            },
        );
        let fp = |i: u8| format!("{i:02x}").repeat(32);
        let cam = Name::new("cam").unwrap();
        q.file(&cam, &fp(1), "a").unwrap();
        q.file(&cam, &fp(2), "b").unwrap();
        // The same request again writes nothing and costs nothing.
        q.file(&cam, &fp(1), "a").unwrap();
        assert!(matches!(
            q.file(&cam, &fp(3), "c"),
            Err(EnrollError::Busy { .. })
        ));
        let q = PendingQueue::new(
            dir.path().join("p"),
            PendingLimits {
                max: 3,
                per_minute: 60,
            },
        );
        q.file(&cam, &fp(3), "c").unwrap();
        let e = q.file(&cam, &fp(4), "d").unwrap_err();
        assert!(e.to_string().contains("already wait"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path().join("p")).unwrap().count(), 3);
    }
}
