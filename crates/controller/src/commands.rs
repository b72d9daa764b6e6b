//! The metadata log's records and how each one changes the image.
//!
//! [`apply`] is deterministic: it sees only the image and the command (no
//! clock, no randomness, no I/O), so every controller node that applies the
//! same log reaches the same image. Decisions that need the outside world
//! (where to place replicas, which topic id to mint) are taken by the active
//! controller before it proposes the command, and travel inside it.

use std::collections::BTreeMap;

use kraftwerk_metadata::{
    BrokerRegistration, ListenerEndpoint, MetadataImage, PartitionRecord, TopicRecord,
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
    /// Reserves `count` producer ids; the result is the first one.
    AllocateProducerIds {
        count: i64,
    },
    /// Moves leadership to the preferred replica where it is live and in the ISR.
    ElectPreferredLeaders {
        partitions: Option<Vec<(String, i32)>>,
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

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Ok,
    BrokerEpoch(i64),
    Topic(TopicRecord),
    ProducerIdStart(i64),
    /// The command was refused; nothing changed.
    Error {
        code: i16,
        message: String,
    },
}

/// Kafka's INELIGIBLE_REPLICA: a replica may not join the ISR.
pub const INELIGIBLE_REPLICA: ErrorCode = ErrorCode(107);

fn refused(code: ErrorCode, message: impl Into<String>) -> CommandResult {
    CommandResult::Error {
        code: code.code(),
        message: message.into(),
    }
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
            image.brokers.insert(
                *broker_id,
                BrokerRegistration {
                    node_id: *broker_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    fenced: true,
                    replication_endpoint: replication_endpoint.clone(),
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
                    ErrorCode(69),
                    format!("broker {broker_id} is not registered"),
                );
            };
            b.fenced = false;
            image.shutting_down.remove(broker_id);
            // Partitions without a leader whose ISR holds this broker get it back.
            for topic in image.topics.values_mut() {
                for p in &mut topic.partitions {
                    if p.leader < 0 && p.isr.contains(broker_id) {
                        p.leader = *broker_id;
                        p.leader_epoch += 1;
                        p.partition_epoch += 1;
                    }
                }
            }
            CommandResult::Ok
        }
        MetadataCommand::FenceBroker { broker_id }
        | MetadataCommand::ShutdownBroker { broker_id } => {
            let Some(b) = image.brokers.get_mut(broker_id) else {
                return refused(
                    ErrorCode(69),
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
                    {
                        p.leader = preferred;
                        p.leader_epoch += 1;
                        p.partition_epoch += 1;
                    }
                }
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
                    ErrorCode(95),
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
                    INELIGIBLE_REPLICA,
                    format!("broker {r} is fenced and cannot join the ISR"),
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
                        INELIGIBLE_REPLICA,
                        format!(
                            "broker {r} fetched with broker epoch {seen}, its registration is {}",
                            current.map_or("unknown".to_string(), |e| e.to_string())
                        ),
                    );
                }
            }
            p.isr = isr.clone();
            p.partition_epoch += 1;
            CommandResult::Ok
        }
    }
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
        let unclean = topic
            .configs
            .get("unclean.leader.election.enable")
            .map(|v| v == "true")
            .unwrap_or(false);
        for p in &mut topic.partitions {
            if !p.replicas.contains(&broker_id) {
                continue;
            }
            let mut changed = false;
            if p.isr.contains(&broker_id) && p.isr.len() > 1 {
                p.isr.retain(|r| *r != broker_id);
                changed = true;
            }
            if p.leader == broker_id {
                let clean = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| *r != broker_id && live.contains(r) && p.isr.contains(r));
                let next = match clean {
                    Some(r) => Some(r),
                    None if unclean => p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != broker_id && live.contains(r)),
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
            if changed {
                p.partition_epoch += 1;
            }
        }
    }
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
            (Seen::BeforeRestart, Some(INELIGIBLE_REPLICA.code())),
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
