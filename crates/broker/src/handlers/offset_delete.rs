//! OffsetDelete (47): deletes committed offsets of a group, except those
//! of topics a member of a `consumer` group is subscribed to.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, authorized_on_topic, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if !authorized_on_group(state, req, op::DELETE, &body.group_id.0) {
        return OffsetDeleteResponse::default()
            .with_error_code(ErrorCode::GROUP_AUTHORIZATION_FAILED.code());
    }
    let image = state.image.load();
    let mut codes: BTreeMap<(String, i32), ErrorCode> = BTreeMap::new();
    let mut known = Vec::new();
    for t in &body.topics {
        for p in &t.partitions {
            let key = (t.name.0.to_string(), p.partition_index);
            if !authorized_on_topic(state, req, op::READ, &key.0) {
                codes.insert(key, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
            } else if image.partition(&key.0, key.1).is_some() {
                known.push(key);
            } else {
                codes.insert(key, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
            }
        }
    }
    match state
        .groups
        .delete_offsets(state, &body.group_id.0, known)
        .await
    {
        Ok(deleted) => codes.extend(deleted),
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    }
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = codes
                        .get(&(t.name.0.to_string(), p.partition_index))
                        .copied()
                        .unwrap_or(ErrorCode::NONE);
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.code())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
