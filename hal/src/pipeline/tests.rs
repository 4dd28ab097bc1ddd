//! Unit tests of the capture plans: what each board and source gets.

use super::*;

fn settings(source: Source, encoder: Encoder) -> CaptureSettings {
    CaptureSettings {
        source,
        encoder,
        width: 1920,
        height: 1080,
        framerate_num: 30,
        framerate_den: 1,
        keyframe_interval: 60,
        bitrate_kbps: 4000,
    }
}

fn v4l2(format: CameraFormat) -> Source {
    Source::V4l2 {
        device: "/dev/video0".into(),
        format,
    }
}

fn factories(plan: &[Step]) -> Vec<&'static str> {
    plan.iter().map(|s| s.factory).collect()
}

const ENCODERS: [Encoder; 4] = [
    Encoder::X264 {
        speed_preset: SpeedPreset::Superfast,
    },
    Encoder::OpenH264,
    Encoder::V4l2,
    Encoder::Nvv4l2,
];

#[test]
fn every_encoder_gets_the_fragment_key_frame_interval_in_its_own_terms() {
    for encoder in ENCODERS {
        let plan = plan(&settings(v4l2(CameraFormat::Raw), encoder));
        let enc = plan
            .iter()
            .find(|s| s.factory.ends_with("h264enc") || s.factory == "x264enc")
            .unwrap();
        let interval = match encoder {
            Encoder::X264 { .. } => enc.property("key-int-max").map(str::to_owned),
            Encoder::OpenH264 => enc.property("gop-size").map(str::to_owned),
            Encoder::Nvv4l2 => {
                assert_eq!(enc.property("idrinterval"), Some("60"));
                enc.property("iframeinterval").map(str::to_owned)
            }
            Encoder::V4l2 => enc.property("extra-controls").and_then(|c| {
                c.split(',')
                    .find_map(|kv| kv.strip_prefix("h264_i_frame_period="))
                    .map(str::to_owned)
            }),
        };
        assert_eq!(interval.as_deref(), Some("60"), "{encoder:?}: {enc}");
    }
}

#[test]
fn each_board_graph_has_the_elements_it_needs() {
    let pi_csi = Source::Libcamera { camera_name: None };
    let argus = Source::Argus { sensor_id: 0 };
    let cases: [(Source, Encoder, &[&str]); 7] = [
        (
            pi_csi.clone(),
            Encoder::V4l2,
            &[
                "libcamerasrc",
                "capsfilter",
                "videoconvert",
                "capsfilter",
                "v4l2h264enc",
                "capsfilter",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
        (
            pi_csi,
            Encoder::OpenH264,
            &[
                "libcamerasrc",
                "capsfilter",
                "videoconvert",
                "capsfilter",
                "openh264enc",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
        (
            argus.clone(),
            Encoder::Nvv4l2,
            &[
                "nvarguscamerasrc",
                "capsfilter",
                "nvv4l2h264enc",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
        (
            argus,
            Encoder::X264 {
                speed_preset: SpeedPreset::Superfast,
            },
            &[
                "nvarguscamerasrc",
                "capsfilter",
                "nvvidconv",
                "capsfilter",
                "x264enc",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
        (
            v4l2(CameraFormat::Raw),
            Encoder::Nvv4l2,
            &[
                "v4l2src",
                "capsfilter",
                "nvvidconv",
                "capsfilter",
                "nvv4l2h264enc",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
        (
            v4l2(CameraFormat::Mjpeg),
            Encoder::X264 {
                speed_preset: SpeedPreset::Superfast,
            },
            &[
                "v4l2src",
                "capsfilter",
                "jpegdec",
                "videoconvert",
                "capsfilter",
                "x264enc",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
        (
            v4l2(CameraFormat::H264),
            Encoder::Nvv4l2,
            &[
                "v4l2src",
                "capsfilter",
                "h264parse",
                "capsfilter",
                "appsink",
            ],
        ),
    ];
    for (source, encoder, want) in cases {
        let plan = plan(&settings(source.clone(), encoder));
        assert_eq!(factories(&plan), want, "{source:?} with {encoder:?}");
    }
}

#[test]
fn caps_carry_size_rate_and_memory() {
    let plan = plan(&settings(Source::Argus { sensor_id: 1 }, Encoder::Nvv4l2));
    assert_eq!(plan[0].property("sensor-id"), Some("1"));
    assert_eq!(
        plan[1].property("caps"),
        Some("video/x-raw(memory:NVMM),format=NV12,width=1920,height=1080,framerate=30/1")
    );
    let uvc = plan_line(v4l2(CameraFormat::H264));
    assert!(
        uvc.starts_with(
            "v4l2src device=/dev/video0 ! video/x-h264,width=1920,height=1080,framerate=30/1 ! h264parse"
        ),
        "{uvc}"
    );
    // 1080p30 fits level 4 on the Pi's encoder; 1080p60 needs 4.2.
    let mut s = settings(Source::Libcamera { camera_name: None }, Encoder::V4l2);
    assert!(describe(&plan_of(&s)).contains("level=(string)4 !"));
    s.framerate_num = 60;
    assert!(describe(&plan_of(&s)).contains("level=(string)4.2 !"));
}

fn plan_of(s: &CaptureSettings) -> Vec<Step> {
    plan(s)
}

fn plan_line(source: Source) -> String {
    describe(&plan(&settings(source, Encoder::OpenH264)))
}

#[test]
fn missing_elements_are_named_once_with_their_packages() {
    let plan = plan(&settings(
        Source::Argus { sensor_id: 0 },
        Encoder::X264 {
            speed_preset: SpeedPreset::Ultrafast,
        },
    ));
    let missing = missing_elements(&plan, |f| !f.starts_with("nv"));
    let names: Vec<_> = missing.iter().map(|m| m.element).collect();
    assert_eq!(names, ["nvarguscamerasrc", "nvvidconv"]);
    let line = missing[0].to_string();
    assert!(line.contains("nvidia-l4t-gstreamer"), "{line}");
    assert!(line.contains("meta-tegra"), "{line}");
    assert!(!line.contains('\n'));
    assert!(missing_elements(&plan, |_| true).is_empty());
}

#[test]
fn every_planned_element_has_a_known_provider() {
    let sources = [
        Source::TestPattern {
            pattern: "smpte".into(),
            num_buffers: None,
            format: CameraFormat::Mjpeg,
            fault: None,
        },
        Source::TestPattern {
            pattern: "smpte".into(),
            num_buffers: None,
            format: CameraFormat::H264,
            fault: None,
        },
        v4l2(CameraFormat::Raw),
        v4l2(CameraFormat::Mjpeg),
        Source::Libcamera {
            camera_name: Some("imx708".into()),
        },
        Source::Argus { sensor_id: 0 },
    ];
    for source in sources {
        for encoder in ENCODERS {
            for step in plan(&settings(source.clone(), encoder)) {
                assert_ne!(provider(step.factory).plugin, "unknown", "{}", step.factory);
            }
        }
    }
}

#[test]
fn config_names_round_trip() {
    for kind in [
        SourceKind::V4l2,
        SourceKind::Libcamera,
        SourceKind::Argus,
        SourceKind::Test,
    ] {
        assert_eq!(SourceKind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(SourceKind::from_name("usb"), None);
    let superfast = Encoder::X264 {
        speed_preset: SpeedPreset::Superfast,
    };
    let ultrafast = Encoder::X264 {
        speed_preset: SpeedPreset::Ultrafast,
    };
    for encoder in [superfast, Encoder::OpenH264, Encoder::V4l2, Encoder::Nvv4l2] {
        assert_eq!(
            Encoder::from_name(encoder.name(), Encoder::V4l2),
            Some(encoder)
        );
    }
    // x264 keeps the profile's preset when the profile's encoder is x264.
    assert_eq!(Encoder::from_name("x264", ultrafast), Some(ultrafast));
    assert_eq!(Encoder::from_name("nvenc", ultrafast), None);
    assert_eq!(CameraFormat::from_name("mjpeg"), Some(CameraFormat::Mjpeg));
    assert_eq!(CameraFormat::from_name("yuyv"), None);
}
