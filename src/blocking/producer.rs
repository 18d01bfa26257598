//! The blocking producer: the same methods as [`crate::Producer`], run on
//! a one-thread runtime it owns (which also runs the producer's driver).
//!
//! Dropping the producer closes it as [`close`](Producer::close) does,
//! waiting up to its `delivery_timeout` for the records in flight (in
//! asynchronous code, on a thread of its own rather than the caller's).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{block_on, in_async_context, not_in_async_context};
use crate::engine::ProducerStats;
use crate::error::Error;
use crate::producer::{self, ProducerConfig};
use crate::record::{Record, RecordMetadata};

/// A blocking Kafka producer.
///
/// Dropping it closes it: records not yet delivered are sent and waited
/// for, up to `delivery_timeout` (by then each of them has settled anyway);
/// what is still undelivered then fails, and a log line says how many.
/// Call [`close`](Self::close) to choose the wait and see the outcome.
///
/// ```no_run
/// use smartkafka::{ProducerConfig, Record};
/// let producer = smartkafka::blocking::Producer::new(ProducerConfig::new("localhost:9092"))?;
/// // Queue many, then wait for each: the records travel in batches.
/// let handles = (0..100)
///     .map(|i| producer.send(Record::new("events").value(format!("event {i}"))))
///     .collect::<Result<Vec<_>, _>>()?;
/// for handle in handles {
///     let metadata = handle.wait()?;
///     assert!(metadata.offset >= 0);
/// }
/// producer.close(std::time::Duration::from_secs(5))?;
/// # Ok::<(), smartkafka::Error>(())
/// ```
pub struct Producer {
    inner: producer::Producer,
    handle: tokio::runtime::Handle,
    /// Taken by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Producer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The pending delivery of one record; [`wait`](Self::wait) blocks for it.
#[derive(Debug)]
pub struct DeliveryHandle {
    future: producer::DeliveryFuture,
    runtime: tokio::runtime::Handle,
}

impl DeliveryHandle {
    /// Blocks until the record is delivered or fails.
    pub fn wait(self) -> Result<RecordMetadata, Error> {
        not_in_async_context()?;
        block_on(&self.runtime, self.future)
    }
}

impl Producer {
    /// Validates `config`, starts a one-thread runtime and the producer on it.
    pub fn new(config: ProducerConfig) -> Result<Producer, Error> {
        not_in_async_context()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("smartkafka-producer")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the producer runtime", e))?;
        let handle = runtime.handle().clone();
        let inner = block_on(&handle, producer::Producer::new(config))?;
        Ok(Producer {
            inner,
            handle,
            runtime: Some(runtime),
        })
    }

    /// Blocks on `future`, unless this thread runs asynchronous code.
    fn run<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        not_in_async_context()?;
        Ok(block_on(&self.handle, future))
    }

    /// Queues a record, blocking only for buffer space and metadata (up to
    /// `max_block`); see [`crate::Producer::send`].
    pub fn send(&self, record: Record) -> Result<DeliveryHandle, Error> {
        let future = self.run(self.inner.send(record))??;
        Ok(DeliveryHandle {
            future,
            runtime: self.handle.clone(),
        })
    }

    /// Queues a record whose report goes to the producer's
    /// [`DeliveryCallback`](crate::DeliveryCallback) with `tag`, blocking
    /// only for buffer space and metadata; see
    /// [`crate::Producer::send_tagged`].
    pub fn send_tagged(&self, record: Record, tag: u64) -> Result<(), Error> {
        self.run(self.inner.send_tagged(record, tag))?
    }

    /// Like [`send_tagged`](Self::send_tagged) without blocking; see
    /// [`crate::Producer::try_send_tagged`].
    pub fn try_send_tagged(&self, record: Record, tag: u64) -> Result<(), Error> {
        self.inner.try_send_tagged(record, tag)
    }

    /// Queues a record without blocking; see [`crate::Producer::try_send`].
    pub fn try_send(&self, record: Record) -> Result<DeliveryHandle, Error> {
        let future = self.inner.try_send(record)?;
        Ok(DeliveryHandle {
            future,
            runtime: self.handle.clone(),
        })
    }

    /// Sends a record and blocks until it is delivered.
    pub fn send_and_wait(&self, record: Record) -> Result<RecordMetadata, Error> {
        self.run(self.inner.send_and_wait(record))?
    }

    /// Sends every record, then blocks for all: one result per record, in order.
    pub fn send_batch(
        &self,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Vec<Result<RecordMetadata, Error>>, Error> {
        self.run(self.inner.send_batch(records))
    }

    /// Blocks until everything sent before the call completed.
    pub fn flush(&self) -> Result<(), Error> {
        self.run(self.inner.flush())?
    }

    /// [`crate::Producer::init_transactions`].
    pub fn init_transactions(&self) -> Result<(), Error> {
        self.run(self.inner.init_transactions())?
    }

    /// [`crate::Producer::begin_transaction`].
    pub fn begin_transaction(&self) -> Result<(), Error> {
        self.run(self.inner.begin_transaction())?
    }

    /// [`crate::Producer::send_offsets_to_transaction`].
    pub fn send_offsets_to_transaction(
        &self,
        offsets: Vec<crate::consumer::OffsetToCommit>,
        group: crate::consumer::ConsumerGroupMetadata,
    ) -> Result<(), Error> {
        self.run(self.inner.send_offsets_to_transaction(offsets, group))?
    }

    /// [`crate::Producer::commit_transaction`].
    pub fn commit_transaction(&self) -> Result<(), Error> {
        self.run(self.inner.commit_transaction())?
    }

    /// [`crate::Producer::abort_transaction`].
    pub fn abort_transaction(&self) -> Result<(), Error> {
        self.run(self.inner.abort_transaction())?
    }

    /// Sends what is queued and stops, failing what is left after `timeout`.
    pub fn close(&self, timeout: Duration) -> Result<(), Error> {
        self.run(self.inner.close(timeout))?
    }

    /// Counters; see [`crate::Producer::stats`].
    pub fn stats(&self) -> ProducerStats {
        self.inner.stats()
    }

    /// The healthy partitions of `topic` (lag-aware partitioning); see
    /// [`crate::Producer::healthy_partitions`].
    pub fn healthy_partitions(&self, topic: &str) -> Option<Vec<i32>> {
        self.inner.healthy_partitions(topic)
    }

    /// Health of every watched topic and routing counts; see
    /// [`crate::Producer::health_summary`].
    pub fn health_summary(&self) -> Option<crate::health::HealthSummary> {
        self.inner.health_summary()
    }

    /// Records routed by health and by the fallback partitioner; see
    /// [`crate::Producer::routing_stats`].
    pub fn routing_stats(&self) -> Option<crate::health::RoutingStats> {
        self.inner.routing_stats()
    }
}

impl Drop for Producer {
    /// Closes the producer as [`close`](Producer::close) does, waiting up to
    /// `delivery_timeout` for the records not yet delivered; in
    /// asynchronous code, whose thread must not block, a thread of its own
    /// does the waiting. Records still undelivered then fail, and a log
    /// line says so.
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let inner = self.inner.clone();
        let timeout = inner.config().delivery_timeout;
        if !in_async_context() {
            close_on_drop(&runtime, &inner, timeout);
            return;
        }
        // Dropping a runtime where blocking is not allowed would panic:
        // hand both to a thread, and keep the runtime within reach should
        // the thread not start.
        let slot = Arc::new(Mutex::new(Some(runtime)));
        let theirs = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name("smartkafka-producer-close".into())
            .spawn(move || {
                let runtime = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(runtime) = runtime {
                    close_on_drop(&runtime, &inner, timeout);
                }
            });
        if let Err(error) = started {
            let runtime = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(runtime) = runtime {
                tracing::warn!(
                    "smartkafka: the blocking producer was dropped in asynchronous code and \
                     no thread could be started to deliver what it held ({error}); \
                     undelivered records are abandoned"
                );
                runtime.shutdown_background();
            }
        }
    }
}

/// The blocking part of dropping a producer: close, and log what is lost.
fn close_on_drop(runtime: &tokio::runtime::Runtime, inner: &producer::Producer, timeout: Duration) {
    if let Err(error) = block_on(runtime.handle(), inner.close(timeout)) {
        tracing::warn!(
            "smartkafka: the blocking producer was dropped and gave up waiting for its \
             records after {timeout:?} (delivery_timeout): {error}"
        );
    }
}
