//! Revocation that a routine operator action cannot undo (issue 23;
//! `../shared/THREATS.md`: a thief with the whole camera must never have
//! its revocation lifted by a routine operator action).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::*;

#[test]
fn a_stolen_camera_stays_revoked_after_its_name_is_enrolled_again() {
    let w = World::new();
    // The camera that will be stolen: its certificate and key, as the
    // thief keeps them.
    w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    std::fs::copy(
        w.path().join("cam1/device.crt"),
        w.path().join("stolen.crt"),
    )
    .unwrap();
    std::fs::copy(
        w.path().join("cam1/device.key"),
        w.path().join("stolen.key"),
    )
    .unwrap();
    let ingest = w.start_ingest();
    let stolen = w.client_with_cert("stolen.crt", "stolen.key");
    let whoami = format!("{}/v1/whoami", ingest.url());
    assert!(stolen.get(&whoami).send().unwrap().status().is_success());

    w.revoke("device", "cam1");
    // The replacement camera is added under the same name, and another
    // device's revocation rewrites the CRL afterwards.
    let token = w.device_add("cam1", "1h");
    assert_eq!(token.len(), 64, "{token}");
    w.camera("cam2", "https://127.0.0.1:1", 10, 1000);
    w.revoke("device", "cam2");

    // The stolen certificate is still refused, by this ingest and by one
    // started now from the rewritten CRL.
    let refused = |ingest: &Ingest| {
        wait_until(10, || {
            w.client_with_cert("stolen.crt", "stolen.key")
                .get(format!("{}/v1/whoami", ingest.url()))
                .send()
                .is_err()
        })
    };
    assert!(refused(&ingest), "{}", ingest.log_text());
    drop(ingest);
    let fresh = w.start_ingest();
    assert!(refused(&fresh), "{}", fresh.log_text());
    let log = fresh.wait_for_log("invalid peer certificate: Revoked");
    assert!(log.contains("invalid peer certificate: Revoked"), "{log}");
}

#[test]
fn a_revocation_list_that_disappears_or_breaks_keeps_the_last_good_one() {
    let w = World::new();
    w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let ingest = w.start_ingest();
    w.revoke("device", "cam1");
    ingest.wait_for_log("revocation list reloaded");
    let refused = || {
        w.client_with_cert("cam1/device.crt", "cam1/device.key")
            .get(format!("{}/v1/whoami", ingest.url()))
            .send()
            .is_err()
    };
    assert!(wait_until(10, refused), "{}", ingest.log_text());
    // The CA's list deleted (by a botched deployment): the CA service
    // cannot serve one, the ingest keeps the one it holds.
    let crl = w.path().join("ca/crl.pem");
    let good = std::fs::read(&crl).unwrap();
    std::fs::remove_file(&crl).unwrap();
    let log = ingest.wait_for_log("keeping the last good one");
    assert!(log.contains("the CA service answered 503"), "{log}");
    assert!(refused(), "{}", ingest.log_text());
    // Replaced by something that does not parse: not taken either.
    std::fs::write(
        &crl,
        b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n",
    )
    .unwrap();
    assert!(wait_until(10, || ingest
        .log_text()
        .contains("sent a list that is not taken")));
    assert!(refused(), "{}", ingest.log_text());
    // The ingest's own cached copy deleted: fetched again, still refused.
    std::fs::write(&crl, good).unwrap();
    std::fs::remove_file(w.path().join("pki/crl.pem")).unwrap();
    assert!(wait_until(10, || w.path().join("pki/crl.pem").exists()));
    assert!(refused());
}

#[test]
fn an_expired_certificate_loses_its_connection_and_cannot_resume() {
    let w = World::new();
    let cfg = w.write_camera_config("cam1", "https://127.0.0.1:1", 10, 1000);
    w.provision_software_key(&cfg);
    // A certificate that lasts 6 s.
    w.issue_device_cert_for("cam1", "6s");
    let ingest = w.start_ingest();
    let client = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let whoami = format!("{}/v1/whoami", ingest.url());
    assert!(client.get(&whoami).send().unwrap().status().is_success());
    // The open connection is closed when the certificate expires.
    let log = ingest.wait_for_log("closing connection: its certificate expired");
    assert!(
        log.contains("closing connection: its certificate expired"),
        "{log}"
    );
    // The client comes back resuming its TLS session (which skips the
    // certificate checks of a full handshake): refused after it.
    assert!(client.get(&whoami).send().is_err());
    let log = ingest.wait_for_log("certificate outside its validity");
    assert!(log.contains("connection refused"), "{log}");
}

#[test]
fn a_consumer_and_a_device_of_one_name_are_revoked_apart() {
    let w = World::new();
    let ingest = w.start_ingest();
    // The device "front" and the consumer "front".
    w.camera("front", &ingest.url(), 10, 1000);
    let consumer = w.consumer("front", &[]);
    let device = || w.client_with_cert("front/device.crt", "front/device.key");
    let whoami = format!("{}/v1/whoami", ingest.url());
    let accepted = |c: &reqwest::blocking::Client| {
        c.get(&whoami).send().is_ok_and(|r| r.status().is_success())
    };
    assert!(accepted(&consumer) && accepted(&device()));
    let out = w.revoke("consumer", "front");
    assert!(
        text(&out.stdout).contains("consumer front revoked: 1 certificates"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        wait_until(10, || !accepted(&w.consumer_client("front"))),
        "{}",
        ingest.log_text()
    );
    // The device of the same name is untouched, and adding a device of
    // that name again lifts nothing of the consumer's.
    assert!(accepted(&device()), "{}", ingest.log_text());
    w.device_add("front", "1h");
    w.revoke("device", "front");
    assert!(wait_until(10, || !accepted(&device())));
    assert!(!accepted(&w.consumer_client("front")));
    assert!(w.path().join("ca/revoked/consumer/front").exists());
    assert!(w.path().join("ca/revoked/device/front").exists());
}

#[test]
fn a_revoked_camera_keeps_saying_it_is_revoked() {
    let w = World::new();
    w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    w.revoke("device", "cam1");
    let ingest = w.start_ingest();
    let cfg = w.write_camera_config("cam1", &ingest.url(), 60, 1000);
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("still in the spool"), "{err}");
    // Once the camera has been told it is revoked, no later line sends the
    // owner to check upload.url, and the last word names the revocation.
    let revoked = err
        .find("the ingest revoked this camera's certificate")
        .unwrap_or_else(|| panic!("never said revoked: {err}"));
    assert!(!err[revoked..].contains("check upload.url"), "{err}");
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(last.contains("revoked"), "{last}");
}
