//! DescribeProducers (61): the producers with data in a partition this
//! broker leads (`kafka-transactions describe-producers`), with the first
//! offset of the transaction each has open there (-1: none) and the
//! epoch of the coordinator that wrote its last marker (-1: none), which
//! is how hanging transactions are found.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{authorized_on_topic, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = state.image.load();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let allowed = authorized_on_topic(state, req, op::READ, &name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    if !allowed {
                        return answer.with_error_code(
                            kraftwerk_types::ErrorCode::TOPIC_AUTHORIZATION_FAILED.code(),
                        );
                    }
                    match super::led_partition(state, &image, &name, index, -1) {
                        Ok(p) => answer.with_active_producers(
                            p.log
                                .active_producers()
                                .into_iter()
                                .map(|a| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_producer_epoch(i32::from(a.producer_epoch))
                                        .with_last_sequence(a.last_sequence)
                                        .with_last_timestamp(a.last_timestamp)
                                        .with_coordinator_epoch(a.coordinator_epoch)
                                        .with_current_txn_start_offset(a.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                        Err(code) => answer.with_error_code(code.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
