//! DeleteRecords (21): moves a partition's log start offset forward on its
//! leader (`kafka-delete-records`, `Admin.deleteRecords`). Offset -1 means
//! the high watermark. Segments wholly below the new start are deleted at
//! once; followers move their log start when their next fetch tells them
//! the leader's. The answer's low watermark is the leader's new log start
//! offset (Kafka waits for the followers' too: docs/compatibility.md).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kraftwerk_storage::StorageError;
use kraftwerk_types::ErrorCode;

use super::{authorized_on_topic, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

/// The offset that stands for "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = state.image.load();
    let topics = body
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let allowed = authorized_on_topic(state, req, op::DELETE, &name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !allowed {
                        return result
                            .with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.code());
                    }
                    match delete(state, &image, &name, p.partition_index, p.offset) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(code) => result.with_error_code(code.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

fn delete(
    state: &BrokerState,
    image: &crate::metadata::MetadataImage,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, ErrorCode> {
    let local = super::led_partition(state, image, topic, partition, -1)?;
    if !local.log.config().cleanup_policy.delete {
        // Kafka: records of a compacted-only topic cannot be deleted.
        return Err(ErrorCode::POLICY_VIOLATION);
    }
    let high_watermark = local.high_watermark();
    let target = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if target < 0 || target > high_watermark {
        return Err(ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    match local.log.advance_log_start_offset(target) {
        Ok(log_start_offset) => {
            tracing::info!(topic, partition, log_start_offset, "records deleted");
            Ok(log_start_offset)
        }
        Err(e @ StorageError::OffsetOutOfRange { .. }) => {
            tracing::debug!(topic, partition, error = %e, "delete records out of range");
            Err(ErrorCode::OFFSET_OUT_OF_RANGE)
        }
        Err(e) => {
            tracing::error!(topic, partition, error = %e, "delete records failed");
            Err(e.error_code())
        }
    }
}
