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
use sealcam_format::{ManifestHash, Name, SealedFragment, SignedManifest};
use serde::Deserialize;

mod local;

pub use local::AlignedBody;

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

/// Why a fragment may not be stored where its chain puts it.
#[derive(Debug)]
pub(crate) enum ChainRefusal {
    /// It does not fit a stored neighbour: why, for the device.
    Broken(String),
    /// A stored neighbour is not a readable manifest.
    Damaged(StoreError),
}

/// A fragment's place in its stream's hash chain: what its stored
/// neighbours, if any, must say for it to be stored.
struct Link {
    device: Name,
    stream: Name,
    sequence: u64,
    /// The manifest hash it names as its predecessor's.
    prev: ManifestHash,
    /// Its own manifest hash, which its successor names.
    hash: ManifestHash,
}

impl Link {
    fn of(frag: &SealedFragment<'_>) -> Self {
        let m = &frag.manifest;
        Self {
            device: m.device.clone(),
            stream: m.stream.clone(),
            sequence: m.sequence,
            prev: m.prev,
            hash: frag.manifest_hash(),
        }
    }

    /// The sequence numbers of its neighbours: before it, then after it.
    fn neighbours(&self) -> Vec<u64> {
        let s = self.sequence;
        s.checked_sub(1)
            .into_iter()
            .chain(s.checked_add(1))
            .collect()
    }

    /// Checks it against the key objects found at [`Self::neighbours`].
    fn check(&self, found: Vec<Option<Bytes>>) -> Result<(), ChainRefusal> {
        let (d, s, sequence) = (&self.device, &self.stream, self.sequence);
        for (neighbour, bytes) in self.neighbours().into_iter().zip(found) {
            let Some(bytes) = bytes else { continue };
            let stored =
                parse_signed_manifest(d, s, neighbour, &bytes).map_err(ChainRefusal::Damaged)?;
            if neighbour < sequence && stored.manifest_hash() != self.prev {
                return Err(ChainRefusal::Broken(format!(
                    "chain broken: fragment {sequence} names previous manifest {} but stored fragment {neighbour} has {}",
                    self.prev,
                    stored.manifest_hash()
                )));
            }
            if neighbour > sequence && stored.manifest.prev != self.hash {
                return Err(ChainRefusal::Broken(format!(
                    "chain broken: stored fragment {neighbour} does not follow this fragment {sequence}"
                )));
            }
        }
        Ok(())
    }
}

/// A fragment's two objects: the data path and the key path, and the
/// payload (from `body`, without a copy where it lies there) and the signed
/// manifest.
fn fragment_objects(fragment: &SealedFragment<'_>, body: &Bytes) -> (String, String, Bytes, Bytes) {
    let m = &fragment.manifest;
    let (d, s, seq) = (&m.device, &m.stream, m.sequence);
    let payload = subslice(body, fragment.payload)
        .unwrap_or_else(|| Bytes::copy_from_slice(fragment.payload));
    let signed = Bytes::from(fragment.signed_manifest());
    (data_path(d, s, seq), key_path(d, s, seq), payload, signed)
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

/// The local backend's own write path beside `object_store`'s.
struct Local {
    fs: Arc<LocalFileSystem>,
    disk: local::Disk,
    /// The directory, as `fs` resolves it.
    root: PathBuf,
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
    objects: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: puts, and the reads of
    /// uploads, go to its disk thread (`local.rs`).
    local: Option<Arc<Local>>,
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

    fn err(&self, op: &'static str, path: &str) -> impl FnOnce(object_store::Error) -> StoreError {
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
    fn local_path(
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
    fn local_err(&self, op: &'static str, path: &str, e: std::io::Error) -> StoreError {
        self.err(op, path)(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }

    /// On the local backend, writes `objects` as new files, in order, up to
    /// the first that exists (`local::Disk::create_new_all`), and returns how many
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
        let (data, key, payload, signed) = fragment_objects(fragment, body);
        // On a local disk both objects are written with one sync of their
        // data and one of their directories. Where either exists, the general
        // way compares what is there.
        if self
            .put_new_both((&data, &payload), (&key, &signed))
            .await?
        {
            return Ok(PutOutcome::Stored);
        }
        self.put_fragment_where_some_exist(fragment, (&data, payload), (&key, signed))
            .await
    }

    /// Stores a fragment's data and key objects one after the other, each
    /// only where it is not there already with the same bytes: what is left
    /// of a put when one of them exists (a retried upload, or one whose
    /// first attempt was cut between its two objects).
    async fn put_fragment_where_some_exist(
        &self,
        fragment: &SealedFragment<'_>,
        (data, payload): (&str, Bytes),
        (key, signed): (&str, Bytes),
    ) -> Result<PutOutcome, StoreError> {
        let m = &fragment.manifest;
        let conflict = || StoreError::Conflict {
            device: m.device.clone(),
            stream: m.stream.clone(),
            sequence: m.sequence,
        };
        if !self.put_new(data, payload.clone()).await? {
            match self.read(data).await? {
                Some(existing) if existing == payload => {}
                Some(_) => return Err(conflict()),
                // Deleted between the two calls: write it again.
                None => {
                    self.put_new(data, payload).await?;
                }
            }
        }
        if self.put_new(key, signed.clone()).await? {
            return Ok(PutOutcome::Stored);
        }
        match self.read(key).await? {
            Some(existing) if existing == signed => Ok(PutOutcome::AlreadyStored),
            Some(_) => Err(conflict()),
            None => {
                self.put_new(key, signed).await?;
                Ok(PutOutcome::Stored)
            }
        }
    }

    /// Stores a fragment as [`Self::put_fragment`] does, if it fits the
    /// hash chain of the fragments stored before and after it (`Err`: why
    /// it does not). On the local backend the check and the write are one
    /// step of its disk thread, so two uploads cannot both pass a check that
    /// the other's write would fail; on others the neighbours are read first
    /// (two instances writing neighbours of one stream at once can each miss
    /// the other's, which `sealcam verify` reports as a break in the chain).
    pub async fn put_fragment_in_chain(
        &self,
        fragment: &SealedFragment<'_>,
        body: &Bytes,
    ) -> Result<Result<PutOutcome, String>, StoreError> {
        let link = Link::of(fragment);
        let paths: Vec<String> = link
            .neighbours()
            .into_iter()
            .map(|seq| key_path(&link.device, &link.stream, seq))
            .collect();
        let refused = |r: ChainRefusal| match r {
            ChainRefusal::Broken(reason) => Ok(Err(reason)),
            ChainRefusal::Damaged(e) => Err(e),
        };
        if let Some(local) = &self.local {
            let (data, key, payload, signed) = fragment_objects(fragment, body);
            let reads = paths
                .iter()
                .map(|p| self.local_path(local, p, "read"))
                .collect::<Result<Vec<_>, _>>()?;
            let objects = vec![
                (self.local_path(local, &data, "write")?, payload.clone()),
                (self.local_path(local, &key, "write")?, signed.clone()),
            ];
            let written = local
                .disk
                .create_new_all_if(reads, Box::new(move |found| link.check(found)), objects)
                .await
                .map_err(|e| self.local_err("write", &format!("{data} and {key}"), e))?;
            return match written {
                Err(r) => refused(r),
                Ok(2) => Ok(Ok(PutOutcome::Stored)),
                // One of them is there already: compared the general way.
                Ok(_) => self
                    .put_fragment_where_some_exist(fragment, (&data, payload), (&key, signed))
                    .await
                    .map(Ok),
            };
        }
        let mut found = Vec::with_capacity(paths.len());
        for path in &paths {
            found.push(self.read(path).await?);
        }
        if let Err(r) = link.check(found) {
            return refused(r);
        }
        self.put_fragment(fragment, body).await.map(Ok)
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
