//! Fetch sessions (KIP-227) between our consumer and the fake cluster's
//! session cache: incremental requests list only what changed, and a
//! session evicted, an epoch refused or a partition paused loses and
//! repeats nothing, and closing the consumer frees its sessions. Fault
//! scenarios 51-57 of `docs/fault-scenarios.md`.
//! What the consumer read is compared with what was produced and with
//! what rust-rdkafka's consumer reads back from the same cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol_tests::kafka_protocol::messages::ApiKey;
use protocol_tests::{FakeCluster, Fault};
use smartkafka::consumer::{AutoOffsetReset, Consumer, ConsumerConfig};
use smartkafka::{Producer, Record};
use tokio::time::Instant;

use crate::support::workload::consume_all;

/// `FETCH_SESSION_ID_NOT_FOUND` and `INVALID_FETCH_SESSION_EPOCH`.
const SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_SESSION_EPOCH: i16 = 71;

/// Per partition, the (offset, value) pairs in offset order.
type Log = BTreeMap<(String, i32), Vec<(i64, String)>>;

/// Writes `count` records to each partition of each topic, values
/// `topic-partition-i` for `i` in `from..from + count`; returns what the
/// broker acknowledged, per partition.
async fn produce(
    cluster: &FakeCluster,
    topics: &[&str],
    partitions: i32,
    from: usize,
    count: usize,
) -> Log {
    let producer = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .linger(Duration::from_millis(2))
        .build()
        .await
        .expect("producer");
    let mut waits = Vec::new();
    for i in from..from + count {
        for topic in topics {
            for p in 0..partitions {
                let value = format!("{topic}-{p}-{i}");
                let record = Record::new(*topic).partition(p).value(value.clone());
                let wait = producer.send(record).await.expect("queued");
                waits.push((value, wait));
            }
        }
    }
    let mut log = Log::new();
    for (value, wait) in waits {
        let meta = wait.await.expect("delivered");
        log.entry((meta.topic.to_string(), meta.partition))
            .or_default()
            .push((meta.offset, value));
    }
    for entries in log.values_mut() {
        entries.sort();
    }
    producer.close(Duration::from_secs(5)).await.expect("close");
    log
}

/// Merges `more` into `log`.
fn extend(log: &mut Log, more: Log) {
    for (key, entries) in more {
        log.entry(key).or_default().extend(entries);
    }
}

/// Our consumer, assigned every partition of `topics`, from the start,
/// with short long-polls so that idle rounds come quickly.
async fn consumer(
    cluster: &FakeCluster,
    group: &str,
    topics: &[&str],
    partitions: i32,
) -> Consumer {
    let mut config = ConsumerConfig::new(&cluster.bootstrap_servers(), group)
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .enable_auto_commit(false);
    config.reader = config.reader.max_wait(Duration::from_millis(100));
    let mut consumer = Consumer::new(config).await.expect("consumer");
    let assignment: Vec<(&str, i32)> = topics
        .iter()
        .flat_map(|t| (0..partitions).map(move |p| (*t, p)))
        .collect();
    consumer.assign(&assignment).await.expect("assign");
    consumer
}

/// Polls until `log` holds `total` records (failing after `within`).
async fn read_until(consumer: &mut Consumer, log: &mut Log, total: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while count(log) < total {
        assert!(
            Instant::now() < deadline,
            "read {} of {total} records within {within:?}",
            count(log)
        );
        read_for(consumer, log, Duration::from_millis(100)).await;
    }
}

/// One poll of up to `wait`, adding what it returns to `log`.
async fn read_for(consumer: &mut Consumer, log: &mut Log, wait: Duration) {
    for r in consumer.poll(wait).await.expect("poll") {
        let value = String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap();
        log.entry((r.topic.to_string(), r.partition))
            .or_default()
            .push((r.offset, value));
    }
}

/// Polls for `period`, adding what comes to `log`.
async fn read_during(consumer: &mut Consumer, log: &mut Log, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        read_for(consumer, log, Duration::from_millis(100)).await;
    }
}

fn count(log: &Log) -> usize {
    log.values().map(Vec::len).sum()
}

/// What rust-rdkafka's consumer reads from `topic`, in the same shape.
async fn read_back(cluster: &FakeCluster, topic: &str, partitions: i32, expected: usize) -> Log {
    let bootstrap = cluster.bootstrap_servers();
    let topic_name = topic.to_string();
    let records = tokio::task::spawn_blocking(move || {
        consume_all(&bootstrap, &topic_name, partitions, expected)
    })
    .await
    .unwrap();
    let mut log = Log::new();
    for r in records {
        let value = String::from_utf8(r.value.unwrap_or_default()).unwrap();
        log.entry((topic.to_string(), r.partition))
            .or_default()
            .push((r.offset, value));
    }
    log
}

/// Checks that `read` is exactly `produced` (every record once, in offset
/// order) and that rust-rdkafka reads the same from the cluster.
async fn assert_read_exactly(
    cluster: &FakeCluster,
    produced: &Log,
    read: &Log,
    topics: &[&str],
    partitions: i32,
) {
    assert_eq!(count(read), count(produced), "records read vs produced");
    assert_eq!(read, produced, "records read differ from those produced");
    let mut reference = Log::new();
    for topic in topics {
        let expected = produced
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, v)| v.len())
            .sum();
        extend(
            &mut reference,
            read_back(cluster, topic, partitions, expected).await,
        );
    }
    assert_eq!(read, &reference, "rust-rdkafka reads another log");
}

/// Three topics of ten partitions over two brokers: after the first full
/// Fetch per broker, the consumer's Fetches list only the partitions whose
/// position moved, and none at all while nothing arrives; every record is
/// read once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetches_list_only_what_changed() {
    let topics = ["sessions-a", "sessions-b", "sessions-c"];
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic(topics[0], 10)
        .topic(topics[1], 10)
        .topic(topics[2], 10)
        .build()
        .await;
    let mut produced = produce(&cluster, &topics, 10, 0, 10).await;
    let mut consumer = consumer(&cluster, "sessions-list", &topics, 10).await;
    let mut read = Log::new();
    read_until(&mut consumer, &mut read, 300, Duration::from_secs(10)).await;
    // The Fetch after the last records lists the partitions that moved.
    read_during(&mut consumer, &mut read, Duration::from_millis(300)).await;

    // Idle: the sessions hold every partition, requests list none.
    let listed = cluster.fetch_partitions_listed();
    let requests = cluster.request_count(ApiKey::Fetch);
    read_during(&mut consumer, &mut read, Duration::from_secs(1)).await;
    let idle_requests = cluster.request_count(ApiKey::Fetch) - requests;
    assert!(idle_requests >= 4, "only {idle_requests} idle fetches");
    assert_eq!(
        cluster.fetch_partitions_listed(),
        listed,
        "idle incremental fetches listed partitions"
    );

    // New records on two partitions: only those are listed again.
    extend(
        &mut produced,
        produce(&cluster, &topics[..1], 2, 10, 5).await,
    );
    let listed = cluster.fetch_partitions_listed();
    read_until(&mut consumer, &mut read, 310, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(500)).await;
    let relisted = cluster.fetch_partitions_listed() - listed;
    assert!(
        (1..=4).contains(&relisted),
        "{relisted} partitions listed for news on two"
    );

    let stats = cluster.fetch_session_stats();
    let all_requests = cluster.request_count(ApiKey::Fetch) as u64;
    assert_eq!(stats.created, 2, "one session per broker: {stats:?}");
    assert_eq!(stats.full_requests, 2, "{stats:?}");
    assert_eq!(stats.incremental_requests + 2, all_requests, "{stats:?}");
    // A full request lists the 15 partitions a broker leads.
    assert!(
        stats.partitions_listed * 3 < all_requests * 15,
        "{} partitions over {all_requests} fetches",
        stats.partitions_listed
    );
    assert_read_exactly(&cluster, &produced, &read, &topics, 10).await;
}

/// Scenario 51: every session is evicted mid-stream; the consumer's next
/// incremental Fetch gets FETCH_SESSION_ID_NOT_FOUND, it asks for a new
/// session with a full Fetch and goes on, losing and repeating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_session_recovers_with_a_full_fetch() {
    let topics = ["evicted"];
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic(topics[0], 6)
        .build()
        .await;
    let mut produced = produce(&cluster, &topics, 6, 0, 20).await;
    let mut consumer = consumer(&cluster, "sessions-evicted", &topics, 6).await;
    let mut read = Log::new();
    // Everything produced so far, so both brokers have answered (the
    // consumer takes each broker's answer as it comes, so half of it can
    // come from one broker alone).
    read_until(&mut consumer, &mut read, 120, Duration::from_secs(10)).await;
    assert_eq!(cluster.fetch_sessions(), 2);

    assert_eq!(cluster.evict_fetch_sessions(), 2);
    extend(&mut produced, produce(&cluster, &topics, 6, 20, 20).await);
    read_until(&mut consumer, &mut read, 240, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(500)).await;

    let stats = cluster.fetch_session_stats();
    assert!(stats.unknown_session_errors >= 1, "{stats:?}");
    assert_eq!(stats.created, 4, "a new session per broker: {stats:?}");
    assert_eq!(cluster.fetch_sessions(), 2);
    assert_read_exactly(&cluster, &produced, &read, &topics, 6).await;
}

/// Scenario 52: a broker refuses the session epoch once
/// (INVALID_FETCH_SESSION_EPOCH); the consumer closes that session with a
/// full Fetch naming it, gets a new one, and loses and repeats nothing.
/// The same for FETCH_SESSION_ID_NOT_FOUND injected as a fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_epoch_recovers_with_a_full_fetch() {
    for (round, code) in [INVALID_SESSION_EPOCH, SESSION_ID_NOT_FOUND]
        .into_iter()
        .enumerate()
    {
        let topics = ["epochs"];
        let cluster = FakeCluster::builder().topic(topics[0], 4).build().await;
        let mut produced = produce(&cluster, &topics, 4, 0, 25).await;
        let mut consumer = consumer(&cluster, &format!("sessions-epoch-{round}"), &topics, 4).await;
        let mut read = Log::new();
        read_until(&mut consumer, &mut read, 100, Duration::from_secs(10)).await;
        let before = cluster.fetch_session_stats();
        assert_eq!(before.created, 1);

        cluster.inject(Fault::new(ApiKey::Fetch).error_code(code));
        extend(&mut produced, produce(&cluster, &topics, 4, 25, 25).await);
        read_until(&mut consumer, &mut read, 200, Duration::from_secs(10)).await;
        read_during(&mut consumer, &mut read, Duration::from_millis(500)).await;

        assert_eq!(cluster.triggered_faults(), 1);
        let after = cluster.fetch_session_stats();
        assert_eq!(after.created, 2, "code {code}: {after:?}");
        assert_eq!(after.full_requests, 2, "code {code}: {after:?}");
        if code == INVALID_SESSION_EPOCH {
            // The full Fetch named the old session, which was closed.
            assert_eq!(after.closed, 1, "{after:?}");
        }
        // An unknown session is not named again; a refused epoch closes
        // the old one at once.
        let open = if code == INVALID_SESSION_EPOCH { 1 } else { 2 };
        assert_eq!(cluster.fetch_sessions(), open);
        assert_read_exactly(&cluster, &produced, &read, &topics, 4).await;
    }
}

/// Scenario 54: the connection is lost under a Fetch; the consumer
/// reconnects and sends a full Fetch naming its old session, which the
/// broker closes as it opens a new one; nothing is lost or read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_replaces_the_session() {
    let topics = ["dropped"];
    let cluster = FakeCluster::builder().topic(topics[0], 4).build().await;
    let mut produced = produce(&cluster, &topics, 4, 0, 25).await;
    let mut consumer = consumer(&cluster, "sessions-dropped", &topics, 4).await;
    let mut read = Log::new();
    read_until(&mut consumer, &mut read, 100, Duration::from_secs(10)).await;

    cluster.inject(Fault::new(ApiKey::Fetch).drop_connection());
    extend(&mut produced, produce(&cluster, &topics, 4, 25, 25).await);
    read_until(&mut consumer, &mut read, 200, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(500)).await;

    assert_eq!(cluster.triggered_faults(), 1);
    let stats = cluster.fetch_session_stats();
    assert_eq!(stats.created, 2, "{stats:?}");
    assert_eq!(stats.closed, 1, "the old session was named: {stats:?}");
    assert_eq!(cluster.fetch_sessions(), 1);
    assert_read_exactly(&cluster, &produced, &read, &topics, 4).await;
}

/// Scenario 53: a paused partition leaves the session (it is forgotten)
/// and gets no records; resumed, it is listed again and continues from its
/// position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_partition_is_forgotten_and_resumes_at_its_position() {
    let topics = ["paused"];
    let cluster = FakeCluster::builder().topic(topics[0], 4).build().await;
    let mut produced = produce(&cluster, &topics, 4, 0, 10).await;
    let mut consumer = consumer(&cluster, "sessions-paused", &topics, 4).await;
    let mut read = Log::new();
    read_until(&mut consumer, &mut read, 40, Duration::from_secs(10)).await;

    consumer.pause(topics[0], 0).unwrap();
    extend(&mut produced, produce(&cluster, &topics, 4, 10, 10).await);
    read_until(&mut consumer, &mut read, 70, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(500)).await;
    let key = (topics[0].to_string(), 0);
    assert_eq!(read[&key].len(), 10, "a paused partition got records");
    assert_eq!(cluster.fetch_session_stats().partitions_forgotten, 1);
    assert_eq!(consumer.position(topics[0], 0), Some(10));

    let listed = cluster.fetch_partitions_listed();
    consumer.resume(topics[0], 0).unwrap();
    read_until(&mut consumer, &mut read, 80, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(300)).await;
    assert_eq!(consumer.position(topics[0], 0), Some(20));
    // The resumed partition was listed again (and once more per answer
    // that moved it on); the others were not.
    let relisted = cluster.fetch_partitions_listed() - listed;
    assert!((2..=3).contains(&relisted), "{relisted} listed");

    let stats = cluster.fetch_session_stats();
    assert_eq!(stats.created, 1, "pausing needs no new session: {stats:?}");
    assert_eq!(stats.unknown_session_errors + stats.epoch_errors, 0);
    assert_read_exactly(&cluster, &produced, &read, &topics, 4).await;
}

/// Scenario 55: a broker without room for sessions answers full Fetches
/// with session id 0; the consumer stays sessionless and reads as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_without_sessions_is_read_with_full_fetches() {
    let topics = ["sessionless"];
    let cluster = FakeCluster::builder()
        .topic(topics[0], 4)
        .fetch_session_cache_slots(0)
        .build()
        .await;
    let produced = produce(&cluster, &topics, 4, 0, 10).await;
    let mut consumer = consumer(&cluster, "sessions-none", &topics, 4).await;
    let mut read = Log::new();
    read_until(&mut consumer, &mut read, 40, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(500)).await;
    let stats = cluster.fetch_session_stats();
    assert_eq!(stats.created, 0);
    assert_eq!(stats.incremental_requests, 0);
    let requests = cluster.request_count(ApiKey::Fetch) as u64;
    assert_eq!(stats.full_requests, requests, "{stats:?}");
    assert_eq!(stats.partitions_listed, requests * 4, "{stats:?}");
    assert_read_exactly(&cluster, &produced, &read, &topics, 4).await;
}

/// Scenario 56: rust-rdkafka's consumer (librdkafka sends sessionless
/// Fetches, session id 0 and epoch -1) reads a broker that keeps sessions
/// for other clients, exactly as it reads one without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_reads_a_broker_with_sessions() {
    let topics = ["rdkafka-sessions"];
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic(topics[0], 6)
        .build()
        .await;
    let produced = produce(&cluster, &topics, 6, 0, 15).await;
    // Our consumer opens sessions on both brokers first.
    let mut consumer = consumer(&cluster, "sessions-shared", &topics, 6).await;
    let mut read = Log::new();
    read_until(&mut consumer, &mut read, 90, Duration::from_secs(10)).await;
    let ours = cluster.fetch_session_stats();
    assert_eq!(ours.created, 2);

    let theirs = read_back(&cluster, topics[0], 6, 90).await;
    assert_eq!(theirs, produced, "rust-rdkafka read another log");
    let stats = cluster.fetch_session_stats();
    assert!(stats.sessionless_requests > 0, "{stats:?}");
    assert_eq!(stats.created, 2, "librdkafka opened sessions: {stats:?}");
    assert_eq!(cluster.fetch_sessions(), 2);
    assert_read_exactly(&cluster, &produced, &read, &topics, 6).await;
}

/// Scenario 57: closing the consumer closes its session on every broker
/// (a Fetch with epoch -1), so that the brokers free the slots at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_consumer_closes_its_sessions() {
    let topics = ["closing"];
    let cluster = FakeCluster::builder()
        .brokers(3)
        .topic(topics[0], 6)
        .build()
        .await;
    let produced = produce(&cluster, &topics, 6, 0, 5).await;
    let mut consumer = consumer(&cluster, "sessions-closing", &topics, 6).await;
    let mut read = Log::new();
    read_until(&mut consumer, &mut read, 30, Duration::from_secs(10)).await;
    read_during(&mut consumer, &mut read, Duration::from_millis(300)).await;
    assert_eq!(cluster.fetch_sessions(), 3);

    consumer.close().await.expect("close");
    assert_eq!(cluster.fetch_sessions(), 0);
    let stats = cluster.fetch_session_stats();
    assert_eq!((stats.created, stats.closed, stats.evicted), (3, 3, 0));
    assert_read_exactly(&cluster, &produced, &read, &topics, 6).await;
}
