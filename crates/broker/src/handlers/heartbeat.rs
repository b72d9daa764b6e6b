//! Heartbeat (12): keeps a member's session alive and tells it when a
//! rebalance is under way.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

use super::Request;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    _req: &Request<'_>,
    body: HeartbeatRequest,
) -> HeartbeatResponse {
    let group_id = body.group_id.0.to_string();
    let code = match state.groups.owns(state, &group_id) {
        Err(e) => e,
        Ok(_) => match state.groups.group(&group_id) {
            None => ErrorCode::UNKNOWN_MEMBER_ID,
            Some(group) => group.lock().heartbeat(
                body.member_id.as_str(),
                body.group_instance_id.as_deref(),
                body.generation_id,
                Instant::now(),
            ),
        },
    };
    HeartbeatResponse::default().with_error_code(code.code())
}
