//! DescribeConfigs (32): topic configs (override, broker default or Kafka
//! default, with the source of each) and broker configs.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kraftwerk_types::config::{
    broker_default, broker_key_has_default, broker_synonyms, ValueKind, BROKER_CONFIGS,
    TOPIC_CONFIGS,
};
use kraftwerk_types::{BrokerConfig, ErrorCode};

use super::{config_resource_authorized, str_bytes, Request};
use crate::security::authorizer::op;
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

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}

/// Every topic config with its effective value and where it came from;
/// with `synonyms`, every level that sets it, most specific first, as Kafka
/// lists them: the topic's override, the broker keys set in its config,
/// then the broker key's default.
pub(crate) fn topic_configs(
    state: &BrokerState,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
    synonyms: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let broker = &state.config.raw;
    // By name, as Kafka lists them.
    let mut defs: Vec<_> = TOPIC_CONFIGS.iter().collect();
    defs.sort_by_key(|d| d.key);
    defs.into_iter()
        .filter(|d| keys.map(|k| k.iter().any(|k| k == d.key)).unwrap_or(true))
        .map(|d| {
            let (value, source) = match (overrides.get(d.key), broker_default(d, broker)) {
                (Some(v), _) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                (None, Some((_, v))) => (v, SOURCE_STATIC_BROKER),
                (None, None) => (d.default.to_string(), SOURCE_DEFAULT),
            };
            let mut listed = Vec::new();
            if synonyms {
                if let Some(v) = overrides.get(d.key) {
                    listed.push(synonym(d.key, v, SOURCE_DYNAMIC_TOPIC));
                }
                for (key, _) in broker_synonyms(d) {
                    if let Some(v) = broker.get(key) {
                        listed.push(synonym(key, v, SOURCE_STATIC_BROKER));
                    }
                }
                if broker_key_has_default(d) {
                    listed.push(synonym(d.broker_key, d.default, SOURCE_DEFAULT));
                }
            }
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(d.key))
                .with_value(Some(str_bytes(value)))
                .with_read_only(false)
                .with_config_source(source)
                .with_config_type(config_type(d.kind))
                .with_synonyms(listed)
                .with_documentation(None)
        })
        .collect()
}

/// The type Kafka gives a broker config (1 BOOLEAN, 2 STRING, 3 INT,
/// 4 SHORT, 5 LONG, 7 LIST); the broker keys behind topic configs take the
/// topic config's.
fn broker_config_type(key: &str) -> i8 {
    if let Some(d) = TOPIC_CONFIGS.iter().find(|d| d.broker_key == key) {
        return config_type(d.kind);
    }
    match key {
        "auto.create.topics.enable" | "log.cleaner.enable" | "auto.leader.rebalance.enable" => 1,
        "node.id"
        | "num.partitions"
        | "default.replication.factor"
        | "socket.request.max.bytes"
        | "offsets.topic.num.partitions"
        | "offsets.topic.segment.bytes"
        | "offsets.retention.minutes"
        | "offsets.commit.timeout.ms"
        | "group.initial.rebalance.delay.ms"
        | "group.min.session.timeout.ms"
        | "group.max.session.timeout.ms"
        | "broker.session.timeout.ms"
        | "broker.heartbeat.interval.ms"
        | "replica.fetch.wait.max.ms"
        | "replica.fetch.max.bytes"
        | "replica.fetch.min.bytes"
        | "log.retention.hours"
        | "log.retention.minutes"
        | "log.roll.hours" => 3,
        "offsets.topic.replication.factor" => 4,
        "log.retention.check.interval.ms"
        | "log.cleaner.backoff.ms"
        | "offsets.retention.check.interval.ms"
        | "leader.imbalance.check.interval.seconds"
        | "replica.lag.time.max.ms"
        | "replica.high.watermark.checkpoint.interval.ms"
        | "log.retention.ms"
        | "log.roll.ms" => 5,
        "process.roles" | "controller.quorum.voters" | "controller.listener.names" | "log.dirs" => {
            7
        }
        _ => 2,
    }
}

fn broker_configs(
    state: &BrokerState,
    keys: Option<&[String]>,
    synonyms: bool,
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
        // Secrets (passwords, keys, JAAS configs) are named, never shown.
        let sensitive = BrokerConfig::is_sensitive(k);
        let listed = if synonyms {
            let mut s = synonym(k, &v, source);
            if sensitive {
                s.value = None;
            }
            vec![s]
        } else {
            Vec::new()
        };
        out.push(
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(k))
                .with_value((!sensitive).then(|| str_bytes(v)))
                .with_is_sensitive(sensitive)
                .with_read_only(true)
                .with_config_source(source)
                .with_config_type(broker_config_type(k))
                .with_synonyms(listed)
                .with_documentation(None),
        );
    }
    out
}

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = state.image.load();
    let synonyms = body.include_synonyms;
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
            if let Err((code, message)) =
                config_resource_authorized(state, req, op::DESCRIBE_CONFIGS, r.resource_type, &name)
            {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
                return result;
            }
            match r.resource_type {
                RESOURCE_TOPIC => match image.topic(&name) {
                    Some(t) => {
                        result.configs = topic_configs(state, &t.configs, keys.as_deref(), synonyms)
                    }
                    None => {
                        result.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
                        result.error_message =
                            Some(str_bytes(format!("topic '{name}' does not exist")));
                    }
                },
                RESOURCE_BROKER => {
                    if name.is_empty() || name == state.config.node_id.to_string() {
                        result.configs = broker_configs(state, keys.as_deref(), synonyms);
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
