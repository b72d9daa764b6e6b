//! FindCoordinator (10): the broker leading the group's `__consumer_offsets`
//! partition (key type 0) or the transactional id's `__transaction_state`
//! partition (key type 1). Creates those topics on first use. v4+ batches
//! keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use std::collections::BTreeMap;

use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, authorized_on_txn, str_bytes, Request};
use crate::controller::NewTopic;
use crate::group::OFFSETS_TOPIC;
use crate::security::authorizer::op;
use crate::txn::TXN_TOPIC;
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
            KEY_TYPE_GROUP if !authorized_on_group(state, req, op::DESCRIBE, &key) => Err((
                ErrorCode::GROUP_AUTHORIZATION_FAILED,
                format!("not authorized to describe group {key}"),
            )),
            KEY_TYPE_GROUP => group_coordinator(state, &key, req.listener).await,
            KEY_TYPE_TRANSACTION if key.is_empty() => Err((
                ErrorCode::INVALID_REQUEST,
                "the transactional id is empty".to_string(),
            )),
            KEY_TYPE_TRANSACTION if !authorized_on_txn(state, req, op::DESCRIBE, &key) => Err((
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                format!("not authorized to describe transactional id {key}"),
            )),
            KEY_TYPE_TRANSACTION => txn_coordinator(state, &key, req.listener).await,
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
    let p = state.groups.partition_of(state, group_id);
    let found = leader_endpoint(state, OFFSETS_TOPIC, p, listener)?;
    if found.0 == state.config.node_id {
        state.groups.request_load();
    }
    Ok(found)
}

/// The leader of a transactional id's `__transaction_state` partition.
async fn txn_coordinator(
    state: &BrokerState,
    transactional_id: &str,
    listener: &str,
) -> Result<(i32, String, i32), (ErrorCode, String)> {
    ensure_txn_topic(state).await?;
    let p = state.txns.partition_of(state, transactional_id);
    let found = leader_endpoint(state, TXN_TOPIC, p, listener)?;
    if found.0 == state.config.node_id {
        state.txns.request_load();
    }
    Ok(found)
}

/// (node id, host, port) of the live leader of `topic`-`p` on `listener`.
fn leader_endpoint(
    state: &BrokerState,
    topic: &str,
    p: i32,
    listener: &str,
) -> Result<(i32, String, i32), (ErrorCode, String)> {
    let image = state.image.load();
    let leader = image.partition(topic, p).map(|r| r.leader).unwrap_or(-1);
    let Some(broker) = image.brokers.get(&leader).filter(|b| !b.fenced) else {
        return Err((
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            format!("{topic}-{p} has no live leader"),
        ));
    };
    let Some((host, port)) = broker.endpoint(listener) else {
        return Err((
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            format!("the coordinator (broker {leader}) has no listener {listener}"),
        ));
    };
    Ok((broker.node_id, host.to_string(), i32::from(port)))
}

/// Creates `__transaction_state` on first use, with
/// `transaction.state.log.replication.factor` replicas, or as many as
/// there are brokers when the cluster is smaller (and
/// `transaction.state.log.min.isr` capped the same way).
async fn ensure_txn_topic(state: &BrokerState) -> Result<(), (ErrorCode, String)> {
    if state.image.load().topic(TXN_TOPIC).is_some() {
        return Ok(());
    }
    let config = &state.txns.config;
    let brokers = state.image.load().brokers.len().max(1) as i64;
    let rf = (config.replication_factor as i64).min(brokers) as i16;
    let min_isr = (config.min_isr as i64).min(rf as i64);
    let configs = [("min.insync.replicas", min_isr.to_string())];
    create_internal_topic(
        state,
        TXN_TOPIC,
        config.partitions,
        rf,
        config.segment_bytes,
        &configs,
    )
    .await
}

/// Creates `__consumer_offsets` on first use, once enough brokers are alive
/// for `offsets.topic.replication.factor`.
async fn ensure_offsets_topic(state: &BrokerState) -> Result<(), (ErrorCode, String)> {
    if state.image.load().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let config = &state.groups.config;
    create_internal_topic(
        state,
        OFFSETS_TOPIC,
        config.offsets_partitions,
        config.offsets_replication_factor,
        config.offsets_segment_bytes,
        &[],
    )
    .await
}

/// Creates a compacted internal topic once `rf` brokers are alive; losing
/// a race with another creator is fine.
async fn create_internal_topic(
    state: &BrokerState,
    name: &str,
    partitions: i32,
    rf: i16,
    segment_bytes: i64,
    extra: &[(&str, String)],
) -> Result<(), (ErrorCode, String)> {
    let live = state.image.load().live_brokers().count();
    if (live as i64) < rf as i64 {
        let msg = format!("{name} needs {rf} live brokers but {live} are alive");
        tracing::warn!("{msg}");
        return Err((ErrorCode::COORDINATOR_NOT_AVAILABLE, msg));
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), segment_bytes.to_string());
    for (k, v) in extra {
        configs.insert(k.to_string(), v.clone());
    }
    let topic = NewTopic {
        name: name.to_string(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: None,
        configs,
    };
    match state.control.create_topic(topic, false).await {
        Ok(_) => tracing::info!(partitions, rf, "created {name}"),
        Err(e) => {
            if state.image.load().topic(name).is_none() {
                tracing::warn!(error = %e, "could not create {name}");
                return Err((ErrorCode::COORDINATOR_NOT_AVAILABLE, e.to_string()));
            }
        }
    }
    state.sync_replicas().await;
    Ok(())
}
