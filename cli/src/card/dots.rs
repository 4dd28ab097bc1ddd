//! The `.` and `..` entries of a directory `fatfs` has just made, put where
//! FAT requires them: the directory's first two slots.
//!
//! `fatfs` 0.3.6, the release on crates.io, writes a long-name entry ahead
//! of each of them (rafalh/rust-fatfs#117, fixed upstream, unreleased). The
//! kernel's vfat reads such a directory, but `fsck.vfat`, which systemd runs
//! on the boot partition at the camera's first boot, takes the slots apart:
//! it renames `.` and `..` and deletes them, and changes the card the owner
//! wrote. So right after `fatfs` makes `sealcam/`, this module finds it in
//! the root directory by its short name and, when its first four slots are
//! exactly that layout (long name, `.`, long name, `..`), rewrites them as
//! `.`, `..` and two free slots, `..` naming cluster 0 as the root's
//! subdirectories must. Anything else it leaves alone.
//!
//! The image is untrusted: every offset is checked, every cluster chain is
//! bounded, and a volume that does not add up is an error, not a panic.

use std::io::{self, Read, Seek, SeekFrom, Write};

const ENTRY: usize = 32;
const ATTR_DIR: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the FAT volume is malformed: {what}"),
    )
}

/// What the boot sector says about where things are, in bytes.
struct Volume {
    cluster_bytes: u64,
    data_start: u64,
    /// Data clusters in the volume, as far as the partition holds them.
    clusters: u64,
    fat_start: u64,
    /// FAT12/16: the fixed root directory region (offset, bytes).
    /// FAT32: `None`, the root is the cluster chain from `root_cluster`.
    root_region: Option<(u64, u64)>,
    root_cluster: u32,
    fat32: bool,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

impl Volume {
    fn read<F: Read + Seek>(fs: &mut F) -> io::Result<Self> {
        let mut boot = [0u8; 512];
        fs.seek(SeekFrom::Start(0))?;
        fs.read_exact(&mut boot)?;
        let sector = le16(&boot, 11);
        let per_cluster = u64::from(boot[13]);
        if !(512..=4096).contains(&sector) || !sector.is_power_of_two() {
            return Err(malformed("bytes per sector"));
        }
        if per_cluster == 0 || !per_cluster.is_power_of_two() {
            return Err(malformed("sectors per cluster"));
        }
        let reserved = le16(&boot, 14);
        let fats = u64::from(boot[16]);
        let root_entries = le16(&boot, 17);
        let total = match le16(&boot, 19) {
            0 => le32(&boot, 32),
            n => n,
        };
        let fat_sectors = match le16(&boot, 22) {
            0 => le32(&boot, 36),
            n => n,
        };
        let root_sectors = (root_entries * ENTRY as u64).div_ceil(sector);
        let data_sector = reserved + fats * fat_sectors + root_sectors;
        let clusters = total
            .checked_sub(data_sector)
            .ok_or_else(|| malformed("the data region starts past the volume's end"))?
            / per_cluster;
        // The FAT type is decided by the count of clusters alone.
        let fat32 = clusters >= 65525;
        let root_start = (reserved + fats * fat_sectors) * sector;
        // The boot sector may claim more clusters than the partition
        // holds: only those that fit are ever read, and they bound the
        // walk of a cluster chain (a chain that loops ends there).
        let len = fs.seek(SeekFrom::End(0))?;
        let fit = len.saturating_sub(data_sector * sector) / (per_cluster * sector);
        Ok(Self {
            cluster_bytes: per_cluster * sector,
            data_start: data_sector * sector,
            clusters: clusters.min(fit),
            fat_start: reserved * sector,
            root_region: (!fat32).then_some((root_start, root_entries * ENTRY as u64)),
            root_cluster: u32::from_le_bytes([boot[44], boot[45], boot[46], boot[47]]),
            fat32,
        })
    }

    fn cluster_offset(&self, cluster: u32) -> io::Result<u64> {
        let index = u64::from(cluster)
            .checked_sub(2)
            .filter(|i| *i < self.clusters)
            .ok_or_else(|| malformed("a cluster number out of range"))?;
        Ok(self.data_start + index * self.cluster_bytes)
    }

    /// The next cluster of a FAT32 chain, or `None` at its end.
    fn next_cluster<F: Read + Seek>(&self, fs: &mut F, cluster: u32) -> io::Result<Option<u32>> {
        let mut entry = [0u8; 4];
        fs.seek(SeekFrom::Start(self.fat_start + u64::from(cluster) * 4))?;
        fs.read_exact(&mut entry)?;
        let next = u32::from_le_bytes(entry) & 0x0fff_ffff;
        Ok((2..0x0fff_fff7).contains(&next).then_some(next))
    }

    /// The root directory as (offset, bytes) runs.
    fn root_runs<F: Read + Seek>(&self, fs: &mut F) -> io::Result<Vec<(u64, u64)>> {
        if let Some(region) = self.root_region {
            return Ok(vec![region]);
        }
        let mut runs = Vec::new();
        let mut cluster = Some(self.root_cluster);
        while let Some(c) = cluster {
            if runs.len() as u64 > self.clusters {
                return Err(malformed("the root directory's cluster chain loops"));
            }
            runs.push((self.cluster_offset(c)?, self.cluster_bytes));
            cluster = self.next_cluster(fs, c)?;
        }
        Ok(runs)
    }
}

/// The first cluster of the directory whose short name is `short_name` in
/// the root directory, if there is one.
fn find_in_root<F: Read + Seek>(
    fs: &mut F,
    volume: &Volume,
    short_name: &[u8; 11],
) -> io::Result<Option<u32>> {
    let mut entry = [0u8; ENTRY];
    for (start, len) in volume.root_runs(fs)? {
        for slot in 0..len / ENTRY as u64 {
            fs.seek(SeekFrom::Start(start + slot * ENTRY as u64))?;
            fs.read_exact(&mut entry)?;
            match entry[0] {
                0 => return Ok(None),
                0xe5 => continue,
                _ => {}
            }
            if entry[11] != ATTR_LONG_NAME
                && entry[11] & ATTR_DIR != 0
                && &entry[..11] == short_name
            {
                let high = if volume.fat32 { le16(&entry, 20) } else { 0 };
                let cluster = (high << 16) | le16(&entry, 26);
                return Ok(u32::try_from(cluster).ok());
            }
        }
    }
    Ok(None)
}

/// Rewrites the first slots of the root directory's directory
/// `short_name` (`SEALCAM    `) as `.`, `..` and two free slots, when
/// `fatfs` left long-name entries ahead of the dot entries. Returns
/// whether it changed anything.
pub fn put_dot_entries_first<F: Read + Write + Seek>(
    fs: &mut F,
    short_name: &[u8; 11],
) -> io::Result<bool> {
    let volume = Volume::read(fs)?;
    let Some(cluster) = find_in_root(fs, &volume, short_name)? else {
        return Ok(false);
    };
    let at = volume.cluster_offset(cluster)?;
    let mut slots = [0u8; 4 * ENTRY];
    fs.seek(SeekFrom::Start(at))?;
    fs.read_exact(&mut slots)?;
    let (long_dot, dot, rest) = (
        &slots[..ENTRY],
        &slots[ENTRY..2 * ENTRY],
        &slots[2 * ENTRY..],
    );
    let (long_dotdot, dotdot) = (&rest[..ENTRY], &rest[ENTRY..]);
    let laid_out_by_fatfs = long_dot[11] == ATTR_LONG_NAME
        && &dot[..11] == DOT
        && long_dotdot[11] == ATTR_LONG_NAME
        && &dotdot[..11] == DOTDOT;
    if !laid_out_by_fatfs {
        return Ok(false);
    }
    let mut fixed = [0u8; 4 * ENTRY];
    fixed[..ENTRY].copy_from_slice(dot);
    fixed[ENTRY..2 * ENTRY].copy_from_slice(dotdot);
    // `..` of a directory in the root names cluster 0, on FAT32 too (where
    // `fatfs` names the root's own cluster).
    for at in [ENTRY + 20, ENTRY + 21, ENTRY + 26, ENTRY + 27] {
        fixed[at] = 0;
    }
    // Free slots, not the end of the directory: entries may follow.
    fixed[2 * ENTRY] = 0xe5;
    fixed[3 * ENTRY] = 0xe5;
    fs.seek(SeekFrom::Start(at))?;
    fs.write_all(&fixed)?;
    fs.flush()?;
    Ok(true)
}
