//! Health caches: where a standalone monitor publishes the health it
//! collects, and where producers (in this process or others) read it instead
//! of collecting lag themselves.
//!
//! | cache | what it is |
//! |---|---|
//! | [`LocalCache`] | in memory, bounded (least recently used first out), entries expire after a TTL |
//! | `RedisCache` (feature `redis-cache`) | a Redis server, shared by every process that reaches it |
//! | [`HybridCache`] | a [`LocalCache`] in front of another cache (usually Redis), read-through |
//!
//! What is cached per topic is a [`CachedHealth`]: the lag figures and the
//! wall-clock time they were collected, not the scores. Each reader scores
//! them with its own scorer and threshold and judges their age by the
//! collection time, so data from a monitor that stopped grows stale for
//! every reader alike.
//!
//! A cache that cannot be reached never fails a send: the health manager
//! keeps routing by the last health it holds (until it is older than
//! `max_age`, then by the fallback partitioner) and reports the cache as
//! unavailable in [`RoutingStats`](super::RoutingStats) and in its logs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{PartitionLag, ProcessingReport};
use crate::error::{Error, ErrorKind};

/// What [`HealthCache`] operations return: a boxed future, so caches can be
/// used as `Arc<dyn HealthCache>`.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// The health of one topic as it is cached: lag per partition and when it
/// was collected (milliseconds since the Unix epoch).
///
/// The encoding is short text, readable with `redis-cli`:
/// `v1|<collected ms>|<partition>:<committed or ->:<end>:<lag>;...`, with
/// `:<nanoseconds per record>:<records>` after the lag of a partition whose
/// consumer reported its processing ([`ProcessingReport`]).
///
/// ```
/// use smartkafka::health::{CachedHealth, MissingCommit, PartitionLag};
///
/// let lags = vec![
///     PartitionLag::new(0, Some(90), 100, MissingCommit::FullyLagging),
///     PartitionLag::new(1, None, 100, MissingCommit::FullyLagging),
/// ];
/// let health = CachedHealth::new("orders", 1_700_000_000_000, lags);
/// let text = health.encode();
/// assert_eq!(text, "v1|1700000000000|0:90:100:10;1:-:100:100");
/// assert_eq!(CachedHealth::decode("orders", &text)?, health);
/// assert!(CachedHealth::decode("orders", "garbage").is_err());
///
/// // With a consumer's processing report.
/// use smartkafka::health::ProcessingReport;
/// use std::time::Duration;
/// let report = ProcessingReport::new(Duration::from_micros(200), 40);
/// let lags = vec![PartitionLag::new(0, Some(90), 100, MissingCommit::FullyLagging).with_processing(Some(report))];
/// let text = CachedHealth::new("orders", 1_700_000_000_000, lags).encode();
/// assert_eq!(text, "v1|1700000000000|0:90:100:10:200000:40");
/// assert_eq!(CachedHealth::decode("orders", &text)?.lags[0].processing, Some(report));
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachedHealth {
    /// The topic.
    pub topic: String,
    /// When the lags were collected, in milliseconds since the Unix epoch.
    pub collected_at_ms: i64,
    /// The lag of every partition reported.
    pub lags: Vec<PartitionLag>,
}

impl CachedHealth {
    /// The health of `topic` collected at `collected_at_ms`.
    pub fn new(topic: impl Into<String>, collected_at_ms: i64, lags: Vec<PartitionLag>) -> Self {
        CachedHealth {
            topic: topic.into(),
            collected_at_ms,
            lags,
        }
    }

    /// How old the data is at `now_ms` (zero if `now_ms` is earlier, as
    /// between machines whose clocks disagree slightly).
    pub fn age(&self, now_ms: i64) -> Duration {
        let ms = now_ms.saturating_sub(self.collected_at_ms).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// The cached form (the topic is the key, so it is not repeated).
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!("v1|{}|", self.collected_at_ms);
        for (i, l) in self.lags.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            match l.committed {
                Some(c) => write!(out, "{}:{c}:{}:{}", l.partition, l.end, l.lag),
                None => write!(out, "{}:-:{}:{}", l.partition, l.end, l.lag),
            }
            .expect("writing to a String cannot fail");
            if let Some(report) = l.processing {
                write!(
                    out,
                    ":{}:{}",
                    report.per_record().as_nanos(),
                    report.records()
                )
                .expect("writing to a String cannot fail");
            }
        }
        out
    }

    /// Reads the cached form of `topic`'s health; an error of kind
    /// [`ErrorKind::Protocol`] for anything else.
    pub fn decode(topic: impl Into<String>, text: &str) -> Result<Self, Error> {
        let bad = || Error::new(ErrorKind::Protocol, "malformed cached health entry");
        let mut parts = text.splitn(3, '|');
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let collected_at_ms = parts
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let body = parts.next().ok_or_else(bad)?;
        let mut lags = Vec::new();
        for item in body.split(';').filter(|s| !s.is_empty()) {
            let fields: Vec<&str> = item.split(':').collect();
            let (partition, committed, end, lag, processing) = match fields.as_slice() {
                [p, c, e, l] => (*p, *c, *e, *l, None),
                [p, c, e, l, ns, records] => (*p, *c, *e, *l, Some((*ns, *records))),
                _ => return Err(bad()),
            };
            let partition = partition.parse::<i32>().map_err(|_| bad())?;
            let committed = match committed {
                "-" => None,
                c => Some(c.parse::<i64>().map_err(|_| bad())?),
            };
            let end = end.parse::<i64>().map_err(|_| bad())?;
            let lag = lag.parse::<i64>().map_err(|_| bad())?;
            let processing = match processing {
                None => None,
                Some((ns, records)) => Some(ProcessingReport::new(
                    Duration::from_nanos(ns.parse::<u64>().map_err(|_| bad())?),
                    records.parse::<u64>().map_err(|_| bad())?,
                )),
            };
            if lag < 0 {
                return Err(bad());
            }
            lags.push(PartitionLag {
                partition,
                committed,
                end,
                lag,
                processing,
            });
        }
        Ok(CachedHealth {
            topic: topic.into(),
            collected_at_ms,
            lags,
        })
    }
}

/// A store of [`CachedHealth`] by topic, shared between the monitor that
/// publishes health ([`SmartConfig::publish_to`](super::SmartConfig::publish_to))
/// and the producers that read it ([`SmartConfig::cache`](super::SmartConfig::cache)).
///
/// An error means the cache could not be reached or answered nonsense; the
/// health manager then keeps its last data and reports the cache as
/// unavailable.
pub trait HealthCache: Send + Sync + fmt::Debug {
    /// The cached health of `topic`; `None` when there is none (never
    /// published, or expired).
    fn get<'a>(&'a self, topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>>;

    /// Stores `health` as its topic's latest.
    fn put<'a>(&'a self, health: &'a CachedHealth) -> CacheFuture<'a, ()>;

    /// Health of `topics` pushed as it is published, for caches that can
    /// push (`RedisCache` through Redis pub/sub); `None` (the default) for
    /// caches that can only be polled. The future resolves once the
    /// subscription is up, or fails; the [`HealthUpdates`](super::HealthUpdates)
    /// end when it drops. The health manager resubscribes with a backoff
    /// and polls meanwhile (see [`PushStatus`](super::PushStatus)).
    #[cfg(feature = "tokio-runtime")]
    fn subscribe<'a>(
        &'a self,
        topics: &'a [String],
    ) -> Option<CacheFuture<'a, super::HealthUpdates>> {
        let _ = topics;
        None
    }
}

#[derive(Debug)]
struct Entry {
    health: CachedHealth,
    stored_at: Instant,
    /// Position in the recency order.
    used: u64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// Recency order: the smallest tick is the least recently used.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl Lru {
    fn touch(&mut self, topic: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.get_mut(topic) {
            self.order.remove(&entry.used);
            entry.used = tick;
            self.order.insert(tick, topic.to_owned());
        }
    }

    fn remove(&mut self, topic: &str) {
        if let Some(entry) = self.entries.remove(topic) {
            self.order.remove(&entry.used);
        }
    }
}

/// An in-memory health cache: at most `capacity` topics (the least recently
/// used is dropped first), each entry valid for `ttl` after it was stored.
///
/// Times can be passed in ([`get_at`](Self::get_at), [`put_at`](Self::put_at));
/// the [`HealthCache`] implementation reads the clock.
///
/// ```
/// use std::time::{Duration, Instant};
/// use smartkafka::health::{CachedHealth, LocalCache, PartitionLag};
///
/// let cache = LocalCache::new(2, Duration::from_secs(5));
/// let t0 = Instant::now();
/// cache.put_at(CachedHealth::new("orders", 0, vec![PartitionLag::from_lag(0, 3)]), t0);
/// assert!(cache.get_at("orders", t0 + Duration::from_secs(4)).is_some());
/// assert!(cache.get_at("orders", t0 + Duration::from_secs(5)).is_none()); // expired
/// ```
#[derive(Debug)]
pub struct LocalCache {
    capacity: usize,
    ttl: Duration,
    lru: Mutex<Lru>,
}

impl LocalCache {
    /// A cache of at most `capacity` topics (at least 1) whose entries
    /// expire `ttl` after they were stored.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        LocalCache {
            capacity: capacity.max(1),
            ttl,
            lru: Mutex::new(Lru::default()),
        }
    }

    /// The most topics held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long an entry stays valid after it was stored.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How many topics are held (expired entries included until they are
    /// read or pushed out).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The health of `topic` at `now`: `None` when absent or stored `ttl`
    /// or more before `now` (the expired entry is dropped). A hit makes the
    /// topic the most recently used.
    pub fn get_at(&self, topic: &str, now: Instant) -> Option<CachedHealth> {
        let mut lru = self.lock();
        let stored_at = lru.entries.get(topic)?.stored_at;
        if now.saturating_duration_since(stored_at) >= self.ttl {
            lru.remove(topic);
            return None;
        }
        lru.touch(topic);
        lru.entries.get(topic).map(|e| e.health.clone())
    }

    /// Stores `health` at `now` as the most recently used, dropping the
    /// least recently used topic when the cache is full.
    pub fn put_at(&self, health: CachedHealth, now: Instant) {
        let mut lru = self.lock();
        let topic = health.topic.clone();
        lru.remove(&topic);
        while lru.entries.len() >= self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
        lru.entries.insert(
            topic.clone(),
            Entry {
                health,
                stored_at: now,
                used: 0,
            },
        );
        lru.touch(&topic);
    }
}

#[cfg(feature = "tokio-runtime")]
impl HealthCache for LocalCache {
    fn get<'a>(&'a self, topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>> {
        let hit = self.get_at(topic, crate::clock::now());
        Box::pin(async move { Ok(hit) })
    }

    fn put<'a>(&'a self, health: &'a CachedHealth) -> CacheFuture<'a, ()> {
        self.put_at(health.clone(), crate::clock::now());
        Box::pin(async { Ok(()) })
    }
}

/// A [`LocalCache`] in front of another cache (usually a `RedisCache`),
/// read-through: a fresh local entry answers at once; otherwise the remote
/// cache is asked and its answer kept locally for the local TTL. Writes go
/// to both; the local write always succeeds, a remote failure is returned.
///
/// The local TTL bounds how often each topic is read from the remote cache:
/// one remote read per topic per TTL at most, so a TTL around the refresh
/// interval of the readers keeps the remote load low.
///
/// A remote cache that pushes (`RedisCache`) pushes through the hybrid one:
/// each update is stored locally (unless the local entry is newer) and
/// handed on to the health manager.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use smartkafka::health::{HybridCache, LocalCache};
///
/// let remote = Arc::new(LocalCache::new(100, Duration::from_secs(60))); // a Redis cache in practice
/// let hybrid = HybridCache::new(LocalCache::new(100, Duration::from_secs(1)), remote);
/// assert_eq!(hybrid.local().ttl(), Duration::from_secs(1));
/// ```
#[cfg(feature = "tokio-runtime")]
#[derive(Debug)]
pub struct HybridCache {
    local: std::sync::Arc<LocalCache>,
    remote: std::sync::Arc<dyn HealthCache>,
}

#[cfg(feature = "tokio-runtime")]
impl HybridCache {
    /// `local` in front of `remote`.
    pub fn new(local: LocalCache, remote: std::sync::Arc<dyn HealthCache>) -> Self {
        HybridCache {
            local: std::sync::Arc::new(local),
            remote,
        }
    }

    /// The local cache.
    pub fn local(&self) -> &LocalCache {
        &self.local
    }

    /// The cache behind the local one.
    pub fn remote(&self) -> &std::sync::Arc<dyn HealthCache> {
        &self.remote
    }
}

#[cfg(feature = "tokio-runtime")]
impl HealthCache for HybridCache {
    fn get<'a>(&'a self, topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>> {
        Box::pin(async move {
            if let Some(hit) = self.local.get_at(topic, crate::clock::now()) {
                return Ok(Some(hit));
            }
            let remote = self.remote.get(topic).await?;
            if let Some(health) = &remote {
                self.local.put_at(health.clone(), crate::clock::now());
            }
            Ok(remote)
        })
    }

    fn put<'a>(&'a self, health: &'a CachedHealth) -> CacheFuture<'a, ()> {
        Box::pin(async move {
            self.local.put_at(health.clone(), crate::clock::now());
            self.remote.put(health).await
        })
    }

    fn subscribe<'a>(
        &'a self,
        topics: &'a [String],
    ) -> Option<CacheFuture<'a, super::HealthUpdates>> {
        let subscribe = self.remote.subscribe(topics)?;
        let local = std::sync::Arc::clone(&self.local);
        Some(Box::pin(async move {
            let updates = subscribe.await?;
            Ok(updates.inspect(move |health| {
                let now = crate::clock::now();
                let held = local.get_at(&health.topic, now);
                if held.is_none_or(|h| h.collected_at_ms <= health.collected_at_ms) {
                    local.put_at(health.clone(), now);
                }
            }))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::MissingCommit;
    use crate::health::score::tests::t0;

    fn health(topic: &str, lag: i64) -> CachedHealth {
        CachedHealth::new(topic, 1, vec![PartitionLag::from_lag(0, lag)])
    }

    #[test]
    fn health_cache_lru_is_bounded_and_drops_the_least_recent() {
        let cache = LocalCache::new(2, Duration::from_secs(60));
        let now = t0();
        cache.put_at(health("a", 1), now);
        cache.put_at(health("b", 2), now);
        // Reading "a" makes "b" the least recently used.
        assert!(cache.get_at("a", now).is_some());
        cache.put_at(health("c", 3), now);
        assert_eq!(cache.len(), 2);
        assert!(cache.get_at("b", now).is_none());
        assert_eq!(cache.get_at("a", now).unwrap().lags[0].lag, 1);
        assert_eq!(cache.get_at("c", now).unwrap().lags[0].lag, 3);
        // Overwriting keeps one entry per topic and refreshes recency.
        cache.put_at(health("a", 9), now);
        cache.put_at(health("d", 4), now);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get_at("a", now).unwrap().lags[0].lag, 9);
        assert!(cache.get_at("c", now).is_none());
        assert!(cache.get_at("d", now).is_some());
        assert_eq!(LocalCache::new(0, Duration::ZERO).capacity(), 1);
    }

    #[test]
    fn cached_health_with_processing_reports_rejects_malformed_fields() {
        for bad in [
            "v1|1|0:1:2:1:200000",
            "v1|1|0:1:2:1:200000:4:9",
            "v1|1|0:1:2:1:-5:4",
            "v1|1|0:1:2:1:200000:x",
            "v1|1|0:1:2:1::4",
        ] {
            assert!(CachedHealth::decode("t", bad).is_err(), "{bad}");
        }
        // A partition with a report and one without, side by side.
        let text = "v1|1|0:1:2:1:200000:4;1:-:5:5";
        let health = CachedHealth::decode("t", text).unwrap();
        assert_eq!(
            health.lags[0].processing.map(|r| r.per_record()),
            Some(Duration::from_micros(200))
        );
        assert_eq!(health.lags[1].processing, None);
        assert_eq!(health.encode(), text);
    }

    #[test]
    fn health_cache_entries_expire_after_the_ttl() {
        let ttl = Duration::from_millis(500);
        let cache = LocalCache::new(8, ttl);
        let now = t0();
        cache.put_at(health("a", 1), now);
        assert!(
            cache
                .get_at("a", now + Duration::from_millis(499))
                .is_some()
        );
        // A read does not extend the lifetime.
        assert!(cache.get_at("a", now + ttl).is_none());
        assert!(cache.is_empty(), "the expired entry is dropped");
        // A new put starts a new lifetime.
        cache.put_at(health("a", 2), now + ttl);
        assert_eq!(
            cache
                .get_at("a", now + ttl * 2 - Duration::from_millis(1))
                .unwrap()
                .lags[0]
                .lag,
            2
        );
        assert!(cache.get_at("a", now + ttl * 2).is_none());
        // An earlier time than the store is not an expiry.
        cache.put_at(health("b", 1), now + ttl);
        assert!(cache.get_at("b", now).is_some());
    }

    #[test]
    fn health_cache_entries_round_trip_and_reject_garbage() {
        let full = CachedHealth::new(
            "t",
            -5,
            vec![
                PartitionLag::new(3, Some(7), 10, MissingCommit::FullyLagging),
                PartitionLag::new(4, None, 10, MissingCommit::Healthy),
                PartitionLag::from_lag(5, 42),
            ],
        );
        assert_eq!(CachedHealth::decode("t", &full.encode()).unwrap(), full);
        let empty = CachedHealth::new("t", 9, Vec::new());
        assert_eq!(empty.encode(), "v1|9|");
        assert_eq!(CachedHealth::decode("t", "v1|9|").unwrap(), empty);
        for bad in [
            "",
            "v2|1|",
            "v1|x|",
            "v1|1",
            "v1|1|0:1:2",
            "v1|1|0:1:2:3:4",
            "v1|1|a:1:2:3",
            "v1|1|0:q:2:3",
            "v1|1|0:1:2:-3",
        ] {
            let err = CachedHealth::decode("t", bad).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Protocol, "{bad:?}");
        }
        assert_eq!(full.age(995), Duration::from_secs(1));
        assert_eq!(full.age(-10), Duration::ZERO);
    }

    /// A remote cache that counts reads and can be switched off.
    #[derive(Debug, Default)]
    struct Remote {
        inner: Mutex<HashMap<String, CachedHealth>>,
        down: std::sync::atomic::AtomicBool,
        reads: std::sync::atomic::AtomicU64,
    }

    impl HealthCache for Remote {
        fn get<'a>(&'a self, topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>> {
            use std::sync::atomic::Ordering;
            self.reads.fetch_add(1, Ordering::Relaxed);
            let down = self.down.load(Ordering::Relaxed);
            let hit = self.inner.lock().unwrap().get(topic).cloned();
            Box::pin(async move {
                if down {
                    Err(Error::new(ErrorKind::Io, "remote down"))
                } else {
                    Ok(hit)
                }
            })
        }

        fn put<'a>(&'a self, health: &'a CachedHealth) -> CacheFuture<'a, ()> {
            let down = self.down.load(std::sync::atomic::Ordering::Relaxed);
            if !down {
                self.inner
                    .lock()
                    .unwrap()
                    .insert(health.topic.clone(), health.clone());
            }
            Box::pin(async move {
                if down {
                    Err(Error::new(ErrorKind::Io, "remote down"))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn health_cache_hybrid_reads_through_and_keeps_local_writes() {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        let remote = Arc::new(Remote::default());
        let hybrid = HybridCache::new(
            LocalCache::new(8, Duration::from_secs(3600)),
            remote.clone(),
        );
        assert_eq!(hybrid.get("t").await.unwrap(), None);
        assert_eq!(remote.reads.load(Ordering::Relaxed), 1);

        // Published elsewhere: read from the remote once, then locally.
        remote.put(&health("t", 7)).await.unwrap();
        assert_eq!(hybrid.get("t").await.unwrap().unwrap().lags[0].lag, 7);
        assert_eq!(hybrid.get("t").await.unwrap().unwrap().lags[0].lag, 7);
        assert_eq!(remote.reads.load(Ordering::Relaxed), 2);

        // Remote down: a local hit still answers; a miss is an error; a
        // write lands locally and reports the remote failure.
        remote.down.store(true, Ordering::Relaxed);
        assert!(hybrid.get("t").await.unwrap().is_some());
        assert_eq!(hybrid.get("u").await.unwrap_err().kind(), &ErrorKind::Io);
        assert!(hybrid.put(&health("u", 3)).await.is_err());
        assert_eq!(hybrid.get("u").await.unwrap().unwrap().lags[0].lag, 3);
        assert_eq!(
            hybrid.remote().get("u").await.unwrap_err().kind(),
            &ErrorKind::Io
        );
    }
}
