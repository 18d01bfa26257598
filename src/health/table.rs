//! The shared health table and the routing counters.
//!
//! [`HealthTable`] holds the latest [`HealthSnapshot`] per topic and the
//! time the health manager last looked at its clock. Writers (the manager)
//! take a write lock and bump a version counter; readers (the partitioner,
//! once per record) load the version, an atomic read, and take the read lock
//! only when it changed, so the hot path is one atomic load while nothing
//! changes.
//!
//! [`RoutingCounters`] counts how the smart partitioner placed records:
//! by health, by key hash, or by the fallback partitioner (and why).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::HealthSnapshot;

#[derive(Debug, Default)]
struct TableData {
    snapshots: HashMap<String, Arc<HealthSnapshot>>,
    now: Option<Instant>,
}

#[derive(Debug, Default)]
struct TableInner {
    version: AtomicU64,
    data: RwLock<TableData>,
}

/// The latest health per topic, shared between the health manager that
/// writes it and the partitioners and handles that read it. Cloning shares
/// the same table.
///
/// ```
/// use std::time::{Duration, Instant};
/// use smartkafka::health::{HealthSnapshot, HealthTable, LinearScorer, PartitionLag};
///
/// let table = HealthTable::new();
/// let now = Instant::now();
/// let lags = (0..3).map(|p| PartitionLag::from_lag(p, if p == 1 { 5_000 } else { 0 }));
/// table.publish(HealthSnapshot::new("orders", lags, &LinearScorer::default(), 0.5, now), now);
/// assert_eq!(table.healthy_partitions("orders"), Some(vec![0, 2]));
/// assert_eq!(table.healthy_partitions("payments"), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HealthTable {
    inner: Arc<TableInner>,
}

impl HealthTable {
    /// An empty table: no topic has health data yet.
    pub fn new() -> Self {
        HealthTable::default()
    }

    fn write(&self, f: impl FnOnce(&mut TableData)) {
        let mut data = self.inner.data.write().unwrap_or_else(|p| p.into_inner());
        f(&mut data);
        self.inner.version.fetch_add(1, Ordering::Release);
    }

    fn read<T>(&self, f: impl FnOnce(&TableData) -> T) -> T {
        let data = self.inner.data.read().unwrap_or_else(|p| p.into_inner());
        f(&data)
    }

    /// Stores `snapshot` as its topic's latest health and records `now` as
    /// the current time.
    pub fn publish(&self, snapshot: HealthSnapshot, now: Instant) {
        self.publish_arc(Arc::new(snapshot), now);
    }

    /// [`publish`](Self::publish) for a snapshot that is already shared.
    pub fn publish_arc(&self, snapshot: Arc<HealthSnapshot>, now: Instant) {
        self.write(|data| {
            data.snapshots.insert(snapshot.topic().to_owned(), snapshot);
            data.now = Some(data.now.map_or(now, |t| t.max(now)));
        });
    }

    /// Records `now` as the current time without new data: snapshots that
    /// are not refreshed grow older against it and eventually count as
    /// stale. The time never moves backwards.
    pub fn tick(&self, now: Instant) {
        self.write(|data| data.now = Some(data.now.map_or(now, |t| t.max(now))));
    }

    /// Forgets the health of `topic`.
    pub fn remove(&self, topic: &str) {
        self.write(|data| {
            data.snapshots.remove(topic);
        });
    }

    /// The latest snapshot of `topic`.
    pub fn snapshot(&self, topic: &str) -> Option<Arc<HealthSnapshot>> {
        self.read(|data| data.snapshots.get(topic).cloned())
    }

    /// The latest snapshot of every topic, by topic name.
    pub fn snapshots(&self) -> Vec<Arc<HealthSnapshot>> {
        let mut all: Vec<_> = self.read(|data| data.snapshots.values().cloned().collect());
        all.sort_by(|a: &Arc<HealthSnapshot>, b| a.topic().cmp(b.topic()));
        all
    }

    /// The time last recorded by [`publish`](Self::publish) or
    /// [`tick`](Self::tick).
    pub fn now(&self) -> Option<Instant> {
        self.read(|data| data.now)
    }

    /// The snapshot of `topic` together with the recorded time, read at once.
    pub fn read_topic(&self, topic: &str) -> (Option<Arc<HealthSnapshot>>, Option<Instant>) {
        self.read(|data| (data.snapshots.get(topic).cloned(), data.now))
    }

    /// The healthy partitions of `topic` in its latest snapshot; `None` when
    /// the topic has no health data.
    pub fn healthy_partitions(&self, topic: &str) -> Option<Vec<i32>> {
        self.snapshot(topic).map(|s| s.healthy_partitions())
    }

    /// A number that changes whenever the table does.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct Counters {
    by_health: AtomicU64,
    by_key_hash: AtomicU64,
    by_relative_health: AtomicU64,
    fallback_no_data: AtomicU64,
    fallback_stale: AtomicU64,
    fallback_no_healthy: AtomicU64,
    cache_failures: AtomicU64,
    /// 0: no cache operation yet, 1: the last one succeeded, 2: it failed.
    cache_state: AtomicU8,
}

/// Live counts of how a [`SmartPartitioner`](super::SmartPartitioner) placed
/// records. Cloning shares the counts; [`stats`](Self::stats) reads them.
#[derive(Debug, Clone, Default)]
pub struct RoutingCounters {
    inner: Arc<Counters>,
}

/// Why a record was placed by the fallback partitioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    NoData,
    Stale,
    NoHealthy,
}

impl Fallback {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Fallback::NoData => "no health data",
            Fallback::Stale => "health data is stale",
            Fallback::NoHealthy => "no healthy partition",
        }
    }
}

impl RoutingCounters {
    /// Counters starting at zero.
    pub fn new() -> Self {
        RoutingCounters::default()
    }

    pub(crate) fn by_health(&self) {
        self.inner.by_health.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn by_key_hash(&self) {
        self.inner.by_key_hash.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn by_relative_health(&self) {
        self.inner
            .by_relative_health
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fallback(&self, why: Fallback) {
        let counter = match why {
            Fallback::NoData => &self.inner.fallback_no_data,
            Fallback::Stale => &self.inner.fallback_stale,
            Fallback::NoHealthy => &self.inner.fallback_no_healthy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the outcome of a health cache operation; returns whether the
    /// cache's availability changed (for logging transitions only).
    #[cfg(feature = "tokio-runtime")]
    pub(crate) fn cache_outcome(&self, ok: bool) -> bool {
        if !ok {
            self.inner.cache_failures.fetch_add(1, Ordering::Relaxed);
        }
        let state = if ok { 1 } else { 2 };
        let before = self.inner.cache_state.swap(state, Ordering::Relaxed);
        before != state && !(before == 0 && ok)
    }

    /// The counts so far.
    pub fn stats(&self) -> RoutingStats {
        let c = &self.inner;
        RoutingStats {
            routed_by_health: c.by_health.load(Ordering::Relaxed),
            routed_by_key_hash: c.by_key_hash.load(Ordering::Relaxed),
            routed_by_relative_health: c.by_relative_health.load(Ordering::Relaxed),
            fallback_no_data: c.fallback_no_data.load(Ordering::Relaxed),
            fallback_stale: c.fallback_stale.load(Ordering::Relaxed),
            fallback_no_healthy: c.fallback_no_healthy.load(Ordering::Relaxed),
            cache_failures: c.cache_failures.load(Ordering::Relaxed),
            cache_unavailable: c.cache_state.load(Ordering::Relaxed) == 2,
        }
    }
}

/// How many records the smart partitioner placed, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoutingStats {
    /// Placed on a healthy partition chosen by health (keyless records, and
    /// keyed ones with key stickiness on).
    pub routed_by_health: u64,
    /// Keyed records left on their hash partition (key stickiness off).
    pub routed_by_key_hash: u64,
    /// Keyless records placed by relative health because no partition was
    /// healthy (trend scoring): the least lagging partitions, never a
    /// stalled one while another can take them.
    pub routed_by_relative_health: u64,
    /// Placed by the fallback partitioner: the topic had no health data.
    pub fallback_no_data: u64,
    /// Placed by the fallback partitioner: the topic's health data was
    /// older than the configured maximum age.
    pub fallback_stale: u64,
    /// Placed by the fallback partitioner: no partition was healthy
    /// (threshold scoring, or keyed records with key stickiness).
    pub fallback_no_healthy: u64,
    /// Health cache operations (reads with
    /// [`SmartConfig::cache`](super::SmartConfig::cache), writes with
    /// [`SmartConfig::publish_to`](super::SmartConfig::publish_to)) that failed.
    pub cache_failures: u64,
    /// Whether the last health cache operation failed: routing then uses the
    /// last health held locally (and the fallback once that is stale).
    pub cache_unavailable: bool,
}

impl RoutingStats {
    /// Every record placed by the fallback partitioner, whatever the reason.
    pub fn fallback(&self) -> u64 {
        self.fallback_no_data + self.fallback_stale + self.fallback_no_healthy
    }
}
