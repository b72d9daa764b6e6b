//! CreateAcls (30): adds ACLs to the metadata quorum (`kafka-acls.sh
//! --add`). Needs ALTER on the cluster. Each creation is checked as Kafka
//! checks it and answered on its own; the valid ones are written together.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kraftwerk_types::ErrorCode;

use super::{acl_api_refusal, str_bytes, Request};
use crate::metadata::AclBinding;
use crate::security::authorizer::{op, validate_new_acl};
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: CreateAclsRequest,
) -> CreateAclsResponse {
    if let Some((code, message)) = acl_api_refusal(state, req, op::ALTER) {
        return CreateAclsResponse::default().with_results(
            body.creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(message)))
                })
                .collect(),
        );
    }
    let mut results = Vec::with_capacity(body.creations.len());
    let mut valid = Vec::new();
    for c in &body.creations {
        let acl = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission_type: c.permission_type,
        };
        match validate_new_acl(&acl) {
            Ok(()) => {
                valid.push(acl);
                results.push(None);
            }
            Err(message) => results.push(Some((ErrorCode::INVALID_REQUEST, message))),
        }
    }
    let written = if valid.is_empty() {
        Ok(())
    } else {
        state.control.alter_acls(valid, Vec::new()).await
    };
    CreateAclsResponse::default().with_results(
        results
            .into_iter()
            .map(|r| {
                let (code, message) = match (r, &written) {
                    (Some((code, message)), _) => (code, Some(message)),
                    (None, Err(e)) => (e.error_code(), Some(e.to_string())),
                    (None, Ok(())) => (ErrorCode::NONE, None),
                };
                AclCreationResult::default()
                    .with_error_code(code.code())
                    .with_error_message(message.map(str_bytes))
            })
            .collect(),
    )
}
