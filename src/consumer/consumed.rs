//! [`ConsumedRecord`]: one record as a reader hands it to the application.

use bytes::Bytes;

use crate::record::{Header, Topic};
use crate::record_batch::TimestampType;

/// A record read from a partition.
///
/// Keys, values and header values share the fetched bytes (or one
/// decompressed buffer per batch) instead of being copied, so a record the
/// application keeps also keeps that buffer alive; copy what you keep for
/// long (`Bytes::copy_from_slice`) if that matters.
///
/// ```
/// # fn show(record: &smartkafka::consumer::ConsumedRecord) {
/// println!(
///     "{}-{}@{}: {:?}",
///     record.topic, record.partition, record.offset, record.value
/// );
/// let trace = record.headers.iter().find(|h| h.key == "trace-id");
/// # let _ = trace;
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumedRecord {
    /// The topic: one shared name for the records of a partition (it
    /// dereferences to `&str` and compares with strings).
    pub topic: Topic,
    /// The partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch; what it means is in
    /// `timestamp_type`.
    pub timestamp: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key; `None` for a keyless record.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// The headers, in order. A header name that is not UTF-8 is converted
    /// lossily.
    pub headers: Vec<Header>,
    /// The partition leader epoch the batch was written in, when the broker
    /// stamped one.
    pub leader_epoch: Option<i32>,
}

#[cfg(test)]
impl ConsumedRecord {
    /// A record with no key, value or headers, for tests.
    pub(crate) fn bare(topic: &str, partition: i32, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: topic.into(),
            partition,
            offset,
            timestamp: 0,
            timestamp_type: crate::record_batch::TimestampType::CreateTime,
            key: None,
            value: None,
            headers: Vec::new(),
            leader_epoch: None,
        }
    }
}
