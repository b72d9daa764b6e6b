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
}

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
        let throttle = state.quotas.record(
            &sensor,
            quota,
            bytes,
            std::time::Instant::now(),
            count_if_throttled,
        );
        let ms = throttle.as_millis().min(i32::MAX as u128) as u64;
        self.throttle_ms
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
        ms as i32
    }
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
    let request = Request {
        header: &header,
        version,
        peer,
        listener,
        principal,
        throttle_ms: std::sync::atomic::AtomicU64::new(0),
    };
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
                    match produce::handle(state, request, req).await {
                        Some(resp) => respond(out, key, header, version, &resp),
                        None => Outcome::NoResponse,
                    }
                }
                $(ApiKey::$api => {
                    let req = match decode(&mut body, version) { Ok(r) => r, Err(e) => return e };
                    let resp = $module::handle(state, request, req).await;
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
        .ok_or(ErrorCode::NOT_LEADER_OR_FOLLOWER)?;
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
