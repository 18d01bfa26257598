//! The fake cluster's SASL listener, checked with an independent client:
//! librdkafka (through rust-rdkafka) authenticates with PLAIN, produces,
//! and reads its records back; with a wrong password it gets no metadata.
//! (SCRAM and TLS need librdkafka built with OpenSSL, which this test
//! package does not compile; the fake's SCRAM server is checked against
//! the RFC 7677 test vector instead.)

use std::time::Duration;

use protocol_tests::FakeCluster;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn config(cluster: &FakeCluster, password: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "alice")
        .set("sasl.password", password);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_authenticates_with_plain_produces_and_reads_back() {
    let cluster = FakeCluster::builder()
        .topic("events", 1)
        .sasl(&["PLAIN", "SCRAM-SHA-512"])
        .sasl_user("alice", "alice-secret")
        .build()
        .await;
    let producer: FutureProducer = config(&cluster, "alice-secret")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    for i in 0..100 {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("events").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let stored = cluster.records("events", 0);
    assert_eq!(stored.len(), 100);
    assert_eq!(stored[99].value.as_deref(), Some(&b"v99"[..]));

    let consumer: BaseConsumer = config(&cluster, "alice-secret")
        .set("group.id", "readers")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("events", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let mut read = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while read.len() < 100 && tokio::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                read.push(m.payload().unwrap().to_vec());
            }
        }
        read
    })
    .await
    .unwrap();
    assert_eq!(read.len(), 100, "records read back");
    assert_eq!(read[0], b"v0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_with_a_wrong_password_gets_nothing() {
    let cluster = FakeCluster::builder()
        .topic("events", 1)
        .sasl(&["PLAIN"])
        .sasl_user("alice", "alice-secret")
        .build()
        .await;
    let producer: FutureProducer = config(&cluster, "wrong").create().unwrap();
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some("events"), Duration::from_secs(3))
            .map(|_| ())
    })
    .await
    .unwrap();
    assert!(metadata.is_err(), "metadata without authenticating");
    // Nothing but the SASL exchange was answered.
    assert!(cluster.records("events", 0).is_empty());
}
