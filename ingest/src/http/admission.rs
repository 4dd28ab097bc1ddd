//! Admission of connections at accept, before any TLS work: a cap on the
//! connections a port holds at once and on those of one IP address. A
//! connection over a cap is closed at once, with nothing read or written
//! and no audit record of its own (it is counted, and sampled by
//! [`super::refusals`]), so that refusing costs the ingest less than
//! connecting costs the client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The port holds as many connections as it may.
    ConnectionCap,
    /// The address holds as many connections on this port as it may.
    AddressCap,
}

impl Refusal {
    /// The name in metrics and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ConnectionCap => "connection-cap",
            Refusal::AddressCap => "address-cap",
        }
    }
}

#[derive(Default)]
struct Held {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The connections one port holds, by address.
pub struct Admission {
    max_total: usize,
    per_address: usize,
    held: Mutex<Held>,
    gauge: Gauge,
}

/// A connection's place among those its port holds; given back on drop.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// `gauge` follows the number of connections held.
    pub fn new(max_total: usize, per_address: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            per_address: per_address.max(1),
            held: Mutex::default(),
            gauge,
        })
    }

    /// A place for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = source_of(ip);
        let mut held = self.held.lock().map_err(|_| Refusal::ConnectionCap)?;
        if held.total >= self.max_total {
            return Err(Refusal::ConnectionCap);
        }
        let mine = held.by_address.entry(ip).or_insert(0);
        if *mine >= self.per_address {
            return Err(Refusal::AddressCap);
        }
        *mine += 1;
        held.total += 1;
        self.gauge.set(held.total as i64);
        Ok(Ticket {
            admission: self.clone(),
            ip,
        })
    }

    /// How many connections are held now.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.total).unwrap_or(0)
    }
}

/// What the per-address cap counts a connection under: an IPv4 address
/// (also when it comes mapped into IPv6), or an IPv6 address's /64, which
/// one client usually holds whole.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Ok(mut held) = self.admission.held.lock() else {
            return;
        };
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.by_address.remove(&self.ip);
            }
        }
        self.admission.gauge.set(held.total as i64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn each_cap_refuses_and_a_closed_connection_frees_its_place() {
        let a = Admission::new(3, 2, Gauge::default());
        let t1 = a.admit(ip(1)).unwrap();
        let _t2 = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).err(), Some(Refusal::AddressCap));
        let _t3 = a.admit(ip(2)).unwrap();
        assert_eq!(a.admit(ip(3)).err(), Some(Refusal::ConnectionCap));
        drop(t1);
        assert_eq!(a.held(), 2);
        let _t4 = a.admit(ip(1)).unwrap();
        assert_eq!(a.gauge.get(), 3);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let a = Admission::new(10, 1, Gauge::default());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _t = a.admit(one).unwrap();
        assert_eq!(a.admit(same_64).err(), Some(Refusal::AddressCap));
        let _u = a.admit(other_64).unwrap();
        let _v = a.admit(ip(7)).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(a.admit(mapped).err(), Some(Refusal::AddressCap));
    }

    proptest! {
        /// Whatever the order of connections and closes, the caps hold and
        /// everything given back is freed.
        #[test]
        fn the_caps_always_hold(ops in proptest::collection::vec((0u8..4, any::<bool>()), 0..200)) {
            let a = Admission::new(5, 2, Gauge::default());
            let mut tickets: Vec<Ticket> = Vec::new();
            for (addr, open) in ops {
                if open {
                    if let Ok(t) = a.admit(ip(addr)) {
                        tickets.push(t);
                    }
                } else if let Some(i) = tickets.iter().position(|t| t.ip == ip(addr)) {
                    tickets.swap_remove(i);
                }
                prop_assert!(a.held() <= 5);
                prop_assert_eq!(a.held(), tickets.len());
                for n in 0..4 {
                    prop_assert!(tickets.iter().filter(|t| t.ip == ip(n)).count() <= 2);
                }
            }
            tickets.clear();
            prop_assert_eq!(a.held(), 0);
            prop_assert!(a.held.lock().unwrap().by_address.is_empty());
        }
    }
}
