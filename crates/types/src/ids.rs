//! Identifiers used across the cluster. Broker ids, partition indexes,
//! offsets and epochs are the plain integers of the Kafka protocol (`i32`,
//! `i32`, `i64`, `i32`) everywhere, as kafka-protocol's messages carry them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A topic's UUID, as Kafka 2.8+ assigns them (KIP-516).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopicId(pub uuid::Uuid);

impl TopicId {
    pub fn random() -> Self {
        TopicId(uuid::Uuid::new_v4())
    }
    pub fn nil() -> Self {
        TopicId(uuid::Uuid::nil())
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A topic name plus partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
