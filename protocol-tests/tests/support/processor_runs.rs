//! The processor runner's scenarios, written once and run against each
//! cluster (our fake and librdkafka's mock): failing records reach the
//! dead-letter topic with their headers, a retry topic gives a record a
//! second chance after its delay, undecodable records are dead-lettered
//! without stopping their partition, and keys stay in order under
//! concurrency and across a crash. Each cluster says how to read the
//! group's commits back ([`Peer`]); topics are read back with
//! rust-rdkafka's consumer.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smartkafka::consumer::{Assignor, AutoOffsetReset, Consumer};
use smartkafka::processor::{
    ProcessError, ProcessorRunner, RunStats, RunSummary, Typed, TypedProcessor, TypedRecord,
};
use smartkafka::serialization::Utf8;
use smartkafka::{Acks, Producer, Record, RecordMetadata};

use super::recorder::{Call, Recorder};
use super::workload::{ReadRecord, consume_all};

/// A cluster the scenarios run against.
pub trait Peer {
    /// Its bootstrap servers.
    fn bootstrap(&self) -> String;
    /// The session timeout of the scenarios' members (the mock's shortest
    /// is 6 s).
    fn session(&self) -> Duration;
    /// Per partition of `topic`: the offset `group` committed (-1 for
    /// none) and the partition's end, as the cluster reports them.
    fn committed_and_ends(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Vec<(i64, i64)>>;
}

/// Topics of [`failing_records_reach_the_dead_letter_topic`].
pub const DEAD_LETTER_TOPICS: &[(&str, i32)] = &[("orders", 3), ("orders.dlt", 1)];
/// Topics of [`a_record_failing_once_succeeds_from_the_retry_topic`].
pub const RETRY_TOPICS: &[(&str, i32)] = &[
    ("orders", 1),
    ("orders.retry.1", 1),
    ("orders.retry.2", 1),
    ("orders.dlt", 1),
];
/// Topics of [`an_undecodable_record_is_dead_lettered`].
pub const UNDECODABLE_TOPICS: &[(&str, i32)] = &[("texts", 1), ("texts.dlt", 1)];
/// Topics of [`keys_stay_in_order_across_a_crash`].
pub const ORDERED_TOPICS: &[(&str, i32)] = &[("events", 3), ("events.dlt", 1)];

/// A group member that commits only when the runner says so.
pub async fn consumer(
    bootstrap: &str,
    group: &str,
    session: Duration,
    assignor: Assignor,
) -> Consumer {
    Consumer::builder()
        .bootstrap_servers(bootstrap)
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

/// A producer with acks=all.
pub async fn producer(bootstrap: &str) -> Producer {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .acks(Acks::All)
        .build()
        .await
        .expect("producer")
}

/// Writes `(key, value)` records to `topic` with a `trace` header each,
/// returning where each landed.
pub async fn write(
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
pub async fn until(stats: RunStats, done: impl Fn(&RunSummary) -> bool) {
    while !done(&stats.snapshot()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `expected` records of `topic` back with rust-rdkafka's consumer.
pub async fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<ReadRecord> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, partitions, expected))
        .await
        .expect("reader")
}

/// The last value of header `key`, as text.
pub fn header<'a>(record: &'a ReadRecord, key: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| std::str::from_utf8(v).unwrap())
}

/// Checks that `group` committed every partition of `topic` to its end.
pub async fn assert_committed_to_end(peer: &impl Peer, group: &str, topic: &str, partitions: i32) {
    let positions = peer.committed_and_ends(group, topic, partitions).await;
    for (p, (committed, end)) in positions.iter().enumerate() {
        assert_eq!(committed, end, "{topic}-{p} committed to its end");
    }
}

/// Checks that each key's records (values `<key>-<seq>`) were processed
/// in sequence order.
pub fn assert_key_order(calls: &[Call], run: &str) {
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        let (key, seq) = call.value.rsplit_once('-').unwrap();
        let seq: usize = seq.parse().unwrap();
        assert_eq!(call.key.as_deref(), Some(key));
        if let Some(before) = last.insert(key.to_string(), seq) {
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

/// Completes once `first` and `second` together have processed `records`
/// distinct values.
pub async fn every_value_seen(first: Recorder, second: Recorder, records: usize) {
    loop {
        let seen: BTreeSet<String> = first
            .calls()
            .into_iter()
            .chain(second.calls())
            .map(|c| c.value)
            .collect();
        if seen.len() == records {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `records` keyed records spread over `keys` keys to `topic`, with
/// values `<key>-<seq within the key>`, without waiting between sends.
pub async fn write_keyed(producer: &Producer, topic: &str, keys: usize, records: usize) {
    let mut sends = Vec::new();
    for i in 0..records {
        let key = format!("k{}", i % keys);
        let record = Record::new(topic)
            .key(key.clone())
            .value(format!("{key}-{}", i / keys));
        sends.push(producer.send(record).await.unwrap());
    }
    for send in sends {
        send.await.unwrap();
    }
}

/// Three of 30 records fail every attempt: each is tried `max_attempts`
/// times in place, then written to the dead-letter topic with its key,
/// value and own headers plus the failure headers; everything is committed.
pub async fn failing_records_reach_the_dead_letter_topic(peer: &impl Peer) {
    let bootstrap = peer.bootstrap();
    let producer = producer(&bootstrap).await;
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
        consumer(&bootstrap, "dlq", peer.session(), Assignor::Range).await,
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
    assert_eq!(calls.iter().filter(|c| c.ok).count(), 27);
    for i in [3, 13, 23] {
        let tries = calls
            .iter()
            .filter(|c| c.value == format!("bad-{i}"))
            .count();
        assert_eq!(tries, 3, "bad-{i} tried max_attempts times in place");
    }

    let dead = read(&bootstrap, "orders.dlt", 1, 3).await;
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
    assert_committed_to_end(peer, "dlq", "orders", 3).await;
}

/// A record that fails once goes to the first retry topic and succeeds
/// from there after the topic's delay; the rest of its key goes on
/// meanwhile (a retry topic reorders the key), nothing is dead-lettered.
pub async fn a_record_failing_once_succeeds_from_the_retry_topic(peer: &impl Peer) {
    let bootstrap = peer.bootstrap();
    let producer = producer(&bootstrap).await;
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
        consumer(&bootstrap, "retrying", peer.session(), Assignor::Range).await,
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
        "retried {:?} after the failure, before the delay",
        flaky[1].at - flaky[0].at
    );
    let order: Vec<&str> = calls
        .iter()
        .filter(|c| c.ok)
        .map(|c| c.value.as_str())
        .collect();
    assert_eq!(
        order,
        ["ok-0", "ok-2", "flaky-1"],
        "each record processed once; a retry topic reorders the key"
    );

    let retried = read(&bootstrap, "orders.retry.1", 1, 1).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].value.as_deref(), Some(&b"flaky-1"[..]));
    assert_eq!(header(&retried[0], "dlt-original-offset"), Some("1"));
    assert_eq!(header(&retried[0], "dlt-attempts"), Some("1"));
    assert!(read(&bootstrap, "orders.retry.2", 1, 0).await.is_empty());
    assert!(read(&bootstrap, "orders.dlt", 1, 0).await.is_empty());
    assert_committed_to_end(peer, "retrying", "orders", 1).await;
    assert_committed_to_end(peer, "retrying", "orders.retry.1", 1).await;
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

/// A value that is not UTF-8 is dead-lettered at once (decoding again
/// cannot help), with its bytes as read, and its partition goes on.
pub async fn an_undecodable_record_is_dead_lettered(peer: &impl Peer) {
    let bootstrap = peer.bootstrap();
    let producer = producer(&bootstrap).await;
    let records = vec![
        (None, b"alpha".to_vec()),
        (None, vec![0xff, 0xfe, 0x00]),
        (None, b"gamma".to_vec()),
    ];
    write(&producer, "texts", &records).await;

    let texts = Texts::default();
    let runner = ProcessorRunner::builder(
        consumer(&bootstrap, "typed", peer.session(), Assignor::Range).await,
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

    let dead = read(&bootstrap, "texts.dlt", 1, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].value.as_deref(),
        Some(&[0xff, 0xfe, 0x00][..]),
        "bytes kept as read"
    );
    assert_eq!(header(&dead[0], "dlt-error-kind"), Some("deserialization"));
    assert_eq!(header(&dead[0], "dlt-attempts"), Some("1"));
    assert_eq!(header(&dead[0], "dlt-original-offset"), Some("1"));
    assert_committed_to_end(peer, "typed", "texts", 1).await;
}

/// Records of 30 keys processed 6 at a time: each key stays in order; the
/// first run crashes (its task aborted) after 150 records and a second run
/// of the same group starts from its commits and processes the rest.
/// `session` is the members' session timeout: the second member joins
/// once the crashed one has expired.
pub async fn keys_stay_in_order_across_a_crash(peer: &impl Peer, session: Duration) {
    const KEYS: usize = 30;
    const RECORDS: usize = 450;
    let bootstrap = peer.bootstrap();
    let producer = producer(&bootstrap).await;
    write_keyed(&producer, "events", KEYS, RECORDS).await;

    let mut first = Recorder::new(|_, _| Ok(()));
    first.max_sleep_ms = 4;
    let runner = ProcessorRunner::builder(
        consumer(&bootstrap, "ordered", session, Assignor::Range).await,
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
    let crashed_at = first.calls().len();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        first.calls().len() <= crashed_at + 6,
        "work of the crashed run stopped (at most the records then running finish)"
    );

    let mut second = Recorder::new(|_, _| Ok(()));
    second.max_sleep_ms = 4;
    let runner = ProcessorRunner::builder(
        consumer(&bootstrap, "ordered", session, Assignor::Range).await,
        producer.clone(),
        second.clone(),
    )
    .topics(&["events"])
    .max_concurrency(6)
    .build()
    .unwrap();
    let everything = every_value_seen(first.clone(), second.clone(), RECORDS);
    tokio::time::timeout(Duration::from_secs(20), runner.run_until(everything))
        .await
        .expect("every record processed")
        .expect("the second run succeeds");

    let (one, two) = (first.calls(), second.calls());
    assert_key_order(&one, "first run");
    assert_key_order(&two, "second run");
    let most = first.most_running.load(Ordering::SeqCst);
    assert!(most > 1, "records of different keys ran in parallel");
    assert!(most <= 6, "max_concurrency respected");
    let all: BTreeSet<&str> = one.iter().chain(&two).map(|c| c.value.as_str()).collect();
    assert_eq!(all.len(), RECORDS, "at least once");
    assert!(
        two.len() < RECORDS,
        "the second run started from the first run's commits"
    );
    assert_committed_to_end(peer, "ordered", "events", 3).await;
}
