//! The consumer-group coordinator (Kafka's classic group protocol).
//!
//! A group belongs to one partition of `__consumer_offsets`:
//! `abs(java_hash(group_id)) % offsets.topic.num.partitions`. Its
//! coordinator is whichever broker leads that partition, and everything the
//! coordinator knows (committed offsets, membership after each rebalance)
//! is written to that partition as Kafka-format records ([`records`]).
//! A broker that becomes leader of an offsets partition rebuilds the
//! partition's groups by replaying it ([`GroupCoordinator::load_partitions`],
//! through the shared [`crate::runtime::Shards`]),
//! so once partitions are replicated a new leader takes over the groups of
//! a failed one with nothing else to copy.
//!
//! Each group is a state machine ([`state::Group`]) that returns effects;
//! [`GroupCoordinator::settle`] carries them out: it answers waiting
//! JoinGroup/SyncGroup requests through the oneshot senders it keeps
//! beside the group ([`GroupSlot`]), writes the group's record, and arms
//! the group's wake-up in the runtime's [`Timers`].
//!
//! Locks: the group table is a `parking_lot::RwLock` of per-group
//! `parking_lot::Mutex`es. Neither is held across `.await`. Appends to
//! `__consumer_offsets` are synchronous writes done under the group's lock,
//! so a group's records are stored in the order its state changed.
//!
//! Timers: one task ([`run`]) wakes each group when its next deadline
//! (initial rebalance delay, rebalance timeout, a session's end) is due,
//! checks offset retention every `offsets.retention.check.interval.ms`,
//! and syncs the loaded partitions with leadership every [`TICK`] or when
//! a request asks for it.
//!
//! The log is reached only through [`CoordinatorLog`]; creating the topic
//! and telling clients where a coordinator is are the broker's business.

pub mod records;
mod requests;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kraftwerk_types::ErrorCode;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::runtime::{replay_records, Shards, Timers, LOAD_WAIT};
use crate::{now_ms, CoordinatorLog};
use records::{OffsetValue, RecordKey};
use state::{Effect, Group, GroupSettings, GroupState, Waiter};

pub use requests::{
    FetchedOffsets, GroupDescription, LeavingMember, ListedGroup, MemberDescription, SyncRequest,
};
pub use state::{JoinRequest, JoinResult, Reply, SyncResult};

/// Kafka's internal topic for offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often the timer task syncs the loaded partitions with leadership.
pub const TICK: Duration = Duration::from_millis(100);
/// How soon a group whose record could not be written is written again.
const STORE_RETRY: Duration = Duration::from_millis(500);
/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// Topics of a `consumer` protocol subscription (member metadata).
pub fn parse_subscription(metadata: &Bytes) -> Option<Vec<String>> {
    if metadata.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]).clamp(0, 3);
    let mut body = metadata.slice(2..);
    let sub = ConsumerProtocolSubscription::decode(&mut body, version).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Broker settings of the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub offsets_partitions: i32,
    pub offsets_replication_factor: i16,
    pub offsets_segment_bytes: i64,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offsets_commit_timeout_ms: u64,
    pub group: GroupSettings,
}

impl CoordinatorConfig {
    pub fn from_broker(config: &kraftwerk_types::BrokerConfig) -> CoordinatorConfig {
        let num = |key: &str| -> i64 {
            config
                .value_of(key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        CoordinatorConfig {
            offsets_partitions: num("offsets.topic.num.partitions").clamp(1, 1000) as i32,
            offsets_replication_factor: num("offsets.topic.replication.factor").clamp(1, 100)
                as i16,
            offsets_segment_bytes: num("offsets.topic.segment.bytes").max(1024),
            offsets_retention_ms: num("offsets.retention.minutes").max(1) * 60_000,
            offsets_retention_check_interval_ms: num("offsets.retention.check.interval.ms").max(1)
                as u64,
            offsets_commit_timeout_ms: num("offsets.commit.timeout.ms").max(1) as u64,
            group: GroupSettings {
                min_session_timeout_ms: num("group.min.session.timeout.ms") as i32,
                max_session_timeout_ms: num("group.max.session.timeout.ms") as i32,
                initial_rebalance_delay_ms: num("group.initial.rebalance.delay.ms").max(0) as i32,
            },
        }
    }
}

/// A group and the requests waiting for its answers.
pub struct GroupSlot {
    pub group: Group,
    joins: HashMap<Waiter, oneshot::Sender<JoinResult>>,
    syncs: HashMap<Waiter, oneshot::Sender<SyncResult>>,
}

impl GroupSlot {
    fn new(group: Group) -> GroupSlot {
        GroupSlot {
            group,
            joins: HashMap::new(),
            syncs: HashMap::new(),
        }
    }
}

impl Deref for GroupSlot {
    type Target = Group;
    fn deref(&self) -> &Group {
        &self.group
    }
}

impl DerefMut for GroupSlot {
    fn deref_mut(&mut self) -> &mut Group {
        &mut self.group
    }
}

/// An answer now, or one a group's effect will send. Dropping the slot
/// (the partition was unloaded) closes the channel: NOT_COORDINATOR.
pub(crate) enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// An answer now, or a channel for the one a later effect sends, whose
/// sender is kept in `senders` under the waiter's id.
fn keep_sender<T>(senders: &mut HashMap<Waiter, oneshot::Sender<T>>, reply: Reply<T>) -> Answer<T> {
    match reply {
        Reply::Now(r) => Answer::Now(r),
        Reply::Later(waiter) => {
            let (tx, rx) = oneshot::channel();
            senders.insert(waiter, tx);
            Answer::Later(rx)
        }
    }
}

type GroupRef = Arc<Mutex<GroupSlot>>;

pub struct GroupCoordinator {
    pub config: CoordinatorConfig,
    groups: RwLock<HashMap<String, GroupRef>>,
    /// The `__consumer_offsets` partitions loaded here.
    shards: Shards,
    /// Each group's next wake-up, by group id.
    timers: Timers<String>,
    /// The broker's: answers still waiting when it fires say the
    /// coordinator is going away.
    shutdown: CancellationToken,
}

/// A group a handler may act on: loaded here and led here.
pub struct Owned {
    pub partition: i32,
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig, shutdown: CancellationToken) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: RwLock::new(HashMap::new()),
            shards: Shards::new(OFFSETS_TOPIC),
            timers: Timers::default(),
            shutdown,
        }
    }

    /// Asks the timer task to load the partitions led here now rather than
    /// at its next tick (a client is looking for its coordinator).
    pub fn request_load(&self) {
        self.shards.want_sync();
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_of(&self, log: &dyn CoordinatorLog, group_id: &str) -> i32 {
        partition_for(group_id, self.partition_count(log))
    }

    fn partition_count(&self, log: &dyn CoordinatorLog) -> i32 {
        // The topic as created wins over the config (which may have changed since).
        log.partition_count(OFFSETS_TOPIC)
            .filter(|n| *n > 0)
            .unwrap_or(self.config.offsets_partitions)
    }

    /// The offsets partition of `group_id` as the topic exists now.
    fn offsets_partition(log: &dyn CoordinatorLog, group_id: &str) -> Result<i32, ErrorCode> {
        if group_id.is_empty() {
            return Err(ErrorCode::INVALID_GROUP_ID);
        }
        let Some(count) = log.partition_count(OFFSETS_TOPIC) else {
            return Err(ErrorCode::NOT_COORDINATOR);
        };
        Ok(partition_for(group_id, count))
    }

    /// Whether this broker coordinates `group_id` right now.
    pub fn owns(&self, log: &dyn CoordinatorLog, group_id: &str) -> Result<Owned, ErrorCode> {
        let p = Self::offsets_partition(log, group_id)?;
        self.shards.check(log, p).map(|_| Owned { partition: p })
    }

    /// [`Self::owns`], but while this broker is still loading the group's
    /// offsets partition (or still creating its replica of a partition the
    /// metadata just made it lead) the request waits for the load, up to
    /// [`LOAD_WAIT`], instead of being answered COORDINATOR_LOAD_IN_PROGRESS
    /// at once. Clients retry that answer only a few times, quickly: a
    /// group's first commit right after `__consumer_offsets` was created
    /// failed on a busy machine.
    pub async fn owns_loaded(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
    ) -> Result<Owned, ErrorCode> {
        let p = Self::offsets_partition(log, group_id)?;
        self.shards
            .check_loaded(log, p, LOAD_WAIT)
            .await
            .map(|_| Owned { partition: p })
    }

    pub fn group(&self, group_id: &str) -> Option<GroupRef> {
        self.groups.read().get(group_id).cloned()
    }

    pub fn group_or_new(&self, group_id: &str) -> GroupRef {
        if let Some(g) = self.group(group_id) {
            return g;
        }
        self.groups
            .write()
            .entry(group_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(GroupSlot::new(Group::new(group_id, now_ms())))))
            .clone()
    }

    /// Groups on the partitions this broker coordinates.
    pub fn all_groups(&self) -> Vec<GroupRef> {
        self.groups.read().values().cloned().collect()
    }

    pub fn remove_group(&self, group_id: &str) {
        self.groups.write().remove(group_id);
        self.timers.cancel(&group_id.to_string());
    }

    /// Keeps the sender of a JoinGroup the group answers later.
    pub(crate) fn wait_join(slot: &mut GroupSlot, reply: Reply<JoinResult>) -> Answer<JoinResult> {
        keep_sender(&mut slot.joins, reply)
    }

    /// Keeps the sender of a SyncGroup the group answers later.
    pub(crate) fn wait_sync(slot: &mut GroupSlot, reply: Reply<SyncResult>) -> Answer<SyncResult> {
        keep_sender(&mut slot.syncs, reply)
    }

    /// Carries out what the group's last calls asked for, under its lock:
    /// answers, the group's record, its next wake-up. Returns where the
    /// leader's assignment was written (its log offset and generation):
    /// the caller waits for that record to be committed and then calls
    /// [`Group::finish_sync`]. A record that could not be written is
    /// written again at a wake-up [`STORE_RETRY`] later; an assignment
    /// that could not be written fails the rebalance at once.
    pub(crate) fn settle(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        slot: &mut GroupSlot,
    ) -> Option<(i64, i32)> {
        let mut assignment = None;
        loop {
            let effects = slot.group.take_effects();
            if effects.is_empty() {
                return assignment;
            }
            for effect in effects {
                match effect {
                    Effect::Join(waiter, result) => {
                        if let Some(tx) = slot.joins.remove(&waiter) {
                            // The client may have gone; nothing to do then.
                            let _ = tx.send(result);
                        }
                    }
                    Effect::Sync(waiter, result) => {
                        if let Some(tx) = slot.syncs.remove(&waiter) {
                            let _ = tx.send(result);
                        }
                    }
                    Effect::Store => {
                        if let Err(code) = self.store_group(log, partition, &slot.group) {
                            tracing::debug!(group = %slot.group_id, code = code.code(), "group metadata will be written again");
                            slot.group.mark_dirty();
                            let retry = Instant::now() + STORE_RETRY;
                            self.timers.arm(slot.group_id.clone(), retry);
                        }
                    }
                    Effect::StoreAssignment { generation } => {
                        match self.store_group(log, partition, &slot.group) {
                            Ok(offset) => assignment = Some((offset, generation)),
                            Err(e) => slot.group.finish_sync(Err(e), Instant::now(), now_ms()),
                        }
                    }
                    Effect::Timer(at) => self.timers.arm(slot.group_id.clone(), at),
                }
            }
        }
    }

    /// Appends records to an offsets partition this broker leads, as one
    /// v2 batch. Returns the offset of the last record.
    pub fn append(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<i64, ErrorCode> {
        if records.is_empty() {
            return Ok(-1);
        }
        self.append_batch(log, partition, crate::encode_batch(records, None)?)
    }

    /// Appends an encoded batch to an offsets partition led here.
    pub(crate) fn append_batch(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        batch: Bytes,
    ) -> Result<i64, ErrorCode> {
        log.append(OFFSETS_TOPIC, partition, batch).map_err(|e| {
            tracing::warn!(
                partition,
                code = e.code(),
                "append to {OFFSETS_TOPIC} failed"
            );
            crate::append_error(e)
        })
    }

    /// Waits until `offset` of an offsets partition is committed (below the
    /// high watermark), at most `offsets.commit.timeout.ms`. On a single
    /// node the high watermark is the log end offset, so this returns at
    /// once; with replication it waits for the ISR, as acks=all does.
    pub async fn await_committed(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        offset: i64,
    ) -> Result<(), ErrorCode> {
        if offset < 0 {
            return Ok(());
        }
        let deadline =
            Instant::now() + Duration::from_millis(self.config.offsets_commit_timeout_ms);
        let result = tokio::select! {
            r = log.wait_committed(OFFSETS_TOPIC, partition, offset, deadline) => r,
            _ = self.shutdown.cancelled() => return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        };
        result.map_err(crate::commit_error)
    }

    pub fn store_group(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        group: &Group,
    ) -> Result<i64, ErrorCode> {
        let value =
            (group.state != GroupState::Dead).then(|| records::group_value(&group.stored_value()));
        self.append(log, partition, vec![(records::group_key(&group.group_id), value)])
            .inspect_err(|e| {
                tracing::warn!(group = %group.group_id, code = e.code(), "storing group metadata failed");
            })
    }

    /// Loads offsets partitions this broker leads but has not loaded, and
    /// unloads the ones it no longer leads.
    pub async fn load_partitions(&self, log: &Arc<dyn CoordinatorLog>) {
        self.shards
            .sync(
                log,
                replay,
                |partition, leader_epoch, groups: Vec<Group>| {
                    let n = groups.len();
                    let mut table = self.groups.write();
                    for g in groups {
                        let mut slot = GroupSlot::new(g);
                        // Restored sessions start now: arm their ends.
                        self.settle(&**log, partition, &mut slot);
                        table.insert(slot.group_id.clone(), Arc::new(Mutex::new(slot)));
                    }
                    if n > 0 {
                        tracing::info!(
                            partition,
                            leader_epoch,
                            groups = n,
                            "loaded {OFFSETS_TOPIC} partition"
                        );
                    }
                },
                |partitions, count| self.unload(partitions, count),
            )
            .await;
    }

    fn unload(&self, partitions: &[i32], count: i32) {
        let mut table = self.groups.write();
        let gone: Vec<String> = table
            .keys()
            .filter(|g| partitions.contains(&partition_for(g, count)))
            .cloned()
            .collect();
        // Dropping a slot drops its waiters' senders: they are answered
        // NOT_COORDINATOR, and their clients look for the new coordinator.
        for g in gone {
            table.remove(&g);
            self.timers.cancel(&g);
        }
    }

    /// Wakes the groups whose deadlines are due.
    pub fn fire(&self, log: &dyn CoordinatorLog, due: Vec<String>) {
        let count = self.partition_count(log);
        for group_id in due {
            let Some(group) = self.group(&group_id) else {
                continue;
            };
            let mut slot = group.lock();
            slot.group
                .tick(&self.config.group, Instant::now(), now_ms());
            self.settle(log, partition_for(&group_id, count), &mut slot);
        }
    }

    /// Deletes offsets of empty groups past `offsets.retention.minutes`,
    /// and empty groups left without offsets.
    pub fn expire_offsets(&self, log: &dyn CoordinatorLog) {
        let now_ms = now_ms();
        let count = self.partition_count(log);
        for group in self.all_groups() {
            let mut g = group.lock();
            let expired = g.expired_offsets(now_ms, self.config.offsets_retention_ms);
            let p = partition_for(&g.group_id, count);
            if !expired.is_empty() {
                let tombstones = expired
                    .iter()
                    .map(|(t, part)| (records::offset_key(&g.group_id, t, *part), None))
                    .collect();
                if self.append(log, p, tombstones).is_err() {
                    continue;
                }
                for k in &expired {
                    g.offsets.remove(k);
                }
                tracing::info!(group = %g.group_id, offsets = expired.len(), "expired committed offsets");
            }
            if g.state == GroupState::Empty
                && g.offsets.is_empty()
                && g.pending_offsets.is_empty()
                && g.txn_offsets.is_empty()
                && g.is_empty()
            {
                g.mark_dead(now_ms);
                if g.generation > 0 && self.store_group(log, p, &g).is_err() {
                    continue;
                }
                let id = g.group_id.clone();
                drop(g);
                self.remove_group(&id);
            }
        }
    }
}

/// Rebuilds the groups of one offsets partition from its log.
fn replay(log: &dyn CoordinatorLog, partition: i32) -> Result<Vec<Group>, String> {
    let now = Instant::now();
    let mut offsets: HashMap<String, BTreeMap<(String, i32), OffsetValue>> = HashMap::new();
    let mut metadata: HashMap<String, Option<records::GroupValue>> = HashMap::new();
    type TxnOffset = (String, (String, i32), OffsetValue);
    let mut txn_offsets: HashMap<i64, Vec<TxnOffset>> = HashMap::new();
    replay_records(log, OFFSETS_TOPIC, partition, |r| {
        if r.control {
            // A transaction marker: its offsets become committed
            // (COMMIT) or are dropped.
            let commit = r.key.as_deref().is_some_and(|k| {
                k.len() >= 4
                    && i16::from_be_bytes([k[2], k[3]]) == kraftwerk_protocol::batch::CONTROL_COMMIT
            });
            for (group, key, value) in txn_offsets.remove(&r.producer_id).unwrap_or_default() {
                if commit {
                    offsets.entry(group).or_default().insert(key, value);
                }
            }
            return;
        }
        let Some(key) = r.key else { return };
        if r.transactional {
            // An offset of an open transaction (TxnOffsetCommit).
            if let (
                Ok(RecordKey::Offset {
                    group,
                    topic,
                    partition: tp,
                }),
                Some(Ok(v)),
            ) = (
                records::decode_key(&key),
                r.value.as_deref().map(records::decode_offset_value),
            ) {
                txn_offsets
                    .entry(r.producer_id)
                    .or_default()
                    .push((group, (topic, tp), v));
            }
            return;
        }
        let key = match records::decode_key(&key) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(partition, offset = r.offset, error = %e, "skipping unreadable key");
                return;
            }
        };
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition: tp,
            } => {
                let entry = offsets.entry(group).or_default();
                match r.value.as_deref().map(records::decode_offset_value) {
                    None => {
                        entry.remove(&(topic, tp));
                    }
                    Some(Ok(v)) => {
                        entry.insert((topic, tp), v);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(partition, offset = r.offset, error = %e, "skipping unreadable offset value")
                    }
                }
            }
            RecordKey::Group { group } => {
                match r.value.as_deref().map(records::decode_group_value) {
                    None => {
                        metadata.insert(group.clone(), None);
                        // A deleted group's earlier offsets are gone too.
                        offsets.remove(&group);
                    }
                    Some(Ok(v)) => {
                        metadata.insert(group, Some(v));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(partition, offset = r.offset, error = %e, "skipping unreadable group value")
                    }
                }
            }
        }
    })?;
    let now_ms = now_ms();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (id, value) in metadata {
        if let Some(v) = value {
            let mut g = Group::new(&id, now_ms);
            g.restore(v, now);
            groups.insert(id, g);
        }
    }
    for (id, o) in offsets {
        if o.is_empty() {
            continue;
        }
        groups
            .entry(id.clone())
            .or_insert_with(|| Group::new(&id, now_ms))
            .offsets = o;
    }
    // Transactions still open: their offsets wait for a marker.
    for (producer_id, pending) in txn_offsets {
        for (id, key, value) in pending {
            groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(&id, now_ms))
                .txn_offsets
                .entry(producer_id)
                .or_default()
                .insert(key, value);
        }
    }
    Ok(groups.into_values().collect())
}

/// The coordinator's timer task; it ends when the coordinator's shutdown
/// token fires.
pub async fn run(log: Arc<dyn CoordinatorLog>, groups: &GroupCoordinator) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let retention_every = Duration::from_millis(groups.config.offsets_retention_check_interval_ms);
    let mut next_retention = Instant::now() + retention_every;
    loop {
        tokio::select! {
            // Requests still waiting see the same token and answer
            // COORDINATOR_NOT_AVAILABLE.
            _ = groups.shutdown.cancelled() => break,
            due = groups.timers.due() => {
                groups.fire(&*log, due);
                continue;
            }
            _ = tick.tick() => {}
            _ = groups.shards.wanted() => {}
        }
        groups.load_partitions(&log).await;
        if Instant::now() >= next_retention {
            next_retention = Instant::now() + retention_every;
            groups.expire_offsets(&*log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hash_code() {
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "ab".hashCode() = 97 * 31 + 98 = 3105
        assert_eq!(partition_for("ab", 50), 3105 % 50);
        // Negative hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE, abs → 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // "test-group": the 31-polynomial over UTF-16 units, masked to 627841412.
        assert_eq!(partition_for("test-group", 50), 627_841_412 % 50);
    }

    /// An in-memory `__consumer_offsets` with one partition led here, whose
    /// high watermark the test moves by hand.
    struct MemoryLog {
        batches: Mutex<Vec<Bytes>>,
        high_watermark: tokio::sync::watch::Sender<i64>,
        /// Whether the broker's replica of the partition exists yet (the
        /// metadata names this broker leader either way).
        replica: std::sync::atomic::AtomicBool,
    }

    impl MemoryLog {
        fn new() -> Arc<MemoryLog> {
            Arc::new(MemoryLog {
                batches: Mutex::new(Vec::new()),
                high_watermark: tokio::sync::watch::channel(0).0,
                replica: std::sync::atomic::AtomicBool::new(true),
            })
        }
        fn log_end_offset(&self) -> i64 {
            self.batches.lock().len() as i64
        }
    }

    impl CoordinatorLog for MemoryLog {
        fn partition_count(&self, _topic: &str) -> Option<i32> {
            Some(1)
        }
        fn led_epoch(&self, _topic: &str, _partition: i32) -> Option<i32> {
            Some(0)
        }
        fn led_partitions(&self, _topic: &str) -> Vec<(i32, i32)> {
            vec![(0, 0)]
        }
        fn append(&self, _topic: &str, _partition: i32, batch: Bytes) -> Result<i64, ErrorCode> {
            // One record per batch in these tests: offset = batch index.
            let mut batches = self.batches.lock();
            batches.push(batch);
            Ok(batches.len() as i64 - 1)
        }
        fn wait_committed<'a>(
            &'a self,
            _topic: &'a str,
            _partition: i32,
            offset: i64,
            deadline: Instant,
        ) -> crate::LogFuture<'a, Result<(), ErrorCode>> {
            let mut hw = self.high_watermark.subscribe();
            Box::pin(async move {
                tokio::select! {
                    r = hw.wait_for(|hw| *hw > offset) => r.map(|_| ()).map_err(|_| ErrorCode::NOT_LEADER_OR_FOLLOWER),
                    _ = tokio::time::sleep_until(deadline) => Err(ErrorCode::REQUEST_TIMED_OUT),
                }
            })
        }
        fn offsets(&self, _topic: &str, _partition: i32) -> Option<(i64, i64)> {
            self.replica
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| (0, self.log_end_offset()))
        }
        fn read(&self, _: &str, _: i32, _: i64, _: usize, _: i64) -> Result<Bytes, String> {
            Ok(self
                .batches
                .lock()
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<u8>>()
                .into())
        }
    }

    /// The image may name this broker leader of an offsets partition
    /// before its replica exists: the partition is not served as empty
    /// (its groups and offsets lost for the epoch), it is loaded once the
    /// replica is there.
    #[tokio::test]
    async fn a_partition_led_before_its_replica_exists_loads_once_it_does() {
        let memory = MemoryLog::new();
        let config = kraftwerk_types::BrokerConfig::from_map(Default::default()).expect("defaults");
        let groups = GroupCoordinator::new(
            CoordinatorConfig::from_broker(&config),
            CancellationToken::new(),
        );
        let log: Arc<dyn CoordinatorLog> = memory.clone();
        memory
            .replica
            .store(false, std::sync::atomic::Ordering::SeqCst);
        groups.load_partitions(&log).await;
        assert!(matches!(
            groups.owns(&*log, "g"),
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        ));
        memory
            .replica
            .store(true, std::sync::atomic::Ordering::SeqCst);
        groups.load_partitions(&log).await;
        assert!(groups.owns(&*log, "g").is_ok());
    }

    /// A group request that arrives while the partition is loading waits
    /// for the load instead of being turned away.
    #[tokio::test]
    async fn a_request_during_the_load_waits_for_it() {
        let memory = MemoryLog::new();
        let config = kraftwerk_types::BrokerConfig::from_map(Default::default()).expect("defaults");
        let groups = Arc::new(GroupCoordinator::new(
            CoordinatorConfig::from_broker(&config),
            CancellationToken::new(),
        ));
        let log: Arc<dyn CoordinatorLog> = memory.clone();
        memory
            .replica
            .store(false, std::sync::atomic::Ordering::SeqCst);
        groups.load_partitions(&log).await;
        let loader = {
            let (groups, log, memory) = (groups.clone(), log.clone(), memory.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                memory
                    .replica
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                groups.load_partitions(&log).await;
            })
        };
        assert!(groups.owns_loaded(&*log, "g").await.is_ok());
        loader.await.expect("loader");
    }

    fn coordinator() -> Arc<GroupCoordinator> {
        let config = kraftwerk_types::BrokerConfig::from_map(Default::default()).expect("defaults");
        let groups = GroupCoordinator::new(
            CoordinatorConfig::from_broker(&config),
            CancellationToken::new(),
        );
        groups.shards.mark_loaded(0, 0);
        Arc::new(groups)
    }

    fn offset(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        }
    }

    fn committed(groups: &GroupCoordinator, group: &str) -> Option<i64> {
        let g = groups.group(group)?;
        let g = g.lock();
        g.offsets.get(&("orders".to_string(), 0)).map(|v| v.offset)
    }

    fn commit(
        groups: &Arc<GroupCoordinator>,
        log: &Arc<MemoryLog>,
        value: i64,
    ) -> tokio::task::JoinHandle<Result<(), ErrorCode>> {
        let (groups, log) = (groups.clone(), log.clone());
        tokio::spawn(async move {
            groups
                .commit_offsets(
                    &*log,
                    "billing",
                    "",
                    None,
                    -1,
                    vec![(("orders".to_string(), 0), offset(value))],
                )
                .await
        })
    }

    async fn until_appended(log: &MemoryLog, records: i64) {
        while log.log_end_offset() < records {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_committed_offset_is_visible_only_once_its_record_is_committed() {
        let (groups, log) = (coordinator(), MemoryLog::new());
        let first = commit(&groups, &log, 42);
        until_appended(&log, 1).await;
        assert_eq!(
            committed(&groups, "billing"),
            None,
            "written, not yet committed"
        );
        log.high_watermark.send_replace(1);
        assert_eq!(first.await.expect("task"), Ok(()));
        assert_eq!(committed(&groups, "billing"), Some(42));
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_latest_write_of_an_offset_is_applied_whatever_order_the_waits_end_in() {
        let (groups, log) = (coordinator(), MemoryLog::new());
        let older = commit(&groups, &log, 10);
        until_appended(&log, 1).await;
        let newer = commit(&groups, &log, 20);
        until_appended(&log, 2).await;
        log.high_watermark.send_replace(2);
        let (newer, older) = (newer.await.expect("task"), older.await.expect("task"));
        assert_eq!((older, newer), (Ok(()), Ok(())));
        assert_eq!(committed(&groups, "billing"), Some(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_log_does_not_commit_in_time_is_not_applied_and_the_commit_fails() {
        let (groups, log) = (coordinator(), MemoryLog::new());
        let first = commit(&groups, &log, 7);
        until_appended(&log, 1).await;
        log.high_watermark.send_replace(1);
        assert_eq!(first.await.expect("task"), Ok(()));
        let late = commit(&groups, &log, 8);
        // offsets.commit.timeout.ms passes with the high watermark still at 1.
        assert_eq!(
            late.await.expect("task"),
            Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
        );
        assert_eq!(committed(&groups, "billing"), Some(7));
        let g = groups.group("billing").expect("group");
        assert!(g.lock().pending_offsets.is_empty());
    }
}
