//! The broker's side of the controller quorum: a gRPC client that finds the
//! active controller, and [`RemoteControl`], the [`ClusterControl`] that
//! turns topic admin and producer-id requests into metadata commands.
//!
//! Placement is decided here, on the broker, from its current image (live,
//! unfenced brokers), and travels inside the command; the controller only
//! checks and applies it, so the metadata log stays deterministic.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_metadata::commands::{CommandResult, MetadataCommand, Reassignment};
use kraftwerk_metadata::{
    validate_topic_name, AclBinding, ImageCell, ScramCredential, TopicRecord,
};
use kraftwerk_rpc::controller as pb;
use kraftwerk_rpc::controller::controller_client::ControllerClient as GrpcClient;
use kraftwerk_rpc::wire;
use kraftwerk_rpc::NodeTls;
use kraftwerk_types::config::validate_topic_configs;
use kraftwerk_types::{ErrorCode, TopicId};
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::controller::{
    assign_replicas, check_assignments, plan_new_partitions, BoxFuture, ClusterControl,
    ConfigChange, ControllerError, NewTopic, ReassignPartition,
};

/// How long one call keeps trying controller nodes before giving up.
const CALL_RETRY_WINDOW: Duration = Duration::from_secs(10);
/// Pause after every voter failed once (no leader yet, or leadership
/// moving): short at first, so a broker finds a newly elected controller
/// within tens of milliseconds, then doubling up to the longest. Within a
/// round the next voter (or the one a NOT_CONTROLLER answer names) is tried
/// at once.
const CALL_BACKOFF_FIRST: Duration = Duration::from_millis(25);
const CALL_BACKOFF: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than the longest FetchMetadata long poll.
const RPC_TIMEOUT: Duration = Duration::from_secs(40);
/// HTTP/2 ping interval on controller connections, and how long a ping may
/// go unanswered before the connection is dropped.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a broker waits to see its own write in its metadata image.
const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(10);
/// Producer ids reserved per controller round trip.
const PRODUCER_ID_BLOCK: i64 = 1000;
const NOT_CONTROLLER: i32 = ErrorCode::NOT_CONTROLLER.0 as i32;
/// How long one controller node may take to answer a quick call (quorum
/// status, registration, heartbeat) before the next node is tried; well
/// below `broker.session.timeout.ms`, so a hung controller cannot make
/// brokers miss their session with the new one.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for a metadata write, which waits for a Raft commit.
const WRITE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(8);

/// Parses `controller.quorum.voters`: `1@host:port,2@host:port,...`.
pub fn parse_voters(value: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut voters = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("'{item}' is not id@host:port"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("'{id}' in '{item}' is not a node id"))?;
        if !addr.contains(':') {
            return Err(format!("'{addr}' in '{item}' has no port"));
        }
        voters.insert(id, addr.to_string());
    }
    if voters.is_empty() {
        return Err("controller.quorum.voters lists no voter".into());
    }
    Ok(voters)
}

/// Talks to whichever controller node is active, following NOT_CONTROLLER hints.
pub struct ControllerClient {
    voters: BTreeMap<u64, String>,
    tls: Option<Arc<dyn NodeTls>>,
    channels: Mutex<HashMap<u64, Channel>>,
    active: Mutex<Option<u64>>,
    /// The highest Raft term (KRaft's leader epoch) a metadata answer
    /// carried; `None` before the first, or from controllers that predate it.
    leader_epoch: Mutex<Option<u64>>,
    next: Mutex<usize>,
}

impl ControllerClient {
    /// A client of the quorum `voters`, dialling them with `tls` when the
    /// controller listener speaks SSL.
    pub fn new(voters: BTreeMap<u64, String>, tls: Option<Arc<dyn NodeTls>>) -> ControllerClient {
        ControllerClient {
            voters,
            tls,
            channels: Mutex::new(HashMap::new()),
            active: Mutex::new(None),
            leader_epoch: Mutex::new(None),
            next: Mutex::new(0),
        }
    }

    fn channel(&self, id: u64) -> Result<Channel, ControllerError> {
        if let Some(c) = self.channels.lock().get(&id) {
            return Ok(c.clone());
        }
        let addr = self
            .voters
            .get(&id)
            .ok_or_else(|| ControllerError::Unavailable(format!("unknown controller {id}")))?;
        let endpoint = kraftwerk_rpc::endpoint(addr)
            .map_err(|e| {
                ControllerError::Unavailable(format!("bad controller address {addr}: {e}"))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            // A connection whose peer vanished without a reset (a network
            // cut, a container that came back with a new address) is found
            // dead by HTTP/2 pings instead of hanging every call.
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = kraftwerk_rpc::connect_lazy(endpoint, self.tls.as_ref());
        self.channels.lock().insert(id, channel.clone());
        Ok(channel)
    }

    /// The node to try next: the active controller if known, else the next
    /// voter in turn. Nodes in `silent` (they did not answer in time during
    /// this call) are skipped, hints naming them too, while another voter
    /// is left: a paused controller accepts connections and never answers,
    /// and voters that have not yet heard of the election still name it.
    fn pick(&self, silent: &[u64]) -> u64 {
        if let Some(id) = *self.active.lock() {
            if !silent.contains(&id) {
                return id;
            }
        }
        let ids: Vec<u64> = self.voters.keys().copied().collect();
        let mut next = self.next.lock();
        for _ in 0..ids.len() {
            *next = (*next + 1) % ids.len().max(1);
            match ids.get(*next) {
                Some(id) if !silent.contains(id) => return *id,
                _ => {}
            }
        }
        *next = (*next + 1) % ids.len().max(1);
        ids.get(*next).copied().unwrap_or(0)
    }

    pub fn active_controller(&self) -> Option<u64> {
        *self.active.lock()
    }

    /// The quorum's leader epoch as the last metadata answers told it.
    pub fn leader_epoch(&self) -> Option<u64> {
        *self.leader_epoch.lock()
    }

    /// Runs `f` against the active controller, retrying on other nodes while
    /// the quorum has no leader or leadership moves.
    pub async fn call<T, F, Fut>(
        &self,
        what: &str,
        attempt_timeout: Duration,
        f: F,
    ) -> Result<T, ControllerError>
    where
        F: Fn(GrpcClient<Channel>) -> Fut,
        Fut: Future<Output = Result<(Option<pb::ControllerStatus>, T), tonic::Status>>,
    {
        let mut last_error: String;
        let mut backoff = CALL_BACKOFF_FIRST;
        let started = tokio::time::Instant::now();
        let round = self.voters.len().max(1);
        let mut failed_in_round = 0;
        let mut silent: Vec<u64> = Vec::new();
        loop {
            let id = self.pick(&silent);
            let client = GrpcClient::new(self.channel(id)?);
            // A stopped (SIGSTOP) or cut-off controller accepts connections
            // but never answers: give up on it after the attempt timeout.
            let attempt = match tokio::time::timeout(attempt_timeout, f(client)).await {
                Ok(r) => r,
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {attempt_timeout:?}"
                ))),
            };
            match attempt {
                Ok((status, value)) => match status {
                    Some(s) if s.error_code == NOT_CONTROLLER => {
                        *self.active.lock() = s.active_controller_id.filter(|l| *l != id);
                        last_error = format!("controller {id} is not active");
                    }
                    Some(s) if s.error_code != 0 => {
                        *self.active.lock() = Some(id);
                        return Err(ControllerError::Remote {
                            code: s.error_code as i16,
                            message: s.message,
                        });
                    }
                    _ => {
                        *self.active.lock() = Some(id);
                        return Ok(value);
                    }
                },
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    // A controller of an older version: trying others will not help.
                    return Err(ControllerError::Remote {
                        code: ErrorCode::UNSUPPORTED_VERSION.0,
                        message: format!("{what}: controller {id}: {}", status.message()),
                    });
                }
                Err(status) => {
                    *self.active.lock() = None;
                    if status.code() == tonic::Code::DeadlineExceeded {
                        // The next attempt on this node starts a new
                        // connection, after every other voter had its turn.
                        self.channels.lock().remove(&id);
                        if !silent.contains(&id) {
                            silent.push(id);
                        }
                        if silent.len() >= round {
                            silent.clear();
                        }
                    }
                    last_error = format!("controller {id}: {}", status.message());
                }
            }
            if started.elapsed() >= CALL_RETRY_WINDOW {
                break;
            }
            failed_in_round += 1;
            if failed_in_round >= round {
                failed_in_round = 0;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(CALL_BACKOFF);
            }
        }
        Err(ControllerError::Unavailable(format!(
            "{what}: no active controller answered ({last_error})"
        )))
    }

    /// The active controller's committed image newer than `known_version`
    /// (long poll): the whole image, or the commands since `known_version`.
    pub async fn fetch_metadata(
        &self,
        known_version: u64,
        max_wait_ms: u32,
    ) -> Result<pb::FetchMetadataResponse, ControllerError> {
        let r = self
            .call(
                "fetch metadata",
                Duration::from_millis(max_wait_ms as u64) + ATTEMPT_TIMEOUT,
                |mut c| async move {
                    let r = c
                        .fetch_metadata(pb::FetchMetadataRequest {
                            known_version,
                            max_wait_ms,
                            accept_deltas: known_version > 0,
                        })
                        .await?
                        .into_inner();
                    Ok((r.status.clone(), r))
                },
            )
            .await?;
        if let Some(epoch) = r.leader_epoch {
            let mut known = self.leader_epoch.lock();
            // Terms only grow; an answer that overtook a newer one is older.
            *known = Some(known.map_or(epoch, |k| k.max(epoch)));
        }
        Ok(r)
    }

    /// Opens this broker's session stream with the active controller; the
    /// stream is returned once the controller accepted it (its first event).
    pub async fn open_session(
        &self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<tonic::Streaming<pb::BrokerSessionEvent>, ControllerError> {
        self.call("broker session", ATTEMPT_TIMEOUT, |mut c| async move {
            let mut stream = c
                .broker_session(pb::BrokerSessionRequest {
                    broker_id,
                    broker_epoch,
                })
                .await?
                .into_inner();
            match stream.message().await? {
                Some(first) => Ok((first.status, stream)),
                None => Err(tonic::Status::unavailable(
                    "the controller ended the session before answering",
                )),
            }
        })
        .await
    }

    /// The quorum as controller `id` sees it, from that node only (no
    /// retries on others): how a combined node reads its own controller.
    pub async fn quorum_status_of(
        &self,
        id: u64,
        timeout: Duration,
    ) -> Result<pb::QuorumStatusResponse, ControllerError> {
        let mut client = GrpcClient::new(self.channel(id)?);
        match tokio::time::timeout(timeout, client.quorum_status(pb::QuorumStatusRequest {})).await
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(ControllerError::Unavailable(format!(
                "controller {id}: {}",
                status.message()
            ))),
            Err(_) => Err(ControllerError::Unavailable(format!(
                "controller {id}: no answer within {timeout:?}"
            ))),
        }
    }

    /// Whether `id` is one of the quorum's voters.
    pub fn is_voter(&self, id: u64) -> bool {
        self.voters.contains_key(&id)
    }

    pub async fn quorum_status(&self) -> Result<pb::QuorumStatusResponse, ControllerError> {
        self.call("quorum status", ATTEMPT_TIMEOUT, |mut c| async move {
            Ok((
                None,
                c.quorum_status(pb::QuorumStatusRequest {})
                    .await?
                    .into_inner(),
            ))
        })
        .await
    }

    /// Proposes a command; returns its result and the version that holds it.
    pub async fn write(
        &self,
        command: &MetadataCommand,
    ) -> Result<(CommandResult, u64), ControllerError> {
        let command = wire::command_to_wire(command);
        let (result, version) = self
            .call("metadata write", WRITE_ATTEMPT_TIMEOUT, |mut c| {
                let command = command.clone();
                async move {
                    let r = c
                        .write(pb::WriteRequest {
                            command: Some(command),
                        })
                        .await?
                        .into_inner();
                    Ok((r.status, (r.result, r.applied_version)))
                }
            })
            .await?;
        let result: CommandResult = result
            .ok_or_else(|| ControllerError::Unavailable("a write answered without a result".into()))
            .and_then(|r| {
                wire::result_from_wire(r).map_err(|e| {
                    ControllerError::Unavailable(format!("bad controller answer: {e}"))
                })
            })?;
        Ok((result, version))
    }
}

/// [`ClusterControl`] backed by the controller quorum.
pub struct RemoteControl {
    client: Arc<ControllerClient>,
    image: Arc<ImageCell>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
}

impl RemoteControl {
    pub fn new(client: Arc<ControllerClient>, image: Arc<ImageCell>) -> RemoteControl {
        RemoteControl {
            client,
            image,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// Writes a command and waits until this broker's image includes it.
    async fn write(&self, command: MetadataCommand) -> Result<CommandResult, ControllerError> {
        let (result, version) = self.client.write(&command).await?;
        // Read your write: answer once this broker's image holds it (or
        // after the wait, when the metadata stream lags).
        let _ = tokio::time::timeout(
            READ_YOUR_WRITE_WAIT,
            self.image.wait_until(|image| image.version >= version),
        )
        .await;
        match result {
            CommandResult::Error { code, message } => {
                Err(ControllerError::Remote { code, message })
            }
            other => Ok(other),
        }
    }

    fn placement_brokers(&self) -> Vec<i32> {
        let image = self.image.load();
        image
            .live_brokers()
            .filter(|b| !image.shutting_down.contains(&b.node_id))
            .map(|b| b.node_id)
            .collect()
    }
}

impl ClusterControl for RemoteControl {
    fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<TopicRecord, ControllerError>> {
        Box::pin(async move {
            validate_topic_name(&topic.name).map_err(ControllerError::InvalidTopic)?;
            validate_topic_configs(topic.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
            {
                let image = self.image.load();
                if image.topic(&topic.name).is_some() {
                    return Err(ControllerError::TopicAlreadyExists(topic.name));
                }
                if let Some(other) = colliding_topic(&image, &topic.name) {
                    return Err(ControllerError::InvalidTopic(format!(
                        "topic '{}' collides with existing topic '{other}'",
                        topic.name
                    )));
                }
            }
            let brokers = self.placement_brokers();
            let assignments = match topic.assignments {
                Some(a) => {
                    check_assignments(&a, &brokers)?;
                    a
                }
                None => {
                    if topic.num_partitions < 1 {
                        return Err(ControllerError::InvalidPartitions(
                            "number of partitions must be at least 1".into(),
                        ));
                    }
                    let mut sorted = brokers.clone();
                    // Start the round-robin at a broker chosen by the name, so
                    // many single-partition topics do not all land on one broker.
                    let shift = topic
                        .name
                        .bytes()
                        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
                    if !sorted.is_empty() {
                        let k = shift % sorted.len();
                        sorted.rotate_left(k);
                    }
                    assign_replicas(&sorted, 0, topic.num_partitions, topic.replication_factor)?
                }
            };
            let command = MetadataCommand::CreateTopic {
                name: topic.name.clone(),
                topic_id: TopicId::random(),
                assignments,
                configs: topic.configs,
            };
            if validate_only {
                if let MetadataCommand::CreateTopic {
                    name,
                    topic_id,
                    assignments,
                    configs,
                } = command
                {
                    let mut scratch = kraftwerk_metadata::MetadataImage::default();
                    scratch.brokers = self.image.load().brokers.clone();
                    if let CommandResult::Topic(t) = kraftwerk_metadata::commands::apply(
                        &mut scratch,
                        &MetadataCommand::CreateTopic {
                            name,
                            topic_id,
                            assignments,
                            configs,
                        },
                        0,
                    ) {
                        return Ok(t);
                    }
                }
                return Err(ControllerError::InvalidTopic("validation failed".into()));
            }
            match self.write(command).await? {
                CommandResult::Topic(t) => Ok(t),
                other => Err(ControllerError::Unavailable(format!(
                    "unexpected controller answer {other:?}"
                ))),
            }
        })
    }

    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<TopicId, ControllerError>> {
        Box::pin(async move {
            let id = self
                .image
                .load()
                .topic(&name)
                .map(|t| t.id)
                .ok_or_else(|| ControllerError::UnknownTopic(name.clone()))?;
            self.write(MetadataCommand::DeleteTopic { name }).await?;
            Ok(id)
        })
    }

    fn create_partitions(
        &self,
        name: String,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let image = self.image.load();
            let topic = image
                .topic(&name)
                .ok_or_else(|| ControllerError::UnknownTopic(name.clone()))?;
            let added = plan_new_partitions(topic, total, assignments, &self.placement_brokers())?;
            if validate_only {
                return Ok(());
            }
            self.write(MetadataCommand::CreatePartitions {
                name,
                assignments: added,
            })
            .await
            .map(|_| ())
        })
    }

    fn alter_topic_configs(
        &self,
        name: String,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            for (k, v) in &changes {
                if let Some(v) = v {
                    validate_topic_configs([(k.as_str(), v.as_str())])
                        .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
                }
            }
            if self.image.load().topic(&name).is_none() {
                return Err(ControllerError::UnknownTopic(name));
            }
            if validate_only {
                return Ok(());
            }
            self.write(MetadataCommand::AlterTopicConfigs { name, changes })
                .await
                .map(|_| ())
        })
    }

    fn alter_scram_credentials(
        &self,
        deletions: Vec<(String, String)>,
        upsertions: Vec<(String, String, ScramCredential)>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            self.write(MetadataCommand::AlterScramCredentials {
                deletions,
                upsertions,
            })
            .await
            .map(|_| ())
        })
    }

    fn alter_acls(
        &self,
        created: Vec<AclBinding>,
        deleted: Vec<AclBinding>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            if !deleted.is_empty() {
                self.write(MetadataCommand::DeleteAcls { acls: deleted })
                    .await?;
            }
            if !created.is_empty() {
                self.write(MetadataCommand::CreateAcls { acls: created })
                    .await?;
            }
            Ok(())
        })
    }

    fn alter_client_quotas(
        &self,
        changes: Vec<crate::controller::QuotaChange>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            self.write(MetadataCommand::AlterClientQuotas { changes })
                .await
                .map(|_| ())
        })
    }

    fn elect_preferred_leaders(
        &self,
        partitions: Option<Vec<(String, i32)>>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            self.write(MetadataCommand::ElectPreferredLeaders { partitions })
                .await
                .map(|_| ())
        })
    }

    fn mark_replicas_offline(
        &self,
        broker_id: i32,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            self.write(MetadataCommand::MarkReplicasOffline {
                broker_id,
                partitions,
            })
            .await
            .map(|_| ())
        })
    }

    fn alter_partition_reassignments(
        &self,
        reassignments: Vec<ReassignPartition>,
        allow_replication_factor_change: bool,
    ) -> BoxFuture<'_, Result<Vec<(ErrorCode, String)>, ControllerError>> {
        Box::pin(async move {
            let count = reassignments.len();
            let command = MetadataCommand::AlterPartitionReassignments {
                reassignments: reassignments
                    .into_iter()
                    .map(|r| Reassignment {
                        topic: r.topic,
                        partition: r.partition,
                        target: r.target,
                    })
                    .collect(),
                allow_replication_factor_change,
            };
            match self.write(command).await? {
                CommandResult::PerPartition(answers) if answers.len() == count => Ok(answers
                    .into_iter()
                    .map(|(code, message)| (ErrorCode(code), message))
                    .collect()),
                other => Err(ControllerError::Unavailable(format!(
                    "unexpected controller answer to a reassignment: {other:?}"
                ))),
            }
        })
    }

    fn allocate_producer_id(&self) -> BoxFuture<'_, Result<i64, ControllerError>> {
        Box::pin(async move {
            let mut block = self.producer_ids.lock().await;
            if block.0 >= block.1 {
                match self
                    .write(MetadataCommand::AllocateProducerIds {
                        count: PRODUCER_ID_BLOCK,
                    })
                    .await?
                {
                    CommandResult::ProducerIdStart(start) => {
                        *block = (start, start + PRODUCER_ID_BLOCK)
                    }
                    other => {
                        return Err(ControllerError::Unavailable(format!(
                            "unexpected controller answer {other:?}"
                        )))
                    }
                }
            }
            let id = block.0;
            block.0 += 1;
            Ok(id)
        })
    }
}

/// An existing topic whose name equals `name` once '.' and '_' are taken
/// as one character (Kafka refuses such a pair: their metric names clash).
fn colliding_topic<'a>(
    image: &'a kraftwerk_metadata::MetadataImage,
    name: &str,
) -> Option<&'a str> {
    let folded = name.replace('.', "_");
    image
        .topics
        .keys()
        .find(|n| n.as_str() != name && n.replace('.', "_") == folded)
        .map(String::as_str)
}

/// Orders brokers so that racks alternate: `r1b1, r2b1, r3b1, r1b2, ...`.
/// Without racks (or with one) the order is by broker id.
pub fn rack_alternated(mut brokers: Vec<(i32, Option<String>)>) -> Vec<i32> {
    brokers.sort_by_key(|(id, _)| *id);
    if brokers.iter().all(|(_, r)| r.is_none()) {
        return brokers.into_iter().map(|(id, _)| id).collect();
    }
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack
            .entry(rack.unwrap_or_default())
            .or_default()
            .push(id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racks_alternate_so_replicas_spread_across_racks() {
        let brokers = vec![
            (1, Some("a".into())),
            (2, Some("a".into())),
            (3, Some("b".into())),
            (4, Some("b".into())),
            (5, Some("c".into())),
            (6, Some("c".into())),
        ];
        let order = rack_alternated(brokers.clone());
        assert_eq!(order, vec![1, 3, 5, 2, 4, 6]);
        let racks: BTreeMap<i32, String> = brokers
            .into_iter()
            .map(|(id, r)| (id, r.unwrap_or_default()))
            .collect();
        for replicas in assign_replicas(&order, 0, 12, 3).expect("fits") {
            let mut seen: Vec<&String> = replicas.iter().map(|r| &racks[r]).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 3, "replicas {replicas:?} share a rack");
        }
        assert_eq!(rack_alternated(vec![(3, None), (1, None)]), vec![1, 3]);
    }

    #[test]
    fn voters_parse_like_kafka() {
        let v = parse_voters("1@127.0.0.1:9192, 2@127.0.0.1:9193,3@localhost:9194").expect("valid");
        assert_eq!(v.len(), 3);
        assert_eq!(v[&3], "localhost:9194");
        assert!(parse_voters("").is_err());
        assert!(parse_voters("x@h:1").is_err());
        assert!(parse_voters("1@h").is_err());
    }
}
