//! The processor runner against the fake cluster: failing records go to
//! the dead-letter topic with their failure headers, a retry topic gives a
//! record a second chance after its delay, undecodable records are
//! dead-lettered without stopping their partition, records of one key stay
//! in order under concurrency and across a crash, and a graceful shutdown
//! commits and leaves the group. Topics are read back with rust-rdkafka's
//! consumer and commits from the cluster's own state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::consumer::{Assignor, AutoOffsetReset, Consumer};
use smartkafka::processor::{
    ProcessError, ProcessorRunner, RunStats, RunSummary, Typed, TypedProcessor, TypedRecord,
};
use smartkafka::serialization::Utf8;
use smartkafka::{Producer, Record, RecordMetadata};
use tokio::time::Instant;

use crate::support::recorder::{Call, Recorder};
use crate::support::workload::{ReadRecord, consume_all};

async fn cluster(topics: &[(&str, i32)]) -> FakeCluster {
    let mut builder = FakeCluster::builder()
        .brokers(1)
        .group_initial_rebalance_delay(Duration::from_millis(20))
        .group_session_timeout_range(Duration::from_millis(500), Duration::from_secs(60));
    for (topic, partitions) in topics {
        builder = builder.topic(topic, *partitions);
    }
    builder.build().await
}

async fn consumer(cluster: &FakeCluster, group: &str, session: Duration) -> Consumer {
    consumer_with(cluster, group, session, Assignor::Range).await
}

async fn consumer_with(
    cluster: &FakeCluster,
    group: &str,
    session: Duration,
    assignor: Assignor,
) -> Consumer {
    Consumer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .group_id(group)
        .enable_auto_commit(false)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .assignors(vec![assignor])
        .heartbeat_interval(Duration::from_millis(100))
        .session_timeout(session)
        .max_poll_interval(session * 2)
        .build()
        .await
        .expect("consumer")
}

async fn producer(cluster: &FakeCluster) -> Producer {
    Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
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
async fn read(
    cluster: &FakeCluster,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<ReadRecord> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_records_reach_the_dead_letter_topic_with_their_headers_and_all_is_committed() {
    let cluster = cluster(&[("orders", 3), ("orders.dlt", 1)]).await;
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
        consumer(&cluster, "dlq", Duration::from_secs(3)).await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["orders"])
    .max_attempts(3)
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
            summary.retried,
            summary.dead_lettered
        ),
        (30, 27, 9, 0, 3)
    );
    let calls = processor.calls();
    for i in [3, 13, 23] {
        let tries = calls
            .iter()
            .filter(|c| c.value == format!("bad-{i}"))
            .count();
        assert_eq!(tries, 3, "bad-{i} tried max_attempts times in place");
    }

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
        assert_eq!(
            header(record, "trace"),
            Some(format!("t{i}").as_str()),
            "own headers kept"
        );
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
        assert_eq!(header(record, "dlt-attempts"), Some("3"));
        assert_eq!(
            header(record, "dlt-error"),
            Some(format!("cannot handle {value}").as_str())
        );
    }
    for p in 0..3 {
        assert_eq!(
            cluster.committed_offset("dlq", "orders", p),
            Some(cluster.high_watermark("orders", p)),
            "partition {p} committed to its end"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_once_succeeds_from_the_retry_topic_after_its_delay() {
    let cluster = cluster(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlt", 1)]).await;
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
    let delay = Duration::from_millis(800);
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "retrying", Duration::from_secs(3)).await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["orders"])
    .max_attempts(1)
    .retry_topics([delay])
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
        "retried {:?} after the failure, before the delay",
        flaky[1].at - flaky[0].at
    );
    assert_eq!(
        calls.iter().filter(|c| c.ok).count(),
        3,
        "each record processed once"
    );
    let order: Vec<&str> = calls
        .iter()
        .filter(|c| c.ok)
        .map(|c| c.value.as_str())
        .collect();
    assert_eq!(
        order,
        ["ok-0", "ok-2", "flaky-1"],
        "a retry topic reorders the key"
    );

    let retried = read(&cluster, "orders.retry.1", 1, 1).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].value.as_deref(), Some(&b"flaky-1"[..]));
    assert_eq!(header(&retried[0], "dlt-original-offset"), Some("1"));
    assert_eq!(header(&retried[0], "dlt-attempts"), Some("1"));
    assert!(read(&cluster, "orders.dlt", 1, 0).await.is_empty());
    assert_eq!(cluster.committed_offset("retrying", "orders", 0), Some(3));
    assert_eq!(
        cluster.committed_offset("retrying", "orders.retry.1", 0),
        Some(1)
    );
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
    let cluster = cluster(&[("texts", 1), ("texts.dlt", 1)]).await;
    let producer = producer(&cluster).await;
    let records = vec![
        (None, b"alpha".to_vec()),
        (None, vec![0xff, 0xfe, 0x00]),
        (None, b"gamma".to_vec()),
    ];
    write(&producer, "texts", &records).await;

    let texts = Texts::default();
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "typed", Duration::from_secs(3)).await,
        producer.clone(),
        Typed::new(Utf8, Utf8, texts.clone()),
    )
    .topics(&["texts"])
    .max_attempts(5)
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
    assert_eq!(summary.failed, 1, "not retried: decoding again cannot help");
    assert_eq!(*texts.0.lock().unwrap(), ["alpha", "gamma"]);

    let dead = read(&cluster, "texts.dlt", 1, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&[0xff, 0xfe, 0x00][..]),
        "bytes kept as read"
    );
    assert_eq!(header(&dead[0], "dlt-error-kind"), Some("deserialization"));
    assert_eq!(header(&dead[0], "dlt-attempts"), Some("1"));
    assert_eq!(header(&dead[0], "dlt-original-offset"), Some("1"));
    assert_eq!(cluster.committed_offset("typed", "texts", 0), Some(3));
}

/// `(key, sequence number within the key)` of a value `k<key>-<seq>`.
fn key_seq(value: &str) -> (String, usize) {
    let (key, seq) = value.rsplit_once('-').unwrap();
    (key.to_string(), seq.parse().unwrap())
}

/// Checks that each key's records were processed in sequence order.
fn assert_key_order(calls: &[Call], run: &str) {
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        let (key, seq) = key_seq(&call.value);
        assert_eq!(call.key.as_deref(), Some(key.as_str()));
        if let Some(before) = last.insert(key.clone(), seq) {
            assert!(
                seq > before,
                "{run}: key {key} processed {seq} after {before} ({}-{}@{})",
                call.topic,
                call.partition,
                call.offset
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_in_order_under_concurrency_and_a_crash_loses_nothing() {
    const KEYS: usize = 40;
    const RECORDS: usize = 600;
    let cluster = cluster(&[("events", 3), ("events.dlt", 1)]).await;
    let producer = producer(&cluster).await;
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{}", i % KEYS);
        records.push((
            Some(key.clone()),
            format!("{key}-{}", i / KEYS).into_bytes(),
        ));
    }
    let mut sends = Vec::new();
    for (key, value) in &records {
        let record = Record::new("events")
            .key(key.clone().unwrap())
            .value(value.clone());
        sends.push(producer.send(record).await.unwrap());
    }
    for send in sends {
        send.await.unwrap();
    }
    let session = Duration::from_millis(1500);

    // First run: crashes (its task is aborted) after 200 records.
    let mut first = Recorder::new(|_, _| Ok(()));
    first.max_sleep_ms = 4;
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "ordered", session).await,
        producer.clone(),
        first.clone(),
    )
    .topics(&["events"])
    .max_concurrency(8)
    .commit_interval(Duration::from_millis(30))
    .build()
    .unwrap();
    let stats = runner.stats();
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    tokio::time::timeout(
        Duration::from_secs(15),
        until(stats, |s| s.processed >= 200),
    )
    .await
    .expect("200 records processed");
    task.abort();
    let _ = task.await;
    let crashed_at = first.calls().len();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        first.calls().len() <= crashed_at + 8,
        "work of the crashed run stopped (at most the records then running finish)"
    );

    // Second run, same group: picks up from the commits.
    let mut second = Recorder::new(|_, _| Ok(()));
    second.max_sleep_ms = 4;
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "ordered", session).await,
        producer.clone(),
        second.clone(),
    )
    .topics(&["events"])
    .max_concurrency(8)
    .build()
    .unwrap();
    let everything = {
        let first = first.clone();
        let second = second.clone();
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
        "records of different keys ran in parallel"
    );
    assert!(
        first.most_running.load(Ordering::SeqCst) <= 8,
        "max_concurrency respected"
    );
    let all: BTreeSet<&str> = one.iter().chain(&two).map(|c| c.value.as_str()).collect();
    assert_eq!(all.len(), RECORDS, "at least once");
    assert!(
        two.len() < RECORDS,
        "the second run started from the first run's commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_commits_leaves_the_group_and_nothing_is_processed_twice() {
    let cluster = cluster(&[("jobs", 2), ("jobs.dlt", 1)]).await;
    let producer = producer(&cluster).await;
    let records: Vec<(Option<String>, Vec<u8>)> = (0..100)
        .map(|i| (Some(format!("k{}", i % 7)), format!("job-{i}").into_bytes()))
        .collect();
    write(&producer, "jobs", &records).await;
    // A long session: a member that did not leave would hold its
    // partitions for 10 s.
    let session = Duration::from_secs(10);

    let processor = Recorder::new(|_, _| Ok(()));
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "graceful", session).await,
        producer.clone(),
        processor.clone(),
    )
    .topics(&["jobs"])
    .max_concurrency(4)
    // Commits only at shutdown (and on revocation).
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
    for p in 0..2 {
        assert_eq!(
            cluster.committed_offset("graceful", "jobs", p),
            Some(cluster.high_watermark("jobs", p)),
            "partition {p} committed at shutdown"
        );
    }
    assert!(
        cluster.group_members("graceful").is_empty(),
        "the member left the group"
    );

    // A new member gets both partitions at once and has nothing to do.
    let again = Recorder::new(|_, _| Ok(()));
    let runner = ProcessorRunner::builder(
        consumer(&cluster, "graceful", session).await,
        producer.clone(),
        again.clone(),
    )
    .topics(&["jobs"])
    .build()
    .unwrap();
    let started = Instant::now();
    let assigned = again.assigned.clone();
    let summary = tokio::time::timeout(
        Duration::from_secs(15),
        runner.run_until(async move {
            while assigned
                .lock()
                .unwrap()
                .iter()
                .map(|(_, n)| n)
                .sum::<usize>()
                < 2
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }),
    )
    .await
    .expect("the second run ends")
    .expect("the second run succeeds");
    let (at, _) = again.assigned.lock().unwrap()[0];
    assert!(
        at - started < session / 2,
        "assigned after {:?}: the first member had not left",
        at - started
    );
    assert_eq!(
        summary.consumed,
        0,
        "nothing processed twice: {:?}",
        again.calls()
    );
}

/// Runs a member of group `moving` (cooperative-sticky) until `stop`.
async fn spawn_member(
    cluster: &FakeCluster,
    producer: &Producer,
    recorder: Recorder,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<Result<RunSummary, smartkafka::Error>> {
    let consumer = consumer_with(
        cluster,
        "moving",
        Duration::from_secs(3),
        Assignor::CooperativeSticky,
    )
    .await;
    let runner = ProcessorRunner::builder(consumer, producer.clone(), recorder)
        .topics(&["moving"])
        .max_concurrency(4)
        .commit_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::spawn(async move { runner.run_until(stop.notified()).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_to_a_new_member_are_handed_over_without_losing_records() {
    const KEYS: usize = 20;
    const RECORDS: usize = 400;
    let cluster = cluster(&[("moving", 4), ("moving.dlt", 1)]).await;
    let producer = producer(&cluster).await;
    let mut sends = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{}", i % KEYS);
        let record = Record::new("moving")
            .key(key.clone())
            .value(format!("{key}-{}", i / KEYS));
        sends.push(producer.send(record).await.unwrap());
    }
    for send in sends {
        send.await.unwrap();
    }
    let mut first = Recorder::new(|_, _| Ok(()));
    first.max_sleep_ms = 8;
    let mut second = first.clone();
    second.calls = Arc::default();
    second.assigned = Arc::default();
    let (stop_first, stop_second) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let a = spawn_member(&cluster, &producer, first.clone(), Arc::clone(&stop_first)).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while first.calls().len() < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first member processes records");
    let b = spawn_member(
        &cluster,
        &producer,
        second.clone(),
        Arc::clone(&stop_second),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(20), async {
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
    })
    .await
    .expect("every record processed by one member or the other");
    stop_first.notify_one();
    stop_second.notify_one();
    a.await.unwrap().expect("the first member stops cleanly");
    b.await.unwrap().expect("the second member stops cleanly");

    let (one, two) = (first.calls(), second.calls());
    assert!(!two.is_empty(), "partitions moved to the second member");
    assert_key_order(&one, "first member");
    assert_key_order(&two, "second member");
    for p in 0..4 {
        assert_eq!(
            cluster.committed_offset("moving", "moving", p),
            Some(cluster.high_watermark("moving", p)),
            "partition {p} committed to its end"
        );
    }
}
