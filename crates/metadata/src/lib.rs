//! Layer 0: the cluster metadata image: brokers, topics and partitions as
//! one immutable, versioned value.
//!
//! The controller quorum (`kraftwerk-controller`) produces images by
//! applying the records of its metadata log ([`commands`]); brokers read the
//! current one through [`ImageCell`] and never lock it for long. Brokers
//! write the same records to the quorum, so they depend on this crate, not
//! on the controller's.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod commands;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kraftwerk_types::TopicId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One advertised Kafka listener of a broker: a client that connected on
/// the listener called `name` is told to reach the broker at `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// One broker's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// The broker's first advertised listener (`inter.broker.listener.name`
    /// when set), for callers that do not know which listener they serve.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
    /// `host:port` of the broker's replication gRPC listener.
    #[serde(default)]
    pub replication_endpoint: Option<String>,
    /// `host:port` of the broker's HTTP listener (`kraftwerk.http.listener`:
    /// `/metrics`, `/api/v1`) as other nodes reach it; `None` when it serves
    /// none, and in registrations written before brokers advertised it.
    #[serde(default)]
    pub http_endpoint: Option<String>,
    /// Every advertised Kafka listener. Empty in registrations written
    /// before brokers advertised more than one; `host:port` serves then.
    #[serde(default)]
    pub listeners: Vec<ListenerEndpoint>,
}

impl BrokerRegistration {
    /// Where a client that connected on `listener` reaches this broker, or
    /// `None` when the broker has no listener of that name (Kafka answers
    /// such clients as if the broker did not exist).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| (l.host.as_str(), l.port))
    }
}

/// Placement and leadership of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// During a reassignment (Kafka's PartitionRecord fields): the target
    /// replicas not yet in `replicas` before it began, and the replicas
    /// that leave when it completes. `replicas` holds the target first, then
    /// the removing ones. Both empty when no reassignment is ongoing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
    /// Replicas whose broker could not open this partition's log (Kafka's
    /// offline replicas): never elected and never added to the ISR until
    /// that broker registers again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offline_replicas: Vec<i32>,
}

impl PartitionRecord {
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition has once its reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        let mut target = self.replicas.clone();
        target.retain(|r| !self.removing_replicas.contains(r));
        target
    }

    /// The replicas the partition had before its reassignment began.
    pub fn original_replicas(&self) -> Vec<i32> {
        let mut original = self.replicas.clone();
        original.retain(|r| !self.adding_replicas.contains(r));
        original
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: TopicId,
    pub partitions: Vec<PartitionRecord>,
    /// Topic-level overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

impl TopicRecord {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// A user's SCRAM credential as Kafka keeps it (RFC 5802): the salt, the
/// iteration count and the two keys derived from the salted password,
/// never the password or the salted password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// One ACL, with Kafka's codes for its resource type, pattern type,
/// operation and permission type (see the broker's authorizer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    /// `User:NAME`, or `User:*` for everyone.
    pub principal: String,
    /// A client address, or `*` for any.
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// A quota entity's components: (`user` or `client-id`, name or `None`
/// for the default), sorted by type.
pub type QuotaEntity = Vec<(String, Option<String>)>;
/// Changes to an entity's quota values: `Some` sets, `None` removes.
pub type QuotaOps = Vec<(String, Option<i64>)>;

/// The quotas of one entity: `user` and/or `client-id` components, each
/// named or the default (`None`), sorted by type; values by key
/// (`producer_byte_rate`, `consumer_byte_rate`), in bytes per second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub values: BTreeMap<String, i64>,
}

/// An immutable snapshot of cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Bumped by every change; lets a reader tell two images apart cheaply.
    pub version: u64,
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// Each registered broker's epoch: the metadata offset of its registration.
    #[serde(default)]
    pub broker_epochs: BTreeMap<i32, i64>,
    /// Brokers in controlled shutdown.
    #[serde(default)]
    pub shutting_down: BTreeSet<i32>,
    /// Producer ids below this were handed out.
    #[serde(default)]
    pub next_producer_id: i64,
    /// SCRAM credentials by user name, then mechanism name
    /// (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// ACLs, in the order they were created.
    #[serde(default)]
    pub acls: Vec<AclBinding>,
    /// Client quotas: each entity with its quota values.
    #[serde(default)]
    pub client_quotas: Vec<ClientQuota>,
    #[serde(skip)]
    ids: HashMap<TopicId, String>,
}

impl MetadataImage {
    pub fn new(cluster_id: String, controller_id: i32) -> Self {
        MetadataImage {
            cluster_id,
            controller_id,
            ..Default::default()
        }
    }

    /// Rebuilds the derived lookup tables; call after changing `topics`.
    pub fn reindex(&mut self) {
        self.ids = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    pub fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&TopicRecord> {
        self.ids.get(id).and_then(|name| self.topics.get(name))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionRecord> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
    }

    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

/// The shared, swappable current image. Readers take the current one
/// without waiting; a task that needs a change to arrive waits on it
/// ([`ImageCell::wait_until`]) instead of polling.
#[derive(Debug)]
pub struct ImageCell {
    current: watch::Sender<Arc<MetadataImage>>,
}

impl Default for ImageCell {
    fn default() -> Self {
        ImageCell::new(MetadataImage::default())
    }
}

impl ImageCell {
    pub fn new(image: MetadataImage) -> Self {
        ImageCell {
            current: watch::Sender::new(Arc::new(image)),
        }
    }

    pub fn load(&self) -> Arc<MetadataImage> {
        self.current.borrow().clone()
    }

    pub fn publish(&self, image: MetadataImage) -> Arc<MetadataImage> {
        let image = Arc::new(image);
        self.current.send_replace(image.clone());
        image
    }

    /// The first image (the current one, or a later one) that satisfies
    /// `ready`.
    pub async fn wait_until(
        &self,
        mut ready: impl FnMut(&MetadataImage) -> bool,
    ) -> Arc<MetadataImage> {
        let mut rx = self.current.subscribe();
        // The sender lives in `self`, so the channel cannot close while
        // this borrow of `self` lasts.
        let found = match rx.wait_for(|image| ready(image)).await {
            Ok(image) => Some(image.clone()),
            Err(_) => None,
        };
        found.unwrap_or_else(|| self.load())
    }
}

/// Kafka's rule for topic names: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long, the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_written_before_http_endpoints_still_load() {
        let old = r#"{"node_id":2,"host":"h","port":9092,"rack":null,"fenced":false,"replication_endpoint":"h:10092"}"#;
        let b: BrokerRegistration = serde_json::from_str(old).expect("an older registration loads");
        assert_eq!(b.http_endpoint, None);
        assert_eq!(b.replication_endpoint.as_deref(), Some("h:10092"));
        assert!(b.listeners.is_empty());
    }

    #[test]
    fn topic_names_follow_kafka() {
        for ok in ["a", "meu-topico", "x.y_z-1", &"a".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "ä", &"a".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod image_cell_tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_on_the_image_it_waits_for_and_not_before() {
        let cell = Arc::new(ImageCell::default());
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.wait_until(|i| i.version >= 2).await.version })
        };
        let mut image = MetadataImage {
            version: 1,
            ..Default::default()
        };
        cell.publish(image.clone());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        image.version = 3;
        cell.publish(image);
        assert_eq!(waiter.await.unwrap(), 3);
        // Already satisfied: answers at once.
        assert_eq!(cell.wait_until(|i| i.version >= 1).await.version, 3);
    }
}
