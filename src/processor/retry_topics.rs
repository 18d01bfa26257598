//! Where a failed record goes next: the retry topics of its source topic
//! (`<topic>.retry.1`, `<topic>.retry.2`, ... each with its delay), then
//! the dead-letter topic, and the record re-sent there: the original key,
//! value and headers, with fresh [`FailureInfo`] headers.

use std::collections::HashMap;
use std::time::Duration;

use crate::consumer::ConsumedRecord;
use crate::failure_headers::FailureInfo;
use crate::record::Record;

/// The retry topic of `topic` for retry stage `stage` (1-based).
pub(crate) fn retry_topic(topic: &str, stage: usize) -> String {
    format!("{topic}.retry.{stage}")
}

/// What a consumed topic is to the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// One of the subscribed topics.
    Main,
    /// Retry stage `stage` (1-based) of `original`.
    Retry { original: String, stage: usize },
}

/// The topics of a run and where each failed record goes.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    /// Retry delays, one per retry topic; empty without retry topics.
    pub(crate) delays: Vec<Duration>,
    /// A single dead-letter topic for every source topic, else
    /// `<topic>.dlt`.
    pub(crate) dead_letter: Option<String>,
    sources: HashMap<String, Source>,
}

/// Where a failed record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Retry stage `stage` (1-based) on this topic.
    Retry { topic: String },
    /// The dead-letter topic.
    DeadLetter { topic: String },
}

impl Destination {
    pub(crate) fn topic(&self) -> &str {
        match self {
            Destination::Retry { topic } | Destination::DeadLetter { topic } => topic,
        }
    }
}

impl Routes {
    pub(crate) fn new(
        topics: &[String],
        delays: Vec<Duration>,
        dead_letter: Option<String>,
    ) -> Routes {
        let mut sources = HashMap::new();
        for topic in topics {
            sources.insert(topic.clone(), Source::Main);
            for stage in 1..=delays.len() {
                sources.insert(
                    retry_topic(topic, stage),
                    Source::Retry {
                        original: topic.clone(),
                        stage,
                    },
                );
            }
        }
        Routes {
            delays,
            dead_letter,
            sources,
        }
    }

    /// Every topic to subscribe to: the sources and their retry topics.
    pub(crate) fn subscription(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.sources.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// What `topic` is (a topic the run does not know counts as a source).
    pub(crate) fn source(&self, topic: &str) -> Source {
        self.sources.get(topic).cloned().unwrap_or(Source::Main)
    }

    /// How long a record of `topic` waits after its timestamp before it is
    /// processed: the delay of its retry stage, zero for a source topic.
    pub(crate) fn delay(&self, topic: &str) -> Duration {
        match self.source(topic) {
            Source::Main => Duration::ZERO,
            Source::Retry { stage, .. } => self.delays.get(stage - 1).copied().unwrap_or_default(),
        }
    }

    /// Where a record of `topic` goes after failing: the next retry stage
    /// when `retriable` and one is left, else the dead-letter topic.
    pub(crate) fn next(&self, topic: &str, retriable: bool) -> Destination {
        let (original, stage) = match self.source(topic) {
            Source::Main => (topic.to_string(), 0),
            Source::Retry { original, stage } => (original, stage),
        };
        if retriable && stage < self.delays.len() {
            return Destination::Retry {
                topic: retry_topic(&original, stage + 1),
            };
        }
        let topic = self
            .dead_letter
            .clone()
            .unwrap_or_else(|| format!("{original}.dlt"));
        Destination::DeadLetter { topic }
    }

    /// Where `record` first came from, and the attempts made before this
    /// run took it: from its failure headers on a retry topic, else the
    /// record itself with none.
    pub(crate) fn origin(
        &self,
        record: &ConsumedRecord,
    ) -> (String, Option<i32>, Option<i64>, u32) {
        if let Source::Retry { original, .. } = self.source(&record.topic) {
            return match FailureInfo::from_headers(&record.headers) {
                Some(info) => (
                    info.original_topic,
                    info.original_partition,
                    info.original_offset,
                    info.attempts,
                ),
                None => (original, None, None, 0),
            };
        }
        (
            record.topic.to_string(),
            Some(record.partition),
            Some(record.offset),
            0,
        )
    }
}

/// `record` re-sent to `topic`: its key, value and own headers (earlier
/// failure headers dropped), then `info`'s headers. The partition is left
/// to the producer's partitioner, so one key stays in one partition.
pub(crate) fn forward(record: &ConsumedRecord, topic: &str, info: &FailureInfo) -> Record {
    let mut out = Record::new(topic);
    if let Some(key) = &record.key {
        out = out.key(key.clone());
    }
    if let Some(value) = &record.value {
        out = out.value(value.clone());
    }
    for header in &record.headers {
        if !FailureInfo::is_failure_header(&header.key) {
            out = out.with_header(header.clone());
        }
    }
    for header in info.to_headers() {
        out = out.with_header(header);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Header;
    use bytes::Bytes;

    fn routes(delays: usize) -> Routes {
        Routes::new(
            &["orders".to_string()],
            vec![Duration::from_secs(1); delays],
            None,
        )
    }

    #[test]
    fn retry_chain_then_dead_letter() {
        let r = routes(2);
        assert_eq!(
            r.subscription(),
            vec!["orders", "orders.retry.1", "orders.retry.2"]
        );
        assert_eq!(
            r.next("orders", true),
            Destination::Retry {
                topic: "orders.retry.1".into()
            }
        );
        assert_eq!(r.next("orders.retry.1", true).topic(), "orders.retry.2");
        assert_eq!(
            r.next("orders.retry.2", true),
            Destination::DeadLetter {
                topic: "orders.dlt".into()
            }
        );
        assert_eq!(
            r.next("orders", false).topic(),
            "orders.dlt",
            "not retriable"
        );
        assert_eq!(r.delay("orders"), Duration::ZERO);
        assert_eq!(r.delay("orders.retry.2"), Duration::from_secs(1));
    }

    #[test]
    fn without_retry_topics_failures_go_to_the_dead_letter_topic() {
        let r = Routes::new(&["a".into()], Vec::new(), Some("all.dlt".into()));
        assert_eq!(r.subscription(), vec!["a"]);
        assert_eq!(r.next("a", true).topic(), "all.dlt");
    }

    #[test]
    fn forwarded_records_keep_key_value_and_headers_and_replace_failure_headers() {
        let r = routes(1);
        let record = ConsumedRecord {
            topic: "orders.retry.1".into(),
            partition: 0,
            offset: 3,
            timestamp: 0,
            timestamp_type: crate::record_batch::TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![Header::new("trace", "t1")]
                .into_iter()
                .chain(
                    FailureInfo {
                        original_topic: "orders".into(),
                        original_partition: Some(2),
                        original_offset: Some(40),
                        error: "first".into(),
                        error_kind: "processing".into(),
                        attempts: 2,
                    }
                    .to_headers(),
                )
                .collect(),
            leader_epoch: None,
        };
        let (topic, partition, offset, attempts) = r.origin(&record);
        assert_eq!(
            (topic.as_str(), partition, offset, attempts),
            ("orders", Some(2), Some(40), 2)
        );
        let info = FailureInfo {
            original_topic: topic,
            original_partition: partition,
            original_offset: offset,
            error: "second".into(),
            error_kind: "processing".into(),
            attempts: 4,
        };
        let out = forward(&record, "orders.dlt", &info);
        let keys: Vec<&str> = out.headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys.iter().filter(|k| **k == "dlt-attempts").count(), 1);
        assert_eq!(keys[0], "trace");
        assert_eq!(FailureInfo::from_headers(&out.headers), Some(info));
        assert_eq!(out.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out.value.as_deref(), Some(&b"v"[..]));
    }
}
