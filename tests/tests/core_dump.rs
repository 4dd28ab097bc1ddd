//! A running sealcamd cannot write a core file: frames and data keys never
//! reach the disk through a crash.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

use sealcam_system_tests::*;

#[test]
fn the_running_daemon_has_no_core_size() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), 300, 1000);
    let mut camera = Command::new(bin("sealcamd"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .current_dir(w.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let limits_path = format!("/proc/{}/limits", camera.id());
    let mut core = String::new();
    let found = wait_until(10, || {
        core = std::fs::read_to_string(&limits_path)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap_or_default()
            .to_owned();
        core.split_whitespace().skip(4).take(2).eq(["0", "0"])
    });
    let _ = camera.kill();
    let _ = camera.wait();
    assert!(found, "{core}");
}
