//! The device and ingest configs really negotiate what the docs promise:
//! TLS 1.3, X25519MLKEM768, a client certificate whose key signs through the
//! external-signer seam.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConnection, NamedGroup, ProtocolVersion, RootCertStore, ServerConnection};
use sealcam_transport::{tls, ExternalSigner, Identity, Role, SignerError};

struct SoftSigner(p256::ecdsa::SigningKey);

impl ExternalSigner for SoftSigner {
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError> {
        Ok(self.0.sign(message))
    }
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.0.verifying_key()
    }
    fn describe(&self) -> String {
        "test key".into()
    }
}

struct Pki {
    roots: RootCertStore,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    device_chain: Vec<CertificateDer<'static>>,
    device_key: p256::ecdsa::SigningKey,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let server = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();

    let device_key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let device_kp = KeyPair::try_from(device_key.to_pkcs8_der().unwrap().as_bytes()).unwrap();
    let mut dp = CertificateParams::default();
    dp.subject_alt_names = vec![SanType::URI("urn:sealcam:device:cam7".try_into().unwrap())];
    let device = dp.signed_by(&device_kp, &ca, &ca_key).unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki {
        roots,
        server_chain: vec![server.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        device_chain: vec![device.der().clone()],
        device_key,
    }
}

/// Moves TLS bytes between the two ends until both finish the handshake.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn device_and_ingest_negotiate_tls13_with_post_quantum_hybrid() {
    let p = pki();
    let ccfg = tls::device_client_config(
        p.roots.clone(),
        p.device_chain.clone(),
        Arc::new(SoftSigner(p.device_key.clone())),
    )
    .unwrap();
    let scfg = tls::ingest_server_config(
        p.roots.clone(),
        p.server_chain.clone(),
        p.server_key.clone_key(),
        Vec::new(),
        tls::CrlExpiry::Enforce,
    )
    .unwrap();
    let mut client =
        ClientConnection::new(Arc::new(ccfg), "localhost".try_into().unwrap()).unwrap();
    let mut server = ServerConnection::new(Arc::new(scfg)).unwrap();
    handshake(&mut client, &mut server).unwrap();

    assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(
        client.negotiated_key_exchange_group().map(|g| g.name()),
        Some(NamedGroup::X25519MLKEM768)
    );
    let peer = server.peer_certificates().unwrap();
    let id = Identity::from_cert_der(peer[0].as_ref()).unwrap();
    assert_eq!(id.role, Role::Device);
    assert_eq!(id.name.as_str(), "cam7");
}

/// Handshake of a client without certificate, speaking `versions`, with the ingest.
fn anonymous_client_handshake(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(), rustls::Error> {
    let p = pki();
    let ccfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(p.roots.clone())
        .with_no_client_auth();
    let scfg = tls::ingest_server_config(
        p.roots,
        p.server_chain,
        p.server_key,
        Vec::new(),
        tls::CrlExpiry::Enforce,
    )
    .unwrap();
    let mut client =
        ClientConnection::new(Arc::new(ccfg), "localhost".try_into().unwrap()).unwrap();
    let mut server = ServerConnection::new(Arc::new(scfg)).unwrap();
    handshake(&mut client, &mut server)
}

#[test]
fn ingest_refuses_a_client_without_certificate() {
    let err = anonymous_client_handshake(&[&rustls::version::TLS13]).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("no certificate"),
        "{err}"
    );
}

#[test]
fn ingest_refuses_tls12() {
    let err = anonymous_client_handshake(&[&rustls::version::TLS12]).unwrap_err();
    assert!(
        !err.to_string().to_lowercase().contains("no certificate"),
        "refused for the version, not the certificate: {err}"
    );
}

#[test]
fn reconnecting_device_resumes_without_a_new_signature() {
    use rustls::HandshakeKind;
    use sealcam_transport::signer::CountingSigner;
    let p = pki();
    let signer = Arc::new(CountingSigner::new(Arc::new(SoftSigner(
        p.device_key.clone(),
    ))));
    let ccfg = Arc::new(
        tls::device_client_config(p.roots.clone(), p.device_chain.clone(), signer.clone()).unwrap(),
    );
    let scfg = Arc::new(
        tls::ingest_server_config(
            p.roots,
            p.server_chain,
            p.server_key,
            Vec::new(),
            tls::CrlExpiry::Enforce,
        )
        .unwrap(),
    );
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let mut client =
            ClientConnection::new(ccfg.clone(), "localhost".try_into().unwrap()).unwrap();
        let mut server = ServerConnection::new(scfg.clone()).unwrap();
        handshake(&mut client, &mut server).unwrap();
        // Let the client read the session tickets sent after the handshake.
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
        kinds.push(client.handshake_kind());
        // The resumed session still carries the device's identity.
        let peer = server.peer_certificates().unwrap();
        assert_eq!(
            Identity::from_cert_der(peer[0].as_ref())
                .unwrap()
                .name
                .as_str(),
            "cam7"
        );
    }
    assert_eq!(
        kinds,
        vec![
            Some(HandshakeKind::Full),
            Some(HandshakeKind::Resumed),
            Some(HandshakeKind::Resumed)
        ]
    );
    assert_eq!(signer.count(), 1, "one TPM signature for three connections");
}

/// A client that supports `groups`, in that order (its key share is for
/// the first), presenting the device certificate.
fn client_listing(
    p: &Pki,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> ClientConnection {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups.to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        p.device_key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
    ));
    let ccfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(p.roots.clone())
        .with_client_auth_cert(p.device_chain.clone(), key)
        .unwrap();
    ClientConnection::new(Arc::new(ccfg), "localhost".try_into().unwrap()).unwrap()
}

/// The server's side as the ingest runs it: reads the ClientHello, then
/// takes the config [`tls::PreferHybrid`] chooses for it.
fn accept(client: &mut ClientConnection, configs: &tls::PreferHybrid) -> ServerConnection {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf = Vec::new();
    client.write_tls(&mut buf).unwrap();
    acceptor.read_tls(&mut buf.as_slice()).unwrap();
    let accepted = acceptor
        .accept()
        .map_err(|(e, _)| e)
        .unwrap()
        .expect("a whole ClientHello");
    let config = configs.config_for(&accepted.client_hello());
    accepted
        .into_connection(config)
        .map_err(|(e, _)| e)
        .unwrap()
}

#[test]
fn ingest_prefers_the_hybrid_group_even_when_the_client_lists_x25519_first() {
    use rustls::crypto::aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
    let p = pki();
    let build = || {
        tls::ingest_server_configs(
            p.roots.clone(),
            p.server_chain.clone(),
            p.server_key.clone_key(),
            Vec::new(),
            tls::CrlExpiry::Enforce,
        )
        .unwrap()
    };
    let group =
        |client: &ClientConnection| client.negotiated_key_exchange_group().map(|g| g.name());

    // What rustls alone does: the client's order wins.
    let mut client = client_listing(&p, &[X25519, X25519MLKEM768]);
    let plain = tls::ingest_server_config(
        p.roots.clone(),
        p.server_chain.clone(),
        p.server_key.clone_key(),
        Vec::new(),
        tls::CrlExpiry::Enforce,
    )
    .unwrap();
    let mut server = ServerConnection::new(Arc::new(plain)).unwrap();
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(group(&client), Some(NamedGroup::X25519));

    // The ingest's choice: the hybrid group (after a HelloRetryRequest).
    let configs = build();
    let mut client = client_listing(&p, &[X25519, X25519MLKEM768]);
    let mut server = accept(&mut client, &configs);
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(group(&client), Some(NamedGroup::X25519MLKEM768));
    assert_eq!(
        client.handshake_kind(),
        Some(rustls::HandshakeKind::FullWithHelloRetryRequest)
    );

    // A client without the hybrid group still gets in, with X25519.
    let mut client = client_listing(&p, &[X25519]);
    let mut server = accept(&mut client, &configs);
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(group(&client), Some(NamedGroup::X25519));

    // And the enrollment port prefers it as well.
    let enroll =
        tls::enrollment_server_configs(p.server_chain.clone(), p.server_key.clone_key()).unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![X25519, X25519MLKEM768];
    let ccfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(p.roots.clone())
        .with_no_client_auth();
    let mut client =
        ClientConnection::new(Arc::new(ccfg), "localhost".try_into().unwrap()).unwrap();
    let mut server = accept(&mut client, &enroll);
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(group(&client), Some(NamedGroup::X25519MLKEM768));
}
