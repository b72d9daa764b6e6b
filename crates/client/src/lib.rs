//! Kraftwerk's Rust client: producer, consumer and admin over the Kafka wire
//! protocol only, so it works against Apache Kafka as well as Kraftwerk.
//!
//! Layer 3. It owns connections ([`Connection`]: version negotiation,
//! pipelining), cluster metadata and the connection pool ([`Cluster`]), the
//! producer's batching, partitioning and idempotence ([`Producer`]), the
//! consumer's fetch loop and positions ([`Consumer`]), topic and cluster
//! administration ([`Admin`]) and the perf-test style benchmarks ([`bench`]).
//! All codecs come from the `kafka-protocol` crate; framing from
//! `kraftwerk-protocol`. Group membership (subscribe, rebalances, heartbeats,
//! commits) and the group half of [`Admin`] live in [`group`].

pub mod acls;
pub mod admin;
pub mod bench;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod security;
pub mod transactions;
pub mod users;

pub use admin::{
    Admin, BrokerDescription, ClusterDescription, ConfigEntry, CreateTopicResult, NewTopic,
    OffsetSpec, PartitionDescription, QuorumDescription, ReplicaLogDir, TopicDescription,
    TopicResult,
};
pub use bench::{BenchConsumeOptions, BenchProduceOptions, BenchReport};
pub use cluster::Cluster;
pub use connection::Connection;
pub use consumer::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel};
pub use error::ClientError;
pub use group::{
    Assignor, GroupConfig, GroupDescription, ListedGroup, MemberDescription, RebalanceListener,
};
pub use kafka_protocol::records::{Compression, TimestampType};
pub use producer::{
    DeliveryFuture, Partitioner, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use transactions::{ListedTransaction, ProducerDescription, TransactionDescription};
pub use users::{ScramAlteration, ScramMechanism, UserScramCredentials};

/// Settings shared by every client: where to start and how long to wait.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` entries, tried in order.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`, sent in every request header.
    pub client_id: String,
    /// `request.timeout.ms`: how long one request may wait for its response.
    pub request_timeout_ms: u64,
    /// Largest response frame accepted; larger frames close the connection.
    pub max_response_bytes: usize,
    /// Ask the broker to create unknown topics on Metadata requests, as the
    /// Java producer does (the broker's `auto.create.topics.enable` decides).
    pub allow_auto_topic_creation: bool,
    /// TLS and SASL (`security.protocol` and the keys that go with it);
    /// `None` is PLAINTEXT.
    pub security: Option<security::ClientSecurity>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: vec!["localhost:9092".to_string()],
            client_id: "kraftwerk-client".to_string(),
            request_timeout_ms: 30_000,
            max_response_bytes: 100 * 1024 * 1024,
            allow_auto_topic_creation: false,
            security: None,
        }
    }
}

impl ClientConfig {
    /// A config for the given bootstrap servers with defaults otherwise.
    pub fn new(bootstrap_servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap_servers.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }
}
