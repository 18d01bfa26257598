//! Volume acceptance of the producer: N keyed records with headers and
//! explicit timestamps, for every codec (none, gzip, snappy, lz4, zstd),
//! with `acks=all`, sent through smartkafka's producer to the librdkafka
//! mock cluster (3 brokers) and to the fake cluster (3 brokers), each with a
//! 6-partition topic, then read back with rust-rdkafka's consumer from the
//! beginning of every partition.
//!
//! Each run proves:
//!
//! - every record is in the log exactly once, and per partition in send
//!   order;
//! - keys, values, headers (including an empty and a null value) and the
//!   explicit, not always increasing, timestamps come back intact;
//! - every delivery report names the partition murmur2 gives the key and the
//!   offset at which the consumer finds the record, and the reports of a
//!   partition count up from 0 without a gap;
//! - the codec was applied: compressed bytes on the wire against the
//!   payload, and on the fake cluster the codec of every stored batch;
//! - the producer ends with nothing queued, no error, every record counted.
//!
//! N comes from `SMARTKAFKA_VOLUME_RECORDS` (default 20 000 per codec and
//! cluster: a debug run of the whole file takes well under a minute on two
//! cores). The full acceptance run is a million records per codec and
//! cluster, about five minutes in release mode on two cores:
//!
//! ```sh
//! SMARTKAFKA_VOLUME_RECORDS=1000000 cargo test --release --test producer_volume -- --test-threads=1
//! ```
//!
//! Checking is streaming: a record is recognised by the index in its value
//! and compared with the record regenerated from that index, so memory for
//! the checks is a few bytes per record (the reported offset and the offset
//! read at), whatever N is. The fake cluster keeps every record in memory,
//! decoded: about 1.2 GB at a million records. The librdkafka mock keeps
//! only the last 5 MiB of each partition, so against it the consumer reads
//! while the records are produced, and the producer pauses when it gets
//! too far ahead (a run still fails if a record was dropped before it was
//! read: the consumer treats a moved log start as an error).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use protocol_tests::FakeCluster;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::mocking::MockCluster;
use smartkafka::compression::Compression;
use smartkafka::partitioner::murmur2_partition;
use smartkafka::{Acks, DeliveryFuture, Header, Producer, Record};

mod support;

use support::workload;

const PARTITIONS: i32 = 6;
const BROKERS: usize = 3;
const TOPIC: &str = "volume";
const DEFAULT_RECORDS: usize = 20_000;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
/// Free text for the values' `note` field, cut at a length that varies.
const NOTE: &str = "delivered to the north gate; leave with the porter if nobody answers. \
                    fragile: glassware inside, keep upright, do not stack more than two high";
const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
/// Bytes of a v2 batch before its records section.
const BATCH_HEADER_LEN: usize = 61;

fn records_per_run() -> usize {
    match std::env::var("SMARTKAFKA_VOLUME_RECORDS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SMARTKAFKA_VOLUME_RECORDS={v:?} is not a count")),
        Err(_) => DEFAULT_RECORDS,
    }
}

/// splitmix64: a cheap, well-spread hash of the record index, so that every
/// field can be regenerated from the index alone.
fn mix(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Record `i` of the workload, as sent and as it must come back.
struct Expected {
    key: String,
    value: String,
    seq: String,
    trace_id: String,
    timestamp: i64,
}

impl Expected {
    fn new(i: usize) -> Expected {
        let h = mix(i);
        let key = format!("customer-{:05}", h % 20_011);
        let mut value = format!(
            r#"{{"seq":{i},"customer":"{key}","order_id":"ord-{:012x}","amount_cents":{},"currency":"{}","items":["#,
            h >> 16,
            (h >> 7) % 250_000,
            CURRENCIES[(h >> 3) as usize % CURRENCIES.len()],
        );
        for k in 0..1 + (h % 4) {
            if k > 0 {
                value.push(',');
            }
            let _ = write!(
                value,
                r#"{{"sku":"sku-{:05}","qty":{}}}"#,
                (h >> (k * 9)) % 50_000,
                1 + (h >> (k * 5 + 20)) % 9
            );
        }
        let note = (h >> 40) as usize % NOTE.len();
        let _ = write!(value, r#"],"note":"{}"}}"#, &NOTE[..note]);
        Expected {
            key,
            value,
            seq: i.to_string(),
            trace_id: format!("{:016x}", mix(i ^ 0x7ace)),
            // Explicit and not monotonic: a later record may be a few
            // milliseconds older than the one before it.
            timestamp: BASE_TIMESTAMP + 2 * i as i64 + (h % 5) as i64,
        }
    }

    fn record(&self) -> Record {
        Record::new(TOPIC)
            .key(self.key.clone())
            .value(self.value.clone())
            .timestamp(self.timestamp)
            .header("seq", self.seq.clone())
            .header("trace-id", self.trace_id.clone())
            .header("content-type", "application/json")
            .header("empty", "")
            .with_header(Header::null("retry-of"))
    }

    /// Bytes of key, value and headers (names and values).
    fn payload_len(&self) -> usize {
        self.key.len()
            + self.value.len()
            + "seq".len()
            + self.seq.len()
            + "trace-id".len()
            + self.trace_id.len()
            + "content-type".len()
            + "application/json".len()
            + "empty".len()
            + "retry-of".len()
    }

    fn partition(&self) -> i32 {
        murmur2_partition(self.key.as_bytes(), PARTITIONS as u32).unwrap()
    }
}

/// The index in a value that starts with `{"seq":<index>,`.
fn index_of(value: &[u8]) -> usize {
    let digits = value
        .strip_prefix(br#"{"seq":"#)
        .unwrap_or_else(|| panic!("not a workload value: {:?}", String::from_utf8_lossy(value)));
    let end = digits.iter().position(|b| *b == b',').unwrap();
    std::str::from_utf8(&digits[..end])
        .unwrap()
        .parse()
        .unwrap()
}

/// What producing reported: per record index, its offset.
struct Produced {
    offsets: Vec<i64>,
    payload_bytes: u64,
    bytes_sent: u64,
    elapsed: Duration,
}

/// The consumer's progress, for a producer that must not run too far ahead
/// of it.
#[derive(Clone, Default)]
struct Progress {
    read: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

/// Marks the consumer stopped however it ends, panics included.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Sends the `n` workload records in index order and checks every delivery
/// report as it arrives. `log_append_time`: the broker reports a log append
/// time instead of the record's timestamp (the librdkafka mock does). With
/// `ahead`, sending pauses while more than that many records are not yet
/// read by the consumer, and stops if the consumer does.
async fn produce(
    bootstrap: &str,
    n: usize,
    compression: Compression,
    log_append_time: bool,
    ahead: Option<(usize, &Progress)>,
) -> Produced {
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .acks(Acks::All)
        .compression(compression)
        // Batches of several records even when a loaded machine sends slowly.
        .linger(Duration::from_millis(20))
        .request_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    // Reports are checked by a task of their own, in send order, while
    // sending goes on; only the offset of each record is kept.
    let (tx, mut rx) = mpsc::unbounded_channel::<DeliveryFuture>();
    let reports = tokio::spawn(async move {
        let mut offsets = Vec::with_capacity(n);
        let mut next = [0i64; PARTITIONS as usize];
        while let Some(delivery) = rx.recv().await {
            let i = offsets.len();
            let md = delivery
                .await
                .unwrap_or_else(|e| panic!("record {i} failed: {e}"));
            let want = Expected::new(i);
            assert_eq!(md.topic, TOPIC);
            assert_eq!(
                md.partition,
                want.partition(),
                "record {i} not where murmur2 puts its key"
            );
            if !log_append_time {
                assert_eq!(
                    md.timestamp, want.timestamp,
                    "record {i}: reported timestamp"
                );
            }
            let p = md.partition as usize;
            assert_eq!(
                md.offset, next[p],
                "record {i}: partition {p} offsets must count up in send order"
            );
            next[p] += 1;
            offsets.push(md.offset);
        }
        offsets
    });
    let mut payload_bytes = 0u64;
    for i in 0..n {
        if let Some((window, progress)) = ahead {
            while i >= progress.read.load(Ordering::Acquire) + window {
                if progress.stopped.load(Ordering::Acquire) {
                    // The consumer failed; its panic says why.
                    drop(tx);
                    let _ = reports.await;
                    return Produced {
                        offsets: Vec::new(),
                        payload_bytes,
                        bytes_sent: 0,
                        elapsed: started.elapsed(),
                    };
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let record = Expected::new(i);
        payload_bytes += record.payload_len() as u64;
        let delivery = producer
            .send(record.record())
            .await
            .unwrap_or_else(|e| panic!("send of record {i}: {e}"));
        tx.send(delivery).unwrap();
    }
    drop(tx);
    let offsets = reports.await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(offsets.len(), n);
    let stats = producer.stats();
    assert_eq!(stats.records_sent, n as u64, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.queued_bytes, 0, "{stats:?}");
    assert_eq!(stats.queued_records, 0, "{stats:?}");
    assert!(
        stats.batches_sent > 0 && stats.batches_sent <= n as u64,
        "{stats:?}"
    );
    producer.close(Duration::from_secs(10)).await.unwrap();
    Produced {
        offsets,
        payload_bytes,
        bytes_sent: stats.bytes_sent,
        elapsed,
    }
}

/// Reads the topic back with rust-rdkafka's consumer and checks every
/// record against the workload: exactly once, per-partition send order,
/// contents. Returns the offset each record was read at, by index.
fn consume_and_check(bootstrap: &str, n: usize, progress: &Progress) -> Vec<i64> {
    let _stopped = StopOnDrop(Arc::clone(&progress.stopped));
    let mut read_at = vec![-1i64; n];
    let mut last_index: [Option<usize>; PARTITIONS as usize] = [None; PARTITIONS as usize];
    let check = |m: &BorrowedMessage<'_>| {
        let value = m.payload().expect("a value");
        let i = index_of(value);
        assert!(i < n, "index {i} was never sent");
        let p = m.partition();
        assert_eq!(
            read_at[i],
            -1,
            "record {i} read twice (partition {p}, offsets {} and {})",
            read_at[i],
            m.offset()
        );
        read_at[i] = m.offset();
        let want = Expected::new(i);
        assert_eq!(p, want.partition(), "record {i}: partition");
        if let Some(prev) = last_index[p as usize] {
            assert!(
                prev < i,
                "partition {p}: record {i} after record {prev}, not in send order"
            );
        }
        last_index[p as usize] = Some(i);
        assert_eq!(m.key(), Some(want.key.as_bytes()), "record {i}: key");
        assert_eq!(value, want.value.as_bytes(), "record {i}: value");
        assert_eq!(
            m.timestamp().to_millis(),
            Some(want.timestamp),
            "record {i}: timestamp"
        );
        let headers: Vec<(&str, Option<&[u8]>)> = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default();
        let expected_headers: [(&str, Option<&[u8]>); 5] = [
            ("seq", Some(want.seq.as_bytes())),
            ("trace-id", Some(want.trace_id.as_bytes())),
            ("content-type", Some(b"application/json")),
            ("empty", Some(b"")),
            ("retry-of", None),
        ];
        assert_eq!(headers, expected_headers, "record {i}: headers");
        progress.read.fetch_add(1, Ordering::Release);
    };
    let handed = workload::consume_with(
        bootstrap,
        TOPIC,
        PARTITIONS,
        n,
        Duration::from_secs(30),
        Duration::from_millis(500),
        check,
    );
    assert_eq!(handed, n, "messages read back");
    read_at
}

/// Every record was read at the offset its delivery report gave.
fn check_positions(reported: &[i64], read_at: &[i64]) {
    assert_eq!(reported.len(), read_at.len());
    let mismatch = (0..reported.len()).find(|&i| reported[i] != read_at[i]);
    assert_eq!(
        mismatch.map(|i| (i, reported[i], read_at[i])),
        None,
        "(record, reported offset, offset read at)"
    );
}

/// The codec must have done something: JSON-like values shrink well.
fn check_compression(compression: Compression, produced: &Produced) {
    let ratio = produced.bytes_sent as f64 / produced.payload_bytes as f64;
    if compression == Compression::None {
        assert!(
            ratio > 1.0,
            "uncompressed batches ({} bytes) cannot be smaller than the payload ({} bytes)",
            produced.bytes_sent,
            produced.payload_bytes
        );
    } else {
        assert!(
            ratio < 0.7,
            "{compression:?}: {} bytes on the wire for {} bytes of payload",
            produced.bytes_sent,
            produced.payload_bytes
        );
    }
}

/// One line of figures per run; `read` says how the log was read back.
fn report(cluster: &str, compression: Compression, produced: &Produced, read: &str) {
    let n = produced.offsets.len();
    eprintln!(
        "{cluster} {compression:?}: {n} records produced in {:.2?} ({:.0} records/s), \
         {:.1} MB payload as {:.1} MB of batches, {read}",
        produced.elapsed,
        n as f64 / produced.elapsed.as_secs_f64(),
        produced.payload_bytes as f64 / 1e6,
        produced.bytes_sent as f64 / 1e6,
    );
}

/// Produces everything, then reads the whole log back from the beginning.
async fn fake_cluster_run(compression: Compression) {
    let n = records_per_run();
    let cluster = FakeCluster::builder()
        .brokers(BROKERS)
        .topic(TOPIC, PARTITIONS)
        .build()
        .await;
    let bootstrap = cluster.bootstrap_servers();
    let produced = produce(&bootstrap, n, compression, false, None).await;
    check_compression(compression, &produced);

    // The fake's own view: every partition holds exactly its records, in
    // batches of the configured codec. A batch goes uncompressed only when
    // the codec would not shrink it (a batch of one short record, say).
    let mut per_partition = [0i64; PARTITIONS as usize];
    for i in 0..n {
        per_partition[Expected::new(i).partition() as usize] += 1;
    }
    let (mut records, mut in_codec, mut fallbacks) = (0usize, 0usize, 0usize);
    for p in 0..PARTITIONS {
        assert_eq!(
            cluster.high_watermark(TOPIC, p),
            per_partition[p as usize],
            "partition {p}: high watermark"
        );
        for raw in cluster.raw_batches(TOPIC, p) {
            let attributes = i16::from_be_bytes([raw[21], raw[22]]);
            let count = i32::from_be_bytes([raw[57], raw[58], raw[59], raw[60]]) as usize;
            let codec = (attributes & 0x7) as u8;
            records += count;
            if codec == compression.codec_id() {
                in_codec += count;
                continue;
            }
            assert_eq!(
                codec, 0,
                "partition {p}: a batch with codec {codec}, expected {compression:?}"
            );
            let section = &raw[BATCH_HEADER_LEN..];
            let mut compressed = Vec::new();
            smartkafka::compression::compress(compression, None, section, &mut compressed).unwrap();
            assert!(
                compressed.len() * 10 >= section.len() * 9,
                "partition {p}: a batch of {count} records sent uncompressed \
                 ({} bytes) that {compression:?} makes {} bytes",
                section.len(),
                compressed.len()
            );
            fallbacks += 1;
        }
    }
    assert_eq!(records, n, "records stored");
    assert!(
        in_codec * 2 >= n,
        "only {in_codec} of {n} records in {compression:?} batches ({fallbacks} uncompressed)"
    );

    let started = Instant::now();
    let read_at =
        tokio::task::spawn_blocking(move || consume_and_check(&bootstrap, n, &Progress::default()))
            .await
            .unwrap();
    check_positions(&produced.offsets, &read_at);
    let read = format!(
        "{fallbacks} batches fell back to no compression, read back afterwards in {:.2?}",
        started.elapsed()
    );
    report("fake cluster", compression, &produced, &read);
}

/// The librdkafka mock keeps only the last 5 MiB of each partition's log,
/// so the consumer reads while records are produced, and the producer
/// never gets more than `MOCK_WINDOW` records ahead of it: far less than
/// 5 MiB per partition even uncompressed.
const MOCK_WINDOW: usize = 24_000;

async fn mock_cluster_run(compression: Compression) {
    let n = records_per_run();
    let cluster = MockCluster::new(BROKERS as i32).unwrap();
    cluster
        .create_topic(TOPIC, PARTITIONS, BROKERS as i32)
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let progress = Progress::default();
    let started = Instant::now();
    let consumer = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        let progress = progress.clone();
        move || consume_and_check(&bootstrap, n, &progress)
    });
    let produced = produce(
        &bootstrap,
        n,
        compression,
        true,
        Some((MOCK_WINDOW, &progress)),
    )
    .await;
    let read_at = consumer.await.unwrap();
    let read = format!("read alongside, all in {:.2?}", started.elapsed());
    check_compression(compression, &produced);
    check_positions(&produced.offsets, &read_at);
    report("librdkafka mock", compression, &produced, &read);
    drop(cluster);
}

macro_rules! volume_tests {
    ($($fake:ident, $mock:ident: $codec:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $fake() {
            fake_cluster_run($codec).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mock() {
            mock_cluster_run($codec).await;
        }
    )*};
}

volume_tests! {
    fake_cluster_uncompressed_exactly_once_in_order,
    librdkafka_mock_uncompressed_exactly_once_in_order: Compression::None;
    fake_cluster_gzip_exactly_once_in_order,
    librdkafka_mock_gzip_exactly_once_in_order: Compression::Gzip;
    fake_cluster_snappy_exactly_once_in_order,
    librdkafka_mock_snappy_exactly_once_in_order: Compression::Snappy;
    fake_cluster_lz4_exactly_once_in_order,
    librdkafka_mock_lz4_exactly_once_in_order: Compression::Lz4;
    fake_cluster_zstd_exactly_once_in_order,
    librdkafka_mock_zstd_exactly_once_in_order: Compression::Zstd;
}
