//! AddOffsetsToTxn (25): the group's `__consumer_offsets` partition joins
//! the producer's transaction, so that its TxnOffsetCommit offsets are
//! committed or dropped with it.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, authorized_on_txn, Request};
use crate::group::OFFSETS_TOPIC;
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let group_id = body.group_id.0.to_string();
    let code = if !authorized_on_txn(state, req, op::WRITE, &body.transactional_id.0) {
        ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !authorized_on_group(state, req, op::READ, &group_id) {
        ErrorCode::GROUP_AUTHORIZATION_FAILED
    } else if group_id.is_empty() {
        ErrorCode::INVALID_GROUP_ID
    } else {
        let partition = state.groups.partition_of(state, &group_id);
        match state
            .txns
            .add_partitions(
                state,
                &body.transactional_id.0,
                body.producer_id.0,
                body.producer_epoch,
                &[(OFFSETS_TOPIC.to_string(), partition)],
            )
            .await
        {
            Ok(()) => ErrorCode::NONE,
            Err(code) => super::fenced_for_version(code, req.version, 2),
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code.code())
}
