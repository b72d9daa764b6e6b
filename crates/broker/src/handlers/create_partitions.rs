//! CreatePartitions (37): grows a topic; partitions are never removed.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{authorized_on_topic, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
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
        if let Err(e) = state
            .control
            .create_partitions(
                topic.name.0.to_string(),
                topic.count,
                assignments,
                body.validate_only,
            )
            .await
        {
            result = result
                .with_error_code(e.error_code().code())
                .with_error_message(Some(str_bytes(e.to_string())));
        }
        results.push(result);
    }
    state.sync_replicas();
    CreatePartitionsResponse::default().with_results(results)
}
