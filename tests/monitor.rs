//! The `smartkafka-monitor` binary end to end: run as a child process
//! against the in-process fake cluster and a real `redis-server`, it watches
//! a consumer group (our group consumer, committing what it reads with a
//! processing report), and two producers route by the health it publishes
//! to Redis; the reports reach the monitor's page and both producers. When the consumer
//! stops committing on two partitions, the monitor's Prometheus page shows
//! their lag growing and them unhealthy, both producers' keyless records
//! leave them (counted from the partitions' end offsets, not from the
//! producers), and SIGTERM stops the monitor with status 0.
//!
//! Without `redis-server` the end-to-end test is skipped with a message,
//! unless `CI` is set: then a missing binary fails it.
#![cfg(all(feature = "monitor", unix))]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use protocol_tests::FakeCluster;
use smartkafka::consumer::{AutoOffsetReset, Consumer, ConsumerConfig, OffsetToCommit};
use smartkafka::health::{HybridCache, LocalCache, ProcessingReport, RedisCache, SmartConfig};
use smartkafka::{AdminClient, ClientConfig, OffsetSpec, Producer, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const MONITOR: &str = env!("CARGO_BIN_EXE_smartkafka-monitor");
const TOPIC: &str = "hot";
const GROUP: &str = "readers";
const PARTITIONS: i32 = 6;
const SLOW: [i32; 2] = [4, 5];
/// Lag at which a partition scores 0.0; unhealthy from half of it.
const MAX_LAG: u64 = 400;

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "smartkafka-monitor-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed when dropped (a failed test leaves none behind).
struct Killed(Option<Child>);

impl Killed {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `redis-server` on a free loopback port, or `None` (after saying so)
/// when the binary is missing outside CI.
fn start_redis(dir: &TempDir) -> Option<(Killed, String)> {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI is set: install it (apt-get install redis-server)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: redis-server is not installed; install it (apt-get install redis-server) to run the monitor's end-to-end test"
        );
        return None;
    }
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    Some((Killed(Some(child)), format!("redis://127.0.0.1:{port}/")))
}

/// Waits until the Redis server answers.
async fn redis_ready(url: &str) {
    let probe = RedisCache::new(url)
        .unwrap()
        .key_prefix("probe:")
        .timeout(Duration::from_millis(200));
    let health = smartkafka::health::CachedHealth::new("ready", 0, Vec::new());
    for _ in 0..200 {
        if smartkafka::health::HealthCache::put(&probe, &health)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server at {url} did not answer within 5 s");
}

/// The monitor's page, parsed; `None` while it does not answer yet.
async fn scrape(addr: SocketAddr) -> Option<Scrape> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Some(Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format"))
}

/// The value of `metric` for `partition` of the watched topic and group.
fn partition_value(scrape: &Scrape, metric: &str, partition: i32) -> Option<f64> {
    let partition = partition.to_string();
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| {
            s.labels.get("group") == Some(GROUP)
                && s.labels.get("topic") == Some(TOPIC)
                && s.labels.get("partition") == Some(partition.as_str())
        })
        .map(|s| match s.value {
            Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric}: not a gauge: {other:?}"),
        })
        .collect();
    assert!(found.len() <= 1, "{metric} {partition}: {found:?}");
    found.first().copied()
}

/// Scrapes until `done` holds for a page, for at most `limit`.
async fn scrape_until(
    addr: SocketAddr,
    limit: Duration,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(page) = scrape(addr).await {
            if done(&page) {
                return page;
            }
            last = Some(page);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples: Vec<String> = last
        .map(|p| {
            p.samples
                .iter()
                .filter(|s| s.metric.starts_with("smartkafka_monitor_partition"))
                .map(|s| format!("{} {:?} {:?}", s.metric, s.labels, s.value))
                .collect()
        })
        .unwrap_or_default();
    panic!("{what} not seen within {limit:?}; last page: {samples:#?}");
}

/// Our group consumer, reading the topic and committing what it read,
/// except on [`SLOW`] once `slow` is set, each commit carrying the
/// partition's [`reported`] processing time. Counts its assigned
/// partitions into `assigned`.
fn consume(
    bootstrap: String,
    slow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    assigned: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = ConsumerConfig::new(&bootstrap, GROUP)
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .enable_auto_commit(false);
        let mut consumer = Consumer::new(config).await.expect("the consumer starts");
        consumer.subscribe(&[TOPIC]).unwrap();
        while !stop.load(Ordering::Relaxed) {
            consumer
                .poll(Duration::from_millis(50))
                .await
                .expect("poll");
            let assignment = consumer.assignment();
            assigned.store(assignment.len(), Ordering::Relaxed);
            let slow_now = slow.load(Ordering::Relaxed);
            let commits: Vec<OffsetToCommit> = assignment
                .iter()
                .filter(|(_, p)| !(slow_now && SLOW.contains(p)))
                .filter_map(|(t, p)| {
                    consumer.position(t, *p).map(|next| OffsetToCommit {
                        metadata: Some(reported(*p).to_metadata()),
                        ..OffsetToCommit::new(t.clone(), *p, next)
                    })
                })
                .collect();
            if !commits.is_empty() {
                consumer.commit_offsets(&commits).await.expect("commit");
            }
        }
        consumer.close().await.unwrap();
    })
}

/// What the consumer reports of its processing on `partition`: 200 us a
/// record plus 100 us per partition number, so each partition's report is
/// its own.
fn reported(partition: i32) -> ProcessingReport {
    let micros = 200 + 100 * u64::try_from(partition).unwrap();
    ProcessingReport::new(Duration::from_micros(micros), 100)
}

/// A producer that takes its health from Redis (published by the monitor)
/// and collects nothing itself.
async fn producer(bootstrap: &str, redis_url: &str, seed: u64) -> Producer {
    let cache = HybridCache::new(
        LocalCache::new(16, Duration::from_millis(50)),
        Arc::new(
            RedisCache::new(redis_url)
                .unwrap()
                .timeout(Duration::from_millis(500)),
        ),
    );
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .linger(Duration::from_millis(1))
        .batch_size(1024)
        .seed(seed)
        .smart_partitioner(
            SmartConfig::new(GROUP)
                .topics([TOPIC])
                .max_lag_for_health(MAX_LAG)
                .refresh_interval(Duration::from_millis(200))
                .max_age(Duration::from_secs(10))
                .cache(Arc::new(cache)),
        )
        .build()
        .await
        .unwrap()
}

/// Until `stop`, keyless records from `producer`, about a thousand a second.
fn traffic(
    producer: Producer,
    tag: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10 {
                let _delivery = producer
                    .send(Record::new(TOPIC).value(format!("{tag} {i}")))
                    .await
                    .expect("send");
                i += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        producer.flush().await.expect("flush");
    })
}

/// `records` keyless records, paced, every delivery awaited.
async fn produce_paced(producer: &Producer, tag: &str, records: usize) {
    let mut deliveries = Vec::with_capacity(records);
    for i in 0..records {
        deliveries.push(
            producer
                .send(Record::new(TOPIC).value(format!("{tag} {i}")))
                .await
                .expect("send"),
        );
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivered");
    }
}

async fn end_offsets(admin: &AdminClient) -> BTreeMap<i32, i64> {
    admin
        .list_offsets(TOPIC, OffsetSpec::Latest)
        .await
        .expect("end offsets")
}

async fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("the monitor's status") {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_steers_two_producers_away_from_a_slow_consumer_and_stops_on_sigterm() {
    let dir = TempDir::new("e2e");
    let Some((_redis, redis_url)) = start_redis(&dir) else {
        return;
    };
    redis_ready(&redis_url).await;
    let cluster = FakeCluster::builder()
        .topic(TOPIC, PARTITIONS)
        .group_initial_rebalance_delay(Duration::from_millis(50))
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();

    let slow = Arc::new(AtomicBool::new(false));
    let stop_consumer = Arc::new(AtomicBool::new(false));
    let assigned = Arc::new(AtomicUsize::new(0));
    let consumer = consume(
        bootstrap.clone(),
        Arc::clone(&slow),
        Arc::clone(&stop_consumer),
        Arc::clone(&assigned),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while assigned.load(Ordering::Relaxed) != PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "the consumer owns every partition within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut monitor = Killed(Some(
        Command::new(MONITOR)
            .args(["--bootstrap-servers", &bootstrap])
            .args(["--group", GROUP, "--topic", TOPIC])
            .args(["--redis-url", &redis_url])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--refresh-interval-ms", "500"])
            .args(["--max-lag-for-health", &MAX_LAG.to_string()])
            .stdout(std::fs::File::create(dir.path("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path("stderr")).unwrap())
            .spawn()
            .expect("the monitor starts"),
    ));
    let all_healthy = |page: &Scrape| {
        (0..PARTITIONS)
            .all(|p| partition_value(page, "smartkafka_monitor_partition_healthy", p) == Some(1.0))
    };
    scrape_until(
        metrics,
        Duration::from_secs(10),
        "every partition healthy",
        all_healthy,
    )
    .await;

    // The consumer's processing reports, read from its commits by the
    // monitor, are on the page.
    let reports_shown = |page: &Scrape| {
        (0..PARTITIONS).all(|p| {
            partition_value(page, "smartkafka_monitor_partition_reported_capacity", p)
                .is_some_and(|c| (c - reported(p).capacity()).abs() < 0.5)
        })
    };
    scrape_until(
        metrics,
        Duration::from_secs(10),
        "every partition's reported capacity",
        reports_shown,
    )
    .await;

    let (a, b) = tokio::join!(
        producer(&bootstrap, &redis_url, 1),
        producer(&bootstrap, &redis_url, 2)
    );
    let every: Vec<i32> = (0..PARTITIONS).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&a, &b]
        .iter()
        .any(|p| p.healthy_partitions(TOPIC).as_ref() != Some(&every))
    {
        assert!(
            Instant::now() < deadline,
            "both producers read the monitor's health within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The reports reached both producers through Redis unchanged.
    for producer in [&a, &b] {
        let summary = producer.health_summary().expect("smart partitioning");
        let snapshot = summary.topics[0].snapshot.as_ref().expect("health");
        for p in snapshot.partitions() {
            assert_eq!(
                p.lag.processing,
                Some(reported(p.partition())),
                "partition {}",
                p.partition()
            );
        }
    }

    // Records keep arriving on every partition; the consumer keeps up.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let senders = [
        traffic(a.clone(), "a", Arc::clone(&stop_traffic)),
        traffic(b.clone(), "b", Arc::clone(&stop_traffic)),
    ];
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = scrape_until(
        metrics,
        Duration::from_secs(10),
        "every partition healthy",
        all_healthy,
    )
    .await;

    // The consumer turns slow on two partitions: it stops committing there.
    slow.store(true, Ordering::Relaxed);
    let stalled = |page: &Scrape| {
        SLOW.iter()
            .all(|p| partition_value(page, "smartkafka_monitor_partition_healthy", *p) == Some(0.0))
    };
    let after = scrape_until(
        metrics,
        Duration::from_secs(10),
        "the slow partitions unhealthy",
        stalled,
    )
    .await;
    for p in SLOW {
        let lag = |page| partition_value(page, "smartkafka_monitor_partition_lag", p).unwrap();
        assert!(
            lag(&after) > lag(&before) && lag(&after) >= (MAX_LAG / 2) as f64,
            "partition {p}: lag {} before, {} after",
            lag(&before),
            lag(&after)
        );
        assert!(partition_value(&after, "smartkafka_monitor_partition_score", p).unwrap() <= 0.5);
    }

    // Both producers learn it from Redis.
    let keeping_up: Vec<i32> = (0..PARTITIONS).filter(|p| !SLOW.contains(p)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&a, &b]
        .iter()
        .any(|p| p.healthy_partitions(TOPIC).as_ref() != Some(&keeping_up))
    {
        assert!(
            Instant::now() < deadline,
            "the producers see {:?} / {:?}",
            a.healthy_partitions(TOPIC),
            b.healthy_partitions(TOPIC)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_traffic.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    // Where their next records land, read from the log's end offsets.
    const RECORDS: usize = 1_000;
    let admin = AdminClient::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    let start = end_offsets(&admin).await;
    tokio::join!(
        produce_paced(&a, "a2", RECORDS),
        produce_paced(&b, "b2", RECORDS)
    );
    let end = end_offsets(&admin).await;
    let landed: BTreeMap<i32, i64> = end.iter().map(|(p, e)| (*p, e - start[p])).collect();
    println!("records per partition after the shift: {landed:?}");
    assert_eq!(
        landed.values().sum::<i64>(),
        2 * RECORDS as i64,
        "{landed:?}"
    );
    let to_slow: i64 = SLOW.iter().map(|p| landed[p]).sum();
    // An even spread would give them a third (about 667).
    assert!(
        to_slow < 35,
        "{to_slow} of {} records went to the slow partitions: {landed:?}",
        2 * RECORDS
    );
    // The slow partitions' commits stood still meanwhile.
    let page = scrape(metrics).await.expect("the page");
    for p in SLOW {
        let committed =
            |page| partition_value(page, "smartkafka_monitor_partition_committed_offset", p);
        assert_eq!(committed(&page), committed(&after), "partition {p}");
    }

    // SIGTERM: the monitor stops with status 0.
    let pid = monitor.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_for_exit(monitor.child(), Duration::from_secs(5))
        .await
        .expect("the monitor exits within 5 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    let stderr = std::fs::read_to_string(dir.path("stderr")).unwrap();
    assert!(stderr.contains("SIGTERM, stopping"), "{stderr}");
    // Not a terminal: the table was written as plain lines.
    let stdout = std::fs::read_to_string(dir.path("stdout")).unwrap();
    for p in SLOW {
        assert!(
            stdout.contains(&format!("group={GROUP} topic={TOPIC} partition={p} "))
                && stdout.lines().any(
                    |l| l.contains(&format!("partition={p} ")) && l.contains(" healthy=false ")
                ),
            "{stdout}"
        );
    }
    assert!(!stdout.contains('\x1b'), "no colours outside a terminal");

    a.close(Duration::from_secs(5)).await.unwrap();
    b.close(Duration::from_secs(5)).await.unwrap();
    stop_consumer.store(true, Ordering::Relaxed);
    consumer.await.unwrap();
}

/// Runs the monitor with `config` as its file; returns its status and
/// stderr.
fn run_with_file(dir: &Path, config: &str, flags: &[&str]) -> (ExitStatus, String) {
    let file = dir.join("monitor.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(MONITOR)
        .arg("--config")
        .arg(&file)
        .args(flags)
        .output()
        .expect("the monitor runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_configuration_is_refused_at_start_naming_the_key() {
    let dir = TempDir::new("bad");
    let good = "bootstrap_servers = \"127.0.0.1:9\"\n[[groups]]\nname = \"g\"\ntopics = [\"t\"]\n";
    for (config, flags, key) in [
        (
            format!("health_threshold = 1.5\n{good}"),
            &[][..],
            "`health_threshold`",
        ),
        (
            format!("refresh_interval_ms = 0\n{good}"),
            &[],
            "`refresh_interval_ms`",
        ),
        (format!("threshold = 0.3\n{good}"), &[], "`threshold`"),
        (
            format!("max_lag_for_health = \"lots\"\n{good}"),
            &[],
            "`max_lag_for_health`",
        ),
        (
            "bootstrap_servers = \"127.0.0.1:9\"\n[[groups]]\nname = \"g\"\n".to_owned(),
            &[],
            "`groups[0].topics`",
        ),
        (
            good.to_owned(),
            &["--metrics-addr", "not-an-address"][..],
            "`metrics_addr`",
        ),
    ] {
        let (status, stderr) = run_with_file(&dir.0, &config, flags);
        assert_eq!(status.code(), Some(2), "{config}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid configuration {key}")),
            "{config}: {stderr}"
        );
    }
}
