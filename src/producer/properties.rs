//! The producer's settings by their Java property names (see
//! [`crate::properties`] for the format and the error rules).

use crate::compression::Compression;
use crate::engine::Acks;
use crate::error::Error;
use crate::properties::{
    CLIENT_KEYS, SECURITY_KEYS, SMART_KEYS, boolean, millis, not_one_of, number, read_file,
    strategy_by_name, unknown_key,
};

use crate::health::SmartConfig;

use super::ProducerConfig;
use crate::partitioner::PartitionStrategy;

/// Two partitioners named at once: `setting` and the one already set.
fn conflict(setting: &str, current: &PartitionStrategy) -> Error {
    let current = match current {
        PartitionStrategy::Smart(_) => "the smart partitioner (`smart.*` keys)".to_owned(),
        other => format!("the {other:?} partitioner"),
    };
    Error::config(
        "partitioner",
        format!(
            "`{setting}` conflicts with {current}; with the smart partitioner, name the \
             strategy used without health data with `smart.fallback`"
        ),
    )
}

/// The keys the producer takes besides [`CLIENT_KEYS`].
const PRODUCER_KEYS: &[&str] = &[
    "acks",
    "linger.ms",
    "batch.size",
    "buffer.memory",
    "queue.buffering.max.messages",
    "max.block.ms",
    "max.request.size",
    "delivery.timeout.ms",
    "retries",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "max.in.flight.requests.per.connection",
    "compression.type",
    "compression.level",
    "compression.gzip.level",
    "compression.zstd.level",
    "metadata.max.age.ms",
    "partitioner",
    "partitioner.class",
    "enable.idempotence",
    "transactional.id",
    "transaction.timeout.ms",
];

impl ProducerConfig {
    /// Sets one setting by its Java property name, as in a Java client's
    /// `Properties`: `bootstrap.servers`, `client.id`, `acks`
    /// (`all`/`-1`, `1`, `0`), `linger.ms`, `batch.size`, `buffer.memory`,
    /// librdkafka's `queue.buffering.max.messages`,
    /// `max.block.ms`, `max.request.size`, `delivery.timeout.ms`,
    /// `retry.backoff.ms`, `retry.backoff.max.ms`,
    /// `max.in.flight.requests.per.connection`, `compression.type`
    /// (`none`, `gzip`, `snappy`, `lz4`, `zstd`), `compression.gzip.level`
    /// / `compression.zstd.level` (or librdkafka's `compression.level`),
    /// `metadata.max.age.ms`, `partitioner` (librdkafka's names:
    /// `murmur2_random`, `consistent`, `consistent_random`, plus `default`,
    /// `round_robin` and `smart`) or `partitioner.class` (the Java class
    /// names of the built-in and round-robin partitioners), `enable.idempotence`,
    /// `transactional.id`, `transaction.timeout.ms`, `request.timeout.ms`,
    /// `socket.connection.setup.timeout.ms`, `reconnect.backoff.ms`,
    /// `reconnect.backoff.max.ms`.
    ///
    /// `retries` is accepted only at the Java default (`2147483647`): this
    /// client retries until `delivery.timeout.ms`, which is the setting to
    /// change. `partitioner=smart` names the smart partitioner
    /// ([`PartitionStrategy::Smart`]); any `smart.*` key turns it on as well
    /// and sets one of its settings (see [`SmartConfig::set`]), in any
    /// order. Another partitioner named with it is an error (the one used
    /// without health data is `smart.fallback`). Its scorer, collector and
    /// caches, and callbacks (`on_delivery`, statistics), are set in code.
    ///
    /// ```
    /// use smartkafka::ProducerConfig;
    /// let config = ProducerConfig::new("localhost:9092")
    ///     .set("linger.ms", "20")?
    ///     .set("compression.type", "lz4")?
    ///     .set("acks", "all")?;
    /// assert_eq!(config.linger, std::time::Duration::from_millis(20));
    /// let e = ProducerConfig::new("localhost:9092").set("linger.mss", "20").unwrap_err();
    /// assert!(e.to_string().contains("did you mean `linger.ms`"));
    /// # Ok::<(), smartkafka::Error>(())
    /// ```
    pub fn set(mut self, key: &str, value: &str) -> Result<ProducerConfig, Error> {
        if self.client.set_client_key(key, value)? {
            return Ok(self);
        }
        if key.starts_with("smart.") {
            let smart = match &self.partitioner {
                PartitionStrategy::Smart(smart) => smart.as_ref().clone(),
                PartitionStrategy::Default => SmartConfig::new(""),
                other => return Err(conflict(key, other)),
            };
            return Ok(self.smart_partitioner(smart.set(key, value)?));
        }
        Ok(match key {
            "acks" => self.acks(match value {
                "all" | "-1" => Acks::All,
                "1" => Acks::Leader,
                "0" => Acks::None,
                _ => return Err(not_one_of("acks", key, value, "all, -1, 1, 0")),
            }),
            "linger.ms" => self.linger(millis("linger", key, value)?),
            "batch.size" => self.batch_size(number("batch_size", key, value)?),
            "buffer.memory" => self.buffer_memory(number("buffer_memory", key, value)?),
            "queue.buffering.max.messages" => {
                self.max_buffered_records(number("max_buffered_records", key, value)?)
            }
            "max.block.ms" => self.max_block(millis("max_block", key, value)?),
            "max.request.size" => self.max_request_size(number("max_request_size", key, value)?),
            "delivery.timeout.ms" => self.delivery_timeout(millis("delivery_timeout", key, value)?),
            "retries" => {
                if value != i32::MAX.to_string() {
                    return Err(Error::config(
                        "retries",
                        format!(
                            "`retries`: `{value}` is not supported; this client retries until \
                             delivery.timeout.ms, set that instead"
                        ),
                    ));
                }
                self
            }
            "retry.backoff.ms" => self.retry_backoff(millis("retry_backoff", key, value)?),
            "retry.backoff.max.ms" => {
                self.retry_backoff_max(millis("retry_backoff_max", key, value)?)
            }
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight(number("max_in_flight", key, value)?)
            }
            "compression.type" => self.compression(match value {
                "none" => Compression::None,
                "gzip" => Compression::Gzip,
                "snappy" => Compression::Snappy,
                "lz4" => Compression::Lz4,
                "zstd" => Compression::Zstd,
                _ => {
                    return Err(not_one_of(
                        "compression",
                        key,
                        value,
                        "none, gzip, snappy, lz4, zstd",
                    ));
                }
            }),
            "compression.level" | "compression.gzip.level" | "compression.zstd.level" => {
                let level = value.parse::<i32>().map_err(|_| {
                    Error::config(
                        "compression_level",
                        format!("`{key}`: `{value}` is not a whole number"),
                    )
                })?;
                self.compression_level(level)
            }
            "metadata.max.age.ms" => self.metadata_max_age(millis("metadata_max_age", key, value)?),
            "partitioner" | "partitioner.class" => match (&self.partitioner, value) {
                // Already on through `smart.*` keys.
                (PartitionStrategy::Smart(_), "smart") => self,
                (_, "smart") => self.smart_partitioner(SmartConfig::new("")),
                (PartitionStrategy::Smart(_), _) => {
                    strategy_by_name("partitioner", key, value)?;
                    return Err(conflict(&format!("{key}={value}"), &self.partitioner));
                }
                _ => self.partitioner(strategy_by_name("partitioner", key, value)?),
            },
            "enable.idempotence" => self.idempotence(boolean("idempotence", key, value)?),
            "transactional.id" => self.transactional_id(value),
            "transaction.timeout.ms" => {
                self.transaction_timeout(millis("transaction_timeout", key, value)?)
            }
            _ => {
                return Err(unknown_key(
                    key,
                    &[CLIENT_KEYS, SECURITY_KEYS, PRODUCER_KEYS, SMART_KEYS],
                ));
            }
        })
    }

    /// A configuration from `(key, value)` pairs of Java property names
    /// (see [`set`](Self::set)), starting from the defaults.
    ///
    /// ```
    /// let config = smartkafka::ProducerConfig::from_properties([
    ///     ("bootstrap.servers", "localhost:9092"),
    ///     ("batch.size", "65536"),
    /// ])?;
    /// assert_eq!(config.batch_size, 65536);
    /// # Ok::<(), smartkafka::Error>(())
    /// ```
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ProducerConfig, Error> {
        pairs
            .into_iter()
            .try_fold(ProducerConfig::new(""), |c, (k, v)| {
                c.set(k.as_ref(), v.as_ref())
            })
    }

    /// A configuration from a Java `.properties` file (`key=value` lines,
    /// `#` comments).
    pub fn from_properties_file(
        path: impl AsRef<std::path::Path>,
    ) -> Result<ProducerConfig, Error> {
        ProducerConfig::from_properties(read_file(path.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;
    use crate::partitioner::PartitionStrategy;

    #[test]
    fn java_names_set_the_typed_fields() {
        let config = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1, b:2"),
            ("client.id", "billing"),
            ("acks", "1"),
            ("linger.ms", "7"),
            ("batch.size", "32768"),
            ("buffer.memory", "1048576"),
            ("queue.buffering.max.messages", "5000"),
            ("max.block.ms", "1000"),
            ("delivery.timeout.ms", "90000"),
            ("retries", "2147483647"),
            ("max.in.flight.requests.per.connection", "3"),
            ("compression.type", "zstd"),
            ("compression.zstd.level", "5"),
            ("partitioner", "consistent_random"),
            ("enable.idempotence", "false"),
            ("request.timeout.ms", "20000"),
        ])
        .expect("valid");
        assert_eq!(config.client.bootstrap_servers, ["a:1", "b:2"]);
        assert_eq!(config.client.client_id, "billing");
        assert_eq!(config.acks, Acks::Leader);
        assert_eq!(config.linger, Duration::from_millis(7));
        assert_eq!(config.batch_size, 32768);
        assert_eq!(config.buffer_memory, 1 << 20);
        assert_eq!(config.max_buffered_records, 5000);
        assert_eq!(config.max_block, Duration::from_secs(1));
        assert_eq!(config.delivery_timeout, Duration::from_secs(90));
        assert_eq!(config.max_in_flight, 3);
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.compression_level, Some(5));
        assert!(matches!(
            config.partitioner,
            PartitionStrategy::ConsistentRandom
        ));
        assert_eq!(config.enable_idempotence, Some(false));
        assert_eq!(config.client.request_timeout, Duration::from_secs(20));
        config.validate().expect("and valid together");
    }

    #[test]
    fn smart_keys_turn_the_smart_partitioner_on() {
        let config = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("smart.group", "order-processors"),
            ("smart.topics", "orders"),
            ("smart.max.age.ms", "30000"),
        ])
        .expect("valid");
        let smart = config
            .partitioner
            .smart_config()
            .expect("smart partitioner on");
        assert_eq!(smart.group, "order-processors");
        assert_eq!(smart.topics, ["orders"]);
        assert_eq!(smart.max_age, Duration::from_secs(30));
        config.validate().expect("and valid together");
        // Without a group the smart settings are incomplete, and the
        // error says which one is missing.
        let e = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("smart.topics", "orders"),
        ])
        .expect("each pair parses")
        .validate()
        .unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Config {
                field: "smart.group"
            },
            "{e}"
        );
        let e = ProducerConfig::new("a:1")
            .set("smart.grup", "g")
            .unwrap_err();
        assert!(e.to_string().contains("did you mean `smart.group`"), "{e}");
    }

    #[test]
    fn partitioner_smart_names_the_smart_partitioner_in_any_order() {
        let keys = [
            ("bootstrap.servers", "a:1"),
            ("partitioner", "smart"),
            ("smart.group", "g"),
            ("smart.topics", "orders"),
            ("smart.fallback", "round_robin"),
        ];
        let forwards = ProducerConfig::from_properties(keys).expect("valid");
        let backwards = ProducerConfig::from_properties(keys.into_iter().rev()).expect("valid");
        for config in [forwards, backwards] {
            let smart = config.partitioner.smart_config().expect("smart");
            assert_eq!(smart.group, "g");
            assert_eq!(smart.topics, ["orders"]);
            assert_eq!(smart.fallback.name(), "RoundRobin");
            config.validate().expect("valid together");
        }
        // `partitioner=smart` alone is incomplete, and says what is missing.
        let e = ProducerConfig::from_properties([
            ("bootstrap.servers", "a:1"),
            ("partitioner", "smart"),
        ])
        .expect("parses")
        .validate()
        .unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Config {
                field: "smart.group"
            },
            "{e}"
        );
        // Another partitioner as well is a conflict, whichever comes first.
        for pairs in [
            [("partitioner", "round_robin"), ("smart.group", "g")],
            [("smart.group", "g"), ("partitioner", "round_robin")],
        ] {
            let e = ProducerConfig::from_properties(pairs).unwrap_err();
            assert_eq!(
                e.kind(),
                &ErrorKind::Config {
                    field: "partitioner"
                },
                "{e}"
            );
            assert!(e.to_string().contains("smart.fallback"), "{e}");
        }
        // The smart partitioner cannot be its own fallback.
        let e = ProducerConfig::new("a:1")
            .smart_partitioner(SmartConfig::new("g").topics(["t"]).fallback(
                PartitionStrategy::smart(SmartConfig::new("g").topics(["t"])),
            ))
            .validate()
            .unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Config {
                field: "smart.fallback"
            },
            "{e}"
        );
    }

    #[test]
    fn bad_keys_and_values_name_what_is_wrong() {
        let base = || ProducerConfig::new("a:1");
        let e = base().set("batch.szie", "1").unwrap_err();
        assert!(e.to_string().contains("did you mean `batch.size`"), "{e}");
        for (key, value, field) in [
            ("linger.ms", "soon", "linger"),
            ("acks", "most", "acks"),
            ("compression.type", "brotli", "compression"),
            ("enable.idempotence", "yes", "idempotence"),
            ("retries", "3", "retries"),
            ("partitioner", "sticky-ish", "partitioner"),
        ] {
            let e = base().set(key, value).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::Config { field }, "{e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn a_properties_file_is_read() {
        let path =
            std::env::temp_dir().join(format!("smartkafka-{}.properties", std::process::id()));
        std::fs::write(&path, "# producer\nbootstrap.servers=a:1\nlinger.ms: 15\n").unwrap();
        let config = ProducerConfig::from_properties_file(&path);
        std::fs::remove_file(&path).ok();
        let config = config.expect("valid file");
        assert_eq!(config.linger, Duration::from_millis(15));
        assert!(ProducerConfig::from_properties_file("/nonexistent/x.properties").is_err());
    }
}
