//! Bad input to the ingest: each refused with its documented code and
//! counted, without disturbing other devices or anything stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::{Duration, Instant};

use sealcam_system_tests::*;

/// An ingest with small limits, cam1's two recorded fragments (fetched into
/// `fetched/`) and a metrics listener.
fn setup(limits: &str) -> (World, Ingest, Vec<Vec<u8>>, String) {
    let w = World::new();
    let config = w.path().join("ingest.toml");
    std::fs::write(
        &config,
        format!("metrics_listen = \"127.0.0.1:0\"\n[limits]\n{limits}"),
    )
    .unwrap();
    let ingest = w.start_ingest_with(&["--config", config.to_str().unwrap()]);
    // One upload per closed fragment, so that the camera spends exactly
    // two of its tokens and makes no upload beside another.
    let cfg = w.camera("cam1", &ingest.url(), 60, 1000);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("[upload]\n", "[upload]\nlive = false\n")).unwrap();
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    w.fetch(&ingest, "cam1", "fetched");
    let fragments: Vec<Vec<u8>> = fragment_files(&w.path().join("fetched"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(fragments.len(), 2);
    let log = ingest.log_text();
    let metrics = log
        .lines()
        .find_map(|l| l.split("metrics=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log: {log}"))
        .to_owned();
    (w, ingest, fragments, metrics)
}

fn put(w: &World, ingest: &Ingest, path: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    w.client_with_cert("cam1/device.crt", "cam1/device.key")
        .put(format!("{}{path}", ingest.url()))
        .body(body)
        .send()
        .unwrap()
}

fn refusal(resp: reqwest::blocking::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().unwrap();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

fn metric(metrics_url: &str, needle: &str) -> String {
    let text = http_get(metrics_url).text().unwrap();
    text.lines()
        .filter(|l| l.starts_with(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What cam1 has stored is still exactly what it was.
fn stored_unchanged(w: &World, ingest: &Ingest, fragments: &[Vec<u8>]) {
    w.fetch(ingest, "cam1", "again");
    let again: Vec<Vec<u8>> = fragment_files(&w.path().join("again"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(again, fragments);
}

#[test]
fn malformed_oversized_and_misnamed_uploads_are_refused_with_their_codes() {
    let (w, ingest, fragments, metrics) = setup("max_fragment_bytes = 200000\n");
    let (status, code, _) = refusal(put(
        &w,
        &ingest,
        "/v1/fragments/cam1/front/9",
        b"not a fragment".to_vec(),
    ));
    assert_eq!((status, code.as_str()), (400, "malformed"));

    // Refused from its declared length, before the body is read (a client
    // that waits for `100 Continue` sends none of it).
    let mut raw = w.raw_tls(&ingest, "cam1/device.crt", "cam1/device.key");
    raw.write_all(
        b"PUT /v1/fragments/cam1/front/9 HTTP/1.1\r\nhost: localhost\r\n\
          content-length: 300000\r\nexpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    raw.flush().unwrap();
    let answer = read_response(&mut raw);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"too-large\"") && answer.contains("200000"),
        "{answer}"
    );

    // Refused as it grows past the limit, when it declares no length.
    let mut raw = w.raw_tls(&ingest, "cam1/device.crt", "cam1/device.key");
    raw.write_all(
        b"PUT /v1/fragments/cam1/front/9 HTTP/1.1\r\nhost: localhost\r\n\
          transfer-encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = vec![b'x'; 50_000];
    for _ in 0..5 {
        raw.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        raw.write_all(&chunk).unwrap();
        raw.write_all(b"\r\n").unwrap();
    }
    raw.write_all(b"0\r\n\r\n").unwrap();
    raw.flush().unwrap();
    let answer = read_response(&mut raw);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"too-large\""), "{answer}");

    for path in [
        "/v1/fragments/cam1/..%2F..%2Fetc/0",
        "/v1/fragments/cam1/.hidden/0",
        "/v1/fragments/cam1/a%20b/0",
    ] {
        // A small body: the refusal comes before the body is read.
        let (status, code, reason) = refusal(put(&w, &ingest, path, b"x".to_vec()));
        assert_eq!(
            (status, code.as_str()),
            (400, "malformed"),
            "{path}: {reason}"
        );
        assert!(reason.contains("invalid name"), "{reason}");
    }
    // A consumer asking for a stream that does not exist.
    let alice = w.client_with_cert("consumer/alice.crt", "consumer/alice.key");
    let (status, code, _) = refusal(
        alice
            .get(format!(
                "{}/v1/streams/cam9/nothing/fragments/0",
                ingest.url()
            ))
            .send()
            .unwrap(),
    );
    assert_eq!((status, code.as_str()), (404, "not-found"));

    let counted = metric(&metrics, "sealcam_ingest_refusals_total");
    assert!(
        counted.contains(r#"action="upload",code="malformed"} 4"#),
        "{counted}"
    );
    assert!(
        counted.contains(r#"action="upload",code="too-large"} 2"#),
        "{counted}"
    );
    stored_unchanged(&w, &ingest, &fragments);
}

#[test]
fn a_wrong_content_length_and_a_stalled_body_are_cut_off() {
    let (w, ingest, fragments, metrics) = setup("body_timeout = \"2s\"\n");
    // Declares more than it sends, then stops sending: cut off at the body
    // timeout, with 408.
    let mut raw = w.raw_tls(&ingest, "cam1/device.crt", "cam1/device.key");
    let body = &fragments[1];
    write!(
        raw,
        "PUT /v1/fragments/cam1/front/1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        body.len() + 1000
    )
    .unwrap();
    raw.write_all(body).unwrap();
    raw.flush().unwrap();
    let started = Instant::now();
    let answer = read_response(&mut raw);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Headers that never finish: the connection is closed.
    let mut raw = w.raw_tls(&ingest, "cam1/device.crt", "cam1/device.key");
    raw.write_all(b"PUT /v1/fragments/cam1/front/1 HTTP/1.1\r\nhost: loc")
        .unwrap();
    raw.flush().unwrap();
    let started = Instant::now();
    let answer = read_response(&mut raw);
    assert!(!answer.contains("201"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));

    assert!(metric(&metrics, "sealcam_ingest_refusals_total").contains(r#"code="timeout"} 1"#));
    stored_unchanged(&w, &ingest, &fragments);
}

#[test]
fn a_device_over_its_limits_is_told_to_wait_and_others_are_not_disturbed() {
    let (w, ingest, fragments, metrics) =
        setup("uploads_per_device = 1\nuploads_per_second = 0.2\nupload_burst = 4\nbody_timeout = \"20s\"\n");
    // cam1 spent 2 of its 4 tokens recording. One upload stalls mid-body...
    let mut slow = w.raw_tls(&ingest, "cam1/device.crt", "cam1/device.key");
    write!(
        slow,
        "PUT /v1/fragments/cam1/front/1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        fragments[1].len()
    )
    .unwrap();
    slow.write_all(&fragments[1][..100]).unwrap();
    slow.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // ...so a second one at the same time is refused: one at a time.
    let (status, code, reason) = refusal(put(
        &w,
        &ingest,
        "/v1/fragments/cam1/front/0",
        fragments[0].clone(),
    ));
    assert_eq!(
        (status, code.as_str()),
        (429, "too-many-uploads"),
        "{reason}"
    );
    // The slow one completes normally.
    slow.write_all(&fragments[1][100..]).unwrap();
    slow.flush().unwrap();
    let answer = read_response(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The tokens are spent now: told when to come back.
    let resp = put(
        &w,
        &ingest,
        "/v1/fragments/cam1/front/0",
        fragments[0].clone(),
    );
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    let (status, code, _) = refusal(resp);
    assert_eq!((status, code.as_str()), (429, "rate-limited"));
    // However much the refused sender is still writing, it gets to read
    // the answer rather than a reset connection.
    let (status, code, _) = refusal(put(
        &w,
        &ingest,
        "/v1/fragments/cam1/front/2",
        vec![0; 16 << 20],
    ));
    assert_eq!((status, code.as_str()), (429, "rate-limited"));

    // Another camera uploads undisturbed meanwhile.
    w.record("cam2", &ingest, 30);
    w.fetch(&ingest, "cam2", "cam2");
    assert_eq!(fragment_files(&w.path().join("cam2")).len(), 1);

    let counted = metric(&metrics, "sealcam_ingest_refusals_total");
    assert!(
        counted.contains(r#"code="too-many-uploads"} 1"#),
        "{counted}"
    );
    assert!(counted.contains(r#"code="rate-limited"} 2"#), "{counted}");
    let stored = metric(&metrics, "sealcam_ingest_fragments_total");
    assert!(stored.contains(r#"outcome="stored"} 3"#), "{stored}");
    stored_unchanged(&w, &ingest, &fragments);
}

#[test]
fn health_and_readiness_answer() {
    let (_w, _ingest, _fragments, metrics) = setup("");
    let base = metrics.trim_end_matches("/metrics");
    let get = |p: &str| http_get(&format!("{base}{p}"));
    assert_eq!(get("/healthz").status().as_u16(), 200);
    assert_eq!(get("/readyz").status().as_u16(), 200);
    let m = get("/metrics").text().unwrap();
    for name in [
        "sealcam_ingest_fragments_total",
        "sealcam_ingest_fragment_bytes_total",
        "sealcam_ingest_upload_ack_seconds_bucket",
        "sealcam_ingest_fragment_reads_total",
        "sealcam_ingest_connections",
    ] {
        assert!(m.contains(name), "{name} missing: {m}");
    }
}

#[test]
fn a_stopping_ingest_finishes_the_upload_in_progress() {
    let (w, mut ingest, fragments, _metrics) = setup("");
    let device = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    // Start re-sending fragment 1, stop halfway through its body...
    let mut raw = w.raw_tls(&ingest, "cam1/device.crt", "cam1/device.key");
    write!(
        raw,
        "PUT /v1/fragments/cam1/front/1 HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        fragments[1].len()
    )
    .unwrap();
    raw.write_all(&fragments[1][..100]).unwrap();
    raw.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // ...and the ingest is told to stop.
    ingest.terminate();
    std::thread::sleep(Duration::from_millis(300));
    // No new connection is taken...
    assert!(device
        .get(format!("{}/v1/streams", ingest.url()))
        .send()
        .is_err());
    // ...but the upload in progress completes and is answered.
    raw.write_all(&fragments[1][100..]).unwrap();
    raw.flush().unwrap();
    let answer = read_response(&mut raw);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("already-stored"), "{answer}");
    assert!(
        wait_until(10, || ingest.exited()),
        "the ingest did not exit"
    );
    assert!(ingest.log_text().contains("sealcam-ingest stopped"));
}

#[test]
fn a_camera_told_to_wait_comes_back_and_nothing_is_lost() {
    let w = World::new();
    let config = w.path().join("ingest.toml");
    std::fs::write(
        &config,
        "[limits]\nuploads_per_second = 0.5\nupload_burst = 1\n",
    )
    .unwrap();
    let ingest = w.start_ingest_with(&["--config", config.to_str().unwrap()]);
    let cfg = w.camera("cam1", &ingest.url(), 90, 1000);
    let text_cfg = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("drain_timeout_s = 3", "drain_timeout_s = 30");
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let log = text(&out.stderr);
    assert!(
        log.contains("429"),
        "the camera was never told to wait: {log}"
    );
    w.fetch(&ingest, "cam1", "fetched");
    let report = text(
        &run_ok(
            "sealcam",
            &["verify", "fetched", "--owner", "owner.pub"],
            w.path(),
        )
        .stdout,
    );
    assert!(
        report.contains("3 fragments (sequence 0..=2), 90 frames")
            && report.contains("undeclared gaps: none"),
        "{report}"
    );
}
