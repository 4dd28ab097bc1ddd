//! The uplink's two lanes: live (the fragment being recorded, sent as it
//! is sealed) and backlog (spooled fragments, oldest first, a few at a
//! time with the bandwidth live leaves).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use sealcam_api::media;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::link::{Link, LinkState};
use super::{Uplink, UplinkError, UploadError};
use crate::pipeline::live::{LiveEvent, LiveReceiver, LiveShared};
use crate::pipeline::spool::Spooled;

/// Live bytes waiting to be sent past which live is behind: the backlog
/// then starts nothing new until live has caught up.
const LIVE_BEHIND_BYTES: usize = 256 << 10;

impl Uplink {
    /// Sends the fragment being recorded as it is sealed, until the
    /// recorder ends; every upload it does not finish is left to the backlog.
    pub(super) async fn live_lane(
        &self,
        link: &Link,
        mut live: LiveReceiver,
        wake: &Notify,
    ) -> Result<(), UplinkError> {
        struct Current {
            sequence: u64,
            body: mpsc::Sender<Result<Bytes, std::io::Error>>,
            response: tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>,
        }
        let mut current: Option<Current> = None;
        let shared = live.shared.clone();
        // The backlog takes a released fragment from here on (if spooled).
        let release = |sequence: u64| {
            shared.release(sequence);
            wake.notify_one();
        };
        // Drops an upload in progress: the ingest sees its body fail, and
        // stores nothing of it.
        let abort = |c: Current| {
            let _ = c
                .body
                .try_send(Err(std::io::Error::other("fragment left the live path")));
            c.response.abort();
            release(c.sequence);
        };
        while let Some(event) = live.rx.recv().await {
            match event {
                LiveEvent::Begin(sequence) => {
                    if let Some(c) = current.take() {
                        abort(c);
                    }
                    if link.state() != LinkState::Streaming {
                        release(sequence);
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(8);
                    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
                    let request = self
                        .client()
                        .put(self.url(sequence))
                        .header(reqwest::header::CONTENT_TYPE, media::FRAGMENT_STREAM)
                        .body(body)
                        .send();
                    current = Some(Current {
                        sequence,
                        body: tx,
                        response: tokio::spawn(request),
                    });
                }
                LiveEvent::Bytes(sequence, bytes) => {
                    shared.sent(bytes.len());
                    let Some(c) = current.as_ref().filter(|c| c.sequence == sequence) else {
                        continue;
                    };
                    if c.body.send(Ok(bytes)).await.is_err() {
                        // The request ended early: the connection failed.
                        if let Some(c) = current.take() {
                            let result = match c.response.await {
                                Ok(r) => self.outcome(r).await,
                                Err(e) => Err(UploadError::LiveTask(e)),
                            };
                            let result = match result {
                                Ok(_) => Err(UploadError::AnsweredEarly),
                                Err(e) => Err(e),
                            };
                            self.settle(link, c.sequence, std::time::Instant::now(), result)?;
                            release(c.sequence);
                        }
                    }
                }
                LiveEvent::End(sequence, tail) => {
                    let Some(c) = current.take() else {
                        release(sequence);
                        continue;
                    };
                    if c.sequence != sequence {
                        abort(c);
                        release(sequence);
                        continue;
                    }
                    let sent = std::time::Instant::now();
                    let _ = c.body.send(Ok(tail)).await;
                    drop(c.body);
                    // The ack comes within a round trip; the next fragment's
                    // bytes wait in the live buffer meanwhile, so that one
                    // live upload at a time holds a slot at the ingest.
                    let result = match c.response.await {
                        Ok(r) => self.outcome(r).await,
                        Err(e) => Err(UploadError::LiveTask(e)),
                    };
                    self.settle(link, sequence, sent, result)?;
                    release(sequence);
                }
                LiveEvent::Abandon(sequence) => {
                    match current.take() {
                        Some(c) if c.sequence == sequence => abort(c),
                        other => current = other,
                    }
                    release(sequence);
                }
            }
        }
        if let Some(c) = current.take() {
            abort(c);
        }
        Ok(())
    }

    /// Uploads spooled fragments that are not on the live path, oldest
    /// first, a few at a time, while the link is up.
    pub(super) async fn backlog_lane(
        &self,
        link: &Link,
        live: &LiveShared,
        wake: &Notify,
        lanes_done: &Notify,
        mut done: watch::Receiver<bool>,
        drain_timeout: Duration,
    ) -> Result<(), UplinkError> {
        let mut in_flight = FuturesUnordered::new();
        let mut sending: BTreeSet<u64> = BTreeSet::new();
        let mut deadline: Option<Instant> = None;
        let mut live_ended = false;
        loop {
            if *done.borrow() && deadline.is_none() {
                deadline = Some(Instant::now() + drain_timeout);
                live.set_accepting(false);
            }
            let pending: Vec<Spooled> = self
                .spool
                .pending()?
                .into_iter()
                .filter(|s| !live.is_claimed(s.sequence) && !sending.contains(&s.sequence))
                .collect();
            let draining = *done.borrow();
            let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
            if draining
                && in_flight.is_empty()
                && live_ended
                && (pending.is_empty() || past_deadline)
            {
                let remaining = self.spool.pending()?.len();
                if remaining == 0 {
                    return Ok(());
                }
                return Err(UplinkError::Undrained {
                    remaining,
                    dir: self.spool.dir().display().to_string(),
                    waited: drain_timeout,
                    last_error: link.last_error(),
                });
            }
            // Draining with nothing left to send, or past the deadline: only
            // what is in flight, and the live lane's last upload, may finish.
            let idle = draining && (pending.is_empty() || past_deadline);
            let state = if idle || !in_flight.is_empty() {
                link.state()
            } else {
                let capturing = !draining;
                tokio::select! {
                    s = link.ready(deadline) => s,
                    // Capture ended during a backoff: the drain deadline starts now.
                    _ = done.changed(), if capturing => continue,
                }
            };
            let room = match state {
                _ if idle => 0,
                LinkState::Streaming if live.queued_bytes() <= LIVE_BEHIND_BYTES => {
                    link.backlog_room()
                }
                // One fragment, or a probe, proves the link.
                LinkState::Connecting => 1,
                _ => 0,
            };
            if !draining
                && state == LinkState::Connecting
                && in_flight.is_empty()
                && pending.is_empty()
            {
                match self.probe().await {
                    Ok(()) => link.succeeded(),
                    Err(err) => {
                        self.metrics.upload_failures.inc();
                        link.failed(&err);
                    }
                }
                continue;
            }
            if room > 0 {
                self.send_restarts(link).await?;
            }
            for s in pending
                .into_iter()
                .take(room.saturating_sub(in_flight.len()))
            {
                sending.insert(s.sequence);
                in_flight.push(async move {
                    let sent = std::time::Instant::now();
                    let result = self.upload(&s).await;
                    (s.sequence, sent, result)
                });
            }
            let capturing = !*done.borrow();
            // Live may catch up, or fragments be spooled without a wake-up:
            // look again after a while.
            let look_again = if room == 0 && state == LinkState::Streaming {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            tokio::select! {
                Some((sequence, sent, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    sending.remove(&sequence);
                    self.settle(link, sequence, sent, result)?;
                }
                _ = wake.notified() => {}
                _ = lanes_done.notified(), if !live_ended => live_ended = true,
                _ = done.changed(), if capturing => {}
                _ = link.changed.notified() => {}
                _ = tokio::time::sleep(look_again) => {}
            }
        }
    }
}

/// A body stream from a channel of chunks.
fn tokio_stream_of(
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
