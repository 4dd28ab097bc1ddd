//! The endorsement key's public area rebuilt from its certificate, with
//! the TCG default EK templates (TCG EK Credential Profile 2.x, B.3): an
//! EK is a primary key, so its public area is its template with the
//! public key filled in. From it follows the EK's Name, and from that the
//! qualified name the TPM puts in every attestation an AK under that EK
//! signs: the link between the evidence's EK certificate and its AK.

use x509_parser::prelude::X509Certificate;
use x509_parser::public_key::PublicKey as X509Key;

use crate::public::{alg, attr, TpmPublic, NIST_P256, NIST_P384};
use crate::wire::{put_sized, strip_zeros};
use crate::AttestError;

/// TPM_RH_ENDORSEMENT: the qualified name of the endorsement hierarchy.
const ENDORSEMENT_HIERARCHY: u32 = 0x4000_000b;

/// PolicyA for SHA-256: PolicySecret(TPM_RH_ENDORSEMENT), templates L-1, L-2.
const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// PolicyB for SHA-384: PolicyOR of PolicyA and PolicyC, template H-3.
const POLICY_B_SHA384: [u8; 48] = [
    0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
    0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
    0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
];

/// The attributes of every default EK template; the high-range ones add
/// userWithAuth.
const EK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::ADMIN_WITH_POLICY
    | attr::RESTRICTED
    | attr::DECRYPT;

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// `v` left-padded with zeros to `size` bytes (TPMs marshal coordinates
/// and moduli at their full size).
fn padded(v: &[u8], size: usize) -> Option<Vec<u8>> {
    let v = strip_zeros(v);
    let mut out = vec![0u8; size.checked_sub(v.len())?];
    out.extend_from_slice(v);
    Some(out)
}

/// The EK's TPM2B_PUBLIC, from its certificate's key and the default
/// template for that kind of key: L-2 (ECC P-256), H-3 (ECC P-384) or
/// L-1 (RSA 2048).
pub fn ek_public_from_certificate(cert: &X509Certificate<'_>) -> Result<TpmPublic, AttestError> {
    let key = cert
        .public_key()
        .parsed()
        .map_err(|_| AttestError::EkTemplate)?;
    ek_public_from_key(&key)
}

/// The EK's TPM2B_PUBLIC for `key`, see [`ek_public_from_certificate`].
pub(crate) fn ek_public_from_key(key: &X509Key<'_>) -> Result<TpmPublic, AttestError> {
    let unsupported = AttestError::EkTemplate;
    let mut t = Vec::new();
    match key {
        X509Key::EC(point) => {
            let (curve, size, name_alg, attributes, policy, key_bits): (
                u16,
                usize,
                u16,
                u32,
                &[u8],
                u16,
            ) = match point.data().len() {
                65 => (
                    NIST_P256,
                    32,
                    alg::SHA256,
                    EK_ATTRIBUTES,
                    &POLICY_A_SHA256,
                    128,
                ),
                97 => (
                    NIST_P384,
                    48,
                    alg::SHA384,
                    EK_ATTRIBUTES | attr::USER_WITH_AUTH,
                    &POLICY_B_SHA384,
                    256,
                ),
                _ => return Err(unsupported),
            };
            let xy = point.data().get(1..).ok_or(AttestError::EkTemplate)?;
            put_u16(&mut t, alg::ECC);
            put_u16(&mut t, name_alg);
            t.extend_from_slice(&attributes.to_be_bytes());
            put_sized(&mut t, policy)?;
            for v in [alg::AES, key_bits, alg::CFB, alg::NULL, curve, alg::NULL] {
                put_u16(&mut t, v);
            }
            put_sized(&mut t, &xy[..size])?;
            put_sized(&mut t, &xy[size..])?;
        }
        X509Key::RSA(rsa) => {
            let modulus = padded(rsa.modulus, 256).ok_or(AttestError::EkTemplate)?;
            if strip_zeros(rsa.exponent) != [1, 0, 1] {
                return Err(unsupported);
            }
            put_u16(&mut t, alg::RSA);
            put_u16(&mut t, alg::SHA256);
            t.extend_from_slice(&EK_ATTRIBUTES.to_be_bytes());
            put_sized(&mut t, &POLICY_A_SHA256)?;
            for v in [alg::AES, 128, alg::CFB, alg::NULL, 2048] {
                put_u16(&mut t, v);
            }
            t.extend_from_slice(&0u32.to_be_bytes());
            put_sized(&mut t, &modulus)?;
        }
        _ => return Err(unsupported),
    }
    let mut tpm2b = Vec::with_capacity(t.len() + 2);
    put_sized(&mut tpm2b, &t)?;
    TpmPublic::decode(&tpm2b)
}

/// The qualified name of `object`, a child of the object or hierarchy
/// whose qualified name is `parent`: nameAlg ‖ H(parent ‖ Name(object)).
pub fn qualified_name(parent: &[u8], object: &TpmPublic) -> Vec<u8> {
    let mut data = parent.to_vec();
    data.extend_from_slice(&object.name());
    let mut qn = object.name_alg.id().to_be_bytes().to_vec();
    qn.extend_from_slice(&object.name_alg.hash(&data));
    qn
}

/// The qualified name of an attestation key created under the EK.
pub fn ak_qualified_name(ek: &TpmPublic, ak: &TpmPublic) -> Vec<u8> {
    let ek_qn = qualified_name(&ENDORSEMENT_HIERARCHY.to_be_bytes(), ek);
    qualified_name(&ek_qn, ak)
}
