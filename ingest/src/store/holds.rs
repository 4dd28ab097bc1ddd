//! Legal holds: an operator's order that a stream, or a time range of it,
//! be kept whatever its retention period says. One object per hold,
//! `holds/<device>/<stream>/<id>.json`, written create-only, so that every
//! instance on the storage sees it; lifting a hold removes its object.

use bytes::Bytes;
use sealcam_format::Name;
use serde::{Deserialize, Serialize};

use super::layout::{hold_path, holds_prefix};
use super::{Store, StoreError};

/// One legal hold on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Its name, unique within the stream (the time it was placed, hex).
    pub id: String,
    /// The first instant held, Unix ns; none: from the stream's beginning.
    pub from_unix_ns: Option<u64>,
    /// The last instant held, Unix ns; none: to its end, and on.
    pub to_unix_ns: Option<u64>,
    /// Who placed it, as the audit trail names them.
    pub placed_by: String,
    pub placed_unix_ns: u64,
    pub reason: String,
}

impl Hold {
    /// Whether a fragment recorded (by its camera's clock) over
    /// `start..=end`, or received at `received_unix_ns`, falls in the hold.
    /// Either time counts: a camera clock that was wrong must not take
    /// evidence out of a hold.
    pub fn covers(&self, start_unix_ns: u64, end_unix_ns: u64, received_unix_ns: u64) -> bool {
        let from = self.from_unix_ns.unwrap_or(0);
        let to = self.to_unix_ns.unwrap_or(u64::MAX);
        let overlaps = |a: u64, b: u64| a <= to && b >= from;
        overlaps(start_unix_ns, end_unix_ns) || overlaps(received_unix_ns, received_unix_ns)
    }

    /// Whether it holds the whole stream.
    pub fn is_whole_stream(&self) -> bool {
        self.from_unix_ns.is_none() && self.to_unix_ns.is_none()
    }
}

impl Store {
    /// Stores a new hold (create-only). Returns false if a hold of that id
    /// exists already.
    pub async fn put_hold(
        &self,
        device: &Name,
        stream: &Name,
        hold: &Hold,
    ) -> Result<bool, StoreError> {
        let path = hold_path(device, stream, &hold.id);
        let bytes = serde_json::to_vec_pretty(hold).map_err(|e| StoreError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.put_new(&path, Bytes::from(bytes)).await
    }

    /// The holds on a stream, by id: one listing, and one read per hold.
    pub async fn holds(&self, device: &Name, stream: &Name) -> Result<Vec<Hold>, StoreError> {
        let mut out = Vec::new();
        for l in self.list(&holds_prefix(device, stream)).await? {
            // Lifted since the listing: no longer a hold.
            let Some(bytes) = self.read(&l.path).await? else {
                continue;
            };
            let hold: Hold = serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                path: l.path.clone(),
                reason: e.to_string(),
            })?;
            out.push(hold);
        }
        Ok(out)
    }

    /// Lifts a hold. Returns it, or `None` if there is no hold of that id.
    pub async fn lift_hold(
        &self,
        device: &Name,
        stream: &Name,
        id: &str,
    ) -> Result<Option<Hold>, StoreError> {
        let Some(hold) = self
            .holds(device, stream)
            .await?
            .into_iter()
            .find(|h| h.id == id)
        else {
            return Ok(None);
        };
        self.remove(&hold_path(device, stream, id)).await?;
        Ok(Some(hold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(from: Option<u64>, to: Option<u64>) -> Hold {
        Hold {
            id: "1".into(),
            from_unix_ns: from,
            to_unix_ns: to,
            placed_by: "operator:carol".into(),
            placed_unix_ns: 0,
            reason: "case 1".into(),
        }
    }

    #[test]
    fn a_range_covers_what_overlaps_it_by_either_clock() {
        let h = hold(Some(100), Some(200));
        assert!(h.covers(50, 100, 0));
        assert!(h.covers(150, 160, 0));
        assert!(h.covers(200, 300, 0));
        assert!(!h.covers(201, 300, 0));
        assert!(!h.covers(10, 99, 0));
        // Stamped 1970 by its camera, received inside the range.
        assert!(h.covers(0, 1, 150));
        assert!(hold(None, None).covers(0, 0, 0));
        assert!(hold(None, None).is_whole_stream());
        assert!(!h.is_whole_stream());
    }

    proptest::proptest! {
        /// Whatever bytes lie where a hold should be, reading them is a
        /// hold or an error, never a panic.
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = serde_json::from_slice::<Hold>(&bytes);
        }
    }

    #[tokio::test]
    async fn holds_are_stored_listed_and_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&super::super::StorageConfig::local(dir.path())).unwrap();
        let (d, s) = (Name::new("cam").unwrap(), Name::new("front").unwrap());
        let h = hold(Some(1), Some(2));
        assert!(store.put_hold(&d, &s, &h).await.unwrap());
        assert!(!store.put_hold(&d, &s, &h).await.unwrap());
        assert_eq!(store.holds(&d, &s).await.unwrap(), vec![h.clone()]);
        assert_eq!(store.lift_hold(&d, &s, "1").await.unwrap(), Some(h));
        assert_eq!(store.lift_hold(&d, &s, "1").await.unwrap(), None);
        assert!(store.holds(&d, &s).await.unwrap().is_empty());
    }
}
