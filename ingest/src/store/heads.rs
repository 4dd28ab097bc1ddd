//! Signed heads, as cameras upload them: one object per head, named by
//! the time the camera signed it, written create-only, so that several
//! instances on one bucket agree on the newest (the greatest name) and
//! none overwrites another's. Heads are grouped by the hour they were
//! signed in, so that finding the newest lists one hour, not the stream's
//! whole history.
//!
//! The ingest checks a head's signature against the device's certificate
//! before it stores it; verifiers check it again under the owner's roster.

use bytes::Bytes;
use sealcam_format::Name;

use super::layout::{head_hour_prefix, head_path, heads_prefix, HOUR_NS};
use super::{Store, StoreError};

/// What became of an uploaded head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadPut {
    Stored,
    AlreadyStored,
}

impl Store {
    /// The hours (since the epoch) that hold heads of a stream, ascending.
    async fn head_hours(&self, device: &Name, stream: &Name) -> Result<Vec<u64>, StoreError> {
        let mut hours: Vec<u64> = self
            .children(&heads_prefix(device, stream))
            .await?
            .iter()
            .filter_map(|n| n.as_str().parse().ok())
            .collect();
        hours.sort_unstable();
        Ok(hours)
    }

    /// The `signed_at` times of the heads stored for a stream in one hour,
    /// ascending.
    async fn head_times_in(
        &self,
        device: &Name,
        stream: &Name,
        hour: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut times: Vec<u64> = self
            .list(&head_hour_prefix(device, stream, hour))
            .await?
            .iter()
            .filter_map(|l| {
                l.path
                    .rsplit('/')
                    .next()?
                    .strip_suffix(".sch")?
                    .parse()
                    .ok()
            })
            .collect();
        times.sort_unstable();
        Ok(times)
    }

    /// The `signed_at` times of every head stored for a stream, ascending.
    pub async fn head_times(&self, device: &Name, stream: &Name) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for hour in self.head_hours(device, stream).await? {
            out.extend(self.head_times_in(device, stream, hour).await?);
        }
        Ok(out)
    }

    /// The `signed_at` of the newest head stored for a stream: it lists
    /// the newest hour only (at most a few hundred heads).
    pub async fn newest_head_time(
        &self,
        device: &Name,
        stream: &Name,
    ) -> Result<Option<u64>, StoreError> {
        for hour in self.head_hours(device, stream).await?.into_iter().rev() {
            if let Some(&t) = self.head_times_in(device, stream, hour).await?.last() {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Stores a head signed at `signed_at_unix_ns`, create-only. The same
    /// bytes again are [`HeadPut::AlreadyStored`]; other bytes under the
    /// same time are [`StoreError::HeadConflict`].
    pub async fn put_head(
        &self,
        device: &Name,
        stream: &Name,
        signed_at_unix_ns: u64,
        bytes: Bytes,
    ) -> Result<HeadPut, StoreError> {
        let path = head_path(device, stream, signed_at_unix_ns);
        if self.put_new(&path, bytes.clone()).await? {
            return Ok(HeadPut::Stored);
        }
        match self.read(&path).await? {
            Some(stored) if stored == bytes => Ok(HeadPut::AlreadyStored),
            _ => Err(StoreError::HeadConflict {
                device: device.clone(),
                stream: stream.clone(),
                signed_at_unix_ns,
            }),
        }
    }

    /// The newest head stored for a stream, if any.
    pub async fn newest_head(
        &self,
        device: &Name,
        stream: &Name,
    ) -> Result<Option<Bytes>, StoreError> {
        for hour in self.head_hours(device, stream).await?.into_iter().rev() {
            for at in self
                .head_times_in(device, stream, hour)
                .await?
                .into_iter()
                .rev()
            {
                if let Some(b) = self.read(&head_path(device, stream, at)).await? {
                    return Ok(Some(b));
                }
            }
        }
        Ok(None)
    }

    /// Removes the heads of a stream signed before `cutoff_unix_ns`;
    /// returns how many.
    pub async fn delete_heads_before(
        &self,
        device: &Name,
        stream: &Name,
        cutoff_unix_ns: u64,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for hour in self.head_hours(device, stream).await? {
            if hour > cutoff_unix_ns / HOUR_NS {
                break;
            }
            for at in self.head_times_in(device, stream, hour).await? {
                if at >= cutoff_unix_ns {
                    break;
                }
                self.remove(&head_path(device, stream, at)).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the heads of a stream received (stored) before
    /// `cutoff_unix_s`, by the storage's timestamp on them, whatever time
    /// the camera signed them at; returns how many.
    pub async fn delete_heads_received_before(
        &self,
        device: &Name,
        stream: &Name,
        cutoff_unix_s: i64,
    ) -> Result<usize, StoreError> {
        let old: Vec<String> = self
            .list(&heads_prefix(device, stream))
            .await?
            .into_iter()
            .filter(|l| l.path.ends_with(".sch") && l.last_modified_unix_s < cutoff_unix_s)
            .map(|l| l.path)
            .collect();
        let n = old.len();
        self.remove_all(old).await?;
        Ok(n)
    }

    /// The streams that have heads stored.
    pub async fn head_streams(&self) -> Result<Vec<(Name, Name)>, StoreError> {
        let mut out = Vec::new();
        for device in self.children("heads").await? {
            for stream in self.children(&format!("heads/{device}")).await? {
                out.push((device.clone(), stream));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::StorageConfig;

    #[tokio::test]
    async fn the_newest_head_is_the_latest_signed_and_old_ones_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&StorageConfig::local(dir.path())).unwrap();
        let (d, st) = (Name::new("cam1").unwrap(), Name::new("front").unwrap());
        assert_eq!(s.newest_head(&d, &st).await.unwrap(), None);
        let a = Bytes::from_static(b"a");
        assert_eq!(
            s.put_head(&d, &st, 9, a.clone()).await.unwrap(),
            HeadPut::Stored
        );
        assert_eq!(
            s.put_head(&d, &st, 9, a.clone()).await.unwrap(),
            HeadPut::AlreadyStored
        );
        assert!(matches!(
            s.put_head(&d, &st, 9, Bytes::from_static(b"b")).await,
            Err(StoreError::HeadConflict { .. })
        ));
        let c = Bytes::from_static(b"c");
        s.put_head(&d, &st, 100, c.clone()).await.unwrap();
        // In a later hour: newest, until it is removed.
        let late = 5 * 3_600_000_000_000 + 1;
        s.put_head(&d, &st, late, Bytes::from_static(b"l"))
            .await
            .unwrap();
        assert_eq!(s.newest_head_time(&d, &st).await.unwrap(), Some(late));
        s.remove(&head_path(&d, &st, late)).await.unwrap();
        s.put_head(&d, &st, 50, Bytes::from_static(b"m"))
            .await
            .unwrap();
        // By number, not by upload order.
        assert_eq!(s.newest_head(&d, &st).await.unwrap(), Some(c.clone()));
        assert_eq!(
            s.head_streams().await.unwrap(),
            vec![(d.clone(), st.clone())]
        );
        // Everything signed before the cutoff goes.
        assert_eq!(s.delete_heads_before(&d, &st, 100).await.unwrap(), 2);
        assert_eq!(s.head_times(&d, &st).await.unwrap(), vec![100]);
        assert_eq!(s.newest_head(&d, &st).await.unwrap(), Some(c));
        assert_eq!(s.delete_heads_before(&d, &st, u64::MAX).await.unwrap(), 1);
        assert_eq!(s.newest_head(&d, &st).await.unwrap(), None);
    }
}
