//! Tagged sends: `send_tagged` / `try_send_tagged` with the producer's
//! delivery callback, against the librdkafka mock and the fake cluster.
//! The reports are checked against the log as read back (rust-rdkafka's
//! consumer, the fake's own log): every tag reported once, at the offset
//! where its record really is, in send order per partition; failures
//! reach the callback, errors returned by the call do not, and a
//! panicking callback does not stop the producer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::FakeCluster;
use rdkafka::mocking::MockCluster;
use smartkafka::{ErrorKind, Producer, ProducerBuilder, Record, RecordMetadata, Topic};

use crate::support::workload::*;

const PARTITIONS: i32 = 6;

type Reports = Arc<Mutex<Vec<(u64, Result<RecordMetadata, ErrorKind>)>>>;

async fn tagged_producer(bootstrap: &str, buffer_memory: usize) -> (Producer, Reports) {
    recorded(
        Producer::builder()
            .bootstrap_servers(bootstrap)
            .linger(Duration::from_millis(2))
            .buffer_memory(buffer_memory)
            .max_block(Duration::from_secs(10))
            .request_timeout(Duration::from_secs(10)),
    )
    .await
}

/// The producer `builder` makes, with a delivery callback that keeps every
/// report.
async fn recorded(builder: ProducerBuilder) -> (Producer, Reports) {
    let reports: Reports = Arc::default();
    let sink = Arc::clone(&reports);
    // The callback runs on the producer's task or its delivery thread, never
    // on both at once.
    let inside = Arc::new(AtomicBool::new(false));
    let producer = builder
        .on_delivery(move |tag, result| {
            assert!(
                !inside.swap(true, Ordering::SeqCst),
                "callback called twice at once"
            );
            let result = result.cloned().map_err(|e| e.kind().clone());
            sink.lock().unwrap().push((tag, result));
            inside.store(false, Ordering::SeqCst);
        })
        .build()
        .await
        .unwrap();
    (producer, reports)
}

/// Sends `n` workload records tagged with their index, through
/// `try_send_tagged` and, when the (small) buffer is full, `send_tagged`.
/// Returns the reports by tag, and how many went through each call.
async fn produce_tagged(bootstrap: &str, topic: &str, n: usize) -> (Vec<RecordMetadata>, usize) {
    let (producer, reports) = tagged_producer(bootstrap, 256 * 1024).await;
    let topic = Topic::from(topic);
    let mut waited = 0;
    for i in 0..n {
        let (key, value, headers, ts) = workload(i);
        let mut record = Record::new(topic.clone())
            .key(key)
            .value(value)
            .timestamp(ts);
        for (k, v) in headers {
            record = record.header(k, v);
        }
        if i == 0 {
            // The first record waits here for the topic's metadata (a
            // try_send would be held until it arrives, too).
            producer.send_tagged(record, 0).await.unwrap();
            continue;
        }
        match producer.try_send_tagged(record.clone(), i as u64) {
            Ok(()) => {}
            Err(e) if *e.kind() == ErrorKind::BufferExhausted => {
                waited += 1;
                producer.send_tagged(record, i as u64).await.unwrap();
            }
            Err(e) => panic!("record {i}: {e}"),
        }
    }
    producer.flush().await.unwrap();
    let reports = std::mem::take(&mut *reports.lock().unwrap());
    assert_eq!(reports.len(), n, "one report per record");
    let mut by_tag: Vec<Option<RecordMetadata>> = vec![None; n];
    let mut last_offset: BTreeMap<i32, (u64, i64)> = BTreeMap::new();
    for (tag, result) in reports {
        let md = result.unwrap_or_else(|e| panic!("record {tag} failed: {e:?}"));
        assert!(
            by_tag[tag as usize].is_none(),
            "record {tag} reported twice"
        );
        // Within a partition, reports come in send order with rising offsets.
        if let Some((before, offset)) = last_offset.insert(md.partition, (tag, md.offset)) {
            assert!(
                before < tag && offset < md.offset,
                "partition {}: record {tag} at {} reported after record {before} at {offset}",
                md.partition,
                md.offset
            );
        }
        by_tag[tag as usize] = Some(md);
    }
    assert_eq!(producer.stats().errors, 0);
    producer.close(Duration::from_secs(5)).await.unwrap();
    let reports = by_tag.into_iter().map(Option::unwrap).collect();
    (reports, waited)
}

fn sent_by_partition(reports: &[RecordMetadata]) -> BTreeMap<i32, Vec<usize>> {
    let mut sent: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, md) in reports.iter().enumerate() {
        sent.entry(md.partition).or_default().push(i);
    }
    sent
}

fn read_back(reports: &[RecordMetadata], consumed: &[ReadRecord]) -> BTreeMap<i32, Vec<usize>> {
    let mut read: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in consumed {
        let i = index_of(r.value.as_deref().unwrap());
        let (key, value, _, ts) = workload(i);
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()));
        assert_eq!(r.timestamp, ts);
        assert_eq!(
            (reports[i].partition, reports[i].offset),
            (r.partition, r.offset),
            "record {i} is not where its report says"
        );
        read.entry(r.partition).or_default().push(i);
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_tagged_reports_match_the_log() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("t", PARTITIONS, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let n = 20_000;
    let (reports, waited) = produce_tagged(&bootstrap, "t", n).await;
    assert!(
        waited > 0,
        "the small buffer should have made some sends wait"
    );
    let sent = sent_by_partition(&reports);
    let consumed = tokio::task::spawn_blocking(move || consume_all(&bootstrap, "t", PARTITIONS, n))
        .await
        .unwrap();
    let read = read_back(&reports, &consumed);
    assert_exactly_once_in_order(&sent, &read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_cluster_tagged_reports_match_the_log() {
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic("t", PARTITIONS)
        .build()
        .await;
    let n = 10_000;
    let (reports, _) = produce_tagged(&cluster.bootstrap_servers(), "t", n).await;
    let sent = sent_by_partition(&reports);
    let mut logged: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for r in cluster.records("t", p) {
            let i = index_of(r.value.as_ref().unwrap());
            assert_eq!((reports[i].partition, reports[i].offset), (p, r.offset));
            assert_eq!(reports[i].timestamp, r.timestamp, "record {i}'s timestamp");
            logged.entry(p).or_default().push(i);
        }
    }
    assert_exactly_once_in_order(&sent, &logged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_reach_the_callback_and_refusals_the_caller() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    let (producer, reports) = recorded(
        Producer::builder()
            .bootstrap_servers(&cluster.bootstrap_servers())
            .max_block(Duration::from_millis(300))
            .max_request_size(10_000),
    )
    .await;
    // Too large: refused by the call itself, never reported.
    let big = Record::new("t").value(vec![0u8; 20_000]);
    let refused = producer.send_tagged(big, 1).await.unwrap_err();
    assert_eq!(*refused.kind(), ErrorKind::RecordTooLarge);
    // An unknown topic: accepted by try_send_tagged, failed later, reported.
    producer
        .try_send_tagged(Record::new("no-such-topic").value("v"), 2)
        .unwrap();
    producer
        .send_tagged(Record::new("t").value("ok"), 3)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    producer.flush().await.unwrap();
    let mut got = std::mem::take(&mut *reports.lock().unwrap());
    got.sort_by_key(|(tag, _)| *tag);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, 2);
    assert_eq!(got[0].1, Err(ErrorKind::Timeout));
    assert_eq!(got[1].0, 3);
    let md = got[1].1.as_ref().unwrap();
    assert_eq!((md.topic.as_str(), md.partition), ("t", 0));
    let logged = cluster.records("t", 0);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].offset, md.offset);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Records with futures and tagged records in the same batches: each
/// future resolves and each tag is reported once, with the offset and
/// timestamp its record has in the log. (A batch whose records are all
/// tagged goes to the callback whole; one that mixes lists its tags apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_and_tags_in_one_batch_each_get_their_record() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    let (producer, reports) = recorded(
        Producer::builder()
            .bootstrap_servers(&cluster.bootstrap_servers())
            // A long linger, so that each batch gathers many records.
            .linger(Duration::from_millis(50)),
    )
    .await;
    let n = 600u64;
    let mut futures = Vec::new();
    for i in 0..n {
        let record = Record::new("t")
            .value(format!("r{i}"))
            .timestamp(1_700_000_000_000 + i as i64);
        // The first half: runs of tagged records with a future now and
        // then; the second half, after a flush, tagged only.
        if i == n / 2 {
            producer.flush().await.unwrap();
        }
        if i % 7 == 3 && i < n / 2 {
            futures.push((i, producer.send(record).await.unwrap()));
        } else {
            producer.send_tagged(record, i).await.unwrap();
        }
    }
    producer.flush().await.unwrap();
    let logged: BTreeMap<String, (i64, i64)> = cluster
        .records("t", 0)
        .into_iter()
        .map(|r| {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            (value, (r.offset, r.timestamp))
        })
        .collect();
    assert_eq!(logged.len(), n as usize);
    let mut seen = vec![false; n as usize];
    for (i, future) in futures {
        let md = future.await.unwrap();
        assert_eq!(
            logged[&format!("r{i}")],
            (md.offset, md.timestamp),
            "record {i}"
        );
        seen[i as usize] = true;
    }
    for (tag, result) in std::mem::take(&mut *reports.lock().unwrap()) {
        let md = result.unwrap();
        assert!(!seen[tag as usize], "record {tag} reported twice");
        assert_eq!(
            logged[&format!("r{tag}")],
            (md.offset, md.timestamp),
            "record {tag}"
        );
        seen[tag as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "every record reported");
    assert!(
        producer.stats().avg_batch_records() > 10,
        "batches held many records each"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_does_not_stop_the_producer() {
    let cluster = FakeCluster::builder().topic("t", 2).build().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .on_delivery(move |tag, result| {
            assert!(result.is_ok());
            if tag % 10 == 3 {
                panic!("callback fails on {tag}");
            }
            sink.lock().unwrap().push(tag);
        })
        .build()
        .await
        .unwrap();
    for tag in 0..50 {
        producer
            .send_tagged(Record::new("t").key(format!("k{tag}")).value("v"), tag)
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    // A record with a future after the panics is still delivered.
    let md = producer
        .send(Record::new("t").key("k").value("after"))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    seen.sort_unstable();
    let want: Vec<u64> = (0..50).filter(|t| t % 10 != 3).collect();
    assert_eq!(seen, want);
    let total: usize = (0..2).map(|p| cluster.records("t", p).len()).sum();
    assert_eq!(total, 51);
    assert!(md.offset >= 0);
    producer.close(Duration::from_secs(5)).await.unwrap();
}
