//! A directory of fetched fragments.
//!
//! ```text
//! <dir>/device.crt                   the device certificate (PEM)
//! <dir>/<sequence:020>.scf           sealed fragments
//! ```

use std::path::{Path, PathBuf};

use sealcam_format::verify::{verify_chain, ChainReport};
use sealcam_format::DeviceVerifyingKey;
use sealcam_transport::{identity, pem};

pub const DEVICE_CERT: &str = "device.crt";

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir} holds no fragments (*.scf); fetch some with `sealcam fetch`")]
    Empty { dir: PathBuf },
    #[error("device certificate: {0}")]
    Certificate(#[from] sealcam_transport::TransportError),
}

/// The fragments of a directory, read into memory, in file-name order.
pub struct FragmentDir {
    pub dir: PathBuf,
    pub files: Vec<(String, Vec<u8>)>,
    pub device_cert_der: Vec<u8>,
}

impl FragmentDir {
    pub fn read(dir: &Path) -> Result<Self, DirError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DirError::Io { path, source }
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".scf") {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(DirError::Empty {
                dir: dir.to_owned(),
            });
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            files.push((name, bytes));
        }
        let certs = pem::load_certs(&dir.join(DEVICE_CERT))?;
        Ok(Self {
            dir: dir.to_owned(),
            files,
            device_cert_der: certs[0].as_ref().to_vec(),
        })
    }

    pub fn device_key(&self) -> Result<DeviceVerifyingKey, DirError> {
        Ok(identity::device_key_from_cert_der(&self.device_cert_der)?)
    }

    /// Verifies every fragment and the chain under the device certificate.
    pub fn verify(&self) -> Result<ChainReport, DirError> {
        let key = self.device_key()?;
        Ok(verify_chain(
            self.files.iter().map(|(n, b)| (n.clone(), b.as_slice())),
            &key,
        ))
    }
}
