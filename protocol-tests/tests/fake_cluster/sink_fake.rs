//! The typed sink against the fake cluster: records, keys, headers and
//! message ids read back with rust-rdkafka; a value that does not serialize;
//! a tracker full of pending records; the circuit breaker through an outage
//! and its recovery; retries and the dead-letter topic; and sends with a
//! timeout, on the producer and on the sink.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
use smartkafka::failure_headers::FailureInfo;
use smartkafka::serialization::{Serializer, Utf8};
use smartkafka::sink::{
    BreakerConfig, BreakerState, DeliveryStatus, MessageId, RetryPolicy, Sink, SinkRecord,
};
use smartkafka::{Error, ErrorKind, Header, Producer, Record};
use tokio::time::Instant;

use crate::support::fixtures::{self, quick_retries};
use crate::support::workload::{ReadRecord, consume_all};

/// Reads `expected` records of `topic` back with rust-rdkafka.
async fn read_back(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<ReadRecord> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, partitions, expected))
        .await
        .unwrap()
}

fn header<'a>(record: &'a ReadRecord, key: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| std::str::from_utf8(v).unwrap())
}

fn text(bytes: &Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.clone().unwrap_or_default()).unwrap()
}

/// A producer that gives up on a record after 600 ms, so outages show
/// quickly as failed deliveries.
async fn impatient(bootstrap: &str) -> Producer {
    quick_retries(bootstrap)
        .request_timeout(Duration::from_millis(400))
        .delivery_timeout(Duration::from_millis(600))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_records_read_back_with_keys_headers_and_ids() {
    const N: usize = 60;
    let cluster = fixtures::cluster(1, "t", 3).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await
        .unwrap();
    let hooked: Arc<Mutex<Vec<(MessageId, i32, i64)>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0usize));
    let (h, f) = (Arc::clone(&hooked), Arc::clone(&failures));
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .key_serializer(Utf8)
        .value_serializer(Utf8)
        .message_id_header("message-id")
        .content_type_header(true)
        .on_success(move |id, m| h.lock().unwrap().push((id.clone(), m.partition, m.offset)))
        .on_failure(move |_, _| *f.lock().unwrap() += 1)
        .build()
        .unwrap();

    let mut sent = Vec::new();
    let mut bytes = 0u64;
    for i in 0..N {
        let (key, value) = (format!("k{}", i % 7), format!("value-{i}"));
        bytes += (key.len() + value.len()) as u64;
        let mut record = SinkRecord::new(value.as_str())
            .key(key.as_str())
            .header("seq", i.to_string());
        if i % 10 == 0 {
            record = record.id(format!("order-{i}"));
        }
        let delivery = sink.send(record).await.unwrap();
        if i % 10 == 0 {
            assert_eq!(delivery.id().to_string(), format!("order-{i}"));
        }
        sent.push((delivery.id().clone(), key, value, i, delivery));
    }
    // Close waits for every outcome, hooks included.
    sink.close(Duration::from_secs(10)).await.unwrap();
    assert_eq!(hooked.lock().unwrap().len(), N);
    assert_eq!(*failures.lock().unwrap(), 0);
    let hooked_ids: HashSet<MessageId> =
        hooked.lock().unwrap().iter().map(|h| h.0.clone()).collect();
    assert_eq!(hooked_ids.len(), N, "each record's hook runs once");

    let mut expected = BTreeMap::new();
    for (id, key, value, i, delivery) in sent {
        let metadata = delivery.await.unwrap();
        assert_eq!(
            sink.status(&id),
            Some(DeliveryStatus::Delivered {
                partition: metadata.partition,
                offset: metadata.offset
            })
        );
        expected.insert(
            id.to_string(),
            (key, value, i, metadata.partition, metadata.offset),
        );
    }
    let read = read_back(&bootstrap, "t", 3, N).await;
    assert_eq!(read.len(), N);
    for r in &read {
        let id = header(r, "message-id").expect("message id header");
        let (key, value, i, partition, offset) = &expected[id];
        assert_eq!(&text(&r.key), key);
        assert_eq!(&text(&r.value), value);
        assert_eq!(header(r, "seq"), Some(i.to_string().as_str()));
        assert_eq!(header(r, "content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!((r.partition, r.offset), (*partition, *offset));
    }

    let m = sink.metrics();
    assert_eq!(
        (m.sent, m.failed, m.refused, m.pending),
        (N as u64, 0, 0, 0)
    );
    assert_eq!(m.bytes_sent, bytes);
    assert!(m.max_latency >= m.avg_latency && m.max_latency > Duration::ZERO);
    assert_eq!(m.breaker_state, None);
    let err = sink.send(SinkRecord::new("late")).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Closed);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Refuses values containing "bad".
struct Picky;

impl Serializer<str> for Picky {
    fn serialize(&self, value: &str, out: &mut BytesMut) -> Result<(), Error> {
        out.put_slice(value.as_bytes());
        if value.contains("bad") {
            return Err(Error::serialization(format!("`{value}` is not allowed")));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_does_not_serialize_fails_only_its_call() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await
        .unwrap();
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .value_serializer(Picky)
        .build()
        .unwrap();
    let values = ["good-1", "bad-2", "good-3"];
    let mut outcomes = Vec::new();
    for v in values {
        outcomes.push(sink.send_and_wait(SinkRecord::new(v)).await);
    }
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    let err = outcomes[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Serialization);
    assert!(!err.possibly_persisted());
    // A keyed record on a sink without a key serializer is refused too.
    let err = sink
        .send(SinkRecord::new("good-4").key("k"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Serialization);

    let m = sink.metrics();
    assert_eq!((m.sent, m.refused, m.failed), (2, 2, 0));
    assert!(m.last_error.unwrap().contains("key serializer"));
    let read = read_back(&bootstrap, "t", 1, 2).await;
    let got: Vec<String> = read.iter().map(|r| text(&r.value)).collect();
    assert_eq!(
        got,
        ["good-1", "good-3"],
        "the half-written bad value is not sent"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_full_of_pending_records_refuses_and_sends_nothing() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .value_serializer(Utf8)
        .tracker_capacity(2)
        .build()
        .unwrap();
    cluster.inject(Fault::new(ApiKey::Produce).delay(Duration::from_millis(800)));
    let first = sink.send(SinkRecord::new("p-1")).await.unwrap();
    let second = sink.send(SinkRecord::new("p-2")).await.unwrap();
    let err = sink.send(SinkRecord::new("refused")).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BufferExhausted, "{err}");
    assert!(!err.possibly_persisted());
    assert_eq!(sink.status(first.id()), Some(DeliveryStatus::Pending));
    first.await.unwrap();
    second.await.unwrap();
    // Finished entries make room: the oldest is evicted.
    sink.send_and_wait(SinkRecord::new("p-3")).await.unwrap();
    assert_eq!(sink.evicted(), 1);
    assert_eq!(sink.metrics().refused, 1);
    let read = read_back(&bootstrap, "t", 1, 4).await;
    let got: Vec<String> = read.iter().map(|r| text(&r.value)).collect();
    assert_eq!(got, ["warm-up", "p-1", "p-2", "p-3"]);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[derive(Debug)]
enum Outcome {
    Delivered,
    Failed(Error),
    Refused,
}

async fn attempt(sink: &Sink<str, str>, value: &str) -> Outcome {
    match sink.send(SinkRecord::new(value)).await {
        Err(e) if e.kind() == &ErrorKind::CircuitOpen => Outcome::Refused,
        Err(e) => panic!("{value}: unexpected refusal {e}"),
        Ok(delivery) => match delivery.await {
            Ok(_) => Outcome::Delivered,
            Err(e) => Outcome::Failed(e),
        },
    }
}

/// What happened to each value.
#[derive(Default)]
struct Ledger {
    delivered: BTreeSet<String>,
    failed: BTreeSet<String>,
    refused: BTreeSet<String>,
}

impl Ledger {
    async fn send(&mut self, sink: &Sink<str, str>, value: &str) -> &'static str {
        match attempt(sink, value).await {
            Outcome::Delivered => {
                self.delivered.insert(value.to_string());
                "delivered"
            }
            Outcome::Failed(e) => {
                // Every request in the outage is refused, so nothing is
                // written; but a record whose delivery timeout passes while
                // a retry is in flight cannot know that yet, and says it
                // may have been. The read-back at the end checks that no
                // failed record is in the log.
                assert!(
                    !e.possibly_persisted() || *e.kind() == ErrorKind::DeliveryTimeout,
                    "{value}: {e}"
                );
                self.failed.insert(value.to_string());
                "failed"
            }
            Outcome::Refused => {
                self.refused.insert(value.to_string());
                "refused"
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_in_an_outage_and_closes_after_recovery() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = impatient(&bootstrap).await;
    let open_timeout = Duration::from_millis(700);
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .value_serializer(Utf8)
        .circuit_breaker(
            BreakerConfig::new()
                .failure_threshold(3)
                .window(Duration::from_secs(30))
                .open_timeout(open_timeout)
                .probes(1),
        )
        .build()
        .unwrap();
    let mut ledger = Ledger::default();
    for i in 0..5 {
        assert_eq!(ledger.send(&sink, &format!("a-{i}")).await, "delivered");
    }
    assert_eq!(sink.breaker_state(), Some(BreakerState::Closed));

    // The outage: every produce request is refused (nothing is written).
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .error(ResponseError::NotEnoughReplicas)
            .times(1_000_000),
    );
    let mut failures = 0;
    for i in 0..10 {
        match ledger.send(&sink, &format!("b-{i}")).await {
            "failed" => failures += 1,
            "refused" => break,
            other => panic!("b-{i} {other} during the outage"),
        }
    }
    assert_eq!(failures, 3, "the breaker opens at the threshold");
    let m = sink.metrics();
    assert_eq!(
        (m.breaker_state, m.breaker_trips),
        (Some(BreakerState::Open), 1)
    );
    for i in 0..5 {
        assert_eq!(ledger.send(&sink, &format!("c-{i}")).await, "refused");
    }

    // Half-open while the outage goes on: one probe, which fails.
    tokio::time::sleep(open_timeout + Duration::from_millis(100)).await;
    assert_eq!(sink.breaker_state(), Some(BreakerState::HalfOpen));
    let probe = sink.send(SinkRecord::new("d-0")).await.unwrap();
    assert_eq!(
        ledger.send(&sink, "d-1").await,
        "refused",
        "one probe at a time"
    );
    assert!(probe.await.is_err());
    ledger.failed.insert("d-0".into());
    let m = sink.metrics();
    assert_eq!(
        (m.breaker_state, m.breaker_trips),
        (Some(BreakerState::Open), 2)
    );

    // Recovery: the next probe succeeds and closes the breaker.
    cluster.clear_faults();
    tokio::time::sleep(open_timeout + Duration::from_millis(100)).await;
    assert_eq!(ledger.send(&sink, "e-0").await, "delivered");
    assert_eq!(sink.breaker_state(), Some(BreakerState::Closed));
    for i in 1..10 {
        assert_eq!(ledger.send(&sink, &format!("e-{i}")).await, "delivered");
    }
    sink.close(Duration::from_secs(5)).await.unwrap();
    let m = sink.metrics();
    assert_eq!(m.sent, ledger.delivered.len() as u64);
    assert_eq!(m.failed, ledger.failed.len() as u64);
    assert_eq!(m.refused, ledger.refused.len() as u64);

    // The log holds every delivered record once, and nothing else.
    let read = read_back(&bootstrap, "t", 1, ledger.delivered.len()).await;
    let values: Vec<String> = read.iter().map(|r| text(&r.value)).collect();
    let unique: BTreeSet<String> = values.iter().cloned().collect();
    assert_eq!(values.len(), unique.len(), "no duplicates: {values:?}");
    assert_eq!(unique, ledger.delivered);
    assert!(ledger.failed.is_disjoint(&unique) && ledger.refused.is_disjoint(&unique));
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_records_are_retried_then_dead_lettered_with_failure_headers() {
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic("t", 1)
        .topic("t.dlt", 1)
        .build()
        .await;
    let brokers = cluster.broker_ids();
    cluster.set_leader("t", 0, brokers[0]);
    cluster.set_leader("t.dlt", 0, brokers[1]);
    let bootstrap = cluster.bootstrap_servers();
    let producer = impatient(&bootstrap).await;
    let failed_hook = Arc::new(Mutex::new(Vec::new()));
    let hook = Arc::clone(&failed_hook);
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .key_serializer(Utf8)
        .value_serializer(Utf8)
        .retry(
            RetryPolicy::new(2)
                .backoff(Duration::from_millis(50))
                .backoff_max(Duration::from_millis(100)),
        )
        .dead_letter_topic("t.dlt")
        .on_failure(move |id, e| hook.lock().unwrap().push((id.clone(), e.kind().clone())))
        .build()
        .unwrap();

    // A retriable failure: tried three times, then dead-lettered.
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .broker(brokers[0])
            .error(ResponseError::NotEnoughReplicas)
            .times(1_000_000),
    );
    let delivery = sink
        .send(
            SinkRecord::new("payload-1")
                .key("key-1")
                .header("trace", "abc")
                .header("dlt-attempts", "99")
                .partition(0)
                .id("r1"),
        )
        .await
        .unwrap();
    let err = delivery.await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::DeliveryTimeout);
    match sink.status(&MessageId::from("r1")) {
        Some(DeliveryStatus::Failed {
            possibly_persisted,
            dead_lettered,
            ..
        }) => assert!(dead_lettered && !possibly_persisted),
        other => panic!("r1: {other:?}"),
    }

    // A failure retrying cannot mend: dead-lettered at once.
    cluster.clear_faults();
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .broker(brokers[0])
            .error(ResponseError::InvalidRecord)
            .times(1),
    );
    let err = sink
        .send_and_wait(SinkRecord::new("payload-2").key("key-2").id("r2"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::Broker(smartkafka::protocol::KafkaCode::INVALID_RECORD)
    );
    sink.flush().await.unwrap();

    let m = sink.metrics();
    assert_eq!((m.failed, m.retries, m.dead_lettered, m.sent), (2, 2, 2, 0));
    let hooked: Vec<String> = failed_hook
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(hooked, ["r1", "r2"]);

    let read = read_back(&bootstrap, "t.dlt", 1, 2).await;
    assert_eq!(read.len(), 2);
    let (first, second) = (&read[0], &read[1]);
    assert_eq!(
        (text(&first.key), text(&first.value)),
        ("key-1".into(), "payload-1".into())
    );
    assert_eq!(header(first, "trace"), Some("abc"));
    let headers = |r: &ReadRecord| -> Vec<Header> {
        r.headers
            .iter()
            .map(|(k, v)| Header::new(k.clone(), v.clone().unwrap_or_default()))
            .collect()
    };
    let info = FailureInfo::from_headers(&headers(first)).unwrap();
    assert_eq!(info.original_topic, "t");
    assert_eq!(info.original_partition, Some(0));
    assert_eq!(info.attempts, 3);
    assert_eq!(info.error_kind, "delivery_timeout");
    assert!(info.error.contains("delivery_timeout"), "{}", info.error);
    assert_eq!(
        first
            .headers
            .iter()
            .filter(|(k, _)| k == "dlt-attempts")
            .count(),
        1,
        "the stale attempts header is replaced"
    );
    assert_eq!(
        (text(&second.key), text(&second.value)),
        ("key-2".into(), "payload-2".into())
    );
    let info = FailureInfo::from_headers(&headers(second)).unwrap();
    assert_eq!((info.attempts, info.error_kind.as_str()), (1, "broker"));
    assert_eq!(info.original_partition, None);
    assert_eq!(
        cluster.high_watermark("t", 0),
        0,
        "nothing reached the topic"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_timeout_says_whether_the_record_may_still_arrive() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = quick_retries(&bootstrap).build().await.unwrap();
    let ok = producer
        .send_with_timeout(Record::new("t").value("prompt"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ok.offset, 0);

    // Accepted, then the broker is slow: a timeout, possibly persisted.
    cluster.inject(Fault::new(ApiKey::Produce).delay(Duration::from_millis(2000)));
    let started = Instant::now();
    let err = producer
        .send_with_timeout(Record::new("t").value("slow"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "resolved by the deadline"
    );
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(err.possibly_persisted());

    // Never accepted (its topic does not exist): certainly not written.
    let err = producer
        .send_with_timeout(
            Record::new("missing").value("x"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(!err.possibly_persisted());

    // The sink: the same, and the record's status says so too.
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .value_serializer(Utf8)
        .build()
        .unwrap();
    cluster.inject(Fault::new(ApiKey::Produce).delay(Duration::from_millis(2000)));
    let err = sink
        .send_with_timeout(
            SinkRecord::new("slow-too").id("s1"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(err.possibly_persisted() && err.kind() == &ErrorKind::Timeout);
    assert!(matches!(
        sink.status(&MessageId::from("s1")),
        Some(DeliveryStatus::Failed {
            possibly_persisted: true,
            ..
        })
    ));
    sink.close(Duration::from_secs(5)).await.unwrap();

    // Both slow records arrive after all.
    producer.flush().await.unwrap();
    let read = read_back(&bootstrap, "t", 1, 3).await;
    let got: Vec<String> = read.iter().map(|r| text(&r.value)).collect();
    assert_eq!(got, ["prompt", "slow", "slow-too"]);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_cancelled_while_waiting_for_space_frees_its_probe_and_entry() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let bootstrap = cluster.bootstrap_servers();
    let producer = quick_retries(&bootstrap)
        .buffer_memory(8 * 1024)
        .max_request_size(8 * 1024)
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .value_serializer(Utf8)
        .circuit_breaker(
            BreakerConfig::new()
                .failure_threshold(1)
                .open_timeout(Duration::from_millis(200))
                .probes(1),
        )
        .build()
        .unwrap();
    // Trip the breaker, then let it go half-open.
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .error(ResponseError::InvalidRecord)
            .times(1),
    );
    assert!(sink.send_and_wait(SinkRecord::new("x")).await.is_err());
    assert_eq!(sink.breaker_state(), Some(BreakerState::Open));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Fill the buffer behind a slow broker, bypassing the sink.
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .delay(Duration::from_millis(1500))
            .times(1000),
    );
    let big = "y".repeat(3000);
    let mut held = Vec::new();
    // Part of a record's charge comes back once the producer's task took
    // it: fill again until nothing more fits.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = held.len();
        for value in [big.as_str(), "z"] {
            while let Ok(delivery) = producer.try_send(Record::new("t").value(value.to_string())) {
                held.push(delivery);
            }
        }
        if held.len() == before {
            break;
        }
    }
    // The probe waits for space and is given up.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        sink.send(SinkRecord::new("probe").id("probe")),
    )
    .await;
    assert!(cancelled.is_err(), "the send was waiting for space");
    assert_eq!(sink.status(&MessageId::from("probe")), None);
    assert_eq!(sink.metrics().pending, 0);
    assert_eq!(sink.breaker_state(), Some(BreakerState::HalfOpen));
    // Its probe slot is free again: the next send is a probe, not refused.
    cluster.clear_faults();
    for delivery in held {
        delivery.await.unwrap();
    }
    sink.send_and_wait(SinkRecord::new("next")).await.unwrap();
    assert_eq!(sink.breaker_state(), Some(BreakerState::Closed));
    producer.close(Duration::from_secs(5)).await.unwrap();
}
