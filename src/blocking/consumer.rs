//! The blocking group consumer: the same methods as
//! [`crate::consumer::Consumer`], run on a one-thread runtime it owns
//! (which also runs the heartbeat task and rebalance rounds).
//!
//! Dropping it without [`close`](Consumer::close) stops its heartbeats
//! without leaving the group, as the async consumer does: the coordinator
//! removes the member after its session timeout.

use std::future::Future;
use std::time::Duration;

use super::{block_on, not_in_async_context};
use crate::consumer::{self, ConsumedRecord, ConsumerConfig, RebalanceListener};
use crate::error::Error;
use crate::group::{ConsumerGroupMetadata, OffsetToCommit};

/// A blocking consumer group member.
///
/// ```no_run
/// use std::time::Duration;
/// use smartkafka::consumer::ConsumerConfig;
/// let mut consumer =
///     smartkafka::blocking::Consumer::new(ConsumerConfig::new("localhost:9092", "billing"))?;
/// consumer.subscribe(&["orders"])?;
/// for record in consumer.poll(Duration::from_secs(1))? {
///     println!("{}@{}", record.partition, record.offset);
/// }
/// consumer.commit()?;
/// consumer.close()?;
/// # Ok::<(), smartkafka::Error>(())
/// ```
pub struct Consumer {
    /// `None` once closed.
    inner: Option<consumer::Consumer>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Consumer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Validates `config`, starts a one-thread runtime and connects.
    pub fn new(config: ConsumerConfig) -> Result<Consumer, Error> {
        Consumer::with_listener(config, None)
    }

    /// Like [`new`](Self::new), with a rebalance listener.
    pub fn with_rebalance_listener(
        config: ConsumerConfig,
        listener: impl RebalanceListener + 'static,
    ) -> Result<Consumer, Error> {
        Consumer::with_listener(config, Some(Box::new(listener)))
    }

    fn with_listener(
        config: ConsumerConfig,
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<Consumer, Error> {
        not_in_async_context()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("smartkafka-consumer")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the consumer runtime", e))?;
        let mut inner = block_on(runtime.handle(), consumer::Consumer::new(config))?;
        if let Some(listener) = listener {
            inner.set_boxed_rebalance_listener(listener);
        }
        Ok(Consumer {
            inner: Some(inner),
            runtime,
        })
    }

    fn inner(&mut self) -> Result<&mut consumer::Consumer, Error> {
        self.inner
            .as_mut()
            .ok_or_else(|| Error::new(crate::error::ErrorKind::Closed, "the consumer is closed"))
    }

    /// Blocks on what `call` makes of the consumer, unless this thread
    /// runs asynchronous code.
    fn run<'a, F, T>(
        &'a mut self,
        call: impl FnOnce(&'a mut consumer::Consumer) -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>> + 'a,
    {
        not_in_async_context()?;
        let handle = self.runtime.handle().clone();
        let inner = self.inner()?;
        block_on(&handle, call(inner))
    }

    /// See [`crate::consumer::Consumer::subscribe`].
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        self.inner()?.subscribe(topics)
    }

    /// See [`crate::consumer::Consumer::subscribe_pattern`].
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<(), Error> {
        self.inner()?.subscribe_pattern(pattern)
    }

    /// See [`crate::consumer::Consumer::assign`].
    pub fn assign(&mut self, partitions: &[(&str, i32)]) -> Result<(), Error> {
        self.run(|c| c.assign(partitions))
    }

    /// See [`crate::consumer::Consumer::unsubscribe`].
    pub fn unsubscribe(&mut self) -> Result<(), Error> {
        self.run(|c| c.unsubscribe())
    }

    /// Blocks up to `timeout` for records; see
    /// [`crate::consumer::Consumer::poll`].
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, Error> {
        self.run(|c| c.poll(timeout))
    }

    /// See [`crate::consumer::Consumer::commit`].
    pub fn commit(&mut self) -> Result<(), Error> {
        self.run(|c| c.commit())
    }

    /// See [`crate::consumer::Consumer::commit_offsets`].
    pub fn commit_offsets(&mut self, offsets: &[OffsetToCommit]) -> Result<(), Error> {
        self.run(|c| c.commit_offsets(offsets))
    }

    /// See [`crate::consumer::Consumer::commit_async`]: `done` runs on the
    /// consumer's runtime thread.
    pub fn commit_async(
        &mut self,
        done: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) -> Result<(), Error> {
        let _context = self.runtime.enter();
        self.inner()?.commit_async(done);
        Ok(())
    }

    /// See [`crate::consumer::Consumer::committed`].
    pub fn committed(&mut self, topic: &str, partition: i32) -> Result<Option<i64>, Error> {
        self.run(|c| c.committed(topic, partition))
    }

    /// See [`crate::consumer::Consumer::seek`].
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), Error> {
        self.inner()?.seek(topic, partition, offset)
    }

    /// See [`crate::consumer::Consumer::pause`].
    pub fn pause(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        self.inner()?.pause(topic, partition)
    }

    /// See [`crate::consumer::Consumer::resume`].
    pub fn resume(&mut self, topic: &str, partition: i32) -> Result<(), Error> {
        self.inner()?.resume(topic, partition)
    }

    /// See [`crate::consumer::Consumer::position`].
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.inner.as_ref()?.position(topic, partition)
    }

    /// See [`crate::consumer::Consumer::lag`].
    pub fn lag(&self, topic: &str, partition: i32) -> Option<i64> {
        self.inner.as_ref()?.lag(topic, partition)
    }

    /// See [`crate::consumer::Consumer::assignment`].
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.inner
            .as_ref()
            .map(consumer::Consumer::assignment)
            .unwrap_or_default()
    }

    /// See [`crate::consumer::Consumer::group_metadata`].
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.inner.as_ref().map(consumer::Consumer::group_metadata)
    }

    /// Commits (with auto-commit), revokes and leaves the group; see
    /// [`crate::consumer::Consumer::close`].
    pub fn close(&mut self) -> Result<(), Error> {
        not_in_async_context()?;
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        block_on(self.runtime.handle(), inner.close())
    }
}
