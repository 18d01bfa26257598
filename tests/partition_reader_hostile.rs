//! The partition reader against a broker that serves malformed record
//! batches in well-formed Fetch responses: a batch whose CRC does not
//! match, a batch with a correct CRC over garbage records, and a good batch
//! followed by a bad one. The reader must fail the poll with a protocol
//! error, never panic, keep its position at the bad batch, and go on after
//! a seek past it.
//!
//! The broker here is a minimal one written for this test (ApiVersions,
//! Metadata, ListOffsets, Fetch for one partition), so the Fetch bytes are
//! exactly what the test says.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, ListOffsetsResponse,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use smartkafka::ErrorKind;
use smartkafka::compression::Compression;
use smartkafka::consumer::{PartitionReader, ReaderConfig, StartOffset};
use smartkafka::records::{AppendOutcome, BatchBuilder, BatchConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOPIC: &str = "hostile";

/// The versions the test broker answers.
const VERSIONS: [(ApiKey, i16, i16); 4] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 12),
];

/// The batches of partition 0, each with its last offset (as the test
/// means it, whatever the bytes say).
type Log = Arc<Vec<(i64, Bytes)>>;

/// Starts a one-broker cluster whose Fetch answers carry, as a broker
/// does, the batches of `log` from the one holding the fetch offset on.
/// Returns its address.
async fn hostile_broker(log: Log) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(stream, i32::from(port), Arc::clone(&log)));
        }
    });
    format!("127.0.0.1:{port}")
}

async fn serve(mut stream: TcpStream, port: i32, log: Log) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut body = Bytes::from(body);
        let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
        let version = i16::from_be_bytes([body[2], body[3]]);
        let header = RequestHeader::decode(&mut body, key.request_header_version(version)).unwrap();
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, key.response_header_version(version))
            .unwrap();
        match key {
            ApiKey::ApiVersions => ApiVersionsResponse::default()
                .with_api_keys(
                    VERSIONS
                        .iter()
                        .map(|(k, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*k as i16)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect(),
                )
                .encode(&mut out, version),
            ApiKey::Metadata => MetadataResponse::default()
                .with_brokers(vec![
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(0))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(port),
                ])
                .with_controller_id(BrokerId(0))
                .with_topics(vec![
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
                        .with_partitions(vec![
                            MetadataResponsePartition::default()
                                .with_partition_index(0)
                                .with_leader_id(BrokerId(0))
                                .with_leader_epoch(0)
                                .with_replica_nodes(vec![BrokerId(0)])
                                .with_isr_nodes(vec![BrokerId(0)]),
                        ]),
                ])
                .encode(&mut out, version),
            ApiKey::ListOffsets => ListOffsetsResponse::default()
                .with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partitions(vec![
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(0)
                                .with_offset(0)
                                .with_timestamp(-1),
                        ]),
                ])
                .encode(&mut out, version),
            ApiKey::Fetch => {
                let request = FetchRequest::decode(&mut body, version).unwrap();
                let offset = request.topics[0].partitions[0].fetch_offset;
                let mut records = BytesMut::new();
                for (_, batch) in log.iter().filter(|(last, _)| *last >= offset) {
                    records.extend_from_slice(batch);
                }
                FetchResponse::default()
                    .with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                            .with_partitions(vec![
                                PartitionData::default()
                                    .with_partition_index(0)
                                    .with_high_watermark(100)
                                    .with_last_stable_offset(100)
                                    .with_log_start_offset(0)
                                    .with_records(Some(records.freeze())),
                            ]),
                    ])
                    .encode(&mut out, version)
            }
            other => panic!("unexpected request {other:?}"),
        }
        .unwrap();
        let mut frame = BytesMut::with_capacity(out.len() + 4);
        frame.put_u32(out.len() as u32);
        frame.extend_from_slice(&out);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// A valid batch of `count` records at `base_offset`.
fn batch(base_offset: i64, count: usize, compression: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(BatchConfig::new(compression), 1_700_000_000_000);
    for i in 0..count {
        let value = format!("record {i} {}", "x".repeat(i * 3));
        let outcome = builder
            .try_append(1_700_000_000_000, Some(b"k"), Some(value.as_bytes()), &[])
            .unwrap();
        assert_eq!(outcome, AppendOutcome::Appended);
    }
    let mut bytes = builder.seal().unwrap().bytes().to_vec();
    bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes
}

fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

async fn reader(batches: Vec<(i64, Vec<u8>)>) -> PartitionReader {
    let log = batches
        .into_iter()
        .map(|(last, bytes)| (last, Bytes::from(bytes)))
        .collect();
    let bootstrap = hostile_broker(Arc::new(log)).await;
    let mut reader = PartitionReader::connect(
        ReaderConfig::new(&bootstrap)
            .request_timeout(Duration::from_secs(5))
            .max_wait(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    reader
        .assign(&[(TOPIC, 0, StartOffset::Earliest)])
        .await
        .unwrap();
    reader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_wrong_crc_fails_the_poll() {
    let mut bytes = batch(0, 5, Compression::Lz4);
    let at = bytes.len() - 2;
    bytes[at] ^= 0x5a;
    let mut reader = reader(vec![(4, bytes)]).await;
    let err = reader.poll(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert!(!err.is_retriable());
    assert!(err.to_string().contains("CRC"), "{err}");
    assert_eq!(reader.position(TOPIC, 0), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_records_under_a_valid_crc_fail_the_poll() {
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut bytes = batch(0, 6, codec);
        for (i, b) in bytes[61..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(73) ^ 0xa5;
        }
        fix_crc(&mut bytes);
        let mut reader = reader(vec![(5, bytes)]).await;
        let err = reader.poll(Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Protocol, "{codec:?}: {err}");
        assert_eq!(reader.position(TOPIC, 0), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_first_then_the_error_then_a_seek_past_it() {
    let good = batch(0, 4, Compression::Snappy);
    let mut bad = batch(4, 3, Compression::None);
    bad[70] ^= 0xff;
    let after = batch(7, 2, Compression::None);
    let mut reader = reader(vec![(3, good), (6, bad), (8, after)]).await;
    let records = reader.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        records[3].value.as_deref(),
        Some(&b"record 3 xxxxxxxxx"[..])
    );
    let err = reader.poll(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert_eq!(
        reader.position(TOPIC, 0),
        Some(4),
        "stopped at the bad batch"
    );
    // Polling again meets the same batch again.
    assert!(reader.poll(Duration::from_secs(2)).await.is_err());
    // Past it, reading goes on.
    reader.seek(TOPIC, 0, 7).unwrap();
    let records = reader.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [7, 8]);
    assert_eq!(reader.position(TOPIC, 0), Some(9));
}
