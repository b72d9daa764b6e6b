//! AddPartitionsToTxn (24), the client versions (v0-v3): partitions join
//! the producer's open transaction at its coordinator. When any partition
//! does not exist, it gets UNKNOWN_TOPIC_OR_PARTITION and the others
//! OPERATION_NOT_ATTEMPTED, as in Kafka; otherwise all share the
//! coordinator's answer.
//!
//! Not yet done: KIP-890 part 1's check on the partition leader that a
//! transactional batch belongs to a transaction its coordinator knows.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kraftwerk_coordinator::CoordinatorLog;
use kraftwerk_types::ErrorCode;

use super::{authorized_on_topic, authorized_on_txn, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = body.v3_and_below_transactional_id.0.to_string();
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    let txn_allowed = authorized_on_txn(state, req, op::WRITE, &id);
    let mut denied = Vec::new();
    for topic in &body.v3_and_below_topics {
        let name = topic.name.0.to_string();
        let count = state.partition_count(&name).unwrap_or(0);
        let allowed = authorized_on_topic(state, req, op::WRITE, &name);
        for p in &topic.partitions {
            if !allowed {
                denied.push((name.clone(), *p));
            } else if *p < 0 || *p >= count {
                unknown.push((name.clone(), *p));
            } else {
                partitions.push((name.clone(), *p));
            }
        }
    }
    let code_for = |tp: &(String, i32), shared: ErrorCode| {
        if !txn_allowed {
            ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        } else if unknown.is_empty() && denied.is_empty() {
            shared
        } else if denied.contains(tp) {
            ErrorCode::TOPIC_AUTHORIZATION_FAILED
        } else if unknown.contains(tp) {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        } else {
            ErrorCode::OPERATION_NOT_ATTEMPTED
        }
    };
    let shared = if unknown.is_empty() && denied.is_empty() && txn_allowed {
        match state
            .txns
            .add_partitions(
                state,
                &id,
                body.v3_and_below_producer_id.0,
                body.v3_and_below_producer_epoch,
                &partitions,
            )
            .await
        {
            Ok(()) => ErrorCode::NONE,
            Err(code) => super::fenced_for_version(code, req.version, 2),
        }
    } else {
        ErrorCode::NONE
    };
    // As Kafka lists them: the topics with a partition in error first.
    let mut topics: Vec<_> = body.v3_and_below_topics.iter().collect();
    topics.sort_by_key(|t| {
        let name = t.name.0.to_string();
        !t.partitions.iter().any(|p| {
            let tp = (name.clone(), *p);
            unknown.contains(&tp) || denied.contains(&tp)
        })
    });
    let results = topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(
                                    code_for(&(name.clone(), *p), shared).code(),
                                )
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
