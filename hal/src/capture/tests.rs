//! Unit tests of the capture graph: built and run on the test source.

use super::*;

fn settings(n: u32) -> CaptureSettings {
    CaptureSettings {
        source: Source::TestPattern {
            pattern: "smpte".into(),
            num_buffers: Some(n),
            format: CameraFormat::Raw,
            fault: None,
        },
        encoder: Encoder::X264 {
            speed_preset: SpeedPreset::Superfast,
        },
        width: 160,
        height: 120,
        framerate_num: 30,
        framerate_den: 1,
        keyframe_interval: 15,
        bitrate_kbps: 200,
    }
}

fn capture_all(settings: &CaptureSettings) -> Vec<CapturedFrame> {
    let mut cap = Capture::start(settings).unwrap();
    let mut frames = Vec::new();
    loop {
        match cap.next(Duration::from_secs(5)).unwrap() {
            Some(CaptureEvent::Frame(f)) => frames.push(f),
            Some(CaptureEvent::EndOfStream) => break,
            None => panic!("capture stalled"),
        }
    }
    frames
}

fn key_frames(frames: &[CapturedFrame]) -> Vec<usize> {
    frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.key_frame)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn test_source_delivers_every_frame_with_key_frames_on_interval() {
    let frames = capture_all(&settings(45));
    assert_eq!(frames.len(), 45);
    assert_eq!(key_frames(&frames), vec![0, 15, 30]);
    assert_eq!(frames[0].track.width, 160);
    assert!(!frames[0].track.codec_private.is_empty());
    assert!(frames.windows(2).all(|w| w[1].pts_ns > w[0].pts_ns));
}

#[test]
fn openh264_puts_key_frames_on_the_interval_too() {
    let mut s = settings(45);
    s.encoder = Encoder::OpenH264;
    let frames = capture_all(&s);
    assert_eq!(frames.len(), 45);
    assert_eq!(key_frames(&frames), vec![0, 15, 30]);
    assert_eq!(frames[0].track.height, 120);
}

/// Key frames fall exactly on the interval at a size where the picture has
/// detail (at 640x360 x264's scene-cut detection put one about every 1.3 s
/// when asked for one every 2 s, so 2 s fragments came out 2.6 s long): the
/// fragment duration holds, within a frame, for every encoder that runs here.
#[test]
fn every_encoder_keeps_the_fragment_duration_at_a_detailed_size() {
    for encoder in [
        Encoder::X264 {
            speed_preset: SpeedPreset::Superfast,
        },
        Encoder::OpenH264,
    ] {
        let mut s = settings(300);
        s.encoder = encoder;
        s.width = 640;
        s.height = 360;
        s.keyframe_interval = 60;
        s.bitrate_kbps = 1000;
        let frames = capture_all(&s);
        assert_eq!(frames.len(), 300);
        assert_eq!(
            key_frames(&frames),
            vec![0, 60, 120, 180, 240],
            "{encoder:?}"
        );
    }
}

#[test]
fn an_mjpeg_camera_is_decoded_and_encoded_and_an_h264_camera_passed_through() {
    for format in [CameraFormat::Mjpeg, CameraFormat::H264] {
        let mut s = settings(30);
        s.source = Source::TestPattern {
            pattern: "ball".into(),
            num_buffers: Some(30),
            format,
            fault: None,
        };
        // The pass-through must not depend on an encoder here.
        s.encoder = Encoder::Nvv4l2;
        if format == CameraFormat::Mjpeg {
            s.encoder = Encoder::OpenH264;
        }
        let frames = capture_all(&s);
        assert_eq!(frames.len(), 30, "{format:?}");
        assert_eq!(key_frames(&frames), vec![0, 15], "{format:?}");
        assert_eq!((frames[0].track.width, frames[0].track.height), (160, 120));
    }
}

#[test]
fn a_missing_element_is_named_with_its_packages_before_anything_starts() {
    let mut s = settings(1);
    s.encoder = Encoder::Nvv4l2;
    // This machine has no Jetson plugins.
    let err = Capture::start(&s).err().unwrap().to_string();
    assert!(err.contains("'nvvidconv'"), "{err}");
    assert!(err.contains("'nvv4l2h264enc'"), "{err}");
    assert!(err.contains("nvidia-l4t-gstreamer"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert_eq!(check_elements(&settings(1)).unwrap(), vec![]);
}

#[test]
fn a_bad_property_value_is_an_error_not_an_abort() {
    let mut s = settings(1);
    s.source = Source::TestPattern {
        pattern: "no-such-pattern".into(),
        num_buffers: Some(1),
        format: CameraFormat::Raw,
        fault: None,
    };
    let err = Capture::start(&s).err().unwrap().to_string();
    assert!(
        err.contains("no-such-pattern") && err.contains("pattern"),
        "{err}"
    );
}

fn with_fault(n: u32, fault: &str) -> CaptureSettings {
    let mut s = settings(n);
    s.source = Source::TestPattern {
        pattern: "smpte".into(),
        num_buffers: Some(n),
        format: CameraFormat::Raw,
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
fn the_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
    let mut t = Throttle::new(Duration::from_millis(200));
    assert_eq!(t.allow(), Some(0));
    assert_eq!(t.allow(), None);
    assert_eq!(t.allow(), None);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(t.allow(), Some(2));
    assert_eq!(t.allow(), None);
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
        format: CameraFormat::Raw,
    };
    let err = Capture::start(&s).err().unwrap();
    assert!(err.to_string().contains("/dev/video-nonexistent"), "{err}");
}
