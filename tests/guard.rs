//! Tests of the bounded-decoding guard.
//!
//! * Round trips: for every guarded API and version, fully populated
//!   responses encoded by kafka-protocol are accepted and consumed exactly,
//!   every strict prefix is refused, and kafka-protocol decodes what was
//!   accepted.
//! * Hostile inputs: huge counts and lengths, negative lengths, malformed
//!   varints, nested counts, tagged-field abuse, trailing bytes.
//! * Property tests: random and mutated bodies never make the guard panic,
//!   and whenever the guard accepts, kafka-protocol's decode allocates at most
//!   a small multiple of the input size (measured with a counting allocator).
//!
//! Encoding responses needs kafka-protocol's `broker` feature.

use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use smartkafka::protocol::guard::{
    GuardError, Problem, check_response_body, check_response_header, guarded_apis, is_guarded,
};

// ---------------------------------------------------------------------------
// Counting allocator (the one of `support/alloc.rs`)
// ---------------------------------------------------------------------------

mod support;

use support::alloc::{Counting, allocated_by};

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// Populated responses
// ---------------------------------------------------------------------------

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

fn topic(x: &str) -> TopicName {
    TopicName(s(x))
}

/// Whether `v` lies in `lo..=hi`.
fn at(v: i16, lo: i16, hi: i16) -> bool {
    (lo..=hi).contains(&v)
}

/// `Some(x)` or `None`, so that nullable fields are exercised both ways.
fn opt<T>(some: bool, x: T) -> Option<T> {
    some.then_some(x)
}

/// A distinct non-nil UUID, of whatever UUID type the target field has
/// (kafka-protocol does not re-export its `uuid` dependency).
macro_rules! uuid {
    ($i:expr) => {{
        // A Metadata v10 topic: error, null name, the UUID, internal flag,
        // no partitions, authorized operations, no tagged fields.
        let mut raw = vec![0, 0, 0];
        raw.extend_from_slice(&(0x0123_4567_89ab_cdef_u128 + $i as u128).to_be_bytes());
        raw.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0]);
        m::metadata_response::MetadataResponseTopic::decode(&mut Bytes::from(raw), 10)
            .expect("a valid topic")
            .topic_id
    }};
}

/// Builds and encodes a populated response of one API at version `v`. `k`
/// selects one of two variants that differ in which nullable and tagged
/// fields are set.
type Build = fn(v: i16, k: usize) -> Vec<u8>;

/// Decodes a whole body with kafka-protocol.
type Decode = fn(body: Bytes, v: i16) -> Result<(), String>;

/// One guarded API: its key, its first flexible version, a builder and the
/// matching kafka-protocol decoder.
struct Case {
    api: ApiKey,
    flexible: i16,
    build: Build,
    decode: Decode,
}

fn enc<T: Encodable>(response: T, v: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    response
        .encode(&mut buf, v)
        .unwrap_or_else(|e| panic!("{} v{v}: encode: {e}", std::any::type_name::<T>()));
    buf.to_vec()
}

fn dec<T: Decodable>(mut body: Bytes, v: i16) -> Result<(), String> {
    match T::decode(&mut body, v) {
        Ok(_) if body.is_empty() => Ok(()),
        Ok(_) => Err(format!("{} bytes left over", body.len())),
        Err(e) => Err(e.to_string()),
    }
}

macro_rules! case {
    ($api:ident, $flexible:expr, $build:ident, $ty:ident) => {
        Case {
            api: ApiKey::$api,
            flexible: $flexible,
            build: $build,
            decode: dec::<m::$ty>,
        }
    };
}

const NEVER: i16 = i16::MAX;

fn cases() -> Vec<Case> {
    vec![
        case!(ApiVersions, 3, api_versions, ApiVersionsResponse),
        case!(Metadata, 9, metadata, MetadataResponse),
        case!(Produce, 9, produce, ProduceResponse),
        case!(Fetch, 12, fetch, FetchResponse),
        case!(ListOffsets, 6, list_offsets, ListOffsetsResponse),
        case!(CreateTopics, 5, create_topics, CreateTopicsResponse),
        case!(DeleteTopics, 4, delete_topics, DeleteTopicsResponse),
        case!(InitProducerId, 2, init_producer_id, InitProducerIdResponse),
        case!(
            FindCoordinator,
            3,
            find_coordinator,
            FindCoordinatorResponse
        ),
        case!(OffsetFetch, 6, offset_fetch, OffsetFetchResponse),
        case!(OffsetCommit, 8, offset_commit, OffsetCommitResponse),
        case!(
            AddPartitionsToTxn,
            3,
            add_partitions_to_txn,
            AddPartitionsToTxnResponse
        ),
        case!(
            AddOffsetsToTxn,
            3,
            add_offsets_to_txn,
            AddOffsetsToTxnResponse
        ),
        case!(
            TxnOffsetCommit,
            3,
            txn_offset_commit,
            TxnOffsetCommitResponse
        ),
        case!(EndTxn, 3, end_txn, EndTxnResponse),
        case!(SaslHandshake, NEVER, sasl_handshake, SaslHandshakeResponse),
        case!(
            SaslAuthenticate,
            2,
            sasl_authenticate,
            SaslAuthenticateResponse
        ),
        case!(
            DescribeCluster,
            0,
            describe_cluster,
            DescribeClusterResponse
        ),
        case!(JoinGroup, 6, join_group, JoinGroupResponse),
        case!(SyncGroup, 4, sync_group, SyncGroupResponse),
        case!(Heartbeat, 4, heartbeat, HeartbeatResponse),
        case!(LeaveGroup, 4, leave_group, LeaveGroupResponse),
    ]
}

fn api_versions(v: i16, k: usize) -> Vec<u8> {
    use m::api_versions_response::*;
    let mut r = ApiVersionsResponse::default();
    r.error_code = 35;
    r.api_keys = (0..3)
        .map(|i| {
            let mut a = ApiVersion::default();
            a.api_key = i;
            a.min_version = 0;
            a.max_version = 9 + i;
            a
        })
        .collect();
    if at(v, 1, 4) {
        r.throttle_time_ms = 7;
    }
    if at(v, 3, 4) && k == 0 {
        r.supported_features = (0..2)
            .map(|i| {
                let mut f = SupportedFeatureKey::default();
                f.name = s(&format!("feature.{i}"));
                f.min_version = 1;
                f.max_version = 3;
                f
            })
            .collect();
        r.finalized_features_epoch = 77;
        r.finalized_features = (0..3)
            .map(|i| {
                let mut f = FinalizedFeatureKey::default();
                f.name = s(&format!("fin.{i}"));
                f.max_version_level = 2;
                f.min_version_level = 1;
                f
            })
            .collect();
        r.zk_migration_ready = true;
    }
    enc(r, v)
}

fn metadata(v: i16, k: usize) -> Vec<u8> {
    use m::metadata_response::*;
    let mut r = MetadataResponse::default();
    if at(v, 3, 13) {
        r.throttle_time_ms = 5;
    }
    r.brokers = (0..3)
        .map(|i| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(i);
            b.host = s(&format!("broker-{i}.example"));
            b.port = 9092;
            if at(v, 1, 13) {
                b.rack = opt((i as usize + k).is_multiple_of(2), s("rack-a"));
            }
            b
        })
        .collect();
    if at(v, 2, 13) {
        r.cluster_id = opt(k == 0, s("cluster"));
    }
    if at(v, 1, 13) {
        r.controller_id = BrokerId(2);
    }
    r.topics = (0..3)
        .map(|t| {
            let mut x = MetadataResponseTopic::default();
            x.error_code = 0;
            x.name = opt(t != 1 || k == 0, topic(&format!("topic-{t}")));
            if at(v, 10, 13) {
                x.topic_id = uuid!(t);
            }
            if at(v, 1, 13) {
                x.is_internal = t == 2;
            }
            x.partitions = (0..2 + t)
                .map(|p| {
                    let mut y = MetadataResponsePartition::default();
                    y.partition_index = p;
                    y.leader_id = BrokerId(p % 3);
                    if at(v, 7, 13) {
                        y.leader_epoch = 4;
                    }
                    y.replica_nodes = vec![BrokerId(0), BrokerId(1), BrokerId(2)];
                    y.isr_nodes = vec![BrokerId(0), BrokerId(1)];
                    if at(v, 5, 13) {
                        y.offline_replicas = vec![BrokerId(2)];
                    }
                    y
                })
                .collect();
            if at(v, 8, 13) {
                x.topic_authorized_operations = 0x0f;
            }
            x
        })
        .collect();
    if at(v, 8, 10) {
        r.cluster_authorized_operations = 0x3f;
    }
    if at(v, 13, 13) {
        r.error_code = 0;
    }
    enc(r, v)
}

fn produce(v: i16, k: usize) -> Vec<u8> {
    use m::produce_response::*;
    let mut r = ProduceResponse::default();
    r.responses = (0..2)
        .map(|t| {
            let mut x = TopicProduceResponse::default();
            if at(v, 3, 12) {
                x.name = topic(&format!("topic-{t}"));
            }
            if at(v, 13, 13) {
                x.topic_id = uuid!(t);
            }
            x.partition_responses = (0..3)
                .map(|p| {
                    let mut y = PartitionProduceResponse::default();
                    y.index = p;
                    y.error_code = 6;
                    y.base_offset = 1000 + i64::from(p);
                    y.log_append_time_ms = 1_700_000_000_000;
                    if at(v, 5, 13) {
                        y.log_start_offset = 12;
                    }
                    if at(v, 8, 13) {
                        y.record_errors = (0..2)
                            .map(|b| {
                                let mut e = BatchIndexAndErrorMessage::default();
                                e.batch_index = b;
                                e.batch_index_error_message =
                                    opt((b as usize + k).is_multiple_of(2), s("bad record"));
                                e
                            })
                            .collect();
                        y.error_message = opt(k == 0, s("not leader"));
                    }
                    if at(v, 10, 13) && k == 0 {
                        y.current_leader.leader_id = BrokerId(2);
                        y.current_leader.leader_epoch = 9;
                    }
                    y
                })
                .collect();
            x
        })
        .collect();
    r.throttle_time_ms = 3;
    if at(v, 10, 13) && k == 0 {
        r.node_endpoints = (0..2)
            .map(|i| {
                let mut e = NodeEndpoint::default();
                e.node_id = BrokerId(i);
                e.host = s("leader.example");
                e.port = 9093;
                e.rack = opt(i == 0, s("rack-b"));
                e
            })
            .collect();
    }
    enc(r, v)
}

fn fetch(v: i16, k: usize) -> Vec<u8> {
    use m::fetch_response::*;
    let mut r = FetchResponse::default();
    r.throttle_time_ms = 1;
    if at(v, 7, 18) {
        r.error_code = 0;
        r.session_id = 1234;
    }
    r.responses = (0..2)
        .map(|t| {
            let mut x = FetchableTopicResponse::default();
            if at(v, 4, 12) {
                x.topic = topic(&format!("topic-{t}"));
            }
            if at(v, 13, 18) {
                x.topic_id = uuid!(t);
            }
            x.partitions = (0..3)
                .map(|p| {
                    let mut y = PartitionData::default();
                    y.partition_index = p;
                    y.error_code = 0;
                    y.high_watermark = 500;
                    y.last_stable_offset = 499;
                    if at(v, 5, 18) {
                        y.log_start_offset = 3;
                    }
                    y.aborted_transactions = opt(
                        (p as usize + k).is_multiple_of(2),
                        (0..2)
                            .map(|a| {
                                let mut z = AbortedTransaction::default();
                                z.producer_id = m::ProducerId(a);
                                z.first_offset = 40 + a;
                                z
                            })
                            .collect(),
                    );
                    if at(v, 11, 18) {
                        y.preferred_read_replica = BrokerId(1);
                    }
                    y.records = opt(p != 1, Bytes::from_static(b"\x00\x01record-batch-bytes"));
                    if at(v, 12, 18) && k == 0 {
                        y.diverging_epoch.epoch = 3;
                        y.diverging_epoch.end_offset = 90;
                        y.current_leader.leader_id = BrokerId(1);
                        y.current_leader.leader_epoch = 8;
                        y.snapshot_id.end_offset = 70;
                        y.snapshot_id.epoch = 2;
                    }
                    y
                })
                .collect();
            x
        })
        .collect();
    if at(v, 16, 18) && k == 0 {
        r.node_endpoints = (0..3)
            .map(|i| {
                let mut e = NodeEndpoint::default();
                e.node_id = BrokerId(i);
                e.host = s("node.example");
                e.port = 9094;
                e.rack = opt(i != 1, s("rack-c"));
                e
            })
            .collect();
    }
    enc(r, v)
}

fn list_offsets(v: i16, _k: usize) -> Vec<u8> {
    use m::list_offsets_response::*;
    let mut r = ListOffsetsResponse::default();
    if at(v, 2, 10) {
        r.throttle_time_ms = 2;
    }
    r.topics = (0..2)
        .map(|t| {
            let mut x = ListOffsetsTopicResponse::default();
            x.name = topic(&format!("topic-{t}"));
            x.partitions = (0..3)
                .map(|p| {
                    let mut y = ListOffsetsPartitionResponse::default();
                    y.partition_index = p;
                    y.timestamp = 17;
                    y.offset = 42;
                    if at(v, 4, 10) {
                        y.leader_epoch = 5;
                    }
                    y
                })
                .collect();
            x
        })
        .collect();
    enc(r, v)
}

fn create_topics(v: i16, k: usize) -> Vec<u8> {
    use m::create_topics_response::*;
    let mut r = CreateTopicsResponse::default();
    r.throttle_time_ms = 4;
    r.topics = (0..3)
        .map(|t| {
            let mut x = CreatableTopicResult::default();
            x.name = topic(&format!("new-{t}"));
            if at(v, 7, 7) {
                x.topic_id = uuid!(t);
            }
            x.error_code = 36;
            x.error_message = opt((t + k).is_multiple_of(2), s("exists"));
            if at(v, 5, 7) {
                if k == 0 {
                    x.topic_config_error_code = 29;
                }
                x.num_partitions = 3;
                x.replication_factor = 2;
                x.configs = opt(
                    t != 2,
                    (0..2)
                        .map(|c| {
                            let mut y = CreatableTopicConfigs::default();
                            y.name = s(&format!("config.{c}"));
                            y.value = opt((c + k).is_multiple_of(2), s("value"));
                            y.read_only = c == 1;
                            y.config_source = 5;
                            y.is_sensitive = c == 0;
                            y
                        })
                        .collect(),
                );
            }
            x
        })
        .collect();
    enc(r, v)
}

fn delete_topics(v: i16, k: usize) -> Vec<u8> {
    use m::delete_topics_response::*;
    let mut r = DeleteTopicsResponse::default();
    r.throttle_time_ms = 4;
    r.responses = (0..3)
        .map(|t| {
            let mut x = DeletableTopicResult::default();
            x.name = opt(t != 1 || k == 0, topic(&format!("old-{t}")));
            if at(v, 6, 6) {
                x.topic_id = uuid!(t);
            }
            x.error_code = 3;
            if at(v, 5, 6) {
                x.error_message = opt((t + k).is_multiple_of(2), s("unknown"));
            }
            x
        })
        .collect();
    enc(r, v)
}

fn init_producer_id(v: i16, _k: usize) -> Vec<u8> {
    let mut r = m::InitProducerIdResponse::default();
    r.throttle_time_ms = 1;
    r.producer_id = m::ProducerId(99);
    r.producer_epoch = 3;
    if at(v, 6, 6) {
        r.ongoing_txn_producer_id = m::ProducerId(98);
        r.ongoing_txn_producer_epoch = 2;
    }
    enc(r, v)
}

fn find_coordinator(v: i16, k: usize) -> Vec<u8> {
    use m::find_coordinator_response::*;
    let mut r = FindCoordinatorResponse::default();
    if at(v, 1, 6) {
        r.throttle_time_ms = 1;
    }
    if at(v, 0, 3) {
        r.error_code = 15;
        if at(v, 1, 3) {
            r.error_message = opt(k == 0, s("not available"));
        }
        r.node_id = BrokerId(1);
        r.host = s("coordinator.example");
        r.port = 9092;
    }
    if at(v, 4, 6) {
        r.coordinators = (0..3)
            .map(|i| {
                let mut c = Coordinator::default();
                c.key = s(&format!("group-{i}"));
                c.node_id = BrokerId(i);
                c.host = s("coordinator.example");
                c.port = 9092;
                c.error_code = 0;
                c.error_message = opt((i as usize + k).is_multiple_of(2), s("message"));
                c
            })
            .collect();
    }
    enc(r, v)
}

fn offset_fetch(v: i16, k: usize) -> Vec<u8> {
    use m::offset_fetch_response::*;
    let mut r = OffsetFetchResponse::default();
    if at(v, 3, 10) {
        r.throttle_time_ms = 2;
    }
    if at(v, 1, 7) {
        r.topics = (0..2)
            .map(|t| {
                let mut x = OffsetFetchResponseTopic::default();
                x.name = topic(&format!("topic-{t}"));
                x.partitions = (0..3)
                    .map(|p| {
                        let mut y = OffsetFetchResponsePartition::default();
                        y.partition_index = p;
                        y.committed_offset = 100;
                        if at(v, 5, 7) {
                            y.committed_leader_epoch = 6;
                        }
                        y.metadata = opt((p as usize + k).is_multiple_of(2), s("meta"));
                        y
                    })
                    .collect();
                x
            })
            .collect();
        if at(v, 2, 7) {
            r.error_code = 0;
        }
    }
    if at(v, 8, 10) {
        r.groups = (0..2)
            .map(|g| {
                let mut x = OffsetFetchResponseGroup::default();
                x.group_id = m::GroupId(s(&format!("group-{g}")));
                x.topics = (0..3)
                    .map(|t| {
                        let mut y = OffsetFetchResponseTopics::default();
                        if at(v, 8, 9) {
                            y.name = topic(&format!("topic-{t}"));
                        }
                        if at(v, 10, 10) {
                            y.topic_id = uuid!(t);
                        }
                        y.partitions = (0..2)
                            .map(|p| {
                                let mut z = OffsetFetchResponsePartitions::default();
                                z.partition_index = p;
                                z.committed_offset = 100;
                                z.committed_leader_epoch = 6;
                                z.metadata = opt((p as usize + k).is_multiple_of(2), s("meta"));
                                z
                            })
                            .collect();
                        y
                    })
                    .collect();
                x
            })
            .collect();
    }
    enc(r, v)
}

fn offset_commit(v: i16, _k: usize) -> Vec<u8> {
    use m::offset_commit_response::*;
    let mut r = OffsetCommitResponse::default();
    if at(v, 3, 10) {
        r.throttle_time_ms = 2;
    }
    r.topics = (0..3)
        .map(|t| {
            let mut x = OffsetCommitResponseTopic::default();
            if at(v, 2, 9) {
                x.name = topic(&format!("topic-{t}"));
            }
            if at(v, 10, 10) {
                x.topic_id = uuid!(t);
            }
            x.partitions = (0..2)
                .map(|p| {
                    let mut y = OffsetCommitResponsePartition::default();
                    y.partition_index = p;
                    y.error_code = 22;
                    y
                })
                .collect();
            x
        })
        .collect();
    enc(r, v)
}

fn add_partitions_to_txn(v: i16, _k: usize) -> Vec<u8> {
    use m::add_partitions_to_txn_response::*;
    let topic_results = || -> Vec<AddPartitionsToTxnTopicResult> {
        (0..2)
            .map(|t| {
                let mut x = AddPartitionsToTxnTopicResult::default();
                x.name = topic(&format!("topic-{t}"));
                x.results_by_partition = (0..3)
                    .map(|p| {
                        let mut y = AddPartitionsToTxnPartitionResult::default();
                        y.partition_index = p;
                        y.partition_error_code = 48;
                        y
                    })
                    .collect();
                x
            })
            .collect()
    };
    let mut r = AddPartitionsToTxnResponse::default();
    r.throttle_time_ms = 1;
    if at(v, 4, 5) {
        r.error_code = 0;
        r.results_by_transaction = (0..2)
            .map(|i| {
                let mut x = AddPartitionsToTxnResult::default();
                x.transactional_id = m::TransactionalId(s(&format!("txn-{i}")));
                x.topic_results = topic_results();
                x
            })
            .collect();
    } else {
        r.results_by_topic_v3_and_below = topic_results();
    }
    enc(r, v)
}

fn add_offsets_to_txn(v: i16, _k: usize) -> Vec<u8> {
    let mut r = m::AddOffsetsToTxnResponse::default();
    r.throttle_time_ms = 1;
    r.error_code = 51;
    enc(r, v)
}

fn txn_offset_commit(v: i16, _k: usize) -> Vec<u8> {
    use m::txn_offset_commit_response::*;
    let mut r = TxnOffsetCommitResponse::default();
    r.throttle_time_ms = 1;
    r.topics = (0..2)
        .map(|t| {
            let mut x = TxnOffsetCommitResponseTopic::default();
            x.name = topic(&format!("topic-{t}"));
            x.partitions = (0..3)
                .map(|p| {
                    let mut y = TxnOffsetCommitResponsePartition::default();
                    y.partition_index = p;
                    y.error_code = 0;
                    y
                })
                .collect();
            x
        })
        .collect();
    enc(r, v)
}

fn end_txn(v: i16, _k: usize) -> Vec<u8> {
    let mut r = m::EndTxnResponse::default();
    r.throttle_time_ms = 1;
    r.error_code = 47;
    if at(v, 5, 5) {
        r.producer_id = m::ProducerId(7);
        r.producer_epoch = 1;
    }
    enc(r, v)
}

fn sasl_handshake(v: i16, _k: usize) -> Vec<u8> {
    let mut r = m::SaslHandshakeResponse::default();
    r.mechanisms = vec![s("PLAIN"), s("SCRAM-SHA-256"), s("SCRAM-SHA-512")];
    enc(r, v)
}

fn sasl_authenticate(v: i16, k: usize) -> Vec<u8> {
    let mut r = m::SaslAuthenticateResponse::default();
    r.error_code = 58;
    r.error_message = opt(k == 0, s("bad credentials"));
    r.auth_bytes = Bytes::from_static(b"server-final-message");
    if at(v, 1, 2) {
        r.session_lifetime_ms = 3_600_000;
    }
    enc(r, v)
}

fn describe_cluster(v: i16, k: usize) -> Vec<u8> {
    use m::describe_cluster_response::*;
    let mut r = DescribeClusterResponse::default();
    r.throttle_time_ms = 1;
    r.error_message = opt(k == 0, s("none"));
    if at(v, 1, 2) {
        r.endpoint_type = 2;
    }
    r.cluster_id = s("cluster-id");
    r.controller_id = BrokerId(1);
    r.brokers = (0..3)
        .map(|i| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(i);
            b.host = s("broker.example");
            b.port = 9092;
            b.rack = opt((i as usize + k).is_multiple_of(2), s("rack"));
            if at(v, 2, 2) {
                b.is_fenced = i == 1;
            }
            b
        })
        .collect();
    r.cluster_authorized_operations = 0x1f;
    enc(r, v)
}

fn join_group(v: i16, k: usize) -> Vec<u8> {
    use m::join_group_response::*;
    let mut r = JoinGroupResponse::default();
    if at(v, 2, 9) {
        r.throttle_time_ms = 1;
    }
    r.generation_id = 5;
    if at(v, 7, 9) {
        r.protocol_type = opt(k == 0, s("consumer"));
    }
    r.protocol_name = opt(k == 0 || v < 7, s("range"));
    r.leader = s("member-0");
    if at(v, 9, 9) {
        r.skip_assignment = true;
    }
    r.member_id = s("member-1");
    r.members = (0..3)
        .map(|i| {
            let mut x = JoinGroupResponseMember::default();
            x.member_id = s(&format!("member-{i}"));
            if at(v, 5, 9) {
                x.group_instance_id = opt((i + k).is_multiple_of(2), s("instance"));
            }
            x.metadata = Bytes::from_static(b"\x00\x01subscription");
            x
        })
        .collect();
    enc(r, v)
}

fn sync_group(v: i16, k: usize) -> Vec<u8> {
    let mut r = m::SyncGroupResponse::default();
    if at(v, 1, 5) {
        r.throttle_time_ms = 1;
    }
    r.error_code = 27;
    if at(v, 5, 5) {
        r.protocol_type = opt(k == 0, s("consumer"));
        r.protocol_name = opt(k == 0, s("range"));
    }
    r.assignment = Bytes::from_static(b"\x00\x01assignment");
    enc(r, v)
}

fn heartbeat(v: i16, _k: usize) -> Vec<u8> {
    let mut r = m::HeartbeatResponse::default();
    if at(v, 1, 4) {
        r.throttle_time_ms = 1;
    }
    r.error_code = 25;
    enc(r, v)
}

fn leave_group(v: i16, k: usize) -> Vec<u8> {
    use m::leave_group_response::*;
    let mut r = LeaveGroupResponse::default();
    if at(v, 1, 5) {
        r.throttle_time_ms = 1;
    }
    r.error_code = 0;
    if at(v, 3, 5) {
        r.members = (0..3)
            .map(|i| {
                let mut x = MemberResponse::default();
                x.member_id = s(&format!("member-{i}"));
                x.group_instance_id = opt((i + k).is_multiple_of(2), s("instance"));
                x.error_code = 0;
                x
            })
            .collect();
    }
    enc(r, v)
}

/// Encodes `response` at `version`, adding an unknown tagged field to the
/// top-level struct in flexible versions when `unknown_tag` is set.
fn encode(case: &Case, version: i16, variant: usize) -> Vec<u8> {
    let mut body = (case.build)(version, variant);
    if variant == 1 && version >= case.flexible {
        append_unknown_tag(&mut body);
    }
    body
}

/// Rewrites the top-level tagged-field section of a flexible body that ends
/// with an empty section (a single zero byte) into one unknown tagged field.
fn append_unknown_tag(body: &mut Vec<u8>) {
    if body.last() == Some(&0) {
        body.pop();
        body.extend_from_slice(&[1, 90, 3, b'x', b'y', b'z']);
    }
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let range = api.valid_versions();
    range.min..=range.max
}

// ---------------------------------------------------------------------------
// 1. Schema correctness against kafka-protocol
// ---------------------------------------------------------------------------

#[test]
fn every_guarded_api_covers_all_kafka_protocol_versions() {
    let cases = cases();
    for case in &cases {
        for v in versions(case.api) {
            assert!(is_guarded(case.api, v), "{:?} v{v} not guarded", case.api);
        }
        let range = case.api.valid_versions();
        assert!(!is_guarded(case.api, range.max + 1));
        assert!(!is_guarded(case.api, range.min - 1));
    }
    assert_eq!(guarded_apis().count(), cases.len());
    assert!(!is_guarded(ApiKey::DescribeGroups, 0));
    assert!(matches!(
        check_response_body(ApiKey::Metadata, 99, &[]),
        Err(GuardError::Unguarded { .. })
    ));
}

#[test]
fn round_trip_accepts_exactly_and_refuses_every_truncation() {
    let mut encodings = 0usize;
    let mut prefixes = 0usize;
    for case in cases() {
        for v in versions(case.api) {
            for variant in 0..2 {
                let body = encode(&case, v, variant);
                let what = format!("{:?} v{v} variant {variant}", case.api);
                check_response_body(case.api, v, &body)
                    .unwrap_or_else(|e| panic!("{what}: refused a valid body: {e}"));
                (case.decode)(Bytes::copy_from_slice(&body), v)
                    .unwrap_or_else(|e| panic!("{what}: kafka-protocol: {e}"));
                for cut in 0..body.len() {
                    let prefix = body.get(..cut).unwrap_or_default();
                    assert!(
                        check_response_body(case.api, v, prefix).is_err(),
                        "{what}: accepted a {cut}-byte prefix of {}",
                        body.len()
                    );
                    prefixes += 1;
                }
                let mut longer = body.clone();
                longer.push(0);
                assert!(
                    matches!(
                        check_response_body(case.api, v, &longer),
                        Err(GuardError::Body {
                            problem: Problem::TrailingBytes(1),
                            ..
                        })
                    ),
                    "{what}: accepted a trailing byte"
                );
                encodings += 1;
            }
        }
    }
    println!("checked {encodings} encodings and {prefixes} truncations");
    assert!(encodings >= 300);
}

// ---------------------------------------------------------------------------
// 2. Hostile inputs
// ---------------------------------------------------------------------------

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A 20-byte body: `prefix`, then an array count of 2^31 - 1 (or a compact
/// count of 2^31), then zeros.
fn huge_count_body(prefix: &[u8], flexible: bool) -> Vec<u8> {
    let mut body = prefix.to_vec();
    if flexible {
        body.extend(varint((1 << 31) + 1));
    } else {
        body.extend_from_slice(&i32::MAX.to_be_bytes());
    }
    body.resize(20, 0);
    body
}

fn assert_problem(result: Result<(), GuardError>, what: &str, expected: fn(&Problem) -> bool) {
    match result {
        Err(GuardError::Body { ref problem, .. }) if expected(problem) => {}
        other => panic!("{what}: unexpected outcome {other:?}"),
    }
}

#[test]
fn huge_first_array_count_is_refused() {
    let t = &[0u8; 4][..]; // throttle_time_ms
    let e = &[0u8; 2][..]; // error_code
    let cat = |parts: &[&[u8]]| parts.concat();
    // (api, version, bytes before the first array)
    let rows: Vec<(ApiKey, i16, Vec<u8>)> = vec![
        (ApiKey::ApiVersions, 0, e.to_vec()),
        (ApiKey::ApiVersions, 3, e.to_vec()),
        (ApiKey::Metadata, 0, vec![]),
        (ApiKey::Metadata, 12, t.to_vec()),
        (ApiKey::Produce, 3, vec![]),
        (ApiKey::Produce, 13, vec![]),
        (ApiKey::Fetch, 4, t.to_vec()),
        (ApiKey::Fetch, 18, cat(&[t, e, t])),
        (ApiKey::ListOffsets, 1, vec![]),
        (ApiKey::ListOffsets, 10, t.to_vec()),
        (ApiKey::CreateTopics, 2, t.to_vec()),
        (ApiKey::CreateTopics, 7, t.to_vec()),
        (ApiKey::DeleteTopics, 1, t.to_vec()),
        (ApiKey::DeleteTopics, 6, t.to_vec()),
        (ApiKey::FindCoordinator, 6, t.to_vec()),
        (ApiKey::OffsetFetch, 1, vec![]),
        (ApiKey::OffsetFetch, 10, t.to_vec()),
        (ApiKey::OffsetCommit, 2, vec![]),
        (ApiKey::OffsetCommit, 10, t.to_vec()),
        (ApiKey::AddPartitionsToTxn, 0, t.to_vec()),
        (ApiKey::AddPartitionsToTxn, 5, cat(&[t, e])),
        (ApiKey::TxnOffsetCommit, 0, t.to_vec()),
        (ApiKey::TxnOffsetCommit, 5, t.to_vec()),
        (ApiKey::SaslHandshake, 1, e.to_vec()),
        // throttle, error, null message, endpoint type, "" cluster id, controller
        (ApiKey::DescribeCluster, 2, cat(&[t, e, &[0, 1, 1], t])),
        (ApiKey::JoinGroup, 0, cat(&[e, t, &[0; 6]])),
        (ApiKey::JoinGroup, 9, cat(&[t, e, t, &[0, 0, 1, 0, 1]])),
        (ApiKey::LeaveGroup, 3, cat(&[t, e])),
        (ApiKey::LeaveGroup, 5, cat(&[t, e])),
    ];
    let flexible: std::collections::HashMap<ApiKey, i16> =
        cases().iter().map(|c| (c.api, c.flexible)).collect();
    for (api, v, prefix) in rows {
        let body = huge_count_body(&prefix, v >= flexible[&api]);
        assert_eq!(body.len(), 20);
        let what = format!("{api:?} v{v}");
        let result = check_response_body(api, v, &body);
        if let Err(e) = &result {
            assert!(e.to_string().contains("count"), "{what}: {e}");
        }
        assert_problem(result, &what, |p| {
            matches!(p, Problem::CountTooLarge { .. })
        });
    }
}

#[test]
fn error_names_the_path() {
    // Metadata v0: no brokers, one topic with an empty name whose partition
    // count is 2^31 - 1.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    body.extend_from_slice(&[0; 14]);
    let err = check_response_body(ApiKey::Metadata, 0, &body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Metadata v0: topics[0].partitions: count 2147483647 exceeds 14 remaining bytes \
         at 18 or more bytes per element"
    );
}

#[test]
fn nested_counts_are_bounded_by_their_own_remaining_bytes() {
    // Metadata v1: no brokers, controller 0, two topics whose partition
    // counts are each individually plausible for the whole body but not for
    // what is left after them.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    for _ in 0..2 {
        body.extend_from_slice(&[0, 0, 0, 0, 0]); // error, "" name, not internal
        body.extend_from_slice(&3i32.to_be_bytes());
    }
    body.extend_from_slice(&[0; 20]);
    assert_problem(
        check_response_body(ApiKey::Metadata, 1, &body),
        "nested",
        |p| matches!(p, Problem::Truncated { .. } | Problem::CountTooLarge { .. }),
    );
    // A replica list of 1000 i32s with 40 bytes present.
    let mut body = vec![
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    body.extend_from_slice(&[0; 10]); // error, partition, leader
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(&[0; 40]);
    let err = check_response_body(ApiKey::Metadata, 1, &body).unwrap_err();
    assert!(
        err.to_string()
            .contains("topics[0].partitions[0].replica_nodes"),
        "{err}"
    );
}

#[test]
fn huge_compact_varints_are_refused() {
    // ApiVersions v3: error code, then the largest 32-bit compact count.
    let mut body = vec![0, 0];
    body.extend(varint(u64::from(u32::MAX)));
    body.resize(20, 0);
    assert_problem(
        check_response_body(ApiKey::ApiVersions, 3, &body),
        "max varint",
        |p| matches!(p, Problem::CountTooLarge { .. }),
    );
    // Varints longer than five bytes or wider than 32 bits.
    for bad in [
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
        &[0x80, 0x80, 0x80, 0x80, 0x10],
    ] {
        let mut body = vec![0, 0];
        body.extend_from_slice(bad);
        body.resize(20, 0);
        assert_problem(
            check_response_body(ApiKey::ApiVersions, 3, &body),
            "bad varint",
            |p| matches!(p, Problem::MalformedVarint),
        );
    }
    // DescribeCluster v0: error message with a compact length of 2^32 - 2.
    let mut body = vec![0; 6];
    body.extend(varint(u64::from(u32::MAX)));
    body.resize(20, 0);
    assert_problem(
        check_response_body(ApiKey::DescribeCluster, 0, &body),
        "length",
        |p| matches!(p, Problem::LengthTooLarge { .. }),
    );
}

#[test]
fn negative_lengths_other_than_null_are_refused() {
    // Array count -2.
    let mut body = (-2i32).to_be_bytes().to_vec();
    body.resize(20, 0);
    assert_problem(
        check_response_body(ApiKey::Metadata, 0, &body),
        "array",
        |p| *p == Problem::NegativeLength(-2),
    );
    // Non-nullable array count -1.
    let mut body = (-1i32).to_be_bytes().to_vec();
    body.resize(20, 0);
    assert_problem(
        check_response_body(ApiKey::Metadata, 0, &body),
        "null array",
        |p| *p == Problem::UnexpectedNull,
    );
    // SaslAuthenticate v0: nullable error message of length -5.
    let body = [0, 0, 0xff, 0xfb, 0, 0, 0, 0];
    assert_problem(
        check_response_body(ApiKey::SaslAuthenticate, 0, &body),
        "string",
        |p| *p == Problem::NegativeLength(-5),
    );
    // ... and auth bytes of length -2 after a null message.
    let body = [0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];
    assert_problem(
        check_response_body(ApiKey::SaslAuthenticate, 0, &body),
        "bytes",
        |p| *p == Problem::NegativeLength(-2),
    );
    // A null where the field is not nullable: SyncGroup v0 assignment.
    let body = [0, 0, 0xff, 0xff, 0xff, 0xff];
    assert_problem(
        check_response_body(ApiKey::SyncGroup, 0, &body),
        "not nullable",
        |p| *p == Problem::UnexpectedNull,
    );
}

#[test]
fn tagged_fields_are_bounded() {
    // Heartbeat v4: throttle, error, then tagged sections of various kinds.
    let base = [0u8, 0, 0, 0, 0, 0];
    let with = |tags: &[u8]| [&base[..], tags].concat();
    // Unknown tags are skipped by size.
    assert!(check_response_body(ApiKey::Heartbeat, 4, &with(&[2, 7, 1, 0, 9, 0])).is_ok());
    // A huge tag count.
    let mut tags = varint(1 << 30);
    tags.extend_from_slice(&[0; 8]);
    assert_problem(
        check_response_body(ApiKey::Heartbeat, 4, &with(&tags)),
        "count",
        |p| matches!(p, Problem::CountTooLarge { .. }),
    );
    // An unknown tag whose size runs past the end.
    let mut tags = vec![1, 7];
    tags.extend(varint(1 << 20));
    assert_problem(
        check_response_body(ApiKey::Heartbeat, 4, &with(&tags)),
        "size",
        |p| matches!(p, Problem::LengthTooLarge { .. }),
    );
    // Produce v10: one topic "t" with one partition whose known CurrentLeader
    // tag holds 9 bytes (leader id, leader epoch, empty tag section).
    let produce = |declared: u8| {
        let mut body = vec![2, 2, b't', 2]; // one topic "t", one partition
        body.extend_from_slice(&[0; 4 + 2 + 8 + 8 + 8]); // index .. log_start_offset
        body.extend_from_slice(&[1, 0]); // no record errors, null error message
        body.extend_from_slice(&[1, 0, declared]); // one tag: 0, `declared` bytes
        body.extend_from_slice(&[0; 8]); // leader id, leader epoch
        body.push(0); // the leader struct's tag section
        body.push(0); // topic tags
        body.extend_from_slice(&[0; 4]); // throttle
        body.push(0); // response tags
        body
    };
    assert_eq!(
        check_response_body(ApiKey::Produce, 10, &produce(9)),
        Ok(())
    );
    // Declared sizes that disagree with the value are refused: kafka-protocol
    // decodes known tags without looking at the size.
    for declared in [8, 10] {
        let err = check_response_body(ApiKey::Produce, 10, &produce(declared)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("partition_responses[0].current_leader"),
            "{text}"
        );
    }
}

#[test]
fn response_headers() {
    assert_eq!(check_response_header(0, &[0, 0, 0, 7, 1, 2]), Ok(4));
    assert_eq!(check_response_header(1, &[0, 0, 0, 7, 0, 2]), Ok(5));
    assert_eq!(
        check_response_header(1, &[0, 0, 0, 7, 1, 5, 2, 0xaa, 0xbb, 9]),
        Ok(9)
    );
    assert!(check_response_header(0, &[0, 0, 0]).is_err());
    assert!(check_response_header(1, &[0, 0, 0, 7]).is_err());
    assert!(check_response_header(1, &[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    assert!(check_response_header(1, &[0, 0, 0, 7, 1, 5, 200, 1]).is_err());
    assert_eq!(
        check_response_header(2, &[0; 8]),
        Err(GuardError::UnknownHeaderVersion(2))
    );
}

// ---------------------------------------------------------------------------
// 3. Property tests: no panics, bounded allocation
// ---------------------------------------------------------------------------

/// The most kafka-protocol may allocate while decoding an accepted body of
/// `len` bytes: 64 times its size, plus, when decoding fails (for example on
/// invalid UTF-8, which the guard does not check), a fixed allowance for the
/// error value, whose size does not depend on the input (with
/// `RUST_BACKTRACE=1` it includes a captured backtrace).
fn allocation_limit(len: usize, decoded: bool) -> usize {
    const ERROR_ALLOWANCE: usize = 256 * 1024;
    64 * len.max(16) + if decoded { 0 } else { ERROR_ALLOWANCE }
}

thread_local! {
    /// The largest allocated/input ratio seen by [`probe`] on this thread.
    static WORST_RATIO: Cell<f64> = const { Cell::new(0.0) };
}

/// Checks one input: the guard must not panic, and if it accepts, decoding
/// must stay within [`allocation_limit`]. Returns whether it was accepted.
fn probe(case: &Case, version: i16, body: &[u8]) -> Result<bool, TestCaseError> {
    let api = case.api;
    if check_response_body(api, version, body).is_err() {
        return Ok(false);
    }
    let input = Bytes::copy_from_slice(body);
    let (decoded, allocated) = allocated_by(|| (case.decode)(input, version).is_ok());
    if decoded {
        let ratio = allocated as f64 / body.len().max(1) as f64;
        WORST_RATIO.with(|w| w.set(w.get().max(ratio)));
    }
    prop_assert!(
        allocated <= allocation_limit(body.len(), decoded),
        "{api:?} v{version}: decoding {} accepted bytes allocated {allocated}",
        body.len()
    );
    Ok(true)
}

const RANDOM_CASES: u32 = 3000;
const MUTATED_CASES: u32 = 3000;

#[test]
fn random_bodies_never_panic_and_bound_allocation() {
    for case in cases() {
        let api = case.api;
        let range = api.valid_versions();
        let mut runner = TestRunner::new(Config {
            cases: RANDOM_CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            range.min..=range.max,
            proptest::collection::vec(any::<u8>(), 0..256),
        );
        runner
            .run(&strategy, |(v, body)| probe(&case, v, &body).map(|_| ()))
            .unwrap_or_else(|e| panic!("{api:?}: {e}"));
    }
}

#[test]
fn mutated_bodies_never_panic_and_bound_allocation() {
    let mut accepted = 0usize;
    let mut total = 0usize;
    for case in cases() {
        let api = case.api;
        let range = api.valid_versions();
        let bodies: Vec<(i16, Vec<u8>)> = (range.min..=range.max)
            .flat_map(|v| (0..2).map(move |k| (v, k)))
            .map(|(v, k)| (v, encode(&case, v, k)))
            .collect();
        let mut runner = TestRunner::new(Config {
            cases: MUTATED_CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            0..bodies.len(),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
            any::<prop::sample::Index>(),
        );
        let counts = std::cell::RefCell::new((0usize, 0usize));
        runner
            .run(&strategy, |(which, edits, cut)| {
                let Some((v, original)) = bodies.get(which) else {
                    return Ok(());
                };
                let mut body = original.clone();
                for (at, byte, kind) in edits {
                    if body.is_empty() {
                        break;
                    }
                    let i = at.index(body.len());
                    match kind {
                        // Overwrite one byte.
                        0 => body[i] = byte,
                        // Plant a huge count (non-flexible) or varint.
                        1 => {
                            let end = (i + 4).min(body.len());
                            body[i..end].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff][..end - i]);
                        }
                        2 => {
                            let end = (i + 5).min(body.len());
                            body[i..end]
                                .copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07][..end - i]);
                        }
                        // Insert a byte.
                        _ => body.insert(i, byte),
                    }
                }
                if cut.index(8) == 0 {
                    let keep = cut.index(body.len() + 1);
                    body.truncate(keep);
                }
                let ok = probe(&case, *v, &body)?;
                let mut c = counts.borrow_mut();
                c.0 += 1;
                c.1 += usize::from(ok);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{api:?}: {e}"));
        let (t, a) = counts.into_inner();
        total += t;
        accepted += a;
    }
    let worst = WORST_RATIO.with(Cell::get);
    println!(
        "mutated bodies: {total} cases, {accepted} accepted by the guard; \
         worst allocation when they decoded successfully: {worst:.1}x the input"
    );
    assert!(accepted > 0);
}

#[test]
fn valid_bodies_allocate_little_when_decoded() {
    let mut worst = 0f64;
    for case in cases() {
        for v in versions(case.api) {
            for k in 0..2 {
                let body = encode(&case, v, k);
                let input = Bytes::copy_from_slice(&body);
                let (ok, allocated) = allocated_by(|| (case.decode)(input, v).is_ok());
                assert!(ok);
                assert!(allocated <= allocation_limit(body.len(), true));
                worst = worst.max(allocated as f64 / body.len() as f64);
            }
        }
    }
    println!("worst allocation ratio for valid bodies: {worst:.1}x");
}

/// The worst case the guard admits: many tiny structs, each carrying one
/// unknown tagged field, so that kafka-protocol builds a `BTreeMap` (one
/// ~400-byte node) for every 2 extra bytes of input. This is bounded, but
/// above the 64x that ordinary bodies stay under.
#[test]
fn unknown_tagged_fields_worst_case_allocation() {
    let case = cases()
        .into_iter()
        .find(|c| c.api == ApiKey::JoinGroup)
        .unwrap();
    let n = 1000u64;
    // throttle, error, generation, null type, null name, "" leader,
    // skip_assignment, "" member id
    let mut body = vec![0; 10];
    body.extend_from_slice(&[0, 0, 1, 0, 1]);
    body.extend(varint(n + 1));
    for _ in 0..n {
        // "" member id, null instance id, empty metadata, one unknown tag
        body.extend_from_slice(&[1, 0, 1, 1, 5, 0]);
    }
    body.push(0);
    assert_eq!(check_response_body(ApiKey::JoinGroup, 9, &body), Ok(()));
    let input = Bytes::copy_from_slice(&body);
    let (ok, allocated) = allocated_by(|| (case.decode)(input, 9).is_ok());
    assert!(ok);
    let ratio = allocated as f64 / body.len() as f64;
    println!("worst-case unknown tagged fields: {ratio:.1}x the input");
    assert!(ratio < 128.0);
}
