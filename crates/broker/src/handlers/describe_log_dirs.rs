//! DescribeLogDirs (35): partition sizes per log directory.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{authorized_on_cluster, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !authorized_on_cluster(state, req, op::DESCRIBE) {
        let response = DescribeLogDirsResponse::default();
        return if req.version >= 3 {
            response
                .with_error_code(kraftwerk_types::ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code())
        } else {
            response
        };
    }
    let wanted: Option<BTreeMap<String, Vec<i32>>> = body.topics.map(|t| {
        t.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in state.replicas.all() {
        let tp = &p.topic_partition;
        if let Some(w) = &wanted {
            if !w
                .get(&tp.topic)
                .map(|ps| ps.contains(&tp.partition))
                .unwrap_or(false)
            {
                continue;
            }
        }
        by_topic.entry(tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(tp.partition)
                .with_partition_size(p.log.size_bytes() as i64)
                .with_offset_lag(0),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = state.replicas.log_dir();
    let dir_name = std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.clone())
        .display()
        .to_string();
    // Total and usable bytes are reported as unknown (-1), which Kafka allows.
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir_name))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    DescribeLogDirsResponse::default().with_results(vec![result])
}
