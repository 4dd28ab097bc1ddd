//! The index of a stream's fragments by sequence and by time, kept in the
//! storage beside them, so that a listing reads what it returns and no more.
//!
//! By sequence, the key objects are their own index: their names are
//! zero-padded sequences, so a listing from a sequence on starts after it
//! (`start-after` on S3) and stops past the last one asked for.
//!
//! By time, each stored fragment has a marker object, empty, whose name
//! holds its times: `streams/<device>/<stream>/times/<end:020>-<seq:020>-<start:020>`
//! (camera time, Unix ns; the storage's timestamp on it is the receive
//! time). A time query lists the markers from its first instant on, in
//! order of end time, and stops once their end times are past its last
//! instant by more than [`MAX_SPAN_NS`]: a fragment that ends before the
//! query's first instant, or starts after its last, is never read.
//! Markers are written create-only with names that follow from the
//! fragment alone, so instances sharing a bucket write the same ones.
//! A stream stored before the markers existed (or whose markers were lost)
//! is indexed on its first time query (every key object read once, its
//! marker written), and an object `streams/<device>/<stream>/indexed` then
//! says it need not be again; a stream whose sequence 0 was stored with
//! its marker has that object from the start.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sealcam_format::{Manifest, Name};

use super::fragments::parse_signed_manifest;
use super::layout::{key_path, seq_name, stream_prefix};
use super::{Store, StoreError};

/// A fragment whose camera says it lasted longer than this is indexed as
/// ending this long after it started, so that a time query that stops this
/// far past its last instant sees it.
pub const MAX_SPAN_NS: u64 = 3_600_000_000_000;

/// How many objects one listing request returns on S3 (a page).
const PAGE: u64 = 1000;

/// Fragments found by a listing, and what finding them cost.
#[derive(Debug, Default)]
pub struct Found {
    /// Sequence and signed manifest, ascending by sequence.
    pub fragments: Vec<(u64, Bytes)>,
    /// Storage requests made: listing pages and object reads.
    pub reads: u64,
}

fn times_prefix(device: &Name, stream: &Name) -> String {
    format!("{}/times", stream_prefix(device, stream))
}

pub(super) fn indexed_path(device: &Name, stream: &Name) -> String {
    format!("{}/indexed", stream_prefix(device, stream))
}

/// The end time it is indexed by: its end, but never before its start nor
/// more than [`MAX_SPAN_NS`] after it.
fn indexed_end(start: u64, end: u64) -> u64 {
    end.clamp(start, start.saturating_add(MAX_SPAN_NS))
}

pub(super) fn time_marker(device: &Name, stream: &Name, seq: u64, start: u64, end: u64) -> String {
    format!(
        "{}/{:020}-{}-{:020}",
        times_prefix(device, stream),
        indexed_end(start, end),
        seq_name(seq),
        start
    )
}

/// (end, sequence, start) from a marker's path.
fn parse_marker(path: &str) -> Option<(u64, u64, u64)> {
    let mut parts = path.rsplit('/').next()?.split('-');
    let end = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some((end, seq, start))
}

/// Listing pages for `n` objects listed.
fn pages(n: u64) -> u64 {
    n.div_ceil(PAGE).max(1)
}

impl Store {
    /// Records a stored fragment in the time index. Idempotent.
    pub async fn index_fragment(&self, m: &Manifest) -> Result<(), StoreError> {
        let path = time_marker(
            &m.device,
            &m.stream,
            m.sequence,
            m.start_unix_ns,
            m.end_unix_ns,
        );
        self.put_new(&path, Bytes::new()).await?;
        // A stream that begins with its markers is indexed from the start.
        if m.sequence == 0 {
            self.put_new(&indexed_path(&m.device, &m.stream), Bytes::new())
                .await?;
        }
        Ok(())
    }

    /// Objects under `prefix` after `offset` (a full path), in path order,
    /// up to and including the first for which `past` is true (it is
    /// returned too, so the caller sees where it stopped). On S3 the
    /// listing starts after `offset` and the rest of it is never asked for.
    async fn list_from(
        &self,
        prefix: &str,
        offset: Option<&str>,
        mut past: impl FnMut(&str) -> bool,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let p = ObjectPath::from(prefix);
        let mut listed = match offset {
            Some(o) => self
                .objects
                .list_with_offset(Some(&p), &ObjectPath::from(o)),
            None => self.objects.list(Some(&p)),
        };
        let mut out = Vec::new();
        if self.local.is_some() {
            // A directory lists in no order: all of it, then sorted.
            let mut all: Vec<String> = listed
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .map_err(self.err("list", prefix))?;
            all.sort();
            for path in all {
                let stop = past(&path);
                out.push(path);
                if stop {
                    break;
                }
            }
            return Ok((out, 1));
        }
        while let Some(m) = listed.next().await {
            let path = m.map_err(self.err("list", prefix))?.location.to_string();
            let stop = past(&path);
            out.push(path);
            if stop {
                break;
            }
        }
        let n = out.len() as u64;
        Ok((out, pages(n)))
    }

    /// Reads the key objects of `sequences`, 16 at a time; those deleted
    /// since they were listed are left out.
    async fn manifests(
        &self,
        device: &Name,
        stream: &Name,
        sequences: Vec<u64>,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let read: Vec<(u64, Option<Bytes>)> = futures_util::stream::iter(sequences)
            .map(|seq| async move {
                Ok::<_, StoreError>((seq, self.read(&key_path(device, stream, seq)).await?))
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(read
            .into_iter()
            .filter_map(|(seq, b)| Some((seq, b?)))
            .collect())
    }

    /// The fragments with sequences in `first..=last`: one listing from
    /// `first` on, and one read per fragment returned.
    pub async fn fragments_by_sequence(
        &self,
        device: &Name,
        stream: &Name,
        first: u64,
        last: u64,
    ) -> Result<Found, StoreError> {
        let prefix = format!("{}/keys", stream_prefix(device, stream));
        let offset = first.checked_sub(1).map(|s| key_path(device, stream, s));
        let seq = |p: &str| p.rsplit('/').next().and_then(|n| n.parse::<u64>().ok());
        let (listed, mut reads) = self
            .list_from(&prefix, offset.as_deref(), |p| {
                seq(p).is_some_and(|s| s >= last)
            })
            .await?;
        let sequences: Vec<u64> = listed
            .iter()
            .filter_map(|p| seq(p))
            .filter(|s| (first..=last).contains(s))
            .collect();
        reads += sequences.len() as u64;
        Ok(Found {
            fragments: self.manifests(device, stream, sequences).await?,
            reads,
        })
    }

    /// The fragments of `first..=last` by sequence that end at or after
    /// `from_ns` and start at or before `to_ns` (camera time): one listing
    /// of the time index from `from_ns` on, and one read per fragment
    /// returned. Indexes the stream first if it never was.
    pub async fn fragments_by_time(
        &self,
        device: &Name,
        stream: &Name,
        (from_ns, to_ns): (u64, u64),
        (first, last): (u64, u64),
    ) -> Result<Found, StoreError> {
        let mut reads = self.ensure_indexed(device, stream).await?;
        let prefix = times_prefix(device, stream);
        // Markers sort by end time: start after every one ending before
        // `from_ns`.
        let offset = from_ns
            .checked_sub(1)
            .map(|f| format!("{prefix}/{f:020}-{}", "9".repeat(20)));
        let stop_after = to_ns.saturating_add(MAX_SPAN_NS);
        let (listed, pages) = self
            .list_from(&prefix, offset.as_deref(), |p| {
                parse_marker(p).is_some_and(|(end, _, _)| end > stop_after)
            })
            .await?;
        reads += pages;
        let mut sequences: Vec<u64> = listed
            .iter()
            .filter_map(|p| parse_marker(p))
            .filter(|&(end, seq, start)| {
                end >= from_ns && start <= to_ns && (first..=last).contains(&seq)
            })
            .map(|(_, seq, _)| seq)
            .collect();
        sequences.sort_unstable();
        sequences.dedup();
        reads += sequences.len() as u64;
        Ok(Found {
            fragments: self.manifests(device, stream, sequences).await?,
            reads,
        })
    }

    /// Writes the time markers of a stream stored before they existed, once
    /// (every key object read); returns the storage requests it made.
    async fn ensure_indexed(&self, device: &Name, stream: &Name) -> Result<u64, StoreError> {
        let marker = indexed_path(device, stream);
        if self.read(&marker).await?.is_some() {
            return Ok(1);
        }
        let sequences = self.sequences(device, stream).await?;
        let mut reads = 2 + sequences.len() as u64;
        for (seq, bytes) in self.manifests(device, stream, sequences).await? {
            let m = parse_signed_manifest(device, stream, seq, &bytes)?;
            self.index_fragment(&m.manifest).await?;
        }
        self.put_new(&marker, Bytes::new()).await?;
        reads += 1;
        tracing::info!(%device, %stream, "time index of the stream rebuilt from its key objects");
        Ok(reads)
    }

    /// Removes the time markers of fragments whose key objects are gone
    /// (after a deletion), returning how many.
    pub async fn forget_deleted(&self, device: &Name, stream: &Name) -> Result<usize, StoreError> {
        let keys: std::collections::HashSet<u64> =
            self.sequences(device, stream).await?.into_iter().collect();
        let stale: Vec<String> = self
            .list(&times_prefix(device, stream))
            .await?
            .into_iter()
            .filter(|l| parse_marker(&l.path).is_some_and(|(_, seq, _)| !keys.contains(&seq)))
            .map(|l| l.path)
            .collect();
        let n = stale.len();
        self.remove_all(stale).await?;
        Ok(n)
    }

    /// Removes a stream's index (when the stream is deleted).
    pub async fn remove_index(&self, device: &Name, stream: &Name) -> Result<(), StoreError> {
        let paths: Vec<String> = self
            .list(&times_prefix(device, stream))
            .await?
            .into_iter()
            .map(|l| l.path)
            .chain(std::iter::once(indexed_path(device, stream)))
            .collect();
        self.remove_all(paths).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A marker's name gives back what it was made of, and any other
        /// name in the directory is no marker rather than a panic.
        #[test]
        fn markers_round_trip_and_strangers_do_not_parse(
            seq in any::<u64>(),
            start in any::<u64>(),
            end in any::<u64>(),
            junk in "\\PC*",
        ) {
            let (d, s) = (Name::new("cam").unwrap(), Name::new("front").unwrap());
            let (e, q, st) = parse_marker(&time_marker(&d, &s, seq, start, end)).unwrap();
            prop_assert_eq!((q, st), (seq, start));
            prop_assert_eq!(e, indexed_end(start, end));
            prop_assert!(e >= start);
            let _ = parse_marker(&junk);
        }
    }

    #[test]
    fn markers_sort_by_end_and_name_their_fragment() {
        let (d, s) = (Name::new("cam").unwrap(), Name::new("front").unwrap());
        let a = time_marker(&d, &s, 7, 100, 200);
        let b = time_marker(&d, &s, 3, 50, 1000);
        assert!(a < b);
        assert_eq!(parse_marker(&a), Some((200, 7, 100)));
        // A span longer than the bound is indexed as the bound; an end
        // before the start, as the start.
        assert_eq!(
            parse_marker(&time_marker(&d, &s, 1, 5, u64::MAX)),
            Some((5 + MAX_SPAN_NS, 1, 5))
        );
        assert_eq!(parse_marker(&time_marker(&d, &s, 1, 5, 1)), Some((5, 1, 5)));
        assert_eq!(parse_marker("x/garbage"), None);
    }
}
