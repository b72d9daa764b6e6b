//! The group coordinator's answer to each Kafka group API, one method per
//! request: the broker's handlers decode, make one of these calls, and
//! encode what it returns.
//!
//! Each method checks that this broker coordinates the group (loaded and
//! led here), takes the group's lock for the state change and the append
//! of its records, and waits for those records to be committed only after
//! the lock is released.

use std::collections::BTreeSet;

use bytes::Bytes;
use kraftwerk_types::ErrorCode;
use tokio::time::Instant;

use super::records::{self, OffsetValue};
use super::state::GroupState;
use super::{Answer, GroupCoordinator, JoinRequest, JoinResult, SyncResult};
use crate::{now_ms, CoordinatorLog};

/// The `__consumer_offsets` records of committed offsets.
fn offset_records(
    group_id: &str,
    offsets: &[((String, i32), OffsetValue)],
) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|((t, p), v)| {
            (
                records::offset_key(group_id, t, *p),
                Some(records::offset_value(v)),
            )
        })
        .collect()
}

/// A SyncGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment), sent by the leader only.
    pub assignments: Vec<(String, Bytes)>,
}

/// A member leaving (LeaveGroup v3+ names several).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// Committed offsets by topic, each partition with its offset if there is one.
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

impl GroupCoordinator {
    /// JoinGroup: answered at once, or when the rebalance completes.
    pub async fn join(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        join: JoinRequest,
    ) -> JoinResult {
        let member_id = join.member_id.clone();
        let owned = match self.owns_loaded(log, group_id).await {
            Ok(owned) => owned,
            Err(e) => return JoinResult::error(e, &member_id),
        };
        if !member_id.is_empty() && self.group(group_id).is_none() {
            return JoinResult::error(ErrorCode::UNKNOWN_MEMBER_ID, &member_id);
        }
        let group = self.group_or_new(group_id);
        let answer = {
            let mut slot = group.lock();
            let reply = slot
                .group
                .join(join, &self.config.group, Instant::now(), now_ms());
            let answer = Self::wait_join(&mut slot, reply);
            self.settle(log, owned.partition, &mut slot);
            answer
        };
        match answer {
            Answer::Now(r) => r,
            Answer::Later(rx) => tokio::select! {
                r = rx => r.unwrap_or_else(|_| JoinResult::error(ErrorCode::NOT_COORDINATOR, &member_id)),
                _ = self.shutdown.cancelled() => JoinResult::error(ErrorCode::COORDINATOR_NOT_AVAILABLE, &member_id),
            },
        }
    }

    /// SyncGroup: the leader's assignment is stored, and every member is
    /// answered once that record is committed.
    pub async fn sync(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        sync: SyncRequest,
    ) -> SyncResult {
        let owned = match self.owns_loaded(log, group_id).await {
            Ok(o) => o,
            Err(e) => return SyncResult::error(e),
        };
        let Some(group) = self.group(group_id) else {
            return SyncResult::error(ErrorCode::UNKNOWN_MEMBER_ID);
        };
        let (answer, stored_at) = {
            let mut slot = group.lock();
            let reply = slot.group.sync(
                &sync.member_id,
                sync.group_instance_id.as_deref(),
                sync.generation,
                sync.protocol_type.as_deref(),
                sync.protocol_name.as_deref(),
                sync.assignments,
            );
            let answer = Self::wait_sync(&mut slot, reply);
            (answer, self.settle(log, owned.partition, &mut slot))
        };
        if let Some((offset, generation)) = stored_at {
            let committed = self.await_committed(log, owned.partition, offset).await;
            let mut slot = group.lock();
            if slot.generation == generation {
                slot.group.finish_sync(committed, Instant::now(), now_ms());
                self.settle(log, owned.partition, &mut slot);
            }
        }
        match answer {
            Answer::Now(r) => r,
            Answer::Later(rx) => tokio::select! {
                r = rx => r.unwrap_or_else(|_| SyncResult::error(ErrorCode::NOT_COORDINATOR)),
                _ = self.shutdown.cancelled() => SyncResult::error(ErrorCode::COORDINATOR_NOT_AVAILABLE),
            },
        }
    }

    /// Heartbeat: keeps a member's session alive, and tells it when a
    /// rebalance has begun.
    pub fn heartbeat(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
    ) -> ErrorCode {
        let owned = match self.owns(log, group_id) {
            Ok(owned) => owned,
            Err(e) => return e,
        };
        match self.group(group_id) {
            None => ErrorCode::UNKNOWN_MEMBER_ID,
            Some(group) => {
                let mut slot = group.lock();
                let code =
                    slot.group
                        .heartbeat(member_id, group_instance_id, generation, Instant::now());
                self.settle(log, owned.partition, &mut slot);
                code
            }
        }
    }

    /// LeaveGroup: one code per member, or one for the whole request.
    pub fn leave(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        leaving: &[LeavingMember],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let owned = self.owns(log, group_id)?;
        let group = self.group(group_id).ok_or(ErrorCode::UNKNOWN_MEMBER_ID)?;
        let mut g = group.lock();
        let codes = leaving
            .iter()
            .map(|m| {
                let code = g.leave(
                    &m.member_id,
                    m.group_instance_id.as_deref(),
                    Instant::now(),
                    now_ms(),
                );
                tracing::debug!(group = group_id, member = %m.member_id, code = code.code(), "leave");
                code
            })
            .collect();
        self.settle(log, owned.partition, &mut g);
        Ok(codes)
    }

    /// OffsetCommit for a group (classic protocol): checks the member and
    /// generation, writes the offsets' records, and makes them visible to
    /// OffsetFetch once the records are committed.
    pub async fn commit_offsets(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<((String, i32), OffsetValue)>,
    ) -> Result<(), ErrorCode> {
        let owned = self.owns_loaded(log, group_id).await?;
        let group = match self.group(group_id) {
            Some(g) => g,
            None if generation < 0 => self.group_or_new(group_id),
            None => return Err(ErrorCode::ILLEGAL_GENERATION),
        };
        let keys: Vec<(String, i32)> = offsets.iter().map(|(k, _)| k.clone()).collect();
        let record_offset = {
            let mut g = group.lock();
            g.validate_commit(member_id, group_instance_id, generation)?;
            if offsets.is_empty() {
                return Ok(());
            }
            let batch = offset_records(group_id, &offsets);
            let last = self.append(log, owned.partition, batch)?;
            for (key, value) in offsets {
                g.pending_offsets.insert(key, (last, value));
            }
            last
        };
        let committed = self
            .await_committed(log, owned.partition, record_offset)
            .await;
        let mut g = group.lock();
        match committed {
            Ok(()) => g.apply_committed_offsets(&keys, record_offset),
            Err(_) => g.drop_pending_offsets(&keys, record_offset),
        }
        committed
    }

    /// TxnOffsetCommit: offsets written as part of a producer's
    /// transaction, committed by its COMMIT marker ([`Self::complete_txn`]).
    /// The transaction coordinator checked the producer id and epoch.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit_offsets(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<((String, i32), OffsetValue)>,
    ) -> Result<(), ErrorCode> {
        let owned = self.owns_loaded(log, group_id).await?;
        let group = self.group_or_new(group_id);
        let record_offset = {
            let g = group.lock();
            g.validate_txn_commit(member_id, group_instance_id, generation)?;
            if offsets.is_empty() {
                return Ok(());
            }
            let batch = offset_records(group_id, &offsets);
            let encoded = crate::encode_batch(batch, Some((producer_id, producer_epoch)))?;
            self.append_batch(log, owned.partition, encoded)?
        };
        self.await_committed(log, owned.partition, record_offset)
            .await?;
        let mut g = group.lock();
        let pending = g.txn_offsets.entry(producer_id).or_default();
        pending.extend(offsets);
        Ok(())
    }

    /// A transaction marker was written to `partition` of the offsets
    /// topic: the producer's transactional offsets there are committed or
    /// dropped.
    pub fn complete_txn(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) {
        let count = self.partition_count(log);
        for group in self.all_groups() {
            let mut g = group.lock();
            if super::partition_for(&g.group_id, count) == partition {
                g.complete_txn(producer_id, commit);
            }
        }
    }

    /// The partitions of `group_id` with offsets in an open transaction:
    /// OffsetFetch with `require_stable` answers them UNSTABLE_OFFSET_COMMIT.
    pub fn unstable_offsets(&self, group_id: &str) -> BTreeSet<(String, i32)> {
        self.group(group_id)
            .map(|g| {
                g.lock()
                    .txn_offsets
                    .values()
                    .flat_map(|o| o.keys().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// OffsetFetch: the committed offsets of the partitions asked for, or
    /// of every partition the group has an offset for.
    pub fn fetch_offsets(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<FetchedOffsets, ErrorCode> {
        self.owns(log, group_id)?;
        let group = self.group(group_id);
        let guard = group.as_ref().map(|g| g.lock());
        let offsets = guard.as_ref().map(|g| &g.offsets);
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let found = parts
                        .into_iter()
                        .map(|p| (p, offsets.and_then(|o| o.get(&(t.clone(), p))).cloned()))
                        .collect();
                    (t, found)
                })
                .collect(),
            None => {
                let mut out: FetchedOffsets = Vec::new();
                for ((t, p), v) in offsets.into_iter().flatten() {
                    match out.last_mut() {
                        Some((last, parts)) if last == t => parts.push((*p, Some(v.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(v.clone()))])),
                    }
                }
                out
            }
        })
    }

    /// DeleteGroups, for one group: only an empty group is deleted, with
    /// its offsets; the answer waits for the tombstones to be committed.
    pub async fn delete_group(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
    ) -> Result<(), ErrorCode> {
        let owned = self.owns(log, group_id)?;
        let group = self.group(group_id).ok_or(ErrorCode::GROUP_ID_NOT_FOUND)?;
        let last = {
            let mut g = group.lock();
            match g.state {
                GroupState::Empty => {}
                GroupState::Dead => return Err(ErrorCode::GROUP_ID_NOT_FOUND),
                _ => return Err(ErrorCode::NON_EMPTY_GROUP),
            }
            let mut tombstones: Vec<_> = g
                .offsets
                .keys()
                .map(|(t, p)| (records::offset_key(group_id, t, *p), None))
                .collect();
            tombstones.push((records::group_key(group_id), None));
            let last = self.append(log, owned.partition, tombstones)?;
            g.offsets.clear();
            g.pending_offsets.clear();
            g.mark_dead(now_ms());
            last
        };
        self.remove_group(group_id);
        tracing::info!(group = group_id, "group deleted");
        self.await_committed(log, owned.partition, last).await
    }

    /// OffsetDelete: removes the offsets of partitions the group is not
    /// subscribed to. `partitions` are the ones that exist; the answer has
    /// a code for each.
    pub async fn delete_offsets(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), ErrorCode)>, ErrorCode> {
        let owned = self.owns(log, group_id)?;
        let group = self.group(group_id).ok_or(ErrorCode::GROUP_ID_NOT_FOUND)?;
        let (codes, last) = {
            let mut g = group.lock();
            let subscribed: BTreeSet<String> = match g.state {
                GroupState::Dead => return Err(ErrorCode::GROUP_ID_NOT_FOUND),
                GroupState::Empty => BTreeSet::new(),
                _ => g.subscribed_topics().ok_or(ErrorCode::NON_EMPTY_GROUP)?,
            };
            let mut tombstones = Vec::new();
            let mut deleted = Vec::new();
            let codes: Vec<_> = partitions
                .into_iter()
                .map(|key| {
                    if subscribed.contains(&key.0) {
                        return (key, ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC);
                    }
                    if g.offsets.contains_key(&key) {
                        tombstones.push((records::offset_key(group_id, &key.0, key.1), None));
                        deleted.push(key.clone());
                    }
                    (key, ErrorCode::NONE)
                })
                .collect();
            let last = self.append(log, owned.partition, tombstones)?;
            for key in deleted {
                g.offsets.remove(&key);
                g.pending_offsets.remove(&key);
            }
            (codes, last)
        };
        self.await_committed(log, owned.partition, last).await?;
        Ok(codes)
    }

    /// DescribeGroups, for one group: `None` when there is no such group
    /// here. Member metadata, assignments and the protocol are shown once
    /// the group is Stable, as Kafka does.
    pub fn describe(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
    ) -> Result<Option<GroupDescription>, ErrorCode> {
        self.owns(log, group_id)?;
        let Some(group) = self.group(group_id) else {
            return Ok(None);
        };
        let g = group.lock();
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = g
            .members
            .values()
            .map(|m| {
                let (metadata, assignment) = if stable {
                    (
                        m.metadata(&protocol).cloned().unwrap_or_default(),
                        m.assignment.clone(),
                    )
                } else {
                    Default::default()
                };
                MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata,
                    assignment,
                }
            })
            .collect();
        Ok(Some(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { protocol } else { String::new() },
            members,
        }))
    }

    /// ListGroups: the live groups this broker coordinates, by group id.
    pub fn list(&self) -> Vec<ListedGroup> {
        let mut out: Vec<ListedGroup> = self
            .all_groups()
            .iter()
            .filter_map(|group| {
                let g = group.lock();
                (g.state != GroupState::Dead).then(|| ListedGroup {
                    group_id: g.group_id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state.name(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Kafka's name of the state (`Stable`, `PreparingRebalance`, ...).
    pub state: &'static str,
    pub protocol_type: String,
    /// Empty unless the group is Stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}
