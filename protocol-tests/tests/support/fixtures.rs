//! The setups the producer suites repeat: a fake cluster with one topic, a
//! producer that retries quickly, a transactional producer, and a first
//! record that warms a producer up.

use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::{Producer, ProducerBuilder, Record};

/// A fake cluster of `brokers` brokers with one topic of `partitions`
/// partitions.
pub async fn cluster(brokers: usize, topic: &str, partitions: i32) -> FakeCluster {
    FakeCluster::builder()
        .brokers(brokers)
        .topic(topic, partitions)
        .build()
        .await
}

/// A producer builder for `bootstrap` that retries after 20 ms, backing
/// off to 100 ms at most, so fault tests do not wait on defaults.
pub fn quick_retries(bootstrap: &str) -> ProducerBuilder {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .retry_backoff(Duration::from_millis(20))
        .retry_backoff_max(Duration::from_millis(100))
}

/// Sends the value `warm-up` to topic `t` (to `partition` when given) and
/// waits for it, so metadata and connections are in place before a test
/// injects its faults.
pub async fn warm_up(producer: &Producer, partition: Option<i32>) {
    let mut record = Record::new("t").value("warm-up");
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    producer.send_and_wait(record).await.unwrap();
}

/// A transactional producer for `bootstrap` with the transactional id `id`,
/// lingering `linger`, retrying after 20 ms and blocking at most 20 s.
pub async fn transactional(bootstrap: &str, id: &str, linger: Duration) -> Producer {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .transactional_id(id)
        .linger(linger)
        .retry_backoff(Duration::from_millis(20))
        .max_block(Duration::from_secs(20))
        .build()
        .await
        .unwrap()
}
