//! DescribeAcls (29): the ACLs matching a filter, grouped by resource
//! (`kafka-acls.sh --list`). Needs DESCRIBE on the cluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kraftwerk_types::ErrorCode;

use super::{acl_api_refusal, str_bytes, Request};
use crate::security::authorizer::{op, AclFilter};
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let refuse = |code: ErrorCode, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((code, message)) = acl_api_refusal(state, req, op::DESCRIBE) {
        return refuse(code, message.into());
    }
    let filter = AclFilter {
        resource_type: body.resource_type_filter,
        resource_name: body.resource_name_filter.map(|s| s.to_string()),
        pattern_type: body.pattern_type_filter,
        principal: body.principal_filter.map(|s| s.to_string()),
        host: body.host_filter.map(|s| s.to_string()),
        operation: body.operation,
        permission_type: body.permission_type,
    };
    if let Err(message) = filter.validate() {
        return refuse(ErrorCode::INVALID_REQUEST, message);
    }
    let image = state.image.load();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in image.acls.iter().filter(|a| filter.matches(a)) {
        by_resource
            .entry((
                acl.resource_type,
                acl.resource_name.clone(),
                acl.pattern_type,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation)
                    .with_permission_type(acl.permission_type),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((resource_type, name, pattern_type), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pattern_type)
                    .with_acls(acls)
            })
            .collect(),
    )
}
