//! DescribeGroups (15): state, protocol and members of groups. Member
//! metadata and assignments are shown once the group is Stable.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::group::state::GroupState;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let v = req.version;
    let groups = body
        .groups
        .into_iter()
        .map(|id| {
            let group_id = id.0.to_string();
            let described = DescribedGroup::default().with_group_id(id);
            if let Err(e) = state.groups.owns(state, &group_id) {
                return described
                    .with_error_code(e.code())
                    .with_group_state(str_bytes(""));
            }
            let Some(group) = state.groups.group(&group_id) else {
                let d = described.with_group_state(str_bytes("Dead"));
                return if v >= 6 {
                    d.with_error_code(ErrorCode::GROUP_ID_NOT_FOUND.code())
                        .with_error_message(Some(str_bytes(format!("group {group_id} not found"))))
                } else {
                    d
                };
            };
            let g = group.lock();
            let stable = g.state == GroupState::Stable;
            let protocol = g.protocol.clone().unwrap_or_default();
            let members = g
                .members
                .values()
                .map(|m| {
                    let (metadata, assignment) = if stable {
                        (
                            m.metadata(&protocol).cloned().unwrap_or_default(),
                            m.assignment.clone(),
                        )
                    } else {
                        Default::default()
                    };
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id.clone()))
                        .with_group_instance_id(if v >= 4 {
                            m.group_instance_id.clone().map(str_bytes)
                        } else {
                            None
                        })
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()))
                        .with_member_metadata(metadata)
                        .with_member_assignment(assignment)
                })
                .collect();
            described
                .with_group_state(str_bytes(g.state.name()))
                .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
                .with_protocol_data(str_bytes(if stable { protocol } else { String::new() }))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
