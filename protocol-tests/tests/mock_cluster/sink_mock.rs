//! The typed sink against librdkafka's mock cluster: the leader of the
//! sink's topic goes down and comes back. The breaker opens within its
//! threshold and closes after recovery; what was delivered is in the log
//! exactly once, what was refused is not, and what failed is in the
//! dead-letter topic (on the broker that stayed up) with its failure
//! headers, all read back with rust-rdkafka's consumer.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use smartkafka::failure_headers::FailureInfo;
use smartkafka::serialization::Utf8;
use smartkafka::sink::{BreakerConfig, BreakerState, RetryPolicy, Sink, SinkRecord};
use smartkafka::{ErrorKind, Header, Producer};

use crate::support::workload::{ReadRecord, consume_all};

async fn read_back(bootstrap: &str, topic: &str, expected: usize) -> Vec<ReadRecord> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, 1, expected))
        .await
        .unwrap()
}

fn value(r: &ReadRecord) -> String {
    String::from_utf8(r.value.clone().unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_and_dead_letters_through_a_broker_outage() {
    let cluster = MockCluster::new(2).expect("librdkafka mock cluster");
    cluster.create_topic("t", 1, 1).unwrap();
    cluster.create_topic("t.dlt", 1, 1).unwrap();
    cluster.partition_leader("t", 0, Some(1)).unwrap();
    cluster.partition_leader("t.dlt", 0, Some(2)).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .retry_backoff(Duration::from_millis(20))
        .retry_backoff_max(Duration::from_millis(100))
        .request_timeout(Duration::from_millis(400))
        .delivery_timeout(Duration::from_millis(600))
        .build()
        .await
        .unwrap();
    let open_timeout = Duration::from_millis(800);
    let sink: Sink<str, str> = Sink::builder(producer.clone(), "t")
        .key_serializer(Utf8)
        .value_serializer(Utf8)
        .circuit_breaker(
            BreakerConfig::new()
                .failure_threshold(3)
                .window(Duration::from_secs(30))
                .open_timeout(open_timeout),
        )
        .retry(RetryPolicy::new(1).backoff(Duration::from_millis(20)))
        .dead_letter_topic("t.dlt")
        .build()
        .unwrap();

    let mut delivered = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for i in 0..5 {
        let v = format!("a-{i}");
        sink.send_and_wait(SinkRecord::new(v.as_str()).key("k"))
            .await
            .unwrap();
        delivered.insert(v);
    }

    cluster.broker_down(1).unwrap();
    // Each failed record counts once per attempt: the breaker opens within
    // three records.
    for i in 0..6 {
        let v = format!("b-{i}");
        match sink.send(SinkRecord::new(v.as_str()).key("k")).await {
            Err(e) => {
                assert_eq!(e.kind(), &ErrorKind::CircuitOpen, "{e}");
                refused.insert(v);
            }
            Ok(delivery) => {
                let err = delivery.await.expect_err("the leader is down");
                assert!(err.is_retriable(), "{err}");
                failed.insert(v);
            }
        }
    }
    assert!(
        (1..=3).contains(&failed.len()),
        "failed before the trip: {failed:?}"
    );
    assert!(!refused.is_empty());
    assert_eq!(sink.metrics().breaker_state, Some(BreakerState::Open));

    cluster.broker_up(1).unwrap();
    tokio::time::sleep(open_timeout + Duration::from_millis(100)).await;
    // The probe goes through (the client reconnects), then the rest.
    let mut closed_after = None;
    for i in 0..30 {
        let v = format!("c-{i}");
        match sink.send(SinkRecord::new(v.as_str()).key("k")).await {
            Err(e) => {
                assert_eq!(e.kind(), &ErrorKind::CircuitOpen, "{e}");
                refused.insert(v);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(delivery) => match delivery.await {
                Ok(_) => {
                    delivered.insert(v);
                    if sink.breaker_state() == Some(BreakerState::Closed) {
                        closed_after.get_or_insert(i);
                    }
                }
                Err(e) => {
                    assert!(e.is_retriable(), "{e}");
                    failed.insert(v);
                }
            },
        }
        if closed_after.is_some_and(|c| i >= c + 5) {
            break;
        }
    }
    assert!(closed_after.is_some(), "the breaker closed after recovery");
    sink.close(Duration::from_secs(10)).await.unwrap();
    let m = sink.metrics();
    assert_eq!(m.breaker_state, Some(BreakerState::Closed));
    assert!(m.breaker_trips >= 1);
    assert_eq!(m.dead_lettered, failed.len() as u64);

    let read = read_back(&bootstrap, "t", delivered.len()).await;
    let values: Vec<String> = read.iter().map(value).collect();
    let unique: BTreeSet<String> = values.iter().cloned().collect();
    assert_eq!(values.len(), unique.len(), "no duplicates: {values:?}");
    assert_eq!(unique, delivered, "exactly the delivered records");
    assert!(refused.is_disjoint(&unique) && failed.is_disjoint(&unique));

    let dead = read_back(&bootstrap, "t.dlt", failed.len()).await;
    let dead_values: BTreeSet<String> = dead.iter().map(value).collect();
    assert_eq!(dead.len(), failed.len());
    assert_eq!(
        dead_values, failed,
        "every failed record, once, in the dead-letter topic"
    );
    for r in &dead {
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        let headers: Vec<Header> = r
            .headers
            .iter()
            .map(|(k, v)| Header::new(k.clone(), v.clone().unwrap_or_default()))
            .collect();
        let info = FailureInfo::from_headers(&headers).expect("failure headers");
        assert_eq!(info.original_topic, "t");
        assert!((1..=2).contains(&info.attempts), "{info:?}");
        assert!(!info.error.is_empty());
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}
