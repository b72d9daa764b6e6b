//! CreateTopics (19): validated and committed by the controller.
//!
//! The partitions created count against the client's
//! `controller_mutation_rate` (KIP-599). From v6 a topic that would be
//! created while the client's bucket is below zero is refused with
//! THROTTLING_QUOTA_EXCEEDED, once it has passed every other check; older
//! versions are served and only throttled. Validate-only requests count
//! too, as in Kafka 4.1.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kraftwerk_types::ErrorCode;

use super::{
    authorized_on_cluster, authorized_on_topic, str_bytes, Request,
    THROTTLING_QUOTA_EXCEEDED_MESSAGE,
};
use crate::controller::NewTopic;
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: CreateTopicsRequest,
) -> CreateTopicsResponse {
    /// The first version that knows THROTTLING_QUOTA_EXCEEDED.
    const STRICT_SINCE: i16 = 6;
    let quota = req.mutation_quota(state, STRICT_SINCE);
    let mut results = Vec::with_capacity(body.topics.len());
    let mut seen = std::collections::HashSet::new();
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        // CREATE on the cluster, or on the topic.
        if !authorized_on_cluster(state, req, op::CREATE)
            && !authorized_on_topic(state, req, op::CREATE, &name)
        {
            seen.insert(name.clone());
            results.push(
                result
                    .with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.code())
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(ErrorCode::INVALID_REQUEST.code())
                    .with_error_message(Some(str_bytes(format!(
                        "topic '{name}' appears twice in the request"
                    )))),
            );
            continue;
        }
        let mut configs = BTreeMap::new();
        for c in &topic.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let assignments = if topic.assignments.is_empty() {
            None
        } else {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                results.push(
                    result
                        .with_error_code(ErrorCode::INVALID_REQUEST.code())
                        .with_error_message(Some(str_bytes(
                        "both a replica assignment and partitions/replication factor were given",
                    ))),
                );
                continue;
            }
            let mut a: Vec<_> = topic
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>(),
                    )
                })
                .collect();
            a.sort_by_key(|(p, _)| *p);
            if a.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
                results.push(
                    result
                        .with_error_code(ErrorCode::INVALID_REPLICA_ASSIGNMENT.code())
                        .with_error_message(Some(str_bytes(
                            "partitions must be numbered 0..n without gaps",
                        ))),
                );
                continue;
            }
            Some(a.into_iter().map(|(_, r)| r).collect())
        };
        let new_topic = NewTopic {
            name: name.clone(),
            num_partitions: if topic.num_partitions == -1 {
                state.config.num_partitions
            } else {
                topic.num_partitions
            },
            replication_factor: if topic.replication_factor == -1 {
                state.config.default_replication_factor
            } else {
                topic.replication_factor
            },
            assignments,
            configs,
        };
        // Refused for the quota only if it would otherwise be created, so
        // a topic that cannot be gets the error that says why.
        let created = match quota.refused(state, req) {
            None => {
                state
                    .control
                    .create_topic(new_topic, body.validate_only)
                    .await
            }
            Some(_) => match state.control.create_topic(new_topic, true).await {
                Ok(_) => {
                    results.push(
                        result
                            .with_error_code(ErrorCode::THROTTLING_QUOTA_EXCEEDED.code())
                            .with_error_message(THROTTLING_QUOTA_EXCEEDED_MESSAGE),
                    );
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match created {
            Ok(record) => {
                quota.record(state, req, record.partitions.len() as u64);
                let rf = record
                    .partitions
                    .first()
                    .map(|p| p.replicas.len())
                    .unwrap_or(0) as i16;
                let described =
                    super::describe_configs::topic_configs(state, &record.configs, None, false)
                        .into_iter()
                        .map(|c| {
                            CreatableTopicConfigs::default()
                                .with_name(c.name)
                                .with_value(c.value)
                                .with_read_only(c.read_only)
                                .with_config_source(c.config_source)
                                .with_is_sensitive(false)
                        })
                        .collect();
                result = result
                    .with_topic_id(record.id.0)
                    .with_num_partitions(record.partitions.len() as i32)
                    .with_replication_factor(rf)
                    .with_configs(Some(described));
            }
            Err(e) => {
                result = result
                    .with_error_code(e.error_code().code())
                    .with_error_message(Some(str_bytes(e.to_string())));
            }
        }
        results.push(result);
    }
    if !body.validate_only {
        state.sync_replicas().await;
    }
    CreateTopicsResponse::default()
        .with_throttle_time_ms(req.throttle_time_ms())
        .with_topics(results)
}
