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
//!
//! ## The call contract
//!
//! Whoever drives the engine (the producer's runtime, the simulation, the
//! tests) follows the same rules, as quinn-proto's `Connection` asks of
//! its endpoint:
//!
//! 1. **Time only goes forward.** Every input carries `now`; pass
//!    non-decreasing instants (one clock reading may serve a run of
//!    inputs). The engine never reads a clock, never sleeps and draws
//!    randomness only from the configured seed, so the same inputs give
//!    the same outputs.
//! 2. **Inputs**: `append` / `append_deferred` (a record), `flush`,
//!    `transaction`, `abort`, and the answers `handle_metadata_response`,
//!    `handle_produce_response`, `handle_init_producer_id_response`,
//!    `handle_txn_response`, `note_wire_sizes`, `cluster_unreachable`. Each
//!    answer names the `id` of the `Transmit` it answers; an answer to an
//!    id the engine no longer waits for (late, after a timeout or an abort)
//!    is ignored. Every `Transmit` must be answered exactly once, with the
//!    result or the error that stopped it (`SendFailure` says whether the
//!    request may have been written).
//! 3. **After any input, drain the outputs**: call `poll_transmit` until
//!    `None` and send each, `poll_event` until `None` and report each.
//!    Outputs are only produced by inputs, so nothing appears between two
//!    inputs.
//! 4. **Then ask `poll_timeout`** for the next instant at which time alone
//!    would make the engine act, sleep until then or until the next input,
//!    and on waking call `handle_timeout(now)` (calling it early or more
//!    often is harmless), then drain the outputs again.
//! 5. **Stopping**: `is_idle` says nothing is waiting, queued or in flight;
//!    `abort` fails what is left at a close deadline.
//!
//! The engine is one type whose methods are split by job:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the `Engine` state, construction, flush/abort, timers and the outputs (`poll_*`, stats) |
//! | `interface` | configuration, `Transmit`, `Event` and the delivered-batch view |
//! | `intake` | records waiting for metadata and buffer space, metadata answers, expiry of waiting records |
//! | `drain` | ready batches into one Produce request per broker, sequences stamped at drain |
//! | `ready_index` | per topic, the partitions a drain pass looks at: linger and backoff ends, partitions due after an event |
//! | `backlog` | how much more the brokers' next requests can carry: the room a waiting send may take |
//! | `outcome` | what a Produce answer means per batch: delivered, retried, failed, sequence holes |
//! | `identity` | the producer id and epoch, transactions, the fatal state |

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::compression::Compression;
use crate::engine::accumulator::{PartitionQueue, PendingRecord};
use crate::engine::idempotence::{Idempotence, ProducerIdentity};
use crate::engine::metadata_cache::MetadataCache;
use crate::engine::partitioner::Partitioner;
use crate::engine::retry::Jitter;
use crate::engine::stats::{ProducerStats, StatsBook};
use crate::engine::topic_table::{TopicSlot, TopicTable};
use crate::engine::txn::Transactions;
use crate::error::Error;
use crate::record::{Record, Topic};
use crate::record_batch::{BatchConfig, BufferPool};

mod answers;
mod backlog;
mod drain;
mod hot_topics;
mod identity;
mod intake;
mod interface;
mod leader_latency;
mod outcome;
mod partition_set;
mod ready_index;
mod spare_lists;
#[cfg(test)]
mod tests;

pub(crate) use intake::check_size;
pub use interface::Acks;
pub(crate) use interface::{
    BufferOwner, CompressAt, DeliveredBatch, EngineConfig, Event, SendFailure, Transmit,
};
use spare_lists::SpareLists;

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

struct TopicQueues {
    /// The topic's slot in the metadata cache: its leaders are found
    /// without a search by name.
    metadata: TopicSlot,
    partitions: Vec<PartitionQueue>,
    /// Per partition, the buffer bytes its records hold (queued or in
    /// flight): what the partitioner reads as queued bytes.
    held: Vec<u64>,
    /// Per partition, its leader's Produce latency in microseconds (0
    /// before the first answer; see [`leader_latency`]).
    leader_latency_us: Vec<u32>,
    /// When every partition last took its leader's latency.
    latency_refreshed: Option<Instant>,
    /// Per partition, the keyless bytes appended since the sticky
    /// partitioner last moved on from it (KIP-794; see [`sticky_switch_due`]).
    keyless_bytes: Vec<u64>,
    /// The partitions that may hold records waiting to be sent: every
    /// partition that is not empty is in here (an append or a requeue puts
    /// it in), and the drain pass takes out the ones it finds empty. Expiry
    /// and a drain pass that walks every partition holding records walk
    /// these instead of every partition of the topic, so a producer over
    /// thousands of partitions pays for the ones in use; most drain passes
    /// look only at what [`ready`](Self::ready) names.
    active: partition_set::PartitionSet,
    /// The partitions a drain pass looks at when it does not walk every
    /// active one (see [`ready_index`]).
    ready: ready_index::ReadyIndex,
}

impl TopicQueues {
    /// A topic's queues, before its first record; `metadata` is its slot
    /// in the metadata cache.
    fn new(metadata: TopicSlot) -> TopicQueues {
        TopicQueues {
            metadata,
            partitions: Vec::new(),
            held: Vec::new(),
            leader_latency_us: Vec::new(),
            latency_refreshed: None,
            keyless_bytes: Vec::new(),
            active: Default::default(),
            ready: Default::default(),
        }
    }

    /// The partitions that may hold records, in partition order.
    fn active(&self) -> impl Iterator<Item = (usize, &PartitionQueue)> {
        self.active
            .iter()
            .filter_map(|p| self.partitions.get(p).map(|pq| (p, pq)))
    }

    /// Partition `index` no longer holds `bytes` of buffer (records sent,
    /// failed or expired).
    fn release(&mut self, index: usize, bytes: usize) {
        if let Some(held) = self.held.get_mut(index) {
            *held = held.saturating_sub(bytes as u64);
        }
    }

    /// A batch of partition `index`, sealed as `order` and holding `bytes`
    /// of buffer, is no longer in flight and will not be again: one fewer
    /// in flight, and its bytes released. Returns the partition's queue.
    fn settle(&mut self, index: usize, order: u64, bytes: usize) -> Option<&mut PartitionQueue> {
        self.release(index, bytes);
        let pq = self.partitions.get_mut(index)?;
        pq.settled(order);
        // One fewer in flight: the partition may send again, if it holds
        // records (a record appended later is indexed then).
        if !pq.is_empty() {
            self.ready.mark(index);
        }
        Some(pq)
    }
}

/// The engine's timer table for what lives in the partitions: per kind,
/// the next instant something of that kind is due, kept by the passes and
/// inputs that change it, so that [`Engine::poll_timeout`] reads two values
/// instead of walking every partition and every batch in flight. Each entry
/// may be early (a wake-up that finds nothing to do) but never late.
#[derive(Debug, Default, Clone, Copy)]
struct Deadlines {
    /// When the next partition becomes sendable by time alone (its linger
    /// ends, or its retry backoff): set by every drain pass from the
    /// partitions it saw and the ready indexes' linger and backoff ends,
    /// lowered by appends that open a batch.
    send: Option<Instant>,
    /// No batch waiting or in flight was created before this: expiry has
    /// nothing to do until it is `delivery_timeout` old. Lowered by every
    /// append, made exact by every expiry pass that runs.
    oldest_batch: Option<Instant>,
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// [`earliest`] of `a` and `b`, counting `b` only when it is after `now`:
/// a partition ready now is the drain pass's business, not a timer's, and
/// must not hide the later deadlines of the others.
fn earliest_after(now: Instant, a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    earliest(a, b.filter(|&t| t > now))
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
    /// The topic's slot in the engine's queues.
    slot: TopicSlot,
    partition: i32,
    batch: crate::engine::accumulator::Batch,
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
    /// Each topic's queues; a record finds its topic's by slot (see
    /// `hot_topics`).
    topics: TopicTable<TopicQueues>,
    waiting: VecDeque<Waiting>,
    buffer_blocked: bool,
    in_flight: BTreeMap<u64, InFlight>,
    node_in_flight: BTreeMap<i32, usize>,
    /// Each broker's Produce latency, for the partitioner.
    leader_latency: leader_latency::LeaderLatency,
    /// Per broker, the partition the last request started with.
    drain_cursor: BTreeMap<i32, drain::ReadyPartition>,
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
    /// The caller's names of the topics seen lately, with where the topics
    /// are in `metadata` and `topics`: records for them (the same shared
    /// names) skip the searches by name.
    hot_topics: hot_topics::HotTopics,
    /// Buffers of acknowledged batches, for new batches to be encoded into.
    spare_buffers: BufferPool,
    /// The room for waiting sends, as the last drain pass found.
    backlog: backlog::Backlog,
    /// Whether the next drain pass walks every partition holding records
    /// (and counts the backlog afresh) instead of the ones its topics'
    /// [`ready_index`] names: set by every input that can make partitions
    /// sendable other than time, an append or a delivered batch (a flush,
    /// metadata, a producer id, a failed or retried batch, an expiry).
    walk_all: bool,
    /// The due partitions of the topic a pass looks at (kept for its room).
    due_scratch: Vec<u32>,
    /// Emptied lists of ready partitions from earlier drain passes.
    spare_lists: SpareLists<drain::ReadyPartition>,
    /// Emptied lists of the batches of requests answered.
    spare_batch_lists: SpareLists<InFlightBatch>,
    /// The next deadlines that live in the partitions (see [`Deadlines`]).
    deadlines: Deadlines,
}

impl Engine {
    pub(crate) fn new(config: EngineConfig) -> Engine {
        let batch_config = BatchConfig {
            compression: match config.compress_at {
                CompressAt::Seal => config.compression,
                CompressAt::Dispatch => Compression::None,
            },
            level: config.compression_level,
            max_batch_bytes: config.batch_size,
            hard_max_bytes: config.max_request_size,
            uncompressed_fallback: true,
        };
        Engine {
            batch_config,
            metadata: MetadataCache::new(config.metadata_max_age, config.retry_backoff),
            partitioner: config.partitioner.build(config.seed),
            topics: TopicTable::default(),
            waiting: VecDeque::new(),
            buffer_blocked: false,
            in_flight: BTreeMap::new(),
            node_in_flight: BTreeMap::new(),
            leader_latency: leader_latency::LeaderLatency::default(),
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
            hot_topics: hot_topics::HotTopics::default(),
            deadlines: Deadlines::default(),
            // Up to `buffer_memory` in full-size buffers: the pool only
            // holds what batches held before, and lets go of what stays
            // unused (see `BufferPool`).
            backlog: backlog::Backlog::default(),
            walk_all: true,
            due_scratch: Vec::new(),
            spare_lists: SpareLists::default(),
            spare_batch_lists: SpareLists::default(),
            spare_buffers: {
                let each = config.batch_size.min(config.max_request_size).max(1);
                BufferPool::new(config.buffer_memory / each, each)
            },
            config,
        }
    }

    /// Makes every record appended so far ready to send, ignoring linger.
    pub(crate) fn flush(&mut self, now: Instant, up_to_token: u64) {
        self.flush_mark = self.flush_mark.max(up_to_token);
        self.walk_all = true;
        self.pump(now);
    }

    /// Fails everything not yet delivered with `reason` (for `close` at its
    /// deadline). In-flight records fail as possibly persisted; their late
    /// responses are ignored.
    pub(crate) fn abort(&mut self, now: Instant, reason: &Error) {
        self.now = Some(now);
        self.walk_all = true;
        self.fail_unsent(reason);
        let mut failed: Vec<(Topic, i32, Vec<PendingRecord>, bool)> = Vec::new();
        for (_, request) in std::mem::take(&mut self.in_flight) {
            for b in request.batches {
                self.unmute(&b);
                if !b.resolved {
                    failed.push((b.topic, b.partition, b.batch.records.into_vec(), true));
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

    /// Test hook: the next sequence of a partition (to test wrapping).
    #[cfg(test)]
    pub(crate) fn set_next_sequence(&mut self, topic: &str, partition: i32, next: i32) {
        self.walk_all = true;
        if let Some(pq) = self.partition_queue(topic, partition) {
            pq.sequences = super::idempotence::PartitionSequences::starting_at(next);
        }
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

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which time alone would make the engine act.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let next = self.next_deadline(
            self.deadlines.send,
            self.deadlines
                .oldest_batch
                .map(|c| c + self.config.delivery_timeout),
        );
        #[cfg(test)]
        self.check_deadlines(next);
        next
    }

    /// The earliest of the timers: the waiting records', the two kinds kept
    /// in [`Deadlines`] (`send`, `expiry`), the metadata, producer id and
    /// transaction state machines', the spare buffers' next trim, and when
    /// the room for waiting sends lapses without another delivery.
    fn next_deadline(&self, send: Option<Instant>, expiry: Option<Instant>) -> Option<Instant> {
        let now = self.now?;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for w in &self.waiting {
            consider(w.deadline);
        }
        if let Some(t) = send {
            consider(t);
        }
        if let Some(t) = expiry {
            consider(t);
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
        if let Some(t) = self.spare_buffers.next_trim() {
            consider(t.max(now + Duration::from_millis(1)));
        }
        if let Some(t) = self.backlog.recheck_at() {
            consider(t.max(now + Duration::from_millis(1)));
        }
        next
    }

    /// When the first partition holding records becomes sendable by time
    /// alone, found by walking them (the drain pass keeps this in
    /// [`Deadlines::send`] without a walk of its own).
    fn send_deadline_by_scan(&self) -> Option<Instant> {
        let now = self.now?;
        let limit = self.partition_in_flight_limit();
        self.topics
            .values()
            .flat_map(TopicQueues::active)
            .filter_map(|(_, pq)| pq.ready_at(self.config.linger, limit))
            .filter(|&t| t > now)
            .min()
    }

    /// When the oldest batch waiting or in flight was created, found by
    /// walking them.
    fn oldest_batch_by_scan(&self) -> Option<Instant> {
        let queued = self
            .topics
            .values()
            .flat_map(TopicQueues::active)
            .filter_map(|(_, pq)| pq.oldest_created());
        let in_flight = self
            .in_flight
            .values()
            .flat_map(|r| r.batches.iter())
            .filter(|b| !b.resolved)
            .map(|b| b.batch.created);
        queued.chain(in_flight).min()
    }

    /// Tests: the timer table is never later than a walk over every
    /// partition and batch in flight would find (a late timer would leave
    /// a lingering batch or an expiry waiting for the next input).
    #[cfg(test)]
    fn check_deadlines(&self, next: Option<Instant>) {
        let walked = self.next_deadline(
            self.send_deadline_by_scan(),
            self.oldest_batch_by_scan()
                .map(|c| c + self.config.delivery_timeout),
        );
        if let Some(walked) = walked {
            assert!(
                next.is_some_and(|n| n <= walked),
                "timer table {next:?} is later than the walk's {walked:?}"
            );
        }
    }

    /// A snapshot of the counters; the per-partition and per-broker tables
    /// only `with_detail`.
    #[cfg(test)]
    pub(crate) fn stats(&self, with_detail: bool) -> ProducerStats {
        let mut stats = ProducerStats::default();
        self.stats_into(&mut stats, with_detail);
        stats
    }

    /// [`stats`](Self::stats) into `out`, reusing its tables' entries;
    /// without `with_detail` they are left as they were.
    pub(crate) fn stats_into(&self, out: &mut ProducerStats, with_detail: bool) {
        let partitions = with_detail.then(|| {
            self.topics.iter().map(|(topic, _, tq)| {
                let counted = tq.partitions.iter().zip(&tq.held);
                (
                    topic.as_str(),
                    counted.map(|(pq, held)| (&pq.counts, *held)),
                )
            })
        });
        self.stats.snapshot_into(out, partitions);
        out.queued_bytes = self.buffer_used as u64;
        out.queued_records = self.held_records;
        out.in_flight_requests = self.in_flight.len() as u64;
    }

    /// Topics whose partitions are known (records for them are accepted
    /// without waiting for metadata).
    pub(crate) fn known_topics(&self) -> impl Iterator<Item = &str> {
        self.metadata.known_topics()
    }

    /// Bytes of records that waiting senders may still hand over before
    /// the next pass, so that no more wait unsent than the brokers' next
    /// requests can carry (see `backlog`); `None` for no limit.
    pub(crate) fn pacing_room(&self) -> Option<u64> {
        self.backlog.room()
    }

    /// Whether nothing is waiting, queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.held_records == 0 && self.in_flight.is_empty()
    }

    fn pump(&mut self, now: Instant) {
        self.now = Some(now);
        self.expire(now);
        self.process_waiting(now);
        self.poll_metadata(now);
        self.poll_producer_id(now);
        self.drain(now);
        self.poll_transactions(now);
        self.spare_buffers.trim(now);
        #[cfg(test)]
        self.check_active_partitions();
    }

    /// Tests: every partition holding records is in its topic's active set
    /// (a partition left out would never send and never time out).
    #[cfg(test)]
    fn check_active_partitions(&self) {
        for (topic, _, tq) in self.topics.iter() {
            for (p, pq) in tq.partitions.iter().enumerate() {
                assert!(
                    pq.is_empty() || tq.active.contains(p),
                    "{topic}-{p} holds records but is not in the active set"
                );
            }
        }
    }
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
