//! `sealcamd check`: everything the daemon needs, probed one by one, with
//! what to do about each failure.
//!
//! The probes are real: the capture graph runs until its first frame, the
//! device key signs (through the TPM where it lives there), the spool
//! directory takes a durable write, and the ingest answers `whoami` over
//! mutual TLS with the device's certificate.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealcam_api::{RoleName, Route, WhoAmI};
use sealcam_base::durable;
use sealcam_hal::board::Board;
use sealcam_hal::capture::{self, Capture, CaptureEvent};
use sealcam_hal::pipeline;
use sealcam_transport::{identity, pem, ExternalSigner};

use crate::config::{Config, KeySource};

/// One probe's outcome.
#[derive(Debug)]
pub struct Probe {
    pub what: &'static str,
    /// What was found, or what is wrong and how to fix it.
    pub outcome: Result<String, String>,
}

impl Probe {
    fn new(what: &'static str, outcome: Result<String, String>) -> Self {
        Self { what, outcome }
    }

    pub fn failed(&self) -> bool {
        self.outcome.is_err()
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, text) = match &self.outcome {
            Ok(t) => ("ok  ", t),
            Err(t) => ("FAIL", t),
        };
        let mut lines = text.lines();
        write!(f, "{tag}  {:<9} {}", self.what, lines.next().unwrap_or(""))?;
        for line in lines {
            write!(f, "\n{:17}{line}", "")?;
        }
        Ok(())
    }
}

/// Runs every probe for `cfg` on a machine detected as `detected`; the
/// ingest is probed only with `online`.
pub async fn run(cfg: &Config, detected: Board, online: bool) -> Vec<Probe> {
    let mut probes = vec![Probe::new(
        "config",
        Ok(format!(
            "{}: device {}, stream {}",
            cfg.path.display(),
            cfg.device,
            cfg.stream
        )),
    )];
    probes.push(board(cfg, detected));
    let graph = elements(cfg);
    let graph_ok = !graph.failed();
    probes.push(graph);
    if graph_ok {
        let settings = cfg.capture.clone();
        let wait = cfg.stall_timeout;
        probes.push(
            tokio::task::spawn_blocking(move || camera(&settings, wait))
                .await
                .unwrap_or_else(|_| Probe::new("camera", Err("the probe thread failed".into()))),
        );
    }
    let key_cfg = cfg.clone();
    let (key_probe, signer) = tokio::task::spawn_blocking(move || key(&key_cfg))
        .await
        .unwrap_or_else(|_| {
            (
                Probe::new("key", Err("the probe thread failed".into())),
                None,
            )
        });
    probes.push(key_probe);
    probes.push(spool(&cfg.spool_dir, cfg.spool_bounds.max_bytes));
    match signer {
        _ if !online => {}
        Some(signer) => probes.push(ingest(cfg, signer).await),
        None => probes.push(Probe::new(
            "ingest",
            Err("not probed: it needs the device key and certificate (see above)".into()),
        )),
    }
    probes
}

fn board(cfg: &Config, detected: Board) -> Probe {
    if detected.is_camera_board() && matches!(cfg.identity.key, KeySource::InsecureSoftware(_)) {
        return Probe::new(
            "board",
            Err(format!(
                "insecure_software_key is refused on a {detected}: its device key belongs in the TPM\n\
                 fix: remove insecure_software_key and key from [identity], then run `sealcamd provision`"
            )),
        );
    }
    let forced = if cfg.board == detected {
        String::new()
    } else {
        format!(" (this machine looks like {detected})")
    };
    Probe::new(
        "board",
        Ok(format!(
            "profile {} ({}){forced}",
            cfg.board.name(),
            cfg.board
        )),
    )
}

fn elements(cfg: &Config) -> Probe {
    let plan = pipeline::plan(&cfg.capture);
    match capture::check_elements(&cfg.capture) {
        Ok(missing) if missing.is_empty() => Probe::new(
            "graph",
            Ok(format!(
                "all {} elements present: {}",
                plan.len(),
                pipeline::describe(&plan)
            )),
        ),
        Ok(missing) => Probe::new(
            "graph",
            Err(missing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")),
        ),
        Err(e) => Probe::new("graph", Err(e.to_string())),
    }
}

/// Runs the capture graph until its first frame.
fn camera(settings: &capture::CaptureSettings, wait: Duration) -> Probe {
    let started = Instant::now();
    let mut capture = match Capture::start(settings) {
        Ok(c) => c,
        Err(e) => return Probe::new("camera", Err(e.to_string())),
    };
    let outcome = loop {
        match capture.next(Duration::from_millis(200)) {
            Ok(Some(CaptureEvent::Frame(f))) if f.key_frame => {
                break Ok(format!(
                    "first frame after {} ms: {}x{} H.264",
                    started.elapsed().as_millis(),
                    f.track.width,
                    f.track.height
                ))
            }
            Ok(Some(CaptureEvent::Frame(_))) | Ok(None) if started.elapsed() < wait => {}
            Ok(Some(CaptureEvent::EndOfStream)) => {
                break Err("the camera ended its stream before the first key frame".into())
            }
            Ok(_) => {
                break Err(format!(
                    "no key frame within {} ms (camera.stall_timeout_ms): is the camera in use by another program?",
                    wait.as_millis()
                ))
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    capture.shutdown();
    Probe::new("camera", outcome)
}

/// Opens the device key, checks its certificate, and has the key sign.
fn key(cfg: &Config) -> (Probe, Option<Arc<dyn ExternalSigner>>) {
    let signer = match crate::daemon::load_identity(cfg) {
        Ok(s) => s,
        Err(e) => return (Probe::new("key", Err(e.to_string())), None),
    };
    let started = Instant::now();
    if let Err(e) = signer.sign(b"sealcamd check") {
        return (
            Probe::new("key", Err(format!("the device key cannot sign: {e}"))),
            None,
        );
    }
    let signed_in = started.elapsed();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let expiry = pem::load_certs(&cfg.identity.certificate)
        .ok()
        .and_then(|certs| certs.first().and_then(|c| identity::summarize(c).ok()))
        .map(|s| {
            format!(
                ", valid for {} more days (renewed at two thirds of its life)",
                (s.not_after - now).max(0) / 86_400
            )
        })
        .unwrap_or_default();
    let kind = signer.describe();
    (
        Probe::new(
            "key",
            Ok(format!(
                "{kind} signs ({} ms); certificate matches{expiry}",
                signed_in.as_millis()
            )),
        ),
        Some(signer),
    )
}

/// Creates the spool directory if needed, makes a durable write in it, and
/// compares its free space with the spool's bound.
fn spool(dir: &Path, max_bytes: u64) -> Probe {
    let outcome = (|| {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let probe = dir.join(".sealcamd-check");
        // The same durable write and removal the spool makes.
        let write =
            durable::replace(&probe, b"sealcamd check").and_then(|()| durable::remove(&probe));
        write.map_err(|e| {
            format!(
                "{} does not take a durable write: {e}\nfix: the daemon's user must own it (systemd's StateDirectory= does this)",
                dir.display()
            )
        })?;
        let vfs =
            rustix::fs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
        let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        let mib = |b: u64| b / (1 << 20);
        let room = format!(
            "{}: durable writes work; {} MiB free for a spool of at most {} MiB",
            dir.display(),
            mib(free),
            mib(max_bytes)
        );
        if free < max_bytes.min(64 << 20) {
            return Err(format!(
                "{room}\nfix: free space on this filesystem or lower spool.max_bytes"
            ));
        }
        Ok(room)
    })();
    Probe::new("spool", outcome)
}

/// Asks the ingest who it takes this camera for, over mutual TLS with the
/// device key.
async fn ingest(cfg: &Config, signer: Arc<dyn ExternalSigner>) -> Probe {
    let url = format!("{}{}", cfg.upload.url, Route::WhoAmI.path());
    let outcome = async {
        let client =
            crate::pipeline::uplink::Uplink::device_client(&cfg.upload.ca, &cfg.identity.certificate, signer)
                .map_err(|e| e.to_string())?;
        let resp = client
            .get(&url)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| explain_connect_error(&cfg.upload.url, &e))?;
        let status = resp.status();
        let body = crate::answer::text(resp).await;
        if !status.is_success() {
            return Err(format!(
                "{} answered {status}: {}",
                cfg.upload.url,
                body.trim()
            ));
        }
        let who: WhoAmI = serde_json::from_str(&body)
            .map_err(|e| format!("{url} answered something else than sealcam-ingest: {e}"))?;
        let name = who.name;
        if who.role != RoleName::Device || name != cfg.device.as_str() {
            let role = match who.role {
                RoleName::Device => "device",
                RoleName::Consumer => "consumer",
            };
            return Err(format!(
                "the ingest takes this certificate for {role} {name:?}, not device {}\nfix: identity.certificate belongs to another identity; enroll again",
                cfg.device
            ));
        }
        let streams = who.streams;
        if !streams.is_empty() && !streams.iter().any(|s| s == cfg.stream.as_str()) {
            return Err(format!(
                "the certificate allows streams {} but the config records {}\nfix: set stream.name to one of them, or enroll for this stream",
                streams.join(", "),
                cfg.stream
            ));
        }
        Ok(format!(
            "{} accepts this camera's certificate as device {name}",
            cfg.upload.url
        ))
    }
    .await;
    Probe::new("ingest", outcome)
}

/// What a failed connection most likely means, from the error chain.
fn explain_connect_error(url: &str, e: &reqwest::Error) -> String {
    let chain = sealcam_base::error_chain(e);
    let fix = crate::pipeline::uplink::ConnectFailure::of(e).fix();
    format!("cannot reach {url}: {chain}\nfix: {fix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_prints_one_line_per_finding_aligned() {
        let p = Probe::new("spool", Err("first\nfix: second".into()));
        assert_eq!(
            p.to_string(),
            "FAIL  spool     first\n                 fix: second"
        );
        assert!(p.failed());
        let ok = Probe::new("key", Ok("fine".into()));
        assert_eq!(ok.to_string(), "ok    key       fine");
    }

    #[test]
    fn the_spool_probe_writes_durably_and_reports_room() {
        let dir = tempfile::tempdir().unwrap();
        let p = spool(&dir.path().join("new/spool"), 1 << 20);
        assert!(
            p.outcome.as_ref().unwrap().contains("durable writes work"),
            "{p}"
        );
        assert!(!dir.path().join("new/spool/.sealcamd-check").exists());
        // A file where the directory should be.
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let p = spool(&dir.path().join("file"), 1 << 20);
        assert!(p.failed(), "{p}");
    }
}
