//! One consumer group's state machine (Kafka's classic group protocol).
//!
//! Plain synchronous code: every method takes the current time and changes
//! the group; nothing here does I/O, awaits or holds a channel. What a
//! change asks of the world is collected as [`Effect`]s, which the
//! coordinator takes with [`Group::take_effects`] after each call and
//! carries out: answers to JoinGroup and SyncGroup requests that waited
//! (each known here only by its [`Waiter`] id), records to write, and the
//! next time the group must be woken for its deadlines.
//!
//! States, as Kafka names them:
//! `Empty` → (join) `PreparingRebalance` → (all joined, or rebalance
//! timeout) `CompletingRebalance` → (leader's SyncGroup) `Stable`; a join
//! with new metadata, a leave or an expired session sends `Stable` or
//! `CompletingRebalance` back to `PreparingRebalance`. `Dead` is a deleted
//! group, which the coordinator removes.
//!
//! Timing rules: a member's session expires `session.timeout.ms` after its
//! last heartbeat (members waiting for a JoinGroup or SyncGroup answer are
//! kept alive); a rebalance ends at the latest `rebalance.timeout.ms`
//! (the largest of the members') after it began; the first rebalance of
//! an empty group waits `group.initial.rebalance.delay.ms`, extended by the
//! same delay while new members arrive, never past the rebalance timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use kraftwerk_types::ErrorCode;
use tokio::time::{Duration, Instant};

use super::records::{GroupValue, MemberValue, OffsetValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker settings the state machine obeys.
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinResult {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// Filled for the leader only: (member id, group instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ErrorCode) -> SyncResult {
        SyncResult {
            error,
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

/// A request that waits for the group to move on (a JoinGroup until the
/// rebalance completes, a SyncGroup until the assignment is stored). Its
/// answer comes as an [`Effect`] naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Waiter(u64);

pub enum Reply<T> {
    Now(T),
    Later(Waiter),
}

/// What a change of the group asks its coordinator to do.
#[derive(Debug)]
pub enum Effect {
    /// Answer the waiting JoinGroup.
    Join(Waiter, JoinResult),
    /// Answer the waiting SyncGroup.
    Sync(Waiter, SyncResult),
    /// The stored membership changed: write the group's record. A failed
    /// write is retried ([`Group::mark_dirty`]).
    Store,
    /// Write the group's record with the leader's assignment, and call
    /// [`Group::finish_sync`] with the outcome once the record is
    /// committed (or could not be written), if the group is still at this
    /// generation then.
    StoreAssignment { generation: i32 },
    /// Call [`Group::tick`] at this time, or earlier.
    Timer(Instant),
}

/// A JoinGroup request, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a rejoining static leader can be told to keep its assignment.
    pub supports_skip_assignment: bool,
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<Waiter>,
    sync_waiter: Option<Waiter>,
    last_heartbeat: Instant,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m)
    }

    fn session_end(&self) -> Instant {
        self.last_heartbeat + ms(self.session_timeout_ms)
    }

    /// Members waiting for a JoinGroup or SyncGroup answer are kept alive.
    fn session_expired(&self, now: Instant) -> bool {
        self.join_waiter.is_none() && self.sync_waiter.is_none() && now >= self.session_end()
    }
}

struct InitialDelay {
    deadline: Instant,
    limit: Instant,
    new_member_added: bool,
}

pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending_members: HashMap<String, Instant>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets written to the log but not yet committed there, with the
    /// log offset of their record: OffsetFetch does not see them until the
    /// record is committed, and only the latest write of a partition's
    /// offset is applied then.
    pub pending_offsets: HashMap<(String, i32), (i64, OffsetValue)>,
    /// Offsets committed inside a transaction (TxnOffsetCommit), by
    /// producer id: they become committed offsets when the transaction's
    /// COMMIT marker is written to this group's offsets partition, and
    /// are dropped on ABORT.
    pub txn_offsets: HashMap<i64, BTreeMap<(String, i32), OffsetValue>>,
    /// Wall-clock time of the last state change (Kafka's currentStateTimestamp).
    pub state_timestamp_ms: i64,
    rebalance_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    initial_delay_ms: i32,
    dirty: bool,
    next_waiter: u64,
    effects: Vec<Effect>,
    /// The wake-up last asked for with [`Effect::Timer`], until [`Group::tick`] runs.
    armed: Option<Instant>,
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            offsets: BTreeMap::new(),
            pending_offsets: HashMap::new(),
            txn_offsets: HashMap::new(),
            state_timestamp_ms: now_ms,
            rebalance_deadline: None,
            initial_delay: None,
            initial_delay_ms: 0,
            dirty: false,
            next_waiter: 0,
            effects: Vec::new(),
            armed: None,
        }
    }

    /// A group as stored in `__consumer_offsets`. Its members' sessions
    /// start now: they expire unless the clients heartbeat to this broker.
    pub fn restore(&mut self, v: GroupValue, now: Instant) {
        self.generation = v.generation;
        self.protocol_type = Some(v.protocol_type).filter(|s| !s.is_empty());
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.state_timestamp_ms = v.current_state_timestamp_ms;
        self.members.clear();
        self.static_members.clear();
        for m in v.members {
            if let Some(i) = &m.group_instance_id {
                self.static_members.insert(i.clone(), m.member_id.clone());
            }
            let protocols = match &self.protocol {
                Some(p) => vec![(p.clone(), m.subscription)],
                None => Vec::new(),
            };
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat: now,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// What is written to `__consumer_offsets` for this group.
    pub fn stored_value(&self) -> GroupValue {
        let protocol = self.protocol.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .and_then(|p| m.metadata(p))
                        .cloned()
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Makes offsets whose record (at log offset `record_offset`) is now
    /// committed visible, unless a later write of the same offset is pending.
    pub fn apply_committed_offsets(&mut self, keys: &[(String, i32)], record_offset: i64) {
        for key in keys {
            if let Some((at, _)) = self.pending_offsets.get(key) {
                if *at == record_offset {
                    if let Some((_, value)) = self.pending_offsets.remove(key) {
                        self.offsets.insert(key.clone(), value);
                    }
                }
            }
        }
    }

    /// Forgets pending offsets whose record will not be committed by the
    /// deadline; the committed values stay as they were.
    pub fn drop_pending_offsets(&mut self, keys: &[(String, i32)], record_offset: i64) {
        for key in keys {
            if self
                .pending_offsets
                .get(key)
                .is_some_and(|(at, _)| *at == record_offset)
            {
                self.pending_offsets.remove(key);
            }
        }
    }

    /// What the calls since the last take asked for, in order: answers,
    /// then a write of the group's record if its stored membership changed,
    /// then a timer if the group's next deadline is earlier than the
    /// wake-up already asked for.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        let mut out = std::mem::take(&mut self.effects);
        let assignment = out
            .iter()
            .any(|e| matches!(e, Effect::StoreAssignment { .. }));
        // The assignment's record is the whole stored membership.
        if std::mem::take(&mut self.dirty) && !assignment {
            out.push(Effect::Store);
        }
        if let Some(next) = self.next_deadline() {
            if self.armed.is_none_or(|armed| next < armed) {
                self.armed = Some(next);
                out.push(Effect::Timer(next));
            }
        }
        out
    }

    /// The stored membership must be written (again): a write failed.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The earliest time [`Group::tick`] has something to do: the end of
    /// the initial delay or of the rebalance, a pending member id's or a
    /// member's session. A heartbeat only moves a session's end later, so
    /// a wake-up at the old end finds nothing to do and asks for the next.
    fn next_deadline(&self) -> Option<Instant> {
        let rebalance = if self.state == GroupState::PreparingRebalance {
            match &self.initial_delay {
                Some(d) => Some(d.deadline),
                None => self.rebalance_deadline,
            }
        } else {
            None
        };
        let pending = self.pending_members.values().copied();
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(Member::session_end);
        rebalance.into_iter().chain(pending).chain(sessions).min()
    }

    fn new_waiter(&mut self) -> Waiter {
        self.next_waiter += 1;
        Waiter(self.next_waiter)
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        tracing::debug!(group = %self.group_id, from = self.state.name(), to = to.name(), generation = self.generation, "group state");
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Checks a request's member id and instance id against the group.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(known) if known != member_id => return Err(ErrorCode::FENCED_INSTANCE_ID),
                Some(_) => {}
                None if self.members.contains_key(member_id) => {}
                None => return Err(ErrorCode::UNKNOWN_MEMBER_ID),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    /// A protocol every member supports, chosen by the members' first
    /// preferences among those.
    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Option<BTreeSet<&str>> = None;
        for m in self.members.values() {
            let names: BTreeSet<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            candidates = Some(match candidates {
                None => names,
                Some(c) => c.intersection(&names).copied().collect(),
            });
        }
        let candidates = candidates?;
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // Most votes wins; ties go to the first member's preference.
        let best = votes.values().copied().max()?;
        votes
            .iter()
            .find(|(_, v)| **v == best)
            .map(|(n, _)| n.to_string())
    }

    /// Would the group still agree on a protocol with these protocols for one member?
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let mut common: BTreeSet<&str> = protocols.iter().map(|(n, _)| n.as_str()).collect();
        for m in self.members.values() {
            let names: BTreeSet<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            common = common.intersection(&names).copied().collect();
        }
        !common.is_empty()
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        settings: &GroupSettings,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        self.initial_delay_ms = settings.initial_rebalance_delay_ms;
        let err = |e: ErrorCode| Reply::Now(JoinResult::error(e, &req.member_id));
        if req.session_timeout_ms < settings.min_session_timeout_ms
            || req.session_timeout_ms > settings.max_session_timeout_ms
        {
            return err(ErrorCode::INVALID_SESSION_TIMEOUT);
        }
        if self.state == GroupState::Dead {
            return err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        let is_known = self.members.contains_key(&req.member_id);
        // A member may change its own protocols; check against the others.
        let compatible = if is_known && self.members.len() == 1 {
            !req.protocols.is_empty()
        } else {
            let saved = if is_known {
                self.members.shift_remove(&req.member_id)
            } else {
                None
            };
            let ok = self.supports(&req.protocol_type, &req.protocols);
            if let Some(m) = saved {
                self.members.insert(m.member_id.clone(), m);
            }
            ok
        };
        if !compatible {
            return err(ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, now, now_ms)
        } else {
            self.join_known_member(req, now, now_ms)
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        if let Some(instance) = req.group_instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(req, &instance, &old_id, now, now_ms);
            }
            let member_id = new_member_id(&instance);
            self.static_members.insert(instance, member_id.clone());
            return self.add_member_and_rebalance(req, member_id, now, now_ms);
        }
        let member_id = new_member_id(&req.client_id);
        if req.require_known_member_id {
            // KIP-394: the member learns its id first, and joins with it.
            let session = ms(req.session_timeout_ms);
            self.pending_members
                .insert(member_id.clone(), now + session);
            return Reply::Now(JoinResult::error(ErrorCode::MEMBER_ID_REQUIRED, &member_id));
        }
        self.add_member_and_rebalance(req, member_id, now, now_ms)
    }

    fn join_known_member(
        &mut self,
        req: JoinRequest,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        if self.pending_members.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            return self.add_member_and_rebalance(req, member_id, now, now_ms);
        }
        if let Err(e) = self.check_member(&req.member_id, req.group_instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(e, &req.member_id));
        }
        let member_id = req.member_id.clone();
        let Some(member) = self.members.get_mut(&member_id) else {
            return Reply::Now(JoinResult::error(ErrorCode::UNKNOWN_MEMBER_ID, &member_id));
        };
        member.last_heartbeat = now;
        let unchanged = member.protocols == req.protocols;
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&member_id, req);
                let rx = self.wait_join(&member_id);
                self.maybe_complete_join(now, now_ms);
                rx
            }
            GroupState::CompletingRebalance if unchanged => {
                // A repeated join: answer with the current generation.
                Reply::Now(self.join_result_for(&member_id, false))
            }
            GroupState::Stable if unchanged && self.leader.as_deref() != Some(&member_id) => {
                // A repeated join: answer with the current generation.
                Reply::Now(self.join_result_for(&member_id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&member_id, req);
                let rx = self.wait_join(&member_id);
                self.prepare_rebalance(
                    now,
                    now_ms,
                    "member rejoined with new metadata or as leader",
                );
                rx
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(ErrorCode::UNKNOWN_MEMBER_ID, &member_id))
            }
        }
    }

    fn replace_static_member(
        &mut self,
        req: JoinRequest,
        instance: &str,
        old_id: &str,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let Some(mut member) = self.members.shift_remove(old_id) else {
            self.static_members.remove(instance);
            let member_id = new_member_id(instance);
            self.static_members
                .insert(instance.to_string(), member_id.clone());
            return self.add_member_and_rebalance(req, member_id, now, now_ms);
        };
        let new_id = new_member_id(instance);
        if let Some(w) = member.join_waiter.take() {
            let fenced = JoinResult::error(ErrorCode::FENCED_INSTANCE_ID, old_id);
            self.effects.push(Effect::Join(w, fenced));
        }
        if let Some(w) = member.sync_waiter.take() {
            let fenced = SyncResult::error(ErrorCode::FENCED_INSTANCE_ID);
            self.effects.push(Effect::Sync(w, fenced));
        }
        let unchanged = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.last_heartbeat = now;
        self.members.insert(new_id.clone(), member);
        self.static_members
            .insert(instance.to_string(), new_id.clone());
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable
            && unchanged
            && (!was_leader || req.supports_skip_assignment)
        {
            if let Some(m) = self.members.get_mut(&new_id) {
                m.client_id = req.client_id;
                m.client_host = req.client_host;
                m.session_timeout_ms = req.session_timeout_ms;
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            }
            // The member id changed: persist the mapping.
            self.dirty = true;
            return Reply::Now(self.join_result_for(&new_id, was_leader));
        }
        self.update_member(&new_id, req);
        let rx = self.wait_join(&new_id);
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now, now_ms);
        } else {
            self.prepare_rebalance(now, now_ms, "static member rejoined with new metadata");
        }
        rx
    }

    fn update_member(&mut self, member_id: &str, req: JoinRequest) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.protocol_type = req.protocol_type;
            m.protocols = req.protocols;
        }
    }

    fn wait_join(&mut self, member_id: &str) -> Reply<JoinResult> {
        let waiter = self.new_waiter();
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.join_waiter.replace(waiter) {
                let superseded = JoinResult::error(ErrorCode::REBALANCE_IN_PROGRESS, member_id);
                self.effects.push(Effect::Join(old, superseded));
            }
        }
        Reply::Later(waiter)
    }

    fn add_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        member_id: String,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: now,
        };
        self.members.insert(member_id.clone(), member);
        if let Some(d) = &mut self.initial_delay {
            d.new_member_added = true;
        }
        let rx = self.wait_join(&member_id);
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now, now_ms);
        } else {
            self.prepare_rebalance(now, now_ms, "new member joined");
        }
        rx
    }

    fn rebalance_timeout(&self) -> Duration {
        ms(self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0))
    }

    fn prepare_rebalance(&mut self, now: Instant, now_ms: i64, reason: &str) {
        tracing::info!(group = %self.group_id, generation = self.generation, reason, "rebalance");
        if self.state == GroupState::CompletingRebalance {
            self.reset_assignments(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty {
            self.initial_delay = Some(InitialDelay {
                deadline: (now + ms(self.initial_delay_ms)).min(now + timeout),
                limit: now + timeout,
                new_member_added: false,
            });
        } else {
            self.initial_delay = None;
        }
        self.rebalance_deadline = Some(now + timeout);
        self.transition(GroupState::PreparingRebalance, now_ms);
        // Nobody left to wait for (e.g. the last member left): finish now.
        self.maybe_complete_join(now, now_ms);
    }

    fn reset_assignments(&mut self, error: ErrorCode) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(w) = m.sync_waiter.take() {
                self.effects.push(Effect::Sync(w, SyncResult::error(error)));
            }
        }
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn maybe_complete_join(&mut self, now: Instant, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some(d) = &mut self.initial_delay {
            if now < d.deadline {
                return;
            }
            if d.new_member_added && now < d.limit {
                // Members keep arriving: wait one more delay, up to the rebalance timeout.
                d.new_member_added = false;
                d.deadline = (now + ms(self.initial_delay_ms)).min(d.limit);
                return;
            }
            self.complete_join(now, now_ms);
            return;
        }
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        if self.all_joined() || timed_out {
            self.complete_join(now, now_ms);
        }
    }

    fn complete_join(&mut self, now: Instant, now_ms: i64) {
        self.initial_delay = None;
        self.rebalance_deadline = None;
        // Dynamic members that did not rejoin are removed; static ones stay
        // (KIP-345): their instance may be restarting, and their session
        // decides when they go.
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in missing {
            tracing::info!(group = %self.group_id, member = %id, "member did not rejoin in time; removed");
            self.drop_member(&id);
        }
        if !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_none()) {
            // Only static members that did not rejoin are left: nobody could
            // lead the generation. Wait another rebalance timeout; their
            // sessions end meanwhile if they are gone.
            tracing::info!(group = %self.group_id, "no member rejoined; the rebalance waits");
            self.rebalance_deadline = Some(now + self.rebalance_timeout());
            return;
        }
        // Ids handed out with MEMBER_ID_REQUIRED stay valid until their
        // owners join with them or their session runs out, as in Kafka: a
        // member whose second JoinGroup arrives just after this generation
        // completed joins the group instead of being told it is unknown.
        self.generation += 1;
        self.dirty = true;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        // The leader computes the assignment, so it must be a member that
        // rejoined and learns the members from its JoinGroup response.
        if self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_none_or(|m| m.join_waiter.is_none())
        {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        tracing::info!(
            group = %self.group_id,
            generation = self.generation,
            members = self.members.len(),
            leader = self.leader.as_deref().unwrap_or(""),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "joined; waiting for the leader's assignment"
        );
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id, false);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    self.effects.push(Effect::Join(w, result));
                }
            }
        }
    }

    fn join_result_for(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: ErrorCode::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment,
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.member_id.clone(),
                            m.group_instance_id.clone(),
                            m.metadata(&protocol).cloned().unwrap_or_default(),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Takes a member out without changing the state.
    fn drop_member(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.shift_remove(member_id) {
            if let Some(i) = &m.group_instance_id {
                if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(i);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let unknown = JoinResult::error(ErrorCode::UNKNOWN_MEMBER_ID, member_id);
                self.effects.push(Effect::Join(w, unknown));
            }
            if let Some(w) = m.sync_waiter.take() {
                let unknown = SyncResult::error(ErrorCode::UNKNOWN_MEMBER_ID);
                self.effects.push(Effect::Sync(w, unknown));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    fn remove_member_and_rebalance(
        &mut self,
        member_id: &str,
        now: Instant,
        now_ms: i64,
        reason: &str,
    ) {
        self.drop_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, now_ms, reason)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// SyncGroup. While the rebalance completes the member waits; the
    /// leader's call also asks for its assignment to be stored
    /// ([`Effect::StoreAssignment`]).
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResult> {
        let now_err = |e| Reply::Now(SyncResult::error(e));
        if let Err(e) = self.check_member(member_id, instance_id) {
            return now_err(e);
        }
        if generation != self.generation {
            return now_err(ErrorCode::ILLEGAL_GENERATION);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return now_err(ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => now_err(ErrorCode::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => now_err(ErrorCode::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Reply::Now(self.sync_ok(assignment))
            }
            GroupState::CompletingRebalance => {
                let waiter = self.new_waiter();
                if let Some(m) = self.members.get_mut(member_id) {
                    if let Some(old) = m.sync_waiter.replace(waiter) {
                        let superseded = SyncResult::error(ErrorCode::REBALANCE_IN_PROGRESS);
                        self.effects.push(Effect::Sync(old, superseded));
                    }
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.effects.push(Effect::StoreAssignment {
                        generation: self.generation,
                    });
                }
                Reply::Later(waiter)
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: ErrorCode::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment,
        }
    }

    /// After the leader's assignments were stored (or failed to be).
    pub fn finish_sync(&mut self, stored: Result<(), ErrorCode>, now: Instant, now_ms: i64) {
        if self.state != GroupState::CompletingRebalance {
            return;
        }
        match stored {
            Ok(()) => {
                self.transition(GroupState::Stable, now_ms);
                tracing::info!(group = %self.group_id, generation = self.generation, "assignment stored; group stable");
                let ok: Vec<(String, SyncResult)> = self
                    .members
                    .values()
                    .map(|m| (m.member_id.clone(), self.sync_ok(m.assignment.clone())))
                    .collect();
                for (id, result) in ok {
                    if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                        self.effects.push(Effect::Sync(w, result));
                    }
                }
            }
            Err(e) => {
                self.reset_assignments(e);
                self.prepare_rebalance(now, now_ms, "storing the assignment failed");
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> ErrorCode {
        if let Err(e) = self.check_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return ErrorCode::ILLEGAL_GENERATION;
        }
        let state = self.state;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match state {
            GroupState::PreparingRebalance => ErrorCode::REBALANCE_IN_PROGRESS,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::NONE,
            GroupState::Empty | GroupState::Dead => ErrorCode::UNKNOWN_MEMBER_ID,
        }
    }

    /// One member of a LeaveGroup; `member_id` may be empty when an instance id is given.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        now_ms: i64,
    ) -> ErrorCode {
        let target = match instance_id {
            Some(i) => match self.static_members.get(i) {
                Some(known) if !member_id.is_empty() && known != member_id => {
                    return ErrorCode::FENCED_INSTANCE_ID
                }
                Some(known) => known.clone(),
                None => return ErrorCode::UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if self.pending_members.remove(&target).is_some() {
            self.maybe_complete_join(now, now_ms);
            return ErrorCode::NONE;
        }
        if !self.members.contains_key(&target) {
            return ErrorCode::UNKNOWN_MEMBER_ID;
        }
        self.remove_member_and_rebalance(&target, now, now_ms, "member left the group");
        ErrorCode::NONE
    }

    /// Who may commit offsets for this group (Kafka's validateOffsetCommit).
    pub fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// Kafka's checks of a TxnOffsetCommit's group metadata (KIP-447): a
    /// member id and generation, when given, must be current; unlike a
    /// plain commit it is accepted while a rebalance completes.
    pub fn validate_txn_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if let Some(instance) = instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|known| known != member_id)
            {
                return Err(ErrorCode::FENCED_INSTANCE_ID);
            }
        }
        if !member_id.is_empty() && !self.members.contains_key(member_id) {
            return Err(ErrorCode::UNKNOWN_MEMBER_ID);
        }
        if generation >= 0 && generation != self.generation {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// A transaction's marker reached this group's offsets partition.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) {
        if let Some(offsets) = self.txn_offsets.remove(&producer_id) {
            if commit {
                self.offsets.extend(offsets);
            }
        }
    }

    /// Whether a transaction has an offset of this partition pending
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_txn_offset(&self, key: &(String, i32)) -> bool {
        self.txn_offsets.values().any(|o| o.contains_key(key))
    }

    /// Timer duties: the initial delay, the rebalance timeout, expired
    /// sessions. Called when the wake-up of [`Effect::Timer`] comes (or at
    /// any other time: it does only what is due).
    pub fn tick(&mut self, settings: &GroupSettings, now: Instant, now_ms: i64) {
        self.armed = None;
        self.initial_delay_ms = settings.initial_rebalance_delay_ms;
        self.maybe_complete_join(now, now_ms);
        self.pending_members.retain(|_, deadline| now < *deadline);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_expired(now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "session expired");
            self.remove_member_and_rebalance(&id, now, now_ms, "member session expired");
        }
        self.maybe_complete_join(now, now_ms);
    }

    /// Topics the members subscribed to, for a `consumer` group.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let metadata = match &self.protocol {
                Some(p) => m.metadata(p),
                None => m.protocols.first().map(|(_, b)| b),
            };
            let Some(metadata) = metadata else { continue };
            topics.extend(super::parse_subscription(metadata)?);
        }
        Some(topics)
    }

    /// Offsets of an empty group that passed retention (Kafka 2.1+ rule:
    /// counted from the later of the commit and the group becoming empty).
    pub fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        if self.state != GroupState::Empty {
            return Vec::new();
        }
        self.offsets
            .iter()
            .filter(|(_, v)| {
                v.commit_timestamp_ms
                    .max(self.state_timestamp_ms)
                    .saturating_add(retention_ms)
                    <= now_ms
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Answers every waiting request with `error`.
    fn shut_down(&mut self, error: ErrorCode) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let result = JoinResult::error(error, &m.member_id);
                self.effects.push(Effect::Join(w, result));
            }
            if let Some(w) = m.sync_waiter.take() {
                self.effects.push(Effect::Sync(w, SyncResult::error(error)));
            }
        }
    }

    pub fn mark_dead(&mut self, now_ms: i64) {
        self.shut_down(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        self.transition(GroupState::Dead, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: GroupSettings = GroupSettings {
        min_session_timeout_ms: 6000,
        max_session_timeout_ms: 1_800_000,
        initial_rebalance_delay_ms: 0,
    };

    fn request(member_id: &str, session_timeout_ms: i32, v4: bool) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: v4,
            supports_skip_assignment: false,
        }
    }

    /// Carries out a group's effects as the coordinator would, keeping
    /// the answers and the wake-up asked for; time passes only through
    /// [`World::wait_until`], which ticks the group when (and only when)
    /// the wake-up it asked for is due.
    struct World {
        g: Group,
        now: Instant,
        joins: HashMap<Waiter, JoinResult>,
        syncs: HashMap<Waiter, SyncResult>,
        stores: usize,
        assignments: Vec<i32>,
        timer: Option<Instant>,
    }

    impl World {
        fn new(now: Instant) -> World {
            World {
                g: Group::new("g", 0),
                now,
                joins: HashMap::new(),
                syncs: HashMap::new(),
                stores: 0,
                assignments: Vec::new(),
                timer: None,
            }
        }

        fn collect(&mut self) {
            for effect in self.g.take_effects() {
                match effect {
                    Effect::Join(w, r) => {
                        assert!(self.joins.insert(w, r).is_none(), "one answer per join");
                    }
                    Effect::Sync(w, r) => {
                        assert!(self.syncs.insert(w, r).is_none(), "one answer per sync");
                    }
                    Effect::Store => self.stores += 1,
                    Effect::StoreAssignment { generation } => self.assignments.push(generation),
                    Effect::Timer(at) => self.timer = Some(at),
                }
            }
        }

        fn join(&mut self, req: JoinRequest) -> Reply<JoinResult> {
            let reply = self.g.join(req, &SETTINGS, self.now, 0);
            self.collect();
            reply
        }

        /// A JoinGroup answered now or by the call's effects.
        fn joined(&mut self, req: JoinRequest) -> JoinResult {
            let reply = self.join(req);
            self.answer(reply).expect("join answered")
        }

        fn answer(&mut self, reply: Reply<JoinResult>) -> Option<JoinResult> {
            match reply {
                Reply::Now(r) => Some(r),
                Reply::Later(w) => self.joins.remove(&w),
            }
        }

        fn sync_answer(&mut self, reply: Reply<SyncResult>) -> Option<SyncResult> {
            match reply {
                Reply::Now(r) => Some(r),
                Reply::Later(w) => self.syncs.remove(&w),
            }
        }

        fn sync(
            &mut self,
            member: &str,
            generation: i32,
            assignments: Vec<(String, Bytes)>,
        ) -> Reply<SyncResult> {
            let reply = self
                .g
                .sync(member, None, generation, None, None, assignments);
            self.collect();
            reply
        }

        /// The assignment's record was stored (or not), as the coordinator
        /// reports for the generation it wrote it at.
        fn stored(&mut self, result: Result<(), ErrorCode>) {
            let generation = self.assignments.pop().expect("an assignment to store");
            if self.g.generation == generation {
                self.g.finish_sync(result, self.now, 0);
            }
            self.collect();
        }

        fn heartbeat(
            &mut self,
            member: &str,
            instance: Option<&str>,
            generation: i32,
        ) -> ErrorCode {
            let code = self.g.heartbeat(member, instance, generation, self.now);
            self.collect();
            code
        }

        fn leave(&mut self, member: &str) -> ErrorCode {
            let code = self.g.leave(member, None, self.now, 0);
            self.collect();
            code
        }

        /// Time passes until `until`; each wake-up due meanwhile ticks the
        /// group at its time.
        fn wait_until(&mut self, until: Instant) {
            while let Some(at) = self.timer.filter(|at| *at <= until) {
                self.timer = None;
                self.now = self.now.max(at);
                self.g.tick(&SETTINGS, self.now, 0);
                self.collect();
            }
            self.now = until;
        }
    }

    /// (session timeout, JoinGroup v4+, expected error)
    #[test]
    fn first_join_outcomes() {
        let cases = [
            (5999, false, ErrorCode::INVALID_SESSION_TIMEOUT),
            (1_800_001, true, ErrorCode::INVALID_SESSION_TIMEOUT),
            (6000, true, ErrorCode::MEMBER_ID_REQUIRED),
            (6000, false, ErrorCode::NONE),
        ];
        for (session, v4, expected) in cases {
            let mut w = World::new(Instant::now());
            let r = w.joined(request("", session, v4));
            assert_eq!(r.error, expected, "session {session} v4 {v4}");
        }
    }

    /// KIP-394: an id handed out with MEMBER_ID_REQUIRED stays valid across
    /// a rebalance that completes before its owner joins with it, and
    /// expires after a session timeout when it never does.
    #[test]
    fn a_pending_member_id_outlives_a_completed_join() {
        let t0 = Instant::now();
        let mut w = World::new(t0);
        let a = w.joined(request("", 6000, true));
        let b = w.joined(request("", 6000, true));
        assert_eq!(
            (a.error, b.error),
            (ErrorCode::MEMBER_ID_REQUIRED, ErrorCode::MEMBER_ID_REQUIRED)
        );
        // No initial delay: generation 1 completes with `a` alone.
        let a1 = w.joined(request(&a.member_id, 6000, true));
        assert_eq!((a1.error, a1.generation), (ErrorCode::NONE, 1));
        assert_eq!(w.g.state, GroupState::CompletingRebalance);
        // `b` now joins with its id: it is added and a rebalance begins.
        let Reply::Later(b_waits) = w.join(request(&b.member_id, 6000, true)) else {
            panic!("b was answered at once")
        };
        assert!(!w.joins.contains_key(&b_waits), "b waits for a");
        assert_eq!(w.g.state, GroupState::PreparingRebalance);
        assert_eq!(
            w.heartbeat(&a.member_id, None, 1),
            ErrorCode::REBALANCE_IN_PROGRESS
        );
        let a2 = w.joined(request(&a.member_id, 6000, true));
        let b2 = w
            .joins
            .remove(&b_waits)
            .expect("b's join completed with a's");
        assert_eq!((a2.error, a2.generation), (ErrorCode::NONE, 2));
        assert_eq!((b2.error, b2.generation), (ErrorCode::NONE, 2));
        assert_eq!(
            a2.members.len() + b2.members.len(),
            2,
            "the leader sees both"
        );

        // An id whose owner never comes back expires with its session.
        let c = w.joined(request("", 6000, true));
        assert_eq!(c.error, ErrorCode::MEMBER_ID_REQUIRED);
        // a and b keep their sessions; c's id runs out.
        w.wait_until(t0 + Duration::from_millis(3000));
        for m in [&a.member_id, &b.member_id] {
            assert_eq!(w.heartbeat(m, None, 2), ErrorCode::NONE);
        }
        w.wait_until(t0 + Duration::from_millis(6000));
        let late = w.joined(request(&c.member_id, 6000, true));
        assert_eq!(late.error, ErrorCode::UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn member_lifecycle_and_session_expiry() {
        let t0 = Instant::now();
        let mut w = World::new(t0);
        let first = w.joined(request("", 6000, true));
        assert_eq!(first.error, ErrorCode::MEMBER_ID_REQUIRED);
        let joined = w.joined(request(&first.member_id, 6000, true));
        assert_eq!((joined.error, joined.generation), (ErrorCode::NONE, 1));
        assert_eq!(joined.leader, first.member_id);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(w.g.state, GroupState::CompletingRebalance);
        let reply = w.sync(
            &first.member_id,
            1,
            vec![(first.member_id.clone(), Bytes::from_static(b"a"))],
        );
        assert_eq!(
            w.assignments,
            [1],
            "the leader's sync stores the assignment"
        );
        let Reply::Later(waiter) = reply else {
            panic!("the leader waits for its assignment to be stored")
        };
        assert!(!w.syncs.contains_key(&waiter), "not before it is stored");
        w.stored(Ok(()));
        let answer = w.sync_answer(Reply::Later(waiter)).expect("sync answered");
        assert_eq!(&answer.assignment[..], b"a");
        assert_eq!(w.g.state, GroupState::Stable);
        let cases = [
            ("nobody", 1, ErrorCode::UNKNOWN_MEMBER_ID),
            (first.member_id.as_str(), 0, ErrorCode::ILLEGAL_GENERATION),
            (first.member_id.as_str(), 1, ErrorCode::NONE),
        ];
        for (member, generation, expected) in cases {
            assert_eq!(w.heartbeat(member, None, generation), expected);
        }
        let stores = w.stores;
        w.wait_until(t0 + Duration::from_millis(5999));
        assert_eq!(w.g.members.len(), 1);
        w.wait_until(t0 + Duration::from_millis(6000));
        assert!(w.g.members.is_empty());
        assert_eq!((w.g.state, w.g.generation), (GroupState::Empty, 2));
        assert_eq!(w.stores, stores + 1, "the empty group is stored");
        assert_eq!(w.timer, None, "an empty group has no deadline");
    }

    #[test]
    fn simple_groups_commit_with_generation_minus_one() {
        let g = Group::new("g", 0);
        assert_eq!(g.validate_commit("", None, -1), Ok(()));
        assert_eq!(
            g.validate_commit("x", None, 3),
            Err(ErrorCode::UNKNOWN_MEMBER_ID)
        );
    }

    /// One step of a scripted group scenario. Members are named by label;
    /// their member ids are whatever the group handed out.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// JoinGroup (v5 style: member id required first is off) with the
        /// member's id if it has one, optionally as a static member.
        Join(&'static str, Option<&'static str>),
        /// JoinGroup with a new member id for a static instance that is
        /// already in the group (the instance restarted).
        Rejoin(&'static str, &'static str),
        /// The member's JoinGroup is answered: (generation, is leader), or
        /// the error.
        Joined(&'static str, Result<(i32, bool), ErrorCode>),
        /// The member's JoinGroup is still waiting.
        JoinWaits(&'static str),
        /// SyncGroup at a generation (the leader sends one assignment per member).
        Sync(&'static str, i32),
        /// The member's SyncGroup is answered with this code.
        Synced(&'static str, ErrorCode),
        /// The assignment record is stored (or not).
        Stored(Result<(), ErrorCode>),
        Heartbeat(&'static str, i32, ErrorCode),
        Leave(&'static str, ErrorCode),
        /// Time passes.
        Wait(u64),
        Expect(GroupState, i32, usize),
    }

    struct Script {
        w: World,
        t0: Instant,
        at: Duration,
        ids: HashMap<&'static str, String>,
        joins: HashMap<&'static str, Reply<JoinResult>>,
        syncs: HashMap<&'static str, Reply<SyncResult>>,
    }

    impl Script {
        fn new() -> Script {
            let t0 = Instant::now();
            Script {
                w: World::new(t0),
                t0,
                at: Duration::ZERO,
                ids: HashMap::new(),
                joins: HashMap::new(),
                syncs: HashMap::new(),
            }
        }

        fn id(&self, who: &str) -> String {
            self.ids.get(who).cloned().unwrap_or_default()
        }

        fn join(&mut self, who: &'static str, member_id: String, instance: Option<&str>) {
            let mut req = request(&member_id, 6000, false);
            req.group_instance_id = instance.map(str::to_string);
            req.supports_skip_assignment = true;
            let reply = self.w.join(req);
            self.joins.insert(who, reply);
        }

        fn run(&mut self, steps: &[Step], scenario: &str) {
            for (i, step) in steps.iter().enumerate() {
                let at = format!("{scenario}, step {i}: {step:?}");
                match *step {
                    Step::Join(who, instance) => self.join(who, self.id(who), instance),
                    Step::Rejoin(who, instance) => self.join(who, String::new(), Some(instance)),
                    Step::Joined(who, expected) => {
                        let reply = self.joins.remove(who).expect(&at);
                        let result = self.w.answer(reply).expect(&at);
                        if result.error == ErrorCode::NONE {
                            self.ids.insert(who, result.member_id.clone());
                        }
                        let got = if result.error == ErrorCode::NONE {
                            Ok((result.generation, result.leader == result.member_id))
                        } else {
                            Err(result.error)
                        };
                        assert_eq!(got, expected, "{at}");
                    }
                    Step::JoinWaits(who) => match self.joins.get(who).expect(&at) {
                        Reply::Now(r) => panic!("{at}: answered at once with {r:?}"),
                        Reply::Later(w) => {
                            assert!(!self.w.joins.contains_key(w), "{at}: answered")
                        }
                    },
                    Step::Sync(who, generation) => {
                        let assignments = self
                            .w
                            .g
                            .members
                            .keys()
                            .map(|m| (m.clone(), Bytes::from(m.clone())))
                            .collect();
                        let id = self.id(who);
                        let reply = self.w.sync(&id, generation, assignments);
                        self.syncs.insert(who, reply);
                    }
                    Step::Synced(who, expected) => {
                        let reply = self.syncs.remove(who).expect(&at);
                        let result = self.w.sync_answer(reply).expect(&at);
                        assert_eq!(result.error, expected, "{at}");
                        if expected == ErrorCode::NONE {
                            assert_eq!(&result.assignment[..], self.id(who).as_bytes(), "{at}");
                        }
                    }
                    Step::Stored(result) => self.w.stored(result),
                    Step::Heartbeat(who, generation, expected) => {
                        let id = self.id(who);
                        let instance = self
                            .w
                            .g
                            .members
                            .get(&id)
                            .and_then(|m| m.group_instance_id.clone());
                        assert_eq!(
                            self.w.heartbeat(&id, instance.as_deref(), generation),
                            expected,
                            "{at}"
                        );
                    }
                    Step::Leave(who, expected) => {
                        let id = self.id(who);
                        assert_eq!(self.w.leave(&id), expected, "{at}");
                    }
                    Step::Wait(ms) => {
                        self.at += Duration::from_millis(ms);
                        self.w.wait_until(self.t0 + self.at);
                    }
                    Step::Expect(state, generation, members) => {
                        let g = &self.w.g;
                        assert_eq!(
                            (g.state, g.generation, g.members.len()),
                            (state, generation, members),
                            "{at}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn group_scenarios() {
        use ErrorCode as E;
        use GroupState::*;
        use Step::*;
        // A stable group of one: a, generation 1, leader.
        const ONE: &[Step] = &[
            Join("a", None),
            Joined("a", Ok((1, true))),
            Sync("a", 1),
            Stored(Ok(())),
            Synced("a", E::NONE),
            Expect(Stable, 1, 1),
        ];
        let scenarios: &[(&str, &[Step])] = &[
            ("one member joins and syncs", ONE),
            (
                "a second member makes the first rejoin; both get generation 2",
                &[
                    Join("b", None),
                    JoinWaits("b"),
                    Expect(PreparingRebalance, 1, 2),
                    Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                    Join("a", None),
                    Joined("a", Ok((2, true))),
                    Joined("b", Ok((2, false))),
                    Sync("b", 2),
                    Sync("a", 2),
                    Stored(Ok(())),
                    Synced("a", E::NONE),
                    Synced("b", E::NONE),
                    Expect(Stable, 2, 2),
                    Heartbeat("b", 2, E::NONE),
                ],
            ),
            (
                "generation fencing: an old generation is refused",
                &[
                    Heartbeat("a", 0, E::ILLEGAL_GENERATION),
                    Sync("a", 0),
                    Synced("a", E::ILLEGAL_GENERATION),
                    Heartbeat("nobody", 1, E::UNKNOWN_MEMBER_ID),
                    Heartbeat("a", 1, E::NONE),
                ],
            ),
            (
                "a member leaves; the group is empty at the next generation",
                &[
                    Leave("a", E::NONE),
                    Expect(Empty, 2, 0),
                    Heartbeat("a", 1, E::UNKNOWN_MEMBER_ID),
                    Leave("a", E::UNKNOWN_MEMBER_ID),
                ],
            ),
            (
                "a member that does not rejoin within the rebalance timeout is removed",
                &[
                    Join("b", None),
                    JoinWaits("b"),
                    // a keeps its session alive but never rejoins.
                    Wait(3000),
                    Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                    Wait(3000),
                    Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                    Wait(3000),
                    Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                    Wait(999),
                    JoinWaits("b"),
                    // The rebalance timeout (10 s) ends: a is out, b leads generation 2.
                    Wait(1),
                    Joined("b", Ok((2, true))),
                    Expect(CompletingRebalance, 2, 1),
                    Heartbeat("a", 2, E::UNKNOWN_MEMBER_ID),
                ],
            ),
            (
                "a member that stops heartbeating during a rebalance is removed at its session end",
                &[
                    Join("b", None),
                    JoinWaits("b"),
                    Wait(5999),
                    JoinWaits("b"),
                    Wait(1),
                    Joined("b", Ok((2, true))),
                    Expect(CompletingRebalance, 2, 1),
                ],
            ),
            (
                "a session that ends without heartbeats removes the member",
                &[
                    Wait(3000),
                    Heartbeat("a", 1, E::NONE),
                    Wait(5999),
                    Expect(Stable, 1, 1),
                    Wait(1),
                    Expect(Empty, 2, 0),
                ],
            ),
            (
                "the assignment record could not be stored: members rejoin",
                &[
                    Join("b", None),
                    Join("a", None),
                    Joined("a", Ok((2, true))),
                    Joined("b", Ok((2, false))),
                    Sync("b", 2),
                    Sync("a", 2),
                    Stored(Err(E::COORDINATOR_NOT_AVAILABLE)),
                    Synced("a", E::COORDINATOR_NOT_AVAILABLE),
                    Synced("b", E::COORDINATOR_NOT_AVAILABLE),
                    Expect(PreparingRebalance, 2, 2),
                ],
            ),
        ];
        for (name, steps) in scenarios {
            let mut script = Script::new();
            if !std::ptr::eq(*steps, ONE) {
                script.run(ONE, name);
            }
            script.run(steps, name);
        }
    }

    #[test]
    fn static_member_scenarios() {
        use ErrorCode as E;
        use GroupState::*;
        use Step::*;
        let mut script = Script::new();
        script.run(
            &[
                Join("a", Some("instance-a")),
                Joined("a", Ok((1, true))),
                Sync("a", 1),
                Stored(Ok(())),
                Synced("a", E::NONE),
            ],
            "static member joins",
        );
        let old_id = script.id("a");
        script.run(
            &[
                // The instance restarts and joins without its member id: it
                // replaces the old member without a rebalance.
                Rejoin("a", "instance-a"),
                Joined("a", Ok((1, true))),
                Expect(Stable, 1, 1),
            ],
            "static member restarts",
        );
        assert_ne!(script.id("a"), old_id, "a new member id");
        // The old incarnation is fenced.
        assert_eq!(
            script.w.heartbeat(&old_id, Some("instance-a"), 1),
            E::FENCED_INSTANCE_ID
        );
        script.run(
            &[Heartbeat("a", 1, E::NONE)],
            "the new incarnation heartbeats",
        );
        script.run(
            &[
                // A dynamic member joins; the static one keeps its session
                // alive but does not rejoin before the rebalance timeout.
                Join("b", None),
                JoinWaits("b"),
                Wait(3000),
                Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                Wait(3000),
                Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                Wait(3000),
                Heartbeat("a", 1, E::REBALANCE_IN_PROGRESS),
                Wait(1000),
                // Generation 2 keeps the static member; b, which rejoined, leads.
                Joined("b", Ok((2, true))),
                Expect(CompletingRebalance, 2, 2),
                Heartbeat("a", 1, E::ILLEGAL_GENERATION),
                // Its session, renewed when the generation completed, ends
                // without heartbeats: it goes, and b, heartbeating, stays.
                Wait(3000),
                Heartbeat("b", 2, E::NONE),
                Wait(3000),
                Expect(PreparingRebalance, 2, 1),
            ],
            "a static member that does not rejoin stays until its session ends",
        );
    }
}
