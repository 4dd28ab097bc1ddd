//! Uploading the spool's signed chain restart records
//! (`pipeline/spool/epoch.rs`) before the backlog: a verifier needs the
//! record to accept the break before the new epoch.

use sealcam_api::{media, Route};

use super::link::Link;
use super::{Outcome, Uplink, UplinkError, UploadError};
use crate::pipeline::spool::PendingRestart;

impl Uplink {
    /// One attempt to upload one restart record.
    async fn upload_restart(&self, r: &PendingRestart) -> Result<Outcome, UploadError> {
        let bytes = match tokio::fs::read(&r.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(source) => {
                return Err(UploadError::Read {
                    path: r.path.clone(),
                    source,
                })
            }
        };
        let route = Route::UploadRestart {
            device: self.device.clone(),
            stream: self.stream.clone(),
            first_sequence: r.first_sequence,
        };
        let resp = self
            .client()
            .put(format!("{}{}", self.base, route.path()))
            .header(reqwest::header::CONTENT_TYPE, media::RESTART)
            .body(bytes)
            .send()
            .await;
        self.outcome(resp).await
    }

    /// Sends the restart records waiting in the spool, oldest first; stops
    /// at the first that does not go through (the link's backoff applies).
    /// A record the ingest refuses stays in the spool, for `sealcamd spool
    /// list` to show: its epoch cannot verify without it.
    pub(super) async fn send_restarts(&self, link: &Link) -> Result<(), UplinkError> {
        for r in self.spool.pending_restarts()? {
            match self.upload_restart(&r).await {
                Ok(Outcome::Stored) => {
                    self.spool.restart_uploaded(&r)?;
                    link.succeeded();
                    tracing::info!(
                        first_sequence = r.first_sequence,
                        "chain restart record stored by the ingest"
                    );
                }
                Ok(Outcome::Gone) => {}
                Ok(Outcome::Rejected(reason)) | Ok(Outcome::Damaged(reason)) => {
                    tracing::error!(first_sequence = r.first_sequence, %reason, file = %r.path.display(), "the ingest refuses this camera's chain restart record; it stays in the spool, and the new epoch does not verify without it: see `sealcamd spool list`");
                    link.failed(&UploadError::Rejected {
                        sequence: r.first_sequence,
                        reason,
                        tries: 1,
                    });
                    return Ok(());
                }
                Err(err) => {
                    self.metrics.upload_failures.inc();
                    link.failed(&err);
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
