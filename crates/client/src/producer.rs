//! The producer: per-partition batching, one Produce request per broker,
//! Java's partitioning, idempotence with ordered retries.
//!
//! `send` appends to the accumulator (bounded by `buffer.memory`); a sender
//! task drains ready batches (full, lingered, flushed or retried) into one
//! request per leader, with at most `max.in.flight.requests.per.connection`
//! requests outstanding per broker. Each request runs in its own task and
//! settles its batches: complete, retry in sequence order, or fail.
//!
//! Idempotence: sequence numbers are assigned when a batch is first drained
//! and never change; at most five batches of a partition are in flight. The
//! broker sees each partition's sequences in order:
//! - a batch is written only if every unresolved earlier batch of its
//!   partition was already written ahead of it on the same connection;
//!   otherwise (the earlier one failed before the write, or went out on
//!   another connection) it goes back to its queue unsent;
//! - a batch that goes back to its queue (retry or held back) keeps its
//!   place in sequence order ahead of new batches, and is sent alone, only
//!   after every other in-flight batch of its partition has come back;
//! - while such a batch is unresolved the partition drains no new batch;
//! - until the first batch of a partition is acknowledged, only one is in
//!   flight (a broker that does not know the producer yet takes any
//!   sequence as its first, and would then refuse the earlier ones).
//!
//! `OUT_OF_ORDER_SEQUENCE_NUMBER` is retried only while
//! an earlier batch of the partition is unresolved (it caused the gap);
//! otherwise it and `UNKNOWN_PRODUCER_ID` fail the batch — the producer does
//! not silently resequence or bump its epoch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cluster::{Cluster, MetadataSnapshot};
use crate::connection::{Connection, PipelinedResponse};
use crate::error::{ClientError, Result};
use crate::partitioner::{partition_for_key, StickyPartitioner};
use crate::records::{
    encode_batch, increment_sequence, BatchIdentity, OutgoingRecord, BATCH_HEADER_BYTES,
};
use crate::ClientConfig;

/// Minimum pause between metadata refreshes the sender triggers.
const METADATA_REFRESH_BACKOFF: Duration = Duration::from_millis(100);
/// In-flight batches per partition allowed with idempotence (the broker
/// remembers the last five per producer and partition).
const IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX: usize = 5;

/// How unkeyed (and, for round robin, all) records pick a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// Java's default: murmur2 of the key, sticky partitioning without key.
    #[default]
    Default,
    /// Every record to the next partition in turn, keys ignored.
    RoundRobin,
}

/// Producer settings, named and defaulted as in the Java client 3.x.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks`: 0, 1 or -1 (all).
    pub acks: i16,
    /// `linger.ms`
    pub linger_ms: u64,
    /// `batch.size` in bytes.
    pub batch_size: usize,
    /// `compression.type`
    pub compression: Compression,
    /// `enable.idempotence`; ignored (off) unless acks is -1 and in-flight ≤ 5.
    pub enable_idempotence: bool,
    /// `retries`; the effective bound is `delivery.timeout.ms`.
    pub retries: i32,
    /// `retry.backoff.ms`
    pub retry_backoff_ms: u64,
    /// `delivery.timeout.ms`: from `send` to acknowledgement or failure.
    pub delivery_timeout_ms: u64,
    /// `max.in.flight.requests.per.connection`
    pub max_in_flight_requests_per_connection: usize,
    /// `request.timeout.ms`: broker-side Produce timeout and client wait.
    pub request_timeout_ms: u64,
    /// `max.request.size`
    pub max_request_size: usize,
    /// `buffer.memory`: bytes of unsent records before `send` waits.
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` may wait for metadata or memory.
    pub max_block_ms: u64,
    /// `partitioner.class`, as an enum.
    pub partitioner: Partitioner,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: -1,
            linger_ms: 5,
            batch_size: 16_384,
            compression: Compression::None,
            enable_idempotence: true,
            retries: i32::MAX,
            retry_backoff_ms: 100,
            delivery_timeout_ms: 120_000,
            max_in_flight_requests_per_connection: 5,
            request_timeout_ms: 30_000,
            max_request_size: 1_048_576,
            buffer_memory: 33_554_432,
            max_block_ms: 60_000,
            partitioner: Partitioner::Default,
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time; `None` means now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 for acks=0 (the broker does not answer).
    pub offset: i64,
    /// The broker's log-append time if the topic uses it, else create time.
    pub timestamp_ms: i64,
}

/// Resolves when the record's batch is acknowledged or finally fails.
#[derive(Debug)]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ClientError::Closed)))
    }
}

type TopicPartition = (String, i32);
type Delivery = oneshot::Sender<Result<RecordMetadata>>;

struct ProducerBatch {
    topic: String,
    partition: i32,
    records: Vec<OutgoingRecord>,
    deliveries: Vec<Delivery>,
    size_bytes: usize,
    created_at: Instant,
    /// No more appends (full, or drained once).
    closed: bool,
    base_sequence: Option<i32>,
    attempts: u32,
    retry_at: Option<Instant>,
    /// Went back to its queue after being drained with a sequence; counted in
    /// [`PartitionQueue::retries_unresolved`] until it settles.
    requeued: bool,
    /// Encoded once so retries resend the same bytes.
    encoded: Option<Bytes>,
    /// `buffer.memory` held until the batch settles.
    _memory: Option<OwnedSemaphorePermit>,
}

impl ProducerBatch {
    fn new(topic: &str, partition: i32, now: Instant) -> Self {
        ProducerBatch {
            topic: topic.to_string(),
            partition,
            records: Vec::new(),
            deliveries: Vec::new(),
            size_bytes: BATCH_HEADER_BYTES,
            created_at: now,
            closed: false,
            base_sequence: None,
            attempts: 0,
            retry_at: None,
            requeued: false,
            encoded: None,
            _memory: None,
        }
    }

    fn add_memory(&mut self, permit: OwnedSemaphorePermit) {
        match self._memory.as_mut() {
            Some(held) => held.merge(permit),
            None => self._memory = Some(permit),
        }
    }
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<ProducerBatch>,
    next_sequence: i32,
    in_flight: usize,
    /// Base sequence of every in-flight batch, with the connection it was
    /// written on (`None` while it waits in its broker's writer).
    in_flight_sequences: BTreeMap<i32, Option<u64>>,
    /// Batches with a sequence that went back to the queue and have not
    /// settled. While there are any, the partition sends one batch at a time
    /// (the oldest) and drains no new batch, so the broker never sees a later
    /// sequence before an earlier one it has not stored yet.
    retries_unresolved: usize,
    /// A batch with a sequence was acknowledged, so the broker knows this
    /// producer for the partition. Until then it would take any sequence as
    /// the first (and refuse the earlier ones after it), so the partition
    /// has one batch in flight at a time.
    acknowledged: bool,
}

impl PartitionQueue {
    /// Puts a batch back in sequence order ahead of never-sent batches.
    fn requeue(&mut self, mut batch: ProducerBatch) {
        if batch.base_sequence.is_some() && !batch.requeued {
            batch.requeued = true;
            self.retries_unresolved += 1;
        }
        let position = match batch.base_sequence {
            Some(sequence) => self
                .batches
                .iter()
                .position(|b| b.base_sequence.is_none_or(|s| s > sequence))
                .unwrap_or(self.batches.len()),
            None => 0,
        };
        self.batches.insert(position, batch);
    }

    /// Whether a batch with a lower sequence is unresolved (in flight or
    /// waiting for its retry).
    fn has_earlier_unresolved(&self, sequence: i32) -> bool {
        self.in_flight_sequences.range(..sequence).next().is_some()
            || self
                .batches
                .iter()
                .any(|b| b.base_sequence.is_some_and(|s| s < sequence))
    }
}

/// Limits the drain applies, copied from the config.
#[derive(Debug, Clone, Copy)]
struct DrainLimits {
    linger: Duration,
    max_request_size: usize,
    max_in_flight_per_broker: usize,
    idempotent: bool,
    delivery_timeout: Duration,
}

/// Ready batches for one broker, to go out as one Produce request.
struct DrainedRequest {
    broker_id: i32,
    batches: Vec<ProducerBatch>,
}

#[derive(Default)]
struct DrainOutcome {
    requests: Vec<DrainedRequest>,
    expired: Vec<ProducerBatch>,
    next_wake: Option<Instant>,
    needs_metadata: bool,
}

/// The accumulator and bookkeeping, guarded by one lock never held across
/// an await.
#[derive(Default)]
struct Accumulator {
    partitions: HashMap<TopicPartition, PartitionQueue>,
    sticky: StickyPartitioner,
    round_robin: HashMap<String, i32>,
    incomplete_batches: usize,
    flush_requests: usize,
    closing: bool,
    in_flight_requests: HashMap<i32, usize>,
}

struct AppendOutcome {
    /// A batch was closed or opened: the sender has a batch to send now or
    /// a new linger deadline to wait for.
    wake_sender: bool,
    delivery: DeliveryFuture,
}

impl Accumulator {
    /// Appends a record to the open batch of its partition, or a new one.
    fn append(
        &mut self,
        topic: &str,
        partition: i32,
        record: OutgoingRecord,
        memory: Option<OwnedSemaphorePermit>,
        batch_size_max: usize,
        now: Instant,
    ) -> AppendOutcome {
        let size = record.estimated_size();
        let queue = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_default();
        let fits = queue.batches.back().is_some_and(|b| {
            !b.closed && b.base_sequence.is_none() && b.size_bytes + size <= batch_size_max
        });
        if !fits {
            if let Some(last) = queue.batches.back_mut() {
                last.closed = true;
            }
            queue
                .batches
                .push_back(ProducerBatch::new(topic, partition, now));
            self.incomplete_batches += 1;
        }
        let (sender, receiver) = oneshot::channel();
        let mut batch_closed = false;
        if let Some(batch) = queue.batches.back_mut() {
            batch.size_bytes += size;
            batch.records.push(record);
            batch.deliveries.push(sender);
            if let Some(permit) = memory {
                batch.add_memory(permit);
            }
            if batch.size_bytes >= batch_size_max {
                batch.closed = true;
                batch_closed = true;
            }
        }
        AppendOutcome {
            wake_sender: batch_closed || !fits,
            delivery: DeliveryFuture { receiver },
        }
    }

    /// Takes ready batches into one request per leader, within the limits.
    fn drain(
        &mut self,
        metadata: &MetadataSnapshot,
        limits: DrainLimits,
        now: Instant,
    ) -> DrainOutcome {
        let mut outcome = DrainOutcome::default();
        let mut requests: HashMap<i32, (usize, Vec<ProducerBatch>)> = HashMap::new();
        let force = self.flush_requests > 0 || self.closing;
        let mut closed_sticky: Vec<TopicPartition> = Vec::new();

        for ((topic, partition), queue) in self.partitions.iter_mut() {
            // Batches that never reached the broker and outlived the delivery timeout.
            while queue.batches.front().is_some_and(|b| {
                b.base_sequence.is_none() && now >= b.created_at + limits.delivery_timeout
            }) {
                if let Some(batch) = queue.batches.pop_front() {
                    outcome.expired.push(batch);
                }
            }
            let Some(front) = queue.batches.front() else {
                continue;
            };
            if let Some(retry_at) = front.retry_at {
                if retry_at > now {
                    outcome.next_wake = earliest(outcome.next_wake, retry_at);
                    continue;
                }
            }
            let ready_at = front.created_at + limits.linger;
            let ready = front.closed || force || front.retry_at.is_some() || ready_at <= now;
            if !ready {
                outcome.next_wake = earliest(outcome.next_wake, ready_at);
                continue;
            }
            let leader = metadata
                .topics
                .get(topic)
                .and_then(|t| t.partition(*partition))
                .map_or(-1, |p| p.leader);
            if leader < 0 || !metadata.brokers.contains_key(&leader) {
                outcome.needs_metadata = true;
                continue;
            }
            if limits.idempotent {
                let is_retry = front.base_sequence.is_some();
                if is_retry && queue.in_flight > 0 {
                    continue;
                }
                let in_flight_max = if queue.acknowledged {
                    IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX
                } else {
                    1
                };
                if !is_retry && (queue.in_flight >= in_flight_max || queue.retries_unresolved > 0) {
                    continue;
                }
            }
            let broker_busy = self.in_flight_requests.get(&leader).copied().unwrap_or(0);
            let entry = requests.entry(leader).or_insert((0, Vec::new()));
            if entry.1.is_empty() && broker_busy >= limits.max_in_flight_per_broker {
                continue;
            }
            if !entry.1.is_empty() && entry.0 + front.size_bytes > limits.max_request_size {
                continue;
            }
            let Some(mut batch) = queue.batches.pop_front() else {
                continue;
            };
            batch.closed = true;
            if batch.retry_at.is_none() && batch.attempts == 0 {
                closed_sticky.push((topic.clone(), *partition));
            }
            if limits.idempotent && batch.base_sequence.is_none() {
                let count = i32::try_from(batch.records.len()).unwrap_or(i32::MAX);
                batch.base_sequence = Some(queue.next_sequence);
                queue.next_sequence = increment_sequence(queue.next_sequence, count);
            }
            if let Some(sequence) = batch.base_sequence {
                queue.in_flight_sequences.insert(sequence, None);
            }
            queue.in_flight += 1;
            entry.0 += batch.size_bytes;
            entry.1.push(batch);
        }

        for (topic, partition) in closed_sticky {
            if self.sticky.current(&topic) != Some(partition) {
                continue;
            }
            if let Some(t) = metadata.topics.get(&topic) {
                let available = t.available_partitions();
                self.sticky.on_batch_closed(
                    &topic,
                    partition,
                    t.partitions.len() as i32,
                    &available,
                );
            }
        }
        for (broker_id, (_, batches)) in requests {
            if batches.is_empty() {
                continue;
            }
            *self.in_flight_requests.entry(broker_id).or_default() += 1;
            outcome.requests.push(DrainedRequest { broker_id, batches });
        }
        outcome
    }

    /// Decides, right before a request is written on connection
    /// `connection_id`, which of its batches may go: a batch with a sequence
    /// goes only if every unresolved batch of its partition with a lower
    /// sequence was already written ahead of it on the same connection (the
    /// broker reads a connection's requests in order). The admitted batches
    /// are marked as written there; the others (an earlier batch failed
    /// before reaching the broker, was requeued, or went out on another
    /// connection) are returned to go back to their queue unsent.
    fn admit_for_write(
        &mut self,
        batches: Vec<ProducerBatch>,
        connection_id: u64,
    ) -> (Vec<ProducerBatch>, Vec<ProducerBatch>) {
        let mut admitted = Vec::with_capacity(batches.len());
        let mut held_back = Vec::new();
        for batch in batches {
            let Some(sequence) = batch.base_sequence else {
                admitted.push(batch);
                continue;
            };
            let Some(queue) = self
                .partitions
                .get_mut(&(batch.topic.clone(), batch.partition))
            else {
                held_back.push(batch);
                continue;
            };
            let earlier_written_here = queue
                .in_flight_sequences
                .range(..sequence)
                .all(|(_, written_on)| *written_on == Some(connection_id));
            let earlier_queued = queue
                .batches
                .iter()
                .any(|b| b.base_sequence.is_some_and(|s| s < sequence));
            if earlier_written_here && !earlier_queued {
                queue
                    .in_flight_sequences
                    .insert(sequence, Some(connection_id));
                admitted.push(batch);
            } else {
                held_back.push(batch);
            }
        }
        (admitted, held_back)
    }

    /// Applies one partition's outcome to an in-flight batch: puts it back in
    /// its queue for another attempt, or returns it with the result to settle
    /// its records with.
    fn finish(
        &mut self,
        mut batch: ProducerBatch,
        outcome: BatchOutcome,
        retry: RetryPolicy,
        now: Instant,
    ) -> Option<(ProducerBatch, Result<(i64, i64)>)> {
        let key = (batch.topic.clone(), batch.partition);
        let queue = self.partitions.entry(key).or_default();
        queue.in_flight = queue.in_flight.saturating_sub(1);
        if let Some(sequence) = batch.base_sequence {
            queue.in_flight_sequences.remove(&sequence);
        }
        let result = match outcome {
            BatchOutcome::Done {
                base_offset,
                log_append_time_ms,
            } => {
                if batch.base_sequence.is_some() {
                    queue.acknowledged = true;
                }
                Ok((base_offset, log_append_time_ms))
            }
            BatchOutcome::NotSent => {
                // Never reached the broker: no attempt used, no back-off.
                batch.retry_at = Some(now);
                queue.requeue(batch);
                return None;
            }
            BatchOutcome::Fail(err) => {
                let out_of_order =
                    err.code() == Some(ResponseError::OutOfOrderSequenceNumber.code());
                let caused_by_earlier = batch
                    .base_sequence
                    .is_some_and(|s| queue.has_earlier_unresolved(s));
                if out_of_order && caused_by_earlier && retry.allows(&batch, now) {
                    batch.attempts += 1;
                    batch.retry_at = Some(now + retry.backoff);
                    queue.requeue(batch);
                    return None;
                }
                Err(err)
            }
            BatchOutcome::Retry { .. } => {
                if retry.allows(&batch, now) {
                    batch.attempts += 1;
                    batch.retry_at = Some(now + retry.backoff);
                    queue.requeue(batch);
                    return None;
                }
                Err(ClientError::Timeout)
            }
        };
        if batch.requeued {
            batch.requeued = false;
            queue.retries_unresolved = queue.retries_unresolved.saturating_sub(1);
        }
        Some((batch, result))
    }
}

/// When a failed batch may be tried again, copied from the config.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    retries: i32,
    backoff: Duration,
    delivery_timeout: Duration,
}

impl RetryPolicy {
    fn allows(&self, batch: &ProducerBatch, now: Instant) -> bool {
        let attempts_left = i64::from(batch.attempts) < i64::from(self.retries);
        let in_time = now < batch.created_at + self.delivery_timeout;
        attempts_left && in_time
    }
}

fn earliest(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |c| c.min(candidate)))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    idempotent: bool,
    identity: (i64, i16),
    accumulator: Mutex<Accumulator>,
    wake_sender: Notify,
    incomplete: watch::Sender<usize>,
    memory: Arc<Semaphore>,
    last_metadata_refresh: Mutex<Option<Instant>>,
    /// One ordered writer per broker, fed by the sender task. Its queue is
    /// unbounded but holds at most the requests the drain lets be in flight
    /// to the broker; a writer is only replaced after it has stopped.
    broker_writers: Mutex<HashMap<i32, mpsc::UnboundedSender<Vec<ProducerBatch>>>>,
}

/// An asynchronous Kafka producer.
pub struct Producer {
    inner: Arc<Inner>,
    sender: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("idempotent", &self.inner.idempotent)
            .finish()
    }
}

impl Producer {
    /// Connects, and with idempotence obtains a producer id.
    /// The producer's `request.timeout.ms` also bounds its connections' waits.
    pub async fn new(mut client: ClientConfig, config: ProducerConfig) -> Result<Producer> {
        client.request_timeout_ms = config.request_timeout_ms;
        client.allow_auto_topic_creation = true;
        let cluster = Cluster::connect(client).await?;
        Self::with_cluster(cluster, config).await
    }

    /// A producer sharing an existing [`Cluster`].
    pub async fn with_cluster(cluster: Arc<Cluster>, config: ProducerConfig) -> Result<Producer> {
        validate(&config)?;
        let idempotent = config.enable_idempotence
            && config.acks == -1
            && config.max_in_flight_requests_per_connection
                <= IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX;
        if config.enable_idempotence && !idempotent {
            tracing::warn!(
                "enable.idempotence needs acks=-1 and max.in.flight.requests.per.connection <= 5; producing without idempotence"
            );
        }
        let identity = if idempotent {
            init_producer_id(&cluster).await?
        } else {
            (-1, -1)
        };
        let inner = Arc::new(Inner {
            memory: Arc::new(Semaphore::new(config.buffer_memory)),
            cluster,
            idempotent,
            identity,
            accumulator: Mutex::new(Accumulator::default()),
            wake_sender: Notify::new(),
            incomplete: watch::channel(0).0,
            last_metadata_refresh: Mutex::new(None),
            broker_writers: Mutex::new(HashMap::new()),
            config,
        });
        let sender = tokio::spawn(run_sender(inner.clone()));
        Ok(Producer {
            inner,
            sender: Some(sender),
        })
    }

    /// The producer id and epoch (-1, -1 without idempotence).
    pub fn producer_identity(&self) -> (i64, i16) {
        self.inner.identity
    }

    /// The cluster this producer talks to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Enqueues a record. The returned future resolves when its batch is
    /// acknowledged (immediately after the write for acks=0).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        if inner.accumulator.lock().closing {
            return Err(ClientError::Closed);
        }
        let max_block = Duration::from_millis(inner.config.max_block_ms);
        let deadline = Instant::now() + max_block;
        let outgoing = OutgoingRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp_ms: record.timestamp_ms.unwrap_or_else(now_ms),
        };
        let size = outgoing.estimated_size();
        let limit = inner
            .config
            .max_request_size
            .min(inner.config.buffer_memory);
        if size + BATCH_HEADER_BYTES > limit {
            return Err(ClientError::RecordTooLarge { size, max: limit });
        }

        let topic = match inner.cluster.cached_topic(&record.topic) {
            Some(t) if t.error_code == 0 && !t.partitions.is_empty() => t,
            _ => tokio::time::timeout_at(deadline, inner.cluster.topic_with_leaders(&record.topic))
                .await
                .map_err(|_| ClientError::Timeout)??,
        };
        let num_partitions = topic.partitions.len() as i32;

        let memory = tokio::time::timeout_at(
            deadline,
            inner.memory.clone().acquire_many_owned(size as u32),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|_| ClientError::Closed)?;

        let now = Instant::now();
        let batch_size_max = inner.config.batch_size.min(inner.config.max_request_size);
        let mut accumulator = inner.accumulator.lock();
        if accumulator.closing {
            return Err(ClientError::Closed);
        }
        let partition = match (record.partition, &outgoing.key, inner.config.partitioner) {
            (Some(p), _, _) => {
                if p < 0 || p >= num_partitions {
                    return Err(ClientError::UnknownPartition {
                        topic: record.topic,
                        partition: p,
                    });
                }
                p
            }
            (None, Some(key), Partitioner::Default) => partition_for_key(key, num_partitions),
            (None, None, Partitioner::Default) => {
                // The common case, the sticky partition still led, costs a
                // lookup; listing the led partitions only when it moves.
                match accumulator.sticky.current(&record.topic) {
                    Some(current) if topic.partition(current).is_some_and(|p| p.leader >= 0) => {
                        current
                    }
                    _ => {
                        let available = topic.available_partitions();
                        accumulator
                            .sticky
                            .partition(&record.topic, num_partitions, &available)
                    }
                }
            }
            (None, _, Partitioner::RoundRobin) => {
                let next = accumulator
                    .round_robin
                    .entry(record.topic.clone())
                    .or_insert(0);
                let chosen = *next % num_partitions;
                *next = (chosen + 1) % num_partitions;
                chosen
            }
        };
        let outcome = accumulator.append(
            &record.topic,
            partition,
            outgoing,
            Some(memory),
            batch_size_max,
            now,
        );
        let incomplete = accumulator.incomplete_batches;
        drop(accumulator);
        inner.incomplete.send_replace(incomplete);
        if outcome.wake_sender {
            inner.wake_sender.notify_one();
        }
        Ok(outcome.delivery)
    }

    /// Sends everything buffered now and waits until all of it settled.
    pub async fn flush(&self) -> Result<()> {
        self.inner.accumulator.lock().flush_requests += 1;
        self.inner.wake_sender.notify_one();
        let mut incomplete = self.inner.incomplete.subscribe();
        let waited = incomplete.wait_for(|n| *n == 0).await.map(|_| ());
        self.inner.accumulator.lock().flush_requests -= 1;
        waited.map_err(|_| ClientError::Closed)
    }

    /// Flushes, then stops the sender task.
    pub async fn close(mut self) -> Result<()> {
        let flushed = self.flush().await;
        self.inner.accumulator.lock().closing = true;
        self.inner.wake_sender.notify_one();
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
        flushed
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender finishes what is buffered, then exits on its own.
        self.inner.accumulator.lock().closing = true;
        self.inner.wake_sender.notify_one();
    }
}

fn validate(config: &ProducerConfig) -> Result<()> {
    if !matches!(config.acks, -1..=1) {
        return Err(ClientError::Config(format!(
            "acks must be -1, 0 or 1, not {}",
            config.acks
        )));
    }
    if config.batch_size == 0 || config.max_request_size <= BATCH_HEADER_BYTES {
        return Err(ClientError::Config(
            "batch.size and max.request.size must be positive".into(),
        ));
    }
    if config.max_in_flight_requests_per_connection == 0 {
        return Err(ClientError::Config(
            "max.in.flight.requests.per.connection must be at least 1".into(),
        ));
    }
    if config.buffer_memory == 0 || config.buffer_memory > Semaphore::MAX_PERMITS {
        return Err(ClientError::Config("buffer.memory is out of range".into()));
    }
    Ok(())
}

async fn init_producer_id(cluster: &Cluster) -> Result<(i64, i16)> {
    let mut last_error = ClientError::NoBrokers;
    for attempt in 0..crate::cluster::METADATA_ATTEMPTS_MAX {
        if attempt > 0 {
            tokio::time::sleep(crate::cluster::METADATA_RETRY_BACKOFF).await;
        }
        let connection = cluster.any_connection().await?;
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = 60_000;
        request.producer_id = (-1).into();
        request.producer_epoch = -1;
        let response = connection.send(request).await?;
        match ClientError::check(response.error_code, None) {
            Ok(()) => return Ok((response.producer_id.0, response.producer_epoch)),
            Err(err) if err.is_retriable() => last_error = err,
            Err(err) => return Err(err),
        }
    }
    Err(last_error)
}

async fn run_sender(inner: Arc<Inner>) {
    let limits = DrainLimits {
        linger: Duration::from_millis(inner.config.linger_ms),
        max_request_size: inner.config.max_request_size,
        max_in_flight_per_broker: inner.config.max_in_flight_requests_per_connection,
        idempotent: inner.idempotent,
        delivery_timeout: Duration::from_millis(inner.config.delivery_timeout_ms),
    };
    loop {
        let metadata = inner.cluster.metadata();
        let now = Instant::now();
        let (outcome, finished) = {
            let mut accumulator = inner.accumulator.lock();
            let outcome = accumulator.drain(&metadata, limits, now);
            let finished = accumulator.closing && accumulator.incomplete_batches == 0;
            (outcome, finished)
        };
        if finished {
            break;
        }
        for batch in outcome.expired {
            inner.settle(batch, Err(ClientError::Timeout));
        }
        if outcome.needs_metadata {
            inner.clone().request_metadata_refresh();
        }
        for request in outcome.requests {
            inner.dispatch(request);
        }
        let mut wake = outcome.next_wake;
        if outcome.needs_metadata {
            wake = earliest(wake, now + METADATA_REFRESH_BACKOFF);
        }
        match wake {
            Some(at) => {
                tokio::select! {
                    _ = inner.wake_sender.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => inner.wake_sender.notified().await,
        }
    }
    // Dropping the senders ends the broker writers.
    inner.broker_writers.lock().clear();
}

enum BatchOutcome {
    Done {
        base_offset: i64,
        log_append_time_ms: i64,
    },
    Retry {
        refresh_metadata: bool,
    },
    /// Held back before the write (an earlier batch of the partition has not
    /// reached the broker ahead of it); goes back to the queue as it is.
    NotSent,
    Fail(ClientError),
}

impl Inner {
    fn request_metadata_refresh(self: Arc<Self>) {
        {
            let mut last = self.last_metadata_refresh.lock();
            let now = Instant::now();
            if last.is_some_and(|t| now < t + METADATA_REFRESH_BACKOFF) {
                return;
            }
            *last = Some(now);
        }
        tokio::spawn(async move {
            if let Err(err) = self.cluster.refresh_metadata().await {
                tracing::debug!(%err, "metadata refresh failed");
            }
            self.wake_sender.notify_one();
        });
    }

    /// Completes or fails every record of a batch and releases its memory.
    fn settle(&self, batch: ProducerBatch, result: Result<(i64, i64)>) {
        let ProducerBatch {
            topic,
            partition,
            records,
            deliveries,
            ..
        } = batch;
        match result {
            Ok((base_offset, log_append_time_ms)) => {
                for (index, (delivery, record)) in deliveries.into_iter().zip(&records).enumerate()
                {
                    let _ = delivery.send(Ok(RecordMetadata {
                        topic: topic.clone(),
                        partition,
                        offset: if base_offset < 0 {
                            -1
                        } else {
                            base_offset + index as i64
                        },
                        timestamp_ms: if log_append_time_ms >= 0 {
                            log_append_time_ms
                        } else {
                            record.timestamp_ms
                        },
                    }));
                }
            }
            Err(err) => {
                tracing::debug!(topic, partition, %err, "batch failed");
                for delivery in deliveries {
                    let _ = delivery.send(Err(duplicate_error(&err)));
                }
            }
        }
        let incomplete = {
            let mut accumulator = self.accumulator.lock();
            accumulator.incomplete_batches = accumulator.incomplete_batches.saturating_sub(1);
            accumulator.incomplete_batches
        };
        self.incomplete.send_replace(incomplete);
        self.wake_sender.notify_one();
    }

    /// Applies one partition's outcome to an in-flight batch.
    fn finish_batch(&self, batch: ProducerBatch, outcome: BatchOutcome) -> bool {
        let retry = RetryPolicy {
            retries: self.config.retries,
            backoff: Duration::from_millis(self.config.retry_backoff_ms),
            delivery_timeout: Duration::from_millis(self.config.delivery_timeout_ms),
        };
        let finished = self
            .accumulator
            .lock()
            .finish(batch, outcome, retry, Instant::now());
        match finished {
            Some((batch, result)) => {
                self.settle(batch, result);
                true
            }
            None => false,
        }
    }
}

/// Copies an error for every record of a batch (`io::Error` is not `Clone`).
pub(crate) fn duplicate_error(err: &ClientError) -> ClientError {
    match err {
        ClientError::Io(io) => ClientError::Io(std::io::Error::new(io.kind(), io.to_string())),
        ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
        ClientError::Kafka {
            code,
            name,
            message,
        } => ClientError::Kafka {
            code: *code,
            name: name.clone(),
            message: message.clone(),
        },
        ClientError::Timeout => ClientError::Timeout,
        ClientError::UnsupportedVersion {
            api_key,
            client_min,
            client_max,
            broker,
        } => ClientError::UnsupportedVersion {
            api_key: *api_key,
            client_min: *client_min,
            client_max: *client_max,
            broker: *broker,
        },
        ClientError::NoBrokers => ClientError::NoBrokers,
        ClientError::UnknownTopic(t) => ClientError::UnknownTopic(t.clone()),
        ClientError::UnknownPartition { topic, partition } => ClientError::UnknownPartition {
            topic: topic.clone(),
            partition: *partition,
        },
        ClientError::Disconnected { addr, reason } => ClientError::Disconnected {
            addr: addr.clone(),
            reason: reason.clone(),
        },
        ClientError::RecordTooLarge { size, max } => ClientError::RecordTooLarge {
            size: *size,
            max: *max,
        },
        ClientError::Config(m) => ClientError::Config(m.clone()),
        ClientError::NoOffset { topic, partition } => ClientError::NoOffset {
            topic: topic.clone(),
            partition: *partition,
        },
        ClientError::Closed => ClientError::Closed,
    }
}

/// Settles the batches of one finished Produce request.
fn finish_request(
    inner: &Arc<Inner>,
    broker_id: i32,
    outcomes: Vec<(ProducerBatch, BatchOutcome)>,
) {
    {
        let mut accumulator = inner.accumulator.lock();
        if let Some(count) = accumulator.in_flight_requests.get_mut(&broker_id) {
            *count = count.saturating_sub(1);
        }
    }
    let mut refresh = false;
    for (batch, outcome) in outcomes {
        if let BatchOutcome::Retry {
            refresh_metadata: true,
        } = outcome
        {
            refresh = true;
        }
        inner.finish_batch(batch, outcome);
    }
    if refresh {
        inner.clone().request_metadata_refresh();
    }
    inner.wake_sender.notify_one();
}

impl Inner {
    /// Hands a drained request to its broker's writer, which writes requests
    /// in drain order so sequence numbers reach the broker in order.
    fn dispatch(self: &Arc<Self>, request: DrainedRequest) {
        let DrainedRequest { broker_id, batches } = request;
        let sender = {
            let mut writers = self.broker_writers.lock();
            let alive = writers.get(&broker_id).is_some_and(|s| !s.is_closed());
            if !alive {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(broker_writer(self.clone(), broker_id, receiver));
                writers.insert(broker_id, sender);
            }
            writers.get(&broker_id).cloned()
        };
        let unsent = match sender {
            Some(sender) => match sender.send(batches) {
                Ok(()) => return,
                Err(mpsc::error::SendError(batches)) => batches,
            },
            None => batches,
        };
        // The writer stopped without taking the request: nothing was written,
        // so the batches go back to their queues as they are.
        self.broker_writers.lock().remove(&broker_id);
        let outcomes = unsent
            .into_iter()
            .map(|b| (b, BatchOutcome::NotSent))
            .collect();
        finish_request(self, broker_id, outcomes);
    }
}

/// Writes one broker's Produce requests in order; responses are awaited in
/// separate tasks so requests pipeline.
async fn broker_writer(
    inner: Arc<Inner>,
    broker_id: i32,
    mut requests: mpsc::UnboundedReceiver<Vec<ProducerBatch>>,
) {
    while let Some(batches) = requests.recv().await {
        match start_produce(&inner, broker_id, batches).await {
            Started::Settled(outcomes) => finish_request(&inner, broker_id, outcomes),
            Started::Waiting(waiting) => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let Waiting {
                        response,
                        connection,
                        batches,
                        version,
                        topic_ids,
                    } = waiting;
                    let outcomes = match response.wait().await {
                        Ok(response) => {
                            match_produce_response(response, batches, version, &topic_ids)
                        }
                        Err(err) => {
                            if matches!(err, ClientError::Io(_) | ClientError::Disconnected { .. })
                            {
                                inner.cluster.forget_connection(&connection).await;
                            }
                            transport_failure(batches, &err)
                        }
                    };
                    finish_request(&inner, broker_id, outcomes);
                });
            }
        }
    }
}

struct Waiting {
    response: PipelinedResponse<ProduceResponse>,
    connection: Arc<Connection>,
    batches: Vec<ProducerBatch>,
    version: i16,
    topic_ids: HashMap<String, Uuid>,
}

enum Started {
    Settled(Vec<(ProducerBatch, BatchOutcome)>),
    Waiting(Waiting),
}

fn transport_failure(
    batches: Vec<ProducerBatch>,
    err: &ClientError,
) -> Vec<(ProducerBatch, BatchOutcome)> {
    batches
        .into_iter()
        .map(|b| {
            let outcome = if err.is_retriable() {
                BatchOutcome::Retry {
                    refresh_metadata: true,
                }
            } else {
                BatchOutcome::Fail(duplicate_error(err))
            };
            (b, outcome)
        })
        .collect()
}

/// Encodes the batches and writes the Produce request.
async fn start_produce(
    inner: &Arc<Inner>,
    broker_id: i32,
    mut batches: Vec<ProducerBatch>,
) -> Started {
    let identity = inner.identity;
    for batch in batches.iter_mut() {
        if batch.encoded.is_some() {
            continue;
        }
        let batch_identity = match batch.base_sequence {
            Some(base_sequence) => BatchIdentity {
                producer_id: identity.0,
                producer_epoch: identity.1,
                base_sequence,
            },
            None => BatchIdentity::NONE,
        };
        match encode_batch(&batch.records, batch_identity, inner.config.compression) {
            Ok(encoded) => batch.encoded = Some(encoded),
            Err(err) => tracing::warn!(%err, "encoding a batch failed"),
        }
    }
    let (encodable, broken): (Vec<ProducerBatch>, Vec<ProducerBatch>) =
        batches.into_iter().partition(|b| b.encoded.is_some());
    let mut outcomes: Vec<(ProducerBatch, BatchOutcome)> = broken
        .into_iter()
        .map(|b| {
            (
                b,
                BatchOutcome::Fail(ClientError::Protocol("batch could not be encoded".into())),
            )
        })
        .collect();
    if encodable.is_empty() {
        return Started::Settled(outcomes);
    }

    let connection = match inner.cluster.connection(broker_id).await {
        Ok(connection) => connection,
        Err(err) => {
            outcomes.extend(transport_failure(encodable, &err));
            return Started::Settled(outcomes);
        }
    };
    let metadata = inner.cluster.metadata();
    let mut version = match connection.version_for::<ProduceRequest>() {
        Ok(version) => version,
        Err(err) => {
            outcomes.extend(transport_failure(encodable, &err));
            return Started::Settled(outcomes);
        }
    };
    let topic_ids: HashMap<String, Uuid> = encodable
        .iter()
        .map(|b| {
            let id = metadata
                .topics
                .get(&b.topic)
                .map_or(Uuid::nil(), |t| t.topic_id);
            (b.topic.clone(), id)
        })
        .collect();
    if version >= 13 && topic_ids.values().any(|id| id.is_nil()) {
        version = 12;
    }

    // Last check before the write: a batch whose partition has an earlier
    // batch not yet written ahead of it on this connection goes back to its
    // queue instead of overtaking it.
    let encodable = if inner.idempotent {
        let (admitted, held_back) = inner
            .accumulator
            .lock()
            .admit_for_write(encodable, connection.id());
        for batch in held_back {
            inner.finish_batch(batch, BatchOutcome::NotSent);
        }
        admitted
    } else {
        encodable
    };
    if encodable.is_empty() {
        return Started::Settled(outcomes);
    }

    let mut request = ProduceRequest::default();
    request.acks = inner.config.acks;
    request.timeout_ms = i32::try_from(inner.config.request_timeout_ms).unwrap_or(i32::MAX);
    let mut by_topic: Vec<TopicProduceData> = Vec::new();
    for batch in &encodable {
        let index = match by_topic
            .iter()
            .position(|t| t.name.0.as_str() == batch.topic)
        {
            Some(index) => index,
            None => {
                let mut topic = TopicProduceData::default();
                topic.name = TopicName(StrBytes::from_string(batch.topic.clone()));
                topic.topic_id = topic_ids.get(&batch.topic).copied().unwrap_or_default();
                by_topic.push(topic);
                by_topic.len() - 1
            }
        };
        let mut partition = PartitionProduceData::default();
        partition.index = batch.partition;
        partition.records = batch.encoded.clone();
        by_topic[index].partition_data.push(partition);
    }
    request.topic_data = by_topic;

    if inner.config.acks == 0 {
        match connection.send_without_response(request, version).await {
            Ok(()) => outcomes.extend(encodable.into_iter().map(|b| {
                (
                    b,
                    BatchOutcome::Done {
                        base_offset: -1,
                        log_append_time_ms: -1,
                    },
                )
            })),
            Err(err) => {
                inner.cluster.forget_connection(&connection).await;
                outcomes.extend(transport_failure(encodable, &err));
            }
        }
        return Started::Settled(outcomes);
    }

    match connection.send_pipelined(request, version).await {
        Ok(response) if outcomes.is_empty() => Started::Waiting(Waiting {
            response,
            connection,
            batches: encodable,
            version,
            topic_ids,
        }),
        Ok(response) => {
            // Rare: some batches failed to encode; wait inline for the rest.
            match response.wait().await {
                Ok(response) => outcomes.extend(match_produce_response(
                    response, encodable, version, &topic_ids,
                )),
                Err(err) => outcomes.extend(transport_failure(encodable, &err)),
            }
            Started::Settled(outcomes)
        }
        Err(err) => {
            if matches!(err, ClientError::Io(_) | ClientError::Disconnected { .. }) {
                inner.cluster.forget_connection(&connection).await;
            }
            outcomes.extend(transport_failure(encodable, &err));
            Started::Settled(outcomes)
        }
    }
}

/// Pairs each batch with its partition's answer in a Produce response.
fn match_produce_response(
    response: ProduceResponse,
    batches: Vec<ProducerBatch>,
    version: i16,
    topic_ids: &HashMap<String, Uuid>,
) -> Vec<(ProducerBatch, BatchOutcome)> {
    batches
        .into_iter()
        .map(|batch| {
            let found = response.responses.iter().find_map(|topic| {
                let matches_topic = if version >= 13 {
                    topic_ids.get(&batch.topic) == Some(&topic.topic_id)
                } else {
                    topic.name.0.as_str() == batch.topic
                };
                if !matches_topic {
                    return None;
                }
                topic
                    .partition_responses
                    .iter()
                    .find(|p| p.index == batch.partition)
            });
            let outcome = match found {
                None => BatchOutcome::Retry {
                    refresh_metadata: true,
                },
                Some(p)
                    if p.error_code == 0
                        || p.error_code == ResponseError::DuplicateSequenceNumber.code() =>
                {
                    BatchOutcome::Done {
                        base_offset: p.base_offset,
                        log_append_time_ms: p.log_append_time_ms,
                    }
                }
                Some(p) => {
                    let err = ClientError::kafka(p.error_code, p.error_message.as_ref());
                    if err.is_retriable() {
                        BatchOutcome::Retry {
                            refresh_metadata: err.needs_metadata_refresh(),
                        }
                    } else {
                        BatchOutcome::Fail(err)
                    }
                }
            };
            (batch, outcome)
        })
        .collect()
}

/// The record accumulator without a cluster, for `benches/producer.rs`;
/// not an API.
#[doc(hidden)]
pub mod benching {
    use super::*;
    use crate::cluster::{BrokerMetadata, PartitionMetadata, TopicMetadata};

    /// One producer's accumulator over a topic of `partitions` partitions
    /// led by `brokers` brokers in turn.
    pub struct AccumulatorRun {
        accumulator: Accumulator,
        metadata: MetadataSnapshot,
        limits: DrainLimits,
        batch_size: usize,
    }

    impl AccumulatorRun {
        pub fn new(topic: &str, partitions: i32, brokers: i32, batch_size: usize) -> Self {
            let brokers_map = (0..brokers)
                .map(|id| {
                    let broker = BrokerMetadata {
                        node_id: id,
                        host: "127.0.0.1".into(),
                        port: 9092 + id,
                        rack: None,
                    };
                    (id, broker)
                })
                .collect();
            let topic_metadata = TopicMetadata {
                name: topic.to_string(),
                topic_id: Uuid::nil(),
                internal: false,
                error_code: 0,
                partitions: (0..partitions)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        error_code: 0,
                        leader: p % brokers.max(1),
                        leader_epoch: 0,
                        replicas: vec![p % brokers.max(1)],
                        isr: vec![p % brokers.max(1)],
                        offline: Vec::new(),
                    })
                    .collect(),
            };
            AccumulatorRun {
                accumulator: Accumulator::default(),
                metadata: MetadataSnapshot {
                    cluster_id: None,
                    controller_id: 0,
                    brokers: brokers_map,
                    topics: HashMap::from([(topic.to_string(), Arc::new(topic_metadata))]),
                },
                limits: DrainLimits {
                    linger: Duration::ZERO,
                    max_request_size: 1_048_576,
                    max_in_flight_per_broker: usize::MAX,
                    idempotent: false,
                    delivery_timeout: Duration::from_secs(120),
                },
                batch_size,
            }
        }

        /// Appends `record` to each partition in turn, `count` times, then
        /// drains every batch into requests (and drops them, answered by
        /// nobody). Returns the batches drained.
        pub fn append_and_drain(
            &mut self,
            topic: &str,
            record: &OutgoingRecord,
            count: usize,
        ) -> usize {
            let partitions = self
                .metadata
                .topics
                .get(topic)
                .map_or(1, |t| t.partitions.len().max(1));
            let now = Instant::now();
            for i in 0..count {
                let outcome = self.accumulator.append(
                    topic,
                    (i % partitions) as i32,
                    record.clone(),
                    None,
                    self.batch_size,
                    now,
                );
                std::hint::black_box(outcome.wake_sender);
            }
            let drained = self.accumulator.drain(&self.metadata, self.limits, now);
            let batches = drained.requests.iter().map(|r| r.batches.len()).sum();
            for request in drained.requests {
                self.accumulator.in_flight_requests.clear();
                for batch in request.batches {
                    if let Some(queue) = self
                        .accumulator
                        .partitions
                        .get_mut(&(batch.topic.clone(), batch.partition))
                    {
                        queue.in_flight = queue.in_flight.saturating_sub(1);
                    }
                    self.accumulator.incomplete_batches =
                        self.accumulator.incomplete_batches.saturating_sub(1);
                }
            }
            batches
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BrokerMetadata, PartitionMetadata, TopicMetadata};

    fn metadata(partitions: i32, leader_of: impl Fn(i32) -> i32) -> MetadataSnapshot {
        let mut snapshot = MetadataSnapshot::default();
        for id in [1, 2] {
            snapshot.brokers.insert(
                id,
                BrokerMetadata {
                    node_id: id,
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                },
            );
        }
        snapshot.topics.insert(
            "t".into(),
            Arc::new(TopicMetadata {
                name: "t".into(),
                topic_id: Uuid::nil(),
                internal: false,
                error_code: 0,
                partitions: (0..partitions)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        error_code: 0,
                        leader: leader_of(p),
                        leader_epoch: 0,
                        replicas: vec![],
                        isr: vec![],
                        offline: vec![],
                    })
                    .collect(),
            }),
        );
        snapshot
    }

    fn record(value_bytes: usize) -> OutgoingRecord {
        OutgoingRecord {
            key: None,
            value: Some(Bytes::from(vec![0u8; value_bytes])),
            headers: vec![],
            timestamp_ms: 0,
        }
    }

    fn limits(idempotent: bool) -> DrainLimits {
        DrainLimits {
            linger: Duration::from_millis(5),
            max_request_size: 10_000,
            max_in_flight_per_broker: 2,
            idempotent,
            delivery_timeout: Duration::from_secs(120),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_close_at_batch_size_and_wait_for_linger() {
        let mut acc = Accumulator::default();
        let now = Instant::now();
        let size = record(100).estimated_size();
        let batch_size = BATCH_HEADER_BYTES + 3 * size;
        let mut woke = Vec::new();
        for _ in 0..7 {
            woke.push(
                acc.append("t", 0, record(100), None, batch_size, now)
                    .wake_sender,
            );
        }
        // 3 records fill a batch exactly; the 1st, 4th and 7th open new ones.
        // Opening and filling a batch both wake the sender (a new linger
        // deadline, or a batch to send).
        assert_eq!(woke, vec![true, false, true, true, false, true, true]);
        let queue = &acc.partitions[&("t".to_string(), 0)];
        let counts: Vec<usize> = queue.batches.iter().map(|b| b.records.len()).collect();
        assert_eq!(counts, vec![3, 3, 1]);
        assert_eq!(acc.incomplete_batches, 3);

        let meta = metadata(1, |_| 1);
        // Full batches go at once, one per partition per request.
        let out = acc.drain(&meta, limits(false), now);
        assert_eq!(out.requests.len(), 1);
        assert_eq!(out.requests[0].batches.len(), 1);
        let out = acc.drain(&meta, limits(false), now);
        assert_eq!(out.requests.len(), 1);
        // Two requests in flight to broker 1: the limit holds even though the
        // last batch would be ready.
        let later = now + Duration::from_millis(5);
        let out = acc.drain(&meta, limits(false), later);
        assert!(out.requests.is_empty());
        acc.in_flight_requests.insert(1, 0);
        // The open batch lingers.
        let out = acc.drain(&meta, limits(false), now + Duration::from_millis(1));
        assert!(out.requests.is_empty());
        assert_eq!(out.next_wake, Some(now + Duration::from_millis(5)));
        let out = acc.drain(&meta, limits(false), later);
        assert_eq!(out.requests[0].batches[0].records.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_request_per_broker_within_max_request_size() {
        let mut acc = Accumulator::default();
        let now = Instant::now();
        for partition in 0..6 {
            acc.append("t", partition, record(4_000), None, 100_000, now);
        }
        let meta = metadata(6, |p| if p % 2 == 0 { 1 } else { 2 });
        let mut limits = limits(false);
        limits.max_in_flight_per_broker = 5;
        let out = acc.drain(&meta, limits, now + Duration::from_millis(5));
        assert_eq!(out.requests.len(), 2);
        for request in &out.requests {
            // Three ~4 KB batches per broker but 10 KB per request.
            let total: usize = request.batches.iter().map(|b| b.size_bytes).sum();
            assert!(total <= 10_000);
            assert!(request
                .batches
                .iter()
                .all(|b| meta.topics["t"].partitions[b.partition as usize].leader
                    == request.broker_id));
        }
        let sent: usize = out.requests.iter().map(|r| r.batches.len()).sum();
        assert_eq!(sent, 6 - 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_sequences_and_ordered_retries() {
        let mut acc = Accumulator::default();
        let now = Instant::now();
        let batch_size = BATCH_HEADER_BYTES + 2 * record(10).estimated_size();
        for _ in 0..6 {
            acc.append("t", 0, record(10), None, batch_size, now);
        }
        let meta = metadata(1, |_| 1);
        let mut limits = limits(true);
        limits.max_in_flight_per_broker = 5;
        // The broker already knows the producer for this partition.
        acc.partitions
            .get_mut(&("t".to_string(), 0))
            .expect("queue")
            .acknowledged = true;
        let mut sent = Vec::new();
        for _ in 0..3 {
            let mut out = acc.drain(&meta, limits, now);
            sent.push(out.requests.remove(0).batches.remove(0));
        }
        let sequences: Vec<Option<i32>> = sent.iter().map(|b| b.base_sequence).collect();
        assert_eq!(sequences, vec![Some(0), Some(2), Some(4)]);
        let queue = acc
            .partitions
            .get_mut(&("t".to_string(), 0))
            .expect("queue");
        assert_eq!(queue.next_sequence, 6);
        assert_eq!(queue.in_flight, 3);

        // The first batch failed retriably, the later ones are still out: an
        // OUT_OF_ORDER_SEQUENCE on them is explained by the earlier batch.
        let mut third = sent.pop().expect("third");
        let second = sent.pop().expect("second");
        let first = sent.pop().expect("first");
        queue.in_flight -= 1;
        queue.in_flight_sequences.remove(&0);
        queue.requeue(first);
        assert!(queue.has_earlier_unresolved(4));
        third.retry_at = Some(now);
        queue.in_flight -= 1;
        queue.in_flight_sequences.remove(&4);
        queue.requeue(third);
        let order: Vec<Option<i32>> = queue.batches.iter().map(|b| b.base_sequence).collect();
        assert_eq!(order, vec![Some(0), Some(4)]);
        // A retry waits until nothing of its partition is in flight.
        acc.in_flight_requests.clear();
        let out = acc.drain(&meta, limits, now);
        assert!(out.requests.is_empty());
        let queue = acc
            .partitions
            .get_mut(&("t".to_string(), 0))
            .expect("queue");
        queue.in_flight -= 1;
        queue.in_flight_sequences.remove(&2);
        drop(second);
        let mut out = acc.drain(&meta, limits, now);
        let retried = out.requests.remove(0).batches;
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].base_sequence, Some(0));
        let queue = &acc.partitions[&("t".to_string(), 0)];
        assert!(!queue.has_earlier_unresolved(0));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_leaders_ask_for_metadata_and_old_batches_expire() {
        let mut acc = Accumulator::default();
        let now = Instant::now();
        acc.append("t", 0, record(10), None, 1_000, now);
        let meta = metadata(1, |_| -1);
        let out = acc.drain(&meta, limits(false), now + Duration::from_millis(10));
        assert!(out.needs_metadata && out.requests.is_empty());
        let out = acc.drain(&meta, limits(false), now + Duration::from_secs(121));
        assert_eq!(out.expired.len(), 1);
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            retries: i32::MAX,
            backoff: Duration::from_millis(2),
            delivery_timeout: Duration::from_secs(3_600),
        }
    }

    fn sequences(batches: &[ProducerBatch]) -> Vec<Option<i32>> {
        batches.iter().map(|b| b.base_sequence).collect()
    }

    fn drain_one(
        acc: &mut Accumulator,
        meta: &MetadataSnapshot,
        now: Instant,
    ) -> Vec<ProducerBatch> {
        // Only the partition's own limits apply here, not the broker's.
        acc.in_flight_requests.clear();
        let out = acc.drain(meta, limits(true), now);
        out.requests.into_iter().flat_map(|r| r.batches).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_never_goes_out_ahead_of_an_earlier_one_that_failed_before_its_write() {
        let mut acc = Accumulator::default();
        let now = Instant::now();
        let batch_size = BATCH_HEADER_BYTES + 2 * record(10).estimated_size();
        for _ in 0..8 {
            acc.append("t", 0, record(10), None, batch_size, now);
        }
        let meta = metadata(1, |_| 1);
        let key = ("t".to_string(), 0);

        // Until the broker acknowledged a batch of the partition, one at a time.
        let first = drain_one(&mut acc, &meta, now);
        assert_eq!(sequences(&first), vec![Some(0)]);
        assert!(drain_one(&mut acc, &meta, now).is_empty());
        let (first, admitted) = acc.admit_for_write(first, 1);
        assert!(admitted.is_empty());
        for batch in first {
            let done = BatchOutcome::Done {
                base_offset: 0,
                log_append_time_ms: -1,
            };
            assert!(acc.finish(batch, done, retry_policy(), now).is_some());
        }

        // Now pipelined: two requests in the writer's queue.
        let r1 = drain_one(&mut acc, &meta, now);
        let r2 = drain_one(&mut acc, &meta, now);
        assert_eq!(sequences(&r1), vec![Some(2)]);
        assert_eq!(sequences(&r2), vec![Some(4)]);

        // The first one fails before it is written (no connection).
        for batch in r1 {
            let retry = BatchOutcome::Retry {
                refresh_metadata: true,
            };
            assert!(acc.finish(batch, retry, retry_policy(), now).is_none());
        }
        // The second must not overtake it, on any connection.
        let (admitted, held_back) = acc.admit_for_write(r2, 2);
        assert!(admitted.is_empty());
        assert_eq!(sequences(&held_back), vec![Some(4)]);
        for batch in held_back {
            assert!(acc
                .finish(batch, BatchOutcome::NotSent, retry_policy(), now)
                .is_none());
        }
        let queue = &acc.partitions[&key];
        let queued: Vec<Option<i32>> = queue.batches.iter().map(|b| b.base_sequence).collect();
        assert_eq!(queued, vec![Some(2), Some(4), None]);
        assert_eq!(queue.retries_unresolved, 2);

        // After the back-off the failed batch goes alone; the held-back one
        // and new batches wait for it.
        let later = now + Duration::from_millis(2);
        let retried = drain_one(&mut acc, &meta, later);
        assert_eq!(sequences(&retried), vec![Some(2)]);
        assert!(drain_one(&mut acc, &meta, later).is_empty());
        let (admitted, held_back) = acc.admit_for_write(retried, 3);
        assert!(held_back.is_empty());
        for batch in admitted {
            let done = BatchOutcome::Done {
                base_offset: 1,
                log_append_time_ms: -1,
            };
            assert!(acc.finish(batch, done, retry_policy(), later).is_some());
        }
        let next = drain_one(&mut acc, &meta, later);
        assert_eq!(sequences(&next), vec![Some(4)]);
        assert!(drain_one(&mut acc, &meta, later).is_empty());
        let (admitted, _) = acc.admit_for_write(next, 3);
        for batch in admitted {
            let done = BatchOutcome::Done {
                base_offset: 3,
                log_append_time_ms: -1,
            };
            assert!(acc.finish(batch, done, retry_policy(), later).is_some());
        }
        // Resolved: new batches flow again.
        assert_eq!(acc.partitions[&key].retries_unresolved, 0);
        let new = drain_one(&mut acc, &meta, later);
        assert_eq!(sequences(&new), vec![Some(6)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_earlier_ones_written_on_another_connection() {
        let mut acc = Accumulator::default();
        let now = Instant::now();
        let batch_size = BATCH_HEADER_BYTES + record(10).estimated_size();
        for _ in 0..3 {
            acc.append("t", 0, record(10), None, batch_size, now);
        }
        let meta = metadata(1, |_| 1);
        let key = ("t".to_string(), 0);
        acc.partitions.get_mut(&key).expect("queue").acknowledged = true;
        let r1 = drain_one(&mut acc, &meta, now);
        let r2 = drain_one(&mut acc, &meta, now);
        let r3 = drain_one(&mut acc, &meta, now);
        let (admitted, _) = acc.admit_for_write(r1, 1);
        assert_eq!(sequences(&admitted), vec![Some(0)]);
        // The same connection keeps the order; another one does not.
        let (admitted, _) = acc.admit_for_write(r2, 1);
        assert_eq!(sequences(&admitted), vec![Some(1)]);
        let (admitted, held_back) = acc.admit_for_write(r3, 2);
        assert!(admitted.is_empty());
        assert_eq!(sequences(&held_back), vec![Some(2)]);
    }

    /// A tiny deterministic generator for the simulation below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// What a Kafka partition keeps for one idempotent producer.
    #[derive(Default)]
    struct ModelPartition {
        log: Vec<Bytes>,
        last_sequence: Option<i32>,
        /// (first sequence, last sequence, base offset) of the last 5 batches.
        recent: VecDeque<(i32, i32, i64)>,
    }

    impl ModelPartition {
        /// Kafka's check: a duplicate of a recent batch is answered with its
        /// offset; a producer the partition does not know yet may start at
        /// any sequence; otherwise only the next sequence is taken.
        fn append(&mut self, batch: &ProducerBatch) -> BatchOutcome {
            let first = batch.base_sequence.expect("idempotent batch");
            let last = first + batch.records.len() as i32 - 1;
            if let Some(&(_, _, base_offset)) = self
                .recent
                .iter()
                .find(|(f, l, _)| *f == first && *l == last)
            {
                return BatchOutcome::Done {
                    base_offset,
                    log_append_time_ms: -1,
                };
            }
            if self.last_sequence.is_some_and(|s| first != s + 1) {
                return BatchOutcome::Fail(ClientError::kafka(
                    ResponseError::OutOfOrderSequenceNumber.code(),
                    None,
                ));
            }
            let base_offset = self.log.len() as i64;
            self.log.extend(
                batch
                    .records
                    .iter()
                    .map(|r| r.value.clone().expect("value")),
            );
            self.last_sequence = Some(last);
            self.recent.push_back((first, last, base_offset));
            if self.recent.len() > 5 {
                self.recent.pop_front();
            }
            BatchOutcome::Done {
                base_offset,
                log_append_time_ms: -1,
            }
        }
    }

    /// Drives the accumulator, drain, write check and settlement through a
    /// broker writer and one Kafka-like broker that refuses requests now and
    /// then (not leader yet), loses connections before writes and after
    /// them (with the batches stored), and checks what a user would: every
    /// record acknowledged, each partition's log holding every record once
    /// and in send order, and each acknowledged offset pointing at it.
    #[tokio::test(start_paused = true)]
    async fn idempotent_partitions_stay_in_order_through_failures() {
        for seed in 1..=40u64 {
            simulate(seed);
        }
    }

    fn simulate(seed: u64) {
        const PARTITIONS: i32 = 3;
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut acc = Accumulator::default();
        let meta = metadata(PARTITIONS, |_| 1);
        let mut limits = limits(true);
        limits.max_in_flight_per_broker = 5;
        limits.linger = Duration::from_millis(1);
        limits.delivery_timeout = Duration::from_secs(3_600);
        let batch_size = BATCH_HEADER_BYTES + 3 * record(8).estimated_size();
        let start = Instant::now();
        let mut now = start;

        let mut broker: Vec<ModelPartition> =
            (0..PARTITIONS).map(|_| ModelPartition::default()).collect();
        let mut writer: VecDeque<Vec<ProducerBatch>> = VecDeque::new();
        let mut responses: VecDeque<(u64, Vec<(ProducerBatch, BatchOutcome)>)> = VecDeque::new();
        let mut connection = 1u64;
        let mut sent: Vec<Vec<(Bytes, DeliveryFuture)>> =
            (0..PARTITIONS).map(|_| Vec::new()).collect();
        let mut settled: Vec<(ProducerBatch, Result<(i64, i64)>)> = Vec::new();

        let mut finish_request =
            |acc: &mut Accumulator, outcomes: Vec<(ProducerBatch, BatchOutcome)>, now| {
                if let Some(count) = acc.in_flight_requests.get_mut(&1) {
                    *count = count.saturating_sub(1);
                }
                for (batch, outcome) in outcomes {
                    if let Some(done) = acc.finish(batch, outcome, retry_policy(), now) {
                        acc.incomplete_batches -= 1;
                        settled.push(done);
                    }
                }
            };

        let steps = 3_000;
        let mut step = 0;
        loop {
            step += 1;
            now += Duration::from_millis(1);
            let producing = step < steps;
            if !producing {
                acc.flush_requests = 1;
            }
            if producing && rng.chance(40) {
                let partition = (rng.next() % PARTITIONS as u64) as i32;
                let value =
                    Bytes::from(format!("{partition}-{:04}", sent[partition as usize].len()));
                let mut outgoing = record(0);
                outgoing.value = Some(value.clone());
                let delivery = acc
                    .append("t", partition, outgoing, None, batch_size, now)
                    .delivery;
                sent[partition as usize].push((value, delivery));
            }
            if rng.chance(50) {
                let out = acc.drain(&meta, limits, now);
                assert!(out.expired.is_empty());
                writer.extend(out.requests.into_iter().map(|r| r.batches));
            }
            if rng.chance(50) {
                if let Some(batches) = writer.pop_front() {
                    if rng.chance(10) {
                        // No connection: nothing of the request is written.
                        connection += 1;
                        let outcomes = batches
                            .into_iter()
                            .map(|b| {
                                (
                                    b,
                                    BatchOutcome::Retry {
                                        refresh_metadata: true,
                                    },
                                )
                            })
                            .collect();
                        finish_request(&mut acc, outcomes, now);
                    } else {
                        let (admitted, held_back) = acc.admit_for_write(batches, connection);
                        for batch in held_back {
                            assert!(acc
                                .finish(batch, BatchOutcome::NotSent, retry_policy(), now)
                                .is_none());
                        }
                        // The broker handles a connection's requests in order.
                        let outcomes = admitted
                            .into_iter()
                            .map(|b| {
                                let outcome = if rng.chance(15) {
                                    BatchOutcome::Retry {
                                        refresh_metadata: true,
                                    }
                                } else {
                                    broker[b.partition as usize].append(&b)
                                };
                                (b, outcome)
                            })
                            .collect();
                        responses.push_back((connection, outcomes));
                    }
                }
            }
            if rng.chance(40) {
                if let Some((written_on, outcomes)) = responses.pop_front() {
                    let outcomes = if written_on == connection {
                        outcomes
                    } else {
                        // The connection broke before the answer arrived.
                        outcomes
                            .into_iter()
                            .map(|(b, _)| {
                                (
                                    b,
                                    BatchOutcome::Retry {
                                        refresh_metadata: true,
                                    },
                                )
                            })
                            .collect()
                    };
                    finish_request(&mut acc, outcomes, now);
                }
            }
            if rng.chance(2) {
                connection += 1;
            }
            if !producing && acc.incomplete_batches == 0 {
                break;
            }
            assert!(step < 100 * steps, "seed {seed}: the producer got stuck");
        }

        for (batch, result) in settled {
            let (base_offset, _) = match result {
                Ok(done) => done,
                Err(err) => panic!(
                    "seed {seed}: a batch of partition {} failed: {err}",
                    batch.partition
                ),
            };
            for (index, (delivery, record)) in
                batch.deliveries.into_iter().zip(&batch.records).enumerate()
            {
                let offset = base_offset + index as i64;
                let logged = &broker[batch.partition as usize].log[offset as usize];
                assert_eq!(Some(logged), record.value.as_ref(), "seed {seed}");
                let _ = delivery.send(Ok(RecordMetadata {
                    topic: batch.topic.clone(),
                    partition: batch.partition,
                    offset,
                    timestamp_ms: 0,
                }));
            }
        }
        for (partition, records) in sent.into_iter().enumerate() {
            let values: Vec<Bytes> = records.iter().map(|(v, _)| v.clone()).collect();
            assert_eq!(
                broker[partition].log, values,
                "seed {seed}: partition {partition} holds every record once, in order"
            );
            for (value, mut delivery) in records {
                let acked = delivery.receiver.try_recv();
                assert!(
                    matches!(acked, Ok(Ok(_))),
                    "seed {seed}: {value:?} was not acknowledged"
                );
            }
        }
    }
}
