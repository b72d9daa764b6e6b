//! Produce (0): batches are checked (length, magic, CRC32C) and appended as
//! received; records inside are never decoded.
//!
//! acks=all (-1): refused with NOT_ENOUGH_REPLICAS before the append when
//! the ISR is smaller than `min.insync.replicas`; after the append the
//! answer waits (up to the request's `timeout_ms`) until the high watermark
//! passes the last appended offset: NOT_ENOUGH_REPLICAS_AFTER_APPEND if the
//! ISR shrank below the minimum meanwhile, REQUEST_TIMED_OUT if it never
//! got there (for example on a leader that lost its followers).
//!
//! Transactional batches: a producer's first one in a partition is only
//! appended once its transaction coordinator confirms the partition is in
//! the producer's ongoing transaction (KIP-890 part 1), so a write that
//! arrives after its transaction ended cannot leave a hanging transaction.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_topic, authorized_on_txn, str_bytes, Request};
use crate::partition::{Acks, Appended, Partition};
use crate::security::authorizer::op;
use crate::BrokerState;

/// The longest acks=all wait, whatever the request's `timeout_ms` says.
const ACKS_ALL_WAIT_MAX: Duration = Duration::from_secs(300);

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = body.acks;
    // Kafka checks WRITE on the transactional id, then on each topic,
    // before anything else: an unknown topic one may not write is
    // TOPIC_AUTHORIZATION_FAILED, not UNKNOWN_TOPIC_OR_PARTITION.
    // The request's record bytes count against the client's produce quota.
    let produced_bytes: u64 = body
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    let throttle_ms = req.charge(
        state,
        crate::quotas::PRODUCER_BYTE_RATE,
        produced_bytes,
        true,
    );
    let txn_allowed = body
        .transactional_id
        .as_ref()
        .is_none_or(|id| authorized_on_txn(state, req, op::WRITE, id.as_str()));
    let image = state.image.load();
    let mut responses = Vec::with_capacity(body.topic_data.len());
    // acks=all: (topic index, partition index, partition, last offset,
    // leader epoch of the append).
    let mut to_commit: Vec<(usize, usize, Arc<Partition>, i64, i32)> = Vec::new();
    for topic in body.topic_data {
        let name = topic.name.0.to_string();
        let topic_allowed = authorized_on_topic(state, req, op::WRITE, &name);
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let mut resp = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let outcome: Result<(Appended, Arc<Partition>), (ErrorCode, String)> = async {
                if !txn_allowed {
                    return Err((
                        ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        "not authorized to write for this transactional id".into(),
                    ));
                }
                if !topic_allowed {
                    return Err((
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                        format!("not authorized to write to {name}"),
                    ));
                }
                if !(-1..=1).contains(&acks) {
                    return Err((
                        ErrorCode::INVALID_REQUIRED_ACKS,
                        format!("acks={acks} is not one of -1, 0, 1"),
                    ));
                }
                let Some(record) = image.partition(&name, pd.index) else {
                    return Err((
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("{name}-{} does not exist", pd.index),
                    ));
                };
                let Some(partition) = state.replicas.get(&name, pd.index) else {
                    let code = state.replicas.missing_replica_error(&name, pd.index);
                    let message = if code == ErrorCode::KAFKA_STORAGE_ERROR {
                        format!("the log of {name}-{} could not be opened on this broker", pd.index)
                    } else {
                        format!("{name}-{} is not stored on this broker", pd.index)
                    };
                    return Err((code, message));
                };
                if record.leader != state.config.node_id || !partition.replication.is_leader() {
                    return Err((
                        ErrorCode::NOT_LEADER_OR_FOLLOWER,
                        format!("broker {} leads {name}-{}", record.leader, pd.index),
                    ));
                }
                let acks = if acks == -1 { Acks::All } else { Acks::Leader };
                let checked = partition
                    .check_append(&pd.records.unwrap_or_default(), acks)
                    .map_err(|r| (r.code, r.message))?;
                // KIP-890 part 1: a producer's first transactional batch
                // here is checked with its transaction coordinator.
                if let Some((producer_id, epoch)) = checked.transactional_producer() {
                    let Some(transactional_id) = body.transactional_id.as_ref() else {
                        return Err((
                            ErrorCode::INVALID_TXN_STATE,
                            "transactional batches need the request's transactional id".into(),
                        ));
                    };
                    if !partition.log.has_open_transaction(producer_id) {
                        crate::markers::verify_transaction(
                            state,
                            transactional_id,
                            producer_id,
                            epoch,
                            &name,
                            pd.index,
                        )
                        .await
                        .map_err(|code| {
                            (
                                code,
                                format!(
                                    "{name}-{} is not in an ongoing transaction of producer {producer_id}",
                                    pd.index
                                ),
                            )
                        })?;
                    }
                }
                let (bytes, records) = (checked.bytes() as u64, checked.records());
                let appended = partition
                    .append(checked)
                    .await
                    .map_err(|r| (r.code, r.message))?;
                if !appended.duplicate {
                    state.metrics.produced(&name, bytes, records);
                }
                Ok((appended, partition))
            }
            .await;
            match outcome {
                Ok((appended, partition)) => {
                    if acks == -1 {
                        to_commit.push((
                            responses.len(),
                            partition_responses.len(),
                            partition,
                            appended.last_offset,
                            appended.leader_epoch,
                        ));
                    }
                    resp = resp
                        .with_error_code(0)
                        .with_base_offset(appended.base_offset)
                        .with_log_append_time_ms(appended.log_append_time_ms)
                        .with_log_start_offset(appended.log_start_offset);
                }
                Err((code, message)) => {
                    tracing::debug!(topic = %name, partition = pd.index, code = code.code(), %message, "produce refused");
                    resp = resp
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(message)));
                }
            }
            partition_responses.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partition_responses),
        );
    }
    if acks == 0 {
        return None;
    }
    if !to_commit.is_empty() {
        let wait = Duration::from_millis(body.timeout_ms.max(0) as u64).min(ACKS_ALL_WAIT_MAX);
        let deadline = tokio::time::Instant::now() + wait;
        for (t, p, partition, last_offset, leader_epoch) in to_commit {
            let result = tokio::select! {
                r = partition.wait_committed(last_offset, leader_epoch, deadline) => r,
                _ = state.shutdown.cancelled() => Err(ErrorCode::REQUEST_TIMED_OUT),
            };
            if let Err(code) = result {
                tracing::debug!(partition = %partition.topic_partition, last_offset, code = code.code(), "acks=all write not committed");
                if let Some(resp) = responses
                    .get_mut(t)
                    .and_then(|r: &mut TopicProduceResponse| r.partition_responses.get_mut(p))
                {
                    resp.error_code = code.code();
                    resp.base_offset = -1;
                }
            }
        }
    }
    Some(
        ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_ms),
    )
}
