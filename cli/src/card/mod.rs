//! `sealcam card write`: a provisioning bundle (`docs/ref/provisioning.md`)
//! written onto a camera's card, either into its mounted boot partition or
//! straight into an uncompressed disk image file, without root or loop
//! devices. The bundle is checked first, by the same code `sealcamd
//! firstboot` checks it with on the camera ([`sealcamd::firstboot::bundle`]).

mod dots;
pub mod partition;
pub mod window;

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sealcam_base::durable::{self, DurableError};
use sealcamd::firstboot::bundle::{BundleError, DIR_NAME};

pub use partition::{find_boot, Partition};
use window::Window;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("no partition table (GPT or MBR) found: give an uncompressed disk image (unxz or gunzip it first), or the mounted boot partition with --boot")]
    NoTable,
    #[error("no FAT partition found: the boot partition of a sealcam image is FAT (GPT name `boot`, label SEALBOOT)")]
    NoBoot,
    #[error("writing the bundle into the boot partition's FAT filesystem: {0}")]
    Fat(#[source] std::io::Error),
    #[error(
        "the image's partition table or FAT filesystem is malformed (its reader gave up on it)"
    )]
    Malformed,
    #[error("{path} is not a directory: give the mounted boot partition")]
    NotDir { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Durable(#[from] DurableError),
}

/// A bundle's files: name and contents.
pub type Files<'a> = &'a [(&'static str, Vec<u8>)];

/// Writes `files` into `<boot>/sealcam/`, each durably; returns that
/// directory.
pub fn write_dir(boot: &Path, files: Files<'_>) -> Result<PathBuf, CardError> {
    if !boot.is_dir() {
        return Err(CardError::NotDir {
            path: boot.to_owned(),
        });
    }
    let dir = boot.join(DIR_NAME);
    std::fs::create_dir_all(&dir).map_err(|source| CardError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    durable::sync_dir(boot)?;
    for (name, bytes) in files {
        durable::replace(&dir.join(name), bytes)?;
    }
    Ok(dir)
}

fn write_fat<F: Read + Write + Seek>(
    image: &mut F,
    part: &Partition,
    files: Files<'_>,
) -> std::io::Result<()> {
    let created = {
        let window = Window::new(&mut *image, part.start, part.len);
        let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new())?;
        let created = fs.root_dir().open_dir(DIR_NAME).is_err();
        if created {
            fs.root_dir().create_dir(DIR_NAME)?;
        }
        fs.unmount()?;
        created
    };
    if created {
        let mut window = Window::new(&mut *image, part.start, part.len);
        dots::put_dot_entries_first(&mut window, &short_name(DIR_NAME))?;
    }
    let window = Window::new(&mut *image, part.start, part.len);
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new())?;
    {
        let dir = fs.root_dir().open_dir(DIR_NAME)?;
        for (name, bytes) in files {
            let mut f = dir.create_file(name)?;
            f.truncate()?;
            f.write_all(bytes)?;
            f.flush()?;
        }
    }
    fs.unmount()
}

/// The 8.3 name FAT stores for `name`, a name of at most eight letters
/// without a dot (`sealcam`): upper case, padded with spaces.
fn short_name(name: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b.to_ascii_uppercase();
    }
    out
}

/// Writes `files` into `sealcam/` of the boot partition of the disk image
/// `image` ([`find_boot`]); returns the partition.
pub fn write_image<F: Read + Write + Seek>(
    image: &mut F,
    files: Files<'_>,
) -> Result<Partition, CardError> {
    // The readers of partition tables and FAT are libraries fed untrusted
    // bytes: should one of them panic, the image is refused, not the
    // program aborted.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        write_image_unguarded(image, files)
    }))
    .unwrap_or(Err(CardError::Malformed))
}

/// [`write_image`] without its guard against the libraries' panics: for
/// the fuzz target, which must see them.
pub fn write_image_unguarded<F: Read + Write + Seek>(
    image: &mut F,
    files: Files<'_>,
) -> Result<Partition, CardError> {
    let part = find_boot(image)?;
    write_fat(image, &part, files).map_err(CardError::Fat)?;
    Ok(part)
}

/// [`write_image`] on the image file at `path`, flushed to disk.
pub fn write_image_file(path: &Path, files: Files<'_>) -> Result<Partition, CardError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(CardError::Io)?;
    let part = write_image(&mut file, files)?;
    file.sync_all().map_err(CardError::Io)?;
    Ok(part)
}

#[cfg(test)]
mod tests;
