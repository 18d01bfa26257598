//! Validates the fake cluster's transaction coordinator against an
//! independent transactional client, rust-rdkafka (librdkafka): commits and
//! aborts read back with read_committed and read_uncommitted consumers, a
//! seeded run of many transactions checked record by record, offsets sent to
//! transactions, zombie fencing, the transaction timeout, a coordinator
//! moving mid-transaction, faults on the transactional APIs and a record
//! failing inside a transaction.
//!
//! Every check reads the outcome back: from an rdkafka consumer and from the
//! fake cluster's own log ([`FakeCluster::committed_records`], the markers
//! and the coordinator's transaction history).
//!
//! `SMARTKAFKA_TXN_COUNT` sets the number of transactions of the seeded run
//! (default 200).

use std::collections::HashMap;
use std::time::Duration;

use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::ApiKey;
use protocol_tests::{EndCause, FakeCluster, Fault, TransactionOutcome, TransactionStatus};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::support::workload;

const TOPIC: &str = "txn";
const PARTITIONS: i32 = 6;
const TIMEOUT: Duration = Duration::from_secs(20);

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn cluster(rt: &Runtime, brokers: usize) -> FakeCluster {
    rt.block_on(
        FakeCluster::builder()
            .brokers(brokers)
            .topic(TOPIC, PARTITIONS)
            .build(),
    )
}

fn producer_config(cluster: &FakeCluster, transactional_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("transactional.id", transactional_id)
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "100")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200");
    config
}

fn producer(cluster: &FakeCluster, transactional_id: &str) -> TxnProducer {
    let p: TxnProducer = producer_config(cluster, transactional_id)
        .create()
        .expect("create producer");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p
}

/// Queues one record to an explicit partition.
fn send(p: &TxnProducer, partition: i32, value: &str) {
    let record = BaseRecord::to(TOPIC)
        .partition(partition)
        .key(value)
        .payload(value);
    if let Err((e, _)) = p.send(record) {
        panic!("enqueue {value}: {e}");
    }
}

/// Reads every partition of `TOPIC` from the beginning until each has
/// reported its end, returning record values per partition in offset order.
fn read_all(cluster: &FakeCluster, isolation: &str) -> HashMap<i32, Vec<String>> {
    workload::read_to_end(
        &cluster.bootstrap_servers(),
        TOPIC,
        PARTITIONS,
        isolation,
        TIMEOUT,
    )
}

/// The values of the records the fake cluster's log shows a read_committed
/// reader, per partition.
fn committed_in_log(cluster: &FakeCluster) -> HashMap<i32, Vec<String>> {
    (0..PARTITIONS)
        .map(|p| {
            let values = cluster
                .committed_records(TOPIC, p)
                .into_iter()
                .map(|r| String::from_utf8(r.value.expect("value").to_vec()).expect("utf8"))
                .collect();
            (p, values)
        })
        .filter(|(_, v): &(i32, Vec<String>)| !v.is_empty())
        .collect()
}

fn without_empty(mut m: HashMap<i32, Vec<String>>) -> HashMap<i32, Vec<String>> {
    m.retain(|_, v| !v.is_empty());
    m
}

/// SplitMix64, for a seeded workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints which requests librdkafka sent, with versions, and in which order
/// (consecutive repeats folded).
fn print_journal(cluster: &FakeCluster, label: &str) {
    let mut seen: Vec<(ApiKey, i16)> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    for r in cluster.requests() {
        if !seen.contains(&(r.api_key, r.api_version)) {
            seen.push((r.api_key, r.api_version));
        }
        let name = format!("{:?}@{}", r.api_key, r.broker_id);
        if order.last() != Some(&name) {
            order.push(name);
        }
    }
    eprintln!("{label}: versions (first-use order) {seen:?}");
    order.truncate(60);
    eprintln!("{label}: request order {}", order.join(" "));
}

#[test]
fn commits_and_aborts_per_isolation_level() {
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let p = producer(&cluster, "basic");
    let mut committed: HashMap<i32, Vec<String>> = HashMap::new();
    let mut everything: HashMap<i32, Vec<String>> = HashMap::new();
    for (t, commit) in [(0, true), (1, false), (2, true), (3, false), (4, true)] {
        p.begin_transaction().expect("begin");
        for i in 0..12 {
            let partition = (i % PARTITIONS + t) % PARTITIONS;
            let value = format!("t{t}-r{i}");
            send(&p, partition, &value);
            everything.entry(partition).or_default().push(value.clone());
            if commit {
                committed.entry(partition).or_default().push(value);
            }
        }
        if commit {
            p.commit_transaction(TIMEOUT).expect("commit");
        } else {
            // Flush first so the aborted records are in the log.
            p.flush(TIMEOUT).expect("flush");
            p.abort_transaction(TIMEOUT).expect("abort");
        }
    }
    assert_eq!(read_all(&cluster, "read_committed"), committed);
    assert_eq!(read_all(&cluster, "read_uncommitted"), everything);
    print_journal(&cluster, "commits_and_aborts");
    assert_eq!(committed_in_log(&cluster), committed);

    let state = cluster.transaction_state("basic").expect("registered");
    assert_eq!(state.status, TransactionStatus::CompleteCommit);
    let outcomes: Vec<TransactionOutcome> = state.history.iter().map(|h| h.outcome).collect();
    use TransactionOutcome::{Abort, Commit};
    assert_eq!(outcomes, vec![Commit, Abort, Commit, Abort, Commit]);
    for p in 0..PARTITIONS {
        // One marker per transaction (each touched every partition), all at
        // the producer's epoch, and nothing left open.
        let markers = cluster.control_markers(TOPIC, p);
        let kinds: Vec<bool> = markers.iter().map(|m| m.commit).collect();
        assert_eq!(kinds, vec![true, false, true, false, true], "partition {p}");
        assert!(markers.iter().all(|m| m.producer_id == state.producer_id));
        assert_eq!(
            cluster.last_stable_offset(TOPIC, p),
            cluster.high_watermark(TOPIC, p)
        );
    }
}

#[test]
fn read_committed_truth() {
    let count: usize = std::env::var("SMARTKAFKA_TXN_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let p = producer(&cluster, "truth");
    let mut rng = Rng(0x7a11_5eed);
    let mut committed: HashMap<i32, Vec<String>> = HashMap::new();
    let mut everything: HashMap<i32, Vec<String>> = HashMap::new();
    let mut aborted = 0;
    let mut records = 0;
    let started = Instant::now();
    for t in 0..count {
        let n = 1 + rng.below(100) as usize;
        let commit = rng.below(3) != 0;
        p.begin_transaction().expect("begin");
        for i in 0..n {
            let partition = rng.below(PARTITIONS as u64) as i32;
            let value = format!("t{t}-r{i}");
            send(&p, partition, &value);
            everything.entry(partition).or_default().push(value.clone());
            if commit {
                committed.entry(partition).or_default().push(value);
            }
        }
        records += n;
        if commit {
            p.commit_transaction(TIMEOUT)
                .unwrap_or_else(|e| panic!("commit {t}: {e}"));
        } else {
            aborted += 1;
            p.flush(TIMEOUT).expect("flush");
            p.abort_transaction(TIMEOUT)
                .unwrap_or_else(|e| panic!("abort {t}: {e}"));
        }
    }
    eprintln!(
        "read_committed_truth: {count} transactions ({aborted} aborted, {records} records) in {:?}",
        started.elapsed()
    );
    if count >= 30 {
        // About a third aborted (only meaningful for larger runs).
        assert!(
            aborted > count / 5 && aborted < count / 2,
            "{aborted} aborted"
        );
    }

    let history = cluster.transaction_state("truth").expect("state").history;
    assert_eq!(history.len(), count);
    assert_eq!(
        history
            .iter()
            .filter(|h| h.outcome == TransactionOutcome::Abort)
            .count(),
        aborted
    );
    assert_eq!(committed_in_log(&cluster), committed);
    let read = Instant::now();
    assert_eq!(read_all(&cluster, "read_committed"), committed);
    assert_eq!(read_all(&cluster, "read_uncommitted"), everything);
    eprintln!(
        "read_committed_truth: both readers done in {:?}",
        read.elapsed()
    );
}

#[test]
fn offsets_sent_to_a_transaction_appear_only_on_commit() {
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let p = producer(&cluster, "offsets");
    let group_consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "pipeline")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let cgm = group_consumer.group_metadata().expect("group metadata");
    let offsets = |offset: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(offset))
            .expect("offset");
        tpl.add_partition_offset(TOPIC, 1, Offset::Offset(offset + 1))
            .expect("offset");
        tpl
    };

    // Aborted: never visible.
    p.begin_transaction().expect("begin");
    send(&p, 2, "a");
    p.send_offsets_to_transaction(&offsets(3), &cgm, TIMEOUT)
        .expect("send offsets");
    let pending = cluster.transaction_state("offsets").expect("state");
    assert_eq!(pending.groups, vec!["pipeline".to_owned()]);
    assert_eq!(pending.pending_offsets.len(), 2);
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 0), None);
    p.abort_transaction(TIMEOUT).expect("abort");
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 0), None);
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 1), None);

    // Committed: visible only after the commit.
    p.begin_transaction().expect("begin");
    send(&p, 2, "b");
    p.send_offsets_to_transaction(&offsets(7), &cgm, TIMEOUT)
        .expect("send offsets");
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 0), None);
    p.commit_transaction(TIMEOUT).expect("commit");
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 0), Some(7));
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 1), Some(8));

    // A later aborted transaction leaves the committed offsets alone.
    p.begin_transaction().expect("begin");
    p.send_offsets_to_transaction(&offsets(20), &cgm, TIMEOUT)
        .expect("send offsets");
    p.abort_transaction(TIMEOUT).expect("abort");
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 0), Some(7));

    // The consumer reads them through OffsetFetch.
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(TOPIC, 0);
    wanted.add_partition(TOPIC, 1);
    let fetched = group_consumer
        .committed_offsets(wanted, TIMEOUT)
        .expect("committed offsets");
    let got: Vec<Offset> = fetched.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(got, vec![Offset::Offset(7), Offset::Offset(8)]);
    let history = cluster.transaction_state("offsets").expect("state").history;
    let groups: Vec<Vec<String>> = history.iter().map(|h| h.groups.clone()).collect();
    assert!(groups.iter().all(|g| g == &vec!["pipeline".to_owned()]));
    print_journal(&cluster, "send_offsets");
}

fn is_fenced(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(r) => r.is_fatal(),
        _ => false,
    }
}

#[test]
fn a_zombie_is_fenced() {
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let zombie = producer(&cluster, "shared-id");
    zombie.begin_transaction().expect("begin");
    for i in 0..6 {
        send(&zombie, i, &format!("zombie-{i}"));
    }
    zombie.flush(TIMEOUT).expect("flush");
    let first = cluster.transaction_state("shared-id").expect("state");
    assert_eq!(first.status, TransactionStatus::Ongoing);

    // The new instance's InitProducerId aborts the zombie's transaction
    // (CONCURRENT_TRANSACTIONS once, then a retry) and bumps the epoch.
    let successor = producer(&cluster, "shared-id");
    let second = cluster.transaction_state("shared-id").expect("state");
    assert_eq!(second.producer_id, first.producer_id);
    assert!(second.producer_epoch > first.producer_epoch);
    let ended = second
        .history
        .last()
        .expect("the zombie's transaction ended");
    assert_eq!(
        (ended.outcome, ended.cause),
        (TransactionOutcome::Abort, EndCause::InitProducerId)
    );

    successor.begin_transaction().expect("begin");
    for i in 0..6 {
        send(&successor, i, &format!("successor-{i}"));
    }
    successor.commit_transaction(TIMEOUT).expect("commit");

    // The zombie's commit is fenced, and it can send nothing more.
    let err = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("a fenced producer cannot commit");
    assert!(is_fenced(&err), "fatal fencing error, got {err}");
    assert_eq!(
        cluster.request_count(ApiKey::EndTxn),
        2,
        "the zombie learned of the fencing from its EndTxn"
    );
    let _ = zombie.begin_transaction();
    let _ = zombie.send(
        BaseRecord::to(TOPIC)
            .partition(0)
            .key("z")
            .payload("zombie-late"),
    );
    let _ = zombie.flush(Duration::from_secs(1));

    let committed = committed_in_log(&cluster);
    for p in 0..PARTITIONS {
        assert_eq!(
            committed.get(&p),
            Some(&vec![format!("successor-{p}")]),
            "partition {p}"
        );
        assert!(
            cluster
                .records(TOPIC, p)
                .iter()
                .all(|r| r.value.as_deref() != Some(&b"zombie-late"[..])),
            "nothing under the old epoch after fencing"
        );
    }
    let read = without_empty(read_all(&cluster, "read_committed"));
    assert_eq!(read, committed);
    print_journal(&cluster, "zombie");
}

#[test]
fn timed_out_transactions_are_aborted_by_the_coordinator() {
    let rt = runtime();
    let cluster = cluster(&rt, 1);
    let p: TxnProducer = producer_config(&cluster, "slow")
        .set("transaction.timeout.ms", "1000")
        .create()
        .expect("create producer");
    p.init_transactions(TIMEOUT).expect("init");
    assert_eq!(
        cluster.transaction_state("slow").expect("state").timeout,
        Duration::from_millis(1000)
    );
    p.begin_transaction().expect("begin");
    for i in 0..PARTITIONS {
        send(&p, i, &format!("late-{i}"));
    }
    p.flush(TIMEOUT).expect("flush");
    assert!(cluster.last_stable_offset(TOPIC, 0) < cluster.high_watermark(TOPIC, 0));

    let waited = Instant::now();
    while cluster.transaction_state("slow").expect("state").status
        != TransactionStatus::CompleteAbort
    {
        assert!(waited.elapsed() < Duration::from_secs(5), "not aborted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = cluster.transaction_state("slow").expect("state");
    let ended = state.history.last().expect("ended");
    assert_eq!(
        (ended.outcome, ended.cause),
        (TransactionOutcome::Abort, EndCause::Timeout)
    );
    assert_eq!(ended.producer_epoch, state.producer_epoch);
    assert_eq!(ended.partitions.len(), PARTITIONS as usize);

    let err = p
        .commit_transaction(TIMEOUT)
        .expect_err("the timed-out transaction cannot commit");
    eprintln!("commit after the timeout abort: {err}");
    for i in 0..PARTITIONS {
        assert!(cluster.committed_records(TOPIC, i).is_empty());
        assert_eq!(
            cluster.last_stable_offset(TOPIC, i),
            cluster.high_watermark(TOPIC, i)
        );
        let markers = cluster.control_markers(TOPIC, i);
        assert_eq!(markers.len(), 1);
        assert!(!markers[0].commit);
        assert_eq!(markers[0].producer_epoch, state.producer_epoch);
    }
    assert!(without_empty(read_all(&cluster, "read_committed")).is_empty());
    assert_eq!(
        read_all(&cluster, "read_uncommitted")
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        PARTITIONS as usize
    );
}

#[test]
fn the_coordinator_moves_mid_transaction() {
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let p = producer(&cluster, "mover");
    let before = cluster.transaction_coordinator("mover");
    p.begin_transaction().expect("begin");
    for i in 0..PARTITIONS {
        send(&p, i, &format!("moved-{i}"));
    }
    p.flush(TIMEOUT).expect("flush");
    let target = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != before)
        .expect("another broker");
    let epoch = cluster.move_transaction_coordinator("mover", target);
    assert_eq!(cluster.transaction_coordinator("mover"), target);
    p.commit_transaction(TIMEOUT)
        .expect("commit after the move");

    let end_txns: Vec<i32> = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::EndTxn)
        .map(|r| r.broker_id)
        .collect();
    assert_eq!(
        end_txns.last(),
        Some(&target),
        "EndTxn reached the new coordinator"
    );
    let committed = committed_in_log(&cluster);
    for i in 0..PARTITIONS {
        assert_eq!(committed.get(&i), Some(&vec![format!("moved-{i}")]));
        let markers = cluster.control_markers(TOPIC, i);
        assert_eq!(markers.len(), 1);
        assert!(markers[0].commit);
        assert_eq!(markers[0].coordinator_epoch, epoch);
    }
}

#[test]
fn transactional_faults_are_retried() {
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let p = producer(&cluster, "faulty");
    // Coordinator churn on AddPartitionsToTxn and AddOffsetsToTxn, a
    // concurrent transaction on EndTxn, and an EndTxn applied whose
    // response is lost.
    cluster.inject(
        Fault::new(ApiKey::AddPartitionsToTxn).error(ResponseError::CoordinatorLoadInProgress),
    );
    cluster.inject(Fault::new(ApiKey::AddPartitionsToTxn).error(ResponseError::NotCoordinator));
    cluster.inject(Fault::new(ApiKey::EndTxn).error(ResponseError::ConcurrentTransactions));
    p.begin_transaction().expect("begin");
    send(&p, 0, "first");
    p.commit_transaction(TIMEOUT)
        .expect("commit despite the faults");
    assert_eq!(cluster.pending_faults(), 0, "every fault was hit");

    cluster.inject(Fault::new(ApiKey::EndTxn).drop_after_apply());
    p.begin_transaction().expect("begin");
    send(&p, 1, "second");
    p.commit_transaction(TIMEOUT)
        .expect("commit retried after the lost response");
    assert_eq!(cluster.pending_faults(), 0);

    cluster.set_transaction_marker_delay(Duration::from_millis(300));
    p.begin_transaction().expect("begin");
    send(&p, 2, "third");
    p.commit_transaction(TIMEOUT)
        .expect("commit with slow markers");
    // The next transaction's AddPartitionsToTxn meets CONCURRENT_TRANSACTIONS
    // until the markers are written, and is retried.
    p.begin_transaction().expect("begin");
    send(&p, 3, "fourth");
    p.commit_transaction(TIMEOUT)
        .expect("commit after concurrent transactions");
    // Its markers are still being written: not visible yet.
    assert!(cluster.committed_records(TOPIC, 3).is_empty());
    assert_eq!(cluster.last_stable_offset(TOPIC, 3), 0);
    cluster.set_transaction_marker_delay(Duration::ZERO);
    let waited = Instant::now();
    while cluster.transaction_state("faulty").expect("state").status
        != TransactionStatus::CompleteCommit
    {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "markers not written"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        cluster.request_count(ApiKey::AddPartitionsToTxn) > 4,
        "the fourth transaction's AddPartitionsToTxn was retried"
    );
    print_journal(&cluster, "faults");

    let committed = committed_in_log(&cluster);
    let expected: HashMap<i32, Vec<String>> =
        [(0, "first"), (1, "second"), (2, "third"), (3, "fourth")]
            .into_iter()
            .map(|(p, v)| (p, vec![v.to_owned()]))
            .collect();
    assert_eq!(committed, expected);
    let history = cluster.transaction_state("faulty").expect("state").history;
    assert_eq!(history.len(), 4);
    assert!(
        history
            .iter()
            .all(|h| h.outcome == TransactionOutcome::Commit)
    );
    // Exactly one marker per partition: the retried EndTxn was not applied twice.
    for i in 0..4 {
        assert_eq!(cluster.control_markers(TOPIC, i).len(), 1, "partition {i}");
    }
    assert_eq!(
        without_empty(read_all(&cluster, "read_committed")),
        expected
    );
}

#[test]
fn a_failed_record_makes_the_transaction_abortable() {
    let rt = runtime();
    let cluster = cluster(&rt, 3);
    let p = producer(&cluster, "abortable");
    p.begin_transaction().expect("begin");
    send(&p, 0, "kept-out-0");
    p.flush(TIMEOUT).expect("flush");
    // The next batch fails for good: the transaction can only abort.
    cluster.inject(Fault::new(ApiKey::Produce).error(ResponseError::InvalidRecord));
    send(&p, 1, "failed-1");
    let _ = p.flush(TIMEOUT);
    let err = p
        .commit_transaction(TIMEOUT)
        .expect_err("a transaction with a failed record cannot commit");
    match &err {
        KafkaError::Transaction(r) => assert!(r.txn_requires_abort(), "abortable, got {err}"),
        other => panic!("transaction error expected, got {other}"),
    }
    p.abort_transaction(TIMEOUT).expect("abort");

    p.begin_transaction().expect("begin");
    send(&p, 0, "next-0");
    send(&p, 1, "next-1");
    p.commit_transaction(TIMEOUT)
        .expect("the next transaction commits");

    let expected: HashMap<i32, Vec<String>> = [(0, "next-0"), (1, "next-1")]
        .into_iter()
        .map(|(p, v)| (p, vec![v.to_owned()]))
        .collect();
    assert_eq!(committed_in_log(&cluster), expected);
    assert_eq!(
        without_empty(read_all(&cluster, "read_committed")),
        expected
    );
    let history = cluster
        .transaction_state("abortable")
        .expect("state")
        .history;
    let outcomes: Vec<TransactionOutcome> = history.iter().map(|h| h.outcome).collect();
    assert_eq!(
        outcomes,
        vec![TransactionOutcome::Abort, TransactionOutcome::Commit]
    );
    assert_eq!(
        cluster.records(TOPIC, 0).len(),
        2,
        "the aborted record stays in the log, hidden by its marker"
    );
}
