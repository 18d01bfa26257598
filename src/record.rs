//! What a producer sends and what it gets back: [`Record`], its [`Header`]s,
//! the shared [`Topic`] name,
//! and the [`RecordMetadata`] of a delivered record.
//!
//! A record's key decides its partition (unless it names one): `None` is a
//! record without a key, spread by the partitioner's keyless rule, while
//! `Some(b"")` is an empty key, hashed like any other key.

use std::sync::Arc;

use arcstr::ArcStr;
use bytes::Bytes;

/// One header of a record: a UTF-8 name and an optional value.
///
/// ```
/// use smartkafka::Header;
/// let h = Header::new("trace-id", "abc");
/// assert_eq!(h.key, "trace-id");
/// assert_eq!(h.value.as_deref(), Some(&b"abc"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The header name. Names may repeat within a record.
    pub key: String,
    /// The header value; `None` is a null value, distinct from an empty one.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Header {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// A header whose value is null.
    pub fn null(key: impl Into<String>) -> Header {
        Header {
            key: key.into(),
            value: None,
        }
    }
}

/// A topic name, shared rather than copied: cloning one is a reference
/// count, so records and delivery reports for one topic carry the same name.
/// A name known when the program is built can be made with
/// [`Topic::from_static`], whose clones copy a pointer and touch no count at
/// all: the cheapest way to name the topic of many records sent from several
/// threads.
///
/// It reads as a `&str` (it derefs to one) and compares with strings.
///
/// ```
/// use smartkafka::{Record, Topic};
/// let orders = Topic::from("orders");
/// let record = Record::new(orders.clone()).value("v");
/// assert_eq!(record.topic, "orders");
/// assert_eq!(record.topic.len(), 6);
/// assert_eq!(format!("{orders}"), "orders");
///
/// const PAYMENTS: Topic = Topic::from_static("payments");
/// assert_eq!(Record::new(PAYMENTS).value("v").topic, "payments");
/// assert_eq!(PAYMENTS, Topic::from("payments"));
/// ```
#[derive(Clone)]
pub struct Topic(Name);

/// Where a [`Topic`]'s characters live.
///
/// The shared form is one word (its length lives with the characters), so
/// a name takes 16 bytes and a [`Record`] 128: records are moved from
/// builder call to builder call and into the producer's queue, and a move
/// of up to 128 bytes is a few register copies where a longer one is a
/// call to `memcpy`.
#[derive(Clone)]
enum Name {
    /// In the program itself: clones copy the pointer.
    Static(&'static str),
    /// In a shared allocation: clones count references.
    Shared(ArcStr),
}

impl PartialEq for Topic {
    fn eq(&self, other: &Topic) -> bool {
        self.same(other) || self.as_str() == other.as_str()
    }
}

impl Eq for Topic {}

/// As the name's `str` hashes, so that maps keyed by topics are found with
/// a `&str` (see the `Borrow<str>` implementation).
impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// By name, as strings order; the same shared name is equal at once (a
/// map keyed by topics finds a key looked up with its own name without
/// comparing bytes).
impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> std::cmp::Ordering {
        if self.same(other) {
            std::cmp::Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Topic {
    /// A name that lives in the program: no allocation, and clones touch no
    /// reference count.
    ///
    /// ```
    /// use smartkafka::Topic;
    /// const ORDERS: Topic = Topic::from_static("orders");
    /// assert_eq!(ORDERS.as_str(), "orders");
    /// ```
    pub const fn from_static(name: &'static str) -> Topic {
        Topic(Name::Static(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }

    /// Whether `other` is this very name (the same shared or static string),
    /// not only an equal one.
    pub(crate) fn same(&self, other: &Topic) -> bool {
        match (&self.0, &other.0) {
            (Name::Static(a), Name::Static(b)) => std::ptr::eq(*a, *b),
            (Name::Shared(a), Name::Shared(b)) => ArcStr::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether this is the only handle to a shared name, as a name made
    /// for one record is (nothing else can clone it while this one is
    /// held). A static name never is.
    pub(crate) fn is_unique(&self) -> bool {
        match &self.0 {
            Name::Static(_) => false,
            Name::Shared(name) => ArcStr::strong_count(name) == Some(1),
        }
    }

    /// The address of the string: the same for every clone, and another
    /// name's while this one is alive. (Two static names may share an
    /// address when one is the other's start; [`same`](Self::same) tells
    /// them apart by length.)
    pub(crate) fn addr(&self) -> usize {
        match &self.0 {
            Name::Static(name) => name.as_ptr() as usize,
            Name::Shared(name) => name.as_ptr() as usize,
        }
    }
}

impl std::ops::Deref for Topic {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Topic {
        Topic(Name::Shared(ArcStr::from(name)))
    }
}

impl From<String> for Topic {
    fn from(name: String) -> Topic {
        Topic(Name::Shared(ArcStr::from(name)))
    }
}

impl From<&String> for Topic {
    fn from(name: &String) -> Topic {
        Topic(Name::Shared(ArcStr::from(name.as_str())))
    }
}

/// Copies the name into a new shared allocation (a `Topic` keeps its
/// length with its characters, which `Arc<str>` does not).
impl From<Arc<str>> for Topic {
    fn from(name: Arc<str>) -> Topic {
        Topic(Name::Shared(ArcStr::from(name)))
    }
}

impl From<&Topic> for Topic {
    fn from(topic: &Topic) -> Topic {
        topic.clone()
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> String {
        topic.as_str().to_string()
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Topic> for String {
    fn eq(&self, other: &Topic) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A record to send.
///
/// ```
/// use smartkafka::Record;
/// let record = Record::new("orders")
///     .key("customer-17")
///     .value(r#"{"total": 12}"#)
///     .header("source", "web");
/// assert_eq!(record.topic, "orders");
/// assert_eq!(record.key.as_deref(), Some(&b"customer-17"[..]));
/// assert_eq!(record.partition, None); // chosen by the partitioner
/// assert_eq!(record.headers.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The topic.
    pub topic: Topic,
    /// The key: `None` for a keyless record; an empty key is still a key.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// An explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// The record timestamp in milliseconds since the Unix epoch; `None`
    /// stamps the time of `send`.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A keyless record with a null value for `topic`.
    ///
    /// A [`Topic`] made once and cloned for each record saves copying the
    /// name per record: `Record::new(topic.clone())`.
    pub fn new(topic: impl Into<Topic>) -> Record {
        Record {
            topic: topic.into(),
            key: None,
            value: None,
            headers: Vec::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    #[must_use]
    pub fn value(mut self, value: impl Into<Bytes>) -> Record {
        self.value = Some(value.into());
        self
    }

    /// Appends a header with a value.
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Appends a header (with a value or null).
    #[must_use]
    pub fn with_header(mut self, header: Header) -> Record {
        self.headers.push(header);
        self
    }

    /// Sends the record to `partition`, bypassing the partitioner.
    #[must_use]
    pub fn partition(mut self, partition: i32) -> Record {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn timestamp(mut self, millis: i64) -> Record {
        self.timestamp = Some(millis);
        self
    }

    /// A size estimate in bytes used for buffer accounting: the payload plus
    /// the worst-case per-record framing.
    pub(crate) fn estimated_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 10)
            .sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
            + 26
    }
}

/// Where a delivered record was written.
///
/// `offset` is `-1` when the producer does not wait for acknowledgements
/// (acks = 0): the broker never says.
///
/// ```no_run
/// # async fn demo(producer: smartkafka::Producer) -> Result<(), smartkafka::Error> {
/// use smartkafka::Record;
/// let metadata = producer.send_and_wait(Record::new("events").value("hi")).await?;
/// println!("{}-{}@{} at {} ms", metadata.topic, metadata.partition, metadata.offset, metadata.timestamp);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Topic,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition, `-1` if unknown (acks = 0).
    pub offset: i64,
    /// The record's timestamp: its create time, or the broker's log append
    /// time when the topic uses `LogAppendTime`.
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_moves_in_128_bytes() {
        // Past 128 bytes, every move of a record (each builder call, the
        // hand-off to the producer) becomes a call to `memcpy`.
        assert_eq!(std::mem::size_of::<Topic>(), 16);
        assert!(
            std::mem::size_of::<Record>() <= 128,
            "a record takes {} bytes",
            std::mem::size_of::<Record>()
        );
    }

    #[test]
    fn every_form_of_a_name_reads_and_compares_as_its_string() {
        let names = [
            Topic::from("orders"),
            Topic::from(String::from("orders")),
            Topic::from(&String::from("orders")),
            Topic::from(Arc::<str>::from("orders")),
            Topic::from_static("orders"),
        ];
        for a in &names {
            assert_eq!(a.as_str(), "orders");
            assert_eq!(a.len(), 6);
            for b in &names {
                assert_eq!(a, b);
                assert_eq!(a.cmp(b), std::cmp::Ordering::Equal);
            }
        }
        let shared = Topic::from("orders");
        assert!(shared.same(&shared.clone()));
        assert_eq!(shared.addr(), shared.clone().addr());
        assert!(
            !shared.same(&Topic::from("orders")),
            "an equal name elsewhere"
        );
        let (a, b) = (Topic::from("a"), Topic::from("b"));
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Less);
    }
}
