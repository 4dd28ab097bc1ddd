//! Retention and deletion by key destruction.
//!
//! A fragment's wrapped data keys live in its key object, apart from its
//! ciphertext (`store.rs`). Deleting a fragment destroys the key object
//! first: from then on no copy of the ciphertext, in a backup, a replica or
//! a forgotten bucket version, can be decrypted by anyone, consumers
//! included (crypto-erase, NIST SP 800-88). A signed record of the
//! destruction goes into the audit trail, then the ciphertext is removed.
//!
//! The sweeper runs in every instance; deleting what another instance just
//! deleted is harmless.

use std::time::Duration;

use sealcam_format::{ManifestHash, Name};

use crate::audit::{AuditLog, Event};
use crate::config::RetentionConfig;
use crate::store::{self, Hold, Store, StoreError};

/// Ciphertext with no key object is removed only when older than this, so
/// that an upload in progress (data written, key object next) is left alone.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the deletion record could not be written to the audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{stream} is under legal hold {id}; lift the hold first (sealcam-ingest hold lift {stream} {id})")]
    Held { stream: String, id: String },
}

/// What one deletion destroyed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    pub fragments: usize,
    pub orphans: usize,
    /// Signed heads older than the retention period.
    pub heads: usize,
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 fragment".into()
    } else {
        format!("{n} fragments")
    }
}

fn now_unix_ns() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

/// Destroys `fragments` (sequence and manifest hash) of one stream: key
/// objects, then a deletion record in the audit trail (flushed), then the
/// ciphertext.
pub async fn destroy(
    store: &Store,
    audit: &AuditLog,
    actor: &str,
    device: &Name,
    stream: &Name,
    fragments: &[(u64, ManifestHash)],
    why: &str,
) -> Result<(), RetentionError> {
    let (Some(first), Some(last)) = (fragments.first(), fragments.last()) else {
        return Ok(());
    };
    let sequences: Vec<u64> = fragments.iter().map(|f| f.0).collect();
    store.delete_keys(device, stream, &sequences).await?;
    audit.record(Event {
        actor: actor.to_owned(),
        action: "delete".into(),
        target: Some(format!("{device}/{stream}")),
        addr: None,
        result: "ok".into(),
        detail: Some(format!(
            "{why}: keys of {} destroyed (sequences {}..={}, manifests {} .. {})",
            count(fragments.len()),
            first.0,
            last.0,
            first.1,
            last.1
        )),
    });
    audit.flush().await?;
    store.delete_data(device, stream, &sequences).await?;
    tracing::info!(%device, %stream, fragments = fragments.len(), first = first.0, last = last.0, why, "fragments destroyed");
    Ok(())
}

/// Removes ciphertext whose key object is gone (a deletion interrupted
/// between its two steps), once it is older than the grace period.
async fn remove_orphans(store: &Store, device: &Name, stream: &Name) -> Result<usize, StoreError> {
    let keys: std::collections::HashSet<u64> =
        store.sequences(device, stream).await?.into_iter().collect();
    let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - ORPHAN_GRACE.as_secs() as i64;
    let orphans: Vec<u64> = store
        .data_sequences(device, stream)
        .await?
        .into_iter()
        .filter(|(seq, modified)| !keys.contains(seq) && *modified < cutoff)
        .map(|(seq, _)| seq)
        .collect();
    store.delete_data(device, stream, &orphans).await?;
    Ok(orphans.len())
}

/// The fragments of a stream received before `cutoff_unix_s` and under
/// none of `holds`, oldest first, in runs that no held fragment
/// interrupts (each run is one deletion record).
///
/// The decision is on the ingest's clock: a fragment's receive time is the
/// time the storage stamped on its key object, which the listing gives
/// without a read. The camera's clock has no part in it, so a fragment a
/// camera stamped in the future stops nothing, and one it stamped 1970
/// (before its clock was set) is kept for the full period from its arrival.
/// Only the key objects of the fragments that expire are read (for the
/// manifest hash the deletion record names, and the holds' time ranges).
async fn expired(
    store: &Store,
    device: &Name,
    stream: &Name,
    cutoff_unix_s: i64,
    holds: &[Hold],
) -> Result<Vec<Vec<(u64, ManifestHash)>>, StoreError> {
    if holds.iter().any(Hold::is_whole_stream) {
        return Ok(Vec::new());
    }
    let mut runs: Vec<Vec<(u64, ManifestHash)>> = vec![Vec::new()];
    for (seq, received_s) in store.received(device, stream).await? {
        if received_s >= cutoff_unix_s {
            continue;
        }
        let Some(bytes) = store.signed_manifest(device, stream, seq).await? else {
            continue;
        };
        let m = store::parse_signed_manifest(device, stream, seq, &bytes)?;
        let received_ns = u64::try_from(received_s)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000);
        let held = holds.iter().any(|h| {
            h.covers(
                m.manifest.start_unix_ns,
                m.manifest.end_unix_ns,
                received_ns,
            )
        });
        match runs.last_mut() {
            Some(run) if !held => run.push((seq, m.manifest_hash())),
            Some(run) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    Ok(runs)
}

/// One pass over every stream with a retention period.
pub async fn sweep(
    store: &Store,
    audit: &AuditLog,
    rules: &RetentionConfig,
) -> Result<Destroyed, RetentionError> {
    let mut done = Destroyed::default();
    let now = now_unix_ns();
    let now_s = i64::try_from(now / 1_000_000_000).unwrap_or(i64::MAX);
    for (device, stream) in store.streams().await? {
        let Some(period) = rules.period(device.as_str(), stream.as_str()) else {
            continue;
        };
        let cutoff_s = now_s.saturating_sub(i64::try_from(period.as_secs()).unwrap_or(i64::MAX));
        // A hold that cannot be read keeps its stream (and says so): it
        // may be one, and it must not stop the other streams' sweep.
        let holds = match store.holds(&device, &stream).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(%device, %stream, error = %e, "legal holds of the stream unreadable; its fragments are kept until they can be read");
                continue;
            }
        };
        let why = format!("retention period of {}s passed", period.as_secs());
        let mut destroyed = 0;
        for run in expired(store, &device, &stream, cutoff_s, &holds).await? {
            destroy(store, audit, "ingest", &device, &stream, &run, &why).await?;
            destroyed += run.len();
        }
        if destroyed > 0 {
            store.forget_deleted(&device, &stream).await?;
        }
        done.fragments += destroyed;
        done.orphans += remove_orphans(store, &device, &stream).await?;
    }
    // Heads go with the fragments, by the same clock: a head received
    // before the cutoff says nothing a verifier of what is kept needs.
    for (device, stream) in store.head_streams().await? {
        let Some(period) = rules.period(device.as_str(), stream.as_str()) else {
            continue;
        };
        let cutoff_s = now_s.saturating_sub(i64::try_from(period.as_secs()).unwrap_or(i64::MAX));
        done.heads += store
            .delete_heads_received_before(&device, &stream, cutoff_s)
            .await?;
    }
    Ok(done)
}

/// Every fragment of a stream, on an operator's request.
pub async fn delete_stream(
    store: &Store,
    audit: &AuditLog,
    actor: &str,
    device: &Name,
    stream: &Name,
) -> Result<usize, RetentionError> {
    if let Some(h) = store.holds(device, stream).await?.first() {
        return Err(RetentionError::Held {
            stream: format!("{device}/{stream}"),
            id: h.id.clone(),
        });
    }
    let all: Vec<(u64, ManifestHash)> = expired(store, device, stream, i64::MAX, &[])
        .await?
        .into_iter()
        .flatten()
        .collect();
    destroy(
        store,
        audit,
        actor,
        device,
        stream,
        &all,
        "deleted on request",
    )
    .await?;
    // What is left has no keys: remove it now, whatever its age.
    let left: Vec<u64> = store
        .data_sequences(device, stream)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    store.delete_data(device, stream, &left).await?;
    store.remove_index(device, stream).await?;
    Ok(all.len())
}

/// Sweeps every `rules.sweep_every()` until the task is dropped.
pub async fn run(store: Store, audit: AuditLog, rules: RetentionConfig) {
    let mut tick = tokio::time::interval(rules.sweep_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&store, &audit, &rules).await {
            Ok(d) if d.fragments > 0 || d.orphans > 0 => {
                tracing::info!(
                    fragments = d.fragments,
                    orphans = d.orphans,
                    "retention sweep destroyed expired fragments"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed; retrying at the next"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorageConfig;
    use p256::ecdsa::signature::Signer;
    use sealcam_format::{
        Closing, ConsumerSecretKey, FragmentSealer, Frame, SealedFragment, TrackConfig,
    };

    /// A signed fragment of cam/front with the given sequence and times.
    fn fragment(
        seq: u64,
        prev: ManifestHash,
        start: u64,
        end: u64,
        consumer: &ConsumerSecretKey,
    ) -> Vec<u8> {
        let mut rng = rand::thread_rng();
        let track = TrackConfig {
            codec: 1,
            width: 16,
            height: 16,
            framerate_num: 1,
            framerate_den: 1,
            codec_private: vec![1, 2, 3],
        };
        let mut s = FragmentSealer::new(
            Name::new("cam").unwrap(),
            Name::new("front").unwrap(),
            seq,
            &track,
            &mut rng,
        )
        .unwrap();
        s.push_frame(&Frame {
            pts_ns: start,
            duration_ns: 1,
            key_frame: true,
            data: vec![7; 100],
        })
        .unwrap();
        let u = s
            .finish(
                Closing::simple(prev, start, end, std::slice::from_ref(consumer.public())),
                &mut rng,
            )
            .unwrap();
        let key = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let sig: p256::ecdsa::Signature = key.sign(&u.signing_message());
        u.into_file(&sig.to_bytes().into())
    }

    #[tokio::test]
    async fn expired_fragments_lose_keys_then_ciphertext_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        crate::audit::ensure_key(&pki).unwrap();
        let store = Store::open(&StorageConfig::local(dir.path().join("data"))).unwrap();
        let (audit, _task) =
            AuditLog::start(store.clone(), &pki, "t", Duration::from_secs(3600)).unwrap();
        let consumer = ConsumerSecretKey::generate(&mut rand::thread_rng());
        let now = now_unix_ns();
        let hour = 3_600_000_000_000u64;
        let mut prev = ManifestHash::GENESIS;
        let (d, s) = (Name::new("cam").unwrap(), Name::new("front").unwrap());
        // Two fragments received 3 hours ago (the first stamped in the
        // future by its camera), one received now (stamped 1970).
        for (seq, start) in [(0, now + 10 * hour), (1, now - 3 * hour + 1), (2, 1)] {
            let bytes = fragment(seq, prev, start, start + 1, &consumer);
            let f = SealedFragment::parse(&bytes).unwrap();
            // The ciphertext object carries no key material.
            for r in &f.manifest.recipients {
                assert!(!f
                    .payload
                    .windows(r.ciphertext.len())
                    .any(|w| w == r.ciphertext.as_slice()));
            }
            store
                .put_fragment(&f, &bytes::Bytes::from(bytes.clone()))
                .await
                .unwrap();
            prev = f.manifest_hash();
            if seq < 2 {
                let key = dir
                    .path()
                    .join(format!("data/streams/cam/front/keys/{seq:020}"));
                let received = std::time::SystemTime::now() - Duration::from_secs(3 * 3600);
                std::fs::File::options()
                    .write(true)
                    .open(key)
                    .unwrap()
                    .set_modified(received)
                    .unwrap();
            }
        }
        let rules =
            crate::config::IngestConfig::parse("[retention.streams]\n\"cam/front\" = \"1h\"")
                .unwrap()
                .retention;
        // Heads: one received long before the period (signed in the
        // future), one received just now (signed 1970).
        store
            .put_head(&d, &s, now + 10 * hour, bytes::Bytes::from_static(b"old"))
            .await
            .unwrap();
        store
            .put_head(&d, &s, 1, bytes::Bytes::from_static(b"new"))
            .await
            .unwrap();
        let received = std::time::SystemTime::now() - Duration::from_secs(3 * 3600);
        let old_head = dir.path().join("data").join(format!(
            "heads/cam/front/{:010}/{:020}.sch",
            (now + 10 * hour) / hour,
            now + 10 * hour
        ));
        std::fs::File::options()
            .write(true)
            .open(old_head)
            .unwrap()
            .set_modified(received)
            .unwrap();
        let done = sweep(&store, &audit, &rules).await.unwrap();
        assert_eq!(
            done,
            Destroyed {
                fragments: 2,
                orphans: 0,
                heads: 1,
            }
        );
        assert_eq!(store.head_times(&d, &s).await.unwrap(), vec![1]);
        assert_eq!(store.sequences(&d, &s).await.unwrap(), vec![2]);
        assert_eq!(
            store
                .data_sequences(&d, &s)
                .await
                .unwrap()
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert!(store.fragment(&d, &s, 0).await.unwrap().is_none());
        assert!(store.fragment(&d, &s, 2).await.unwrap().is_some());
        // The destruction is on record.
        let key = crate::audit::load_verifying_key(&pki.join(crate::audit::AUDIT_PUB)).unwrap();
        let (_, records) = crate::audit::read_all(&store, &key).await.unwrap();
        let del = records.iter().find(|r| r.action == "delete").unwrap();
        assert!(del
            .detail
            .as_deref()
            .unwrap()
            .contains("keys of 2 fragments destroyed"));

        // Deleting the whole stream leaves nothing.
        assert_eq!(
            delete_stream(&store, &audit, "operator", &d, &s)
                .await
                .unwrap(),
            1
        );
        assert!(store.sequences(&d, &s).await.unwrap().is_empty());
        assert!(store.data_sequences(&d, &s).await.unwrap().is_empty());
    }
}
