//! Conversions between kraftwerk-metadata's values and their messages in
//! `proto/metadata.proto`: metadata commands and their results (the
//! controller's `Write` and the deltas of `FetchMetadata`) and the whole
//! image.
//!
//! Encoding never fails. Decoding refuses a message that lacks a required
//! part (a command without its variant, a topic id that is not 16 bytes, a
//! port beyond 65535) with a [`WireError`] naming it.

use std::collections::BTreeMap;

use kraftwerk_metadata::commands::{CommandResult, MetadataCommand, Reassignment};
use kraftwerk_metadata::{
    AclBinding, BrokerRegistration, ClientQuota, ListenerEndpoint, MetadataImage, PartitionRecord,
    QuotaEntity, ScramCredential, TopicRecord,
};
use kraftwerk_types::TopicId;

use crate::metadata as pb;
use crate::metadata::command::Command as C;
use crate::metadata::command_result::Result as R;

/// A metadata message that does not describe a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed metadata message: {0}")]
pub struct WireError(String);

fn missing(what: &str) -> WireError {
    WireError(format!("{what} is missing"))
}

fn port(value: u32, what: &str) -> Result<u16, WireError> {
    u16::try_from(value).map_err(|_| WireError(format!("{what} port {value} is beyond 65535")))
}

fn topic_id(bytes: &[u8]) -> Result<TopicId, WireError> {
    uuid::Uuid::from_slice(bytes)
        .map(TopicId)
        .map_err(|_| WireError(format!("a topic id has {} bytes, not 16", bytes.len())))
}

/// Kafka's ACL codes are `i8`; a value beyond that range is not one.
fn acl_code(value: i32, what: &str) -> Result<i8, WireError> {
    i8::try_from(value).map_err(|_| WireError(format!("ACL {what} {value} is not a Kafka code")))
}

fn listener_to(l: &ListenerEndpoint) -> pb::ListenerEndpoint {
    pb::ListenerEndpoint {
        name: l.name.clone(),
        host: l.host.clone(),
        port: l.port.into(),
    }
}

fn listener_from(l: pb::ListenerEndpoint) -> Result<ListenerEndpoint, WireError> {
    Ok(ListenerEndpoint {
        port: port(l.port, "a listener")?,
        name: l.name,
        host: l.host,
    })
}

fn listeners_from(ls: Vec<pb::ListenerEndpoint>) -> Result<Vec<ListenerEndpoint>, WireError> {
    ls.into_iter().map(listener_from).collect()
}

fn broker_to(b: &BrokerRegistration) -> pb::BrokerRegistration {
    pb::BrokerRegistration {
        node_id: b.node_id,
        host: b.host.clone(),
        port: b.port.into(),
        rack: b.rack.clone(),
        fenced: b.fenced,
        replication_endpoint: b.replication_endpoint.clone(),
        http_endpoint: b.http_endpoint.clone(),
        listeners: b.listeners.iter().map(listener_to).collect(),
    }
}

fn broker_from(b: pb::BrokerRegistration) -> Result<BrokerRegistration, WireError> {
    Ok(BrokerRegistration {
        node_id: b.node_id,
        port: port(b.port, "a broker")?,
        host: b.host,
        rack: b.rack,
        fenced: b.fenced,
        replication_endpoint: b.replication_endpoint,
        http_endpoint: b.http_endpoint,
        listeners: listeners_from(b.listeners)?,
    })
}

fn partition_to(p: &PartitionRecord) -> pb::PartitionRecord {
    pb::PartitionRecord {
        partition: p.partition,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
        offline_replicas: p.offline_replicas.clone(),
    }
}

fn partition_from(p: pb::PartitionRecord) -> PartitionRecord {
    PartitionRecord {
        partition: p.partition,
        replicas: p.replicas,
        isr: p.isr,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        adding_replicas: p.adding_replicas,
        removing_replicas: p.removing_replicas,
        offline_replicas: p.offline_replicas,
    }
}

fn topic_to(t: &TopicRecord) -> pb::TopicRecord {
    pb::TopicRecord {
        name: t.name.clone(),
        id: t.id.0.as_bytes().to_vec(),
        partitions: t.partitions.iter().map(partition_to).collect(),
        configs: t.configs.clone(),
    }
}

fn topic_from(t: pb::TopicRecord) -> Result<TopicRecord, WireError> {
    Ok(TopicRecord {
        id: topic_id(&t.id)?,
        name: t.name,
        partitions: t.partitions.into_iter().map(partition_from).collect(),
        configs: t.configs,
    })
}

fn topics_from(ts: Vec<pb::TopicRecord>) -> Result<Vec<TopicRecord>, WireError> {
    ts.into_iter().map(topic_from).collect()
}

fn credential_to(c: &ScramCredential) -> pb::ScramCredential {
    pb::ScramCredential {
        salt: c.salt.clone(),
        stored_key: c.stored_key.clone(),
        server_key: c.server_key.clone(),
        iterations: c.iterations,
    }
}

fn credential_from(c: pb::ScramCredential) -> ScramCredential {
    ScramCredential {
        salt: c.salt,
        stored_key: c.stored_key,
        server_key: c.server_key,
        iterations: c.iterations,
    }
}

fn user_credential_to(user: &str, mechanism: &str, c: &ScramCredential) -> pb::UserScramCredential {
    pb::UserScramCredential {
        user: user.to_string(),
        mechanism: mechanism.to_string(),
        credential: Some(credential_to(c)),
    }
}

/// (user, mechanism, credential)
fn user_credential_from(
    c: pb::UserScramCredential,
) -> Result<(String, String, ScramCredential), WireError> {
    let credential = c
        .credential
        .map(credential_from)
        .ok_or_else(|| missing("a SCRAM credential"))?;
    Ok((c.user, c.mechanism, credential))
}

type Credentials = BTreeMap<String, BTreeMap<String, ScramCredential>>;

fn credentials_to(all: &Credentials) -> Vec<pb::UserScramCredential> {
    all.iter()
        .flat_map(|(user, by_mechanism)| {
            by_mechanism
                .iter()
                .map(move |(mechanism, c)| user_credential_to(user, mechanism, c))
        })
        .collect()
}

fn credentials_from(list: Vec<pb::UserScramCredential>) -> Result<Credentials, WireError> {
    let mut all = Credentials::new();
    for c in list {
        let (user, mechanism, credential) = user_credential_from(c)?;
        all.entry(user).or_default().insert(mechanism, credential);
    }
    Ok(all)
}

fn acl_to(a: &AclBinding) -> pb::AclBinding {
    pb::AclBinding {
        resource_type: a.resource_type.into(),
        resource_name: a.resource_name.clone(),
        pattern_type: a.pattern_type.into(),
        principal: a.principal.clone(),
        host: a.host.clone(),
        operation: a.operation.into(),
        permission_type: a.permission_type.into(),
    }
}

fn acl_from(a: pb::AclBinding) -> Result<AclBinding, WireError> {
    Ok(AclBinding {
        resource_type: acl_code(a.resource_type, "resource type")?,
        resource_name: a.resource_name,
        pattern_type: acl_code(a.pattern_type, "pattern type")?,
        principal: a.principal,
        host: a.host,
        operation: acl_code(a.operation, "operation")?,
        permission_type: acl_code(a.permission_type, "permission type")?,
    })
}

fn acls_from(list: Vec<pb::AclBinding>) -> Result<Vec<AclBinding>, WireError> {
    list.into_iter().map(acl_from).collect()
}

fn entity_to(entity: &QuotaEntity) -> Vec<pb::QuotaEntityPart> {
    entity
        .iter()
        .map(|(entity_type, name)| pb::QuotaEntityPart {
            entity_type: entity_type.clone(),
            name: name.clone(),
        })
        .collect()
}

fn entity_from(parts: Vec<pb::QuotaEntityPart>) -> QuotaEntity {
    parts.into_iter().map(|p| (p.entity_type, p.name)).collect()
}

fn quota_to(q: &ClientQuota) -> pb::ClientQuota {
    pb::ClientQuota {
        entity: entity_to(&q.entity),
        values: q.values.clone(),
    }
}

fn quota_from(q: pb::ClientQuota) -> ClientQuota {
    ClientQuota {
        entity: entity_from(q.entity),
        values: q.values,
    }
}

fn assignments_to(assignments: &[Vec<i32>]) -> Vec<pb::Assignment> {
    assignments
        .iter()
        .map(|replicas| pb::Assignment {
            replicas: replicas.clone(),
        })
        .collect()
}

fn assignments_from(assignments: Vec<pb::Assignment>) -> Vec<Vec<i32>> {
    assignments.into_iter().map(|a| a.replicas).collect()
}

fn partitions_to(partitions: &[(String, i32)]) -> Vec<pb::TopicPartition> {
    partitions
        .iter()
        .map(|(topic, partition)| pb::TopicPartition {
            topic: topic.clone(),
            partition: *partition,
        })
        .collect()
}

fn partitions_from(partitions: Vec<pb::TopicPartition>) -> Vec<(String, i32)> {
    partitions
        .into_iter()
        .map(|p| (p.topic, p.partition))
        .collect()
}

/// A metadata command as its message.
pub fn command_to_wire(command: &MetadataCommand) -> pb::Command {
    use MetadataCommand as M;
    let variant = match command {
        M::InitCluster { cluster_id } => C::InitCluster(pb::InitCluster {
            cluster_id: cluster_id.clone(),
        }),
        M::RegisterBroker {
            broker_id,
            incarnation_id,
            host,
            port,
            rack,
            replication_endpoint,
            http_endpoint,
            listeners,
        } => C::RegisterBroker(pb::RegisterBroker {
            broker_id: *broker_id,
            incarnation_id: incarnation_id.clone(),
            host: host.clone(),
            port: (*port).into(),
            rack: rack.clone(),
            replication_endpoint: replication_endpoint.clone(),
            http_endpoint: http_endpoint.clone(),
            listeners: listeners.iter().map(listener_to).collect(),
        }),
        M::UnfenceBroker { broker_id } => C::UnfenceBroker(pb::BrokerId {
            broker_id: *broker_id,
        }),
        M::FenceBroker { broker_id } => C::FenceBroker(pb::BrokerId {
            broker_id: *broker_id,
        }),
        M::ShutdownBroker { broker_id } => C::ShutdownBroker(pb::BrokerId {
            broker_id: *broker_id,
        }),
        M::CreateTopic {
            name,
            topic_id,
            assignments,
            configs,
        } => C::CreateTopic(pb::CreateTopic {
            name: name.clone(),
            topic_id: topic_id.0.as_bytes().to_vec(),
            assignments: assignments_to(assignments),
            configs: configs.clone(),
        }),
        M::DeleteTopic { name } => C::DeleteTopic(pb::DeleteTopic { name: name.clone() }),
        M::CreatePartitions { name, assignments } => C::CreatePartitions(pb::CreatePartitions {
            name: name.clone(),
            assignments: assignments_to(assignments),
        }),
        M::AlterTopicConfigs { name, changes } => C::AlterTopicConfigs(pb::AlterTopicConfigs {
            name: name.clone(),
            changes: changes
                .iter()
                .map(|(key, value)| pb::ConfigChange {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }),
        M::AlterScramCredentials {
            deletions,
            upsertions,
        } => C::AlterScramCredentials(pb::AlterScramCredentials {
            deletions: deletions
                .iter()
                .map(|(user, mechanism)| pb::ScramDeletion {
                    user: user.clone(),
                    mechanism: mechanism.clone(),
                })
                .collect(),
            upsertions: upsertions
                .iter()
                .map(|(user, mechanism, c)| user_credential_to(user, mechanism, c))
                .collect(),
        }),
        M::CreateAcls { acls } => C::CreateAcls(pb::Acls {
            acls: acls.iter().map(acl_to).collect(),
        }),
        M::DeleteAcls { acls } => C::DeleteAcls(pb::Acls {
            acls: acls.iter().map(acl_to).collect(),
        }),
        M::AlterClientQuotas { changes } => C::AlterClientQuotas(pb::AlterClientQuotas {
            changes: changes
                .iter()
                .map(|(entity, ops)| pb::EntityQuotaChanges {
                    entity: entity_to(entity),
                    changes: ops
                        .iter()
                        .map(|(key, value)| pb::QuotaChange {
                            key: key.clone(),
                            value: *value,
                        })
                        .collect(),
                })
                .collect(),
        }),
        M::AllocateProducerIds { count } => {
            C::AllocateProducerIds(pb::AllocateProducerIds { count: *count })
        }
        M::ElectPreferredLeaders { partitions } => {
            C::ElectPreferredLeaders(pb::ElectPreferredLeaders {
                all_partitions: partitions.is_none(),
                partitions: partitions.as_deref().map(partitions_to).unwrap_or_default(),
            })
        }
        M::AlterPartitionReassignments {
            reassignments,
            allow_replication_factor_change,
        } => C::AlterPartitionReassignments(pb::AlterPartitionReassignments {
            reassignments: reassignments
                .iter()
                .map(|r| pb::Reassignment {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    target: r.target.as_ref().map(|replicas| pb::Assignment {
                        replicas: replicas.clone(),
                    }),
                })
                .collect(),
            allow_replication_factor_change: *allow_replication_factor_change,
        }),
        M::MarkReplicasOffline {
            broker_id,
            partitions,
        } => C::MarkReplicasOffline(pb::MarkReplicasOffline {
            broker_id: *broker_id,
            partitions: partitions_to(partitions),
        }),
        M::ImportSingleNode {
            cluster_id,
            topics,
            scram_credentials,
            acls,
            client_quotas,
            next_producer_id,
        } => C::ImportSingleNode(pb::ImportSingleNode {
            cluster_id: cluster_id.clone(),
            topics: topics.iter().map(topic_to).collect(),
            scram_credentials: credentials_to(scram_credentials),
            acls: acls.iter().map(acl_to).collect(),
            client_quotas: client_quotas.iter().map(quota_to).collect(),
            next_producer_id: *next_producer_id,
        }),
        M::AlterPartition {
            topic,
            partition,
            leader_id,
            partition_epoch,
            isr,
            added_broker_epochs,
        } => C::AlterPartition(pb::AlterPartition {
            topic: topic.clone(),
            partition: *partition,
            leader_id: *leader_id,
            partition_epoch: *partition_epoch,
            isr: isr.clone(),
            added_broker_epochs: added_broker_epochs.clone(),
        }),
    };
    pb::Command {
        command: Some(variant),
    }
}

/// A metadata command from its message.
pub fn command_from_wire(command: pb::Command) -> Result<MetadataCommand, WireError> {
    use MetadataCommand as M;
    let variant = command
        .command
        .ok_or_else(|| missing("the command's variant"))?;
    Ok(match variant {
        C::InitCluster(c) => M::InitCluster {
            cluster_id: c.cluster_id,
        },
        C::RegisterBroker(c) => M::RegisterBroker {
            broker_id: c.broker_id,
            incarnation_id: c.incarnation_id,
            host: c.host,
            port: port(c.port, "a broker")?,
            rack: c.rack,
            replication_endpoint: c.replication_endpoint,
            http_endpoint: c.http_endpoint,
            listeners: listeners_from(c.listeners)?,
        },
        C::UnfenceBroker(c) => M::UnfenceBroker {
            broker_id: c.broker_id,
        },
        C::FenceBroker(c) => M::FenceBroker {
            broker_id: c.broker_id,
        },
        C::ShutdownBroker(c) => M::ShutdownBroker {
            broker_id: c.broker_id,
        },
        C::CreateTopic(c) => M::CreateTopic {
            topic_id: topic_id(&c.topic_id)?,
            name: c.name,
            assignments: assignments_from(c.assignments),
            configs: c.configs,
        },
        C::DeleteTopic(c) => M::DeleteTopic { name: c.name },
        C::CreatePartitions(c) => M::CreatePartitions {
            name: c.name,
            assignments: assignments_from(c.assignments),
        },
        C::AlterTopicConfigs(c) => M::AlterTopicConfigs {
            name: c.name,
            changes: c.changes.into_iter().map(|ch| (ch.key, ch.value)).collect(),
        },
        C::AlterScramCredentials(c) => M::AlterScramCredentials {
            deletions: c
                .deletions
                .into_iter()
                .map(|d| (d.user, d.mechanism))
                .collect(),
            upsertions: c
                .upsertions
                .into_iter()
                .map(user_credential_from)
                .collect::<Result<_, _>>()?,
        },
        C::CreateAcls(c) => M::CreateAcls {
            acls: acls_from(c.acls)?,
        },
        C::DeleteAcls(c) => M::DeleteAcls {
            acls: acls_from(c.acls)?,
        },
        C::AlterClientQuotas(c) => M::AlterClientQuotas {
            changes: c
                .changes
                .into_iter()
                .map(|e| {
                    (
                        entity_from(e.entity),
                        e.changes.into_iter().map(|q| (q.key, q.value)).collect(),
                    )
                })
                .collect(),
        },
        C::AllocateProducerIds(c) => M::AllocateProducerIds { count: c.count },
        C::ElectPreferredLeaders(c) => M::ElectPreferredLeaders {
            partitions: (!c.all_partitions).then(|| partitions_from(c.partitions)),
        },
        C::AlterPartitionReassignments(c) => M::AlterPartitionReassignments {
            reassignments: c
                .reassignments
                .into_iter()
                .map(|r| Reassignment {
                    topic: r.topic,
                    partition: r.partition,
                    target: r.target.map(|a| a.replicas),
                })
                .collect(),
            allow_replication_factor_change: c.allow_replication_factor_change,
        },
        C::MarkReplicasOffline(c) => M::MarkReplicasOffline {
            broker_id: c.broker_id,
            partitions: partitions_from(c.partitions),
        },
        C::ImportSingleNode(c) => M::ImportSingleNode {
            cluster_id: c.cluster_id,
            topics: topics_from(c.topics)?,
            scram_credentials: credentials_from(c.scram_credentials)?,
            acls: acls_from(c.acls)?,
            client_quotas: c.client_quotas.into_iter().map(quota_from).collect(),
            next_producer_id: c.next_producer_id,
        },
        C::AlterPartition(c) => M::AlterPartition {
            topic: c.topic,
            partition: c.partition,
            leader_id: c.leader_id,
            partition_epoch: c.partition_epoch,
            isr: c.isr,
            added_broker_epochs: c.added_broker_epochs,
        },
    })
}

fn outcome(code: i16, message: &str) -> pb::Outcome {
    pb::Outcome {
        error_code: code.into(),
        message: message.to_string(),
    }
}

fn error_code(value: i32) -> Result<i16, WireError> {
    i16::try_from(value).map_err(|_| WireError(format!("error code {value} is not a Kafka code")))
}

/// A command's result as its message.
pub fn result_to_wire(result: &CommandResult) -> pb::CommandResult {
    let variant = match result {
        CommandResult::Ok => R::Ok(pb::Empty {}),
        CommandResult::BrokerEpoch(epoch) => R::BrokerEpoch(*epoch),
        CommandResult::Topic(topic) => R::Topic(topic_to(topic)),
        CommandResult::ProducerIdStart(start) => R::ProducerIdStart(*start),
        CommandResult::PerPartition(outcomes) => R::PerPartition(pb::Outcomes {
            outcomes: outcomes
                .iter()
                .map(|(code, message)| outcome(*code, message))
                .collect(),
        }),
        CommandResult::Error { code, message } => R::Error(outcome(*code, message)),
    };
    pb::CommandResult {
        result: Some(variant),
    }
}

/// A command's result from its message.
pub fn result_from_wire(result: pb::CommandResult) -> Result<CommandResult, WireError> {
    let variant = result
        .result
        .ok_or_else(|| missing("the result's variant"))?;
    Ok(match variant {
        R::Ok(_) => CommandResult::Ok,
        R::BrokerEpoch(epoch) => CommandResult::BrokerEpoch(epoch),
        R::Topic(topic) => CommandResult::Topic(topic_from(topic)?),
        R::ProducerIdStart(start) => CommandResult::ProducerIdStart(start),
        R::PerPartition(outcomes) => CommandResult::PerPartition(
            outcomes
                .outcomes
                .into_iter()
                .map(|o| Ok((error_code(o.error_code)?, o.message)))
                .collect::<Result<_, WireError>>()?,
        ),
        R::Error(o) => CommandResult::Error {
            code: error_code(o.error_code)?,
            message: o.message,
        },
    })
}

/// The whole metadata image as its message.
pub fn image_to_wire(image: &MetadataImage) -> pb::Image {
    pb::Image {
        version: image.version,
        cluster_id: image.cluster_id.clone(),
        controller_id: image.controller_id,
        brokers: image.brokers.values().map(broker_to).collect(),
        topics: image.topics.values().map(topic_to).collect(),
        broker_epochs: image.broker_epochs.clone(),
        shutting_down: image.shutting_down.iter().copied().collect(),
        next_producer_id: image.next_producer_id,
        scram_credentials: credentials_to(&image.scram_credentials),
        acls: image.acls.iter().map(acl_to).collect(),
        client_quotas: image.client_quotas.iter().map(quota_to).collect(),
    }
}

/// The whole metadata image from its message, with its lookup tables built.
pub fn image_from_wire(image: pb::Image) -> Result<MetadataImage, WireError> {
    let mut out = MetadataImage::new(image.cluster_id, image.controller_id);
    out.version = image.version;
    out.brokers = image
        .brokers
        .into_iter()
        .map(|b| broker_from(b).map(|b| (b.node_id, b)))
        .collect::<Result<_, _>>()?;
    out.topics = topics_from(image.topics)?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    out.broker_epochs = image.broker_epochs;
    out.shutting_down = image.shutting_down.into_iter().collect();
    out.next_producer_id = image.next_producer_id;
    out.scram_credentials = credentials_from(image.scram_credentials)?;
    out.acls = acls_from(image.acls)?;
    out.client_quotas = image.client_quotas.into_iter().map(quota_from).collect();
    out.reindex();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prost::Message;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: TopicId::random(),
            partitions: vec![
                PartitionRecord {
                    partition: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2],
                    leader: 1,
                    leader_epoch: 4,
                    partition_epoch: 7,
                    adding_replicas: vec![3],
                    removing_replicas: vec![],
                    offline_replicas: vec![2],
                },
                PartitionRecord {
                    partition: 1,
                    replicas: vec![2],
                    isr: vec![],
                    leader: -1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding_replicas: vec![],
                    removing_replicas: vec![2],
                    offline_replicas: vec![],
                },
            ],
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        }
    }

    fn credential(iterations: i32) -> ScramCredential {
        ScramCredential {
            salt: vec![1, 2, 3],
            stored_key: vec![4; 32],
            server_key: vec![5; 32],
            iterations,
        }
    }

    fn acl(operation: i8) -> AclBinding {
        AclBinding {
            resource_type: 2,
            resource_name: "orders".into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission_type: 3,
        }
    }

    fn listener(name: &str, port: u16) -> ListenerEndpoint {
        ListenerEndpoint {
            name: name.into(),
            host: "10.0.0.1".into(),
            port,
        }
    }

    /// One of every command, with every optional part both set and unset.
    fn every_command() -> Vec<MetadataCommand> {
        use MetadataCommand as M;
        vec![
            M::InitCluster {
                cluster_id: "c-1".into(),
            },
            M::RegisterBroker {
                broker_id: 2,
                incarnation_id: "inc".into(),
                host: "h".into(),
                port: 9092,
                rack: Some("r1".into()),
                replication_endpoint: Some("h:9094".into()),
                http_endpoint: None,
                listeners: vec![listener("PLAINTEXT", 9092), listener("SSL", 65535)],
            },
            M::RegisterBroker {
                broker_id: 3,
                incarnation_id: String::new(),
                host: "h".into(),
                port: 1,
                rack: None,
                replication_endpoint: None,
                http_endpoint: Some("h:8080".into()),
                listeners: vec![],
            },
            M::UnfenceBroker { broker_id: 1 },
            M::FenceBroker { broker_id: 2 },
            M::ShutdownBroker { broker_id: 3 },
            M::CreateTopic {
                name: "orders".into(),
                topic_id: TopicId::random(),
                assignments: vec![vec![1, 2], vec![2, 3], vec![]],
                configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            },
            M::DeleteTopic {
                name: "orders".into(),
            },
            M::CreatePartitions {
                name: "orders".into(),
                assignments: vec![vec![3, 1]],
            },
            M::AlterTopicConfigs {
                name: "orders".into(),
                changes: vec![
                    ("retention.ms".into(), Some("5".into())),
                    ("segment.bytes".into(), None),
                    ("empty".into(), Some(String::new())),
                ],
            },
            M::AlterScramCredentials {
                deletions: vec![("bob".into(), "SCRAM-SHA-256".into())],
                upsertions: vec![("alice".into(), "SCRAM-SHA-512".into(), credential(8192))],
            },
            M::CreateAcls {
                acls: vec![acl(2), acl(3)],
            },
            M::DeleteAcls { acls: vec![acl(4)] },
            M::AlterClientQuotas {
                changes: vec![(
                    vec![
                        ("user".into(), Some("alice".into())),
                        ("client-id".into(), None),
                    ],
                    vec![
                        ("producer_byte_rate".into(), Some(1024)),
                        ("consumer_byte_rate".into(), None),
                    ],
                )],
            },
            M::AllocateProducerIds { count: 1000 },
            M::ElectPreferredLeaders { partitions: None },
            M::ElectPreferredLeaders {
                partitions: Some(vec![]),
            },
            M::ElectPreferredLeaders {
                partitions: Some(vec![("orders".into(), 0), ("orders".into(), 3)]),
            },
            M::AlterPartitionReassignments {
                reassignments: vec![
                    Reassignment {
                        topic: "orders".into(),
                        partition: 0,
                        target: Some(vec![3, 2, 1]),
                    },
                    Reassignment {
                        topic: "orders".into(),
                        partition: 1,
                        target: None,
                    },
                    Reassignment {
                        topic: "orders".into(),
                        partition: 2,
                        target: Some(vec![]),
                    },
                ],
                allow_replication_factor_change: true,
            },
            M::MarkReplicasOffline {
                broker_id: 2,
                partitions: vec![("orders".into(), 1)],
            },
            M::ImportSingleNode {
                cluster_id: "c-1".into(),
                topics: vec![topic("a"), topic("b")],
                scram_credentials: BTreeMap::from([(
                    "alice".into(),
                    BTreeMap::from([
                        ("SCRAM-SHA-256".into(), credential(4096)),
                        ("SCRAM-SHA-512".into(), credential(8192)),
                    ]),
                )]),
                acls: vec![acl(2)],
                client_quotas: vec![ClientQuota {
                    entity: vec![("client-id".into(), Some("app".into()))],
                    values: BTreeMap::from([("producer_byte_rate".into(), 100)]),
                }],
                next_producer_id: 2000,
            },
            M::AlterPartition {
                topic: "orders".into(),
                partition: 0,
                leader_id: 1,
                partition_epoch: 9,
                isr: vec![1, 2, 3],
                added_broker_epochs: BTreeMap::from([(3, 42), (2, -1)]),
            },
        ]
    }

    #[test]
    fn every_command_survives_the_wire() {
        for command in every_command() {
            let bytes = command_to_wire(&command).encode_to_vec();
            let decoded = pb::Command::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(command_from_wire(decoded), Ok(command));
        }
    }

    #[test]
    fn every_result_survives_the_wire() {
        for result in [
            CommandResult::Ok,
            CommandResult::BrokerEpoch(17),
            CommandResult::Topic(topic("orders")),
            CommandResult::ProducerIdStart(5000),
            CommandResult::PerPartition(vec![(0, String::new()), (37, "no".into())]),
            CommandResult::PerPartition(vec![]),
            CommandResult::Error {
                code: 36,
                message: "exists".into(),
            },
        ] {
            let bytes = result_to_wire(&result).encode_to_vec();
            let decoded = pb::CommandResult::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(result_from_wire(decoded), Ok(result));
        }
    }

    #[test]
    fn the_whole_image_survives_the_wire_with_its_lookups() {
        let mut image = MetadataImage::new("cluster".into(), 2);
        image.version = 99;
        image.brokers = (1..=3)
            .map(|id| {
                (
                    id,
                    BrokerRegistration {
                        node_id: id,
                        host: format!("b{id}"),
                        port: 9092,
                        rack: (id == 1).then(|| "r".to_string()),
                        fenced: id == 3,
                        replication_endpoint: Some(format!("b{id}:9094")),
                        http_endpoint: None,
                        listeners: vec![listener("PLAINTEXT", 9092)],
                    },
                )
            })
            .collect();
        image.topics = ["a", "b"]
            .into_iter()
            .map(|n| (n.to_string(), topic(n)))
            .collect();
        image.broker_epochs = BTreeMap::from([(1, 10), (2, 20)]);
        image.shutting_down = [2].into_iter().collect();
        image.next_producer_id = 3000;
        image.scram_credentials = BTreeMap::from([(
            "alice".into(),
            BTreeMap::from([("SCRAM-SHA-256".into(), credential(4096))]),
        )]);
        image.acls = vec![acl(3), acl(2)];
        image.client_quotas = vec![ClientQuota {
            entity: vec![("user".into(), None)],
            values: BTreeMap::from([("consumer_byte_rate".into(), 7)]),
        }];
        image.reindex();

        let bytes = image_to_wire(&image).encode_to_vec();
        let decoded =
            image_from_wire(pb::Image::decode(bytes.as_slice()).expect("decodes")).expect("valid");
        assert_eq!(decoded, image);
        let id = image.topics["b"].id;
        assert_eq!(decoded.topic_by_id(&id).map(|t| t.name.as_str()), Some("b"));
        assert_eq!(
            image_from_wire(pb::Image::default()),
            Ok(MetadataImage::default())
        );
    }

    #[test]
    fn malformed_messages_are_refused_with_what_is_wrong() {
        let refused = |command: pb::Command| command_from_wire(command).unwrap_err().to_string();
        assert!(refused(pb::Command { command: None }).contains("variant"));
        let bad_id = pb::Command {
            command: Some(C::CreateTopic(pb::CreateTopic {
                name: "t".into(),
                topic_id: vec![1, 2, 3],
                ..Default::default()
            })),
        };
        assert!(refused(bad_id).contains("3 bytes, not 16"));
        let bad_port = pb::Command {
            command: Some(C::RegisterBroker(pb::RegisterBroker {
                port: 70_000,
                ..Default::default()
            })),
        };
        assert!(refused(bad_port).contains("70000"));
        let bad_acl = pb::Command {
            command: Some(C::CreateAcls(pb::Acls {
                acls: vec![pb::AclBinding {
                    operation: 300,
                    ..Default::default()
                }],
            })),
        };
        assert!(refused(bad_acl).contains("operation 300"));
        let no_credential = pb::Command {
            command: Some(C::AlterScramCredentials(pb::AlterScramCredentials {
                deletions: vec![],
                upsertions: vec![pb::UserScramCredential {
                    user: "alice".into(),
                    mechanism: "SCRAM-SHA-256".into(),
                    credential: None,
                }],
            })),
        };
        assert!(refused(no_credential).contains("SCRAM credential"));
        assert!(result_from_wire(pb::CommandResult { result: None }).is_err());
        let bad_code = pb::CommandResult {
            result: Some(R::Error(pb::Outcome {
                error_code: 40_000,
                message: String::new(),
            })),
        };
        assert!(result_from_wire(bad_code).is_err());
    }
}
