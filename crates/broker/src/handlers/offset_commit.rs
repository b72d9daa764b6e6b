//! OffsetCommit (8): offsets are written to `__consumer_offsets` and
//! answered once the write is committed (acks=all semantics).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_group, authorized_on_topic, Request};
use crate::group::records::OffsetValue;
use crate::group::OFFSET_METADATA_MAX_BYTES;
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = body.group_id.0.to_string();
    let group_allowed = authorized_on_group(state, req, op::READ, &group_id);
    let now = crate::handlers_now_ms();
    let image = state.image.load();
    // Per-partition outcome; None means "to be written".
    let mut outcome: BTreeMap<(String, i32), Option<ErrorCode>> = BTreeMap::new();
    let mut wanted: Vec<((String, i32), OffsetValue)> = Vec::new();
    for t in &body.topics {
        let topic = t.name.0.to_string();
        let topic_allowed = authorized_on_topic(state, req, op::READ, &topic);
        for p in &t.partitions {
            let key = (topic.clone(), p.partition_index);
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let code = if !group_allowed {
                Some(ErrorCode::GROUP_AUTHORIZATION_FAILED)
            } else if !topic_allowed {
                Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED)
            } else if image.partition(&topic, p.partition_index).is_none() {
                Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(ErrorCode::OFFSET_METADATA_TOO_LARGE)
            } else {
                wanted.push((
                    key.clone(),
                    OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms: now,
                    },
                ));
                None
            };
            outcome.insert(key, code);
        }
    }
    let result = commit(state, &group_id, &body, wanted).await;
    let mut topics: BTreeMap<String, Vec<OffsetCommitResponsePartition>> = BTreeMap::new();
    for ((topic, partition), code) in outcome {
        let code = code.unwrap_or(match result {
            Ok(()) => ErrorCode::NONE,
            Err(e) => e,
        });
        topics.entry(topic).or_default().push(
            OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code.code()),
        );
    }
    OffsetCommitResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(kafka_protocol::messages::TopicName(super::str_bytes(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

async fn commit(
    state: &BrokerState,
    group_id: &str,
    body: &OffsetCommitRequest,
    wanted: Vec<((String, i32), OffsetValue)>,
) -> Result<(), ErrorCode> {
    state
        .groups
        .commit_offsets(
            state,
            group_id,
            body.member_id.as_str(),
            body.group_instance_id.as_deref(),
            body.generation_id_or_member_epoch,
            wanted,
        )
        .await
}
