//! Heartbeat (12): keeps a member's session alive and tells it when a
//! rebalance is under way.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{authorized_on_group, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: HeartbeatRequest,
) -> HeartbeatResponse {
    if !authorized_on_group(state, req, op::READ, &body.group_id.0) {
        return HeartbeatResponse::default()
            .with_error_code(kraftwerk_types::ErrorCode::GROUP_AUTHORIZATION_FAILED.code());
    }
    let code = state.groups.heartbeat(
        state,
        &body.group_id.0,
        &body.member_id,
        body.group_instance_id.as_deref(),
        body.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code.code())
}
