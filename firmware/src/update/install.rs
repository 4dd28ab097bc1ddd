//! The privileged installer step (`sealcamd update install`, run as root by
//! `sealcam-install.service` when `ready.raucb` appears): sealcamd itself
//! never installs anything and never runs as root.
//!
//! 1. The bundle is copied into the installer's own directory (root only),
//!    and the one in the update directory removed: what is checked is what
//!    is installed, whatever sealcamd's user does meanwhile.
//! 2. `rauc info` reads its manifest after verifying its signature against
//!    the keyring of the camera's `system.conf`.
//! 3. Its compatible must be this camera's and its version newer than the
//!    running release: RAUC refuses another compatible by itself, but not
//!    an older version, so an old signed bundle (a downgrade to a release
//!    with known flaws) is refused here.
//! 4. `rauc install`; on success the trial note names the slot RAUC will
//!    boot next ([`super::health`]) and the caller reboots.
//!
//! Every end is written as the outcome sealcamd reports.

use std::cmp::Ordering;
use std::path::Path;

use sealcam_api::update::compare_versions;

use super::health::{rauc, Trial};
use super::outcome::{self, Outcome};
use super::rauc_json::{Info, Status};
use super::{release, UpdateError, READY};
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
    let ready = cfg.dir.join(READY);
    if !ready.exists() {
        return Ok(Installed::Nothing);
    }
    std::fs::create_dir_all(&cfg.install_dir)
        .map_err(UpdateError::io("creating", &cfg.install_dir))?;
    set_private(&cfg.install_dir)?;
    let copy = cfg.install_dir.join("bundle.raucb");
    // Whatever happens next, the bundle leaves sealcamd's directory: a
    // bundle left there would start this step again at once (the path unit
    // watches it), for ever. The next check fetches it again if it is still
    // offered.
    let copied = std::fs::copy(&ready, &copy);
    sealcam_base::durable::remove(&ready)?;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&copy);
        return Err(UpdateError::io("copying the bundle to", &copy)(e));
    }
    let ended = install_copy(cfg, &copy);
    let _ = std::fs::remove_file(&copy);
    let ended = ended?;
    match &ended {
        Installed::Installed(o) | Installed::NotInstalled(o) => outcome::write(&cfg.dir, o)?,
        Installed::Nothing => {}
    }
    Ok(ended)
}

fn set_private(dir: &Path) -> Result<(), UpdateError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(UpdateError::io("restricting", dir))
}

fn install_copy(cfg: &UpdateConfig, bundle: &Path) -> Result<Installed, UpdateError> {
    let conf = format!("--conf={}", cfg.system_conf.display());
    let path = bundle.display().to_string();
    let info = match rauc(&[&conf, "info", "--output-format=json", &path]) {
        Ok(json) => Info::parse(&json).map_err(UpdateError::Release)?,
        Err(e) => {
            return Ok(Installed::NotInstalled(Outcome::new(
                "refused",
                None,
                format!("RAUC does not accept the bundle (signature or format): {e}"),
            )))
        }
    };
    let compatible = release::compatible(cfg)?;
    let installed = release::installed_version(cfg)?;
    let version = match check_bundle(&info, &compatible, &installed) {
        Ok(v) => v,
        Err(why) => {
            return Ok(Installed::NotInstalled(Outcome::new(
                "refused",
                info.version.as_deref(),
                why,
            )))
        }
    };
    if let Err(e) = rauc(&[&conf, "install", &path]) {
        return Ok(Installed::NotInstalled(Outcome::new(
            "failed",
            Some(&version),
            e.to_string(),
        )));
    }
    let slot = note_trial(cfg, None, Some(version.clone()))?;
    Ok(Installed::Installed(Outcome::new(
        "installing",
        Some(&version),
        format!("installed into {slot}; rebooting to try it"),
    )))
}

/// Notes that `slot` (default: RAUC's primary slot) was just installed
/// and is on trial. Returns the slot's name.
pub fn note_trial(
    cfg: &UpdateConfig,
    slot: Option<String>,
    version: Option<String>,
) -> Result<String, UpdateError> {
    let slot = match slot {
        Some(s) => s,
        None => {
            let conf = format!("--conf={}", cfg.system_conf.display());
            let status = Status::parse(&rauc(&[&conf, "status", "--output-format=json"])?)
                .map_err(UpdateError::Release)?;
            status.boot_primary.ok_or_else(|| {
                UpdateError::Release("rauc status names no primary slot; pass --slot".into())
            })?
        }
    };
    std::fs::create_dir_all(&cfg.install_dir)
        .map_err(UpdateError::io("creating", &cfg.install_dir))?;
    set_private(&cfg.install_dir)?;
    let trial = Trial {
        slot: slot.clone(),
        version,
    };
    let json = serde_json::to_vec(&trial).map_err(|e| UpdateError::Release(e.to_string()))?;
    sealcam_base::durable::replace(&super::health::trial_path(cfg), &json)?;
    Ok(slot)
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
    fn the_real_manifest_sample_is_checked() {
        let i = Info::parse(super::super::rauc_json::samples::INFO).unwrap();
        assert!(check_bundle(&i, "sealcam-test", "1.1.9").is_ok());
        assert!(check_bundle(&i, "sealcam-test", "1.3").is_err());
    }
}
