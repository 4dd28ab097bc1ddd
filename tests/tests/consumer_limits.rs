//! Per-consumer limits (issue 25): a hostile consumer hammering listings,
//! as a process of its own (curl, many requests in parallel), is answered
//! `429` with a `Retry-After`, while a camera keeps uploading and another
//! consumer still reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use sealcam_system_tests::forge::{now_ns, Forger, SECOND};
use sealcam_system_tests::*;

#[test]
fn a_consumer_hammering_listings_is_held_back_and_nobody_else_is() {
    let w = World::new();
    let config = w.path().join("ingest.toml");
    std::fs::write(
        &config,
        "[limits]\nconsumer_requests_per_second = 5.0\nconsumer_burst = 10\n\
         consumer_requests_at_once = 4\n",
    )
    .unwrap();
    let ingest = w.start_ingest_with(&["--config", config.to_str().unwrap()]);
    w.camera("cam1", &ingest.url(), 1, 1000);
    w.consumer("mallory", &["cam1/front"]);
    let alice = w.consumer_client("alice");
    let mut cam = Forger::new(&w, "cam1");
    cam.upload(&ingest.url(), now_ns());

    // Mallory: 400 listings, 8 at a time, some of them long polls.
    let listing = format!("{}/v1/streams/cam1/front/fragments", ingest.url());
    let mut curl = Command::new("curl");
    curl.current_dir(w.path())
        .args([
            "--cert",
            "consumer/mallory.crt",
            "--key",
            "consumer/mallory.key",
        ])
        .args(["--cacert", "pki/ca.crt", "-s"])
        .args(["-w", "\\nSTATUS %{http_code} %header{retry-after}\\n"])
        .args(["--parallel", "--parallel-max", "8"]);
    for i in 0..400 {
        if i % 10 == 0 {
            curl.arg(format!("{listing}?after=1000&wait_s=2"));
        } else {
            curl.arg(&listing);
        }
    }
    let hostile = curl.stdout(Stdio::piped()).spawn().unwrap();

    // Meanwhile the camera uploads and alice lists and reads what it
    // stored, within her own limits (4 requests a second), every request
    // answered.
    let mut rounds = 0;
    let mut hostile = Some(hostile);
    let mut output = None;
    while rounds < 10 || output.is_none() {
        let seq = cam.next;
        cam.upload(&ingest.url(), now_ns() + seq * SECOND);
        let listed = alice
            .get(format!("{listing}?after={}", seq.saturating_sub(1)))
            .send()
            .unwrap();
        assert_eq!(listed.status().as_u16(), 200, "{}", listed.text().unwrap());
        let read = alice.get(format!("{listing}/{seq}")).send().unwrap();
        assert_eq!(read.status().as_u16(), 200);
        rounds += 1;
        std::thread::sleep(std::time::Duration::from_millis(500));
        if let Some(mut child) = hostile.take() {
            if child.try_wait().unwrap().is_some() {
                output = Some(child.wait_with_output().unwrap());
            } else {
                hostile = Some(child);
            }
        }
        assert!(rounds < 2000, "curl did not finish");
    }
    let out = text(&output.unwrap().stdout);
    let lines: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("STATUS "))
        .collect();
    assert_eq!(lines.len(), 400, "{out}");
    let refused: Vec<&&str> = lines.iter().filter(|l| l.starts_with("429")).collect();
    let answered = lines.iter().filter(|l| l.starts_with("200")).count();
    assert!(refused.len() > 300, "{out}");
    assert!(answered >= 4, "{out}");
    assert_eq!(refused.len() + answered, 400, "{out}");
    // Every refusal says when to come back.
    for l in &refused {
        let secs: u64 = l
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a 429 without a Retry-After: {l:?}"));
        assert!((1..=3600).contains(&secs), "{l}");
    }
}

#[test]
fn sealcam_fetch_is_paced_by_the_limits_rather_than_failed() {
    let w = World::new();
    let config = w.path().join("ingest.toml");
    std::fs::write(
        &config,
        "[limits]\nconsumer_requests_per_second = 4.0\nconsumer_burst = 2\n\
         consumer_requests_at_once = 2\n",
    )
    .unwrap();
    let metrics = unused_port().to_string();
    let ingest = w.start_ingest_with(&[
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
    ]);
    w.camera("cam1", &ingest.url(), 1, 1000);
    let mut cam = Forger::new(&w, "cam1");
    let start = now_ns() - 100 * SECOND;
    for i in 0..8 {
        cam.upload(&ingest.url(), start + i * SECOND);
    }
    // Some twenty requests at four a second after a burst of two: refused
    // with 429 along the way, sent again after Retry-After.
    w.fetch(&ingest, "cam1", "all");
    let fetched = std::fs::read_dir(w.path().join("all"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".scf")
        })
        .count();
    assert_eq!(fetched, 8);
    // It was held back on the way.
    let shown = http_get(&format!("http://127.0.0.1:{metrics}/metrics"))
        .text()
        .unwrap();
    let limited: u64 = shown
        .lines()
        .filter(|l| {
            l.starts_with("sealcam_ingest_refusals_total")
                && (l.contains("rate-limited") || l.contains("too-many-requests"))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(limited > 0, "{shown}");
}
