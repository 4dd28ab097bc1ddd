//! Idle connections: a connection knows whether a request is in progress
//! (from its arrival until its response body is sent or dropped) and since
//! when none has been, so that one that never sends a request, or sits idle
//! between requests, is closed after the idle timeout. Bytes alone do not
//! count: an HTTP/2 client's pings keep no connection open.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;

struct Inner {
    started: Instant,
    in_progress: AtomicUsize,
    /// When the last request ended, in milliseconds after `started`.
    last_end_ms: AtomicU64,
}

/// A connection's requests in progress and when the last one ended.
#[derive(Clone)]
pub struct Activity(Arc<Inner>);

/// One request in progress; it ends when this is dropped.
pub struct Busy(Arc<Inner>);

impl Activity {
    /// A connection that has just been made: idle from now.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            started: Instant::now(),
            in_progress: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }))
    }

    pub fn begin(&self) -> Busy {
        self.0.in_progress.fetch_add(1, Ordering::SeqCst);
        Busy(self.0.clone())
    }

    /// How long no request has been in progress; `None` while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.0.in_progress.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.0.last_end_ms.load(Ordering::SeqCst));
        Some(self.0.started.elapsed().saturating_sub(last))
    }

    /// `response` with `busy` kept until its body is sent or dropped.
    pub fn until_sent(response: Response, busy: Busy) -> Response {
        response.map(|body| {
            Body::new(body.map_frame(move |frame| {
                let _ = &busy;
                frame
            }))
        })
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.store(now, Ordering::SeqCst);
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits until `activity` has been idle for `limit`, checking a few times
/// per `limit`.
pub async fn idle_past(activity: &Activity, limit: Duration) {
    let step = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        match activity.idle_for() {
            Some(idle) if idle >= limit => return,
            Some(idle) => tokio::time::sleep((limit - idle).min(step)).await,
            None => tokio::time::sleep(step).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_request_in_progress_is_never_idle_and_its_end_restarts_the_clock() {
        let a = Activity::new();
        assert!(a.idle_for().is_some());
        let busy = a.begin();
        let r = Activity::until_sent(Response::new(Body::from("hello")), busy);
        assert_eq!(a.idle_for(), None);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(a.idle_for(), None, "the body is not sent yet");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        assert!(a.idle_for().unwrap() < Duration::from_millis(20));
        tokio::time::timeout(
            Duration::from_secs(2),
            idle_past(&a, Duration::from_millis(100)),
        )
        .await
        .unwrap();
    }
}
