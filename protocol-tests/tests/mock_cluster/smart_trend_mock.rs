//! Trend scoring against librdkafka's mock cluster, with the group's
//! commits made by a rust-rdkafka consumer, not by our code: when the
//! consumer stops committing one partition, keyless records stop going
//! there within a few refreshes, while a partition draining a burst keeps
//! receiving. Where records went is read from the log (end offsets through
//! rust-rdkafka), not from our callbacks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use smartkafka::health::{PartitionStatus, Scoring, SmartConfig};
use smartkafka::{Producer, Record};

use crate::keyless_load::{ends, mock_with_topic, seed, send_keyless_for};
use tokio::time::Instant;

const TOPIC: &str = "trend";
const GROUP: &str = "trend-readers";
const PARTITIONS: i32 = 6;
/// The partition whose consumer stops committing.
const STALLED: i32 = 2;
/// The partition that gets a burst and drains it slowly.
const BURST: i32 = 4;

/// A rust-rdkafka member of the group reading every partition: it commits
/// what it read after each poll, stops touching `STALLED` once `stall` is
/// set, and reads `BURST` at about 2,000 records/s.
fn start_consumer(
    bootstrap: String,
    stall: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let mut stalled_paused = false;
        while !stop.load(Ordering::Relaxed) {
            if stall.load(Ordering::Relaxed) && !stalled_paused {
                let mut paused = TopicPartitionList::new();
                paused.add_partition(TOPIC, STALLED);
                consumer.pause(&paused).expect("pause");
                stalled_paused = true;
            }
            let mut read: BTreeMap<i32, i64> = BTreeMap::new();
            let until = Instant::now() + Duration::from_millis(50);
            while Instant::now() < until {
                let Some(message) = consumer.poll(Duration::from_millis(10)) else {
                    continue;
                };
                let message = message.expect("a record");
                if message.partition() == BURST {
                    std::thread::sleep(Duration::from_micros(500));
                }
                read.insert(message.partition(), message.offset() + 1);
            }
            let mut commit = TopicPartitionList::new();
            for (p, next) in &read {
                if !(stalled_paused && *p == STALLED) {
                    commit
                        .add_partition_offset(TOPIC, *p, Offset::Offset(*next))
                        .unwrap();
                }
            }
            if commit.count() > 0 {
                let _ = consumer.commit(&commit, CommitMode::Sync);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trend_scoring_avoids_a_stalled_partition_and_feeds_one_draining_a_burst() {
    // Timing matters here (a consumer draining at a set rate): run alone
    // beside the other suites that share the machine's two cores.
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let (_cluster, bootstrap, reader) = mock_with_topic(TOPIC, PARTITIONS);
    let stall = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = start_consumer(bootstrap.clone(), Arc::clone(&stall), Arc::clone(&stop));

    let refresh = Duration::from_millis(300);
    let producer = Producer::builder()
        .bootstrap_servers(&bootstrap)
        .linger(Duration::from_millis(5))
        // Small batches: the sticky partitioner moves on after about 40
        // keyless records (KIP-794 counts bytes), so the 1.5 s windows
        // below see dozens of choices, not the four or five that 16 KiB
        // batches would give (with those, a partition at an even share
        // goes unpicked in a window about 40% of the time).
        .batch_size(1024)
        .smart_partitioner(
            SmartConfig::new(GROUP)
                .topics([TOPIC])
                .scoring(Scoring::Trend)
                .max_lag_for_health(300)
                .refresh_interval(refresh)
                .stall_after(Duration::from_secs(1)),
        )
        .build()
        .await
        .expect("producer");

    // Warm-up: every partition has records and commits, and keeps up.
    seed(&producer, TOPIC, PARTITIONS).await;
    send_keyless_for(&producer, TOPIC, Duration::from_secs(2)).await;

    // Partition 2's consumer stops committing; partition 4 gets a burst of
    // 3,000 records its consumer drains at about 2,000/s.
    stall.store(true, Ordering::Relaxed);
    for i in 0..3_000 {
        let _delivery = producer
            .send(
                Record::new(TOPIC)
                    .partition(BURST)
                    .value(format!("burst {i}")),
            )
            .await
            .expect("send");
    }
    producer.flush().await.expect("flush");
    let burst_sent = ends(&reader, TOPIC, PARTITIONS);
    send_keyless_for(&producer, TOPIC, Duration::from_millis(1_500)).await;
    let during_drain = ends(&reader, TOPIC, PARTITIONS);
    // The routing rule itself: a partition whose commits move is never
    // routed nothing, however large its backlog.
    let drain_routing = producer
        .health_summary()
        .expect("smart partitioning")
        .topic(TOPIC)
        .and_then(|t| t.snapshot.clone())
        .and_then(|s| s.get(BURST).and_then(|p| p.routing()));

    // Give trend scoring a few refreshes to call partition 2 stalled, then
    // measure where keyless records go.
    send_keyless_for(&producer, TOPIC, Duration::from_secs(2)).await;
    let summary = producer.health_summary().expect("smart partitioning");
    let snapshot = summary
        .topic(TOPIC)
        .and_then(|t| t.snapshot.clone())
        .expect("health");
    let before = ends(&reader, TOPIC, PARTITIONS);
    send_keyless_for(&producer, TOPIC, Duration::from_secs(3)).await;
    let after = ends(&reader, TOPIC, PARTITIONS);
    stop.store(true, Ordering::Relaxed);
    consumer.join().expect("consumer thread");

    let got = |a: &[i64], b: &[i64]| -> Vec<i64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let drain_window = got(&during_drain, &burst_sent);
    let last_window = got(&after, &before);
    let total: i64 = last_window.iter().sum();
    assert!(total > 1_000, "records were sent: {last_window:?}");
    assert!(
        // Stalled, or stopped once nothing more reaches it.
        snapshot
            .get(STALLED)
            .and_then(|p| p.status())
            .is_some_and(|s| s.is_stuck() || s == PartitionStatus::Lagging),
        "partition {STALLED}: {:?}",
        snapshot.get(STALLED)
    );
    assert!(
        (last_window[STALLED as usize] as f64) < 0.02 * total as f64,
        "the stalled partition got {} of {total}: {last_window:?}",
        last_window[STALLED as usize]
    );
    assert!(
        drain_routing.is_none_or(|r| r.weight > 0.0),
        "the draining partition was routed nothing: {drain_routing:?}"
    );
    // While draining its burst, partition 4 still got keyless records.
    assert!(
        drain_window[BURST as usize] > 0,
        "the draining partition got nothing while it drained: {drain_window:?}"
    );
    let stats = producer.routing_stats().expect("smart partitioning");
    assert!(stats.routed_by_health > 0, "{stats:?}");
    producer.close(Duration::from_secs(5)).await.expect("close");
}
