//! The consumer: manual assignment, positions, the Fetch loop and offset
//! resets through ListOffsets.
//!
//! Positions live in [`Consumer`]; group membership (subscribe, commits)
//! lives in [`crate::group`] and replaces the assignment on each rebalance.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::TimestampType;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cluster::{Cluster, MetadataSnapshot, METADATA_RETRY_BACKOFF};
use crate::connection::Connection;
use crate::error::{is_stale_metadata_code, ClientError, Result};
use crate::records::decode_fetched;
use crate::ClientConfig;

/// ListOffsets attempts while leaders move.
/// ListOffsets timestamp meaning "log start offset".
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "log end offset" (or LSO for read_committed).
pub const LATEST_TIMESTAMP: i64 = -1;

/// `auto.offset.reset`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    Earliest,
    #[default]
    Latest,
    /// Fail with [`ClientError::NoOffset`] or the broker's OFFSET_OUT_OF_RANGE.
    None,
}

/// `isolation.level`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    #[default]
    ReadUncommitted = 0,
    ReadCommitted = 1,
}

/// Consumer settings, named and defaulted as in the Java client.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.min.bytes`
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms`
    pub fetch_max_wait_ms: u64,
    /// `fetch.max.bytes`
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`
    pub max_partition_fetch_bytes: i32,
    /// `isolation.level`
    pub isolation_level: IsolationLevel,
    /// `auto.offset.reset`
    pub auto_offset_reset: AutoOffsetReset,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_min_bytes: 1,
            fetch_max_wait_ms: 500,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            isolation_level: IsolationLevel::ReadUncommitted,
            auto_offset_reset: AutoOffsetReset::Latest,
        }
    }
}

/// One record as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub leader_epoch: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionState {
    /// Next offset to fetch; `None` until reset by `auto.offset.reset`.
    pub(crate) position: Option<i64>,
    pub(crate) high_watermark: Option<i64>,
}

/// What one leader answered to a Fetch, with what it was asked.
struct FetchOutcome {
    /// The offset asked for, per partition.
    sent: HashMap<(String, i32), i64>,
    metadata: Arc<MetadataSnapshot>,
    connection: Arc<Connection>,
    version: i16,
    response: Result<FetchResponse>,
}

/// The fetches in flight, at most one per leader.
#[derive(Default)]
struct Fetches {
    tasks: JoinSet<FetchOutcome>,
    leaders: HashMap<tokio::task::Id, i32>,
}

impl Fetches {
    fn has_leader(&self, leader: i32) -> bool {
        self.leaders.values().any(|l| *l == leader)
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    fn spawn(
        &mut self,
        leader: i32,
        fetch: impl std::future::Future<Output = FetchOutcome> + Send + 'static,
    ) {
        let id = self.tasks.spawn(fetch).id();
        self.leaders.insert(id, leader);
    }

    /// The next answer; `Some(None)` for a fetch task that failed.
    async fn next(&mut self) -> Option<Option<FetchOutcome>> {
        let joined = self.tasks.join_next_with_id().await?;
        Some(self.finished(joined))
    }

    /// An answer already in, without waiting.
    fn try_next(&mut self) -> Option<Option<FetchOutcome>> {
        let joined = self.tasks.try_join_next_with_id()?;
        Some(self.finished(joined))
    }

    fn finished(
        &mut self,
        joined: std::result::Result<(tokio::task::Id, FetchOutcome), tokio::task::JoinError>,
    ) -> Option<FetchOutcome> {
        match joined {
            Ok((id, outcome)) => {
                self.leaders.remove(&id);
                Some(outcome)
            }
            Err(err) => {
                self.leaders.remove(&err.id());
                None
            }
        }
    }
}

/// A consumer with manually assigned partitions.
pub struct Consumer {
    pub(crate) cluster: Arc<Cluster>,
    config: ConsumerConfig,
    pub(crate) assignment: IndexMap<(String, i32), PartitionState>,
    /// Fetches sent and not answered yet; they outlive a `poll`.
    fetches: Fetches,
    /// Set by [`Consumer::subscribe`]; then rebalances own the assignment.
    pub(crate) group: Option<crate::group::GroupMembership>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn new(client: ClientConfig, config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(client).await?;
        Ok(Self::with_cluster(cluster, config))
    }

    /// A consumer sharing an existing [`Cluster`].
    pub fn with_cluster(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        Consumer {
            cluster,
            config,
            assignment: IndexMap::new(),
            fetches: Fetches::default(),
            group: None,
        }
    }

    /// The cluster this consumer talks to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Replaces the assignment. Positions of partitions that stay assigned
    /// are kept; new ones start unset (resolved by `auto.offset.reset`).
    pub async fn assign(&mut self, partitions: Vec<(String, i32)>) -> Result<()> {
        let topics: Vec<String> = partitions
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for topic in &topics {
            let metadata = self.cluster.topic(topic).await?;
            for (t, p) in partitions.iter().filter(|(t, _)| t == topic) {
                if metadata.partition(*p).is_none() {
                    return Err(ClientError::UnknownPartition {
                        topic: t.clone(),
                        partition: *p,
                    });
                }
            }
        }
        let mut next = IndexMap::new();
        for key in partitions {
            let state = self.assignment.get(&key).cloned().unwrap_or_default();
            next.insert(key, state);
        }
        self.assignment = next;
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assignment.keys().cloned().collect()
    }

    /// Sets the next offset to fetch for an assigned partition.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        match self.assignment.get_mut(&(topic.to_string(), partition)) {
            Some(state) => state.position = Some(offset),
            None => tracing::warn!(topic, partition, "seek on a partition that is not assigned"),
        }
    }

    /// Moves to the log start offset; an empty slice means every assigned partition.
    pub async fn seek_to_beginning(&mut self, partitions: &[(String, i32)]) -> Result<()> {
        self.seek_to_timestamp(partitions, EARLIEST_TIMESTAMP).await
    }

    /// Moves to the log end offset (LSO for read_committed); an empty slice
    /// means every assigned partition.
    pub async fn seek_to_end(&mut self, partitions: &[(String, i32)]) -> Result<()> {
        self.seek_to_timestamp(partitions, LATEST_TIMESTAMP).await
    }

    async fn seek_to_timestamp(
        &mut self,
        partitions: &[(String, i32)],
        timestamp: i64,
    ) -> Result<()> {
        let targets: Vec<(String, i32)> = if partitions.is_empty() {
            self.assignment()
        } else {
            partitions.to_vec()
        };
        let requests = targets
            .iter()
            .map(|(t, p)| (t.clone(), *p, timestamp))
            .collect();
        let offsets = list_offsets(&self.cluster, requests, self.config.isolation_level).await?;
        for ((topic, partition), (offset, _)) in offsets {
            self.seek(&topic, partition, offset);
        }
        Ok(())
    }

    /// The next offset to fetch, if known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignment
            .get(&(topic.to_string(), partition))
            .and_then(|s| s.position)
    }

    /// The high watermark seen in the last fetch of a partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignment
            .get(&(topic.to_string(), partition))
            .and_then(|s| s.high_watermark)
    }

    /// Fetches until some records arrive or `timeout` passes.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.group_duties().await?;
            self.reset_missing_positions(deadline).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let records = self.fetch_once(remaining).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    async fn reset_missing_positions(&mut self, deadline: Instant) -> Result<()> {
        let missing: Vec<(String, i32)> = self
            .assignment
            .iter()
            .filter(|(_, s)| s.position.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let timestamp = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => EARLIEST_TIMESTAMP,
            AutoOffsetReset::Latest => LATEST_TIMESTAMP,
            AutoOffsetReset::None => {
                let (topic, partition) = missing[0].clone();
                return Err(ClientError::NoOffset { topic, partition });
            }
        };
        // Partitions whose leader cannot answer yet (a topic just created,
        // a leader moving) keep no position until a later poll finds one,
        // as the Java client's do; this poll does not wait past `deadline`.
        let requests = missing
            .iter()
            .map(|(t, p)| (t.clone(), *p, timestamp))
            .collect();
        let (offsets, unresolved) = list_offsets_until(
            &self.cluster,
            requests,
            self.config.isolation_level,
            deadline,
        )
        .await?;
        for ((topic, partition), (offset, _)) in offsets {
            self.seek(&topic, partition, offset);
        }
        if let Some(err) = unresolved {
            tracing::debug!(%err, "some positions could not be reset yet; retrying at the next poll");
        }
        Ok(())
    }

    /// Sends a Fetch to every leader that has none in flight, then returns
    /// the records of the first answer (and of any other already in),
    /// waiting at most `max_wait`. Fetches not answered yet stay in flight
    /// for the next call, so a leader whose partitions have nothing new
    /// (the broker holds such a fetch for `fetch.max.wait.ms`) never delays
    /// the records of another.
    async fn fetch_once(&mut self, max_wait: Duration) -> Result<Vec<ConsumerRecord>> {
        let metadata = self.cluster.metadata();
        let mut by_leader: HashMap<i32, Vec<(String, i32, i64, i32)>> = HashMap::new();
        let mut needs_refresh = false;
        for ((topic, partition), state) in &self.assignment {
            let Some(position) = state.position else {
                continue;
            };
            let found = metadata
                .topics
                .get(topic)
                .and_then(|t| t.partition(*partition));
            match found {
                Some(p) if p.leader >= 0 => {
                    if !self.fetches.has_leader(p.leader) {
                        by_leader.entry(p.leader).or_default().push((
                            topic.clone(),
                            *partition,
                            position,
                            p.leader_epoch,
                        ));
                    }
                }
                _ => needs_refresh = true,
            }
        }
        if by_leader.is_empty() && self.fetches.is_empty() {
            if needs_refresh {
                self.refresh_assigned_metadata().await;
            }
            tokio::time::sleep(max_wait.min(METADATA_RETRY_BACKOFF)).await;
            return Ok(Vec::new());
        }

        // The broker may hold a fetch for the whole `fetch.max.wait.ms`, as
        // the Java client lets it, whatever is left of this poll: an answer
        // that comes later is taken by the next one.
        let max_wait_ms = i32::try_from(self.config.fetch_max_wait_ms).unwrap_or(i32::MAX);
        for (leader, partitions) in by_leader {
            let connection = match self.cluster.connection(leader).await {
                Ok(connection) => connection,
                Err(err) if err.is_retriable() => {
                    tracing::debug!(leader, %err, "fetch connection failed");
                    needs_refresh = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let (request, version) = build_fetch(
                &connection,
                &self.config,
                &metadata,
                &partitions,
                max_wait_ms,
            )?;
            let sent = partitions
                .into_iter()
                .map(|(topic, partition, offset, _)| ((topic, partition), offset))
                .collect();
            let metadata = metadata.clone();
            self.fetches.spawn(leader, async move {
                let response = connection.send_version(request, version).await;
                FetchOutcome {
                    sent,
                    metadata,
                    connection,
                    version,
                    response,
                }
            });
        }

        let mut records = Vec::new();
        let mut answered = match tokio::time::timeout(max_wait, self.fetches.next()).await {
            Ok(Some(outcome)) => vec![outcome],
            Ok(None) | Err(_) => Vec::new(),
        };
        answered.extend(std::iter::from_fn(|| self.fetches.try_next()));
        for outcome in answered {
            let Some(FetchOutcome {
                sent,
                metadata,
                connection,
                version,
                response,
            }) = outcome
            else {
                needs_refresh = true;
                continue;
            };
            let response = match response {
                Ok(response) => response,
                Err(err) if err.is_retriable() => {
                    tracing::debug!(%err, "fetch failed");
                    self.cluster.forget_connection(&connection).await;
                    needs_refresh = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
            needs_refresh |=
                self.apply_fetch_response(response, version, &metadata, &sent, &mut records)?;
        }
        if needs_refresh {
            self.refresh_assigned_metadata().await;
        }
        Ok(records)
    }

    async fn refresh_assigned_metadata(&self) {
        let topics: Vec<String> = self
            .assignment
            .keys()
            .map(|(t, _)| t.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if let Err(err) = self.cluster.refresh_topics(&topics).await {
            tracing::debug!(%err, "metadata refresh failed");
        }
    }

    /// Turns one Fetch response into records and new positions. A
    /// partition whose position moved since the fetch was sent (`sent`
    /// holds the offsets asked for: a seek, a reset, a new assignment) is
    /// left alone. Returns whether metadata looked stale.
    fn apply_fetch_response(
        &mut self,
        response: FetchResponse,
        version: i16,
        metadata: &MetadataSnapshot,
        sent: &HashMap<(String, i32), i64>,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<bool> {
        if response.error_code != 0 {
            let err = ClientError::kafka(response.error_code, None);
            if err.is_retriable() {
                return Ok(true);
            }
            return Err(err);
        }
        let mut stale = false;
        for topic_response in response.responses {
            let topic = if version >= 13 {
                match metadata.topic_name(topic_response.topic_id) {
                    Some(name) => name.to_string(),
                    None => {
                        stale = true;
                        continue;
                    }
                }
            } else {
                topic_response.topic.0.to_string()
            };
            for partition_data in topic_response.partitions {
                let partition = partition_data.partition_index;
                let key = (topic.clone(), partition);
                let Some(state) = self.assignment.get_mut(&key) else {
                    continue;
                };
                let Some(position) = state.position else {
                    continue;
                };
                if sent.get(&key) != Some(&position) {
                    continue;
                }
                match partition_data.error_code {
                    0 => {}
                    code if code == ResponseError::OffsetOutOfRange.code() => {
                        if self.config.auto_offset_reset == AutoOffsetReset::None {
                            return Err(ClientError::kafka(code, None));
                        }
                        tracing::info!(
                            topic,
                            partition,
                            position,
                            "offset out of range, resetting"
                        );
                        state.position = None;
                        continue;
                    }
                    code if is_stale_metadata_code(code) => {
                        stale = true;
                        continue;
                    }
                    code => {
                        let err = ClientError::kafka(code, None);
                        if err.is_retriable() {
                            continue;
                        }
                        return Err(err);
                    }
                }
                state.high_watermark = Some(partition_data.high_watermark);
                let Some(data) = partition_data.records else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                let aborted: Vec<(i64, i64)> = match (
                    self.config.isolation_level,
                    partition_data.aborted_transactions,
                ) {
                    (IsolationLevel::ReadCommitted, Some(list)) => {
                        let mut list: Vec<(i64, i64)> = list
                            .iter()
                            .map(|a| (a.first_offset, a.producer_id.0))
                            .collect();
                        list.sort_unstable();
                        list
                    }
                    _ => Vec::new(),
                };
                let next = collect_records(&topic, partition, position, data, aborted, out)?;
                state.position = Some(next);
            }
        }
        Ok(stale)
    }
}

/// Decodes one partition's batches into `out`, skipping control batches,
/// aborted transactions (given as sorted `(first_offset, producer_id)`) and
/// records below `position`. Returns the new position.
fn collect_records(
    topic: &str,
    partition: i32,
    position: i64,
    data: Bytes,
    aborted: Vec<(i64, i64)>,
    out: &mut Vec<ConsumerRecord>,
) -> Result<i64> {
    let mut next = position;
    let mut pending_aborts: VecDeque<(i64, i64)> = aborted.into();
    let mut aborted_producers: HashSet<i64> = HashSet::new();
    for batch in decode_fetched(data)? {
        if batch.last_offset < next {
            continue;
        }
        while pending_aborts
            .front()
            .is_some_and(|(first, _)| *first <= batch.last_offset)
        {
            if let Some((_, producer_id)) = pending_aborts.pop_front() {
                aborted_producers.insert(producer_id);
            }
        }
        let skip = if batch.control {
            // The abort (or commit) marker ends that producer's transaction.
            aborted_producers.remove(&batch.producer_id);
            true
        } else {
            batch.transactional && aborted_producers.contains(&batch.producer_id)
        };
        if !skip {
            for record in batch.records {
                if record.offset < next {
                    continue;
                }
                out.push(ConsumerRecord {
                    topic: topic.to_string(),
                    partition,
                    offset: record.offset,
                    timestamp_ms: record.timestamp,
                    timestamp_type: record.timestamp_type,
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    leader_epoch: (record.partition_leader_epoch >= 0)
                        .then_some(record.partition_leader_epoch),
                });
            }
        }
        next = next.max(batch.last_offset + 1);
    }
    Ok(next)
}

fn build_fetch(
    connection: &Connection,
    config: &ConsumerConfig,
    metadata: &MetadataSnapshot,
    partitions: &[(String, i32, i64, i32)],
    max_wait_ms: i32,
) -> Result<(FetchRequest, i16)> {
    let mut version = connection.version_for::<FetchRequest>()?;
    let topic_id = |name: &str| {
        metadata
            .topics
            .get(name)
            .map_or(Uuid::nil(), |t| t.topic_id)
    };
    if version >= 13 && partitions.iter().any(|(t, ..)| topic_id(t).is_nil()) {
        version = 12;
    }
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = config.fetch_min_bytes;
    request.max_bytes = config.fetch_max_bytes;
    request.isolation_level = config.isolation_level as i8;
    request.session_id = 0;
    request.session_epoch = -1;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (topic, partition, position, leader_epoch) in partitions {
        let index = match topics.iter().position(|t| t.topic.0.as_str() == topic) {
            Some(index) => index,
            None => {
                let mut fetch_topic = FetchTopic::default();
                fetch_topic.topic = TopicName(StrBytes::from_string(topic.clone()));
                fetch_topic.topic_id = topic_id(topic);
                topics.push(fetch_topic);
                topics.len() - 1
            }
        };
        let mut fetch_partition = FetchPartition::default();
        fetch_partition.partition = *partition;
        fetch_partition.fetch_offset = *position;
        fetch_partition.partition_max_bytes = config.max_partition_fetch_bytes;
        fetch_partition.current_leader_epoch = *leader_epoch;
        topics[index].partitions.push(fetch_partition);
    }
    request.topics = topics;
    Ok((request, version))
}

/// Looks up offsets by timestamp (or [`EARLIEST_TIMESTAMP`] /
/// [`LATEST_TIMESTAMP`]) on each partition's leader, retrying while leaders
/// move. Returns `(offset, timestamp)` per partition.
pub async fn list_offsets(
    cluster: &Cluster,
    requests: Vec<(String, i32, i64)>,
    isolation_level: IsolationLevel,
) -> Result<HashMap<(String, i32), (i64, i64)>> {
    // Leaders of a topic just created (or moving) answer
    // NOT_LEADER_OR_FOLLOWER for a while: retried, as the Java client does,
    // for up to `request.timeout.ms`.
    let deadline = Instant::now() + Duration::from_millis(cluster.config().request_timeout_ms);
    match list_offsets_until(cluster, requests, isolation_level, deadline).await? {
        (results, None) => Ok(results),
        (_, Some(err)) => Err(err),
    }
}

/// [`list_offsets`], retrying retriable errors until `deadline` (one
/// attempt at least); returns what it found and, when some partitions
/// stayed unanswered, the last retriable error.
async fn list_offsets_until(
    cluster: &Cluster,
    requests: Vec<(String, i32, i64)>,
    isolation_level: IsolationLevel,
    deadline: Instant,
) -> Result<(HashMap<(String, i32), (i64, i64)>, Option<ClientError>)> {
    let mut results = HashMap::new();
    let mut remaining = requests;
    let mut last_error = ClientError::Timeout;
    for attempt in 0.. {
        if remaining.is_empty() {
            return Ok((results, None));
        }
        if attempt > 0 && Instant::now() >= deadline {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(METADATA_RETRY_BACKOFF).await;
            let topics: Vec<String> = remaining.iter().map(|(t, ..)| t.clone()).collect();
            cluster.refresh_topics(&topics).await?;
        }
        let mut by_leader: HashMap<i32, Vec<(String, i32, i64, i32)>> = HashMap::new();
        let mut retry = Vec::new();
        for (topic, partition, timestamp) in remaining {
            let metadata = cluster.topic(&topic).await?;
            let found =
                metadata
                    .partition(partition)
                    .ok_or_else(|| ClientError::UnknownPartition {
                        topic: topic.clone(),
                        partition,
                    })?;
            if found.leader < 0 {
                retry.push((topic, partition, timestamp));
                continue;
            }
            by_leader.entry(found.leader).or_default().push((
                topic,
                partition,
                timestamp,
                found.leader_epoch,
            ));
        }
        for (leader, partitions) in by_leader {
            let connection = match cluster.connection(leader).await {
                Ok(connection) => connection,
                Err(err) if err.is_retriable() => {
                    last_error = err;
                    retry.extend(partitions.into_iter().map(|(t, p, ts, _)| (t, p, ts)));
                    continue;
                }
                Err(err) => return Err(err),
            };
            let version = connection.version_for::<ListOffsetsRequest>()?;
            let mut request = ListOffsetsRequest::default();
            request.replica_id = (-1).into();
            request.isolation_level = isolation_level as i8;
            request.timeout_ms =
                i32::try_from(cluster.config().request_timeout_ms).unwrap_or(i32::MAX);
            for (topic, partition, timestamp, leader_epoch) in &partitions {
                let index = match request
                    .topics
                    .iter()
                    .position(|t| t.name.0.as_str() == topic)
                {
                    Some(index) => index,
                    None => {
                        let mut list_topic = ListOffsetsTopic::default();
                        list_topic.name = TopicName(StrBytes::from_string(topic.clone()));
                        request.topics.push(list_topic);
                        request.topics.len() - 1
                    }
                };
                let mut list_partition = ListOffsetsPartition::default();
                list_partition.partition_index = *partition;
                list_partition.timestamp = *timestamp;
                list_partition.current_leader_epoch = *leader_epoch;
                request.topics[index].partitions.push(list_partition);
            }
            let response = match connection.send_version(request, version).await {
                Ok(response) => response,
                Err(err) if err.is_retriable() => {
                    cluster.forget_connection(&connection).await;
                    last_error = err;
                    retry.extend(partitions.into_iter().map(|(t, p, ts, _)| (t, p, ts)));
                    continue;
                }
                Err(err) => return Err(err),
            };
            for (topic, partition, timestamp, _) in partitions {
                let answer = response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition);
                match answer {
                    Some(p) if p.error_code == 0 => {
                        results.insert((topic, partition), (p.offset, p.timestamp));
                    }
                    Some(p) => {
                        let err = ClientError::kafka(p.error_code, None);
                        if !err.is_retriable() {
                            return Err(err);
                        }
                        last_error = err;
                        retry.push((topic, partition, timestamp));
                    }
                    None => retry.push((topic, partition, timestamp)),
                }
            }
        }
        remaining = retry;
    }
    if remaining.is_empty() {
        Ok((results, None))
    } else {
        Ok((results, Some(last_error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_batch, BatchIdentity, OutgoingRecord};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::Compression;

    fn batch_at(base_offset: i64, values: &[&str], identity: BatchIdentity) -> Bytes {
        let records: Vec<OutgoingRecord> = values
            .iter()
            .map(|v| OutgoingRecord {
                key: None,
                value: Some(Bytes::from(v.to_string())),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp_ms: 10,
            })
            .collect();
        let encoded = encode_batch(&records, identity, Compression::None).expect("encode");
        // Rewrite the base offset as the broker does on append; the CRC does
        // not cover the first 12 bytes.
        let mut out = BytesMut::new();
        out.put_i64(base_offset);
        out.extend_from_slice(&encoded[8..]);
        out.freeze()
    }

    #[test]
    fn records_below_the_position_are_skipped() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch_at(0, &["a", "b", "c"], BatchIdentity::NONE));
        data.extend_from_slice(&batch_at(3, &["d", "e"], BatchIdentity::NONE));
        let mut out = Vec::new();
        let next =
            collect_records("t", 0, 1, data.freeze(), Vec::new(), &mut out).expect("collect");
        assert_eq!(next, 5);
        let offsets: Vec<i64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 2, 3, 4]);
        assert_eq!(out[0].value.as_deref(), Some(&b"b"[..]));
        assert_eq!(
            out[0].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"x")))]
        );
    }
}
