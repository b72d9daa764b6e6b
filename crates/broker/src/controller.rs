//! Who decides cluster metadata.
//!
//! [`ClusterControl`] is the narrow interface the Kafka handlers use for
//! anything that changes metadata (topic admin, producer id blocks). The
//! single-node [`LocalController`] implements it by writing the image to a
//! file; the Raft-replicated controller quorum implements the same trait,
//! so no handler changes when a node joins a cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use kraftwerk_types::config::validate_topic_configs;
use kraftwerk_types::{BrokerConfig, ErrorCode, TopicId};
use serde::{Deserialize, Serialize};

use crate::metadata::{
    validate_topic_name, AclBinding, BrokerRegistration, ImageCell, MetadataImage, PartitionRecord,
    ScramCredential, TopicRecord,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("metadata could not be stored: {0}")]
    Storage(#[from] std::io::Error),
    /// The controller quorum refused the change with this Kafka error code.
    #[error("{message}")]
    Remote { code: i16, message: String },
    /// No active controller could be reached in time.
    #[error("controller unavailable: {0}")]
    Unavailable(String),
}

impl ControllerError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ControllerError::TopicAlreadyExists(_) => ErrorCode::TOPIC_ALREADY_EXISTS,
            ControllerError::InvalidTopic(_) => ErrorCode::INVALID_TOPIC_EXCEPTION,
            ControllerError::UnknownTopic(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            ControllerError::InvalidPartitions(_) => ErrorCode::INVALID_PARTITIONS,
            ControllerError::InvalidReplicationFactor(_) => ErrorCode::INVALID_REPLICATION_FACTOR,
            ControllerError::InvalidReplicaAssignment(_) => ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            ControllerError::InvalidConfig(_) => ErrorCode::INVALID_CONFIG,
            ControllerError::Storage(_) => ErrorCode::KAFKA_STORAGE_ERROR,
            ControllerError::Remote { code, .. } => ErrorCode(*code),
            ControllerError::Unavailable(_) => ErrorCode::REQUEST_TIMED_OUT,
        }
    }
}

/// A request to create one topic, already defaulted (`-1`s resolved).
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit replica lists per partition, when the client gave them.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

/// One partition's requested replica set; `None` cancels its reassignment.
#[derive(Debug, Clone)]
pub struct ReassignPartition {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// One entity's quota changes: its components, then `Some` sets a value,
/// `None` removes it.
pub type QuotaChange = (
    kraftwerk_metadata::QuotaEntity,
    kraftwerk_metadata::QuotaOps,
);

/// A config change: `Some(v)` sets, `None` removes the override.
pub type ConfigChange = (String, Option<String>);

pub trait ClusterControl: Send + Sync {
    fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<TopicRecord, ControllerError>>;
    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<TopicId, ControllerError>>;
    fn create_partitions(
        &self,
        name: String,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
    fn alter_topic_configs(
        &self,
        name: String,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
    /// Removes, then sets, users' SCRAM credentials, all at once.
    fn alter_scram_credentials(
        &self,
        deletions: Vec<(String, String)>,
        upsertions: Vec<(String, String, ScramCredential)>,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
    /// Adds ACLs and removes others, all at once.
    fn alter_acls(
        &self,
        created: Vec<AclBinding>,
        deleted: Vec<AclBinding>,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
    /// Sets and removes client quota values.
    fn alter_client_quotas(
        &self,
        changes: Vec<QuotaChange>,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
    /// A fresh producer id, never handed out before on this cluster.
    fn allocate_producer_id(&self) -> BoxFuture<'_, Result<i64, ControllerError>>;
    /// Moves leadership to each partition's preferred replica where it is
    /// live and in the ISR (`None`: every partition).
    fn elect_preferred_leaders(
        &self,
        partitions: Option<Vec<(String, i32)>>,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
    /// Starts, replaces or cancels partition reassignments; one answer per
    /// partition, in order (`ErrorCode::NONE` when accepted).
    fn alter_partition_reassignments(
        &self,
        reassignments: Vec<ReassignPartition>,
        allow_replication_factor_change: bool,
    ) -> BoxFuture<'_, Result<Vec<(ErrorCode, String)>, ControllerError>>;
    /// Broker `broker_id` could not open these partitions' logs: its
    /// replicas go offline (leadership moves to another in-sync replica, or
    /// the partition has no leader) until it registers again.
    fn mark_replicas_offline(
        &self,
        broker_id: i32,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'_, Result<(), ControllerError>>;
}

/// Spreads `count` partitions starting at `first_partition` over `brokers`:
/// partition p gets brokers p, p+1, ... (mod n), its preferred leader first,
/// so leadership is even when partitions are a multiple of brokers.
pub fn assign_replicas(
    brokers: &[i32],
    first_partition: i32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 {
        return Err(ControllerError::InvalidReplicationFactor(
            "replication factor must be at least 1".into(),
        ));
    }
    if rf > brokers.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "replication factor {rf} is larger than the {} available broker(s)",
            brokers.len()
        )));
    }
    let n = brokers.len();
    Ok((first_partition..first_partition + count)
        .map(|p| (0..rf).map(|i| brokers[(p as usize + i) % n]).collect())
        .collect())
}

fn check_assignments(assignments: &[Vec<i32>], brokers: &[i32]) -> Result<(), ControllerError> {
    let rf = assignments.first().map(Vec::len).unwrap_or(0);
    for (p, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() || replicas.len() != rf {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "partition {p} has {} replicas, expected {rf}",
                replicas.len()
            )));
        }
        let mut seen = replicas.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "partition {p} lists a broker twice"
            )));
        }
        if let Some(b) = replicas.iter().find(|b| !brokers.contains(b)) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "broker {b} in partition {p} does not exist"
            )));
        }
    }
    Ok(())
}

/// The replica lists of the partitions that grow `topic` to `total`: the
/// client's explicit ones (checked), or placed over `brokers` with the
/// topic's replication factor.
pub fn plan_new_partitions(
    topic: &TopicRecord,
    total: i32,
    assignments: Option<Vec<Vec<i32>>>,
    brokers: &[i32],
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let current = topic.partitions.len() as i32;
    if total <= current {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic '{}' has {current} partitions; the new count must be larger, not {total}",
            topic.name
        )));
    }
    match assignments {
        Some(a) => {
            if a.len() as i32 != total - current {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{} assignments given for {} new partitions",
                    a.len(),
                    total - current
                )));
            }
            check_assignments(&a, brokers)?;
            Ok(a)
        }
        None => {
            let rf = topic
                .partitions
                .first()
                .map(|p| p.replicas.len())
                .unwrap_or(1) as i16;
            assign_replicas(brokers, current, total - current, rf)
        }
    }
}

/// What the single-node controller keeps on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    image: MetadataImage,
    /// Producer ids below this were handed out (or reserved) already.
    producer_id_block_end: i64,
}

const PRODUCER_ID_BLOCK: i64 = 1000;
const METADATA_FILE: &str = "metadata.json";

/// Single-node metadata owner: the whole image in one JSON file under
/// `<log.dirs[0]>/__cluster_metadata`, replaced atomically on every change.
pub struct LocalController {
    image: Arc<ImageCell>,
    dir: PathBuf,
    state: tokio::sync::Mutex<LocalState>,
}

struct LocalState {
    producer_id_block_end: i64,
    next_producer_id: i64,
}

impl LocalController {
    /// Loads (or creates) the metadata of a single-node cluster and publishes it.
    /// `http_endpoint` is where the node's HTTP listener is reached, if it
    /// serves one.
    pub fn open(
        config: &BrokerConfig,
        image: Arc<ImageCell>,
        http_endpoint: Option<String>,
    ) -> Result<LocalController, ControllerError> {
        let dir = config.log_dirs[0].join("__cluster_metadata");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(METADATA_FILE);
        let persisted = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Persisted>(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cluster_id = config.cluster_id.clone().unwrap_or_else(new_cluster_id);
                Persisted {
                    image: MetadataImage::new(cluster_id, config.node_id),
                    producer_id_block_end: 0,
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut img = persisted.image;
        img.controller_id = config.node_id;
        let endpoints = crate::listeners::advertised_endpoints(config);
        let Some(primary) = endpoints.first().cloned() else {
            return Err(ControllerError::InvalidConfig(
                "`listeners` has no Kafka listener".into(),
            ));
        };
        img.brokers.clear();
        img.brokers.insert(
            config.node_id,
            BrokerRegistration {
                node_id: config.node_id,
                host: primary.host,
                port: primary.port,
                rack: config.raw.get("broker.rack").cloned(),
                fenced: false,
                replication_endpoint: None,
                http_endpoint,
                listeners: endpoints,
            },
        );
        // A single node leads everything it stores; it opens every log
        // again, reporting those it still cannot open.
        for topic in img.topics.values_mut() {
            for p in &mut topic.partitions {
                p.replicas = vec![config.node_id];
                p.isr = vec![config.node_id];
                if p.leader != config.node_id {
                    p.leader = config.node_id;
                    p.leader_epoch += 1;
                }
                p.offline_replicas.clear();
            }
        }
        img.version += 1;
        img.reindex();
        // Skip past the previous block so ids are never reused after a crash.
        let start = persisted.producer_id_block_end;
        let controller = LocalController {
            image: image.clone(),
            dir,
            state: tokio::sync::Mutex::new(LocalState {
                producer_id_block_end: start,
                next_producer_id: start,
            }),
        };
        write_atomically(
            &controller.dir,
            &Persisted {
                image: img.clone(),
                producer_id_block_end: start,
            },
        )?;
        image.publish(img);
        Ok(controller)
    }

    pub fn cluster_id(&self) -> String {
        self.image.load().cluster_id.clone()
    }

    fn commit(&self, state: &LocalState, image: MetadataImage) -> Result<(), ControllerError> {
        let mut image = image;
        image.version += 1;
        image.reindex();
        write_atomically(
            &self.dir,
            &Persisted {
                image: image.clone(),
                producer_id_block_end: state.producer_id_block_end,
            },
        )?;
        self.image.publish(image);
        Ok(())
    }

    fn brokers(image: &MetadataImage) -> Vec<i32> {
        image.live_brokers().map(|b| b.node_id).collect()
    }
}

fn new_cluster_id() -> String {
    // Kafka's cluster ids are 16 random bytes in URL-safe base64 (22 chars).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

fn write_atomically(dir: &Path, persisted: &Persisted) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(persisted).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(METADATA_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl ClusterControl for LocalController {
    fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<TopicRecord, ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            validate_topic_name(&topic.name).map_err(ControllerError::InvalidTopic)?;
            if image.topics.contains_key(&topic.name) {
                return Err(ControllerError::TopicAlreadyExists(topic.name));
            }
            // Kafka refuses names that collide once '.' and '_' are treated alike.
            let folded = topic.name.replace('.', "_");
            if let Some(other) = image.topics.keys().find(|n| n.replace('.', "_") == folded) {
                return Err(ControllerError::InvalidTopic(format!(
                    "topic '{}' collides with existing topic '{other}'",
                    topic.name
                )));
            }
            validate_topic_configs(topic.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
            let brokers = Self::brokers(&image);
            let assignments = match topic.assignments {
                Some(a) => {
                    check_assignments(&a, &brokers)?;
                    a
                }
                None => {
                    if topic.num_partitions < 1 {
                        return Err(ControllerError::InvalidPartitions(
                            "number of partitions must be at least 1".into(),
                        ));
                    }
                    assign_replicas(&brokers, 0, topic.num_partitions, topic.replication_factor)?
                }
            };
            let record = TopicRecord {
                name: topic.name.clone(),
                id: TopicId::random(),
                partitions: assignments
                    .into_iter()
                    .enumerate()
                    .map(|(p, replicas)| PartitionRecord {
                        partition: p as i32,
                        leader: replicas[0],
                        isr: replicas.clone(),
                        replicas,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                        offline_replicas: Vec::new(),
                    })
                    .collect(),
                configs: topic.configs,
            };
            if validate_only {
                return Ok(record);
            }
            image.topics.insert(record.name.clone(), record.clone());
            self.commit(&state, image)?;
            Ok(record)
        })
    }

    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<TopicId, ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            let removed = image
                .topics
                .remove(&name)
                .ok_or(ControllerError::UnknownTopic(name))?;
            self.commit(&state, image)?;
            Ok(removed.id)
        })
    }

    fn create_partitions(
        &self,
        name: String,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            let brokers = Self::brokers(&image);
            let topic = image
                .topics
                .get_mut(&name)
                .ok_or_else(|| ControllerError::UnknownTopic(name.clone()))?;
            let current = topic.partitions.len() as i32;
            let added = plan_new_partitions(topic, total, assignments, &brokers)?;
            if validate_only {
                return Ok(());
            }
            for (i, replicas) in added.into_iter().enumerate() {
                topic.partitions.push(PartitionRecord {
                    partition: current + i as i32,
                    leader: replicas[0],
                    isr: replicas.clone(),
                    replicas,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                    offline_replicas: Vec::new(),
                });
            }
            self.commit(&state, image)
        })
    }

    fn alter_topic_configs(
        &self,
        name: String,
        changes: Vec<ConfigChange>,
        validate_only: bool,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            let topic = image
                .topics
                .get_mut(&name)
                .ok_or_else(|| ControllerError::UnknownTopic(name.clone()))?;
            for (key, value) in changes {
                match value {
                    Some(v) => {
                        validate_topic_configs([(key.as_str(), v.as_str())])
                            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
                        topic.configs.insert(key, v);
                    }
                    None => {
                        topic.configs.remove(&key);
                    }
                }
            }
            if validate_only {
                return Ok(());
            }
            self.commit(&state, image)
        })
    }

    fn alter_scram_credentials(
        &self,
        deletions: Vec<(String, String)>,
        upsertions: Vec<(String, String, ScramCredential)>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            kraftwerk_controller::commands::apply_scram_changes(
                &mut image,
                &deletions,
                &upsertions,
            );
            self.commit(&state, image)
        })
    }

    fn alter_acls(
        &self,
        created: Vec<AclBinding>,
        deleted: Vec<AclBinding>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            kraftwerk_controller::commands::apply_acl_changes(&mut image, &created, &deleted);
            self.commit(&state, image)
        })
    }

    fn alter_client_quotas(
        &self,
        changes: Vec<QuotaChange>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            kraftwerk_controller::commands::apply_quota_changes(&mut image, &changes);
            self.commit(&state, image)
        })
    }

    fn elect_preferred_leaders(
        &self,
        _partitions: Option<Vec<(String, i32)>>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        // A single node is the preferred leader of everything it stores.
        Box::pin(async { Ok(()) })
    }

    fn mark_replicas_offline(
        &self,
        broker_id: i32,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'_, Result<(), ControllerError>> {
        Box::pin(async move {
            let state = self.state.lock().await;
            let mut image = (*self.image.load()).clone();
            let mut changed = false;
            for (name, partition) in partitions {
                let Some(p) = image
                    .topics
                    .get_mut(&name)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
                else {
                    continue;
                };
                if p.offline_replicas.contains(&broker_id) {
                    continue;
                }
                // The only replica: the partition has no leader.
                p.offline_replicas.push(broker_id);
                if p.leader == broker_id {
                    p.leader = -1;
                    p.leader_epoch += 1;
                }
                p.partition_epoch += 1;
                changed = true;
            }
            if changed {
                self.commit(&state, image)?;
            }
            Ok(())
        })
    }

    fn alter_partition_reassignments(
        &self,
        reassignments: Vec<ReassignPartition>,
        allow_replication_factor_change: bool,
    ) -> BoxFuture<'_, Result<Vec<(ErrorCode, String)>, ControllerError>> {
        // One broker: its replicas cannot move, so no reassignment is ever
        // in progress; the only valid target is this node.
        let image = self.image.load();
        let node = image.controller_id;
        let answers = reassignments
            .iter()
            .map(|r| {
                let Some(p) = image.partition(&r.topic, r.partition) else {
                    return (
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("{}-{} does not exist", r.topic, r.partition),
                    );
                };
                match &r.target {
                    None => (
                        ErrorCode::NO_REASSIGNMENT_IN_PROGRESS,
                        format!("no reassignment of {}-{} is in progress", r.topic, r.partition),
                    ),
                    Some(t) if t.is_empty() || t.iter().any(|b| *b != node) || t.len() > 1 => (
                        ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                        format!("the target replicas {t:?} name brokers that are not registered (only broker {node} is)"),
                    ),
                    Some(t) if !allow_replication_factor_change && t.len() != p.replicas.len() => (
                        ErrorCode::INVALID_REPLICATION_FACTOR,
                        "a change of replication factor was not allowed".to_string(),
                    ),
                    Some(_) => (ErrorCode::NONE, String::new()),
                }
            })
            .collect();
        Box::pin(async move { Ok(answers) })
    }

    fn allocate_producer_id(&self) -> BoxFuture<'_, Result<i64, ControllerError>> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            if state.next_producer_id >= state.producer_id_block_end {
                state.producer_id_block_end = state.next_producer_id + PRODUCER_ID_BLOCK;
                let image = (*self.image.load()).clone();
                write_atomically(
                    &self.dir,
                    &Persisted {
                        image,
                        producer_id_block_end: state.producer_id_block_end,
                    },
                )?;
            }
            let id = state.next_producer_id;
            state.next_producer_id += 1;
            Ok(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_and_leaders_spread_evenly() {
        let a = assign_replicas(&[1, 2, 3], 0, 6, 3).expect("three brokers fit rf 3");
        let mut leaders = BTreeMap::new();
        for r in &a {
            assert_eq!(r.len(), 3);
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert!(assign_replicas(&[1], 0, 1, 2).is_err());
        assert!(assign_replicas(&[1], 0, 1, 0).is_err());
    }

    #[test]
    fn cluster_ids_look_like_kafka_ones() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
