//! A directory of fetched fragments.
//!
//! ```text
//! <dir>/roster.sdr                   the owner-signed device roster (checked
//!                                    against the owner key whenever it is used)
//! <dir>/certs/<serial>.crt           every certificate the device has used
//!                                    (PEM; hints, never the anchor)
//! <dir>/device.crt                   the device certificate the ingest served
//!                                    (PEM; trusted only with --trust-server)
//! <dir>/<sequence:020>.scf           sealed fragments
//! <dir>/restarts/<sequence:020>.scr  signed chain restart records (`crate::restarts`)
//! ```

use std::path::{Path, PathBuf};

use sealcam_format::epochs::verify_chain_with_restarts;
use sealcam_format::roster::DeviceRoster;
use sealcam_format::verify::{ChainReport, DeviceKeys};
use sealcam_format::DeviceVerifyingKey;
use sealcam_transport::{identity, pem};

pub const DEVICE_CERT: &str = "device.crt";
/// The directory of the device's certificate history.
pub const CERTS_DIR: &str = "certs";

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
    #[error("{dir} holds no device certificate ({DEVICE_CERT}) for --trust-server; pass the owner's key (--owner) instead")]
    NoCertificate { dir: PathBuf },
}

/// The fragments of a directory, read into memory, in file-name order.
pub struct FragmentDir {
    pub dir: PathBuf,
    pub files: Vec<(String, Vec<u8>)>,
    /// The certificate the ingest served, if `fetch` saved one.
    pub device_cert_der: Option<Vec<u8>>,
    /// Chain restart records, labelled by path.
    pub restarts: Vec<(String, Vec<u8>)>,
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
        let cert_path = dir.join(DEVICE_CERT);
        let device_cert_der = if cert_path.exists() {
            let certs = pem::load_certs(&cert_path)?;
            certs.first().map(|c| c.as_ref().to_vec())
        } else {
            None
        };
        let restarts =
            crate::restarts::read(dir).map_err(io(&dir.join(crate::restarts::RESTARTS_DIR)))?;
        Ok(Self {
            dir: dir.to_owned(),
            files,
            device_cert_der,
            restarts,
        })
    }

    /// The certificate the ingest served.
    pub fn device_cert(&self) -> Result<&[u8], DirError> {
        self.device_cert_der
            .as_deref()
            .ok_or_else(|| DirError::NoCertificate {
                dir: self.dir.clone(),
            })
    }

    pub fn device_key(&self) -> Result<DeviceVerifyingKey, DirError> {
        Ok(identity::device_key_from_cert_der(self.device_cert()?)?)
    }

    /// Verifies every fragment and the chain: under the key the owner's
    /// roster lists for each fragment, or, without a roster
    /// (`--trust-server` only), under the device certificate.
    pub fn verify(&self, roster: Option<&DeviceRoster>) -> Result<ChainReport, DirError> {
        let key;
        let keys = match roster {
            Some(r) => DeviceKeys::Roster(r),
            None => {
                key = self.device_key()?;
                DeviceKeys::Single(&key)
            }
        };
        Ok(verify_chain_with_restarts(
            self.files.iter().map(|(n, b)| (n.clone(), b.as_slice())),
            self.restarts.iter().map(|(n, b)| (n.clone(), b.as_slice())),
            keys,
        ))
    }
}
