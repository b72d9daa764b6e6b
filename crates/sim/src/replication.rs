//! Partition replication in a seeded simulation.
//!
//! Three brokers hold one partition (replication factor 3,
//! `min.insync.replicas` 1–3 by seed). Everything that decides runs as in a
//! broker: each replica is a real [`Log`] (segments on disk, in a tmpfs
//! where there is one) with a real [`PartitionReplication`]; leaders answer
//! fetches with [`leader::read_once`], followers build them with
//! [`fetcher::fetch_request`] and apply the answers (truncation by leader
//! epoch included) with [`fetcher::apply_fetch_response`]; ISR changes come
//! from [`PartitionReplication::isr_change_due`]; acks=all waits on
//! [`PartitionReplication::wait_committed`]; the controller is the
//! controller's own [`commands::apply`] on a metadata image (the quorum is
//! simulated on its own in [`crate::quorum`]). What the broker process does
//! around them (the produce handler's checks, applying an image to a
//! partition, sessions and heartbeats, the checkpoint timer) is mirrored
//! here in a few lines each.
//!
//! The run is a discrete-event simulation on one thread: a queue of timed
//! events, simulated time passed to the code as `Instant`s, every choice
//! drawn from the seed. Messages between brokers and to the controller are
//! delayed, lost, or cut by partitions; brokers crash like `kill -9` (the
//! files keep what was written: the page cache survives the process;
//! sometimes a torn, half-written batch is left at the end of the active
//! segment, which recovery must cut) and restart, register again (a new
//! broker epoch) and are unfenced once their heartbeats show they caught up
//! with the metadata; the controller fences a broker whose session times
//! out, or at once when its crash is noticed; preferred leaders are elected
//! back now and then. An acks=all waiter runs a few milliseconds after it
//! was last polled, and now and then seconds later, as a task of a starved
//! runtime would.
//!
//! Invariants, after every event: one leader per leader epoch (no two
//! brokers append as leader in one epoch); a leader's high watermark never
//! moves backwards within its leadership and never exceeds its own log end
//! or the log end offset of any member of the ISR it knows; log matching
//! (two logs that hold the same leader epoch at an offset hold the same
//! epochs below it). At every change of leader, every 64 events and at the
//! end: every batch in every log is the one the leader of its epoch wrote
//! at that offset, and the new leader holds every acknowledged batch, at
//! its offset, with the same bytes. After the faults the network heals and
//! every broker restarts; the run then requires an acknowledged write and
//! all three logs identical.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as RecordTimestampType,
};
use kraftwerk_controller::commands::{self, CommandResult, MetadataCommand};
use kraftwerk_metadata::MetadataImage;
use kraftwerk_protocol::batch;
use kraftwerk_replication::partition::CommitWaitError;
use kraftwerk_replication::{
    fetcher, leader, IsrChange, LocalReplica, PartitionReplication, PartitionView, ReplicaSource,
    ReplicationConfig,
};
use kraftwerk_rpc::replication as pb;
use kraftwerk_storage::Log;
use kraftwerk_types::{LogConfig, TopicId, TopicPartition};

use crate::harness::{Fnv, Rng, RunFailure, RunSummary, Trace};

const TOPIC: &str = "sim";
const BROKERS: [i32; 3] = [1, 2, 3];
/// The controller's place in the network.
const CONTROLLER: i32 = 0;

/// How long faults are injected, in simulated milliseconds.
const FAULT_PHASE_MS: u64 = 25_000;
/// After healing: the time to acknowledge a write and make the logs equal.
const HEAL_PHASE_MAX_MS: u64 = 60_000;
/// A full check of every log (batches against what their leaders wrote)
/// runs at least this often, in events.
const FULL_CHECK_EVERY_EVENTS: u64 = 64;

const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
const SESSION_TIMEOUT_MS: u64 = 4_000;
const SESSION_CHECK_MS: u64 = 250;
/// `leader::ISR_CHECK_INTERVAL`.
const ISR_CHECK_MS: u64 = 250;
/// The follower's pause after a failed fetch (`fetcher::RETRY_BACKOFF`).
const FETCH_RETRY_BACKOFF_MS: u64 = 200;
/// `replica.high.watermark.checkpoint.interval.ms`.
const CHECKPOINT_INTERVAL_MS: u64 = 5_000;
/// An acks=all produce gives up after this long (`timeout_ms`).
const PRODUCE_TIMEOUT_MS: u64 = 10_000;
/// Wall-clock milliseconds at simulated time 0, for record timestamps.
const EPOCH_MS: i64 = 1_700_000_000_000;

/// One replica on one broker: what the broker's `Partition` holds.
struct SimReplica {
    log: Log,
    replication: PartitionReplication,
}

impl LocalReplica for SimReplica {
    fn log(&self) -> &Log {
        &self.log
    }
    fn replication(&self) -> &PartitionReplication {
        &self.replication
    }
}

/// A broker's partitions: just the one.
struct OnePartition {
    tp: TopicPartition,
    replica: Arc<SimReplica>,
}

impl ReplicaSource for OnePartition {
    fn replica(&self, tp: &TopicPartition) -> Option<Arc<dyn LocalReplica>> {
        (*tp == self.tp).then(|| self.replica.clone() as Arc<dyn LocalReplica>)
    }
    fn all_replicas(&self) -> Vec<(TopicPartition, Arc<dyn LocalReplica>)> {
        vec![(
            self.tp.clone(),
            self.replica.clone() as Arc<dyn LocalReplica>,
        )]
    }
}

/// A running broker process.
struct Up {
    replica: Arc<SimReplica>,
    source: Arc<OnePartition>,
    /// -1 until its registration is answered.
    broker_epoch: i64,
    image: Arc<MetadataImage>,
    fetching: bool,
    refusals: HashMap<TopicPartition, i16>,
    /// While leading: (leader epoch, high watermark) last seen, to check it
    /// never moves backwards within one leadership.
    leading: Option<(i32, i64)>,
}

struct Broker {
    dir: PathBuf,
    incarnation: u64,
    up: Option<Up>,
    /// The last `replication-offset-checkpoint` written.
    checkpointed_high_watermark: i64,
    /// The leader-epoch cache and log end offset as the broker went down
    /// (its files do not change while it is down).
    at_crash: (Vec<(i32, i64)>, i64),
}

/// An acks=all produce waiting for its answer.
struct Waiter {
    id: u64,
    broker: i32,
    incarnation: u64,
    batch: BatchInfo,
    deadline_ms: u64,
    /// The waiting task runs again no earlier than this.
    next_poll_ms: u64,
    wait: Pin<Box<dyn Future<Output = Result<(), CommitWaitError>>>>,
}

/// One batch as a log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchInfo {
    base: i64,
    last: i64,
    epoch: i32,
    /// Hash of the batch from its magic byte on: what a produce sent and no
    /// log may change (the base offset and leader epoch before it are set
    /// by the leader).
    content: u64,
}

#[derive(Debug)]
enum Event {
    Fault,
    Restart(i32),
    Produce,
    FetchRound {
        broker: i32,
        incarnation: u64,
    },
    /// A fetch reached `leader`; answered now, or held (long poll) until
    /// `deadline_ms` while there is nothing to send.
    FetchAtLeader {
        follower: i32,
        leader: i32,
        request: pb::FetchRequest,
        deadline_ms: u64,
    },
    FetchAnswer {
        follower: i32,
        incarnation: u64,
        leader: i32,
        request: Box<pb::FetchRequest>,
        /// `None`: the call failed (lost, cut, leader down).
        response: Option<pb::FetchResponse>,
    },
    IsrTick {
        broker: i32,
        incarnation: u64,
    },
    AlterPartition {
        broker: i32,
        incarnation: u64,
        change: IsrChange,
    },
    AlterPartitionRefused {
        broker: i32,
        incarnation: u64,
        partition_epoch: i32,
    },
    MetadataPoll {
        broker: i32,
        incarnation: u64,
    },
    ImageArrives {
        broker: i32,
        incarnation: u64,
        image: Arc<MetadataImage>,
    },
    Register {
        broker: i32,
        incarnation: u64,
    },
    Registered {
        broker: i32,
        incarnation: u64,
        broker_epoch: i64,
    },
    Heartbeat {
        broker: i32,
        incarnation: u64,
    },
    HeartbeatArrives {
        broker: i32,
        broker_epoch: i64,
        image_version: u64,
    },
    SessionCheck,
    /// The controller noticed a crash (session stream ended) and probes.
    Probe {
        broker: i32,
        incarnation: u64,
    },
    Checkpoint {
        broker: i32,
        incarnation: u64,
    },
    PreferredElection,
}

#[derive(Debug, Default)]
struct Figures {
    events: u64,
    produced: u64,
    acknowledged: u64,
    not_acknowledged: u64,
    crashes: u64,
    torn_tails: u64,
    partitions: u64,
    leader_changes: u64,
    truncations: u64,
    full_checks: u64,
}

struct Sim {
    rng: Rng,
    trace: Trace,
    now_ms: u64,
    base: Instant,
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    tp: TopicPartition,
    log_config: LogConfig,
    config: ReplicationConfig,
    brokers: BTreeMap<i32, Broker>,
    image: Arc<MetadataImage>,
    index: u64,
    last_heartbeat: BTreeMap<i32, u64>,
    cut: BTreeSet<(i32, i32)>,
    loss_per_mille: u64,
    faults_on: bool,
    waiters: Vec<Waiter>,
    acknowledged: Vec<BatchInfo>,
    /// What the leader of each epoch wrote: (epoch, base offset) to batch.
    written: BTreeMap<(i32, i64), BatchInfo>,
    /// Who appended as leader in each epoch.
    epoch_leader: BTreeMap<i32, i32>,
    next_produce: u64,
    events_since_full_check: u64,
    figures: Figures,
    failure: Option<String>,
}

/// A batch of `count` records whose values name the produce.
fn produce_batch(id: u64, count: i64, now_ms: i64) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: RecordTimestampType::Creation,
            offset: i,
            // The encoder keeps records in one batch while offset minus
            // sequence is constant; a base sequence of -1 means none.
            sequence: (i as i32) - 1,
            timestamp: now_ms + i,
            key: None,
            value: Some(Bytes::from(format!("produce-{id}-record-{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    match RecordBatchEncoder::encode(&mut buffer, records.iter(), &options) {
        Ok(()) => buffer.freeze(),
        Err(e) => panic!("encoding a record batch: {e}"),
    }
}

/// The content hash of a stored batch (see [`BatchInfo::content`]).
fn content_hash(batch: &[u8]) -> u64 {
    Fnv::of(batch.get(16..).unwrap_or_default())
}

/// Every batch of `log`, in order.
fn scan(log: &Log) -> Result<Vec<BatchInfo>, String> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let bytes = log
            .read(offset, 1 << 20, i64::MAX, true)
            .map_err(|e| format!("reading at {offset}: {e}"))?;
        if bytes.is_empty() {
            return Err(format!("nothing readable at {offset}, below the end {end}"));
        }
        let batches =
            batch::validate_all(&bytes).map_err(|e| format!("a bad batch at {offset}: {e}"))?;
        for (h, b) in batches {
            out.push(BatchInfo {
                base: h.base_offset,
                last: h.last_offset(),
                epoch: h.partition_leader_epoch,
                content: content_hash(&b),
            });
            offset = h.last_offset() + 1;
        }
    }
    Ok(out)
}

/// Offset ranges with their leader epoch: (start, end, epoch).
type EpochRanges = Vec<(i64, i64, i32)>;

/// The leader epoch of each offset range: (start, end, epoch) from the
/// leader-epoch cache and the log end offset.
fn epoch_ranges(entries: &[(i32, i64)], log_end_offset: i64) -> EpochRanges {
    let mut out = Vec::with_capacity(entries.len());
    for (i, (epoch, start)) in entries.iter().enumerate() {
        let end = entries
            .get(i + 1)
            .map_or(log_end_offset, |(_, next)| *next)
            .min(log_end_offset);
        if *start < end {
            out.push((*start, end, *epoch));
        }
    }
    out
}

fn epoch_at(ranges: &[(i64, i64, i32)], offset: i64) -> Option<i32> {
    ranges
        .iter()
        .find(|(s, e, _)| *s <= offset && offset < *e)
        .map(|(_, _, epoch)| *epoch)
}

impl Sim {
    fn new(seed: u64, verbose: bool, root: &Path) -> Result<Sim, String> {
        let mut rng = Rng::new(seed);
        let min_isr = rng.range(1, 3) as i32;
        let segment_bytes = rng.range(1_024, 16_384);
        let topic_configs = BTreeMap::from([
            ("min.insync.replicas".to_string(), min_isr.to_string()),
            ("segment.bytes".to_string(), segment_bytes.to_string()),
        ]);
        let log_config = LogConfig::resolve(&topic_configs, &BTreeMap::new());
        let config = ReplicationConfig {
            replica_lag_time_max: Duration::from_millis(rng.range(1_000, 8_000)),
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: rng.range(1_000, 64_000) as i32,
            ..ReplicationConfig::default()
        };
        let mut replicas = BROKERS.to_vec();
        for i in (1..replicas.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            replicas.swap(i, j);
        }
        let mut trace = Trace::new(verbose);
        trace.event(
            0,
            format_args!(
                "seed {seed}: replicas {replicas:?}, min.insync.replicas {min_isr}, segment.bytes {segment_bytes}, replica.lag.time.max.ms {}",
                config.replica_lag_time_max.as_millis()
            ),
        );
        let mut sim = Sim {
            rng,
            trace,
            now_ms: 0,
            base: Instant::now(),
            queue: BTreeMap::new(),
            seq: 0,
            tp: TopicPartition::new(TOPIC, 0),
            log_config,
            config,
            brokers: BTreeMap::new(),
            image: Arc::new(MetadataImage::default()),
            index: 0,
            last_heartbeat: BTreeMap::new(),
            cut: BTreeSet::new(),
            loss_per_mille: 0,
            faults_on: true,
            waiters: Vec::new(),
            acknowledged: Vec::new(),
            written: BTreeMap::new(),
            epoch_leader: BTreeMap::new(),
            next_produce: 0,
            events_since_full_check: 0,
            figures: Figures::default(),
            failure: None,
        };
        // The cluster as it is once set up: every broker registered and
        // unfenced, the topic created.
        let mut epochs = BTreeMap::new();
        for b in BROKERS {
            if let CommandResult::BrokerEpoch(e) = sim.controller_apply(register(b, 0)) {
                epochs.insert(b, e);
            }
            sim.controller_apply(MetadataCommand::UnfenceBroker { broker_id: b });
            sim.brokers.insert(
                b,
                Broker {
                    dir: root.join(format!("broker-{b}")),
                    incarnation: 0,
                    up: None,
                    checkpointed_high_watermark: 0,
                    at_crash: (Vec::new(), 0),
                },
            );
        }
        sim.controller_apply(MetadataCommand::CreateTopic {
            name: TOPIC.to_string(),
            topic_id: TopicId(uuid::Uuid::from_u64_pair(seed, 1)),
            assignments: vec![replicas],
            configs: topic_configs,
        });
        for b in BROKERS {
            sim.start_broker(b)?;
            if let Some(up) = sim.up_mut(b) {
                up.broker_epoch = epochs.get(&b).copied().unwrap_or(-1);
            }
            let image = sim.image.clone();
            sim.broker_apply_image(b, image);
            sim.last_heartbeat.insert(b, 0);
        }
        sim.schedule(0, Event::SessionCheck);
        sim.schedule(100, Event::Fault);
        sim.schedule(10, Event::Produce);
        let election_after = sim.rng.range(2_000, 6_000);
        sim.schedule(election_after, Event::PreferredElection);
        Ok(sim)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn now(&self) -> Instant {
        self.at(self.now_ms)
    }

    fn event(&mut self, line: std::fmt::Arguments<'_>) {
        self.trace.event(self.now_ms, line);
    }

    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.event(format_args!("INVARIANT BROKEN: {what}"));
            self.failure = Some(what);
        }
    }

    fn schedule(&mut self, after_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now_ms + after_ms, self.seq), event);
    }

    fn up(&self, b: i32) -> Option<&Up> {
        self.brokers.get(&b).and_then(|x| x.up.as_ref())
    }

    fn up_mut(&mut self, b: i32) -> Option<&mut Up> {
        self.brokers.get_mut(&b).and_then(|x| x.up.as_mut())
    }

    fn incarnation(&self, b: i32) -> u64 {
        self.brokers.get(&b).map_or(0, |x| x.incarnation)
    }

    fn is_current(&self, b: i32, incarnation: u64) -> bool {
        self.brokers
            .get(&b)
            .is_some_and(|x| x.incarnation == incarnation && x.up.is_some())
    }

    /// A message's delay from `from` to `to`, or `None` when it does not
    /// arrive (lost, or the link is cut).
    fn send(&mut self, from: i32, to: i32) -> Option<u64> {
        if self.cut.contains(&(from, to)) || self.rng.per_mille(self.loss_per_mille) {
            return None;
        }
        Some(if self.rng.percent(5) {
            self.rng.range(20, 600)
        } else {
            self.rng.range(0, 5)
        })
    }

    // -- the controller ---------------------------------------------------

    fn controller_apply(&mut self, command: MetadataCommand) -> CommandResult {
        self.index += 1;
        let mut image = (*self.image).clone();
        let result = commands::apply(&mut image, &command, self.index);
        if let Some(p) = image.partition(TOPIC, 0) {
            self.trace.event(
                self.now_ms,
                format_args!(
                    "controller {}: {command:?} -> {result:?}; leader {} epoch {} isr {:?} partition epoch {}",
                    self.index, p.leader, p.leader_epoch, p.isr, p.partition_epoch
                ),
            );
        } else {
            self.trace.event(
                self.now_ms,
                format_args!("controller {}: {command:?} -> {result:?}", self.index),
            );
        }
        self.image = Arc::new(image);
        // Brokers long-poll for new images: each gets this one soon.
        for b in BROKERS {
            if let Some(broker) = self.brokers.get(&b) {
                if broker.up.is_some() {
                    let incarnation = broker.incarnation;
                    if let Some(delay) = self.send(CONTROLLER, b) {
                        let image = self.image.clone();
                        self.schedule(
                            delay,
                            Event::ImageArrives {
                                broker: b,
                                incarnation,
                                image,
                            },
                        );
                    }
                }
            }
        }
        result
    }

    fn fenced(&self, b: i32) -> bool {
        self.image.brokers.get(&b).is_none_or(|r| r.fenced)
    }

    // -- brokers ------------------------------------------------------------

    fn start_broker(&mut self, b: i32) -> Result<(), String> {
        let Some(broker) = self.brokers.get_mut(&b) else {
            return Err(format!("no broker {b}"));
        };
        broker.incarnation += 1;
        let incarnation = broker.incarnation;
        let log = Log::open(
            broker.dir.join(format!("{TOPIC}-0")),
            self.log_config.clone(),
        )
        .map_err(|e| format!("broker {b} could not open its log: {e}"))?;
        // As the replica manager: the checkpointed high watermark, never
        // above the log end; a follower of nobody until an image arrives.
        let high_watermark = broker.checkpointed_high_watermark.min(log.log_end_offset());
        let leo = log.log_end_offset();
        let view = PartitionView {
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: BROKERS.to_vec(),
            isr: Vec::new(),
            min_insync_replicas: self.log_config.min_insync_replicas,
            fenced: Vec::new(),
        };
        let replica = Arc::new(SimReplica {
            log,
            replication: PartitionReplication::new(b, view, high_watermark),
        });
        let source = Arc::new(OnePartition {
            tp: self.tp.clone(),
            replica: replica.clone(),
        });
        broker.up = Some(Up {
            replica,
            source,
            broker_epoch: -1,
            image: Arc::new(MetadataImage::default()),
            fetching: false,
            refusals: HashMap::new(),
            leading: None,
        });
        self.event(format_args!(
            "broker {b} starts (incarnation {incarnation}): log end {leo}, high watermark {high_watermark}"
        ));
        let jitter = self.rng.range(0, 50);
        self.schedule(
            jitter,
            Event::FetchRound {
                broker: b,
                incarnation,
            },
        );
        self.schedule(
            jitter + 1,
            Event::IsrTick {
                broker: b,
                incarnation,
            },
        );
        self.schedule(
            jitter + 2,
            Event::Heartbeat {
                broker: b,
                incarnation,
            },
        );
        self.schedule(
            jitter + 3,
            Event::MetadataPoll {
                broker: b,
                incarnation,
            },
        );
        self.schedule(
            CHECKPOINT_INTERVAL_MS,
            Event::Checkpoint {
                broker: b,
                incarnation,
            },
        );
        Ok(())
    }

    fn crash_broker(&mut self, b: i32) {
        let torn = self.rng.percent(30);
        let Some(broker) = self.brokers.get_mut(&b) else {
            return;
        };
        let Some(up) = broker.up.take() else {
            return;
        };
        let log = &up.replica.log;
        broker.at_crash = (log.epoch_entries(), log.log_end_offset());
        let dir = log.dir().to_path_buf();
        let incarnation = broker.incarnation;
        // Waiters die with the process.
        drop(up);
        self.waiters.retain(|w| w.broker != b);
        self.figures.crashes += 1;
        let mut torn_bytes = 0;
        if torn {
            // A write cut short by the crash: part of a batch header past
            // the last whole batch of the active segment.
            if let Some(segment) = active_segment(&dir) {
                let garbage: Vec<u8> = (0..self.rng.range(1, 60))
                    .map(|_| self.rng.below(256) as u8)
                    .collect();
                use std::io::Write as _;
                let appended = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&segment)
                    .and_then(|mut f| f.write_all(&garbage));
                if appended.is_ok() {
                    torn_bytes = garbage.len();
                    self.figures.torn_tails += 1;
                }
            }
        }
        self.event(format_args!(
            "broker {b} crashes (kill -9){}",
            if torn_bytes > 0 {
                format!(", leaving {torn_bytes} torn bytes")
            } else {
                String::new()
            }
        ));
        if self.rng.percent(70) {
            let after = self.rng.range(5, 200);
            self.schedule(
                after,
                Event::Probe {
                    broker: b,
                    incarnation,
                },
            );
        }
        let downtime = self.rng.range(50, 6_000);
        self.schedule(downtime, Event::Restart(b));
    }

    /// As `ReplicaManager::apply_image` for the one partition.
    fn broker_apply_image(&mut self, b: i32, image: Arc<MetadataImage>) {
        let now = self.now();
        let Some(record) = image.partition(TOPIC, 0).cloned() else {
            return;
        };
        let min_insync_replicas = image
            .topics
            .get(TOPIC)
            .map(|t| LogConfig::resolve(&t.configs, &BTreeMap::new()).min_insync_replicas)
            .unwrap_or(1);
        let Some(up) = self.up_mut(b) else {
            return;
        };
        if image.version <= up.image.version {
            // A broker never goes back to an older image.
            return;
        }
        up.image = image.clone();
        let view = PartitionView {
            leader: record.leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
            min_insync_replicas,
            fenced: record
                .replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).is_none_or(|x| x.fenced))
                .collect(),
        };
        let replication = &up.replica.replication;
        let before = replication.view();
        let leo = up.replica.log.log_end_offset();
        replication.apply_view(view.clone(), leo, now);
        let became_leader =
            view.leader == b && (before.leader != b || before.leader_epoch != view.leader_epoch);
        if became_leader {
            up.leading = None;
        }
        if before.leader != view.leader || before.leader_epoch != view.leader_epoch {
            self.event(format_args!(
                "broker {b} applies image {}: leader {} epoch {} isr {:?}",
                image.version, view.leader, view.leader_epoch, view.isr
            ));
        }
        if became_leader {
            self.figures.leader_changes += 1;
            self.check_new_leader(b);
        }
    }

    // -- the events -----------------------------------------------------------

    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Fault => self.fault()?,
            Event::Restart(b) => {
                if self.up(b).is_none() {
                    self.start_broker(b)?;
                    let incarnation = self.incarnation(b);
                    self.schedule(
                        0,
                        Event::Register {
                            broker: b,
                            incarnation,
                        },
                    );
                }
            }
            Event::Produce => {
                self.produce();
                let next = self.rng.range(10, 150);
                self.schedule(next, Event::Produce);
            }
            Event::FetchRound {
                broker,
                incarnation,
            } => self.fetch_round(broker, incarnation),
            Event::FetchAtLeader {
                follower,
                leader,
                request,
                deadline_ms,
            } => self.fetch_at_leader(follower, leader, request, deadline_ms),
            Event::FetchAnswer {
                follower,
                incarnation,
                leader,
                request,
                response,
            } => self.fetch_answer(follower, incarnation, leader, *request, response),
            Event::IsrTick {
                broker,
                incarnation,
            } => {
                if self.is_current(broker, incarnation) {
                    self.isr_tick(broker, incarnation);
                    self.schedule(
                        ISR_CHECK_MS,
                        Event::IsrTick {
                            broker,
                            incarnation,
                        },
                    );
                }
            }
            Event::AlterPartition {
                broker,
                incarnation,
                change,
            } => self.alter_partition(broker, incarnation, change),
            Event::AlterPartitionRefused {
                broker,
                incarnation,
                partition_epoch,
            } => {
                if self.is_current(broker, incarnation) {
                    if let Some(up) = self.up(broker) {
                        up.replica.replication.isr_change_failed(partition_epoch);
                    }
                }
            }
            Event::MetadataPoll {
                broker,
                incarnation,
            } => {
                if self.is_current(broker, incarnation) {
                    if let Some(delay) = self.send(CONTROLLER, broker) {
                        let image = self.image.clone();
                        self.schedule(
                            delay,
                            Event::ImageArrives {
                                broker,
                                incarnation,
                                image,
                            },
                        );
                    }
                    let next = self.rng.range(100, 1_000);
                    self.schedule(
                        next,
                        Event::MetadataPoll {
                            broker,
                            incarnation,
                        },
                    );
                }
            }
            Event::ImageArrives {
                broker,
                incarnation,
                image,
            } => {
                if self.is_current(broker, incarnation) {
                    self.broker_apply_image(broker, image);
                }
            }
            Event::Register {
                broker,
                incarnation,
            } => {
                if self.is_current(broker, incarnation) {
                    match self.send(broker, CONTROLLER) {
                        Some(delay) => {
                            // The registration is applied when it arrives;
                            // modelled as applied now, answered after both
                            // delays.
                            let result = self.controller_apply(register(broker, incarnation));
                            if let CommandResult::BrokerEpoch(e) = result {
                                self.last_heartbeat.insert(broker, self.now_ms);
                                let back = self.send(CONTROLLER, broker);
                                match back {
                                    Some(d) => self.schedule(
                                        delay + d,
                                        Event::Registered {
                                            broker,
                                            incarnation,
                                            broker_epoch: e,
                                        },
                                    ),
                                    None => self.schedule(
                                        1_000,
                                        Event::Register {
                                            broker,
                                            incarnation,
                                        },
                                    ),
                                }
                            }
                        }
                        None => self.schedule(
                            500,
                            Event::Register {
                                broker,
                                incarnation,
                            },
                        ),
                    }
                }
            }
            Event::Registered {
                broker,
                incarnation,
                broker_epoch,
            } => {
                if self.is_current(broker, incarnation) {
                    if let Some(up) = self.up_mut(broker) {
                        up.broker_epoch = up.broker_epoch.max(broker_epoch);
                    }
                    self.event(format_args!(
                        "broker {broker} registered with broker epoch {broker_epoch}"
                    ));
                }
            }
            Event::Heartbeat {
                broker,
                incarnation,
            } => {
                if let Some(up) = self
                    .up(broker)
                    .filter(|_| self.is_current(broker, incarnation))
                {
                    let (broker_epoch, image_version) = (up.broker_epoch, up.image.version);
                    if broker_epoch >= 0 {
                        if let Some(delay) = self.send(broker, CONTROLLER) {
                            self.schedule(
                                delay,
                                Event::HeartbeatArrives {
                                    broker,
                                    broker_epoch,
                                    image_version,
                                },
                            );
                        }
                    }
                    self.schedule(
                        HEARTBEAT_INTERVAL_MS,
                        Event::Heartbeat {
                            broker,
                            incarnation,
                        },
                    );
                }
            }
            Event::HeartbeatArrives {
                broker,
                broker_epoch,
                image_version,
            } => {
                let current = self.image.broker_epochs.get(&broker).copied();
                if current == Some(broker_epoch) {
                    self.last_heartbeat.insert(broker, self.now_ms);
                    if self.fenced(broker) && image_version >= broker_epoch as u64 {
                        self.controller_apply(MetadataCommand::UnfenceBroker { broker_id: broker });
                    }
                }
            }
            Event::SessionCheck => {
                for b in BROKERS {
                    let last = self.last_heartbeat.get(&b).copied().unwrap_or(0);
                    if !self.fenced(b) && self.now_ms.saturating_sub(last) > SESSION_TIMEOUT_MS {
                        self.controller_apply(MetadataCommand::FenceBroker { broker_id: b });
                    }
                }
                self.schedule(SESSION_CHECK_MS, Event::SessionCheck);
            }
            Event::Probe {
                broker,
                incarnation,
            } => {
                // Nothing listens any more: the crashed incarnation is
                // still the last one, and it is down.
                if self.incarnation(broker) == incarnation
                    && self.up(broker).is_none()
                    && !self.fenced(broker)
                {
                    self.controller_apply(MetadataCommand::FenceBroker { broker_id: broker });
                }
            }
            Event::Checkpoint {
                broker,
                incarnation,
            } => {
                if self.is_current(broker, incarnation) {
                    let hw = self
                        .up(broker)
                        .map_or(0, |up| up.replica.replication.high_watermark());
                    if let Some(x) = self.brokers.get_mut(&broker) {
                        x.checkpointed_high_watermark = hw;
                    }
                    self.schedule(
                        CHECKPOINT_INTERVAL_MS,
                        Event::Checkpoint {
                            broker,
                            incarnation,
                        },
                    );
                }
            }
            Event::PreferredElection => {
                if self.faults_on {
                    self.controller_apply(MetadataCommand::ElectPreferredLeaders {
                        partitions: None,
                    });
                }
                let next = self.rng.range(1_000, 5_000);
                self.schedule(next, Event::PreferredElection);
            }
        }
        Ok(())
    }

    fn fault(&mut self) -> Result<(), String> {
        if !self.faults_on {
            return Ok(());
        }
        let up: Vec<i32> = BROKERS
            .iter()
            .copied()
            .filter(|b| self.up(*b).is_some())
            .collect();
        let nodes = [CONTROLLER, 1, 2, 3];
        match self.rng.below(12) {
            0..=3 => {
                if let Some(b) = self.rng.pick(&up) {
                    self.crash_broker(b);
                }
            }
            4 => {
                // Cut one broker off from everyone, controller included.
                let b = self.rng.pick(&BROKERS).unwrap_or(1);
                for n in nodes.iter().filter(|n| **n != b) {
                    self.cut.insert((b, *n));
                    self.cut.insert((*n, b));
                }
                self.figures.partitions += 1;
                self.event(format_args!("partition: broker {b} cut off"));
            }
            5 => {
                // Cut one broker off from the controller only.
                let b = self.rng.pick(&BROKERS).unwrap_or(1);
                self.cut.insert((b, CONTROLLER));
                self.cut.insert((CONTROLLER, b));
                self.figures.partitions += 1;
                self.event(format_args!(
                    "partition: broker {b} cut off from the controller"
                ));
            }
            6 => {
                // Cut one link between two brokers, one way or both.
                let a = self.rng.pick(&BROKERS).unwrap_or(1);
                let b = self.rng.pick(&BROKERS).unwrap_or(2);
                if a != b {
                    self.cut.insert((a, b));
                    let both = self.rng.percent(50);
                    if both {
                        self.cut.insert((b, a));
                    }
                    self.figures.partitions += 1;
                    self.event(format_args!(
                        "partition: link {a}{}{b} cut",
                        if both { "<->" } else { "->" }
                    ));
                }
            }
            7 | 8 => {
                self.cut.clear();
                self.event(format_args!("network healed"));
            }
            9 => {
                let loss = self.rng.pick(&[0, 0, 20, 100, 300]).unwrap_or(0);
                self.loss_per_mille = loss;
                self.event(format_args!("message loss now {loss}‰"));
            }
            _ => {}
        }
        let next = self.rng.range(200, 2_500);
        self.schedule(next, Event::Fault);
        Ok(())
    }

    /// A client's produce (acks=all) to the broker it thinks leads, or
    /// sometimes to any broker; the produce handler's steps.
    fn produce(&mut self) {
        let named = self.image.partition(TOPIC, 0).map_or(-1, |p| p.leader);
        let target = if self.rng.percent(85) && named >= 0 {
            named
        } else {
            self.rng.pick(&BROKERS).unwrap_or(1)
        };
        let now_ms = EPOCH_MS + self.now_ms as i64;
        self.next_produce += 1;
        let id = self.next_produce;
        let count = self.rng.range(1, 4) as i64;
        let incarnation = self.incarnation(target);
        let Some(up) = self.up(target) else {
            return;
        };
        let Some(record) = up.image.partition(TOPIC, 0) else {
            return;
        };
        let replication = &up.replica.replication;
        if record.leader != target || !replication.is_leader() {
            return;
        }
        if (record.isr.len() as i32) < self.log_config.min_insync_replicas {
            return;
        }
        let records = produce_batch(id, count, now_ms);
        let batches = match batch::validate_all(&records) {
            Ok(b) => b,
            Err(e) => {
                self.fail(format!("a produced batch does not validate: {e}"));
                return;
            }
        };
        let epoch = replication.leader_epoch();
        let log = &up.replica.log;
        let info = match log.append_as_leader(batches, epoch, now_ms) {
            Ok(info) => info,
            Err(e) => {
                self.fail(format!("broker {target} could not append as leader: {e}"));
                return;
            }
        };
        replication.on_leader_append(log.log_end_offset());
        let stored = log
            .read(info.base_offset, 1 << 20, info.last_offset + 1, true)
            .ok()
            .and_then(|bytes| batch::validate_all(&bytes).ok())
            .and_then(|b| b.into_iter().next());
        let Some((header, bytes)) = stored else {
            self.fail(format!(
                "broker {target} cannot read back the batch it appended at {}",
                info.base_offset
            ));
            return;
        };
        let batch = BatchInfo {
            base: header.base_offset,
            last: header.last_offset(),
            epoch: header.partition_leader_epoch,
            content: content_hash(&bytes),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let replica = up.replica.clone();
        let last = info.last_offset;
        let wait = Box::pin(async move {
            replica
                .replication
                .wait_committed(last, epoch, deadline)
                .await
        });
        self.figures.produced += 1;
        self.event(format_args!(
            "produce p{id} ({count} records) appended by broker {target} at {}..={} epoch {epoch}",
            batch.base, batch.last
        ));
        match self.epoch_leader.get(&epoch) {
            Some(other) if *other != target => self.fail(format!(
                "two leaders in leader epoch {epoch}: brokers {other} and {target} both appended"
            )),
            _ => {
                self.epoch_leader.insert(epoch, target);
            }
        }
        if let Some(previous) = self.written.insert((epoch, batch.base), batch) {
            self.fail(format!(
                "two batches written at offset {} in epoch {epoch}: {previous:?} and {batch:?}",
                batch.base
            ));
        }
        self.waiters.push(Waiter {
            id,
            broker: target,
            incarnation,
            batch,
            deadline_ms: self.now_ms + PRODUCE_TIMEOUT_MS,
            next_poll_ms: self.now_ms,
            wait,
        });
    }

    fn fetch_round(&mut self, b: i32, incarnation: u64) {
        if !self.is_current(b, incarnation) {
            return;
        }
        let Some(up) = self.up(b) else { return };
        let view = up.replica.replication.view();
        if up.fetching || up.broker_epoch < 0 || view.leader < 0 || view.leader == b {
            // Nothing to fetch from (yet): look again soon.
            self.schedule(
                FETCH_RETRY_BACKOFF_MS,
                Event::FetchRound {
                    broker: b,
                    incarnation,
                },
            );
            return;
        }
        let assigned = BTreeMap::from([(self.tp.clone(), view.leader_epoch)]);
        let request =
            fetcher::fetch_request(&*up.source, b, &assigned, up.broker_epoch, &self.config);
        if let Some(up) = self.up_mut(b) {
            up.fetching = true;
        }
        let leader = view.leader;
        match self.send(b, leader) {
            Some(delay) => {
                let deadline_ms = self.now_ms + delay + u64::from(request.max_wait_ms);
                self.schedule(
                    delay,
                    Event::FetchAtLeader {
                        follower: b,
                        leader,
                        request,
                        deadline_ms,
                    },
                );
            }
            None => {
                // No answer: the call times out.
                let timeout =
                    u64::from(self.config.replica_fetch_wait_max_ms) + self.rng.range(1_000, 5_000);
                self.schedule(
                    timeout,
                    Event::FetchAnswer {
                        follower: b,
                        incarnation,
                        leader,
                        request: Box::new(request),
                        response: None,
                    },
                );
            }
        }
    }

    fn fetch_at_leader(
        &mut self,
        follower: i32,
        leader: i32,
        request: pb::FetchRequest,
        deadline_ms: u64,
    ) {
        let follower_incarnation = self.incarnation(follower);
        let now = self.now();
        let Some(up) = self.up(leader) else {
            // Connection refused.
            let after = self.rng.range(1, 20);
            self.schedule(
                after,
                Event::FetchAnswer {
                    follower,
                    incarnation: follower_incarnation,
                    leader,
                    request: Box::new(request),
                    response: None,
                },
            );
            return;
        };
        let mut watched = Vec::new();
        let (partitions, bytes, urgent) =
            leader::read_once(&*up.source, &request, &mut watched, now);
        let enough = urgent || bytes >= request.min_bytes.max(0) as usize;
        if !enough && self.now_ms < deadline_ms {
            // Long poll: the leader looks again when something changes,
            // here at a random later moment before the deadline.
            let again = self.rng.range(5, 150).min(deadline_ms - self.now_ms);
            self.schedule(
                again,
                Event::FetchAtLeader {
                    follower,
                    leader,
                    request,
                    deadline_ms,
                },
            );
            return;
        }
        let response = pb::FetchResponse { partitions };
        match self.send(leader, follower) {
            Some(delay) => self.schedule(
                delay,
                Event::FetchAnswer {
                    follower,
                    incarnation: follower_incarnation,
                    leader,
                    request: Box::new(request),
                    response: Some(response),
                },
            ),
            None => {
                let timeout = self.rng.range(1_000, 5_000);
                self.schedule(
                    timeout,
                    Event::FetchAnswer {
                        follower,
                        incarnation: follower_incarnation,
                        leader,
                        request: Box::new(request),
                        response: None,
                    },
                );
            }
        }
    }

    fn fetch_answer(
        &mut self,
        follower: i32,
        incarnation: u64,
        leader: i32,
        request: pb::FetchRequest,
        response: Option<pb::FetchResponse>,
    ) {
        if !self.is_current(follower, incarnation) {
            return;
        }
        let progressed = match response {
            Some(response) => {
                let summary = response
                    .partitions
                    .first()
                    .map(|p| {
                        format!(
                            "code {} hw {} leo {} bytes {} diverging {:?}",
                            p.error_code,
                            p.high_watermark,
                            p.log_end_offset,
                            p.records.len(),
                            p.diverging_epoch.as_ref().map(|d| (d.epoch, d.end_offset))
                        )
                    })
                    .unwrap_or_default();
                let Some(up) = self.brokers.get_mut(&follower).and_then(|x| x.up.as_mut()) else {
                    return;
                };
                let leo_before = up.replica.log.log_end_offset();
                let progressed = fetcher::apply_fetch_response(
                    &*up.source,
                    leader,
                    &request,
                    response,
                    &mut up.refusals,
                );
                let leo_after = up.replica.log.log_end_offset();
                let hw = up.replica.replication.high_watermark();
                if leo_after < leo_before {
                    self.figures.truncations += 1;
                }
                let offset = request.partitions.first().map_or(-1, |p| p.fetch_offset);
                self.event(format_args!(
                    "broker {follower} fetched from {leader} at {offset}: {summary}; log end {leo_before} -> {leo_after}, hw {hw}"
                ));
                progressed
            }
            None => false,
        };
        if let Some(up) = self.up_mut(follower) {
            up.fetching = false;
        }
        let pause = if progressed {
            self.rng.range(0, 5)
        } else {
            FETCH_RETRY_BACKOFF_MS
        };
        self.schedule(
            pause,
            Event::FetchRound {
                broker: follower,
                incarnation,
            },
        );
    }

    fn isr_tick(&mut self, b: i32, incarnation: u64) {
        let now = self.now();
        let lag = self.config.replica_lag_time_max;
        let Some(up) = self.up(b) else { return };
        let leo = up.replica.log.log_end_offset();
        let Some(change) = up.replica.replication.isr_change_due(leo, now, lag) else {
            return;
        };
        self.event(format_args!(
            "broker {b} proposes ISR {:?} at partition epoch {} (added {:?})",
            change.isr, change.partition_epoch, change.added_broker_epochs
        ));
        match self.send(b, CONTROLLER) {
            Some(delay) => self.schedule(
                delay,
                Event::AlterPartition {
                    broker: b,
                    incarnation,
                    change,
                },
            ),
            None => {
                // The call times out: the leader drops the proposal.
                let timeout = self.rng.range(1_000, 5_000);
                let partition_epoch = change.partition_epoch;
                self.schedule(
                    timeout,
                    Event::AlterPartitionRefused {
                        broker: b,
                        incarnation,
                        partition_epoch,
                    },
                );
            }
        }
    }

    fn alter_partition(&mut self, b: i32, incarnation: u64, change: IsrChange) {
        let partition_epoch = change.partition_epoch;
        let result = self.controller_apply(MetadataCommand::AlterPartition {
            topic: TOPIC.to_string(),
            partition: 0,
            leader_id: b,
            partition_epoch,
            isr: change.isr,
            added_broker_epochs: change.added_broker_epochs,
        });
        let refused = matches!(result, CommandResult::Error { .. });
        match self.send(CONTROLLER, b) {
            Some(delay) if refused => self.schedule(
                delay,
                Event::AlterPartitionRefused {
                    broker: b,
                    incarnation,
                    partition_epoch,
                },
            ),
            Some(_) => {}
            None => {
                // The answer is lost: the call fails, the leader drops its
                // proposal (the change, if made, arrives with the image).
                let timeout = self.rng.range(1_000, 5_000);
                self.schedule(
                    timeout,
                    Event::AlterPartitionRefused {
                        broker: b,
                        incarnation,
                        partition_epoch,
                    },
                );
            }
        }
    }

    /// Polls the acks=all waiters whose task runs now: a few
    /// milliseconds after its last poll, sometimes seconds (a starved
    /// runtime).
    fn poll_waiters(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut i = 0;
        while i < self.waiters.len() {
            let (broker, incarnation, deadline) = {
                let w = &self.waiters[i];
                (w.broker, w.incarnation, w.deadline_ms)
            };
            if !self.is_current(broker, incarnation) {
                self.waiters.swap_remove(i);
                self.figures.not_acknowledged += 1;
                continue;
            }
            if self.now_ms >= deadline {
                let w = self.waiters.swap_remove(i);
                self.figures.not_acknowledged += 1;
                self.event(format_args!("produce p{} timed out", w.id));
                continue;
            }
            if self.now_ms < self.waiters[i].next_poll_ms {
                i += 1;
                continue;
            }
            match self.waiters[i].wait.as_mut().poll(&mut cx) {
                Poll::Pending => {
                    // Woken or not, the task runs again a little later,
                    // now and then much later (a starved runtime).
                    let delay = if self.rng.percent(3) {
                        self.rng.range(100, 5_000)
                    } else {
                        self.rng.range(0, 5)
                    };
                    self.waiters[i].next_poll_ms = self.now_ms + delay;
                    i += 1;
                }
                Poll::Ready(outcome) => {
                    let w = self.waiters.swap_remove(i);
                    match outcome {
                        Ok(()) => {
                            self.figures.acknowledged += 1;
                            self.event(format_args!(
                                "produce p{} acknowledged by broker {}: {}..={} epoch {}",
                                w.id, w.broker, w.batch.base, w.batch.last, w.batch.epoch
                            ));
                            self.acknowledged.push(w.batch);
                        }
                        Err(e) => {
                            self.figures.not_acknowledged += 1;
                            self.event(format_args!("produce p{} failed: {e:?}", w.id));
                        }
                    }
                }
            }
        }
    }

    // -- invariants -------------------------------------------------------------

    /// Every log's leader-epoch ranges: live logs as they are, crashed
    /// ones as they were left.
    fn all_epoch_ranges(&self) -> Vec<(i32, EpochRanges, i64)> {
        BROKERS
            .iter()
            .filter_map(|b| {
                let broker = self.brokers.get(b)?;
                let (entries, leo) = match &broker.up {
                    Some(up) => (
                        up.replica.log.epoch_entries(),
                        up.replica.log.log_end_offset(),
                    ),
                    None => broker.at_crash.clone(),
                };
                Some((*b, epoch_ranges(&entries, leo), leo))
            })
            .collect()
    }

    fn check(&mut self) {
        let ranges = self.all_epoch_ranges();
        let leo_of: BTreeMap<i32, i64> = ranges.iter().map(|(b, _, leo)| (*b, *leo)).collect();
        // Log matching at the epoch level.
        for (i, (a, ra, leo_a)) in ranges.iter().enumerate() {
            for (b, rb, leo_b) in ranges.iter().skip(i + 1) {
                let common = (*leo_a).min(*leo_b);
                // Offsets where the epochs differ, and the highest where they agree.
                let mut first_difference: Option<i64> = None;
                let mut boundaries: BTreeSet<i64> = BTreeSet::new();
                for (s, e, _) in ra.iter().chain(rb.iter()) {
                    boundaries.insert(*s);
                    boundaries.insert(*e);
                }
                for start in boundaries.into_iter().filter(|o| *o < common) {
                    let (ea, eb) = (epoch_at(ra, start), epoch_at(rb, start));
                    if ea.is_none() || eb.is_none() {
                        continue;
                    }
                    if ea != eb {
                        first_difference.get_or_insert(start);
                    } else if let Some(d) = first_difference {
                        self.fail(format!(
                            "log matching: brokers {a} and {b} both hold epoch {ea:?} at offset {start} but differ at {d} below it"
                        ));
                        return;
                    }
                }
            }
        }
        // Leaders' high watermarks.
        let mut findings = Vec::new();
        for b in BROKERS {
            let Some(up) = self.up(b) else { continue };
            let replication = &up.replica.replication;
            let view = replication.view();
            if view.leader != b {
                continue;
            }
            let hw = replication.high_watermark();
            let leo = up.replica.log.log_end_offset();
            if let Some((epoch, previous)) = up.leading {
                if epoch == view.leader_epoch && hw < previous {
                    findings.push(format!(
                        "broker {b}'s high watermark went back from {previous} to {hw} while leading epoch {epoch}"
                    ));
                }
            }
            if hw > leo {
                findings.push(format!(
                    "broker {b}'s high watermark {hw} is above its log end offset {leo}"
                ));
            }
            for m in &view.isr {
                if let Some(member_leo) = leo_of.get(m) {
                    if hw > *member_leo {
                        findings.push(format!(
                            "broker {b} leads epoch {} with high watermark {hw} above the log end offset {member_leo} of ISR member {m}",
                            view.leader_epoch
                        ));
                    }
                }
            }
            let epoch = view.leader_epoch;
            if let Some(up) = self.up_mut(b) {
                up.leading = Some((epoch, hw));
            }
        }
        for f in findings {
            self.fail(f);
        }
    }

    /// Every batch of every live log is the one its epoch's leader wrote.
    fn check_logs(&mut self) {
        self.figures.full_checks += 1;
        let mut findings = Vec::new();
        for b in BROKERS {
            let Some(up) = self.up(b) else { continue };
            match scan(&up.replica.log) {
                Ok(batches) => {
                    for batch in batches {
                        match self.written.get(&(batch.epoch, batch.base)) {
                            Some(w) if *w == batch => {}
                            Some(w) => findings.push(format!(
                                "broker {b} holds {batch:?} where the leader of epoch {} wrote {w:?}",
                                batch.epoch
                            )),
                            None => findings.push(format!(
                                "broker {b} holds {batch:?}, which no leader wrote"
                            )),
                        }
                    }
                }
                Err(e) => findings.push(format!("broker {b}'s log cannot be read: {e}")),
            }
        }
        for f in findings {
            self.fail(f);
        }
    }

    /// A new leader holds every acknowledged batch.
    fn check_new_leader(&mut self, b: i32) {
        let Some(up) = self.up(b) else { return };
        let epoch = up.replica.replication.leader_epoch();
        let batches = match scan(&up.replica.log) {
            Ok(batches) => batches,
            Err(e) => {
                self.fail(format!("broker {b}'s log cannot be read: {e}"));
                return;
            }
        };
        let by_base: BTreeMap<i64, BatchInfo> = batches.iter().map(|x| (x.base, *x)).collect();
        let missing: Vec<BatchInfo> = self
            .acknowledged
            .iter()
            .filter(|a| by_base.get(&a.base) != Some(*a))
            .copied()
            .collect();
        if let Some(a) = missing.first() {
            let held = by_base.get(&a.base).copied();
            self.fail(format!(
                "broker {b} leads epoch {epoch} without the acknowledged batch {a:?} (it holds {held:?} there): an acknowledged write was lost or rewritten"
            ));
        }
        self.check_logs();
    }

    // -- the run --------------------------------------------------------------

    fn step(&mut self) -> Result<bool, String> {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return Ok(false);
        };
        self.now_ms = at;
        self.figures.events += 1;
        self.handle(event)?;
        self.poll_waiters();
        self.check();
        self.events_since_full_check += 1;
        if self.events_since_full_check >= FULL_CHECK_EVERY_EVENTS {
            self.events_since_full_check = 0;
            self.check_logs();
        }
        Ok(true)
    }

    fn run(&mut self) -> Result<(), String> {
        while self.now_ms < FAULT_PHASE_MS {
            if !self.step()? {
                break;
            }
            if let Some(f) = &self.failure {
                return Err(f.clone());
            }
        }
        // Heal: the network whole, every broker up.
        self.faults_on = false;
        self.cut.clear();
        self.loss_per_mille = 0;
        self.event(format_args!("healing: network whole, every broker up"));
        for b in BROKERS {
            if self.up(b).is_none() {
                self.start_broker(b)?;
                let incarnation = self.incarnation(b);
                self.schedule(
                    0,
                    Event::Register {
                        broker: b,
                        incarnation,
                    },
                );
            }
        }
        let heal_end = self.now_ms + HEAL_PHASE_MAX_MS;
        let acknowledged_before = self.acknowledged.len();
        while self.now_ms < heal_end {
            if !self.step()? {
                break;
            }
            if let Some(f) = &self.failure {
                return Err(f.clone());
            }
            if self.acknowledged.len() > acknowledged_before && self.converged() {
                self.check_logs();
                let leader = self.image.partition(TOPIC, 0).map_or(-1, |p| p.leader);
                self.check_new_leader(leader);
                if let Some(f) = &self.failure {
                    return Err(f.clone());
                }
                self.event(format_args!("converged"));
                return Ok(());
            }
        }
        let state: Vec<String> = BROKERS
            .iter()
            .map(|b| match self.up(*b) {
                Some(up) => format!(
                    "broker {b}: log end {} hw {} view {:?}",
                    up.replica.log.log_end_offset(),
                    up.replica.replication.high_watermark(),
                    up.replica.replication.view()
                ),
                None => format!("broker {b}: down"),
            })
            .collect();
        Err(format!(
            "no acknowledged write and equal logs within {} s of healing: {}",
            HEAL_PHASE_MAX_MS / 1000,
            state.join("; ")
        ))
    }

    /// Every broker up, in the ISR, with the same log, and the leader's
    /// high watermark at its end.
    fn converged(&self) -> bool {
        let Some(record) = self.image.partition(TOPIC, 0) else {
            return false;
        };
        if record.isr.len() != BROKERS.len() || record.leader < 0 {
            return false;
        }
        let mut ends = BTreeSet::new();
        for b in BROKERS {
            let Some(up) = self.up(b) else { return false };
            ends.insert((
                up.replica.log.log_end_offset(),
                up.replica.log.epoch_entries(),
            ));
        }
        let Some(leader) = self.up(record.leader) else {
            return false;
        };
        ends.len() == 1
            && leader.replica.replication.high_watermark() == leader.replica.log.log_end_offset()
    }
}

fn register(b: i32, incarnation: u64) -> MetadataCommand {
    MetadataCommand::RegisterBroker {
        broker_id: b,
        incarnation_id: format!("broker-{b}-incarnation-{incarnation}"),
        host: format!("broker-{b}"),
        port: 9092,
        rack: None,
        replication_endpoint: Some(format!("broker-{b}:10092")),
        http_endpoint: None,
        listeners: Vec::new(),
    }
}

/// The active (last) segment file of a log directory.
fn active_segment(dir: &Path) -> Option<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop()
}

/// Where the logs live: a tmpfs when the machine has one (no disk writes,
/// fsync is free), else the temporary directory.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("kraftwerk-sim-")
            .tempdir_in(shm)
        {
            return Ok(dir);
        }
    }
    tempfile::Builder::new().prefix("kraftwerk-sim-").tempdir()
}

/// Runs one seed of the replication simulation.
pub fn run(seed: u64, verbose: bool) -> Result<RunSummary, RunFailure> {
    let setup_failure = |message: String| RunFailure {
        message,
        trace_tail: String::new(),
    };
    // acks=all waiters sleep on tokio's clock, which needs a runtime; its
    // paused clock never moves (no task runs on it).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| setup_failure(format!("no tokio runtime: {e}")))?;
    let _entered = runtime.enter();
    let dir = scratch_dir().map_err(|e| setup_failure(format!("no scratch directory: {e}")))?;
    let mut sim = Sim::new(seed, verbose, dir.path()).map_err(setup_failure)?;
    let result = sim.run();
    sim.waiters.clear();
    match result {
        Ok(()) => {
            let f = &sim.figures;
            Ok(RunSummary {
                trace_hash: sim.trace.hash(),
                events: sim.trace.events(),
                figures: vec![
                    ("events", f.events),
                    ("produced", f.produced),
                    ("acknowledged", f.acknowledged),
                    ("not_acknowledged", f.not_acknowledged),
                    ("crashes", f.crashes),
                    ("torn_tails", f.torn_tails),
                    ("partitions", f.partitions),
                    ("leader_changes", f.leader_changes),
                    ("truncations", f.truncations),
                    ("full_checks", f.full_checks),
                ],
            })
        }
        Err(message) => Err(RunFailure {
            message,
            trace_tail: sim.trace.tail(),
        }),
    }
}
