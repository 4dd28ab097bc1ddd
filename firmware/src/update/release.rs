//! What the running slot is: RAUC's compatible (from its `system.conf`,
//! unless the config names it), the release version it was built as (a
//! one-line file in the slot), and the kernel's boot id.

use std::path::Path;

use super::UpdateError;
use crate::config::UpdateConfig;

/// The `compatible=` of `[system]` in a RAUC `system.conf`.
pub fn compatible_in(system_conf: &str) -> Option<String> {
    let mut in_system = false;
    for line in system_conf.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_system = line == "[system]";
            continue;
        }
        if !in_system {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "compatible" {
                return Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            }
        }
    }
    None
}

/// This camera's compatible.
pub fn compatible(cfg: &UpdateConfig) -> Result<String, UpdateError> {
    if let Some(c) = &cfg.compatible {
        return Ok(c.clone());
    }
    let text = std::fs::read_to_string(&cfg.system_conf).map_err(|e| {
        UpdateError::Release(format!(
            "cannot read RAUC's {}: {e}; install the image's system.conf or set update.compatible",
            cfg.system_conf.display()
        ))
    })?;
    compatible_in(&text).ok_or_else(|| {
        UpdateError::Release(format!(
            "{} has no compatible= in [system]; set it there or in update.compatible",
            cfg.system_conf.display()
        ))
    })
}

/// The release version this slot runs.
pub fn installed_version(cfg: &UpdateConfig) -> Result<String, UpdateError> {
    let text = std::fs::read_to_string(&cfg.version_file).map_err(|e| {
        UpdateError::Release(format!(
            "cannot read the release version {}: {e}; the image writes it (one line, the bundle's version)",
            cfg.version_file.display()
        ))
    })?;
    let v = text.trim().to_owned();
    if !sealcam_api::update::valid_version(&v) {
        return Err(UpdateError::Release(format!(
            "{} holds {v:?}, not a release version (1 to 64 of 0-9 A-Z a-z . + - _ ~)",
            cfg.version_file.display()
        )));
    }
    Ok(v)
}

/// The environment variable sealcamd.service sets to the boot id (`%b`):
/// its sandbox (`ProcSubset=pid`) hides `/proc/sys`.
pub const BOOT_ID_ENV: &str = "SEALCAM_BOOT_ID";

/// The kernel's id of this boot, as 32 lower-case hex digits (systemd's
/// `%b` form; the kernel's file has dashes).
pub fn boot_id() -> Result<String, UpdateError> {
    if let Ok(id) = std::env::var(BOOT_ID_ENV) {
        if !id.trim().is_empty() {
            return Ok(normalized(&id));
        }
    }
    boot_id_at(Path::new("/proc/sys/kernel/random/boot_id"))
}

fn boot_id_at(path: &Path) -> Result<String, UpdateError> {
    Ok(normalized(
        &std::fs::read_to_string(path).map_err(UpdateError::io("reading the boot id", path))?,
    ))
}

/// A boot id without dashes or case: the kernel's and systemd's forms
/// compare equal.
pub fn normalized(id: &str) -> String {
    id.trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_compatible_is_read_from_the_system_section() {
        let conf = "[system]\nbootloader=grub\ncompatible = sealcam-qemu-amd64\n[keyring]\npath=/etc/rauc/keyring.pem\n";
        assert_eq!(compatible_in(conf).as_deref(), Some("sealcam-qemu-amd64"));
        assert_eq!(compatible_in("[slot.rootfs.0]\ncompatible=x\n"), None);
        assert_eq!(compatible_in("[system]\ncompatible=\n"), None);
    }

    #[test]
    fn this_machine_has_a_boot_id() {
        assert_eq!(
            boot_id_at(Path::new("/proc/sys/kernel/random/boot_id"))
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn the_kernels_and_systemds_forms_of_a_boot_id_compare_equal() {
        assert_eq!(
            normalized("5F0E1B2C-3d4e-4f5a-8b6c-7d8e9f0a1b2c\n"),
            normalized("5f0e1b2c3d4e4f5a8b6c7d8e9f0a1b2c")
        );
    }
}
