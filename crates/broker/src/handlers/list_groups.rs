//! ListGroups (16): the groups this broker coordinates; v4+ filters by
//! state, v5+ by type (all groups here are `classic`).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, Request};
use crate::group::state::GroupState;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ListGroupsRequest,
) -> ListGroupsResponse {
    let v = req.version;
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = body.types_filter.iter().map(|s| s.to_lowercase()).collect();
    if !types.is_empty() && !types.iter().any(|t| t == "classic") {
        return ListGroupsResponse::default();
    }
    let mut groups = Vec::new();
    for g in state.groups.all_groups() {
        let g = g.lock();
        if g.state == GroupState::Dead {
            continue;
        }
        let name = g.state.name();
        if !states.is_empty() && !states.contains(&name.to_lowercase()) {
            continue;
        }
        let mut listed = ListedGroup::default()
            .with_group_id(GroupId(str_bytes(g.group_id.clone())))
            .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()));
        if v >= 4 {
            listed = listed.with_group_state(str_bytes(name));
        }
        if v >= 5 {
            listed = listed.with_group_type(str_bytes("classic"));
        }
        groups.push(listed);
    }
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}
