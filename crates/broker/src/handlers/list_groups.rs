//! ListGroups (16): the groups this broker coordinates; v4+ filters by
//! state, v5+ by type (all groups here are `classic`).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{authorized_on_cluster, authorized_on_group, str_bytes, Request};
use crate::security::authorizer::op;
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
    let groups = state
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        // DESCRIBE on the cluster lists every group; else those the client may describe.
        .filter(|g| {
            authorized_on_cluster(state, req, op::DESCRIBE)
                || authorized_on_group(state, req, op::DESCRIBE, &g.group_id)
        })
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type));
            if v >= 4 {
                listed = listed.with_group_state(str_bytes(g.state));
            }
            if v >= 5 {
                listed = listed.with_group_type(str_bytes("classic"));
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
