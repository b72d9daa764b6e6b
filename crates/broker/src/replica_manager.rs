//! The partitions this broker stores, and how they follow the metadata image.
//!
//! Every change of the image goes through [`ReplicaManager::apply_image`]:
//! new partitions get a log, deleted topics lose theirs, config changes
//! reach the logs, and each partition's replication state learns its
//! leader, epochs and ISR. Partitions led elsewhere are handed to the
//! follower fetchers (`kraftwerk-replication`); the high watermark is the
//! ISR's minimum log end offset (on a single node, the log end offset).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kraftwerk_replication::fetcher::{FetcherManager, FollowAssignment};
use kraftwerk_replication::{
    checkpoint, BrokerEpoch, LocalReplica, PartitionReplication, PartitionView, ReplicaSource,
};
use kraftwerk_storage::{Log, StorageError};
use kraftwerk_types::{BrokerConfig, ErrorCode, TopicId, TopicPartition};
use parking_lot::RwLock;

use crate::metadata::MetadataImage;
pub use crate::partition::Partition;

/// The partitions, shared with the replication tasks.
pub struct PartitionTable {
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

impl ReplicaSource for PartitionTable {
    fn replica(&self, tp: &TopicPartition) -> Option<Arc<dyn LocalReplica>> {
        self.partitions
            .read()
            .get(tp)
            .map(|p| p.clone() as Arc<dyn LocalReplica>)
    }

    fn all_replicas(&self) -> Vec<(TopicPartition, Arc<dyn LocalReplica>)> {
        self.partitions
            .read()
            .iter()
            .map(|(tp, p)| (tp.clone(), p.clone() as Arc<dyn LocalReplica>))
            .collect()
    }
}

pub struct ReplicaManager {
    node_id: i32,
    log_dir: PathBuf,
    config: BrokerConfig,
    table: Arc<PartitionTable>,
    /// High watermarks from `replication-offset-checkpoint` at start.
    checkpointed: HashMap<TopicPartition, i64>,
    /// Set in a cluster; a single node follows nothing.
    fetchers: OnceLock<Arc<FetcherManager>>,
    /// This broker's advertised replication `host:port`, in a cluster.
    replication_endpoint: OnceLock<String>,
    /// This broker's epoch, set at each registration with the controller
    /// quorum (`lifecycle`); the follower fetchers send it (KIP-903).
    broker_epoch: BrokerEpoch,
    /// Partitions whose log could not be opened, with the topic id they had
    /// and whether the controller was told: offline here until the process
    /// restarts (Kafka's offline log directory, per partition). Requests for
    /// them are answered KAFKA_STORAGE_ERROR.
    offline: parking_lot::Mutex<HashMap<TopicPartition, (TopicId, bool)>>,
    offline_notify: tokio::sync::Notify,
}

impl ReplicaManager {
    pub fn new(config: &BrokerConfig) -> ReplicaManager {
        ReplicaManager {
            node_id: config.node_id,
            log_dir: config.log_dirs[0].clone(),
            config: config.clone(),
            table: Arc::new(PartitionTable {
                partitions: RwLock::new(HashMap::new()),
            }),
            checkpointed: checkpoint::read(&config.log_dirs[0]),
            fetchers: OnceLock::new(),
            replication_endpoint: OnceLock::new(),
            broker_epoch: BrokerEpoch::unknown(),
            offline: parking_lot::Mutex::new(HashMap::new()),
            offline_notify: tokio::sync::Notify::new(),
        }
    }

    /// Completes when a partition's log could not be opened (at once if
    /// one was found since the last call).
    pub async fn offline_found(&self) {
        self.offline_notify.notified().await
    }

    /// Whether this partition's log could not be opened here.
    pub fn is_offline(&self, topic: &str, partition: i32) -> bool {
        self.offline
            .lock()
            .contains_key(&TopicPartition::new(topic, partition))
    }

    /// The error for a request on a partition this broker has no replica
    /// of in its table: KAFKA_STORAGE_ERROR when its log could not be
    /// opened, NOT_LEADER_OR_FOLLOWER otherwise.
    pub fn missing_replica_error(&self, topic: &str, partition: i32) -> ErrorCode {
        if self.is_offline(topic, partition) {
            ErrorCode::KAFKA_STORAGE_ERROR
        } else {
            ErrorCode::NOT_LEADER_OR_FOLLOWER
        }
    }

    /// Offline partitions the controller has not been told of yet.
    pub fn unreported_offline(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .offline
            .lock()
            .iter()
            .filter(|(_, (_, reported))| !reported)
            .map(|(tp, _)| (tp.topic.to_string(), tp.partition))
            .collect();
        out.sort();
        out
    }

    /// Every offline partition is to be reported again (a new registration
    /// of this broker cleared the controller's marks).
    pub fn offline_unreported_again(&self) {
        for entry in self.offline.lock().values_mut() {
            entry.1 = false;
        }
    }

    /// The controller took note of these offline partitions.
    pub fn offline_reported(&self, partitions: &[(String, i32)]) {
        let mut offline = self.offline.lock();
        for (topic, partition) in partitions {
            if let Some(entry) = offline.get_mut(&TopicPartition::new(topic.as_str(), *partition)) {
                entry.1 = true;
            }
        }
    }

    pub fn log_dir(&self) -> &PathBuf {
        &self.log_dir
    }

    /// The partitions as `kraftwerk-replication` sees them.
    pub fn source(&self) -> Arc<dyn ReplicaSource> {
        self.table.clone()
    }

    pub fn set_fetchers(&self, fetchers: Arc<FetcherManager>) {
        if self.fetchers.set(fetchers).is_err() {
            tracing::warn!("replica fetchers were already set");
        }
    }

    pub fn set_replication_endpoint(&self, endpoint: String) {
        let _ = self.replication_endpoint.set(endpoint);
    }

    pub fn replication_endpoint(&self) -> Option<String> {
        self.replication_endpoint.get().cloned()
    }

    /// This broker's epoch as the follower fetchers read it.
    pub fn broker_epoch(&self) -> BrokerEpoch {
        self.broker_epoch.clone()
    }

    /// The broker (re)registered: fetches from now on carry `epoch`.
    pub fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.set(epoch);
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.table
            .partitions
            .read()
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.table.partitions.read().values().cloned().collect()
    }

    fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.log_dir.join(format!("{}-{}", tp.topic, tp.partition))
    }

    /// Brings local replicas in line with `image`. Errors opening one log
    /// are logged and leave that partition offline; the others go on.
    /// Returns the ISR changes of partitions this node went on leading:
    /// (shrinks, expansions), whether the leader proposed them or the
    /// controller made them (a fenced follower leaves every ISR).
    pub fn apply_image(&self, image: &MetadataImage) -> (u64, u64) {
        struct Wanted {
            topic_id: TopicId,
            configs: BTreeMap<String, String>,
            view: PartitionView,
        }
        let mut wanted: HashMap<TopicPartition, Wanted> = HashMap::new();
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert(
                        TopicPartition::new(topic.name.clone(), p.partition),
                        Wanted {
                            topic_id: topic.id,
                            configs: topic.configs.clone(),
                            view: PartitionView {
                                leader: p.leader,
                                leader_epoch: p.leader_epoch,
                                partition_epoch: p.partition_epoch,
                                replicas: p.replicas.clone(),
                                isr: p.isr.clone(),
                                min_insync_replicas: 1,
                                fenced: p
                                    .replicas
                                    .iter()
                                    .copied()
                                    .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                                    .collect(),
                            },
                        },
                    );
                }
            }
        }
        // Under the table's lock only what is quick: take out stale
        // partitions and see which are new. Opening logs (a scan of their
        // segments) and deleting directories happen outside it, so produce
        // and fetch lookups never wait on the disk of another partition.
        // Callers run one apply_image at a time (BrokerState::sync_replicas).
        // Offline partitions stay so while the topic exists with the same id.
        self.offline
            .lock()
            .retain(|tp, (id, _)| wanted.get(tp).is_some_and(|w| w.topic_id == *id));
        let mut views = Vec::with_capacity(wanted.len());
        let mut to_open = Vec::new();
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.table.partitions.write();
            // Removed topics, or a topic deleted and created again under a new id.
            let stale: Vec<TopicPartition> = partitions
                .iter()
                .filter(|(tp, p)| {
                    wanted
                        .get(*tp)
                        .map(|w| w.topic_id != p.topic_id)
                        .unwrap_or(true)
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            let removed = stale
                .iter()
                .filter_map(|tp| partitions.remove(tp))
                .collect();
            for (tp, w) in wanted {
                let log_config = self.config.log_config(&w.configs);
                let mut view = w.view;
                view.min_insync_replicas = log_config.min_insync_replicas;
                if let Some(p) = partitions.get(&tp) {
                    if p.log.config() != log_config {
                        p.log.update_config(log_config);
                    }
                    views.push((p.clone(), view));
                } else {
                    to_open.push((tp, w.topic_id, log_config, view));
                }
            }
            removed
        };
        for p in stale {
            self.delete_partition_dir(&p);
        }
        let mut opened = Vec::with_capacity(to_open.len());
        for (tp, topic_id, log_config, view) in to_open {
            if self.offline.lock().contains_key(&tp) {
                continue;
            }
            let dir = self.partition_dir(&tp);
            match Log::open(dir.clone(), log_config) {
                Ok(log) => {
                    write_partition_metadata(&dir, &topic_id);
                    let high_watermark = self
                        .checkpointed
                        .get(&tp)
                        .copied()
                        .unwrap_or(0)
                        .min(log.log_end_offset());
                    // Starts as a follower of nobody; the view below sets the role.
                    let initial = PartitionView {
                        leader: -1,
                        ..view.clone()
                    };
                    let p = Arc::new(Partition {
                        topic_partition: tp.clone(),
                        topic_id,
                        log,
                        dir,
                        replication: PartitionReplication::new(
                            self.node_id,
                            initial,
                            high_watermark,
                        ),
                    });
                    opened.push(p.clone());
                    views.push((p, view));
                }
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "could not open partition log; it stays offline until this node restarts");
                    self.offline.lock().insert(tp, (topic_id, false));
                    self.offline_notify.notify_one();
                }
            }
        }
        if !opened.is_empty() {
            let mut partitions = self.table.partitions.write();
            for p in opened {
                partitions.insert(p.topic_partition.clone(), p);
            }
        }
        let now = Instant::now();
        let mut follow = Vec::new();
        let (mut shrinks, mut expands) = (0, 0);
        for (p, view) in views {
            if view.leader >= 0 && view.leader != self.node_id {
                follow.push(FollowAssignment {
                    tp: p.topic_partition.clone(),
                    leader: view.leader,
                    leader_epoch: view.leader_epoch,
                });
            }
            let before = p.replication.view();
            let still_leading = view.leader == self.node_id
                && before.leader == self.node_id
                && before.leader_epoch == view.leader_epoch;
            if still_leading && view.isr.len() < before.isr.len() {
                shrinks += 1;
            } else if still_leading && view.isr.len() > before.isr.len() {
                expands += 1;
            }
            if before.leader != view.leader || before.leader_epoch != view.leader_epoch {
                if view.leader == self.node_id {
                    tracing::info!(partition = %p.topic_partition, leader_epoch = view.leader_epoch, isr = ?view.isr, "leading the partition");
                } else {
                    tracing::info!(partition = %p.topic_partition, leader = view.leader, leader_epoch = view.leader_epoch, "following the partition's leader");
                }
            }
            p.replication.apply_view(view, p.log.log_end_offset(), now);
        }
        if let Some(fetchers) = self.fetchers.get() {
            let endpoints: HashMap<i32, String> = image
                .brokers
                .values()
                .filter_map(|b| b.replication_endpoint.clone().map(|e| (b.node_id, e)))
                .collect();
            fetchers.update(&follow, &endpoints);
        }
        (shrinks, expands)
    }

    fn delete_partition_dir(&self, p: &Partition) {
        if let Err(e) = p.log.close() {
            tracing::warn!(partition = %p.topic_partition, error = %e, "closing a deleted partition failed");
        }
        let doomed = self.log_dir.join(format!(
            "{}-{}.{}-delete",
            p.topic_partition.topic,
            p.topic_partition.partition,
            p.topic_id.0.simple()
        ));
        match std::fs::rename(&p.dir, &doomed) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir_all(&doomed) {
                    tracing::warn!(dir = %doomed.display(), error = %e, "could not remove a deleted partition's directory");
                }
            }
            Err(e) => {
                tracing::warn!(dir = %p.dir.display(), error = %e, "could not move a deleted partition's directory aside")
            }
        }
    }

    /// Removes leftovers of deletions interrupted by a crash.
    pub fn clean_deleted_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.log_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with("-delete") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    pub fn flush_due(&self, now_ms: i64) {
        for p in self.all() {
            if let Err(e) = p.log.maybe_flush(now_ms) {
                tracing::error!(partition = %p.topic_partition, error = %e, "flush failed");
            }
        }
    }

    pub fn apply_retention(&self, now_ms: i64) {
        for p in self.all() {
            match p.log.apply_retention(now_ms) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(partition = %p.topic_partition, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    tracing::error!(partition = %p.topic_partition, error = %e, "retention failed")
                }
            }
        }
    }

    /// One log-cleaner pass over every partition whose `cleanup.policy`
    /// includes `compact`: only data below the high watermark (and never
    /// the active segment) is cleaned. Blocking: run it on a blocking
    /// thread. Stops between partitions once `stop` is cancelled.
    pub fn compact_due(&self, now_ms: i64, stop: &tokio_util::sync::CancellationToken) {
        for p in self.all() {
            if stop.is_cancelled() {
                return;
            }
            if !p.log.config().cleanup_policy.compact {
                continue;
            }
            match p.log.compact(now_ms, p.high_watermark()) {
                Ok(stats) if stats.removed_anything() => {
                    tracing::info!(
                        partition = %p.topic_partition,
                        records_removed = stats.records_removed,
                        tombstones_removed = stats.tombstones_removed,
                        batches_removed = stats.batches_removed,
                        segments_replaced = stats.segments_replaced,
                        segments_written = stats.segments_written,
                        bytes_before = stats.bytes_before,
                        bytes_after = stats.bytes_after,
                        "compacted partition"
                    )
                }
                Ok(stats) => {
                    tracing::debug!(partition = %p.topic_partition, outcome = ?stats.outcome, "compaction pass")
                }
                Err(e) => {
                    tracing::error!(partition = %p.topic_partition, error = %e, "compaction failed")
                }
            }
        }
    }

    pub fn close_all(&self) {
        if self.fetchers.get().is_some() {
            kraftwerk_replication::isr::write_checkpoint(&*self.table, &self.log_dir);
        }
        let partitions = self.all();
        let failed =
            kraftwerk_storage::close_logs(partitions.iter().map(|p| &p.log), &self.log_dir);
        for (dir, e) in failed {
            tracing::error!(dir = %dir.display(), error = %e, "closing log failed; it will be recovered by a scan at the next start");
        }
    }
}

/// Kafka writes the topic id beside the log (`partition.metadata`), so a
/// directory can be matched to its topic after a delete and re-create.
fn write_partition_metadata(dir: &std::path::Path, topic_id: &TopicId) {
    let text = format!("version: 0\ntopic_id: {}\n", topic_id.0);
    if let Err(e) = std::fs::write(dir.join("partition.metadata"), text) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not write partition.metadata");
    }
}

pub fn storage_error_code(e: &StorageError) -> i16 {
    e.error_code().code()
}
