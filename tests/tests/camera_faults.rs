//! A camera that stalls or fails mid-stream: sealcamd rebuilds the capture
//! graph, keeps recording, and declares the time without frames, signed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

/// Records 60 frames after a fault at frame 45 of the first capture graph.
fn record_with_fault(fault: &str) -> (World, String, String) {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), 60, 1000);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        "bitrate_kbps = 500",
        &format!("bitrate_kbps = 500\nstall_timeout_ms = 1000\ntest_fault = \"{fault}\""),
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    w.fetch(&ingest, "cam1", "fetched");
    let report = text(
        &run_ok(
            "sealcam",
            &["verify", "fetched", "--owner", "owner.pub"],
            w.path(),
        )
        .stdout,
    );
    (w, report, text(&out.stderr))
}

fn assert_recovered(report: &str) {
    // 45 frames before the fault (fragments 0 and 1, the second cut short),
    // then a new graph's 60 (fragments 2 and 3).
    assert!(
        report.contains("4 fragments (sequence 0..=3), 105 frames"),
        "{report}"
    );
    let declared = report
        .lines()
        .find(|l| l.contains("camera delivered no frames"))
        .unwrap_or_else(|| panic!("no declared stall: {report}"));
    assert!(declared.contains("signed in fragment"), "{declared}");
    assert!(report.contains("undeclared gaps: none"), "{report}");
}

#[test]
fn a_stalled_camera_is_restarted_and_the_gap_is_declared() {
    let (w, report, log) = record_with_fault("stall-after:45");
    assert_recovered(&report);
    assert!(
        log.contains("camera delivered no frame; rebuilding"),
        "{log}"
    );
    decrypt_ok(&w, "fetched", "clip.mkv");
    assert_eq!(gst_count_frames(&w.path().join("clip.mkv")).0, 105);
}

#[test]
fn a_failing_camera_is_restarted_and_the_gap_is_declared() {
    let (_w, report, log) = record_with_fault("error-after:45");
    assert_recovered(&report);
    assert!(
        log.contains("capture failed; rebuilding") && log.contains("injected fault"),
        "{log}"
    );
}
