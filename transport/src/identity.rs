//! Identities carried by sealcam certificates.
//!
//! Every certificate the fleet CA issues names exactly one identity in a
//! subjectAltName URI: `urn:sealcam:device:<device-id>` for a camera, or
//! `urn:sealcam:consumer:<name>` for a consumer of video. The ingest decides
//! what a TLS peer may do from this alone.

use std::fmt;

use sealcam_format::{DeviceVerifyingKey, Name};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::TransportError;

pub const DEVICE_URI_PREFIX: &str = "urn:sealcam:device:";
pub const CONSUMER_URI_PREFIX: &str = "urn:sealcam:consumer:";
/// A device certificate may also name the streams the device may write, one
/// SAN URI each. None named: any stream of its own.
pub const STREAM_URI_PREFIX: &str = "urn:sealcam:stream:";
/// A consumer certificate may name the streams it may read, one SAN URI
/// each (`urn:sealcam:read:<device>/<stream>`). None named: every stream.
pub const READ_URI_PREFIX: &str = "urn:sealcam:read:";
/// An ingest instance's certificate (server, and client of the CA service)
/// names the instance: `urn:sealcam:ingest:<name>`. It is no identity on
/// the ingest's API: [`Identity::from_cert_der`] refuses it.
pub const INGEST_URI_PREFIX: &str = "urn:sealcam:ingest:";

/// The ingest instance a certificate names (`urn:sealcam:ingest:<name>`).
pub fn ingest_name_of_cert(der: &[u8]) -> Result<Name, TransportError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?
        .ok_or(TransportError::NoIdentity)?;
    san.value
        .general_names
        .iter()
        .find_map(|gn| match gn {
            GeneralName::URI(uri) => uri
                .strip_prefix(INGEST_URI_PREFIX)
                .and_then(|n| Name::new(n).ok()),
            _ => None,
        })
        .ok_or(TransportError::NoIdentity)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A camera: may write its own streams, may not read.
    Device,
    /// A consumer: may read, may not write.
    Consumer,
}

/// The identity a certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub name: Name,
    /// Streams a device may write; empty means any of its own.
    pub streams: Vec<Name>,
    /// (device, stream) pairs a consumer may read; empty means all.
    pub reads: Vec<(Name, Name)>,
}

impl Identity {
    pub fn device(name: Name) -> Self {
        Self {
            role: Role::Device,
            name,
            streams: Vec::new(),
            reads: Vec::new(),
        }
    }

    pub fn consumer(name: Name) -> Self {
        Self {
            role: Role::Consumer,
            name,
            streams: Vec::new(),
            reads: Vec::new(),
        }
    }

    /// Whether this identity may write `stream` (devices only).
    pub fn may_write(&self, stream: &Name) -> bool {
        self.role == Role::Device && (self.streams.is_empty() || self.streams.contains(stream))
    }

    /// The SAN URIs naming this identity and its streams.
    pub fn uris(&self) -> Vec<String> {
        let mut out = vec![self.uri()];
        out.extend(
            self.streams
                .iter()
                .map(|s| format!("{STREAM_URI_PREFIX}{s}")),
        );
        out.extend(
            self.reads
                .iter()
                .map(|(d, s)| format!("{READ_URI_PREFIX}{d}/{s}")),
        );
        out
    }

    /// Whether this identity may read `device`'s `stream` (consumers only).
    pub fn may_read(&self, device: &Name, stream: &Name) -> bool {
        self.role == Role::Consumer
            && (self.reads.is_empty() || self.reads.iter().any(|(d, s)| d == device && s == stream))
    }

    /// Whether this identity may read anything of `device` (its certificate).
    pub fn may_read_device(&self, device: &Name) -> bool {
        self.role == Role::Consumer
            && (self.reads.is_empty() || self.reads.iter().any(|(d, _)| d == device))
    }

    pub fn uri(&self) -> String {
        let prefix = match self.role {
            Role::Device => DEVICE_URI_PREFIX,
            Role::Consumer => CONSUMER_URI_PREFIX,
        };
        format!("{prefix}{}", self.name)
    }

    /// Reads the identity from a DER certificate.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, TransportError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TransportError::BadCertificate(e.to_string()))?
            .ok_or(TransportError::NoIdentity)?;
        let mut found = None;
        let mut streams = Vec::new();
        let mut reads = Vec::new();
        for gn in &san.value.general_names {
            if let GeneralName::URI(uri) = gn {
                if let Some(s) = uri.strip_prefix(STREAM_URI_PREFIX) {
                    streams.push(Name::new(s).map_err(|_| TransportError::NoIdentity)?);
                    continue;
                }
                if let Some(grant) = uri.strip_prefix(READ_URI_PREFIX) {
                    let (d, s) = grant.split_once('/').ok_or(TransportError::NoIdentity)?;
                    reads.push((
                        Name::new(d).map_err(|_| TransportError::NoIdentity)?,
                        Name::new(s).map_err(|_| TransportError::NoIdentity)?,
                    ));
                    continue;
                }
                let parsed = if let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
                    Name::new(id).ok().map(Identity::device)
                } else if let Some(id) = uri.strip_prefix(CONSUMER_URI_PREFIX) {
                    Name::new(id).ok().map(Identity::consumer)
                } else {
                    None
                };
                if let Some(identity) = parsed {
                    if found.is_some() {
                        // Two identities in one certificate: ambiguous, refuse.
                        return Err(TransportError::NoIdentity);
                    }
                    found = Some(identity);
                }
            }
        }
        let mut identity: Identity = found.ok_or(TransportError::NoIdentity)?;
        // Write grants belong to devices, read grants to consumers.
        if (identity.role == Role::Consumer && !streams.is_empty())
            || (identity.role == Role::Device && !reads.is_empty())
        {
            return Err(TransportError::NoIdentity);
        }
        identity.streams = streams;
        identity.reads = reads;
        Ok(identity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.role {
            Role::Device => write!(f, "device {}", self.name),
            Role::Consumer => write!(f, "consumer {}", self.name),
        }
    }
}

/// The device key a certificate certifies, for verifying manifests.
pub fn device_key_from_cert_der(der: &[u8]) -> Result<DeviceVerifyingKey, TransportError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
    DeviceVerifyingKey::from_spki_der(cert.public_key().raw)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))
}

/// Checks that `cert_der` was signed by `ca_der` and is within its validity.
pub fn verify_issued_by(cert_der: &[u8], ca_der: &[u8]) -> Result<(), TransportError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
    if cert.issuer() != ca.subject() {
        return Err(TransportError::NotIssuedByCa(format!(
            "issuer is '{}' but the CA is '{}'",
            cert.issuer(),
            ca.subject()
        )));
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|e| TransportError::NotIssuedByCa(format!("signature check failed: {e}")))?;
    if !cert.validity().is_valid() {
        return Err(TransportError::NotIssuedByCa(format!(
            "outside its validity period {} .. {}",
            cert.validity().not_before,
            cert.validity().not_after
        )));
    }
    Ok(())
}

/// What a certificate says, for reports and renewal decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub identity: Option<Identity>,
    /// The serial number, big-endian bytes as encoded.
    pub serial: Vec<u8>,
}

/// Summarises a DER certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, TransportError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TransportError::BadCertificate(e.to_string()))?;
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        identity: Identity::from_cert_der(der).ok(),
        serial: cert.raw_serial().to_vec(),
    })
}
