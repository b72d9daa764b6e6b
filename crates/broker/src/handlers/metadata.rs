//! Metadata (3): brokers, topics, partitions, leaders, from the image.
//! Unknown topics are created when the client allows it and
//! `auto.create.topics.enable` is set, as in Kafka.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kraftwerk_types::ErrorCode;

use super::{authorized_on_cluster, authorized_on_topic, str_bytes, Request};
use crate::metadata::{validate_topic_name, MetadataImage, TopicRecord};
use crate::security::authorizer::op;
use crate::BrokerState;

/// Kafka's "authorized operations were not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(
    state: &BrokerState,
    req: &Request<'_>,
    body: MetadataRequest,
) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all.
    let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = match body.topics {
        None => None,
        Some(t) if t.is_empty() && req.version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let allow_auto_create = req.version < 4 || body.allow_auto_topic_creation;
    if let Some(wanted) = &wanted {
        if allow_auto_create && state.config.auto_create_topics_enable {
            let image = state.image.load();
            for name in wanted.iter().filter_map(|(n, _)| n.as_deref()) {
                // Creating needs CREATE on the cluster or on the topic.
                let may_create = authorized_on_cluster(state, req, op::CREATE)
                    || authorized_on_topic(state, req, op::CREATE, name);
                if image.topic(name).is_none() && validate_topic_name(name).is_ok() && may_create {
                    state.auto_create_topic(name).await;
                }
            }
        }
    }
    let req_listener = req.listener;
    let image = state.image.load();
    let topics = match wanted {
        // All topics: those the client may describe.
        None => image
            .topics
            .values()
            .filter(|t| authorized_on_topic(state, req, op::DESCRIBE, &t.name))
            .map(|t| topic_entry(&image, t, req_listener))
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|(name, id)| {
                let found = match &name {
                    Some(n) => image.topic(n),
                    None => image.topic_by_id(&kraftwerk_types::TopicId(id)),
                };
                let allowed = match (found, &name) {
                    (Some(t), _) => authorized_on_topic(state, req, op::DESCRIBE, &t.name),
                    (None, Some(n)) => authorized_on_topic(state, req, op::DESCRIBE, n),
                    (None, None) => true,
                };
                if !allowed {
                    return MetadataResponseTopic::default()
                        .with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.code())
                        .with_name(name.map(|n| TopicName(str_bytes(n))))
                        .with_topic_id(id)
                        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
                }
                match found {
                    Some(t) => topic_entry(&image, t, req_listener),
                    None => {
                        let code = match &name {
                            Some(n) if validate_topic_name(n).is_err() => {
                                ErrorCode::INVALID_TOPIC_EXCEPTION
                            }
                            Some(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                            None => ErrorCode::UNKNOWN_TOPIC_ID,
                        };
                        MetadataResponseTopic::default()
                            .with_error_code(code.code())
                            .with_name(name.map(|n| TopicName(str_bytes(n))))
                            .with_topic_id(id)
                            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                    }
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers(&image, req_listener))
        .with_cluster_id(Some(str_bytes(image.cluster_id.clone())))
        .with_controller_id(BrokerId(controller_id_for_clients(&image, req_listener)))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// The `controller_id` clients are told: a live broker picked at random
/// among those reachable through `listener`, or -1 when there is none, as
/// Kafka's KRaft brokers answer. Clients send admin requests to it and any
/// broker forwards them to the active controller; naming the active
/// controller itself would send them to a node that may not serve this
/// listener (a dedicated controller) and, once it dies, to a dead node
/// until the client's next metadata refresh (minutes for librdkafka).
pub(crate) fn controller_id_for_clients(image: &MetadataImage, listener: &str) -> i32 {
    use rand::seq::IteratorRandom;
    image
        .live_brokers()
        .filter(|b| b.endpoint(listener).is_some())
        .map(|b| b.node_id)
        .choose(&mut rand::rng())
        .unwrap_or(-1)
}

/// The live brokers as reached through `listener`; a broker without that
/// listener is left out, as Kafka does.
fn brokers(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host.to_string()))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect()
}

fn topic_entry(image: &MetadataImage, t: &TopicRecord, listener: &str) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            let leader_live = image
                .brokers
                .get(&p.leader)
                .map(|b| !b.fenced)
                .unwrap_or(false);
            let offline: Vec<BrokerId> = p
                .replicas
                .iter()
                .filter(|r| {
                    p.offline_replicas.contains(r)
                        || image.brokers.get(r).map(|b| b.fenced).unwrap_or(true)
                })
                .map(|r| BrokerId(*r))
                .collect();
            // A live leader the client cannot reach on its listener.
            let unreachable = leader_live
                && image
                    .brokers
                    .get(&p.leader)
                    .is_some_and(|b| b.endpoint(listener).is_none());
            let error = if !leader_live {
                ErrorCode::LEADER_NOT_AVAILABLE.code()
            } else if unreachable {
                ErrorCode::LISTENER_NOT_FOUND.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(if leader_live { p.leader } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(t.id.0)
        .with_is_internal(t.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
