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

/// The thief with the SD card: deletes the camera's record of the newest
/// set it accepted and puts an older set (genuinely signed by the owner)
/// back. Where the device key is in a TPM, the floor is kept there too,
/// and the older set is still refused.
#[test]
fn a_wiped_disk_cannot_roll_back_the_set_a_tpm_camera_accepted() {
    use sealcam_system_tests::swtpm::Swtpm;
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let ingest = w.start_ingest();
    let cfg = w.tpm_camera("cam1", &ingest.url(), 30, 1000, &tpm.tcti());
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        "public_keys = [\"alice.pub\"]",
        "set = \"recipients.rset\"\nowner_public_key = \"owner.pub\"",
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    sign(&w, "owner.key", 2, &["alice.pub"], "recipients.rset");
    run_ok("sealcamd", &["run", "--config", &cfg_s], w.path());

    // The disk's record of version 2, found and deleted.
    let records: Vec<_> = stored_object_files(w.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "recipients.version"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    std::fs::remove_file(&records[0]).unwrap();
    sign(&w, "owner.key", 1, &["alice.pub"], "recipients.rset");
    let out = run("sealcamd", &["run", "--config", &cfg_s], w.path());
    assert!(!out.status.success(), "the older set was taken");
    let err = text(&out.stderr);
    assert!(
        err.contains("older than version 2 this camera's TPM holds as accepted"),
        "{err}"
    );

    // The owner's newer set is taken, and raises the floor.
    sign(&w, "owner.key", 3, &["alice.pub"], "recipients.rset");
    run_ok("sealcamd", &["run", "--config", &cfg_s], w.path());
    std::fs::remove_file(&records[0]).unwrap();
    sign(&w, "owner.key", 2, &["alice.pub"], "recipients.rset");
    let out = run("sealcamd", &["run", "--config", &cfg_s], w.path());
    assert!(
        text(&out.stderr).contains("older than version 3 this camera's TPM"),
        "{}",
        text(&out.stderr)
    );
}
