//! The privileged installer step (`sealcamd update install`, run as root by
//! `sealcam-install.service` when `ready.raucb` appears): sealcamd itself
//! never installs anything and never runs as root.
//!
//! 1. The bundle is copied into the installer's own directory (root only),
//!    and the one in the update directory removed: what is checked is what
//!    is installed, whatever sealcamd's user does meanwhile. The update
//!    directory is sealcamd's: `ready.raucb` is opened without following a
//!    link and without waiting on a FIFO, and must be a regular file.
//! 2. `rauc info` reads its manifest after verifying its signature against
//!    the keyring of the camera's `system.conf`.
//! 3. Its compatible must be this camera's and its version newer than the
//!    running release: RAUC refuses another compatible by itself, but not
//!    an older version, so an old signed bundle (a downgrade to a release
//!    with known flaws) is refused here, as is one older than the newest
//!    release this camera proved ([`super::proven`]). A release this
//!    camera gave up after its trial ([`super::given_up`]) is refused too.
//! 4. Only from a slot that has proved itself: while the booted slot is on
//!    trial, the other slot holds the only release known to work, and an
//!    install would overwrite it.
//! 5. The trial note naming the slot RAUC writes is made **before**
//!    `rauc install`: power lost at any point after it leaves a slot that
//!    boots on trial, never one taken for proven ([`super::health`]).
//! 6. `rauc install`; the caller reboots.
//!
//! Every end is written as the outcome sealcamd reports.

use std::cmp::Ordering;
use std::path::Path;

use sealcam_api::update::compare_versions;

use super::health::{read_trial, trial_path, Trial};
use super::outcome::{self, Outcome};
use super::rauc::{rauc, INSTALL, QUERY, VERIFY};
use super::rauc_json::{Info, Status};
use super::their_dir::TheirDir;
use super::{given_up, proven, release, UpdateError, READY};
use crate::config::UpdateConfig;

/// Whether a bundle whose (verified) manifest is `info` may be installed on
/// a camera of `compatible` that runs `installed`. `Ok`: its version.
pub fn check_bundle(info: &Info, compatible: &str, installed: &str) -> Result<String, String> {
    if info.compatible != compatible {
        return Err(format!(
            "it is for {:?}, this camera is {compatible:?}",
            info.compatible
        ));
    }
    let Some(version) = info.version.as_deref() else {
        return Err("its manifest has no version; the release build must set one".into());
    };
    match compare_versions(version, installed) {
        Ordering::Greater => Ok(version.to_owned()),
        Ordering::Equal => Err(format!("it is the running release {installed}")),
        Ordering::Less => Err(format!(
            "it is older than the running release {installed} (RAUC does not refuse downgrades; sealcam does)"
        )),
    }
}

/// How the step ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// No bundle was waiting.
    Nothing,
    /// Refused or failed; the outcome says why.
    NotInstalled(Outcome),
    /// Installed; the caller reboots into it.
    Installed(Outcome),
}

/// The installer step, once.
pub fn run(cfg: &UpdateConfig) -> Result<Installed, UpdateError> {
    // sealcamd's user owns the update directory's parent: it is opened
    // without following a link put in its place (to /etc, say), and every
    // file below is reached through it.
    let dir = match TheirDir::open(&cfg.dir) {
        Ok(d) => d,
        Err(_) if std::fs::symlink_metadata(&cfg.dir).is_err() => return Ok(Installed::Nothing),
        Err(why) => return Err(UpdateError::Release(format!("the update directory: {why}"))),
    };
    if !dir.has(READY) {
        return Ok(Installed::Nothing);
    }
    let ready = dir.join(READY);
    std::fs::create_dir_all(&cfg.install_dir)
        .map_err(UpdateError::io("creating", &cfg.install_dir))?;
    set_private(&cfg.install_dir)?;
    let copy = cfg.install_dir.join("bundle.raucb");
    // Whatever happens next, the bundle leaves sealcamd's directory: a
    // bundle left there would start this step again at once (the path unit
    // watches it), for ever. The next check fetches it again if it is still
    // offered.
    let copied = copy_ready(&ready, &dir.shown(READY), &copy, cfg.max_bytes);
    sealcam_base::durable::remove(&ready)?;
    let ended = match copied {
        Ok(Ok(sha256)) => install_copy(cfg, &copy, &sha256),
        Ok(Err(why)) => Ok(Installed::NotInstalled(Outcome::new("refused", None, why))),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&copy);
    let ended = ended?;
    match &ended {
        Installed::Installed(o) | Installed::NotInstalled(o) => outcome::write(dir.path(), o)?,
        Installed::Nothing => {}
    }
    Ok(ended)
}

/// Copies `ready` (in sealcamd's directory, named `shown` in messages) to
/// `copy`; the copy's SHA-256 (hex). `Ok(Err(why))`: `ready` is not a
/// regular file, and nothing was copied.
fn copy_ready(
    ready: &Path,
    shown: &Path,
    copy: &Path,
    max: u64,
) -> Result<Result<String, String>, UpdateError> {
    use sha2::Digest;
    use std::io::{Read, Write};
    let from = match super::their_file::open_regular_shown(ready, shown) {
        Ok(f) => f,
        Err(why) => {
            return Ok(Err(format!(
                "{why}: sealcamd renames a verified download there, nothing else"
            )))
        }
    };
    let too_big = || {
        Ok(Err(format!(
            "{} is larger than update.max_bytes ({max}): no offer of that size is fetched",
            shown.display()
        )))
    };
    let _ = std::fs::remove_file(copy);
    if from.metadata().map(|m| m.len()).unwrap_or(u64::MAX) > max {
        return too_big();
    }
    // At most one byte past the limit: a file that grows while it is
    // copied cannot fill the data partition.
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(copy)
        .and_then(|mut to| {
            let mut from = from.take(max.saturating_add(1));
            let mut hash = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut n = 0u64;
            loop {
                let got = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                hash.update(&buf[..got]);
                to.write_all(&buf[..got])?;
                n += got as u64;
            }
            to.sync_all()?;
            Ok((n, hex::encode(hash.finalize())))
        });
    match result {
        Ok((n, _)) if n > max => {
            let _ = std::fs::remove_file(copy);
            too_big()
        }
        Ok((_, sha256)) => Ok(Ok(sha256)),
        Err(e) => {
            let _ = std::fs::remove_file(copy);
            Err(UpdateError::io("copying the bundle to", copy)(e))
        }
    }
}

fn set_private(dir: &Path) -> Result<(), UpdateError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(UpdateError::io("restricting", dir))
}

/// Checks and installs the copy `bundle`, whose SHA-256 is `sha256`.
fn install_copy(cfg: &UpdateConfig, bundle: &Path, sha256: &str) -> Result<Installed, UpdateError> {
    let conf = format!("--conf={}", cfg.system_conf.display());
    let path = bundle.display().to_string();
    let not_installed = |o: Outcome| Ok(Installed::NotInstalled(o.of_bundle(Some(sha256))));
    let info = match rauc(&[&conf, "info", "--output-format=json", &path], VERIFY) {
        Ok(json) => Info::parse(&json).map_err(UpdateError::Release)?,
        // Not for good: RAUC's check can also fail for want of a loop
        // device or room to mount, and declining a good bundle for ever
        // would cost more than fetching a bad one again.
        Err(e) => {
            return not_installed(Outcome::new(
                "refused",
                None,
                format!("RAUC does not accept the bundle (signature or format): {e}"),
            ))
        }
    };
    let compatible = release::compatible(cfg)?;
    let installed = release::installed_version(cfg)?;
    // Refusals by what the signed manifest says: the same bytes are always
    // refused, so they are not fetched again.
    let refused = |why: String| {
        not_installed(Outcome::new("refused", info.version.as_deref(), why).for_good())
    };
    let version = match check_bundle(&info, &compatible, &installed) {
        Ok(v) => v,
        Err(why) => return refused(why),
    };
    if let Some(mark) = proven::read(&proven::path(cfg)) {
        if compare_versions(&version, &mark).is_lt() {
            return refused(format!(
                "it is older than {mark}, which this camera has run and proved (after a fall back too, an older release is a downgrade)"
            ));
        }
    }
    match given_up::verdict(&cfg.install_dir, &version, crate::date::now_unix()) {
        given_up::Verdict::Never => {
            return refused(format!(
                "this camera tried {version} before and gave it up (it did not prove itself on trial); a newer release is needed"
            ))
        }
        // Not for good: tried again once its time has come.
        given_up::Verdict::Until(t) => {
            let why = format!(
                "this camera tried {version} and had no fragment acknowledged on trial; it is tried again after {}",
                crate::date::rfc3339_u64(t)
            );
            return not_installed(Outcome::new("refused", Some(&version), why).until(t));
        }
        given_up::Verdict::Install => {}
    }
    let status = match rauc(&[&conf, "status", "--output-format=json"], QUERY)
        .and_then(|json| Status::parse(&json).map_err(UpdateError::Release))
    {
        Ok(s) => s,
        Err(e) => {
            return not_installed(Outcome::new(
                "failed",
                Some(&version),
                format!("cannot ask RAUC which slot is booted and good: {e}"),
            ))
        }
    };
    // Not for good: once the slot on trial is judged, this one may go in.
    let target = match slot_to_install(&status, read_trial(&trial_path(cfg)).as_ref()) {
        Ok(t) => t,
        Err(why) => return not_installed(Outcome::new("refused", Some(&version), why)),
    };
    // Before the install: from here on, whatever power does, the slot
    // boots on trial.
    let mut trial = Trial {
        slot: target.clone(),
        version: Some(version.clone()),
        booted: false,
        installed: false,
        bootname: status.bootname_of(&target),
        boot_id: Some(release::boot_id()?),
        trial_boot: None,
        sha256: Some(sha256.to_owned()),
        unproven: false,
    };
    write_trial(cfg, &trial)?;
    if let Err(e) = rauc(&[&conf, "install", &path], INSTALL) {
        // The note goes only when the slot surely will not boot. RAUC may
        // have made it primary before the error, and a client stopped at
        // its time limit leaves the service installing, to make it primary
        // later: then it boots on trial and is judged, or the next boot
        // finds an install that did not finish.
        let finished = !matches!(e, UpdateError::NoAnswer { .. });
        let primary = rauc(&[&conf, "status", "--output-format=json"], QUERY)
            .ok()
            .and_then(|json| Status::parse(&json).ok())
            .and_then(|s| s.boot_primary);
        if finished && primary.is_some_and(|p| p != target) {
            sealcam_base::durable::remove(&trial_path(cfg))?;
        }
        return not_installed(Outcome::new("failed", Some(&version), e.to_string()));
    }
    trial.installed = true;
    write_trial(cfg, &trial)?;
    Ok(Installed::Installed(
        Outcome::new(
            "installing",
            Some(&version),
            format!("installed into {target}; rebooting to try it"),
        )
        .of_bundle(Some(sha256)),
    ))
}

/// The slot an install may write now: the other slot, and only while the
/// booted one is good and no trial is pending. `Err`: why not, in a line.
pub fn slot_to_install(status: &Status, trial: Option<&Trial>) -> Result<String, String> {
    let Some(booted) = status.booted_slot() else {
        return Err(
            "RAUC names no booted slot: updates are installed from a slot of the A/B image".into(),
        );
    };
    if !booted.good || trial.is_some() {
        return Err(format!(
            "the running slot {} is on trial; the other slot holds the only release known to work, so updates wait until this one has proved itself (or the camera has fallen back)",
            booted.name
        ));
    }
    status.install_target().ok_or_else(|| {
        "RAUC's status names no single other slot to install into (see `rauc status`)".into()
    })
}

/// Notes that `slot` (default: RAUC's primary slot) was just installed
/// (by hand, `rauc install`) and is on trial. Returns the slot's name.
pub fn note_trial(
    cfg: &UpdateConfig,
    slot: Option<String>,
    version: Option<String>,
) -> Result<String, UpdateError> {
    let conf = format!("--conf={}", cfg.system_conf.display());
    let status = Status::parse(&rauc(&[&conf, "status", "--output-format=json"], QUERY)?)
        .map_err(UpdateError::Release)?;
    let slot = match slot.or_else(|| status.boot_primary.clone()) {
        Some(s) => s,
        None => {
            return Err(UpdateError::Release(
                "rauc status names no primary slot; pass --slot".into(),
            ))
        }
    };
    std::fs::create_dir_all(&cfg.install_dir)
        .map_err(UpdateError::io("creating", &cfg.install_dir))?;
    set_private(&cfg.install_dir)?;
    write_trial(
        cfg,
        &Trial {
            slot: slot.clone(),
            version,
            booted: false,
            installed: true,
            bootname: status.bootname_of(&slot),
            boot_id: Some(release::boot_id()?),
            trial_boot: None,
            sha256: None,
            unproven: false,
        },
    )?;
    Ok(slot)
}

fn write_trial(cfg: &UpdateConfig, trial: &Trial) -> Result<(), UpdateError> {
    super::write_json(&trial_path(cfg), trial)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(compatible: &str, version: Option<&str>) -> Info {
        Info {
            compatible: compatible.into(),
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_newer_bundle_of_this_compatible_is_installed() {
        let c = "sealcam-qemu-amd64";
        assert_eq!(
            check_bundle(&info(c, Some("1.10.0")), c, "1.9.3").unwrap(),
            "1.10.0"
        );
        assert!(check_bundle(&info(c, Some("1.9.3")), c, "1.9.3")
            .unwrap_err()
            .contains("running"));
        assert!(check_bundle(&info(c, Some("1.2.0")), c, "1.9.3")
            .unwrap_err()
            .contains("older"));
        assert!(check_bundle(&info("sealcam-rpi4", Some("2.0")), c, "1.0")
            .unwrap_err()
            .contains("sealcam-rpi4"));
        assert!(check_bundle(&info(c, None), c, "1.0").is_err());
    }

    #[test]
    fn only_a_proven_slot_installs_into_the_other() {
        use super::super::rauc_json::samples::*;
        let good = Status::parse(GOOD_A).unwrap();
        assert_eq!(slot_to_install(&good, None).unwrap(), "rootfs.1");
        let pending = Trial {
            slot: "rootfs.1".into(),
            version: Some("2.0".into()),
            booted: false,
            installed: false,
            bootname: Some("B".into()),
            boot_id: None,
            trial_boot: None,
            sha256: None,
            unproven: false,
        };
        assert!(slot_to_install(&good, Some(&pending))
            .unwrap_err()
            .contains("on trial"));
        let trial = Status::parse(TRIAL_A).unwrap();
        assert!(slot_to_install(&trial, None)
            .unwrap_err()
            .contains("on trial"));
        // The EFI slot of a U-Boot board is no target; B on trial waits.
        let detailed = Status::parse(DETAILED_TRIAL_B).unwrap();
        assert!(slot_to_install(&detailed, None).is_err());
        assert_eq!(
            Status::parse(FELL_BACK_TO_B)
                .unwrap()
                .install_target()
                .unwrap(),
            "rootfs.0"
        );
    }

    #[test]
    fn ready_must_be_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root's").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(copy_ready(&link, &link, &copy, 100).unwrap().is_err());
        assert!(!copy.exists());
        let bundle = dir.path().join("bundle");
        std::fs::write(&bundle, b"bundle").unwrap();
        copy_ready(&bundle, &bundle, &copy, 6).unwrap().unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"bundle");
        // Larger than any offer may be: refused, nothing left behind.
        let why = copy_ready(&bundle, &bundle, &copy, 5).unwrap().unwrap_err();
        assert!(why.contains("max_bytes"), "{why}");
        assert!(!copy.exists());
    }

    #[test]
    fn the_real_manifest_sample_is_checked() {
        let i = Info::parse(super::super::rauc_json::samples::INFO).unwrap();
        assert!(check_bundle(&i, "sealcam-test", "1.1.9").is_ok());
        assert!(check_bundle(&i, "sealcam-test", "1.3").is_err());
    }
}
