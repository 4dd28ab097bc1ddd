//! Ingest instances sharing one bucket on a real S3-compatible server
//! (`s3s-fs`), as behind a load balancer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::s3::S3Server;
use sealcam_system_tests::*;

const BUCKET: &str = "fleet";

/// An S3 server and two ingest instances on the same bucket and PKI.
fn two_ingests(w: &World) -> (S3Server, Ingest, Ingest) {
    let s3 = S3Server::start(&w.path().join("s3"), BUCKET);
    let cfg = w.path().join("ingest.toml");
    std::fs::write(&cfg, s3.storage_config(BUCKET, &w.path().join("s3.secret"))).unwrap();
    let data = s3.root.join(BUCKET);
    let pki = w.path().join("pki");
    let a = Ingest::start_with_config(w.path(), &pki, &cfg, &data);
    let b = Ingest::start_with_config(w.path(), &pki, &cfg, &data);
    (s3, a, b)
}

fn objects_under(ingest: &Ingest, kind: &str) -> usize {
    stored_object_files(&ingest.data)
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with(kind)))
        .count()
}

#[test]
fn two_ingests_on_one_bucket_serve_one_chain_without_duplicates() {
    let w = World::new();
    let (_s3, a, b) = two_ingests(&w);

    // cam1 uploads two fragments to A, then fails over to B for two more:
    // B checks chain continuity against what A stored.
    let cfg = w.record("cam1", &a, 60);
    w.write_camera_config("cam1", &b.url(), 60, 1000);
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert_eq!(objects_under(&a, "keys"), 4);
    assert_eq!(objects_under(&a, "data"), 4);

    // Either instance serves all four as one verified chain.
    for (ingest, out) in [(&a, "from-a"), (&b, "from-b")] {
        w.fetch(ingest, "cam1", out);
        let report = text(&run_ok("sealcam", &["verify", out], w.path()).stdout);
        assert!(
            report.contains("4 fragments (sequence 0..=3), 120 frames"),
            "{report}"
        );
    }

    // The camera re-sends a fragment (its acknowledgement was lost in a
    // failover): both instances acknowledge it and store nothing twice.
    let device = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let first = fragment_files(&w.path().join("from-a"));
    let bytes = std::fs::read(&first[0]).unwrap();
    for ingest in [&a, &b] {
        let resp = device
            .put(format!("{}/v1/fragments/cam1/front/0", ingest.url()))
            .body(bytes.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(body["status"], "already-stored");
    }
    assert_eq!(objects_under(&a, "keys"), 4);

    // The camera loses its spool (a reset) and starts its chain again at
    // sequence 0: different bytes for stored sequences are refused, logged
    // as a security event, and what is stored stays as it was.
    std::fs::remove_dir_all(w.path().join("cam1/spool")).unwrap();
    let _ = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(b
        .wait_for_log("SECURITY: conflicting fragment refused")
        .contains("SECURITY"));
    w.fetch(&a, "cam1", "after");
    for (before, after) in first.iter().zip(fragment_files(&w.path().join("after"))) {
        assert_eq!(
            std::fs::read(before).unwrap(),
            std::fs::read(after).unwrap()
        );
    }
    assert_eq!(objects_under(&a, "keys"), 4);
}
