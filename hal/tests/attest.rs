//! TPM attestation end to end against a real TPM 2.0 (swtpm manufactured
//! with an ECC EK and its certificate by swtpm's local CA): the device side
//! in `sealcam_hal::attest`, the verifier side in `sealcam_attest`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use sealcam_attest::{
    check_ek_certificate, make_credential, verify_evidence, AttestError, TpmPublic,
};
use sealcam_format::roster::TpmEvidence;
use sealcam_format::DeviceVerifyingKey;
use sealcam_hal::attest::{AttestationKey, EkKind};
use sealcam_hal::tpm::{provision, TpmConfig, TpmError, TpmKey};
use sealcam_system_tests::swtpm::Swtpm;
use sealcam_transport::ExternalSigner;

const NONCE: [u8; 32] = [0x5a; 32];

/// A manufactured TPM with a provisioned device key.
struct Device {
    _dir: tempfile::TempDir,
    _tpm: Swtpm,
    key: TpmKey,
    /// swtpm's local CA that issued the EK certificate, DER.
    roots: Vec<Vec<u8>>,
}

fn pem_to_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    pem.contents
}

fn device() -> Device {
    let dir = tempfile::tempdir().unwrap();
    let (tpm, ca) = Swtpm::start_with_ek(&dir.path().join("state"), &dir.path().join("ca"));
    let cfg = TpmConfig {
        tcti: tpm.tcti(),
        handle: 0x8100_0100,
    };
    provision(&cfg, false).unwrap();
    // The simulator serves one connection: wait until provisioning's is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = loop {
        match TpmKey::open(&cfg) {
            Ok(k) => break k,
            Err(TpmError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{e}"),
        }
    };
    Device {
        roots: vec![pem_to_der(&ca)],
        _dir: dir,
        _tpm: tpm,
        key,
    }
}

/// The enrolling authority's side: checks the EK against its certificate,
/// makes a credential for `made_for`, has `ak` activate it.
fn activate(d: &Device, ak: &AttestationKey, made_for: &[u8]) -> Result<Vec<u8>, TpmError> {
    let endorsement = d.key.endorsement_of(ak.ek).unwrap();
    let ek = TpmPublic::decode(&endorsement.public).unwrap();
    check_ek_certificate(&ek, endorsement.certificate.as_ref().unwrap(), &d.roots).unwrap();
    let secret: [u8; 32] = rand::random();
    let credential = make_credential(&ek, made_for, &secret).unwrap();
    let got = d
        .key
        .activate_credential(ak, &credential.id_object, &credential.encrypted_secret)?;
    assert_eq!(got.as_slice(), secret, "the TPM released another secret");
    Ok(got.to_vec())
}

fn evidence(d: &Device, ak: &AttestationKey) -> TpmEvidence {
    let certified = d.key.certify(ak, &NONCE).unwrap();
    TpmEvidence {
        ek_certificate: d.key.endorsement_of(ak.ek).unwrap().certificate.unwrap(),
        attestation_key: ak.public.clone(),
        key_public: certified.key_public,
        certify_info: certified.certify_info,
        certify_signature: certified.signature,
    }
}

/// A device whose attestation key was activated, and its evidence.
fn enrolled() -> (Device, TpmEvidence) {
    let d = device();
    let ak = d.key.create_attestation_key(EkKind::EccP384).unwrap();
    activate(&d, &ak, &ak.name).unwrap();
    let evidence = evidence(&d, &ak);
    (d, evidence)
}

fn device_key(d: &Device) -> DeviceVerifyingKey {
    DeviceVerifyingKey(d.key.verifying_key())
}

#[test]
fn make_activate_certify_verify() {
    let d = device();
    let ak = d.key.create_attestation_key(EkKind::EccP384).unwrap();
    // Our Name of the AK is the TPM's.
    assert_eq!(TpmPublic::decode(&ak.public).unwrap().name(), ak.name);
    activate(&d, &ak, &ak.name).unwrap();
    let evidence = evidence(&d, &ak);
    verify_evidence(&evidence, &device_key(&d), Some(&NONCE), &d.roots).unwrap();
    // Without a nonce (an offline verifier years later), too.
    verify_evidence(&evidence, &device_key(&d), None, &d.roots).unwrap();
    assert_eq!(
        verify_evidence(&evidence, &device_key(&d), Some(&[1; 32]), &d.roots),
        Err(AttestError::NonceMismatch)
    );
}

#[test]
fn the_preferred_ek_is_the_first_with_a_certificate() {
    let d = device();
    // swtpm has RSA 2048 and ECC P-384 EKs with certificates.
    let preferred = d.key.endorsement().unwrap();
    assert_eq!(preferred.kind, EkKind::EccP384);
    assert!(d
        .key
        .endorsement_of(EkKind::Rsa2048)
        .unwrap()
        .certificate
        .is_some());
    assert_eq!(
        d.key.endorsement_of(EkKind::EccP256).unwrap().certificate,
        None
    );
}

#[test]
fn an_rsa_ek_used_through_its_policy_activates_too() {
    let d = device();
    let ak = d.key.create_attestation_key(EkKind::Rsa2048).unwrap();
    activate(&d, &ak, &ak.name).unwrap();
    let evidence = evidence(&d, &ak);
    verify_evidence(&evidence, &device_key(&d), Some(&NONCE), &d.roots).unwrap();
}

#[test]
fn a_credential_for_another_attestation_key_is_not_activated() {
    let d = device();
    let ak = d.key.create_attestation_key(EkKind::EccP384).unwrap();
    let other = d.key.create_attestation_key(EkKind::EccP384).unwrap();
    assert_ne!(ak.name, other.name);
    let err = activate(&d, &ak, &other.name).unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::Command {
                op: "activate credential",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn certification_by_an_attestation_key_other_than_the_activated_one_is_refused() {
    let d = device();
    let ak = d.key.create_attestation_key(EkKind::EccP384).unwrap();
    activate(&d, &ak, &ak.name).unwrap();
    let other = d.key.create_attestation_key(EkKind::EccP384).unwrap();
    // Signed by `other`, presented as signed by the activated `ak`.
    let mut evidence = evidence(&d, &other);
    evidence.attestation_key = ak.public.clone();
    assert_eq!(
        verify_evidence(&evidence, &device_key(&d), Some(&NONCE), &d.roots),
        Err(AttestError::AkSignature)
    );
}

/// A TPM2B_PUBLIC of a P-256 signing key with the attributes of a resident
/// key, for a key that is not in any TPM.
fn software_key_public(key: &DeviceVerifyingKey) -> Vec<u8> {
    let point = key.0.to_encoded_point(false);
    let mut t = Vec::new();
    t.extend_from_slice(&0x0023u16.to_be_bytes()); // ECC
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
    t.extend_from_slice(&0x0004_0472u32.to_be_bytes()); // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|sign
    t.extend_from_slice(&0u16.to_be_bytes()); // no policy
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // no symmetric
    t.extend_from_slice(&[0x00, 0x18, 0x00, 0x0b]); // ECDSA-SHA256
    t.extend_from_slice(&0x0003u16.to_be_bytes()); // P-256
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // no KDF
    for c in [&point.as_bytes()[1..33], &point.as_bytes()[33..]] {
        t.extend_from_slice(&32u16.to_be_bytes());
        t.extend_from_slice(c);
    }
    let mut out = u16::try_from(t.len()).unwrap().to_be_bytes().to_vec();
    out.extend(t);
    out
}

#[test]
fn evidence_for_another_key_or_a_key_outside_the_tpm_is_refused() {
    let (d, genuine) = enrolled();
    let software = DeviceVerifyingKey(
        *p256::ecdsa::SigningKey::random(&mut rand::thread_rng()).verifying_key(),
    );
    let roots = &d.roots;
    // The TPM's evidence, claimed for a software key.
    assert_eq!(
        verify_evidence(&genuine, &software, Some(&NONCE), roots),
        Err(AttestError::NotTheDeviceKey)
    );
    // The software key's public area in place of the device key's.
    let mut swapped = genuine.clone();
    swapped.key_public = software_key_public(&software);
    assert_eq!(
        verify_evidence(&swapped, &software, Some(&NONCE), roots),
        Err(AttestError::OtherKeyCertified)
    );
}

/// A CA that is no TPM maker: its certificate (DER), and what signs with it.
fn foreign_ca() -> (Vec<u8>, rcgen::Certificate, rcgen::KeyPair) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not a TPM maker");
    let ca = params.self_signed(&ca_key).unwrap();
    (ca.der().to_vec(), ca, ca_key)
}

#[test]
fn an_ek_certificate_from_a_foreign_ca_is_refused() {
    let (d, genuine) = enrolled();
    let (foreign_root, ca, ca_key) = foreign_ca();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let mut forged = genuine.clone();
    forged.ek_certificate = leaf.der().to_vec();
    // A certificate from a CA nobody configured.
    assert!(matches!(
        verify_evidence(&forged, &device_key(&d), Some(&NONCE), &d.roots),
        Err(AttestError::EkNotFromManufacturer { .. })
    ));
    // swtpm's genuine certificate, when only the foreign CA is trusted.
    assert!(matches!(
        verify_evidence(
            &genuine,
            &device_key(&d),
            Some(&NONCE),
            std::slice::from_ref(&foreign_root)
        ),
        Err(AttestError::EkNotFromManufacturer { .. })
    ));
    // The foreign CA trusted, its certificate is for another key than the EK.
    let ek = TpmPublic::decode(&d.key.endorsement_of(EkKind::EccP384).unwrap().public).unwrap();
    assert_eq!(
        check_ek_certificate(&ek, &forged.ek_certificate, &[foreign_root]),
        Err(AttestError::EkNotInCertificate)
    );
}

#[test]
fn a_flipped_byte_anywhere_in_the_evidence_is_refused() {
    let (d, genuine) = enrolled();
    let key = device_key(&d);
    let roots = &d.roots;
    verify_evidence(&genuine, &key, Some(&NONCE), roots).unwrap();
    type Field = fn(&mut TpmEvidence) -> &mut Vec<u8>;
    let fields: [(&str, Field); 5] = [
        ("ek_certificate", |e| &mut e.ek_certificate),
        ("attestation_key", |e| &mut e.attestation_key),
        ("key_public", |e| &mut e.key_public),
        ("certify_info", |e| &mut e.certify_info),
        ("certify_signature", |e| &mut e.certify_signature),
    ];
    for (name, field) in fields {
        for i in 0..field(&mut genuine.clone()).len() {
            let mut bad = genuine.clone();
            field(&mut bad)[i] ^= 0x01;
            assert!(
                verify_evidence(&bad, &key, Some(&NONCE), roots).is_err(),
                "a flipped bit in byte {i} of {name} was accepted"
            );
        }
    }
}
