//! The transactional producer's state machine ([KIP-98], with the
//! consumer-group fencing of [KIP-447]): which transactional requests go
//! out (FindCoordinator, InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn), what each answer means, and
//! which partitions may send records. Sans-IO like the rest of the engine:
//! time is passed in, requests come out of [`Transactions::poll_request`],
//! answers go into [`Transactions::handle_answer`].
//!
//! [KIP-98]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-98+-+Exactly+Once+Delivery+and+Transactional+Messaging
//! [KIP-447]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-447%3A+Producer+scalability+for+exactly+once+semantics
//!
//! ```text
//!   Uninitialised ──init──► Initialising ──InitProducerId ok──► Ready ◄──────────────┐
//!                          (FindCoordinator,                     │ begin              │
//!                           InitProducerId)                      ▼                    │
//!                                        ┌──────────────── InTransaction              │
//!            a record or an add fails,   │  records: AddPartitionsToTxn first, then   │
//!            OUT_OF_ORDER_SEQUENCE, ...  │  Produce; offsets: AddOffsetsToTxn, then   │
//!                                        ▼  TxnOffsetCommit to the group coordinator  │
//!                                   Abortable ◄───── Committing ──EndTxn(commit) ok───┤
//!                                        │ abort     (flush, then EndTxn; an          │
//!                                        ▼            unknown outcome waits for a     │
//!                                     Aborting        retry of the same commit)       │
//!                (unsent records fail, in-flight ones finish, EndTxn(abort) if        │
//!                 anything was added; then an epoch bump when sequences need one) ────┘
//!
//!   any state ── PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//!                INVALID_TXN_STATE ──► Fatal (every later call fails)
//! ```
//!
//! Rules the engine relies on:
//!
//! * A partition sends records only once AddPartitionsToTxn has added it
//!   ([`Transactions::may_send`]); adds are batched (one request at a time,
//!   carrying every partition that turned up meanwhile) and run alongside
//!   Produce requests for partitions already added.
//! * The epoch never moves mid-transaction: a sequence error makes the
//!   transaction abortable, and the bump happens after the abort (KIP-360).
//! * Coordinator errors (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
//!   COORDINATOR_LOAD_IN_PROGRESS) or a lost connection look the
//!   coordinator up again and resend; CONCURRENT_TRANSACTIONS resends after
//!   a short backoff.
//! * EndTxn whose outcome is unknown (no answer, a timeout, an unknown server
//!   error) is never reported as done: the call fails with a retriable
//!   timeout, and only the same call again (it resends EndTxn) completes
//!   the transaction.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::idempotence::ProducerIdentity;
use crate::error::{Error, ErrorKind};
use crate::group::{ConsumerGroupMetadata, OffsetToCommit};
use crate::protocol::KafkaCode;

/// How long to wait before resending after CONCURRENT_TRANSACTIONS (the
/// coordinator is still finishing the previous transaction).
const CONCURRENT_BACKOFF: Duration = Duration::from_millis(20);

/// A call on the transactional API, as the engine receives it.
#[derive(Debug, Clone)]
pub(crate) enum TxnOp {
    /// `init_transactions`: find the coordinator, take the producer id
    /// (fencing older producers with the same transactional id).
    Init,
    /// `begin_transaction`.
    Begin,
    /// `send_offsets_to_transaction`.
    SendOffsets {
        offsets: Vec<OffsetToCommit>,
        group: ConsumerGroupMetadata,
    },
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

impl TxnOp {
    /// The API method this call is, for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            TxnOp::Init => "init_transactions",
            TxnOp::Begin => "begin_transaction",
            TxnOp::SendOffsets { .. } => "send_offsets_to_transaction",
            TxnOp::Commit => "commit_transaction",
            TxnOp::Abort => "abort_transaction",
        }
    }

    fn same_kind(&self, other: &TxnOp) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Which coordinator a FindCoordinator request looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoordinatorKind {
    /// The transaction coordinator of the transactional id (key type 1).
    Transaction,
    /// The group coordinator of a consumer group (key type 0).
    Group,
}

/// A transactional request for the I/O layer to send (it adds the
/// transactional id and builds the wire message).
#[derive(Debug, Clone)]
pub(crate) enum TxnRequest {
    /// FindCoordinator, to any broker.
    FindCoordinator { kind: CoordinatorKind, key: String },
    /// InitProducerId with the transactional id: `(-1, -1)` for a new
    /// epoch of whatever id the coordinator holds, or the identity to bump
    /// (KIP-360).
    InitProducerId {
        timeout_ms: i32,
        producer_id: i64,
        epoch: i16,
    },
    /// AddPartitionsToTxn, topics with their partitions.
    AddPartitions {
        identity: ProducerIdentity,
        partitions: Vec<(String, Vec<i32>)>,
    },
    /// AddOffsetsToTxn for a group.
    AddOffsets {
        identity: ProducerIdentity,
        group_id: String,
    },
    /// TxnOffsetCommit, to the group's coordinator.
    TxnOffsetCommit {
        identity: ProducerIdentity,
        group: ConsumerGroupMetadata,
        offsets: Vec<OffsetToCommit>,
    },
    /// EndTxn: commit or abort.
    EndTxn {
        identity: ProducerIdentity,
        commit: bool,
    },
}

/// A decoded answer to a [`TxnRequest`].
#[derive(Debug, Clone)]
pub(crate) enum TxnAnswer {
    /// FindCoordinator: error code, node id and address.
    Coordinator { code: i16, node: i32, addr: String },
    /// InitProducerId: error code, producer id, epoch.
    ProducerId {
        code: i16,
        producer_id: i64,
        epoch: i16,
    },
    /// AddPartitionsToTxn and TxnOffsetCommit: a code per partition.
    Partitions(Vec<(String, i32, i16)>),
    /// AddOffsetsToTxn and EndTxn: one code.
    Code(i16),
}

/// A request the engine should send now.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Where: the coordinator (node id and address) or, `None`, any broker.
    pub(crate) node: Option<(i32, String)>,
    pub(crate) request: TxnRequest,
}

/// What an answer changed, for the engine to act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxnEffect {
    /// Nothing beyond the state machine.
    None,
    /// Batches go out under this identity from now on (a new producer id or
    /// epoch: every partition's sequences start again at 0).
    Identity(ProducerIdentity),
    /// The producer is finished (fenced or not authorised).
    Fatal,
}

/// The partitions of the open transaction and where their adds stand.
#[derive(Debug, Default)]
struct Txn {
    /// Added by the coordinator: their records may be sent.
    added: PartitionSet,
    /// In the AddPartitionsToTxn request in flight.
    adding: PartitionSet,
    /// Records arrived for these; they go in the next add.
    wanted: PartitionSet,
    /// AddOffsetsToTxn succeeded: EndTxn is needed even with no partition.
    offsets_added: bool,
    /// A `send_offsets_to_transaction` in progress.
    offsets: Option<OffsetCommit>,
}

impl Txn {
    fn anything_added(&self) -> bool {
        !self.added.is_empty() || self.offsets_added
    }
}

/// Partitions by topic. Looked up by `&str` for every record and every
/// drained partition, so a lookup allocates nothing.
#[derive(Debug, Default)]
struct PartitionSet(BTreeMap<String, BTreeSet<i32>>);

impl PartitionSet {
    fn contains(&self, topic: &str, partition: i32) -> bool {
        self.0.get(topic).is_some_and(|ps| ps.contains(&partition))
    }

    fn insert(&mut self, topic: &str, partition: i32) {
        match self.0.get_mut(topic) {
            Some(ps) => {
                ps.insert(partition);
            }
            None => {
                self.0
                    .insert(topic.to_string(), BTreeSet::from([partition]));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn extend(&mut self, other: PartitionSet) {
        for (topic, partitions) in other.0 {
            self.0.entry(topic).or_default().extend(partitions);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, i32)> {
        self.0
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
    }
}

#[derive(Debug)]
struct OffsetCommit {
    group: ConsumerGroupMetadata,
    offsets: Vec<OffsetToCommit>,
}

/// Where a commit or abort stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndPhase {
    /// Waiting for the transaction's records (and adds) to settle.
    Flushing,
    /// EndTxn is in flight (or about to be resent).
    Ending,
    /// EndTxn got no clear answer: only the same call again resends it.
    Unknown,
}

/// The transactional state machine's states (see the module diagram).
#[derive(Debug)]
enum State {
    Uninitialised,
    Initialising {
        /// The identity to bump from (KIP-360) after an abort, if any.
        bump: Option<ProducerIdentity>,
    },
    Ready,
    InTransaction(Txn),
    Committing(Txn, EndPhase),
    Aborting(Txn, EndPhase),
    Abortable(Txn, Error),
    Fatal(Error),
}

/// What the request in flight was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    FindCoordinator(CoordinatorKind),
    InitProducerId,
    AddPartitions,
    AddOffsets,
    TxnOffsetCommit,
    EndTxn,
}

/// The transactional producer's state machine.
#[derive(Debug)]
pub(crate) struct Transactions {
    transactional_id: String,
    timeout: Duration,
    backoff: Duration,
    state: State,
    identity: Option<ProducerIdentity>,
    /// The transaction coordinator, once found.
    coordinator: Option<(i32, String)>,
    /// Group coordinators, by group id.
    group_coordinators: BTreeMap<String, (i32, String)>,
    /// One transactional request at a time: its id and kind.
    in_flight: Option<(u64, Sent)>,
    /// No request before this instant (backoff).
    not_before: Option<Instant>,
    /// The call waiting for completion: its id and what it was.
    op: Option<(u64, TxnOp)>,
    /// Calls completed, for the engine to report.
    done: VecDeque<(u64, Result<(), Error>)>,
    /// Calls waiting for the one in progress.
    queued: VecDeque<(u64, TxnOp)>,
    /// An abort started: the engine fails the unsent records.
    abort_started: bool,
    /// The abort must bump the epoch (a sequence error, or a failed batch
    /// that held sequences): the next transaction numbers afresh.
    bump_after_abort: bool,
}

impl Transactions {
    pub(crate) fn new(transactional_id: String, timeout: Duration, backoff: Duration) -> Self {
        Transactions {
            transactional_id,
            timeout,
            backoff,
            state: State::Uninitialised,
            identity: None,
            coordinator: None,
            group_coordinators: BTreeMap::new(),
            in_flight: None,
            not_before: None,
            op: None,
            done: VecDeque::new(),
            queued: VecDeque::new(),
            abort_started: false,
            bump_after_abort: false,
        }
    }

    /// The transactional id.
    pub(crate) fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Starts a call. Calls that complete at once (or fail at once) queue
    /// their result; the others complete through later answers. A call
    /// made while another is in progress waits for it (a transaction guard
    /// dropped just before `begin_transaction`, say), except the same call
    /// again, which takes over the pending one.
    pub(crate) fn start(&mut self, op_id: u64, op: TxnOp) {
        if let State::Fatal(e) = &self.state {
            let e = e.clone_shallow();
            self.done.push_back((op_id, Err(e)));
            return;
        }
        if let Some((pending_id, pending)) = &self.op {
            if pending.same_kind(&op) {
                // The same call again (after the caller stopped waiting):
                // it takes over the pending completion.
                let pending_id = *pending_id;
                self.done.push_back((
                    pending_id,
                    Err(invalid_state(format!(
                        "{} was called again; the later call reports the result",
                        op.name()
                    ))),
                ));
                self.op = Some((op_id, op));
                return;
            }
            self.queued.push_back((op_id, op));
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Uninitialised);
        let (state, result, fail_unsent) = match (state, &op) {
            (State::Uninitialised, TxnOp::Init) => {
                self.op = Some((op_id, op));
                (State::Initialising { bump: None }, None, false)
            }
            (State::Ready, TxnOp::Begin) => {
                (State::InTransaction(Txn::default()), Some(Ok(())), false)
            }
            (State::Ready, TxnOp::Init) => (State::Ready, Some(Ok(())), false),
            (State::InTransaction(mut txn), TxnOp::SendOffsets { offsets, group }) => {
                txn.offsets = Some(OffsetCommit {
                    group: group.clone(),
                    offsets: offsets.clone(),
                });
                self.op = Some((op_id, op));
                (State::InTransaction(txn), None, false)
            }
            (State::InTransaction(txn), TxnOp::Commit) => {
                self.op = Some((op_id, op));
                (State::Committing(txn, EndPhase::Flushing), None, false)
            }
            (State::InTransaction(txn) | State::Abortable(txn, _), TxnOp::Abort) => {
                self.op = Some((op_id, op));
                (State::Aborting(txn, EndPhase::Flushing), None, true)
            }
            // Scenario 37: after an unknown outcome, only the same call.
            (State::Committing(txn, EndPhase::Unknown), TxnOp::Commit) => {
                self.op = Some((op_id, op));
                (State::Committing(txn, EndPhase::Ending), None, false)
            }
            (State::Aborting(txn, EndPhase::Unknown), TxnOp::Abort) => {
                self.op = Some((op_id, op));
                (State::Aborting(txn, EndPhase::Ending), None, false)
            }
            (State::Committing(txn, EndPhase::Unknown), _) => {
                let err = invalid_state(format!(
                    "{} refused: the commit's outcome is unknown; call commit_transaction again to complete it",
                    op.name()
                ));
                (
                    State::Committing(txn, EndPhase::Unknown),
                    Some(Err(err)),
                    false,
                )
            }
            (State::Abortable(txn, e), TxnOp::Commit | TxnOp::SendOffsets { .. }) => {
                let err = abortable(format!(
                    "{} refused: the transaction must be aborted ({e})",
                    op.name()
                ));
                (State::Abortable(txn, e), Some(Err(err)), false)
            }
            (state, op) => {
                let message = format!("{} is not allowed {}", op.name(), describe(&state));
                (state, Some(Err(invalid_state(message))), false)
            }
        };
        self.state = state;
        if let Some(result) = result {
            self.done.push_back((op_id, result));
        }
        self.abort_started |= fail_unsent;
    }

    /// Starts the calls that waited for the one in progress, once it is done.
    pub(crate) fn start_queued(&mut self) {
        while self.op.is_none() {
            let Some((op_id, op)) = self.queued.pop_front() else {
                break;
            };
            self.start(op_id, op);
        }
    }

    /// Whether a waiting call can start now (the one before it finished).
    pub(crate) fn has_startable_call(&self) -> bool {
        self.op.is_none() && !self.queued.is_empty()
    }

    /// Whether an abort started since the last call: the engine then fails
    /// the records not sent yet.
    pub(crate) fn take_abort_started(&mut self) -> bool {
        std::mem::take(&mut self.abort_started)
    }

    /// Whether records are accepted now; the error says why not.
    pub(crate) fn check_send(&self) -> Result<(), Error> {
        match &self.state {
            State::InTransaction(_) => Ok(()),
            State::Abortable(_, e) => Err(abortable(format!(
                "the transaction must be aborted before more records are sent ({e})"
            ))),
            State::Fatal(e) => Err(e.clone_shallow()),
            state => Err(invalid_state(format!(
                "records can only be sent inside a transaction (begin_transaction); the producer is {}",
                describe(state)
            ))),
        }
    }

    /// A record for `topic`-`partition` was accepted: the partition joins
    /// the transaction (in the next AddPartitionsToTxn).
    pub(crate) fn record_partition(&mut self, topic: &str, partition: i32) {
        // A record that waited for metadata may be accepted once the
        // commit has started: its partition still joins.
        if let State::InTransaction(txn) | State::Committing(txn, EndPhase::Flushing) =
            &mut self.state
            && !txn.added.contains(topic, partition)
            && !txn.adding.contains(topic, partition)
        {
            txn.wanted.insert(topic, partition);
        }
    }

    /// Whether `topic`-`partition`'s batches may go out now.
    pub(crate) fn may_send(&self, topic: &str, partition: i32) -> bool {
        match &self.state {
            State::InTransaction(txn) | State::Committing(txn, EndPhase::Flushing) => {
                txn.added.contains(topic, partition)
            }
            _ => false,
        }
    }

    /// A record of the transaction failed: it cannot commit.
    pub(crate) fn record_failed(&mut self, error: &Error) {
        if matches!(
            error.kind(),
            ErrorKind::TransactionAborted | ErrorKind::InvalidTransactionState
        ) || matches!(self.state, State::Abortable(..) | State::Aborting(..))
        {
            return;
        }
        self.make_abortable(abortable(format!(
            "a record of the transaction failed: {error}"
        )));
    }

    /// A sequence can no longer be trusted (a refused or dropped batch
    /// held sequence numbers): the abort bumps the epoch. The failing
    /// records make the transaction abortable.
    pub(crate) fn sequences_broken(&mut self) {
        self.bump_after_abort = true;
    }

    /// The producer was fenced or lost its authorisation: fatal.
    pub(crate) fn fail(&mut self, error: Error) {
        if matches!(self.state, State::Fatal(_)) {
            return;
        }
        if let Some((op_id, _)) = self.op.take() {
            self.done.push_back((op_id, Err(error.clone_shallow())));
        }
        for (op_id, _) in std::mem::take(&mut self.queued) {
            self.done.push_back((op_id, Err(error.clone_shallow())));
        }
        self.state = State::Fatal(error);
    }

    /// The fatal error, if the producer is finished.
    pub(crate) fn fatal(&self) -> Option<&Error> {
        match &self.state {
            State::Fatal(e) => Some(e),
            _ => None,
        }
    }

    /// A completed call, if any.
    pub(crate) fn poll_done(&mut self) -> Option<(u64, Result<(), Error>)> {
        self.done.pop_front()
    }

    /// When a backoff ends.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.not_before.filter(|_| self.in_flight.is_none())
    }

    /// The next request to send, if any. `settled` says whether every
    /// record of the producer has been delivered or failed (a commit or an
    /// abort waits for it).
    pub(crate) fn poll_request(
        &mut self,
        now: Instant,
        settled: bool,
        id: u64,
    ) -> Option<Outgoing> {
        if self.in_flight.is_some() || self.not_before.is_some_and(|t| now < t) {
            return None;
        }
        self.not_before = None;
        self.finish_without_end_txn(settled);
        let (sent, request, target) = self.next_request(settled)?;
        let node = match target {
            Target::Coordinator => match &self.coordinator {
                Some(c) => Some(c.clone()),
                None => {
                    if sent == Sent::AddPartitions {
                        // Built before the coordinator was known: next time.
                        self.readd();
                    }
                    return self.find(id, CoordinatorKind::Transaction, None);
                }
            },
            Target::Group(group) => match self.group_coordinators.get(&group) {
                Some(c) => Some(c.clone()),
                None => return self.find(id, CoordinatorKind::Group, Some(group)),
            },
        };
        self.in_flight = Some((id, sent));
        Some(Outgoing { node, request })
    }

    fn find(&mut self, id: u64, kind: CoordinatorKind, group: Option<String>) -> Option<Outgoing> {
        let key = group.unwrap_or_else(|| self.transactional_id.clone());
        self.in_flight = Some((id, Sent::FindCoordinator(kind)));
        Some(Outgoing {
            node: None,
            request: TxnRequest::FindCoordinator { kind, key },
        })
    }

    /// A commit or abort with nothing added ends without EndTxn, once the
    /// records settled.
    fn finish_without_end_txn(&mut self, settled: bool) {
        let finished = match &self.state {
            State::Committing(txn, EndPhase::Flushing)
            | State::Aborting(txn, EndPhase::Flushing) => {
                settled
                    && txn.adding.is_empty()
                    && !txn.anything_added()
                    && (txn.wanted.is_empty() || matches!(self.state, State::Aborting(..)))
            }
            _ => false,
        };
        if finished {
            self.end_completed();
        }
    }

    fn next_request(&mut self, settled: bool) -> Option<(Sent, TxnRequest, Target)> {
        let identity = self.identity;
        match &mut self.state {
            State::Initialising { bump } => {
                let (producer_id, epoch) = bump.map_or((-1, -1), |b| (b.producer_id, b.epoch));
                let timeout_ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
                Some((
                    Sent::InitProducerId,
                    TxnRequest::InitProducerId {
                        timeout_ms,
                        producer_id,
                        epoch,
                    },
                    Target::Coordinator,
                ))
            }
            State::InTransaction(txn) | State::Committing(txn, EndPhase::Flushing) => {
                let identity = identity?;
                if !txn.wanted.is_empty() {
                    txn.adding = std::mem::take(&mut txn.wanted);
                    let partitions: Vec<(String, Vec<i32>)> = txn
                        .adding
                        .0
                        .iter()
                        .map(|(topic, ps)| (topic.clone(), ps.iter().copied().collect()))
                        .collect();
                    return Some((
                        Sent::AddPartitions,
                        TxnRequest::AddPartitions {
                            identity,
                            partitions,
                        },
                        Target::Coordinator,
                    ));
                }
                if let Some(offsets) = &txn.offsets {
                    return Some(if txn.offsets_added {
                        (
                            Sent::TxnOffsetCommit,
                            TxnRequest::TxnOffsetCommit {
                                identity,
                                group: offsets.group.clone(),
                                offsets: offsets.offsets.clone(),
                            },
                            Target::Group(offsets.group.group_id.clone()),
                        )
                    } else {
                        (
                            Sent::AddOffsets,
                            TxnRequest::AddOffsets {
                                identity,
                                group_id: offsets.group.group_id.clone(),
                            },
                            Target::Coordinator,
                        )
                    });
                }
                if let State::Committing(txn, phase) = &mut self.state
                    && settled
                    && txn.adding.is_empty()
                {
                    *phase = EndPhase::Ending;
                    return Some(end_txn(identity, true));
                }
                None
            }
            State::Committing(_, EndPhase::Ending) => Some(end_txn(identity?, true)),
            State::Aborting(txn, phase @ EndPhase::Flushing) => {
                if !settled || !txn.adding.is_empty() {
                    return None;
                }
                *phase = EndPhase::Ending;
                Some(end_txn(identity?, false))
            }
            State::Aborting(_, EndPhase::Ending) => Some(end_txn(identity?, false)),
            _ => None,
        }
    }

    /// An answer arrived for the request `id` (`Err`: none, the request may
    /// or may not have reached the broker).
    pub(crate) fn handle_answer(
        &mut self,
        now: Instant,
        id: u64,
        answer: Result<TxnAnswer, Error>,
    ) -> TxnEffect {
        let Some((request, sent)) = self.in_flight else {
            return TxnEffect::None;
        };
        if request != id {
            return TxnEffect::None;
        }
        self.in_flight = None;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => return self.no_answer(now, sent, error),
        };
        match (sent, answer) {
            (Sent::FindCoordinator(kind), TxnAnswer::Coordinator { code, node, addr }) => {
                self.coordinator_found(now, kind, code, node, addr)
            }
            (
                Sent::InitProducerId,
                TxnAnswer::ProducerId {
                    code,
                    producer_id,
                    epoch,
                },
            ) => self.producer_id(now, code, producer_id, epoch),
            (Sent::AddPartitions, TxnAnswer::Partitions(results)) => {
                self.partitions_added(now, results)
            }
            (Sent::AddOffsets, TxnAnswer::Code(code)) => self.offsets_added(now, code),
            (Sent::TxnOffsetCommit, TxnAnswer::Partitions(results)) => {
                self.offsets_committed(now, results)
            }
            (Sent::EndTxn, TxnAnswer::Code(code)) => self.ended(now, code),
            (sent, answer) => {
                tracing::warn!(?sent, ?answer, "mismatched transactional answer");
                self.back_off(now, self.backoff);
                TxnEffect::None
            }
        }
    }

    fn no_answer(&mut self, now: Instant, sent: Sent, error: Error) -> TxnEffect {
        tracing::debug!(?sent, %error, "transactional request got no answer");
        match sent {
            Sent::FindCoordinator(_) => {}
            Sent::TxnOffsetCommit => {
                if let Some(group) = self.offsets_group() {
                    self.group_coordinators.remove(&group);
                }
            }
            Sent::AddPartitions => {
                self.coordinator = None;
                self.readd();
            }
            Sent::EndTxn => {
                self.coordinator = None;
                self.outcome_unknown(error);
                return TxnEffect::None;
            }
            Sent::InitProducerId | Sent::AddOffsets => self.coordinator = None,
        }
        self.back_off(now, self.backoff);
        TxnEffect::None
    }

    fn coordinator_found(
        &mut self,
        now: Instant,
        kind: CoordinatorKind,
        code: i16,
        node: i32,
        addr: String,
    ) -> TxnEffect {
        match KafkaCode::from_i16(code) {
            None => {
                match kind {
                    CoordinatorKind::Transaction => self.coordinator = Some((node, addr)),
                    CoordinatorKind::Group => {
                        if let Some(group) = self.offsets_group() {
                            self.group_coordinators.insert(group, (node, addr));
                        }
                    }
                }
                TxnEffect::None
            }
            Some(KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED) => self.fatal_code(
                KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "FindCoordinator",
            ),
            Some(KafkaCode::GROUP_AUTHORIZATION_FAILED) => {
                self.offsets_failed(Error::broker(
                    KafkaCode::GROUP_AUTHORIZATION_FAILED,
                    "FindCoordinator for the group",
                ));
                TxnEffect::None
            }
            Some(code) => {
                tracing::debug!(?kind, ?code, "coordinator lookup failed; retrying");
                self.back_off(now, self.backoff);
                TxnEffect::None
            }
        }
    }

    fn producer_id(&mut self, now: Instant, code: i16, producer_id: i64, epoch: i16) -> TxnEffect {
        match KafkaCode::from_i16(code) {
            None => {
                let identity = ProducerIdentity { producer_id, epoch };
                self.identity = Some(identity);
                self.bump_after_abort = false;
                self.state = State::Ready;
                self.complete_op(Ok(()));
                TxnEffect::Identity(identity)
            }
            Some(code) if is_coordinator_error(code) => {
                self.coordinator = None;
                self.back_off(now, self.backoff);
                TxnEffect::None
            }
            Some(KafkaCode::CONCURRENT_TRANSACTIONS) => {
                self.back_off(now, CONCURRENT_BACKOFF);
                TxnEffect::None
            }
            Some(KafkaCode::INVALID_TRANSACTION_TIMEOUT) => {
                let error = Error::config(
                    "transaction_timeout",
                    format_args!(
                        "the coordinator refused a transaction timeout of {:?} (above its transaction.max.timeout.ms)",
                        self.timeout
                    ),
                );
                self.fail(error);
                TxnEffect::Fatal
            }
            Some(code) if code.is_retriable() => {
                self.back_off(now, self.backoff);
                TxnEffect::None
            }
            Some(code) => self.fatal_code(code, "InitProducerId"),
        }
    }

    fn partitions_added(&mut self, now: Instant, results: Vec<(String, i32, i16)>) -> TxnEffect {
        let mut retry = false;
        let mut coordinator_gone = false;
        let mut failure: Option<(KafkaCode, String, i32)> = None;
        {
            let Some(txn) = self.txn_mut() else {
                return TxnEffect::None;
            };
            let adding = std::mem::take(&mut txn.adding);
            for (topic, partition, code) in results {
                if !adding.contains(&topic, partition) {
                    continue;
                }
                match KafkaCode::from_i16(code) {
                    None => {
                        txn.added.insert(&topic, partition);
                    }
                    Some(code)
                        if is_coordinator_error(code)
                            || code.is_retriable()
                            || matches!(
                                code,
                                KafkaCode::CONCURRENT_TRANSACTIONS
                                    | KafkaCode::OPERATION_NOT_ATTEMPTED
                            ) =>
                    {
                        retry = true;
                        coordinator_gone |= is_coordinator_error(code);
                        txn.wanted.insert(&topic, partition);
                    }
                    Some(code) => {
                        if failure.is_none() || code != KafkaCode::OPERATION_NOT_ATTEMPTED {
                            failure = Some((code, topic.clone(), partition));
                        }
                    }
                }
            }
            // A partition the answer left out is asked for again.
            for (topic, partition) in adding.iter() {
                if !txn.added.contains(topic, partition) {
                    txn.wanted.insert(topic, partition);
                }
            }
        }
        if let Some((code, topic, partition)) = failure {
            let what = format_args!("AddPartitionsToTxn {topic}-{partition}");
            if is_fatal_txn_code(code) {
                return self.fatal_code(code, what);
            }
            let error = Error::broker(code, what);
            self.make_abortable(abortable(format!(
                "adding a partition to the transaction failed: {error}"
            )));
            return TxnEffect::None;
        }
        if retry {
            if coordinator_gone {
                self.coordinator = None;
            }
            self.back_off(now, CONCURRENT_BACKOFF.max(self.backoff / 5));
        }
        TxnEffect::None
    }

    fn offsets_added(&mut self, now: Instant, code: i16) -> TxnEffect {
        match KafkaCode::from_i16(code) {
            None => {
                if let Some(txn) = self.txn_mut() {
                    txn.offsets_added = true;
                }
                TxnEffect::None
            }
            Some(code) => self.txn_request_error(now, code, "AddOffsetsToTxn"),
        }
    }

    fn offsets_committed(&mut self, now: Instant, results: Vec<(String, i32, i16)>) -> TxnEffect {
        let worst = results
            .iter()
            .filter_map(|(t, p, c)| KafkaCode::from_i16(*c).map(|c| (c, t.clone(), *p)))
            .min_by_key(|(c, _, _)| c.is_retriable());
        match worst {
            None => {
                if let Some(txn) = self.txn_mut() {
                    txn.offsets = None;
                }
                self.complete_op(Ok(()));
                TxnEffect::None
            }
            Some((code, topic, partition)) => {
                if is_coordinator_error(code) {
                    if let Some(group) = self.offsets_group() {
                        self.group_coordinators.remove(&group);
                    }
                    self.back_off(now, self.backoff);
                    return TxnEffect::None;
                }
                let what = format_args!("TxnOffsetCommit {topic}-{partition}");
                if is_fatal_txn_code(code) {
                    return self.fatal_code(code, what);
                }
                if code.is_retriable() || code == KafkaCode::CONCURRENT_TRANSACTIONS {
                    self.back_off(now, CONCURRENT_BACKOFF.max(self.backoff / 5));
                    return TxnEffect::None;
                }
                self.offsets_failed(Error::broker(code, what));
                TxnEffect::None
            }
        }
    }

    fn ended(&mut self, now: Instant, code: i16) -> TxnEffect {
        match KafkaCode::from_i16(code) {
            None => {
                self.end_completed();
                TxnEffect::None
            }
            Some(code) if is_coordinator_error(code) => {
                self.coordinator = None;
                self.back_off(now, self.backoff);
                TxnEffect::None
            }
            Some(KafkaCode::CONCURRENT_TRANSACTIONS) => {
                self.back_off(now, CONCURRENT_BACKOFF);
                TxnEffect::None
            }
            Some(code) if is_fatal_txn_code(code) => self.fatal_code(code, "EndTxn"),
            Some(
                code @ (KafkaCode::UNKNOWN_PRODUCER_ID | KafkaCode::INVALID_PRODUCER_ID_MAPPING),
            ) => {
                // Scenario 34: the coordinator lost the producer. A commit
                // cannot go on; an abort ends the transaction as far as this
                // producer can tell, and a fresh epoch follows.
                if let State::Aborting(..) = self.state {
                    self.bump_after_abort = true;
                    self.end_completed();
                } else {
                    self.make_abortable(abortable(format!(
                        "EndTxn(commit) failed: {}",
                        Error::broker(code, "EndTxn")
                    )));
                }
                TxnEffect::None
            }
            Some(code @ (KafkaCode::REQUEST_TIMED_OUT | KafkaCode::UNKNOWN_SERVER_ERROR)) => {
                self.outcome_unknown(Error::broker(code, "EndTxn"));
                TxnEffect::None
            }
            Some(code) if code.is_retriable() => {
                self.back_off(now, self.backoff);
                TxnEffect::None
            }
            Some(code) => {
                let error = Error::broker(code, "EndTxn");
                if let State::Committing(..) = self.state {
                    self.make_abortable(abortable(format!("EndTxn(commit) failed: {error}")));
                } else {
                    self.fail(error);
                    return TxnEffect::Fatal;
                }
                TxnEffect::None
            }
        }
    }

    /// A commit or an abort is complete (EndTxn answered, or nothing needed
    /// it): ready for the next transaction, after an epoch bump if the
    /// abort needs one.
    fn end_completed(&mut self) {
        let aborted = matches!(self.state, State::Aborting(..));
        if aborted && self.bump_after_abort {
            // KIP-360: the abort left sequences that cannot be trusted; the
            // coordinator bumps the epoch and the partitions renumber.
            self.state = State::Initialising {
                bump: self.identity,
            };
            return;
        }
        self.state = State::Ready;
        self.complete_op(Ok(()));
    }

    fn outcome_unknown(&mut self, error: Error) {
        if let State::Committing(_, phase) | State::Aborting(_, phase) = &mut self.state {
            *phase = EndPhase::Unknown;
            let what = if matches!(self.state, State::Committing(..)) {
                "commit"
            } else {
                "abort"
            };
            let err = Error::new(
                ErrorKind::Timeout,
                format!(
                    "the outcome of the transaction's {what} is unknown ({error}); call the same operation again to complete it"
                ),
            );
            if let Some((op_id, _)) = self.op.take() {
                self.done.push_back((op_id, Err(err)));
            }
        }
    }

    /// A request of the open transaction failed with `code`.
    fn txn_request_error(&mut self, now: Instant, code: KafkaCode, what: &str) -> TxnEffect {
        if is_coordinator_error(code) {
            self.coordinator = None;
            self.back_off(now, self.backoff);
            return TxnEffect::None;
        }
        if code == KafkaCode::CONCURRENT_TRANSACTIONS || code.is_retriable() {
            self.back_off(now, CONCURRENT_BACKOFF.max(self.backoff / 5));
            return TxnEffect::None;
        }
        if is_fatal_txn_code(code) {
            return self.fatal_code(code, what);
        }
        self.offsets_failed(Error::broker(code, what));
        TxnEffect::None
    }

    fn offsets_failed(&mut self, error: Error) {
        if let Some(txn) = self.txn_mut() {
            txn.offsets = None;
        }
        self.make_abortable(abortable(format!(
            "sending offsets to the transaction failed: {error}"
        )));
    }

    fn fatal_code(&mut self, code: KafkaCode, what: impl std::fmt::Display) -> TxnEffect {
        let error = match code {
            KafkaCode::PRODUCER_FENCED | KafkaCode::INVALID_PRODUCER_EPOCH => {
                fenced(&self.transactional_id, what)
            }
            _ => Error::broker(code, what),
        };
        self.fail(error);
        TxnEffect::Fatal
    }

    fn make_abortable(&mut self, error: Error) {
        let state = std::mem::replace(&mut self.state, State::Uninitialised);
        self.state = match state {
            State::InTransaction(txn) | State::Committing(txn, _) => {
                if let Some((op_id, _)) = self.op.take() {
                    self.done.push_back((op_id, Err(error.clone_shallow())));
                }
                State::Abortable(txn, error)
            }
            other => other,
        };
    }

    fn readd(&mut self) {
        if let Some(txn) = self.txn_mut() {
            let adding = std::mem::take(&mut txn.adding);
            txn.wanted.extend(adding);
        }
    }

    fn complete_op(&mut self, result: Result<(), Error>) {
        if let Some((op_id, _)) = self.op.take() {
            self.done.push_back((op_id, result));
        }
    }

    fn back_off(&mut self, now: Instant, wait: Duration) {
        self.not_before = Some(now + wait);
    }

    fn txn_mut(&mut self) -> Option<&mut Txn> {
        match &mut self.state {
            State::InTransaction(txn)
            | State::Committing(txn, _)
            | State::Aborting(txn, _)
            | State::Abortable(txn, _) => Some(txn),
            _ => None,
        }
    }

    fn offsets_group(&self) -> Option<String> {
        match &self.state {
            State::InTransaction(txn) | State::Committing(txn, _) => {
                txn.offsets.as_ref().map(|o| o.group.group_id.clone())
            }
            _ => None,
        }
    }
}

/// Where a request goes.
enum Target {
    Coordinator,
    Group(String),
}

fn end_txn(identity: ProducerIdentity, commit: bool) -> (Sent, TxnRequest, Target) {
    (
        Sent::EndTxn,
        TxnRequest::EndTxn { identity, commit },
        Target::Coordinator,
    )
}

fn describe(state: &State) -> &'static str {
    match state {
        State::Uninitialised => "before init_transactions",
        State::Initialising { .. } => "while init_transactions is in progress",
        State::Ready => "outside a transaction",
        State::InTransaction(_) => "inside a transaction",
        State::Committing(..) => "while the transaction commits",
        State::Aborting(..) => "while the transaction aborts",
        State::Abortable(..) => "once the transaction must be aborted",
        State::Fatal(_) => "after a fatal error",
    }
}

fn is_coordinator_error(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::NOT_COORDINATOR
            | KafkaCode::COORDINATOR_NOT_AVAILABLE
            | KafkaCode::COORDINATOR_LOAD_IN_PROGRESS
    )
}

/// Codes that end a transactional producer.
pub(crate) fn is_fatal_txn_code(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::PRODUCER_FENCED
            | KafkaCode::INVALID_PRODUCER_EPOCH
            | KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            | KafkaCode::INVALID_TXN_STATE
            | KafkaCode::CLUSTER_AUTHORIZATION_FAILED
            | KafkaCode::UNSUPPORTED_VERSION
    )
}

/// The error a fenced producer reports.
pub(crate) fn fenced(transactional_id: &str, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Fenced,
        format!(
            "{what}: another producer with transactional id `{transactional_id}` took over (fenced); this producer cannot go on"
        ),
    )
}

fn abortable(message: String) -> Error {
    Error::new(ErrorKind::TransactionAbortable, message)
}

fn invalid_state(message: String) -> Error {
    Error::new(ErrorKind::InvalidTransactionState, message)
}
