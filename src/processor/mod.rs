//! Processing records with a [`Processor`]: the [`ProcessorRunner`] polls
//! a group [`Consumer`](crate::consumer::Consumer), hands each record to
//! the processor, retries failures, sends what keeps failing to retry and
//! dead-letter topics, and commits only what is finished
//! (at-least-once).
//!
//! ```text
//!  poll ─► per partition: per-key lanes ─► process (up to max_concurrency at once)
//!            │                                 │ Err: retry in place, backoff, up to max_attempts
//!            │                                 ▼
//!            │                   <topic>.retry.N (opt-in, each with a delay) ─► <topic>.dlt
//!            ▼
//!   offset tracker ─► commit up to the lowest unfinished offset per partition
//! ```
//!
//! | file | what it owns |
//! |---|---|
//! | `mod.rs` | the [`Processor`] and [`TypedProcessor`] traits, [`ProcessError`] |
//! | `runner.rs` | [`ProcessorRunner`], its builder, the poll loop, commits, shutdown |
//! | `keyed.rs` | per-key lanes of a partition (key-ordered concurrency) |
//! | `offsets.rs` | the committable position of a partition |
//! | `retry_topics.rs` | retry and dead-letter topic names, re-sent records |
//!
//! # Guarantees
//!
//! - **At-least-once.** A partition is committed only up to its lowest
//!   record that is not finished (processed, or handed to a retry or
//!   dead-letter topic). After a crash the next owner processes again what
//!   was not committed.
//! - **Key order.** Records of one key in one partition are processed one
//!   at a time in offset order; with [`max_concurrency`] above 1, records
//!   of different keys run in parallel. Keyless records of a partition form
//!   one lane of their own: one at a time, in offset order, alongside the
//!   keyed records.
//! - **Failures never stop the run.** A record whose processing fails is
//!   tried again in place with exponential backoff up to `max_attempts`,
//!   then goes to the next retry topic, if any, else to the dead-letter
//!   topic (`<topic>.dlt` by default), with its key, value and headers and
//!   the [`failure_headers`](crate::failure_headers). Only an error of the
//!   consumer itself, or a retry or dead-letter topic that cannot be
//!   written, ends [`run_until`](ProcessorRunner::run_until).
//!
//! - **Rebalances.** When partitions are revoked, their records still
//!   running are abandoned (cancelled at their next `.await`; a record
//!   already handed to the producer may still reach its retry or
//!   dead-letter topic), their queued records are dropped, and what is
//!   finished is committed before the partitions leave. Nothing of theirs
//!   is committed afterwards, even if a cancelled record completes.
//!   Partitions lost without a rebalance are not committed at all.
//! - **Shutdown.** When the signal passed to
//!   [`run_until`](ProcessorRunner::run_until) completes, the runner stops
//!   polling and starting records, lets the records already running
//!   finish (within
//!   [`shutdown_timeout`](ProcessorRunnerBuilder::shutdown_timeout), then
//!   abandons them), commits what is finished and closes the consumer,
//!   which leaves the group so its partitions move at once.
//!
//! **Retry topics reorder a key's records.** A record that moves to a
//! retry topic is processed later than the records of its key that came
//! after it in the source topic. Use them only when that is acceptable;
//! they are off unless [`retry_topics`] names their delays.
//!
//! [`max_concurrency`]: ProcessorRunnerBuilder::max_concurrency
//! [`retry_topics`]: ProcessorRunnerBuilder::retry_topics
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use smartkafka::consumer::{AutoOffsetReset, Consumer, ConsumedRecord};
//! use smartkafka::processor::{ProcessError, Processor, ProcessorRunner};
//! use smartkafka::{Producer, Record};
//!
//! struct Orders;
//!
//! impl Processor for Orders {
//!     async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
//!         match record.value.as_deref() {
//!             Some(b"bad") => Err(ProcessError::new("cannot price this order")),
//!             _ => Ok(()),
//!         }
//!     }
//! }
//!
//! let cluster = protocol_tests::FakeCluster::builder()
//!     .topic("orders", 1)
//!     .topic("orders.dlt", 1)
//!     .build()
//!     .await;
//! let producer = Producer::builder()
//!     .bootstrap_servers(&cluster.bootstrap_servers())
//!     .build()
//!     .await?;
//! for value in ["ok", "bad", "ok"] {
//!     producer.send_and_wait(Record::new("orders").value(value)).await?;
//! }
//! let consumer = Consumer::builder()
//!     .bootstrap_servers(&cluster.bootstrap_servers())
//!     .group_id("billing")
//!     .enable_auto_commit(false)
//!     .auto_offset_reset(AutoOffsetReset::Earliest)
//!     .build()
//!     .await?;
//! let runner = ProcessorRunner::builder(consumer, producer.clone(), Orders)
//!     .topics(&["orders"])
//!     .max_attempts(2)
//!     .backoff(Duration::from_millis(10), Duration::from_millis(50))
//!     .build()?;
//! let stats = runner.stats();
//! let summary = runner
//!     .run_until(async move {
//!         while stats.snapshot().processed + stats.snapshot().dead_lettered < 3 {
//!             tokio::time::sleep(Duration::from_millis(20)).await;
//!         }
//!     })
//!     .await?;
//! assert_eq!((summary.processed, summary.dead_lettered), (2, 1));
//! # Ok(())
//! # }
//! ```

mod keyed;
mod offsets;
mod retry_topics;
mod runner;
mod typed;

pub use runner::{ProcessorRunner, ProcessorRunnerBuilder, RunStats, RunSummary};
pub use typed::{Typed, TypedProcessor, TypedRecord};

use std::fmt;
use std::future::Future;

use crate::consumer::ConsumedRecord;

/// What a record's processing failed with, and whether trying it again
/// makes sense.
///
/// Any error converts into a (retriable) `ProcessError`, so `?` works in
/// [`Processor::process`]:
///
/// ```
/// use smartkafka::processor::ProcessError;
/// fn parse(value: &[u8]) -> Result<u32, ProcessError> {
///     Ok(std::str::from_utf8(value)?.parse::<u32>()?)
/// }
/// assert!(parse(b"12").is_ok());
/// let err = parse(b"x").unwrap_err();
/// assert!(err.is_retriable());
/// assert_eq!(err.kind(), "processing");
/// ```
pub struct ProcessError {
    message: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Retriable,
    Permanent,
    Deserialization,
}

impl ProcessError {
    /// A failure that may go away: tried again in place, then through the
    /// retry topics, then dead-lettered.
    pub fn new(message: impl Into<String>) -> ProcessError {
        ProcessError {
            message: message.into(),
            kind: Kind::Retriable,
        }
    }

    /// A failure that trying again cannot fix: the record goes straight to
    /// the dead-letter topic.
    pub fn permanent(message: impl Into<String>) -> ProcessError {
        ProcessError {
            message: message.into(),
            kind: Kind::Permanent,
        }
    }

    /// The record's key or value does not decode: straight to the
    /// dead-letter topic, with the error kind `deserialization`.
    pub fn deserialization(message: impl Into<String>) -> ProcessError {
        ProcessError {
            message: message.into(),
            kind: Kind::Deserialization,
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        self.kind == Kind::Retriable
    }

    /// The error kind written to the `dlt-error-kind` header:
    /// `processing` or `deserialization`.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Retriable | Kind::Permanent => "processing",
            Kind::Deserialization => "deserialization",
        }
    }

    /// The error's text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessError")
            .field("message", &self.message)
            .field("kind", &self.kind)
            .finish()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ProcessError {
    fn from(error: E) -> ProcessError {
        ProcessError::new(error.to_string())
    }
}

/// What a [`ProcessorRunner`] calls for each record, and at the points of
/// its life (every hook does nothing by default).
///
/// The runner shares one processor between its concurrent records, so
/// methods take `&self`: keep mutable state behind a `Mutex` or atomics.
/// Write `process` as an `async fn`:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use smartkafka::consumer::ConsumedRecord;
/// use smartkafka::processor::{ProcessError, Processor};
///
/// #[derive(Default)]
/// struct Counter(AtomicU64);
///
/// impl Processor for Counter {
///     async fn process(&self, record: &ConsumedRecord) -> Result<(), ProcessError> {
///         let text = std::str::from_utf8(record.value.as_deref().unwrap_or_default())?;
///         println!("{}@{}: {text}", record.partition, record.offset);
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
///
///     fn on_assigned(&self, partitions: &[(String, i32)]) {
///         println!("now reading {partitions:?}");
///     }
/// }
/// ```
pub trait Processor: Send + Sync + 'static {
    /// Processes one record. `Ok` finishes it (it may be committed);
    /// an error is handled as [`ProcessError`] says.
    fn process(
        &self,
        record: &ConsumedRecord,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// The runner subscribed to its topics and starts polling.
    fn on_started(&self, topics: &[String]) {
        let _ = topics;
    }

    /// Partitions assigned to this member (retry topics' included).
    fn on_assigned(&self, partitions: &[(String, i32)]) {
        let _ = partitions;
    }

    /// Partitions leaving this member: records of theirs still running
    /// were abandoned (the next owner processes them again).
    fn on_revoked(&self, partitions: &[(String, i32)]) {
        let _ = partitions;
    }

    /// A poll reached the end of a partition (its lag is zero).
    fn on_partition_end(&self, topic: &str, partition: i32) {
        let _ = (topic, partition);
    }

    /// The shutdown signal arrived: no new records are started.
    fn on_stopping(&self) {}
}
