//! SyncGroup (14): the leader's assignments are stored in
//! `__consumer_offsets` and, once that record is committed, every member
//! gets its own. Followers wait for the leader. Assignments are opaque
//! bytes.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{authorized_on_group, str_bytes, Request};
use crate::group::{SyncRequest, SyncResult};
use crate::security::authorizer::op;
use crate::BrokerState;
use kraftwerk_types::ErrorCode;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: SyncGroupRequest,
) -> SyncGroupResponse {
    let result = if authorized_on_group(state, req, op::READ, &body.group_id.0) {
        sync(state, body).await
    } else {
        SyncResult::error(ErrorCode::GROUP_AUTHORIZATION_FAILED)
    };
    let mut resp = SyncGroupResponse::default()
        .with_error_code(result.error.code())
        .with_assignment(result.assignment);
    if req.version >= 5 {
        resp = resp
            .with_protocol_type(result.protocol_type.map(str_bytes))
            .with_protocol_name(result.protocol.map(str_bytes));
    }
    resp
}

async fn sync(state: &BrokerState, body: SyncGroupRequest) -> SyncResult {
    let sync = SyncRequest {
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.map(|s| s.to_string()),
        generation: body.generation_id,
        protocol_type: body.protocol_type.map(|s| s.to_string()),
        protocol_name: body.protocol_name.map(|s| s.to_string()),
        assignments: body
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    state.groups.sync(state, &body.group_id.0, sync).await
}
