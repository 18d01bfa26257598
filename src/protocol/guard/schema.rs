//! The response schemas the guard walks.
//!
//! Each struct is a list of fields in wire order. A field exists for an
//! inclusive range of versions; tagged fields carry their tag and are only
//! read from the tagged-field section of flexible versions. `MAX` stands for
//! "up to the message's highest version". Nullability follows kafka-protocol:
//! a field decoded into an `Option` accepts null at every version it exists.
//!
//! The tables mirror kafka-protocol 0.18's generated `Decodable` impls
//! (`src/messages/*_response.rs`), which in turn follow the Kafka message
//! definitions. When kafka-protocol is upgraded, the round-trip tests in
//! `tests/guard.rs` show which tables need updating.

use kafka_protocol::messages::ApiKey;

/// "Up to the message's highest version."
const MAX: i16 = i16::MAX;

/// The `flexible` value of messages that have no flexible versions.
const NEVER: i16 = i16::MAX;

/// The wire type of one field.
#[derive(Debug)]
pub(super) enum Ty {
    I8,
    I16,
    I32,
    I64,
    #[allow(dead_code)]
    U16,
    #[allow(dead_code)]
    U32,
    #[allow(dead_code)]
    F64,
    Bool,
    Uuid,
    /// `STRING` / `COMPACT_STRING` (nullable when the field is).
    String,
    /// `BYTES` / `COMPACT_BYTES` (nullable when the field is).
    Bytes,
    /// A record batch blob: `RECORDS`, encoded like nullable bytes.
    Records,
    /// A nested struct, inline.
    Struct(&'static [Field]),
    /// `ARRAY` / `COMPACT_ARRAY` of the element type.
    Array(&'static Ty),
}

impl Ty {
    /// The fewest bytes a value of this type can take on the wire.
    pub(super) fn min_size(&self, version: i16, flexible: bool) -> usize {
        match self {
            Ty::I8 | Ty::Bool => 1,
            Ty::I16 | Ty::U16 => 2,
            Ty::I32 | Ty::U32 => 4,
            Ty::I64 | Ty::F64 => 8,
            Ty::Uuid => 16,
            Ty::String if !flexible => 2,
            Ty::Bytes | Ty::Records | Ty::Array(_) if !flexible => 4,
            Ty::String | Ty::Bytes | Ty::Records | Ty::Array(_) => 1,
            Ty::Struct(fields) => fields
                .iter()
                .filter(|f| f.tag.is_none() && f.present(version))
                .map(|f| f.ty.min_size(version, flexible))
                .fold(usize::from(flexible), usize::saturating_add),
        }
    }
}

/// One field of a struct.
#[derive(Debug)]
pub(super) struct Field {
    /// The field name, as kafka-protocol spells it.
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    /// The inclusive range of versions in which the field exists.
    pub(super) versions: (i16, i16),
    /// The inclusive range of versions in which the field may be null.
    pub(super) nullable: (i16, i16),
    /// The tag of a tagged field.
    pub(super) tag: Option<u32>,
}

impl Field {
    pub(super) fn present(&self, version: i16) -> bool {
        (self.versions.0..=self.versions.1).contains(&version)
    }

    pub(super) fn nullable_at(&self, version: i16) -> bool {
        (self.nullable.0..=self.nullable.1).contains(&version)
    }
}

/// The schema of one response message.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) api: ApiKey,
    /// The name used in error messages.
    pub(super) name: &'static str,
    /// The lowest version covered.
    pub(super) min: i16,
    /// The highest version covered.
    pub(super) max: i16,
    /// The first flexible version (compact encodings and tagged fields).
    pub(super) flexible: i16,
    pub(super) fields: &'static [Field],
}

/// A non-nullable field present in `min..=max`.
const fn field(name: &'static str, ty: Ty, min: i16, max: i16) -> Field {
    Field {
        name,
        ty,
        versions: (min, max),
        nullable: (1, 0),
        tag: None,
    }
}

/// A field present in `min..=max` that may be null wherever it is present.
const fn nullable(name: &'static str, ty: Ty, min: i16, max: i16) -> Field {
    Field {
        name,
        ty,
        versions: (min, max),
        nullable: (min, max),
        tag: None,
    }
}

/// A tagged field with `tag`, known in `min..=max`.
const fn tagged(tag: u32, name: &'static str, ty: Ty, min: i16, max: i16) -> Field {
    Field {
        name,
        ty,
        versions: (min, max),
        nullable: (1, 0),
        tag: Some(tag),
    }
}

/// The response header: a correlation id, then (header v1) tagged fields,
/// none of which are known.
pub(super) const RESPONSE_HEADER: &[Field] = &[field("correlation_id", Ty::I32, 0, MAX)];

// ApiVersions response.

const API_VERSION: &[Field] = &[
    field("api_key", Ty::I16, 0, MAX),
    field("min_version", Ty::I16, 0, MAX),
    field("max_version", Ty::I16, 0, MAX),
];

const SUPPORTED_FEATURE_KEY: &[Field] = &[
    field("name", Ty::String, 3, MAX),
    field("min_version", Ty::I16, 3, MAX),
    field("max_version", Ty::I16, 3, MAX),
];

const FINALIZED_FEATURE_KEY: &[Field] = &[
    field("name", Ty::String, 3, MAX),
    field("max_version_level", Ty::I16, 3, MAX),
    field("min_version_level", Ty::I16, 3, MAX),
];

const API_VERSIONS_RESPONSE: &[Field] = &[
    field("error_code", Ty::I16, 0, MAX),
    field("api_keys", Ty::Array(&Ty::Struct(API_VERSION)), 0, MAX),
    field("throttle_time_ms", Ty::I32, 1, MAX),
    tagged(
        0,
        "supported_features",
        Ty::Array(&Ty::Struct(SUPPORTED_FEATURE_KEY)),
        3,
        MAX,
    ),
    tagged(1, "finalized_features_epoch", Ty::I64, 3, MAX),
    tagged(
        2,
        "finalized_features",
        Ty::Array(&Ty::Struct(FINALIZED_FEATURE_KEY)),
        3,
        MAX,
    ),
    tagged(3, "zk_migration_ready", Ty::Bool, 3, MAX),
];

// Metadata response.

const METADATA_RESPONSE_BROKER: &[Field] = &[
    field("node_id", Ty::I32, 0, MAX),
    field("host", Ty::String, 0, MAX),
    field("port", Ty::I32, 0, MAX),
    nullable("rack", Ty::String, 1, MAX),
];

const METADATA_RESPONSE_PARTITION: &[Field] = &[
    field("error_code", Ty::I16, 0, MAX),
    field("partition_index", Ty::I32, 0, MAX),
    field("leader_id", Ty::I32, 0, MAX),
    field("leader_epoch", Ty::I32, 7, MAX),
    field("replica_nodes", Ty::Array(&Ty::I32), 0, MAX),
    field("isr_nodes", Ty::Array(&Ty::I32), 0, MAX),
    field("offline_replicas", Ty::Array(&Ty::I32), 5, MAX),
];

const METADATA_RESPONSE_TOPIC: &[Field] = &[
    field("error_code", Ty::I16, 0, MAX),
    nullable("name", Ty::String, 0, MAX),
    field("topic_id", Ty::Uuid, 10, MAX),
    field("is_internal", Ty::Bool, 1, MAX),
    field(
        "partitions",
        Ty::Array(&Ty::Struct(METADATA_RESPONSE_PARTITION)),
        0,
        MAX,
    ),
    field("topic_authorized_operations", Ty::I32, 8, MAX),
];

const METADATA_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 3, MAX),
    field(
        "brokers",
        Ty::Array(&Ty::Struct(METADATA_RESPONSE_BROKER)),
        0,
        MAX,
    ),
    nullable("cluster_id", Ty::String, 2, MAX),
    field("controller_id", Ty::I32, 1, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(METADATA_RESPONSE_TOPIC)),
        0,
        MAX,
    ),
    field("cluster_authorized_operations", Ty::I32, 8, 10),
    field("error_code", Ty::I16, 13, MAX),
];

// Produce response.

const BATCH_INDEX_AND_ERROR_MESSAGE: &[Field] = &[
    field("batch_index", Ty::I32, 8, MAX),
    nullable("batch_index_error_message", Ty::String, 8, MAX),
];

const LEADER_ID_AND_EPOCH: &[Field] = &[
    field("leader_id", Ty::I32, 10, MAX),
    field("leader_epoch", Ty::I32, 10, MAX),
];

const PARTITION_PRODUCE_RESPONSE: &[Field] = &[
    field("index", Ty::I32, 3, MAX),
    field("error_code", Ty::I16, 3, MAX),
    field("base_offset", Ty::I64, 3, MAX),
    field("log_append_time_ms", Ty::I64, 3, MAX),
    field("log_start_offset", Ty::I64, 5, MAX),
    field(
        "record_errors",
        Ty::Array(&Ty::Struct(BATCH_INDEX_AND_ERROR_MESSAGE)),
        8,
        MAX,
    ),
    nullable("error_message", Ty::String, 8, MAX),
    tagged(
        0,
        "current_leader",
        Ty::Struct(LEADER_ID_AND_EPOCH),
        10,
        MAX,
    ),
];

const TOPIC_PRODUCE_RESPONSE: &[Field] = &[
    field("name", Ty::String, 3, 12),
    field("topic_id", Ty::Uuid, 13, MAX),
    field(
        "partition_responses",
        Ty::Array(&Ty::Struct(PARTITION_PRODUCE_RESPONSE)),
        3,
        MAX,
    ),
];

const NODE_ENDPOINT: &[Field] = &[
    field("node_id", Ty::I32, 10, MAX),
    field("host", Ty::String, 10, MAX),
    field("port", Ty::I32, 10, MAX),
    nullable("rack", Ty::String, 10, MAX),
];

const PRODUCE_RESPONSE: &[Field] = &[
    field(
        "responses",
        Ty::Array(&Ty::Struct(TOPIC_PRODUCE_RESPONSE)),
        3,
        MAX,
    ),
    field("throttle_time_ms", Ty::I32, 3, MAX),
    tagged(
        0,
        "node_endpoints",
        Ty::Array(&Ty::Struct(NODE_ENDPOINT)),
        10,
        MAX,
    ),
];

// Fetch response.

const ABORTED_TRANSACTION: &[Field] = &[
    field("producer_id", Ty::I64, 4, MAX),
    field("first_offset", Ty::I64, 4, MAX),
];

const EPOCH_END_OFFSET: &[Field] = &[
    field("epoch", Ty::I32, 12, MAX),
    field("end_offset", Ty::I64, 12, MAX),
];

const FETCH_LEADER_ID_AND_EPOCH: &[Field] = &[
    field("leader_id", Ty::I32, 12, MAX),
    field("leader_epoch", Ty::I32, 12, MAX),
];

const SNAPSHOT_ID: &[Field] = &[
    field("end_offset", Ty::I64, 4, MAX),
    field("epoch", Ty::I32, 4, MAX),
];

const PARTITION_DATA: &[Field] = &[
    field("partition_index", Ty::I32, 4, MAX),
    field("error_code", Ty::I16, 4, MAX),
    field("high_watermark", Ty::I64, 4, MAX),
    field("last_stable_offset", Ty::I64, 4, MAX),
    field("log_start_offset", Ty::I64, 5, MAX),
    nullable(
        "aborted_transactions",
        Ty::Array(&Ty::Struct(ABORTED_TRANSACTION)),
        4,
        MAX,
    ),
    field("preferred_read_replica", Ty::I32, 11, MAX),
    nullable("records", Ty::Records, 4, MAX),
    tagged(0, "diverging_epoch", Ty::Struct(EPOCH_END_OFFSET), 12, MAX),
    tagged(
        1,
        "current_leader",
        Ty::Struct(FETCH_LEADER_ID_AND_EPOCH),
        12,
        MAX,
    ),
    tagged(2, "snapshot_id", Ty::Struct(SNAPSHOT_ID), 12, MAX),
];

const FETCHABLE_TOPIC_RESPONSE: &[Field] = &[
    field("topic", Ty::String, 4, 12),
    field("topic_id", Ty::Uuid, 13, MAX),
    field("partitions", Ty::Array(&Ty::Struct(PARTITION_DATA)), 4, MAX),
];

const FETCH_NODE_ENDPOINT: &[Field] = &[
    field("node_id", Ty::I32, 16, MAX),
    field("host", Ty::String, 16, MAX),
    field("port", Ty::I32, 16, MAX),
    nullable("rack", Ty::String, 16, MAX),
];

const FETCH_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 4, MAX),
    field("error_code", Ty::I16, 7, MAX),
    field("session_id", Ty::I32, 7, MAX),
    field(
        "responses",
        Ty::Array(&Ty::Struct(FETCHABLE_TOPIC_RESPONSE)),
        4,
        MAX,
    ),
    tagged(
        0,
        "node_endpoints",
        Ty::Array(&Ty::Struct(FETCH_NODE_ENDPOINT)),
        16,
        MAX,
    ),
];

// ListOffsets response.

const LIST_OFFSETS_PARTITION_RESPONSE: &[Field] = &[
    field("partition_index", Ty::I32, 1, MAX),
    field("error_code", Ty::I16, 1, MAX),
    field("timestamp", Ty::I64, 1, MAX),
    field("offset", Ty::I64, 1, MAX),
    field("leader_epoch", Ty::I32, 4, MAX),
];

const LIST_OFFSETS_TOPIC_RESPONSE: &[Field] = &[
    field("name", Ty::String, 1, MAX),
    field(
        "partitions",
        Ty::Array(&Ty::Struct(LIST_OFFSETS_PARTITION_RESPONSE)),
        1,
        MAX,
    ),
];

const LIST_OFFSETS_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 2, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(LIST_OFFSETS_TOPIC_RESPONSE)),
        1,
        MAX,
    ),
];

// CreateTopics response.

const CREATABLE_TOPIC_CONFIGS: &[Field] = &[
    field("name", Ty::String, 5, MAX),
    nullable("value", Ty::String, 5, MAX),
    field("read_only", Ty::Bool, 5, MAX),
    field("config_source", Ty::I8, 5, MAX),
    field("is_sensitive", Ty::Bool, 5, MAX),
];

const CREATABLE_TOPIC_RESULT: &[Field] = &[
    field("name", Ty::String, 2, MAX),
    field("topic_id", Ty::Uuid, 7, MAX),
    field("error_code", Ty::I16, 2, MAX),
    nullable("error_message", Ty::String, 2, MAX),
    field("num_partitions", Ty::I32, 5, MAX),
    field("replication_factor", Ty::I16, 5, MAX),
    nullable(
        "configs",
        Ty::Array(&Ty::Struct(CREATABLE_TOPIC_CONFIGS)),
        5,
        MAX,
    ),
    tagged(0, "topic_config_error_code", Ty::I16, 5, MAX),
];

const CREATE_TOPICS_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 2, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(CREATABLE_TOPIC_RESULT)),
        2,
        MAX,
    ),
];

// DeleteTopics response.

const DELETABLE_TOPIC_RESULT: &[Field] = &[
    nullable("name", Ty::String, 1, MAX),
    field("topic_id", Ty::Uuid, 6, MAX),
    field("error_code", Ty::I16, 1, MAX),
    nullable("error_message", Ty::String, 5, MAX),
];

const DELETE_TOPICS_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 1, MAX),
    field(
        "responses",
        Ty::Array(&Ty::Struct(DELETABLE_TOPIC_RESULT)),
        1,
        MAX,
    ),
];

// InitProducerId response.

const INIT_PRODUCER_ID_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 0, MAX),
    field("error_code", Ty::I16, 0, MAX),
    field("producer_id", Ty::I64, 0, MAX),
    field("producer_epoch", Ty::I16, 0, MAX),
    field("ongoing_txn_producer_id", Ty::I64, 6, MAX),
    field("ongoing_txn_producer_epoch", Ty::I16, 6, MAX),
];

// FindCoordinator response.

const COORDINATOR: &[Field] = &[
    field("key", Ty::String, 4, MAX),
    field("node_id", Ty::I32, 4, MAX),
    field("host", Ty::String, 4, MAX),
    field("port", Ty::I32, 4, MAX),
    field("error_code", Ty::I16, 4, MAX),
    nullable("error_message", Ty::String, 4, MAX),
];

const FIND_COORDINATOR_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 1, MAX),
    field("error_code", Ty::I16, 0, 3),
    nullable("error_message", Ty::String, 1, 3),
    field("node_id", Ty::I32, 0, 3),
    field("host", Ty::String, 0, 3),
    field("port", Ty::I32, 0, 3),
    field("coordinators", Ty::Array(&Ty::Struct(COORDINATOR)), 4, MAX),
];

// OffsetFetch response.

const OFFSET_FETCH_RESPONSE_PARTITION: &[Field] = &[
    field("partition_index", Ty::I32, 1, 7),
    field("committed_offset", Ty::I64, 1, 7),
    field("committed_leader_epoch", Ty::I32, 5, 7),
    nullable("metadata", Ty::String, 1, 7),
    field("error_code", Ty::I16, 1, 7),
];

const OFFSET_FETCH_RESPONSE_TOPIC: &[Field] = &[
    field("name", Ty::String, 1, 7),
    field(
        "partitions",
        Ty::Array(&Ty::Struct(OFFSET_FETCH_RESPONSE_PARTITION)),
        1,
        7,
    ),
];

const OFFSET_FETCH_RESPONSE_PARTITIONS: &[Field] = &[
    field("partition_index", Ty::I32, 8, MAX),
    field("committed_offset", Ty::I64, 8, MAX),
    field("committed_leader_epoch", Ty::I32, 8, MAX),
    nullable("metadata", Ty::String, 8, MAX),
    field("error_code", Ty::I16, 8, MAX),
];

const OFFSET_FETCH_RESPONSE_TOPICS: &[Field] = &[
    field("name", Ty::String, 8, 9),
    field("topic_id", Ty::Uuid, 10, MAX),
    field(
        "partitions",
        Ty::Array(&Ty::Struct(OFFSET_FETCH_RESPONSE_PARTITIONS)),
        8,
        MAX,
    ),
];

const OFFSET_FETCH_RESPONSE_GROUP: &[Field] = &[
    field("group_id", Ty::String, 8, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(OFFSET_FETCH_RESPONSE_TOPICS)),
        8,
        MAX,
    ),
    field("error_code", Ty::I16, 8, MAX),
];

const OFFSET_FETCH_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 3, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(OFFSET_FETCH_RESPONSE_TOPIC)),
        1,
        7,
    ),
    field("error_code", Ty::I16, 2, 7),
    field(
        "groups",
        Ty::Array(&Ty::Struct(OFFSET_FETCH_RESPONSE_GROUP)),
        8,
        MAX,
    ),
];

// OffsetCommit response.

const OFFSET_COMMIT_RESPONSE_PARTITION: &[Field] = &[
    field("partition_index", Ty::I32, 2, MAX),
    field("error_code", Ty::I16, 2, MAX),
];

const OFFSET_COMMIT_RESPONSE_TOPIC: &[Field] = &[
    field("name", Ty::String, 2, 9),
    field("topic_id", Ty::Uuid, 10, MAX),
    field(
        "partitions",
        Ty::Array(&Ty::Struct(OFFSET_COMMIT_RESPONSE_PARTITION)),
        2,
        MAX,
    ),
];

const OFFSET_COMMIT_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 3, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(OFFSET_COMMIT_RESPONSE_TOPIC)),
        2,
        MAX,
    ),
];

// AddPartitionsToTxn response.

const ADD_PARTITIONS_TO_TXN_PARTITION_RESULT: &[Field] = &[
    field("partition_index", Ty::I32, 0, MAX),
    field("partition_error_code", Ty::I16, 0, MAX),
];

const ADD_PARTITIONS_TO_TXN_TOPIC_RESULT: &[Field] = &[
    field("name", Ty::String, 0, MAX),
    field(
        "results_by_partition",
        Ty::Array(&Ty::Struct(ADD_PARTITIONS_TO_TXN_PARTITION_RESULT)),
        0,
        MAX,
    ),
];

const ADD_PARTITIONS_TO_TXN_RESULT: &[Field] = &[
    field("transactional_id", Ty::String, 4, MAX),
    field(
        "topic_results",
        Ty::Array(&Ty::Struct(ADD_PARTITIONS_TO_TXN_TOPIC_RESULT)),
        4,
        MAX,
    ),
];

const ADD_PARTITIONS_TO_TXN_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 0, MAX),
    field("error_code", Ty::I16, 4, MAX),
    field(
        "results_by_transaction",
        Ty::Array(&Ty::Struct(ADD_PARTITIONS_TO_TXN_RESULT)),
        4,
        MAX,
    ),
    field(
        "results_by_topic_v3_and_below",
        Ty::Array(&Ty::Struct(ADD_PARTITIONS_TO_TXN_TOPIC_RESULT)),
        0,
        3,
    ),
];

// AddOffsetsToTxn response.

const ADD_OFFSETS_TO_TXN_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 0, MAX),
    field("error_code", Ty::I16, 0, MAX),
];

// TxnOffsetCommit response.

const TXN_OFFSET_COMMIT_RESPONSE_PARTITION: &[Field] = &[
    field("partition_index", Ty::I32, 0, MAX),
    field("error_code", Ty::I16, 0, MAX),
];

const TXN_OFFSET_COMMIT_RESPONSE_TOPIC: &[Field] = &[
    field("name", Ty::String, 0, MAX),
    field(
        "partitions",
        Ty::Array(&Ty::Struct(TXN_OFFSET_COMMIT_RESPONSE_PARTITION)),
        0,
        MAX,
    ),
];

const TXN_OFFSET_COMMIT_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 0, MAX),
    field(
        "topics",
        Ty::Array(&Ty::Struct(TXN_OFFSET_COMMIT_RESPONSE_TOPIC)),
        0,
        MAX,
    ),
];

// EndTxn response.

const END_TXN_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 0, MAX),
    field("error_code", Ty::I16, 0, MAX),
    field("producer_id", Ty::I64, 5, MAX),
    field("producer_epoch", Ty::I16, 5, MAX),
];

// SaslHandshake response.

const SASL_HANDSHAKE_RESPONSE: &[Field] = &[
    field("error_code", Ty::I16, 0, MAX),
    field("mechanisms", Ty::Array(&Ty::String), 0, MAX),
];

// SaslAuthenticate response.

const SASL_AUTHENTICATE_RESPONSE: &[Field] = &[
    field("error_code", Ty::I16, 0, MAX),
    nullable("error_message", Ty::String, 0, MAX),
    field("auth_bytes", Ty::Bytes, 0, MAX),
    field("session_lifetime_ms", Ty::I64, 1, MAX),
];

// DescribeCluster response.

const DESCRIBE_CLUSTER_BROKER: &[Field] = &[
    field("broker_id", Ty::I32, 0, MAX),
    field("host", Ty::String, 0, MAX),
    field("port", Ty::I32, 0, MAX),
    nullable("rack", Ty::String, 0, MAX),
    field("is_fenced", Ty::Bool, 2, MAX),
];

const DESCRIBE_CLUSTER_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 0, MAX),
    field("error_code", Ty::I16, 0, MAX),
    nullable("error_message", Ty::String, 0, MAX),
    field("endpoint_type", Ty::I8, 1, MAX),
    field("cluster_id", Ty::String, 0, MAX),
    field("controller_id", Ty::I32, 0, MAX),
    field(
        "brokers",
        Ty::Array(&Ty::Struct(DESCRIBE_CLUSTER_BROKER)),
        0,
        MAX,
    ),
    field("cluster_authorized_operations", Ty::I32, 0, MAX),
];

// JoinGroup response.

const JOIN_GROUP_RESPONSE_MEMBER: &[Field] = &[
    field("member_id", Ty::String, 0, MAX),
    nullable("group_instance_id", Ty::String, 5, MAX),
    field("metadata", Ty::Bytes, 0, MAX),
];

const JOIN_GROUP_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 2, MAX),
    field("error_code", Ty::I16, 0, MAX),
    field("generation_id", Ty::I32, 0, MAX),
    nullable("protocol_type", Ty::String, 7, MAX),
    nullable("protocol_name", Ty::String, 0, MAX),
    field("leader", Ty::String, 0, MAX),
    field("skip_assignment", Ty::Bool, 9, MAX),
    field("member_id", Ty::String, 0, MAX),
    field(
        "members",
        Ty::Array(&Ty::Struct(JOIN_GROUP_RESPONSE_MEMBER)),
        0,
        MAX,
    ),
];

// SyncGroup response.

const SYNC_GROUP_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 1, MAX),
    field("error_code", Ty::I16, 0, MAX),
    nullable("protocol_type", Ty::String, 5, MAX),
    nullable("protocol_name", Ty::String, 5, MAX),
    field("assignment", Ty::Bytes, 0, MAX),
];

// Heartbeat response.

const HEARTBEAT_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 1, MAX),
    field("error_code", Ty::I16, 0, MAX),
];

// LeaveGroup response.

const MEMBER_RESPONSE: &[Field] = &[
    field("member_id", Ty::String, 3, MAX),
    nullable("group_instance_id", Ty::String, 3, MAX),
    field("error_code", Ty::I16, 3, MAX),
];

const LEAVE_GROUP_RESPONSE: &[Field] = &[
    field("throttle_time_ms", Ty::I32, 1, MAX),
    field("error_code", Ty::I16, 0, MAX),
    field("members", Ty::Array(&Ty::Struct(MEMBER_RESPONSE)), 3, MAX),
];

/// Every guarded response body.
pub(super) static MESSAGES: &[Message] = &[
    Message {
        api: ApiKey::ApiVersions,
        name: "ApiVersions",
        min: 0,
        max: 4,
        flexible: 3,
        fields: API_VERSIONS_RESPONSE,
    },
    Message {
        api: ApiKey::Metadata,
        name: "Metadata",
        min: 0,
        max: 13,
        flexible: 9,
        fields: METADATA_RESPONSE,
    },
    Message {
        api: ApiKey::Produce,
        name: "Produce",
        min: 3,
        max: 13,
        flexible: 9,
        fields: PRODUCE_RESPONSE,
    },
    Message {
        api: ApiKey::Fetch,
        name: "Fetch",
        min: 4,
        max: 18,
        flexible: 12,
        fields: FETCH_RESPONSE,
    },
    Message {
        api: ApiKey::ListOffsets,
        name: "ListOffsets",
        min: 1,
        max: 10,
        flexible: 6,
        fields: LIST_OFFSETS_RESPONSE,
    },
    Message {
        api: ApiKey::CreateTopics,
        name: "CreateTopics",
        min: 2,
        max: 7,
        flexible: 5,
        fields: CREATE_TOPICS_RESPONSE,
    },
    Message {
        api: ApiKey::DeleteTopics,
        name: "DeleteTopics",
        min: 1,
        max: 6,
        flexible: 4,
        fields: DELETE_TOPICS_RESPONSE,
    },
    Message {
        api: ApiKey::InitProducerId,
        name: "InitProducerId",
        min: 0,
        max: 6,
        flexible: 2,
        fields: INIT_PRODUCER_ID_RESPONSE,
    },
    Message {
        api: ApiKey::FindCoordinator,
        name: "FindCoordinator",
        min: 0,
        max: 6,
        flexible: 3,
        fields: FIND_COORDINATOR_RESPONSE,
    },
    Message {
        api: ApiKey::OffsetFetch,
        name: "OffsetFetch",
        min: 1,
        max: 10,
        flexible: 6,
        fields: OFFSET_FETCH_RESPONSE,
    },
    Message {
        api: ApiKey::OffsetCommit,
        name: "OffsetCommit",
        min: 2,
        max: 10,
        flexible: 8,
        fields: OFFSET_COMMIT_RESPONSE,
    },
    Message {
        api: ApiKey::AddPartitionsToTxn,
        name: "AddPartitionsToTxn",
        min: 0,
        max: 5,
        flexible: 3,
        fields: ADD_PARTITIONS_TO_TXN_RESPONSE,
    },
    Message {
        api: ApiKey::AddOffsetsToTxn,
        name: "AddOffsetsToTxn",
        min: 0,
        max: 4,
        flexible: 3,
        fields: ADD_OFFSETS_TO_TXN_RESPONSE,
    },
    Message {
        api: ApiKey::TxnOffsetCommit,
        name: "TxnOffsetCommit",
        min: 0,
        max: 5,
        flexible: 3,
        fields: TXN_OFFSET_COMMIT_RESPONSE,
    },
    Message {
        api: ApiKey::EndTxn,
        name: "EndTxn",
        min: 0,
        max: 5,
        flexible: 3,
        fields: END_TXN_RESPONSE,
    },
    Message {
        api: ApiKey::SaslHandshake,
        name: "SaslHandshake",
        min: 0,
        max: 1,
        flexible: NEVER,
        fields: SASL_HANDSHAKE_RESPONSE,
    },
    Message {
        api: ApiKey::SaslAuthenticate,
        name: "SaslAuthenticate",
        min: 0,
        max: 2,
        flexible: 2,
        fields: SASL_AUTHENTICATE_RESPONSE,
    },
    Message {
        api: ApiKey::DescribeCluster,
        name: "DescribeCluster",
        min: 0,
        max: 2,
        flexible: 0,
        fields: DESCRIBE_CLUSTER_RESPONSE,
    },
    Message {
        api: ApiKey::JoinGroup,
        name: "JoinGroup",
        min: 0,
        max: 9,
        flexible: 6,
        fields: JOIN_GROUP_RESPONSE,
    },
    Message {
        api: ApiKey::SyncGroup,
        name: "SyncGroup",
        min: 0,
        max: 5,
        flexible: 4,
        fields: SYNC_GROUP_RESPONSE,
    },
    Message {
        api: ApiKey::Heartbeat,
        name: "Heartbeat",
        min: 0,
        max: 4,
        flexible: 4,
        fields: HEARTBEAT_RESPONSE,
    },
    Message {
        api: ApiKey::LeaveGroup,
        name: "LeaveGroup",
        min: 0,
        max: 5,
        flexible: 4,
        fields: LEAVE_GROUP_RESPONSE,
    },
];
