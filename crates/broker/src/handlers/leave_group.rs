//! LeaveGroup (13): members leave and the group rebalances. v3+ names
//! several members, by member id or group instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, Request};
use crate::group::LeavingMember;
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let leaving: Vec<LeavingMember> = if req.version >= 3 {
        body.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: body.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    if !authorized_on_group(state, req, op::READ, &body.group_id.0) {
        return LeaveGroupResponse::default()
            .with_error_code(ErrorCode::GROUP_AUTHORIZATION_FAILED.code());
    }
    let codes = match state.groups.leave(state, &body.group_id.0, &leaving) {
        Ok(codes) => codes,
        Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
    };
    let results: Vec<_> = leaving
        .into_iter()
        .zip(codes)
        .map(|(m, code)| (m.member_id, m.group_instance_id, code))
        .collect();
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
