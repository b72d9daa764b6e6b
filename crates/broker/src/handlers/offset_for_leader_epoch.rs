//! OffsetForLeaderEpoch (23): the end offset of a leader epoch, from the
//! partition's leader-epoch cache (KIP-101/279). Consumers use it to check
//! their position after a leader change.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_topic, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = state.image.load();
    let topics = body
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let allowed = authorized_on_topic(state, req, op::DESCRIBE, &name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let mut out = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let result = (|| -> Result<(i32, i64), ErrorCode> {
                        if !allowed {
                            return Err(ErrorCode::TOPIC_AUTHORIZATION_FAILED);
                        }
                        let partition = super::led_partition(
                            state,
                            &image,
                            &name,
                            p.partition,
                            p.current_leader_epoch,
                        )?;
                        Ok(partition
                            .log
                            .end_offset_for_epoch(p.leader_epoch)
                            .unwrap_or((-1, -1)))
                    })();
                    match result {
                        Ok((epoch, end_offset)) => {
                            out.leader_epoch = epoch;
                            out.end_offset = end_offset;
                        }
                        Err(code) => out.error_code = code.code(),
                    }
                    out
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
