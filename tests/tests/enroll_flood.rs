//! An anonymous enrollment flood: requests without a token are capped and
//! rate-limited, live outside the CA's directory, never replace another
//! device's request, and an EK certificate that does not parse is refused
//! and never recorded. An honest camera enrolls with its token meanwhile,
//! and one waiting for approval is approved afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sealcam_system_tests::*;

/// Every file under `root` with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(p.strip_prefix(root).unwrap().to_owned(), bytes);
            }
        }
    }
    out
}

fn pending(w: &World) -> String {
    text(
        &run_ok(
            "sealcam-ca",
            &["device", "pending", "--dir", "ca"],
            w.path(),
        )
        .stdout,
    )
}

#[test]
fn an_anonymous_enrollment_flood_is_capped_and_writes_nothing_in_the_ca() {
    let w = World::new();
    w.restart_ca_with(&["--max-pending", "8", "--pending-per-minute", "6"]);
    let ingest = w.start_ingest();
    let token = w.device_add("cam1", "1h");

    // cam9 asks for approval before the flood (and keeps asking).
    let cam9 = w.write_camera_config("cam9", &ingest.url(), 10, 1000);
    let cam9_s = cam9.to_str().unwrap().to_owned();
    let waiting = Command::new(bin("sealcamd"))
        .args([
            "provision",
            "--config",
            &cam9_s,
            "--insecure-software-key",
            "--enroll",
        ])
        .arg(ingest.enroll_url())
        .args(["--wait-s", "120"])
        .current_dir(w.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(20, || pending(&w).starts_with("cam9\t")));
    let cam9_request = std::fs::read_dir(w.path().join("ca.pending"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let cam9_bytes = std::fs::read(&cam9_request).unwrap();
    let before = tree(&w.path().join("ca"));

    // The flood, as a process of its own: 200 requests, half with an EK
    // certificate that does not parse, naming cam9 and others.
    let flood = Command::new(bin("enroll-flood"))
        .args([
            &ingest.enroll_url(),
            "pki/ca.crt",
            "200",
            "cam9",
            "cam1",
            "x1",
            "x2",
        ])
        .current_dir(w.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile an honest camera enrolls with its token.
    let cfg = w.write_camera_config("cam1", &ingest.url(), 10, 1000);
    let cfg_s = cfg.to_str().unwrap();
    let out = enroll(
        &w,
        cfg_s,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let flood = flood.wait_with_output().unwrap();
    assert!(flood.status.success());
    let report = text(&flood.stdout);
    let answers: BTreeMap<u16, usize> = report
        .lines()
        .filter(|l| !l.starts_with("retry-after"))
        .map(|l| {
            let (s, n) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    // Every unparseable EK certificate refused; of the rest, at most the
    // burst (6) filed, the others refused with 429.
    assert_eq!(answers.get(&400), Some(&100), "{answers:?}");
    let filed = answers.get(&202).copied().unwrap_or(0);
    assert!((1..=6).contains(&filed), "{answers:?}");
    assert_eq!(
        answers.get(&429).copied().unwrap_or(0),
        100 - filed,
        "{answers:?}"
    );
    // Each refusal says when to ask again.
    assert!(
        report.contains(&format!("retry-after {}\n", 100 - filed)),
        "{report}"
    );

    // Capped: cam9's, and the flood's few; cam9's request is untouched.
    let waiting_now = std::fs::read_dir(w.path().join("ca.pending"))
        .unwrap()
        .count();
    assert!(waiting_now <= 8, "{waiting_now}");
    assert_eq!(std::fs::read(&cam9_request).unwrap(), cam9_bytes);

    // The CA's directory: only the honest enrollment changed it (its token
    // used up, its certificate recorded, and that in the CA's audit log);
    // no pending request, no EK.
    let after = tree(&w.path().join("ca"));
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    let mut logged = 0;
    for p in &changed {
        let s = p.to_string_lossy();
        if s.starts_with("audit/") && s.ends_with(".json") {
            let record = text(&after[*p]);
            assert!(
                record.contains("\"device-certificate\"") && record.contains("\"cam1\""),
                "{record}"
            );
            logged += 1;
            continue;
        }
        assert!(
            s == "enroll/cam1.token" || s.starts_with("issued/device/cam1/"),
            "the flood changed {s}"
        );
    }
    assert_eq!(logged, 1);
    assert!(!w.path().join("ca/pending").exists());
    assert!(!w.path().join("ca/ek").exists());
    run_ok("sealcamd", &["check", "--config", cfg_s], w.path());

    // The operator approves cam9 by the fingerprint its camera shows.
    let id = text(&run_ok("sealcamd", &["identity", "--config", &cam9_s], w.path()).stdout);
    let listed = pending(&w);
    let fingerprint = listed
        .lines()
        .filter(|l| l.starts_with("cam9\t"))
        .map(|l| l.split('\t').nth(1).unwrap())
        .find(|f| id.contains(f))
        .unwrap_or_else(|| panic!("{listed}\n{id}"))
        .to_owned();
    run_ok(
        "sealcam-ca",
        &[
            "device",
            "approve",
            "cam9",
            "--dir",
            "ca",
            "--fingerprint",
            &fingerprint,
        ],
        w.path(),
    );
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}
