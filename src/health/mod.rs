//! Consumer-lag-aware partitioning: measure how far a consumer group is
//! behind on each partition, turn that into a health score, and steer new
//! keyless records away from the partitions whose consumers are falling
//! behind.
//!
//! ```text
//!  LagCollector ──► HealthScorer ──► HealthSnapshot ──► HealthTable ──► SmartPartitioner
//!  (lag per          (0.0..=1.0        (per topic,        (shared,         (inside the
//!   partition)        per partition)    taken_at)          cheap to read)   producer's engine)
//!        ▲                                    │
//!        └──── HealthManager (background task, every refresh_interval)
//!                                             └──► HealthStream (updates for dashboards, alerts)
//! ```
//!
//! | piece | type | what it does |
//! |---|---|---|
//! | lag | [`LagCollector`], [`KafkaLagCollector`], [`PartitionLag`], [`MissingCommit`] | lag = end offset − committed offset, per partition |
//! | scoring | [`HealthScorer`], [`LinearScorer`], [`HealthSnapshot`], [`Scoring`] | a score per partition; healthy at or above `health_threshold` |
//! | processing reports | [`ProcessingReport`], [`ProcessingMeter`] | consumers saying how long a record takes them, committed with their offsets: routing by capacity without probing |
//! | trends | [`TopicTrends`], [`PartitionWindow`], [`Trend`], [`PartitionStatus`], [`Exclusion`], [`Routing`], [`RoutingReason`] | a window of offsets per partition: processing rate, arrival rate, slope, a Burrow-like status, why a partition gets nothing, and the routing weight that drains a backlog |
//! | sharing | [`HealthTable`], [`RoutingCounters`], [`RoutingStats`] | the latest snapshot per topic, and how records were routed |
//! | routing | [`SmartPartitioner`] | healthy partitions for keyless records (sticky, weighted); fallback otherwise |
//! | running it | [`HealthManager`], [`HealthStream`], [`HealthSummary`], [`SmartConfig`] | the refresh loop, inside a producer or standalone |
//! | sharing between processes | [`HealthCache`], [`CachedHealth`], [`LocalCache`], `HybridCache`, `RedisCache` (feature `redis-cache`) | a monitor publishes health, producers read it instead of collecting |
//! | push | `HealthUpdates`, `PushStatus` | health applied as a monitor publishes it (Redis pub/sub), polling only while the subscription is down |
//!
//! The quickest way in is through the producer builder:
//!
//! ```no_run
//! # async fn demo() -> Result<(), smartkafka::Error> {
//! use smartkafka::health::SmartConfig;
//! use smartkafka::{Producer, Record};
//!
//! let producer = Producer::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .smart_partitioner(SmartConfig::new("order-processors").topics(["orders"]))
//!     .build()
//!     .await?;
//! producer.send(Record::new("orders").value("keyless: goes to a healthy partition")).await?;
//! println!("healthy now: {:?}", producer.healthy_partitions("orders"));
//! # Ok(()) }
//! ```
//!
//! Health shared between processes: one standalone monitor collects lag and
//! publishes it to Redis; each producer reads it through a cache instead of
//! collecting it itself (feature `redis-cache`):
//!
//! ```no_run
//! # #[cfg(feature = "redis-cache")]
//! # async fn demo() -> Result<(), smartkafka::Error> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use smartkafka::health::{HealthManager, HybridCache, LocalCache, RedisCache, SmartConfig};
//! use smartkafka::{ClientConfig, Producer};
//!
//! // The monitor, in one process.
//! let monitor = HealthManager::start(
//!     SmartConfig::new("order-processors")
//!         .topics(["orders"])
//!         .publish_to(Arc::new(RedisCache::new("redis://127.0.0.1:6379/")?)),
//!     ClientConfig::new("localhost:9092"),
//! )?;
//!
//! // A producer, in any other process: the monitor's updates are pushed to
//! // it (Redis pub/sub) as they are published; it polls Redis only while the
//! // subscription is down.
//! let cache = HybridCache::new(
//!     LocalCache::new(1_000, Duration::from_secs(1)),
//!     Arc::new(RedisCache::new("redis://127.0.0.1:6379/")?),
//! );
//! let producer = Producer::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .smart_partitioner(SmartConfig::new("order-processors").topics(["orders"]).cache(Arc::new(cache)))
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The smart strategy is also a [`PartitionStrategy`](crate::partitioner::PartitionStrategy)
//! like the others: `.partitioner(PartitionStrategy::smart(config))` is the
//! same as `.smart_partitioner(config)`, and string properties name it with
//! `partitioner=smart` and the `smart.*` keys.
//!
//! Everything that decides where a record goes is deterministic: the
//! partitioner never reads a clock (it judges staleness against the time
//! the manager last recorded in the table) and draws from a generator seeded
//! by the producer's seed.

#![forbid(unsafe_code)]

mod cache;
#[cfg(feature = "tokio-runtime")]
mod collector;
#[cfg(feature = "tokio-runtime")]
mod manager;
mod partitioner;
mod processing;
#[cfg(feature = "tokio-runtime")]
mod push;
#[cfg(feature = "redis-cache")]
mod redis;
#[cfg(test)]
mod routing_replay;
mod score;
mod smart_config;
#[cfg(test)]
mod spread;
mod stint;
mod table;
mod trend;

use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "tokio-runtime")]
pub use cache::HybridCache;
pub use cache::{CacheFuture, CachedHealth, HealthCache, LocalCache};
#[cfg(feature = "tokio-runtime")]
pub use collector::KafkaLagCollector;
#[cfg(feature = "tokio-runtime")]
pub(crate) use manager::collector_on_pool;
#[cfg(feature = "tokio-runtime")]
pub use manager::{HealthManager, HealthStream, HealthSummary, TopicHealthSummary};
pub use partitioner::SmartPartitioner;
pub use processing::{ProcessingMeter, ProcessingReport};
#[cfg(feature = "tokio-runtime")]
pub use push::{HealthUpdates, PushStatus};
#[cfg(feature = "redis-cache")]
pub use redis::{RedisCache, RedisCacheBuilder};
pub use score::{Exclusion, HealthScorer, HealthSnapshot, LinearScorer, PartitionScore};
pub use smart_config::{Scoring, SmartConfig};
pub use table::{HealthTable, RoutingCounters, RoutingStats};
pub use trend::{
    PartitionStatus, PartitionWindow, Routing, RoutingReason, TopicTrends, Trend, TrendConfig,
    trend_score,
};

use crate::error::Error;

/// How a partition whose group has never committed an offset is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingCommit {
    /// The whole partition is lag: `lag = end offset` (the default). A
    /// consumer that has not started on a partition is as far behind as it
    /// can be, so new keyless records avoid it.
    #[default]
    FullyLagging,
    /// Lag 0: treat the partition as healthy until its first commit (for
    /// groups that commit rarely, or partitions nobody is assigned yet and
    /// that should still receive records).
    Healthy,
}

/// The lag of one partition for one consumer group.
///
/// ```
/// use smartkafka::health::{MissingCommit, PartitionLag};
///
/// assert_eq!(PartitionLag::new(0, Some(90), 100, MissingCommit::FullyLagging).lag, 10);
/// assert_eq!(PartitionLag::new(1, None, 100, MissingCommit::FullyLagging).lag, 100);
/// assert_eq!(PartitionLag::new(1, None, 100, MissingCommit::Healthy).lag, 0);
/// // A commit ahead of the end (a truncated log) is no lag, never negative.
/// assert_eq!(PartitionLag::new(2, Some(120), 100, MissingCommit::FullyLagging).lag, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The partition id.
    pub partition: i32,
    /// The group's committed offset, `None` when it has none.
    pub committed: Option<i64>,
    /// The partition's end offset (latest, as ListOffsets reports it).
    pub end: i64,
    /// Records the group is behind: `end - committed`, at least 0, with
    /// partitions without a commit counted by the [`MissingCommit`] rule.
    pub lag: i64,
    /// What the consumer reported of its own processing with its commit
    /// (see [`ProcessingReport`]), if it did.
    pub processing: Option<ProcessingReport>,
}

impl PartitionLag {
    /// The lag of `partition` from its committed and end offsets.
    pub fn new(partition: i32, committed: Option<i64>, end: i64, missing: MissingCommit) -> Self {
        let lag = match (committed, missing) {
            (Some(c), _) => end.saturating_sub(c).max(0),
            (None, MissingCommit::FullyLagging) => end.max(0),
            (None, MissingCommit::Healthy) => 0,
        };
        PartitionLag {
            partition,
            committed,
            end,
            lag,
            processing: None,
        }
    }

    /// The same lag with the consumer's processing report.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smartkafka::health::{MissingCommit, PartitionLag, ProcessingReport};
    ///
    /// let report = ProcessingReport::new(Duration::from_micros(200), 1_000);
    /// let lag = PartitionLag::new(0, Some(90), 100, MissingCommit::FullyLagging).with_processing(Some(report));
    /// assert_eq!(lag.processing.map(|r| r.capacity()), Some(5_000.0));
    /// ```
    #[must_use]
    pub fn with_processing(mut self, processing: Option<ProcessingReport>) -> Self {
        self.processing = processing;
        self
    }

    /// A lag figure reported directly (by a metrics system, say), without
    /// offsets: `committed` is `None` and `end` is `lag`.
    pub fn from_lag(partition: i32, lag: i64) -> Self {
        PartitionLag {
            partition,
            committed: None,
            end: lag.max(0),
            lag: lag.max(0),
            processing: None,
        }
    }
}

/// What [`LagCollector::collect`] returns: a boxed future, so collectors can
/// be used as `Arc<dyn LagCollector>`.
pub type LagFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<PartitionLag>, Error>> + Send + 'a>>;

/// Where lag figures come from.
///
/// The built-in [`KafkaLagCollector`] asks the cluster itself; a custom
/// collector (a metrics system, a file, a test) implements this trait:
///
/// ```
/// use smartkafka::health::{LagCollector, LagFuture, PartitionLag};
///
/// /// Every partition but 2 keeps up.
/// struct Fixed;
///
/// impl LagCollector for Fixed {
///     fn collect<'a>(&'a self, _group: &'a str, _topic: &'a str) -> LagFuture<'a> {
///         Box::pin(async {
///             Ok((0..6).map(|p| PartitionLag::from_lag(p, if p == 2 { 50_000 } else { 3 })).collect())
///         })
///     }
/// }
/// ```
pub trait LagCollector: Send + Sync {
    /// The lag of `group` on every partition of `topic` it reports on.
    /// Partitions left out are never chosen by health (as if unhealthy).
    fn collect<'a>(&'a self, group: &'a str, topic: &'a str) -> LagFuture<'a>;
}
