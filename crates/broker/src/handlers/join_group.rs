//! JoinGroup (11): membership and rebalances (see `group::state`). The
//! answer waits until the rebalance completes.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

use super::{str_bytes, Request};
use crate::group::{JoinRequest, JoinResult, Reply};
use crate::BrokerState;

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
    let group_id = body.group_id.0.to_string();
    let member_id = body.member_id.to_string();
    if let Err(e) = state.groups.owns(state, &group_id) {
        return JoinResult::error(e, &member_id);
    }
    if !member_id.is_empty() && state.groups.group(&group_id).is_none() {
        return JoinResult::error(ErrorCode::UNKNOWN_MEMBER_ID, &member_id);
    }
    let join = JoinRequest {
        member_id: member_id.clone(),
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
    let group = state.groups.group_or_new(&group_id);
    let reply = {
        let mut g = group.lock();
        let reply = g.join(
            join,
            &state.groups.config.group,
            Instant::now(),
            crate::handlers_now_ms(),
        );
        if let Ok(owned) = state.groups.owns(state, &group_id) {
            state.groups.store_or_retry(state, owned.partition, &mut g);
        }
        reply
    };
    match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => tokio::select! {
            r = rx => r.unwrap_or_else(|_| JoinResult::error(ErrorCode::NOT_COORDINATOR, &member_id)),
            _ = state.shutdown.cancelled() => JoinResult::error(ErrorCode::COORDINATOR_NOT_AVAILABLE, &member_id),
        },
    }
}
