//! Checking a revocation list before it is used: signed by the fleet CA,
//! its CRL number, by which a newer list is told from an older one (an
//! ingest never takes a list older than the one it holds), and its
//! `nextUpdate`, after which it no longer speaks for the present (the CA
//! service issues a fresh one well before; an ingest whose list has
//! expired refuses every client until it has a fresh one).

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Why a revocation list is not taken.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("the revocation list is not PEM: {0}")]
    Pem(String),
    #[error("the revocation list is not a valid X.509 CRL: {0}")]
    Parse(String),
    #[error("the fleet CA certificate does not parse: {0}")]
    Ca(String),
    #[error("the revocation list was not issued by the fleet CA (issuer '{issuer}', CA '{ca}')")]
    Issuer { issuer: String, ca: String },
    #[error("the revocation list's signature does not verify with the fleet CA's key")]
    Signature,
    #[error("the revocation list has no CRL number (or one above 2^64)")]
    NoNumber,
}

fn der_of(pem_text: &[u8]) -> Result<Vec<u8>, CrlError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem_text).map_err(|e| CrlError::Pem(e.to_string()))?;
    if pem.label != "X509 CRL" {
        return Err(CrlError::Pem(format!(
            "expected an 'X509 CRL' block, found '{}'",
            pem.label
        )));
    }
    Ok(pem.contents)
}

/// What a checked list says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// The CRL number: higher is newer.
    pub number: u64,
    /// `nextUpdate` (Unix seconds): when a newer list is due and this one
    /// stops being current. `None` if the list names none.
    pub next_update_unix: Option<i64>,
}

impl CrlInfo {
    fn of(crl: &CertificateRevocationList<'_>) -> Result<Self, CrlError> {
        Ok(Self {
            number: number_of(crl)?,
            next_update_unix: crl.next_update().map(|t| t.timestamp()),
        })
    }

    /// Whether the list is past its `nextUpdate` at `now_unix`.
    pub fn expired_at(&self, now_unix: i64) -> bool {
        self.next_update_unix.is_some_and(|next| now_unix >= next)
    }
}

fn number_of(crl: &CertificateRevocationList<'_>) -> Result<u64, CrlError> {
    let bytes = crl.crl_number().ok_or(CrlError::NoNumber)?.to_bytes_be();
    if bytes.len() > 8 {
        return Err(CrlError::NoNumber);
    }
    Ok(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// The CRL number and `nextUpdate` of a PEM revocation list (its
/// signature unchecked: for the CA's own list only).
pub fn crl_info_of_pem(pem_text: &[u8]) -> Result<CrlInfo, CrlError> {
    let der = der_of(pem_text)?;
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|e| CrlError::Parse(e.to_string()))?;
    CrlInfo::of(&crl)
}

/// Checks that a PEM revocation list was issued and signed by the CA
/// (`ca_der`), and returns its CRL number and `nextUpdate`.
pub fn check_crl(pem_text: &[u8], ca_der: &[u8]) -> Result<CrlInfo, CrlError> {
    let der = der_of(pem_text)?;
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|e| CrlError::Parse(e.to_string()))?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| CrlError::Ca(e.to_string()))?;
    if crl.issuer() != ca.subject() {
        return Err(CrlError::Issuer {
            issuer: crl.issuer().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    crl.verify_signature(ca.public_key())
        .map_err(|_| CrlError::Signature)?;
    CrlInfo::of(&crl)
}
