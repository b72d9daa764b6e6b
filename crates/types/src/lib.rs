//! Layer 0: the vocabulary every Kraftwerk crate shares.
//!
//! Identifiers as newtypes, configuration with Kafka's key names and
//! defaults, and Kafka's numeric error codes. Nothing here does I/O.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod error_code;
pub mod ids;

pub use config::{BrokerConfig, CleanupPolicy, ConfigError, LogConfig, TimestampType};
pub use error_code::ErrorCode;
pub use ids::{TopicId, TopicPartition};
