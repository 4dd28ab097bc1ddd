//! The camera's check for updates and the download of an offered bundle
//! (`docs/ref/protocol.md`, Updates).
//!
//! A check sends the running release version and the last update's
//! outcome, and takes an offer only for this camera's compatible and a
//! newer version, no larger than `update.max_bytes`. The bundle is
//! downloaded into `<dir>/<sha256>.part`, resumed with `Range` from what is
//! there after an interruption, its SHA-256 checked against the offer, and
//! only then renamed `ready.raucb` for the installer. A bundle whose bytes
//! do not hash to the offer's is deleted, never handed on.
//!
//! The server is not trusted with what is installed: RAUC checks the
//! bundle's signature, and the installer its compatible and version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sealcam_api::update::{
    compare_versions, valid_sha256, valid_version, INSTALLED_VERSION, UPDATE_OUTCOME,
};
use sealcam_api::{Route, UpdateOffer};
use sealcam_format::Name;
use sealcam_transport::{pem, tls, ExternalSigner};
use sha2::{Digest, Sha256};

use super::{outcome, release, UpdateError, READY};
use crate::config::Config;

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Nothing newer is offered.
    UpToDate,
    /// A bundle is waiting for the installer already.
    Waiting,
    /// A newer bundle is downloaded, verified and ready for the installer.
    Ready { version: String, sha256: String },
    /// The offer is the very bundle the installer refused (its last
    /// outcome, `why`) for good, or `until` a time not yet come: not
    /// fetched.
    Declined {
        version: String,
        why: String,
        until: Option<u64>,
    },
}

/// What a declined offer's log line says.
pub fn declined(until: Option<u64>) -> String {
    match until {
        None => "the offered bundle is the one this camera refused for good; not fetched again"
            .to_owned(),
        Some(t) => format!(
            "the offered bundle is the one this camera gave up after an unproven trial; not fetched before {}, when it is tried again",
            crate::date::rfc3339_u64(t)
        ),
    }
}

/// How the update server is reached.
enum Link {
    /// The ingest, with the device's certificate (re-read at every check,
    /// so that a renewed certificate is used) and key.
    Device {
        ca: PathBuf,
        certificate: PathBuf,
        signer: Arc<dyn ExternalSigner>,
    },
    /// Another server, authenticated by these roots; no client certificate.
    Server { roots: PathBuf },
}

/// Checks and downloads, for one camera.
pub struct Updater {
    cfg: crate::config::UpdateConfig,
    link: Link,
    base: String,
    /// The spool, which a download must leave room for.
    spool_dir: std::path::PathBuf,
    spool_max: u64,
}

impl Updater {
    /// With the ingest (mutual TLS, the device's identity) unless
    /// `update.url` names another server (server-authenticated TLS with
    /// `update.ca`, or the fleet CA).
    pub fn new(cfg: &Config, signer: Arc<dyn ExternalSigner>) -> Result<Self, UpdateError> {
        let u = &cfg.update;
        let (link, base) = match &u.url {
            None => (
                Link::Device {
                    ca: cfg.upload.ca.clone(),
                    certificate: cfg.identity.certificate.clone(),
                    signer,
                },
                cfg.upload.url.trim_end_matches('/').to_owned(),
            ),
            Some(url) => (
                Link::Server {
                    roots: u.ca.clone().unwrap_or_else(|| cfg.upload.ca.clone()),
                },
                url.clone(),
            ),
        };
        let updater = Self {
            cfg: u.clone(),
            link,
            base,
            spool_dir: cfg.spool_dir.clone(),
            spool_max: cfg.spool_bounds.max_bytes,
        };
        // Anything wrong with the certificates is said at start.
        updater.client()?;
        Ok(updater)
    }

    /// A client for one check and its download.
    fn client(&self) -> Result<reqwest::Client, UpdateError> {
        let tls = match &self.link {
            Link::Device {
                ca,
                certificate,
                signer,
            } => tls::device_client_config(
                pem::load_roots(ca)?,
                pem::load_certs(certificate)?,
                signer.clone(),
            )?,
            Link::Server { roots } => tls::enrollment_client_config(pem::load_roots(roots)?)?,
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| UpdateError::Client(sealcam_base::error_chain(&e)))
    }

    fn server_error(&self, reason: impl Into<String>) -> UpdateError {
        UpdateError::Server {
            url: self.base.clone(),
            reason: reason.into(),
        }
    }

    /// One check, and the download of what it offers.
    pub async fn check(&self) -> Result<Checked, UpdateError> {
        let dir = &self.cfg.dir;
        if dir.join(READY).exists() {
            return Ok(Checked::Waiting);
        }
        let compatible = release::compatible(&self.cfg)?;
        let installed = release::installed_version(&self.cfg)?;
        let name = Name::new(&compatible).map_err(|e| UpdateError::Release(e.to_string()))?;
        let url = format!(
            "{}{}",
            self.base,
            Route::UpdateOffer { compatible: name }.path()
        );
        let client = self.client()?;
        let mut req = client.get(&url).header(INSTALLED_VERSION, &installed);
        let last = outcome::read(dir);
        if let Some(o) = &last {
            req = req.header(
                UPDATE_OUTCOME,
                sealcam_api::update::clean_outcome(&o.line()),
            );
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.server_error(sealcam_base::error_chain(&e)))?;
        match resp.status().as_u16() {
            204 => return Ok(Checked::UpToDate),
            200 => {}
            s => {
                let body = crate::answer::text(resp).await;
                let why = sealcam_api::ErrorBody::from_response_text(&body).error;
                return Err(self.server_error(format!("{s}: {why}")));
            }
        }
        let offer: UpdateOffer =
            serde_json::from_str(&crate::answer::text(resp).await).map_err(|e| {
                self.server_error(format!("the offer is not JSON of an update offer: {e}"))
            })?;
        check_offer(&offer, &compatible, &installed, self.cfg.max_bytes)?;
        // Every refusal seen is kept, not only the last outcome's: a
        // server offering two refused bundles in turn fetches neither.
        let mut declined = super::declined::List::read(dir);
        if last.as_ref().is_some_and(|o| declined.note(o)) {
            if let Err(e) = declined.write(dir) {
                tracing::warn!(error = %e, "cannot keep the list of declined bundles");
            }
        }
        if let Some(d) = declined.find(&offer.sha256, crate::date::now_unix()) {
            return Ok(Checked::Declined {
                version: offer.version,
                why: d.line.clone(),
                until: d.until,
            });
        }
        std::fs::create_dir_all(dir).map_err(UpdateError::io("creating", dir))?;
        let part = dir.join(format!("{}.part", offer.sha256));
        remove_other_parts(dir, &part);
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let spool = super::room::Spool {
            dir: &self.spool_dir,
            max_bytes: self.spool_max,
        };
        super::room::check(dir, offer.size.saturating_sub(have), &spool)
            .map_err(UpdateError::NoRoom)?;
        self.download(&client, &offer, &part).await?;
        let got = sha256_of(&part)?;
        if got != offer.sha256 {
            sealcam_base::durable::remove(&part)?;
            return Err(UpdateError::HashMismatch {
                want: offer.sha256,
                got,
            });
        }
        sealcam_base::durable::rename(&part, &dir.join(READY))?;
        tracing::info!(version = %offer.version, sha256 = %offer.sha256, "update bundle downloaded and verified; handed to the installer");
        Ok(Checked::Ready {
            version: offer.version,
            sha256: offer.sha256,
        })
    }

    /// Fetches the bundle into `part`, from where an earlier try stopped.
    async fn download(
        &self,
        client: &reqwest::Client,
        offer: &UpdateOffer,
        part: &Path,
    ) -> Result<(), UpdateError> {
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > offer.size {
            std::fs::remove_file(part).map_err(UpdateError::io("removing", part))?;
            have = 0;
        }
        if have == offer.size {
            return Ok(());
        }
        let name = Name::new(&offer.sha256).map_err(|e| UpdateError::Release(e.to_string()))?;
        let url = format!("{}{}", self.base, Route::ReadBundle { sha256: name }.path());
        let mut req = client.get(&url);
        if have > 0 {
            tracing::info!(
                from = have,
                size = offer.size,
                "resuming the bundle download"
            );
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| self.server_error(sealcam_base::error_chain(&e)))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .map_err(UpdateError::io("opening", part))?;
        match resp.status().as_u16() {
            206 if have > 0 => {}
            200 => {
                // The whole bundle again: start over.
                file.set_len(0)
                    .map_err(UpdateError::io("truncating", part))?;
                have = 0;
            }
            s => {
                let body = crate::answer::text(resp).await;
                let why = sealcam_api::ErrorBody::from_response_text(&body).error;
                return Err(self.server_error(format!("bundle: {s}: {why}")));
            }
        }
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived, durably: the next check resumes.
                    file.sync_data().map_err(UpdateError::io("syncing", part))?;
                    return Err(self.server_error(format!(
                        "the bundle download broke off after {have} of {} bytes ({}); it resumes at the next check",
                        offer.size,
                        sealcam_base::error_chain(&e)
                    )));
                }
            };
            have += chunk.len() as u64;
            if have > offer.size {
                drop(file);
                sealcam_base::durable::remove(part)?;
                return Err(self.server_error(format!(
                    "the bundle is longer than the {} bytes offered; deleted",
                    offer.size
                )));
            }
            file.write_all(&chunk)
                .map_err(UpdateError::io("writing", part))?;
        }
        file.sync_all().map_err(UpdateError::io("syncing", part))?;
        if have != offer.size {
            return Err(self.server_error(format!(
                "the bundle ended after {have} of {} bytes; it resumes at the next check",
                offer.size
            )));
        }
        Ok(())
    }

    /// Checks every `interval` (the first at once), forever; failures are
    /// logged and tried again at the next check. A new outcome from the
    /// installer or the health check is reported within a minute, not at
    /// the next interval.
    pub async fn run_forever(&self) -> std::convert::Infallible {
        let outcome_file = outcome::path(&self.cfg.dir);
        let changed = || {
            std::fs::metadata(&outcome_file)
                .and_then(|m| m.modified())
                .ok()
        };
        loop {
            let seen = changed();
            match self.check().await {
                Ok(Checked::UpToDate) => tracing::debug!("no newer update offered"),
                Ok(Checked::Waiting) => tracing::debug!("an update bundle waits for the installer"),
                Ok(Checked::Ready { .. }) => {}
                Ok(Checked::Declined {
                    version,
                    why,
                    until,
                }) => tracing::info!(
                    %version,
                    last_outcome = %why,
                    "{}",
                    declined(until)
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "update check failed; trying again at the next check")
                }
            }
            let until = tokio::time::Instant::now() + self.cfg.interval;
            while tokio::time::Instant::now() < until && changed() == seen {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        }
    }
}

/// Whether an offer may be fetched by a camera of `compatible` that runs
/// `installed`, with room for `max_bytes`.
pub fn check_offer(
    offer: &UpdateOffer,
    compatible: &str,
    installed: &str,
    max_bytes: u64,
) -> Result<(), UpdateError> {
    let refuse = |reason: String| UpdateError::Refused {
        version: offer.version.clone(),
        reason,
    };
    if offer.compatible != compatible {
        return Err(refuse(format!(
            "it is for {:?}, this camera is {compatible:?}",
            offer.compatible
        )));
    }
    if !valid_version(&offer.version) {
        return Err(refuse("its version is not a release version".into()));
    }
    if !valid_sha256(&offer.sha256) {
        return Err(refuse("its sha256 is not 64 lowercase hex digits".into()));
    }
    if compare_versions(&offer.version, installed).is_le() {
        return Err(refuse(format!(
            "it is not newer than the running release {installed}"
        )));
    }
    if offer.size > max_bytes {
        return Err(refuse(format!(
            "{} bytes is more than update.max_bytes ({max_bytes})",
            offer.size
        )));
    }
    Ok(())
}

/// Removes partial downloads of other bundles (an offer replaced).
fn remove_other_parts(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p: PathBuf = e.path();
        if p.extension().is_some_and(|x| x == "part") && p != keep {
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn sha256_of(path: &Path) -> Result<String, UpdateError> {
    let mut f = std::fs::File::open(path).map_err(UpdateError::io("opening", path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(UpdateError::io("reading", path))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offer(compatible: &str, version: &str, size: u64) -> UpdateOffer {
        UpdateOffer {
            compatible: compatible.into(),
            version: version.into(),
            size,
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn a_hostile_offer_is_refused_before_anything_is_fetched() {
        let c = "sealcam-qemu-amd64";
        assert!(check_offer(&offer(c, "1.1", 10), c, "1.0", 100).is_ok());
        for (o, why) in [
            (offer(c, "0.9", 10), "not newer"),
            (offer(c, "1.0", 10), "not newer"),
            (offer("sealcam-rpi4", "2.0", 10), "sealcam-rpi4"),
            (offer(c, "2.0", 101), "max_bytes"),
            (offer(c, "../x", 10), "release version"),
        ] {
            let e = check_offer(&o, c, "1.0", 100).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut bad_hash = offer(c, "2.0", 1);
        bad_hash.sha256 = "../../etc/passwd".into();
        assert!(check_offer(&bad_hash, c, "1.0", 100).is_err());
    }
}
