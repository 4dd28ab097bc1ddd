//! A private swtpm (TPM 2.0 simulator) per test: its own state directory and
//! ports on loopback, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Swtpm {
    child: Option<Child>,
    pub port: u16,
    pub state: PathBuf,
}

/// Two consecutive free loopback ports (the swtpm TCTI uses port and port+1).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free pair of loopback ports");
}

impl Swtpm {
    /// Starts a simulator with state in `state` (created if needed).
    pub fn start(state: &Path) -> Self {
        std::fs::create_dir_all(state).unwrap();
        let mut s = Self {
            child: None,
            port: free_port_pair(),
            state: state.to_owned(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!(
                "type=tcp,port={},bindaddr=127.0.0.1",
                self.port + 1
            ))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm is installed (scripts/install-deps installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "swtpm did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`Swtpm::start`], but first manufactures the TPM with
    /// `swtpm_setup`: an ECC endorsement key and its certificate in NV,
    /// issued by a local CA under `ca_dir`. Returns the simulator and the
    /// path of the CA certificate that issued the EK certificate.
    pub fn start_with_ek(state: &Path, ca_dir: &Path) -> (Self, PathBuf) {
        let ca = manufacture(state, ca_dir);
        (Self::start(state), ca)
    }
}

/// Manufactures a TPM's state in `state` with `swtpm_setup`: an ECC
/// endorsement key and its certificate in NV (and swtpm's RSA one), issued
/// by a local CA under `ca_dir`, made there if it is not yet. Returns the
/// path of that CA's certificate (PEM), the maker CA to trust.
pub fn manufacture(state: &Path, ca_dir: &Path) -> PathBuf {
    std::fs::create_dir_all(state).unwrap();
    std::fs::create_dir_all(ca_dir).unwrap();
    let localca = ca_dir.join("localca.conf");
    std::fs::write(
        &localca,
        format!(
            "statedir = {d}\nsigningkey = {d}/signkey.pem\nissuercert = {d}/issuercert.pem\ncertserial = {d}/certserial\n",
            d = ca_dir.display()
        ),
    )
    .unwrap();
    let options = ca_dir.join("localca.options");
    std::fs::write(
        &options,
        "--platform-manufacturer sealcam-tests\n--platform-version 2.1\n--platform-model swtpm\n",
    )
    .unwrap();
    let setup = ca_dir.join("setup.conf");
    std::fs::write(
        &setup,
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            localca.display(),
            options.display()
        ),
    )
    .unwrap();
    let out = Command::new("swtpm_setup")
        .args([
            "--tpm2",
            "--create-ek-cert",
            "--ecc",
            "--overwrite",
            "--tpmstate",
        ])
        .arg(state)
        .arg("--config")
        .arg(&setup)
        .output()
        .expect("swtpm_setup is installed (package swtpm-tools)");
    assert!(
        out.status.success(),
        "swtpm_setup failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ca_dir.join("issuercert.pem")
}

impl Swtpm {
    /// The TCTI string for tss-esapi and tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// SIGKILL, as a power cut would stop it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start again on the same state and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}
