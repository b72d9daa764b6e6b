//! Transaction markers: writing them on the partitions this broker leads
//! (for its own transaction coordinator, or for another broker's over
//! gRPC, `Replication.WriteTxnMarkers`), and the transaction
//! coordinator's view of the broker ([`TxnBroker`]).
//!
//! A marker is a control batch appended as leader at the partition's
//! current leader epoch; it ends the producer's open transaction there
//! (moving the last stable offset) and, on a `__consumer_offsets`
//! partition, commits or drops the transaction's offsets. It counts as
//! written once committed (below the high watermark).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_coordinator::txn::{Marker, TransactionCoordinator, TxnBroker};
use kraftwerk_coordinator::LogFuture;
use kraftwerk_rpc::replication as pb;
use kraftwerk_rpc::replication::replication_client::ReplicationClient;
use kraftwerk_rpc::NodeTls;
use kraftwerk_types::ErrorCode;
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::group::OFFSETS_TOPIC;
use crate::BrokerState;

/// How long a marker may wait for the ISR.
const MARKER_COMMIT_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RPC_TIMEOUT: Duration = Duration::from_secs(40);

/// gRPC channels to other brokers' replication listeners, by endpoint.
pub struct PeerClients {
    channels: Mutex<HashMap<String, Channel>>,
    tls: Option<Arc<dyn NodeTls>>,
}

impl PeerClients {
    /// Clients that dial with `tls` when the replication listeners speak SSL.
    pub fn new(tls: Option<Arc<dyn NodeTls>>) -> PeerClients {
        PeerClients {
            channels: Mutex::new(HashMap::new()),
            tls,
        }
    }

    pub(crate) fn client(&self, endpoint: &str) -> Result<ReplicationClient<Channel>, ErrorCode> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(endpoint) {
            return Ok(ReplicationClient::new(c.clone()));
        }
        let channel = kraftwerk_rpc::endpoint(endpoint)
            .map_err(|_| ErrorCode::LEADER_NOT_AVAILABLE)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(RPC_TIMEOUT);
        let channel = kraftwerk_rpc::connect_lazy(channel, self.tls.as_ref());
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(ReplicationClient::new(channel))
    }

    pub(crate) fn forget(&self, endpoint: &str) {
        self.channels.lock().remove(endpoint);
    }
}

/// Writes `marker` on `topic`-`partition`, which this broker must lead,
/// and waits until it is committed.
pub async fn write_local(
    state: &BrokerState,
    marker: Marker,
    topic: &str,
    partition: i32,
) -> Result<(), ErrorCode> {
    let image = state.image.load();
    let p = crate::handlers::led_partition(state, &image, topic, partition, -1)?;
    let appended = p.append_marker(marker).map_err(|refused| {
        tracing::warn!(topic, partition, error = %refused.message, "transaction marker refused");
        refused.code
    })?;
    if topic == OFFSETS_TOPIC {
        state
            .groups
            .complete_txn(state, partition, marker.producer_id, marker.commit);
    }
    let deadline = tokio::time::Instant::now() + MARKER_COMMIT_WAIT;
    tokio::select! {
        r = p.wait_committed(appended.last_offset, appended.leader_epoch, deadline) => r,
        _ = state.shutdown.cancelled() => Err(ErrorCode::REQUEST_TIMED_OUT),
    }
}

/// Serves `Replication.WriteTxnMarkers`: every partition's marker, each
/// with its own outcome.
pub async fn serve(
    state: &BrokerState,
    request: pb::WriteTxnMarkersRequest,
) -> pb::WriteTxnMarkersResponse {
    let marker = Marker {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch as i16,
        coordinator_epoch: request.coordinator_epoch,
        commit: request.commit,
    };
    let mut results = Vec::with_capacity(request.partitions.len());
    for tp in request.partitions {
        let code = match write_local(state, marker, &tp.topic, tp.partition).await {
            Ok(()) => ErrorCode::NONE,
            Err(code) => code,
        };
        results.push(pb::MarkerResult {
            topic: tp.topic,
            partition: tp.partition,
            error_code: code.code() as i32,
        });
    }
    pb::WriteTxnMarkersResponse { results }
}

/// KIP-890 part 1, on the partition leader: before the first
/// transactional batch of a producer is appended to `topic`-`partition`,
/// the transactional id's coordinator (this broker, or another over
/// gRPC) must confirm the partition is in the producer's ongoing
/// transaction. Anything transient (no coordinator yet, loading, a state
/// change in flight, an unreachable broker) is NOT_LEADER_OR_FOLLOWER,
/// which every client retries; a refusal is INVALID_TXN_STATE or
/// INVALID_PRODUCER_EPOCH.
pub async fn verify_transaction(
    state: &BrokerState,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<(), ErrorCode> {
    use kraftwerk_coordinator::txn::TXN_TOPIC;
    use kraftwerk_coordinator::CoordinatorLog;
    let transient = |code: ErrorCode| match code {
        ErrorCode::INVALID_TXN_STATE | ErrorCode::INVALID_PRODUCER_EPOCH => code,
        _ => ErrorCode::NOT_LEADER_OR_FOLLOWER,
    };
    let Some(count) = state.partition_count(TXN_TOPIC) else {
        // No transaction state anywhere: no transaction can be open.
        return Err(ErrorCode::INVALID_TXN_STATE);
    };
    let p = kraftwerk_coordinator::group::partition_for(transactional_id, count);
    let image = state.image.load();
    let leader = image.partition(TXN_TOPIC, p).map_or(-1, |r| r.leader);
    if leader == state.config.node_id {
        return state
            .txns
            .verify(
                state,
                transactional_id,
                producer_id,
                epoch,
                topic,
                partition,
            )
            .map_err(transient);
    }
    let endpoint = image
        .brokers
        .get(&leader)
        .and_then(|b| b.replication_endpoint.clone())
        .ok_or(ErrorCode::NOT_LEADER_OR_FOLLOWER)?;
    let mut client = state.peer_clients.client(&endpoint).map_err(transient)?;
    let request = pb::VerifyTransactionRequest {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch: i32::from(epoch),
        topic: topic.to_string(),
        partition,
    };
    match client.verify_transaction(request).await {
        Ok(answer) => match ErrorCode(answer.into_inner().error_code as i16) {
            ErrorCode::NONE => Ok(()),
            code => Err(transient(code)),
        },
        Err(status) => {
            tracing::debug!(leader, %endpoint, %status, "transaction verification not answered");
            state.peer_clients.forget(&endpoint);
            Err(ErrorCode::NOT_LEADER_OR_FOLLOWER)
        }
    }
}

/// Whether a partition's marker failed for good: it cannot be written
/// any more and retrying would never end.
fn gone(code: ErrorCode) -> bool {
    // The producer moved on (a newer epoch wrote there) or a newer
    // coordinator took over: the marker is not needed.
    matches!(
        code,
        ErrorCode::INVALID_PRODUCER_EPOCH
            | ErrorCode::PRODUCER_FENCED
            | ErrorCode::TRANSACTION_COORDINATOR_FENCED
    )
}

impl BrokerState {
    /// Writes `marker` on every partition through its leader; returns the
    /// partitions still to do.
    async fn write_markers_everywhere(
        &self,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        let image = self.image.load();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut left = Vec::new();
        for (topic, partition) in partitions {
            match image.partition(&topic, partition) {
                // Deleted since: nothing to end there.
                None => {}
                Some(record) if record.leader < 0 => left.push((topic, partition)),
                Some(record) => by_leader
                    .entry(record.leader)
                    .or_default()
                    .push((topic, partition)),
            }
        }
        for (leader, parts) in by_leader {
            if leader == self.config.node_id {
                for (topic, partition) in parts {
                    match write_local(self, marker, &topic, partition).await {
                        Ok(()) => {}
                        Err(code) if gone(code) => {
                            tracing::info!(%topic, partition, code = code.code(), "marker not needed");
                        }
                        Err(code) => {
                            tracing::debug!(%topic, partition, code = code.code(), "marker not written yet");
                            left.push((topic, partition));
                        }
                    }
                }
                continue;
            }
            let endpoint = image
                .brokers
                .get(&leader)
                .and_then(|b| b.replication_endpoint.clone());
            let Some(endpoint) = endpoint else {
                left.extend(parts);
                continue;
            };
            let request = pb::WriteTxnMarkersRequest {
                producer_id: marker.producer_id,
                producer_epoch: marker.producer_epoch as i32,
                coordinator_epoch: marker.coordinator_epoch,
                commit: marker.commit,
                partitions: parts
                    .iter()
                    .map(|(topic, partition)| pb::MarkerPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .collect(),
            };
            let answer = match self.peer_clients.client(&endpoint) {
                Ok(mut client) => client.write_txn_markers(request).await,
                Err(_) => {
                    left.extend(parts);
                    continue;
                }
            };
            match answer {
                Ok(response) => {
                    for r in response.into_inner().results {
                        let code = ErrorCode(r.error_code as i16);
                        if code != ErrorCode::NONE && !gone(code) {
                            left.push((r.topic, r.partition));
                        }
                    }
                }
                Err(status) => {
                    tracing::debug!(leader, %endpoint, %status, "markers could not be sent");
                    self.peer_clients.forget(&endpoint);
                    left.extend(parts);
                }
            }
        }
        left
    }
}

impl TxnBroker for BrokerState {
    fn transactions(&self) -> &TransactionCoordinator {
        &self.txns
    }

    fn allocate_producer_id(&self) -> LogFuture<'_, Result<i64, ErrorCode>> {
        Box::pin(async move {
            self.control.allocate_producer_id().await.map_err(|e| {
                tracing::warn!(error = %e, "producer id allocation failed");
                ErrorCode::COORDINATOR_NOT_AVAILABLE
            })
        })
    }

    fn write_markers(
        &self,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> LogFuture<'_, Vec<(String, i32)>> {
        Box::pin(self.write_markers_everywhere(marker, partitions))
    }
}
