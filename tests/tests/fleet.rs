//! Ingest instances sharing one bucket on a real S3-compatible server
//! (`s3s-fs`), as behind a load balancer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::s3::S3Server;
use sealcam_system_tests::*;

const BUCKET: &str = "fleet";

/// An S3 server and two ingest instances on the same bucket, each with
/// its own directory (its own certificate, cached CRL) and one CA service.
/// They share the audit key, as the deploy guide says.
fn two_ingests(w: &World) -> (S3Server, Ingest, Ingest) {
    let s3 = S3Server::start(&w.path().join("s3"), BUCKET);
    let cfg = w.path().join("ingest.toml");
    std::fs::write(&cfg, s3.storage_config(BUCKET, &w.path().join("s3.secret"))).unwrap();
    let data = s3.root.join(BUCKET);
    let a = Ingest::start_with_config(w.path(), &w.path().join("pki"), &cfg, &data);
    w.issue_ingest("node2", "pki-b", &[]);
    for key in ["audit.key", "audit.pub"] {
        std::fs::copy(
            w.path().join("pki").join(key),
            w.path().join("pki-b").join(key),
        )
        .unwrap();
    }
    let b = Ingest::start_with_config(w.path(), &w.path().join("pki-b"), &cfg, &data);
    (s3, a, b)
}

fn objects_under(ingest: &Ingest, kind: &str) -> usize {
    stored_object_files(&ingest.data)
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with(kind)))
        .count()
}

#[test]
fn two_ingests_on_one_bucket_serve_one_chain_without_duplicates() {
    let w = World::new();
    let (_s3, a, b) = two_ingests(&w);

    // cam1 uploads two fragments to A, then fails over to B for two more:
    // B checks chain continuity against what A stored.
    let cfg = w.record("cam1", &a, 60);
    w.write_camera_config("cam1", &b.url(), 60, 1000);
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_eq!(objects_under(&a, "keys"), 4);
    assert_eq!(objects_under(&a, "data"), 4);

    // Either instance serves all four as one verified chain.
    for (ingest, out) in [(&a, "from-a"), (&b, "from-b")] {
        w.fetch(ingest, "cam1", out);
        let report = text(
            &run_ok(
                "sealcam",
                &["verify", out, "--owner", "owner.pub"],
                w.path(),
            )
            .stdout,
        );
        assert!(
            report.contains("4 fragments (sequence 0..=3), 120 frames"),
            "{report}"
        );
    }

    // The owner publishes the roster on A; B serves it from the bucket,
    // and a fetch anchored in the owner key alone verifies through it,
    // with the device's certificate history that both instances recorded.
    let server = alice_at(&a);
    let mut args = vec![
        "roster",
        "publish",
        "--roster",
        "roster.sdr",
        "--owner",
        "owner.pub",
    ];
    args.extend(server.iter().map(String::as_str));
    run_ok("sealcam", &args, w.path());
    let out = w.fetch_unanchored(&b, "cam1", "via-b", &["--owner", "owner.pub"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains(", roster version 1\n"), "{report}");
    assert!(report.contains("result:    OK"), "{report}");
    let certs = std::fs::read_dir(w.path().join("via-b/certs")).unwrap();
    assert_eq!(certs.count(), 1);

    // The camera re-sends a fragment (its acknowledgement was lost in a
    // failover): both instances acknowledge it and store nothing twice.
    let device = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let first = fragment_files(&w.path().join("from-a"));
    let bytes = std::fs::read(&first[0]).unwrap();
    for ingest in [&a, &b] {
        let resp = device
            .put(format!("{}/v1/fragments/cam1/front/0", ingest.url()))
            .body(bytes.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["status"], "already-stored");
    }
    assert_eq!(objects_under(&a, "keys"), 4);

    // The camera loses its spool (a reset) and starts its chain again at
    // sequence 0: different bytes for stored sequences are refused, logged
    // as a security event, and what is stored stays as it was.
    std::fs::remove_dir_all(w.path().join("cam1/spool")).unwrap();
    let _ = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(b
        .wait_for_log("SECURITY: conflicting fragment refused")
        .contains("SECURITY"));
    // The camera's signed head now names its new fragment 1, not the one
    // stored: verify calls that history forked (until a restart is
    // declared as a new epoch), and the fragments fetched are the old ones.
    let fetched = w.fetch_with(&a, "cam1", "after", &[]);
    assert!(
        text(&fetched.stdout).contains("forked history: the camera signed fragment 1"),
        "{}",
        text(&fetched.stdout)
    );
    for (before, after) in first.iter().zip(fragment_files(&w.path().join("after"))) {
        assert_eq!(
            std::fs::read(before).unwrap(),
            std::fs::read(after).unwrap()
        );
    }
    assert_eq!(objects_under(&a, "keys"), 4);
}

/// `sealcam-ingest audit ...` against the shared bucket.
fn audit(w: &World, args: &[&str]) -> std::process::Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", "ingest.toml", "--pki", "pki"]);
    run("sealcam-ingest", &all, w.path())
}

#[test]
fn audit_trail_records_who_read_what_across_instances_and_detects_tampering() {
    let w = World::new();
    let (s3, a, b) = two_ingests(&w);
    w.record("cam1", &a, 30);
    // alice reads through B; bob, who may read only cam2, is refused on A.
    w.fetch(&b, "cam1", "fetched");
    let bob = w.consumer("bob", &["cam2/front"]);
    let resp = bob
        .get(format!("{}/v1/streams/cam1/front/fragments/0", a.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // Both instances' records reach the bucket (flushed every second).
    let show = |args: &[&str]| text(&audit(&w, args).stdout);
    assert!(wait_until(15, || {
        let s = show(&["show", "--stream", "cam1/front"]);
        s.contains("consumer:bob") && s.contains("consumer:alice")
    }));
    let reads = show(&["show", "--stream", "cam1/front", "--action", "read"]);
    let alice = reads
        .lines()
        .find(|l| l.contains("consumer:alice"))
        .unwrap_or_else(|| panic!("{reads}"));
    assert!(
        alice.contains("cam1/front/0") && alice.contains(" ok "),
        "{alice}"
    );
    let bob_line = reads
        .lines()
        .find(|l| l.contains("consumer:bob"))
        .unwrap_or_else(|| panic!("{reads}"));
    assert!(
        bob_line.contains("refused") && bob_line.contains("may not read"),
        "{bob_line}"
    );
    let uploads = show(&["show", "--actor", "device:cam1", "--action", "upload"]);
    assert_eq!(uploads.lines().count(), 1, "{uploads}");

    let out = audit(&w, &["verify"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert_eq!(
        report.matches(": ok").count(),
        2,
        "one chain per instance: {report}"
    );

    // Someone with write access to the bucket rewrites history.
    drop((a, b));
    let segment = stored_object_files(&s3.root.join(BUCKET))
        .into_iter()
        .find(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && std::fs::read_to_string(p)
                    .unwrap()
                    .contains("consumer:alice")
        })
        .unwrap();
    let edited = std::fs::read_to_string(&segment)
        .unwrap()
        .replace("consumer:alice", "consumer:mallory");
    std::fs::write(&segment, edited).unwrap();
    let out = audit(&w, &["verify"]);
    assert!(!out.status.success());
    let report = text(&out.stdout);
    // The next record no longer follows it, or (if it was the segment's
    // last) the seal no longer matches.
    assert!(
        report.contains("FAILED")
            && (report.contains("does not follow") || report.contains("seal does not match")),
        "{report}"
    );
}

/// `sealcam follow` with the given output arguments, in the background.
fn follow(w: &World, ingest: &Ingest, output: &[&str]) -> std::process::Child {
    let server = alice_at(ingest);
    let mut args = vec!["follow", "cam1/front"];
    args.extend(server.iter().map(String::as_str));
    args.extend_from_slice(&["--key", "alice.key", "--fragments", "3"]);
    args.extend_from_slice(&ANCHOR);
    args.extend_from_slice(output);
    std::process::Command::new(bin("sealcam"))
        .args(&args)
        .current_dir(w.path())
        .env("SEALCAM_STATE_DIR", w.path().join(STATE_DIR))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child up to `secs`, killing it if it takes longer.
fn finish(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let done = wait_until(secs, || child.try_wait().unwrap().is_some());
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(done, "still running after {secs} s: {}", text(&out.stderr));
    out
}

#[test]
fn a_consumer_follows_live_on_one_instance_while_the_camera_uploads_to_another() {
    let w = World::new();
    let (_s3, a, b) = two_ingests(&w);
    // The camera is known (its certificate stored) before anyone follows.
    w.record("cam1", &b, 30);
    let watcher = follow(&w, &a, &["--out", "live.mkv"]);
    let player = follow(&w, &a, &["--play", "--sink", "fakesink sync=false"]);
    // Both connect (even on a loaded machine), then get a moment for their
    // first long poll; then the camera records 3 more.
    assert!(wait_until(30, || a
        .log_text()
        .matches("peer=consumer alice")
        .count()
        >= 2));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let cfg = w.path().join("cam1.toml");
    w.write_camera_config("cam1", &b.url(), 90, 1000);
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    for child in [watcher, player] {
        let out = finish(child, 60);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        // The newest fragment at the start (0), then 1 and 2 live; the
        // restart the camera declared is not a gap in sequence numbers.
        assert!(err.contains("fragment 0: 30 frames"), "{err}");
        assert!(err.contains("fragment 2: 30 frames"), "{err}");
        assert!(err.contains("followed 3 fragments"), "{err}");
        assert!(!err.contains("NOT declared"), "{err}");
    }
    assert_eq!(gst_count_frames(&w.path().join("live.mkv")).0, 90);
}

#[test]
fn check_probes_the_bucket_and_names_what_is_wrong() {
    let w = World::new();
    let s3 = S3Server::start(&w.path().join("s3"), BUCKET);
    let good = s3.storage_config(BUCKET, &w.path().join("s3.secret"));
    std::fs::write(w.path().join("good.toml"), &good).unwrap();
    let ca = ca_url(w.path());
    let out = run_ok(
        "sealcam-ingest",
        &[
            "check",
            "--config",
            "good.toml",
            "--pki",
            "pki",
            "--ca-url",
            &ca,
        ],
        w.path(),
    );
    assert!(text(&out.stdout).contains("storage (S3 bucket fleet at http://127.0.0.1:"));

    std::fs::write(
        w.path().join("bad.toml"),
        good.replace(sealcam_system_tests::s3::ACCESS_KEY, "someone-else"),
    )
    .unwrap();
    let out = run(
        "sealcam-ingest",
        &[
            "check", "--config", "bad.toml", "--pki", "pki", "--ca-url", &ca,
        ],
        w.path(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("S3 bucket fleet") && err.contains("probe/"),
        "{err}"
    );
}
