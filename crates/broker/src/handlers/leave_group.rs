//! LeaveGroup (13): members leave and the group rebalances. v3+ names
//! several members, by member id or group instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

use super::Request;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group_id = body.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if req.version >= 3 {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let owned = match state.groups.owns(state, &group_id) {
        Ok(o) => o,
        Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
    };
    let Some(group) = state.groups.group(&group_id) else {
        return LeaveGroupResponse::default().with_error_code(ErrorCode::UNKNOWN_MEMBER_ID.code());
    };
    let mut results = Vec::with_capacity(leaving.len());
    {
        let mut g = group.lock();
        for (member_id, instance_id) in leaving {
            let code = g.leave(
                &member_id,
                instance_id.as_deref(),
                Instant::now(),
                crate::handlers_now_ms(),
            );
            tracing::debug!(group = %group_id, member = %member_id, code = code.code(), "leave");
            results.push((member_id, instance_id, code));
        }
        state.groups.store_or_retry(state, owned.partition, &mut g);
    }
    if req.version < 3 {
        let code = results.first().map_or(ErrorCode::NONE, |r| r.2);
        return LeaveGroupResponse::default().with_error_code(code.code());
    }
    LeaveGroupResponse::default().with_members(
        results
            .into_iter()
            .map(|(member_id, instance_id, code)| {
                MemberResponse::default()
                    .with_member_id(super::str_bytes(member_id))
                    .with_group_instance_id(instance_id.map(super::str_bytes))
                    .with_error_code(code.code())
            })
            .collect(),
    )
}
