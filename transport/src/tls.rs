//! rustls configurations for the device, the consumer and the ingest.

use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::signer::{DeviceCertResolver, ExternalSigner};
use crate::TransportError;

/// aws-lc-rs with key exchange preferring X25519MLKEM768 (post-quantum
/// hybrid), then X25519, then P-256.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.kx_groups = vec![
        aws_lc_rs::kx_group::X25519MLKEM768,
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
    ];
    Arc::new(p)
}

const TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Client config for a camera: its certificate with a key that signs elsewhere.
pub fn device_client_config(
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    signer: Arc<dyn ExternalSigner>,
) -> Result<ClientConfig, TransportError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(DeviceCertResolver::new(chain, signer)));
    // HTTP/2 first: the live fragment and the backlog share one connection
    // (one handshake, so one TPM signature, per reconnect).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Client config for a consumer holding its TLS key in a file.
pub fn consumer_client_config(
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TransportError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?)
}

/// Whether a client is refused once the revocation list is past its
/// `nextUpdate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlExpiry {
    /// Refuse every client: an expired list no longer says who is revoked
    /// now (the ingest, which fetches fresh lists from the CA service).
    Enforce,
    /// Use the list however old (the CA service, whose list is its own).
    Ignore,
}

/// Server config for the ingest: every client must present a certificate
/// chained to the fleet CA and not listed in `crls`.
pub fn ingest_server_config(
    fleet_ca: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    expiry: CrlExpiry,
) -> Result<ServerConfig, TransportError> {
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(fleet_ca), provider())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status();
    let builder = match expiry {
        CrlExpiry::Enforce => builder.enforce_revocation_expiration(),
        CrlExpiry::Ignore => builder,
    };
    let verifier = builder
        .build()
        .map_err(|e| TransportError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Server config for the ingest's enrollment endpoint: server-authenticated
/// TLS 1.3 only, since a camera that enrolls has no certificate yet. The
/// one-time token authenticates it.
pub fn enrollment_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TransportError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Client config for enrollment: verifies the ingest, presents no certificate.
pub fn enrollment_client_config(roots: RootCertStore) -> Result<ClientConfig, TransportError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
