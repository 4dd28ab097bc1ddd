//! `sealcamd firstboot`: provisioning a camera from the bundle its owner put
//! on the card's boot partition ([`bundle`], `docs/ref/provisioning.md`).
//!
//! In order: a camera already provisioned (its config loads and its
//! certificate is there) stops at once. Otherwise the whole bundle is
//! checked before anything is written; the device key is created in the
//! TPM (or the one there reused: a key a failed run created stays and is
//! used again by the next run); the camera enrolls with the token, the
//! certificate kept under a staging name; the bundle's files are installed
//! into the config directory ([`install`]); and the certificate takes its
//! name last. Whatever the outcome, the token is then deleted from the card,
//! durably. A failed run leaves no certificate, so the next boot with a new
//! bundle starts again from the beginning.
//!
//! The outcome is one line ([`Report`]), which the unit sends to the
//! journal and the console.

pub mod bundle;
pub mod install;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sealcam_base::durable;
use sealcam_hal::board::Board;

use crate::config::Config;
use crate::trust::certificate::{self, CertificateError, Enrollment};
use crate::trust::provision::{self, ProvisionError};
use bundle::{Bundle, Checked};
use install::{Group, InstallError};
pub use report::{Outcome, Report, TokenFate};

/// Where the bundle is looked for, in order, when none is named: the boot
/// partition as Debian mounts it on a Raspberry Pi, then as an EFI system
/// partition.
pub const DEFAULT_SEARCH: [&str; 2] = ["/boot/firmware/sealcam", "/boot/efi/sealcam"];

/// What `sealcamd firstboot` was asked to do.
pub struct Options {
    /// The bundle directory; `None`: the first of `search` that exists.
    pub bundle: Option<PathBuf>,
    pub search: Vec<PathBuf>,
    /// Where the camera's config lives (`/etc/sealcam`).
    pub config_dir: PathBuf,
    /// The group the installed files belong to; `None`: left as created.
    pub group: Option<String>,
    /// The board, for the config's `profile = "auto"`.
    pub detected: Board,
}

/// What went wrong once the bundle was found good.
#[derive(Debug, thiserror::Error)]
pub enum FirstbootError {
    #[error(transparent)]
    Group(InstallError),
    #[error("the device key: {0}")]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Enroll(#[from] CertificateError),
    #[error("installing into {}: {source}", dir.display())]
    Install {
        dir: PathBuf,
        #[source]
        source: InstallError,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What a successful enrollment made.
pub struct Enrolled {
    pub device: sealcam_format::Name,
    pub fingerprint: String,
    pub key_created: bool,
    /// The certificate's end of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Provisions the camera from its card, then deletes the card's token.
pub fn run(opts: &Options) -> Report {
    let dir = opts.bundle.clone().or_else(|| {
        opts.search
            .iter()
            .find(|d| d.join(bundle::CONFIG).exists() || d.join(bundle::TOKEN).exists())
            .cloned()
    });
    let outcome = attempt(opts, dir.as_deref());
    let token = match &dir {
        Some(d) => delete_token(d),
        None => TokenFate::Absent,
    };
    Report { outcome, token }
}

fn delete_token(dir: &Path) -> TokenFate {
    let path = dir.join(bundle::TOKEN);
    if std::fs::symlink_metadata(&path).is_err() {
        return TokenFate::Absent;
    }
    match durable::remove(&path) {
        Ok(()) => TokenFate::Deleted,
        Err(e) => TokenFate::NotDeleted(e),
    }
}

/// The certificate of an already provisioned camera.
fn provisioned(config_dir: &Path, detected: Board) -> Option<PathBuf> {
    let path = config_dir.join(bundle::CONFIG);
    let text = std::fs::read_to_string(&path).ok()?;
    let cfg = Config::parse_with(&path, &text, std::iter::empty(), detected).ok()?;
    cfg.identity
        .certificate
        .exists()
        .then_some(cfg.identity.certificate)
}

fn attempt(opts: &Options, dir: Option<&Path>) -> Outcome {
    if let Some(certificate) = provisioned(&opts.config_dir, opts.detected) {
        return Outcome::AlreadyProvisioned { certificate };
    }
    let Some(dir) = dir.filter(|d| d.is_dir()) else {
        return Outcome::NoBundle {
            searched: match dir {
                Some(named) => vec![named.to_owned()],
                None => opts.search.clone(),
            },
        };
    };
    if std::fs::symlink_metadata(dir.join(bundle::TOKEN)).is_err() {
        return Outcome::NoToken {
            dir: dir.to_owned(),
        };
    }
    let checked = match Bundle::read_dir(dir)
        .and_then(|b| bundle::check(b, &opts.config_dir, opts.detected))
    {
        Ok(c) => c,
        Err(error) => {
            return Outcome::Refused {
                dir: dir.to_owned(),
                error,
            }
        }
    };
    let group = match opts.group.as_deref().map(Group::lookup).transpose() {
        Ok(g) => g,
        Err(e) => return Outcome::Failed(FirstbootError::Group(e)),
    };
    match provision_and_install(&checked, &opts.config_dir, group.as_ref()) {
        Ok(enrolled) => Outcome::Enrolled(enrolled),
        Err(e) => Outcome::Failed(e),
    }
}

fn provision_and_install(
    checked: &Checked,
    config_dir: &Path,
    group: Option<&Group>,
) -> Result<Enrolled, FirstbootError> {
    let certificate = &checked.config.identity.certificate;
    let staged_cert = install::staged(certificate, ".new");
    let staged_csr = install::staged(certificate, ".csr");
    let result = enroll_and_install(checked, config_dir, group, &staged_cert, &staged_csr);
    for p in [&staged_cert, &staged_csr] {
        if let Err(e) = install::remove_if_present(p) {
            tracing::warn!(error = %e, "cannot remove a staging file");
        }
    }
    result
}

/// How long an ingest that cannot be reached is asked again at first boot
/// (the unit allows five minutes in all).
const UNREACHABLE_FOR: Duration = Duration::from_secs(180);

fn enroll_and_install(
    checked: &Checked,
    config_dir: &Path,
    group: Option<&Group>,
    staged_cert: &Path,
    staged_csr: &Path,
) -> Result<Enrolled, FirstbootError> {
    let cfg = &checked.config;
    let b = &checked.bundle;
    let p = provision::provision(cfg, false, Some(staged_csr))?;
    let rt = tokio::runtime::Runtime::new().map_err(FirstbootError::Runtime)?;
    let how = Enrollment {
        url: &b.enroll_url,
        token: Some(&b.token),
        // With a token the answer is a certificate or a refusal.
        wait: Duration::ZERO,
        ca: &cfg.upload.ca,
        ek_certificate: p.ek_certificate.as_deref(),
        tpm: p.tpm.clone(),
    };
    // The network may come up after network-online.target says it has (a
    // slow DHCP server, an ingest still starting, a link that drops the
    // first handshakes): an ingest that cannot be reached is asked again
    // for a while. An answer, even a refusal, is final.
    let deadline = Instant::now() + UNREACHABLE_FOR;
    let mut pause = Duration::from_secs(2);
    let summary = loop {
        match rt.block_on(certificate::enroll(
            &how,
            &cfg.device,
            p.signer.clone(),
            staged_cert,
        )) {
            Err(CertificateError::Unreachable { url, reason })
                if Instant::now() + pause < deadline =>
            {
                tracing::warn!(%url, %reason, "the ingest cannot be reached yet; asking again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            other => break other?,
        }
    };
    let install_err = |source| FirstbootError::Install {
        dir: config_dir.to_owned(),
        source,
    };
    let files = b.files();
    for (name, bytes) in files
        .iter()
        .filter(|(name, _)| bundle::INSTALLED.contains(name))
    {
        install::write(&config_dir.join(name), bytes, group).map_err(install_err)?;
    }
    install::commit_certificate(staged_cert, &cfg.identity.certificate, group)
        .map_err(install_err)?;
    Ok(Enrolled {
        device: checked.device.clone(),
        fingerprint: p.fingerprint,
        key_created: p.created,
        not_after: summary.not_after,
    })
}

#[cfg(test)]
mod tests;
