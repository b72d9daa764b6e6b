//! DeleteTopics (20): by name, or by topic id from v6.
//!
//! The partitions deleted count against the client's
//! `controller_mutation_rate` (KIP-599): from v5 a topic deleted while the
//! client's bucket is below zero is refused with THROTTLING_QUOTA_EXCEEDED;
//! older versions are served and only throttled.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kraftwerk_types::{ErrorCode, TopicId};

use super::{authorized_on_topic, str_bytes, Request, THROTTLING_QUOTA_EXCEEDED_MESSAGE};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if req.version >= 6 {
        body.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        body.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    /// The first version that knows THROTTLING_QUOTA_EXCEEDED.
    const STRICT_SINCE: i16 = 5;
    let quota = req.mutation_quota(state, STRICT_SINCE);
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = state.image.load();
        let resolved = match &name {
            Some(n) => image
                .topic(n)
                .map(|t| t.name.clone())
                .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
            None => image
                .topic_by_id(&TopicId(id))
                .map(|t| t.name.clone())
                .ok_or(ErrorCode::UNKNOWN_TOPIC_ID),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(str_bytes(n))))
            .with_topic_id(id);
        // Unauthorized: refused whether or not the topic exists.
        let resolved = match resolved {
            Ok(topic) if !authorized_on_topic(state, req, op::DELETE, &topic) => {
                Err(ErrorCode::TOPIC_AUTHORIZATION_FAILED)
            }
            Err(_)
                if name
                    .as_ref()
                    .is_some_and(|n| !authorized_on_topic(state, req, op::DELETE, n)) =>
            {
                Err(ErrorCode::TOPIC_AUTHORIZATION_FAILED)
            }
            other => other,
        };
        match resolved {
            Ok(topic) if quota.refused(state, req).is_some() => {
                result = result
                    .with_name(Some(TopicName(str_bytes(topic))))
                    .with_error_code(ErrorCode::THROTTLING_QUOTA_EXCEEDED.code())
                    .with_error_message(THROTTLING_QUOTA_EXCEEDED_MESSAGE);
            }
            Ok(topic) => match state.control.delete_topic(topic.clone()).await {
                Ok(deleted_id) => {
                    let partitions = image.topic(&topic).map_or(0, |t| t.partitions.len());
                    quota.record(state, req, partitions as u64);
                    result = result
                        .with_name(Some(TopicName(str_bytes(topic))))
                        .with_topic_id(deleted_id.0);
                }
                Err(e) => {
                    result = result
                        .with_error_code(e.error_code().code())
                        .with_error_message(Some(str_bytes(e.to_string())))
                }
            },
            Err(code) => result = result.with_error_code(code.code()),
        }
        responses.push(result);
    }
    state.sync_replicas().await;
    DeleteTopicsResponse::default()
        .with_throttle_time_ms(req.throttle_time_ms())
        .with_responses(responses)
}
