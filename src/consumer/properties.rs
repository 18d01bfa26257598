//! The reader's settings by their Java consumer property names (see
//! `crate::properties` for the format and the error rules).

use crate::error::Error;
use crate::properties::{
    CLIENT_KEYS, SECURITY_KEYS, millis, not_one_of, number, read_file, unknown_key,
};

use super::{AutoOffsetReset, IsolationLevel, ReaderConfig};

/// The keys the reader takes besides [`CLIENT_KEYS`].
const READER_KEYS: &[&str] = &[
    "group.id",
    "isolation.level",
    "auto.offset.reset",
    "fetch.max.wait.ms",
    "fetch.min.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "retry.backoff.ms",
    "client.rack",
];

impl ReaderConfig {
    /// Sets one setting by its Java consumer property name:
    /// `bootstrap.servers`, `client.id`, `request.timeout.ms`,
    /// `socket.connection.setup.timeout.ms`, `reconnect.backoff.ms`,
    /// `reconnect.backoff.max.ms`, `group.id`, `isolation.level`
    /// (`read_committed`, `read_uncommitted`), `auto.offset.reset`
    /// (`earliest`, `latest`, `none`), `fetch.max.wait.ms`,
    /// `fetch.min.bytes`, `max.partition.fetch.bytes`, `fetch.max.bytes`,
    /// `retry.backoff.ms`, `client.rack`.
    ///
    /// ```
    /// use smartkafka::consumer::{IsolationLevel, ReaderConfig};
    /// let config = ReaderConfig::new("localhost:9092")
    ///     .set("isolation.level", "read_uncommitted")?
    ///     .set("group.id", "billing")?;
    /// assert_eq!(config.isolation_level, IsolationLevel::ReadUncommitted);
    /// # Ok::<(), smartkafka::Error>(())
    /// ```
    pub fn set(mut self, key: &str, value: &str) -> Result<ReaderConfig, Error> {
        if self.client.set_client_key(key, value)? {
            return Ok(self);
        }
        Ok(match key {
            "group.id" => self.group_id(value),
            "isolation.level" => self.isolation_level(match value {
                "read_committed" => IsolationLevel::ReadCommitted,
                "read_uncommitted" => IsolationLevel::ReadUncommitted,
                _ => {
                    return Err(not_one_of(
                        "isolation_level",
                        key,
                        value,
                        "read_committed, read_uncommitted",
                    ));
                }
            }),
            "auto.offset.reset" => self.auto_offset_reset(match value {
                "earliest" => AutoOffsetReset::Earliest,
                "latest" => AutoOffsetReset::Latest,
                "none" => AutoOffsetReset::None,
                _ => {
                    return Err(not_one_of(
                        "auto_offset_reset",
                        key,
                        value,
                        "earliest, latest, none",
                    ));
                }
            }),
            "fetch.max.wait.ms" => self.max_wait(millis("max_wait", key, value)?),
            "fetch.min.bytes" => self.min_bytes(number("min_bytes", key, value)?),
            "max.partition.fetch.bytes" => {
                self.max_partition_bytes(number("max_partition_bytes", key, value)?)
            }
            "fetch.max.bytes" => self.max_fetch_bytes(number("max_fetch_bytes", key, value)?),
            "retry.backoff.ms" => self.retry_backoff(millis("retry_backoff", key, value)?),
            "client.rack" => self.client_rack(value),
            _ => return Err(unknown_key(key, &[CLIENT_KEYS, SECURITY_KEYS, READER_KEYS])),
        })
    }

    /// A configuration from `(key, value)` pairs of Java consumer property
    /// names (see [`set`](Self::set)), starting from the defaults.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ReaderConfig, Error> {
        pairs
            .into_iter()
            .try_fold(ReaderConfig::new(""), |c, (k, v)| {
                c.set(k.as_ref(), v.as_ref())
            })
    }

    /// A configuration from a Java `.properties` file.
    pub fn from_properties_file(path: impl AsRef<std::path::Path>) -> Result<ReaderConfig, Error> {
        ReaderConfig::from_properties(read_file(path.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn java_consumer_names_set_the_typed_fields() {
        let config = ReaderConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("group.id", "g"),
            ("auto.offset.reset", "latest"),
            ("fetch.max.wait.ms", "250"),
            ("fetch.min.bytes", "10"),
        ])
        .expect("valid");
        assert_eq!(config.group_id.as_deref(), Some("g"));
        assert_eq!(config.auto_offset_reset, AutoOffsetReset::Latest);
        assert_eq!(config.max_wait, Duration::from_millis(250));
        assert_eq!(config.min_bytes, 10);
        config.validate().expect("valid together");
        let e = ReaderConfig::new("a:1").set("group.idd", "g").unwrap_err();
        assert!(e.to_string().contains("did you mean `group.id`"), "{e}");
        let e = ReaderConfig::new("a:1")
            .set("isolation.level", "dirty")
            .unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Config {
                field: "isolation_level"
            },
            "{e}"
        );
    }
}
