//! Finding the boot partition of a disk image: the partition table (GPT,
//! else MBR; read by `gptman` and `mbrman`) and, in it, the FAT partition
//! the images name as the boot partition (GPT name `boot`, else FAT label
//! `SEALBOOT`, else the first FAT partition). The image is untrusted bytes:
//! every entry is checked against the image's size before it is used.

use std::io::{Read, Seek, SeekFrom, Write};

use super::window::Window;
use super::CardError;

/// The boot partition's GPT name in the project's images.
pub const GPT_NAME: &str = "boot";
/// The boot partition's FAT volume label in the project's images.
pub const FAT_LABEL: &str = "SEALBOOT";

/// Which kind of partition table an image has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Gpt,
    Mbr,
}

/// A partition, in bytes of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub table: Table,
    /// Its number as `fdisk` shows it (from 1).
    pub number: u64,
    pub start: u64,
    pub len: u64,
    /// The GPT partition name (MBR partitions have none).
    pub name: Option<String>,
}

/// The used partitions that lie wholly inside the image.
pub fn partitions<R: Read + Seek>(image: &mut R) -> Result<(Table, Vec<Partition>), CardError> {
    let size = image.seek(SeekFrom::End(0)).map_err(CardError::Io)?;
    let inside = |start: Option<u64>, len: Option<u64>| match (start, len) {
        (Some(s), Some(l)) if l > 0 && s.checked_add(l).is_some_and(|end| end <= size) => {
            Some((s, l))
        }
        _ => None,
    };
    if let Ok(gpt) = gptman::GPT::find_from(image) {
        let ss = gpt.sector_size;
        let parts = gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .filter_map(|(n, p)| {
                let start = p.starting_lba.checked_mul(ss);
                let len = p
                    .ending_lba
                    .checked_add(1)
                    .and_then(|end| end.checked_sub(p.starting_lba))
                    .and_then(|sectors| sectors.checked_mul(ss));
                inside(start, len).map(|(start, len)| Partition {
                    table: Table::Gpt,
                    number: u64::from(n),
                    start,
                    len,
                    name: Some(p.partition_name.as_str().to_owned()),
                })
            })
            .collect();
        return Ok((Table::Gpt, parts));
    }
    let mbr = mbrman::MBR::read_from(image, 512).map_err(|_| CardError::NoTable)?;
    let parts = mbr
        .iter()
        .filter(|(_, p)| p.is_used())
        .filter_map(|(n, p)| {
            let start = u64::from(p.starting_lba).checked_mul(512);
            let len = u64::from(p.sectors).checked_mul(512);
            inside(start, len).map(|(start, len)| Partition {
                table: Table::Mbr,
                number: n as u64,
                start,
                len,
                name: None,
            })
        })
        .collect();
    Ok((Table::Mbr, parts))
}

/// The FAT volume label of `part`, or `None` when it holds no FAT
/// filesystem.
fn fat_label<F: Read + Write + Seek>(image: &mut F, part: &Partition) -> Option<String> {
    let window = Window::new(&mut *image, part.start, part.len);
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new()).ok()?;
    let label = fs.volume_label().trim().to_owned();
    Some(label)
}

/// The boot partition: GPT name [`GPT_NAME`], else FAT label
/// [`FAT_LABEL`], else the first FAT partition.
pub fn find_boot<F: Read + Write + Seek>(image: &mut F) -> Result<Partition, CardError> {
    let (_, parts) = partitions(image)?;
    let mut fat: Vec<(Partition, String)> = Vec::new();
    for p in parts {
        if let Some(label) = fat_label(image, &p) {
            fat.push((p, label));
        }
    }
    let by_name = fat
        .iter()
        .position(|(p, _)| p.name.as_deref() == Some(GPT_NAME));
    let by_label = fat.iter().position(|(_, l)| l == FAT_LABEL);
    match by_name.or(by_label).or((!fat.is_empty()).then_some(0)) {
        Some(i) => Ok(fat.swap_remove(i).0),
        None => Err(CardError::NoBoot),
    }
}
