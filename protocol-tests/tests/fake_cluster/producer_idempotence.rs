//! The idempotent producer (on by default) against brokers that check
//! sequences: the fake cluster (a modern broker's producer state: the last
//! five batches per producer, duplicates answered with their offset, gaps
//! refused) and the librdkafka mock. Outcomes are checked by reading the
//! logs back with `protocol_tests::Checker`: lost, duplicated, reordered and
//! phantom records.
//!
//! The chaos soak kills every connection after 0.5-1.5 s for the whole run.
//! Its size comes from `SMARTKAFKA_SOAK_RECORDS` (default 100,000); the long
//! version is
//! `SMARTKAFKA_SOAK_RECORDS=1000000 cargo test --release -p protocol-tests --test fake_cluster -- producer_idempotence::fault_25`.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use protocol_tests::{Checker, FakeCluster, Fault, Outcome};
use rdkafka::mocking::MockCluster;
use smartkafka::partitioner::murmur2_partition;
use smartkafka::{ErrorKind, Producer, Record};

const PARTITIONS: i32 = 6;

fn value(id: u64) -> String {
    format!(
        r#"{{"id":{id},"kind":"order","amount":{}}}"#,
        (id * 37) % 10_000
    )
}

fn id_of(record: &protocol_tests::StoredRecord) -> Option<u64> {
    let v = std::str::from_utf8(record.value.as_deref()?).ok()?;
    v.strip_prefix(r#"{"id":"#)?.split(',').next()?.parse().ok()
}

fn key(id: u64) -> String {
    format!("customer-{}", id % 977)
}

fn outcome(result: &Result<smartkafka::RecordMetadata, smartkafka::Error>) -> Outcome {
    match result {
        Ok(md) => Outcome::Delivered {
            offset: (md.offset >= 0).then_some(md.offset),
        },
        Err(e) if e.possibly_persisted() => Outcome::FailedPossiblyPersisted,
        Err(_) => Outcome::FailedNotPersisted,
    }
}

/// Sends `n` keyed records, `pace` apart per thousand, and checks the log.
async fn produce_and_check(
    cluster: &FakeCluster,
    producer: &Producer,
    n: u64,
    pace: Duration,
) -> protocol_tests::Report {
    let mut pending = Vec::with_capacity(n as usize);
    for id in 0..n {
        let record = Record::new("t").key(key(id)).value(value(id));
        pending.push((id, producer.send(record).await));
        if id % 1000 == 999 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    let mut checker = Checker::new();
    let mut errors = Vec::new();
    for (id, sent) in pending {
        let partition = murmur2_partition(key(id).as_bytes(), PARTITIONS as u32).unwrap();
        let result = match sent {
            Ok(delivery) => delivery.await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            errors.push(format!("{id}: {e}"));
        }
        checker.sent("t", partition, id, outcome(&result));
    }
    for p in 0..PARTITIONS {
        checker.log_records("t", p, &cluster.records("t", p), id_of);
    }
    assert!(
        errors.is_empty(),
        "{} records failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    checker.report()
}

fn soak_records() -> u64 {
    std::env::var("SMARTKAFKA_SOAK_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Scenario 25: every connection dies after 0.5-1.5 s, some right after the
/// broker applied a Produce whose answer is then lost. Exactly once, in
/// order, no fatal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_25_chaos_soak_exactly_once_in_order() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("t", PARTITIONS)
        .connection_lifetime(Duration::from_millis(500), Duration::from_millis(1500), 25)
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .compression(smartkafka::compression::Compression::Lz4)
        .retry_backoff(Duration::from_millis(20))
        .retry_backoff_max(Duration::from_millis(200))
        .request_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let n = soak_records();
    // Spread the sends over at least ~10 s so that many connections die
    // under load.
    let pace = Duration::from_millis(10_000 / (n / 1000).max(1));
    let report = produce_and_check(&cluster, &producer, n, pace).await;
    assert!(report.is_clean(), "{report}");
    let killed = cluster.connections_killed();
    let after_produce = cluster.connections_killed_after_produce();
    let duplicates: u64 = (0..PARTITIONS)
        .map(|p| cluster.duplicate_batches("t", p))
        .sum();
    let stats = producer.stats();
    eprintln!(
        "chaos soak: {n} records, {killed} connections killed ({after_produce} right after a Produce), \
         {duplicates} duplicate batches answered, {} retries",
        stats.retries
    );
    assert!(killed > 3, "the chaos killed only {killed} connections");
    assert!(
        stats.retries > 0,
        "connections died under load, so some batches were retried"
    );
    producer.close(Duration::from_secs(10)).await.unwrap();
}

/// Scenario 6 on a real dedup window: the broker applies a Produce and the
/// connection dies before the answer; the retry is answered as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_06_lost_answers_are_deduplicated_by_the_broker() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("t", PARTITIONS)
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .retry_backoff(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    cluster.inject(Fault::new(ApiKey::Produce).drop_after_apply().times(4));
    let report = produce_and_check(&cluster, &producer, 5_000, Duration::ZERO).await;
    assert!(report.is_clean(), "{report}");
    let duplicates: u64 = (0..PARTITIONS)
        .map(|p| cluster.duplicate_batches("t", p))
        .sum();
    assert!(duplicates >= 1, "the broker saw the retries as duplicates");
    assert_eq!(cluster.pending_faults(), 0);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Scenario 26: a broker without InitProducerId is a configuration error
/// when the producer is built, naming the setting to change; with
/// idempotence off the same broker takes records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_26_a_broker_without_init_producer_id_fails_at_start_up() {
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic("t", 2)
        .api_versions(None, |t| t.remove(ApiKey::InitProducerId))
        .build()
        .await;
    let built = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .max_block(Duration::from_secs(5))
        .build()
        .await;
    let Err(err) = built else {
        panic!("no producer without InitProducerId");
    };
    assert_eq!(
        err.kind(),
        &ErrorKind::Config {
            field: "idempotence"
        },
        "{err}"
    );
    assert!(err.to_string().contains("InitProducerId"), "{err}");
    assert!(
        err.to_string().contains("Kafka 0.11 or later is needed"),
        "one space between words: {err}"
    );

    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .idempotence(false)
        .build()
        .await
        .unwrap();
    producer
        .send_and_wait(Record::new("t").value("plain"))
        .await
        .unwrap();
    let stored: Vec<i64> = (0..2)
        .flat_map(|p| cluster.records("t", p))
        .map(|r| r.producer_id)
        .collect();
    assert_eq!(stored, vec![-1], "a plain batch, no producer id");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Batches carry a producer id, epoch and consecutive sequences per
/// partition; a broker with an older InitProducerId version still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_carry_consecutive_sequences_per_partition() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("t", PARTITIONS)
        .api_versions(None, |t| t.set_max(ApiKey::InitProducerId, 1))
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .batch_size(2048)
        .build()
        .await
        .unwrap();
    assert!(producer.config().is_idempotent());
    let report = produce_and_check(&cluster, &producer, 3_000, Duration::ZERO).await;
    assert!(report.is_clean(), "{report}");
    for p in 0..PARTITIONS {
        let records = cluster.records("t", p);
        assert!(!records.is_empty());
        let pid = records[0].producer_id;
        assert!(pid >= 0, "idempotent batches carry a producer id");
        for (i, r) in records.iter().enumerate() {
            assert_eq!((r.producer_id, r.producer_epoch), (pid, 0));
            assert_eq!(
                r.sequence, i as i32,
                "partition {p}: sequences without gaps"
            );
        }
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Against the librdkafka mock (which hands out producer ids): records
/// flow with idempotence on, and its broker-down / up cycle is survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_mock_idempotent_produce_survives_a_broker_restart() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic("t", PARTITIONS, 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(&mock.bootstrap_servers())
        .retry_backoff(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for id in 0..2_000u64 {
        if id == 1_000 {
            mock.broker_down(2).unwrap();
        }
        if id == 1_500 {
            mock.broker_up(2).unwrap();
        }
        let record = Record::new("t").key(key(id)).value(value(id));
        deliveries.push(producer.send(record).await.unwrap());
    }
    let mut per_partition = vec![Vec::new(); PARTITIONS as usize];
    for d in deliveries {
        let md = d.await.unwrap();
        per_partition[md.partition as usize].push(md.offset);
    }
    for offsets in per_partition {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, offsets, "offsets grow per partition, no duplicates");
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// A cluster that accepts connections but never answers: building an
/// idempotent producer gives up after `max_block` with a retriable timeout
/// rather than hanging. (Refused or unresolvable bootstrap servers fail
/// sooner; see `tests/first_contact.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_cluster_fails_the_build_after_max_block() {
    // Connections complete (the listen backlog takes them) but nothing is
    // ever read or written.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = tokio::time::Instant::now();
    let built = Producer::builder()
        .bootstrap_servers(&format!("127.0.0.1:{port}"))
        .max_block(Duration::from_millis(500))
        .build()
        .await;
    let Err(err) = built else {
        panic!("no producer without a cluster");
    };
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(err.is_retriable());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
