//! [`SmartConfig`]: the settings of lag-aware partitioning, with defaults
//! that need nothing beyond a consumer group and the topics to watch.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{
    HealthCache, HealthScorer, HealthTable, LagCollector, LinearScorer, MissingCommit,
    RoutingCounters, SmartPartitioner, TrendConfig,
};
use crate::engine::partitioner::{Partitioner, PartitionerRecipe};
use crate::error::Error;

/// How partitions are scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scoring {
    /// The score of one lag sample ([`SmartConfig::scorer`], linear by
    /// default); with no partition healthy, keyless records go to the
    /// fallback partitioner. The default.
    #[default]
    Threshold,
    /// The lag sample's score adjusted by the partition's trend (see
    /// [`trend_score`](super::trend_score)): a partition draining a burst
    /// keeps receiving, one whose commits froze gets nothing, one falling
    /// behind gets the share its consumer can process. With no partition
    /// healthy, keyless records go to the least lagging partitions that are
    /// not stalled (counted as `routed_by_relative_health`). Keyless
    /// records are routed by a weight apart from the score (see
    /// [`Routing`](super::Routing) and
    /// [`TopicTrends::record`](super::TopicTrends::record)): a partition
    /// with a backlog gets less than its consumer processes until the
    /// backlog is drained, then a share below that capacity that grows
    /// back to an even one once its consumer keeps up. When every
    /// partition's consumer commits a
    /// [`ProcessingReport`](super::ProcessingReport) with its offsets (the
    /// [`ProcessorRunner`](crate::processor::ProcessorRunner) does by
    /// default; any client can with a [`ProcessingMeter`](super::ProcessingMeter)),
    /// records are shared in proportion to the reported capacities instead,
    /// and a recovery shows with the next commit, without probing. Opt-in:
    /// see the outcome benchmark (`benches/hot_partition.rs`,
    /// `benches/README.md`).
    Trend,
}

impl Scoring {
    /// The scoring a configuration name stands for: `threshold` or `trend`.
    pub fn from_name(name: &str) -> Option<Scoring> {
        match name {
            "threshold" => Some(Scoring::Threshold),
            "trend" => Some(Scoring::Trend),
            _ => None,
        }
    }
}

/// Settings of the smart (lag-aware) partitioner and its health manager.
///
/// Only the consumer group and the topics are needed; everything else has a
/// default:
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `health_threshold` | 0.5 | a partition is healthy at or above this score |
/// | `max_lag_for_health` | 1000 | lag (records) at which the linear score reaches 0.0 |
/// | `scoring` | [`Scoring::Threshold`] | score one sample, or the trend of a window of samples |
/// | `trend` | 10 samples, 10 s, 2 s | the window, stall limit and drain horizon of trend scoring (see [`TrendConfig`]) |
/// | `refresh_interval` | 5 s | how often lag is collected |
/// | `collection_timeout` | 10 s | how long one collection may take |
/// | `max_age` | 15 s | older health data is stale: the fallback places records |
/// | `missing_commit` | [`MissingCommit::FullyLagging`] | how partitions without a commit count |
/// | `key_stickiness` | off | keyed records keep their hash partition |
/// | `key_capacity` | 10 000 | keys remembered per topic with key stickiness |
/// | `avoid_slow_brokers` | off | weigh partitions down by their leader's Produce latency too |
/// | `fallback` | [`PartitionStrategy::Default`](crate::partitioner::PartitionStrategy::Default) | used without usable health data |
/// | `cache` | none | read health from this cache instead of collecting lag |
/// | `publish_to` | none | publish the health collected to this cache |
///
/// ```
/// use std::time::Duration;
/// use smartkafka::health::SmartConfig;
///
/// let config = SmartConfig::new("order-processors")
///     .topics(["orders", "payments"])
///     .health_threshold(0.3)
///     .max_lag_for_health(500)
///     .refresh_interval(Duration::from_secs(3));
/// config.validate()?;
/// assert!(SmartConfig::new("g").validate().is_err()); // no topics
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SmartConfig {
    /// The consumer group whose lag is watched.
    pub group: String,
    /// The topics to watch and route by health; other topics use the
    /// fallback partitioner.
    pub topics: Vec<String>,
    /// A partition is healthy at or above this score (`0.0..=1.0`).
    pub health_threshold: f64,
    /// Lag at which the default linear score reaches 0.0.
    pub max_lag_for_health: u64,
    /// One sample's score, or the trend's.
    pub scoring: Scoring,
    /// The window of trend scoring.
    pub trend: TrendConfig,
    /// How often the health manager collects lag.
    pub refresh_interval: Duration,
    /// How long one collection (one topic) may take before it is abandoned.
    pub collection_timeout: Duration,
    /// Health data older than this is stale and not used for routing.
    pub max_age: Duration,
    /// How partitions without a committed offset count (built-in collector).
    pub missing_commit: MissingCommit,
    /// Whether keyed records are mapped to healthy partitions.
    pub key_stickiness: bool,
    /// Keys remembered per topic with key stickiness on.
    pub key_capacity: usize,
    /// Whether partitions are weighed by their leader's Produce latency too.
    pub avoid_slow_brokers: bool,
    /// The partitioner used without usable health data (set it with
    /// [`fallback`](Self::fallback); its name tells which it is).
    pub fallback: PartitionerRecipe,
    /// The scorer; `None` for the linear scorer with `max_lag_for_health`.
    pub scorer: Option<Arc<dyn HealthScorer>>,
    /// The lag source; `None` for the built-in Kafka collector.
    pub collector: Option<Arc<dyn LagCollector>>,
    /// Where health is read from instead of collected; `None` to collect.
    pub cache: Option<Arc<dyn HealthCache>>,
    /// Where collected health is published; `None` to keep it in process.
    pub publish_to: Option<Arc<dyn HealthCache>>,
}

impl fmt::Debug for SmartConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartConfig")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("health_threshold", &self.health_threshold)
            .field("max_lag_for_health", &self.max_lag_for_health)
            .field("scoring", &self.scoring)
            .field("trend", &self.trend)
            .field("refresh_interval", &self.refresh_interval)
            .field("collection_timeout", &self.collection_timeout)
            .field("max_age", &self.max_age)
            .field("missing_commit", &self.missing_commit)
            .field("key_stickiness", &self.key_stickiness)
            .field("avoid_slow_brokers", &self.avoid_slow_brokers)
            .field("key_capacity", &self.key_capacity)
            .field("fallback", &self.fallback)
            .field("scorer", &self.scorer)
            .field("collector", &self.collector.as_ref().map(|_| ".."))
            .field("cache", &self.cache)
            .field("publish_to", &self.publish_to)
            .finish()
    }
}

impl SmartConfig {
    /// Defaults for watching consumer group `group`; add topics with
    /// [`topics`](Self::topics).
    pub fn new(group: impl Into<String>) -> Self {
        SmartConfig {
            group: group.into(),
            topics: Vec::new(),
            health_threshold: 0.5,
            max_lag_for_health: 1000,
            scoring: Scoring::Threshold,
            trend: TrendConfig::default(),
            refresh_interval: Duration::from_secs(5),
            collection_timeout: Duration::from_secs(10),
            max_age: Duration::from_secs(15),
            missing_commit: MissingCommit::FullyLagging,
            key_stickiness: false,
            key_capacity: 10_000,
            avoid_slow_brokers: false,
            fallback: PartitionerRecipe::default(),
            scorer: None,
            collector: None,
            cache: None,
            publish_to: None,
        }
    }

    /// How partitions are scored (default [`Scoring::Threshold`]).
    #[must_use]
    pub fn scoring(mut self, scoring: Scoring) -> Self {
        self.scoring = scoring;
        self
    }

    /// Samples kept per partition for trend scoring (default 10; at least
    /// 2).
    #[must_use]
    pub fn trend_window(mut self, samples: usize) -> Self {
        self.trend.window = samples;
        self
    }

    /// How long commits may stay still before a partition with lag counts
    /// as stalled, until the window has learnt how often the group commits
    /// (default 10 s).
    #[must_use]
    pub fn stall_after(mut self, still: Duration) -> Self {
        self.trend.stall_after = still;
        self
    }

    /// With trend scoring, how soon a partition's backlog should be
    /// drained: it is given its consumer's measured capacity minus the
    /// backlog over this horizon (default 2 s; see
    /// [`TopicTrends::record`](super::TopicTrends::record)).
    #[must_use]
    pub fn drain_horizon(mut self, horizon: Duration) -> Self {
        self.trend.drain_horizon = horizon;
        self
    }

    /// Adds topics to watch.
    #[must_use]
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// The health threshold (default 0.5).
    #[must_use]
    pub fn health_threshold(mut self, threshold: f64) -> Self {
        self.health_threshold = threshold;
        self
    }

    /// The lag at which the linear score reaches 0.0 (default 1000).
    #[must_use]
    pub fn max_lag_for_health(mut self, records: u64) -> Self {
        self.max_lag_for_health = records;
        self
    }

    /// The refresh interval (default 5 s).
    ///
    /// With [`Scoring::Trend`], a backlog is what the consumer had surely
    /// not processed when it made a commit, judged against the end offset
    /// at the collection before the commit was seen; a backlog can hide up
    /// to one refresh interval of arrivals. Collecting a few times per
    /// commit interval of the group (for example 250 ms for a group
    /// committing every second) sees a slow consumer sooner: on the
    /// outcome benchmark it cut the p99 end-to-end latency to about a
    /// quarter of what collecting once a second gave (`benches/README.md`).
    /// Each collection is one OffsetFetch and one ListOffsets request; a
    /// fleet can share one collector through a cache.
    #[must_use]
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The timeout of one collection (default 10 s).
    #[must_use]
    pub fn collection_timeout(mut self, timeout: Duration) -> Self {
        self.collection_timeout = timeout;
        self
    }

    /// The age beyond which health data is stale (default 15 s).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// How partitions without a committed offset count (default: fully
    /// lagging).
    #[must_use]
    pub fn missing_commit(mut self, rule: MissingCommit) -> Self {
        self.missing_commit = rule;
        self
    }

    /// Key stickiness (default off).
    #[must_use]
    pub fn key_stickiness(mut self, enabled: bool) -> Self {
        self.key_stickiness = enabled;
        self
    }

    /// Keys remembered per topic with key stickiness (default 10 000).
    #[must_use]
    pub fn key_capacity(mut self, keys: usize) -> Self {
        self.key_capacity = keys;
        self
    }

    /// Weigh each partition by how fast its leader answers this producer's
    /// Produce requests as well as by health (default off): a partition
    /// whose leader answers in `l` against the fastest leader's `f` draws
    /// `(f + 5 ms) / (l + 5 ms)` of the keyless records it would otherwise
    /// (see [`SmartPartitioner::avoid_slow_brokers`]). The signal is this
    /// producer's own, needs no collection and reacts with the next few
    /// answers (the next one, after a second in which the leader answered
    /// nothing); keyed records are not moved by it.
    #[must_use]
    pub fn avoid_slow_brokers(mut self, enabled: bool) -> Self {
        self.avoid_slow_brokers = enabled;
        self
    }

    /// The fallback partitioner: any
    /// [`PartitionStrategy`](crate::partitioner::PartitionStrategy) but the
    /// smart one (default
    /// [`PartitionStrategy::Default`](crate::partitioner::PartitionStrategy::Default)).
    #[must_use]
    pub fn fallback(mut self, strategy: impl Into<PartitionerRecipe>) -> Self {
        self.fallback = strategy.into();
        self
    }

    /// A scorer of your own instead of the linear one.
    #[must_use]
    pub fn scorer(mut self, scorer: Arc<dyn HealthScorer>) -> Self {
        self.scorer = Some(scorer);
        self
    }

    /// A lag source of your own instead of the built-in Kafka collector.
    #[must_use]
    pub fn collector(mut self, collector: Arc<dyn LagCollector>) -> Self {
        self.collector = Some(collector);
        self
    }

    /// Takes health from `cache` instead of collecting lag: every refresh
    /// reads each topic's [`CachedHealth`](super::CachedHealth) (published by
    /// a monitor with [`publish_to`](Self::publish_to)) and scores it with
    /// this configuration's scorer and threshold; the age of the data is the
    /// time since the monitor collected it. No lag collector runs.
    ///
    /// A cache that fails or has nothing for a topic counts as a failed
    /// collection: the last health held stays in use until it is older than
    /// `max_age`, and [`RoutingStats::cache_unavailable`](super::RoutingStats::cache_unavailable)
    /// says the cache cannot be reached. Sends never fail because of it.
    #[must_use]
    pub fn cache(mut self, cache: Arc<dyn HealthCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Publishes the health collected for every topic to `cache` after each
    /// successful collection, for producers reading it with
    /// [`cache`](Self::cache). A failed write is logged and counted, never
    /// an error for routing. Ignored together with [`cache`](Self::cache):
    /// health read from a cache is not written back.
    #[must_use]
    pub fn publish_to(mut self, cache: Arc<dyn HealthCache>) -> Self {
        self.publish_to = Some(cache);
        self
    }

    /// The scorer in use.
    pub fn effective_scorer(&self) -> Arc<dyn HealthScorer> {
        self.scorer
            .clone()
            .unwrap_or_else(|| Arc::new(LinearScorer::new(self.max_lag_for_health)))
    }

    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if self.group.is_empty() {
            return Err(Error::config("smart.group", "must not be empty"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(Error::config(
                "smart.topics",
                "name at least one topic, none of them empty",
            ));
        }
        if !(0.0..=1.0).contains(&self.health_threshold) {
            return Err(Error::config(
                "smart.health_threshold",
                "must be between 0.0 and 1.0",
            ));
        }
        crate::client_config::check_duration("smart.refresh_interval", self.refresh_interval)?;
        crate::client_config::check_duration("smart.collection_timeout", self.collection_timeout)?;
        crate::client_config::check_duration("smart.max_age", self.max_age)?;
        if self.refresh_interval.is_zero() {
            return Err(Error::config(
                "smart.refresh_interval",
                "must be greater than zero",
            ));
        }
        if self.collection_timeout.is_zero() {
            return Err(Error::config(
                "smart.collection_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_age.is_zero() {
            return Err(Error::config("smart.max_age", "must be greater than zero"));
        }
        if self.key_capacity == 0 {
            return Err(Error::config("smart.key_capacity", "must be at least 1"));
        }
        if self.trend.window < 2 {
            return Err(Error::config(
                "smart.trend_window",
                "must be at least 2 samples",
            ));
        }
        crate::client_config::check_duration("smart.stall_after", self.trend.stall_after)?;
        if self.trend.drain_horizon.is_zero() {
            return Err(Error::config(
                "smart.drain_horizon",
                "must be greater than zero",
            ));
        }
        crate::client_config::check_duration("smart.drain_horizon", self.trend.drain_horizon)?;
        Ok(())
    }

    /// The partitioner that routes by `table` and counts into `counters`: a
    /// [`SmartPartitioner`] per producer, seeded by the producer's seed,
    /// with this configuration's fallback.
    pub(crate) fn recipe(
        &self,
        table: HealthTable,
        counters: RoutingCounters,
    ) -> PartitionerRecipe {
        let fallback = self.fallback.clone();
        let max_age = self.max_age;
        let key_stickiness = self.key_stickiness;
        let key_capacity = self.key_capacity;
        let relative = self.scoring == Scoring::Trend;
        let avoid_slow_brokers = self.avoid_slow_brokers;
        PartitionerRecipe::new(
            "Smart",
            Arc::new(move |seed| {
                Box::new(
                    SmartPartitioner::new(table.clone(), seed)
                        .fallback(fallback.build(seed ^ 0xfa11_bac4))
                        .max_age(max_age)
                        .key_stickiness(key_stickiness)
                        .key_capacity(key_capacity)
                        .relative_health(relative)
                        .avoid_slow_brokers(avoid_slow_brokers)
                        .counters_from(counters.clone()),
                ) as Box<dyn Partitioner>
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn health_config_names_each_bad_field() {
        let base = || SmartConfig::new("g").topics(["t"]);
        base().validate().unwrap();
        let cases = [
            (SmartConfig::new("").topics(["t"]), "smart.group"),
            (SmartConfig::new("g"), "smart.topics"),
            (base().topics([""]), "smart.topics"),
            (base().health_threshold(-0.1), "smart.health_threshold"),
            (base().health_threshold(f64::NAN), "smart.health_threshold"),
            (
                base().refresh_interval(Duration::ZERO),
                "smart.refresh_interval",
            ),
            (
                base().collection_timeout(Duration::ZERO),
                "smart.collection_timeout",
            ),
            (base().max_age(Duration::ZERO), "smart.max_age"),
            (base().key_capacity(0), "smart.key_capacity"),
            // Past i32::MAX ms, as every other duration setting: no deadline
            // arithmetic on them can overflow.
            (
                base().refresh_interval(Duration::from_secs(u64::MAX / 2)),
                "smart.refresh_interval",
            ),
            (
                base().collection_timeout(Duration::from_secs(u64::MAX / 2)),
                "smart.collection_timeout",
            ),
            (base().max_age(Duration::MAX), "smart.max_age"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Config { field }, "{err}");
        }
        let defaults = base();
        assert_eq!(defaults.health_threshold, 0.5);
        assert_eq!(defaults.max_lag_for_health, 1000);
        assert_eq!(defaults.refresh_interval, Duration::from_secs(5));
        assert_eq!(defaults.missing_commit, MissingCommit::FullyLagging);
        assert!(!defaults.key_stickiness);
    }

    #[cfg(feature = "tokio-runtime")]
    #[test]
    fn health_config_is_checked_with_the_producer_config() {
        let config = crate::ProducerConfig::new("a:1")
            .smart_partitioner(SmartConfig::new("g").topics(["t"]).health_threshold(2.0));
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Config {
                field: "smart.health_threshold"
            }
        );
    }
}
