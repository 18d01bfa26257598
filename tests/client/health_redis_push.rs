//! Health pushed through a real `redis-server`: a monitor's publish reaches
//! producers at once (their polling set to 30 s, so only push can explain
//! it); a dropped subscription falls back to polling and comes back;
//! passwords, ACL users and TLS with a CA made at test time.
//!
//! The servers are started as in `health_redis.rs` (skipped with a message
//! without the binary, unless `CI` is set).
#![cfg(feature = "redis-cache")]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::health::{
    HealthCache, HealthManager, HealthTable, HybridCache, LagCollector, LagFuture, LocalCache,
    PartitionLag, RoutingCounters, SmartConfig,
};
use smartkafka::{ErrorKind, Producer, Record};

use super::health_redis::{RedisServer, TestCa};

const TOPIC: &str = "pushed";
const GROUP: &str = "readers";
const PARTITIONS: i32 = 6;

/// Lags set by the test, the same for every round until changed.
struct Scripted(Mutex<Vec<i64>>);

impl Scripted {
    fn new(lags: &[i64]) -> Arc<Scripted> {
        Arc::new(Scripted(Mutex::new(lags.to_vec())))
    }

    fn set(&self, lags: &[i64]) {
        *self.0.lock().unwrap() = lags.to_vec();
    }
}

impl LagCollector for Scripted {
    fn collect<'a>(&'a self, _group: &'a str, _topic: &'a str) -> LagFuture<'a> {
        let lags = self.0.lock().unwrap().clone();
        Box::pin(async move {
            Ok(lags
                .iter()
                .enumerate()
                .map(|(p, l)| PartitionLag::from_lag(i32::try_from(p).unwrap(), *l))
                .collect())
        })
    }
}

const ALL_OK: [i64; 6] = [0; 6];
const TWO_STALLED: [i64; 6] = [0, 0, 0, 0, 5_000, 5_000];
const FIRST_STALLED: [i64; 6] = [5_000, 0, 0, 0, 0, 0];

/// A monitor publishing the scripted lags to `cache`; it collects once at
/// start and then only when the test calls `refresh`.
fn monitor(cache: impl HealthCache + 'static, lags: &Arc<Scripted>) -> HealthManager {
    HealthManager::start_with(
        SmartConfig::new(GROUP)
            .topics([TOPIC])
            .refresh_interval(Duration::from_secs(3600))
            .publish_to(Arc::new(cache)),
        Arc::clone(lags) as Arc<dyn LagCollector>,
        HealthTable::new(),
        RoutingCounters::new(),
    )
    .unwrap()
}

/// The reader's settings: health from `cache` through a hybrid cache of
/// its own, polled every `refresh`.
fn reader_config(cache: impl HealthCache + 'static, refresh: Duration) -> SmartConfig {
    let hybrid = HybridCache::new(
        LocalCache::new(16, Duration::from_millis(50)),
        Arc::new(cache),
    );
    SmartConfig::new(GROUP)
        .topics([TOPIC])
        .refresh_interval(refresh)
        .max_age(Duration::from_secs(120))
        .cache(Arc::new(hybrid))
}

/// A standalone reader (what a producer runs inside), with a collector
/// that must never be asked.
fn reader(config: SmartConfig) -> HealthManager {
    struct Unused;
    impl LagCollector for Unused {
        fn collect<'a>(&'a self, _group: &'a str, _topic: &'a str) -> LagFuture<'a> {
            panic!("a reader takes its health from the cache")
        }
    }
    HealthManager::start_with(
        config,
        Arc::new(Unused),
        HealthTable::new(),
        RoutingCounters::new(),
    )
    .unwrap()
}

/// Polls `f` every 10 ms for up to `secs` seconds.
async fn within(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn healthy(manager: &HealthManager) -> Option<Vec<i32>> {
    manager.healthy_partitions(TOPIC)
}

fn live(manager: &HealthManager) -> bool {
    manager.push_status().expect("the cache pushes").live
}

/// Records per partition as the broker's log holds them.
fn log_ends(cluster: &FakeCluster) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| cluster.high_watermark(TOPIC, p))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_a_producer_polling_every_30_s_at_once() {
    const RECORDS: usize = 600;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis.ready().await;
    let lags = Scripted::new(&ALL_OK);
    let monitor = monitor(redis.cache(), &lags);
    assert_eq!(monitor.refresh().await, 1, "published");
    let cluster = FakeCluster::builder()
        .topic(TOPIC, PARTITIONS)
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .batch_size(1024)
        .linger(Duration::from_millis(1))
        .seed(3)
        .smart_partitioner(reader_config(
            // Pings every 50 ms: none may end the subscription.
            redis.cache().keepalive(Duration::from_millis(50)),
            Duration::from_secs(30),
        ))
        .build()
        .await
        .unwrap();
    let health = producer.health_manager().unwrap();
    within(10, "subscribed, with the monitor's first publish", || {
        live(health) && healthy(health) == Some(vec![0, 1, 2, 3, 4, 5])
    })
    .await;
    // Past the first poll and the catch-up read on subscribing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls = health.summary().refreshes;
    let applied = health.push_status().unwrap().applied;

    // Two consumers stall: the next publish reaches the producer long
    // before its next poll (30 s away).
    lags.set(&TWO_STALLED);
    monitor.refresh().await;
    within(5, "the stall pushed to the producer", || {
        healthy(health) == Some(vec![0, 1, 2, 3])
    })
    .await;
    assert_eq!(health.summary().refreshes, polls, "no poll explains it");
    assert_eq!(health.push_status().unwrap().applied, applied + 1);

    // Keyless records avoid the stalled partitions, as the log shows.
    let before = log_ends(&cluster);
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let record = Record::new(TOPIC).value(format!("after the push {i:04} {}", "x".repeat(80)));
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.unwrap();
    for d in deliveries {
        d.await.expect("delivered");
    }
    let added: Vec<i64> = log_ends(&cluster)
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    println!("records per partition after the push: {added:?}");
    assert_eq!(added.iter().sum::<i64>(), RECORDS as i64);
    let to_stalled = added[4] + added[5];
    let standard_share = RECORDS as f64 * 2.0 / f64::from(PARTITIONS);
    assert!(
        (to_stalled as f64) < 0.05 * standard_share,
        "{to_stalled} records went to the stalled partitions: {added:?}"
    );

    // Recovery travels the same way.
    lags.set(&FIRST_STALLED);
    monitor.refresh().await;
    within(5, "the recovery pushed to the producer", || {
        healthy(health) == Some(vec![1, 2, 3, 4, 5])
    })
    .await;

    // An update collected before the health held is ignored.
    let current = redis.cache().get(TOPIC).await.unwrap().expect("in Redis");
    let old = smartkafka::health::CachedHealth::new(
        TOPIC,
        current.collected_at_ms - 10_000,
        (0..PARTITIONS)
            .map(|p| PartitionLag::from_lag(p, 9_999))
            .collect(),
    );
    redis.cache().put(&old).await.unwrap();
    within(5, "the old update seen and ignored", || {
        health.push_status().unwrap().ignored >= 1
    })
    .await;
    assert_eq!(healthy(health), Some(vec![1, 2, 3, 4, 5]));
    assert_eq!(health.summary().refreshes, polls);
    assert!(!producer.routing_stats().unwrap().cache_unavailable);
    let status = health.push_status().unwrap();
    assert_eq!((status.subscriptions, status.drops), (1, 0), "{status:?}");

    producer.close(Duration::from_secs(5)).await.unwrap();
    monitor.stop();
}

/// Runs the monitor until its health is in Redis with `partition`'s lag
/// as scripted (its first write after a restart of the server may fail:
/// its connection is reopened on the next).
async fn publish(monitor: &HealthManager, redis: &RedisServer, partition: usize) {
    let want = monitor.config().topics.len();
    for _ in 0..50 {
        assert_eq!(monitor.refresh().await, want);
        if let Ok(Some(cached)) = redis.cache().get(TOPIC).await
            && cached.lags[partition].lag > 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the monitor did not publish to the restarted server");
}

/// `redis-cli` against the server as its default user.
fn redis_cli(redis: &RedisServer, args: &[&str]) {
    let port = redis
        .url_as("")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .output()
        .expect("redis-cli runs (it comes with redis-server)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.trim() == "OK",
        "redis-cli {args:?}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_falls_back_to_polling_then_push_resumes() {
    // The reader is an ACL user; after the restart it may read keys but not
    // subscribe, until it is granted the channels again.
    const CAN_SUBSCRIBE: [&str; 7] = ["--user", "reader", "on", ">pw", "~*", "&*", "+@all"];
    const CANNOT: [&str; 7] = [
        "--user",
        "reader",
        "on",
        ">pw",
        "~*",
        "resetchannels",
        "+@all",
    ];
    let Some(mut redis) = RedisServer::start_with(&CAN_SUBSCRIBE, None) else {
        return;
    };
    redis.ready().await;
    let lags = Scripted::new(&TWO_STALLED);
    let monitor = monitor(redis.cache(), &lags);
    assert_eq!(monitor.refresh().await, 1, "published");
    let reader = reader(reader_config(
        redis.cache_as("reader:pw"),
        Duration::from_millis(200),
    ));
    within(10, "subscribed and caught up", || {
        live(&reader) && healthy(&reader) == Some(vec![0, 1, 2, 3])
    })
    .await;

    // Redis goes away: the subscription drops, polling takes over (and
    // fails while the server is down), the health held stays in use.
    redis.kill();
    within(5, "the drop noticed", || !live(&reader)).await;
    assert_eq!(reader.push_status().unwrap().drops, 1);
    within(5, "polling reports the cache unavailable", || {
        reader.counters().stats().cache_unavailable
    })
    .await;
    assert_eq!(healthy(&reader), Some(vec![0, 1, 2, 3]));

    // Back, but the reader may not subscribe: health flows by polling.
    redis.restart_with(&CANNOT);
    redis.ready().await;
    lags.set(&FIRST_STALLED);
    publish(&monitor, &redis, 0).await;
    within(10, "the new health polled", || {
        healthy(&reader) == Some(vec![1, 2, 3, 4, 5])
    })
    .await;
    let status = reader.push_status().unwrap();
    assert!(!status.live, "{status:?}");
    assert_eq!(status.subscriptions, 1, "{status:?}");
    assert!(!reader.counters().stats().cache_unavailable);

    // Allowed again: the reader resubscribes (backoff at most 5 s) and the
    // next publish is pushed.
    redis_cli(&redis, &["ACL", "SETUSER", "reader", "allchannels"]);
    within(10, "resubscribed", || live(&reader)).await;
    assert_eq!(reader.push_status().unwrap().subscriptions, 2);
    let applied = reader.push_status().unwrap().applied;
    lags.set(&ALL_OK);
    monitor.refresh().await;
    within(5, "the next publish pushed", || {
        healthy(&reader) == Some(vec![0, 1, 2, 3, 4, 5])
    })
    .await;
    assert_eq!(reader.push_status().unwrap().applied, applied + 1);

    reader.stop();
    monitor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_takes_the_right_credentials_and_refuses_wrong_ones() {
    let Some(redis) = RedisServer::start_with(
        &[
            "--requirepass",
            "pw",
            "--user",
            "app",
            "on",
            ">app-pw",
            "~*",
            "&*",
            "+@all",
        ],
        None,
    ) else {
        return;
    };
    let redis = redis.credentials(":pw");
    redis.ready().await;
    let lags = Scripted::new(&TWO_STALLED);
    let monitor = monitor(redis.cache(), &lags);
    assert_eq!(monitor.refresh().await, 1, "published");

    // The requirepass password and the ACL user both read the health, and
    // the ACL user receives pushes.
    for credentials in [":pw", "app:app-pw"] {
        let got = redis.cache_as(credentials).get(TOPIC).await;
        let got = got.unwrap_or_else(|e| panic!("{credentials}: {e}"));
        assert_eq!(got.expect("published").lags.len(), PARTITIONS as usize);
    }
    let app = reader(reader_config(
        redis.cache_as("app:app-pw"),
        Duration::from_secs(30),
    ));
    within(10, "the ACL user subscribed", || live(&app)).await;
    lags.set(&FIRST_STALLED);
    monitor.refresh().await;
    within(5, "pushed to the ACL user", || {
        healthy(&app) == Some(vec![1, 2, 3, 4, 5])
    })
    .await;

    // Wrong or missing credentials: a clear authentication error.
    for credentials in ["", ":not-the-pw", "app:not-the-pw", "nobody:pw"] {
        let err = redis
            .cache_as(credentials)
            .get(TOPIC)
            .await
            .expect_err(credentials);
        assert_eq!(
            err.kind(),
            &ErrorKind::Authentication,
            "{credentials:?}: {err}"
        );
        assert!(!err.to_string().contains("not-the-pw"), "{err}");
    }

    // A producer with the wrong password still sends every record: it has
    // no health, says the cache is unavailable, and uses the fallback.
    let cluster = FakeCluster::builder()
        .topic(TOPIC, PARTITIONS)
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .smart_partitioner(reader_config(
            redis.cache_as(":not-the-pw"),
            Duration::from_millis(100),
        ))
        .build()
        .await
        .unwrap();
    within(5, "the cache reported unavailable", || {
        producer.routing_stats().unwrap().cache_unavailable
    })
    .await;
    let status = producer.health_manager().unwrap().push_status().unwrap();
    assert!(!status.live && status.subscriptions == 0, "{status:?}");
    let mut deliveries = Vec::new();
    for i in 0..100 {
        let record = Record::new(TOPIC).value(format!("no health {i}"));
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.unwrap();
    for d in deliveries {
        d.await.expect("delivered");
    }
    assert_eq!(log_ends(&cluster).iter().sum::<i64>(), 100);
    assert_eq!(producer.healthy_partitions(TOPIC), None);
    assert_eq!(producer.routing_stats().unwrap().routed_by_health, 0);

    producer.close(Duration::from_secs(5)).await.unwrap();
    app.stop();
    monitor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_is_reached_with_rediss_and_the_test_ca() {
    let ca = TestCa::generate();
    let Some(redis) = RedisServer::start_with(&[], Some(&ca)) else {
        return;
    };
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    redis.ready().await;
    let lags = Scripted::new(&TWO_STALLED);
    let monitor = monitor(redis.cache(), &lags);
    assert_eq!(monitor.refresh().await, 1, "published");
    let got = redis.cache().get(TOPIC).await.unwrap().expect("published");
    assert_eq!(got.lags.len(), PARTITIONS as usize);

    // Pushed over TLS too.
    let tls_reader = reader(reader_config(redis.cache(), Duration::from_secs(30)));
    within(10, "subscribed over TLS", || {
        live(&tls_reader) && healthy(&tls_reader) == Some(vec![0, 1, 2, 3])
    })
    .await;
    lags.set(&ALL_OK);
    monitor.refresh().await;
    within(5, "pushed over TLS", || {
        healthy(&tls_reader) == Some(vec![0, 1, 2, 3, 4, 5])
    })
    .await;

    // Without the test CA the server's certificate is not trusted.
    let untrusted = smartkafka::health::RedisCache::new(&redis.url())
        .unwrap()
        .get(TOPIC)
        .await
        .unwrap_err();
    assert_eq!(untrusted.kind(), &ErrorKind::Tls, "{untrusted}");
    // Another CA is no better.
    let other = TestCa::generate();
    let wrong_ca = smartkafka::health::RedisCache::builder(redis.url())
        .ca_pem(other.ca_pem.as_bytes())
        .build()
        .unwrap()
        .get(TOPIC)
        .await
        .unwrap_err();
    assert_eq!(wrong_ca.kind(), &ErrorKind::Tls, "{wrong_ca}");
    // Plain text to the TLS port fails without a panic.
    let plain = redis.url().replacen("rediss://", "redis://", 1);
    let plain = smartkafka::health::RedisCache::new(&plain)
        .unwrap()
        .timeout(Duration::from_millis(500))
        .get(TOPIC)
        .await;
    assert!(plain.is_err(), "{plain:?}");

    tls_reader.stop();
    monitor.stop();
}
