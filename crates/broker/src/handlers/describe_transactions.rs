//! DescribeTransactions (65): the state of transactional ids coordinated
//! by this broker (NOT_COORDINATOR for others, TRANSACTIONAL_ID_NOT_FOUND
//! for unknown ones), as `kafka-transactions.sh describe` shows it.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kraftwerk_coordinator::txn::partitions_by_topic;

use super::{authorized_on_txn, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = body
        .transactional_ids
        .iter()
        .map(|id| {
            // An id that cannot be described keeps the schema's defaults, as in Kafka.
            let base = TransactionState::default().with_transactional_id(id.clone());
            if !authorized_on_txn(state, req, op::DESCRIBE, &id.0) {
                return base.with_error_code(
                    kraftwerk_types::ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.code(),
                );
            }
            match state.txns.describe(state, &id.0) {
                Ok(m) => base
                    .with_transaction_state(str_bytes(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(m.start_ms)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_topics(
                        partitions_by_topic(&m.partitions)
                            .into_iter()
                            .map(|(t, ps)| {
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(t)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    ),
                Err(code) => base.with_error_code(code.code()),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
