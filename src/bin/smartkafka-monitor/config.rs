//! The monitor's settings: the command line ([`Args`]), the optional TOML
//! file (`--config`), and [`Settings`], what both resolve to once flags have
//! overridden the file and every value has been checked.
//!
//! Every key of the file, with its default:
//!
//! ```toml
//! bootstrap_servers = "localhost:9092"       # required (here or --bootstrap-servers)
//! client_id = "smartkafka-monitor"
//! metrics_addr = "0.0.0.0:9464"               # Prometheus page at http://<addr>/metrics
//! metrics = true                              # false: serve no metrics
//! redis_url = "redis://127.0.0.1:6379/"       # absent: publish nothing
//! redis_key_prefix = "smartkafka:health:"     # keys are <prefix><topic>
//! redis_ttl_ms = 60000                        # published health expires after this
//! refresh_interval_ms = 5000                  # one collection round per group
//! collection_timeout_ms = 10000               # per topic
//! max_age_ms = 15000                          # older data is reported stale
//! health_threshold = 0.5                      # healthy at or above this score
//! max_lag_for_health = 1000                   # lag at which the score reaches 0.0
//! missing_commit = "fully_lagging"            # or "healthy"
//! quiet = false                               # true: no table on stdout
//! log = "warn"                                # log filter for stderr, e.g. "info" or "warn,smartkafka=debug"
//!
//! [[groups]]                                  # one or more
//! name = "order-processors"
//! topics = ["orders", "refunds"]
//! redis_key_prefix = "orders-app:health:"     # optional, overrides the one above
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use smartkafka::ClientConfig;
use smartkafka::ErrorKind;
use smartkafka::health::{MissingCommit, SmartConfig};

/// Collects the lag of Kafka consumer groups, publishes it to Redis for
/// producers using the smart partitioner, serves it as Prometheus metrics and
/// prints it as a live table.
///
/// Flags override the values of the `--config` file.
#[derive(Debug, Parser)]
#[command(name = "smartkafka-monitor", version)]
pub struct Args {
    /// A TOML file with the settings (every key is listed in the README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The cluster: `host:port[,host:port...]`.
    #[arg(long, value_name = "SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// The client id the monitor's connections use.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A consumer group to watch (repeatable). Replaces the groups of the
    /// file; each watches every `--topic`.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A topic to watch (repeatable). With `--group`, the topics of those
    /// groups; alone, replaces the topics of every group of the file.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Publish the health to this Redis server (`redis://host:port/db`).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// The prefix of the Redis keys (`<prefix><topic>`).
    #[arg(long, value_name = "PREFIX")]
    pub redis_key_prefix: Option<String>,
    /// How long published health lives in Redis, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub redis_ttl_ms: Option<u64>,
    /// Where the Prometheus page is served (`/metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Serve no Prometheus metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// How often lag is collected, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub refresh_interval_ms: Option<u64>,
    /// How long one topic's collection may take, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub collection_timeout_ms: Option<u64>,
    /// Data older than this is reported stale, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_age_ms: Option<u64>,
    /// A partition is healthy at or above this score (0.0 to 1.0).
    #[arg(long, value_name = "SCORE")]
    pub health_threshold: Option<f64>,
    /// The lag at which a partition's score reaches 0.0.
    #[arg(long, value_name = "RECORDS")]
    pub max_lag_for_health: Option<u64>,
    /// How a partition without a committed offset counts: `fully_lagging`
    /// or `healthy`.
    #[arg(long, value_name = "RULE")]
    pub missing_commit: Option<String>,
    /// Print no table.
    #[arg(long, short)]
    pub quiet: bool,
    /// What is logged to stderr: a level (`warn`, `info`, `debug`) or
    /// filter directives (`warn,smartkafka=debug`).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

/// The file, as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bootstrap_servers: Option<String>,
    client_id: Option<String>,
    metrics_addr: Option<String>,
    metrics: Option<bool>,
    redis_url: Option<String>,
    redis_key_prefix: Option<String>,
    redis_ttl_ms: Option<u64>,
    refresh_interval_ms: Option<u64>,
    collection_timeout_ms: Option<u64>,
    max_age_ms: Option<u64>,
    health_threshold: Option<f64>,
    max_lag_for_health: Option<u64>,
    missing_commit: Option<String>,
    quiet: Option<bool>,
    log: Option<String>,
    #[serde(default)]
    groups: Vec<FileGroup>,
}

/// One `[[groups]]` entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    name: String,
    #[serde(default)]
    topics: Vec<String>,
    redis_key_prefix: Option<String>,
}

/// A setting that cannot be used, with the key (as the file spells it) at
/// fault.
#[derive(Debug)]
pub struct ConfigError {
    /// The key at fault, e.g. `health_threshold` or `groups[1].topics`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Redis publishing settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The server.
    pub url: String,
    /// How long published health lives.
    pub ttl: Duration,
}

/// One watched group, ready to start.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// The health settings (validated; `publish_to` is added at start).
    pub smart: SmartConfig,
    /// The Redis key prefix of this group's topics.
    pub redis_key_prefix: String,
}

/// Everything the monitor runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cluster connection.
    pub client: ClientConfig,
    /// Where the Prometheus page is served; `None` for no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Where health is published; `None` to publish nothing.
    pub redis: Option<RedisSettings>,
    /// The watched groups.
    pub groups: Vec<GroupSettings>,
    /// How often the table and the metrics are refreshed.
    pub refresh_interval: Duration,
    /// No table.
    pub quiet: bool,
    /// The log filter (checked).
    pub log: String,
}

const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9464";
const DEFAULT_REDIS_PREFIX: &str = "smartkafka:health:";

/// The key of the monitor's settings that a `SmartConfig` field error is
/// about.
fn monitor_key(field: &str, group: usize) -> String {
    match field.strip_prefix("smart.").unwrap_or(field) {
        "group" => format!("groups[{group}].name"),
        "topics" => format!("groups[{group}].topics"),
        "refresh_interval" => "refresh_interval_ms".to_owned(),
        "collection_timeout" => "collection_timeout_ms".to_owned(),
        "max_age" => "max_age_ms".to_owned(),
        other => other.to_owned(),
    }
}

/// A library configuration error's message without its own field name
/// (the monitor names its key instead).
fn reason(e: &smartkafka::Error) -> String {
    let text = e.to_string();
    match text
        .strip_prefix("invalid `")
        .and_then(|t| t.split_once("`: "))
    {
        Some((_, rest)) => rest.to_owned(),
        None => text,
    }
}

fn millis(key: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::new(key, "must be greater than zero")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

impl Settings {
    /// Reads the file named by `--config` (if any), applies the flags over
    /// it and checks the result.
    pub fn load(args: &Args) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
                })?;
                parse_file(&text)?
            }
            None => FileConfig::default(),
        };
        Settings::resolve(args, file)
    }

    fn resolve(args: &Args, file: FileConfig) -> Result<Settings, ConfigError> {
        let bootstrap = args
            .bootstrap_servers
            .clone()
            .or(file.bootstrap_servers)
            .ok_or_else(|| {
                ConfigError::new("bootstrap_servers", "required (or --bootstrap-servers)")
            })?;
        let client = ClientConfig::new(&bootstrap).client_id(
            args.client_id
                .clone()
                .or(file.client_id)
                .unwrap_or_else(|| "smartkafka-monitor".to_owned()),
        );
        client.validate().map_err(|e| {
            let key = match e.kind() {
                ErrorKind::Config { field } => (*field).to_owned(),
                _ => "bootstrap_servers".to_owned(),
            };
            ConfigError::new(key, reason(&e))
        })?;

        let serve_metrics = !args.no_metrics && file.metrics.unwrap_or(true);
        let metrics_addr = if serve_metrics {
            let addr = args
                .metrics_addr
                .clone()
                .or(file.metrics_addr)
                .unwrap_or_else(|| DEFAULT_METRICS_ADDR.to_owned());
            Some(addr.parse::<SocketAddr>().map_err(|e| {
                ConfigError::new("metrics_addr", format!("`{addr}` is not host:port: {e}"))
            })?)
        } else {
            None
        };

        let redis = match args.redis_url.clone().or(file.redis_url) {
            Some(url) => {
                // The same check the cache applies, made before anything starts.
                smartkafka::health::RedisCache::new(&url)
                    .map_err(|e| ConfigError::new("redis_url", e.to_string()))?;
                Some(RedisSettings {
                    url,
                    ttl: millis(
                        "redis_ttl_ms",
                        args.redis_ttl_ms.or(file.redis_ttl_ms),
                        60_000,
                    )?,
                })
            }
            None => None,
        };
        let default_prefix = args
            .redis_key_prefix
            .clone()
            .or(file.redis_key_prefix)
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());

        let refresh_interval = millis(
            "refresh_interval_ms",
            args.refresh_interval_ms.or(file.refresh_interval_ms),
            5_000,
        )?;
        let collection_timeout = millis(
            "collection_timeout_ms",
            args.collection_timeout_ms.or(file.collection_timeout_ms),
            10_000,
        )?;
        let max_age = millis("max_age_ms", args.max_age_ms.or(file.max_age_ms), 15_000)?;
        let threshold = args.health_threshold.or(file.health_threshold);
        let max_lag = args.max_lag_for_health.or(file.max_lag_for_health);
        let missing_commit = match args
            .missing_commit
            .as_deref()
            .or(file.missing_commit.as_deref())
        {
            None | Some("fully_lagging") => MissingCommit::FullyLagging,
            Some("healthy") => MissingCommit::Healthy,
            Some(other) => {
                return Err(ConfigError::new(
                    "missing_commit",
                    format!("`{other}` is neither `fully_lagging` nor `healthy`"),
                ));
            }
        };

        // (name, topics, key prefix) per group: flags replace the file's.
        let groups: Vec<(String, Vec<String>, Option<String>)> = if !args.groups.is_empty() {
            args.groups
                .iter()
                .map(|g| (g.clone(), args.topics.clone(), None))
                .collect()
        } else if !args.topics.is_empty() {
            file.groups
                .into_iter()
                .map(|g| (g.name, args.topics.clone(), g.redis_key_prefix))
                .collect()
        } else {
            file.groups
                .into_iter()
                .map(|g| (g.name, g.topics, g.redis_key_prefix))
                .collect()
        };
        if groups.is_empty() {
            return Err(ConfigError::new(
                "groups",
                "name at least one consumer group (a [[groups]] entry or --group)",
            ));
        }

        let mut resolved = Vec::with_capacity(groups.len());
        for (i, (name, topics, prefix)) in groups.into_iter().enumerate() {
            let mut smart = SmartConfig::new(name)
                .topics(topics)
                .refresh_interval(refresh_interval)
                .collection_timeout(collection_timeout)
                .max_age(max_age)
                .missing_commit(missing_commit);
            if let Some(t) = threshold {
                smart = smart.health_threshold(t);
            }
            if let Some(m) = max_lag {
                smart = smart.max_lag_for_health(m);
            }
            smart.validate().map_err(|e| {
                let key = match e.kind() {
                    ErrorKind::Config { field } => monitor_key(field, i),
                    _ => format!("groups[{i}]"),
                };
                ConfigError::new(key, reason(&e))
            })?;
            resolved.push(GroupSettings {
                smart,
                redis_key_prefix: prefix.unwrap_or_else(|| default_prefix.clone()),
            });
        }
        if redis.is_some() {
            check_redis_keys(&resolved)?;
        }

        let log = args
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "warn".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| ConfigError::new("log", format!("`{log}`: {e}")))?;

        Ok(Settings {
            log,
            client,
            metrics_addr,
            redis,
            groups: resolved,
            refresh_interval,
            quiet: args.quiet || file.quiet.unwrap_or(false),
        })
    }
}

/// Two groups publishing the same topic under the same key prefix would
/// overwrite each other's health in Redis.
fn check_redis_keys(groups: &[GroupSettings]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        for topic in &g.smart.topics {
            let key = format!("{}{topic}", g.redis_key_prefix);
            if let Some(first) = seen.insert(key.clone(), i) {
                return Err(ConfigError::new(
                    format!("groups[{i}].redis_key_prefix"),
                    format!(
                        "groups {first} and {i} would both publish `{key}`; give one of them its own redis_key_prefix"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_owned();
        // An unknown or missing key is named in the message; a bad value
        // is found by its position: the key on that line.
        let named = (message.starts_with("unknown field") || message.starts_with("missing field"))
            .then(|| message.split('`').nth(1).map(str::to_owned))
            .flatten();
        let at_span = || {
            let start = e.span()?.start;
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next()?;
            let key = line.split_once('=')?.0.trim();
            (!key.is_empty()).then(|| key.to_owned())
        };
        let key = named
            .or_else(at_span)
            .unwrap_or_else(|| "config".to_owned());
        ConfigError::new(key, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::parse_from(std::iter::once("smartkafka-monitor").chain(flags.iter().copied()))
    }

    fn resolve(flags: &[&str], file: &str) -> Result<Settings, ConfigError> {
        Settings::resolve(&args(flags), parse_file(file)?)
    }

    const FILE: &str = r#"
        bootstrap_servers = "localhost:9092"
        refresh_interval_ms = 500
        health_threshold = 0.4
        [[groups]]
        name = "a"
        topics = ["orders"]
        [[groups]]
        name = "b"
        topics = ["orders", "refunds"]
        redis_key_prefix = "b:"
    "#;

    #[test]
    fn the_file_alone_gives_every_group() {
        let s = resolve(&[], FILE).unwrap();
        assert_eq!(s.groups.len(), 2);
        assert_eq!(s.groups[1].smart.topics, ["orders", "refunds"]);
        assert_eq!(s.groups[1].redis_key_prefix, "b:");
        assert_eq!(s.groups[0].redis_key_prefix, DEFAULT_REDIS_PREFIX);
        assert_eq!(s.groups[0].smart.health_threshold, 0.4);
        assert_eq!(s.refresh_interval, Duration::from_millis(500));
        assert_eq!(s.metrics_addr, Some("0.0.0.0:9464".parse().unwrap()));
        assert!(s.redis.is_none());
    }

    #[test]
    fn flags_override_the_file() {
        let s = resolve(
            &[
                "--health-threshold",
                "0.9",
                "--topic",
                "payments",
                "--metrics-addr",
                "127.0.0.1:1",
            ],
            FILE,
        )
        .unwrap();
        assert!(s.groups.iter().all(|g| g.smart.topics == ["payments"]));
        assert!(s.groups.iter().all(|g| g.smart.health_threshold == 0.9));
        assert_eq!(s.metrics_addr, Some("127.0.0.1:1".parse().unwrap()));

        let s = resolve(&["--group", "c", "--topic", "t", "--no-metrics"], FILE).unwrap();
        assert_eq!(s.groups.len(), 1);
        assert_eq!(s.groups[0].smart.group, "c");
        assert!(s.metrics_addr.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |flags: &[&str], file: &str| resolve(flags, file).unwrap_err().key;
        assert_eq!(
            key(&["--health-threshold", "1.5"], FILE),
            "health_threshold"
        );
        assert_eq!(
            key(&["--refresh-interval-ms", "0"], FILE),
            "refresh_interval_ms"
        );
        assert_eq!(key(&["--group", "g"], FILE), "groups[0].topics");
        assert_eq!(key(&["--metrics-addr", "nowhere"], FILE), "metrics_addr");
        assert_eq!(key(&["--missing-commit", "maybe"], FILE), "missing_commit");
        assert_eq!(key(&["--redis-url", "http://x"], FILE), "redis_url");
        assert_eq!(key(&["--log", "warn,[bad"], FILE), "log");
        assert_eq!(
            key(&[], "[[groups]]\nname = \"g\"\ntopics = [\"t\"]"),
            "bootstrap_servers"
        );
        assert_eq!(key(&[], "bootstrap_servers = \"h:1\""), "groups");
        assert_eq!(
            key(&[], "bootstrap_servers = \"h:1\"\nthreshold = 1"),
            "threshold"
        );
        assert_eq!(
            key(
                &[],
                "bootstrap_servers = \"h:1\"\nhealth_threshold = \"high\""
            ),
            "health_threshold"
        );
    }

    #[test]
    fn two_groups_may_not_publish_the_same_key() {
        let file = FILE.replace("redis_key_prefix = \"b:\"", "");
        let err = resolve(&["--redis-url", "redis://127.0.0.1:1/"], &file).unwrap_err();
        assert_eq!(err.key, "groups[1].redis_key_prefix");
        assert!(resolve(&["--redis-url", "redis://127.0.0.1:1/"], FILE).is_ok());
    }
}
