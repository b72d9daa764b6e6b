//! DeleteGroups (42): removes empty groups and their offsets (tombstones in
//! `__consumer_offsets`). Groups with members answer NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kraftwerk_types::ErrorCode;

use super::Request;
use crate::group::records;
use crate::group::state::GroupState;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    _req: &Request<'_>,
    body: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(body.groups_names.len());
    for id in body.groups_names {
        let code = delete(state, &id.0).err().unwrap_or(ErrorCode::NONE);
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code.code()),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

fn delete(state: &BrokerState, group_id: &str) -> Result<(), ErrorCode> {
    let owned = state.groups.owns(state, group_id)?;
    let group = state
        .groups
        .group(group_id)
        .ok_or(ErrorCode::GROUP_ID_NOT_FOUND)?;
    let mut g = group.lock();
    match g.state {
        GroupState::Empty => {}
        GroupState::Dead => return Err(ErrorCode::GROUP_ID_NOT_FOUND),
        _ => return Err(ErrorCode::NON_EMPTY_GROUP),
    }
    let mut tombstones: Vec<_> = g
        .offsets
        .keys()
        .map(|(t, p)| (records::offset_key(group_id, t, *p), None))
        .collect();
    tombstones.push((records::group_key(group_id), None));
    state.groups.append(state, owned.partition, tombstones)?;
    g.offsets.clear();
    g.mark_dead(crate::handlers_now_ms());
    drop(g);
    state.groups.remove_group(group_id);
    tracing::info!(group = group_id, "group deleted");
    Ok(())
}
