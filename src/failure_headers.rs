//! The headers a record carries when it is re-sent to a retry topic or a
//! dead-letter topic: where it came from, what went wrong and how often it
//! was tried. The producer-side sink and the consumer-side processor runner
//! both write them; [`FailureInfo::from_headers`] reads them back (the
//! runner uses it to count attempts across retry topics).
//!
//! ```
//! use smartkafka::failure_headers::{FailureInfo, ATTEMPTS, ORIGINAL_TOPIC};
//!
//! let info = FailureInfo {
//!     original_topic: "orders".into(),
//!     original_partition: Some(2),
//!     original_offset: Some(41),
//!     error: "price missing".into(),
//!     error_kind: "processing".into(),
//!     attempts: 3,
//! };
//! let headers = info.to_headers();
//! assert!(headers.iter().any(|h| h.key == ORIGINAL_TOPIC));
//! assert!(headers.iter().any(|h| h.key == ATTEMPTS && h.value.as_deref() == Some(&b"3"[..])));
//! assert_eq!(FailureInfo::from_headers(&headers), Some(info));
//! ```

use bytes::Bytes;

use crate::Header;

/// The topic the record was first produced to or consumed from.
pub const ORIGINAL_TOPIC: &str = "dlt-original-topic";
/// Its partition there (absent when it never reached one).
pub const ORIGINAL_PARTITION: &str = "dlt-original-partition";
/// Its offset there (absent when it never reached one).
pub const ORIGINAL_OFFSET: &str = "dlt-original-offset";
/// The last error, as text.
pub const ERROR: &str = "dlt-error";
/// The kind of the last error (`processing`, `deserialization`, or the
/// client's error kind for a failed delivery).
pub const ERROR_KIND: &str = "dlt-error-kind";
/// How many times it was tried in all, retry topics included.
pub const ATTEMPTS: &str = "dlt-attempts";

/// Where a failed record came from and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInfo {
    /// The topic it was first meant for or read from.
    pub original_topic: String,
    /// The partition, when known.
    pub original_partition: Option<i32>,
    /// The offset, when known.
    pub original_offset: Option<i64>,
    /// The last error's text.
    pub error: String,
    /// The last error's kind.
    pub error_kind: String,
    /// Attempts so far, at least 1.
    pub attempts: u32,
}

impl FailureInfo {
    /// The headers that carry this information, to add to the re-sent
    /// record (after its own headers).
    pub fn to_headers(&self) -> Vec<Header> {
        let mut headers = vec![Header::new(
            ORIGINAL_TOPIC,
            Bytes::from(self.original_topic.clone()),
        )];
        if let Some(p) = self.original_partition {
            headers.push(Header::new(ORIGINAL_PARTITION, Bytes::from(p.to_string())));
        }
        if let Some(o) = self.original_offset {
            headers.push(Header::new(ORIGINAL_OFFSET, Bytes::from(o.to_string())));
        }
        headers.push(Header::new(ERROR, Bytes::from(self.error.clone())));
        headers.push(Header::new(
            ERROR_KIND,
            Bytes::from(self.error_kind.clone()),
        ));
        headers.push(Header::new(
            ATTEMPTS,
            Bytes::from(self.attempts.to_string()),
        ));
        headers
    }

    /// Reads the information back from a record's headers (the last value
    /// of each wins); `None` unless the original topic and the attempt
    /// count are there and well formed.
    pub fn from_headers(headers: &[Header]) -> Option<FailureInfo> {
        let text = |key: &str| {
            headers
                .iter()
                .rev()
                .find(|h| h.key == key)
                .and_then(|h| h.value.as_deref())
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        Some(FailureInfo {
            original_topic: text(ORIGINAL_TOPIC)?.to_string(),
            original_partition: text(ORIGINAL_PARTITION).and_then(|v| v.parse().ok()),
            original_offset: text(ORIGINAL_OFFSET).and_then(|v| v.parse().ok()),
            error: text(ERROR).unwrap_or_default().to_string(),
            error_kind: text(ERROR_KIND).unwrap_or_default().to_string(),
            attempts: text(ATTEMPTS)?.parse().ok()?,
        })
    }

    /// Whether `key` is one of these headers (to drop stale copies before
    /// adding fresh ones).
    pub fn is_failure_header(key: &str) -> bool {
        [
            ORIGINAL_TOPIC,
            ORIGINAL_PARTITION,
            ORIGINAL_OFFSET,
            ERROR,
            ERROR_KIND,
            ATTEMPTS,
        ]
        .contains(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_garbled_attempts_read_as_none() {
        let mut headers = vec![Header::new(ORIGINAL_TOPIC, "t")];
        assert_eq!(FailureInfo::from_headers(&headers), None);
        headers.push(Header::new(ATTEMPTS, "many"));
        assert_eq!(FailureInfo::from_headers(&headers), None);
        headers.push(Header::new(ATTEMPTS, "2"));
        assert_eq!(FailureInfo::from_headers(&headers).unwrap().attempts, 2);
    }
}
