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

/// [`provider`] with X25519MLKEM768 as its only key exchange: for a client
/// that offers it ([`PreferHybrid`]).
fn hybrid_only_provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    Arc::new(p)
}

/// A server's config twice: one for any client, and one that takes
/// X25519MLKEM768 as its only key exchange, for a client that offers it.
///
/// rustls picks the key-exchange group in the client's order
/// (`ignore_client_order` orders cipher suites only), so a client that
/// lists X25519 before X25519MLKEM768 would get X25519. Choosing the config
/// from the ClientHello ([`config_for`](Self::config_for)) gives every client
/// that supports the hybrid group the hybrid group; one that sent no key
/// share for it is asked for one (a HelloRetryRequest: one round trip more).
/// Both configs share one session cache, so resumption works across them.
#[derive(Clone)]
pub struct PreferHybrid {
    any: Arc<ServerConfig>,
    hybrid: Arc<ServerConfig>,
}

impl PreferHybrid {
    /// Builds both configs with `build`, given the provider to use.
    pub fn new(
        build: impl Fn(Arc<CryptoProvider>) -> Result<ServerConfig, TransportError>,
    ) -> Result<Self, TransportError> {
        let any = build(provider())?;
        let mut hybrid = build(hybrid_only_provider())?;
        hybrid.session_storage = any.session_storage.clone();
        hybrid.ticketer = any.ticketer.clone();
        Ok(Self {
            any: Arc::new(any),
            hybrid: Arc::new(hybrid),
        })
    }

    /// The config for the client that sent `hello`.
    pub fn config_for(&self, hello: &rustls::server::ClientHello<'_>) -> Arc<ServerConfig> {
        let offers_hybrid = hello
            .named_groups()
            .is_some_and(|g| g.contains(&rustls::NamedGroup::X25519MLKEM768));
        if offers_hybrid {
            self.hybrid.clone()
        } else {
            self.any.clone()
        }
    }
}

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
    ingest_server_config_with(provider(), fleet_ca, chain, key, crls, expiry)
}

/// [`ingest_server_config`], preferring X25519MLKEM768 ([`PreferHybrid`]).
pub fn ingest_server_configs(
    fleet_ca: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    expiry: CrlExpiry,
) -> Result<PreferHybrid, TransportError> {
    PreferHybrid::new(|p| {
        ingest_server_config_with(
            p,
            fleet_ca.clone(),
            chain.clone(),
            key.clone_key(),
            crls.clone(),
            expiry,
        )
    })
}

fn ingest_server_config_with(
    config_provider: Arc<CryptoProvider>,
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
    let mut config = ServerConfig::builder_with_provider(config_provider)
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
    enrollment_server_config_with(provider(), chain, key)
}

/// [`enrollment_server_config`], preferring X25519MLKEM768 ([`PreferHybrid`]).
pub fn enrollment_server_configs(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<PreferHybrid, TransportError> {
    PreferHybrid::new(|p| enrollment_server_config_with(p, chain.clone(), key.clone_key()))
}

fn enrollment_server_config_with(
    provider: Arc<CryptoProvider>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TransportError> {
    let mut config = ServerConfig::builder_with_provider(provider)
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
