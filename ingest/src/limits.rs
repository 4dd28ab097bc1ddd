//! Per-device limits on uploads, and per-consumer limits on requests: how
//! many at once, and how many per second (a token bucket, so a camera
//! draining a backlog after an outage, or a consumer fetching a range, may
//! burst). A device or consumer over a limit is refused with `429` and a
//! `Retry-After`; others are not affected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealcam_format::Name;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

/// Why an upload may not start now.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Too many of this device's uploads in progress.
    Busy { limit: usize },
    /// Over the rate; try again after this long.
    Rate { retry_after: Duration },
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Devices' uploads, and consumers' requests apart.
pub struct Limiter {
    uploads: Limit,
    consumers: Limit,
}

impl Limiter {
    pub fn new(cfg: &LimitsConfig) -> Self {
        Self {
            uploads: Limit::new(
                cfg.uploads_per_device,
                cfg.uploads_per_second,
                cfg.upload_burst,
            ),
            consumers: Limit::new(
                cfg.consumer_requests_at_once,
                cfg.consumer_requests_per_second,
                cfg.consumer_burst,
            ),
        }
    }

    /// Admits one upload of `device`; hold the permit until it is answered.
    pub fn admit(&self, device: &Name) -> Result<OwnedSemaphorePermit, Refusal> {
        self.uploads.admit(device)
    }

    /// Admits one request of consumer `name`; hold the permit until it is
    /// answered.
    pub fn admit_consumer(&self, name: &Name) -> Result<OwnedSemaphorePermit, Refusal> {
        self.consumers.admit(name)
    }
}

/// One kind of limit, per name: a number at once, and a token bucket.
struct Limit {
    concurrent: usize,
    rate: f64,
    burst: f64,
    slots: Mutex<HashMap<Name, Arc<Semaphore>>>,
    buckets: Mutex<HashMap<Name, Bucket>>,
}

impl Limit {
    fn new(concurrent: usize, rate: f64, burst: u32) -> Self {
        Self {
            concurrent,
            rate,
            burst: f64::from(burst.max(1)),
            slots: Mutex::default(),
            buckets: Mutex::default(),
        }
    }

    fn admit(&self, device: &Name) -> Result<OwnedSemaphorePermit, Refusal> {
        self.take_token(device, Instant::now())?;
        let slot = match self.slots.lock() {
            Ok(mut s) => s
                .entry(device.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.concurrent)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(self.concurrent)),
        };
        slot.try_acquire_owned().map_err(|_| Refusal::Busy {
            limit: self.concurrent,
        })
    }

    fn take_token(&self, device: &Name, now: Instant) -> Result<(), Refusal> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let b = buckets.entry(device.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = if self.rate > 0.0 {
            (1.0 - b.tokens) / self.rate
        } else {
            3600.0
        };
        Err(Refusal::Rate {
            retry_after: Duration::from_secs_f64(wait.clamp(0.001, 3600.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(concurrent: usize, rate: f64, burst: u32) -> Limit {
        Limiter::new(&LimitsConfig {
            uploads_per_device: concurrent,
            uploads_per_second: rate,
            upload_burst: burst,
            ..LimitsConfig::default()
        })
        .uploads
    }

    #[test]
    fn consumers_have_limits_of_their_own() {
        let l = Limiter::new(&LimitsConfig {
            consumer_requests_at_once: 1,
            consumer_requests_per_second: 1.0,
            consumer_burst: 2,
            ..LimitsConfig::default()
        });
        let alice = Name::new("alice").unwrap();
        let held = l.admit_consumer(&alice).unwrap();
        assert_eq!(
            l.admit_consumer(&alice).unwrap_err(),
            Refusal::Busy { limit: 1 }
        );
        drop(held);
        assert!(matches!(
            l.admit_consumer(&alice).unwrap_err(),
            Refusal::Rate { .. }
        ));
        // A device of the same name is not held back by it.
        assert!(l.admit(&alice).is_ok());
    }

    #[test]
    fn burst_then_rate() {
        let l = limiter(10, 2.0, 3);
        let d = Name::new("cam").unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.take_token(&d, t0).unwrap();
        }
        let Err(Refusal::Rate { retry_after }) = l.take_token(&d, t0) else {
            panic!("the fourth upload in the same instant passed");
        };
        assert!(retry_after <= Duration::from_millis(500));
        // Half a second later, one more token at 2/s.
        l.take_token(&d, t0 + Duration::from_millis(500)).unwrap();
        // Another device has its own bucket.
        l.take_token(&Name::new("other").unwrap(), t0).unwrap();
    }

    #[test]
    fn concurrent_uploads_are_capped_per_device() {
        let l = limiter(2, 1000.0, 1000);
        let d = Name::new("cam").unwrap();
        let a = l.admit(&d).unwrap();
        let _b = l.admit(&d).unwrap();
        assert_eq!(l.admit(&d).unwrap_err(), Refusal::Busy { limit: 2 });
        assert!(l.admit(&Name::new("other").unwrap()).is_ok());
        drop(a);
        assert!(l.admit(&d).is_ok());
    }
}
