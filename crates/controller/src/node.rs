//! One controller node: the Raft of the metadata quorum with its sled store,
//! its state machine and its network, behind a small API for the process
//! that hosts it (propose a command, follow the committed image, report the
//! quorum).
//!
//! Timeouts, and the rule that relates them (openraft checks it at start):
//! `heartbeat_interval_ms < election_timeout_min_ms < election_timeout_max_ms`.
//! openraft gives an established leader a lease of `election_timeout_max_ms`:
//! a follower refuses votes until the lease ran out since it last heard from
//! the leader, and stands for election itself only after the lease plus its
//! own election timeout, a random but fixed time in
//! `[election_timeout_min_ms, election_timeout_max_ms)`. So a dead leader is
//! replaced `election_timeout_max_ms` + 1–2 × `election_timeout_min_ms`
//! after its last heartbeat, plus one round of votes (defaults 300/600/200:
//! 0.9–1.2 s); no voter starts an election after less silence than
//! [`ControllerConfig::election_silence_min_ms`]. A candidate whose term
//! ends without a leader stands again after a wait drawn for each term in
//! `[election_timeout_min_ms / 2, election_timeout_min_ms)`
//! ([`split_vote`]), so a split vote costs 150–300 ms by default. Each append-entries call must
//! finish within `heartbeat_interval_ms`; a snapshot chunk within that
//! shortest silence, so a follower receiving one does not stand for
//! election meanwhile.
//!
//! The defaults are shorter than KRaft's (election timeout 1 s, fetch
//! timeout 2 s) so that a dead active controller is replaced in about a
//! second; they equal etcd's order of magnitude (heartbeat 100 ms, election
//! 1 s) and keep 4–6 heartbeats inside the shortest silence.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_metadata::MetadataImage;
use kraftwerk_rpc::raft::raft_server::RaftServer;
use kraftwerk_rpc::NodeTls;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::{CommandResult, MetadataCommand};
use crate::raft::network::NetworkTimeouts;
use crate::raft::recent::RecentCommands;
use crate::raft::split_vote;
use crate::raft::{
    open_db, LeaderContact, LogStore, MetadataRaft, NetworkFactory, RaftService, StateMachineStore,
};

/// Snapshot chunks stay far below the gRPC message limit even as JSON
/// (bytes are encoded as numbers, up to four characters each).
const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 256 * 1024;

/// How one controller node runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: u64,
    /// Every voter of the quorum, this node included: id to `host:port` of
    /// its controller gRPC listener.
    pub voters: BTreeMap<u64, String>,
    /// The sled database lives in `<data_dir>/raft`.
    pub data_dir: PathBuf,
    /// The cluster id to set when the quorum first forms; a random one when `None`.
    pub cluster_id: Option<String>,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// A snapshot is built after this many log entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries already in a snapshot that are kept for followers that lag a
    /// little; a follower further behind receives the snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// TLS on the controller listener (its protocol SSL): what the gRPC
    /// server presents and whom it accepts, and what this node presents
    /// and trusts when it dials the other voters.
    pub tls: Option<Arc<dyn NodeTls>>,
}

impl ControllerConfig {
    /// A configuration with the default timeouts and snapshot policy.
    pub fn new(node_id: u64, voters: BTreeMap<u64, String>, data_dir: PathBuf) -> Self {
        ControllerConfig {
            node_id,
            voters,
            data_dir,
            cluster_id: None,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            heartbeat_interval_ms: 200,
            snapshot_logs_since_last: 1_000,
            max_in_snapshot_log_to_keep: 1_000,
            tls: None,
        }
    }

    /// The least time a voter hears nothing from an established leader
    /// before it stands for election: the leader lease
    /// (`election_timeout_max_ms`) plus the shortest election timeout.
    pub fn election_silence_min_ms(&self) -> u64 {
        self.election_timeout_max_ms
            .saturating_add(self.election_timeout_min_ms)
    }

    fn raft_config(&self) -> Result<openraft::Config, ControllerError> {
        let mut c = openraft::Config {
            cluster_name: "kraftwerk-controller".to_string(),
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            heartbeat_interval: self.heartbeat_interval_ms,
            ..Default::default()
        };
        c.install_snapshot_timeout = self.election_silence_min_ms();
        c.snapshot_policy = SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last);
        c.max_in_snapshot_log_to_keep = self.max_in_snapshot_log_to_keep;
        c.snapshot_max_chunk_size = SNAPSHOT_CHUNK_BYTES_MAX;
        // A follower further behind than the logs kept needs the snapshot anyway.
        c.replication_lag_threshold = self.snapshot_logs_since_last.max(1).saturating_mul(2);
        c.validate()
            .map_err(|e| ControllerError::Config(e.to_string()))
    }
}

/// What the caller should do about a failed controller call.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Send the request to the leader, if one is known.
    #[error("this controller is not the leader (leader: {leader_id:?})")]
    NotLeader { leader_id: Option<u64> },
    /// The local disk failed; the node cannot go on.
    #[error("controller storage failed: {0}")]
    Storage(String),
    /// Raft stopped or refused in a way not covered above.
    #[error("controller Raft failed: {0}")]
    Raft(String),
    #[error("invalid controller configuration: {0}")]
    Config(String),
    #[error("controller transport failed: {0}")]
    Transport(String),
    /// Nothing happened in time; retry later.
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the controller is shut down")]
    ShutDown,
}

/// The quorum as one node sees it (Kafka's DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// The last log index applied to this node's image.
    pub commit_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// Each voter: id, address, and the last log index it holds as the
    /// leader knows it (`None` on followers or before the first reply).
    pub voters: Vec<(u64, String, Option<u64>)>,
    /// This node's Raft state, named as KRaft names it ([`kraft_state_name`]).
    pub state: &'static str,
}

/// KRaft's name (`current-state` of `kafka.server:type=raft-metrics`) of an
/// openraft state. openraft's learner is what KRaft calls an observer; a
/// node that is stopping is reported as `shutdown` (KRaft has no such state).
pub fn kraft_state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Follower => "follower",
        ServerState::Learner => "observer",
        ServerState::Shutdown => "shutdown",
    }
}

/// A running controller node.
pub struct ControllerNode {
    node_id: u64,
    election_silence_min: Duration,
    /// The configured voters and their addresses.
    voters: BTreeMap<u64, String>,
    leader_contact: LeaderContact,
    raft: MetadataRaft,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    recent: Arc<RecentCommands>,
    cancel: CancellationToken,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    shut_down: AtomicBool,
}

impl ControllerNode {
    /// Opens the store, starts Raft and, on a first start, initializes the
    /// quorum with the configured voters.
    ///
    /// Every voter whose store is empty initializes with the same membership,
    /// so the quorum forms as soon as a majority is up whichever nodes those
    /// are; openraft accepts the same initial membership on several nodes. A
    /// node that already has a log or a vote refuses (`NotAllowed`), which
    /// is expected on every start after the first.
    pub async fn start(config: ControllerConfig) -> Result<ControllerNode, ControllerError> {
        if !config.voters.contains_key(&config.node_id) {
            return Err(ControllerError::Config(format!(
                "node {} is not among the voters {:?}",
                config.node_id,
                config.voters.keys().collect::<Vec<_>>()
            )));
        }
        let raft_config = Arc::new(config.raft_config()?);
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(|e| {
                ControllerError::Storage(format!("creating {}: {e}", config.data_dir.display()))
            })?;
        let db = open_db(&config.data_dir)
            .await
            .map_err(|e| ControllerError::Storage(e.to_string()))?;
        let log_store = LogStore::open(&db).map_err(|e| ControllerError::Storage(e.to_string()))?;
        let (image_tx, image_rx) = watch::channel(Arc::new(MetadataImage::default()));
        let state_machine = StateMachineStore::open(&db, image_tx)
            .map_err(|e| ControllerError::Storage(e.to_string()))?;
        let recent = state_machine.recent();
        drop(db);

        let network = NetworkFactory::new(NetworkTimeouts::default(), config.tls.clone());
        let raft = MetadataRaft::new(
            config.node_id,
            raft_config,
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    node_id = config.node_id,
                    "initialized the controller quorum"
                ),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::info!(
                        node_id = config.node_id,
                        "the controller quorum is already initialized: {e}"
                    )
                }
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(ControllerError::Raft(e.to_string()));
                }
            }
        }

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let cluster_id = config.cluster_id.clone().unwrap_or_else(random_cluster_id);
        tasks.spawn(set_cluster_id_once(
            raft.clone(),
            config.node_id,
            image_rx.clone(),
            cluster_id,
            Duration::from_millis(config.heartbeat_interval_ms),
            cancel.clone(),
        ));

        let (low, high) = split_vote::restart_wait_range_ms(config.election_timeout_min_ms);
        tasks.spawn(split_vote::restart_split_elections(
            raft.clone(),
            move || rand::random_range(low..high),
            cancel.clone(),
        ));

        Ok(ControllerNode {
            node_id: config.node_id,
            election_silence_min: Duration::from_millis(config.election_silence_min_ms()),
            voters: config.voters.clone(),
            leader_contact: LeaderContact::default(),
            raft,
            image_rx,
            recent,
            cancel,
            tasks: tokio::sync::Mutex::new(tasks),
            shut_down: AtomicBool::new(false),
        })
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The Raft service to mount on this node's controller gRPC server.
    pub fn raft_service(&self) -> RaftServer<RaftService> {
        RaftService::new(self.raft.clone(), self.leader_contact.clone()).into_server()
    }

    /// Proposes a command; the result once it is committed and applied here.
    pub async fn write(&self, command: MetadataCommand) -> Result<CommandResult, ControllerError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(ControllerError::ShutDown);
        }
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControllerError::NotLeader {
                    leader_id: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(ControllerError::Raft(e.to_string())),
            Err(RaftError::Fatal(openraft::error::Fatal::Stopped)) => {
                Err(ControllerError::ShutDown)
            }
            Err(RaftError::Fatal(e)) => Err(ControllerError::Raft(e.to_string())),
        }
    }

    /// Whether this node is the leader as far as it knows (a deposed leader
    /// may not know yet; writes through it then fail).
    pub fn is_leader(&self) -> bool {
        // The server metrics, which openraft publishes before the others, so
        // a task woken by a change of them (`server_metrics`) reads the new state.
        let m = self.raft.server_metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Changes of this node's Raft state, vote and known leader (not of its
    /// log), to wait for a change of leadership.
    pub(crate) fn server_metrics(
        &self,
    ) -> watch::Receiver<openraft::metrics::RaftServerMetrics<u64, BasicNode>> {
        self.raft.server_metrics()
    }

    /// How long before now this node last heard from a leader: at least
    /// [`ControllerConfig::election_silence_min_ms`] once it won an election
    /// (a voter stands only after that much silence), and that floor when
    /// it never heard from one (a fresh start).
    pub fn leader_silence(&self) -> Duration {
        let heard = *self.leader_contact.lock();
        heard.map_or(self.election_silence_min, |t| {
            t.elapsed().max(self.election_silence_min)
        })
    }

    pub fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// This node's current Raft term (KRaft's leader epoch).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Waits until some node is known to lead.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ControllerError> {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(leader) = metrics.borrow_and_update().current_leader {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(ControllerError::ShutDown);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            ControllerError::Timeout(format!("no controller leader within {timeout:?}"))
        })?
    }

    /// The commands applied with an index in `(since, until]`, when this
    /// node still keeps every one of them (see [`RecentCommands`]).
    pub fn commands_between(
        &self,
        since: u64,
        until: u64,
    ) -> Option<Vec<(u64, Arc<MetadataCommand>)>> {
        self.recent.between(since, until)
    }

    /// The committed images, in log order, starting with the current one.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_rx.clone()
    }

    pub fn quorum_status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters = membership
            .voter_ids()
            .map(|id| {
                // The configured address first: the membership keeps the
                // one of the first start (a single node's controller port
                // is ephemeral).
                let addr = self
                    .voters
                    .get(&id)
                    .cloned()
                    .or_else(|| membership.get_node(&id).map(|n| n.addr.clone()))
                    .unwrap_or_default();
                let matched = match &m.replication {
                    Some(replication) if id == self.node_id => m
                        .last_log_index
                        .or(replication.get(&id).and_then(|l| l.map(|l| l.index))),
                    Some(replication) => replication.get(&id).and_then(|l| l.map(|l| l.index)),
                    None => None,
                };
                (id, addr, matched)
            })
            .collect();
        QuorumStatus {
            node_id: self.node_id,
            leader_id: m.current_leader,
            term: m.current_term,
            commit_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            voters,
            state: kraft_state_name(m.state),
        }
    }

    /// Builds a snapshot now (it is also built every `snapshot_logs_since_last` entries).
    pub async fn trigger_snapshot(&self) -> Result<(), ControllerError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))
    }

    /// The openraft handle, for diagnostics and tests.
    pub fn raft(&self) -> &MetadataRaft {
        &self.raft
    }

    /// Stops the node's tasks and Raft. Idempotent; the store is closed once
    /// the node is dropped.
    pub async fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cancel.cancel();
        {
            let mut tasks = self.tasks.lock().await;
            while tasks.join_next().await.is_some() {}
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(
                node_id = self.node_id,
                "controller Raft did not shut down cleanly: {e}"
            );
        }
    }
}

/// Serves only the Raft service on `listener` until `shutdown` completes;
/// for tests and for processes that host no other controller service.
pub async fn serve_raft_only(
    service: RaftServer<RaftService>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ControllerError> {
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(kraftwerk_rpc::incoming(listener, None), shutdown)
        .await
        .map_err(|e| ControllerError::Transport(e.to_string()))
}

/// Proposes `InitCluster` whenever this node leads and the image has no
/// cluster id yet; ends once a committed image carries one. Two leaders in
/// a row may both propose it; the first committed one wins.
async fn set_cluster_id_once(
    raft: MetadataRaft,
    node_id: u64,
    mut image_rx: watch::Receiver<Arc<MetadataImage>>,
    cluster_id: String,
    retry_after: Duration,
    cancel: CancellationToken,
) {
    let mut metrics = raft.metrics();
    loop {
        if !image_rx.borrow_and_update().cluster_id.is_empty() {
            return;
        }
        let leading = {
            let m = metrics.borrow_and_update();
            m.state == ServerState::Leader && m.current_leader == Some(node_id)
        };
        if leading {
            let command = MetadataCommand::InitCluster {
                cluster_id: cluster_id.clone(),
            };
            match raft.client_write(command).await {
                Ok(_) => tracing::info!(node_id, "proposed cluster id {cluster_id}"),
                Err(e) => {
                    tracing::info!(node_id, "proposing the cluster id failed, retrying: {e}");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(retry_after) => {}
                    }
                }
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            changed = image_rx.changed() => if changed.is_err() { return },
        }
    }
}

/// A random cluster id as Kafka makes them: 16 random bytes in URL-safe
/// base64 without padding, 22 characters.
pub fn random_cluster_id() -> String {
    base64_url_no_pad(uuid::Uuid::new_v4().as_bytes())
}

fn base64_url_no_pad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{id}"
        );
    }

    #[test]
    fn raft_states_have_kraft_names() {
        assert_eq!(kraft_state_name(ServerState::Leader), "leader");
        assert_eq!(kraft_state_name(ServerState::Learner), "observer");
        assert_eq!(kraft_state_name(ServerState::Follower), "follower");
    }

    #[test]
    fn base64_matches_known_values() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"\xfb\xff", "-_8"),
        ] {
            assert_eq!(base64_url_no_pad(input), expected);
        }
    }
}
