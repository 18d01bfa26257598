//! End to end: produce keyed records with headers through smartkafka's
//! producer to the fake cluster and to the librdkafka mock, then read them
//! back with rust-rdkafka's consumer (and, for the fake, from its log):
//! every record exactly once, per-partition send order, contents intact,
//! delivery reports matching the log.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol_tests::FakeCluster;
use rdkafka::mocking::MockCluster;
use smartkafka::compression::Compression;
use smartkafka::partitioner::murmur2_partition;
use smartkafka::{Acks, Producer, Record, RecordMetadata};

use crate::support::workload::*;

const PARTITIONS: i32 = 6;

/// Sends `n` workload records and returns the delivery reports by index.
async fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    compression: Compression,
) -> Vec<RecordMetadata> {
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .acks(Acks::All)
        .compression(compression)
        .linger(Duration::from_millis(5))
        .request_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let (key, value, headers, ts) = workload(i);
        let mut record = Record::new(topic).key(key).value(value).timestamp(ts);
        for (k, v) in headers {
            record = record.header(k, v);
        }
        futures.push(producer.send(record).await.unwrap());
    }
    let mut reports = Vec::with_capacity(n);
    for f in futures {
        reports.push(f.await.unwrap());
    }
    // The per-partition and per-broker tables are exact after a flush.
    producer.flush().await.unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, n as u64);
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.queued_bytes, 0);
    check_stats_tables(&stats, &reports);
    producer.close(Duration::from_secs(5)).await.unwrap();
    reports
}

/// The per-partition and per-broker tables agree with the totals and with
/// the delivery reports.
fn check_stats_tables(stats: &smartkafka::ProducerStats, reports: &[RecordMetadata]) {
    let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
    for r in reports {
        *per_partition.entry(r.partition).or_default() += 1;
    }
    for (partition, count) in &per_partition {
        let p = stats
            .partition(&reports[0].topic, *partition)
            .unwrap_or_else(|| panic!("no stats for partition {partition}: {stats:?}"));
        assert_eq!(p.records_sent, *count, "partition {partition}");
        assert_eq!(p.queued_bytes, 0);
    }
    let sum =
        |f: fn(&smartkafka::PartitionStats) -> u64| stats.partitions.iter().map(f).sum::<u64>();
    assert_eq!(sum(|p| p.records_sent), stats.records_sent);
    assert_eq!(sum(|p| p.batches_sent), stats.batches_sent);
    assert_eq!(sum(|p| p.bytes_sent), stats.bytes_sent);
    assert!(!stats.brokers.is_empty());
    let requests: u64 = stats.brokers.iter().map(|b| b.requests_sent).sum();
    let answered: u64 = stats.brokers.iter().map(|b| b.responses_received).sum();
    assert_eq!(requests, stats.requests_sent);
    assert_eq!(answered, stats.responses_received);
    assert_eq!(
        stats.responses_received + stats.request_failures,
        stats.requests_sent
    );
    assert!(stats.brokers.iter().all(|b| b.in_flight_requests == 0));
    assert!(stats.request_latency_max >= stats.request_latency_avg());
    assert!(!stats.request_latency_max.is_zero());
    assert!(stats.batch_records_max >= stats.avg_batch_records());
    assert!(stats.avg_batch_records() >= 1);
}

/// `log_append_time`: the broker reports a log append time (the librdkafka
/// mock always does, with a fixed value), which the report carries instead
/// of the create time, as the Java client does.
fn check_reports(
    reports: &[RecordMetadata],
    topic: &str,
    log_append_time: bool,
) -> BTreeMap<i32, Vec<usize>> {
    let mut sent: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, md) in reports.iter().enumerate() {
        let (key, _, _, ts) = workload(i);
        assert_eq!(md.topic, topic);
        if !log_append_time {
            assert_eq!(md.timestamp, ts);
        }
        assert_eq!(
            md.partition,
            murmur2_partition(key.as_bytes(), PARTITIONS as u32).unwrap(),
            "record {i} not where murmur2 puts its key"
        );
        sent.entry(md.partition).or_default().push(i);
    }
    sent
}

fn check_consumed(
    reports: &[RecordMetadata],
    consumed: &[ReadRecord],
) -> BTreeMap<i32, Vec<usize>> {
    let mut read: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in consumed {
        let i = index_of(r.value.as_deref().unwrap());
        let (key, value, headers, ts) = workload(i);
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()));
        assert_eq!(r.timestamp, ts);
        let want: Vec<(String, Option<Vec<u8>>)> = headers
            .into_iter()
            .map(|(k, v)| (k, Some(v.into_bytes())))
            .collect();
        assert_eq!(r.headers, want, "headers of record {i}");
        assert_eq!(
            (reports[i].partition, reports[i].offset),
            (r.partition, r.offset),
            "record {i}"
        );
        read.entry(r.partition).or_default().push(i);
    }
    read
}

async fn fake_round_trip(n: usize, compression: Compression) {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("t", PARTITIONS)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let reports = produce(&bootstrap, "t", n, compression).await;
    let sent = check_reports(&reports, "t", false);

    // The fake's own log.
    let mut logged: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for r in cluster.records("t", p) {
            let i = index_of(r.value.as_ref().unwrap());
            let (key, _, headers, ts) = workload(i);
            assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
            assert_eq!(r.timestamp, ts);
            assert_eq!(r.headers.len(), headers.len());
            assert_eq!(reports[i].offset, r.offset);
            logged.entry(p).or_default().push(i);
        }
    }
    assert_exactly_once_in_order(&sent, &logged);

    // rust-rdkafka's consumer.
    let consumed = tokio::task::spawn_blocking(move || consume_all(&bootstrap, "t", PARTITIONS, n))
        .await
        .unwrap();
    let read = check_consumed(&reports, &consumed);
    assert_exactly_once_in_order(&sent, &read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_cluster_lz4_20k_keyed_records_exactly_once_in_order() {
    fake_round_trip(20_000, Compression::Lz4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_cluster_zstd_5k_keyed_records_exactly_once_in_order() {
    fake_round_trip(5_000, Compression::Zstd).await;
}

async fn mock_round_trip(n: usize, compression: Compression) {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("t", PARTITIONS, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let reports = produce(&bootstrap, "t", n, compression).await;
    let sent = check_reports(&reports, "t", true);
    let consumed = tokio::task::spawn_blocking(move || consume_all(&bootstrap, "t", PARTITIONS, n))
        .await
        .unwrap();
    let read = check_consumed(&reports, &consumed);
    assert_exactly_once_in_order(&sent, &read);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_mock_lz4_20k_keyed_records_exactly_once_in_order() {
    mock_round_trip(20_000, Compression::Lz4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_mock_gzip_5k_keyed_records_exactly_once_in_order() {
    mock_round_trip(5_000, Compression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_murmur2_and_our_partitioner_put_them() {
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic("keys", PARTITIONS)
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    let records: Vec<Record> = (0..600)
        .map(|i| {
            Record::new("keys")
                .key(format!("user-{i}"))
                .value(format!("{i}"))
        })
        .collect();
    let results = producer.send_batch(records).await;
    let mut partitioner = smartkafka::partitioner::DefaultPartitioner::new(1);
    let all: Vec<i32> = (0..PARTITIONS).collect();
    let view = smartkafka::partitioner::PartitionView::new("keys", PARTITIONS as u32, &all);
    for (i, result) in results.into_iter().enumerate() {
        let md = result.unwrap();
        let key = format!("user-{i}");
        let expected = murmur2_partition(key.as_bytes(), PARTITIONS as u32).unwrap();
        use smartkafka::partitioner::Partitioner;
        assert_eq!(
            partitioner.partition(Some(key.as_bytes()), None, &view),
            Ok(expected)
        );
        assert_eq!(md.partition, expected, "{key}");
        let stored = cluster.records("keys", md.partition);
        let hit = stored.iter().find(|r| r.offset == md.offset).unwrap();
        assert_eq!(hit.key.as_deref(), Some(key.as_bytes()));
    }
    // An empty key is a key: it hashes, and always to the same partition.
    let a = producer
        .send_and_wait(Record::new("keys").key("").value("a"))
        .await
        .unwrap();
    let b = producer
        .send_and_wait(Record::new("keys").key("").value("b"))
        .await
        .unwrap();
    assert_eq!(a.partition, b.partition);
    assert_eq!(
        a.partition,
        murmur2_partition(b"", PARTITIONS as u32).unwrap()
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Milliseconds since the Unix epoch, as record timestamps count them.
#[allow(clippy::disallowed_methods)]
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Records sent paced, a few per linger, as a service sends them: while the
/// producer's task waits between batches they gather without waking it, and
/// each still gets the timestamp of its `send` (not of when the task took
/// it), joins a batch with the records sent within a linger, and is
/// delivered about a linger after it was sent. Read back from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_records_keep_their_send_time_and_share_batches_within_a_linger() {
    const N: usize = 60;
    let linger = Duration::from_millis(100);
    let cluster = FakeCluster::builder()
        .brokers(1)
        .topic("paced", 1)
        .build()
        .await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .linger(linger)
        .build()
        .await
        .unwrap();
    let mut sent_within = Vec::with_capacity(N);
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let before = unix_millis();
        let delivery = producer
            .send(Record::new("paced").value(format!("{i}")))
            .await
            .unwrap();
        sent_within.push((before, unix_millis()));
        deliveries.push(tokio::spawn(async move {
            let metadata = delivery.await.unwrap();
            (metadata.offset, unix_millis())
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut delivered_at = Vec::with_capacity(N);
    for d in deliveries {
        delivered_at.push(d.await.unwrap());
    }
    let stored = cluster.records("paced", 0);
    assert_eq!(stored.len(), N);
    for (i, r) in stored.iter().enumerate() {
        assert_eq!(r.value.as_deref(), Some(format!("{i}").as_bytes()));
        let (before, after) = sent_within[i];
        // A record that did not gather is taken microseconds after its
        // send, which may cross into the next millisecond.
        assert!(
            (before..=after + 1).contains(&r.timestamp),
            "record {i}: timestamp {} not within its send ({before}..={after})",
            r.timestamp
        );
        let (offset, at) = delivered_at[i];
        assert_eq!(offset, r.offset);
        // A linger and the round trip; far less than two lingers and a
        // scheduling hiccup.
        assert!(
            at - before < 2 * linger.as_millis() as i64 + 1000,
            "record {i} delivered {} ms after its send",
            at - before
        );
    }
    // Sent every 10 ms with a linger of 100 ms: batches of several records,
    // none spanning much more than a linger (the records of one batch
    // were sent within a linger of its first).
    let batches = cluster.raw_batches("paced", 0).len();
    assert!(
        batches <= N / 3,
        "{batches} batches for {N} records: linger not honoured"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}
