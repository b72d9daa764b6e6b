//! One valid request sequence per served API and version, built as a Kafka
//! client of that version builds it (fields only where the version has
//! them, topic ids from Fetch v13 on). The version sweep runs every case
//! against Kraftwerk and requires an answer that decodes at the version
//! asked; the differential test runs the same cases against Apache Kafka
//! and compares the answers field by field.
//!
//! A case that needs state makes it itself (its own topic or group, named
//! after the case), so cases run in any order and on a fresh broker.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::wire::{CallError, Wire};

/// What one case saw: each response of its sequence, field by field.
pub type Seen = Vec<String>;

/// One request sequence at one version of one API.
pub struct Case {
    pub api: ApiKey,
    pub version: i16,
    /// What the sequence does, e.g. "unknown topic".
    pub what: &'static str,
    /// Field names whose values may differ between two correct brokers
    /// for this case, on top of [`VARIES_EVERYWHERE`].
    pub varies: &'static [&'static str],
    run: fn(&mut Ctx, i16) -> Result<Seen, String>,
}

impl Case {
    pub fn name(&self) -> String {
        format!("{:?} v{} ({})", self.api, self.version, self.what)
    }

    pub fn run(&self, ctx: &mut Ctx) -> Result<Seen, String> {
        (self.run)(ctx, self.version)
    }
}

/// Fields that differ between any two brokers or any two runs: ids a
/// broker picks, addresses, clocks and throttling.
pub const VARIES_EVERYWHERE: &[&str] = &[
    "throttle_time_ms",
    "cluster_id",
    "controller_id",
    "node_id",
    "leader_id",
    "coordinator_id",
    "broker_id",
    "host",
    "port",
    "topic_id",
    "member_id",
    "producer_id",
    "log_append_time_ms",
    "timestamp",
    "error_message",
    "unknown_tagged_fields",
    "cluster_authorized_operations",
    "topic_authorized_operations",
    "authorized_operations",
    "log_dir",
    "size",
    "partition_size",
    "offset_lag",
    "is_future_key",
    "total_bytes",
    "usable_bytes",
    "client_id",
    "client_host",
    "last_fetch_timestamp",
    "last_caught_up_timestamp",
];

/// The connection and the names a run's cases share.
pub struct Ctx {
    pub wire: Wire,
    /// Makes every topic and group name of this run unique.
    pub run_id: String,
    /// Node id of the broker the connection talks to (from Metadata).
    pub node_id: i32,
}

impl Ctx {
    pub fn new(wire: Wire) -> Result<Ctx, String> {
        Ctx::with_run_id(wire, &new_run_id())
    }

    /// A context whose names are those of another run with the same id:
    /// the differential test gives both brokers the same names.
    pub fn with_run_id(wire: Wire, run_id: &str) -> Result<Ctx, String> {
        let run_id = run_id.to_string();
        let mut ctx = Ctx {
            wire,
            run_id,
            node_id: -1,
        };
        let meta = ctx.call(12, &MetadataRequest::default().with_topics(Some(vec![])))?;
        ctx.node_id = meta.brokers.first().map(|b| b.node_id.0).unwrap_or(-1);
        Ok(ctx)
    }

    pub fn call<R: kafka_protocol::protocol::Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, String> {
        self.wire
            .call(version, request)
            .map_err(|e: CallError| format!("{}: {e}", api_name(R::KEY)))
    }

    fn name(&self, what: &str, version: i16) -> String {
        format!("sweep-{}-{what}-v{version}", self.run_id)
    }

    /// A topic of `partitions` partitions that exists once this returns,
    /// and its id.
    fn topic(&mut self, name: &str, partitions: i32) -> Result<Uuid, String> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000);
        let response = self.call(5, &request)?;
        for t in &response.topics {
            if t.error_code != 0 && t.error_code != 36 {
                return Err(format!("creating {name}: error {}", t.error_code));
            }
        }
        self.wait_for_leaders(name, partitions)
    }

    /// Waits until every partition of `name` has a leader, as a client
    /// would by polling Metadata; returns the topic id.
    fn wait_for_leaders(&mut self, name: &str, partitions: i32) -> Result<Uuid, String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let meta = self.call(
                12,
                &MetadataRequest::default()
                    .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                    )
                    .with_name(Some(topic_name(name)))])),
            )?;
            if let Some(t) = meta.topics.first() {
                let led = t
                    .partitions
                    .iter()
                    .filter(|p| p.error_code == 0 && p.leader_id.0 >= 0)
                    .count();
                if t.error_code == 0 && led == partitions as usize {
                    return Ok(t.topic_id);
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{name}: partitions without a leader after 30 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Appends `count` records with values `v0..` to partition 0 at Produce
    /// v9, retrying as a client does while a new leader is not ready.
    fn produce(&mut self, topic: &str, count: usize) -> Result<(), String> {
        let values: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
        let request = produce(topic, Uuid::nil(), crate::record_batch(&values, None), 9);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let response = self.call(9, &request)?;
            let code = response
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .map(|p| p.error_code)
                .unwrap_or(-2);
            // UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER: retriable.
            let retriable = code == 3 || code == 6;
            if code == 0 {
                return Ok(());
            }
            if !retriable || std::time::Instant::now() > deadline {
                return Err(format!("produce to {topic}: error {code}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A run id unlikely to repeat: the clock in nanoseconds, in hex.
pub fn new_run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    )
}

pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("key {key}"))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group_id(v: &str) -> GroupId {
    GroupId(s(v))
}

fn seen(r: &impl std::fmt::Debug) -> Seen {
    crate::wire::fields(r)
}

fn produce(topic: &str, topic_id: Uuid, records: Bytes, version: i16) -> ProduceRequest {
    let mut data = produce_request::TopicProduceData::default().with_partition_data(vec![
        produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(records)),
    ]);
    if version >= 13 {
        data = data.with_topic_id(topic_id);
    } else {
        data = data.with_name(topic_name(topic));
    }
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![data])
}

fn metadata_topics(version: i16, names: &[&str]) -> MetadataRequest {
    let topics = names
        .iter()
        .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(n))))
        .collect();
    MetadataRequest::default()
        .with_topics(Some(topics))
        .with_allow_auto_topic_creation(version < 4)
}

fn fetch(version: i16, topic: &str, topic_id: Uuid, partition: i32, offset: i64) -> FetchRequest {
    let mut t = fetch_request::FetchTopic::default().with_partitions(vec![
        fetch_request::FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)
            .with_current_leader_epoch(-1)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1),
    ]);
    t = if version >= 13 {
        t.with_topic_id(topic_id)
    } else {
        t.with_topic(topic_name(topic))
    };
    let mut r = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![t]);
    if version >= 7 {
        r = r.with_session_id(0).with_session_epoch(-1);
    }
    if version <= 14 {
        r = r.with_replica_id(BrokerId(-1));
    }
    r
}

fn list_offsets(version: i16, topic: &str, timestamp: i64) -> ListOffsetsRequest {
    let mut r = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp)
                    .with_current_leader_epoch(-1),
            ])]);
    if version >= 2 {
        r = r.with_isolation_level(0);
    }
    if version >= 10 {
        r = r.with_timeout_ms(30_000);
    }
    r
}

fn join(version: i16, group: &str, member_id: &str) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(30_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(
            b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",
        ))]);
    if version >= 1 {
        r = r.with_rebalance_timeout_ms(30_000);
    }
    if version >= 5 {
        r = r.with_group_instance_id(None);
    }
    r
}

/// Waits, as a client does, until `group`'s coordinator is found and loaded
/// (`__consumer_offsets` may still be created when the first group appears).
fn coordinator_ready(ctx: &mut Ctx, group: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found = ctx.call(3, &find_coordinator(3, group))?;
        if found.error_code == 0 {
            // Loading shows as COORDINATOR_LOAD_IN_PROGRESS on the first call.
            let probe = ctx.call(2, &offset_fetch(2, group, "-"))?;
            if probe.error_code == 0 {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no coordinator for {group} after 30 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Joins `group` as its only member at JoinGroup `version` (a second join
/// with the assigned member id when the broker asks for one, KIP-394).
fn join_alone(
    ctx: &mut Ctx,
    version: i16,
    group: &str,
    out: &mut Seen,
) -> Result<JoinGroupResponse, String> {
    coordinator_ready(ctx, group)?;
    let first = ctx.call(version, &join(version, group, ""))?;
    out.extend(seen(&first));
    if first.error_code == 79 {
        let second = ctx.call(version, &join(version, group, first.member_id.as_str()))?;
        out.extend(seen(&second));
        return Ok(second);
    }
    Ok(first)
}

/// A group with one member that has joined and synced at JoinGroup v5 and
/// SyncGroup v3: (member id, generation).
fn stable_group(ctx: &mut Ctx, group: &str) -> Result<(String, i32), String> {
    let mut ignored = Vec::new();
    let joined = join_alone(ctx, 5, group, &mut ignored)?;
    if joined.error_code != 0 {
        return Err(format!("join {group}: error {}", joined.error_code));
    }
    let member = joined.member_id.to_string();
    let synced = ctx.call(3, &sync(3, group, &member, joined.generation_id))?;
    if synced.error_code != 0 {
        return Err(format!("sync {group}: error {}", synced.error_code));
    }
    Ok((member, joined.generation_id))
}

fn sync(version: i16, group: &str, member: &str, generation: i32) -> SyncGroupRequest {
    let mut r = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(member))
                .with_assignment(Bytes::from_static(
                    b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",
                )),
        ]);
    if version >= 5 {
        r = r
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
    }
    r
}

fn commit(
    version: i16,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offset: i64,
) -> OffsetCommitRequest {
    let mut partition = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset)
        .with_committed_metadata(Some(s("sweep")));
    if version >= 6 {
        partition = partition.with_committed_leader_epoch(-1);
    }
    let mut r = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![partition]),
        ]);
    if version <= 4 {
        r = r.with_retention_time_ms(-1);
    }
    r
}

fn offset_fetch(version: i16, group: &str, topic: &str) -> OffsetFetchRequest {
    if version >= 8 {
        return OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(vec![0]),
                ])),
        ]);
    }
    OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![0]),
        ]))
}

fn find_coordinator(version: i16, key: &str) -> FindCoordinatorRequest {
    if version >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![s(key)])
    } else {
        FindCoordinatorRequest::default().with_key(s(key))
    }
}

fn create_topic(
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        )
}

fn delete_topics(version: i16, names: &[&str]) -> DeleteTopicsRequest {
    let r = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if version >= 6 {
        r.with_topics(
            names
                .iter()
                .map(|n| {
                    delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic_name(n)))
                })
                .collect(),
        )
    } else {
        r.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
    }
}

// The cases, one function per sequence. Each takes the version it runs at.

fn api_versions(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let mut r = ApiVersionsRequest::default();
    if v >= 3 {
        r = r
            .with_client_software_name(s("kraftwerk-sweep"))
            .with_client_software_version(s("1.0"));
    }
    Ok(seen(&ctx.call(v, &r)?))
}

fn api_versions_anonymous(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    // Empty client software name and version: refused from v3 on (KIP-511).
    Ok(seen(&ctx.call(v, &ApiVersionsRequest::default())?))
}

fn metadata_known(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("metadata", v);
    ctx.topic(&name, 2)?;
    let mut response = ctx.call(v, &metadata_topics(v, &[&name]))?;
    for t in &mut response.topics {
        t.partitions.sort_by_key(|p| p.partition_index);
    }
    Ok(seen(&response))
}

fn metadata_unknown(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("metadata-unknown", v);
    let mut r = metadata_topics(v, &[&name]);
    if v >= 4 {
        r = r.with_allow_auto_topic_creation(false);
    } else {
        // Before v4 a request cannot forbid auto-creation: ask for an
        // empty list instead (all topics in v0, none in v1-v3).
        r = r.with_topics(Some(vec![]));
    }
    let mut response = ctx.call(v, &r)?;
    // Only this run's topics, in name order: a broker may hold others.
    let prefix = format!("sweep-{}-", ctx.run_id);
    response
        .topics
        .retain(|t| t.name.as_ref().is_some_and(|n| n.0.starts_with(&prefix)));
    response.topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &mut response.topics {
        t.partitions.sort_by_key(|p| p.partition_index);
    }
    Ok(seen(&response))
}

fn produce_ok(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("produce", v);
    let id = ctx.topic(&name, 1)?;
    let values: Vec<String> = (0..5).map(|i| format!("record-{i}")).collect();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for _ in 0..2 {
        let r = produce(&name, id, crate::record_batch(&values, None), v);
        // A just-created partition may not have its leader yet (Kafka
        // answers NOT_LEADER_OR_FOLLOWER for a moment): retried, as
        // clients do, so only the answer that appended is compared.
        loop {
            let answer = ctx.call(v, &r)?;
            let code = answer
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .map_or(0, |p| p.error_code);
            if ![3, 6].contains(&code) || std::time::Instant::now() > deadline {
                out.extend(seen(&answer));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(out)
}

fn produce_unknown_topic(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("produce-unknown", v);
    let r = produce(
        &name,
        Uuid::nil(),
        crate::record_batch(&["x".to_string()], None),
        v,
    );
    Ok(seen(&ctx.call(v, &r)?))
}

fn produce_too_large(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("produce-large", v);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![create_topic(
            &name,
            1,
            &[("max.message.bytes", "1000")],
        )])
        .with_timeout_ms(30_000);
    ctx.call(5, &request)?;
    let id = ctx.wait_for_leaders(&name, 1)?;
    let big = vec!["x".repeat(5000)];
    let r = produce(&name, id, crate::record_batch(&big, None), v);
    // A leader that has just been elected may still say NOT_LEADER once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = ctx.call(v, &r)?;
        let code = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .map(|p| p.error_code);
        if code != Some(6) || std::time::Instant::now() > deadline {
            return Ok(seen(&response));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn fetch_ok(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("fetch", v);
    let id = ctx.topic(&name, 1)?;
    ctx.produce(&name, 3)?;
    ctx.produce(&name, 2)?;
    let mut out = Vec::new();
    // From the start, from inside the second batch, and at the end.
    for offset in [0, 4, 5] {
        out.extend(seen(&ctx.call(v, &fetch(v, &name, id, 0, offset))?));
    }
    Ok(out)
}

fn fetch_out_of_range(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("fetch-range", v);
    let id = ctx.topic(&name, 1)?;
    ctx.produce(&name, 2)?;
    Ok(seen(&ctx.call(v, &fetch(v, &name, id, 0, 100))?))
}

fn fetch_unknown_partition(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("fetch-partition", v);
    let id = ctx.topic(&name, 1)?;
    Ok(seen(&ctx.call(v, &fetch(v, &name, id, 7, 0))?))
}

/// A fetch naming the leader epoch it expects: the current one (0 for a
/// new topic), and one from the future (UNKNOWN_LEADER_EPOCH). Versions
/// before 9 carry no epoch.
fn fetch_leader_epochs(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("fetch-epoch", v);
    let id = ctx.topic(&name, 1)?;
    ctx.produce(&name, 2)?;
    let mut out = Vec::new();
    let epochs: &[i32] = if v >= 9 { &[0, 1000] } else { &[-1] };
    for epoch in epochs {
        let mut r = fetch(v, &name, id, 0, 0);
        for t in r.topics.iter_mut() {
            for p in t.partitions.iter_mut() {
                p.current_leader_epoch = *epoch;
            }
        }
        out.extend(seen(&ctx.call(v, &r)?));
    }
    Ok(out)
}

/// ListOffsets latest with the current leader epoch and with one from the
/// future; versions before 4 carry no epoch.
fn list_offsets_leader_epochs(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("list-offsets-epoch", v);
    ctx.topic(&name, 1)?;
    ctx.produce(&name, 2)?;
    let mut out = Vec::new();
    let epochs: &[i32] = if v >= 4 { &[0, 1000] } else { &[-1] };
    for epoch in epochs {
        let mut r = list_offsets(v, &name, -1);
        for t in r.topics.iter_mut() {
            for p in t.partitions.iter_mut() {
                p.current_leader_epoch = *epoch;
            }
        }
        out.extend(seen(&ctx.call(v, &r)?));
    }
    Ok(out)
}

fn list_offsets_specs(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("list-offsets", v);
    ctx.topic(&name, 1)?;
    ctx.produce(&name, 4)?;
    ctx.produce(&name, 3)?;
    let mut specs = vec![-1, -2, 1_600_000_000_000];
    if v >= 7 {
        specs.push(-3);
    }
    if v >= 8 {
        specs.push(-4);
    }
    let mut out = Vec::new();
    for spec in specs {
        out.extend(seen(&ctx.call(v, &list_offsets(v, &name, spec))?));
    }
    Ok(out)
}

fn list_offsets_unknown(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("list-offsets-unknown", v);
    Ok(seen(&ctx.call(v, &list_offsets(v, &name, -1))?))
}

fn offset_for_leader_epoch(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("ofle", v);
    ctx.topic(&name, 1)?;
    ctx.produce(&name, 3)?;
    let mut out = Vec::new();
    for (current, asked) in [(-1, 0), (-1, 5), (1000, 0)] {
        let mut r = OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic_name(&name))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(asked),
                ]),
        ]);
        if v >= 3 {
            r = r.with_replica_id(BrokerId(-1));
        }
        out.extend(seen(&ctx.call(v, &r)?));
    }
    Ok(out)
}

fn find_coordinator_group(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("coordinator", v);
    Ok(seen(&ctx.call(v, &find_coordinator(v, &group))?))
}

fn join_group_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("join", v);
    let mut out = Vec::new();
    let joined = join_alone(ctx, v, &group, &mut out)?;
    let member = joined.member_id.to_string();
    // Unknown member and illegal generation, then a proper sync.
    let stranger = ctx.call(v, &join(v, &group, "not-a-member"))?;
    out.extend(seen(&stranger));
    let sync_version = v.min(5);
    out.extend(seen(&ctx.call(
        sync_version,
        &sync(sync_version, &group, &member, joined.generation_id + 5),
    )?));
    out.extend(seen(&ctx.call(
        sync_version,
        &sync(sync_version, &group, &member, joined.generation_id),
    )?));
    Ok(out)
}

fn sync_group_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("sync", v);
    let mut out = Vec::new();
    let joined = join_alone(ctx, 5, &group, &mut Vec::new())?;
    let member = joined.member_id.to_string();
    out.extend(seen(&ctx.call(
        v,
        &sync(v, &group, "unknown-member", joined.generation_id),
    )?));
    out.extend(seen(
        &ctx.call(v, &sync(v, &group, &member, joined.generation_id))?,
    ));
    Ok(out)
}

fn heartbeat_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("heartbeat", v);
    let (member, generation) = stable_group(ctx, &group)?;
    let hb = |member: &str, generation: i32| {
        HeartbeatRequest::default()
            .with_group_id(group_id(&group))
            .with_generation_id(generation)
            .with_member_id(s(member))
    };
    let mut out = Vec::new();
    out.extend(seen(&ctx.call(v, &hb(&member, generation))?));
    out.extend(seen(&ctx.call(v, &hb(&member, generation + 1))?));
    out.extend(seen(&ctx.call(v, &hb("unknown-member", generation))?));
    Ok(out)
}

/// A second member joins a stable group from its own connection: the
/// first member's heartbeat is told REBALANCE_IN_PROGRESS, it joins again,
/// and both joins are answered with the next generation.
fn heartbeat_rebalance_in_progress(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("heartbeat-rebalance", v);
    let (member, generation) = stable_group(ctx, &group)?;
    let mut second = Wire::connect(ctx.wire.addr).map_err(|e| format!("second member: {e}"))?;
    // JoinGroup v3: a new member is added at once (no MEMBER_ID_REQUIRED),
    // and its answer waits for the rebalance.
    second
        .send(3, &join(3, &group, ""))
        .map_err(|e| format!("second member's JoinGroup: {e}"))?;
    let hb = HeartbeatRequest::default()
        .with_group_id(group_id(&group))
        .with_generation_id(generation)
        .with_member_id(s(&member));
    // The second member's join reaches the coordinator on another
    // connection; ask until the rebalance shows, as a client's heartbeat
    // thread does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let answer = loop {
        let answer = ctx.call(v, &hb)?;
        if answer.error_code != 0 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut out = seen(&answer);
    let rejoined = ctx.call(5, &join(5, &group, &member))?;
    let joined = second
        .receive::<JoinGroupRequest>(3)
        .map_err(|e| format!("second member's JoinGroup: {e}"))?;
    out.extend(seen(&rejoined));
    out.extend(seen(&joined));
    // Member ids differ between brokers; who leads must not.
    let second_id = joined.member_id.to_string();
    Ok(out
        .into_iter()
        .map(|line| {
            line.replace(&member, "<first member>")
                .replace(&second_id, "<second member>")
        })
        .collect())
}

fn leave_group_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("leave", v);
    let (member, _) = stable_group(ctx, &group)?;
    let leave = |member: &str| {
        let r = LeaveGroupRequest::default().with_group_id(group_id(&group));
        if v >= 3 {
            r.with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(s(member))
            ])
        } else {
            r.with_member_id(s(member))
        }
    };
    let mut out = Vec::new();
    out.extend(seen(&ctx.call(v, &leave("unknown-member"))?));
    out.extend(seen(&ctx.call(v, &leave(&member))?));
    Ok(out)
}

fn offset_commit_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("commit-topic", v);
    ctx.topic(&topic, 1)?;
    ctx.produce(&topic, 10)?;
    let mut out = Vec::new();
    // A group that is not managed by the coordinator (simple commit).
    let simple = ctx.name("commit-simple", v);
    coordinator_ready(ctx, &simple)?;
    out.extend(seen(&ctx.call(v, &commit(v, &simple, "", -1, &topic, 3))?));
    // A member of a stable group: right and wrong generation.
    let group = ctx.name("commit-group", v);
    let (member, generation) = stable_group(ctx, &group)?;
    out.extend(seen(
        &ctx.call(v, &commit(v, &group, &member, generation, &topic, 7))?,
    ));
    out.extend(seen(
        &ctx.call(v, &commit(v, &group, &member, generation + 1, &topic, 8))?,
    ));
    out.extend(seen(&ctx.call(
        v,
        &commit(v, &group, "unknown-member", generation, &topic, 8),
    )?));
    // A topic that does not exist.
    let missing = ctx.name("commit-missing", v);
    out.extend(seen(
        &ctx.call(v, &commit(v, &simple, "", -1, &missing, 1))?,
    ));
    Ok(out)
}

fn offset_fetch_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("fetch-offsets-topic", v);
    ctx.topic(&topic, 1)?;
    ctx.produce(&topic, 10)?;
    let group = ctx.name("fetch-offsets", v);
    coordinator_ready(ctx, &group)?;
    let committed = ctx.call(2, &commit(2, &group, "", -1, &topic, 6))?;
    let mut out = seen(&committed);
    out.extend(seen(&ctx.call(v, &offset_fetch(v, &group, &topic))?));
    let empty = ctx.name("fetch-offsets-none", v);
    out.extend(seen(&ctx.call(v, &offset_fetch(v, &empty, &topic))?));
    Ok(out)
}

fn describe_groups_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("describe", v);
    stable_group(ctx, &group)?;
    let missing = ctx.name("describe-none", v);
    let mut r =
        DescribeGroupsRequest::default().with_groups(vec![group_id(&group), group_id(&missing)]);
    if v >= 3 {
        r = r.with_include_authorized_operations(false);
    }
    let mut response = ctx.call(v, &r)?;
    // The order of the answers is not part of the protocol.
    response.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(seen(&response))
}

fn list_groups_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let group = ctx.name("list", v);
    stable_group(ctx, &group)?;
    let mut r = ListGroupsRequest::default();
    if v >= 4 {
        r = r.with_states_filter(vec![s("Stable")]);
    }
    if v >= 5 {
        r = r.with_types_filter(vec![s("classic")]);
    }
    let response = ctx.call(v, &r)?;
    // Other cases' groups are listed too: keep only this case's.
    let mine: Vec<_> = response
        .groups
        .iter()
        .filter(|g| g.group_id.0.as_str() == group)
        .cloned()
        .collect();
    Ok(seen(&response.with_groups(mine)))
}

fn delete_groups_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let active = ctx.name("delete-active", v);
    stable_group(ctx, &active)?;
    let topic = ctx.name("delete-groups-topic", v);
    ctx.topic(&topic, 1)?;
    let empty = ctx.name("delete-empty", v);
    coordinator_ready(ctx, &empty)?;
    ctx.call(2, &commit(2, &empty, "", -1, &topic, 0))?;
    let missing = ctx.name("delete-none", v);
    let r = DeleteGroupsRequest::default().with_groups_names(vec![
        group_id(&active),
        group_id(&empty),
        group_id(&missing),
    ]);
    let mut response = ctx.call(v, &r)?;
    // The order of the answers is not part of the protocol.
    response.results.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(seen(&response))
}

fn reassign_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("reassign", v);
    ctx.topic(&name, 1)?;
    let missing = ctx.name("reassign-missing", v);
    let node = ctx.node_id;
    let partition = |index: i32, replicas: Option<Vec<i32>>| {
        alter_partition_reassignments_request::ReassignablePartition::default()
            .with_partition_index(index)
            .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
    };
    let topic = |name: &str, partitions| {
        alter_partition_reassignments_request::ReassignableTopic::default()
            .with_name(topic_name(name))
            .with_partitions(partitions)
    };
    let mut out = Seen::new();
    // Where it is already, to a broker that does not exist, a cancel with
    // nothing in progress, an unknown partition, an unknown topic.
    for (t, p) in [
        (&name, partition(0, Some(vec![node]))),
        (&name, partition(0, Some(vec![node, 9999]))),
        (&name, partition(0, None)),
        (&name, partition(7, Some(vec![node]))),
        (&missing, partition(0, Some(vec![node]))),
    ] {
        let r = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![topic(t, vec![p])]);
        out.extend(seen(&ctx.call(v, &r)?));
    }
    if v >= 1 {
        let r = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_allow_replication_factor_change(false)
            .with_topics(vec![topic(
                &name,
                vec![partition(0, Some(vec![node, 9999]))],
            )]);
        out.extend(seen(&ctx.call(v, &r)?));
    }
    Ok(out)
}

fn list_reassignments_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("list-reassign", v);
    ctx.topic(&name, 1)?;
    let mut out = Seen::new();
    let all = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(None);
    let mut response = ctx.call(v, &all)?;
    // Only this run's topics: the reference broker may hold others.
    response
        .topics
        .retain(|t| t.name.0.contains(ctx.run_id.as_str()));
    out.extend(seen(&response));
    let named = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(Some(vec![
            list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                .with_name(topic_name(&name))
                .with_partition_indexes(vec![0, 5]),
        ]));
    out.extend(seen(&ctx.call(v, &named)?));
    Ok(out)
}

fn describe_producers_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("producers", v);
    ctx.topic(&name, 1)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let (producer_id, producer_epoch) = loop {
        let r = ctx.call(4, &init)?;
        if r.error_code == 0 {
            break (r.producer_id.0, r.producer_epoch);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("InitProducerId: error {}", r.error_code));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let values: Vec<String> = (0..3).map(|i| format!("idempotent-{i}")).collect();
    let stamp = crate::ProducerStamp {
        producer_id,
        producer_epoch,
        base_sequence: 0,
    };
    let request = produce(
        &name,
        Uuid::nil(),
        crate::record_batch(&values, Some(stamp)),
        9,
    );
    loop {
        let r = ctx.call(9, &request)?;
        let code = r
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .map_or(-1, |p| p.error_code);
        if code == 0 {
            break;
        }
        if ![3, 6].contains(&code) || std::time::Instant::now() > deadline {
            return Err(format!("idempotent produce: error {code}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let missing = ctx.name("producers-missing", v);
    let r = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic_name(&name))
            .with_partition_indexes(vec![0, 4]),
        describe_producers_request::TopicRequest::default()
            .with_name(topic_name(&missing))
            .with_partition_indexes(vec![0]),
    ]);
    Ok(seen(&ctx.call(v, &r)?))
}

fn offset_delete_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("offset-delete-topic", v);
    ctx.topic(&topic, 1)?;
    let group = ctx.name("offset-delete", v);
    coordinator_ready(ctx, &group)?;
    ctx.call(2, &commit(2, &group, "", -1, &topic, 1))?;
    let r = OffsetDeleteRequest::default()
        .with_group_id(group_id(&group))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let mut out = seen(&ctx.call(v, &r)?);
    out.extend(seen(&ctx.call(2, &offset_fetch(2, &group, &topic))?));
    Ok(out)
}

fn create_topics_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let good = ctx.name("create", v);
    let bad_config = ctx.name("create-bad-config", v);
    let r = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topic(&good, 2, &[("cleanup.policy", "compact")]),
            create_topic(&bad_config, 1, &[("retention.ms", "not-a-number")]),
            create_topic(&ctx.name("create-zero", v), 0, &[]),
        ])
        .with_timeout_ms(30_000);
    let mut out = seen(&ctx.call(v, &r)?);
    let again = CreateTopicsRequest::default()
        .with_topics(vec![create_topic(&good, 2, &[])])
        .with_timeout_ms(30_000);
    out.extend(seen(&ctx.call(v, &again)?));
    let validate = CreateTopicsRequest::default()
        .with_topics(vec![create_topic(&ctx.name("create-validate", v), 3, &[])])
        .with_timeout_ms(30_000)
        .with_validate_only(true);
    out.extend(seen(&ctx.call(v, &validate)?));
    Ok(out)
}

fn delete_topics_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("delete", v);
    ctx.topic(&name, 1)?;
    let missing = ctx.name("delete-missing", v);
    let mut response = ctx.call(v, &delete_topics(v, &[&name, &missing]))?;
    // The order of the answers is not part of the protocol.
    response.responses.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(seen(&response))
}

fn create_partitions_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("partitions", v);
    ctx.topic(&name, 1)?;
    let missing = ctx.name("partitions-missing", v);
    let t = |n: &str, count: i32| {
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(topic_name(n))
            .with_count(count)
    };
    let r = CreatePartitionsRequest::default()
        .with_topics(vec![t(&name, 3), t(&missing, 2)])
        .with_timeout_ms(30_000);
    let mut grown = ctx.call(v, &r)?;
    // The order of the answers is not part of the protocol.
    grown.results.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = seen(&grown);
    let shrink = CreatePartitionsRequest::default()
        .with_topics(vec![t(&name, 2)])
        .with_timeout_ms(30_000);
    out.extend(seen(&ctx.call(v, &shrink)?));
    Ok(out)
}

fn init_producer_id(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let mut r = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    if v >= 3 {
        r = r.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    }
    // A broker that has just started may still be loading (Kafka answers
    // COORDINATOR_LOAD_IN_PROGRESS until its producer-id block arrives):
    // retried, as clients do.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = ctx.call(v, &r)?;
        let retriable = [14, 15].contains(&answer.error_code);
        if !retriable || std::time::Instant::now() > deadline {
            return Ok(seen(&answer));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn describe_configs_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("configs", v);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![create_topic(&name, 1, &[("retention.ms", "3600000")])])
        .with_timeout_ms(30_000);
    ctx.call(5, &request)?;
    // A broker knows a new topic once its metadata has it: wait as a
    // client would (Kafka's broker may answer UNKNOWN_TOPIC_OR_PARTITION
    // for a moment after CreateTopics returns).
    ctx.wait_for_leaders(&name, 1)?;
    let resource = |kind: i8, name: &str, keys: Option<Vec<StrBytes>>| {
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configuration_keys(keys)
    };
    let node = ctx.node_id.to_string();
    let missing = ctx.name("configs-missing", v);
    let r = DescribeConfigsRequest::default()
        .with_resources(vec![
            resource(
                2,
                &name,
                Some(vec![
                    s("retention.ms"),
                    s("cleanup.policy"),
                    s("max.message.bytes"),
                ]),
            ),
            resource(
                4,
                &node,
                Some(vec![s("num.partitions"), s("log.retention.hours")]),
            ),
            resource(2, &missing, None),
        ])
        .with_include_synonyms(v >= 1);
    Ok(seen(&ctx.call(v, &r)?))
}

fn incremental_alter_configs_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("alter-configs", v);
    ctx.topic(&name, 1)?;
    let config = |k: &str, op: i8, value: Option<&str>| {
        incremental_alter_configs_request::AlterableConfig::default()
            .with_name(s(k))
            .with_config_operation(op)
            .with_value(value.map(s))
    };
    let resource = |n: &str, configs| {
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(n))
            .with_configs(configs)
    };
    let missing = ctx.name("alter-missing", v);
    let r = IncrementalAlterConfigsRequest::default().with_resources(vec![
        resource(&name, vec![config("retention.ms", 0, Some("7200000"))]),
        resource(&missing, vec![config("retention.ms", 0, Some("1"))]),
    ]);
    let mut out = seen(&ctx.call(v, &r)?);
    let invalid = IncrementalAlterConfigsRequest::default().with_resources(vec![resource(
        &name,
        vec![config("retention.ms", 0, Some("soon"))],
    )]);
    out.extend(seen(&ctx.call(v, &invalid)?));
    let unknown_key = IncrementalAlterConfigsRequest::default().with_resources(vec![resource(
        &name,
        vec![config("no.such.config", 0, Some("1"))],
    )]);
    out.extend(seen(&ctx.call(v, &unknown_key)?));
    Ok(out)
}

fn alter_configs_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("legacy-configs", v);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![create_topic(
            &name,
            1,
            &[("retention.ms", "3600000"), ("max.message.bytes", "2000")],
        )])
        .with_timeout_ms(30_000);
    ctx.call(5, &request)?;
    ctx.wait_for_leaders(&name, 1)?;
    let resource = |n: &str, configs: &[(&str, &str)]| {
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(n))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, val)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(val)))
                    })
                    .collect(),
            )
    };
    let missing = ctx.name("legacy-configs-missing", v);
    let mut out = Vec::new();
    // retention.ms replaced, max.message.bytes back to its default.
    for r in [
        vec![resource(&name, &[("retention.ms", "7200000")])],
        vec![resource(&name, &[("retention.ms", "soon")])],
        vec![resource(&missing, &[("retention.ms", "1")])],
    ] {
        out.extend(seen(
            &ctx.call(v, &AlterConfigsRequest::default().with_resources(r))?,
        ));
    }
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(&name))
            .with_configuration_keys(Some(vec![s("retention.ms"), s("max.message.bytes")])),
    ]);
    // Kafka's brokers see the change once its metadata reaches them.
    let described = settled(ctx, 1, &describe, |d| {
        d.results.iter().flat_map(|r| &r.configs).any(|c| {
            c.name.as_str() == "retention.ms"
                && c.value.as_ref().map(|v| v.as_str()) == Some("7200000")
        })
    })?;
    for r in &described.results {
        for c in &r.configs {
            out.push(format!(
                "described {} = {:?}",
                c.name.as_str(),
                c.value.as_ref().map(|v| v.as_str())
            ));
        }
    }
    Ok(out)
}

fn describe_log_dirs(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("log-dirs", v);
    ctx.topic(&name, 1)?;
    let r = DescribeLogDirsRequest::default().with_topics(Some(vec![
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic_name(&name))
            .with_partitions(vec![0]),
    ]));
    // Kafka creates a new partition's log a moment after the topic shows
    // in Metadata: asked again until the partition is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = ctx.call(v, &r)?;
        let listed = answer.results.iter().any(|d| !d.topics.is_empty());
        if listed || std::time::Instant::now() > deadline {
            return Ok(seen(&answer));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn elect_leaders(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("elect", v);
    ctx.topic(&name, 1)?;
    let mut r = ElectLeadersRequest::default()
        .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
        )
        .with_topic(topic_name(&name))
        .with_partitions(vec![0])]))
        .with_timeout_ms(30_000);
    if v >= 1 {
        r = r.with_election_type(0);
    }
    Ok(seen(&ctx.call(v, &r)?))
}

fn delete_records_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let name = ctx.name("delete-records", v);
    ctx.topic(&name, 1)?;
    ctx.produce(&name, 4)?;
    ctx.produce(&name, 4)?;
    let missing = ctx.name("delete-records-missing", v);
    let request = |topic: &str, offset: i64| {
        DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ])])
            .with_timeout_ms(30_000)
    };
    let mut out = Vec::new();
    // Inside the first batch, then backwards (no change), past the high
    // watermark, up to the high watermark, an unknown topic.
    for (topic, offset) in [
        (&name, 3),
        (&name, 1),
        (&name, 100),
        (&name, -1),
        (&missing, 0),
    ] {
        out.extend(seen(&ctx.call(v, &request(topic, offset))?));
    }
    out.extend(seen(&ctx.call(1, &list_offsets(1, &name, -2))?));
    Ok(out)
}

fn describe_cluster(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let mut r = DescribeClusterRequest::default();
    if v >= 1 {
        r = r.with_endpoint_type(1);
    }
    Ok(seen(&ctx.call(v, &r)?))
}

fn describe_quorum(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let r = DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(topic_name("__cluster_metadata"))
            .with_partitions(vec![
                describe_quorum_request::PartitionData::default().with_partition_index(0)
            ]),
    ]);
    Ok(seen(&ctx.call(v, &r)?))
}

/// Every case for every version in `min..=max` of the APIs it names.
/// A transactional producer ready to write: its coordinator found (the
/// first FindCoordinator creates `__transaction_state`) and loaded, and
/// InitProducerId answered. Returns (producer id, epoch).
fn txn_producer(ctx: &mut Ctx, transactional_id: &str) -> Result<(i64, i16), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let find = FindCoordinatorRequest::default()
        .with_key(s(transactional_id))
        .with_key_type(1);
    loop {
        let found = ctx.call(3, &find)?;
        if found.error_code == 0 {
            let init = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(transactional_id))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let r = ctx.call(4, &init)?;
            if r.error_code == 0 {
                return Ok((r.producer_id.0, r.producer_epoch));
            }
            // NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
            // COORDINATOR_NOT_AVAILABLE, CONCURRENT_TRANSACTIONS: retriable.
            if ![14, 15, 16, 51].contains(&r.error_code) {
                return Err(format!("InitProducerId: error {}", r.error_code));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "no transaction coordinator for {transactional_id} after 60 s"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn add_partitions(
    id: &str,
    producer: (i64, i16),
    partitions: &[(&str, i32)],
) -> AddPartitionsToTxnRequest {
    let mut topics: Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic> = Vec::new();
    for (t, p) in partitions {
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partitions.push(*p),
            None => topics.push(
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(topics)
}

fn end_txn(id: &str, producer: (i64, i16), commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit)
}

/// Ends a transaction and waits until its markers are written (the next
/// InitProducerId is refused with CONCURRENT_TRANSACTIONS until then).
fn end_and_settle(
    ctx: &mut Ctx,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> Result<EndTxnResponse, String> {
    let ended = ctx.call(1, &end_txn(id, producer, commit))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = ctx.call(
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(id))]),
        )?;
        let state = d
            .transaction_states
            .first()
            .map(|t| t.transaction_state.to_string());
        if !matches!(state.as_deref(), Some("PrepareCommit" | "PrepareAbort")) {
            return Ok(ended);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{id}: markers not written after 30 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A transactional batch on partition 0 of `topic`.
fn txn_produce(
    ctx: &mut Ctx,
    id: &str,
    topic: &str,
    producer: (i64, i16),
    values: &[&str],
) -> Result<ProduceResponse, String> {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let stamp = crate::ProducerStamp {
        producer_id: producer.0,
        producer_epoch: producer.1,
        base_sequence: 0,
    };
    let request = produce(
        topic,
        Uuid::nil(),
        crate::transactional_batch(&values, stamp),
        9,
    )
    .with_transactional_id(Some(TransactionalId(s(id))));
    // NOT_LEADER_OR_FOLLOWER is retriable: Kafka answers it while the
    // partition leader's check with the transaction coordinator (KIP-890)
    // has not gone through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = ctx.call(9, &request)?;
        let code = r
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .map_or(-1, |p| p.error_code);
        if ![3, 6].contains(&code) || std::time::Instant::now() > deadline {
            return Ok(r);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn add_partitions_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("txn-add", v);
    ctx.topic(&topic, 2)?;
    let id = ctx.name("txn-add-id", v);
    let producer = txn_producer(ctx, &id)?;
    let missing = ctx.name("txn-add-missing", v);
    let mut out = Seen::new();
    out.extend(seen(
        &ctx.call(v, &add_partitions(&id, producer, &[(&topic, 0)]))?,
    ));
    out.extend(seen(&ctx.call(
        v,
        &add_partitions(&id, producer, &[(&topic, 0), (&topic, 1)]),
    )?));
    // (Kafka lists a mixed answer in hash order, so the unknown topic
    // comes alone.)
    out.extend(seen(
        &ctx.call(v, &add_partitions(&id, producer, &[(&missing, 0)]))?,
    ));
    let stale = (producer.0, producer.1 - 1);
    out.extend(seen(
        &ctx.call(v, &add_partitions(&id, stale, &[(&topic, 1)]))?,
    ));
    let other = (producer.0 + 1, producer.1);
    out.extend(seen(
        &ctx.call(v, &add_partitions(&id, other, &[(&topic, 1)]))?,
    ));
    out.extend(seen(&end_and_settle(ctx, &id, producer, false)?));
    Ok(out)
}

fn add_offsets_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let id = ctx.name("txn-offsets-id", v);
    let group = ctx.name("txn-offsets-group", v);
    coordinator_ready(ctx, &group)?;
    let producer = txn_producer(ctx, &id)?;
    let add = |producer: (i64, i16)| {
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_group_id(group_id(&group))
    };
    let mut out = seen(&ctx.call(v, &add(producer))?);
    out.extend(seen(&ctx.call(v, &add((producer.0, producer.1 + 1)))?));
    out.extend(seen(&end_and_settle(ctx, &id, producer, false)?));
    Ok(out)
}

fn end_txn_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("txn-end", v);
    ctx.topic(&topic, 1)?;
    let id = ctx.name("txn-end-id", v);
    let producer = txn_producer(ctx, &id)?;
    let mut out = Seen::new();
    // Nothing open yet; a write to a partition outside any transaction
    // is refused (KIP-890 part 1).
    out.extend(seen(&ctx.call(v, &end_txn(&id, producer, true))?));
    out.extend(seen(&txn_produce(ctx, &id, &topic, producer, &["early"])?));
    out.extend(seen(
        &ctx.call(3, &add_partitions(&id, producer, &[(&topic, 0)]))?,
    ));
    out.extend(seen(&txn_produce(ctx, &id, &topic, producer, &["a", "b"])?));
    // A fenced epoch, then the real commit.
    out.extend(seen(
        &ctx.call(v, &end_txn(&id, (producer.0, producer.1 - 1), true))?,
    ));
    out.extend(seen(&ctx.call(v, &end_txn(&id, producer, true))?));
    let d = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(s(&id))]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = ctx.call(0, &d)?;
        if r.transaction_states
            .first()
            .map(|t| t.transaction_state.as_str())
            == Some("CompleteCommit")
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err("transaction not complete after 30 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Aborting what was committed.
    out.extend(seen(&ctx.call(v, &end_txn(&id, producer, false))?));
    // Both records and the marker are readable by read_committed.
    let mut f = fetch(11, &topic, Uuid::nil(), 0, 0);
    f.isolation_level = 1;
    let r = ctx.call(11, &f)?;
    let p = r.responses.first().and_then(|t| t.partitions.first());
    out.push(format!(
        "high watermark {:?}, last stable {:?}",
        p.map(|p| p.high_watermark),
        p.map(|p| p.last_stable_offset)
    ));
    Ok(out)
}

fn txn_offset_commit_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("txn-commit", v);
    ctx.topic(&topic, 1)?;
    let id = ctx.name("txn-commit-id", v);
    let group = ctx.name("txn-commit-group", v);
    coordinator_ready(ctx, &group)?;
    let producer = txn_producer(ctx, &id)?;
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s(&id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(group_id(&group));
    let mut out = seen(&ctx.call(3, &add)?);
    let commit = |producer: (i64, i16), generation: i32, member: &str| {
        let mut r = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&id)))
            .with_group_id(group_id(&group))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(s("meta"))),
                    ]),
            ]);
        if v >= 3 {
            r = r.with_generation_id(generation).with_member_id(s(member));
        }
        r
    };
    out.extend(seen(&ctx.call(v, &commit(producer, -1, ""))?));
    if v >= 3 {
        // KIP-447: a member the group does not know.
        out.extend(seen(&ctx.call(v, &commit(producer, -1, "stranger"))?));
    }
    // Not visible before the transaction commits; unstable to a reader
    // that requires stable offsets.
    out.extend(seen(&ctx.call(2, &offset_fetch(2, &group, &topic))?));
    for version in [7, 8] {
        let stable = offset_fetch(version, &group, &topic).with_require_stable(true);
        out.extend(seen(&ctx.call(version, &stable)?));
    }
    out.extend(seen(&end_and_settle(ctx, &id, producer, true)?));
    out.extend(seen(&ctx.call(2, &offset_fetch(2, &group, &topic))?));
    Ok(out)
}

fn describe_transactions_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("txn-describe", v);
    ctx.topic(&topic, 2)?;
    let id = ctx.name("txn-describe-id", v);
    let producer = txn_producer(ctx, &id)?;
    let unknown = ctx.name("txn-describe-unknown", v);
    let d = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(s(&id)), TransactionalId(s(&unknown))]);
    let mut out = seen(&ctx.call(v, &d)?);
    // One partition: Kafka lists a transaction's partitions in hash order.
    ctx.call(3, &add_partitions(&id, producer, &[(&topic, 1)]))?;
    let d = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(s(&id))]);
    out.extend(seen(&ctx.call(v, &d)?));
    out.extend(seen(&end_and_settle(ctx, &id, producer, false)?));
    Ok(out)
}

fn list_transactions_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("txn-list", v);
    ctx.topic(&topic, 1)?;
    let id = ctx.name("txn-list-id", v);
    let producer = txn_producer(ctx, &id)?;
    ctx.call(3, &add_partitions(&id, producer, &[(&topic, 0)]))?;
    let mut r = ListTransactionsRequest::default()
        .with_state_filters(vec![s("Ongoing"), s("NoSuchState")])
        .with_producer_id_filters(vec![ProducerId(producer.0)]);
    if v >= 1 {
        r = r.with_duration_filter(-1);
    }
    let mut out = seen(&ctx.call(v, &r)?);
    let none = ListTransactionsRequest::default()
        .with_state_filters(vec![s("CompleteCommit")])
        .with_producer_id_filters(vec![ProducerId(producer.0)]);
    out.extend(seen(&ctx.call(v, &none)?));
    out.extend(seen(&end_and_settle(ctx, &id, producer, false)?));
    Ok(out)
}

/// On a PLAINTEXT listener there is no SASL exchange to take part in:
/// Kafka answers ILLEGAL_SASL_STATE.
fn sasl_handshake_plaintext(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let r = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
    Ok(seen(&ctx.call(v, &r)?))
}

fn sasl_authenticate_plaintext(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let r = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p"));
    Ok(seen(&ctx.call(v, &r)?))
}

fn scram_upsert(user: &str, mechanism: i8, iterations: i32) -> AlterUserScramCredentialsRequest {
    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(s(user))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from_static(b"0123456789abcdef"))
            .with_salted_password(Bytes::from(vec![7u8; 32])),
    ])
}

fn scram_delete(user: &str, mechanism: i8) -> AlterUserScramCredentialsRequest {
    AlterUserScramCredentialsRequest::default().with_deletions(vec![
        alter_user_scram_credentials_request::ScramCredentialDeletion::default()
            .with_name(s(user))
            .with_mechanism(mechanism),
    ])
}

fn describe_scram(users: &[&str]) -> DescribeUserScramCredentialsRequest {
    DescribeUserScramCredentialsRequest::default().with_users(Some(
        users
            .iter()
            .map(|u| describe_user_scram_credentials_request::UserName::default().with_name(s(u)))
            .collect(),
    ))
}

/// Each request names one user: Kafka answers several in hash order.
fn alter_scram_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let user = ctx.name("scram-alter", v);
    let mut out = seen(&ctx.call(v, &scram_upsert(&user, 1, 8192))?);
    out.extend(seen(&ctx.call(v, &scram_upsert(&user, 1, 1000))?));
    out.extend(seen(&ctx.call(v, &scram_upsert(&user, 2, 100_000))?));
    out.extend(seen(&ctx.call(v, &scram_upsert(&user, 0, 8192))?));
    out.extend(seen(&ctx.call(v, &scram_upsert("", 1, 8192))?));
    out.extend(seen(&ctx.call(v, &scram_delete(&user, 2))?));
    let has_credential = |r: &DescribeUserScramCredentialsResponse| {
        r.results
            .first()
            .is_some_and(|u| !u.credential_infos.is_empty())
    };
    out.extend(seen(&settled(
        ctx,
        0,
        &describe_scram(&[&user]),
        has_credential,
    )?));
    out.extend(seen(&ctx.call(v, &scram_delete(&user, 1))?));
    out.extend(seen(&settled(ctx, 0, &describe_scram(&[&user]), |r| {
        !has_credential(r)
    })?));
    Ok(out)
}

fn describe_scram_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let user = ctx.name("scram-describe", v);
    let unknown = ctx.name("scram-nobody", v);
    ctx.call(0, &scram_upsert(&user, 2, 4096))?;
    let mut out = seen(&settled(ctx, v, &describe_scram(&[&user]), |r| {
        r.results
            .first()
            .is_some_and(|u| !u.credential_infos.is_empty())
    })?);
    out.extend(seen(&ctx.call(v, &describe_scram(&[&unknown]))?));
    out.extend(seen(&ctx.call(v, &describe_scram(&[&unknown, &unknown]))?));
    ctx.call(0, &scram_delete(&user, 2))?;
    Ok(out)
}

/// Without `authorizer.class.name` (both brokers here) the ACL APIs answer
/// SECURITY_DISABLED, as Kafka does.
fn create_acls_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let r = CreateAclsRequest::default().with_creations(vec![
        create_acls_request::AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s(&ctx.name("acl", v)))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3),
    ]);
    Ok(seen(&ctx.call(v, &r)?))
}

fn describe_acls_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let r = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    Ok(seen(&ctx.call(v, &r)?))
}

fn delete_acls_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let r = DeleteAclsRequest::default().with_filters(vec![
        delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(s(&ctx.name("acl", v))))
            .with_pattern_type_filter(3)
            .with_operation(1)
            .with_permission_type(1),
    ]);
    Ok(seen(&ctx.call(v, &r)?))
}

fn quota_entity(user: &str) -> Vec<alter_client_quotas_request::EntityData> {
    vec![alter_client_quotas_request::EntityData::default()
        .with_entity_type(s("user"))
        .with_entity_name(Some(s(user)))]
}

fn alter_quota(user: &str, key: &str, value: f64, remove: bool) -> AlterClientQuotasRequest {
    AlterClientQuotasRequest::default().with_entries(vec![
        alter_client_quotas_request::EntryData::default()
            .with_entity(quota_entity(user))
            .with_ops(vec![alter_client_quotas_request::OpData::default()
                .with_key(s(key))
                .with_value(value)
                .with_remove(remove)]),
    ])
}

fn describe_quota(user: &str, strict: bool) -> DescribeClientQuotasRequest {
    DescribeClientQuotasRequest::default()
        .with_components(vec![
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(s("user"))
                .with_match_type(0)
                .with_match(Some(s(user))),
        ])
        .with_strict(strict)
}

/// Kafka's broker answers a describe from its metadata cache, which
/// follows the controller a moment after an alter returns: ask again until
/// `settled` holds (for two seconds at most), then report what was seen.
fn settled<R: kafka_protocol::protocol::Request>(
    ctx: &mut Ctx,
    version: i16,
    request: &R,
    settled: impl Fn(&R::Response) -> bool,
) -> Result<R::Response, String>
where
    R::Response: std::fmt::Debug,
{
    for _ in 0..20 {
        let response = ctx.call(version, request)?;
        if settled(&response) {
            return Ok(response);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ctx.call(version, request)
}

fn quota_count(r: &DescribeClientQuotasResponse) -> usize {
    r.entries.as_ref().map_or(0, |e| e.len())
}

/// One entity per request: Kafka answers several in hash order.
fn alter_client_quotas_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let user = ctx.name("quota-alter", v);
    let mut out = seen(&ctx.call(
        v,
        &alter_quota(&user, "producer_byte_rate", 1_048_576.0, false),
    )?);
    out.extend(seen(
        &ctx.call(v, &alter_quota(&user, "no_such_quota", 5.0, false))?,
    ));
    out.extend(seen(
        &ctx.call(v, &alter_quota(&user, "consumer_byte_rate", 1.5, false))?,
    ));
    out.extend(seen(&settled(ctx, 0, &describe_quota(&user, true), |r| {
        quota_count(r) == 1
    })?));
    out.extend(seen(
        &ctx.call(v, &alter_quota(&user, "producer_byte_rate", 0.0, true))?,
    ));
    out.extend(seen(&settled(ctx, 0, &describe_quota(&user, true), |r| {
        quota_count(r) == 0
    })?));
    Ok(out)
}

fn describe_client_quotas_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let user = ctx.name("quota-describe", v);
    ctx.call(
        0,
        &alter_quota(&user, "consumer_byte_rate", 2_000_000.0, false),
    )?;
    let mut out = seen(&settled(ctx, v, &describe_quota(&user, false), |r| {
        quota_count(r) == 1
    })?);
    out.extend(seen(
        &ctx.call(v, &describe_quota(&ctx.name("quota-nobody", v), true))?,
    ));
    ctx.call(0, &alter_quota(&user, "consumer_byte_rate", 0.0, true))?;
    Ok(out)
}

/// A hanging transaction aborted by hand, as `kafka-transactions.sh
/// abort` does it: DescribeProducers, then WriteTxnMarkers to the
/// partition leader.
fn write_txn_markers_flow(ctx: &mut Ctx, v: i16) -> Result<Seen, String> {
    let topic = ctx.name("txn-markers", v);
    ctx.topic(&topic, 1)?;
    let id = ctx.name("txn-markers-id", v);
    let producer = txn_producer(ctx, &id)?;
    ctx.call(3, &add_partitions(&id, producer, &[(&topic, 0)]))?;
    let mut out = seen(&txn_produce(ctx, &id, &topic, producer, &["hanging"])?);
    let describe = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic_name(&topic))
            .with_partition_indexes(vec![0]),
    ]);
    let described = ctx.call(0, &describe)?;
    let coordinator_epoch = described
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .and_then(|p| p.active_producers.first())
        .map_or(-1, |p| p.coordinator_epoch);
    let marker = |partitions: Vec<i32>| {
        WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(topic_name(&topic))
                        .with_partition_indexes(partitions),
                ]),
        ])
    };
    out.extend(seen(&ctx.call(v, &marker(vec![0]))?));
    out.extend(seen(&ctx.call(v, &marker(vec![3]))?));
    // The stable offset moved past the aborted record and its marker.
    let mut f = fetch(11, &topic, Uuid::nil(), 0, 0);
    f.isolation_level = 1;
    let r = ctx.call(11, &f)?;
    let p = r.responses.first().and_then(|t| t.partitions.first());
    out.push(format!(
        "high watermark {:?}, last stable {:?}, aborted {:?}",
        p.map(|p| p.high_watermark),
        p.map(|p| p.last_stable_offset),
        p.and_then(|p| p.aborted_transactions.as_ref())
            .map(|a| a.iter().map(|t| t.first_offset).collect::<Vec<_>>())
    ));
    out.extend(seen(&end_and_settle(ctx, &id, producer, false)?));
    Ok(out)
}

pub fn all_cases(served: impl Fn(ApiKey) -> Option<(i16, i16)>) -> Vec<Case> {
    type Run = fn(&mut Ctx, i16) -> Result<Seen, String>;
    let table: &[(ApiKey, &'static str, &'static [&'static str], Run)] = &[
        (ApiKey::Produce, "append twice", &[], produce_ok),
        (ApiKey::Produce, "unknown topic", &[], produce_unknown_topic),
        (
            ApiKey::Produce,
            "batch above max.message.bytes",
            &[],
            produce_too_large,
        ),
        (ApiKey::Fetch, "start, inside a batch, end", &[], fetch_ok),
        (
            ApiKey::Fetch,
            "offset out of range",
            &[],
            fetch_out_of_range,
        ),
        (
            ApiKey::Fetch,
            "unknown partition",
            &[],
            fetch_unknown_partition,
        ),
        (
            ApiKey::Fetch,
            "current and future leader epoch",
            &[],
            fetch_leader_epochs,
        ),
        (ApiKey::ListOffsets, "every spec", &[], list_offsets_specs),
        (
            ApiKey::ListOffsets,
            "current and future leader epoch",
            &[],
            list_offsets_leader_epochs,
        ),
        (
            ApiKey::ListOffsets,
            "unknown topic",
            &[],
            list_offsets_unknown,
        ),
        (ApiKey::Metadata, "known topic", &[], metadata_known),
        (ApiKey::Metadata, "unknown topic", &[], metadata_unknown),
        (
            ApiKey::OffsetCommit,
            "simple, member, stale generation, unknown member, unknown topic",
            &[],
            offset_commit_flow,
        ),
        (
            ApiKey::OffsetFetch,
            "committed and none",
            &[],
            offset_fetch_flow,
        ),
        (
            ApiKey::FindCoordinator,
            "group",
            &[],
            find_coordinator_group,
        ),
        (
            ApiKey::JoinGroup,
            "join, stranger, sync with wrong and right generation",
            &["leader"],
            join_group_flow,
        ),
        (
            ApiKey::Heartbeat,
            "stable, stale generation, unknown member",
            &[],
            heartbeat_flow,
        ),
        (
            ApiKey::Heartbeat,
            "rebalance in progress",
            &[],
            heartbeat_rebalance_in_progress,
        ),
        (
            ApiKey::LeaveGroup,
            "unknown member, member",
            &[],
            leave_group_flow,
        ),
        (
            ApiKey::SyncGroup,
            "unknown member, member",
            &[],
            sync_group_flow,
        ),
        (
            ApiKey::DescribeGroups,
            "stable and unknown group",
            &[],
            describe_groups_flow,
        ),
        (ApiKey::ListGroups, "stable group", &[], list_groups_flow),
        (
            ApiKey::ApiVersions,
            "versions",
            &[
                "api_keys",
                "min_version",
                "max_version",
                "api_key",
                "finalized_features_epoch",
            ],
            api_versions,
        ),
        (
            ApiKey::ApiVersions,
            "no client software name",
            &["api_keys", "min_version", "max_version", "api_key"],
            api_versions_anonymous,
        ),
        (
            ApiKey::CreateTopics,
            "good, bad config, zero partitions, again, validate only",
            &[],
            create_topics_flow,
        ),
        (
            ApiKey::DeleteTopics,
            "existing and unknown",
            &[],
            delete_topics_flow,
        ),
        (
            ApiKey::DeleteRecords,
            "inside a batch, backwards, past and at the high watermark, unknown topic",
            &[],
            delete_records_flow,
        ),
        (ApiKey::InitProducerId, "idempotent", &[], init_producer_id),
        (
            ApiKey::OffsetForLeaderEpoch,
            "current, future, fenced",
            &[],
            offset_for_leader_epoch,
        ),
        (
            ApiKey::DescribeConfigs,
            "topic, broker, unknown topic",
            &[],
            describe_configs_flow,
        ),
        (
            ApiKey::DescribeLogDirs,
            "one partition",
            &[],
            describe_log_dirs,
        ),
        (
            ApiKey::CreatePartitions,
            "grow, unknown, shrink",
            &[],
            create_partitions_flow,
        ),
        (
            ApiKey::DeleteGroups,
            "active, empty, unknown",
            &[],
            delete_groups_flow,
        ),
        (
            ApiKey::ElectLeaders,
            "preferred, already leader",
            &[],
            elect_leaders,
        ),
        (
            ApiKey::IncrementalAlterConfigs,
            "set, unknown topic, invalid value, unknown key",
            &[],
            incremental_alter_configs_flow,
        ),
        (
            ApiKey::AlterConfigs,
            "replace, invalid value, unknown topic",
            &[],
            alter_configs_flow,
        ),
        (ApiKey::OffsetDelete, "empty group", &[], offset_delete_flow),
        (
            ApiKey::AlterPartitionReassignments,
            "in place, unknown broker, cancel, unknown partition and topic",
            &[],
            reassign_flow,
        ),
        (
            ApiKey::DescribeProducers,
            "after an idempotent batch, unknown partition and topic",
            // The client's clock stamps the batch.
            &["last_timestamp"],
            describe_producers_flow,
        ),
        (
            ApiKey::ListPartitionReassignments,
            "none in progress",
            &[],
            list_reassignments_flow,
        ),
        (
            ApiKey::DescribeQuorum,
            "metadata partition",
            // The metadata log's offsets depend on its history; endpoints
            // on the ports each quorum was given.
            &["high_watermark", "log_end_offset", "listeners"],
            describe_quorum,
        ),
        (ApiKey::DescribeCluster, "brokers", &[], describe_cluster),
        (
            ApiKey::AddPartitionsToTxn,
            "add, again, unknown topic, stale epoch, other producer",
            &[],
            add_partitions_flow,
        ),
        (
            ApiKey::AddOffsetsToTxn,
            "add group, future epoch",
            &[],
            add_offsets_flow,
        ),
        (
            ApiKey::EndTxn,
            "nothing open, stale epoch, commit, abort after commit",
            &[],
            end_txn_flow,
        ),
        (
            ApiKey::WriteTxnMarkers,
            "abort a hanging transaction, unknown partition",
            &[],
            write_txn_markers_flow,
        ),
        (
            ApiKey::TxnOffsetCommit,
            "standalone, unknown member, invisible until committed",
            &[],
            txn_offset_commit_flow,
        ),
        (
            ApiKey::DescribeTransactions,
            "empty, unknown, ongoing",
            &["transaction_start_time_ms"],
            describe_transactions_flow,
        ),
        (
            ApiKey::ListTransactions,
            "ongoing with an unknown state, none",
            &[],
            list_transactions_flow,
        ),
        (
            ApiKey::CreateAcls,
            "without an authorizer",
            &[],
            create_acls_flow,
        ),
        (
            ApiKey::DescribeAcls,
            "without an authorizer",
            &[],
            describe_acls_flow,
        ),
        (
            ApiKey::DeleteAcls,
            "without an authorizer",
            &[],
            delete_acls_flow,
        ),
        (
            ApiKey::AlterClientQuotas,
            "set, unknown key, fraction of a byte, remove",
            &[],
            alter_client_quotas_flow,
        ),
        (
            ApiKey::DescribeClientQuotas,
            "one user, nobody",
            &[],
            describe_client_quotas_flow,
        ),
        (
            ApiKey::SaslHandshake,
            "on a PLAINTEXT listener",
            &[],
            sasl_handshake_plaintext,
        ),
        (
            ApiKey::SaslAuthenticate,
            "on a PLAINTEXT listener",
            &[],
            sasl_authenticate_plaintext,
        ),
        (
            ApiKey::AlterUserScramCredentials,
            "set, bad iterations, unknown mechanism, empty name, delete",
            &[],
            alter_scram_flow,
        ),
        (
            ApiKey::DescribeUserScramCredentials,
            "known, unknown, twice",
            &[],
            describe_scram_flow,
        ),
    ];
    let mut cases = Vec::new();
    for &(api, what, varies, run) in table {
        if let Some((min, max)) = served(api) {
            for version in min..=max {
                cases.push(Case {
                    api,
                    version,
                    what,
                    varies,
                    run,
                });
            }
        }
    }
    cases
}

/// The APIs that have no case: a sweep must cover every served key.
pub fn keys_without_cases(keys: &[ApiKey]) -> Vec<ApiKey> {
    let covered: Vec<ApiKey> = all_cases(|_| Some((0, 0))).iter().map(|c| c.api).collect();
    keys.iter()
        .copied()
        .filter(|k| !covered.contains(k))
        .collect()
}
