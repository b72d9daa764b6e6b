//! `max.connections` and `max.connections.per.ip`: how many Kafka
//! connections the broker holds at once, in all and from one address.
//!
//! A connection over either limit is accepted and closed at once, before
//! anything is read from it or allocated for it. Kafka closes a connection
//! over the per-address limit the same way, but stops accepting while the
//! broker-wide limit is reached, which leaves the excess waiting in the
//! kernel's accept queue, connected from the client's side and never
//! answered; closing it instead tells the client at once, so it backs off
//! or tries another broker (`docs/configuration.md`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use kraftwerk_types::BrokerConfig;
use parking_lot::Mutex;

#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    per_ip_overrides: BTreeMap<IpAddr, usize>,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max.connections` connections are open.
    Total { max: usize },
    /// The address has its `max.connections.per.ip` (or override) open.
    PerIp { max: usize },
}

/// One admitted connection; its slot is given back when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(config: &BrokerConfig) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            per_ip_overrides: config.max_connections_per_ip_overrides.clone(),
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which limit is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let max_ip = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_per_ip);
        let mut open = self.open.lock();
        if open.total >= self.max_total {
            return Err(Refused::Total {
                max: self.max_total,
            });
        }
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= max_ip {
            return Err(Refused::PerIp { max: max_ip });
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(Admitted {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.lock().total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Arc<ConnectionLimits> {
        let config = BrokerConfig::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .expect("valid config");
        ConnectionLimits::new(&config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn slots_are_taken_per_address_and_in_all_and_given_back_on_drop() {
        let l = limits(&[
            ("max.connections", "4"),
            ("max.connections.per.ip", "2"),
            ("max.connections.per.ip.overrides", "10.0.0.9:3"),
        ]);
        let a1 = l.admit(ip("10.0.0.1")).expect("first");
        let _a2 = l.admit(ip("10.0.0.1")).expect("second");
        assert_eq!(
            l.admit(ip("10.0.0.1")).expect_err("refused"),
            Refused::PerIp { max: 2 }
        );
        let _b1 = l.admit(ip("10.0.0.9")).expect("override");
        let _b2 = l.admit(ip("10.0.0.9")).expect("override");
        assert_eq!(l.open_connections(), 4);
        assert_eq!(
            l.admit(ip("10.0.0.9")).expect_err("refused"),
            Refused::Total { max: 4 }
        );
        assert_eq!(
            l.admit(ip("10.0.0.2")).expect_err("refused"),
            Refused::Total { max: 4 }
        );
        drop(a1);
        assert_eq!(l.open_connections(), 3);
        let _a3 = l.admit(ip("10.0.0.1")).expect("a slot was given back");
        assert_eq!(
            l.admit(ip("10.0.0.1")).expect_err("refused"),
            Refused::Total { max: 4 }
        );
    }

    #[test]
    fn zero_per_address_admits_only_the_overrides() {
        let l = limits(&[
            ("max.connections.per.ip", "0"),
            ("max.connections.per.ip.overrides", "127.0.0.1:1"),
        ]);
        assert_eq!(
            l.admit(ip("10.0.0.1")).expect_err("refused"),
            Refused::PerIp { max: 0 }
        );
        let _local = l.admit(ip("127.0.0.1")).expect("override");
        assert_eq!(
            l.admit(ip("127.0.0.1")).expect_err("refused"),
            Refused::PerIp { max: 1 }
        );
    }
}
