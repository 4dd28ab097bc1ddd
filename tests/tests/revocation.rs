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

    run_ok(
        "sealcam-ingest",
        &["device", "revoke", "cam1", "--pki", "pki"],
        w.path(),
    );
    // The replacement camera is added under the same name, and another
    // device's revocation rewrites the CRL afterwards.
    let token = w.device_add("cam1", "1h");
    assert_eq!(token.len(), 64, "{token}");
    w.camera("cam2", "https://127.0.0.1:1", 10, 1000);
    run_ok(
        "sealcam-ingest",
        &["device", "revoke", "cam2", "--pki", "pki"],
        w.path(),
    );

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
