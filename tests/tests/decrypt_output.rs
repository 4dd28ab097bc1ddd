//! Decrypted video is written owner-only, never through a symlink at the
//! output path, and no partial file stays behind when decrypt fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use sealcam_system_tests::*;

fn decrypt(w: &World, key: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "decrypt",
        "fetched",
        "--key",
        key,
        "--out",
        out,
        "--owner",
        "owner.pub",
    ];
    args.extend_from_slice(extra);
    run("sealcam", &args, w.path())
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn output_is_owner_only_replaces_a_symlink_and_leaves_nothing_on_failure() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    w.fetch(&ingest, "cam1", "fetched");
    std::fs::create_dir(w.path().join("out")).unwrap();
    let victim = w.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();

    for (name, extra) in [
        ("clip.mkv", &[][..]),
        ("clip.mp4", &["--format", "mp4"][..]),
    ] {
        // Someone planted a symlink where the clip will go.
        let out = w.path().join("out").join(name);
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        let res = decrypt(&w, "alice.key", &format!("out/{name}"), extra);
        assert!(res.status.success(), "{}", text(&res.stderr));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{name}");
        let meta = std::fs::symlink_metadata(&out).unwrap();
        assert!(meta.file_type().is_file(), "{name} is still a symlink");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }

    // A key that is not a recipient fails after the output was begun:
    // neither the clip nor a temporary file stays.
    run_ok("sealcam", &["keygen", "--out", "bob"], w.path());
    let before = names(&w.path().join("out"));
    for (name, extra) in [
        ("fail.mkv", &[][..]),
        ("fail.mp4", &["--format", "mp4"][..]),
    ] {
        let res = decrypt(&w, "bob.key", &format!("out/{name}"), extra);
        assert!(!res.status.success());
        assert_eq!(names(&w.path().join("out")), before, "{name}");
    }
}
