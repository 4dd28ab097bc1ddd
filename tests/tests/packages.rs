//! The Debian packages (`scripts/package`, run by `scripts/test` first).
//! The amd64 ones are installed for real into a throwaway root with
//! dpkg, maintainer scripts included, then checked for their files,
//! owners and modes, the absence of key material, units that
//! `systemd-analyze verify` accepts inside that root, and that the
//! ingest's user cannot read the CA key there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sealcam_system_tests::*;

fn debs() -> Vec<PathBuf> {
    debs_for("amd64")
}

fn debs_for(arch: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debian")
        .join(arch);
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the packages with scripts/package --arch {arch}",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort_by_key(|d| field(d, "Package"));
    debs
}

fn field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(name)
        .output()
        .unwrap();
    text(&out.stdout).trim().to_owned()
}

/// A root with just enough for dpkg and systemd-sysusers: the dpkg
/// database, and the base system's users and groups.
fn throwaway_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc",
        "usr/sbin",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(r.join("var/lib/dpkg/available"), "").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nvideo:x:44:\ntss:x:109:\n").unwrap();
    std::fs::write(r.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(r.join("etc/gshadow"), "root:*::\nvideo:!::\ntss:!::\n").unwrap();
    root
}

fn install(root: &Path, debs: &[PathBuf]) {
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
            "--log=/dev/null",
            "-i",
        ])
        .args(debs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg -i failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The uid or gid of `name` in the root's passwd or group file.
fn id_of(root: &Path, file: &str, name: &str) -> u32 {
    std::fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in {file}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_packages_install_with_their_users_modes_and_units_and_no_keys() {
    let debs = debs();
    let names: Vec<String> = debs.iter().map(|d| field(d, "Package")).collect();
    assert_eq!(
        names,
        ["sealcam", "sealcam-ca", "sealcam-ingest", "sealcamd"],
        "{debs:?}"
    );
    for deb in &debs {
        assert_eq!(field(deb, "Architecture"), "amd64");
        let depends = field(deb, "Depends");
        assert!(depends.contains("libc6"), "{deb:?}: {depends}");
    }
    let sealcamd = &debs[3];
    let depends = field(sealcamd, "Depends");
    for dep in [
        "libgstreamer1.0-0",
        "libtss2-esys",
        "gstreamer1.0-plugins-good",
        "gstreamer1.0-plugins-ugly",
    ] {
        assert!(depends.contains(dep), "sealcamd lacks {dep}: {depends}");
    }

    let root = throwaway_root();
    let r = root.path();
    install(r, &debs);

    for bin in ["sealcamd", "sealcam-ingest", "sealcam", "sealcam-ca"] {
        assert_eq!(mode(&r.join("usr/bin").join(bin)), 0o755, "{bin}");
    }
    // Users from sysusers.d, the camera's in video and tss.
    let sealcam = id_of(r, "group", "sealcam");
    let ingest = id_of(r, "group", "sealcam-ingest");
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    for g in ["video", "tss"] {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{g}:")))
            .unwrap();
        assert!(
            line.ends_with("sealcam") || line.contains("sealcam,"),
            "{line}"
        );
    }
    // Configs: conffiles, root and the service's group only.
    for (conf, gid) in [
        ("etc/sealcam/sealcamd.toml", sealcam),
        ("etc/sealcam-ingest/ingest.toml", ingest),
    ] {
        let p = r.join(conf);
        assert_eq!(mode(&p), 0o640, "{conf}");
        assert_eq!(std::fs::metadata(&p).unwrap().gid(), gid, "{conf}");
        assert_eq!(mode(p.parent().unwrap()), 0o750, "{conf}");
    }
    let conffiles =
        std::fs::read_to_string(r.join("var/lib/dpkg/info/sealcamd.conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/sealcam/sealcamd.toml"),
        "{conffiles}"
    );
    // State directories, the services' own.
    for (dir, user) in [
        ("var/lib/sealcam", "sealcam"),
        ("var/lib/sealcam-ingest", "sealcam-ingest"),
        ("var/lib/sealcam-ca", "sealcam-ca"),
    ] {
        let p = r.join(dir);
        assert_eq!(mode(&p), 0o700, "{dir}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().uid(),
            id_of(r, "passwd", user),
            "{dir}"
        );
    }
    // Board configs and drop-ins ship with the daemon.
    for f in [
        "usr/share/sealcamd/boards/rpi4.toml",
        "usr/share/sealcamd/boards/jetson-orin.toml",
        "usr/share/sealcamd/systemd/raspberrypi.conf",
        "usr/lib/sysusers.d/sealcamd.conf",
        "usr/lib/sysusers.d/sealcam-ca.conf",
    ] {
        assert!(r.join(f).exists(), "{f} missing");
    }

    // No key material in any package.
    for deb in &debs {
        let listing = text(
            &Command::new("dpkg-deb")
                .arg("-c")
                .arg(deb)
                .output()
                .unwrap()
                .stdout,
        );
        for bad in [".key", ".pem", ".crt", ".rset"] {
            assert!(
                !listing.contains(bad),
                "{deb:?} ships a {bad} file:\n{listing}"
            );
        }
    }
    let out = Command::new("grep")
        .args(["-rIl", "PRIVATE KEY"])
        .arg(r.join("etc"))
        .arg(r.join("usr/share"))
        .output()
        .unwrap();
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));

    // The units verify inside the root: their binaries are there and
    // executable, their users exist. The root gets the system's own targets
    // and slices, as any system with systemd has.
    let units = r.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        let kind = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if ["target", "slice", "socket"].contains(&kind) && !units.join(&name).exists() {
            let _ = std::fs::copy(&p, units.join(&name));
        }
    }
    for unit in [
        "sealcamd.service",
        "sealcam-ingest.service",
        "sealcam-ca.service",
    ] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", r.display()))
            .arg(units.join(unit))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{unit}: {}",
            text(&out.stderr)
        );
    }
}

/// Runs `args` in the root as `uid`:`gid` with the supplementary `groups`
/// (what systemd gives the service user from the root's group file).
fn run_as(uid: u32, gid: u32, groups: &[u32], args: &[&std::ffi::OsStr]) -> std::process::Output {
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={}", groups.join(",")));
    }
    cmd.arg("--").args(args).output().unwrap()
}

#[test]
fn on_a_packaged_install_the_ingests_user_cannot_read_the_ca_key() {
    // setpriv needs to change users: the suite runs as root (scripts/test).
    let me = text(&Command::new("id").arg("-u").output().unwrap().stdout);
    assert_eq!(me.trim(), "0", "this test changes users: run it as root");
    let root = throwaway_root();
    let r = root.path();
    // Others may reach into the root, as into /.
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    install(r, &debs());
    let ca_uid = id_of(r, "passwd", "sealcam-ca");
    let ca_gid = id_of(r, "group", "sealcam-ca");
    let ingest_uid = id_of(r, "passwd", "sealcam-ingest");
    let ingest_gid = id_of(r, "group", "sealcam-ingest");
    // The ingest's user is in the CA's group (to reach its socket).
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    let ca_line = group
        .lines()
        .find(|l| l.starts_with("sealcam-ca:"))
        .unwrap();
    assert!(ca_line.ends_with(":sealcam-ingest"), "{ca_line}");

    // The CA made as the packaged unit would: its state directory from the
    // package, `sealcam-ca init` as the CA's user, with the unit's umask.
    let bin = r.join("usr/bin/sealcam-ca");
    let dir = r.join("var/lib/sealcam-ca");
    let key = dir.join("ca.key");
    let out = run_as(
        ca_uid,
        ca_gid,
        &[],
        &[
            "sh".as_ref(),
            "-c".as_ref(),
            "umask 077 && exec \"$0\" init --dir \"$1\"".as_ref(),
            bin.as_os_str(),
            dir.as_os_str(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::metadata(&key).unwrap().uid(), ca_uid);
    // The CA's user reads it (the refusal below is about who asks).
    let read_as_ca = run_as(ca_uid, ca_gid, &[], &["cat".as_ref(), key.as_os_str()]);
    assert!(read_as_ca.status.success(), "{}", text(&read_as_ca.stderr));
    assert!(text(&read_as_ca.stdout).contains("PRIVATE KEY"));

    // The ingest's user, with its groups: refused, by cat and by the CA's
    // own program (it cannot mint a token, let alone a certificate).
    let groups = [ingest_gid, ca_gid];
    let read = run_as(
        ingest_uid,
        ingest_gid,
        &groups,
        &["cat".as_ref(), key.as_os_str()],
    );
    assert!(!read.status.success());
    assert!(read.stdout.is_empty());
    assert!(
        text(&read.stderr).contains("Permission denied"),
        "{}",
        text(&read.stderr)
    );
    let mint = run_as(
        ingest_uid,
        ingest_gid,
        &groups,
        &[
            bin.as_os_str(),
            "device".as_ref(),
            "add".as_ref(),
            "cam1".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
        ],
    );
    assert!(!mint.status.success());
    assert!(
        text(&mint.stderr).contains("Permission denied"),
        "{}",
        text(&mint.stderr)
    );
    assert!(!dir.join("enroll").exists());
}

#[test]
fn the_arm64_packages_hold_aarch64_programs_linked_against_arm64_libraries() {
    let debs = debs_for("arm64");
    let names: Vec<String> = debs.iter().map(|d| field(d, "Package")).collect();
    assert_eq!(
        names,
        ["sealcam", "sealcam-ca", "sealcam-ingest", "sealcamd"],
        "{debs:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for (deb, name) in debs.iter().zip(&names) {
        assert_eq!(field(deb, "Architecture"), "arm64", "{deb:?}");
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let elf = std::fs::read(dir.path().join("usr/bin").join(name)).unwrap();
        // ELF, 64-bit, little-endian, e_machine 183 (EM_AARCH64).
        assert_eq!(&elf[..4], b"\x7fELF", "{name}");
        assert_eq!((elf[4], elf[5]), (2, 1), "{name}");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "{name}");
    }
    // dpkg-shlibdeps found the arm64 libraries the daemon links.
    let depends = field(&debs[3], "Depends");
    for dep in ["libgstreamer1.0-0", "libtss2-esys", "libc6"] {
        assert!(
            depends.contains(dep),
            "sealcamd arm64 lacks {dep}: {depends}"
        );
    }
}
