//! The config file as written: serde types that refuse unknown keys, with
//! the defaults `docs/ref/config.md` documents. [`super::sections`] turns them
//! into validated types.

use std::path::PathBuf;

use sealcam_hal::tpm;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) device_id: String,
    pub(super) camera: RawCamera,
    pub(super) stream: RawStream,
    pub(super) recipients: RawRecipients,
    pub(super) identity: RawIdentity,
    pub(super) spool: RawSpool,
    pub(super) upload: RawUpload,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) events: RawEvents,
    #[serde(default)]
    pub(super) update: RawUpdate,
}

/// `[update]`: signed A/B updates (`docs/design/updates.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    #[serde(default)]
    pub(super) enabled: bool,
    #[serde(default = "default_update_interval")]
    pub(super) interval_s: u32,
    /// Another HTTPS server that serves the update routes; none: the ingest.
    #[serde(default)]
    pub(super) url: Option<String>,
    /// The roots that server's certificate is checked against; none: the fleet CA.
    #[serde(default)]
    pub(super) ca: Option<PathBuf>,
    #[serde(default = "default_update_dir")]
    pub(super) dir: PathBuf,
    #[serde(default = "default_update_max_bytes")]
    pub(super) max_bytes: u64,
    #[serde(default)]
    pub(super) compatible: Option<String>,
    #[serde(default = "default_system_conf")]
    pub(super) system_conf: PathBuf,
    #[serde(default = "default_version_file")]
    pub(super) version_file: PathBuf,
    #[serde(default = "default_health_timeout")]
    pub(super) health_timeout_s: u32,
    #[serde(default = "default_ack_file")]
    pub(super) ack_file: PathBuf,
    #[serde(default = "default_install_dir")]
    pub(super) install_dir: PathBuf,
    #[serde(default = "default_kernel_cmdline")]
    pub(super) kernel_cmdline: PathBuf,
}

impl Default for RawUpdate {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_s: default_update_interval(),
            url: None,
            ca: None,
            dir: default_update_dir(),
            max_bytes: default_update_max_bytes(),
            compatible: None,
            system_conf: default_system_conf(),
            version_file: default_version_file(),
            health_timeout_s: default_health_timeout(),
            ack_file: default_ack_file(),
            install_dir: default_install_dir(),
            kernel_cmdline: default_kernel_cmdline(),
        }
    }
}

fn default_update_interval() -> u32 {
    6 * 3600
}
fn default_update_dir() -> PathBuf {
    "/var/lib/sealcam/update".into()
}
fn default_update_max_bytes() -> u64 {
    2 << 30
}
fn default_system_conf() -> PathBuf {
    "/etc/rauc/system.conf".into()
}
fn default_version_file() -> PathBuf {
    "/usr/lib/sealcam/release".into()
}
fn default_health_timeout() -> u32 {
    300
}
fn default_ack_file() -> PathBuf {
    "/run/sealcam/acknowledged".into()
}
fn default_install_dir() -> PathBuf {
    "/var/lib/sealcam-install".into()
}
fn default_kernel_cmdline() -> PathBuf {
    "/proc/cmdline".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    /// Seal an events record (motion, triggers) in every fragment.
    #[serde(default)]
    pub(super) enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// Loopback address of the Prometheus endpoint; none: off.
    #[serde(default)]
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCamera {
    /// The board profile: "auto" (detect) or a name from `board::PROFILE_NAMES`.
    #[serde(default)]
    pub(super) profile: Option<String>,
    /// "v4l2", "libcamera", "argus" or "test"; default from the profile.
    #[serde(default)]
    pub(super) source: Option<String>,
    #[serde(default)]
    pub(super) device: Option<PathBuf>,
    /// libcamera: which camera (default: the first).
    #[serde(default)]
    pub(super) camera_name: Option<String>,
    /// Argus: which CSI sensor.
    #[serde(default)]
    pub(super) sensor_id: Option<u32>,
    /// v4l2 and test: "raw", "mjpeg" or "h264" (passed through).
    #[serde(default)]
    pub(super) format: Option<String>,
    /// "x264", "openh264", "v4l2" or "nvv4l2"; default from the profile.
    #[serde(default)]
    pub(super) encoder: Option<String>,
    #[serde(default = "default_pattern")]
    pub(super) pattern: String,
    #[serde(default)]
    pub(super) num_buffers: Option<u32>,
    #[serde(default)]
    pub(super) width: Option<u32>,
    #[serde(default)]
    pub(super) height: Option<u32>,
    #[serde(default)]
    pub(super) framerate: Option<u32>,
    #[serde(default)]
    pub(super) bitrate_kbps: Option<u32>,
    /// No frame for this long: the capture graph is rebuilt.
    #[serde(default = "default_stall_timeout")]
    pub(super) stall_timeout_ms: u32,
    /// Test source only: "stall-after:N" or "error-after:N" frames, once.
    #[serde(default)]
    pub(super) test_fault: Option<String>,
}

fn default_stall_timeout() -> u32 {
    5000
}

fn default_pattern() -> String {
    "smpte".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    pub(super) name: String,
    #[serde(default = "default_fragment_ms")]
    pub(super) fragment_duration_ms: u32,
    #[serde(default)]
    pub(super) pad_frames: bool,
}

fn default_fragment_ms() -> u32 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipients {
    #[serde(default)]
    pub(super) public_keys: Vec<PathBuf>,
    #[serde(default)]
    pub(super) set: Option<PathBuf>,
    #[serde(default)]
    pub(super) owner_public_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    #[serde(default)]
    pub(super) insecure_software_key: bool,
    #[serde(default)]
    pub(super) key: Option<PathBuf>,
    #[serde(default = "default_tcti")]
    pub(super) tpm_tcti: String,
    #[serde(default = "default_handle")]
    pub(super) tpm_handle: u32,
    pub(super) certificate: PathBuf,
}

fn default_tcti() -> String {
    tpm::DEFAULT_TCTI.into()
}
fn default_handle() -> u32 {
    tpm::DEFAULT_HANDLE
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpool {
    pub(super) dir: PathBuf,
    #[serde(default)]
    pub(super) max_bytes: Option<u64>,
    #[serde(default)]
    pub(super) max_age_s: Option<u64>,
    #[serde(default)]
    pub(super) when_full: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpload {
    pub(super) url: String,
    pub(super) ca: PathBuf,
    #[serde(default = "default_drain_timeout")]
    pub(super) drain_timeout_s: u32,
    #[serde(default = "default_live")]
    pub(super) live: bool,
    #[serde(default = "default_refusal_tries")]
    pub(super) refusal_tries: u32,
    #[serde(default = "default_head_interval")]
    pub(super) head_interval_s: u32,
}

fn default_drain_timeout() -> u32 {
    30
}

fn default_live() -> bool {
    true
}

fn default_refusal_tries() -> u32 {
    5
}

fn default_head_interval() -> u32 {
    10
}
