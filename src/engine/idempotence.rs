//! The idempotent producer: its producer id and epoch, per-partition
//! sequence numbers, and what each sequence-related answer of a broker
//! means. Implements [KIP-98] (idempotence) and [KIP-360] (epoch bumps
//! instead of fatal errors).
//!
//! [KIP-98]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-98+-+Exactly+Once+Delivery+and+Transactional+Messaging
//! [KIP-360]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-360%3A+Improve+reliability+of+idempotent%2Ftransactional+producer
//!
//! ```text
//!              poll: InitProducerId(-1, -1)
//!   NoId ─────────────────────────────────► Requesting ──ok──► Ready(id, epoch)
//!    ▲  retriable error / lost: after backoff    │                  │
//!    └───────────────────────────────────────────┘                  │ a sequence can no longer be
//!                                                                   │ trusted (see `BumpReason`)
//!                      ┌──── nothing in flight, nothing ◄── Bumping ┘ no new batch goes out;
//!                      │     "possibly persisted" left     (id, epoch)  possibly-persisted ones
//!                      ▼                                                are resolved first
//!   Requesting: InitProducerId(id, epoch) (KIP-360; a new id from brokers
//!               below InitProducerId v3 or when the epoch is exhausted) ──ok──► Ready(id', epoch'),
//!               every partition's sequences start again at 0
//!
//!   any state ── CLUSTER_AUTHORIZATION_FAILED, a broker without InitProducerId ──► Fatal
//! ```
//!
//! Sequence numbers are assigned when a batch is drained, so a batch that
//! expires before it is ever sent leaves no hole behind. A retried batch
//! keeps its stamp while the epoch is the same; batches stamped under an
//! older epoch are stamped again, in partition order, when drained.
//!
//! Policies for the answers that need one (fault scenarios 9, 10, 15, 19):
//!
//! * `OUT_OF_ORDER_SEQUENCE_NUMBER` for a batch whose base sequence is *not*
//!   the next the broker should expect: an earlier batch failed, so this one
//!   is retried in order after it (scenario 2). For the very next sequence
//!   (a real gap on the broker's side, scenario 9) the batch fails with that
//!   error, as not persisted, and the epoch is bumped, as the Java client
//!   does: retrying could not be proven safe.
//! * `UNKNOWN_PRODUCER_ID` (scenario 10): the broker has no state for this
//!   producer. For a batch behind an earlier one still unwritten that is
//!   expected (the broker has not seen our first batch yet): it is retried
//!   in order. For the next expected sequence, when its log start offset is past the last offset we had
//!   acknowledged, retention removed that state, which is expected; either
//!   way the epoch is bumped and the batch resent from sequence 0, which
//!   cannot duplicate it: the broker refused it. Only the log line differs.
//! * `INVALID_PRODUCER_EPOCH` / `PRODUCER_FENCED` on Produce (scenario 11):
//!   a fresh producer id is requested and the batch resent under it.
//! * A stamped batch that fails for good (a permanent error, or expiry while
//!   queued for a retry) leaves a hole in the partition's sequences: the
//!   epoch is bumped so that later batches are numbered afresh (scenario 19).
//! * An in-flight batch that expires stays unresolved (scenario 15): its
//!   answer, when it comes, still counts; an error then bumps the epoch.
//! * Epoch exhaustion (scenario 12): a bump from epoch `i16::MAX - 1` or
//!   above asks for a new producer id instead.
//! * Sequences wrap from `i32::MAX` to 0 (scenario 13), as on the broker.
//! * `OUT_OF_ORDER_SEQUENCE_NUMBER` for a batch whose sequences lie before
//!   ones already acknowledged cannot be resolved: it may be in the log, out
//!   of the broker's window, or never written (a modern broker accepts any
//!   sequence from a producer it does not know, so a later batch can land
//!   first). It fails as possibly persisted, and the epoch moves on.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::protocol::KafkaCode;

/// The producer id and epoch a batch is stamped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
}

/// Why the epoch must be bumped (kept for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BumpReason {
    /// UNKNOWN_PRODUCER_ID from a partition leader.
    UnknownProducer,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER for the very next sequence.
    SequenceGap,
    /// A stamped batch failed for good and left a hole.
    SequenceHole,
    /// The broker does not know our epoch (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED).
    InvalidEpoch,
}

/// The producer id's state machine.
#[derive(Debug)]
enum IdState {
    /// No id: one is requested once `not_before` passes.
    NoId {
        not_before: Option<Instant>,
        /// The identity to bump from (KIP-360), if any.
        bump_from: Option<ProducerIdentity>,
    },
    /// An InitProducerId request is in flight.
    Requesting {
        request: u64,
        bump_from: Option<ProducerIdentity>,
    },
    /// Batches go out under this identity.
    Ready(ProducerIdentity),
    /// A new epoch is needed; nothing new goes out meanwhile.
    Bumping {
        current: ProducerIdentity,
        reason: BumpReason,
    },
    /// The producer cannot go on.
    Fatal(Error),
}

/// What the engine should send for the producer id, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitRequest {
    /// `-1` for a fresh id; otherwise the id whose epoch to bump.
    pub(crate) producer_id: i64,
    /// `-1` for a fresh id; otherwise the epoch to bump from.
    pub(crate) epoch: i16,
}

/// One partition's sequence bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PartitionSequences {
    /// The sequence the next drained batch starts at.
    next: i32,
    /// The last sequence the broker acknowledged under the current identity.
    last_acked: Option<i32>,
    /// The offset after the last acknowledged record, 0 before any (for
    /// UNKNOWN_PRODUCER_ID). Not an `Option`: a partition's state is
    /// read at every acknowledgement, and over thousands of partitions
    /// each of its bytes counts (see the engine's `PartitionQueue`).
    acked_end_offset: i64,
}

impl PartitionSequences {
    /// Sequences whose next batch starts at `next` (tests only).
    #[cfg(test)]
    pub(crate) fn starting_at(next: i32) -> PartitionSequences {
        PartitionSequences {
            next,
            last_acked: Some(add_sequence(next, -1)),
            acked_end_offset: 0,
        }
    }

    /// Takes `count` sequences for a batch and returns its base sequence.
    pub(crate) fn assign(&mut self, count: i32) -> i32 {
        let base = self.next;
        self.next = add_sequence(base, count);
        base
    }

    /// The broker acknowledged the batch `base..base+count` at `base_offset`.
    pub(crate) fn acked(&mut self, base: i32, count: i32, base_offset: i64) {
        let last = add_sequence(base, count.saturating_sub(1));
        // Acknowledgements come in sequence order per partition; never go back.
        let newer = self.last_acked.is_none_or(|prev| after(last, prev));
        if newer {
            self.last_acked = Some(last);
        }
        if base_offset >= 0 {
            let end = base_offset.saturating_add(i64::from(count.max(1)));
            self.acked_end_offset = self.acked_end_offset.max(end);
        }
    }

    /// Whether the broker acknowledged anything of this partition under
    /// the current identity (so it now holds state for us there).
    pub(crate) fn has_acked(&self) -> bool {
        self.last_acked.is_some()
    }

    /// The sequence the broker should expect next.
    pub(crate) fn expected(&self) -> i32 {
        self.last_acked.map_or(0, |s| add_sequence(s, 1))
    }

    /// Whether retention removed this producer's state on the broker: its
    /// log now starts after everything we had acknowledged.
    pub(crate) fn removed_by_retention(&self, log_start_offset: i64) -> bool {
        self.acked_end_offset > 0 && log_start_offset >= self.acked_end_offset
    }

    /// Starts over (after a new identity: sequences begin at 0 again).
    pub(crate) fn reset(&mut self) {
        *self = PartitionSequences::default();
    }
}

/// `seq + n` on the broker's sequence circle: after `i32::MAX` comes 0.
pub(crate) fn add_sequence(seq: i32, n: i32) -> i32 {
    let modulus = i64::from(i32::MAX) + 1;
    let sum = (i64::from(seq) + i64::from(n)).rem_euclid(modulus);
    // `sum` is in 0..=i32::MAX by construction.
    i32::try_from(sum).unwrap_or(0)
}

/// Whether `a` comes after `b` on the sequence circle (within half of it).
fn after(a: i32, b: i32) -> bool {
    let modulus = i64::from(i32::MAX) + 1;
    let d = (i64::from(a) - i64::from(b)).rem_euclid(modulus);
    d != 0 && d < modulus / 2
}

/// What the engine does with a batch the broker answered with a
/// sequence-related error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceVerdict {
    /// The broker has it already: count it as delivered (offset unknown).
    Duplicate,
    /// Send it again, in order, under the same stamp.
    RetryInOrder,
    /// Send it again once the epoch was bumped. `not_written`: the broker
    /// proved that no attempt of it (and nothing after it in the partition)
    /// was written, so the new stamp cannot duplicate it.
    RetryAfterBump { not_written: bool },
    /// Fail it (not persisted) and bump the epoch.
    FailAndBump,
    /// Its outcome cannot be known (see `verdict`): fail it as possibly
    /// persisted and bump the epoch. Never reported as delivered.
    Unresolvable,
    /// Not a sequence error: the ordinary retry table decides.
    NotSequenceError,
}

/// The idempotent producer's state.
#[derive(Debug)]
pub(crate) struct Idempotence {
    state: IdState,
    backoff: Duration,
    /// Identity changes after the first (epoch bumps and new ids).
    pub(crate) bumps: u64,
    had_identity: bool,
}

impl Idempotence {
    pub(crate) fn new(backoff: Duration) -> Idempotence {
        Idempotence {
            state: IdState::NoId {
                not_before: None,
                bump_from: None,
            },
            backoff,
            bumps: 0,
            had_identity: false,
        }
    }

    /// The identity to stamp new batches with, when sending is allowed.
    pub(crate) fn ready(&self) -> Option<ProducerIdentity> {
        match self.state {
            IdState::Ready(id) => Some(id),
            _ => None,
        }
    }

    /// The identity batches were last stamped with, while a bump waits for
    /// in-flight requests: possibly-persisted batches stamped with it may
    /// still go out, to be resolved before the bump.
    pub(crate) fn resolving(&self) -> Option<ProducerIdentity> {
        match self.state {
            IdState::Bumping { current, .. } => Some(current),
            _ => None,
        }
    }

    /// The fatal error, if the producer cannot go on.
    pub(crate) fn fatal(&self) -> Option<&Error> {
        match &self.state {
            IdState::Fatal(e) => Some(e),
            _ => None,
        }
    }

    /// Whether an InitProducerId request is due at `now`. `quiet` says that
    /// no Produce request is in flight and nothing possibly persisted waits
    /// to be resolved (a bump waits for that). Returns the request to send
    /// and marks it in flight as `request`.
    pub(crate) fn poll_request(
        &mut self,
        now: Instant,
        quiet: bool,
        request: u64,
    ) -> Option<InitRequest> {
        let bump_from = match self.state {
            IdState::NoId {
                not_before,
                bump_from,
            } => {
                if not_before.is_some_and(|t| now < t) {
                    return None;
                }
                bump_from
            }
            IdState::Bumping { current, reason } if quiet => {
                tracing::debug!(?reason, epoch = current.epoch, "asking for a new epoch");
                Some(current)
            }
            _ => return None,
        };
        self.state = IdState::Requesting { request, bump_from };
        Some(match bump_from {
            // KIP-360 bump, unless the epoch is exhausted: then a new id.
            Some(id) if id.epoch < i16::MAX - 1 => InitRequest {
                producer_id: id.producer_id,
                epoch: id.epoch,
            },
            _ => InitRequest {
                producer_id: -1,
                epoch: -1,
            },
        })
    }

    /// When the state machine wants to act by time alone.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            IdState::NoId { not_before, .. } => not_before,
            _ => None,
        }
    }

    /// Whether `request` is the InitProducerId in flight.
    pub(crate) fn is_request(&self, request: u64) -> bool {
        matches!(self.state, IdState::Requesting { request: r, .. } if r == request)
    }

    /// The InitProducerId answer. On success returns the new identity; the
    /// caller resets every partition's sequences when it differs from the
    /// one before.
    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        result: Result<(i16, i64, i16), Error>,
    ) -> Option<ProducerIdentity> {
        let IdState::Requesting { bump_from, .. } = self.state else {
            return None;
        };
        let retry = |bump_from| IdState::NoId {
            not_before: Some(now + self.backoff),
            bump_from,
        };
        match result {
            Ok((0, producer_id, epoch)) if producer_id >= 0 && epoch >= 0 => {
                let id = ProducerIdentity { producer_id, epoch };
                if bump_from.is_some() || self.had_identity {
                    self.bumps += 1;
                }
                self.had_identity = true;
                tracing::debug!(producer_id, epoch, "producer id ready");
                self.state = IdState::Ready(id);
                Some(id)
            }
            Ok((0, producer_id, epoch)) => {
                self.state = IdState::Fatal(Error::protocol(format!(
                    "InitProducerId returned producer id {producer_id}, epoch {epoch}"
                )));
                None
            }
            Ok((code, _, _)) => {
                let code = KafkaCode::from_i16(code).unwrap_or(KafkaCode::UNKNOWN_SERVER_ERROR);
                self.state = match code {
                    // Our epoch is stale or unknown: start with a fresh id.
                    KafkaCode::INVALID_PRODUCER_EPOCH
                    | KafkaCode::PRODUCER_FENCED
                    | KafkaCode::UNKNOWN_PRODUCER_ID
                    | KafkaCode::INVALID_PRODUCER_ID_MAPPING => retry(None),
                    code if code.is_retriable()
                        || matches!(code, KafkaCode::CONCURRENT_TRANSACTIONS) =>
                    {
                        retry(bump_from)
                    }
                    code => IdState::Fatal(Error::broker(code, "InitProducerId")),
                };
                None
            }
            Err(e) if e.is_fatal() => {
                self.state = IdState::Fatal(e);
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "InitProducerId failed; retrying");
                self.state = retry(bump_from);
                None
            }
        }
    }

    /// Asks for a new epoch. Ignored while one is being obtained, or when
    /// the batch was stamped under an identity that is already gone.
    pub(crate) fn request_bump(&mut self, stamped: Option<ProducerIdentity>, reason: BumpReason) {
        if let IdState::Ready(current) = self.state
            && stamped.is_none_or(|s| s == current)
        {
            tracing::info!(
                ?reason,
                producer_id = current.producer_id,
                epoch = current.epoch,
                "bumping the producer epoch"
            );
            self.state = if reason == BumpReason::InvalidEpoch {
                // The broker does not accept this epoch: bumping it is
                // pointless, take a fresh id.
                IdState::NoId {
                    not_before: None,
                    bump_from: None,
                }
            } else {
                IdState::Bumping { current, reason }
            };
        }
    }

    /// The producer cannot go on.
    /// Takes an identity handed out elsewhere (by the transaction
    /// coordinator, for a transactional producer).
    pub(crate) fn adopt(&mut self, identity: ProducerIdentity) {
        if !matches!(self.state, IdState::Fatal(_)) {
            self.state = IdState::Ready(identity);
        }
    }

    pub(crate) fn set_fatal(&mut self, error: Error) {
        self.state = IdState::Fatal(error);
    }

    /// Interprets a Produce error for a batch stamped `stamp`, whose
    /// partition's sequences are `seq`.
    /// `count` is the batch's record count.
    pub(crate) fn verdict(
        &self,
        code: KafkaCode,
        stamp: Option<(ProducerIdentity, i32)>,
        count: i32,
        seq: &PartitionSequences,
        log_start_offset: i64,
    ) -> SequenceVerdict {
        let current = self.ready().or(self.resolving());
        let stale = stamp.is_none_or(|(id, _)| Some(id) != current);
        let bumping = self.resolving().is_some();
        // Later sequences were acknowledged already. Either this batch is
        // in the log (an earlier attempt whose answer was lost, no longer in
        // the broker's window of recent batches), or it never was: a broker
        // since Kafka 2.5 accepts any sequence from a producer it has no
        // state for, so a later batch can land before a first one that
        // failed. The answer cannot tell which.
        let acked_past = stamp.is_some_and(|(_, base)| {
            seq.last_acked
                .is_some_and(|acked| !after(add_sequence(base, count.max(1) - 1), acked))
        });
        match code {
            KafkaCode::DUPLICATE_SEQUENCE_NUMBER => SequenceVerdict::Duplicate,
            KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER if !stale && acked_past => {
                SequenceVerdict::Unresolvable
            }
            // While a bump waits, a batch behind a gap can never be written
            // under the old epoch: it was not written, and goes again after.
            KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER | KafkaCode::UNKNOWN_PRODUCER_ID
                if !stale && bumping =>
            {
                SequenceVerdict::RetryAfterBump { not_written: true }
            }
            // An answer about an identity we left already: just resend.
            KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER
            | KafkaCode::UNKNOWN_PRODUCER_ID
            | KafkaCode::INVALID_PRODUCER_EPOCH
            | KafkaCode::PRODUCER_FENCED
                if stale =>
            {
                SequenceVerdict::RetryInOrder
            }
            KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER => {
                let base = stamp.map_or(0, |(_, base)| base);
                if base == seq.expected() {
                    SequenceVerdict::FailAndBump
                } else {
                    SequenceVerdict::RetryInOrder
                }
            }
            // An earlier batch of ours is not written yet (it failed and
            // waits for its retry), so the broker may simply not know us
            // yet: resend in order behind it.
            KafkaCode::UNKNOWN_PRODUCER_ID
                if stamp.is_some_and(|(_, base)| base != seq.expected()) =>
            {
                SequenceVerdict::RetryInOrder
            }
            KafkaCode::UNKNOWN_PRODUCER_ID => {
                if seq.removed_by_retention(log_start_offset) {
                    tracing::info!(
                        log_start_offset,
                        "producer state removed by retention; new epoch"
                    );
                } else {
                    tracing::warn!(
                        log_start_offset,
                        "broker lost this producer's state; new epoch"
                    );
                }
                SequenceVerdict::RetryAfterBump { not_written: true }
            }
            KafkaCode::INVALID_PRODUCER_EPOCH | KafkaCode::PRODUCER_FENCED => {
                SequenceVerdict::RetryAfterBump { not_written: false }
            }
            _ => SequenceVerdict::NotSequenceError,
        }
    }

    /// The error a batch failed by [`SequenceVerdict::FailAndBump`] reports.
    pub(crate) fn gap_error(topic: &str, partition: i32, base: i32, expected: i32) -> Error {
        Error::new(
            ErrorKind::Broker(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER),
            format!(
                "{topic}-{partition}: the broker refused sequence {base} although {expected} was next; \
                 the batch was not written and the producer moved to a new epoch"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_from_max_to_zero() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(add_sequence(5, 0), 5);
        let mut s = PartitionSequences {
            next: i32::MAX - 1,
            ..Default::default()
        };
        assert_eq!(s.assign(3), i32::MAX - 1);
        assert_eq!(s.next, 1);
        s.acked(i32::MAX - 1, 3, 100);
        assert_eq!(s.last_acked, Some(0));
        assert_eq!(s.expected(), 1);
        assert!(after(0, i32::MAX));
        assert!(!after(i32::MAX, 0));
    }

    #[test]
    fn acknowledgements_never_move_the_last_sequence_back() {
        let mut s = PartitionSequences::default();
        s.acked(0, 10, 0);
        s.acked(10, 5, 10);
        s.acked(0, 10, 0); // a late duplicate answer
        assert_eq!(s.expected(), 15);
        assert_eq!(s.acked_end_offset, 15);
        assert!(s.removed_by_retention(15));
        assert!(!s.removed_by_retention(14));
    }

    fn ready(id: &mut Idempotence, t: Instant) -> ProducerIdentity {
        let req = id.poll_request(t, true, 1).unwrap();
        assert_eq!(
            req,
            InitRequest {
                producer_id: -1,
                epoch: -1
            }
        );
        id.handle_response(t, Ok((0, 7, 0))).unwrap()
    }

    #[test]
    fn bumps_wait_for_quiet_and_reuse_the_id() {
        let t = Instant::now_for_tests();
        let mut id = Idempotence::new(Duration::from_millis(10));
        let first = ready(&mut id, t);
        id.request_bump(Some(first), BumpReason::UnknownProducer);
        assert_eq!(id.ready(), None, "nothing new goes out during a bump");
        assert_eq!(id.resolving(), Some(first));
        assert_eq!(
            id.poll_request(t, false, 2),
            None,
            "waits for in-flight requests"
        );
        let req = id.poll_request(t, true, 2).unwrap();
        assert_eq!(
            req,
            InitRequest {
                producer_id: 7,
                epoch: 0
            }
        );
        let second = id.handle_response(t, Ok((0, 7, 1))).unwrap();
        assert_eq!(second.epoch, 1);
        assert_eq!(id.bumps, 1);
        // A second request for the same, now stale, identity is ignored.
        id.request_bump(Some(first), BumpReason::UnknownProducer);
        assert_eq!(id.ready(), Some(second));
    }

    #[test]
    fn an_exhausted_epoch_asks_for_a_new_id() {
        let t = Instant::now_for_tests();
        let mut id = Idempotence::new(Duration::from_millis(10));
        ready(&mut id, t);
        id.state = IdState::Ready(ProducerIdentity {
            producer_id: 7,
            epoch: i16::MAX - 1,
        });
        id.request_bump(None, BumpReason::SequenceHole);
        let req = id.poll_request(t, true, 3).unwrap();
        assert_eq!(
            req,
            InitRequest {
                producer_id: -1,
                epoch: -1
            }
        );
    }

    #[test]
    fn retriable_init_errors_back_off_and_authorisation_is_fatal() {
        let t = Instant::now_for_tests();
        let mut id = Idempotence::new(Duration::from_millis(10));
        id.poll_request(t, true, 1).unwrap();
        assert!(
            id.handle_response(
                t,
                Ok((KafkaCode::COORDINATOR_LOAD_IN_PROGRESS.code(), -1, -1))
            )
            .is_none()
        );
        assert_eq!(id.poll_request(t, true, 2), None, "backoff");
        assert_eq!(id.next_deadline(), Some(t + Duration::from_millis(10)));
        id.poll_request(t + Duration::from_millis(10), true, 2)
            .unwrap();
        id.handle_response(
            t,
            Ok((KafkaCode::CLUSTER_AUTHORIZATION_FAILED.code(), -1, -1)),
        );
        assert!(id.fatal().is_some_and(Error::is_fatal));
    }

    #[test]
    fn out_of_order_is_a_gap_only_for_the_next_expected_sequence() {
        let t = Instant::now_for_tests();
        let mut id = Idempotence::new(Duration::from_millis(10));
        let me = ready(&mut id, t);
        let mut seq = PartitionSequences::default();
        seq.acked(0, 10, 0);
        let oos = KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER;
        assert_eq!(
            id.verdict(oos, Some((me, 15)), 5, &seq, 0),
            SequenceVerdict::RetryInOrder
        );
        assert_eq!(
            id.verdict(oos, Some((me, 10)), 5, &seq, 0),
            SequenceVerdict::FailAndBump
        );
        let old = ProducerIdentity {
            producer_id: 7,
            epoch: 9,
        };
        assert_eq!(
            id.verdict(oos, Some((old, 10)), 5, &seq, 0),
            SequenceVerdict::RetryInOrder
        );
        assert_eq!(
            id.verdict(KafkaCode::UNKNOWN_PRODUCER_ID, Some((me, 10)), 5, &seq, 50),
            SequenceVerdict::RetryAfterBump { not_written: true }
        );
        assert_eq!(
            id.verdict(oos, Some((me, 2)), 5, &seq, 0),
            SequenceVerdict::Unresolvable,
            "sequences past it were acknowledged: written or not, nobody can tell"
        );
        assert_eq!(
            id.verdict(KafkaCode::UNKNOWN_PRODUCER_ID, Some((me, 30)), 5, &seq, 50),
            SequenceVerdict::RetryInOrder,
            "behind an unwritten batch"
        );
        assert_eq!(
            id.verdict(
                KafkaCode::DUPLICATE_SEQUENCE_NUMBER,
                Some((me, 0)),
                5,
                &seq,
                0
            ),
            SequenceVerdict::Duplicate
        );
        assert_eq!(
            id.verdict(
                KafkaCode::NOT_LEADER_OR_FOLLOWER,
                Some((me, 10)),
                5,
                &seq,
                0
            ),
            SequenceVerdict::NotSequenceError
        );
    }

    trait NowForTests {
        fn now_for_tests() -> Instant;
    }

    impl NowForTests for Instant {
        #[allow(clippy::disallowed_methods)]
        fn now_for_tests() -> Instant {
            Instant::now()
        }
    }
}
