//! AlterPartitionReassignments (45): moves partitions to new replica sets,
//! as `kafka-reassign-partitions --execute` and `--cancel` ask. The
//! controller adds the target replicas, which copy the log from the leader;
//! once all are in the ISR the old ones leave and delete their copies.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::controller::ReassignPartition;
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut asked = Vec::new();
    for topic in &body.topics {
        for p in &topic.partitions {
            asked.push(ReassignPartition {
                topic: topic.name.0.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            });
        }
    }
    let response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(body.allow_replication_factor_change);
    if !authorized_on_cluster(state, req, op::ALTER) {
        return response
            .with_error_code(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed.")));
    }
    let answers = match state
        .control
        .alter_partition_reassignments(asked.clone(), body.allow_replication_factor_change)
        .await
    {
        Ok(answers) => answers,
        Err(e) => {
            return response
                .with_error_code(e.error_code().code())
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    };
    if answers.iter().any(|(code, _)| *code == ErrorCode::NONE) {
        state.sync_replicas().await;
    }
    let mut answers = asked.iter().zip(answers);
    let responses = body
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .filter_map(|_| answers.next())
                .map(|(r, (code, message))| {
                    ReassignablePartitionResponse::default()
                        .with_partition_index(r.partition)
                        .with_error_code(code.code())
                        .with_error_message((code != ErrorCode::NONE).then(|| str_bytes(message)))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    response.with_responses(responses)
}
