//! DescribeGroups (15): state, protocol and members of groups. Member
//! metadata and assignments are shown once the group is Stable.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, str_bytes, Request};
use crate::security::authorizer::op;
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
            let described = DescribedGroup::default().with_group_id(id.clone());
            if !authorized_on_group(state, req, op::DESCRIBE, &id.0) {
                return described
                    .with_error_code(ErrorCode::GROUP_AUTHORIZATION_FAILED.code())
                    .with_group_state(str_bytes(""));
            }
            match state.groups.describe(state, &id.0) {
                Err(e) => described
                    .with_error_code(e.code())
                    .with_group_state(str_bytes("")),
                Ok(None) => {
                    let d = described.with_group_state(str_bytes("Dead"));
                    if v >= 6 {
                        d.with_error_code(ErrorCode::GROUP_ID_NOT_FOUND.code())
                            .with_error_message(Some(str_bytes(format!(
                                "group {} not found",
                                id.0
                            ))))
                    } else {
                        d
                    }
                }
                Ok(Some(g)) => described
                    .with_group_state(str_bytes(g.state))
                    .with_protocol_type(str_bytes(g.protocol_type))
                    .with_protocol_data(str_bytes(g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(if v >= 4 {
                                        m.group_instance_id.map(str_bytes)
                                    } else {
                                        None
                                    })
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
