//! One group of smartkafka and rust-rdkafka consumers on the librdkafka
//! mock cluster, with members leaving and joining every couple of seconds
//! while records are produced. Read back from every member's own callbacks
//! and records: no partition is ever owned by two members at once, every
//! record is processed at least once, and the duplicates (re-reads after a
//! rebalance) are counted and bounded by what a partition can hold
//! uncommitted when it is handed over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::mocking::MockCluster;
use smartkafka::consumer::{
    Assignor, AutoOffsetReset, Consumer, ConsumerConfig, RebalanceContext, RebalanceListener,
};
use smartkafka::{Producer, Record};
use tokio::time::Instant;

const TOPIC: &str = "churn";
const PARTITIONS: i32 = 6;
const TOTAL: usize = 60_000;

/// Ownership changes of every member, and the values each processed.
#[derive(Debug, Default)]
struct Log {
    /// (member, time, assigned?, partition)
    ownership: Vec<(String, Instant, bool, i32)>,
    processed: Vec<usize>,
}

type Shared = Arc<Mutex<Log>>;

fn note(log: &Shared, member: &str, assigned: bool, partitions: impl Iterator<Item = i32>) {
    let now = Instant::now();
    let mut log = log.lock().unwrap();
    for p in partitions {
        log.ownership.push((member.to_string(), now, assigned, p));
    }
}

struct OurListener {
    name: String,
    log: Shared,
}

impl RebalanceListener for OurListener {
    fn on_assigned(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        note(&self.log, &self.name, true, partitions.iter().map(|p| p.1));
    }
    fn on_revoked(&mut self, partitions: &[(String, i32)], ctx: &mut RebalanceContext) {
        // Commit what was processed before the partitions move.
        ctx.commit_positions();
        note(&self.log, &self.name, false, partitions.iter().map(|p| p.1));
    }
}

struct TheirContext {
    name: String,
    log: Shared,
}

impl rdkafka::client::ClientContext for TheirContext {}

impl ConsumerContext for TheirContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            note(
                &self.log,
                &self.name,
                false,
                tpl.elements().iter().map(|e| e.partition()),
            );
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            note(
                &self.log,
                &self.name,
                true,
                tpl.elements().iter().map(|e| e.partition()),
            );
        }
    }
}

fn value_of(bytes: &[u8]) -> usize {
    std::str::from_utf8(bytes).unwrap().parse().unwrap()
}

fn spawn_ours(
    bootstrap: String,
    name: String,
    log: Shared,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = ConsumerConfig::new(&bootstrap, "churn")
            .assignors(vec![Assignor::Range])
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .heartbeat_interval(Duration::from_millis(300))
            .session_timeout(Duration::from_secs(6))
            .max_poll_interval(Duration::from_secs(10))
            .auto_commit_interval(Duration::from_millis(500))
            .max_poll_records(200);
        let mut consumer = Consumer::builder()
            .config(config)
            .client_id(name.clone())
            .rebalance_listener(OurListener {
                name: name.clone(),
                log: Arc::clone(&log),
            })
            .build()
            .await
            .expect("consumer");
        consumer.subscribe(&[TOPIC]).unwrap();
        while !stop.load(Ordering::Relaxed) {
            let records = consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll");
            let mut log = log.lock().unwrap();
            for record in records {
                log.processed
                    .push(value_of(record.value.as_deref().unwrap()));
            }
        }
        consumer.close().await.expect("close");
    })
}

fn spawn_theirs(
    bootstrap: String,
    name: String,
    log: Shared,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer<TheirContext> = RdConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "churn")
            .set("client.id", &name)
            .set("partition.assignment.strategy", "range")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .create_with_context(TheirContext {
                name: name.clone(),
                log: Arc::clone(&log),
            })
            .unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let value = value_of(m.payload().unwrap());
                log.lock().unwrap().processed.push(value);
            }
        }
        // Dropping closes: librdkafka revokes (committing) and leaves.
        drop(consumer);
    })
}

enum Member {
    Ours(Arc<AtomicBool>, tokio::task::JoinHandle<()>),
    Theirs(Arc<AtomicBool>, std::thread::JoinHandle<()>),
}

impl Member {
    async fn stop(self) {
        match self {
            Member::Ours(stop, task) => {
                stop.store(true, Ordering::Relaxed);
                task.await.unwrap();
            }
            Member::Theirs(stop, thread) => {
                stop.store(true, Ordering::Relaxed);
                tokio::task::spawn_blocking(move || thread.join().unwrap())
                    .await
                    .unwrap();
            }
        }
    }
}

fn start(n: usize, bootstrap: &str, log: &Shared) -> Member {
    let stop = Arc::new(AtomicBool::new(false));
    // Three of every five members are ours.
    if n % 5 < 3 {
        let task = spawn_ours(
            bootstrap.to_string(),
            format!("ours-{n}"),
            Arc::clone(log),
            Arc::clone(&stop),
        );
        Member::Ours(stop, task)
    } else {
        let thread = spawn_theirs(
            bootstrap.to_string(),
            format!("theirs-{n}"),
            Arc::clone(log),
            Arc::clone(&stop),
        );
        Member::Theirs(stop, thread)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_and_go_and_no_partition_has_two_owners() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let log: Shared = Arc::default();

    let producing = {
        let bootstrap = bootstrap.clone();
        tokio::spawn(async move {
            let producer = Producer::builder()
                .bootstrap_servers(&bootstrap)
                .build()
                .await
                .unwrap();
            let mut waits = Vec::with_capacity(TOTAL);
            // About 6,000 records/s for 10 s.
            for i in 0..TOTAL {
                let partition = i32::try_from(i).unwrap() % PARTITIONS;
                let record = Record::new(TOPIC).partition(partition).value(i.to_string());
                waits.push(producer.send(record).await.unwrap());
                if i % 600 == 599 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for wait in waits {
                wait.await.unwrap();
            }
            producer.close(Duration::from_secs(10)).await.unwrap();
        })
    };

    let mut members: Vec<Member> = (0..5).map(|n| start(n, &bootstrap, &log)).collect();
    // Every 2 s one member leaves and a new one joins, six times.
    for (round, next) in (0..6).zip(5..) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leaving = members.remove(round % members.len());
        leaving.stop().await;
        members.push(start(next, &bootstrap, &log));
    }
    producing.await.unwrap();
    // Let the group settle and drain.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let distinct: BTreeSet<usize> = log.lock().unwrap().processed.iter().copied().collect();
        if distinct.len() >= TOTAL || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for member in members {
        member.stop().await;
    }

    let log = log.lock().unwrap();
    // At most one owner per partition at any moment: replay the callbacks
    // in time order.
    let mut events = log.ownership.clone();
    events.sort_by_key(|e| (e.1, !e.2));
    let mut owner: BTreeMap<i32, String> = BTreeMap::new();
    let mut handovers = 0;
    for (member, at, assigned, partition) in &events {
        if *assigned {
            if let Some(other) = owner.get(partition) {
                panic!(
                    "partition {partition} assigned to {member} at {at:?} while {other} owns it"
                );
            }
            owner.insert(*partition, member.clone());
            handovers += 1;
        } else if owner.get(partition) == Some(member) {
            owner.remove(partition);
        }
    }
    // Each of the six departures hands at least one partition over.
    assert!(
        handovers >= 6,
        "members came and went: {handovers} assignments"
    );
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for v in &log.processed {
        *counts.entry(*v).or_default() += 1;
    }
    let missing = (0..TOTAL).filter(|v| !counts.contains_key(v)).count();
    assert_eq!(missing, 0, "every record processed at least once");
    assert!(counts.keys().all(|v| *v < TOTAL), "no phantom records");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "churn: {} records, {} processed, {duplicates} duplicates, {handovers} assignments",
        TOTAL,
        log.processed.len()
    );
    // A partition handed over is read again from its last commit: at most
    // what its owner processed since then. Commits go out every 500 ms and
    // on revoke, but the mock refuses commits while its group is joining,
    // so allow one commit interval of the partition's records (6,000/s
    // over 6 partitions for 0.5 s: 500), one poll batch (200) and the same
    // again for a commit refused during the join: 1,000 per hand-over.
    let bound = handovers * 1_000;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates for {handovers} hand-overs: more than {bound}"
    );
}
