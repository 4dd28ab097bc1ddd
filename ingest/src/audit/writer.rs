//! Writing the trail: [`AuditLog`], the handle every part of the ingest
//! records through, and the task that buffers, seals and stores segments.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{
    load_signing_key, now_rfc3339, seal_message, segment_path, AuditError, Event, Record, Seal,
    SealLine, MAX_BUFFERED,
};
use crate::store::{Store, StoreError};

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
