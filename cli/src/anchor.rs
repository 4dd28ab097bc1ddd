//! The anchor of provenance: the owner's public key and the device roster
//! it signed (`docs/ref/format.md`, Device rosters). With them, each fragment
//! is checked under the key the owner listed for its device at its time;
//! a certificate served by the ingest is never the anchor.

use std::path::PathBuf;

use anyhow::Context;
use sealcam_format::roster::{DeviceRoster, SignedDeviceRoster};

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
        Ok(Some(roster))
    }
}
