//! Testing your own code against the in-process cluster of `protocol-tests`:
//! the example the README's "Testing your code against an in-process cluster"
//! section shows. Start a cluster, point a producer at it, inject a fault and
//! read back what the cluster stored.

use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::{FakeCluster, Fault};
use smartkafka::protocol::ApiKey;
use smartkafka::{Producer, Record};

/// The code under test: sends one order and returns its offset.
async fn publish_order(producer: &Producer, id: &str) -> smartkafka::Result<i64> {
    let record = Record::new("orders")
        .key(id.to_string())
        .value(format!("order {id}"));
    Ok(producer.send_and_wait(record).await?.offset)
}

#[tokio::test]
async fn a_leader_change_mid_send_is_retried_and_the_order_stored_once() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("orders", 1)
        .build()
        .await;
    // The first Produce answers NOT_LEADER_OR_FOLLOWER, as during a leader election.
    cluster.inject(Fault::new(ApiKey::Produce).error(ResponseError::NotLeaderOrFollower));

    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    let offset = publish_order(&producer, "o-1").await.unwrap();

    assert_eq!(cluster.triggered_faults(), 1);
    assert!(producer.stats().retries >= 1, "{:?}", producer.stats());
    let stored = cluster.records("orders", 0);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].offset, offset);
    assert_eq!(stored[0].key.as_deref(), Some(&b"o-1"[..]));
    assert_eq!(stored[0].value.as_deref(), Some(&b"order o-1"[..]));
}
