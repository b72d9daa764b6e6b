//! AlterConfigs (33), the legacy, non-incremental API still used by older
//! tools and web consoles: a topic's overrides become exactly the configs
//! given; every override not named returns to its default. Committed by the
//! controller like IncrementalAlterConfigs. Broker configs are static and
//! the answer says so.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::incremental_alter_configs::alterable_topic_configs;
use super::{config_resource_authorized, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(body.resources.len());
    for r in body.resources {
        let mut resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let name = r.resource_name.to_string();
        if let Err((code, message)) =
            config_resource_authorized(state, req, op::ALTER_CONFIGS, r.resource_type, &name)
        {
            resp.error_code = code.code();
            resp.error_message = Some(str_bytes(message));
            responses.push(resp);
            continue;
        }
        let current = match alterable_topic_configs(state, r.resource_type, &name) {
            Ok(current) => current,
            Err((code, message)) => {
                resp.error_code = code.code();
                resp.error_message = Some(str_bytes(message));
                responses.push(resp);
                continue;
            }
        };
        let given: Vec<(String, Option<String>)> = r
            .configs
            .into_iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    Some(c.value.map(|v| v.to_string()).unwrap_or_default()),
                )
            })
            .collect();
        let mut changes: Vec<(String, Option<String>)> = current
            .keys()
            .filter(|k| !given.iter().any(|(g, _)| g == *k))
            .map(|k| (k.clone(), None))
            .collect();
        changes.extend(given);
        if let Err(e) = state
            .control
            .alter_topic_configs(name, changes, body.validate_only)
            .await
        {
            resp.error_code = e.error_code().code();
            resp.error_message = Some(str_bytes(e.to_string()));
        }
        responses.push(resp);
    }
    state.sync_replicas().await;
    AlterConfigsResponse::default().with_responses(responses)
}
