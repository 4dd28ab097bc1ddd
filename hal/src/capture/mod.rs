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

pub use crate::pipeline::{
    CameraFormat, CaptureSettings, Encoder, FaultKind, Source, SpeedPreset, TestFault,
};
use crate::pipeline::{MissingElement, Step};

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

/// What went wrong in the capture graph.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("{}", lines(.0))]
    MissingElements(Vec<MissingElement>),
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

/// Lets a hot-path log line through at most once per period, and says how
/// many were held back since the last one.
#[derive(Debug)]
struct Throttle {
    period: Duration,
    last: Option<std::time::Instant>,
    held: u64,
}

impl Throttle {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(held back since the last one)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.period)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// How often a per-frame problem may be logged.
const HOT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// A running capture graph.
pub struct Capture {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
    caps: Option<(gst::Caps, Arc<TrackConfig>)>,
    frame_ns: u64,
    /// Per-frame problems are logged at most every few seconds.
    hot_log: Throttle,
}

fn lines(missing: &[MissingElement]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The elements of `settings`' graph this system lacks (empty when it has
/// them all). Initialises GStreamer.
pub fn check_elements(settings: &CaptureSettings) -> Result<Vec<MissingElement>, CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    Ok(crate::pipeline::missing_elements(
        &crate::pipeline::plan(settings),
        |f| gst::ElementFactory::find(f).is_some(),
    ))
}

/// Makes one element of the plan, its properties set.
fn make(step: &Step) -> Result<gst::Element, CaptureError> {
    let element = gst::ElementFactory::make(step.factory)
        .build()
        .map_err(|_| {
            CaptureError::MissingElements(crate::pipeline::missing_elements(
                std::slice::from_ref(step),
                |_| false,
            ))
        })?;
    for (name, value) in &step.properties {
        let Some(spec) = element.find_property(name) else {
            return Err(CaptureError::Build(format!(
                "{} has no property '{name}' (is the plugin too old?)",
                step.factory
            )));
        };
        // set_property_from_str aborts on a value it cannot parse; parse it
        // first, so a bad value is an error instead.
        let parsed = gst::glib::Value::deserialize(value, spec.value_type()).map_err(|_| {
            CaptureError::Build(format!(
                "{}: '{value}' is not a valid value for '{name}'",
                step.factory
            ))
        })?;
        element.set_property_from_value(name, &parsed);
    }
    Ok(element)
}

impl Capture {
    /// Builds the graph and sets it playing.
    pub fn start(settings: &CaptureSettings) -> Result<Self, CaptureError> {
        gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
        let plan = crate::pipeline::plan(settings);
        let missing =
            crate::pipeline::missing_elements(&plan, |f| gst::ElementFactory::find(f).is_some());
        if !missing.is_empty() {
            return Err(CaptureError::MissingElements(missing));
        }
        if let Source::V4l2 { device, .. } = &settings.source {
            if !device.exists() {
                return Err(CaptureError::NoCamera {
                    device: device.clone(),
                });
            }
        }
        let build = |e: gst::glib::BoolError| CaptureError::Build(e.to_string());
        tracing::debug!(graph = %crate::pipeline::describe(&plan), "building the capture graph");
        let elements = plan.iter().map(make).collect::<Result<Vec<_>, _>>()?;
        if let (Source::TestPattern { fault: Some(f), .. }, Some(source)) =
            (&settings.source, elements.first())
        {
            inject(source, *f)?;
        }
        let sink = elements
            .last()
            .cloned()
            .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
            .ok_or_else(|| CaptureError::Build("the graph does not end in an appsink".into()))?;
        sink.set_property("sync", false);
        sink.set_max_buffers(120);
        sink.set_drop(false);

        let pipeline = gst::Pipeline::with_name("sealcam-capture");
        pipeline.add_many(&elements).map_err(build)?;
        gst::Element::link_many(&elements).map_err(build)?;

        let bus = pipeline
            .bus()
            .ok_or_else(|| CaptureError::Build("pipeline has no bus".into()))?;
        let frame_ns = 1_000_000_000u64 * u64::from(settings.framerate_den.max(1))
            / u64::from(settings.framerate_num.max(1));
        let mut capture = Self {
            pipeline,
            sink,
            bus,
            caps: None,
            frame_ns,
            hot_log: Throttle::new(HOT_LOG_PERIOD),
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
    fn pop_bus_error(&mut self) -> Result<bool, CaptureError> {
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
                    if let Some(held_back) = self.hot_log.allow() {
                        tracing::warn!(error = %w.error(), held_back, "capture warning");
                    }
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
            if let Some(held_back) = self.hot_log.allow() {
                tracing::warn!(
                    held_back,
                    "encoder produced a frame without a timestamp; dropping it"
                );
            }
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
mod tests;
