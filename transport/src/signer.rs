//! A P-256 key that signs somewhere else: in the TPM, or (in development) a
//! software key. The same key authenticates the device in TLS and signs
//! manifests; the two uses are domain-separated by their signed content.

use std::fmt;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("device key unavailable: {0}")]
    Unavailable(String),
    #[error("signing failed: {0}")]
    Failed(String),
}

/// An ECDSA P-256 key whose private half the process may not hold.
pub trait ExternalSigner: Send + Sync {
    /// Signs SHA-256(`message`); returns the signature.
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError>;
    /// The public key.
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey;
    /// A short description for logs ("software key /var/lib/...", "TPM handle 0x81010002").
    fn describe(&self) -> String;
}

/// Adapts an [`ExternalSigner`] to rustls' client-authentication key.
struct TlsKey(Arc<dyn ExternalSigner>);

impl fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsKey({})", self.0.describe())
    }
}

impl SigningKey for TlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(TlsSigner(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct TlsSigner(Arc<dyn ExternalSigner>);

impl fmt::Debug for TlsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSigner({})", self.0.describe())
    }
}

impl Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sig = self
            .0
            .sign(message)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// Always presents the device certificate with the external key.
#[derive(Debug)]
pub(crate) struct DeviceCertResolver(Arc<CertifiedKey>);

impl DeviceCertResolver {
    pub(crate) fn new(
        chain: Vec<CertificateDer<'static>>,
        signer: Arc<dyn ExternalSigner>,
    ) -> Self {
        Self(Arc::new(CertifiedKey::new(chain, Arc::new(TlsKey(signer)))))
    }
}

impl ResolvesClientCert for DeviceCertResolver {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        schemes
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Counts the signatures a key makes, to show that steady streaming costs one
/// signature per fragment plus one per full TLS handshake.
pub struct CountingSigner {
    inner: Arc<dyn ExternalSigner>,
    count: std::sync::atomic::AtomicU64,
}

impl CountingSigner {
    pub fn new(inner: Arc<dyn ExternalSigner>) -> Self {
        Self {
            inner,
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ExternalSigner for CountingSigner {
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError> {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.sign(message)
    }

    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        self.inner.verifying_key()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
