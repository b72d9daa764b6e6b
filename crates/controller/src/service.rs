//! The broker-facing gRPC service of a controller node, and broker liveness.
//!
//! Any controller node serves metadata (`FetchMetadata`, `QuorumStatus`);
//! only the active controller (the Raft leader) takes writes, registrations
//! and heartbeats, and the others answer `NOT_CONTROLLER` with the leader's
//! id. Heartbeats are not written to the log: the active controller keeps
//! them in memory and writes a `FenceBroker` record when a broker misses
//! `broker.session.timeout.ms`. A newly elected controller first gives every
//! broker a whole session to heartbeat, as Kafka does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraftwerk_metadata::ListenerEndpoint;
use kraftwerk_rpc::controller as pb;
use kraftwerk_rpc::controller::controller_server::Controller;
use kraftwerk_types::ErrorCode;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::commands::{CommandResult, MetadataCommand};
use crate::node::{ControllerError, ControllerNode};

/// Kafka's error codes as the gRPC status fields carry them.
pub const NOT_CONTROLLER: i32 = ErrorCode::NOT_CONTROLLER.0 as i32;
pub const STALE_BROKER_EPOCH: i32 = ErrorCode::STALE_BROKER_EPOCH.0 as i32;
pub const BROKER_ID_NOT_REGISTERED: i32 = ErrorCode::BROKER_ID_NOT_REGISTERED.0 as i32;
/// Longest a FetchMetadata long poll may wait.
const FETCH_METADATA_WAIT_MAX: Duration = Duration::from_secs(30);
/// How often the active controller looks for expired broker sessions.
const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Timeouts of broker liveness, with Kafka's names.
///
/// Rule: `broker.heartbeat.interval.ms` must be well below
/// `broker.session.timeout.ms` (Kafka: 2000 and 9000), so a broker misses
/// several heartbeats before it is fenced.
#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    pub broker_session_timeout_ms: u64,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_ms: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            broker_session_timeout_ms: 9000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
        }
    }
}

pub struct ControllerService {
    node: Arc<ControllerNode>,
    liveness: LivenessConfig,
    last_heartbeat: Mutex<HashMap<i32, Instant>>,
}

fn ok_status() -> Option<pb::ControllerStatus> {
    Some(pb::ControllerStatus {
        error_code: 0,
        message: String::new(),
        active_controller_id: None,
    })
}

fn error_status(
    code: i32,
    message: impl Into<String>,
    leader: Option<u64>,
) -> Option<pb::ControllerStatus> {
    Some(pb::ControllerStatus {
        error_code: code,
        message: message.into(),
        active_controller_id: leader,
    })
}

impl ControllerService {
    pub fn new(node: Arc<ControllerNode>, liveness: LivenessConfig) -> Arc<ControllerService> {
        Arc::new(ControllerService {
            node,
            liveness,
            last_heartbeat: Mutex::new(HashMap::new()),
        })
    }

    fn not_controller(&self) -> Option<pb::ControllerStatus> {
        error_status(
            NOT_CONTROLLER,
            "this node is not the active controller",
            self.node.leader_id(),
        )
    }

    async fn propose(
        &self,
        command: MetadataCommand,
    ) -> Result<CommandResult, Option<pb::ControllerStatus>> {
        match self.node.write(command).await {
            Ok(r) => Ok(r),
            Err(ControllerError::NotLeader { leader_id }) => Err(error_status(
                NOT_CONTROLLER,
                "this node is not the active controller",
                leader_id,
            )),
            Err(e) => Err(error_status(-1, e.to_string(), None)),
        }
    }

    /// Runs until `shutdown`: fences brokers whose session expired and, on a
    /// timer, moves leadership back to preferred replicas.
    pub async fn run_liveness(self: Arc<Self>, shutdown: CancellationToken) {
        let mut was_leader = false;
        let mut tick = tokio::time::interval(LIVENESS_CHECK_INTERVAL);
        let session = Duration::from_millis(self.liveness.broker_session_timeout_ms);
        let rebalance_every =
            Duration::from_millis(self.liveness.leader_imbalance_check_interval_ms.max(1000));
        let mut last_rebalance = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leader = self.node.is_leader();
            if leader && !was_leader {
                // A new active controller: every broker gets a full session.
                let now = Instant::now();
                let image = self.node.image().borrow().clone();
                let mut hb = self.last_heartbeat.lock();
                hb.clear();
                for id in image.brokers.keys() {
                    hb.insert(*id, now);
                }
                last_rebalance = now;
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            let image = self.node.image().borrow().clone();
            let expired: Vec<i32> = {
                let hb = self.last_heartbeat.lock();
                image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .filter(|b| {
                        hb.get(&b.node_id)
                            .map(|t| t.elapsed() > session)
                            .unwrap_or(true)
                    })
                    .map(|b| b.node_id)
                    .collect()
            };
            for broker_id in expired {
                tracing::warn!(broker_id, "broker missed its session timeout; fencing it");
                if let Err(e) = self
                    .node
                    .write(MetadataCommand::FenceBroker { broker_id })
                    .await
                {
                    tracing::warn!(broker_id, error = %e, "fencing failed");
                }
            }
            if self.liveness.auto_leader_rebalance_enable
                && last_rebalance.elapsed() >= rebalance_every
            {
                last_rebalance = Instant::now();
                if has_preferred_leader_imbalance(&image) {
                    tracing::info!("moving leadership back to preferred replicas");
                    if let Err(e) = self
                        .node
                        .write(MetadataCommand::ElectPreferredLeaders { partitions: None })
                        .await
                    {
                        tracing::warn!(error = %e, "preferred leader election failed");
                    }
                }
            }
        }
    }
}

/// True when some partition's preferred replica is live, in the ISR, and not leading.
pub fn has_preferred_leader_imbalance(image: &kraftwerk_metadata::MetadataImage) -> bool {
    image.topics.values().flat_map(|t| &t.partitions).any(|p| {
        p.replicas.first().is_some_and(|pref| {
            p.leader != *pref
                && p.isr.contains(pref)
                && image.brokers.get(pref).is_some_and(|b| !b.fenced)
                && !image.shutting_down.contains(pref)
        })
    })
}

/// The tonic face of a [`ControllerService`].
#[derive(Clone)]
pub struct ControllerGrpc(pub Arc<ControllerService>);

impl std::ops::Deref for ControllerGrpc {
    type Target = ControllerService;
    fn deref(&self) -> &ControllerService {
        &self.0
    }
}

#[tonic::async_trait]
impl Controller for ControllerGrpc {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        let r = request.into_inner();
        if !self.node.is_leader() {
            return Ok(Response::new(pb::RegisterBrokerResponse {
                status: self.not_controller(),
                broker_epoch: -1,
            }));
        }
        let mut listeners = Vec::with_capacity(r.listeners.len());
        for l in r.listeners {
            let port = u16::try_from(l.port)
                .map_err(|_| Status::invalid_argument("listener port out of range"))?;
            listeners.push(ListenerEndpoint {
                name: l.name,
                host: l.host,
                port,
            });
        }
        let Some(primary) = listeners.first().cloned() else {
            return Err(Status::invalid_argument(
                "a broker registers at least one listener",
            ));
        };
        let command = MetadataCommand::RegisterBroker {
            broker_id: r.broker_id,
            incarnation_id: r.incarnation_id,
            host: primary.host,
            port: primary.port,
            rack: r.rack,
            replication_endpoint: r.replication_endpoint,
            http_endpoint: r.http_endpoint,
            listeners,
        };
        let response = match self.propose(command).await {
            Ok(CommandResult::BrokerEpoch(epoch)) => {
                self.last_heartbeat
                    .lock()
                    .insert(r.broker_id, Instant::now());
                tracing::info!(
                    broker_id = r.broker_id,
                    broker_epoch = epoch,
                    "broker registered"
                );
                pb::RegisterBrokerResponse {
                    status: ok_status(),
                    broker_epoch: epoch,
                }
            }
            Ok(other) => pb::RegisterBrokerResponse {
                status: error_status(-1, format!("unexpected result {other:?}"), None),
                broker_epoch: -1,
            },
            Err(status) => pb::RegisterBrokerResponse {
                status,
                broker_epoch: -1,
            },
        };
        Ok(Response::new(response))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::BrokerHeartbeatResponse>, Status> {
        let r = request.into_inner();
        let refuse = |status| {
            Ok(Response::new(pb::BrokerHeartbeatResponse {
                status,
                fenced: true,
                shutdown_ready: false,
            }))
        };
        if !self.node.is_leader() {
            return refuse(self.not_controller());
        }
        let image = self.node.image().borrow().clone();
        match image.broker_epochs.get(&r.broker_id) {
            None => {
                return refuse(error_status(
                    BROKER_ID_NOT_REGISTERED,
                    "register first",
                    None,
                ))
            }
            Some(epoch) if *epoch != r.broker_epoch => {
                return refuse(error_status(
                    STALE_BROKER_EPOCH,
                    format!("broker epoch {} is not the current {epoch}", r.broker_epoch),
                    None,
                ))
            }
            Some(_) => {}
        }
        self.last_heartbeat
            .lock()
            .insert(r.broker_id, Instant::now());
        let fenced = image
            .brokers
            .get(&r.broker_id)
            .map(|b| b.fenced)
            .unwrap_or(true);
        let shutting_down = image.shutting_down.contains(&r.broker_id);
        if r.want_shutdown {
            if !shutting_down {
                if let Err(status) = self
                    .propose(MetadataCommand::ShutdownBroker {
                        broker_id: r.broker_id,
                    })
                    .await
                {
                    return refuse(status);
                }
            }
            let image = self.node.image().borrow().clone();
            let leads = image
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .any(|p| p.leader == r.broker_id);
            return Ok(Response::new(pb::BrokerHeartbeatResponse {
                status: ok_status(),
                fenced: true,
                shutdown_ready: !leads,
            }));
        }
        let mut now_fenced = fenced;
        if fenced && r.applied_version >= r.broker_epoch as u64 {
            match self
                .propose(MetadataCommand::UnfenceBroker {
                    broker_id: r.broker_id,
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        broker_id = r.broker_id,
                        "broker caught up with the metadata log; unfenced"
                    );
                    now_fenced = false;
                }
                Err(status) => return refuse(status),
            }
        }
        Ok(Response::new(pb::BrokerHeartbeatResponse {
            status: ok_status(),
            fenced: now_fenced,
            shutdown_ready: false,
        }))
    }

    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let command: MetadataCommand = serde_json::from_slice(&request.into_inner().command)
            .map_err(|e| Status::invalid_argument(format!("bad command: {e}")))?;
        if !self.node.is_leader() {
            return Ok(Response::new(pb::WriteResponse {
                status: self.not_controller(),
                result: Vec::new(),
                applied_version: 0,
            }));
        }
        let response = match self.propose(command).await {
            Ok(result) => pb::WriteResponse {
                status: ok_status(),
                result: serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?,
                applied_version: self.node.image().borrow().version,
            },
            Err(status) => pb::WriteResponse {
                status,
                result: Vec::new(),
                applied_version: 0,
            },
        };
        Ok(Response::new(response))
    }

    async fn fetch_metadata(
        &self,
        request: Request<pb::FetchMetadataRequest>,
    ) -> Result<Response<pb::FetchMetadataResponse>, Status> {
        let r = request.into_inner();
        if !self.node.is_leader() {
            return Ok(Response::new(pb::FetchMetadataResponse {
                version: 0,
                image: Vec::new(),
                active_controller_id: self.node.leader_id(),
                status: self.not_controller(),
                leader_epoch: Some(self.node.term()),
            }));
        }
        let mut watch = self.node.image();
        let wait = Duration::from_millis(r.max_wait_ms as u64).min(FETCH_METADATA_WAIT_MAX);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = watch.borrow_and_update().clone();
            if current.version > r.known_version || tokio::time::Instant::now() >= deadline {
                let image =
                    serde_json::to_vec(&*current).map_err(|e| Status::internal(e.to_string()))?;
                return Ok(Response::new(pb::FetchMetadataResponse {
                    version: current.version,
                    image,
                    active_controller_id: self.node.leader_id(),
                    status: ok_status(),
                    leader_epoch: Some(self.node.term()),
                }));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = watch.changed() => if changed.is_err() { return Err(Status::unavailable("controller is shutting down")); },
            }
        }
    }

    async fn quorum_status(
        &self,
        _request: Request<pb::QuorumStatusRequest>,
    ) -> Result<Response<pb::QuorumStatusResponse>, Status> {
        let s = self.node.quorum_status();
        Ok(Response::new(pb::QuorumStatusResponse {
            leader_id: s.leader_id,
            term: s.term,
            commit_index: s.commit_index,
            last_log_index: s.last_log_index,
            voters: s
                .voters
                .into_iter()
                .map(|(node_id, address, matched_index)| pb::VoterStatus {
                    node_id,
                    address,
                    matched_index,
                })
                .collect(),
            node_id: s.node_id,
            state: s.state.to_string(),
        }))
    }
}
