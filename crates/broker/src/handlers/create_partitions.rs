//! CreatePartitions (37): grows a topic; partitions are never removed.
//!
//! The partitions added count against the client's
//! `controller_mutation_rate` (KIP-599): from v3 a topic grown while the
//! client's bucket is below zero is refused with THROTTLING_QUOTA_EXCEEDED
//! once it has passed every other check; older versions are served and
//! only throttled. Validate-only requests count too, as in Kafka 4.1.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{authorized_on_topic, str_bytes, Request, THROTTLING_QUOTA_EXCEEDED_MESSAGE};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    /// The first version that knows THROTTLING_QUOTA_EXCEEDED.
    const STRICT_SINCE: i16 = 3;
    let quota = req.mutation_quota(state, STRICT_SINCE);
    let mut results = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let assignments = topic.assignments.map(|a| {
            a.into_iter()
                .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if !authorized_on_topic(state, req, op::ALTER, &topic.name.0) {
            results.push(
                result
                    .with_error_code(kraftwerk_types::ErrorCode::TOPIC_AUTHORIZATION_FAILED.code())
                    .with_error_message(Some(str_bytes("Authorization failed."))),
            );
            continue;
        }
        let name = topic.name.0.to_string();
        let before = state
            .image
            .load()
            .topic(&name)
            .map_or(0, |t| t.partitions.len() as i32);
        let refused = quota.refused(state, req);
        // Refused for the quota only if it would otherwise grow, so a
        // request that cannot be served gets the error that says why.
        let validate_only = body.validate_only || refused.is_some();
        let grown = state
            .control
            .create_partitions(name, topic.count, assignments, validate_only)
            .await;
        match grown {
            Ok(()) if refused.is_some() => {
                result = result
                    .with_error_code(kraftwerk_types::ErrorCode::THROTTLING_QUOTA_EXCEEDED.code())
                    .with_error_message(THROTTLING_QUOTA_EXCEEDED_MESSAGE);
            }
            Ok(()) => quota.record(state, req, topic.count.saturating_sub(before).max(0) as u64),
            Err(e) => {
                result = result
                    .with_error_code(e.error_code().code())
                    .with_error_message(Some(str_bytes(e.to_string())));
            }
        }
        results.push(result);
    }
    state.sync_replicas().await;
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(req.throttle_time_ms())
        .with_results(results)
}
