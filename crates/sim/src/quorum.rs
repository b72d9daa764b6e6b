//! The controller quorum in a seeded simulation.
//!
//! Real openraft `Raft`s with the controller's type configuration
//! ([`kraftwerk_controller::raft::TypeConfig`]) and the controller's Raft
//! settings run in one tokio current-thread runtime whose clock is paused:
//! time moves only when every task waits, straight to the next timer, so a
//! run is a pure function of its seed. What differs from a controller
//! process:
//!
//! - **Storage** is in memory ([`SimLogStore`], [`SimStateMachine`]), with the
//!   durability of the sled stores: appends, truncations, purges, the vote
//!   and snapshots are durable once openraft is told they are done; the
//!   committed log id is written without a flush, so a crash may lose it.
//!   The state machine applies entries with the controller's own
//!   [`commands::apply`]. openraft's conformance suite runs against these
//!   stores (`tests/quorum.rs`).
//! - **The network** ([`SimNetwork`]) hands openraft's messages to the target
//!   `Raft` after a seeded delay, or loses them (the call then fails with a
//!   timeout, as a gRPC deadline does), or refuses them when a partition
//!   cuts the link or the target is down. It never reports `Unreachable`:
//!   openraft's back-off after it waits on an unbiased `tokio::select!`,
//!   whose random choice would break determinism.
//! - **Election timeouts** are constant per node incarnation
//!   (`election_timeout_max` = `election_timeout_min` + 1, the minimum drawn
//!   from the seed in 300–600 ms): openraft draws them from `thread_rng`.
//!   A candidate stands again after a wait the seed draws for each term,
//!   as a controller node does ([`split_vote`]): openraft checks its timeout
//!   only on a tick, and nodes whose ticks and timeouts line up would
//!   otherwise split the vote in every term.
//!
//! Faults: delays (mostly a few ms, sometimes hundreds), message loss (up to
//! 20 %), partitions (one node cut off, a minority/majority split, one-way
//! links), crashes (the `Raft` is shut down; its stores keep what was
//! durable) and restarts. Clients propose real `MetadataCommand`s to random
//! nodes throughout.
//!
//! Invariants, checked after every message delivered and every fault:
//! - *log matching*: two logs holding an entry with the same log id hold
//!   the same entries before it; one log id never names two payloads; logs
//!   have no holes;
//! - *leader completeness*: a leader holds every acknowledged write
//!   committed in an older term;
//! - *committed metadata never rolled back*: every node applies the same
//!   entry, and reaches the same image, at each log index; a state machine
//!   never goes back (also not through a snapshot); producer id blocks
//!   handed out never overlap;
//! - *one leader per term*: over the whole run, no two nodes lead in one
//!   term (openraft's `single-term-leader`, standard Raft; a node leads when
//!   it holds a committed vote for itself, also one it kept through a crash).
//!
//! After the faults the network heals and every node restarts; the run then
//! requires a leader that commits a write, and every node at the same image
//! holding every acknowledged write.

// openraft's trait signatures fix the error type.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_controller::commands::{self, CommandResult, MetadataCommand};
use kraftwerk_controller::raft::split_vote;
use kraftwerk_controller::raft::{
    Entry, LogId, MetadataRaft, NodeId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig, Vote,
};
use kraftwerk_metadata::MetadataImage;
use kraftwerk_types::TopicId;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotPolicy, StorageIOError,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::harness::{Fnv, Rng, RunFailure, RunSummary, Trace};

/// How long faults are injected, in simulated milliseconds.
const FAULT_PHASE_MS: u64 = 20_000;
/// After healing, the time a leader has to commit a write and every node
/// to reach the same image.
const HEAL_PHASE_MAX_MS: u64 = 30_000;
/// Client writes in flight at once.
const WRITES_IN_FLIGHT_MAX: usize = 6;
/// A client gives up on a write after this long (the entry may still commit).
const WRITE_TIMEOUT_MS: u64 = 5_000;

// The controller's Raft timings (`ControllerConfig::new`), with a constant
// election timeout (see the module notes).
const HEARTBEAT_INTERVAL_MS: u64 = 200;
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;

/// A log id as a plain key: (term, index).
type LogKey = (u64, u64);

/// A node's durable Raft state as the checks see it: its log (index to log
/// id), its purge point and its vote.
type NodeLog = (NodeId, BTreeMap<u64, LogKey>, Option<u64>, Option<Vote>);

fn key(log_id: &LogId) -> LogKey {
    (log_id.leader_id.term, log_id.index)
}

fn any_error(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e)
}

// ---------------------------------------------------------------------------
// Storage: what survives a crash, per node.

/// What a node's disk holds.
#[derive(Debug, Default)]
pub struct Durable {
    vote: Option<Vote>,
    /// As openraft last saved it (not flushed by itself).
    committed: Option<LogId>,
    /// The committed id as of the last flush; what a crash keeps at least.
    committed_flushed: Option<LogId>,
    last_purged: Option<LogId>,
    log: BTreeMap<u64, Entry>,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

impl Durable {
    /// A flush of the whole store (sled flushes every tree at once).
    fn flushed(&mut self) {
        self.committed_flushed = self.committed;
    }
}

/// What the stores report to the invariant checks as they happen.
#[derive(Debug, Default)]
struct Observations {
    /// Every log id ever appended anywhere, with its payload's hash.
    payloads: BTreeMap<LogKey, u64>,
    /// Per log index, the entry applied there and the image after it.
    applied: BTreeMap<u64, (LogKey, u64)>,
    violations: Vec<String>,
    applies: u64,
    snapshots_built: u64,
    snapshots_installed: u64,
}

impl Observations {
    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn appended(&mut self, node: NodeId, entry: &Entry) {
        let hash = payload_hash(entry);
        let k = key(&entry.log_id);
        match self.payloads.get(&k) {
            Some(h) if *h != hash => self.violation(format!(
                "node {node} appended log id {} with a payload other than the one first appended under it",
                entry.log_id
            )),
            Some(_) => {}
            None => {
                self.payloads.insert(k, hash);
            }
        }
    }

    /// Node `node` reached `image` by applying `log_id` (or by installing
    /// or loading a snapshot that ends at it).
    fn reached(&mut self, node: NodeId, log_id: &LogId, image: &MetadataImage, how: &str) {
        let hash = image_hash(image);
        let k = key(log_id);
        match self.applied.get(&log_id.index) {
            Some((other_key, other_hash)) => {
                if *other_key != k {
                    self.violation(format!(
                        "node {node} {how} log id {log_id} at index {}, where {:?} was applied before: committed metadata rolled back",
                        log_id.index, other_key
                    ));
                } else if *other_hash != hash {
                    self.violation(format!(
                        "node {node} {how} index {} and holds another image than the node that applied it first",
                        log_id.index
                    ));
                }
            }
            None => {
                self.applied.insert(log_id.index, (k, hash));
            }
        }
    }
}

fn payload_hash(entry: &Entry) -> u64 {
    match &entry.payload {
        EntryPayload::Blank => 1,
        EntryPayload::Normal(c) => serde_json::to_vec(c).map_or(2, |b| Fnv::of(&b)),
        EntryPayload::Membership(m) => Fnv::of(format!("{m:?}").as_bytes()),
    }
}

fn image_hash(image: &MetadataImage) -> u64 {
    serde_json::to_vec(image).map_or(0, |b| Fnv::of(&b))
}

/// The Raft log and vote of one node incarnation, over its [`Durable`].
/// Once the incarnation has crashed (`alive` false), every write fails, so
/// nothing a dying `Raft` still does reaches the disk.
#[derive(Clone)]
pub struct SimLogStore {
    node: NodeId,
    durable: Arc<Mutex<Durable>>,
    alive: Arc<AtomicBool>,
    observations: Arc<Mutex<Observations>>,
}

impl SimLogStore {
    fn writable(&self) -> Result<(), StorageError> {
        if self.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StorageIOError::write(any_error("the node crashed")).into())
        }
    }
}

impl RaftLogReader<TypeConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .durable
            .lock()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.durable.lock();
        let last = d.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: d.last_purged,
            last_log_id: last.or(d.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.writable()?;
        let mut d = self.durable.lock();
        d.vote = Some(*vote);
        d.flushed();
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.durable.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.writable()?;
        self.durable.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.durable.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.writable()?;
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut d = self.durable.lock();
            for entry in &entries {
                d.log.insert(entry.log_id.index, entry.clone());
            }
            d.flushed();
        }
        {
            let mut o = self.observations.lock();
            for entry in &entries {
                o.appended(self.node, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.writable()?;
        let mut d = self.durable.lock();
        d.log.split_off(&log_id.index);
        d.flushed();
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.writable()?;
        let mut d = self.durable.lock();
        d.last_purged = Some(log_id);
        let keep = d.log.split_off(&(log_id.index + 1));
        d.log = keep;
        d.flushed();
        Ok(())
    }
}

/// A snapshot's bytes: the whole state machine, as the controller's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SnapshotData {
    image: MetadataImage,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

/// The metadata state machine of one node incarnation: in memory, rebuilt
/// from the stored snapshot at start (as the controller's).
#[derive(Clone)]
pub struct SimStateMachine {
    node: NodeId,
    state: Arc<Mutex<SnapshotData>>,
    durable: Arc<Mutex<Durable>>,
    alive: Arc<AtomicBool>,
    observations: Arc<Mutex<Observations>>,
    snapshot_seq: Arc<Mutex<u64>>,
}

impl SimStateMachine {
    fn open(
        node: NodeId,
        durable: Arc<Mutex<Durable>>,
        alive: Arc<AtomicBool>,
        observations: Arc<Mutex<Observations>>,
    ) -> Result<SimStateMachine, StorageError> {
        let stored = durable.lock().snapshot.clone();
        let mut data = SnapshotData::default();
        if let Some((meta, bytes)) = stored {
            data = decode_snapshot(&bytes, &meta)?;
            if let Some(last) = &data.last_applied {
                observations
                    .lock()
                    .reached(node, last, &data.image, "loaded a snapshot at");
            }
        }
        Ok(SimStateMachine {
            node,
            state: Arc::new(Mutex::new(data)),
            durable,
            alive,
            observations,
            snapshot_seq: Arc::new(Mutex::new(0)),
        })
    }

    /// The image this incarnation holds now, and its last applied log id.
    fn current(&self) -> (Option<LogId>, MetadataImage) {
        let s = self.state.lock();
        (s.last_applied, s.image.clone())
    }

    fn writable(&self) -> Result<(), StorageError> {
        if self.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StorageIOError::write(any_error("the node crashed")).into())
        }
    }
}

fn decode_snapshot(bytes: &[u8], meta: &SnapshotMeta) -> Result<SnapshotData, StorageError> {
    let mut data: SnapshotData = serde_json::from_slice(bytes)
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any_error(e)))?;
    data.image.reindex();
    Ok(data)
}

impl RaftSnapshotBuilder<TypeConfig> for SimStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.writable()?;
        let (bytes, last_applied, last_membership) = {
            let s = self.state.lock();
            let bytes = serde_json::to_vec(&*s)
                .map_err(|e| StorageIOError::write_snapshot(None, any_error(e)))?;
            (bytes, s.last_applied, s.last_membership.clone())
        };
        let seq = {
            let mut n = self.snapshot_seq.lock();
            *n += 1;
            *n
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("--{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        self.durable.lock().snapshot = Some((meta.clone(), bytes.clone()));
        self.observations.lock().snapshots_built += 1;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SimStateMachine {
    type SnapshotBuilder = SimStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.state.lock();
        Ok((s.last_applied, s.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.writable()?;
        let mut results = Vec::new();
        for entry in entries {
            let (result, image) = {
                let mut s = self.state.lock();
                if s.last_applied
                    .is_some_and(|l| l.index >= entry.log_id.index)
                {
                    self.observations.lock().violation(format!(
                        "node {} applied index {} after {:?}",
                        self.node, entry.log_id.index, s.last_applied
                    ));
                }
                s.last_applied = Some(entry.log_id);
                let result = match &entry.payload {
                    EntryPayload::Blank => CommandResult::Ok,
                    EntryPayload::Normal(command) => {
                        commands::apply(&mut s.image, command, entry.log_id.index)
                    }
                    EntryPayload::Membership(membership) => {
                        s.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        CommandResult::Ok
                    }
                };
                (result, s.image.clone())
            };
            let mut o = self.observations.lock();
            o.applies += 1;
            o.reached(self.node, &entry.log_id, &image, "applied");
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.writable()?;
        let bytes = snapshot.into_inner();
        let mut data = decode_snapshot(&bytes, meta)?;
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        self.durable.lock().snapshot = Some((meta.clone(), bytes));
        let before = self.state.lock().last_applied;
        {
            let mut o = self.observations.lock();
            o.snapshots_installed += 1;
            if before.is_some_and(|b| data.last_applied.is_none_or(|a| a.index < b.index)) {
                o.violation(format!(
                    "node {} installed a snapshot at {:?} over applied {:?}: its state machine went back",
                    self.node, data.last_applied, before
                ));
            }
            if let Some(last) = &data.last_applied {
                o.reached(self.node, last, &data.image, "installed a snapshot at");
            }
        }
        *self.state.lock() = data;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self
            .durable
            .lock()
            .snapshot
            .clone()
            .map(|(meta, bytes)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }))
    }
}

/// Fresh stores for openraft's conformance suite.
pub fn fresh_stores() -> (SimLogStore, SimStateMachine) {
    let durable = Arc::new(Mutex::new(Durable::default()));
    let alive = Arc::new(AtomicBool::new(true));
    let observations = Arc::new(Mutex::new(Observations::default()));
    let log = SimLogStore {
        node: 0,
        durable: durable.clone(),
        alive: alive.clone(),
        observations: observations.clone(),
    };
    let sm = SimStateMachine {
        node: 0,
        state: Arc::default(),
        durable,
        alive,
        observations,
        snapshot_seq: Arc::default(),
    };
    (log, sm)
}

// ---------------------------------------------------------------------------
// The world: nodes, network, observations.

struct Running {
    raft: MetadataRaft,
    alive: Arc<AtomicBool>,
    state_machine: SimStateMachine,
}

struct Slot {
    durable: Arc<Mutex<Durable>>,
    /// Counts starts; a message is answered only by the incarnation it
    /// was sent to, and only reaches the incarnation that sent it.
    incarnation: u64,
    running: Option<Running>,
}

#[derive(Debug, Default)]
struct Figures {
    messages: u64,
    lost: u64,
    refused: u64,
    crashes: u64,
    partitions: u64,
    writes_acknowledged: u64,
    writes_failed: u64,
    /// Each term a node was seen leading in (a committed vote for itself),
    /// and that node.
    leaders: BTreeMap<u64, NodeId>,
}

struct World {
    start: tokio::time::Instant,
    rng: Rng,
    trace: Trace,
    ids: Vec<NodeId>,
    nodes: BTreeMap<NodeId, Slot>,
    /// Directed links that deliver nothing.
    cut: BTreeSet<(NodeId, NodeId)>,
    loss_per_mille: u64,
    /// The longest delay of a slow message.
    slow_delay_max_ms: u64,
    next_message: u64,
    observations: Arc<Mutex<Observations>>,
    /// Acknowledged writes: their log id, and the term in which they were
    /// committed: that of the acknowledging node's vote when it answered,
    /// which is at least the term of the leader that committed them.
    acknowledged: Vec<(LogId, u64)>,
    producer_ids: Vec<(i64, i64)>,
    /// The leader the clients last heard of.
    client_leader_hint: Option<NodeId>,
    figures: Figures,
    failure: Option<String>,
    raft_config: Arc<openraft::Config>,
}

type Shared = Arc<Mutex<World>>;

impl World {
    fn now_ms(&self) -> u64 {
        tokio::time::Instant::now()
            .duration_since(self.start)
            .as_millis() as u64
    }

    fn event(&mut self, line: std::fmt::Arguments<'_>) {
        let at = self.now_ms();
        self.trace.event(at, line);
    }

    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.event(format_args!("INVARIANT BROKEN: {what}"));
            self.failure = Some(what);
        }
    }

    fn is_current(&self, node: NodeId, incarnation: u64) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|s| s.incarnation == incarnation && s.running.is_some())
    }

    /// A message's delay: mostly a LAN's, sometimes very slow.
    fn delay_ms(&mut self) -> u64 {
        if self.rng.percent(4) {
            self.rng.range(20, self.slow_delay_max_ms.max(20))
        } else {
            self.rng.range(0, 6)
        }
    }

    /// Every invariant over the nodes' stores and votes.
    fn check(&mut self) {
        let violations: Vec<String> = std::mem::take(&mut self.observations.lock().violations);
        for v in violations {
            self.fail(v);
        }
        let mut logs: Vec<NodeLog> = Vec::new();
        for (id, slot) in &self.nodes {
            let d = slot.durable.lock();
            let keys = d.log.iter().map(|(i, e)| (*i, key(&e.log_id))).collect();
            logs.push((*id, keys, d.last_purged.map(|l| l.index), d.vote));
        }
        // No holes: a log runs from after its purge point without gaps.
        for (id, log, purged, _) in &logs {
            if let (Some(first), Some(last)) = (log.keys().next(), log.keys().next_back()) {
                let expected_first = purged.map_or(*first, |p| p + 1);
                if *first != expected_first || (last - first + 1) as usize != log.len() {
                    self.fail(format!(
                        "node {id}'s log has a hole: purged up to {purged:?}, holds {} entries from {first} to {last}",
                        log.len()
                    ));
                }
            }
        }
        // Log matching.
        for (i, (a, log_a, _, _)) in logs.iter().enumerate() {
            for (b, log_b, _, _) in logs.iter().skip(i + 1) {
                let matching = log_a
                    .iter()
                    .rev()
                    .find(|(index, k)| log_b.get(index) == Some(k))
                    .map(|(index, _)| *index);
                if let Some(top) = matching {
                    for (index, k) in log_a.range(..top) {
                        if let Some(other) = log_b.get(index) {
                            if other != k {
                                self.fail(format!(
                                    "log matching: nodes {a} and {b} agree at index {top} but hold {k:?} and {other:?} at {index}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        let mut findings = Vec::new();
        // Leaders: one per term over the whole run; each holds what was
        // committed in older terms (a crashed node counts with the vote it
        // kept: elected after the commit, it must hold the write too).
        for (id, log, purged, vote) in &logs {
            let Some(vote) = vote else { continue };
            if !vote.is_committed() || vote.leader_id.voted_for != Some(*id) {
                continue;
            }
            let term = vote.leader_id.term;
            match self.figures.leaders.get(&term) {
                None => {
                    self.figures.leaders.insert(term, *id);
                    let at = self.now_ms();
                    self.trace
                        .event(at, format_args!("node {id} leads in term {term}"));
                }
                Some(other) if other != id => findings.push(format!(
                    "one leader per term: nodes {other} and {id} both lead in term {term}"
                )),
                Some(_) => {}
            }
            for (acked, committed_by) in &self.acknowledged {
                if *committed_by >= term || purged.is_some_and(|p| acked.index <= p) {
                    continue;
                }
                if log.get(&acked.index) != Some(&key(acked)) {
                    let what = format!(
                        "leader completeness: node {id} leads in term {term} without the write acknowledged as {acked}"
                    );
                    findings.push(what);
                }
            }
        }
        for f in findings {
            self.fail(f);
        }
    }
}

// ---------------------------------------------------------------------------
// The network.

/// openraft's network factory for one node incarnation.
pub struct SimNetworkFactory {
    world: Shared,
    from: NodeId,
    incarnation: u64,
}

impl RaftNetworkFactory<TypeConfig> for SimNetworkFactory {
    type Network = SimNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimNetwork {
        SimNetwork {
            world: self.world.clone(),
            from: self.from,
            incarnation: self.incarnation,
            to: target,
        }
    }
}

/// Raft messages from one node incarnation to one peer.
pub struct SimNetwork {
    world: Shared,
    from: NodeId,
    incarnation: u64,
    to: NodeId,
}

/// Why a message got no answer.
#[derive(Debug)]
struct NotDelivered(String);

impl std::fmt::Display for NotDelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotDelivered {}

impl SimNetwork {
    /// Sends one request through the simulated network and returns the
    /// target's answer, or why there is none. `what` names the message
    /// in the trace.
    async fn call<Req, Resp, E, F, Fut>(
        &self,
        what: String,
        request: Req,
        ttl: Duration,
        deliver: F,
    ) -> Result<Result<Resp, E>, NotDelivered>
    where
        F: FnOnce(MetadataRaft, Req) -> Fut,
        Fut: Future<Output = Result<Resp, E>>,
    {
        let (id, request_delay, lost_request, response_delay, lost_response) = {
            let mut w = self.world.lock();
            if !w.is_current(self.from, self.incarnation) {
                return Err(NotDelivered("the sender crashed".into()));
            }
            w.next_message += 1;
            w.figures.messages += 1;
            let id = w.next_message;
            let loss = w.loss_per_mille;
            let request_delay = w.delay_ms();
            let lost_request = w.rng.per_mille(loss);
            let response_delay = w.delay_ms();
            let lost_response = w.rng.per_mille(loss);
            w.event(format_args!(
                "m{id} {}->{} {what} (+{request_delay}ms{})",
                self.from,
                self.to,
                if lost_request { ", lost" } else { "" }
            ));
            (
                id,
                request_delay,
                lost_request,
                response_delay,
                lost_response,
            )
        };
        let exchange = async {
            tokio::time::sleep(Duration::from_millis(request_delay)).await;
            enum Reach {
                Lost,
                Refused(u64),
                Target(MetadataRaft, u64),
            }
            let reach = {
                let mut w = self.world.lock();
                let cut = w.cut.contains(&(self.from, self.to));
                let target = w
                    .nodes
                    .get(&self.to)
                    .and_then(|s| s.running.as_ref().map(|r| (r.raft.clone(), s.incarnation)));
                match (lost_request, cut, target) {
                    (true, _, _) => {
                        w.figures.lost += 1;
                        Reach::Lost
                    }
                    (false, true, _) | (false, false, None) => {
                        w.figures.refused += 1;
                        w.event(format_args!("m{id} refused (link cut or target down)"));
                        // A refused connection fails soon, never at once,
                        // so a retry loop still lets time pass.
                        Reach::Refused(w.rng.range(1, 10))
                    }
                    (false, false, Some((raft, incarnation))) => Reach::Target(raft, incarnation),
                }
            };
            let target = match reach {
                Reach::Lost => None,
                Reach::Refused(after) => {
                    tokio::time::sleep(Duration::from_millis(after)).await;
                    return Err(NotDelivered(format!("node {} cannot be reached", self.to)));
                }
                Reach::Target(raft, incarnation) => Some((raft, incarnation)),
            };
            let Some((raft, target_incarnation)) = target else {
                std::future::pending::<()>().await;
                return Err(NotDelivered("lost".into()));
            };
            let reply = deliver(raft, request).await;
            tokio::time::sleep(Duration::from_millis(response_delay)).await;
            let delivered = {
                let mut w = self.world.lock();
                let sender_alive = w.is_current(self.from, self.incarnation);
                let target_same = w
                    .nodes
                    .get(&self.to)
                    .is_some_and(|s| s.incarnation == target_incarnation);
                let cut = w.cut.contains(&(self.to, self.from));
                let delivered = !lost_response && !cut && sender_alive && target_same;
                if lost_response {
                    w.figures.lost += 1;
                }
                w.event(format_args!(
                    "m{id} reply {}",
                    if delivered {
                        "delivered"
                    } else {
                        "not delivered"
                    }
                ));
                w.check();
                delivered
            };
            if !delivered {
                std::future::pending::<()>().await;
                return Err(NotDelivered("lost".into()));
            }
            Ok(reply)
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(r) => r,
            Err(_) => Err(NotDelivered(format!("no answer within {ttl:?}"))),
        }
    }
}

/// The target's answer as openraft expects it: its own error as a remote
/// error, a message that got no answer as a network error.
fn answer<Resp, E: std::error::Error>(
    target: NodeId,
    outcome: Result<Result<Resp, E>, NotDelivered>,
) -> Result<Resp, RPCError<NodeId, BasicNode, E>> {
    match outcome {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
        Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
    }
}

impl RaftNetwork<TypeConfig> for SimNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let what = format!(
            "append {} prev={} n={} commit={}",
            rpc.vote,
            rpc.prev_log_id.map_or("-".to_string(), |l| l.to_string()),
            rpc.entries.len(),
            rpc.leader_commit
                .map_or("-".to_string(), |l| l.index.to_string())
        );
        let outcome = self
            .call(what, rpc, option.hard_ttl(), |raft, rpc| async move {
                raft.append_entries(rpc).await
            })
            .await;
        answer(self.to, outcome)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let what = format!(
            "snapshot {} {} offset={} bytes={} done={}",
            rpc.vote,
            rpc.meta.snapshot_id,
            rpc.offset,
            rpc.data.len(),
            rpc.done
        );
        let outcome = self
            .call(what, rpc, option.hard_ttl(), |raft, rpc| async move {
                raft.install_snapshot(rpc).await
            })
            .await;
        answer(self.to, outcome)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let what = format!(
            "vote {} last={}",
            rpc.vote,
            rpc.last_log_id.map_or("-".to_string(), |l| l.to_string())
        );
        let outcome = self
            .call(what, rpc, option.hard_ttl(), |raft, rpc| async move {
                raft.vote(rpc).await
            })
            .await;
        answer(self.to, outcome)
    }
}

// ---------------------------------------------------------------------------
// Nodes: start, crash, restart.

fn raft_config(rng: &mut Rng) -> Result<openraft::Config, String> {
    let snapshot_logs_since_last = rng.range(5, 40);
    let mut c = openraft::Config {
        cluster_name: "kraftwerk-controller-sim".to_string(),
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MIN_MS + 1,
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        ..Default::default()
    };
    // As ControllerConfig::raft_config, with small snapshots and chunks so
    // that purging and chunked snapshot transfer happen in every run.
    c.install_snapshot_timeout = 2 * ELECTION_TIMEOUT_MIN_MS + 1;
    c.snapshot_policy = SnapshotPolicy::LogsSinceLast(snapshot_logs_since_last);
    c.max_in_snapshot_log_to_keep = rng.range(0, 10);
    c.snapshot_max_chunk_size = rng.range(256, 4096);
    c.replication_lag_threshold = snapshot_logs_since_last * 2;
    c.validate().map_err(|e| e.to_string())
}

async fn start_node(world: &Shared, id: NodeId, initialize: bool) -> Result<(), String> {
    let (durable, incarnation, observations, config, members, election_timeout_ms) = {
        let mut w = world.lock();
        let members: BTreeMap<NodeId, BasicNode> = w
            .ids
            .iter()
            .map(|i| (*i, BasicNode::new(format!("node-{i}"))))
            .collect();
        let observations = w.observations.clone();
        // Standard Raft needs election timeouts that differ between nodes:
        // nodes that time out together split the vote in every term. openraft
        // draws them from `thread_rng`, so each incarnation draws its
        // constant one from the seed, in the controller's range.
        let mut config = (*w.raft_config).clone();
        let election_timeout_ms = ELECTION_TIMEOUT_MIN_MS + w.rng.range(0, ELECTION_TIMEOUT_MIN_MS);
        config.election_timeout_min = election_timeout_ms;
        config.election_timeout_max = election_timeout_ms + 1;
        let config = Arc::new(config);
        let Some(slot) = w.nodes.get_mut(&id) else {
            return Err(format!("no node {id}"));
        };
        slot.incarnation += 1;
        let incarnation = slot.incarnation;
        let durable = slot.durable.clone();
        w.event(format_args!("node {id} starts (incarnation {incarnation})"));
        (
            durable,
            incarnation,
            observations,
            config,
            members,
            election_timeout_ms,
        )
    };
    let alive = Arc::new(AtomicBool::new(true));
    let log = SimLogStore {
        node: id,
        durable: durable.clone(),
        alive: alive.clone(),
        observations: observations.clone(),
    };
    let state_machine = SimStateMachine::open(id, durable, alive.clone(), observations)
        .map_err(|e| format!("node {id}: opening its state machine: {e}"))?;
    let network = SimNetworkFactory {
        world: world.clone(),
        from: id,
        incarnation,
    };
    let raft = MetadataRaft::new(id, config, network, log, state_machine.clone())
        .await
        .map_err(|e| format!("node {id}: starting Raft: {e}"))?;
    {
        let mut w = world.lock();
        if let Some(slot) = w.nodes.get_mut(&id) {
            slot.running = Some(Running {
                raft: raft.clone(),
                alive,
                state_machine,
            });
        }
    }
    // As a controller node does: a candidate stands again after a wait drawn
    // anew for each term (the seed's generator here).
    let (low, high) = split_vote::restart_wait_range_ms(election_timeout_ms);
    let draws = world.clone();
    tokio::spawn(split_vote::restart_split_elections(
        raft.clone(),
        move || draws.lock().rng.range(low, high - 1),
        CancellationToken::new(),
    ));
    if initialize {
        match raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(format!("node {id}: initialize: {e}")),
        }
    }
    Ok(())
}

async fn crash_node(world: &Shared, id: NodeId) {
    let running = {
        let mut w = world.lock();
        let keep_committed = w.rng.percent(50);
        let Some(slot) = w.nodes.get_mut(&id) else {
            return;
        };
        let Some(running) = slot.running.take() else {
            return;
        };
        running.alive.store(false, Ordering::Release);
        let mut d = slot.durable.lock();
        if !keep_committed {
            // The unflushed committed id is lost (sled flushes every 500 ms).
            d.committed = d.committed_flushed;
        }
        drop(d);
        w.figures.crashes += 1;
        w.event(format_args!(
            "node {id} crashes{}",
            if keep_committed {
                ""
            } else {
                " (its unflushed committed id is lost)"
            }
        ));
        running
    };
    let _ = running.raft.shutdown().await;
}

// ---------------------------------------------------------------------------
// Clients.

/// A metadata command as a broker or an admin client would propose it.
fn random_command(rng: &mut Rng, n: u64) -> MetadataCommand {
    let broker_id = rng.range(1, 4) as i32;
    match rng.below(9) {
        0 | 1 => MetadataCommand::RegisterBroker {
            broker_id,
            incarnation_id: format!("incarnation-{n}"),
            host: format!("broker-{broker_id}"),
            port: 9092,
            rack: None,
            replication_endpoint: Some(format!("broker-{broker_id}:10092")),
            http_endpoint: None,
            listeners: Vec::new(),
        },
        2 => MetadataCommand::UnfenceBroker { broker_id },
        3 => MetadataCommand::FenceBroker { broker_id },
        4 => MetadataCommand::CreateTopic {
            name: format!("topic-{}", rng.below(12)),
            topic_id: TopicId(uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64())),
            assignments: (0..rng.range(1, 3))
                .map(|p| {
                    let first = (p % 4 + 1) as i32;
                    vec![first, first % 4 + 1, (first + 1) % 4 + 1]
                })
                .collect(),
            configs: BTreeMap::new(),
        },
        5 | 6 => MetadataCommand::AllocateProducerIds {
            count: rng.range(1, 1000) as i64,
        },
        7 => MetadataCommand::AlterTopicConfigs {
            name: format!("topic-{}", rng.below(12)),
            changes: vec![(
                "retention.ms".to_string(),
                Some(rng.range(1, 100_000).to_string()),
            )],
        },
        _ => MetadataCommand::ElectPreferredLeaders { partitions: None },
    }
}

async fn client_loop(world: Shared) {
    let in_flight = Arc::new(Mutex::new(0usize));
    let mut n = 0u64;
    loop {
        let pause = world.lock().rng.range(10, 120);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if *in_flight.lock() >= WRITES_IN_FLIGHT_MAX {
            continue;
        }
        n += 1;
        let (raft, target, command) = {
            let mut w = world.lock();
            let running: Vec<NodeId> = w
                .nodes
                .iter()
                .filter(|(_, s)| s.running.is_some())
                .map(|(id, _)| *id)
                .collect();
            // Mostly the leader the last answer named, as a broker does.
            let hinted = w
                .client_leader_hint
                .filter(|h| running.contains(h) && w.rng.percent(80));
            let Some(target) = hinted.or_else(|| w.rng.pick(&running)) else {
                continue;
            };
            let Some(raft) = w
                .nodes
                .get(&target)
                .and_then(|s| s.running.as_ref().map(|r| r.raft.clone()))
            else {
                continue;
            };
            let command = random_command(&mut w.rng, n);
            w.event(format_args!("client w{n} -> node {target}: {command:?}"));
            (raft, target, command)
        };
        *in_flight.lock() += 1;
        let world = world.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let is_allocation = match &command {
                MetadataCommand::AllocateProducerIds { count } => Some(*count),
                _ => None,
            };
            let outcome = tokio::time::timeout(
                Duration::from_millis(WRITE_TIMEOUT_MS),
                raft.client_write(command),
            )
            .await;
            *in_flight.lock() -= 1;
            let mut w = world.lock();
            match outcome {
                Ok(Ok(response)) => {
                    w.client_leader_hint = Some(target);
                    w.figures.writes_acknowledged += 1;
                    w.event(format_args!(
                        "client w{n} acknowledged by node {target} at {}: {:?}",
                        response.log_id, response.data
                    ));
                    let entry_term = response.log_id.leader_id.term;
                    let vote_term = w
                        .nodes
                        .get(&target)
                        .and_then(|s| s.durable.lock().vote)
                        .map(|v| v.leader_id.term);
                    let committed_by = vote_term.map_or(entry_term, |t| t.max(entry_term));
                    w.acknowledged.push((response.log_id, committed_by));
                    if let (Some(count), CommandResult::ProducerIdStart(start)) =
                        (is_allocation, &response.data)
                    {
                        let block = (*start, *start + count);
                        if let Some(other) = w
                            .producer_ids
                            .iter()
                            .find(|(s, e)| block.0 < *e && *s < block.1)
                            .copied()
                        {
                            w.fail(format!(
                                "producer ids {block:?} handed out again (overlap with {other:?})"
                            ));
                        }
                        w.producer_ids.push(block);
                    }
                    w.check();
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    w.client_leader_hint = f.leader_id;
                    w.figures.writes_failed += 1;
                    w.event(format_args!(
                        "client w{n} refused by node {target}: leader {:?}",
                        f.leader_id
                    ));
                }
                Ok(Err(e)) => {
                    w.figures.writes_failed += 1;
                    w.event(format_args!("client w{n} failed at node {target}: {e}"));
                }
                Err(_) => {
                    w.figures.writes_failed += 1;
                    w.event(format_args!("client w{n} timed out at node {target}"));
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------
// Faults and the run.

async fn inject_fault(world: &Shared) -> Result<(), String> {
    enum Fault {
        Crash(NodeId),
        Restart(NodeId),
        Isolate(NodeId),
        Split(Vec<NodeId>),
        OneWay(NodeId, NodeId),
        Heal,
        Loss(u64),
    }
    let fault = {
        let mut w = world.lock();
        let running: Vec<NodeId> = w
            .nodes
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(id, _)| *id)
            .collect();
        let down: Vec<NodeId> = w
            .nodes
            .iter()
            .filter(|(_, s)| s.running.is_none())
            .map(|(id, _)| *id)
            .collect();
        let ids = w.ids.clone();
        match w.rng.below(12) {
            0..=2 if !running.is_empty() => Fault::Crash(w.rng.pick(&running).unwrap_or(1)),
            0..=4 if !down.is_empty() => Fault::Restart(w.rng.pick(&down).unwrap_or(1)),
            5 => Fault::Isolate(w.rng.pick(&ids).unwrap_or(1)),
            6 => {
                // A proper, non-empty part of the nodes against the rest.
                let size = w.rng.range(1, ids.len() as u64 - 1) as usize;
                let mut rest = ids.clone();
                let mut side = Vec::new();
                for _ in 0..size {
                    let i = w.rng.below(rest.len() as u64) as usize;
                    side.push(rest.remove(i));
                }
                side.sort_unstable();
                Fault::Split(side)
            }
            7 => {
                let a = w.rng.pick(&ids).unwrap_or(1);
                let b = w.rng.pick(&ids).unwrap_or(1);
                Fault::OneWay(a, b)
            }
            8..=9 => Fault::Heal,
            _ => {
                let loss = w.rng.pick(&[0, 0, 10, 50, 200]).unwrap_or(0);
                Fault::Loss(loss)
            }
        }
    };
    match fault {
        Fault::Crash(id) => crash_node(world, id).await,
        Fault::Restart(id) => start_node(world, id, false).await?,
        Fault::Isolate(id) => {
            let mut w = world.lock();
            let ids = w.ids.clone();
            // One partition at a time: a new one replaces the last.
            w.cut.clear();
            for other in ids.into_iter().filter(|o| *o != id) {
                w.cut.insert((id, other));
                w.cut.insert((other, id));
            }
            w.figures.partitions += 1;
            w.event(format_args!("partition: node {id} cut off"));
        }
        Fault::Split(side) => {
            let mut w = world.lock();
            let ids = w.ids.clone();
            w.cut.clear();
            for a in &side {
                for b in ids.iter().filter(|b| !side.contains(b)) {
                    w.cut.insert((*a, *b));
                    w.cut.insert((*b, *a));
                }
            }
            w.figures.partitions += 1;
            w.event(format_args!("partition: {side:?} split from the rest"));
        }
        Fault::OneWay(a, b) => {
            if a != b {
                let mut w = world.lock();
                w.cut.clear();
                w.cut.insert((a, b));
                w.figures.partitions += 1;
                w.event(format_args!("partition: link {a}->{b} cut one way"));
            }
        }
        Fault::Heal => {
            let mut w = world.lock();
            w.cut.clear();
            w.event(format_args!("network healed"));
        }
        Fault::Loss(per_mille) => {
            let mut w = world.lock();
            w.loss_per_mille = per_mille;
            w.event(format_args!("message loss now {per_mille}‰"));
        }
    }
    world.lock().check();
    Ok(())
}

/// Waits until one node leads and commits a write, and every node holds
/// the same image with every acknowledged write applied.
async fn settle(world: &Shared) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(HEAL_PHASE_MAX_MS);
    let mut final_write: Option<LogId> = None;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(match final_write {
                None => "no leader committed a write within 30 s of healing".to_string(),
                Some(l) => format!("the nodes did not all apply up to {l} within 30 s of healing"),
            });
        }
        if let Some(f) = world.lock().failure.clone() {
            return Err(f);
        }
        if final_write.is_none() {
            let rafts: Vec<MetadataRaft> = world
                .lock()
                .nodes
                .values()
                .filter_map(|s| s.running.as_ref().map(|r| r.raft.clone()))
                .collect();
            for raft in rafts {
                let leads = raft.metrics().borrow().state == openraft::ServerState::Leader;
                if !leads {
                    continue;
                }
                let command = MetadataCommand::AllocateProducerIds { count: 1 };
                if let Ok(Ok(r)) =
                    tokio::time::timeout(Duration::from_secs(2), raft.client_write(command)).await
                {
                    let mut w = world.lock();
                    w.event(format_args!("final write committed at {}", r.log_id));
                    let committed_by = raft.metrics().borrow().vote.leader_id.term;
                    w.acknowledged.push((r.log_id, committed_by));
                    final_write = Some(r.log_id);
                    break;
                }
            }
        }
        if let Some(last) = final_write {
            let w = world.lock();
            let states: Vec<(NodeId, Option<LogId>, MetadataImage)> = w
                .nodes
                .iter()
                .filter_map(|(id, s)| {
                    s.running.as_ref().map(|r| {
                        let (applied, image) = r.state_machine.current();
                        (*id, applied, image)
                    })
                })
                .collect();
            let all_applied = states
                .iter()
                .all(|(_, applied, _)| applied.is_some_and(|a| a.index >= last.index));
            if all_applied && states.len() == w.nodes.len() {
                let hashes: BTreeSet<u64> = states
                    .iter()
                    .filter(|(_, applied, _)| *applied == Some(last))
                    .map(|(_, _, image)| image_hash(image))
                    .collect();
                if hashes.len() > 1 {
                    return Err(format!(
                        "the nodes hold different images at index {}",
                        last.index
                    ));
                }
                let applied = w.observations.lock().applied.clone();
                for (acked, _) in &w.acknowledged {
                    if applied.get(&acked.index).map(|(k, _)| *k) != Some(key(acked)) {
                        return Err(format!("the acknowledged write {acked} is not applied"));
                    }
                }
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn simulate(world: Shared) -> Result<(), String> {
    let ids = world.lock().ids.clone();
    for id in &ids {
        start_node(&world, *id, true).await?;
    }
    let client = tokio::spawn(client_loop(world.clone()));
    let faults_end = Duration::from_millis(FAULT_PHASE_MS);
    let start = world.lock().start;
    while start.elapsed() < faults_end {
        let pause = world.lock().rng.range(50, 1_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if let Some(f) = world.lock().failure.clone() {
            client.abort();
            return Err(f);
        }
        inject_fault(&world).await?;
    }
    {
        let mut w = world.lock();
        w.cut.clear();
        w.loss_per_mille = 0;
        w.slow_delay_max_ms = 20;
        w.event(format_args!("healing: network whole, every node up"));
    }
    for id in &ids {
        let down = world
            .lock()
            .nodes
            .get(id)
            .is_some_and(|s| s.running.is_none());
        if down {
            start_node(&world, *id, false).await?;
        }
    }
    let settled = settle(&world).await;
    client.abort();
    settled?;
    world.lock().check();
    if let Some(f) = world.lock().failure.clone() {
        return Err(f);
    }
    Ok(())
}

/// Runs one seed of the quorum simulation.
pub fn run(seed: u64, verbose: bool) -> Result<RunSummary, RunFailure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| RunFailure {
            message: format!("no tokio runtime: {e}"),
            trace_tail: String::new(),
        })?;
    let mut rng = Rng::new(seed);
    let node_count = if rng.percent(70) { 3 } else { 5 };
    let raft_config = raft_config(&mut rng).map_err(|e| RunFailure {
        message: format!("invalid Raft configuration: {e}"),
        trace_tail: String::new(),
    })?;
    let ids: Vec<NodeId> = (1..=node_count).collect();
    let (result, world) = runtime.block_on(async {
        let world: Shared = Arc::new(Mutex::new(World {
            start: tokio::time::Instant::now(),
            rng,
            trace: Trace::new(verbose),
            ids: ids.clone(),
            nodes: ids
                .iter()
                .map(|id| {
                    (
                        *id,
                        Slot {
                            durable: Arc::default(),
                            incarnation: 0,
                            running: None,
                        },
                    )
                })
                .collect(),
            cut: BTreeSet::new(),
            loss_per_mille: 0,
            slow_delay_max_ms: 400,
            next_message: 0,
            observations: Arc::default(),
            acknowledged: Vec::new(),
            producer_ids: Vec::new(),
            client_leader_hint: None,
            figures: Figures::default(),
            failure: None,
            raft_config: Arc::new(raft_config),
        }));
        {
            let mut w = world.lock();
            let policy = w.raft_config.snapshot_policy.clone();
            w.event(format_args!(
                "seed {seed}: {node_count} controller nodes, {policy:?}"
            ));
        }
        let result = simulate(world.clone()).await;
        // Stop every Raft inside the runtime, so nothing outlives the run.
        let rafts: Vec<MetadataRaft> = world
            .lock()
            .nodes
            .values_mut()
            .filter_map(|s| s.running.take().map(|r| r.raft))
            .collect();
        for raft in rafts {
            let _ = raft.shutdown().await;
        }
        (result, world)
    });
    drop(runtime);
    let w = world.lock();
    match result {
        Ok(()) => {
            let o = w.observations.lock();
            Ok(RunSummary {
                trace_hash: w.trace.hash(),
                events: w.trace.events(),
                figures: vec![
                    ("messages", w.figures.messages),
                    ("lost", w.figures.lost),
                    ("refused", w.figures.refused),
                    ("crashes", w.figures.crashes),
                    ("partitions", w.figures.partitions),
                    ("writes_acknowledged", w.figures.writes_acknowledged),
                    ("writes_failed", w.figures.writes_failed),
                    ("leaders", w.figures.leaders.len() as u64),
                    ("entries_applied", o.applies),
                    ("snapshots_built", o.snapshots_built),
                    ("snapshots_installed", o.snapshots_installed),
                ],
            })
        }
        Err(message) => Err(RunFailure {
            message,
            trace_tail: w.trace.tail(),
        }),
    }
}
