//! `sealcamd check`: every probe real, every failure named with its fix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

fn check(w: &World, cfg: &std::path::Path) -> (bool, String, String) {
    let out = run(
        "sealcamd",
        &["check", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_ready_camera_passes_every_probe_against_its_ingest() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), 10, 1000);
    let (ok, out, err) = check(&w, &cfg);
    assert!(ok, "{out}\n{err}");
    for line in [
        "ok    config",
        "ok    board     profile generic",
        "ok    graph     all 8 elements present: videotestsrc",
        "ok    camera    first frame after",
        "320x240 H.264",
        "ok    key       INSECURE software key",
        "ok    spool",
        "durable writes work",
        "ok    ingest",
        "accepts this camera's certificate as device cam1",
        "all 7 checks passed",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    // Nothing was recorded or uploaded.
    assert!(std::fs::read_dir(w.path().join("cam1/spool/front"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
}

#[test]
fn each_failure_is_named_with_its_fix_and_the_exit_code_says_so() {
    let w = World::new();
    let cfg = w.camera(
        "cam1",
        &format!("https://127.0.0.1:{}", unused_port()),
        10,
        1000,
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        // Jetson's encoder, which this machine lacks.
        .replace(
            "bitrate_kbps = 500",
            "bitrate_kbps = 500\nencoder = \"nvv4l2\"",
        )
        // A file where the spool directory should be.
        .replace("dir = \"cam1/spool\"", "dir = \"not-a-dir\"");
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(w.path().join("not-a-dir"), b"").unwrap();
    let (ok, out, err) = check(&w, &cfg);
    assert!(!ok, "{out}");
    for line in [
        "FAIL  graph     GStreamer element 'nvvidconv' (plugin 'nvvidconv') is missing: install the Debian package nvidia-l4t-gstreamer",
        "GStreamer element 'nvv4l2h264enc'",
        "ok    key",
        "FAIL  spool     cannot create",
        "FAIL  ingest    cannot reach https://127.0.0.1:",
        "fix: check upload.url",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    // The camera is not probed without its graph.
    assert!(!out.contains("camera"), "{out}");
    assert!(err.contains("3 of 6 checks failed"), "{err}");
}

#[test]
fn an_ingest_from_another_fleet_is_recognised() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), 10, 1000);
    run_ok("sealcam-ca", &["init", "--dir", "other-pki"], w.path());
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("ca = \"pki/ca.crt\"", "ca = \"other-pki/ca.crt\"");
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, _) = check(&w, &cfg);
    assert!(!ok, "{out}");
    assert!(
        out.contains("fix: upload.ca is not the CA that signed the ingest's certificate"),
        "{out}"
    );
}
