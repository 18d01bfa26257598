//! A blocking producer for code without an async runtime: the same methods
//! as [`crate::Producer`], run on a small runtime this type owns (one
//! worker thread, which also runs the producer's driver).
//!
//! Calling it from inside a tokio runtime would block that runtime's
//! thread; every method checks and returns a configuration error instead.
//!
//! ```no_run
//! use smartkafka::{ProducerConfig, Record};
//! let producer = smartkafka::blocking::Producer::new(ProducerConfig::new("localhost:9092"))?;
//! let metadata = producer.send_and_wait(Record::new("events").value("hello"))?;
//! println!("offset {}", metadata.offset);
//! producer.close(std::time::Duration::from_secs(5))?;
//! # Ok::<(), smartkafka::Error>(())
//! ```

use std::time::Duration;

use crate::engine::ProducerStats;
use crate::error::Error;
use crate::producer::{self, ProducerConfig};
use crate::record::{Record, RecordMetadata};

/// A blocking Kafka producer.
///
/// Call [`close`](Self::close) before dropping it: dropping stops its
/// runtime, and records not yet delivered are abandoned (their handles
/// report the producer as closed, possibly persisted).
pub struct Producer {
    inner: producer::Producer,
    runtime: tokio::runtime::Runtime,
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
        not_in_runtime()?;
        self.runtime.block_on(self.future)
    }
}

fn not_in_runtime() -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::config(
            "runtime",
            "smartkafka::blocking::Producer was called from inside a tokio runtime, \
             which it would block; use smartkafka::Producer there",
        ));
    }
    Ok(())
}

impl Producer {
    /// Validates `config`, starts a one-thread runtime and the producer on it.
    pub fn new(config: ProducerConfig) -> Result<Producer, Error> {
        not_in_runtime()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("smartkafka-producer")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the producer runtime", e))?;
        let inner = runtime.block_on(producer::Producer::new(config))?;
        Ok(Producer { inner, runtime })
    }

    /// Queues a record, blocking only for buffer space and metadata (up to
    /// `max_block`); see [`crate::Producer::send`].
    pub fn send(&self, record: Record) -> Result<DeliveryHandle, Error> {
        not_in_runtime()?;
        let future = self.runtime.block_on(self.inner.send(record))?;
        Ok(DeliveryHandle {
            future,
            runtime: self.runtime.handle().clone(),
        })
    }

    /// Queues a record whose report goes to the producer's
    /// [`DeliveryCallback`](crate::DeliveryCallback) with `tag`, blocking
    /// only for buffer space and metadata; see
    /// [`crate::Producer::send_tagged`].
    pub fn send_tagged(&self, record: Record, tag: u64) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.send_tagged(record, tag))
    }

    /// Like [`send_tagged`](Self::send_tagged) without blocking; see
    /// [`crate::Producer::try_send_tagged`].
    pub fn try_send_tagged(&self, record: Record, tag: u64) -> Result<(), Error> {
        not_in_runtime()?;
        self.inner.try_send_tagged(record, tag)
    }

    /// Queues a record without blocking; see [`crate::Producer::try_send`].
    pub fn try_send(&self, record: Record) -> Result<DeliveryHandle, Error> {
        not_in_runtime()?;
        let future = self.inner.try_send(record)?;
        Ok(DeliveryHandle {
            future,
            runtime: self.runtime.handle().clone(),
        })
    }

    /// Sends a record and blocks until it is delivered.
    pub fn send_and_wait(&self, record: Record) -> Result<RecordMetadata, Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.send_and_wait(record))
    }

    /// Sends every record, then blocks for all: one result per record, in order.
    pub fn send_batch(
        &self,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Vec<Result<RecordMetadata, Error>>, Error> {
        not_in_runtime()?;
        Ok(self.runtime.block_on(self.inner.send_batch(records)))
    }

    /// Blocks until everything sent before the call completed.
    pub fn flush(&self) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.flush())
    }

    /// [`crate::Producer::init_transactions`].
    pub fn init_transactions(&self) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.init_transactions())
    }

    /// [`crate::Producer::begin_transaction`].
    pub fn begin_transaction(&self) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.begin_transaction())
    }

    /// [`crate::Producer::send_offsets_to_transaction`].
    pub fn send_offsets_to_transaction(
        &self,
        offsets: Vec<crate::consumer::OffsetToCommit>,
        group: crate::consumer::ConsumerGroupMetadata,
    ) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime
            .block_on(self.inner.send_offsets_to_transaction(offsets, group))
    }

    /// [`crate::Producer::commit_transaction`].
    pub fn commit_transaction(&self) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.commit_transaction())
    }

    /// [`crate::Producer::abort_transaction`].
    pub fn abort_transaction(&self) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.abort_transaction())
    }

    /// Sends what is queued and stops, failing what is left after `timeout`.
    pub fn close(&self, timeout: Duration) -> Result<(), Error> {
        not_in_runtime()?;
        self.runtime.block_on(self.inner.close(timeout))
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
