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

/// The blocking consumer reads and commits from a plain thread, and
/// refuses to block a thread that runs asynchronous code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_consumer_reads_and_commits_from_a_plain_thread() {
    let cluster = cluster().await;
    produce(&cluster, 0, 100).await;
    let config = config(&cluster, "blocking").enable_auto_commit(false);
    let refused = smartkafka::blocking::Consumer::new(config.clone()).unwrap_err();
    assert_eq!(
        refused.kind(),
        &ErrorKind::BlockingInAsyncContext,
        "{refused}"
    );
    let read = tokio::task::spawn_blocking(move || {
        let mut consumer = smartkafka::blocking::Consumer::new(config).unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        let mut read = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while read.len() < 100 && Instant::now() < deadline {
            read.extend(values(&consumer.poll(Duration::from_millis(100)).unwrap()));
        }
        consumer.commit().unwrap();
        consumer.close().unwrap();
        read
    })
    .await
    .unwrap();
    let distinct: BTreeSet<usize> = read.iter().copied().collect();
    assert_eq!((read.len(), distinct.len()), (100, 100));
    for p in 0..PARTITIONS {
        assert_eq!(
            cluster.committed_offset("blocking", TOPIC, p),
            Some(cluster.high_watermark(TOPIC, p))
        );
    }
}

/// Set in the child process of
/// [`a_consumer_killed_mid_stream_resumes_from_its_commits`]: the
/// bootstrap servers it consumes from.
const CHILD_BOOTSTRAP: &str = "SMARTKAFKA_TEST_CONSUMER_CHILD";

/// A consumer process is killed with SIGKILL mid-stream (no close, no
/// leave, no last commit) and a new process takes its place: the group
/// resumes from the committed offsets and no record is lost; the records
/// read twice are at most those processed after the last commit (one
/// poll's worth).
///
/// The test binary runs itself as the consumer process; in that process
/// this test is the consumer loop, printing each value it processed and
/// committing after each poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_stream_resumes_from_its_commits() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const TOTAL: usize = 4_000;
    const BATCH: usize = 50;
    if let Ok(bootstrap) = std::env::var(CHILD_BOOTSTRAP) {
        let config = ConsumerConfig::new(&bootstrap, "killed")
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .enable_auto_commit(false)
            .heartbeat_interval(Duration::from_millis(100))
            .session_timeout(Duration::from_millis(800))
            .max_poll_records(BATCH);
        let mut consumer = Consumer::new(config).await.unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        loop {
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            for v in values(&records) {
                println!("processed {v}");
            }
            // Slow enough that the parent can kill it mid-stream.
            tokio::time::sleep(Duration::from_millis(5)).await;
            consumer.commit().await.unwrap();
        }
    }

    let cluster = cluster().await;
    produce(&cluster, 0, TOTAL).await;
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "group_consumer_fake::a_consumer_killed_mid_stream_resumes_from_its_commits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_BOOTSTRAP, cluster.bootstrap_servers())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Reads the child's "processed N" lines on a thread of their own.
    let collect = |child: &mut std::process::Child| {
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness's "test ... " header may share the first line.
                if let Some((_, v)) = line.split_once("processed ") {
                    let _ = tx.send(v.parse().unwrap());
                }
            }
        });
        rx
    };
    let mut read: Vec<usize> = Vec::new();
    let mut first = spawn();
    let lines = collect(&mut first);
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < TOTAL / 2 {
        assert!(
            Instant::now() < deadline,
            "the first process read {}",
            read.len()
        );
        if let Ok(v) = lines.recv_timeout(Duration::from_millis(100)) {
            read.push(v);
        }
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Every line it printed before it died (the channel closes at EOF).
    read.extend(lines.iter());
    let before_kill = read.len();

    let mut second = spawn();
    let lines = collect(&mut second);
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.iter().collect::<BTreeSet<_>>().len() < TOTAL && Instant::now() < deadline {
        if let Ok(v) = lines.recv_timeout(Duration::from_millis(100)) {
            read.push(v);
        }
    }
    second.kill().unwrap();
    second.wait().unwrap();
    read.extend(lines.iter());

    let distinct: BTreeSet<usize> = read.iter().copied().collect();
    let missing: Vec<usize> = (0..TOTAL).filter(|v| !distinct.contains(v)).collect();
    let committed: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|p| cluster.committed_offset("killed", TOPIC, p))
        .collect();
    assert_eq!(
        distinct.len(),
        TOTAL,
        "every record processed (first process: {before_kill}); missing {missing:?}, committed {committed:?}"
    );
    assert!(distinct.iter().all(|v| *v < TOTAL), "no phantom records");
    let duplicates = read.len() - distinct.len();
    assert!(
        duplicates <= BATCH,
        "{duplicates} records processed twice: more than one poll after the last commit"
    );
    assert!(
        before_kill < TOTAL,
        "the first process was killed mid-stream"
    );
}

/// KIP-429 on the fake coordinator: a second member joins a cooperative
/// group; the first revokes only what moves, and after the follow-up
/// rebalance both hold half, with no partition ever owned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_hands_over_half_in_two_rounds() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = cluster().await;
    let coop = || config(&cluster, "coop").assignors(vec![Assignor::CooperativeSticky]);
    let first_events = Events::default();
    let mut first = Consumer::builder()
        .config(coop())
        .rebalance_listener(first_events.clone())
        .build()
        .await
        .unwrap();
    first.subscribe(&[TOPIC]).unwrap();
    let mut read = Vec::new();
    poll_until_owning(&mut first, 4, Duration::from_secs(10), &mut read).await;
    let mut second = Consumer::new(coop()).await.unwrap();
    second.subscribe(&[TOPIC]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(first.assignment().len() == 2 && second.assignment().len() == 2) {
        assert!(
            Instant::now() < deadline,
            "{:?} / {:?}",
            first.assignment(),
            second.assignment()
        );
        for c in [&mut first, &mut second] {
            read.extend(values(&c.poll(Duration::from_millis(30)).await.unwrap()));
        }
    }
    let log = first_events.0.lock().unwrap().clone();
    let revoked: Vec<&Event> = log.iter().filter(|(what, _)| *what == "revoked").collect();
    assert_eq!(revoked.len(), 1, "{log:?}");
    assert_eq!(revoked[0].1.len(), 2, "only what moved is revoked: {log:?}");
    let owned: BTreeSet<_> = first
        .assignment()
        .into_iter()
        .chain(second.assignment())
        .collect();
    assert_eq!(owned.len(), 4);
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// KIP-447: a read_committed member assigned a partition whose offsets an
/// open transaction is committing waits for the transaction (the
/// coordinator answers `UNSTABLE_OFFSET_COMMIT` to `require_stable`) and
/// then starts from the offset it committed, never from the reset offset
/// before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_waits_for_offsets_an_open_transaction_commits() {
    let cluster = cluster().await;
    produce(&cluster, 0, 40).await;
    let producer = crate::support::fixtures::transactional(
        &cluster.bootstrap_servers(),
        "offsets-in-flight",
        Duration::from_millis(1),
    )
    .await;
    producer.init_transactions().await.unwrap();
    producer.begin_transaction().await.unwrap();
    let offsets = (0..PARTITIONS)
        .map(|p| smartkafka::consumer::OffsetToCommit::new(TOPIC, p, 6))
        .collect();
    producer
        .send_offsets_to_transaction(
            offsets,
            smartkafka::consumer::ConsumerGroupMetadata::new("stable"),
        )
        .await
        .unwrap();
    assert_eq!(
        cluster.committed_offset("stable", TOPIC, 0),
        None,
        "pending"
    );

    let committing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        producer.commit_transaction().await.unwrap();
        Instant::now()
    });
    let mut consumer = Consumer::new(config(&cluster, "stable")).await.unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while first.len() < PARTITIONS as usize && Instant::now() < deadline {
        for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            first.entry(record.partition).or_insert(record.offset);
        }
    }
    let committed_at = committing.await.unwrap();
    assert_eq!(
        first,
        (0..PARTITIONS).map(|p| (p, 6)).collect(),
        "every partition starts at the transaction's offset"
    );
    assert!(committed_at <= Instant::now());
    consumer.close().await.unwrap();
}
