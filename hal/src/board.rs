//! Which board this is, from what the kernel and vendor files say.
//!
//! Read from `<root>/proc/device-tree/model` and `<root>/etc/nv_tegra_release`;
//! `root` is `/` in production and a fake tree in tests.

use std::fmt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    RaspberryPi4,
    RaspberryPi5,
    /// NVIDIA Jetson (Orin, Xavier, Nano).
    Jetson,
    /// Anything else: a PC, a VM, an unknown board.
    Generic,
}

impl Board {
    /// Whether this is a camera board we ship for: there, a device key in a
    /// file is never acceptable.
    pub fn is_camera_board(self) -> bool {
        !matches!(self, Board::Generic)
    }

    /// Detects the board below `root`.
    pub fn detect(root: &Path) -> Self {
        if root.join("etc/nv_tegra_release").exists() {
            return Board::Jetson;
        }
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
        } else if model.contains("Jetson") {
            Board::Jetson
        } else {
            Board::Generic
        }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Board::RaspberryPi4 => "Raspberry Pi 4",
            Board::RaspberryPi5 => "Raspberry Pi 5",
            Board::Jetson => "NVIDIA Jetson",
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
        let cases: [(Option<&[u8]>, bool, Board); 5] = [
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
}
