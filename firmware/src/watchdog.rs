//! systemd's watchdog (`WatchdogSec=` in `sealcamd.service`), fed only while
//! frames flow into the recorder. A camera, driver or encoder that stalls
//! stops the keep-alives, and systemd restarts the service; the restart is
//! then declared, signed, in the next manifest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the last frame went into the recorder.
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    last_ms: AtomicU64,
}

impl Heartbeat {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// A frame was recorded.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last frame (since start, before the first).
    pub fn age(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Sends a keep-alive every half `period` while the last frame is younger
/// than half `period`. Never returns.
pub async fn feed(heartbeat: Arc<Heartbeat>, period: Duration) -> std::convert::Infallible {
    let half = period / 2;
    let mut warned = false;
    loop {
        tokio::time::sleep(half).await;
        if heartbeat.age() < half {
            sealcam_base::service::watchdog_ping();
            warned = false;
        } else if !warned {
            tracing::warn!(
                since_last_frame_ms = heartbeat.age().as_millis() as u64,
                "no frames: withholding the watchdog keep-alive (systemd restarts a stalled camera)"
            );
            warned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_restarts_at_each_beat() {
        let h = Heartbeat::new();
        std::thread::sleep(Duration::from_millis(30));
        assert!(h.age() >= Duration::from_millis(30));
        h.beat();
        assert!(h.age() < Duration::from_millis(30));
    }
}
