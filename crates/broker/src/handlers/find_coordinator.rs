//! FindCoordinator (10): the broker leading the group's `__consumer_offsets`
//! partition. Creates that topic on first use. v4+ batches keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use std::collections::BTreeMap;

use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::controller::NewTopic;
use crate::group::OFFSETS_TOPIC;
use crate::BrokerState;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if req.version >= 4 {
        body.coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![body.key.to_string()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = match body.key_type {
            KEY_TYPE_GROUP if key.is_empty() => Err((
                ErrorCode::INVALID_REQUEST,
                "the group id is empty".to_string(),
            )),
            KEY_TYPE_GROUP => group_coordinator(state, &key, req.listener).await,
            KEY_TYPE_TRANSACTION => Err((
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "transactions are not supported by this broker".to_string(),
            )),
            other => Err((
                ErrorCode::INVALID_REQUEST,
                format!("unknown coordinator key type {other}"),
            )),
        };
        let c = Coordinator::default().with_key(str_bytes(key.clone()));
        coordinators.push(match found {
            Ok((node_id, host, port)) => c
                .with_node_id(BrokerId(node_id))
                .with_host(str_bytes(host))
                .with_port(port),
            Err((code, message)) => {
                tracing::debug!(key, code = code.code(), %message, "FindCoordinator refused");
                c.with_node_id(BrokerId(-1))
                    .with_host(str_bytes(""))
                    .with_port(-1)
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(message)))
            }
        });
    }
    if req.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let Some(c) = coordinators.into_iter().next() else {
        return FindCoordinatorResponse::default();
    };
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(if req.version >= 1 {
            c.error_message
        } else {
            None
        })
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

/// The leader of a group's offsets partition per the image, or an error
/// to answer FindCoordinator with.
async fn group_coordinator(
    state: &BrokerState,
    group_id: &str,
    listener: &str,
) -> Result<(i32, String, i32), (ErrorCode, String)> {
    ensure_offsets_topic(state).await?;
    let image = state.image.load();
    let p = state.groups.partition_of(state, group_id);
    let leader = image
        .partition(OFFSETS_TOPIC, p)
        .map(|r| r.leader)
        .unwrap_or(-1);
    let Some(broker) = image.brokers.get(&leader).filter(|b| !b.fenced) else {
        return Err((
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            format!("{OFFSETS_TOPIC}-{p} has no live leader"),
        ));
    };
    if leader == state.config.node_id {
        state.groups.request_load();
    }
    let Some((host, port)) = broker.endpoint(listener) else {
        return Err((
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            format!("the coordinator (broker {leader}) has no listener {listener}"),
        ));
    };
    Ok((broker.node_id, host.to_string(), i32::from(port)))
}

/// Creates `__consumer_offsets` on first use, once enough brokers are alive
/// for `offsets.topic.replication.factor`.
async fn ensure_offsets_topic(state: &BrokerState) -> Result<(), (ErrorCode, String)> {
    if state.image.load().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let config = &state.groups.config;
    let live = state.image.load().live_brokers().count();
    let rf = config.offsets_replication_factor;
    if (live as i64) < rf as i64 {
        let msg = format!(
            "{OFFSETS_TOPIC} needs offsets.topic.replication.factor={rf} brokers but {live} are alive"
        );
        tracing::warn!("{msg}");
        return Err((ErrorCode::COORDINATOR_NOT_AVAILABLE, msg));
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        config.offsets_segment_bytes.to_string(),
    );
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: config.offsets_partitions,
        replication_factor: rf,
        assignments: None,
        configs,
    };
    match state.control.create_topic(topic, false).await {
        Ok(_) => tracing::info!(
            partitions = config.offsets_partitions,
            "created {OFFSETS_TOPIC}"
        ),
        Err(e) => {
            if state.image.load().topic(OFFSETS_TOPIC).is_none() {
                tracing::warn!(error = %e, "could not create {OFFSETS_TOPIC}");
                return Err((ErrorCode::COORDINATOR_NOT_AVAILABLE, e.to_string()));
            }
        }
    }
    state.sync_replicas();
    Ok(())
}
