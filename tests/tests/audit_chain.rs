//! The audit trail across runs: each run of the ingest names the run before
//! it, and a head exported to the operator covers the newest run. Deleting a
//! whole run, or the tail of one, is reported by `sealcam-ingest audit verify`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sealcam_system_tests::*;

fn audit(w: &World, args: &[&str]) -> std::process::Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", "ingest-data", "--pki", "pki"]);
    run("sealcam-ingest", &all, w.path())
}

/// One run of the ingest: `calls` audited requests a second or more apart
/// (so that each lands in a segment of its own), then SIGTERM.
fn one_run(w: &World, config: &Path, calls: usize) {
    one_run_with(w, config, calls, &[]);
}

fn one_run_with(w: &World, config: &Path, calls: usize, extra: &[&str]) -> Ingest {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut ingest = w.start_ingest_with(&args);
    let alice = w.consumer_client("alice");
    for _ in 0..calls {
        let resp = alice
            .get(format!("{}/v1/whoami", ingest.url()))
            .send()
            .unwrap();
        assert!(resp.status().is_success());
        std::thread::sleep(Duration::from_millis(1300));
    }
    // The audit queue's depth and its drops are metrics.
    if let Some(i) = extra.iter().position(|a| *a == "--metrics-listen") {
        let metrics = http_get(&format!("http://{}/metrics", extra[i + 1]))
            .text()
            .unwrap();
        assert!(
            metrics.contains("sealcam_ingest_audit_queue_depth ")
                && metrics.contains("sealcam_ingest_audit_dropped_total 0"),
            "{metrics}"
        );
    }
    ingest.terminate();
    assert!(wait_until(20, || ingest.exited()), "{}", ingest.log_text());
    ingest
}

/// The epochs (runs) in the store, oldest first, as directories.
fn runs(w: &World) -> Vec<PathBuf> {
    let audit = w.path().join("ingest-data/audit");
    let instance = std::fs::read_dir(&audit)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(instance)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    epochs.sort();
    epochs
}

fn segments(run: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    s.sort();
    s
}

/// Moves `path` aside and returns a closure-free way to put it back.
fn set_aside(w: &World, path: &Path) -> (PathBuf, PathBuf) {
    let aside = w.path().join("aside");
    std::fs::rename(path, &aside).unwrap();
    (aside, path.to_owned())
}

fn put_back((aside, path): (PathBuf, PathBuf)) {
    std::fs::rename(aside, path).unwrap();
}

fn verify_fails_saying(w: &World, args: &[&str], needle: &str) {
    let out = audit(w, args);
    let report = text(&out.stdout);
    assert!(!out.status.success(), "verify passed: {report}");
    assert!(report.contains(needle), "{report}\n{}", text(&out.stderr));
}

#[test]
fn deleting_a_run_or_its_tail_or_the_newest_run_is_reported() {
    let w = World::new();
    let config = w.path().join("ingest.toml");
    std::fs::write(&config, "[audit]\nflush_interval = \"1s\"\n").unwrap();
    one_run(&w, &config, 3);
    one_run(&w, &config, 1);
    let epochs = runs(&w);
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    assert!(
        segments(&epochs[0]).len() >= 2,
        "{:?}",
        segments(&epochs[0])
    );

    let out = audit(&w, &["verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let head = audit(&w, &["head"]);
    assert!(head.status.success(), "{}", text(&head.stderr));
    std::fs::write(w.path().join("head.json"), &head.stdout).unwrap();
    let out = audit(&w, &["verify", "--since-head", "head.json"]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    // The first run, whole: the second names it.
    let aside = set_aside(&w, &epochs[0]);
    verify_fails_saying(&w, &["verify"], "a whole run was deleted");
    put_back(aside);

    // The first run's tail: the second saw a later segment.
    let last = segments(&epochs[0]).pop().unwrap();
    let aside = set_aside(&w, &last);
    verify_fails_saying(&w, &["verify"], "its tail was removed");
    put_back(aside);

    // The newest run: nothing after it names it, but the head does.
    let aside = set_aside(&w, &epochs[1]);
    let out = audit(&w, &["verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    verify_fails_saying(&w, &["verify", "--since-head", "head.json"], "is gone");
    put_back(aside);

    // A head edited by hand is refused.
    let edited = std::fs::read_to_string(w.path().join("head.json"))
        .unwrap()
        .replacen("\"segment\": 0", "\"segment\": 1", 1);
    std::fs::write(w.path().join("forged.json"), edited).unwrap();
    verify_fails_saying(
        &w,
        &["verify", "--since-head", "forged.json"],
        "not signed by the audit key",
    );

    // Whole again, the trail verifies against its head, and a third run
    // continues it.
    let out = audit(&w, &["verify", "--since-head", "head.json"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let metrics = format!("127.0.0.1:{}", unused_port());
    one_run_with(&w, &config, 1, &["--metrics-listen", &metrics]);
    let out = audit(&w, &["verify", "--since-head", "head.json"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout).matches(": ok").count(), 4);
}
