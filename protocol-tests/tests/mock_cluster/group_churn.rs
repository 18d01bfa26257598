//! One group of smartkafka and rust-rdkafka consumers on the librdkafka
//! mock cluster, with members leaving and joining every couple of seconds
//! while records are produced. Read back from every member's own callbacks
//! and records: no partition is ever owned by two members at once, every
//! record is processed at least once, no member ever reads a partition
//! backwards while it owns it, and a new owner never starts below a commit
//! the coordinator acknowledged before the hand-over. Duplicates (re-reads
//! after a hand-over) are counted; how many there are depends on how many
//! commits the mock refuses while its group is joining, so they are
//! reported rather than bounded by a constant.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig as RdConfig;
use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::mocking::MockCluster;
use smartkafka::consumer::{
    Assignor, AutoOffsetReset, Consumer, ConsumerConfig, OffsetToCommit, RebalanceContext,
    RebalanceListener,
};
use smartkafka::{Producer, Record};
use tokio::time::Instant;

const TOPIC: &str = "churn";
const PARTITIONS: i32 = 6;
/// Records produced: 60,000, or `CHURN_RECORDS` (e.g. 1000000 for the long
/// run in `docs/fault-scenarios.md`); production takes about 10 s either
/// way.
fn total() -> usize {
    std::env::var("CHURN_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
}

/// Ownership changes of every member, and the values each processed.
#[derive(Debug, Default)]
struct Log {
    /// (member, time, assigned?, partition)
    ownership: Vec<(String, Instant, bool, i32)>,
    /// (member, time, value)
    processed: Vec<(Arc<str>, Instant, usize)>,
    /// Commits the coordinator acknowledged: (time, partition, next offset).
    acks: Vec<(Instant, i32, i64)>,
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
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if result.is_err() {
            return;
        }
        let acked = Instant::now();
        let mut log = self.log.lock().unwrap();
        for e in offsets.elements() {
            if let (Ok(()), rdkafka::Offset::Offset(at)) = (e.error(), e.offset()) {
                log.acks.push((acked, e.partition(), at));
            }
        }
    }
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
            .enable_auto_commit(false)
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
        let member: Arc<str> = name.into();
        let mut next_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let records = consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll");
            let now = Instant::now();
            {
                let mut log = log.lock().unwrap();
                for record in records {
                    let value = value_of(record.value.as_deref().unwrap());
                    log.processed.push((Arc::clone(&member), now, value));
                }
            }
            // Commit every 500 ms what was processed; note what the
            // coordinator acknowledged.
            if now >= next_commit {
                next_commit = now + Duration::from_millis(500);
                let offsets: Vec<OffsetToCommit> = consumer
                    .assignment()
                    .into_iter()
                    .filter_map(|(t, p)| {
                        let at = consumer.position(&t, p)?;
                        Some(OffsetToCommit::new(t, p, at))
                    })
                    .collect();
                if !offsets.is_empty() && consumer.commit_offsets(&offsets).await.is_ok() {
                    let acked = Instant::now();
                    let mut log = log.lock().unwrap();
                    for o in offsets {
                        log.acks.push((acked, o.partition, o.offset));
                    }
                }
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
        let member: Arc<str> = name.into();
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let value = value_of(m.payload().unwrap());
                let now = Instant::now();
                log.lock()
                    .unwrap()
                    .processed
                    .push((Arc::clone(&member), now, value));
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

/// What happened to one partition in one member, in time order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Revoked,
    Assigned,
    Read(i64),
}

/// Replays each member's view of each partition: while it owns a partition
/// its reads only go forward, and the first read after an assignment is
/// not below the latest commit acknowledged before the partition was last
/// revoked (that commit was applied before the group could hand it over).
fn check_reads(log: &Log) -> Result<(), String> {
    let mut steps: BTreeMap<(&str, i32), Vec<(Instant, Step)>> = BTreeMap::new();
    for (member, at, assigned, p) in &log.ownership {
        let step = if *assigned {
            Step::Assigned
        } else {
            Step::Revoked
        };
        steps.entry((member, *p)).or_default().push((*at, step));
    }
    for (member, at, value) in &log.processed {
        let p = i32::try_from(value % 6).unwrap();
        let offset = i64::try_from(value / 6).unwrap();
        steps
            .entry((member, p))
            .or_default()
            .push((*at, Step::Read(offset)));
    }
    let revokes = |p: i32, before: Instant| {
        log.ownership
            .iter()
            .filter(|e| e.3 == p && !e.2 && e.1 < before)
            .map(|e| e.1)
            .max()
    };
    let floor = |p: i32, before: Instant| {
        log.acks
            .iter()
            .filter(|a| a.1 == p && a.0 < before)
            .map(|a| a.2)
            .max()
    };
    for ((member, p), mut steps) in steps {
        steps.sort();
        let mut first_floor: Option<Option<i64>> = None;
        let mut last: Option<i64> = None;
        for (at, step) in steps {
            match step {
                Step::Revoked => last = None,
                Step::Assigned => {
                    first_floor = Some(revokes(p, at).and_then(|r| floor(p, r)));
                    last = None;
                }
                Step::Read(offset) => {
                    if let Some(Some(committed)) = first_floor.take()
                        && offset < committed
                    {
                        return Err(format!(
                            "{member} started partition {p} at {offset}, below the commit \
                             {committed} acknowledged before the hand-over"
                        ));
                    }
                    if let Some(previous) = last
                        && offset <= previous
                    {
                        return Err(format!(
                            "{member} read partition {p} backwards: {offset} after {previous}"
                        ));
                    }
                    last = Some(offset);
                }
            }
        }
    }
    Ok(())
}

/// Prints, in time order, every ownership change and each run of offsets
/// a member read from a partition, so a failing run shows where the
/// re-reads began.
fn print_history(log: &Log) {
    let Some(t0) = log.ownership.iter().map(|e| e.1).min() else {
        return;
    };
    let ms = |at: &Instant| at.duration_since(t0).as_millis();
    let mut lines: Vec<(u128, String)> = log
        .ownership
        .iter()
        .map(|(member, at, assigned, p)| {
            let what = if *assigned { "assigned" } else { "revoked" };
            (ms(at), format!("{member} {what} {p}"))
        })
        .collect();
    // Runs of consecutive offsets per (member, partition).
    let mut runs: BTreeMap<(Arc<str>, usize), (u128, usize, usize)> = BTreeMap::new();
    for (member, at, value) in &log.processed {
        let key = (Arc::clone(member), value % 6);
        let offset = value / 6;
        match runs.get_mut(&key) {
            Some(run) if offset == run.2 + 1 => run.2 = offset,
            Some(run) => {
                lines.push((
                    run.0,
                    format!("{} read {}: {}..={}", key.0, key.1, run.1, run.2),
                ));
                *run = (ms(at), offset, offset);
            }
            None => {
                runs.insert(key, (ms(at), offset, offset));
            }
        }
    }
    for ((member, p), (at, first, last)) in runs {
        lines.push((at, format!("{member} read {p}: {first}..={last}")));
    }
    lines.sort();
    for (at, line) in lines {
        eprintln!("{at:>6} ms  {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_and_go_and_no_partition_has_two_owners() {
    let _one_at_a_time = crate::GROUP_SUITES.lock().await;
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let log: Shared = Arc::default();
    let total = total();

    let producing = {
        let bootstrap = bootstrap.clone();
        tokio::spawn(async move {
            let producer = Producer::builder()
                .bootstrap_servers(&bootstrap)
                .build()
                .await
                .unwrap();
            let mut waits = Vec::with_capacity(total);
            // A hundredth of the records every 100 ms: 10 s of production
            // (6,000 records/s by default).
            let per_tick = (total / 100).max(1);
            for i in 0..total {
                let partition = i32::try_from(i).unwrap() % PARTITIONS;
                let record = Record::new(TOPIC).partition(partition).value(i.to_string());
                waits.push(producer.send(record).await.unwrap());
                if i % per_tick == per_tick - 1 {
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
    let deadline = Instant::now() + Duration::from_secs(60 + (total / 20_000) as u64);
    loop {
        let distinct: BTreeSet<usize> = log.lock().unwrap().processed.iter().map(|p| p.2).collect();
        if distinct.len() >= total || Instant::now() > deadline {
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
    for (_, _, v) in &log.processed {
        *counts.entry(*v).or_default() += 1;
    }
    let missing = (0..total).filter(|v| !counts.contains_key(v)).count();
    assert_eq!(missing, 0, "every record processed at least once");
    assert!(counts.keys().all(|v| *v < total), "no phantom records");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "churn: {} records, {} processed, {duplicates} duplicates, {handovers} assignments, {} commits acknowledged",
        total,
        log.processed.len(),
        log.acks.len()
    );
    if std::env::var_os("CHURN_HISTORY").is_some() {
        print_history(&log);
    }
    if let Err(e) = check_reads(&log) {
        print_history(&log);
        panic!("{e}");
    }
}
