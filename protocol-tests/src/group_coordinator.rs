//! The consumer group coordinator's membership state machine (Kafka's classic
//! group protocol).
//!
//! `GroupCoordinator` owns every group's membership: members with their
//! protocols, session and rebalance timeouts, the generation, the leader, the
//! selected protocol and the assignments the leader handed out. It follows
//! Apache Kafka's `GroupCoordinator`: the states `Empty`,
//! `PreparingRebalance`, `CompletingRebalance` and `Stable`; member ids
//! required on a first JoinGroup from v4 (KIP-394); the initial rebalance
//! delay of an empty group (`group.initial.rebalance.delay.ms`, KIP-134);
//! static members (KIP-345) replacing their member id without a rebalance;
//! session expiry and the rebalance timeout; and the generation checks
//! OffsetCommit makes. It knows nothing of the wire: the handlers in
//! `handlers::membership` translate requests into calls here. JoinGroup and
//! SyncGroup answers that must wait are `Reply::Later`: a oneshot receiver
//! completed when the rebalance moves on, so the state itself is never awaited
//! under its mutex. `GroupCoordinator::tick` drives every deadline; the
//! cluster calls it before each request and every few milliseconds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A committed consumer group offset.
#[derive(Debug, Clone)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// How long a member awaiting its join may stay silent when it is new to the
/// group (Kafka's `NewMemberJoinTimeoutMs`).
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

const NONE: i16 = 0;
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
const FENCED_INSTANCE_ID: i16 = ResponseError::FencedInstanceId.code();
const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();

/// The state of a consumer group, as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPhase {
    /// No members (offsets may still be stored).
    Empty,
    /// A rebalance started: waiting for members to (re)join.
    PreparingRebalance,
    /// Members joined the new generation: waiting for the leader's assignment.
    CompletingRebalance,
    /// The assignment is handed out; members heartbeat.
    Stable,
}

/// One member as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberSnapshot {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client id of its JoinGroup.
    pub client_id: String,
    /// The protocol names it supports, in its order of preference.
    pub protocols: Vec<String>,
    /// Its session timeout.
    pub session_timeout: Duration,
    /// Its rebalance timeout (`max.poll.interval.ms` of a Java consumer).
    pub rebalance_timeout: Duration,
    /// The assignment the leader gave it in the current generation (raw
    /// bytes of the protocol's assignment; empty before the first sync).
    pub assignment: Bytes,
}

/// A consumer group as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The group id.
    pub group_id: String,
    /// The group's state.
    pub phase: GroupPhase,
    /// The current generation (0 before the first rebalance completes).
    pub generation: i32,
    /// The protocol type of its members (`consumer` for consumers).
    pub protocol_type: Option<String>,
    /// The protocol (assignor) selected for the current generation.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The members, in join order.
    pub members: Vec<GroupMemberSnapshot>,
    /// How many rebalances the group has started.
    pub rebalances: u64,
}

/// Coordinator settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(100),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
        }
    }
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// `(member id, group instance id, metadata)`: the leader's view only.
    pub members: Vec<(String, Option<String>, Bytes)>,
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(member_id: &str, error: i16) -> Self {
        Self {
            error,
            generation: -1,
            member_id: member_id.to_owned(),
            ..Self::default()
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: i16) -> Self {
        Self {
            error,
            ..Self::default()
        }
    }
}

/// An answer available now, or one the rebalance will deliver.
#[derive(Debug)]
pub(crate) enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// What a JoinGroup carries.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown dynamic member must rejoin with an id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the response can tell a leader to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// A member leaving: `(member id, group instance id)`.
pub(crate) type Leaving = (String, Option<String>);

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    is_new: bool,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Same protocols, names and metadata, in the same order.
    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn snapshot(&self) -> GroupMemberSnapshot {
        GroupMemberSnapshot {
            member_id: self.id.clone(),
            group_instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            protocols: self.protocols.iter().map(|(n, _)| n.clone()).collect(),
            session_timeout: self.session_timeout,
            rebalance_timeout: self.rebalance_timeout,
            assignment: self.assignment.clone(),
        }
    }

    /// Whether the member is still alive at `now`: waiting on a join or a
    /// sync keeps it alive, as in Kafka.
    fn alive(&self, now: Instant) -> bool {
        if self.awaiting_join.is_some() {
            return !self.is_new || now < self.last_heartbeat + NEW_MEMBER_JOIN_TIMEOUT;
        }
        self.awaiting_sync.is_some() || now < self.last_heartbeat + self.session_timeout
    }

    fn answer_join(&mut self, result: JoinResult) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(result);
        }
    }

    fn answer_sync(&mut self, result: SyncResult) {
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(result);
        }
    }
}

/// What the group persisted after its last completed rebalance (Kafka's
/// group metadata record), reloaded by a new coordinator.
#[derive(Debug, Clone)]
struct StoredGroup {
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: Vec<StoredMember>,
}

#[derive(Debug, Clone)]
struct StoredMember {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
}

/// The join phase's deadline: a regular rebalance waits at most the longest
/// rebalance timeout; the first rebalance of an empty group waits the initial
/// delay, extended while members keep arriving, up to the rebalance timeout.
#[derive(Debug, Clone, Copy)]
struct JoinDeadline {
    at: Instant,
    initial: Option<InitialDelay>,
}

#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining: Duration,
    member_added: bool,
}

#[derive(Debug)]
struct Group {
    id: String,
    phase: GroupPhase,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, Instant>,
    join_deadline: Option<JoinDeadline>,
    /// Members of the new generation that have not sent SyncGroup, and
    /// when they are dropped for it.
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
    rebalances: u64,
    stored: Option<StoredGroup>,
    /// `group.initial.rebalance.delay.ms` in force.
    initial_delay: Duration,
}

impl Group {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            phase: GroupPhase::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            join_deadline: None,
            pending_sync: HashSet::new(),
            sync_deadline: None,
            rebalances: 0,
            stored: None,
            initial_delay: GroupConfig::default().initial_rebalance_delay,
        }
    }

    fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            group_id: self.id.clone(),
            phase: self.phase,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self.members.values().map(Member::snapshot).collect(),
            rebalances: self.rebalances,
        }
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// A static member presenting a member id other than the one its
    /// instance id is bound to.
    fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    /// Kafka's `validateCurrentMember`: the instance id (if any) maps to
    /// this member id, and the member exists.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Some(FENCED_INSTANCE_ID),
                Some(_) => {}
                None => return Some(UNKNOWN_MEMBER_ID),
            }
        }
        (!self.members.contains_key(member_id)).then_some(UNKNOWN_MEMBER_ID)
    }

    /// The protocols every member supports, in the first member's order.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(p, _)| p == c))
    }

    /// Kafka's protocol selection: every member votes for the first protocol
    /// of its own list that all members support; the most voted wins (ties
    /// go to the earlier candidate).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            if let Some(index) = member
                .protocols
                .iter()
                .find_map(|(p, _)| candidates.iter().position(|c| c == p))
            {
                votes[index] += 1;
            }
        }
        let mut best: Option<usize> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|b| *v > votes[b]) {
                best = Some(i);
            }
        }
        best.map(|i| candidates[i].clone())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// The leader's (or a follower's) answer for the current generation.
    fn join_result(&self, member_id: &str, leader_view: bool) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResult {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if leader_view {
                self.members
                    .values()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn store(&mut self) {
        self.stored = Some(StoredGroup {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocol_type: m.protocol_type.clone(),
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        });
    }

    fn add_member(
        &mut self,
        request: &JoinRequest,
        member_id: String,
        now: Instant,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: request.group_instance_id.clone(),
                client_id: request.client_id.clone(),
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocol_type: request.protocol_type.clone(),
                protocols: request.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: Some(tx),
                awaiting_sync: None,
                is_new: true,
            },
        );
        if let Some(JoinDeadline {
            initial: Some(initial),
            ..
        }) = self.join_deadline.as_mut()
        {
            initial.member_added = true;
        }
        if self.phase == GroupPhase::PreparingRebalance {
            self.try_complete_join(now, false);
        } else {
            self.prepare_rebalance(now);
        }
        Reply::Later(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        member_id: &str,
        request: &JoinRequest,
        now: Instant,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(member) = self.members.get_mut(member_id) {
            member.protocols = request.protocols.clone();
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = request.rebalance_timeout;
            member.last_heartbeat = now;
            // A repeated JoinGroup replaces the waiting one, whose request
            // is answered as a rebalance in progress.
            member.answer_join(JoinResult::error(member_id, REBALANCE_IN_PROGRESS));
            member.awaiting_join = Some(tx);
        }
        if self.phase == GroupPhase::PreparingRebalance {
            self.try_complete_join(now, false);
        } else {
            self.prepare_rebalance(now);
        }
        Reply::Later(rx)
    }

    /// Starts a rebalance (Kafka's `prepareRebalance`).
    fn prepare_rebalance(&mut self, now: Instant) {
        if self.phase == GroupPhase::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                member.answer_sync(SyncResult::error(REBALANCE_IN_PROGRESS));
            }
        }
        let rebalance_timeout = self.max_rebalance_timeout();
        self.join_deadline = Some(if self.phase == GroupPhase::Empty {
            JoinDeadline {
                at: now + self.initial_delay,
                initial: Some(InitialDelay {
                    remaining: rebalance_timeout.saturating_sub(self.initial_delay),
                    member_added: false,
                }),
            }
        } else {
            JoinDeadline {
                at: now + rebalance_timeout,
                initial: None,
            }
        });
        self.pending_sync.clear();
        self.sync_deadline = None;
        self.phase = GroupPhase::PreparingRebalance;
        self.rebalances += 1;
        // Everyone may already be waiting (or nobody is left).
        self.try_complete_join(now, false);
    }

    /// Completes the join phase when everyone has joined (or the deadline
    /// has passed, when `expired`).
    fn try_complete_join(&mut self, now: Instant, expired: bool) {
        if self.phase != GroupPhase::PreparingRebalance {
            return;
        }
        let Some(deadline) = self.join_deadline else {
            return;
        };
        if let Some(initial) = deadline.initial {
            // The initial delay never completes early; members arriving
            // during it extend it, up to the rebalance timeout.
            if !expired {
                return;
            }
            if initial.member_added && !initial.remaining.is_zero() {
                let delay = self.initial_delay.min(initial.remaining);
                self.join_deadline = Some(JoinDeadline {
                    at: now + delay,
                    initial: Some(InitialDelay {
                        remaining: initial.remaining - delay,
                        member_added: false,
                    }),
                });
                return;
            }
        } else {
            let all_joined =
                self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
            if !all_joined && !expired {
                return;
            }
        }
        self.complete_join(now);
    }

    /// Kafka's `onCompleteJoin`: drops members that did not rejoin, starts
    /// the next generation and answers every waiting JoinGroup.
    fn complete_join(&mut self, now: Instant) {
        self.join_deadline = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.phase = GroupPhase::Empty;
            self.store();
            return;
        }
        self.protocol_name = self.select_protocol();
        self.phase = GroupPhase::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let result = self.join_result(id, self.is_leader(id));
            let member = self.members.get_mut(id).expect("member");
            member.is_new = false;
            member.last_heartbeat = now;
            member.answer_join(result);
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
    }

    /// Removes a member from the maps (no rebalance); answers its waiting
    /// requests with UNKNOWN_MEMBER_ID and picks a new leader if needed.
    fn remove_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.shift_remove(member_id) else {
            return;
        };
        member.answer_join(JoinResult::error(member_id, UNKNOWN_MEMBER_ID));
        member.answer_sync(SyncResult::error(UNKNOWN_MEMBER_ID));
        if let Some(instance) = &member.instance_id
            && self
                .static_members
                .get(instance)
                .is_some_and(|id| id == member_id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = None;
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member_and_update(&mut self, member_id: &str, now: Instant) {
        self.remove_member(member_id);
        match self.phase {
            GroupPhase::Stable | GroupPhase::CompletingRebalance => self.prepare_rebalance(now),
            GroupPhase::PreparingRebalance => self.try_complete_join(now, false),
            GroupPhase::Empty => {}
        }
    }

    fn tick(&mut self, now: Instant) {
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending.remove(&id);
            self.try_complete_join(now, false);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.alive(now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(&id, now);
        }
        if self.join_deadline.is_some_and(|d| now >= d.at) {
            self.try_complete_join(now, true);
        }
        if self.sync_deadline.is_some_and(|at| now >= at) {
            self.sync_deadline = None;
            let laggards: Vec<String> = self.pending_sync.drain().collect();
            if matches!(
                self.phase,
                GroupPhase::CompletingRebalance | GroupPhase::Stable
            ) && !laggards.is_empty()
            {
                for id in &laggards {
                    self.remove_member(id);
                }
                self.prepare_rebalance(now);
            }
        }
    }
}

/// Every group's membership, and the coordinator settings.
#[derive(Debug, Default)]
pub(crate) struct GroupCoordinator {
    pub config: GroupConfig,
    groups: HashMap<String, Group>,
}

/// Member ids handed out so far, over every cluster of the process.
static MEMBER_IDS: AtomicU64 = AtomicU64::new(0);

/// SplitMix64: spreads a counter over 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Generates a member id: the client id, a dash and a version 4 UUID, as
/// Kafka does (unique within the process rather than random).
fn new_member_id(client_id: &str) -> String {
    let n = MEMBER_IDS.fetch_add(1, Ordering::Relaxed);
    let (hi, lo) = (mix(n), mix(n ^ 0x5555_5555_5555_5555));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    format!("{client_id}-{id}")
}

impl GroupCoordinator {
    /// Handles a JoinGroup (Kafka's `handleJoinGroup`).
    pub fn join(
        &mut self,
        group_id: &str,
        request: JoinRequest,
        now: Instant,
    ) -> Reply<JoinResult> {
        let fail = |e| Reply::Now(JoinResult::error(&request.member_id, e));
        if group_id.is_empty() {
            return fail(INVALID_GROUP_ID);
        }
        if request.session_timeout < self.config.min_session_timeout
            || request.session_timeout > self.config.max_session_timeout
        {
            return fail(INVALID_SESSION_TIMEOUT);
        }
        let unknown = request.member_id.is_empty();
        if !unknown && !self.groups.contains_key(group_id) {
            return fail(UNKNOWN_MEMBER_ID);
        }
        let initial_delay = self.config.initial_rebalance_delay;
        let group = self
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id));
        group.initial_delay = initial_delay;
        if !group.supports_protocols(&request.protocol_type, &request.protocols) {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        if unknown {
            Self::join_unknown(group, request, now)
        } else {
            Self::join_known(group, request, now)
        }
    }

    fn join_unknown(group: &mut Group, request: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let new_id = new_member_id(&request.client_id);
        let static_old = request
            .group_instance_id
            .as_ref()
            .and_then(|i| group.static_members.get(i).cloned());
        if let Some(old_id) = static_old {
            return Self::replace_static_member(group, &old_id, new_id, request, now);
        }
        if request.group_instance_id.is_none() && request.require_known_member_id {
            group
                .pending
                .insert(new_id.clone(), now + request.session_timeout);
            return Reply::Now(JoinResult::error(&new_id, MEMBER_ID_REQUIRED));
        }
        group.add_member(&request, new_id, now)
    }

    /// KIP-345: a static member restarted with a new member id takes over
    /// the old one; the old id is fenced from now on.
    fn replace_static_member(
        group: &mut Group,
        old_id: &str,
        new_id: String,
        request: JoinRequest,
        now: Instant,
    ) -> Reply<JoinResult> {
        let previous_leader = group.leader.clone();
        let Some(mut member) = group.members.shift_remove(old_id) else {
            return Reply::Now(JoinResult::error("", UNKNOWN_MEMBER_ID));
        };
        member.answer_join(JoinResult::error(old_id, FENCED_INSTANCE_ID));
        member.answer_sync(SyncResult::error(FENCED_INSTANCE_ID));
        member.protocols = request.protocols.clone();
        member.id = new_id.clone();
        member.client_id = request.client_id.clone();
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.last_heartbeat = now;
        member.is_new = false;
        group.members.insert(new_id.clone(), member);
        if let Some(instance) = &request.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        if group.is_leader(old_id) {
            group.leader = Some(new_id.clone());
        }
        if group.pending_sync.remove(old_id) {
            group.pending_sync.insert(new_id.clone());
        }
        if group.phase == GroupPhase::Stable
            && group.protocol_name.is_some()
            && group.select_protocol() == group.protocol_name
        {
            // No rebalance: the member gets its previous assignment on
            // SyncGroup. Before JoinGroup v9 the answer names the previous
            // leader id so that a returning leader does not reassign; from
            // v9 the leader is told to skip the assignment.
            group.store();
            let is_leader = group.is_leader(&new_id);
            let mut result = if request.supports_skip_assignment {
                let mut r = group.join_result(&new_id, is_leader);
                r.skip_assignment = is_leader;
                r
            } else {
                let mut r = group.join_result(&new_id, false);
                r.leader = previous_leader.unwrap_or_default();
                r
            };
            result.member_id = new_id;
            return Reply::Now(result);
        }
        group.update_member_and_rebalance(&new_id, &request, now)
    }

    fn join_known(group: &mut Group, request: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let member_id = request.member_id.clone();
        if group.pending.remove(&member_id).is_some() {
            return group.add_member(&request, member_id, now);
        }
        let instance = request.group_instance_id.as_deref();
        if group.is_fenced(&member_id, instance) {
            return Reply::Now(JoinResult::error(&member_id, FENCED_INSTANCE_ID));
        }
        let instance_unknown = instance.is_some_and(|i| !group.static_members.contains_key(i));
        if !group.members.contains_key(&member_id) || instance_unknown {
            return Reply::Now(JoinResult::error(&member_id, UNKNOWN_MEMBER_ID));
        }
        let (matches, is_leader) = (
            group.members[&member_id].matches(&request.protocols),
            group.is_leader(&member_id),
        );
        match group.phase {
            GroupPhase::PreparingRebalance => {
                group.update_member_and_rebalance(&member_id, &request, now)
            }
            GroupPhase::CompletingRebalance if matches => {
                // A repeated JoinGroup (its answer was lost): the current
                // generation again.
                Reply::Now(group.join_result(&member_id, is_leader))
            }
            GroupPhase::Stable if matches && !is_leader => {
                Reply::Now(group.join_result(&member_id, false))
            }
            GroupPhase::CompletingRebalance | GroupPhase::Stable => {
                group.update_member_and_rebalance(&member_id, &request, now)
            }
            GroupPhase::Empty => Reply::Now(JoinResult::error(&member_id, UNKNOWN_MEMBER_ID)),
        }
    }

    /// Handles a SyncGroup (Kafka's `handleSyncGroup`). `assignments` are
    /// the leader's `(member id, assignment)`.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResult> {
        let fail = |e| Reply::Now(SyncResult::error(e));
        let Some(group) = self.groups.get_mut(group_id) else {
            return fail(UNKNOWN_MEMBER_ID);
        };
        if group.is_fenced(member_id, instance_id) {
            return fail(FENCED_INSTANCE_ID);
        }
        if !group.members.contains_key(member_id) {
            return fail(UNKNOWN_MEMBER_ID);
        }
        if generation != group.generation {
            return fail(ILLEGAL_GENERATION);
        }
        let mismatch = |asked: Option<&str>, have: &Option<String>| {
            asked.is_some_and(|a| have.as_deref().is_some_and(|h| h != a))
        };
        if mismatch(protocol_type, &group.protocol_type)
            || mismatch(protocol_name, &group.protocol_name)
        {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        match group.phase {
            GroupPhase::Empty => fail(UNKNOWN_MEMBER_ID),
            GroupPhase::PreparingRebalance => fail(REBALANCE_IN_PROGRESS),
            GroupPhase::Stable => {
                group.pending_sync.remove(member_id);
                let member = group.members.get_mut(member_id).expect("member");
                member.last_heartbeat = now;
                let assignment = member.assignment.clone();
                Reply::Now(SyncResult {
                    error: NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                })
            }
            GroupPhase::CompletingRebalance => {
                group.pending_sync.remove(member_id);
                let (tx, rx) = oneshot::channel();
                {
                    let member = group.members.get_mut(member_id).expect("member");
                    member.last_heartbeat = now;
                    member.answer_sync(SyncResult::error(REBALANCE_IN_PROGRESS));
                    member.awaiting_sync = Some(tx);
                }
                if group.is_leader(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for member in group.members.values_mut() {
                        member.assignment = by_member.remove(&member.id).unwrap_or_default();
                    }
                    group.store();
                    group.phase = GroupPhase::Stable;
                    let (ptype, pname) = (group.protocol_type.clone(), group.protocol_name.clone());
                    for member in group.members.values_mut() {
                        let result = SyncResult {
                            error: NONE,
                            protocol_type: ptype.clone(),
                            protocol_name: pname.clone(),
                            assignment: member.assignment.clone(),
                        };
                        member.answer_sync(result);
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    /// Handles a Heartbeat; returns its error code.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if let Some(error) = group.validate_member(member_id, instance_id) {
            return error;
        }
        if generation != group.generation {
            return ILLEGAL_GENERATION;
        }
        let member = group.members.get_mut(member_id).expect("member");
        member.last_heartbeat = now;
        match group.phase {
            GroupPhase::PreparingRebalance => REBALANCE_IN_PROGRESS,
            GroupPhase::CompletingRebalance | GroupPhase::Stable => NONE,
            GroupPhase::Empty => UNKNOWN_MEMBER_ID,
        }
    }

    /// Handles a LeaveGroup; returns each leaving member's error code.
    pub fn leave(&mut self, group_id: &str, leaving: &[Leaving], now: Instant) -> Vec<i16> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return vec![UNKNOWN_MEMBER_ID; leaving.len()];
        };
        leaving
            .iter()
            .map(|(member_id, instance_id)| {
                if let Some(instance) = instance_id {
                    match group.static_members.get(instance).cloned() {
                        None => UNKNOWN_MEMBER_ID,
                        Some(current) if !member_id.is_empty() && &current != member_id => {
                            FENCED_INSTANCE_ID
                        }
                        Some(current) => {
                            group.remove_member_and_update(&current, now);
                            NONE
                        }
                    }
                } else if group.pending.remove(member_id).is_some() {
                    group.try_complete_join(now, false);
                    NONE
                } else if group.members.contains_key(member_id) {
                    group.remove_member_and_update(member_id, now);
                    NONE
                } else {
                    UNKNOWN_MEMBER_ID
                }
            })
            .collect()
    }

    /// Kafka's checks of an OffsetCommit's generation, member id and group
    /// instance id. `has_offsets`: the group exists through committed
    /// offsets alone. `None` lets the commit through.
    pub fn validate_commit(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        has_offsets: bool,
        now: Instant,
    ) -> Option<i16> {
        let membership = generation >= 0 || !member_id.is_empty() || instance_id.is_some();
        let Some(group) = self.groups.get_mut(group_id) else {
            // No group state: an empty group if offsets exist, else none at
            // all, where a generation-aware commit is from a past generation.
            return match (membership, has_offsets) {
                (false, _) => None,
                (true, true) => Some(UNKNOWN_MEMBER_ID),
                (true, false) if generation >= 0 => Some(ILLEGAL_GENERATION),
                (true, false) => Some(UNKNOWN_MEMBER_ID),
            };
        };
        if !membership {
            // Only an empty group takes commits from outside the group.
            return (group.phase != GroupPhase::Empty).then_some(UNKNOWN_MEMBER_ID);
        }
        if let Some(error) = group.validate_member(member_id, instance_id) {
            return Some(error);
        }
        if generation != group.generation {
            return Some(ILLEGAL_GENERATION);
        }
        match group.phase {
            GroupPhase::CompletingRebalance => Some(REBALANCE_IN_PROGRESS),
            _ => {
                if let Some(member) = group.members.get_mut(member_id) {
                    member.last_heartbeat = now;
                }
                None
            }
        }
    }

    /// Runs every deadline that has passed: pending member ids, sessions,
    /// join phases and syncs.
    pub fn tick(&mut self, now: Instant) {
        for group in self.groups.values_mut() {
            group.tick(now);
        }
    }

    /// The coordinator moved (Kafka's unload then load on another broker):
    /// waiting requests are answered NOT_COORDINATOR, the rebalance in
    /// progress is lost, and the group restarts from what it stored after
    /// its last completed rebalance, every member's session starting now.
    pub fn fail_over(&mut self, group_id: &str, now: Instant) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        for member in group.members.values_mut() {
            member.answer_join(JoinResult::error(&member.id.clone(), NOT_COORDINATOR));
            member.answer_sync(SyncResult::error(NOT_COORDINATOR));
        }
        let mut fresh = Group::new(group_id);
        fresh.rebalances = group.rebalances;
        fresh.initial_delay = group.initial_delay;
        if let Some(stored) = group.stored.take() {
            fresh.generation = stored.generation;
            fresh.protocol_type = stored.protocol_type.clone();
            fresh.protocol_name = stored.protocol_name.clone();
            fresh.leader = stored.leader.clone();
            for m in &stored.members {
                if let Some(instance) = &m.instance_id {
                    fresh.static_members.insert(instance.clone(), m.id.clone());
                }
                fresh.members.insert(
                    m.id.clone(),
                    Member {
                        id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        session_timeout: m.session_timeout,
                        rebalance_timeout: m.rebalance_timeout,
                        protocol_type: m.protocol_type.clone(),
                        protocols: m.protocols.clone(),
                        assignment: m.assignment.clone(),
                        last_heartbeat: now,
                        awaiting_join: None,
                        awaiting_sync: None,
                        is_new: false,
                    },
                );
            }
            fresh.phase = if fresh.members.is_empty() {
                GroupPhase::Empty
            } else {
                GroupPhase::Stable
            };
            fresh.stored = Some(stored);
        }
        *group = fresh;
    }

    /// Drops every member of the group, as a coordinator that lost the
    /// group's metadata would: the group is empty (generation kept), waiting
    /// requests and later ones from the old members get UNKNOWN_MEMBER_ID.
    pub fn forget_members(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            group.remove_member(&id);
        }
        group.pending.clear();
        group.pending_sync.clear();
        group.join_deadline = None;
        group.sync_deadline = None;
        group.phase = GroupPhase::Empty;
        group.leader = None;
        group.protocol_name = None;
        group.store();
    }

    /// The group's state, if it ever had a member.
    pub fn snapshot(&self, group_id: &str) -> Option<GroupSnapshot> {
        self.groups.get(group_id).map(Group::snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(member: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member.to_owned(),
            group_instance_id: None,
            client_id: "c".to_owned(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".to_owned(),
            protocols: protocols
                .iter()
                .map(|p| ((*p).to_owned(), Bytes::from_static(b"m")))
                .collect(),
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    fn later(reply: Reply<JoinResult>) -> oneshot::Receiver<JoinResult> {
        match reply {
            Reply::Later(rx) => rx,
            Reply::Now(r) => panic!("answered at once: {r:?}"),
        }
    }

    /// Joins members with these protocol lists and completes the join
    /// phase; returns the selected protocol.
    fn selected(members: &[&[&str]]) -> Option<String> {
        let mut coordinator = GroupCoordinator::default();
        let now = Instant::now();
        let mut waiting: Vec<_> = members
            .iter()
            .map(|p| later(coordinator.join("g", request("", p), now)))
            .collect();
        // Members arriving during the initial delay extend it once more.
        coordinator.tick(now + Duration::from_secs(1));
        coordinator.tick(now + Duration::from_secs(2));
        let results: Vec<JoinResult> = waiting
            .iter_mut()
            .map(|rx| rx.try_recv().unwrap())
            .collect();
        assert!(results.iter().all(|r| r.error == NONE));
        assert_eq!(results.iter().filter(|r| !r.members.is_empty()).count(), 1);
        results[0].protocol_name.clone()
    }

    #[test]
    fn protocol_is_chosen_by_the_members_votes_among_common_ones() {
        assert_eq!(
            selected(&[
                &["range", "roundrobin"],
                &["roundrobin", "range"],
                &["roundrobin"]
            ]),
            Some("roundrobin".to_owned()),
            "range is not supported by every member"
        );
        assert_eq!(
            selected(&[
                &["range", "roundrobin"],
                &["roundrobin", "range"],
                &["range", "sticky", "roundrobin"]
            ]),
            Some("range".to_owned()),
            "two votes for range, one for roundrobin"
        );
    }

    #[test]
    fn joins_without_a_common_protocol_or_a_valid_session_are_refused() {
        let mut coordinator = GroupCoordinator::default();
        let now = Instant::now();
        let _first = later(coordinator.join("g", request("", &["range"]), now));
        let Reply::Now(r) = coordinator.join("g", request("", &["roundrobin"]), now) else {
            panic!("answered at once");
        };
        assert_eq!(r.error, INCONSISTENT_GROUP_PROTOCOL);
        let mut other_type = request("", &["range"]);
        other_type.protocol_type = "connect".to_owned();
        let Reply::Now(r) = coordinator.join("g", other_type, now) else {
            panic!("answered at once");
        };
        assert_eq!(r.error, INCONSISTENT_GROUP_PROTOCOL);
        let mut short = request("", &["range"]);
        short.session_timeout = Duration::from_secs(1);
        let Reply::Now(r) = coordinator.join("g", short, now) else {
            panic!("answered at once");
        };
        assert_eq!(r.error, INVALID_SESSION_TIMEOUT);
    }

    #[test]
    fn a_member_that_stops_heartbeating_is_removed_and_the_group_rebalances() {
        let mut coordinator = GroupCoordinator::default();
        let t0 = Instant::now();
        let mut a = later(coordinator.join("g", request("", &["range"]), t0));
        let mut b = later(coordinator.join("g", request("", &["range"]), t0));
        coordinator.tick(t0 + Duration::from_millis(500));
        coordinator.tick(t0 + Duration::from_secs(1));
        let (a, b) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert_eq!((a.generation, b.generation), (1, 1));
        let leader_sync = |c: &mut GroupCoordinator, now| {
            c.sync("g", 1, &a.member_id, None, None, None, Vec::new(), now)
        };
        assert!(matches!(
            leader_sync(&mut coordinator, t0 + Duration::from_secs(1)),
            Reply::Later(_)
        ));
        let t1 = t0 + Duration::from_secs(8);
        assert_eq!(coordinator.heartbeat("g", 1, &a.member_id, None, t1), NONE);
        coordinator.tick(t0 + Duration::from_secs(12));
        let g = coordinator.snapshot("g").unwrap();
        assert_eq!(g.members.len(), 1, "b's session ran out");
        assert_eq!(g.phase, GroupPhase::PreparingRebalance);
        assert_eq!(
            coordinator.heartbeat("g", 1, &a.member_id, None, t0 + Duration::from_secs(12)),
            REBALANCE_IN_PROGRESS
        );
        assert_eq!(
            coordinator.heartbeat("g", 1, &b.member_id, None, t0 + Duration::from_secs(12)),
            UNKNOWN_MEMBER_ID
        );
    }
}
