//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) as ordinary tests on
//! the stable toolchain, through exactly the logic the fuzz targets run
//! (`fuzz/src/<target>.rs`, included here), and checks that valid encodings
//! built from kafka-protocol decode. `cargo test --test fuzz_corpus --
//! --ignored write_seeds` regenerates the seed inputs.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use smartkafka::protocol::consumer_protocol::{Assignment, Subscription};
use smartkafka::protocol::guard::guarded_apis;

mod consumer_protocol {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/src/consumer_protocol.rs"
    ));
}

mod frame_decoder {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/src/frame_decoder.rs"
    ));
}

mod record_batch_reader {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/src/record_batch_reader.rs"
    ));
}

mod scram {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/src/scram.rs"));
}

mod response_decode {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/src/response_decode.rs"
    ));
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every input of a target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let data = fs::read(&path).expect("corpus input");
            (path, data)
        })
        .collect();
    inputs.sort();
    inputs
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic(s: &str) -> TopicName {
    TopicName(str(s))
}

fn encode<T: Encodable>(message: &T, version: i16) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

/// A batch of three records (keys, a null value, headers) in `compression`.
fn record_batch(compression: Compression, base_offset: i64, transactional: bool) -> Vec<u8> {
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id: if transactional { 4242 } else { -1 },
            producer_epoch: if transactional { 3 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(format!("key-{i}").into_bytes().into()),
            value: (i != 1).then(|| format!("value {i} ").repeat(8).into_bytes().into()),
            headers: [
                (str("trace"), Some(b"abc".to_vec().into())),
                (str("empty"), None),
            ]
            .into_iter()
            .take(i as usize)
            .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encoding a batch");
    buf.to_vec()
}

/// A representative response body of `api` at `version`: populated for the
/// APIs a producer lives on, the default message for the others.
fn response_body(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    let populated = match api {
        ApiKey::ApiVersions => encode(
            &ApiVersionsResponse::default()
                .with_throttle_time_ms(if version >= 1 { 10 } else { 0 })
                .with_api_keys(
                    [(0, 3, 11), (1, 4, 12), (3, 1, 12), (18, 0, 4)]
                        .into_iter()
                        .map(|(k, min, max)| {
                            api_versions_response::ApiVersion::default()
                                .with_api_key(k)
                                .with_min_version(min)
                                .with_max_version(max)
                        })
                        .collect(),
                ),
            version,
        ),
        ApiKey::Metadata => {
            let partitions = (0..3)
                .map(|p| {
                    metadata_response::MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(p % 2))
                        .with_leader_epoch(if version >= 7 { 5 } else { -1 })
                        .with_replica_nodes(vec![BrokerId(0), BrokerId(1)])
                        .with_isr_nodes(vec![BrokerId(p % 2)])
                        .with_offline_replicas(if version >= 5 {
                            vec![BrokerId(2)]
                        } else {
                            vec![]
                        })
                })
                .collect();
            let topics = vec![
                metadata_response::MetadataResponseTopic::default()
                    .with_name(Some(topic("orders")))
                    .with_topic_id(if version >= 10 {
                        "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
                            .parse()
                            .expect("uuid")
                    } else {
                        Default::default()
                    })
                    .with_partitions(partitions),
                metadata_response::MetadataResponseTopic::default()
                    .with_error_code(3)
                    .with_name(Some(topic("missing"))),
            ];
            let brokers = (0..2)
                .map(|n| {
                    metadata_response::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(n))
                        .with_host(str("broker.example"))
                        .with_port(9092 + n)
                        .with_rack((version >= 1).then(|| str("rack-a")))
                })
                .collect();
            encode(
                &MetadataResponse::default()
                    .with_throttle_time_ms(if version >= 3 { 1 } else { 0 })
                    .with_brokers(brokers)
                    .with_cluster_id((version >= 2).then(|| str("cluster")))
                    .with_controller_id(BrokerId(if version >= 1 { 1 } else { -1 }))
                    .with_topics(topics),
                version,
            )
        }
        ApiKey::Produce => {
            let partition = produce_response::PartitionProduceResponse::default()
                .with_index(2)
                .with_base_offset(1000)
                .with_log_append_time_ms(if version >= 2 { 1_700_000_000_000 } else { -1 })
                .with_log_start_offset(if version >= 5 { 10 } else { -1 });
            let failed = produce_response::PartitionProduceResponse::default()
                .with_index(3)
                .with_error_code(6)
                .with_error_message((version >= 8).then(|| str("not leader")));
            let mut topic_response = produce_response::TopicProduceResponse::default()
                .with_partition_responses(vec![partition, failed]);
            if version < 13 {
                topic_response = topic_response.with_name(topic("orders"));
            }
            encode(
                &ProduceResponse::default()
                    .with_throttle_time_ms(3)
                    .with_responses(vec![topic_response]),
                version,
            )
        }
        ApiKey::Fetch => {
            let mut records = record_batch(Compression::None, 100, false);
            records.extend(record_batch(Compression::Gzip, 103, false));
            let partition = fetch_response::PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(106)
                .with_last_stable_offset(106)
                .with_log_start_offset(if version >= 5 { 0 } else { -1 })
                .with_aborted_transactions(Some(vec![]))
                .with_records(Some(records.into()));
            let mut topic_response =
                fetch_response::FetchableTopicResponse::default().with_partitions(vec![partition]);
            topic_response = if version < 13 {
                topic_response.with_topic(topic("orders"))
            } else {
                topic_response.with_topic_id(
                    "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
                        .parse()
                        .expect("uuid"),
                )
            };
            encode(
                &FetchResponse::default()
                    .with_throttle_time_ms(2)
                    .with_session_id(if version >= 7 { 99 } else { 0 })
                    .with_responses(vec![topic_response]),
                version,
            )
        }
        _ => None,
    };
    populated.or_else(|| default_body(api, version))
}

/// The default response message of `api`, encoded at `version`.
fn default_body(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    match api {
        ApiKey::ApiVersions => encode(&ApiVersionsResponse::default(), version),
        ApiKey::Metadata => encode(&MetadataResponse::default(), version),
        ApiKey::Produce => encode(&ProduceResponse::default(), version),
        ApiKey::Fetch => encode(&FetchResponse::default(), version),
        ApiKey::ListOffsets => encode(&ListOffsetsResponse::default(), version),
        ApiKey::CreateTopics => encode(&CreateTopicsResponse::default(), version),
        ApiKey::DeleteTopics => encode(&DeleteTopicsResponse::default(), version),
        ApiKey::InitProducerId => encode(&InitProducerIdResponse::default(), version),
        ApiKey::FindCoordinator => encode(&FindCoordinatorResponse::default(), version),
        ApiKey::OffsetFetch => encode(&OffsetFetchResponse::default(), version),
        ApiKey::OffsetCommit => encode(&OffsetCommitResponse::default(), version),
        ApiKey::AddPartitionsToTxn => encode(&AddPartitionsToTxnResponse::default(), version),
        ApiKey::AddOffsetsToTxn => encode(&AddOffsetsToTxnResponse::default(), version),
        ApiKey::TxnOffsetCommit => encode(&TxnOffsetCommitResponse::default(), version),
        ApiKey::EndTxn => encode(&EndTxnResponse::default(), version),
        ApiKey::SaslHandshake => encode(&SaslHandshakeResponse::default(), version),
        ApiKey::SaslAuthenticate => encode(&SaslAuthenticateResponse::default(), version),
        ApiKey::DescribeCluster => encode(&DescribeClusterResponse::default(), version),
        ApiKey::JoinGroup => encode(&JoinGroupResponse::default(), version),
        ApiKey::SyncGroup => encode(&SyncGroupResponse::default(), version),
        ApiKey::Heartbeat => encode(&HeartbeatResponse::default(), version),
        ApiKey::LeaveGroup => encode(&LeaveGroupResponse::default(), version),
        _ => None,
    }
}

/// `response_decode` seeds: a valid body for every guarded API and version.
fn response_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (api, min, max) in guarded_apis() {
        for version in min..=max {
            let body = response_body(api, version)
                .unwrap_or_else(|| panic!("no encodable {api:?} v{version} response"));
            let mut input = response_decode::selector(api, version)
                .expect("guarded")
                .to_vec();
            input.extend(body);
            seeds.push((format!("seed-{api:?}-v{version}"), input));
        }
    }
    seeds
}

/// kafka-protocol's encoding of a consumer protocol message at `version`,
/// behind the version prefix.
fn version_prefixed<T: Encodable>(message: &T, version: i16) -> Vec<u8> {
    let mut out = version.to_be_bytes().to_vec();
    out.extend(encode(message, version).expect("encoding a consumer protocol message"));
    out
}

/// `consumer_protocol` seeds: a subscription at every version (kafka-protocol's
/// encoding, and ours at version 3), an assignment at every version, later
/// versions with trailing fields, and a few hostile messages.
fn consumer_protocol_seeds() -> Vec<(String, Vec<u8>)> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(vec![str("orders"), str("payments")])
        .with_user_data(Some(b"\x00\x00\x00\x07".to_vec().into()))
        .with_owned_partitions(vec![
            consumer_protocol_subscription::TopicPartition::default()
                .with_topic(topic("orders"))
                .with_partitions(vec![0, 2, 5]),
            consumer_protocol_subscription::TopicPartition::default()
                .with_topic(topic("payments"))
                .with_partitions(vec![1]),
        ])
        .with_generation_id(7)
        .with_rack_id(Some(str("rack-a")));
    let assignment = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(topic("orders"))
                .with_partitions(vec![1, 3]),
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(topic("payments"))
                .with_partitions(vec![0]),
        ])
        .with_user_data(Some(b"assignor".to_vec().into()));
    let mut seeds = Vec::new();
    for version in 0..=3 {
        seeds.push((
            format!("seed-subscription-v{version}"),
            version_prefixed(&subscription, version),
        ));
        seeds.push((
            format!("seed-assignment-v{version}"),
            version_prefixed(&assignment, version),
        ));
    }
    seeds.push((
        "seed-subscription-empty".to_string(),
        version_prefixed(&ConsumerProtocolSubscription::default(), 3),
    ));
    seeds.push((
        "seed-assignment-empty".to_string(),
        version_prefixed(&ConsumerProtocolAssignment::default(), 3),
    ));
    // What the coordinator sends a member the leader gave nothing.
    seeds.push(("seed-assignment-empty-bytes".to_string(), Vec::new()));
    let ours = Subscription {
        topics: vec!["events".to_string()],
        user_data: None,
        owned_partitions: vec![("events".to_string(), 4), ("events".to_string(), 0)],
        generation_id: 3,
        rack_id: None,
    };
    seeds.push(("seed-subscription-ours".to_string(), ours.encode().to_vec()));
    let ours = Assignment {
        partitions: vec![("events".to_string(), 4), ("logs".to_string(), 0)],
        user_data: None,
    };
    seeds.push(("seed-assignment-ours".to_string(), ours.encode().to_vec()));
    for (name, version) in [("subscription", 4i16), ("assignment", 9)] {
        let mut input = if name == "subscription" {
            version_prefixed(&subscription, 3)
        } else {
            version_prefixed(&assignment, 3)
        };
        input[..2].copy_from_slice(&version.to_be_bytes());
        input.extend_from_slice(b"fields of a later version");
        seeds.push((format!("seed-{name}-v{version}-trailing"), input));
    }
    let hostile: [(&str, Vec<u8>); 4] = [
        ("negative-version", vec![0xff, 0xff, 0, 0, 0, 0]),
        (
            "huge-topic-count",
            vec![0, 3, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'],
        ),
        ("null-topics", vec![0, 1, 0xff, 0xff, 0xff, 0xff]),
        (
            "huge-partition-count",
            vec![
                0, 3, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0,
            ],
        ),
    ];
    for (name, input) in hostile {
        seeds.push((format!("seed-{name}"), input));
    }
    seeds
}

/// A response frame: size, header (v0 or v1), body.
fn frame(api: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut header = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut header, api.response_header_version(version))
        .expect("encoding a response header");
    out.put_i32((header.len() + body.len()) as i32);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out.to_vec()
}

/// `frame_decoder` seeds: the responses to every pending set, whole and cut
/// into reads of several sizes, and a few hostile streams.
fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (set, pending) in frame_decoder::PENDING_SETS.iter().enumerate() {
        let mut stream = Vec::new();
        for (id, &(api, version)) in pending.iter().enumerate() {
            let body = response_body(api, version).expect("a response body");
            stream.extend(frame(api, version, id as i32, &body));
        }
        for (a, b) in [(0, 0), (1, 1), (3, 7), (64, 0)] {
            let mut input = vec![a, b, set as u8];
            input.extend(&stream);
            seeds.push((format!("seed-set{set}-chunks-{a}-{b}"), input));
        }
    }
    let hostile: [(&str, Vec<u8>); 4] = [
        ("oversize", vec![0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]),
        ("negative", vec![0, 0, 0, 0xff, 0xff, 0xff, 0xfe]),
        ("wrong-correlation-id", {
            let mut s = vec![2, 5, 1];
            s.extend(frame(ApiKey::ApiVersions, 0, 9, &[0, 0, 0, 0, 0, 0]));
            s
        }),
        ("empty-frames", vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (name, input) in hostile {
        seeds.push((format!("seed-{name}"), input));
    }
    seeds
}

/// A transaction marker: a control batch holding one commit record.
fn control_batch(base_offset: i64) -> Vec<u8> {
    let marker = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 7,
        producer_id: 4242,
        producer_epoch: 3,
        timestamp_type: TimestampType::Creation,
        offset: base_offset,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        // Version 0, type 1 (commit); version 0, coordinator epoch 12.
        key: Some(vec![0, 0, 0, 1].into()),
        value: Some(vec![0, 0, 0, 0, 0, 12].into()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&marker], &options).expect("encoding a marker");
    buf.to_vec()
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// `record_batch_reader` seeds: batches in every codec, alone and
/// concatenated, transactional ones followed by their commit marker, and a
/// buffer ending in a partial batch. Each with the CRC checked (flag 0) and
/// with the check skipped (flag 1).
fn record_batch_seeds() -> Vec<(String, Vec<u8>)> {
    let mut buffers: Vec<(String, Vec<u8>)> = Vec::new();
    for codec in CODECS {
        buffers.push((format!("{codec:?}"), record_batch(codec, 0, false)));
        let mut txn = record_batch(codec, 10, true);
        txn.extend(control_batch(13));
        buffers.push((format!("{codec:?}-transaction"), txn));
    }
    let mut all = Vec::new();
    for (i, codec) in CODECS.into_iter().enumerate() {
        all.extend(record_batch(codec, 3 * i as i64, false));
    }
    buffers.push(("all-codecs".to_string(), all.clone()));
    let partial = record_batch(Compression::None, 15, false);
    all.extend(&partial[..partial.len() / 2]);
    buffers.push(("partial-last".to_string(), all));

    let mut seeds = Vec::new();
    for (name, buffer) in buffers {
        for flags in [0u8, 1] {
            let mut input = vec![flags];
            input.extend(&buffer);
            seeds.push((format!("seed-{name}-flags{flags}"), input));
        }
    }
    seeds
}

#[test]
fn frame_decoder_corpus_replays() {
    let inputs = corpus("frame_decoder");
    assert!(!inputs.is_empty(), "empty frame_decoder corpus");
    for (path, data) in &inputs {
        let outcome = frame_decoder::run(data);
        assert!(outcome.decoded <= outcome.matched, "{}", path.display());
    }
}

#[test]
fn frame_decoder_valid_seeds_decode() {
    for (name, input) in frame_seeds() {
        let outcome = frame_decoder::run(&input);
        if name.starts_with("seed-set") {
            let expected = frame_decoder::PENDING_SETS[usize::from(input[2])].len();
            assert_eq!(
                outcome,
                frame_decoder::Outcome {
                    frames: expected,
                    frame_error: false,
                    matched: expected,
                    decoded: expected,
                    connection_error: false,
                },
                "{name}"
            );
        } else {
            assert!(outcome.frame_error || outcome.connection_error, "{name}");
        }
    }
}

#[test]
fn response_decode_corpus_replays() {
    let inputs = corpus("response_decode");
    assert!(!inputs.is_empty(), "empty response_decode corpus");
    let mut decoded = 0;
    for (path, data) in &inputs {
        if let Some(outcome) = response_decode::run(data) {
            assert!(outcome.decoded.is_some(), "{}: no decoder", path.display());
            decoded += usize::from(outcome.decoded == Some(true));
        }
    }
    assert!(decoded > 0, "no response_decode input decoded");
}

#[test]
fn response_decode_valid_seeds_decode() {
    let seeds = response_seeds();
    assert!(
        seeds.len() > 100,
        "only {} guarded API versions",
        seeds.len()
    );
    for (name, input) in seeds {
        let outcome = response_decode::run(&input).expect("selector bytes");
        assert!(outcome.guard_ok, "{name}: refused by the guard");
        assert_eq!(outcome.decoded, Some(true), "{name}: not decoded");
        assert_eq!(format!("seed-{:?}-v{}", outcome.api, outcome.version), name);
        let _ = outcome.frame_ok;
    }
}

#[test]
fn record_batch_reader_corpus_replays() {
    let inputs = corpus("record_batch_reader");
    assert!(!inputs.is_empty(), "empty record_batch_reader corpus");
    let mut records = 0;
    for (path, data) in &inputs {
        let outcome = record_batch_reader::run(data);
        assert!(
            outcome.records >= outcome.control_records,
            "{}",
            path.display()
        );
        records += outcome.records;
    }
    assert!(
        records > 0,
        "no record read from the record_batch_reader corpus"
    );
}

#[test]
fn record_batch_reader_valid_seeds_decode() {
    for (name, input) in record_batch_seeds() {
        let outcome = record_batch_reader::run(&input);
        let transaction = name.contains("transaction");
        let batches = if transaction {
            2
        } else if name.contains("all-codecs") || name.contains("partial") {
            5
        } else {
            1
        };
        assert_eq!(
            outcome,
            record_batch_reader::Outcome {
                batches,
                records: 3 * (batches - usize::from(transaction)) + usize::from(transaction),
                headers: 3 * (batches - usize::from(transaction)),
                control_records: usize::from(transaction),
                errors: 0,
            },
            "{name}"
        );
    }
}

#[test]
fn consumer_protocol_corpus_replays() {
    let inputs = corpus("consumer_protocol");
    assert!(!inputs.is_empty(), "empty consumer_protocol corpus");
    let (mut subscriptions, mut assignments) = (0, 0);
    for (_, data) in &inputs {
        let outcome = consumer_protocol::run(data);
        subscriptions += usize::from(outcome.subscription);
        assignments += usize::from(outcome.assignment);
    }
    assert!(
        subscriptions > 0,
        "no consumer_protocol input decoded as a subscription"
    );
    assert!(
        assignments > 0,
        "no consumer_protocol input decoded as an assignment"
    );
}

#[test]
fn consumer_protocol_valid_seeds_decode() {
    let seeds = consumer_protocol_seeds();
    for (name, input) in &seeds {
        let outcome = consumer_protocol::run(input);
        if name.starts_with("seed-subscription") {
            assert!(outcome.subscription, "{name}: not decoded");
            let sub = Subscription::decode(input).expect("decoded above");
            let version = outcome.version.expect("a version");
            let expected_owned = if name.contains("empty") || version < 1 {
                0
            } else if name.contains("ours") {
                2
            } else {
                4
            };
            assert_eq!(sub.owned_partitions.len(), expected_owned, "{name}");
        } else if name.starts_with("seed-assignment") {
            assert!(outcome.assignment, "{name}: not decoded");
            let assignment = Assignment::decode(input).expect("decoded above");
            let expected = if name.contains("empty") {
                0
            } else if name.contains("ours") {
                2
            } else {
                3
            };
            assert_eq!(assignment.partitions.len(), expected, "{name}");
        } else {
            assert!(
                !outcome.subscription,
                "{name}: hostile subscription accepted"
            );
            assert!(!outcome.assignment, "{name}: hostile assignment accepted");
        }
    }
    let versions: Vec<i16> = seeds
        .iter()
        .filter(|(name, _)| name.starts_with("seed-subscription"))
        .filter_map(|(_, input)| consumer_protocol::run(input).version)
        .collect();
    for version in 0..=4 {
        assert!(
            versions.contains(&version),
            "no subscription seed at v{version}"
        );
    }
}

/// RFC 7677's SCRAM-SHA-256 server messages for user `user`, password
/// `pencil`.
const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// `scram` seeds: the RFC 7677 exchange under both hashes, and server
/// messages each breaking one rule.
fn scram_seeds() -> Vec<(String, Vec<u8>)> {
    let input = |sha512: bool, first: &str, last: &str| {
        let mut data = vec![u8::from(sha512)];
        data.extend_from_slice(first.as_bytes());
        data.push(b'\n');
        data.extend_from_slice(last.as_bytes());
        data
    };
    let first = RFC7677_SERVER_FIRST;
    let last = RFC7677_SERVER_FINAL;
    [
        ("seed-valid-sha256", input(false, first, last)),
        ("seed-sha512-rfc-messages", input(true, first, last)),
        (
            "hostile-nonce-not-extended",
            input(false, &first.replace("rOprNG", "xOprNG"), last),
        ),
        (
            "hostile-nonce-equal",
            input(
                false,
                "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                last,
            ),
        ),
        (
            "hostile-iterations-huge",
            input(false, &first.replace("i=4096", "i=99999999999"), last),
        ),
        (
            "hostile-iterations-low",
            input(false, &first.replace("i=4096", "i=1"), last),
        ),
        (
            "hostile-salt-not-base64",
            input(false, &first.replace("s=W22Z", "s=*22Z"), last),
        ),
        (
            "hostile-extension",
            input(false, &format!("m=ext,{first}"), last),
        ),
        ("hostile-server-error", input(false, "e=unknown-user", "")),
        (
            "hostile-bad-signature",
            input(
                false,
                first,
                "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ),
        ),
        (
            "hostile-final-error",
            input(false, first, "e=invalid-proof"),
        ),
        ("hostile-not-utf8", vec![0, 0xff, 0xfe, b'\n', 0xc3]),
        ("hostile-empty", Vec::new()),
    ]
    .into_iter()
    .map(|(name, data)| (name.to_string(), data))
    .collect()
}

#[test]
fn scram_corpus_replays() {
    let inputs = corpus("scram");
    assert!(!inputs.is_empty(), "empty scram corpus");
    let verified = inputs
        .iter()
        .filter(|(_, data)| scram::run(data).verified)
        .count();
    assert!(verified > 0, "no scram input completed the exchange");
}

#[test]
fn scram_seeds_pass_and_fail_where_the_rfc_says() {
    for (name, input) in scram_seeds() {
        let outcome = scram::run(&input);
        match name.as_str() {
            "seed-valid-sha256" => assert!(outcome.verified, "{name}: the RFC exchange failed"),
            // The SHA-256 messages read under SHA-512: the server-first
            // message is well formed, the signature cannot match.
            "seed-sha512-rfc-messages" | "hostile-bad-signature" | "hostile-final-error" => {
                assert!(outcome.client_final && !outcome.verified, "{name}")
            }
            _ => assert!(
                !outcome.client_final,
                "{name}: hostile server-first accepted"
            ),
        }
    }
}

/// Writes the seed inputs into `fuzz/corpus/<target>/`.
#[test]
#[ignore = "writes files; run to regenerate the fuzz seeds"]
fn write_seeds() {
    let targets = [
        ("frame_decoder", frame_seeds()),
        ("response_decode", response_seeds()),
        ("record_batch_reader", record_batch_seeds()),
        ("consumer_protocol", consumer_protocol_seeds()),
        ("scram", scram_seeds()),
    ];
    for (target, seeds) in targets {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        for (name, data) in seeds {
            fs::write(dir.join(name), data).expect("writing a seed");
        }
    }
}
