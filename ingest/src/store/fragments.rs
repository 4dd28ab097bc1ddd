//! What the objects mean: a fragment as its data and key objects, stored
//! create-only and only where it fits its stream's hash chain; reading it
//! back; destroying keys apart from ciphertext; device certificates.

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use sealcam_format::{ManifestHash, Name, SealedFragment, SignedManifest};

use super::disk::CheckedWriteError;
use super::index::{indexed_path, time_marker};
use super::layout::{cert_path, certs_prefix, data_path, key_path, sequence_of, stream_prefix};
use super::{Listed, Store, StoreError};

/// How a fragment does not fit the stored fragments next to it.
#[derive(Debug, thiserror::Error)]
pub enum ChainBreak {
    #[error("chain broken: fragment {sequence} names previous manifest {named} but stored fragment {neighbour} has {stored}")]
    Previous {
        sequence: u64,
        named: ManifestHash,
        neighbour: u64,
        stored: ManifestHash,
    },
    #[error("chain broken: stored fragment {neighbour} does not follow this fragment {sequence}")]
    Next { sequence: u64, neighbour: u64 },
}

/// Why a fragment was not stored in its chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// It does not fit a stored neighbour: refused, for the device to see.
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    /// The storage failed, a stored neighbour is not a readable manifest, or
    /// other bytes are stored under its sequence ([`StoreError::Conflict`]).
    #[error(transparent)]
    Store(#[from] StoreError),
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
    fn check(&self, found: Vec<Option<Bytes>>) -> Result<(), ChainError> {
        let (d, s, sequence) = (&self.device, &self.stream, self.sequence);
        for (neighbour, bytes) in self.neighbours().into_iter().zip(found) {
            let Some(bytes) = bytes else { continue };
            let stored = parse_signed_manifest(d, s, neighbour, &bytes)?;
            if neighbour < sequence && stored.manifest_hash() != self.prev {
                return Err(ChainBreak::Previous {
                    sequence,
                    named: self.prev,
                    neighbour,
                    stored: stored.manifest_hash(),
                }
                .into());
            }
            if neighbour > sequence && stored.manifest.prev != self.hash {
                return Err(ChainBreak::Next {
                    sequence,
                    neighbour,
                }
                .into());
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

/// A stored fragment being read: [`Store::fragment_stream`].
pub struct FragmentStream {
    /// Its whole length, head and payload.
    pub len: u64,
    /// The bytes before the payload.
    pub head: Bytes,
    /// The payload, as it is read.
    pub payload: futures_util::stream::BoxStream<'static, Result<Bytes, StoreError>>,
}

/// How a put ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PutOutcome {
    Stored,
    /// The same bytes were stored before: nothing written.
    AlreadyStored,
}

impl Store {
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
    ) -> Result<PutOutcome, ChainError> {
        let (outcome, indexed) = self.put_fragment_in_chain_only(fragment, body).await?;
        // Stored, or stored before: its time marker may be what a first
        // attempt did not get to write.
        if !indexed {
            self.index_fragment(&fragment.manifest).await?;
        }
        Ok(outcome)
    }

    /// [`Self::put_fragment_in_chain`], and whether its time index entry
    /// was written with it (on a local disk, in the same durable batch as
    /// its two objects, so that it costs no sync of its own).
    async fn put_fragment_in_chain_only(
        &self,
        fragment: &SealedFragment<'_>,
        body: &Bytes,
    ) -> Result<(PutOutcome, bool), ChainError> {
        let link = Link::of(fragment);
        let paths: Vec<String> = link
            .neighbours()
            .into_iter()
            .map(|seq| key_path(&link.device, &link.stream, seq))
            .collect();
        if let Some(local) = &self.local {
            let (data, key, payload, signed) = fragment_objects(fragment, body);
            let reads = paths
                .iter()
                .map(|p| self.local_path(local, p, "read"))
                .collect::<Result<Vec<_>, _>>()?;
            let m = &fragment.manifest;
            let mut objects = vec![
                (self.local_path(local, &data, "write")?, payload.clone()),
                (self.local_path(local, &key, "write")?, signed.clone()),
            ];
            let (d, s) = (&m.device, &m.stream);
            let marker = time_marker(d, s, m.sequence, m.start_unix_ns, m.end_unix_ns);
            objects.push((self.local_path(local, &marker, "write")?, Bytes::new()));
            if m.sequence == 0 {
                let indexed = indexed_path(d, s);
                objects.push((self.local_path(local, &indexed, "write")?, Bytes::new()));
            }
            let all = objects.len();
            let written = local
                .disk
                .create_new_all_if(reads, Box::new(move |found| link.check(found)), objects)
                .await;
            return match written {
                Err(CheckedWriteError::Refused(r)) => Err(r),
                Err(CheckedWriteError::Io(e)) => Err(self
                    .local_err("write", &format!("{data} and {key}"), e)
                    .into()),
                Ok(n) if n >= 2 => Ok((PutOutcome::Stored, n == all)),
                // One of them is there already: compared the general way.
                Ok(_) => Ok((
                    self.put_fragment_where_some_exist(fragment, (&data, payload), (&key, signed))
                        .await?,
                    false,
                )),
            };
        }
        let mut found = Vec::with_capacity(paths.len());
        for path in &paths {
            found.push(self.read(path).await?);
        }
        link.check(found)?;
        Ok((self.put_fragment(fragment, body).await?, false))
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

    /// A stored fragment as the device sent it, for serving without its
    /// payload in memory: its length, the bytes before its payload, and the
    /// payload as it is read from the storage.
    pub async fn fragment_stream(
        &self,
        device: &Name,
        stream: &Name,
        sequence: u64,
    ) -> Result<Option<FragmentStream>, StoreError> {
        let Some(signed) = self.signed_manifest(device, stream, sequence).await? else {
            return Ok(None);
        };
        let path = data_path(device, stream, sequence);
        let damaged = |reason: String| StoreError::Damaged {
            path: path.clone(),
            reason,
        };
        let m = parse_signed_manifest(device, stream, sequence, &signed)?;
        let got = match self.objects.get(&ObjectPath::from(path.as_str())).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read", &path)(e)),
        };
        let size = got.meta.size;
        if size != m.manifest.payload_len {
            return Err(damaged(format!(
                "{size} bytes stored, the manifest says {}",
                m.manifest.payload_len
            )));
        }
        let len = usize::try_from(size).map_err(|e| damaged(e.to_string()))?;
        let head =
            sealcam_format::fragment::head(&signed, len).map_err(|e| damaged(e.to_string()))?;
        let total = head.len() as u64 + size;
        let store = self.describe.to_string();
        let payload = got.into_stream().map_err(move |e| StoreError::Backend {
            store: store.clone(),
            op: "read",
            path: path.clone(),
            source: Box::new(e),
        });
        Ok(Some(FragmentStream {
            len: total,
            head: Bytes::from(head),
            payload: Box::pin(payload),
        }))
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

    /// Stored fragments (those with a key object) and when each was
    /// received, ascending: the time the storage stamped on its key object
    /// (Unix s), which the camera's clock has no part in.
    pub async fn received(
        &self,
        device: &Name,
        stream: &Name,
    ) -> Result<Vec<(u64, i64)>, StoreError> {
        let prefix = format!("{}/keys", stream_prefix(device, stream));
        Ok(self
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|l| Some((sequence_of(&l)?, l.last_modified_unix_s)))
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
        let path = cert_path(device, serial_hex);
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
        let listed = self.list(&certs_prefix(device)).await?;
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

    /// Every certificate stored for the device, as (serial, PEM), by
    /// serial. Each was written once, when an instance first saw it.
    pub async fn device_certs(&self, device: &Name) -> Result<Vec<(String, String)>, StoreError> {
        let mut listed: Vec<Listed> = self
            .list(&certs_prefix(device))
            .await?
            .into_iter()
            .filter(|l| l.path.ends_with(".pem"))
            .collect();
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        let mut out = Vec::with_capacity(listed.len());
        for l in listed {
            let serial = l
                .path
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".pem"))
                .unwrap_or_default()
                .to_owned();
            // Removed since the listing: nothing to serve.
            if let Some(b) = self.read(&l.path).await? {
                out.push((serial, String::from_utf8_lossy(&b).into_owned()));
            }
        }
        Ok(out)
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
    fn subslices_share_the_buffer_and_strangers_do_not() {
        let whole = Bytes::from_static(b"0123456789");
        let part = subslice(&whole, &whole[3..7]).unwrap();
        assert_eq!(&part[..], b"3456");
        assert_eq!(part.as_ptr(), whole[3..].as_ptr());
        let other = b"3456".to_vec();
        assert!(subslice(&whole, &other).is_none());
    }
}
