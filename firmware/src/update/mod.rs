//! Signed A/B updates on the camera (`docs/design/updates.md`).
//!
//! ```text
//! sealcamd (user sealcam)            sealcam-install.service (root)      next boot
//!   fetch.rs: offer? download,  ──▶    install.rs: copy, rauc info,  ──▶   health.rs: slot on trial?
//!   resume, sha256 and size            compatible and version checked,      wait for ack.rs's note
//!   checked, renamed ready.raucb       rauc install, outcome.rs, reboot     then mark-good / mark-bad
//! ```
//!
//! * [`release`]: what this slot is: RAUC's compatible, the release
//!   version, the boot id.
//! * [`fetch`]: the scheduled check and the resumable download.
//! * [`declined`]: the bundles refused, which sealcamd does not fetch.
//! * [`room`]: room for a download beside the spool.
//! * [`install`]: the privileged installer step, and its checks.
//! * [`outcome`]: the installer's last outcome, which sealcamd reports.
//! * [`given_up`]: the releases this camera tried and gave up.
//! * [`proven`]: the newest release this camera proved, below which it
//!   installs nothing.
//! * [`ack`]: sealcamd's note that the ingest acknowledged a fragment in
//!   this boot, which the health check waits for.
//! * [`health`]: `sealcamd health`: whether the booted slot is on trial,
//!   and what to do about it.
//! * [`their_file`]: opening, as root, a file sealcamd's user controls.
//! * [`their_dir`]: working, as root, in a directory sealcamd's user
//!   controls.
//! * [`rauc`]: running RAUC's client, with a time limit.
//! * [`rauc_json`]: `rauc status` and `rauc info` output, as RAUC 1.8 writes it.

pub mod ack;
pub mod declined;
pub mod fetch;
pub mod given_up;
pub mod health;
pub mod install;
pub mod outcome;
pub mod proven;
pub mod rauc;
pub mod rauc_json;
pub mod release;
pub mod room;
pub mod their_dir;
pub mod their_file;

/// The name of a downloaded, verified bundle waiting for the installer.
pub const READY: &str = "ready.raucb";

/// Why an update step failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Durable(#[from] sealcam_base::durable::DurableError),
    #[error("{0}")]
    Release(String),
    #[error("update server {url}: {reason}")]
    Server { url: String, reason: String },
    #[error("refused the offer of {version}: {reason}")]
    Refused { version: String, reason: String },
    #[error("the downloaded bundle's SHA-256 is {got}, the offer said {want}; it was deleted and is fetched again at the next check")]
    HashMismatch { want: String, got: String },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    /// The command did not end within its time limit and was stopped; what
    /// it was doing may still go on (RAUC's service, for one).
    #[error("{command}: no answer within {limit_s} s; stopped")]
    NoAnswer { command: String, limit_s: u64 },
    #[error(transparent)]
    Tls(#[from] sealcam_transport::TransportError),
    /// The data partition has no room for the bundle beside the spool.
    #[error("{0}")]
    NoRoom(String),
}

/// Writes `value` as JSON to `path`, durably (the update's notes and
/// lists: small files replaced whole).
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), UpdateError> {
    let json = serde_json::to_vec(value).map_err(|e| UpdateError::Release(e.to_string()))?;
    sealcam_base::durable::replace(path, &json)?;
    Ok(())
}

impl UpdateError {
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.display().to_string();
        move |source| Self::Io { what, path, source }
    }
}
