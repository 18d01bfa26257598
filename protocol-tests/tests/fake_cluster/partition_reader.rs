//! The partition reader against two independent broker implementations:
//! the in-process fake cluster and the librdkafka mock cluster, with
//! records written by rust-rdkafka's producer (every codec, keys, null
//! values, headers with empty and null values, explicit timestamps) and by
//! smartkafka's own producer, read back and compared field by field.
//!
//! Also covered: every kind of start offset (earliest, latest, an offset,
//! a group's committed offset with and without a commit), seeking,
//! `OFFSET_OUT_OF_RANGE` under each reset policy, a leader moving to
//! another broker, injected Fetch errors and dropped connections, and the
//! positions handed to a transactional producer.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use protocol_tests::FakeCluster;
use protocol_tests::Fault;
use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::ApiKey;
use rdkafka::ClientConfig as RdConfig;
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use smartkafka::compression::Compression;
use smartkafka::consumer::{
    AutoOffsetReset, ConsumedRecord, ConsumerGroupMetadata, IsolationLevel, OffsetToCommit,
    PartitionReader, ReaderConfig, StartOffset,
};
use smartkafka::protocol::KafkaCode;
use smartkafka::record_batch::TimestampType;
use smartkafka::{Acks, ErrorKind, Header, Producer, Record};

const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// One record as sent, and as it must come back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    partition: i32,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
    timestamp: i64,
}

/// `n` records spread over `partitions`: some keyless, some with a null
/// value, some without headers, values long enough to compress.
fn workload(n: usize, partitions: i32, tag: &str) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let key = (i % 7 != 3).then(|| Bytes::from(format!("{tag}-key-{i}")));
            let value = (i % 11 != 5).then(|| {
                Bytes::from(format!(
                    "{{\"seq\":{i},\"tag\":\"{tag}\",\"note\":\"{}\"}}",
                    "abcde".repeat(i % 40)
                ))
            });
            let headers = if i % 5 == 0 {
                Vec::new()
            } else {
                vec![
                    Header::new("seq", i.to_string()),
                    Header::new("empty", ""),
                    Header::null("null"),
                ]
            };
            Sent {
                partition: (i as i32) % partitions,
                key,
                value,
                headers,
                timestamp: BASE_TIMESTAMP + (i as i64 * 37) % 1_000,
            }
        })
        .collect()
}

fn rdkafka_producer(bootstrap: &str, compression: &str) -> FutureProducer {
    RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("batch.num.messages", "40")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("rdkafka producer")
}

/// Sends `records` in order with rust-rdkafka and returns, per partition,
/// the records with the offsets the broker gave them.
async fn produce_rdkafka(
    producer: &FutureProducer,
    topic: &str,
    records: &[Sent],
) -> BTreeMap<i32, Vec<(i64, Sent)>> {
    let mut pending = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for h in &r.headers {
            headers = headers.insert(RdHeader {
                key: &h.key,
                value: h.value.as_deref(),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(r.partition)
            .timestamp(r.timestamp);
        if !r.headers.is_empty() {
            record = record.headers(headers);
        }
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        if let Some(value) = &r.value {
            record = record.payload(value);
        }
        match producer.send_result(record) {
            Ok(future) => pending.push((i, future)),
            Err((e, _)) => panic!("enqueue record {i}: {e}"),
        }
    }
    let mut by_partition: BTreeMap<i32, Vec<(i64, Sent)>> = BTreeMap::new();
    for (i, future) in pending {
        let delivery = tokio::time::timeout(Duration::from_secs(30), future)
            .await
            .expect("delivery in time")
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("record {i} failed: {e}"));
        by_partition
            .entry(delivery.partition)
            .or_default()
            .push((delivery.offset, records[i].clone()));
    }
    for list in by_partition.values_mut() {
        list.sort_by_key(|(offset, _)| *offset);
    }
    by_partition
}

fn config(bootstrap: &str) -> ReaderConfig {
    ReaderConfig::new(bootstrap)
        .client_id("partition-reader-test")
        .request_timeout(Duration::from_secs(10))
        .max_wait(Duration::from_millis(100))
        .retry_backoff(Duration::from_millis(20))
}

/// Polls until `count` records arrived (failing after 30 s), then polls
/// once more briefly to show nothing else comes.
async fn read_exactly(reader: &mut PartitionReader, count: usize) -> Vec<ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {count} records within 30 s",
            out.len()
        );
        out.extend(reader.poll(Duration::from_millis(500)).await.expect("poll"));
    }
    let extra = reader.poll(Duration::from_millis(200)).await.expect("poll");
    assert!(extra.is_empty(), "unexpected records: {extra:?}");
    assert_eq!(out.len(), count);
    out
}

/// Splits what was read per partition, in the order it was returned.
fn per_partition(records: &[ConsumedRecord]) -> BTreeMap<i32, Vec<&ConsumedRecord>> {
    let mut map: BTreeMap<i32, Vec<&ConsumedRecord>> = BTreeMap::new();
    for r in records {
        map.entry(r.partition).or_default().push(r);
    }
    map
}

/// Compares what was read with what was sent, field by field, and the
/// order within each partition.
fn check(topic: &str, read: &[ConsumedRecord], expected: &BTreeMap<i32, Vec<(i64, Sent)>>) {
    let read = per_partition(read);
    let partitions: Vec<i32> = expected
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(read.keys().copied().collect::<Vec<_>>(), partitions);
    for (partition, sent) in expected {
        let got = read.get(partition).map_or(&[][..], Vec::as_slice);
        assert_eq!(got.len(), sent.len(), "partition {partition}");
        for (r, (offset, s)) in got.iter().zip(sent) {
            let at = format!("{topic}-{partition}@{offset}");
            assert_eq!(r.topic, topic, "{at}");
            assert_eq!(r.offset, *offset, "{at}");
            assert_eq!(r.key, s.key, "{at}");
            assert_eq!(r.value, s.value, "{at}");
            assert_eq!(r.headers, s.headers, "{at}");
            assert_eq!(r.timestamp_type, TimestampType::CreateTime, "{at}");
            assert_eq!(r.timestamp, s.timestamp, "{at}");
        }
    }
}

fn earliest(topic: &str, partitions: i32) -> Vec<(&str, i32, StartOffset)> {
    (0..partitions)
        .map(|p| (topic, p, StartOffset::Earliest))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_cluster_every_codec_read_from_earliest_matches_what_rdkafka_wrote() {
    let cluster = FakeCluster::builder().brokers(3).build().await;
    let bootstrap = cluster.bootstrap_servers();
    for codec in CODECS {
        let topic = format!("fake-{codec}");
        cluster.create_topic(&topic, 3).unwrap();
        let producer = rdkafka_producer(&bootstrap, codec);
        let sent = workload(240, 3, codec);
        let expected = produce_rdkafka(&producer, &topic, &sent).await;
        let mut reader = PartitionReader::connect(config(&bootstrap)).await.unwrap();
        reader.assign(&earliest(&topic, 3)).await.unwrap();
        let read = read_exactly(&mut reader, sent.len()).await;
        check(&topic, &read, &expected);
        for p in 0..3 {
            assert_eq!(
                reader.position(&topic, p),
                Some(cluster.high_watermark(&topic, p)),
                "{topic}-{p}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_mock_every_codec_read_from_earliest_matches_what_rdkafka_wrote() {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    for codec in CODECS {
        let topic = format!("mock-{codec}");
        cluster.create_topic(&topic, 3, 3).unwrap();
        let producer = rdkafka_producer(&bootstrap, codec);
        let sent = workload(240, 3, codec);
        let expected = produce_rdkafka(&producer, &topic, &sent).await;
        for isolation in [
            IsolationLevel::ReadCommitted,
            IsolationLevel::ReadUncommitted,
        ] {
            let mut reader =
                PartitionReader::connect(config(&bootstrap).isolation_level(isolation))
                    .await
                    .unwrap();
            reader.assign(&earliest(&topic, 3)).await.unwrap();
            let read = read_exactly(&mut reader, sent.len()).await;
            check(&topic, &read, &expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_offsets_earliest_latest_offset_and_committed() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("starts", 4)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = rdkafka_producer(&bootstrap, "lz4");
    let sent = workload(80, 4, "starts");
    let expected = produce_rdkafka(&producer, "starts", &sent).await;
    cluster.commit_offset("billing", "starts", 0, 5);

    let mut reader = PartitionReader::connect(config(&bootstrap).group_id("billing"))
        .await
        .unwrap();
    reader
        .assign(&[
            ("starts", 0, StartOffset::Committed("billing".into())),
            ("starts", 1, StartOffset::Offset(7)),
            ("starts", 2, StartOffset::Earliest),
            // No commit for this partition: the log start.
            ("starts", 3, StartOffset::Committed("billing".into())),
        ])
        .await
        .unwrap();
    assert_eq!(reader.position("starts", 0), Some(5));
    assert_eq!(reader.position("starts", 1), Some(7));
    assert_eq!(reader.position("starts", 2), Some(0));
    assert_eq!(reader.position("starts", 3), Some(0));
    let mut want = expected.clone();
    want.get_mut(&0).unwrap().drain(..5);
    want.get_mut(&1).unwrap().drain(..7);
    let count = want.values().map(Vec::len).sum();
    let read = read_exactly(&mut reader, count).await;
    check("starts", &read, &want);

    // What a transactional producer would commit: the next offsets.
    let commit = reader.offsets_to_commit();
    assert_eq!(
        commit,
        (0..4)
            .map(|p| OffsetToCommit::new("starts", p, 20))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        reader.group_metadata(),
        Some(ConsumerGroupMetadata::new("billing"))
    );

    // Latest: only what is written after the assignment.
    let mut latest = PartitionReader::connect(config(&bootstrap)).await.unwrap();
    assert_eq!(latest.group_metadata(), None);
    latest
        .assign(
            &(0..4)
                .map(|p| ("starts", p, StartOffset::Latest))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(
        latest
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let more = workload(12, 4, "later");
    let mut expected_more = produce_rdkafka(&producer, "starts", &more).await;
    let read = read_exactly(&mut latest, more.len()).await;
    check("starts", &read, &expected_more);

    // Seeking back re-reads from there.
    latest.seek("starts", 2, 18).unwrap();
    let read = read_exactly(&mut latest, 5).await;
    let mut again = BTreeMap::new();
    let mut tail: Vec<(i64, Sent)> = expected[&2][18..].to_vec();
    tail.extend(expected_more.remove(&2).unwrap());
    again.insert(2, tail);
    check("starts", &read, &again);
    assert_eq!(latest.positions().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_smartkafkas_producer_read_back_exactly() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("own", 3)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .acks(Acks::All)
        .compression(Compression::Zstd)
        .build()
        .await
        .unwrap();
    let sent = workload(150, 3, "own");
    let mut expected: BTreeMap<i32, Vec<(i64, Sent)>> = BTreeMap::new();
    let mut deliveries = Vec::new();
    for s in &sent {
        let mut record = Record::new("own")
            .partition(s.partition)
            .timestamp(s.timestamp);
        record.key = s.key.clone();
        record.value = s.value.clone();
        record.headers = s.headers.clone();
        deliveries.push((producer.send(record).await.unwrap(), s.clone()));
    }
    for (delivery, s) in deliveries {
        let metadata = delivery.await.unwrap();
        expected
            .entry(metadata.partition)
            .or_default()
            .push((metadata.offset, s));
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    let mut reader = PartitionReader::connect(config(&bootstrap)).await.unwrap();
    reader.assign(&earliest("own", 3)).await.unwrap();
    let read = read_exactly(&mut reader, sent.len()).await;
    check("own", &read, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_out_of_range_resets_per_policy() {
    let cluster = FakeCluster::builder()
        .brokers(1)
        .topic("range", 1)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = rdkafka_producer(&bootstrap, "none");
    let sent = workload(30, 1, "range");
    let expected = produce_rdkafka(&producer, "range", &sent).await;

    // Earliest (the default): past the end goes back to the log start.
    let mut reader = PartitionReader::connect(config(&bootstrap)).await.unwrap();
    reader
        .assign(&[("range", 0, StartOffset::Offset(1_000))])
        .await
        .unwrap();
    let read = read_exactly(&mut reader, 30).await;
    check("range", &read, &expected);

    // Records deleted under the position: continue at the new log start.
    assert_eq!(cluster.delete_records("range", 0, 10).unwrap(), 10);
    reader.seek("range", 0, 3).unwrap();
    let read = read_exactly(&mut reader, 20).await;
    assert_eq!(read.first().map(|r| r.offset), Some(10));

    // Latest: past the end waits at the end.
    let mut latest =
        PartitionReader::connect(config(&bootstrap).auto_offset_reset(AutoOffsetReset::Latest))
            .await
            .unwrap();
    latest
        .assign(&[("range", 0, StartOffset::Offset(1_000))])
        .await
        .unwrap();
    assert!(
        latest
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(latest.position("range", 0), Some(30));

    // None: the application is told, and can seek.
    let mut strict =
        PartitionReader::connect(config(&bootstrap).auto_offset_reset(AutoOffsetReset::None))
            .await
            .unwrap();
    strict
        .assign(&[("range", 0, StartOffset::Offset(2))])
        .await
        .unwrap();
    let err = strict.poll(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Broker(KafkaCode::OFFSET_OUT_OF_RANGE)
    );
    assert_eq!(strict.position("range", 0), Some(2), "the position stays");
    strict.seek("range", 0, 25).unwrap();
    let read = read_exactly(&mut strict, 5).await;
    assert_eq!(
        read.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [25, 26, 27, 28, 29]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_move_and_injected_fetch_errors_lose_and_repeat_nothing() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("moving", 2)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = rdkafka_producer(&bootstrap, "snappy");
    let first = workload(40, 2, "first");
    let mut expected = produce_rdkafka(&producer, "moving", &first).await;

    let mut reader = PartitionReader::connect(config(&bootstrap)).await.unwrap();
    reader.assign(&earliest("moving", 2)).await.unwrap();
    let mut read = read_exactly(&mut reader, 40).await;

    // Move partition 0 to another broker; write more.
    let (old_leader, _) = cluster.leader("moving", 0).unwrap();
    let new_leader = cluster
        .broker_ids()
        .into_iter()
        .find(|id| *id != old_leader)
        .unwrap();
    cluster.set_leader("moving", 0, new_leader);
    let second = workload(40, 2, "second");
    for (p, list) in produce_rdkafka(&producer, "moving", &second).await {
        expected.entry(p).or_default().extend(list);
    }
    read.extend(read_exactly(&mut reader, 40).await);

    // Errors a broker may answer with, then a dropped connection.
    cluster.inject(
        Fault::new(ApiKey::Fetch)
            .error(ResponseError::NotLeaderOrFollower)
            .times(2),
    );
    cluster.inject(Fault::new(ApiKey::Fetch).error(ResponseError::UnknownTopicOrPartition));
    cluster.inject(Fault::new(ApiKey::Fetch).drop_connection());
    let third = workload(40, 2, "third");
    for (p, list) in produce_rdkafka(&producer, "moving", &third).await {
        expected.entry(p).or_default().extend(list);
    }
    read.extend(read_exactly(&mut reader, 40).await);
    assert_eq!(cluster.pending_faults(), 0, "every fault was met");
    check("moving", &read, &expected);
    let fetches_at_new_leader = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Fetch && r.broker_id == new_leader)
        .count();
    assert!(fetches_at_new_leader > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_and_seek_errors_are_typed() {
    let cluster = FakeCluster::builder()
        .brokers(1)
        .topic("known", 2)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let mut reader = PartitionReader::connect(config(&bootstrap)).await.unwrap();

    let err = reader
        .assign(&[("missing", 0, StartOffset::Earliest)])
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Broker(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{err}"
    );
    assert!(reader.assignment().is_empty());

    let err = reader
        .assign(&[("known", 5, StartOffset::Earliest)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidPartition, "{err}");

    let err = reader
        .assign(&[("known", 0, StartOffset::Offset(-4))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidPartition, "{err}");

    reader
        .assign(&[("known", 1, StartOffset::Latest)])
        .await
        .unwrap();
    assert_eq!(reader.assignment(), [("known".to_string(), 1)]);
    let err = reader.seek("known", 0, 3).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidPartition);
    assert_eq!(reader.position("known", 1), Some(0));

    let err = PartitionReader::connect(config(&bootstrap).max_wait(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(err.is_config() && err.is_fatal(), "{err}");
}

mod transactions {
    //! read_committed against real transaction markers: two transactional
    //! rust-rdkafka producers commit and abort interleaved transactions on
    //! the fake cluster's transaction coordinator.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use protocol_tests::FakeCluster;
    use rdkafka::ClientConfig as RdConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
    use smartkafka::consumer::{IsolationLevel, PartitionReader, StartOffset};

    use super::{config, read_exactly};

    const TOPIC: &str = "txn";
    const PARTITIONS: i32 = 2;
    const TIMEOUT: Duration = Duration::from_secs(20);

    type TxnProducer = ThreadedProducer<DefaultProducerContext>;

    fn blocking<T>(f: impl FnOnce() -> T) -> T {
        tokio::task::block_in_place(f)
    }

    fn producer(bootstrap: &str, id: &str) -> TxnProducer {
        blocking(|| {
            let p: TxnProducer = RdConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("transactional.id", id)
                .set("linger.ms", "1")
                .set("retry.backoff.ms", "20")
                .create()
                .expect("transactional producer");
            p.init_transactions(TIMEOUT).expect("init_transactions");
            p
        })
    }

    /// Sends `values` to `partition` and waits until they are in the log,
    /// so the log order across producers is the order of these calls.
    fn send(p: &TxnProducer, partition: i32, values: &[String]) {
        blocking(|| {
            for v in values {
                let record = BaseRecord::to(TOPIC).partition(partition).key(v).payload(v);
                if let Err((e, _)) = p.send(record) {
                    panic!("enqueue {v}: {e}");
                }
            }
            p.flush(TIMEOUT).expect("flush");
        });
    }

    /// A tiny deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The values a reader returns, per partition, in order; with offsets.
    async fn read(
        bootstrap: &str,
        isolation: IsolationLevel,
        partition_bytes: usize,
        count: usize,
    ) -> (BTreeMap<i32, Vec<(i64, String)>>, PartitionReader) {
        let mut reader = PartitionReader::connect(
            config(bootstrap)
                .isolation_level(isolation)
                .max_partition_bytes(partition_bytes),
        )
        .await
        .unwrap();
        reader
            .assign(
                &(0..PARTITIONS)
                    .map(|p| (TOPIC, p, StartOffset::Earliest))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        for r in read_exactly(&mut reader, count).await {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            out.entry(r.partition).or_default().push((r.offset, value));
        }
        (out, reader)
    }

    fn values(map: &BTreeMap<i32, Vec<(i64, String)>>) -> BTreeMap<i32, Vec<String>> {
        map.iter()
            .map(|(p, list)| (*p, list.iter().map(|(_, v)| v.clone()).collect()))
            .collect()
    }

    fn truth(cluster: &FakeCluster) -> BTreeMap<i32, Vec<(i64, String)>> {
        (0..PARTITIONS)
            .map(|p| {
                let list = cluster
                    .committed_records(TOPIC, p)
                    .into_iter()
                    .map(|r| {
                        (
                            r.offset,
                            String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                        )
                    })
                    .collect();
                (p, list)
            })
            .filter(|(_, list): &(i32, Vec<(i64, String)>)| !list.is_empty())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_committed_sees_exactly_the_committed_records_of_interleaved_transactions() {
        let cluster = FakeCluster::builder()
            .brokers(3)
            .topic(TOPIC, PARTITIONS)
            .build()
            .await;
        let bootstrap = cluster.bootstrap_servers();
        let producers = [producer(&bootstrap, "txn-a"), producer(&bootstrap, "txn-b")];

        // Both producers keep a transaction open most of the time, so their
        // batches interleave in both partitions; each transaction ends in a
        // commit (two in three) or an abort.
        let mut rng = Rng(0x5eed_7a11_c0ff_ee01);
        let mut open: [Option<usize>; 2] = [None, None];
        let mut next_txn = 0usize;
        let mut committed_txns = Vec::new();
        // Per partition, in log order: (transaction, value).
        let mut log: BTreeMap<i32, Vec<(usize, String)>> = BTreeMap::new();
        for step in 0..60 {
            let who = rng.below(2) as usize;
            let p = &producers[who];
            let txn = *open[who].get_or_insert_with(|| {
                blocking(|| p.begin_transaction().expect("begin"));
                next_txn += 1;
                next_txn
            });
            let partition = rng.below(PARTITIONS as u64) as i32;
            let batch: Vec<String> = (0..1 + rng.below(4))
                .map(|i| format!("t{txn}-s{step}-r{i}"))
                .collect();
            send(p, partition, &batch);
            log.entry(partition)
                .or_default()
                .extend(batch.into_iter().map(|v| (txn, v)));
            if rng.below(3) == 0 {
                let txn = open[who].take().unwrap();
                if rng.below(3) == 0 {
                    blocking(|| p.abort_transaction(TIMEOUT).expect("abort"));
                } else {
                    blocking(|| p.commit_transaction(TIMEOUT).expect("commit"));
                    committed_txns.push(txn);
                }
            }
        }
        for (who, txn) in open.iter_mut().enumerate() {
            if let Some(txn) = txn.take() {
                blocking(|| producers[who].commit_transaction(TIMEOUT).expect("commit"));
                committed_txns.push(txn);
            }
        }
        let aborted_count = next_txn - committed_txns.len();
        assert!(
            aborted_count >= 2,
            "the run aborts transactions ({aborted_count})"
        );
        let committed: BTreeMap<i32, Vec<String>> = log
            .iter()
            .map(|(p, list)| {
                let kept = list
                    .iter()
                    .filter(|(txn, _)| committed_txns.contains(txn))
                    .map(|(_, v)| v.clone())
                    .collect();
                (*p, kept)
            })
            .collect();
        let everything: BTreeMap<i32, Vec<String>> = log
            .iter()
            .map(|(p, list)| (*p, list.iter().map(|(_, v)| v.clone()).collect()))
            .collect();
        let count = |m: &BTreeMap<i32, Vec<String>>| m.values().map(Vec::len).sum::<usize>();

        // read_committed, with fetches of a batch or so (transactions span
        // many fetches) and with the default size.
        for partition_bytes in [200, 1024 * 1024] {
            let (read, reader) = read(
                &bootstrap,
                IsolationLevel::ReadCommitted,
                partition_bytes,
                count(&committed),
            )
            .await;
            assert_eq!(
                values(&read),
                committed,
                "partition_bytes {partition_bytes}"
            );
            assert_eq!(read, truth(&cluster), "the fake cluster's own view");
            for p in 0..PARTITIONS {
                // Past the last markers too.
                assert_eq!(
                    reader.position(TOPIC, p),
                    Some(cluster.high_watermark(TOPIC, p))
                );
            }
        }
        let (read, _) = read(
            &bootstrap,
            IsolationLevel::ReadUncommitted,
            200,
            count(&everything),
        )
        .await;
        assert_eq!(values(&read), everything);

        // An open transaction holds back read_committed at its first offset,
        // even records committed after it; read_uncommitted sees them all.
        let mut committed_reader = PartitionReader::connect(config(&bootstrap)).await.unwrap();
        committed_reader
            .assign(&[(TOPIC, 0, StartOffset::Latest)])
            .await
            .unwrap();
        let mut uncommitted_reader = PartitionReader::connect(
            config(&bootstrap).isolation_level(IsolationLevel::ReadUncommitted),
        )
        .await
        .unwrap();
        uncommitted_reader
            .assign(&[(TOPIC, 0, StartOffset::Latest)])
            .await
            .unwrap();
        let open_values = vec!["open-1".to_string(), "open-2".to_string()];
        let later_values = vec!["later-1".to_string()];
        blocking(|| producers[0].begin_transaction().expect("begin"));
        send(&producers[0], 0, &open_values);
        blocking(|| producers[1].begin_transaction().expect("begin"));
        send(&producers[1], 0, &later_values);
        blocking(|| producers[1].commit_transaction(TIMEOUT).expect("commit"));
        assert!(
            committed_reader
                .poll(Duration::from_millis(400))
                .await
                .unwrap()
                .is_empty(),
            "nothing past the last stable offset"
        );
        let seen: Vec<String> = read_exactly(&mut uncommitted_reader, 3)
            .await
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(seen, ["open-1", "open-2", "later-1"]);
        blocking(|| producers[0].commit_transaction(TIMEOUT).expect("commit"));
        let seen: Vec<String> = read_exactly(&mut committed_reader, 3)
            .await
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(seen, ["open-1", "open-2", "later-1"]);
        assert_eq!(
            committed_reader.last_stable_offset(TOPIC, 0),
            Some(cluster.high_watermark(TOPIC, 0))
        );
    }
}

/// Polls cut short at random moments (a `poll` future dropped while it
/// waits for answers, takes them or writes the next Fetch), and a
/// partition paused and resumed on the way: every record comes back once,
/// in order, with the broker's offsets, and none of the paused partition
/// while it is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_polls_and_a_pause_skip_and_repeat_nothing() {
    use rand::Rng;
    const TOPIC: &str = "dropped-polls";
    const PARTITIONS: i32 = 6;
    let cluster = FakeCluster::builder().brokers(3).build().await;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS).unwrap();
    let producer = rdkafka_producer(&bootstrap, "none");
    let sent = workload(3_000, PARTITIONS, "dropped");
    let expected = produce_rdkafka(&producer, TOPIC, &sent).await;
    // Small fetches, so the read takes many rounds over the three brokers.
    let mut reader = PartitionReader::connect(config(&bootstrap).max_partition_bytes(2_048))
        .await
        .unwrap();
    reader.assign(&earliest(TOPIC, PARTITIONS)).await.unwrap();
    // One broker's answers take a moment, so some polls wait and can be
    // cut while waiting; another drops its connection on its first
    // Fetches, so polls that took the other brokers' records reconnect to
    // it while writing the next Fetch, and can be cut there.
    cluster.inject(
        Fault::new(ApiKey::Fetch)
            .broker(2)
            .delay(Duration::from_micros(500))
            .times(100_000),
    );
    cluster.inject(
        Fault::new(ApiKey::Fetch)
            .broker(1)
            .drop_connection()
            .times(15),
    );
    let mut rng = rand::rng();
    let mut read: Vec<ConsumedRecord> = Vec::new();
    let (mut completed, mut dropped) = (0, 0);
    let mut paused_at: Option<usize> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while read.len() < sent.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {} records within 20 s",
            read.len(),
            sent.len()
        );
        // Pause partition 0 a third of the way in, resume it forty polls
        // later.
        if paused_at.is_none() && read.len() > sent.len() / 3 {
            reader.pause(TOPIC, 0).unwrap();
            paused_at = Some(completed + dropped);
        }
        if paused_at.is_some_and(|at| completed + dropped >= at + 40) {
            reader.resume(TOPIC, 0).unwrap();
        }
        // Every third poll is cut at its first wait; the others at a random
        // moment.
        let cut = if (completed + dropped) % 3 == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(rng.random_range(0..1_500))
        };
        match tokio::time::timeout(cut, reader.poll(Duration::from_millis(500))).await {
            Ok(records) => {
                let records = records.expect("poll");
                completed += 1;
                if !reader.paused().is_empty() {
                    assert!(
                        records.iter().all(|r| r.partition != 0),
                        "a record of paused partition 0 was returned"
                    );
                }
                read.extend(records);
            }
            Err(_) => dropped += 1,
        }
    }
    assert!(reader.paused().is_empty(), "partition 0 was resumed");
    assert!(
        dropped > 0 && completed > 0,
        "{dropped} dropped, {completed} completed"
    );
    let extra = reader.poll(Duration::from_millis(200)).await.expect("poll");
    assert!(extra.is_empty(), "unexpected records: {extra:?}");
    check(TOPIC, &read, &expected);
}
