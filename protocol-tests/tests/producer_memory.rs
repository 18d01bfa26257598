//! What buffered records really cost: with the broker down, a flood of
//! small fire-and-forget records (`try_send_tagged`) fills the buffer; the
//! heap the producer then holds, counted by a counting allocator, stays
//! within `buffer_memory` (plus a fixed allowance for structures that grow
//! once: the inbox's spare segments, the record table's capacity), and per
//! buffered record within the record's own bytes (key and value) plus 72
//! (55-64 in this test, once what grows once has grown before counting:
//! its framing in the batch, about 9; the engine's entry for it, 16, and
//! the driver's, 16; its share of the batch buffers, which are all counted,
//! none left spare by the warm-up; less what the tables' capacity already
//! held).
//!
//! And what sending costs the allocator: with the broker up and records
//! flowing, the tagged path (`try_send_tagged` with an `on_delivery`
//! callback) allocates per batch and per request, never per record; and a
//! batch itself, from its first record to its stamp, allocates only its
//! buffer and the buffer's shared count.
//!
//! The broker is the librdkafka mock, whose memory is C's and not counted;
//! the values are static, so the only copy of each payload is the one the
//! producer encoded. The counts with a producer running are process-wide,
//! so those tests take turns ([`TURN`]); the batch's count is its thread's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::mocking::MockCluster;
use smartkafka::{ErrorKind, Producer, Record, Topic};

mod support;

use support::alloc::{Counting, allocations, allocations_by, live};
use support::fixtures;

#[global_allocator]
static ALLOC: Counting = Counting;

const BUFFER: usize = 8 * 1024 * 1024;
/// Structures that grow once rather than per record.
const FIXED: usize = 1024 * 1024;
/// Records sent (and delivered) before counting, so that what grows once
/// has grown.
const GROW: usize = 4096;
static VALUE: [u8; 100] = [b'v'; 100];
/// Held by each test for its whole run: the counts are process-wide.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_small_records_stay_within_the_cap() {
    let _turn = TURN.lock().await;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 6, 1).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .buffer_memory(BUFFER)
        .batch_size(64 * 1024)
        .delivery_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    let keys = keys();
    let topic = Topic::from("t");
    // What grows once is grown before counting: the hand-off's spare
    // segments fill up once more records than they hold have gone through.
    for i in 0..GROW {
        let record = Record::new(topic.clone())
            .key(keys[i % keys.len()].clone())
            .value(Bytes::from_static(&VALUE));
        producer.send_tagged(record, i as u64).await.unwrap();
    }
    producer.flush().await.unwrap();
    cluster.broker_down(1).unwrap();
    // Idle for two of the spare pool's trim intervals (a second each) and
    // a margin: the batch buffers the warm-up left spare are given back,
    // so every buffer the flood fills is counted. (Counted from 100 ms,
    // whether they were still there depended on when the last trim fell:
    // about 17 bytes per record less when they were.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = live();

    let mut accepted = 0usize;
    loop {
        let record = Record::new(topic.clone())
            .key(keys[accepted % keys.len()].clone())
            .value(Bytes::from_static(&VALUE));
        match producer.try_send_tagged(record, accepted as u64) {
            Ok(()) => accepted += 1,
            Err(e) if *e.kind() == ErrorKind::BufferExhausted => {
                // Full, or the driver has not taken the queue yet: give it
                // a moment, then try once more before calling it full.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if producer.stats().queued_bytes as usize + 1024 < BUFFER {
                    continue;
                }
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = (live() - before).max(0) as usize;
    let own = VALUE.len() + keys[0].len();
    let per_record = held as f64 / accepted as f64;
    println!(
        "{accepted} records of {own} bytes buffered: {held} bytes held, {per_record:.1} per record"
    );
    assert!(accepted > BUFFER / 400, "only {accepted} records fit");
    assert!(
        held <= BUFFER + FIXED,
        "{held} bytes held for a buffer of {BUFFER}"
    );
    assert!(
        per_record <= (own + 72) as f64,
        "{per_record:.1} bytes per buffered record of {own}"
    );

    // Back up: everything is delivered.
    cluster.broker_up(1).unwrap();
    producer.flush().await.unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, accepted as u64 + 1 + GROW as u64);
    assert_eq!(stats.errors, 0);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// 10,000 distinct keys of 9 bytes.
fn keys() -> Vec<Bytes> {
    (0..10_000)
        .map(|i| Bytes::from(format!("key-{i:05}")))
        .collect()
}

/// Sends `count` records of topic `t` with tags from `first`, keys cycling
/// over `keys`, waiting for space when the buffer is full, then flushes.
async fn send_tagged_flat_out(producer: &Producer, keys: &[Bytes], first: usize, count: usize) {
    let topic = Topic::from("t");
    for i in first..first + count {
        let record = || {
            Record::new(topic.clone())
                .key(keys[i % keys.len()].clone())
                .value(Bytes::from_static(&VALUE))
        };
        match producer.try_send_tagged(record(), i as u64) {
            Ok(()) => {}
            Err(e) if *e.kind() == ErrorKind::BufferExhausted => {
                producer.send_tagged(record(), i as u64).await.unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    producer.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_sends_allocate_per_batch_not_per_record() {
    let _turn = TURN.lock().await;
    const RECORDS: usize = 200_000;
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("t", 6, 1).unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (ok, bad) = (Arc::clone(&delivered), Arc::clone(&failed));
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .batch_size(64 * 1024)
        .linger(Duration::from_millis(5))
        .on_delivery(move |_, result| {
            let counter = if result.is_ok() { &ok } else { &bad };
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    let keys = keys();
    // A first round grows what grows once: tables, spare buffers, pools,
    // the keys' shared representation.
    send_tagged_flat_out(&producer, &keys, 0, RECORDS).await;

    let batches_before = producer.stats().batches_sent;
    let before = allocations();
    send_tagged_flat_out(&producer, &keys, RECORDS, RECORDS).await;
    let made = allocations() - before;
    let stats = producer.stats();
    let batches = stats.batches_sent - batches_before;
    let per_record = made as f64 / RECORDS as f64;
    let per_batch = made as f64 / batches as f64;
    println!(
        "{RECORDS} records of 100 bytes: {made} allocations ({per_record:.4} per record, \
         {per_batch:.1} per batch of {batches}), {} requests in all",
        stats.requests_sent
    );
    assert_eq!(delivered.load(Ordering::Relaxed), 2 * RECORDS as u64);
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    // One allocation per record would read 1.0; per batch and per request
    // is a few dozen per thousand records at most.
    assert!(
        per_record < 0.1,
        "{per_record:.4} allocations per record ({made} for {RECORDS})"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// A batch from its first record to its stamp allocates its buffer and
/// the buffer's shared count, nothing more: sealing hands the buffer over
/// as the batch, and stamping takes it back and hands it over again, both
/// in place. Over thousands of partitions a batch carries a record or two,
/// so what a batch allocates is what a record costs the allocator.
#[test]
fn a_batch_allocates_its_buffer_once_from_first_record_to_stamp() {
    use smartkafka::record_batch::{AppendOutcome, BatchBuilder, BatchConfig};

    const BATCHES: usize = 1_000;
    let value = [7u8; 100];
    let mut builder = BatchBuilder::new(BatchConfig::default(), 1_700_000_000_000);
    let mut one = |n: usize| {
        let timestamp = 1_700_000_000_000 + n as i64;
        builder.reset(timestamp);
        let appended = builder
            .try_append(timestamp, Some(b"key"), Some(&value), &[])
            .unwrap();
        assert_eq!(appended, AppendOutcome::Appended);
        let mut batch = builder.seal().unwrap();
        batch.stamp(7, 0, n as i32, false);
        batch
    };
    // The first batch goes out in the buffer the builder was made with.
    let mut stamped = vec![one(0)];
    stamped.reserve(BATCHES);
    // Counted on this thread: the other tests' producers may be winding
    // down on theirs.
    let ((), made) = allocations_by(|| {
        for n in 1..=BATCHES {
            stamped.push(one(n));
        }
    });
    println!("{BATCHES} one-record batches sealed and stamped: {made} allocations");
    // Two per batch: the buffer and its shared count (and none for the list
    // that holds the batches, sized before counting).
    assert_eq!(
        made,
        2 * BATCHES,
        "{made} allocations for {BATCHES} batches"
    );
    // Each batch holds its record under its stamp, and its checksum (read
    // and checked by the reader) covers the stamp.
    let mut scratch = Vec::new();
    for (n, batch) in stamped.iter().enumerate() {
        let read = smartkafka::record_batch::BatchReader::new(batch.bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(read.header().base_sequence, n as i32);
        assert_eq!(read.header().producer_id, 7);
        let records: Vec<_> = read.records(&mut scratch).unwrap().collect();
        assert_eq!(records.len(), 1);
        let record = records[0].as_ref().unwrap();
        assert_eq!(record.key(), Some(&b"key"[..]));
        assert_eq!(record.value(), Some(&value[..]));
    }
}
