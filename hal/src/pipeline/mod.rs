//! What the capture graph is made of: the source, the decoder, the
//! converter and the encoder each board needs, as a plan of GStreamer
//! elements with their properties.
//!
//! The plan is plain data, so what every board gets can be checked here
//! without the board's plugins, and the daemon can name every element it
//! is missing (with the package that provides it) before it builds
//! anything. [`crate::capture`] turns a plan into a running graph.
//!
//! Every encoder's key-frame interval is set to the fragment length, in the
//! property names that encoder uses; a camera that encodes H.264 itself is
//! passed through untouched (its own key-frame interval decides where
//! fragments can be cut).

use std::fmt;
use std::path::PathBuf;

/// Where frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// GStreamer's `videotestsrc`, live, delivering `format` the way a
    /// camera of that kind would. `num_buffers` ends the stream after that
    /// many frames (for tests and demos).
    TestPattern {
        pattern: String,
        num_buffers: Option<u32>,
        format: CameraFormat,
        /// A fault to inject, for tests of the daemon's recovery.
        fault: Option<TestFault>,
    },
    /// A V4L2 camera (`v4l2src`): USB UVC cameras, and CSI cameras whose
    /// driver exposes a V4L2 capture node.
    V4l2 {
        device: PathBuf,
        format: CameraFormat,
    },
    /// A camera behind libcamera (`libcamerasrc`): Raspberry Pi CSI cameras.
    /// Without a name, the first camera libcamera finds.
    Libcamera { camera_name: Option<String> },
    /// A Jetson CSI camera through NVIDIA's Argus (`nvarguscamerasrc`).
    Argus { sensor_id: u32 },
}

impl Source {
    /// The camera's own format: what the source element delivers.
    pub fn format(&self) -> CameraFormat {
        match self {
            Source::TestPattern { format, .. } | Source::V4l2 { format, .. } => *format,
            Source::Libcamera { .. } | Source::Argus { .. } => CameraFormat::Raw,
        }
    }
}

/// The kind of source, as `camera.source` names it: a board's profile
/// chooses one of the cameras (never the test pattern) unless the config
/// names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// [`Source::V4l2`].
    V4l2,
    /// [`Source::Libcamera`].
    Libcamera,
    /// [`Source::Argus`].
    Argus,
    /// [`Source::TestPattern`].
    Test,
}

impl SourceKind {
    /// The kind named in a config; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "v4l2" => SourceKind::V4l2,
            "libcamera" => SourceKind::Libcamera,
            "argus" => SourceKind::Argus,
            "test" => SourceKind::Test,
            _ => return None,
        })
    }

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::V4l2 => "v4l2",
            SourceKind::Libcamera => "libcamera",
            SourceKind::Argus => "argus",
            SourceKind::Test => "test",
        }
    }
}

/// What a camera delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraFormat {
    /// Uncompressed frames: encoded here.
    Raw,
    /// Motion JPEG (most USB cameras at high resolutions): decoded, then
    /// encoded here.
    Mjpeg,
    /// H.264 from the camera's own encoder (some UVC cameras): passed
    /// through without re-encoding.
    H264,
}

impl CameraFormat {
    /// The format named in a config (`raw`, `mjpeg`, `h264`); `None` for an
    /// unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "raw" => Self::Raw,
            "mjpeg" => Self::Mjpeg,
            "h264" => Self::H264,
            _ => return None,
        })
    }
}

/// The H.264 encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoder {
    /// x264 in software (`x264enc`), tuned for latency.
    X264 { speed_preset: SpeedPreset },
    /// Cisco's openh264 in software (`openh264enc`): lighter than x264 at
    /// the same speed on small ARM cores, larger output.
    OpenH264,
    /// The V4L2 memory-to-memory hardware encoder (`v4l2h264enc`):
    /// Raspberry Pi 4 and earlier.
    V4l2,
    /// NVIDIA's hardware encoder (`nvv4l2h264enc`): Jetson boards with NVENC.
    Nvv4l2,
}

impl Encoder {
    /// The encoder named in a config; `None` for an unknown name. `x264`
    /// keeps the speed preset of `profile` (the board's default encoder)
    /// when that is x264 too, and is `superfast` otherwise.
    pub fn from_name(name: &str, profile: Encoder) -> Option<Self> {
        Some(match name {
            "x264" => match profile {
                e @ Encoder::X264 { .. } => e,
                _ => Encoder::X264 {
                    speed_preset: SpeedPreset::Superfast,
                },
            },
            "openh264" => Encoder::OpenH264,
            "v4l2" => Encoder::V4l2,
            "nvv4l2" => Encoder::Nvv4l2,
            _ => return None,
        })
    }

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Encoder::X264 { .. } => "x264",
            Encoder::OpenH264 => "openh264",
            Encoder::V4l2 => "v4l2",
            Encoder::Nvv4l2 => "nvv4l2",
        }
    }
}

/// x264's speed presets that keep up with live video on small boards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeedPreset {
    Ultrafast,
    Superfast,
    Veryfast,
}

impl SpeedPreset {
    fn as_str(self) -> &'static str {
        match self {
            SpeedPreset::Ultrafast => "ultrafast",
            SpeedPreset::Superfast => "superfast",
            SpeedPreset::Veryfast => "veryfast",
        }
    }
}

/// A fault the test source injects after some frames, through a pad probe
/// on its output: the same thing a real camera does when it hangs or fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestFault {
    pub after_frames: u32,
    pub kind: FaultKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Frames stop arriving; the graph stays up (a hung camera or driver).
    Stall,
    /// The source posts an error (a camera unplugged mid-stream).
    Error,
}

impl std::str::FromStr for TestFault {
    type Err = String;

    /// `stall-after:N` or `error-after:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: write stall-after:N or error-after:N");
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "stall-after" => FaultKind::Stall,
            "error-after" => FaultKind::Error,
            _ => return Err(bad()),
        };
        Ok(Self {
            after_frames: n.parse().map_err(|_| bad())?,
            kind,
        })
    }
}

/// Everything the capture graph is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    pub source: Source,
    /// Unused when the camera delivers H.264 itself.
    pub encoder: Encoder,
    pub width: u32,
    pub height: u32,
    pub framerate_num: u32,
    pub framerate_den: u32,
    /// Key-frame interval in frames: the fragment duration times the rate.
    pub keyframe_interval: u32,
    pub bitrate_kbps: u32,
}

/// One element of the graph and the properties set on it, each given as
/// GStreamer would parse it from a `gst-launch-1.0` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub factory: &'static str,
    pub properties: Vec<(&'static str, String)>,
}

impl Step {
    fn new(factory: &'static str) -> Self {
        Self {
            factory,
            properties: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl ToString) -> Self {
        self.properties.push((name, value.to_string()));
        self
    }

    fn caps(caps: String) -> Self {
        Self::new("capsfilter").with("caps", caps)
    }

    /// The value of a property, if the plan sets it.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.factory)?;
        for (name, value) in &self.properties {
            if value.contains([' ', '(', ',', '=']) {
                write!(f, " {name}=\"{value}\"")?;
            } else {
                write!(f, " {name}={value}")?;
            }
        }
        Ok(())
    }
}

/// The graph for `settings`, source first, ending at the `appsink` that
/// hands H.264 access units (AVC form, with codec data) to the recorder.
pub fn plan(settings: &CaptureSettings) -> Vec<Step> {
    let s = settings;
    let size_rate = format!(
        "width={},height={},framerate={}/{}",
        s.width,
        s.height,
        s.framerate_num,
        s.framerate_den.max(1)
    );
    let mut steps = Vec::new();
    let nvmm_source = matches!(s.source, Source::Argus { .. });
    match &s.source {
        Source::TestPattern {
            pattern,
            num_buffers,
            format,
            ..
        } => {
            let mut src = Step::new("videotestsrc")
                .with("is-live", "true")
                .with("pattern", pattern);
            if let Some(n) = num_buffers {
                src = src.with("num-buffers", n);
            }
            steps.push(src);
            // Made to look like the camera it stands in for.
            match format {
                CameraFormat::Raw => steps.push(Step::caps(format!("video/x-raw,{size_rate}"))),
                CameraFormat::Mjpeg => {
                    steps.push(Step::caps(format!("video/x-raw,format=I420,{size_rate}")));
                    steps.push(Step::new("jpegenc").with("quality", 80));
                    steps.push(Step::caps(format!("image/jpeg,{size_rate}")));
                }
                CameraFormat::H264 => {
                    steps.push(Step::caps(format!("video/x-raw,format=I420,{size_rate}")));
                    steps.push(encoder_step(
                        Encoder::X264 {
                            speed_preset: SpeedPreset::Ultrafast,
                        },
                        s,
                    ));
                    steps.push(Step::caps(format!(
                        "video/x-h264,stream-format=byte-stream,{size_rate}"
                    )));
                }
            }
        }
        Source::V4l2 { device, format } => {
            steps.push(Step::new("v4l2src").with("device", device.display()));
            steps.push(Step::caps(match format {
                CameraFormat::Raw => format!("video/x-raw,{size_rate}"),
                CameraFormat::Mjpeg => format!("image/jpeg,{size_rate}"),
                CameraFormat::H264 => format!("video/x-h264,{size_rate}"),
            }));
        }
        Source::Libcamera { camera_name } => {
            let mut src = Step::new("libcamerasrc");
            if let Some(name) = camera_name {
                src = src.with("camera-name", name);
            }
            steps.push(src);
            steps.push(Step::caps(format!("video/x-raw,format=I420,{size_rate}")));
        }
        Source::Argus { sensor_id } => {
            steps.push(Step::new("nvarguscamerasrc").with("sensor-id", sensor_id));
            steps.push(Step::caps(format!(
                "video/x-raw(memory:NVMM),format=NV12,{size_rate}"
            )));
        }
    }
    match s.source.format() {
        CameraFormat::H264 => {}
        format => {
            if format == CameraFormat::Mjpeg {
                steps.push(Step::new("jpegdec"));
            }
            // Into the memory and pixel format the encoder takes.
            match (nvmm_source, s.encoder == Encoder::Nvv4l2) {
                (true, true) => {}
                (true, false) => {
                    steps.push(Step::new("nvvidconv"));
                    steps.push(Step::caps("video/x-raw,format=I420".into()));
                }
                (false, true) => {
                    steps.push(Step::new("nvvidconv"));
                    steps.push(Step::caps("video/x-raw(memory:NVMM),format=NV12".into()));
                }
                (false, false) => {
                    steps.push(Step::new("videoconvert"));
                    // 4:2:0 8-bit, the format every hardware decoder plays.
                    steps.push(Step::caps("video/x-raw,format=I420".into()));
                }
            }
            steps.push(encoder_step(s.encoder, s));
            if s.encoder == Encoder::V4l2 {
                // The Pi's encoder negotiates the lowest level unless told;
                // 4 carries 1080p30, 4.2 1080p60.
                let level = if u64::from(s.width) * u64::from(s.height) * u64::from(s.framerate_num)
                    / u64::from(s.framerate_den.max(1))
                    > 1920 * 1080 * 30
                {
                    "4.2"
                } else {
                    "4"
                };
                steps.push(Step::caps(format!("video/x-h264,level=(string){level}")));
            }
        }
    }
    steps.push(Step::new("h264parse"));
    steps.push(Step::caps(
        "video/x-h264,stream-format=avc,alignment=au".into(),
    ));
    steps.push(Step::new("appsink"));
    steps
}

/// The encoder element, with its key-frame interval and bitrate in the
/// property names and units it uses.
fn encoder_step(encoder: Encoder, s: &CaptureSettings) -> Step {
    let k = s.keyframe_interval;
    let bps = u64::from(s.bitrate_kbps) * 1000;
    match encoder {
        // x264 puts an extra key frame at every "scene cut" it detects
        // (about every 40 frames on a detailed 640x360 picture); a fragment
        // can end only at a key frame on or after its duration, so they came
        // out a third too long. Key frames only on the interval.
        Encoder::X264 { speed_preset } => Step::new("x264enc")
            .with("key-int-max", k)
            .with("option-string", "scenecut=0")
            .with("bframes", 0)
            .with("bitrate", s.bitrate_kbps)
            .with("tune", "zerolatency")
            .with("speed-preset", speed_preset.as_str()),
        Encoder::OpenH264 => Step::new("openh264enc")
            .with("gop-size", k)
            .with("bitrate", bps)
            .with("rate-control", "bitrate")
            .with("complexity", "low")
            .with("usage-type", "camera")
            .with("scene-change-detection", "false"),
        Encoder::V4l2 => Step::new("v4l2h264enc").with(
            "extra-controls",
            format!(
                "controls,video_bitrate={bps},h264_i_frame_period={k},repeat_sequence_header=1"
            ),
        ),
        Encoder::Nvv4l2 => Step::new("nvv4l2h264enc")
            .with("bitrate", bps)
            .with("iframeinterval", k)
            .with("idrinterval", k)
            .with("insert-sps-pps", "true"),
    }
}

/// Where an element comes from: its plugin and the packages that install
/// it on Debian-family systems and in Yocto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider {
    pub plugin: &'static str,
    pub debian: &'static str,
    pub yocto: &'static str,
}

/// The provider of each element a plan can hold.
pub fn provider(factory: &str) -> Provider {
    let p = |plugin, debian, yocto| Provider {
        plugin,
        debian,
        yocto,
    };
    match factory {
        "capsfilter" => p("coreelements", "libgstreamer1.0-0", "gstreamer1.0"),
        "videotestsrc" => p(
            "videotestsrc",
            "gstreamer1.0-plugins-base",
            "gstreamer1.0-plugins-base-videotestsrc",
        ),
        "videoconvert" => p(
            "videoconvertscale",
            "gstreamer1.0-plugins-base",
            "gstreamer1.0-plugins-base-videoconvertscale",
        ),
        "appsink" => p(
            "app",
            "gstreamer1.0-plugins-base",
            "gstreamer1.0-plugins-base-app",
        ),
        "v4l2src" | "v4l2h264enc" => p(
            "video4linux2",
            "gstreamer1.0-plugins-good",
            "gstreamer1.0-plugins-good-video4linux2",
        ),
        "jpegenc" | "jpegdec" => p(
            "jpeg",
            "gstreamer1.0-plugins-good",
            "gstreamer1.0-plugins-good-jpeg",
        ),
        "x264enc" => p(
            "x264",
            "gstreamer1.0-plugins-ugly",
            "gstreamer1.0-plugins-ugly-x264 (PACKAGECONFIG x264, LICENSE_FLAGS_ACCEPTED commercial)",
        ),
        "openh264enc" => p(
            "openh264",
            "gstreamer1.0-plugins-bad",
            "gstreamer1.0-plugins-bad-openh264 (PACKAGECONFIG openh264, meta-oe)",
        ),
        "h264parse" => p(
            "videoparsersbad",
            "gstreamer1.0-plugins-bad",
            "gstreamer1.0-plugins-bad-videoparsersbad",
        ),
        "libcamerasrc" => p("libcamera", "gstreamer1.0-libcamera", "libcamera-gst"),
        "nvarguscamerasrc" => p(
            "nvarguscamerasrc",
            "nvidia-l4t-gstreamer",
            "gstreamer1.0-plugins-nvarguscamerasrc (meta-tegra)",
        ),
        "nvvidconv" => p(
            "nvvidconv",
            "nvidia-l4t-gstreamer",
            "gstreamer1.0-plugins-nvvidconv (meta-tegra)",
        ),
        "nvv4l2h264enc" => p(
            "nvvideo4linux2",
            "nvidia-l4t-gstreamer",
            "gstreamer1.0-plugins-nvvideo4linux2 (meta-tegra)",
        ),
        _ => p("unknown", "unknown", "unknown"),
    }
}

/// An element the plan needs that this system does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingElement {
    pub element: &'static str,
    pub provider: Provider,
}

impl fmt::Display for MissingElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.provider;
        write!(
            f,
            "GStreamer element '{}' (plugin '{}') is missing: install the Debian package {}, or in Yocto {}",
            self.element, p.plugin, p.debian, p.yocto
        )
    }
}

/// The elements of `plan` that `exists` does not find, each once.
pub fn missing_elements(plan: &[Step], exists: impl Fn(&str) -> bool) -> Vec<MissingElement> {
    let mut missing: Vec<MissingElement> = Vec::new();
    for step in plan {
        if !exists(step.factory) && missing.iter().all(|m| m.element != step.factory) {
            missing.push(MissingElement {
                element: step.factory,
                provider: provider(step.factory),
            });
        }
    }
    missing
}

/// The plan as a `gst-launch-1.0` line (for logs and `sealcamd check`).
pub fn describe(plan: &[Step]) -> String {
    plan.iter()
        .map(|s| match s.property("caps") {
            Some(caps) if s.factory == "capsfilter" => caps.to_owned(),
            _ => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ! ")
}

#[cfg(test)]
mod tests;
