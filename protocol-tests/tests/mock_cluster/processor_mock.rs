//! The processor runner against librdkafka's mock cluster, whose group
//! coordinator and log we did not write: failing records reach the
//! dead-letter topic with their failure headers, a retry topic gives a
//! record a second chance after its delay, undecodable records are
//! dead-lettered, keys stay in order under concurrency and across a crash,
//! and after a graceful shutdown nothing is left to read from the group's
//! commits. Topics and committed offsets are read back with rust-rdkafka.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use smartkafka::consumer::{Assignor, AutoOffsetReset, Consumer};
use smartkafka::processor::{
    ProcessError, ProcessorRunner, RunStats, RunSummary, Typed, TypedProcessor, TypedRecord,
};
use smartkafka::serialization::Utf8;
use smartkafka::{Acks, Producer, Record, RecordMetadata};
use tokio::time::Instant;

use crate::support::recorder::{Call, Recorder};
use crate::support::workload::{ReadRecord, consume_all};

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

fn cluster(topics: &[(&str, i32)]) -> Mock {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    for (topic, partitions) in topics {
        cluster
            .create_topic(topic, *partitions, 1)
            .expect("create the topic");
    }
    cluster
}

async fn consumer(cluster: &Mock, group: &str, session: Duration) -> Consumer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Consumer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .group_id(group)
        .enable_auto_commit(false)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .assignors(vec![Assignor::Range])
        .heartbeat_interval(Duration::from_millis(100))
        .session_timeout(session)
        .max_poll_interval(session * 2)
        .build()
        .await
        .expect("consumer")
}

async fn producer(cluster: &Mock) -> Producer {
    Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .acks(Acks::All)
        .build()
        .await
        .expect("producer")
}

/// Writes `(key, value)` records to `topic`, returning where each landed.
async fn write(
    producer: &Producer,
    topic: &str,
    records: &[(Option<String>, Vec<u8>)],
) -> Vec<RecordMetadata> {
    let mut out = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut record = Record::new(topic)
            .value(value.clone())
            .header("trace", format!("t{i}"));
        if let Some(key) = key {
            record = record.key(key.clone());
        }
        out.push(producer.send_and_wait(record).await.expect("written"));
    }
    out
}

/// Completes once `done` holds for the run's counts.
async fn until(stats: RunStats, done: impl Fn(&RunSummary) -> bool) {
    while !done(&stats.snapshot()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `expected` records of `topic` back with rust-rdkafka's consumer.
async fn read(cluster: &Mock, topic: &str, partitions: i32, expected: usize) -> Vec<ReadRecord> {
    let bootstrap = cluster.bootstrap_servers();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, partitions, expected))
        .await
        .expect("reader")
}

fn header<'a>(record: &'a ReadRecord, key: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| std::str::from_utf8(v).unwrap())
}

/// Per partition of `topic`: the offset `group` committed (-1 for none) and
/// the partition's end, read with rust-rdkafka.
async fn committed_and_ends(
    cluster: &Mock,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(i64, i64)> {
    let bootstrap = cluster.bootstrap_servers();
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let committed = reader
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap();
        (0..partitions)
            .map(|p| {
                let (_, end) = reader
                    .fetch_watermarks(&topic, p, Duration::from_secs(5))
                    .unwrap();
                let offset = committed
                    .find_partition(&topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(-1);
                (offset, end)
            })
            .collect()
    })
    .await
    .expect("reader")
}

fn assert_committed_to_end(positions: &[(i64, i64)]) {
    for (p, (committed, end)) in positions.iter().enumerate() {
        assert_eq!(committed, end, "partition {p} committed to its end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_records_reach_the_dead_letter_topic_with_their_headers_and_all_is_committed() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(&[("orders", 3), ("orders.dlt", 1)]);
    let producer = producer(&cluster).await;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..30)
        .map(|i| {
            let value = if i % 10 == 3 {
                format!("bad-{i}")
            } else {
                format!("ok-{i}")
            };
            (Some(format!("k{}", i % 5)), value.into_bytes())
        })
        .collect();
    let written = write(&producer, "orders", &records).await;

    let processor = Recorder::new(|value, _| {
        if value.starts_with("bad") {
            Err(ProcessError::new(format!("cannot handle {value}")))
        } else {
            Ok(())
        }
    });
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "dlq", Duration::from_secs(6)).await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["orders"])
    .max_attempts(2)
    .backoff(Duration::from_millis(5), Duration::from_millis(20))
    .commit_interval(Duration::from_millis(50))
    .build()
    .expect("runner");
    let stats = runner.stats();
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        runner.run_until(until(stats, |s| s.processed == 27 && s.dead_lettered == 3)),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    assert_eq!(
        (
            summary.consumed,
            summary.processed,
            summary.failed,
            summary.dead_lettered
        ),
        (30, 27, 6, 3)
    );
    assert_eq!(processor.calls().iter().filter(|c| c.ok).count(), 27);

    let dead = read(&cluster, "orders.dlt", 1, 3).await;
    assert_eq!(dead.len(), 3, "exactly the bad records: {dead:?}");
    for record in &dead {
        let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
        let i: usize = value["bad-".len()..].parse().unwrap();
        let origin = &written[i];
        assert_eq!(
            record.key.as_deref(),
            Some(format!("k{}", i % 5).as_bytes())
        );
        assert_eq!(header(record, "trace"), Some(format!("t{i}").as_str()));
        assert_eq!(header(record, "dlt-original-topic"), Some("orders"));
        assert_eq!(
            header(record, "dlt-original-partition"),
            Some(origin.partition.to_string().as_str())
        );
        assert_eq!(
            header(record, "dlt-original-offset"),
            Some(origin.offset.to_string().as_str())
        );
        assert_eq!(header(record, "dlt-error-kind"), Some("processing"));
        assert_eq!(header(record, "dlt-attempts"), Some("2"));
    }
    assert_committed_to_end(&committed_and_ends(&cluster, "dlq", "orders", 3).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_once_succeeds_from_the_retry_topic_after_its_delay() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(&[
        ("orders", 1),
        ("orders.retry.1", 1),
        ("orders.retry.2", 1),
        ("orders.dlt", 1),
    ]);
    let producer = producer(&cluster).await;
    let records: Vec<(Option<String>, Vec<u8>)> = ["ok-0", "flaky-1", "ok-2"]
        .iter()
        .map(|v| (Some("same-key".to_string()), v.as_bytes().to_vec()))
        .collect();
    write(&producer, "orders", &records).await;

    let processor = Recorder::new(|value, seen| {
        if value.starts_with("flaky") && seen == 0 {
            Err(ProcessError::new("not yet"))
        } else {
            Ok(())
        }
    });
    let delay = Duration::from_millis(700);
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "retrying", Duration::from_secs(6)).await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["orders"])
    .max_attempts(1)
    .retry_topics([delay, Duration::from_secs(5)])
    .commit_interval(Duration::from_millis(50))
    .build()
    .expect("runner");
    let stats = runner.stats();
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        runner.run_until(until(stats, |s| s.processed == 3)),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    assert_eq!(
        (
            summary.processed,
            summary.failed,
            summary.retried,
            summary.dead_lettered
        ),
        (3, 1, 1, 0)
    );
    let calls = processor.calls();
    let flaky: Vec<&Call> = calls.iter().filter(|c| c.value == "flaky-1").collect();
    assert_eq!(flaky.len(), 2, "{calls:?}");
    assert_eq!((flaky[0].topic.as_str(), flaky[0].ok), ("orders", false));
    assert_eq!(
        (flaky[1].topic.as_str(), flaky[1].ok),
        ("orders.retry.1", true)
    );
    assert!(
        flaky[1].at - flaky[0].at >= delay,
        "retried before the delay"
    );

    let retried = read(&cluster, "orders.retry.1", 1, 1).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(header(&retried[0], "dlt-original-offset"), Some("1"));
    assert!(read(&cluster, "orders.retry.2", 1, 0).await.is_empty());
    assert!(read(&cluster, "orders.dlt", 1, 0).await.is_empty());
    assert_committed_to_end(&committed_and_ends(&cluster, "retrying", "orders", 1).await);
    assert_committed_to_end(&committed_and_ends(&cluster, "retrying", "orders.retry.1", 1).await);
}

/// Decodes values as UTF-8 and records them.
#[derive(Clone, Default)]
struct Texts(Arc<Mutex<Vec<String>>>);

impl TypedProcessor for Texts {
    type Key = String;
    type Value = String;

    async fn process(&self, record: &TypedRecord<'_, String, String>) -> Result<(), ProcessError> {
        self.0
            .lock()
            .unwrap()
            .push(record.value.clone().unwrap_or_default());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_dead_lettered_and_its_partition_goes_on() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(&[("texts", 1), ("texts.dlt", 1)]);
    let producer = producer(&cluster).await;
    let records = vec![
        (Some("k".to_string()), b"alpha".to_vec()),
        (Some("k".to_string()), vec![0xc3, 0x28]),
        (Some("k".to_string()), b"gamma".to_vec()),
    ];
    write(&producer, "texts", &records).await;
    let texts = Texts::default();
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "typed", Duration::from_secs(6)).await,
        producer.clone(),
        Typed::new(Utf8, Utf8, texts.clone()),
    )
    .topics(&["texts"])
    .commit_interval(Duration::from_millis(50))
    .build()
    .expect("runner");
    let stats = runner.stats();
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        runner.run_until(until(stats, |s| s.processed == 2 && s.dead_lettered == 1)),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    assert_eq!(summary.failed, 1);
    assert_eq!(*texts.0.lock().unwrap(), ["alpha", "gamma"]);
    let dead = read(&cluster, "texts.dlt", 1, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&[0xc3, 0x28][..]));
    assert_eq!(header(&dead[0], "dlt-error-kind"), Some("deserialization"));
    assert_committed_to_end(&committed_and_ends(&cluster, "typed", "texts", 1).await);
}

/// Checks that each key's records were processed in sequence order.
fn assert_key_order(calls: &[Call], run: &str) {
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        let (key, seq) = call.value.rsplit_once('-').unwrap();
        let seq: usize = seq.parse().unwrap();
        assert_eq!(call.key.as_deref(), Some(key));
        if let Some(before) = last.insert(key.to_string(), seq) {
            assert!(
                seq > before,
                "{run}: key {key} processed {seq} after {before}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_in_order_under_concurrency_and_a_crash_loses_nothing() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    const KEYS: usize = 30;
    const RECORDS: usize = 450;
    let cluster = cluster(&[("events", 3), ("events.dlt", 1)]);
    let producer = producer(&cluster).await;
    let mut sends = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{}", i % KEYS);
        let record = Record::new("events")
            .key(key.clone())
            .value(format!("{key}-{}", i / KEYS));
        sends.push(producer.send(record).await.unwrap());
    }
    for send in sends {
        send.await.unwrap();
    }
    // The mock's shortest session timeout: the second run's member joins
    // once the crashed one has expired.
    let session = Duration::from_secs(6);

    let mut first = Recorder::new(|_, _| Ok(()));
    first.max_sleep_ms = 4;
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "ordered", session).await,
        producer.clone(),
        first.clone(),
    )
    .topics(&["events"])
    .max_concurrency(6)
    .commit_interval(Duration::from_millis(30))
    .build()
    .unwrap();
    let stats = runner.stats();
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    let progressed = tokio::time::timeout(
        Duration::from_secs(15),
        until(stats, |s| s.processed >= 150),
    )
    .await;
    if progressed.is_err() {
        task.abort();
        panic!("150 records not processed: {:?}", task.await);
    }
    task.abort();
    let _ = task.await;

    let mut second = Recorder::new(|_, _| Ok(()));
    second.max_sleep_ms = 4;
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "ordered", session).await,
        producer.clone(),
        second.clone(),
    )
    .topics(&["events"])
    .max_concurrency(6)
    .build()
    .unwrap();
    let everything = {
        let (first, second) = (first.clone(), second.clone());
        async move {
            loop {
                let seen: BTreeSet<String> = first
                    .calls()
                    .into_iter()
                    .chain(second.calls())
                    .map(|c| c.value)
                    .collect();
                if seen.len() == RECORDS {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), runner.run_until(everything))
        .await
        .expect("every record processed")
        .expect("the second run succeeds");
    let (one, two) = (first.calls(), second.calls());
    assert_key_order(&one, "first run");
    assert_key_order(&two, "second run");
    assert!(
        first.most_running.load(Ordering::SeqCst) > 1,
        "keys ran in parallel"
    );
    let all: BTreeSet<&str> = one.iter().chain(&two).map(|c| c.value.as_str()).collect();
    assert_eq!(all.len(), RECORDS, "at least once");
    assert!(
        two.len() < RECORDS,
        "the second run started from the first run's commits"
    );
    assert_committed_to_end(&committed_and_ends(&cluster, "ordered", "events", 3).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_shutdown_a_librdkafka_reader_finds_nothing_left() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = cluster(&[("jobs", 2), ("jobs.dlt", 1)]);
    let producer = producer(&cluster).await;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..100)
        .map(|i| (Some(format!("k{}", i % 7)), format!("job-{i}").into_bytes()))
        .collect();
    write(&producer, "jobs", &records).await;
    let processor = Recorder::new(|_, _| Ok(()));
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "graceful", Duration::from_secs(10)).await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["jobs"])
    .max_concurrency(4)
    .commit_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    let stats = runner.stats();
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        runner.run_until(until(stats, |s| s.processed == 100)),
    )
    .await
    .expect("the run ends")
    .expect("the run succeeds");
    assert_eq!(summary.processed, 100);
    assert_committed_to_end(&committed_and_ends(&cluster, "graceful", "jobs", 2).await);

    // A librdkafka reader starting from the group's commits finds
    // nothing left. (That the member left the group is checked against
    // the fake cluster: the mock answers LeaveGroup v3 without its members
    // array, which our consumer refuses, so the mock keeps the member
    // until its session expires.)
    let bootstrap = cluster.bootstrap_servers();
    let read = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "graceful")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("jobs", p, rdkafka::Offset::Stored)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut read = 0;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
                read += 1;
            }
        }
        read
    })
    .await
    .unwrap();
    assert_eq!(read, 0, "nothing left to process twice");
}
