//! What a group consumer is told: [`ConsumerConfig`], the fetch settings
//! it shares with the [`PartitionReader`](super::PartitionReader) plus the
//! group's own (membership timeouts, assignors, commits, poll size).
//!
//! Defaults follow the Java `KafkaConsumer` (3.x) except the isolation
//! level, which is read_committed as for the reader (Java reads
//! uncommitted by default); `auto_offset_reset` is `latest`, as in Java and
//! librdkafka.

use std::time::Duration;

use super::assignor::Assignor;
use super::reader_config::{AutoOffsetReset, IsolationLevel, ReaderConfig};
use crate::client_config::ClientConfig;
use crate::error::Error;

/// Settings of a group [`Consumer`](super::Consumer).
///
/// ```
/// use std::time::Duration;
/// use smartkafka::consumer::{Assignor, ConsumerConfig};
/// let config = ConsumerConfig::new("localhost:9092", "billing")
///     .session_timeout(Duration::from_secs(30))
///     .assignors(vec![Assignor::CooperativeSticky]);
/// assert!(config.validate().is_ok());
/// assert!(config.enable_auto_commit);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Connection, fetch, isolation and offset-reset settings;
    /// `reader.group_id` is the group.
    pub reader: ReaderConfig,
    /// Static membership (KIP-345): a stable id for this member across
    /// restarts (default none: a dynamic member).
    pub group_instance_id: Option<String>,
    /// How long the coordinator waits for a heartbeat before removing the
    /// member (default 45 s).
    pub session_timeout: Duration,
    /// Time between heartbeats (default 3 s).
    pub heartbeat_interval: Duration,
    /// The longest time between two `poll` calls before the member leaves
    /// the group (default 5 minutes); also the rebalance timeout.
    pub max_poll_interval: Duration,
    /// Commits the positions the application has received every
    /// `auto_commit_interval`, before a rebalance and on close (default on).
    pub enable_auto_commit: bool,
    /// Time between automatic commits (default 5 s).
    pub auto_commit_interval: Duration,
    /// The most records one `poll` returns (default 500).
    pub max_poll_records: usize,
    /// The assignors offered to the group, most preferred first (default
    /// range then cooperative-sticky, as Java).
    pub assignors: Vec<Assignor>,
    /// How often a pattern subscription looks for new matching topics
    /// (default 5 minutes, Java's `metadata.max.age.ms`).
    pub metadata_max_age: Duration,
}

impl ConsumerConfig {
    /// The defaults for group `group_id` on the cluster at
    /// `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str, group_id: &str) -> ConsumerConfig {
        ConsumerConfig::from_client(ClientConfig::new(bootstrap_servers), group_id)
    }

    /// The defaults for group `group_id` with these connection settings.
    pub fn from_client(client: ClientConfig, group_id: &str) -> ConsumerConfig {
        let reader = ReaderConfig::from_client(client)
            .group_id(group_id)
            .auto_offset_reset(AutoOffsetReset::Latest);
        ConsumerConfig {
            reader,
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            max_poll_records: 500,
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            metadata_max_age: Duration::from_secs(300),
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        self.reader.group_id.as_deref().unwrap_or_default()
    }

    /// The client id (default `"smartkafka"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.reader = self.reader.client_id(id);
        self
    }

    /// Static membership with this instance id.
    pub fn group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// The session timeout.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// The maximum time between polls (and the rebalance timeout).
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// Turns automatic commits on or off.
    pub fn enable_auto_commit(mut self, enable: bool) -> Self {
        self.enable_auto_commit = enable;
        self
    }

    /// The automatic commit interval.
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.auto_commit_interval = interval;
        self
    }

    /// The most records one poll returns.
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.max_poll_records = records;
        self
    }

    /// The assignors offered, most preferred first.
    pub fn assignors(mut self, assignors: Vec<Assignor>) -> Self {
        self.assignors = assignors;
        self
    }

    /// How often a pattern subscription looks for new topics.
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.metadata_max_age = age;
        self
    }

    /// Where to start a partition without a committed offset, or whose
    /// position is out of range.
    pub fn auto_offset_reset(mut self, reset: AutoOffsetReset) -> Self {
        self.reader = self.reader.auto_offset_reset(reset);
        self
    }

    /// The isolation level (default read_committed).
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.reader = self.reader.isolation_level(level);
        self
    }

    /// Checks every setting; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        self.reader.validate()?;
        match self.reader.group_id.as_deref() {
            None | Some("") => return Err(Error::config("group_id", "must not be empty")),
            Some(_) => {}
        }
        if let Some(id) = &self.group_instance_id
            && (id.is_empty() || id.len() > 249)
        {
            return Err(Error::config(
                "group_instance_id",
                "must be 1 to 249 characters",
            ));
        }
        for (field, value) in [
            ("session_timeout", self.session_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("max_poll_interval", self.max_poll_interval),
            ("auto_commit_interval", self.auto_commit_interval),
            ("metadata_max_age", self.metadata_max_age),
        ] {
            crate::client_config::check_duration(field, value)?;
            if value.is_zero() || i32::try_from(value.as_millis()).is_err() {
                return Err(Error::config(field, "must be between 1 ms and 24 days"));
            }
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(Error::config(
                "heartbeat_interval",
                "must be shorter than the session timeout (a third of it is usual)",
            ));
        }
        if self.max_poll_records == 0 {
            return Err(Error::config("max_poll_records", "must be at least 1"));
        }
        if self.assignors.is_empty() {
            return Err(Error::config("assignors", "name at least one assignor"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_java_consumer() {
        let config = ConsumerConfig::new("a:9092", "g");
        assert_eq!(config.group_id(), "g");
        assert_eq!(config.session_timeout, Duration::from_secs(45));
        assert_eq!(config.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(config.max_poll_interval, Duration::from_secs(300));
        assert_eq!(config.reader.auto_offset_reset, AutoOffsetReset::Latest);
        assert_eq!(config.max_poll_records, 500);
        config.validate().unwrap();
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases: Vec<(ConsumerConfig, &str)> = vec![
            (ConsumerConfig::new("a:9092", ""), "group_id"),
            (
                ConsumerConfig::new("a:9092", "g").heartbeat_interval(Duration::from_secs(50)),
                "heartbeat_interval",
            ),
            (
                ConsumerConfig::new("a:9092", "g").max_poll_records(0),
                "max_poll_records",
            ),
            (
                ConsumerConfig::new("a:9092", "g").assignors(Vec::new()),
                "assignors",
            ),
            (
                ConsumerConfig::new("a:9092", "g").group_instance_id(""),
                "group_instance_id",
            ),
            (
                ConsumerConfig::new("a:9092", "g").session_timeout(Duration::ZERO),
                "session_timeout",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().unwrap_err();
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
    }
}
