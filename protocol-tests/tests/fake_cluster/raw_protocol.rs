//! Exercises the fake cluster with hand-built requests: every advertised
//! version of every API, version negotiation, batch validation, idempotent
//! producer checks, acks=0, and hostile input.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protocol_tests::kafka_protocol::ResponseError;
use protocol_tests::kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use protocol_tests::kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use protocol_tests::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol_tests::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use protocol_tests::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use protocol_tests::kafka_protocol::messages::*;
use protocol_tests::kafka_protocol::protocol::{Encodable, StrBytes};
use protocol_tests::kafka_protocol::records::Record;
use protocol_tests::{FakeCluster, Fault};

use crate::support::batch;
use crate::support::fixtures;
use crate::support::raw::Conn;

fn batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            batch::record(
                (producer_id, epoch),
                i,
                base_sequence.wrapping_add(i as i32),
                Some(Bytes::from(format!("k{i}"))),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect();
    batch::encode(&records)
}

fn produce_request(
    cluster: &FakeCluster,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> ProduceRequest {
    let mut data = TopicProduceData::default().with_partition_data(vec![
        PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(records)),
    ]);
    if version >= 13 {
        data.topic_id = cluster.topic_id(topic).expect("topic");
    } else {
        data.name = TopicName(StrBytes::from_string(topic.to_owned()));
    }
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![data])
}

async fn produce(
    conn: &mut Conn,
    cluster: &FakeCluster,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    let request = produce_request(cluster, version, topic, partition, records);
    let response: ProduceResponse = conn.call(ApiKey::Produce, version, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// The leader of partition 0 of `topic`.
fn leader(cluster: &FakeCluster, topic: &str) -> i32 {
    cluster.leader(topic, 0).expect("partition").0
}

#[tokio::test]
async fn every_advertised_version_answers() {
    let cluster = fixtures::cluster(1, "t", 1).await;
    let table = cluster.api_versions(1).expect("broker");
    let mut conn = Conn::open(&cluster, 1).await;
    let range = |k: ApiKey| table.range(k).expect("advertised");

    let (min, max) = range(ApiKey::ApiVersions);
    for v in min..=max {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("raw-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let r: ApiVersionsResponse = conn.call(ApiKey::ApiVersions, v, &request).await;
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
        assert!(
            r.api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::Produce as i16)
        );
    }

    let (min, max) = range(ApiKey::Metadata);
    for v in min..=max {
        let topics = if v == 0 {
            Some(vec![])
        } else {
            Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("t"))),
            ])
        };
        let request = MetadataRequest::default().with_topics(topics);
        let r: MetadataResponse = conn.call(ApiKey::Metadata, v, &request).await;
        assert_eq!(r.brokers.len(), 1, "Metadata v{v}");
        assert_eq!(r.topics.len(), 1, "Metadata v{v}");
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 1, "Metadata v{v}");
    }

    let (min, max) = range(ApiKey::Produce);
    for (i, v) in (min..=max).enumerate() {
        let (code, base) = produce(
            &mut conn,
            &cluster,
            v,
            "t",
            0,
            batch(-1, -1, -1, &["a", "b"]),
        )
        .await;
        assert_eq!((code, base), (0, 2 * i as i64), "Produce v{v}");
    }
    let written = cluster.high_watermark("t", 0);

    let (min, max) = range(ApiKey::Fetch);
    for v in min..=max {
        let mut topic = FetchTopic::default().with_partitions(vec![
            FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20),
        ]);
        if v >= 13 {
            topic.topic_id = cluster.topic_id("t").expect("topic");
        } else {
            topic.topic = name("t");
        }
        let mut request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![topic]);
        if v <= 14 {
            request.replica_id = BrokerId(-1);
        }
        let r: FetchResponse = conn.call(ApiKey::Fetch, v, &request).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(p.high_watermark, written, "Fetch v{v}");
        let mut records = p.records.clone().expect("records");
        let sets =
            protocol_tests::kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
                .expect("decode fetched batches");
        let count: usize = sets.iter().map(|s| s.records.len()).sum();
        assert_eq!(count as i64, written, "Fetch v{v}");
    }

    let (min, max) = range(ApiKey::ListOffsets);
    for v in min..=max {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        let r: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, v, &request).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, written), "ListOffsets v{v}");
    }

    let (min, max) = range(ApiKey::InitProducerId);
    for v in min..=max {
        // No transactional id (the default is an empty one, which Kafka
        // refuses as INVALID_REQUEST).
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_timeout_ms(60_000);
        let r: init_producer_id_response::InitProducerIdResponse =
            conn.call(ApiKey::InitProducerId, v, &request).await;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0);
    }

    let (min, max) = range(ApiKey::FindCoordinator);
    for v in min..=max {
        let mut request = FindCoordinatorRequest::default();
        if v >= 4 {
            request.coordinator_keys = vec![StrBytes::from_static_str("g")];
        } else {
            request.key = StrBytes::from_static_str("g");
        }
        let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, v, &request).await;
        let node = if v >= 4 {
            r.coordinators[0].node_id
        } else {
            r.node_id
        };
        assert_eq!(node, BrokerId(1), "FindCoordinator v{v}");
    }

    let (min, max) = range(ApiKey::OffsetCommit);
    for v in min..=max {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(i64::from(v)),
                    ]),
            ]);
        let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, v, &request).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
        assert_eq!(cluster.committed_offset("g", "t", 0), Some(i64::from(v)));
    }

    let (min, max) = range(ApiKey::OffsetFetch);
    for v in min..=max {
        let mut request = OffsetFetchRequest::default();
        if v >= 8 {
            request.groups = vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0]),
                    ])),
            ];
        } else {
            request.group_id = GroupId(StrBytes::from_static_str("g"));
            request.topics = Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]),
            ]);
        }
        let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, v, &request).await;
        let offset = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 9, "OffsetFetch v{v}");
    }

    let (min, max) = range(ApiKey::CreateTopics);
    for v in min..=max {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(&format!("created-v{v}")))
                    .with_num_partitions(3)
                    .with_replication_factor(1),
            ]);
        let r: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, v, &request).await;
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
        assert_eq!(cluster.partition_count(&format!("created-v{v}")), Some(3));
    }
    // The connection survived all of it.
    let r: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            1,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert!(r.topics.len() >= 2);
}

#[tokio::test]
async fn unsupported_api_versions_version_answers_v0_error() {
    let cluster = FakeCluster::builder()
        .api_versions(Some(1), |t| t.remove(ApiKey::InitProducerId))
        .build()
        .await;
    let mut conn = Conn::open(&cluster, 1).await;
    let correlation = conn
        .send(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("raw"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        )
        .await;
    let ok: ApiVersionsResponse = conn.recv(ApiKey::ApiVersions, 3, correlation).await;
    assert_eq!(ok.error_code, 0);
    assert!(
        !ok.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::InitProducerId as i16)
    );

    // A version the broker does not know: v0 body, UNSUPPORTED_VERSION, ranges included.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::ApiVersions as i16);
    body.put_i16(99);
    body.put_i32(77);
    body.put_i16(-1);
    body.put_u8(0);
    conn.send_raw(&body).await;
    let r: ApiVersionsResponse = conn.recv(ApiKey::ApiVersions, 0, 77).await;
    assert_eq!(r.error_code, ResponseError::UnsupportedVersion.code());
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );

    // A removed API closes the connection.
    conn.send(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default())
        .await;
    assert!(conn.frame().await.is_none());
}

#[tokio::test]
async fn corrupt_batches_are_rejected() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    let mut conn = Conn::open(&cluster, 1).await;
    let good = batch(-1, -1, -1, &["one", "two", "three"]);
    let corrupt = ResponseError::CorruptMessage.code();

    let mut flipped = BytesMut::from(&good[..]);
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, flipped.freeze())
            .await
            .0,
        corrupt
    );

    let mut magic = BytesMut::from(&good[..]);
    magic[16] = 1;
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, magic.freeze())
            .await
            .0,
        corrupt
    );

    // Record count that disagrees with the records, with a valid CRC.
    let mut count = BytesMut::from(&good[..]);
    count[57..61].copy_from_slice(&4i32.to_be_bytes());
    count[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&count[21..]);
    count[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, count.freeze())
            .await
            .0,
        corrupt
    );

    let mut length = BytesMut::from(&good[..]);
    length[8..12].copy_from_slice(&10_000i32.to_be_bytes());
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, length.freeze())
            .await
            .0,
        corrupt
    );

    let mut two = BytesMut::from(&good[..]);
    two.extend_from_slice(&good);
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, two.freeze())
            .await
            .0,
        ResponseError::InvalidRecord.code()
    );
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, good.slice(..40))
            .await
            .0,
        corrupt
    );

    assert_eq!(cluster.high_watermark("t", 0), 0, "nothing was appended");
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, good.clone()).await,
        (0, 0)
    );
    let stored = cluster.records("t", 0);
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2].value.as_deref(), Some(&b"three"[..]));
    assert_eq!(stored[1].timestamp, 1_700_000_000_001);
    // Raw batches are the producer's bytes with the base offset re-stamped.
    assert_eq!(cluster.raw_batches("t", 0)[0][21..], good[21..]);
}

#[tokio::test]
async fn produce_checks_leadership_and_sequences() {
    let cluster = fixtures::cluster(2, "t", 1).await;
    let leader = leader(&cluster, "t");
    let other = if leader == 1 { 2 } else { 1 };
    let mut follower = Conn::open(&cluster, other).await;
    assert_eq!(
        produce(
            &mut follower,
            &cluster,
            9,
            "t",
            0,
            batch(-1, -1, -1, &["x"])
        )
        .await
        .0,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(
        produce(
            &mut follower,
            &cluster,
            9,
            "missing",
            0,
            batch(-1, -1, -1, &["x"])
        )
        .await
        .0,
        ResponseError::UnknownTopicOrPartition.code()
    );

    let mut conn = Conn::open(&cluster, leader).await;
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(7, 0, 0, &["a", "b"])).await,
        (0, 0)
    );
    // A retry of the same batch is a duplicate: same offset, nothing appended.
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(7, 0, 0, &["a", "b"])).await,
        (0, 0)
    );
    assert_eq!(cluster.duplicate_batches("t", 0), 1);
    // A gap in the sequence.
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(7, 0, 5, &["c"]))
            .await
            .0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(7, 0, 2, &["c"])).await,
        (0, 2)
    );
    // An older epoch is fenced; a new epoch restarts at sequence 0.
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(7, 1, 0, &["d"])).await,
        (0, 3)
    );
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(7, 0, 3, &["e"]))
            .await
            .0,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(cluster.high_watermark("t", 0), 4);

    // Moving leadership bumps the epoch and redirects writes.
    assert_eq!(cluster.set_leader("t", 0, other), 1);
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(-1, -1, -1, &["f"]))
            .await
            .0,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(
        produce(
            &mut follower,
            &cluster,
            9,
            "t",
            0,
            batch(-1, -1, -1, &["f"])
        )
        .await,
        (0, 4)
    );
}

#[tokio::test]
async fn acks_zero_gets_no_response() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    let mut conn = Conn::open(&cluster, 1).await;
    let request = produce_request(&cluster, 9, "t", 0, batch(-1, -1, -1, &["quiet"])).with_acks(0);
    conn.send(ApiKey::Produce, 9, &request).await;
    let correlation = conn
        .send(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    // The next frame answers the Metadata request.
    let r: MetadataResponse = conn.recv(ApiKey::Metadata, 9, correlation).await;
    assert_eq!(r.topics.len(), 1);
    assert_eq!(cluster.high_watermark("t", 0), 1);
}

#[tokio::test]
async fn injected_faults_apply_to_matching_requests() {
    let cluster = fixtures::cluster(2, "t", 1).await;
    let leader = leader(&cluster, "t");
    let mut conn = Conn::open(&cluster, leader).await;
    // A fault on the other broker does not touch this one.
    let other = if leader == 1 { 2 } else { 1 };
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .broker(other)
            .error(ResponseError::NotLeaderOrFollower),
    );
    cluster.inject(
        Fault::new(ApiKey::Produce)
            .broker(leader)
            .error(ResponseError::RequestTimedOut)
            .times(2),
    );
    let timed_out = ResponseError::RequestTimedOut.code();
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(-1, -1, -1, &["a"]))
            .await
            .0,
        timed_out
    );
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(-1, -1, -1, &["a"]))
            .await
            .0,
        timed_out
    );
    assert_eq!(
        produce(&mut conn, &cluster, 9, "t", 0, batch(-1, -1, -1, &["a"])).await,
        (0, 0)
    );
    assert_eq!(cluster.pending_faults(), 1);
    cluster.clear_faults();

    // Dropped after apply: the write happens, the connection closes.
    cluster.inject(Fault::new(ApiKey::Produce).drop_after_apply());
    conn.send(
        ApiKey::Produce,
        9,
        &produce_request(&cluster, 9, "t", 0, batch(-1, -1, -1, &["b"])),
    )
    .await;
    assert!(conn.frame().await.is_none());
    assert_eq!(cluster.high_watermark("t", 0), 2);

    // Dropped before apply: nothing written.
    let mut conn = Conn::open(&cluster, leader).await;
    cluster.inject(Fault::new(ApiKey::Produce).drop_connection());
    conn.send(
        ApiKey::Produce,
        9,
        &produce_request(&cluster, 9, "t", 0, batch(-1, -1, -1, &["c"])),
    )
    .await;
    assert!(conn.frame().await.is_none());
    assert_eq!(cluster.high_watermark("t", 0), 2);

    // Delay.
    let mut conn = Conn::open(&cluster, leader).await;
    cluster.inject(Fault::new(ApiKey::Metadata).delay(Duration::from_millis(200)));
    let started = tokio::time::Instant::now();
    let _: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn hostile_input_closes_only_that_connection() {
    let cluster = FakeCluster::builder().topic("t", 1).build().await;
    let frames: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff],                          // negative size
        vec![0x7f, 0xff, 0xff, 0xff],                          // absurd size
        vec![0, 0, 0, 2, 0, 3],                                // shorter than a header
        vec![0, 0, 0, 8, 0x7f, 0x00, 0, 0, 0, 0, 0, 1],        // unknown API key
        vec![0, 0, 0, 10, 0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0x7f], // truncated Metadata
        vec![0, 0, 0, 9, 0, 18, 0, 3, 0, 0, 0, 1, 0x80],       // truncated ApiVersions header
    ];
    for frame in frames {
        let mut conn = Conn::open(&cluster, 1).await;
        conn.write_unframed(&frame).await;
        assert!(conn.frame().await.is_none(), "closed after {frame:?}");
    }
    // Every truncation of valid requests. (Bodies are not fuzzed at random:
    // kafka-protocol pre-allocates arrays by their claimed length, so a forged
    // element count can exhaust memory inside the decoder.)
    let valid: Vec<(ApiKey, i16, BytesMut)> = {
        let mut out = Vec::new();
        let produce = produce_request(&cluster, 9, "t", 0, batch(1, 0, 0, &["a", "b"]));
        let metadata = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("t"))),
        ]));
        for (key, version) in [
            (ApiKey::Produce, 9),
            (ApiKey::Produce, 3),
            (ApiKey::Metadata, 12),
            (ApiKey::Metadata, 1),
        ] {
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(1)
                .encode(&mut body, key.request_header_version(version))
                .expect("header");
            match key {
                ApiKey::Produce => produce.encode(&mut body, version).expect("produce"),
                _ => metadata.encode(&mut body, version).expect("metadata"),
            }
            out.push((key, version, body));
        }
        out
    };
    for (key, version, body) in valid {
        for cut in (4..body.len()).step_by(3) {
            let mut conn = Conn::open(&cluster, 1).await;
            conn.send_raw(&body[..cut]).await;
            // Either a response (the cut fell on a field boundary the
            // decoder accepts) or a closed connection; never a dead broker.
            let _ = conn.frame().await;
            let _ = (key, version);
        }
    }
    // The broker still serves.
    let mut conn = Conn::open(&cluster, 1).await;
    let r: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert_eq!(r.topics.len(), 1);
}
