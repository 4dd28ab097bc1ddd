//! TPM 2.0 attestation for the enrolling authority and for verifiers: the
//! half that needs no TPM. Pure Rust, no I/O.
//!
//! A camera proves that its device key lives in a genuine TPM as cloud
//! device provisioning and rust-keylime do: the enrolling authority reads
//! the TPM's endorsement key (EK) and its maker's certificate, makes a
//! credential for a fresh attestation key (AK) that only that TPM can
//! activate, and the AK then certifies the device key (TPM2_Certify). The
//! device side is `sealcam_hal::attest`; this crate is the other side.
//!
//! * [`public`]: TPM2B_PUBLIC (RSA and ECC keys) and an object's Name.
//! * [`certify`]: TPM2_Certify's TPMS_ATTEST and the TPMT_SIGNATURE over it.
//! * [`credential`]: TPM2_MakeCredential in software (KDFa, KDFe, the
//!   seed encrypted to an ECC or RSA EK).
//! * [`ek`]: the EK's public area rebuilt from its certificate, and
//!   qualified names.
//! * [`verify`]: [`verify_evidence`], the offline check of the evidence a
//!   roster record carries, and [`check_ek_certificate`] for enrollment.
//!
//! Cryptography comes from aws-lc-rs, already the project's provider: it
//! has ECDH, AES-CFB, HMAC, RSA-OAEP with a label, and ECDSA and RSA
//! signature checks. x509-parser reads and checks EK certificates.

pub mod certify;
pub mod credential;
mod der;
pub mod ek;
pub mod public;
pub mod verify;
mod wire;

pub use certify::{CertifyInfo, TpmSignature};
pub use credential::{make_credential, Credential};
pub use public::{HashAlg, PublicKey, TpmPublic};
pub use verify::{
    check_ek_certificate, ek_from_certificate, verify_evidence, verify_evidence_unanchored,
};

/// Why TPM evidence or a TPM structure was refused: one variant per check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestError {
    #[error("the {what} ends early; read it again from the TPM (it was cut or is not a {what})")]
    Truncated { what: &'static str },
    #[error(
        "the {what} has {extra} bytes after its end; pass exactly the structure the TPM returned"
    )]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("unsupported {what} {value:#06x}; use an RSA or ECC P-256 key with SHA-256")]
    Unsupported { what: &'static str, value: u16 },
    #[error("a TPM buffer of {len} bytes is longer than a TPM2B can hold")]
    TooLong { len: usize },
    #[error("the attestation does not start with TPM_GENERATED (found {magic:#010x}): the TPM did not produce it")]
    NotTpmGenerated { magic: u32 },
    #[error("the attestation is of type {kind:#06x}, not TPM2_Certify's (0x8017); certify the device key with TPM2_Certify")]
    NotCertify { kind: u16 },
    #[error("the attestation key is not a restricted, fixedTPM signing key, so it could sign anything; create it as an AK in the endorsement hierarchy")]
    AkNotAttestationKey,
    #[error("the signature's algorithm does not match the attestation key (ECDSA-SHA256 for ECC, RSASSA or RSAPSS with SHA-256 for RSA)")]
    SignatureKind,
    #[error("the attestation key's signature over the certify information does not verify: the evidence was altered or signed by another key")]
    AkSignature,
    #[error("the TPM certified another object than the device key in the evidence; certify the device key's own handle")]
    OtherKeyCertified,
    #[error("the certified TPM key is not the device key being enrolled; certify the key at the device's configured handle")]
    NotTheDeviceKey,
    #[error("the device key could leave the TPM (fixedTPM, fixedParent and sensitiveDataOrigin are not all set); provision a new key with `sealcamd provision --force`")]
    KeyExportable,
    #[error("the attestation's qualifying data is not this enrollment's nonce: a replay of older evidence; certify again with the nonce given")]
    NonceMismatch,
    #[error("the EK certificate cannot be read: {0}; check that the TPM's NV holds its maker's DER certificate")]
    EkCertificate(String),
    #[error("the EK certificate (issued by {issuer}) does not chain to a configured TPM manufacturer CA; add that maker's CA certificate if you trust it")]
    EkNotFromManufacturer { issuer: String },
    #[error("the EK certificate's key is not one of the default EK templates' (ECC P-256, ECC P-384, RSA 2048 with exponent 65537)")]
    EkTemplate,
    #[error("the attestation key that signed is not the one in the evidence under the EK of the certificate (the attestation names another signer); use evidence from one enrollment unchanged")]
    AkNotUnderEk,
    #[error("the endorsement key the TPM reported is not the key in its EK certificate; the device is not using its own TPM's EK")]
    EkNotInCertificate,
    #[error(
        "the key given as EK is not a restricted decryption key; pass the TPM's endorsement key"
    )]
    NotAnEk,
    #[error("the endorsement key's public point or modulus is invalid")]
    BadEkPoint,
    #[error("the endorsement key's symmetric algorithm is not AES-128 or AES-256 in CFB mode, as the EK templates have")]
    EkSymmetric,
    #[error("{0} failed in the crypto library")]
    Crypto(&'static str),
}
