//! ListOffsets (2): earliest (-2), latest (-1), max timestamp (-3), by timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_topic, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-1005: the offset of the first local segment; without tiered storage it is the earliest.
const EARLIEST_LOCAL: i64 = -4;
/// KIP-1005: the last tiered offset; without tiered storage, `log start offset - 1`.
const LATEST_TIERED: i64 = -5;
const READ_COMMITTED: i8 = 1;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = state.image.load();
    let read_committed = body.isolation_level == READ_COMMITTED;
    // Consumers ask with replica id -1; a broker's own requests (replica id
    // >= 0) read up to the log end and never wait for the high watermark.
    let from_client = body.replica_id.0 < 0;
    let topics = body
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let allowed = authorized_on_topic(state, req, op::DESCRIBE, &name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let mut resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let result = (|| {
                        if !allowed {
                            return Err(ErrorCode::TOPIC_AUTHORIZATION_FAILED);
                        }
                        let partition = super::led_partition(
                            state,
                            &image,
                            &name,
                            p.partition_index,
                            p.current_leader_epoch,
                        )?;
                        let epoch = partition.leader_epoch();
                        let log = &partition.log;
                        // A new leader whose high watermark has not caught
                        // up yet answers OFFSET_NOT_AVAILABLE (retriable),
                        // as Kafka does, rather than an end offset below
                        // records already acknowledged.
                        let not_available = || {
                            if from_client && partition.high_watermark_unknown() {
                                Err(ErrorCode::OFFSET_NOT_AVAILABLE)
                            } else {
                                Ok(())
                            }
                        };
                        let (timestamp, offset) = match p.timestamp {
                            LATEST => {
                                not_available()?;
                                (
                                    -1,
                                    if read_committed {
                                        partition.last_stable_offset()
                                    } else {
                                        partition.high_watermark()
                                    },
                                )
                            }
                            EARLIEST | EARLIEST_LOCAL => (-1, log.log_start_offset()),
                            LATEST_TIERED => (-1, log.log_start_offset() - 1),
                            MAX_TIMESTAMP => log.max_timestamp_and_offset().unwrap_or((-1, -1)),
                            ts if ts >= 0 => {
                                match log.offset_for_timestamp(ts).map_err(|e| e.error_code())? {
                                    Some((offset, timestamp))
                                        if offset < partition.high_watermark() =>
                                    {
                                        (timestamp, offset)
                                    }
                                    _ => {
                                        not_available()?;
                                        (-1, -1)
                                    }
                                }
                            }
                            _ => return Err(ErrorCode::INVALID_REQUEST),
                        };
                        Ok((timestamp, offset, epoch))
                    })();
                    match result {
                        Ok((timestamp, offset, epoch)) => {
                            resp.timestamp = timestamp;
                            resp.offset = offset;
                            // The leader epoch is in the answer from v4 on.
                            if req.version >= 4 {
                                resp.leader_epoch = epoch;
                            }
                        }
                        Err(code) => resp.error_code = code.code(),
                    }
                    resp
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
