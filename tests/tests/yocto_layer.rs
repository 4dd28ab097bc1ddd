//! meta-sealcam: its crate list follows Cargo.lock, and it carries what
//! `yocto-check-layer` asks of a layer. (The recipes are linted by
//! `scripts/lint-yocto`, which `scripts/test` runs.)

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
