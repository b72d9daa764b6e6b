//! Request routing: one module per Kafka API.
//!
//! [`handle_frame`] reads the fixed part of the request header, checks the
//! API key and version against the served table, decodes the body with the
//! `kafka-protocol` codecs, runs the API's handler and encodes the response
//! once. Anything that cannot be decoded closes the connection, as Kafka does.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kraftwerk_protocol::versions;

use crate::BrokerState;

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_client_quotas;
mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
mod api_versions;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_client_quotas;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod describe_user_scram_credentials;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

/// What the connection does after one request.
pub enum Outcome {
    /// Write the response frame now in the connection's response buffer
    /// as it is: its size prefix, header and body.
    Respond,
    /// Produce with `acks=0`: Kafka sends nothing back.
    NoResponse,
    /// Drop the connection, for the reason given.
    Close(String),
}

/// The request context handlers may need besides the body.
pub struct Request<'a> {
    pub header: &'a RequestHeader,
    pub version: i16,
    pub peer: SocketAddr,
    /// The name of the listener the connection came in on.
    pub listener: &'a str,
    /// Who the connection is (`User:NAME`; `User:ANONYMOUS` when nobody
    /// authenticated).
    pub principal: &'a str,
    /// Set by a handler whose client went over its quota: how long the
    /// connection reads nothing more after this response (milliseconds).
    pub throttle_ms: std::sync::atomic::AtomicU64,
    /// The client's `request_percentage` quota and its sensor, when one
    /// applies to this request (never for ApiVersions and SASL).
    pub request_quota: Option<(f64, String)>,
}

/// A client's `controller_mutation_rate` for one CreateTopics,
/// CreatePartitions or DeleteTopics request (KIP-599).
pub struct MutationQuota {
    /// The quota and its sensor; `None` when none applies.
    quota: Option<(f64, String)>,
    /// Refuse mutations with THROTTLING_QUOTA_EXCEEDED once the client's
    /// bucket is below zero (the request's version knows the error);
    /// otherwise accept them and only throttle.
    strict: bool,
}

impl MutationQuota {
    /// In strict mode, whether the client must wait before mutating more:
    /// the throttle time in milliseconds, also held on the connection.
    pub fn refused(&self, state: &BrokerState, req: &Request<'_>) -> Option<i32> {
        let (quota, sensor) = self.quota.as_ref().filter(|_| self.strict)?;
        let wait = state.quotas.record(
            crate::quotas::CONTROLLER_MUTATION_RATE,
            sensor,
            *quota,
            0.0,
            std::time::Instant::now(),
            crate::quotas::Overdraw::RefuseOnceBelowZero,
        );
        let ms = req.hold_for(wait);
        (ms > 0).then_some(ms)
    }

    /// Counts `partitions` created, added or deleted. Only in permissive
    /// mode does going over the quota throttle the request that did it.
    pub fn record(&self, state: &BrokerState, req: &Request<'_>, partitions: u64) {
        let Some((quota, sensor)) = &self.quota else {
            return;
        };
        let wait = state.quotas.record(
            crate::quotas::CONTROLLER_MUTATION_RATE,
            sensor,
            *quota,
            partitions as f64,
            std::time::Instant::now(),
            crate::quotas::Overdraw::Charge,
        );
        if !self.strict {
            req.hold_for(wait);
        }
    }
}

/// The error message beside THROTTLING_QUOTA_EXCEEDED: none, as Kafka 4.1
/// answers (the error code says it all).
pub(crate) const THROTTLING_QUOTA_EXCEEDED_MESSAGE: Option<StrBytes> = None;

impl Request<'_> {
    /// The client's user name, for quotas (`ANONYMOUS` when nobody
    /// authenticated).
    pub fn user(&self) -> &str {
        self.principal
            .strip_prefix("User:")
            .unwrap_or(self.principal)
    }

    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }

    /// Records `bytes` against the client's quota for `key`; returns the
    /// throttle time to put in the response (0 when within the quota) and
    /// holds the connection that long after it. With `count_if_throttled`
    /// false, bytes over the quota are not counted.
    pub fn charge(
        &self,
        state: &BrokerState,
        key: &str,
        bytes: u64,
        count_if_throttled: bool,
    ) -> i32 {
        let image = state.image.load();
        if image.client_quotas.is_empty() {
            return 0;
        }
        let Some((quota, sensor)) =
            crate::quotas::resolve(&image.client_quotas, key, self.user(), self.client_id())
        else {
            return 0;
        };
        let overdraw = if count_if_throttled {
            crate::quotas::Overdraw::Charge
        } else {
            crate::quotas::Overdraw::Skip
        };
        let throttle = state.quotas.record(
            key,
            &sensor,
            quota,
            bytes as f64,
            std::time::Instant::now(),
            overdraw,
        );
        self.hold_for(throttle)
    }

    /// Gives back `bytes` charged to the client's quota for `key` that it
    /// was not sent after all.
    fn refund(&self, state: &BrokerState, key: &str, bytes: u64) {
        let image = state.image.load();
        if let Some((quota, sensor)) =
            crate::quotas::resolve(&image.client_quotas, key, self.user(), self.client_id())
        {
            state.quotas.record(
                key,
                &sensor,
                quota,
                -(bytes as f64),
                std::time::Instant::now(),
                crate::quotas::Overdraw::Charge,
            );
        }
    }

    /// Holds the connection at least `wait` after this response; returns
    /// the throttle time to put in it, in milliseconds.
    fn hold_for(&self, wait: std::time::Duration) -> i32 {
        let ms = wait.as_millis().min(i32::MAX as u128) as u64;
        self.throttle_ms
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
        ms as i32
    }

    /// The longest throttle time any quota set for this request so far.
    pub fn throttle_time_ms(&self) -> i32 {
        let ms = self.throttle_ms.load(std::sync::atomic::Ordering::Relaxed);
        ms.min(i32::MAX as u64) as i32
    }

    /// The client's `controller_mutation_rate` for this request: strict
    /// (refusing) from version `strict_since` on, as Kafka does.
    pub fn mutation_quota(&self, state: &BrokerState, strict_since: i16) -> MutationQuota {
        let image = state.image.load();
        let quota = if image.client_quotas.is_empty() {
            None
        } else {
            crate::quotas::resolve(
                &image.client_quotas,
                crate::quotas::CONTROLLER_MUTATION_RATE,
                self.user(),
                self.client_id(),
            )
        };
        MutationQuota {
            quota,
            strict: self.version >= strict_since,
        }
    }
}

/// A response whose `throttle_time_ms` a quota may raise.
trait Throttled {
    fn raise_throttle_time(&mut self, ms: i32);
    /// Drops what a response throttled for request time does not carry
    /// (Kafka answers such a fetch empty); returns the record bytes dropped.
    fn empty_for_throttle(&mut self) -> u64 {
        0
    }
}

macro_rules! throttled {
    ($($response:ident),* $(,)?) => {$(
        impl Throttled for kafka_protocol::messages::$response {
            fn raise_throttle_time(&mut self, ms: i32) {
                self.throttle_time_ms = self.throttle_time_ms.max(ms);
            }
        }
    )*};
}

macro_rules! without_throttle_time {
    ($($response:ident),* $(,)?) => {$(
        impl Throttled for kafka_protocol::messages::$response {
            fn raise_throttle_time(&mut self, _ms: i32) {}
        }
    )*};
}

throttled!(
    ProduceResponse,
    ListOffsetsResponse,
    MetadataResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    DescribeGroupsResponse,
    ListGroupsResponse,
    ApiVersionsResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    DeleteRecordsResponse,
    InitProducerIdResponse,
    OffsetForLeaderEpochResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    TxnOffsetCommitResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    DescribeLogDirsResponse,
    CreatePartitionsResponse,
    DeleteGroupsResponse,
    ElectLeadersResponse,
    IncrementalAlterConfigsResponse,
    AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsResponse,
    OffsetDeleteResponse,
    DescribeClusterResponse,
    DescribeProducersResponse,
    DescribeTransactionsResponse,
    ListTransactionsResponse,
    DescribeUserScramCredentialsResponse,
    AlterUserScramCredentialsResponse,
    DescribeAclsResponse,
    CreateAclsResponse,
    DeleteAclsResponse,
    DescribeClientQuotasResponse,
    AlterClientQuotasResponse,
);

without_throttle_time!(
    DescribeQuorumResponse,
    WriteTxnMarkersResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
);

impl Throttled for kafka_protocol::messages::FetchResponse {
    fn raise_throttle_time(&mut self, ms: i32) {
        self.throttle_time_ms = self.throttle_time_ms.max(ms);
    }

    fn empty_for_throttle(&mut self) -> u64 {
        let bytes = self
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .map(|r| r.len() as u64)
            .sum();
        // As Kafka's throttled answer: no partitions, the session kept.
        self.responses.clear();
        bytes
    }
}

impl<T: Throttled> Throttled for Option<T> {
    fn raise_throttle_time(&mut self, ms: i32) {
        if let Some(r) = self {
            r.raise_throttle_time(ms);
        }
    }
}

/// Runs `handler` and, when the client has a `request_percentage` quota,
/// charges it the time spent inside the handler's polls: the work done
/// for this request, not the time it waited (for replicas to acknowledge,
/// for a fetch to fill), as Kafka counts handler-thread time and not
/// purgatory time.
async fn measured<T: Throttled>(
    state: &BrokerState,
    request: &Request<'_>,
    handler: impl std::future::Future<Output = T>,
) -> T {
    let Some((quota, sensor)) = &request.request_quota else {
        return handler.await;
    };
    let (mut response, busy) = busy_time(handler).await;
    let wait = state.quotas.record(
        crate::quotas::REQUEST_PERCENTAGE,
        sensor,
        *quota,
        busy.as_secs_f64() * 100.0,
        std::time::Instant::now(),
        crate::quotas::Overdraw::Charge,
    );
    if !wait.is_zero() {
        let ms = request.hold_for(wait);
        // A fetch throttled for request time is answered empty, as Kafka
        // does; the bytes it no longer sends are given back to the
        // client's fetch quota.
        let dropped = response.empty_for_throttle();
        if dropped > 0 {
            request.refund(state, crate::quotas::CONSUMER_BYTE_RATE, dropped);
        }
        response.raise_throttle_time(ms);
    }
    response
}

/// Drives `future` to its end and sums the time spent in its polls.
async fn busy_time<T>(future: impl std::future::Future<Output = T>) -> (T, std::time::Duration) {
    let mut future = std::pin::pin!(future);
    let mut busy = std::time::Duration::ZERO;
    let output = std::future::poll_fn(|cx| {
        let started = std::time::Instant::now();
        let poll = future.as_mut().poll(cx);
        busy += started.elapsed();
        poll
    })
    .await;
    (output, busy)
}

/// Answers one request frame. A response is encoded into `out`, the
/// connection's response buffer, which is reused from one response to the
/// next: a fetch answer of megabytes is not allocated and freed each time.
pub async fn handle_frame(
    state: &BrokerState,
    frame: Bytes,
    peer: SocketAddr,
    listener: &str,
    principal: &str,
    out: &mut BytesMut,
    hold: &mut std::time::Duration,
) -> Outcome {
    if frame.len() < 8 {
        return Outcome::Close(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some(served) = versions::served(api_key) else {
        return Outcome::Close(format!(
            "API key {api_key} ({}) is not served",
            versions::api_name(api_key)
        ));
    };
    if version < served.min || version > served.max {
        if served.key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 so the client can pick a version we serve.
            return api_versions::unsupported_version_response(out, correlation_id);
        }
        return Outcome::Close(format!(
            "{:?} v{version} is not served (range {}..={})",
            served.key, served.min, served.max
        ));
    }
    let key = served.key;
    let mut body = frame;
    let header = match RequestHeader::decode(&mut body, key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(format!("malformed request header: {e}")),
    };
    let mut request = Request {
        header: &header,
        version,
        peer,
        listener,
        principal,
        throttle_ms: std::sync::atomic::AtomicU64::new(0),
        request_quota: None,
    };
    if !matches!(
        key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    ) {
        let image = state.image.load();
        if !image.client_quotas.is_empty() {
            request.request_quota = crate::quotas::resolve(
                &image.client_quotas,
                crate::quotas::REQUEST_PERCENTAGE,
                request.user(),
                request.client_id(),
            );
        }
    }
    tracing::trace!(api = ?key, version, correlation_id, "request");
    let started = std::time::Instant::now();
    let outcome = route_request(state, key, version, &header, &request, body, out).await;
    *hold = std::time::Duration::from_millis(
        request
            .throttle_ms
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    if !matches!(outcome, Outcome::Close(_)) {
        state.metrics.answered(key_name(key), started.elapsed());
    }
    outcome
}

/// Kafka's name of an API key, as its request metrics label it.
fn key_name(key: ApiKey) -> &'static str {
    macro_rules! names {
        ($($api:ident),* $(,)?) => {
            match key { $(ApiKey::$api => stringify!($api),)* _ => "Other" }
        };
    }
    names!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        WriteTxnMarkers,
        TxnOffsetCommit,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        DeleteGroups,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeQuorum,
        DescribeCluster,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        SaslHandshake,
        SaslAuthenticate,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeClientQuotas,
        AlterClientQuotas,
    )
}

/// Decodes the body, runs the API's handler and encodes its answer.
async fn route_request(
    state: &BrokerState,
    key: ApiKey,
    version: i16,
    header: &RequestHeader,
    request: &Request<'_>,
    mut body: Bytes,
    out: &mut BytesMut,
) -> Outcome {
    macro_rules! route {
        ($($api:ident => $module:ident),* $(,)?) => {
            match key {
                ApiKey::Produce => {
                    let req = match decode(&mut body, version) { Ok(r) => r, Err(e) => return e };
                    match measured(state, request, produce::handle(state, request, req)).await {
                        Some(resp) => respond(out, key, header, version, &resp),
                        None => Outcome::NoResponse,
                    }
                }
                $(ApiKey::$api => {
                    let req = match decode(&mut body, version) { Ok(r) => r, Err(e) => return e };
                    let resp = measured(state, request, $module::handle(state, request, req)).await;
                    respond(out, key, header, version, &resp)
                })*
                other => Outcome::Close(format!("{other:?} has no handler")),
            }
        };
    }
    route! {
        Fetch => fetch,
        ListOffsets => list_offsets,
        Metadata => metadata,
        OffsetCommit => offset_commit,
        OffsetFetch => offset_fetch,
        FindCoordinator => find_coordinator,
        JoinGroup => join_group,
        Heartbeat => heartbeat,
        LeaveGroup => leave_group,
        SyncGroup => sync_group,
        DescribeGroups => describe_groups,
        ListGroups => list_groups,
        ApiVersions => api_versions,
        CreateTopics => create_topics,
        DeleteTopics => delete_topics,
        InitProducerId => init_producer_id,
        OffsetForLeaderEpoch => offset_for_leader_epoch,
        DescribeConfigs => describe_configs,
        AlterConfigs => alter_configs,
        DescribeLogDirs => describe_log_dirs,
        CreatePartitions => create_partitions,
        DeleteGroups => delete_groups,
        DeleteRecords => delete_records,
        IncrementalAlterConfigs => incremental_alter_configs,
        OffsetDelete => offset_delete,
        DescribeCluster => describe_cluster,
        DescribeQuorum => describe_quorum,
        ElectLeaders => elect_leaders,
        AlterPartitionReassignments => alter_partition_reassignments,
        ListPartitionReassignments => list_partition_reassignments,
        DescribeProducers => describe_producers,
        AddPartitionsToTxn => add_partitions_to_txn,
        AddOffsetsToTxn => add_offsets_to_txn,
        EndTxn => end_txn,
        WriteTxnMarkers => write_txn_markers,
        TxnOffsetCommit => txn_offset_commit,
        DescribeTransactions => describe_transactions,
        ListTransactions => list_transactions,
        SaslHandshake => sasl_handshake,
        SaslAuthenticate => sasl_authenticate,
        DescribeUserScramCredentials => describe_user_scram_credentials,
        AlterUserScramCredentials => alter_user_scram_credentials,
        DescribeAcls => describe_acls,
        CreateAcls => create_acls,
        DeleteAcls => delete_acls,
        DescribeClientQuotas => describe_client_quotas,
        AlterClientQuotas => alter_client_quotas,
    }
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, Outcome> {
    T::decode(body, version).map_err(|e| Outcome::Close(format!("malformed request body: {e}")))
}

pub(crate) fn respond<T: Encodable>(
    out: &mut BytesMut,
    key: ApiKey,
    header: &RequestHeader,
    version: i16,
    body: &T,
) -> Outcome {
    let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
    start_frame(out);
    let header_version = key.response_header_version(version);
    if let Err(e) = response_header.encode(out, header_version) {
        return Outcome::Close(format!("response header could not be encoded: {e}"));
    }
    if let Err(e) = body.encode(out, version) {
        // A bug, not bad input: the handler built a response this version cannot carry.
        tracing::error!(api = ?key, version, error = %e, "response could not be encoded");
        return Outcome::Close(format!("response could not be encoded: {e}"));
    }
    finish_frame(out)
}

/// Empties the response buffer and reserves room for the frame's length
/// prefix, so the encoded response is written to the socket as it is,
/// without a second copy to put its length in front.
pub(crate) fn start_frame(out: &mut BytesMut) {
    out.clear();
    out.put_i32(0);
}

/// Fills in the length prefix reserved by [`start_frame`].
pub(crate) fn finish_frame(out: &mut BytesMut) -> Outcome {
    let Ok(len) = i32::try_from(out.len() - 4) else {
        return Outcome::Close(format!(
            "a response of {} bytes cannot be framed",
            out.len()
        ));
    };
    out[..4].copy_from_slice(&len.to_be_bytes());
    Outcome::Respond
}

/// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH to clients of versions
/// before `since`, which do not know it (as Kafka answers them).
pub(crate) fn fenced_for_version(
    code: kraftwerk_types::ErrorCode,
    version: i16,
    since: i16,
) -> kraftwerk_types::ErrorCode {
    use kraftwerk_types::ErrorCode;
    if code == ErrorCode::PRODUCER_FENCED && version < since {
        ErrorCode::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// Whether the request's principal may do `operation` on a resource
/// (always, without an authorizer).
pub(crate) fn authorized(
    state: &BrokerState,
    req: &Request<'_>,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    if !state.authorizer.enabled() {
        return true;
    }
    let image = state.image.load();
    state.authorizer.authorize(
        &image.acls,
        req.principal,
        &req.peer.ip().to_string(),
        operation,
        resource_type,
        name,
    )
}

pub(crate) fn authorized_on_cluster(state: &BrokerState, req: &Request<'_>, operation: i8) -> bool {
    use crate::security::authorizer::{resource, CLUSTER_NAME};
    authorized(state, req, operation, resource::CLUSTER, CLUSTER_NAME)
}

/// The ACL APIs' first check: an authorizer must be configured (else
/// SECURITY_DISABLED, as Kafka answers) and the client may do `operation`
/// on the cluster.
pub(crate) fn acl_api_refusal(
    state: &BrokerState,
    req: &Request<'_>,
    operation: i8,
) -> Option<(kraftwerk_types::ErrorCode, &'static str)> {
    use kraftwerk_types::ErrorCode;
    if !state.authorizer.enabled() {
        return Some((ErrorCode::SECURITY_DISABLED, "No Authorizer is configured."));
    }
    if !authorized_on_cluster(state, req, operation) {
        return Some((
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
            "Cluster authorization failed.",
        ));
    }
    None
}

pub(crate) fn authorized_on_topic(
    state: &BrokerState,
    req: &Request<'_>,
    operation: i8,
    topic: &str,
) -> bool {
    authorized(
        state,
        req,
        operation,
        crate::security::authorizer::resource::TOPIC,
        topic,
    )
}

pub(crate) fn authorized_on_group(
    state: &BrokerState,
    req: &Request<'_>,
    operation: i8,
    group: &str,
) -> bool {
    authorized(
        state,
        req,
        operation,
        crate::security::authorizer::resource::GROUP,
        group,
    )
}

pub(crate) fn authorized_on_txn(
    state: &BrokerState,
    req: &Request<'_>,
    operation: i8,
    id: &str,
) -> bool {
    authorized(
        state,
        req,
        operation,
        crate::security::authorizer::resource::TRANSACTIONAL_ID,
        id,
    )
}

/// DESCRIBE_CONFIGS / ALTER_CONFIGS on a config resource: a topic (2), or
/// a broker or its loggers (4, 8), which are the cluster's.
pub(crate) fn config_resource_authorized(
    state: &BrokerState,
    req: &Request<'_>,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> Result<(), (kraftwerk_types::ErrorCode, String)> {
    use kraftwerk_types::ErrorCode;
    match resource_type {
        2 if !authorized_on_topic(state, req, operation, name) => Err((
            ErrorCode::TOPIC_AUTHORIZATION_FAILED,
            format!("not authorized for the configs of topic {name}"),
        )),
        4 | 8 if !authorized_on_cluster(state, req, operation) => Err((
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
            "not authorized for the cluster's configs".to_string(),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The local replica of `topic`-`partition` that this broker leads, checked
/// against the leader epoch the client knows (`-1`: no check), with Kafka's
/// error for each way it can fail.
pub(crate) fn led_partition(
    state: &BrokerState,
    image: &crate::metadata::MetadataImage,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<std::sync::Arc<crate::replica_manager::Partition>, kraftwerk_types::ErrorCode> {
    use kraftwerk_types::ErrorCode;
    let record = image
        .partition(topic, partition)
        .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)?;
    let local = state
        .replicas
        .get(topic, partition)
        .ok_or_else(|| state.replicas.missing_replica_error(topic, partition))?;
    if record.leader != state.config.node_id {
        return Err(ErrorCode::NOT_LEADER_OR_FOLLOWER);
    }
    let epoch = local.leader_epoch();
    if current_leader_epoch >= 0 && current_leader_epoch < epoch {
        return Err(ErrorCode::FENCED_LEADER_EPOCH);
    }
    if current_leader_epoch > epoch {
        return Err(ErrorCode::UNKNOWN_LEADER_EPOCH);
    }
    Ok(local)
}
