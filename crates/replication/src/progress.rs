//! The leader's bookkeeping, with no I/O and no clock: each follower's log
//! end offset, last caught-up time and broker epoch, the high watermark
//! they allow, and which ISR change is due. Time comes in as `Instant`s, so tests pass
//! their own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// -1 until the follower fetched from this leader.
    pub log_end_offset: i64,
    /// The last time the follower had everything the leader had.
    pub last_caught_up: Instant,
    last_fetch: Option<Instant>,
    /// The leader's log end offset at the follower's previous fetch.
    last_fetch_leader_log_end_offset: i64,
    /// The leader's high watermark when the follower's previous fetch was
    /// answered (-1 before its first fetch).
    pub high_watermark_at_fetch: i64,
    /// The broker epoch of the follower's latest fetch (KIP-903); -1 before
    /// its first fetch or while it sends none.
    pub broker_epoch: i64,
}

/// How the broker epoch of a follower fetch relates to the one the leader
/// recorded from that follower's latest fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchBrokerEpoch {
    /// The epoch of the follower's latest fetches.
    Same,
    /// A newer incarnation of the follower (or one that sends no epoch,
    /// -1): it replaces the recorded epoch.
    Changed,
    /// Older than an epoch already seen from this follower: a request of an
    /// earlier incarnation that arrived late. It says nothing about the
    /// follower's log as it is now.
    Stale,
}

impl FollowerProgress {
    /// A follower of a new leader: its position is unknown, and it gets a
    /// whole `replica.lag.time.max.ms` from `now` to show up.
    pub fn new(now: Instant) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: -1,
            last_caught_up: now,
            last_fetch: None,
            last_fetch_leader_log_end_offset: -1,
            high_watermark_at_fetch: -1,
            broker_epoch: -1,
        }
    }

    /// Compares a fetch's broker epoch with the recorded one. -1 (a
    /// follower that does not send its epoch) is never stale.
    pub fn check_broker_epoch(&self, broker_epoch: i64) -> FetchBrokerEpoch {
        if broker_epoch >= 0 && broker_epoch < self.broker_epoch {
            FetchBrokerEpoch::Stale
        } else if broker_epoch == self.broker_epoch {
            FetchBrokerEpoch::Same
        } else {
            FetchBrokerEpoch::Changed
        }
    }

    /// A fetch at `fetch_offset` while the leader's log ends at
    /// `leader_log_end_offset`. As in Kafka: caught up now if it asked for
    /// the end; else caught up at the previous fetch if it now asks for at
    /// least what the leader had then.
    pub fn on_fetch(&mut self, fetch_offset: i64, leader_log_end_offset: i64, now: Instant) {
        if fetch_offset >= leader_log_end_offset {
            self.last_caught_up = self.last_caught_up.max(now);
        } else if let Some(previous) = self.last_fetch {
            if fetch_offset >= self.last_fetch_leader_log_end_offset {
                self.last_caught_up = self.last_caught_up.max(previous);
            }
        }
        self.log_end_offset = fetch_offset;
        self.last_fetch = Some(now);
        self.last_fetch_leader_log_end_offset = leader_log_end_offset;
    }

    /// Kafka's `isCaughtUp`: at the leader's end, or caught up recently.
    pub fn is_caught_up(
        &self,
        leader_log_end_offset: i64,
        now: Instant,
        lag_max: Duration,
    ) -> bool {
        self.log_end_offset == leader_log_end_offset
            || now.saturating_duration_since(self.last_caught_up) <= lag_max
    }
}

/// The number of ISR members the high watermark and acks=all need: the
/// topic's `min.insync.replicas`, but never more than the replication
/// factor (a single-replica topic with the broker default of 2 would
/// otherwise never expose anything).
pub fn effective_min_isr(min_insync_replicas: i32, replication_factor: usize) -> usize {
    (min_insync_replicas.max(1) as usize).min(replication_factor.max(1))
}

/// The high watermark the ISR allows: the minimum log end offset over the
/// leader and every ISR follower, never below `current` (it never moves
/// backwards), and not moving at all while the ISR is smaller than
/// `min_isr` (KIP-966) or an ISR follower's position is unknown.
pub fn high_watermark(
    current: i64,
    leader_id: i32,
    leader_log_end_offset: i64,
    isr: &[i32],
    min_isr: usize,
    followers: &BTreeMap<i32, FollowerProgress>,
) -> i64 {
    if isr.len() < min_isr {
        return current;
    }
    let mut low = leader_log_end_offset;
    for r in isr.iter().filter(|r| **r != leader_id) {
        match followers.get(r) {
            Some(p) if p.log_end_offset >= 0 => low = low.min(p.log_end_offset),
            _ => return current,
        }
    }
    current.max(low)
}

/// ISR members (not the leader) that are not caught up: to be removed.
pub fn lagging_members(
    leader_id: i32,
    leader_log_end_offset: i64,
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
    now: Instant,
    lag_max: Duration,
) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|r| *r != leader_id)
        .filter(|r| match followers.get(r) {
            Some(p) => !p.is_caught_up(leader_log_end_offset, now, lag_max),
            None => false,
        })
        .collect()
}

/// Replicas outside the ISR that may join it: they have everything up to
/// the high watermark and everything since this leader's epoch started.
pub fn joinable_replicas(
    replicas: &[i32],
    isr: &[i32],
    high_watermark: i64,
    leader_epoch_start_offset: i64,
    followers: &BTreeMap<i32, FollowerProgress>,
) -> Vec<i32> {
    replicas
        .iter()
        .copied()
        .filter(|r| !isr.contains(r))
        .filter(|r| {
            followers.get(r).is_some_and(|p| {
                p.log_end_offset >= 0
                    && p.log_end_offset >= high_watermark
                    && p.log_end_offset >= leader_epoch_start_offset
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn followers(list: &[(i32, i64)], now: Instant) -> BTreeMap<i32, FollowerProgress> {
        list.iter()
            .map(|(id, leo)| {
                let mut p = FollowerProgress::new(now);
                p.log_end_offset = *leo;
                (*id, p)
            })
            .collect()
    }

    #[test]
    fn high_watermark_table() {
        let now = Instant::now();
        // (current, leader leo, isr, min isr, followers, expected)
        type Case<'a> = (i64, i64, &'a [i32], usize, &'a [(i32, i64)], i64);
        let cases: &[Case] = &[
            // Single node: the log end offset.
            (0, 10, &[1], 1, &[], 10),
            // The slowest ISR member decides.
            (0, 10, &[1, 2, 3], 1, &[(2, 7), (3, 9)], 7),
            // A replica outside the ISR does not hold it back.
            (0, 10, &[1, 3], 1, &[(2, 0), (3, 9)], 9),
            // Never backwards.
            (8, 10, &[1, 2], 1, &[(2, 5)], 8),
            // An ISR follower never seen since this leader took over: no move.
            (3, 10, &[1, 2], 1, &[(2, -1)], 3),
            (3, 10, &[1, 2], 1, &[], 3),
            // KIP-966: ISR below min.insync.replicas holds the high watermark.
            (4, 10, &[1], 2, &[(2, 10)], 4),
            (4, 10, &[1, 2], 2, &[(2, 10)], 10),
        ];
        for (i, (current, leo, isr, min_isr, f, expected)) in cases.iter().enumerate() {
            let got = high_watermark(*current, 1, *leo, isr, *min_isr, &followers(f, now));
            assert_eq!(got, *expected, "case {i}");
        }
    }

    #[test]
    fn effective_min_isr_is_capped_by_replication_factor() {
        assert_eq!(effective_min_isr(2, 1), 1);
        assert_eq!(effective_min_isr(2, 3), 2);
        assert_eq!(effective_min_isr(0, 3), 1);
        assert_eq!(effective_min_isr(3, 3), 3);
    }

    #[test]
    fn caught_up_time_follows_kafka_rules() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let lag = ms(1000);
        // (fetch offset, leader leo at fetch, at ms, caught up at ms afterwards)
        let steps: &[(i64, i64, u64, u64)] = &[
            (0, 0, 100, 100),   // at the end: caught up now
            (0, 5, 200, 100), // behind; previous leader leo 0 <= 0: caught up at previous fetch (100)
            (5, 9, 300, 200), // reached what the leader had at 200: caught up at 200
            (6, 12, 400, 200), // still behind what the leader had at 300 (9): no change
            (12, 12, 500, 500), // caught up
        ];
        let mut p = FollowerProgress::new(t0);
        for (i, (fetch, leader, at, expected)) in steps.iter().enumerate() {
            p.on_fetch(*fetch, *leader, t0 + ms(*at));
            assert_eq!(p.last_caught_up, t0 + ms(*expected), "step {i}");
        }
        assert!(p.is_caught_up(20, t0 + ms(1500), lag));
        assert!(!p.is_caught_up(20, t0 + ms(1501), lag));
        assert!(
            p.is_caught_up(12, t0 + ms(9000), lag),
            "at the leader's end"
        );
    }

    #[test]
    fn broker_epoch_of_a_fetch_table() {
        use FetchBrokerEpoch::*;
        // (recorded, fetched, expected)
        let cases: &[(i64, i64, FetchBrokerEpoch)] = &[
            // The first fetch from a follower records its epoch.
            (-1, 7, Changed),
            (7, 7, Same),
            // A re-registered follower: the newer epoch replaces the old one.
            (7, 12, Changed),
            // A late request of the earlier incarnation.
            (12, 7, Stale),
            // A follower that sends no epoch (an older version) is never stale.
            (12, -1, Changed),
            (-1, -1, Same),
        ];
        for (i, (recorded, fetched, expected)) in cases.iter().enumerate() {
            let mut p = FollowerProgress::new(Instant::now());
            p.broker_epoch = *recorded;
            assert_eq!(p.check_broker_epoch(*fetched), *expected, "case {i}");
        }
    }

    #[test]
    fn isr_shrink_and_expand_table() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let lag = ms(5000);
        // (followers with leo and last caught up ms, isr, now ms, lagging, joinable at hw 10)
        type Case<'a> = (&'a [(i32, i64, u64)], &'a [i32], u64, &'a [i32], &'a [i32]);
        let cases: &[Case] = &[
            // Everyone fetching at the end.
            (&[(2, 10, 0), (3, 10, 0)], &[1, 2, 3], 9000, &[], &[]),
            // Follower 3 behind and silent longer than the lag bound.
            (&[(2, 10, 6000), (3, 4, 0)], &[1, 2, 3], 6000, &[3], &[]),
            // Behind but within the bound: stays.
            (&[(2, 10, 6000), (3, 4, 2000)], &[1, 2, 3], 6000, &[], &[]),
            // Out of the ISR, reached the high watermark: joins.
            (&[(2, 10, 0), (3, 10, 0)], &[1, 2], 100, &[], &[3]),
            // Out of the ISR, not there yet.
            (&[(2, 10, 0), (3, 9, 0)], &[1, 2], 100, &[], &[]),
        ];
        for (i, (f, isr, now, lagging, joinable)) in cases.iter().enumerate() {
            let map: BTreeMap<i32, FollowerProgress> = f
                .iter()
                .map(|(id, leo, caught)| {
                    let mut p = FollowerProgress::new(t0 + ms(*caught));
                    p.log_end_offset = *leo;
                    (*id, p)
                })
                .collect();
            let got = lagging_members(1, 10, isr, &map, t0 + ms(*now), lag);
            assert_eq!(&got, lagging, "case {i} lagging");
            let got = joinable_replicas(&[1, 2, 3], isr, 10, 0, &map);
            assert_eq!(&got, joinable, "case {i} joinable");
        }
    }
}
