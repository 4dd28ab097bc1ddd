//! The sealcamd configuration file.
//!
//! TOML, unknown keys refused. Relative paths are taken relative to the
//! directory of the config file. See `docs/config.md` for every field.

use std::path::{Path, PathBuf};

use p256::pkcs8::DecodePublicKey;
use sealcam_format::{ConsumerPublicKey, DeviceVerifyingKey, Name};
use sealcam_hal::capture::{CaptureSettings, Source};
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    /// "test" (videotestsrc) or "v4l2".
    source: String,
    #[serde(default)]
    device: Option<PathBuf>,
    #[serde(default = "default_pattern")]
    pattern: String,
    #[serde(default)]
    num_buffers: Option<u32>,
    width: u32,
    height: u32,
    framerate: u32,
    #[serde(default = "default_bitrate")]
    bitrate_kbps: u32,
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
fn default_bitrate() -> u32 {
    2000
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
}

fn default_drain_timeout() -> u32 {
    30
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub device: Name,
    pub stream: Name,
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
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
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
        let source = match c.source.as_str() {
            "test" => Source::TestPattern {
                pattern: c.pattern.clone(),
                num_buffers: c.num_buffers,
                fault: c
                    .test_fault
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| field("camera.test_fault", e))?,
            },
            "v4l2" => {
                if c.num_buffers.is_some() {
                    return Err(field(
                        "camera.num_buffers",
                        "only applies to source = \"test\"".into(),
                    ));
                }
                if c.test_fault.is_some() {
                    return Err(field(
                        "camera.test_fault",
                        "only applies to source = \"test\"".into(),
                    ));
                }
                Source::V4l2 {
                    device: c
                        .device
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("/dev/video0")),
                }
            }
            other => {
                return Err(field(
                    "camera.source",
                    format!("unknown source {other:?}; use \"test\" or \"v4l2\""),
                ))
            }
        };
        if !(16..=7680).contains(&c.width) || !(16..=4320).contains(&c.height) {
            return Err(field(
                "camera.width/height",
                format!("{}x{} is outside 16x16 .. 7680x4320", c.width, c.height),
            ));
        }
        if !(1..=240).contains(&c.framerate) {
            return Err(field(
                "camera.framerate",
                format!("{} is outside 1..=240", c.framerate),
            ));
        }
        if !(500..=600_000).contains(&c.stall_timeout_ms) {
            return Err(field(
                "camera.stall_timeout_ms",
                format!("{} is outside 500..=600000", c.stall_timeout_ms),
            ));
        }
        if !(64..=100_000).contains(&c.bitrate_kbps) {
            return Err(field(
                "camera.bitrate_kbps",
                format!("{} is outside 64..=100000", c.bitrate_kbps),
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
            ((u64::from(c.framerate) * u64::from(ms)).div_ceil(1000)).max(1) as u32;

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

        Ok(Self {
            path: path.to_owned(),
            device,
            stream,
            capture: CaptureSettings {
                source,
                width: c.width,
                height: c.height,
                framerate_num: c.framerate,
                framerate_den: 1,
                keyframe_interval,
                bitrate_kbps: c.bitrate_kbps,
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
            },
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
}
