//! What a consumer group member hands to a transactional producer: its
//! group membership ([KIP-447]) and the offsets to commit. Shared by the
//! consumer, which makes them, and the producer's engine, which sends them,
//! so neither imports the other; public as `smartkafka::consumer::*`.
//!
//! [KIP-447]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-447%3A+Producer+scalability+for+exactly+once+semantics

/// The group a consumer belongs to, as `TxnOffsetCommit` needs it: with a
/// generation and member id the group coordinator fences zombie consumers
/// (KIP-447); without them (`ConsumerGroupMetadata::new`) offsets are
/// committed for the group alone, as before KIP-447.
///
/// ```
/// use smartkafka::consumer::ConsumerGroupMetadata;
/// let group = ConsumerGroupMetadata::new("billing");
/// assert_eq!(group.group_id, "billing");
/// assert_eq!(group.generation_id, -1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The consumer group.
    pub group_id: String,
    /// The group generation, or -1 when unknown.
    pub generation_id: i32,
    /// The member id the coordinator assigned, or empty when unknown.
    pub member_id: String,
    /// The static membership id (KIP-345), if any.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata for `group_id` with no generation or member (the group is
    /// not fenced by generation).
    pub fn new(group_id: impl Into<String>) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// One partition's position to commit: the offset of the *next* record to
/// read (the last processed offset plus one), as Kafka commits it.
///
/// ```
/// use smartkafka::consumer::OffsetToCommit;
/// let next = OffsetToCommit::new("input", 3, 42);
/// assert_eq!((next.partition, next.offset), (3, 42));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
    /// Free-form metadata stored with the offset.
    pub metadata: Option<String>,
}

impl OffsetToCommit {
    /// The position `offset` in `topic`/`partition`, without metadata.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> OffsetToCommit {
        OffsetToCommit {
            topic: topic.into(),
            partition,
            offset,
            metadata: None,
        }
    }
}
