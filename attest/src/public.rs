//! TPM2B_PUBLIC: an object's public area (TPM 2.0 Part 2, §12.2), and the
//! object's Name (nameAlg ‖ H(TPMT_PUBLIC)) that the TPM uses to refer to
//! it in credentials and attestations.

use aws_lc_rs::digest;

use crate::wire::{strip_zeros, unwrap_sized, Reader};
use crate::AttestError;

/// TPM_ALG_ID values this crate reads (Part 2, §6.3).
pub mod alg {
    pub const RSA: u16 = 0x0001;
    pub const SHA1: u16 = 0x0004;
    pub const HMAC: u16 = 0x0005;
    pub const AES: u16 = 0x0006;
    pub const MGF1: u16 = 0x0007;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const XOR: u16 = 0x000A;
    pub const SHA256: u16 = 0x000B;
    pub const SHA384: u16 = 0x000C;
    pub const SHA512: u16 = 0x000D;
    pub const NULL: u16 = 0x0010;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDH: u16 = 0x0019;
    pub const ECDAA: u16 = 0x001A;
    pub const SM2: u16 = 0x001B;
    pub const ECSCHNORR: u16 = 0x001C;
    pub const ECMQV: u16 = 0x001D;
    pub const KDF1_SP800_56A: u16 = 0x0020;
    pub const KDF2: u16 = 0x0021;
    pub const KDF1_SP800_108: u16 = 0x0022;
    pub const ECC: u16 = 0x0023;
    pub const SYMCIPHER: u16 = 0x0025;
    pub const CFB: u16 = 0x0043;
}

/// TPM_ECC_NIST_P256.
pub const NIST_P256: u16 = 0x0003;
/// TPM_ECC_NIST_P384 (the curve of the high-range ECC EK template, H-3).
pub const NIST_P384: u16 = 0x0004;

/// TPMA_OBJECT bits (Part 2, §8.3).
pub mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN_ENCRYPT: u32 = 1 << 18;
}

/// A hash algorithm the TPM names objects with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_id(id: u16) -> Result<Self, AttestError> {
        Ok(match id {
            alg::SHA1 => Self::Sha1,
            alg::SHA256 => Self::Sha256,
            alg::SHA384 => Self::Sha384,
            alg::SHA512 => Self::Sha512,
            value => {
                return Err(AttestError::Unsupported {
                    what: "hash algorithm",
                    value,
                })
            }
        })
    }

    pub fn id(self) -> u16 {
        match self {
            Self::Sha1 => alg::SHA1,
            Self::Sha256 => alg::SHA256,
            Self::Sha384 => alg::SHA384,
            Self::Sha512 => alg::SHA512,
        }
    }

    pub(crate) fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    pub(crate) fn hmac_alg(self) -> aws_lc_rs::hmac::Algorithm {
        match self {
            Self::Sha1 => aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
            Self::Sha384 => aws_lc_rs::hmac::HMAC_SHA384,
            Self::Sha512 => aws_lc_rs::hmac::HMAC_SHA512,
        }
    }

    /// The digest size in bytes.
    pub fn size(self) -> usize {
        self.digest_alg().output_len()
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }
}

/// A symmetric definition (TPMT_SYM_DEF_OBJECT); `None` where TPM_ALG_NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symmetric {
    pub alg: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// A signing, encryption or key-derivation scheme: its algorithm and the
/// hash it uses (`None` where the scheme has none, e.g. RSAES); ECDAA's
/// count is kept in `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub alg: u16,
    pub hash: Option<u16>,
    pub count: Option<u16>,
}

/// The key-type-specific part of a public area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ecc {
        symmetric: Option<Symmetric>,
        scheme: Option<Scheme>,
        curve: u16,
        kdf: Option<Scheme>,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Rsa {
        symmetric: Option<Symmetric>,
        scheme: Option<Scheme>,
        key_bits: u16,
        /// 0 means the default, 65537.
        exponent: u32,
        modulus: Vec<u8>,
    },
}

/// A decoded TPM2B_PUBLIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmPublic {
    pub name_alg: HashAlg,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub key: PublicKey,
    /// The TPMT_PUBLIC as the TPM marshalled it; the Name hashes these.
    tpmt: Vec<u8>,
}

fn read_symmetric(r: &mut Reader<'_>) -> Result<Option<Symmetric>, AttestError> {
    match r.u16()? {
        alg::NULL => Ok(None),
        alg::AES => Ok(Some(Symmetric {
            alg: alg::AES,
            key_bits: r.u16()?,
            mode: r.u16()?,
        })),
        value => Err(AttestError::Unsupported {
            what: "symmetric algorithm",
            value,
        }),
    }
}

/// A scheme whose details are one hash, or nothing for the listed
/// hash-less schemes, or a hash and a count for ECDAA.
fn read_scheme(
    r: &mut Reader<'_>,
    what: &'static str,
    hashed: &[u16],
) -> Result<Option<Scheme>, AttestError> {
    let alg = r.u16()?;
    if alg == alg::NULL {
        return Ok(None);
    }
    if alg == alg::RSAES {
        return Ok(Some(Scheme {
            alg,
            hash: None,
            count: None,
        }));
    }
    if !hashed.contains(&alg) {
        return Err(AttestError::Unsupported { what, value: alg });
    }
    let hash = Some(r.u16()?);
    let count = if alg == alg::ECDAA {
        Some(r.u16()?)
    } else {
        None
    };
    Ok(Some(Scheme { alg, hash, count }))
}

impl TpmPublic {
    /// Decodes a TPM2B_PUBLIC (as TPM2_ReadPublic, TPM2_Create and
    /// TPM2_CreatePrimary return it). RSA and ECC keys only.
    pub fn decode(tpm2b: &[u8]) -> Result<Self, AttestError> {
        let tpmt = unwrap_sized(tpm2b, "TPM2B_PUBLIC")?;
        let mut r = Reader::new(tpmt, "TPM2B_PUBLIC");
        let kind = r.u16()?;
        let name_alg = HashAlg::from_id(r.u16()?)?;
        let attributes = r.u32()?;
        let auth_policy = r.sized()?.to_vec();
        let key = match kind {
            alg::ECC => {
                let symmetric = read_symmetric(&mut r)?;
                let scheme = read_scheme(
                    &mut r,
                    "ECC scheme",
                    &[
                        alg::ECDSA,
                        alg::ECDH,
                        alg::ECDAA,
                        alg::SM2,
                        alg::ECSCHNORR,
                        alg::ECMQV,
                    ],
                )?;
                let curve = r.u16()?;
                let kdf = read_scheme(
                    &mut r,
                    "key derivation scheme",
                    &[
                        alg::MGF1,
                        alg::KDF1_SP800_56A,
                        alg::KDF2,
                        alg::KDF1_SP800_108,
                    ],
                )?;
                let x = r.sized()?.to_vec();
                let y = r.sized()?.to_vec();
                PublicKey::Ecc {
                    symmetric,
                    scheme,
                    curve,
                    kdf,
                    x,
                    y,
                }
            }
            alg::RSA => {
                let symmetric = read_symmetric(&mut r)?;
                let scheme =
                    read_scheme(&mut r, "RSA scheme", &[alg::RSASSA, alg::RSAPSS, alg::OAEP])?;
                let key_bits = r.u16()?;
                let exponent = r.u32()?;
                let modulus = r.sized()?.to_vec();
                PublicKey::Rsa {
                    symmetric,
                    scheme,
                    key_bits,
                    exponent,
                    modulus,
                }
            }
            value => {
                return Err(AttestError::Unsupported {
                    what: "object type",
                    value,
                })
            }
        };
        r.finish()?;
        Ok(Self {
            name_alg,
            attributes,
            auth_policy,
            key,
            tpmt: tpmt.to_vec(),
        })
    }

    /// The object's Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.id().to_be_bytes().to_vec();
        name.extend_from_slice(&self.name_alg.hash(&self.tpmt));
        name
    }

    /// Whether every bit of `bits` is set.
    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }

    /// The SEC1 uncompressed point, for a P-256 key.
    pub fn p256_point(&self) -> Option<[u8; 65]> {
        let point = self.ecc_point()?;
        <[u8; 65]>::try_from(point.as_slice()).ok()
    }

    /// The SEC1 uncompressed point, for a P-256 or P-384 key.
    pub fn ecc_point(&self) -> Option<Vec<u8>> {
        let PublicKey::Ecc { curve, x, y, .. } = &self.key else {
            return None;
        };
        let size = match *curve {
            NIST_P256 => 32,
            NIST_P384 => 48,
            _ => return None,
        };
        let mut sec1 = vec![4u8];
        for c in [x, y] {
            let c = strip_zeros(c);
            if c.len() > size {
                return None;
            }
            sec1.resize(sec1.len() + size - c.len(), 0);
            sec1.extend_from_slice(c);
        }
        Some(sec1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    fn sized(v: &[u8]) -> Vec<u8> {
        [&u16::try_from(v.len()).unwrap().to_be_bytes()[..], v].concat()
    }

    /// An ECC public area with the given fields, as a TPM marshals it.
    fn ecc(name_alg: u16, attributes: u32, policy: &[u8], x: &[u8], y: &[u8]) -> Vec<u8> {
        let mut t = [alg::ECC.to_be_bytes(), name_alg.to_be_bytes()].concat();
        t.extend_from_slice(&attributes.to_be_bytes());
        t.extend(sized(policy));
        for v in [
            alg::NULL,
            alg::ECDSA,
            alg::SHA256,
            NIST_P256,
            alg::KDF1_SP800_108,
            alg::SHA256,
        ] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t.extend(sized(x));
        t.extend(sized(y));
        sized(&t)
    }

    fn hash_id() -> impl Strategy<Value = u16> {
        prop_oneof![
            Just(alg::SHA1),
            Just(alg::SHA256),
            Just(alg::SHA384),
            Just(alg::SHA512)
        ]
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..=max)
    }

    proptest! {
        #[test]
        fn ecc_public_areas_decode_to_their_fields(
            name_alg in hash_id(), attributes in any::<u32>(),
            policy in bytes(64), x in bytes(48), y in bytes(48),
        ) {
            let encoded = ecc(name_alg, attributes, &policy, &x, &y);
            let public = TpmPublic::decode(&encoded).unwrap();
            prop_assert_eq!(public.name_alg.id(), name_alg);
            prop_assert_eq!(public.attributes, attributes);
            prop_assert_eq!(&public.auth_policy, &policy);
            let PublicKey::Ecc { scheme, kdf, x: px, y: py, .. } = &public.key else {
                panic!("not ECC")
            };
            prop_assert_eq!(scheme.map(|s| s.alg), Some(alg::ECDSA));
            prop_assert_eq!(kdf.map(|s| s.hash), Some(Some(alg::SHA256)));
            prop_assert_eq!((px, py), (&x, &y));
            // The Name hashes exactly the TPMT_PUBLIC.
            let name = public.name();
            prop_assert_eq!(&name[..2], &name_alg.to_be_bytes());
            prop_assert_eq!(&name[2..], &public.name_alg.hash(&encoded[2..]));
        }

        #[test]
        fn every_cut_and_every_extra_byte_is_refused(x in bytes(48), cut in any::<prop::sample::Index>()) {
            let encoded = ecc(alg::SHA256, 0, &[], &x, &x);
            let at = cut.index(encoded.len());
            prop_assert!(TpmPublic::decode(&encoded[..at]).is_err());
            let mut longer = encoded.clone();
            longer.push(0);
            prop_assert!(TpmPublic::decode(&longer).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in bytes(600)) {
            if let Ok(p) = TpmPublic::decode(&data) {
                let _ = (p.name(), p.ecc_point());
            }
        }
    }

    #[test]
    fn points_are_padded_to_the_curve_and_wider_ones_refused() {
        let public = TpmPublic::decode(&ecc(alg::SHA256, 0, &[], &[1], &[0, 0, 2])).unwrap();
        let point = public.p256_point().unwrap();
        assert_eq!((point[0], point[32], point[64]), (4, 1, 2));
        let wide = TpmPublic::decode(&ecc(alg::SHA256, 0, &[], &[1; 33], &[2])).unwrap();
        assert_eq!(wide.ecc_point(), None);
    }

    #[test]
    fn unknown_types_say_what_is_unsupported() {
        let mut encoded = ecc(alg::SHA256, 0, &[], &[1], &[2]);
        encoded[2..4].copy_from_slice(&alg::KEYEDHASH.to_be_bytes());
        assert_eq!(
            TpmPublic::decode(&encoded),
            Err(AttestError::Unsupported {
                what: "object type",
                value: alg::KEYEDHASH
            })
        );
    }
}
