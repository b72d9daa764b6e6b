//! Who decides cluster metadata.
//!
//! [`ClusterControl`] is the narrow interface the Kafka handlers use for
//! anything that changes metadata (topic admin, producer id blocks). The
//! Raft-replicated controller quorum implements it
//! ([`RemoteControl`](crate::remote::RemoteControl)), for a single node (a
//! quorum of one voter in the same process) as for a cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use kraftwerk_types::{ErrorCode, TopicId};

use crate::metadata::{AclBinding, ScramCredential, TopicRecord};

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

pub fn check_assignments(assignments: &[Vec<i32>], brokers: &[i32]) -> Result<(), ControllerError> {
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
}
