//! Owner-signed recipient sets: the camera seals to whom the owner says,
//! takes a newer set at the next fragment, and refuses rollbacks and sets
//! signed by anyone else (the ingest included).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

fn sign(w: &World, owner: &str, version: u64, keys: &[&str], out: &str) {
    let version = version.to_string();
    let mut args = vec![
        "recipients",
        "sign",
        "--owner-key",
        owner,
        "--version",
        &version,
        "--out",
        out,
    ];
    for k in keys {
        args.extend_from_slice(&["--add", k]);
    }
    run_ok("sealcam", &args, w.path());
}

#[test]
fn camera_follows_the_owner_signed_set() {
    let w = World::new();
    let ingest = w.start_ingest();
    // The world's owner key (owner.key, owner.pub) signs the sets too.
    run_ok("sealcam", &["owner", "init", "--out", "mallory"], w.path());
    run_ok("sealcam", &["keygen", "--out", "bob"], w.path());
    sign(&w, "owner.key", 1, &["alice.pub"], "recipients.rset");

    let cfg = w.camera("cam1", &ingest.url(), 30, 1000);
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        "public_keys = [\"alice.pub\"]",
        "set = \"recipients.rset\"\nowner_public_key = \"owner.pub\"",
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    run_ok("sealcamd", &["run", "--config", &cfg_s], w.path());

    // Version 2 adds bob: in force from the next run's first fragment.
    sign(
        &w,
        "owner.key",
        2,
        &["alice.pub", "bob.pub"],
        "recipients.rset",
    );
    let shown = text(
        &run_ok(
            "sealcam",
            &[
                "recipients",
                "show",
                "recipients.rset",
                "--owner",
                "owner.pub",
            ],
            w.path(),
        )
        .stdout,
    );
    assert!(
        shown.contains("signature: valid") && shown.contains("version:   2"),
        "{shown}"
    );
    run_ok("sealcamd", &["run", "--config", &cfg_s], w.path());

    w.fetch(&ingest, "cam1", "fetched");
    let report = text(
        &run_ok(
            "sealcam",
            &["verify", "fetched", "--owner", "owner.pub"],
            w.path(),
        )
        .stdout,
    );
    assert!(report.contains("recipients: set version 1, 2"), "{report}");
    // bob can open the second fragment, not the first.
    let out = run(
        "sealcam",
        &[
            "decrypt",
            "fetched",
            "--key",
            "bob.key",
            "--out",
            "bob.mkv",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("00000000000000000000.scf"),
        "{}",
        text(&out.stderr)
    );
    decrypt_ok(&w, "fetched", "alice.mkv");

    // A rollback to version 1 is refused, even though the owner signed it.
    sign(&w, "owner.key", 1, &["alice.pub"], "recipients.rset");
    let out = run("sealcamd", &["run", "--config", &cfg_s], w.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("older than version 2"),
        "{}",
        text(&out.stderr)
    );

    // A set signed by anyone but the owner is refused.
    sign(
        &w,
        "mallory.key",
        9,
        &["alice.pub", "bob.pub"],
        "recipients.rset",
    );
    let out = run("sealcamd", &["run", "--config", &cfg_s], w.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not signed by the owner key"),
        "{}",
        text(&out.stderr)
    );
}
