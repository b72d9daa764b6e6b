//! The metadata log's records and how each one changes the image.
//!
//! [`apply`] is deterministic: it sees only the image and the command (no
//! clock, no randomness, no I/O), so every controller node that applies the
//! same log reaches the same image. Decisions that need the outside world
//! (where to place replicas, which topic id to mint) are taken by the active
//! controller before it proposes the command, and travel inside it.

use std::collections::BTreeMap;

use crate::{
    AclBinding, BrokerRegistration, ClientQuota, ListenerEndpoint, MetadataImage, PartitionRecord,
    QuotaEntity, QuotaOps, ScramCredential, TopicRecord,
};
use kraftwerk_types::{ErrorCode, TopicId};
use serde::{Deserialize, Serialize};

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Sets the cluster id once; later ones are ignored.
    InitCluster {
        cluster_id: String,
    },
    /// A broker process (re)starts. It stays fenced until it heartbeats.
    RegisterBroker {
        broker_id: i32,
        incarnation_id: String,
        host: String,
        port: u16,
        rack: Option<String>,
        /// Where followers fetch from this broker (`host:port`).
        #[serde(default)]
        replication_endpoint: Option<String>,
        /// Where other nodes reach the broker's HTTP listener (`host:port`).
        #[serde(default)]
        http_endpoint: Option<String>,
        /// Every advertised Kafka listener; `host:port` is the first.
        #[serde(default)]
        listeners: Vec<ListenerEndpoint>,
    },
    /// The broker caught up with the metadata log and heartbeats: it may lead.
    UnfenceBroker {
        broker_id: i32,
    },
    /// The broker missed its session timeout: it leads nothing any more.
    FenceBroker {
        broker_id: i32,
    },
    /// Controlled shutdown: leadership moves away, then the broker exits.
    ShutdownBroker {
        broker_id: i32,
    },
    CreateTopic {
        name: String,
        topic_id: TopicId,
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// `Some` sets a topic config override, `None` removes it.
    AlterTopicConfigs {
        name: String,
        changes: Vec<(String, Option<String>)>,
    },
    /// Sets and removes users' SCRAM credentials (AlterUserScramCredentials,
    /// already checked by the broker that received it). Removals first.
    AlterScramCredentials {
        /// (user, mechanism name)
        deletions: Vec<(String, String)>,
        /// (user, mechanism name, credential)
        upsertions: Vec<(String, String, ScramCredential)>,
    },
    /// Adds ACLs (checked by the broker that received them); one already
    /// there is not added twice.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes these exact ACLs (the broker matched the filters).
    DeleteAcls {
        acls: Vec<AclBinding>,
    },
    /// Sets (`Some`) and removes (`None`) quota values of entities.
    AlterClientQuotas {
        changes: Vec<(QuotaEntity, QuotaOps)>,
    },
    /// Reserves `count` producer ids; the result is the first one.
    AllocateProducerIds {
        count: i64,
    },
    /// Moves leadership to the preferred replica where it is live and in the ISR.
    ElectPreferredLeaders {
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Moves partitions to new replica sets (AlterPartitionReassignments).
    /// Each is answered on its own, in order, in `CommandResult::PerPartition`.
    AlterPartitionReassignments {
        reassignments: Vec<Reassignment>,
        /// KIP-860: when false, a target with another replica count is refused.
        allow_replication_factor_change: bool,
    },
    /// A broker could not open these partitions' logs (Kafka's offline
    /// log directory, per partition): its replicas leave leadership and the
    /// ISR, and are not elected or added again until it registers again.
    MarkReplicasOffline {
        broker_id: i32,
        partitions: Vec<(String, i32)>,
    },
    /// Takes over the metadata a single node kept in `metadata.json` before
    /// single nodes ran a controller quorum of one: the topics as they were
    /// (ids, partitions, leader epochs), the SCRAM credentials, ACLs and
    /// quotas, and the producer ids already handed out. Refused once the
    /// log holds a topic, so it is applied at most once.
    ImportSingleNode {
        cluster_id: String,
        topics: Vec<TopicRecord>,
        scram_credentials: BTreeMap<String, BTreeMap<String, ScramCredential>>,
        acls: Vec<AclBinding>,
        client_quotas: Vec<ClientQuota>,
        next_producer_id: i64,
    },
    /// A leader's ISR change, accepted only with the current partition epoch.
    AlterPartition {
        topic: String,
        partition: i32,
        leader_id: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
        /// For replicas being added, the broker epoch the leader saw in their
        /// fetches (Kafka's AlterPartition `NewIsrWithEpochs`, KIP-903). A
        /// replica missing here, or with -1, has an unknown epoch.
        #[serde(default)]
        added_broker_epochs: BTreeMap<i32, i64>,
    },
}

/// One partition's new replica set; `None` cancels its ongoing reassignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Ok,
    BrokerEpoch(i64),
    Topic(TopicRecord),
    ProducerIdStart(i64),
    /// One answer per item of the command: error code (0: done) and message.
    PerPartition(Vec<(i16, String)>),
    /// The command was refused; nothing changed.
    Error {
        code: i16,
        message: String,
    },
}

fn refused(code: ErrorCode, message: impl Into<String>) -> CommandResult {
    CommandResult::Error {
        code: code.code(),
        message: message.into(),
    }
}

/// Removes, then sets, SCRAM credentials; a user left with none is forgotten.
pub fn apply_scram_changes(
    image: &mut MetadataImage,
    deletions: &[(String, String)],
    upsertions: &[(String, String, ScramCredential)],
) {
    for (user, mechanism) in deletions {
        if let Some(by_mechanism) = image.scram_credentials.get_mut(user) {
            by_mechanism.remove(mechanism);
            if by_mechanism.is_empty() {
                image.scram_credentials.remove(user);
            }
        }
    }
    for (user, mechanism, credential) in upsertions {
        image
            .scram_credentials
            .entry(user.clone())
            .or_default()
            .insert(mechanism.clone(), credential.clone());
    }
}

/// Adds `created` (each once) and removes `deleted`.
pub fn apply_acl_changes(
    image: &mut MetadataImage,
    created: &[AclBinding],
    deleted: &[AclBinding],
) {
    image.acls.retain(|a| !deleted.contains(a));
    for acl in created {
        if !image.acls.contains(acl) {
            image.acls.push(acl.clone());
        }
    }
}

/// Sets and removes quota values; an entity left without values goes.
pub fn apply_quota_changes(image: &mut MetadataImage, changes: &[(QuotaEntity, QuotaOps)]) {
    for (entity, ops) in changes {
        let i = match image.client_quotas.iter().position(|q| q.entity == *entity) {
            Some(i) => i,
            None => {
                image.client_quotas.push(ClientQuota {
                    entity: entity.clone(),
                    values: BTreeMap::new(),
                });
                image.client_quotas.len() - 1
            }
        };
        for (key, value) in ops {
            match value {
                Some(v) => {
                    image.client_quotas[i].values.insert(key.clone(), *v);
                }
                None => {
                    image.client_quotas[i].values.remove(key);
                }
            }
        }
    }
    image.client_quotas.retain(|q| !q.values.is_empty());
}

/// Applies one committed command at `log_index` to the image.
pub fn apply(
    image: &mut MetadataImage,
    command: &MetadataCommand,
    log_index: u64,
) -> CommandResult {
    let result = apply_inner(image, command, log_index);
    image.version = log_index;
    image.reindex();
    result
}

fn apply_inner(
    image: &mut MetadataImage,
    command: &MetadataCommand,
    log_index: u64,
) -> CommandResult {
    match command {
        MetadataCommand::InitCluster { cluster_id } => {
            if image.cluster_id.is_empty() {
                image.cluster_id = cluster_id.clone();
            }
            CommandResult::Ok
        }
        MetadataCommand::RegisterBroker {
            broker_id,
            incarnation_id: _,
            host,
            port,
            rack,
            replication_endpoint,
            http_endpoint,
            listeners,
        } => {
            // A new process of a broker that was registered before: the old
            // incarnation is gone with its in-memory state, so it leads
            // nothing from now on (as when it is fenced) and comes back as a
            // follower that must catch up.
            if let Some(previous) = image.brokers.get_mut(broker_id) {
                previous.fenced = true;
                move_leadership_away(image, *broker_id);
            }
            // The new process opens its logs again and reports those it
            // still cannot open.
            for topic in image.topics.values_mut() {
                for p in &mut topic.partitions {
                    if p.offline_replicas.contains(broker_id) {
                        p.offline_replicas.retain(|r| r != broker_id);
                        p.partition_epoch += 1;
                    }
                }
            }
            image.brokers.insert(
                *broker_id,
                BrokerRegistration {
                    node_id: *broker_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    fenced: true,
                    replication_endpoint: replication_endpoint.clone(),
                    http_endpoint: http_endpoint.clone(),
                    listeners: listeners.clone(),
                },
            );
            image.broker_epochs.insert(*broker_id, log_index as i64);
            image.shutting_down.remove(broker_id);
            CommandResult::BrokerEpoch(log_index as i64)
        }
        MetadataCommand::UnfenceBroker { broker_id } => {
            let Some(b) = image.brokers.get_mut(broker_id) else {
                return refused(
                    ErrorCode::BROKER_ID_NOT_REGISTERED,
                    format!("broker {broker_id} is not registered"),
                );
            };
            b.fenced = false;
            image.shutting_down.remove(broker_id);
            elect_returning_broker(image, *broker_id);
            CommandResult::Ok
        }
        MetadataCommand::FenceBroker { broker_id }
        | MetadataCommand::ShutdownBroker { broker_id } => {
            let Some(b) = image.brokers.get_mut(broker_id) else {
                return refused(
                    ErrorCode::BROKER_ID_NOT_REGISTERED,
                    format!("broker {broker_id} is not registered"),
                );
            };
            b.fenced = true;
            if matches!(command, MetadataCommand::ShutdownBroker { .. }) {
                image.shutting_down.insert(*broker_id);
            }
            move_leadership_away(image, *broker_id);
            CommandResult::Ok
        }
        MetadataCommand::CreateTopic {
            name,
            topic_id,
            assignments,
            configs,
        } => {
            if image.topics.contains_key(name) {
                return refused(
                    ErrorCode::TOPIC_ALREADY_EXISTS,
                    format!("topic '{name}' already exists"),
                );
            }
            // Kafka refuses names that collide once '.' and '_' are taken as
            // one character; checked here too, against the committed image,
            // so two brokers creating such a pair at once cannot both win.
            let folded = name.replace('.', "_");
            if let Some(other) = image.topics.keys().find(|n| n.replace('.', "_") == folded) {
                return refused(
                    ErrorCode::INVALID_TOPIC_EXCEPTION,
                    format!("topic '{name}' collides with existing topic '{other}'"),
                );
            }
            let record = TopicRecord {
                name: name.clone(),
                id: *topic_id,
                partitions: assignments
                    .iter()
                    .enumerate()
                    .map(|(i, r)| new_partition(image, i as i32, r))
                    .collect(),
                configs: configs.clone(),
            };
            image.topics.insert(name.clone(), record.clone());
            CommandResult::Topic(record)
        }
        MetadataCommand::ImportSingleNode {
            cluster_id,
            topics,
            scram_credentials,
            acls,
            client_quotas,
            next_producer_id,
        } => {
            if !image.topics.is_empty() {
                return refused(
                    ErrorCode::INVALID_REQUEST,
                    "the metadata log already holds topics; nothing imported".to_string(),
                );
            }
            if image.cluster_id.is_empty() {
                image.cluster_id = cluster_id.clone();
            }
            for t in topics {
                image.topics.insert(t.name.clone(), t.clone());
            }
            image.scram_credentials = scram_credentials.clone();
            image.acls = acls.clone();
            image.client_quotas = client_quotas.clone();
            image.next_producer_id = image.next_producer_id.max(*next_producer_id);
            CommandResult::Ok
        }
        MetadataCommand::DeleteTopic { name } => match image.topics.remove(name) {
            Some(_) => CommandResult::Ok,
            None => refused(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic '{name}' does not exist"),
            ),
        },
        MetadataCommand::CreatePartitions { name, assignments } => {
            let Some(current) = image.topics.get(name).map(|t| t.partitions.len() as i32) else {
                return refused(
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic '{name}' does not exist"),
                );
            };
            let added: Vec<PartitionRecord> = assignments
                .iter()
                .enumerate()
                .map(|(i, r)| new_partition(image, current + i as i32, r))
                .collect();
            if let Some(t) = image.topics.get_mut(name) {
                t.partitions.extend(added);
            }
            CommandResult::Ok
        }
        MetadataCommand::AlterTopicConfigs { name, changes } => {
            let Some(t) = image.topics.get_mut(name) else {
                return refused(
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic '{name}' does not exist"),
                );
            };
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        t.configs.insert(k.clone(), v.clone());
                    }
                    None => {
                        t.configs.remove(k);
                    }
                }
            }
            CommandResult::Ok
        }
        MetadataCommand::AlterScramCredentials {
            deletions,
            upsertions,
        } => {
            apply_scram_changes(image, deletions, upsertions);
            CommandResult::Ok
        }
        MetadataCommand::CreateAcls { acls } => {
            apply_acl_changes(image, acls, &[]);
            CommandResult::Ok
        }
        MetadataCommand::DeleteAcls { acls } => {
            apply_acl_changes(image, &[], acls);
            CommandResult::Ok
        }
        MetadataCommand::AlterClientQuotas { changes } => {
            apply_quota_changes(image, changes);
            CommandResult::Ok
        }
        MetadataCommand::AllocateProducerIds { count } => {
            let start = image.next_producer_id;
            image.next_producer_id += (*count).max(1);
            CommandResult::ProducerIdStart(start)
        }
        MetadataCommand::ElectPreferredLeaders { partitions } => {
            let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
            for topic in image.topics.values_mut() {
                for p in &mut topic.partitions {
                    if let Some(wanted) = partitions {
                        if !wanted
                            .iter()
                            .any(|(t, i)| *t == topic.name && *i == p.partition)
                        {
                            continue;
                        }
                    }
                    let Some(&preferred) = p.replicas.first() else {
                        continue;
                    };
                    if p.leader != preferred
                        && live.contains(&preferred)
                        && p.isr.contains(&preferred)
                        && !p.offline_replicas.contains(&preferred)
                    {
                        p.leader = preferred;
                        p.leader_epoch += 1;
                        p.partition_epoch += 1;
                    }
                }
            }
            CommandResult::Ok
        }
        MetadataCommand::MarkReplicasOffline {
            broker_id,
            partitions,
        } => {
            if !image.brokers.contains_key(broker_id) {
                return refused(
                    ErrorCode::BROKER_ID_NOT_REGISTERED,
                    format!("broker {broker_id} is not registered"),
                );
            }
            let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
            for (name, partition) in partitions {
                let Some(topic) = image.topics.get_mut(name) else {
                    continue;
                };
                let unclean = unclean_election_enabled(topic);
                let Some(p) = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                else {
                    continue;
                };
                if !p.replicas.contains(broker_id) || p.offline_replicas.contains(broker_id) {
                    continue;
                }
                p.offline_replicas.push(*broker_id);
                step_down(p, *broker_id, &live, unclean);
                p.partition_epoch += 1;
            }
            CommandResult::Ok
        }
        MetadataCommand::AlterPartition {
            topic,
            partition,
            leader_id,
            partition_epoch,
            isr,
            added_broker_epochs,
        } => {
            let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
            let Some(p) = image
                .topics
                .get_mut(topic)
                .and_then(|t| t.partitions.get_mut(*partition as usize))
            else {
                return refused(
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("{topic}-{partition} does not exist"),
                );
            };
            if p.leader != *leader_id {
                return refused(
                    ErrorCode::NOT_LEADER_OR_FOLLOWER,
                    format!("broker {leader_id} does not lead {topic}-{partition}"),
                );
            }
            if p.partition_epoch != *partition_epoch {
                // INVALID_UPDATE_VERSION: the leader works from a stale partition state.
                return refused(
                    ErrorCode::INVALID_UPDATE_VERSION,
                    format!(
                        "partition epoch {partition_epoch} is not the current {}",
                        p.partition_epoch
                    ),
                );
            }
            if isr.is_empty()
                || !isr.contains(leader_id)
                || isr.iter().any(|r| !p.replicas.contains(r))
            {
                return refused(
                    ErrorCode::INVALID_REQUEST,
                    "the ISR must hold the leader and only replicas".to_string(),
                );
            }
            if let Some(r) = isr.iter().find(|r| **r != *leader_id && !live.contains(r)) {
                // A fenced broker cannot join the ISR.
                return refused(
                    ErrorCode::INELIGIBLE_REPLICA,
                    format!("broker {r} is fenced and cannot join the ISR"),
                );
            }
            if let Some(r) = isr
                .iter()
                .find(|r| !p.isr.contains(r) && p.offline_replicas.contains(r))
            {
                return refused(
                    ErrorCode::INELIGIBLE_REPLICA,
                    format!("broker {r} cannot open the log of {topic}-{partition}"),
                );
            }
            // KIP-903: the leader judged a new member by fetches that carried
            // this broker epoch. If the broker has registered since (a
            // restart), those fetches may have come from the earlier process,
            // whose log the new one need not have: refuse, and the leader
            // tries again on the replica's later fetches. -1 (or no entry)
            // means unknown and is accepted, so a leader that does not send
            // epochs yet keeps working during a rolling upgrade.
            let added = isr.iter().filter(|r| !p.isr.contains(r));
            for r in added {
                let Some(&seen) = added_broker_epochs.get(r).filter(|e| **e >= 0) else {
                    continue;
                };
                let current = image.broker_epochs.get(r).copied();
                if current != Some(seen) {
                    return refused(
                        ErrorCode::INELIGIBLE_REPLICA,
                        format!(
                            "broker {r} fetched with broker epoch {seen}, its registration is {}",
                            current.map_or("unknown".to_string(), |e| e.to_string())
                        ),
                    );
                }
            }
            p.isr = isr.clone();
            p.partition_epoch += 1;
            complete_reassignment(p, &live);
            CommandResult::Ok
        }
        MetadataCommand::AlterPartitionReassignments {
            reassignments,
            allow_replication_factor_change,
        } => {
            let registered: Vec<i32> = image.brokers.keys().copied().collect();
            let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
            let answers = reassignments
                .iter()
                .map(|r| {
                    match reassign(
                        image,
                        r,
                        *allow_replication_factor_change,
                        &registered,
                        &live,
                    ) {
                        Ok(()) => (0, String::new()),
                        Err((code, message)) => (code.code(), message),
                    }
                })
                .collect();
            CommandResult::PerPartition(answers)
        }
    }
}

/// Starts, replaces or cancels one partition's reassignment, as Kafka's
/// controller does: the target replicas join `replicas` at once and
/// follow the leader; once all of them are in the ISR the reassignment
/// completes (see [`complete_reassignment`]).
fn reassign(
    image: &mut MetadataImage,
    r: &Reassignment,
    allow_replication_factor_change: bool,
    registered: &[i32],
    live: &[i32],
) -> Result<(), (ErrorCode, String)> {
    let Some(p) = image
        .topics
        .get_mut(&r.topic)
        .and_then(|t| t.partitions.get_mut(usize::try_from(r.partition).ok()?))
    else {
        return Err((
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            format!("{}-{} does not exist", r.topic, r.partition),
        ));
    };
    let original = p.original_replicas();
    let target = match &r.target {
        None => {
            if !p.reassigning() {
                return Err((
                    ErrorCode::NO_REASSIGNMENT_IN_PROGRESS,
                    format!(
                        "no reassignment of {}-{} is in progress",
                        r.topic, r.partition
                    ),
                ));
            }
            original.clone()
        }
        Some(target) => {
            let mut seen = std::collections::BTreeSet::new();
            if target.is_empty() || !target.iter().all(|b| seen.insert(*b)) {
                return Err((
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    "the target replicas must be a non-empty list without repeats".to_string(),
                ));
            }
            if let Some(b) = target.iter().find(|b| !registered.contains(b)) {
                return Err((
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "the target replicas include broker {b}, but no such broker is registered"
                    ),
                ));
            }
            if !allow_replication_factor_change && target.len() != original.len() {
                return Err((
                    ErrorCode::INVALID_REPLICATION_FACTOR,
                    format!(
                        "the target has {} replicas where {}-{} has {}, and a change of replication factor was not allowed",
                        target.len(),
                        r.topic,
                        r.partition,
                        original.len()
                    ),
                ));
            }
            target.clone()
        }
    };
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let mut replicas = target.clone();
    replicas.extend(removing.iter().copied());
    p.replicas = replicas;
    p.adding_replicas = adding;
    p.removing_replicas = removing;
    p.isr.retain(|b| p.replicas.contains(b));
    if !p.replicas.contains(&p.leader) {
        p.leader = elect_from(p, &p.replicas, live);
        p.leader_epoch += 1;
    }
    p.partition_epoch += 1;
    complete_reassignment(p, live);
    Ok(())
}

/// The first of `p`'s `candidates` that is live, in its ISR and not
/// offline, or -1.
fn elect_from(p: &PartitionRecord, candidates: &[i32], live: &[i32]) -> i32 {
    candidates
        .iter()
        .copied()
        .find(|b| p.isr.contains(b) && live.contains(b) && !p.offline_replicas.contains(b))
        .unwrap_or(-1)
}

/// Completes a partition's reassignment once every target replica is in
/// the ISR: the removing replicas leave (and delete their copies when
/// they see it), and leadership moves to the first live target replica in
/// the ISR if the leader was one of them.
fn complete_reassignment(p: &mut PartitionRecord, live: &[i32]) {
    if !p.reassigning() {
        return;
    }
    let target = p.target_replicas();
    if !target.iter().all(|b| p.isr.contains(b)) {
        return;
    }
    p.replicas = target;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    p.isr.retain(|b| p.replicas.contains(b));
    let replicas = p.replicas.clone();
    p.offline_replicas.retain(|b| replicas.contains(b));
    if !p.replicas.contains(&p.leader) {
        p.leader = elect_from(p, &p.replicas, live);
        p.leader_epoch += 1;
    }
    p.partition_epoch += 1;
}

fn new_partition(image: &MetadataImage, partition: i32, replicas: &[i32]) -> PartitionRecord {
    let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
    // The preferred (first) live replica leads; all replicas start in the ISR.
    let leader = replicas
        .iter()
        .copied()
        .find(|r| live.contains(r))
        .unwrap_or(-1);
    PartitionRecord {
        partition,
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        offline_replicas: Vec::new(),
    }
}

/// Whether a topic allows electing a replica outside the ISR: its
/// `unclean.leader.election.enable` override. The brokers' static default
/// is not part of the metadata log, so `apply` cannot see it.
fn unclean_election_enabled(topic: &TopicRecord) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .is_some_and(|v| v.trim() == "true")
}

/// `broker_id` was unfenced: each leaderless partition it holds a replica
/// of gets it as leader when it is in the ISR (a clean election), or,
/// when no ISR member is live and the topic enables unclean leader
/// election, as the ISR's only member (an unclean election, as Kafka's
/// controller does when a broker returns: records only the lost ISR had
/// are gone). A replica still being added by a reassignment is never
/// elected uncleanly: it may hold nothing at all.
fn elect_returning_broker(image: &mut MetadataImage, broker_id: i32) {
    let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
    for topic in image.topics.values_mut() {
        let unclean = unclean_election_enabled(topic);
        for p in &mut topic.partitions {
            if p.leader >= 0
                || !p.replicas.contains(&broker_id)
                || p.offline_replicas.contains(&broker_id)
            {
                continue;
            }
            if p.isr.contains(&broker_id) {
                p.leader = broker_id;
            } else if unclean
                && !p.adding_replicas.contains(&broker_id)
                && !p.isr.iter().any(|r| live.contains(r))
            {
                p.leader = broker_id;
                p.isr = vec![broker_id];
            } else {
                continue;
            }
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        }
    }
}

/// A broker stopped leading: every partition it led elects a new leader from
/// its ISR (live members only, preferred order); the broker leaves the ISR
/// unless it is the last member, which is kept so that the replica with all
/// committed data is known. Unclean election picks any live replica, only
/// when the topic sets `unclean.leader.election.enable`.
fn move_leadership_away(image: &mut MetadataImage, broker_id: i32) {
    let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
    for topic in image.topics.values_mut() {
        let unclean = unclean_election_enabled(topic);
        for p in &mut topic.partitions {
            if p.replicas.contains(&broker_id) && step_down(p, broker_id, &live, unclean) {
                p.partition_epoch += 1;
            }
        }
    }
}

/// `broker_id` leaves `p`'s leadership and ISR as [`move_leadership_away`]
/// describes; offline replicas are never elected. Returns whether the
/// partition changed (the caller bumps its partition epoch).
fn step_down(p: &mut PartitionRecord, broker_id: i32, live: &[i32], unclean: bool) -> bool {
    let mut changed = false;
    if p.isr.contains(&broker_id) && p.isr.len() > 1 {
        p.isr.retain(|r| *r != broker_id);
        changed = true;
    }
    if p.leader == broker_id {
        let eligible =
            |r: &i32| *r != broker_id && live.contains(r) && !p.offline_replicas.contains(r);
        let clean = p
            .replicas
            .iter()
            .copied()
            .find(|r| eligible(r) && p.isr.contains(r));
        let next = match clean {
            Some(r) => Some(r),
            None if unclean => p.replicas.iter().copied().find(|r| eligible(r)),
            None => None,
        };
        match next {
            Some(r) => {
                if !p.isr.contains(&r) {
                    p.isr = vec![r];
                }
                p.leader = r;
            }
            None => p.leader = -1,
        }
        p.leader_epoch += 1;
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(brokers: &[i32]) -> (MetadataImage, u64) {
        let mut image = MetadataImage::default();
        let mut index = 0;
        let mut step = |image: &mut MetadataImage, c: MetadataCommand| {
            index += 1;
            apply(image, &c, index)
        };
        step(
            &mut image,
            MetadataCommand::InitCluster {
                cluster_id: "c1".into(),
            },
        );
        for b in brokers {
            step(
                &mut image,
                MetadataCommand::RegisterBroker {
                    broker_id: *b,
                    incarnation_id: format!("i{b}"),
                    host: "h".into(),
                    port: 9000 + *b as u16,
                    rack: None,
                    replication_endpoint: None,
                    http_endpoint: None,
                    listeners: Vec::new(),
                },
            );
            step(&mut image, MetadataCommand::UnfenceBroker { broker_id: *b });
        }
        (image, index)
    }

    fn topic(
        image: &mut MetadataImage,
        index: &mut u64,
        name: &str,
        assignments: Vec<Vec<i32>>,
    ) -> CommandResult {
        *index += 1;
        apply(
            image,
            &MetadataCommand::CreateTopic {
                name: name.into(),
                topic_id: TopicId::random(),
                assignments,
                configs: BTreeMap::new(),
            },
            *index,
        )
    }

    fn run(image: &mut MetadataImage, index: &mut u64, c: MetadataCommand) -> CommandResult {
        *index += 1;
        apply(image, &c, *index)
    }

    fn reassign(target: Option<Vec<i32>>) -> MetadataCommand {
        MetadataCommand::AlterPartitionReassignments {
            reassignments: vec![Reassignment {
                topic: "t".into(),
                partition: 0,
                target,
            }],
            allow_replication_factor_change: true,
        }
    }

    fn isr_change(image: &MetadataImage, isr: Vec<i32>) -> MetadataCommand {
        let p = &image.topics["t"].partitions[0];
        MetadataCommand::AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader_id: p.leader,
            partition_epoch: p.partition_epoch,
            isr,
            added_broker_epochs: BTreeMap::new(),
        }
    }

    #[test]
    fn names_that_collide_once_dot_and_underscore_are_one_are_refused() {
        let (mut image, mut i) = cluster(&[1]);
        assert!(matches!(
            topic(&mut image, &mut i, "orders.eu", vec![vec![1]]),
            CommandResult::Topic(_)
        ));
        let refused = topic(&mut image, &mut i, "orders_eu", vec![vec![1]]);
        assert_eq!(
            refused,
            CommandResult::Error {
                code: ErrorCode::INVALID_TOPIC_EXCEPTION.0,
                message: "topic 'orders_eu' collides with existing topic 'orders.eu'".into(),
            }
        );
        assert!(image.topic("orders_eu").is_none());
        // The same name again is TOPIC_ALREADY_EXISTS, not a collision.
        assert!(matches!(
            topic(&mut image, &mut i, "orders.eu", vec![vec![1]]),
            CommandResult::Error { code, .. } if code == ErrorCode::TOPIC_ALREADY_EXISTS.0
        ));
    }

    #[test]
    fn a_reassignment_adds_the_target_then_completes_when_it_is_in_sync() {
        let (mut image, mut i) = cluster(&[1, 2, 3, 4]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2]]);
        let r = run(&mut image, &mut i, reassign(Some(vec![3, 4])));
        assert_eq!(r, CommandResult::PerPartition(vec![(0, String::new())]));
        let p = &image.topics["t"].partitions[0];
        // Target first, then the replicas that will leave; the leader stays.
        assert_eq!(p.replicas, vec![3, 4, 1, 2]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![3, 4], vec![1, 2])
        );
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2]));
        // One target replica in sync is not enough.
        let c = isr_change(&image, vec![1, 2, 3]);
        run(&mut image, &mut i, c);
        assert!(image.topics["t"].partitions[0].reassigning());
        let epoch = image.topics["t"].partitions[0].leader_epoch;
        let c = isr_change(&image, vec![1, 2, 3, 4]);
        run(&mut image, &mut i, c);
        let p = &image.topics["t"].partitions[0];
        assert!(!p.reassigning());
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![3, 4], vec![3, 4])
        );
        assert_eq!((p.leader, p.leader_epoch), (3, epoch + 1));
    }

    #[test]
    fn a_reassignment_is_cancelled_back_to_the_original_replicas() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2]]);
        let none = run(&mut image, &mut i, reassign(None));
        assert_eq!(
            none,
            CommandResult::PerPartition(vec![(85, "no reassignment of t-0 is in progress".into())])
        );
        run(&mut image, &mut i, reassign(Some(vec![1, 3])));
        run(&mut image, &mut i, reassign(None));
        let p = &image.topics["t"].partitions[0];
        assert!(!p.reassigning());
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![1, 2], vec![1, 2], 1)
        );
    }

    #[test]
    fn a_reordering_or_shrinking_target_in_sync_completes_at_once() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2, 3]]);
        run(&mut image, &mut i, reassign(Some(vec![2, 3])));
        let p = &image.topics["t"].partitions[0];
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2, 3], vec![2, 3], 2)
        );
        assert!(!p.reassigning());
    }

    #[test]
    fn reassignment_targets_are_checked() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2]]);
        let code =
            |image: &mut MetadataImage, i: &mut u64, c: MetadataCommand| match run(image, i, c) {
                CommandResult::PerPartition(v) => v[0].0,
                other => panic!("{other:?}"),
            };
        assert_eq!(code(&mut image, &mut i, reassign(Some(vec![1, 9]))), 39);
        assert_eq!(code(&mut image, &mut i, reassign(Some(vec![1, 1]))), 39);
        assert_eq!(code(&mut image, &mut i, reassign(Some(vec![]))), 39);
        let fixed_rf = MetadataCommand::AlterPartitionReassignments {
            reassignments: vec![Reassignment {
                topic: "t".into(),
                partition: 0,
                target: Some(vec![1, 2, 3]),
            }],
            allow_replication_factor_change: false,
        };
        assert_eq!(code(&mut image, &mut i, fixed_rf), 38);
        let unknown = MetadataCommand::AlterPartitionReassignments {
            reassignments: vec![Reassignment {
                topic: "t".into(),
                partition: 5,
                target: Some(vec![1]),
            }],
            allow_replication_factor_change: true,
        };
        assert_eq!(code(&mut image, &mut i, unknown), 3);
        assert!(!image.topics["t"].partitions[0].reassigning());
    }

    #[test]
    fn registration_fences_until_unfenced_and_epoch_is_the_log_index() {
        let mut image = MetadataImage::default();
        let r = apply(
            &mut image,
            &MetadataCommand::RegisterBroker {
                broker_id: 7,
                incarnation_id: "x".into(),
                host: "h".into(),
                port: 1,
                rack: Some("r1".into()),
                replication_endpoint: None,
                http_endpoint: None,
                listeners: Vec::new(),
            },
            42,
        );
        assert_eq!(r, CommandResult::BrokerEpoch(42));
        assert!(image.brokers[&7].fenced);
        assert_eq!(image.version, 42);
        apply(
            &mut image,
            &MetadataCommand::UnfenceBroker { broker_id: 7 },
            43,
        );
        assert!(!image.brokers[&7].fenced);
        assert!(matches!(
            apply(
                &mut image,
                &MetadataCommand::UnfenceBroker { broker_id: 8 },
                44
            ),
            CommandResult::Error { .. }
        ));
    }

    #[test]
    fn fencing_a_leader_elects_from_the_isr_and_bumps_epochs() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        run(
            &mut image,
            &mut i,
            MetadataCommand::FenceBroker { broker_id: 1 },
        );
        let p0 = &image.topics["t"].partitions[0];
        assert_eq!(p0.leader, 2);
        assert_eq!(p0.isr, vec![2, 3]);
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
        let p1 = &image.topics["t"].partitions[1];
        assert_eq!(
            p1.leader, 2,
            "a partition the fenced broker did not lead keeps its leader"
        );
        assert_eq!((p1.leader_epoch, p1.isr.clone()), (0, vec![2, 3]));
    }

    #[test]
    fn an_offline_replica_steps_down_and_stays_out_until_its_broker_registers_again() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        let offline = |partitions: Vec<(String, i32)>| MetadataCommand::MarkReplicasOffline {
            broker_id: 1,
            partitions,
        };
        assert_eq!(
            run(&mut image, &mut i, offline(vec![("t".into(), 0)])),
            CommandResult::Ok
        );
        let p0 = &image.topics["t"].partitions[0];
        assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2, 3]));
        assert_eq!(p0.offline_replicas, vec![1]);
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
        let p1 = &image.topics["t"].partitions[1];
        assert_eq!(
            (p1.leader, p1.isr.clone(), p1.offline_replicas.clone()),
            (2, vec![2, 3, 1], vec![]),
            "only the partitions reported change"
        );

        // Neither a preferred election nor an ISR expansion brings it back.
        run(
            &mut image,
            &mut i,
            MetadataCommand::ElectPreferredLeaders { partitions: None },
        );
        assert_eq!(image.topics["t"].partitions[0].leader, 2);
        let expand = run(
            &mut image,
            &mut i,
            MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_id: 2,
                partition_epoch: 1,
                isr: vec![2, 3, 1],
                added_broker_epochs: BTreeMap::new(),
            },
        );
        assert!(
            matches!(expand, CommandResult::Error { code, .. } if code == ErrorCode::INELIGIBLE_REPLICA.code()),
            "{expand:?}"
        );

        // With the other ISR members fenced, the partition goes leaderless
        // rather than elect the offline replica, even when it returns.
        for b in [2, 3] {
            run(
                &mut image,
                &mut i,
                MetadataCommand::FenceBroker { broker_id: b },
            );
        }
        run(
            &mut image,
            &mut i,
            MetadataCommand::UnfenceBroker { broker_id: 1 },
        );
        assert_eq!(image.topics["t"].partitions[0].leader, -1);

        // A new process of broker 1 opens its logs again.
        run(
            &mut image,
            &mut i,
            MetadataCommand::RegisterBroker {
                broker_id: 1,
                incarnation_id: "i1-again".into(),
                host: "h".into(),
                port: 9001,
                rack: None,
                replication_endpoint: None,
                http_endpoint: None,
                listeners: Vec::new(),
            },
        );
        assert!(image.topics["t"].partitions[0].offline_replicas.is_empty());
        let unknown = run(
            &mut image,
            &mut i,
            MetadataCommand::MarkReplicasOffline {
                broker_id: 9,
                partitions: vec![("t".into(), 0)],
            },
        );
        assert!(
            matches!(unknown, CommandResult::Error { code, .. } if code == ErrorCode::BROKER_ID_NOT_REGISTERED.code()),
            "{unknown:?}"
        );
    }

    #[test]
    fn the_last_isr_member_is_kept_and_the_partition_goes_leaderless() {
        let (mut image, mut i) = cluster(&[1, 2]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2]]);
        run(
            &mut image,
            &mut i,
            MetadataCommand::FenceBroker { broker_id: 2 },
        );
        run(
            &mut image,
            &mut i,
            MetadataCommand::FenceBroker { broker_id: 1 },
        );
        let p = &image.topics["t"].partitions[0];
        assert_eq!(p.leader, -1);
        assert_eq!(p.isr, vec![1]);
        // Broker 2 is not in the ISR: its return does not make it leader (no unclean election).
        run(
            &mut image,
            &mut i,
            MetadataCommand::UnfenceBroker { broker_id: 2 },
        );
        assert_eq!(image.topics["t"].partitions[0].leader, -1);
        run(
            &mut image,
            &mut i,
            MetadataCommand::UnfenceBroker { broker_id: 1 },
        );
        let p = &image.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        for (unclean, expected_leader) in [(false, -1), (true, 2)] {
            let (mut image, mut i) = cluster(&[1, 2]);
            let mut configs = BTreeMap::new();
            configs.insert(
                "unclean.leader.election.enable".to_string(),
                unclean.to_string(),
            );
            run(
                &mut image,
                &mut i,
                MetadataCommand::CreateTopic {
                    name: "t".into(),
                    topic_id: TopicId::random(),
                    assignments: vec![vec![1, 2]],
                    configs,
                },
            );
            // Broker 2 drops out of the ISR, then the leader dies.
            run(
                &mut image,
                &mut i,
                MetadataCommand::AlterPartition {
                    topic: "t".into(),
                    partition: 0,
                    leader_id: 1,
                    partition_epoch: 0,
                    isr: vec![1],
                    added_broker_epochs: BTreeMap::new(),
                },
            );
            run(
                &mut image,
                &mut i,
                MetadataCommand::FenceBroker { broker_id: 1 },
            );
            assert_eq!(
                image.topics["t"].partitions[0].leader, expected_leader,
                "unclean={unclean}"
            );
        }
    }

    #[test]
    fn a_returning_replica_outside_the_isr_leads_only_when_the_topic_allows_unclean_election() {
        for (unclean, expected_leader, expected_isr) in [(false, -1, vec![1]), (true, 2, vec![2])] {
            let (mut image, mut i) = cluster(&[1, 2, 3]);
            let mut configs = BTreeMap::new();
            configs.insert(
                "unclean.leader.election.enable".to_string(),
                unclean.to_string(),
            );
            run(
                &mut image,
                &mut i,
                MetadataCommand::CreateTopic {
                    name: "t".into(),
                    topic_id: TopicId::random(),
                    assignments: vec![vec![1, 2], vec![3, 2]],
                    configs,
                },
            );
            // The follower stops (the ISR shrinks to the leader), then the
            // leader stops too: nobody is left to elect.
            run(
                &mut image,
                &mut i,
                MetadataCommand::FenceBroker { broker_id: 2 },
            );
            run(
                &mut image,
                &mut i,
                MetadataCommand::FenceBroker { broker_id: 1 },
            );
            let p = &image.topics["t"].partitions[0];
            assert_eq!(
                (p.leader, p.isr.clone()),
                (-1, vec![1]),
                "unclean={unclean}"
            );
            let epochs = (p.leader_epoch, p.partition_epoch);
            // The follower returns first.
            run(
                &mut image,
                &mut i,
                MetadataCommand::UnfenceBroker { broker_id: 2 },
            );
            let p = &image.topics["t"].partitions[0];
            assert_eq!(
                (p.leader, p.isr.clone()),
                (expected_leader, expected_isr.clone()),
                "unclean={unclean}"
            );
            let bumped = i32::from(unclean);
            assert_eq!(
                (p.leader_epoch, p.partition_epoch),
                (epochs.0 + bumped, epochs.1 + bumped),
                "unclean={unclean}"
            );
            // A partition whose leader stayed live is not touched.
            let other = &image.topics["t"].partitions[1];
            assert_eq!((other.leader, other.isr.clone()), (3, vec![3]));
            // The old leader's return does not take leadership back from an
            // uncleanly elected leader, and makes a leaderless one clean.
            run(
                &mut image,
                &mut i,
                MetadataCommand::UnfenceBroker { broker_id: 1 },
            );
            let p = &image.topics["t"].partitions[0];
            let (leader, isr) = if unclean { (2, vec![2]) } else { (1, vec![1]) };
            assert_eq!(
                (p.leader, p.isr.clone()),
                (leader, isr),
                "unclean={unclean}"
            );
        }
    }

    #[test]
    fn an_unclean_election_needs_every_isr_member_down() {
        let (mut image, mut i) = cluster(&[1, 2]);
        let mut configs = BTreeMap::new();
        configs.insert(
            "unclean.leader.election.enable".to_string(),
            "true".to_string(),
        );
        run(
            &mut image,
            &mut i,
            MetadataCommand::CreateTopic {
                name: "t".into(),
                topic_id: TopicId::random(),
                assignments: vec![vec![1, 2]],
                configs,
            },
        );
        // Leaderless by an explicit empty election while 1, in the ISR, is
        // live (cannot happen through fencing, which would elect it).
        image.topics.get_mut("t").expect("topic").partitions[0].leader = -1;
        image.topics.get_mut("t").expect("topic").partitions[0].isr = vec![1];
        run(
            &mut image,
            &mut i,
            MetadataCommand::FenceBroker { broker_id: 2 },
        );
        run(
            &mut image,
            &mut i,
            MetadataCommand::UnfenceBroker { broker_id: 2 },
        );
        let p = &image.topics["t"].partitions[0];
        assert_eq!(
            (p.leader, p.isr.clone()),
            (-1, vec![1]),
            "a live ISR member is waited for, not overtaken"
        );
    }

    #[test]
    fn alter_partition_needs_the_current_partition_epoch_and_live_members() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2, 3]]);
        let stale = run(
            &mut image,
            &mut i,
            MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_id: 1,
                partition_epoch: 5,
                isr: vec![1],
                added_broker_epochs: BTreeMap::new(),
            },
        );
        assert!(matches!(stale, CommandResult::Error { code: 95, .. }));
        let not_leader = run(
            &mut image,
            &mut i,
            MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_id: 2,
                partition_epoch: 0,
                isr: vec![2],
                added_broker_epochs: BTreeMap::new(),
            },
        );
        assert!(matches!(not_leader, CommandResult::Error { code: 6, .. }));
        assert_eq!(
            run(
                &mut image,
                &mut i,
                MetadataCommand::AlterPartition {
                    topic: "t".into(),
                    partition: 0,
                    leader_id: 1,
                    partition_epoch: 0,
                    isr: vec![1, 3],
                    added_broker_epochs: BTreeMap::new(),
                }
            ),
            CommandResult::Ok
        );
        assert_eq!(image.topics["t"].partitions[0].partition_epoch, 1);
        run(
            &mut image,
            &mut i,
            MetadataCommand::FenceBroker { broker_id: 2 },
        );
        let fenced = run(
            &mut image,
            &mut i,
            MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_id: 1,
                partition_epoch: 1,
                isr: vec![1, 2, 3],
                added_broker_epochs: BTreeMap::new(),
            },
        );
        assert!(matches!(fenced, CommandResult::Error { code: 107, .. }));
    }

    #[test]
    fn a_new_isr_member_needs_its_current_broker_epoch() {
        // The broker epoch the leader saw in replica 3's fetches, against
        // the epoch of its registrations: before its restart and after.
        #[derive(Debug, Clone, Copy)]
        enum Seen {
            BeforeRestart,
            AfterRestart,
            Unknown,
            NotSent,
        }
        let cases = [
            (
                Seen::BeforeRestart,
                Some(ErrorCode::INELIGIBLE_REPLICA.code()),
            ),
            (Seen::AfterRestart, None),
            // -1 or no entry: a leader that does not send epochs (an older
            // version during a rolling upgrade) is still served.
            (Seen::Unknown, None),
            (Seen::NotSent, None),
        ];
        for (seen, refusal) in cases {
            let (mut image, mut i) = cluster(&[1, 2, 3]);
            topic(&mut image, &mut i, "t", vec![vec![1, 2, 3]]);
            run(
                &mut image,
                &mut i,
                MetadataCommand::AlterPartition {
                    topic: "t".into(),
                    partition: 0,
                    leader_id: 1,
                    partition_epoch: 0,
                    isr: vec![1, 2],
                    added_broker_epochs: BTreeMap::new(),
                },
            );
            let before_restart = image.broker_epochs[&3];
            run(
                &mut image,
                &mut i,
                MetadataCommand::RegisterBroker {
                    broker_id: 3,
                    incarnation_id: "restarted".into(),
                    host: "h".into(),
                    port: 9003,
                    rack: None,
                    replication_endpoint: None,
                    http_endpoint: None,
                    listeners: Vec::new(),
                },
            );
            run(
                &mut image,
                &mut i,
                MetadataCommand::UnfenceBroker { broker_id: 3 },
            );
            let after_restart = image.broker_epochs[&3];
            assert!(after_restart > before_restart);
            let added_broker_epochs = match seen {
                Seen::BeforeRestart => BTreeMap::from([(3, before_restart)]),
                Seen::AfterRestart => BTreeMap::from([(3, after_restart)]),
                Seen::Unknown => BTreeMap::from([(3, -1)]),
                Seen::NotSent => BTreeMap::new(),
            };
            let result = run(
                &mut image,
                &mut i,
                MetadataCommand::AlterPartition {
                    topic: "t".into(),
                    partition: 0,
                    leader_id: 1,
                    partition_epoch: 1,
                    isr: vec![1, 2, 3],
                    added_broker_epochs,
                },
            );
            let p = &image.topics["t"].partitions[0];
            match refusal {
                Some(code) => {
                    assert!(
                        matches!(result, CommandResult::Error { code: c, .. } if c == code),
                        "{seen:?}: {result:?}"
                    );
                    assert_eq!(
                        (p.isr.clone(), p.partition_epoch),
                        (vec![1, 2], 1),
                        "{seen:?}"
                    );
                }
                None => {
                    assert_eq!(result, CommandResult::Ok, "{seen:?}");
                    assert_eq!(
                        (p.isr.clone(), p.partition_epoch),
                        (vec![1, 2, 3], 2),
                        "{seen:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn registrations_carry_the_http_endpoint_and_older_ones_still_read() {
        // A log entry written before brokers advertised their HTTP listener.
        let old = r#"{"RegisterBroker":{"broker_id":4,"incarnation_id":"x","host":"h","port":9095,"rack":null,"replication_endpoint":"h:10095"}}"#;
        let command: MetadataCommand = serde_json::from_str(old).unwrap();
        let mut image = MetadataImage::default();
        apply(&mut image, &command, 1);
        assert_eq!(image.brokers[&4].http_endpoint, None);
        assert_eq!(
            image.brokers[&4].replication_endpoint.as_deref(),
            Some("h:10095")
        );
        apply(
            &mut image,
            &MetadataCommand::RegisterBroker {
                broker_id: 4,
                incarnation_id: "y".into(),
                host: "h".into(),
                port: 9095,
                rack: None,
                replication_endpoint: Some("h:10095".into()),
                http_endpoint: Some("h:9083".into()),
                listeners: Vec::new(),
            },
            2,
        );
        assert_eq!(image.brokers[&4].http_endpoint.as_deref(), Some("h:9083"));
    }

    #[test]
    fn alter_partition_written_before_broker_epochs_still_reads() {
        // A log entry (or snapshot) written before `added_broker_epochs`
        // existed: read with no epochs, that is, unknown ones.
        let old = r#"{"AlterPartition":{"topic":"t","partition":0,"leader_id":1,"partition_epoch":0,"isr":[1,2]}}"#;
        let command: MetadataCommand = serde_json::from_str(old).unwrap();
        assert_eq!(
            command,
            MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_id: 1,
                partition_epoch: 0,
                isr: vec![1, 2],
                added_broker_epochs: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn preferred_leaders_come_back_and_shutdown_moves_leadership() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2, 3]]);
        run(
            &mut image,
            &mut i,
            MetadataCommand::ShutdownBroker { broker_id: 1 },
        );
        assert_eq!(image.topics["t"].partitions[0].leader, 2);
        assert!(image.shutting_down.contains(&1));
        run(
            &mut image,
            &mut i,
            MetadataCommand::RegisterBroker {
                broker_id: 1,
                incarnation_id: "new".into(),
                host: "h".into(),
                port: 1,
                rack: None,
                replication_endpoint: None,
                http_endpoint: None,
                listeners: Vec::new(),
            },
        );
        run(
            &mut image,
            &mut i,
            MetadataCommand::UnfenceBroker { broker_id: 1 },
        );
        run(
            &mut image,
            &mut i,
            MetadataCommand::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader_id: 2,
                partition_epoch: 1,
                isr: vec![2, 3, 1],
                added_broker_epochs: BTreeMap::new(),
            },
        );
        run(
            &mut image,
            &mut i,
            MetadataCommand::ElectPreferredLeaders { partitions: None },
        );
        assert_eq!(image.topics["t"].partitions[0].leader, 1);
    }

    #[test]
    fn a_restarted_broker_gives_up_its_leaderships_when_it_registers_again() {
        let (mut image, mut i) = cluster(&[1, 2, 3]);
        topic(&mut image, &mut i, "t", vec![vec![1, 2, 3]]);
        run(
            &mut image,
            &mut i,
            MetadataCommand::RegisterBroker {
                broker_id: 1,
                incarnation_id: "again".into(),
                host: "h".into(),
                port: 1,
                rack: None,
                replication_endpoint: None,
                http_endpoint: None,
                listeners: Vec::new(),
            },
        );
        let p = &image.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch), (2, 1));
        assert_eq!(p.isr, vec![2, 3]);
        assert!(image.brokers[&1].fenced);
    }

    #[test]
    fn topics_partitions_configs_and_producer_ids() {
        let (mut image, mut i) = cluster(&[1]);
        assert!(matches!(
            topic(&mut image, &mut i, "t", vec![vec![1]]),
            CommandResult::Topic(_)
        ));
        assert!(matches!(
            topic(&mut image, &mut i, "t", vec![vec![1]]),
            CommandResult::Error { code: 36, .. }
        ));
        run(
            &mut image,
            &mut i,
            MetadataCommand::CreatePartitions {
                name: "t".into(),
                assignments: vec![vec![1], vec![1]],
            },
        );
        assert_eq!(image.topics["t"].partitions.len(), 3);
        assert_eq!(image.topics["t"].partitions[2].partition, 2);
        run(
            &mut image,
            &mut i,
            MetadataCommand::AlterTopicConfigs {
                name: "t".into(),
                changes: vec![("retention.ms".into(), Some("5".into()))],
            },
        );
        assert_eq!(image.topics["t"].configs["retention.ms"], "5");
        assert_eq!(
            run(
                &mut image,
                &mut i,
                MetadataCommand::AllocateProducerIds { count: 1000 }
            ),
            CommandResult::ProducerIdStart(0)
        );
        assert_eq!(
            run(
                &mut image,
                &mut i,
                MetadataCommand::AllocateProducerIds { count: 1000 }
            ),
            CommandResult::ProducerIdStart(1000)
        );
        assert_eq!(
            run(
                &mut image,
                &mut i,
                MetadataCommand::DeleteTopic { name: "t".into() }
            ),
            CommandResult::Ok
        );
        assert!(image.topics.is_empty());
        assert_eq!(image.cluster_id, "c1");
    }
}
