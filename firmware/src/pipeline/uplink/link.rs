//! The link's state machine, shared by the live and backlog lanes:
//! connecting, streaming, backing off (see the [`super`] documentation),
//! with the backoff and the once-per-outage warnings.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::{FailureKind, UploadError};
use super::BACKLOG_IN_FLIGHT;
use crate::pipeline::live::LiveShared;

/// Capped exponential backoff with full jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    pub(super) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn step(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let ms = rand::thread_rng().gen_range(0..=cap.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

/// Where the link stands (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Streaming,
    BackingOff { until: Instant },
}

struct LinkInner {
    state: LinkState,
    backoff: Backoff,
    /// The error of the outage in progress, if any.
    failing: Option<String>,
    /// What the outage's last warning said went wrong (its [`FailureKind`]):
    /// a warning is logged once per kind, so a cut link that then refuses
    /// the camera's certificate says both, and nothing more.
    warned: Option<FailureKind>,
}

/// The link's state machine, shared by the live and backlog lanes.
pub(super) struct Link {
    inner: Mutex<LinkInner>,
    pub(super) changed: Notify,
    live: Arc<LiveShared>,
    /// The ingest allows this device one upload at a time (it said
    /// `too-many-uploads`): no live path, one backlog upload at a time.
    single: std::sync::atomic::AtomicBool,
}

impl Link {
    pub(super) fn new(live: Arc<LiveShared>) -> Self {
        Self {
            inner: Mutex::new(LinkInner {
                state: LinkState::Connecting,
                backoff: Backoff::new(),
                failing: None,
                warned: None,
            }),
            changed: Notify::new(),
            live,
            single: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The ingest refused a second upload at once: from now on, one.
    pub(super) fn one_at_a_time(&self) {
        if !self.single.swap(true, Ordering::Relaxed) {
            tracing::warn!("the ingest allows this camera one upload at a time (limits.uploads_per_device); fragments upload one by one after they close, with a fragment's more latency");
        }
        self.live.set_accepting(false);
    }

    /// How many backlog uploads may be in flight.
    pub(super) fn backlog_room(&self) -> usize {
        if self.single.load(Ordering::Relaxed) {
            1
        } else {
            BACKLOG_IN_FLIGHT
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn state(&self) -> LinkState {
        self.lock().state
    }

    /// The ingest answered: streaming (again).
    pub(super) fn succeeded(&self) {
        let mut l = self.lock();
        if l.state != LinkState::Streaming {
            l.state = LinkState::Streaming;
            l.backoff.reset();
            l.warned = None;
            match l.failing.take() {
                Some(err) => tracing::info!(previous_error = %err, "uplink recovered"),
                None => tracing::info!("uplink connected"),
            }
            self.live
                .set_accepting(!self.single.load(Ordering::Relaxed));
            self.changed.notify_waiters();
        }
    }

    /// A try failed: back off (once per failure seen while streaming or
    /// connecting; failures of uploads already in flight add nothing).
    pub(super) fn failed(&self, err: &UploadError) {
        let mut l = self.lock();
        self.live.set_accepting(false);
        let masked = masks_a_refusal(l.warned, err.kind());
        if matches!(l.state, LinkState::BackingOff { .. }) {
            tracing::debug!(error = %err, "upload in flight failed too");
            if !masked {
                l.failing = Some(err.to_string());
            }
            return;
        }
        // The ingest's Retry-After is a floor, never a reason to come back
        // sooner than the backoff says.
        let wait = l.backoff.step().max(err.retry_after().unwrap_or_default());
        let kind = err.kind();
        if masked {
            // The outage's reason stays the refusal: this is its echo.
            tracing::debug!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload retry failed; the ingest refused this camera's certificate before");
            l.state = LinkState::BackingOff {
                until: Instant::now() + wait,
            };
            self.changed.notify_waiters();
            return;
        }
        if l.failing.is_none() {
            tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload failed; fragments stay in the spool and are retried with backoff");
        } else if l.warned != Some(kind) {
            tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload still failing, now for another reason; fragments stay in the spool");
        } else {
            tracing::debug!(error = %err, retry_in_ms = wait.as_millis() as u64, "upload retry failed");
        }
        l.warned = Some(kind);
        l.failing = Some(err.to_string());
        l.state = LinkState::BackingOff {
            until: Instant::now() + wait,
        };
        self.changed.notify_waiters();
    }

    /// The error of the outage in progress.
    pub(super) fn last_error(&self) -> String {
        self.lock().failing.clone().unwrap_or_default()
    }

    /// Waits out a backoff (at most until `limit`); then connecting.
    pub(super) async fn ready(&self, limit: Option<Instant>) -> LinkState {
        loop {
            let state = self.state();
            let LinkState::BackingOff { until } = state else {
                return state;
            };
            let now = Instant::now();
            if now >= until || limit.is_some_and(|l| now >= l) {
                let mut l = self.lock();
                if l.state == state {
                    l.state = LinkState::Connecting;
                }
                return l.state;
            }
            let wake = limit.map_or(until, |l| until.min(l));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// Whether a failure of kind `now` only hides the certificate refusal the
/// outage was warned about (`warned`): once the ingest refused the camera's
/// certificate, later attempts often see just the connection closed (a
/// request queued on the refused connection, the alert lost), and saying
/// "check upload.url" then would send the owner the wrong way. Such a
/// failure keeps the refusal as the outage's reason, until the ingest
/// answers again.
fn masks_a_refusal(warned: Option<FailureKind>, now: FailureKind) -> bool {
    use super::error::ConnectFailure as C;
    matches!(
        warned,
        Some(FailureKind::Unreachable(C::Revoked | C::CertificateRefused))
    ) && now == FailureKind::Unreachable(C::NoAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_full_jitter_and_resets() {
        let mut b = Backoff::new();
        let mut caps = Vec::new();
        for _ in 0..10 {
            caps.push(b.next);
            let d = b.step();
            assert!(d <= *caps.last().unwrap_or(&Backoff::MAX));
        }
        assert_eq!(caps[0], Backoff::FIRST);
        assert_eq!(caps[1], Backoff::FIRST * 2);
        assert_eq!(*caps.last().unwrap_or(&Duration::ZERO), Backoff::MAX);
        b.reset();
        assert_eq!(b.next, Backoff::FIRST);
    }

    #[tokio::test]
    async fn the_link_backs_off_after_a_failure_then_connects_then_streams() {
        let live = Arc::new(LiveShared::default());
        let link = Link::new(live.clone());
        assert_eq!(link.state(), LinkState::Connecting);
        link.succeeded();
        assert_eq!(link.state(), LinkState::Streaming);
        let refused = |reason: &str, retry_after| UploadError::Refused {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            code: sealcam_api::ErrorCode::Unavailable,
            reason: reason.into(),
            retry_after,
        };
        link.failed(&refused("cut", Some(Duration::from_millis(300))));
        let LinkState::BackingOff { until } = link.state() else {
            panic!("not backing off: {:?}", link.state());
        };
        // Retry-After is a floor.
        assert!(until >= Instant::now() + Duration::from_millis(250));
        // A second failure while backing off does not push the time further.
        link.failed(&refused("cut again", None));
        assert_eq!(link.state(), LinkState::BackingOff { until });
        let started = Instant::now();
        assert_eq!(link.ready(None).await, LinkState::Connecting);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            link.last_error(),
            "ingest answered 503 Service Unavailable: cut again"
        );
        link.succeeded();
        assert_eq!(link.state(), LinkState::Streaming);
        assert_eq!(link.last_error(), "");
    }

    #[tokio::test]
    async fn a_closed_connection_after_a_revocation_keeps_the_revocation() {
        use super::super::error::ConnectFailure;
        let link = Link::new(Arc::new(LiveShared::default()));
        let cut = |detail: &str, failure| UploadError::Unreachable {
            base: "https://i:8443".into(),
            detail: detail.into(),
            failure,
        };
        link.failed(&cut("CertificateRevoked", ConnectFailure::Revoked));
        // In flight, and after the backoff: the connection just closes.
        link.failed(&cut("connection closed", ConnectFailure::NoAnswer));
        assert_eq!(link.ready(None).await, LinkState::Connecting);
        link.failed(&cut("connection closed", ConnectFailure::NoAnswer));
        assert!(matches!(link.state(), LinkState::BackingOff { .. }));
        let last = link.last_error();
        assert!(last.contains("CertificateRevoked"), "{last}");
        assert!(
            last.contains("the ingest revoked this camera's certificate"),
            "{last}"
        );
        // Once the ingest answers, a closed connection is itself again.
        link.succeeded();
        link.failed(&cut("connection closed", ConnectFailure::NoAnswer));
        assert!(link.last_error().contains("check upload.url"));
    }
}
