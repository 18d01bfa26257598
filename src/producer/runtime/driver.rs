//! The producer's driver: one tokio task that owns the sans-IO [`Engine`]
//! and pumps it, reaching brokers through the producer's `BrokerPool`.
//!
//! ```text
//!            commands (send, flush, close) from Producer handles
//!                               │
//!   ┌───────────────────────────▼────────────────────────────┐
//!   │ loop: select { command, response, engine timeout }      │
//!   │   → engine input → drain outputs:                       │
//!   │      poll_transmit → Produce: its broker's queue        │
//!   │                      other requests: a task each        │
//!   │      poll_event    → resolve send / delivery futures    │
//!   └──────────────┬──────────────────────────▲──────────────┘
//!                  │ dispatch / request tasks │ responses (channel)
//!                  ▼                          │
//!       BrokerPool → BrokerConnection (one per broker, pipelined; a
//!       request timeout closes it and the next request opens a fresh one,
//!       after the reconnect backoff if connecting fails)
//! ```
//!
//! Between runs of records the driver waits quietly when it has linger:
//! records sent while it waits gather in the inbox without waking it
//! until its next deadline (a linger end, a retry, a timeout), a batch's
//! worth of bytes, a few dozen records, or any other command, and each is
//! taken as of the instant it was sent (see `inbox`). At linger 0 every
//! record wakes it.
//!
//! Lifecycle: `Running` until a close command (or every handle dropped),
//! then `Closing` (everything ready at once, no new records) until the
//! engine is idle or the close deadline passes (then what is left fails),
//! then the task ends and the connections close.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::producer::runtime::buffer_gate::BufferGate;
use crate::producer::runtime::dispatch::{ProduceJob, ProduceQueues};
use crate::producer::runtime::fine_timer::FineTimer;
use crate::producer::runtime::outbound::Outbound;
use crate::producer::runtime::response::Response;

use crate::clock;
use crate::engine::{DeliveredBatch, Engine, EngineConfig, Event, ProducerStats, Transmit, TxnOp};
use crate::error::{Error, ErrorKind};
use crate::metadata::ClusterMetadata;
use crate::net::pool::BrokerPool;
use crate::producer::DeliveryCallback;
use crate::producer::runtime::inbox::{self, Arrival, InboxReceiver, InboxSender, Quiet};
use crate::producer::runtime::known_topics::KnownTopics;
use crate::producer::runtime::reporter::DeliveryReply;
use crate::producer::runtime::reporter::{Reporter, TaggedBatch};
use crate::producer::runtime::token_ring::TokenRing;
use crate::record::{Record, RecordMetadata};

/// The result of accepting a record into the buffer.
pub(crate) type AcceptReply = oneshot::Sender<Result<(), Error>>;

/// Bytes of `buffer_memory` a record takes, besides its own, while it waits
/// in the inbox as a command: so the records a flood of sends queues up
/// faster than the engine takes them stay within the cap too.
pub(crate) const QUEUED_COST: usize = std::mem::size_of::<Command>();

/// Records the inbox holds at most (by their queued charge) before senders
/// that can wait wait for the driver to take some: enough for several of
/// the driver's runs, a few MiB of commands rather than all of
/// `buffer_memory`.
pub(crate) const INBOX_RECORDS: usize = 16 * 1024;

/// Bytes of `buffer_memory` a record takes, besides its own and its
/// framing, from acceptance until it settles: the engine's and the
/// driver's bookkeeping for it. With it the cap bounds what buffered
/// records really hold, not only their payload.
pub(crate) const TRACKING_COST: usize = std::mem::size_of::<PendingRecord>()
    + std::mem::size_of::<crate::engine::accumulator::PendingRecord>();

/// How much of `buffer_memory` a record takes, by its size
/// (`Record::estimated_size`): the rule `send` charges by and the driver
/// returns by, so that the driver need not keep a count per record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferRule {
    pub(crate) buffer_memory: usize,
    pub(crate) max_request_size: usize,
}

/// A record's share of `buffer_memory` (see [`BufferRule::charge`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Charge {
    /// Taken from `send` on.
    pub(crate) total: usize,
    /// The part that covers it only while it waits in the inbox.
    pub(crate) queued: usize,
}

impl BufferRule {
    /// `None` for a record the buffer can never hold: it goes to the engine
    /// without a share, to be refused with the precise reason. Else its
    /// bytes and bookkeeping ([`TRACKING_COST`]) and, while queued,
    /// [`QUEUED_COST`], all within the cap.
    pub(crate) fn charge(&self, size: usize) -> Option<Charge> {
        if size > self.buffer_memory
            || size.saturating_add(crate::record_batch::BATCH_HEADER_LEN) > self.max_request_size
        {
            return None;
        }
        let cap = self.buffer_memory;
        let held = size.saturating_add(TRACKING_COST).min(cap).max(size);
        let total = held.saturating_add(QUEUED_COST).min(cap);
        Some(Charge {
            total,
            queued: total - held,
        })
    }

    /// What a record of `size` bytes holds once out of the inbox.
    fn held(&self, size: usize) -> usize {
        self.charge(size).map_or(0, |c| c.total - c.queued)
    }
}

/// What a producer handle asks of the driver.
pub(crate) enum Command {
    Send {
        record: Record,
        /// `None`: wait up to `max_block` from when the engine takes it.
        deadline: Option<Instant>,
        /// `None` when the caller does not wait for acceptance (its buffer
        /// space is reserved and its topic known); an error before
        /// acceptance then goes to `delivered`.
        accepted: Option<AcceptReply>,
        /// Taken by the driver (`None` once taken: the record itself stays
        /// in the inbox, see [`Command::Spent`]).
        delivered: Option<DeliveryReply>,
        /// Whether the record took its share of `buffer_memory` from the
        /// gate (its [`BufferRule::charge`], which follows from its size):
        /// the queued part is given back as the inbox is emptied, the rest
        /// is held until the record settles.
        charged: bool,
        /// When it was sent, if the driver was waiting quietly then (it is
        /// taken as of this instant).
        sent_at: SentAt,
    },
    Flush {
        done: oneshot::Sender<()>,
    },
    Close {
        timeout: Option<Duration>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// Answers once the producer can send: at once without idempotence,
    /// after the first producer id with it, or with the fatal error.
    WaitReady {
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// A transactional call; `done` gets its result.
    Txn {
        call: TxnOp,
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// What is left of a command the driver took. A record taken is
    /// encoded where it lies and left in its inbox segment, with its
    /// replies taken out; the sender that reuses the segment drops it, on
    /// the thread that made it (the allocator frees memory fastest where
    /// it was allocated: dropped on the driver's thread, each record's own
    /// allocations cost contended frees). Other commands, and records of
    /// more than [`KEEP_SPENT_BYTES`], are replaced with this.
    Spent,
}

/// When a record was sent, in microseconds since the producer started,
/// wrapping: 32 bits fit in the command's padding, and a record waits in
/// the inbox for far less than the 71 minutes they count. 0: not known (an
/// instant that falls on 0 counts as a microsecond later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentAt(u32);

impl SentAt {
    pub(crate) const UNKNOWN: SentAt = SentAt(0);

    /// `at` as counted from `epoch` (the producer's start).
    pub(crate) fn new(epoch: Instant, at: Instant) -> SentAt {
        // The low 32 bits: the count wraps.
        let micros = at.saturating_duration_since(epoch).as_micros() as u32;
        SentAt(micros.max(1))
    }

    /// How long before `now` it was sent, if known. An instant after
    /// `now` (a count more than half the wrap ahead) is not.
    pub(crate) fn ago(self, epoch: Instant, now: Instant) -> Option<Duration> {
        if self == Self::UNKNOWN {
            return None;
        }
        let ago = SentAt::new(epoch, now).0.wrapping_sub(self.0);
        (ago < 1 << 31).then(|| Duration::from_micros(u64::from(ago)))
    }
}

/// Records up to this size are left in the inbox once taken, for a sender
/// to drop (see [`Command::Spent`]); larger ones are dropped by the driver
/// at once, so what the inbox's spare segments keep stays small.
const KEEP_SPENT_BYTES: usize = 2048;

/// What producer handles share with the driver.
pub(crate) struct DriverHandle {
    pub(crate) commands: InboxSender<Command>,
    pub(crate) stats: Arc<Mutex<ProducerStats>>,
    /// `buffer_memory`: `send` takes a record's share before handing it
    /// over (first come, first served).
    pub(crate) buffer: Arc<BufferGate>,
    /// How records are charged to `buffer`.
    pub(crate) rule: BufferRule,
    /// Topics whose metadata the engine has: a record for one of them is
    /// accepted at once, so `send` need not wait for the driver.
    pub(crate) known_topics: Arc<KnownTopics>,
    /// Records `send` / `try_send` refused for want of buffer space.
    pub(crate) refused: Arc<std::sync::atomic::AtomicU64>,
    /// Set by `close`: later sends fail at once.
    pub(crate) closed: std::sync::atomic::AtomicBool,
    /// When the producer started: what [`SentAt`] counts from.
    epoch: Instant,
}

impl DriverHandle {
    /// Queues a record for the driver, with what it holds of the buffer
    /// while queued. `false` when the driver is gone (the command is then
    /// dropped: a delivery future reports the producer as closed).
    pub(crate) fn send_record(
        &self,
        record: Record,
        deadline: Option<Instant>,
        accepted: Option<AcceptReply>,
        delivered: DeliveryReply,
        charge: Option<Charge>,
    ) -> bool {
        let queued = charge.map_or(0, |c| c.queued);
        // A record may gather only while the driver waits quietly (then
        // it carries its send instant); one whose acceptance is awaited
        // wakes the driver at once.
        let arrival = if accepted.is_none() && self.commands.is_quiet() {
            Arrival::Quiet {
                at: clock::now(),
                bytes: record.estimated_size(),
            }
        } else {
            Arrival::Loud
        };
        let sent_at = match arrival {
            Arrival::Quiet { at, .. } => SentAt::new(self.epoch, at),
            Arrival::Loud => SentAt::UNKNOWN,
        };
        let command = Command::Send {
            record,
            deadline,
            accepted,
            delivered: Some(delivered),
            charged: charge.is_some(),
            sent_at,
        };
        if self.commands.send_as(command, queued, arrival).is_ok() {
            return true;
        }
        // Closed: the record never reaches the driver, its share goes back.
        if let Some(charge) = charge {
            self.buffer.release(charge.total);
        }
        false
    }
}

/// The first `count` records of `batch`, whose tokens hold their tags, as
/// (tag, index, timestamp) for a list of tags apart from the batch.
fn tags_so_far(batch: &DeliveredBatch, count: usize) -> Vec<(u64, u32, i64)> {
    let mut list = Vec::with_capacity(batch.records.len());
    list.extend(
        batch.records[..count]
            .iter()
            .enumerate()
            .map(|(i, r)| (r.token, i as u32, batch.timestamp(r))),
    );
    list
}

/// Starts the driver task on the current runtime.
///
/// `try_send` is refused, and `send` waits, while the producer holds
/// `max_buffered_records` records (0: no such limit), queued for the
/// driver or held by it until they settle (see
/// [`inbox::InboxReceiver::set_held`]).
pub(crate) fn spawn(
    pool: Arc<BrokerPool>,
    engine: EngineConfig,
    on_delivery: Option<DeliveryCallback>,
    max_buffered_records: usize,
) -> Result<DriverHandle, Error> {
    let reporter = match on_delivery {
        Some(callback) => Some(
            Reporter::start(callback)
                .map_err(|e| Error::io("starting the delivery callback thread", e))?,
        ),
        None => None,
    };
    // A transactional producer gets its id from `init_transactions`.
    let wait_for_id = engine.idempotence && engine.transactional_id.is_none();
    // Batches are compressed by the dispatch tasks, not by the engine
    // (the producer's configuration says `CompressAt::Dispatch`).
    let outbound = Outbound::for_engine(&engine);
    let buffer = BufferGate::new(engine.buffer_memory);
    let rule = BufferRule {
        buffer_memory: engine.buffer_memory,
        max_request_size: engine.max_request_size,
    };
    let known_topics = Arc::new(KnownTopics::new());
    let (commands, command_rx) = inbox::inbox_limited(
        inbox::Limit {
            charges: INBOX_RECORDS * QUEUED_COST,
            flag: buffer.inbox_flag(),
        },
        inbox::Limit {
            charges: match max_buffered_records {
                0 => usize::MAX,
                records => records.saturating_mul(QUEUED_COST),
            },
            flag: buffer.inbox_cap_flag(),
        },
    );
    let stats = Arc::new(Mutex::new(ProducerStats::default()));
    let (responses, response_rx) = mpsc::unbounded_channel();
    let quiet = QuietRule {
        linger: engine.linger,
        // A batch's worth, and never so much of a small buffer that senders
        // would wait for room the task has not yet looked at.
        bytes: engine.batch_size.min(engine.buffer_memory / 2),
        after_take: false,
    };
    let epoch = clock::now();
    let driver = Driver {
        engine: Engine::new(engine),
        quiet,
        epoch,
        produce_queues: ProduceQueues::new(Arc::clone(&pool), responses.clone(), outbound),
        connections: pool,
        responses,
        response_rx,
        command_rx,
        commands_open: true,
        pending: TokenRing::new(1),
        incoming: Vec::new(),
        buffer: Arc::clone(&buffer),
        rule,
        flush_waiters: Vec::new(),
        closing: false,
        close_deadline: None,
        close_waiters: Vec::new(),
        aborted: 0,
        detail_published: None,
        detail_stale: false,
        detail_rows: 0,
        spare_stats: ProducerStats::default(),
        ready: !wait_for_id,
        txn_waiters: BTreeMap::new(),
        next_txn_op: 1,
        ready_waiters: Vec::new(),
        fatal: None,
        unreachable: None,
        accept_waiters: BTreeMap::new(),
        reports: Vec::new(),
        reporter,
        known_topics: Arc::clone(&known_topics),
        stats: Arc::clone(&stats),
    };
    tokio::spawn(driver.run());
    Ok(DriverHandle {
        commands,
        stats,
        buffer,
        rule,
        known_topics,
        refused: Arc::default(),
        closed: std::sync::atomic::AtomicBool::new(false),
        epoch,
    })
}

/// An unsettled record: where its outcome goes. What it holds of the
/// buffer follows from its size, which the engine reports with it.
struct PendingRecord {
    delivered: DeliveryReply,
}

struct Driver {
    engine: Engine,
    /// When the driver waits quietly (see the module doc).
    quiet: QuietRule,
    /// When the producer started: what [`SentAt`] counts from.
    epoch: Instant,
    connections: Arc<BrokerPool>,
    responses: mpsc::UnboundedSender<Response>,
    response_rx: mpsc::UnboundedReceiver<Response>,
    command_rx: InboxReceiver<Command>,
    /// Segments of commands taken from the inbox, being handled.
    incoming: Vec<Vec<Command>>,
    buffer: Arc<BufferGate>,
    rule: BufferRule,
    commands_open: bool,
    pending: TokenRing<PendingRecord>,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    closing: bool,
    close_deadline: Option<Instant>,
    close_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    aborted: usize,
    stats: Arc<Mutex<ProducerStats>>,
    /// When the per-partition and per-broker tables were last published.
    detail_published: Option<Instant>,
    /// The snapshot before the one published, kept for its table entries.
    spare_stats: ProducerStats,
    /// Whether the tables changed since they were last published: they go
    /// out when [`detail_every`] has passed, woken by a timer if need be.
    detail_stale: bool,
    /// Rows in the partition table last published.
    detail_rows: usize,
    /// Whether the producer can send (it has its producer id).
    ready: bool,
    ready_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    /// The error that ended the producer, if any.
    fatal: Option<Error>,
    /// Set when no bootstrap server could be reached at start-up (see
    /// [`bootstrap::StartupWatch`]): waiting for the producer id fails
    /// with it instead of waiting out `max_block`.
    unreachable: Option<Error>,
    /// Transactional calls waiting for their result, by call id.
    txn_waiters: BTreeMap<u64, oneshot::Sender<Result<(), Error>>>,
    next_txn_op: u64,
    /// Per broker, the ordered queue of its Produce requests.
    produce_queues: ProduceQueues,
    /// Senders waiting for their record's acceptance, by token (few: only
    /// records whose topic was not known yet).
    accept_waiters: BTreeMap<u64, AcceptReply>,
    /// Delivery reports of the run of deliveries being handled (kept for
    /// its allocation).
    reports: Vec<(DeliveryReply, RecordMetadata)>,
    /// Where reports of tagged records go, when there is a callback.
    reporter: Option<Reporter>,
    known_topics: Arc<KnownTopics>,
}

/// When the driver waits quietly for commands: with linger, after a run of
/// commands, until its next deadline and at most a linger from now, or
/// until a batch's worth of bytes (or the inbox's record bound) gathers.
/// Once that wait ends on the timer with nothing taken, the next record
/// wakes it again (an idle producer does not wake every linger).
struct QuietRule {
    linger: Duration,
    bytes: usize,
    /// Whether the last wait ended with a take (not on the timer).
    after_take: bool,
}

impl QuietRule {
    /// The quiet wait from `now`, with the driver's next deadline `wake`.
    fn wait(&self, now: Instant, wake: Option<Instant>) -> Option<Quiet> {
        if !self.after_take || self.linger.is_zero() {
            return None;
        }
        let end = crate::engine::producer::deadline_after(now, self.linger);
        Some(Quiet {
            until: wake.map_or(end, |w| w.min(end)),
            bytes: self.bytes.max(1),
        })
    }
}

/// How stale the published per-partition and per-broker tables may get
/// with up to 2,000 partitions. Building them costs in proportion to the
/// partitions written to, so they are not rebuilt after every delivery (a
/// producer paced over 10,000 partitions would spend most of its time
/// there); `flush` and `close` publish them at once.
const DETAIL_EVERY: Duration = Duration::from_millis(20);

/// Beyond 2,000 partitions the tables may get this much staler per
/// partition (100 ms at 10,000): a rebuild costs about 60 ns a partition,
/// so rebuilding takes under 1 % of the task's time however many there
/// are.
const DETAIL_PER_PARTITION: Duration = Duration::from_micros(10);

/// How stale the tables may get when the last published had `rows`
/// partitions.
fn detail_every(rows: usize) -> Duration {
    DETAIL_EVERY.max(DETAIL_PER_PARTITION.saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX)))
}

/// Deadlines closer than this are slept to on the task's fine timer.
const FINE_WITHIN: Duration = Duration::from_secs(1);

/// Reads the first byte of a command's key and value, and where its topic's
/// name is. The sending thread made or last touched them on another core,
/// so the engine's first read of each (hashing the key, copying the value,
/// comparing the topic) misses the cache, one record after another, each
/// miss waited for in turn. Read for a whole run first, in a loop small
/// enough that the processor has many of them outstanding at once, they
/// cost a fraction of that, and the engine then finds them in its cache
/// (10 % less CPU per record at 100 bytes).
#[inline]
fn warm(command: &Command) {
    if let Command::Send { record, .. } = command {
        // The topic's name too (its pointer, not its characters): the
        // engine compares it with the last topic seen before anything else.
        std::hint::black_box(record.topic.addr());
        for bytes in [&record.key, &record.value].into_iter().flatten() {
            std::hint::black_box(bytes.first().copied());
        }
    }
}

impl Driver {
    async fn run(mut self) {
        // The first metadata request (brokers only) goes out at once.
        self.engine.handle_timeout(clock::now());
        let mut fine = FineTimer::new();
        loop {
            self.pump_outputs();
            // What the driver holds counts against `max_buffered_records`
            // with what waits in the inbox (as queued charges); senders that
            // wait for it go on once it no longer binds.
            if self
                .command_rx
                .set_held(self.pending.len().saturating_mul(QUEUED_COST))
            {
                self.buffer.serve_waiters();
            }
            if (self.closing || !self.commands_open)
                && self.engine.is_idle()
                && self.pending.is_empty()
            {
                break;
            }
            let now = clock::now();
            if let Some(deadline) = self.close_deadline
                && now >= deadline
            {
                self.abort(now);
                continue;
            }
            let mut wake = self.engine.poll_timeout();
            for d in [self.close_deadline, self.detail_due()]
                .into_iter()
                .flatten()
            {
                wake = Some(wake.map_or(d, |w| w.min(d)));
            }
            let quiet = if self.closing {
                None
            } else {
                self.quiet.wait(now, wake)
            };
            let sleep_until = quiet
                .map(|q| q.until)
                .or(wake)
                .unwrap_or(now + Duration::from_secs(3600));
            // A deadline under a second away is kept to the microsecond (a
            // linger's end, a backoff); further ones on the runtime's timer.
            let use_fine = sleep_until < now + FINE_WITHIN
                && fine.as_mut().is_some_and(|t| t.arm(now, sleep_until));
            let timer = async {
                match fine.as_mut() {
                    Some(fine) if use_fine => fine.fired().await,
                    _ => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until)).await;
                    }
                }
            };
            tokio::select! {
                biased;
                Some(response) = self.response_rx.recv() => {
                    // Records that gathered while the driver waited quietly
                    // go first: they were sent before the response came.
                    // (Otherwise answers go first, as they free buffer.)
                    if self.commands_open
                        && self.command_rx.waiting_quietly()
                        && self.command_rx.try_recv_run(&mut self.incoming, |taken| {
                            self.buffer.give_back(taken)
                        })
                    {
                        self.on_run();
                    }
                    self.on_response(response);
                    while let Ok(more) = self.response_rx.try_recv() {
                        self.on_response(more);
                    }
                }
                more = self.command_rx.recv_run(
                    &mut self.incoming,
                    // Out of the inbox: the queued part of the charges goes
                    // back (consistently with what `stats` reads).
                    |taken| self.buffer.give_back(taken),
                    quiet,
                ), if self.commands_open => {
                    if more {
                        self.quiet.after_take = true;
                        self.on_run();
                    } else {
                        // Every handle is gone: send what is left, then stop.
                        self.commands_open = false;
                        self.closing = true;
                        self.engine.flush(clock::now(), u64::MAX);
                    }
                }
                () = timer => {
                    // Nothing came while the driver waited: the next record
                    // wakes it.
                    self.quiet.after_take = false;
                    // Also the time for tables left stale (`pump_outputs`).
                    self.engine.handle_timeout(clock::now());
                }
            }
        }
        for waiter in std::mem::take(&mut self.close_waiters) {
            let result = if self.aborted == 0 {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "close: {} record(s) not delivered before the deadline failed",
                        self.aborted
                    ),
                ))
            };
            self.answer(waiter, result);
        }
        for (_, done) in std::mem::take(&mut self.flush_waiters) {
            self.signal(done);
        }
        for (_, done) in std::mem::take(&mut self.txn_waiters) {
            self.answer(
                done,
                Err(Error::new(ErrorKind::Closed, "the producer is closed")),
            );
        }
        self.publish_stats(true);
        // Hands over what is left; the thread ends after it.
        drop(self.reporter.take());
    }

    /// Handles the run of commands just taken into `incoming`: one clock
    /// reading and one engine pass for all of them.
    fn on_run(&mut self) {
        self.buffer.serve_waiters();
        let now = clock::now();
        let unix_micros = clock::unix_micros();
        let mut segments = std::mem::take(&mut self.incoming);
        // The whole run at once: warming each segment before taking it
        // (256 records) saved less.
        for command in segments.iter().flatten() {
            warm(command);
        }
        for segment in &mut segments {
            for command in segment.iter_mut() {
                self.on_command(command, now, unix_micros);
            }
        }
        self.command_rx.recycle(&mut segments);
        self.incoming = segments;
        self.engine.handle_timeout(now);
    }

    fn abort(&mut self, now: Instant) {
        self.close_deadline = None;
        let before = self.pending.len();
        let reason = Error::new(
            ErrorKind::Closed,
            "the producer was closed before the record was delivered",
        );
        self.engine.abort(now, &reason);
        self.pump_outputs();
        self.aborted += before - self.pending.len();
    }

    /// Takes one record: appends it (borrowed: it stays where it lies), or
    /// refuses it once the producer is closing.
    #[allow(clippy::too_many_arguments)]
    fn on_send(
        &mut self,
        record: &Record,
        deadline: Option<Instant>,
        accepted: Option<AcceptReply>,
        delivered: Option<DeliveryReply>,
        charged: bool,
        now: Instant,
        unix_millis: i64,
    ) {
        // Every command sent carries its reply; only a spent one has none.
        let Some(delivered) = delivered else {
            return;
        };
        // The queued part was given back as the inbox was emptied; the rest
        // is held until the record settles (the engine reports its size
        // with its outcome).
        if self.closing {
            if charged {
                self.buffer.release(self.rule.held(record.estimated_size()));
            }
            let closed = Error::new(ErrorKind::Closed, "the producer is closed");
            match accepted {
                Some(reply) => {
                    let _ = reply.send(Err(closed));
                }
                None => delivered.send(Err(closed), self.reporter.as_mut()),
            }
            return;
        }
        let token = self.pending.push(PendingRecord { delivered });
        let waits = accepted.is_some();
        if let Some(reply) = accepted {
            self.accept_waiters.insert(token, reply);
        }
        self.engine
            .append_deferred(now, unix_millis, record, token, deadline, waits);
    }

    /// Takes one command, leaving what is spent of it in place (see
    /// [`Command::Spent`]). Records are appended without an engine pass;
    /// the caller runs one (`handle_timeout`) after a run of commands.
    fn on_command(&mut self, command: &mut Command, now: Instant, unix_micros: i64) {
        if let Command::Send {
            record,
            deadline,
            accepted,
            delivered,
            charged,
            sent_at,
        } = command
        {
            let keep = record.estimated_size() <= KEEP_SPENT_BYTES;
            // A record that gathered while the driver waited quietly is
            // taken as of when it was sent (its linger and its timestamp
            // start then).
            let sent = sent_at
                .ago(self.epoch, now)
                .and_then(|ago| Some((now.checked_sub(ago)?, ago)));
            let (at, unix_micros) = match sent {
                Some((sent, ago)) => (
                    sent,
                    unix_micros.saturating_sub(i64::try_from(ago.as_micros()).unwrap_or(0)),
                ),
                None => (now, unix_micros),
            };
            self.on_send(
                record,
                *deadline,
                accepted.take(),
                delivered.take(),
                *charged,
                at,
                unix_micros / 1000,
            );
            if !keep {
                *command = Command::Spent;
            }
            return;
        }
        match std::mem::replace(command, Command::Spent) {
            Command::Send { .. } | Command::Spent => {}
            Command::Flush { done } => {
                let mark = self.pending.next_token() - 1;
                self.flush_waiters.push((mark, done));
                self.engine.flush(now, mark);
            }
            Command::Close { timeout, done } => {
                self.closing = true;
                if let Some(t) = timeout {
                    let deadline = crate::engine::producer::deadline_after(now, t);
                    self.close_deadline =
                        Some(self.close_deadline.map_or(deadline, |d| d.min(deadline)));
                }
                self.close_waiters.push(done);
                self.engine.flush(now, u64::MAX);
            }
            Command::WaitReady { done } => match (&self.fatal, self.ready) {
                (Some(error), _) => {
                    let _ = done.send(Err(error.clone_shallow()));
                }
                (None, true) => {
                    let _ = done.send(Ok(()));
                }
                (None, false) => match &self.unreachable {
                    Some(error) => {
                        let _ = done.send(Err(error.clone_shallow()));
                    }
                    None => self.ready_waiters.push(done),
                },
            },
            Command::Txn { call, done } => {
                if self.closing {
                    let _ = done.send(Err(Error::new(ErrorKind::Closed, "the producer is closed")));
                    return;
                }
                let op = self.next_txn_op;
                self.next_txn_op += 1;
                self.txn_waiters.insert(op, done);
                self.engine.transaction(now, op, call);
            }
        }
    }

    fn on_response(&mut self, response: Response) {
        let now = clock::now();
        match response {
            Response::Produce { id, result } => {
                self.engine.handle_produce_response(now, id, result)
            }
            Response::Metadata { id, result } => {
                self.engine.handle_metadata_response(now, id, result);
                self.known_topics
                    .replace(self.engine.known_topics().map(str::to_owned).collect());
            }
            Response::InitProducerId { id, result } => {
                self.engine
                    .handle_init_producer_id_response(now, id, result);
            }
            Response::Txn { id, result } => self.engine.handle_txn_response(now, id, result),
            Response::WireSizes { id, sizes } => self.engine.note_wire_sizes(id, &sizes),
        }
        self.check_startup();
    }

    /// Once the start-up rule found the cluster unreachable: fails those
    /// waiting for the producer id, and the records waiting for metadata
    /// (a producer without idempotence is ready at once, so its records
    /// are the first to wait).
    fn check_startup(&mut self) {
        if self.unreachable.is_some() {
            return;
        }
        if let Some(error) = self.connections.unreachable() {
            for done in self.ready_waiters.drain(..) {
                let _ = done.send(Err(error.clone_shallow()));
            }
            self.engine
                .cluster_unreachable(clock::now(), error.clone_shallow());
            self.unreachable = Some(error);
        }
    }

    fn pump_outputs(&mut self) {
        while let Some(transmit) = self.engine.poll_transmit() {
            self.start(transmit);
        }
        // Before the space freed below is handed to waiters in line.
        self.buffer.set_pacing(self.engine.pacing_room());
        // Counters first, so a caller woken by an event sees them updated.
        self.publish_stats(false);
        let mut freed = 0;
        let mut reports = std::mem::take(&mut self.reports);
        while let Some(event) = self.engine.poll_event() {
            if !matches!(event, Event::Delivered(_)) {
                // Space first, so a caller woken by a delivery finds it free.
                self.buffer.release(std::mem::take(&mut freed));
                for (reply, metadata) in reports.drain(..) {
                    reply.send(Ok(metadata), self.reporter.as_mut());
                }
            }
            match event {
                // Most records have nobody waiting for acceptance: no lookup.
                Event::Accepted { token } if !self.accept_waiters.is_empty() => {
                    if let Some(reply) = self.accept_waiters.remove(&token) {
                        let _ = reply.send(Ok(()));
                    }
                }
                Event::Accepted { .. } => {}
                Event::Delivered(mut batch) => {
                    // The callback's reports go as one item per batch. While
                    // every record so far has a tag, each tag takes its
                    // record's token in the batch itself, which then goes
                    // to the callback as it is: no list per batch. From
                    // the first record that has none (a future, or a record
                    // no longer pending), the tags are listed apart.
                    let mut apart: Option<Vec<(u64, u32, i64)>> = None;
                    for i in 0..batch.records.len() {
                        let r = batch.records[i];
                        let reply = self.pending.remove(r.token).map(|p| {
                            // A run of deliveries (a batch) returns its space
                            // in one release, before any of them is reported.
                            freed += self.rule.held(r.reserved());
                            p.delivered
                        });
                        match (reply, &mut apart) {
                            (Some(DeliveryReply::Tagged(tag)), None) => {
                                batch.records[i].token = tag
                            }
                            (Some(DeliveryReply::Tagged(tag)), Some(list)) => {
                                list.push((tag, i as u32, batch.timestamp(&r)));
                            }
                            (other, _) => {
                                if apart.is_none() {
                                    apart = Some(tags_so_far(&batch, i));
                                }
                                if let Some(future) = other {
                                    reports.push((future, batch.metadata(i)));
                                }
                            }
                        }
                    }
                    if let Some(reporter) = self.reporter.as_mut() {
                        match apart {
                            None if !batch.records.is_empty() => {
                                reporter.delivered_tagged(TaggedBatch::new(batch));
                            }
                            Some(tagged) if !tagged.is_empty() => {
                                reporter.delivered(batch.metadata(0), tagged);
                            }
                            _ => {}
                        }
                    }
                }
                Event::TxnDone { op, result } => {
                    if let Some(done) = self.txn_waiters.remove(&op) {
                        self.answer(done, result);
                    }
                }
                Event::Initialised => {
                    self.ready = true;
                    for done in self.ready_waiters.drain(..) {
                        let _ = done.send(Ok(()));
                    }
                }
                Event::Fatal { error } => {
                    for done in self.ready_waiters.drain(..) {
                        let _ = done.send(Err(error.clone_shallow()));
                    }
                    self.fatal = Some(error);
                }
                Event::Failed {
                    token,
                    reserved,
                    error,
                } => {
                    if let Some(p) = self.pending.remove(token) {
                        self.buffer.release(self.rule.held(reserved));
                        // Before acceptance the error goes to `send`; a
                        // `try_send` does not listen there, so then it goes
                        // to the delivery future.
                        let unheard = match self.accept_waiters.remove(&token) {
                            Some(reply) => reply.send(Err(error)).err().and_then(Result::err),
                            None => Some(error),
                        };
                        if let Some(error) = unheard {
                            p.delivered.send(Err(error), self.reporter.as_mut());
                        }
                    }
                }
            }
        }
        self.buffer.release(freed);
        for (reply, metadata) in reports.drain(..) {
            reply.send(Ok(metadata), self.reporter.as_mut());
        }
        self.reports = reports;
        let oldest = self.pending.oldest();
        let mut i = 0;
        while i < self.flush_waiters.len() {
            if oldest.is_none_or(|o| o > self.flush_waiters[i].0) {
                // A flushed caller reads exact tables.
                if self.detail_stale {
                    self.publish_stats(true);
                }
                let (_, done) = self.flush_waiters.swap_remove(i);
                self.signal(done);
            } else {
                i += 1;
            }
        }
        if let Some(reporter) = self.reporter.as_mut() {
            reporter.submit();
        }
    }

    /// Signals `done`, after the callback has seen the reports before it.
    fn signal(&mut self, done: oneshot::Sender<()>) {
        match self.reporter.as_mut() {
            Some(reporter) => reporter.signal(done),
            None => {
                let _ = done.send(());
            }
        }
    }

    /// Hands `result` to `done`, after the callback has seen the reports
    /// before it.
    fn answer(&mut self, done: oneshot::Sender<Result<(), Error>>, result: Result<(), Error>) {
        match self.reporter.as_mut() {
            Some(reporter) => reporter.answer(done, result),
            None => {
                let _ = done.send(result);
            }
        }
    }

    /// Publishes the counters for `Producer::stats`. Totals go out every
    /// time; the per-partition and per-broker tables when `detail` is asked
    /// for, and otherwise at most every [`detail_every`] (see
    /// [`detail_due`](Self::detail_due) for the ones left stale).
    fn publish_stats(&mut self, detail: bool) {
        let now = clock::now();
        let detail = detail
            || self
                .detail_published
                .is_none_or(|t| now.saturating_duration_since(t) >= detail_every(self.detail_rows));
        // Filled outside the lock, into the snapshot published two times
        // ago, whose entries are reused; then swapped in.
        let mut snapshot = std::mem::take(&mut self.spare_stats);
        self.engine.stats_into(&mut snapshot, detail);
        let mut shared = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if detail {
            self.detail_published = Some(now);
            self.detail_stale = false;
            self.detail_rows = snapshot.partitions.len();
        } else {
            self.detail_stale = true;
            // The tables published last stay; the spare keeps the older
            // ones' entries for the next refresh.
            std::mem::swap(&mut snapshot.partitions, &mut shared.partitions);
            std::mem::swap(&mut snapshot.brokers, &mut shared.brokers);
        }
        std::mem::swap(&mut *shared, &mut snapshot);
        drop(shared);
        self.spare_stats = snapshot;
    }

    /// When the tables left stale are due, if any are.
    fn detail_due(&self) -> Option<Instant> {
        if !self.detail_stale {
            return None;
        }
        self.detail_published
            .map(|t| t + detail_every(self.detail_rows))
    }

    fn start(&mut self, transmit: Transmit) {
        let connections = Arc::clone(&self.connections);
        let responses = self.responses.clone();
        match transmit {
            Transmit::Produce {
                id,
                node,
                addr,
                request,
                expects_response,
            } => self.produce_queues.send(
                node,
                ProduceJob {
                    id,
                    addr,
                    request,
                    expects_response,
                },
            ),
            Transmit::InitProducerId {
                id,
                node,
                producer_id,
                epoch,
            } => {
                tokio::spawn(async move {
                    let result = async {
                        let conn = connections.node_or_bootstrap(node.as_ref()).await?;
                        crate::net::txn_wire::init_producer_id(
                            &conn,
                            None,
                            i32::MAX,
                            producer_id,
                            epoch,
                        )
                        .await
                    }
                    .await;
                    let _ = responses.send(Response::InitProducerId { id, result });
                });
            }
            Transmit::Txn {
                id,
                node,
                transactional_id,
                request,
            } => {
                tokio::spawn(async move {
                    let result = async {
                        let conn = connections.node_or_bootstrap(node.as_ref()).await?;
                        crate::net::txn_wire::send(&conn, &transactional_id, request).await
                    }
                    .await;
                    let _ = responses.send(Response::Txn { id, result });
                });
            }
            Transmit::Metadata {
                id,
                node,
                topics,
                allow_auto_topic_creation,
            } => {
                tokio::spawn(async move {
                    let result = async {
                        let conn = connections.node_or_bootstrap(node.as_ref()).await?;
                        let request = crate::metadata::metadata_request(
                            Some(&topics),
                            allow_auto_topic_creation,
                        );
                        let response = conn.send(&request).await?;
                        ClusterMetadata::from_answer(&response)
                    }
                    .await;
                    let _ = responses.send(Response::Metadata { id, result });
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_instant_comes_back_to_the_microsecond_across_the_wrap() {
        let epoch = clock::now();
        let micro = Duration::from_micros(1);
        for offset in [
            Duration::from_micros(5),
            Duration::from_secs(3600),
            // Just before and after 2^32 microseconds (71.6 minutes).
            Duration::from_micros((1 << 32) - 3),
            Duration::from_micros((1 << 32) + 7),
        ] {
            let sent = epoch + offset;
            for later in [micro, Duration::from_millis(5), Duration::from_secs(2)] {
                let at = SentAt::new(epoch, sent);
                assert_ne!(at, SentAt::UNKNOWN);
                assert_eq!(
                    at.ago(epoch, sent + later),
                    Some(later),
                    "{offset:?} + {later:?}"
                );
            }
        }
        assert_eq!(SentAt::UNKNOWN.ago(epoch, epoch + micro), None);
        // Sent after `now` (another thread's clock reading): not known.
        let sent = epoch + Duration::from_secs(10);
        assert_eq!(SentAt::new(epoch, sent).ago(epoch, sent - micro), None);
        // The epoch itself is not taken for "unknown".
        assert_eq!(
            SentAt::new(epoch, epoch).ago(epoch, epoch + micro),
            Some(Duration::ZERO)
        );
    }
}
