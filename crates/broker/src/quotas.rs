//! Client quotas: produce and fetch byte rates, request handler time
//! (`request_percentage`, KIP-124) and partition mutations
//! (`controller_mutation_rate`, KIP-599) per user and client id, with
//! Kafka's precedence of defaults and overrides and its way of throttling
//! (answer at once with `throttle_time_ms`, then read nothing more from
//! that connection for that long; KIP-219).
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
/// Percent of one request handler's time per second (100 = one thread).
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Partitions created, added or deleted per second.
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
/// The quota keys Kraftwerk enforces.
pub const KEYS: &[&str] = &[
    PRODUCER_BYTE_RATE,
    CONSUMER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    CONTROLLER_MUTATION_RATE,
];
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

/// How many stored units make one unit of a key Kafka defines as a double.
/// The metadata image keeps every quota value as an integer, so
/// `request_percentage` and `controller_mutation_rate` are kept in
/// millionths; the byte rates, which Kafka defines as longs, as they are.
const FRACTION_UNITS: f64 = 1_000_000.0;

/// Whether Kafka defines `key` as a double rather than a long.
pub fn is_fractional(key: &str) -> bool {
    key == REQUEST_PERCENTAGE || key == CONTROLLER_MUTATION_RATE
}

/// The value of `key` as AlterClientQuotas gave it, as the metadata image
/// keeps it; `None` when it cannot be kept.
pub fn to_stored(key: &str, value: f64) -> Option<i64> {
    let stored = if is_fractional(key) {
        (value * FRACTION_UNITS).round()
    } else {
        value
    };
    (stored.is_finite() && stored.abs() <= i64::MAX as f64).then_some(stored as i64)
}

/// The value of `key` as the metadata image keeps it, in the key's unit.
pub fn from_stored(key: &str, stored: i64) -> f64 {
    if is_fractional(key) {
        stored as f64 / FRACTION_UNITS
    } else {
        stored as f64
    }
}

/// Which quota applies to a client for `key`, and the id of the sensor
/// that measures it: (the quota in the key's unit per second, sensor key).
pub fn resolve(
    quotas: &[ClientQuota],
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(f64, String)> {
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
                return Some((from_stored(key, *v), sensor));
            }
        }
    }
    None
}

/// How [`QuotaManager::record`] treats an amount that overdraws the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdraw {
    /// Charge it anyway (produce bytes, request time, and mutations of
    /// requests too old to be refused: Kafka's permissive mode).
    Charge,
    /// Do not charge it (a throttled fetch sends nothing).
    Skip,
    /// Charge it only while the bucket is not below zero, however far it
    /// takes the bucket down; refuse it otherwise (KIP-599's strict mode:
    /// CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+). The
    /// throttle time is then nonzero only when refused.
    RefuseOnceBelowZero,
}

/// A client's allowance: how much it may still use at once.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// How much of its `controller_mutation_rate` an idle client may use at
/// once: Kafka's token bucket for KIP-599 holds
/// `controller.quota.window.num` × `controller.quota.window.size.seconds`
/// of it, 11 s with Kafka's defaults (Kafka 4.1 creates 23 one-partition
/// topics of a burst at 2 partitions/s: 22 tokens, and the last one
/// allowed while the bucket is at zero). Kraftwerk keeps those defaults.
pub const MUTATION_BURST: Duration = Duration::from_secs(11);

/// Measures clients against their quotas.
///
/// Each client has a token bucket per quota key that fills at its quota.
/// For byte rates and request time it holds at most `quota.window.num` ×
/// `quota.window.size.seconds` of it (11 s with Kafka's defaults): an idle
/// client may use that much at once, as with Kafka's sampled rate, and
/// after that is held to its quota exactly. The throttle time is how long
/// the bucket takes to refill what the client overdrew, at most one burst.
/// Kafka's windowed rate instead lets a throttled client through in bursts
/// separated by long pauses, averaging above or below its quota depending
/// on where the windows fall (`docs/security.md`). Controller mutations
/// use Kafka's own token bucket (KIP-599), [`MUTATION_BURST`] deep.
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

    /// Charges `amount` (bytes, percent-seconds of handler time, or
    /// partitions, as `key` counts) to the client's bucket and returns how
    /// long it must wait before using more: zero while it is within its
    /// quota. `overdraw` says what happens to an amount the bucket cannot
    /// cover.
    pub fn record(
        &self,
        key: &str,
        sensor: &str,
        quota: f64,
        amount: f64,
        now: Instant,
        overdraw: Overdraw,
    ) -> Duration {
        let burst = if key == CONTROLLER_MUTATION_RATE {
            MUTATION_BURST
        } else {
            self.burst
        };
        let quota = if quota.is_finite() {
            quota.max(0.0)
        } else {
            0.0
        };
        let capacity = quota * burst.as_secs_f64();
        // A quota of zero never refills: the throttle time is one burst.
        let wait = |debt: f64| Duration::from_secs_f64((debt / quota).min(burst.as_secs_f64()));
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(sensor.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * quota;
        b.tokens = (b.tokens + refill).min(capacity);
        b.last = now;
        if overdraw == Overdraw::RefuseOnceBelowZero {
            if b.tokens < 0.0 {
                return wait(-b.tokens);
            }
            b.tokens -= amount;
            return Duration::ZERO;
        }
        // A negative amount gives back what was charged, up to a full bucket.
        let after = (b.tokens - amount).min(capacity);
        if after >= 0.0 {
            b.tokens = after;
            return Duration::ZERO;
        }
        if overdraw == Overdraw::Charge {
            b.tokens = after;
        }
        wait(-after)
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
            assert_eq!(v, expected as f64);
        }
        assert!(resolve(&all, CONSUMER_BYTE_RATE, "alice", "app").is_none());
        // A default applies to each client on its own sensor.
        let defaults = vec![quota(Some(None), None, p, 100)];
        let (_, a) = resolve(&defaults, p, "alice", "x").expect("default");
        let (_, b) = resolve(&defaults, p, "bob", "x").expect("default");
        assert_ne!(a, b);
    }

    fn manager() -> QuotaManager {
        QuotaManager {
            burst: Duration::from_secs(11),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn throttle_brings_the_rate_back_to_the_quota() {
        let m = manager();
        let p = PRODUCER_BYTE_RATE;
        let record = |s, amount: f64, at, o| m.record(p, s, 1000.0, amount, at, o);
        let start = Instant::now();
        // 1,000 B/s allowed, 11 s of burst: 11,000 B go at once.
        assert_eq!(
            record("s", 11_000.0, start, Overdraw::Charge),
            Duration::ZERO
        );
        // 500 more overdraw by 500: half a second to refill.
        assert_eq!(
            record("s", 500.0, start, Overdraw::Charge),
            Duration::from_millis(500)
        );
        // After that half second, 0 tokens: one more byte waits 1 ms.
        let later = start + Duration::from_millis(500);
        assert_eq!(
            record("s", 1.0, later, Overdraw::Charge),
            Duration::from_millis(1)
        );
        // A second later, 1,000 B have come back.
        let much_later = later + Duration::from_secs(1);
        assert_eq!(
            record("s", 999.0, much_later, Overdraw::Charge),
            Duration::ZERO
        );
        // A fetch that would overdraw is not charged: the same fetch after
        // the throttle time goes through.
        assert_eq!(record("f", 11_000.0, start, Overdraw::Skip), Duration::ZERO);
        let wait = record("f", 2_000.0, start, Overdraw::Skip);
        assert_eq!(wait, Duration::from_secs(2));
        assert_eq!(
            record("f", 2_000.0, start + wait, Overdraw::Skip),
            Duration::ZERO
        );
    }

    #[test]
    fn request_time_is_a_percentage_of_one_thread() {
        let m = manager();
        let start = Instant::now();
        // 10 % of a thread, 11 s of burst: 1.1 s of handler time at once,
        // counted in percent-seconds (1.1 s = 110).
        let r =
            |amount: f64, at| m.record(REQUEST_PERCENTAGE, "r", 10.0, amount, at, Overdraw::Charge);
        assert_eq!(r(110.0, start), Duration::ZERO);
        // 10 ms more of handler time (1 percent-second) takes 100 ms of
        // the quota to pay back.
        assert_eq!(r(1.0, start), Duration::from_millis(100));
        // An overdraw never holds a client for more than one burst.
        assert_eq!(r(1_000_000.0, start), Duration::from_secs(11));
    }

    #[test]
    fn mutations_strict_and_permissive() {
        // (mode, partitions per request, seconds since start, expected
        // throttle in ms) at 2 partitions/s: an 11 s burst of 22.
        use Overdraw::{Charge, RefuseOnceBelowZero as Strict};
        type Step = (Overdraw, f64, f64, u64);
        let cases: &[(&str, &[Step])] = &[
            (
                "the bucket may go below zero, then refuses until refilled",
                &[
                    (Strict, 15.0, 0.0, 0),
                    (Strict, 10.0, 0.0, 0), // 7 left: taken to -3
                    (Strict, 1.0, 0.0, 1500),
                    (Strict, 1.0, 1.0, 500), // -1 after 1 s
                    (Strict, 1.0, 1.5, 0),   // 0 is not below zero
                    (Strict, 1.0, 1.5, 500),
                ],
            ),
            (
                "one partition at a time: the 23rd still goes, the 24th waits",
                &[
                    (Strict, 22.0, 0.0, 0),
                    (Strict, 1.0, 0.0, 0),
                    (Strict, 1.0, 0.0, 500),
                ],
            ),
            (
                "old versions are never refused, only told to wait",
                &[
                    (Charge, 22.0, 0.0, 0),
                    (Charge, 4.0, 0.0, 2000),
                    (Charge, 1.0, 0.0, 2500),
                ],
            ),
        ];
        for (what, steps) in cases {
            let m = manager();
            let start = Instant::now();
            for (i, (mode, partitions, at, expected_ms)) in steps.iter().enumerate() {
                let now = start + Duration::from_secs_f64(*at);
                let wait = m.record(CONTROLLER_MUTATION_RATE, "m", 2.0, *partitions, now, *mode);
                assert_eq!(
                    wait,
                    Duration::from_millis(*expected_ms),
                    "{what}: step {i}"
                );
            }
        }
    }

    #[test]
    fn fractional_keys_are_stored_in_millionths() {
        assert_eq!(to_stored(REQUEST_PERCENTAGE, 0.5), Some(500_000));
        assert_eq!(to_stored(CONTROLLER_MUTATION_RATE, 2.0), Some(2_000_000));
        assert_eq!(to_stored(PRODUCER_BYTE_RATE, 1024.0), Some(1024));
        assert_eq!(to_stored(REQUEST_PERCENTAGE, f64::INFINITY), None);
        assert_eq!(to_stored(REQUEST_PERCENTAGE, 1e300), None);
        for (key, v) in [(REQUEST_PERCENTAGE, 0.25), (CONTROLLER_MUTATION_RATE, 7.5)] {
            let stored = to_stored(key, v).expect("fits");
            assert_eq!(from_stored(key, stored), v);
        }
        let q = quota(None, Some(None), REQUEST_PERCENTAGE, 1_500_000);
        let (v, _) = resolve(&[q], REQUEST_PERCENTAGE, "u", "c").expect("default");
        assert_eq!(v, 1.5);
    }
}
