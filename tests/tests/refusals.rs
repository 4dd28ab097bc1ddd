//! The ingest refuses who it must, and says why in its log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;
use sealcam_transport::{pem, tls};

fn client(config: rustls::ClientConfig) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

#[test]
fn client_without_certificate_is_refused() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(pem::load_roots(&w.path().join("pki/ca.crt")).unwrap())
        .with_no_client_auth();
    let result = client(cfg)
        .get(format!("{}/v1/streams", ingest.url()))
        .send();
    assert!(result.is_err() || !result.unwrap().status().is_success());
    let log = ingest.wait_for_log("TLS handshake refused");
    assert!(log.contains("TLS handshake refused"), "{log}");
    assert!(log.to_lowercase().contains("no certificate"), "{log}");
}

/// A second fleet CA and a consumer of it: `other/mallory.{crt,key}`.
fn mallory_from_another_fleet(w: &World) {
    run_ok("sealcam-ca", &["init", "--dir", "other-pki"], w.path());
    run_ok(
        "sealcam-ca",
        &[
            "consumer",
            "issue",
            "--dir",
            "other-pki",
            "--name",
            "mallory",
            "--out-dir",
            "other",
            "--all-streams",
        ],
        w.path(),
    );
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let w = World::new();
    let ingest = w.start_ingest();
    mallory_from_another_fleet(&w);
    let c = w.client_with_cert("other/mallory.crt", "other/mallory.key");
    let result = c.get(format!("{}/v1/streams", ingest.url())).send();
    assert!(result.is_err() || !result.unwrap().status().is_success());
    let log = ingest.wait_for_log("invalid peer certificate");
    assert!(
        log.contains("TLS handshake refused")
            && log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
}

#[test]
fn device_may_not_write_another_devices_stream_or_read() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg1 = w.camera("cam1", &ingest.url(), 30, 1000);
    w.camera("cam2", &ingest.url(), 30, 1000);
    run_ok(
        "sealcamd",
        &["run", "--config", cfg1.to_str().unwrap()],
        w.path(),
    );
    let stored = fragment_files(&ingest.data);
    assert_eq!(stored.len(), 1);
    let body = std::fs::read(&stored[0]).unwrap();

    // cam2 replays cam1's fragment as if it were its own to write.
    let cam2 = w.client_with_cert("cam2/device.crt", "cam2/device.key");
    let resp = cam2
        .put(format!("{}/v1/fragments/cam1/front/1", ingest.url()))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    let log = ingest.wait_for_log("may not write streams of device cam1");
    assert!(
        log.contains("device cam2 may not write streams of device cam1"),
        "{log}"
    );

    // Under its own name the fragment fails cam2's signature check.
    let resp = cam2
        .put(format!("{}/v1/fragments/cam2/front/0", ingest.url()))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A device cannot read.
    let resp = cam2
        .get(format!("{}/v1/streams", ingest.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// curl, with keys in files, sees the same rules as sealcam's own clients.
#[test]
fn an_independent_client_sees_the_same_ca_rules() {
    let w = World::new();
    let ingest = w.start_ingest();
    mallory_from_another_fleet(&w);
    let curl = |cert: &str, key: &str| {
        std::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--tlsv1.3",
                "--cacert",
                "pki/ca.crt",
                "--cert",
                cert,
                "--key",
                key,
            ])
            .arg(format!(
                "https://localhost:{}/v1/streams",
                ingest.addr.port()
            ))
            .current_dir(w.path())
            .output()
            .expect("curl is installed (scripts/install-deps installs it)")
    };
    let good = curl("consumer/alice.crt", "consumer/alice.key");
    assert!(good.status.success(), "{}", text(&good.stderr));
    assert_eq!(text(&good.stdout).trim(), "[]");
    let bad = curl("other/mallory.crt", "other/mallory.key");
    assert!(!bad.status.success());
    let log = ingest.wait_for_log("UnknownIssuer");
    assert!(
        log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
}

#[test]
fn device_bound_to_streams_writes_only_those() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.write_camera_config("cam1", &ingest.url(), 30, 1000);
    run_ok(
        "sealcamd",
        &[
            "provision",
            "--config",
            cfg.to_str().unwrap(),
            "--insecure-software-key",
        ],
        w.path(),
    );
    run_ok(
        "sealcam-ca",
        &[
            "device",
            "issue",
            "--dir",
            "ca",
            "--csr",
            "cam1/device.csr",
            "--out",
            "cam1/device.crt",
            "--stream",
            "front",
        ],
        w.path(),
    );
    // Its own stream "front" works end to end.
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_eq!(fragment_files(&ingest.data).len(), 1);
    // Another stream of its own does not.
    let cam = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let resp = cam
        .put(format!("{}/v1/fragments/cam1/back/0", ingest.url()))
        .body(vec![0u8; 16])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    let log = ingest.wait_for_log("may not write stream back");
    assert!(
        log.contains("may not write stream back; its certificate allows: front"),
        "{log}"
    );
}

#[test]
fn consumer_reads_only_the_streams_it_was_granted() {
    let w = World::new();
    let ingest = w.start_ingest();
    for cam in ["cam1", "cam2"] {
        let cfg = w.camera(cam, &ingest.url(), 30, 1000);
        run_ok(
            "sealcamd",
            &["run", "--config", cfg.to_str().unwrap()],
            w.path(),
        );
    }
    let carol = w.consumer("carol", &["cam1/front"]);
    let list = carol
        .get(format!("{}/v1/streams", ingest.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(list.contains("cam1") && !list.contains("cam2"), "{list}");
    let ok = carol
        .get(format!(
            "{}/v1/streams/cam1/front/fragments/0",
            ingest.url()
        ))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = carol
        .get(format!(
            "{}/v1/streams/cam2/front/fragments/0",
            ingest.url()
        ))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = carol
        .get(format!("{}/v1/devices/cam2/certificate", ingest.url()))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    let log = ingest.wait_for_log("may not read stream cam2/front");
    assert!(
        log.contains("consumer carol may not read stream cam2/front"),
        "{log}"
    );
}

/// The fragments of one recording of cam1 (sequence 0, 1, 2), uploaded to
/// a fresh ingest and fetched back; each recording starts a new chain.
fn one_recording(w: &World, out: &str) -> Vec<Vec<u8>> {
    let _ = std::fs::remove_dir_all(w.path().join("ingest-data"));
    let _ = std::fs::remove_dir_all(w.path().join("cam1/spool"));
    let ingest = w.start_ingest();
    let cfg = if w.path().join("cam1.toml").exists() {
        w.write_camera_config("cam1", &ingest.url(), 90, 1000)
    } else {
        w.camera("cam1", &ingest.url(), 90, 1000)
    };
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    w.fetch(&ingest, "cam1", out);
    let files = fragment_files(&w.path().join(out));
    assert_eq!(files.len(), 3, "{files:?}");
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// A fragment that does not continue the chain stored around it is refused
/// as a conflict, whichever neighbour it breaks with (the one before, or
/// the one after: a fragment 0 meeting a stored 1), and what is stored
/// stays; the fragments that fit are stored.
#[test]
fn a_fragment_that_breaks_the_stored_chain_is_refused() {
    let w = World::new();
    // Two recordings by the same device key: two chains, same sequences.
    let a = one_recording(&w, "a");
    let b = one_recording(&w, "b");
    std::fs::remove_dir_all(w.path().join("ingest-data")).unwrap();
    let ingest = w.start_ingest();
    let device = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let put = |seq: usize, bytes: &[u8]| {
        let resp = device
            .put(format!("{}/v1/fragments/cam1/front/{seq}", ingest.url()))
            .body(bytes.to_vec())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().unwrap())
    };
    assert_eq!(put(1, &a[1]).0, 201);
    let (status, body) = put(0, &b[0]);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("stored fragment 1 does not follow this fragment 0"),
        "{body}"
    );
    let (status, body) = put(2, &b[2]);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("fragment 2 names previous manifest"),
        "{body}"
    );
    assert_eq!(put(0, &a[0]).0, 201);
    assert_eq!(put(2, &a[2]).0, 201);
    w.fetch(&ingest, "cam1", "stored");
    let stored: Vec<Vec<u8>> = fragment_files(&w.path().join("stored"))
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(stored, a);
}

/// A client the handshake refuses learns why from the TLS alert, even when
/// it sends at once: the ingest lets what was sent drain before it closes,
/// so the alert is not lost to a reset.
#[test]
fn a_refused_client_that_sends_at_once_still_reads_the_alert() {
    let w = World::new();
    let ingest = w.start_ingest();
    mallory_from_another_fleet(&w);
    let c = w.client_with_cert("other/mallory.crt", "other/mallory.key");
    for _ in 0..5 {
        let err = c
            .post(format!("{}/v1/streams", ingest.url()))
            .body(vec![0u8; 8 << 20])
            .send()
            .expect_err("the ingest accepted a certificate of another fleet");
        let chain = format!("{err:?}");
        assert!(chain.to_lowercase().contains("alert"), "{chain}");
    }
}
