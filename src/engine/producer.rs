//! The producer engine: sans-IO. It takes records, metadata and responses
//! as inputs, and hands out Produce and Metadata requests, timer deadlines
//! and delivery events as outputs. It owns the metadata cache, the
//! accumulator, buffer accounting, in-flight tracking and retries.
//!
//! ```text
//!  append(now, ..) ──► waiting (FIFO: metadata, buffer space) ──► accumulator
//!                                                                    │ ready
//!  handle_timeout(now)                                               ▼
//!  handle_produce_response(now, ..) ◄── in flight ◄── drain: one Produce per broker
//!  handle_metadata_response(now, ..)                     (rotating start partition)
//!
//!  outputs: poll_transmit() · poll_timeout() · poll_event()
//! ```
//!
//! A record's life, as the caller sees it:
//!
//! ```text
//!  Waiting ──► Accepted ──► Delivered
//!     │            └──────► Failed (not persisted | possibly persisted)
//!     └─ max_block passed / too large / bad partition ──► Failed (not persisted)
//! ```
//!
//! Ordering: without idempotence a partition has at most one batch in
//! flight (the Java client's `guaranteeMessageOrder` muting), while a
//! connection carries up to `max_in_flight` requests for other partitions.
//! With idempotence (the default, see `idempotence`) a partition has up to
//! `max_in_flight` (at most 5) batches in flight, each stamped at drain with
//! the producer id, epoch and its sequences; the broker refuses anything out
//! of sequence, and the network layer writes one broker's requests in drain
//! order. Either way a retried batch goes back to its place in its
//! partition's queue (by creation order), and a retry at the head goes out
//! alone until it is resolved.
//!
//! Inputs also include `handle_init_producer_id_response`; outputs include
//! `Transmit::InitProducerId` and the `Initialised` / `Fatal` events.
//!
//! The engine takes decoded responses: the connection layer already
//! decodes them through the bounded-decoding guard, so the engine does not
//! see correlation ids or bytes (a deviation from a bytes-in engine that
//! keeps decoding in one place).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::{Incoming, PartitionQueue, PendingRecord, Stamp};
use super::idempotence::{BumpReason, Idempotence, ProducerIdentity, SequenceVerdict};
use super::metadata_cache::MetadataCache;
use super::retry::{Jitter, Outcome, RetryAction, classify};
use super::stats::{ProducerStats, StatsBook};
use super::txn::{Transactions, TxnAnswer, TxnEffect, TxnOp, TxnRequest};
use crate::compression::Compression;
use crate::engine::partitioner::{EnginePartitioner, PartitionView, Partitioner, check_explicit};
use crate::error::{Error, ErrorKind};
use crate::metadata::ClusterMetadata;
use crate::protocol::KafkaCode;
use crate::record::{Record, RecordMetadata, Topic};
use crate::records::{BATCH_HEADER_LEN, BatchConfig, BufferPool, RecordsError};

/// How many acknowledgements a Produce request waits for.
///
/// ```
/// use smartkafka::Acks;
/// assert_eq!(Acks::default(), Acks::All);
/// assert_eq!(Acks::Leader.as_i16(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Acks {
    /// No acknowledgement (`acks=0`): fire and forget; offsets are unknown
    /// and failures after the write go unnoticed.
    None,
    /// The leader wrote the records (`acks=1`).
    Leader,
    /// Every in-sync replica has the records (`acks=all`, the default).
    #[default]
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Engine settings (built from the producer configuration).
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) max_request_size: usize,
    /// How long a record appended without a deadline of its own may wait
    /// for its topic's metadata and for buffer space.
    pub(crate) max_block: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) compression: Compression,
    pub(crate) compression_level: Option<i32>,
    pub(crate) metadata_max_age: Duration,
    pub(crate) partitioner: EnginePartitioner,
    pub(crate) seed: u64,
    /// Idempotence (KIP-98): producer id, epochs and sequence numbers.
    pub(crate) idempotence: bool,
    /// Transactions (KIP-98): the transactional id and the timeout the
    /// coordinator aborts an open transaction after. Implies idempotence.
    pub(crate) transactional_id: Option<String>,
    pub(crate) transaction_timeout: Duration,
}

/// A request for the I/O layer to send.
#[derive(Debug)]
pub(crate) enum Transmit {
    /// A Produce request to one broker.
    Produce {
        id: u64,
        node: i32,
        addr: String,
        request: ProduceRequest,
        /// `false` with acks = 0: the broker sends no response.
        expects_response: bool,
    },
    /// An InitProducerId request (no transactional id), to `node` or
    /// (`None`) any bootstrap server. `producer_id`/`epoch` are -1 for a
    /// fresh id, or the identity to bump (KIP-360; a broker below
    /// InitProducerId v3 cannot bump, and the driver asks it for a fresh id).
    InitProducerId {
        id: u64,
        node: Option<(i32, String)>,
        producer_id: i64,
        epoch: i16,
    },
    /// A Metadata request, to `node` or (`None`) any bootstrap server.
    Metadata {
        id: u64,
        node: Option<(i32, String)>,
        topics: Vec<String>,
    },
    /// A transactional request (see `txn`), to `node` (a coordinator) or
    /// (`None`) any broker.
    Txn {
        id: u64,
        node: Option<(i32, String)>,
        transactional_id: String,
        request: TxnRequest,
    },
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub(crate) error: Error,
    /// Whether the request may have reached the broker.
    pub(crate) written: bool,
}

/// What the engine reports about records.
#[derive(Debug)]
pub(crate) enum Event {
    /// The record is in the accumulator; `send` may return.
    Accepted { token: u64 },
    /// A batch of records is in the log (one event for all of them: no
    /// copy of the topic name per record).
    Delivered(DeliveredBatch),
    /// The record failed; `error.possibly_persisted()` says whether it may
    /// be in the log anyway. `reserved` is its size as appended
    /// (`Record::estimated_size`), so that the caller need not keep it.
    Failed {
        token: u64,
        reserved: usize,
        error: Error,
    },
    /// The producer has its first producer id (idempotence): it can send.
    Initialised,
    /// The producer cannot go on; every record failed with `error`, and so
    /// will every later one.
    Fatal { error: Error },
    /// A transactional call (`Engine::transaction`) completed.
    TxnDone { op: u64, result: Result<(), Error> },
}

/// The records of one acknowledged batch, in offset order.
#[derive(Debug)]
pub(crate) struct DeliveredBatch {
    pub(crate) topic: Topic,
    pub(crate) partition: i32,
    /// Offset of the first record; -1 when unknown (acks=0, a duplicate).
    base_offset: i64,
    /// The broker's timestamp for the batch (LogAppendTime), or -1.
    log_append_time: i64,
    /// The batch's base timestamp (the records' are relative to it).
    base_timestamp: i64,
    /// Each record's token, timestamp and reserved size
    /// (`Record::estimated_size` as appended, so the caller need not keep
    /// it).
    pub(crate) records: Vec<PendingRecord>,
}

impl DeliveredBatch {
    /// The offset of the batch's `index`th record (-1 when unknown).
    pub(crate) fn offset(&self, index: usize) -> i64 {
        if self.base_offset >= 0 {
            self.base_offset + index as i64
        } else {
            -1
        }
    }

    /// The timestamp the log holds for `record`.
    pub(crate) fn timestamp(&self, record: &PendingRecord) -> i64 {
        if self.log_append_time >= 0 {
            self.log_append_time
        } else {
            record.timestamp(self.base_timestamp)
        }
    }

    /// The metadata reported for the batch's `index`th record.
    pub(crate) fn metadata(&self, index: usize) -> RecordMetadata {
        RecordMetadata {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset(index),
            timestamp: self.records.get(index).map_or(-1, |r| self.timestamp(r)),
        }
    }
}

/// One partition's answer in a Produce response.
#[derive(Debug, Clone, Copy)]
struct PartitionAnswer {
    code: i16,
    base_offset: i64,
    log_append_time: i64,
    /// KIP-951 `current_leader`: (leader id, leader epoch), -1 when absent.
    leader_hint: (i32, i32),
    log_start_offset: i64,
}

struct Waiting {
    token: u64,
    record: Record,
    timestamp: i64,
    reserved: usize,
    /// When it stops waiting for metadata or buffer space and fails.
    deadline: Instant,
    /// Whether to report its acceptance.
    report_acceptance: bool,
}

#[derive(Default)]
struct TopicQueues {
    partitions: Vec<PartitionQueue>,
    held: Vec<u64>,
    /// Per partition, the keyless bytes appended since the sticky
    /// partitioner last moved on from it (KIP-794; see [`sticky_switch_due`]).
    keyless_bytes: Vec<u64>,
}

/// KIP-794's rule for moving a sticky partition on: once at least
/// `batch_size` bytes of keyless records went to it, however many batches
/// carried them (linger seals part-full batches at moderate rates), at a
/// batch boundary (the partition had no open batch, or a full one was
/// sealed); and at twice `batch_size` in any case. This is the Java
/// client's `BuiltInPartitioner` rule; counting bytes, not full batches,
/// is what keeps a producer at 5,000 records/s from feeding one partition.
pub(crate) fn sticky_switch_due(produced: u64, batch_size: u64, at_batch_boundary: bool) -> bool {
    (produced >= batch_size && at_batch_boundary) || produced >= batch_size.saturating_mul(2)
}

struct InFlightBatch {
    topic: Topic,
    partition: i32,
    batch: super::accumulator::Batch,
    /// Failed already (delivery timeout); a late response is ignored.
    resolved: bool,
}

struct InFlight {
    node: i32,
    /// When the request was handed to the network.
    sent_at: Instant,
    batches: Vec<InFlightBatch>,
}

/// The sans-IO producer engine.
pub(crate) struct Engine {
    config: EngineConfig,
    batch_config: BatchConfig,
    metadata: MetadataCache,
    partitioner: Box<dyn Partitioner>,
    topics: BTreeMap<Topic, TopicQueues>,
    waiting: VecDeque<Waiting>,
    buffer_blocked: bool,
    in_flight: BTreeMap<u64, InFlight>,
    node_in_flight: BTreeMap<i32, usize>,
    /// Per broker, the partition the last request started with.
    drain_cursor: BTreeMap<i32, (Topic, i32)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    buffer_used: usize,
    held_records: u64,
    next_id: u64,
    flush_mark: u64,
    jitter: Jitter,
    stats: StatsBook,
    now: Option<Instant>,
    /// `Some` with idempotence on.
    idempotence: Option<Idempotence>,
    /// Whether `Event::Initialised` went out.
    initialised: bool,
    /// The identity partitions' sequences belong to.
    stamped_identity: Option<ProducerIdentity>,
    /// Set once the producer failed fatally.
    fatal_error: Option<Error>,
    /// Set while no bootstrap server could be reached at start-up (see
    /// [`cluster_unreachable`](Self::cluster_unreachable)); cleared by the
    /// first metadata answer.
    unreachable: Option<Error>,
    /// `Some` for a transactional producer.
    txn: Option<Transactions>,
    /// The last token appended (a commit flushes up to it).
    last_token: u64,
    /// The caller's name of the topic last seen, with the engine's (see
    /// `topic_key`): records for it (the same shared name) skip the
    /// lookups.
    hot_topic: Option<(Topic, Topic)>,
    /// Buffers of acknowledged batches, for new batches to be encoded into.
    spare_buffers: BufferPool,
}

/// Spare batch buffers are kept up to this many requests' worth (the
/// batches of a few acknowledged requests come back at once, and the next
/// batches start soon after), and no more than an eighth of
/// `buffer_memory` in all.
const SPARE_REQUESTS: usize = 4;

impl Engine {
    pub(crate) fn new(config: EngineConfig) -> Engine {
        let batch_config = BatchConfig {
            compression: config.compression,
            level: config.compression_level,
            max_batch_bytes: config.batch_size,
            hard_max_bytes: config.max_request_size,
            uncompressed_fallback: true,
        };
        Engine {
            batch_config,
            metadata: MetadataCache::new(config.metadata_max_age, config.retry_backoff),
            partitioner: config.partitioner.build(config.seed),
            topics: BTreeMap::new(),
            waiting: VecDeque::new(),
            buffer_blocked: false,
            in_flight: BTreeMap::new(),
            node_in_flight: BTreeMap::new(),
            drain_cursor: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            buffer_used: 0,
            held_records: 0,
            next_id: 1,
            flush_mark: 0,
            jitter: Jitter::new(config.seed ^ 0x6a09_e667_f3bc_c908),
            stats: StatsBook::default(),
            now: None,
            idempotence: config
                .idempotence
                .then(|| Idempotence::new(config.retry_backoff)),
            initialised: false,
            stamped_identity: None,
            fatal_error: None,
            unreachable: None,
            txn: config
                .transactional_id
                .clone()
                .map(|id| Transactions::new(id, config.transaction_timeout, config.retry_backoff)),
            last_token: 0,
            hot_topic: None,
            spare_buffers: {
                let each = config.batch_size.min(config.max_request_size).max(1);
                let bytes =
                    (SPARE_REQUESTS * config.max_request_size).min(config.buffer_memory / 8);
                BufferPool::new(bytes / each, each)
            },
            config,
        }
    }

    // ----- inputs and commands -------------------------------------------

    /// Takes a record. `token` identifies it in events and must grow with
    /// every call (flush relies on it). `timestamp_now` (ms since the Unix
    /// epoch) stamps records without a timestamp. The record may wait for
    /// its topic's metadata and for buffer space until `deadline`, or
    /// without one for `max_block` from `now` (a fresh producer does not
    /// fail records only because their metadata is on its way, as
    /// librdkafka holds them). Its acceptance is reported
    /// ([`Event::Accepted`]).
    #[cfg_attr(not(test), allow(dead_code))] // the driver defers; tests and the simulation do not
    pub(crate) fn append(
        &mut self,
        now: Instant,
        timestamp_now: i64,
        record: Record,
        token: u64,
        deadline: Option<Instant>,
    ) {
        self.append_deferred(now, timestamp_now, record, token, deadline, true);
        self.pump(now);
    }

    /// [`append`](Self::append) without the pass that acts on it: the
    /// record is encoded into its batch at once when it can be (nothing
    /// waits before it, its topic is known, it fits), or joins the waiting
    /// line; either way nothing is sent until the next input or
    /// [`handle_timeout`](Self::handle_timeout), so a run of appends costs
    /// one pass over the partitions. With `report_acceptance`, acceptance
    /// is reported with [`Event::Accepted`] (only a caller that waits for
    /// it asks: an event per record would cost memory for nothing).
    pub(crate) fn append_deferred(
        &mut self,
        now: Instant,
        timestamp_now: i64,
        record: Record,
        token: u64,
        deadline: Option<Instant>,
        report_acceptance: bool,
    ) {
        self.now = Some(now);
        self.last_token = self.last_token.max(token);
        let reserved = record.estimated_size();
        if let Some(error) = &self.fatal_error {
            let error = error.clone_shallow().with_possibly_persisted(false);
            self.fail_record(token, reserved, error);
            return;
        }
        if let Some(Err(error)) = self.txn.as_ref().map(Transactions::check_send) {
            self.fail_record(token, reserved, error);
            return;
        }
        if let Err(error) = check_size(
            reserved,
            self.config.max_request_size,
            self.config.buffer_memory,
        ) {
            self.fail_record(token, reserved, error);
            return;
        }
        if let Some(error) = self.illegal_topic(&record.topic) {
            self.fail_record(token, reserved, error);
            return;
        }
        let key = self.known_topic(&record.topic);
        if key.is_none()
            && let Some(error) = &self.unreachable
        {
            let error = error.clone_shallow().with_possibly_persisted(false);
            self.fail_record(token, reserved, error);
            return;
        }
        let timestamp = record.timestamp.unwrap_or(timestamp_now);
        let deadline = deadline.unwrap_or_else(|| deadline_after(now, self.config.max_block));
        self.held_records += 1;
        let w = Waiting {
            token,
            record,
            timestamp,
            reserved,
            deadline,
            report_acceptance,
        };
        // Nothing waits before it, its topic is known and it fits: taken
        // now, as the next pass would take it first, without a stop in the
        // waiting line (a copy, and memory, per record).
        if let Some(key) = key
            && self.waiting.is_empty()
            && self.buffer_used + reserved <= self.config.buffer_memory
        {
            self.accept(now, key, w);
        } else {
            self.waiting.push_back(w);
        }
    }

    /// Makes every record appended so far ready to send, ignoring linger.
    pub(crate) fn flush(&mut self, now: Instant, up_to_token: u64) {
        self.flush_mark = self.flush_mark.max(up_to_token);
        self.pump(now);
    }

    /// Fails everything not yet delivered with `reason` (for `close` at its
    /// deadline). In-flight records fail as possibly persisted; their late
    /// responses are ignored.
    pub(crate) fn abort(&mut self, now: Instant, reason: &Error) {
        self.now = Some(now);
        self.fail_unsent(reason);
        let mut failed: Vec<(Topic, i32, Vec<PendingRecord>, bool)> = Vec::new();
        for (_, request) in std::mem::take(&mut self.in_flight) {
            for b in request.batches {
                self.unmute(&b);
                if !b.resolved {
                    failed.push((b.topic, b.partition, b.batch.records, true));
                }
            }
        }
        self.node_in_flight.clear();
        self.stats.forget_in_flight();
        for (topic, partition, records, maybe) in failed {
            self.fail_records(
                &topic,
                partition,
                &records,
                &reason.clone_shallow().with_possibly_persisted(maybe),
            );
        }
    }

    /// Fails every record not in flight: waiting ones and queued batches
    /// (a queued retry fails as possibly persisted). Returns whether a
    /// failed batch held sequence numbers (it leaves a hole behind).
    fn fail_unsent(&mut self, reason: &Error) -> bool {
        let mut stamped = false;
        while let Some(w) = self.waiting.pop_front() {
            self.held_records -= 1;
            self.fail_record(w.token, w.reserved, reason.clone_shallow());
        }
        let mut unsent: Vec<(Topic, i32, Vec<PendingRecord>, bool)> = Vec::new();
        for (topic, tq) in &mut self.topics {
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

    /// A Metadata request finished.
    pub(crate) fn handle_metadata_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<ClusterMetadata, Error>,
    ) {
        if self.metadata.is_in_flight(id) {
            match result {
                Ok(metadata) => {
                    self.unreachable = None;
                    self.metadata.apply(now, &metadata);
                    self.fail_unusable_topics(&metadata);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata refresh failed");
                    self.metadata.fail(now);
                }
            }
        }
        self.pump(now);
    }

    /// A Produce request finished (or failed without a response).
    pub(crate) fn handle_produce_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<ProduceResponse, SendFailure>,
    ) {
        self.now = Some(now);
        let Some(request) = self.in_flight.remove(&id) else {
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
                for b in request.batches {
                    let outcome = if failure.error.is_fatal() {
                        Outcome::Fatal { written }
                    } else {
                        Outcome::Transport { written }
                    };
                    self.complete_with_error(now, b, outcome, &failure.error, -1);
                }
            }
            Ok(response) => {
                let mut by_partition: BTreeMap<(&str, i32), PartitionAnswer> = BTreeMap::new();
                for topic in &response.responses {
                    for p in &topic.partition_responses {
                        by_partition.insert(
                            (topic.name.0.as_str(), p.index),
                            PartitionAnswer {
                                code: p.error_code,
                                base_offset: p.base_offset,
                                log_append_time: p.log_append_time_ms,
                                leader_hint: (
                                    p.current_leader.leader_id.0,
                                    p.current_leader.leader_epoch,
                                ),
                                log_start_offset: p.log_start_offset,
                            },
                        );
                    }
                }
                for b in request.batches {
                    let found = by_partition.get(&(&*b.topic, b.partition)).copied();
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
        self.pump(now);
    }

    /// An InitProducerId request finished: `(error code, producer id,
    /// epoch)`, or why it got no answer.
    pub(crate) fn handle_init_producer_id_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<(i16, i64, i16), Error>,
    ) {
        self.now = Some(now);
        let Some(idem) = self.idempotence.as_mut() else {
            return;
        };
        if !idem.is_request(id) {
            self.pump(now);
            return;
        }
        match idem.handle_response(now, result) {
            Some(identity) => self.adopt_identity(identity),
            None => {
                if let Some(error) = idem.fatal().map(Error::clone_shallow) {
                    self.go_fatal(now, error);
                }
            }
        }
        self.pump(now);
    }

    /// Batches go out under `identity` from now on.
    fn adopt_identity(&mut self, identity: ProducerIdentity) {
        if self.stamped_identity != Some(identity) {
            // A new identity: every partition numbers from 0 again.
            for tq in self.topics.values_mut() {
                for pq in &mut tq.partitions {
                    pq.sequences.reset();
                }
            }
            self.stamped_identity = Some(identity);
        }
        if let Some(idem) = self.idempotence.as_mut() {
            idem.adopt(identity);
        }
        if !self.initialised {
            self.initialised = true;
            self.events.push_back(Event::Initialised);
        }
    }

    /// A transactional call (`init_transactions`, `begin_transaction`,
    /// `send_offsets_to_transaction`, `commit_transaction`,
    /// `abort_transaction`); `Event::TxnDone` with `op` reports its result.
    pub(crate) fn transaction(&mut self, now: Instant, op: u64, call: TxnOp) {
        self.now = Some(now);
        let Some(txn) = self.txn.as_mut() else {
            let error = Error::config(
                "transactional_id",
                "transactional calls need a producer built with a transactional id",
            );
            self.events.push_back(Event::TxnDone {
                op,
                result: Err(error),
            });
            return;
        };
        if matches!(call, TxnOp::Commit) {
            // A commit sends everything now, linger or not.
            self.flush_mark = self.flush_mark.max(self.last_token);
        }
        txn.start(op, call);
        self.pump(now);
    }

    /// An abort that started fails the records not sent yet (those in
    /// flight finish; the abort waits for them).
    fn fail_unsent_on_abort(&mut self) {
        if !self
            .txn
            .as_mut()
            .is_some_and(Transactions::take_abort_started)
        {
            return;
        }
        let reason = Error::new(
            ErrorKind::TransactionAborted,
            "the transaction was aborted before the record was sent",
        );
        if self.fail_unsent(&reason)
            && let Some(txn) = self.txn.as_mut()
        {
            txn.sequences_broken();
        }
    }

    /// A transactional request finished (`Err`: no answer).
    pub(crate) fn handle_txn_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<TxnAnswer, Error>,
    ) {
        self.now = Some(now);
        if let Some(txn) = self.txn.as_mut() {
            match txn.handle_answer(now, id, result) {
                TxnEffect::None => {}
                TxnEffect::Identity(identity) => self.adopt_identity(identity),
                TxnEffect::Fatal => {
                    let error = txn.fatal().map(Error::clone_shallow);
                    if let Some(error) = error {
                        self.go_fatal(now, error);
                    }
                }
            }
        }
        self.pump(now);
    }

    /// Test hook: the next sequence of a partition (to test wrapping).
    #[cfg(test)]
    pub(crate) fn set_next_sequence(&mut self, topic: &str, partition: i32, next: i32) {
        if let Some(pq) = self.partition_queue(topic, partition) {
            pq.sequences = super::idempotence::PartitionSequences::starting_at(next);
        }
    }

    /// Test hook: asks for a metadata refresh now.
    #[cfg(test)]
    pub(crate) fn request_metadata(&mut self, now: Instant) {
        self.metadata.request_refresh();
        self.pump(now);
    }

    /// Test hook: epoch bumps and new producer ids taken so far.
    #[cfg(test)]
    pub(crate) fn identity_changes(&self) -> u64 {
        self.idempotence.as_ref().map_or(0, |i| i.bumps)
    }

    /// The identity batches are stamped with now.
    #[cfg(test)]
    pub(crate) fn identity(&self) -> Option<ProducerIdentity> {
        self.stamped_identity
    }

    /// The network layer compressed request `id`'s batches on their way
    /// out: `sizes` holds (topic, partition, bytes written) of each, for the
    /// stats.
    pub(crate) fn note_wire_sizes(&mut self, id: u64, sizes: &[(String, i32, usize)]) {
        let Some(request) = self.in_flight.get_mut(&id) else {
            return;
        };
        for b in &mut request.batches {
            if let Some((_, _, len)) = sizes
                .iter()
                .find(|(topic, partition, _)| *partition == b.partition && *topic == b.topic)
            {
                b.batch.wire_len = Some(*len);
            }
        }
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.pump(now);
    }

    // ----- outputs ----------------------------------------------------------

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which time alone would make the engine act.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now?;
        let limit = self.partition_in_flight_limit();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for w in &self.waiting {
            consider(w.deadline);
        }
        for tq in self.topics.values() {
            for pq in &tq.partitions {
                if let Some(t) = pq.ready_at(self.config.linger, limit) {
                    consider(t);
                }
                if let Some(c) = pq.oldest_created() {
                    consider(c + self.config.delivery_timeout);
                }
            }
        }
        for request in self.in_flight.values() {
            for b in request.batches.iter().filter(|b| !b.resolved) {
                consider(b.batch.created + self.config.delivery_timeout);
            }
        }
        if let Some(t) = self.metadata.next_deadline(now) {
            consider(t.max(now + Duration::from_millis(1)));
        }
        if let Some(t) = self
            .idempotence
            .as_ref()
            .and_then(Idempotence::next_deadline)
        {
            consider(t.max(now + Duration::from_millis(1)));
        }
        if let Some(t) = self.txn.as_ref().and_then(Transactions::next_deadline) {
            consider(t.max(now + Duration::from_millis(1)));
        }
        next
    }

    /// A snapshot of the counters; the per-partition and per-broker tables
    /// only `with_detail`.
    pub(crate) fn stats(&self, with_detail: bool) -> ProducerStats {
        let queued = with_detail.then(|| {
            self.topics
                .iter()
                .map(|(topic, tq)| (topic.as_str(), tq.held.as_slice()))
        });
        let mut stats = self.stats.snapshot(queued);
        stats.queued_bytes = self.buffer_used as u64;
        stats.queued_records = self.held_records;
        stats.in_flight_requests = self.in_flight.len() as u64;
        stats
    }

    /// Topics whose partitions are known (records for them are accepted
    /// without waiting for metadata).
    pub(crate) fn known_topics(&self) -> impl Iterator<Item = &str> {
        self.metadata.known_topics()
    }

    /// Whether nothing is waiting, queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.held_records == 0 && self.in_flight.is_empty()
    }

    // ----- internals ---------------------------------------------------------

    fn pump(&mut self, now: Instant) {
        self.now = Some(now);
        self.expire(now);
        self.process_waiting(now);
        self.poll_metadata(now);
        self.poll_producer_id(now);
        self.drain(now);
        self.poll_transactions(now);
    }

    /// Sends the transactional request the state machine wants, if any,
    /// and reports completed calls.
    fn poll_transactions(&mut self, now: Instant) {
        loop {
            let Some(txn) = self.txn.as_mut() else {
                return;
            };
            txn.start_queued();
            self.fail_unsent_on_abort();
            let settled = self.held_records == 0 && self.in_flight.is_empty();
            let id = self.next_id;
            let Some(txn) = self.txn.as_mut() else {
                return;
            };
            if let Some(out) = txn.poll_request(now, settled, id) {
                self.next_id += 1;
                self.transmits.push_back(Transmit::Txn {
                    id,
                    node: out.node,
                    transactional_id: txn.transactional_id().to_string(),
                    request: out.request,
                });
            }
            let more = txn.has_startable_call();
            self.report_txn_calls();
            if !more {
                return;
            }
        }
    }

    fn report_txn_calls(&mut self) {
        if let Some(txn) = self.txn.as_mut() {
            while let Some((op, result)) = txn.poll_done() {
                self.events.push_back(Event::TxnDone { op, result });
            }
        }
    }

    /// Sends InitProducerId when the idempotence state machine wants one: at
    /// start, after a retriable failure, or for an epoch bump once nothing
    /// is in flight and nothing possibly persisted waits to be resolved.
    fn poll_producer_id(&mut self, now: Instant) {
        let Some(idem) = self.idempotence.as_ref() else {
            return;
        };
        if self.txn.is_some() {
            // The transaction coordinator hands out the producer id.
            return;
        }
        let quiet = self.in_flight.is_empty()
            && idem
                .resolving()
                .is_none_or(|old| !self.awaits_resolution(old));
        let id = self.next_id;
        let Some(idem) = self.idempotence.as_mut() else {
            return;
        };
        if let Some(request) = idem.poll_request(now, quiet, id) {
            self.next_id += 1;
            let node = self.metadata.pick_broker();
            self.transmits.push_back(Transmit::InitProducerId {
                id,
                node,
                producer_id: request.producer_id,
                epoch: request.epoch,
            });
        }
    }

    /// Whether a queued batch stamped under `old` may have been written:
    /// it must be resolved under that identity before the epoch moves on.
    fn awaits_resolution(&self, old: ProducerIdentity) -> bool {
        self.topics.values().any(|tq| {
            tq.partitions.iter().any(|pq| {
                pq.queue
                    .iter()
                    .any(|b| b.maybe_persisted && b.stamp.is_some_and(|s| identity_of(s) == old))
            })
        })
    }

    /// The producer cannot go on: everything held fails with `error`, and
    /// so does every later record.
    fn go_fatal(&mut self, now: Instant, error: Error) {
        tracing::error!(%error, "producer failed fatally");
        if let Some(idem) = self.idempotence.as_mut()
            && idem.fatal().is_none()
        {
            idem.set_fatal(error.clone_shallow());
        }
        self.fatal_error = Some(error.clone_shallow());
        if let Some(txn) = self.txn.as_mut() {
            txn.fail(error.clone_shallow());
        }
        self.abort(now, &error);
        self.events.push_back(Event::Fatal { error });
        self.report_txn_calls();
    }

    fn poll_metadata(&mut self, now: Instant) {
        let id = self.next_id;
        if let Some((topics, node)) = self.metadata.poll_request(now, id) {
            self.next_id += 1;
            self.transmits
                .push_back(Transmit::Metadata { id, node, topics });
        }
    }

    /// The network layer found every bootstrap server unreachable outright
    /// at start-up (refused or not resolved, twice): records waiting for
    /// their topic's metadata fail now with `error` instead of waiting out
    /// `max_block`, and so do later ones for topics not known, until a
    /// metadata answer arrives (the cluster may still come up: metadata
    /// requests go on as before).
    pub(crate) fn cluster_unreachable(&mut self, now: Instant, error: Error) {
        self.now = Some(now);
        let mut i = 0;
        while i < self.waiting.len() {
            if self
                .known_topic(&self.waiting[i].record.topic.clone())
                .is_some()
            {
                i += 1;
                continue;
            }
            if let Some(w) = self.waiting.remove(i) {
                self.held_records -= 1;
                let err = error.clone_shallow().with_possibly_persisted(false);
                self.fail_record(w.token, w.reserved, err);
            }
        }
        self.unreachable = Some(error);
    }

    /// Fails waiting records whose topic can never be produced to.
    fn fail_unusable_topics(&mut self, metadata: &ClusterMetadata) {
        let mut i = 0;
        while i < self.waiting.len() {
            let code = metadata
                .topic(&self.waiting[i].record.topic)
                .and_then(|t| t.error)
                .filter(|c| !c.is_retriable());
            match code {
                Some(code) => {
                    if let Some(w) = self.waiting.remove(i) {
                        self.held_records -= 1;
                        let err = Error::broker(code, format_args!("topic `{}`", w.record.topic));
                        self.fail_record(w.token, w.reserved, err);
                    }
                }
                None => i += 1,
            }
        }
    }

    fn process_waiting(&mut self, now: Instant) {
        self.buffer_blocked = false;
        let mut i = 0;
        while i < self.waiting.len() {
            let topic = self.waiting[i].record.topic.clone();
            let key = self.known_topic(&topic);
            let known = key.is_some();
            let w = &self.waiting[i];
            let fits = self.buffer_used + w.reserved <= self.config.buffer_memory;
            if let Some(key) = key
                && fits
                && !self.buffer_blocked
            {
                if let Some(w) = self.waiting.remove(i) {
                    self.accept(now, key, w);
                }
                continue;
            }
            let expired = now >= w.deadline;
            // A waiter about to give up does not hold back those behind it.
            if known && !fits && !expired {
                self.buffer_blocked = true;
            }
            if expired {
                if let Some(w) = self.waiting.remove(i) {
                    self.held_records -= 1;
                    let err = if !known {
                        Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "topic `{}` not present in metadata within max_block",
                                w.record.topic
                            ),
                        )
                    } else {
                        Error::new(
                            ErrorKind::BufferExhausted,
                            format!(
                                "no buffer space for {} bytes (buffer_memory {}, {} in use)",
                                w.reserved, self.config.buffer_memory, self.buffer_used
                            ),
                        )
                    };
                    self.fail_record(w.token, w.reserved, err);
                }
                continue;
            }
            i += 1;
        }
    }

    /// The engine's name for `topic`: the metadata cache's own (`None`
    /// while the cache does not hold the topic). The queues are keyed by
    /// it, so the lookups of a record compare pointers, and the batches and
    /// delivery reports share it rather than the caller's, whose count
    /// other threads keep changing. The last topic is remembered by the
    /// caller's pointer; a different one registers interest.
    fn topic_key(&mut self, topic: &Topic) -> Option<Topic> {
        if let Some((caller, key)) = &self.hot_topic
            && caller.same(topic)
        {
            return Some(key.clone());
        }
        self.metadata.add_interest(topic);
        let key = self.metadata.key(topic)?.clone();
        self.hot_topic = Some((topic.clone(), key.clone()));
        Some(key)
    }

    /// Why `topic` can never be produced to, when its name breaks Kafka's
    /// rules: such a record fails at once rather than wait for metadata.
    /// Only a name the engine does not hold yet is checked.
    fn illegal_topic(&self, topic: &Topic) -> Option<Error> {
        if self
            .hot_topic
            .as_ref()
            .is_some_and(|(caller, _)| caller.same(topic))
            || self.metadata.key(topic).is_some()
        {
            return None;
        }
        crate::topic_name::validate(topic).err()
    }

    /// The engine's name for `topic` (see `topic_key`) when its partitions
    /// are known, so that a record for it can be accepted.
    fn known_topic(&mut self, topic: &Topic) -> Option<Topic> {
        self.topic_key(topic)
            .filter(|key| self.metadata.topic(key).is_some())
    }

    /// Takes `w` into its partition's batch; `key` is its topic's name
    /// from [`known_topic`](Self::known_topic).
    fn accept(&mut self, now: Instant, key: Topic, w: Waiting) {
        let Some(info) = self.metadata.topic(&key) else {
            return;
        };
        let count = info.partitions.len();
        if !self.topics.contains_key(&key) {
            self.topics.insert(key.clone(), TopicQueues::default());
        }
        let Some(tq) = self.topics.get_mut(&key) else {
            return;
        };
        if tq.partitions.len() < count {
            tq.partitions.resize_with(count, PartitionQueue::default);
            tq.held.resize(count, 0);
            tq.keyless_bytes.resize(count, 0);
        }
        let view = PartitionView::new(&w.record.topic, count as u32, &info.available)
            .with_queued_bytes(&tq.held);
        let chosen = match w.record.partition {
            Some(p) => check_explicit(p, &view),
            None => self
                .partitioner
                .partition(w.record.key.as_deref(), w.record.value.as_deref(), &view)
                .and_then(|p| check_explicit(p, &view)),
        };
        let partition = match chosen {
            Ok(p) => p,
            Err(e) => {
                self.held_records -= 1;
                self.fail_record(
                    w.token,
                    w.reserved,
                    Error::new(
                        ErrorKind::InvalidPartition,
                        format!("topic `{}`: {e}", w.record.topic),
                    ),
                );
                return;
            }
        };
        let index = partition as usize;
        let pending = Incoming {
            token: w.token,
            timestamp: w.timestamp,
            reserved: w.reserved,
        };
        let pq = &mut tq.partitions[index];
        let keyless = w.record.partition.is_none() && w.record.key.is_none();
        let at_batch_boundary = !pq.has_open_batch();
        match pq.append(
            self.batch_config,
            now,
            &w.record,
            pending,
            &mut self.spare_buffers,
        ) {
            Ok((sealed_full, lost)) => {
                if let Some(txn) = self.txn.as_mut() {
                    txn.record_partition(&w.record.topic, partition);
                }
                pq.held_bytes += w.reserved as u64;
                tq.held[index] = pq.held_bytes;
                self.buffer_used += w.reserved;
                if w.report_acceptance {
                    self.events.push_back(Event::Accepted { token: w.token });
                }
                if keyless {
                    let produced = &mut tq.keyless_bytes[index];
                    *produced += w.record.estimated_size() as u64;
                    let batch_size = self.batch_config.max_batch_bytes as u64;
                    if sticky_switch_due(*produced, batch_size, at_batch_boundary || sealed_full) {
                        *produced = 0;
                        let view =
                            PartitionView::new(&w.record.topic, count as u32, &info.available)
                                .with_queued_bytes(&tq.held);
                        self.partitioner.on_new_batch(partition, &view);
                    }
                }
                if let Some((records, e)) = lost {
                    let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
                    self.release(&w.record.topic, partition, bytes);
                    self.fail_records(&w.record.topic, partition, &records, &records_error(e));
                }
            }
            Err(e) => {
                self.held_records -= 1;
                self.fail_record(w.token, w.reserved, records_error(e));
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let Some(cutoff) = now.checked_sub(self.config.delivery_timeout) else {
            return;
        };
        let mut expired: Vec<(Topic, i32, Vec<PendingRecord>, bool)> = Vec::new();
        let mut holes: Vec<Stamp> = Vec::new();
        for (topic, tq) in &mut self.topics {
            for (p, pq) in tq.partitions.iter_mut().enumerate() {
                while let Some((records, maybe, stamp)) = pq.expire_front(cutoff) {
                    holes.extend(stamp);
                    expired.push((topic.clone(), p as i32, records, maybe));
                }
            }
        }
        // A queued retry that expires leaves its sequences unused (scenario
        // 14 holds only for batches never stamped): a new epoch renumbers.
        for stamp in holes {
            if Some(identity_of(stamp)) == self.stamped_identity {
                self.request_bump(Some(identity_of(stamp)), BumpReason::SequenceHole);
            }
        }
        for request in self.in_flight.values_mut() {
            for b in request.batches.iter_mut().filter(|b| !b.resolved) {
                if b.batch.created <= cutoff {
                    b.resolved = true;
                    expired.push((b.topic.clone(), b.partition, b.batch.records.clone(), true));
                }
            }
        }
        for (topic, partition, records, maybe) in expired {
            // In-flight batches keep their buffer bytes until the response.
            if !maybe || !self.is_in_flight_batch(&topic, partition, &records) {
                let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
                self.release(&topic, partition, bytes);
            }
            let err = Error::new(
                ErrorKind::DeliveryTimeout,
                format!(
                    "{} record(s) for {topic}-{partition} expired: not acknowledged within delivery_timeout ({:?})",
                    records.len(),
                    self.config.delivery_timeout
                ),
            )
            .with_possibly_persisted(maybe);
            self.fail_records(&topic, partition, &records, &err);
        }
    }

    fn is_in_flight_batch(&self, topic: &str, partition: i32, records: &[PendingRecord]) -> bool {
        let Some(first) = records.first() else {
            return false;
        };
        self.in_flight.values().any(|r| {
            r.batches.iter().any(|b| {
                b.topic == topic
                    && b.partition == partition
                    && b.batch.records.first().map(|r| r.token) == Some(first.token)
            })
        })
    }

    /// What may be drained now: `None` nothing; otherwise the identity to
    /// stamp batches with (none without idempotence) and whether only
    /// possibly-persisted batches stamped under it may go (an epoch bump
    /// waits for them).
    fn drain_mode(&self) -> Option<(Option<ProducerIdentity>, bool)> {
        match &self.idempotence {
            None => Some((None, false)),
            Some(idem) => match (idem.ready(), idem.resolving()) {
                (Some(id), _) => Some((Some(id), false)),
                (None, Some(old)) => Some((Some(old), true)),
                (None, None) => None,
            },
        }
    }

    /// Batches of one partition allowed in flight at once: one without
    /// idempotence (so retries cannot reorder), up to `max_in_flight` (at
    /// most 5, the broker's duplicate window) with it.
    fn partition_in_flight_limit(&self) -> usize {
        if self.idempotence.is_some() {
            self.config.max_in_flight.clamp(1, 5)
        } else {
            1
        }
    }

    fn drain(&mut self, now: Instant) {
        let Some((identity, resolving_only)) = self.drain_mode() else {
            return;
        };
        let hurry = self.buffer_blocked;
        let limit = self.partition_in_flight_limit();
        let transactional = self.txn.is_some();
        let mut ready: BTreeMap<i32, Vec<(Topic, i32)>> = BTreeMap::new();
        let mut leaderless = false;
        for (topic, tq) in &self.topics {
            let Some(info) = self.metadata.topic(topic) else {
                continue;
            };
            for (p, pq) in tq.partitions.iter().enumerate() {
                if pq.is_empty()
                    || !pq.ready(now, self.config.linger, self.flush_mark, hurry, limit)
                {
                    continue;
                }
                // A transaction's partition sends once the coordinator added it.
                if let Some(txn) = &self.txn
                    && !txn.may_send(topic, p as i32)
                {
                    continue;
                }
                // While a bump waits, only partitions holding a possibly
                // written batch under the old identity send, in order, to
                // learn its outcome.
                if resolving_only
                    && !(pq
                        .queue
                        .front()
                        .is_some_and(|b| b.stamp.map(identity_of) == identity)
                        && pq
                            .queue
                            .iter()
                            .any(|b| b.maybe_persisted && b.stamp.map(identity_of) == identity))
                {
                    continue;
                }
                let partition = p as i32;
                match info.leader(partition) {
                    Some(leader) => ready
                        .entry(leader)
                        .or_default()
                        .push((topic.clone(), partition)),
                    None => leaderless = true,
                }
            }
        }
        if leaderless {
            self.metadata.want_leader();
            self.poll_metadata(now);
        }
        for (node, candidates) in ready {
            let Some(addr) = self.metadata.broker_address(node).map(str::to_string) else {
                self.metadata.request_refresh();
                continue;
            };
            let mut taken = vec![false; candidates.len()];
            loop {
                let in_flight = self.node_in_flight.get(&node).copied().unwrap_or(0);
                if in_flight >= self.config.max_in_flight || taken.iter().all(|t| *t) {
                    break;
                }
                // Start after the partition the previous request started
                // with, so that none starves when requests fill up.
                let start = self.drain_cursor.get(&node).map_or(0, |last| {
                    candidates.iter().position(|c| c > last).unwrap_or(0)
                });
                let start = (start..candidates.len())
                    .chain(0..start)
                    .find(|i| !taken[*i])
                    .unwrap_or(start);
                self.drain_cursor.insert(node, candidates[start].clone());
                let mut size = 64usize;
                let mut batches: Vec<InFlightBatch> = Vec::new();
                for k in 0..candidates.len() {
                    let i = (start + k) % candidates.len();
                    if taken[i] {
                        continue;
                    }
                    let (topic, partition) = &candidates[i];
                    let Some(pq) = self
                        .topics
                        .get_mut(topic)
                        .and_then(|tq| tq.partitions.get_mut(*partition as usize))
                    else {
                        taken[i] = true;
                        continue;
                    };
                    let next = pq.next_size() + topic.len() + 32;
                    if !batches.is_empty() && size + next > self.config.max_request_size {
                        continue;
                    }
                    taken[i] = true;
                    match pq.take_next(now) {
                        Ok(Some(mut batch)) => {
                            if let Some(identity) = identity {
                                stamp_batch(&mut batch, &mut pq.sequences, identity, transactional);
                            }
                            size += batch.sealed.len() + topic.len() + 32;
                            pq.sent(batch.order);
                            batches.push(InFlightBatch {
                                topic: topic.clone(),
                                partition: *partition,
                                batch,
                                resolved: false,
                            });
                        }
                        Ok(None) => {}
                        Err((records, e)) => {
                            let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
                            let (topic, partition) = (topic.clone(), *partition);
                            self.release(&topic, partition, bytes);
                            self.fail_records(&topic, partition, &records, &records_error(e));
                        }
                    }
                }
                if batches.is_empty() {
                    continue;
                }
                self.send_produce(now, node, &addr, batches);
            }
        }
    }

    fn send_produce(
        &mut self,
        now: Instant,
        node: i32,
        addr: &str,
        mut batches: Vec<InFlightBatch>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for b in &mut batches {
            b.batch.attempts += 1;
            let data = PartitionProduceData::default()
                .with_index(b.partition)
                .with_records(Some(b.batch.sealed.bytes().clone()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == b.topic) {
                Some(t) => t.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(b.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let timeout_ms = i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let request =
            ProduceRequest::default()
                .with_transactional_id(self.txn.as_ref().map(|t| {
                    TransactionalId(StrBytes::from_string(t.transactional_id().to_string()))
                }))
                .with_acks(self.config.acks.as_i16())
                .with_timeout_ms(timeout_ms)
                .with_topic_data(topics);
        *self.node_in_flight.entry(node).or_insert(0) += 1;
        let bytes = batches.iter().map(|b| b.batch.sealed.len()).sum();
        self.stats.request_sent(node, bytes);
        self.in_flight.insert(
            id,
            InFlight {
                node,
                sent_at: now,
                batches,
            },
        );
        self.transmits.push_back(Transmit::Produce {
            id,
            node,
            addr: addr.to_string(),
            request,
            expects_response: self.config.acks != Acks::None,
        });
    }

    fn partition_queue(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionQueue> {
        self.topics
            .get_mut(topic)
            .and_then(|tq| tq.partitions.get_mut(usize::try_from(partition).ok()?))
    }

    /// The identity a batch was stamped with, when it is the current one.
    fn current_stamp(&self, b: &InFlightBatch) -> Option<Stamp> {
        b.batch
            .stamp
            .filter(|s| Some(identity_of(*s)) == self.stamped_identity)
    }

    /// A stamped batch will never be acknowledged: its sequences are a hole
    /// that later batches cannot cross, so the epoch must move on.
    fn sequence_hole(&mut self, b: &InFlightBatch) {
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
    fn request_bump(&mut self, stamped: Option<ProducerIdentity>, reason: BumpReason) {
        if let Some(txn) = self.txn.as_mut() {
            txn.sequences_broken();
        } else if let Some(idem) = self.idempotence.as_mut() {
            idem.request_bump(stamped, reason);
        }
    }

    /// The broker cannot have written anything of `b`'s partition stamped
    /// after `b` under the same identity (sequences are written in order,
    /// and `b` was not): those batches need no resolution before a bump.
    fn not_written_behind(&mut self, b: &InFlightBatch) {
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

    fn deliver(&mut self, b: InFlightBatch, base_offset: i64, log_append_time: i64) {
        if let Some(stamp) = self.current_stamp(&b) {
            let count = b.batch.sealed.record_count();
            if let Some(pq) = self.partition_queue(&b.topic, b.partition) {
                pq.sequences.acked(stamp.base_sequence, count, base_offset);
            }
        }
        self.unmute(&b);
        if b.resolved {
            return;
        }
        self.stats.batch_delivered(
            &b.topic,
            b.partition,
            b.batch.records.len(),
            b.batch.wire_len.unwrap_or_else(|| b.batch.sealed.len()),
        );
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
    fn complete_with_error(
        &mut self,
        now: Instant,
        mut b: InFlightBatch,
        outcome: Outcome,
        error: &Error,
        log_start_offset: i64,
    ) {
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
            self.stats.batch_retried(&b.topic, b.partition);
            if let Some(pq) = self.partition_queue(&b.topic, b.partition) {
                pq.settled(b.batch.order);
                // Same place: the first half goes back first, the second
                // lands right behind it.
                pq.requeue(first);
                pq.requeue(second);
            }
            return;
        }
        if let (Some(txn), Outcome::Code(code)) = (&self.txn, outcome)
            && super::txn::is_fatal_txn_code(code)
        {
            // Scenario 33: a zombie learns it was fenced at its next send.
            let error = match code {
                KafkaCode::PRODUCER_FENCED | KafkaCode::INVALID_PRODUCER_EPOCH => {
                    super::txn::fenced(
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
    fn retry(
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
        self.stats.batch_retried(&b.topic, b.partition);
        if refresh_metadata {
            self.metadata.invalidate(&b.topic, b.partition);
        }
        tracing::debug!(topic = %b.topic, partition = b.partition, %error, ?wait, "retrying batch");
        if let Some(pq) = self.partition_queue(&b.topic, b.partition) {
            pq.settled(b.batch.order);
            pq.requeue(b.batch);
        }
    }

    /// KIP-951: a leadership error that names the partition's new leader
    /// (and, in `node_endpoints`, its address) updates the metadata cache
    /// directly. Returns whether the cache took the hint.
    fn take_leader_hint(
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
    fn fail_batch(&mut self, b: &InFlightBatch, error: &Error) {
        self.unmute(b);
        self.fail_records(&b.topic, b.partition, &b.batch.records, error);
    }

    /// A batch of the partition is no longer in flight (and will not be
    /// again): one fewer in flight, and its buffer bytes released.
    fn unmute(&mut self, b: &InFlightBatch) {
        let bytes = b.batch.reserved();
        if let Some(pq) = self.partition_queue(&b.topic, b.partition) {
            pq.settled(b.batch.order);
        }
        self.release(&b.topic, b.partition, bytes);
    }

    fn release(&mut self, topic: &str, partition: i32, bytes: usize) {
        self.buffer_used = self.buffer_used.saturating_sub(bytes);
        if let Some(tq) = self.topics.get_mut(topic)
            && let Some(pq) = tq.partitions.get_mut(partition as usize)
        {
            pq.held_bytes = pq.held_bytes.saturating_sub(bytes as u64);
            if let Some(h) = tq.held.get_mut(partition as usize) {
                *h = pq.held_bytes;
            }
        }
    }

    /// Fails records accepted into `topic`-`partition`.
    fn fail_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[PendingRecord],
        error: &Error,
    ) {
        self.stats.partition_errors(topic, partition, records.len());
        for r in records {
            self.held_records = self.held_records.saturating_sub(1);
            self.fail_record(r.token, r.reserved(), error.clone_shallow());
        }
    }

    fn fail_record(&mut self, token: u64, reserved: usize, error: Error) {
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
    fn settle_delivered(&mut self, n: u64) {
        self.held_records = self.held_records.saturating_sub(n);
    }
}

fn identity_of(stamp: Stamp) -> ProducerIdentity {
    ProducerIdentity {
        producer_id: stamp.producer_id,
        epoch: stamp.epoch,
    }
}

/// Stamps a drained batch for idempotence: it keeps its sequences when it
/// was stamped under `identity` already (a retry), and takes the
/// partition's next ones otherwise (a first attempt, or a retry after an
/// epoch bump). Stamping rewrites only the header; the records are not
/// encoded again.
fn stamp_batch(
    batch: &mut super::accumulator::Batch,
    sequences: &mut super::idempotence::PartitionSequences,
    identity: ProducerIdentity,
    transactional: bool,
) {
    let base_sequence = match batch.stamp {
        Some(s) if identity_of(s) == identity => s.base_sequence,
        _ => sequences.assign(batch.sealed.record_count()),
    };
    batch.sealed.stamp(
        identity.producer_id,
        identity.epoch,
        base_sequence,
        transactional,
    );
    batch.stamp = Some(Stamp {
        producer_id: identity.producer_id,
        epoch: identity.epoch,
        base_sequence,
    });
}

/// Refuses a record of about `reserved` bytes that can never be sent: it
/// exceeds `max_request_size` (with a batch header) or `buffer_memory`.
pub(crate) fn check_size(
    reserved: usize,
    max_request_size: usize,
    buffer_memory: usize,
) -> Result<(), Error> {
    let limit = if reserved.saturating_add(BATCH_HEADER_LEN) > max_request_size {
        ("max_request_size", max_request_size)
    } else if reserved > buffer_memory {
        ("buffer_memory", buffer_memory)
    } else {
        return Ok(());
    };
    Err(Error::new(
        ErrorKind::RecordTooLarge,
        format!(
            "a record of about {reserved} bytes exceeds {} ({})",
            limit.0, limit.1
        ),
    ))
}

/// `now + wait`, or the latest instant this platform can represent on the
/// way there when that sum overflows (a caller's `Duration::MAX`).
pub(crate) fn deadline_after(now: Instant, wait: Duration) -> Instant {
    let mut wait = wait;
    loop {
        if let Some(deadline) = now.checked_add(wait) {
            return deadline;
        }
        wait /= 2;
    }
}

fn records_error(e: RecordsError) -> Error {
    match e {
        RecordsError::RecordTooLarge { .. } => Error::new(ErrorKind::RecordTooLarge, e.to_string()),
        other => Error::protocol(format!("building a record batch: {other}")),
    }
}

#[cfg(test)]
mod tests {
    //! Deterministic simulation: a virtual clock and scripted responses.

    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    use super::*;
    use crate::metadata::{BrokerMetadata, PartitionMetadata, TopicMetadata};

    fn config() -> EngineConfig {
        EngineConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 1024 * 1024,
            max_request_size: 1024 * 1024,
            max_block: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight: 5,
            compression: Compression::None,
            compression_level: None,
            metadata_max_age: Duration::from_secs(300),
            partitioner: EnginePartitioner::default(),
            seed: 7,
            idempotence: false,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }

    fn cluster(leaders: &[(i32, Option<i32>, i32)]) -> ClusterMetadata {
        let partitions = leaders
            .iter()
            .map(|(id, leader, epoch)| PartitionMetadata {
                id: *id,
                leader: *leader,
                leader_epoch: Some(*epoch),
                replicas: vec![],
                isr: vec![],
                error: None,
            })
            .collect();
        let mut topics = BTreeMap::new();
        topics.insert(
            "t".to_string(),
            TopicMetadata {
                name: "t".into(),
                error: None,
                is_internal: false,
                partitions,
            },
        );
        ClusterMetadata {
            cluster_id: None,
            controller_id: None,
            brokers: (1..=2)
                .map(|id| BrokerMetadata {
                    id,
                    host: "h".into(),
                    port: 9000 + id as u16,
                    rack: None,
                })
                .collect(),
            topics,
        }
    }

    /// Starts an engine whose first metadata answer is `metadata`.
    fn engine(config: EngineConfig, t0: Instant, metadata: &ClusterMetadata) -> Engine {
        let mut e = Engine::new(config);
        e.handle_timeout(t0);
        e.append(t0, 0, Record::new("t").partition(0).value("x"), 1, Some(t0));
        let mut ids = vec![];
        while let Some(t) = e.poll_transmit() {
            if let Transmit::Metadata { id, .. } = t {
                ids.push(id);
            }
        }
        for id in ids {
            e.handle_metadata_response(t0, id, Ok(metadata.clone()));
        }
        // Drop the probe record's outcome.
        while e.poll_event().is_some() {}
        while e.poll_transmit().is_some() {}
        e.abort(t0, &Error::new(ErrorKind::Closed, "reset"));
        while e.poll_event().is_some() {}
        e
    }

    /// A Produce transmit: request id, broker, and (partition, batch bytes).
    type Sent = (u64, i32, Vec<(i32, usize)>);

    fn produce_transmits(e: &mut Engine) -> Vec<Sent> {
        let mut out = vec![];
        while let Some(t) = e.poll_transmit() {
            if let Transmit::Produce {
                id, node, request, ..
            } = t
            {
                let parts = request
                    .topic_data
                    .iter()
                    .flat_map(|t| t.partition_data.iter())
                    .map(|p| (p.index, p.records.as_ref().map_or(0, |r| r.len())))
                    .collect();
                out.push((id, node, parts));
            }
        }
        out
    }

    fn answer(partitions: &[(i32, i16, i64)]) -> ProduceResponse {
        ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_responses(
                    partitions
                        .iter()
                        .map(|(p, code, base)| {
                            PartitionProduceResponse::default()
                                .with_index(*p)
                                .with_error_code(*code)
                                .with_base_offset(*base)
                                .with_log_append_time_ms(-1)
                        })
                        .collect(),
                ),
        ])
    }

    fn events(e: &mut Engine) -> Vec<Event> {
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    #[test]
    fn a_batch_waits_for_linger_then_goes_to_its_leader() {
        let t0 = Instant::now_for_tests();
        let mut e = engine(config(), t0, &cluster(&[(0, Some(2), 0), (1, Some(1), 0)]));
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value("a"),
            10,
            Some(t0),
        );
        assert!(produce_transmits(&mut e).is_empty());
        assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(5)));
        e.handle_timeout(t0 + Duration::from_millis(5));
        let sent = produce_transmits(&mut e);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, 2, "partition 0's leader");
        let t1 = t0 + Duration::from_millis(6);
        e.handle_produce_response(t1, sent[0].0, Ok(answer(&[(0, 0, 41)])));
        let ev = events(&mut e);
        assert!(
            matches!(&ev[..], [Event::Accepted { token: 10 }, Event::Delivered(b)]
                if b.records.len() == 1 && b.records[0].token == 10 && b.metadata(0).offset == 41)
        );
        assert!(e.is_idle());
    }

    /// Fault scenario 3 (KIP-951): a NOT_LEADER_OR_FOLLOWER answer that
    /// names the new leader, with a newer epoch and its endpoint, moves the
    /// batch there at once: no metadata round trip, no backoff.
    #[test]
    fn fault_03_leader_hint_moves_the_batch_without_a_metadata_round_trip() {
        use kafka_protocol::messages::BrokerId;
        use kafka_protocol::messages::produce_response::{LeaderIdAndEpoch, NodeEndpoint};
        let t0 = Instant::now_for_tests();
        let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 4)]));
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value("a"),
            10,
            Some(t0),
        );
        e.flush(t0, 10);
        let sent = produce_transmits(&mut e);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, 1);
        let mut response = answer(&[(0, KafkaCode::NOT_LEADER_OR_FOLLOWER.code(), -1)]);
        response.responses[0].partition_responses[0].current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(3))
            .with_leader_epoch(5);
        response.node_endpoints = vec![
            NodeEndpoint::default()
                .with_node_id(BrokerId(3))
                .with_host(StrBytes::from_static_str("h3"))
                .with_port(9003),
        ];
        let t1 = t0 + Duration::from_millis(1);
        e.handle_produce_response(t1, sent[0].0, Ok(response));
        let mut produce = vec![];
        while let Some(t) = e.poll_transmit() {
            match t {
                Transmit::Metadata { .. } => panic!("the hint made a metadata refresh needless"),
                Transmit::Produce { node, addr, .. } => produce.push((node, addr)),
                Transmit::InitProducerId { .. } | Transmit::Txn { .. } => panic!("not idempotent"),
            }
        }
        assert_eq!(
            produce,
            vec![(3, "h3:9003".to_string())],
            "resent at once to the hinted leader"
        );
        assert_eq!(e.stats(false).leader_hints, 1);
        assert_eq!(e.stats(false).retries, 1);
    }

    /// A hint with an epoch no newer than the known one is ignored: epochs
    /// never go backwards, so the engine refreshes metadata instead.
    #[test]
    fn a_stale_leader_hint_is_ignored_and_metadata_is_refreshed() {
        use kafka_protocol::messages::BrokerId;
        use kafka_protocol::messages::produce_response::LeaderIdAndEpoch;
        let t0 = Instant::now_for_tests();
        let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 4)]));
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value("a"),
            10,
            Some(t0),
        );
        e.flush(t0, 10);
        let sent = produce_transmits(&mut e);
        let mut response = answer(&[(0, KafkaCode::NOT_LEADER_OR_FOLLOWER.code(), -1)]);
        response.responses[0].partition_responses[0].current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(2))
            .with_leader_epoch(4);
        e.handle_produce_response(t0 + Duration::from_millis(1), sent[0].0, Ok(response));
        let transmits: Vec<Transmit> = std::iter::from_fn(|| e.poll_transmit()).collect();
        assert!(
            transmits
                .iter()
                .any(|t| matches!(t, Transmit::Metadata { .. })),
            "{transmits:?}"
        );
        assert!(
            !transmits
                .iter()
                .any(|t| matches!(t, Transmit::Produce { .. })),
            "no resend before the leader is known again"
        );
        assert_eq!(e.stats(false).leader_hints, 0);
    }

    /// The engine keeps a record's timestamp as an `i32` delta from its
    /// batch's base: records weeks apart go to batches of their own, and
    /// every delivery reports the record's exact timestamp.
    #[test]
    fn timestamps_weeks_apart_take_separate_batches_and_are_reported_exactly() {
        let t0 = Instant::now_for_tests();
        let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0)]));
        let rec = |ts: i64| Record::new("t").partition(0).value("v").timestamp(ts);
        let base = 1_700_000_000_000i64;
        let forty_days = 40 * 24 * 3600 * 1000i64;
        let stamps = [base, base + forty_days, base + 1, base - 5];
        for (i, ts) in stamps.iter().enumerate() {
            e.append(t0, 0, rec(*ts), 10 + i as u64, Some(t0));
        }
        e.flush(t0, 13);
        let mut reported = BTreeMap::new();
        let mut batches = 0;
        let mut t = t0;
        for _ in 0..10 {
            let sent = produce_transmits(&mut e);
            if sent.is_empty() {
                break;
            }
            for (id, _, _) in sent {
                t += Duration::from_millis(1);
                batches += 1;
                e.handle_produce_response(t, id, Ok(answer(&[(0, 0, batches * 10)])));
            }
            for ev in events(&mut e) {
                if let Event::Delivered(b) = ev {
                    for r in &b.records {
                        reported.insert(r.token, b.timestamp(r));
                    }
                }
            }
        }
        let expected: BTreeMap<u64, i64> = stamps
            .iter()
            .enumerate()
            .map(|(i, ts)| (10 + i as u64, *ts))
            .collect();
        assert_eq!(reported, expected);
        // base | base+40d | base+1, base-5 (both within range of base+1).
        assert_eq!(batches, 3);
    }

    /// A timestamp too far from the open batch's first for a delta starts
    /// a batch of its own instead of failing.
    #[test]
    fn an_extreme_timestamp_starts_its_own_batch() {
        let t0 = Instant::now_for_tests();
        let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0)]));
        let rec = |ts: i64| Record::new("t").partition(0).value("v").timestamp(ts);
        e.append(t0, 0, rec(1_700_000_000_000), 10, Some(t0));
        e.append(t0, 0, rec(i64::MIN), 11, Some(t0));
        e.flush(t0, 11);
        let mut batches = 0;
        while let Some(t) = e.poll_transmit() {
            if let Transmit::Produce { request, .. } = t {
                batches += request.topic_data[0].partition_data.len();
            }
        }
        let ev = events(&mut e);
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Failed { .. })),
            "{ev:?}"
        );
        assert!(batches >= 1);
        // Both records were accepted into batches of their own.
        let accepted = ev
            .iter()
            .filter(|e| matches!(e, Event::Accepted { .. }))
            .count();
        assert_eq!(accepted, 2);
        assert_eq!(e.stats(false).queued_records, 2);
    }

    #[test]
    fn one_batch_in_flight_per_partition_and_retries_keep_order() {
        let t0 = Instant::now_for_tests();
        let mut cfg = config();
        cfg.batch_size = 200;
        let mut e = engine(cfg, t0, &cluster(&[(0, Some(1), 0)]));
        for token in 10..20 {
            e.append(
                t0,
                0,
                Record::new("t").partition(0).value(vec![b'v'; 60]),
                token,
                Some(t0),
            );
        }
        e.flush(t0, 19);
        let first = produce_transmits(&mut e);
        assert_eq!(
            first.len(),
            1,
            "muted: only one batch of the partition in flight"
        );
        // NOT_LEADER: retried after a backoff, before anything queued behind it.
        let t1 = t0 + Duration::from_millis(1);
        e.handle_produce_response(t1, first[0].0, Ok(answer(&[(0, 6, -1)])));
        // A metadata refresh was asked for; answer with a new leader (epoch up).
        let t2 = t1 + Duration::from_millis(200);
        e.handle_timeout(t2);
        let mut meta_ids = vec![];
        let mut produced = vec![];
        while let Some(t) = e.poll_transmit() {
            match t {
                Transmit::Metadata { id, .. } => meta_ids.push(id),
                Transmit::Produce { .. } => produced.push(t),
                Transmit::InitProducerId { .. } | Transmit::Txn { .. } => panic!("not idempotent"),
            }
        }
        assert_eq!(meta_ids.len(), 1);
        assert!(produced.is_empty(), "no leader known until the refresh");
        e.handle_metadata_response(t2, meta_ids[0], Ok(cluster(&[(0, Some(2), 1)])));
        let retry = produce_transmits(&mut e);
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].1, 2);
        assert_eq!(retry[0].2, first[0].2, "the same batch, resent");
        let stale = cluster(&[(0, Some(1), 0)]);
        // An older epoch does not move the leader back.
        e.metadata.apply(t2, &stale);
        assert_eq!(e.metadata.topic("t").unwrap().leader(0), Some(2));
        let mut delivered = vec![];
        let mut t = t2;
        let mut pending = retry;
        let mut base = 0;
        while let Some((id, _, parts)) = pending.pop() {
            t += Duration::from_millis(1);
            e.handle_produce_response(t, id, Ok(answer(&[(0, 0, base)])));
            base += 100;
            let _ = parts;
            for ev in events(&mut e) {
                if let Event::Delivered(b) = ev {
                    delivered.extend(b.records.iter().map(|r| r.token));
                }
            }
            pending = produce_transmits(&mut e);
            assert!(pending.len() <= 1);
        }
        assert_eq!(delivered, (10..20).collect::<Vec<_>>());
    }

    #[test]
    fn unsent_batches_expire_not_persisted_and_in_flight_ones_possibly() {
        let t0 = Instant::now_for_tests();
        let mut e = engine(config(), t0, &cluster(&[(0, Some(1), 0), (1, None, 0)]));
        e.append(
            t0,
            0,
            Record::new("t").partition(0).value("sent"),
            10,
            Some(t0),
        );
        e.append(
            t0,
            0,
            Record::new("t").partition(1).value("stuck"),
            11,
            Some(t0),
        );
        e.flush(t0, 11);
        let sent = produce_transmits(&mut e);
        assert_eq!(sent.len(), 1);
        let _ = events(&mut e);
        e.handle_timeout(t0 + Duration::from_secs(2));
        let failed: BTreeMap<u64, bool> = events(&mut e)
            .into_iter()
            .filter_map(|ev| match ev {
                Event::Failed { token, error, .. } => {
                    assert_eq!(error.kind(), &ErrorKind::DeliveryTimeout);
                    Some((token, error.possibly_persisted()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(failed, BTreeMap::from([(10, true), (11, false)]));
        // A late success does not resurrect the batch.
        e.handle_produce_response(
            t0 + Duration::from_secs(3),
            sent[0].0,
            Ok(answer(&[(0, 0, 5)])),
        );
        assert!(events(&mut e).is_empty());
        assert_eq!(e.stats(true).queued_bytes, 0);
    }

    #[test]
    fn the_drain_rotates_its_starting_partition() {
        let t0 = Instant::now_for_tests();
        let mut cfg = config();
        cfg.max_request_size = 200; // one batch per request
        cfg.max_in_flight = 1;
        cfg.batch_size = 100; // one record per batch
        let leaders: Vec<(i32, Option<i32>, i32)> = (0..4).map(|p| (p, Some(1), 0)).collect();
        let mut e = engine(cfg, t0, &cluster(&leaders));
        let mut token = 10;
        for _ in 0..3 {
            for p in 0..4 {
                let r = Record::new("t").partition(p).value(vec![b'v'; 60]);
                e.append(t0, 0, r, token, Some(t0));
                token += 1;
            }
        }
        e.flush(t0, token);
        let mut firsts = vec![];
        let mut t = t0;
        loop {
            let sent = produce_transmits(&mut e);
            if sent.is_empty() {
                break;
            }
            assert_eq!(sent.len(), 1, "max_in_flight 1");
            let (id, _, parts) = &sent[0];
            assert_eq!(parts.len(), 1, "one batch fits a request");
            firsts.push(parts[0].0);
            t += Duration::from_millis(1);
            e.handle_produce_response(t, *id, Ok(answer(&[(parts[0].0, 0, 0)])));
        }
        // Every partition gets its turn: 0, 1, 2, 3, 0, 1, ...
        let expected: Vec<i32> = (0..12).map(|i| i % 4).collect();
        assert_eq!(firsts, expected);
    }

    #[test]
    fn buffer_waiters_are_served_in_order_and_fail_at_their_deadline() {
        let t0 = Instant::now_for_tests();
        let mut cfg = config();
        cfg.buffer_memory = 300;
        cfg.batch_size = 100;
        let mut e = engine(cfg, t0, &cluster(&[(0, Some(1), 0)]));
        let deadline = t0 + Duration::from_millis(50);
        for token in 10..16 {
            e.append(
                t0,
                0,
                Record::new("t").partition(0).value(vec![b'v'; 70]),
                token,
                Some(deadline),
            );
        }
        let accepted: Vec<u64> = events(&mut e)
            .into_iter()
            .filter_map(|ev| match ev {
                Event::Accepted { token } => Some(token),
                _ => None,
            })
            .collect();
        assert_eq!(accepted, vec![10, 11, 12]);
        e.handle_timeout(deadline);
        let failed: Vec<(u64, ErrorKind)> = events(&mut e)
            .into_iter()
            .filter_map(|ev| match ev {
                Event::Failed { token, error, .. } => Some((token, error.kind().clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            failed,
            vec![
                (13, ErrorKind::BufferExhausted),
                (14, ErrorKind::BufferExhausted),
                (15, ErrorKind::BufferExhausted)
            ]
        );
    }

    /// A record appended without a deadline (`try_send`) before its
    /// topic's metadata is known waits for it rather than failing, and is
    /// taken when the metadata arrives; one whose topic never appears
    /// fails at `max_block`, naming the topic.
    #[test]
    fn a_record_without_deadline_waits_for_metadata_up_to_max_block() {
        let t0 = Instant::now_for_tests();
        let mut cfg = config();
        cfg.max_block = Duration::from_millis(500);
        let mut e = Engine::new(cfg);
        e.handle_timeout(t0);
        e.append(t0, 0, Record::new("t").partition(0).value("a"), 10, None);
        e.append(t0, 0, Record::new("gone").value("b"), 11, None);
        assert!(
            events(&mut e).is_empty(),
            "nothing fails while metadata is on its way"
        );
        assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        let ids: Vec<u64> = std::iter::from_fn(|| e.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Metadata { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        assert!(!ids.is_empty());
        let t1 = t0 + Duration::from_millis(100);
        for id in ids {
            e.handle_metadata_response(t1, id, Ok(cluster(&[(0, Some(1), 0)])));
        }
        let ev = events(&mut e);
        assert!(
            matches!(&ev[..], [Event::Accepted { token: 10 }]),
            "{} events",
            ev.len()
        );
        e.handle_timeout(t0 + Duration::from_millis(500));
        let failed: Vec<(u64, ErrorKind, String)> = events(&mut e)
            .into_iter()
            .filter_map(|ev| match ev {
                Event::Failed { token, error, .. } => {
                    Some((token, error.kind().clone(), error.to_string()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, 11);
        assert_eq!(failed[0].1, ErrorKind::Timeout);
        assert!(failed[0].2.contains("`gone`"), "{}", failed[0].2);
    }

    trait TestClock {
        fn now_for_tests() -> Instant;
    }

    impl TestClock for Instant {
        /// Tests need some starting instant; only its differences matter.
        #[allow(clippy::disallowed_methods)]
        fn now_for_tests() -> Instant {
            Instant::now()
        }
    }
}
