//! [`HealthManager`]: the background task that collects lag every
//! `refresh_interval`, scores it, stores the result in a [`HealthTable`] and
//! publishes it on a [`HealthStream`].
//!
//! It runs inside a producer (started by
//! [`ProducerBuilder::smart_partitioner`](crate::ProducerBuilder::smart_partitioner),
//! stopped when the producer closes or is dropped) or standalone, as a
//! monitor whose table any number of producers in the process route by
//! (through [`PartitionStrategy::shared`](crate::partitioner::PartitionStrategy::shared)).
//!
//! Each round collects every topic with a timeout, publishes the snapshots
//! that succeeded, and records the time in the table, so a topic whose
//! collection keeps failing grows stale and its records go to the fallback
//! partitioner. With [`SmartConfig::cache`] the round reads each topic's
//! health from the cache instead of collecting it; with
//! [`SmartConfig::publish_to`] it writes what it collected to the cache.
//! Besides the caches' own timekeeping, this is the only place in the health
//! module that reads the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{
    CachedHealth, HealthCache, HealthScorer, HealthSnapshot, HealthTable, KafkaLagCollector,
    LagCollector, PartitionLag, RoutingCounters, RoutingStats, Scoring, SmartConfig, TopicTrends,
};
use crate::client_config::ClientConfig;
use crate::clock;
use crate::engine::partitioner::PartitionerRecipe;
use crate::error::{Error, ErrorKind};

/// Snapshots kept for a slow [`HealthStream`] reader before it skips ahead.
const STREAM_CAPACITY: usize = 256;

struct ManagerShared {
    config: SmartConfig,
    scorer: Arc<dyn HealthScorer>,
    collector: Arc<dyn LagCollector>,
    table: HealthTable,
    counters: RoutingCounters,
    updates: Mutex<Option<broadcast::Sender<Arc<HealthSnapshot>>>>,
    refreshes: AtomicU64,
    failures: AtomicU64,
    /// Per topic, the window of samples of trend scoring.
    trends: Mutex<HashMap<String, TopicTrends>>,
}

impl ManagerShared {
    /// Scores one collection of `topic`'s lags, taken at `taken_at`: one
    /// sample's score, or (trend scoring) the trend once the sample joins
    /// the topic's window.
    fn score(&self, topic: String, lags: Vec<PartitionLag>, taken_at: Instant) -> HealthSnapshot {
        let config = &self.config;
        match config.scoring {
            Scoring::Threshold => HealthSnapshot::new(
                topic,
                lags,
                self.scorer.as_ref(),
                config.health_threshold,
                taken_at,
            ),
            Scoring::Trend => {
                let mut trends = self.trends.lock().unwrap_or_else(|p| p.into_inner());
                let window = trends.entry(topic.clone()).or_default();
                window.record(&lags, taken_at, &config.trend);
                HealthSnapshot::with_trends(
                    topic,
                    lags,
                    self.scorer.as_ref(),
                    config.health_threshold,
                    taken_at,
                    window,
                    &config.trend,
                )
            }
        }
    }

    /// The lags of `topic` and when they were collected, from the cache
    /// when one is configured and from the collector otherwise; `None` (and
    /// a logged, counted failure) when neither has them.
    async fn fetch(&self, topic: &str) -> Option<(Vec<PartitionLag>, Instant)> {
        let timeout = self.config.collection_timeout;
        let group = &self.config.group;
        if let Some(cache) = &self.config.cache {
            let read = tokio::time::timeout(timeout, cache.get(topic))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "health cache read timed out",
                    ))
                });
            self.cache_outcome(read.as_ref().map(|_| ()));
            return match read {
                Ok(Some(health)) => {
                    let now = clock::now();
                    let age = health.age(clock::unix_millis());
                    // Older than this clock can express: stale for sure.
                    let taken_at = now.checked_sub(age);
                    if taken_at.is_none() {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    taken_at.map(|at| (health.lags, at))
                }
                Ok(None) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(topic, group = %group, "no health in the cache");
                    None
                }
                Err(_) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
        }
        match tokio::time::timeout(timeout, self.collector.collect(group, topic)).await {
            Ok(Ok(lags)) => Some((lags, clock::now())),
            Ok(Err(e)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, group = %group, error = %e, "lag collection failed");
                None
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, group = %group, timeout = ?timeout, "lag collection timed out");
                None
            }
        }
    }

    /// Counts a cache operation and logs when the cache becomes
    /// unavailable or available again.
    fn cache_outcome(&self, outcome: Result<(), &Error>) {
        if self.counters.cache_outcome(outcome.is_ok()) {
            match outcome {
                Ok(()) => {
                    tracing::info!(group = %self.config.group, "health cache available again")
                }
                Err(e) => tracing::warn!(
                    group = %self.config.group,
                    error = %e,
                    "health cache unavailable; routing by the health held locally"
                ),
            }
        } else if let Err(e) = outcome {
            tracing::debug!(group = %self.config.group, error = %e, "health cache still unavailable");
        }
    }

    async fn publish(&self, cache: &dyn HealthCache, health: CachedHealth) {
        let written = tokio::time::timeout(self.config.collection_timeout, cache.put(&health))
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    "health cache write timed out",
                ))
            });
        self.cache_outcome(written.as_ref().map(|_| ()));
    }

    async fn refresh(&self) -> usize {
        let mut refreshed = 0;
        for topic in &self.config.topics {
            let Some((lags, taken_at)) = self.fetch(topic).await else {
                continue;
            };
            // Health read from a cache is not written back to one.
            if let (None, Some(cache)) = (&self.config.cache, &self.config.publish_to) {
                let health = CachedHealth::new(topic.clone(), clock::unix_millis(), lags.clone());
                self.publish(cache.as_ref(), health).await;
            }
            let snapshot = Arc::new(self.score(topic.clone(), lags, taken_at));
            self.table.publish_arc(Arc::clone(&snapshot), clock::now());
            if let Some(tx) = self
                .updates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                // No subscriber is not an error.
                let _ = tx.send(snapshot);
            }
            refreshed += 1;
        }
        self.table.tick(clock::now());
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        refreshed
    }
}

/// Health pushed by the cache: scored like polled health and stored unless
/// the table holds health collected later.
impl super::push::PushTarget for ManagerShared {
    fn apply(&self, health: CachedHealth) -> bool {
        let now = clock::now();
        let Some(taken_at) = now.checked_sub(health.age(clock::unix_millis())) else {
            return false;
        };
        // Converting both collection times to this clock may differ by a
        // millisecond; anything older than that is out of date.
        let held = self.table.snapshot(&health.topic).map(|s| s.taken_at());
        if held.is_some_and(|held| taken_at + Duration::from_millis(2) < held) {
            return false;
        }
        let snapshot = Arc::new(self.score(health.topic, health.lags, taken_at));
        self.table.publish_arc(Arc::clone(&snapshot), now);
        if let Some(tx) = self
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(snapshot);
        }
        true
    }

    fn resync(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {
            self.refresh().await;
        })
    }
}

/// The configuration's own collector, or the built-in one for `client`.
fn default_collector(config: &SmartConfig, client: ClientConfig) -> Arc<dyn LagCollector> {
    match &config.collector {
        Some(c) => Arc::clone(c),
        None => Arc::new(
            KafkaLagCollector::new(client)
                .missing_commit(config.missing_commit)
                .timeout(config.collection_timeout),
        ),
    }
}

/// The collector a producer's smart partitioner uses: the configured one,
/// or the built-in one on the producer's own connections.
pub(crate) fn collector_on_pool(
    config: &SmartConfig,
    pool: Arc<crate::net::pool::BrokerPool>,
) -> Arc<dyn LagCollector> {
    match &config.collector {
        Some(c) => Arc::clone(c),
        None => Arc::new(
            KafkaLagCollector::from_admin(Arc::new(crate::admin::AdminClient::on_pool(pool)))
                .missing_commit(config.missing_commit)
                .timeout(config.collection_timeout),
        ),
    }
}

/// Runs lag collection in the background and keeps a [`HealthTable`]
/// current. Dropping it (or [`stop`](Self::stop)) ends the task.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use smartkafka::ClientConfig;
/// use smartkafka::health::{HealthManager, SmartConfig};
///
/// // A standalone monitor; producers in this process can route by it.
/// let monitor = HealthManager::start(
///     SmartConfig::new("order-processors").topics(["orders"]),
///     ClientConfig::new("localhost:9092"),
/// )?;
/// let mut updates = monitor.health_stream().topic("orders");
/// while let Some(snapshot) = updates.next().await {
///     let unhealthy = snapshot.unhealthy_partitions();
///     if !unhealthy.is_empty() {
///         eprintln!("partitions {unhealthy:?} of orders are falling behind");
///     }
/// }
/// # Ok(()) }
/// ```
pub struct HealthManager {
    shared: Arc<ManagerShared>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Health pushed by the cache, when it can push (see `push.rs`).
    push: Mutex<Option<super::push::PushListener>>,
}

impl std::fmt::Debug for HealthManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthManager")
            .field("group", &self.shared.config.group)
            .field("topics", &self.shared.config.topics)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl HealthManager {
    /// Validates `config` and starts collecting for it, with the built-in
    /// [`KafkaLagCollector`] on the cluster `client` connects to (unless the
    /// configuration names its own collector). Must be called inside a
    /// tokio runtime. The first round starts at once.
    pub fn start(config: SmartConfig, client: ClientConfig) -> Result<HealthManager, Error> {
        let collector = default_collector(&config, client);
        HealthManager::start_with(
            config,
            collector,
            HealthTable::new(),
            RoutingCounters::new(),
        )
    }

    /// Starts collecting with `collector` into `table`; `counters` are the
    /// routing counters reported in [`summary`](Self::summary). Must be
    /// called inside a tokio runtime.
    pub fn start_with(
        config: SmartConfig,
        collector: Arc<dyn LagCollector>,
        table: HealthTable,
        counters: RoutingCounters,
    ) -> Result<HealthManager, Error> {
        config.validate()?;
        let (tx, _) = broadcast::channel(STREAM_CAPACITY);
        let shared = Arc::new(ManagerShared {
            scorer: config.effective_scorer(),
            config,
            collector,
            table,
            counters,
            updates: Mutex::new(Some(tx)),
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            trends: Mutex::new(HashMap::new()),
        });
        let push = shared.config.cache.as_ref().and_then(|cache| {
            let (topics, group) = (&shared.config.topics, &shared.config.group);
            super::push::PushListener::start(cache, topics, group, Arc::clone(&shared))
        });
        let live = push.as_ref().map(super::push::PushListener::live_flag);
        let worker = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(worker.config.refresh_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // While health is pushed, the cache is not polled; the
                // table's clock still moves on so that it can grow stale.
                if live.as_ref().is_some_and(super::push::LiveFlag::is_live) {
                    worker.table.tick(clock::now());
                } else {
                    worker.refresh().await;
                }
            }
        });
        Ok(HealthManager {
            shared,
            task: Mutex::new(Some(task)),
            push: Mutex::new(push),
        })
    }

    /// Runs one collection round now, besides the scheduled ones; returns
    /// how many topics were refreshed.
    pub async fn refresh(&self) -> usize {
        self.shared.refresh().await
    }

    /// The configuration in use.
    pub fn config(&self) -> &SmartConfig {
        &self.shared.config
    }

    /// The table this manager keeps current.
    pub fn table(&self) -> HealthTable {
        self.shared.table.clone()
    }

    /// The routing counters reported in the summary.
    pub fn counters(&self) -> RoutingCounters {
        self.shared.counters.clone()
    }

    /// The partitioner routing by this manager's table and counting into its
    /// counters; producers take it through
    /// [`PartitionStrategy::shared`](crate::partitioner::PartitionStrategy::shared).
    pub(crate) fn recipe(&self) -> PartitionerRecipe {
        self.shared.config.recipe(self.table(), self.counters())
    }

    /// The healthy partitions of `topic`; `None` before its first
    /// successful collection.
    pub fn healthy_partitions(&self, topic: &str) -> Option<Vec<i32>> {
        self.shared.table.healthy_partitions(topic)
    }

    /// Every update from now on: one snapshot per topic per successful
    /// collection. A reader that falls more than 256 snapshots behind skips
    /// to the oldest one kept. The stream ends when the manager stops.
    pub fn health_stream(&self) -> HealthStream {
        let rx = self
            .shared
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(broadcast::Sender::subscribe);
        HealthStream { rx, topic: None }
    }

    /// The health of every watched topic, with the routing counts.
    pub fn summary(&self) -> HealthSummary {
        let table = &self.shared.table;
        let now = table.now();
        let topics = self
            .shared
            .config
            .topics
            .iter()
            .map(|topic| {
                let snapshot = table.snapshot(topic);
                let age = match (&snapshot, now) {
                    (Some(s), Some(now)) => Some(s.age(now)),
                    _ => None,
                };
                TopicHealthSummary {
                    topic: topic.clone(),
                    healthy: snapshot
                        .as_ref()
                        .map(|s| s.healthy_partitions())
                        .unwrap_or_default(),
                    unhealthy: snapshot
                        .as_ref()
                        .map(|s| s.unhealthy_partitions())
                        .unwrap_or_default(),
                    total_lag: snapshot.as_ref().map(|s| s.total_lag()),
                    age,
                    stale: age.is_none_or(|a| a > self.shared.config.max_age),
                    snapshot,
                }
            })
            .collect();
        HealthSummary {
            group: self.shared.config.group.clone(),
            topics,
            routing: self.shared.counters.stats(),
            refreshes: self.shared.refreshes.load(Ordering::Relaxed),
            failed_collections: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// Whether health is pushed by the cache, and the counts of what was
    /// pushed; `None` when the cache cannot push (or the manager collects
    /// lag itself). See [`PushStatus`](super::PushStatus).
    pub fn push_status(&self) -> Option<super::PushStatus> {
        let push = self.push.lock().unwrap_or_else(|p| p.into_inner());
        push.as_ref().map(super::push::PushListener::status)
    }

    /// Whether the background task is running.
    pub fn is_running(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stops the background task and ends every health stream. The table
    /// keeps its last contents (and grows stale for whoever reads it).
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        drop(self.push.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.shared
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Drop for HealthManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Health updates as they happen: an async stream of snapshots.
///
/// ```no_run
/// # async fn demo(manager: smartkafka::health::HealthManager) {
/// let mut stream = manager.health_stream().topic("orders");
/// while let Some(update) = stream.next().await {
///     println!("orders: total lag {}, healthy {:?}", update.total_lag(), update.healthy_partitions());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct HealthStream {
    rx: Option<broadcast::Receiver<Arc<HealthSnapshot>>>,
    topic: Option<String>,
}

impl HealthStream {
    /// Only the updates of `topic`.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// The next update; `None` once the manager has stopped.
    pub async fn next(&mut self) -> Option<Arc<HealthSnapshot>> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok(snapshot) => {
                    if self.topic.as_deref().is_none_or(|t| t == snapshot.topic()) {
                        return Some(snapshot);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "health stream reader fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.rx = None;
                    return None;
                }
            }
        }
    }
}

/// The health of one watched topic in a [`HealthSummary`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TopicHealthSummary {
    /// The topic.
    pub topic: String,
    /// Healthy partitions, ascending (empty without data).
    pub healthy: Vec<i32>,
    /// Reported partitions that are not healthy, ascending.
    pub unhealthy: Vec<i32>,
    /// The group's total lag on the topic, if known.
    pub total_lag: Option<i64>,
    /// How old the data is, at the time last recorded in the table.
    pub age: Option<Duration>,
    /// Whether the data is missing or older than the configured maximum age
    /// (records then go to the fallback partitioner).
    pub stale: bool,
    /// The full snapshot, if any.
    pub snapshot: Option<Arc<HealthSnapshot>>,
}

/// Everything known about health and routing at one moment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HealthSummary {
    /// The consumer group watched.
    pub group: String,
    /// Per watched topic, in configuration order.
    pub topics: Vec<TopicHealthSummary>,
    /// How the smart partitioner placed records so far.
    pub routing: RoutingStats,
    /// Collection rounds completed.
    pub refreshes: u64,
    /// Collections (one topic each) that failed or timed out.
    pub failed_collections: u64,
}

impl HealthSummary {
    /// The summary of `topic`, if watched.
    pub fn topic(&self, topic: &str) -> Option<&TopicHealthSummary> {
        self.topics.iter().find(|t| t.topic == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::health::{LagFuture, PartitionLag};

    /// Lags set by the test; `None` fails the collection, `Some(None)` hangs.
    #[derive(Default)]
    struct Scripted(Mutex<Option<Option<Vec<i64>>>>);

    impl LagCollector for Scripted {
        fn collect<'a>(&'a self, _group: &'a str, _topic: &'a str) -> LagFuture<'a> {
            let script = self.0.lock().unwrap().clone();
            Box::pin(async move {
                match script {
                    Some(Some(lags)) => Ok(lags
                        .iter()
                        .enumerate()
                        .map(|(p, l)| PartitionLag::from_lag(i32::try_from(p).unwrap(), *l))
                        .collect()),
                    Some(None) => std::future::pending().await,
                    None => Err(Error::new(ErrorKind::Io, "collector down")),
                }
            })
        }
    }

    #[tokio::test]
    async fn health_manager_publishes_streams_and_counts_failures() {
        let collector = Arc::new(Scripted::default());
        *collector.0.lock().unwrap() = Some(Some(vec![0, 2000, 10]));
        let config = SmartConfig::new("g")
            .topics(["t"])
            .refresh_interval(Duration::from_secs(3600))
            .collection_timeout(Duration::from_millis(50));
        let manager = HealthManager::start_with(
            config,
            collector.clone(),
            HealthTable::new(),
            RoutingCounters::new(),
        )
        .unwrap();
        let mut stream = manager.health_stream().topic("t");
        // The first round runs at once.
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.healthy_partitions(), vec![0, 2]);
        assert_eq!(manager.healthy_partitions("t"), Some(vec![0, 2]));

        *collector.0.lock().unwrap() = Some(Some(vec![5000, 0, 0]));
        assert_eq!(manager.refresh().await, 1);
        assert_eq!(
            stream.next().await.unwrap().healthy_partitions(),
            vec![1, 2]
        );

        *collector.0.lock().unwrap() = None;
        assert_eq!(manager.refresh().await, 0);
        *collector.0.lock().unwrap() = Some(None);
        assert_eq!(manager.refresh().await, 0);
        let summary = manager.summary();
        assert_eq!(summary.failed_collections, 2);
        assert_eq!(summary.refreshes, 4);
        let t = summary.topic("t").unwrap();
        assert_eq!(t.healthy, vec![1, 2]);
        assert_eq!(t.unhealthy, vec![0]);
        assert_eq!(t.total_lag, Some(5000));
        assert!(!t.stale);

        assert!(manager.is_running());
        manager.stop();
        assert!(!manager.is_running());
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn health_manager_refuses_bad_settings() {
        let bad = SmartConfig::new("g").topics(["t"]).health_threshold(1.5);
        let err = HealthManager::start(bad, ClientConfig::new("localhost:1")).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Config {
                field: "smart.health_threshold"
            }
        );
    }

    /// A cache that fails every operation.
    #[derive(Debug)]
    struct Down;

    impl HealthCache for Down {
        fn get<'a>(
            &'a self,
            _topic: &'a str,
        ) -> crate::health::CacheFuture<'a, Option<CachedHealth>> {
            Box::pin(async { Err(Error::new(ErrorKind::Io, "cache down")) })
        }
        fn put<'a>(&'a self, _health: &'a CachedHealth) -> crate::health::CacheFuture<'a, ()> {
            Box::pin(async { Err(Error::new(ErrorKind::Io, "cache down")) })
        }
    }

    #[tokio::test]
    async fn health_manager_publishes_to_and_reads_from_a_cache() {
        use crate::health::LocalCache;
        let cache: Arc<dyn HealthCache> = Arc::new(LocalCache::new(8, Duration::from_secs(60)));
        let collector = Arc::new(Scripted::default());
        *collector.0.lock().unwrap() = Some(Some(vec![0, 2000, 10]));
        let quiet = |c: SmartConfig| c.topics(["t"]).refresh_interval(Duration::from_secs(3600));
        let monitor = HealthManager::start_with(
            quiet(SmartConfig::new("g")).publish_to(Arc::clone(&cache)),
            collector.clone(),
            HealthTable::new(),
            RoutingCounters::new(),
        )
        .unwrap();
        monitor.refresh().await;
        let cached = cache.get("t").await.unwrap().expect("published");
        assert_eq!(
            cached.lags.iter().map(|l| l.lag).collect::<Vec<_>>(),
            vec![0, 2000, 10]
        );
        assert!(!monitor.counters().stats().cache_unavailable);

        // A reader with its own threshold, and a collector that must not be used.
        let unused = Arc::new(Scripted::default());
        let reader = HealthManager::start_with(
            quiet(SmartConfig::new("g"))
                .health_threshold(0.995)
                .cache(Arc::clone(&cache)),
            unused,
            HealthTable::new(),
            RoutingCounters::new(),
        )
        .unwrap();
        assert_eq!(reader.refresh().await, 1);
        assert_eq!(reader.healthy_partitions("t"), Some(vec![0]));
        assert_eq!(reader.summary().failed_collections, 0);

        // Old health keeps its age: collected 20 s ago, it is stale at once.
        let mut old = cached.clone();
        old.collected_at_ms -= 20_000;
        cache.put(&old).await.unwrap();
        reader.refresh().await;
        let t = reader.summary();
        let t = t.topic("t").unwrap();
        assert!(t.age.unwrap() >= Duration::from_secs(20), "{t:?}");
        assert!(t.stale);

        // Nothing cached for a topic counts as a failed collection.
        let missing = HealthManager::start_with(
            SmartConfig::new("g")
                .topics(["other"])
                .refresh_interval(Duration::from_secs(3600))
                .cache(Arc::clone(&cache)),
            Arc::new(Scripted::default()),
            HealthTable::new(),
            RoutingCounters::new(),
        )
        .unwrap();
        assert_eq!(missing.refresh().await, 0);
        assert!(missing.summary().failed_collections >= 1);
        assert!(!missing.counters().stats().cache_unavailable);
    }

    #[tokio::test]
    async fn health_manager_keeps_its_data_when_the_cache_is_down() {
        let collector = Arc::new(Scripted::default());
        *collector.0.lock().unwrap() = Some(Some(vec![0, 2000]));
        let monitor = HealthManager::start_with(
            SmartConfig::new("g")
                .topics(["t"])
                .refresh_interval(Duration::from_secs(3600))
                .publish_to(Arc::new(Down)),
            collector,
            HealthTable::new(),
            RoutingCounters::new(),
        )
        .unwrap();
        assert_eq!(
            monitor.refresh().await,
            1,
            "a failed publish still refreshes"
        );
        assert_eq!(monitor.healthy_partitions("t"), Some(vec![0]));
        let stats = monitor.counters().stats();
        assert!(stats.cache_unavailable);
        assert!(stats.cache_failures >= 1);

        let reader = HealthManager::start_with(
            SmartConfig::new("g")
                .topics(["t"])
                .refresh_interval(Duration::from_secs(3600))
                .cache(Arc::new(Down)),
            Arc::new(Scripted::default()),
            monitor.table(),
            RoutingCounters::new(),
        )
        .unwrap();
        assert_eq!(reader.refresh().await, 0);
        // The table keeps the health it had.
        assert_eq!(reader.healthy_partitions("t"), Some(vec![0]));
        assert!(reader.counters().stats().cache_unavailable);
        assert!(reader.summary().failed_collections >= 1);
    }
}
