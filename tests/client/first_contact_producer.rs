//! A fresh producer's first records, against the in-process fake cluster:
//! nothing is lost or misreported while the topic's metadata is on its way,
//! records that can never be sent fail at once, and the blocking producer
//! behaves like the async one (drop flushes, `spawn_blocking` works).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::{Error, ErrorKind, Producer, ProducerConfig, Record, Topic};

const PARTITIONS: i32 = 3;

async fn cluster() -> FakeCluster {
    FakeCluster::builder()
        .brokers(2)
        .topic("events", PARTITIONS)
        .build()
        .await
}

/// What the delivery callback saw: tags delivered, and failures.
#[derive(Default)]
struct Reports {
    delivered: AtomicU64,
    failed: Mutex<Vec<(u64, String)>>,
}

/// Reads the log back: every value must be `event {i}`, each `i` once, in
/// increasing order within its partition. Returns the ids found.
fn read_log(cluster: &FakeCluster, topic: &str) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    for p in 0..PARTITIONS {
        let mut last = None;
        for record in cluster.records(topic, p) {
            let value = std::str::from_utf8(record.value.as_ref().expect("a value")).unwrap();
            let id: u64 = value
                .strip_prefix("event ")
                .expect("written by the test")
                .parse()
                .unwrap();
            assert!(seen.insert(id), "record {id} stored twice");
            assert!(last < Some(id), "partition {p}: {id} after {last:?}");
            last = Some(id);
        }
    }
    seen
}

/// The README's tagged-send loop, as written, on a fresh producer: every
/// record reaches the log once, in order per partition, even those handed
/// over before the topic's metadata arrived (they are held, not failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tagged_loop_stores_every_record_on_a_fresh_producer() {
    // Enough that the loop outruns the first metadata answer in a debug
    // build; the full 1,000,000 of the README runs the same way in release.
    let count: u64 = std::env::var("FIRST_CONTACT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let cluster = cluster().await;
    let reports = Arc::new(Reports::default());
    let seen = Arc::clone(&reports);
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .on_delivery(move |tag, result| match result {
            Ok(_) => {
                seen.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => seen.failed.lock().unwrap().push((tag, error.to_string())),
        })
        .build()
        .await
        .unwrap();

    // The loop of the README, word for word but for the count.
    let run = async {
        let events = Topic::from("events");
        for i in 0..count {
            let record = Record::new(events.clone()).value(format!("event {i}"));
            match producer.try_send_tagged(record, i) {
                Ok(()) => {}
                // The buffer is full right now: wait for space instead.
                Err(e) if *e.kind() == ErrorKind::BufferExhausted => {
                    producer
                        .send_tagged(Record::new(events.clone()).value(format!("event {i}")), i)
                        .await?
                }
                Err(e) => return Err(e),
            }
        }
        producer.flush().await?;
        Ok::<(), Error>(())
    };
    run.await.unwrap();

    let failed = reports.failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} records failed, the first: {:?}",
        failed.len(),
        failed.first()
    );
    let stored = read_log(&cluster, "events");
    assert_eq!(stored.len() as u64, count, "records in the log");
    assert_eq!(stored.last(), Some(&(count - 1)));
    assert_eq!(reports.delivered.load(Ordering::Relaxed), count);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// A topic that never appears: held records fail after `max_block` with an
/// error naming the topic, and none of them is stored.
#[tokio::test]
async fn try_send_to_a_missing_topic_fails_at_max_block_naming_it() {
    let cluster = cluster().await;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .max_block(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let delivery = producer
        .try_send(Record::new("no-such-topic").value("x"))
        .unwrap();
    let err = delivery.await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("no-such-topic"), "{err}");
    assert!(!err.possibly_persisted());
    assert!(cluster.partition_count("no-such-topic").is_none());
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Records the producer can never send fail when handed over, through
/// every send method, as `send` always did.
#[tokio::test]
async fn a_record_above_max_request_size_fails_at_once_everywhere() {
    let cluster = cluster().await;
    let producer =
        Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()).max_request_size(1024))
            .await
            .unwrap();
    let big = || Record::new("events").value(vec![7u8; 4096]);

    let err = producer.try_send(big()).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RecordTooLarge, "{err}");
    assert!(err.to_string().contains("max_request_size"), "{err}");
    let err = producer.try_send_tagged(big(), 1).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RecordTooLarge, "{err}");
    let err = producer.send(big()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RecordTooLarge, "{err}");
    let err = producer.send_tagged(big(), 2).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RecordTooLarge, "{err}");

    // A record that fits still goes through.
    producer
        .send_and_wait(Record::new("events").partition(0).value("event 0"))
        .await
        .unwrap();
    producer.close(Duration::from_secs(5)).await.unwrap();
    assert_eq!(read_log(&cluster, "events").len(), 1);
}

fn blocking_config(cluster: &FakeCluster) -> ProducerConfig {
    ProducerConfig::new(&cluster.bootstrap_servers())
}

/// Dropping a blocking producer with records in flight delivers them, as
/// the async producer does: nothing is lost silently.
#[test]
fn dropping_a_blocking_producer_delivers_what_it_holds() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(cluster());
    let producer = smartkafka::blocking::Producer::new(blocking_config(&cluster)).unwrap();
    for i in 0..1_000u64 {
        let record = Record::new("events").value(format!("event {i}"));
        producer.try_send_tagged(record, i).unwrap();
    }
    drop(producer);
    let stored = read_log(&cluster, "events");
    assert_eq!(stored.len(), 1_000, "records in the log after drop");
}

/// Waits (without asserting anything about time) until `count` records
/// are in the log; gives up after a minute.
async fn wait_for_log(cluster: &FakeCluster, count: usize) -> usize {
    let mut stored = 0;
    for _ in 0..600 {
        stored = read_log(cluster, "events").len();
        if stored >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stored
}

/// The blocking producer inside `spawn_blocking` works; in async code its
/// blocking calls refuse with their own error kind; dropping it there does
/// not panic and still delivers what it holds.
#[tokio::test]
async fn blocking_producer_in_spawn_blocking_and_async_code() {
    let cluster = cluster().await;
    let config = blocking_config(&cluster);
    let producer = tokio::task::spawn_blocking(move || {
        let producer = smartkafka::blocking::Producer::new(config)?;
        producer.send_and_wait(Record::new("events").partition(0).value("event 0"))?;
        producer
            .send(Record::new("events").value("event 1"))?
            .wait()?;
        producer.flush()?;
        Ok::<_, Error>(producer)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(read_log(&cluster, "events").len(), 2);

    // Blocking calls from async code: a clear error of their own kind.
    let err = producer.flush().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BlockingInAsyncContext, "{err}");
    assert!(!err.is_config());
    let err = producer
        .send(Record::new("events").value("no"))
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BlockingInAsyncContext, "{err}");
    let err = smartkafka::blocking::Producer::new(blocking_config(&cluster)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BlockingInAsyncContext, "{err}");

    // The calls that never block work anywhere; dropping here neither
    // panics nor loses what was handed over.
    for i in 2..502u64 {
        let record = Record::new("events").value(format!("event {i}"));
        producer.try_send_tagged(record, i).unwrap();
    }
    drop(producer);
    assert_eq!(wait_for_log(&cluster, 502).await, 502);
}

/// A record for a partition the topic does not have fails with an error
/// that names the topic as well as the partition.
#[tokio::test]
async fn a_missing_partition_error_names_the_topic() {
    let cluster = cluster().await;
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()))
        .await
        .unwrap();
    let err = producer
        .send_and_wait(Record::new("events").partition(99).value("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidPartition, "{err}");
    let message = err.to_string();
    assert!(message.contains("`events`"), "{message}");
    assert!(message.contains("partition 99"), "{message}");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Records held for a topic's metadata count against `buffer_memory`: once
/// they fill it, `try_send` refuses at once rather than holding more.
#[tokio::test]
async fn held_records_count_against_buffer_memory() {
    let cluster = cluster().await;
    let buffer = 64 * 1024;
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .buffer_memory(buffer)
        .build()
        .await
        .unwrap();
    let mut held = 0usize;
    let err = loop {
        match producer.try_send_tagged(Record::new("not-yet").value(vec![1u8; 1024]), 0) {
            Ok(()) => held += 1,
            Err(e) => break e,
        }
        assert!(held <= buffer / 1024, "{held} records of 1 KiB held");
    };
    assert_eq!(err.kind(), &ErrorKind::BufferExhausted, "{err}");
    assert!(held > 0);
    let err = producer.close(Duration::from_millis(10)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

/// The longest durations the configuration accepts drive a real producer
/// without overflow: records go out on flush, and close returns. An absurd
/// linger is refused at build, naming the field (it used to validate and
/// then panic the driver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_durations_work_and_absurd_ones_are_refused() {
    let cluster = cluster().await;
    let e = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .linger(Duration::from_secs(u64::MAX / 2))
        .build()
        .await
        .expect_err("an absurd linger");
    assert_eq!(e.kind(), &ErrorKind::Config { field: "linger" }, "{e}");

    let longest = Duration::from_millis(i32::MAX as u64);
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .linger(longest / 2) // delivery_timeout must cover linger + request_timeout
        .max_block(longest)
        .delivery_timeout(longest)
        .metadata_max_age(longest)
        .retry_backoff_max(longest)
        .build()
        .await
        .expect("the longest durations are valid");
    let deliveries: Vec<_> = futures_join(&producer, 10).await;
    producer
        .flush()
        .await
        .expect("flush sends what linger holds");
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close(longest).await.expect("close");
    let stored: usize = (0..PARTITIONS)
        .map(|p| cluster.records("events", p).len())
        .sum();
    assert_eq!(stored, 10);
}

async fn futures_join(producer: &Producer, n: u64) -> Vec<smartkafka::DeliveryFuture> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            producer
                .send(Record::new("events").value(format!("event {i}")))
                .await
                .expect("queued"),
        );
    }
    out
}

/// Statistics every interval, as librdkafka's `statistics.interval.ms`:
/// several snapshots arrive while records flow, their counts grow, and
/// they stop once the producer is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_arrive_every_interval_and_stop_at_close() {
    let cluster = cluster().await;
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .on_statistics(Duration::from_millis(20), move |stats| {
            sink.lock().unwrap().push(stats.records_sent);
        })
        .build()
        .await
        .expect("producer");
    for round in 0..5u64 {
        for i in 0..100 {
            producer
                .send_and_wait(Record::new("events").value(format!("event {}", round * 100 + i)))
                .await
                .expect("delivered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    producer.close(Duration::from_secs(5)).await.expect("close");
    // A snapshot taken just as close began may still land: let it.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let at_close = seen.lock().unwrap().clone();
    assert!(at_close.len() >= 5, "{at_close:?}");
    assert!(at_close.windows(2).all(|w| w[0] <= w[1]), "{at_close:?}");
    assert!(at_close.last().copied().unwrap_or(0) >= 400, "{at_close:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        at_close.len(),
        "no snapshot after close"
    );
    drop(producer);

    let e = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .on_statistics(Duration::ZERO, |_| {})
        .build()
        .await
        .expect_err("a zero interval");
    assert_eq!(
        e.kind(),
        &ErrorKind::Config {
            field: "statistics_interval"
        },
        "{e}"
    );
}
