//! [`RedisCache`]: health shared between processes through a Redis server
//! (feature `redis-cache`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{CacheFuture, CachedHealth, HealthCache};
use crate::error::{Error, ErrorKind};

/// A health cache on a Redis server: one string key per topic
/// (`<prefix><topic>`, the [`CachedHealth`] encoding as its value), written
/// with an expiry so health from a monitor that stopped disappears.
///
/// The connection is opened on first use and reopened after a failure;
/// every operation (connecting included) is bounded by a timeout, so an
/// unreachable server costs at most that long per operation and is reported
/// as an error, never as a hang.
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use smartkafka::health::{HealthCache, HybridCache, LocalCache, RedisCache};
///
/// let redis = RedisCache::new("redis://127.0.0.1:6379/")?
///     .key_prefix("orders-app:health:")
///     .ttl(Duration::from_secs(30));
/// // Producers usually put a short-lived local cache in front of it.
/// let cache = HybridCache::new(LocalCache::new(1_000, Duration::from_secs(1)), Arc::new(redis));
/// println!("{:?}", cache.get("orders").await?);
/// # Ok(()) }
/// ```
pub struct RedisCache {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("server", &self.client.get_connection_info().addr())
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn redis_error(context: &str, e: &redis::RedisError) -> Error {
    Error::new(ErrorKind::Io, format!("redis {context}: {e}"))
}

impl RedisCache {
    /// A cache on the server at `url` (`redis://host:port/db`), with keys
    /// prefixed `smartkafka:health:`, entries expiring after 60 s and a 1 s
    /// timeout per operation. Only the URL is checked here; nothing is
    /// connected until the first operation.
    pub fn new(url: &str) -> Result<RedisCache, Error> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::new(ErrorKind::Config { field: "redis.url" }, e.to_string()))?;
        Ok(RedisCache {
            client,
            connection: Mutex::new(None),
            prefix: "smartkafka:health:".to_owned(),
            ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        })
    }

    /// The prefix of every key (default `smartkafka:health:`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long an entry lives in Redis after it was written (default 60 s;
    /// at least 1 ms).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The longest one operation, connecting included, may take (default 1 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key of `topic`.
    pub fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Error> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, "redis connect timed out"))?
            .map_err(|e| redis_error("connect", &e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, Error> {
        let mut c = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c)).await;
        let failed = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => redis_error("command", &e),
            Err(_) => Error::new(ErrorKind::Timeout, "redis command timed out"),
        };
        // Reconnect on the next operation.
        self.connection.lock().await.take();
        Err(failed)
    }
}

impl HealthCache for RedisCache {
    fn get<'a>(&'a self, topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(topic));
            let value: Option<String> = self.query(cmd).await?;
            value
                .map(|text| CachedHealth::decode(topic, &text))
                .transpose()
        })
    }

    fn put<'a>(&'a self, health: &'a CachedHealth) -> CacheFuture<'a, ()> {
        Box::pin(async move {
            let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(&health.topic))
                .arg(health.encode())
                .arg("PX")
                .arg(ttl_ms);
            self.query::<()>(cmd).await
        })
    }
}
