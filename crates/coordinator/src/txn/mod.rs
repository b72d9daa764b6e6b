//! The transaction coordinator (Kafka's transaction protocol, version 1).
//!
//! A transactional id belongs to one partition of `__transaction_state`:
//! `abs(java_hash(id)) % transaction.state.log.num.partitions`, and its
//! coordinator is the broker leading that partition. Every change of an
//! id's state is written there ([`records`]) and answered once committed;
//! a broker that becomes leader of such a partition replays it and picks
//! up where the last coordinator stopped. The leader epoch of the
//! partition is the coordinator epoch that markers carry, so a deposed
//! coordinator's late markers are refused by the partitions.
//!
//! A transaction's life: InitProducerId (epoch bump, fencing the previous
//! producer of the id), AddPartitionsToTxn / AddOffsetsToTxn (state
//! Ongoing), EndTxn (PrepareCommit or PrepareAbort, answered once
//! stored), then the markers ([`TxnBroker::write_markers`]) on every
//! partition of the transaction, retried until each leader wrote its
//! marker, then CompleteCommit or CompleteAbort. The timer task aborts
//! transactions left open past their timeout, at a bumped epoch, and
//! forgets ids idle past `transactional.id.expiration.ms`.
//!
//! The transitions are pure functions in [`state`]; this module stores
//! them and drives markers and timers. Locks: the id table is a
//! `parking_lot::RwLock` of per-id `Mutex`es, never held across
//! `.await`; an id whose change is being stored (or whose markers are
//! being written) is `busy`, and requests for it meanwhile are answered
//! CONCURRENT_TRANSACTIONS, which clients retry.

pub mod records;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kraftwerk_types::ErrorCode;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::group::partition_for;
use crate::runtime::{replay_records, Shards, LOAD_WAIT};
use crate::{now_ms, CoordinatorLog, LogFuture};
pub use state::{TxnMetadata, TxnState};

/// Kafka's internal topic for transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// How often the timer task looks at transactions and partitions.
const TICK: Duration = Duration::from_millis(100);
/// Pause before markers that could not be written are tried again.
const MARKER_RETRY: Duration = Duration::from_millis(100);

/// Broker settings of the transaction coordinator, with Kafka's keys.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`.
    pub partitions: i32,
    /// `transaction.state.log.replication.factor`.
    pub replication_factor: i16,
    /// `transaction.state.log.min.isr`.
    pub min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub segment_bytes: i64,
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub expire_check_interval_ms: u64,
    /// How long a state change may wait for the ISR.
    pub write_timeout_ms: u64,
}

impl TxnConfig {
    pub fn from_broker(config: &kraftwerk_types::BrokerConfig) -> TxnConfig {
        let num = |key: &str| -> i64 {
            config
                .value_of(key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        TxnConfig {
            partitions: num("transaction.state.log.num.partitions").clamp(1, 1000) as i32,
            replication_factor: num("transaction.state.log.replication.factor").clamp(1, 100)
                as i16,
            min_isr: num("transaction.state.log.min.isr").clamp(1, 100) as i32,
            segment_bytes: num("transaction.state.log.segment.bytes").max(1024),
            max_timeout_ms: num("transaction.max.timeout.ms").clamp(1, i32::MAX as i64) as i32,
            id_expiration_ms: num("transactional.id.expiration.ms").max(1),
            abort_check_interval_ms: num(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            )
            .max(1) as u64,
            expire_check_interval_ms: num(
                "transaction.remove.expired.transaction.cleanup.interval.ms",
            )
            .max(1) as u64,
            write_timeout_ms: num("offsets.commit.timeout.ms").max(1) as u64,
        }
    }
}

/// A transaction marker to write on the partitions of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

/// What the transaction coordinator needs from its broker besides the log.
pub trait TxnBroker: CoordinatorLog {
    fn transactions(&self) -> &TransactionCoordinator;

    /// A producer id never given before.
    fn allocate_producer_id(&self) -> LogFuture<'_, Result<i64, ErrorCode>>;

    /// Writes `marker` on every partition (through each one's leader) and
    /// returns the partitions it could not write yet. A partition that no
    /// longer exists counts as written.
    fn write_markers(
        &self,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> LogFuture<'_, Vec<(String, i32)>>;
}

#[derive(Debug)]
struct Slot {
    meta: Option<TxnMetadata>,
    /// A change is being stored, or markers written: requests wait.
    busy: bool,
}

type SlotRef = Arc<Mutex<Slot>>;

/// One transactional id as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnView {
    pub transactional_id: String,
    pub meta: TxnMetadata,
}

pub struct TransactionCoordinator {
    pub config: TxnConfig,
    txns: RwLock<HashMap<String, SlotRef>>,
    /// The `__transaction_state` partitions loaded here; the leader epoch
    /// a partition is loaded at is the coordinator epoch.
    shards: Shards,
    /// Wakes the timer task: markers to write.
    wake: Notify,
    shutdown: CancellationToken,
}

impl TransactionCoordinator {
    pub fn new(config: TxnConfig, shutdown: CancellationToken) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            txns: RwLock::new(HashMap::new()),
            shards: Shards::new(TXN_TOPIC),
            wake: Notify::new(),
            shutdown,
        }
    }

    /// Asks the timer task to load the partitions led here now.
    pub fn request_load(&self) {
        self.shards.want_sync();
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_of(&self, log: &dyn CoordinatorLog, transactional_id: &str) -> i32 {
        let count = log
            .partition_count(TXN_TOPIC)
            .filter(|n| *n > 0)
            .unwrap_or(self.config.partitions);
        partition_for(transactional_id, count)
    }

    /// The partition and coordinator epoch when this broker coordinates
    /// `transactional_id` right now.
    fn owns(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
    ) -> Result<(i32, i32), ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        let Some(count) = log.partition_count(TXN_TOPIC) else {
            return Err(ErrorCode::NOT_COORDINATOR);
        };
        let p = partition_for(transactional_id, count);
        self.shards.check(log, p).map(|epoch| (p, epoch))
    }

    /// [`Self::owns`], but while the partition loads (or this broker's
    /// replica of a partition it just came to lead is being created) the
    /// request waits for it, up to [`LOAD_WAIT`], as group requests do.
    async fn owns_loaded(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
    ) -> Result<i32, ErrorCode> {
        match self.owns(log, transactional_id) {
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS) => {
                let count = log
                    .partition_count(TXN_TOPIC)
                    .ok_or(ErrorCode::NOT_COORDINATOR)?;
                let p = partition_for(transactional_id, count);
                self.shards.check_loaded(log, p, LOAD_WAIT).await.map(|_| p)
            }
            owned => owned.map(|(p, _)| p),
        }
    }

    fn slot(&self, transactional_id: &str) -> Option<SlotRef> {
        self.txns.read().get(transactional_id).cloned()
    }

    fn slot_or_new(&self, transactional_id: &str) -> SlotRef {
        if let Some(s) = self.slot(transactional_id) {
            return s;
        }
        self.txns
            .write()
            .entry(transactional_id.to_string())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Slot {
                    meta: None,
                    busy: false,
                }))
            })
            .clone()
    }

    /// Stores `next` (or a tombstone) for an id whose slot the caller
    /// marked busy, waits until it is committed, then makes it the id's
    /// state. The slot is free again either way.
    async fn store(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        transactional_id: &str,
        slot: &SlotRef,
        next: Option<TxnMetadata>,
    ) -> Result<(), ErrorCode> {
        let result = self
            .write(log, partition, transactional_id, next.as_ref())
            .await;
        let mut s = slot.lock();
        s.busy = false;
        if result.is_ok() {
            s.meta = next;
        }
        result
    }

    async fn write(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        transactional_id: &str,
        next: Option<&TxnMetadata>,
    ) -> Result<(), ErrorCode> {
        let record = (records::key(transactional_id), next.map(records::value));
        let batch = crate::encode_batch(vec![record], None)?;
        let offset = log.append(TXN_TOPIC, partition, batch).map_err(|e| {
            tracing::warn!(partition, code = e.code(), "append to {TXN_TOPIC} failed");
            crate::append_error(e)
        })?;
        let deadline = Instant::now() + Duration::from_millis(self.config.write_timeout_ms);
        let committed = tokio::select! {
            r = log.wait_committed(TXN_TOPIC, partition, offset, deadline) => r,
            _ = self.shutdown.cancelled() => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        };
        committed.map_err(crate::commit_error)
    }

    /// InitProducerId with a transactional id: the producer id and the
    /// new epoch.
    pub async fn init_producer_id(
        &self,
        broker: &dyn TxnBroker,
        transactional_id: &str,
        timeout_ms: i32,
        given: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ErrorCode> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ErrorCode::INVALID_TRANSACTION_TIMEOUT);
        }
        let partition = self.owns_loaded(broker, transactional_id).await?;
        let slot = self.slot_or_new(transactional_id);
        let mut fresh = None;
        loop {
            let step = {
                let mut s = slot.lock();
                if s.busy {
                    return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
                }
                let step =
                    state::init_producer_id(s.meta.as_ref(), timeout_ms, given, fresh, now_ms())?;
                if step != state::InitStep::NeedsProducerId {
                    s.busy = true;
                }
                step
            };
            match step {
                state::InitStep::NeedsProducerId => {
                    fresh = Some(broker.allocate_producer_id().await?);
                }
                state::InitStep::Write(m) => {
                    let answer = (m.producer_id, m.producer_epoch);
                    self.store(broker, partition, transactional_id, &slot, Some(m))
                        .await?;
                    tracing::debug!(
                        transactional_id,
                        producer_id = answer.0,
                        epoch = answer.1,
                        "producer initialised"
                    );
                    return Ok(answer);
                }
                state::InitStep::AbortFirst(m) => {
                    tracing::info!(
                        transactional_id,
                        "aborting the open transaction of a re-initialised producer"
                    );
                    self.store(broker, partition, transactional_id, &slot, Some(m))
                        .await?;
                    self.wake.notify_one();
                    return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
                }
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's offsets
    /// partition). The caller checked that the partitions exist.
    pub async fn add_partitions(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ErrorCode> {
        let partition = self.owns_loaded(log, transactional_id).await?;
        let slot = self
            .slot(transactional_id)
            .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
        let next = {
            let mut s = slot.lock();
            if s.busy {
                return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
            }
            let next =
                state::add_partitions(s.meta.as_ref(), producer_id, epoch, partitions, now_ms())?;
            if next.is_some() {
                s.busy = true;
            }
            next
        };
        match next {
            None => Ok(()),
            Some(m) => {
                self.store(log, partition, transactional_id, &slot, Some(m))
                    .await
            }
        }
    }

    /// EndTxn: answered once the outcome is stored; the markers follow.
    pub async fn end_txn(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        let partition = self.owns_loaded(log, transactional_id).await?;
        let slot = self
            .slot(transactional_id)
            .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
        let step = {
            let mut s = slot.lock();
            if s.busy {
                return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
            }
            let step = state::end_txn(s.meta.as_ref(), producer_id, epoch, commit, now_ms())?;
            if step != state::EndStep::AlreadyDone {
                s.busy = true;
            }
            step
        };
        match step {
            state::EndStep::AlreadyDone => Ok(()),
            state::EndStep::Prepare(m) => {
                self.store(log, partition, transactional_id, &slot, Some(m))
                    .await?;
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    /// The current producer id and epoch of an id coordinated here, for
    /// TxnOffsetCommit's check before the group coordinator takes over.
    pub fn check_producer(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), ErrorCode> {
        self.owns(log, transactional_id)?;
        let slot = self
            .slot(transactional_id)
            .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
        let s = slot.lock();
        let m = s
            .meta
            .as_ref()
            .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
        state::check_producer(m, producer_id, epoch)
    }

    /// KIP-890 part 1: whether `topic`-`partition` is in the ongoing
    /// transaction of this producer, asked by a partition leader before it
    /// appends the producer's first transactional batch there.
    /// INVALID_TXN_STATE when it is not (a late write of a transaction that
    /// ended), INVALID_PRODUCER_EPOCH when the producer was fenced,
    /// CONCURRENT_TRANSACTIONS while the id's state is being stored.
    pub fn verify(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ErrorCode> {
        self.owns(log, transactional_id)?;
        let slot = self
            .slot(transactional_id)
            .ok_or(ErrorCode::INVALID_TXN_STATE)?;
        let s = slot.lock();
        let m = s.meta.as_ref().ok_or(ErrorCode::INVALID_TXN_STATE)?;
        if m.producer_id != producer_id {
            return Err(ErrorCode::INVALID_TXN_STATE);
        }
        if m.producer_epoch != epoch {
            return Err(ErrorCode::INVALID_PRODUCER_EPOCH);
        }
        if s.busy {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        let key = (topic.to_string(), partition);
        if m.state == TxnState::Ongoing && m.partitions.contains(&key) {
            Ok(())
        } else {
            Err(ErrorCode::INVALID_TXN_STATE)
        }
    }

    /// DescribeTransactions for one id.
    pub fn describe(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
    ) -> Result<TxnMetadata, ErrorCode> {
        self.owns(log, transactional_id)?;
        self.slot(transactional_id)
            .and_then(|s| s.lock().meta.clone())
            .ok_or(ErrorCode::TRANSACTIONAL_ID_NOT_FOUND)
    }

    /// ListTransactions: every id coordinated here, filtered by state
    /// names and producer ids (empty filters match all) and by how long
    /// the open transaction has run (`min_duration_ms` < 0: no filter).
    pub fn list(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Vec<TxnView> {
        let now = now_ms();
        let mut out: Vec<TxnView> = self
            .txns
            .read()
            .iter()
            .filter_map(|(id, slot)| {
                let meta = slot.lock().meta.clone()?;
                let state_ok = states.is_empty() || states.iter().any(|s| s == meta.state.name());
                let id_ok = producer_ids.is_empty() || producer_ids.contains(&meta.producer_id);
                let running_ok = min_duration_ms < 0
                    || (meta.state == TxnState::Ongoing
                        && meta.start_ms >= 0
                        && now - meta.start_ms >= min_duration_ms);
                (state_ok && id_ok && running_ok).then(|| TxnView {
                    transactional_id: id.clone(),
                    meta,
                })
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// Loads partitions led here and not loaded, unloads the ones no
    /// longer led here.
    async fn load_partitions(&self, log: &Arc<dyn CoordinatorLog>) {
        self.shards
            .sync(
                log,
                replay,
                |partition, coordinator_epoch, found: HashMap<String, TxnMetadata>| {
                    let n = found.len();
                    let mut table = self.txns.write();
                    for (id, meta) in found {
                        table.insert(
                            id,
                            Arc::new(Mutex::new(Slot {
                                meta: Some(meta),
                                busy: false,
                            })),
                        );
                    }
                    tracing::info!(
                        partition,
                        transactional_ids = n,
                        coordinator_epoch,
                        "loaded {TXN_TOPIC} partition"
                    );
                },
                |partitions, count| {
                    self.txns
                        .write()
                        .retain(|id, _| !partitions.contains(&partition_for(id, count)));
                },
            )
            .await;
    }

    /// (id, slot, partition, coordinator epoch) of every id on a loaded
    /// partition.
    fn loaded_slots(&self, log: &dyn CoordinatorLog) -> Vec<(String, SlotRef, i32, i32)> {
        let Some(count) = log.partition_count(TXN_TOPIC) else {
            return Vec::new();
        };
        let loaded = self.shards.loaded();
        self.txns
            .read()
            .iter()
            .filter_map(|(id, slot)| {
                let p = partition_for(id, count);
                loaded
                    .get(&p)
                    .map(|epoch| (id.clone(), slot.clone(), p, *epoch))
            })
            .collect()
    }
}

/// Drives one prepared transaction to its end: markers on every
/// partition (retried while this broker still coordinates the id), then
/// the Complete state.
async fn complete<B: TxnBroker>(
    broker: &B,
    transactional_id: String,
    slot: SlotRef,
    partition: i32,
    coordinator_epoch: i32,
    prepared: TxnMetadata,
) {
    let coordinator = broker.transactions();
    let marker = Marker {
        producer_id: prepared.producer_id,
        producer_epoch: prepared.producer_epoch,
        coordinator_epoch,
        commit: prepared.state == TxnState::PrepareCommit,
    };
    let mut pending: Vec<(String, i32)> = prepared.partitions.iter().cloned().collect();
    loop {
        if coordinator.shutdown.is_cancelled()
            || broker.led_epoch(TXN_TOPIC, partition) != Some(coordinator_epoch)
        {
            // The next coordinator replays the prepared state and finishes.
            slot.lock().busy = false;
            return;
        }
        pending = broker.write_markers(marker, pending).await;
        if pending.is_empty() {
            break;
        }
        tracing::debug!(%transactional_id, left = pending.len(), "markers not yet written; retrying");
        tokio::select! {
            _ = tokio::time::sleep(MARKER_RETRY) => {}
            _ = coordinator.shutdown.cancelled() => {}
        }
    }
    let done = state::complete(&prepared, now_ms());
    tracing::debug!(%transactional_id, state = done.state.name(), "transaction ended");
    if let Err(code) = coordinator
        .store(broker, partition, &transactional_id, &slot, Some(done))
        .await
    {
        // Still prepared: the next tick (or the next coordinator) tries again.
        tracing::warn!(%transactional_id, code = code.code(), "storing the end of a transaction failed");
    }
}

/// The timer task: loads partitions, writes markers of prepared
/// transactions, aborts timed-out ones and forgets expired ids.
pub async fn run<B: TxnBroker + 'static>(broker: Arc<B>) {
    let coordinator = broker.transactions();
    let log: Arc<dyn CoordinatorLog> = broker.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let abort_every = Duration::from_millis(coordinator.config.abort_check_interval_ms);
    let expire_every = Duration::from_millis(coordinator.config.expire_check_interval_ms);
    let mut next_abort_check = Instant::now() + abort_every;
    let mut next_expire_check = Instant::now() + expire_every;
    loop {
        tokio::select! {
            _ = coordinator.shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = coordinator.wake.notified() => {}
            _ = coordinator.shards.wanted() => {}
        }
        coordinator.load_partitions(&log).await;
        let now = Instant::now();
        let check_aborts = now >= next_abort_check;
        if check_aborts {
            next_abort_check = now + abort_every;
        }
        let check_expiry = now >= next_expire_check;
        if check_expiry {
            next_expire_check = now + expire_every;
        }
        let now_ms = now_ms();
        for (id, slot, partition, epoch) in coordinator.loaded_slots(&*log) {
            // What to do with this id, decided under its lock.
            enum Duty {
                Complete(TxnMetadata),
                Store(Option<TxnMetadata>),
            }
            let duty = {
                let mut s = slot.lock();
                let Some(meta) = s.meta.clone() else { continue };
                if s.busy {
                    continue;
                }
                let duty = if meta.state.is_prepared() {
                    Duty::Complete(meta)
                } else if let Some(aborted) = check_aborts
                    .then(|| state::timed_out(&meta, now_ms))
                    .flatten()
                {
                    tracing::info!(transactional_id = %id, producer_id = meta.producer_id, "aborting a transaction past its timeout");
                    Duty::Store(Some(aborted))
                } else if check_expiry
                    && state::expired(&meta, coordinator.config.id_expiration_ms, now_ms)
                {
                    tracing::info!(transactional_id = %id, "forgetting an expired transactional id");
                    Duty::Store(None)
                } else {
                    continue;
                };
                s.busy = true;
                duty
            };
            let broker = broker.clone();
            tokio::spawn(async move {
                match duty {
                    Duty::Complete(prepared) => {
                        complete(&*broker, id, slot, partition, epoch, prepared).await;
                    }
                    Duty::Store(next) => {
                        let coordinator = broker.transactions();
                        let forget = next.is_none();
                        match coordinator
                            .store(&*broker, partition, &id, &slot, next)
                            .await
                        {
                            Ok(()) if forget => {
                                coordinator.txns.write().remove(&id);
                            }
                            Ok(()) => coordinator.wake.notify_one(),
                            Err(code) => {
                                tracing::warn!(transactional_id = %id, code = code.code(), "storing a timer change failed");
                            }
                        }
                    }
                }
            });
        }
    }
}

/// Rebuilds the transactional ids of one partition from its log.
fn replay(
    log: &dyn CoordinatorLog,
    partition: i32,
) -> Result<HashMap<String, TxnMetadata>, String> {
    let mut found: HashMap<String, TxnMetadata> = HashMap::new();
    replay_records(log, TXN_TOPIC, partition, |r| {
        if r.control {
            return;
        }
        let Some(key) = r.key else { return };
        let id = match records::decode_key(&key) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(partition, offset = r.offset, error = %e, "skipping unreadable key");
                return;
            }
        };
        match r.value.as_deref().map(records::decode_value) {
            None => {
                found.remove(&id);
            }
            Some(Ok(meta)) => {
                found.insert(id, meta);
            }
            Some(Err(e)) => {
                tracing::warn!(partition, offset = r.offset, error = %e, "skipping unreadable transaction state")
            }
        }
    })?;
    Ok(found)
}

/// The partitions of a transaction as (topic, partitions), sorted.
pub fn partitions_by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for (t, p) in partitions {
        match out.last_mut() {
            Some((last, ps)) if last == t => ps.push(*p),
            _ => out.push((t.clone(), vec![*p])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Leads every partition of `__transaction_state` at epoch 1; nothing else.
    struct Leads;

    impl CoordinatorLog for Leads {
        fn partition_count(&self, _: &str) -> Option<i32> {
            Some(4)
        }
        fn led_epoch(&self, _: &str, _: i32) -> Option<i32> {
            Some(1)
        }
        fn led_partitions(&self, _: &str) -> Vec<(i32, i32)> {
            (0..4).map(|p| (p, 1)).collect()
        }
        fn append(&self, _: &str, _: i32, _: Bytes) -> Result<i64, ErrorCode> {
            Err(ErrorCode::NOT_LEADER_OR_FOLLOWER)
        }
        fn wait_committed<'a>(
            &'a self,
            _: &'a str,
            _: i32,
            _: i64,
            _: Instant,
        ) -> LogFuture<'a, Result<(), ErrorCode>> {
            Box::pin(async { Err(ErrorCode::NOT_LEADER_OR_FOLLOWER) })
        }
        fn offsets(&self, _: &str, _: i32) -> Option<(i64, i64)> {
            Some((0, 0))
        }
        fn read(&self, _: &str, _: i32, _: i64, _: usize, _: i64) -> Result<Bytes, String> {
            Ok(Bytes::new())
        }
    }

    /// A transactional request that arrives while its partition loads
    /// waits for the load instead of being answered
    /// COORDINATOR_LOAD_IN_PROGRESS at once; past LOAD_WAIT it gets that answer.
    #[tokio::test(start_paused = true)]
    async fn a_request_during_the_load_waits_for_it() {
        let config = kraftwerk_types::BrokerConfig::from_map(Default::default()).expect("defaults");
        let txns = Arc::new(TransactionCoordinator::new(
            TxnConfig::from_broker(&config),
            CancellationToken::new(),
        ));
        let p = txns.partition_of(&Leads, "t");
        assert_eq!(
            txns.owns(&Leads, "t"),
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        );
        let loader = {
            let txns = txns.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                txns.shards.mark_loaded(p, 1);
            })
        };
        let started = Instant::now();
        assert_eq!(txns.owns_loaded(&Leads, "t").await, Ok(p));
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        loader.await.unwrap();

        let other = (0..100)
            .map(|i| format!("t{i}"))
            .find(|id| txns.partition_of(&Leads, id) != p)
            .expect("an id on another partition");
        assert_eq!(
            txns.owns_loaded(&Leads, &other).await,
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(200) + LOAD_WAIT);
    }
}
