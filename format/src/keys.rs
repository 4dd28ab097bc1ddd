//! Consumer keys (HPKE recipients) and the device verifying key.
//!
//! Consumer keys are P-256 key pairs. The public half goes into the camera's
//! config; the camera wraps each fragment's data key to it with HPKE
//! (RFC 9180 base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM).
//! The private half stays with the consumer.

use std::fmt;

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::SealError;

type HpkeKem = DhP256HkdfSha256;

/// A short, stable identifier of a consumer public key: the first 8 bytes of
/// SHA-256 over its uncompressed SEC1 encoding. Shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A consumer's public key: a recipient of fragment data keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerPublicKey {
    key: p256::PublicKey,
    id: KeyId,
}

impl ConsumerPublicKey {
    pub fn from_p256(key: p256::PublicKey) -> Self {
        let sec1 = key.to_sec1_bytes();
        let digest = Sha256::digest(&sec1);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self { key, id: KeyId(id) }
    }

    /// Reads a `-----BEGIN PUBLIC KEY-----` (SPKI) PEM document.
    pub fn from_pem(pem: &str) -> Result<Self, SealError> {
        let key = p256::PublicKey::from_public_key_pem(pem)
            .map_err(|e| SealError::Key(format!("not a P-256 public key in SPKI PEM form: {e}")))?;
        Ok(Self::from_p256(key))
    }

    pub fn to_pem(&self) -> Result<String, SealError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SealError::Key(e.to_string()))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// From an uncompressed (or compressed) SEC1 point.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, SealError> {
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(Self::from_p256)
            .map_err(|_| SealError::Key("not a P-256 public key point".into()))
    }

    /// The uncompressed SEC1 encoding (65 bytes).
    pub fn sec1(&self) -> p256::EncodedPoint {
        self.key.to_encoded_point(false)
    }

    /// Wraps `data_key` to this recipient. Returns (encapsulated key, ciphertext).
    pub(crate) fn wrap<R: RngCore + CryptoRng>(
        &self,
        data_key: &[u8; 32],
        info: &[u8],
        rng: &mut R,
    ) -> Result<(Vec<u8>, Vec<u8>), SealError> {
        let sec1 = self.key.to_encoded_point(false);
        let pk = <HpkeKem as Kem>::PublicKey::from_bytes(sec1.as_bytes())
            .map_err(|_| SealError::Wrap(self.id))?;
        let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, HpkeKem, _>(
            &OpModeS::Base,
            &pk,
            info,
            data_key,
            &self.id.0,
            rng,
        )
        .map_err(|_| SealError::Wrap(self.id))?;
        Ok((enc.to_bytes().to_vec(), ct))
    }
}

/// A consumer's private key: opens fragments whose data key was wrapped to it.
pub struct ConsumerSecretKey {
    key: p256::SecretKey,
    public: ConsumerPublicKey,
}

impl ConsumerSecretKey {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_p256(p256::SecretKey::random(rng))
    }

    fn from_p256(key: p256::SecretKey) -> Self {
        let public = ConsumerPublicKey::from_p256(key.public_key());
        Self { key, public }
    }

    /// Reads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM document.
    pub fn from_pem(pem: &str) -> Result<Self, SealError> {
        let key = p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| {
            SealError::Key(format!("not a P-256 private key in PKCS#8 PEM form: {e}"))
        })?;
        Ok(Self::from_p256(key))
    }

    pub fn to_pem(&self) -> Result<Zeroizing<String>, SealError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| SealError::Key(e.to_string()))
    }

    pub fn public(&self) -> &ConsumerPublicKey {
        &self.public
    }

    pub(crate) fn unwrap_key(
        &self,
        enc: &[u8],
        ct: &[u8],
        info: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let id = self.public.id;
        let pt = Zeroizing::new(self.hpke_open(enc, ct, info, &id.0)?);
        if pt.len() != 32 {
            return Err(SealError::Unwrap(id));
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&pt);
        Ok(out)
    }

    /// HPKE single-shot open (base mode, DHKEM(P-256, HKDF-SHA256),
    /// HKDF-SHA256, AES-256-GCM) with this key. The data-key unwrapping uses
    /// it; it is public so that it can be checked against RFC 9180's
    /// known-answer vectors.
    pub fn hpke_open(
        &self,
        enc: &[u8],
        ct: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let id = self.public.id;
        let sk = <HpkeKem as Kem>::PrivateKey::from_bytes(&self.key.to_bytes())
            .map_err(|_| SealError::Unwrap(id))?;
        let enc =
            <HpkeKem as Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::Unwrap(id))?;
        hpke::single_shot_open::<AesGcm256, HkdfSha256, HpkeKem>(
            &OpModeR::Base,
            &sk,
            &enc,
            info,
            ct,
            aad,
        )
        .map_err(|_| SealError::Unwrap(id))
    }

    /// From a raw 32-byte scalar.
    pub fn from_scalar(bytes: &[u8]) -> Result<Self, SealError> {
        p256::SecretKey::from_slice(bytes)
            .map(Self::from_p256)
            .map_err(|_| SealError::Key("not a P-256 private scalar".into()))
    }
}

/// The public half of a device key, used to verify manifest signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceVerifyingKey(pub p256::ecdsa::VerifyingKey);

impl DeviceVerifyingKey {
    /// From a DER SubjectPublicKeyInfo, as found in the device certificate.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SealError> {
        p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(Self)
            .map_err(|e| SealError::Key(format!("device key is not a P-256 public key: {e}")))
    }

    /// From a `-----BEGIN PUBLIC KEY-----` (SPKI) PEM document, as
    /// `sealcam owner init` writes the owner's public key.
    pub fn from_pem(pem: &str) -> Result<Self, SealError> {
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(Self)
            .map_err(|e| SealError::Key(format!("not a P-256 public key in SPKI PEM form: {e}")))
    }

    /// From an uncompressed or compressed SEC1 point.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, SealError> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|e| SealError::Key(format!("device key is not a P-256 point: {e}")))
    }

    /// SHA-256 fingerprint of the uncompressed SEC1 encoding, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.0.to_encoded_point(false).as_bytes()))
    }

    /// The key made ready to verify many signatures (see [`DeviceVerifier`]).
    pub fn verifier(&self) -> Result<DeviceVerifier, SealError> {
        aws_lc_rs::signature::ParsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            self.0.to_encoded_point(false).as_bytes(),
        )
        .map(DeviceVerifier)
        .map_err(|e| SealError::Key(format!("device key rejected by AWS-LC: {e}")))
    }
}

/// A device key decoded and checked once, for verifying its manifest
/// signatures with AWS-LC's P-256 (several times faster than the portable
/// implementation). Verifying with a [`DeviceVerifyingKey`] makes one of
/// these each time; whoever verifies many signatures of one device (the
/// ingest, per connection; a chain check) keeps one instead.
#[derive(Clone)]
pub struct DeviceVerifier(aws_lc_rs::signature::ParsedPublicKey);

impl DeviceVerifier {
    /// Checks an ECDSA P-256 / SHA-256 signature (64 bytes, r || s) of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), SealError> {
        self.0
            .verify_sig(message, signature)
            .map_err(|_| SealError::BadSignature)
    }
}

impl std::fmt::Debug for DeviceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DeviceVerifier").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_key_id() {
        let sk = ConsumerSecretKey::generate(&mut rand::thread_rng());
        let pem = sk.to_pem().unwrap();
        let back = ConsumerSecretKey::from_pem(&pem).unwrap();
        assert_eq!(back.public().id(), sk.public().id());
        let pub_pem = sk.public().to_pem().unwrap();
        assert_eq!(ConsumerPublicKey::from_pem(&pub_pem).unwrap(), *sk.public());
    }

    #[test]
    fn wrap_then_unwrap() {
        let mut rng = rand::thread_rng();
        let sk = ConsumerSecretKey::generate(&mut rng);
        let other = ConsumerSecretKey::generate(&mut rng);
        let key = [7u8; 32];
        let (enc, ct) = sk.public().wrap(&key, b"info", &mut rng).unwrap();
        assert_eq!(*sk.unwrap_key(&enc, &ct, b"info").unwrap(), key);
        assert!(sk.unwrap_key(&enc, &ct, b"other info").is_err());
        assert!(other.unwrap_key(&enc, &ct, b"info").is_err());
    }

    #[test]
    fn a_prepared_verifier_accepts_its_keys_signatures_only() {
        use p256::ecdsa::signature::Signer;
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let other = p256::ecdsa::SigningKey::random(&mut rng);
        let verifier = DeviceVerifyingKey(*dk.verifying_key()).verifier().unwrap();
        let sig = |k: &p256::ecdsa::SigningKey, m: &[u8]| -> [u8; 64] {
            let s: p256::ecdsa::Signature = k.sign(m);
            s.to_bytes().into()
        };
        assert!(verifier.verify(b"message", &sig(&dk, b"message")).is_ok());
        assert!(verifier.verify(b"massage", &sig(&dk, b"message")).is_err());
        assert!(verifier
            .verify(b"message", &sig(&other, b"message"))
            .is_err());
        assert!(verifier.verify(b"message", &[0; 64]).is_err());
    }
}
