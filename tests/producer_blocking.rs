//! The blocking producer: the same behaviour as the async one, from plain
//! threads, and a clear error (not a deadlock) in asynchronous code.

// The clock rule is for the library's engine; these tests time the API.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
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
    assert_eq!(err.kind(), &ErrorKind::BlockingInAsyncContext, "{err}");
    assert!(err.to_string().contains("spawn_blocking"), "{err}");
}

/// Scenario 27 from plain threads: a slow broker fills the buffer, `send`
/// blocks for `max_block` and fails with a buffer-exhausted error,
/// `try_send` fails at once, and every record accepted before is delivered
/// exactly once, in order.
#[test]
fn blocking_buffer_full_blocks_then_fails_and_loses_nothing() {
    let (_rt, cluster) = fake();
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap_servers())
            .buffer_memory(64 * 1024)
            .batch_size(16 * 1024)
            .max_request_size(32 * 1024)
            .max_block(Duration::from_millis(300)),
    )
    .unwrap();
    producer
        .send_and_wait(Record::new("t").partition(0).value("warm-up"))
        .unwrap();
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .delay(Duration::from_millis(1500))
            .times(2),
    );
    let mut accepted = vec!["warm-up".to_string()];
    let mut handles = Vec::new();
    let (err, waited) = loop {
        let v = format!("v-{:04}-{}", accepted.len(), "x".repeat(1000));
        let started = Instant::now();
        match producer.send(Record::new("t").partition(0).value(v.clone())) {
            Ok(h) => {
                accepted.push(v);
                handles.push(h);
            }
            Err(e) => break (e, started.elapsed()),
        }
        assert!(accepted.len() < 1000, "the buffer never filled");
    };
    assert_eq!(err.kind(), &ErrorKind::BufferExhausted, "{err}");
    assert!(
        waited >= Duration::from_millis(250),
        "waited only {waited:?}"
    );
    let started = Instant::now();
    let err = producer
        .try_send(Record::new("t").partition(0).value("y".repeat(1000)))
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BufferExhausted);
    assert!(started.elapsed() < Duration::from_millis(50));
    for h in handles {
        h.wait().unwrap();
    }
    let logged: Vec<String> = cluster
        .records("t", 0)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(logged, accepted);
    producer.close(Duration::from_secs(5)).unwrap();
}

/// Scenario 29 from plain threads: `close(timeout)` with a broker that does
/// not answer in time fails what is left, as possibly persisted, and says
/// how many records it failed.
#[test]
fn blocking_close_at_its_deadline_fails_what_is_left() {
    let (_rt, cluster) = fake();
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap_servers())
            .request_timeout(Duration::from_secs(5))
            .delivery_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    producer
        .send_and_wait(Record::new("t").partition(2).value("warm-up"))
        .unwrap();
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .delay(Duration::from_secs(3))
            .times(1),
    );
    let handle = producer
        .send(Record::new("t").partition(2).value("late"))
        .unwrap();
    let started = Instant::now();
    let err = producer.close(Duration::from_millis(300)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let failed = handle.wait().unwrap_err();
    assert!(failed.possibly_persisted(), "{failed}");
}

/// Lag-aware partitioning from plain threads: a group that never committed
/// on partition 3 makes it unhealthy, and keyless records avoid it.
#[test]
fn blocking_smart_partitioner_avoids_a_stalled_partition() {
    let (_rt, cluster) = fake();
    for p in 0..3 {
        cluster.commit_offset("readers", "t", p, 0);
    }
    // Partition 3 has a backlog the group never read.
    let seed = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers())).unwrap();
    for i in 0..2_000 {
        seed.send(Record::new("t").partition(3).value(format!("backlog {i}")))
            .unwrap();
    }
    seed.close(Duration::from_secs(5)).unwrap();
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap_servers())
            .smart_partitioner(smartkafka::health::SmartConfig::new("readers").topics(["t"])),
    )
    .unwrap();
    let started = Instant::now();
    while producer.healthy_partitions("t") != Some(vec![0, 1, 2]) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health never arrived: {:?}",
            producer.healthy_partitions("t")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = cluster.high_watermark("t", 3);
    for i in 0..500 {
        producer
            .send(Record::new("t").value(format!("keyless {i}")))
            .unwrap();
    }
    producer.flush().unwrap();
    assert_eq!(
        cluster.high_watermark("t", 3),
        before,
        "nothing for the stalled partition"
    );
    let routing = producer.routing_stats().unwrap();
    assert_eq!(routing.routed_by_health, 500, "{routing:?}");
    assert!(producer.health_summary().is_some());
    producer.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn blocking_transactions_commit_and_abort() {
    let (_rt, cluster) = fake();
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap_servers()).transactional_id("blocking"),
    )
    .unwrap();
    producer.init_transactions().unwrap();
    producer.begin_transaction().unwrap();
    let kept = producer
        .send(Record::new("t").partition(0).value("kept"))
        .unwrap();
    producer.commit_transaction().unwrap();
    kept.wait().unwrap();
    producer.begin_transaction().unwrap();
    let dropped = producer
        .send(Record::new("t").partition(0).value("dropped"))
        .unwrap();
    producer.flush().unwrap();
    dropped.wait().unwrap();
    producer.abort_transaction().unwrap();
    let visible: Vec<Vec<u8>> = cluster
        .committed_records("t", 0)
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    assert_eq!(visible, vec![b"kept".to_vec()]);
    // Outside a transaction, a send is refused with the state named.
    let err = producer
        .send(Record::new("t").value("outside"))
        .and_then(|h| h.wait().map(|_| ()))
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidTransactionState, "{err}");
}
