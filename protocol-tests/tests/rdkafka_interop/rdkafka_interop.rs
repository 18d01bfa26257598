//! Validates the fake cluster against an independent client, rust-rdkafka
//! (librdkafka): idempotent produce with every compression codec, consumption
//! from the beginning with `assign`, metadata, and fault hooks.

use crate::support::murmur::murmur2;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "events";
const PARTITIONS: i32 = 6;
const DEADLINE: Duration = Duration::from_secs(25);

fn expected_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

type HeaderList = Vec<(String, Option<Vec<u8>>)>;

/// One record as sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: HeaderList,
}

fn record(i: usize) -> Rec {
    Rec {
        key: format!("key-{}", i % 250).into_bytes(),
        value: format!("value-{i:06}-{}", "x".repeat(i % 40)).into_bytes(),
        headers: vec![
            ("index".to_owned(), Some(i.to_string().into_bytes())),
            ("origin".to_owned(), Some(b"rdkafka-interop".to_vec())),
            ("empty".to_owned(), None),
            ("index".to_owned(), Some(b"dup".to_vec())),
        ],
    }
}

/// The index a record was generated from.
fn index_of(r: &Rec) -> usize {
    let v = std::str::from_utf8(&r.value).expect("utf8 value");
    v[6..12].parse().expect("index in value")
}

fn producer(cluster: &FakeCluster, compression: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("retry.backoff.ms", "20")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("create producer")
}

/// Sends records `range` and returns `(index, partition, offset)` per record.
async fn produce(
    producer: &FutureProducer,
    range: std::ops::Range<usize>,
) -> Vec<(usize, i32, i64)> {
    let mut pending = Vec::with_capacity(range.len());
    for i in range {
        let r = record(i);
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let fr = FutureRecord::to(TOPIC)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers);
        let future = match producer.send_result(fr) {
            Ok(f) => f,
            Err((e, _)) => panic!("enqueue record {i}: {e}"),
        };
        pending.push((i, future));
    }
    let mut out = Vec::with_capacity(pending.len());
    for (i, future) in pending {
        let delivery = tokio::time::timeout(DEADLINE, future)
            .await
            .expect("delivery in time")
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("record {i} failed: {e}"));
        out.push((i, delivery.partition, delivery.offset));
    }
    out
}

/// Reads `expected` records from every partition of `TOPIC` from the
/// beginning with `assign`, returning them per partition in offset order.
async fn consume(cluster: &FakeCluster, expected: usize) -> HashMap<i32, Vec<(i64, Rec)>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "interop-readers")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: HashMap<i32, Vec<(i64, Rec)>> = HashMap::new();
    let mut got = 0;
    let started = Instant::now();
    while got < expected {
        let remaining = DEADLINE.saturating_sub(started.elapsed());
        let msg = tokio::time::timeout(remaining, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {got} of {expected} records"))
            .expect("consume");
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let rec = Rec {
            key: msg.key().unwrap_or_default().to_vec(),
            value: msg.payload().unwrap_or_default().to_vec(),
            headers,
        };
        out.entry(msg.partition())
            .or_default()
            .push((msg.offset(), rec));
        got += 1;
    }
    out
}

/// Produces `n` records with `compression`, reads them back and checks the
/// round trip against the send order, the delivery reports and the fake
/// cluster's own log.
async fn round_trip(n: usize, compression: &str) {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .build()
        .await;
    let producer = producer(&cluster, compression);
    let delivered = produce(&producer, 0..n).await;
    producer.flush(DEADLINE).expect("flush");

    // Partitioner and delivery reports agree with the log.
    let logs: HashMap<i32, Vec<protocol_tests::StoredRecord>> = (0..PARTITIONS)
        .map(|p| (p, cluster.records(TOPIC, p)))
        .collect();
    for (i, partition, offset) in &delivered {
        let r = record(*i);
        assert_eq!(
            *partition,
            expected_partition(&r.key, PARTITIONS),
            "record {i}"
        );
        let stored = &logs[partition][*offset as usize];
        assert_eq!(stored.offset, *offset);
        assert_eq!(stored.key.as_deref(), Some(&r.key[..]), "record {i}");
        assert_eq!(stored.value.as_deref(), Some(&r.value[..]), "record {i}");
        let headers: HeaderList = stored
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
            .collect();
        assert_eq!(headers, r.headers, "record {i}");
        assert!(stored.producer_id >= 0, "idempotent producer id");
        assert!(stored.sequence >= 0, "idempotent sequence");
    }
    let total: usize = logs.values().map(Vec::len).sum();
    assert_eq!(total, n, "log holds every record exactly once");
    for p in 0..PARTITIONS {
        assert_eq!(cluster.high_watermark(TOPIC, p), logs[&p].len() as i64);
        // Sequences per producer are gap-free within the partition.
        let seqs: Vec<i32> = logs[&p].iter().map(|r| r.sequence).collect();
        let expected: Vec<i32> = (0..seqs.len() as i32).collect();
        assert_eq!(seqs, expected, "sequences of partition {p}");
    }

    let consumed = consume(&cluster, n).await;
    let mut seen = HashSet::new();
    for p in 0..PARTITIONS {
        let records = consumed.get(&p).cloned().unwrap_or_default();
        let stored = &logs[&p];
        assert_eq!(records.len(), stored.len(), "partition {p} count");
        let mut last_index = None;
        for ((offset, rec), s) in records.iter().zip(stored) {
            assert_eq!(*offset, s.offset, "partition {p} offsets");
            let i = index_of(rec);
            assert_eq!(rec, &record(i), "record {i} intact");
            assert!(seen.insert(i), "record {i} consumed twice");
            assert!(
                last_index < Some(i),
                "partition {p} order: {i} after {last_index:?}"
            );
            last_index = Some(i);
            assert_eq!(s.value.as_deref(), Some(&rec.value[..]));
        }
    }
    assert_eq!(seen.len(), n, "every record consumed");
    let compressed = logs
        .values()
        .flatten()
        .filter(|r| format!("{:?}", r.compression).to_lowercase() == compression)
        .count();
    assert!(compressed > 0, "batches were {compression}-compressed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_idempotent_round_trip_10k() {
    round_trip(10_000, "lz4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_idempotent_round_trip() {
    round_trip(1_000, "zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_idempotent_round_trip() {
    round_trip(1_000, "gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_idempotent_round_trip() {
    round_trip(1_000, "snappy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_idempotent_round_trip() {
    round_trip(1_000, "none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_matches_configuration() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .topic("audit", 2)
        .build()
        .await;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("create client");
    let metadata = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| {
                let brokers: Vec<(i32, String, i32)> = m
                    .brokers()
                    .iter()
                    .map(|b| (b.id(), b.host().to_owned(), b.port()))
                    .collect();
                let topics: Vec<(String, Vec<(i32, i32)>)> = m
                    .topics()
                    .iter()
                    .map(|t| {
                        (
                            t.name().to_owned(),
                            t.partitions()
                                .iter()
                                .map(|p| (p.id(), p.leader()))
                                .collect(),
                        )
                    })
                    .collect();
                (brokers, topics)
            })
    })
    .await
    .expect("join")
    .expect("fetch metadata");
    let (mut brokers, mut topics) = metadata;
    brokers.sort();
    let expected: Vec<(i32, String, i32)> = cluster
        .broker_addrs()
        .iter()
        .map(|(id, a)| (*id, a.ip().to_string(), i32::from(a.port())))
        .collect();
    assert_eq!(brokers, expected);
    topics.sort();
    assert_eq!(topics.len(), 2);
    for (name, mut partitions) in topics {
        partitions.sort();
        let count = cluster.partition_count(&name).expect("known topic");
        assert_eq!(partitions.len() as i32, count, "{name}");
        for (p, leader) in partitions {
            assert_eq!(
                Some(leader),
                cluster.leader(&name, p).map(|l| l.0),
                "{name}-{p}"
            );
        }
    }
    // Leaders are spread round-robin over the three brokers.
    let leaders: HashSet<i32> = (0..PARTITIONS)
        .filter_map(|p| cluster.leader(TOPIC, p).map(|l| l.0))
        .collect();
    assert_eq!(leaders.len(), 3);
}

/// Produces 200 records through one fault and checks each lands exactly once.
async fn survives(fault: Fault) -> FakeCluster {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .build()
        .await;
    let producer = producer(&cluster, "lz4");
    // Warm up so the fault hits a Produce carrying data, not start-up traffic.
    produce(&producer, 0..6).await;
    cluster.inject(fault);
    let delivered = produce(&producer, 6..200).await;
    producer.flush(DEADLINE).expect("flush");
    assert_eq!(cluster.pending_faults(), 0, "fault was consumed");
    assert!(cluster.triggered_faults() >= 1, "fault was applied");
    let mut indices: Vec<usize> = (0..PARTITIONS)
        .flat_map(|p| cluster.records(TOPIC, p))
        .map(|r| {
            let v = r.value.expect("value");
            std::str::from_utf8(&v[6..12])
                .expect("utf8")
                .parse::<usize>()
                .expect("index")
        })
        .collect();
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..200).collect::<Vec<_>>(),
        "each record exactly once"
    );
    for (i, partition, offset) in delivered {
        let stored = cluster.records(TOPIC, partition);
        assert_eq!(
            stored[offset as usize].value.as_deref(),
            Some(&record(i).value[..])
        );
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_leader_error_is_retried_once() {
    survives(Fault::new(ApiKey::Produce).error(ResponseError::NotLeaderOrFollower)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_is_survived() {
    survives(Fault::new(ApiKey::Produce).drop_connection()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_is_deduplicated() {
    // The write is applied but the response is lost: the idempotent retry is
    // recognised as a duplicate, so the records still land once.
    let cluster = survives(Fault::new(ApiKey::Produce).drop_after_apply()).await;
    let duplicates: u64 = (0..PARTITIONS)
        .map(|p| cluster.duplicate_batches(TOPIC, p))
        .sum();
    assert!(
        duplicates >= 1,
        "the retried batch was recognised as a duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_responses_are_survived() {
    let cluster = survives(
        Fault::new(ApiKey::Produce)
            .delay(Duration::from_millis(300))
            .times(3),
    )
    .await;
    assert_eq!(cluster.triggered_faults(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_move_is_followed() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .build()
        .await;
    let producer = producer(&cluster, "lz4");
    produce(&producer, 0..50).await;
    for p in 0..PARTITIONS {
        let (leader, _) = cluster.leader(TOPIC, p).expect("partition");
        let next = leader % 3 + 1;
        assert_eq!(cluster.set_leader(TOPIC, p, next), 1);
    }
    produce(&producer, 50..300).await;
    producer.flush(DEADLINE).expect("flush");
    let total: usize = (0..PARTITIONS)
        .map(|p| cluster.records(TOPIC, p).len())
        .sum();
    assert_eq!(total, 300);
    let consumed = consume(&cluster, 300).await;
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_api_versions_are_negotiated() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .api_versions(None, |t| {
            t.set_max(ApiKey::Produce, 7);
            t.set_max(ApiKey::Fetch, 11);
            t.set_max(ApiKey::Metadata, 9);
        })
        .build()
        .await;
    let producer = producer(&cluster, "zstd");
    produce(&producer, 0..100).await;
    producer.flush(DEADLINE).expect("flush");
    let consumed = consume(&cluster, 100).await;
    assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), 100);
    let max_used = |key: ApiKey| {
        cluster
            .requests()
            .iter()
            .filter(|r| r.api_key == key)
            .map(|r| r.api_version)
            .max()
    };
    assert_eq!(max_used(ApiKey::Produce), Some(7));
    assert_eq!(max_used(ApiKey::Fetch), Some(11));
    assert_eq!(max_used(ApiKey::Metadata), Some(9));
}
