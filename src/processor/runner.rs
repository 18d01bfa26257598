//! [`ProcessorRunner`]: the poll loop around a [`Processor`]. It owns the
//! consumer's subscription (source topics and their retry topics), the
//! records waiting per partition and key, the tasks processing them, the
//! commits, the rebalance listener that gives up revoked partitions, and
//! the shutdown.
//!
//! One lock ([`Shared`]) holds what the poll loop, the record tasks and
//! the rebalance listener all touch: per partition its offset tracker,
//! per-key lanes, records waiting for their retry delay, and the running
//! tasks. Each assignment of a partition gets a new epoch, so a task of an
//! earlier assignment can never mark records of a later one finished.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::{AbortHandle, JoinHandle};

use super::keyed::{KeyedQueue, Lane};
use super::offsets::OffsetTracker;
use super::retry_topics::{Destination, Routes, forward};
use super::{ProcessError, Processor};
use crate::clock;
use crate::consumer::{
    ConsumedRecord, Consumer, OffsetToCommit, RebalanceContext, RebalanceListener, TopicPartition,
};
use crate::error::{Error, ErrorKind};
use crate::failure_headers::FailureInfo;
use crate::health::ProcessingMeter;
use crate::producer::Producer;
use crate::telemetry;

/// Records queued in one partition before it is paused until they drain.
const MAX_QUEUED_PER_PARTITION: usize = 1_000;
/// Longest wait in one poll, which bounds how late the shutdown signal
/// and retry delays are noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Poll timeout while queued records wait for a busy key or a free slot.
const BUSY_POLL_TIMEOUT: Duration = Duration::from_millis(5);

/// Counts of one run, as [`ProcessorRunner::run_until`] returns them or
/// [`RunStats::snapshot`] reads them while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Records polled, retry topics' included.
    pub consumed: u64,
    /// Records processed successfully.
    pub processed: u64,
    /// Failed processing attempts (a record tried three times and failing
    /// counts three).
    pub failed: u64,
    /// Records sent to a retry topic.
    pub retried: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
}

/// A live view of a run's counts; cheap to clone and to read from any
/// task.
#[derive(Debug, Clone, Default)]
pub struct RunStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    consumed: AtomicU64,
    processed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

impl RunStats {
    /// The counts so far.
    pub fn snapshot(&self) -> RunSummary {
        let c = &self.0;
        RunSummary {
            consumed: c.consumed.load(Ordering::Relaxed),
            processed: c.processed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Settings of a run, fixed at build.
#[derive(Debug, Clone)]
struct Settings {
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    max_concurrency: usize,
    commit_interval: Duration,
    shutdown_timeout: Duration,
    report_processing: bool,
}

impl Settings {
    /// The pause after failed attempt `attempt` (1-based): doubling from
    /// `backoff`, at most `max_backoff`.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Polls a consumer and runs a [`Processor`] on its records; see the
/// [module documentation](super) for what it guarantees.
///
/// Built with [`ProcessorRunner::builder`], run with
/// [`run_until`](Self::run_until).
pub struct ProcessorRunner<P> {
    consumer: Consumer,
    producer: Producer,
    processor: Arc<P>,
    routes: Arc<Routes>,
    settings: Settings,
    stats: RunStats,
}

impl<P> std::fmt::Debug for ProcessorRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorRunner")
            .field("consumer", &self.consumer)
            .field("routes", &self.routes)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ProcessorRunner`].
#[must_use]
pub struct ProcessorRunnerBuilder<P> {
    consumer: Consumer,
    producer: Producer,
    processor: P,
    topics: Vec<String>,
    retry_delays: Vec<Duration>,
    dead_letter: Option<String>,
    settings: Settings,
}

impl<P> std::fmt::Debug for ProcessorRunnerBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorRunnerBuilder")
            .field("topics", &self.topics)
            .field("retry_delays", &self.retry_delays)
            .field("dead_letter", &self.dead_letter)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<P: Processor> ProcessorRunner<P> {
    /// A builder for a runner of `processor` on `consumer`'s records,
    /// sending failed records to retry and dead-letter topics with
    /// `producer`.
    ///
    /// The consumer must be built with `enable_auto_commit(false)` (the
    /// runner commits what it has finished) and not subscribed yet; the
    /// runner installs its own rebalance listener, replacing any other.
    pub fn builder(
        consumer: Consumer,
        producer: Producer,
        processor: P,
    ) -> ProcessorRunnerBuilder<P> {
        ProcessorRunnerBuilder {
            consumer,
            producer,
            processor,
            topics: Vec::new(),
            retry_delays: Vec::new(),
            dead_letter: None,
            settings: Settings {
                max_attempts: 3,
                backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                max_concurrency: 1,
                commit_interval: Duration::from_millis(500),
                shutdown_timeout: Duration::from_secs(10),
                report_processing: true,
            },
        }
    }

    /// The run's counts, readable while it runs.
    pub fn stats(&self) -> RunStats {
        self.stats.clone()
    }
}

impl<P: Processor> ProcessorRunnerBuilder<P> {
    /// The topics to process (required). Their retry topics, if any, are
    /// subscribed as well.
    pub fn topics(mut self, topics: &[&str]) -> Self {
        self.topics = topics.iter().map(|t| (*t).to_string()).collect();
        self
    }

    /// Attempts in place before a record moves on to a retry or
    /// dead-letter topic (default 3, at least 1). Each retry topic makes
    /// as many.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// The pause after the first failed attempt, doubled after each
    /// further one up to `max` (default 100 ms up to 5 s). The record's
    /// key waits meanwhile; other keys go on.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.settings.backoff = initial;
        self.settings.max_backoff = max;
        self
    }

    /// Opt-in retry topics, one per delay: a record that still fails
    /// after `max_attempts` goes to `<topic>.retry.1`, is processed again
    /// no sooner than the first delay after it was written there, then
    /// `<topic>.retry.2`, ..., then the dead-letter topic. The topics must
    /// exist (or be created automatically).
    ///
    /// **This reorders a key's records**: later records of the key are
    /// processed before the one sent to a retry topic. While a retry
    /// topic's first record waits for its delay, that partition is paused
    /// (the consumer keeps its group membership).
    pub fn retry_topics(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.retry_delays = delays.into_iter().collect();
        self
    }

    /// One dead-letter topic for every source topic, instead of
    /// `<topic>.dlt` for each.
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter = Some(topic.into());
        self
    }

    /// Records processed at the same time (default 1). Records of one key
    /// (and the keyless records of one partition) are still processed one
    /// at a time, in order.
    pub fn max_concurrency(mut self, records: usize) -> Self {
        self.settings.max_concurrency = records;
        self
    }

    /// How often finished records are committed (default 500 ms). They
    /// are also committed when partitions are revoked and at shutdown.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.settings.commit_interval = interval;
        self
    }

    /// Whether each commit carries the processor's time per record on that
    /// partition since the last commit, as the offset's metadata (a
    /// [`ProcessingReport`](crate::health::ProcessingReport); default on).
    /// Producers whose smart partitioner collects this group's lag with
    /// trend scoring then route by what the processors can do instead of
    /// probing. The time is the processor's, divided by
    /// [`max_concurrency`](Self::max_concurrency) (records processed at
    /// once). A partition whose pace halves or doubles (over 16 records)
    /// is committed at once rather than at the next interval (at most
    /// every 100 ms), so routing hears of a slowdown or a recovery sooner.
    pub fn report_processing(mut self, on: bool) -> Self {
        self.settings.report_processing = on;
        self
    }

    /// How long records already being processed at the shutdown signal
    /// may take to finish before they are abandoned (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Checks the settings (a bad one is named in the error).
    pub fn build(self) -> Result<ProcessorRunner<P>, Error> {
        if self.topics.is_empty() {
            return Err(Error::config(
                "topics",
                "name at least one topic to process",
            ));
        }
        for topic in &self.topics {
            crate::topic_name::validate(topic)?;
            for stage in 1..=self.retry_delays.len() {
                crate::topic_name::validate(&super::retry_topics::retry_topic(topic, stage))?;
            }
        }
        if let Some(topic) = &self.dead_letter {
            crate::topic_name::validate(topic)?;
            if self.topics.contains(topic) {
                return Err(Error::config(
                    "dead_letter_topic",
                    "the dead-letter topic cannot be one of the processed topics",
                ));
            }
        }
        if self.settings.max_attempts == 0 {
            return Err(Error::config("max_attempts", "must be at least 1"));
        }
        if self.settings.max_concurrency == 0 {
            return Err(Error::config("max_concurrency", "must be at least 1"));
        }
        if self.settings.backoff > self.settings.max_backoff {
            return Err(Error::config(
                "backoff",
                "the initial backoff exceeds the maximum",
            ));
        }
        if self.consumer.config().enable_auto_commit {
            return Err(Error::config(
                "enable_auto_commit",
                "the runner commits what it has processed: build the consumer with \
                 enable_auto_commit(false)",
            ));
        }
        let routes = Routes::new(&self.topics, self.retry_delays, self.dead_letter);
        Ok(ProcessorRunner {
            consumer: self.consumer,
            producer: self.producer,
            processor: Arc::new(self.processor),
            routes: Arc::new(routes),
            settings: self.settings,
            stats: RunStats::default(),
        })
    }
}

/// One assigned partition's records.
#[derive(Debug)]
struct PartitionState {
    epoch: u64,
    tracker: OffsetTracker,
    queue: KeyedQueue<ConsumedRecord>,
    /// Records of a retry topic waiting for their delay (due time in Unix
    /// milliseconds), in offset order; the partition is paused meanwhile.
    delayed: VecDeque<(i64, ConsumedRecord)>,
    /// Records being processed, by offset.
    tasks: HashMap<i64, AbortHandle>,
    committed: Option<i64>,
    paused: bool,
    at_end: bool,
}

impl PartitionState {
    fn new(epoch: u64) -> PartitionState {
        PartitionState {
            epoch,
            tracker: OffsetTracker::default(),
            queue: KeyedQueue::default(),
            delayed: VecDeque::new(),
            tasks: HashMap::new(),
            committed: None,
            paused: false,
            at_end: false,
        }
    }

    fn wants_pause(&self) -> bool {
        !self.delayed.is_empty() || self.queue.len() >= MAX_QUEUED_PER_PARTITION
    }

    /// The position to commit, if it moved since the last commit.
    fn to_commit(&self) -> Option<i64> {
        let next = self.tracker.committable()?;
        (Some(next) != self.committed).then_some(next)
    }
}

/// How much a partition's processing pace must move since its last report
/// (either way) for the runner to commit at once.
const PACE_CHANGE: f64 = 2.0;
/// Records the moved pace must be seen over.
const PACE_RECORDS: u64 = 16;
/// The least time between two commits when a moved pace asks for one, so
/// a consumer whose records vary widely does not commit on every few.
const EARLY_COMMIT_GAP: Duration = Duration::from_millis(100);

/// What the poll loop, the record tasks and the rebalance listener share.
#[derive(Debug, Default)]
struct Shared {
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Processing time per partition, for the reports committed with the
    /// offsets (`None` when they are off).
    meter: Option<ProcessingMeter>,
    /// A partition's processing pace moved by more than [`PACE_CHANGE`]
    /// since its last report: commit (and report) without waiting for the
    /// commit interval.
    pace_changed: bool,
    next_epoch: u64,
    in_flight: usize,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(shared: &SharedState) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The processing report to commit with `topic`/`partition`'s offset.
    fn report(&mut self, topic: &str, partition: i32) -> Option<String> {
        self.meter.as_mut()?.metadata(topic, partition)
    }

    fn assign(&mut self, tp: TopicPartition) -> &mut PartitionState {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.partitions
            .insert(tp.clone(), PartitionState::new(epoch));
        self.partitions
            .get_mut(&tp)
            .expect("the partition was inserted just above")
    }

    /// Gives up partitions: their running records are abandoned, their
    /// queued ones dropped. Returns their positions to commit.
    fn release(&mut self, partitions: &[TopicPartition]) -> Vec<OffsetToCommit> {
        let mut commits = Vec::new();
        for tp in partitions {
            let Some(state) = self.partitions.remove(tp) else {
                continue;
            };
            for task in state.tasks.values() {
                task.abort();
            }
            self.in_flight -= state.tasks.len();
            if let Some(next) = state.to_commit() {
                let mut commit = OffsetToCommit::new(tp.0.clone(), tp.1, next);
                commit.metadata = self.report(&tp.0, tp.1);
                commits.push(commit);
            }
            if let Some(meter) = self.meter.as_mut() {
                meter.forget(&tp.0, tp.1);
            }
        }
        commits
    }

    /// The task of the record at `offset` (of assignment `epoch`) ended;
    /// `finished` when the record is done with. Ignored when the partition
    /// was released since (another assignment's records are not touched).
    fn finish(
        &mut self,
        tp: &TopicPartition,
        epoch: u64,
        offset: i64,
        lane: &Lane,
        finished: bool,
    ) {
        let Some(state) = self.partitions.get_mut(tp) else {
            return;
        };
        if state.epoch != epoch || state.tasks.remove(&offset).is_none() {
            return;
        }
        self.in_flight -= 1;
        if finished {
            state.tracker.finish(offset);
            state.queue.done(lane);
        }
    }

    fn abort_all(&mut self) {
        for state in self.partitions.values_mut() {
            for task in state.tasks.values() {
                task.abort();
            }
            self.in_flight -= state.tasks.len();
            state.tasks.clear();
        }
    }
}

/// Aborts the record tasks when the run ends in any way, a dropped
/// `run_until` future included.
struct AbortOnDrop(SharedState);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        lock(&self.0).abort_all();
    }
}

/// The runner's rebalance listener: revoked partitions give up their
/// running records and commit what is finished before they leave.
struct Listener<P> {
    shared: SharedState,
    processor: Arc<P>,
}

impl<P: Processor> RebalanceListener for Listener<P> {
    fn on_assigned(&mut self, partitions: &[TopicPartition], _: &mut RebalanceContext) {
        {
            let mut shared = lock(&self.shared);
            for tp in partitions {
                shared.assign(tp.clone());
            }
        }
        self.processor.on_assigned(partitions);
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition], ctx: &mut RebalanceContext) {
        let commits = lock(&self.shared).release(partitions);
        ctx.commit(commits);
        self.processor.on_revoked(partitions);
    }

    fn on_lost(&mut self, partitions: &[TopicPartition], _: &mut RebalanceContext) {
        // Another member may own them already: nothing is committed.
        let _ = lock(&self.shared).release(partitions);
        self.processor.on_revoked(partitions);
    }
}

/// What every record task needs.
struct TaskContext<P> {
    processor: Arc<P>,
    producer: Producer,
    routes: Arc<Routes>,
    settings: Settings,
    stats: RunStats,
    shared: SharedState,
    finished: Notify,
    fatal: mpsc::UnboundedSender<Error>,
}

/// Aborts a spawned task when dropped (an abandoned record task takes its
/// processing with it).
struct AbortTask<T>(JoinHandle<T>);

impl<T> Drop for AbortTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<P: Processor> ProcessorRunner<P> {
    /// Runs until `shutdown` completes (or a fatal error), then stops
    /// polling, lets the records being processed finish (within
    /// [`shutdown_timeout`](ProcessorRunnerBuilder::shutdown_timeout); the
    /// rest are abandoned), drops the records not started, commits what is
    /// finished and closes the consumer, which leaves the group. Records
    /// not committed are processed again by the next owner of their
    /// partition.
    ///
    /// Record failures never end the run. It ends with an error when the
    /// consumer fails for good (its error) or when a record cannot be
    /// written to its retry or dead-letter topic (that record is then left
    /// uncommitted).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, Error> {
        let ProcessorRunner {
            mut consumer,
            producer,
            processor,
            routes,
            settings,
            stats,
        } = self;
        let shared: SharedState = Arc::new(Mutex::new(Shared {
            meter: settings.report_processing.then(ProcessingMeter::new),
            ..Shared::default()
        }));
        let _abort = AbortOnDrop(Arc::clone(&shared));
        let (fatal, mut fatal_errors) = mpsc::unbounded_channel();
        let ctx = Arc::new(TaskContext {
            processor: Arc::clone(&processor),
            producer,
            routes: Arc::clone(&routes),
            settings: settings.clone(),
            stats: stats.clone(),
            shared: Arc::clone(&shared),
            finished: Notify::new(),
            fatal,
        });
        consumer.set_rebalance_listener(Listener {
            shared: Arc::clone(&shared),
            processor: Arc::clone(&processor),
        });
        let subscription = routes.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        processor.on_started(&subscription);

        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_commit = clock::now();
        let outcome = loop {
            if fired(&mut shutdown).await {
                break Ok(());
            }
            if let Ok(error) = fatal_errors.try_recv() {
                break Err(error);
            }
            release_due(&shared);
            dispatch(&ctx);
            update_pauses(&mut consumer, &shared);
            let since = last_commit.elapsed();
            let early =
                since >= EARLY_COMMIT_GAP && std::mem::take(&mut lock(&shared).pace_changed);
            if early || since >= settings.commit_interval {
                last_commit = clock::now();
                commit(&mut consumer, &shared).await;
            }
            let timeout = poll_timeout(&shared);
            match consumer.poll(timeout).await {
                Ok(records) => accept(records, &consumer, &ctx),
                Err(e) if e.is_retriable() => {
                    tracing::warn!(error = %e, "poll failed; polling again");
                    tokio::time::sleep(POLL_TIMEOUT).await;
                }
                Err(e) => break Err(e),
            }
        };
        if let Err(error) = outcome {
            lock(&shared).abort_all();
            if let Err(e) = consumer.close().await {
                tracing::warn!(error = %e, "closing the consumer after a fatal error failed");
            }
            return Err(error);
        }

        // Shutdown: nothing new starts; running records may finish.
        processor.on_stopping();
        {
            let mut shared = lock(&shared);
            for state in shared.partitions.values_mut() {
                state.queue = KeyedQueue::default();
                state.delayed.clear();
            }
        }
        let deadline = clock::now() + settings.shutdown_timeout;
        loop {
            if lock(&shared).in_flight == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(clock::now());
            if left.is_zero() {
                tracing::warn!("records still running at the shutdown timeout are abandoned");
                lock(&shared).abort_all();
                break;
            }
            let _ = tokio::time::timeout(left.min(POLL_TIMEOUT), ctx.finished.notified()).await;
        }
        commit(&mut consumer, &shared).await;
        let closed = consumer.close().await;
        if let Ok(error) = fatal_errors.try_recv() {
            return Err(error);
        }
        closed?;
        Ok(stats.snapshot())
    }
}

/// Whether `shutdown` has completed (polled once, without waiting).
async fn fired<F: Future<Output = ()>>(shutdown: &mut Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx).is_ready())).await
}

/// Moves records whose retry delay has passed into their lanes.
fn release_due(shared: &SharedState) {
    let now = clock::unix_millis();
    let mut shared = lock(shared);
    for state in shared.partitions.values_mut() {
        while state.delayed.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, record)) = state.delayed.pop_front() {
                state.queue.push(record.key.clone(), record.offset, record);
            }
        }
    }
}

/// Pauses partitions with records waiting for a delay or too many queued,
/// and resumes them when that is over.
fn update_pauses(consumer: &mut Consumer, shared: &SharedState) {
    let mut shared = lock(shared);
    for ((topic, partition), state) in shared.partitions.iter_mut() {
        let wants = state.wants_pause();
        if wants == state.paused {
            continue;
        }
        let result = if wants {
            consumer.pause(topic, *partition)
        } else {
            consumer.resume(topic, *partition)
        };
        match result {
            Ok(()) => state.paused = wants,
            Err(e) => tracing::debug!(error = %e, %topic, partition, "pause or resume refused"),
        }
    }
}

/// How long the next poll may wait: briefly while records wait for a busy
/// key or a free slot, at most until the next retry delay ends.
fn poll_timeout(shared: &SharedState) -> Duration {
    let shared = lock(shared);
    let waiting = shared.partitions.values().any(|s| s.queue.len() > 0);
    if waiting && shared.in_flight > 0 {
        return BUSY_POLL_TIMEOUT;
    }
    let next_due = shared
        .partitions
        .values()
        .filter_map(|s| s.delayed.front().map(|(due, _)| *due))
        .min();
    match next_due {
        Some(due) => {
            let left = u64::try_from(due - clock::unix_millis())
                .unwrap_or(0)
                .max(1);
            POLL_TIMEOUT.min(Duration::from_millis(left))
        }
        None => POLL_TIMEOUT,
    }
}

/// Takes polled records into their partitions' lanes (or delay queues).
fn accept<P: Processor>(records: Vec<ConsumedRecord>, consumer: &Consumer, ctx: &TaskContext<P>) {
    if records.is_empty() {
        return;
    }
    RunStats::add(&ctx.stats.0.consumed, records.len() as u64);
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *per_topic.entry(record.topic.as_str()).or_default() += 1;
    }
    for (topic, n) in per_topic {
        telemetry::consumed(topic, n);
    }
    let touched: Vec<TopicPartition> = {
        let mut touched: Vec<TopicPartition> = records
            .iter()
            .map(|r| (r.topic.to_string(), r.partition))
            .collect();
        touched.sort();
        touched.dedup();
        touched
    };
    let now = clock::unix_millis();
    let mut ended = Vec::new();
    {
        let mut shared = lock(&ctx.shared);
        for record in records {
            let tp = (record.topic.to_string(), record.partition);
            if !shared.partitions.contains_key(&tp) {
                shared.assign(tp.clone());
            }
            let Some(state) = shared.partitions.get_mut(&tp) else {
                continue;
            };
            state.tracker.track(record.offset);
            let delay = ctx.routes.delay(&record.topic);
            if !delay.is_zero() {
                let due = record
                    .timestamp
                    .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                if due > now || !state.delayed.is_empty() {
                    state.delayed.push_back((due, record));
                    continue;
                }
            }
            state.queue.push(record.key.clone(), record.offset, record);
        }
        for tp in touched {
            let Some(lag) = consumer.lag(&tp.0, tp.1) else {
                continue;
            };
            telemetry::lag(&tp.0, tp.1, lag);
            if let Some(state) = shared.partitions.get_mut(&tp) {
                if lag == 0 && !state.at_end {
                    ended.push(tp);
                }
                state.at_end = lag == 0;
            }
        }
    }
    for (topic, partition) in ended {
        ctx.processor.on_partition_end(&topic, partition);
    }
}

/// Starts ready records while slots are free, taking partitions in turn.
fn dispatch<P: Processor>(ctx: &Arc<TaskContext<P>>) {
    let mut guard = lock(&ctx.shared);
    let Shared {
        partitions,
        in_flight,
        ..
    } = &mut *guard;
    while *in_flight < ctx.settings.max_concurrency {
        let mut started = false;
        for (tp, state) in partitions.iter_mut() {
            if *in_flight >= ctx.settings.max_concurrency {
                break;
            }
            let Some((lane, offset, record)) = state.queue.pop_ready() else {
                continue;
            };
            let task = tokio::spawn(run_record(
                Arc::clone(ctx),
                tp.clone(),
                state.epoch,
                lane,
                record,
            ));
            state.tasks.insert(offset, task.abort_handle());
            *in_flight += 1;
            started = true;
        }
        if !started {
            break;
        }
    }
}

/// Processes one record to its end, then marks it finished (unless its
/// partition left meanwhile) and frees its lane.
async fn run_record<P: Processor>(
    ctx: Arc<TaskContext<P>>,
    tp: TopicPartition,
    epoch: u64,
    lane: Lane,
    record: ConsumedRecord,
) {
    let offset = record.offset;
    let outcome = handle(&ctx, record).await;
    lock(&ctx.shared).finish(&tp, epoch, offset, &lane, outcome.is_ok());
    if let Err(error) = outcome {
        let _ = ctx.fatal.send(error);
    }
    ctx.finished.notify_one();
}

/// Tries a record up to `max_attempts` times, then sends it on to a retry
/// or dead-letter topic. Errs only when that send fails.
async fn handle<P: Processor>(ctx: &TaskContext<P>, record: ConsumedRecord) -> Result<(), Error> {
    let record = Arc::new(record);
    let topic = record.topic.as_str();
    let mut attempt = 0u32;
    let error = loop {
        attempt += 1;
        let started = clock::now();
        match attempt_once(&ctx.processor, &record).await {
            Ok(()) => {
                let took = started.elapsed();
                telemetry::processed(topic, took);
                let mut shared = lock(&ctx.shared);
                if let Some(meter) = shared.meter.as_mut() {
                    let at_once = u32::try_from(ctx.settings.max_concurrency).unwrap_or(u32::MAX);
                    meter.record(topic, record.partition, 1, took / at_once.max(1));
                    if meter.drifted(topic, record.partition, PACE_CHANGE, PACE_RECORDS) {
                        shared.pace_changed = true;
                    }
                }
                drop(shared);
                RunStats::add(&ctx.stats.0.processed, 1);
                return Ok(());
            }
            Err(error) => {
                telemetry::process_failed(topic);
                RunStats::add(&ctx.stats.0.failed, 1);
                if !error.is_retriable() || attempt >= ctx.settings.max_attempts {
                    break error;
                }
                tracing::debug!(%topic, partition = record.partition, offset = record.offset,
                    attempt, error = %error, "processing failed; trying again");
                tokio::time::sleep(ctx.settings.backoff(attempt)).await;
            }
        }
    };
    let destination = ctx.routes.next(topic, error.is_retriable());
    let (original_topic, original_partition, original_offset, before) = ctx.routes.origin(&record);
    let info = FailureInfo {
        original_topic,
        original_partition,
        original_offset,
        error: error.message().to_string(),
        error_kind: error.kind().to_string(),
        attempts: before.saturating_add(attempt),
    };
    let out = forward(&record, destination.topic(), &info);
    let sent = match ctx.producer.send(out).await {
        Ok(delivery) => delivery.await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        return Err(Error::new(
            e.kind().clone(),
            format!(
                "{}-{}@{}: sending the failed record to `{}` failed: {e}",
                record.topic,
                record.partition,
                record.offset,
                destination.topic()
            ),
        ));
    }
    match destination {
        Destination::Retry { topic: to } => {
            telemetry::retried(topic);
            RunStats::add(&ctx.stats.0.retried, 1);
            tracing::info!(%topic, partition = record.partition, offset = record.offset,
                to = %to, error = %error, "record sent to a retry topic");
        }
        Destination::DeadLetter { topic: to } => {
            telemetry::dead_lettered(topic);
            RunStats::add(&ctx.stats.0.dead_lettered, 1);
            tracing::warn!(%topic, partition = record.partition, offset = record.offset,
                to = %to, error = %error, "record sent to the dead-letter topic");
        }
    }
    Ok(())
}

/// One call of `process`, in a task of its own so that a panic fails the
/// attempt instead of the run.
async fn attempt_once<P: Processor>(
    processor: &Arc<P>,
    record: &Arc<ConsumedRecord>,
) -> Result<(), ProcessError> {
    let processor = Arc::clone(processor);
    let record = Arc::clone(record);
    let mut task = AbortTask(tokio::spawn(
        async move { processor.process(&record).await },
    ));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(ProcessError::new("the processor panicked")),
        Err(e) => Err(ProcessError::new(format!("the processing task ended: {e}"))),
    }
}

/// Commits every partition's finished position that moved.
async fn commit(consumer: &mut Consumer, shared: &SharedState) {
    let offsets: Vec<OffsetToCommit> = {
        let mut shared = lock(shared);
        let mut offsets: Vec<OffsetToCommit> = shared
            .partitions
            .iter()
            .filter_map(|((topic, partition), state)| {
                Some(OffsetToCommit::new(
                    topic.clone(),
                    *partition,
                    state.to_commit()?,
                ))
            })
            .collect();
        for offset in &mut offsets {
            offset.metadata = shared.report(&offset.topic, offset.partition);
        }
        offsets
    };
    if offsets.is_empty() {
        return;
    }
    match consumer.commit_offsets(&offsets).await {
        Ok(()) => {
            let mut shared = lock(shared);
            for o in offsets {
                if let Some(state) = shared.partitions.get_mut(&(o.topic, o.partition)) {
                    state.committed = Some(o.offset);
                }
            }
        }
        Err(e) if e.kind() == &ErrorKind::Closed => {}
        Err(e) => tracing::debug!(error = %e, "commit failed; trying again later"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = Settings {
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_concurrency: 1,
            commit_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            report_processing: false,
        };
        assert_eq!(s.backoff(1), Duration::from_millis(100));
        assert_eq!(s.backoff(2), Duration::from_millis(200));
        assert_eq!(s.backoff(3), Duration::from_millis(350));
        assert_eq!(s.backoff(40), Duration::from_millis(350));
    }

    fn record(offset: i64) -> ConsumedRecord {
        ConsumedRecord::bare("t", 0, offset)
    }

    /// Takes the next ready record of `tp` as `dispatch` does, with a
    /// stand-in task.
    fn start(shared: &mut Shared, tp: &TopicPartition) -> (u64, Lane, i64, JoinHandle<()>) {
        let state = shared.partitions.get_mut(tp).unwrap();
        let (lane, offset, _) = state.queue.pop_ready().unwrap();
        let task = tokio::spawn(std::future::pending::<()>());
        state.tasks.insert(offset, task.abort_handle());
        shared.in_flight += 1;
        (state.epoch, lane, offset, task)
    }

    #[tokio::test]
    async fn a_released_partition_commits_only_what_finished_and_ignores_late_completions() {
        let tp: TopicPartition = ("t".into(), 0);
        let mut shared = Shared::default();
        let state = shared.assign(tp.clone());
        for offset in 10..13 {
            state.tracker.track(offset);
            state.queue.push(
                Some(bytes::Bytes::from(format!("k{offset}"))),
                offset,
                record(offset),
            );
        }
        let (epoch, lane10, _, _t10) = start(&mut shared, &tp);
        let (_, lane11, _, t11) = start(&mut shared, &tp);
        shared.finish(&tp, epoch, 11, &lane11, true);
        assert_eq!(shared.in_flight, 1);

        // Revoked: 10 is still running, so 10 is the position to commit.
        let commits = shared.release(std::slice::from_ref(&tp));
        assert_eq!(commits, vec![OffsetToCommit::new("t", 0, 10)]);
        assert_eq!(shared.in_flight, 0);
        tokio::task::yield_now().await;
        assert!(!t11.is_finished(), "a task already finished is not aborted");
        t11.abort();

        // Assigned again: the late completion of 10 belongs to the old
        // assignment and changes nothing.
        let state = shared.assign(tp.clone());
        state.tracker.track(10);
        shared.finish(&tp, epoch, 10, &lane10, true);
        let state = shared.partitions.get(&tp).unwrap();
        assert_eq!(state.tracker.committable(), Some(10));
        assert_eq!(shared.in_flight, 0);
    }

    #[tokio::test]
    async fn released_tasks_are_aborted() {
        let tp: TopicPartition = ("t".into(), 0);
        let mut shared = Shared::default();
        let state = shared.assign(tp.clone());
        state.tracker.track(0);
        state.queue.push(None, 0, record(0));
        let (_, _, _, task) = start(&mut shared, &tp);
        let _ = shared.release(std::slice::from_ref(&tp));
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
