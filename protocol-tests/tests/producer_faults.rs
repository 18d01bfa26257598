//! Fault scenarios of the producer (numbers from the fault-scenario list),
//! checked by reading the log back rather than trusting delivery reports.

use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
use rdkafka::mocking::MockCluster;
use smartkafka::{ErrorKind, Producer, Record};

mod support;

use support::fixtures::{self, quick_retries};
use support::workload;

/// Values stored in `topic-partition` of the fake cluster, in log order.
fn logged(cluster: &FakeCluster, topic: &str, partition: i32) -> Vec<String> {
    cluster
        .records(topic, partition)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn send_all(producer: &Producer, topic: &str, partition: i32, vals: &[String]) {
    let mut futures = Vec::new();
    for v in vals {
        futures.push(
            producer
                .send(Record::new(topic).partition(partition).value(v.clone()))
                .await
                .unwrap(),
        );
    }
    for f in futures {
        f.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_01_not_leader_retries_to_new_leader() {
    let cluster = fixtures::cluster(3, "t", 3).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    let first = values("a", 50);
    send_all(&producer, "t", 0, &first).await;
    // Leadership moves; the old leader now answers NOT_LEADER_OR_FOLLOWER.
    let (old, _) = cluster.leader("t", 0).unwrap();
    let new = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != old)
        .unwrap();
    cluster.set_leader("t", 0, new);
    let second = values("b", 200);
    send_all(&producer, "t", 0, &second).await;
    assert!(producer.stats().retries >= 1, "{:?}", producer.stats());
    let mut expected = first;
    expected.extend(second);
    assert_eq!(logged(&cluster, "t", 0), expected, "exactly once, in order");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Scenario 1 without a leader hint: an injected NOT_LEADER_OR_FOLLOWER
/// (no `current_leader` in the answer) makes the producer refresh metadata
/// before it resends the same batch; nothing is duplicated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_01_not_leader_without_hint_refreshes_metadata() {
    let cluster = fixtures::cluster(3, "t", 3).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    let first = values("a", 20);
    send_all(&producer, "t", 0, &first).await;
    let metadata_before = cluster.request_count(ApiKey::Metadata);
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .error(kafka_protocol::ResponseError::NotLeaderOrFollower)
            .times(2),
    );
    let second = values("b", 100);
    send_all(&producer, "t", 0, &second).await;
    assert_eq!(cluster.pending_faults(), 0, "both faults were hit");
    assert!(
        cluster.request_count(ApiKey::Metadata) > metadata_before,
        "a leadership error without a hint refreshes metadata"
    );
    assert!(producer.stats().retries >= 2, "{:?}", producer.stats());
    assert_eq!(producer.stats().leader_hints, 0);
    let mut expected = first;
    expected.extend(second);
    assert_eq!(logged(&cluster, "t", 0), expected, "exactly once, in order");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Scenario 3 (KIP-951): the old leader answers NOT_LEADER_OR_FOLLOWER with
/// the new leader and its endpoint; the producer switches without a
/// metadata round trip and delivers exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_03_leader_hint_switches_without_metadata_refresh() {
    let cluster = fixtures::cluster(3, "t", 3).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    let first = values("a", 20);
    send_all(&producer, "t", 1, &first).await;
    let (old, _) = cluster.leader("t", 1).unwrap();
    let new = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != old)
        .unwrap();
    cluster.set_leader("t", 1, new);
    let metadata_before = cluster.request_count(ApiKey::Metadata);
    let second = values("b", 100);
    send_all(&producer, "t", 1, &second).await;
    let stats = producer.stats();
    assert_eq!(stats.leader_hints, 1, "{stats:?}");
    assert_eq!(
        cluster.request_count(ApiKey::Metadata),
        metadata_before,
        "the hint replaced the metadata round trip"
    );
    let mut expected = first;
    expected.extend(second);
    assert_eq!(logged(&cluster, "t", 1), expected, "exactly once, in order");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Scenario 21: KAFKA_STORAGE_ERROR is retried (after a metadata refresh, as
/// the replica may have moved) until the write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_21_storage_error_is_retried() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .error(kafka_protocol::ResponseError::KafkaStorageError)
            .times(3),
    );
    let vals = values("s", 50);
    send_all(&producer, "t", 0, &vals).await;
    assert_eq!(cluster.pending_faults(), 0);
    assert!(producer.stats().retries >= 3, "{:?}", producer.stats());
    assert_eq!(producer.stats().errors, 0);
    assert_eq!(logged(&cluster, "t", 0), vals, "exactly once, in order");
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_23_request_timeout_closes_connection_and_retries() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .request_timeout(Duration::from_millis(400))
        .delivery_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;
    cluster.inject(Fault::new(ApiKey::Produce).delay(Duration::from_millis(1200)));
    let vals = values("v", 100);
    send_all(&producer, "t", 0, &vals).await;
    assert!(producer.stats().retries >= 1, "{:?}", producer.stats());
    // Give a late write of the timed-out request time to land.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let log = logged(&cluster, "t", 0);
    // Without idempotence (a later piece) the broker may also have applied
    // the timed-out attempt: every record is present, first occurrences are
    // in send order, and only the timed-out batch can repeat.
    let mut first_seen = Vec::new();
    for v in &log[1..] {
        if !first_seen.contains(v) {
            first_seen.push(v.clone());
        }
    }
    assert_eq!(first_seen, vals);
    assert!(log.len() - 1 - vals.len() <= vals.len());
    // The connection was not reused for the late answer: later sends work.
    producer
        .send_and_wait(Record::new("t").value("after"))
        .await
        .unwrap();
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_24_connection_dropped_on_receipt_retries() {
    let cluster = fixtures::cluster(2, "t", 2).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, Some(0)).await;
    cluster.inject(Fault::new(ApiKey::Produce).drop_connection().times(2));
    let vals = values("v", 300);
    send_all(&producer, "t", 0, &vals).await;
    assert!(producer.stats().retries >= 1, "{:?}", producer.stats());
    let mut expected = vec!["warm-up".to_string()];
    expected.extend(vals);
    assert_eq!(
        logged(&cluster, "t", 0),
        expected,
        "no duplicate, order kept"
    );
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_27_buffer_full_waits_then_fails() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .buffer_memory(64 * 1024)
        .batch_size(16 * 1024)
        .max_request_size(32 * 1024)
        .max_block(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, None).await;

    // Too large for the request size or the buffer: refused at once.
    let started = Instant::now();
    let err = producer
        .send(Record::new("t").value(vec![0u8; 40 * 1024]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::RecordTooLarge, "{err}");
    assert!(started.elapsed() < Duration::from_millis(200));

    // A slow broker: the buffer fills, then send waits max_block and fails.
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .delay(Duration::from_millis(1500))
            .times(2),
    );
    let mut accepted = Vec::new();
    let mut futures = Vec::new();
    let err = loop {
        let v = format!("v-{:04}-{}", accepted.len(), "x".repeat(1000));
        let started = Instant::now();
        match producer.send(Record::new("t").value(v.clone())).await {
            Ok(f) => {
                accepted.push(v);
                futures.push(f);
            }
            Err(e) => break (e, started.elapsed()),
        }
        assert!(accepted.len() < 1000, "the buffer never filled");
    };
    assert_eq!(err.0.kind(), &ErrorKind::BufferExhausted, "{}", err.0);
    assert!(
        err.1 >= Duration::from_millis(250),
        "waited only {:?}",
        err.1
    );
    assert!(!err.0.possibly_persisted());
    // try_send never waits.
    let started = Instant::now();
    let try_err = producer
        .try_send(Record::new("t").value("y".repeat(1000)))
        .unwrap_err();
    assert_eq!(try_err.kind(), &ErrorKind::BufferExhausted);
    assert!(started.elapsed() < Duration::from_millis(50));

    // Nothing accepted earlier is lost.
    for f in futures {
        f.await.unwrap();
    }
    let mut expected = vec!["warm-up".to_string()];
    expected.extend(accepted);
    assert_eq!(logged(&cluster, "t", 0), expected);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_28_unknown_topic_fails_after_max_block() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .max_block(Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let err = producer
        .send(Record::new("no-such-topic").value("v"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("no-such-topic"), "{err}");
    assert!(!err.possibly_persisted());
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(cluster.topics().iter().all(|t| t != "no-such-topic"));
    // The producer still works for known topics.
    producer
        .send_and_wait(Record::new("t").value("ok"))
        .await
        .unwrap();
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_29_flush_and_close() {
    let cluster = fixtures::cluster(2, "t", 2).await;
    let producer = quick_retries(&cluster.bootstrap_servers())
        .linger(Duration::from_secs(30))
        .delivery_timeout(Duration::from_secs(90))
        .build()
        .await
        .unwrap();
    // flush: returns only when everything sent before it has completed,
    // even with a linger far longer than the test.
    let first = values("f", 100);
    let mut futures = Vec::new();
    for v in &first {
        futures.push(
            producer
                .send(Record::new("t").partition(0).value(v.clone()))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    producer.flush().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(producer.stats().queued_records, 0);
    assert_eq!(logged(&cluster, "t", 0), first);
    for f in futures {
        f.await.unwrap();
    }

    // close drains what is queued.
    let second = values("c", 50);
    let mut futures = Vec::new();
    for v in &second {
        futures.push(
            producer
                .send(Record::new("t").partition(1).value(v.clone()))
                .await
                .unwrap(),
        );
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    for f in futures {
        f.await.unwrap();
    }
    assert_eq!(logged(&cluster, "t", 1), second);
    let err = producer
        .send(Record::new("t").value("late"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Closed);

    // close(timeout) fails what is left at the deadline: in flight, so
    // possibly persisted.
    let producer = quick_retries(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    fixtures::warm_up(&producer, Some(0)).await;
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .delay(Duration::from_secs(2))
            .times(1),
    );
    let stuck = producer
        .send(Record::new("t").partition(0).value("stuck"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let err = producer
        .close(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    let failed = stuck.await.unwrap_err();
    assert!(failed.possibly_persisted(), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_14_unsent_batch_expires_not_persisted() {
    let cluster = MockCluster::new(2).unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    cluster.partition_leader("t", 0, None).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = quick_retries(&bootstrap)
        .request_timeout(Duration::from_millis(500))
        .delivery_timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let delivery = producer
        .send(Record::new("t").partition(0).value("never"))
        .await
        .unwrap();
    let err = delivery.await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), &ErrorKind::DeliveryTimeout, "{err}");
    assert!(!err.possibly_persisted(), "never sent: {err}");
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Read the log back once the partition has a leader again: empty.
    cluster.partition_leader("t", 0, Some(1)).unwrap();
    producer
        .send_and_wait(Record::new("t").partition(0).value("later"))
        .await
        .unwrap();
    let read = tokio::task::spawn_blocking(move || workload::consume_all(&bootstrap, "t", 1, 1))
        .await
        .unwrap();
    let vals: Vec<_> = read.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(vals, vec![b"later".to_vec()]);
    producer.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_04_partition_without_leader_waits() {
    let cluster = MockCluster::new(2).unwrap();
    cluster.create_topic("t", 2, 1).unwrap();
    cluster.partition_leader("t", 0, None).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = quick_retries(&bootstrap).build().await.unwrap();
    let vals = values("w", 100);
    let mut futures = Vec::new();
    for v in &vals {
        futures.push(
            producer
                .send(Record::new("t").partition(0).value(v.clone()))
                .await
                .unwrap(),
        );
    }
    // Other partitions are not held up.
    producer
        .send_and_wait(Record::new("t").partition(1).value("free"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(producer.stats().queued_records, 100);
    cluster.partition_leader("t", 0, Some(2)).unwrap();
    for f in futures {
        let md = f.await.unwrap();
        assert_eq!(md.partition, 0);
    }
    let read = tokio::task::spawn_blocking(move || workload::consume_all(&bootstrap, "t", 1, 100))
        .await
        .unwrap();
    let got: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(got, vals);
    producer.close(Duration::from_secs(5)).await.unwrap();
}
