//! ListTransactions (66): the transactional ids this broker coordinates,
//! filtered by state, producer id and (v1) how long the open transaction
//! has run. State names Kraftwerk does not know come back in
//! `unknown_state_filters`, as Kafka answers.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kraftwerk_coordinator::txn::TxnState;

use super::{authorized_on_txn, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let (known, unknown): (Vec<String>, Vec<String>) = body
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .partition(|s| STATES.iter().any(|k| k.name() == s));
    let producer_ids: Vec<i64> = body.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration = if req.version >= 1 {
        body.duration_filter
    } else {
        -1
    };
    // Every state filter unknown: nothing can match.
    let listed = if !body.state_filters.is_empty() && known.is_empty() {
        Vec::new()
    } else {
        state.txns.list(&known, &producer_ids, min_duration)
    };
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.into_iter().map(str_bytes).collect())
        .with_transaction_states(
            listed
                .into_iter()
                // Those the client may describe.
                .filter(|t| authorized_on_txn(state, req, op::DESCRIBE, &t.transactional_id))
                .map(|t| {
                    TransactionState::default()
                        .with_transactional_id(TransactionalId(str_bytes(t.transactional_id)))
                        .with_producer_id(ProducerId(t.meta.producer_id))
                        .with_transaction_state(str_bytes(t.meta.state.name()))
                })
                .collect(),
        )
}
