//! Signed update delivery (issue 26): the operator publishes a RAUC bundle
//! on the ingest, a camera with `[update]` fetches what is offered for its
//! compatible over its mutual-TLS identity, resumes an interrupted
//! download, refuses bytes that do not hash to the offer, and the root
//! installer step refuses a bundle that is not newer. Real programs: the
//! ingest, sealcamd, `rauc bundle` / `rauc info` with a throwaway release
//! certificate from openssl.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sealcam_system_tests::{fragment_files, run, run_ok, text, wait_until, Ingest, World};

const COMPATIBLE: &str = "sealcam-test";

/// A throwaway release key and certificate (`name.key`, `name.crt`).
fn release_cert(w: &World, name: &str) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ])
        .current_dir(w.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
}

/// A real RAUC bundle `<version>.raucb` for `compatible`, signed by `key`.
fn bundle(w: &World, key: &str, compatible: &str, version: &str) -> PathBuf {
    let dir = w.path().join(format!("content-{key}-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Random, so that squashfs does not shrink it below RAUC's minimum.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let image: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(dir.join("rootfs.img"), image).unwrap();
    std::fs::write(
        dir.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .unwrap();
    let out_path = w.path().join(format!("{key}-{version}.raucb"));
    let out = Command::new("rauc")
        .args([
            "bundle",
            "--cert",
            &format!("{key}.crt"),
            "--key",
            &format!("{key}.key"),
        ])
        .arg(&dir)
        .arg(&out_path)
        .current_dir(w.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "rauc bundle: {}", text(&out.stderr));
    out_path
}

/// `rauc info` with the release keyring: the bundle is intact and signed.
fn rauc_verifies(w: &World, bundle: &Path, keyring: &str) -> bool {
    Command::new("rauc")
        .args(["info", "--keyring", keyring])
        .arg(bundle)
        .current_dir(w.path())
        .output()
        .unwrap()
        .status
        .success()
}

/// `sealcam-ingest update publish`; returns the bundle's sha256.
fn publish(w: &World, ingest: &Ingest, bundle: &Path, version: &str) -> String {
    let data = ingest.data.to_str().unwrap().to_owned();
    let out = run_ok(
        "sealcam-ingest",
        &[
            "update",
            "publish",
            bundle.to_str().unwrap(),
            "--compatible",
            COMPATIBLE,
            "--version",
            version,
            "--data",
            &data,
            "--pki",
            "pki",
            "--operator",
            "ops",
        ],
        w.path(),
    );
    let stdout = text(&out.stdout);
    let sha = stdout
        .split("(sha256 ")
        .nth(1)
        .and_then(|s| s.get(..64))
        .unwrap_or_else(|| panic!("no sha256 in {stdout:?}"));
    sha.to_owned()
}

/// A camera `cam1` with `[update]` pointed at the test's files, running
/// release `installed`.
fn camera(w: &World, ingest: &Ingest, installed: &str) -> PathBuf {
    let cfg = w.camera("cam1", &ingest.url(), 30, 1000);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[update]\ncompatible = \"{COMPATIBLE}\"\nversion_file = \"cam1/release\"\ndir = \"cam1/update\"\ninstall_dir = \"cam1/install\"\nsystem_conf = \"system.conf\"\nack_file = \"cam1/acknowledged\"\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(w.path().join("cam1/release"), format!("{installed}\n")).unwrap();
    // The camera's RAUC configuration, with the release keyring.
    std::fs::write(
        w.path().join("system.conf"),
        format!(
            "[system]\ncompatible={COMPATIBLE}\nbootloader=noop\n\n[keyring]\npath={}\n",
            w.path().join("release.crt").display()
        ),
    )
    .unwrap();
    cfg
}

fn check(w: &World, cfg: &Path) -> std::process::Output {
    run(
        "sealcamd",
        &["update", "check", "--config", cfg.to_str().unwrap()],
        w.path(),
    )
}

fn install(w: &World, cfg: &Path) -> std::process::Output {
    run(
        "sealcamd",
        &["update", "install", "--config", cfg.to_str().unwrap()],
        w.path(),
    )
}

fn outcome(w: &World) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(w.path().join("cam1/update/outcome.json")).unwrap())
        .unwrap()
}

#[test]
fn a_published_bundle_is_fetched_verified_and_handed_to_the_installer() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    let sha = publish(&w, &ingest, &b, "1.2.0");
    let cfg = camera(&w, &ingest, "1.1.0");

    let out = check(&w, &cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("version 1.2.0 downloaded and verified"),
        "{}",
        text(&out.stdout)
    );
    let ready = w.path().join("cam1/update/ready.raucb");
    assert_eq!(std::fs::read(&ready).unwrap(), std::fs::read(&b).unwrap());
    assert!(
        rauc_verifies(&w, &ready, "release.crt"),
        "the delivered bundle no longer verifies"
    );
    // While it waits for the installer, nothing more is fetched.
    assert!(text(&check(&w, &cfg).stdout).contains("waits"));

    // The operator's publish is in the audit trail.
    let data = ingest.data.to_str().unwrap().to_owned();
    let audit = run_ok(
        "sealcam-ingest",
        &[
            "audit",
            "show",
            "--action",
            "update-publish",
            "--data",
            &data,
            "--pki",
            "pki",
        ],
        w.path(),
    );
    assert!(
        text(&audit.stdout).contains(&format!("sha256 {sha}")),
        "{}",
        text(&audit.stdout)
    );
    assert!(text(&audit.stdout).contains("operator:ops"));

    // The installer step checks signature, compatible and version, then
    // asks RAUC to install: this machine has no slots, so RAUC fails, and
    // the outcome says so. The bundle is consumed either way.
    let out = install(&w, &cfg);
    assert!(!out.status.success());
    assert!(!ready.exists());
    let o = outcome(&w);
    assert_eq!(o["version"], "1.2.0");
    assert_eq!(o["result"], "failed", "{o}");

    // The next check reports the installed version and that outcome; the
    // operator sees both in the audit trail.
    assert!(check(&w, &cfg).status.success());
    let reported = wait_until(15, || {
        let out = run(
            "sealcam-ingest",
            &[
                "audit",
                "show",
                "--action",
                "update-check",
                "--data",
                &data,
                "--pki",
                "pki",
            ],
            w.path(),
        );
        text(&out.stdout).contains("installed 1.1.0; last update: failed 1.2.0")
    });
    assert!(reported, "the device's report is not in the audit trail");
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    let sha = publish(&w, &ingest, &b, "1.2.0");
    let cfg = camera(&w, &ingest, "1.1.0");
    let bytes = std::fs::read(&b).unwrap();
    std::fs::create_dir_all(w.path().join("cam1/update")).unwrap();
    // What an earlier try left: the first part of the right bytes.
    std::fs::write(
        w.path().join(format!("cam1/update/{sha}.part")),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    let out = check(&w, &cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("resuming the bundle download"),
        "{}",
        text(&out.stderr)
    );
    let ready = w.path().join("cam1/update/ready.raucb");
    assert_eq!(std::fs::read(&ready).unwrap(), bytes);

    // A part that is wrong is not trusted either: resumed from it, the
    // whole fails its hash and is deleted, and the next check starts over.
    std::fs::remove_file(&ready).unwrap();
    let mut wrong = bytes[..bytes.len() / 3].to_vec();
    wrong[10] ^= 0xff;
    std::fs::write(w.path().join(format!("cam1/update/{sha}.part")), &wrong).unwrap();
    let out = check(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("SHA-256"),
        "{}",
        text(&out.stderr)
    );
    assert!(!ready.exists());
    assert!(check(&w, &cfg).status.success());
    assert_eq!(std::fs::read(&ready).unwrap(), bytes);
}

#[test]
fn bytes_the_server_altered_are_refused_and_never_marked_ready() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    let sha = publish(&w, &ingest, &b, "1.2.0");
    let cfg = camera(&w, &ingest, "1.1.0");
    // The store's copy, changed behind the offer's back.
    let stored = ingest.data.join(format!("bundles/{sha}.raucb"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::remove_file(&stored).unwrap();
    std::fs::write(&stored, &bytes).unwrap();
    let out = check(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("SHA-256"),
        "{}",
        text(&out.stderr)
    );
    let dir = w.path().join("cam1/update");
    assert!(!dir.join("ready.raucb").exists());
    assert!(
        !dir.join(format!("{sha}.part")).exists(),
        "the bad bytes were kept"
    );
}

/// sealcamd's user owns the update directory's parent (/var/lib/sealcam)
/// and, compromised, puts a link to a directory of root's in its place,
/// with a bundle there: the installer, root, neither removes nor writes
/// anything through the link.
#[test]
fn the_installer_follows_no_link_put_in_place_of_the_update_directory() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let signed = bundle(&w, "release", COMPATIBLE, "3.0.0");
    let cfg = camera(&w, &ingest, "2.0.0");
    let roots = w.path().join("etc");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::copy(&signed, roots.join("ready.raucb")).unwrap();
    // As root, the test gives the directory away; as anyone else it is
    // already not root's.
    let _ = std::os::unix::fs::chown(w.path().join("cam1"), Some(990), Some(990));
    let _ = std::fs::remove_dir_all(w.path().join("cam1/update"));
    std::os::unix::fs::symlink(&roots, w.path().join("cam1/update")).unwrap();

    let out = install(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not a directory (a link there is not followed"),
        "{}",
        text(&out.stderr)
    );
    assert!(roots.join("ready.raucb").exists());
    assert!(!roots.join("outcome.json").exists());
    assert!(!w.path().join("cam1/install/bundle.raucb").exists());
}

#[test]
fn nothing_older_is_offered_and_the_installer_refuses_a_downgrade() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let old = bundle(&w, "release", COMPATIBLE, "1.2.0");
    publish(&w, &ingest, &old, "1.2.0");
    let cfg = camera(&w, &ingest, "2.0.0");
    let out = check(&w, &cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no newer update"),
        "{}",
        text(&out.stdout)
    );
    assert!(!w.path().join("cam1/update/ready.raucb").exists());

    // An old bundle, validly signed, put before the installer anyway (by a
    // hostile server's or a compromised sealcamd's doing): RAUC would
    // install it; the installer refuses it by its verified version.
    std::fs::create_dir_all(w.path().join("cam1/update")).unwrap();
    std::fs::copy(&old, w.path().join("cam1/update/ready.raucb")).unwrap();
    let out = install(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("older than the running release 2.0.0"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(outcome(&w)["result"], "refused");
    assert!(!w.path().join("cam1/update/ready.raucb").exists());

    // A bundle signed by another key is refused by RAUC's signature check.
    release_cert(&w, "stranger");
    let foreign = bundle(&w, "stranger", COMPATIBLE, "3.0.0");
    assert!(!rauc_verifies(&w, &foreign, "release.crt"));
    std::fs::copy(&foreign, w.path().join("cam1/update/ready.raucb")).unwrap();
    let out = install(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("RAUC does not accept the bundle"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(outcome(&w)["result"], "refused");

    // Another compatible, signed by the release key: refused too.
    let other = bundle(&w, "release", "sealcam-other", "3.0.0");
    std::fs::copy(&other, w.path().join("cam1/update/ready.raucb")).unwrap();
    let out = install(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("sealcam-other"),
        "{}",
        text(&out.stderr)
    );
}

/// A release given up after a trial without an acknowledged fragment (a
/// network outage then looks the same) waits, and is neither fetched nor
/// installed before its time; then it is tried again.
#[test]
fn a_release_unproven_on_trial_waits_and_is_then_tried_again() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let cfg = camera(&w, &ingest, "1.1.0");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    let sha = publish(&w, &ingest, &b, "1.2.0");
    assert!(check(&w, &cfg).status.success());
    // The health check gave 1.2.0 up on its first trial, an hour from
    // its next.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    std::fs::create_dir_all(w.path().join("cam1/install")).unwrap();
    let waiting = w.path().join("cam1/install/waiting.json");
    std::fs::write(
        &waiting,
        format!(r#"{{"1.2.0":{{"trials":1,"retry_after_unix":{later}}}}}"#),
    )
    .unwrap();
    let out = install(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("it is tried again after"),
        "{}",
        text(&out.stderr)
    );
    let o = outcome(&w);
    assert_eq!(o["final"], false, "{o}");
    assert_eq!(o["retry_after_unix"], later, "{o}");
    assert_eq!(o["sha256"], sha, "{o}");
    // Offered again before then: declined without a download.
    let out = check(&w, &cfg);
    assert!(
        text(&out.stdout).contains("not fetched before"),
        "{}",
        text(&out.stdout)
    );
    assert!(!w.path().join("cam1/update/ready.raucb").exists());

    // Its time has come: fetched, and past the installer's list (this
    // test has no RAUC service, which is asked next).
    std::fs::write(&waiting, r#"{"1.2.0":{"trials":1,"retry_after_unix":1}}"#).unwrap();
    let mut o = outcome(&w);
    o["retry_after_unix"] = serde_json::json!(1);
    std::fs::write(w.path().join("cam1/update/outcome.json"), o.to_string()).unwrap();
    let out = check(&w, &cfg);
    assert!(
        text(&out.stdout).contains("version 1.2.0 downloaded"),
        "{}",
        text(&out.stdout)
    );
    let out = install(&w, &cfg);
    assert!(
        text(&out.stderr).contains("cannot ask RAUC which slot is booted"),
        "{}",
        text(&out.stderr)
    );
}

/// The download and the spool share the data partition, and the bundle's
/// size is the server's to choose: a bundle is not fetched when, after it,
/// the spool could no longer grow to its bound.
#[test]
fn a_bundle_is_not_fetched_into_the_spools_room() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let cfg = camera(&w, &ingest, "1.1.0");
    // A spool allowed a pebibyte: no disk here leaves it that much.
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text_cfg.replace(
            "dir = \"cam1/spool\"\n",
            "dir = \"cam1/spool\"\nmax_bytes = 1125899906842624\n",
        ),
    )
    .unwrap();
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    publish(&w, &ingest, &b, "1.2.0");
    let out = check(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no room for the bundle")
            && text(&out.stderr).contains("the spool may still take"),
        "{}",
        text(&out.stderr)
    );
    let fetched: Vec<_> = std::fs::read_dir(w.path().join("cam1/update"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(fetched.is_empty(), "{fetched:?}");

    // With the spool's bound of the test's default, it is fetched.
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = check(&w, &cfg);
    assert!(
        text(&out.stdout).contains("version 1.2.0 downloaded"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_bundle_refused_for_good_is_not_fetched_again() {
    // A cellular camera must not download, at every check, a bundle its
    // installer will refuse again (here: not newer than what it runs, as
    // a server that offers it anyway would make it).
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let cfg = camera(&w, &ingest, "1.1.0");
    let same = bundle(&w, "release", COMPATIBLE, "1.2.0");
    let sha = publish(&w, &ingest, &same, "1.2.0");
    assert!(check(&w, &cfg).status.success());
    // The camera is updated to 1.2.0 by other means before it installs.
    std::fs::write(w.path().join("cam1/release"), "1.2.0\n").unwrap();
    assert!(!install(&w, &cfg).status.success());
    let o = outcome(&w);
    assert_eq!(o["final"], true, "{o}");
    assert_eq!(o["sha256"], sha, "{o}");
    // The same bundle offered again: the ingest offers only what is newer
    // than the version a camera reports, so the camera reports 1.1.0 again
    // for the offer to be made. It is declined without a download.
    std::fs::write(w.path().join("cam1/release"), "1.1.0\n").unwrap();
    let out = check(&w, &cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("refused for good"),
        "{}",
        text(&out.stdout)
    );
    assert!(!w.path().join("cam1/update/ready.raucb").exists());
    let parts: Vec<_> = std::fs::read_dir(w.path().join("cam1/update"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "a part was fetched: {parts:?}");

    // Another bundle is fetched as ever.
    let next = bundle(&w, "release", COMPATIBLE, "1.3.0");
    publish(&w, &ingest, &next, "1.3.0");
    let out = check(&w, &cfg);
    assert!(
        text(&out.stdout).contains("version 1.3.0 downloaded"),
        "{}",
        text(&out.stdout)
    );

    // It is refused too, and the server goes back to offering the first:
    // the last outcome is about 1.3.0 now, but the first refusal is kept,
    // so a server offering refused bundles in turn has neither fetched.
    std::fs::write(w.path().join("cam1/release"), "1.3.0\n").unwrap();
    assert!(!install(&w, &cfg).status.success());
    assert_eq!(outcome(&w)["version"], "1.3.0");
    run_ok(
        "sealcam-ingest",
        &[
            "update",
            "withdraw",
            "--compatible",
            COMPATIBLE,
            "--version",
            "1.3.0",
            "--data",
            ingest.data.to_str().unwrap(),
            "--pki",
            "pki",
            "--operator",
            "ops",
        ],
        w.path(),
    );
    std::fs::write(w.path().join("cam1/release"), "1.1.0\n").unwrap();
    let out = check(&w, &cfg);
    assert!(
        text(&out.stdout).contains("version 1.2.0 is offered")
            && text(&out.stdout).contains("refused for good"),
        "{}",
        text(&out.stdout)
    );
    assert!(!w.path().join("cam1/update/ready.raucb").exists());
}

#[test]
fn update_routes_are_for_devices_only() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    let sha = publish(&w, &ingest, &b, "1.2.0");
    let alice = w.consumer("bob", &[]);
    for path in [
        format!("/v1/bundles/{sha}"),
        format!("/v1/updates/{COMPATIBLE}"),
    ] {
        let r = alice
            .get(format!("{}{path}", ingest.url()))
            .header("sealcam-installed-version", "1.0")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
}

#[test]
fn a_running_camera_with_updates_on_notes_its_acknowledged_fragments_and_fetches() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    publish(&w, &ingest, &b, "1.2.0");
    let cfg = camera(&w, &ingest, "1.1.0");
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str("enabled = true\n");
    std::fs::write(&cfg, text_cfg).unwrap();
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let ack: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path().join("cam1/acknowledged")).unwrap())
            .unwrap();
    // The kernel's boot id, in the form the note keeps it (systemd's `%b`:
    // no dashes), so that either source compares equal.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(ack["boot_id"], boot.trim().replace('-', ""));
    assert!(ack["acknowledged"].as_u64().unwrap() > 0);
    assert_eq!(
        std::fs::read(w.path().join("cam1/update/ready.raucb")).unwrap(),
        std::fs::read(&b).unwrap()
    );
}

/// The ack note proves a slot on trial, so only fragments sealed in the run
/// count: a new release that cannot record must not prove itself by
/// uploading the backlog an earlier release left in the spool.
#[test]
fn the_backlog_of_an_earlier_run_proves_nothing_to_the_health_check() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let cfg = camera(&w, &ingest, "1.1.0");
    let with = |url: &str, frames: u32| {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace(&ingest.url(), url).replace(DEAD, url);
        let text = regex_replace_frames(&text, frames);
        let text = match text.contains("enabled = true") {
            true => text,
            false => text + "enabled = true\n",
        };
        std::fs::write(&cfg, text).unwrap();
    };
    let ack = w.path().join("cam1/acknowledged");
    let run_camera = || {
        run_ok(
            "sealcamd",
            &["run", "--config", cfg.to_str().unwrap()],
            w.path(),
        );
    };
    // An earlier run records while the ingest is out of reach: a backlog.
    const DEAD: &str = "https://127.0.0.2:1";
    with(DEAD, 90);
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(
        text(&out.stderr).contains("still in the spool"),
        "{}",
        text(&out.stderr)
    );
    assert!(fragment_files(&ingest.data).is_empty());
    // This run records nothing, and uploads the backlog: no note.
    with(&ingest.url(), 0);
    run_camera();
    assert!(
        wait_until(30, || !fragment_files(&ingest.data).is_empty()),
        "the backlog was not uploaded"
    );
    assert!(
        !ack.exists(),
        "the backlog proved a run that recorded nothing: {}",
        std::fs::read_to_string(&ack).unwrap_or_default()
    );
    // A run that records does prove itself.
    with(&ingest.url(), 90);
    run_camera();
    let note: serde_json::Value = serde_json::from_slice(&std::fs::read(&ack).unwrap()).unwrap();
    assert!(note["acknowledged"].as_u64().unwrap() > 0, "{note}");
}

/// `text` (a camera config) recording `frames` frames.
fn regex_replace_frames(text: &str, frames: u32) -> String {
    text.lines()
        .map(|l| match l.trim_start().starts_with("num_buffers =") {
            true => format!("num_buffers = {frames}"),
            false => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `update.url` names another HTTPS server: the camera asks it with plain
/// server-authenticated TLS (the fleet CA here), presenting no
/// certificate. That server (here a front end holding a device's
/// credentials towards the real ingest) may lie; the camera takes nothing
/// older or for another compatible from it.
#[test]
fn another_https_server_may_serve_updates_and_cannot_push_an_older_one() {
    use sealcam_system_tests::lying_ingest::LyingIngest;
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let b = bundle(&w, "release", COMPATIBLE, "1.2.0");
    publish(&w, &ingest, &b, "1.2.0");
    let cfg = camera(&w, &ingest, "1.1.0");
    let server = LyingIngest::start(
        w.path(),
        &ingest.url(),
        "cam1/device.crt",
        "cam1/device.key",
    );
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str(&format!("url = \"{}\"\n", server.url()));
    std::fs::write(&cfg, text_cfg).unwrap();

    // An offer rewritten to an older version, then to another compatible.
    server.alter(|path, body| {
        if path.starts_with("/v1/updates/") {
            String::from_utf8(body)
                .unwrap()
                .replace("1.2.0", "1.0.0")
                .into_bytes()
        } else {
            body
        }
    });
    let out = check(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not newer than the running release 1.1.0"),
        "{}",
        text(&out.stderr)
    );
    server.alter(|path, body| {
        if path.starts_with("/v1/updates/") {
            String::from_utf8(body)
                .unwrap()
                .replace(COMPATIBLE, "sealcam-other")
                .into_bytes()
        } else {
            body
        }
    });
    let out = check(&w, &cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("sealcam-other"),
        "{}",
        text(&out.stderr)
    );
    assert!(!w.path().join("cam1/update/ready.raucb").exists());

    // Honest again: the bundle arrives through it.
    server.alter(|_, body| body);
    let out = check(&w, &cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(w.path().join("cam1/update/ready.raucb")).unwrap(),
        std::fs::read(&b).unwrap()
    );
}

/// The newest published version is offered; withdrawn, the one before it
/// is; `update list` says which is offered; the audit trail has both.
#[test]
fn the_newest_published_version_is_offered_until_withdrawn() {
    let w = World::new();
    let ingest = w.start_ingest();
    release_cert(&w, "release");
    let v9 = bundle(&w, "release", COMPATIBLE, "1.9.0");
    let v10 = bundle(&w, "release", COMPATIBLE, "1.10.0");
    publish(&w, &ingest, &v10, "1.10.0");
    publish(&w, &ingest, &v9, "1.9.0");
    let data = ingest.data.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--data", &data, "--pki", "pki"]);
        run("sealcam-ingest", &all, w.path())
    };
    let list = text(&cli(&["update", "list"]).stdout);
    let offered: Vec<&str> = list.lines().filter(|l| l.contains("(offered)")).collect();
    assert_eq!(offered.len(), 1, "{list}");
    assert!(offered[0].contains("1.10.0"), "{list}");

    let out = cli(&[
        "update",
        "withdraw",
        "--compatible",
        COMPATIBLE,
        "--version",
        "1.10.0",
        "--operator",
        "ops",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&[
        "update",
        "withdraw",
        "--compatible",
        COMPATIBLE,
        "--version",
        "1.10.0",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has no published version 1.10.0"),
        "{}",
        text(&out.stderr)
    );

    let cfg = camera(&w, &ingest, "1.0.0");
    let out = check(&w, &cfg);
    assert!(
        text(&out.stdout).contains("version 1.9.0 downloaded"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let audit = text(&cli(&["audit", "show", "--action", "update-withdraw"]).stdout);
    assert!(
        audit.contains("operator:ops") && audit.contains("1.10.0"),
        "{audit}"
    );

    // A version published again with other bytes is refused.
    let out = cli(&[
        "update",
        "publish",
        v10.to_str().unwrap(),
        "--compatible",
        COMPATIBLE,
        "--version",
        "1.9.0",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("published already with other bytes"),
        "{}",
        text(&out.stderr)
    );
}
