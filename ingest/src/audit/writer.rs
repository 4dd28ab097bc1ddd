//! Writing the trail: [`AuditLog`], the handle every part of the ingest
//! records through, and the task that buffers, seals and stores segments.
//!
//! The channel to the task is bounded ([`QUEUE`] records). [`AuditLog::record`]
//! never blocks: when the queue is full the record is counted as dropped.
//! [`AuditLog::record_within`] (request handlers) waits a bounded time for
//! room first. Dropped records are never silent: they are counted in a
//! metric, and the next segment carries a sealed `audit-overflow` record
//! saying how many were dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use super::link::{newest_segment, EPOCH_START};
use super::{
    load_signing_key, now_rfc3339, seal_message, segment_path, AuditError, Event, Record, Seal,
    SealLine, MAX_BUFFERED,
};
use crate::store::{Store, StoreError};

/// Records the channel to the writer holds before senders wait or drop.
pub const QUEUE: usize = 8_192;

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

/// What the handles and the writer share: the queue's depth and what was
/// dropped (exported as metrics).
#[derive(Clone, Default)]
struct Counts {
    /// Records in the channel now.
    depth: Gauge,
    /// Records dropped since start (queue full, or storage unwritable too long).
    dropped_total: Counter,
    /// Dropped and not yet reported in a sealed record.
    unreported: Arc<AtomicU64>,
}

impl Counts {
    fn drop_one(&self) {
        self.dropped_total.inc();
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }
}

/// The handle every part of the ingest records through. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Command>,
    counts: Counts,
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
    /// Whether this epoch's `epoch-start` record has been written.
    started: bool,
    buffered: Vec<Event>,
    times: Vec<String>,
    counts: Counts,
}

impl AuditLog {
    /// Starts the writer task: a new chain (epoch) for `instance`, linked to
    /// the instance's previous one, flushed every `flush_every`.
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
        let (tx, rx) = mpsc::channel(QUEUE);
        let counts = Counts::default();
        let writer = Writer {
            store,
            key,
            instance: instance.to_owned(),
            epoch,
            segment: 0,
            n: 0,
            prev: [0; 32],
            started: false,
            buffered: Vec::new(),
            times: Vec::new(),
            counts: counts.clone(),
        };
        let task = tokio::spawn(writer.run(rx, flush_every));
        Ok((Self { tx, counts }, task))
    }

    /// Records `event` without waiting: when the queue is full, the record
    /// is counted as dropped (and that count is sealed into the trail).
    pub fn record(&self, event: Event) {
        match self.tx.try_send(Command::Record(event)) {
            Ok(()) => {
                self.counts.depth.inc();
            }
            Err(TrySendError::Full(_)) => self.counts.drop_one(),
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Records `event`, waiting at most `wait` for room in the queue (the
    /// back-pressure a request handler feels); past that, it is counted as
    /// dropped.
    pub async fn record_within(&self, event: Event, wait: Duration) {
        match self.tx.send_timeout(Command::Record(event), wait).await {
            Ok(()) => {
                self.counts.depth.inc();
            }
            Err(SendTimeoutError::Timeout(_)) => self.counts.drop_one(),
            Err(SendTimeoutError::Closed(_)) => {}
        }
    }

    /// The metrics of the queue: records waiting in it now, and records
    /// dropped since start.
    pub fn queue_metrics(&self) -> (Gauge, Counter) {
        (self.counts.depth.clone(), self.counts.dropped_total.clone())
    }

    /// Waits until everything recorded so far is stored.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .await
            .map_err(|_| AuditError::Stopped)?;
        rx.await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Write)
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Record(e)) => {
                        self.counts.depth.dec();
                        self.push(e);
                    }
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
            if self.counts.unreported.load(Ordering::Relaxed) == 0 {
                tracing::error!(
                    limit = MAX_BUFFERED,
                    "audit buffer full (storage unwritable); dropping audit records until it drains"
                );
            }
            self.counts.drop_one();
            return;
        }
        self.buffered.push(e);
        self.times.push(now_rfc3339());
    }

    /// Before an epoch's first segment: the record naming the run before
    /// it. The epoch is moved past the newest one stored, so that the
    /// chains of one instance stay in order even if the clock went back.
    async fn epoch_start(&mut self) -> Result<Record, StoreError> {
        let link = newest_segment(&self.store, &self.instance).await?;
        if let Some(l) = &link {
            self.epoch = self.epoch.max(l.epoch.saturating_add(1));
        }
        let detail = match &link {
            Some(l) => format!("follows epoch {} segment {}", l.epoch, l.segment),
            None => format!("first run of instance {}", self.instance),
        };
        Ok(Record {
            n: 0,
            // The time of the first record it precedes, so that it sorts first.
            time: self.times.first().cloned().unwrap_or_else(now_rfc3339),
            actor: "ingest".into(),
            action: EPOCH_START.into(),
            target: None,
            addr: None,
            result: "ok".into(),
            detail: Some(detail),
            prev: hex::encode([0u8; 32]),
            link,
        })
    }

    /// Writes the buffered records as the next segment.
    async fn write_segment(&mut self) -> Result<(), StoreError> {
        let dropped = self.counts.unreported.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.buffered.push(Event {
                actor: "ingest".into(),
                action: "audit-overflow".into(),
                result: "error".into(),
                detail: Some(format!(
                    "{dropped} records dropped (audit queue full or storage unwritable)"
                )),
                ..Event::default()
            });
            self.times.push(now_rfc3339());
        }
        if self.buffered.is_empty() {
            return Ok(());
        }
        let mut records = Vec::with_capacity(self.buffered.len() + 1);
        if !self.started {
            records.push(self.epoch_start().await?);
        }
        for (e, time) in self.buffered.iter().zip(&self.times) {
            records.push(Record {
                n: 0,
                time: time.clone(),
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: e.target.clone(),
                addr: e.addr.clone(),
                result: e.result.clone(),
                detail: e.detail.clone(),
                prev: String::new(),
                link: None,
            });
        }
        let (body, n, prev) = seal_segment(
            &self.key,
            (&self.instance, self.epoch, self.segment),
            records,
            self.n,
            self.prev,
        );
        let path = segment_path(&self.instance, self.epoch, self.segment);
        if !self.store.put_new(&path, Bytes::from(body)).await? {
            // Only this process writes this epoch; a leftover means another
            // process wrote under this instance name meanwhile. Start over
            // with a new epoch, linked to whatever is newest now.
            self.epoch += 1;
            self.segment = 0;
            self.n = 0;
            self.prev = [0; 32];
            self.started = false;
            return Err(StoreError::Damaged {
                path,
                reason: "audit segment exists already; starting a new epoch".into(),
            });
        }
        self.started = true;
        self.segment += 1;
        self.n = n;
        self.prev = prev;
        self.buffered.clear();
        self.times.clear();
        Ok(())
    }
}

/// A segment's bytes: `records` numbered from `n` and chained from `prev`,
/// then the seal line signed by `key` for (instance, epoch, segment).
/// Returns the bytes, the next record's number and the last record's hash.
pub(super) fn seal_segment(
    key: &SigningKey,
    (instance, epoch, segment): (&str, u64, u64),
    records: Vec<Record>,
    mut n: u64,
    mut prev: [u8; 32],
) -> (Vec<u8>, u64, [u8; 32]) {
    let mut body = Vec::new();
    let count = records.len() as u64;
    for mut record in records {
        record.n = n;
        record.prev = hex::encode(prev);
        let line = serde_json::to_vec(&record).unwrap_or_default();
        prev = Sha256::digest(&line).into();
        body.extend_from_slice(&line);
        body.push(b'\n');
        n += 1;
    }
    let sig: Signature = key.sign(&seal_message(instance, epoch, segment, count, &prev));
    let seal = SealLine {
        seal: Seal {
            records: count,
            last_hash: hex::encode(prev),
            signature: hex::encode(sig.to_bytes()),
        },
    };
    body.extend_from_slice(&serde_json::to_vec(&seal).unwrap_or_default());
    body.push(b'\n');
    (body, n, prev)
}
