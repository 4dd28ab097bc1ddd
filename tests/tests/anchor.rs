//! The anchor is required (issue 23; `../shared/THREATS.md`: a certificate
//! the server hands out is a hint, never the anchor): `verify`, `decrypt`,
//! `follow` and `fetch` refuse to run without the owner's key, say so with
//! one message, and `--trust-server` says what it trusts on every run. The
//! roster comes from the ingest, checked against the owner key and against
//! the newest version seen: the hostile operator plays its part by editing
//! the ingest's storage, as it can.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Output;

use sealcam_system_tests::*;

const NO_ANCHOR: &str =
    "no anchor of provenance: pass the owner's public key with --owner OWNER.pub";
const TRUST_SERVER: &str = "WARNING: --trust-server: provenance is NOT anchored";

fn sealcam(w: &World, args: &[&str]) -> Output {
    run("sealcam", args, w.path())
}

/// `sealcam follow cam1/front` for one fragment, with `extra`.
fn follow(w: &World, ingest: &Ingest, extra: &[&str]) -> Output {
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
    args.extend_from_slice(extra);
    sealcam(w, &args)
}

/// `sealcam roster publish` of `roster` to `ingest`, as the consumer alice.
fn publish(w: &World, ingest: &Ingest, roster: &str) -> Output {
    let server = alice_at(ingest);
    let mut args = vec![
        "roster",
        "publish",
        "--roster",
        roster,
        "--owner",
        "owner.pub",
    ];
    args.extend(server.iter().map(String::as_str));
    sealcam(w, &args)
}

fn assert_refused(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", text(&out.stdout));
    assert!(err.contains(needle), "{err}");
}

/// The ingest's stored versions of the world owner's roster.
fn stored_rosters(ingest: &Ingest) -> Vec<PathBuf> {
    let owners: Vec<PathBuf> = std::fs::read_dir(ingest.data.join("rosters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(owners.len(), 1, "{owners:?}");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&owners[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    versions.sort();
    versions
}

#[test]
fn without_an_anchor_verify_decrypt_follow_and_fetch_refuse_and_say_how() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    w.fetch(&ingest, "cam1", "fetched");

    let out = w.fetch_unanchored(&ingest, "cam1", "unanchored", &[]);
    assert_refused(&out, NO_ANCHOR);
    assert!(!w.path().join("unanchored").exists());
    assert_refused(&sealcam(&w, &["verify", "fetched"]), NO_ANCHOR);
    let out = sealcam(
        &w,
        &["decrypt", "fetched", "--key", "alice.key", "--out", "x.mkv"],
    );
    assert_refused(&out, NO_ANCHOR);
    assert!(!w.path().join("x.mkv").exists());
    assert_refused(&follow(&w, &ingest, &[]), NO_ANCHOR);
    assert!(!w.path().join("live.mkv").exists());
    // The message says the way out, the development door included.
    let err = text(&sealcam(&w, &["verify", "fetched"]).stderr);
    assert!(err.contains("--trust-server"), "{err}");
    // A certificate from the ingest is no anchor even with the fleet CA.
    let out = sealcam(&w, &["verify", "fetched", "--ca", "pki/ca.crt"]);
    assert_refused(&out, NO_ANCHOR);
}

#[test]
fn trust_server_is_printed_on_every_run_and_in_every_report() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);

    let out = w.fetch_unanchored(&ingest, "cam1", "fetched", &["--trust-server"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(TRUST_SERVER));
    assert!(
        text(&out.stdout).contains("anchor:    NONE (--trust-server)"),
        "{}",
        text(&out.stdout)
    );
    assert!(!w.path().join("fetched/roster.sdr").exists());
    for _ in 0..2 {
        let out = sealcam(&w, &["verify", "fetched", "--trust-server"]);
        let report = text(&out.stdout);
        assert!(out.status.success(), "{report}");
        assert!(text(&out.stderr).contains(TRUST_SERVER));
        assert!(
            report.contains("anchor:    NONE (--trust-server)"),
            "{report}"
        );
        assert!(report.contains("NOT anchored"), "{report}");
    }
    let out = sealcam(
        &w,
        &[
            "decrypt",
            "fetched",
            "--key",
            "alice.key",
            "--out",
            "x.mkv",
            "--trust-server",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(TRUST_SERVER));
    let out = follow(&w, &ingest, &["--trust-server"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(TRUST_SERVER));
    // Not both: the owner's key and trust in the server.
    let out = sealcam(
        &w,
        &[
            "verify",
            "fetched",
            "--trust-server",
            "--owner",
            "owner.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"));
}

#[test]
fn fetch_takes_the_roster_from_the_ingest_and_refuses_a_rollback() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    std::fs::copy(w.path().join("roster.sdr"), w.path().join("roster-v1.sdr")).unwrap();

    // Nothing published yet: fetch says how to get one.
    let out = w.fetch_unanchored(&ingest, "cam1", "early", &["--owner", "owner.pub"]);
    assert_refused(&out, "sealcam roster publish");

    let out = publish(&w, &ingest, "roster.sdr");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("roster version 1 of owner"));
    let out = w.fetch_unanchored(&ingest, "cam1", "first", &["--owner", "owner.pub"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains(", roster version 1\n"), "{report}");
    assert!(report.contains("result:    OK"), "{report}");
    assert_eq!(
        std::fs::read(w.path().join("first/roster.sdr")).unwrap(),
        std::fs::read(w.path().join("roster.sdr")).unwrap()
    );
    // verify offline, from the roster fetch saved.
    let out = verify(&w, "first");
    assert!(out.status.success(), "{}", text(&out.stdout));
    // follow, live, takes it from the ingest too.
    let out = follow(&w, &ingest, &["--owner", "owner.pub"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(", roster version 1\n"),
        "{}",
        text(&out.stderr)
    );

    // The owner lists a second camera: version 2, published and seen.
    w.camera("cam2", &ingest.url(), 30, 1000);
    let out = publish(&w, &ingest, "roster.sdr");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = w.fetch_unanchored(&ingest, "cam1", "second", &["--owner", "owner.pub"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(", roster version 2\n"));

    // The ingest keeps version 2: an old copy published again is refused.
    let alice = w.client_with_cert("consumer/alice.crt", "consumer/alice.key");
    use base64::Engine as _;
    let body = serde_json::json!({
        "owner_key": std::fs::read_to_string(w.path().join("owner.pub")).unwrap(),
        "roster": base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(w.path().join("roster-v1.sdr")).unwrap()),
    });
    let resp = alice
        .put(format!("{}/v1/rosters", ingest.url()))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    assert!(resp.text().unwrap().contains("cannot replace it"));
    // So does `roster publish`, before it asks the ingest.
    let out = publish(&w, &ingest, "roster-v1.sdr");
    assert_refused(&out, "rollback");

    // The hostile operator deletes version 2 from its storage, so that
    // the ingest serves version 1 again (which would still list a key
    // revoked in version 2): refused, nothing written.
    let stored = stored_rosters(&ingest);
    assert_eq!(stored.len(), 2, "{stored:?}");
    std::fs::remove_file(&stored[1]).unwrap();
    let out = w.fetch_unanchored(&ingest, "cam1", "rolled", &["--owner", "owner.pub"]);
    assert_refused(&out, "refusing version 1 of the roster signed by owner key");
    assert!(text(&out.stderr).contains("version 2 was seen before"));
    assert!(!w.path().join("rolled").exists());
    // An old copy handed over as a file fares no better, and verify of a
    // directory holding one neither.
    std::fs::copy(
        w.path().join("roster-v1.sdr"),
        w.path().join("second/roster.sdr"),
    )
    .unwrap();
    assert_refused(&verify(&w, "second"), "rollback");

    // The owner cannot build on the old copy either: it would drop cam2.
    let out = sealcam(
        &w,
        &[
            "roster",
            "add",
            "--owner-key",
            "owner.key",
            "--roster",
            "roster-v1.sdr",
            "--device",
            "cam3",
            "--key",
            "cam2/device.crt",
        ],
    );
    assert_refused(&out, "refusing to build on an older copy of the roster");

    // A verifier that has never seen this owner's roster has no pin: the
    // rolled-back ingest would fool its first contact, unless the owner
    // told it the current version.
    std::fs::remove_dir_all(w.path().join(STATE_DIR)).unwrap();
    let out = w.fetch_unanchored(
        &ingest,
        "cam1",
        "newcomer",
        &["--owner", "owner.pub", "--min-roster-version", "2"],
    );
    assert_refused(&out, "the owner says version 2 or newer is current");
    assert!(!w.path().join("newcomer").exists());
    let out = sealcam(
        &w,
        &[
            "verify",
            "second",
            "--owner",
            "owner.pub",
            "--min-roster-version",
            "2",
        ],
    );
    assert_refused(&out, "--min-roster-version");
}

#[test]
fn fetch_refuses_a_roster_signed_by_another_key() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    let out = publish(&w, &ingest, "roster.sdr");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The operator signs a roster of its own, listing a key of its own for
    // cam1, at a higher version, and puts it where the owner's is.
    run_ok("sealcam", &["owner", "init", "--out", "operator"], w.path());
    std::fs::create_dir_all(w.path().join("op")).unwrap();
    let args = [
        "roster",
        "add",
        "--owner-key",
        "operator.key",
        "--roster",
        "op/roster.sdr",
        "--device",
        "cam1",
        "--key",
        "cam1/device.crt",
        "--new",
    ];
    run_ok("sealcam", &args, w.path());
    let stored = stored_rosters(&ingest);
    let forged = stored[0].with_file_name(format!("{:020}.sdr", 9));
    std::fs::copy(w.path().join("op/roster.sdr"), &forged).unwrap();

    let out = w.fetch_unanchored(&ingest, "cam1", "fetched", &["--owner", "owner.pub"]);
    assert_refused(&out, "must be signed by the owner key");
    assert!(!w.path().join("fetched").exists());
    // The ingest itself refuses to store such a roster under the owner's
    // key: it must be signed by the key sent with it.
    let alice = w.client_with_cert("consumer/alice.crt", "consumer/alice.key");
    use base64::Engine as _;
    let body = serde_json::json!({
        "owner_key": std::fs::read_to_string(w.path().join("owner.pub")).unwrap(),
        "roster": base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(w.path().join("op/roster.sdr")).unwrap()),
    });
    let resp = alice
        .put(format!("{}/v1/rosters", ingest.url()))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().unwrap().contains("not signed by the owner key"));
}

#[test]
fn rekeyed_footage_verifies_through_fetch_and_the_certificate_history_has_both() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.record("cam1", &ingest, 60);
    let shown = text(&run_ok("sealcam", &["roster", "show", "roster.sdr"], w.path()).stdout);
    let old_fp = shown
        .split("key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    // Re-keyed: a new key, certificate and roster record; the old key ends.
    std::fs::remove_file(w.path().join("cam1/device.key")).unwrap();
    w.camera("cam1", &ingest.url(), 60, 1000);
    run_ok(
        "sealcam",
        &[
            "roster",
            "end",
            "--owner-key",
            "owner.key",
            "--roster",
            "roster.sdr",
            "--device",
            "cam1",
            "--key-fingerprint",
            &old_fp,
            "--reason",
            "rotated",
        ],
        w.path(),
    );
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let out = publish(&w, &ingest, "roster.sdr");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = w.fetch_unanchored(&ingest, "cam1", "fetched", &["--owner", "owner.pub"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains(", roster version 3\n"), "{report}");
    assert!(report.contains("verified:  4 fragments"), "{report}");
    // Which key and roster record each fragment was checked against.
    let line = |record: &str| {
        report
            .lines()
            .find(|l| l.contains(&format!("(roster version 3, record {record} from")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("0").contains(&old_fp), "{report}");
    assert!(line("0").ends_with("fragments 0..=1"), "{report}");
    assert!(line("1").ends_with("fragments 2..=3"), "{report}");
    assert!(report.contains("and 2 certificates"), "{report}");

    // Both certificates, each by its serial, each certifying one of the
    // two keys.
    let mut certs: Vec<PathBuf> = std::fs::read_dir(w.path().join("fetched/certs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    certs.sort();
    assert_eq!(certs.len(), 2, "{certs:?}");
    let mut keys = Vec::new();
    for c in &certs {
        let der = sealcam_transport::pem::load_certs(c).unwrap();
        let summary = sealcam_transport::identity::summarize(der[0].as_ref()).unwrap();
        let name = c.file_stem().unwrap().to_str().unwrap().to_owned();
        let serial: String = summary.serial.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(serial, name);
        keys.push(
            sealcam_transport::identity::device_key_from_cert_der(der[0].as_ref())
                .unwrap()
                .fingerprint(),
        );
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&old_fp), "{keys:?}");
}

/// The owner changes the roster and publishes it in one step: `roster
/// add|end --publish URL`, and verifiers that ask the ingest see the new
/// version at once.
#[test]
fn a_roster_change_is_published_in_the_same_command() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    let show = sealcam(
        &w,
        &["roster", "show", "roster.sdr", "--owner", "owner.pub"],
    );
    let shown = text(&show.stdout);
    // The key's (the owner's fingerprint is on the signature line).
    let fingerprint = shown
        .lines()
        .filter(|l| !l.starts_with("signature:"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_hexdigit()))
        .find(|t| t.len() == 64)
        .unwrap_or_else(|| panic!("no key fingerprint in {shown}"))
        .to_owned();
    let url = ingest.url();
    // `roster end` of cam1's key for `reason`, publishing with `publish`.
    let end = |reason: &str, publish: &[&str]| {
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
            &fingerprint,
            "--reason",
            reason,
            "--publish",
            &url,
        ];
        args.extend_from_slice(publish);
        sealcam(&w, &args)
    };
    let out = end(
        "rotated",
        &[
            "--ca",
            "pki/ca.crt",
            "--cert",
            "consumer/alice.crt",
            "--tls-key",
            "consumer/alice.key",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("roster version 2 of owner"),
        "{}",
        text(&out.stdout)
    );
    // A verifier with no roster file of its own gets version 2 from the
    // ingest, and the footage recorded before the end still verifies.
    std::fs::remove_dir_all(w.path().join(STATE_DIR)).unwrap();
    let out = w.fetch_unanchored(&ingest, "cam1", "after", &["--owner", "owner.pub"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains(", roster version 2\n"), "{report}");

    // --publish without the way to reach the ingest is refused before
    // anything is written.
    let out = end("revoked", &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--ca"), "{}", text(&out.stderr));
}
