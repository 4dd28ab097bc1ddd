//! Event marks end to end: a trigger left with `sealcamd event` while the
//! camera records is sealed into the fragment being recorded, found by
//! `sealcam events` with the consumer key, and `decrypt --from-event`
//! starts the clip there. The ingest stores only ciphertext of one size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

/// Frames `ffprobe` counts in a video file.
fn frames_in(w: &World, file: &str) -> u64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(w.path().join(file))
        .output()
        .expect("ffprobe (ffmpeg)");
    text(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_trigger_is_sealed_found_and_played_from() {
    let w = World::new();
    let ingest = w.start_ingest();
    // 8 s at 30 fps, 1 s fragments.
    let cfg = w.camera("cam1", &ingest.url(), 240, 1000);
    let cfg_s = cfg.to_str().unwrap().to_owned();

    // Off by default: the command says how to turn it on.
    let off = run("sealcamd", &["event", "--config", &cfg_s], w.path());
    assert!(!off.status.success());
    assert!(
        text(&off.stderr).contains("[events] enabled is not set"),
        "{}",
        text(&off.stderr)
    );

    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str("[events]\nenabled = true\n");
    std::fs::write(&cfg, toml).unwrap();
    let mut camera = w.spawn_camera(&cfg);
    assert!(wait_until(30, || fragment_files(&ingest.data).len() >= 3));
    run_ok(
        "sealcamd",
        &["event", "--config", &cfg_s, "--label", "door"],
        w.path(),
    );
    assert!(camera.wait().unwrap().success());

    w.fetch(&ingest, "cam1", "clip");
    let mut args = vec!["events", "clip", "--key", "alice.key"];
    args.extend(ANCHOR);
    let listed = run_ok("sealcam", &args, w.path());
    let out = text(&listed.stdout);
    assert!(out.contains("event 1: trigger \"door\" at 20"), "{out}");
    assert!(out.contains("1 event marks in"), "{out}");

    decrypt_ok(&w, "clip", "all.mkv");
    let mut args = vec![
        "decrypt",
        "clip",
        "--key",
        "alice.key",
        "--out",
        "door.mkv",
        "--from-event",
        "1",
    ];
    args.extend(ANCHOR);
    run_ok("sealcam", &args, w.path());
    let (all, door) = (frames_in(&w, "all.mkv"), frames_in(&w, "door.mkv"));
    assert!(door > 0 && door < all, "{door} of {all} frames");
    // It starts on a key frame: the clip decodes from its first frame.
    assert_eq!(door % 30, 0, "{door} frames: not from a key frame");

    let mut args = vec![
        "decrypt",
        "clip",
        "--key",
        "alice.key",
        "--out",
        "none.mkv",
        "--from-event",
        "2",
    ];
    args.extend(ANCHOR);
    let missing = run("sealcam", &args, w.path());
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("the fragments hold 1 event marks"),
        "{}",
        text(&missing.stderr)
    );
}
