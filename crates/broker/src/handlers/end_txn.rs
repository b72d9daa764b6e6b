//! EndTxn (26): commit or abort the producer's transaction. Answered once
//! the outcome is stored in `__transaction_state`; the coordinator then
//! writes the markers on every partition of the transaction.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_txn, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(state: &BrokerState, req: &Request<'_>, body: EndTxnRequest) -> EndTxnResponse {
    if !authorized_on_txn(state, req, op::WRITE, &body.transactional_id.0) {
        return EndTxnResponse::default()
            .with_error_code(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let code = match state
        .txns
        .end_txn(
            state,
            &body.transactional_id.0,
            body.producer_id.0,
            body.producer_epoch,
            body.committed,
        )
        .await
    {
        Ok(()) => ErrorCode::NONE,
        Err(code) => super::fenced_for_version(code, req.version, 2),
    };
    EndTxnResponse::default()
        .with_error_code(code.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
