//! Topic and cluster administration over CreateTopics, DeleteTopics,
//! Metadata, DescribeConfigs, CreatePartitions, IncrementalAlterConfigs,
//! DescribeCluster and ListOffsets.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::cluster::{Cluster, METADATA_RETRY_BACKOFF};
use crate::connection::Connection;
use crate::consumer::{list_offsets, IsolationLevel, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::error::{ClientError, Result};
use crate::ClientConfig;

/// Attempts of a controller request while the controller moves.
const CONTROLLER_ATTEMPTS_MAX: usize = 5;
/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1 uses the broker's `num.partitions`.
    pub num_partitions: i32,
    /// -1 uses the broker's `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with the given partitions and replication factor, no configs.
    pub fn new(name: impl Into<String>, num_partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            num_partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }
}

/// The outcome for one topic of CreateTopics or DeleteTopics.
#[derive(Debug)]
pub struct TopicResult {
    pub name: String,
    /// Set by CreateTopics v7+.
    pub topic_id: Option<Uuid>,
    pub error: Option<ClientError>,
}

/// The result type of [`Admin::create_topics`].
pub type CreateTopicResult = TopicResult;

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: Option<Uuid>,
    pub internal: bool,
    pub partitions: Vec<PartitionDescription>,
}

/// One configuration entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    /// Kafka's `ConfigSource` id (5 = DEFAULT_CONFIG, 1 = DYNAMIC_TOPIC_CONFIG, ...).
    pub source: i8,
    pub is_default: bool,
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Kafka's name for [`ConfigEntry::source`].
    pub fn source_name(&self) -> &'static str {
        match self.source {
            1 => "DYNAMIC_TOPIC_CONFIG",
            2 => "DYNAMIC_BROKER_CONFIG",
            3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            4 => "STATIC_BROKER_CONFIG",
            5 => "DEFAULT_CONFIG",
            6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
            7 => "CLIENT_METRICS_CONFIG",
            8 => "GROUP_CONFIG",
            _ => "UNKNOWN",
        }
    }
}

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing (DescribeCluster v2+; false otherwise).
    pub fenced: bool,
}

/// The metadata quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The active controller, -1 when there is none.
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    /// Each voter's id and log end offset (-1 when unknown).
    pub voters: Vec<(i32, i64)>,
}

/// One partition replica's log on one broker, as DescribeLogDirs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLogDir {
    pub broker_id: i32,
    pub log_dir: String,
    pub topic: String,
    pub partition: i32,
    /// Bytes the replica's log takes on disk.
    pub size_bytes: i64,
    /// How far the replica is behind its leader's high watermark (0 on the
    /// leader).
    pub offset_lag: i64,
}

/// The cluster as DescribeCluster (or Metadata) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerDescription>,
}

/// Which offset [`Admin::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this time.
    Timestamp(i64),
}

/// An admin client.
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish()
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    /// Connects to the cluster.
    pub async fn new(client: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Cluster::connect(client).await?,
        })
    }

    /// An admin client sharing an existing [`Cluster`].
    pub fn with_cluster(cluster: Arc<Cluster>) -> Admin {
        Admin { cluster }
    }

    /// The cluster this client talks to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.cluster.config().request_timeout_ms).unwrap_or(i32::MAX)
    }

    /// Runs `attempt` against the controller, retrying (bounded) when the
    /// controller moved or could not be reached.
    async fn with_controller<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last_error = ClientError::NoBrokers;
        for round in 0..CONTROLLER_ATTEMPTS_MAX {
            if round > 0 {
                tokio::time::sleep(METADATA_RETRY_BACKOFF).await;
                let _ = self.cluster.refresh_metadata().await;
            }
            let connection = match self.cluster.controller_connection().await {
                Ok(connection) => connection,
                Err(err) if err.is_retriable() => {
                    last_error = err;
                    continue;
                }
                Err(err) => return Err(err),
            };
            match attempt(connection.clone()).await {
                Err(err) if err.code() == Some(ResponseError::NotController.code()) => {
                    last_error = err;
                }
                Err(err @ (ClientError::Io(_) | ClientError::Disconnected { .. })) => {
                    self.cluster.forget_connection(&connection).await;
                    last_error = err;
                }
                other => return other,
            }
        }
        Err(last_error)
    }

    /// Creates topics; one result per topic (errors per topic, not overall).
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<TopicResult>> {
        let timeout_ms = self.timeout_ms();
        let results = self
            .with_controller(|connection| {
                let topics = topics.clone();
                async move {
                    let mut request = CreateTopicsRequest::default();
                    request.timeout_ms = timeout_ms;
                    request.validate_only = validate_only;
                    request.topics = topics
                        .iter()
                        .map(|t| {
                            let mut topic = CreatableTopic::default();
                            topic.name = TopicName(str_bytes(&t.name));
                            topic.num_partitions = t.num_partitions;
                            topic.replication_factor = t.replication_factor;
                            topic.configs = t
                                .configs
                                .iter()
                                .map(|(k, v)| {
                                    let mut config = CreatableTopicConfig::default();
                                    config.name = str_bytes(k);
                                    config.value = Some(str_bytes(v));
                                    config
                                })
                                .collect();
                            topic
                        })
                        .collect();
                    let response = connection.send(request).await?;
                    if let Some(moved) = response
                        .topics
                        .iter()
                        .find(|t| t.error_code == ResponseError::NotController.code())
                    {
                        return Err(ClientError::kafka(moved.error_code, None));
                    }
                    Ok(response
                        .topics
                        .iter()
                        .map(|t| TopicResult {
                            name: t.name.0.to_string(),
                            topic_id: (!t.topic_id.is_nil()).then_some(t.topic_id),
                            error: ClientError::check(t.error_code, t.error_message.as_ref()).err(),
                        })
                        .collect::<Vec<_>>())
                }
            })
            .await?;
        let names: Vec<String> = topics.into_iter().map(|t| t.name).collect();
        let _ = self.cluster.refresh_topics(&names).await;
        Ok(results)
    }

    /// Deletes topics by name; one result per topic.
    pub async fn delete_topics(&self, names: Vec<String>) -> Result<Vec<TopicResult>> {
        let timeout_ms = self.timeout_ms();
        self.with_controller(|connection| {
            let names = names.clone();
            async move {
                let version = connection.version_for::<DeleteTopicsRequest>()?;
                let mut request = DeleteTopicsRequest::default();
                request.timeout_ms = timeout_ms;
                if version >= 6 {
                    request.topics = names
                        .iter()
                        .map(|n| {
                            let mut state = DeleteTopicState::default();
                            state.name = Some(TopicName(str_bytes(n)));
                            state
                        })
                        .collect();
                } else {
                    request.topic_names = names.iter().map(|n| TopicName(str_bytes(n))).collect();
                }
                let response = connection.send_version(request, version).await?;
                if let Some(moved) = response
                    .responses
                    .iter()
                    .find(|t| t.error_code == ResponseError::NotController.code())
                {
                    return Err(ClientError::kafka(moved.error_code, None));
                }
                Ok(response
                    .responses
                    .iter()
                    .map(|t| TopicResult {
                        name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                        topic_id: (!t.topic_id.is_nil()).then_some(t.topic_id),
                        error: ClientError::check(t.error_code, t.error_message.as_ref()).err(),
                    })
                    .collect())
            }
        })
        .await
    }

    /// Topic names, sorted; internal topics only when asked for.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<String>> {
        let snapshot = self.cluster.fetch_metadata(None).await?;
        let mut names: Vec<String> = snapshot
            .topics
            .values()
            .filter(|t| include_internal || !t.internal)
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Leaders, replicas and ISR of the named topics (all topics if empty).
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicDescription>> {
        let snapshot = if names.is_empty() {
            self.cluster.fetch_metadata(None).await?
        } else {
            self.cluster.fetch_metadata(Some(names)).await?
        };
        let wanted: Vec<String> = if names.is_empty() {
            let mut all: Vec<String> = snapshot.topics.keys().cloned().collect();
            all.sort();
            all
        } else {
            names.to_vec()
        };
        wanted
            .iter()
            .map(|name| {
                let topic = snapshot
                    .topics
                    .get(name)
                    .ok_or_else(|| ClientError::UnknownTopic(name.clone()))?;
                match topic.error_code {
                    0 => {}
                    3 => return Err(ClientError::UnknownTopic(name.clone())),
                    code => return Err(ClientError::kafka(code, None)),
                }
                Ok(TopicDescription {
                    name: topic.name.clone(),
                    topic_id: (!topic.topic_id.is_nil()).then_some(topic.topic_id),
                    internal: topic.internal,
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|p| PartitionDescription {
                            partition: p.partition,
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replicas.clone(),
                            isr: p.isr.clone(),
                            offline: p.offline.clone(),
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Every configuration entry of a topic.
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let connection = self.cluster.any_connection().await?;
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = RESOURCE_TYPE_TOPIC;
        resource.resource_name = str_bytes(topic);
        resource.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![resource];
        let response = connection.send(request).await?;
        let result =
            response.results.into_iter().next().ok_or_else(|| {
                ClientError::Protocol("DescribeConfigs returned no result".into())
            })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(ClientError::UnknownTopic(topic.to_string()));
        }
        ClientError::check(result.error_code, result.error_message.as_ref())?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                read_only: c.read_only,
                source: c.config_source,
                is_default: c.config_source == 5,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Grows a topic to `new_total` partitions.
    pub async fn create_partitions(&self, topic: &str, new_total: i32) -> Result<()> {
        let timeout_ms = self.timeout_ms();
        self.with_controller(|connection| async move {
            let mut entry = CreatePartitionsTopic::default();
            entry.name = TopicName(str_bytes(topic));
            entry.count = new_total;
            entry.assignments = None;
            let mut request = CreatePartitionsRequest::default();
            request.topics = vec![entry];
            request.timeout_ms = timeout_ms;
            let response = connection.send(request).await?;
            for result in &response.results {
                ClientError::check(result.error_code, result.error_message.as_ref())?;
            }
            Ok(())
        })
        .await?;
        let _ = self.cluster.refresh_topics(&[topic.to_string()]).await;
        Ok(())
    }

    /// Sets (`Some`) or deletes (`None`, back to the default) topic configs
    /// with IncrementalAlterConfigs. A broker without that API yields
    /// [`ClientError::UnsupportedVersion`]; a broker refusing a change yields
    /// its error.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<()> {
        self.with_controller(|connection| {
            let changes = changes.clone();
            async move {
                let mut resource = AlterConfigsResource::default();
                resource.resource_type = RESOURCE_TYPE_TOPIC;
                resource.resource_name = str_bytes(topic);
                resource.configs = changes
                    .iter()
                    .map(|(name, value)| {
                        let mut config = AlterableConfig::default();
                        config.name = str_bytes(name);
                        // 0 = SET, 1 = DELETE
                        config.config_operation = if value.is_some() { 0 } else { 1 };
                        config.value = value.as_deref().map(str_bytes);
                        config
                    })
                    .collect();
                let mut request = IncrementalAlterConfigsRequest::default();
                request.resources = vec![resource];
                let response = connection.send(request).await?;
                for result in &response.responses {
                    ClientError::check(result.error_code, result.error_message.as_ref())?;
                }
                Ok(())
            }
        })
        .await
    }

    /// Cluster id, controller and brokers (DescribeCluster, or Metadata on
    /// brokers without it).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.describe_cluster_with(false).await
    }

    /// [`Admin::describe_cluster`] listing fenced brokers too (DescribeCluster
    /// v2+ asked to include them, KIP-1073); brokers that cannot be asked
    /// leave them out.
    pub async fn describe_cluster_including_fenced(&self) -> Result<ClusterDescription> {
        self.describe_cluster_with(true).await
    }

    async fn describe_cluster_with(&self, include_fenced: bool) -> Result<ClusterDescription> {
        let connection = self.cluster.any_connection().await?;
        if let Ok(version) = connection.version_for::<DescribeClusterRequest>() {
            let response = connection
                .send_version(
                    DescribeClusterRequest::default()
                        .with_include_fenced_brokers(include_fenced && version >= 2),
                    version,
                )
                .await?;
            ClientError::check(response.error_code, response.error_message.as_ref())?;
            let mut brokers: Vec<BrokerDescription> = response
                .brokers
                .iter()
                .map(|b| BrokerDescription {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                    fenced: b.is_fenced,
                })
                .collect();
            brokers.sort_by_key(|b| b.id);
            return Ok(ClusterDescription {
                cluster_id: Some(response.cluster_id.to_string()),
                controller_id: response.controller_id.0,
                brokers,
            });
        }
        let snapshot = self.cluster.fetch_metadata(Some(&[])).await?;
        Ok(ClusterDescription {
            cluster_id: snapshot.cluster_id.clone(),
            controller_id: snapshot.controller_id,
            brokers: snapshot
                .brokers
                .values()
                .map(|b| BrokerDescription {
                    id: b.node_id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone(),
                    fenced: false,
                })
                .collect(),
        })
    }

    /// The metadata quorum: leader, epoch, high watermark, voters (DescribeQuorum).
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        let connection = self.cluster.any_connection().await?;
        let request = kafka_protocol::messages::DescribeQuorumRequest::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(str_bytes("__cluster_metadata")))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
        ]);
        let response = connection.send(request).await?;
        ClientError::check(response.error_code, response.error_message.as_ref())?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| {
                ClientError::Protocol("DescribeQuorum answer has no partition".into())
            })?;
        ClientError::check(p.error_code, p.error_message.as_ref())?;
        Ok(QuorumDescription {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: p
                .current_voters
                .iter()
                .map(|v| (v.replica_id.0, v.log_end_offset))
                .collect(),
        })
    }

    /// Every partition replica's log on every live broker (DescribeLogDirs
    /// sent to each broker, all topics). A broker that cannot be reached
    /// fails the call.
    pub async fn describe_log_dirs(&self) -> Result<Vec<ReplicaLogDir>> {
        let snapshot = self.cluster.refresh_metadata().await?;
        let mut found = Vec::new();
        for broker_id in snapshot.brokers.keys() {
            let connection = self.cluster.connection(*broker_id).await?;
            let response = connection
                .send(kafka_protocol::messages::DescribeLogDirsRequest::default().with_topics(None))
                .await?;
            ClientError::check(response.error_code, None)?;
            for dir in &response.results {
                ClientError::check(dir.error_code, None)?;
                for topic in &dir.topics {
                    for p in &topic.partitions {
                        found.push(ReplicaLogDir {
                            broker_id: *broker_id,
                            log_dir: dir.log_dir.to_string(),
                            topic: topic.name.0.to_string(),
                            partition: p.partition_index,
                            size_bytes: p.partition_size,
                            offset_lag: p.offset_lag,
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    /// `(offset, timestamp)` of one partition for the given spec.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<(i64, i64)> {
        let timestamp = match spec {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
            OffsetSpec::Timestamp(ms) => ms,
        };
        let mut results = list_offsets(
            &self.cluster,
            vec![(topic.to_string(), partition, timestamp)],
            IsolationLevel::ReadUncommitted,
        )
        .await?;
        results
            .remove(&(topic.to_string(), partition))
            .ok_or_else(|| ClientError::Protocol("ListOffsets returned no answer".into()))
    }
}
