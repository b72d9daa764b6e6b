//! Heartbeat (12): keeps a member's session alive and tells it when a
//! rebalance is under way.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Request;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    _req: &Request<'_>,
    body: HeartbeatRequest,
) -> HeartbeatResponse {
    let code = state.groups.heartbeat(
        state,
        &body.group_id.0,
        &body.member_id,
        body.group_instance_id.as_deref(),
        body.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code.code())
}
