//! Retention on the ingest's clock, and legal holds (issue 25): a camera's
//! wrong clock neither stops retention nor erases early, and what an
//! operator holds survives the sweeps that remove its neighbours. Each on
//! a local directory and on an S3-compatible bucket (`s3s-fs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::forge::{now_ns, Forger, SECOND};
use sealcam_system_tests::s3::S3Server;
use sealcam_system_tests::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    S3,
}

/// An ingest with `retention` (TOML of its `[retention]` section) on the
/// backend, cam1 provisioned, and the config file's path for the
/// operator's commands.
struct Setup {
    w: World,
    ingest: Ingest,
    config: std::path::PathBuf,
    _s3: Option<S3Server>,
}

fn setup(backend: Backend, retention: &str) -> Setup {
    let w = World::new();
    let config = w.path().join("ingest.toml");
    let (storage, data, s3) = match backend {
        Backend::Local => (
            format!(
                "[storage]\nkind = \"local\"\npath = \"{}\"\n",
                w.path().join("ingest-data").display()
            ),
            w.path().join("ingest-data"),
            None,
        ),
        Backend::S3 => {
            let s3 = S3Server::start(&w.path().join("s3"), "fleet");
            let c = s3.storage_config("fleet", &w.path().join("s3.secret"));
            (c, s3.root.join("fleet"), Some(s3))
        }
    };
    std::fs::write(
        &config,
        format!("{retention}\n[audit]\nflush_interval = \"1s\"\n{storage}"),
    )
    .unwrap();
    let ingest = Ingest::start_with_config(w.path(), &w.path().join("pki"), &config, &data);
    w.camera("cam1", &ingest.url(), 1, 1000);
    Setup {
        w,
        ingest,
        config,
        _s3: s3,
    }
}

/// Uploads cam1/front fragments 0.. stamped (by the camera's clock) to
/// start at each of `starts`.
fn upload(s: &Setup, starts: &[u64]) {
    let mut cam = Forger::new(&s.w, "cam1");
    for &start in starts {
        cam.upload(&s.ingest.url(), start);
    }
}

/// The sequences of cam1/front with a key object, and with a data object.
fn stored(s: &Setup) -> (Vec<u64>, Vec<u64>) {
    let of = |kind: &str| {
        let mut v: Vec<u64> = stored_object_files(&s.ingest.data)
            .iter()
            .filter(|p| {
                p.parent().is_some_and(|d| d.ends_with(kind))
                    && p.to_string_lossy().contains("/streams/cam1/front/")
            })
            .filter_map(|p| p.file_name()?.to_str()?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    };
    (of("keys"), of("data"))
}

/// `sealcam-ingest ARGS` on the setup's storage, as operator carol.
fn operator(s: &Setup, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--operator", "carol"]);
    admin(s, &all)
}

/// `sealcam-ingest ARGS` on the setup's storage.
fn admin(s: &Setup, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    let config = s.config.to_str().unwrap();
    all.extend(["--config", config, "--pki", "pki"]);
    text(&run_ok("sealcam-ingest", &all, s.w.path()).stdout)
}

const RETENTION: &str =
    "[retention]\nsweep_interval = \"1s\"\n[retention.streams]\n\"cam1/*\" = \"6s\"\n";

/// Fragments a camera stamped 1970 (before its clock was set) are kept
/// for the period from their arrival, not erased at the next sweep.
fn stamped_1970_is_kept_for_the_period(backend: Backend) {
    let s = setup(backend, RETENTION);
    upload(&s, &[SECOND, 2 * SECOND, 3 * SECOND]);
    // Several sweeps pass, well within the period.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(stored(&s), (vec![0, 1, 2], vec![0, 1, 2]), "{backend:?}");
    // And then they go.
    assert!(
        wait_until(30, || stored(&s) == (vec![], vec![])),
        "{backend:?}: {:?}",
        stored(&s)
    );
}

/// A fragment stamped in the future does not stop retention for the
/// fragments after it, nor for itself.
fn stamped_in_the_future_stops_nothing(backend: Backend) {
    let s = setup(backend, RETENTION);
    let now = now_ns();
    // 2099, then two fragments of now.
    upload(&s, &[4_070_908_800 * SECOND, now, now + SECOND]);
    assert!(
        wait_until(30, || stored(&s) == (vec![], vec![])),
        "{backend:?}: {:?}",
        stored(&s)
    );
}

#[test]
fn stamped_1970_is_kept_for_the_period_on_a_local_directory() {
    stamped_1970_is_kept_for_the_period(Backend::Local);
}

#[test]
fn stamped_1970_is_kept_for_the_period_on_s3() {
    stamped_1970_is_kept_for_the_period(Backend::S3);
}

#[test]
fn stamped_in_the_future_stops_nothing_on_a_local_directory() {
    stamped_in_the_future_stops_nothing(Backend::Local);
}

#[test]
fn stamped_in_the_future_stops_nothing_on_s3() {
    stamped_in_the_future_stops_nothing(Backend::S3);
}

/// A held time range survives the sweeps that remove its neighbours, on
/// record; lifted, the next sweep removes it.
fn a_held_range_survives_until_lifted(backend: Backend) {
    let s = setup(backend, RETENTION);
    // Six fragments of the last minutes, ten seconds apart by their
    // camera's clock; the hold covers fragments 2 and 3.
    let base = now_ns() - 120 * SECOND;
    let starts: Vec<u64> = (0..6).map(|i| base + i * 10 * SECOND).collect();
    let rfc = |ns: u64| {
        let out = std::process::Command::new("date")
            .args([
                "-u",
                "-d",
                &format!("@{}", ns / SECOND),
                "+%Y-%m-%dT%H:%M:%SZ",
            ])
            .output()
            .unwrap();
        text(&out.stdout).trim().to_owned()
    };
    let placed = operator(
        &s,
        &[
            "hold",
            "place",
            "cam1/front",
            "--from",
            &rfc(starts[2] + SECOND / 2),
            "--to",
            &rfc(starts[3] + 3 * SECOND / 2),
            "--reason",
            "case 2026-17",
        ],
    );
    let id = placed
        .split("legal hold ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{placed}"))
        .to_owned();
    upload(&s, &starts);
    assert!(
        wait_until(30, || stored(&s) == (vec![2, 3], vec![2, 3])),
        "{backend:?}: {:?}",
        stored(&s)
    );
    // More sweeps: still held, keys and ciphertext.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(stored(&s), (vec![2, 3], vec![2, 3]), "{backend:?}");
    let listed = admin(&s, &["hold", "list", "cam1/front"]);
    assert!(
        listed.contains(&id) && listed.contains("case 2026-17"),
        "{listed}"
    );
    // The operator may not delete it either while it is held.
    let mut del = vec!["stream", "delete", "cam1/front"];
    let config = s.config.to_str().unwrap();
    del.extend(["--config", config, "--pki", "pki"]);
    let refused = run("sealcam-ingest", &del, s.w.path());
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is under legal hold"),
        "{}",
        text(&refused.stderr)
    );

    let lifted = operator(&s, &["hold", "lift", "cam1/front", &id]);
    assert!(lifted.contains("lifted"), "{lifted}");
    assert!(
        wait_until(30, || stored(&s) == (vec![], vec![])),
        "{backend:?}: {:?}",
        stored(&s)
    );
    let shown = admin(&s, &["audit", "show", "--stream", "cam1/front"]);
    assert!(
        shown.contains("operator:carol")
            && shown.contains(&format!("legal hold {id} placed on"))
            && shown.contains("case 2026-17")
            && shown.contains(&format!("legal hold {id} on")),
        "{shown}"
    );
}

#[test]
fn a_held_range_survives_until_lifted_on_a_local_directory() {
    a_held_range_survives_until_lifted(Backend::Local);
}

#[test]
fn a_held_range_survives_until_lifted_on_s3() {
    a_held_range_survives_until_lifted(Backend::S3);
}
