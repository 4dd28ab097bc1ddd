//! What can go wrong in the CA, each error with the message the operator or
//! the camera reads.

use std::path::PathBuf;

use sealcam_format::Name;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} already exists; refusing to overwrite (use another directory or remove it)")]
    Exists { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CSR {path} is not acceptable: {reason}")]
    BadCsr { path: PathBuf, reason: CsrError },
    #[error("{path} is unusable: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("consumer {0} is revoked for good; issue a certificate under another name")]
    ConsumerRevoked(String),
    #[error("device {device} is revoked; `sealcam-ca device add {device}` enrolls a replacement under its name")]
    Revoked { device: Name },
    #[error("no TPM evidence is kept for device {device}: it enrolled with a software key, without attestation, or before attestation existed")]
    NoEvidence { device: Name },
    #[error("device {device} has TPM evidence for several keys ({fingerprints}); name one with --fingerprint")]
    AmbiguousEvidence { device: Name, fingerprints: String },
}

/// Why a certificate signing request is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// It does not parse (PEM, DER or the request itself).
    #[error("{0}")]
    Unreadable(String),
    #[error("its signature does not verify: the requester does not hold the key")]
    Signature,
    #[error("it has no common name (the device id)")]
    NoCommonName,
    /// Its common name is not a valid device id.
    #[error(transparent)]
    Name(#[from] sealcam_format::name::InvalidName),
    #[error("the key is not ECDSA P-256")]
    KeyType,
    /// An operator's approval names another key than the request's.
    #[error("its key has fingerprint {actual}, not {expected}: compare with `sealcamd identity` on the camera")]
    Fingerprint { actual: String, expected: String },
}

/// Why an enrollment token was refused. Deliberately terse towards the
/// camera; the ingest logs the detail.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrollment token is unknown or was already used; ask the operator for a new one (`sealcam-ca device add`)")]
    UnknownToken,
    #[error("enrollment token expired; ask the operator for a new one (`sealcam-ca device add`)")]
    Expired,
    #[error("device {0} is revoked; the operator must add it again")]
    Revoked(Name),
    #[error("the certificate request is not acceptable: {0}")]
    BadCsr(CsrError),
    #[error("this fleet requires a genuine TPM: {0}")]
    Ek(EkRefusal),
    #[error("the TPM attestation is refused: {0}")]
    Attestation(crate::AttestRefusal),
    #[error("the request is malformed: {0}")]
    Malformed(String),
    /// Requests without a token are capped and rate-limited (`pending.rs`).
    #[error("{reason}; try again later, or ask the operator for an enrollment token (`sealcam-ca device add`)")]
    Busy {
        reason: String,
        retry_after: std::time::Duration,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Why a fleet that requires a genuine TPM refused a camera's
/// endorsement key (`devices.require_ek_ca`).
#[derive(Debug, thiserror::Error)]
pub enum EkRefusal {
    #[error("the camera sent no endorsement-key certificate (its TPM has none, or the camera is not using a TPM)")]
    Missing,
    #[error("its endorsement-key certificate was not issued by an accepted TPM maker CA")]
    UnknownMaker,
    #[error("the camera sent no TPM attestation of its device key (a software key, or firmware that does not attest); enroll with the key in the TPM")]
    NoAttestation,
}

/// Why a renewal asked for by an ingest was refused.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("the certificate request is not acceptable: {0}")]
    BadCsr(CsrError),
    #[error("the current certificate is not a valid one of this fleet: {0}")]
    NotOurs(String),
    #[error("{presented} may not renew the certificate of device {requested}")]
    OtherDevice { presented: String, requested: Name },
    #[error("the request's key does not match the key of the current certificate (the device key lives in the TPM and does not change)")]
    OtherKey,
    #[error("device {0} is revoked")]
    Revoked(Name),
    #[error(transparent)]
    Pki(#[from] PkiError),
}
