//! The async producer: [`Producer`], its [`ProducerBuilder`], and the
//! [`DeliveryFuture`] every send returns.
//!
//! A `Producer` is a cheap handle (clone it freely) to a driver task that
//! owns the engine and the broker connections (see `runtime::driver`). Sending
//! is two steps:
//!
//! ```text
//!  send(record).await ──► accepted into the buffer ──► DeliveryFuture
//!        │ (waits only for buffer space and            │ .await
//!        │  topic metadata, FIFO, up to max_block)     ▼
//!        ▼                                  Ok(RecordMetadata) | Err(e)
//!   Err: buffer exhausted, unknown topic,   (e.possibly_persisted() says
//!        record too large, closed            whether it may be in the log)
//! ```
//!
//! Per partition, records are written in `send` order and their delivery
//! futures complete in that order.

mod delivery;
mod producer_config;
mod properties;
pub(crate) mod runtime;
mod statistics;
mod transactions;

use std::sync::Arc;
use std::time::Duration;

use crate::client_config::forward_to_config as forward;
use tokio::sync::oneshot;

use crate::producer::runtime::buffer_gate::{OnGrant, Refusal};

pub use self::delivery::{DeliveryCallback, DeliveryFuture};
pub use self::producer_config::ProducerConfig;
pub use self::statistics::StatisticsCallback;
pub use self::transactions::Transaction;
use crate::clock;
use crate::compression::Compression;
use crate::engine::producer::{check_size, deadline_after};
use crate::engine::{Acks, ProducerStats};
use crate::error::{Error, ErrorKind};
use crate::health::{
    HealthManager, HealthStream, HealthSummary, HealthTable, RoutingCounters, RoutingStats,
    SmartConfig,
};
use crate::net::pool::BrokerPool;
use crate::partitioner::PartitionStrategy;
use crate::producer::runtime::driver::{self, Charge, Command, DriverHandle};
use crate::producer::runtime::reporter::DeliveryReply;
use crate::record::{Record, RecordMetadata, Topic};

/// Says when the engine took a record, or why it did not.
type AcceptedReceiver = oneshot::Receiver<Result<(), Error>>;

/// An asynchronous Kafka producer.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use smartkafka::{Acks, Producer, Record};
/// use smartkafka::compression::Compression;
///
/// let producer = Producer::builder()
///     .bootstrap_servers("localhost:9092")
///     .acks(Acks::All)
///     .compression(Compression::Lz4)
///     .build()
///     .await?;
/// let delivery = producer.send(Record::new("events").key("k").value("v")).await?;
/// let metadata = delivery.await?;
/// println!("written at {}-{}@{}", metadata.topic, metadata.partition, metadata.offset);
/// producer.close(std::time::Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    driver: DriverHandle,
    config: ProducerConfig,
    /// The health manager of lag-aware partitioning, when configured; it
    /// stops when the producer closes or the last handle is dropped.
    health: Option<HealthManager>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field(
                "bootstrap_servers",
                &self.shared.config.client.bootstrap_servers,
            )
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A builder with the defaults of [`ProducerConfig`].
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder {
            config: ProducerConfig::new(""),
        }
    }

    /// Starts a producer with `config` (validated first). Must be called
    /// inside a tokio runtime; the producer's driver task runs on it.
    ///
    /// An idempotent producer (the default) connects at once and returns
    /// when it has its producer id: a broker that cannot do idempotence
    /// fails here with a configuration error naming `idempotence`. When
    /// every bootstrap server refuses the connection or its name does not
    /// resolve, and again one `retry_backoff` later (100 ms by default),
    /// the build fails with [`ErrorKind::NoBrokerAvailable`] carrying each
    /// server's error, without waiting out `max_block`; a cluster that
    /// accepts connections but does not answer fails with a timeout after
    /// `max_block`. Without idempotence, connections are opened on first
    /// use.
    pub async fn new(config: ProducerConfig) -> Result<Producer, Error> {
        config.validate()?;
        let mut engine = config.engine_config();
        // Every connection of this producer, its lag collector's included.
        let pool = BrokerPool::new(config.client.clone(), config.retry_backoff)?;
        let health = match config.partitioner.smart_config() {
            Some(smart) => {
                let table = HealthTable::new();
                let counters = RoutingCounters::new();
                engine.partitioner = smart.recipe(table.clone(), counters.clone());
                let collector = crate::health::collector_on_pool(smart, Arc::clone(&pool));
                Some(HealthManager::start_with(
                    smart.clone(),
                    collector,
                    table,
                    counters,
                )?)
            }
            None => None,
        };
        let driver = driver::spawn(
            pool,
            engine,
            config.on_delivery.clone(),
            config.max_buffered_records,
        )?;
        let producer = Producer {
            shared: Arc::new(Shared {
                driver,
                config,
                health,
            }),
        };
        if let Some((interval, callback)) = &producer.shared.config.statistics {
            statistics::spawn(
                Arc::downgrade(&producer.shared),
                *interval,
                callback.clone(),
            );
        }
        // A transactional producer takes its id in `init_transactions`.
        if producer.shared.config.is_idempotent()
            && producer.shared.config.transactional_id.is_none()
        {
            producer.wait_ready().await?;
        }
        Ok(producer)
    }

    /// Waits until the producer has its producer id (idempotence), up to
    /// `max_block`: a broker that cannot do idempotence, or an
    /// authorisation failure, is reported here rather than at the first
    /// send.
    async fn wait_ready(&self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.shared
            .driver
            .commands
            .send(Command::WaitReady { done })
            .map_err(|_| closed())?;
        let max_block = self.shared.config.max_block;
        match tokio::time::timeout(max_block, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "no producer id within max_block ({max_block:?}): is the cluster reachable?"
                ),
            )),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Hands a record to the driver. With `wait_accepted`, the returned
    /// receiver says when the engine took it (or why not); without, errors
    /// before acceptance go to `delivered`.
    fn submit(
        &self,
        record: Record,
        deadline: Option<std::time::Instant>,
        charge: Option<Charge>,
        wait_accepted: bool,
        delivered: DeliveryReply,
    ) -> Result<Option<AcceptedReceiver>, Error> {
        let (accepted, accepted_rx) = if wait_accepted {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if !self
            .shared
            .driver
            .send_record(record, deadline, accepted, delivered, charge)
        {
            return Err(closed());
        }
        Ok(accepted_rx)
    }

    fn check_open(&self) -> Result<(), Error> {
        if self
            .shared
            .driver
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(closed());
        }
        Ok(())
    }

    fn topic_known(&self, topic: &Topic) -> bool {
        self.shared.driver.known_topics.contains(topic)
    }

    /// The error for a record refused for want of buffer space; a `send`
    /// that waited for it counts as a failed record in the stats.
    fn buffer_exhausted(&self, size: usize, waited: Waited, count: bool) -> Error {
        if count {
            self.shared
                .driver
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if self.shared.driver.buffer.at_record_limit() {
            return self.at_record_limit(size, waited);
        }
        let capacity = self.shared.config.buffer_memory;
        let used = self.shared.driver.buffer.used();
        Error::new(
            ErrorKind::BufferExhausted,
            format!(
                "no buffer space for {size} bytes {waited} (buffer_memory {capacity}, {used} in use)"
            ),
        )
    }

    /// The error for a record refused (`try_send`) or given up on (`send`)
    /// because the producer holds `max_buffered_records` records:
    /// retriable, as a full buffer is (the same kind, so callers that wait
    /// on a full buffer wait here too).
    fn at_record_limit(&self, size: usize, waited: Waited) -> Error {
        Error::new(
            ErrorKind::BufferExhausted,
            format!(
                "no room for {size} bytes {waited}: the producer holds max_buffered_records ({}) \
                 records sent and not yet delivered (buffer_memory {}, {} in use)",
                self.shared.config.max_buffered_records,
                self.shared.config.buffer_memory,
                self.shared.driver.buffer.used()
            ),
        )
    }

    /// Queues a record. Waits only until the record is in the buffer: for
    /// buffer space (waiters are served in order) and for its topic's
    /// metadata, up to `max_block`; then returns the [`DeliveryFuture`].
    ///
    /// While the brokers take records more slowly than they come, it also
    /// waits for room in their next requests: a few requests' worth of
    /// records wait unsent rather than a full `buffer_memory` of them,
    /// which would leave no sooner (the same rate, with less memory and a
    /// shorter wait for each record). When the brokers deliver nothing for
    /// a quarter of a second (a broker down), the whole buffer absorbs
    /// records again. [`try_send`](Self::try_send), which cannot wait, is
    /// not paced to the brokers.
    ///
    /// Fails at once for a record larger than the buffer or the maximum
    /// request size, and after `max_block` with
    /// [`ErrorKind::BufferExhausted`] (buffer still full) or
    /// [`ErrorKind::Timeout`] (topic unknown).
    ///
    /// When there is room and the topic is known, this returns without a
    /// round trip to the producer's task.
    pub async fn send(&self, record: Record) -> Result<DeliveryFuture, Error> {
        let (reply, delivery) = DeliveryReply::future();
        self.enqueue(record, reply).await?;
        Ok(delivery)
    }

    /// Like [`send`](Self::send), but the outcome goes to the producer's
    /// [`DeliveryCallback`] (see [`ProducerBuilder::on_delivery`]) with
    /// `tag`, instead of to a future: nothing is allocated per record for
    /// its report. Without a callback the report is dropped (the outcome
    /// still shows in [`stats`](Self::stats)).
    ///
    /// Errors returned here are not reported to the callback.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), smartkafka::Error> {
    /// use smartkafka::{Producer, Record, Topic};
    /// let producer = Producer::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .on_delivery(|tag, result| match result {
    ///         Ok(m) => println!("record {tag} at {}-{}@{}", m.topic, m.partition, m.offset),
    ///         Err(e) => eprintln!("record {tag} failed: {e}"),
    ///     })
    ///     .build()
    ///     .await?;
    /// let topic = Topic::from("events");
    /// for i in 0..1000u64 {
    ///     producer.send_tagged(Record::new(topic.clone()).value(format!("event {i}")), i).await?;
    /// }
    /// producer.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_tagged(&self, record: Record, tag: u64) -> Result<(), Error> {
        self.enqueue(record, DeliveryReply::Tagged(tag)).await
    }

    async fn enqueue(&self, record: Record, delivered: DeliveryReply) -> Result<(), Error> {
        let waited = Waited::MaxBlock(self.shared.config.max_block);
        self.enqueue_within(record, delivered, waited).await
    }

    /// Hands `record` to the engine, waiting up to `waited`'s time (at most
    /// `max_block`) for buffer space and, for a topic whose metadata is not
    /// known yet, for the engine to accept it; the record's delivery
    /// deadline starts then too. `waited` also names the wait in the error
    /// when space does not come in time.
    async fn enqueue_within(
        &self,
        record: Record,
        delivered: DeliveryReply,
        waited: Waited,
    ) -> Result<(), Error> {
        self.check_open()?;
        let size = record.estimated_size();
        let Some(Charge { total, queued }) = self.shared.driver.rule.charge(size) else {
            return Err(self.too_large(size));
        };
        let known = self.topic_known(&record.topic);
        // Room now, nobody waiting before it, the producer's task not
        // behind and the topic known: handed over at once, as `try_send`
        // does (the engine takes it without waiting).
        if known && self.shared.driver.buffer.try_take_paced(total) {
            let charge = Charge { total, queued };
            return if self
                .shared
                .driver
                .send_record(record, None, None, delivered, Some(charge))
            {
                Ok(())
            } else {
                Err(closed())
            };
        }
        // Wait for acceptance only when the topic's metadata is unknown: the
        // engine then holds the record until it arrives (up to max_block).
        let (accepted, accepted_rx) = if known {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let wait = waited.time();
        if !self
            .wait_in_line(record, wait, (total, queued), accepted, delivered)
            .await
        {
            return Err(self.buffer_exhausted(size, waited, true));
        }
        if let Some(accepted) = accepted_rx {
            accepted.await.map_err(|_| closed())??;
        }
        Ok(())
    }

    /// Waits in the buffer's line for `total` bytes up to `wait`, then
    /// hands `record` to the producer's task in line order (its deadline
    /// for metadata counts from now); whether the room came in time.
    async fn wait_in_line(
        &self,
        record: Record,
        wait: Duration,
        (total, queued): (usize, usize),
        accepted: Option<driver::AcceptReply>,
        delivered: DeliveryReply,
    ) -> bool {
        let deadline = deadline_after(clock::now(), wait);
        let shared = Arc::clone(&self.shared);
        // Runs when the record's buffer space is granted, in line order, so
        // records that waited reach the engine in the order they asked.
        let on_grant: OnGrant = Box::new(move |permit| {
            let charge = Charge {
                total: permit.into_held(),
                queued,
            };
            // A closed inbox drops the command (see `send_record`).
            let _ = shared.driver.send_record(
                record,
                Some(deadline),
                accepted,
                delivered,
                Some(charge),
            );
        });
        self.shared
            .driver
            .buffer
            .reserve(total, wait, on_grant)
            .await
    }

    /// Like [`send`](Self::send) but never waits: when the buffer is full
    /// right now it fails with [`ErrorKind::BufferExhausted`], and a record
    /// larger than `max_request_size` or `buffer_memory` fails at once with
    /// [`ErrorKind::RecordTooLarge`].
    ///
    /// It also fails with [`ErrorKind::BufferExhausted`] while the producer
    /// holds [`max_buffered_records`](ProducerConfig::max_buffered_records)
    /// records sent and not yet delivered (100,000 by default), whether
    /// they wait for the producer's task or are in batches or in flight:
    /// as librdkafka's `produce` does at `queue.buffering.max.messages`,
    /// so that a flood of sends (a sender faster than the task that encodes
    /// them, or one that never yields to it on a one-thread runtime) holds
    /// that many records at most, rather than a full `buffer_memory` of
    /// them. Retry later, or [`send`](Self::send), which waits for room
    /// under the limit as it waits for buffer space.
    ///
    /// A record whose topic's metadata is not known yet (a fresh producer)
    /// is held, within `buffer_memory`, until it arrives, as librdkafka
    /// does: it fails through the returned future only if the metadata
    /// does not come within `max_block` ([`ErrorKind::Timeout`], naming the
    /// topic) or the topic cannot be produced to.
    pub fn try_send(&self, record: Record) -> Result<DeliveryFuture, Error> {
        let (reply, delivery) = DeliveryReply::future();
        self.try_enqueue(record, reply)?;
        Ok(delivery)
    }

    /// Like [`try_send`](Self::try_send), with the outcome going to the
    /// producer's [`DeliveryCallback`] with `tag` (see
    /// [`send_tagged`](Self::send_tagged)). It fails at once as
    /// [`try_send`](Self::try_send) does; a record failing later (its
    /// topic's metadata not there within `max_block`, say) is reported to
    /// the callback.
    pub fn try_send_tagged(&self, record: Record, tag: u64) -> Result<(), Error> {
        self.try_enqueue(record, DeliveryReply::Tagged(tag))
    }

    fn try_enqueue(&self, record: Record, delivered: DeliveryReply) -> Result<(), Error> {
        self.check_open()?;
        let size = record.estimated_size();
        let Some(charge) = self.shared.driver.rule.charge(size) else {
            return Err(self.too_large(size));
        };
        match self.shared.driver.buffer.try_take(charge.total) {
            Ok(()) => {}
            Err(Refusal::BufferFull) => {
                return Err(self.buffer_exhausted(size, Waited::Never, false));
            }
            Err(Refusal::RecordLimit) => return Err(self.at_record_limit(size, Waited::Never)),
        }
        // No deadline: the engine holds the record for its topic's metadata
        // up to max_block from when it takes it.
        self.submit(record, None, Some(charge), false, delivered)?;
        Ok(())
    }

    /// The error for a record that can never be sent (larger than
    /// `max_request_size` or `buffer_memory`), returned at once by every
    /// send method; it counts as a failed record in the stats.
    fn too_large(&self, size: usize) -> Error {
        self.shared
            .driver
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let config = &self.shared.config;
        match check_size(size, config.max_request_size, config.buffer_memory) {
            Err(error) => error,
            // The driver's rule and the engine's check agree; kept typed.
            Ok(()) => Error::new(
                ErrorKind::RecordTooLarge,
                format!("a record of about {size} bytes can never be sent"),
            ),
        }
    }

    /// Sends a record and waits for its delivery.
    pub async fn send_and_wait(&self, record: Record) -> Result<RecordMetadata, Error> {
        self.send(record).await?.await
    }

    /// Sends a record and waits for its delivery, but no longer than
    /// `timeout` from the call: the returned future resolves by then.
    ///
    /// When the time runs out the error says whether the record may still
    /// be written ([`Error::possibly_persisted`]):
    ///
    /// - before the record was accepted into the buffer (waiting for
    ///   buffer space or its topic's metadata, the waits `send` bounds with
    ///   `max_block`): [`ErrorKind::BufferExhausted`] or
    ///   [`ErrorKind::Timeout`], `possibly_persisted() == false`. The record
    ///   is dropped and will never be sent.
    /// - after it was accepted: [`ErrorKind::Timeout`],
    ///   `possibly_persisted() == true`. The producer goes on delivering it
    ///   (up to `delivery_timeout`); only its outcome is no longer reported
    ///   here. Read the log, or use [`send`](Self::send) and keep the
    ///   [`DeliveryFuture`], to learn it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartkafka::Error> {
    /// use std::time::Duration;
    /// use smartkafka::{ErrorKind, Producer, Record};
    ///
    /// # let cluster = protocol_tests::FakeCluster::builder().topic("events", 1).build().await;
    /// # let bootstrap = cluster.bootstrap_servers();
    /// let producer = Producer::builder().bootstrap_servers(&bootstrap).build().await?;
    /// let record = Record::new("events").key("user-1").value(r#"{"clicks":3}"#);
    /// match producer.send_with_timeout(record, Duration::from_secs(10)).await {
    ///     Ok(metadata) => println!("stored at offset {}", metadata.offset),
    ///     Err(e) if e.kind() == &ErrorKind::Timeout && e.possibly_persisted() => {
    ///         eprintln!("no answer in time; the record may still arrive")
    ///     }
    ///     Err(e) => eprintln!("not stored: {e}"),
    /// }
    /// # producer.close(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_with_timeout(
        &self,
        record: Record,
        timeout: Duration,
    ) -> Result<RecordMetadata, Error> {
        let now = clock::now();
        // Every wait before acceptance ends by the deadline: the engine
        // fails a record still waiting for metadata then, and a record still
        // waiting for space is never sent.
        let wait = timeout.min(self.shared.config.max_block);
        let (delivered, delivery) = DeliveryReply::future();
        self.enqueue_within(record, delivered, Waited::Timeout(wait))
            .await?;
        let until = tokio::time::Instant::from_std(deadline_after(now, timeout));
        match tokio::time::timeout_at(until, delivery).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "no delivery report within {timeout:?}; the record was accepted \
                     and may still be written"
                ),
            )
            .with_possibly_persisted(true)),
        }
    }

    /// Sends every record in order, then waits for all of them: one result
    /// per record, in the same order.
    pub async fn send_batch(
        &self,
        records: impl IntoIterator<Item = Record>,
    ) -> Vec<Result<RecordMetadata, Error>> {
        let mut futures = Vec::new();
        for record in records {
            futures.push(self.send(record).await);
        }
        let mut results = Vec::with_capacity(futures.len());
        for f in futures {
            results.push(match f {
                Ok(delivery) => delivery.await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Sends everything queued now without waiting for linger, and returns
    /// when every record sent before this call has been delivered or has
    /// failed.
    pub async fn flush(&self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.shared
            .driver
            .commands
            .send(Command::Flush { done })
            .map_err(|_| closed())?;
        // A dropped sender means the driver stopped, with nothing left.
        let _ = rx.await;
        Ok(())
    }

    /// Stops accepting records, sends what is queued and waits for it, up
    /// to `timeout`. What is still undelivered then fails (in-flight
    /// records as possibly persisted) and this returns an
    /// [`ErrorKind::Timeout`] error counting them. Every handle is closed.
    pub async fn close(&self, timeout: Duration) -> Result<(), Error> {
        if let Some(health) = &self.shared.health {
            health.stop();
        }
        self.shared
            .driver
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let (done, rx) = oneshot::channel();
        if self
            .shared
            .driver
            .commands
            .send(Command::Close {
                timeout: Some(timeout),
                done,
            })
            .is_err()
        {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// Counters: records and bytes sent, retries, errors, batch sizes,
    /// request latency, queued bytes and records, requests in flight; per
    /// partition and per broker in [`ProducerStats::partitions`] and
    /// [`ProducerStats::brokers`] (those two tables lag by up to 20 ms, or
    /// 10 us per partition written to beyond 2,000, and are exact after
    /// [`flush`](Self::flush)).
    pub fn stats(&self) -> ProducerStats {
        let driver = &self.shared.driver;
        let mut stats = driver
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // The buffer gate owns `buffer_memory` (the engine only counts):
        // every record from the moment it has its space until it settles,
        // less what covers records still queued for the producer's task.
        stats.queued_bytes = driver
            .commands
            .with_charged(|queued| driver.buffer.used().saturating_sub(queued))
            as u64;
        stats.errors += driver.refused.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }
}

/// Lag-aware partitioning, when configured with
/// [`PartitionStrategy::Smart`] (or its shorthand
/// [`ProducerBuilder::smart_partitioner`]).
impl Producer {
    /// The health manager of lag-aware partitioning; `None` when it is off.
    pub fn health_manager(&self) -> Option<&HealthManager> {
        self.shared.health.as_ref()
    }

    /// The healthy partitions of `topic` by the latest health data; `None`
    /// when lag-aware partitioning is off or the topic has no data yet.
    pub fn healthy_partitions(&self, topic: &str) -> Option<Vec<i32>> {
        self.shared.health.as_ref()?.healthy_partitions(topic)
    }

    /// Health of every watched topic and routing counts; `None` when
    /// lag-aware partitioning is off.
    pub fn health_summary(&self) -> Option<HealthSummary> {
        self.shared.health.as_ref().map(HealthManager::summary)
    }

    /// Health updates as they are collected; `None` when lag-aware
    /// partitioning is off.
    pub fn health_stream(&self) -> Option<HealthStream> {
        self.shared
            .health
            .as_ref()
            .map(HealthManager::health_stream)
    }

    /// How many records were routed by health and how many by the fallback
    /// partitioner; `None` when lag-aware partitioning is off.
    pub fn routing_stats(&self) -> Option<RoutingStats> {
        self.shared.health.as_ref().map(|h| h.counters().stats())
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the producer is closed")
}

/// How long a send waited for buffer space, named in its error only when
/// the space did not come (so a send that gets its space formats nothing).
#[derive(Debug, Clone, Copy)]
enum Waited {
    /// Not at all (`try_send`).
    Never,
    /// Up to `max_block`.
    MaxBlock(Duration),
    /// Up to the caller's timeout (`send_with_timeout`).
    Timeout(Duration),
}

impl Waited {
    /// The longest wait.
    fn time(self) -> Duration {
        match self {
            Waited::Never => Duration::ZERO,
            Waited::MaxBlock(wait) | Waited::Timeout(wait) => wait,
        }
    }
}

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waited::Never => f.write_str("right now"),
            Waited::MaxBlock(wait) => write!(f, "within max_block ({wait:?})"),
            Waited::Timeout(wait) => write!(f, "within {wait:?}"),
        }
    }
}

/// Builds a [`Producer`]; every setter has the default and unit of the
/// matching [`ProducerConfig`] setter.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use std::time::Duration;
/// use smartkafka::{Acks, Producer};
/// let producer = Producer::builder()
///     .bootstrap_servers("broker1:9092,broker2:9092")
///     .client_id("billing")
///     .acks(Acks::Leader)
///     .linger(Duration::from_millis(20))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProducerBuilder {
    config: ProducerConfig,
}

impl ProducerBuilder {
    /// Comma-separated `host:port` (or `[ipv6]:port`) list used to
    /// discover the cluster; see [`ClientConfig::new`](crate::ClientConfig::new).
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        self.config.client.bootstrap_servers =
            crate::client_config::ClientConfig::new(servers).bootstrap_servers;
        self
    }

    /// Connects over TLS with these settings; see
    /// [`ClientConfig::tls`](crate::ClientConfig::tls).
    pub fn tls(mut self, tls: crate::security::TlsConfig) -> Self {
        self.config.client = self.config.client.clone().tls(tls);
        self
    }

    /// Authenticates with SASL; see
    /// [`ClientConfig::sasl`](crate::ClientConfig::sasl).
    pub fn sasl(mut self, sasl: crate::security::SaslConfig) -> Self {
        self.config.client = self.config.client.clone().sasl(sasl);
        self
    }

    /// The client id (default `"smartkafka"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client = self.config.client.client_id(id);
        self
    }

    /// The request timeout (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.client = self.config.client.request_timeout(timeout);
        self
    }

    /// The connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.client = self.config.client.connect_timeout(timeout);
        self
    }

    forward! {
        /// Acknowledgements (default [`Acks::All`]).
        acks: Acks;
        /// Linger (default 5 ms, the Kafka 4.0 Java default).
        linger: Duration;
        /// Batch size in bytes (default 16 384).
        batch_size: usize;
        /// Buffer memory in bytes (default 32 MiB).
        buffer_memory: usize;
        /// Records held, sent and not yet delivered, before `try_send` is
        /// refused and `send` waits (default 100,000; 0 for no limit but
        /// `buffer_memory`; see [`ProducerConfig::max_buffered_records`]).
        max_buffered_records: usize;
        /// Longest wait in `send` (default 60 s).
        max_block: Duration;
        /// Maximum request size in bytes (default 1 MiB).
        max_request_size: usize;
        /// Delivery timeout (default 120 s; at least linger + request timeout).
        delivery_timeout: Duration;
        /// First retry backoff (default 100 ms, doubling).
        retry_backoff: Duration;
        /// Largest retry backoff (default 1 s).
        retry_backoff_max: Duration;
        /// Requests in flight per connection (default 5).
        max_in_flight: usize;
        /// Compression (default none).
        compression: Compression;
        /// Compression level (default: the codec's).
        compression_level: i32;
        /// Metadata maximum age (default 5 minutes).
        metadata_max_age: Duration;
        /// Partitioning strategy (default Java-compatible murmur2 + sticky;
        /// [`PartitionStrategy::Smart`] for lag-aware partitioning).
        partitioner: PartitionStrategy;
        /// Seed for partitioner and jitter randomness.
        seed: u64;
        /// Idempotence (default on unless `acks` or `max_in_flight` rule it
        /// out; turned on explicitly, a conflict is a configuration error).
        idempotence: bool;
        /// Transaction timeout (default 60 s).
        transaction_timeout: Duration;
    }

    /// The function that receives the delivery reports of records sent
    /// with [`Producer::send_tagged`] and [`Producer::try_send_tagged`]
    /// (see [`DeliveryCallback`]).
    pub fn on_delivery(
        mut self,
        report: impl Fn(u64, Result<&RecordMetadata, &Error>) + Send + Sync + 'static,
    ) -> Self {
        self.config = self.config.on_delivery(DeliveryCallback::new(report));
        self
    }

    /// Statistics every `interval` (librdkafka's `statistics.interval.ms`;
    /// default none): `report` receives the [`Producer::stats`] snapshot,
    /// on the producer's runtime (keep it short), until the producer is
    /// closed or dropped.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), smartkafka::Error> {
    /// use std::time::Duration;
    /// let producer = smartkafka::Producer::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .on_statistics(Duration::from_secs(10), |stats| {
    ///         println!("{} records sent, {} retries", stats.records_sent, stats.retries);
    ///     })
    ///     .build()
    ///     .await?;
    /// # let _ = producer; Ok(()) }
    /// ```
    pub fn on_statistics(
        mut self,
        interval: Duration,
        report: impl Fn(&ProducerStats) + Send + Sync + 'static,
    ) -> Self {
        self.config = self
            .config
            .statistics(interval, StatisticsCallback::new(report));
        self
    }

    /// Makes the producer transactional with this id (see
    /// [`ProducerConfig::transactional_id`]).
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.config = self.config.transactional_id(id);
        self
    }

    /// Lag-aware partitioning for the topics and consumer group in `smart`
    /// (default off): a shorthand for
    /// `.partitioner(PartitionStrategy::smart(smart))`. See [`crate::health`].
    pub fn smart_partitioner(mut self, smart: SmartConfig) -> Self {
        self.config = self.config.smart_partitioner(smart);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ProducerConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration as built so far.
    pub fn as_config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Validates the configuration and starts the producer; see
    /// [`Producer::new`] for what it waits for.
    pub async fn build(self) -> Result<Producer, Error> {
        Producer::new(self.config).await
    }
}
