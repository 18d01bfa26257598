//! The hot-partition test: a consumer group keeps up on four partitions of
//! a six-partition topic and stalls on two. The standard partitioner keeps
//! sending the stalled partitions their share of new keyless records; the
//! smart partitioner, after its first refresh, sends them almost nothing.
//!
//! Also checks the built-in lag collector against rust-rdkafka's view of the
//! same group's committed offsets and the partitions' watermarks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use protocol_tests::FakeCluster;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use smartkafka::health::{KafkaLagCollector, LagCollector, MissingCommit, SmartConfig};
use smartkafka::partitioner::PartitionStrategy;
use smartkafka::{ClientConfig, Producer, Record};

const TOPIC: &str = "hot";
const GROUP: &str = "readers";
const PARTITIONS: i32 = 6;
const STALLED: [i32; 2] = [4, 5];
const RECORDS: usize = 3_000;

fn is_stalled(p: i32) -> bool {
    STALLED.contains(&p)
}

fn ends(cluster: &FakeCluster) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| cluster.high_watermark(TOPIC, p))
        .collect()
}

/// The group's consumers: committing the end of every healthy partition
/// every few milliseconds, never committing the stalled ones past offset 0
/// (partition 4) or at all (partition 5).
fn start_consumers(
    cluster: &Arc<FakeCluster>,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let cluster = Arc::clone(cluster);
    let stop = Arc::clone(stop);
    cluster.commit_offset(GROUP, TOPIC, STALLED[0], 0);
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            for p in (0..PARTITIONS).filter(|p| !is_stalled(*p)) {
                let end = cluster.high_watermark(TOPIC, p);
                cluster.commit_offset(GROUP, TOPIC, p, end);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Sends `RECORDS` keyless records and returns how many landed per partition.
async fn produce_keyless(cluster: &FakeCluster, producer: &Producer) -> Vec<i64> {
    let before = ends(cluster);
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = Record::new(TOPIC).value(format!("record {i:05} {}", "x".repeat(80)));
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    ends(cluster)
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_partitions_get_almost_nothing_from_the_smart_partitioner() {
    let cluster = Arc::new(
        FakeCluster::builder()
            .brokers(3)
            .topic(TOPIC, PARTITIONS)
            .build()
            .await,
    );
    let bootstrap = cluster.bootstrap_servers();
    let stop = Arc::new(AtomicBool::new(false));
    let consumers = start_consumers(&cluster, &stop);

    // A backlog on every partition, so the stalled ones are far behind.
    let seed = Producer::builder()
        .bootstrap_servers(&bootstrap)
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

    // The standard partitioner: a small batch size switches the sticky
    // partition often, so the spread is even.
    let standard = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .batch_size(1024)
        .linger(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let by_standard = produce_keyless(&cluster, &standard).await;
    standard.close(Duration::from_secs(5)).await.unwrap();

    // The smart partitioner, once its first refresh is in.
    let smart = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .batch_size(1024)
        .linger(Duration::from_millis(1))
        .smart_partitioner(
            SmartConfig::new(GROUP)
                .topics([TOPIC])
                .refresh_interval(Duration::from_millis(100))
                .max_age(Duration::from_secs(5)),
        )
        .build()
        .await
        .unwrap();
    let mut updates = smart.health_stream().unwrap().topic(TOPIC);
    let first = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("a first refresh within 10 s")
        .expect("the manager is running");
    assert_eq!(first.healthy_partitions(), vec![0, 1, 2, 3], "{first:?}");
    assert_eq!(first.get(5).unwrap().lag.committed, None);
    let by_smart = produce_keyless(&cluster, &smart).await;

    let stalled = |counts: &[i64]| STALLED.iter().map(|p| counts[*p as usize]).sum::<i64>();
    let (standard_stalled, smart_stalled) = (stalled(&by_standard), stalled(&by_smart));
    println!("standard: {by_standard:?}, smart: {by_smart:?}");
    assert_eq!(by_standard.iter().sum::<i64>(), RECORDS as i64);
    assert_eq!(by_smart.iter().sum::<i64>(), RECORDS as i64);
    // The standard partitioner gives the two stalled partitions about a
    // third of the records…
    assert!(
        standard_stalled as f64 > 0.25 * RECORDS as f64,
        "standard sent {standard_stalled} to the stalled partitions: {by_standard:?}"
    );
    // …the smart one under 5 % of that.
    assert!(
        (smart_stalled as f64) < 0.05 * standard_stalled as f64,
        "smart sent {smart_stalled} to the stalled partitions (standard {standard_stalled}): {by_smart:?}"
    );

    let routing = smart.routing_stats().unwrap();
    assert_eq!(
        routing.fallback_no_data + routing.fallback_stale,
        0,
        "{routing:?}"
    );
    assert!(
        routing.routed_by_health as f64 >= 0.95 * RECORDS as f64,
        "{routing:?}"
    );
    let summary = smart.health_summary().unwrap();
    let hot = summary.topic(TOPIC).unwrap();
    assert_eq!(hot.unhealthy, vec![4, 5], "{hot:?}");
    assert!(summary.refreshes >= 1);
    assert_eq!(smart.healthy_partitions(TOPIC), Some(vec![0, 1, 2, 3]));

    smart.close(Duration::from_secs(5)).await.unwrap();
    assert!(!smart.health_manager().unwrap().is_running());
    // Updates collected before the close are still delivered; then the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while updates.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the producer");
    stop.store(true, Ordering::Relaxed);
    consumers.await.unwrap();
    // The last records may have arrived after the consumers' last commit.
    for p in (0..PARTITIONS).filter(|p| !is_stalled(*p)) {
        cluster.commit_offset(GROUP, TOPIC, p, cluster.high_watermark(TOPIC, p));
    }

    // The lag collector agrees with rust-rdkafka on the same cluster.
    compare_with_rdkafka(&cluster).await;
}

/// Lag by the built-in collector, checked against rdkafka's committed
/// offsets and high watermarks.
async fn compare_with_rdkafka(cluster: &FakeCluster) {
    let bootstrap = cluster.bootstrap_servers();
    let collector = KafkaLagCollector::new(ClientConfig::new(&bootstrap));
    let ours: BTreeMap<i32, _> = collector
        .collect(GROUP, TOPIC)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.partition, l))
        .collect();
    let theirs = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .create()
            .expect("rdkafka consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(TOPIC, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("rdkafka committed offsets");
        (0..PARTITIONS)
            .map(|p| {
                let offset = committed.find_partition(TOPIC, p).unwrap().offset();
                let (_, high) = consumer
                    .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                    .expect("rdkafka watermarks");
                (p, offset, high)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(ours.len(), PARTITIONS as usize);
    for (p, offset, high) in theirs {
        let lag = &ours[&p];
        assert_eq!(lag.end, high, "end offset of partition {p}");
        match offset {
            Offset::Offset(committed) => {
                assert_eq!(lag.committed, Some(committed), "partition {p}");
                assert_eq!(lag.lag, high - committed, "partition {p}");
            }
            Offset::Invalid => {
                assert_eq!(lag.committed, None, "partition {p}");
                assert_eq!(lag.lag, high, "no commit counts as fully lagging");
            }
            other => panic!("partition {p}: unexpected committed offset {other:?}"),
        }
        assert_eq!(lag.lag > 0, is_stalled(p), "partition {p}: {lag:?}");
    }
}

#[tokio::test]
async fn the_collector_speaks_the_older_coordinator_and_offset_fetch_versions() {
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic(TOPIC, 3)
        .api_versions(None, |t| {
            t.set_max(ApiKey::FindCoordinator, 3);
            t.set_max(ApiKey::OffsetFetch, 7);
        })
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    for p in 0..3 {
        for _ in 0..10 {
            let _delivery = producer
                .send(Record::new(TOPIC).partition(p).value("v"))
                .await
                .unwrap();
        }
    }
    producer.flush().await.unwrap();
    cluster.commit_offset(GROUP, TOPIC, 0, 10);
    cluster.commit_offset(GROUP, TOPIC, 1, 4);
    let client = ClientConfig::new(&cluster.bootstrap_servers());
    let lags = KafkaLagCollector::new(client.clone())
        .collect(GROUP, TOPIC)
        .await
        .unwrap();
    let figures: Vec<_> = lags
        .iter()
        .map(|l| (l.partition, l.committed, l.end, l.lag))
        .collect();
    assert_eq!(
        figures,
        vec![(0, Some(10), 10, 0), (1, Some(4), 10, 6), (2, None, 10, 10)]
    );
    let lenient = KafkaLagCollector::new(client)
        .missing_commit(MissingCommit::Healthy)
        .collect(GROUP, TOPIC)
        .await
        .unwrap();
    assert_eq!(lenient[2].lag, 0);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// One standalone monitor computes health once; two producers route by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_share_one_standalone_monitor() {
    const SHARED: &str = "shared";
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic(SHARED, 4)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let seed = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await
        .unwrap();
    for p in 0..4 {
        for _ in 0..800 {
            let _delivery = seed
                .send(Record::new(SHARED).partition(p).value("backlog"))
                .await
                .unwrap();
        }
    }
    seed.close(Duration::from_secs(5)).await.unwrap();
    // Caught up on 0-2; partition 3 has never been committed (fully lagging).
    for p in 0..3 {
        cluster.commit_offset(GROUP, SHARED, p, cluster.high_watermark(SHARED, p));
    }

    // One round only, so the records sent below do not change the picture.
    let monitor = smartkafka::health::HealthManager::start(
        SmartConfig::new(GROUP)
            .topics([SHARED])
            .refresh_interval(Duration::from_secs(3600)),
        ClientConfig::new(&bootstrap),
    )
    .unwrap();
    let healthy = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(healthy) = monitor.healthy_partitions(SHARED) {
                return healthy;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a first refresh within 10 s");
    assert_eq!(healthy, vec![0, 1, 2]);

    let before = cluster.high_watermark(SHARED, 3);
    for seed in [1, 2] {
        let producer = Producer::builder()
            .bootstrap_servers(&bootstrap)
            .batch_size(1024)
            .seed(seed)
            .partitioner(PartitionStrategy::shared(&monitor))
            .build()
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..1_000 {
            let record = Record::new(SHARED).value(format!("{seed}-{i} {}", "x".repeat(60)));
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        for d in deliveries {
            let metadata = d.await.unwrap();
            assert_ne!(metadata.partition, 3);
        }
        producer.close(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(cluster.high_watermark(SHARED, 3), before);
    let summary = monitor.summary();
    assert_eq!(
        summary.routing.routed_by_health, 2_000,
        "{:?}",
        summary.routing
    );
    assert_eq!(summary.routing.fallback(), 0);
    assert_eq!(summary.topic(SHARED).unwrap().unhealthy, vec![3]);
    monitor.stop();
    assert!(!monitor.is_running());
}
