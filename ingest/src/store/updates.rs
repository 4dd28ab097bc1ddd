//! Update bundles and their offers (`docs/design/updates.md`): each bundle
//! once, named by its SHA-256, and per RAUC `compatible` one small index
//! entry per published bundle. The highest version among a compatible's
//! entries is what its cameras are offered; withdrawing removes the entry
//! (the bundle stays, for cameras part way through fetching it).
//!
//! The ingest does not vouch for a bundle: cameras check its signature
//! with their own keyring. The index only tells them which bytes to fetch.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use sealcam_api::update::compare_versions;
use sealcam_format::Name;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One published bundle, as the index keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub compatible: String,
    pub version: String,
    pub size: u64,
    pub sha256: String,
    /// Who published it (`operator:NAME`) and when (Unix seconds).
    pub published_by: String,
    pub published_unix_s: u64,
}

/// Part of a stored bundle: its whole length and the bytes from an offset.
pub struct BundleRange {
    pub total: u64,
    pub from: u64,
    pub bytes: BoxStream<'static, Result<Bytes, object_store::Error>>,
}

fn index_prefix(compatible: &Name) -> String {
    format!("updates/{compatible}")
}

fn index_path(compatible: &Name, sha256: &str) -> String {
    format!("updates/{compatible}/{sha256}.json")
}

/// Where a bundle is stored.
pub fn bundle_path(sha256: &str) -> String {
    format!("bundles/{sha256}.raucb")
}

impl Store {
    /// Stores a bundle under its hash (create-only; the same bytes again
    /// are no error, as their name is their hash).
    pub async fn put_bundle(&self, sha256: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.put_new(&bundle_path(sha256), bytes).await?;
        Ok(())
    }

    /// Adds an index entry. `false`: that bundle is published for that
    /// compatible already.
    pub async fn publish_update(&self, entry: &Published) -> Result<bool, StoreError> {
        let compatible = Name::new(&entry.compatible).map_err(|e| StoreError::Damaged {
            path: "updates/".into(),
            reason: e.to_string(),
        })?;
        let json = serde_json::to_vec_pretty(entry).map_err(|e| StoreError::Damaged {
            path: index_path(&compatible, &entry.sha256),
            reason: e.to_string(),
        })?;
        self.put_new(&index_path(&compatible, &entry.sha256), Bytes::from(json))
            .await
    }

    /// Every bundle published for `compatible`, newest version first.
    pub async fn updates(&self, compatible: &Name) -> Result<Vec<Published>, StoreError> {
        let mut out = Vec::new();
        for listed in self.list(&index_prefix(compatible)).await? {
            let Some(bytes) = self.read(&listed.path).await? else {
                continue;
            };
            let entry: Published =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                    path: listed.path.clone(),
                    reason: e.to_string(),
                })?;
            out.push(entry);
        }
        out.sort_by(|a, b| compare_versions(&b.version, &a.version));
        Ok(out)
    }

    /// The compatibles anything was ever published for.
    pub async fn update_compatibles(&self) -> Result<Vec<Name>, StoreError> {
        self.children("updates").await
    }

    /// Removes the entry of version `version` for `compatible`; `None`:
    /// no such version is published.
    pub async fn withdraw_update(
        &self,
        compatible: &Name,
        version: &str,
    ) -> Result<Option<Published>, StoreError> {
        let found = self
            .updates(compatible)
            .await?
            .into_iter()
            .find(|e| e.version == version);
        if let Some(e) = &found {
            self.remove(&index_path(compatible, &e.sha256)).await?;
        }
        Ok(found)
    }

    /// The bundle `sha256` from byte `from` on; `None`: no such bundle.
    /// `from` at or past its end gives an empty range.
    pub async fn read_bundle(
        &self,
        sha256: &str,
        from: u64,
    ) -> Result<Option<BundleRange>, StoreError> {
        let path = bundle_path(sha256);
        let location = ObjectPath::from(path.as_str());
        let meta = match self.objects.head(&location).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", &path)(e)),
        };
        let total = meta.size;
        if from >= total {
            return Ok(Some(BundleRange {
                total,
                from,
                bytes: Box::pin(futures_util::stream::empty()),
            }));
        }
        let opts = GetOptions {
            range: Some(GetRange::Offset(from)),
            ..GetOptions::default()
        };
        let got = match self.objects.get_opts(&location, opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", &path)(e)),
        };
        Ok(Some(BundleRange {
            total,
            from,
            bytes: got.into_stream(),
        }))
    }
}
