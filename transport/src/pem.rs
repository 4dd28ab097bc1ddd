//! Reading certificates and keys from PEM files.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TransportError;

fn read(path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// All certificates in a PEM file, in order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::BadPem {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TransportError::NoPem {
            path: path.display().to_string(),
            what: "certificate",
            label: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TransportError::NoPem {
            path: path.display().to_string(),
            what: "private key",
            label: "PRIVATE KEY",
        },
        e => TransportError::BadPem {
            path: path.display().to_string(),
            reason: e.to_string(),
        },
    })
}

/// A root store holding every certificate of a CA file.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Encodes a DER certificate as PEM.
pub fn cert_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// All CRLs in a PEM file; none if the file does not exist.
pub fn load_crls(
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, TransportError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TransportError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::BadPem {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The first certificate of a PEM string, DER.
pub fn parse_first_cert(pem_text: &str) -> Result<Vec<u8>, TransportError> {
    CertificateDer::pem_slice_iter(pem_text.as_bytes())
        .next()
        .ok_or(TransportError::NoPem {
            path: "(response)".into(),
            what: "certificate",
            label: "CERTIFICATE",
        })?
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| TransportError::BadPem {
            path: "(response)".into(),
            reason: e.to_string(),
        })
}
