//! IncrementalAlterConfigs (44): topic config overrides, committed by the
//! controller. Dynamic broker configs are not supported and say so.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kraftwerk_types::ErrorCode;

use super::{config_resource_authorized, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's replication throttles. Kraftwerk has none, so they can never be
/// set; deleting them (as `kafka-reassign-partitions --verify` does when a
/// reassignment is done) is a no-op that succeeds, as it does in Kafka when
/// none was set.
const THROTTLE_BROKER_KEYS: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];
const THROTTLE_TOPIC_KEYS: &[&str] = &[
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The current overrides of the topic a config change names, or the
/// error Kafka answers: only topic configs can change (broker configs are
/// static) and the topic must exist. Shared with the legacy AlterConfigs.
pub(super) fn alterable_topic_configs(
    state: &BrokerState,
    resource_type: i8,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, (ErrorCode, String)> {
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ErrorCode::INVALID_REQUEST,
            "only topic configs can be altered; broker configs are static (server.properties)"
                .to_string(),
        ));
    }
    state
        .image
        .load()
        .topic(name)
        .map(|t| t.configs.clone())
        .ok_or_else(|| {
            (
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic '{name}' does not exist"),
            )
        })
}

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
        let only_throttle_deletes = |keys: &[&str]| {
            r.configs
                .iter()
                .all(|c| c.config_operation == OP_DELETE && keys.contains(&c.name.as_str()))
        };
        if r.resource_type == RESOURCE_BROKER && only_throttle_deletes(THROTTLE_BROKER_KEYS) {
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
        let mut changes = Vec::with_capacity(r.configs.len());
        let mut bad = None;
        for c in r.configs {
            let key = c.name.to_string();
            let value = c.value.map(|v| v.to_string());
            match c.config_operation {
                OP_SET => changes.push((key, Some(value.unwrap_or_default()))),
                OP_DELETE if THROTTLE_TOPIC_KEYS.contains(&key.as_str()) => {}
                OP_DELETE => changes.push((key, None)),
                OP_APPEND | OP_SUBTRACT if key == "cleanup.policy" => {
                    let mut items: Vec<String> = current
                        .get(&key)
                        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                        .unwrap_or_else(|| vec!["delete".into()]);
                    for item in value
                        .unwrap_or_default()
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                    {
                        if c.config_operation == OP_APPEND {
                            if !items.contains(&item) {
                                items.push(item);
                            }
                        } else {
                            items.retain(|x| *x != item);
                        }
                    }
                    changes.push((key, Some(items.join(","))));
                }
                OP_APPEND | OP_SUBTRACT => {
                    bad = Some(format!("'{key}' is not a list config; APPEND and SUBTRACT apply to list configs only"));
                    break;
                }
                other => {
                    bad = Some(format!("unknown config operation {other}"));
                    break;
                }
            }
        }
        if let Some(message) = bad {
            resp.error_code = ErrorCode::INVALID_CONFIG.code();
            resp.error_message = Some(str_bytes(message));
        } else if let Err(e) = state
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
