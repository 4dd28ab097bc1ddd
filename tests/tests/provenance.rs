//! Provenance anchored in the owner's roster, not in what the ingest says
//! (issue 23; `../shared/THREATS.md`: a hostile ingest must never forge a
//! fragment or a device certificate that a consumer accepts).
//!
//! Each attack is played by real programs: the hostile operator holds the
//! fleet CA (the ingest's PKI directory) and its own storage, and runs a
//! camera of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use sealcam_system_tests::*;

/// The owner's roster lists each device's key from the certificate it was
/// enrolled with (the world's owner key; a key listed already stays).
fn owner_lists(w: &World, devices: &[&str]) {
    for d in devices {
        w.list_in_roster(d);
    }
}

/// `sealcam roster add` to `roster.sdr` (started with `--new` where there
/// is none yet); may fail.
fn roster_add(w: &World, owner_key: &str, device: &str, key: &str) -> std::process::Output {
    let mut args = vec![
        "roster",
        "add",
        "--owner-key",
        owner_key,
        "--roster",
        "roster.sdr",
        "--device",
        device,
        "--key",
        key,
    ];
    if !w.path().join("roster.sdr").exists() {
        args.push("--new");
    }
    run("sealcam", &args, w.path())
}

/// `sealcam follow cam1/front` for the newest fragment, anchored.
fn follow_anchored(w: &World, ingest: &Ingest) -> std::process::Output {
    let server = alice_at(ingest);
    let mut args = vec!["follow", "cam1/front"];
    args.extend(server.iter().map(String::as_str));
    args.extend_from_slice(&[
        "--key",
        "alice.key",
        "--fragments",
        "1",
        "--out",
        "live.mkv",
    ]);
    args.extend_from_slice(&ANCHOR);
    run("sealcam", &args, w.path())
}

/// `sealcam roster end` of cam1's key `fingerprint`; may fail.
fn roster_end(
    w: &World,
    fingerprint: &str,
    reason: &str,
    at: Option<&str>,
) -> std::process::Output {
    let mut args = vec![
        "roster",
        "end",
        "--owner-key",
        "owner.key",
        "--roster",
        "roster.sdr",
        "--device",
        "cam1",
        "--key-fingerprint",
        fingerprint,
        "--reason",
        reason,
    ];
    if let Some(at) = at {
        args.extend_from_slice(&["--at", at]);
    }
    run("sealcam", &args, w.path())
}

fn verify_anchored(w: &World, dir: &str) -> std::process::Output {
    let mut args = vec!["verify", dir];
    args.extend_from_slice(&ANCHOR);
    run("sealcam", &args, w.path())
}

/// A camera config `<name>.toml` that records as device `device_id` with
/// the key and spool under `<name>/`, uploading to `url`.
fn camera_as(w: &World, name: &str, device_id: &str, url: &str) -> std::path::PathBuf {
    let cfg = w.write_camera_config(name, url, 60, 1000);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("device_id = \"{name}\""),
        &format!("device_id = \"{device_id}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Provisions `cfg`'s key (reused if its key file exists) and has the
/// fleet CA issue it a certificate, as the holder of the CA key can.
fn provision_and_issue(w: &World, name: &str, cfg: &Path) {
    w.provision_software_key(cfg);
    w.issue_device_cert(name);
}

fn record_with(w: &World, cfg: &Path) {
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
}

#[test]
fn a_lying_ingest_cannot_pass_off_its_own_camera_as_the_owners() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 60);
    owner_lists(&w, &["cam1"]);
    w.fetch(&ingest, "cam1", "genuine");
    let out = verify_anchored(&w, "genuine");
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains("anchor:    owner key "), "{report}");
    assert!(report.contains(", roster version 1\n"), "{report}");
    assert!(
        report.contains("(roster version 1, record 0 from"),
        "{report}"
    );
    drop(ingest);

    // The operator empties its storage and records as cam1 with a key of
    // its own, certified by the fleet CA it holds, sealed to alice's
    // public key (public, as every consumer key is).
    std::fs::remove_dir_all(w.path().join("ingest-data")).unwrap();
    let ingest = w.start_ingest();
    let forger = camera_as(&w, "forger", "cam1", &ingest.url());
    provision_and_issue(&w, "forger", &forger);
    record_with(&w, &forger);
    // fetch verifies what it fetched: not one fragment does.
    let out = w.fetch_with(&ingest, "cam1", "forged", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no fragment verified"),
        "{}",
        text(&out.stdout)
    );
    // The forgery decrypts for alice when the server is trusted: only
    // provenance anchored in the owner's key can tell.
    run_ok(
        "sealcam",
        &[
            "decrypt",
            "forged",
            "--key",
            "alice.key",
            "--out",
            "forged-unanchored.mkv",
            "--trust-server",
        ],
        w.path(),
    );

    let out = verify_anchored(&w, "forged");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("FAILED:"), "{report}");
    assert!(report.contains("does not verify"), "{report}");
    assert!(report.contains("no fragment verified"), "{report}");

    let mut args = vec![
        "decrypt",
        "forged",
        "--key",
        "alice.key",
        "--out",
        "forged.mkv",
    ];
    args.extend_from_slice(&ANCHOR);
    let out = run("sealcam", &args, w.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("refusing to decrypt: verification failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(!w.path().join("forged.mkv").exists());

    // Live, the same: follow stops at the first forged fragment.
    let out = follow_anchored(&w, &ingest);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("fails verification: manifest signature does not verify"),
        "{err}"
    );
}

#[test]
fn a_camera_of_the_fleet_cannot_sign_for_another_device() {
    let w = World::new();
    let ingest = w.start_ingest();
    // cam2 is genuine and in the roster; cam1 too.
    let cam2 = w.camera("cam2", &ingest.url(), 60, 1000);
    w.camera("cam1", &ingest.url(), 60, 1000);
    owner_lists(&w, &["cam1", "cam2"]);
    // cam2's key, in a camera that names itself cam1, with a certificate
    // for cam1 from the CA (the operator can mint it; the ingest then
    // stores what it signs as cam1's).
    let thief = camera_as(&w, "thief", "cam1", &ingest.url());
    std::fs::create_dir_all(w.path().join("thief")).unwrap();
    std::fs::copy(
        w.path().join("cam2/device.key"),
        w.path().join("thief/device.key"),
    )
    .unwrap();
    provision_and_issue(&w, "thief", &thief);
    record_with(&w, &thief);
    let out = w.fetch_with(&ingest, "cam1", "fetched", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let out = verify_anchored(&w, "fetched");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("checked with every key roster version 2 lists for device cam1"),
        "{report}"
    );
    // cam2 itself is still trusted for its own stream.
    record_with(&w, &cam2);
    w.fetch(&ingest, "cam2", "cam2");
    let out = verify_anchored(&w, "cam2");
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn footage_from_before_a_rekey_verifies_under_the_old_key() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.record("cam1", &ingest, 60);
    owner_lists(&w, &["cam1"]);
    let old = text(&run_ok("sealcam", &["roster", "show", "roster.sdr"], w.path()).stdout);
    let old_fp = old
        .split("key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The camera is re-keyed (a new key file; a TPM would use --force);
    // the owner ends the old key and lists the new one.
    std::fs::remove_file(w.path().join("cam1/device.key")).unwrap();
    provision_and_issue(&w, "cam1", &cfg);
    let out = roster_end(&w, &old_fp[..12], "rotated", None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    owner_lists(&w, &["cam1"]);
    let between = std::time::Instant::now();
    record_with(&w, &cfg);
    w.fetch(&ingest, "cam1", "fetched");
    let out = verify_anchored(&w, "fetched");
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains(", roster version 3\n"), "{report}");
    assert!(report.contains("record 0 from"), "{report}");
    assert!(report.contains("record 1 from"), "{report}");
    assert!(report.contains("verified:  4 fragments"), "{report}");

    // The new key is revoked from before the second recording (stolen
    // then, say): its fragments no longer count, the old key's still do,
    // and verify says why.
    let new_fp = text(&run_ok("sealcam", &["roster", "show", "roster.sdr"], w.path()).stdout)
        .lines()
        .filter_map(|l| l.split("key ").nth(1))
        .filter_map(|s| s.split_whitespace().next())
        .find(|fp| *fp != old_fp)
        .unwrap()
        .to_owned();
    let ago = format!("{}s", between.elapsed().as_secs() + 1);
    let out = roster_end(&w, &new_fp, "revoked", Some(&ago));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = verify_anchored(&w, "fetched");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("verified:  2 fragments (sequence 0..=1)"),
        "{report}"
    );
    assert!(report.contains("revoked at"), "{report}");
    // A revocation only moves earlier: it cannot be lifted by ending the
    // key again later.
    let out = roster_end(&w, &new_fp, "rotated", None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("an end can only move earlier"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_roster_not_signed_by_the_owner_is_refused() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    owner_lists(&w, &["cam1"]);
    w.fetch(&ingest, "cam1", "fetched");
    // The operator signs a roster of its own with a key of its own.
    run_ok("sealcam", &["owner", "init", "--out", "operator"], w.path());
    std::fs::remove_file(w.path().join("roster.sdr")).unwrap();
    let out = roster_add(&w, "operator.key", "cam1", "cam1/device.crt");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = verify_anchored(&w, "fetched");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("roster.sdr must be signed by the owner key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn routine_roster_changes_cannot_undo_a_revocation() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.camera("cam1", &ingest.url(), 30, 1000);
    owner_lists(&w, &["cam1"]);
    // The same key under a second name would stay valid there after cam1's
    // record is revoked: refused.
    let der = sealcam_transport::pem::load_certs(&w.path().join("cam1/device.crt")).unwrap();
    let key = sealcam_transport::identity::device_key_from_cert_der(der[0].as_ref()).unwrap();
    let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(&key.0, Default::default()).unwrap();
    std::fs::write(w.path().join("cam1.pub.pem"), pem).unwrap();
    let out = roster_add(&w, "owner.key", "cam9", "cam1.pub.pem");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("a key speaks for one device only"),
        "{}",
        text(&out.stderr)
    );
    let shown = text(&run_ok("sealcam", &["roster", "show", "roster.sdr"], w.path()).stdout);
    let fp = shown
        .split("key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    let out = roster_end(&w, &fp, "revoked", Some("1m"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Renamed to a rotation, even earlier: refused; the record stays revoked.
    let out = roster_end(&w, &fp, "rotated", Some("2m"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("a revocation stays a revocation"),
        "{}",
        text(&out.stderr)
    );
    // A mistyped roster path is not a fresh roster without revocations.
    let out = run(
        "sealcam",
        &[
            "roster",
            "add",
            "--owner-key",
            "owner.key",
            "--roster",
            "rooster.sdr",
            "--device",
            "cam1",
            "--key",
            "cam1/device.crt",
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pass --new to start one"),
        "{}",
        text(&out.stderr)
    );
    assert!(!w.path().join("rooster.sdr").exists());
    let shown = text(&run_ok("sealcam", &["roster", "show", "roster.sdr"], w.path()).stdout);
    assert!(shown.contains("REVOKED from"), "{shown}");
    assert!(shown.contains("version:   2"), "{shown}");
}
