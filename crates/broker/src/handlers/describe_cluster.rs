//! DescribeCluster (60): cluster id, controller, brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kraftwerk_types::ErrorCode;

use super::{str_bytes, Request};
use crate::BrokerState;

/// `endpoint_type` 1: broker endpoints (KIP-919); controllers are type 2.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = state.image.load();
    if body.endpoint_type != ENDPOINT_TYPE_BROKERS && body.endpoint_type != 0 {
        return DescribeClusterResponse::default()
            .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code())
            .with_error_message(Some(str_bytes("only broker endpoints are described")))
            .with_endpoint_type(body.endpoint_type);
    }
    // As Kafka: fenced brokers are listed only to v2+ requests that ask
    // for them (KIP-1073); v0-v1 cannot even say that a broker is fenced.
    let with_fenced = req.version >= 2 && body.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| with_fenced || !b.fenced)
        .filter_map(|b| {
            let (host, port) = b.endpoint(req.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host.to_string()))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(super::metadata::controller_id_for_clients(
            &image,
            req.listener,
        )))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
