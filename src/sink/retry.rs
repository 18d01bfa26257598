//! What a [`Sink`](super::Sink) does with a record whose delivery failed:
//! the opt-in [`RetryPolicy`] (send it again, with exponential backoff) and
//! the dead-letter record that carries it, with its failure headers, to the
//! dead-letter topic once it failed for good.
//!
//! See [`RetryPolicy`] for what retrying does to ordering.

use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::failure_headers::FailureInfo;
use crate::record::{Record, Topic};

/// How often and how soon a sink sends a failed record again.
///
/// # Ordering
///
/// The producer's own retries (idempotent by default) keep the records of a
/// partition in order. A sink-level retry is a new send: records of the same
/// key sent after the failed one may be written before it. Leave retries
/// off (the default) when the order per key matters, and rely on the
/// producer's `delivery_timeout` instead.
///
/// Only retriable errors whose record is certainly not in the log are tried
/// again; a record whose outcome is unknown
/// ([`Error::possibly_persisted`]) is not re-sent, so that retrying does not
/// write it twice.
///
/// ```
/// use std::time::Duration;
/// use smartkafka::sink::RetryPolicy;
///
/// let policy = RetryPolicy::new(3)
///     .backoff(Duration::from_millis(100))
///     .backoff_max(Duration::from_secs(1));
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(2), Duration::from_millis(200));
/// assert_eq!(policy.delay(5), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends after the first one (0: none).
    pub max_retries: u32,
    /// The wait before the first retry, doubling for each next one
    /// (default 100 ms).
    pub backoff: Duration,
    /// The longest wait (default 5 s).
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Up to `max_retries` retries, after 100 ms doubling up to 5 s.
    pub fn new(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// The wait before the first retry.
    #[must_use]
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest wait.
    #[must_use]
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// The wait before retry number `retry` (from 1).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(30);
        self.backoff.saturating_mul(factor).min(self.backoff_max)
    }

    /// Checks the settings; the error names the field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if self.backoff > self.backoff_max {
            return Err(Error::config(
                "backoff",
                format_args!(
                    "{:?} is above backoff_max ({:?})",
                    self.backoff, self.backoff_max
                ),
            ));
        }
        Ok(())
    }

    /// Whether a record that failed with `error` after `attempts` sends is
    /// sent again.
    pub(crate) fn allows(&self, error: &Error, attempts: u32) -> bool {
        attempts <= self.max_retries
            && error.is_retriable()
            && !error.possibly_persisted()
            && !matches!(error.kind(), ErrorKind::CircuitOpen)
    }
}

/// A short, stable name of an error kind for metric labels and the
/// `dlt-error-kind` header.
pub(crate) fn kind_label(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config { .. } => "config",
        ErrorKind::Broker(_) => "broker",
        ErrorKind::ConnectTimeout => "connect_timeout",
        ErrorKind::RequestTimeout => "request_timeout",
        ErrorKind::Io => "io",
        ErrorKind::Protocol => "protocol",
        ErrorKind::UnsupportedApi => "unsupported_api",
        ErrorKind::NoBrokerAvailable => "no_broker_available",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Closed => "closed",
        ErrorKind::BufferExhausted => "buffer_exhausted",
        ErrorKind::RecordTooLarge => "record_too_large",
        ErrorKind::InvalidPartition => "invalid_partition",
        ErrorKind::DeliveryTimeout => "delivery_timeout",
        ErrorKind::Serialization => "serialization",
        ErrorKind::CircuitOpen => "circuit_open",
        ErrorKind::Authentication => "authentication",
        ErrorKind::Tls => "tls",
        _ => "other",
    }
}

/// Whether `error` says nothing about the cluster's health (the record
/// itself is at fault), so a breaker does not count it.
pub(crate) fn is_callers_fault(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Serialization
            | ErrorKind::RecordTooLarge
            | ErrorKind::InvalidPartition
            | ErrorKind::Config { .. }
    )
}

/// `record` bound for `topic` with its key, value, headers and timestamp,
/// stale failure headers replaced by those of `error` after `attempts`
/// sends.
pub(crate) fn dead_letter_record(
    record: &Record,
    topic: &Topic,
    error: &Error,
    attempts: u32,
) -> Record {
    let info = FailureInfo {
        original_topic: record.topic.to_string(),
        original_partition: record.partition,
        original_offset: None,
        error: error.to_string(),
        error_kind: kind_label(error.kind()).to_string(),
        attempts,
    };
    let mut headers: Vec<_> = record
        .headers
        .iter()
        .filter(|h| !FailureInfo::is_failure_header(&h.key))
        .cloned()
        .collect();
    headers.extend(info.to_headers());
    Record {
        topic: topic.clone(),
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
        partition: None,
        timestamp: record.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure_headers::{ATTEMPTS, ERROR_KIND};

    #[test]
    fn only_certainly_unwritten_retriable_failures_are_retried() {
        let policy = RetryPolicy::new(2);
        let timeout = Error::new(ErrorKind::DeliveryTimeout, "late");
        assert!(policy.allows(&timeout, 1));
        assert!(policy.allows(&timeout, 2));
        assert!(!policy.allows(&timeout, 3));
        assert!(!policy.allows(&timeout.clone_shallow().with_possibly_persisted(true), 1));
        assert!(!policy.allows(&Error::new(ErrorKind::RecordTooLarge, "big"), 1));
        assert!(!policy.allows(&Error::new(ErrorKind::CircuitOpen, "open"), 1));
        assert!(
            RetryPolicy::new(1)
                .backoff(Duration::from_secs(9))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn dead_letter_record_keeps_the_record_and_replaces_stale_failure_headers() {
        let record = Record::new("orders")
            .key("k")
            .value("v")
            .header("trace", "t1")
            .header(ATTEMPTS, "7")
            .partition(2);
        let error = Error::new(ErrorKind::DeliveryTimeout, "no luck");
        let dead = dead_letter_record(&record, &Topic::from("orders.dlt"), &error, 3);
        assert_eq!(dead.topic, "orders.dlt");
        assert_eq!(
            (dead.key, dead.value),
            (record.key.clone(), record.value.clone())
        );
        assert_eq!(dead.partition, None);
        assert_eq!(dead.headers[0].key, "trace");
        let info = FailureInfo::from_headers(&dead.headers).unwrap();
        assert_eq!(info.attempts, 3);
        assert_eq!(info.original_topic, "orders");
        assert_eq!(info.original_partition, Some(2));
        assert_eq!(info.error, "no luck");
        assert_eq!(dead.headers.iter().filter(|h| h.key == ATTEMPTS).count(), 1);
        assert!(
            dead.headers.iter().any(
                |h| h.key == ERROR_KIND && h.value.as_deref() == Some(&b"delivery_timeout"[..])
            )
        );
    }
}
