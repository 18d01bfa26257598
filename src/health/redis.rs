//! [`RedisCache`]: health shared between processes through a Redis server
//! (feature `redis-cache`), with push over Redis pub/sub, authentication
//! and TLS.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{CacheFuture, CachedHealth, HealthCache, HealthUpdates};
use crate::error::{Error, ErrorKind};

/// Updates buffered between the subscription and the health manager.
const PUSH_BUFFER: usize = 256;

/// A health cache on a Redis server: one string key per topic
/// (`<prefix><topic>`, the [`CachedHealth`] encoding as its value), written
/// with an expiry so health from a monitor that stopped disappears.
///
/// **Push**: every write is also published on the channel
/// `<prefix><topic>` (the same name as the key; Redis keeps channels and
/// keys apart), with the same encoding as the message. A health manager
/// reading from this cache (directly or through a
/// [`HybridCache`](super::HybridCache)) subscribes to the channels of its
/// topics and applies each update as it arrives, and polls only while the
/// subscription is down (see [`PushStatus`](super::PushStatus)). Watch them
/// with `redis-cli psubscribe 'smartkafka:health:*'`.
///
/// **Authentication and TLS** come from the URL:
/// `redis://[user][:password]@host:port/db` (a password alone is the
/// `requirepass` one; a user and password are an ACL user) and
/// `rediss://host:port/db` for TLS (rustls; the server certificate is
/// checked against the Mozilla roots and the system's, or only against the
/// certificates given to [`RedisCacheBuilder::ca_pem`] for a private CA).
/// Wrong credentials are an error of kind [`ErrorKind::Authentication`] at
/// the first operation, a certificate the client does not trust one of kind
/// [`ErrorKind::Tls`]; like any cache failure they never fail a send.
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
/// let redis = RedisCache::new("redis://health-reader:s3cret@redis.internal:6379/0")?
///     .key_prefix("orders-app:health:")
///     .ttl(Duration::from_secs(30));
/// // Producers usually put a short-lived local cache in front of it.
/// let cache = HybridCache::new(LocalCache::new(1_000, Duration::from_secs(1)), Arc::new(redis));
/// println!("{:?}", cache.get("orders").await?);
///
/// // TLS with a private certificate authority.
/// let ca = std::fs::read("/etc/redis/ca.pem").expect("the CA certificate");
/// let tls = RedisCache::builder("rediss://redis.internal:6380/0").ca_pem(ca).build()?;
/// # let _ = tls; Ok(()) }
/// ```
pub struct RedisCache {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    push: bool,
    keepalive: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address only: never the credentials.
        f.debug_struct("RedisCache")
            .field("server", &self.client.get_connection_info().addr())
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .field("push", &self.push)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// A Redis failure as this crate's error: wrong credentials are
/// [`ErrorKind::Authentication`], a TLS failure [`ErrorKind::Tls`], the
/// rest [`ErrorKind::Io`].
fn redis_error(context: &str, e: &redis::RedisError) -> Error {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || lower.contains("wrongpass")
        || lower.contains("noauth");
    let (kind, hint) = if auth {
        (
            ErrorKind::Authentication,
            " (check the user and password in the Redis URL)",
        )
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        (
            ErrorKind::Tls,
            " (check the server certificate and the CA given with `ca_pem`)",
        )
    } else {
        (ErrorKind::Io, "")
    };
    Error::new(kind, format!("redis {context}: {text}{hint}"))
}

/// `url` with any password replaced by `***`, for error messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Builds a [`RedisCache`] with TLS settings that must be known before
/// connecting: the certificate authorities to trust for a `rediss://`
/// server, and a client certificate for servers that ask for one.
///
/// ```
/// use smartkafka::health::RedisCache;
///
/// // Settings are checked at build, with the field named.
/// let err = RedisCache::builder("redis://127.0.0.1:6379/").ca_pem(b"not a certificate".to_vec()).build();
/// assert_eq!(
///     err.unwrap_err().kind(),
///     &smartkafka::ErrorKind::Config { field: "redis.ca_pem" }
/// );
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisCacheBuilder {
    url: String,
    ca_pem: Option<Vec<u8>>,
    client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheBuilder")
            .field("url", &redacted(&self.url))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| ".."))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

impl RedisCacheBuilder {
    /// Trusts only the certificates in `pem` (one or more PEM
    /// certificates, a private CA's say) for the server's certificate,
    /// instead of the public roots. Needs a `rediss://` URL.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this certificate chain and private key (PEM) to servers
    /// that ask for a client certificate (`tls-auth-clients yes`). Needs a
    /// `rediss://` URL.
    pub fn client_cert_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_identity = Some((cert_chain.into(), private_key.into()));
        self
    }

    /// Checks the settings and makes the cache; nothing is connected until
    /// the first operation. Errors name the field: `redis.url` for a URL
    /// that does not parse (its password is not repeated), `redis.ca_pem`
    /// and `redis.client_cert_pem` for certificates that do not parse or
    /// come with a URL that is not `rediss://`.
    pub fn build(self) -> Result<RedisCache, Error> {
        let bad_url = |e: &dyn std::fmt::Display| {
            Error::config("redis.url", format!("`{}`: {e}", redacted(&self.url)))
        };
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Err(bad_url(
                &"use redis://[user][:password]@host:port/db, or rediss:// for TLS",
            ));
        }
        let tls = scheme == Some("rediss");
        let client = if self.ca_pem.is_none() && self.client_identity.is_none() {
            redis::Client::open(self.url.as_str()).map_err(|e| bad_url(&e))?
        } else {
            let field = if self.ca_pem.is_some() {
                "redis.ca_pem"
            } else {
                "redis.client_cert_pem"
            };
            if !tls {
                return Err(Error::config(
                    field,
                    format!("needs a rediss:// URL, not `{}`", redacted(&self.url)),
                ));
            }
            if let Some(pem) = &self.ca_pem {
                check_certificates("redis.ca_pem", pem)?;
            }
            if let Some((chain, _)) = &self.client_identity {
                check_certificates("redis.client_cert_pem", chain)?;
            }
            let certificates = redis::TlsCertificates {
                client_tls: self.client_identity.as_ref().map(|(cert, key)| {
                    redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }
                }),
                root_cert: self.ca_pem.clone(),
            };
            // The URL is checked first, so the error blames the right field.
            redis::Client::open(self.url.as_str()).map_err(|e| bad_url(&e))?;
            redis::Client::build_with_tls(self.url.as_str(), certificates)
                .map_err(|e| Error::config(field, e))?
        };
        Ok(RedisCache {
            client,
            connection: Mutex::new(None),
            prefix: "smartkafka:health:".to_owned(),
            ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            push: true,
            keepalive: Duration::from_secs(5),
        })
    }
}

/// At least one PEM certificate in `pem`, each one parsing.
fn check_certificates(field: &'static str, pem: &[u8]) -> Result<(), Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| Error::config(field, format!("a certificate does not parse: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(Error::config(field, "holds no PEM certificate"));
    }
    Ok(())
}

impl RedisCache {
    /// A cache on the server at `url` (`redis://[user][:password]@host:port/db`,
    /// or `rediss://` for TLS with the public roots), with keys prefixed
    /// `smartkafka:health:`, entries expiring after 60 s, push on, and a
    /// 1 s timeout per operation. Only the URL is checked here (an error of
    /// kind [`ErrorKind::Config`] naming `redis.url`); nothing is connected
    /// until the first operation.
    ///
    /// ```
    /// use smartkafka::health::RedisCache;
    /// assert!(RedisCache::new("redis://:pw@127.0.0.1:6379/2").is_ok());
    /// let err = RedisCache::new("http://127.0.0.1:6379/").unwrap_err();
    /// assert_eq!(err.kind(), &smartkafka::ErrorKind::Config { field: "redis.url" });
    /// ```
    pub fn new(url: &str) -> Result<RedisCache, Error> {
        RedisCache::builder(url).build()
    }

    /// A builder for TLS settings beyond the URL (a private CA, a client
    /// certificate).
    pub fn builder(url: impl Into<String>) -> RedisCacheBuilder {
        RedisCacheBuilder {
            url: url.into(),
            ca_pem: None,
            client_identity: None,
        }
    }

    /// The prefix of every key and channel (default `smartkafka:health:`).
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

    /// Push (default on): writes are published on the topic's channel, and
    /// readers subscribe. Off, writes are only stored and readers poll.
    #[must_use]
    pub fn push(mut self, enabled: bool) -> Self {
        self.push = enabled;
        self
    }

    /// How often a push subscription checks that the server still answers
    /// (default 5 s; at least 10 ms). A server that does not answer a ping
    /// within the operation timeout ends the subscription, so a connection
    /// lost without a word (a network partition) is noticed too.
    #[must_use]
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = interval.max(Duration::from_millis(10));
        self
    }

    /// The key of `topic`.
    pub fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// The pub/sub channel of `topic` (the same name as its key).
    pub fn channel(&self, topic: &str) -> String {
        self.key(topic)
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

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Pipeline) -> Result<T, Error> {
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

    /// Subscribes to the channels of `topics` and forwards decoded updates
    /// until the connection drops or stops answering pings.
    async fn open_subscription(&self, topics: &[String]) -> Result<HealthUpdates, Error> {
        let timed_out = || Error::new(ErrorKind::Timeout, "redis subscribe timed out");
        let pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| redis_error("subscribe", &e))?;
        let (mut sink, mut messages) = pubsub.split();
        let channels: Vec<String> = topics.iter().map(|t| self.channel(t)).collect();
        tokio::time::timeout(self.timeout, sink.subscribe(&channels))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| redis_error("subscribe", &e))?;
        let prefix = self.prefix.clone();
        let (timeout, keepalive) = (self.timeout, self.keepalive);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<CachedHealth>(PUSH_BUFFER);
        let forward = tokio::spawn(async move {
            let mut pings = tokio::time::interval(keepalive);
            pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pings.tick().await;
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { return };
                        let Some(topic) = message.get_channel_name().strip_prefix(prefix.as_str()) else {
                            continue;
                        };
                        let decoded = std::str::from_utf8(message.get_payload_bytes())
                            .ok()
                            .and_then(|text| CachedHealth::decode(topic, text).ok());
                        match decoded {
                            Some(health) => {
                                if tx.send(health).await.is_err() {
                                    return;
                                }
                            }
                            None => tracing::debug!(topic, "ignoring a malformed pushed health update"),
                        }
                    }
                    _ = pings.tick() => {
                        // Any answer will do: a subscribed connection
                        // answers PING with an array.
                        let answered =
                            tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                        if !matches!(answered, Ok(Ok(_))) {
                            return;
                        }
                    }
                }
            }
        });
        let guard = AbortOnDrop(forward);
        Ok(HealthUpdates::new(futures_util::stream::poll_fn(
            move |cx| {
                let _keep = &guard;
                rx.poll_recv(cx)
            },
        )))
    }
}

/// Stops the forwarding task when the updates are dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HealthCache for RedisCache {
    fn get<'a>(&'a self, topic: &'a str) -> CacheFuture<'a, Option<CachedHealth>> {
        Box::pin(async move {
            let mut cmd = redis::pipe();
            cmd.cmd("GET").arg(self.key(topic));
            let (value,): (Option<String>,) = self.query(&cmd).await?;
            value
                .map(|text| CachedHealth::decode(topic, &text))
                .transpose()
        })
    }

    fn put<'a>(&'a self, health: &'a CachedHealth) -> CacheFuture<'a, ()> {
        Box::pin(async move {
            let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
            let encoded = health.encode();
            // One round trip: the value first, so a reader resyncing after
            // the message never finds an older one.
            let mut cmd = redis::pipe();
            cmd.cmd("SET")
                .arg(self.key(&health.topic))
                .arg(&encoded)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            if self.push {
                cmd.cmd("PUBLISH")
                    .arg(self.channel(&health.topic))
                    .arg(&encoded)
                    .ignore();
            }
            self.query::<()>(&cmd).await
        })
    }

    fn subscribe<'a>(&'a self, topics: &'a [String]) -> Option<CacheFuture<'a, HealthUpdates>> {
        if !self.push {
            return None;
        }
        Some(Box::pin(self.open_subscription(topics)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_checked_and_never_echo_the_password() {
        for good in [
            "redis://127.0.0.1:6379/",
            "redis://:pw@127.0.0.1:6379/1",
            "redis://user:pw@localhost:6379/0",
            "rediss://redis.internal:6380/0",
        ] {
            RedisCache::new(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "http://127.0.0.1:6379/",
            "127.0.0.1:6379",
            "redis://user:hunter2@127.0.0.1:notaport/",
            "",
        ] {
            let err = RedisCache::new(bad).unwrap_err();
            assert_eq!(
                err.kind(),
                &ErrorKind::Config { field: "redis.url" },
                "{bad}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert_eq!(
            redacted("redis://user:hunter2@h:1/0"),
            "redis://user:***@h:1/0"
        );
        let debug = format!(
            "{:?}",
            RedisCache::builder("rediss://u:hunter2@h:1/").ca_pem(b"x".to_vec())
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn redis_certificates_need_tls_and_must_parse() {
        let err = RedisCache::builder("rediss://127.0.0.1:6380/")
            .ca_pem(
                b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec(),
            )
            .build()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Config {
                field: "redis.ca_pem"
            }
        );
        let err = RedisCache::builder("rediss://127.0.0.1:6380/")
            .client_cert_pem(Vec::new(), Vec::new())
            .build()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Config {
                field: "redis.client_cert_pem"
            }
        );
        let err = RedisCache::builder("redis://127.0.0.1:6379/")
            .ca_pem(Vec::new())
            .build()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::Config {
                field: "redis.ca_pem"
            }
        );
        assert!(err.to_string().contains("rediss://"), "{err}");
    }
}
