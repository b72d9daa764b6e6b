//! DeleteAcls (31): removes the ACLs each filter matches and lists them
//! (`kafka-acls.sh --remove`). Needs ALTER on the cluster.

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kraftwerk_types::ErrorCode;

use super::{acl_api_refusal, str_bytes, Request};
use crate::security::authorizer::{op, AclFilter};
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DeleteAclsRequest,
) -> DeleteAclsResponse {
    if let Some((code, message)) = acl_api_refusal(state, req, op::ALTER) {
        return DeleteAclsResponse::default().with_filter_results(
            body.filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(message)))
                })
                .collect(),
        );
    }
    let image = state.image.load();
    let mut per_filter = Vec::with_capacity(body.filters.len());
    let mut doomed = Vec::new();
    for f in &body.filters {
        let filter = AclFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref().map(|s| s.to_string()),
            host: f.host_filter.as_ref().map(|s| s.to_string()),
            operation: f.operation,
            permission_type: f.permission_type,
        };
        match filter.validate() {
            Err(message) => per_filter.push(Err(message)),
            Ok(()) => {
                let matched: Vec<_> = image
                    .acls
                    .iter()
                    .filter(|a| filter.matches(a))
                    .cloned()
                    .collect();
                for a in &matched {
                    if !doomed.contains(a) {
                        doomed.push(a.clone());
                    }
                }
                per_filter.push(Ok(matched));
            }
        }
    }
    let written = if doomed.is_empty() {
        Ok(())
    } else {
        state.control.alter_acls(Vec::new(), doomed).await
    };
    DeleteAclsResponse::default().with_filter_results(
        per_filter
            .into_iter()
            .map(|r| match (r, &written) {
                (Err(message), _) => DeleteAclsFilterResult::default()
                    .with_error_code(ErrorCode::INVALID_REQUEST.code())
                    .with_error_message(Some(str_bytes(message))),
                (Ok(_), Err(e)) => DeleteAclsFilterResult::default()
                    .with_error_code(e.error_code().code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
                (Ok(matched), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                    matched
                        .into_iter()
                        .map(|a| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(a.resource_type)
                                .with_resource_name(str_bytes(a.resource_name))
                                .with_pattern_type(a.pattern_type)
                                .with_principal(str_bytes(a.principal))
                                .with_host(str_bytes(a.host))
                                .with_operation(a.operation)
                                .with_permission_type(a.permission_type)
                        })
                        .collect(),
                ),
            })
            .collect(),
    )
}
