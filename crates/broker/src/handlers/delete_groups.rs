//! DeleteGroups (42): removes empty groups and their offsets (tombstones in
//! `__consumer_offsets`). Groups with members answer NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(body.groups_names.len());
    for id in body.groups_names {
        let code = if authorized_on_group(state, req, op::DELETE, &id.0) {
            state
                .groups
                .delete_group(state, &id.0)
                .await
                .err()
                .unwrap_or(ErrorCode::NONE)
        } else {
            ErrorCode::GROUP_AUTHORIZATION_FAILED
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code.code()),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
