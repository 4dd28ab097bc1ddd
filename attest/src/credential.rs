//! TPM2_MakeCredential in software (TPM 2.0 Part 1, "Credential
//! Protection", §24 in version 1.59), for the enrolling authority.
//!
//! The authority encrypts a secret so that only the TPM holding the
//! endorsement key, and only for an object with the given Name (the
//! attestation key), gives it back through TPM2_ActivateCredential:
//!
//! 1. a seed, encrypted to the EK: for an ECC EK, ECDH between a fresh
//!    ephemeral key and the EK, and `seed = KDFe(nameAlg, Z, "IDENTITY",
//!    ephemeral.x, ek.x)`, the encrypted secret being the ephemeral point;
//!    for an RSA EK, a random seed under RSA-OAEP(nameAlg) with the label
//!    "IDENTITY\0";
//! 2. `symKey = KDFa(nameAlg, seed, "STORAGE", akName, "", ek.keyBits)`,
//!    and the secret (as a TPM2B) encrypted with AES-CFB under it, IV zero;
//! 3. `hmacKey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digestBits)` and
//!    `outerHMAC = HMAC(hmacKey, encIdentity ‖ akName)`;
//! 4. TPM2B_ID_OBJECT = TPM2B(TPM2B(outerHMAC) ‖ encIdentity).

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{agreement, hmac, rand, rsa};

use crate::public::{alg, HashAlg, PublicKey, TpmPublic, NIST_P256, NIST_P384};
use crate::wire::{put_sized, strip_zeros};
use crate::AttestError;

/// What TPM2_ActivateCredential takes: the credential blob and the seed
/// encrypted to the EK, both marshalled as the TPM expects them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET.
    pub encrypted_secret: Vec<u8>,
}

/// KDFa (Part 1, §11.4.10.2): HMAC-based counter-mode KDF (SP 800-108).
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let key = hmac::Key::new(hash.hmac_alg(), key);
    expand(bits, |counter| {
        let mut ctx = hmac::Context::with_key(&key);
        for part in [
            &counter[..],
            label.as_bytes(),
            &[0],
            context_u,
            context_v,
            &bits.to_be_bytes(),
        ] {
            ctx.update(part);
        }
        ctx.sign().as_ref().to_vec()
    })
}

/// KDFe (Part 1, §11.4.10.3): the hash-based KDF of SP 800-56A for ECDH.
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    expand(bits, |counter| {
        let mut ctx = aws_lc_rs::digest::Context::new(hash.digest_alg());
        for part in [&counter[..], z, label.as_bytes(), &[0], party_u, party_v] {
            ctx.update(part);
        }
        ctx.finish().as_ref().to_vec()
    })
}

/// Concatenates `block(counter)` for counter = 1, 2, ... up to `bits`.
fn expand(bits: u32, mut block: impl FnMut(&[u8; 4]) -> Vec<u8>) -> Vec<u8> {
    let want = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(want);
    let mut counter: u32 = 1;
    while out.len() < want {
        out.extend_from_slice(&block(&counter.to_be_bytes()));
        counter = counter.wrapping_add(1);
    }
    out.truncate(want);
    out
}

/// Makes the credential that the TPM holding `ek` releases as `secret`
/// only to the object named `ak_name`.
pub fn make_credential(
    ek: &TpmPublic,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<Credential, AttestError> {
    check_ek(ek)?;
    let (seed, encrypted) = seed(ek)?;
    protect(ek, &seed, &encrypted, ak_name, secret)
}

/// An EK must be a restricted decryption key with an AES-CFB storage
/// algorithm: the only kind TPM2_ActivateCredential accepts.
fn check_ek(ek: &TpmPublic) -> Result<(), AttestError> {
    use crate::public::attr;
    if !ek.has(attr::RESTRICTED | attr::DECRYPT) || ek.has(attr::SIGN_ENCRYPT) {
        return Err(AttestError::NotAnEk);
    }
    Ok(())
}

/// The seed and its encryption to the EK.
fn seed(ek: &TpmPublic) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
    let bits = u32::try_from(ek.name_alg.size() * 8).unwrap_or(u32::MAX);
    match &ek.key {
        PublicKey::Ecc { curve, x, .. } => {
            let (algorithm, size) = match *curve {
                NIST_P256 => (&agreement::ECDH_P256, 32),
                NIST_P384 => (&agreement::ECDH_P384, 48),
                value => {
                    return Err(AttestError::Unsupported {
                        what: "EK curve",
                        value,
                    })
                }
            };
            let point = ek.ecc_point().ok_or(AttestError::BadEkPoint)?;
            let ephemeral = agreement::PrivateKey::generate(algorithm)
                .map_err(|_| AttestError::Crypto("ECDH key generation"))?;
            let public = ephemeral
                .compute_public_key()
                .map_err(|_| AttestError::Crypto("ECDH public key"))?;
            let (ex, ey) = public.as_ref()[1..].split_at(size);
            let seed = agreement::agree(
                &ephemeral,
                agreement::UnparsedPublicKey::new(algorithm, point),
                AttestError::BadEkPoint,
                |z| Ok(kdfe(ek.name_alg, z, "IDENTITY", ex, x, bits)),
            )?;
            let mut point = Vec::with_capacity(2 * size + 4);
            put_sized(&mut point, ex)?;
            put_sized(&mut point, ey)?;
            let mut encrypted = Vec::with_capacity(2 * size + 6);
            put_sized(&mut encrypted, &point)?;
            Ok((seed, encrypted))
        }
        PublicKey::Rsa {
            exponent, modulus, ..
        } => {
            let mut seed = vec![0u8; ek.name_alg.size()];
            rand::fill(&mut seed).map_err(|_| AttestError::Crypto("random seed"))?;
            let e = if *exponent == 0 { 65537 } else { *exponent };
            let key: rsa::PublicEncryptingKey = rsa::PublicKeyComponents {
                n: strip_zeros(modulus),
                e: strip_zeros(&e.to_be_bytes()),
            }
            .try_into()
            .map_err(|_| AttestError::BadEkPoint)?;
            let oaep = rsa::OaepPublicEncryptingKey::new(key)
                .map_err(|_| AttestError::Crypto("RSA key"))?;
            let algorithm = match ek.name_alg {
                HashAlg::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
                HashAlg::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
                HashAlg::Sha384 => &rsa::OAEP_SHA384_MGF1SHA384,
                HashAlg::Sha512 => &rsa::OAEP_SHA512_MGF1SHA512,
            };
            let mut out = vec![0u8; oaep.ciphertext_size()];
            let ciphertext = oaep
                .encrypt(algorithm, &seed, &mut out, Some(b"IDENTITY\0"))
                .map_err(|_| AttestError::Crypto("RSA-OAEP"))?;
            let mut encrypted = Vec::with_capacity(ciphertext.len() + 2);
            put_sized(&mut encrypted, ciphertext)?;
            Ok((seed, encrypted))
        }
    }
}

/// Steps 2 to 4: the secret encrypted and sealed under keys from the seed.
fn protect(
    ek: &TpmPublic,
    seed: &[u8],
    encrypted_secret: &[u8],
    ak_name: &[u8],
    secret: &[u8],
) -> Result<Credential, AttestError> {
    let symmetric = match &ek.key {
        PublicKey::Ecc { symmetric, .. } | PublicKey::Rsa { symmetric, .. } => *symmetric,
    };
    let (cipher, bits) = match symmetric {
        Some(s) if s.alg == alg::AES && s.mode == alg::CFB && s.key_bits == 128 => (&AES_128, 128),
        Some(s) if s.alg == alg::AES && s.mode == alg::CFB && s.key_bits == 256 => (&AES_256, 256),
        _ => return Err(AttestError::EkSymmetric),
    };
    let sym_key = kdfa(ek.name_alg, seed, "STORAGE", ak_name, &[], bits);
    let mut enc_identity = Vec::with_capacity(secret.len() + 2);
    put_sized(&mut enc_identity, secret)?;
    let key =
        UnboundCipherKey::new(cipher, &sym_key).map_err(|_| AttestError::Crypto("AES key"))?;
    EncryptingKey::cfb128(key)
        .and_then(|k| {
            k.less_safe_encrypt(
                &mut enc_identity,
                EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
            )
        })
        .map_err(|_| AttestError::Crypto("AES-CFB"))?;
    let digest_bits = u32::try_from(ek.name_alg.size() * 8).unwrap_or(u32::MAX);
    let hmac_key = kdfa(ek.name_alg, seed, "INTEGRITY", &[], &[], digest_bits);
    let mut mac = hmac::Context::with_key(&hmac::Key::new(ek.name_alg.hmac_alg(), &hmac_key));
    mac.update(&enc_identity);
    mac.update(ak_name);
    let mut blob = Vec::with_capacity(enc_identity.len() + 2 + ek.name_alg.size());
    put_sized(&mut blob, mac.sign().as_ref())?;
    blob.extend_from_slice(&enc_identity);
    let mut id_object = Vec::with_capacity(blob.len() + 2);
    put_sized(&mut id_object, &blob)?;
    Ok(Credential {
        id_object,
        encrypted_secret: encrypted_secret.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext};
    use aws_lc_rs::encoding::AsDer;
    use proptest::prelude::*;
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;

    use super::*;
    use crate::ek::ek_public_from_key;
    use crate::wire::{unwrap_sized, Reader};

    /// An EK in software: its public area and how to recover the seed.
    enum SoftEk {
        Ecc(agreement::PrivateKey, TpmPublic),
        Rsa(rsa::PrivateDecryptingKey, TpmPublic),
    }

    impl SoftEk {
        fn public(&self) -> &TpmPublic {
            match self {
                SoftEk::Ecc(_, p) | SoftEk::Rsa(_, p) => p,
            }
        }

        fn ecc(curve: &'static agreement::Algorithm) -> Self {
            let private = agreement::PrivateKey::generate(curve).unwrap();
            let point = private.compute_public_key().unwrap().as_ref().to_vec();
            let key = x509_parser::public_key::PublicKey::EC(
                x509_parser::public_key::ECPoint::from(point.as_slice()),
            );
            SoftEk::Ecc(private, ek_public_from_key(&key).unwrap())
        }

        fn rsa() -> Self {
            let private = rsa::PrivateDecryptingKey::generate(rsa::KeySize::Rsa2048).unwrap();
            let spki = private.public_key().as_der().unwrap();
            let (_, spki) = SubjectPublicKeyInfo::from_der(spki.as_ref()).unwrap();
            let public = ek_public_from_key(&spki.parsed().unwrap()).unwrap();
            SoftEk::Rsa(private, public)
        }

        /// TPM2_ActivateCredential, in software.
        fn activate(&self, ak_name: &[u8], c: &Credential) -> Result<Vec<u8>, &'static str> {
            let ek = self.public();
            let bits = u32::try_from(ek.name_alg.size() * 8).unwrap();
            let encrypted = unwrap_sized(&c.encrypted_secret, "secret").unwrap();
            let seed = match (self, &ek.key) {
                (SoftEk::Ecc(private, _), PublicKey::Ecc { x, .. }) => {
                    let mut r = Reader::new(encrypted, "point");
                    let (ex, ey) = (r.sized().unwrap(), r.sized().unwrap());
                    let point = [&[4u8][..], ex, ey].concat();
                    agreement::agree(
                        private,
                        agreement::UnparsedPublicKey::new(private.algorithm(), point),
                        "ECDH",
                        |z| Ok(kdfe(ek.name_alg, z, "IDENTITY", ex, x, bits)),
                    )?
                }
                (SoftEk::Rsa(private, _), _) => {
                    let oaep = rsa::OaepPrivateDecryptingKey::new(private.clone()).unwrap();
                    let mut out = vec![0u8; oaep.min_output_size()];
                    let seed = oaep
                        .decrypt(
                            &rsa::OAEP_SHA256_MGF1SHA256,
                            encrypted,
                            &mut out,
                            Some(b"IDENTITY\0"),
                        )
                        .map_err(|_| "OAEP")?;
                    seed.to_vec()
                }
                _ => unreachable!(),
            };
            let blob = unwrap_sized(&c.id_object, "id").map_err(|_| "id object")?;
            let mut r = Reader::new(blob, "id");
            let mac = r.sized().map_err(|_| "id object")?;
            let enc = r.take(blob.len() - 2 - mac.len()).unwrap();
            let hmac_key = kdfa(ek.name_alg, &seed, "INTEGRITY", &[], &[], bits);
            let key = hmac::Key::new(ek.name_alg.hmac_alg(), &hmac_key);
            hmac::verify(&key, &[enc, ak_name].concat(), mac).map_err(|_| "integrity")?;
            let (cipher, sym_bits) = if bits == 256 {
                (&AES_128, 128)
            } else {
                (&AES_256, 256)
            };
            let sym = kdfa(ek.name_alg, &seed, "STORAGE", ak_name, &[], sym_bits);
            let mut plain = enc.to_vec();
            DecryptingKey::cfb128(UnboundCipherKey::new(cipher, &sym).unwrap())
                .unwrap()
                .decrypt(
                    &mut plain,
                    DecryptionContext::Iv128(FixedLength::from([0u8; 16])),
                )
                .unwrap();
            Ok(unwrap_sized(&plain, "secret")
                .map_err(|_| "secret")?
                .to_vec())
        }
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 34)
    }

    fn secret() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..=64)
    }

    /// The credential activates for `name`, and for no other name.
    fn activates_for_its_name_only(ek: &SoftEk, name: &[u8], other: &[u8], secret: &[u8]) {
        let c = make_credential(ek.public(), name, secret).unwrap();
        assert_eq!(ek.activate(name, &c).unwrap(), secret);
        if name != other {
            assert_eq!(ek.activate(other, &c), Err("integrity"));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn ecc_credentials_activate_for_their_name_only(
            p384 in any::<bool>(), name in name(), other in name(), secret in secret(),
        ) {
            let curve = if p384 { &agreement::ECDH_P384 } else { &agreement::ECDH_P256 };
            activates_for_its_name_only(&SoftEk::ecc(curve), &name, &other, &secret);
        }
    }

    #[test]
    fn rsa_credentials_activate_for_their_name_only() {
        activates_for_its_name_only(&SoftEk::rsa(), &[1; 34], &[2; 34], b"the secret");
    }

    #[test]
    fn kdfa_truncates_to_the_bits_asked_and_depends_on_every_input() {
        let base = kdfa(HashAlg::Sha256, b"key", "STORAGE", b"u", b"v", 128);
        assert_eq!(base.len(), 16);
        assert_eq!(
            kdfa(HashAlg::Sha256, b"key", "STORAGE", b"u", b"v", 520).len(),
            65
        );
        for other in [
            kdfa(HashAlg::Sha256, b"kez", "STORAGE", b"u", b"v", 128),
            kdfa(HashAlg::Sha256, b"key", "INTEGRITY", b"u", b"v", 128),
            kdfa(HashAlg::Sha256, b"key", "STORAGE", b"w", b"v", 128),
            kdfa(HashAlg::Sha256, b"key", "STORAGE", b"u", b"w", 128),
        ] {
            assert_ne!(other, base);
        }
        // The size is an input: a shorter key is not a prefix of a longer.
        assert_ne!(
            kdfa(HashAlg::Sha256, b"key", "STORAGE", b"u", b"v", 256)[..16],
            base
        );
    }

    #[test]
    fn only_a_restricted_decryption_key_is_an_ek() {
        let SoftEk::Ecc(_, mut ek) = SoftEk::ecc(&agreement::ECDH_P256) else {
            unreachable!()
        };
        ek.attributes |= crate::public::attr::SIGN_ENCRYPT;
        assert_eq!(
            make_credential(&ek, &[0; 34], b"s"),
            Err(AttestError::NotAnEk)
        );
    }
}
