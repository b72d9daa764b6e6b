//! FindCoordinator (10): the broker leading the group's `__consumer_offsets`
//! partition (key type 0) or the transactional id's `__transaction_state`
//! partition (key type 1). Creates those topics on first use. v4+ batches
//! keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use std::collections::BTreeMap;

use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::controller::NewTopic;
use crate::group::OFFSETS_TOPIC;
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
            KEY_TYPE_GROUP => group_coordinator(state, &key, req.listener).await,
            KEY_TYPE_TRANSACTION if key.is_empty() => Err((
                ErrorCode::INVALID_REQUEST,
                "the transactional id is empty".to_string(),
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
    let image = state.image.load();
    let brokers = image.brokers.len().max(1) as i64;
    let live = image.live_brokers().count() as i64;
    let rf = (config.replication_factor as i64).min(brokers);
    if live < rf {
        let msg = format!("{TXN_TOPIC} needs {rf} live brokers but {live} are alive");
        tracing::warn!("{msg}");
        return Err((ErrorCode::COORDINATOR_NOT_AVAILABLE, msg));
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        config.segment_bytes.to_string(),
    );
    configs.insert(
        "min.insync.replicas".to_string(),
        (config.min_isr as i64).min(rf).to_string(),
    );
    let topic = NewTopic {
        name: TXN_TOPIC.to_string(),
        num_partitions: config.partitions,
        replication_factor: rf as i16,
        assignments: None,
        configs,
    };
    match state.control.create_topic(topic, false).await {
        Ok(_) => tracing::info!(partitions = config.partitions, rf, "created {TXN_TOPIC}"),
        Err(e) => {
            if state.image.load().topic(TXN_TOPIC).is_none() {
                tracing::warn!(error = %e, "could not create {TXN_TOPIC}");
                return Err((ErrorCode::COORDINATOR_NOT_AVAILABLE, e.to_string()));
            }
        }
    }
    state.sync_replicas();
    Ok(())
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
