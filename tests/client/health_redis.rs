//! Health shared through a real Redis server: one standalone monitor
//! collects the lag of a consumer group and publishes it to Redis; two
//! producers, sharing nothing with the monitor or each other but the Redis
//! server, read it through their own hybrid caches and route around the
//! stalled partitions. Killing Redis mid-run keeps both producing by the
//! health they already hold.
//!
//! Each test starts its own `redis-server` on a free loopback port. Without
//! the binary the tests are skipped with a message, unless `CI` is set: then
//! a missing binary fails them.
#![cfg(feature = "redis-cache")]

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::health::{
    HealthCache, HealthManager, HybridCache, LocalCache, RedisCache, SmartConfig,
};
use smartkafka::{ClientConfig, Producer, Record};

const TOPIC: &str = "hot";
const GROUP: &str = "readers";
const PARTITIONS: i32 = 6;
const STALLED: [i32; 2] = [4, 5];

/// A `redis-server` of the test's own, killed when dropped.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Settings beyond the port, the bind address and persistence.
    args: Vec<String>,
    /// The CA that signed the server's certificate, when it serves TLS only.
    ca_pem: Option<String>,
    /// `user:password` (or `:password`) for [`url`](Self::url) and
    /// [`cache`](Self::cache); empty for none.
    credentials: String,
}

/// The certificates of a TLS server, made at test time: a CA, and a server
/// certificate for 127.0.0.1 and localhost signed by it.
pub(crate) struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub(crate) fn generate() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "smartkafka test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = server_params
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        TestCa {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl RedisServer {
    /// Starts a server, or `None` (after saying so) when the binary is
    /// missing outside CI.
    pub(crate) fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[], None)
    }

    /// Starts a server with `args` besides the defaults (`--requirepass`,
    /// `--user`, ...), serving TLS only with `tls`'s certificates.
    pub(crate) fn start_with(args: &[&str], tls: Option<&TestCa>) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "redis-server is not installed, and CI is set: install it (apt-get install redis-server)"
                );
            }
            // Straight to stderr, past the test harness's capture, so the
            // skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: redis-server is not installed; install it (apt-get install redis-server) to run the Redis health cache tests"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("smartkafka-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ca_pem: None,
            credentials: String::new(),
        };
        if let Some(tls) = tls {
            for (name, pem) in [
                ("ca.pem", &tls.ca_pem),
                ("server.pem", &tls.cert_pem),
                ("server.key", &tls.key_pem),
            ] {
                std::fs::write(server.dir.join(name), pem).expect("writing a certificate");
            }
            server.ca_pem = Some(tls.ca_pem.clone());
        }
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        if self.ca_pem.is_some() {
            let file = |name: &str| self.dir.join(name).display().to_string();
            command
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", &file("server.pem")])
                .args(["--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.pem")])
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &port]);
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
    }

    /// Kills the server and starts it again on the same port, with `args`
    /// instead of the ones it had.
    pub(crate) fn restart_with(&mut self, args: &[&str]) {
        self.kill();
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self.spawn();
    }

    /// Uses `credentials` (`user:password` or `:password`) from now on.
    pub(crate) fn credentials(mut self, credentials: &str) -> Self {
        self.credentials = credentials.to_owned();
        self
    }

    /// The URL with `credentials` (empty for none).
    pub(crate) fn url_as(&self, credentials: &str) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let at = if credentials.is_empty() { "" } else { "@" };
        format!("{scheme}://{credentials}{at}127.0.0.1:{}/", self.port)
    }

    pub(crate) fn url(&self) -> String {
        self.url_as(&self.credentials)
    }

    /// A cache with `credentials`, trusting the test CA on a TLS server.
    pub(crate) fn cache_as(&self, credentials: &str) -> RedisCache {
        let mut builder = RedisCache::builder(self.url_as(credentials));
        if let Some(ca) = &self.ca_pem {
            builder = builder.ca_pem(ca.as_bytes());
        }
        builder
            .build()
            .unwrap()
            .timeout(Duration::from_millis(500))
            .ttl(Duration::from_secs(30))
    }

    pub(crate) fn cache(&self) -> RedisCache {
        self.cache_as(&self.credentials)
    }

    /// Waits until the server answers.
    pub(crate) async fn ready(&self) {
        let probe = self.cache().key_prefix("probe:");
        let health = smartkafka::health::CachedHealth::new("ready", 0, Vec::new());
        for _ in 0..200 {
            if probe.put(&health).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "redis-server on port {} did not answer within 5 s",
            self.port
        );
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A six-partition topic with a backlog everywhere, and a group that keeps
/// up on partitions 0-3 and never moves on 4 (offset 0) and 5 (no commit).
async fn stalled_cluster(
    stop: &Arc<AtomicBool>,
) -> (Arc<FakeCluster>, tokio::task::JoinHandle<()>) {
    let cluster = Arc::new(
        FakeCluster::builder()
            .brokers(2)
            .topic(TOPIC, PARTITIONS)
            .build()
            .await,
    );
    let seed = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    for p in 0..PARTITIONS {
        for i in 0..1_000 {
            let _delivery = seed
                .send(
                    Record::new(TOPIC)
                        .partition(p)
                        .value(format!("backlog {i}")),
                )
                .await
                .unwrap();
        }
    }
    seed.flush().await.unwrap();
    seed.close(Duration::from_secs(5)).await.unwrap();
    cluster.commit_offset(GROUP, TOPIC, STALLED[0], 0);
    // Caught up before the monitor's first look.
    for p in (0..PARTITIONS).filter(|p| !STALLED.contains(p)) {
        cluster.commit_offset(GROUP, TOPIC, p, cluster.high_watermark(TOPIC, p));
    }
    let consumers = {
        let cluster = Arc::clone(&cluster);
        let stop = Arc::clone(stop);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for p in (0..PARTITIONS).filter(|p| !STALLED.contains(p)) {
                    cluster.commit_offset(GROUP, TOPIC, p, cluster.high_watermark(TOPIC, p));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    (cluster, consumers)
}

/// The standalone monitor: collects from the cluster, publishes to Redis.
fn monitor(cluster: &FakeCluster, redis: &RedisServer) -> HealthManager {
    HealthManager::start(
        SmartConfig::new(GROUP)
            .topics([TOPIC])
            .refresh_interval(Duration::from_millis(100))
            .publish_to(Arc::new(redis.cache())),
        ClientConfig::new(&cluster.bootstrap_servers()),
    )
    .unwrap()
}

/// A producer taking health from Redis through a hybrid cache of its own.
async fn reader(cluster: &FakeCluster, redis: &RedisServer, seed: u64) -> Producer {
    let cache = HybridCache::new(
        LocalCache::new(16, Duration::from_millis(50)),
        Arc::new(redis.cache()),
    );
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .batch_size(1024)
        .linger(Duration::from_millis(1))
        .seed(seed)
        .smart_partitioner(
            SmartConfig::new(GROUP)
                .topics([TOPIC])
                .refresh_interval(Duration::from_millis(100))
                .max_age(Duration::from_secs(60))
                .cache(Arc::new(cache)),
        )
        .build()
        .await
        .unwrap();
    let healthy = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(h) = producer.healthy_partitions(TOPIC) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("health from Redis within 10 s");
    assert_eq!(healthy, vec![0, 1, 2, 3]);
    producer
}

/// Sends `records` keyless records; every send and delivery must succeed.
/// Returns the records per partition.
async fn produce(producer: &Producer, tag: &str, records: usize) -> Vec<usize> {
    let mut deliveries = Vec::with_capacity(records);
    for i in 0..records {
        let record = Record::new(TOPIC).value(format!("{tag} {i:05} {}", "x".repeat(80)));
        deliveries.push(producer.send(record).await.expect("every send succeeds"));
    }
    producer.flush().await.expect("flush");
    let mut counts = vec![0; PARTITIONS as usize];
    for d in deliveries {
        let metadata = d.await.expect("every record is delivered");
        counts[metadata.partition as usize] += 1;
    }
    counts
}

/// The stalled partitions' share of `records` with the standard partitioner
/// (their 1/6 shares).
fn standard_share(records: usize) -> f64 {
    records as f64 * STALLED.len() as f64 / f64::from(PARTITIONS)
}

fn to_stalled(counts: &[usize]) -> usize {
    STALLED.iter().map(|p| counts[*p as usize]).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_producers_share_the_health_one_monitor_publishes_to_redis() {
    const RECORDS: usize = 1_500;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis.ready().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (cluster, consumers) = stalled_cluster(&stop).await;
    let monitor = monitor(&cluster, &redis);

    let (a, b) = tokio::join!(reader(&cluster, &redis, 1), reader(&cluster, &redis, 2));
    let (by_a, by_b) = tokio::join!(produce(&a, "a", RECORDS), produce(&b, "b", RECORDS));
    println!("producer a: {by_a:?}, producer b: {by_b:?}");
    for (name, counts, producer) in [("a", &by_a, &a), ("b", &by_b, &b)] {
        assert_eq!(counts.iter().sum::<usize>(), RECORDS);
        let stalled = to_stalled(counts);
        assert!(
            (stalled as f64) < 0.05 * standard_share(RECORDS),
            "producer {name} sent {stalled} of {RECORDS} to the stalled partitions: {counts:?}"
        );
        let routing = producer.routing_stats().unwrap();
        assert!(!routing.cache_unavailable, "{name}: {routing:?}");
        assert_eq!(routing.cache_failures, 0, "{name}: {routing:?}");
        assert!(
            routing.routed_by_health as f64 >= 0.95 * RECORDS as f64,
            "{name}: {routing:?}"
        );
        let summary = producer.health_summary().unwrap();
        assert_eq!(summary.topic(TOPIC).unwrap().unhealthy, vec![4, 5]);
    }

    // What the producers read is what the monitor wrote.
    let cached = redis
        .cache()
        .get(TOPIC)
        .await
        .unwrap()
        .expect("health in Redis");
    assert_eq!(cached.lags.len(), PARTITIONS as usize);
    assert!(
        cached
            .lags
            .iter()
            // The stalled partitions keep their whole backlog; the others
            // are behind by the records in flight at most.
            .all(|l| if STALLED.contains(&l.partition) {
                l.lag >= 1_000
            } else {
                l.lag < 500
            }),
        "{cached:?}"
    );
    assert!(!monitor.counters().stats().cache_unavailable);

    a.close(Duration::from_secs(5)).await.unwrap();
    b.close(Duration::from_secs(5)).await.unwrap();
    monitor.stop();
    stop.store(true, Ordering::Relaxed);
    consumers.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_mid_run_keeps_both_producers_producing_with_local_health() {
    const RECORDS: usize = 600;
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    redis.ready().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (cluster, consumers) = stalled_cluster(&stop).await;
    let monitor = monitor(&cluster, &redis);
    let (a, b) = tokio::join!(reader(&cluster, &redis, 1), reader(&cluster, &redis, 2));

    let (before_a, before_b) = tokio::join!(produce(&a, "a", RECORDS), produce(&b, "b", RECORDS));
    redis.kill();

    // Both producers (and the monitor) notice within a few refreshes.
    tokio::time::timeout(Duration::from_secs(10), async {
        while ![&a, &b]
            .iter()
            .all(|p| p.routing_stats().unwrap().cache_unavailable)
            || !monitor.counters().stats().cache_unavailable
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cache is reported unavailable within 10 s");

    let (after_a, after_b) = tokio::join!(produce(&a, "a2", RECORDS), produce(&b, "b2", RECORDS));
    println!("before: {before_a:?} {before_b:?}; after the kill: {after_a:?} {after_b:?}");
    for (name, counts, producer) in [("a", &after_a, &a), ("b", &after_b, &b)] {
        assert_eq!(counts.iter().sum::<usize>(), RECORDS);
        // Still routed by the health held locally.
        let stalled = to_stalled(counts);
        assert!(
            (stalled as f64) < 0.05 * standard_share(RECORDS),
            "producer {name} sent {stalled} to the stalled partitions after the kill: {counts:?}"
        );
        let routing = producer.routing_stats().unwrap();
        assert!(routing.cache_unavailable, "{name}: {routing:?}");
        assert!(routing.cache_failures >= 1, "{name}: {routing:?}");
        assert_eq!(routing.fallback(), 0, "{name}: {routing:?}");
        assert_eq!(producer.healthy_partitions(TOPIC), Some(vec![0, 1, 2, 3]));
    }
    // The monitor keeps collecting for itself.
    assert_eq!(monitor.healthy_partitions(TOPIC), Some(vec![0, 1, 2, 3]));

    a.close(Duration::from_secs(5)).await.unwrap();
    b.close(Duration::from_secs(5)).await.unwrap();
    monitor.stop();
    stop.store(true, Ordering::Relaxed);
    consumers.await.unwrap();
}
