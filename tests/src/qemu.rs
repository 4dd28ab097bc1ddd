//! QEMU test machines: the product image a user flashes (`scripts/image
//! --board qemu-amd64|qemu-arm64`), with the tests' overlay
//! (`tests/qemu/overlay`: the guest agent, on arm64 a TPM in the guest), booted by UEFI firmware and GRUB from its A/B root slots, with the
//! vivid virtual camera and a TPM (amd64: swtpm on the host attached as
//! `tpm-tis`; arm64: swtpm in the guest behind the kernel's vTPM proxy).
//!
//! The image is built once per test process; each [`Machine`] boots its own
//! copy of it, with the provisioning bundle written onto the copy's boot
//! partition as a user writes it onto a card.
//! Networking is QEMU's user network with `restrict=on`: the guest reaches
//! nothing but the forwards given to [`Machine::boot`]. A QMP socket controls
//! the machine; the serial console is kept in a log that is printed when a
//! test fails.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The guest address that the forwards listen on (QEMU's user network).
pub const HOST_ALIAS: &str = "10.0.2.100";

/// The machine's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86-64, `q35`.
    Amd64,
    /// aarch64, `virt` with a device tree.
    Arm64,
}

/// The board of `arch`'s test machine.
fn board(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-amd64",
        Arch::Arm64 => "qemu-arm64",
    }
}

/// The raw disk image of `arch`'s board with the tests' overlay, built once
/// per test process by `scripts/image`.
pub fn image(arch: Arch) -> PathBuf {
    static IMAGES: Mutex<Vec<(Arch, PathBuf)>> = Mutex::new(Vec::new());
    let mut images = IMAGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, img)) = images.iter().find(|(a, _)| *a == arch) {
        return img.clone();
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = while_no_machine_runs(|| {
        Command::new("bash")
            .arg(repo.join("scripts/image"))
            .args(["--board", board(arch), "--raw", "--dev-release-key"])
            .arg("--overlay")
            .arg(repo.join("tests/qemu/overlay"))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs scripts/image")
    });
    assert!(out.status.success(), "scripts/image failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let img = PathBuf::from(stdout.lines().last().expect("the image's path").trim());
    assert!(img.is_file(), "no image at {}", img.display());
    images.push((arch, img.clone()));
    img
}

/// The UEFI firmware of `arch`'s board: its code, and the variables store
/// each machine gets a copy of.
fn firmware(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Amd64 => (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        Arch::Arm64 => (
            "/usr/share/AAVMF/AAVMF_CODE.fd",
            "/usr/share/AAVMF/AAVMF_VARS.fd",
        ),
    }
}

/// Writes the provisioning bundle made of the files in `seed` onto the
/// boot partition of the disk image `disk`, as an owner does before
/// flashing: `sealcam card write --image`.
fn write_bundle(disk: &Path, seed: &Path) {
    let file = |name: &str| seed.join(name).to_string_lossy().into_owned();
    let out = Command::new(crate::bin("sealcam"))
        .args(["card", "write", "--config", &file("sealcamd.toml")])
        .args(["--ca", &file("fleet-ca.crt")])
        .args(["--owner-pub", &file("owner.pub")])
        .args(["--recipients", &file("recipients.rset")])
        .args(["--token-file", &file("token")])
        .arg("--enroll-url")
        .arg(
            std::fs::read_to_string(seed.join("enroll-url"))
                .unwrap()
                .trim(),
        )
        .arg("--image")
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sealcam card write failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A guest port forwarded to a host loopback port.
pub struct Forward {
    pub guest_port: u16,
    pub host_port: u16,
}

/// A running test machine. Killed on drop; its console log is printed if
/// the test is failing.
pub struct Machine {
    qemu: Child,
    swtpm: Option<Child>,
    /// QEMU's program and arguments, to start it again after a power cut.
    command: (std::ffi::OsString, Vec<std::ffi::OsString>),
    pub dir: PathBuf,
    pub console: PathBuf,
    qmp: BufReader<UnixStream>,
    qga: PathBuf,
    image: PathBuf,
    /// One machine at a time: TCG emulation of two guests would starve both.
    _one_at_a_time: MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `work` while no machine runs: building an image or a bundle keeps
/// both host cores busy, and a guest emulated beside it falls behind the
/// timed steps of its test.
pub fn while_no_machine_runs<T>(work: impl FnOnce() -> T) -> T {
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    work()
}

impl Machine {
    /// Boots a fresh copy of the image of `arch` with the files of `seed`
    /// (a directory) as the provisioning bundle on its boot partition, its
    /// state under `dir`.
    pub fn boot(arch: Arch, dir: &Path, seed: &Path, forwards: &[Forward]) -> Self {
        let image = image(arch);
        // A test that failed while holding the lock poisons it; the next
        // machine is still fine to boot.
        let guard = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::create_dir_all(dir).unwrap();
        // The machine's own card: a copy of the image with the provisioning
        // bundle on its boot partition.
        let disk = dir.join("disk.img");
        let status = Command::new("cp")
            .arg("--sparse=always")
            .arg(&image)
            .arg(&disk)
            .status()
            .unwrap();
        assert!(status.success(), "copying the image failed");
        write_bundle(&disk, seed);
        // A card larger than the image, as every real one is: the data
        // partition grows into it at the first boot (and holds updates).
        let status = Command::new("truncate")
            .args(["-s", "+3G"])
            .arg(&disk)
            .status()
            .unwrap();
        assert!(status.success(), "growing the card failed");
        let (code, vars_template) = firmware(arch);
        let vars = dir.join("efivars.fd");
        std::fs::copy(vars_template, &vars)
            .expect("the UEFI firmware is installed (scripts/image)");

        // amd64: swtpm on the host, attached as `tpm-tis`. arm64: Debian's
        // kernel there has no driver for QEMU's memory-mapped TPM, so the
        // image runs swtpm in the guest behind the kernel's vTPM proxy
        // (tests/qemu/sealcam-vtpm.service).
        let tpm_sock = dir.join("swtpm.sock");
        let swtpm = (arch == Arch::Amd64).then(|| spawn_swtpm(dir));

        let mut netdev = "user,id=net0,restrict=on".to_owned();
        for f in forwards {
            netdev.push_str(&format!(
                ",guestfwd=tcp:{HOST_ALIAS}:{}-cmd:socat STDIO TCP:127.0.0.1:{}",
                f.guest_port, f.host_port
            ));
        }
        let qmp_sock = dir.join("qmp.sock");
        let qga_sock = dir.join("qga.sock");
        let console = dir.join("console.log");
        // TCG by default: KVM guests hang at boot on these machines.
        let accel = std::env::var("SEALCAM_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
        let (program, machine) = match arch {
            Arch::Amd64 => ("qemu-system-x86_64", "q35"),
            Arch::Arm64 => ("qemu-system-aarch64", "virt"),
        };
        let mut qemu = Command::new(program);
        qemu.args([
            "-machine", machine, "-accel", &accel, "-m", "1024", "-smp", "2",
        ]);
        if arch == Arch::Arm64 {
            qemu.args(["-cpu", "cortex-a72"]);
        }
        if swtpm.is_some() {
            qemu.arg("-chardev")
                .arg(format!("socket,id=chrtpm,path={}", tpm_sock.display()))
                .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
                .args(["-device", "tpm-tis,tpmdev=tpm0"]);
        }
        qemu.args(["-display", "none"])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={code}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", disk.display()))
            .args([
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-pci,netdev=net0,id=nic0",
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,id=qga0,path={},server=on,wait=off",
                qga_sock.display()
            ))
            .args(["-device", "virtio-serial"])
            .args([
                "-device",
                "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            ])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_sock.display()))
            // Appended to: the log goes on across a power cut.
            .arg("-chardev")
            .arg(format!(
                "file,id=serial0,path={},append=on",
                console.display()
            ))
            .args(["-serial", "chardev:serial0"]);
        let command = (
            qemu.get_program().to_owned(),
            qemu.get_args().map(|a| a.to_owned()).collect::<Vec<_>>(),
        );
        let (qemu, qmp) = spawn_qemu(dir, &command);
        let mut m = Self {
            qemu,
            swtpm,
            command,
            dir: dir.to_owned(),
            qga: qga_sock,
            image: image.clone(),
            _one_at_a_time: guard,
            console,
            qmp,
        };
        m.qmp("qmp_capabilities", serde_json::json!({}));
        m
    }

    /// Cuts the power and turns it on again: QEMU and the TPM (swtpm,
    /// which keeps only what a TPM keeps in its non-volatile memory) are
    /// killed and started again on the same card.
    pub fn power_cut(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if let Some(swtpm) = self.swtpm.as_mut() {
            let _ = swtpm.kill();
            let _ = swtpm.wait();
            self.swtpm = Some(spawn_swtpm(&self.dir));
        }
        let (qemu, qmp) = spawn_qemu(&self.dir, &self.command);
        self.qemu = qemu;
        self.qmp = qmp;
        self.qmp("qmp_capabilities", serde_json::json!({}));
    }

    /// Runs a QMP command and returns its `return` value.
    pub fn qmp(&mut self, command: &str, arguments: serde_json::Value) -> serde_json::Value {
        let msg = serde_json::json!({"execute": command, "arguments": arguments});
        let stream = self.qmp.get_mut();
        writeln!(stream, "{msg}").unwrap();
        loop {
            let mut line = String::new();
            self.qmp.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(r) = v.get("return") {
                return r.clone();
            }
            if let Some(e) = v.get("error") {
                panic!("QMP {command} failed: {e}");
            }
            // An asynchronous event: not the answer.
        }
    }

    /// Runs `program args` in the guest through the guest agent, as root,
    /// and returns (exit code, stdout, stderr). Waits for the agent (it
    /// starts late in boot) and for the program, up to `secs` in all.
    pub fn guest_exec(&self, program: &str, args: &[&str], secs: u64) -> (i64, String, String) {
        self.try_guest_exec(program, args, secs).unwrap_or_else(|| {
            panic!("{program} {args:?}: the guest agent did not answer, or the program did not finish, within {secs} s")
        })
    }

    /// [`Machine::guest_exec`], or `None` when the agent does not answer
    /// or the program does not finish in time (a guest that is rebooting).
    pub fn try_guest_exec(
        &self,
        program: &str,
        args: &[&str],
        secs: u64,
    ) -> Option<(i64, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut agent = loop {
            if let Some(a) = self.agent() {
                break a;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        let pid = agent
            .call(
                "guest-exec",
                serde_json::json!({"path": program, "arg": args, "capture-output": true}),
            )
            .ok()?["pid"]
            .as_i64()?;
        loop {
            let st = agent
                .call("guest-exec-status", serde_json::json!({"pid": pid}))
                .ok()?;
            if st["exited"].as_bool() == Some(true) {
                let field = |k: &str| {
                    st[k]
                        .as_str()
                        .and_then(|b| {
                            use base64::Engine;
                            base64::engine::general_purpose::STANDARD.decode(b).ok()
                        })
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                return Some((
                    st["exitcode"].as_i64().unwrap_or(-1),
                    field("out-data"),
                    field("err-data"),
                ));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A connection to the guest agent, synchronised, or `None` while it is
    /// not running yet.
    fn agent(&self) -> Option<Agent> {
        let stream = UnixStream::connect(&self.qga).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut agent = Agent {
            stream: BufReader::new(stream),
        };
        static SYNC: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
        let id = SYNC.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // guest-sync: answers come back in order, so everything before the
        // echo of this id (left over from an earlier client) is skipped.
        agent.send("guest-sync", serde_json::json!({"id": id}))?;
        loop {
            let v = agent.receive()?;
            if v.get("return").and_then(|r| r.as_i64()) == Some(id) {
                return Some(agent);
            }
        }
    }

    /// What the guest printed on its serial console so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Waits up to `secs` for `needle` on the console; panics (with the
    /// console) if it does not come.
    pub fn wait_for_console(&self, needle: &str, secs: u64) {
        self.wait_for_console_times(needle, 1, secs);
    }

    /// Waits up to `secs` until the console holds `needle` `times` times
    /// (counted since the machine booted first); panics if it does not.
    pub fn wait_for_console_times(&self, needle: &str, times: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.console_text().matches(needle).count() >= times {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the guest did not print {needle:?} {times} times within {secs} s");
    }
}

/// swtpm for the machine in `dir`, its state in `dir/tpm`, its control
/// socket `dir/swtpm.sock`.
fn spawn_swtpm(dir: &Path) -> Child {
    let tpm_dir = dir.join("tpm");
    let tpm_sock = dir.join("swtpm.sock");
    std::fs::create_dir_all(&tpm_dir).unwrap();
    let _ = std::fs::remove_file(&tpm_sock);
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", tpm_dir.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", tpm_sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm is installed (scripts/install-deps)");
    assert!(
        crate::wait_until(10, || tpm_sock.exists()),
        "swtpm did not create its socket"
    );
    child
}

/// Starts QEMU as `command` says and connects to its QMP socket
/// (`dir/qmp.sock`); the caller negotiates capabilities.
fn spawn_qemu(
    dir: &Path,
    command: &(std::ffi::OsString, Vec<std::ffi::OsString>),
) -> (Child, BufReader<UnixStream>) {
    let qmp_sock = dir.join("qmp.sock");
    let _ = std::fs::remove_file(&qmp_sock);
    let _ = std::fs::remove_file(dir.join("qga.sock"));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("qemu.stderr"))
        .unwrap();
    let qemu = Command::new(&command.0)
        .args(&command.1)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("qemu-system is installed (scripts/install-deps installs it)");
    assert!(
        crate::wait_until(10, || qmp_sock.exists()),
        "qemu did not open its QMP socket"
    );
    let stream = UnixStream::connect(&qmp_sock).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut qmp = BufReader::new(stream);
    let mut greeting = String::new();
    qmp.read_line(&mut greeting).unwrap();
    assert!(
        greeting.contains("QMP"),
        "unexpected QMP greeting {greeting:?}"
    );
    (qemu, qmp)
}

/// A guest-agent connection (JSON lines over virtio-serial).
struct Agent {
    stream: BufReader<UnixStream>,
}

impl Agent {
    fn send(&mut self, command: &str, arguments: serde_json::Value) -> Option<()> {
        let msg = serde_json::json!({"execute": command, "arguments": arguments});
        writeln!(self.stream.get_mut(), "{msg}").ok()
    }

    /// The next message, or `None` when the agent is silent or gone.
    fn receive(&mut self) -> Option<serde_json::Value> {
        loop {
            let mut line = Vec::new();
            self.stream.read_until(b'\n', &mut line).ok()?;
            if line.is_empty() {
                return None;
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                return Some(v);
            }
        }
    }

    /// Runs a command: its `return` value, or what went wrong (the agent's
    /// own error, or silence).
    fn call(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        self.send(command, arguments)
            .ok_or_else(|| format!("{command}: cannot write to the guest agent"))?;
        let v = self
            .receive()
            .ok_or_else(|| format!("{command}: no answer from the guest agent"))?;
        v.get("return")
            .cloned()
            .ok_or_else(|| format!("{command}: the guest agent answered {v}"))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if let Some(swtpm) = self.swtpm.as_mut() {
            let _ = swtpm.kill();
            let _ = swtpm.wait();
        }
        if std::thread::panicking() {
            // Kept beyond the test's temporary directory.
            let test_dir = self
                .dir
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kept = self
                .image
                .parent()
                .map(|d| d.join(format!("failed-console{test_dir}.log")));
            if let Some(kept) = &kept {
                let _ = std::fs::copy(&self.console, kept);
                eprintln!("guest console kept at {}", kept.display());
            }
            let console = self.console_text();
            let tail: Vec<&str> = console.lines().rev().take(200).collect();
            eprintln!(
                "---- guest console ({}), last {} lines ----",
                self.console.display(),
                tail.len()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("---- end of guest console ----");
        }
    }
}
