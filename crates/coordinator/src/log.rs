//! What a coordinator may do with the partitions of its internal topic.
//!
//! Five operations and nothing else: how many partitions the topic has,
//! which of them this broker leads (and at which leader epoch), append an
//! encoded batch as leader, wait until an offset is committed (below the
//! high watermark), and read a partition for replay. The broker implements
//! them over its replica manager; tests can implement them over memory.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

/// A boxed future, so that the trait stays usable as `dyn CoordinatorLog`.
pub type LogFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait CoordinatorLog: Send + Sync {
    /// The number of partitions of `topic`, or `None` when it does not exist.
    fn partition_count(&self, topic: &str) -> Option<i32>;

    /// The leader epoch of `topic`-`partition` when this broker leads it.
    fn led_epoch(&self, topic: &str, partition: i32) -> Option<i32>;

    /// Every partition of `topic` this broker leads, with its leader epoch.
    fn led_partitions(&self, topic: &str) -> Vec<(i32, i32)>;

    /// Appends one encoded v2 record batch as leader; returns the offset of
    /// its last record. `NOT_LEADER_OR_FOLLOWER` when this broker does not
    /// lead the partition (any more).
    fn append(&self, topic: &str, partition: i32, batch: Bytes) -> Result<i64, ErrorCode>;

    /// Resolves once `offset` is committed, or with the error that says why
    /// it will not be by `deadline` (`REQUEST_TIMED_OUT`,
    /// `NOT_ENOUGH_REPLICAS`, `NOT_LEADER_OR_FOLLOWER`, ...).
    fn wait_committed<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        deadline: Instant,
    ) -> LogFuture<'a, Result<(), ErrorCode>>;

    /// The log start and end offsets of a local partition, if it is here.
    fn offsets(&self, topic: &str, partition: i32) -> Option<(i64, i64)>;

    /// Whole batches from `from` (the first may start before it), at most
    /// about `max_bytes` and never past `end`. Blocking: call it off the
    /// async workers.
    fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max_bytes: usize,
        end: i64,
    ) -> Result<Bytes, String>;
}
