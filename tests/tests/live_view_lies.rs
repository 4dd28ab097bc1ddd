//! A live view a hostile ingest cannot shape: `sealcam follow` through a
//! front end that holds the ingest's TLS key and rewrites what viewers ask
//! for (`tests/src/lying_ingest.rs`). Old footage offered again is refused,
//! a feed held back is reported frozen, and a resumed one says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use sealcam_system_tests::lying_ingest::LyingIngest;
use sealcam_system_tests::*;

/// Replaces `after=N` in a listing query with `after=f(N)`.
fn rewrite_after(pq: &str, f: impl Fn(u64) -> u64) -> String {
    let Some((path, query)) = pq.split_once('?') else {
        return pq.to_owned();
    };
    if !path.ends_with("/fragments") {
        return pq.to_owned();
    }
    let query: Vec<String> = query
        .split('&')
        .map(
            |kv| match kv.strip_prefix("after=").map(str::parse::<u64>) {
                Some(Ok(n)) => format!("after={}", f(n)),
                _ => kv.to_owned(),
            },
        )
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// `sealcam follow cam1/front` through `liar`, from the start, in the
/// background; its stderr goes to `log`.
fn follow(w: &World, liar: &LyingIngest, log: &str, fragments: &str) -> std::process::Child {
    let mut server = alice_at_url(&liar.url());
    server.extend(
        [
            "--key",
            "alice.key",
            "--after",
            "0",
            "--fragments",
            fragments,
            "--out",
            "live.mkv",
        ]
        .map(String::from),
    );
    server.extend(ANCHOR.map(String::from));
    Command::new(bin("sealcam"))
        .arg("follow")
        .arg("cam1/front")
        .args(&server)
        .current_dir(w.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(w.path().join(log)).unwrap())
        .spawn()
        .unwrap()
}

/// A world whose camera records `frames` one-second-fragment frames in
/// the background, once its first fragment is stored, and a hostile front
/// end before its ingest, honest until told otherwise.
fn recording_behind_a_liar(frames: u32) -> (World, Ingest, std::process::Child, LyingIngest) {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), frames, 1000);
    let camera = w.spawn_camera(&cfg);
    assert!(wait_until(30, || !fragment_files(&ingest.data).is_empty()));
    let liar = LyingIngest::start(
        w.path(),
        &ingest.url(),
        "consumer/alice.crt",
        "consumer/alice.key",
    );
    (w, ingest, camera, liar)
}

/// The sequence numbers `follow` showed, in order.
fn shown(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.strip_prefix("fragment ")?.split(':').next()?.parse().ok())
        .collect()
}

#[test]
fn old_footage_offered_again_is_refused_and_never_shown_twice() {
    // Twenty seconds of one-second fragments, recorded while we watch.
    let (w, _ingest, mut camera, liar) = recording_behind_a_liar(600);
    // Every poll for what follows N is answered with what follows N-2:
    // the last two fragments shown come back as if new.
    liar.rewrite(|pq| rewrite_after(pq, |n| n.saturating_sub(2)));
    let mut viewer = follow(&w, &liar, "follow.log", "5");
    assert!(wait_until(90, || matches!(viewer.try_wait(), Ok(Some(_)))));
    let _ = camera.kill();
    let _ = camera.wait();
    let log = std::fs::read_to_string(w.path().join("follow.log")).unwrap();
    assert!(viewer.wait().unwrap().success(), "{log}");
    assert!(
        log.contains("again after") && log.contains("(old footage replayed as live); not shown"),
        "{log}"
    );
    let seqs = shown(&log);
    assert_eq!(seqs.len(), 5, "{log}");
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}\n{log}");
}

#[test]
fn a_feed_held_back_is_reported_frozen_and_then_resumed() {
    let (w, _ingest, mut camera, liar) = recording_behind_a_liar(900);
    let mut viewer = follow(&w, &liar, "follow.log", "1000");
    let log = || std::fs::read_to_string(w.path().join("follow.log")).unwrap_or_default();
    assert!(wait_until(30, || shown(&log()).len() >= 2), "{}", log());
    // The operator stops showing anything new: the camera keeps recording.
    liar.rewrite(|pq| rewrite_after(pq, |_| u64::MAX - 1));
    assert!(
        wait_until(30, || log().contains("the feed is frozen")),
        "{}",
        log()
    );
    assert!(
        log().contains("the camera is offline, or the server is holding fragments back"),
        "{}",
        log()
    );
    liar.rewrite(str::to_owned);
    assert!(
        wait_until(30, || log().contains("feed resumed after")),
        "{}",
        log()
    );
    // What was held back arrives late, and is said not to be live.
    assert!(
        wait_until(30, || log().contains("this is not live")),
        "{}",
        log()
    );
    let _ = viewer.kill();
    let _ = viewer.wait();
    let _ = camera.kill();
    let _ = camera.wait();
    let seqs = shown(&log());
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
}
