//! DescribeQuorum (55): the metadata quorum's leader, epoch, high
//! watermark and each voter's log end offset, as `kafka-metadata-quorum
//! describe --status` shows it. Brokers forward it to the controller quorum.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

/// Kafka's name of the metadata log's one partition.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    _body: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    if !authorized_on_cluster(state, req, op::DESCRIBE) {
        return DescribeQuorumResponse::default()
            .with_error_code(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed.")));
    }
    let (mut nodes, partition) = match state.quorum.quorum_status().await {
        Ok(s) => {
            let nodes: Vec<Node> = s.voters.iter().map(voter_node).collect();
            let voters = s
                .voters
                .iter()
                .map(|v| {
                    ReplicaState::default()
                        .with_replica_id(BrokerId(v.node_id as i32))
                        .with_log_end_offset(v.matched_index.map(|i| i as i64).unwrap_or(-1))
                        .with_last_fetch_timestamp(-1)
                        .with_last_caught_up_timestamp(-1)
                })
                .collect();
            let partition = PartitionData::default()
                .with_leader_id(BrokerId(s.leader_id.map(|l| l as i32).unwrap_or(-1)))
                .with_leader_epoch(s.term as i32)
                .with_high_watermark(s.commit_index.map(|c| c as i64).unwrap_or(-1))
                .with_current_voters(voters);
            (nodes, partition)
        }
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(ErrorCode::REQUEST_TIMED_OUT.code())
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    };
    if req.version < 2 {
        nodes.clear();
    }
    DescribeQuorumResponse::default()
        .with_nodes(nodes)
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![partition.with_partition_index(0)])])
}

/// A voter as v2 lists it: its controller endpoint, named as Kafka names
/// the controller listener.
fn voter_node(v: &kraftwerk_rpc::controller::VoterStatus) -> Node {
    let listeners = v
        .address
        .trim_start_matches("http://")
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
        .map(|(host, port)| {
            vec![Listener::default()
                .with_name(str_bytes("CONTROLLER"))
                .with_host(str_bytes(host))
                .with_port(port)]
        })
        .unwrap_or_default();
    Node::default()
        .with_node_id(BrokerId(v.node_id as i32))
        .with_listeners(listeners)
}
