//! Exercises the transaction coordinator with hand-built requests: every
//! advertised version of the transactional APIs, EndTxn's transitions,
//! fencing per version, AddPartitionsToTxn and Produce checks, the last
//! stable offset in Fetch and ListOffsets, pending transactional offsets,
//! InitProducerId aborting an open transaction, timeouts, coordinator moves
//! and hostile input.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use protocol_tests::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol_tests::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use protocol_tests::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use protocol_tests::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use protocol_tests::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use protocol_tests::kafka_protocol::messages::*;
use protocol_tests::kafka_protocol::protocol::StrBytes;
use protocol_tests::kafka_protocol::records::{Record, RecordBatchDecoder};
use protocol_tests::{EndCause, FakeCluster, Fault, TransactionOutcome, TransactionStatus};

use crate::support::batch;
use crate::support::raw::Conn;

const T: &str = "t";

const FENCED: i16 = ResponseError::ProducerFenced.code();
const INVALID_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();
const MAPPING: i16 = ResponseError::InvalidProducerIdMapping.code();
const TXN_STATE: i16 = ResponseError::InvalidTxnState.code();
const CONCURRENT: i16 = ResponseError::ConcurrentTransactions.code();
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn tid(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

async fn one_broker(partitions: i32) -> FakeCluster {
    FakeCluster::builder()
        .brokers(1)
        .topic(T, partitions)
        .build()
        .await
}

async fn init_v(conn: &mut Conn, version: i16, txn: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid(txn)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, version, &request).await;
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

async fn init(conn: &mut Conn, txn: &str) -> (i64, i16) {
    let (code, id, epoch) = init_v(conn, 4, txn, 60_000).await;
    assert_eq!(code, 0, "InitProducerId {txn}");
    (id, epoch)
}

async fn add_v(
    conn: &mut Conn,
    version: i16,
    txn: &str,
    (pid, epoch): (i64, i16),
    partitions: &[(&str, i32)],
) -> Vec<i16> {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, p) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(*p),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tid(txn))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics);
    let r: AddPartitionsToTxnResponse = conn
        .call(ApiKey::AddPartitionsToTxn, version, &request)
        .await;
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

async fn add(conn: &mut Conn, txn: &str, producer: (i64, i16), partitions: &[(&str, i32)]) {
    let codes = add_v(conn, 3, txn, producer, partitions).await;
    assert!(
        codes.iter().all(|c| *c == 0),
        "AddPartitionsToTxn {codes:?}"
    );
}

async fn end_v(
    conn: &mut Conn,
    version: i16,
    txn: &str,
    (pid, epoch): (i64, i16),
    commit: bool,
) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(tid(txn))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = conn.call(ApiKey::EndTxn, version, &request).await;
    r.error_code
}

async fn end(conn: &mut Conn, txn: &str, producer: (i64, i16), commit: bool) -> i16 {
    end_v(conn, 3, txn, producer, commit).await
}

fn txn_batch((pid, epoch): (i64, i16), base_sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: true,
            ..batch::record(
                (pid, epoch),
                i,
                base_sequence + i as i32,
                None,
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect();
    batch::encode(&records)
}

fn plain_batch(values: &[&str]) -> Bytes {
    let mut b = BytesMut::from(txn_batch((-1, -1), -1, values).as_ref());
    // Clear the transactional bit and fix the CRC.
    let attributes = i16::from_be_bytes([b[21], b[22]]) & !0x10;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

async fn produce(conn: &mut Conn, txn: Option<&str>, partition: i32, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_transactional_id(txn.map(tid))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s(T)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let r: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn fetch(
    conn: &mut Conn,
    partition: i32,
    offset: i64,
    isolation: i8,
) -> fetch_response::PartitionData {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(s(T)))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let mut r: FetchResponse = conn.call(ApiKey::Fetch, 11, &request).await;
    r.responses.remove(0).partitions.remove(0)
}

/// Offsets and control flags of the records in a fetched record set.
fn fetched(records: Option<Bytes>) -> Vec<(i64, bool)> {
    let mut buf = records.unwrap_or_default();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let batch = RecordBatchDecoder::decode(&mut buf).expect("decode fetched batch");
        out.extend(batch.records.iter().map(|r| (r.offset, r.control)));
    }
    out
}

async fn latest(conn: &mut Conn, partition: i32, isolation: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(s(T)))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(-1),
                ]),
        ]);
    let r: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 5, &request).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[tokio::test]
async fn every_advertised_version_runs_a_transaction() {
    let cluster = one_broker(2).await;
    let table = cluster.api_versions(1).expect("broker");
    for key in [
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
        ApiKey::TxnOffsetCommit,
    ] {
        assert!(table.range(key).is_some(), "{key:?} advertised");
    }
    assert_eq!(table.range(ApiKey::AddPartitionsToTxn), Some((0, 3)));
    assert_eq!(table.range(ApiKey::EndTxn), Some((0, 4)));
    assert_eq!(table.range(ApiKey::TxnOffsetCommit), Some((0, 4)));
    let mut conn = Conn::open(&cluster, 1).await;
    let max = [
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
        ApiKey::TxnOffsetCommit,
    ]
    .iter()
    .map(|k| table.range(*k).expect("range").1)
    .max()
    .expect("max");
    let (fc_min, fc_max) = table
        .range(ApiKey::FindCoordinator)
        .expect("FindCoordinator");
    for v in 0..=max {
        let at = |k: ApiKey| {
            let (lo, hi) = table.range(k).expect("range");
            v.clamp(lo, hi)
        };
        let txn = format!("versions-{v}");
        let fc_v = v.clamp(fc_min.max(1), fc_max);
        let mut request = FindCoordinatorRequest::default().with_key_type(1);
        if fc_v >= 4 {
            request.coordinator_keys = vec![s(&txn)];
        } else {
            request.key = s(&txn);
        }
        let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, fc_v, &request).await;
        let node = if fc_v >= 4 {
            assert_eq!(r.coordinators[0].error_code, 0);
            r.coordinators[0].node_id.0
        } else {
            assert_eq!(r.error_code, 0);
            r.node_id.0
        };
        assert_eq!(node, 1, "FindCoordinator v{fc_v}");

        let producer = init(&mut conn, &txn).await;
        let codes = add_v(
            &mut conn,
            at(ApiKey::AddPartitionsToTxn),
            &txn,
            producer,
            &[(T, 0), (T, 1)],
        )
        .await;
        assert_eq!(codes, vec![0, 0], "AddPartitionsToTxn v{v}");
        let (code, _) = produce(
            &mut conn,
            Some(&txn),
            0,
            txn_batch(producer, 0, &["a", "b"]),
        )
        .await;
        assert_eq!(code, 0, "transactional produce v{v}");

        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(tid(&txn))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(s("g")));
        let r: AddOffsetsToTxnResponse = conn
            .call(
                ApiKey::AddOffsetsToTxn,
                at(ApiKey::AddOffsetsToTxn),
                &request,
            )
            .await;
        assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{v}");

        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(tid(&txn))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(-1)
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(T)))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(100 + i64::from(v))
                            .with_committed_leader_epoch(-1),
                    ]),
            ]);
        let r: TxnOffsetCommitResponse = conn
            .call(
                ApiKey::TxnOffsetCommit,
                at(ApiKey::TxnOffsetCommit),
                &request,
            )
            .await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "TxnOffsetCommit v{v}"
        );
        assert_eq!(
            cluster.committed_offset("g", T, 1),
            if v == 0 {
                None
            } else {
                Some(99 + i64::from(v))
            }
        );

        let code = end_v(&mut conn, at(ApiKey::EndTxn), &txn, producer, true).await;
        assert_eq!(code, 0, "EndTxn v{v}");
        assert_eq!(
            cluster.committed_offset("g", T, 1),
            Some(100 + i64::from(v))
        );
    }
    // One commit marker per transaction in each partition; every record
    // committed.
    for p in 0..2 {
        let markers = cluster.control_markers(T, p);
        assert_eq!(markers.len(), usize::from(max as u8) + 1);
        assert!(markers.iter().all(|m| m.commit));
    }
    assert_eq!(
        cluster.committed_records(T, 0).len(),
        2 * (max as usize + 1)
    );
}

#[tokio::test]
async fn end_txn_follows_kafka_transitions() {
    let cluster = one_broker(1).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let producer = init(&mut conn, "tx").await;
    // Nothing added: there is no transaction to end.
    assert_eq!(end(&mut conn, "tx", producer, true).await, TXN_STATE);
    assert_eq!(end(&mut conn, "tx", producer, false).await, TXN_STATE);

    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    assert_eq!(
        cluster.transaction_state("tx").expect("state").status,
        TransactionStatus::Ongoing
    );
    assert_eq!(end(&mut conn, "tx", producer, true).await, 0);
    // A retry of the same outcome succeeds and writes nothing more; the other
    // outcome is refused.
    assert_eq!(end(&mut conn, "tx", producer, true).await, 0);
    assert_eq!(end(&mut conn, "tx", producer, false).await, TXN_STATE);
    assert_eq!(cluster.control_markers(T, 0).len(), 1);

    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    assert_eq!(end(&mut conn, "tx", producer, false).await, 0);
    assert_eq!(end(&mut conn, "tx", producer, false).await, 0);
    assert_eq!(end(&mut conn, "tx", producer, true).await, TXN_STATE);
    let kinds: Vec<bool> = cluster
        .control_markers(T, 0)
        .iter()
        .map(|m| m.commit)
        .collect();
    assert_eq!(kinds, vec![true, false]);

    // Wrong ids and epochs.
    assert_eq!(
        end(&mut conn, "tx", (producer.0 + 1, producer.1), false).await,
        MAPPING
    );
    assert_eq!(end(&mut conn, "unknown", producer, false).await, MAPPING);
    let bumped = init(&mut conn, "tx").await;
    assert_eq!(bumped, (producer.0, producer.1 + 1));
    assert_eq!(
        end_v(&mut conn, 1, "tx", producer, false).await,
        INVALID_EPOCH
    );
    assert_eq!(end_v(&mut conn, 2, "tx", producer, false).await, FENCED);
    assert_eq!(
        add_v(&mut conn, 1, "tx", producer, &[(T, 0)]).await,
        vec![INVALID_EPOCH]
    );
    assert_eq!(
        add_v(&mut conn, 2, "tx", producer, &[(T, 0)]).await,
        vec![FENCED]
    );
}

#[tokio::test]
async fn add_partitions_and_produce_are_checked() {
    let cluster = one_broker(2).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let producer = init(&mut conn, "tx").await;
    // An unknown partition fails the whole request.
    let codes = add_v(&mut conn, 3, "tx", producer, &[(T, 0), (T, 7), ("nope", 0)]).await;
    assert_eq!(
        codes,
        vec![
            ResponseError::OperationNotAttempted.code(),
            ResponseError::UnknownTopicOrPartition.code(),
            ResponseError::UnknownTopicOrPartition.code(),
        ]
    );
    assert!(
        cluster
            .transaction_state("tx")
            .expect("state")
            .partitions
            .is_empty()
    );

    // Transactional data must go to a partition of the ongoing transaction,
    // under the transactional id's current producer and epoch.
    let (code, _) = produce(&mut conn, Some("tx"), 0, txn_batch(producer, 0, &["early"])).await;
    assert_eq!(code, TXN_STATE, "no transaction yet");
    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    let (code, _) = produce(
        &mut conn,
        Some("tx"),
        1,
        txn_batch(producer, 0, &["elsewhere"]),
    )
    .await;
    assert_eq!(code, TXN_STATE, "partition not added");
    let (code, _) = produce(&mut conn, None, 0, txn_batch(producer, 0, &["anonymous"])).await;
    assert_eq!(code, MAPPING, "no transactional id");
    let (code, _) = produce(
        &mut conn,
        Some("tx"),
        0,
        txn_batch((producer.0, producer.1 + 1), 0, &["future"]),
    )
    .await;
    assert_eq!(code, INVALID_EPOCH);
    let (code, base) = produce(&mut conn, Some("tx"), 0, txn_batch(producer, 0, &["ok"])).await;
    assert_eq!((code, base), (0, 0));
    assert_eq!(cluster.records(T, 1).len(), 0);

    // While markers are being written the coordinator is busy.
    cluster.set_transaction_marker_delay(Duration::from_millis(200));
    assert_eq!(end(&mut conn, "tx", producer, true).await, 0);
    assert_eq!(
        cluster.transaction_state("tx").expect("state").status,
        TransactionStatus::PrepareCommit
    );
    assert_eq!(
        add_v(&mut conn, 3, "tx", producer, &[(T, 1)]).await,
        vec![CONCURRENT]
    );
    assert_eq!(end(&mut conn, "tx", producer, true).await, CONCURRENT);
    assert_eq!(end(&mut conn, "tx", producer, false).await, TXN_STATE);
    assert_eq!(init_v(&mut conn, 4, "tx", 60_000).await.0, CONCURRENT);
    assert_eq!(cluster.last_stable_offset(T, 0), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster.transaction_state("tx").expect("state").status,
        TransactionStatus::CompleteCommit
    );
    assert_eq!(cluster.last_stable_offset(T, 0), 2);
    assert_eq!(end(&mut conn, "tx", producer, true).await, 0);
    add(&mut conn, "tx", producer, &[(T, 1)]).await;
}

#[tokio::test]
async fn read_committed_stops_at_the_last_stable_offset() {
    let cluster = one_broker(1).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let (code, _) = produce(&mut conn, None, 0, plain_batch(&["p0", "p1"])).await;
    assert_eq!(code, 0);
    let producer = init(&mut conn, "tx").await;
    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    // Offsets 2-3: the open transaction; 4: plain data after it.
    assert_eq!(
        produce(
            &mut conn,
            Some("tx"),
            0,
            txn_batch(producer, 0, &["a", "b"])
        )
        .await,
        (0, 2)
    );
    assert_eq!(
        produce(&mut conn, None, 0, plain_batch(&["p2"])).await,
        (0, 4)
    );

    assert_eq!(cluster.last_stable_offset(T, 0), 2);
    assert_eq!(latest(&mut conn, 0, 1).await, 2);
    assert_eq!(latest(&mut conn, 0, 0).await, 5);
    let committed = fetch(&mut conn, 0, 0, 1).await;
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (5, 2)
    );
    assert_eq!(fetched(committed.records), vec![(0, false), (1, false)]);
    assert_eq!(committed.aborted_transactions, Some(vec![]));
    let above = fetch(&mut conn, 0, 2, 1).await;
    assert_eq!(above.error_code, 0);
    assert!(
        fetched(above.records).is_empty(),
        "nothing at or past the LSO"
    );
    let uncommitted = fetch(&mut conn, 0, 0, 0).await;
    assert_eq!(fetched(uncommitted.records).len(), 5);
    assert_eq!(uncommitted.aborted_transactions, None);

    // Abort: the marker at 5, the LSO moves to the end, and read_committed
    // fetches overlapping 2-5 list the aborted transaction.
    assert_eq!(end(&mut conn, "tx", producer, false).await, 0);
    assert_eq!(cluster.last_stable_offset(T, 0), 6);
    let all = fetch(&mut conn, 0, 0, 1).await;
    assert_eq!(all.last_stable_offset, 6);
    assert_eq!(
        fetched(all.records),
        vec![
            (0, false),
            (1, false),
            (2, false),
            (3, false),
            (4, false),
            (5, true)
        ]
    );
    let aborted = all.aborted_transactions.expect("list");
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (producer.0, 2)
    );
    assert_eq!(
        fetch(&mut conn, 0, 0, 1)
            .await
            .aborted_transactions
            .map(|a| a.len()),
        Some(1)
    );
    // Past the aborted range: nothing listed.
    let after = fetch(&mut conn, 0, 6, 1).await;
    assert_eq!(after.aborted_transactions, Some(vec![]));
    let values: Vec<String> = cluster
        .committed_records(T, 0)
        .iter()
        .map(|r| String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf8"))
        .collect();
    assert_eq!(values, vec!["p0", "p1", "p2"]);
    let marker = cluster.control_markers(T, 0)[0];
    assert_eq!(
        (marker.offset, marker.commit, marker.producer_id),
        (5, false, producer.0)
    );
}

#[tokio::test]
async fn init_producer_id_aborts_the_open_transaction() {
    let cluster = FakeCluster::builder()
        .brokers(1)
        .topic(T, 1)
        .max_transaction_timeout(Duration::from_secs(60))
        .build()
        .await;
    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        init_v(&mut conn, 4, "tx", 60_001).await.0,
        ResponseError::InvalidTransactionTimeout.code()
    );
    assert_eq!(
        init_v(&mut conn, 4, "tx", 0).await.0,
        ResponseError::InvalidTransactionTimeout.code()
    );
    let producer = init(&mut conn, "tx").await;
    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    assert_eq!(
        produce(&mut conn, Some("tx"), 0, txn_batch(producer, 0, &["a"]))
            .await
            .0,
        0
    );

    // A new instance: the open transaction is aborted under a bumped epoch
    // while the caller is told to retry.
    assert_eq!(init_v(&mut conn, 4, "tx", 60_000).await.0, CONCURRENT);
    let markers = cluster.control_markers(T, 0);
    assert_eq!(markers.len(), 1);
    assert!(!markers[0].commit);
    assert_eq!(markers[0].producer_epoch, producer.1 + 1);
    let (code, id, epoch) = init_v(&mut conn, 4, "tx", 60_000).await;
    assert_eq!((code, id, epoch), (0, producer.0, producer.1 + 2));
    let state = cluster.transaction_state("tx").expect("state");
    assert_eq!(state.status, TransactionStatus::Empty);
    let ended = state.history.last().expect("history");
    assert_eq!(
        (ended.outcome, ended.cause),
        (TransactionOutcome::Abort, EndCause::InitProducerId)
    );
    // The old producer's data is refused by the partition and the coordinator.
    assert_eq!(
        produce(&mut conn, Some("tx"), 0, txn_batch(producer, 1, &["b"]))
            .await
            .0,
        INVALID_EPOCH
    );
    assert!(cluster.committed_records(T, 0).is_empty());
}

#[tokio::test]
async fn timed_out_transactions_are_aborted_and_fenced() {
    let cluster = one_broker(1).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let (code, id, epoch) = init_v(&mut conn, 4, "tx", 150).await;
    assert_eq!(code, 0);
    let producer = (id, epoch);
    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    assert_eq!(
        produce(&mut conn, Some("tx"), 0, txn_batch(producer, 0, &["a"]))
            .await
            .0,
        0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = cluster.transaction_state("tx").expect("state");
    assert_eq!(state.status, TransactionStatus::CompleteAbort);
    assert_eq!(state.producer_epoch, epoch + 1);
    assert_eq!(state.history[0].cause, EndCause::Timeout);
    assert_eq!(end_v(&mut conn, 4, "tx", producer, true).await, FENCED);
    assert_eq!(
        end_v(&mut conn, 1, "tx", producer, false).await,
        INVALID_EPOCH
    );
    assert_eq!(
        produce(&mut conn, Some("tx"), 0, txn_batch(producer, 1, &["b"]))
            .await
            .0,
        INVALID_EPOCH
    );
    assert_eq!(
        cluster.last_stable_offset(T, 0),
        cluster.high_watermark(T, 0)
    );
    assert!(cluster.committed_records(T, 0).is_empty());
}

#[tokio::test]
async fn transactional_offsets_stay_pending_until_commit() {
    let cluster = one_broker(1).await;
    let mut conn = Conn::open(&cluster, 1).await;
    let producer = init(&mut conn, "tx").await;
    let commit = |offset: i64| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(tid("tx"))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(-1)
            .with_member_id(s(""))
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(T)))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1),
                    ]),
            ])
    };
    // The group must be part of the transaction first.
    let r: TxnOffsetCommitResponse = conn.call(ApiKey::TxnOffsetCommit, 3, &commit(5)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, TXN_STATE);
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid("tx"))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(s("g")));
    let r: AddOffsetsToTxnResponse = conn.call(ApiKey::AddOffsetsToTxn, 3, &request).await;
    assert_eq!(r.error_code, 0);
    let r: TxnOffsetCommitResponse = conn.call(ApiKey::TxnOffsetCommit, 3, &commit(5)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    let offset_fetch = |stable: bool| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_require_stable(stable)
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(T)))
                    .with_partition_indexes(vec![0]),
            ]))
    };
    let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 7, &offset_fetch(true)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.error_code, p.committed_offset),
        (ResponseError::UnstableOffsetCommit.code(), -1)
    );
    let r: OffsetFetchResponse = conn
        .call(ApiKey::OffsetFetch, 7, &offset_fetch(false))
        .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (0, -1));

    assert_eq!(end(&mut conn, "tx", producer, true).await, 0);
    let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 7, &offset_fetch(true)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (0, 5));
    // Only offsets, no partitions: the transaction has no markers.
    assert!(cluster.control_markers(T, 0).is_empty());
}

#[tokio::test]
async fn coordinator_placement_and_moves() {
    let cluster = FakeCluster::builder().brokers(3).topic(T, 1).build().await;
    let home = cluster.transaction_coordinator("tx");
    let other = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != home)
        .expect("other");
    let mut wrong = Conn::open(&cluster, other).await;
    assert_eq!(init_v(&mut wrong, 4, "tx", 60_000).await.0, NOT_COORDINATOR);
    let mut conn = Conn::open(&cluster, home).await;
    let producer = init(&mut conn, "tx").await;
    add(&mut conn, "tx", producer, &[(T, 0)]).await;

    assert_eq!(cluster.move_transaction_coordinator("tx", other), 1);
    assert_eq!(
        add_v(&mut conn, 3, "tx", producer, &[(T, 0)]).await,
        vec![NOT_COORDINATOR]
    );
    assert_eq!(end(&mut conn, "tx", producer, true).await, NOT_COORDINATOR);
    let request = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_key(s("tx"));
    let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 3, &request).await;
    assert_eq!((r.error_code, r.node_id.0), (0, other));
    // Groups are placed independently of transactional ids.
    let request = FindCoordinatorRequest::default()
        .with_key_type(5)
        .with_key(s("tx"));
    let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 3, &request).await;
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code());

    // The moved coordinator finishes the transaction it took over.
    assert_eq!(end(&mut wrong, "tx", producer, true).await, 0);
    assert_eq!(cluster.control_markers(T, 0)[0].coordinator_epoch, 1);

    // Injected faults on transactional APIs: error, then drop after apply.
    cluster.inject(Fault::new(ApiKey::EndTxn).error(ResponseError::CoordinatorNotAvailable));
    add(&mut wrong, "tx", producer, &[(T, 0)]).await;
    assert_eq!(
        end(&mut wrong, "tx", producer, false).await,
        ResponseError::CoordinatorNotAvailable.code()
    );
    assert_eq!(
        cluster.transaction_state("tx").expect("state").status,
        TransactionStatus::Ongoing
    );
    cluster.inject(Fault::new(ApiKey::EndTxn).drop_after_apply());
    let request = EndTxnRequest::default()
        .with_transactional_id(tid("tx"))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(false);
    wrong.send(ApiKey::EndTxn, 3, &request).await;
    assert!(wrong.frame().await.is_none(), "closed without an answer");
    assert_eq!(
        cluster.transaction_state("tx").expect("state").status,
        TransactionStatus::CompleteAbort
    );
    let mut again = Conn::open(&cluster, other).await;
    assert_eq!(
        end(&mut again, "tx", producer, false).await,
        0,
        "the retry succeeds"
    );
    assert_eq!(cluster.control_markers(T, 0).len(), 2);
}

#[tokio::test]
async fn hostile_transactional_requests_never_panic() {
    let cluster = one_broker(1).await;
    let table = cluster.api_versions(1).expect("broker");
    let keys = [
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
        ApiKey::TxnOffsetCommit,
        ApiKey::InitProducerId,
        ApiKey::FindCoordinator,
    ];
    let mut seed = 0x1234_5678_u64;
    for key in keys {
        let (min, max) = table.range(key).expect("range");
        for v in min..=max {
            for len in [0usize, 1, 3, 9, 40, 300] {
                let mut conn = Conn::open(&cluster, 1).await;
                let mut body = BytesMut::new();
                body.put_i16(key as i16);
                body.put_i16(v);
                body.put_i32(7);
                body.put_i16(-1); // null client id
                for _ in 0..len {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    body.put_u8((seed >> 56) as u8);
                }
                conn.send_raw(&body).await;
                // Either an answer or a closed connection; never a hang.
                let _ = conn.frame().await;
            }
        }
    }
    // Well-formed but nonsensical values.
    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        end(&mut conn, "", (-5, -9), true).await,
        ResponseError::InvalidRequest.code()
    );
    let codes = add_v(
        &mut conn,
        3,
        "nobody",
        (i64::MAX, i16::MIN),
        &[(T, -1), (T, i32::MAX)],
    )
    .await;
    assert_eq!(codes, vec![MAPPING, MAPPING]);
    let producer = init(&mut conn, "tx").await;
    let codes = add_v(&mut conn, 3, "tx", producer, &[(T, -1)]).await;
    assert_eq!(codes, vec![ResponseError::UnknownTopicOrPartition.code()]);
    assert_eq!(
        init_v(&mut conn, 4, "tx", i32::MIN).await.0,
        ResponseError::InvalidTransactionTimeout.code()
    );
    // Still serving.
    add(&mut conn, "tx", producer, &[(T, 0)]).await;
    assert_eq!(end(&mut conn, "tx", producer, true).await, 0);
}
