//! Durable, create-only storage of sealed fragments in a local directory.
//!
//! ```text
//! <data>/devices/<device>/device.crt                       the device's certificate (PEM)
//! <data>/devices/<device>/streams/<stream>/<seq:020>.scf   one sealed fragment
//! ```
//!
//! A fragment is written to a temp file, fsynced, then hard-linked to its
//! final name, which fails if the name exists: two writers can never clobber
//! each other, and a stored fragment is never changed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sealcam_format::Name;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage {path}: {op} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fragment {device}/{stream}/{sequence} is already stored with different content")]
    Conflict {
        device: Name,
        stream: Name,
        sequence: u64,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// How a put ended.
#[derive(Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// The same bytes were stored before: nothing written.
    AlreadyStored,
}

/// The local fragment store.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

fn names_in(dir: &Path) -> Result<Vec<Name>, StoreError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(|s| Name::new(s).ok()) {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

impl Store {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let devices = root.join("devices");
        fs::create_dir_all(&devices).map_err(io("create", &devices))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn device_dir(&self, device: &Name) -> PathBuf {
        self.root.join("devices").join(device.as_str())
    }

    fn stream_dir(&self, device: &Name, stream: &Name) -> PathBuf {
        self.device_dir(device)
            .join("streams")
            .join(stream.as_str())
    }

    fn fragment_path(&self, device: &Name, stream: &Name, sequence: u64) -> PathBuf {
        self.stream_dir(device, stream)
            .join(format!("{sequence:020}.scf"))
    }

    pub fn get(
        &self,
        device: &Name,
        stream: &Name,
        sequence: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.fragment_path(device, stream, sequence);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Stores a fragment durably, create-only. Idempotent for the same bytes.
    pub fn put(
        &self,
        device: &Name,
        stream: &Name,
        sequence: u64,
        bytes: &[u8],
    ) -> Result<PutOutcome, StoreError> {
        let dir = self.stream_dir(device, stream);
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = self.fragment_path(device, stream, sequence);
        if let Some(existing) = self.get(device, stream, sequence)? {
            return self.compare(existing, bytes, device, stream, sequence);
        }
        let tmp = dir.join(format!(".tmp-{sequence}-{}", std::process::id()));
        let write = || -> Result<(), StoreError> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))
        };
        let result = write().and_then(|()| match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(PutOutcome::Stored),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another writer won the race: same bytes or a conflict.
                let existing = fs::read(&path).map_err(io("read", &path))?;
                self.compare(existing, bytes, device, stream, sequence)
            }
            Err(e) => Err(io("link", &path)(e)),
        });
        let _ = fs::remove_file(&tmp);
        let outcome = result?;
        fsync_dir(&dir)?;
        Ok(outcome)
    }

    fn compare(
        &self,
        existing: Vec<u8>,
        bytes: &[u8],
        device: &Name,
        stream: &Name,
        sequence: u64,
    ) -> Result<PutOutcome, StoreError> {
        if existing == bytes {
            Ok(PutOutcome::AlreadyStored)
        } else {
            Err(StoreError::Conflict {
                device: device.clone(),
                stream: stream.clone(),
                sequence,
            })
        }
    }

    /// Keeps the device's certificate beside its streams, for verifiers.
    pub fn put_device_cert(&self, device: &Name, pem: &str) -> Result<(), StoreError> {
        let dir = self.device_dir(device);
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = dir.join("device.crt");
        if fs::read_to_string(&path).ok().as_deref() == Some(pem) {
            return Ok(());
        }
        let tmp = dir.join(format!(".tmp-device.crt-{}", std::process::id()));
        fs::write(&tmp, pem).map_err(io("write", &tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        fsync_dir(&dir)
    }

    pub fn device_cert(&self, device: &Name) -> Result<Option<String>, StoreError> {
        let path = self.device_dir(device).join("device.crt");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Every (device, stream) with at least a directory.
    pub fn streams(&self) -> Result<Vec<(Name, Name)>, StoreError> {
        let mut out = Vec::new();
        for device in names_in(&self.root.join("devices"))? {
            for stream in names_in(&self.device_dir(&device).join("streams"))? {
                out.push((device.clone(), stream));
            }
        }
        Ok(out)
    }

    /// Sequence numbers stored for a stream, ascending.
    pub fn sequences(&self, device: &Name, stream: &Name) -> Result<Vec<u64>, StoreError> {
        let dir = self.stream_dir(device, stream);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            if let Some(seq) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".scf"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(seq);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_only_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (d, s) = (Name::new("cam").unwrap(), Name::new("front").unwrap());
        assert_eq!(store.put(&d, &s, 1, b"abc").unwrap(), PutOutcome::Stored);
        assert_eq!(
            store.put(&d, &s, 1, b"abc").unwrap(),
            PutOutcome::AlreadyStored
        );
        assert!(matches!(
            store.put(&d, &s, 1, b"abd"),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.get(&d, &s, 1).unwrap().unwrap(), b"abc");
        assert_eq!(store.sequences(&d, &s).unwrap(), vec![1]);
        assert_eq!(store.streams().unwrap(), vec![(d, s)]);
    }
}
