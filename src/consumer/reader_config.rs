//! What a reader is told: [`ReaderConfig`] with its [`IsolationLevel`] and
//! [`AutoOffsetReset`], and the [`StartOffset`] of each assigned partition.
//!
//! Defaults follow the Java consumer where it has an equivalent setting,
//! except the isolation level: readers default to read_committed, as
//! exactly-once pipelines need.

use std::time::Duration;

use crate::client_config::ClientConfig;
use crate::error::Error;

/// Which records of transactional producers a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, including those of open and aborted transactions.
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional
    /// records), up to the last stable offset.
    #[default]
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value of Fetch and ListOffsets (0 or 1).
    pub fn as_i8(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Where a reader continues when its position is no longer in the log
/// (the broker answered `OFFSET_OUT_OF_RANGE`: the records were deleted by
/// retention, or the position is past the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// At the log start offset.
    #[default]
    Earliest,
    /// At the end of the log.
    Latest,
    /// Nowhere: `poll` fails with the broker's error, and the application
    /// decides (with [`PartitionReader::seek`](super::PartitionReader::seek)).
    None,
}

/// Where an assigned partition starts.
///
/// ```
/// use smartkafka::consumer::StartOffset;
/// let starts = [
///     ("orders", 0, StartOffset::Earliest),
///     ("orders", 1, StartOffset::Offset(1_000)),
///     ("orders", 2, StartOffset::Committed("billing".into())),
/// ];
/// # let _ = starts;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The end of the log: only records written from now on (for
    /// read_committed, the last stable offset).
    Latest,
    /// This offset. One outside the log is handled by
    /// [`ReaderConfig::auto_offset_reset`].
    Offset(i64),
    /// The offset this consumer group committed, or the log start offset
    /// when the group has committed none for the partition.
    Committed(String),
}

/// Settings of a [`PartitionReader`](super::PartitionReader).
///
/// ```
/// use std::time::Duration;
/// use smartkafka::consumer::{IsolationLevel, ReaderConfig};
/// let config = ReaderConfig::new("localhost:9092")
///     .client_id("billing-reader")
///     .isolation_level(IsolationLevel::ReadCommitted)
///     .group_id("billing")
///     .max_wait(Duration::from_millis(200))
///     .max_partition_bytes(256 * 1024);
/// config.validate()?;
/// assert!(ReaderConfig::new("localhost:9092").max_fetch_bytes(0).validate().is_err());
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReaderConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Read committed (the default) or uncommitted records.
    pub isolation_level: IsolationLevel,
    /// The consumer group the positions belong to, for
    /// [`group_metadata`](super::PartitionReader::group_metadata); the
    /// reader does not join the group.
    pub group_id: Option<String>,
    /// Where to continue after `OFFSET_OUT_OF_RANGE`.
    pub auto_offset_reset: AutoOffsetReset,
    /// Longest a broker holds a Fetch waiting for `min_bytes` (default
    /// 500 ms). Must be shorter than the request timeout.
    pub max_wait: Duration,
    /// Bytes a broker waits for before answering a Fetch (default 1).
    pub min_bytes: usize,
    /// Record bytes asked for per partition and Fetch (default 1 MiB).
    pub max_partition_bytes: usize,
    /// Record bytes asked for per Fetch, all partitions together
    /// (default 50 MiB). Also bounds the records one `poll` decodes: past
    /// it, each further partition decodes at most one batch (so every
    /// partition makes progress), and the rest is fetched again later.
    pub max_fetch_bytes: usize,
    /// Largest size one compressed batch may decompress to (default
    /// 64 MiB).
    pub max_decompressed_batch_bytes: usize,
    /// Pause between rounds of a `poll` after a retriable error (default
    /// 100 ms).
    pub retry_backoff: Duration,
    /// The rack this reader runs in (the Java client's `client.rack`), sent
    /// with every Fetch (v11+) so a broker configured with a replica
    /// selector can point the reader at a replica in the same rack
    /// (KIP-392). `None` (the default) always reads from leaders.
    pub client_rack: Option<String>,
}

impl ReaderConfig {
    /// Defaults for a cluster reachable at `bootstrap_servers`
    /// (comma-separated `host:port`).
    pub fn new(bootstrap_servers: &str) -> ReaderConfig {
        ReaderConfig::from_client(ClientConfig::new(bootstrap_servers))
    }

    /// Defaults on top of existing connection settings.
    pub fn from_client(client: ClientConfig) -> ReaderConfig {
        ReaderConfig {
            client,
            isolation_level: IsolationLevel::ReadCommitted,
            group_id: None,
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_partition_bytes: 1024 * 1024,
            max_fetch_bytes: 50 * 1024 * 1024,
            max_decompressed_batch_bytes: 64 * 1024 * 1024,
            retry_backoff: Duration::from_millis(100),
            client_rack: None,
        }
    }

    /// The client id sent with every request (default `"smartkafka"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client.client_id = id.into();
        self
    }

    /// Connects over TLS with these settings; see
    /// [`ClientConfig::tls`](crate::ClientConfig::tls).
    pub fn tls(mut self, tls: crate::security::TlsConfig) -> Self {
        self.client = self.client.clone().tls(tls);
        self
    }

    /// Authenticates with SASL; see
    /// [`ClientConfig::sasl`](crate::ClientConfig::sasl).
    pub fn sasl(mut self, sasl: crate::security::SaslConfig) -> Self {
        self.client = self.client.clone().sasl(sasl);
        self
    }

    /// The request timeout (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.client.request_timeout = timeout;
        self
    }

    /// Read committed or uncommitted records.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = level;
        self
    }

    /// The consumer group the positions belong to.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where to continue after `OFFSET_OUT_OF_RANGE`.
    pub fn auto_offset_reset(mut self, reset: AutoOffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Longest a broker holds a Fetch.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Bytes a broker waits for before answering.
    pub fn min_bytes(mut self, bytes: usize) -> Self {
        self.min_bytes = bytes;
        self
    }

    /// Record bytes per partition and Fetch.
    pub fn max_partition_bytes(mut self, bytes: usize) -> Self {
        self.max_partition_bytes = bytes;
        self
    }

    /// Record bytes per Fetch.
    pub fn max_fetch_bytes(mut self, bytes: usize) -> Self {
        self.max_fetch_bytes = bytes;
        self
    }

    /// Largest decompressed size of one batch.
    pub fn max_decompressed_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_decompressed_batch_bytes = bytes;
        self
    }

    /// Pause after a retriable error.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// The rack this reader runs in, for reading from a nearby replica.
    pub fn client_rack(mut self, rack: impl Into<String>) -> Self {
        self.client_rack = Some(rack.into());
        self
    }

    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        self.client.validate()?;
        crate::client_config::check_duration("max_wait", self.max_wait)?;
        crate::client_config::check_duration("retry_backoff", self.retry_backoff)?;
        if self.max_wait >= self.client.request_timeout {
            return Err(Error::config(
                "max_wait",
                "must be shorter than the request timeout, or a waiting Fetch times out",
            ));
        }
        if i32::try_from(self.max_wait.as_millis()).is_err() {
            return Err(Error::config("max_wait", "too long"));
        }
        if i32::try_from(self.min_bytes).is_err() {
            return Err(Error::config("min_bytes", "must fit in 31 bits"));
        }
        if self.max_partition_bytes == 0 || i32::try_from(self.max_partition_bytes).is_err() {
            return Err(Error::config(
                "max_partition_bytes",
                "must be between 1 byte and 2 GiB - 1",
            ));
        }
        if self.max_fetch_bytes == 0 || self.max_fetch_bytes >= self.client.max_frame_size {
            return Err(Error::config(
                "max_fetch_bytes",
                format!(
                    "must be at least 1 byte and below the maximum frame size ({} bytes)",
                    self.client.max_frame_size
                ),
            ));
        }
        if self.max_decompressed_batch_bytes == 0 {
            return Err(Error::config(
                "max_decompressed_batch_bytes",
                "must be at least 1 byte",
            ));
        }
        if self
            .client_rack
            .as_ref()
            .is_some_and(|r| r.len() > i16::MAX as usize)
        {
            return Err(Error::config("client_rack", "longer than 32767 bytes"));
        }
        if self.group_id.as_deref() == Some("") {
            return Err(Error::config("group_id", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn each_bad_field_is_named() {
        let base = || ReaderConfig::new("a:1");
        let cases: [(ReaderConfig, &str); 6] = [
            (base().max_wait(Duration::from_secs(30)), "max_wait"),
            (base().max_partition_bytes(0), "max_partition_bytes"),
            (base().max_fetch_bytes(0), "max_fetch_bytes"),
            (base().max_fetch_bytes(usize::MAX), "max_fetch_bytes"),
            (
                base().max_decompressed_batch_bytes(0),
                "max_decompressed_batch_bytes",
            ),
            (base().group_id(""), "group_id"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Config { field }, "{err}");
        }
        base().validate().unwrap();
        assert_eq!(base().isolation_level, IsolationLevel::ReadCommitted);
    }
}
