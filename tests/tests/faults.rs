//! Fault injection: the real daemon and the real ingest, with the link, the
//! ingest, the daemon and the disk broken on purpose. Each test shows that
//! nothing is lost or stored twice except what the camera declares, signed.
//!
//! The link runs through [`FaultProxy`]; random choices come from a seed
//! printed at the start, so a failure can be replayed with
//! `SEALCAM_FAULT_SEED`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealcam_system_tests::faultproxy::{FaultProxy, Mode};
use sealcam_system_tests::*;

/// A small deterministic generator (xorshift64*), seeded per test.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Self {
        let seed = std::env::var("SEALCAM_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: SEALCAM_FAULT_SEED={seed}");
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// A camera config for `device` uploading to `url`: `frames` frames at
/// 30 fps in one-second fragments, a moving pattern (so that every
/// fragment has real size), a long drain, and `extra` TOML appended to
/// the sections it names.
fn camera(w: &World, device: &str, url: &str, frames: u32, edit: &[(&str, &str)]) -> PathBuf {
    let cfg = w.camera(device, url, frames, 1000);
    let mut text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("drain_timeout_s = 3", "drain_timeout_s = 90")
        .replace("source = \"test\"", "source = \"test\"\npattern = \"ball\"");
    for (from, to) in edit {
        assert!(text.contains(from), "{from} not in the camera config");
        text = text.replace(from, to);
    }
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// A world with an ingest and a fault proxy in front of it.
fn linked() -> (World, Ingest, FaultProxy) {
    let w = World::new();
    let ingest = w.start_ingest();
    let proxy = FaultProxy::start(ingest.addr);
    (w, ingest, proxy)
}

/// Starts `sealcamd run` with its log in `<device>-<n>.log`.
fn spawn_logged(w: &World, cfg: &Path, log: &Path) -> Child {
    Command::new(bin("sealcamd"))
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .current_dir(w.path())
        .env("SEALCAM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for a camera to exit by itself (at most `secs`); its log on failure.
fn wait_exit(mut child: Child, secs: u64, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "sealcamd failed: {status}\n{text}");
            assert!(!text.contains("panicked"), "{text}");
            return text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sealcamd did not finish within {secs} s\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sequence numbers of the fragments the ingest stored for
/// `device/front`, from its key objects and ciphertext objects, checking
/// each fragment has exactly one of both.
fn stored(ingest: &Ingest, device: &str) -> Vec<u64> {
    let keys = objects(ingest, device, "keys");
    assert_eq!(
        keys,
        objects(ingest, device, "data"),
        "every fragment has one key object and one ciphertext object"
    );
    keys
}

/// The sequence numbers of `device/front`'s objects of `kind` (`keys`: the
/// fragments stored so far, since the key object is written last).
fn objects(ingest: &Ingest, device: &str, kind: &str) -> Vec<u64> {
    let dir = ingest.data.join(format!("streams/{device}/front/{kind}"));
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// `sealcam fetch` then `sealcam verify` of `device/front`: the report.
fn verify(w: &World, ingest: &Ingest, device: &str) -> String {
    verify_with(w, ingest, device, &[])
}

/// [`verify`] with more arguments to `sealcam verify`.
fn verify_with(w: &World, ingest: &Ingest, device: &str, extra: &[&str]) -> String {
    let out_dir = format!("{device}-fetched");
    if !w.path().join(&out_dir).exists() {
        w.fetch(ingest, device, &out_dir);
    }
    let mut args = vec!["verify", out_dir.as_str(), "--owner", "owner.pub"];
    args.extend_from_slice(extra);
    let out = run("sealcam", &args, w.path());
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "verify failed:\n{report}{}",
        text(&out.stderr)
    );
    assert!(report.contains("undeclared gaps: none"), "{report}");
    assert!(report.contains("result:    OK"), "{report}");
    report
}

/// What the spool still holds (besides its state files).
fn spooled(w: &World, device: &str) -> Vec<PathBuf> {
    fragment_files(&w.path().join(format!("{device}/spool")))
}

fn held(w: &World, device: &str) -> usize {
    std::fs::read_dir(w.path().join(format!("{device}/spool/front/held")))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Every stored sequence from 0 to the last, each once: nothing lost.
fn assert_contiguous(seqs: &[u64]) {
    assert!(!seqs.is_empty(), "nothing was stored");
    let expected: Vec<u64> = (0..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, expected, "stored sequences are not 0..=last");
}

#[test]
fn twenty_random_cuts_and_blackholes_lose_nothing_and_store_nothing_twice() {
    let mut rng = Rng::new("cuts");
    let (w, ingest, proxy) = linked();
    // Two minutes at 30 fps.
    let cfg = camera(&w, "cam1", &proxy.url(), 3600, &[]);
    let log = w.path().join("cam1.log");
    let started = Instant::now();
    let cam = spawn_logged(&w, &cfg, &log);
    let mut faults = Vec::new();
    for i in 0..20 {
        std::thread::sleep(rng.ms(2500, 4000));
        let kind = rng.next() % 3;
        match kind {
            0 => proxy.cut(),
            1 => proxy.reset(),
            _ => {
                proxy.blackhole();
                std::thread::sleep(rng.ms(500, 3000));
                proxy.pass();
            }
        }
        faults.push(format!(
            "{i}: {} at {:.1} s",
            ["cut", "reset", "blackhole"][kind as usize],
            started.elapsed().as_secs_f64()
        ));
    }
    let daemon = wait_exit(cam, 240, &log);
    let seqs = stored(&ingest, "cam1");
    assert_contiguous(&seqs);
    let report = verify(&w, &ingest, "cam1");
    assert!(
        !report.contains("declared:"),
        "{report}\nfaults: {faults:#?}"
    );
    assert!(
        report.contains("3600 frames"),
        "{report}\nfaults: {faults:#?}"
    );
    assert!(spooled(&w, "cam1").is_empty());
    assert_eq!(held(&w, "cam1"), 0, "{daemon}");
    // The link really broke, and the camera noticed.
    assert!(proxy.connections() > 1, "{faults:#?}");
    assert!(daemon.contains("uplink recovered"), "{daemon}");
}

#[test]
fn an_ingest_killed_mid_fragment_and_restarted_loses_and_duplicates_nothing() {
    let w = World::new();
    let mut ingest = w.start_ingest();
    let proxy = FaultProxy::start(ingest.addr);
    let cfg = camera(&w, "cam1", &proxy.url(), 600, &[]);
    let log = w.path().join("cam1.log");
    let cam = spawn_logged(&w, &cfg, &log);
    // Some fragments in, then the ingest dies half-way through one.
    assert!(wait_until(30, || objects(&ingest, "cam1", "keys").len() >= 3));
    std::thread::sleep(Duration::from_millis(500));
    drop(ingest); // SIGKILL
    std::thread::sleep(Duration::from_secs(4));
    ingest = w.start_ingest();
    proxy.set_target(ingest.addr);
    let daemon = wait_exit(cam, 120, &log);
    let seqs = stored(&ingest, "cam1");
    assert_contiguous(&seqs);
    let report = verify(&w, &ingest, "cam1");
    assert!(!report.contains("declared:"), "{report}");
    assert!(report.contains("600 frames"), "{report}");
    assert!(spooled(&w, "cam1").is_empty());
    assert!(daemon.contains("uplink recovered"), "{daemon}");
}

#[test]
fn a_daemon_killed_ten_times_uploads_nothing_corrupt_and_declares_each_loss() {
    let mut rng = Rng::new("sigkill");
    let w = World::new();
    let ingest = w.start_ingest();
    // Long enough never to end by itself.
    let cfg = camera(&w, "cam1", &ingest.url(), 100_000, &[]);
    for i in 0..10 {
        let log = w.path().join(format!("cam1-{i}.log"));
        let mut cam = spawn_logged(&w, &cfg, &log);
        std::thread::sleep(rng.ms(1500, 4500));
        cam.kill().unwrap(); // SIGKILL
        cam.wait().unwrap();
    }
    // A last, clean run.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("num_buffers = 100000", "num_buffers = 90"),
    )
    .unwrap();
    let last = cfg;
    let log = w.path().join("cam1-last.log");
    wait_exit(spawn_logged(&w, &last, &log), 120, &log);

    let seqs = stored(&ingest, "cam1");
    assert_contiguous(&seqs);
    let report = verify(&w, &ingest, "cam1");
    // Each kill lost at most the fragment being recorded, declared as such
    // (a kill before the first fragment of a run declares nothing new).
    let crashes = report.matches("recorder interrupted").count();
    assert!((1..=10).contains(&crashes), "{report}");
    for line in report.lines().filter(|l| l.starts_with("declared:")) {
        assert!(line.contains("recorder interrupted"), "{line}\n{report}");
    }
    // The ingest refused nothing but the live uploads each kill broke off:
    // no torn or corrupt fragment was sent.
    assert_eq!(held(&w, "cam1"), 0);
    let log = ingest.log_text();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fragment refused") && !l.contains("body could not be read"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    assert!(spooled(&w, "cam1").is_empty());
}

#[test]
fn a_long_outage_evicts_the_oldest_declares_them_and_uploads_the_rest() {
    let (w, ingest, proxy) = linked();
    // 1 MiB of spool at about 2 Mbit/s: a little over four seconds of video.
    let cfg = camera(
        &w,
        "cam1",
        &proxy.url(),
        1200,
        &[
            // Noise: every frame costs its share of the bitrate.
            ("pattern = \"ball\"", "pattern = \"snow\""),
            ("bitrate_kbps = 500", "bitrate_kbps = 2000"),
            ("[spool]\n", "[spool]\nmax_bytes = 1048576\n"),
        ],
    );
    proxy.blackhole();
    let log = w.path().join("cam1.log");
    let cam = spawn_logged(&w, &cfg, &log);
    std::thread::sleep(Duration::from_secs(25));
    let during = objects(&ingest, "cam1", "keys");
    proxy.pass();
    let daemon = wait_exit(cam, 120, &log);
    assert!(during.is_empty(), "stored during the outage: {during:?}");
    assert!(daemon.contains("spool full"), "{daemon}");

    let seqs = stored(&ingest, "cam1");
    // An outage long enough to overflow the spool is one the server (or
    // the network) can cause at will: the camera's signed excuse does not
    // pass unless the user accepts it by name.
    let fetched = w.fetch_with(&ingest, "cam1", "cam1-fetched", &[]);
    assert!(!fetched.status.success(), "{}", text(&fetched.stdout));
    let refused = run(
        "sealcam",
        &["verify", "cam1-fetched", "--owner", "owner.pub"],
        w.path(),
    );
    let text_refused = text(&refused.stdout);
    assert!(!refused.status.success(), "{text_refused}");
    assert!(
        text_refused.contains("one the server could have caused")
            && text_refused.contains("--accept-gap spool-evicted")
            && text_refused.contains("result:    FAILED"),
        "{text_refused}"
    );
    let report = verify_with(&w, &ingest, "cam1", &["--accept-gap", "spool-evicted"]);
    assert!(report.contains("spool full"), "{report}");
    assert!(report.contains("accepted:  spool full"), "{report}");
    // The oldest went; what was kept and everything after the outage arrived.
    assert!(seqs[0] > 0, "{seqs:?}");
    let last = *seqs.last().unwrap();
    assert_eq!(seqs, (seqs[0]..=last).collect::<Vec<_>>(), "{report}");
    assert!(last >= 38, "capture stopped: {seqs:?}");
    assert!(spooled(&w, "cam1").is_empty());
}

/// A tmpfs of `bytes` mounted at `dir`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs as the spool's disk and needs root: {}",
            text(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_reported_once_declared_and_recovered_from_without_a_restart() {
    let (w, ingest, proxy) = linked();
    let cfg = camera(&w, "cam1", &proxy.url(), 900, &[]);
    let disk = SmallDisk::mount(&w.path().join("cam1/spool"), 4 << 20);
    // The disk fills (while the link is down, so nothing drains it) ...
    proxy.blackhole();
    let log = w.path().join("cam1.log");
    let cam = spawn_logged(&w, &cfg, &log);
    assert!(wait_until(20, || w
        .path()
        .join("cam1/spool/front")
        .exists()));
    let filler = w.path().join("cam1/spool/filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    std::thread::sleep(Duration::from_secs(8));
    let full = std::fs::read_to_string(&log).unwrap_or_default();
    // ... then space returns and the link too.
    std::fs::remove_file(&filler).unwrap();
    proxy.pass();
    let daemon = wait_exit(cam, 120, &log);
    drop(disk);
    assert!(
        full.contains("cannot store fragments in the spool"),
        "{full}"
    );
    assert_eq!(
        daemon
            .matches("cannot store fragments in the spool")
            .count(),
        1,
        "logged once per episode:\n{daemon}"
    );
    assert!(
        daemon.contains("the spool stores fragments again"),
        "{daemon}"
    );
    assert_eq!(daemon.matches("capture started").count(), 1, "{daemon}");
    let report = verify(&w, &ingest, "cam1");
    assert!(report.contains("disk full or failing"), "{report}");
    let seqs = stored(&ingest, "cam1");
    assert!(*seqs.last().unwrap() >= 28, "capture stopped: {seqs:?}");
}

#[test]
fn a_throttled_link_keeps_live_current_while_the_backlog_drains() {
    let (w, ingest, proxy) = linked();
    // Noise at 500 kbit/s: the bitrate the link must carry for live.
    let cfg = camera(
        &w,
        "cam1",
        &proxy.url(),
        1800,
        &[("pattern = \"ball\"", "pattern = \"snow\"")],
    );
    // A 15 s outage builds a backlog ...
    proxy.blackhole();
    let log = w.path().join("cam1.log");
    let started = Instant::now();
    let cam = spawn_logged(&w, &cfg, &log);
    std::thread::sleep(Duration::from_secs(15));
    // ... then the link comes back at 1.5 Mbit/s, about three times the
    // camera's bitrate.
    proxy.set_mode(Mode::Throttle(190_000));
    proxy.cut();
    let mut behind = Vec::new();
    let mut backlog_left = Vec::new();
    // Once the camera is back (its backoff has run out) ...
    assert!(wait_until(40, || !objects(&ingest, "cam1", "keys").is_empty()));
    // (the first fragment back is the oldest; live resumes at the next
    // fragment the camera starts, and is stored ahead of the backlog)
    let backlog = |seqs: &[u64]| {
        let newest = seqs.last().copied().unwrap_or(0);
        (newest + 1).saturating_sub(seqs.len() as u64)
    };
    assert!(
        wait_until(15, || backlog(&objects(&ingest, "cam1", "keys")) > 0),
        "live never overtook the backlog: stored {:?}",
        objects(&ingest, "cam1", "keys")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let seqs = objects(&ingest, "cam1", "keys");
        let newest = seqs.last().copied().unwrap_or(0);
        // Fragment k closes about k + 1 s after the first frame.
        let recording = started.elapsed().as_secs().saturating_sub(2);
        behind.push(recording.saturating_sub(newest));
        backlog_left.push(backlog(&seqs));
        std::thread::sleep(Duration::from_secs(1));
    }
    proxy.pass();
    wait_exit(cam, 120, &log);
    // ... live stays within a few fragments of the camera while the
    // backlog (older fragments) is still arriving.
    assert!(
        behind.iter().all(|b| *b <= 3),
        "live fell behind: {behind:?} (backlog left {backlog_left:?})"
    );
    assert!(
        backlog_left.first().is_some_and(|b| *b > 0),
        "no backlog while throttled: {backlog_left:?}"
    );
    assert_contiguous(&stored(&ingest, "cam1"));
    let report = verify(&w, &ingest, "cam1");
    assert!(!report.contains("declared:"), "{report}");
}

#[test]
fn a_fragment_damaged_in_the_spool_is_declared_and_never_sent() {
    let (w, ingest, proxy) = linked();
    let cfg = camera(
        &w,
        "cam1",
        &proxy.url(),
        90,
        &[("drain_timeout_s = 90", "drain_timeout_s = 2")],
    );
    // Recorded while the link is down: three fragments wait in the spool.
    proxy.blackhole();
    let log = w.path().join("cam1-0.log");
    let out = spawn_logged(&w, &cfg, &log).wait().unwrap();
    assert!(!out.success(), "{}", std::fs::read_to_string(&log).unwrap());
    let files = spooled(&w, "cam1");
    assert_eq!(files.len(), 3, "{files:?}");
    // The card flips a bit in the middle one's ciphertext.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x10;
    std::fs::write(&files[1], bytes).unwrap();

    proxy.pass();
    let log = w.path().join("cam1-1.log");
    let daemon = wait_exit(spawn_logged(&w, &camera_again(&cfg), &log), 120, &log);
    assert!(daemon.contains("spooled fragment is damaged"), "{daemon}");
    assert_eq!(stored(&ingest, "cam1"), [0, 2, 3, 4, 5]);
    let report = verify(&w, &ingest, "cam1");
    assert!(
        report.contains("disk full or failing") && report.contains("sequences 1..=1 missing"),
        "{report}"
    );
    // Sent nothing the ingest had to refuse.
    assert!(
        !ingest.log_text().contains("fragment refused"),
        "{}",
        ingest.log_text()
    );
}

/// The same camera config, for a run that drains for longer.
fn camera_again(cfg: &Path) -> PathBuf {
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(
        cfg,
        text.replace("drain_timeout_s = 2", "drain_timeout_s = 90"),
    )
    .unwrap();
    cfg.to_owned()
}
