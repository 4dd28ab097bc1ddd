//! The Raspberry Pi 4 image (issue 26): built by `scripts/image --board
//! rpi4` as a user gets it (compressed, with a block map), written to a
//! "card" with `bmaptool copy` as a user flashes it, and inspected: we have
//! no Raspberry Pi to boot it on. The QEMU boards' images are booted by the
//! tests in qemu.rs.
//!
//! Needs root (debootstrap, chroot), which `scripts/test` has.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A partition of the card: its GPT name, first byte and length.
struct Partition {
    name: String,
    start: u64,
    size: u64,
}

fn partitions(card: &Path) -> Vec<Partition> {
    let json = run("sfdisk", &["--json", card.to_str().unwrap()]);
    let table: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(table["partitiontable"]["label"], "gpt", "{json}");
    assert_eq!(table["partitiontable"]["sectorsize"], 512, "{json}");
    table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Partition {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            start: p["start"].as_u64().unwrap() * 512,
            size: p["size"].as_u64().unwrap() * 512,
        })
        .collect()
}

/// The ext4 partition `part` of `card`, copied out for debugfs.
fn extract(card: &Path, part: &Partition, scratch: &Path) -> PathBuf {
    let fs = scratch.join(format!("{}.ext4", part.name));
    if !fs.exists() {
        run(
            "dd",
            &[
                &format!("if={}", card.display()),
                &format!("of={}", fs.display()),
                "bs=1M",
                &format!("skip={}", part.start >> 20),
                &format!("count={}", part.size >> 20),
                "conv=sparse",
                "status=none",
            ],
        );
    }
    fs
}

/// What debugfs says to `request` on the file system `fs`.
fn debugfs(fs: &Path, request: &str) -> String {
    run("debugfs", &["-R", request, fs.to_str().unwrap()])
}

/// No image leaves it to a default who may sign the camera's updates: the
/// development key is used only when asked for by name.
#[test]
fn an_image_is_built_only_for_a_named_release_key() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/image"))
        .args(["--board", "rpi4"])
        .output()
        .expect("bash runs scripts/image");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("say who signs this camera's updates: --release-cert FILE"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_rpi4_image_has_its_partitions_boot_files_fstab_and_update_slots() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/image"))
        .args(["--board", "rpi4", "--version", "1.0.0", "--dev-release-key"])
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs scripts/image");
    assert!(out.status.success(), "scripts/image --board rpi4 failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let zst = PathBuf::from(stdout.lines().last().unwrap().trim());
    assert!(
        zst.to_string_lossy()
            .ends_with("sealcam-rpi4-1.0.0.img.zst"),
        "{}",
        zst.display()
    );
    let bmap = zst.with_extension("bmap");
    assert!(bmap.is_file(), "no block map beside {}", zst.display());

    // Flashed as a user would: bmaptool checks each mapped range's hash.
    let scratch = tempfile::tempdir().unwrap();
    let card = scratch.path().join("card.img");
    run(
        "bmaptool",
        &[
            "-q",
            "copy",
            "--bmap",
            bmap.to_str().unwrap(),
            zst.to_str().unwrap(),
            card.to_str().unwrap(),
        ],
    );

    // Four partitions, in order.
    let parts = partitions(&card);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["boot", "rootfs-a", "rootfs-b", "data"]);
    let (boot, slot_a, data) = (&parts[0], &parts[1], &parts[3]);
    assert_eq!(parts[1].size, parts[2].size, "the slots differ in size");

    // The boot partition: the Pi's firmware, its device tree, U-Boot as
    // the kernel it starts, the A/B boot script and its environment.
    let fat = format!("{}@@{}", card.display(), boot.start);
    let listing = run("mdir", &["-b", "-i", &fat, "::/"]);
    for file in [
        "start4.elf",
        "fixup4.dat",
        "bcm2711-rpi-4-b.dtb",
        "u-boot.bin",
        "config.txt",
        "boot.scr",
        "uboot.env",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!("/{file}"))),
            "{file} is not on the boot partition:\n{listing}"
        );
    }
    let config = run("mtype", &["-i", &fat, "::/config.txt"]);
    assert!(config.contains("kernel=u-boot.bin"), "{config}");
    assert!(config.contains("arm_64bit=1"), "{config}");
    let script = run("mtype", &["-i", &fat, "::/boot.scr"]);
    assert!(script.contains("root=PARTLABEL=${label}"), "{script}");
    assert!(script.contains("rauc.slot=${chosen}"), "{script}");
    // A kernel that does not start restarts the board (and a slot on
    // trial is not chosen again).
    assert!(script.contains("reset"), "{script}");

    // Slot A: Debian's arm64 kernel, the packaged sealcamd for aarch64,
    // mounts by partition name, RAUC's slots and the release keyring.
    let fs = extract(&card, slot_a, scratch.path());
    let fstab = debugfs(&fs, "cat /etc/fstab");
    for line in [
        "PARTLABEL=boot  /boot/firmware  vfat",
        "PARTLABEL=data  /data  ext4",
        "/data/etc-sealcam  /etc/sealcam  none  bind",
        "/data/sealcam  /var/lib/sealcam  none  bind",
    ] {
        assert!(fstab.contains(line), "fstab lacks {line:?}:\n{fstab}");
    }
    let system = debugfs(&fs, "cat /etc/rauc/system.conf");
    assert!(system.contains("compatible=sealcam-rpi4"), "{system}");
    assert!(
        system.contains("device=/dev/disk/by-partlabel/rootfs-b"),
        "{system}"
    );
    let keyring = debugfs(&fs, "cat /etc/rauc/keyring.pem");
    assert!(keyring.contains("BEGIN CERTIFICATE"), "{keyring}");
    let release = debugfs(&fs, "cat /usr/lib/os-release");
    assert!(release.contains("IMAGE_ID=sealcam-rpi4"), "{release}");
    assert!(release.contains("IMAGE_VERSION=1.0.0"), "{release}");
    assert!(
        release.contains("SEALCAM_RELEASE_KEY=development"),
        "{release}"
    );
    // A slot that hangs is restarted by the board's watchdog.
    let watchdog = debugfs(&fs, "cat /etc/systemd/system.conf.d/sealcam-watchdog.conf");
    assert!(watchdog.contains("RuntimeWatchdogSec=60s"), "{watchdog}");
    let fw_env = debugfs(&fs, "cat /etc/fw_env.config");
    assert!(fw_env.contains("/boot/firmware/uboot.env"), "{fw_env}");
    let sealcamd = scratch.path().join("sealcamd");
    debugfs(
        &fs,
        &format!("dump /usr/bin/sealcamd {}", sealcamd.display()),
    );
    let kind = run("file", &["-b", sealcamd.to_str().unwrap()]);
    assert!(kind.contains("ARM aarch64"), "{kind}");
    let kernels = debugfs(&fs, "ls -l /boot");
    assert!(kernels.contains("vmlinuz-"), "{kernels}");
    assert!(kernels.contains("initrd.img-"), "{kernels}");

    // The data partition: what outlives updates, owned by the camera's
    // fixed system user.
    let listing = debugfs(&extract(&card, data, scratch.path()), "ls -l /");
    for dir in ["etc-sealcam", "sealcam", "journal", "rauc"] {
        assert!(listing.contains(dir), "{dir} missing on data:\n{listing}");
    }
}
