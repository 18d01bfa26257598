//! The consumer protocol: the subscription a group member sends in its
//! JoinGroup metadata and the assignment the leader hands it back in
//! SyncGroup, both opaque bytes to the coordinator.
//!
//! The encoding is the one every Kafka consumer uses (the Java client's
//! `ConsumerProtocol`, librdkafka), so members of all three kinds can share a
//! group. Both messages start with an `int16` version and use the classic,
//! non-flexible encoding: `int32` array counts, `int16` string lengths,
//! `int32` byte lengths, `-1` for null.
//!
//! ```text
//! Subscription (v3)             Assignment (v3; v0 to v3 share one layout)
//!   version          int16        version             int16
//!   topics           [string]     assigned_partitions [topic string,
//!   user_data        bytes?                            partitions [int32]]
//!   owned_partitions [topic string,  user_data        bytes?
//!                     partitions [int32]]
//!   generation_id    int32          (v2+)
//!   rack_id          string?        (v3+)
//! ```
//!
//! Subscription v0 carries only the topics and user data, v1 adds the owned
//! partitions, v2 the generation, v3 the rack. [`Subscription::encode`] and
//! [`Assignment::encode`] write version 3, as the Java 3.x client does.
//!
//! # Decoding untrusted bytes
//!
//! A subscription comes from another member through the coordinator and an
//! assignment from the group leader: neither is trusted. The decoders are
//! bounded hand parsers that never panic and never allocate more than the
//! input justifies:
//!
//! * every array count is checked against the bytes left (divided by the
//!   smallest encoding of one element) before anything is reserved;
//! * string and byte lengths must fit in the bytes left; a negative length
//!   other than the null marker `-1`, or a null where the field is not
//!   nullable, is refused;
//! * a topic name in a partition list may be at most 249 bytes, Kafka's
//!   limit on topic names. Partition lists are flattened into one
//!   `(topic, partition)` pair per partition, each with its own copy of the
//!   name, so this bounds the decoded size to a fixed multiple of the
//!   input (at most 249 bytes of name and one pair for every 4 input bytes);
//! * zero bytes are an empty assignment (what the coordinator sends a
//!   member the leader gave nothing), but no subscription;
//! * a negative version is refused. A version above 3 is read as version 3
//!   and what follows the version-3 fields is ignored: later versions may
//!   only append fields. Trailing bytes after a known version are ignored
//!   too, as the Java client does.
//!
//! Every refusal is an [`ErrorKind::Protocol`](crate::ErrorKind::Protocol)
//! error naming the field at fault.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;

use crate::error::{Error, Result};

/// The version [`Subscription::encode`] writes: the highest the Java 3.x
/// client writes, carrying the owned partitions, the generation and the
/// rack.
pub const SUBSCRIPTION_VERSION: i16 = 3;

/// The version [`Assignment::encode`] writes, the Java 3.x client's. Every
/// assignment version has the same layout.
pub const ASSIGNMENT_VERSION: i16 = 3;

/// The longest topic name a partition list may carry: Kafka's limit on
/// topic names. Longer names are refused when decoding.
pub const MAX_PARTITION_TOPIC_LEN: usize = crate::topic_name::MAX_LEN;

/// The generation a subscription carries when it has none (versions 0 and 1,
/// or a member that never joined).
pub const NO_GENERATION: i32 = -1;

/// What a member tells the group when it joins: the topics it subscribes
/// to and, for cooperative rebalancing, the partitions it owns now.
///
/// ```
/// use smartkafka::protocol::consumer_protocol::Subscription;
///
/// let subscription = Subscription {
///     topics: vec!["orders".to_string(), "payments".to_string()],
///     owned_partitions: vec![("orders".to_string(), 0), ("orders".to_string(), 2)],
///     generation_id: 7,
///     rack_id: Some("eu-west-1a".to_string()),
///     ..Subscription::default()
/// };
/// let bytes = subscription.encode();
/// assert_eq!(&bytes[..2], &[0, 3]); // version 3
/// assert_eq!(Subscription::decode(&bytes)?, subscription);
///
/// // Bytes from another member are untrusted: a forged count is refused.
/// let forged = [0, 0, 0x7f, 0xff, 0xff, 0xff];
/// assert!(Subscription::decode(&forged).is_err());
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    /// Opaque data for the assignor, `None` when absent.
    pub user_data: Option<Bytes>,
    /// The partitions the member owns now, one `(topic, partition)` pair
    /// each (version 1 and later). Encoded grouped by topic.
    pub owned_partitions: Vec<(String, i32)>,
    /// The generation in which the member got its owned partitions,
    /// [`NO_GENERATION`] (`-1`) when unknown (version 2 and later).
    pub generation_id: i32,
    /// The rack the member runs in, for rack-aware assignment (version 3).
    pub rack_id: Option<String>,
}

impl Default for Subscription {
    /// No topics, no user data, nothing owned, no generation, no rack.
    fn default() -> Subscription {
        Subscription {
            topics: Vec::new(),
            user_data: None,
            owned_partitions: Vec::new(),
            generation_id: NO_GENERATION,
            rack_id: None,
        }
    }
}

/// What the group leader gives a member: the partitions it is to consume.
///
/// ```
/// use smartkafka::protocol::consumer_protocol::Assignment;
///
/// let assignment = Assignment {
///     partitions: vec![("orders".to_string(), 1), ("payments".to_string(), 0)],
///     user_data: None,
/// };
/// let decoded = Assignment::decode(&assignment.encode())?;
/// assert_eq!(decoded, assignment);
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The assigned partitions, one `(topic, partition)` pair each. Encoded
    /// grouped by topic.
    pub partitions: Vec<(String, i32)>,
    /// Opaque data from the assignor, `None` when absent.
    pub user_data: Option<Bytes>,
}

impl Subscription {
    /// The subscription encoded at version 3 ([`SUBSCRIPTION_VERSION`]).
    ///
    /// Owned partitions are written grouped by topic, topics in the order
    /// of their first appearance and partitions in their order within it,
    /// so decoding gives back `owned_partitions` unchanged when each
    /// topic's partitions are already contiguous. A string longer than
    /// `i16::MAX` bytes (no topic name or rack id is) is cut to fit, at a
    /// character boundary.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(SUBSCRIPTION_VERSION);
        put_array_len(&mut out, self.topics.len());
        for topic in self.topics.iter().take(MAX_ARRAY) {
            put_string(&mut out, topic);
        }
        put_nullable_bytes(&mut out, self.user_data.as_deref());
        put_partitions(&mut out, &self.owned_partitions);
        out.put_i32(self.generation_id);
        match &self.rack_id {
            Some(rack) => put_string(&mut out, rack),
            None => out.put_i16(-1),
        }
        out.freeze()
    }

    /// Decodes a subscription of any version from untrusted bytes.
    ///
    /// Fields the version does not carry take their defaults: no owned
    /// partitions before version 1, [`NO_GENERATION`] before version 2, no
    /// rack before version 3.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`](crate::ErrorKind::Protocol), naming the
    /// field, for truncated input, a negative version, a length or count
    /// the bytes cannot back, a negative length other than null, a null
    /// where none is allowed, invalid UTF-8, or a partition-list topic name
    /// over [`MAX_PARTITION_TOPIC_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Subscription> {
        let mut r = Reader::new(bytes, "subscription");
        let version = r.version()?;
        let count = r.array_len("topics", MIN_STRING)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(r.string("topics", usize::MAX)?);
        }
        let user_data = r.nullable_bytes("user_data")?;
        let owned_partitions = if version >= 1 {
            r.partitions("owned_partitions")?
        } else {
            Vec::new()
        };
        let generation_id = if version >= 2 {
            r.i32("generation_id")?
        } else {
            NO_GENERATION
        };
        let rack_id = if version >= 3 {
            r.nullable_string("rack_id")?
        } else {
            None
        };
        Ok(Subscription {
            topics,
            user_data,
            owned_partitions,
            generation_id,
            rack_id,
        })
    }
}

impl Assignment {
    /// The assignment encoded at version 3 ([`ASSIGNMENT_VERSION`]).
    ///
    /// Partitions are written grouped by topic, topics in the order of
    /// their first appearance, as [`Subscription::encode`] writes owned
    /// partitions.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(ASSIGNMENT_VERSION);
        put_partitions(&mut out, &self.partitions);
        put_nullable_bytes(&mut out, self.user_data.as_deref());
        out.freeze()
    }

    /// Decodes an assignment of any version from untrusted bytes.
    ///
    /// Zero bytes decode to an empty assignment: the coordinator sends a
    /// member zero bytes when the leader's SyncGroup request gave it no
    /// assignment.
    ///
    /// # Errors
    ///
    /// As [`Subscription::decode`]: an
    /// [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) error naming
    /// the field at fault.
    pub fn decode(bytes: &[u8]) -> Result<Assignment> {
        if bytes.is_empty() {
            return Ok(Assignment::default());
        }
        let mut r = Reader::new(bytes, "assignment");
        r.version()?;
        let partitions = r.partitions("assigned_partitions")?;
        let user_data = r.nullable_bytes("user_data")?;
        Ok(Assignment {
            partitions,
            user_data,
        })
    }
}

/// The largest array count the encoding can express.
const MAX_ARRAY: usize = i32::MAX as usize;
/// The smallest encoding of a string: its length.
const MIN_STRING: usize = 2;
/// The smallest encoding of a topic's partition list: a name and a count.
const MIN_TOPIC_PARTITIONS: usize = 2 + 4;
/// The encoding of one partition number.
const PARTITION_SIZE: usize = 4;

fn put_array_len(out: &mut BytesMut, len: usize) {
    out.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default()
}

fn put_string(out: &mut BytesMut, s: &str) {
    let s = truncated(s, i16::MAX as usize);
    out.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    out.put_slice(s.as_bytes());
}

fn put_nullable_bytes(out: &mut BytesMut, data: Option<&[u8]>) {
    match data {
        Some(data) => {
            let data = data.get(..data.len().min(MAX_ARRAY)).unwrap_or_default();
            put_array_len(out, data.len());
            out.put_slice(data);
        }
        None => out.put_i32(-1),
    }
}

/// `(topic, partition)` pairs as an array of (topic, [partition]) grouped
/// by topic, topics in order of first appearance.
fn put_partitions(out: &mut BytesMut, pairs: &[(String, i32)]) {
    let mut groups: IndexMap<&str, Vec<i32>> = IndexMap::new();
    for (topic, partition) in pairs {
        groups.entry(topic.as_str()).or_default().push(*partition);
    }
    put_array_len(out, groups.len());
    for (topic, partitions) in groups.iter().take(MAX_ARRAY) {
        put_string(out, topic);
        put_array_len(out, partitions.len());
        for partition in partitions.iter().take(MAX_ARRAY) {
            out.put_i32(*partition);
        }
    }
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Reader<'a> {
        Reader { buf, message }
    }

    fn error(&self, field: &str, what: impl std::fmt::Display) -> Error {
        Error::protocol(format!(
            "consumer protocol {} `{field}`: {what}",
            self.message
        ))
    }

    fn take(&mut self, field: &str, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(self.error(
                field,
                format_args!("needs {n} bytes, {} left", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let bytes = self.take(field, N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.error(field, "short read"))
    }

    fn i16(&mut self, field: &str) -> Result<i16> {
        self.array::<2>(field).map(i16::from_be_bytes)
    }

    fn i32(&mut self, field: &str) -> Result<i32> {
        self.array::<4>(field).map(i32::from_be_bytes)
    }

    fn version(&mut self) -> Result<i16> {
        let version = self.i16("version")?;
        if version < 0 {
            return Err(self.error("version", format_args!("negative version {version}")));
        }
        Ok(version)
    }

    /// A non-null array count whose elements, each at least `min_size`
    /// bytes, fit in the bytes left.
    fn array_len(&mut self, field: &str, min_size: usize) -> Result<usize> {
        let count = self.i32(field)?;
        if count < 0 {
            return Err(self.error(field, format_args!("array count {count}")));
        }
        let count = usize::try_from(count).map_err(|_| self.error(field, "array count"))?;
        let room = self.buf.len().checked_div(min_size).unwrap_or(usize::MAX);
        if count > room {
            return Err(self.error(
                field,
                format_args!("array of {count} elements in {} bytes left", self.buf.len()),
            ));
        }
        Ok(count)
    }

    /// The length prefix of a string: `None` for null.
    fn string_len(&mut self, field: &str) -> Result<Option<usize>> {
        let len = self.i16(field)?;
        match len {
            -1 => Ok(None),
            len if len < 0 => Err(self.error(field, format_args!("string length {len}"))),
            len => Ok(Some(usize::from(len.unsigned_abs()))),
        }
    }

    fn string_body(&mut self, field: &str, len: usize, max: usize) -> Result<String> {
        if len > max {
            return Err(self.error(
                field,
                format_args!("a topic name of {len} bytes, above the limit of {max}"),
            ));
        }
        let bytes = self.take(field, len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(field, format_args!("invalid UTF-8: {e}"))),
        }
    }

    /// A non-null string of at most `max` bytes.
    fn string(&mut self, field: &str, max: usize) -> Result<String> {
        match self.string_len(field)? {
            Some(len) => self.string_body(field, len, max),
            None => Err(self.error(field, "null string")),
        }
    }

    fn nullable_string(&mut self, field: &str) -> Result<Option<String>> {
        match self.string_len(field)? {
            Some(len) => self.string_body(field, len, usize::MAX).map(Some),
            None => Ok(None),
        }
    }

    fn nullable_bytes(&mut self, field: &str) -> Result<Option<Bytes>> {
        let len = self.i32(field)?;
        match len {
            -1 => Ok(None),
            len if len < 0 => Err(self.error(field, format_args!("bytes length {len}"))),
            len => {
                let len = usize::try_from(len).map_err(|_| self.error(field, "bytes length"))?;
                self.take(field, len)
                    .map(|b| Some(Bytes::copy_from_slice(b)))
            }
        }
    }

    /// An array of (topic, [partition]) flattened into pairs.
    fn partitions(&mut self, field: &str) -> Result<Vec<(String, i32)>> {
        let topics = self.array_len(field, MIN_TOPIC_PARTITIONS)?;
        let mut pairs = Vec::new();
        for _ in 0..topics {
            let topic = self.string(field, MAX_PARTITION_TOPIC_LEN)?;
            let count = self.array_len(field, PARTITION_SIZE)?;
            pairs.reserve(count);
            for _ in 0..count {
                pairs.push((topic.clone(), self.i32(field)?));
            }
        }
        Ok(pairs)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
        consumer_protocol_assignment, consumer_protocol_subscription,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use proptest::prelude::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn strb(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    /// kafka-protocol's encoding of `message` at `version`, with the
    /// version prefix the consumer protocol puts in front.
    fn prefixed<T: Encodable>(message: &T, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        message
            .encode(&mut buf, version)
            .expect("kafka-protocol encodes");
        buf.to_vec()
    }

    /// Our subscription as kafka-protocol's message, partitions grouped by
    /// topic in order of first appearance.
    fn to_kp_subscription(sub: &Subscription) -> ConsumerProtocolSubscription {
        let mut owned: Vec<consumer_protocol_subscription::TopicPartition> = Vec::new();
        for (topic, partition) in &sub.owned_partitions {
            match owned.iter_mut().find(|tp| tp.topic.0.as_str() == topic) {
                Some(tp) => tp.partitions.push(*partition),
                None => owned.push(
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(TopicName(strb(topic)))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        ConsumerProtocolSubscription::default()
            .with_topics(sub.topics.iter().map(|t| strb(t)).collect())
            .with_user_data(sub.user_data.clone())
            .with_owned_partitions(owned)
            .with_generation_id(sub.generation_id)
            .with_rack_id(sub.rack_id.as_deref().map(strb))
    }

    fn to_kp_assignment(a: &Assignment) -> ConsumerProtocolAssignment {
        let mut assigned: Vec<consumer_protocol_assignment::TopicPartition> = Vec::new();
        for (topic, partition) in &a.partitions {
            match assigned.iter_mut().find(|tp| tp.topic.0.as_str() == topic) {
                Some(tp) => tp.partitions.push(*partition),
                None => assigned.push(
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(TopicName(strb(topic)))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        ConsumerProtocolAssignment::default()
            .with_assigned_partitions(assigned)
            .with_user_data(a.user_data.clone())
    }

    fn sample_subscription() -> Subscription {
        Subscription {
            topics: vec![s("orders"), s("payments")],
            user_data: Some(Bytes::from_static(b"\x00\x01sticky")),
            owned_partitions: vec![(s("orders"), 0), (s("orders"), 3), (s("payments"), 1)],
            generation_id: 12,
            rack_id: Some(s("rack-a")),
        }
    }

    fn protocol_error(result: Result<impl std::fmt::Debug>, needle: &str) {
        let err = result.expect_err("refused");
        assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`");
    }

    #[test]
    fn subscription_layout_is_version_3_byte_for_byte() {
        let sub = Subscription {
            topics: vec![s("t")],
            user_data: None,
            owned_partitions: vec![(s("t"), 2)],
            generation_id: 5,
            rack_id: Some(s("r")),
        };
        let expected: &[u8] = &[
            0, 3, // version
            0, 0, 0, 1, 0, 1, b't', // topics
            0xff, 0xff, 0xff, 0xff, // null user data
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 2, // owned partitions
            0, 0, 0, 5, // generation
            0, 1, b'r', // rack
        ];
        assert_eq!(&sub.encode()[..], expected);
    }

    #[test]
    fn assignment_layout_is_version_3_byte_for_byte() {
        let a = Assignment {
            partitions: vec![(s("t"), 0), (s("t"), 1)],
            user_data: Some(Bytes::from_static(b"u")),
        };
        let expected: &[u8] = &[
            0, 3, // version
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, // partitions
            0, 0, 0, 1, b'u', // user data
        ];
        assert_eq!(&a.encode()[..], expected);
    }

    #[test]
    fn subscription_encoding_equals_kafka_protocol() {
        let sub = sample_subscription();
        assert_eq!(
            sub.encode().to_vec(),
            prefixed(&to_kp_subscription(&sub), 3)
        );
    }

    #[test]
    fn assignment_encoding_equals_kafka_protocol() {
        let a = Assignment {
            partitions: vec![(s("b"), 4), (s("a"), 0), (s("b"), 1)],
            user_data: None,
        };
        assert_eq!(a.encode().to_vec(), prefixed(&to_kp_assignment(&a), 3));
    }

    #[test]
    fn partitions_are_grouped_by_topic_in_first_appearance_order() {
        let a = Assignment {
            partitions: vec![(s("b"), 4), (s("a"), 0), (s("b"), 1)],
            user_data: None,
        };
        let decoded = Assignment::decode(&a.encode()).expect("decodes");
        assert_eq!(
            decoded.partitions,
            vec![(s("b"), 4), (s("b"), 1), (s("a"), 0)]
        );
    }

    #[test]
    fn decodes_every_kafka_protocol_subscription_version() {
        let sub = sample_subscription();
        let kp = to_kp_subscription(&sub);
        for version in 0..=3 {
            let decoded = Subscription::decode(&prefixed(&kp, version)).expect("decodes");
            let expected = Subscription {
                topics: sub.topics.clone(),
                user_data: sub.user_data.clone(),
                owned_partitions: if version >= 1 {
                    sub.owned_partitions.clone()
                } else {
                    Vec::new()
                },
                generation_id: if version >= 2 { sub.generation_id } else { -1 },
                rack_id: if version >= 3 {
                    sub.rack_id.clone()
                } else {
                    None
                },
            };
            assert_eq!(decoded, expected, "v{version}");
        }
    }

    #[test]
    fn decodes_every_kafka_protocol_assignment_version() {
        let a = Assignment {
            partitions: vec![(s("x"), 0), (s("x"), 9), (s("y"), 2)],
            user_data: Some(Bytes::from_static(b"data")),
        };
        for version in 0..=3 {
            let decoded = Assignment::decode(&prefixed(&to_kp_assignment(&a), version));
            assert_eq!(decoded.expect("decodes"), a, "v{version}");
        }
    }

    #[test]
    fn kafka_protocol_decodes_ours() {
        let sub = sample_subscription();
        let bytes = sub.encode();
        let mut body = bytes.slice(2..);
        let kp = ConsumerProtocolSubscription::decode(&mut body, 3).expect("kafka-protocol");
        assert_eq!(kp, to_kp_subscription(&sub));
        assert!(body.is_empty());

        let a = Assignment {
            partitions: vec![(s("x"), 1)],
            user_data: None,
        };
        let mut body = a.encode().slice(2..);
        let kp = ConsumerProtocolAssignment::decode(&mut body, 3).expect("kafka-protocol");
        assert_eq!(kp, to_kp_assignment(&a));
    }

    #[test]
    fn a_later_version_is_read_as_version_3_and_its_tail_ignored() {
        let sub = sample_subscription();
        let mut bytes = sub.encode().to_vec();
        bytes[1] = 9;
        bytes.extend_from_slice(b"future fields");
        assert_eq!(Subscription::decode(&bytes).expect("decodes"), sub);

        let a = Assignment {
            partitions: vec![(s("x"), 1)],
            user_data: None,
        };
        let mut bytes = a.encode().to_vec();
        bytes[0] = 0x7f;
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Assignment::decode(&bytes).expect("decodes"), a);
    }

    #[test]
    fn defaults_are_empty_with_no_generation() {
        let sub = Subscription::default();
        assert_eq!(sub.generation_id, NO_GENERATION);
        assert_eq!(Subscription::decode(&sub.encode()).expect("decodes"), sub);
        let a = Assignment::default();
        assert_eq!(Assignment::decode(&a.encode()).expect("decodes"), a);
    }

    #[test]
    fn zero_bytes_are_an_empty_assignment_but_no_subscription() {
        assert_eq!(
            Assignment::decode(&[]).expect("decodes"),
            Assignment::default()
        );
        protocol_error(Subscription::decode(&[]), "`version`");
    }

    #[test]
    fn refuses_a_negative_version() {
        protocol_error(Subscription::decode(&[0xff, 0xff]), "negative version -1");
        protocol_error(Assignment::decode(&[0x80, 0x00]), "negative version");
    }

    #[test]
    fn refuses_truncated_input_naming_the_field() {
        protocol_error(Subscription::decode(&[0]), "`version`");
        let full = sample_subscription().encode();
        for cut in 2..full.len() {
            assert!(Subscription::decode(&full[..cut]).is_err(), "cut at {cut}");
        }
        protocol_error(Subscription::decode(&full[..full.len() - 1]), "`rack_id`");
        let full = Assignment {
            partitions: vec![(s("x"), 1)],
            user_data: Some(Bytes::from_static(b"abc")),
        }
        .encode();
        protocol_error(Assignment::decode(&full[..1]), "`version`");
        for cut in 1..full.len() {
            assert!(Assignment::decode(&full[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_counts_the_bytes_cannot_back() {
        // 2^31 - 1 topics in four bytes.
        protocol_error(
            Subscription::decode(&[0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']),
            "`topics`: array of 2147483647 elements",
        );
        // One topic entry whose partition count claims 1000 partitions.
        let mut bytes = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
        bytes.extend_from_slice(&1000i32.to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        protocol_error(
            Assignment::decode(&bytes),
            "`assigned_partitions`: array of 1000",
        );
        // A user data length past the end.
        protocol_error(
            Subscription::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2]),
            "`user_data`: needs 9 bytes, 2 left",
        );
    }

    #[test]
    fn refuses_negative_lengths_and_misplaced_nulls() {
        // A null topics array.
        protocol_error(
            Subscription::decode(&[0, 0, 0xff, 0xff, 0xff, 0xff]),
            "`topics`: array count -1",
        );
        // A null topic name.
        protocol_error(
            Subscription::decode(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]),
            "`topics`: null string",
        );
        // A string length of -2.
        protocol_error(
            Subscription::decode(&[0, 0, 0, 0, 0, 1, 0xff, 0xfe]),
            "string length -2",
        );
        // User data of length -2.
        protocol_error(
            Subscription::decode(&[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe]),
            "bytes length -2",
        );
        // A rack id of length -3.
        let mut bytes = Subscription::default().encode().to_vec();
        let n = bytes.len();
        bytes[n - 2..].copy_from_slice(&(-3i16).to_be_bytes());
        protocol_error(Subscription::decode(&bytes), "`rack_id`: string length -3");
    }

    #[test]
    fn refuses_invalid_utf8() {
        protocol_error(
            Subscription::decode(&[0, 0, 0, 0, 0, 1, 0, 2, 0xc3, 0x28, 0xff, 0xff, 0xff, 0xff]),
            "invalid UTF-8",
        );
    }

    #[test]
    fn refuses_overlong_topic_names_in_partition_lists_only() {
        let long = "t".repeat(MAX_PARTITION_TOPIC_LEN + 1);
        let ok = "t".repeat(MAX_PARTITION_TOPIC_LEN);
        let sub = Subscription {
            topics: vec![long.clone()],
            ..Subscription::default()
        };
        assert_eq!(Subscription::decode(&sub.encode()).expect("decodes"), sub);
        let a = Assignment {
            partitions: vec![(ok, 0)],
            user_data: None,
        };
        assert_eq!(Assignment::decode(&a.encode()).expect("decodes"), a);
        let a = Assignment {
            partitions: vec![(long, 0)],
            user_data: None,
        };
        protocol_error(Assignment::decode(&a.encode()), "above the limit of 249");
    }

    #[test]
    fn an_overlong_string_is_cut_at_a_char_boundary() {
        let sub = Subscription {
            rack_id: Some("é".repeat(20_000)),
            ..Subscription::default()
        };
        let decoded = Subscription::decode(&sub.encode()).expect("decodes");
        let rack = decoded.rack_id.expect("a rack");
        assert_eq!(rack.len(), 32_766);
        assert!(rack.chars().all(|c| c == 'é'));
    }

    fn topic_name() -> impl Strategy<Value = String> {
        "[a-z._-]{1,12}"
    }

    fn pairs() -> impl Strategy<Value = Vec<(String, i32)>> {
        // Contiguous per topic, as the encoding groups them.
        proptest::collection::btree_map(
            topic_name(),
            proptest::collection::vec(any::<i32>(), 1..5),
            0..4,
        )
        .prop_map(|m| {
            m.into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect()
        })
    }

    fn user_data() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from))
    }

    prop_compose! {
        fn subscription()(
            topics in proptest::collection::vec(".{0,10}", 0..4),
            user_data in user_data(),
            owned_partitions in pairs(),
            generation_id in any::<i32>(),
            rack_id in proptest::option::of(".{0,8}"),
        ) -> Subscription {
            Subscription { topics, user_data, owned_partitions, generation_id, rack_id }
        }
    }

    proptest! {
        #[test]
        fn subscription_round_trips_and_matches_kafka_protocol(sub in subscription()) {
            let bytes = sub.encode();
            prop_assert_eq!(Subscription::decode(&bytes).expect("decodes"), sub.clone());
            prop_assert_eq!(bytes.to_vec(), prefixed(&to_kp_subscription(&sub), 3));
        }

        #[test]
        fn assignment_round_trips_and_matches_kafka_protocol(
            partitions in pairs(),
            user_data in user_data(),
        ) {
            let a = Assignment { partitions, user_data };
            let bytes = a.encode();
            prop_assert_eq!(Assignment::decode(&bytes).expect("decodes"), a.clone());
            prop_assert_eq!(bytes.to_vec(), prefixed(&to_kp_assignment(&a), 3));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(sub) = Subscription::decode(&bytes) {
                prop_assert!(sub.owned_partitions.len() <= bytes.len() / 4);
            }
            if let Ok(a) = Assignment::decode(&bytes) {
                prop_assert!(a.partitions.len() <= bytes.len() / 4);
            }
        }
    }
}
