//! Transactions against the fake cluster's transaction coordinator, which
//! writes commit and abort markers, keeps the last stable offset and serves
//! read_committed fetches: what readers see is checked with rust-rdkafka's
//! consumer at both isolation levels, and with the cluster's own view of
//! the log. Fault scenarios 31, 33, 35 and 37 of the fault-scenarios spec,
//! the read-committed truth test and zombie fencing.

use std::collections::HashMap;
use std::time::Duration;

use protocol_tests::FakeCluster;
use protocol_tests::kafka_protocol::messages::ApiKey;
use protocol_tests::{Fault, kafka_protocol::ResponseError};
use rand::{Rng, SeedableRng};
use smartkafka::consumer::{ConsumerGroupMetadata, OffsetToCommit};
use smartkafka::{DeliveryFuture, ErrorKind, Producer, Record};
use tokio::time::Instant;

use crate::support::fixtures;
use crate::support::workload;

const TOPIC: &str = "t";
const PARTITIONS: i32 = 6;
const TIMEOUT: Duration = Duration::from_secs(60);

async fn cluster() -> FakeCluster {
    FakeCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .build()
        .await
}

async fn producer(cluster: &FakeCluster, id: &str) -> Producer {
    fixtures::transactional(&cluster.bootstrap_servers(), id, Duration::from_millis(1)).await
}

/// Every partition's values, in offset order, as a rust-rdkafka consumer
/// with `isolation` reads them.
fn read_all(bootstrap: &str, isolation: &str) -> HashMap<i32, Vec<String>> {
    workload::read_to_end(bootstrap, TOPIC, PARTITIONS, isolation, TIMEOUT)
}

async fn read(cluster: &FakeCluster, isolation: &'static str) -> HashMap<i32, Vec<String>> {
    let bootstrap = cluster.bootstrap_servers();
    tokio::task::spawn_blocking(move || read_all(&bootstrap, isolation))
        .await
        .unwrap()
}

/// The cluster's own read_committed view, per partition.
fn committed_in_log(cluster: &FakeCluster) -> HashMap<i32, Vec<String>> {
    (0..PARTITIONS)
        .map(|p| {
            let values = cluster
                .committed_records(TOPIC, p)
                .into_iter()
                .map(|r| {
                    String::from_utf8(r.value.map(|v| v.to_vec()).unwrap_or_default()).unwrap()
                })
                .collect();
            (p, values)
        })
        .filter(|(_, v): &(i32, Vec<String>)| !v.is_empty())
        .collect()
}

/// Sends keyed records and waits for their delivery: (partition, value).
async fn send_delivered(p: &Producer, values: &[String]) -> Vec<(i32, String)> {
    let futures: Vec<DeliveryFuture> = {
        let mut v = Vec::new();
        for value in values {
            let record = Record::new(TOPIC).key(value.clone()).value(value.clone());
            v.push(p.send(record).await.unwrap());
        }
        v
    };
    p.flush().await.unwrap();
    let mut out = Vec::new();
    for (f, value) in futures.into_iter().zip(values) {
        let md = f.await.unwrap();
        out.push((md.partition, value.clone()));
    }
    out
}

fn by_partition(sent: &[(i32, String)]) -> HashMap<i32, Vec<String>> {
    let mut out: HashMap<i32, Vec<String>> = HashMap::new();
    for (p, v) in sent {
        out.entry(*p).or_default().push(v.clone());
    }
    out
}

/// Read-committed truth: many transactions of 1 to 100 records over 6
/// partitions, a random third aborted (after their records were written),
/// lz4-compressed.
/// A read_committed reader sees exactly the committed records, in order;
/// a read_uncommitted reader sees every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_truth_over_many_transactions() {
    let transactions: usize = std::env::var("SMARTKAFKA_TXN_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let cluster = cluster().await;
    // Compressed, so that transactional batches also go through the
    // compression done on the way out.
    let p = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .transactional_id("truth")
        .compression(smartkafka::compression::Compression::Lz4)
        .linger(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    p.init_transactions().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(98);
    let mut committed: Vec<(i32, String)> = Vec::new();
    let mut everything: Vec<(i32, String)> = Vec::new();
    let (mut commits, mut aborts) = (0, 0);
    let started = Instant::now();
    for t in 0..transactions {
        let n = rng.random_range(1..=100);
        let values: Vec<String> = (0..n).map(|i| format!("t{t}-r{i}")).collect();
        p.begin_transaction().await.unwrap();
        let sent = send_delivered(&p, &values).await;
        everything.extend(sent.iter().cloned());
        if rng.random_range(0..3) == 0 {
            p.abort_transaction().await.unwrap();
            aborts += 1;
        } else {
            p.commit_transaction().await.unwrap();
            committed.extend(sent);
            commits += 1;
        }
    }
    eprintln!(
        "{transactions} transactions ({commits} committed, {aborts} aborted, {} records) in {:?}",
        everything.len(),
        started.elapsed()
    );
    assert!(aborts > transactions / 5 && commits > transactions / 2);
    let lz4_batches = (0..PARTITIONS)
        .flat_map(|p| cluster.raw_batches(TOPIC, p))
        .filter(|b| b.len() > 22 && i16::from_be_bytes([b[21], b[22]]) & 0x07 == 3)
        .count();
    assert!(
        lz4_batches > 0,
        "transactional batches went out lz4-compressed"
    );
    let want_committed = by_partition(&committed);
    assert_eq!(
        committed_in_log(&cluster),
        want_committed,
        "the cluster's view"
    );
    assert_eq!(read(&cluster, "read_committed").await, want_committed);
    assert_eq!(
        read(&cluster, "read_uncommitted").await,
        by_partition(&everything)
    );
}

/// Zombie fencing (scenario 33): a second producer with the same
/// transactional id fences the first, which fails at its next send or
/// commit; none of its later records become visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_33_zombie_is_fenced_and_its_records_never_visible() {
    let cluster = cluster().await;
    let zombie = producer(&cluster, "shared").await;
    zombie.init_transactions().await.unwrap();
    zombie.begin_transaction().await.unwrap();
    let early = send_delivered(&zombie, &["zombie-early".to_string()]).await;
    assert_eq!(early.len(), 1);

    let successor = producer(&cluster, "shared").await;
    successor.init_transactions().await.unwrap();

    // The zombie's next send is refused by the partition leader: fenced.
    let late = zombie
        .send(Record::new(TOPIC).partition(0).value("zombie-late"))
        .await;
    let err = match late {
        Ok(f) => f.await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.is_fatal(), "{err}");
    let err = zombie.commit_transaction().await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert_eq!(err.kind(), &ErrorKind::Fenced, "{err}");

    successor.begin_transaction().await.unwrap();
    let kept = send_delivered(&successor, &["successor".to_string()]).await;
    successor.commit_transaction().await.unwrap();

    let seen = read(&cluster, "read_committed").await;
    let all: Vec<&String> = seen.values().flatten().collect();
    assert_eq!(
        all,
        vec![&kept[0].1],
        "only the successor's record: {seen:?}"
    );
}

/// A fenced producer's commit (rather than a send) is the first to learn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_33_zombie_learns_at_commit() {
    let cluster = cluster().await;
    let zombie = producer(&cluster, "shared-commit").await;
    zombie.init_transactions().await.unwrap();
    zombie.begin_transaction().await.unwrap();
    send_delivered(&zombie, &["z".to_string()]).await;
    let successor = producer(&cluster, "shared-commit").await;
    successor.init_transactions().await.unwrap();
    let err = zombie.commit_transaction().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Fenced, "{err}");
    assert!(read(&cluster, "read_committed").await.is_empty());
}

/// Scenario 35: a record fails inside a transaction; the commit fails as
/// abortable, the abort succeeds, the next transaction works, and
/// read_committed readers never see the failed transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_35_failed_record_aborts_and_stays_invisible() {
    let cluster = cluster().await;
    let p = producer(&cluster, "fails").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let ok = send_delivered(&p, &["first".to_string()]).await;
    assert_eq!(ok.len(), 1);
    cluster.inject(Fault::new(ApiKey::Produce).error(ResponseError::InvalidRecord));
    let bad = p
        .send(Record::new(TOPIC).partition(ok[0].0).value("bad"))
        .await
        .unwrap();
    assert!(bad.await.is_err());
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_abortable(), "{err}");
    p.abort_transaction().await.unwrap();
    p.begin_transaction().await.unwrap();
    let good = send_delivered(&p, &["second".to_string()]).await;
    p.commit_transaction().await.unwrap();
    assert_eq!(read(&cluster, "read_committed").await, by_partition(&good));
}

/// Scenario 31: the coordinator moves mid-transaction; the producer
/// rediscovers it and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_31_coordinator_moves_mid_transaction() {
    let cluster = cluster().await;
    let p = producer(&cluster, "mover").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let mut sent = send_delivered(&p, &["a".to_string()]).await;
    let from = cluster.transaction_coordinator("mover");
    let to = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != from)
        .unwrap();
    cluster.move_transaction_coordinator("mover", to);
    sent.extend(send_delivered(&p, &["b".to_string(), "c".to_string()]).await);
    p.commit_transaction().await.unwrap();
    assert_eq!(read(&cluster, "read_committed").await, by_partition(&sent));
}

/// Scenario 37: the connection drops right after the coordinator applied
/// EndTxn. The commit reports a retriable timeout, never "committed"; the
/// same call again completes it, and the records are committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_37_end_txn_applied_but_unanswered() {
    let cluster = cluster().await;
    let p = producer(&cluster, "unknown").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let sent = send_delivered(&p, &["x".to_string(), "y".to_string()]).await;
    cluster.inject(Fault::new(ApiKey::EndTxn).drop_after_apply());
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    let refused = p.abort_transaction().await.unwrap_err();
    assert_eq!(refused.kind(), &ErrorKind::InvalidTransactionState);
    p.commit_transaction().await.unwrap();
    assert_eq!(read(&cluster, "read_committed").await, by_partition(&sent));
    // The next transaction works.
    p.begin_transaction().await.unwrap();
    p.commit_transaction().await.unwrap();
}

/// Offsets sent to a transaction become the group's committed offsets
/// only when it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_in_a_transaction_commit_with_it() {
    let cluster = cluster().await;
    let p = producer(&cluster, "offsets").await;
    p.init_transactions().await.unwrap();
    let group = ConsumerGroupMetadata::new("pipeline");
    p.begin_transaction().await.unwrap();
    p.send_offsets_to_transaction(vec![OffsetToCommit::new(TOPIC, 2, 17)], group.clone())
        .await
        .unwrap();
    p.abort_transaction().await.unwrap();
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 2), None);
    p.begin_transaction().await.unwrap();
    p.send_offsets_to_transaction(vec![OffsetToCommit::new(TOPIC, 2, 42)], group)
        .await
        .unwrap();
    assert_eq!(
        cluster.committed_offset("pipeline", TOPIC, 2),
        None,
        "pending until commit"
    );
    p.commit_transaction().await.unwrap();
    assert_eq!(cluster.committed_offset("pipeline", TOPIC, 2), Some(42));
}

/// The coordinator aborts a transaction left open past its timeout and
/// bumps the epoch: the producer's commit fails as fenced, and nothing of
/// the transaction is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_aborted_by_the_coordinator() {
    let cluster = cluster().await;
    let p = Producer::builder()
        .bootstrap_servers(&cluster.bootstrap_servers())
        .transactional_id("slow")
        .transaction_timeout(Duration::from_millis(300))
        .linger(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    send_delivered(&p, &["late".to_string()]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(read(&cluster, "read_committed").await.is_empty());
}

/// Scenarios 30, 32 and 34 on the fake coordinator: churn and
/// CONCURRENT_TRANSACTIONS on every transactional API are retried until
/// the operation succeeds; a group authorisation failure on
/// TxnOffsetCommit makes the transaction abortable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_30_32_34_transactional_errors_per_api() {
    let cluster = cluster().await;
    let p = producer(&cluster, "churn").await;
    for api in [ApiKey::FindCoordinator, ApiKey::InitProducerId] {
        cluster.inject(Fault::new(api).error(ResponseError::CoordinatorLoadInProgress));
    }
    p.init_transactions().await.unwrap();
    for api in [
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
    ] {
        cluster.inject(Fault::new(api).error(ResponseError::NotCoordinator));
        cluster.inject(Fault::new(api).error(ResponseError::ConcurrentTransactions));
        cluster.inject(Fault::new(api).error(ResponseError::CoordinatorNotAvailable));
    }
    cluster.inject(
        Fault::new(ApiKey::TxnOffsetCommit).error(ResponseError::CoordinatorLoadInProgress),
    );
    p.begin_transaction().await.unwrap();
    let sent = send_delivered(&p, &["a".to_string(), "b".to_string()]).await;
    let group = ConsumerGroupMetadata::new("g");
    p.send_offsets_to_transaction(vec![OffsetToCommit::new(TOPIC, 0, 5)], group.clone())
        .await
        .unwrap();
    p.commit_transaction().await.unwrap();
    assert_eq!(cluster.pending_faults(), 0, "every injected fault was met");
    assert_eq!(read(&cluster, "read_committed").await, by_partition(&sent));
    assert_eq!(cluster.committed_offset("g", TOPIC, 0), Some(5));

    p.begin_transaction().await.unwrap();
    cluster
        .inject(Fault::new(ApiKey::TxnOffsetCommit).error(ResponseError::GroupAuthorizationFailed));
    let err = p
        .send_offsets_to_transaction(vec![OffsetToCommit::new(TOPIC, 0, 9)], group)
        .await
        .unwrap_err();
    assert!(err.is_abortable(), "{err}");
    p.abort_transaction().await.unwrap();
    assert_eq!(cluster.committed_offset("g", TOPIC, 0), Some(5));
}

/// Scenario 36: OUT_OF_ORDER_SEQUENCE inside a transaction makes it
/// abortable without an epoch bump; further sends are refused until the
/// abort, which then bumps the epoch; the next transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_36_out_of_order_in_a_transaction() {
    let cluster = cluster().await;
    let p = producer(&cluster, "oos").await;
    p.init_transactions().await.unwrap();
    let epoch = cluster.transaction_state("oos").unwrap().producer_epoch;
    p.begin_transaction().await.unwrap();
    cluster.inject(Fault::new(ApiKey::Produce).error(ResponseError::OutOfOrderSequenceNumber));
    let f = p
        .send(Record::new(TOPIC).partition(1).value("refused"))
        .await
        .unwrap();
    assert!(f.await.is_err());
    assert_eq!(
        cluster.transaction_state("oos").unwrap().producer_epoch,
        epoch,
        "no bump mid-transaction"
    );
    let refused = match p.send(Record::new(TOPIC).partition(2).value("more")).await {
        Ok(f) => f.await.unwrap_err(),
        Err(e) => e,
    };
    assert!(refused.is_abortable(), "{refused}");
    p.abort_transaction().await.unwrap();
    assert!(
        cluster.transaction_state("oos").unwrap().producer_epoch > epoch,
        "bumped after the abort"
    );
    p.begin_transaction().await.unwrap();
    let sent = send_delivered(&p, &["after".to_string()]).await;
    p.commit_transaction().await.unwrap();
    assert_eq!(read(&cluster, "read_committed").await, by_partition(&sent));
}

/// Scenario 38: with AddPartitionsToTxn slow, partitions arriving meanwhile
/// wait for the next add, no Produce goes to a partition before its add,
/// and EndTxn follows every add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_38_add_partitions_bookkeeping_in_the_request_journal() {
    let cluster = cluster().await;
    let p = producer(&cluster, "adds").await;
    p.init_transactions().await.unwrap();
    cluster.inject(
        Fault::new(ApiKey::AddPartitionsToTxn)
            .delay(Duration::from_millis(300))
            .times(1),
    );
    p.begin_transaction().await.unwrap();
    let mut futures = Vec::new();
    for partition in 0..PARTITIONS {
        futures.push(
            p.send(
                Record::new(TOPIC)
                    .partition(partition)
                    .value(format!("p{partition}")),
            )
            .await
            .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.commit_transaction().await.unwrap();
    for f in futures {
        f.await.unwrap();
    }
    let journal: Vec<ApiKey> = cluster
        .requests()
        .into_iter()
        .map(|r| r.api_key)
        .filter(|k| {
            matches!(
                k,
                ApiKey::AddPartitionsToTxn | ApiKey::Produce | ApiKey::EndTxn
            )
        })
        .collect();
    let adds = journal
        .iter()
        .filter(|k| **k == ApiKey::AddPartitionsToTxn)
        .count();
    assert_eq!(
        adds, 2,
        "one slow add, then one for everything that arrived: {journal:?}"
    );
    assert_eq!(journal.first(), Some(&ApiKey::AddPartitionsToTxn));
    assert_eq!(journal.last(), Some(&ApiKey::EndTxn));
    let state = cluster.transaction_state("adds").unwrap();
    let last = state.history.last().expect("a finished transaction");
    assert_eq!(last.partitions.len(), PARTITIONS as usize, "{last:?}");
    let seen = read(&cluster, "read_committed").await;
    assert_eq!(seen.len(), PARTITIONS as usize);
}

/// The transaction guard: committed with `commit()`, aborted when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_commits_or_aborts_when_dropped() {
    let cluster = cluster().await;
    let p = producer(&cluster, "guard").await;
    p.init_transactions().await.unwrap();
    let txn = p.transaction().await.unwrap();
    let dropped = send_delivered(&p, &["dropped".to_string()]).await;
    drop(txn);
    let txn = p.transaction().await.unwrap();
    let kept = send_delivered(&p, &["kept".to_string()]).await;
    txn.commit().await.unwrap();
    assert_eq!(read(&cluster, "read_committed").await, by_partition(&kept));
    let mut everything = dropped;
    everything.extend(kept);
    let uncommitted: usize = read(&cluster, "read_uncommitted")
        .await
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(uncommitted, everything.len());
}
