//! SyncGroup (14): the leader's assignments are stored in
//! `__consumer_offsets` and, once that record is committed, every member
//! gets its own. Followers wait for the leader. Assignments are opaque
//! bytes.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

use super::{str_bytes, Request};
use crate::group::{Reply, SyncResult};
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: SyncGroupRequest,
) -> SyncGroupResponse {
    let result = sync(state, body).await;
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
    let group_id = body.group_id.0.to_string();
    let owned = match state.groups.owns(state, &group_id) {
        Ok(o) => o,
        Err(e) => return SyncResult::error(e),
    };
    let Some(group) = state.groups.group(&group_id) else {
        return SyncResult::error(ErrorCode::UNKNOWN_MEMBER_ID);
    };
    // Set when this is the leader's SyncGroup: the offset of the stored
    // assignment and the generation it belongs to.
    let mut stored_at: Option<(i64, i32)> = None;
    let reply = {
        let mut g = group.lock();
        let (reply, is_leader) = g.sync(
            body.member_id.as_str(),
            body.group_instance_id.as_deref(),
            body.generation_id,
            body.protocol_type.as_deref(),
            body.protocol_name.as_deref(),
            body.assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        );
        if is_leader {
            match state.groups.store_group(state, owned.partition, &g) {
                Ok(offset) => stored_at = Some((offset, g.generation)),
                Err(e) => g.finish_sync(Err(e), Instant::now(), crate::handlers_now_ms()),
            }
        }
        state.groups.store_or_retry(state, owned.partition, &mut g);
        reply
    };
    // Members get their assignments only once the group record is
    // committed, so a coordinator elected after a failover knows them.
    if let Some((offset, generation)) = stored_at {
        let committed = state
            .groups
            .await_committed(state, owned.partition, offset)
            .await;
        let mut g = group.lock();
        if g.generation == generation {
            g.finish_sync(committed, Instant::now(), crate::handlers_now_ms());
        }
    }
    match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => tokio::select! {
            r = rx => r.unwrap_or_else(|_| SyncResult::error(ErrorCode::NOT_COORDINATOR)),
            _ = state.shutdown.cancelled() => SyncResult::error(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        },
    }
}
