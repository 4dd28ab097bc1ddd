//! verify_evidence against evidence made in software: a TPM model whose
//! EK certificate, attestation key and device key are all ours, so every
//! check can be made to fail on its own and must name its reason. (The
//! same flow against a real TPM is `hal/tests/attest.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sealcam_attest::ek::{ak_qualified_name, ek_public_from_certificate};
use sealcam_attest::{verify_evidence, AttestError, TpmPublic};
use sealcam_format::roster::TpmEvidence;
use sealcam_format::DeviceVerifyingKey;
use x509_parser::prelude::{FromDer, X509Certificate};

const AK_ATTRIBUTES: u32 = 0x0005_0072; // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign
const KEY_ATTRIBUTES: u32 = 0x0004_0472; // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|sign
const NONCE: &[u8] = b"enrollment nonce";

fn sized(v: &[u8]) -> Vec<u8> {
    [&u16::try_from(v.len()).unwrap().to_be_bytes()[..], v].concat()
}

/// TPM2B_PUBLIC of a P-256 ECDSA key with `attributes`.
fn p256_public(attributes: u32, point: &[u8]) -> Vec<u8> {
    let mut t = vec![0x00, 0x23, 0x00, 0x0b];
    t.extend_from_slice(&attributes.to_be_bytes());
    t.extend(sized(&[]));
    t.extend_from_slice(&[0x00, 0x10, 0x00, 0x18, 0x00, 0x0b, 0x00, 0x03, 0x00, 0x10]);
    t.extend(sized(&point[1..33]));
    t.extend(sized(&point[33..]));
    sized(&t)
}

/// Everything a software TPM needs to make evidence.
struct Model {
    root: Vec<u8>,
    ek_certificate: Vec<u8>,
    ak: EcdsaKeyPair,
    ak_attributes: u32,
    key: EcdsaKeyPair,
    key_attributes: u32,
}

impl Model {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let ek_key = rcgen::KeyPair::generate().unwrap();
        let ek = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .signed_by(&ek_key, &ca, &ca_key)
            .unwrap();
        let generate = || EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            root: ca.der().to_vec(),
            ek_certificate: ek.der().to_vec(),
            ak: generate(),
            ak_attributes: AK_ATTRIBUTES,
            key: generate(),
            key_attributes: KEY_ATTRIBUTES,
        }
    }

    fn device_key(&self) -> DeviceVerifyingKey {
        DeviceVerifyingKey::from_sec1(self.key.public_key().as_ref()).unwrap()
    }

    /// TPM2_Certify of the device key by the AK, as a TPM would sign it.
    fn evidence_with(&self, edit: impl FnOnce(&mut Attest)) -> TpmEvidence {
        let ak_public = p256_public(self.ak_attributes, self.ak.public_key().as_ref());
        let key_public = p256_public(self.key_attributes, self.key.public_key().as_ref());
        let (_, cert) = X509Certificate::from_der(&self.ek_certificate).unwrap();
        let ek = ek_public_from_certificate(&cert).unwrap();
        let ak = TpmPublic::decode(&ak_public).unwrap();
        let mut a = Attest {
            magic: 0xff54_4347,
            kind: 0x8017,
            signer: ak_qualified_name(&ek, &ak),
            extra: NONCE.to_vec(),
            name: TpmPublic::decode(&key_public).unwrap().name(),
        };
        edit(&mut a);
        let mut body = [
            a.magic.to_be_bytes().to_vec(),
            a.kind.to_be_bytes().to_vec(),
        ]
        .concat();
        body.extend(sized(&a.signer));
        body.extend(sized(&a.extra));
        body.extend_from_slice(&[0; 25]); // clock info, firmware version
        body.extend(sized(&a.name));
        body.extend(sized(&[]));
        let sig = self.ak.sign(&SystemRandom::new(), &body).unwrap();
        let mut signature = vec![0x00, 0x18, 0x00, 0x0b];
        signature.extend(sized(&sig.as_ref()[..32]));
        signature.extend(sized(&sig.as_ref()[32..]));
        TpmEvidence {
            ek_certificate: self.ek_certificate.clone(),
            attestation_key: ak_public,
            key_public,
            certify_info: sized(&body),
            certify_signature: signature,
        }
    }

    fn verify(&self, evidence: &TpmEvidence) -> Result<(), AttestError> {
        verify_evidence(
            evidence,
            &self.device_key(),
            Some(NONCE),
            std::slice::from_ref(&self.root),
        )
    }
}

/// The fields of TPMS_ATTEST a test may change before the AK signs.
struct Attest {
    magic: u32,
    kind: u16,
    signer: Vec<u8>,
    extra: Vec<u8>,
    name: Vec<u8>,
}

#[test]
fn genuine_evidence_verifies() {
    let m = Model::new();
    m.verify(&m.evidence_with(|_| {})).unwrap();
}

#[test]
fn each_check_refuses_with_its_own_reason() {
    let m = Model::new();
    type Case = (&'static str, fn(&mut Attest), AttestError);
    let cases: [Case; 4] = [
        (
            "another nonce",
            |a| a.extra = b"old".to_vec(),
            AttestError::NonceMismatch,
        ),
        (
            "another object",
            |a| a.name[5] ^= 1,
            AttestError::OtherKeyCertified,
        ),
        (
            "another signer",
            |a| a.signer[5] ^= 1,
            AttestError::AkNotUnderEk,
        ),
        (
            "a quote",
            |a| a.kind = 0x8018,
            AttestError::NotCertify { kind: 0x8018 },
        ),
    ];
    for (what, edit, expected) in cases {
        assert_eq!(m.verify(&m.evidence_with(edit)), Err(expected), "{what}");
    }
    let mut forged = m.evidence_with(|_| {});
    forged.certify_info[20] ^= 1;
    assert_eq!(m.verify(&forged), Err(AttestError::AkSignature));
}

#[test]
fn an_ak_that_could_sign_anything_or_a_key_that_could_leave_is_refused() {
    let mut m = Model::new();
    m.ak_attributes &= !0x0001_0000; // not restricted
    let ak = m.verify(&m.evidence_with(|_| {}));
    m.ak_attributes = AK_ATTRIBUTES;
    m.key_attributes &= !0x0000_0002; // not fixedTPM
    let key = m.verify(&m.evidence_with(|_| {}));
    assert_eq!(ak, Err(AttestError::AkNotAttestationKey));
    assert_eq!(key, Err(AttestError::KeyExportable));
}

#[test]
fn an_rsa_signature_from_an_ecc_ak_is_refused() {
    let m = Model::new();
    let mut evidence = m.evidence_with(|_| {});
    // RSASSA-SHA256 with a 2048-bit signature.
    evidence.certify_signature = [&[0x00, 0x14, 0x00, 0x0b][..], &sized(&[1; 256])].concat();
    assert_eq!(m.verify(&evidence), Err(AttestError::SignatureKind));
}

#[test]
fn without_a_nonce_the_nonce_is_not_checked() {
    let m = Model::new();
    let evidence = m.evidence_with(|a| a.extra.clear());
    verify_evidence(
        &evidence,
        &m.device_key(),
        None,
        std::slice::from_ref(&m.root),
    )
    .unwrap();
}
