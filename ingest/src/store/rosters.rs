//! Owner-signed device rosters, as owners publish them for verifiers: one
//! object per version, written create-only, so that several instances on
//! one bucket serve the same newest roster and none can be rolled back by
//! a publish that races another.
//!
//! The ingest does not trust a roster: verifiers check it against the owner
//! key they hold, and pin the newest version they have seen. It only keeps
//! a lower version from being stored once a higher one is.

use bytes::Bytes;
use sealcam_format::Name;

use super::layout::{roster_path, rosters_prefix};
use super::{Store, StoreError};

/// What became of a published roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RosterPut {
    Stored,
    AlreadyStored,
}

impl Store {
    /// The versions stored for an owner key, ascending.
    async fn roster_versions(&self, owner: &Name) -> Result<Vec<u64>, StoreError> {
        let mut versions: Vec<u64> = self
            .list(&rosters_prefix(owner))
            .await?
            .iter()
            .filter_map(|l| {
                l.path
                    .rsplit('/')
                    .next()?
                    .strip_suffix(".sdr")?
                    .parse()
                    .ok()
            })
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Stores version `version` of `owner`'s roster, unless a higher version
    /// is stored (refused: [`StoreError::StaleRoster`]) or this version is,
    /// with other bytes ([`StoreError::RosterConflict`]).
    pub async fn put_roster(
        &self,
        owner: &Name,
        version: u64,
        bytes: Bytes,
    ) -> Result<RosterPut, StoreError> {
        if let Some(&stored) = self.roster_versions(owner).await?.last() {
            if stored > version {
                return Err(StoreError::StaleRoster {
                    owner: owner.clone(),
                    stored,
                    offered: version,
                });
            }
        }
        let path = roster_path(owner, version);
        if self.put_new(&path, bytes.clone()).await? {
            return Ok(RosterPut::Stored);
        }
        match self.read(&path).await? {
            Some(stored) if stored == bytes => Ok(RosterPut::AlreadyStored),
            _ => Err(StoreError::RosterConflict {
                owner: owner.clone(),
                version,
            }),
        }
    }

    /// The newest roster stored for `owner`, if any.
    pub async fn newest_roster(&self, owner: &Name) -> Result<Option<Bytes>, StoreError> {
        for version in self.roster_versions(owner).await?.into_iter().rev() {
            if let Some(b) = self.read(&roster_path(owner, version)).await? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::StorageConfig;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&StorageConfig::local(dir)).unwrap()
    }

    #[tokio::test]
    async fn a_lower_version_never_replaces_a_higher_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let owner = Name::new(&"ab".repeat(32)).unwrap();
        assert_eq!(s.newest_roster(&owner).await.unwrap(), None);
        let v2 = Bytes::from_static(b"two");
        assert_eq!(
            s.put_roster(&owner, 2, v2.clone()).await.unwrap(),
            RosterPut::Stored
        );
        assert_eq!(
            s.put_roster(&owner, 2, v2.clone()).await.unwrap(),
            RosterPut::AlreadyStored
        );
        assert!(matches!(
            s.put_roster(&owner, 2, Bytes::from_static(b"other")).await,
            Err(StoreError::RosterConflict { version: 2, .. })
        ));
        assert!(matches!(
            s.put_roster(&owner, 1, Bytes::from_static(b"one")).await,
            Err(StoreError::StaleRoster {
                stored: 2,
                offered: 1,
                ..
            })
        ));
        assert_eq!(s.newest_roster(&owner).await.unwrap(), Some(v2));
        let v10 = Bytes::from_static(b"ten");
        s.put_roster(&owner, 10, v10.clone()).await.unwrap();
        // By number, not by name: 10 is newer than 2.
        assert_eq!(s.newest_roster(&owner).await.unwrap(), Some(v10));
    }
}
