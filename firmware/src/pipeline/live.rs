//! The path of the fragment being recorded, from the recorder to the uplink.
//!
//! The recorder hands every record to the uplink as soon as it is sealed,
//! so the bytes are on the wire while the fragment is still being captured
//! and, when it closes, only its signed manifest is left to send. The
//! fragment is spooled all the same: the live path is an optimisation of
//! latency, never the only copy.
//!
//! The recorder never waits for the network. What it has handed over and
//! the uplink has not yet sent is bounded ([`LIVE_BUFFER_BYTES`]); past it,
//! the fragment leaves the live path and uploads from the spool instead.
//!
//! A fragment on the live path is *claimed*: the backlog leaves it alone,
//! so it is never sent twice at once. The uplink releases the claim when
//! the live upload ends, however it ends.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Sealed bytes handed to the uplink but not yet sent, at most. About one
/// fragment at a few Mbit/s: the recorder's memory stays bounded however
/// slow the link.
pub const LIVE_BUFFER_BYTES: usize = 4 << 20;

/// What the recorder tells the uplink about the fragment being recorded.
#[derive(Debug)]
pub enum LiveEvent {
    /// A fragment starts: its payload follows.
    Begin(u64),
    /// More sealed payload of the fragment.
    Bytes(u64, Bytes),
    /// The fragment is sealed, signed and spooled: the end of the upload
    /// (its signed manifest and length, see `fragment::streamed_tail`).
    End(u64, Bytes),
    /// The fragment leaves the live path (too far behind, or not spooled):
    /// if it was spooled, it uploads from the spool.
    Abandon(u64),
}

/// What both sides share: the claims and the bytes in between.
#[derive(Debug, Default)]
pub struct LiveShared {
    claims: Mutex<BTreeSet<u64>>,
    queued: AtomicUsize,
    /// Whether the uplink takes live fragments now (the link is up).
    accepting: AtomicBool,
}

impl LiveShared {
    /// Whether `sequence` is on the live path (the backlog skips it).
    pub fn is_claimed(&self, sequence: u64) -> bool {
        self.claims
            .lock()
            .map(|c| c.contains(&sequence))
            .unwrap_or(false)
    }

    fn claim(&self, sequence: u64) {
        if let Ok(mut c) = self.claims.lock() {
            c.insert(sequence);
        }
    }

    /// Ends `sequence`'s live upload: the backlog may take it from now on.
    pub fn release(&self, sequence: u64) {
        if let Ok(mut c) = self.claims.lock() {
            c.remove(&sequence);
        }
    }

    /// Ends every live upload (the uplink stops).
    pub fn release_all(&self) {
        if let Ok(mut c) = self.claims.lock() {
            c.clear();
        }
    }

    /// Sealed bytes handed over and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The uplink took `n` bytes off the queue.
    pub fn sent(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
    }

    /// Whether new fragments should take the live path.
    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Relaxed);
    }
}

/// The recorder's end: never blocks.
pub struct LiveFeed {
    tx: mpsc::UnboundedSender<LiveEvent>,
    shared: Arc<LiveShared>,
    /// The fragment on the live path, and how much of its payload was handed over.
    current: Option<(u64, usize)>,
}

/// The uplink's end.
pub struct LiveReceiver {
    pub rx: mpsc::UnboundedReceiver<LiveEvent>,
    pub shared: Arc<LiveShared>,
}

/// A connected feed and receiver.
pub fn channel() -> (LiveFeed, LiveReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(LiveShared::default());
    (
        LiveFeed {
            tx,
            shared: shared.clone(),
            current: None,
        },
        LiveReceiver { rx, shared },
    )
}

impl LiveFeed {
    /// A fragment starts. It takes the live path if the uplink accepts.
    pub fn begin(&mut self, sequence: u64) {
        self.abandon();
        if !self.shared.accepting.load(Ordering::Relaxed) || self.tx.is_closed() {
            return;
        }
        self.shared.claim(sequence);
        if self.tx.send(LiveEvent::Begin(sequence)).is_err() {
            self.shared.release(sequence);
            return;
        }
        self.current = Some((sequence, 0));
    }

    /// Hands over what `payload` (the fragment's payload so far) holds past
    /// what was handed over before.
    pub fn payload(&mut self, sequence: u64, payload: &[u8]) {
        let Some((seq, handed)) = self.current else {
            return;
        };
        if seq != sequence || payload.len() <= handed {
            return;
        }
        let more = &payload[handed..];
        let queued = self.shared.queued.fetch_add(more.len(), Ordering::Relaxed);
        if queued + more.len() > LIVE_BUFFER_BYTES {
            self.shared.sent(more.len());
            tracing::debug!(
                sequence,
                queued,
                "the link is behind the camera: this fragment uploads from the spool"
            );
            self.abandon();
            return;
        }
        if self
            .tx
            .send(LiveEvent::Bytes(sequence, Bytes::copy_from_slice(more)))
            .is_err()
        {
            self.shared.sent(more.len());
            self.abandon();
            return;
        }
        self.current = Some((seq, payload.len()));
    }

    /// The fragment is spooled: sends its end (the signed manifest).
    pub fn end(&mut self, sequence: u64, tail: Vec<u8>) {
        match self.current {
            Some((seq, _)) if seq == sequence => {
                self.current = None;
                if self.tx.send(LiveEvent::End(sequence, tail.into())).is_err() {
                    self.shared.release(sequence);
                }
            }
            Some(_) => self.abandon(),
            None => {}
        }
    }

    /// The open fragment, if on the live path, leaves it.
    pub fn abandon(&mut self) {
        if let Some((seq, _)) = self.current.take() {
            if self.tx.send(LiveEvent::Abandon(seq)).is_err() {
                self.shared.release(seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut LiveReceiver) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = rx.rx.try_recv() {
            out.push(match e {
                LiveEvent::Begin(s) => format!("begin {s}"),
                LiveEvent::Bytes(s, b) => {
                    rx.shared.sent(b.len());
                    format!("bytes {s} {}", b.len())
                }
                LiveEvent::End(s, _) => format!("end {s}"),
                LiveEvent::Abandon(s) => format!("abandon {s}"),
            });
        }
        out
    }

    #[test]
    fn a_fragment_goes_live_only_while_the_uplink_accepts_and_is_claimed_meanwhile() {
        let (mut feed, mut rx) = channel();
        feed.begin(1);
        feed.payload(1, &[0; 10]);
        feed.end(1, vec![1]);
        assert!(drain(&mut rx).is_empty());
        assert!(!rx.shared.is_claimed(1));

        rx.shared.set_accepting(true);
        feed.begin(2);
        assert!(rx.shared.is_claimed(2));
        feed.payload(2, &[0; 10]);
        feed.payload(2, &[0; 25]);
        feed.payload(2, &[0; 25]);
        feed.end(2, vec![1]);
        assert_eq!(
            drain(&mut rx),
            ["begin 2", "bytes 2 10", "bytes 2 15", "end 2"]
        );
        assert_eq!(rx.shared.queued_bytes(), 0);
    }

    #[test]
    fn a_fragment_past_the_buffer_leaves_the_live_path_and_the_next_takes_it_again() {
        let (mut feed, mut rx) = channel();
        rx.shared.set_accepting(true);
        feed.begin(7);
        let big = vec![0; LIVE_BUFFER_BYTES / 2 + 1];
        feed.payload(7, &big);
        let mut bigger = big.clone();
        bigger.extend_from_slice(&big);
        // Nothing was sent meanwhile: the second half does not fit.
        feed.payload(7, &bigger);
        feed.end(7, vec![1]);
        assert_eq!(
            drain(&mut rx),
            [
                "begin 7".to_string(),
                format!("bytes 7 {}", big.len()),
                "abandon 7".to_string()
            ]
        );
        assert_eq!(rx.shared.queued_bytes(), 0);
        feed.begin(8);
        feed.payload(8, &[0; 3]);
        feed.end(8, vec![1]);
        assert_eq!(drain(&mut rx), ["begin 8", "bytes 8 3", "end 8"]);
    }

    #[test]
    fn a_new_fragment_abandons_one_left_open() {
        let (mut feed, mut rx) = channel();
        rx.shared.set_accepting(true);
        feed.begin(1);
        feed.begin(2);
        assert_eq!(drain(&mut rx), ["begin 1", "abandon 1", "begin 2"]);
    }
}
