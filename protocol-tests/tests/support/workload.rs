//! What the producer suites share: a record workload whose
//! every record can be recognised when read back, and a rust-rdkafka reader.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;

/// A record as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// `config` as a rust-rdkafka consumer, assigned every partition of `topic`
/// from the beginning.
fn assigned(config: &RdConfig, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Reads `expected` records from every partition of `topic` with
/// rust-rdkafka's consumer, from the beginning.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<ReadRecord> {
    let consumer = assigned(
        RdConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "smartkafka-producer-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false"),
        topic,
        partitions,
    );
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    // Anything beyond `expected` would be a duplicate: give it a moment.
    let extra_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < extra_until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: Vec::new(),
            });
        }
    }
    out
}

/// The key, value, headers and timestamp of workload record `i`.
pub fn workload(i: usize) -> (String, String, Vec<(String, String)>, i64) {
    (
        format!("key-{}", i % 997),
        format!("value-{i:06}-{}", "x".repeat(i % 50)),
        vec![
            ("seq".to_string(), i.to_string()),
            ("origin".to_string(), "smartkafka-test".to_string()),
        ],
        1_700_000_000_000 + i as i64,
    )
}

/// The workload index encoded in a value.
pub fn index_of(value: &[u8]) -> usize {
    let s = std::str::from_utf8(value).unwrap();
    s["value-".len().."value-".len() + 6].parse().unwrap()
}

/// Checks, per partition, that the indices read back are exactly the sent
/// ones, once each, in send order.
pub fn assert_exactly_once_in_order(
    sent: &BTreeMap<i32, Vec<usize>>,
    read: &BTreeMap<i32, Vec<usize>>,
) {
    let total_sent: usize = sent.values().map(Vec::len).sum();
    let total_read: usize = read.values().map(Vec::len).sum();
    assert_eq!(total_read, total_sent, "records read back vs sent");
    for (p, indices) in sent {
        let got = read.get(p).cloned().unwrap_or_default();
        assert_eq!(&got, indices, "partition {p}: order or content differs");
    }
}

/// Reads every partition of `topic` from the beginning with rust-rdkafka's
/// consumer and hands each message to `on_message` as it arrives, without
/// keeping it: for volumes too large to collect.
///
/// Stops once `expected` messages have been seen, then polls `linger` longer
/// so that duplicates beyond `expected` are handed over too. Panics on a
/// consumer error (including a log start offset moved past unread records)
/// and if no message arrives for `stall` before `expected` is reached.
/// Returns how many messages were handed over.
pub fn consume_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    stall: Duration,
    linger: Duration,
    mut on_message: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> usize {
    let consumer = assigned(
        RdConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "smartkafka-producer-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // A log whose start moved past what is still to be read is an error,
            // not a silent jump to its end.
            .set("auto.offset.reset", "error")
            // Bounds the consumer's prefetch queue, whatever the volume.
            .set("queued.max.messages.kbytes", "16384"),
        topic,
        partitions,
    );
    let mut seen = 0usize;
    let mut last_progress = Instant::now();
    while seen < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                on_message(&m);
                seen += 1;
                last_progress = Instant::now();
            }
            Some(Err(e)) => panic!("consumer error after {seen} messages: {e}"),
            None => assert!(
                last_progress.elapsed() < stall,
                "no message for {stall:?}: {seen} of {expected} read from {topic}"
            ),
        }
    }
    let until = Instant::now() + linger;
    while Instant::now() < until {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                on_message(&m);
                seen += 1;
            }
            Some(Err(e)) => panic!("consumer error after {seen} messages: {e}"),
            None => {}
        }
    }
    seen
}

/// Every partition's values of `topic`, in offset order, as a rust-rdkafka
/// consumer with `isolation` (`read_committed` or `read_uncommitted`) reads
/// them from the beginning until each partition reports its end. Fails the
/// test after `timeout`.
pub fn read_to_end(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    timeout: Duration,
) -> HashMap<i32, Vec<String>> {
    let consumer = assigned(
        RdConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("readers-{isolation}"))
            .set("isolation.level", isolation)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "50"),
        topic,
        partitions,
    );
    let mut out: HashMap<i32, Vec<String>> = HashMap::new();
    let mut at_end = vec![false; partitions as usize];
    let started = Instant::now();
    while at_end.iter().any(|e| !e) {
        assert!(
            started.elapsed() < timeout,
            "{isolation} reader timed out; ends reached: {at_end:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => panic!("{isolation} consume: {e}"),
            Some(Ok(m)) => {
                at_end[m.partition() as usize] = false;
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec())
                    .expect("utf8 value");
                out.entry(m.partition()).or_default().push(value);
            }
        }
    }
    out
}
