//! What every coordinator of an internal topic shares: one shard per
//! partition of the topic, loaded by replaying the partition when this
//! broker becomes its leader and unloaded when it stops leading (or leads
//! it at a new epoch, which means loading it again).
//!
//! A coordinator keeps its own state per shard (groups, transactional ids)
//! and hands [`Shards::sync`] three things: how to replay one partition
//! into that state (on tokio's blocking pool), how to install what a
//! replay found, and how to drop the state of partitions no longer led.
//! Requests ask [`Shards::check`] (or [`Shards::check_loaded`], which
//! waits while a load is in progress) before they touch a shard: a shard
//! serves only once it is loaded at the leader epoch the broker leads its
//! partition in now.
//!
//! [`Timers`] wake a coordinator's state machines (a group, later a
//! transaction) at the deadlines they asked for, instead of a periodic
//! scan of every one of them.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use kafka_protocol::records::{Record, RecordBatchDecoder};
use kraftwerk_types::ErrorCode;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::{Duration, Instant};

use crate::CoordinatorLog;

/// How long a request waits for its partition to load
/// ([`Shards::check_loaded`]) before it is answered
/// COORDINATOR_LOAD_IN_PROGRESS.
pub const LOAD_WAIT: Duration = Duration::from_secs(3);

/// How much one read of a partition being replayed asks for.
const REPLAY_READ_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    /// Loaded while leading at this leader epoch.
    Loaded(i32),
}

/// The shards of one internal topic on this broker.
pub struct Shards {
    topic: &'static str,
    loads: Mutex<HashMap<i32, Load>>,
    /// Ticks when a shard is loaded or unloaded; waiters check again. A
    /// failed load does not tick: the next sync (the timer's) tries again.
    changed: watch::Sender<u64>,
    /// A request found a partition led here and not loaded: the
    /// coordinator's timer task syncs now instead of at its next tick.
    wanted: Notify,
}

impl Shards {
    pub fn new(topic: &'static str) -> Shards {
        Shards {
            topic,
            loads: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            wanted: Notify::new(),
        }
    }

    /// Completes when a request wants partitions loaded now.
    pub async fn wanted(&self) {
        self.wanted.notified().await
    }

    /// Asks for a sync now (a client is looking for its coordinator).
    pub fn want_sync(&self) {
        self.wanted.notify_one();
    }

    fn tick(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The leader epoch of `partition` when this broker leads it and its
    /// shard is loaded at that epoch; NOT_COORDINATOR when another broker
    /// leads it, COORDINATOR_LOAD_IN_PROGRESS while it is (to be) loaded.
    pub fn check(&self, log: &dyn CoordinatorLog, partition: i32) -> Result<i32, ErrorCode> {
        let Some(leader_epoch) = log.led_epoch(self.topic, partition) else {
            return Err(ErrorCode::NOT_COORDINATOR);
        };
        match self.loads.lock().get(&partition) {
            Some(Load::Loaded(epoch)) if *epoch == leader_epoch => Ok(leader_epoch),
            Some(_) => Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS),
            None => {
                self.wanted.notify_one();
                Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
            }
        }
    }

    /// [`Shards::check`], but while the shard is being loaded (or this
    /// broker's replica of a partition it just came to lead is still being
    /// created) it waits for the load, up to `wait`, instead of answering
    /// COORDINATOR_LOAD_IN_PROGRESS at once.
    pub async fn check_loaded(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        wait: Duration,
    ) -> Result<i32, ErrorCode> {
        let deadline = Instant::now() + wait;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            match self.check(log, partition) {
                Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS) if Instant::now() < deadline => {
                    tokio::select! {
                        r = changed.changed() => {
                            if r.is_err() {
                                return Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS);
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                checked => return checked,
            }
        }
    }

    /// Marks a shard loaded without a replay (tests of the coordinators).
    #[cfg(test)]
    pub(crate) fn mark_loaded(&self, partition: i32, leader_epoch: i32) {
        self.loads
            .lock()
            .insert(partition, Load::Loaded(leader_epoch));
        self.tick();
    }

    /// The loaded shards: partition to the leader epoch it was loaded at.
    pub fn loaded(&self) -> HashMap<i32, i32> {
        self.loads
            .lock()
            .iter()
            .filter_map(|(p, load)| match load {
                Load::Loaded(epoch) => Some((*p, *epoch)),
                Load::Loading => None,
            })
            .collect()
    }

    /// Brings the shards in line with the partitions this broker leads.
    /// `unload` gets the partitions no longer led (or led at a new epoch)
    /// and the topic's partition count; each partition led and not loaded
    /// is replayed with `replay` on the blocking pool and handed to
    /// `install` with its leader epoch. A replay that fails leaves the
    /// partition unloaded, to be tried again at the next sync.
    pub async fn sync<S, Replay, Install, Unload>(
        &self,
        log: &Arc<dyn CoordinatorLog>,
        replay: Replay,
        mut install: Install,
        unload: Unload,
    ) where
        S: Send + 'static,
        Replay: Fn(&dyn CoordinatorLog, i32) -> Result<S, String> + Copy + Send + 'static,
        Install: FnMut(i32, i32, S),
        Unload: FnOnce(&[i32], i32),
    {
        let Some(count) = log.partition_count(self.topic) else {
            return;
        };
        let led: HashMap<i32, i32> = log.led_partitions(self.topic).into_iter().collect();
        let (to_unload, to_load) = {
            let mut loads = self.loads.lock();
            let to_unload: Vec<i32> = loads
                .iter()
                .filter(|(p, load)| match (led.get(p), load) {
                    (None, _) => true,
                    (Some(epoch), Load::Loaded(loaded)) => epoch != loaded,
                    (Some(_), Load::Loading) => false,
                })
                .map(|(p, _)| *p)
                .collect();
            for p in &to_unload {
                loads.remove(p);
            }
            let to_load: Vec<(i32, i32)> = led
                .iter()
                .filter(|(p, _)| !loads.contains_key(p))
                .map(|(p, epoch)| (*p, *epoch))
                .collect();
            for (p, _) in &to_load {
                loads.insert(*p, Load::Loading);
            }
            (to_unload, to_load)
        };
        if !to_unload.is_empty() {
            unload(&to_unload, count);
            tracing::info!(topic = self.topic, partitions = ?to_unload, "unloaded coordinator partitions");
            self.tick();
        }
        for (p, epoch) in to_load {
            let reader = log.clone();
            let started = std::time::Instant::now();
            let replayed = tokio::task::spawn_blocking(move || replay(&*reader, p)).await;
            match replayed {
                Ok(Ok(state)) => {
                    install(p, epoch, state);
                    self.loads.lock().insert(p, Load::Loaded(epoch));
                    self.tick();
                    tracing::debug!(
                        topic = self.topic,
                        partition = p,
                        leader_epoch = epoch,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "loaded coordinator partition"
                    );
                }
                Ok(Err(e)) => {
                    tracing::error!(topic = self.topic, partition = p, error = %e, "loading a coordinator partition failed; will retry");
                    self.loads.lock().remove(&p);
                }
                Err(e) => {
                    tracing::error!(topic = self.topic, partition = p, error = %e, "the loading task failed; will retry");
                    self.loads.lock().remove(&p);
                }
            }
        }
    }
}

/// Reads `topic`-`partition` from its log start to its end and hands each
/// record to `each`, in offset order, control records (transaction
/// markers) included. Blocking: run it off the async workers.
///
/// The metadata image may name this broker leader before its replica
/// manager has the partition: replaying nothing then would serve the
/// partition as empty (and its stored state as lost) for the whole leader
/// epoch, so that is an error, and the load is tried again.
pub fn replay_records(
    log: &dyn CoordinatorLog,
    topic: &str,
    partition: i32,
    mut each: impl FnMut(Record),
) -> Result<(), String> {
    let Some((start, end)) = log.offsets(topic, partition) else {
        return Err(format!(
            "{topic}-{partition} has no replica on this broker yet"
        ));
    };
    let mut at = start;
    while at < end {
        let chunk = log.read(topic, partition, at, REPLAY_READ_BYTES, end)?;
        if chunk.is_empty() {
            break;
        }
        let mut buf = chunk;
        let mut next = at;
        while !buf.is_empty() {
            // By the batch's last offset, not its records': compaction may
            // have emptied a batch or dropped its last records.
            let header = kraftwerk_protocol::batch::BatchHeader::parse(&buf)
                .map_err(|e| format!("bad batch at offset {next}: {e}"))?;
            next = next.max(header.last_offset() + 1);
            let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| e.to_string())?;
            set.records.into_iter().for_each(&mut each);
        }
        if next <= at {
            return Err(format!("no progress replaying at offset {at}"));
        }
        at = next;
    }
    Ok(())
}

/// Wake-ups by key: each key has at most one, at the earliest time asked
/// for. [`Timers::due`] sleeps until the first is due and hands out every
/// key due by then.
pub struct Timers<K> {
    state: Mutex<TimerState<K>>,
    /// A wake-up earlier than the one [`Timers::due`] sleeps for was armed.
    earlier: Notify,
}

struct TimerState<K> {
    at: HashMap<K, Instant>,
    queue: BTreeSet<(Instant, K)>,
}

impl<K: Clone + Ord + Hash> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            state: Mutex::new(TimerState {
                at: HashMap::new(),
                queue: BTreeSet::new(),
            }),
            earlier: Notify::new(),
        }
    }
}

impl<K: Clone + Ord + Hash> Timers<K> {
    /// Asks for `key` to be due at `at`, or earlier if it already is.
    pub fn arm(&self, key: K, at: Instant) {
        let mut state = self.state.lock();
        if let Some(old) = state.at.get(&key).copied() {
            if old <= at {
                return;
            }
            state.queue.remove(&(old, key.clone()));
        }
        let first = state.queue.first().is_none_or(|(next, _)| at < *next);
        state.at.insert(key.clone(), at);
        state.queue.insert((at, key));
        drop(state);
        if first {
            self.earlier.notify_one();
        }
    }

    /// Forgets `key`'s wake-up.
    pub fn cancel(&self, key: &K) {
        let mut state = self.state.lock();
        if let Some(at) = state.at.remove(key) {
            state.queue.remove(&(at, key.clone()));
        }
    }

    /// The keys due at `now`, taken out.
    pub fn take_due(&self, now: Instant) -> Vec<K> {
        let mut state = self.state.lock();
        let mut due = Vec::new();
        while let Some((at, _)) = state.queue.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = state.queue.pop_first() {
                state.at.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Waits until at least one key is due and takes the due ones. Safe
    /// to cancel: keys are taken only when the future completes.
    pub async fn due(&self) -> Vec<K> {
        loop {
            let earlier = self.earlier.notified();
            let next = self.state.lock().queue.first().map(|(at, _)| *at);
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = earlier => {}
                    }
                }
                None => earlier.await,
            }
            let due = self.take_due(Instant::now());
            if !due.is_empty() {
                return due;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Leadership only: which partitions this broker leads, at which epoch.
    struct Leadership(Mutex<HashMap<i32, i32>>);

    impl CoordinatorLog for Leadership {
        fn partition_count(&self, _: &str) -> Option<i32> {
            Some(3)
        }
        fn led_epoch(&self, _: &str, partition: i32) -> Option<i32> {
            self.0.lock().get(&partition).copied()
        }
        fn led_partitions(&self, _: &str) -> Vec<(i32, i32)> {
            self.0.lock().iter().map(|(p, e)| (*p, *e)).collect()
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
        ) -> crate::LogFuture<'a, Result<(), ErrorCode>> {
            Box::pin(async { Err(ErrorCode::NOT_LEADER_OR_FOLLOWER) })
        }
        fn offsets(&self, _: &str, _: i32) -> Option<(i64, i64)> {
            Some((0, 0))
        }
        fn read(&self, _: &str, _: i32, _: i64, _: usize, _: i64) -> Result<Bytes, String> {
            Ok(Bytes::new())
        }
    }

    fn replay_partition(_: &dyn CoordinatorLog, partition: i32) -> Result<i32, String> {
        Ok(partition * 10)
    }

    /// (installed: (partition, epoch, state), unloaded partitions) of one sync.
    async fn sync(
        shards: &Shards,
        log: &Arc<dyn CoordinatorLog>,
    ) -> (Vec<(i32, i32, i32)>, Vec<i32>) {
        let mut installed = Vec::new();
        let mut unloaded = Vec::new();
        shards
            .sync(
                log,
                replay_partition,
                |p, epoch, state| installed.push((p, epoch, state)),
                |partitions, count| {
                    assert_eq!(count, 3);
                    unloaded.extend_from_slice(partitions);
                },
            )
            .await;
        installed.sort();
        unloaded.sort();
        (installed, unloaded)
    }

    #[tokio::test]
    async fn shards_follow_leadership_and_serve_only_at_the_epoch_they_were_loaded_at() {
        let leadership = Arc::new(Leadership(Mutex::new(HashMap::from([(0, 5), (2, 1)]))));
        let log: Arc<dyn CoordinatorLog> = leadership.clone();
        let shards = Shards::new("__test");

        // Led, not loaded yet; not led at all.
        assert_eq!(
            shards.check(&*log, 0),
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        );
        assert_eq!(shards.check(&*log, 1), Err(ErrorCode::NOT_COORDINATOR));

        let (installed, unloaded) = sync(&shards, &log).await;
        assert_eq!(installed, vec![(0, 5, 0), (2, 1, 20)]);
        assert!(unloaded.is_empty());
        assert_eq!(shards.check(&*log, 0), Ok(5));
        assert_eq!(shards.check(&*log, 2), Ok(1));
        assert_eq!(shards.loaded(), HashMap::from([(0, 5), (2, 1)]));

        // Nothing changed: nothing is loaded or unloaded again.
        assert_eq!(sync(&shards, &log).await, (vec![], vec![]));

        // Partition 0 is led at a new epoch (it was led elsewhere
        // meanwhile): it is not served until loaded again. Partition 2
        // moved away; partition 1 arrived.
        *leadership.0.lock() = HashMap::from([(0, 7), (1, 3)]);
        assert_eq!(
            shards.check(&*log, 0),
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        );
        assert_eq!(shards.check(&*log, 2), Err(ErrorCode::NOT_COORDINATOR));
        let (installed, unloaded) = sync(&shards, &log).await;
        assert_eq!(installed, vec![(0, 7, 0), (1, 3, 10)]);
        assert_eq!(unloaded, vec![0, 2]);
        assert_eq!(shards.loaded(), HashMap::from([(0, 7), (1, 3)]));
    }

    #[tokio::test]
    async fn a_failed_replay_is_retried_and_a_waiting_request_is_served_once_loaded() {
        let leadership = Arc::new(Leadership(Mutex::new(HashMap::from([(0, 2)]))));
        let log: Arc<dyn CoordinatorLog> = leadership.clone();
        let shards = Arc::new(Shards::new("__test"));
        let failing =
            |_: &dyn CoordinatorLog, _: i32| -> Result<(), String> { Err("no replica yet".into()) };
        shards.sync(&log, failing, |_, _, _| {}, |_, _| {}).await;
        assert_eq!(
            shards.check(&*log, 0),
            Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
        );

        let waiter = {
            let (shards, log) = (shards.clone(), log.clone());
            tokio::spawn(
                async move { shards.check_loaded(&*log, 0, Duration::from_secs(10)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the request waits for the load");
        let (installed, _) = sync(&shards, &log).await;
        assert_eq!(installed, vec![(0, 2, 0)]);
        assert_eq!(waiter.await.expect("waiter"), Ok(2));

        // A request for a partition led elsewhere does not wait.
        assert_eq!(
            shards.check_loaded(&*log, 1, Duration::from_secs(10)).await,
            Err(ErrorCode::NOT_COORDINATOR)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timers_wake_each_key_at_its_earliest_deadline() {
        let timers: Arc<Timers<&'static str>> = Arc::new(Timers::default());
        let t0 = Instant::now();
        timers.arm("session", t0 + Duration::from_millis(300));
        // A later deadline for a key does not move its wake-up.
        timers.arm("session", t0 + Duration::from_millis(900));
        timers.arm("rebalance", t0 + Duration::from_millis(500));
        timers.arm("gone", t0 + Duration::from_millis(400));
        timers.cancel(&"gone");
        assert_eq!(timers.due().await, ["session"]);
        assert_eq!(Instant::now() - t0, Duration::from_millis(300));
        // An earlier wake-up armed while `due` sleeps ends its sleep.
        let waiting = tokio::spawn({
            let timers = timers.clone();
            async move { timers.due().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        timers.arm("delay", t0 + Duration::from_millis(400));
        assert_eq!(waiting.await.unwrap(), ["delay"]);
        assert_eq!(Instant::now() - t0, Duration::from_millis(400));
        assert_eq!(timers.due().await, ["rebalance"]);
        assert_eq!(
            timers.take_due(t0 + Duration::from_secs(3600)),
            Vec::<&str>::new()
        );
    }
}
