//! A server that refuses fragments cannot make the camera excuse their
//! loss: the camera tries a refused fragment a few times, then holds it,
//! declares no gap, and waits for an operator (`sealcamd spool`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use sealcam_system_tests::*;

fn spool(w: &World, cfg: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["spool"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", cfg.to_str().unwrap()]);
    text(&run_ok("sealcamd", &all, w.path()).stdout)
}

#[test]
fn fragments_the_ingest_refuses_are_held_without_a_signed_excuse_until_an_operator_decides() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.record("cam1", &ingest, 90);
    let stored_before = fragment_files(&ingest.data).len();
    assert!(stored_before >= 3, "{stored_before}");

    // The camera loses its chain state (a new SD card) and records again
    // from sequence 0: the ingest refuses every fragment (409, different
    // bytes under a stored sequence, or a broken chain).
    std::fs::remove_dir_all(w.path().join("cam1/spool")).unwrap();
    let out = Command::new(bin("sealcamd"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("SEALCAMD_UPLOAD__REFUSAL_TRIES", "3")
        .env("SEALCAMD_UPLOAD__DRAIN_TIMEOUT_S", "30")
        .current_dir(w.path())
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("the ingest kept refusing"), "{log}");
    assert!(log.contains("held, and no gap is declared"), "{log}");
    // Each was sent three times before it was held.
    assert!(log.contains("refusal 2"), "{log}");
    assert!(!log.contains("refusal 3"), "{log}");
    assert_eq!(fragment_files(&ingest.data).len(), stored_before);

    let listed = spool(&w, &cfg, &["list"]);
    assert!(listed.contains("queued:  none"), "{listed}");
    assert!(listed.contains("gaps:    0 to declare"), "{listed}");
    assert!(listed.contains("held:    3 fragments"), "{listed}");
    assert!(listed.contains("  0  409"), "{listed}");

    // The operator decides: fragment 1 is sent again, fragment 0 given up,
    // which only now declares its gap, signed in the next manifest.
    spool(&w, &cfg, &["retry", "--sequence", "1"]);
    let dropped = spool(&w, &cfg, &["drop", "--sequence", "0"]);
    assert!(dropped.contains("RefusedByIngest"), "{dropped}");
    let listed = spool(&w, &cfg, &["list"]);
    assert!(listed.contains("queued:  1 fragments (1..=1)"), "{listed}");
    assert!(listed.contains("gaps:    1 to declare"), "{listed}");
    assert!(listed.contains("held:    1 fragments"), "{listed}");
    assert!(listed.contains("  2  409"), "{listed}");
    let missing = run(
        "sealcamd",
        &[
            "spool",
            "drop",
            "--sequence",
            "0",
            "--config",
            cfg.to_str().unwrap(),
        ],
        w.path(),
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("fragment 0 is not held"),
        "{}",
        text(&missing.stderr)
    );
}
