//! The generic object layer: create-only puts, reads, listings and deletes
//! of named objects, through `object_store` (a local directory or an
//! S3-compatible bucket); on a local directory, puts and the reads of
//! uploads go to the disk thread (`disk.rs`). What the objects mean is
//! `fragments.rs`; where they are, `layout.rs`.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
#[cfg(feature = "s3")]
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sealcam_format::Name;

use super::disk::Disk;
use super::{StorageConfig, StoreError};

/// An object listed under a prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub last_modified_unix_s: i64,
}

/// The local backend's own write path beside `object_store`'s.
pub(super) struct Local {
    pub(super) fs: Arc<LocalFileSystem>,
    pub(super) disk: Disk,
    /// The directory, as `fs` resolves it.
    pub(super) root: PathBuf,
}

/// Whether `path` is made of plain names only (`A-Z a-z 0-9 . _ -`, none
/// starting with a dot), as every object the ingest names itself is: such
/// an object's file is its path under the store's directory.
fn is_plain(path: &str) -> bool {
    path.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

/// The fragment store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(super) objects: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: puts, and the reads of
    /// uploads, go to its disk thread (`disk.rs`).
    pub(super) local: Option<Arc<Local>>,
    pub(super) describe: Arc<str>,
    /// Device certificates already written by this process.
    pub(super) certs_written: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Store {
    pub fn open(config: &StorageConfig) -> Result<Self, StoreError> {
        let describe = config.to_string();
        let open_err = |reason: String| StoreError::Open {
            store: describe.clone(),
            reason,
        };
        let (objects, local): (Arc<dyn ObjectStore>, _) = match config {
            StorageConfig::Local(l) => {
                std::fs::create_dir_all(&l.path).map_err(|e| open_err(e.to_string()))?;
                let fs = Arc::new(
                    LocalFileSystem::new_with_prefix(&l.path)
                        .map_err(|e| open_err(e.to_string()))?
                        .with_fsync(true)
                        .with_automatic_cleanup(true),
                );
                let disk = Disk::start()
                    .map_err(|e| open_err(format!("starting its disk thread: {e}")))?;
                // What LocalFileSystem resolves its prefix to.
                let root = std::fs::canonicalize(&l.path).map_err(|e| open_err(e.to_string()))?;
                (fs.clone(), Some(Arc::new(Local { fs, disk, root })))
            }
            #[cfg(not(feature = "s3"))]
            StorageConfig::S3(_) => {
                return Err(open_err(
                    "this sealcam-ingest was built without S3 support (cargo feature s3, Yocto PACKAGECONFIG s3); use kind = \"local\" or a build with it".into(),
                ))
            }
            #[cfg(feature = "s3")]
            StorageConfig::S3(s) => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&s.bucket)
                    .with_allow_http(s.allow_http);
                if let Some(e) = &s.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = &s.region {
                    b = b.with_region(r);
                }
                if let Some(k) = &s.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(f) = &s.secret_access_key_file {
                    let secret = std::fs::read_to_string(f).map_err(|e| {
                        open_err(format!("secret_access_key_file {}: {e}", f.display()))
                    })?;
                    b = b.with_secret_access_key(secret.trim());
                }
                (
                    Arc::new(b.build().map_err(|e| open_err(e.to_string()))?),
                    None,
                )
            }
        };
        Ok(Self {
            objects,
            local,
            describe: describe.into(),
            certs_written: Arc::default(),
        })
    }

    /// Whether other instances may store fragments here too: an object
    /// store may be shared, a local directory is this process's (its disk
    /// thread makes each chain check and write one step).
    pub fn is_shared(&self) -> bool {
        self.local.is_none()
    }

    pub(super) fn err(
        &self,
        op: &'static str,
        path: &str,
    ) -> impl FnOnce(object_store::Error) -> StoreError {
        let (store, path) = (self.describe.to_string(), path.to_owned());
        move |source| StoreError::Backend {
            store,
            op,
            path,
            source: Box::new(source),
        }
    }

    /// The file of object `path` in the local directory: directly where the
    /// path is plain (`object_store` maps paths through a URL, about 2 % of
    /// the ingest's CPU under load), through `object_store` otherwise.
    pub(super) fn local_path(
        &self,
        local: &Local,
        path: &str,
        op: &'static str,
    ) -> Result<PathBuf, StoreError> {
        if is_plain(path) {
            return Ok(local.root.join(path));
        }
        local
            .fs
            .path_to_filesystem(&ObjectPath::from(path))
            .map_err(self.err(op, path))
    }

    /// An error of the local disk thread, as the store reports errors.
    pub(super) fn local_err(&self, op: &'static str, path: &str, e: std::io::Error) -> StoreError {
        self.err(op, path)(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }

    /// On the local backend, writes `objects` as new files, in order, up to
    /// the first that exists (`Disk::create_new_all`), and returns how many
    /// it wrote; `None` on other backends.
    async fn put_new_local(&self, objects: &[(&str, &Bytes)]) -> Result<Option<usize>, StoreError> {
        let Some(local) = &self.local else {
            return Ok(None);
        };
        let mut files = Vec::with_capacity(objects.len());
        for (path, bytes) in objects {
            files.push((self.local_path(local, path, "write")?, (*bytes).clone()));
        }
        local
            .disk
            .create_new_all(files)
            .await
            .map(Some)
            .map_err(|e| {
                let paths: Vec<&str> = objects.iter().map(|(p, _)| *p).collect();
                self.local_err("write", &paths.join(" and "), e)
            })
    }

    /// On the local backend, writes `first` then `second` as new objects,
    /// durably, with one sync of their data and one of their directories,
    /// and returns whether both were written. `false` (always, on other
    /// backends) leaves the caller to write each with [`Self::put_new`]: one
    /// of them exists, and any written is complete.
    pub(super) async fn put_new_both(
        &self,
        first: (&str, &Bytes),
        second: (&str, &Bytes),
    ) -> Result<bool, StoreError> {
        Ok(self.put_new_local(&[first, second]).await? == Some(2))
    }

    /// Writes `bytes` at `path` unless something is there already. Returns
    /// whether it wrote.
    pub async fn put_new(&self, path: &str, bytes: Bytes) -> Result<bool, StoreError> {
        if let Some(n) = self.put_new_local(&[(path, &bytes)]).await? {
            return Ok(n == 1);
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .objects
            .put_opts(&ObjectPath::from(path), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err("write", path)(e)),
        }
    }

    /// The object at `path`, or `None` if there is none.
    pub async fn read(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        let got = match self.objects.get(&ObjectPath::from(path)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", path)(e)),
        };
        match got.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("read", path)(e)),
        }
    }

    /// Deletes `path`; deleting what is not there is not an error.
    pub async fn remove(&self, path: &str) -> Result<(), StoreError> {
        match self.objects.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", path)(e)),
        }
    }

    /// Every object under `prefix`, sorted by path.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let p = ObjectPath::from(prefix);
        let mut out: Vec<Listed> = self
            .objects
            .list(Some(&p))
            .map_ok(|m| Listed {
                path: m.location.to_string(),
                last_modified_unix_s: m.last_modified.timestamp(),
            })
            .try_collect()
            .await
            .map_err(self.err("list", prefix))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The names one level below `prefix` ("directories").
    pub(super) async fn children(&self, prefix: &str) -> Result<Vec<Name>, StoreError> {
        let p = ObjectPath::from(prefix);
        let listed = self
            .objects
            .list_with_delimiter(Some(&p))
            .await
            .map_err(self.err("list", prefix))?;
        let mut out: Vec<Name> = listed
            .common_prefixes
            .iter()
            .filter_map(|c| c.filename().and_then(|n| Name::new(n).ok()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// [`Store::children`] for other modules (the audit trail's epochs).
    pub async fn list_children(&self, prefix: &str) -> Result<Vec<Name>, StoreError> {
        self.children(prefix).await
    }

    /// Writes a probe object, reads it back and deletes it: the storage is
    /// reachable, writable and readable.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let path = format!("probe/{}-{}", std::process::id(), rand::random::<u64>());
        self.put_new(&path, Bytes::from_static(b"probe")).await?;
        let back = self.read(&path).await?;
        self.remove(&path).await?;
        match back.as_deref() {
            Some(b"probe") => Ok(()),
            _ => Err(StoreError::Damaged {
                path,
                reason: "the probe object did not read back as written".into(),
            }),
        }
    }

    pub(super) async fn remove_all(&self, paths: Vec<String>) -> Result<(), StoreError> {
        futures_util::stream::iter(paths)
            .map(|p| async move { self.remove(&p).await })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::{data_path, key_path};

    #[test]
    fn plain_paths_map_to_the_files_object_store_maps_them_to() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        // A directory named through a symlink and a "..": both resolve it.
        let named = dir.path().join("link/../link");
        let store = Store::open(&StorageConfig::local(&named)).unwrap();
        let local = store.local.clone().unwrap();
        let (d, s) = (
            Name::new("cam-1").unwrap(),
            Name::new("front.door_2").unwrap(),
        );
        let plain = [
            key_path(&d, &s, 7),
            data_path(&d, &s, u64::MAX),
            "devices/cam-1/certs/0a1b.pem".to_owned(),
            "audit/ingest-a/00000000000000000001/0000000002.jsonl".to_owned(),
        ];
        for path in &plain {
            assert!(is_plain(path), "{path}");
            let expected = local
                .fs
                .path_to_filesystem(&ObjectPath::from(path.as_str()))
                .unwrap();
            assert_eq!(store.local_path(&local, path, "read").unwrap(), expected);
        }
        for odd in [
            "a//b",
            ".hidden/x",
            "a/..",
            "a/b c",
            "a/%41",
            "a/#1",
            "",
            "a/",
        ] {
            assert!(!is_plain(odd), "{odd:?}");
        }
    }

    #[tokio::test]
    async fn objects_are_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StorageConfig::local(dir.path())).unwrap();
        assert!(store
            .put_new("a/b", Bytes::from_static(b"1"))
            .await
            .unwrap());
        assert!(!store
            .put_new("a/b", Bytes::from_static(b"2"))
            .await
            .unwrap());
        assert_eq!(store.read("a/b").await.unwrap().unwrap(), &b"1"[..]);
        assert!(store.read("a/c").await.unwrap().is_none());
        store.remove("a/b").await.unwrap();
        store.remove("a/b").await.unwrap();
        assert!(store.read("a/b").await.unwrap().is_none());
        store.probe().await.unwrap();
    }
}
