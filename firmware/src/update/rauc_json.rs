//! What `rauc status --output-format=json` and `rauc info
//! --output-format=json` print, as RAUC 1.8 writes it
//! (`r_status_formatter_json` and `info_formatter_json` in its
//! `src/main.c`): only the fields sealcamd reads, unknown ones ignored.
//!
//! ```text
//! {"compatible":"sealcam-qemu-amd64","variant":null,"booted":"A","boot_primary":"rootfs.0",
//!  "slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"ext4","bootname":"A",
//!            "state":"booted","parent":null,"mountpoint":"/","boot_status":"bad"}}, ...]}
//! ```
//!
//! `boot_status` is the bootloader's word: GRUB's `good` is `<slot>_OK=1`
//! and `<slot>_TRY=0`, U-Boot's is `BOOT_<slot>_LEFT > 0`; `rauc status
//! mark-good` makes it `good`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `rauc status --output-format=json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub compatible: Option<String>,
    /// The booted slot's bootname (`rauc.slot=` on the kernel command line).
    #[serde(default)]
    pub booted: Option<String>,
    /// The slot the bootloader tries first.
    #[serde(default)]
    pub boot_primary: Option<String>,
    /// One single-key object per slot: `{"rootfs.0": {...}}`.
    #[serde(default)]
    pub slots: Vec<BTreeMap<String, Slot>>,
}

/// One slot of [`Status`].
#[derive(Clone, Debug, Deserialize)]
pub struct Slot {
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub bootname: Option<String>,
    /// `booted`, `active` or `inactive`.
    #[serde(default)]
    pub state: Option<String>,
    /// `good` or `bad` for bootable slots; `null` for others.
    #[serde(default)]
    pub boot_status: Option<String>,
}

/// The booted slot: its name and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booted {
    pub name: String,
    pub bootname: Option<String>,
    pub good: bool,
}

impl Status {
    pub fn parse(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("rauc status is not RAUC's JSON: {e}"))
    }

    /// The booted bootable slot: the one in state `booted` (or, failing
    /// that, whose bootname is `booted`) that has a bootname.
    pub fn booted_slot(&self) -> Option<Booted> {
        let all = || self.slots.iter().flat_map(|m| m.iter());
        let by_state =
            all().find(|(_, s)| s.state.as_deref() == Some("booted") && s.bootname.is_some());
        let by_name = || all().find(|(_, s)| s.bootname.is_some() && s.bootname == self.booted);
        let (name, slot) = by_state.or_else(by_name)?;
        Some(Booted {
            name: name.clone(),
            bootname: slot.bootname.clone(),
            good: slot.boot_status.as_deref() == Some("good"),
        })
    }
}

impl Status {
    /// The boot loader's name (`bootname`) of the slot named `slot`.
    pub fn bootname_of(&self, slot: &str) -> Option<String> {
        self.slots
            .iter()
            .flat_map(|m| m.iter())
            .find(|(name, _)| *name == slot)
            .and_then(|(_, s)| s.bootname.clone())
    }

    /// The bootable slot an install writes: the one of the booted slot's
    /// class that is not booted (with two slots, the other one).
    pub fn install_target(&self) -> Option<String> {
        let booted = self.booted_slot()?;
        let all = || self.slots.iter().flat_map(|m| m.iter());
        let class = all()
            .find(|(name, _)| **name == booted.name)
            .and_then(|(_, s)| s.class.clone());
        let mut others = all()
            .filter(|(name, s)| **name != booted.name && s.bootname.is_some() && s.class == class);
        let (name, _) = others.next()?;
        // More than one candidate: RAUC chooses; sealcam images have two.
        others.next().is_none().then(|| name.clone())
    }
}

/// `rauc info --output-format=json BUNDLE`: the manifest, after RAUC has
/// checked the bundle's signature.
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    pub compatible: String,
    #[serde(default)]
    pub version: Option<String>,
}

impl Info {
    pub fn parse(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("rauc info is not RAUC's JSON: {e}"))
    }
}

#[cfg(test)]
pub(crate) mod samples {
    //! Outputs in the shape RAUC 1.8's `src/main.c` prints.

    /// Booted from A after an install into it: GRUB's A_TRY=1, not yet good.
    pub const TRIAL_A: &str = r#"{"compatible":"sealcam-qemu-amd64","variant":null,"booted":"A","boot_primary":"rootfs.0","slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/vda3","type":"ext4","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good"}},{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"ext4","bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"bad"}}]}"#;

    /// Booted from A, marked good.
    pub const GOOD_A: &str = r#"{"compatible":"sealcam-qemu-amd64","variant":null,"booted":"A","boot_primary":"rootfs.0","slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/vda3","type":"ext4","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good"}},{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"ext4","bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"good"}}]}"#;

    /// Fell back to B after A failed: A bad, B booted and good.
    pub const FELL_BACK_TO_B: &str = r#"{"compatible":"sealcam-qemu-amd64","variant":null,"booted":"B","boot_primary":"rootfs.1","slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/vda3","type":"ext4","bootname":"B","state":"booted","parent":null,"mountpoint":"/","boot_status":"good"}},{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"ext4","bootname":"A","state":"inactive","parent":null,"mountpoint":null,"boot_status":"bad"}}]}"#;

    /// `rauc status --detailed`, with slot_status, as 1.8 adds it.
    pub const DETAILED_TRIAL_B: &str = r#"{"compatible":"sealcam-rpi4","variant":null,"booted":"B","boot_primary":"rootfs.1","slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/mmcblk0p2","type":"ext4","bootname":"A","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good","slot_status":{"bundle":{"compatible":"sealcam-rpi4","version":"1.0.0"},"status":"ok"}}},{"rootfs.1":{"class":"rootfs","device":"/dev/mmcblk0p3","type":"ext4","bootname":"B","state":"booted","parent":null,"mountpoint":"/","boot_status":"bad","slot_status":{"bundle":{"compatible":"sealcam-rpi4","version":"1.1.0"},"checksum":{"sha256":"ab","size":1},"installed":{"timestamp":"2026-12-07T10:00:00Z","count":1},"status":"ok"}}},{"efi.0":{"class":"efi","device":"/dev/mmcblk0p1","type":"vfat","bootname":null,"state":"inactive","parent":null,"mountpoint":null,"boot_status":null}}]}"#;

    /// `rauc info --output-format=json` of a bundle (RAUC 1.8).
    pub const INFO: &str = r#"{"compatible":"sealcam-test","version":"1.2.0","description":null,"build":null,"hooks":[],"images":[{"rootfs":{"variant":null,"filename":"rootfs.img","checksum":"3ede30ab8e2187621ce18ca8e8074fcedbe8efdc034fc456aa8a6cc82faf1a7d","size":20000,"hooks":[],"adaptive":[]}}]}"#;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::samples::*;
    use super::*;

    #[test]
    fn the_booted_slot_and_its_status_are_read() {
        let b = Status::parse(TRIAL_A).unwrap().booted_slot().unwrap();
        assert_eq!((b.name.as_str(), b.good), ("rootfs.0", false));
        let b = Status::parse(GOOD_A).unwrap().booted_slot().unwrap();
        assert!(b.good);
        let b = Status::parse(DETAILED_TRIAL_B)
            .unwrap()
            .booted_slot()
            .unwrap();
        assert_eq!(
            (b.name.as_str(), b.bootname.as_deref(), b.good),
            ("rootfs.1", Some("B"), false)
        );
        assert!(Status::parse("{}").unwrap().booted_slot().is_none());
        assert!(Status::parse("not json").is_err());
    }

    #[test]
    fn a_bundle_manifest_is_read() {
        let i = Info::parse(INFO).unwrap();
        assert_eq!(
            (i.compatible.as_str(), i.version.as_deref()),
            ("sealcam-test", Some("1.2.0"))
        );
    }
}
