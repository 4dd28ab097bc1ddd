//! The bytes of upload bodies held in memory, across all uploads in
//! flight: each upload reserves the room its buffer takes before it takes
//! it, and an upload that would pass the budget is refused (503 with
//! `Retry-After`) instead of read. With each buffer at most the fragment
//! limit, one device holds at most `uploads_per_device` times that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

/// The budget and what is reserved of it.
pub struct BufferBudget {
    limit: usize,
    used: AtomicUsize,
    gauge: Gauge,
}

/// Room reserved by one upload; given back on drop.
pub struct Reserved {
    budget: Arc<BufferBudget>,
    bytes: usize,
}

impl BufferBudget {
    pub fn new(limit: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// Takes `bytes` more, if the budget has them.
    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            });
        match taken {
            Ok(before) => {
                self.gauge
                    .set(i64::try_from(before + bytes).unwrap_or(i64::MAX));
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::SeqCst);
        self.gauge
            .set(i64::try_from(before.saturating_sub(bytes)).unwrap_or(i64::MAX));
    }

    /// Room for `bytes`, or `None` when the budget does not have them.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reserved> {
        self.take(bytes).then(|| Reserved {
            budget: self.clone(),
            bytes,
        })
    }

    /// What is reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

impl Reserved {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows the reservation to `bytes`; `false`, and unchanged, when the
    /// budget does not have the difference.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        if !self.budget.take(bytes - self.bytes) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    /// Shrinks the reservation to `bytes` (a buffer moved out of a
    /// smaller one has freed it).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.budget.give_back(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_budget_refuses_what_it_does_not_have() {
        let b = BufferBudget::new(100, Gauge::default());
        let mut r = b.reserve(60).unwrap();
        assert!(b.reserve(50).is_none());
        assert!(!r.grow_to(101));
        assert_eq!(r.bytes(), 60);
        assert!(r.grow_to(100));
        r.shrink_to(10);
        let other = b.reserve(90).unwrap();
        assert_eq!(b.used(), 100);
        drop((r, other));
        assert_eq!((b.used(), b.gauge.get()), (0, 0));
    }

    proptest! {
        /// Whatever is reserved, grown, shrunk and dropped, the budget is
        /// never passed and all of it comes back.
        #[test]
        fn the_budget_is_never_passed(ops in proptest::collection::vec((0u8..4, 0usize..400), 0..100)) {
            let b = BufferBudget::new(1000, Gauge::default());
            let mut held: Vec<Reserved> = Vec::new();
            for (op, n) in ops {
                match op {
                    0 => held.extend(b.reserve(n)),
                    1 => if let Some(r) = held.last_mut() { r.grow_to(r.bytes() + n); },
                    2 => if let Some(r) = held.last_mut() { r.shrink_to(n); },
                    _ => { held.pop(); }
                }
                prop_assert!(b.used() <= 1000);
                prop_assert_eq!(b.used(), held.iter().map(Reserved::bytes).sum::<usize>());
            }
            held.clear();
            prop_assert_eq!(b.used(), 0);
        }
    }
}
