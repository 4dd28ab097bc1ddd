//! One validation function per section of the config. Pure: nothing here
//! reads a file; the key files the config names are read afterwards, by
//! [`super::keys`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealcam_format::Name;
use sealcam_hal::board::{Board, Defaults, PROFILE_NAMES};
use sealcam_hal::pipeline::{CameraFormat, CaptureSettings, Encoder, Source, SourceKind};
use sealcam_hal::tpm::TpmConfig;

use super::raw::{
    RawCamera, RawIdentity, RawMetrics, RawRecipients, RawSpool, RawStream, RawUpdate, RawUpload,
};
use super::{ConfigError, IdentityConfig, KeySource, UpdateConfig, UploadConfig};
use crate::pipeline::spool::{FullPolicy, SpoolBounds};

/// The config file being validated: where its errors point and what its
/// relative paths are relative to.
pub(super) struct Fields<'a> {
    path: &'a Path,
    base: &'a Path,
}

impl<'a> Fields<'a> {
    pub(super) fn new(path: &'a Path) -> Self {
        Self {
            path,
            base: path.parent().unwrap_or(Path::new(".")),
        }
    }

    /// The error for `field`.
    pub(super) fn error(&self, field: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            path: self.path.to_owned(),
            field,
            message: message.into(),
        }
    }

    /// `p` relative to the config file's directory unless absolute.
    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }
}

/// `device_id`.
pub(super) fn device(f: &Fields, device_id: &str) -> Result<Name, ConfigError> {
    Name::new(device_id).map_err(|e| f.error("device_id", e.to_string()))
}

/// `[stream]`, validated.
pub(super) struct Stream {
    pub(super) name: Name,
    pub(super) fragment_duration_ms: u32,
    pub(super) pad_frames: bool,
}

/// `[stream]`.
pub(super) fn stream(f: &Fields, raw: &RawStream) -> Result<Stream, ConfigError> {
    let name = Name::new(&raw.name).map_err(|e| f.error("stream.name", e.to_string()))?;
    let ms = raw.fragment_duration_ms;
    if !(500..=30_000).contains(&ms) {
        return Err(f.error(
            "stream.fragment_duration_ms",
            format!("{ms} is outside 500..=30000 (KVS-style fragments are 1 to 30 s; 2000 is a good default)"),
        ));
    }
    Ok(Stream {
        name,
        fragment_duration_ms: ms,
        pad_frames: raw.pad_frames,
    })
}

/// `[camera]`, validated.
pub(super) struct Camera {
    pub(super) board: Board,
    pub(super) capture: CaptureSettings,
    pub(super) stall_timeout: Duration,
}

/// `[camera]`, for fragments of `fragment_ms` (a key frame starts each);
/// `detected` is the board for `profile = "auto"`.
pub(super) fn camera(
    f: &Fields,
    c: &RawCamera,
    detected: Board,
    fragment_ms: u32,
) -> Result<Camera, ConfigError> {
    let board = match c.profile.as_deref() {
        None | Some("auto") => detected,
        Some(name) => Board::from_name(name).ok_or_else(|| {
            f.error(
                "camera.profile",
                format!("unknown profile {name:?}; use one of {PROFILE_NAMES}"),
            )
        })?,
    };
    let defaults = board.defaults();
    let source = source(f, c, &defaults)?;
    let encoder = encoder(f, c, &defaults, source.format())?;
    if matches!(source, Source::Argus { .. })
        && !matches!(board, Board::Jetson | Board::JetsonOrinNano)
    {
        return Err(f.error(
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
    within(
        f,
        "camera.width/height",
        (16..=7680).contains(&width) && (16..=4320).contains(&height),
        || format!("{width}x{height} is outside 16x16 .. 7680x4320"),
    )?;
    within(
        f,
        "camera.framerate",
        (1..=240).contains(&framerate),
        || format!("{framerate} is outside 1..=240"),
    )?;
    let stall_ms = c.stall_timeout_ms;
    within(
        f,
        "camera.stall_timeout_ms",
        (500..=600_000).contains(&stall_ms),
        || format!("{stall_ms} is outside 500..=600000"),
    )?;
    within(
        f,
        "camera.bitrate_kbps",
        (64..=100_000).contains(&bitrate_kbps),
        || format!("{bitrate_kbps} is outside 64..=100000"),
    )?;
    let keyframe_interval =
        ((u64::from(framerate) * u64::from(fragment_ms)).div_ceil(1000)).max(1) as u32;
    Ok(Camera {
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
        stall_timeout: Duration::from_millis(stall_ms.into()),
    })
}

/// `Ok` when `ok`, otherwise the error for `field` with `message()`.
fn within(
    f: &Fields,
    field: &'static str,
    ok: bool,
    message: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(f.error(field, message()))
    }
}

/// The camera's source: its kind (the profile's unless named), its format
/// and the options that apply to that kind only.
fn source(f: &Fields, c: &RawCamera, defaults: &Defaults) -> Result<Source, ConfigError> {
    let format = match c.format.as_deref() {
        None => CameraFormat::Raw,
        Some(name) => CameraFormat::from_name(name).ok_or_else(|| {
            f.error(
                "camera.format",
                format!("unknown format {name:?}; use \"raw\", \"mjpeg\" or \"h264\""),
            )
        })?,
    };
    let name = c.source.as_deref().unwrap_or(defaults.source.name());
    let kind = SourceKind::from_name(name);
    let is = |k: SourceKind| kind == Some(k);
    let only_for = |set: bool, field: &'static str, kinds: &[SourceKind], sources: &str| {
        within(f, field, !set || kinds.iter().any(|k| is(*k)), || {
            format!("only applies to source = {sources}")
        })
    };
    use SourceKind::{Argus, Libcamera, Test, V4l2};
    only_for(
        c.num_buffers.is_some(),
        "camera.num_buffers",
        &[Test],
        "\"test\"",
    )?;
    only_for(
        c.test_fault.is_some(),
        "camera.test_fault",
        &[Test],
        "\"test\"",
    )?;
    only_for(c.device.is_some(), "camera.device", &[V4l2], "\"v4l2\"")?;
    only_for(
        c.camera_name.is_some(),
        "camera.camera_name",
        &[Libcamera],
        "\"libcamera\"",
    )?;
    only_for(
        c.sensor_id.is_some(),
        "camera.sensor_id",
        &[Argus],
        "\"argus\"",
    )?;
    only_for(
        c.format.is_some(),
        "camera.format",
        &[V4l2, Test],
        "\"v4l2\" or \"test\"",
    )?;
    Ok(match kind {
        Some(Test) => Source::TestPattern {
            pattern: c.pattern.clone(),
            num_buffers: c.num_buffers,
            format,
            fault: c
                .test_fault
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| f.error("camera.test_fault", e))?,
        },
        Some(V4l2) => Source::V4l2 {
            device: c
                .device
                .clone()
                .unwrap_or_else(|| PathBuf::from("/dev/video0")),
            format,
        },
        Some(Libcamera) => Source::Libcamera {
            camera_name: c.camera_name.clone(),
        },
        Some(Argus) => Source::Argus {
            sensor_id: c.sensor_id.unwrap_or(0),
        },
        None => {
            return Err(f.error(
                "camera.source",
                format!(
                    "unknown source {name:?}; use \"v4l2\", \"libcamera\", \"argus\" or \"test\""
                ),
            ))
        }
    })
}

/// The encoder (the profile's unless named); none for a camera that
/// delivers H.264 itself.
fn encoder(
    f: &Fields,
    c: &RawCamera,
    defaults: &Defaults,
    format: CameraFormat,
) -> Result<Encoder, ConfigError> {
    let encoder = match c.encoder.as_deref() {
        None => defaults.encoder,
        Some(name) => Encoder::from_name(name, defaults.encoder).ok_or_else(|| {
            f.error(
                "camera.encoder",
                format!("unknown encoder {name:?}; use \"x264\", \"openh264\", \"v4l2\" (Raspberry Pi 4) or \"nvv4l2\" (Jetson)"),
            )
        })?,
    };
    if format == CameraFormat::H264 && c.encoder.is_some() {
        return Err(f.error(
            "camera.encoder",
            "the camera delivers H.264 itself (format = \"h264\"): it is passed through, not encoded; remove encoder",
        ));
    }
    Ok(encoder)
}

/// `[recipients]`, validated: which key files to read.
pub(super) enum RecipientFiles {
    /// A set signed by the owner, and the owner's public key.
    Signed { set: PathBuf, owner: PathBuf },
    /// Consumer public keys (development).
    Development(Vec<PathBuf>),
}

/// `[recipients]`.
pub(super) fn recipients(f: &Fields, raw: &RawRecipients) -> Result<RecipientFiles, ConfigError> {
    match (&raw.set, raw.public_keys.is_empty()) {
        (Some(_), false) => Err(f.error(
            "recipients",
            "give either set (signed by the owner) or public_keys (development), not both",
        )),
        (Some(set), true) => {
            let owner = raw.owner_public_key.as_ref().ok_or_else(|| {
                f.error(
                    "recipients.owner_public_key",
                    "required with recipients.set: the owner key that signs it (`sealcam owner init`)",
                )
            })?;
            Ok(RecipientFiles::Signed {
                set: f.resolve(set),
                owner: f.resolve(owner),
            })
        }
        (None, true) => Err(f.error(
            "recipients",
            "no consumer keys: set recipients.set and recipients.owner_public_key (see `sealcam recipients sign`), or for development list .pub files from `sealcam keygen` in recipients.public_keys",
        )),
        (None, false) => Ok(RecipientFiles::Development(
            raw.public_keys.iter().map(|p| f.resolve(p)).collect(),
        )),
    }
}

/// `[spool]`: its directory and bounds.
pub(super) fn spool(f: &Fields, raw: &RawSpool) -> Result<(PathBuf, SpoolBounds), ConfigError> {
    let bounds = SpoolBounds {
        max_bytes: raw
            .max_bytes
            .unwrap_or(crate::pipeline::recorder::DEFAULT_SPOOL_BYTES),
        max_age: raw.max_age_s.map(Duration::from_secs),
        when_full: match raw.when_full.as_deref() {
            None | Some("drop-oldest") => FullPolicy::DropOldest,
            Some("stop-recording") => FullPolicy::StopRecording,
            Some(other) => {
                return Err(f.error(
                    "spool.when_full",
                    format!("{other:?}: use \"drop-oldest\" or \"stop-recording\""),
                ))
            }
        },
    };
    if bounds.max_bytes < 1 << 20 {
        return Err(f.error("spool.max_bytes", "must be at least 1 MiB (1048576)"));
    }
    Ok((f.resolve(&raw.dir), bounds))
}

/// `[identity]`.
pub(super) fn identity(f: &Fields, id: &RawIdentity) -> Result<IdentityConfig, ConfigError> {
    let key = match (id.insecure_software_key, &id.key) {
        (true, Some(path)) => KeySource::InsecureSoftware(f.resolve(path)),
        (true, None) => {
            return Err(f.error(
                "identity.key",
                "required with insecure_software_key = true (the file that holds the development key)",
            ))
        }
        (false, Some(_)) => {
            return Err(f.error(
                "identity.key",
                "only for insecure_software_key = true; the TPM holds the device key (remove this line)",
            ))
        }
        (false, None) => {
            if !(0x8100_0000..=0x817F_FFFF).contains(&id.tpm_handle) {
                return Err(f.error(
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
    Ok(IdentityConfig {
        key,
        certificate: f.resolve(&id.certificate),
    })
}

/// `[upload]`.
pub(super) fn upload(f: &Fields, raw: &RawUpload) -> Result<UploadConfig, ConfigError> {
    let url = raw.url.trim_end_matches('/').to_owned();
    if !url.starts_with("https://") {
        return Err(f.error("upload.url", format!("{url:?} must start with https://")));
    }
    if raw.refusal_tries == 0 {
        return Err(f.error(
            "upload.refusal_tries",
            "must be at least 1 (how often a fragment the ingest refuses is sent before it is held)",
        ));
    }
    if raw.head_interval_s == 0 {
        return Err(f.error(
            "upload.head_interval_s",
            "must be at least 1 (how often the camera signs and sends its newest head)",
        ));
    }
    Ok(UploadConfig {
        url,
        head_interval: Duration::from_secs(raw.head_interval_s.into()),
        ca: f.resolve(&raw.ca),
        drain_timeout: Duration::from_secs(raw.drain_timeout_s.into()),
        live: raw.live,
        refusal_tries: raw.refusal_tries,
    })
}

/// `[metrics]`: where the endpoint listens, if anywhere.
pub(super) fn metrics(f: &Fields, raw: &RawMetrics) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = &raw.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = text.parse().map_err(|_| {
        f.error(
            "metrics.listen",
            format!("{text:?} is not an address; write 127.0.0.1:9464"),
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(f.error(
            "metrics.listen",
            format!("{addr} is not a loopback address: the endpoint has no authentication; bind 127.0.0.1 or [::1] and scrape through an agent or tunnel"),
        ));
    }
    Ok(Some(addr))
}

/// `[update]`.
pub(super) fn update(f: &Fields, raw: &RawUpdate) -> Result<UpdateConfig, ConfigError> {
    if raw.interval_s == 0 {
        return Err(f.error(
            "update.interval_s",
            "must be at least 1; the default checks every 6 hours",
        ));
    }
    if raw.health_timeout_s == 0 {
        return Err(f.error(
            "update.health_timeout_s",
            "must be at least 1; the default gives a new slot 300 s",
        ));
    }
    if let Some(url) = &raw.url {
        if !url.starts_with("https://") {
            return Err(f.error(
                "update.url",
                format!("{url:?}: bundles are fetched over HTTPS only; write https://HOST[:PORT]"),
            ));
        }
    }
    if let Some(c) = &raw.compatible {
        Name::new(c).map_err(|e| f.error("update.compatible", e.to_string()))?;
    }
    Ok(update_unchecked(f, raw))
}

/// `[update]` as written, without the checks of [`update`] (for its
/// defaults, which pass them).
pub(super) fn update_unchecked(f: &Fields, raw: &RawUpdate) -> UpdateConfig {
    UpdateConfig {
        enabled: raw.enabled,
        interval: Duration::from_secs(u64::from(raw.interval_s)),
        url: raw.url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
        ca: raw.ca.as_deref().map(|p| f.resolve(p)),
        dir: f.resolve(&raw.dir),
        max_bytes: raw.max_bytes,
        compatible: raw.compatible.clone(),
        system_conf: f.resolve(&raw.system_conf),
        version_file: f.resolve(&raw.version_file),
        health_timeout: Duration::from_secs(u64::from(raw.health_timeout_s)),
        ack_file: f.resolve(&raw.ack_file),
        install_dir: f.resolve(&raw.install_dir),
        kernel_cmdline: f.resolve(&raw.kernel_cmdline),
    }
}
