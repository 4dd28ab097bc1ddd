//! The audit trail: who did what, when, from where, with what result.
//!
//! Every API call and every connection, accepted or refused, becomes one
//! [`Record`]. Records form a hash chain per instance and process start (an
//! *epoch*): each names the SHA-256 of the previous record's exact bytes.
//! They are written in batches, each batch one create-only object beside the
//! fragments, so the trail scales with the storage and survives the
//! instance:
//!
//! ```text
//! audit/<instance>/<epoch:020>/<segment:010>.jsonl
//! ```
//!
//! A segment is the records as JSON lines, then one seal line: the number of
//! records, the hash of the last one, and an ECDSA P-256 signature by the
//! ingest's audit key (`audit.key` in the PKI directory; verifiers need only
//! `audit.pub`). Changing, removing or reordering a record breaks the chain;
//! removing a whole segment leaves a hole in the numbering; forging a segment
//! needs the audit key. Each epoch begins by naming the previous epoch's last
//! segment (`link.rs`), so a deleted run or tail is found too; the newest
//! segments are covered by a head exported to the operator (`head.rs`). See
//! `docs/design/ingest.md`.
//!
//! * `mod.rs`: the records, their seal and where segments are.
//! * `writer.rs`: [`AuditLog`], the handle everything records through, and
//!   the task that writes the chain.
//! * `verify.rs`: reading every chain back and verifying it ([`read_all`]).
//! * `link.rs`: each epoch's first record names the run before it.
//! * `head.rs`: a signed head exported to the operator, checked later.
//! * `key.rs`: the audit key pair.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

mod head;
mod key;
mod link;
mod verify;
mod writer;

pub use head::{check_heads, make_heads, HeadFile};
pub use key::{ensure_key, load_signing_key, load_verifying_key};
pub use link::{Link, EPOCH_START};
pub use verify::{read_all, verify_segment, ChainSummary};
pub use writer::{host_name, AuditLog, QUEUE};

pub const AUDIT_KEY: &str = "audit.key";
pub const AUDIT_PUB: &str = "audit.pub";
const SEAL_CONTEXT: &[u8] = b"sealcam audit v1\0";
/// Records kept in memory while the storage cannot be written; past this,
/// new records are counted and dropped (and that is logged).
const MAX_BUFFERED: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("the audit trail could not be written: {0}")]
    Write(String),
    #[error("invalid audit instance name {0:?}: use A-Z a-z 0-9 . _ -")]
    Instance(String),
    #[error("audit head {path}: {reason}")]
    Head { path: String, reason: String },
}

/// One audited event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the chain, from 0.
    pub n: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// `device:<name>`, `consumer:<name>`, `operator`, or `anonymous`.
    pub actor: String,
    /// `connect`, `upload`, `list`, `read`, `read-certificate`,
    /// `read-certificates`, `upload-head`, `read-head`, `publish-roster`,
    /// `read-roster`, `enroll`,
    /// `renew`, `revoke`, `delete`, `update-check`, `read-bundle`,
    /// `update-publish`, `update-withdraw`, …
    pub action: String,
    /// What was acted on: `DEVICE/STREAM/SEQUENCE`, `DEVICE/STREAM`, `DEVICE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// `ok`, `refused` or `error`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// SHA-256 (hex) of the previous record's line; zeros for the first.
    pub prev: String,
    /// In an epoch's first record (`epoch-start`): the previous run's last
    /// sealed segment (`link.rs`); absent for an instance's first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
}

/// What a caller fills in; the writer adds position, time and chain.
#[derive(Clone, Debug, Default)]
pub struct Event {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub addr: Option<String>,
    pub result: String,
    pub detail: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealLine {
    seal: Seal,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seal {
    records: u64,
    last_hash: String,
    signature: String,
}

fn seal_message(
    instance: &str,
    epoch: u64,
    segment: u64,
    records: u64,
    last: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(SEAL_CONTEXT.len() + instance.len() + 64);
    m.extend_from_slice(SEAL_CONTEXT);
    m.extend_from_slice(instance.as_bytes());
    m.push(0);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&segment.to_be_bytes());
    m.extend_from_slice(&records.to_be_bytes());
    m.extend_from_slice(last);
    m
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn segment_path(instance: &str, epoch: u64, segment: u64) -> String {
    format!("audit/{instance}/{epoch:020}/{segment:010}.jsonl")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use p256::ecdsa::{SigningKey, VerifyingKey};

    use super::*;
    use crate::store::{StorageConfig, Store};

    /// A store, the audit key, and a log writing chain "a" (flushed only
    /// when asked).
    async fn setup() -> (tempfile::TempDir, Store, VerifyingKey, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        ensure_key(&pki).unwrap();
        let store = Store::open(&StorageConfig::local(dir.path().join("data"))).unwrap();
        let key = load_verifying_key(&pki.join(AUDIT_PUB)).unwrap();
        let (log, _task) =
            AuditLog::start(store.clone(), &pki, "a", Duration::from_secs(3600)).unwrap();
        (dir, store, key, log)
    }

    fn event(i: u32) -> Event {
        Event {
            actor: "consumer:alice".into(),
            action: "read".into(),
            target: Some(format!("cam/front/{i}")),
            addr: Some("127.0.0.1:1".into()),
            result: "ok".into(),
            detail: None,
        }
    }

    #[tokio::test]
    async fn chain_verifies_and_any_change_is_found() {
        let (_dir, store, key, log) = setup().await;
        for i in 0..3 {
            log.record(event(i));
        }
        log.flush().await.unwrap();
        for i in 3..5 {
            log.record(event(i));
        }
        log.flush().await.unwrap();
        let (chains, records) = read_all(&store, &key).await.unwrap();
        assert_eq!(chains.len(), 1);
        assert!(chains[0].problems.is_empty(), "{:?}", chains[0].problems);
        // The epoch-start record, then the five.
        assert_eq!((chains[0].segments, chains[0].records), (2, 6));
        assert_eq!(records[0].action, EPOCH_START);
        assert_eq!(records[5].target.as_deref(), Some("cam/front/4"));

        // Change one record in the first segment.
        let listed = store.list("audit").await.unwrap();
        let first = &listed[0].path;
        let text = String::from_utf8(store.read(first).await.unwrap().unwrap().to_vec()).unwrap();
        store.remove(first).await.unwrap();
        store
            .put_new(first, Bytes::from(text.replace("front/1", "front/9")))
            .await
            .unwrap();
        let (chains, _) = read_all(&store, &key).await.unwrap();
        assert!(
            chains[0].problems[0].contains("does not follow"),
            "{:?}",
            chains[0].problems
        );

        // Remove it altogether: a hole in the numbering.
        store.remove(first).await.unwrap();
        let (chains, _) = read_all(&store, &key).await.unwrap();
        assert!(
            chains[0].problems[0].contains("segment 0 is missing"),
            "{:?}",
            chains[0].problems
        );
    }

    /// A second run of the same instance, flushed once.
    async fn second_run(store: &Store, dir: &tempfile::TempDir) {
        let (log, task) = AuditLog::start(
            store.clone(),
            &dir.path().join("pki"),
            "a",
            Duration::from_secs(3600),
        )
        .unwrap();
        log.record(event(100));
        log.flush().await.unwrap();
        drop(log);
        task.await.unwrap();
    }

    fn problems(chains: &[ChainSummary]) -> String {
        chains
            .iter()
            .flat_map(|c| c.problems.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[tokio::test]
    async fn each_run_names_the_one_before_and_deleting_runs_or_tails_is_found() {
        let (dir, store, key, log) = setup().await;
        log.record(event(0));
        log.flush().await.unwrap();
        log.record(event(1));
        log.flush().await.unwrap();
        drop(log);
        second_run(&store, &dir).await;
        second_run(&store, &dir).await;
        let (chains, records) = read_all(&store, &key).await.unwrap();
        assert_eq!(chains.len(), 3);
        assert_eq!(problems(&chains), "");
        let starts: Vec<&Record> = records.iter().filter(|r| r.action == EPOCH_START).collect();
        assert_eq!(starts.len(), 3);
        assert!(starts[0].link.is_none());
        let l = starts[1].link.as_ref().unwrap();
        assert_eq!((l.epoch, l.segment), (chains[0].epoch, 1));

        let listed = store.list("audit").await.unwrap();
        let paths: Vec<String> = listed.into_iter().map(|l| l.path).collect();
        // The tail of the first run: its second segment.
        let tail = paths[1].clone();
        let saved = store.read(&tail).await.unwrap().unwrap();
        store.remove(&tail).await.unwrap();
        let (chains, _) = read_all(&store, &key).await.unwrap();
        assert!(
            problems(&chains).contains("its tail was removed"),
            "{}",
            problems(&chains)
        );
        store.put_new(&tail, saved).await.unwrap();

        // The whole middle run.
        let middle = paths[2].clone();
        let saved = store.read(&middle).await.unwrap().unwrap();
        store.remove(&middle).await.unwrap();
        let (chains, _) = read_all(&store, &key).await.unwrap();
        assert!(
            problems(&chains).contains("a whole run was deleted"),
            "{}",
            problems(&chains)
        );
        store.put_new(&middle, saved).await.unwrap();

        // The first run: the second now claims to follow nothing that is there.
        for p in &paths[..2] {
            store.remove(p).await.unwrap();
        }
        let (chains, _) = read_all(&store, &key).await.unwrap();
        assert!(
            problems(&chains).contains("a whole run was deleted"),
            "{}",
            problems(&chains)
        );
    }

    #[tokio::test]
    async fn a_head_finds_the_newest_run_gone() {
        let (dir, store, key, log) = setup().await;
        log.record(event(0));
        log.flush().await.unwrap();
        drop(log);
        second_run(&store, &dir).await;
        let signing = load_signing_key(&dir.path().join("pki")).unwrap();
        let heads = make_heads(&store, &signing).await.unwrap();
        assert_eq!(heads.heads.len(), 1);
        assert!(check_heads(&store, &key, &heads).await.unwrap().is_empty());

        // The newest run goes: the chains alone still verify, the head does not.
        let newest = store.list("audit").await.unwrap().pop().unwrap().path;
        store.remove(&newest).await.unwrap();
        let (chains, _) = read_all(&store, &key).await.unwrap();
        assert_eq!(problems(&chains), "");
        let found = check_heads(&store, &key, &heads).await.unwrap();
        assert!(found[0].contains("is gone"), "{found:?}");

        // A head edited by hand no longer verifies.
        let mut forged = make_heads(&store, &signing).await.unwrap();
        forged.heads[0].segment += 1;
        let found = check_heads(&store, &key, &forged).await.unwrap();
        assert!(found[0].contains("not signed"), "{found:?}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_says_so_in_the_trail() {
        let (_dir, store, key, log) = setup().await;
        // The writer task cannot run until this test yields: the queue fills.
        for i in 0..(QUEUE as u32 + 5) {
            log.record(event(i));
        }
        let (depth, dropped) = log.queue_metrics();
        assert_eq!(depth.get(), QUEUE as i64);
        assert_eq!(dropped.get(), 5);
        log.flush().await.unwrap();
        let (chains, records) = read_all(&store, &key).await.unwrap();
        assert_eq!(problems(&chains), "");
        let overflow = records
            .iter()
            .find(|r| r.action == "audit-overflow")
            .unwrap();
        assert!(
            overflow
                .detail
                .as_deref()
                .unwrap()
                .starts_with("5 records dropped"),
            "{overflow:?}"
        );
        assert_eq!(depth.get(), 0);
        // Waiting for room succeeds once the writer drains the queue.
        log.record_within(event(0), Duration::from_secs(5)).await;
        assert_eq!(dropped.get(), 5);
    }

    #[tokio::test]
    async fn a_segment_signed_by_another_key_is_refused() {
        let (_dir, store, _, log) = setup().await;
        log.record(event(0));
        log.flush().await.unwrap();
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        let (chains, _) = read_all(&store, other.verifying_key()).await.unwrap();
        assert!(chains[0].problems[0].contains("does not verify"));
    }
}
