//! Bad input gets one clear line, a non-zero exit and no panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

fn assert_clear_failure(out: &std::process::Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "expected failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
}

#[test]
fn missing_config_field() {
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("name = \"front\"\n", "");
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_clear_failure(&out, &["missing field `name`"]);
}

#[test]
fn unknown_config_field() {
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("width = 320", "widht = 320");
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        "sealcamd",
        &["check", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_clear_failure(&out, &["unknown field `widht`"]);
}

#[test]
fn missing_camera() {
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "source = \"test\"\nnum_buffers = 10",
        "source = \"v4l2\"\ndevice = \"/dev/video-missing\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_clear_failure(&out, &["camera /dev/video-missing does not exist"]);
}

#[test]
fn missing_device_key() {
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    std::fs::remove_file(w.path().join("cam1/device.key")).unwrap();
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_clear_failure(&out, &["device.key does not exist", "sealcamd provision"]);
}

#[test]
fn device_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let key = w.path().join("cam1/device.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_clear_failure(
        &out,
        &[
            "device.key is accessible by others (mode 0644)",
            "chmod 600",
        ],
    );
}

#[test]
fn missing_consumer_key_for_decrypt() {
    let w = World::new();
    std::fs::create_dir_all(w.path().join("empty")).unwrap();
    let out = run(
        "sealcam",
        &[
            "decrypt",
            "empty",
            "--key",
            "nobody.key",
            "--out",
            "x.mkv",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    assert_clear_failure(&out, &["nobody.key"]);
}

#[test]
fn config_file_missing() {
    let w = World::new();
    let out = run("sealcamd", &["run", "--config", "nope.toml"], w.path());
    assert_clear_failure(&out, &["cannot read config nope.toml"]);
}
