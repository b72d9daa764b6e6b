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
//! Each client is measured on its own, even under a default entity.

use std::collections::HashMap;
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
    type Component = Option<Option<String>>;
    let order: [(Component, Component); 8] = [
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

/// A client's allowance: bytes it may still send at once.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Measures clients against their quotas.
///
/// Each client has a token bucket that fills at its quota and holds at most
/// `quota.window.num` × `quota.window.size.seconds` of it (11 s with
/// Kafka's defaults): an idle client may send that much at once, as with
/// Kafka's sampled rate, and after that is held to its quota exactly. The
/// throttle time is how long the bucket takes to refill what the client
/// overdrew. Kafka's windowed rate instead lets a throttled client through
/// in bursts separated by long pauses, averaging above or below its quota
/// depending on where the windows fall (`docs/security.md`).
#[derive(Debug)]
pub struct QuotaManager {
    burst: Duration,
    buckets: Mutex<HashMap<String, Bucket>>,
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
        let window = number("quota.window.size.seconds", 1);
        let samples = number("quota.window.num", 11);
        QuotaManager {
            burst: Duration::from_secs(window.saturating_mul(samples)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Charges `bytes` to the client's bucket and returns how long it must
    /// wait before sending more (zero while it is within its quota). With
    /// `charge_if_throttled` false, bytes that would overdraw the bucket
    /// are not charged (a throttled fetch sends nothing).
    pub fn record(
        &self,
        sensor: &str,
        quota: i64,
        bytes: u64,
        now: Instant,
        charge_if_throttled: bool,
    ) -> Duration {
        let quota = quota.max(1) as f64;
        let capacity = quota * self.burst.as_secs_f64();
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(sensor.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * quota;
        b.tokens = (b.tokens + refill).min(capacity);
        b.last = now;
        let after = b.tokens - bytes as f64;
        if after >= 0.0 {
            b.tokens = after;
            return Duration::ZERO;
        }
        if charge_if_throttled {
            b.tokens = after;
        }
        Duration::from_secs_f64(-after / quota).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn quota(
        user: Option<Option<&str>>,
        client: Option<Option<&str>>,
        key: &str,
        v: i64,
    ) -> ClientQuota {
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
            let left: Vec<_> = all
                .iter()
                .filter(|q| q.values[p] >= expected)
                .cloned()
                .collect();
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
            burst: Duration::from_secs(11),
            buckets: Mutex::new(HashMap::new()),
        };
        let start = Instant::now();
        // 1,000 B/s allowed, 11 s of burst: 11,000 B go at once.
        assert_eq!(m.record("s", 1000, 11_000, start, true), Duration::ZERO);
        // 500 more overdraw by 500: half a second to refill.
        assert_eq!(
            m.record("s", 1000, 500, start, true),
            Duration::from_millis(500)
        );
        // After that half second, 0 tokens: one more byte waits 1 ms.
        let later = start + Duration::from_millis(500);
        assert_eq!(
            m.record("s", 1000, 1, later, true),
            Duration::from_millis(1)
        );
        // A second later, 1,000 B have come back.
        let much_later = later + Duration::from_secs(1);
        assert_eq!(m.record("s", 1000, 999, much_later, true), Duration::ZERO);
        // A fetch that would overdraw is not charged: the same fetch after
        // the throttle time goes through.
        assert_eq!(m.record("f", 1000, 11_000, start, false), Duration::ZERO);
        let wait = m.record("f", 1000, 2_000, start, false);
        assert_eq!(wait, Duration::from_secs(2));
        assert_eq!(
            m.record("f", 1000, 2_000, start + wait, false),
            Duration::ZERO
        );
    }
}
