//! Outcomes: what a Produce answer (or its absence) means for each batch
//! it carried: delivered, retried in place, failed, or a sequence hole that
//! needs a new epoch; and the buffer accounting released when a batch is
//! done.

use std::time::{Duration, Instant};

use kafka_protocol::messages::ProduceResponse;

use super::answers::Answers;
use super::identity::identity_of;
use super::interface::{Acks, DeliveredBatch, Event, SendFailure};
use super::{Engine, InFlight, InFlightBatch, TopicQueues, leader_latency};
use crate::engine::accumulator::{Batch, PartitionQueue, PendingRecord, Stamp};
use crate::engine::idempotence::{BumpReason, Idempotence, ProducerIdentity, SequenceVerdict};
use crate::engine::retry::{Outcome, RetryAction, classify};
use crate::engine::topic_table::TopicTable;
use crate::error::{Error, ErrorKind};
use crate::protocol::KafkaCode;
use crate::record::Topic;
use crate::record_batch::RecordsError;

impl Engine {
    /// Fails every record not in flight: waiting ones and queued batches
    /// (a queued retry fails as possibly persisted). Returns whether a
    /// failed batch held sequence numbers (it leaves a hole behind).
    pub(super) fn fail_unsent(&mut self, reason: &Error) -> bool {
        self.walk_all = true;
        let mut stamped = false;
        while let Some(w) = self.waiting.pop_front() {
            self.held_records -= 1;
            self.fail_record(w.token, w.reserved, reason.clone_shallow());
        }
        let mut unsent: Vec<(Topic, i32, Vec<PendingRecord>, bool)> = Vec::new();
        for (topic, _, tq) in self.topics.iter_mut() {
            for (p, pq) in tq.partitions.iter_mut().enumerate() {
                stamped |= pq.queue.iter().any(|b| b.stamp.is_some());
                for (records, maybe) in pq.take_all() {
                    unsent.push((topic.clone(), p as i32, records, maybe));
                }
            }
        }
        for (topic, partition, records, maybe) in unsent {
            let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
            self.release(&topic, partition, bytes);
            self.fail_records(
                &topic,
                partition,
                &records,
                &reason.clone_shallow().with_possibly_persisted(maybe),
            );
        }
        stamped
    }

    /// A Produce request finished (or failed without a response).
    pub(crate) fn handle_produce_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<ProduceResponse, SendFailure>,
    ) {
        self.now = Some(now);
        let Some(mut request) = self.in_flight.remove(&id) else {
            self.pump(now);
            return;
        };
        if let Some(n) = self.node_in_flight.get_mut(&request.node) {
            *n = n.saturating_sub(1);
        }
        match &result {
            Ok(_) => self
                .stats
                .response(request.node, now.saturating_duration_since(request.sent_at)),
            Err(_) => self.stats.request_failed(request.node),
        }
        match result {
            Err(failure) => {
                tracing::debug!(node = request.node, error = %failure.error, "produce request failed");
                let written = failure.written;
                for b in request.batches.drain(..) {
                    let outcome = if failure.error.is_fatal() {
                        Outcome::Fatal { written }
                    } else {
                        Outcome::Transport { written }
                    };
                    self.complete_with_error(now, b, outcome, &failure.error, -1);
                }
            }
            Ok(response) => {
                self.note_leader_latency(now, &request);
                let mut answers = Answers::new(&response);
                for b in request.batches.drain(..) {
                    let found = answers.find(&b.topic, b.partition);
                    match (self.config.acks, found) {
                        (Acks::None, _) => self.deliver(b, -1, -1),
                        (_, Some(a)) if a.code == 0 => {
                            self.deliver(b, a.base_offset, a.log_append_time)
                        }
                        (_, Some(a)) => {
                            let code = KafkaCode::from_i16(a.code)
                                .unwrap_or(KafkaCode::UNKNOWN_SERVER_ERROR);
                            let err = Error::broker(
                                code,
                                format_args!("producing to {}-{}", b.topic, b.partition),
                            );
                            let outcome =
                                if self.take_leader_hint(&b, code, a.leader_hint, &response) {
                                    Outcome::LeaderMoved
                                } else {
                                    Outcome::Code(code)
                                };
                            self.complete_with_error(now, b, outcome, &err, a.log_start_offset);
                        }
                        (_, None) => {
                            let err = Error::protocol(format!(
                                "the Produce response did not mention {}-{}",
                                b.topic, b.partition
                            ));
                            self.complete_with_error(now, b, Outcome::MissingPartition, &err, -1);
                        }
                    }
                }
            }
        }
        self.spare_batch_lists.keep(request.batches);
        self.pump(now);
    }

    /// `request` was answered at `now`: its latency joins its broker's
    /// average, which each of its batches' partitions takes; at most every
    /// [`leader_latency::REFRESH`], every partition of their topics takes
    /// its own leader's average too.
    fn note_leader_latency(&mut self, now: Instant, request: &InFlight) {
        let latency = self.leader_latency.observe(
            request.node,
            now,
            now.saturating_duration_since(request.sent_at),
        );
        for b in &request.batches {
            let Some(tq) = self.topics.at_mut(b.slot) else {
                continue;
            };
            if let Some(figure) = usize::try_from(b.partition)
                .ok()
                .and_then(|i| tq.leader_latency_us.get_mut(i))
            {
                *figure = latency;
            }
            let due = tq
                .latency_refreshed
                .is_none_or(|at| now.saturating_duration_since(at) >= leader_latency::REFRESH);
            if let Some((_, info)) = self.metadata.topic_at(tq.metadata).filter(|_| due) {
                self.leader_latency.refresh(info, &mut tq.leader_latency_us);
                tq.latency_refreshed = Some(now);
            }
        }
    }

    /// The identity a batch was stamped with, when it is the current one.
    pub(super) fn current_stamp(&self, b: &InFlightBatch) -> Option<Stamp> {
        b.batch
            .stamp
            .filter(|s| Some(identity_of(*s)) == self.stamped_identity)
    }

    /// A stamped batch will never be acknowledged: its sequences are a hole
    /// that later batches cannot cross, so the epoch must move on.
    pub(super) fn sequence_hole(&mut self, b: &InFlightBatch) {
        let Some(stamp) = self.current_stamp(b) else {
            return;
        };
        // Only a batch that no attempt may have written proves that nothing
        // behind it was written either.
        if !b.batch.maybe_persisted {
            self.not_written_behind(b);
        }
        self.request_bump(Some(identity_of(stamp)), BumpReason::SequenceHole);
    }

    /// A sequence can no longer be trusted. Outside a transaction the epoch
    /// is bumped once the partition is quiet; inside one the epoch stays
    /// (scenario 36) and the abort bumps it.
    pub(super) fn request_bump(&mut self, stamped: Option<ProducerIdentity>, reason: BumpReason) {
        if let Some(txn) = self.txn.as_mut() {
            txn.sequences_broken();
        } else if let Some(idem) = self.idempotence.as_mut() {
            idem.request_bump(stamped, reason);
        }
    }

    /// The broker cannot have written anything of `b`'s partition stamped
    /// after `b` under the same identity (sequences are written in order,
    /// and `b` was not): those batches need no resolution before a bump.
    pub(super) fn not_written_behind(&mut self, b: &InFlightBatch) {
        let Some(stamp) = b.batch.stamp else {
            return;
        };
        let order = b.batch.order;
        if let Some(pq) = self.partition_queue(&b.topic, b.partition) {
            for later in pq.queue.iter_mut().filter(|q| q.order > order) {
                if later.stamp.map(identity_of) == Some(identity_of(stamp)) {
                    later.maybe_persisted = false;
                }
            }
        }
    }

    /// The broker wrote `b` at `base_offset`. Its partition is read once
    /// for all this touches there (sequences, the batches in flight, bytes
    /// held, counters): over thousands of partitions each read is likely a
    /// cache miss.
    pub(super) fn deliver(&mut self, b: InFlightBatch, base_offset: i64, log_append_time: i64) {
        if let Some(now) = self.now {
            self.backlog.delivered(now);
        }
        let stamp = self.current_stamp(&b);
        if let Some(pq) = settle_batch(&mut self.topics, &mut self.buffer_used, &b) {
            if let Some(stamp) = stamp {
                let count = b.batch.sealed.record_count();
                pq.sequences.acked(stamp.base_sequence, count, base_offset);
            }
            if !b.resolved {
                let wire_len = b.batch.wire_len.unwrap_or_else(|| b.batch.sealed.len());
                self.stats
                    .batch_delivered(&mut pq.counts, b.batch.records.len(), wire_len);
            }
        }
        if b.resolved {
            return;
        }
        self.settle_delivered(b.batch.records.len() as u64);
        self.events.push_back(Event::Delivered(DeliveredBatch {
            topic: b.topic,
            partition: b.partition,
            base_offset,
            log_append_time,
            base_timestamp: b.batch.sealed.base_timestamp(),
            records: b.batch.records,
        }));
        self.spare_buffers.give(b.batch.sealed.into_bytes());
    }

    /// An attempt failed. Idempotence reads sequence errors first (see
    /// `idempotence`); everything else goes through the retry table.
    pub(super) fn complete_with_error(
        &mut self,
        now: Instant,
        mut b: InFlightBatch,
        outcome: Outcome,
        error: &Error,
        log_start_offset: i64,
    ) {
        // Retries, bumps, leader moves and failures change which partitions
        // may send in ways the ready index does not follow.
        self.walk_all = true;
        if b.resolved {
            // Expired in flight (scenario 15): the answer still resolves its
            // sequences, but the records were reported already.
            if outcome == Outcome::Code(KafkaCode::DUPLICATE_SEQUENCE_NUMBER) {
                self.deliver(b, -1, -1);
            } else {
                self.sequence_hole(&b);
                self.unmute(&b);
            }
            return;
        }
        // Scenario 18: too large for the broker; split and resend in order.
        if matches!(
            outcome,
            Outcome::Code(KafkaCode::MESSAGE_TOO_LARGE | KafkaCode::RECORD_LIST_TOO_LARGE)
        ) && let Some((first, second)) = b.batch.split(self.batch_config)
        {
            tracing::debug!(topic = %b.topic, partition = b.partition, records = b.batch.records.len(), "splitting a batch the broker found too large");
            // Same place: the first half goes back first, the second lands
            // right behind it.
            self.put_back(&b.topic, b.partition, b.batch.order, [first, second]);
            return;
        }
        if let (Some(txn), Outcome::Code(code)) = (&self.txn, outcome)
            && crate::engine::txn::is_fatal_txn_code(code)
        {
            // Scenario 33: a zombie learns it was fenced at its next send.
            let error = match code {
                KafkaCode::PRODUCER_FENCED | KafkaCode::INVALID_PRODUCER_EPOCH => {
                    crate::engine::txn::fenced(
                        txn.transactional_id(),
                        format_args!("Produce to {}-{}", b.topic, b.partition),
                    )
                }
                _ => error.clone_shallow(),
            };
            self.fail_batch(&b, &error.clone_shallow().with_possibly_persisted(false));
            self.go_fatal(now, error);
            return;
        }
        if let (Some(idem), Outcome::Code(code)) = (&self.idempotence, outcome) {
            let sequences = self
                .topics
                .get(&b.topic)
                .and_then(|tq| tq.partitions.get(b.partition as usize))
                .map(|pq| pq.sequences)
                .unwrap_or_default();
            let stamp = b.batch.stamp.map(|s| (identity_of(s), s.base_sequence));
            let count = b.batch.sealed.record_count();
            match idem.verdict(code, stamp, count, &sequences, log_start_offset) {
                SequenceVerdict::NotSequenceError => {}
                SequenceVerdict::Duplicate => return self.deliver(b, -1, -1),
                SequenceVerdict::RetryInOrder => {
                    return self.retry(now, b, false, false, error);
                }
                SequenceVerdict::RetryAfterBump { not_written } => {
                    if not_written {
                        // Neither this batch nor any later one of the
                        // partition under this identity was written.
                        b.batch.maybe_persisted = false;
                        self.not_written_behind(&b);
                    }
                    let reason = match code {
                        KafkaCode::UNKNOWN_PRODUCER_ID => BumpReason::UnknownProducer,
                        KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER => BumpReason::SequenceHole,
                        _ => BumpReason::InvalidEpoch,
                    };
                    if self.txn.is_some() {
                        // No bump inside a transaction: the batch fails,
                        // and so does the transaction (scenario 36).
                        self.request_bump(None, reason);
                        let maybe = b.batch.maybe_persisted && !not_written;
                        self.fail_batch(&b, &error.clone_shallow().with_possibly_persisted(maybe));
                        return;
                    }
                    self.request_bump(stamp.map(|(id, _)| id), reason);
                    return self.retry(now, b, false, false, error);
                }
                SequenceVerdict::Unresolvable => {
                    self.request_bump(stamp.map(|(id, _)| id), BumpReason::SequenceHole);
                    let err = Error::broker(
                        code,
                        format_args!(
                            "{}-{}: a batch behind acknowledged sequences was refused; \
                             it may or may not have been written",
                            b.topic, b.partition
                        ),
                    )
                    .with_possibly_persisted(true);
                    self.fail_batch(&b, &err);
                    return;
                }
                SequenceVerdict::FailAndBump => {
                    self.not_written_behind(&b);
                    self.request_bump(stamp.map(|(id, _)| id), BumpReason::SequenceGap);
                    let base = stamp.map_or(0, |(_, base)| base);
                    let err =
                        Idempotence::gap_error(&b.topic, b.partition, base, sequences.expected());
                    self.fail_batch(&b, &err);
                    return;
                }
            }
        }
        match classify(outcome) {
            RetryAction::Retry {
                refresh_metadata,
                possibly_persisted,
                backoff,
            } if now < b.batch.created + self.config.delivery_timeout => {
                b.batch.maybe_persisted |= possibly_persisted;
                self.retry(now, b, refresh_metadata, backoff, error);
            }
            RetryAction::Retry {
                possibly_persisted, ..
            } => {
                let maybe = b.batch.maybe_persisted || possibly_persisted;
                self.sequence_hole(&b);
                let err = Error::new(
                    ErrorKind::DeliveryTimeout,
                    format!(
                        "{}-{}: delivery_timeout ({:?}) passed; last error: {error}",
                        b.topic, b.partition, self.config.delivery_timeout
                    ),
                )
                .with_possibly_persisted(maybe);
                self.fail_batch(&b, &err);
            }
            RetryAction::Fail { possibly_persisted } => {
                let maybe = b.batch.maybe_persisted || possibly_persisted;
                self.sequence_hole(&b);
                self.fail_batch(&b, &error.clone_shallow().with_possibly_persisted(maybe));
                if error.is_fatal() {
                    // Scenario 20: CLUSTER_AUTHORIZATION_FAILED and the like
                    // end the producer; late answers find nothing to resolve.
                    self.go_fatal(now, error.clone_shallow().with_possibly_persisted(false));
                }
            }
        }
    }

    /// Puts a batch back in its partition's queue, at its place, to be sent
    /// again after the backoff (`backoff` false: at once).
    pub(super) fn retry(
        &mut self,
        now: Instant,
        mut b: InFlightBatch,
        refresh_metadata: bool,
        backoff: bool,
        error: &Error,
    ) {
        let wait = if backoff {
            self.jitter.backoff(
                self.config.retry_backoff,
                self.config.retry_backoff_max,
                b.batch.attempts,
            )
        } else {
            Duration::ZERO
        };
        b.batch.retry_at = Some(now + wait);
        if refresh_metadata {
            self.metadata.invalidate(&b.topic, b.partition);
        }
        tracing::debug!(topic = %b.topic, partition = b.partition, %error, ?wait, "retrying batch");
        let order = b.batch.order;
        self.put_back(&b.topic, b.partition, order, [b.batch]);
    }

    /// Puts what an attempt of the batch sealed as `order` carried (the
    /// batch, or the halves of a split one) back in its partition's queue,
    /// at its place, and counts the retry. The partition counts as active
    /// (its batches are drained and expired) until a drain pass finds it
    /// empty.
    fn put_back(
        &mut self,
        topic: &str,
        partition: i32,
        order: u64,
        batches: impl IntoIterator<Item = Batch>,
    ) {
        // A batch put back (with its backoff) is found by the next walk.
        self.walk_all = true;
        if let Some(tq) = self.topics.get_mut(topic)
            && let Ok(index) = usize::try_from(partition)
            && let Some(pq) = tq.partitions.get_mut(index)
        {
            tq.active.insert(index);
            self.stats.batch_retried(&mut pq.counts);
            pq.settled(order);
            for batch in batches {
                pq.requeue(batch);
            }
        }
    }

    /// KIP-951: a leadership error that names the partition's new leader
    /// (and, in `node_endpoints`, its address) updates the metadata cache
    /// directly. Returns whether the cache took the hint.
    pub(super) fn take_leader_hint(
        &mut self,
        b: &InFlightBatch,
        code: KafkaCode,
        (leader, epoch): (i32, i32),
        response: &ProduceResponse,
    ) -> bool {
        if !matches!(
            code,
            KafkaCode::NOT_LEADER_OR_FOLLOWER | KafkaCode::FENCED_LEADER_EPOCH
        ) {
            return false;
        }
        let endpoint = response
            .node_endpoints
            .iter()
            .find(|n| n.node_id.0 == leader)
            .and_then(|n| {
                let port = u16::try_from(n.port).ok()?;
                let broker = crate::metadata::BrokerMetadata {
                    id: leader,
                    host: n.host.to_string(),
                    port,
                    rack: None,
                };
                Some(broker.address())
            });
        let taken = self
            .metadata
            .apply_leader_hint(&b.topic, b.partition, leader, epoch, endpoint);
        if taken {
            tracing::debug!(topic = %b.topic, partition = b.partition, leader, epoch, "leader hint taken (KIP-951)");
            self.stats.leader_hint();
        }
        taken
    }

    /// A batch in flight fails for good: it settles and its records fail
    /// with `error`.
    pub(super) fn fail_batch(&mut self, b: &InFlightBatch, error: &Error) {
        self.unmute(b);
        self.fail_records(&b.topic, b.partition, &b.batch.records, error);
    }

    /// A batch of the partition is no longer in flight (and will not be
    /// again): one fewer in flight, and its buffer bytes released.
    pub(super) fn unmute(&mut self, b: &InFlightBatch) {
        settle_batch(&mut self.topics, &mut self.buffer_used, b);
    }

    /// `bytes` of buffer held by records of `topic`-`partition` are free.
    pub(super) fn release(&mut self, topic: &str, partition: i32, bytes: usize) {
        self.buffer_used = self.buffer_used.saturating_sub(bytes);
        if let Some(tq) = self.topics.get_mut(topic)
            && let Ok(index) = usize::try_from(partition)
        {
            tq.release(index, bytes);
        }
    }

    /// Fails records accepted into `topic`-`partition`.
    pub(super) fn fail_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[PendingRecord],
        error: &Error,
    ) {
        if let Some(pq) = self.partition_queue(topic, partition) {
            pq.counts.records_failed(records.len());
        }
        for r in records {
            self.held_records = self.held_records.saturating_sub(1);
            self.fail_record(r.token, r.reserved(), error.clone_shallow());
        }
    }

    pub(super) fn fail_record(&mut self, token: u64, reserved: usize, error: Error) {
        if let Some(txn) = self.txn.as_mut() {
            txn.record_failed(&error);
        }
        self.stats.record_failed();
        self.events.push_back(Event::Failed {
            token,
            reserved,
            error,
        });
    }

    /// Records delivered or failed leave the held count here.
    pub(super) fn settle_delivered(&mut self, n: u64) {
        self.held_records = self.held_records.saturating_sub(n);
    }
}

/// What [`Engine::unmute`] does, over the engine's fields rather than the
/// whole engine: the batch's buffer bytes leave `buffer_used` and its
/// partition, which has one fewer in flight (see [`TopicQueues::settle`]).
/// Returns the partition's queue, so that a delivery can count into its
/// counters with the stats book in the same look.
fn settle_batch<'t>(
    topics: &'t mut TopicTable<TopicQueues>,
    buffer_used: &mut usize,
    b: &InFlightBatch,
) -> Option<&'t mut PartitionQueue> {
    let bytes = b.batch.reserved();
    *buffer_used = buffer_used.saturating_sub(bytes);
    let index = usize::try_from(b.partition).ok()?;
    topics.at_mut(b.slot)?.settle(index, b.batch.order, bytes)
}

pub(super) fn records_error(e: RecordsError) -> Error {
    match e {
        RecordsError::RecordTooLarge { .. } => Error::new(ErrorKind::RecordTooLarge, e.to_string()),
        other => Error::protocol(format!("building a record batch: {other}")),
    }
}
