//! JoinGroup (11): membership and rebalances (see `group::state`). The
//! answer waits until the rebalance completes.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{authorized_on_group, str_bytes, Request};
use crate::group::{JoinRequest, JoinResult};
use crate::security::authorizer::op;
use crate::BrokerState;
use kraftwerk_types::ErrorCode;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: JoinGroupRequest,
) -> JoinGroupResponse {
    let result = join(state, req, body).await;
    let v = req.version;
    let protocol_name = match (v >= 7, result.protocol.clone()) {
        (true, p) => p.map(str_bytes),
        (false, p) => Some(str_bytes(p.unwrap_or_default())),
    };
    JoinGroupResponse::default()
        .with_error_code(result.error.code())
        .with_generation_id(result.generation)
        .with_protocol_type(if v >= 7 {
            result.protocol_type.clone().map(str_bytes)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(result.leader))
        .with_skip_assignment(v >= 9 && result.skip_assignment)
        .with_member_id(str_bytes(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(if v >= 5 {
                            instance.map(str_bytes)
                        } else {
                            None
                        })
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

async fn join(state: &BrokerState, req: &Request<'_>, body: JoinGroupRequest) -> JoinResult {
    if !authorized_on_group(state, req, op::READ, &body.group_id.0) {
        return JoinResult::error(ErrorCode::GROUP_AUTHORIZATION_FAILED, &body.member_id);
    }
    let join = JoinRequest {
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.map(|s| s.to_string()),
        client_id: req
            .header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", req.peer.ip()),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: if body.rebalance_timeout_ms > 0 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: req.version >= 4,
        supports_skip_assignment: req.version >= 9,
    };
    state.groups.join(state, &body.group_id.0, join).await
}
