//! Mutual-TLS plumbing shared by the three sealcam programs.
//!
//! * [`tls`]: rustls client and server configurations (TLS 1.3 only, key
//!   exchange preferring the post-quantum hybrid X25519MLKEM768, client
//!   certificates required).
//! * [`identity`]: who a certificate names (a device or a consumer), read
//!   from its `urn:sealcam:` SAN URI.
//! * [`signer`]: a P-256 key that signs somewhere else (a TPM, or the
//!   development software key), usable as a rustls client key.
//! * [`pem`]: loading certificates and keys from files with clear errors.
//! * [`crl`]: a revocation list checked against the fleet CA, and its number.

pub mod crl;
pub mod identity;
pub mod pem;
pub mod signer;
pub mod tls;

pub use identity::{Identity, Role};
pub use signer::{ExternalSigner, SignerError};

/// What went wrong while loading or using TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no {what}: expected a PEM file with a '-----BEGIN {label}-----' block")]
    NoPem {
        path: String,
        what: &'static str,
        label: &'static str,
    },
    #[error("{path} is not valid PEM: {reason}")]
    BadPem { path: String, reason: String },
    #[error("certificate is not valid X.509: {0}")]
    BadCertificate(String),
    #[error("certificate names no sealcam identity: it needs a SAN URI urn:sealcam:device:<id> or urn:sealcam:consumer:<name>")]
    NoIdentity,
    #[error("certificate was not issued by the given CA: {0}")]
    NotIssuedByCa(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS client verifier: {0}")]
    Verifier(String),
}
