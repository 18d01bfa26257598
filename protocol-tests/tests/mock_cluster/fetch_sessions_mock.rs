//! Our consumer's fetch sessions against librdkafka's mock cluster, a
//! broker we did not write. The mock answers every Fetch in full and
//! echoes the session id it was sent (0 for a request asking for a
//! session), so no session ever opens: fault scenario 55 of
//! `docs/fault-scenarios.md`, a broker without sessions. The consumer must
//! stay on full Fetches and read every record exactly once, in order, as
//! rust-rdkafka's consumer reads them from the same mock.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};
use smartkafka::consumer::{AutoOffsetReset, Consumer, ConsumerConfig};
use smartkafka::{Acks, Producer, Record};
use tokio::time::Instant;

const TOPIC: &str = "mock-sessions";
const PARTITIONS: i32 = 6;
const PER_PARTITION: usize = 40;

/// Per partition, the (offset, value) pairs in offset order.
type Log = BTreeMap<i32, Vec<(i64, String)>>;

async fn produce(bootstrap: &str, from: usize, count: usize) -> Log {
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .acks(Acks::All)
        .linger(Duration::from_millis(2))
        .build()
        .await
        .expect("producer");
    let mut waits = Vec::new();
    for i in from..from + count {
        for p in 0..PARTITIONS {
            let value = format!("{p}-{i}");
            let record = Record::new(TOPIC).partition(p).value(value.clone());
            waits.push((value, producer.send(record).await.expect("queued")));
        }
    }
    let mut log = Log::new();
    for (value, wait) in waits {
        let meta = wait.await.expect("delivered");
        log.entry(meta.partition)
            .or_default()
            .push((meta.offset, value));
    }
    for entries in log.values_mut() {
        entries.sort();
    }
    producer
        .close(Duration::from_secs(10))
        .await
        .expect("close");
    log
}

async fn read_until(consumer: &mut Consumer, log: &mut Log, total: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while log.values().map(Vec::len).sum::<usize>() < total {
        assert!(Instant::now() < deadline, "records missing: {log:?}");
        for r in consumer
            .poll(Duration::from_millis(100))
            .await
            .expect("poll")
        {
            let value = String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap();
            log.entry(r.partition).or_default().push((r.offset, value));
        }
    }
    // Anything more would be a duplicate.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        for r in consumer
            .poll(Duration::from_millis(100))
            .await
            .expect("poll")
        {
            let value = String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap();
            log.entry(r.partition).or_default().push((r.offset, value));
        }
    }
}

/// What rust-rdkafka's consumer reads from the mock, from the start.
fn read_back(bootstrap: &str, expected: usize) -> Log {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mock-sessions-reference")
        .set("enable.auto.commit", "false")
        .create()
        .expect("rdkafka consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut log = Log::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
            log.entry(m.partition())
                .or_default()
                .push((m.offset(), value));
            seen += 1;
        }
    }
    log
}

/// Scenario 55 against the mock: our consumer reads a broker that never
/// opens a fetch session, across two waves of records, exactly once and
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reads_the_mock_without_sessions() {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    cluster
        .create_topic(TOPIC, PARTITIONS, 1)
        .expect("create the topic");
    let bootstrap = cluster.bootstrap_servers();
    let mut produced = produce(&bootstrap, 0, PER_PARTITION / 2).await;

    let mut config = ConsumerConfig::new(&bootstrap, "mock-sessions")
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .enable_auto_commit(false);
    config.reader = config.reader.max_wait(Duration::from_millis(100));
    let mut consumer = Consumer::new(config).await.expect("consumer");
    let assignment: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (TOPIC, p)).collect();
    consumer.assign(&assignment).await.expect("assign");

    let mut read = Log::new();
    let half = PER_PARTITION / 2 * PARTITIONS as usize;
    read_until(&mut consumer, &mut read, half).await;
    // A second wave after idle rounds: positions the broker is sent again
    // in full each time.
    for (p, entries) in produce(&bootstrap, PER_PARTITION / 2, PER_PARTITION / 2).await {
        produced.entry(p).or_default().extend(entries);
    }
    let total = PER_PARTITION * PARTITIONS as usize;
    read_until(&mut consumer, &mut read, total).await;

    assert_eq!(read.values().map(Vec::len).sum::<usize>(), total);
    assert_eq!(read, produced, "records read differ from those produced");
    let reference = tokio::task::spawn_blocking(move || read_back(&bootstrap, total))
        .await
        .unwrap();
    assert_eq!(read, reference, "rust-rdkafka reads another log");
    consumer.close().await.expect("close");
}
