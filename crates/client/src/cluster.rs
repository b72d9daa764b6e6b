//! Cluster metadata cache and the connection pool keyed by broker id.
//!
//! Metadata is kept as an immutable snapshot behind an `Arc`; a refresh builds
//! a new snapshot and swaps it in, so readers never wait on the network.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::connection::Connection;
use crate::error::{ClientError, Result};
use crate::ClientConfig;

/// Pause between metadata attempts while a topic's leaders are being elected.
pub const METADATA_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Metadata attempts made by [`Cluster::topic_with_leaders`] before giving up.
pub const METADATA_ATTEMPTS_MAX: usize = 50;

/// One broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `host:port` for connecting.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition's leader and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    pub error_code: i16,
    /// -1 while no leader is known.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// One topic's metadata; `partitions` is sorted by partition index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Nil when the broker's Metadata version predates topic ids.
    pub topic_id: Uuid,
    pub internal: bool,
    pub error_code: i16,
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// The metadata of one partition, if it exists.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Partitions that currently have a leader.
    pub fn available_partitions(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| p.partition)
            .collect()
    }
}

/// What the client knows about the cluster at one moment.
#[derive(Debug, Clone, Default)]
pub struct MetadataSnapshot {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerMetadata>,
    /// Shared, so that a producer's lookup per record copies a pointer,
    /// not a topic's partitions.
    pub topics: HashMap<String, Arc<TopicMetadata>>,
}

impl MetadataSnapshot {
    /// The topic name for a topic id, if known.
    pub fn topic_name(&self, topic_id: Uuid) -> Option<&str> {
        self.topics
            .values()
            .find(|t| t.topic_id == topic_id)
            .map(|t| t.name.as_str())
    }
}

type ConnectionSlot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Metadata cache plus one pooled connection per broker.
pub struct Cluster {
    config: ClientConfig,
    metadata: RwLock<Arc<MetadataSnapshot>>,
    connections: Mutex<HashMap<i32, ConnectionSlot>>,
    bootstrap: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// One metadata refresh at a time; others wait and reuse its result.
    refresh: tokio::sync::Mutex<()>,
    /// Topics this client uses; a refresh asks for all of them.
    interesting_topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish()
    }
}

impl Cluster {
    /// Connects to the first reachable bootstrap server and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap_servers.is_empty() {
            return Err(ClientError::Config("bootstrap_servers is empty".into()));
        }
        let cluster = Arc::new(Cluster {
            config,
            metadata: RwLock::new(Arc::new(MetadataSnapshot::default())),
            connections: Mutex::new(HashMap::new()),
            bootstrap: tokio::sync::Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            interesting_topics: Mutex::new(HashSet::new()),
        });
        cluster.refresh_metadata().await?;
        Ok(cluster)
    }

    /// The client settings this cluster was opened with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.metadata.read().clone()
    }

    /// Cached metadata for one topic.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicMetadata>> {
        self.metadata.read().topics.get(topic).cloned()
    }

    /// Refreshes brokers and every topic this client has asked about.
    pub async fn refresh_metadata(&self) -> Result<Arc<MetadataSnapshot>> {
        let topics: Vec<String> = self.interesting_topics.lock().iter().cloned().collect();
        self.fetch_metadata(Some(&topics)).await
    }

    /// Adds topics to the refresh set and refreshes.
    pub async fn refresh_topics(&self, topics: &[String]) -> Result<Arc<MetadataSnapshot>> {
        self.interesting_topics
            .lock()
            .extend(topics.iter().cloned());
        self.refresh_metadata().await
    }

    /// Sends one Metadata request (`None` = all topics) and merges the answer
    /// into the cache: the broker list is replaced, asked-for topics are
    /// replaced or removed, others are kept (all are replaced for `None`).
    pub async fn fetch_metadata(&self, topics: Option<&[String]>) -> Result<Arc<MetadataSnapshot>> {
        let _single_flight = self.refresh.lock().await;
        let connection = self.any_connection().await?;
        let version = connection.version_for::<MetadataRequest>()?;
        let mut request = MetadataRequest::default();
        request.allow_auto_topic_creation = self.config.allow_auto_topic_creation;
        request.topics = match topics {
            None if version == 0 => Some(Vec::new()),
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| {
                        let mut topic = MetadataRequestTopic::default();
                        topic.name = Some(TopicName(StrBytes::from_string(name.clone())));
                        topic
                    })
                    .collect(),
            ),
        };
        let response = match connection.send_version(request, version).await {
            Ok(response) => response,
            Err(err) => {
                self.forget_connection(&connection).await;
                return Err(err);
            }
        };
        ClientError::check(response.error_code, None)?;

        let mut snapshot = (*self.metadata()).clone();
        snapshot.cluster_id = response.cluster_id.as_ref().map(|s| s.to_string());
        snapshot.controller_id = response.controller_id.0;
        snapshot.brokers = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerMetadata {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        if topics.is_none() {
            snapshot.topics.clear();
        }
        if let Some(names) = topics {
            for name in names {
                snapshot.topics.remove(name);
            }
        }
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            snapshot.topics.insert(
                name.clone(),
                Arc::new(TopicMetadata {
                    name,
                    topic_id: topic.topic_id,
                    internal: topic.is_internal,
                    error_code: topic.error_code,
                    partitions,
                }),
            );
        }
        let snapshot = Arc::new(snapshot);
        *self.metadata.write() = snapshot.clone();
        Ok(snapshot)
    }

    /// Metadata for one topic, from the cache or a refresh.
    ///
    /// Fails with [`ClientError::UnknownTopic`] when the broker does not know
    /// the topic, and with the broker's error for other topic-level errors.
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicMetadata>> {
        if let Some(cached) = self.cached_topic(topic) {
            if cached.error_code == 0 && !cached.partitions.is_empty() {
                return Ok(cached);
            }
        }
        let snapshot = self.refresh_topics(&[topic.to_string()]).await?;
        let found = snapshot
            .topics
            .get(topic)
            .cloned()
            .ok_or_else(|| ClientError::UnknownTopic(topic.to_string()))?;
        match found.error_code {
            0 => Ok(found),
            3 => Err(ClientError::UnknownTopic(topic.to_string())),
            code => Err(ClientError::kafka(code, None)),
        }
    }

    /// Like [`Cluster::topic`] but waits (bounded) while the topic is still
    /// being created or electing leaders.
    pub async fn topic_with_leaders(&self, topic: &str) -> Result<Arc<TopicMetadata>> {
        let mut last_error = ClientError::UnknownTopic(topic.to_string());
        for attempt in 0..METADATA_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(METADATA_RETRY_BACKOFF).await;
                if let Err(err) = self.refresh_topics(&[topic.to_string()]).await {
                    if !err.is_retriable() {
                        return Err(err);
                    }
                    last_error = err;
                    continue;
                }
            }
            match self.topic(topic).await {
                Ok(found) if !found.available_partitions().is_empty() => return Ok(found),
                Ok(_) => last_error = ClientError::kafka(5, None),
                Err(err @ ClientError::UnknownTopic(_)) => return Err(err),
                Err(err) if err.is_retriable() => last_error = err,
                Err(err) => return Err(err),
            }
        }
        Err(last_error)
    }

    /// The leader of a partition and a connection to it.
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i32, Arc<Connection>)> {
        let metadata = self.topic(topic).await?;
        let leader = metadata
            .partition(partition)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?
            .leader;
        if leader < 0 {
            return Err(ClientError::kafka(5, None));
        }
        Ok((leader, self.connection(leader).await?))
    }

    /// A pooled connection to a broker, reconnecting if the old one closed.
    pub async fn connection(&self, broker_id: i32) -> Result<Arc<Connection>> {
        let slot = self
            .connections
            .lock()
            .entry(broker_id)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(existing) = slot.as_ref() {
            if !existing.is_closed() {
                return Ok(existing.clone());
            }
        }
        let addr = self
            .metadata()
            .brokers
            .get(&broker_id)
            .map(|b| b.addr())
            .ok_or_else(|| ClientError::kafka(8, None))?;
        let connection = Arc::new(Connection::connect(&addr, &self.config).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// A connection to the active controller (or any broker for KRaft
    /// clusters that forward admin requests).
    pub async fn controller_connection(&self) -> Result<Arc<Connection>> {
        let controller = self.metadata().controller_id;
        if controller >= 0 && self.metadata().brokers.contains_key(&controller) {
            if let Ok(connection) = self.connection(controller).await {
                return Ok(connection);
            }
        }
        self.any_connection().await
    }

    /// Any open connection: a pooled one, the bootstrap one, or a new one to a
    /// known broker or bootstrap server.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let slots: Vec<ConnectionSlot> = self.connections.lock().values().cloned().collect();
        for slot in slots {
            if let Ok(slot) = slot.try_lock() {
                if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
                    return Ok(connection.clone());
                }
            }
        }
        let mut bootstrap = self.bootstrap.lock().await;
        if let Some(connection) = bootstrap.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let known: Vec<String> = self.metadata().brokers.values().map(|b| b.addr()).collect();
        let candidates = known.iter().chain(self.config.bootstrap_servers.iter());
        let mut last_error = ClientError::NoBrokers;
        for addr in candidates {
            match Connection::connect(addr, &self.config).await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    *bootstrap = Some(connection.clone());
                    return Ok(connection);
                }
                Err(err) => {
                    tracing::debug!(addr, %err, "connect failed");
                    last_error = err;
                }
            }
        }
        // A broker that answered and refused (authentication, a bad TLS or
        // SASL setting) says more than "unreachable".
        match last_error {
            ClientError::UnsupportedVersion { .. }
            | ClientError::Protocol(_)
            | ClientError::Kafka { .. }
            | ClientError::Config(_) => Err(last_error),
            _ => Err(ClientError::NoBrokers),
        }
    }

    /// Drops a connection from the pool after it failed.
    pub async fn forget_connection(&self, connection: &Arc<Connection>) {
        let slots: Vec<ConnectionSlot> = self.connections.lock().values().cloned().collect();
        for slot in slots {
            let mut slot = slot.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
                *slot = None;
            }
        }
        let mut bootstrap = self.bootstrap.lock().await;
        if bootstrap
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, connection))
        {
            *bootstrap = None;
        }
    }
}
