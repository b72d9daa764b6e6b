//! Layer 2: partition replication. Followers pull record batches from
//! leaders over gRPC ([`fetcher`]), sending this broker's epoch
//! ([`BrokerEpoch`]) with each fetch; the leader answers them ([`leader`]),
//! tracks each follower's log end offset, last caught-up time and broker
//! epoch, moves the high watermark to the minimum log end offset of the ISR
//! and decides ISR shrinks and expansions ([`progress`], [`partition`]),
//! which go through the controller ([`IsrControl`]). The high watermark
//! survives restarts in `replication-offset-checkpoint` ([`checkpoint`]).
//!
//! This crate knows neither the controller nor the broker: the broker hands
//! it its partitions through [`ReplicaSource`] and writes ISR changes
//! through [`IsrControl`]. Design notes: `docs/reliability.md`.
//!
//! Timeouts and the rules between them (Kafka's keys and defaults):
//! `replica.fetch.wait.max.ms` (500) < `replica.lag.time.max.ms` (30000),
//! so a live follower fetches many times within the lag bound; the fetch
//! RPC timeout is `replica.fetch.wait.max.ms` + [`fetcher::RPC_TIMEOUT_MARGIN`].

pub mod checkpoint;
pub mod fetcher;
pub mod isr;
pub mod leader;
pub mod partition;
pub mod progress;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kraftwerk_storage::Log;
use kraftwerk_types::{BrokerConfig, TopicPartition};

pub use partition::{
    CommitWaitError, IsrChange, PartitionReplication, PartitionView, StaleBrokerEpoch,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One partition replica stored on this broker, as replication sees it.
pub trait LocalReplica: Send + Sync {
    fn log(&self) -> &Log;
    fn replication(&self) -> &PartitionReplication;
}

/// The broker's partitions.
pub trait ReplicaSource: Send + Sync + 'static {
    fn replica(&self, tp: &TopicPartition) -> Option<Arc<dyn LocalReplica>>;
    fn all_replicas(&self) -> Vec<(TopicPartition, Arc<dyn LocalReplica>)>;
}

/// This broker's epoch: the metadata offset of its registration, -1 until
/// it has registered. The broker owns it and sets it at every registration
/// (a restarted process registers again and gets a new one); the follower
/// fetchers send it with every fetch, so leaders can tell a late request of
/// an earlier incarnation from a current one (KIP-903).
#[derive(Debug, Clone)]
pub struct BrokerEpoch(Arc<AtomicI64>);

impl BrokerEpoch {
    /// Not registered yet.
    pub fn unknown() -> BrokerEpoch {
        BrokerEpoch(Arc::new(AtomicI64::new(-1)))
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn set(&self, epoch: i64) {
        self.0.store(epoch, Ordering::Release);
    }
}

impl Default for BrokerEpoch {
    fn default() -> Self {
        BrokerEpoch::unknown()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlterIsrError {
    /// INVALID_UPDATE_VERSION: the partition changed; wait for the newer image.
    #[error("stale partition epoch")]
    StalePartitionEpoch,
    /// INELIGIBLE_REPLICA: a replica being added is fenced, or the broker
    /// epoch its fetches carried is not its current registration. Dropped;
    /// the replica's later fetches (with its current epoch) try again.
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
    #[error("{0}")]
    Refused(String),
}

/// Writes ISR changes through the controller (`AlterPartition`).
pub trait IsrControl: Send + Sync + 'static {
    fn alter_partition(
        &self,
        tp: TopicPartition,
        leader_id: i32,
        change: IsrChange,
    ) -> BoxFuture<'_, Result<(), AlterIsrError>>;
}

/// Replication settings with Kafka's keys and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max: Duration,
    /// `replica.fetch.wait.max.ms`.
    pub replica_fetch_wait_max_ms: u32,
    /// `replica.fetch.max.bytes`.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.min.bytes`.
    pub replica_fetch_min_bytes: i32,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub high_watermark_checkpoint_interval: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max: Duration::from_millis(30_000),
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_min_bytes: 1,
            high_watermark_checkpoint_interval: Duration::from_millis(5000),
        }
    }
}

impl ReplicationConfig {
    pub fn from_broker(config: &BrokerConfig) -> ReplicationConfig {
        let d = ReplicationConfig::default();
        let num = |key: &str, default: u64| -> u64 {
            config
                .raw
                .get(key)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        ReplicationConfig {
            replica_lag_time_max: Duration::from_millis(num(
                "replica.lag.time.max.ms",
                d.replica_lag_time_max.as_millis() as u64,
            )),
            replica_fetch_wait_max_ms: num(
                "replica.fetch.wait.max.ms",
                d.replica_fetch_wait_max_ms as u64,
            )
            .min(u32::MAX as u64) as u32,
            replica_fetch_max_bytes: num(
                "replica.fetch.max.bytes",
                d.replica_fetch_max_bytes as u64,
            )
            .min(i32::MAX as u64) as i32,
            replica_fetch_min_bytes: num(
                "replica.fetch.min.bytes",
                d.replica_fetch_min_bytes as u64,
            )
            .min(i32::MAX as u64) as i32,
            high_watermark_checkpoint_interval: Duration::from_millis(num(
                "replica.high.watermark.checkpoint.interval.ms",
                d.high_watermark_checkpoint_interval.as_millis() as u64,
            ))
            .max(Duration::from_millis(100)),
        }
    }
}
