//! Transaction coordinator state.
//!
//! The coordinator keeps, per transactional id, the producer it maps to
//! (`TransactionalProducer` in the cluster state) and a `Transaction`: its
//! status, timeout, the partitions and groups added to the transaction in
//! progress, and the offsets committed in it (pending, invisible to
//! OffsetFetch until the commit). Ending a transaction writes a commit or
//! abort marker into every added partition, then applies or discards the
//! pending offsets.
//!
//! Statuses follow Kafka's `TransactionState`: `Empty` after
//! InitProducerId, `Ongoing` from the first AddPartitionsToTxn or
//! AddOffsetsToTxn, `PrepareCommit`/`PrepareAbort` while the markers are being
//! written, then `CompleteCommit`/`CompleteAbort`. Markers are written at once
//! unless [`FakeCluster::set_transaction_marker_delay`] asks for a delay;
//! during it the coordinator answers `CONCURRENT_TRANSACTIONS`.
//!
//! A transaction open for longer than its timeout is aborted by the
//! coordinator, which bumps the producer epoch first so the producer is
//! fenced, as Kafka's timed-out transaction cleanup does. The cluster checks
//! before handling every request and every 10 ms in the background.
//!
//! # Staging transactional failures
//!
//! Every transactional API (FindCoordinator, InitProducerId,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) takes
//! [`Fault`](crate::Fault)s: an error code instead of applying, a delay, a
//! connection dropped before applying, or dropped right after applying (the
//! outcome is lost). With the cluster's own hooks that stages the fault
//! scenarios for transactions:
//!
//! - Coordinator churn: `Fault::new(ApiKey::EndTxn).error(NotCoordinator)`
//!   (or `CoordinatorNotAvailable`, `CoordinatorLoadInProgress`) on any of
//!   the APIs above, `.times(n)` for a longer outage.
//! - The coordinator moving or its broker dying mid-transaction:
//!   [`FakeCluster::move_transaction_coordinator`], optionally with
//!   `.broker(old).drop_connection().times(n)` faults on the old broker.
//! - `CONCURRENT_TRANSACTIONS`: injected, or for real with
//!   [`FakeCluster::set_transaction_marker_delay`] (the next transaction's
//!   AddPartitionsToTxn meets it while markers are written), or with a second
//!   InitProducerId while a transaction is open.
//! - Fencing: a second producer calling InitProducerId with the same
//!   transactional id (a real zombie), or injected `ProducerFenced` /
//!   `InvalidProducerEpoch`.
//! - Abortable errors: `UnknownProducerId` or `InvalidProducerIdMapping` on
//!   EndTxn, `TopicAuthorizationFailed` on AddPartitionsToTxn,
//!   `GroupAuthorizationFailed` on AddOffsetsToTxn or TxnOffsetCommit;
//!   `TransactionalIdAuthorizationFailed` on InitProducerId for the fatal
//!   case.
//! - A record failing inside a transaction, or `OUT_OF_ORDER_SEQUENCE_NUMBER`:
//!   a Produce fault with that error.
//! - EndTxn outcome unknown: `Fault::new(ApiKey::EndTxn).drop_after_apply()`
//!   (committed, answer lost: the retry succeeds, switching to abort gets
//!   `INVALID_TXN_STATE`), `.delay(..)` past the client's timeout, or
//!   `.error_code(-1)` (UNKNOWN_SERVER_ERROR, not applied).
//! - AddPartitionsToTxn bookkeeping: a delayed AddPartitionsToTxn fault, then
//!   [`FakeCluster::transaction_state`] and the request journal show what was
//!   added, when EndTxn came, and [`TransactionState::history`] every
//!   transaction's partitions and outcome.
//!
//! [`FakeCluster::set_transaction_marker_delay`]: crate::FakeCluster::set_transaction_marker_delay
//! [`FakeCluster::move_transaction_coordinator`]: crate::FakeCluster::move_transaction_coordinator
//! [`FakeCluster::transaction_state`]: crate::FakeCluster::transaction_state

use std::time::Duration;

use tokio::time::Instant;

use crate::group_coordinator::CommittedOffset;

/// Where a transaction is in its life (Kafka's `TransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// No transaction in progress (after InitProducerId).
    Empty,
    /// Partitions or groups have been added.
    Ongoing,
    /// Committing: markers being written.
    PrepareCommit,
    /// Aborting: markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// Committed.
    Commit,
    /// Aborted.
    Abort,
}

/// Why a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// An EndTxn request from the producer.
    EndTxn,
    /// The coordinator aborted it after its timeout.
    Timeout,
    /// An InitProducerId for the same transactional id aborted it.
    InitProducerId,
}

/// A finished transaction, as the coordinator recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedTransaction {
    /// Producer id of the markers.
    pub producer_id: i64,
    /// Producer epoch of the markers (one above the producer's for
    /// coordinator-initiated aborts).
    pub producer_epoch: i16,
    /// Commit or abort.
    pub outcome: TransactionOutcome,
    /// Why it ended.
    pub cause: EndCause,
    /// The partitions markers were written to, in the order they were added.
    pub partitions: Vec<(String, i32)>,
    /// The groups whose offsets were part of it.
    pub groups: Vec<String>,
}

/// A snapshot of one transactional id at the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionState {
    /// The producer id the transactional id maps to.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// Where the current transaction is.
    pub status: TransactionStatus,
    /// The transaction timeout given to InitProducerId.
    pub timeout: Duration,
    /// Partitions added to the transaction in progress, in order.
    pub partitions: Vec<(String, i32)>,
    /// Groups added to the transaction in progress.
    pub groups: Vec<String>,
    /// Offsets committed in the transaction in progress:
    /// `(group, topic, partition, offset)`.
    pub pending_offsets: Vec<(String, String, i32, i64)>,
    /// The broker coordinating the transactional id.
    pub coordinator: i32,
    /// Every transaction this id finished, oldest first.
    pub history: Vec<CompletedTransaction>,
}

/// The coordinator's record of one transactional id.
#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub status: TransactionStatus,
    pub timeout_ms: i32,
    /// When the transaction in progress became `Ongoing`.
    pub started: Option<Instant>,
    pub partitions: Vec<(String, i32)>,
    pub groups: Vec<String>,
    /// `(group, topic, partition, offset)`, latest last.
    pub pending_offsets: Vec<(String, String, i32, CommittedOffset)>,
    /// When the markers of a `Prepare*` transaction are written.
    pub completes_at: Option<Instant>,
    /// Why the transaction being completed ends.
    pub ending: EndCause,
    pub history: Vec<CompletedTransaction>,
}

impl Transaction {
    pub fn new(timeout_ms: i32) -> Self {
        Self {
            status: TransactionStatus::Empty,
            timeout_ms,
            started: None,
            partitions: Vec::new(),
            groups: Vec::new(),
            pending_offsets: Vec::new(),
            completes_at: None,
            ending: EndCause::EndTxn,
            history: Vec::new(),
        }
    }

    /// Whether markers are still being written.
    pub fn is_completing(&self) -> bool {
        matches!(
            self.status,
            TransactionStatus::PrepareCommit | TransactionStatus::PrepareAbort
        )
    }

    /// Moves to `Ongoing`, starting the timeout clock if it was not.
    pub fn make_ongoing(&mut self, now: Instant) {
        if self.status != TransactionStatus::Ongoing {
            self.status = TransactionStatus::Ongoing;
            self.started = Some(now);
        }
    }
}

/// Kafka's `TransactionMetadata.isEpochExhausted`.
pub(crate) fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The error a stale epoch gets from a transactional API: `PRODUCER_FENCED`
/// from the version KIP-588 introduced it in, `INVALID_PRODUCER_EPOCH` before.
pub(crate) fn fenced_code(version: i16, since: i16) -> i16 {
    use kafka_protocol::ResponseError;
    if version >= since {
        ResponseError::ProducerFenced.code()
    } else {
        ResponseError::InvalidProducerEpoch.code()
    }
}
