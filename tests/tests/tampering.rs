//! Tampering with fetched fragments is detected and named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use sealcam_system_tests::*;

/// Records 4 one-second fragments and fetches them into `fetched/`.
fn recorded() -> (World, Vec<PathBuf>) {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 120);
    w.fetch(&ingest, "cam1", "fetched");
    let files = fragment_files(&w.path().join("fetched"));
    assert_eq!(files.len(), 4, "{files:?}");
    (w, files)
}

#[test]
fn flipped_byte_fails_verify_and_names_the_fragment() {
    let (w, files) = recorded();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    std::fs::write(&files[1], bytes).unwrap();
    let out = run(
        "sealcam",
        &["verify", "fetched", "--owner", "owner.pub"],
        w.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    let name = files[1].file_name().unwrap().to_str().unwrap();
    assert!(report.contains(&format!("FAILED:    {name}")), "{report}");
    // decrypt refuses too, naming it.
    let out = run(
        "sealcam",
        &[
            "decrypt",
            "fetched",
            "--key",
            "alice.key",
            "--out",
            "x.mkv",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(name));
    assert!(!w.path().join("x.mkv").exists());
}

#[test]
fn removed_fragment_is_reported_as_a_gap() {
    let (w, files) = recorded();
    std::fs::remove_file(&files[2]).unwrap();
    let out = run(
        "sealcam",
        &["verify", "fetched", "--owner", "owner.pub"],
        w.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("GAP:       sequences 2..=2 are missing"),
        "{report}"
    );
}

#[test]
fn swapped_frames_fail() {
    let (w, files) = recorded();
    let bytes = std::fs::read(&files[0]).unwrap();
    let frag = sealcam_format::SealedFragment::parse(&bytes).unwrap();
    let recs = frag.records().unwrap();
    // Swap records 1 and 2 (the first two frames).
    let mut order = recs.clone();
    order.swap(1, 2);
    let swapped = frag.reassemble(&order);
    assert_eq!(swapped.len(), bytes.len());
    std::fs::write(&files[0], swapped).unwrap();
    let out = run(
        "sealcam",
        &["verify", "fetched", "--owner", "owner.pub"],
        w.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("content was altered"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn key_that_is_not_a_recipient_names_the_recipients() {
    let (w, _) = recorded();
    let out = run_ok("sealcam", &["keygen", "--out", "bob"], w.path());
    let bob_id = text(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let pem = std::fs::read_to_string(w.path().join("alice.pub")).unwrap();
    let alice_id = sealcam_format::ConsumerPublicKey::from_pem(&pem)
        .unwrap()
        .id()
        .to_string();
    let out = run(
        "sealcam",
        &[
            "decrypt",
            "fetched",
            "--key",
            "bob.key",
            "--out",
            "x.mkv",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&bob_id) && err.contains(&alice_id), "{err}");
}
