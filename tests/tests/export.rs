//! Evidence bundles (`sealcam export`, `sealcam verify-bundle`) and the
//! recipient check (`sealcam verify --recipients`): a third party verifies
//! and decrypts exactly the exported range, offline, with only the bundle
//! and their own key; any byte changed in the bundle is named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use sealcam_system_tests::*;

/// `sealcam recipients sign` of `keys` as version `version` into `out`.
fn sign_set(w: &World, version: u64, keys: &[&str], out: &str) {
    let version = version.to_string();
    let mut args = vec![
        "recipients",
        "sign",
        "--owner-key",
        "owner.key",
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

/// A camera `cam1` that seals to the owner-signed set `set` and records
/// `frames` frames in one-second fragments; fetched into `fetched`.
fn record_with_set(w: &World, ingest: &Ingest, set: &str, frames: u32) {
    let cfg = w.camera("cam1", &ingest.url(), frames, 1000);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        "public_keys = [\"alice.pub\"]",
        &format!("set = \"{set}\"\nowner_public_key = \"owner.pub\""),
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    w.fetch(ingest, "cam1", "fetched");
}

/// Copies a directory tree (files, one level of subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A fresh directory holding only `bundle/` and the given files of the
/// world: the third party's desk (its own state directory, no ingest).
fn desk(w: &World, files: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy_dir(&w.path().join("bundle"), &d.path().join("bundle"));
    for f in files {
        std::fs::copy(w.path().join(f), d.path().join(f)).unwrap();
    }
    d
}

fn export(w: &World, extra: &[&str]) {
    let mut args = vec![
        "export",
        "fetched",
        "--out",
        "bundle",
        "--from-seq",
        "1",
        "--to-seq",
        "1",
        "--key",
        "alice.key",
        "--exporter",
        "alice",
        "--recipients",
        "set1.rset",
    ];
    args.extend_from_slice(&ANCHOR);
    args.extend_from_slice(extra);
    run_ok("sealcam", &args, w.path());
}

fn verify_bundle(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["verify-bundle", "bundle", "--owner", "owner.pub"];
    args.extend_from_slice(extra);
    run("sealcam", &args, dir)
}

#[test]
fn a_third_party_verifies_and_decrypts_the_range_and_nothing_else() {
    let w = World::new();
    let ingest = w.start_ingest();
    sign_set(&w, 1, &["alice.pub"], "set1.rset");
    record_with_set(&w, &ingest, "set1.rset", 90);
    run_ok("sealcam", &["keygen", "--out", "court"], w.path());
    export(&w, &["--to-key", "court.pub", "--sign-key", "owner.key"]);
    drop(ingest);

    // The third party: the bundle, their key, the owner's public key.
    let d = desk(&w, &["court.key", "owner.pub"]);
    let out = verify_bundle(d.path(), &["--key", "court.key", "--mkv", "range.mkv"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    for needle in [
        "device cam1 stream front",
        "verified:  1 fragments (sequence 1..=1)",
        "signed by the owner key",
        "by \"alice\"",
        "wrapped to key",
        "\"court\"",
        "each matches its SHA-256",
        "recipients: each fragment is wrapped to exactly the keys",
        "each of the 1 disclosed keys opens exactly its fragment",
        "software key, no TPM evidence",
        "result:    OK",
        "meaning:   camera cam1 recorded these 30 frames",
        "the owner signed who exported it",
    ] {
        assert!(report.contains(needle), "{needle:?} missing:\n{report}");
    }
    let (frames, width, _) = gst_count_frames(&d.path().join("range.mkv"));
    assert_eq!((frames, width), (30, 320));

    // Without the recipient's key the keys are not opened, and no MKV.
    let out = verify_bundle(d.path(), &["--mkv", "none.mkv"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("not opened: they are wrapped to a recipient"),
        "{}",
        text(&out.stdout)
    );

    // Outside the range: the court's key opens no fragment the camera
    // sealed, and a fragment slipped into the bundle has no key in it.
    let out = run(
        "sealcam",
        &[
            "decrypt",
            "fetched",
            "--key",
            "court.key",
            "--out",
            "court.mkv",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a recipient"));
    let outside = "00000000000000000000.scf";
    std::fs::copy(
        w.path().join("fetched").join(outside),
        d.path().join("bundle").join(outside),
    )
    .unwrap();
    let out = verify_bundle(d.path(), &["--key", "court.key", "--mkv", "more.mkv"]);
    let report = text(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "file {outside} (fragment 0): not listed in the bundle manifest"
        )) && report.contains(&format!(
            "file {outside} (fragment 0): the bundle discloses no key for it"
        )),
        "{report}"
    );
    assert!(!d.path().join("more.mkv").exists());

    // A link in the bundle is refused, never followed into the verdict.
    let d = desk(&w, &["court.key", "owner.pub"]);
    std::os::unix::fs::symlink("/etc/hostname", d.path().join("bundle/notes.txt")).unwrap();
    let out = verify_bundle(d.path(), &["--key", "court.key"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("FAILED:    file notes.txt: not a regular file"),
        "{}",
        text(&out.stdout)
    );

    // A listed fragment swapped for a link to an endless file: refused at
    // once, not read (it would exhaust the verifier's memory).
    let d = desk(&w, &["court.key", "owner.pub"]);
    let fragment = std::fs::read_dir(d.path().join("bundle"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "scf"))
        .unwrap();
    std::fs::remove_file(&fragment).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &fragment).unwrap();
    let out = verify_bundle(d.path(), &["--key", "court.key"]);
    let report = text(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("not a regular file"), "{report}");
    assert!(report.contains("result:    FAILED"), "{report}");
}

#[test]
fn plaintext_keys_decrypt_without_any_private_key() {
    let w = World::new();
    let ingest = w.start_ingest();
    sign_set(&w, 1, &["alice.pub"], "set1.rset");
    record_with_set(&w, &ingest, "set1.rset", 60);
    export(&w, &["--plaintext-keys", "range.keys"]);
    drop(ingest);

    let d = desk(&w, &["range.keys", "owner.pub"]);
    // Handed over apart from the bundle: without it, named as missing.
    let out = verify_bundle(d.path(), &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("file keys.sdk: listed in the bundle manifest but missing"),
        "{}",
        text(&out.stdout)
    );
    let out = verify_bundle(
        d.path(),
        &[
            "--keys",
            "range.keys",
            "--mkv",
            "range.mkv",
            "--mp4",
            "range.mp4",
        ],
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(report.contains("in PLAINTEXT"), "{report}");
    assert!(report.contains("NOT signed"), "{report}");
    assert_eq!(gst_count_frames(&d.path().join("range.mkv")).0, 30);
    let mp4 = std::fs::read(d.path().join("range.mp4")).unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");
    // Decrypted video is readable by its owner alone.
    for f in ["range.mkv", "range.mp4"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[test]
fn one_byte_changed_in_any_file_is_detected_and_named() {
    let w = World::new();
    let ingest = w.start_ingest();
    sign_set(&w, 1, &["alice.pub"], "set1.rset");
    record_with_set(&w, &ingest, "set1.rset", 60);
    run_ok("sealcam", &["keygen", "--out", "court"], w.path());
    export(&w, &["--to-key", "court.pub", "--sign-key", "owner.key"]);
    drop(ingest);

    let bundle = w.path().join("bundle");
    let mut files = vec![
        "00000000000000000001.scf".to_owned(),
        "roster.sdr".to_owned(),
        "device.crt".to_owned(),
        "keys.sdk".to_owned(),
        "bundle.sbm".to_owned(),
        "recipients/set1.rset".to_owned(),
    ];
    for sub in ["certs", "heads"] {
        if let Ok(rd) = std::fs::read_dir(bundle.join(sub)) {
            for e in rd {
                files.push(format!(
                    "{sub}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    assert!(files.iter().any(|f| f.starts_with("certs/")));
    for file in &files {
        for at in [0.1, 0.5, 0.9] {
            let d = desk(&w, &["court.key", "owner.pub"]);
            let path = d.path().join("bundle").join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            let i = ((bytes.len() as f64) * at) as usize;
            bytes[i] ^= 0x04;
            std::fs::write(&path, bytes).unwrap();
            let out = verify_bundle(d.path(), &["--key", "court.key"]);
            let report = text(&out.stdout);
            assert!(
                !out.status.success(),
                "{file} flipped at {i} passed:\n{report}"
            );
            assert!(
                report.contains(&format!("FAILED:    file {file}")),
                "{file} flipped at {i} not named:\n{report}\n{}",
                text(&out.stderr)
            );
            if file.ends_with(".scf") {
                assert!(report.contains("(fragment 1)"), "{report}");
            }
            // Only what is wrong is named, and the verdict is given.
            assert!(
                !report.contains("another stream") && !report.contains("does not hold"),
                "{report}"
            );
            assert!(report.contains("result:    FAILED"), "{report}");
        }
    }
}

#[test]
fn verify_recipients_catches_a_key_the_owner_never_listed() {
    let w = World::new();
    let ingest = w.start_ingest();
    let bob = text(&run_ok("sealcam", &["keygen", "--out", "bob"], w.path()).stdout);
    let bob_id = bob
        .lines()
        .find_map(|l| l.strip_prefix("key id:"))
        .unwrap()
        .trim()
        .to_owned();
    // The camera seals to alice and bob; the owner's set of that version,
    // as the verifier holds it, lists alice only.
    sign_set(&w, 1, &["alice.pub", "bob.pub"], "camera.rset");
    record_with_set(&w, &ingest, "camera.rset", 30);
    sign_set(&w, 1, &["alice.pub"], "owner.rset");
    sign_set(&w, 2, &["alice.pub"], "v2.rset");

    let verify = |set: &str| {
        run(
            "sealcam",
            &[
                "verify",
                "fetched",
                "--owner",
                "owner.pub",
                "--recipients",
                set,
            ],
            w.path(),
        )
    };
    let out = verify("camera.rset");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("wrapped to exactly the keys"));

    let out = verify("owner.rset");
    let report = text(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "FAILED:    00000000000000000000.scf: its data key is wrapped to key {bob_id} that the owner's recipient set version 1 does not list"
        )),
        "{report}"
    );

    let out = verify("v2.rset");
    let report = text(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("00000000000000000000.scf: names recipient set version 1"),
        "{report}"
    );

    // A set the owner did not sign is refused outright.
    run_ok("sealcam", &["owner", "init", "--out", "mallory"], w.path());
    run_ok(
        "sealcam",
        &[
            "recipients",
            "sign",
            "--owner-key",
            "mallory.key",
            "--version",
            "1",
            "--add",
            "alice.pub",
            "--add",
            "bob.pub",
            "--out",
            "mallory.rset",
        ],
        w.path(),
    );
    let out = verify("mallory.rset");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("must be signed by the owner key"),
        "{}",
        text(&out.stderr)
    );
}
