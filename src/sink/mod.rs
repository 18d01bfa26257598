//! A typed sink: [`Sink<K, V>`] sends keys and values of your types to one
//! topic through a [`Producer`], and adds what applications otherwise
//! write around one:
//!
//! - serialization with any [`Serializer`] (UTF-8, JSON, postcard, your
//!   own) into reused buffers; a value that
//!   does not serialize fails that call with
//!   [`ErrorKind::Serialization`], and nothing is sent;
//! - a [`MessageId`] per record and a bounded [`DeliveryTracker`] to ask
//!   for its [`DeliveryStatus`], with success and failure hooks called once
//!   per record;
//! - an optional [`CircuitBreaker`] that refuses sends at once
//!   ([`ErrorKind::CircuitOpen`]) after repeated failures, so an outage
//!   does not fill the buffer;
//! - optional retries ([`RetryPolicy`]) and a dead-letter topic for records
//!   that fail for good, with [`failure headers`](crate::failure_headers);
//! - [`SinkMetrics`], also fed to the `metrics` facade
//!   ([`crate::telemetry`]).
//!
//! ```text
//!  send(record) ─► serialize ─► breaker ─► tracker ─► Producer::send ─► SinkDelivery
//!      │ Err: Serialization,      │ Err:      │ Err: tracker      (its task awaits the
//!      │      nothing sent        │ CircuitOpen  full             delivery: retries,
//!      ▼                          ▼           ▼                   dead letter, hooks,
//!                 refused (counted in SinkMetrics::refused)       status, metrics)
//! ```
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "json")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), smartkafka::Error> {
//! use std::time::Duration;
//! use smartkafka::Producer;
//! use smartkafka::serialization::{Json, Utf8};
//! use smartkafka::sink::{BreakerConfig, DeliveryStatus, Sink, SinkRecord};
//!
//! #[derive(serde::Serialize)]
//! struct MetricResult { service: String, avg_latency: f64, count: u64 }
//!
//! # let cluster = protocol_tests::FakeCluster::builder().topic("metrics-results", 3).build().await;
//! # let bootstrap = cluster.bootstrap_servers();
//! let producer = Producer::builder().bootstrap_servers(&bootstrap).build().await?;
//! let sink: Sink<str, MetricResult> = Sink::builder(producer, "metrics-results")
//!     .key_serializer(Utf8)
//!     .value_serializer(Json)
//!     .circuit_breaker(BreakerConfig::new().failure_threshold(5))
//!     .build()?;
//!
//! let result = MetricResult { service: "api-gateway".into(), avg_latency: 123.45, count: 1000 };
//! let delivery = sink
//!     .send(SinkRecord::new(&result).key("api-gateway").header("region", "us-east-1"))
//!     .await?;
//! let id = delivery.id().clone();
//! let metadata = delivery.await?;
//! assert_eq!(
//!     sink.status(&id),
//!     Some(DeliveryStatus::Delivered { partition: metadata.partition, offset: metadata.offset })
//! );
//! assert_eq!(sink.metrics().sent, 1);
//! sink.close(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! # #[cfg(not(feature = "json"))]
//! # fn main() {}
//! ```

mod breaker;
mod metrics;
mod retry;
mod tracker;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, oneshot};

pub use self::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit};
pub use self::metrics::SinkMetrics;
pub use self::retry::RetryPolicy;
pub use self::tracker::{DeliveryStatus, DeliveryTracker, MessageId};

use self::metrics::Counters;
use self::retry::{dead_letter_record, is_callers_fault, kind_label};
use crate::clock;
use crate::error::{Error, ErrorKind};
use crate::producer::{DeliveryFuture, Producer};
use crate::record::{Header, Record, RecordMetadata, Topic};
use crate::serialization::Serializer;
use crate::telemetry;

/// The scratch buffer's size: serialized records are cut from it, and a
/// new one is allocated only once this much has been used.
const SCRATCH: usize = 8 * 1024;

/// The same type as [`Sink`], by the name some readers look for.
pub type TypedProducer<K, V> = Sink<K, V>;

/// Called with the id and metadata of each delivered record.
type SuccessHook = Arc<dyn Fn(&MessageId, &RecordMetadata) + Send + Sync>;
/// Called with the id and final error of each record that failed for good.
type FailureHook = Arc<dyn Fn(&MessageId, &Error) + Send + Sync>;
/// Where a record's final outcome goes, when someone waits for it.
type Reply = oneshot::Sender<Result<RecordMetadata, Error>>;

/// One record for a [`Sink`]: borrowed key and value, serialized when it is
/// sent.
///
/// ```
/// use smartkafka::sink::SinkRecord;
/// let value = 42u64;
/// let record: SinkRecord<'_, str, u64> = SinkRecord::new(&value)
///     .key("answer")
///     .header("source", "docs")
///     .partition(1)
///     .id("answer-1");
/// # let _ = record;
/// ```
#[must_use]
pub struct SinkRecord<'a, K: ?Sized, V: ?Sized> {
    key: Option<&'a K>,
    value: Option<&'a V>,
    headers: Vec<Header>,
    partition: Option<i32>,
    timestamp: Option<i64>,
    id: Option<MessageId>,
}

impl<'a, K: ?Sized, V: ?Sized> SinkRecord<'a, K, V> {
    /// A keyless record with `value`.
    pub fn new(value: &'a V) -> Self {
        SinkRecord {
            key: None,
            value: Some(value),
            headers: Vec::new(),
            partition: None,
            timestamp: None,
            id: None,
        }
    }

    /// A record of `key` with a null value (a tombstone on compacted
    /// topics).
    pub fn tombstone(key: &'a K) -> Self {
        SinkRecord {
            key: Some(key),
            value: None,
            headers: Vec::new(),
            partition: None,
            timestamp: None,
            id: None,
        }
    }

    /// Sets the key (it needs the sink's key serializer).
    pub fn key(mut self, key: &'a K) -> Self {
        self.key = Some(key);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sends to this partition instead of the partitioner's choice.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record timestamp in milliseconds since the Unix epoch (default:
    /// the time of the send).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// The record's [`MessageId`] (default: a generated one). An id still
    /// pending in the sink's tracker is refused.
    pub fn id(mut self, id: impl Into<MessageId>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// The outcome of one record sent through a [`Sink`]: its [`MessageId`]
/// now, and, awaited, where it was written or why it failed for good
/// (after the sink's retries; a dead-lettered record still reports its
/// failure). Dropping it does not cancel anything: the sink's tracker,
/// hooks and metrics see the outcome regardless.
#[derive(Debug)]
#[must_use = "a SinkDelivery does nothing unless awaited; dropping it does not cancel the send"]
pub struct SinkDelivery {
    id: MessageId,
    rx: oneshot::Receiver<Result<RecordMetadata, Error>>,
}

impl SinkDelivery {
    /// The record's id, to look up with [`Sink::status`].
    pub fn id(&self) -> &MessageId {
        &self.id
    }
}

impl Future for SinkDelivery {
    type Output = Result<RecordMetadata, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(
                    Error::new(ErrorKind::Closed, "the sink stopped before the outcome")
                        .with_possibly_persisted(true),
                )
            })
        })
    }
}

/// A typed sink to one topic: see the [module documentation](crate::sink).
///
/// Cloning a sink is cheap; clones share everything (tracker, breaker,
/// metrics). `K` and `V` may be unsized (`str`, `[u8]`).
pub struct Sink<K: ?Sized, V: ?Sized> {
    inner: Arc<Inner<K, V>>,
}

impl<K: ?Sized, V: ?Sized> Clone for Sink<K, V> {
    fn clone(&self) -> Self {
        Sink {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: ?Sized, V: ?Sized> std::fmt::Debug for Sink<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("topic", &self.inner.core.topic)
            .finish_non_exhaustive()
    }
}

struct Inner<K: ?Sized, V: ?Sized> {
    key_serializer: Option<Box<dyn Serializer<K>>>,
    value_serializer: Box<dyn Serializer<V>>,
    /// Serialized keys and values are split off this buffer; its memory is
    /// reused once the records that hold the earlier parts are gone.
    scratch: Mutex<BytesMut>,
    content_type: Option<&'static str>,
    core: Arc<Core>,
}

/// What the per-record tasks share with the sink (no `K`, `V`).
struct Core {
    producer: Producer,
    topic: Topic,
    name: String,
    id_header: Option<String>,
    tracker: Mutex<DeliveryTracker>,
    breaker: Option<Mutex<CircuitBreaker>>,
    counters: Counters,
    retry: Option<RetryPolicy>,
    dead_letter: Option<Topic>,
    on_success: Option<SuccessHook>,
    on_failure: Option<FailureHook>,
    /// Records whose outcome is not settled (hooks not yet called).
    outstanding: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
}

/// A record accepted by the producer, followed by its task.
struct Job {
    id: MessageId,
    /// A copy for retries and the dead-letter topic, when either is on.
    record: Option<Record>,
    bytes: usize,
    started: Instant,
    permit: Option<Permit>,
    attempts: u32,
    /// Whether the sink's retries and dead-letter topic apply.
    recover: bool,
}

impl<K: ?Sized, V: ?Sized> Sink<K, V> {
    /// A builder for a sink of `topic` through `producer` (a clone of the
    /// application's producer is fine).
    pub fn builder(producer: Producer, topic: impl Into<Topic>) -> SinkBuilder<K, V> {
        SinkBuilder {
            producer,
            topic: topic.into(),
            key_serializer: None,
            value_serializer: None,
            name: None,
            id_header: None,
            content_type_header: false,
            tracker_capacity: 100_000,
            tracker_expiry: Duration::from_secs(300),
            breaker: None,
            retry: None,
            dead_letter: None,
            on_success: None,
            on_failure: None,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.inner.core.topic
    }

    /// The producer the sink sends through.
    pub fn producer(&self) -> &Producer {
        &self.inner.core.producer
    }

    /// Serializes and sends a record; returns once the producer accepted it
    /// (see [`Producer::send`] for that wait), with a [`SinkDelivery`]
    /// carrying its id.
    ///
    /// Fails at once, with nothing sent: [`ErrorKind::Serialization`] when
    /// the key or value does not serialize (or the record has a key and
    /// the sink no key serializer); [`ErrorKind::CircuitOpen`] while the
    /// breaker is open; [`ErrorKind::BufferExhausted`] when the tracker
    /// holds only pending records; [`ErrorKind::Closed`] after
    /// [`close`](Self::close); and any error of [`Producer::send`].
    ///
    /// As with [`Producer::send`], dropping this call's future while it
    /// waits for buffer space does not take the record back: it may still
    /// be sent, untracked.
    pub async fn send(&self, record: SinkRecord<'_, K, V>) -> Result<SinkDelivery, Error> {
        let (id, prepared, permit) = self.prepare(record)?;
        let (tx, rx) = oneshot::channel();
        let bytes = record_bytes(&prepared);
        let core = &self.inner.core;
        let copy = (core.retry.is_some() || core.dead_letter.is_some()).then(|| prepared.clone());
        let started = clock::now();
        // Should this call be dropped while the producer waits, the guard
        // gives back the breaker permit and the tracker entry.
        let mut guard = Admitted {
            core,
            id: &id,
            permit: Some(permit),
        };
        let sent = core.producer.send(prepared).await;
        let permit = guard.permit.take().unwrap_or(Permit::Normal);
        drop(guard);
        match sent {
            Ok(delivery) => {
                let job = Job {
                    id: id.clone(),
                    record: copy,
                    bytes,
                    started,
                    permit: Some(permit),
                    attempts: 1,
                    recover: true,
                };
                core.outstanding.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(follow(Arc::clone(core), job, delivery, Some(tx)));
                Ok(SinkDelivery { id, rx })
            }
            Err(e) => Err(core.refuse_after_admission(&id, permit, e)),
        }
    }

    /// Sends a record and waits for its final outcome.
    pub async fn send_and_wait(
        &self,
        record: SinkRecord<'_, K, V>,
    ) -> Result<RecordMetadata, Error> {
        self.send(record).await?.await
    }

    /// Sends a keyed record with `value` and waits for its final outcome.
    pub async fn send_keyed(&self, key: &K, value: &V) -> Result<RecordMetadata, Error> {
        self.send_and_wait(SinkRecord::new(value).key(key)).await
    }

    /// Sends every record in order, then waits for all of them: one result
    /// per record, in the same order.
    pub async fn send_batch<'a>(
        &self,
        records: impl IntoIterator<Item = SinkRecord<'a, K, V>>,
    ) -> Vec<Result<RecordMetadata, Error>>
    where
        K: 'a,
        V: 'a,
    {
        let mut pending = Vec::new();
        for record in records {
            pending.push(self.send(record).await);
        }
        let mut results = Vec::with_capacity(pending.len());
        for p in pending {
            results.push(match p {
                Ok(delivery) => delivery.await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Sends a record and waits for its delivery, no longer than `timeout`:
    /// see [`Producer::send_with_timeout`] for the two kinds of timeout
    /// error and what [`Error::possibly_persisted`] says of each.
    ///
    /// The record is tracked (give it an [`id`](SinkRecord::id) to look it
    /// up), counted and reported to the hooks like any other. After a
    /// timeout its tracked status is [`DeliveryStatus::Failed`], possibly
    /// persisted when it was accepted. The sink does not retry it or
    /// dead-letter it: the caller, who set a deadline, decides.
    pub async fn send_with_timeout(
        &self,
        record: SinkRecord<'_, K, V>,
        timeout: Duration,
    ) -> Result<RecordMetadata, Error> {
        let (id, prepared, permit) = self.prepare(record)?;
        let core = Arc::clone(&self.inner.core);
        let bytes = record_bytes(&prepared);
        let job = Job {
            id,
            record: None,
            bytes,
            started: clock::now(),
            permit: Some(permit),
            attempts: 1,
            recover: false,
        };
        let (tx, rx) = oneshot::channel();
        core.outstanding.fetch_add(1, Ordering::AcqRel);
        // A task of its own, so that a caller giving up early leaves no
        // record pending in the tracker.
        tokio::spawn(async move {
            let result = core.producer.send_with_timeout(prepared, timeout).await;
            let result = settle(&core, job, result).await;
            let _ = tx.send(result);
        });
        rx.await.unwrap_or_else(|_| {
            Err(
                Error::new(ErrorKind::Closed, "the sink stopped before the outcome")
                    .with_possibly_persisted(true),
            )
        })
    }

    /// Sends everything queued now and waits until every record sent
    /// through this sink so far has its final outcome (retries and
    /// dead-lettering included, hooks called). Records sent while it waits
    /// are waited for too.
    pub async fn flush(&self) -> Result<(), Error> {
        let core = &self.inner.core;
        loop {
            core.producer.flush().await?;
            let idle = core.idle.notified();
            if core.outstanding.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            idle.await;
        }
    }

    /// Stops accepting records, then waits up to `timeout` for every record
    /// sent through the sink to settle (hooks called). Fails with
    /// [`ErrorKind::Timeout`], counting them, when some are still pending
    /// then (they go on in the background).
    ///
    /// The producer stays open: other sinks and clones may use it. Close it
    /// with [`Producer::close`] when the application is done with it.
    pub async fn close(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.core.closed.store(true, Ordering::Release);
        match tokio::time::timeout(timeout, self.flush()).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} records still pending after {timeout:?}",
                    self.inner.core.outstanding.load(Ordering::Acquire)
                ),
            )),
        }
    }

    /// The status of the record `id`, while the tracker holds it (pending
    /// records always; finished ones until they expire or are evicted).
    pub fn status(&self, id: &MessageId) -> Option<DeliveryStatus> {
        self.inner.core.tracker().status(id)
    }

    /// Finished entries the tracker dropped to make room.
    pub fn evicted(&self) -> u64 {
        self.inner.core.tracker().evicted()
    }

    /// The breaker's state (an open breaker whose timeout passed reads as
    /// half-open); `None` without a breaker.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        let breaker = self.inner.core.breaker.as_ref()?;
        let mut b = lock(breaker);
        let before = b.state();
        b.advance(clock::now());
        let after = b.state();
        drop(b);
        self.inner.core.report_breaker(before, after, 0);
        Some(after)
    }

    /// A snapshot of the sink's counters.
    pub fn metrics(&self) -> SinkMetrics {
        let core = &self.inner.core;
        let state = self.breaker_state();
        let breaker = core
            .breaker
            .as_ref()
            .zip(state)
            .map(|(b, state)| (lock(b).trips(), state));
        let (pending, evicted) = {
            let t = core.tracker();
            (t.pending(), t.evicted())
        };
        core.counters.snapshot(breaker, pending, evicted)
    }

    /// Serializes, admits through the breaker and tracks the record.
    fn prepare(&self, record: SinkRecord<'_, K, V>) -> Result<(MessageId, Record, Permit), Error> {
        let inner = &*self.inner;
        let core = &*inner.core;
        if core.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "the sink is closed"));
        }
        let (key, value) = match self.serialize(&record) {
            Ok(kv) => kv,
            Err(e) => return Err(core.refused(e)),
        };
        let now = clock::now();
        let permit = match core.admit(now) {
            Ok(permit) => permit,
            Err(e) => return Err(core.refused(e)),
        };
        let id = record.id.unwrap_or_else(MessageId::generate);
        if let Err(e) = core.tracker().insert(id.clone(), now) {
            core.breaker_outcome(permit, None, now);
            return Err(core.refused(e));
        }
        let mut headers = record.headers;
        if let Some(name) = &core.id_header {
            headers.push(Header::new(name.clone(), id.to_string()));
        }
        if let Some(content_type) = inner.content_type {
            headers.push(Header::new("content-type", content_type));
        }
        let out = Record {
            topic: core.topic.clone(),
            key,
            value,
            headers,
            partition: record.partition,
            timestamp: record.timestamp,
        };
        Ok((id, out, permit))
    }

    fn serialize(
        &self,
        record: &SinkRecord<'_, K, V>,
    ) -> Result<(Option<Bytes>, Option<Bytes>), Error> {
        let inner = &*self.inner;
        let mut buf = lock(&inner.scratch);
        // Reclaims the memory of earlier records once none is referenced
        // any longer; otherwise starts a new buffer when this one is used up.
        buf.reserve(SCRATCH / 8);
        let key = match record.key {
            None => None,
            Some(key) => {
                let Some(serializer) = &inner.key_serializer else {
                    return Err(Error::serialization(
                        "the record has a key but the sink has no key serializer",
                    ));
                };
                if let Err(e) = serializer.serialize(key, &mut buf) {
                    buf.clear();
                    return Err(e);
                }
                Some(buf.split().freeze())
            }
        };
        let value = match record.value {
            None => None,
            Some(value) => {
                if let Err(e) = inner.value_serializer.serialize(value, &mut buf) {
                    buf.clear();
                    return Err(e);
                }
                Some(buf.split().freeze())
            }
        };
        Ok((key, value))
    }
}

impl Core {
    fn tracker(&self) -> std::sync::MutexGuard<'_, DeliveryTracker> {
        lock(&self.tracker)
    }

    /// A breaker permit, or the error refusing the send.
    fn admit(&self, now: Instant) -> Result<Permit, Error> {
        let Some(breaker) = &self.breaker else {
            return Ok(Permit::Normal);
        };
        let mut b = lock(breaker);
        let before = b.state();
        let admitted = b.try_acquire(now);
        let after = b.state();
        drop(b);
        self.report_breaker(before, after, 0);
        admitted.map_err(|wait| {
            Error::new(
                ErrorKind::CircuitOpen,
                format!(
                    "the circuit breaker of `{}` is open after repeated failures; \
                     probes go through in {wait:?}",
                    self.name
                ),
            )
        })
    }

    /// Tells the breaker how a call went: `None` says nothing about the
    /// cluster.
    fn breaker_outcome(&self, permit: Permit, error: Option<&Error>, now: Instant) {
        let Some(breaker) = &self.breaker else {
            return;
        };
        let mut b = lock(breaker);
        let (before, trips) = (b.state(), b.trips());
        match error {
            None => b.on_ignored(permit),
            Some(e) if is_callers_fault(e) => b.on_ignored(permit),
            Some(_) => b.on_failure(permit, now),
        }
        let (after, tripped) = (b.state(), b.trips() - trips);
        drop(b);
        self.report_breaker(before, after, tripped);
    }

    fn breaker_success(&self, permit: Permit, now: Instant) {
        let Some(breaker) = &self.breaker else {
            return;
        };
        let mut b = lock(breaker);
        let before = b.state();
        b.on_success(permit, now);
        let after = b.state();
        drop(b);
        self.report_breaker(before, after, 0);
    }

    fn report_breaker(&self, before: BreakerState, after: BreakerState, tripped: u64) {
        for _ in 0..tripped {
            telemetry::breaker_tripped(&self.name);
        }
        if before != after || tripped > 0 {
            if after == BreakerState::Open {
                tracing::warn!(sink = %self.name, "circuit breaker opened");
            } else {
                tracing::info!(sink = %self.name, state = ?after, "circuit breaker moved");
            }
            telemetry::breaker_state(&self.name, after.as_gauge());
        }
    }

    /// Counts a send refused at the call.
    fn refused(&self, error: Error) -> Error {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.counters.error(error.to_string());
        telemetry::sink_failed(&self.topic, kind_label(error.kind()));
        error
    }

    /// The producer refused a record the sink had admitted and tracked.
    fn refuse_after_admission(&self, id: &MessageId, permit: Permit, error: Error) -> Error {
        self.tracker().forget(id);
        self.breaker_outcome(permit, Some(&error), clock::now());
        self.refused(error)
    }

    fn finished(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// A record admitted by the breaker and tracked, not yet accepted by the
/// producer: dropped with its permit still in it (the `send` call was
/// cancelled), it frees the probe slot and forgets the tracker entry.
struct Admitted<'a> {
    core: &'a Core,
    id: &'a MessageId,
    permit: Option<Permit>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.core.tracker().forget(self.id);
            self.core.breaker_outcome(permit, None, clock::now());
        }
    }
}

/// Follows one accepted record to its final outcome.
async fn follow(core: Arc<Core>, job: Job, delivery: DeliveryFuture, reply: Option<Reply>) {
    let result = delivery.await;
    let result = settle(&core, job, result).await;
    if let Some(reply) = reply {
        let _ = reply.send(result);
    }
}

/// Retries, dead-letters, records and reports one record's outcome; the
/// record stops counting as outstanding once its hooks ran.
async fn settle(
    core: &Arc<Core>,
    mut job: Job,
    mut result: Result<RecordMetadata, Error>,
) -> Result<RecordMetadata, Error> {
    let outcome = loop {
        let now = clock::now();
        let permit = job.permit.take().unwrap_or(Permit::Normal);
        match result {
            Ok(metadata) => {
                core.breaker_success(permit, now);
                break Ok(metadata);
            }
            Err(error) => {
                core.breaker_outcome(permit, Some(&error), now);
                let retry = match (&core.retry, &job.record) {
                    (Some(policy), Some(record))
                        if job.recover && policy.allows(&error, job.attempts) =>
                    {
                        Some((policy.delay(job.attempts), record.clone()))
                    }
                    _ => None,
                };
                let Some((delay, record)) = retry else {
                    break Err(error);
                };
                core.counters.retries.fetch_add(1, Ordering::Relaxed);
                telemetry::sink_retried(&core.topic);
                tracing::debug!(id = %job.id, attempt = job.attempts, %error, "sink retries a record");
                tokio::time::sleep(delay).await;
                job.attempts += 1;
                result = match core.producer.send(record).await {
                    Ok(delivery) => delivery.await,
                    Err(e) => Err(e),
                };
            }
        }
    };
    let now = clock::now();
    match &outcome {
        Ok(metadata) => {
            let latency = now.saturating_duration_since(job.started);
            core.counters.delivered(job.bytes, latency);
            telemetry::sink_sent(&core.topic, job.bytes, latency);
            core.tracker().finish(
                &job.id,
                DeliveryStatus::Delivered {
                    partition: metadata.partition,
                    offset: metadata.offset,
                },
                now,
            );
            if let Some(hook) = &core.on_success {
                call_hook(|| hook(&job.id, metadata));
            }
        }
        Err(error) => {
            core.counters.failed.fetch_add(1, Ordering::Relaxed);
            core.counters.error(error.to_string());
            telemetry::sink_failed(&core.topic, kind_label(error.kind()));
            let dead_lettered = match (&core.dead_letter, &job.record) {
                (Some(topic), Some(record)) if job.recover => {
                    let dead = dead_letter_record(record, topic, error, job.attempts);
                    match core.producer.send_and_wait(dead).await {
                        Ok(_) => {
                            core.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                            telemetry::sink_dead_lettered(&core.topic);
                            true
                        }
                        Err(e) => {
                            tracing::error!(id = %job.id, error = %e, "dead-letter send failed");
                            core.counters
                                .error(format!("dead-letter send to `{topic}` failed: {e}"));
                            false
                        }
                    }
                }
                _ => false,
            };
            core.tracker().finish(
                &job.id,
                DeliveryStatus::Failed {
                    reason: error.to_string(),
                    kind: error.kind().clone(),
                    possibly_persisted: error.possibly_persisted(),
                    dead_lettered,
                },
                clock::now(),
            );
            if let Some(hook) = &core.on_failure {
                call_hook(|| hook(&job.id, error));
            }
        }
    }
    core.finished();
    outcome
}

/// Runs a hook; a panic in it is logged, not propagated.
fn call_hook(hook: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).is_err() {
        tracing::error!("a sink delivery hook panicked");
    }
}

fn record_bytes(record: &Record) -> usize {
    record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds a [`Sink`]; only the value serializer is required.
#[must_use]
pub struct SinkBuilder<K: ?Sized, V: ?Sized> {
    producer: Producer,
    topic: Topic,
    key_serializer: Option<Box<dyn Serializer<K>>>,
    value_serializer: Option<Box<dyn Serializer<V>>>,
    name: Option<String>,
    id_header: Option<String>,
    content_type_header: bool,
    tracker_capacity: usize,
    tracker_expiry: Duration,
    breaker: Option<BreakerConfig>,
    retry: Option<RetryPolicy>,
    dead_letter: Option<Topic>,
    on_success: Option<SuccessHook>,
    on_failure: Option<FailureHook>,
}

impl<K: ?Sized, V: ?Sized> std::fmt::Debug for SinkBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkBuilder")
            .field("topic", &self.topic)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

impl<K: ?Sized, V: ?Sized> SinkBuilder<K, V> {
    /// How keys are written (needed only for records with keys).
    pub fn key_serializer(mut self, serializer: impl Serializer<K> + 'static) -> Self {
        self.key_serializer = Some(Box::new(serializer));
        self
    }

    /// How values are written (required).
    pub fn value_serializer(mut self, serializer: impl Serializer<V> + 'static) -> Self {
        self.value_serializer = Some(Box::new(serializer));
        self
    }

    /// The name in logs and breaker metrics (default: the topic).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds each record's [`MessageId`] as a header named `name` (default:
    /// no header).
    pub fn message_id_header(mut self, name: impl Into<String>) -> Self {
        self.id_header = Some(name.into());
        self
    }

    /// Adds a `content-type` header with the value serializer's
    /// [`content_type`](Serializer::content_type) (default off).
    pub fn content_type_header(mut self, on: bool) -> Self {
        self.content_type_header = on;
        self
    }

    /// How many records the delivery tracker holds, pending and finished
    /// (default 100 000); see [`DeliveryTracker`] for what happens when
    /// it is full.
    pub fn tracker_capacity(mut self, capacity: usize) -> Self {
        self.tracker_capacity = capacity;
        self
    }

    /// How long a finished record's status stays queryable (default 5
    /// minutes).
    pub fn tracker_expiry(mut self, expiry: Duration) -> Self {
        self.tracker_expiry = expiry;
        self
    }

    /// Turns on a circuit breaker (default off).
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// Turns on sink-level retries (default off). A retried record may be
    /// written after records of the same key sent later: see
    /// [the ordering note](RetryPolicy#ordering).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Writes records that failed for good (after any retries) to `topic`,
    /// with their key, value and headers and the
    /// [failure headers](crate::failure_headers) (default off).
    ///
    /// A record whose outcome is unknown ([`Error::possibly_persisted`])
    /// is dead-lettered too, so it may end up in both topics; records
    /// refused at the call (an open breaker, a serialization error) are
    /// not: the caller has the error.
    pub fn dead_letter_topic(mut self, topic: impl Into<Topic>) -> Self {
        self.dead_letter = Some(topic.into());
        self
    }

    /// Called once for each delivered record, from the sink's tasks (keep
    /// it short; a panic is caught and logged).
    pub fn on_success(
        mut self,
        hook: impl Fn(&MessageId, &RecordMetadata) + Send + Sync + 'static,
    ) -> Self {
        self.on_success = Some(Arc::new(hook));
        self
    }

    /// Called once for each record that failed for good, after any retries
    /// and dead-lettering, with its final error.
    pub fn on_failure(mut self, hook: impl Fn(&MessageId, &Error) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(hook));
        self
    }

    /// Checks the settings and makes the sink. Errors name the field:
    /// `value_serializer` (missing), `tracker_capacity` (zero), the
    /// breaker's and the retry policy's fields, `dead_letter_topic` (the
    /// sink's own topic or an illegal name).
    pub fn build(self) -> Result<Sink<K, V>, Error> {
        let Some(value_serializer) = self.value_serializer else {
            return Err(Error::config("value_serializer", "is required"));
        };
        if self.tracker_capacity == 0 {
            return Err(Error::config("tracker_capacity", "must be at least 1"));
        }
        crate::topic_name::validate(&self.topic).map_err(|e| Error::config("topic", e))?;
        if let Some(dead) = &self.dead_letter {
            if *dead == self.topic {
                return Err(Error::config(
                    "dead_letter_topic",
                    "is the sink's own topic",
                ));
            }
            crate::topic_name::validate(dead).map_err(|e| Error::config("dead_letter_topic", e))?;
        }
        if let Some(retry) = &self.retry {
            retry.validate()?;
        }
        let breaker = self.breaker.map(CircuitBreaker::new).transpose()?;
        let name = self.name.unwrap_or_else(|| self.topic.to_string());
        if breaker.is_some() {
            telemetry::breaker_state(&name, BreakerState::Closed.as_gauge());
        }
        let content_type = self
            .content_type_header
            .then(|| value_serializer.content_type());
        Ok(Sink {
            inner: Arc::new(Inner {
                key_serializer: self.key_serializer,
                value_serializer,
                scratch: Mutex::new(BytesMut::with_capacity(SCRATCH)),
                content_type,
                core: Arc::new(Core {
                    producer: self.producer,
                    topic: self.topic,
                    name,
                    id_header: self.id_header,
                    tracker: Mutex::new(DeliveryTracker::new(
                        self.tracker_capacity,
                        self.tracker_expiry,
                    )),
                    breaker: breaker.map(Mutex::new),
                    counters: Counters::default(),
                    retry: self.retry,
                    dead_letter: self.dead_letter,
                    on_success: self.on_success,
                    on_failure: self.on_failure,
                    outstanding: AtomicUsize::new(0),
                    idle: Notify::new(),
                    closed: AtomicBool::new(false),
                }),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialization::Utf8;

    fn assert_send<T: Send + 'static>(_: &T) {}

    /// Applications spawn sends onto multi-threaded runtimes.
    #[test]
    fn sinks_and_their_futures_can_move_between_threads() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let producer = Producer::builder()
                .bootstrap_servers("127.0.0.1:9")
                .idempotence(false)
                .build()
                .await
                .unwrap();
            let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
                .key_serializer(Utf8)
                .value_serializer(Utf8)
                .build()
                .unwrap();
            assert_send(&sink);
            let s = sink.clone();
            let send = async move {
                s.send(SinkRecord::new("v").key("k"))
                    .await
                    .map(|d| d.id().clone())
            };
            assert_send(&send);
            let s = sink.clone();
            let batch = async move { s.send_batch([SinkRecord::new("v")]).await.len() };
            assert_send(&batch);
            let s = sink.clone();
            let timed = async move {
                s.send_with_timeout(SinkRecord::new("v"), Duration::ZERO)
                    .await
                    .is_ok()
            };
            assert_send(&timed);
            let s = sink.clone();
            let close = async move { s.close(Duration::ZERO).await.is_ok() };
            assert_send(&close);
        });
    }

    #[test]
    fn bad_settings_are_refused_at_build_with_their_field() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let producer = Producer::builder()
                .bootstrap_servers("127.0.0.1:9")
                .idempotence(false)
                .build()
                .await
                .unwrap();
            let field = |r: Result<Sink<str, str>, Error>| match r.unwrap_err().kind() {
                ErrorKind::Config { field } => *field,
                other => panic!("{other:?}"),
            };
            let builder =
                || Sink::<str, str>::builder(producer.clone(), "t").value_serializer(Utf8);
            assert_eq!(
                field(Sink::<str, str>::builder(producer.clone(), "t").build()),
                "value_serializer"
            );
            assert_eq!(
                field(builder().tracker_capacity(0).build()),
                "tracker_capacity"
            );
            assert_eq!(
                field(builder().dead_letter_topic("t").build()),
                "dead_letter_topic"
            );
            assert_eq!(
                field(builder().dead_letter_topic("no spaces").build()),
                "dead_letter_topic"
            );
            assert_eq!(
                field(
                    Sink::<str, str>::builder(producer.clone(), "")
                        .value_serializer(Utf8)
                        .build()
                ),
                "topic"
            );
            assert_eq!(
                field(
                    builder()
                        .circuit_breaker(BreakerConfig::new().probes(0))
                        .build()
                ),
                "probes"
            );
            assert_eq!(
                field(
                    builder()
                        .retry(RetryPolicy::new(1).backoff(Duration::from_secs(10)))
                        .build()
                ),
                "backoff"
            );
            assert!(builder().build().is_ok());
        });
    }
}
