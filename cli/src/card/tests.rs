//! Disk images made in memory (MBR or GPT, FAT made by `fatfs`): the boot
//! partition is found wherever it is, the bundle lands in it and nowhere
//! else, and no image, however broken, makes the reader panic.

use std::io::{Cursor, Read, Seek, SeekFrom};

use proptest::prelude::*;

use super::partition::{find_boot, partitions, Table, FAT_LABEL, GPT_NAME};
use super::window::Window;
use super::{write_image, CardError};

const SECTOR: u64 = 512;
const FAT_SECTORS: u64 = 4096; // 2 MiB: FAT12/16

fn format(image: &mut Cursor<Vec<u8>>, start_lba: u64, label: &[u8; 11]) {
    let w = Window::new(&mut *image, start_lba * SECTOR, FAT_SECTORS * SECTOR);
    fatfs::format_volume(w, fatfs::FormatVolumeOptions::new().volume_label(*label)).unwrap();
}

/// An MBR image: a non-FAT partition first when `other_first`, then a FAT
/// one at `start_lba` labelled `label`.
fn mbr_image(start_lba: u64, other_first: bool, label: &[u8; 11]) -> Cursor<Vec<u8>> {
    let total = start_lba + FAT_SECTORS + 64;
    let mut image = Cursor::new(vec![0u8; (total * SECTOR) as usize]);
    let mut mbr = mbrman::MBR::new_from(&mut image, SECTOR as u32, [1, 2, 3, 4]).unwrap();
    let mut n = 1;
    if other_first {
        mbr[n] = mbrman::MBRPartitionEntry {
            boot: mbrman::BOOT_INACTIVE,
            first_chs: mbrman::CHS::empty(),
            sys: 0x83,
            last_chs: mbrman::CHS::empty(),
            starting_lba: 1,
            sectors: 8,
        };
        n += 1;
    }
    mbr[n] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: 0x0c,
        last_chs: mbrman::CHS::empty(),
        starting_lba: start_lba as u32,
        sectors: FAT_SECTORS as u32,
    };
    mbr.write_into(&mut image).unwrap();
    format(&mut image, start_lba, label);
    image
}

/// A GPT image with two FAT partitions: `other` first, then one named
/// `boot`.
fn gpt_image() -> (Cursor<Vec<u8>>, u64) {
    let total = 2048 + 2 * FAT_SECTORS + 2048;
    let mut image = Cursor::new(vec![0u8; (total * SECTOR) as usize]);
    let mut gpt = gptman::GPT::new_from(&mut image, SECTOR, [7; 16]).unwrap();
    let basic = [
        0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44, 0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99,
        0xc7,
    ];
    let starts = [2048, 2048 + FAT_SECTORS];
    for (i, (name, start)) in ["other", GPT_NAME].iter().zip(starts).enumerate() {
        gpt[i as u32 + 1] = gptman::GPTPartitionEntry {
            partition_type_guid: basic,
            unique_partition_guid: [i as u8 + 1; 16],
            starting_lba: start,
            ending_lba: start + FAT_SECTORS - 1,
            attribute_bits: 0,
            partition_name: (*name).into(),
        };
    }
    gpt.write_into(&mut image).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut image, SECTOR).unwrap();
    format(&mut image, starts[0], b"OTHER      ");
    format(&mut image, starts[1], b"NOTSEAL    ");
    (image, starts[1] * SECTOR)
}

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("sealcamd.toml", b"device_id = \"cam1\"\n".to_vec()),
        ("token", b"tok\n".to_vec()),
    ]
}

/// The file `sealcam/<name>` of the FAT filesystem at `start`.
fn read_back(image: &mut Cursor<Vec<u8>>, start: u64, name: &str) -> Vec<u8> {
    let w = Window::new(&mut *image, start, FAT_SECTORS * SECTOR);
    let fs = fatfs::FileSystem::new(w, fatfs::FsOptions::new()).unwrap();
    let mut f = fs.root_dir().open_file(&format!("sealcam/{name}")).unwrap();
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn gpt_the_partition_named_boot_is_chosen() {
    let (mut image, boot_start) = gpt_image();
    let before = image.get_ref().clone();
    let part = write_image(&mut image, &files()).unwrap();
    assert_eq!(part.table, Table::Gpt);
    assert_eq!((part.number, part.start), (2, boot_start));
    assert_eq!(read_back(&mut image, boot_start, "token"), b"tok\n");
    // Nothing outside the boot partition changed.
    let after = image.get_ref();
    let range = boot_start as usize..(boot_start + FAT_SECTORS * SECTOR) as usize;
    for (i, (a, b)) in before.iter().zip(after).enumerate() {
        if !range.contains(&i) {
            assert_eq!(a, b, "byte {i} outside the boot partition changed");
        }
    }
}

#[test]
fn an_image_without_a_table_or_fat_is_refused() {
    let mut blank = Cursor::new(vec![0u8; 1 << 20]);
    assert!(matches!(
        write_image(&mut blank, &files()),
        Err(CardError::NoTable)
    ));
    let mut image = mbr_image(2048, false, b"SEALBOOT   ");
    // The FAT partition wiped: a table, no FAT.
    let start = (2048 * SECTOR) as usize;
    image.get_mut()[start..start + 4096].fill(0);
    assert!(matches!(
        write_image(&mut image, &files()),
        Err(CardError::NoBoot)
    ));
}

#[test]
fn writing_twice_replaces_the_files() {
    let mut image = mbr_image(2048, false, b"SEALBOOT   ");
    write_image(&mut image, &files()).unwrap();
    let newer = vec![("token", b"second\n".to_vec())];
    write_image(&mut image, &newer).unwrap();
    assert_eq!(read_back(&mut image, 2048 * SECTOR, "token"), b"second\n");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mbr_the_fat_partition_is_found_where_it_is(
        start_lba in 1u64..600,
        other_first in any::<bool>(),
        labelled in any::<bool>(),
    ) {
        // The other partition occupies sectors 1..9.
        let start_lba = if other_first { start_lba + 16 } else { start_lba };
        let label = if labelled { *b"SEALBOOT   " } else { *b"NO NAME    " };
        let mut image = mbr_image(start_lba, other_first, &label);
        let part = write_image(&mut image, &files()).unwrap();
        prop_assert_eq!(part.start, start_lba * SECTOR);
        prop_assert_eq!(part.number, if other_first { 2 } else { 1 });
        prop_assert_eq!(read_back(&mut image, part.start, "sealcamd.toml"), files()[0].1.clone());
        let _ = FAT_LABEL;
    }

    #[test]
    fn any_bytes_are_refused_or_read_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..70_000),
    ) {
        let mut image = Cursor::new(bytes);
        if let Ok((_, parts)) = partitions(&mut image) {
            let size = image.seek(SeekFrom::End(0)).unwrap();
            for p in parts {
                prop_assert!(p.start + p.len <= size);
            }
        }
        let _ = find_boot(&mut image);
    }

    #[test]
    fn a_damaged_image_is_refused_or_written_without_panicking(
        flips in proptest::collection::vec((any::<bool>(), 0usize..(4096 * 512), any::<u8>()), 1..40),
    ) {
        let mut image = mbr_image(8, false, b"SEALBOOT   ");
        let len = image.get_ref().len();
        for (structure, at, b) in flips {
            // Mostly where the structures are: the MBR, then the FAT's
            // boot sector, tables and root directory (its first 16 KiB).
            let at = if structure { at % (8 * 512 + 16384) } else { at % len };
            image.get_mut()[at] ^= b;
        }
        let part = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            find_boot(&mut image)
        }));
        prop_assert!(part.is_ok(), "the reader panicked");
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::write_image_unguarded(&mut image, &files())
        }));
        prop_assert!(written.is_ok(), "the FAT writer panicked");
    }
}

/// A FAT made by `mkfs.vfat -F bits`, as `scripts/image` makes the boot
/// partition, written twice (a second bundle over the first), is left clean
/// for `fsck.vfat`, which systemd runs at the camera's first boot. `fatfs`
/// alone leaves `sealcam/` in a state `fsck.vfat` takes apart (it renames
/// the `.` and `..` entries and deletes them): see `dots.rs`.
fn mkfs_vfat_partition_stays_clean(bits: &str, kib: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fat = dir.path().join("boot.fat");
    let made = std::process::Command::new("mkfs.vfat")
        .args(["-F", bits, "-n", "SEALBOOT", "-C"])
        .arg(&fat)
        .arg(kib)
        .output()
        .expect("mkfs.vfat is installed (dosfstools, scripts/install-deps)");
    assert!(made.status.success(), "{made:?}");
    let len = std::fs::metadata(&fat).unwrap().len();
    let part = super::partition::Partition {
        table: Table::Gpt,
        number: 1,
        start: 0,
        len,
        name: Some(GPT_NAME.into()),
    };
    for _ in 0..2 {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fat)
            .unwrap();
        super::write_fat(&mut file, &part, &files()).unwrap();
    }
    let check = std::process::Command::new("fsck.vfat")
        .arg("-n")
        .arg(&fat)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && !report.contains("sealcam"),
        "fsck.vfat found damage on FAT{bits}: {report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut image = Cursor::new(std::fs::read(&fat).unwrap());
    let w = Window::new(&mut image, 0, len);
    let fs = fatfs::FileSystem::new(w, fatfs::FsOptions::new()).unwrap();
    let mut f = fs.root_dir().open_file("sealcam/token").unwrap();
    let mut token = Vec::new();
    f.read_to_end(&mut token).unwrap();
    assert_eq!(token, b"tok\n");
}

#[test]
fn a_fat16_boot_partition_stays_clean_for_fsck() {
    mkfs_vfat_partition_stays_clean("16", "131072");
}

#[test]
fn a_fat12_boot_partition_stays_clean_for_fsck() {
    mkfs_vfat_partition_stays_clean("12", "4096");
}

#[test]
fn a_fat32_boot_partition_stays_clean_for_fsck() {
    mkfs_vfat_partition_stays_clean("32", "266240");
}

/// A FAT32 boot sector that claims four billion sectors, over a root
/// directory whose cluster chain loops: the repair of `sealcam/` gives up
/// with an error once it has walked every cluster the partition holds,
/// rather than for ever or out of memory.
#[test]
fn a_looping_root_chain_under_an_inflated_boot_sector_ends_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let fat = dir.path().join("boot.fat");
    let made = std::process::Command::new("mkfs.vfat")
        .args(["-F", "32", "-C"])
        .arg(&fat)
        .arg("266240")
        .output()
        .expect("mkfs.vfat is installed (dosfstools, scripts/install-deps)");
    assert!(made.status.success(), "{made:?}");
    let mut bytes = std::fs::read(&fat).unwrap();
    let reserved = usize::from(u16::from_le_bytes([bytes[14], bytes[15]])) * 512;
    bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    // The root's cluster (2) is followed by 3, and 3 by 2 again.
    bytes[reserved + 8..reserved + 12].copy_from_slice(&3u32.to_le_bytes());
    bytes[reserved + 12..reserved + 16].copy_from_slice(&2u32.to_le_bytes());
    // Both clusters full of live entries, so the walk never stops early.
    let per_cluster = usize::from(bytes[13]) * 512;
    let fats = usize::from(bytes[16]);
    let fat_sectors = u32::from_le_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]) as usize;
    let data = reserved + fats * fat_sectors * 512;
    for entry in bytes[data..data + 2 * per_cluster].chunks_mut(32) {
        entry[..11].copy_from_slice(b"SOMEFILETXT");
        entry[11] = 0x20;
    }
    let mut image = Cursor::new(bytes);
    let started = std::time::Instant::now();
    let err = super::dots::put_dot_entries_first(&mut image, b"SEALCAM    ").unwrap_err();
    assert!(err.to_string().contains("loops"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
