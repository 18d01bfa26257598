//! String-keyed configuration, as Java and librdkafka users write it: the
//! Java client's property names (`linger.ms`, `batch.size`, ...) set on
//! [`ClientConfig`], [`ProducerConfig`](crate::ProducerConfig) and
//! [`ReaderConfig`](crate::consumer::ReaderConfig), one pair at a time,
//! from an iterator of pairs, or from a Java `.properties` file. A key this
//! client does not know is an error that suggests the closest known one; a
//! value that does not parse is an error naming the key.
//!
//! Keys are matched exactly (Java's are case-sensitive too). Every typed
//! setter's documentation names its property.
//!
//! This module holds the parsing rules every configuration shares, the
//! client's own keys, and the keys of the settings that sit below it: the
//! security settings (`security`) and the smart partitioner's (`smart`).
//! The producer's and the consumer's keys live with their configurations
//! (`producer/properties.rs`, `consumer/properties.rs`), which sit above.

mod security;
mod smart;

use std::time::Duration;

use crate::client_config::ClientConfig;
use crate::error::Error;
use crate::partitioner::PartitionStrategy;

pub(crate) use security::SECURITY_KEYS;
#[cfg(feature = "tokio-runtime")]
pub(crate) use smart::SMART_KEYS;

/// The keys every client takes.
pub(crate) const CLIENT_KEYS: &[&str] = &[
    "bootstrap.servers",
    "client.id",
    "request.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
];

/// Reads Java `.properties` text: `key=value` or `key: value` (or
/// `key value`) per line, `#` and `!` comment lines, blank lines skipped,
/// both sides trimmed. Line continuations and escapes are not supported.
pub(crate) fn parse_text(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .map(|line| {
            let split = line
                .find(['=', ':'])
                .or_else(|| line.find(char::is_whitespace));
            match split {
                Some(at) => (
                    line[..at].trim().to_string(),
                    line[at + 1..].trim().to_string(),
                ),
                None => (line.to_string(), String::new()),
            }
        })
        .collect()
}

/// Reads a `.properties` file (see [`parse_text`]).
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<(String, String)>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config("properties", format!("cannot read {}: {e}", path.display())))?;
    Ok(parse_text(&text))
}

/// The error for a key no config of this kind takes.
pub(crate) fn unknown_key(key: &str, known: &[&[&str]]) -> Error {
    let closest = known
        .iter()
        .flat_map(|keys| keys.iter())
        .map(|k| (edit_distance(key, k), *k))
        .min();
    let hint = match closest {
        Some((d, k)) if d <= key.len().max(3) / 2 => format!("; did you mean `{k}`?"),
        _ => String::new(),
    };
    Error::config("properties", format!("unknown key `{key}`{hint}"))
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A millisecond value, as the `*.ms` keys take.
pub(crate) fn millis(field: &'static str, key: &str, value: &str) -> Result<Duration, Error> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            Error::config(
                field,
                format!("`{key}`: `{value}` is not a count of milliseconds"),
            )
        })
}

/// A non-negative whole number (bytes, counts).
pub(crate) fn number(field: &'static str, key: &str, value: &str) -> Result<usize, Error> {
    value
        .parse::<usize>()
        .map_err(|_| Error::config(field, format!("`{key}`: `{value}` is not a whole number")))
}

/// `true` or `false`, as Java writes them.
pub(crate) fn boolean(field: &'static str, key: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::config(
            field,
            format!("`{key}`: `{value}` is not true or false"),
        )),
    }
}

/// A value that is not one of `choices`.
pub(crate) fn not_one_of(field: &'static str, key: &str, value: &str, choices: &str) -> Error {
    Error::config(field, format!("`{key}`: `{value}` is not one of {choices}"))
}

/// A partitioner by name: librdkafka's `partitioner` values
/// (`murmur2_random`, `consistent`, `consistent_random`), plus `default`
/// (or `murmur2`) and `round_robin`, or the Java class names of the
/// built-in and round-robin partitioners (`partitioner.class`).
pub(crate) fn strategy_by_name(
    field: &'static str,
    key: &str,
    value: &str,
) -> Result<PartitionStrategy, Error> {
    Ok(match value {
        "default"
        | "murmur2"
        | "org.apache.kafka.clients.producer.internals.DefaultPartitioner"
        | "org.apache.kafka.clients.producer.internals.BuiltInPartitioner" => {
            PartitionStrategy::Default
        }
        "murmur2_random" => PartitionStrategy::Murmur2Random,
        "consistent" => PartitionStrategy::Consistent,
        "consistent_random" => PartitionStrategy::ConsistentRandom,
        "round_robin" | "org.apache.kafka.clients.producer.RoundRobinPartitioner" => {
            PartitionStrategy::RoundRobin
        }
        _ => {
            return Err(not_one_of(
                field,
                key,
                value,
                if field == "partitioner" {
                    "default, murmur2_random, consistent, consistent_random, round_robin, \
                     smart (or the Java built-in and RoundRobinPartitioner class names)"
                } else {
                    "default, murmur2_random, consistent, consistent_random, round_robin \
                     (or the Java built-in and RoundRobinPartitioner class names)"
                },
            ));
        }
    })
}

impl ClientConfig {
    /// Sets one setting by its Java property name: `bootstrap.servers`,
    /// `client.id`, `request.timeout.ms`,
    /// `socket.connection.setup.timeout.ms` (the connect timeout),
    /// `reconnect.backoff.ms`, `reconnect.backoff.max.ms`.
    ///
    /// ```
    /// let config = smartkafka::ClientConfig::new("")
    ///     .set("bootstrap.servers", "localhost:9092")?
    ///     .set("request.timeout.ms", "5000")?;
    /// assert_eq!(config.request_timeout, std::time::Duration::from_secs(5));
    /// assert!(smartkafka::ClientConfig::new("").set("request.timeout", "5").is_err());
    /// # Ok::<(), smartkafka::Error>(())
    /// ```
    pub fn set(mut self, key: &str, value: &str) -> Result<ClientConfig, Error> {
        if self.set_client_key(key, value)? {
            Ok(self)
        } else {
            Err(unknown_key(key, &[CLIENT_KEYS, SECURITY_KEYS]))
        }
    }

    /// [`set`](Self::set) for every config holding a `ClientConfig`:
    /// `Ok(false)`, with nothing changed, when `key` is not a client key.
    pub(crate) fn set_client_key(&mut self, key: &str, value: &str) -> Result<bool, Error> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = ClientConfig::new(value).bootstrap_servers;
            }
            "client.id" => self.client_id = value.to_string(),
            "request.timeout.ms" => {
                self.request_timeout = millis("request_timeout", key, value)?;
            }
            "socket.connection.setup.timeout.ms" => {
                self.connect_timeout = millis("connect_timeout", key, value)?;
            }
            "reconnect.backoff.ms" => {
                self.reconnect_backoff = millis("reconnect_backoff", key, value)?;
            }
            "reconnect.backoff.max.ms" => {
                self.reconnect_backoff_max = millis("reconnect_backoff_max", key, value)?;
            }
            _ => return security::set_security_key(self, key, value),
        }
        Ok(true)
    }

    /// A configuration from `(key, value)` pairs of Java property names,
    /// starting from the defaults.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ClientConfig, Error> {
        pairs
            .into_iter()
            .try_fold(ClientConfig::new(""), |c, (k, v)| {
                c.set(k.as_ref(), v.as_ref())
            })
    }

    /// A configuration from a Java `.properties` file.
    pub fn from_properties_file(path: impl AsRef<std::path::Path>) -> Result<ClientConfig, Error> {
        ClientConfig::from_properties(read_file(path.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_text_is_read_as_java_writes_it() {
        let pairs = parse_text(
            "# a comment\n! another\n\nbootstrap.servers = a:1,b:2\nclient.id: billing\nlinger.ms 5\n",
        );
        assert_eq!(
            pairs,
            [
                ("bootstrap.servers".to_string(), "a:1,b:2".to_string()),
                ("client.id".to_string(), "billing".to_string()),
                ("linger.ms".to_string(), "5".to_string()),
            ]
        );
    }

    #[test]
    fn an_unknown_key_suggests_the_closest() {
        let e = unknown_key("linger.mss", &[&["linger.ms", "batch.size"]]);
        assert!(e.to_string().contains("did you mean `linger.ms`"), "{e}");
        let e = unknown_key("zzzzzzzzzzzz", &[&["linger.ms"]]);
        assert!(!e.to_string().contains("did you mean"), "{e}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
