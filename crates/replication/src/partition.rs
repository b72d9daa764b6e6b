//! One partition's replication state on this broker: its view of the
//! metadata (leader, epochs, replicas, ISR), the high watermark, and, while
//! it leads, the followers' progress and any ISR change in flight.
//!
//! The high watermark lives in a `watch` so that acks=all produce requests
//! and offset commits wait on it without polling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::progress::{self, FetchBrokerEpoch, FollowerProgress};

/// What the metadata image says about this partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// Replicas whose broker is fenced: they cannot join the ISR.
    pub fenced: Vec<i32>,
}

impl PartitionView {
    pub fn single(node_id: i32) -> PartitionView {
        PartitionView {
            leader: node_id,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![node_id],
            isr: vec![node_id],
            min_insync_replicas: 1,
            fenced: Vec::new(),
        }
    }

    pub fn min_isr(&self) -> usize {
        progress::effective_min_isr(self.min_insync_replicas, self.replicas.len())
    }
}

/// An ISR change for the controller (`AlterPartition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub isr: Vec<i32>,
    /// The partition epoch the leader works from.
    pub partition_epoch: i32,
    /// For each replica being added, the broker epoch of the fetch that
    /// qualified it (-1: the follower sent none). The controller refuses
    /// the change when it is not the replica's current registration
    /// (KIP-903). Empty for a shrink.
    pub added_broker_epochs: BTreeMap<i32, i64>,
}

/// A follower fetch carried a broker epoch older than one already seen from
/// that replica: a request of an earlier incarnation that arrived late. It
/// is not counted (Kafka answers it with NOT_LEADER_OR_FOLLOWER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stale broker epoch {fetched}; the replica's latest fetch carried {latest}")]
pub struct StaleBrokerEpoch {
    pub fetched: i64,
    pub latest: i64,
}

/// An ISR change decided by the leader and not yet seen in an image. From
/// the moment it is decided the high watermark counts its members (the
/// "maximal ISR"), so a replica being added holds everything committed.
#[derive(Debug, Clone)]
struct PendingIsr {
    isr: Vec<i32>,
    partition_epoch: i32,
    /// See [`IsrChange::added_broker_epochs`]: taken when the expansion is
    /// decided, from the fetch that decided it.
    added_broker_epochs: BTreeMap<i32, i64>,
    since: Instant,
    /// Handed to the ISR loop for sending to the controller.
    sent: bool,
    /// A replica being added is still short of the high watermark: the
    /// high watermark waits for it (it counts already), and the change is
    /// sent only once it has caught up, or dropped after
    /// [`JOIN_CATCH_UP_MAX`].
    catching_up: bool,
}

/// How long the high watermark may wait for a joining replica to catch up.
const JOIN_CATCH_UP_MAX: Duration = Duration::from_secs(2);

/// How long an ISR change may stay unanswered before the leader tries again.
const PENDING_ISR_TIMEOUT: Duration = Duration::from_secs(10);

struct Inner {
    view: PartitionView,
    high_watermark: i64,
    followers: BTreeMap<i32, FollowerProgress>,
    /// The log end offset when this broker became leader in this epoch.
    leader_epoch_start_offset: i64,
    pending_isr: Option<PendingIsr>,
    /// After a joining replica failed to catch up in time, no replica is
    /// waited for again before this.
    join_wait_allowed_after: Option<Instant>,
}

/// Why an acks=all write (or an offset commit) was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitWaitError {
    NotLeader,
    /// The ISR fell below `min.insync.replicas` while waiting.
    NotEnoughReplicasAfterAppend,
    Timeout,
}

pub struct PartitionReplication {
    local_id: i32,
    inner: Mutex<Inner>,
    /// Ticks when the high watermark, the ISR or the leadership changes.
    changed: watch::Sender<u64>,
    /// Held while a follower fetcher truncates or appends, and while the
    /// role changes, so a fetcher working from an old leader never writes
    /// after the partition moved on.
    follower_writes: Mutex<()>,
}

impl PartitionReplication {
    pub fn new(local_id: i32, view: PartitionView, high_watermark: i64) -> PartitionReplication {
        let (changed, _) = watch::channel(0);
        PartitionReplication {
            local_id,
            inner: Mutex::new(Inner {
                view,
                high_watermark: high_watermark.max(0),
                followers: BTreeMap::new(),
                leader_epoch_start_offset: 0,
                pending_isr: None,
                join_wait_allowed_after: None,
            }),
            changed,
            follower_writes: Mutex::new(()),
        }
    }

    pub fn local_id(&self) -> i32 {
        self.local_id
    }

    pub fn view(&self) -> PartitionView {
        self.inner.lock().view.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.inner.lock().view.leader == self.local_id
    }

    pub fn leader_epoch(&self) -> i32 {
        self.inner.lock().view.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.inner.lock().high_watermark
    }

    /// The size of the ISR the metadata image gives (acks=all is refused
    /// up front while it is below `min.insync.replicas`).
    pub fn isr_len(&self) -> usize {
        self.inner.lock().view.isr.len()
    }

    /// While this broker leads: the log end offset when it became leader
    /// in the current epoch. A new leader learns the high watermark from
    /// its followers' fetches; until it reaches this offset, the high
    /// watermark it knows may be below what the previous leader had
    /// already committed.
    pub fn leader_epoch_start_offset(&self) -> Option<i64> {
        let inner = self.inner.lock();
        (inner.view.leader == self.local_id).then_some(inner.leader_epoch_start_offset)
    }

    /// A receiver that sees every change from now on: a leader append,
    /// a high watermark move, a new view (leadership, ISR).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn tick(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Locks out follower writes; see `follower_writes`.
    pub fn lock_follower_writes(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.follower_writes.lock()
    }

    /// A new metadata view. Becoming leader (or a new leader epoch) resets
    /// the followers' progress; the high watermark is recomputed.
    pub fn apply_view(&self, view: PartitionView, log_end_offset: i64, now: Instant) {
        let _writes = self.follower_writes.lock();
        let mut inner = self.inner.lock();
        if inner.view == view {
            return;
        }
        let was_leader = inner.view.leader == self.local_id;
        let leads = view.leader == self.local_id;
        let new_term = !was_leader || inner.view.leader_epoch != view.leader_epoch;
        if inner.view.partition_epoch != view.partition_epoch
            || inner.view.leader_epoch != view.leader_epoch
        {
            inner.pending_isr = None;
        }
        if leads {
            if new_term {
                inner.followers.clear();
                inner.leader_epoch_start_offset = log_end_offset;
            }
            for r in view.replicas.iter().filter(|r| **r != self.local_id) {
                inner
                    .followers
                    .entry(*r)
                    .or_insert_with(|| FollowerProgress::new(now));
            }
            inner.followers.retain(|r, _| view.replicas.contains(r));
        } else {
            inner.followers.clear();
        }
        inner.view = view;
        if leads {
            Self::advance_high_watermark(&mut inner, self.local_id, log_end_offset);
        }
        drop(inner);
        self.tick();
    }

    fn advance_high_watermark(inner: &mut Inner, local_id: i32, log_end_offset: i64) -> bool {
        let mut isr = inner.view.isr.clone();
        // The maximal ISR: a member being added counts already.
        if let Some(p) = &inner.pending_isr {
            for r in &p.isr {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        let min_isr = inner.view.min_isr();
        let next = progress::high_watermark(
            inner.high_watermark,
            local_id,
            log_end_offset,
            &isr,
            min_isr,
            &inner.followers,
        )
        .min(log_end_offset.max(inner.high_watermark));
        if next > inner.high_watermark {
            inner.high_watermark = next;
            true
        } else {
            false
        }
    }

    /// After a leader append. Returns whether the high watermark moved.
    pub fn on_leader_append(&self, log_end_offset: i64) -> bool {
        let mut inner = self.inner.lock();
        if inner.view.leader != self.local_id {
            return false;
        }
        let moved = Self::advance_high_watermark(&mut inner, self.local_id, log_end_offset);
        drop(inner);
        // Every append: followers long-polling this partition have data.
        self.tick();
        moved
    }

    /// A follower whose fetch carried `broker_epoch` fetched at
    /// `fetch_offset`. Returns whether the high watermark moved, or
    /// [`StaleBrokerEpoch`] for a fetch of an earlier incarnation of the
    /// follower, which changes nothing.
    ///
    /// A fetch with a newer broker epoch (the follower registered again)
    /// replaces the recorded one, and what the leader knew from the earlier
    /// incarnation no longer qualifies it to join the ISR: its previous
    /// fetch's high watermark is forgotten and an expansion not yet sent
    /// for it is dropped (one already sent carries the old epoch, which the
    /// controller refuses).
    pub fn on_follower_fetch(
        &self,
        replica_id: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        leader_log_end_offset: i64,
        now: Instant,
    ) -> Result<bool, StaleBrokerEpoch> {
        let mut inner = self.inner.lock();
        if inner.view.leader != self.local_id {
            return Ok(false);
        }
        let high_watermark = inner.high_watermark;
        let Some(p) = inner.followers.get_mut(&replica_id) else {
            return Ok(false);
        };
        let incarnation_changed = match p.check_broker_epoch(broker_epoch) {
            FetchBrokerEpoch::Stale => {
                return Err(StaleBrokerEpoch {
                    fetched: broker_epoch,
                    latest: p.broker_epoch,
                })
            }
            FetchBrokerEpoch::Same => false,
            FetchBrokerEpoch::Changed => {
                p.broker_epoch = broker_epoch;
                p.high_watermark_at_fetch = -1;
                true
            }
        };
        p.on_fetch(
            fetch_offset.min(leader_log_end_offset),
            leader_log_end_offset,
            now,
        );
        let previous = std::mem::replace(&mut p.high_watermark_at_fetch, high_watermark);
        if incarnation_changed
            && inner
                .pending_isr
                .as_ref()
                .is_some_and(|p| !p.sent && p.added_broker_epochs.contains_key(&replica_id))
        {
            inner.pending_isr = None;
        }
        Self::consider_joining(&mut inner, replica_id, previous, now);
        let moved = Self::advance_high_watermark(&mut inner, self.local_id, leader_log_end_offset);
        drop(inner);
        if moved {
            self.tick();
        }
        Ok(moved)
    }

    /// A replica outside the ISR joins once a fetch of its shows it has
    /// everything up to the high watermark and since this leader epoch
    /// began (Kafka's rule), decided under the lock that also guards the
    /// high watermark. Under steady load a follower slower than the others
    /// may never see that moment, since the high watermark moves on with
    /// every fetch of the fastest one; so a replica that reached the high
    /// watermark as it was at its previous fetch becomes a candidate: the
    /// high watermark counts it from then on (it waits at most one of its
    /// fetch rounds, bounded by `JOIN_CATCH_UP_MAX`), and the change goes
    /// to the controller only once the replica has caught up.
    fn consider_joining(
        inner: &mut Inner,
        replica_id: i32,
        high_watermark_at_previous_fetch: i64,
        now: Instant,
    ) {
        let Some((fetched, broker_epoch)) = inner
            .followers
            .get(&replica_id)
            .map(|p| (p.log_end_offset, p.broker_epoch))
        else {
            return;
        };
        if inner.view.isr.contains(&replica_id)
            || inner.view.fenced.contains(&replica_id)
            || fetched < inner.leader_epoch_start_offset
        {
            return;
        }
        let caught_up = progress::joinable_replicas(
            &inner.view.replicas,
            &inner.view.isr,
            inner.high_watermark,
            inner.leader_epoch_start_offset,
            &inner.followers,
        )
        .contains(&replica_id);
        match &mut inner.pending_isr {
            Some(p) if p.catching_up && p.isr.contains(&replica_id) => {
                if caught_up {
                    p.catching_up = false;
                }
            }
            Some(_) => {}
            None => {
                let keeps_pace = high_watermark_at_previous_fetch >= 0
                    && fetched >= high_watermark_at_previous_fetch
                    && inner.join_wait_allowed_after.is_none_or(|t| now >= t);
                if caught_up || keeps_pace {
                    let mut isr = inner.view.isr.clone();
                    isr.push(replica_id);
                    inner.pending_isr = Some(PendingIsr {
                        isr,
                        partition_epoch: inner.view.partition_epoch,
                        added_broker_epochs: BTreeMap::from([(replica_id, broker_epoch)]),
                        since: now,
                        sent: false,
                        catching_up: !caught_up,
                    });
                }
            }
        }
    }

    /// A follower learns the leader's high watermark; its own never passes
    /// its log end offset.
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64, log_end_offset: i64) {
        let mut inner = self.inner.lock();
        if inner.view.leader == self.local_id {
            return;
        }
        let next = leader_high_watermark.min(log_end_offset).max(0);
        if next != inner.high_watermark {
            inner.high_watermark = next;
            drop(inner);
            self.tick();
        }
    }

    /// After a truncation the high watermark cannot stay above the log end.
    pub fn clamp_high_watermark(&self, log_end_offset: i64) {
        let mut inner = self.inner.lock();
        if inner.high_watermark > log_end_offset {
            inner.high_watermark = log_end_offset.max(0);
        }
    }

    /// The ISR change to send now, if any: an expansion decided at a
    /// follower's fetch (see `consider_joining`), else, when none is in
    /// flight, dropping the members that lag. The change is marked in
    /// flight; report the controller's answer with [`Self::isr_change_failed`]
    /// (success shows up as a new view).
    pub fn isr_change_due(
        &self,
        log_end_offset: i64,
        now: Instant,
        lag_max: Duration,
    ) -> Option<IsrChange> {
        let mut inner = self.inner.lock();
        if inner.view.leader != self.local_id {
            return None;
        }
        if let Some(p) = &mut inner.pending_isr {
            if p.catching_up {
                if now.saturating_duration_since(p.since) < JOIN_CATCH_UP_MAX {
                    return None;
                }
                // It did not catch up in time: stop holding the high
                // watermark for it, and do not wait for anyone for a while.
                inner.pending_isr = None;
                inner.join_wait_allowed_after = Some(now + PENDING_ISR_TIMEOUT);
                return None;
            }
            if !p.sent {
                p.sent = true;
                p.since = now;
                return Some(IsrChange {
                    isr: p.isr.clone(),
                    partition_epoch: p.partition_epoch,
                    added_broker_epochs: p.added_broker_epochs.clone(),
                });
            }
            if now.saturating_duration_since(p.since) < PENDING_ISR_TIMEOUT {
                return None;
            }
            inner.pending_isr = None;
        }
        let lagging = progress::lagging_members(
            self.local_id,
            log_end_offset,
            &inner.view.isr,
            &inner.followers,
            now,
            lag_max,
        );
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = inner
            .view
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        let partition_epoch = inner.view.partition_epoch;
        inner.pending_isr = Some(PendingIsr {
            isr: isr.clone(),
            partition_epoch,
            added_broker_epochs: BTreeMap::new(),
            since: now,
            sent: true,
            catching_up: false,
        });
        Some(IsrChange {
            isr,
            partition_epoch,
            added_broker_epochs: BTreeMap::new(),
        })
    }

    /// The controller refused the change sent at `partition_epoch`.
    pub fn isr_change_failed(&self, partition_epoch: i32) {
        let mut inner = self.inner.lock();
        if inner
            .pending_isr
            .as_ref()
            .is_some_and(|p| p.partition_epoch == partition_epoch)
        {
            inner.pending_isr = None;
        }
    }

    /// Waits until `last_offset`, appended by this broker as leader in
    /// `leader_epoch`, is below the high watermark (committed).
    ///
    /// Fails with `NotLeader` once this broker no longer leads in that
    /// epoch, also when it leads again in a later one: in between it
    /// followed another leader and may have truncated the records and
    /// stored others at the same offsets, which the high watermark then
    /// commits. (Found by the deterministic simulation, `crates/sim`, with
    /// a waiter that ran late across such a round trip.)
    pub async fn wait_committed(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        deadline: tokio::time::Instant,
    ) -> Result<(), CommitWaitError> {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            {
                let inner = self.inner.lock();
                if inner.view.leader != self.local_id || inner.view.leader_epoch != leader_epoch {
                    return Err(CommitWaitError::NotLeader);
                }
                if inner.high_watermark > last_offset {
                    return Ok(());
                }
                if inner.view.isr.len() < inner.view.min_isr() {
                    return Err(CommitWaitError::NotEnoughReplicasAfterAppend);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(CommitWaitError::Timeout),
                r = changed.changed() => if r.is_err() { return Err(CommitWaitError::NotLeader) },
            }
        }
    }

    /// For the leader's periodic report: each replica outside the ISR with
    /// its last fetch offset (-1 before its first fetch), against the high
    /// watermark and the offset this leader epoch started at, both of which
    /// it must reach to join.
    pub fn replicas_outside_isr(&self) -> Vec<(i32, i64, i64, i64)> {
        let inner = self.inner.lock();
        if inner.view.leader != self.local_id {
            return Vec::new();
        }
        inner
            .view
            .replicas
            .iter()
            .filter(|r| !inner.view.isr.contains(r))
            .map(|r| {
                let fetched = inner.followers.get(r).map_or(-1, |p| p.log_end_offset);
                (
                    *r,
                    fetched,
                    inner.high_watermark,
                    inner.leader_epoch_start_offset,
                )
            })
            .collect()
    }

    /// The leader's current follower positions, for tests and diagnostics.
    pub fn follower_log_end_offsets(&self) -> BTreeMap<i32, i64> {
        self.inner
            .lock()
            .followers
            .iter()
            .map(|(r, p)| (*r, p.log_end_offset))
            .collect()
    }
}

/// Resolves when any of `watched` (partition receivers from
/// [`PartitionReplication::subscribe`]) sees a change, or its partition
/// went away. A long-polling fetch waits on the partitions it reads only,
/// so appends to other partitions never wake it. Never resolves for none.
pub async fn any_changed(watched: &mut [watch::Receiver<u64>]) {
    if watched.is_empty() {
        return std::future::pending().await;
    }
    let mut waits: Vec<_> = watched
        .iter_mut()
        .map(|rx| Box::pin(rx.changed()))
        .collect();
    std::future::poll_fn(|cx| {
        for wait in waits.iter_mut() {
            if std::future::Future::poll(wait.as_mut(), cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: i32, epoch: i32, isr: &[i32], min_isr: i32) -> PartitionView {
        PartitionView {
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            min_insync_replicas: min_isr,
            fenced: Vec::new(),
        }
    }

    /// The broker epoch of every follower's fetches, unless a test says otherwise.
    const BROKER_EPOCH: i64 = 10;

    fn fetch(
        p: &PartitionReplication,
        replica: i32,
        offset: i64,
        leader_end: i64,
        at: Instant,
    ) -> bool {
        p.on_follower_fetch(replica, BROKER_EPOCH, offset, leader_end, at)
            .expect("the replica's current broker epoch")
    }

    /// The ISR change due, as (ISR, partition epoch).
    fn due(
        p: &PartitionReplication,
        leader_end: i64,
        at: Instant,
        lag: Duration,
    ) -> Option<(Vec<i32>, i32)> {
        p.isr_change_due(leader_end, at, lag)
            .map(|c| (c.isr, c.partition_epoch))
    }

    #[test]
    fn leader_high_watermark_follows_the_isr() {
        let now = Instant::now();
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2, 3], 2), 0);
        p.apply_view(view(1, 1, &[1, 2, 3], 2), 0, now);
        assert!(!p.on_leader_append(10), "followers not seen yet");
        assert!(!fetch(&p, 2, 10, 10, now));
        assert!(fetch(&p, 3, 6, 10, now));
        assert_eq!(p.high_watermark(), 6);
        assert!(fetch(&p, 3, 10, 10, now));
        assert_eq!(p.high_watermark(), 10);
        // Losing leadership then getting it back never lowers it.
        p.apply_view(view(2, 2, &[1, 2, 3], 2), 10, now);
        p.apply_view(view(1, 3, &[1, 2, 3], 2), 10, now);
        assert_eq!(p.high_watermark(), 10);
    }

    #[test]
    fn isr_below_min_holds_the_high_watermark() {
        let now = Instant::now();
        let p = PartitionReplication::new(1, view(1, 1, &[1, 2], 2), 0);
        p.apply_view(view(1, 2, &[1, 2], 2), 0, now);
        fetch(&p, 2, 5, 5, now);
        assert_eq!(p.high_watermark(), 5);
        p.apply_view(view(1, 2, &[1], 2).with_partition_epoch(3), 5, now);
        p.on_leader_append(9);
        assert_eq!(p.high_watermark(), 5, "KIP-966");
    }

    #[test]
    fn shrink_then_expand_go_one_at_a_time() {
        let t0 = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2, 3], 1), 0);
        p.apply_view(view(1, 1, &[1, 2, 3], 1), 0, t0);
        p.on_leader_append(10);
        let t = t0 + Duration::from_millis(1000);
        fetch(&p, 2, 10, 10, t);
        fetch(&p, 3, 2, 10, t);
        assert_eq!(due(&p, 10, t, lag), None);
        let late = t0 + Duration::from_millis(5001);
        assert_eq!(due(&p, 10, late, lag), Some((vec![1, 2], 1)));
        assert_eq!(due(&p, 10, late, lag), None, "one change in flight");
        p.isr_change_failed(1);
        assert_eq!(due(&p, 10, late, lag), Some((vec![1, 2], 1)));
        p.apply_view(view(1, 1, &[1, 2], 1).with_partition_epoch(2), 10, late);
        assert_eq!(p.high_watermark(), 10);
        fetch(&p, 3, 10, 10, late);
        assert_eq!(due(&p, 10, late, lag), Some((vec![1, 2, 3], 2)));
    }

    #[test]
    fn a_follower_that_reaches_the_high_watermark_joins_even_if_it_moves_on() {
        let t = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2], 2), 0);
        p.apply_view(view(1, 1, &[1, 2], 2), 0, t);
        p.on_leader_append(10);
        fetch(&p, 2, 10, 10, t);
        assert_eq!(p.high_watermark(), 10);
        p.on_leader_append(20);
        // Replica 3 fetches at the high watermark, then replica 2 runs ahead
        // before the ISR loop looks: 3 still joins.
        fetch(&p, 3, 10, 20, t);
        fetch(&p, 2, 20, 20, t);
        assert_eq!(
            p.high_watermark(),
            10,
            "a joining replica holds the high watermark back"
        );
        assert_eq!(due(&p, 20, t, lag), Some((vec![1, 2, 3], 1)));
        assert_eq!(due(&p, 20, t, lag), None, "sent once");
        fetch(&p, 3, 20, 20, t);
        assert_eq!(p.high_watermark(), 20);
    }

    #[test]
    fn a_follower_one_round_behind_a_faster_one_still_joins() {
        let t = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2], 2), 0);
        p.apply_view(view(1, 1, &[1, 2], 2), 0, t);
        // Replica 2 always fetches at the leader's end, replica 3 one round
        // later: its offset is never the high watermark of the moment.
        p.on_leader_append(10);
        fetch(&p, 2, 10, 10, t);
        fetch(&p, 3, 0, 10, t);
        assert_eq!(due(&p, 10, t, lag), None);
        p.on_leader_append(20);
        fetch(&p, 2, 20, 20, t);
        fetch(&p, 3, 10, 20, t);
        // It reached where the high watermark was at its previous fetch:
        // the high watermark now waits for it, the change is not sent yet.
        assert_eq!(due(&p, 20, t, lag), None, "not caught up yet");
        p.on_leader_append(30);
        fetch(&p, 2, 30, 30, t);
        assert_eq!(p.high_watermark(), 20, "held for the joining replica");
        fetch(&p, 3, 20, 30, t);
        assert_eq!(due(&p, 30, t, lag), Some((vec![1, 2, 3], 1)));
    }

    #[test]
    fn a_joining_replica_that_stalls_stops_holding_the_high_watermark() {
        let t = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2], 2), 0);
        p.apply_view(view(1, 1, &[1, 2], 2), 0, t);
        p.on_leader_append(10);
        fetch(&p, 2, 10, 10, t);
        fetch(&p, 3, 5, 10, t);
        p.on_leader_append(20);
        fetch(&p, 2, 20, 20, t);
        fetch(&p, 3, 10, 20, t);
        p.on_leader_append(30);
        fetch(&p, 2, 30, 30, t);
        assert_eq!(p.high_watermark(), 20, "held for replica 3");
        let later = t + JOIN_CATCH_UP_MAX + Duration::from_millis(1);
        assert_eq!(due(&p, 30, later, lag), None);
        fetch(&p, 2, 30, 30, later);
        assert_eq!(p.high_watermark(), 30, "released");
    }

    #[test]
    fn a_fetch_with_a_stale_broker_epoch_changes_nothing() {
        let t = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2], 2), 0);
        p.apply_view(view(1, 1, &[1, 2], 2), 0, t);
        p.on_leader_append(10);
        fetch(&p, 2, 10, 10, t);
        assert_eq!(p.high_watermark(), 10);
        // Replica 3 restarted (broker epoch 20) with an empty log; then a
        // fetch its previous incarnation (epoch 10) sent at offset 10
        // arrives late. It must not make replica 3 look caught up.
        assert_eq!(p.on_follower_fetch(3, 20, 0, 10, t), Ok(false));
        assert_eq!(
            p.on_follower_fetch(3, 10, 10, 10, t),
            Err(StaleBrokerEpoch {
                fetched: 10,
                latest: 20
            })
        );
        assert_eq!(p.follower_log_end_offsets().get(&3), Some(&0));
        assert_eq!(p.isr_change_due(10, t, lag), None, "no expansion");
        // Its current incarnation catches up: the expansion carries epoch 20.
        assert_eq!(p.on_follower_fetch(3, 20, 10, 10, t), Ok(false));
        assert_eq!(
            p.isr_change_due(10, t, lag),
            Some(IsrChange {
                isr: vec![1, 2, 3],
                partition_epoch: 1,
                added_broker_epochs: BTreeMap::from([(3, 20)]),
            })
        );
    }

    #[test]
    fn a_newer_broker_epoch_replaces_the_recorded_one() {
        let t = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2], 2), 0);
        p.apply_view(view(1, 1, &[1, 2], 2), 0, t);
        // Replica 3 (epoch 10) keeps pace one round behind replica 2 and
        // becomes a candidate the high watermark waits for.
        p.on_leader_append(10);
        fetch(&p, 2, 10, 10, t);
        assert_eq!(p.on_follower_fetch(3, 10, 0, 10, t), Ok(false));
        p.on_leader_append(20);
        fetch(&p, 2, 20, 20, t);
        assert_eq!(p.on_follower_fetch(3, 10, 10, 20, t), Ok(false));
        p.on_leader_append(30);
        fetch(&p, 2, 30, 30, t);
        assert_eq!(p.high_watermark(), 20, "held for the candidate");
        // It restarts and registers again (epoch 25) with a shorter log: the
        // candidacy earned by the earlier incarnation is dropped.
        assert_eq!(
            p.on_follower_fetch(3, 25, 5, 30, t),
            Ok(true),
            "the high watermark is no longer held"
        );
        assert_eq!(p.high_watermark(), 30);
        assert_eq!(p.follower_log_end_offsets().get(&3), Some(&5));
        assert_eq!(p.isr_change_due(30, t, lag), None);
        // The earlier incarnation's epoch is stale from now on.
        assert_eq!(
            p.on_follower_fetch(3, 10, 30, 30, t),
            Err(StaleBrokerEpoch {
                fetched: 10,
                latest: 25
            })
        );
        assert_eq!(p.follower_log_end_offsets().get(&3), Some(&5));
        // Caught up under its new epoch, it joins with that epoch.
        assert_eq!(p.on_follower_fetch(3, 25, 30, 30, t), Ok(false));
        assert_eq!(
            p.isr_change_due(30, t, lag),
            Some(IsrChange {
                isr: vec![1, 2, 3],
                partition_epoch: 1,
                added_broker_epochs: BTreeMap::from([(3, 25)]),
            })
        );
    }

    #[test]
    fn a_shrink_carries_no_broker_epochs() {
        let t0 = Instant::now();
        let lag = Duration::from_millis(5000);
        let p = PartitionReplication::new(1, view(1, 0, &[1, 2, 3], 1), 0);
        p.apply_view(view(1, 1, &[1, 2, 3], 1), 0, t0);
        p.on_leader_append(10);
        fetch(&p, 2, 10, 10, t0);
        let late = t0 + Duration::from_millis(5001);
        assert_eq!(
            p.isr_change_due(10, late, lag),
            Some(IsrChange {
                isr: vec![1, 2],
                partition_epoch: 1,
                added_broker_epochs: BTreeMap::new(),
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn commit_wait_outcomes() {
        let now = Instant::now();
        let p = std::sync::Arc::new(PartitionReplication::new(1, view(1, 1, &[1, 2], 2), 0));
        p.apply_view(view(1, 2, &[1, 2], 2), 0, now);
        p.on_leader_append(5);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_committed(4, 2, deadline).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        fetch(&p, 2, 5, 5, now);
        assert_eq!(waiter.await.ok(), Some(Ok(())));
        p.on_leader_append(8);
        assert_eq!(
            p.wait_committed(7, 2, deadline).await,
            Err(CommitWaitError::Timeout)
        );
        p.apply_view(view(1, 2, &[1], 2).with_partition_epoch(3), 8, now);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
        assert_eq!(
            p.wait_committed(7, 2, deadline).await,
            Err(CommitWaitError::NotEnoughReplicasAfterAppend)
        );
        p.apply_view(view(2, 3, &[2], 2), 8, now);
        assert_eq!(
            p.wait_committed(7, 2, deadline).await,
            Err(CommitWaitError::NotLeader)
        );
    }

    /// Replication simulation seed 82: a waiter that runs only after its
    /// broker lost leadership, followed the new leader (truncating the
    /// waiter's records) and leads again must not see the records now at
    /// those offsets committed as its own.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_of_an_earlier_leadership_fails_when_leading_again() {
        let now = Instant::now();
        let p = PartitionReplication::new(1, view(1, 1, &[1, 2], 2), 0);
        p.apply_view(view(1, 2, &[1, 2], 2), 0, now);
        p.on_leader_append(10);
        // Broker 2 leads epoch 3; broker 1 follows it, truncates and
        // stores broker 2's records; then leads again in epoch 4 and the
        // high watermark passes offset 9.
        p.apply_view(view(2, 3, &[2, 1], 2), 10, now);
        p.apply_view(view(1, 4, &[1, 2], 2), 12, now);
        p.on_leader_append(12);
        fetch(&p, 2, 12, 12, now);
        assert_eq!(p.high_watermark(), 12);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
        assert_eq!(
            p.wait_committed(9, 2, deadline).await,
            Err(CommitWaitError::NotLeader),
            "appended in epoch 2"
        );
        assert_eq!(p.wait_committed(11, 4, deadline).await, Ok(()));
    }

    impl PartitionView {
        fn with_partition_epoch(mut self, e: i32) -> PartitionView {
            self.partition_epoch = e;
            self
        }
    }
}
