//! Wires `kraftwerk-replication` into a cluster broker: the replication
//! gRPC listener that serves follower fetches, the follower fetchers, the
//! ISR loop (ISR changes go to the controller quorum as `AlterPartition`)
//! and the high-watermark checkpoint. The fetchers send this broker's epoch,
//! which `lifecycle` sets at each registration
//! ([`kraftwerk_replication::BrokerEpoch`], owned by the `ReplicaManager`).
//!
//! Where the replication listener lives: the listener named `REPLICATION`
//! in `listeners` when there is one (advertised as the `REPLICATION` entry
//! of `advertised.listeners`, else as bound); otherwise the Kafka
//! listener's host with its port + 1000 (an ephemeral port when that does
//! not fit or the Kafka port is 0), advertised with the Kafka listener's
//! advertised host. The endpoint reaches other brokers through the broker
//! registration (`replication_endpoint`).

use std::sync::Arc;

use kraftwerk_metadata::commands::{CommandResult, MetadataCommand};
use kraftwerk_replication::fetcher::FetcherManager;
use kraftwerk_replication::{
    isr, leader, AlterIsrError, BoxFuture, IsrChange, IsrControl, ReplicationConfig,
};
use kraftwerk_rpc::replication as pb;
use kraftwerk_rpc::replication::replication_server::{Replication, ReplicationServer};
use kraftwerk_types::{BrokerConfig, ErrorCode, TopicPartition};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controller::ControllerError;
use crate::remote::ControllerClient;
use crate::{BrokerError, BrokerState};

pub const LISTENER_NAME: &str = "REPLICATION";
/// The derived replication port is the Kafka port plus this.
pub const DERIVED_PORT_OFFSET: u16 = 1000;
const INVALID_UPDATE_VERSION: i16 = ErrorCode::INVALID_UPDATE_VERSION.0;

/// (bind host, bind port, advertised host, advertised port or None for "as bound").
fn replication_address(config: &BrokerConfig) -> (String, u16, String, Option<u16>) {
    if let Some(l) = config.listeners.iter().find(|l| l.name == LISTENER_NAME) {
        let advertised = config
            .advertised_listeners
            .iter()
            .find(|a| a.name == LISTENER_NAME);
        let host = advertised.map_or(l.host.clone(), |a| a.host.clone());
        let port = advertised.map(|a| a.port).filter(|p| *p != 0);
        return (l.host.clone(), l.port, host, port);
    }
    let kafka = config
        .listeners
        .iter()
        .find(|l| l.name != "CONTROLLER" && l.name != LISTENER_NAME)
        .or(config.listeners.first());
    let (host, port) = kafka.map_or(("127.0.0.1".to_string(), 0), |l| (l.host.clone(), l.port));
    let port = if port == 0 {
        0
    } else {
        port.checked_add(DERIVED_PORT_OFFSET).unwrap_or(0)
    };
    let advertised_host = kafka
        .and_then(|k| {
            config
                .advertised_listeners
                .iter()
                .find(|a| a.name == k.name)
        })
        .map_or(host.clone(), |a| a.host.clone());
    let advertised_host = if advertised_host.is_empty() || advertised_host == "0.0.0.0" {
        "127.0.0.1".to_string()
    } else {
        advertised_host
    };
    (host, port, advertised_host, None)
}

/// Binds the replication listener and starts the server, the fetchers, the
/// ISR loop and the checkpoint loop. Returns the advertised `host:port`.
pub async fn start(
    state: &Arc<BrokerState>,
    client: Arc<ControllerClient>,
    tls: Option<Arc<dyn kraftwerk_rpc::NodeTls>>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<String, BrokerError> {
    let config = ReplicationConfig::from_broker(&state.config);
    let (host, port, advertised_host, advertised_port) = replication_address(&state.config);
    let bind = kraftwerk_types::config::Listener {
        name: LISTENER_NAME.to_string(),
        host,
        port,
    }
    .bind_addr();
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|source| BrokerError::Bind {
            addr: bind.clone(),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr: bind, source })?;
    let endpoint = format!(
        "{advertised_host}:{}",
        advertised_port.unwrap_or(bound.port())
    );

    let source = state.replicas.source();
    let service = ReplicationGrpc {
        state: state.clone(),
        source: source.clone(),
        shutdown: shutdown.clone(),
    };
    let server_shutdown = shutdown.clone();
    let server_tls = tls.clone();
    tracker.spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(ReplicationServer::new(service))
            .serve_with_incoming_shutdown(
                kraftwerk_rpc::incoming(listener, server_tls),
                server_shutdown.cancelled(),
            )
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "replication gRPC server failed");
        }
    });

    let fetchers = Arc::new(
        FetcherManager::new(
            state.config.node_id,
            source.clone(),
            config.clone(),
            state.replicas.broker_epoch(),
            shutdown.clone(),
            tracker.clone(),
        )
        .with_tls(tls),
    );
    state.replicas.set_fetchers(fetchers);
    tracker.spawn(isr::isr_loop(
        state.config.node_id,
        source.clone(),
        Arc::new(ControllerIsrControl { client }),
        config.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    tracker.spawn(isr::checkpoint_loop(
        source,
        state.replicas.log_dir().clone(),
        config,
        shutdown,
    ));
    tracing::info!(%bound, advertised = %endpoint, "replication listener started");
    Ok(endpoint)
}

struct ReplicationGrpc {
    state: Arc<BrokerState>,
    source: Arc<dyn kraftwerk_replication::ReplicaSource>,
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl Replication for ReplicationGrpc {
    async fn fetch(
        &self,
        request: tonic::Request<pb::FetchRequest>,
    ) -> Result<tonic::Response<pb::FetchResponse>, tonic::Status> {
        let request = request.into_inner();
        let response = leader::serve_fetch(&self.source, &request, &self.shutdown).await;
        Ok(tonic::Response::new(response))
    }

    async fn write_txn_markers(
        &self,
        request: tonic::Request<pb::WriteTxnMarkersRequest>,
    ) -> Result<tonic::Response<pb::WriteTxnMarkersResponse>, tonic::Status> {
        let response = crate::markers::serve(&self.state, request.into_inner()).await;
        Ok(tonic::Response::new(response))
    }

    async fn verify_transaction(
        &self,
        request: tonic::Request<pb::VerifyTransactionRequest>,
    ) -> Result<tonic::Response<pb::VerifyTransactionResponse>, tonic::Status> {
        let r = request.into_inner();
        let code = match self.state.txns.verify(
            &*self.state,
            &r.transactional_id,
            r.producer_id,
            r.producer_epoch as i16,
            &r.topic,
            r.partition,
        ) {
            Ok(()) => 0,
            Err(code) => i32::from(code.code()),
        };
        Ok(tonic::Response::new(pb::VerifyTransactionResponse {
            error_code: code,
        }))
    }

    async fn high_watermarks(
        &self,
        request: tonic::Request<pb::HighWatermarksRequest>,
    ) -> Result<tonic::Response<pb::HighWatermarksResponse>, tonic::Status> {
        let response = crate::metrics::serve_high_watermarks(&self.state, request.into_inner());
        Ok(tonic::Response::new(response))
    }
}

/// ISR changes as `AlterPartition` commands to the controller quorum.
struct ControllerIsrControl {
    client: Arc<ControllerClient>,
}

impl IsrControl for ControllerIsrControl {
    fn alter_partition(
        &self,
        tp: TopicPartition,
        leader_id: i32,
        change: IsrChange,
    ) -> BoxFuture<'_, Result<(), AlterIsrError>> {
        Box::pin(async move {
            let command = MetadataCommand::AlterPartition {
                topic: tp.topic,
                partition: tp.partition,
                leader_id,
                partition_epoch: change.partition_epoch,
                isr: change.isr,
                added_broker_epochs: change.added_broker_epochs,
            };
            match self.client.write(&command).await {
                Ok((CommandResult::Error { code, .. }, _)) if code == INVALID_UPDATE_VERSION => {
                    Err(AlterIsrError::StalePartitionEpoch)
                }
                Ok((CommandResult::Error { code, message }, _))
                    if code == ErrorCode::INELIGIBLE_REPLICA.code() =>
                {
                    Err(AlterIsrError::IneligibleReplica(message))
                }
                Ok((CommandResult::Error { code, message }, _)) => {
                    Err(AlterIsrError::Refused(format!("error {code}: {message}")))
                }
                Ok(_) => Ok(()),
                Err(ControllerError::Remote { code, .. }) if code == INVALID_UPDATE_VERSION => {
                    Err(AlterIsrError::StalePartitionEpoch)
                }
                Err(e) => Err(AlterIsrError::Refused(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listeners: &str, advertised: &str) -> BrokerConfig {
        let mut raw = std::collections::BTreeMap::new();
        raw.insert("listeners".to_string(), listeners.to_string());
        if !advertised.is_empty() {
            raw.insert("advertised.listeners".to_string(), advertised.to_string());
        }
        BrokerConfig::from_map(raw).expect("valid config")
    }

    #[test]
    fn replication_address_rule() {
        let cases = [
            (
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                "",
                ("127.0.0.1", 10092, "127.0.0.1", None),
            ),
            (
                "CONTROLLER://127.0.0.1:9093,PLAINTEXT://0.0.0.0:9092",
                "PLAINTEXT://kafka1:9092",
                ("0.0.0.0", 10092, "kafka1", None),
            ),
            (
                "PLAINTEXT://127.0.0.1:9092,REPLICATION://127.0.0.1:7000",
                "",
                ("127.0.0.1", 7000, "127.0.0.1", Some(7000)),
            ),
            (
                "PLAINTEXT://127.0.0.1:65000",
                "",
                ("127.0.0.1", 0, "127.0.0.1", None),
            ),
        ];
        for (listeners, advertised, (h, p, ah, ap)) in cases {
            let got = replication_address(&config(listeners, advertised));
            assert_eq!(got, (h.to_string(), p, ah.to_string(), ap), "{listeners}");
        }
    }
}
