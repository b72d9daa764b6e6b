//! WriteTxnMarkers (27): transaction markers for partitions this broker
//! leads. Kraftwerk's own coordinators send markers between brokers over
//! gRPC; this API is what Kafka's admin client sends to abort a hanging
//! transaction (`kafka-transactions.sh abort`). Each marker is answered
//! once committed, partition by partition, with Kafka's error codes.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kraftwerk_coordinator::txn::Marker;
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, Request};
use crate::security::authorizer::op;
use crate::BrokerState;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(body.markers.len());
    for m in body.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            coordinator_epoch: m.coordinator_epoch,
            commit: m.transaction_result,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for p in t.partition_indexes {
                let code = if !authorized_on_cluster(state, req, op::CLUSTER_ACTION) {
                    ErrorCode::CLUSTER_AUTHORIZATION_FAILED
                } else {
                    match crate::markers::write_local(state, marker, &t.name.0, p).await {
                        Ok(()) => ErrorCode::NONE,
                        Err(code) => code,
                    }
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code.code()),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
