//! The group consumer against the fake cluster's group coordinator, for
//! the membership faults the librdkafka mock cannot stage: a coordinator
//! that moves, a member that stops polling, a member that goes silent, a
//! static member that restarts, and a static instance id used twice. Every
//! outcome is read back from the cluster (its members, generations and
//! committed offsets) or from the records the members received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol_tests::FakeCluster;
use smartkafka::consumer::{
    Assignor, AutoOffsetReset, Consumer, ConsumerConfig, RebalanceContext, RebalanceListener,
};
use smartkafka::protocol::KafkaCode;
use smartkafka::{ErrorKind, Producer, Record};
use tokio::time::Instant;

const TOPIC: &str = "members";
const PARTITIONS: i32 = 4;

async fn cluster() -> FakeCluster {
    FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .group_initial_rebalance_delay(Duration::from_millis(50))
        .group_session_timeout_range(Duration::from_millis(500), Duration::from_secs(60))
        .build()
        .await
}

fn config(cluster: &FakeCluster, group: &str) -> ConsumerConfig {
    ConsumerConfig::new(&cluster.bootstrap_servers(), group)
        .assignors(vec![Assignor::Range])
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .heartbeat_interval(Duration::from_millis(100))
        .session_timeout(Duration::from_secs(2))
        .max_poll_interval(Duration::from_secs(5))
        .auto_commit_interval(Duration::from_millis(200))
}

/// Writes values `from..to`, spread evenly over the partitions.
async fn produce(cluster: &FakeCluster, from: usize, to: usize) {
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .build()
        .await
        .unwrap();
    let mut waits = Vec::new();
    for i in from..to {
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        let record = Record::new(TOPIC).partition(partition).value(i.to_string());
        waits.push(producer.send(record).await.unwrap());
    }
    for wait in waits {
        wait.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}

fn values(records: &[smartkafka::consumer::ConsumedRecord]) -> Vec<usize> {
    records
        .iter()
        .map(|r| {
            std::str::from_utf8(r.value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Polls until `consumer` owns `partitions` partitions (and for `settle`
/// after that), collecting what it reads.
async fn poll_until_owning(
    consumer: &mut Consumer,
    partitions: usize,
    within: Duration,
    read: &mut Vec<usize>,
) {
    let deadline = Instant::now() + within;
    while consumer.assignment().len() != partitions {
        assert!(
            Instant::now() < deadline,
            "still owning {:?}, expected {partitions} partitions",
            consumer.assignment()
        );
        let records = consumer.poll(Duration::from_millis(50)).await.unwrap();
        read.extend(values(&records));
    }
}

/// Polls two members in turn until they hold every partition between them.
async fn settle(a: &mut Consumer, b: &mut Consumer, read: &mut Vec<usize>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for c in [&mut *a, &mut *b] {
            let records = c.poll(Duration::from_millis(30)).await.unwrap();
            read.extend(values(&records));
        }
        let owned: BTreeSet<_> = a.assignment().into_iter().chain(b.assignment()).collect();
        if owned.len() == PARTITIONS as usize
            && a.assignment().len() + b.assignment().len() == PARTITIONS as usize
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never settled: {:?} / {:?}",
            a.assignment(),
            b.assignment()
        );
    }
}

/// A listener callback's name and partitions.
type Event = (&'static str, Vec<(String, i32)>);

/// The callbacks a member's listener received, in order.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

impl RebalanceListener for Events {
    fn on_assigned(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        self.0
            .lock()
            .unwrap()
            .push(("assigned", partitions.to_vec()));
    }
    fn on_revoked(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        self.0
            .lock()
            .unwrap()
            .push(("revoked", partitions.to_vec()));
    }
    fn on_lost(&mut self, partitions: &[(String, i32)], _: &mut RebalanceContext) {
        self.0.lock().unwrap().push(("lost", partitions.to_vec()));
    }
}

/// The coordinator moves to another broker mid-stream: the members find
/// it again (NOT_COORDINATOR), and every record is read with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_move_is_followed_and_nothing_is_lost() {
    let cluster = cluster().await;
    produce(&cluster, 0, 400).await;
    let mut a = Consumer::new(config(&cluster, "moving")).await.unwrap();
    let mut b = Consumer::new(config(&cluster, "moving")).await.unwrap();
    a.subscribe(&[TOPIC]).unwrap();
    b.subscribe(&[TOPIC]).unwrap();
    let mut read = Vec::new();
    settle(&mut a, &mut b, &mut read).await;
    let before = cluster.group_coordinator("moving");
    let other = cluster
        .broker_ids()
        .into_iter()
        .find(|id| *id != before)
        .unwrap();
    cluster.move_group_coordinator("moving", other);
    produce(&cluster, 400, 800).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while read.iter().collect::<BTreeSet<_>>().len() < 800 && Instant::now() < deadline {
        for c in [&mut a, &mut b] {
            let records = c.poll(Duration::from_millis(50)).await.unwrap();
            read.extend(values(&records));
        }
    }
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    let distinct: BTreeSet<usize> = read.iter().copied().collect();
    assert_eq!(distinct.len(), 800, "every record read");
    assert_eq!(read.len(), 800, "no duplicates without a rebalance");
    for p in 0..PARTITIONS {
        assert_eq!(
            cluster.committed_offset("moving", TOPIC, p),
            Some(cluster.high_watermark(TOPIC, p)),
            "partition {p} committed at its end on the new coordinator"
        );
    }
    assert_eq!(cluster.group_coordinator("moving"), other);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A member that stops polling for longer than `max_poll_interval` leaves
/// the group (the other member takes its partitions), hears that its
/// partitions were lost, and rejoins on its next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_leaves_the_group_and_rejoins() {
    let cluster = cluster().await;
    let events = Events::default();
    let mut slow = Consumer::builder()
        .config(config(&cluster, "slow").max_poll_interval(Duration::from_millis(700)))
        .rebalance_listener(events.clone())
        .build()
        .await
        .unwrap();
    let mut fast = Consumer::new(config(&cluster, "slow")).await.unwrap();
    slow.subscribe(&[TOPIC]).unwrap();
    fast.subscribe(&[TOPIC]).unwrap();
    let mut read = Vec::new();
    settle(&mut slow, &mut fast, &mut read).await;
    assert_eq!(slow.assignment().len(), 2);
    // `slow` stops polling; `fast` goes on and ends up with everything.
    poll_until_owning(&mut fast, 4, Duration::from_secs(10), &mut read).await;
    assert_eq!(
        cluster.group_members("slow").len(),
        1,
        "the slow member left"
    );
    let lost = events
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(what, _)| *what == "lost");
    assert!(!lost, "nothing is reported before the member polls again");
    // Its next poll reports the loss and rejoins.
    settle(&mut slow, &mut fast, &mut read).await;
    let log = events.0.lock().unwrap().clone();
    assert!(
        log.iter().any(|(what, p)| *what == "lost" && p.len() == 2),
        "{log:?}"
    );
    assert_eq!(cluster.group_members("slow").len(), 2, "rejoined");
    slow.close().await.unwrap();
    fast.close().await.unwrap();
}

/// A member that disappears without leaving (dropped, no heartbeats) is
/// removed by the coordinator after its session timeout, and the other
/// member resumes its partitions from its last automatic commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_expelled_after_its_session_timeout() {
    let cluster = cluster().await;
    produce(&cluster, 0, 200).await;
    let mut gone = Consumer::new(config(&cluster, "silent")).await.unwrap();
    let mut stays = Consumer::new(config(&cluster, "silent")).await.unwrap();
    gone.subscribe(&[TOPIC]).unwrap();
    stays.subscribe(&[TOPIC]).unwrap();
    let mut read = Vec::new();
    settle(&mut gone, &mut stays, &mut read).await;
    // Read everything, let an automatic commit happen, then drop one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while read.len() < 200 && Instant::now() < deadline {
        for c in [&mut gone, &mut stays] {
            read.extend(values(&c.poll(Duration::from_millis(50)).await.unwrap()));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gone.poll(Duration::from_millis(10)).await.unwrap();
    stays.poll(Duration::from_millis(10)).await.unwrap();
    drop(gone);
    let dropped_at = Instant::now();
    poll_until_owning(&mut stays, 4, Duration::from_secs(10), &mut read).await;
    assert!(
        dropped_at.elapsed() >= Duration::from_millis(1500),
        "taken over after {:?}: before the session timeout",
        dropped_at.elapsed()
    );
    produce(&cluster, 200, 300).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while read.iter().collect::<BTreeSet<_>>().len() < 300 && Instant::now() < deadline {
        read.extend(values(
            &stays.poll(Duration::from_millis(50)).await.unwrap(),
        ));
    }
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for v in &read {
        *counts.entry(*v).or_default() += 1;
    }
    assert_eq!(counts.len(), 300, "every record read");
    assert!(
        counts.values().all(|n| *n == 1),
        "the commits covered what the dropped member had read: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).count()
    );
    stays.close().await.unwrap();
}

/// KIP-345: a static member that restarts within its session timeout gets
/// its partitions back without a rebalance (same generation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_a_rebalance() {
    let cluster = cluster().await;
    let static_config = |id: &str| {
        config(&cluster, "static")
            .group_instance_id(id)
            .session_timeout(Duration::from_secs(10))
    };
    let mut a = Consumer::new(static_config("a")).await.unwrap();
    let mut b = Consumer::new(static_config("b")).await.unwrap();
    a.subscribe(&[TOPIC]).unwrap();
    b.subscribe(&[TOPIC]).unwrap();
    let mut read = Vec::new();
    settle(&mut a, &mut b, &mut read).await;
    let owned_before = a.assignment();
    let generation = cluster.group_generation("static").unwrap();
    let rebalances = cluster.rebalances("static");
    a.close().await.unwrap();
    assert_eq!(
        cluster.group_members("static").len(),
        2,
        "a static member does not leave on close"
    );
    let mut a = Consumer::new(static_config("a")).await.unwrap();
    a.subscribe(&[TOPIC]).unwrap();
    poll_until_owning(
        &mut a,
        owned_before.len(),
        Duration::from_secs(10),
        &mut read,
    )
    .await;
    b.poll(Duration::from_millis(300)).await.unwrap();
    assert_eq!(a.assignment(), owned_before);
    assert_eq!(cluster.group_generation("static"), Some(generation));
    assert_eq!(cluster.rebalances("static"), rebalances, "no rebalance");
    assert_eq!(b.assignment().len(), 2);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Two processes configured with the same static instance id: the later
/// one takes the membership over, and the earlier one's next poll fails
/// with FENCED_INSTANCE_ID, a fatal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_static_instance_fences_the_older_one() {
    let cluster = cluster().await;
    let static_config = || config(&cluster, "fenced").group_instance_id("same");
    let mut first = Consumer::new(static_config()).await.unwrap();
    first.subscribe(&[TOPIC]).unwrap();
    let mut read = Vec::new();
    poll_until_owning(&mut first, 4, Duration::from_secs(10), &mut read).await;
    let mut second = Consumer::new(static_config()).await.unwrap();
    second.subscribe(&[TOPIC]).unwrap();
    poll_until_owning(&mut second, 4, Duration::from_secs(10), &mut read).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let error = loop {
        match first.poll(Duration::from_millis(100)).await {
            Err(e) => break e,
            Ok(_) => assert!(Instant::now() < deadline, "never fenced"),
        }
    };
    assert_eq!(
        error.kind(),
        &ErrorKind::Broker(KafkaCode::FENCED_INSTANCE_ID),
        "{error}"
    );
    assert!(error.is_fatal() || !error.is_retriable(), "{error}");
    assert!(
        first.assignment().is_empty(),
        "the fenced member owns nothing"
    );
    second.close().await.unwrap();
}
