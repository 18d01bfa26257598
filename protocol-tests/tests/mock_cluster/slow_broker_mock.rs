//! The smart partitioner's own signal against librdkafka's mock cluster:
//! with `avoid_slow_brokers`, the partitions of a broker that answers
//! slowly (the mock's round-trip delay) draw few keyless records although
//! every consumer keeps up, and draw their share again once the broker is
//! fast; without it they draw about an even share throughout. Where
//! records went is read from the log's end offsets, not from our callbacks.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::mocking::MockCluster;
use smartkafka::Producer;
use smartkafka::health::{LagCollector, LagFuture, PartitionLag, SmartConfig};

use super::keyless_load::{ends, seed, send_keyless_for};

const TOPIC: &str = "slow-broker";
const PARTITIONS: i32 = 6;
/// Partition `p` is led by broker `p % 3 + 1`: broker 3 leads 2 and 5.
const SLOW_BROKER: i32 = 3;
const SLOW: [i32; 2] = [2, 5];
/// The slow broker's delay on every answer.
const SLOW_RTT: Duration = Duration::from_millis(100);

/// Every partition's consumers keep up: lag 0 everywhere, so consumer
/// health gives every partition the same weight and only the producer's
/// own signals tell partitions apart.
struct KeepingUp;

impl LagCollector for KeepingUp {
    fn collect<'a>(&'a self, _group: &'a str, _topic: &'a str) -> LagFuture<'a> {
        Box::pin(async {
            Ok((0..PARTITIONS)
                .map(|p| PartitionLag::from_lag(p, 0))
                .collect())
        })
    }
}

/// The share of `after - before` that landed on [`SLOW`].
fn slow_share(before: &[i64], after: &[i64]) -> f64 {
    let landed: Vec<i64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total: i64 = landed.iter().sum();
    assert!(total > 1_000, "records were sent: {landed:?}");
    let slow: i64 = SLOW.iter().map(|p| landed[*p as usize]).sum();
    println!("records per partition: {landed:?}");
    slow as f64 / total as f64
}

/// Runs keyless load with the broker slow, then fast again; returns the
/// slow partitions' share in each phase.
async fn shares(avoid_slow_brokers: bool) -> (f64, f64) {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    for p in 0..PARTITIONS {
        cluster
            .partition_leader(TOPIC, p, Some(p % 3 + 1))
            .expect("leader");
    }
    let bootstrap = cluster.bootstrap_servers();
    let reader: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("reader");
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .linger(Duration::from_millis(5))
        // Small batches, so a few seconds see many sticky choices.
        .batch_size(1024)
        .smart_partitioner(
            SmartConfig::new("readers")
                .topics([TOPIC])
                .collector(Arc::new(KeepingUp))
                .refresh_interval(Duration::from_millis(200))
                .avoid_slow_brokers(avoid_slow_brokers),
        )
        .build()
        .await
        .expect("producer");

    cluster
        .broker_round_trip_time(SLOW_BROKER, SLOW_RTT)
        .expect("delay");
    // Every partition's leader answers a few batches.
    seed(&producer, TOPIC, PARTITIONS).await;
    send_keyless_for(&producer, TOPIC, Duration::from_secs(1)).await;
    let before = ends(&reader, TOPIC, PARTITIONS);
    send_keyless_for(&producer, TOPIC, Duration::from_secs(3)).await;
    let slow = slow_share(&before, &ends(&reader, TOPIC, PARTITIONS));

    cluster
        .broker_round_trip_time(SLOW_BROKER, Duration::ZERO)
        .expect("no delay");
    // The few records still sent there bring the news: the broker answers
    // rarely, so its next answer outweighs its slow history (the average
    // forgets with the time between answers, not only per answer). At its
    // small share that answer can take a second or two; five leave room
    // for the other suites on the same two cores.
    send_keyless_for(&producer, TOPIC, Duration::from_secs(5)).await;
    let before = ends(&reader, TOPIC, PARTITIONS);
    send_keyless_for(&producer, TOPIC, Duration::from_secs(3)).await;
    let fast = slow_share(&before, &ends(&reader, TOPIC, PARTITIONS));
    producer.close(Duration::from_secs(5)).await.expect("close");
    (slow, fast)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_draws_few_keyless_records_when_asked_and_its_share_again_once_fast() {
    // Its steady load would slow the group suites' members down.
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    // Two of six partitions: an even spread gives them a third.
    let (slow, fast) = shares(true).await;
    println!("avoiding slow brokers: {slow:.3} while slow, {fast:.3} once fast");
    // (fastest + 5 ms) / (100 ms + 5 ms) weighs them about 1/17 each.
    assert!(
        slow < 0.1,
        "{slow:.3} of the records went to the slow broker"
    );
    assert!(fast > 0.2, "{fast:.3} once the broker is fast again");

    let (slow, fast) = shares(false).await;
    println!("not avoiding slow brokers: {slow:.3} while slow, {fast:.3} once fast");
    // Only the queue weight (batches held while in flight) tells them apart.
    assert!(slow > 0.2, "{slow:.3} without the option");
    assert!(fast > 0.2, "{fast:.3} without the option");
}
