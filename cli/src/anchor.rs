//! The anchor of provenance: the owner's public key and the device roster
//! it signed (`docs/ref/format.md`, Device rosters). With them, each fragment
//! is checked under the key the owner listed for its device at its time;
//! a certificate served by the ingest is never the anchor.
//!
//! `verify`, `decrypt`, `follow` and `fetch` refuse to run without an
//! anchor ([`NO_ANCHOR`]). `--trust-server` is the explicit development
//! door: it trusts the certificate the ingest serves, says so on stderr on
//! every run, and every report names it.
//!
//! Every roster accepted is checked against the owner key and against the
//! newest version seen of that owner's roster ([`crate::pins`]), which it
//! then becomes: an older roster is refused as a rollback. A verifier that
//! has never seen the owner's roster has no pin yet; the owner tells it the
//! current version out of band (`--min-roster-version`), so that its first
//! contact cannot be rolled back either.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sealcam_format::roster::{DeviceRoster, KeyOrigin, SignedDeviceRoster};
use sealcam_format::DeviceVerifyingKey;

use crate::owner_key;
use crate::pins::Pins;

/// The refusal of a command run without an anchor.
pub const NO_ANCHOR: &str = "no anchor of provenance: pass the owner's public key with --owner OWNER.pub \
(from `sealcam owner init`; the roster it signed comes from --roster ROSTER.sdr, the fetched directory's \
roster.sdr, or the ingest), or, for development only, --trust-server to trust the device certificate \
the ingest serves";

/// Printed on stderr by every run with `--trust-server`.
pub const TRUST_SERVER_WARNING: &str = "WARNING: --trust-server: provenance is NOT anchored. \
The device certificate the ingest served is trusted, so a hostile ingest can mint a certificate \
and forge footage that passes. Development only; pass --owner OWNER.pub instead.";

/// The roster file `fetch` saves beside the fragments.
pub const ROSTER_FILE: &str = "roster.sdr";

/// `--owner`, `--roster`, `--trust-server`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AnchorArgs {
    /// The owner's public key (OWNER.pub from `sealcam owner init`): the
    /// anchor. Every fragment is checked under the key its roster lists.
    #[arg(long, conflicts_with = "trust_server")]
    pub owner: Option<PathBuf>,
    /// The owner-signed device roster (`sealcam roster add`). Default: the
    /// fetched directory's roster.sdr, or (fetch, follow) the newest the
    /// ingest serves; either way checked against --owner.
    #[arg(long, requires = "owner")]
    pub roster: Option<PathBuf>,
    /// A TPM maker's CA certificate (PEM; repeatable): check the TPM
    /// evidence of every TPM-resident key in the roster against these
    /// again, offline, rather than rely on the owner's check when it was
    /// added.
    #[arg(long = "tpm-ca", requires = "owner")]
    pub tpm_ca: Vec<PathBuf>,
    /// Refuse any roster older than this version, as the owner states it
    /// (`sealcam roster show`): the rollback check for a verifier that has
    /// not seen this owner's roster before and so has no pin yet.
    #[arg(long, value_name = "VERSION", requires = "owner")]
    pub min_roster_version: Option<u64>,
    /// DEVELOPMENT ONLY: trust the device certificate the ingest serves
    /// instead of an owner-signed roster. A hostile ingest can forge
    /// footage that then passes.
    #[arg(long)]
    pub trust_server: bool,
}

/// What provenance is checked against.
pub enum Anchor {
    /// The owner's key, and the roster file if one was named.
    Owner(OwnerAnchor),
    /// The certificate the ingest served (`--trust-server`).
    TrustServer,
}

pub struct OwnerAnchor {
    pub key: DeviceVerifyingKey,
    pub fingerprint: String,
    /// `--roster`, if given.
    pub roster_file: Option<PathBuf>,
    /// `--tpm-ca`: makers' CAs to check the roster's TPM evidence against.
    pub tpm_ca: Vec<PathBuf>,
    /// `--min-roster-version`.
    pub min_roster_version: Option<u64>,
}

impl AnchorArgs {
    /// The anchor, or the refusal [`NO_ANCHOR`]. With `--trust-server`,
    /// prints [`TRUST_SERVER_WARNING`] on stderr.
    pub fn resolve(&self) -> anyhow::Result<Anchor> {
        if self.trust_server {
            eprintln!("{TRUST_SERVER_WARNING}");
            return Ok(Anchor::TrustServer);
        }
        let Some(path) = &self.owner else {
            anyhow::bail!(NO_ANCHOR);
        };
        let key = owner_key::load_public(path)?;
        Ok(Anchor::Owner(OwnerAnchor {
            fingerprint: key.fingerprint(),
            key,
            roster_file: self.roster.clone(),
            tpm_ca: self.tpm_ca.clone(),
            min_roster_version: self.min_roster_version,
        }))
    }
}

impl OwnerAnchor {
    /// Checks a roster against the owner key and the pinned version, and
    /// pins its version. `source` names where it came from, for errors.
    pub fn accept(&self, bytes: &[u8], source: &str) -> anyhow::Result<DeviceRoster> {
        let roster = SignedDeviceRoster::parse(bytes)
            .with_context(|| format!("the roster from {source}"))?
            .verify(&self.key)
            .with_context(|| {
                format!(
                    "the roster from {source} must be signed by the owner key {}",
                    self.fingerprint
                )
            })?;
        if let Some(min) = self.min_roster_version.filter(|m| roster.version < *m) {
            anyhow::bail!(
                "refusing version {} of the roster signed by owner key {} ({source}): the owner says version {min} or newer is current (--min-roster-version). An older roster can still list a key revoked since: this is a rollback, by a hostile ingest or a stale copy. Use the newest roster.",
                roster.version,
                self.fingerprint
            );
        }
        if !self.tpm_ca.is_empty() {
            let checked = check_evidence(&roster, &self.tpm_ca)?;
            eprintln!(
                "roster: the TPM evidence of {checked} key(s) holds against the TPM maker CAs given (EK chain and certify; that each attestation key lived in that TPM was checked by the fleet CA at enrollment)"
            );
        }
        let mut pins = Pins::load()?;
        pins.check_and_raise(&self.fingerprint, roster.version, source)?;
        Ok(roster)
    }

    /// Reads and accepts a roster file.
    pub fn accept_file(&self, path: &Path) -> anyhow::Result<(DeviceRoster, Vec<u8>)> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let roster = self.accept(&bytes, &path.display().to_string())?;
        Ok((roster, bytes))
    }

    /// The roster for a fetched directory: `--roster`, or the directory's
    /// roster.sdr.
    pub fn roster_for_dir(&self, dir: &Path) -> anyhow::Result<DeviceRoster> {
        let path = match &self.roster_file {
            Some(p) => p.clone(),
            None => {
                let p = dir.join(ROSTER_FILE);
                if !p.exists() {
                    anyhow::bail!(
                        "{} holds no {ROSTER_FILE}: pass --roster ROSTER.sdr, or fetch with --owner, which saves the roster",
                        dir.display()
                    );
                }
                p
            }
        };
        Ok(self.accept_file(&path)?.0)
    }

    /// The line reports start with.
    pub fn describe(&self, roster: &DeviceRoster) -> String {
        format!(
            "anchor:    owner key {}, roster version {}",
            self.fingerprint, roster.version
        )
    }
}

/// The report line of a run with `--trust-server`.
pub const TRUST_SERVER_REPORT: &str = "anchor:    NONE (--trust-server): the device certificate the ingest served was trusted; development only";

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
