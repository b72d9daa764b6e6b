//! The partitions this broker stores, and how they follow the metadata image.
//!
//! Every change of the image goes through [`ReplicaManager::apply_image`]:
//! new partitions get a log, deleted topics lose theirs, config changes
//! reach the logs. Leadership and the high watermark live here too; on a
//! single node the leader is this broker and the high watermark is the log
//! end offset. Replication plugs in at [`Partition`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kraftwerk_storage::{Log, StorageError};
use kraftwerk_types::{BrokerConfig, TopicId, TopicPartition};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::metadata::MetadataImage;

/// One partition replica stored on this broker.
pub struct Partition {
    pub topic_partition: TopicPartition,
    pub topic_id: TopicId,
    pub log: Log,
    pub dir: PathBuf,
    leader_epoch: parking_lot::Mutex<i32>,
}

impl Partition {
    pub fn leader_epoch(&self) -> i32 {
        *self.leader_epoch.lock()
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// With no transactions, the last stable offset is the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
    }
}

pub struct ReplicaManager {
    node_id: i32,
    log_dir: PathBuf,
    config: BrokerConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Ticks on every append, so long-polling fetches wake up.
    appended: watch::Sender<u64>,
}

impl ReplicaManager {
    pub fn new(config: &BrokerConfig) -> ReplicaManager {
        let (appended, _) = watch::channel(0);
        ReplicaManager {
            node_id: config.node_id,
            log_dir: config.log_dirs[0].clone(),
            config: config.clone(),
            partitions: RwLock::new(HashMap::new()),
            appended,
        }
    }

    pub fn log_dir(&self) -> &PathBuf {
        &self.log_dir
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.log_dir.join(format!("{}-{}", tp.topic, tp.partition))
    }

    /// Brings local replicas in line with `image`. Errors opening one log
    /// are logged and leave that partition offline; the others go on.
    pub fn apply_image(&self, image: &MetadataImage) {
        let mut wanted: HashMap<
            TopicPartition,
            (TopicId, i32, std::collections::BTreeMap<String, String>),
        > = HashMap::new();
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert(
                        TopicPartition::new(topic.name.clone(), p.partition),
                        (topic.id, p.leader_epoch, topic.configs.clone()),
                    );
                }
            }
        }
        let mut partitions = self.partitions.write();
        // Removed topics, or a topic deleted and created again under a new id.
        let stale: Vec<TopicPartition> = partitions
            .iter()
            .filter(|(tp, p)| {
                wanted
                    .get(*tp)
                    .map(|(id, _, _)| *id != p.topic_id)
                    .unwrap_or(true)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in stale {
            if let Some(p) = partitions.remove(&tp) {
                self.delete_partition_dir(&p);
            }
        }
        for (tp, (topic_id, leader_epoch, configs)) in wanted {
            let log_config = self.config.log_config(&configs);
            if let Some(p) = partitions.get(&tp) {
                if p.log.config() != log_config {
                    p.log.update_config(log_config);
                }
                *p.leader_epoch.lock() = leader_epoch;
                continue;
            }
            let dir = self.partition_dir(&tp);
            match Log::open(dir.clone(), log_config) {
                Ok(log) => {
                    write_partition_metadata(&dir, &topic_id);
                    partitions.insert(
                        tp.clone(),
                        Arc::new(Partition {
                            topic_partition: tp,
                            topic_id,
                            log,
                            dir,
                            leader_epoch: parking_lot::Mutex::new(leader_epoch),
                        }),
                    );
                }
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "could not open partition log; it stays offline")
                }
            }
        }
        drop(partitions);
        self.notify_appended();
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

    pub fn close_all(&self) {
        for p in self.all() {
            if let Err(e) = p.log.close() {
                tracing::error!(partition = %p.topic_partition, error = %e, "closing log failed");
            }
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
