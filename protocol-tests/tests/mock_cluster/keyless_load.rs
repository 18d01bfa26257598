//! What the smart-partitioner suites on the mock share: keyless load at a
//! steady rate, seed records on every partition, and where records went,
//! read from the log (end offsets through rust-rdkafka), not from our
//! callbacks.

use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use smartkafka::{Producer, Record};
use tokio::time::Instant;

/// A one-broker mock cluster with `topic`, its bootstrap servers, and a
/// rust-rdkafka client to read end offsets with.
pub fn mock_with_topic(
    topic: &str,
    partitions: i32,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    String,
    BaseConsumer,
) {
    let cluster = MockCluster::new(1).expect("librdkafka mock cluster");
    cluster.create_topic(topic, partitions, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let reader: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("reader");
    (cluster, bootstrap, reader)
}

/// End offsets of partitions `0..partitions` of `topic`, read with
/// rust-rdkafka.
pub fn ends(reader: &BaseConsumer, topic: &str, partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| {
            reader
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Sends keyless records to `topic` at about 2,000/s (20 every 10 ms) for
/// `how_long`, then flushes.
pub async fn send_keyless_for(producer: &Producer, topic: &str, how_long: Duration) {
    let until = Instant::now() + how_long;
    let mut i = 0u64;
    while Instant::now() < until {
        for _ in 0..20 {
            let _delivery = producer
                .send(Record::new(topic).value(format!("keyless {i}")))
                .await
                .expect("send");
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    producer.flush().await.expect("flush");
}

/// Sends 50 records to each partition of `topic`, so every partition has
/// records and commits before keyless records are routed.
pub async fn seed(producer: &Producer, topic: &str, partitions: i32) {
    for p in 0..partitions {
        for i in 0..50 {
            let _delivery = producer
                .send(Record::new(topic).partition(p).value(format!("seed {i}")))
                .await
                .expect("send");
        }
    }
}
