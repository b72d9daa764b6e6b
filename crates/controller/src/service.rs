//! The broker-facing gRPC service of a controller node, and broker liveness.
//!
//! Any controller node serves metadata (`FetchMetadata`, `QuorumStatus`);
//! only the active controller (the Raft leader) takes writes, registrations,
//! heartbeats and broker sessions, and the others answer `NOT_CONTROLLER`
//! with the leader's id. Heartbeats are not written to the log: the active
//! controller keeps them in memory and writes a `FenceBroker` record when a
//! broker misses `broker.session.timeout.ms`, or at once when the broker's
//! session stream ended and a probe finds nothing listening on its
//! replication endpoint (the rules are in [`crate::liveness`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraftwerk_metadata::{ListenerEndpoint, MetadataImage};
use kraftwerk_rpc::controller as pb;
use kraftwerk_rpc::controller::controller_server::Controller;
use kraftwerk_rpc::wire;
use kraftwerk_types::ErrorCode;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use crate::commands::{CommandResult, MetadataCommand};
use crate::liveness::{BrokerState, Liveness, ProbeOutcome};
use crate::node::{ControllerError, ControllerNode};

/// Kafka's error codes as the gRPC status fields carry them.
pub const NOT_CONTROLLER: i32 = ErrorCode::NOT_CONTROLLER.0 as i32;
pub const STALE_BROKER_EPOCH: i32 = ErrorCode::STALE_BROKER_EPOCH.0 as i32;
pub const BROKER_ID_NOT_REGISTERED: i32 = ErrorCode::BROKER_ID_NOT_REGISTERED.0 as i32;
/// Longest a FetchMetadata long poll may wait.
const FETCH_METADATA_WAIT_MAX: Duration = Duration::from_secs(30);
/// How often the active controller looks for expired broker sessions and
/// suspects due for a probe.
const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// A pause of the liveness task longer than this (the process was stopped
/// or starved) restarts every broker's session: the clock it did not watch
/// says nothing about the brokers.
const LIVENESS_STALL_MAX: Duration = Duration::from_secs(2);
/// How long a probe of a suspect broker's endpoint waits for the TCP
/// handshake; no answer proves nothing (a cut-off host).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Events queued on one broker session stream: the answer and the reason it ends.
const SESSION_EVENTS_MAX: usize = 2;

/// Timeouts of broker liveness, with Kafka's names.
///
/// Rule: `broker.heartbeat.interval.ms` must be well below
/// `broker.session.timeout.ms` (Kafka: 2000 and 9000), so a broker misses
/// several heartbeats before it is fenced. A broker whose process died is
/// fenced sooner, when its session stream ends ([`crate::liveness`]).
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
    config: LivenessConfig,
    liveness: Mutex<Liveness>,
    /// Wakes the liveness task when a broker session ends.
    wake: Notify,
    /// The tasks that hold broker sessions open; owned by the process.
    tasks: TaskTracker,
    shutdown: CancellationToken,
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
    /// The answer to a FetchMetadata that found `current`: the commands
    /// since the caller's version when it takes deltas and this node still
    /// keeps them all, else the whole image.
    fn metadata_answer(
        &self,
        request: &pb::FetchMetadataRequest,
        current: &MetadataImage,
    ) -> pb::FetchMetadataResponse {
        let mut answer = pb::FetchMetadataResponse {
            version: current.version,
            image: None,
            active_controller_id: self.node.leader_id(),
            status: ok_status(),
            leader_epoch: Some(self.node.term()),
            delta_base: None,
            deltas: Vec::new(),
        };
        let since = request.known_version;
        let deltas = (request.accept_deltas && since > 0 && since <= current.version)
            .then(|| self.node.commands_between(since, current.version))
            .flatten();
        match deltas {
            Some(commands) => {
                answer.delta_base = Some(since);
                answer.deltas = commands
                    .into_iter()
                    .map(|(index, command)| pb::MetadataDelta {
                        index,
                        command: Some(wire::command_to_wire(&command)),
                    })
                    .collect();
            }
            None => answer.image = Some(wire::image_to_wire(current)),
        }
        answer
    }
}

impl ControllerService {
    /// A service of `node`; the tasks holding broker sessions run on
    /// `tasks` and end when `shutdown` fires.
    pub fn new(
        node: Arc<ControllerNode>,
        config: LivenessConfig,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<ControllerService> {
        Arc::new(ControllerService {
            node,
            config,
            liveness: Mutex::new(Liveness::new(Duration::from_millis(
                config.broker_session_timeout_ms,
            ))),
            wake: Notify::new(),
            tasks,
            shutdown,
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

    /// Runs until `shutdown`: fences brokers whose session expired or whose
    /// session stream ended with nothing listening on their endpoint, and,
    /// on a timer, moves leadership back to preferred replicas.
    pub async fn run_liveness(self: Arc<Self>, shutdown: CancellationToken) {
        let mut was_leader = false;
        let mut tick = tokio::time::interval(LIVENESS_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rebalance_every =
            Duration::from_millis(self.config.leader_imbalance_check_interval_ms.max(1000));
        let mut last_rebalance = Instant::now();
        // At most one probe per suspect broker is in flight.
        let mut probes: JoinSet<(i32, i64, String, ProbeOutcome)> = JoinSet::new();
        // A new controller probes at once, not at the next tick.
        let mut leadership = self.node.server_metrics();
        let mut last_pass = Instant::now();
        loop {
            // Suspects wait while this node does not lead.
            let next_probe = if was_leader {
                self.liveness.lock().next_probe_due()
            } else {
                None
            };
            let probe_due = async {
                match next_probe {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let finished = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    probes.shutdown().await;
                    return;
                }
                Some(joined) = probes.join_next(), if !probes.is_empty() => joined.ok(),
                _ = self.wake.notified() => None,
                Ok(()) = leadership.changed() => None,
                _ = probe_due => None,
                _ = tick.tick() => None,
            };
            let leader = self.node.is_leader();
            let now = Instant::now();
            let image = self.node.image().borrow().clone();
            let brokers = broker_states(&image);
            let waited = now.saturating_duration_since(last_pass);
            last_pass = now;
            if leader && !was_leader {
                self.liveness
                    .lock()
                    .became_leader(now, &brokers, self.node.leader_silence());
                last_rebalance = now;
            } else if leader && waited > LIVENESS_STALL_MAX {
                tracing::warn!(
                    waited_ms = waited.as_millis() as u64,
                    "the broker liveness task could not run for a while; every broker gets a new session"
                );
                self.liveness.lock().restart_sessions(now);
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            if let Some((broker_id, broker_epoch, addr, outcome)) = finished {
                let fence =
                    self.liveness
                        .lock()
                        .probe_finished(broker_id, broker_epoch, outcome, now);
                // Still the registration that was probed, still unfenced.
                let current = brokers.iter().any(|b| {
                    b.broker_id == broker_id && b.broker_epoch == broker_epoch && !b.fenced
                });
                if fence && current {
                    tracing::warn!(
                        broker_id,
                        endpoint = %addr,
                        "the broker's session ended and nothing listens on its endpoint any more; fencing it"
                    );
                    self.fence(broker_id).await;
                }
            }
            let expired = self.liveness.lock().expired(now, &brokers);
            for broker_id in expired {
                tracing::warn!(broker_id, "broker missed its session timeout; fencing it");
                self.fence(broker_id).await;
            }
            let due = self.liveness.lock().due_probes(now, &brokers);
            for (broker_id, broker_epoch) in due {
                let Some(addr) = probe_address(&image, broker_id) else {
                    // Nothing to probe: only the session timeout can tell.
                    self.liveness.lock().probe_finished(
                        broker_id,
                        broker_epoch,
                        ProbeOutcome::Unknown,
                        now,
                    );
                    continue;
                };
                tracing::debug!(broker_id, endpoint = %addr, "broker without a session; probing its endpoint");
                probes.spawn(async move {
                    let outcome = probe(&addr).await;
                    (broker_id, broker_epoch, addr, outcome)
                });
            }
            if self.config.auto_leader_rebalance_enable
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
            // Writes above may wait on the quorum; that is no stall.
            last_pass = Instant::now();
        }
    }

    async fn fence(&self, broker_id: i32) {
        if let Err(e) = self
            .node
            .write(MetadataCommand::FenceBroker { broker_id })
            .await
        {
            tracing::warn!(broker_id, error = %e, "fencing failed");
        }
    }

    /// The answer to a session request: ok when this node leads and the
    /// epoch is the broker's current registration.
    fn session_status(&self, r: &pb::BrokerSessionRequest) -> Option<pb::ControllerStatus> {
        if !self.node.is_leader() {
            return self.not_controller();
        }
        let image = self.node.image().borrow().clone();
        match image.broker_epochs.get(&r.broker_id) {
            None => error_status(BROKER_ID_NOT_REGISTERED, "register first", None),
            Some(epoch) if *epoch != r.broker_epoch => error_status(
                STALE_BROKER_EPOCH,
                format!("broker epoch {} is not the current {epoch}", r.broker_epoch),
                None,
            ),
            Some(_) => ok_status(),
        }
    }

    /// Keeps an accepted session open until the broker goes away (the
    /// stream's receiver is dropped), this node stops leading, the broker
    /// registers again, or the controller shuts down; then tells the
    /// liveness task.
    async fn hold_session(
        self: Arc<Self>,
        broker_id: i32,
        broker_epoch: i64,
        events: mpsc::Sender<Result<pb::BrokerSessionEvent, Status>>,
    ) {
        let mut leadership = self.node.server_metrics();
        let mut image = self.node.image();
        let ending = loop {
            leadership.borrow_and_update();
            if !self.node.is_leader() {
                break self.not_controller();
            }
            let current = image
                .borrow_and_update()
                .broker_epochs
                .get(&broker_id)
                .copied();
            if current != Some(broker_epoch) {
                break error_status(STALE_BROKER_EPOCH, "the broker registered again", None);
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break None,
                _ = events.closed() => {
                    tracing::info!(broker_id, broker_epoch, "broker session ended");
                    break None;
                }
                changed = leadership.changed() => if changed.is_err() { break None },
                changed = image.changed() => if changed.is_err() { break None },
            }
        };
        if ending.is_some() {
            let _ = events.try_send(Ok(pb::BrokerSessionEvent { status: ending }));
        }
        drop(events);
        self.liveness
            .lock()
            .session_closed(broker_id, broker_epoch, Instant::now());
        self.wake.notify_one();
    }
}

/// Every registered broker: id, epoch, fenced.
fn broker_states(image: &MetadataImage) -> Vec<BrokerState> {
    image
        .brokers
        .values()
        .filter_map(|b| {
            Some(BrokerState {
                broker_id: b.node_id,
                broker_epoch: *image.broker_epochs.get(&b.node_id)?,
                fenced: b.fenced,
            })
        })
        .collect()
}

/// Where to probe a broker: its replication endpoint, which every other
/// broker reaches, else its first Kafka listener.
fn probe_address(image: &MetadataImage, broker_id: i32) -> Option<String> {
    let b = image.brokers.get(&broker_id)?;
    match &b.replication_endpoint {
        Some(e) if !e.is_empty() => Some(e.clone()),
        _ if !b.host.is_empty() && b.port != 0 => Some(format!("{}:{}", b.host, b.port)),
        _ => None,
    }
}

/// Opens (and at once closes) a TCP connection to `addr`.
async fn probe(addr: &str) -> ProbeOutcome {
    use std::io::ErrorKind;
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => ProbeOutcome::Listening,
        Ok(Err(e))
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            ) =>
        {
            ProbeOutcome::Gone
        }
        Ok(Err(_)) | Err(_) => ProbeOutcome::Unknown,
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
                self.liveness.lock().heartbeat(r.broker_id, Instant::now());
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
        self.liveness.lock().heartbeat(r.broker_id, Instant::now());
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

    type BrokerSessionStream =
        Pin<Box<dyn Stream<Item = Result<pb::BrokerSessionEvent, Status>> + Send + 'static>>;

    async fn broker_session(
        &self,
        request: Request<pb::BrokerSessionRequest>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        let r = request.into_inner();
        let (events, stream) = mpsc::channel(SESSION_EVENTS_MAX);
        let mut status = self.session_status(&r);
        let mut accepted = status.as_ref().is_some_and(|s| s.error_code == 0);
        if accepted
            && !self
                .liveness
                .lock()
                .session_opened(r.broker_id, r.broker_epoch)
        {
            accepted = false;
            status = error_status(-1, "this broker holds too many sessions", None);
        }
        // The channel is new and holds two events: the first always fits.
        let _ = events.try_send(Ok(pb::BrokerSessionEvent { status }));
        if accepted {
            tracing::debug!(
                broker_id = r.broker_id,
                broker_epoch = r.broker_epoch,
                "broker session opened"
            );
            self.tasks.spawn(
                self.0
                    .clone()
                    .hold_session(r.broker_id, r.broker_epoch, events),
            );
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }

    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let command: MetadataCommand = request
            .into_inner()
            .command
            .ok_or_else(|| Status::invalid_argument("a write without a command"))
            .and_then(|c| {
                wire::command_from_wire(c).map_err(|e| Status::invalid_argument(e.to_string()))
            })?;
        if !self.node.is_leader() {
            return Ok(Response::new(pb::WriteResponse {
                status: self.not_controller(),
                result: None,
                applied_version: 0,
            }));
        }
        let response = match self.propose(command).await {
            Ok(result) => pb::WriteResponse {
                status: ok_status(),
                result: Some(wire::result_to_wire(&result)),
                applied_version: self.node.image().borrow().version,
            },
            Err(status) => pb::WriteResponse {
                status,
                result: None,
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
                image: None,
                active_controller_id: self.node.leader_id(),
                status: self.not_controller(),
                leader_epoch: Some(self.node.term()),
                delta_base: None,
                deltas: Vec::new(),
            }));
        }
        let mut watch = self.node.image();
        let wait = Duration::from_millis(r.max_wait_ms as u64).min(FETCH_METADATA_WAIT_MAX);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = watch.borrow_and_update().clone();
            if current.version > r.known_version || tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(self.metadata_answer(&r, &current)));
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
