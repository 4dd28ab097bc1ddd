//! Consumer grants default to nothing: `sealcam-ca consumer issue` needs
//! `--stream` or an explicit `--all-streams`, certificates are short-lived
//! (30 days), and `consumer renew` renews one with its grants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Days from now until `consumer/<name>.crt` ends.
fn days_left(w: &World, name: &str) -> i64 {
    let pem = std::fs::read_to_string(w.path().join(format!("consumer/{name}.crt"))).unwrap();
    let der = sealcam_transport::pem::parse_first_cert(&pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (cert.validity().not_after.timestamp() - now) / 86_400
}

fn ca(w: &World, args: &[&str]) -> std::process::Output {
    run("sealcam-ca", args, w.path())
}

#[test]
fn issue_without_streams_refuses_and_renewal_keeps_the_grants() {
    let w = World::new();
    let ingest = w.start_ingest();

    // Neither --stream nor --all-streams: refused, nothing written.
    let out = ca(
        &w,
        &[
            "consumer",
            "issue",
            "--dir",
            "ca",
            "--name",
            "carol",
            "--out-dir",
            "consumer",
        ],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--stream DEVICE/STREAM") && err.contains("--all-streams"),
        "{err}"
    );
    assert!(!w.path().join("consumer/carol.crt").exists());
    assert!(!w.path().join("consumer/carol.key").exists());

    // A grant of one stream, for 30 days by default.
    let bob = w.consumer("bob", &["cam2/front"]);
    assert!((29..=30).contains(&days_left(&w, "bob")), "about 30 days");
    let status = |client: &reqwest::blocking::Client, path: &str| {
        client
            .get(format!("{}{path}", ingest.url()))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(&bob, "/v1/streams/cam1/front/fragments"), 403);
    assert_eq!(status(&bob, "/v1/streams/cam2/front/fragments"), 200);

    // Renewed for longer: a new key and certificate, the same single grant.
    let before = std::fs::read(w.path().join("consumer/bob.key")).unwrap();
    let out = ca(
        &w,
        &[
            "consumer",
            "renew",
            "--dir",
            "ca",
            "--name",
            "bob",
            "--out-dir",
            "consumer",
            "--lifetime",
            "60d",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(
        std::fs::read(w.path().join("consumer/bob.key")).unwrap(),
        before
    );
    assert!((59..=60).contains(&days_left(&w, "bob")));
    let bob = w.consumer_client("bob");
    assert_eq!(status(&bob, "/v1/streams/cam1/front/fragments"), 403);
    assert_eq!(status(&bob, "/v1/streams/cam2/front/fragments"), 200);

    // Someone else's certificate under bob's name is not renewed.
    std::fs::copy(
        w.path().join("consumer/alice.crt"),
        w.path().join("consumer/bob.crt"),
    )
    .unwrap();
    let out = ca(
        &w,
        &[
            "consumer",
            "renew",
            "--dir",
            "ca",
            "--name",
            "bob",
            "--out-dir",
            "consumer",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not consumer bob's"),
        "{}",
        text(&out.stderr)
    );

    // A revoked consumer is not renewed.
    w.revoke("consumer", "alice");
    let out = ca(
        &w,
        &[
            "consumer",
            "renew",
            "--dir",
            "ca",
            "--name",
            "alice",
            "--out-dir",
            "consumer",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("revoked"),
        "{}",
        text(&out.stderr)
    );
}
