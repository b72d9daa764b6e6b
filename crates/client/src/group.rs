//! Consumer groups over Kafka's classic group protocol: coordinator lookup,
//! JoinGroup / SyncGroup with client-side "range" and "roundrobin"
//! assignors, a background heartbeat, offset commits and fetches, and the
//! group half of [`Admin`].
//!
//! The membership is eager, as the Java client's default assignors are: on
//! every rebalance all partitions are revoked (after an auto-commit) and the
//! new assignment starts from the committed offsets.
//!
//! Timeouts and their rule: `heartbeat_interval_ms` < `session_timeout_ms`
//! (the broker evicts a member that stays silent for a session), and the
//! JoinGroup request may wait up to `rebalance_timeout_ms`, so the
//! coordinator connection's request timeout is
//! `max(request.timeout.ms, rebalance_timeout_ms + JOIN_GROUP_SLACK_MS)`.
//! Every other coordinator request is bounded by `request.timeout.ms`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, Request, StrBytes};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::cluster::Cluster;
use crate::connection::Connection;
use crate::consumer::{Consumer, PartitionState};
use crate::error::{codec, ClientError, Result};
use crate::ClientConfig;

/// The protocol type of consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// Attempts of one coordinator request (each may rediscover the coordinator).
const COORDINATOR_ATTEMPTS_MAX: usize = 50;
/// Pause between coordinator attempts.
const COORDINATOR_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// JoinGroup / SyncGroup rounds of one rejoin before giving up.
const REJOIN_ROUNDS_MAX: usize = 20;
/// Extra time a JoinGroup may take beyond the rebalance timeout.
const JOIN_GROUP_SLACK_MS: u64 = 5_000;
/// Version of ConsumerProtocolSubscription we send (topics, owned partitions).
const SUBSCRIPTION_VERSION: i16 = 1;
/// Version of ConsumerProtocolAssignment we send.
const ASSIGNMENT_VERSION: i16 = 1;

/// `partition.assignment.strategy`: computed by the group leader, client-side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Kafka's RangeAssignor: consecutive ranges of each topic's partitions.
    #[default]
    Range,
    /// Kafka's RoundRobinAssignor: all partitions dealt in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name in JoinGroup, as the Java client spells it.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }
}

/// Group settings of a subscribing consumer, named and defaulted as in the
/// Java client.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`
    pub group_id: String,
    /// `session.timeout.ms`
    pub session_timeout_ms: u64,
    /// `max.poll.interval.ms`, sent as the rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// `heartbeat.interval.ms`; must be below `session_timeout_ms`.
    pub heartbeat_interval_ms: u64,
    /// `group.instance.id` (static membership).
    pub group_instance_id: Option<String>,
    /// `partition.assignment.strategy`
    pub assignor: Assignor,
    /// `enable.auto.commit`
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`
    pub auto_commit_interval_ms: u64,
}

impl GroupConfig {
    /// Defaults for the given group id.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            heartbeat_interval_ms: 3_000,
            group_instance_id: None,
            assignor: Assignor::Range,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.group_id.is_empty() {
            return Err(ClientError::Config("group.id is empty".into()));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return Err(ClientError::Config(
                "heartbeat.interval.ms must be above 0 and below session.timeout.ms".into(),
            ));
        }
        Ok(())
    }
}

/// Told about partitions taken away and handed out by a rebalance.
pub trait RebalanceListener: Send {
    /// Called before a rejoin (and on close) with the partitions given up.
    fn on_partitions_revoked(&mut self, partitions: &[(String, i32)]);
    /// Called after a rebalance with the new assignment.
    fn on_partitions_assigned(&mut self, partitions: &[(String, i32)]);
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn is_coordinator_code(code: i16) -> bool {
    code == ResponseError::NotCoordinator.code()
        || code == ResponseError::CoordinatorNotAvailable.code()
        || code == ResponseError::CoordinatorLoadInProgress.code()
}

/// The connection to one group's coordinator, found with FindCoordinator
/// and found again when the coordinator moves.
pub(crate) struct CoordinatorLink {
    cluster: Arc<Cluster>,
    group_id: String,
    /// Settings of the coordinator connection (longer request timeout).
    connection_config: ClientConfig,
    request_timeout: Duration,
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// FindCoordinator's key type: 0 for a group, 1 for a transactional id.
    key_type: i8,
    /// The node id of the coordinator last found, -1 before.
    coordinator_id: std::sync::atomic::AtomicI32,
}

impl CoordinatorLink {
    pub(crate) fn new(cluster: Arc<Cluster>, group_id: &str, longest_wait_ms: u64) -> Self {
        let mut connection_config = cluster.config().clone();
        let request_timeout_ms = connection_config.request_timeout_ms.max(1);
        connection_config.request_timeout_ms = request_timeout_ms.max(longest_wait_ms);
        CoordinatorLink {
            cluster,
            group_id: group_id.to_string(),
            connection_config,
            request_timeout: Duration::from_millis(request_timeout_ms),
            current: tokio::sync::Mutex::new(None),
            key_type: 0,
            coordinator_id: std::sync::atomic::AtomicI32::new(-1),
        }
    }

    /// The link to a transactional id's transaction coordinator.
    pub(crate) fn for_transaction(cluster: Arc<Cluster>, transactional_id: &str) -> Self {
        CoordinatorLink {
            key_type: 1,
            ..CoordinatorLink::new(cluster, transactional_id, 0)
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let connection = Arc::new(self.find().await?);
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the coordinator; the next request looks it up again.
    pub(crate) async fn forget(&self) {
        *self.current.lock().await = None;
    }

    async fn find(&self) -> Result<Connection> {
        let mut last_error =
            ClientError::kafka(ResponseError::CoordinatorNotAvailable.code(), None);
        for attempt in 0..COORDINATOR_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(COORDINATOR_RETRY_BACKOFF).await;
            }
            let any = match self.cluster.any_connection().await {
                Ok(connection) => connection,
                Err(err) if err.is_retriable() => {
                    last_error = err;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let version = any.version_for::<FindCoordinatorRequest>()?;
            let mut request = FindCoordinatorRequest::default().with_key_type(self.key_type);
            if version >= 4 {
                request.coordinator_keys = vec![str_bytes(&self.group_id)];
            } else {
                request.key = str_bytes(&self.group_id);
            }
            let response = match any.send_version(request, version).await {
                Ok(response) => response,
                Err(err) if err.is_retriable() => {
                    self.cluster.forget_connection(&any).await;
                    last_error = err;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let (code, message, host, port, node_id) = if version >= 4 {
                let Some(found) = response.coordinators.first() else {
                    return Err(ClientError::Protocol(
                        "FindCoordinator returned no coordinator".into(),
                    ));
                };
                (
                    found.error_code,
                    found.error_message.clone(),
                    found.host.to_string(),
                    found.port,
                    found.node_id.0,
                )
            } else {
                (
                    response.error_code,
                    response.error_message.clone(),
                    response.host.to_string(),
                    response.port,
                    response.node_id.0,
                )
            };
            if is_coordinator_code(code) {
                last_error = ClientError::kafka(code, message.as_ref());
                continue;
            }
            ClientError::check(code, message.as_ref())?;
            self.coordinator_id
                .store(node_id, std::sync::atomic::Ordering::Relaxed);
            let addr = format!("{host}:{port}");
            match Connection::connect(&addr, &self.connection_config).await {
                Ok(connection) => {
                    tracing::debug!(group = %self.group_id, addr, "found the group coordinator");
                    return Ok(connection);
                }
                Err(err) if err.is_retriable() => last_error = err,
                Err(err) => return Err(err),
            }
        }
        Err(last_error)
    }

    /// Sends a request built for the negotiated version to the coordinator.
    /// `coordinator_code` picks the error code that says whether the
    /// coordinator moved; such answers and lost connections are retried
    /// (bounded) against a rediscovered coordinator. `wait` bounds one attempt.
    pub(crate) async fn send<R, F>(
        &self,
        build: F,
        coordinator_code: fn(&R::Response) -> i16,
        wait: Option<Duration>,
    ) -> Result<R::Response>
    where
        R: Request,
        F: Fn(i16) -> R,
    {
        let wait = wait.unwrap_or(self.request_timeout);
        let mut last_error =
            ClientError::kafka(ResponseError::CoordinatorNotAvailable.code(), None);
        for attempt in 0..COORDINATOR_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(COORDINATOR_RETRY_BACKOFF).await;
            }
            let connection = self.connection().await?;
            let version = connection.version_for::<R>()?;
            let sent = tokio::time::timeout(wait, connection.send_version(build(version), version))
                .await
                .unwrap_or(Err(ClientError::Timeout));
            let response = match sent {
                Ok(response) => response,
                Err(err) if err.is_retriable() => {
                    self.forget().await;
                    last_error = err;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let code = coordinator_code(&response);
            if is_coordinator_code(code) {
                if code != ResponseError::CoordinatorLoadInProgress.code() {
                    self.forget().await;
                }
                last_error = ClientError::kafka(code, None);
                continue;
            }
            return Ok(response);
        }
        Err(last_error)
    }

    /// [`Self::send`], and the node id of the coordinator that answered.
    pub(crate) async fn send_with_node<R, F>(
        &self,
        build: F,
        coordinator_code: fn(&R::Response) -> i16,
    ) -> Result<(R::Response, i32)>
    where
        R: Request,
        F: Fn(i16) -> R,
    {
        let response = self.send(build, coordinator_code, None).await?;
        Ok((
            response,
            self.coordinator_id
                .load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Committed offsets of the group (-1 where none); `None` asks for all.
    pub(crate) async fn fetch_offsets(
        &self,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<((String, i32), i64)>> {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions.unwrap_or_default() {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        let all = partitions.is_none();
        let group_id = self.group_id.clone();
        let response = self
            .send(
                |version| {
                    let mut request = OffsetFetchRequest::default();
                    if version >= 8 {
                        let mut group = OffsetFetchRequestGroup::default();
                        group.group_id = GroupId(str_bytes(&group_id));
                        group.member_epoch = -1;
                        group.topics = (!all).then(|| {
                            by_topic
                                .iter()
                                .map(|(name, indexes)| {
                                    let mut topic = OffsetFetchRequestTopics::default();
                                    topic.name = TopicName(str_bytes(name));
                                    topic.partition_indexes = indexes.clone();
                                    topic
                                })
                                .collect()
                        });
                        request.groups = vec![group];
                    } else {
                        request.group_id = GroupId(str_bytes(&group_id));
                        request.topics = (!all).then(|| {
                            by_topic
                                .iter()
                                .map(|(name, indexes)| {
                                    let mut topic = OffsetFetchRequestTopic::default();
                                    topic.name = TopicName(str_bytes(name));
                                    topic.partition_indexes = indexes.clone();
                                    topic
                                })
                                .collect()
                        });
                    }
                    request
                },
                |response| {
                    response
                        .groups
                        .first()
                        .map_or(response.error_code, |g| g.error_code)
                },
                None,
            )
            .await?;
        let mut out = Vec::new();
        if let Some(group) = response.groups.first() {
            ClientError::check(group.error_code, None)?;
            for topic in &group.topics {
                for p in &topic.partitions {
                    ClientError::check(p.error_code, None)?;
                    out.push((
                        (topic.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    ));
                }
            }
        } else {
            ClientError::check(response.error_code, None)?;
            for topic in &response.topics {
                for p in &topic.partitions {
                    ClientError::check(p.error_code, None)?;
                    out.push((
                        (topic.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// OffsetCommit as `member_id` of `generation_id` (-1 / "" for an admin
    /// commit to an Empty group). Fails with the first partition's error.
    pub(crate) async fn commit_offsets(
        &self,
        offsets: &[((String, i32), i64)],
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic
                .entry(topic.clone())
                .or_default()
                .push((*partition, *offset));
        }
        let group_id = self.group_id.clone();
        let response = self
            .send(
                |version| {
                    let mut request = OffsetCommitRequest::default();
                    request.group_id = GroupId(str_bytes(&group_id));
                    request.generation_id_or_member_epoch = generation_id;
                    request.member_id = str_bytes(member_id);
                    if version >= 7 {
                        request.group_instance_id = group_instance_id.map(str_bytes);
                    }
                    if (2..=4).contains(&version) {
                        request.retention_time_ms = -1;
                    }
                    request.topics = by_topic
                        .iter()
                        .map(|(name, partitions)| {
                            let mut topic = OffsetCommitRequestTopic::default();
                            topic.name = TopicName(str_bytes(name));
                            topic.partitions = partitions
                                .iter()
                                .map(|(index, offset)| {
                                    let mut p = OffsetCommitRequestPartition::default();
                                    p.partition_index = *index;
                                    p.committed_offset = *offset;
                                    p.committed_leader_epoch = -1;
                                    p.committed_metadata = Some(StrBytes::default());
                                    p
                                })
                                .collect();
                            topic
                        })
                        .collect();
                    request
                },
                |response| {
                    response
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.error_code)
                        .find(|code| is_coordinator_code(*code))
                        .unwrap_or(0)
                },
                None,
            )
            .await?;
        for topic in &response.topics {
            for p in &topic.partitions {
                ClientError::check(p.error_code, None)?;
            }
        }
        Ok(())
    }
}

/// Flags the heartbeat task raises for the next `poll`.
#[derive(Debug, Default)]
struct HeartbeatSignals {
    rejoin_needed: AtomicBool,
    /// The coordinator no longer knows our member id (or generation): rejoin
    /// with a fresh member id.
    member_reset: AtomicBool,
    coordinator_lost: AtomicBool,
}

/// The background heartbeat; aborted when dropped.
struct HeartbeatTask {
    handle: JoinHandle<()>,
}

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// What one heartbeat needs to know, captured at the start of a generation.
struct HeartbeatTarget {
    connection: Arc<Connection>,
    group_id: String,
    member_id: String,
    generation_id: i32,
    group_instance_id: Option<String>,
    interval: Duration,
    /// One heartbeat may wait at most this long.
    wait: Duration,
}

async fn heartbeat_loop(target: HeartbeatTarget, signals: Arc<HeartbeatSignals>) {
    let Ok(version) = target.connection.version_for::<HeartbeatRequest>() else {
        signals.coordinator_lost.store(true, Ordering::SeqCst);
        return;
    };
    loop {
        tokio::time::sleep(target.interval).await;
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(str_bytes(&target.group_id));
        request.generation_id = target.generation_id;
        request.member_id = str_bytes(&target.member_id);
        if version >= 3 {
            request.group_instance_id = target.group_instance_id.as_deref().map(str_bytes);
        }
        let sent = tokio::time::timeout(
            target.wait,
            target.connection.send_version(request, version),
        )
        .await;
        let code = match sent {
            Ok(Ok(response)) => response.error_code,
            Ok(Err(err)) => {
                tracing::debug!(%err, "heartbeat failed");
                signals.coordinator_lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(_) => {
                signals.coordinator_lost.store(true, Ordering::SeqCst);
                return;
            }
        };
        match ResponseError::try_from_code(code) {
            None => {}
            Some(ResponseError::RebalanceInProgress) => {
                // Keep the session alive until poll rejoins.
                signals.rejoin_needed.store(true, Ordering::SeqCst);
            }
            Some(
                ResponseError::UnknownMemberId
                | ResponseError::IllegalGeneration
                | ResponseError::FencedInstanceId,
            ) => {
                tracing::info!(code, "heartbeat: membership lost, rejoining");
                signals.member_reset.store(true, Ordering::SeqCst);
                signals.rejoin_needed.store(true, Ordering::SeqCst);
                return;
            }
            Some(ResponseError::CoordinatorLoadInProgress) => {}
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                signals.coordinator_lost.store(true, Ordering::SeqCst);
                return;
            }
            Some(other) => tracing::warn!(%other, "heartbeat error"),
        }
    }
}

/// A consumer's membership in one group.
pub(crate) struct GroupMembership {
    config: GroupConfig,
    topics: Vec<String>,
    /// Behind a lock only so that the consumer stays `Sync`; the consumer's
    /// `&mut self` already serialises the calls.
    listener: Option<parking_lot::Mutex<Box<dyn RebalanceListener>>>,
    link: CoordinatorLink,
    member_id: String,
    generation_id: i32,
    joined: bool,
    signals: Arc<HeartbeatSignals>,
    heartbeat: Option<HeartbeatTask>,
    next_auto_commit: Instant,
}

impl GroupMembership {
    fn start_heartbeat(&mut self, connection: Arc<Connection>) {
        let target = HeartbeatTarget {
            connection,
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
            generation_id: self.generation_id,
            group_instance_id: self.config.group_instance_id.clone(),
            interval: Duration::from_millis(self.config.heartbeat_interval_ms),
            wait: Duration::from_millis(self.config.session_timeout_ms),
        };
        self.heartbeat = Some(HeartbeatTask {
            handle: tokio::spawn(heartbeat_loop(target, self.signals.clone())),
        });
    }

    fn revoke(&mut self, owned: &[(String, i32)]) {
        if let Some(listener) = self.listener.as_mut() {
            listener.get_mut().on_partitions_revoked(owned);
        }
    }

    /// The positions worth committing.
    fn positions(
        assignment: &IndexMap<(String, i32), PartitionState>,
    ) -> Vec<((String, i32), i64)> {
        assignment
            .iter()
            .filter_map(|(k, s)| s.position.map(|p| (k.clone(), p)))
            .collect()
    }

    async fn commit(&self, offsets: &[((String, i32), i64)]) -> Result<()> {
        let result = self
            .link
            .commit_offsets(
                offsets,
                self.generation_id,
                &self.member_id,
                self.config.group_instance_id.as_deref(),
            )
            .await;
        if let Err(err) = &result {
            match err.code().and_then(ResponseError::try_from_code) {
                Some(ResponseError::RebalanceInProgress) => {
                    self.signals.rejoin_needed.store(true, Ordering::SeqCst);
                }
                Some(ResponseError::UnknownMemberId | ResponseError::IllegalGeneration) => {
                    self.signals.member_reset.store(true, Ordering::SeqCst);
                    self.signals.rejoin_needed.store(true, Ordering::SeqCst);
                }
                _ => {}
            }
        }
        result
    }

    /// Runs JoinGroup and SyncGroup until a generation is reached; returns
    /// this member's assignment.
    async fn join(&mut self, cluster: &Cluster) -> Result<Vec<(String, i32)>> {
        self.heartbeat = None;
        let metadata = encode_versioned(
            &{
                let mut subscription = ConsumerProtocolSubscription::default();
                subscription.topics = self.topics.iter().map(|t| str_bytes(t)).collect();
                subscription
            },
            SUBSCRIPTION_VERSION,
        )?;
        let mut last_error = ClientError::kafka(ResponseError::RebalanceInProgress.code(), None);
        for _ in 0..REJOIN_ROUNDS_MAX {
            if self.signals.member_reset.swap(false, Ordering::SeqCst) {
                self.member_id.clear();
                self.generation_id = -1;
            }
            let join_wait =
                Duration::from_millis(self.config.rebalance_timeout_ms + JOIN_GROUP_SLACK_MS);
            let config = &self.config;
            let member_id = self.member_id.clone();
            let metadata = metadata.clone();
            let joined = self
                .link
                .send(
                    |version| {
                        let mut request = JoinGroupRequest::default();
                        request.group_id = GroupId(str_bytes(&config.group_id));
                        request.session_timeout_ms =
                            i32::try_from(config.session_timeout_ms).unwrap_or(i32::MAX);
                        request.rebalance_timeout_ms =
                            i32::try_from(config.rebalance_timeout_ms).unwrap_or(i32::MAX);
                        request.member_id = str_bytes(&member_id);
                        if version >= 5 {
                            request.group_instance_id =
                                config.group_instance_id.as_deref().map(str_bytes);
                        }
                        request.protocol_type = str_bytes(CONSUMER_PROTOCOL_TYPE);
                        let mut protocol = JoinGroupRequestProtocol::default();
                        protocol.name = str_bytes(config.assignor.name());
                        protocol.metadata = metadata.clone();
                        request.protocols = vec![protocol];
                        if version >= 8 {
                            request.reason = Some(str_bytes("joining the group"));
                        }
                        request
                    },
                    |response| response.error_code,
                    Some(join_wait),
                )
                .await?;
            match ResponseError::try_from_code(joined.error_code) {
                None => {}
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(ResponseError::RebalanceInProgress) => continue,
                Some(_) => return Err(ClientError::kafka(joined.error_code, None)),
            }
            self.member_id = joined.member_id.to_string();
            self.generation_id = joined.generation_id;
            let protocol_name = joined
                .protocol_name
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_else(|| self.config.assignor.name().to_string());
            let assignments = if joined.leader == joined.member_id && !joined.skip_assignment {
                let assignor = Assignor::from_name(&protocol_name).unwrap_or(self.config.assignor);
                let members: Vec<(String, Vec<String>)> = joined
                    .members
                    .iter()
                    .map(|m| {
                        let topics =
                            decode_versioned::<ConsumerProtocolSubscription>(m.metadata.clone())
                                .ok()
                                .flatten()
                                .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
                                .unwrap_or_default();
                        (m.member_id.to_string(), topics)
                    })
                    .collect();
                let plan = leader_plan(cluster, assignor, &members).await?;
                let mut assignments = Vec::with_capacity(plan.len());
                for (member_id, partitions) in plan {
                    let mut entry = SyncGroupRequestAssignment::default();
                    entry.member_id = str_bytes(&member_id);
                    entry.assignment =
                        encode_versioned(&assignment_message(&partitions), ASSIGNMENT_VERSION)?;
                    assignments.push(entry);
                }
                assignments
            } else {
                Vec::new()
            };
            let generation_id = self.generation_id;
            let member_id = self.member_id.clone();
            let synced = self
                .link
                .send(
                    |version| {
                        let mut request = SyncGroupRequest::default();
                        request.group_id = GroupId(str_bytes(&config.group_id));
                        request.generation_id = generation_id;
                        request.member_id = str_bytes(&member_id);
                        if version >= 3 {
                            request.group_instance_id =
                                config.group_instance_id.as_deref().map(str_bytes);
                        }
                        if version >= 5 {
                            request.protocol_type = Some(str_bytes(CONSUMER_PROTOCOL_TYPE));
                            request.protocol_name = Some(str_bytes(&protocol_name));
                        }
                        request.assignments = assignments.clone();
                        request
                    },
                    |response| response.error_code,
                    Some(join_wait),
                )
                .await?;
            match ResponseError::try_from_code(synced.error_code) {
                None => {}
                Some(ResponseError::RebalanceInProgress) => {
                    last_error = ClientError::kafka(synced.error_code, None);
                    continue;
                }
                Some(ResponseError::UnknownMemberId | ResponseError::IllegalGeneration) => {
                    self.member_id.clear();
                    self.generation_id = -1;
                    last_error = ClientError::kafka(synced.error_code, None);
                    continue;
                }
                Some(_) => return Err(ClientError::kafka(synced.error_code, None)),
            }
            let assigned = decode_versioned::<ConsumerProtocolAssignment>(synced.assignment)?
                .map(|a| assignment_partitions(&a))
                .unwrap_or_default();
            self.joined = true;
            self.signals.rejoin_needed.store(false, Ordering::SeqCst);
            self.signals.coordinator_lost.store(false, Ordering::SeqCst);
            let connection = self.link.connection().await?;
            self.start_heartbeat(connection);
            self.next_auto_commit =
                Instant::now() + Duration::from_millis(self.config.auto_commit_interval_ms);
            tracing::info!(
                group = %self.config.group_id,
                member = %self.member_id,
                generation = self.generation_id,
                partitions = assigned.len(),
                "joined the group"
            );
            return Ok(assigned);
        }
        Err(last_error)
    }

    /// Revokes, rejoins, and installs the new assignment with positions from
    /// the committed offsets.
    async fn rejoin(
        &mut self,
        cluster: &Cluster,
        assignment: &mut IndexMap<(String, i32), PartitionState>,
    ) -> Result<()> {
        if self.joined {
            if self.config.enable_auto_commit {
                let offsets = Self::positions(assignment);
                if let Err(err) = self.commit(&offsets).await {
                    tracing::warn!(%err, "commit before rejoining failed");
                }
            }
            let owned: Vec<(String, i32)> = assignment.keys().cloned().collect();
            self.revoke(&owned);
        }
        assignment.clear();
        self.joined = false;
        let assigned = self.join(cluster).await?;
        let committed = self.link.fetch_offsets(Some(&assigned)).await?;
        let committed: HashMap<(String, i32), i64> = committed.into_iter().collect();
        for key in &assigned {
            let position = committed.get(key).copied().filter(|o| *o >= 0);
            assignment.insert(
                key.clone(),
                PartitionState {
                    position,
                    ..PartitionState::default()
                },
            );
        }
        if let Some(listener) = self.listener.as_mut() {
            listener.get_mut().on_partitions_assigned(&assigned);
        }
        Ok(())
    }
}

/// Partition counts of the subscribed topics, then the assignor's plan.
async fn leader_plan(
    cluster: &Cluster,
    assignor: Assignor,
    members: &[(String, Vec<String>)],
) -> Result<BTreeMap<String, Vec<(String, i32)>>> {
    let topics: Vec<String> = members
        .iter()
        .flat_map(|(_, t)| t.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let snapshot = cluster.refresh_topics(&topics).await?;
    let partition_counts: BTreeMap<String, i32> = topics
        .iter()
        .filter_map(|t| {
            let metadata = snapshot.topics.get(t).filter(|m| m.error_code == 0)?;
            let count = i32::try_from(metadata.partitions.len()).ok()?;
            Some((t.clone(), count))
        })
        .collect();
    Ok(assign(assignor, members, &partition_counts))
}

/// The plan of an assignor for `members` (member id, subscribed topics)
/// over topics with the given partition counts. Every member gets an entry.
pub fn assign(
    assignor: Assignor,
    members: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut plan: BTreeMap<String, Vec<(String, i32)>> = members
        .iter()
        .map(|(member, _)| (member.clone(), Vec::new()))
        .collect();
    let subscribers = |topic: &str| -> Vec<&String> {
        let mut found: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.iter().any(|t| t == topic))
            .map(|(member, _)| member)
            .collect();
        found.sort();
        found
    };
    match assignor {
        Assignor::Range => {
            for (topic, count) in partition_counts {
                let consumers = subscribers(topic);
                let Ok(consumer_count) = i32::try_from(consumers.len()) else {
                    continue;
                };
                if consumer_count == 0 {
                    continue;
                }
                let per_consumer = count / consumer_count;
                let extra = count % consumer_count;
                for (i, member) in (0..consumer_count).zip(consumers) {
                    let start = i * per_consumer + i.min(extra);
                    let length = per_consumer + i32::from(i < extra);
                    if let Some(entry) = plan.get_mut(member) {
                        entry.extend((start..start + length).map(|p| (topic.clone(), p)));
                    }
                }
            }
        }
        Assignor::RoundRobin => {
            let mut sorted: Vec<&(String, Vec<String>)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            if sorted.is_empty() {
                return plan;
            }
            let mut next = 0usize;
            for (topic, count) in partition_counts {
                if subscribers(topic).is_empty() {
                    continue;
                }
                for partition in 0..*count {
                    // Some member subscribes to the topic, so this ends
                    // within one turn of the circle.
                    for _ in 0..sorted.len() {
                        let (member, topics) = sorted[next % sorted.len()];
                        next += 1;
                        if topics.iter().any(|t| t == topic) {
                            if let Some(entry) = plan.get_mut(member) {
                                entry.push((topic.clone(), partition));
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    plan
}

fn assignment_message(partitions: &[(String, i32)]) -> ConsumerProtocolAssignment {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut message = ConsumerProtocolAssignment::default();
    message.assigned_partitions = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut entry = AssignedTopic::default();
            entry.topic = TopicName(str_bytes(topic));
            entry.partitions = partitions;
            entry
        })
        .collect();
    message
}

fn assignment_partitions(assignment: &ConsumerProtocolAssignment) -> Vec<(String, i32)> {
    assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
        .collect()
}

/// The consumer protocol's framing: an i16 version, then the message.
fn encode_versioned<M: Encodable>(message: &M, version: i16) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message.encode(&mut buf, version).map_err(codec)?;
    Ok(buf.freeze())
}

/// Reads the consumer protocol's framing; empty bytes mean no message.
/// Newer versions are read as the newest we know, as the Java client does.
fn decode_versioned<M: Decodable + Message>(mut bytes: Bytes) -> Result<Option<M>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() < 2 {
        return Err(ClientError::Protocol(
            "consumer protocol data shorter than its version".into(),
        ));
    }
    let version = bytes.get_i16().clamp(M::VERSIONS.min, M::VERSIONS.max);
    M::decode(&mut bytes, version).map(Some).map_err(codec)
}

impl Consumer {
    /// Joins `group` as a member subscribed to `topics` and takes the
    /// partitions the leader assigns. Later calls to [`Consumer::poll`]
    /// rejoin on rebalances and auto-commit.
    pub async fn subscribe(
        &mut self,
        topics: Vec<String>,
        group: GroupConfig,
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<()> {
        group.validate()?;
        if topics.is_empty() {
            return Err(ClientError::Config(
                "subscribe needs at least one topic".into(),
            ));
        }
        if let Some(previous) = self.group.as_ref() {
            if previous.config.group_id != group.group_id {
                return Err(ClientError::Config(
                    "already a member of another group; close first".into(),
                ));
            }
        }
        let _ = self.cluster.refresh_topics(&topics).await;
        let longest_wait_ms = group.rebalance_timeout_ms + JOIN_GROUP_SLACK_MS;
        let interval = Duration::from_millis(group.auto_commit_interval_ms);
        let (member_id, generation_id, joined) = match self.group.take() {
            Some(previous) => (previous.member_id, previous.generation_id, previous.joined),
            None => (String::new(), -1, false),
        };
        self.group = Some(GroupMembership {
            link: CoordinatorLink::new(self.cluster.clone(), &group.group_id, longest_wait_ms),
            config: group,
            topics,
            listener: listener.map(parking_lot::Mutex::new),
            member_id,
            generation_id,
            joined,
            signals: Arc::new(HeartbeatSignals::default()),
            heartbeat: None,
            next_auto_commit: Instant::now() + interval,
        });
        let Consumer {
            cluster,
            assignment,
            group,
            ..
        } = self;
        match group.as_mut() {
            Some(group) => group.rejoin(cluster, assignment).await,
            None => Ok(()),
        }
    }

    /// Rejoins when the heartbeat asked for it and auto-commits when due.
    /// Called by [`Consumer::poll`].
    pub(crate) async fn group_duties(&mut self) -> Result<()> {
        let Consumer {
            cluster,
            assignment,
            group,
            ..
        } = self;
        let Some(group) = group.as_mut() else {
            return Ok(());
        };
        if group.signals.coordinator_lost.swap(false, Ordering::SeqCst) {
            group.link.forget().await;
            if !group.signals.rejoin_needed.load(Ordering::SeqCst) {
                let connection = group.link.connection().await?;
                group.start_heartbeat(connection);
            }
        }
        if group.signals.rejoin_needed.load(Ordering::SeqCst) || !group.joined {
            return group.rejoin(cluster, assignment).await;
        }
        if group.config.enable_auto_commit && Instant::now() >= group.next_auto_commit {
            group.next_auto_commit =
                Instant::now() + Duration::from_millis(group.config.auto_commit_interval_ms);
            let offsets = GroupMembership::positions(assignment);
            if let Err(err) = group.commit(&offsets).await {
                tracing::warn!(%err, "auto-commit failed");
            }
        }
        Ok(())
    }

    fn membership(&self) -> Result<&GroupMembership> {
        self.group
            .as_ref()
            .ok_or_else(|| ClientError::Config("the consumer has not subscribed to a group".into()))
    }

    /// Commits the current positions of all assigned partitions.
    pub async fn commit_sync(&mut self) -> Result<()> {
        let group = self.membership()?;
        let offsets = GroupMembership::positions(&self.assignment);
        group.commit(&offsets).await
    }

    /// Commits the given offsets (the next offset to read, as Kafka counts).
    pub async fn commit_offsets(&mut self, offsets: Vec<((String, i32), i64)>) -> Result<()> {
        self.membership()?.commit(&offsets).await
    }

    /// The group's committed offsets of `partitions` (`None` where none).
    pub async fn committed(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<((String, i32), Option<i64>)>> {
        let found: HashMap<(String, i32), i64> = self
            .membership()?
            .link
            .fetch_offsets(Some(partitions))
            .await?
            .into_iter()
            .collect();
        Ok(partitions
            .iter()
            .map(|k| (k.clone(), found.get(k).copied().filter(|o| *o >= 0)))
            .collect())
    }

    /// The group's member id and generation, once joined.
    pub fn group_generation(&self) -> Option<(String, i32)> {
        self.group
            .as_ref()
            .filter(|g| g.joined)
            .map(|g| (g.member_id.clone(), g.generation_id))
    }

    /// Leaves the group: commits (with auto-commit), tells the listener,
    /// stops the heartbeat and sends LeaveGroup (not for static members,
    /// whose partitions wait for them until the session times out).
    pub async fn close(&mut self) -> Result<()> {
        let Some(mut group) = self.group.take() else {
            return Ok(());
        };
        group.heartbeat = None;
        let mut result = Ok(());
        if group.joined {
            if group.config.enable_auto_commit {
                let offsets = GroupMembership::positions(&self.assignment);
                result = group.commit(&offsets).await;
            }
            let owned = self.assignment();
            group.revoke(&owned);
        }
        self.assignment.clear();
        if group.joined && group.config.group_instance_id.is_none() {
            let member_id = group.member_id.clone();
            let group_id = group.config.group_id.clone();
            let left = group
                .link
                .send(
                    |version| {
                        let mut request = LeaveGroupRequest::default();
                        request.group_id = GroupId(str_bytes(&group_id));
                        if version >= 3 {
                            let mut member = MemberIdentity::default();
                            member.member_id = str_bytes(&member_id);
                            if version >= 5 {
                                member.reason = Some(str_bytes("the consumer is closing"));
                            }
                            request.members = vec![member];
                        } else {
                            request.member_id = str_bytes(&member_id);
                        }
                        request
                    },
                    |response| response.error_code,
                    None,
                )
                .await;
            match left {
                Ok(response) if response.error_code != 0 => {
                    tracing::debug!(code = response.error_code, "LeaveGroup answered an error");
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(%err, "LeaveGroup failed"),
            }
        }
        result
    }
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub group_instance_id: Option<String>,
    /// Decoded for "consumer" groups; empty otherwise.
    pub assignment: Vec<(String, i32)>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance,
    /// Stable or Dead (Dead also for a group that does not exist).
    pub state: String,
    pub protocol_type: String,
    /// The chosen protocol (the assignor for consumer groups).
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
}

impl Admin {
    fn group_link(&self, group_id: &str) -> CoordinatorLink {
        CoordinatorLink::new(self.cluster().clone(), group_id, 0)
    }

    /// Groups of every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>> {
        let snapshot = self.cluster().refresh_metadata().await?;
        let mut found: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for broker in snapshot.brokers.keys() {
            let connection = self.cluster().connection(*broker).await?;
            let response = connection.send(ListGroupsRequest::default()).await?;
            ClientError::check(response.error_code, None)?;
            for g in response.groups {
                let group_id = g.group_id.0.to_string();
                found.insert(
                    group_id.clone(),
                    ListedGroup {
                        group_id,
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                    },
                );
            }
        }
        Ok(found.into_values().collect())
    }

    /// State, protocol and members (with decoded assignments) of a group.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let link = self.group_link(group_id);
        let response = link
            .send(
                |_| {
                    let mut request = DescribeGroupsRequest::default();
                    request.groups = vec![GroupId(str_bytes(group_id))];
                    request
                },
                |response| response.groups.first().map_or(0, |g| g.error_code),
                None,
            )
            .await?;
        let group = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("DescribeGroups returned no group".into()))?;
        if group.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(GroupDescription {
                group_id: group_id.to_string(),
                state: "Dead".to_string(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        }
        ClientError::check(group.error_code, group.error_message.as_ref())?;
        let consumer = group.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
        let members = group
            .members
            .iter()
            .map(|m| {
                let assignment = if consumer {
                    decode_versioned::<ConsumerProtocolAssignment>(m.member_assignment.clone())
                        .ok()
                        .flatten()
                        .map(|a| assignment_partitions(&a))
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                MemberDescription {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                    assignment,
                }
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.group_id.0.to_string(),
            state: group.group_state.to_string(),
            protocol_type: group.protocol_type.to_string(),
            protocol: group.protocol_data.to_string(),
            members,
        })
    }

    /// Every committed offset of a group, sorted.
    pub async fn list_group_offsets(&self, group_id: &str) -> Result<Vec<((String, i32), i64)>> {
        let mut offsets = self.group_link(group_id).fetch_offsets(None).await?;
        offsets.retain(|(_, offset)| *offset >= 0);
        Ok(offsets)
    }

    /// Commits offsets for a group without members (generation -1); the
    /// coordinator refuses while the group is not Empty.
    pub async fn alter_group_offsets(
        &self,
        group_id: &str,
        offsets: Vec<((String, i32), i64)>,
    ) -> Result<()> {
        self.group_link(group_id)
            .commit_offsets(&offsets, -1, "", None)
            .await
    }

    /// Deletes groups (with their offsets); one result per group.
    pub async fn delete_groups(
        &self,
        group_ids: Vec<String>,
    ) -> Result<Vec<(String, Option<ClientError>)>> {
        let mut results = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            let link = self.group_link(&group_id);
            let response = link
                .send(
                    |_| {
                        let mut request = DeleteGroupsRequest::default();
                        request.groups_names = vec![GroupId(str_bytes(&group_id))];
                        request
                    },
                    |response| response.results.first().map_or(0, |r| r.error_code),
                    None,
                )
                .await?;
            let code = response.results.first().map_or(0, |r| r.error_code);
            results.push((group_id, ClientError::check(code, None).err()));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    fn parts(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn range_splits_each_topic_in_consecutive_ranges() {
        let plan = assign(
            Assignor::Range,
            &members(&[("b", &["t", "u"]), ("a", &["t", "u"])]),
            &counts(&[("t", 3), ("u", 2)]),
        );
        assert_eq!(plan["a"], parts(&[("t", 0), ("t", 1), ("u", 0)]));
        assert_eq!(plan["b"], parts(&[("t", 2), ("u", 1)]));
    }

    #[test]
    fn round_robin_deals_partitions_in_turn_to_subscribers() {
        let plan = assign(
            Assignor::RoundRobin,
            &members(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["x"])]),
            &counts(&[("t", 3), ("u", 2)]),
        );
        assert_eq!(plan["a"], parts(&[("t", 0), ("t", 2)]));
        assert_eq!(plan["b"], parts(&[("t", 1), ("u", 0), ("u", 1)]));
        assert!(plan["c"].is_empty());
    }

    #[test]
    fn four_partitions_split_two_and_two() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let plan = assign(
                assignor,
                &members(&[("m1", &["t"]), ("m2", &["t"])]),
                &counts(&[("t", 4)]),
            );
            assert_eq!(plan["m1"].len(), 2, "{assignor:?}");
            assert_eq!(plan["m2"].len(), 2, "{assignor:?}");
        }
    }

    #[test]
    fn consumer_protocol_data_round_trips() {
        let message = assignment_message(&parts(&[("t", 1), ("t", 3), ("u", 0)]));
        let bytes = encode_versioned(&message, ASSIGNMENT_VERSION).expect("encode");
        let back = decode_versioned::<ConsumerProtocolAssignment>(bytes)
            .expect("decode")
            .expect("present");
        assert_eq!(
            assignment_partitions(&back),
            parts(&[("t", 1), ("t", 3), ("u", 0)])
        );
        assert!(decode_versioned::<ConsumerProtocolAssignment>(Bytes::new())
            .expect("empty")
            .is_none());
    }
}
