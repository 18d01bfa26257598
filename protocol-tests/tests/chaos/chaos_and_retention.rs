//! Exercises, with hand-built requests, the fake cluster's ways of losing
//! things on purpose: connection lifetimes (closing at a deadline, or right
//! after applying a Produce), expired producer state, and deleted records.

use std::time::Duration;

use bytes::Bytes;
use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol_tests::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use protocol_tests::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use protocol_tests::kafka_protocol::messages::*;
use protocol_tests::kafka_protocol::protocol::StrBytes;
use protocol_tests::kafka_protocol::records::Record;
use protocol_tests::{ConnectionLifetime, FakeCluster, ProducerStateRules};

use crate::support::batch;
use crate::support::raw::Conn;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// Calls ApiVersions every 10 ms until the broker closes the connection;
/// returns how many calls were answered.
async fn ping_until_closed(conn: &mut Conn, limit: Duration) -> usize {
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < limit {
        let r: Option<ApiVersionsResponse> = conn
            .try_call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
        if r.is_none() {
            return answered;
        }
        answered += 1;
        tokio::time::sleep(10 * MS).await;
    }
    panic!("connection still open after {limit:?} ({answered} calls answered)");
}

fn batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let sequence = if base_sequence < 0 {
                -1
            } else {
                base_sequence + i as i32
            };
            let value = Bytes::from(format!("{base_sequence}+{i}"));
            batch::record((producer_id, epoch), i, sequence, None, value)
        })
        .collect();
    batch::encode(&records)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

/// Produces `records` to partition 0 of `topic` (v9): `(error, base offset,
/// log start offset)`, or `None` if the connection closed instead.
async fn produce(conn: &mut Conn, topic: &str, records: Bytes) -> Option<(i16, i64, i64)> {
    let response: ProduceResponse = conn
        .try_call(ApiKey::Produce, 9, &produce_request(topic, records))
        .await?;
    let p = &response.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset, p.log_start_offset))
}

/// The first seed whose connection number 0 ends after a Produce (or not).
fn seed_where_first_connection_ends_after_produce(after_produce: bool) -> u64 {
    (0..)
        .find(|seed| ConnectionLifetime::new(MS, MS, *seed).ends_after_produce(0) == after_produce)
        .expect("a seed")
}

#[tokio::test]
async fn connection_is_closed_at_its_deadline_even_when_idle() {
    let seed = seed_where_first_connection_ends_after_produce(false);
    let cluster = FakeCluster::builder()
        .topic("t", 1)
        .connection_lifetime(150 * MS, 150 * MS, seed)
        .build()
        .await;
    let started = Instant::now();
    let mut conn = Conn::open(&cluster, 1).await;
    // Nothing is sent: the broker closes an idle connection too.
    assert!(conn.frame().await.is_none(), "closed by the broker");
    let lived = started.elapsed();
    assert!(lived >= 140 * MS && lived < 1000 * MS, "lived {lived:?}");
    assert_eq!(cluster.connections_accepted(), 1);
    assert_eq!(cluster.connections_killed(), 1);
    assert_eq!(cluster.connections_killed_after_produce(), 0);
}

#[tokio::test]
async fn connection_can_end_right_after_applying_a_produce() {
    let seed = seed_where_first_connection_ends_after_produce(true);
    let cluster = FakeCluster::builder()
        .topic("t", 1)
        .connection_lifetime(250 * MS, 250 * MS, seed)
        .build()
        .await;
    let conn_started = Instant::now();
    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 0, 2)).await,
        Some((0, 0, 0))
    );
    // Past the deadline (250 ms) and before the hard stop (500 ms), other
    // requests are still answered... (midway, as the broker's clock starts
    // at accept, which a loaded machine may delay)
    tokio::time::sleep_until(conn_started + 375 * MS).await;
    let r: Option<ApiVersionsResponse> = conn
        .try_call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert!(
        r.is_some(),
        "non-Produce requests are answered ({:?})",
        conn_started.elapsed()
    );
    // ...but the next Produce is applied and never answered.
    assert_eq!(produce(&mut conn, "t", batch(7, 0, 2, 3)).await, None);
    assert_eq!(cluster.high_watermark("t", 0), 5, "the write happened");
    assert_eq!(cluster.connections_killed(), 1);
    assert_eq!(cluster.connections_killed_after_produce(), 1);
    // The retry on a new connection is recognised as a duplicate.
    let mut conn = Conn::open(&cluster, 1).await;
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 2, 3)).await,
        Some((0, 2, 0))
    );
    assert_eq!(cluster.duplicate_batches("t", 0), 1);
    assert_eq!(cluster.high_watermark("t", 0), 5);
}

#[tokio::test]
async fn connection_waiting_for_a_produce_still_ends() {
    let seed = seed_where_first_connection_ends_after_produce(true);
    let cluster = FakeCluster::builder()
        .topic("t", 1)
        .connection_lifetime(100 * MS, 100 * MS, seed)
        .build()
        .await;
    let started = Instant::now();
    let mut conn = Conn::open(&cluster, 1).await;
    let answered = ping_until_closed(&mut conn, Duration::from_secs(2)).await;
    // Deadline at 100 ms, then another `max` (100 ms) of grace.
    let lived = started.elapsed();
    assert!(lived >= 190 * MS && lived < 1000 * MS, "lived {lived:?}");
    assert!(answered >= 5, "{answered} calls answered");
    assert_eq!(cluster.connections_killed(), 1);
    assert_eq!(cluster.connections_killed_after_produce(), 0);
}

#[tokio::test]
async fn lifetimes_switch_on_and_off_at_run_time() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    assert_eq!(cluster.connection_lifetime(), None);
    let mut conn = Conn::open(&cluster, 1).await;
    tokio::time::sleep(100 * MS).await;
    let lifetime = ConnectionLifetime::new(50 * MS, 80 * MS, 3);
    cluster.set_connection_lifetime(Some(lifetime));
    assert_eq!(cluster.connection_lifetime(), Some(lifetime));
    // The open connection is re-planned: it ends within 2 x max from now.
    let switched = Instant::now();
    ping_until_closed(&mut conn, Duration::from_secs(2)).await;
    assert!(switched.elapsed() >= 45 * MS, "{:?}", switched.elapsed());
    assert_eq!(cluster.connections_killed(), 1);

    cluster.set_connection_lifetime(None);
    let mut conn = Conn::open(&cluster, 1).await;
    for _ in 0..20 {
        let r: Option<ApiVersionsResponse> = conn
            .try_call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
        assert!(r.is_some(), "no lifetime once switched off");
        tokio::time::sleep(10 * MS).await;
    }
    assert_eq!(cluster.connections_killed(), 1);
    assert_eq!(cluster.connections_accepted(), 2);
}

#[tokio::test]
async fn many_connections_all_die_within_their_lifetimes() {
    let cluster = FakeCluster::builder()
        .brokers(2)
        .topic("t", 1)
        .connection_lifetime(30 * MS, 90 * MS, 11)
        .build()
        .await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr_broker = 1 + i % 2;
        let mut conn = Conn::open(&cluster, addr_broker).await;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            ping_until_closed(&mut conn, Duration::from_secs(2)).await;
            started.elapsed()
        }));
    }
    for task in tasks {
        let lived = task.await.expect("join");
        // At most max + max of grace, plus scheduling slack.
        assert!(lived < 700 * MS, "lived {lived:?}");
    }
    assert_eq!(cluster.connections_accepted(), 8);
    assert_eq!(cluster.connections_killed(), 8);
}

#[tokio::test]
async fn delete_records_raises_the_log_start_offset_everywhere() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    let mut conn = Conn::open(&cluster, 1).await;
    for seq in [0, 3, 6] {
        produce(&mut conn, "t", batch(7, 0, seq, 3))
            .await
            .expect("answered");
    }
    assert_eq!(cluster.delete_records("t", 0, 4), Ok(4));
    assert_eq!(cluster.log_start_offset("t", 0), 4);
    assert_eq!(
        cluster.delete_records("t", 0, 10),
        Err(ResponseError::OffsetOutOfRange)
    );
    assert_eq!(
        cluster.delete_records("nope", 0, 1),
        Err(ResponseError::UnknownTopicOrPartition)
    );
    let offsets: Vec<i64> = cluster.records("t", 0).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (4..9).collect::<Vec<_>>());

    // Produce responses report it, on success and on producer-state errors.
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 9, 1)).await,
        Some((0, 9, 4))
    );
    let out_of_order = ResponseError::OutOfOrderSequenceNumber.code();
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 20, 1)).await,
        Some((out_of_order, -1, 4))
    );

    // ListOffsets earliest.
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-2),
                ]),
        ]);
    let r: ListOffsetsResponse = conn
        .try_call(ApiKey::ListOffsets, 7, &request)
        .await
        .expect("answered");
    assert_eq!(r.topics[0].partitions[0].offset, 4);

    // Fetching below it is out of range.
    let fetch = |offset: i64| {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ])
    };
    let r: FetchResponse = conn
        .try_call(ApiKey::Fetch, 11, &fetch(2))
        .await
        .expect("answered");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(p.log_start_offset, 4);
    let r: FetchResponse = conn
        .try_call(ApiKey::Fetch, 11, &fetch(4))
        .await
        .expect("answered");
    assert_eq!(r.responses[0].partitions[0].error_code, 0);

    // Everything: -1 means the high watermark.
    assert_eq!(cluster.delete_records("t", 0, -1), Ok(10));
    assert!(cluster.records("t", 0).is_empty());
    // Current rules: the producer survives its records.
    assert_eq!(cluster.producer_ids("t", 0), vec![7]);
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 10, 1)).await,
        Some((0, 10, 10))
    );
}

#[tokio::test]
async fn legacy_rules_answer_unknown_producer_id() {
    let cluster = FakeCluster::builder()
        .topic("t", 1)
        .producer_state_rules(ProducerStateRules::Legacy)
        .build()
        .await;
    assert_eq!(cluster.producer_state_rules(), ProducerStateRules::Legacy);
    let mut conn = Conn::open(&cluster, 1).await;
    let unknown = ResponseError::UnknownProducerId.code();
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 0, 2)).await,
        Some((0, 0, 0))
    );
    assert_eq!(
        produce(&mut conn, "t", batch(8, 0, 0, 2)).await,
        Some((0, 2, 0))
    );

    // Retention removes producer 7's only batch: 7 is forgotten, 8 is not.
    assert_eq!(cluster.delete_records("t", 0, 2), Ok(2));
    assert_eq!(cluster.producer_ids("t", 0), vec![8]);
    assert_eq!(
        produce(&mut conn, "t", batch(7, 0, 2, 1)).await,
        Some((unknown, -1, 2))
    );
    assert_eq!(
        produce(&mut conn, "t", batch(8, 0, 2, 1)).await,
        Some((0, 4, 2))
    );

    // Expiry forgets everyone.
    cluster.expire_producers("t", 0);
    assert!(cluster.producer_ids("t", 0).is_empty());
    assert_eq!(
        produce(&mut conn, "t", batch(8, 0, 3, 1)).await,
        Some((unknown, -1, 2))
    );
    // A bumped epoch restarting at 0 is welcome.
    assert_eq!(
        produce(&mut conn, "t", batch(8, 1, 0, 1)).await,
        Some((0, 5, 2))
    );

    // Under the current rules the same situation is accepted.
    cluster.set_producer_state_rules(ProducerStateRules::Current);
    cluster.expire_producers("t", 0);
    assert_eq!(
        produce(&mut conn, "t", batch(8, 1, 1, 1)).await,
        Some((0, 6, 2))
    );
}
