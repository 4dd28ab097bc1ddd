//! `scripts/demo`'s summary counts the fragments a real ingest stored
//! (it counted `*.scf` files, which the store does not hold, and said 0).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use sealcam_system_tests::*;

#[test]
fn the_demo_counts_what_the_ingest_stored() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let demo = std::fs::read_to_string(repo.join("scripts/demo")).unwrap();
    let summary = demo
        .lines()
        .find(|l| l.contains("sealed fragments on the ingest"))
        .unwrap();
    assert!(
        summary.contains("$(stored_fragments ingest-data)"),
        "{summary}"
    );

    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 120);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(". scripts/lib/store.sh && stored_fragments \"$0\"")
        .arg(&ingest.data)
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // 120 frames at 30/s in one-second fragments.
    assert_eq!(text(&out.stdout).trim(), "4");
}
