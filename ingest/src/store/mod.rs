//! Storage of sealed fragments through `object_store`: a local directory (the
//! default, zero setup) or any S3-compatible bucket (for fleets).
//!
//! ```text
//! devices/<device>/certs/<serial>.pem            device certificates, for verifiers
//! streams/<device>/<stream>/keys/<seq:020>       signed manifest: names the fragment and
//!                                                holds its wrapped data keys
//! streams/<device>/<stream>/data/<seq:020>       sealed payload: the ciphertext
//! audit/<instance>/<epoch:020>/<segment:010>     the audit trail (see `audit.rs`)
//! ```
//!
//! A fragment is stored as two objects so that its keys can be destroyed
//! apart from its ciphertext (deletion by key destruction, `retention.rs`).
//! Every object is written create-only (`If-None-Match: *` on S3, a hard link
//! on a local disk), so several ingest instances can share one bucket: a
//! repeat of the same bytes is recognised, different bytes for a stored
//! sequence are refused, nothing is ever overwritten. A fragment counts as
//! stored once its key object exists; the data object is written first.
//! The local backend has each file's data and its directory on disk before a
//! put returns (`local.rs` writes, in batches that share their syncs;
//! `LocalFileSystem` reads, lists and deletes).

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
use sealcam_format::{Name, SealedFragment, SignedManifest};
use serde::Deserialize;

mod local;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage ({store}): {op} {path} failed: {source}")]
    Backend {
        store: String,
        op: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("cannot open storage {store}: {reason}")]
    Open { store: String, reason: String },
    #[error("fragment {device}/{stream}/{sequence} is already stored with different content")]
    Conflict {
        device: Name,
        stream: Name,
        sequence: u64,
    },
    #[error("stored object {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
}

/// Where fragments go: `[storage]` in the ingest's config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A directory on a local disk.
    Local(LocalConfig),
    /// A bucket on any S3-compatible object store.
    S3(S3Config),
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// For stores other than AWS: `https://minio.example:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Allows an `http://` endpoint (a store on loopback or a private link).
    #[serde(default)]
    pub allow_http: bool,
    /// Otherwise from `AWS_ACCESS_KEY_ID`, the instance profile, etc.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// A file holding the secret key (kept out of the config file).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
}

impl StorageConfig {
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self::Local(LocalConfig { path: path.into() })
    }
}

impl fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(l) => write!(f, "local directory {}", l.path.display()),
            Self::S3(s) => match &s.endpoint {
                Some(e) => write!(f, "S3 bucket {} at {e}", s.bucket),
                None => write!(f, "S3 bucket {}", s.bucket),
            },
        }
    }
}

/// How a put ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PutOutcome {
    Stored,
    /// The same bytes were stored before: nothing written.
    AlreadyStored,
}

/// An object listed under a prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub last_modified_unix_s: i64,
}

/// The fragment store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: puts, and the reads of
    /// uploads, go to its disk thread (`local.rs`).
    local: Option<(Arc<LocalFileSystem>, Arc<local::Disk>)>,
    describe: Arc<str>,
    /// Device certificates already written by this process.
    certs_written: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

/// The sequence number a fragment object is named by.
fn sequence_of(l: &Listed) -> Option<u64> {
    l.path.rsplit('/').next()?.parse().ok()
}

fn seq_name(sequence: u64) -> String {
    format!("{sequence:020}")
}

fn stream_prefix(device: &Name, stream: &Name) -> String {
    format!("streams/{device}/{stream}")
}

fn key_path(device: &Name, stream: &Name, sequence: u64) -> String {
    format!(
        "{}/keys/{}",
        stream_prefix(device, stream),
        seq_name(sequence)
    )
}

fn data_path(device: &Name, stream: &Name, sequence: u64) -> String {
    format!(
        "{}/data/{}",
        stream_prefix(device, stream),
        seq_name(sequence)
    )
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
                let disk = local::Disk::start()
                    .map_err(|e| open_err(format!("starting its disk thread: {e}")))?;
                (fs.clone(), Some((fs, Arc::new(disk))))
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

    fn err(&self, op: &'static str, path: &str) -> impl FnOnce(object_store::Error) -> StoreError {
        let (store, path) = (self.describe.to_string(), path.to_owned());
        move |source| StoreError::Backend {
            store,
            op,
            path,
            source: Box::new(source),
        }
    }

    /// On the local backend, writes `objects` as new files, in order, up to
    /// the first that exists (`local::Disk::create_new_all`), and returns how many
    /// it wrote; `None` on other backends.
    async fn put_new_local(&self, objects: &[(&str, &Bytes)]) -> Result<Option<usize>, StoreError> {
        let Some((fs, disk)) = &self.local else {
            return Ok(None);
        };
        let mut files = Vec::with_capacity(objects.len());
        for (path, bytes) in objects {
            let dest = fs
                .path_to_filesystem(&ObjectPath::from(*path))
                .map_err(self.err("write", path))?;
            files.push((dest, (*bytes).clone()));
        }
        disk.create_new_all(files).await.map(Some).map_err(|e| {
            let paths: Vec<&str> = objects.iter().map(|(p, _)| *p).collect();
            self.err("write", &paths.join(" and "))(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })
    }

    /// On the local backend, writes `first` then `second` as new objects,
    /// durably, with one sync of their data and one of their directories,
    /// and returns whether both were written. `false` (always, on other
    /// backends) leaves the caller to write each with [`Self::put_new`]: one
    /// of them exists, and any written is complete.
    async fn put_new_both(
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

    /// The objects at `paths`, each `None` if there is none: the small reads
    /// an upload makes before it is written (its chain neighbours). On the
    /// local backend all are read in one job of its disk thread, elsewhere
    /// one after the other.
    pub async fn read_all(&self, paths: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let Some((fs, disk)) = &self.local else {
            let mut out = Vec::with_capacity(paths.len());
            for path in paths {
                out.push(self.read(path).await?);
            }
            return Ok(out);
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push(
                fs.path_to_filesystem(&ObjectPath::from(path.as_str()))
                    .map_err(self.err("read", path))?,
            );
        }
        disk.read_all(files).await.map_err(|(i, e)| {
            let path = paths.get(i).map_or("", String::as_str);
            self.err("read", path)(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })
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
    async fn children(&self, prefix: &str) -> Result<Vec<Name>, StoreError> {
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

    /// Stores a verified fragment, create-only. Idempotent for the same
    /// bytes. `body` is the buffer `fragment` was parsed from, so that the
    /// payload is stored without a copy.
    pub async fn put_fragment(
        &self,
        fragment: &SealedFragment<'_>,
        body: &Bytes,
    ) -> Result<PutOutcome, StoreError> {
        let m = &fragment.manifest;
        let (d, s, seq) = (&m.device, &m.stream, m.sequence);
        let conflict = || StoreError::Conflict {
            device: d.clone(),
            stream: s.clone(),
            sequence: seq,
        };
        let payload = subslice(body, fragment.payload)
            .unwrap_or_else(|| Bytes::copy_from_slice(fragment.payload));
        let data = data_path(d, s, seq);
        let signed = Bytes::from(fragment.signed_manifest());
        let key = key_path(d, s, seq);
        // On a local disk both objects are written with one sync of their
        // data and one of their directories. Where either exists, the general
        // way below compares what is there.
        if self
            .put_new_both((&data, &payload), (&key, &signed))
            .await?
        {
            return Ok(PutOutcome::Stored);
        }
        if !self.put_new(&data, payload.clone()).await? {
            match self.read(&data).await? {
                Some(existing) if existing == payload => {}
                Some(_) => return Err(conflict()),
                // Deleted between the two calls: write it again.
                None => {
                    self.put_new(&data, payload).await?;
                }
            }
        }
        if self.put_new(&key, signed.clone()).await? {
            return Ok(PutOutcome::Stored);
        }
        match self.read(&key).await? {
            Some(existing) if existing == signed => Ok(PutOutcome::AlreadyStored),
            Some(_) => Err(conflict()),
            None => {
                self.put_new(&key, signed).await?;
                Ok(PutOutcome::Stored)
            }
        }
    }

    /// The signed manifests (key objects) of the stored fragments among
    /// `sequences` of a stream, in that order: `None` where there is none.
    pub async fn signed_manifests(
        &self,
        device: &Name,
        stream: &Name,
        sequences: &[u64],
    ) -> Result<Vec<Option<Bytes>>, StoreError> {
        let paths: Vec<String> = sequences
            .iter()
            .map(|&seq| key_path(device, stream, seq))
            .collect();
        self.read_all(&paths).await
    }

    /// A stored fragment's signed manifest (its key object).
    pub async fn signed_manifest(
        &self,
        device: &Name,
        stream: &Name,
        sequence: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        self.read(&key_path(device, stream, sequence)).await
    }

    /// A stored fragment, as the device sent it.
    pub async fn fragment(
        &self,
        device: &Name,
        stream: &Name,
        sequence: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(signed) = self.signed_manifest(device, stream, sequence).await? else {
            return Ok(None);
        };
        let path = data_path(device, stream, sequence);
        let Some(payload) = self.read(&path).await? else {
            return Ok(None);
        };
        sealcam_format::fragment::join(&signed, &payload)
            .map(Some)
            .map_err(|e| StoreError::Damaged {
                path,
                reason: e.to_string(),
            })
    }

    /// Sequence numbers stored for a stream (those with a key object), ascending.
    pub async fn sequences(&self, device: &Name, stream: &Name) -> Result<Vec<u64>, StoreError> {
        let prefix = format!("{}/keys", stream_prefix(device, stream));
        // `list` sorts by path, and sequence names are zero-padded.
        Ok(self
            .list(&prefix)
            .await?
            .iter()
            .filter_map(sequence_of)
            .collect())
    }

    /// Sequence numbers with a data object, ascending (for cleanup).
    pub async fn data_sequences(
        &self,
        device: &Name,
        stream: &Name,
    ) -> Result<Vec<(u64, i64)>, StoreError> {
        let prefix = format!("{}/data", stream_prefix(device, stream));
        Ok(self
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|l| Some((sequence_of(&l)?, l.last_modified_unix_s)))
            .collect())
    }

    async fn remove_all(&self, paths: Vec<String>) -> Result<(), StoreError> {
        futures_util::stream::iter(paths)
            .map(|p| async move { self.remove(&p).await })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// Destroys fragments' key objects (their wrapped data keys). Once done,
    /// no copy of their ciphertext left anywhere can be decrypted, even by a
    /// consumer; `retention.rs` does this first, then removes the ciphertext.
    pub async fn delete_keys(
        &self,
        device: &Name,
        stream: &Name,
        sequences: &[u64],
    ) -> Result<(), StoreError> {
        let paths = sequences.iter().map(|&s| key_path(device, stream, s));
        self.remove_all(paths.collect()).await
    }

    /// Removes ciphertext objects.
    pub async fn delete_data(
        &self,
        device: &Name,
        stream: &Name,
        sequences: &[u64],
    ) -> Result<(), StoreError> {
        let paths = sequences.iter().map(|&s| data_path(device, stream, s));
        self.remove_all(paths.collect()).await
    }

    /// Keeps a device's certificate for verifiers, once per certificate.
    pub async fn put_device_cert(
        &self,
        device: &Name,
        serial_hex: &str,
        cert_der: &[u8],
    ) -> Result<(), StoreError> {
        let path = format!("devices/{device}/certs/{serial_hex}.pem");
        if self
            .certs_written
            .lock()
            .map(|w| w.contains(&path))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let pem = sealcam_transport::pem::cert_to_pem(cert_der);
        self.put_new(&path, Bytes::from(pem)).await?;
        if let Ok(mut w) = self.certs_written.lock() {
            w.insert(path);
        }
        Ok(())
    }

    /// The device's most recently stored certificate (renewals keep the key).
    pub async fn device_cert(&self, device: &Name) -> Result<Option<String>, StoreError> {
        let listed = self.list(&format!("devices/{device}/certs")).await?;
        let Some(newest) = listed
            .iter()
            .filter(|l| l.path.ends_with(".pem"))
            .max_by_key(|l| (l.last_modified_unix_s, l.path.clone()))
        else {
            return Ok(None);
        };
        Ok(self
            .read(&newest.path)
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Every (device, stream) with anything stored.
    pub async fn streams(&self) -> Result<Vec<(Name, Name)>, StoreError> {
        let mut out = Vec::new();
        for device in self.children("streams").await? {
            for stream in self.children(&format!("streams/{device}")).await? {
                out.push((device.clone(), stream));
            }
        }
        Ok(out)
    }
}

/// `part` as a zero-copy slice of `whole`, if it lies within it.
fn subslice(whole: &Bytes, part: &[u8]) -> Option<Bytes> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then(|| whole.slice(start..end))
}

/// Parses a stored key object, naming the object in the error.
pub fn parse_signed_manifest<'a>(
    device: &Name,
    stream: &Name,
    sequence: u64,
    bytes: &'a [u8],
) -> Result<SignedManifest<'a>, StoreError> {
    SignedManifest::parse(bytes).map_err(|e| StoreError::Damaged {
        path: key_path(device, stream, sequence),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_its_backend() {
        let c: StorageConfig = toml::from_str("kind = \"local\"\npath = \"/x\"").unwrap();
        assert_eq!(c, StorageConfig::local("/x"));
        let c: StorageConfig = toml::from_str(
            "kind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://h:1\"\nallow_http = true",
        )
        .unwrap();
        assert_eq!(c.to_string(), "S3 bucket b at http://h:1");
        let bad = toml::from_str::<StorageConfig>("kind = \"s3\"\nbucket = \"b\"\nbucket_typo = 1");
        assert!(bad.is_err());
    }

    #[test]
    fn subslices_share_the_buffer_and_strangers_do_not() {
        let whole = Bytes::from_static(b"0123456789");
        let part = subslice(&whole, &whole[3..7]).unwrap();
        assert_eq!(&part[..], b"3456");
        assert_eq!(part.as_ptr(), whole[3..].as_ptr());
        let other = b"3456".to_vec();
        assert!(subslice(&whole, &other).is_none());
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

    #[tokio::test]
    async fn read_all_answers_in_order_as_read_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StorageConfig::local(dir.path())).unwrap();
        store
            .put_new("k/2", Bytes::from_static(b"two"))
            .await
            .unwrap();
        store
            .put_new("k/4", Bytes::from_static(b"four"))
            .await
            .unwrap();
        let paths: Vec<String> = ["k/4", "k/3", "k/2"].map(String::from).to_vec();
        let all = store.read_all(&paths).await.unwrap();
        let mut one_by_one = Vec::new();
        for p in &paths {
            one_by_one.push(store.read(p).await.unwrap());
        }
        assert_eq!(all, one_by_one);
        assert_eq!(
            all,
            [
                Some(Bytes::from_static(b"four")),
                None,
                Some(Bytes::from_static(b"two"))
            ]
        );
        assert!(store.read_all(&[]).await.unwrap().is_empty());
        // A path that cannot be read (a directory) is an error naming it.
        let e = store.read_all(&["k".to_owned()]).await.unwrap_err();
        assert!(e.to_string().contains('k'), "{e}");
    }
}
