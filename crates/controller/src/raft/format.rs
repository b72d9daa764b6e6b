//! The format version of the controller's sled store, and the conversion of
//! a store written before the quorum ran one leader per term.
//!
//! Format 1 (no marker) is openraft's default leader ids: a vote and every
//! log id carry the leader as (term, node id), ordered, and two nodes could
//! lead in one term. Format 2 is standard Raft (openraft's
//! `single-term-leader`): a log id carries only the term, a vote the term and
//! the node voted for. The marker (`format_version` in the `log_meta` tree)
//! is written once a store holds nothing in an older format.
//!
//! A format-1 leader id (term, node) becomes the term `term × stride + node`,
//! where the stride is one more than the largest node id of the stored
//! membership. Mapping every leader id to its term alone would be unsafe: two
//! leaders of one format-1 term may each have left entries at the same index
//! on different nodes, and once both carried the same log id a follower
//! would take the one it holds for the leader's (log matching would no
//! longer hold). The stride mapping is one-to-one and keeps the order of
//! leader ids, log ids and votes, so every comparison Raft makes comes out
//! as before; every node computes the same stride because the membership is
//! the same on all of them (it is fixed at the configured voters). The terms
//! jump once: term 3 led by node 2 of voters 1–3 becomes term 14.
//!
//! The conversion is idempotent value by value (a format-1 value and a
//! format-2 value are told apart by their shape), so a crash in the middle
//! leaves a store that converts again on the next start; the marker goes in
//! last, after a flush.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LeaderId, Membership};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use kraftwerk_metadata::MetadataImage;

use super::state_machine::{StateMachineData, StoredSnapshot};
use super::{Entry, LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// The format this version writes.
pub const FORMAT_VERSION: u64 = 2;

pub(crate) const LOG_TREE: &str = "log";
pub(crate) const META_TREE: &str = "log_meta";
pub(crate) const SNAPSHOT_TREE: &str = "snapshot";
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_FORMAT_VERSION: &[u8] = b"format_version";
pub(crate) const KEY_SNAPSHOT: &[u8] = b"current";

/// Why a store cannot be opened as it is; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "the controller store at {} is in format {found}, written by a newer Kraftwerk \
         (this one reads format {FORMAT_VERSION} and older): run the newer version",
        dir.display()
    )]
    Newer { dir: PathBuf, found: u64 },
    #[error(
        "the controller store at {} was written by an older Kraftwerk and cannot be \
         converted: {reason}. Stop this controller, move {} away and start it again: \
         it then catches up from the other controllers (only while a majority of them \
         still holds the metadata)",
        dir.display(), dir.display()
    )]
    Unconvertible { dir: PathBuf, reason: String },
    #[error("the controller store at {} cannot be read or written: {reason}", dir.display())]
    Io { dir: PathBuf, reason: String },
}

/// What [`upgrade`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// An empty store, now marked with the current format.
    Fresh,
    /// Already in the current format.
    Current,
    /// Converted from format 1.
    Converted {
        /// Old leader id (term, node) became term `term × stride + node`.
        stride: u64,
        /// Log entries rewritten.
        entries: u64,
        /// The other values rewritten: vote, purge mark, committed id, snapshot.
        values: u64,
    },
}

/// Brings the store in `db` (kept in `dir`) to [`FORMAT_VERSION`], or says
/// why it cannot. Blocking: sled reads, writes and flushes.
pub fn upgrade(db: &sled::Db, dir: &Path) -> Result<Upgrade, FormatError> {
    let io = |e: &dyn std::fmt::Display| FormatError::Io {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let log = db.open_tree(LOG_TREE).map_err(|e| io(&e))?;
    let meta = db.open_tree(META_TREE).map_err(|e| io(&e))?;
    let snapshots = db.open_tree(SNAPSHOT_TREE).map_err(|e| io(&e))?;

    if let Some(bytes) = meta.get(KEY_FORMAT_VERSION).map_err(|e| io(&e))? {
        let found: u64 = serde_json::from_slice(&bytes).map_err(|e| {
            io(&format!(
                "format_version {:?}: {e}",
                String::from_utf8_lossy(&bytes)
            ))
        })?;
        if found > FORMAT_VERSION {
            return Err(FormatError::Newer {
                dir: dir.to_path_buf(),
                found,
            });
        }
        if found == FORMAT_VERSION {
            return Ok(Upgrade::Current);
        }
    }

    let fresh = log.is_empty() && meta.is_empty() && snapshots.is_empty();
    let outcome = if fresh {
        Upgrade::Fresh
    } else {
        convert(&log, &meta, &snapshots, dir)?
    };
    db.flush().map_err(|e| io(&e))?;
    let version = serde_json::to_vec(&FORMAT_VERSION).map_err(|e| io(&e))?;
    meta.insert(KEY_FORMAT_VERSION, version)
        .map_err(|e| io(&e))?;
    db.flush().map_err(|e| io(&e))?;
    Ok(outcome)
}

// The format-1 shapes, as openraft's serde wrote them with its default
// leader ids.

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct V1LeaderId {
    term: u64,
    node_id: NodeId,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct V1LogId {
    leader_id: V1LeaderId,
    index: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct V1Vote {
    leader_id: V1LeaderId,
    committed: bool,
}

#[derive(Serialize, Deserialize)]
struct V1Entry {
    log_id: V1LogId,
    payload: EntryPayload<TypeConfig>,
}

#[derive(Serialize, Deserialize)]
struct V1StoredMembership {
    log_id: Option<V1LogId>,
    membership: Membership<NodeId, BasicNode>,
}

#[derive(Serialize, Deserialize)]
struct V1SnapshotMeta {
    last_log_id: Option<V1LogId>,
    last_membership: V1StoredMembership,
    snapshot_id: String,
}

#[derive(Serialize, Deserialize)]
struct V1StoredSnapshot {
    meta: V1SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct V1StateMachineData {
    image: MetadataImage,
    last_applied: Option<V1LogId>,
    last_membership: V1StoredMembership,
}

/// A stored value in either format.
enum Stored<Old, New> {
    V1(Old),
    V2(New),
}

/// Reads `bytes` as format 1, else as format 2. The format-1 shape goes
/// first: a format-1 vote also reads as a format-2 one (its node id ignored,
/// nobody voted for), a format-2 value never as format 1.
fn read_either<Old: DeserializeOwned, New: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<Stored<Old, New>, String> {
    if let Ok(old) = serde_json::from_slice(bytes) {
        return Ok(Stored::V1(old));
    }
    serde_json::from_slice(bytes)
        .map(Stored::V2)
        .map_err(|e| format!("{what} is in neither format: {e}"))
}

/// Maps format-1 leader ids to terms.
struct TermMap {
    stride: u64,
}

impl TermMap {
    fn term(&self, id: V1LeaderId) -> Result<u64, String> {
        if id.node_id >= self.stride {
            return Err(format!(
                "leader id T{}-N{} names a node outside the stored membership (node ids below {})",
                id.term, id.node_id, self.stride
            ));
        }
        let term = id
            .term
            .checked_mul(self.stride)
            .and_then(|t| t.checked_add(id.node_id))
            .filter(|t| *t <= i32::MAX as u64)
            .ok_or_else(|| {
                format!(
                    "term {} of node {} would become a term beyond Kafka's 32-bit leader epoch",
                    id.term, id.node_id
                )
            })?;
        Ok(term)
    }

    fn log_id(&self, id: V1LogId) -> Result<LogId, String> {
        Ok(LogId::new(
            CommittedLeaderId::new(self.term(id.leader_id)?, 0),
            id.index,
        ))
    }

    fn log_id_opt(&self, id: Option<V1LogId>) -> Result<Option<LogId>, String> {
        id.map(|id| self.log_id(id)).transpose()
    }

    fn vote(&self, vote: V1Vote) -> Result<Vote, String> {
        Ok(Vote {
            leader_id: LeaderId::new(self.term(vote.leader_id)?, vote.leader_id.node_id),
            committed: vote.committed,
        })
    }

    fn membership(&self, m: V1StoredMembership) -> Result<StoredMembership, String> {
        Ok(StoredMembership::new(
            self.log_id_opt(m.log_id)?,
            m.membership,
        ))
    }
}

fn node_ids(membership: &Membership<NodeId, BasicNode>, into: &mut BTreeSet<NodeId>) {
    into.extend(membership.nodes().map(|(id, _)| *id));
    into.extend(membership.voter_ids());
}

fn convert(
    log: &sled::Tree,
    meta: &sled::Tree,
    snapshots: &sled::Tree,
    dir: &Path,
) -> Result<Upgrade, FormatError> {
    let unconvertible = |reason: String| FormatError::Unconvertible {
        dir: dir.to_path_buf(),
        reason,
    };
    let io = |e: &dyn std::fmt::Display| FormatError::Io {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    };

    // Read everything first: the stride comes from the memberships stored
    // anywhere, and nothing is written until every value is understood.
    let mut entries: Vec<(sled::IVec, Stored<V1Entry, Entry>)> = Vec::new();
    for item in log.iter() {
        let (key, bytes) = item.map_err(|e| io(&e))?;
        let what = format!("log entry under key {key:?}");
        entries.push((key, read_either(&bytes, &what).map_err(unconvertible)?));
    }
    let read_meta = |key: &[u8]| -> Result<Option<Stored<V1LogId, LogId>>, FormatError> {
        match meta.get(key).map_err(|e| io(&e))? {
            None => Ok(None),
            Some(bytes) => {
                let what = String::from_utf8_lossy(key).into_owned();
                Ok(Some(read_either(&bytes, &what).map_err(unconvertible)?))
            }
        }
    };
    let last_purged = read_meta(KEY_LAST_PURGED)?;
    let committed = read_meta(KEY_COMMITTED)?;
    let vote: Option<Stored<V1Vote, Vote>> = match meta.get(KEY_VOTE).map_err(|e| io(&e))? {
        None => None,
        Some(bytes) => Some(read_either(&bytes, "vote").map_err(unconvertible)?),
    };
    let snapshot: Option<Stored<V1StoredSnapshot, StoredSnapshot>> =
        match snapshots.get(KEY_SNAPSHOT).map_err(|e| io(&e))? {
            None => None,
            Some(bytes) => Some(read_either(&bytes, "snapshot").map_err(unconvertible)?),
        };

    let any_v1 = entries.iter().any(|(_, e)| matches!(e, Stored::V1(_)))
        || [&last_purged, &committed]
            .iter()
            .any(|v| matches!(v, Some(Stored::V1(_))))
        || matches!(vote, Some(Stored::V1(_)))
        || matches!(snapshot, Some(Stored::V1(_)));
    if !any_v1 {
        // A format-2 store whose marker a crash kept out.
        return Ok(Upgrade::Current);
    }

    let mut ids = BTreeSet::new();
    for (_, entry) in &entries {
        match entry {
            Stored::V1(V1Entry {
                payload: EntryPayload::Membership(m),
                ..
            })
            | Stored::V2(Entry {
                payload: EntryPayload::Membership(m),
                ..
            }) => node_ids(m, &mut ids),
            _ => {}
        }
    }
    match &snapshot {
        Some(Stored::V1(s)) => node_ids(&s.meta.last_membership.membership, &mut ids),
        Some(Stored::V2(s)) => node_ids(s.meta.last_membership.membership(), &mut ids),
        None => {}
    }
    let Some(max_id) = ids.last() else {
        return Err(unconvertible(
            "it holds no membership, so the terms of its leader ids cannot be mapped the \
             way the other controllers map them"
                .to_string(),
        ));
    };
    let map = TermMap {
        stride: max_id
            .checked_add(1)
            .ok_or_else(|| unconvertible(format!("node id {max_id} is too large")))?,
    };

    let mut log_batch = sled::Batch::default();
    let mut converted_entries = 0;
    for (key, entry) in entries {
        if let Stored::V1(old) = entry {
            let new = Entry {
                log_id: map.log_id(old.log_id).map_err(unconvertible)?,
                payload: old.payload,
            };
            log_batch.insert(key, serde_json::to_vec(&new).map_err(|e| io(&e))?);
            converted_entries += 1;
        }
    }
    let mut meta_batch = sled::Batch::default();
    let mut values = 0;
    for (key, value) in [(KEY_LAST_PURGED, last_purged), (KEY_COMMITTED, committed)] {
        if let Some(Stored::V1(old)) = value {
            let new = map.log_id(old).map_err(unconvertible)?;
            meta_batch.insert(key, serde_json::to_vec(&new).map_err(|e| io(&e))?);
            values += 1;
        }
    }
    if let Some(Stored::V1(old)) = vote {
        let new = map.vote(old).map_err(unconvertible)?;
        meta_batch.insert(KEY_VOTE, serde_json::to_vec(&new).map_err(|e| io(&e))?);
        values += 1;
    }
    let mut snapshot_bytes = None;
    if let Some(Stored::V1(old)) = snapshot {
        let data: V1StateMachineData = serde_json::from_slice(&old.data)
            .map_err(|e| unconvertible(format!("the snapshot's data: {e}")))?;
        let data = StateMachineData {
            image: data.image,
            last_applied: map.log_id_opt(data.last_applied).map_err(unconvertible)?,
            last_membership: map
                .membership(data.last_membership)
                .map_err(unconvertible)?,
        };
        let new = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: map
                    .log_id_opt(old.meta.last_log_id)
                    .map_err(unconvertible)?,
                last_membership: map
                    .membership(old.meta.last_membership)
                    .map_err(unconvertible)?,
                snapshot_id: old.meta.snapshot_id,
            },
            data: serde_json::to_vec(&data).map_err(|e| io(&e))?,
        };
        snapshot_bytes = Some(serde_json::to_vec(&new).map_err(|e| io(&e))?);
        values += 1;
    }

    log.apply_batch(log_batch).map_err(|e| io(&e))?;
    meta.apply_batch(meta_batch).map_err(|e| io(&e))?;
    if let Some(bytes) = snapshot_bytes {
        snapshots.insert(KEY_SNAPSHOT, bytes).map_err(|e| io(&e))?;
    }
    Ok(Upgrade::Converted {
        stride: map.stride,
        entries: converted_entries,
        values,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::RaftLogReader;
    use serde_json::{json, Value};
    use tokio::sync::watch;

    use super::*;
    use crate::commands::{self, MetadataCommand};
    use crate::raft::{LogStore, StateMachineStore};

    // Format-1 values as the previous version stored them: openraft's serde
    // with its default leader ids, written out by hand.

    fn v1_log_id(term: u64, node_id: u64, index: u64) -> Value {
        json!({"leader_id": {"term": term, "node_id": node_id}, "index": index})
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 9190 + id))))
            .collect();
        Membership::new(vec![voters], nodes)
    }

    fn v1_stored_membership() -> Value {
        json!({"log_id": v1_log_id(0, 0, 0), "membership": membership()})
    }

    fn command(n: u64) -> MetadataCommand {
        MetadataCommand::AllocateProducerIds { count: n as i64 }
    }

    /// The image after the commands at indexes 1–3 (the snapshot's).
    fn image_at_3() -> MetadataImage {
        let mut image = MetadataImage::default();
        for index in 1..=3 {
            commands::apply(&mut image, &command(index), index);
        }
        image
    }

    /// A purged, snapshotted format-1 store of voters 1–3: a snapshot up to
    /// index 3 (led by T1-N2), entries 4 (T1-N2), 5 (T1-N3, the second
    /// leader of term 1) and 6 (T2-N1), a committed vote for T2-N1.
    fn write_v1_store(db: &sled::Db) {
        let log = db.open_tree(LOG_TREE).unwrap();
        let meta = db.open_tree(META_TREE).unwrap();
        let snapshots = db.open_tree(SNAPSHOT_TREE).unwrap();
        let entries = [
            (4, v1_log_id(1, 2, 4), json!({"Normal": command(4)})),
            (5, v1_log_id(1, 3, 5), json!("Blank")),
            (6, v1_log_id(2, 1, 6), json!({"Normal": command(6)})),
        ];
        for (index, log_id, payload) in entries {
            let entry = json!({"log_id": log_id, "payload": payload});
            log.insert(
                (index as u64).to_be_bytes(),
                serde_json::to_vec(&entry).unwrap(),
            )
            .unwrap();
        }
        let put = |key: &[u8], value: Value| {
            meta.insert(key, serde_json::to_vec(&value).unwrap())
                .unwrap();
        };
        put(
            KEY_VOTE,
            json!({"leader_id": {"term": 2, "node_id": 1}, "committed": true}),
        );
        put(KEY_LAST_PURGED, v1_log_id(1, 2, 3));
        put(KEY_COMMITTED, v1_log_id(1, 3, 5));
        let data = json!({
            "image": image_at_3(),
            "last_applied": v1_log_id(1, 2, 3),
            "last_membership": v1_stored_membership(),
        });
        let snapshot = json!({
            "meta": {
                "last_log_id": v1_log_id(1, 2, 3),
                "last_membership": v1_stored_membership(),
                "snapshot_id": "T1-N2-3-0",
            },
            "data": serde_json::to_vec(&data).unwrap(),
        });
        snapshots
            .insert(KEY_SNAPSHOT, serde_json::to_vec(&snapshot).unwrap())
            .unwrap();
        db.flush().unwrap();
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    /// Reads the converted store back through the stores openraft uses.
    async fn assert_converted(db: &sled::Db) {
        let mut log_store = LogStore::open(db).unwrap();
        // Stride 4 (voters 1–3): T1-N2 is term 6, T1-N3 term 7, T2-N1 term 9.
        assert_eq!(
            log_store.read_vote().await.unwrap(),
            Some(Vote {
                leader_id: LeaderId::new(9, 1),
                committed: true
            })
        );
        let state = log_store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(6, 3)));
        assert_eq!(state.last_log_id, Some(log_id(9, 6)));
        assert_eq!(
            log_store.read_committed().await.unwrap(),
            Some(log_id(7, 5))
        );
        let entries = log_store.try_get_log_entries(4..7).await.unwrap();
        let ids: Vec<LogId> = entries.iter().map(|e| e.log_id).collect();
        assert_eq!(ids, vec![log_id(6, 4), log_id(7, 5), log_id(9, 6)]);
        assert!(matches!(
            entries[0].payload,
            EntryPayload::Normal(MetadataCommand::AllocateProducerIds { count: 4 })
        ));
        assert!(matches!(entries[1].payload, EntryPayload::Blank));

        let (image_tx, image_rx) = watch::channel(Default::default());
        let mut state_machine = StateMachineStore::open(db, image_tx).unwrap();
        assert_eq!(**image_rx.borrow(), image_at_3());
        let (applied, stored_membership) = state_machine.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(6, 3)));
        assert_eq!(
            stored_membership,
            StoredMembership::new(Some(log_id(0, 0)), membership())
        );
        let snapshot = state_machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(6, 3)));
        assert_eq!(snapshot.meta.last_membership, stored_membership);
        assert_eq!(snapshot.meta.snapshot_id, "T1-N2-3-0");
    }

    #[tokio::test]
    async fn a_format_1_store_is_converted_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("raft")).unwrap();
            write_v1_store(&db);
        }
        let db = crate::raft::open_db(dir.path()).await.unwrap();
        assert_eq!(
            meta_format(&db),
            Some(FORMAT_VERSION),
            "the marker is written"
        );
        assert_converted(&db).await;
        // Opening again changes nothing.
        assert_eq!(upgrade(&db, dir.path()).unwrap(), Upgrade::Current);
        assert_converted(&db).await;
    }

    fn meta_format(db: &sled::Db) -> Option<u64> {
        let meta = db.open_tree(META_TREE).unwrap();
        meta.get(KEY_FORMAT_VERSION)
            .unwrap()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn a_conversion_cut_short_by_a_crash_completes_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("raft")).unwrap();
        write_v1_store(&db);
        assert_eq!(
            upgrade(&db, dir.path()).unwrap(),
            Upgrade::Converted {
                stride: 4,
                entries: 3,
                values: 4
            }
        );
        // As if the crash came after the log and before the rest: the
        // format-1 vote and snapshot back, the marker not yet written.
        let converted_log: Vec<_> = db
            .open_tree(LOG_TREE)
            .unwrap()
            .iter()
            .collect::<Result<_, _>>()
            .unwrap();
        write_v1_store(&db);
        let log = db.open_tree(LOG_TREE).unwrap();
        for (key, value) in converted_log {
            log.insert(key, value).unwrap();
        }
        db.open_tree(META_TREE)
            .unwrap()
            .remove(KEY_FORMAT_VERSION)
            .unwrap();
        assert_eq!(
            upgrade(&db, dir.path()).unwrap(),
            Upgrade::Converted {
                stride: 4,
                entries: 0,
                values: 4
            }
        );
        assert_converted(&db).await;
    }

    #[test]
    fn conversion_keeps_the_order_of_leader_ids() {
        let map = TermMap { stride: 4 };
        let ids: Vec<V1LeaderId> = [(0, 0), (1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (5, 2)]
            .into_iter()
            .map(|(term, node_id)| V1LeaderId { term, node_id })
            .collect();
        let terms: Vec<u64> = ids.iter().map(|id| map.term(*id).unwrap()).collect();
        assert_eq!(terms, vec![0, 5, 6, 7, 9, 11, 22]);
        assert!(
            terms.windows(2).all(|w| w[0] < w[1]),
            "one-to-one and ordered"
        );
        // Votes compare as before, committed or not.
        let vote = |term, node_id, committed| {
            map.vote(V1Vote {
                leader_id: V1LeaderId { term, node_id },
                committed,
            })
            .unwrap()
        };
        assert!(vote(1, 2, true) < vote(1, 3, false));
        assert!(vote(1, 3, false) < vote(1, 3, true));
        assert!(vote(1, 3, true) < vote(2, 1, false));
        assert_eq!(vote(1, 3, true).leader_id.voted_for, Some(3));
    }

    #[test]
    fn a_store_it_cannot_convert_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("raft")).unwrap();
        write_v1_store(&db);
        // A leader id naming a node outside the membership.
        db.open_tree(META_TREE)
            .unwrap()
            .insert(
                KEY_COMMITTED,
                serde_json::to_vec(&v1_log_id(1, 7, 5)).unwrap(),
            )
            .unwrap();
        let err = upgrade(&db, dir.path()).unwrap_err();
        assert!(matches!(err, FormatError::Unconvertible { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("T1-N7"), "{message}");
        assert_eq!(meta_format(&db), None, "nothing marked");
        // Nothing was rewritten either.
        let vote = db
            .open_tree(META_TREE)
            .unwrap()
            .get(KEY_VOTE)
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&vote).contains("node_id"));
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("raft")).unwrap();
        db.open_tree(META_TREE)
            .unwrap()
            .insert(KEY_FORMAT_VERSION, b"3".to_vec())
            .unwrap();
        let err = upgrade(&db, dir.path()).unwrap_err();
        assert!(matches!(err, FormatError::Newer { found: 3, .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn an_empty_store_is_marked_current() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("raft")).unwrap();
        assert_eq!(upgrade(&db, dir.path()).unwrap(), Upgrade::Fresh);
        assert_eq!(meta_format(&db), Some(FORMAT_VERSION));
        assert_eq!(upgrade(&db, dir.path()).unwrap(), Upgrade::Current);
    }
}
