//! The sealcamd configuration file.
//!
//! TOML, unknown keys refused. Relative paths are taken relative to the
//! directory of the config file. See `docs/ref/config.md` for every field.
//!
//! Loading goes in steps, one file each: `raw.rs` (the file as serde types,
//! with the `env.rs` overrides applied), `sections.rs` (one pure validation
//! function per section), then `keys.rs` (the key files read, once every
//! field is valid). This file holds the validated types.

use std::path::{Path, PathBuf};

use sealcam_format::{ConsumerPublicKey, DeviceVerifyingKey, Name};
use sealcam_hal::board::Board;
use sealcam_hal::pipeline::{CaptureSettings, Source};
use sealcam_hal::tpm::TpmConfig;

use crate::pipeline::spool::SpoolBounds;

mod env;
mod keys;
mod raw;
mod sections;
#[cfg(test)]
mod tests;

pub use env::ENV_PREFIX;
use raw::RawConfig;
use sections::Fields;

/// What is wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub device: Name,
    pub stream: Name,
    /// The board profile the capture graph and defaults come from.
    pub board: Board,
    pub capture: CaptureSettings,
    /// No frame for this long: the capture graph is rebuilt.
    pub stall_timeout: std::time::Duration,
    pub fragment_duration_ns: u64,
    /// Pad sealed frames to size buckets (hides frame sizes; costs bytes).
    pub pad_frames: bool,
    pub recipients: RecipientSource,
    pub identity: IdentityConfig,
    pub spool_dir: PathBuf,
    pub spool_bounds: SpoolBounds,
    pub upload: UploadConfig,
    /// Where the Prometheus endpoint listens (loopback only); `None`: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Seal event marks (`[events] enabled`): an events record in every
    /// fragment, with the marks `sealcamd event` leaves.
    pub mark_events: bool,
    /// `[update]`: where bundles go and how the new slot proves itself;
    /// whether the camera checks on its own is `update.enabled`.
    pub update: UpdateConfig,
}

/// `[update]` (`docs/ref/config.md`).
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Whether sealcamd checks for updates on its own, every `interval`.
    pub enabled: bool,
    pub interval: std::time::Duration,
    /// Another HTTPS server to ask (server-authenticated TLS only); `None`:
    /// the ingest, over the device's mutual-TLS identity.
    pub url: Option<String>,
    /// The roots another server's certificate is checked against (PEM);
    /// `None`: the fleet CA (`upload.ca`).
    pub ca: Option<PathBuf>,
    /// Where bundles are downloaded and handed to the installer.
    pub dir: PathBuf,
    /// The largest bundle fetched.
    pub max_bytes: u64,
    /// RAUC's compatible of this camera; `None`: read from `system_conf`.
    pub compatible: Option<String>,
    pub system_conf: PathBuf,
    /// The release version the running slot was built as (one line).
    pub version_file: PathBuf,
    /// How long a slot on trial has to prove itself (`sealcamd health`).
    pub health_timeout: std::time::Duration,
    /// Where sealcamd notes that the ingest acknowledged a fragment in this boot.
    pub ack_file: PathBuf,
    /// The installer's own directory (root only), where it copies a bundle
    /// before it checks and installs it.
    pub install_dir: PathBuf,
    /// The kernel's command line, where the boot loader names the booted
    /// slot (`rauc.slot=`) when RAUC does not answer.
    pub kernel_cmdline: PathBuf,
}

/// Whom the camera seals to.
#[derive(Debug, Clone)]
pub enum RecipientSource {
    /// A recipient set signed by the owner, re-read when the file changes.
    Signed {
        set: PathBuf,
        owner: DeviceVerifyingKey,
    },
    /// A fixed list of keys from the config (development; version 0).
    Development(Vec<ConsumerPublicKey>),
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub key: KeySource,
    pub certificate: PathBuf,
}

/// Where the device key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// In the TPM: the production mode.
    Tpm(TpmConfig),
    /// In a file: development only, warned about at every start.
    InsecureSoftware(PathBuf),
}

#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Base URL of the ingest, `https://host:port`.
    pub url: String,
    /// The fleet CA that signed the ingest's server certificate.
    pub ca: PathBuf,
    /// How long a bounded run (test source with `num_buffers`) keeps trying
    /// to upload before it exits, leaving the rest in the spool.
    pub drain_timeout: std::time::Duration,
    /// Whether the fragment being recorded is uploaded while it is recorded
    /// (otherwise each fragment is uploaded from the spool once it closes).
    pub live: bool,
    /// How often a fragment the ingest refuses is sent before it is held in
    /// the spool for an operator (`sealcamd spool`).
    pub refusal_tries: u32,
    /// How often the camera signs a head of its stream (its newest sealed
    /// fragment) and sends it, whether or not uploads get through.
    pub head_interval: std::time::Duration,
}

impl Config {
    /// Reads the config at `path` for this machine: the board detected from
    /// `/`, and the `SEALCAMD_` environment overrides applied.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_on(path, Path::new("/"))
    }

    /// [`Config::load`] with the board detected below `root`.
    pub fn load_on(path: &Path, root: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_with(path, &text, std::env::vars(), Board::detect(root))
    }

    /// The config in `text` as on a generic machine, without overrides.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(path, text, std::iter::empty(), Board::Generic)
    }

    /// The config in `text`, with the overrides among `env` applied and
    /// `detected` as the board for `profile = "auto"`.
    pub fn parse_with(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        detected: Board,
    ) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let one_line = |e: toml::de::Error| e.to_string().trim().replace('\n', " ");
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_error(one_line(e)))?;
        let applied = env::apply_env_overrides(&mut table, env).map_err(parse_error)?;
        let raw: RawConfig = if applied.is_empty() {
            // From the text, so that errors point at a line.
            toml::from_str(text).map_err(|e| parse_error(one_line(e)))?
        } else {
            tracing::info!(overrides = %applied.join(", "), "config overridden from the environment");
            toml::Value::Table(table).try_into().map_err(|e| {
                parse_error(format!(
                    "{} (with the environment overrides {})",
                    one_line(e),
                    applied.join(", ")
                ))
            })?
        };
        let f = Fields::new(path);
        let device = sections::device(&f, &raw.device_id)?;
        let stream = sections::stream(&f, &raw.stream)?;
        let camera = sections::camera(&f, &raw.camera, detected, stream.fragment_duration_ms)?;
        let recipients = sections::recipients(&f, &raw.recipients)?;
        let (spool_dir, spool_bounds) = sections::spool(&f, &raw.spool)?;
        let identity = sections::identity(&f, &raw.identity)?;
        let upload = sections::upload(&f, &raw.upload)?;
        let metrics_listen = sections::metrics(&f, &raw.metrics)?;
        let update = sections::update(&f, &raw.update)?;
        // Every field is valid: only now read the files it names.
        let recipients = keys::recipients(&f, recipients)?;
        Ok(Self {
            path: path.to_owned(),
            device,
            stream: stream.name,
            board: camera.board,
            capture: camera.capture,
            stall_timeout: camera.stall_timeout,
            fragment_duration_ns: u64::from(stream.fragment_duration_ms) * 1_000_000,
            pad_frames: stream.pad_frames,
            recipients,
            identity,
            spool_dir,
            spool_bounds,
            upload,
            metrics_listen,
            mark_events: raw.events.enabled,
            update,
        })
    }

    /// Only `[update]` of the config at `path`, for the health check: a
    /// new release whose config is broken must still be judged (and given
    /// up), so anything wrong elsewhere in the file is ignored, and an
    /// `[update]` that cannot be read gives its defaults, with a warning.
    pub fn load_update(path: &Path) -> UpdateConfig {
        let f = Fields::new(path);
        let raw = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str::<toml::Table>(&text).map_err(|e| e.to_string()))
            .and_then(|table| match table.get("update") {
                Some(u) => u
                    .clone()
                    .try_into::<raw::RawUpdate>()
                    .map_err(|e| e.to_string()),
                None => Ok(raw::RawUpdate::default()),
            });
        let raw = raw.unwrap_or_else(|e| {
            tracing::warn!(config = %path.display(), error = %e, "cannot read [update]; using its defaults");
            raw::RawUpdate::default()
        });
        sections::update(&f, &raw).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "[update] is not valid; using its defaults");
            sections::update_unchecked(&f, &raw::RawUpdate::default())
        })
    }

    /// True when capture ends by itself (a test source with `num_buffers`).
    pub fn is_bounded(&self) -> bool {
        matches!(
            self.capture.source,
            Source::TestPattern {
                num_buffers: Some(_),
                ..
            }
        )
    }
}
