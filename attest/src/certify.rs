//! TPM2_Certify's output: TPM2B_ATTEST holding a TPMS_ATTEST of type
//! TPM_ST_ATTEST_CERTIFY (Part 2, §10.12), and the signing key's
//! TPMT_SIGNATURE (§11.3.4).

use crate::public::alg;
use crate::wire::{unwrap_sized, Reader};
use crate::AttestError;

/// TPM_GENERATED_VALUE: every TPMS_ATTEST the TPM signs starts with it.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_CERTIFY.
pub const ST_ATTEST_CERTIFY: u16 = 0x8017;

/// A decoded TPMS_ATTEST of TPM2_Certify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifyInfo {
    /// The qualified name of the key that signed.
    pub qualified_signer: Vec<u8>,
    /// The caller's qualifying data (the verifier's nonce).
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    /// The Name of the certified object.
    pub name: Vec<u8>,
    pub qualified_name: Vec<u8>,
    /// The TPMS_ATTEST bytes, which the signature covers.
    signed: Vec<u8>,
}

impl CertifyInfo {
    /// Decodes a TPM2B_ATTEST from TPM2_Certify.
    pub fn decode(tpm2b: &[u8]) -> Result<Self, AttestError> {
        let signed = unwrap_sized(tpm2b, "TPM2B_ATTEST")?;
        let mut r = Reader::new(signed, "TPM2B_ATTEST");
        let magic = r.u32()?;
        if magic != TPM_GENERATED {
            return Err(AttestError::NotTpmGenerated { magic });
        }
        let kind = r.u16()?;
        if kind != ST_ATTEST_CERTIFY {
            return Err(AttestError::NotCertify { kind });
        }
        let info = Self {
            qualified_signer: r.sized()?.to_vec(),
            extra_data: r.sized()?.to_vec(),
            clock: r.u64()?,
            reset_count: r.u32()?,
            restart_count: r.u32()?,
            safe: r.u8()? != 0,
            firmware_version: r.u64()?,
            name: r.sized()?.to_vec(),
            qualified_name: r.sized()?.to_vec(),
            signed: signed.to_vec(),
        };
        r.finish()?;
        Ok(info)
    }

    /// The bytes the attestation key signed.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }
}

/// A decoded TPMT_SIGNATURE of the kinds an attestation key makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmSignature {
    Ecdsa { hash: u16, r: Vec<u8>, s: Vec<u8> },
    RsaSsa { hash: u16, signature: Vec<u8> },
    RsaPss { hash: u16, signature: Vec<u8> },
}

impl TpmSignature {
    /// Decodes a TPMT_SIGNATURE (ECDSA, RSASSA or RSAPSS).
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
        let sig = match r.u16()? {
            alg::ECDSA => Self::Ecdsa {
                hash: r.u16()?,
                r: r.sized()?.to_vec(),
                s: r.sized()?.to_vec(),
            },
            alg::RSASSA => Self::RsaSsa {
                hash: r.u16()?,
                signature: r.sized()?.to_vec(),
            },
            alg::RSAPSS => Self::RsaPss {
                hash: r.u16()?,
                signature: r.sized()?.to_vec(),
            },
            value => {
                return Err(AttestError::Unsupported {
                    what: "signature algorithm",
                    value,
                })
            }
        };
        r.finish()?;
        Ok(sig)
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

    fn attest(kind: u16, signer: &[u8], extra: &[u8], clock: u64, name: &[u8]) -> Vec<u8> {
        let mut a = [
            TPM_GENERATED.to_be_bytes().to_vec(),
            kind.to_be_bytes().to_vec(),
        ]
        .concat();
        a.extend(sized(signer));
        a.extend(sized(extra));
        a.extend_from_slice(&clock.to_be_bytes());
        a.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 9, 1]);
        a.extend_from_slice(&42u64.to_be_bytes());
        a.extend(sized(name));
        a.extend(sized(b"qualified"));
        sized(&a)
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..=max)
    }

    proptest! {
        #[test]
        fn certify_infos_decode_to_their_fields(
            signer in bytes(50), extra in bytes(64), clock in any::<u64>(), name in bytes(50),
        ) {
            let encoded = attest(ST_ATTEST_CERTIFY, &signer, &extra, clock, &name);
            let info = CertifyInfo::decode(&encoded).unwrap();
            prop_assert_eq!(&info.qualified_signer, &signer);
            prop_assert_eq!(&info.extra_data, &extra);
            prop_assert_eq!((info.clock, info.reset_count, info.restart_count, info.safe), (clock, 7, 9, true));
            prop_assert_eq!(info.firmware_version, 42);
            prop_assert_eq!(&info.name, &name);
            prop_assert_eq!(info.signed_bytes(), &encoded[2..]);
            for at in 0..encoded.len() {
                prop_assert!(CertifyInfo::decode(&encoded[..at]).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in bytes(300)) {
            let _ = CertifyInfo::decode(&data);
            let _ = TpmSignature::decode(&data);
        }

        #[test]
        fn ecdsa_signatures_decode(r in bytes(48), s in bytes(48)) {
            let mut encoded = [alg::ECDSA.to_be_bytes(), alg::SHA256.to_be_bytes()].concat();
            encoded.extend(sized(&r));
            encoded.extend(sized(&s));
            prop_assert_eq!(
                TpmSignature::decode(&encoded).unwrap(),
                TpmSignature::Ecdsa { hash: alg::SHA256, r, s }
            );
        }
    }

    #[test]
    fn only_tpm_generated_certify_attestations_are_read() {
        let quote = attest(0x8018, b"", b"", 0, b"");
        assert_eq!(
            CertifyInfo::decode(&quote),
            Err(AttestError::NotCertify { kind: 0x8018 })
        );
        let mut forged = attest(ST_ATTEST_CERTIFY, b"", b"", 0, b"");
        forged[2] = 0;
        assert!(matches!(
            CertifyInfo::decode(&forged),
            Err(AttestError::NotTpmGenerated { .. })
        ));
    }
}
