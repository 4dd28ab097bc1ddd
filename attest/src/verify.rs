//! Checking a device's TPM evidence offline: that the device key is the
//! one TPM2_Certify vouched for, that an attestation key of a genuine TPM
//! signed that statement, and that the TPM's endorsement-key certificate
//! chains to a manufacturer the owner trusts.
//!
//! The AK is bound to the EK certificate by the qualified name the TPM
//! puts in the attestation (the AK under the EK rebuilt from the
//! certificate and the default EK template). What no offline check can
//! show is that the attestation key lives in the same TPM as that
//! endorsement key: the enrolling authority proved that
//! interactively, with [`crate::make_credential`] and the TPM's
//! TPM2_ActivateCredential, and checked the EK against its certificate
//! with [`check_ek_certificate`]. The owner's signature over the roster
//! records that it did.
//!
//! Validity periods are not checked: evidence must still verify when the
//! EK certificate or its CA has long expired, and whether a maker's CA was
//! trusted at enrollment is the owner's decision, recorded in the roster.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use sealcam_format::roster::TpmEvidence;
use sealcam_format::DeviceVerifyingKey;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as X509Key;

use crate::certify::{CertifyInfo, TpmSignature};
use crate::ek::{ak_qualified_name, ek_public_from_certificate};
use crate::public::{alg, attr, PublicKey, TpmPublic};
use crate::wire::strip_zeros;
use crate::AttestError;

/// The attributes that make a key impossible to export: created inside the
/// TPM and never to leave it or its parent.
pub const RESIDENT: u32 = attr::FIXED_TPM | attr::FIXED_PARENT | attr::SENSITIVE_DATA_ORIGIN;

/// Checks TPM evidence for `device_key`: see the module documentation.
/// `nonce`, when given, must be the qualifying data of TPM2_Certify;
/// `manufacturer_roots` are DER certificates of the TPM makers' CAs.
pub fn verify_evidence(
    evidence: &TpmEvidence,
    device_key: &DeviceVerifyingKey,
    nonce: Option<&[u8]>,
    manufacturer_roots: &[Vec<u8>],
) -> Result<(), AttestError> {
    check_evidence(evidence, device_key, nonce, Some(manufacturer_roots))
}

/// [`verify_evidence`] without the maker chain: for an enrolling
/// authority whose fleet names no TPM maker CA (development), which still
/// refuses evidence that does not hold together, and leaves the question of
/// the maker to the owner, who checks it before signing the roster.
pub fn verify_evidence_unanchored(
    evidence: &TpmEvidence,
    device_key: &DeviceVerifyingKey,
    nonce: Option<&[u8]>,
) -> Result<(), AttestError> {
    check_evidence(evidence, device_key, nonce, None)
}

fn check_evidence(
    evidence: &TpmEvidence,
    device_key: &DeviceVerifyingKey,
    nonce: Option<&[u8]>,
    manufacturer_roots: Option<&[Vec<u8>]>,
) -> Result<(), AttestError> {
    let ak = TpmPublic::decode(&evidence.attestation_key)?;
    let key = TpmPublic::decode(&evidence.key_public)?;
    let info = CertifyInfo::decode(&evidence.certify_info)?;
    let sig = TpmSignature::decode(&evidence.certify_signature)?;

    if !ak.has(attr::RESTRICTED | attr::SIGN_ENCRYPT | attr::FIXED_TPM) || ak.has(attr::DECRYPT) {
        return Err(AttestError::AkNotAttestationKey);
    }
    verify_signature(&ak, info.signed_bytes(), &sig)?;
    if info.name != key.name() {
        return Err(AttestError::OtherKeyCertified);
    }
    let expected = device_key.0.to_encoded_point(false);
    if key.p256_point().as_ref().map(|p| &p[..]) != Some(expected.as_bytes()) {
        return Err(AttestError::NotTheDeviceKey);
    }
    if !key.has(RESIDENT) {
        return Err(AttestError::KeyExportable);
    }
    if let Some(nonce) = nonce {
        if info.extra_data != nonce {
            return Err(AttestError::NonceMismatch);
        }
    }
    let cert = parse_certificate(&evidence.ek_certificate)?;
    if let Some(roots) = manufacturer_roots {
        chain_to_roots(&cert, roots)?;
    }
    // The TPM names the signing key's place in its hierarchy in what it
    // signs: this binds every byte of the AK's public area to the EK in
    // the certificate.
    let ek = ek_public_from_certificate(&cert)?;
    if info.qualified_signer != ak_qualified_name(&ek, &ak) {
        return Err(AttestError::AkNotUnderEk);
    }
    Ok(())
}

/// Checks the attestation key's signature over `signed`.
fn verify_signature(ak: &TpmPublic, signed: &[u8], sig: &TpmSignature) -> Result<(), AttestError> {
    let ok = match (&ak.key, sig) {
        (
            PublicKey::Ecc { curve, .. },
            TpmSignature::Ecdsa {
                hash: alg::SHA256,
                r,
                s,
            },
        ) => {
            let point = ak.p256_point().ok_or(AttestError::Unsupported {
                what: "attestation key curve",
                value: *curve,
            })?;
            let (Some(r), Some(s)) = (crate::wire::pad::<32>(r), crate::wire::pad::<32>(s)) else {
                return Err(AttestError::AkSignature);
            };
            let mut rs = [0u8; 64];
            rs[..32].copy_from_slice(&r);
            rs[32..].copy_from_slice(&s);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &rs)
                .is_ok()
        }
        (
            PublicKey::Rsa {
                exponent, modulus, ..
            },
            TpmSignature::RsaSsa {
                hash: alg::SHA256,
                signature: s,
            }
            | TpmSignature::RsaPss {
                hash: alg::SHA256,
                signature: s,
            },
        ) => {
            let params = if matches!(sig, TpmSignature::RsaSsa { .. }) {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            let e = if *exponent == 0 { 65537 } else { *exponent }.to_be_bytes();
            signature::RsaPublicKeyComponents {
                n: strip_zeros(modulus),
                e: strip_zeros(&e),
            }
            .verify(params, signed, s)
            .is_ok()
        }
        _ => return Err(AttestError::SignatureKind),
    };
    if ok {
        Ok(())
    } else {
        Err(AttestError::AkSignature)
    }
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, AttestError> {
    crate::der::check_certificate(der).map_err(|e| AttestError::EkCertificate(e.into()))?;
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(AttestError::EkCertificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(AttestError::EkCertificate(e.to_string())),
    }
}

/// Whether one of `roots` issued and signed `cert`. Each configured
/// certificate is a trust anchor: a maker's root, or the intermediate CA
/// that signs its EK certificates.
fn chain_to_roots(cert: &X509Certificate<'_>, roots: &[Vec<u8>]) -> Result<(), AttestError> {
    for der in roots {
        let Ok(root) = parse_certificate(der) else {
            continue;
        };
        if root.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(Some(root.public_key())).is_ok()
        {
            return Ok(());
        }
    }
    Err(AttestError::EkNotFromManufacturer {
        issuer: cert.issuer().to_string(),
    })
}

/// The endorsement key of an EK certificate (DER), rebuilt with the TCG
/// default template for its kind of key: what an enrolling authority makes
/// a credential for. If the TPM's EK was made otherwise, the TPM cannot
/// activate the credential, and the enrollment fails safe. With
/// `manufacturer_roots`, the certificate must chain to one of them.
pub fn ek_from_certificate(
    ek_certificate: &[u8],
    manufacturer_roots: Option<&[Vec<u8>]>,
) -> Result<TpmPublic, AttestError> {
    let cert = parse_certificate(ek_certificate)?;
    if let Some(roots) = manufacturer_roots {
        chain_to_roots(&cert, roots)?;
    }
    ek_public_from_certificate(&cert)
}

/// For the enrolling authority: checks that `ek` (the endorsement key the
/// TPM reported, to which it then makes the credential) is the key in the
/// EK certificate, and that the certificate chains to `manufacturer_roots`.
pub fn check_ek_certificate(
    ek: &TpmPublic,
    ek_certificate: &[u8],
    manufacturer_roots: &[Vec<u8>],
) -> Result<(), AttestError> {
    let cert = parse_certificate(ek_certificate)?;
    chain_to_roots(&cert, manufacturer_roots)?;
    let parsed = cert
        .public_key()
        .parsed()
        .map_err(|e| AttestError::EkCertificate(e.to_string()))?;
    let same = match (&parsed, &ek.key) {
        (X509Key::EC(point), PublicKey::Ecc { .. }) => {
            ek.ecc_point().as_deref() == Some(point.data())
        }
        (
            X509Key::RSA(rsa),
            PublicKey::Rsa {
                exponent, modulus, ..
            },
        ) => {
            let e = if *exponent == 0 { 65537 } else { *exponent }.to_be_bytes();
            strip_zeros(rsa.modulus) == strip_zeros(modulus)
                && strip_zeros(rsa.exponent) == strip_zeros(&e)
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(AttestError::EkNotInCertificate)
    }
}
