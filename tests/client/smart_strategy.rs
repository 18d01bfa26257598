//! `PartitionStrategy::Smart`, configured like the other strategies: in
//! code with `ProducerBuilder::partitioner`, and by name from string
//! properties (`partitioner=smart` and the `smart.*` keys). Either way the
//! producer runs its health manager and keyless records avoid the
//! partitions whose consumers stalled, as the broker's log shows.

use std::sync::Arc;
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::health::SmartConfig;
use smartkafka::partitioner::PartitionStrategy;
use smartkafka::{Producer, ProducerConfig, Record};

const TOPIC: &str = "named";
const GROUP: &str = "named-readers";
const PARTITIONS: i32 = 6;
const STALLED: [i32; 2] = [4, 5];

/// A backlog of 500 records everywhere (the tests count 100 as fully
/// lagging); the group is caught up on partitions 0-3 and
/// never moved on 4 (offset 0) and 5 (no commit).
async fn stalled_cluster() -> Arc<FakeCluster> {
    let cluster = Arc::new(
        FakeCluster::builder()
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
        for i in 0..500 {
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
    for p in (0..PARTITIONS).filter(|p| !STALLED.contains(p)) {
        cluster.commit_offset(GROUP, TOPIC, p, cluster.high_watermark(TOPIC, p));
    }
    cluster
}

/// Sends `records` keyless records once the producer has health, and
/// returns how many each partition's log gained.
async fn send_keyless(cluster: &FakeCluster, producer: &Producer, records: usize) -> Vec<i64> {
    let healthy = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(h) = producer.healthy_partitions(TOPIC) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("health within 10 s");
    assert_eq!(healthy, vec![0, 1, 2, 3]);
    let ends = |c: &FakeCluster| -> Vec<i64> {
        (0..PARTITIONS)
            .map(|p| c.high_watermark(TOPIC, p))
            .collect()
    };
    let before = ends(cluster);
    let mut deliveries = Vec::with_capacity(records);
    for i in 0..records {
        let record = Record::new(TOPIC).value(format!("keyless {i:05} {}", "x".repeat(80)));
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.unwrap();
    for d in deliveries {
        d.await.expect("delivered");
    }
    ends(cluster)
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect()
}

fn assert_avoids_the_stalled(added: &[i64], records: usize) {
    assert_eq!(added.iter().sum::<i64>(), records as i64, "{added:?}");
    let to_stalled: i64 = STALLED.iter().map(|p| added[*p as usize]).sum();
    let standard_share = records as f64 * STALLED.len() as f64 / f64::from(PARTITIONS);
    assert!(
        (to_stalled as f64) < 0.05 * standard_share,
        "{to_stalled} of {records} went to the stalled partitions: {added:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_strategy_is_configured_in_code_like_the_others() {
    const RECORDS: usize = 600;
    let cluster = stalled_cluster().await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .batch_size(1024)
        .linger(Duration::from_millis(1))
        .seed(5)
        .partitioner(PartitionStrategy::smart(
            SmartConfig::new(GROUP)
                .topics([TOPIC])
                .max_lag_for_health(100)
                .refresh_interval(Duration::from_millis(100)),
        ))
        .build()
        .await
        .unwrap();
    let added = send_keyless(&cluster, &producer, RECORDS).await;
    println!("smart in code: {added:?}");
    assert_avoids_the_stalled(&added, RECORDS);
    let summary = producer.health_summary().expect("a health manager runs");
    assert_eq!(summary.topic(TOPIC).unwrap().unhealthy, STALLED.to_vec());
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_strategy_is_named_in_properties() {
    const RECORDS: usize = 600;
    let cluster = stalled_cluster().await;
    let servers = cluster.bootstrap_servers();
    let config = ProducerConfig::from_properties([
        ("bootstrap.servers", servers.as_str()),
        ("batch.size", "1024"),
        ("linger.ms", "1"),
        ("partitioner", "smart"),
        ("smart.group", GROUP),
        ("smart.topics", TOPIC),
        ("smart.refresh.interval.ms", "100"),
        ("smart.max.lag.for.health", "100"),
        ("smart.fallback", "round_robin"),
    ])
    .expect("valid properties");
    let smart = config.partitioner.smart_config().expect("smart by name");
    assert_eq!(smart.fallback.name(), "RoundRobin");
    let producer = Producer::new(config.seed(6)).await.unwrap();
    let added = send_keyless(&cluster, &producer, RECORDS).await;
    println!("smart by name: {added:?}");
    assert_avoids_the_stalled(&added, RECORDS);
    assert!(producer.routing_stats().unwrap().routed_by_health as f64 >= 0.95 * RECORDS as f64);
    producer.close(Duration::from_secs(5)).await.unwrap();

    // The standard strategy, for contrast, gives the stalled partitions
    // their share.
    let standard = Producer::builder()
        .bootstrap_servers(&servers)
        .batch_size(1024)
        .linger(Duration::from_millis(1))
        .partitioner(PartitionStrategy::RoundRobin)
        .build()
        .await
        .unwrap();
    assert!(standard.health_summary().is_none());
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        deliveries.push(
            standard
                .send(Record::new(TOPIC).value(format!("rr {i}")))
                .await
                .unwrap(),
        );
    }
    standard.flush().await.unwrap();
    let mut to_stalled = 0;
    for d in deliveries {
        if STALLED.contains(&d.await.unwrap().partition) {
            to_stalled += 1;
        }
    }
    assert_eq!(to_stalled, RECORDS / 3, "round robin spreads evenly");
    standard.close(Duration::from_secs(5)).await.unwrap();
}
