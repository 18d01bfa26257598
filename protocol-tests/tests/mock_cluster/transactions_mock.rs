//! Transactions against the librdkafka mock cluster, an independent
//! transaction coordinator: the happy path and the fault scenarios the mock
//! can express (30, 31, 32, 33, 34, 37 of the fault-scenarios spec) by
//! pushing error codes per API key or moving the coordinator. The mock
//! writes no transaction markers, so what read_committed readers see is
//! proven against the fake cluster (`transactions_fake.rs`); here the log
//! is read back read_uncommitted and compared with what was sent.

use std::time::Duration;

use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use smartkafka::{ErrorKind, Producer, Record};

use crate::support::fixtures;
use crate::support::workload::consume_all;

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

const PARTITIONS: i32 = 3;

fn mock() -> Mock {
    let cluster = MockCluster::new(3).expect("librdkafka mock cluster");
    cluster.create_topic("t", PARTITIONS, 3).unwrap();
    cluster
}

async fn producer(cluster: &Mock, id: &str) -> Producer {
    fixtures::transactional(&cluster.bootstrap_servers(), id, Duration::from_millis(2)).await
}

/// Sends `n` records valued `{prefix}-{i}` over the partitions, returning
/// their delivery futures' results once flushed.
async fn send_values(producer: &Producer, prefix: &str, n: usize) -> Vec<String> {
    let mut futures = Vec::new();
    let mut values = Vec::new();
    for i in 0..n {
        let value = format!("{prefix}-{i}");
        let record = Record::new("t").key(format!("k{i}")).value(value.clone());
        futures.push(producer.send(record).await.unwrap());
        values.push(value);
    }
    values
}

/// Every value in the log (read_uncommitted: the mock writes no markers),
/// sorted, once `expected` records arrived.
async fn read_values(cluster: &Mock, expected: usize) -> Vec<String> {
    let bootstrap = cluster.bootstrap_servers();
    let records =
        tokio::task::spawn_blocking(move || consume_all(&bootstrap, "t", PARTITIONS, expected))
            .await
            .unwrap();
    let mut values: Vec<String> = records
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
        .collect();
    values.sort();
    values
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_writes_every_record_once() {
    let cluster = mock();
    let p = producer(&cluster, "happy").await;
    p.init_transactions().await.unwrap();
    let mut sent = Vec::new();
    for t in 0..3 {
        p.begin_transaction().await.unwrap();
        sent.extend(send_values(&p, &format!("txn{t}"), 50).await);
        p.commit_transaction().await.unwrap();
    }
    let read = read_values(&cluster, 150).await;
    assert_eq!(read, sorted(sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_out_of_order_are_refused_with_the_state_named() {
    let cluster = mock();
    let p = producer(&cluster, "order").await;
    let err = p.begin_transaction().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidTransactionState, "{err}");
    p.init_transactions().await.unwrap();
    // A send outside a transaction fails and is not written.
    let err = match p.send(Record::new("t").value("outside")).await {
        Ok(f) => f.await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), &ErrorKind::InvalidTransactionState, "{err}");
    let err = p.commit_transaction().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidTransactionState, "{err}");
    p.begin_transaction().await.unwrap();
    let err = p.begin_transaction().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidTransactionState, "{err}");
    // An empty transaction commits without a coordinator round trip.
    p.commit_transaction().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_discards_unsent_records_and_the_next_transaction_works() {
    let cluster = mock();
    let p = producer(&cluster, "abort").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let doomed: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..20 {
            v.push(
                p.send(
                    Record::new("t")
                        .partition(i % PARTITIONS)
                        .value(format!("doomed-{i}")),
                )
                .await
                .unwrap(),
            );
        }
        v
    };
    p.abort_transaction().await.unwrap();
    for f in doomed {
        // Either written before the abort (then discarded by the markers)
        // or failed as aborted; never anything else.
        if let Err(e) = f.await {
            assert_eq!(e.kind(), &ErrorKind::TransactionAborted, "{e}");
            assert!(!e.possibly_persisted());
        }
    }
    p.begin_transaction().await.unwrap();
    let sent = send_values(&p, "after", 30).await;
    p.commit_transaction().await.unwrap();
    let after: Vec<String> = read_values(&cluster, 30)
        .await
        .into_iter()
        .filter(|v| v.starts_with("after"))
        .collect();
    assert_eq!(after, sorted(sent));
}

/// Scenario 30 and 32: coordinator churn and CONCURRENT_TRANSACTIONS on
/// every transactional request; each operation still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_30_32_coordinator_churn_and_concurrent_transactions_are_retried() {
    let cluster = mock();
    let churn = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
    ];
    cluster.request_errors(RDKafkaApiKey::FindCoordinator, &churn[..1]);
    cluster.request_errors(RDKafkaApiKey::InitProducerId, &churn);
    let p = producer(&cluster, "churn").await;
    p.init_transactions().await.unwrap();
    let mut add = churn.to_vec();
    add.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS);
    cluster.request_errors(RDKafkaApiKey::AddPartitionsToTxn, &add);
    let mut end = churn.to_vec();
    end.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS);
    cluster.request_errors(RDKafkaApiKey::EndTxn, &end);
    p.begin_transaction().await.unwrap();
    let sent = send_values(&p, "churn", 40).await;
    p.commit_transaction().await.unwrap();
    let read = read_values(&cluster, 40).await;
    assert_eq!(read, sorted(sent));
}

/// Scenario 31: the coordinator moves to another broker mid-transaction;
/// the producer finds it again and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_31_coordinator_moves_mid_transaction() {
    let cluster = mock();
    cluster
        .coordinator(MockCoordinator::Transaction("moving".into()), 1)
        .unwrap();
    let p = producer(&cluster, "moving").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let mut sent = send_values(&p, "before", 20).await;
    p.flush().await.unwrap();
    cluster
        .coordinator(MockCoordinator::Transaction("moving".into()), 2)
        .unwrap();
    sent.extend(send_values(&p, "after", 20).await);
    p.commit_transaction().await.unwrap();
    let read = read_values(&cluster, 40).await;
    assert_eq!(read, sorted(sent));
}

/// Scenario 33 (coordinator side): PRODUCER_FENCED on a transactional
/// request is fatal, and nothing further is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_33_fenced_on_end_txn_is_fatal() {
    let cluster = mock();
    let p = producer(&cluster, "fenced").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    send_values(&p, "x", 5).await;
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let err = p.commit_transaction().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Fenced, "{err}");
    assert!(err.is_fatal());
    let err = p.begin_transaction().await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
    let err = match p.send(Record::new("t").value("late")).await {
        Ok(f) => f.await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.is_fatal(), "{err}");
}

/// Scenario 34: INVALID_PRODUCER_ID_MAPPING on EndTxn makes the transaction
/// abortable; the abort succeeds and the next transaction commits.
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED is fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_34_abortable_errors_then_abort_and_go_on() {
    let cluster = mock();
    let p = producer(&cluster, "abortable").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    send_values(&p, "lost", 5).await;
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING],
    );
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_abortable(), "{err}");
    p.abort_transaction().await.unwrap();
    p.begin_transaction().await.unwrap();
    send_values(&p, "kept", 5).await;
    p.commit_transaction().await.unwrap();

    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED],
    );
    let q = producer(&cluster, "not-allowed").await;
    let err = q.init_transactions().await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
}

/// Scenario 34: a topic authorisation failure on AddPartitionsToTxn makes
/// the transaction abortable; the record fails and abort succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_34_topic_authorisation_on_add_partitions_is_abortable() {
    let cluster = mock();
    let p = producer(&cluster, "topic-auth").await;
    p.init_transactions().await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    p.begin_transaction().await.unwrap();
    let f = p
        .send(Record::new("t").partition(0).value("denied"))
        .await
        .unwrap();
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_abortable(), "{err}");
    p.abort_transaction().await.unwrap();
    let err = f.await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TransactionAborted, "{err}");
    p.begin_transaction().await.unwrap();
    let allowed = p
        .send(Record::new("t").partition(0).value("allowed"))
        .await
        .unwrap();
    p.commit_transaction().await.unwrap();
    allowed.await.unwrap();
}

/// Scenario 37: EndTxn's outcome is unknown (the connection drops on it):
/// the commit reports a retriable timeout, switching to abort is refused,
/// and the same commit again completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_37_unknown_end_txn_outcome_needs_the_same_call_again() {
    let cluster = mock();
    let p = producer(&cluster, "unknown").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    let sent = send_values(&p, "u", 10).await;
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT],
    );
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(!err.is_abortable());
    let refused = p.abort_transaction().await.unwrap_err();
    assert_eq!(
        refused.kind(),
        &ErrorKind::InvalidTransactionState,
        "{refused}"
    );
    let refused = p.begin_transaction().await.unwrap_err();
    assert_eq!(
        refused.kind(),
        &ErrorKind::InvalidTransactionState,
        "{refused}"
    );
    p.commit_transaction().await.unwrap();
    let read = read_values(&cluster, 10).await;
    assert_eq!(read, sorted(sent));
}

/// Scenario 35: a record fails inside the transaction; the commit fails as
/// abortable, the abort succeeds and the next transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_35_failed_record_then_abort_and_go_on() {
    let cluster = mock();
    let p = producer(&cluster, "record-fails").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );
    let bad = p
        .send(Record::new("t").partition(0).value("bad"))
        .await
        .unwrap();
    assert!(bad.await.is_err());
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.is_abortable(), "{err}");
    p.abort_transaction().await.unwrap();
    p.begin_transaction().await.unwrap();
    let sent = send_values(&p, "good", 10).await;
    p.commit_transaction().await.unwrap();
    let read: Vec<String> = read_values(&cluster, 10)
        .await
        .into_iter()
        .filter(|v| v.starts_with("good"))
        .collect();
    assert_eq!(read, sorted(sent));
}

/// Scenario 36: OUT_OF_ORDER_SEQUENCE_NUMBER inside the transaction makes it
/// abortable with no epoch bump before the abort; later sends are refused
/// until the abort, and the next transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_36_out_of_order_sequence_then_abort_and_go_on() {
    let cluster = mock();
    let p = producer(&cluster, "oos").await;
    p.init_transactions().await.unwrap();
    p.begin_transaction().await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let bad = p
        .send(Record::new("t").partition(1).value("oos"))
        .await
        .unwrap();
    assert!(bad.await.is_err());
    let refused = match p.send(Record::new("t").partition(2).value("more")).await {
        Ok(f) => f.await.unwrap_err(),
        Err(e) => e,
    };
    assert!(refused.is_abortable(), "{refused}");
    p.abort_transaction().await.unwrap();
    p.begin_transaction().await.unwrap();
    let sent = send_values(&p, "next", 10).await;
    p.commit_transaction().await.unwrap();
    let read: Vec<String> = read_values(&cluster, 10)
        .await
        .into_iter()
        .filter(|v| v.starts_with("next"))
        .collect();
    assert_eq!(read, sorted(sent));
}
