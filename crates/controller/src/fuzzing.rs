//! The body of the fuzz target over this crate (`tests/fuzz`), as a plain
//! function: cargo-fuzz calls it with generated inputs, and
//! `tests/tests/fuzz_corpora.rs` replays every kept input through it on
//! stable Rust. Not an API: nothing else should call it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::collections::{BTreeMap, BTreeSet};

use kraftwerk_metadata::{AclBinding, ListenerEndpoint, ScramCredential};
use kraftwerk_types::TopicId;
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};

use crate::commands::{self, MetadataCommand};
use crate::raft::state_machine::{decode_data, decode_stored, StateMachineData, StoredSnapshot};
use crate::raft::{Entry, LogId, SnapshotMeta, StoredMembership};

/// The controller's decoders of what it reads back from sled or receives
/// from the leader: the stored snapshot (as `StateMachineStore::open` reads
/// it), a snapshot's data (as `install_snapshot` receives it) and a Raft
/// log entry (as the log store reads it). Whatever decodes must encode and
/// decode again to the same bytes, and the restored image must answer its
/// lookups.
pub fn snapshot(data: &[u8]) {
    let meta = SnapshotMeta::default();
    if let Ok(stored) = decode_stored(data) {
        if let Ok(state) = decode_data(&stored.data, &stored.meta) {
            check_state(&state, &stored.meta);
        }
    }
    if let Ok(state) = decode_data(data, &meta) {
        check_state(&state, &meta);
    }
    if let Ok(entry) = serde_json::from_slice::<Entry>(data) {
        assert_fixpoint(&entry);
    }
}

fn check_state(state: &StateMachineData, meta: &SnapshotMeta) {
    let bytes = assert_fixpoint(state);
    let again = decode_data(&bytes, meta).expect("an encoded state machine decodes");
    for (name, topic) in &again.image.topics {
        // `reindex` rebuilt the id lookup the snapshot does not carry. The
        // snapshot's own encoder keys topics by name with unique ids; a
        // damaged one may not, so the lookups are only asked, not checked.
        let _ = again.image.topic_by_id(&topic.id);
        assert!(again.image.topic(name).is_some());
        for p in &topic.partitions {
            let _ = (p.reassigning(), p.target_replicas(), p.original_replicas());
            let _ = again.image.partition(name, p.partition);
        }
    }
    let _ = again.image.live_brokers().count();
    for broker in again.image.brokers.values() {
        let _ = broker.endpoint("PLAINTEXT");
    }
}

/// Encodes `value`, checks that decoding and encoding that gives the same
/// bytes (nothing is lost or changed on the way), and returns them.
fn assert_fixpoint<T: Serialize + DeserializeOwned>(value: &T) -> Vec<u8> {
    let bytes = serde_json::to_vec(value).expect("a decoded value encodes");
    let decoded: T = serde_json::from_slice(&bytes).expect("an encoded value decodes");
    let again = serde_json::to_vec(&decoded).expect("a decoded value encodes");
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&bytes),
        "encoding is a fixpoint"
    );
    bytes
}

/// Valid inputs to start `snapshot` from: the state machine of a small
/// cluster (brokers, topics, configs, ACLs, quotas, SCRAM users) as a
/// snapshot's data and as stored in sled, and the log entries that built it.
pub fn snapshot_seeds() -> Vec<(String, Vec<u8>)> {
    let log_id = |index: u64| LogId::new(CommittedLeaderId::new(3, 1), index);
    let nodes: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 19090 + id))))
        .collect();
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
    let commands = seed_commands();

    let mut out = Vec::new();
    let mut state = StateMachineData::default();
    let mut entries = vec![Entry {
        log_id: log_id(1),
        payload: EntryPayload::Membership(membership.clone()),
    }];
    state.last_membership = StoredMembership::new(Some(log_id(1)), membership);
    for (i, command) in commands.into_iter().enumerate() {
        let index = i as u64 + 2;
        commands::apply(&mut state.image, &command, index);
        state.last_applied = Some(log_id(index));
        entries.push(Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(command),
        });
    }
    entries.push(Entry {
        log_id: log_id(entries.len() as u64 + 1),
        payload: EntryPayload::Blank,
    });
    let Ok(data) = serde_json::to_vec(&state) else {
        return out;
    };
    let meta = SnapshotMeta {
        last_log_id: state.last_applied,
        last_membership: state.last_membership.clone(),
        snapshot_id: "3-1-0".to_string(),
    };
    if let Ok(stored) = serde_json::to_vec(&StoredSnapshot {
        meta,
        data: data.clone(),
    }) {
        out.push(("stored-snapshot".to_string(), stored));
    }
    out.push(("snapshot-data".to_string(), data));
    if let Ok(empty) = serde_json::to_vec(&StateMachineData::default()) {
        out.push(("snapshot-data-empty".to_string(), empty));
    }
    for entry in &entries {
        if let Ok(bytes) = serde_json::to_vec(entry) {
            out.push((format!("entry-{}", entry.log_id.index), bytes));
        }
    }
    out
}

fn seed_commands() -> Vec<MetadataCommand> {
    let mut commands = vec![MetadataCommand::InitCluster {
        cluster_id: "fuzz-cluster".to_string(),
    }];
    for broker_id in 1..=3 {
        commands.push(MetadataCommand::RegisterBroker {
            broker_id,
            incarnation_id: format!("incarnation-{broker_id}"),
            host: "127.0.0.1".to_string(),
            port: 9092,
            rack: (broker_id == 2).then(|| "rack-b".to_string()),
            replication_endpoint: Some(format!("127.0.0.1:{}", 10092 + broker_id)),
            http_endpoint: Some("127.0.0.1:9080".to_string()),
            listeners: vec![ListenerEndpoint {
                name: "PLAINTEXT".to_string(),
                host: "127.0.0.1".to_string(),
                port: 9092,
            }],
        });
        commands.push(MetadataCommand::UnfenceBroker { broker_id });
    }
    commands.push(MetadataCommand::CreateTopic {
        name: "orders".to_string(),
        topic_id: TopicId(uuid::Uuid::from_u128(0x6f72_6465_7273)),
        assignments: vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    });
    commands.push(MetadataCommand::CreateTopic {
        name: "__consumer_offsets".to_string(),
        topic_id: TopicId(uuid::Uuid::from_u128(0x5f5f_636f)),
        assignments: vec![vec![1]],
        configs: BTreeMap::new(),
    });
    commands.push(MetadataCommand::FenceBroker { broker_id: 3 });
    commands.push(MetadataCommand::AlterScramCredentials {
        deletions: vec![],
        upsertions: vec![(
            "alice".to_string(),
            "SCRAM-SHA-256".to_string(),
            ScramCredential {
                salt: b"salt".to_vec(),
                stored_key: vec![1; 32],
                server_key: vec![2; 32],
                iterations: 4096,
            },
        )],
    });
    commands.push(MetadataCommand::CreateAcls {
        acls: vec![AclBinding {
            resource_type: 2,
            resource_name: "orders".to_string(),
            pattern_type: 3,
            principal: "User:alice".to_string(),
            host: "*".to_string(),
            operation: 3,
            permission_type: 3,
        }],
    });
    commands.push(MetadataCommand::AlterClientQuotas {
        changes: vec![(
            vec![("user".to_string(), Some("alice".to_string()))],
            vec![("producer_byte_rate".to_string(), Some(1_048_576))],
        )],
    });
    commands.push(MetadataCommand::AllocateProducerIds { count: 1000 });
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_decode_and_run_clean() {
        let seeds = snapshot_seeds();
        let find = |name: &str| {
            seeds
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, bytes)| bytes.clone())
                .unwrap()
        };
        let stored = decode_stored(&find("stored-snapshot")).unwrap();
        let state = decode_data(&stored.data, &stored.meta).unwrap();
        assert_eq!(state.image.topics.len(), 2);
        assert_eq!(state.image.brokers.len(), 3);
        decode_data(&find("snapshot-data"), &SnapshotMeta::default()).unwrap();
        assert!(
            seeds
                .iter()
                .filter(|(n, _)| n.starts_with("entry-"))
                .count()
                > 10
        );
        for (name, bytes) in &seeds {
            if name.starts_with("entry-") {
                serde_json::from_slice::<Entry>(bytes).unwrap();
            }
            snapshot(bytes);
        }
    }
}
