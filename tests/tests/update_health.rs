//! `sealcamd health` against a real RAUC (issue 26): `rauc service` on a
//! private D-Bus bus, with the GRUB backend on a real grubenv file
//! (`grub-editenv`) and the booted slot given with
//! `--override-boot-slot`, so `rauc status --output-format=json`,
//! `mark-good` and `mark-bad` are RAUC's own. What the test cannot do
//! here is reboot: it runs without `--reboot`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sealcam_system_tests::{bin, text, wait_until};

/// A private system bus and `rauc service` on it, stopped on drop.
struct Rauc {
    dir: tempfile::TempDir,
    bus: String,
    dbus: Child,
    service: Child,
}

impl Rauc {
    /// Booted from slot A (`rootfs.0`), GRUB's environment as `env` says.
    fn start(env: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let socket = p.join("bus");
        std::fs::write(
            p.join("bus.conf"),
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let dbus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", p.join("bus.conf").display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (package dbus-daemon; scripts/install-deps)");
        assert!(
            wait_until(10, || socket.exists()),
            "dbus-daemon did not listen"
        );
        let grubenv = p.join("grubenv");
        grub_editenv(&grubenv, &["create"]);
        let mut set = vec!["set"];
        set.extend_from_slice(env);
        grub_editenv(&grubenv, &set);
        std::fs::write(p.join("a.img"), b"").unwrap();
        std::fs::write(p.join("b.img"), b"").unwrap();
        std::fs::write(
            p.join("system.conf"),
            format!(
                "[system]\ncompatible=sealcam-test\nbootloader=grub\ngrubenv={}\n\n[keyring]\npath={}\n\n[slot.rootfs.0]\ndevice={}\ntype=ext4\nbootname=A\n\n[slot.rootfs.1]\ndevice={}\ntype=ext4\nbootname=B\n",
                grubenv.display(),
                p.join("none.pem").display(),
                p.join("a.img").display(),
                p.join("b.img").display()
            ),
        )
        .unwrap();
        let bus = format!("unix:path={}", socket.display());
        let service = Command::new("rauc")
            .arg("service")
            .arg(format!("--conf={}", p.join("system.conf").display()))
            .arg("--override-boot-slot=A")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rauc = Self {
            dir,
            bus,
            dbus,
            service,
        };
        assert!(
            wait_until(10, || rauc.status().status.success()),
            "rauc service did not answer"
        );
        rauc
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn status(&self) -> Output {
        Command::new("rauc")
            .args(["status", "--output-format=json"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .output()
            .unwrap()
    }

    /// GRUB's environment now.
    fn grubenv(&self) -> String {
        let out = Command::new("grub-editenv")
            .arg(self.path().join("grubenv"))
            .arg("list")
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// sealcamd.toml with only `[update]`: the health check reads nothing
    /// else (a release whose config is otherwise broken is still judged).
    fn config(&self, health_timeout_s: u32) -> PathBuf {
        let p = self.path();
        std::fs::create_dir_all(p.join("update")).unwrap();
        let cfg = p.join("sealcamd.toml");
        std::fs::write(
            &cfg,
            format!(
                "device_id = \"this config is broken\"\n[update]\nsystem_conf = \"system.conf\"\ndir = \"update\"\ninstall_dir = \"install\"\nack_file = \"acknowledged\"\nkernel_cmdline = \"cmdline\"\nhealth_timeout_s = {health_timeout_s}\n"
            ),
        )
        .unwrap();
        // As GRUB boots slot A (`--override-boot-slot=A` for RAUC).
        std::fs::write(
            p.join("cmdline"),
            "root=PARTLABEL=rootfs-a rw rootwait rauc.slot=A panic=10\n",
        )
        .unwrap();
        cfg
    }

    /// Stops RAUC's service: from now on `rauc status` fails.
    fn stop_service(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        assert!(!self.status().status.success());
    }

    /// The installer's note that slot `rootfs.0` was installed with 1.2.0.
    fn note_trial(&self) {
        std::fs::create_dir_all(self.path().join("install")).unwrap();
        std::fs::write(
            self.path().join("install/trial.json"),
            r#"{"slot":"rootfs.0","version":"1.2.0"}"#,
        )
        .unwrap();
    }

    /// The installer's note that `slot` was installed with 1.2.0, and
    /// whether it has booted on trial yet.
    fn note_trial_of(&self, slot: &str, booted: bool) {
        std::fs::create_dir_all(self.path().join("install")).unwrap();
        std::fs::write(
            self.path().join("install/trial.json"),
            format!(r#"{{"slot":"{slot}","version":"1.2.0","booted":{booted}}}"#),
        )
        .unwrap();
    }

    /// The releases the installer refuses as given up for good.
    fn given_up(&self) -> Vec<String> {
        match std::fs::read(self.path().join("install/given-up.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) => Vec::new(),
        }
    }

    /// When the release `version`, waiting after an unproven trial, may be
    /// tried again; `None`: it is not waiting.
    fn retry_after(&self, version: &str) -> Option<u64> {
        let waiting: serde_json::Value =
            match std::fs::read(self.path().join("install/waiting.json")) {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
                Err(_) => return None,
            };
        waiting[version]["retry_after_unix"].as_u64()
    }

    /// sealcamd's note of acknowledged fragments, for boot `boot_id`.
    fn note_ack(&self, boot_id: &str) {
        std::fs::write(
            self.path().join("acknowledged"),
            format!(r#"{{"boot_id":"{boot_id}","acknowledged":3,"unix_s":1}}"#),
        )
        .unwrap();
    }

    fn health(&self, cfg: &Path) -> Output {
        Command::new(bin("sealcamd"))
            .args(["health", "--config"])
            .arg(cfg)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .current_dir(self.path())
            .output()
            .unwrap()
    }

    fn outcome(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path().join("update/outcome.json")).unwrap())
            .unwrap()
    }
}

impl Drop for Rauc {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

fn grub_editenv(file: &Path, args: &[&str]) {
    let out = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .output()
        .expect("grub-editenv (package grub-common; scripts/install-deps)");
    assert!(out.status.success(), "grub-editenv: {}", text(&out.stderr));
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

/// Booted from A on trial: GRUB set A_TRY=1 when it booted it.
const TRIAL: [&str; 5] = ["ORDER=A B", "A_OK=1", "A_TRY=1", "B_OK=1", "B_TRY=0"];

#[test]
fn a_trial_slot_with_an_acknowledged_fragment_is_marked_good() {
    let rauc = Rauc::start(&TRIAL);
    assert!(text(&rauc.status().stdout).contains(r#""boot_status":"bad""#));
    let cfg = rauc.config(60);
    rauc.note_trial();
    rauc.note_ack(&boot_id());
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("proved itself"),
        "{}",
        text(&out.stdout)
    );
    let env = rauc.grubenv();
    assert!(env.contains("A_OK=1") && env.contains("A_TRY=0"), "{env}");
    assert_eq!(rauc.outcome()["result"], "installed");
    assert_eq!(rauc.outcome()["version"], "1.2.0");
    assert!(!rauc.path().join("install/trial.json").exists());
    // The high-water mark: nothing older than 1.2.0 is installed here now.
    let proven = std::fs::read_to_string(rauc.path().join("install/proven.json")).unwrap();
    assert_eq!(proven, r#""1.2.0""#);
}

#[test]
fn a_trial_slot_without_one_in_this_boot_is_marked_bad_after_the_timeout() {
    let rauc = Rauc::start(&TRIAL);
    let cfg = rauc.config(2);
    rauc.note_trial();
    // A note from an earlier boot proves nothing.
    rauc.note_ack("00000000-0000-0000-0000-000000000000");
    let started = std::time::Instant::now();
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("marked bad"),
        "{}",
        text(&out.stdout)
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    let env = rauc.grubenv();
    assert!(env.contains("A_OK=0"), "{env}");
    // The release waits some hours (the network or the ingest may have
    // been out): the installer refuses it until then, rather than trying
    // it and falling back at every check. It is not given up for good.
    assert!(rauc.given_up().is_empty());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let until = rauc.retry_after("1.2.0").unwrap();
    assert!(until > now + 5 * 3600 && until <= now + 6 * 3600, "{until}");
    let note = std::fs::read_to_string(rauc.path().join("install/trial.json")).unwrap();
    assert!(note.contains(r#""unproven":true"#), "{note}");
}

/// The fall back after the health check gave a slot up as unproven: the
/// release waits, its outcome says until when, and nothing is final.
#[test]
fn the_fall_back_after_an_unproven_trial_waits_and_is_not_final() {
    let rauc = Rauc::start(&FELL_BACK);
    let cfg = rauc.config(600);
    std::fs::create_dir_all(rauc.path().join("install")).unwrap();
    std::fs::write(
        rauc.path().join("install/trial.json"),
        r#"{"slot":"rootfs.1","version":"1.2.0","booted":true,"installed":true,"unproven":true}"#,
    )
    .unwrap();
    std::fs::write(
        rauc.path().join("install/waiting.json"),
        r#"{"1.2.0":{"trials":1,"retry_after_unix":4102444800}}"#,
    )
    .unwrap();
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = rauc.outcome();
    assert_eq!(o["result"], "failed", "{o}");
    assert_eq!(o["final"], false, "{o}");
    assert_eq!(o["retry_after_unix"], 4102444800u64, "{o}");
    assert!(
        o["detail"]
            .as_str()
            .unwrap()
            .contains("tried again after 2100-01-01T00:00:00Z"),
        "{o}"
    );
    assert_eq!(rauc.retry_after("1.2.0"), Some(4102444800));
    assert!(rauc.given_up().is_empty());
    assert!(!rauc.path().join("install/trial.json").exists());
}

/// Booted from A, which is good; the trial note names B.
const FELL_BACK: [&str; 5] = ["ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0"];

#[test]
fn a_fall_back_after_a_trial_boot_gives_the_release_up() {
    let rauc = Rauc::start(&FELL_BACK);
    let cfg = rauc.config(600);
    rauc.note_trial_of("rootfs.1", true);
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rauc.outcome()["result"], "failed");
    assert!(
        rauc.outcome()["detail"]
            .as_str()
            .unwrap()
            .contains("fell back"),
        "{}",
        rauc.outcome()
    );
    assert_eq!(rauc.given_up(), ["1.2.0"]);
    assert_eq!(rauc.retry_after("1.2.0"), None);
    assert_eq!(rauc.outcome()["final"], true);
    assert!(!rauc.path().join("install/trial.json").exists());
}

/// sealcamd's user, compromised, swaps the update directory (in a
/// directory it owns, as /var/lib/sealcam) for a link to one of root's:
/// the health check, root, writes no outcome through it, and its own
/// bookkeeping stands.
#[test]
fn the_health_check_writes_nothing_through_a_link_for_the_update_directory() {
    let rauc = Rauc::start(&FELL_BACK);
    let cfg = rauc.config(600);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text_cfg.replace("dir = \"update\"", "dir = \"camera/update\""),
    )
    .unwrap();
    let camera = rauc.path().join("camera");
    let roots = rauc.path().join("roots");
    std::fs::create_dir_all(&camera).unwrap();
    std::fs::create_dir_all(&roots).unwrap();
    // As root, the test gives the directory away; as anyone else it is
    // already not root's.
    let _ = std::os::unix::fs::chown(&camera, Some(990), Some(990));
    std::os::unix::fs::symlink(&roots, camera.join("update")).unwrap();
    rauc.note_trial_of("rootfs.1", true);
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot write the update's outcome"),
        "{}",
        text(&out.stderr)
    );
    assert!(!roots.join("outcome.json").exists());
    assert_eq!(rauc.given_up(), ["1.2.0"]);
}

#[test]
fn a_slot_installed_that_falls_back_before_the_health_check_is_given_up() {
    // Its kernel did not start, or its root did not mount: the health
    // check never ran in it, but RAUC finished the install, so it was
    // tried. Installed again it would fall back again, for ever.
    let rauc = Rauc::start(&FELL_BACK);
    let cfg = rauc.config(600);
    std::fs::create_dir_all(rauc.path().join("install")).unwrap();
    std::fs::write(
        rauc.path().join("install/trial.json"),
        r#"{"slot":"rootfs.1","version":"1.2.0","booted":false,"installed":true}"#,
    )
    .unwrap();
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rauc.given_up(), ["1.2.0"]);
}

#[test]
fn an_install_cut_short_before_its_trial_boot_gives_nothing_up() {
    // The note is made before `rauc install`; power lost during the
    // install leaves it for a slot that never booted. That release was
    // not tried: it is installed again when offered.
    let rauc = Rauc::start(&FELL_BACK);
    let cfg = rauc.config(600);
    rauc.note_trial_of("rootfs.1", false);
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        rauc.outcome()["detail"]
            .as_str()
            .unwrap()
            .contains("did not finish"),
        "{}",
        rauc.outcome()
    );
    assert!(rauc.given_up().is_empty());
    assert!(!rauc.path().join("install/trial.json").exists());
}

#[test]
fn a_slot_not_on_trial_is_marked_good_at_once_and_a_good_one_left_alone() {
    // Not good (GRUB asks for a mark-good every boot) but no trial note:
    // it proved itself before; an ingest outage must not send it back.
    let rauc = Rauc::start(&TRIAL);
    let cfg = rauc.config(600);
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("not on trial"),
        "{}",
        text(&out.stdout)
    );
    assert!(rauc.grubenv().contains("A_TRY=0"));
    // Now good: nothing to do, and nothing written.
    let out = rauc.health(&cfg);
    assert!(out.status.success());
    assert!(!rauc.path().join("update/outcome.json").exists());
}

/// The installer's note, as it writes it, that slot `rootfs.0` (`A`) was
/// installed with 1.2.0 in an earlier boot.
const INSTALLED_INTO_A: &str = r#"{"slot":"rootfs.0","version":"1.2.0","booted":false,"installed":true,"bootname":"A","boot_id":"0123456789abcdef0123456789abcdef"}"#;

/// The note [`INSTALLED_INTO_A`], the kernel's command line `cmdline`, and
/// RAUC's service stopped.
fn without_rauc(health_timeout_s: u32, cmdline: &str) -> (Rauc, PathBuf) {
    without_rauc_noted(health_timeout_s, cmdline, INSTALLED_INTO_A)
}

/// [`without_rauc`] with the trial note `note`.
fn without_rauc_noted(health_timeout_s: u32, cmdline: &str, note: &str) -> (Rauc, PathBuf) {
    let mut rauc = Rauc::start(&TRIAL);
    let cfg = rauc.config(health_timeout_s);
    std::fs::create_dir_all(rauc.path().join("install")).unwrap();
    std::fs::write(rauc.path().join("install/trial.json"), note).unwrap();
    std::fs::write(rauc.path().join("cmdline"), cmdline).unwrap();
    rauc.stop_service();
    (rauc, cfg)
}

#[test]
fn rauc_that_does_not_answer_in_the_trial_boot_gives_the_slot_up() {
    // A release whose RAUC is broken could not be updated again: the
    // trial boot (the kernel says so, as RAUC cannot) is judged at the
    // timeout, and given up.
    let (rauc, cfg) = without_rauc(3, "rw rauc.slot=A");
    rauc.note_ack(&boot_id());
    let started = std::time::Instant::now();
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("marked bad"),
        "{}",
        text(&out.stdout)
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(rauc.given_up(), ["1.2.0"]);
    // The note stays for the boot after the fall back, which reports it.
    assert!(rauc.path().join("install/trial.json").exists());
}

#[test]
fn rauc_that_does_not_answer_outside_the_trial_boot_is_only_an_error() {
    // The note names A, the kernel booted B: nothing is on trial here,
    // nothing is given up, and the camera is not rebooted.
    let (rauc, cfg) = without_rauc(1, "rw rauc.slot=B");
    let out = rauc.health(&cfg);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("status --output-format=json"),
        "{}",
        text(&out.stderr)
    );
    assert!(rauc.given_up().is_empty());
    assert_eq!(
        std::fs::read_to_string(rauc.path().join("install/trial.json")).unwrap(),
        INSTALLED_INTO_A
    );
}

#[test]
fn rauc_that_does_not_answer_after_the_trial_boot_gives_nothing_up() {
    // The slot was judged in an earlier boot (marked good, then the power
    // went before its note was removed): a later boot in which RAUC does
    // not answer must not give a proven release up and roll it back.
    let note = r#"{"slot":"rootfs.0","version":"1.2.0","booted":true,"installed":true,"bootname":"A","boot_id":"0123456789abcdef0123456789abcdef","trial_boot":"fedcba9876543210fedcba9876543210"}"#;
    let (rauc, cfg) = without_rauc_noted(1, "rw rauc.slot=A", note);
    let out = rauc.health(&cfg);
    assert!(!out.status.success());
    assert!(rauc.given_up().is_empty());
}

#[test]
fn an_outcome_that_cannot_be_written_does_not_stop_the_bookkeeping() {
    // sealcamd's directory is sealcamd's: a name it holds (here a
    // directory where the outcome goes), or a full disk, must not leave
    // the note behind, which would refuse every later install.
    let rauc = Rauc::start(&TRIAL);
    let cfg = rauc.config(60);
    rauc.note_trial();
    rauc.note_ack(&boot_id());
    std::fs::create_dir_all(rauc.path().join("update/outcome.json/in-the-way")).unwrap();
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("proved itself"));
    assert!(!rauc.path().join("install/trial.json").exists());
    assert!(text(&out.stderr).contains("cannot write the update's outcome"));
}

#[test]
fn a_note_the_installer_wrote_in_this_boot_is_an_install_under_way() {
    // Booted from A, good; the installer is writing B in this very boot.
    // The health check must not take its note for a fall back.
    let rauc = Rauc::start(&FELL_BACK);
    let cfg = rauc.config(600);
    std::fs::create_dir_all(rauc.path().join("install")).unwrap();
    let note = format!(
        r#"{{"slot":"rootfs.1","version":"1.2.0","booted":false,"installed":false,"bootname":"B","boot_id":"{}"}}"#,
        boot_id()
    );
    std::fs::write(rauc.path().join("install/trial.json"), &note).unwrap();
    let out = rauc.health(&cfg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("not on trial"),
        "{}",
        text(&out.stdout)
    );
    assert!(rauc.given_up().is_empty());
    assert_eq!(
        std::fs::read_to_string(rauc.path().join("install/trial.json")).unwrap(),
        note
    );
    assert!(!rauc.path().join("update/outcome.json").exists());
}
