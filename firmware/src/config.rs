//! The sealcamd configuration file.
//!
//! TOML, unknown keys refused. Relative paths are taken relative to the
//! directory of the config file. See `docs/ref/config.md` for every field.

use std::path::{Path, PathBuf};

use p256::pkcs8::DecodePublicKey;
use sealcam_format::{ConsumerPublicKey, DeviceVerifyingKey, Name};
use sealcam_hal::board::{Board, PROFILE_NAMES};
use sealcam_hal::pipeline::{CameraFormat, CaptureSettings, Encoder, Source, SpeedPreset};
use sealcam_hal::tpm::{self, TpmConfig};

use crate::spool::{FullPolicy, SpoolBounds};
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device_id: String,
    camera: RawCamera,
    stream: RawStream,
    recipients: RawRecipients,
    identity: RawIdentity,
    spool: RawSpool,
    upload: RawUpload,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    /// Loopback address of the Prometheus endpoint; none: off.
    #[serde(default)]
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    /// The board profile: "auto" (detect) or a name from `board::PROFILE_NAMES`.
    #[serde(default)]
    profile: Option<String>,
    /// "v4l2", "libcamera", "argus" or "test"; default from the profile.
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    device: Option<PathBuf>,
    /// libcamera: which camera (default: the first).
    #[serde(default)]
    camera_name: Option<String>,
    /// Argus: which CSI sensor.
    #[serde(default)]
    sensor_id: Option<u32>,
    /// v4l2 and test: "raw", "mjpeg" or "h264" (passed through).
    #[serde(default)]
    format: Option<String>,
    /// "x264", "openh264", "v4l2" or "nvv4l2"; default from the profile.
    #[serde(default)]
    encoder: Option<String>,
    #[serde(default = "default_pattern")]
    pattern: String,
    #[serde(default)]
    num_buffers: Option<u32>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    framerate: Option<u32>,
    #[serde(default)]
    bitrate_kbps: Option<u32>,
    /// No frame for this long: the capture graph is rebuilt.
    #[serde(default = "default_stall_timeout")]
    stall_timeout_ms: u32,
    /// Test source only: "stall-after:N" or "error-after:N" frames, once.
    #[serde(default)]
    test_fault: Option<String>,
}

fn default_stall_timeout() -> u32 {
    5000
}

fn default_pattern() -> String {
    "smpte".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: String,
    #[serde(default = "default_fragment_ms")]
    fragment_duration_ms: u32,
    #[serde(default)]
    pad_frames: bool,
}

fn default_fragment_ms() -> u32 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipients {
    #[serde(default)]
    public_keys: Vec<PathBuf>,
    #[serde(default)]
    set: Option<PathBuf>,
    #[serde(default)]
    owner_public_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default)]
    insecure_software_key: bool,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default = "default_tcti")]
    tpm_tcti: String,
    #[serde(default = "default_handle")]
    tpm_handle: u32,
    certificate: PathBuf,
}

fn default_tcti() -> String {
    tpm::DEFAULT_TCTI.into()
}
fn default_handle() -> u32 {
    tpm::DEFAULT_HANDLE
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    dir: PathBuf,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    max_age_s: Option<u64>,
    #[serde(default)]
    when_full: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    url: String,
    ca: PathBuf,
    #[serde(default = "default_drain_timeout")]
    drain_timeout_s: u32,
    #[serde(default = "default_live")]
    live: bool,
}

fn default_drain_timeout() -> u32 {
    30
}

fn default_live() -> bool {
    true
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
}

/// The prefix of environment overrides: `SEALCAMD_CAMERA__WIDTH=640` sets
/// `width` in `[camera]`, `SEALCAMD_DEVICE_ID=cam7` the top-level
/// `device_id`. Levels are separated by a double underscore; names are
/// lowercased. A value is read as a TOML value when it is one (`640`,
/// `true`, `["a.pub"]`) and as a string otherwise.
pub const ENV_PREFIX: &str = "SEALCAMD_";

/// Applies the `SEALCAMD_` variables among `env` to `table`, returning
/// their names in order.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, String> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, value) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "{var}: write SEALCAMD_SECTION__KEY (for example SEALCAMD_CAMERA__WIDTH)"
            ));
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let (key, sections) = path.split_last().ok_or_else(|| format!("{var}: no key"))?;
        let mut at = &mut *table;
        for section in sections {
            let entry = at
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                format!("{var}: {section} is a value in the config, not a section")
            })?;
        }
        at.insert(key.clone(), parsed);
        applied.push(var);
    }
    Ok(applied)
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
        let applied = apply_env_overrides(&mut table, env).map_err(parse_error)?;
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
        let field = |field: &'static str, message: String| ConfigError::Field {
            path: path.to_owned(),
            field,
            message,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let device = Name::new(&raw.device_id).map_err(|e| field("device_id", e.to_string()))?;
        let stream =
            Name::new(&raw.stream.name).map_err(|e| field("stream.name", e.to_string()))?;

        let c = &raw.camera;
        let board = match c.profile.as_deref() {
            None | Some("auto") => detected,
            Some(name) => Board::from_name(name).ok_or_else(|| {
                field(
                    "camera.profile",
                    format!("unknown profile {name:?}; use one of {PROFILE_NAMES}"),
                )
            })?,
        };
        let defaults = board.defaults();
        let format = match c.format.as_deref() {
            None => CameraFormat::Raw,
            Some(f) => CameraFormat::from_name(f).ok_or_else(|| {
                field(
                    "camera.format",
                    format!("unknown format {f:?}; use \"raw\", \"mjpeg\" or \"h264\""),
                )
            })?,
        };
        let source_name = c.source.as_deref().unwrap_or(defaults.source.name());
        let only_for = |set: bool, name: &'static str, sources: &str| {
            if set {
                Err(field(name, format!("only applies to source = {sources}")))
            } else {
                Ok(())
            }
        };
        let test = source_name == "test";
        only_for(
            c.num_buffers.is_some() && !test,
            "camera.num_buffers",
            "\"test\"",
        )?;
        only_for(
            c.test_fault.is_some() && !test,
            "camera.test_fault",
            "\"test\"",
        )?;
        only_for(
            c.device.is_some() && source_name != "v4l2",
            "camera.device",
            "\"v4l2\"",
        )?;
        only_for(
            c.camera_name.is_some() && source_name != "libcamera",
            "camera.camera_name",
            "\"libcamera\"",
        )?;
        only_for(
            c.sensor_id.is_some() && source_name != "argus",
            "camera.sensor_id",
            "\"argus\"",
        )?;
        only_for(
            c.format.is_some() && !test && source_name != "v4l2",
            "camera.format",
            "\"v4l2\" or \"test\"",
        )?;
        let source = match source_name {
            "test" => Source::TestPattern {
                pattern: c.pattern.clone(),
                num_buffers: c.num_buffers,
                format,
                fault: c
                    .test_fault
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| field("camera.test_fault", e))?,
            },
            "v4l2" => Source::V4l2 {
                device: c
                    .device
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/dev/video0")),
                format,
            },
            "libcamera" => Source::Libcamera {
                camera_name: c.camera_name.clone(),
            },
            "argus" => Source::Argus {
                sensor_id: c.sensor_id.unwrap_or(0),
            },
            other => {
                return Err(field(
                    "camera.source",
                    format!(
                    "unknown source {other:?}; use \"v4l2\", \"libcamera\", \"argus\" or \"test\""
                ),
                ))
            }
        };
        let encoder = match c.encoder.as_deref() {
            None => defaults.encoder,
            Some("x264") => match defaults.encoder {
                e @ Encoder::X264 { .. } => e,
                _ => Encoder::X264 {
                    speed_preset: SpeedPreset::Superfast,
                },
            },
            Some("openh264") => Encoder::OpenH264,
            Some("v4l2") => Encoder::V4l2,
            Some("nvv4l2") => Encoder::Nvv4l2,
            Some(other) => {
                return Err(field(
                    "camera.encoder",
                    format!("unknown encoder {other:?}; use \"x264\", \"openh264\", \"v4l2\" (Raspberry Pi 4) or \"nvv4l2\" (Jetson)"),
                ))
            }
        };
        if format == CameraFormat::H264 && c.encoder.is_some() {
            return Err(field(
                "camera.encoder",
                "the camera delivers H.264 itself (format = \"h264\"): it is passed through, not encoded; remove encoder".into(),
            ));
        }
        if matches!(source, Source::Argus { .. })
            && !matches!(board, Board::Jetson | Board::JetsonOrinNano)
        {
            return Err(field(
                "camera.source",
                format!(
                    "\"argus\" is the Jetson camera stack; this is profile {}",
                    board.name()
                ),
            ));
        }
        let width = c.width.unwrap_or(defaults.width);
        let height = c.height.unwrap_or(defaults.height);
        let framerate = c.framerate.unwrap_or(defaults.framerate);
        let bitrate_kbps = c.bitrate_kbps.unwrap_or(defaults.bitrate_kbps);
        if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
            return Err(field(
                "camera.width/height",
                format!("{width}x{height} is outside 16x16 .. 7680x4320"),
            ));
        }
        if !(1..=240).contains(&framerate) {
            return Err(field(
                "camera.framerate",
                format!("{framerate} is outside 1..=240"),
            ));
        }
        if !(500..=600_000).contains(&c.stall_timeout_ms) {
            return Err(field(
                "camera.stall_timeout_ms",
                format!("{} is outside 500..=600000", c.stall_timeout_ms),
            ));
        }
        if !(64..=100_000).contains(&bitrate_kbps) {
            return Err(field(
                "camera.bitrate_kbps",
                format!("{bitrate_kbps} is outside 64..=100000"),
            ));
        }
        let ms = raw.stream.fragment_duration_ms;
        if !(500..=30_000).contains(&ms) {
            return Err(field(
                "stream.fragment_duration_ms",
                format!("{ms} is outside 500..=30000 (KVS-style fragments are 1 to 30 s; 2000 is a good default)"),
            ));
        }
        let keyframe_interval =
            ((u64::from(framerate) * u64::from(ms)).div_ceil(1000)).max(1) as u32;

        let recipients = match (&raw.recipients.set, raw.recipients.public_keys.is_empty()) {
            (Some(_), false) => {
                return Err(field(
                    "recipients",
                    "give either set (signed by the owner) or public_keys (development), not both".into(),
                ))
            }
            (Some(set), true) => {
                let owner = raw.recipients.owner_public_key.as_ref().ok_or_else(|| {
                    field(
                        "recipients.owner_public_key",
                        "required with recipients.set: the owner key that signs it (`sealcam owner init`)".into(),
                    )
                })?;
                let owner = resolve(owner);
                let pem = std::fs::read_to_string(&owner).map_err(|e| {
                    field("recipients.owner_public_key", format!("cannot read {}: {e}", owner.display()))
                })?;
                let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
                    field("recipients.owner_public_key", format!("{}: not a P-256 public key: {e}", owner.display()))
                })?;
                RecipientSource::Signed {
                    set: resolve(set),
                    owner: DeviceVerifyingKey(key),
                }
            }
            (None, true) => {
                return Err(field(
                    "recipients",
                    "no consumer keys: set recipients.set and recipients.owner_public_key (see `sealcam recipients sign`), or for development list .pub files from `sealcam keygen` in recipients.public_keys".into(),
                ))
            }
            (None, false) => {
                let mut keys = Vec::new();
                for p in &raw.recipients.public_keys {
                    let p = resolve(p);
                    let pem = std::fs::read_to_string(&p)
                        .map_err(|e| field("recipients.public_keys", format!("cannot read {}: {e}", p.display())))?;
                    let key = ConsumerPublicKey::from_pem(&pem)
                        .map_err(|e| field("recipients.public_keys", format!("{}: {e}", p.display())))?;
                    keys.push(key);
                }
                RecipientSource::Development(keys)
            }
        };

        let spool_bounds = SpoolBounds {
            max_bytes: raw
                .spool
                .max_bytes
                .unwrap_or(crate::recorder::DEFAULT_SPOOL_BYTES),
            max_age: raw.spool.max_age_s.map(std::time::Duration::from_secs),
            when_full: match raw.spool.when_full.as_deref() {
                None | Some("drop-oldest") => FullPolicy::DropOldest,
                Some("stop-recording") => FullPolicy::StopRecording,
                Some(other) => {
                    return Err(field(
                        "spool.when_full",
                        format!("{other:?}: use \"drop-oldest\" or \"stop-recording\""),
                    ))
                }
            },
        };
        if spool_bounds.max_bytes < 1 << 20 {
            return Err(field(
                "spool.max_bytes",
                "must be at least 1 MiB (1048576)".into(),
            ));
        }
        let id = &raw.identity;
        let key = match (id.insecure_software_key, &id.key) {
            (true, Some(path)) => KeySource::InsecureSoftware(resolve(path)),
            (true, None) => {
                return Err(field(
                    "identity.key",
                    "required with insecure_software_key = true (the file that holds the development key)".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(field(
                    "identity.key",
                    "only for insecure_software_key = true; the TPM holds the device key (remove this line)".into(),
                ))
            }
            (false, None) => {
                if !(0x8100_0000..=0x817F_FFFF).contains(&id.tpm_handle) {
                    return Err(field(
                        "identity.tpm_handle",
                        format!("{:#010x} is outside the owner range 0x81000000..=0x817fffff", id.tpm_handle),
                    ));
                }
                KeySource::Tpm(TpmConfig {
                    tcti: id.tpm_tcti.clone(),
                    handle: id.tpm_handle,
                })
            }
        };

        let url = raw.upload.url.trim_end_matches('/').to_owned();
        if !url.starts_with("https://") {
            return Err(field(
                "upload.url",
                format!("{url:?} must start with https://"),
            ));
        }

        let metrics_listen = match &raw.metrics.listen {
            None => None,
            Some(text) => {
                let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                    field(
                        "metrics.listen",
                        format!("{text:?} is not an address; write 127.0.0.1:9464"),
                    )
                })?;
                if !addr.ip().is_loopback() {
                    return Err(field(
                        "metrics.listen",
                        format!("{addr} is not a loopback address: the endpoint has no authentication; bind 127.0.0.1 or [::1] and scrape through an agent or tunnel"),
                    ));
                }
                Some(addr)
            }
        };

        Ok(Self {
            path: path.to_owned(),
            device,
            stream,
            board,
            capture: CaptureSettings {
                source,
                encoder,
                width,
                height,
                framerate_num: framerate,
                framerate_den: 1,
                keyframe_interval,
                bitrate_kbps,
            },
            stall_timeout: std::time::Duration::from_millis(c.stall_timeout_ms.into()),
            fragment_duration_ns: u64::from(ms) * 1_000_000,
            pad_frames: raw.stream.pad_frames,
            recipients,
            identity: IdentityConfig {
                key,
                certificate: resolve(&raw.identity.certificate),
            },
            spool_dir: resolve(&raw.spool.dir),
            spool_bounds,
            upload: UploadConfig {
                url,
                ca: resolve(&raw.upload.ca),
                drain_timeout: std::time::Duration::from_secs(raw.upload.drain_timeout_s.into()),
                live: raw.upload.live,
            },
            metrics_listen,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(dir: &Path) {
        let sk = sealcam_format::ConsumerSecretKey::generate(&mut rand::thread_rng());
        std::fs::write(dir.join("alice.pub"), sk.public().to_pem().unwrap()).unwrap();
    }

    const GOOD: &str = r#"
device_id = "cam1"
[camera]
source = "test"
width = 320
height = 240
framerate = 30
[stream]
name = "front"
[recipients]
public_keys = ["alice.pub"]
[identity]
insecure_software_key = true
key = "device.key"
certificate = "device.crt"
[spool]
dir = "spool"
[upload]
url = "https://127.0.0.1:8443/"
ca = "ca.crt"
"#;

    #[test]
    fn good_config_resolves_paths_and_key_interval() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let c = Config::parse(&dir.path().join("c.toml"), GOOD).unwrap();
        assert_eq!(c.capture.keyframe_interval, 60);
        assert_eq!(c.spool_dir, dir.path().join("spool"));
        assert_eq!(c.upload.url, "https://127.0.0.1:8443");
    }

    #[test]
    fn without_the_software_key_the_tpm_holds_the_key() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let tpm = GOOD.replace("insecure_software_key = true\nkey = \"device.key\"\n", "");
        let c = Config::parse(&dir.path().join("c.toml"), &tpm).unwrap();
        assert_eq!(
            c.identity.key,
            KeySource::Tpm(TpmConfig {
                tcti: "device:/dev/tpmrm0".into(),
                handle: 0x8100_0100
            })
        );
        let half = GOOD.replace("insecure_software_key = true\n", "");
        let err = Config::parse(&dir.path().join("c.toml"), &half)
            .unwrap_err()
            .to_string();
        assert!(err.contains("identity.key"), "{err}");
    }

    #[test]
    fn typo_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let bad = GOOD.replace("framerate = 30", "framerate = 30\nfamerate = 2");
        let err = Config::parse(&dir.path().join("c.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("famerate"), "{err}");
    }

    #[test]
    fn missing_recipient_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::parse(&dir.path().join("c.toml"), GOOD)
            .unwrap_err()
            .to_string();
        assert!(err.contains("alice.pub"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        for (from, to, field) in [
            ("framerate = 30", "framerate = 0", "camera.framerate"),
            ("source = \"test\"", "source = \"usb\"", "camera.source"),
            ("name = \"front\"", "name = \"../x\"", "stream.name"),
            ("https://127", "http://127", "upload.url"),
        ] {
            let err = Config::parse(&dir.path().join("c.toml"), &GOOD.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    fn parse_on(text: &str, env: &[(&str, &str)], board: Board) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        Config::parse_with(
            &dir.path().join("c.toml"),
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            board,
        )
        .map_err(|e| e.to_string())
    }

    /// GOOD without a camera source or picture: all from the profile.
    fn bare() -> String {
        GOOD.replace(
            "source = \"test\"\nwidth = 320\nheight = 240\nframerate = 30\n",
            "",
        )
    }

    #[test]
    fn the_board_profile_chooses_source_encoder_and_picture() {
        let pi4 = parse_on(&bare(), &[], Board::RaspberryPi4).unwrap();
        assert_eq!(pi4.board, Board::RaspberryPi4);
        assert_eq!(pi4.capture.source, Source::Libcamera { camera_name: None });
        assert_eq!(pi4.capture.encoder, Encoder::V4l2);
        assert_eq!((pi4.capture.width, pi4.capture.height), (1920, 1080));
        assert_eq!(pi4.capture.keyframe_interval, 60);

        let pi5 = parse_on(&bare(), &[], Board::RaspberryPi5).unwrap();
        assert_eq!(
            pi5.capture.encoder,
            Encoder::X264 {
                speed_preset: SpeedPreset::Ultrafast
            }
        );
        let jetson = parse_on(&bare(), &[], Board::Jetson).unwrap();
        assert_eq!(jetson.capture.source, Source::Argus { sensor_id: 0 });
        assert_eq!(jetson.capture.encoder, Encoder::Nvv4l2);

        // A profile named in the config wins over the detected board.
        let forced = bare().replace("[camera]\n", "[camera]\nprofile = \"rpi5\"\n");
        let c = parse_on(&forced, &[], Board::Jetson).unwrap();
        assert_eq!(c.board, Board::RaspberryPi5);
        let c = parse_on(&forced.replace("rpi5", "pi9"), &[], Board::Generic).unwrap_err();
        assert!(c.contains("camera.profile") && c.contains("rpi4"), "{c}");

        // A USB camera on a Pi 4: v4l2, still the hardware encoder.
        let usb = bare().replace(
            "[camera]\n",
            "[camera]\nsource = \"v4l2\"\nformat = \"mjpeg\"\n",
        );
        let c = parse_on(&usb, &[], Board::RaspberryPi4).unwrap();
        assert_eq!(
            c.capture.source,
            Source::V4l2 {
                device: "/dev/video0".into(),
                format: CameraFormat::Mjpeg
            }
        );
        assert_eq!(c.capture.encoder, Encoder::V4l2);
    }

    #[test]
    fn options_that_do_not_fit_the_source_are_refused() {
        for (camera, field) in [
            ("source = \"argus\"", "camera.source"),
            (
                "source = \"libcamera\"\ndevice = \"/dev/video2\"",
                "camera.device",
            ),
            ("source = \"v4l2\"\nsensor_id = 1", "camera.sensor_id"),
            ("source = \"libcamera\"\nformat = \"h264\"", "camera.format"),
            (
                "source = \"v4l2\"\nformat = \"h264\"\nencoder = \"x264\"",
                "camera.encoder",
            ),
            ("encoder = \"nvenc\"", "camera.encoder"),
            ("format = \"yuyv\"", "camera.format"),
        ] {
            let text = bare().replace("[camera]\n", &format!("[camera]\n{camera}\n"));
            let err = parse_on(&text, &[], Board::Generic).unwrap_err();
            assert!(err.contains(field), "{camera}: {err}");
        }
    }

    #[test]
    fn environment_overrides_set_fields_by_section() {
        let c = parse_on(
            GOOD,
            &[
                ("SEALCAMD_CAMERA__WIDTH", "640"),
                ("SEALCAMD_UPLOAD__URL", "https://ingest.example:9443"),
                ("SEALCAMD_DEVICE_ID", "cam7"),
                ("SEALCAMD_SPOOL__MAX_BYTES", "2097152"),
                ("SEALCAM_LOG", "debug"),
                ("PATH", "/usr/bin"),
            ],
            Board::Generic,
        )
        .unwrap();
        assert_eq!(c.capture.width, 640);
        assert_eq!(c.upload.url, "https://ingest.example:9443");
        assert_eq!(c.device.as_str(), "cam7");
        assert_eq!(c.spool_bounds.max_bytes, 2 << 20);

        let err = parse_on(GOOD, &[("SEALCAMD_CAMERA__WIDHT", "640")], Board::Generic).unwrap_err();
        assert!(
            err.contains("widht") && err.contains("SEALCAMD_CAMERA__WIDHT"),
            "{err}"
        );
        let err =
            parse_on(GOOD, &[("SEALCAMD_CAMERA__WIDTH", "wide")], Board::Generic).unwrap_err();
        assert!(err.contains("SEALCAMD_CAMERA__WIDTH"), "{err}");
        let err = parse_on(GOOD, &[("SEALCAMD_DEVICE_ID__X", "1")], Board::Generic).unwrap_err();
        assert!(err.contains("not a section"), "{err}");
        let err = parse_on(GOOD, &[("SEALCAMD_CAMERA____X", "1")], Board::Generic).unwrap_err();
        assert!(err.contains("SEALCAMD_SECTION__KEY"), "{err}");
    }

    /// Every board config in `configs/boards/`, parsed as on its board,
    /// with `/etc/sealcam` moved into a directory holding an owner key.
    fn board_configs() -> Vec<(String, Config)> {
        let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/boards");
        let etc = tempfile::tempdir().unwrap();
        let owner = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            owner.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap();
        std::fs::write(etc.path().join("owner.pub"), pem).unwrap();
        let mut configs = Vec::new();
        let example = boards.join("../sealcamd.example.toml");
        let yocto = boards
            .join("../../yocto-layer/meta-sealcam/recipes-sealcam/sealcam/files/sealcamd.toml");
        let files = std::fs::read_dir(&boards)
            .unwrap()
            .map(|e| e.unwrap().path())
            .chain([example, yocto]);
        for path in files {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/etc/sealcam/", &format!("{}/", etc.path().display()));
            let c = Config::parse_with(&path, &text, std::iter::empty(), Board::Generic)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            configs.push((name, c));
        }
        configs.sort_by(|a, b| a.0.cmp(&b.0));
        configs
    }

    #[test]
    fn every_board_config_parses_validates_and_plans_its_graph() {
        let configs = board_configs();
        let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "jetson-orin",
                "qemu-vivid",
                "rpi4",
                "rpi5",
                // The Yocto layer's default.
                "sealcamd",
                "sealcamd.example",
                "usb-uvc"
            ]
        );
        for (name, c) in &configs {
            assert_eq!(
                c.identity.key,
                KeySource::Tpm(TpmConfig {
                    tcti: tpm::DEFAULT_TCTI.into(),
                    handle: tpm::DEFAULT_HANDLE
                }),
                "{name}"
            );
            assert!(
                matches!(c.recipients, RecipientSource::Signed { .. }),
                "{name}"
            );
            let graph = sealcam_hal::pipeline::describe(&sealcam_hal::pipeline::plan(&c.capture));
            let (board, parts): (Board, &[&str]) = match name.as_str() {
                "rpi4" => (Board::RaspberryPi4, &["libcamerasrc", "v4l2h264enc"]),
                "rpi5" => (Board::RaspberryPi5, &["libcamerasrc", "x264enc"]),
                "jetson-orin" => (Board::Jetson, &["nvarguscamerasrc", "nvv4l2h264enc"]),
                "usb-uvc" => (
                    Board::Generic,
                    &["v4l2src", "image/jpeg", "jpegdec", "x264enc"],
                ),
                "qemu-vivid" | "sealcamd.example" | "sealcamd" => {
                    (Board::Generic, &["v4l2src device=/dev/video0", "x264enc"])
                }
                other => panic!("no expectations for {other}"),
            };
            assert_eq!(c.board, board, "{name}");
            for part in parts {
                assert!(graph.contains(part), "{name}: {part} not in {graph}");
            }
            // Two-second fragments: a key frame every two seconds.
            assert_eq!(
                c.capture.keyframe_interval,
                2 * c.capture.framerate_num,
                "{name}"
            );
        }
        // The QEMU guest has exactly the plugins this machine has.
        let (_, qemu) = &configs[1];
        assert_eq!(
            sealcam_hal::capture::check_elements(&qemu.capture).unwrap(),
            vec![]
        );
    }
}
