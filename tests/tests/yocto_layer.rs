//! meta-sealcam: its crate list follows Cargo.lock, it carries what
//! `yocto-check-layer` asks of a layer, `scripts/lint-yocto` lints every
//! file of it, sealcam-image is the A/B disk (boot, root slots A and B,
//! data) with the mounts that keep config, spool and journal across
//! updates, and the real rauc takes the layer's system.conf and only
//! release-signed bundles. A bitbake parse needs Yocto trees CI does not
//! have: `the_layer_parses_with_bitbake` runs it when given them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sealcam_system_tests::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check_crates(lock: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(root().join("scripts/yocto-crates"))
        .arg("--check")
        .arg("--lock")
        .arg(lock)
        .output()
        .unwrap()
}

#[test]
fn the_crate_list_follows_cargo_lock_and_drift_is_caught() {
    let out = check_crates(&root().join("Cargo.lock"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A lock file with one more crate than the list.
    let dir = tempfile::tempdir().unwrap();
    let drifted = dir.path().join("Cargo.lock");
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    std::fs::write(
        &drifted,
        format!(
            "{lock}\n[[package]]\nname = \"zz-new-crate\"\nversion = \"1.0.0\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
             checksum = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = check_crates(&drifted);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("run scripts/yocto-crates"),
        "{}",
        text(&out.stderr)
    );

    // Every crates.io package of the lock file, with its checksum.
    let inc = std::fs::read_to_string(
        root().join("yocto-layer/meta-sealcam/recipes-sealcam/sealcam/sealcam-crates.inc"),
    )
    .unwrap();
    assert!(inc.contains("crate://crates.io/rustls/"), "{inc}");
    assert!(inc.contains("crate://crates.io/gstreamer/"));
    assert!(!inc.contains("crate://crates.io/sealcamd/"));
}

#[test]
fn the_layer_has_what_yocto_check_layer_asks_for() {
    let layer = root().join("yocto-layer/meta-sealcam");
    let conf = std::fs::read_to_string(layer.join("conf/layer.conf")).unwrap();
    for line in [
        "BBFILE_COLLECTIONS += \"sealcam\"",
        "BBFILE_PRIORITY_sealcam",
        "LAYERDEPENDS_sealcam = \"core\"",
        "LAYERSERIES_COMPAT_sealcam = \"scarthgap wrynose\"",
        "raspberrypi:${LAYERDIR}/dynamic-layers/raspberrypi",
        "tegra:${LAYERDIR}/dynamic-layers/tegra",
        "tpm-layer:${LAYERDIR}/dynamic-layers/tpm-layer",
    ] {
        assert!(conf.contains(line), "layer.conf lacks {line:?}");
    }
    let readme = std::fs::read_to_string(layer.join("README.md")).unwrap();
    for part in ["Maintain", "patches", "bitbake-layers add-layer"] {
        assert!(readme.contains(part), "README.md lacks {part:?}");
    }
    assert!(layer.join("SECURITY.md").exists());
    // Each dynamic layer holds recipes for the collection it is named after.
    for dynamic in ["raspberrypi", "tegra", "tpm-layer"] {
        let dir = layer.join("dynamic-layers").join(dynamic);
        assert!(dir.is_dir(), "{dynamic}");
    }
    // The recipe installs the files the packages need from the workspace.
    let recipe =
        std::fs::read_to_string(layer.join("recipes-sealcam/sealcam/sealcam_0.1.0.bb")).unwrap();
    for path in [
        "systemd/sealcamd.service",
        "systemd/sealcam-firstboot.service",
        "systemd/sealcam-ingest.service",
        "systemd/sealcam-ca.service",
        "configs/sealcam-ingest.example.toml",
        "configs/boards/",
        "systemd/boards/",
    ] {
        assert!(recipe.contains(path), "{path}");
        assert!(root().join(path).exists(), "{path} is not in the workspace");
    }
    // The CA is its own package, user and unit; the ingest only joins its
    // group (to reach the socket).
    for line in [
        "-p sealcam-ca",
        "SYSTEMD_SERVICE:sealcam-ca = \"sealcam-ca.service\"",
        "--groups sealcam-ca",
        "USERADD_PARAM:sealcam-ca = \"--system --gid sealcam-ca",
    ] {
        assert!(recipe.contains(line), "the recipe lacks {line:?}");
    }
}

fn layer() -> PathBuf {
    root().join("yocto-layer/meta-sealcam")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(layer().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn lint_yocto(dir: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/lint-yocto"));
    if let Some(dir) = dir {
        cmd.arg(dir);
    }
    cmd.output().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let old = std::fs::read_to_string(path).unwrap();
    assert!(old.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, old.replacen(from, to, 1)).unwrap();
}

#[test]
fn lint_yocto_covers_every_file_of_the_layer_and_passes() {
    let out = lint_yocto(None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("files lint clean"),
        "{}",
        text(&out.stdout)
    );

    // One fault of each kind in a copy: each is found, in its file.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("meta-sealcam");
    copy_dir(&layer(), &copy);
    edit(
        &copy.join("conf/layer.conf"),
        "BBFILES += \"\\",
        "BBFILES += \" \\",
    );
    edit(
        &copy.join("files/wic/sealcam-ab.wks.in"),
        "--part-name data",
        "--part-nam data",
    );
    std::fs::rename(
        copy.join("recipes-core/sealcam-data/files/data.mount"),
        copy.join("recipes-core/sealcam-data/files/sealcam-data.mount"),
    )
    .unwrap();
    edit(&copy.join("files/wic/sealcam-ab-grub.cfg"), "fi\n", "\n");
    std::fs::write(copy.join("files/wic/notes.txt"), "a file no rule covers\n").unwrap();
    let out = lint_yocto(Some(&copy));
    assert!(!out.status.success());
    let found = text(&out.stdout);
    for finding in [
        "conf/layer.conf:6:error:oelint.vars.inconspaces",
        "sealcam-ab.wks.in:18: part has no option '--part-nam'",
        "sealcam-data.mount: Where=/data needs the unit name data.mount",
        "sealcam-ab-grub.cfg: grub-script-check",
        "notes.txt: lint-yocto has no rule for this file",
    ] {
        assert!(found.contains(finding), "no {finding:?} in:\n{found}");
    }
}

/// One `part` line of a wks file: its mount point and its options.
struct Part {
    mountpoint: Option<String>,
    options: std::collections::HashMap<String, Option<String>>,
}

impl Part {
    fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|v| v.as_deref())
    }
}

fn wks_parts(wks: &str) -> Vec<Part> {
    let flags = ["--active", "--no-fstab-update", "--use-uuid", "--use-label"];
    wks.lines()
        .filter(|l| l.starts_with("part "))
        .map(|line| {
            let mut words = line.split_whitespace().skip(1).peekable();
            let mut part = Part {
                mountpoint: None,
                options: Default::default(),
            };
            if let Some(w) = words.peek() {
                if !w.starts_with("--") {
                    part.mountpoint = words.next().map(str::to_string);
                }
            }
            while let Some(word) = words.next() {
                let (name, inline) = match word.split_once('=') {
                    Some((n, v)) => (n, Some(v.trim_matches('"').to_string())),
                    None => (word, None),
                };
                let value = if inline.is_some() || flags.contains(&name) {
                    inline
                } else {
                    words.next().map(|v| v.trim_matches('"').to_string())
                };
                part.options.insert(name.to_string(), value);
            }
            part
        })
        .collect()
}

#[test]
fn the_image_is_the_ab_layout_with_its_mounts() {
    let image = read("recipes-core/images/sealcam-image.bb");
    for line in [
        "WKS_FILE = \"sealcam-ab.wks.in\"",
        "IMAGE_FSTYPES = \"ext4 wic.zst wic.bmap\"",
        "IMAGE_ROOTFS_MAXSIZE = \"${@int(d.getVar('SEALCAM_SLOT_MB')) * 1024}\"",
        "sealcam-data",
        "kernel-image",
        "REQUIRED_DISTRO_FEATURES = \"systemd tpm2\"",
        "VOLATILE_LOG_DIR",
    ] {
        assert!(image.contains(line), "sealcam-image.bb lacks {line:?}");
    }

    // The four partitions, in this order: GRUB finds the slots by number.
    let wks = read("files/wic/sealcam-ab.wks.in");
    assert!(wks.contains("bootloader --ptable gpt"), "{wks}");
    let parts = wks_parts(&wks);
    let names: Vec<_> = parts
        .iter()
        .map(|p| p.get("--part-name").unwrap())
        .collect();
    assert_eq!(names, ["boot", "rootfs-a", "rootfs-b", "data"]);
    let fstypes: Vec<_> = parts.iter().map(|p| p.get("--fstype").unwrap()).collect();
    assert_eq!(fstypes, ["vfat", "ext4", "ext4", "ext4"]);
    assert_eq!(parts[0].get("--label"), Some("SEALBOOT"));
    assert_eq!(parts[0].get("--source"), Some("bootimg-efi"));
    // The EFI system partition's type, which firmware looks for.
    assert_eq!(
        parts[0].get("--part-type"),
        Some("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    );
    assert_eq!(parts[3].get("--label"), Some("sealcam-data"));
    assert_eq!(parts[3].get("--source"), None, "data starts empty");
    for slot in &parts[1..3] {
        assert_eq!(slot.get("--source"), Some("rootfs"));
        assert_eq!(slot.get("--fixed-size"), Some("${SEALCAM_SLOT_MB}M"));
    }
    assert_eq!(parts[1].mountpoint.as_deref(), Some("/"));
    // The root file system mounts the partitions itself: an update's root
    // file system is not written by wic.
    for part in &parts {
        assert!(part.options.contains_key("--no-fstab-update"));
    }

    // GRUB: the slot's own kernel, from partition 2 or 3, booted with the
    // GPT name as root and the RAUC bootname of system.conf.
    // It is found on the layer's BBPATH, as the wks files are.
    assert!(
        wks.contains("--configfile=\"${SEALCAM_GRUB_CFG}\""),
        "{wks}"
    );
    assert!(image.contains("'files/wic/sealcam-ab-grub.cfg'"), "{image}");
    let configfile = "files/wic/sealcam-ab-grub.cfg";
    let grub = read(configfile);
    for line in [
        "linux (hd0,gpt2)/boot/vmlinuz root=PARTLABEL=rootfs-a rauc.slot=A",
        "linux (hd0,gpt3)/boot/vmlinuz root=PARTLABEL=rootfs-b rauc.slot=B",
        "load_env",
        "save_env A_TRY A_OK B_TRY B_OK ORDER",
    ] {
        assert!(grub.contains(line), "{configfile} lacks {line:?}");
    }
    assert_eq!(names.iter().position(|n| *n == "rootfs-a"), Some(1));
    assert_eq!(names.iter().position(|n| *n == "rootfs-b"), Some(2));
    let out = Command::new("grub-script-check")
        .arg(layer().join(configfile))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stdout));

    // The mounts: unit, what, where, as the layout names them.
    let recipe = read("recipes-core/sealcam-data/sealcam-data_1.0.bb");
    for (unit, what, where_) in [
        ("boot-efi.mount", "/dev/disk/by-partlabel/boot", "/boot/efi"),
        ("data.mount", "/dev/disk/by-partlabel/data", "/data"),
        ("etc-sealcam.mount", "/data/etc-sealcam", "/etc/sealcam"),
        ("var-lib-sealcam.mount", "/data/sealcam", "/var/lib/sealcam"),
        ("var-log-journal.mount", "/data/journal", "/var/log/journal"),
    ] {
        let body = read(&format!("recipes-core/sealcam-data/files/{unit}"));
        assert!(body.contains(&format!("\nWhat={what}\n")), "{unit}: {body}");
        assert!(
            body.contains(&format!("\nWhere={where_}\n")),
            "{unit}: {body}"
        );
        assert!(
            recipe.contains(&format!("file://{unit}")),
            "{unit} not fetched"
        );
        assert!(
            recipe.contains(&format!("    {unit} \\")),
            "{unit} not in SYSTEMD_SERVICE"
        );
        if what.starts_with("/data/") {
            assert!(body.contains("Options=bind"), "{unit}");
            assert!(body.contains("After=sealcam-data-setup.service"), "{unit}");
        }
    }
}

#[test]
fn the_first_boot_seeds_the_data_partition_and_later_boots_keep_it() {
    // The setup script, run against a scratch root: the same commands, with
    // /data and /etc/sealcam moved under it.
    let dir = tempfile::tempdir().unwrap();
    let rootdir = dir.path();
    let script = read("recipes-core/sealcam-data/files/sealcam-data-setup")
        .replace("data=/data", &format!("data={}/data", rootdir.display()))
        .replace(
            "/etc/sealcam",
            &format!("{}/etc/sealcam", rootdir.display()),
        )
        // Owners and groups need root and the camera's users: not here.
        .replace(" -o sealcam -g sealcam", "")
        .replace(" -g systemd-journal", "");
    let script_path = rootdir.join("setup");
    std::fs::write(&script_path, script).unwrap();
    std::fs::create_dir_all(rootdir.join("etc/sealcam")).unwrap();
    std::fs::create_dir_all(rootdir.join("data")).unwrap();
    std::fs::write(rootdir.join("etc/sealcam/sealcamd.toml"), "image = 1\n").unwrap();
    // A copy cut short by a power loss is started over.
    std::fs::create_dir_all(rootdir.join("data/etc-sealcam.new")).unwrap();
    std::fs::write(rootdir.join("data/etc-sealcam.new/half"), "x").unwrap();

    let run = || {
        let out = Command::new("sh").arg(&script_path).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run();
    let seeded = rootdir.join("data/etc-sealcam/sealcamd.toml");
    assert_eq!(std::fs::read_to_string(&seeded).unwrap(), "image = 1\n");
    assert!(!rootdir.join("data/etc-sealcam/half").exists());
    assert!(!rootdir.join("data/etc-sealcam.new").exists());
    for made in ["data/sealcam", "data/journal", "data/rauc"] {
        assert!(rootdir.join(made).is_dir(), "{made}");
    }

    // The camera's own config survives an update that ships another one.
    std::fs::write(&seeded, "camera = 1\n").unwrap();
    std::fs::write(rootdir.join("etc/sealcam/sealcamd.toml"), "image = 2\n").unwrap();
    run();
    assert_eq!(std::fs::read_to_string(&seeded).unwrap(), "camera = 1\n");
}

/// The value of `VAR ??= "..."` or `VAR = "..."` in a recipe.
fn assignment<'a>(recipe: &'a str, var: &str) -> &'a str {
    recipe
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(var)?.trim_start();
            let rest = rest
                .strip_prefix("??=")
                .or_else(|| rest.strip_prefix('='))?;
            Some(rest.trim().trim_matches('"'))
        })
        .unwrap_or_else(|| panic!("no {var} in the recipe"))
}

fn openssl_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    (key, cert)
}

/// A bundle of an ext4 root file system, as sealcam-bundle makes one.
fn rauc_bundle(
    dir: &Path,
    name: &str,
    compatible: &str,
    format: &str,
    signer: &(PathBuf, PathBuf),
) -> PathBuf {
    let content = dir.join(format!("{name}-content"));
    std::fs::create_dir_all(&content).unwrap();
    let rootfs = content.join("rootfs.ext4");
    // Bytes that do not compress: squashfs needs more than a block.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = vec![0u8; 64 * 1024];
    for b in bytes.iter_mut() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        *b = (state >> 33) as u8;
    }
    std::fs::write(&rootfs, &bytes).unwrap();
    let section = if format == "plain" {
        String::new()
    } else {
        format!("[bundle]\nformat={format}\n\n")
    };
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={compatible}\nversion=0.1.0\n\n{section}\
             [image.rootfs]\nfilename=rootfs.ext4\n"
        ),
    )
    .unwrap();
    let bundle = dir.join(format!("{name}.raucb"));
    let out = Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", signer.1.display()))
        .arg(format!("--key={}", signer.0.display()))
        .arg(&content)
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    bundle
}

#[test]
fn rauc_takes_the_layers_system_conf_and_only_release_signed_bundles() {
    let rauc = layer().join("dynamic-layers/rauc/recipes-core");
    let conf_recipe = std::fs::read_to_string(rauc.join("rauc/sealcam-rauc-conf_1.0.bb")).unwrap();
    let bundle_recipe =
        std::fs::read_to_string(rauc.join("bundles/sealcam-bundle_0.1.0.bb")).unwrap();
    // One compatible for the camera's config and the bundles.
    let compatible = assignment(&conf_recipe, "SEALCAM_RAUC_COMPATIBLE");
    assert_eq!(compatible, "sealcam-${MACHINE}");
    assert_eq!(
        assignment(&bundle_recipe, "SEALCAM_RAUC_COMPATIBLE"),
        compatible
    );
    assert_eq!(
        assignment(&bundle_recipe, "RAUC_BUNDLE_COMPATIBLE"),
        "${SEALCAM_RAUC_COMPATIBLE}"
    );
    for (var, value) in [
        ("RAUC_BUNDLE_FORMAT", "verity"),
        ("RAUC_BUNDLE_SLOTS", "rootfs"),
        ("RAUC_SLOT_rootfs", "sealcam-image"),
        ("RAUC_SLOT_rootfs[fstype]", "ext4"),
    ] {
        assert_eq!(assignment(&bundle_recipe, var), value, "{var}");
    }
    assert!(bundle_recipe.contains("\ninherit bundle\n"));
    assert!(conf_recipe.contains("RPROVIDES:${PN} = \"virtual-rauc-conf\""));
    let image_append = std::fs::read_to_string(rauc.join("images/sealcam-image.bbappend")).unwrap();
    assert!(
        image_append.contains("rauc sealcam-rauc-conf"),
        "{image_append}"
    );
    assert!(image_append.contains("rauc-mark-good"), "{image_append}");

    // system.conf as sealcam-rauc-conf installs it (its sed), for
    // qemux86-64; the keyring path points into the scratch directory, as
    // /etc/rauc would on the camera.
    let dir = tempfile::tempdir().unwrap();
    let release = openssl_cert(dir.path(), "release");
    let other = openssl_cert(dir.path(), "other");
    let keyring_name = assignment(&conf_recipe, "SEALCAM_KEYRING_NAME");
    let system_conf = std::fs::read_to_string(rauc.join("rauc/files/system.conf"))
        .unwrap()
        .replace("@COMPATIBLE@", "sealcam-qemux86-64")
        .replace("@KEYRING@", keyring_name);
    // The slots are the wks file's partitions; their bootnames are GRUB's.
    for line in [
        "device=/dev/disk/by-partlabel/rootfs-a\ntype=ext4\nbootname=A",
        "device=/dev/disk/by-partlabel/rootfs-b\ntype=ext4\nbootname=B",
        "bootloader=grub\ngrubenv=/boot/efi/EFI/BOOT/grubenv",
        "data-directory=/data/rauc",
    ] {
        assert!(system_conf.contains(line), "system.conf lacks {line:?}");
    }
    let system_conf = system_conf.replace(
        &format!("path=/etc/rauc/{keyring_name}"),
        &format!("path={}", release.1.display()),
    );
    let conf = dir.path().join("system.conf");
    std::fs::write(&conf, system_conf).unwrap();
    let info = |bundle: &Path| {
        Command::new("rauc")
            .arg(format!("--conf={}", conf.display()))
            .arg("info")
            .arg(bundle)
            .output()
            .unwrap()
    };

    // The real rauc reads the config (it refuses unknown keys) and takes a
    // verity bundle signed with the release key.
    let good = rauc_bundle(dir.path(), "good", "sealcam-qemux86-64", "verity", &release);
    let out = info(&good);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("'sealcam-qemux86-64'"),
        "{}",
        text(&out.stdout)
    );

    // Another key's bundle and an unverifiable plain bundle are refused.
    let foreign = rauc_bundle(
        dir.path(),
        "foreign",
        "sealcam-qemux86-64",
        "verity",
        &other,
    );
    let out = info(&foreign);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("signature verification failed"),
        "{}",
        text(&out.stderr)
    );
    let plain = rauc_bundle(dir.path(), "plain", "sealcam-qemux86-64", "plain", &release);
    let out = info(&plain);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("'plain' not allowed"),
        "{}",
        text(&out.stderr)
    );
}

/// A bitbake parse of the layer needs openembedded-core and bitbake, which
/// CI does not have: run it with SEALCAM_OE_CORE naming an oe-core checkout
/// (bitbake in its bitbake/) and, for the RAUC parts, SEALCAM_META_RAUC
/// naming meta-rauc of the same series:
/// `cargo test -p sealcam-system-tests --test yocto_layer -- --ignored`.
#[test]
#[ignore = "needs openembedded-core and bitbake trees (SEALCAM_OE_CORE)"]
fn the_layer_parses_with_bitbake() {
    let oe_core = std::env::var("SEALCAM_OE_CORE").expect("SEALCAM_OE_CORE");
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/yocto-parse")).arg(&oe_core);
    let meta_rauc = std::env::var("SEALCAM_META_RAUC").ok();
    if let Some(meta_rauc) = &meta_rauc {
        cmd.arg(meta_rauc);
    }
    let out = cmd.output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for line in [
        "sealcam-image WKS_FILE=sealcam-ab.wks.in",
        "/files/wic/sealcam-ab.wks.in configfile=/",
        "/files/wic/sealcam-ab-grub.cfg exists=True\n",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    // wic's own parser, where the oe-core tree still carries wic.
    if Path::new(&oe_core).join("scripts/lib/wic").is_dir() {
        for line in [
            "wic: ptable=gpt",
            "wic: part name=boot fstype=vfat label=SEALBOOT source=bootimg-efi",
            "wic: part name=rootfs-a fstype=ext4",
            "wic: part name=rootfs-b fstype=ext4",
            "wic: part name=data fstype=ext4 label=sealcam-data source=None",
        ] {
            assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
        }
    }
    if meta_rauc.is_some() {
        for line in [
            "sealcam-bundle RAUC_BUNDLE_COMPATIBLE=sealcam-qemux86-64",
            "sealcam-bundle RAUC_SLOT_rootfs=sealcam-image",
            "sealcam-rauc-conf SEALCAM_RAUC_COMPATIBLE=sealcam-qemux86-64",
        ] {
            assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
        }
    }
}
