//! Unit tests of the config: good files, bad fields, board profiles, overrides.

use std::path::Path;

use sealcam_hal::pipeline::{CameraFormat, Encoder, SpeedPreset};
use sealcam_hal::tpm;

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
    let err = parse_on(GOOD, &[("SEALCAMD_CAMERA__WIDTH", "wide")], Board::Generic).unwrap_err();
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
    let yocto =
        boards.join("../../yocto-layer/meta-sealcam/recipes-sealcam/sealcam/files/sealcamd.toml");
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

#[test]
fn a_bad_field_is_reported_before_any_key_file_is_read() {
    // No alice.pub: reading it would fail, but the bad URL is found first.
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD.replace("https://127", "http://127");
    let err = Config::parse(&dir.path().join("c.toml"), &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("upload.url"), "{err}");
}

#[test]
fn update_is_off_by_default_and_its_defaults_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    // The health check reads [update] even from a config that is broken
    // elsewhere (a release whose sealcamd cannot start).
    std::fs::write(&path, "device_id = 12\n[update]\nhealth_timeout_s = 7\n").unwrap();
    let u = Config::load_update(&path);
    assert_eq!(u.health_timeout, std::time::Duration::from_secs(7));
    assert!(!u.enabled);
    std::fs::write(&path, "not toml [").unwrap();
    let u = Config::load_update(&path);
    assert_eq!(u.health_timeout, std::time::Duration::from_secs(300));
    assert_eq!(
        u.ack_file,
        std::path::Path::new("/run/sealcam/acknowledged")
    );
    assert_eq!(u.dir, std::path::Path::new("/var/lib/sealcam/update"));
}
