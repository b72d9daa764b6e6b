//! ElectLeaders (43): preferred-leader election on request, as
//! `kafka-leader-election --election-type PREFERRED` asks for it. Unclean
//! election on request is refused; it happens only by topic config.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, str_bytes, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

const PREFERRED: i8 = 0;
const ELECTION_NOT_NEEDED: i16 = ErrorCode::ELECTION_NOT_NEEDED.0;
const PREFERRED_LEADER_NOT_AVAILABLE: i16 = ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE.0;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let before = state.image.load();
    let wanted: Vec<(String, i32)> = match &body.topic_partitions {
        Some(tps) => tps
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), *p))
            })
            .collect(),
        None => before
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.clone(), p.partition))
            })
            .collect(),
    };
    let refuse_all = |code: ErrorCode, message: &str| {
        let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> =
            Default::default();
        for (t, p) in &wanted {
            by_topic.entry(t.clone()).or_default().push(
                PartitionResult::default()
                    .with_partition_id(*p)
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(message))),
            );
        }
        results(by_topic)
    };
    if !authorized_on_cluster(state, req, op::ALTER) {
        let mut response =
            ElectLeadersResponse::default().with_replica_election_results(refuse_all(
                ErrorCode::CLUSTER_AUTHORIZATION_FAILED,
                "Cluster authorization failed.",
            ));
        if req.version >= 1 {
            response.error_code = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.code();
        }
        return response;
    }
    if req.version >= 1 && body.election_type != PREFERRED {
        return ElectLeadersResponse::default().with_replica_election_results(refuse_all(
            ErrorCode::INVALID_REQUEST,
            "only preferred leader election can be requested",
        ));
    }
    let needed: Vec<(String, i32)> = wanted
        .iter()
        .filter(|(t, p)| {
            before
                .partition(t, *p)
                .is_some_and(|r| r.replicas.first() != Some(&r.leader))
        })
        .cloned()
        .collect();
    if !needed.is_empty() {
        if let Err(e) = state
            .control
            .elect_preferred_leaders(Some(needed.clone()))
            .await
        {
            return ElectLeadersResponse::default()
                .with_error_code(e.error_code().code())
                .with_replica_election_results(refuse_all(e.error_code(), &e.to_string()));
        }
    }
    let after = state.image.load();
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> = Default::default();
    for (t, p) in wanted {
        let result = match after.partition(&t, p) {
            None => PartitionResult::default()
                .with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()),
            Some(_) if !needed.contains(&(t.clone(), p)) => {
                PartitionResult::default().with_error_code(ELECTION_NOT_NEEDED)
            }
            Some(r) if r.replicas.first() == Some(&r.leader) => PartitionResult::default(),
            Some(_) => PartitionResult::default()
                .with_error_code(PREFERRED_LEADER_NOT_AVAILABLE)
                .with_error_message(Some(str_bytes(
                    "the preferred replica is not live or not in the ISR",
                ))),
        };
        by_topic
            .entry(t)
            .or_default()
            .push(result.with_partition_id(p));
    }
    ElectLeadersResponse::default().with_replica_election_results(results(by_topic))
}

fn results(
    by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>>,
) -> Vec<ReplicaElectionResult> {
    by_topic
        .into_iter()
        .map(|(t, partition_result)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(t)))
                .with_partition_result(partition_result)
        })
        .collect()
}
