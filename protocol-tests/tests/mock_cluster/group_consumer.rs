//! The group consumer against librdkafka's mock cluster, whose group
//! coordinator we did not write: members split a topic, a rust-rdkafka
//! consumer shares a group with ours, partitions move when members come
//! and go, and every record is read back and counted (nothing lost;
//! duplicates only where the commits allow them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use smartkafka::consumer::{
    Assignor, AutoOffsetReset, Consumer, ConsumerConfig, RebalanceContext, RebalanceListener,
};
use smartkafka::{Acks, Producer, Record};
use tokio::time::Instant;

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

fn mock(topic: &str, partitions: i32) -> Mock {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    cluster
        .create_topic(topic, partitions, 1)
        .expect("create the topic");
    cluster
}

/// Produces `count` records to `topic`, values `0..count`, spread evenly
/// over its `partitions`.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let producer = Producer::builder()
        .bootstrap_servers(bootstrap)
        .acks(Acks::All)
        .linger(Duration::from_millis(5))
        .build()
        .await
        .expect("producer");
    let mut waits = Vec::with_capacity(count);
    for i in 0..count {
        let partition = i32::try_from(i).unwrap() % partitions;
        let record = Record::new(topic).partition(partition).value(i.to_string());
        waits.push(producer.send(record).await.expect("queued"));
    }
    for wait in waits {
        wait.await.expect("delivered");
    }
    producer
        .close(Duration::from_secs(10))
        .await
        .expect("close");
}

fn config(bootstrap: &str, group: &str, assignor: Assignor) -> ConsumerConfig {
    ConsumerConfig::new(bootstrap, group)
        .assignors(vec![assignor])
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .heartbeat_interval(Duration::from_millis(300))
        .session_timeout(Duration::from_secs(6))
        .max_poll_interval(Duration::from_secs(10))
        .auto_commit_interval(Duration::from_millis(500))
}

/// When a member's assignment changed, how, and which partitions.
type Event = (Instant, &'static str, Vec<(String, i32)>);

/// What one member saw: records by value, and its assignment history
/// (timestamped), from its own listener.
#[derive(Debug, Default)]
struct Seen {
    values: Vec<usize>,
    events: Vec<Event>,
}

#[derive(Clone)]
struct Recorder(Arc<Mutex<Seen>>);

impl RebalanceListener for Recorder {
    fn on_assigned(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        let mut seen = self.0.lock().unwrap();
        seen.events
            .push((Instant::now(), "assigned", partitions.to_vec()));
    }
    fn on_revoked(&mut self, partitions: &[(String, i32)], ctx: &mut RebalanceContext) {
        ctx.commit_positions();
        let mut seen = self.0.lock().unwrap();
        seen.events
            .push((Instant::now(), "revoked", partitions.to_vec()));
    }
    fn on_lost(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        let mut seen = self.0.lock().unwrap();
        seen.events
            .push((Instant::now(), "lost", partitions.to_vec()));
    }
}

/// Runs a smartkafka member until `stop` is set, recording what it reads.
fn spawn_member(
    config: ConsumerConfig,
    topic: &'static str,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = Consumer::builder()
            .config(config)
            .rebalance_listener(Recorder(Arc::clone(&seen)))
            .build()
            .await
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let records = match consumer.poll(Duration::from_millis(200)).await {
                Ok(records) => records,
                // The mock's SyncGroup race (see `GROUP_SUITES`) lost ten
                // times in a row on a busy machine: poll again, which
                // joins again, as an application would.
                Err(e)
                    if e.to_string().contains("SyncGroup")
                        && e.to_string().contains("INVALID_REQUEST") =>
                {
                    eprintln!("member: {e}; polling again");
                    continue;
                }
                Err(e) => panic!("poll: {e}"),
            };
            let mut seen = seen.lock().unwrap();
            for record in records {
                let value = std::str::from_utf8(record.value.as_deref().unwrap_or_default())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.values.push(value);
            }
        }
        consumer.close().await.expect("close");
    })
}

/// The partitions a member owned at the end, replaying its events.
fn final_assignment(seen: &Seen) -> BTreeSet<(String, i32)> {
    let mut owned = BTreeSet::new();
    for (_, what, partitions) in &seen.events {
        for p in partitions {
            if *what == "assigned" {
                owned.insert(p.clone());
            } else {
                owned.remove(p);
            }
        }
    }
    owned
}

async fn wait_for(total: usize, members: &[Arc<Mutex<Seen>>], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let read: usize = members.iter().map(|m| m.lock().unwrap().values.len()).sum();
        if read >= total || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_every_record_once(total: usize, members: &[Arc<Mutex<Seen>>]) {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for member in members {
        for v in &member.lock().unwrap().values {
            *counts.entry(*v).or_default() += 1;
        }
    }
    let missing: Vec<usize> = (0..total).filter(|v| !counts.contains_key(v)).collect();
    let duplicated: Vec<usize> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| *v)
        .collect();
    assert!(
        missing.is_empty(),
        "missing {} records: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "duplicated {} records",
        duplicated.len()
    );
    assert_eq!(counts.len(), total, "phantom records");
}

fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn two_members_split_the_topic(assignor: Assignor) {
    log_to_test_output();
    const TOPIC: &str = "split";
    const TOTAL: usize = 3_000;
    const PARTITIONS: i32 = 6;
    let cluster = mock(TOPIC, PARTITIONS);
    let bootstrap = cluster.bootstrap_servers();
    let group = format!("split-{}", assignor.name());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let members: Vec<Arc<Mutex<Seen>>> = (0..2).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = members
        .iter()
        .map(|seen| {
            spawn_member(
                config(&bootstrap, &group, assignor),
                TOPIC,
                Arc::clone(seen),
                Arc::clone(&stop),
            )
        })
        .collect();
    // The records are written once both members own their half, so that
    // no hand-over happens while they read: the mock refuses the commit a
    // member makes on revocation while the group is joining, and a
    // hand-over would then re-read what it had read (the churn suite is
    // where hand-overs are measured).
    let deadline = Instant::now() + Duration::from_secs(30);
    while members
        .iter()
        .any(|m| final_assignment(&m.lock().unwrap()).len() != 3)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    produce(&bootstrap, TOPIC, PARTITIONS, TOTAL).await;
    wait_for(TOTAL, &members, Duration::from_secs(30)).await;
    // Let both members settle into one generation before stopping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let finals: Vec<BTreeSet<(String, i32)>> = members
        .iter()
        .map(|m| final_assignment(&m.lock().unwrap()))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    check_every_record_once(TOTAL, &members);
    assert!(finals[0].is_disjoint(&finals[1]), "{finals:?}");
    let union: BTreeSet<_> = finals[0].union(&finals[1]).cloned().collect();
    assert_eq!(union.len(), 6, "{finals:?}");
    assert_eq!(finals[0].len(), 3, "balanced: {finals:?}");

    // The commits on close are the log ends, read back with rust-rdkafka.
    let reader: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition(TOPIC, p);
    }
    let committed = reader
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    for p in 0..6 {
        let (_, high) = reader
            .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
            .unwrap();
        let offset = committed
            .find_partition(TOPIC, p)
            .unwrap()
            .offset()
            .to_raw()
            .unwrap();
        assert_eq!(
            offset, high,
            "partition {p}: committed {offset}, end {high}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_a_topic_with_range() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    two_members_split_the_topic(Assignor::Range).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_a_topic_with_round_robin() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    two_members_split_the_topic(Assignor::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_a_topic_with_cooperative_sticky() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    two_members_split_the_topic(Assignor::CooperativeSticky).await;
}

/// A smartkafka member and a rust-rdkafka member in one group: the
/// assignment bytes each writes are read by the other, and every record is
/// read once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_a_group_with_a_librdkafka_consumer() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    const TOPIC: &str = "mixed";
    log_to_test_output();
    const TOTAL: usize = 2_000;
    const PARTITIONS: i32 = 4;
    // The mock hands out assignments when the leader's SyncGroup arrives
    // and refuses a follower's later one, so a follower that loses that
    // race joins again and the round restarts; the mock waits a session
    // timeout less one second for members to rejoin. A short session keeps
    // each retry short on a busy machine.
    const SESSION: Duration = Duration::from_secs(3);
    let cluster = mock(TOPIC, PARTITIONS);
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, TOPIC, PARTITIONS, TOTAL).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ours: Arc<Mutex<Seen>> = Arc::default();
    let theirs: Arc<Mutex<Seen>> = Arc::default();
    let rd_thread = {
        let theirs = Arc::clone(&theirs);
        let stop = Arc::clone(&stop);
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let consumer: BaseConsumer = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "mixed")
                .set("partition.assignment.strategy", "range")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", SESSION.as_millis().to_string())
                .set("heartbeat.interval.ms", "300")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "500")
                .create()
                .unwrap();
            consumer.subscribe(&[TOPIC]).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let value = std::str::from_utf8(m.payload().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    theirs.lock().unwrap().values.push(value);
                }
                let assignment = consumer.assignment().unwrap();
                let owned: Vec<(String, i32)> = assignment
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let mut seen = theirs.lock().unwrap();
                if seen.events.last().map(|e| &e.2) != Some(&owned) {
                    seen.events.push((Instant::now(), "assigned", owned));
                }
            }
            consumer
                .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
                .ok();
            consumer.unsubscribe();
        })
    };
    // librdkafka first, so ours joins a group that has a member already.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let task = spawn_member(
        config(&bootstrap, "mixed", Assignor::Range).session_timeout(SESSION),
        TOPIC,
        Arc::clone(&ours),
        Arc::clone(&stop),
    );
    // Wait for what the checks below need, not for a count of reads: the
    // rdkafka member re-reads what it had not committed each time the group
    // rebalances, so 2,000 reads can come before ours has anything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ours_owns = !final_assignment(&ours.lock().unwrap()).is_empty();
        let theirs_owns = theirs
            .lock()
            .unwrap()
            .events
            .last()
            .is_some_and(|e| !e.2.is_empty());
        let distinct: BTreeSet<usize> = ours
            .lock()
            .unwrap()
            .values
            .iter()
            .chain(theirs.lock().unwrap().values.iter())
            .copied()
            .collect();
        if ours_owns && theirs_owns && distinct.len() >= TOTAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let our_final = final_assignment(&ours.lock().unwrap());
    let their_final: BTreeSet<(String, i32)> = theirs
        .lock()
        .unwrap()
        .events
        .last()
        .map(|e| e.2.iter().cloned().collect())
        .unwrap_or_default();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    rd_thread.join().unwrap();
    if our_final.len() + their_final.len() != 4 {
        for (who, seen) in [("ours", &ours), ("theirs", &theirs)] {
            let seen = seen.lock().unwrap();
            eprintln!("{who}: {} values", seen.values.len());
            for (at, what, partitions) in &seen.events {
                eprintln!("  {at:?} {what} {partitions:?}");
            }
        }
    }
    assert!(
        our_final.is_disjoint(&their_final),
        "{our_final:?} {their_final:?}"
    );
    assert_eq!(
        our_final.len() + their_final.len(),
        4,
        "{our_final:?} {their_final:?}"
    );
    assert_eq!(our_final.len(), 2, "range gives each member 2 of 4");
    // Both members read, and between them every record once (the rdkafka
    // member may re-read what it had not committed when ours joined, so
    // count ours against theirs).
    assert!(!ours.lock().unwrap().values.is_empty());
    assert!(!theirs.lock().unwrap().values.is_empty());
    let mut all: Vec<usize> = ours.lock().unwrap().values.clone();
    all.extend(theirs.lock().unwrap().values.iter().copied());
    let distinct: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(distinct.len(), TOTAL, "every record read");
    assert!(distinct.iter().all(|v| *v < TOTAL), "no phantom records");
}
