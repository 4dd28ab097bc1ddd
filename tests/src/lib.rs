//! Harness for the system tests: runs the real programs as processes, each
//! test in its own temporary directory, the ingest on an ephemeral loopback
//! port, with its log kept for assertions.
//!
//! Each world runs its own CA service (`sealcam-ca serve` on a Unix socket
//! in the world's directory), and every ingest is pointed at it.
//!
//! The binaries are found next to the test executable (`target/<profile>/`);
//! `scripts/test` builds them before running the tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod faultproxy;
pub mod forge;
pub mod lying_ingest;
pub mod qemu;
pub mod s3;
pub mod swtpm;

/// Path of a workspace binary built beside the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// The longest any single program run of a test may take: a program that
/// hangs fails its test instead of stalling the whole suite.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Where `sealcam` keeps its state (the roster pins) in a world.
pub const STATE_DIR: &str = "state";

/// The `sealcam` arguments that anchor provenance in the world's owner
/// key and roster (see [`World::list_in_roster`]).
pub const ANCHOR: [&str; 4] = ["--owner", "owner.pub", "--roster", "roster.sdr"];

/// Runs a binary to completion (at most [`RUN_TIMEOUT`]), returning its output.
pub fn run(name: &str, args: &[&str], cwd: &Path) -> Output {
    use std::io::Read;
    let mut child = Command::new(bin(name))
        .args(args)
        .current_dir(cwd)
        .env("SEALCAM_LOG", "info")
        // Roster pins (`sealcam`'s state) per world, never the user's.
        .env("SEALCAM_STATE_DIR", cwd.join(STATE_DIR))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} {args:?} did not finish within {} s; stderr: {}",
                RUN_TIMEOUT.as_secs(),
                text(&stderr.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs a binary and asserts it succeeded.
pub fn run_ok(name: &str, args: &[&str], cwd: &Path) -> Output {
    let out = run(name, args, cwd);
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running `sealcam-ingest serve`, stopped on drop.
pub struct Ingest {
    child: Child,
    pub addr: SocketAddr,
    pub enroll_addr: SocketAddr,
    pub log: PathBuf,
    pub data: PathBuf,
    /// Kept open, so that what the ingest prints later never meets a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Ingest {
    pub fn start(work: &Path, pki: &Path) -> Self {
        Self::start_with(work, pki, &[])
    }

    /// Starts with extra `serve` arguments (e.g. `--device-cert-lifetime 6s`).
    /// The enrollment endpoint always listens too, and the CRL is polled often.
    pub fn start_with(work: &Path, pki: &Path, extra: &[&str]) -> Self {
        let data = work.join("ingest-data");
        let mut args: Vec<std::ffi::OsString> = vec!["--data".into(), data.clone().into()];
        args.extend(extra.iter().map(Into::into));
        Self::spawn(work, pki, &args, data)
    }

    /// Starts with the config file `config`; `data` is where its storage
    /// keeps objects on this machine (for tests that look at them).
    pub fn start_with_config(work: &Path, pki: &Path, config: &Path, data: &Path) -> Self {
        Self::spawn(
            work,
            pki,
            &["--config".into(), config.into()],
            data.to_owned(),
        )
    }

    fn spawn(work: &Path, pki: &Path, args: &[std::ffi::OsString], data: PathBuf) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = work.join(format!("ingest-{}-{n}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        // Any free port, unless the test chose one.
        let listen = if args.iter().any(|a| a == "--listen") {
            vec![]
        } else {
            vec!["--listen", "127.0.0.1:0"]
        };
        // The world's CA service, unless the test names another.
        let ca_url: Vec<std::ffi::OsString> = if args.iter().any(|a| a == "--ca-url") {
            vec![]
        } else {
            vec!["--ca-url".into(), ca_url(work).into()]
        };
        let mut child = Command::new(bin("sealcam-ingest"))
            .arg("serve")
            .args(listen)
            .args(["--enroll-listen", "127.0.0.1:0", "--crl-poll-ms", "100"])
            .arg("--pki")
            .arg(pki)
            .args(ca_url)
            .args(args)
            .env("SEALCAM_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut read = |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| {
                    panic!(
                        "unexpected ingest output {line:?}; log: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
                .parse()
                .unwrap()
        };
        let addr = read("listening on ");
        let enroll_addr = read("enrollment on ");
        Self {
            child,
            addr,
            enroll_addr,
            log,
            data,
            _stdout: stdout,
        }
    }

    /// Sends SIGTERM (what systemd sends to stop the service).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The process id (to read its resident memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn enroll_url(&self) -> String {
        format!("https://{}", self.enroll_addr)
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (log lines are written asynchronously).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL of the world's CA service in `work`, as the ingest is given it.
pub fn ca_url(work: &Path) -> String {
    format!("unix:{}", work.join("ca.sock").display())
}

/// A running `sealcam-ca serve`, stopped on drop.
pub struct CaService {
    child: Child,
    /// Where it listens (`unix:...` or `tls:ADDRESS:PORT`).
    pub listen: String,
    pub log: PathBuf,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl CaService {
    /// Starts `sealcam-ca serve --dir <dir> --listen <listen> <extra>`.
    pub fn start(work: &Path, dir: &Path, listen: &str, extra: &[&str]) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = work.join(format!("ca-{}-{n}.log", std::process::id()));
        let mut child = Command::new(bin("sealcam-ca"))
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", listen])
            .args(extra)
            .current_dir(work)
            .env("SEALCAM_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let listen = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected sealcam-ca output {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        Self {
            child,
            listen,
            log,
            _stdout: stdout,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for CaService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test world in a temp dir: the fleet CA in `ca/` and its service on
/// `ca.sock`; the ingest's own directory `pki/` (its certificate from
/// `sealcam-ca ingest issue`, no CA key); a consumer key and consumer TLS
/// identity; the owner's key (`owner.key`, `owner.pub`) and, once a camera
/// is made with [`World::camera`], the owner's roster listing it
/// (`roster.sdr`).
pub struct World {
    // Stopped before the directory goes.
    ca: std::sync::Mutex<Option<CaService>>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        Self::with_ca_args(&[])
    }

    /// A world whose `sealcam-ca ingest issue` gets `extra` arguments (more
    /// names or addresses in the ingest's server certificate).
    pub fn with_ca_args(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let w = Self {
            dir,
            ca: std::sync::Mutex::new(None),
        };
        run_ok("sealcam-ca", &["init", "--dir", "ca"], w.path());
        w.issue_ingest("ingest", "pki", extra);
        w.restart_ca_with(&[]);
        run_ok("sealcam", &["keygen", "--out", "alice"], w.path());
        run_ok(
            "sealcam-ca",
            &[
                "consumer",
                "issue",
                "--dir",
                "ca",
                "--name",
                "alice",
                "--out-dir",
                "consumer",
                "--all-streams",
            ],
            w.path(),
        );
        run_ok("sealcam", &["owner", "init", "--out", "owner"], w.path());
        w
    }

    /// Lists `<device>/device.crt`'s key in the world's roster as the
    /// owner does (`sealcam roster add`, `--new` for the first), unless it
    /// is listed for that device already.
    pub fn list_in_roster(&self, device: &str) {
        let crt = format!("{device}/device.crt");
        let mut args = vec![
            "roster",
            "add",
            "--owner-key",
            "owner.key",
            "--roster",
            "roster.sdr",
            "--device",
            device,
            "--key",
            &crt,
        ];
        if !self.path().join("roster.sdr").exists() {
            args.push("--new");
        }
        let out = run("sealcam", &args, self.path());
        let listed = format!("is in the roster already, for device {device} ");
        assert!(
            out.status.success() || text(&out.stderr).contains(&listed),
            "sealcam roster add failed: {}",
            text(&out.stderr)
        );
    }

    /// `sealcam-ca ingest issue`: an ingest instance `name`'s own directory
    /// `out_dir` (relative to the world), with `extra` arguments.
    pub fn issue_ingest(&self, name: &str, out_dir: &str, extra: &[&str]) {
        let mut args = vec![
            "ingest",
            "issue",
            "--dir",
            "ca",
            "--name",
            name,
            "--out-dir",
            out_dir,
        ];
        args.extend_from_slice(extra);
        run_ok("sealcam-ca", &args, self.path());
    }

    /// (Re)starts the world's CA service on `ca.sock` with extra `serve`
    /// arguments (e.g. `--device-cert-lifetime 6s`).
    pub fn restart_ca_with(&self, extra: &[&str]) {
        let mut ca = self.ca.lock().unwrap();
        *ca = None;
        let listen = ca_url(self.path());
        *ca = Some(CaService::start(
            self.path(),
            &self.path().join("ca"),
            &listen,
            extra,
        ));
    }

    /// Stops the world's CA service (the ingest loses it).
    pub fn stop_ca(&self) {
        *self.ca.lock().unwrap() = None;
    }

    /// The CA service's log.
    pub fn ca_log(&self) -> String {
        self.ca
            .lock()
            .unwrap()
            .as_ref()
            .map(CaService::log_text)
            .unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn start_ingest(&self) -> Ingest {
        Ingest::start(self.path(), &self.path().join("pki"))
    }

    pub fn start_ingest_with(&self, extra: &[&str]) -> Ingest {
        Ingest::start_with(self.path(), &self.path().join("pki"), extra)
    }

    /// Writes a camera config `<device>.toml` with a development software key,
    /// provisions the device with a certificate from the world's CA, and
    /// lists its key in the owner's roster.
    pub fn camera(&self, device: &str, url: &str, frames: u32, fragment_ms: u32) -> PathBuf {
        let cfg = self.write_camera_config(device, url, frames, fragment_ms);
        self.provision_software_key(&cfg);
        self.issue_device_cert(device);
        self.list_in_roster(device);
        cfg
    }

    /// `sealcamd provision` of `cfg`'s development software key (reused if
    /// its key file exists) and certificate request.
    pub fn provision_software_key(&self, cfg: &Path) {
        run_ok(
            "sealcamd",
            &[
                "provision",
                "--config",
                cfg.to_str().unwrap(),
                "--insecure-software-key",
            ],
            self.path(),
        );
    }

    /// A camera (as [`World::camera`], one-second fragments) that records
    /// `frames` frames and uploads them to `ingest`. Returns its config.
    pub fn record(&self, device: &str, ingest: &Ingest, frames: u32) -> PathBuf {
        let cfg = self.camera(device, &ingest.url(), frames, 1000);
        run_ok(
            "sealcamd",
            &["run", "--config", cfg.to_str().unwrap()],
            self.path(),
        );
        cfg
    }

    /// Starts `sealcamd run` with `cfg` in the background, output discarded.
    pub fn spawn_camera(&self, cfg: &Path) -> std::process::Child {
        Command::new(bin("sealcamd"))
            .arg("run")
            .arg("--config")
            .arg(cfg)
            .current_dir(self.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Like [`World::camera`], with the device key in the TPM at `tcti`.
    pub fn tpm_camera(
        &self,
        device: &str,
        url: &str,
        frames: u32,
        fragment_ms: u32,
        tcti: &str,
    ) -> PathBuf {
        let cfg = self.write_config(
            device,
            url,
            frames,
            fragment_ms,
            &Self::tpm_identity(device, tcti),
        );
        run_ok(
            "sealcamd",
            &["provision", "--config", cfg.to_str().unwrap()],
            self.path(),
        );
        self.issue_device_cert(device);
        self.list_in_roster(device);
        cfg
    }

    /// The `[identity]` lines of a camera whose key is in the TPM at `tcti`.
    pub fn tpm_identity(device: &str, tcti: &str) -> String {
        format!("tpm_tcti = \"{tcti}\"\ncertificate = \"{device}/device.crt\"\n")
    }

    fn software_identity(device: &str) -> String {
        format!("insecure_software_key = true\nkey = \"{device}/device.key\"\ncertificate = \"{device}/device.crt\"\n")
    }

    /// Issues `<device>/device.crt` from `<device>/device.csr`, replacing it.
    pub fn issue_device_cert(&self, device: &str) {
        self.issue_device_cert_for(device, "30d");
    }

    /// [`World::issue_device_cert`] with a certificate valid for `lifetime`
    /// (`6s`, `30d`).
    pub fn issue_device_cert_for(&self, device: &str, lifetime: &str) {
        let _ = std::fs::remove_file(self.path().join(format!("{device}/device.crt")));
        let csr = format!("{device}/device.csr");
        let crt = format!("{device}/device.crt");
        run_ok(
            "sealcam-ca",
            &[
                "device",
                "issue",
                "--dir",
                "ca",
                "--csr",
                &csr,
                "--out",
                &crt,
                "--lifetime",
                lifetime,
            ],
            self.path(),
        );
    }

    /// Writes `<device>.toml` with a development software key.
    pub fn write_camera_config(
        &self,
        device: &str,
        url: &str,
        frames: u32,
        fragment_ms: u32,
    ) -> PathBuf {
        self.write_config(
            device,
            url,
            frames,
            fragment_ms,
            &Self::software_identity(device),
        )
    }

    /// Writes `<device>.toml` with the given `[identity]` lines.
    pub fn write_config(
        &self,
        device: &str,
        url: &str,
        frames: u32,
        fragment_ms: u32,
        identity: &str,
    ) -> PathBuf {
        std::fs::create_dir_all(self.path().join(device)).unwrap();
        let cfg = self.path().join(format!("{device}.toml"));
        std::fs::write(
            &cfg,
            format!(
                r#"device_id = "{device}"
[camera]
source = "test"
num_buffers = {frames}
width = 320
height = 240
framerate = 30
bitrate_kbps = 500
[stream]
name = "front"
fragment_duration_ms = {fragment_ms}
[recipients]
public_keys = ["alice.pub"]
[identity]
{identity}[spool]
dir = "{device}/spool"
[upload]
url = "{url}"
ca = "pki/ca.crt"
drain_timeout_s = 3
"#
            ),
        )
        .unwrap();
        cfg
    }

    /// `sealcam fetch` of `<device>/front` into `out`, anchored in the
    /// world's owner key and roster; must fetch and verify.
    pub fn fetch(&self, ingest: &Ingest, device: &str, out: &str) -> Output {
        let out = self.fetch_with(ingest, device, out, &[]);
        assert!(
            out.status.success(),
            "sealcam fetch failed: {}",
            text(&out.stderr)
        );
        out
    }

    /// `sealcam fetch` with extra arguments (e.g. `--from 1h`), anchored
    /// in the world's owner key and roster; may fail.
    pub fn fetch_with(&self, ingest: &Ingest, device: &str, out: &str, extra: &[&str]) -> Output {
        let mut all = ANCHOR.to_vec();
        all.extend_from_slice(extra);
        self.fetch_unanchored(ingest, device, out, &all)
    }

    /// `sealcam fetch` with exactly the anchor arguments in `extra` (none,
    /// `--trust-server`, `--owner` alone); may fail.
    pub fn fetch_unanchored(
        &self,
        ingest: &Ingest,
        device: &str,
        out: &str,
        extra: &[&str],
    ) -> Output {
        let server = alice_at(ingest);
        let stream = format!("{device}/front");
        let mut args = vec!["fetch"];
        args.extend(server.iter().map(String::as_str));
        args.extend_from_slice(&[&stream, "--out", out]);
        args.extend_from_slice(extra);
        run("sealcam", &args, self.path())
    }
}

impl World {
    /// `sealcam-ca device add`: a one-time enrollment token.
    pub fn device_add(&self, device: &str, ttl: &str) -> String {
        let out = run_ok(
            "sealcam-ca",
            &["device", "add", device, "--dir", "ca", "--token-ttl", ttl],
            self.path(),
        );
        text(&out.stdout).trim().to_owned()
    }

    /// `sealcam-ca device revoke` or `consumer revoke` (`role`) of `name`.
    pub fn revoke(&self, role: &str, name: &str) -> Output {
        run_ok(
            "sealcam-ca",
            &[role, "revoke", name, "--dir", "ca"],
            self.path(),
        )
    }

    /// Issues consumer `name` a TLS certificate granting `streams`
    /// (DEVICE/STREAM; none: `--all-streams`) and returns a client
    /// presenting it.
    pub fn consumer(&self, name: &str, streams: &[&str]) -> reqwest::blocking::Client {
        let mut args = vec![
            "consumer",
            "issue",
            "--dir",
            "ca",
            "--name",
            name,
            "--out-dir",
            "consumer",
        ];
        for s in streams {
            args.extend_from_slice(&["--stream", s]);
        }
        if streams.is_empty() {
            args.push("--all-streams");
        }
        run_ok("sealcam-ca", &args, self.path());
        self.consumer_client(name)
    }

    /// A client presenting consumer `name`'s certificate issued before.
    pub fn consumer_client(&self, name: &str) -> reqwest::blocking::Client {
        self.client_with_cert(
            &format!("consumer/{name}.crt"),
            &format!("consumer/{name}.key"),
        )
    }

    /// A blocking HTTPS client presenting `cert` with the key file `key`
    /// (paths relative to the world), trusting the world's CA.
    pub fn client_with_cert(&self, cert: &str, key: &str) -> reqwest::blocking::Client {
        use sealcam_transport::{pem, tls};
        let cfg = tls::consumer_client_config(
            pem::load_roots(&self.path().join("pki/ca.crt")).unwrap(),
            pem::load_certs(&self.path().join(cert)).unwrap(),
            pem::load_private_key(&self.path().join(key)).unwrap(),
        )
        .unwrap();
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(cfg)
            .build()
            .unwrap()
    }
}

/// A raw TLS connection to the ingest as the holder of `cert`/`key`, for
/// tests that need to send malformed or slow HTTP.
pub type RawTls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

impl World {
    pub fn raw_tls(&self, ingest: &Ingest, cert: &str, key: &str) -> RawTls {
        use sealcam_transport::{pem, tls};
        let cfg = tls::consumer_client_config(
            pem::load_roots(&self.path().join("pki/ca.crt")).unwrap(),
            pem::load_certs(&self.path().join(cert)).unwrap(),
            pem::load_private_key(&self.path().join(key)).unwrap(),
        )
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let tcp = std::net::TcpStream::connect(ingest.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

/// Reads an HTTP/1.1 response's status line and headers (and as much of
/// the body as has arrived) until the server closes or `secs` pass.
pub fn read_response(stream: &mut RawTls) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain-HTTP GET (the ingest's operations listener).
pub fn http_get(url: &str) -> reqwest::blocking::Response {
    try_http_get(url).unwrap()
}

/// A plain-HTTP GET that may fail (a listener not up yet).
pub fn try_http_get(url: &str) -> reqwest::Result<reqwest::blocking::Response> {
    // reqwest sets up TLS even for http:// URLs; give it a provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::blocking::get(url)
}

/// The `sealcam` arguments that reach `ingest` as the consumer alice.
pub fn alice_at(ingest: &Ingest) -> Vec<String> {
    alice_at_url(&ingest.url())
}

/// [`alice_at`] for a server at `url` (a hostile front end, say).
pub fn alice_at_url(url: &str) -> Vec<String> {
    [
        "--server",
        url,
        "--ca",
        "pki/ca.crt",
        "--cert",
        "consumer/alice.crt",
        "--tls-key",
        "consumer/alice.key",
    ]
    .map(String::from)
    .to_vec()
}

/// `sealcamd provision --config CFG --enroll URL --token TOKEN` and
/// `extra` in the world; may fail.
pub fn enroll(w: &World, cfg: impl AsRef<Path>, url: &str, token: &str, extra: &[&str]) -> Output {
    let cfg = cfg.as_ref().to_str().unwrap();
    let mut args = vec![
        "provision",
        "--config",
        cfg,
        "--enroll",
        url,
        "--token",
        token,
    ];
    args.extend_from_slice(extra);
    run("sealcamd", &args, w.path())
}

/// `sealcam decrypt DIR --key alice.key --out OUT --owner owner.pub` in
/// the world (the roster the fetch saved in DIR); must succeed.
pub fn decrypt_ok(w: &World, dir: &str, out: &str) -> Output {
    run_ok(
        "sealcam",
        &[
            "decrypt",
            dir,
            "--key",
            "alice.key",
            "--out",
            out,
            "--owner",
            "owner.pub",
        ],
        w.path(),
    )
}

/// `sealcam verify DIR --owner owner.pub` in the world (the roster the
/// fetch saved in DIR); may fail.
pub fn verify(w: &World, dir: &str) -> Output {
    run(
        "sealcam",
        &["verify", dir, "--owner", "owner.pub"],
        w.path(),
    )
}

/// A loopback port nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Waits up to `secs` for `cond`.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts the frames GStreamer demuxes from a Matroska file
/// (`filesrc ! matroskademux ! h264parse ! appsink`), with the size of the
/// first decoded-caps structure.
pub fn gst_count_frames(path: &Path) -> (usize, i32, i32) {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut n = 0;
    let mut size = (0, 0);
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        if n == 0 {
            let s = sample.caps().unwrap().structure(0).unwrap().to_owned();
            size = (
                s.get::<i32>("width").unwrap(),
                s.get::<i32>("height").unwrap(),
            );
        }
        n += 1;
    }
    let bus = pipeline.bus().unwrap();
    let err = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        err.is_none(),
        "GStreamer error demuxing {}: {err:?}",
        path.display()
    );
    (n, size.0, size.1)
}

/// Every sealed fragment file under a directory tree.
/// Every object file the ingest stored under `root` (a local storage
/// directory): key objects, ciphertext objects, certificates, audit trail.
pub fn stored_object_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The fragments under `root`: a camera's spooled `.scf` files as they are,
/// and an ingest's stored fragments each rebuilt from its key object and its
/// ciphertext object into a `.scf` file in a fresh directory beside `root`
/// (the stored objects themselves stay as they are).
pub fn fragment_files(root: &Path) -> Vec<PathBuf> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_dir = root.with_file_name(format!("joined-{n}"));
    let mut out = Vec::new();
    for key in stored_object_files(root) {
        if key.extension().is_some_and(|x| x == "scf") {
            out.push(key);
            continue;
        }
        let Some(keys_dir) = key.parent().filter(|p| p.ends_with("keys")) else {
            continue;
        };
        let stream_dir = keys_dir.parent().unwrap();
        let seq = key.file_name().unwrap();
        let Ok(payload) = std::fs::read(stream_dir.join("data").join(seq)) else {
            continue;
        };
        let joined =
            sealcam_format::fragment::join(&std::fs::read(&key).unwrap(), &payload).unwrap();
        let name = format!(
            "{}-{}-{}.scf",
            stream_dir
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy(),
            stream_dir.file_name().unwrap().to_string_lossy(),
            seq.to_string_lossy()
        );
        std::fs::create_dir_all(&out_dir).unwrap();
        std::fs::write(out_dir.join(&name), joined).unwrap();
        out.push(out_dir.join(name));
    }
    out.sort();
    out
}

/// A 4-byte Annex-B start code followed by the NAL header of an SPS, PPS or
/// IDR slice with nal_ref_idc set: what x264's plaintext output looks like.
/// (Random bytes match with probability about 1e-11 per position.)
pub fn has_annex_b_parameter_sets_or_idr(bytes: &[u8]) -> bool {
    bytes.windows(5).any(|w| {
        w[..4] == [0, 0, 0, 1]
            && w[4] & 0x80 == 0
            && w[4] & 0x60 != 0
            && matches!(w[4] & 0x1F, 5 | 7 | 8)
    })
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
