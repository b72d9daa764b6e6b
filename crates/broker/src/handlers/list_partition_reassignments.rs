//! ListPartitionReassignments (46): the reassignments in progress, from
//! this broker's metadata image, as `kafka-reassign-partitions --verify`
//! and `--list` read them.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kraftwerk_metadata::{PartitionRecord, TopicRecord};

use super::{authorized_on_cluster, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

fn ongoing(p: &PartitionRecord) -> OngoingPartitionReassignment {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    OngoingPartitionReassignment::default()
        .with_partition_index(p.partition)
        .with_replicas(ids(&p.replicas))
        .with_adding_replicas(ids(&p.adding_replicas))
        .with_removing_replicas(ids(&p.removing_replicas))
}

fn topic_entry(
    t: &TopicRecord,
    partitions: Vec<OngoingPartitionReassignment>,
) -> OngoingTopicReassignment {
    OngoingTopicReassignment::default()
        .with_name(TopicName(str_bytes(t.name.clone())))
        .with_partitions(partitions)
}

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !authorized_on_cluster(state, req, op::DESCRIBE) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(kraftwerk_types::ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code())
            .with_error_message(Some(super::str_bytes("Cluster authorization failed.")));
    }
    let image = state.image.load();
    let topics = match &body.topics {
        // Every partition being reassigned.
        None => image
            .topics
            .values()
            .filter_map(|t| {
                let partitions: Vec<_> = t
                    .partitions
                    .iter()
                    .filter(|p| p.reassigning())
                    .map(ongoing)
                    .collect();
                (!partitions.is_empty()).then(|| topic_entry(t, partitions))
            })
            .collect(),
        // The named partitions that are being reassigned; others, and
        // unknown ones, are left out, as Kafka leaves them out.
        Some(asked) => asked
            .iter()
            .filter_map(|a| {
                let t = image.topic(&a.name.0)?;
                let partitions: Vec<_> = a
                    .partition_indexes
                    .iter()
                    .filter_map(|i| image.partition(&t.name, *i))
                    .filter(|p| p.reassigning())
                    .map(ongoing)
                    .collect();
                (!partitions.is_empty()).then(|| topic_entry(t, partitions))
            })
            .collect(),
    };
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
