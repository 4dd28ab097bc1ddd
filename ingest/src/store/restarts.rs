//! Chain restart records (`sealcam_format::restart`): one object per
//! epoch a stream begins, by its first sequence, written create-only
//! beside the fragments; nothing of an earlier epoch is touched.

use bytes::Bytes;
use sealcam_format::Name;

use super::layout::{restart_path, restarts_prefix};
use super::{PutOutcome, Store, StoreError};

impl Store {
    /// Stores a device's restart record, create-only: the same bytes again
    /// are [`PutOutcome::AlreadyStored`], other bytes a
    /// [`StoreError::RestartConflict`].
    pub async fn put_restart(
        &self,
        device: &Name,
        stream: &Name,
        first_sequence: u64,
        bytes: Bytes,
    ) -> Result<PutOutcome, StoreError> {
        let path = restart_path(device, stream, first_sequence);
        if self.put_new(&path, bytes.clone()).await? {
            return Ok(PutOutcome::Stored);
        }
        match self.read(&path).await? {
            Some(existing) if existing == bytes => Ok(PutOutcome::AlreadyStored),
            _ => Err(StoreError::RestartConflict {
                device: device.clone(),
                stream: stream.clone(),
                first_sequence,
            }),
        }
    }

    /// The restart record stored for the epoch that begins at
    /// `first_sequence`, if any.
    pub async fn restart(
        &self,
        device: &Name,
        stream: &Name,
        first_sequence: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        self.read(&restart_path(device, stream, first_sequence))
            .await
    }

    /// Every restart record of a stream, by first sequence, ascending.
    pub async fn restarts(
        &self,
        device: &Name,
        stream: &Name,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut firsts: Vec<u64> = self
            .list(&restarts_prefix(device, stream))
            .await?
            .iter()
            .filter_map(|l| {
                l.path
                    .rsplit('/')
                    .next()?
                    .strip_suffix(".scr")?
                    .parse()
                    .ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut out = Vec::with_capacity(firsts.len());
        for first in firsts {
            if let Some(bytes) = self.restart(device, stream, first).await? {
                out.push((first, bytes));
            }
        }
        Ok(out)
    }
}
