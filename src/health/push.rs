//! Health pushed to producers as it is published, instead of polled.
//!
//! A cache that can push ([`HealthCache::subscribe`]; `RedisCache` through
//! Redis pub/sub) hands out [`HealthUpdates`]: the health of the watched
//! topics as a monitor publishes it. A health manager reading from such a
//! cache runs a [`PushListener`] next to its refresh loop:
//!
//! - **live**: every update is scored and stored in the [`HealthTable`](super::HealthTable)
//!   (and the local cache of a [`HybridCache`](super::HybridCache)) as soon
//!   as it arrives, so a fleet of producers learns of a stalled partition
//!   within one publish. The refresh loop stops reading the cache and only
//!   moves the table's clock on, so health from a monitor that stopped
//!   still grows stale. An update collected before the health already held
//!   is ignored.
//! - **down** (the server restarted, the network dropped, the subscription
//!   was refused): the refresh loop reads the cache every
//!   `refresh_interval` again, as without push, while the listener
//!   resubscribes with a doubling backoff (100 ms up to 5 s, with jitter so
//!   a fleet does not resubscribe in step). On resubscribing it reads every
//!   topic once, to catch up on what was published in between.
//!
//! Both transitions are logged (`warn` when push is lost, `info` when it is
//! back), and [`PushStatus`] reports the state and the counts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::{CachedHealth, HealthCache};

/// First wait before resubscribing after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two subscription attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A subscription that lasted this long resets the backoff when it drops.
const STABLE: Duration = Duration::from_secs(1);

/// Health updates pushed by a cache: an async stream of [`CachedHealth`],
/// one item per publish, that ends when the subscription drops.
///
/// A custom cache that can push builds one from any stream:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use smartkafka::health::{CachedHealth, HealthUpdates};
///
/// let published = vec![CachedHealth::new("orders", 1_700_000_000_000, Vec::new())];
/// let mut updates = HealthUpdates::new(futures_util::stream::iter(published));
/// assert_eq!(updates.next().await.unwrap().topic, "orders");
/// assert!(updates.next().await.is_none(), "the subscription ended");
/// # }
/// ```
pub struct HealthUpdates {
    stream: Pin<Box<dyn Stream<Item = CachedHealth> + Send>>,
}

impl std::fmt::Debug for HealthUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthUpdates").finish_non_exhaustive()
    }
}

impl HealthUpdates {
    /// Updates from `stream`; its end is the end of the subscription.
    pub fn new(stream: impl Stream<Item = CachedHealth> + Send + 'static) -> Self {
        HealthUpdates {
            stream: Box::pin(stream),
        }
    }

    /// The next update; `None` once the subscription has dropped.
    pub async fn next(&mut self) -> Option<CachedHealth> {
        self.stream.next().await
    }

    /// The same updates, with `f` called on each before it is handed on
    /// (a [`HybridCache`](super::HybridCache) stores them locally this way).
    #[must_use]
    pub fn inspect(self, f: impl FnMut(&CachedHealth) + Send + 'static) -> Self {
        HealthUpdates::new(self.stream.inspect(f))
    }
}

/// The state of push for one health manager, from
/// [`HealthManager::push_status`](super::HealthManager::push_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushStatus {
    /// Whether the subscription is up: updates are applied as they arrive
    /// and the cache is not polled.
    pub live: bool,
    /// Subscriptions made (the first one included).
    pub subscriptions: u64,
    /// Subscriptions lost after they were made.
    pub drops: u64,
    /// Updates applied to the table.
    pub applied: u64,
    /// Updates ignored: older than the health held, for another topic, or
    /// collected at a time this clock cannot express.
    pub ignored: u64,
}

/// What the listener feeds: the health manager.
pub(super) trait PushTarget: Send + Sync + 'static {
    /// Scores and stores one pushed update; `false` when it was ignored
    /// (older than what is held).
    fn apply(&self, health: CachedHealth) -> bool;

    /// Reads every topic from the cache once (after a (re)subscription).
    fn resync(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

#[derive(Debug, Default)]
struct PushState {
    live: AtomicBool,
    subscriptions: AtomicU64,
    drops: AtomicU64,
    applied: AtomicU64,
    ignored: AtomicU64,
}

/// The background task that keeps a subscription to a cache's pushed
/// health and applies what arrives; stopped when dropped.
#[derive(Debug)]
pub(super) struct PushListener {
    state: Arc<PushState>,
    task: JoinHandle<()>,
}

impl PushListener {
    /// Starts listening when `cache` can push; `None` when it cannot.
    pub(super) fn start<T: PushTarget>(
        cache: &Arc<dyn HealthCache>,
        topics: &[String],
        group: &str,
        target: Arc<T>,
    ) -> Option<PushListener> {
        // Asked once here so that a cache that cannot push costs nothing.
        drop(cache.subscribe(topics)?);
        let state = Arc::new(PushState::default());
        let task = tokio::spawn(listen(
            Arc::clone(cache),
            topics.to_vec(),
            group.to_owned(),
            target,
            Arc::clone(&state),
        ));
        Some(PushListener { state, task })
    }

    /// Whether updates arrive by push right now.
    pub(super) fn is_live(&self) -> bool {
        self.state.live.load(Ordering::Acquire)
    }

    /// The state and counts.
    pub(super) fn status(&self) -> PushStatus {
        let s = &self.state;
        PushStatus {
            live: self.is_live(),
            subscriptions: s.subscriptions.load(Ordering::Relaxed),
            drops: s.drops.load(Ordering::Relaxed),
            applied: s.applied.load(Ordering::Relaxed),
            ignored: s.ignored.load(Ordering::Relaxed),
        }
    }

    /// A handle on the live flag, for the refresh loop.
    pub(super) fn live_flag(&self) -> LiveFlag {
        LiveFlag(Arc::clone(&self.state))
    }
}

impl Drop for PushListener {
    fn drop(&mut self) {
        self.task.abort();
        self.state.live.store(false, Ordering::Release);
    }
}

/// Whether push is live, readable without the listener.
#[derive(Debug, Clone)]
pub(super) struct LiveFlag(Arc<PushState>);

impl LiveFlag {
    /// Whether updates arrive by push right now.
    pub(super) fn is_live(&self) -> bool {
        self.0.live.load(Ordering::Acquire)
    }
}

/// A random-looking fraction in `0.0..1.0` for backoff jitter, from the
/// process's hash seed and a counter.
fn jitter(attempt: u64) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(attempt);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

async fn listen<T: PushTarget>(
    cache: Arc<dyn HealthCache>,
    topics: Vec<String>,
    group: String,
    target: Arc<T>,
    state: Arc<PushState>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut attempt: u64 = 0;
    // Whether the last attempt failed, so a run of failures logs once.
    let mut failing = false;
    loop {
        attempt += 1;
        let subscribed = match cache.subscribe(&topics) {
            Some(subscribe) => subscribe.await,
            None => return,
        };
        match subscribed {
            Ok(mut updates) => {
                let since = tokio::time::Instant::now();
                // Whatever was published while not subscribed; updates
                // arriving meanwhile wait in the subscription.
                target.resync().await;
                let first = state.subscriptions.fetch_add(1, Ordering::Relaxed) == 0;
                state.live.store(true, Ordering::Release);
                if first {
                    tracing::info!(group = %group, "health push subscribed; applying updates as they are published");
                } else {
                    tracing::info!(group = %group, "health push back; polling the cache stops");
                }
                failing = false;
                while let Some(health) = updates.next().await {
                    let wanted = topics.contains(&health.topic);
                    if wanted && target.apply(health) {
                        state.applied.fetch_add(1, Ordering::Relaxed);
                    } else {
                        state.ignored.fetch_add(1, Ordering::Relaxed);
                    }
                }
                state.live.store(false, Ordering::Release);
                state.drops.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    group = %group,
                    "health push subscription lost; polling the cache every refresh interval until it is back"
                );
                if since.elapsed() >= STABLE {
                    backoff = BACKOFF_MIN;
                }
            }
            Err(e) => {
                if failing {
                    tracing::debug!(group = %group, error = %e, "health push: subscribing failed again");
                } else {
                    tracing::warn!(group = %group, error = %e, "health push: subscribing failed; polling the cache meanwhile");
                    failing = true;
                }
            }
        }
        let wait = backoff.mul_f64(0.5 + jitter(attempt) / 2.0);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::error::{Error, ErrorKind};
    use crate::health::{CacheFuture, PartitionLag};

    /// A cache whose subscriptions the test feeds and drops.
    #[derive(Debug, Default)]
    struct Pushing {
        senders: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<CachedHealth>>>,
        refuse: AtomicBool,
    }

    impl HealthCache for Pushing {
        fn get<'a>(&'a self, _topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>> {
            Box::pin(async { Ok(None) })
        }
        fn put<'a>(&'a self, _health: &'a CachedHealth) -> CacheFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn subscribe<'a>(
            &'a self,
            _topics: &'a [String],
        ) -> Option<CacheFuture<'a, HealthUpdates>> {
            Some(Box::pin(async move {
                if self.refuse.load(Ordering::Relaxed) {
                    return Err(Error::new(ErrorKind::Io, "refused"));
                }
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                self.senders.lock().unwrap().push(tx);
                Ok(HealthUpdates::new(futures_util::stream::poll_fn(
                    move |cx| rx.poll_recv(cx),
                )))
            }))
        }
    }

    #[derive(Default)]
    struct Recorder {
        applied: Mutex<Vec<CachedHealth>>,
        resyncs: AtomicU64,
    }

    impl PushTarget for Recorder {
        fn apply(&self, health: CachedHealth) -> bool {
            let mut applied = self.applied.lock().unwrap();
            let newer = applied
                .last()
                .is_none_or(|h| h.collected_at_ms <= health.collected_at_ms);
            if newer {
                applied.push(health);
            }
            newer
        }
        fn resync(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.resyncs.fetch_add(1, Ordering::Relaxed);
            Box::pin(async {})
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not within 5 s: {what}");
    }

    fn health(topic: &str, at: i64) -> CachedHealth {
        CachedHealth::new(topic, at, vec![PartitionLag::from_lag(0, 1)])
    }

    #[tokio::test]
    async fn push_applies_updates_and_resubscribes_after_a_drop() {
        let cache = Arc::new(Pushing::default());
        let dyn_cache: Arc<dyn HealthCache> = cache.clone();
        let target = Arc::new(Recorder::default());
        let topics = vec!["t".to_owned()];
        let listener =
            PushListener::start(&dyn_cache, &topics, "g", Arc::clone(&target)).expect("can push");
        until("subscribed", || listener.is_live()).await;
        assert_eq!(target.resyncs.load(Ordering::Relaxed), 1);

        let send = |h| {
            let senders = cache.senders.lock().unwrap();
            senders.last().unwrap().send(h).unwrap();
        };
        send(health("t", 10));
        send(health("other", 11));
        send(health("t", 5)); // older: ignored
        send(health("t", 12));
        until("three handled", || listener.status().ignored == 2).await;
        until("two applied", || listener.status().applied == 2).await;
        let at: Vec<i64> = target
            .applied
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.collected_at_ms)
            .collect();
        assert_eq!(at, vec![10, 12]);

        // The subscription drops and the next attempts are refused: down
        // until they are accepted again, then live with a catch-up read.
        cache.refuse.store(true, Ordering::Relaxed);
        cache.senders.lock().unwrap().clear();
        until("down", || !listener.is_live()).await;
        assert_eq!(listener.status().drops, 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!listener.is_live());
        cache.refuse.store(false, Ordering::Relaxed);
        until("live again", || listener.is_live()).await;
        assert_eq!(listener.status().subscriptions, 2);
        assert_eq!(target.resyncs.load(Ordering::Relaxed), 2);
        send(health("t", 20));
        until("applied after resubscribing", || {
            listener.status().applied == 3
        })
        .await;

        let flag = listener.live_flag();
        drop(listener);
        assert!(!flag.is_live());
    }

    #[test]
    fn push_jitter_stays_in_range() {
        for attempt in 0..1_000 {
            let j = jitter(attempt);
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
