//! Client quotas: produce and fetch byte rates per user and client id,
//! with Kafka's precedence of defaults and overrides and its way of
//! throttling (answer at once with `throttle_time_ms`, then read nothing
//! more from that connection for that long; KIP-219).
//!
//! Quotas are entities in the metadata image (AlterClientQuotas): a user,
//! a client id, or both, each named or the default. A client's quota for
//! one key is taken from the most specific entity that sets it, in Kafka's
//! order: user+client, user+default client, user, default user+client,
//! default user+default client, default user, client, default client.
//! Each client measures its own rate over `quota.window.num` windows of
//! `quota.window.size.seconds` (Kafka's 11 × 1 s), even under a default
//! entity.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use kraftwerk_metadata::ClientQuota;
use kraftwerk_types::BrokerConfig;
use parking_lot::Mutex;

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// The quota keys Kraftwerk enforces.
pub const KEYS: &[&str] = &[PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE];
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

/// Which quota applies to a client for `key`, and the id of the sensor
/// that measures it: (bytes per second, sensor key).
pub fn resolve(
    quotas: &[ClientQuota],
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(i64, String)> {
    let named = |s: &str| Some(s.to_string());
    // (user component, client component) in Kafka's precedence order;
    // `Some(None)` is the default, `None` the component absent.
    let order: [(Option<Option<String>>, Option<Option<String>>); 8] = [
        (Some(named(user)), Some(named(client_id))),
        (Some(named(user)), Some(None)),
        (Some(named(user)), None),
        (Some(None), Some(named(client_id))),
        (Some(None), Some(None)),
        (Some(None), None),
        (None, Some(named(client_id))),
        (None, Some(None)),
    ];
    for (u, c) in order {
        let mut entity = Vec::new();
        if let Some(c) = &c {
            entity.push((CLIENT_ID.to_string(), c.clone()));
        }
        if let Some(u) = &u {
            entity.push((USER.to_string(), u.clone()));
        }
        if let Some(q) = quotas.iter().find(|q| q.entity == entity) {
            if let Some(v) = q.values.get(key) {
                // One sensor per client at this level: defaults apply to
                // each user or client id on its own.
                let sensor = format!(
                    "{key}|{}|{}",
                    u.map(|_| user).unwrap_or(""),
                    c.map(|_| client_id).unwrap_or("")
                );
                return Some((*v, sensor));
            }
        }
    }
    None
}

/// A rate over a ring of time windows, as Kafka's `Rate` with samples.
#[derive(Debug)]
struct Sensor {
    /// (window start, bytes)
    windows: VecDeque<(Instant, f64)>,
}

/// Measures clients against their quotas.
#[derive(Debug)]
pub struct QuotaManager {
    window: Duration,
    samples: usize,
    sensors: Mutex<HashMap<String, Sensor>>,
}

impl QuotaManager {
    pub fn new(config: &BrokerConfig) -> Self {
        let number = |key: &str, default: u64| {
            config
                .value_of(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        QuotaManager {
            window: Duration::from_secs(number("quota.window.size.seconds", 1)),
            samples: number("quota.window.num", 11) as usize,
            sensors: Mutex::new(HashMap::new()),
        }
    }

    /// Records `bytes` against the sensor and returns how long the client
    /// must wait for its rate to fall back to `quota` (zero when it is
    /// within it). With `record_if_throttled` false, bytes that would
    /// exceed the quota are not counted (a throttled fetch sends nothing).
    pub fn record(
        &self,
        sensor: &str,
        quota: i64,
        bytes: u64,
        now: Instant,
        record_if_throttled: bool,
    ) -> Duration {
        let mut sensors = self.sensors.lock();
        let s = sensors.entry(sensor.to_string()).or_insert_with(|| Sensor {
            windows: VecDeque::new(),
        });
        let span = self.window * self.samples as u32;
        while s
            .windows
            .front()
            .is_some_and(|(start, _)| now.duration_since(*start) >= span)
        {
            s.windows.pop_front();
        }
        let current_is_open = s
            .windows
            .back()
            .is_some_and(|(start, _)| now.duration_since(*start) < self.window);
        if !current_is_open {
            s.windows.push_back((now, 0.0));
        }
        let total: f64 = s.windows.iter().map(|(_, b)| b).sum::<f64>() + bytes as f64;
        // Kafka's elapsed time: the oldest window's start to now, but at
        // least all windows but the current one.
        let oldest = s.windows.front().map_or(now, |(start, _)| *start);
        let elapsed = now
            .duration_since(oldest)
            .max(self.window * (self.samples as u32 - 1))
            .as_secs_f64();
        let rate = total / elapsed;
        let quota = quota.max(1) as f64;
        let throttle = if rate > quota {
            let ms = (rate - quota) / quota * elapsed * 1000.0;
            Duration::from_millis(ms as u64).min(span)
        } else {
            Duration::ZERO
        };
        if throttle.is_zero() || record_if_throttled {
            if let Some(last) = s.windows.back_mut() {
                last.1 += bytes as f64;
            }
        }
        throttle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn quota(user: Option<Option<&str>>, client: Option<Option<&str>>, key: &str, v: i64) -> ClientQuota {
        let mut entity = Vec::new();
        if let Some(c) = client {
            entity.push((CLIENT_ID.to_string(), c.map(str::to_string)));
        }
        if let Some(u) = user {
            entity.push((USER.to_string(), u.map(str::to_string)));
        }
        ClientQuota {
            entity,
            values: BTreeMap::from([(key.to_string(), v)]),
        }
    }

    #[test]
    fn precedence_is_kafkas() {
        let p = PRODUCER_BYTE_RATE;
        let all = vec![
            quota(None, Some(None), p, 8),
            quota(None, Some(Some("app")), p, 7),
            quota(Some(None), None, p, 6),
            quota(Some(None), Some(None), p, 5),
            quota(Some(None), Some(Some("app")), p, 4),
            quota(Some(Some("alice")), None, p, 3),
            quota(Some(Some("alice")), Some(None), p, 2),
            quota(Some(Some("alice")), Some(Some("app")), p, 1),
        ];
        // Remove the most specific each time: the next one applies.
        for expected in 1..=8 {
            let left: Vec<_> = all.iter().filter(|q| q.values[p] >= expected).cloned().collect();
            let (v, _) = resolve(&left, p, "alice", "app").expect("a quota applies");
            assert_eq!(v, expected);
        }
        assert!(resolve(&all, CONSUMER_BYTE_RATE, "alice", "app").is_none());
        // A default applies to each client on its own sensor.
        let defaults = vec![quota(Some(None), None, p, 100)];
        let (_, a) = resolve(&defaults, p, "alice", "x").expect("default");
        let (_, b) = resolve(&defaults, p, "bob", "x").expect("default");
        assert_ne!(a, b);
    }

    #[test]
    fn throttle_brings_the_rate_back_to_the_quota() {
        let m = QuotaManager {
            window: Duration::from_secs(1),
            samples: 11,
            sensors: Mutex::new(HashMap::new()),
        };
        let start = Instant::now();
        // 1,000 B/s allowed; 10 s of history at least: 10,000 B are free.
        assert_eq!(m.record("s", 1000, 10_000, start, true), Duration::ZERO);
        // 5,000 more: 15,000 B over 10 s is 1,500 B/s; waiting 5 s brings it to 1,000.
        let t = m.record("s", 1000, 5_000, start, true);
        assert_eq!(t, Duration::from_secs(5));
        // A fetch that would exceed is not counted.
        let before = m.record("f", 1000, 10_000, start, false);
        assert_eq!(before, Duration::ZERO);
        assert!(m.record("f", 1000, 5_000, start, false) > Duration::ZERO);
        assert!(m.record("f", 1000, 0, start, false).is_zero());
    }
}
