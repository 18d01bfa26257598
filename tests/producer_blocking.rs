//! The blocking producer: the same behaviour as the async one, from plain
//! threads, and a clear error (not a deadlock) inside a tokio runtime.

use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::blocking::Producer;
use smartkafka::compression::Compression;
use smartkafka::partitioner::murmur2_partition;
use smartkafka::{ErrorKind, ProducerConfig, Record};

fn fake() -> (tokio::runtime::Runtime, FakeCluster) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(FakeCluster::builder().brokers(2).topic("t", 4).build());
    (rt, cluster)
}

#[test]
fn blocking_send_flush_close_round_trip() {
    let (_rt, cluster) = fake();
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap_servers()).compression(Compression::Snappy),
    )
    .unwrap();
    let mut handles = Vec::new();
    for i in 0..2_000 {
        let key = format!("k{}", i % 37);
        handles.push(
            producer
                .send(
                    Record::new("t")
                        .key(key)
                        .value(format!("{i}"))
                        .header("h", "v"),
                )
                .unwrap(),
        );
    }
    producer.flush().unwrap();
    let mut per_partition: Vec<Vec<i64>> = vec![Vec::new(); 4];
    for (i, h) in handles.into_iter().enumerate() {
        let md = h.wait().unwrap();
        let key = format!("k{}", i % 37);
        assert_eq!(md.partition, murmur2_partition(key.as_bytes(), 4).unwrap());
        per_partition[md.partition as usize].push(i as i64);
    }
    for (p, sent) in per_partition.iter().enumerate() {
        let logged: Vec<i64> = cluster
            .records("t", p as i32)
            .iter()
            .map(|r| {
                std::str::from_utf8(r.value.as_ref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(&logged, sent, "partition {p}");
    }
    let md = producer
        .send_and_wait(Record::new("t").partition(3).value("last"))
        .unwrap();
    assert_eq!(md.partition, 3);
    let results = producer
        .send_batch((0..10).map(|i| Record::new("t").partition(1).value(format!("b{i}"))))
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
    assert!(producer.stats().records_sent >= 2_011);
    producer.close(Duration::from_secs(5)).unwrap();
    let err = producer.send(Record::new("t").value("late")).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Closed);
}

#[test]
fn blocking_unknown_topic_fails_after_max_block() {
    let (_rt, cluster) = fake();
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap_servers()).max_block(Duration::from_millis(300)),
    )
    .unwrap();
    let err = producer
        .send(Record::new("missing").value("v"))
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn blocking_producer_inside_a_runtime_is_a_clear_error() {
    let err = Producer::new(ProducerConfig::new("localhost:9092")).unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
