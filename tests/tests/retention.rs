//! Retention and deletion: keys destroyed first, on record.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

fn objects(ingest: &Ingest, device: &str, kind: &str) -> usize {
    stored_object_files(&ingest.data)
        .iter()
        .filter(|p| {
            p.parent().is_some_and(|d| d.ends_with(kind))
                && p.to_string_lossy().contains(&format!("/streams/{device}/"))
        })
        .count()
}

fn audit_show(w: &World, args: &[&str]) -> String {
    let mut all = vec!["audit", "show", "--data", "ingest-data", "--pki", "pki"];
    all.extend_from_slice(args);
    text(&run_ok("sealcam-ingest", &all, w.path()).stdout)
}

#[test]
fn expired_fragments_are_destroyed_keys_first_and_on_record() {
    let w = World::new();
    std::fs::write(
        w.path().join("ingest.toml"),
        "[retention]\nsweep_interval = \"1s\"\n[retention.streams]\n\"cam1/*\" = \"4s\"\n\
         [audit]\nflush_interval = \"1s\"\n",
    )
    .unwrap();
    let config = w.path().join("ingest.toml");
    let ingest = w.start_ingest_with(&["--config", config.to_str().unwrap()]);
    w.record("cam1", &ingest, 60);
    w.record("cam2", &ingest, 30);
    assert_eq!(objects(&ingest, "cam1", "keys"), 2);

    assert!(
        wait_until(30, || objects(&ingest, "cam1", "keys") == 0
            && objects(&ingest, "cam1", "data") == 0),
        "cam1's fragments outlived their retention period"
    );
    // cam2 has no retention rule: untouched.
    assert_eq!(objects(&ingest, "cam2", "keys"), 1);
    let alice = w.client_with_cert("consumer/alice.crt", "consumer/alice.key");
    let listed: serde_json::Value = alice
        .get(format!("{}/v1/streams/cam1/front/fragments", ingest.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed, serde_json::json!([]));
    // One deletion record per sweep that found something: two in all.
    let destroyed = |shown: &str| -> usize {
        shown
            .lines()
            .filter_map(|l| {
                l.split("keys of ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    assert!(
        wait_until(10, || destroyed(&audit_show(&w, &["--action", "delete"]))
            == 2),
        "{}",
        audit_show(&w, &[])
    );
}

#[test]
fn operator_deletes_a_stream_on_request() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 60);
    drop(ingest);
    let out = run_ok(
        "sealcam-ingest",
        &[
            "stream",
            "delete",
            "cam1/front",
            "--data",
            "ingest-data",
            "--pki",
            "pki",
            "--operator",
            "carol",
        ],
        w.path(),
    );
    assert!(
        text(&out.stdout).contains("cam1/front: 2 fragments destroyed"),
        "{}",
        text(&out.stdout)
    );
    let left: Vec<_> = stored_object_files(&w.path().join("ingest-data"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/streams/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let shown = audit_show(&w, &["--stream", "cam1/front", "--action", "delete"]);
    assert!(
        shown.contains("operator:carol") && shown.contains("deleted on request"),
        "{shown}"
    );
    // A stream that does not exist: nothing to do, said plainly.
    let out = run_ok(
        "sealcam-ingest",
        &[
            "stream",
            "delete",
            "cam9/front",
            "--data",
            "ingest-data",
            "--pki",
            "pki",
        ],
        w.path(),
    );
    assert!(text(&out.stdout).contains("0 fragments destroyed"));
}
