//! Which board this is, from what the kernel and vendor files say, and
//! what capture graph and picture it gets by default.
//!
//! Read from `<root>/proc/device-tree/model` and `<root>/etc/nv_tegra_release`;
//! `root` is `/` in production and a fake tree in tests. The config can
//! always name the profile instead (`camera.profile`).

use std::fmt;
use std::path::Path;

pub use crate::pipeline::SourceKind;
use crate::pipeline::{Encoder, SpeedPreset};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// Raspberry Pi 4 (and Compute Module 4): hardware H.264 encoder.
    RaspberryPi4,
    /// Raspberry Pi 5: no hardware H.264 encoder.
    RaspberryPi5,
    /// NVIDIA Jetson with NVENC (Orin NX, AGX Orin, Xavier, Nano).
    Jetson,
    /// NVIDIA Jetson Orin Nano: the one Jetson without NVENC.
    JetsonOrinNano,
    /// Anything else: a PC, a VM, an unknown board.
    Generic,
}

/// What a board's profile chooses when the config does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub source: SourceKind,
    pub encoder: Encoder,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub bitrate_kbps: u32,
}

/// The profile names the config accepts, with `auto` (detect).
pub const PROFILE_NAMES: &str = "auto, rpi4, rpi5, jetson, jetson-orin-nano, generic";

impl Board {
    /// Whether this is a camera board we ship for: there, a device key in a
    /// file is never acceptable.
    pub fn is_camera_board(self) -> bool {
        !matches!(self, Board::Generic)
    }

    /// Detects the board below `root`.
    pub fn detect(root: &Path) -> Self {
        let model = std::fs::read(root.join("proc/device-tree/model")).unwrap_or_default();
        // The device-tree string ends with a NUL.
        let model = String::from_utf8_lossy(&model);
        let model = model.trim_end_matches('\0').trim();
        if model.starts_with("Raspberry Pi 5") {
            Board::RaspberryPi5
        } else if model.starts_with("Raspberry Pi 4")
            || model.starts_with("Raspberry Pi Compute Module 4")
        {
            Board::RaspberryPi4
        } else if model.contains("Orin Nano") {
            Board::JetsonOrinNano
        } else if model.contains("Jetson") || root.join("etc/nv_tegra_release").exists() {
            Board::Jetson
        } else {
            Board::Generic
        }
    }

    /// The profile named in a config (`rpi4`, ...); `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "rpi4" => Board::RaspberryPi4,
            "rpi5" => Board::RaspberryPi5,
            "jetson" => Board::Jetson,
            "jetson-orin-nano" => Board::JetsonOrinNano,
            "generic" => Board::Generic,
            _ => return None,
        })
    }

    /// The profile's name in a config.
    pub fn name(self) -> &'static str {
        match self {
            Board::RaspberryPi4 => "rpi4",
            Board::RaspberryPi5 => "rpi5",
            Board::Jetson => "jetson",
            Board::JetsonOrinNano => "jetson-orin-nano",
            Board::Generic => "generic",
        }
    }

    /// The camera, encoder and picture the board gets unless the config
    /// says otherwise. Sizes and bitrates are what the board encodes at
    /// 30 frames per second with room to spare for sealing and upload.
    pub fn defaults(self) -> Defaults {
        let d = |source, encoder, width, height, bitrate_kbps| Defaults {
            source,
            encoder,
            width,
            height,
            framerate: 30,
            bitrate_kbps,
        };
        match self {
            Board::RaspberryPi4 => d(SourceKind::Libcamera, Encoder::V4l2, 1920, 1080, 4000),
            // x264 ultrafast at 720p30 takes about one of the Pi 5's four
            // Cortex-A76 cores; 1080p needs about twice that.
            Board::RaspberryPi5 => d(
                SourceKind::Libcamera,
                Encoder::X264 {
                    speed_preset: SpeedPreset::Ultrafast,
                },
                1280,
                720,
                2500,
            ),
            Board::Jetson => d(SourceKind::Argus, Encoder::Nvv4l2, 1920, 1080, 4000),
            Board::JetsonOrinNano => d(
                SourceKind::Argus,
                Encoder::X264 {
                    speed_preset: SpeedPreset::Ultrafast,
                },
                1920,
                1080,
                4000,
            ),
            Board::Generic => d(
                SourceKind::V4l2,
                Encoder::X264 {
                    speed_preset: SpeedPreset::Superfast,
                },
                1280,
                720,
                2000,
            ),
        }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Board::RaspberryPi4 => "Raspberry Pi 4",
            Board::RaspberryPi5 => "Raspberry Pi 5",
            Board::Jetson => "NVIDIA Jetson",
            Board::JetsonOrinNano => "NVIDIA Jetson Orin Nano",
            Board::Generic => "generic",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(model: Option<&[u8]>, tegra: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(m) = model {
            std::fs::create_dir_all(dir.path().join("proc/device-tree")).unwrap();
            std::fs::write(dir.path().join("proc/device-tree/model"), m).unwrap();
        }
        if tegra {
            std::fs::create_dir_all(dir.path().join("etc")).unwrap();
            std::fs::write(dir.path().join("etc/nv_tegra_release"), "# R36 (release)").unwrap();
        }
        dir
    }

    #[test]
    fn detects_the_boards_from_their_trees() {
        let cases: [(Option<&[u8]>, bool, Board); 6] = [
            (
                Some(b"Raspberry Pi 4 Model B Rev 1.5\0"),
                false,
                Board::RaspberryPi4,
            ),
            (
                Some(b"Raspberry Pi 5 Model B Rev 1.0\0"),
                false,
                Board::RaspberryPi5,
            ),
            (
                Some(b"NVIDIA Jetson Orin Nano Developer Kit\0"),
                true,
                Board::JetsonOrinNano,
            ),
            (
                Some(b"NVIDIA Jetson AGX Orin Developer Kit\0"),
                false,
                Board::Jetson,
            ),
            (None, true, Board::Jetson),
            (None, false, Board::Generic),
        ];
        for (model, tegra, want) in cases {
            let t = tree(model, tegra);
            assert_eq!(Board::detect(t.path()), want);
        }
    }

    #[test]
    fn every_profile_has_a_name_and_hardware_encoders_only_where_the_board_has_one() {
        for board in [
            Board::RaspberryPi4,
            Board::RaspberryPi5,
            Board::Jetson,
            Board::JetsonOrinNano,
            Board::Generic,
        ] {
            assert_eq!(Board::from_name(board.name()), Some(board));
            assert!(PROFILE_NAMES.contains(board.name()));
            let hardware = matches!(board.defaults().encoder, Encoder::V4l2 | Encoder::Nvv4l2);
            assert_eq!(
                hardware,
                matches!(board, Board::RaspberryPi4 | Board::Jetson),
                "{board}"
            );
        }
        assert_eq!(Board::from_name("pi4"), None);
    }
}
