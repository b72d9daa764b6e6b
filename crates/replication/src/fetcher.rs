//! Follower fetchers: one task per source broker, carrying every partition
//! this broker follows there. Each round sends one Fetch with, per
//! partition, the log end offset, the last fetched epoch and the leader
//! epoch from the metadata; answers are applied under the partition's
//! follower-write lock, and only while the metadata still names the same
//! leader and epoch, so nothing from a former leader lands after a change.
//!
//! Truncation (KIP-279/320): a diverging epoch `(epoch, end)` from the
//! leader makes the follower cut its log at `min(end, own end of epoch)`
//! when it knows that epoch, else at its own end of the largest epoch
//! below; the next fetch then checks again until both agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_rpc::replication as pb;
use kraftwerk_rpc::replication::replication_client::ReplicationClient;
use kraftwerk_storage::Log;
use kraftwerk_types::{ErrorCode, TopicPartition};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Endpoint;

use crate::{ReplicaSource, ReplicationConfig};

/// Added to `replica.fetch.wait.max.ms` for the RPC timeout.
pub const RPC_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed RPC or a round with only errors.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// gRPC message size bound for fetch responses.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A partition this broker follows: whom from, at which leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowAssignment {
    pub tp: TopicPartition,
    pub leader: i32,
    pub leader_epoch: i32,
}

struct FetcherHandle {
    endpoint: String,
    partitions: Arc<Mutex<BTreeMap<TopicPartition, i32>>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

/// Starts, updates and stops the fetchers as the metadata changes.
pub struct FetcherManager {
    local_id: i32,
    source: Arc<dyn ReplicaSource>,
    config: ReplicationConfig,
    fetchers: Mutex<HashMap<i32, FetcherHandle>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl FetcherManager {
    pub fn new(
        local_id: i32,
        source: Arc<dyn ReplicaSource>,
        config: ReplicationConfig,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> FetcherManager {
        FetcherManager {
            local_id,
            source,
            config,
            fetchers: Mutex::new(HashMap::new()),
            shutdown,
            tracker,
        }
    }

    /// Makes the fetchers match `assignments`; `endpoints` maps broker ids
    /// to their replication `host:port`. Must run inside a tokio runtime.
    pub fn update(&self, assignments: &[FollowAssignment], endpoints: &HashMap<i32, String>) {
        let mut by_leader: HashMap<i32, BTreeMap<TopicPartition, i32>> = HashMap::new();
        for a in assignments {
            if a.leader < 0 || a.leader == self.local_id {
                continue;
            }
            by_leader
                .entry(a.leader)
                .or_default()
                .insert(a.tp.clone(), a.leader_epoch);
        }
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|leader, handle| {
            let keep = by_leader.contains_key(leader)
                && endpoints.get(leader).is_some_and(|e| *e == handle.endpoint);
            if !keep {
                handle.cancel.cancel();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            if let Some(handle) = fetchers.get(&leader) {
                let mut current = handle.partitions.lock();
                if *current != partitions {
                    *current = partitions;
                    handle.wake.notify_one();
                }
                continue;
            }
            let Some(endpoint) = endpoints.get(&leader) else {
                tracing::warn!(
                    leader,
                    "no replication endpoint known for the leader; not fetching yet"
                );
                continue;
            };
            let handle = FetcherHandle {
                endpoint: endpoint.clone(),
                partitions: Arc::new(Mutex::new(partitions)),
                wake: Arc::new(Notify::new()),
                cancel: self.shutdown.child_token(),
            };
            let fetcher = Fetcher {
                local_id: self.local_id,
                leader,
                endpoint: endpoint.clone(),
                partitions: handle.partitions.clone(),
                wake: handle.wake.clone(),
                cancel: handle.cancel.clone(),
                source: self.source.clone(),
                config: self.config.clone(),
                refusals: HashMap::new(),
            };
            tracing::info!(leader, endpoint = %endpoint, "starting replica fetcher");
            self.tracker.spawn(fetcher.run());
            fetchers.insert(leader, handle);
        }
    }

    /// The partitions each fetcher carries, for diagnostics and tests.
    pub fn assignments(&self) -> BTreeMap<i32, Vec<TopicPartition>> {
        self.fetchers
            .lock()
            .iter()
            .map(|(l, h)| (*l, h.partitions.lock().keys().cloned().collect()))
            .collect()
    }
}

struct Fetcher {
    local_id: i32,
    leader: i32,
    endpoint: String,
    partitions: Arc<Mutex<BTreeMap<TopicPartition, i32>>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    source: Arc<dyn ReplicaSource>,
    config: ReplicationConfig,
    /// The last refusal per partition, so each new one is logged once.
    refusals: HashMap<TopicPartition, i16>,
}

impl Fetcher {
    async fn run(mut self) {
        let channel = match Endpoint::from_shared(format!("http://{}", self.endpoint)) {
            Ok(e) => e
                .connect_timeout(CONNECT_TIMEOUT)
                // Finds a connection to a leader that vanished without a
                // reset (network cut) dead within seconds.
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .timeout(
                    Duration::from_millis(self.config.replica_fetch_wait_max_ms as u64)
                        + RPC_TIMEOUT_MARGIN,
                )
                .connect_lazy(),
            Err(e) => {
                tracing::error!(endpoint = %self.endpoint, error = %e, "bad replication endpoint");
                return;
            }
        };
        let mut client =
            ReplicationClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let assigned = self.partitions.lock().clone();
            if assigned.is_empty() {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            }
            let request = self.build_request(&assigned);
            if request.partitions.is_empty() {
                self.pause(RETRY_BACKOFF).await;
                continue;
            }
            let response = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = client.fetch(request.clone()) => r,
            };
            match response {
                Ok(r) => {
                    let progressed = self.apply(&request, r.into_inner());
                    if !progressed {
                        self.pause(RETRY_BACKOFF).await;
                    }
                }
                Err(status) => {
                    tracing::debug!(leader = self.leader, error = %status.message(), "replica fetch failed");
                    self.pause(RETRY_BACKOFF).await;
                }
            }
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }

    fn build_request(&self, assigned: &BTreeMap<TopicPartition, i32>) -> pb::FetchRequest {
        let mut partitions = Vec::with_capacity(assigned.len());
        for (tp, epoch) in assigned {
            let Some(replica) = self.source.replica(tp) else {
                continue;
            };
            let log = replica.log();
            partitions.push(pb::FetchPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                fetch_offset: log.log_end_offset(),
                last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
                current_leader_epoch: *epoch,
            });
        }
        pb::FetchRequest {
            replica_id: self.local_id,
            broker_epoch: -1,
            max_wait_ms: self.config.replica_fetch_wait_max_ms,
            min_bytes: self.config.replica_fetch_min_bytes,
            max_bytes: self.config.replica_fetch_max_bytes,
            partitions,
        }
    }

    /// Applies one response. Returns whether any partition made progress
    /// (data, truncation or a clean empty answer), so the loop backs off
    /// only when everything failed.
    fn apply(&mut self, request: &pb::FetchRequest, response: pb::FetchResponse) -> bool {
        let mut progressed = false;
        let mut appended = false;
        for (sent, got) in request.partitions.iter().zip(response.partitions) {
            if got.topic != sent.topic || got.partition != sent.partition {
                tracing::warn!(leader = self.leader, "fetch response out of order; dropped");
                return false;
            }
            let tp = TopicPartition::new(sent.topic.clone(), sent.partition);
            let Some(replica) = self.source.replica(&tp) else {
                continue;
            };
            let state = replica.replication();
            let _writes = state.lock_follower_writes();
            let view = state.view();
            if view.leader != self.leader || view.leader_epoch != sent.current_leader_epoch {
                continue;
            }
            let log = replica.log();
            if log.log_end_offset() != sent.fetch_offset {
                continue;
            }
            let code = ErrorCode(got.error_code as i16);
            if code == ErrorCode::NONE {
                if !self.refusals.is_empty() {
                    self.refusals.remove(&tp);
                }
            } else if self.refusals.insert(tp.clone(), code.code()) != Some(code.code()) {
                tracing::info!(partition = %tp.topic, index = tp.partition, leader = self.leader, code = code.code(), "replica fetch refused by the leader");
            }
            match code {
                ErrorCode::NONE => {}
                ErrorCode::OFFSET_OUT_OF_RANGE if got.log_end_offset >= 0 => {
                    // Only after an unclean election can the follower be
                    // ahead of a leader without a diverging epoch.
                    if sent.fetch_offset > got.log_end_offset {
                        tracing::warn!(partition = %tp.topic, index = tp.partition, to = got.log_end_offset, "follower ahead of the leader; truncating");
                        if let Err(e) = log.truncate_to(got.log_end_offset) {
                            tracing::error!(error = %e, "truncation failed");
                        }
                        state.clamp_high_watermark(log.log_end_offset());
                        progressed = true;
                    } else if sent.fetch_offset < got.log_start_offset {
                        // The leader deleted what this follower still
                        // needs (retention ran meanwhile): as in Kafka, the
                        // follower drops its log and starts over at the
                        // leader's log start offset.
                        tracing::warn!(partition = %tp.topic, index = tp.partition, fetch_offset = sent.fetch_offset, leader_log_start = got.log_start_offset, "follower is behind the leader's log start; restarting its log there");
                        match log.truncate_fully_and_start_at(got.log_start_offset) {
                            Ok(()) => progressed = true,
                            Err(e) => {
                                tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "restarting the log failed")
                            }
                        }
                        state.clamp_high_watermark(log.log_end_offset());
                    }
                    continue;
                }
                _ => continue,
            }
            progressed = true;
            if let Some(d) = got.diverging_epoch {
                let to = truncation_offset(log, d.epoch, d.end_offset, state.high_watermark());
                tracing::info!(partition = %tp.topic, index = tp.partition, leader = self.leader, diverging_epoch = d.epoch, leader_end_offset = d.end_offset, truncate_to = to, "truncating to the leader's epoch boundary");
                if let Err(e) = log.truncate_to(to) {
                    tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "truncation failed");
                }
                state.clamp_high_watermark(log.log_end_offset());
                continue;
            }
            if !got.records.is_empty() {
                match log.append_as_follower(got.records) {
                    Ok(_) => appended = true,
                    Err(e) => {
                        tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "follower append failed");
                        continue;
                    }
                }
            }
            state.set_follower_high_watermark(got.high_watermark, log.log_end_offset());
        }
        if appended {
            self.source.notify_appended();
        }
        progressed
    }
}

/// Where a follower cuts its log given the leader's diverging epoch.
pub fn truncation_offset(log: &Log, leader_epoch: i32, leader_end_offset: i64, hw: i64) -> i64 {
    let log_end_offset = log.log_end_offset();
    if leader_end_offset < 0 {
        // The leader has no epoch at or below ours: nothing past the first
        // epoch we both might share is safe; keep what is committed.
        return hw.min(log_end_offset);
    }
    match log.end_offset_for_epoch(leader_epoch) {
        Some((epoch, end)) if epoch == leader_epoch => {
            leader_end_offset.min(end).min(log_end_offset)
        }
        Some((_, end)) => end.min(leader_end_offset).min(log_end_offset),
        None => log
            .epoch_entries()
            .first()
            .map(|(_, start)| *start)
            .unwrap_or(log_end_offset)
            .min(leader_end_offset),
    }
}
