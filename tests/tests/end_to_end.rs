//! The whole path: camera to ingest to consumer, with real processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_format::{ConsumerSecretKey, SealedFragment};
use sealcam_system_tests::*;

const FRAMES: u32 = 90;

#[test]
fn camera_to_decrypted_clip() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), FRAMES, 1000);
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );

    // Everything uploaded: the spool is empty.
    assert!(fragment_files(&w.path().join("cam1/spool")).is_empty());

    w.fetch(&ingest, "cam1", "fetched");
    let out = run_ok(
        "sealcam",
        &[
            "verify",
            "fetched",
            "--ca",
            "pki/ca.crt",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    let report = text(&out.stdout);
    assert!(report.contains(&format!("{FRAMES} frames")), "{report}");
    assert!(report.contains("result:    OK"), "{report}");

    decrypt_ok(&w, "fetched", "clip.mkv");
    let (frames, width, height) = gst_count_frames(&w.path().join("clip.mkv"));
    assert_eq!(frames, FRAMES as usize);
    assert_eq!((width, height), (320, 240));

    // The stored fragments hold no plaintext H.264.
    let key =
        ConsumerSecretKey::from_pem(&std::fs::read_to_string(w.path().join("alice.key")).unwrap())
            .unwrap();
    let stored = fragment_files(&ingest.data);
    assert!(
        stored.len() >= 3,
        "expected about 3 one-second fragments, got {}",
        stored.len()
    );
    // What the ingest wrote to its disk, object by object.
    let objects: Vec<Vec<u8>> = stored_object_files(&ingest.data)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for path in &stored {
        let bytes = std::fs::read(path).unwrap();
        let fragment = SealedFragment::parse(&bytes).unwrap();
        // The sealed records (the container's own framing aside: its block
        // header before a track record reads 00 00 00 01).
        for r in fragment.records().unwrap() {
            assert!(
                !has_annex_b_parameter_sets_or_idr(r.ciphertext),
                "record {} of {} looks like plaintext H.264",
                r.index,
                path.display()
            );
        }
        let opened = fragment.open(&key).unwrap();
        // Neither the codec configuration nor any frame appears in the clear.
        assert!(!contains(
            &bytes,
            &opened.track.codec_private[..16.min(opened.track.codec_private.len())]
        ));
        for f in &opened.frames {
            let window = &f.data[..32.min(f.data.len())];
            assert!(
                !contains(&bytes, window),
                "plaintext frame bytes found in {}",
                path.display()
            );
            assert!(
                !objects.iter().any(|o| contains(o, window)),
                "plaintext frame bytes found in a stored object"
            );
        }
    }
}

#[test]
fn unreachable_server_keeps_fragments_and_they_upload_later() {
    let w = World::new();
    // A port with nothing listening.
    let port = unused_port();
    let cfg = w.camera("cam1", &format!("https://127.0.0.1:{port}"), 60, 1000);
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("cannot reach the ingest"), "{err}");
    assert!(err.contains("still in the spool"), "{err}");
    let spooled = fragment_files(&w.path().join("cam1/spool"));
    assert_eq!(spooled.len(), 2, "{spooled:?}");

    // Now with the ingest up: the old fragments go first, the chain continues.
    let ingest = w.start_ingest();
    w.write_camera_config("cam1", &ingest.url(), 30, 1000);
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(fragment_files(&w.path().join("cam1/spool")).is_empty());
    w.fetch(&ingest, "cam1", "fetched");
    let out = run_ok(
        "sealcam",
        &["verify", "fetched", "--owner", "owner.pub"],
        w.path(),
    );
    let report = text(&out.stdout);
    assert!(
        report.contains("3 fragments (sequence 0..=2), 90 frames"),
        "{report}"
    );
    // The daemon's restart is declared and signed; nothing is undeclared.
    assert!(report.contains("recorder restarted"), "{report}");
    assert!(report.contains("undeclared gaps: none"), "{report}");
}

#[test]
fn padded_frames_decrypt_to_the_same_clip() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), 30, 1000);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        "fragment_duration_ms = 1000",
        "fragment_duration_ms = 1000\npad_frames = true",
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    w.fetch(&ingest, "cam1", "fetched");
    decrypt_ok(&w, "fetched", "clip.mkv");
    assert_eq!(gst_count_frames(&w.path().join("clip.mkv")).0, 30);
    // Every sealed frame has a bucket size.
    let bytes = std::fs::read(&fragment_files(&ingest.data)[0]).unwrap();
    let frag = SealedFragment::parse(&bytes).unwrap();
    for r in &frag.records().unwrap()[1..] {
        // Ciphertext = 17-byte sealed header + padded frame + 16-byte tag.
        let plain = r.ciphertext.len() - 16 - 17;
        assert_eq!(
            plain,
            sealcam_format::seal::padded_len(plain),
            "record {} is not bucket-sized",
            r.index
        );
    }
}

#[test]
fn decrypt_writes_mp4_too() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    w.fetch(&ingest, "cam1", "fetched");
    run_ok(
        "sealcam",
        &[
            "decrypt",
            "fetched",
            "--key",
            "alice.key",
            "--out",
            "clip.mp4",
            "--format",
            "mp4",
            "--owner",
            "owner.pub",
        ],
        w.path(),
    );
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(w.path().join("clip.mp4"))
        .output()
        .expect("ffprobe is installed (scripts/install-deps installs ffmpeg)");
    assert_eq!(text(&out.stdout).trim(), "h264,30");
}

/// Stored fragments are Matroska that standard tools parse (the video is opaque).
#[test]
fn stored_fragments_are_matroska_to_standard_tools() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    let stored = fragment_files(&ingest.data);
    let info = std::process::Command::new("mkvinfo")
        .arg(&stored[0])
        .output()
        .expect("mkvinfo (mkvtoolnix)");
    let info_text = text(&info.stdout);
    assert!(info.status.success(), "{info_text}");
    assert!(
        info_text.contains("V_SEALCAM/V1") && info_text.contains("manifest.sealcam"),
        "{info_text}"
    );
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name:stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(&stored[0])
        .output()
        .expect("ffprobe (ffmpeg)");
    assert!(probe.status.success(), "{}", text(&probe.stderr));
    assert!(
        text(&probe.stdout).contains("matroska"),
        "{}",
        text(&probe.stdout)
    );
    // mkvextract gets the manifest out, byte for byte.
    let out = w.path().join("manifest.bin");
    let ex = std::process::Command::new("mkvextract")
        .arg(&stored[0])
        .arg("attachments")
        .arg(format!("1:{}", out.display()))
        .output()
        .expect("mkvextract (mkvtoolnix)");
    assert!(ex.status.success(), "{}", text(&ex.stdout));
    let bytes = std::fs::read(&stored[0]).unwrap();
    let frag = SealedFragment::parse(&bytes).unwrap();
    let extracted = std::fs::read(&out).unwrap();
    assert_eq!(&extracted[..extracted.len() - 64], frag.manifest_body);
}

#[test]
fn fetch_selects_fragments_by_time_or_sequence_range() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 90);
    let fetch = |extra: &[&str], out: &str| text(&w.fetch_with(&ingest, "cam1", out, extra).stdout);
    assert!(fetch(&["--from", "1h"], "recent").contains("fetched 3 fragments"));
    assert!(fetch(&["--to", "2000-01-01T00:00:00Z"], "ancient").contains("fetched 0 fragments"));
    assert!(fetch(&["--from-seq", "1", "--to-seq", "1"], "middle").contains("fetched 1 fragments"));
    assert!(w.path().join("middle/00000000000000000001.scf").exists());
    assert!(fetch(&["--from-seq", "1"], "tail").contains("fetched 2 fragments"));
    let out = w.fetch_with(&ingest, "cam1", "x", &["--from", "yesterday"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("neither an RFC 3339 time"),
        "{}",
        text(&out.stderr)
    );
}
