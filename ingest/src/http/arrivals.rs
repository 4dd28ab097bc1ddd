//! Wake-ups for long polls: one per stream that someone waits on now.
//! An upload stored here wakes its stream's waiters; the map keeps an
//! entry only while a waiter holds it, so streams nobody follows cost
//! nothing (a map of every stream ever asked about grew without bound).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sealcam_format::Name;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Arrivals {
    waiting: Mutex<HashMap<(Name, Name), Weak<Notify>>>,
}

impl Arrivals {
    /// The wake-up of a stream, for a waiter to hold while it waits.
    pub fn of(&self, device: &Name, stream: &Name) -> Arc<Notify> {
        let Ok(mut waiting) = self.waiting.lock() else {
            return Arc::new(Notify::new());
        };
        let key = (device.clone(), stream.clone());
        if let Some(n) = waiting.get(&key).and_then(Weak::upgrade) {
            return n;
        }
        // Entries whose waiters are gone go before a new one comes in.
        waiting.retain(|_, w| w.strong_count() > 0);
        let n = Arc::new(Notify::new());
        waiting.insert(key, Arc::downgrade(&n));
        n
    }

    /// A fragment of the stream was stored: wakes its waiters, if any.
    pub fn arrived(&self, device: &Name, stream: &Name) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        let key = (device.clone(), stream.clone());
        match waiting.get(&key).map(Weak::upgrade) {
            Some(Some(n)) => n.notify_waiters(),
            Some(None) => {
                waiting.remove(&key);
            }
            None => {}
        }
    }

    /// Streams with an entry now.
    pub fn len(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_live_as_long_as_their_waiters() {
        let a = Arrivals::default();
        let name = |s: &str| Name::new(s).unwrap();
        for i in 0..100 {
            let n = a.of(&name("cam"), &name(&format!("s{i}")));
            drop(n);
        }
        // Nobody waits: at most the last one asked about is left.
        assert!(a.len() <= 1, "{}", a.len());
        let held = a.of(&name("cam"), &name("front"));
        {
            let woken = held.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            a.arrived(&name("cam"), &name("front"));
            woken.await;
        }
        assert!(Arc::ptr_eq(&held, &a.of(&name("cam"), &name("front"))));
        drop(held);
        a.arrived(&name("cam"), &name("front"));
        assert!(a.is_empty());
    }
}
