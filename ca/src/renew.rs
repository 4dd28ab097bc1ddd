//! Renewal on behalf of a device, asked by an ingest. The ingest is not
//! trusted to have checked anything: the CA itself checks that the device's
//! current certificate is one it issued and is valid, names the device the
//! request is for, certifies the same key, and is not revoked. A hostile
//! ingest can therefore renew only what a device it serves could renew
//! itself, never mint a certificate for a key of its own.

use std::time::Duration;

use sealcam_transport::{identity, Identity, Role};
use x509_parser::prelude::FromDer;

use crate::issue::check_csr;
use crate::{FleetCa, PkiError, RenewError, CA_CERT};

impl FleetCa {
    /// Issues a fresh certificate for the device that holds `current_pem`
    /// (PEM), for the key and name of `csr_pem`, granting exactly what the
    /// current one grants.
    pub fn renew_presented(
        &self,
        current_pem: &str,
        csr_pem: &str,
        lifetime: Duration,
    ) -> Result<String, RenewError> {
        let dir = self.dir.as_path();
        let csr = check_csr(csr_pem).map_err(RenewError::BadCsr)?;
        let current = sealcam_transport::pem::parse_first_cert(current_pem)
            .map_err(|e| RenewError::NotOurs(e.to_string()))?;
        let ca_pem = crate::files::read(&dir.join(CA_CERT))?;
        let ca = sealcam_transport::pem::parse_first_cert(&ca_pem).map_err(|e| {
            RenewError::Pki(PkiError::Io {
                op: "parse",
                path: dir.join(CA_CERT),
                source: std::io::Error::other(e.to_string()),
            })
        })?;
        identity::verify_issued_by(&current, &ca)
            .map_err(|e| RenewError::NotOurs(e.to_string()))?;
        let who =
            Identity::from_cert_der(&current).map_err(|e| RenewError::NotOurs(e.to_string()))?;
        if who.role != Role::Device || who.name != csr.device {
            return Err(RenewError::OtherDevice {
                presented: who.to_string(),
                requested: csr.device,
            });
        }
        let key = identity::device_key_from_cert_der(&current)
            .map_err(|e| RenewError::NotOurs(e.to_string()))?;
        let requested = sealcam_format::DeviceVerifyingKey::from_spki_der(&csr.spki_der)
            .map_err(|e| RenewError::BadCsr(crate::CsrError::Unreadable(e.to_string())))?;
        if key != requested {
            return Err(RenewError::OtherKey);
        }
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&current)
            .map_err(|e| RenewError::NotOurs(e.to_string()))?;
        let serial = hex::encode(parsed.raw_serial());
        if self.is_revoked(Role::Device, &who.name) || self.is_serial_revoked(&serial) {
            return Err(RenewError::Revoked(who.name));
        }
        match self.renew(csr, &who.streams, lifetime) {
            Err(PkiError::Revoked { device }) => Err(RenewError::Revoked(device)),
            other => Ok(other?),
        }
    }
}
