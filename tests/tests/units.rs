//! The systemd units: locked down, and the daemons speak systemd's notify
//! protocol (readiness, a watchdog fed only while frames flow).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use sealcam_system_tests::*;

fn unit(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(name)
}

/// `systemd-analyze security --offline=true`'s overall exposure (0 to 10)
/// of the unit file at `path`, and what it warned about.
fn exposure(path: &Path) -> (f64, String) {
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(path)
        .output()
        .expect("systemd-analyze (the systemd package; scripts/install-deps)");
    let report = text(&out.stdout);
    let warnings = text(&out.stderr);
    let score = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}{warnings}"));
    (score, warnings)
}

#[test]
fn every_unit_exposes_at_most_2_0() {
    for name in [
        "sealcamd.service",
        "sealcam-ingest.service",
        "sealcam-ca.service",
    ] {
        let (score, _) = exposure(&unit(name));
        assert!(score <= 2.0, "{name}: exposure {score}");
        let text = std::fs::read_to_string(unit(name)).unwrap();
        for line in [
            "Type=notify",
            "DevicePolicy=closed",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
        ] {
            assert!(text.contains(line), "{name} lacks {line:?}");
        }
    }
    let camera = std::fs::read_to_string(unit("sealcamd.service")).unwrap();
    for line in [
        "WatchdogSec=",
        "SupplementaryGroups=video tss",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=/dev/tpmrm0 rw",
        "StateDirectory=sealcam",
    ] {
        assert!(camera.contains(line), "sealcamd.service lacks {line:?}");
    }
}

#[test]
fn the_update_units_run_the_documented_commands() {
    let path = std::fs::read_to_string(unit("sealcam-install.path")).unwrap();
    assert!(path.contains("PathExists=/var/lib/sealcam/update/ready.raucb"));
    assert!(path.contains("Unit=sealcam-install.service"));
    let install = std::fs::read_to_string(unit("sealcam-install.service")).unwrap();
    assert!(install.contains(
        "ExecStart=/usr/bin/sealcamd update install --config /etc/sealcam/sealcamd.toml --reboot"
    ));
    let health = std::fs::read_to_string(unit("sealcam-health.service")).unwrap();
    assert!(health.contains(
        "ExecStart=/usr/bin/sealcamd health --config /etc/sealcam/sealcamd.toml --reboot"
    ));
    assert!(health.contains("After=sealcamd.service"));
    // The note the health check reads lives in sealcamd's runtime directory.
    let camera = std::fs::read_to_string(unit("sealcamd.service")).unwrap();
    assert!(camera.contains("RuntimeDirectory=sealcam\n"));
    for name in ["sealcam-install.service", "sealcam-health.service"] {
        let (score, _) = exposure(&unit(name));
        // Root services that talk to RAUC and systemd over D-Bus.
        assert!(score <= 2.0, "{name}: exposure {score}");
    }
}

/// The values of every `key=` line of a unit, split on whitespace.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

#[test]
fn ordering_after_a_target_also_pulls_it_in() {
    // An After= on a passive target that nothing pulls in orders nothing.
    for name in [
        "sealcamd.service",
        "sealcam-ingest.service",
        "sealcam-ca.service",
        "sealcam-firstboot.service",
    ] {
        let text = std::fs::read_to_string(unit(name)).unwrap();
        let wants = values(&text, "Wants");
        for target in values(&text, "After")
            .into_iter()
            .filter(|u| u.ends_with(".target"))
        {
            assert!(
                wants.contains(&target),
                "{name}: After={target} without Wants="
            );
        }
    }
    let ingest = std::fs::read_to_string(unit("sealcam-ingest.service")).unwrap();
    assert!(
        values(&ingest, "After").contains(&"time-sync.target".to_owned()),
        "the ingest's retention reads the clock"
    );
}

#[test]
fn first_boot_runs_before_sealcamd_and_reports_on_the_console() {
    let path = unit("sealcam-firstboot.service");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(values(&text, "Before").contains(&"sealcamd.service".to_owned()));
    assert!(values(&text, "After").contains(&"dev-tpmrm0.device".to_owned()));
    assert_eq!(values(&text, "StandardOutput"), ["journal+console"]);
    assert!(text.contains("ExecStart=/usr/bin/sealcamd firstboot"));
    // It runs as root (the config directory, the card): sandboxed all the same.
    let (score, _) = exposure(&path);
    assert!(score <= 2.5, "sealcam-firstboot.service: exposure {score}");
}

#[test]
fn the_camera_writes_no_core_files() {
    let camera = std::fs::read_to_string(unit("sealcamd.service")).unwrap();
    assert_eq!(values(&camera, "LimitCORE"), ["0"]);
}

#[test]
fn the_ingest_may_hold_10_000_connections() {
    let ingest = std::fs::read_to_string(unit("sealcam-ingest.service")).unwrap();
    let limit: Vec<u64> = values(&ingest, "LimitNOFILE")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        limit.len() == 1 && limit[0] >= 16_384,
        "LimitNOFILE: {limit:?}"
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit("sealcam-ingest.service"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("LimitNOFILE"), "{err}");
}

#[test]
fn board_drop_ins_parse_and_keep_the_unit_locked_down() {
    let base = std::fs::read_to_string(unit("sealcamd.service")).unwrap();
    for board in ["raspberrypi.conf", "jetson.conf"] {
        let drop_in = std::fs::read_to_string(unit("boards").join(board)).unwrap();
        // Sections may repeat in one file; systemd merges them as it merges
        // a drop-in.
        let dir = tempfile::tempdir().unwrap();
        let merged = dir.path().join("sealcamd.service");
        std::fs::write(&merged, format!("{base}\n{drop_in}")).unwrap();
        let (score, warnings) = exposure(&merged);
        assert!(
            !warnings.contains("Unknown") && !warnings.contains("Failed to parse"),
            "{board}: {warnings}"
        );
        assert!(score <= 2.0, "{board}: exposure {score}");
    }
}

#[test]
fn sealcamd_is_ready_and_feeds_the_watchdog_only_while_frames_flow() {
    let w = World::new();
    // Nothing listens here: after the 2 s of capture, sealcamd spends its
    // 3 s drain timeout retrying, with no frames flowing.
    let port = unused_port();
    let cfg = w.camera("cam1", &format!("https://127.0.0.1:{port}"), 60, 1000);
    let socket_path = w.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    // As systemd does: WATCHDOG_PID names the service's own process.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\""])
        .arg(bin("sealcamd"))
        .arg(&cfg)
        .current_dir(w.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "600000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut messages: Vec<(Duration, String)> = Vec::new();
    let mut buf = [0u8; 512];
    let exited = loop {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push((
                started.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
        if child.try_wait().unwrap().is_some() {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sealcamd did not exit"
        );
    };
    let said = |what: &str| messages.iter().filter(|(_, m)| m.contains(what)).count();
    assert_eq!(said("READY=1"), 1, "{messages:?}");
    assert!(said("WATCHDOG=1") >= 2, "{messages:?}");
    assert_eq!(said("STOPPING=1"), 1, "{messages:?}");
    // The keep-alives stopped with the frames, long before the exit.
    let last = messages
        .iter()
        .rev()
        .find(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        exited.saturating_sub(last) >= Duration::from_millis(1500),
        "last keep-alive at {last:?}, exit at {exited:?}: {messages:?}"
    );
    let err = text(&child.wait_with_output().unwrap().stderr);
    assert!(err.contains("withholding the watchdog keep-alive"), "{err}");
}
