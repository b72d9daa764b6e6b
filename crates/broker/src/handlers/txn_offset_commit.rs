//! TxnOffsetCommit (28): offsets committed as part of a transaction. The
//! transaction coordinator checks the producer id and epoch (when it is
//! this broker); the group coordinator checks the group metadata of
//! KIP-447 (member id, generation) and writes the offsets as a
//! transactional batch, visible once the transaction commits.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, authorized_on_topic, authorized_on_txn, Request};
use crate::group::records::OffsetValue;
use crate::group::OFFSET_METADATA_MAX_BYTES;
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let now = kraftwerk_coordinator::now_ms();
    let mut offsets = Vec::new();
    let mut too_large = Vec::new();
    let mut denied = Vec::new();
    for t in &body.topics {
        if !authorized_on_topic(state, req, op::READ, &t.name.0) {
            denied.push(t.name.0.to_string());
            continue;
        }
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let key = (t.name.0.to_string(), p.partition_index);
            if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                too_large.push(key);
                continue;
            }
            offsets.push((
                key,
                OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp_ms: now,
                },
            ));
        }
    }
    let group_id = body.group_id.0.to_string();
    let transactional_id = body.transactional_id.0.to_string();
    // The producer must be the current one of its id. The transaction
    // coordinator may be another broker; then the epoch is checked by the
    // offsets partition itself when the markers come.
    let refused = if !authorized_on_txn(state, req, op::WRITE, &transactional_id) {
        Some(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !authorized_on_group(state, req, op::READ, &group_id) {
        Some(ErrorCode::GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    let checked = if let Some(code) = refused {
        Err(code)
    } else if offsets.is_empty() && !denied.is_empty() {
        Ok(())
    } else {
        match state.txns.check_producer(
            state,
            &transactional_id,
            body.producer_id.0,
            body.producer_epoch,
        ) {
            Err(ErrorCode::NOT_COORDINATOR | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS) => Ok(()),
            other => other,
        }
    };
    let result = match checked {
        Ok(()) if offsets.is_empty() && !denied.is_empty() => Ok(()),
        Ok(()) => {
            let instance = body.group_instance_id.as_ref().map(|s| s.to_string());
            state
                .groups
                .txn_commit_offsets(
                    state,
                    &group_id,
                    body.producer_id.0,
                    body.producer_epoch,
                    &body.member_id,
                    instance.as_deref(),
                    body.generation_id,
                    offsets,
                )
                .await
        }
        Err(code) => Err(code),
    };
    let code = match result {
        Ok(()) => ErrorCode::NONE,
        Err(code) => super::fenced_for_version(code, req.version, 3),
    };
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let c = if refused.is_none() && denied.contains(&name) {
                                ErrorCode::TOPIC_AUTHORIZATION_FAILED
                            } else if too_large.contains(&(name.clone(), p.partition_index)) {
                                ErrorCode::OFFSET_METADATA_TOO_LARGE
                            } else {
                                code
                            };
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c.code())
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
