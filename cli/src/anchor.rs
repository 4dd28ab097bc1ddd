//! The anchor of provenance: the owner's public key and the device roster
//! it signed (`docs/ref/format.md`, Device rosters). With them, each fragment
//! is checked under the key the owner listed for its device at its time;
//! a certificate served by the ingest is never the anchor.

use std::path::PathBuf;

use anyhow::Context;
use sealcam_format::roster::{DeviceRoster, KeyOrigin, SignedDeviceRoster};

use crate::owner_key;

/// `--owner` and `--roster`, given together.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AnchorArgs {
    /// The owner's public key (OWNER.pub from `sealcam owner init`), which
    /// must have signed the roster.
    #[arg(long, requires = "roster")]
    pub owner: Option<PathBuf>,
    /// The owner-signed device roster (`sealcam roster add`): which key
    /// speaks for which camera, and when.
    #[arg(long, requires = "owner")]
    pub roster: Option<PathBuf>,
    /// A TPM maker's CA certificate (PEM; repeatable): check the TPM
    /// evidence of every TPM-resident key in the roster against these
    /// again, offline, rather than rely on the owner's check when it was
    /// added.
    #[arg(long = "tpm-ca", requires = "roster")]
    pub tpm_ca: Vec<PathBuf>,
}

impl AnchorArgs {
    /// The roster, checked against the owner's key; `None` without
    /// `--owner` and `--roster`.
    pub fn load(&self) -> anyhow::Result<Option<DeviceRoster>> {
        let (Some(owner), Some(path)) = (&self.owner, &self.roster) else {
            return Ok(None);
        };
        let owner = owner_key::load_public(owner)?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let roster = SignedDeviceRoster::parse(&bytes)
            .with_context(|| path.display().to_string())?
            .verify(&owner)
            .with_context(|| {
                format!(
                    "{}: the roster must be signed by the owner key {}",
                    path.display(),
                    owner.fingerprint()
                )
            })?;
        if !self.tpm_ca.is_empty() {
            let checked = check_evidence(&roster, &self.tpm_ca)?;
            eprintln!(
                "roster: the TPM evidence of {checked} key(s) holds against the TPM maker CAs given"
            );
        }
        Ok(Some(roster))
    }
}

/// Checks the TPM evidence of every TPM-resident key in `roster` against
/// the makers' CAs in `tpm_ca`; returns how many it checked.
fn check_evidence(roster: &DeviceRoster, tpm_ca: &[PathBuf]) -> anyhow::Result<usize> {
    let mut checked = 0;
    let mut roots = Vec::new();
    for path in tpm_ca {
        let certs =
            sealcam_transport::pem::load_certs(path).with_context(|| path.display().to_string())?;
        roots.extend(certs.into_iter().map(|c| c.as_ref().to_vec()));
    }
    for record in &roster.keys {
        if let KeyOrigin::Tpm(evidence) = &record.origin {
            sealcam_attest::verify_evidence(evidence, &record.key, None, &roots).with_context(
                || {
                    format!(
                        "the roster's TPM evidence for device {} key {} does not hold",
                        record.device,
                        record.key.fingerprint()
                    )
                },
            )?;
            checked += 1;
        }
    }
    Ok(checked)
}
