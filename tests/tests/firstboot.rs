//! First boot from the card (`sealcamd firstboot`, `sealcam card write`):
//! the owner's bundle on the boot partition provisions a camera whose key is
//! in a TPM (swtpm), enrolls it at a real ingest and CA with a one-time
//! token, and the token leaves the card whatever happens. A bad token, or a
//! bundle the owner did not sign, leaves the config directory as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sealcam_system_tests::swtpm::Swtpm;
use sealcam_system_tests::*;

/// The name of this process's group, which the installed files get (a
/// camera's is `sealcam`).
fn own_group() -> String {
    let out = Command::new("id").arg("-gn").output().unwrap();
    text(&out.stdout).trim().to_owned()
}

fn sign(w: &World, owner_key: &str, out: &str) {
    run_ok(
        "sealcam",
        &[
            "recipients",
            "sign",
            "--owner-key",
            owner_key,
            "--version",
            "1",
            "--add",
            "alice.pub",
            "--out",
            out,
        ],
        w.path(),
    );
}

/// A camera config as a card carries it: the bundle's files by their
/// installed names, the key in the TPM at `tcti`.
fn card_config(w: &World, device: &str, ingest: &Ingest, tcti: &str) -> PathBuf {
    let spool = w.path().join(format!("{device}-spool"));
    let path = w.path().join(format!("{device}-card.toml"));
    std::fs::write(
        &path,
        format!(
            r#"device_id = "{device}"
[camera]
source = "test"
num_buffers = 30
width = 320
height = 240
framerate = 30
bitrate_kbps = 500
[stream]
name = "front"
fragment_duration_ms = 1000
[recipients]
set = "recipients.rset"
owner_public_key = "owner.pub"
[identity]
tpm_tcti = "{tcti}"
certificate = "device.crt"
[spool]
dir = "{}"
[upload]
url = "{}"
ca = "fleet-ca.crt"
drain_timeout_s = 5
"#,
            spool.display(),
            ingest.url()
        ),
    )
    .unwrap();
    path
}

/// `sealcam card write --boot BOOT` of the world's files; may fail.
fn card_write(
    w: &World,
    config: &Path,
    rset: &str,
    url: &str,
    token: &str,
    target: &[&str],
) -> Output {
    let config = config.to_str().unwrap();
    let mut args = vec![
        "card",
        "write",
        "--config",
        config,
        "--ca",
        "pki/ca.crt",
        "--owner-pub",
        "owner.pub",
        "--recipients",
        rset,
        "--enroll-url",
        url,
        "--token",
        token,
    ];
    args.extend_from_slice(target);
    run("sealcam", &args, w.path())
}

/// A bundle written straight into `boot/sealcam` (as a card written by
/// hand), bypassing `card write`'s check.
fn hand_bundle(
    w: &World,
    boot: &str,
    config: &Path,
    rset: &str,
    url: &str,
    token: &str,
) -> PathBuf {
    let dir = w.path().join(boot).join("sealcam");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(config, dir.join("sealcamd.toml")).unwrap();
    std::fs::copy(w.path().join("pki/ca.crt"), dir.join("fleet-ca.crt")).unwrap();
    std::fs::copy(w.path().join("owner.pub"), dir.join("owner.pub")).unwrap();
    std::fs::copy(w.path().join(rset), dir.join("recipients.rset")).unwrap();
    std::fs::write(dir.join("enroll-url"), format!("{url}\n")).unwrap();
    std::fs::write(dir.join("token"), format!("{token}\n")).unwrap();
    dir
}

fn firstboot(w: &World, bundle: &Path, config_dir: &Path) -> Output {
    std::fs::create_dir_all(config_dir).unwrap();
    run(
        "sealcamd",
        &[
            "firstboot",
            "--bundle",
            bundle.to_str().unwrap(),
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--group",
            &own_group(),
        ],
        w.path(),
    )
}

/// The one line a run printed.
fn one_line(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "not one line: {stdout:?}");
    assert!(stdout.starts_with("sealcam-firstboot: "), "{stdout}");
    eprintln!("{}", stdout.trim());
    stdout.trim().to_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_card_provisions_enrolls_and_the_camera_uploads() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let ingest = w.start_ingest();
    sign(&w, "owner.key", "recipients.rset");
    let config = card_config(&w, "cam1", &ingest, &tpm.tcti());
    let token = w.device_add("cam1", "1h");
    std::fs::create_dir(w.path().join("boot")).unwrap();
    let out = card_write(
        &w,
        &config,
        "recipients.rset",
        &ingest.enroll_url(),
        &token,
        &["--boot", "boot"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle = w.path().join("boot/sealcam");
    assert_eq!(
        entries(&bundle),
        [
            "enroll-url",
            "fleet-ca.crt",
            "owner.pub",
            "recipients.rset",
            "sealcamd.toml",
            "token"
        ]
    );

    let etc = w.path().join("etc");
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(out.status.success(), "{line}\n{}", text(&out.stderr));
    assert!(
        line.contains("camera cam1 provisioned and enrolled"),
        "{line}"
    );
    assert!(line.contains("[token deleted from the card]"), "{line}");
    assert!(
        !bundle.join("token").exists(),
        "the token is still on the card"
    );
    assert_eq!(
        entries(&etc),
        [
            "device.crt",
            "fleet-ca.crt",
            "owner.pub",
            "recipients.rset",
            "sealcamd.toml"
        ],
        "no staging file left"
    );
    for name in entries(&etc) {
        let mode = std::fs::metadata(etc.join(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{name}");
    }

    // The next boot: provisioned, nothing to do.
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(out.status.success(), "{line}");
    assert!(line.contains("already provisioned"), "{line}");

    // sealcamd starts from what first boot installed, and its fragments
    // reach the ingest.
    let cfg = etc.join("sealcamd.toml");
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(
        !fragment_files(&ingest.data).is_empty(),
        "no fragment stored at the ingest"
    );
}

#[test]
fn a_wrong_or_used_token_leaves_one_line_and_a_clean_config_dir() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let ingest = w.start_ingest();
    sign(&w, "owner.key", "recipients.rset");
    let etc = w.path().join("etc");
    let url = ingest.enroll_url();

    // No card at all: one line, nothing written.
    let out = firstboot(&w, &w.path().join("no-card/sealcam"), &etc);
    let line = one_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(
        line.contains("not provisioned and there is no bundle in"),
        "{line}"
    );
    assert!(entries(&etc).is_empty(), "left behind: {:?}", entries(&etc));

    // A token the CA never issued.
    let config = card_config(&w, "cam2", &ingest, &tpm.tcti());
    let bundle = hand_bundle(
        &w,
        "boot",
        &config,
        "recipients.rset",
        &url,
        "not-a-token-0123456789",
    );
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(
        line.contains("enrollment refused: the token is unknown or was already used; write a new bundle with a fresh token"),
        "{line}"
    );
    assert!(line.contains("[token deleted from the card]"), "{line}");
    assert!(!bundle.join("token").exists());
    assert!(entries(&etc).is_empty(), "left behind: {:?}", entries(&etc));

    // The same card again, its token gone: one line, and a fresh token.
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(line.contains("has no token"), "{line}");
    assert!(line.contains("with a fresh token"), "{line}");
    assert!(entries(&etc).is_empty(), "left behind: {:?}", entries(&etc));

    // A token another camera already used.
    let token = w.device_add("cam3", "1h");
    let other = w.write_camera_config("cam3", &ingest.url(), 1, 1000);
    let out = enroll(&w, &other, &url, &token, &["--insecure-software-key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config3 = card_config(&w, "cam3", &ingest, &tpm.tcti());
    let bundle = hand_bundle(&w, "boot", &config3, "recipients.rset", &url, &token);
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(
        line.contains("the token is unknown or was already used"),
        "{line}"
    );
    assert!(!bundle.join("token").exists());
    assert!(entries(&etc).is_empty(), "left behind: {:?}", entries(&etc));

    // A fresh bundle with a fresh token: provisioned (the TPM key of the
    // failed runs is reused).
    let token = w.device_add("cam2", "1h");
    let bundle = hand_bundle(&w, "boot", &config, "recipients.rset", &url, &token);
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(out.status.success(), "{line}\n{}", text(&out.stderr));
    assert!(
        line.contains("camera cam2 provisioned and enrolled"),
        "{line}"
    );
    assert!(line.contains("reused in the TPM"), "{line}");
    assert!(etc.join("device.crt").exists());
}

#[test]
fn a_recipient_set_the_owner_did_not_sign_is_refused_before_anything_is_written() {
    let w = World::new();
    let tpm = Swtpm::start(&w.path().join("tpm-state"));
    let ingest = w.start_ingest();
    run_ok("sealcam", &["owner", "init", "--out", "mallory"], w.path());
    sign(&w, "mallory.key", "forged.rset");
    let config = card_config(&w, "cam4", &ingest, &tpm.tcti());
    let token = w.device_add("cam4", "1h");
    let url = ingest.enroll_url();

    // `card write` refuses it and writes nothing.
    std::fs::create_dir(w.path().join("card")).unwrap();
    let out = card_write(
        &w,
        &config,
        "forged.rset",
        &url,
        &token,
        &["--boot", "card"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("recipients.rset"),
        "{}",
        text(&out.stderr)
    );
    assert!(entries(&w.path().join("card")).is_empty());

    // A card written by hand: first boot refuses it and changes nothing.
    let bundle = hand_bundle(&w, "boot", &config, "forged.rset", &url, &token);
    let etc = w.path().join("etc");
    let out = firstboot(&w, &bundle, &etc);
    let line = one_line(&out);
    assert!(!out.status.success(), "{line}");
    assert!(line.contains("is refused, nothing was changed"), "{line}");
    assert!(
        line.contains("recipients.rset: it does not verify under the owner key in owner.pub"),
        "{line}"
    );
    assert!(line.contains("its token was not used"), "{line}");
    assert!(!bundle.join("token").exists());
    assert!(entries(&etc).is_empty(), "left behind: {:?}", entries(&etc));
    // The token was never sent: it still enrolls a camera.
    let other = w.write_camera_config("cam4", &ingest.url(), 1, 1000);
    let out = enroll(&w, &other, &url, &token, &["--insecure-software-key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn sh(cmd: &str, cwd: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn card_write_puts_the_bundle_into_a_disk_image() {
    let w = World::new();
    let ingest = w.start_ingest();
    sign(&w, "owner.key", "recipients.rset");
    let config = card_config(&w, "cam5", &ingest, "device:/dev/tpmrm0");
    // GPT: a root partition first, then the FAT one named boot; MBR: the
    // FAT partition labelled SEALBOOT after a Linux one.
    for (label, table) in [
        (
            "gpt",
            "label: gpt\nstart=2048, size=16384, type=linux, name=rootfs\nstart=18432, size=65536, type=uefi, name=boot\n",
        ),
        (
            "mbr",
            "label: dos\nstart=2048, size=16384, type=83\nstart=18432, size=65536, type=c\n",
        ),
    ] {
        let img = format!("{label}.img");
        sh(&format!("truncate -s 64M {img} && printf '{table}' | sfdisk -q {img}"), w.path());
        sh(&format!("mkfs.vfat -n SEALBOOT --offset 18432 {img} 32768 >/dev/null"), w.path());
        let out = card_write(
            &w,
            &config,
            "recipients.rset",
            &ingest.enroll_url(),
            "tok-123",
            &["--image", &img],
        );
        assert!(out.status.success(), "{label}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("partition 2"), "{}", text(&out.stdout));
        let at = format!("{img}@@{}", 18432 * 512);
        let listing = sh(&format!("mdir -b -i {at} ::/sealcam"), w.path());
        for name in ["sealcamd.toml", "fleet-ca.crt", "owner.pub", "recipients.rset", "enroll-url", "token"] {
            assert!(listing.contains(name), "{label}: {name} missing from {listing}");
        }
        assert_eq!(sh(&format!("mtype -i {at} ::/sealcam/token"), w.path()), "tok-123\n");
        let copied = sh(&format!("mtype -i {at} ::/sealcam/sealcamd.toml"), w.path());
        assert_eq!(copied, std::fs::read_to_string(&config).unwrap());
    }
    // The token from a file, written over the first bundle.
    std::fs::write(w.path().join("cam5.token"), "tok-from-file\n").unwrap();
    let out = run(
        "sealcam",
        &[
            "card",
            "write",
            "--config",
            config.to_str().unwrap(),
            "--ca",
            "pki/ca.crt",
            "--owner-pub",
            "owner.pub",
            "--recipients",
            "recipients.rset",
            "--enroll-url",
            &ingest.enroll_url(),
            "--token-file",
            "cam5.token",
            "--image",
            "gpt.img",
        ],
        w.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let at = format!("gpt.img@@{}", 18432 * 512);
    assert_eq!(
        sh(&format!("mtype -i {at} ::/sealcam/token"), w.path()),
        "tok-from-file\n"
    );

    // Not an image: refused in one line.
    std::fs::write(w.path().join("blank.img"), vec![0u8; 1 << 20]).unwrap();
    let out = card_write(
        &w,
        &config,
        "recipients.rset",
        &ingest.enroll_url(),
        "tok",
        &["--image", "blank.img"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no partition table"),
        "{}",
        text(&out.stderr)
    );
}
