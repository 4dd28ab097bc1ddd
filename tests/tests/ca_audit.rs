//! The CA's own audit log: every PKI operation, whether the CA service or
//! an operator command run on the CA's directory did it, leaves a signed,
//! chained record; an edited or removed record fails verification.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use sealcam_system_tests::*;

fn ca_audit(w: &World, what: &str) -> std::process::Output {
    run("sealcam-ca", &["audit", what, "--dir", "ca"], w.path())
}

#[test]
fn every_pki_operation_leaves_a_signed_record_and_edits_are_found() {
    let w = World::new();
    // Short CRLs, so that the service refreshes one during the test.
    w.restart_ca_with(&["--crl-lifetime", "4s"]);
    let ingest = w.start_ingest();

    // A token, used by an honest camera (the service issues).
    let token = w.device_add("cam1", "1h");
    let cfg = w.write_camera_config("cam1", &ingest.url(), 10, 1000);
    let out = enroll(
        &w,
        &cfg,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A camera without a token, approved by the operator.
    let cam2 = w.write_camera_config("cam2", &ingest.url(), 10, 1000);
    let cam2_s = cam2.to_str().unwrap().to_owned();
    let waiting = Command::new(bin("sealcamd"))
        .args([
            "provision",
            "--config",
            &cam2_s,
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
        listed.starts_with("cam2\t")
    }));
    let fingerprint = listed.trim().split('\t').nth(1).unwrap().to_owned();
    run_ok(
        "sealcam-ca",
        &[
            "device",
            "approve",
            "cam2",
            "--dir",
            "ca",
            "--fingerprint",
            &fingerprint,
        ],
        w.path(),
    );
    assert!(waiting.wait_with_output().unwrap().status.success());

    // Consumers: issued, renewed, revoked; a device revoked.
    w.consumer("bob", &["cam1/front"]);
    run_ok(
        "sealcam-ca",
        &[
            "consumer",
            "renew",
            "--dir",
            "ca",
            "--name",
            "bob",
            "--out-dir",
            "consumer",
        ],
        w.path(),
    );
    w.revoke("consumer", "bob");
    w.revoke("device", "cam2");

    // The service re-signs its 4 s CRL within a few seconds.
    let show = || text(&ca_audit(&w, "show").stdout);
    assert!(wait_until(10, || show()
        .lines()
        .any(|l| l.contains("ca-service") && l.contains(" crl "))));

    let out = ca_audit(&w, "verify");
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains(": ok"), "{report}");
    let shown = show();
    for (actor, action, target) in [
        ("operator", "init", "-"),
        ("operator", "ingest-issue", "ingest"),
        ("operator", "consumer-issue", "alice"),
        ("operator", "device-add", "cam1"),
        ("ca-service", "device-certificate", "cam1"),
        ("operator", "device-approve", "cam2"),
        ("operator", "device-certificate", "cam2"),
        ("operator", "consumer-issue", "bob"),
        ("operator", "consumer-renew", "bob"),
        ("operator", "consumer-revoke", "bob"),
        ("operator", "device-revoke", "cam2"),
        ("ca-service", "crl", "-"),
    ] {
        assert!(
            shown.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 5 && f[2].starts_with(actor) && f[3] == action && f[4] == target
            }),
            "no {action} of {target} by {actor}:\n{shown}"
        );
    }
    assert!(shown.contains("every stream (--all-streams)"), "{shown}");
    assert!(shown.contains("reads: cam1/front"), "{shown}");

    // Someone with the CA directory's files rewrites one record: found.
    let log = w.path().join("ca/audit");
    let mut records: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    records.sort();
    let victim = records
        .iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("consumer-issue")
        })
        .unwrap()
        .clone();
    let original = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(&victim, original.replace("alice", "mallo")).unwrap();
    let out = ca_audit(&w, "verify");
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("not signed by the CA's audit key"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(&victim, &original).unwrap();

    // Or removes one: a hole.
    std::fs::remove_file(&victim).unwrap();
    let out = ca_audit(&w, "verify");
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("is missing"),
        "{}",
        text(&out.stdout)
    );
}
