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
//! needs the audit key. See `docs/design/README.md` (Not yet) for what this does not cover
//! (the newest segments of a chain can be withheld).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};

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
    /// `connect`, `upload`, `list`, `read`, `read-certificate`, `enroll`,
    /// `renew`, `revoke`, `delete`, …
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

fn key_err(path: &Path, reason: impl ToString) -> AuditError {
    AuditError::Key {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Creates the audit key pair in `pki_dir` unless it is there.
pub fn ensure_key(pki_dir: &Path) -> Result<(), AuditError> {
    let key_path = pki_dir.join(AUDIT_KEY);
    if key_path.exists() {
        return Ok(());
    }
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_err(&key_path, e))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| key_err(&key_path, e))?;
    crate::pki::write_new(&key_path, &pem, 0o600).map_err(|e| key_err(&key_path, e))?;
    let pub_path = pki_dir.join(AUDIT_PUB);
    crate::pki::write_new(&pub_path, &public, 0o644).map_err(|e| key_err(&pub_path, e))
}

pub fn load_signing_key(pki_dir: &Path) -> Result<SigningKey, AuditError> {
    let path = pki_dir.join(AUDIT_KEY);
    let pem = std::fs::read_to_string(&path).map_err(|e| key_err(&path, e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| key_err(&path, e))
}

pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let pem = std::fs::read_to_string(path).map_err(|e| key_err(path, e))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| key_err(path, e))
}

/// This host's name, for the default instance name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| sealcam_format::Name::new(h).is_ok())
        .unwrap_or_else(|| "ingest".to_owned())
}

enum Command {
    Record(Event),
    /// Write what is buffered now; answer when it is stored.
    Flush(oneshot::Sender<Result<(), String>>),
}

/// The handle every part of the ingest records through. Cheap to clone;
/// recording never blocks.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Command>,
}

/// The chain being written by one process.
struct Writer {
    store: Store,
    key: SigningKey,
    instance: String,
    epoch: u64,
    segment: u64,
    n: u64,
    prev: [u8; 32],
    buffered: Vec<Event>,
    times: Vec<String>,
    dropped: u64,
}

impl AuditLog {
    /// Starts the writer task: a new chain (epoch) for `instance`, flushed
    /// every `flush_every`.
    pub fn start(
        store: Store,
        pki_dir: &Path,
        instance: &str,
        flush_every: Duration,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        if sealcam_format::Name::new(instance).is_err() {
            return Err(AuditError::Instance(instance.to_owned()));
        }
        let key = load_signing_key(pki_dir)?;
        let epoch = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let epoch = u64::try_from(epoch).unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            store,
            key,
            instance: instance.to_owned(),
            epoch,
            segment: 0,
            n: 0,
            prev: [0; 32],
            buffered: Vec::new(),
            times: Vec::new(),
            dropped: 0,
        };
        let task = tokio::spawn(writer.run(rx, flush_every));
        Ok((Self { tx }, task))
    }

    pub fn record(&self, event: Event) {
        let _ = self.tx.send(Command::Record(event));
    }

    /// Waits until everything recorded so far is stored.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .map_err(|_| AuditError::Stopped)?;
        rx.await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Write)
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Record(e)) => self.push(e),
                    Some(Command::Flush(answer)) => {
                        let r = self.write_segment().await.map_err(|e| e.to_string());
                        let _ = answer.send(r);
                    }
                    // Every handle dropped: write what is left and stop.
                    None => {
                        if let Err(e) = self.write_segment().await {
                            tracing::error!(error = %e, records = self.buffered.len(), "audit records could not be written at shutdown");
                        }
                        return;
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = self.write_segment().await {
                        tracing::error!(error = %e, buffered = self.buffered.len(), "cannot write the audit trail; records stay in memory and are retried");
                    }
                }
            }
        }
    }

    fn push(&mut self, e: Event) {
        if self.buffered.len() >= MAX_BUFFERED {
            if self.dropped == 0 {
                tracing::error!(
                    limit = MAX_BUFFERED,
                    "audit buffer full (storage unwritable); dropping audit records until it drains"
                );
            }
            self.dropped += 1;
            return;
        }
        self.buffered.push(e);
        self.times.push(now_rfc3339());
    }

    /// Writes the buffered records as the next segment.
    async fn write_segment(&mut self) -> Result<(), StoreError> {
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            self.buffered.push(Event {
                actor: "ingest".into(),
                action: "audit-overflow".into(),
                result: "error".into(),
                detail: Some(format!(
                    "{dropped} records dropped while storage was unwritable"
                )),
                ..Event::default()
            });
            self.times.push(now_rfc3339());
        }
        if self.buffered.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        let (mut n, mut prev) = (self.n, self.prev);
        for (e, time) in self.buffered.iter().zip(&self.times) {
            let record = Record {
                n,
                time: time.clone(),
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: e.target.clone(),
                addr: e.addr.clone(),
                result: e.result.clone(),
                detail: e.detail.clone(),
                prev: hex::encode(prev),
            };
            let line = serde_json::to_vec(&record).unwrap_or_default();
            prev = Sha256::digest(&line).into();
            body.extend_from_slice(&line);
            body.push(b'\n');
            n += 1;
        }
        let count = self.buffered.len() as u64;
        let sig: Signature = self.key.sign(&seal_message(
            &self.instance,
            self.epoch,
            self.segment,
            count,
            &prev,
        ));
        let seal = SealLine {
            seal: Seal {
                records: count,
                last_hash: hex::encode(prev),
                signature: hex::encode(sig.to_bytes()),
            },
        };
        body.extend_from_slice(&serde_json::to_vec(&seal).unwrap_or_default());
        body.push(b'\n');
        let path = segment_path(&self.instance, self.epoch, self.segment);
        if !self.store.put_new(&path, Bytes::from(body)).await? {
            // Only this process writes this epoch; a leftover means the
            // clock went back to a previous process's start. Start over.
            self.epoch += 1;
            self.segment = 0;
            self.n = 0;
            self.prev = [0; 32];
            return Err(StoreError::Damaged {
                path,
                reason: "audit segment exists already; starting a new epoch".into(),
            });
        }
        self.segment += 1;
        self.n = n;
        self.prev = prev;
        self.buffered.clear();
        self.times.clear();
        Ok(())
    }
}

fn segment_path(instance: &str, epoch: u64, segment: u64) -> String {
    format!("audit/{instance}/{epoch:020}/{segment:010}.jsonl")
}

/// One chain's verification result.
#[derive(Debug)]
pub struct ChainSummary {
    pub instance: String,
    pub epoch: u64,
    pub segments: u64,
    pub records: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub problems: Vec<String>,
}

/// Every chain in the store, verified against the audit public key, with
/// their records in order.
pub async fn read_all(
    store: &Store,
    key: &VerifyingKey,
) -> Result<(Vec<ChainSummary>, Vec<Record>), StoreError> {
    let mut chains: BTreeMap<(String, u64), Vec<(u64, String)>> = BTreeMap::new();
    for l in store.list("audit").await? {
        let parts: Vec<&str> = l.path.split('/').collect();
        let [_, instance, epoch, file] = parts.as_slice() else {
            continue;
        };
        let (Ok(epoch), Some(segment)) = (
            epoch.parse::<u64>(),
            file.strip_suffix(".jsonl")
                .and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        chains
            .entry(((*instance).to_owned(), epoch))
            .or_default()
            .push((segment, l.path.clone()));
    }
    let mut summaries = Vec::new();
    let mut all = Vec::new();
    for ((instance, epoch), mut segments) in chains {
        segments.sort();
        let mut s = ChainSummary {
            instance: instance.clone(),
            epoch,
            segments: segments.len() as u64,
            records: 0,
            first_time: None,
            last_time: None,
            problems: Vec::new(),
        };
        let mut prev = [0u8; 32];
        let mut n = 0u64;
        for (expected, (segment, path)) in segments.iter().enumerate() {
            if *segment != expected as u64 {
                s.problems.push(format!(
                    "segment {expected} is missing (next present: {segment})"
                ));
                break;
            }
            let Some(bytes) = store.read(path).await? else {
                s.problems.push(format!("{path} vanished while reading"));
                break;
            };
            match check_segment(&instance, epoch, *segment, &bytes, key, &mut prev, &mut n) {
                Ok(records) => {
                    if s.first_time.is_none() {
                        s.first_time = records.first().map(|r| r.time.clone());
                    }
                    if let Some(r) = records.last() {
                        s.last_time = Some(r.time.clone());
                    }
                    s.records += records.len() as u64;
                    all.extend(records);
                }
                Err(problem) => {
                    s.problems.push(format!("{path}: {problem}"));
                    break;
                }
            }
        }
        summaries.push(s);
    }
    all.sort_by(|a, b| a.time.cmp(&b.time));
    Ok((summaries, all))
}

/// Checks one segment's chain and seal, continuing from `prev` and `n`.
fn check_segment(
    instance: &str,
    epoch: u64,
    segment: u64,
    bytes: &[u8],
    key: &VerifyingKey,
    prev: &mut [u8; 32],
    n: &mut u64,
) -> Result<Vec<Record>, String> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let Some(seal_line) = lines.pop() else {
        return Err("empty segment".into());
    };
    let seal: SealLine = serde_json::from_slice(seal_line)
        .map_err(|e| format!("the seal line is not valid: {e}"))?;
    let mut records = Vec::new();
    for line in lines {
        let r: Record =
            serde_json::from_slice(line).map_err(|e| format!("record {} is not valid: {e}", *n))?;
        if r.n != *n {
            return Err(format!("record {} is numbered {}", *n, r.n));
        }
        if r.prev != hex::encode(*prev) {
            return Err(format!(
                "record {} does not follow record {} (changed, removed or reordered)",
                r.n,
                r.n.saturating_sub(1)
            ));
        }
        *prev = Sha256::digest(line).into();
        *n += 1;
        records.push(r);
    }
    if seal.seal.records != records.len() as u64 || seal.seal.last_hash != hex::encode(*prev) {
        return Err("the seal does not match the records".into());
    }
    let sig = hex::decode(&seal.seal.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("the seal's signature is malformed")?;
    key.verify(
        &seal_message(instance, epoch, segment, records.len() as u64, prev),
        &sig,
    )
    .map_err(|_| "the seal's signature does not verify with the audit key".to_owned())?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorageConfig;

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
        assert_eq!((chains[0].segments, chains[0].records), (2, 5));
        assert_eq!(records[4].target.as_deref(), Some("cam/front/4"));

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
