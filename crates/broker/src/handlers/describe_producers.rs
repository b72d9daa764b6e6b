//! DescribeProducers (61): the idempotent producers with data in a
//! partition this broker leads (`kafka-transactions describe-producers`).
//! Without transactions no producer has an open transaction, so
//! `current_txn_start_offset` and `coordinator_epoch` are -1.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Request;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    _req: &Request<'_>,
    body: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = state.image.load();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
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
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
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
