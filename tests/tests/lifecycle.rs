//! A device's certificate life: enrollment with a one-time token, renewal
//! over mutual TLS, expiry, revocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use sealcam_system_tests::swtpm::Swtpm;
use sealcam_system_tests::*;

/// Asserts a command succeeded.
fn ok(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

/// `sealcamd provision --enroll` for a config (plus extra flags).
#[test]
fn tpm_camera_enrolls_with_a_token_that_works_once() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let ingest = w.start_ingest();
    let token = w.device_add("cam1", "1h");
    let cfg = w.write_config(
        "cam1",
        &ingest.url(),
        30,
        1000,
        &World::tpm_identity("cam1", &tpm.tcti()),
    );
    let cfg_s = cfg.to_str().unwrap();
    let url = ingest.enroll_url();
    let out = ok(enroll(&w, cfg_s, &url, &token, &[]));
    assert!(
        text(&out.stdout).contains("enrolled"),
        "{}",
        text(&out.stdout)
    );
    run_ok("sealcamd", &["run", "--config", cfg_s], w.path());
    assert_eq!(fragment_files(&ingest.data).len(), 1);

    // The same token again: refused, clearly.
    let out = enroll(&w, cfg_s, &url, &token, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown or was already used"),
        "{}",
        text(&out.stderr)
    );
    // A wrong token: the same answer, nothing to learn from it.
    let out = enroll(&w, cfg_s, &url, "00", &[]);
    assert!(
        text(&out.stderr).contains("unknown or was already used"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn expired_token_is_refused() {
    let w = World::new();
    let ingest = w.start_ingest();
    let token = w.device_add("cam1", "1s");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cfg = w.write_camera_config("cam1", &ingest.url(), 10, 1000);
    let out = enroll(
        &w,
        cfg.to_str().unwrap(),
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("enrollment token expired"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn renewal_for_another_key_is_refused() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.camera("cam1", &ingest.url(), 10, 1000);
    // A CSR naming cam1 but made with another key.
    let other = w.path().join("cam1b.toml");
    let cfg = std::fs::read_to_string(w.path().join("cam1.toml")).unwrap();
    std::fs::create_dir_all(w.path().join("cam1b")).unwrap();
    std::fs::write(&other, cfg.replace("\"cam1/", "\"cam1b/")).unwrap();
    run_ok(
        "sealcamd",
        &[
            "provision",
            "--config",
            other.to_str().unwrap(),
            "--insecure-software-key",
        ],
        w.path(),
    );
    let csr = std::fs::read_to_string(w.path().join("cam1b/device.csr")).unwrap();
    let client = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let resp = client
        .post(format!("{}/v1/renew", ingest.url()))
        .json(&serde_json::json!({ "csr": csr }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp
        .text()
        .unwrap()
        .contains("does not match the key of the current certificate"));
    // The device's own key renews.
    let csr = std::fs::read_to_string(w.path().join("cam1/device.csr")).unwrap();
    let resp = client
        .post(format!("{}/v1/renew", ingest.url()))
        .json(&serde_json::json!({ "csr": csr }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn expired_certificate_is_refused_by_camera_and_ingest() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.write_camera_config("cam1", &ingest.url(), 10, 1000);
    run_ok(
        "sealcamd",
        &[
            "provision",
            "--config",
            cfg.to_str().unwrap(),
            "--insecure-software-key",
        ],
        w.path(),
    );
    run_ok(
        "sealcam-ca",
        &[
            "device",
            "issue",
            "--dir",
            "ca",
            "--csr",
            "cam1/device.csr",
            "--out",
            "cam1/device.crt",
            "--lifetime",
            "2s",
        ],
        w.path(),
    );
    // Certificates count whole seconds: wait well past the end.
    std::thread::sleep(std::time::Duration::from_millis(4000));
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has expired"),
        "{}",
        text(&out.stderr)
    );
    // An independent client with the same certificate: the handshake fails.
    let client = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    assert!(client
        .get(format!("{}/v1/streams", ingest.url()))
        .send()
        .is_err());
    let log = ingest.wait_for_log("certificate expired");
    assert!(
        log.contains("TLS handshake refused")
            && log.contains("invalid peer certificate: certificate expired"),
        "{log}"
    );
}

#[test]
fn renewal_carries_the_camera_across_the_expiry_of_its_first_certificate() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    w.restart_ca_with(&["--device-cert-lifetime", "6s"]);
    let ingest = w.start_ingest();
    let token = w.device_add("cam1", "1h");
    // 10 s of video with 6 s certificates.
    let cfg = w.write_config(
        "cam1",
        &ingest.url(),
        300,
        1000,
        &World::tpm_identity("cam1", &tpm.tcti()),
    );
    let cfg_s = cfg.to_str().unwrap();
    ok(enroll(&w, cfg_s, &ingest.enroll_url(), &token, &[]));
    let first = std::fs::read(w.path().join("cam1/device.crt")).unwrap();
    let out = run_ok("sealcamd", &["run", "--config", cfg_s], w.path());
    let log = text(&out.stderr);
    assert!(log.contains("device certificate renewed"), "{log}");
    assert!(!log.contains("upload failed"), "{log}");
    assert_ne!(
        std::fs::read(w.path().join("cam1/device.crt")).unwrap(),
        first
    );
    assert_eq!(fragment_files(&ingest.data).len(), 10);
    // The ingest saw the camera under more than one certificate.
    let serials: std::collections::HashSet<String> = ingest
        .log_text()
        .lines()
        .filter(|l| l.contains("connection authenticated") && l.contains("device cam1"))
        .filter_map(|l| {
            l.split("serial=")
                .nth(1)
                .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
        })
        .collect();
    assert!(serials.len() >= 2, "{serials:?}");
}

#[test]
fn revocation_cuts_the_open_upload_and_refuses_new_handshakes() {
    let w = World::new();
    let ingest = w.start_ingest();
    // 30 s of video: still streaming when it is revoked.
    let cfg = w.camera("cam1", &ingest.url(), 900, 1000);
    let camera_log = w.path().join("camera.log");
    let mut camera = Command::new(bin("sealcamd"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .current_dir(w.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&camera_log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(20, || fragment_files(&ingest.data).len() >= 2),
        "no uploads"
    );
    run_ok(
        "sealcam-ca",
        &["device", "revoke", "cam1", "--dir", "ca"],
        w.path(),
    );
    let log = ingest.wait_for_log("its certificate was revoked");
    assert!(
        log.contains("closing connection: its certificate was revoked"),
        "{log}"
    );
    let log = ingest.wait_for_log("invalid peer certificate: Revoked");
    assert!(log.contains("invalid peer certificate: Revoked"), "{log}");
    // Nothing more is stored; what the camera records stays in its spool.
    let stored = fragment_files(&ingest.data).len();
    assert!(wait_until(10, || !fragment_files(
        &w.path().join("cam1/spool")
    )
    .is_empty()));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(fragment_files(&ingest.data).len(), stored);
    // The camera says why, though the cut connection failed first.
    let said_why = wait_until(15, || {
        std::fs::read_to_string(&camera_log)
            .is_ok_and(|l| l.contains("the ingest revoked this camera's certificate"))
    });
    let _ = camera.kill();
    let _ = camera.wait();
    assert!(
        said_why,
        "camera:\n{}\ningest:\n{}",
        std::fs::read_to_string(&camera_log).unwrap_or_default(),
        ingest.log_text()
    );
}

#[test]
fn without_a_token_an_operator_approves_the_key_fingerprint() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.write_camera_config("cam1", &ingest.url(), 10, 1000);
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let camera = Command::new(bin("sealcamd"))
        .args([
            "provision",
            "--config",
            &cfg_s,
            "--insecure-software-key",
            "--enroll",
        ])
        .arg(ingest.enroll_url())
        .args(["--wait-s", "60"])
        .current_dir(w.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listed = String::new();
    assert!(wait_until(20, || {
        listed = text(
            &run_ok(
                "sealcam-ca",
                &["device", "pending", "--dir", "ca"],
                w.path(),
            )
            .stdout,
        );
        listed.starts_with("cam1\t")
    }));
    let fingerprint = listed.trim().split('\t').nth(1).unwrap().to_owned();
    // The operator compares with the camera's own view of its key.
    let id = text(&run_ok("sealcamd", &["identity", "--config", &cfg_s], w.path()).stdout);
    assert!(id.contains(&fingerprint), "{id}");
    // A wrong fingerprint approves nothing.
    let out = run(
        "sealcam-ca",
        &[
            "device",
            "approve",
            "cam1",
            "--dir",
            "ca",
            "--fingerprint",
            &"0".repeat(64),
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&fingerprint),
        "{}",
        text(&out.stderr)
    );
    run_ok(
        "sealcam-ca",
        &[
            "device",
            "approve",
            "cam1",
            "--dir",
            "ca",
            "--fingerprint",
            &fingerprint,
        ],
        w.path(),
    );
    let out = camera.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("enrolled"));
    run_ok("sealcamd", &["check", "--config", &cfg_s], w.path());
}

#[test]
fn a_fleet_can_require_a_genuine_tpm() {
    let w = World::new();
    let (tpm, ek_ca) =
        Swtpm::start_with_ek(&w.path().join("tpm-state"), &w.path().join("tpm-maker-ca"));
    w.restart_ca_with(&["--require-ek-ca", ek_ca.to_str().unwrap()]);
    let ingest = w.start_ingest();

    // A TPM with a maker's EK certificate enrolls; the certificate is recorded.
    let token = w.device_add("cam1", "1h");
    let cfg = w.write_config(
        "cam1",
        &ingest.url(),
        10,
        1000,
        &World::tpm_identity("cam1", &tpm.tcti()),
    );
    let cfg_s = cfg.to_str().unwrap();
    let out = ok(enroll(&w, cfg_s, &ingest.enroll_url(), &token, &[]));
    assert!(
        text(&out.stdout).contains("ek cert:     present"),
        "{}",
        text(&out.stdout)
    );
    assert!(w.path().join("ca/ek/cam1.der").exists());
    let id = text(&run_ok("sealcamd", &["identity", "--config", cfg_s], w.path()).stdout);
    assert!(id.contains("tpm ek cert:"), "{id}");

    // A TPM without one does not.
    let plain = Swtpm::start(&w.path().join("plain-tpm"));
    let token = w.device_add("cam2", "1h");
    let cfg = w.write_config(
        "cam2",
        &ingest.url(),
        10,
        1000,
        &World::tpm_identity("cam2", &plain.tcti()),
    );
    let out = enroll(&w, cfg.to_str().unwrap(), &ingest.enroll_url(), &token, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("requires a genuine TPM"),
        "{}",
        text(&out.stderr)
    );
}
