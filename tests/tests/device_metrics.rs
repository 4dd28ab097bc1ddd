//! sealcamd's Prometheus endpoint: every metric moves when what it counts
//! happens, and the endpoint listens on loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use sealcam_system_tests::*;

/// The samples of a Prometheus text page, by series name (labels kept).
fn samples(url: &str) -> HashMap<String, f64> {
    let Ok(resp) = try_http_get(url) else {
        return HashMap::new();
    };
    let text = resp.text().unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, name: &str) -> f64 {
    s.get(name).copied().unwrap_or(0.0)
}

#[test]
fn every_device_metric_moves() {
    let w = World::new();
    let ingest_port = unused_port();
    let metrics_port = unused_port();
    let cfg = w.camera(
        "cam1",
        &format!("https://127.0.0.1:{ingest_port}"),
        10,
        1000,
    );
    // Noise at a high bitrate fills a 1 MiB spool in a few seconds while
    // the ingest is down; the camera fails once and is rebuilt.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "num_buffers = 10\n",
            "pattern = \"snow\"\ntest_fault = \"error-after:45\"\n",
        )
        .replace("bitrate_kbps = 500", "bitrate_kbps = 8000")
        .replace(
            "dir = \"cam1/spool\"",
            "dir = \"cam1/spool\"\nmax_bytes = 1048576\nwhen_full = \"stop-recording\"",
        )
        + &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    std::fs::write(&cfg, text).unwrap();
    let mut camera = w.spawn_camera(&cfg);
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");

    // Ingest down: capture, sealing, restarts, failed uploads, a full spool.
    let mut last = HashMap::new();
    let offline = wait_until(60, || {
        last = samples(&url);
        value(&last, "sealcamd_fragments_dropped_total") > 0.0
            && value(&last, "sealcamd_pipeline_restarts_total") > 0.0
            && value(&last, "sealcamd_upload_failures_total") > 0.0
    });
    assert!(offline, "{last:?}");
    for name in [
        "sealcamd_frames_captured_total",
        "sealcamd_frames_dropped_total",
        "sealcamd_fragments_sealed_total",
        "sealcamd_key_signatures_total",
        "sealcamd_spool_bytes",
        "sealcamd_spool_fragments",
    ] {
        assert!(value(&last, name) > 0.0, "{name}: {last:?}");
    }
    assert_eq!(value(&last, "sealcamd_fragments_uploaded_total"), 0.0);

    // The ingest comes up: uploads, timed; the spool drains.
    let _ingest = w.start_ingest_with(&["--listen", &format!("127.0.0.1:{ingest_port}")]);
    let online = wait_until(60, || {
        last = samples(&url);
        value(&last, "sealcamd_fragments_uploaded_total") >= 2.0
            && value(&last, "sealcamd_upload_seconds_count") >= 2.0
    });
    let _ = camera.kill();
    let _ = camera.wait();
    assert!(online, "{last:?}");
    assert!(value(&last, "sealcamd_upload_seconds_sum") > 0.0);
    // Nothing this test did was refused for good.
    assert_eq!(value(&last, "sealcamd_fragments_rejected_total"), 0.0);
}

#[test]
fn the_endpoint_is_loopback_only() {
    let w = World::new();
    let cfg = w.camera("cam1", "https://127.0.0.1:1", 10, 1000);
    let text = std::fs::read_to_string(&cfg).unwrap() + "[metrics]\nlisten = \"0.0.0.0:9464\"\n";
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.listen") && err.contains("not a loopback address"),
        "{err}"
    );
}
