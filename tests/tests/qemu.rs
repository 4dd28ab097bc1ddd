//! System tests in QEMU (issue 9): the packaged sealcamd, installed by dpkg
//! into a Debian 12 image, boots under systemd with the vivid virtual camera
//! at /dev/video0 and swtpm as the TPM at /dev/tpmrm0, and streams to the
//! ingest on this host through QEMU's restricted user network.
//!
//! The image is built (and cached) by `scripts/qemu-image`; it needs root
//! (debootstrap, chroot), which `scripts/test` has.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use sealcam_format::SealedFragment;
use sealcam_system_tests::qemu::{self, Arch, Forward, Machine, HOST_ALIAS};
use sealcam_system_tests::*;

/// Guest ports of the two forwards: uploads and enrollment.
const UPLOAD_PORT: u16 = 8443;
const ENROLL_PORT: u16 = 8444;

/// A world whose ingest certificate also names the guest's address for it,
/// a signed recipient set for alice, a running ingest, and the provisioning bundle's
/// contents with a fresh enrollment token. On amd64 the guest's TPM (swtpm
/// on the host) is manufactured with an EK certificate first, and the
/// ingest requires it: the camera enrolls with TPM attestation.
fn fleet() -> (World, Ingest) {
    fleet_on(Arch::Amd64)
}

fn fleet_on(arch: Arch) -> (World, Ingest) {
    let w = World::with_ca_args(&["--server-ip", "127.0.0.1", "--server-ip", HOST_ALIAS]);
    // The world's owner key (`World::new`) signs the recipient set.
    run_ok(
        "sealcam",
        &[
            "recipients",
            "sign",
            "--owner-key",
            "owner.key",
            "--version",
            "1",
            "--out",
            "recipients.rset",
            "--add",
            "alice.pub",
        ],
        w.path(),
    );
    let ingest = match arch {
        Arch::Amd64 => {
            let maker = sealcam_system_tests::swtpm::manufacture(
                &w.path().join("vm/tpm"),
                &w.path().join("tpm-maker-ca"),
            );
            w.restart_ca_with(&["--require-ek-ca", maker.to_str().unwrap()]);
            w.start_ingest()
        }
        // Debian's arm64 image runs swtpm in the guest, unmanufactured.
        Arch::Arm64 => w.start_ingest(),
    };
    (w, ingest)
}

fn write_seed(w: &World, seed: &Path, extra_config: &str) {
    std::fs::create_dir_all(seed).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = std::fs::read_to_string(repo.join("configs/boards/qemu-vivid.toml")).unwrap();
    std::fs::write(seed.join("sealcamd.toml"), config + extra_config).unwrap();
    std::fs::copy(w.path().join("pki/ca.crt"), seed.join("fleet-ca.crt")).unwrap();
    std::fs::copy(w.path().join("owner.pub"), seed.join("owner.pub")).unwrap();
    std::fs::copy(
        w.path().join("recipients.rset"),
        seed.join("recipients.rset"),
    )
    .unwrap();
    let token = w.device_add("qemu-cam", "1h");
    std::fs::write(seed.join("token"), token).unwrap();
    std::fs::write(
        seed.join("enroll-url"),
        format!("https://{HOST_ALIAS}:{ENROLL_PORT}"),
    )
    .unwrap();
}

fn boot(arch: Arch, w: &World, ingest: &Ingest) -> Machine {
    boot_with(arch, w, ingest, "")
}

/// [`boot`], with `extra_config` appended to the camera's config.
fn boot_with(arch: Arch, w: &World, ingest: &Ingest, extra_config: &str) -> Machine {
    let seed = w.path().join("seed");
    write_seed(w, &seed, extra_config);
    boot_seed(arch, w, ingest, &seed)
}

/// Boots a machine with the bundle in `seed` on its card.
fn boot_seed(arch: Arch, w: &World, ingest: &Ingest, seed: &Path) -> Machine {
    Machine::boot(
        arch,
        &w.path().join("vm"),
        seed,
        &[
            Forward {
                guest_port: UPLOAD_PORT,
                host_port: ingest.addr.port(),
            },
            Forward {
                guest_port: ENROLL_PORT,
                host_port: ingest.enroll_addr.port(),
            },
        ],
    )
}

/// Frames in the stored fragments, by their manifests.
fn stored_frames(ingest: &Ingest) -> u64 {
    fragment_files(&ingest.data)
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            u64::from(SealedFragment::parse(&bytes).unwrap().manifest.frame_count)
        })
        .sum()
}

/// Boots the machine and waits until it has provisioned itself and
/// `fragments` fragments have arrived.
fn streaming(w: &World, ingest: &Ingest, fragments: usize) -> Machine {
    streaming_on(Arch::Amd64, w, ingest, fragments)
}

fn streaming_on(arch: Arch, w: &World, ingest: &Ingest, fragments: usize) -> Machine {
    let vm = boot(arch, w, ingest);
    vm.wait_for_console("sealcam-firstboot: camera qemu-cam provisioned", 600);
    wait_for_fragments(ingest, fragments);
    vm
}

/// Fragments the ingest has stored (their key objects, or whole files).
fn stored_count(ingest: &Ingest) -> usize {
    stored_object_files(&ingest.data)
        .iter()
        .filter(|p| {
            p.parent().is_some_and(|d| d.ends_with("keys"))
                || p.extension().is_some_and(|x| x == "scf")
        })
        .count()
}

fn wait_for_fragments(ingest: &Ingest, at_least: usize) {
    assert!(
        wait_until(300, || stored_count(ingest) >= at_least),
        "only {} of {at_least} fragments arrived from the guest; ingest log:\n{}",
        stored_count(ingest),
        ingest.log_text()
    );
}

/// Fetches the stream as alice and returns `sealcam verify`'s report, which
/// must say OK. These tests are about the image (boot, enrollment from
/// inside the guest, streaming), not about provenance: the guest's key is
/// enrolled in the guest and not in the host's roster, so they trust the
/// certificate the ingest serves, explicitly (`--trust-server`, checked
/// against the fleet CA with `--ca`). Anchored provenance is tested in
/// `anchor.rs` and `provenance.rs`.
fn verify(w: &World, ingest: &Ingest) -> String {
    verify_in(w, ingest, "fetched")
}

/// [`verify`], fetching into `out` (a test that verifies more than once).
fn verify_in(w: &World, ingest: &Ingest, out: &str) -> String {
    let fetched = w.fetch_unanchored(ingest, "qemu-cam", out, &["--trust-server"]);
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    let out = run(
        "sealcam",
        &["verify", out, "--ca", "pki/ca.crt", "--trust-server"],
        w.path(),
    );
    let report = text(&out.stdout);
    assert!(
        out.status.success() && report.contains("result:    OK"),
        "{report}{}",
        text(&out.stderr)
    );
    report
}

/// How often systemd has restarted sealcamd in the guest.
fn restarts(vm: &Machine) -> u64 {
    let (code, out, err) = vm.guest_exec(
        "/bin/systemctl",
        &[
            "show",
            "--property=NRestarts",
            "--value",
            "sealcamd.service",
        ],
        60,
    );
    assert_eq!(code, 0, "systemctl show failed: {err}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("NRestarts {out:?}"))
}

fn in_guest(vm: &Machine, program: &str, args: &[&str]) -> String {
    let (code, out, err) = vm.guest_exec(program, args, 120);
    assert_eq!(
        code, 0,
        "{program} {args:?} failed in the guest: {out}{err}"
    );
    out
}

/// Issue 26: the owner's card holds a token the CA does not know (a typo,
/// or one a first boot already used). First boot says so in one line on
/// the console, deletes the token from the card, and leaves nothing half
/// provisioned: no config, no certificate, sealcamd not started. The owner
/// puts a good token on the card; the next run provisions the camera.
fn provisioned_after_a_wrong_token(arch: Arch, w: &World, ingest: &Ingest) -> Machine {
    let seed = w.path().join("seed");
    write_seed(w, &seed, "");
    let good = std::fs::read_to_string(seed.join("token")).unwrap();
    let good = good.trim();
    // The issued token with its last digit changed.
    let last = if good.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &good[..good.len() - 1]);
    std::fs::write(seed.join("token"), &wrong).unwrap();
    let vm = boot_seed(arch, w, ingest, &seed);
    vm.wait_for_console(
        "sealcam-firstboot: enrollment refused: the token is unknown or was already used",
        600,
    );
    let console = vm.console_text();
    let line = console
        .lines()
        .find(|l| l.contains("sealcam-firstboot: enrollment refused"))
        .unwrap();
    assert!(line.contains("[token deleted from the card]"), "{line}");
    let card = "/boot/efi/sealcam";
    let (code, _, _) = vm.guest_exec("/usr/bin/test", &["-e", &format!("{card}/token")], 60);
    assert_ne!(code, 0, "the refused token is still on the card");
    // Only what the package ships (its example config) is there.
    let installed = in_guest(&vm, "/bin/ls", &["-A", "/etc/sealcam"]);
    assert_eq!(
        installed.split_whitespace().collect::<Vec<_>>(),
        ["sealcamd.toml"],
        "a refused first boot left files in /etc/sealcam"
    );
    let config = in_guest(&vm, "/bin/cat", &["/etc/sealcam/sealcamd.toml"]);
    assert!(
        !config.contains("qemu-cam"),
        "a refused first boot installed the bundle's config"
    );
    let (_, state, _) = vm.guest_exec("/bin/systemctl", &["is-active", "sealcamd.service"], 60);
    assert_eq!(state.trim(), "inactive", "sealcamd started unprovisioned");
    assert_eq!(stored_count(ingest), 0);

    // The good token on the card, and first boot once more.
    in_guest(
        &vm,
        "/bin/sh",
        &["-c", &format!("printf '%s\\n' {good} > {card}/token")],
    );
    in_guest(
        &vm,
        "/bin/systemctl",
        &["restart", "sealcam-firstboot.service"],
    );
    vm.wait_for_console("sealcam-firstboot: camera qemu-cam provisioned", 600);
    vm
}

#[test]
fn smoke_packaged_camera_provisions_enrolls_and_streams() {
    smoke(Arch::Amd64);
}

/// The arm64 package on an emulated aarch64 board (`virt`, Cortex-A72, the
/// TPM in the device tree).
#[test]
fn smoke_arm64_packaged_camera_provisions_enrolls_and_streams() {
    smoke(Arch::Arm64);
}

fn smoke(arch: Arch) {
    let (w, ingest) = fleet_on(arch);
    let vm = provisioned_after_a_wrong_token(arch, &w, &ingest);
    wait_for_fragments(&ingest, 4);
    // Installed by dpkg, started by systemd as its own user.
    let unit = in_guest(
        &vm,
        "/bin/systemctl",
        &["show", "--property=ActiveState,User", "sealcamd.service"],
    );
    assert!(unit.contains("ActiveState=active"), "{unit}");
    assert!(unit.contains("User=sealcam"), "{unit}");
    drop(vm);
    if arch == Arch::Amd64 {
        // Enrolled with TPM attestation: the CA kept the evidence.
        let kept = std::fs::read_dir(w.path().join("ca/evidence/device/qemu-cam"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(kept, 1, "no TPM evidence kept for the guest's key");
    }

    let report = verify(&w, &ingest);
    let frames = stored_frames(&ingest);
    assert!(report.contains(&format!("{frames} frames")), "{report}");
    assert!(report.contains("undeclared gaps: none"), "{report}");
    // As `verify` above: about the image, so trusting the served certificate.
    run_ok(
        "sealcam",
        &[
            "decrypt",
            "fetched",
            "--key",
            "alice.key",
            "--out",
            "clip.mkv",
            "--trust-server",
        ],
        w.path(),
    );
    let (decoded, width, height) = gst_count_frames(&w.path().join("clip.mkv"));
    assert_eq!(decoded as u64, frames);
    assert_eq!((width, height), (640, 360));
}

/// Stops sealcamd as a camera is stopped, not cut off (its last signed
/// head names the fragment it was sending, and a fetch of the range needs
/// that one), verifies the stream fetched into `out`, and starts it again.
fn verify_stopped(vm: &Machine, w: &World, ingest: &Ingest, out: &str) -> String {
    in_guest(vm, "/bin/systemctl", &["stop", "sealcamd.service"]);
    let report = verify_in(w, ingest, out);
    in_guest(vm, "/bin/systemctl", &["start", "sealcamd.service"]);
    report
}

/// The network's and the camera's faults, one after the other on one
/// machine: a boot and enrollment each would cost about a minute and a
/// half of emulation. Each step checks what it must; the verifications
/// between them say what the camera declared for it.
#[test]
fn network_loss_stream_errors_a_frozen_daemon_and_revocation() {
    let (w, ingest) = fleet();
    let mut vm = streaming(&w, &ingest, 2);

    // A network loss of 30 s loses, duplicates and declares nothing.
    vm.qmp("set_link", serde_json::json!({"name": "nic0", "up": false}));
    // What was in flight settles; then nothing may arrive.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let during = stored_count(&ingest);
    std::thread::sleep(std::time::Duration::from_secs(27));
    assert_eq!(
        stored_count(&ingest),
        during,
        "fragments arrived while the link was down"
    );
    vm.qmp("set_link", serde_json::json!({"name": "nic0", "up": true}));
    // The backlog (about 15 two-second fragments) drains, and live goes on.
    wait_for_fragments(&ingest, during + 18);
    let report = verify_stopped(&vm, &w, &ingest, "after-network-loss");
    assert!(!report.contains("declared:"), "{report}");
    assert!(report.contains("undeclared gaps: none"), "{report}");

    // vivid drops every buffer for 15 s: the camera delivers nothing. The
    // daemon recovers by itself, without systemd restarting it.
    let after = stored_count(&ingest);
    wait_for_fragments(&ingest, after + 2);
    in_guest(
        &vm,
        "/usr/bin/v4l2-ctl",
        &[
            "-d",
            "/dev/video0",
            "-c",
            "percentage_of_dropped_buffers=100",
        ],
    );
    std::thread::sleep(std::time::Duration::from_secs(15));
    in_guest(
        &vm,
        "/usr/bin/v4l2-ctl",
        &["-d", "/dev/video0", "-c", "percentage_of_dropped_buffers=0"],
    );
    let after = stored_count(&ingest);
    wait_for_fragments(&ingest, after + 3);
    assert_eq!(restarts(&vm), 0);

    // A frozen daemon: WatchdogSec=30s, systemd aborts it and starts it
    // again.
    in_guest(
        &vm,
        "/bin/systemctl",
        &["kill", "--signal=SIGSTOP", "sealcamd.service"],
    );
    assert!(
        wait_until(150, || restarts(&vm) >= 1),
        "systemd did not restart the frozen daemon"
    );
    let after = stored_count(&ingest);
    wait_for_fragments(&ingest, after + 2);
    let journal = in_guest(
        &vm,
        "/bin/journalctl",
        &["--no-pager", "-u", "sealcamd.service"],
    );
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    let report = verify_stopped(&vm, &w, &ingest, "after-faults");
    assert!(report.contains("camera delivered no frames"), "{report}");
    assert!(report.contains("undeclared gaps: none"), "{report}");

    // Revoked, the camera is refused, says so, and keeps spooling without
    // crash-looping.
    let after = stored_count(&ingest);
    wait_for_fragments(&ingest, after + 2);
    let restarted = restarts(&vm);
    run_ok(
        "sealcam-ca",
        &["device", "revoke", "qemu-cam", "--dir", "ca"],
        w.path(),
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let at_revocation = stored_count(&ingest);
    std::thread::sleep(std::time::Duration::from_secs(30));
    assert_eq!(
        stored_count(&ingest),
        at_revocation,
        "the ingest stored fragments of a revoked camera"
    );
    let journal = in_guest(
        &vm,
        "/bin/journalctl",
        &["--no-pager", "-o", "verbose", "-u", "sealcamd.service"],
    );
    assert!(
        journal.contains("the ingest revoked this camera's certificate"),
        "{journal}"
    );
    assert_eq!(restarts(&vm), restarted);
    let spooled = in_guest(
        &vm,
        "/usr/bin/find",
        &["/var/lib/sealcam/spool", "-name", "*.scf"],
    );
    assert!(
        spooled.lines().count() >= 10,
        "the camera stopped spooling after revocation: {spooled}"
    );
}

/// Two power cuts on one machine. After the first the camera resumes and
/// declares only the fragment in progress. The second takes the camera's
/// storage with it: the spool is wiped (a new SD card), the camera comes
/// back with no chain state, the ingest refuses its chain, and the
/// operator recovers it through a new epoch, which `verify` shows as a
/// declared restart.
#[test]
fn power_cuts_resume_and_a_wiped_spool_recovers_through_a_new_epoch() {
    let (w, ingest) = fleet();
    let mut vm = streaming(&w, &ingest, 3);
    vm.power_cut();
    vm.wait_for_console("sealcam-firstboot: already provisioned", 300);
    let after_reset = stored_count(&ingest);
    wait_for_fragments(&ingest, after_reset + 3);
    let report = verify_stopped(&vm, &w, &ingest, "after-power-cut");
    assert!(
        report.contains("recorder interrupted (crash or power loss)"),
        "{report}"
    );
    assert!(report.contains("undeclared gaps: none"), "{report}");

    let after = stored_count(&ingest);
    wait_for_fragments(&ingest, after + 2);
    in_guest(&vm, "/bin/systemctl", &["stop", "sealcamd.service"]);
    in_guest(
        &vm,
        "/bin/sh",
        &["-c", "rm -rf /var/lib/sealcam/spool/* && sync"],
    );
    vm.power_cut();
    vm.wait_for_console_times("sealcam-firstboot: already provisioned", 2, 300);
    // As the service runs: its user, and the TPM's group for the key.
    let camera_args = |args: &[&'static str]| {
        let mut all = vec![
            "-u",
            "sealcam",
            "-g",
            "sealcam",
            "-G",
            "tss",
            "--",
            "/usr/bin/sealcamd",
        ];
        all.extend_from_slice(args);
        all
    };
    let as_camera = |args: &[&'static str]| in_guest(&vm, "/usr/sbin/runuser", &camera_args(args));
    // Refused from its first fragment, it holds them and says why. (Until
    // the daemon has made the spool again, `spool list` fails: asked
    // without insisting.)
    let spool_list = || {
        let (code, out, err) =
            vm.guest_exec("/usr/sbin/runuser", &camera_args(&["spool", "list"]), 120);
        format!("exit {code}: {out}{err}")
    };
    assert!(
        wait_until(300, || spool_list()
            .contains("this camera probably lost its storage")),
        "{}",
        spool_list()
    );
    in_guest(&vm, "/bin/systemctl", &["stop", "sealcamd.service"]);
    let begun = as_camera(&["spool", "new-epoch"]);
    assert!(begun.contains("new epoch begins at sequence"), "{begun}");
    in_guest(&vm, "/bin/systemctl", &["start", "sealcamd.service"]);
    let after = stored_count(&ingest);
    wait_for_fragments(&ingest, after + 3);
    drop(vm);

    let report = verify_in(&w, &ingest, "after-wipe");
    assert!(
        report.contains("restart:   chain restart at")
            && report.contains("the camera lost its state"),
        "{report}"
    );
    assert!(report.contains("undeclared gaps: none"), "{report}");
}

/// A signed update bundle of the QEMU board at `version`, with the tests'
/// overlay (or `overlay`), signed with the development release key the
/// image trusts: `scripts/image --bundle`, as a release is made.
fn bundle(version: &str, overlay: &str) -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = qemu::while_no_machine_runs(|| {
        std::process::Command::new("bash")
            .arg(repo.join("scripts/image"))
            .args(["--board", "qemu-amd64", "--bundle", "--dev-release-key"])
            .args(["--version", version])
            .arg("--overlay")
            .arg(repo.join("tests/qemu").join(overlay))
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap()
    });
    assert!(out.status.success(), "scripts/image --bundle failed");
    let path = text(&out.stdout).lines().last().unwrap().trim().to_owned();
    std::path::PathBuf::from(path)
}

/// `sealcam-ingest update publish`, as the operator does.
fn publish(w: &World, ingest: &Ingest, bundle: &Path, version: &str) {
    operator_update(w, ingest, &["publish", bundle.to_str().unwrap()], version);
}

/// `sealcam-ingest update withdraw`: the version is no longer offered.
fn withdraw(w: &World, ingest: &Ingest, version: &str) {
    operator_update(w, ingest, &["withdraw"], version);
}

/// `sealcam-ingest update <verb...>` for the QEMU board's `version`.
fn operator_update(w: &World, ingest: &Ingest, verb: &[&str], version: &str) {
    let data = ingest.data.to_str().unwrap();
    let mut args = vec!["update"];
    args.extend_from_slice(verb);
    args.extend_from_slice(&[
        "--compatible",
        "sealcam-qemu-amd64",
        "--version",
        version,
        "--data",
        data,
        "--pki",
        "pki",
        "--operator",
        "release-manager",
    ]);
    run_ok("sealcam-ingest", &args, w.path());
}

/// `bundle` signed again (`rauc resign`) by a release key of its own,
/// which no camera's keyring holds.
fn signed_by_a_stranger(w: &World, bundle: &Path) -> std::path::PathBuf {
    let host = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(w.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{program}: {}", text(&out.stderr));
    };
    host(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "stranger.key",
            "-out",
            "stranger.crt",
            "-days",
            "365",
            "-subj",
            "/CN=not the release key",
        ],
    );
    let out = w.path().join("stranger.raucb");
    host(
        "rauc",
        &[
            "resign",
            "--no-verify",
            // What the resigned bundle verifies against: the stranger's own.
            "--keyring",
            "stranger.crt",
            "--cert",
            "stranger.crt",
            "--key",
            "stranger.key",
            bundle.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    out
}

/// What RAUC says of the booted slot in the guest: its boot name and
/// whether the boot loader counts it good.
fn booted_slot(vm: &Machine) -> Option<(String, String)> {
    // None while the guest reboots, as well as when RAUC cannot say.
    let (code, out, _) =
        vm.try_guest_exec("/usr/bin/rauc", &["status", "--output-format=json"], 60)?;
    if code != 0 {
        return None;
    }
    let status: serde_json::Value = serde_json::from_str(&out).ok()?;
    let booted = status["booted"].as_str()?.to_owned();
    let good = status["slots"].as_array()?.iter().find_map(|slot| {
        let (_, s) = slot.as_object()?.iter().next()?;
        (s["bootname"].as_str()? == booted)
            .then(|| s["boot_status"].as_str().unwrap_or_default().to_owned())
    })?;
    Some((booted, good))
}

/// The last update's outcome as the installer noted it for sealcamd
/// (empty while the guest reboots).
fn outcome(vm: &Machine) -> String {
    vm.try_guest_exec("/bin/cat", &["/var/lib/sealcam/update/outcome.json"], 60)
        .map(|(_, out, _)| out)
        .unwrap_or_default()
}

/// RAUC's progress, as its service reports it (`(isi) PERCENT "STEP" DEPTH`;
/// empty while the guest reboots).
fn rauc_progress(vm: &Machine) -> String {
    let Some((0, out, _)) = vm.try_guest_exec(
        "/usr/bin/busctl",
        &[
            "get-property",
            "de.pengutronix.rauc",
            "/",
            "de.pengutronix.rauc.Installer",
            "Progress",
        ],
        30,
    ) else {
        return String::new();
    };
    out
}

/// Issue 26: a camera running release N is offered a bundle signed by a
/// key it does not trust, which it refuses without touching either slot.
/// Then a release that boots but cannot record (`tests/qemu/overlay-unproven`): it fetches it over
/// its own connection, installs it into slot B, boots it once on trial,
/// gives it up when no fragment is acknowledged in time, falls back to
/// slot A, and refuses it when it is offered again. Then it is offered a
/// good release; the power is cut while RAUC writes it into slot B, and the
/// camera boots slot A, says the install did not finish, and installs it
/// again, tries it, and marks it good only once the new system has sealed,
/// signed and delivered a fragment. Nothing is
/// lost or duplicated across the updates that is not declared.
#[test]
fn a_release_that_cannot_record_falls_back_and_a_good_one_is_marked_good() {
    let unproven = bundle("98.0", "overlay-unproven");
    let next = bundle("99.0", "overlay");
    let (w, ingest) = fleet();
    let mut vm = boot_with(
        Arch::Amd64,
        &w,
        &ingest,
        "\n[update]\nenabled = true\ninterval_s = 10\nhealth_timeout_s = 240\n",
    );
    vm.wait_for_console("sealcam-firstboot: camera qemu-cam provisioned", 600);
    wait_for_fragments(&ingest, 3);
    assert_eq!(booted_slot(&vm), Some(("A".into(), "good".into())));

    // Signed by a key the camera's keyring does not hold: fetched, and
    // refused by RAUC's signature check before either slot is touched.
    let stranger = signed_by_a_stranger(&w, &unproven);
    publish(&w, &ingest, &stranger, "98.0");
    assert!(
        wait_until(900, || outcome(&vm).contains("RAUC does not accept")),
        "a bundle signed by another key was not refused: {}",
        outcome(&vm)
    );
    assert_eq!(booted_slot(&vm), Some(("A".into(), "good".into())));
    assert!(!vm.console_text().contains("sealcam: booting slot B"));
    withdraw(&w, &ingest, "98.0");

    // The release that cannot record: tried once, given up for some hours
    // (to the camera it looks as a network outage would), fallen back.
    publish(&w, &ingest, &unproven, "98.0");
    vm.wait_for_console("sealcam: booting slot B", 1800);
    vm.wait_for_console("this test release cannot record", 600);
    vm.wait_for_console_times("sealcam: booting slot A", 2, 900);
    assert!(
        wait_until(600, || booted_slot(&vm)
            == Some(("A".into(), "good".into()))),
        "the camera did not fall back to a good slot A: {:?}",
        booted_slot(&vm)
    );
    assert_eq!(
        in_guest(&vm, "/bin/cat", &["/usr/lib/sealcam/release"]).trim(),
        "0.1.0-1"
    );
    let waiting = in_guest(&vm, "/bin/cat", &["/var/lib/sealcam-install/waiting.json"]);
    assert!(waiting.contains("98.0"), "{waiting}");
    // Still offered, it is declined without a download, not tried again
    // before its time.
    let sealcamd_log = || {
        vm.try_guest_exec(
            "/bin/journalctl",
            &["--no-pager", "-b", "-u", "sealcamd.service"],
            60,
        )
        .map(|(_, out, _)| out)
        .unwrap_or_default()
    };
    assert!(
        wait_until(900, || sealcamd_log()
            .contains("gave up after an unproven trial; not fetched before")),
        "the given-up release was not declined: {}",
        outcome(&vm)
    );
    assert!(
        outcome(&vm).contains(r#""final": false"#)
            && outcome(&vm).contains(r#""retry_after_unix""#),
        "{}",
        outcome(&vm)
    );
    assert_eq!(
        vm.console_text().matches("sealcam: booting slot B").count(),
        1
    );

    // The good release, and the power cut while RAUC writes it into slot
    // B: the camera boots the release it ran, says the install did not
    // finish, and installs it again.
    publish(&w, &ingest, &next, "99.0");
    assert!(
        wait_until(1800, || {
            // Gently: the guest is downloading and then verifying.
            std::thread::sleep(std::time::Duration::from_millis(500));
            rauc_progress(&vm).contains("Copying image to")
        }),
        "RAUC was not seen writing 99.0 into slot B: {}",
        outcome(&vm)
    );
    vm.power_cut();
    vm.wait_for_console_times("sealcam: booting slot A", 3, 900);
    assert!(
        wait_until(600, || outcome(&vm).contains("did not finish")),
        "the cut install was not reported: {}",
        outcome(&vm)
    );
    assert_eq!(booted_slot(&vm), Some(("A".into(), "good".into())));
    assert_eq!(
        in_guest(&vm, "/bin/cat", &["/usr/lib/sealcam/release"]).trim(),
        "0.1.0-1"
    );
    assert_eq!(
        vm.console_text().matches("sealcam: booting slot B").count(),
        1,
        "the half-written slot B was booted"
    );
    vm.wait_for_console_times("sealcam: booting slot B", 2, 1800);
    let after_update = stored_count(&ingest);
    assert!(
        wait_until(900, || booted_slot(&vm)
            == Some(("B".into(), "good".into()))),
        "slot B was not marked good: {:?}",
        booted_slot(&vm)
    );
    assert_eq!(
        in_guest(&vm, "/bin/cat", &["/usr/lib/sealcam/release"]).trim(),
        "99.0"
    );
    wait_for_fragments(&ingest, after_update + 3);
    drop(vm);

    let report = verify(&w, &ingest);
    assert!(report.contains("undeclared gaps: none"), "{report}");
}
