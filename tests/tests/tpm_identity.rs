//! The camera's identity in a TPM (swtpm): provisioning, mutual TLS and
//! manifest signatures with a key that never leaves it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::swtpm::Swtpm;
use sealcam_system_tests::*;

#[test]
fn tpm_camera_uploads_and_its_fragments_verify() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let ingest = w.start_ingest();
    let cfg = w.tpm_camera("cam1", &ingest.url(), 60, 1000, &tpm.tcti());
    let cfg_s = cfg.to_str().unwrap();

    // Idempotent: a second provision reuses the key.
    let out = run_ok("sealcamd", &["provision", "--config", cfg_s], w.path());
    assert!(
        text(&out.stdout).contains("existing, reused"),
        "{}",
        text(&out.stdout)
    );

    let out = run_ok("sealcamd", &["identity", "--config", cfg_s], w.path());
    let id = text(&out.stdout);
    assert!(id.contains("TPM handle 0x81000100"), "{id}");
    assert!(id.contains("urn:sealcam:device:cam1"), "{id}");
    assert!(id.contains("key match:    yes"), "{id}");

    let out = run_ok("sealcamd", &["run", "--config", cfg_s], w.path());
    assert!(
        !text(&out.stderr).contains("INSECURE"),
        "no software-key warning with the TPM"
    );
    w.fetch(&ingest, "cam1", "fetched");
    let out = run_ok(
        "sealcam",
        &[
            "verify",
            "fetched",
            "--ca",
            "pki/ca.crt",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    assert!(
        text(&out.stdout).contains("60 frames"),
        "{}",
        text(&out.stdout)
    );
    decrypt_ok(&w, "fetched", "clip.mkv");
    assert_eq!(gst_count_frames(&w.path().join("clip.mkv")).0, 60);
}

#[test]
fn force_replaces_the_key_and_the_old_certificate_no_longer_fits() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let cfg = w.tpm_camera("cam1", "https://127.0.0.1:1", 10, 1000, &tpm.tcti());
    let cfg_s = cfg.to_str().unwrap();
    run_ok(
        "sealcamd",
        &["check", "--offline", "--config", cfg_s],
        w.path(),
    );
    let out = run_ok(
        "sealcamd",
        &["provision", "--config", cfg_s, "--force"],
        w.path(),
    );
    assert!(
        text(&out.stdout).contains("(created)"),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        "sealcamd",
        &["check", "--offline", "--config", cfg_s],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("does not certify this device's key"),
        "{}",
        text(&out.stdout)
    );
    // A fresh certificate from the new CSR fits again.
    w.issue_device_cert("cam1");
    run_ok(
        "sealcamd",
        &["check", "--offline", "--config", cfg_s],
        w.path(),
    );
}

#[test]
fn software_key_config_needs_explicit_consent() {
    let w = World::new();
    let cfg = w.write_camera_config("cam1", "https://127.0.0.1:1", 10, 1000);
    let out = run(
        "sealcamd",
        &["provision", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--insecure-software-key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn missing_tpm_is_one_clear_line() {
    let w = World::new();
    let cfg = w.write_config(
        "cam1",
        "https://127.0.0.1:1",
        10,
        1000,
        &World::tpm_identity("cam1", "device:/dev/tpmrm-missing"),
    );
    let out = run(
        "sealcamd",
        &["provision", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("cannot open the TPM via device:/dev/tpmrm-missing"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_software_key_on_a_camera_board() {
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let cfg_s = cfg.to_str().unwrap();
    // A PC: allowed (development).
    let pc = w.path().join("pc-root");
    std::fs::create_dir_all(&pc).unwrap();
    run_ok(
        "sealcamd",
        &[
            "check",
            "--offline",
            "--config",
            cfg_s,
            "--sysroot",
            pc.to_str().unwrap(),
        ],
        w.path(),
    );
    // A Raspberry Pi 4: refused.
    let pi = w.path().join("pi-root");
    std::fs::create_dir_all(pi.join("proc/device-tree")).unwrap();
    std::fs::write(
        pi.join("proc/device-tree/model"),
        b"Raspberry Pi 4 Model B Rev 1.5\0",
    )
    .unwrap();
    let out = run(
        "sealcamd",
        &[
            "check",
            "--offline",
            "--config",
            cfg_s,
            "--sysroot",
            pi.to_str().unwrap(),
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("refused on a Raspberry Pi 4"),
        "{}",
        text(&out.stdout)
    );
}
