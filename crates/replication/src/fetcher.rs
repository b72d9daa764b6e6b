//! Follower fetchers: one task per source broker, carrying every partition
//! this broker follows there. Each round sends one Fetch with, per
//! partition, the log end offset, the last fetched epoch and the leader
//! epoch from the metadata; answers are applied under the partition's
//! follower-write lock, and only while the metadata still names the same
//! leader and epoch, so nothing from a former leader lands after a change.
//!
//! Every fetch carries this broker's epoch ([`BrokerEpoch`]) as it is when
//! the fetch is sent; no fetch goes out before the broker has registered,
//! so the leader can always tell this incarnation's fetches from a late one
//! of an earlier incarnation (KIP-903).
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
use kraftwerk_rpc::NodeTls;
use kraftwerk_storage::Log;
use kraftwerk_types::{ErrorCode, TopicPartition};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{BrokerEpoch, ReplicaSource, ReplicationConfig};

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
    broker_epoch: BrokerEpoch,
    fetchers: Mutex<HashMap<i32, FetcherHandle>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// TLS toward the leaders' replication listeners (protocol SSL).
    tls: Option<Arc<dyn NodeTls>>,
}

impl FetcherManager {
    /// `broker_epoch` is this broker's, set by the broker at each
    /// registration; the fetchers read it for every fetch.
    pub fn new(
        local_id: i32,
        source: Arc<dyn ReplicaSource>,
        config: ReplicationConfig,
        broker_epoch: BrokerEpoch,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> FetcherManager {
        FetcherManager {
            local_id,
            source,
            config,
            broker_epoch,
            fetchers: Mutex::new(HashMap::new()),
            tls: None,
            shutdown,
            tracker,
        }
    }

    /// Dials the leaders over TLS with `tls`'s client configuration.
    pub fn with_tls(mut self, tls: Option<Arc<dyn NodeTls>>) -> FetcherManager {
        self.tls = tls;
        self
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
                broker_epoch: self.broker_epoch.clone(),
                refusals: HashMap::new(),
                tls: self.tls.clone(),
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
    broker_epoch: BrokerEpoch,
    /// The last refusal per partition, so each new one is logged once.
    refusals: HashMap<TopicPartition, i16>,
    tls: Option<Arc<dyn NodeTls>>,
}

impl Fetcher {
    async fn run(mut self) {
        let endpoint = match kraftwerk_rpc::endpoint(&self.endpoint) {
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
                ),
            Err(e) => {
                tracing::error!(endpoint = %self.endpoint, error = %e, "bad replication endpoint");
                return;
            }
        };
        let channel = kraftwerk_rpc::connect_lazy(endpoint, self.tls.as_ref());
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
            let broker_epoch = self.broker_epoch.get();
            if broker_epoch < 0 {
                // Not registered yet: a fetch without an epoch could not be
                // told apart from one of an earlier incarnation.
                tracing::debug!(
                    leader = self.leader,
                    "waiting for the broker's registration before fetching"
                );
                self.pause(RETRY_BACKOFF).await;
                continue;
            }
            let request = self.build_request(&assigned, broker_epoch);
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
                    let progressed = self.apply(request, r.into_inner()).await;
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

    fn build_request(
        &self,
        assigned: &BTreeMap<TopicPartition, i32>,
        broker_epoch: i64,
    ) -> pb::FetchRequest {
        fetch_request(
            &*self.source,
            self.local_id,
            assigned,
            broker_epoch,
            &self.config,
        )
    }

    /// Applies a fetch response: in place when its appends go to the page
    /// cache, on tokio's blocking pool when one may wait on the disk (it
    /// rolls a segment or reaches `flush.messages`).
    async fn apply(&mut self, request: pb::FetchRequest, response: pb::FetchResponse) -> bool {
        if !appends_may_block(&*self.source, &response) {
            return apply_fetch_response(
                &*self.source,
                self.leader,
                &request,
                response,
                &mut self.refusals,
            );
        }
        let source = self.source.clone();
        let leader = self.leader;
        let mut refusals = std::mem::take(&mut self.refusals);
        let applied = tokio::task::spawn_blocking(move || {
            let progressed =
                apply_fetch_response(&*source, leader, &request, response, &mut refusals);
            (progressed, refusals)
        })
        .await;
        match applied {
            Ok((progressed, refusals)) => {
                self.refusals = refusals;
                progressed
            }
            Err(e) => {
                tracing::error!(leader = self.leader, error = %e, "applying a replica fetch failed");
                false
            }
        }
    }
}

/// Whether appending a fetch response's records may wait on the disk.
fn appends_may_block(source: &dyn ReplicaSource, response: &pb::FetchResponse) -> bool {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    response
        .partitions
        .iter()
        .filter(|p| !p.records.is_empty())
        .any(|p| {
            source
                .replica(&TopicPartition::new(p.topic.clone(), p.partition))
                .is_some_and(|replica| {
                    replica.log().append_may_block(
                        p.records.len(),
                        kraftwerk_protocol::batch::offset_span(&p.records),
                        now_ms,
                    )
                })
        })
}

/// The fetch a follower sends to one leader for the partitions it follows
/// there (`assigned`: partition to leader epoch): from each log's end,
/// with its last fetched epoch.
pub fn fetch_request(
    source: &dyn ReplicaSource,
    local_id: i32,
    assigned: &BTreeMap<TopicPartition, i32>,
    broker_epoch: i64,
    config: &ReplicationConfig,
) -> pb::FetchRequest {
    let mut partitions = Vec::with_capacity(assigned.len());
    for (tp, epoch) in assigned {
        let Some(replica) = source.replica(tp) else {
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
        replica_id: local_id,
        broker_epoch,
        max_wait_ms: config.replica_fetch_wait_max_ms,
        min_bytes: config.replica_fetch_min_bytes,
        max_bytes: config.replica_fetch_max_bytes,
        partitions,
    }
}

/// Applies one answer of `leader` to the fetch `request`: truncation, data,
/// the high watermark. Returns whether any partition made progress (data,
/// truncation or a clean empty answer), so the fetcher backs off only when
/// everything failed. `refusals` remembers the last refusal per partition,
/// so each new one is logged once. A free function so that the
/// deterministic simulation (`crates/sim`) drives the same code.
pub fn apply_fetch_response(
    source: &dyn ReplicaSource,
    leader: i32,
    request: &pb::FetchRequest,
    response: pb::FetchResponse,
    refusals: &mut HashMap<TopicPartition, i16>,
) -> bool {
    let mut progressed = false;
    for (sent, got) in request.partitions.iter().zip(response.partitions) {
        if got.topic != sent.topic || got.partition != sent.partition {
            tracing::warn!(leader, "fetch response out of order; dropped");
            return false;
        }
        let tp = TopicPartition::new(sent.topic.clone(), sent.partition);
        let Some(replica) = source.replica(&tp) else {
            continue;
        };
        let state = replica.replication();
        let _writes = state.lock_follower_writes();
        let view = state.view();
        if view.leader != leader || view.leader_epoch != sent.current_leader_epoch {
            continue;
        }
        let log = replica.log();
        if log.log_end_offset() != sent.fetch_offset {
            continue;
        }
        let code = ErrorCode(got.error_code as i16);
        if code == ErrorCode::NONE {
            if !refusals.is_empty() {
                refusals.remove(&tp);
            }
        } else if refusals.insert(tp.clone(), code.code()) != Some(code.code()) {
            tracing::info!(partition = %tp.topic, index = tp.partition, leader, code = code.code(), "replica fetch refused by the leader");
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
            tracing::info!(partition = %tp.topic, index = tp.partition, leader, diverging_epoch = d.epoch, leader_end_offset = d.end_offset, truncate_to = to, "truncating to the leader's epoch boundary");
            if let Err(e) = log.truncate_to(to) {
                tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "truncation failed");
            }
            state.clamp_high_watermark(log.log_end_offset());
            continue;
        }
        if !got.records.is_empty() {
            match log.append_as_follower(got.records) {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "follower append failed");
                    continue;
                }
            }
        }
        state.set_follower_high_watermark(got.high_watermark, log.log_end_offset());
        // DeleteRecords on the leader: the follower's log start follows,
        // up to what it holds (Kafka's follower does the same).
        let leader_log_start = got.log_start_offset.min(log.log_end_offset());
        if leader_log_start > log.log_start_offset() {
            if let Err(e) = log.advance_log_start_offset(leader_log_start) {
                tracing::error!(partition = %tp.topic, index = tp.partition, error = %e, "moving the log start offset failed");
            }
        }
    }
    progressed
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalReplica, PartitionReplication, PartitionView};
    use kraftwerk_rpc::replication::replication_server::{Replication, ReplicationServer};
    use kraftwerk_types::LogConfig;
    use tokio::sync::mpsc;
    use tonic::transport::Server;

    struct Follower {
        log: Log,
        replication: PartitionReplication,
    }

    impl LocalReplica for Follower {
        fn log(&self) -> &Log {
            &self.log
        }
        fn replication(&self) -> &PartitionReplication {
            &self.replication
        }
    }

    struct OnePartition {
        tp: TopicPartition,
        replica: Arc<Follower>,
    }

    impl ReplicaSource for OnePartition {
        fn replica(&self, tp: &TopicPartition) -> Option<Arc<dyn LocalReplica>> {
            (*tp == self.tp).then(|| self.replica.clone() as Arc<dyn LocalReplica>)
        }
        fn all_replicas(&self) -> Vec<(TopicPartition, Arc<dyn LocalReplica>)> {
            vec![(
                self.tp.clone(),
                self.replica.clone() as Arc<dyn LocalReplica>,
            )]
        }
    }

    /// A leader that answers every fetch with nothing and reports who sent
    /// it with which broker epoch.
    struct RecordingLeader {
        seen: mpsc::Sender<(i32, i64)>,
    }

    #[tonic::async_trait]
    impl Replication for RecordingLeader {
        async fn fetch(
            &self,
            request: tonic::Request<pb::FetchRequest>,
        ) -> Result<tonic::Response<pb::FetchResponse>, tonic::Status> {
            let r = request.into_inner();
            let _ = self.seen.try_send((r.replica_id, r.broker_epoch));
            Ok(tonic::Response::new(pb::FetchResponse::default()))
        }

        async fn write_txn_markers(
            &self,
            _request: tonic::Request<pb::WriteTxnMarkersRequest>,
        ) -> Result<tonic::Response<pb::WriteTxnMarkersResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("a fetch-only test leader"))
        }

        async fn verify_transaction(
            &self,
            _request: tonic::Request<pb::VerifyTransactionRequest>,
        ) -> Result<tonic::Response<pb::VerifyTransactionResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("a fetch-only test leader"))
        }

        async fn high_watermarks(
            &self,
            _request: tonic::Request<pb::HighWatermarksRequest>,
        ) -> Result<tonic::Response<pb::HighWatermarksResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("a fetch-only test leader"))
        }
    }

    #[tokio::test]
    async fn fetches_carry_the_broker_epoch_once_registered() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tp = TopicPartition::new("t", 0);
        let log = Log::open(dir.path().join("t-0"), LogConfig::default()).expect("log opens");
        let view = PartitionView {
            leader: 1,
            leader_epoch: 3,
            partition_epoch: 3,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            min_insync_replicas: 1,
            fenced: Vec::new(),
        };
        let replica = Arc::new(Follower {
            log,
            replication: PartitionReplication::new(2, view, 0),
        });
        let source = Arc::new(OnePartition {
            tp: tp.clone(),
            replica,
        });

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound address");
        let (seen_tx, mut seen) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let server_shutdown = shutdown.clone();
        let server = tokio::spawn(
            Server::builder()
                .add_service(ReplicationServer::new(RecordingLeader { seen: seen_tx }))
                .serve_with_incoming_shutdown(
                    kraftwerk_rpc::incoming(listener, None),
                    async move { server_shutdown.cancelled().await },
                ),
        );

        let broker_epoch = BrokerEpoch::unknown();
        let tracker = TaskTracker::new();
        let config = ReplicationConfig {
            replica_fetch_wait_max_ms: 10,
            ..ReplicationConfig::default()
        };
        let fetchers = FetcherManager::new(
            2,
            source,
            config,
            broker_epoch.clone(),
            shutdown.clone(),
            tracker.clone(),
        );
        fetchers.update(
            &[FollowAssignment {
                tp,
                leader: 1,
                leader_epoch: 3,
            }],
            &HashMap::from([(1, addr.to_string())]),
        );

        let within = |d: u64| Duration::from_millis(d);
        assert!(
            tokio::time::timeout(within(500), seen.recv())
                .await
                .is_err(),
            "no fetch before the broker has registered"
        );
        broker_epoch.set(42);
        let first = tokio::time::timeout(within(10_000), seen.recv()).await;
        assert_eq!(first.ok(), Some(Some((2, 42))));
        // The broker registers again: the following fetches carry the new epoch.
        broker_epoch.set(57);
        let mut latest = None;
        for _ in 0..100 {
            let got = tokio::time::timeout(within(10_000), seen.recv()).await;
            latest = got.ok().flatten();
            if latest != Some((2, 42)) {
                break;
            }
        }
        assert_eq!(latest, Some((2, 57)));

        shutdown.cancel();
        tracker.close();
        assert!(
            tokio::time::timeout(within(10_000), tracker.wait())
                .await
                .is_ok(),
            "fetchers stop"
        );
        let stopped = tokio::time::timeout(within(10_000), server).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "server stops");
    }
}
