//! The one line `sealcamd firstboot` reports: what happened and, when it
//! failed, what the owner does next.

use std::fmt;
use std::path::PathBuf;

use sealcam_base::durable::DurableError;

use super::bundle::BundleError;
use super::{Enrolled, FirstbootError};
use crate::trust::certificate::CertificateError;

/// What a run did.
pub enum Outcome {
    Enrolled(Enrolled),
    /// The camera has its config and certificate: nothing to do.
    AlreadyProvisioned {
        certificate: PathBuf,
    },
    /// Not provisioned, and no bundle on the card.
    NoBundle {
        searched: Vec<PathBuf>,
    },
    /// A bundle without its token: a run before this one took it.
    NoToken {
        dir: PathBuf,
    },
    /// The bundle failed its check; nothing was written.
    Refused {
        dir: PathBuf,
        error: BundleError,
    },
    /// The bundle was good, provisioning or enrollment failed; no
    /// certificate was installed.
    Failed(FirstbootError),
}

/// What became of the token on the card.
pub enum TokenFate {
    Deleted,
    Absent,
    NotDeleted(DurableError),
}

/// A run's outcome and the token's fate, shown as one line.
pub struct Report {
    pub outcome: Outcome,
    pub token: TokenFate,
}

impl Report {
    /// The report as one line (an error's text may hold line breaks).
    pub fn line(&self) -> String {
        self.to_string()
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the camera is provisioned now.
    pub fn success(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Enrolled(_) | Outcome::AlreadyProvisioned { .. }
        )
    }
}

/// The next step after a failure that used up the token (the CA took it,
/// or refused it as unknown or used): the card's copy is gone too.
const FRESH: &str =
    "write a new bundle with a fresh token (sealcam-ca device add, then sealcam card write)";
/// The next step after a failure that did not use the token: the card's
/// copy is gone, the owner's is still good.
const AGAIN: &str = "write the bundle again (sealcam card write); its token was not used";

fn failure(f: &mut fmt::Formatter<'_>, e: &FirstbootError) -> fmt::Result {
    match e {
        FirstbootError::Enroll(CertificateError::Refused(reason)) if reason.starts_with("401") => {
            write!(
                f,
                "enrollment refused: the token is unknown or was already used; {FRESH}"
            )
        }
        FirstbootError::Enroll(CertificateError::Refused(reason)) => {
            write!(f, "enrollment refused by the ingest ({reason}); {AGAIN}")
        }
        FirstbootError::Enroll(e @ CertificateError::Unreachable { .. }) => write!(
            f,
            "enrollment failed: {}; check the camera's network and the bundle's enroll-url, then {AGAIN}",
            sealcam_base::error_chain(e)
        ),
        // The CA answered with a certificate: the token is used.
        e @ (FirstbootError::Install { .. } | FirstbootError::Enroll(_)) => write!(
            f,
            "provisioning failed, the camera is not provisioned: {}; {FRESH}",
            sealcam_base::error_chain(e)
        ),
        e => write!(
            f,
            "provisioning failed, the camera is not provisioned: {}; {AGAIN}",
            sealcam_base::error_chain(e)
        ),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sealcam-firstboot: ")?;
        match &self.outcome {
            Outcome::Enrolled(e) => write!(
                f,
                "camera {} provisioned and enrolled (device key {}, {} in the TPM; certificate valid until {}); starting sealcamd",
                e.device,
                e.fingerprint,
                if e.key_created { "created" } else { "reused" },
                crate::date::rfc3339(e.not_after)
            )?,
            Outcome::AlreadyProvisioned { certificate } => write!(
                f,
                "already provisioned ({} is there); nothing to do",
                certificate.display()
            )?,
            Outcome::NoBundle { searched } => write!(
                f,
                "this camera is not provisioned and there is no bundle in {}; put one on the card's boot partition (sealcam card write)",
                searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )?,
            Outcome::NoToken { dir } => write!(
                f,
                "this camera is not provisioned and the bundle in {} has no token (every first boot deletes it, whatever the outcome); {FRESH}",
                dir.display()
            )?,
            Outcome::Refused { dir, error } => write!(
                f,
                "the bundle in {} is refused, nothing was changed: {}; once it is fixed, {AGAIN}",
                dir.display(),
                sealcam_base::error_chain(error)
            )?,
            Outcome::Failed(e) => failure(f, e)?,
        }
        match &self.token {
            TokenFate::Deleted => f.write_str(" [token deleted from the card]"),
            TokenFate::Absent => Ok(()),
            TokenFate::NotDeleted(e) => write!(
                f,
                " [the token could NOT be deleted from the card ({e}): delete sealcam/token by hand]"
            ),
        }
    }
}
