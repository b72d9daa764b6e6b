//! DescribeConfigs (32): topic configs (override, broker default or Kafka
//! default, with the source of each) and broker configs.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kraftwerk_types::config::{ValueKind, BROKER_CONFIGS, TOPIC_CONFIGS};
use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::BrokerState;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_type(kind: ValueKind) -> i8 {
    match kind {
        ValueKind::Boolean => 1,
        ValueKind::Int { .. } => 3,
        ValueKind::Long { .. } => 5,
        ValueKind::Ratio => 6,
        ValueKind::CleanupPolicy => 7,
        ValueKind::TimestampType | ValueKind::CompressionType => 2,
    }
}

/// Every topic config with its effective value and where it came from.
pub(crate) fn topic_configs(
    state: &BrokerState,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_CONFIGS
        .iter()
        .filter(|d| keys.map(|k| k.iter().any(|k| k == d.key)).unwrap_or(true))
        .map(|d| {
            let (value, source) = match (overrides.get(d.key), state.config.raw.get(d.broker_key)) {
                (Some(v), _) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                (None, Some(v)) => (v.clone(), SOURCE_STATIC_BROKER),
                (None, None) => (d.default.to_string(), SOURCE_DEFAULT),
            };
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(d.key))
                .with_value(Some(str_bytes(value)))
                .with_read_only(false)
                .with_config_source(source)
                .with_config_type(config_type(d.kind))
        })
        .collect()
}

fn broker_configs(
    state: &BrokerState,
    keys: Option<&[String]>,
) -> Vec<DescribeConfigsResourceResult> {
    let mut all: BTreeMap<&str, (String, i8)> = BTreeMap::new();
    for (k, default) in BROKER_CONFIGS {
        all.insert(k, (default.to_string(), SOURCE_DEFAULT));
    }
    for d in TOPIC_CONFIGS {
        all.insert(d.broker_key, (d.default.to_string(), SOURCE_DEFAULT));
    }
    let mut out: Vec<DescribeConfigsResourceResult> = Vec::new();
    for (k, v) in &state.config.raw {
        all.insert(k.as_str(), (v.clone(), SOURCE_STATIC_BROKER));
    }
    for (k, (v, source)) in all {
        if let Some(keys) = keys {
            if !keys.iter().any(|x| x == k) {
                continue;
            }
        }
        out.push(
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(k))
                .with_value(Some(str_bytes(v)))
                .with_read_only(true)
                .with_config_source(source)
                .with_config_type(2),
        );
    }
    out
}

pub async fn handle(
    state: &BrokerState,
    _req: &Request<'_>,
    body: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = state.image.load();
    let results = body
        .resources
        .into_iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let name = r.resource_name.to_string();
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match r.resource_type {
                RESOURCE_TOPIC => match image.topic(&name) {
                    Some(t) => result.configs = topic_configs(state, &t.configs, keys.as_deref()),
                    None => {
                        result.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
                        result.error_message =
                            Some(str_bytes(format!("topic '{name}' does not exist")));
                    }
                },
                RESOURCE_BROKER => {
                    if name.is_empty() || name == state.config.node_id.to_string() {
                        result.configs = broker_configs(state, keys.as_deref());
                    } else {
                        result.error_code = ErrorCode::INVALID_REQUEST.code();
                        result.error_message = Some(str_bytes(format!(
                            "this is broker {}, not '{name}'",
                            state.config.node_id
                        )));
                    }
                }
                other => {
                    result.error_code = ErrorCode::INVALID_REQUEST.code();
                    result.error_message =
                        Some(str_bytes(format!("resource type {other} is not supported")));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
