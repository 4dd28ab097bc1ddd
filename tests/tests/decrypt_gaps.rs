//! `sealcam decrypt` fails, as `verify` does, when the clip would jump
//! over sequences the ingest deleted, unless the user allows it by name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

fn decrypt(w: &World, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "decrypt",
        "fetched",
        "--key",
        "alice.key",
        "--out",
        "clip.mkv",
        "--owner",
        "owner.pub",
    ];
    args.extend_from_slice(extra);
    run("sealcam", &args, w.path())
}

#[test]
fn a_fragment_deleted_on_the_ingest_fails_decrypt_unless_allowed() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 120);
    // The operator deletes fragment 2 (its key and data objects).
    let fragment_2: Vec<_> = stored_object_files(&ingest.data)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == format!("{:020}", 2).as_str())
        })
        .collect();
    assert!(!fragment_2.is_empty(), "fragment 2 is stored");
    for p in &fragment_2 {
        std::fs::remove_file(p).unwrap();
    }
    // fetch saves what there is and fails verification on the gap.
    let out = w.fetch_with(&ingest, "cam1", "fetched", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("GAP:       sequences 2..=2 are missing"),
        "{}",
        text(&out.stdout)
    );

    let out = decrypt(&w, &[]);
    assert!(!out.status.success(), "decrypt succeeded over a gap");
    let err = text(&out.stderr);
    assert!(err.contains("sequences 2..=2 are missing"), "{err}");
    assert!(err.contains("--allow-undeclared-gaps"), "{err}");
    assert!(!w.path().join("clip.mkv").exists());

    let out = decrypt(&w, &["--allow-undeclared-gaps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("sequences 2..=2 are missing"));
    assert!(text(&out.stdout).contains("decrypted 3 fragments"));
    assert!(w.path().join("clip.mkv").exists());
}
