//! The CA out of the internet-facing process (issue 23): every ingest
//! instance has its own directory without the CA key and asks one CA
//! service (`sealcam-ca serve`) to enroll and renew, and fetches the
//! revocation list from it. Played against it: a CA that is gone, a CA
//! (or whoever answers in its place) that replays an older list, an
//! instance with no list at all, a client that is no ingest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use sealcam_system_tests::*;

/// `sealcamd provision --enroll` of a new software-key camera `device`
/// through `ingest`'s enrollment port, with a token from the CA.
fn enroll_through(w: &World, ingest: &Ingest, device: &str) {
    let token = w.device_add(device, "1h");
    let cfg = w.write_camera_config(device, &ingest.url(), 10, 1000);
    let out = enroll(
        w,
        &cfg,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn accepted(w: &World, ingest: &Ingest, device: &str) -> bool {
    w.client_with_cert(
        &format!("{device}/device.crt"),
        &format!("{device}/device.key"),
    )
    .get(format!("{}/v1/whoami", ingest.url()))
    .send()
    .is_ok_and(|r| r.status().is_success())
}

/// A process in the CA service's place: answers every request on the
/// Unix socket `path` with `crl` (a replayed list), until the test ends.
fn impostor_ca(path: &Path, crl: Vec<u8>) {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                crl.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&crl);
        }
    });
}

#[test]
fn two_instances_with_their_own_directories_share_one_issuer_and_one_revocation_list() {
    let w = World::new();
    // Instance A in pki/, instance B in pki-b/; one shared store, one CA.
    let a = w.start_ingest();
    w.issue_ingest("node2", "pki-b", &[]);
    for key in ["audit.key", "audit.pub"] {
        std::fs::copy(
            w.path().join("pki").join(key),
            w.path().join("pki-b").join(key),
        )
        .unwrap();
    }
    let b = Ingest::start(w.path(), &w.path().join("pki-b"));
    for dir in ["pki", "pki-b"] {
        assert!(!w.path().join(dir).join("ca.key").exists(), "{dir}");
    }

    // Enrolled through A: works with both, and uploads through B.
    enroll_through(&w, &a, "cam1");
    assert!(accepted(&w, &a, "cam1") && accepted(&w, &b, "cam1"));
    assert!(
        w.ca_log().contains("AUDIT: device enrolled"),
        "{}",
        w.ca_log()
    );
    w.write_camera_config("cam1", &b.url(), 30, 1000);
    run_ok(
        "sealcamd",
        &[
            "run",
            "--config",
            w.path().join("cam1.toml").to_str().unwrap(),
        ],
        w.path(),
    );
    // The owner lists the enrolled key; the footage verifies against it.
    w.list_in_roster("cam1");
    w.fetch(&a, "cam1", "from-a");

    // Revoked once: refused by both within a few poll intervals (100 ms).
    let revoked = Instant::now();
    w.revoke("device", "cam1");
    assert!(wait_until(5, || !accepted(&w, &a, "cam1") && !accepted(&w, &b, "cam1")));
    assert!(revoked.elapsed() < Duration::from_secs(5));
    for ingest in [&a, &b] {
        let log = ingest.wait_for_log("revocation list reloaded");
        assert!(log.contains("revocation list reloaded"), "{log}");
    }
    // Each instance keeps its own copy, the same list.
    assert_eq!(
        std::fs::read(w.path().join("pki/crl.pem")).unwrap(),
        std::fs::read(w.path().join("pki-b/crl.pem")).unwrap()
    );
}

#[test]
fn with_the_ca_service_gone_the_ingest_serves_with_the_last_list_and_says_so() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.camera("cam1", &ingest.url(), 10, 1000);
    w.camera("cam2", &ingest.url(), 10, 1000);
    w.revoke("device", "cam2");
    assert!(wait_until(10, || !accepted(&w, &ingest, "cam2")));

    w.stop_ca();
    let log = ingest.wait_for_log("keeping the last good one");
    assert!(
        log.contains(
            "cannot get the revocation list from the CA service; keeping the last good one"
        ),
        "{log}"
    );
    assert!(log.contains("cannot reach the CA service"), "{log}");
    // Said once, not at every poll.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        ingest
            .log_text()
            .matches("keeping the last good one")
            .count(),
        1
    );
    // Still serving, still refusing the revoked one.
    assert!(accepted(&w, &ingest, "cam1"));
    assert!(!accepted(&w, &ingest, "cam2"));
    // Enrollment cannot be answered meanwhile, and says why.
    let token = w.device_add("cam3", "1h");
    let cfg = w.write_camera_config("cam3", &ingest.url(), 10, 1000);
    let out = enroll(
        &w,
        &cfg,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the fleet CA cannot be reached"),
        "{}",
        text(&out.stderr)
    );

    w.restart_ca_with(&[]);
    let log = ingest.wait_for_log("the CA service answers again");
    assert!(log.contains("the CA service answers again"), "{log}");
}

/// Whoever can keep an ingest from its CA service must not keep a stolen
/// camera accepted for ever with the last list it saw: a list stops being
/// current at its nextUpdate, and then every client is refused (devices
/// keep their fragments) until a fresh list comes. While the CA service
/// runs, it re-signs the list long before that.
#[test]
fn an_expired_revocation_list_refuses_every_client_until_a_fresh_one_comes() {
    let w = World::new();
    w.restart_ca_with(&["--crl-lifetime", "4s"]);
    let ingest = w.start_ingest();
    w.camera("cam1", &ingest.url(), 10, 1000);
    // Two and a half lifetimes of service: the CA re-signs in time.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        assert!(accepted(&w, &ingest, "cam1"), "refused while the CA runs");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        w.ca_log().contains("revocation list re-signed"),
        "{}",
        w.ca_log()
    );
    assert!(!ingest.log_text().contains("has expired"));

    w.stop_ca();
    let log = ingest.wait_for_log("SECURITY: the revocation list has expired");
    assert!(
        log.contains("every device and consumer is refused until it does"),
        "{log}"
    );
    assert!(wait_until(10, || !accepted(&w, &ingest, "cam1")));

    w.restart_ca_with(&["--crl-lifetime", "4s"]);
    ingest.wait_for_log("a current revocation list is in force again");
    assert!(wait_until(10, || accepted(&w, &ingest, "cam1")));
}

#[test]
fn a_replayed_older_revocation_list_is_not_taken() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.camera("cam1", &ingest.url(), 10, 1000);
    // The list from before the revocation, as an adversary kept it.
    let old = std::fs::read(w.path().join("ca/crl.pem")).unwrap();
    w.revoke("device", "cam1");
    assert!(wait_until(10, || !accepted(&w, &ingest, "cam1")));

    // Someone else answers on the CA's socket, with the old list.
    w.stop_ca();
    impostor_ca(&w.path().join("ca.sock"), old);
    let log = ingest.wait_for_log("SECURITY: the CA service offered an older revocation list");
    assert!(log.contains("not taken"), "{log}");
    assert!(!accepted(&w, &ingest, "cam1"));

    // An instance started now keeps its newer cached list too.
    drop(ingest);
    let restarted = w.start_ingest();
    let log = restarted.wait_for_log("offers an older revocation list");
    assert!(log.contains("keeping the cached one"), "{log}");
    assert!(!accepted(&w, &restarted, "cam1"));
}

#[test]
fn an_instance_with_no_revocation_list_at_all_does_not_start() {
    let w = World::new();
    w.issue_ingest("node3", "pki-c", &[]);
    let args = |ca: &str| {
        vec![
            "serve".to_owned(),
            "--pki".into(),
            "pki-c".into(),
            "--data".into(),
            "data-c".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--ca-url".into(),
            ca.to_owned(),
        ]
    };
    let nowhere = format!("unix:{}", w.path().join("nowhere.sock").display());
    let a = args(&nowhere);
    let out = run(
        "sealcam-ingest",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        w.path(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no revocation list: none cached in"), "{err}");
    assert!(
        err.contains("start the CA service (`sealcam-ca serve`)"),
        "{err}"
    );
    assert!(!w.path().join("pki-c/crl.pem").exists());

    // A list from another fleet's CA, in the CA's place: not taken either.
    run_ok("sealcam-ca", &["init", "--dir", "other-ca"], w.path());
    let foreign = std::fs::read(w.path().join("other-ca/crl.pem")).unwrap();
    let socket = w.path().join("impostor.sock");
    impostor_ca(&socket, foreign);
    let a = args(&format!("unix:{}", socket.display()));
    let out = run(
        "sealcam-ingest",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        w.path(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not issued by the fleet CA"), "{err}");
}

#[test]
fn over_mutual_tls_the_ca_service_answers_only_ingest_instances() {
    let w = World::new();
    let tls_ca = CaService::start(
        w.path(),
        &w.path().join("ca"),
        "tls:127.0.0.1:0",
        &["--tls-ip", "127.0.0.1"],
    );
    let addr = tls_ca.listen.strip_prefix("tls:").unwrap().to_owned();
    let url = format!("https://127.0.0.1:{}", addr.rsplit(':').next().unwrap());
    let ingest = Ingest::start_with(w.path(), &w.path().join("pki"), &["--ca-url", &url]);
    enroll_through(&w, &ingest, "cam1");
    assert!(accepted(&w, &ingest, "cam1"));
    assert!(tls_ca.log_text().contains("AUDIT: device enrolled"));

    // A consumer of the same fleet is no ingest: refused.
    let alice = w.consumer_client("alice");
    let asked = alice.get(format!("{url}/v1/crl")).send();
    assert!(asked.is_err() || !asked.unwrap().status().is_success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tls_ca.log_text().contains("not an ingest of this fleet") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tls_ca
            .log_text()
            .contains("connection refused: not an ingest of this fleet"),
        "{}",
        tls_ca.log_text()
    );

    // The ingest instance revoked: the CA service refuses it from its next
    // connection on, and the ingest keeps its last list and says so.
    let out = run_ok(
        "sealcam-ca",
        &["ingest", "revoke", "ingest", "--dir", "ca"],
        w.path(),
    );
    assert!(
        text(&out.stdout).contains("ingest ingest revoked: 1 certificates"),
        "{}",
        text(&out.stdout)
    );
    let log = ingest.wait_for_log("keeping the last good one");
    assert!(log.contains("keeping the last good one"), "{log}");
    assert!(
        tls_ca
            .log_text()
            .contains("the certificate of ingest ingest is revoked"),
        "{}",
        tls_ca.log_text()
    );
    let token = w.device_add("cam2", "1h");
    let cfg = w.write_camera_config("cam2", &ingest.url(), 10, 1000);
    let out = enroll(
        &w,
        &cfg,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn any_enrollment_step_is_passed_to_the_ca_service_unchanged() {
    use sealcam_transport::{pem, tls};
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = tls::enrollment_client_config(pem::load_roots(&w.path().join("pki/ca.crt")).unwrap())
        .unwrap();
    let camera = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap();
    // A step this CA does not know (yet): the answer is the CA's, not the
    // ingest's, so a new step needs no change in the ingest.
    let r = camera
        .post(format!("{}/v1/enroll/next-step", ingest.enroll_url()))
        .header("content-type", "application/json")
        .body(r#"{"anything": "the ingest does not read"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body = r.text().unwrap();
    assert!(
        body.contains("no enrollment step /v1/enroll/next-step"),
        "{body}"
    );
    let log = w.ca_log();
    assert!(
        log.contains("path=\"/v1/enroll/next-step\"") || log.contains("path=/v1/enroll/next-step"),
        "{log}"
    );
    // A malformed enrollment body is judged by the CA as well.
    let r = camera
        .post(format!("{}/v1/enroll", ingest.enroll_url()))
        .body("not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("enrollment request:"));
    // Other paths on the enrollment port are still no route.
    let r = camera
        .post(format!("{}/v1/renew", ingest.enroll_url()))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
