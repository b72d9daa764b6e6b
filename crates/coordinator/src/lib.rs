//! Layer 2: coordinators whose state lives in an internal topic.
//!
//! Kafka keeps a coordinator's state (consumer groups in
//! `__consumer_offsets`; transactions in `__transaction_state` next) as
//! records in the partitions of an internal topic. The broker that leads
//! a partition coordinates what hashes to it: it loads the partition by
//! replaying it when leadership arrives, unloads it when leadership
//! leaves, and answers a request only once the records it wrote are
//! committed.
//!
//! This crate owns that machinery and the coordinators built on it, and
//! sees the log only through [`CoordinatorLog`], which the broker
//! implements over its partitions. It depends on neither the controller
//! nor replication.
//!
//! * [`log`]: the narrow view of an internal topic's partitions.
//! * [`group`]: the consumer-group coordinator (Kafka's classic protocol).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod group;
pub mod log;

pub use log::{CoordinatorLog, LogFuture};

/// Wall-clock milliseconds, as Kafka's records carry them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
