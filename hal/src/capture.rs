//! Camera capture through GStreamer.
//!
//! The graph is built element by element from [`CaptureSettings`]:
//!
//! ```text
//! source -> capsfilter(raw size, rate) -> videoconvert -> capsfilter(I420) -> x264enc
//!        -> h264parse -> capsfilter(avc, au) -> appsink
//! ```
//!
//! Frames come out as H.264 access units in AVC form (length-prefixed NAL
//! units) with the `avcC` codec data, ready for Matroska. Bus errors become
//! [`CaptureError`]s; nothing here panics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sealcam_format::seal::CODEC_H264_AVC;
use sealcam_format::TrackConfig;

/// Where frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// GStreamer's `videotestsrc`, live. `num_buffers` ends the stream after
    /// that many frames (for tests and demos).
    TestPattern {
        pattern: String,
        num_buffers: Option<u32>,
        /// A fault to inject, for tests of the daemon's recovery.
        fault: Option<TestFault>,
    },
    /// A V4L2 camera (`v4l2src`).
    V4l2 { device: PathBuf },
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

/// Adds `fault` to `source`'s output.
fn inject(source: &gst::Element, fault: TestFault) -> Result<(), CaptureError> {
    let pad = source
        .static_pad("src")
        .ok_or_else(|| CaptureError::Build("the test source has no src pad".into()))?;
    let seen = std::sync::atomic::AtomicU32::new(0);
    let weak = source.downgrade();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                // A hung camera does not end its stream either.
                let hung = fault.kind == FaultKind::Stall
                    && seen.load(std::sync::atomic::Ordering::Relaxed) >= fault.after_frames;
                return if hung && e.type_() == gst::EventType::Eos {
                    gst::PadProbeReturn::Drop
                } else {
                    gst::PadProbeReturn::Ok
                };
            }
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n < fault.after_frames {
                return gst::PadProbeReturn::Ok;
            }
            if fault.kind == FaultKind::Error && n == fault.after_frames {
                if let Some(src) = weak.upgrade() {
                    gst::element_error!(
                        src,
                        gst::ResourceError::Read,
                        ["injected fault: the camera went away"]
                    );
                }
            }
            gst::PadProbeReturn::Drop
        },
    );
    Ok(())
}

/// Everything the capture graph is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    pub source: Source,
    pub width: u32,
    pub height: u32,
    pub framerate_num: u32,
    pub framerate_den: u32,
    /// Key-frame interval in frames: the fragment duration times the rate.
    pub keyframe_interval: u32,
    pub bitrate_kbps: u32,
}

/// What went wrong in the capture graph.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("GStreamer element '{element}' is missing; install the Debian package {package} (plugin '{plugin}')")]
    MissingElement {
        element: &'static str,
        plugin: &'static str,
        package: &'static str,
    },
    #[error("camera {device} does not exist; check camera.device in the config (list cameras with `v4l2-ctl --list-devices`)")]
    NoCamera { device: PathBuf },
    #[error("could not assemble the capture graph: {0}")]
    Build(String),
    #[error("capture graph would not start: {0}")]
    Start(String),
    #[error("{element} reported an error: {message} ({debug})")]
    Element {
        element: String,
        message: String,
        debug: String,
    },
    #[error("encoder output has no usable H.264 configuration: {0}")]
    Caps(String),
}

/// One encoded frame and the track it belongs to.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    pub pts_ns: u64,
    pub duration_ns: u64,
    pub key_frame: bool,
    pub data: Vec<u8>,
    /// Shared while the encoder's caps do not change.
    pub track: Arc<TrackConfig>,
}

/// What [`Capture::next`] yields.
#[derive(Debug)]
pub enum CaptureEvent {
    Frame(CapturedFrame),
    /// The source ended (only with a bounded test source, or a camera gone).
    EndOfStream,
}

/// A camera GStreamer can capture from, and what it offers.
#[derive(Clone, Debug)]
pub struct CameraInfo {
    /// The device node (`/dev/video0`), when the camera has one.
    pub device: Option<String>,
    pub name: String,
    /// One line per format the camera offers, e.g. `video/x-raw, format=YUY2, width=640, ...`.
    pub formats: Vec<String>,
}

/// The video sources on this machine (GStreamer's device monitor: V4L2,
/// and libcamera where its plugin is installed).
pub fn list_cameras() -> Result<Vec<CameraInfo>, CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    let monitor = gst::DeviceMonitor::new();
    // An id of None means the filter could not be added: no video sources
    // can be listed then, which is what the empty list says.
    let _ = monitor.add_filter(Some("Video/Source"), None);
    monitor
        .start()
        .map_err(|e| CaptureError::Start(format!("device monitor: {e}")))?;
    let cameras = monitor
        .devices()
        .iter()
        .map(|d| CameraInfo {
            device: d
                .properties()
                .and_then(|p| p.get::<String>("device.path").ok()),
            name: d.display_name().to_string(),
            formats: d
                .caps()
                .map(|caps| caps.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        })
        .collect();
    monitor.stop();
    Ok(cameras)
}

/// A running capture graph.
pub struct Capture {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
    caps: Option<(gst::Caps, Arc<TrackConfig>)>,
    frame_ns: u64,
}

fn make(factory: &'static str) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        let (plugin, package) = match factory {
            "videotestsrc" | "videoconvert" | "capsfilter" | "appsink" => (
                "videotestsrc/videoconvertscale/coreelements/app",
                "gstreamer1.0-plugins-base",
            ),
            "v4l2src" => ("video4linux2", "gstreamer1.0-plugins-good"),
            "x264enc" => ("x264", "gstreamer1.0-plugins-ugly"),
            "h264parse" => ("videoparsersbad", "gstreamer1.0-plugins-bad"),
            _ => ("unknown", "gstreamer1.0-plugins-good"),
        };
        CaptureError::MissingElement {
            element: factory,
            plugin,
            package,
        }
    })
}

impl Capture {
    /// Builds the graph and sets it playing.
    pub fn start(settings: &CaptureSettings) -> Result<Self, CaptureError> {
        gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
        let build = |e: gst::glib::BoolError| CaptureError::Build(e.to_string());

        let source = match &settings.source {
            Source::TestPattern {
                pattern,
                num_buffers,
                fault,
            } => {
                let s = make("videotestsrc")?;
                s.set_property("is-live", true);
                s.set_property_from_str("pattern", pattern);
                if let Some(n) = num_buffers {
                    s.set_property("num-buffers", i32::try_from(*n).unwrap_or(i32::MAX));
                }
                if let Some(f) = fault {
                    inject(&s, *f)?;
                }
                s
            }
            Source::V4l2 { device } => {
                if !device.exists() {
                    return Err(CaptureError::NoCamera {
                        device: device.clone(),
                    });
                }
                let s = make("v4l2src")?;
                s.set_property("device", device.display().to_string());
                s
            }
        };
        let raw_caps = gst::Caps::builder("video/x-raw")
            .field("width", i32::try_from(settings.width).unwrap_or(i32::MAX))
            .field("height", i32::try_from(settings.height).unwrap_or(i32::MAX))
            .field(
                "framerate",
                gst::Fraction::new(
                    i32::try_from(settings.framerate_num).unwrap_or(i32::MAX),
                    i32::try_from(settings.framerate_den).unwrap_or(1),
                ),
            )
            .build();
        let raw_filter = make("capsfilter")?;
        raw_filter.set_property("caps", &raw_caps);
        let convert = make("videoconvert")?;
        // 4:2:0 8-bit, the format every hardware decoder plays.
        let i420 = make("capsfilter")?;
        i420.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        );
        let encoder = make("x264enc")?;
        encoder.set_property("key-int-max", settings.keyframe_interval);
        encoder.set_property("bframes", 0u32);
        encoder.set_property("bitrate", settings.bitrate_kbps);
        encoder.set_property_from_str("tune", "zerolatency");
        encoder.set_property_from_str("speed-preset", "superfast");
        let parse = make("h264parse")?;
        let avc_filter = make("capsfilter")?;
        avc_filter.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        );
        let sink = make("appsink")?
            .dynamic_cast::<gst_app::AppSink>()
            .map_err(|_| CaptureError::Build("appsink is not an AppSink".into()))?;
        sink.set_property("sync", false);
        sink.set_max_buffers(120);
        sink.set_drop(false);

        let pipeline = gst::Pipeline::with_name("sealcam-capture");
        let chain = [
            &source,
            &raw_filter,
            &convert,
            &i420,
            &encoder,
            &parse,
            &avc_filter,
            sink.upcast_ref(),
        ];
        pipeline.add_many(chain).map_err(build)?;
        gst::Element::link_many(chain).map_err(build)?;

        let bus = pipeline
            .bus()
            .ok_or_else(|| CaptureError::Build("pipeline has no bus".into()))?;
        let frame_ns = 1_000_000_000u64 * u64::from(settings.framerate_den.max(1))
            / u64::from(settings.framerate_num.max(1));
        let capture = Self {
            pipeline,
            sink,
            bus,
            caps: None,
            frame_ns,
        };
        if let Err(e) = capture.pipeline.set_state(gst::State::Playing) {
            // The bus usually says why; prefer its message.
            let why = capture.pop_bus_error().err().map(|b| b.to_string());
            capture.shutdown();
            return Err(CaptureError::Start(why.unwrap_or_else(|| e.to_string())));
        }
        Ok(capture)
    }

    /// Drains pending bus messages; an error message becomes an error.
    fn pop_bus_error(&self) -> Result<bool, CaptureError> {
        let mut eos = false;
        while let Some(msg) = self.bus.pop_filtered(&[
            gst::MessageType::Error,
            gst::MessageType::Eos,
            gst::MessageType::Warning,
        ]) {
            match msg.view() {
                gst::MessageView::Error(err) => {
                    return Err(CaptureError::Element {
                        element: msg
                            .src()
                            .map(|s| s.path_string().to_string())
                            .unwrap_or_else(|| "pipeline".into()),
                        message: err.error().to_string(),
                        debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
                    });
                }
                gst::MessageView::Warning(w) => {
                    tracing::warn!(error = %w.error(), "capture warning");
                }
                gst::MessageView::Eos(_) => eos = true,
                _ => {}
            }
        }
        Ok(eos)
    }

    /// Waits up to `timeout` for the next frame. `Ok(None)` on timeout.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<CaptureEvent>, CaptureError> {
        self.pop_bus_error()?;
        let timeout =
            gst::ClockTime::from_nseconds(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        let Some(sample) = self.sink.try_pull_sample(timeout) else {
            // An error posted while we waited explains the silence or the
            // end better than either.
            self.pop_bus_error()?;
            if self.sink.is_eos() {
                return Ok(Some(CaptureEvent::EndOfStream));
            }
            return Ok(None);
        };
        let track = self.track_for(&sample)?;
        let Some(buffer) = sample.buffer() else {
            return Ok(None);
        };
        let Some(pts) = buffer.pts() else {
            tracing::warn!("encoder produced a frame without a timestamp; dropping it");
            return Ok(None);
        };
        let map = buffer
            .map_readable()
            .map_err(|e| CaptureError::Caps(format!("cannot read frame: {e}")))?;
        Ok(Some(CaptureEvent::Frame(CapturedFrame {
            pts_ns: pts.nseconds(),
            duration_ns: buffer
                .duration()
                .map(|d| d.nseconds())
                .unwrap_or(self.frame_ns),
            key_frame: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: map.as_slice().to_vec(),
            track,
        })))
    }

    /// The track configuration for a sample, recomputed only when caps change.
    fn track_for(&mut self, sample: &gst::Sample) -> Result<Arc<TrackConfig>, CaptureError> {
        let caps = sample
            .caps()
            .ok_or_else(|| CaptureError::Caps("sample has no caps".into()))?;
        if let Some((known, track)) = &self.caps {
            if known.as_ptr() == caps.as_ptr() || known == caps {
                return Ok(track.clone());
            }
        }
        let s = caps
            .structure(0)
            .ok_or_else(|| CaptureError::Caps("empty caps".into()))?;
        let int = |field: &str| -> Result<u32, CaptureError> {
            s.get::<i32>(field)
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| CaptureError::Caps(format!("caps {caps} lack '{field}'")))
        };
        let framerate = s.get::<gst::Fraction>("framerate").ok();
        let codec_data = s
            .get::<gst::Buffer>("codec_data")
            .map_err(|_| CaptureError::Caps(format!("caps {caps} lack codec_data")))?;
        let codec_private = codec_data
            .map_readable()
            .map_err(|e| CaptureError::Caps(e.to_string()))?
            .as_slice()
            .to_vec();
        let track = Arc::new(TrackConfig {
            codec: CODEC_H264_AVC,
            width: int("width")?,
            height: int("height")?,
            framerate_num: framerate
                .and_then(|f| u32::try_from(f.numer()).ok())
                .unwrap_or(0),
            framerate_den: framerate
                .and_then(|f| u32::try_from(f.denom()).ok())
                .unwrap_or(1),
            codec_private,
        });
        self.caps = Some((caps.to_owned(), track.clone()));
        Ok(track)
    }

    /// Stops the graph and releases the camera.
    pub fn shutdown(&self) {
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!(error = %e, "capture graph did not stop cleanly");
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(n: u32) -> CaptureSettings {
        CaptureSettings {
            source: Source::TestPattern {
                pattern: "smpte".into(),
                num_buffers: Some(n),
                fault: None,
            },
            width: 160,
            height: 120,
            framerate_num: 30,
            framerate_den: 1,
            keyframe_interval: 15,
            bitrate_kbps: 200,
        }
    }

    #[test]
    fn test_source_delivers_every_frame_with_key_frames_on_interval() {
        let mut cap = Capture::start(&settings(45)).unwrap();
        let mut frames = Vec::new();
        loop {
            match cap.next(Duration::from_secs(5)).unwrap() {
                Some(CaptureEvent::Frame(f)) => frames.push(f),
                Some(CaptureEvent::EndOfStream) => break,
                None => panic!("capture stalled"),
            }
        }
        assert_eq!(frames.len(), 45);
        let keys: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.key_frame)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(keys, vec![0, 15, 30]);
        assert_eq!(frames[0].track.width, 160);
        assert!(!frames[0].track.codec_private.is_empty());
        assert!(frames.windows(2).all(|w| w[1].pts_ns > w[0].pts_ns));
    }

    fn with_fault(n: u32, fault: &str) -> CaptureSettings {
        let mut s = settings(n);
        s.source = Source::TestPattern {
            pattern: "smpte".into(),
            num_buffers: Some(n),
            fault: Some(fault.parse().unwrap()),
        };
        s
    }

    #[test]
    fn an_injected_stall_stops_frames_and_an_injected_error_is_reported() {
        let mut cap = Capture::start(&with_fault(60, "stall-after:10")).unwrap();
        let mut frames = 0;
        while let Some(CaptureEvent::Frame(_)) = cap.next(Duration::from_secs(2)).unwrap() {
            frames += 1;
        }
        assert_eq!(frames, 10);

        let mut cap = Capture::start(&with_fault(60, "error-after:10")).unwrap();
        let err = loop {
            match cap.next(Duration::from_secs(2)) {
                Ok(Some(CaptureEvent::Frame(_))) => {}
                Ok(other) => panic!("expected an error, got {other:?}"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("injected fault"), "{err}");
        assert!("stall-after:x".parse::<TestFault>().is_err());
        assert!("sleep-after:3".parse::<TestFault>().is_err());
    }

    #[test]
    fn listing_cameras_works_without_any() {
        // This machine may have none; listing must still succeed, and every
        // camera it finds has a name.
        for c in list_cameras().unwrap() {
            assert!(!c.name.is_empty());
        }
    }

    #[test]
    fn missing_camera_is_named() {
        let mut s = settings(1);
        s.source = Source::V4l2 {
            device: "/dev/video-nonexistent".into(),
        };
        let err = Capture::start(&s).err().unwrap();
        assert!(err.to_string().contains("/dev/video-nonexistent"), "{err}");
    }
}
