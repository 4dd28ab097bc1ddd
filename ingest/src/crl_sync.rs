//! The revocation list, fetched from the CA service on the poll interval
//! and kept in the ingest's own directory (`<pki>/crl.pem`), so that
//! several ingest instances share one list without sharing a directory.
//!
//! A list is taken only if the fleet CA signed it and its CRL number is
//! above the one held: a list replayed from before a revocation (by
//! whoever sits between the ingest and the CA, or a stale copy) is never
//! taken. The one taken is written durably before it is used; if the CA
//! service cannot be reached, the last good list stays in force until its
//! `nextUpdate`: after that the TLS layer refuses every client (devices
//! keep their fragments and retry) until a fresh list comes, because an
//! expired list no longer says who is revoked now (whoever can keep the
//! ingest from its CA must not be able to keep a stolen camera accepted).
//! With no list at all, neither cached nor obtainable, the ingest does
//! not start.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use sealcam_api::ca::CRL_PATH;
use sealcam_base::durable::{self, DurableError};
use sealcam_transport::crl::{check_crl, CrlError, CrlInfo};
use sealcam_transport::{pem, TransportError};

use crate::ca_client::{CaClient, CaClientError};

/// The cached list's name in the ingest's directory.
pub const CRL_CACHE: &str = "crl.pem";

#[derive(Debug, thiserror::Error)]
pub enum CrlSyncError {
    #[error("cannot read the fleet CA certificate: {0}")]
    Ca(#[from] TransportError),
    #[error("no revocation list: none cached in {cache} and none obtained from the CA service ({reason}); start the CA service (`sealcam-ca serve`) and check `[ca] url` in the ingest's config, then start the ingest again")]
    NoCrl { cache: PathBuf, reason: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Why one poll of the CA service did not bring a list.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Unreachable(#[from] CaClientError),
    #[error("the CA service answered {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("the CA service sent a list that is not taken: {0}")]
    Invalid(#[from] CrlError),
    #[error("cannot keep the revocation list: {0}")]
    Write(#[from] DurableError),
}

/// What one poll brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A newer list, now cached: it must be loaded.
    Newer { number: u64 },
    /// The list held already.
    Same,
    /// An older list than the one held: not taken.
    Older { offered: u64, held: u64 },
}

/// The revocation list's state: where it is cached, which number it has.
pub struct CrlSync {
    client: CaClient,
    ca_der: Vec<u8>,
    cache: PathBuf,
    held: Option<CrlInfo>,
}

impl CrlSync {
    /// Reads the fleet CA certificate and the cached list (if any, and if
    /// the CA signed it) from the ingest's directory `pki`.
    pub fn new(client: CaClient, pki: &Path) -> Result<Self, CrlSyncError> {
        let ca_der = pem::load_certs(&pki.join("ca.crt"))?
            .into_iter()
            .next()
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| TransportError::NoPem {
                path: pki.join("ca.crt").display().to_string(),
                what: "certificate",
                label: "CERTIFICATE",
            })?;
        let cache = pki.join(CRL_CACHE);
        let held = match std::fs::read(&cache) {
            Ok(bytes) => match check_crl(&bytes, &ca_der) {
                Ok(info) => Some(info),
                Err(e) => {
                    tracing::error!(path = %cache.display(), error = %e, "the cached revocation list is not taken");
                    None
                }
            },
            Err(_) => None,
        };
        Ok(Self {
            client,
            ca_der,
            cache,
            held,
        })
    }

    /// The number of the list in force, if there is one.
    pub fn held(&self) -> Option<u64> {
        self.held.map(|i| i.number)
    }

    /// The `nextUpdate` (Unix seconds) of the list in force, if it is past
    /// at `now_unix`: the ingest refuses every client until a fresh one.
    pub fn expired_since(&self, now_unix: i64) -> Option<i64> {
        self.held
            .filter(|i| i.expired_at(now_unix))
            .and_then(|i| i.next_update_unix)
    }

    /// Where the list in force is kept.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// At start: a list from the CA service, or else the cached one; with
    /// neither, an error that says how to fix it.
    pub async fn initial(&mut self) -> Result<(), CrlSyncError> {
        match self.fetch().await {
            Ok(Fetched::Older { offered, held }) => {
                tracing::error!(offered, held, "the CA service offers an older revocation list than the one cached; keeping the cached one");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => match self.held() {
                Some(number) => {
                    tracing::warn!(error = %e, number, url = %self.client.url(), "cannot get the revocation list from the CA service; starting with the cached one");
                    Ok(())
                }
                None => Err(CrlSyncError::NoCrl {
                    cache: self.cache.clone(),
                    reason: e.to_string(),
                }),
            },
        }
    }

    /// Asks the CA service for its list and takes it if it is newer.
    pub async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let answer = self
            .client
            .request(Method::GET, CRL_PATH, None, None, Bytes::new())
            .await?;
        if answer.status != StatusCode::OK {
            return Err(FetchError::Refused {
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        let info = check_crl(&answer.body, &self.ca_der)?;
        let number = info.number;
        match self.held() {
            Some(held) if number < held => Ok(Fetched::Older {
                offered: number,
                held,
            }),
            Some(held) if number == held && self.cache.exists() => Ok(Fetched::Same),
            _ => {
                durable::replace(&self.cache, &answer.body)?;
                self.held = Some(info);
                Ok(Fetched::Newer { number })
            }
        }
    }
}
