//! Typed producer configuration: [`ProducerConfig`], its defaults, and the
//! one [`validate`](ProducerConfig::validate) that checks every field and
//! every cross-field rule, naming the field at fault.
//!
//! Defaults follow the Java client (Kafka 4.0) unless a setter says why not.

use std::time::Duration;

use crate::client_config::ClientConfig;
use crate::compression::Compression;
use crate::engine::{Acks, BufferOwner, CompressAt, EngineConfig};
use crate::error::Error;
use crate::health::SmartConfig;
use crate::partitioner::PartitionStrategy;
use crate::producer::{DeliveryCallback, StatisticsCallback};

/// Producer settings. Build one with [`ProducerConfig::new`] and the
/// setters, or through [`crate::Producer::builder`].
///
/// ```
/// use std::time::Duration;
/// use smartkafka::{Acks, ProducerConfig};
/// use smartkafka::compression::Compression;
/// let config = ProducerConfig::new("localhost:9092")
///     .acks(Acks::All)
///     .linger(Duration::from_millis(10))
///     .compression(Compression::Lz4);
/// config.validate()?;
///
/// let bad = ProducerConfig::new("localhost:9092").delivery_timeout(Duration::from_secs(1));
/// assert!(bad.validate().unwrap_err().to_string().contains("delivery_timeout"));
/// # Ok::<(), smartkafka::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Connection settings shared with the other clients.
    pub client: ClientConfig,
    /// Acknowledgements required per request.
    pub acks: Acks,
    /// How long a batch that is not full waits for more records.
    pub linger: Duration,
    /// Target size in bytes of a batch (uncompressed).
    pub batch_size: usize,
    /// Bytes of records the producer may hold before `send` waits.
    pub buffer_memory: usize,
    /// Records the producer may hold, sent and not yet delivered, before
    /// `try_send` is refused and `send` waits; 0 for no limit but
    /// `buffer_memory`.
    pub max_buffered_records: usize,
    /// How long `send` may wait for buffer space or topic metadata.
    pub max_block: Duration,
    /// The largest Produce request in bytes, and so the largest record.
    pub max_request_size: usize,
    /// Upper bound on the time from `send` to a delivery report.
    pub delivery_timeout: Duration,
    /// First retry backoff; doubles per attempt.
    pub retry_backoff: Duration,
    /// Largest retry backoff.
    pub retry_backoff_max: Duration,
    /// Produce requests in flight per broker connection.
    pub max_in_flight: usize,
    /// Codec for record batches.
    pub compression: Compression,
    /// Codec level; `None` for the codec's default.
    pub compression_level: Option<i32>,
    /// Metadata is refreshed at least this often.
    pub metadata_max_age: Duration,
    /// How records without an explicit partition are placed. With
    /// [`PartitionStrategy::Smart`] the producer runs a health manager and
    /// places records with a [`SmartPartitioner`](crate::health::SmartPartitioner).
    pub partitioner: PartitionStrategy,
    /// Seed for the partitioner's and the retry jitter's randomness; `None`
    /// (the default) draws one from the operating system per producer.
    pub seed: Option<u64>,
    /// Idempotence: `None` (the default) turns it on unless `acks` or
    /// `max_in_flight` rule it out, as the Java client does; `Some(true)`
    /// insists on it (a conflicting setting is then a configuration error);
    /// `Some(false)` turns it off.
    pub enable_idempotence: Option<bool>,
    /// Transactions: with an id, the producer writes atomically across
    /// partitions through `init_transactions`, `begin_transaction`,
    /// `commit_transaction` and `abort_transaction`. Implies idempotence.
    pub transactional_id: Option<String>,
    /// How long the coordinator lets a transaction stay open before it
    /// aborts it (default 60 s, sent with `init_transactions`).
    pub transaction_timeout: Duration,
    /// Receives the reports of records sent with a tag
    /// ([`Producer::send_tagged`](crate::Producer::send_tagged)); `None`
    /// drops them.
    pub on_delivery: Option<DeliveryCallback>,
    /// Periodic statistics: the interval and the callback that receives
    /// each snapshot (librdkafka's `statistics.interval.ms`); `None` (the
    /// default) reports none.
    pub statistics: Option<(Duration, StatisticsCallback)>,
}

impl ProducerConfig {
    /// Defaults for a cluster reachable at `bootstrap_servers`
    /// (comma-separated `host:port`).
    pub fn new(bootstrap_servers: &str) -> ProducerConfig {
        ProducerConfig::from_client(ClientConfig::new(bootstrap_servers))
    }

    /// Defaults on top of existing connection settings.
    pub fn from_client(client: ClientConfig) -> ProducerConfig {
        ProducerConfig {
            client,
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_buffered_records: 100_000,
            max_block: Duration::from_secs(60),
            max_request_size: 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight: 5,
            compression: Compression::None,
            compression_level: None,
            metadata_max_age: Duration::from_secs(300),
            partitioner: PartitionStrategy::Default,
            seed: None,
            enable_idempotence: None,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            on_delivery: None,
            statistics: None,
        }
    }

    /// The client id sent with every request (default `"smartkafka"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client = self.client.client_id(id);
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

    /// How long a request may wait for its response (default 30 s); a
    /// request that times out closes its connection.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.request_timeout(timeout);
        self
    }

    /// How long opening a connection may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.connect_timeout(timeout);
        self
    }

    /// Acknowledgements (default [`Acks::All`], the Java default since 3.0).
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Linger time (default 5 ms: the Java client's `linger.ms` default since
    /// Kafka 4.0, KIP-1030; earlier versions used 0). A batch is sent when it
    /// is full or has waited this long (to the microsecond on Linux; a batch
    /// whose linger ends within a tenth of it, at most 1 ms, goes with the
    /// request being made), or sooner when a request goes to its partition's
    /// leader anyway: like the Java client, a request to a broker takes what
    /// each of the broker's partitions holds.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Batch size in bytes (default 16 384).
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// Buffer memory in bytes (default 32 MiB): what records not yet
    /// settled may hold, counting their bytes and the producer's
    /// bookkeeping for them. A `send` that finds it full waits (up to
    /// [`max_block`](Self::max_block); `try_send` returns
    /// [`ErrorKind::BufferExhausted`](crate::ErrorKind::BufferExhausted)).
    /// A `send` (or `send_tagged`) also waits while 16,384 records are
    /// handed to the producer's task and not yet taken into batches: a
    /// sender faster than the task then waits for it instead of filling
    /// the buffer with records that take more memory, and wait longer,
    /// queued than encoded. `try_send`, which cannot wait, fails on a full
    /// buffer, and while the producer holds
    /// [`max_buffered_records`](Self::max_buffered_records).
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// Records the producer may hold (default 100,000; 0 for no limit but
    /// [`buffer_memory`](Self::buffer_memory)): every record sent and not
    /// yet delivered counts, whether it waits for the producer's task, in
    /// a batch, or in a request in flight, as librdkafka's
    /// `queue.buffering.max.messages` counts them (this is its default, and
    /// the property name is taken by [`set`](Self::set)). At the limit
    /// `try_send` fails with
    /// [`ErrorKind::BufferExhausted`](crate::ErrorKind::BufferExhausted),
    /// which is retriable, and `send` waits for records to settle (up to
    /// [`max_block`](Self::max_block)), as it waits for buffer space: a
    /// sender that outruns the brokers (or a loop of `try_send` that never
    /// yields to the producer's task) holds this many records at most, not
    /// a whole `buffer_memory` of them.
    ///
    /// ```
    /// use smartkafka::ProducerConfig;
    /// let config = ProducerConfig::new("localhost:9092").max_buffered_records(20_000);
    /// assert_eq!(config.max_buffered_records, 20_000);
    /// let same = ProducerConfig::new("localhost:9092").set("queue.buffering.max.messages", "20000")?;
    /// assert_eq!(same.max_buffered_records, 20_000);
    /// # Ok::<(), smartkafka::Error>(())
    /// ```
    pub fn max_buffered_records(mut self, records: usize) -> Self {
        self.max_buffered_records = records;
        self
    }

    /// Longest wait in `send` for buffer space or metadata (default 60 s).
    pub fn max_block(mut self, wait: Duration) -> Self {
        self.max_block = wait;
        self
    }

    /// Maximum request size in bytes (default 1 MiB).
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// Delivery timeout (default 120 s); must be at least linger plus the
    /// request timeout.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// First retry backoff (default 100 ms); it doubles per attempt up to
    /// [`retry_backoff_max`](Self::retry_backoff_max), with ±20 % jitter.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Largest retry backoff (default 1 s).
    pub fn retry_backoff_max(mut self, backoff: Duration) -> Self {
        self.retry_backoff_max = backoff;
        self
    }

    /// Produce requests in flight per connection (default 5). Without
    /// idempotence a partition never has more than one batch in flight, so
    /// order holds; different partitions share the pipeline.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Batch compression (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Compression level (default: the codec's own, 6 for gzip and 3 for
    /// zstd). gzip takes 0..=9 and zstd its own range (negative fast levels
    /// up to 22); a level outside it is a configuration error. lz4 and
    /// snappy have no levels and ignore it.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = Some(level);
        self
    }

    /// Metadata maximum age (default 5 minutes).
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.metadata_max_age = age;
        self
    }

    /// Partitioning strategy (default [`PartitionStrategy::Default`]: Java's
    /// murmur2 with KIP-794 sticky keyless placement; see
    /// [`crate::partitioner`] for the others).
    pub fn partitioner(mut self, strategy: PartitionStrategy) -> Self {
        self.partitioner = strategy;
        self
    }

    /// Seed for the partitioner and retry jitter. By default each producer
    /// draws its own from the operating system, so a fleet of producers
    /// does not pick the same sticky partitions or retry at the same
    /// moments; set one for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Idempotence (default on, KIP-98): every batch carries a producer id,
    /// epoch and sequence numbers, so the broker writes a retried batch only
    /// once and in order, with up to 5 requests in flight per partition.
    /// Needs `acks` = all and `max_in_flight` of at most 5. Turned on
    /// explicitly, a conflicting setting fails [`validate`](Self::validate);
    /// left at the default, such a setting turns idempotence off.
    pub fn idempotence(mut self, enabled: bool) -> Self {
        self.enable_idempotence = Some(enabled);
        self
    }

    /// Makes the producer transactional (default: not): records are sent
    /// inside transactions that commit or abort atomically, and a later
    /// producer with the same id fences this one. Implies idempotence, so
    /// `acks` must be all and `max_in_flight` at most 5.
    ///
    /// ```
    /// use smartkafka::ProducerConfig;
    /// let config = ProducerConfig::new("k:9092").transactional_id("billing-writer-1");
    /// assert!(config.is_idempotent());
    /// assert!(ProducerConfig::new("k:9092").transactional_id("").validate().is_err());
    /// ```
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// How long an open transaction may last before the coordinator aborts
    /// it (default 60 s; brokers cap it at `transaction.max.timeout.ms`,
    /// 15 minutes by default).
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// Statistics every `interval` to `callback` (default none; see
    /// [`ProducerBuilder::on_statistics`](crate::ProducerBuilder::on_statistics)).
    pub fn statistics(mut self, interval: Duration, callback: StatisticsCallback) -> Self {
        self.statistics = Some((interval, callback));
        self
    }

    /// The callback for the reports of records sent with a tag (default
    /// none: they are dropped).
    pub fn on_delivery(mut self, callback: DeliveryCallback) -> Self {
        self.on_delivery = Some(callback);
        self
    }

    /// Lag-aware partitioning (default off): the producer watches the lag of
    /// `smart.group` on `smart.topics` in the background and sends keyless
    /// records to the partitions whose consumers keep up. A shorthand for
    /// [`partitioner`](Self::partitioner)`(`[`PartitionStrategy::smart`]`(smart))`;
    /// see [`crate::health`].
    ///
    /// ```
    /// use smartkafka::ProducerConfig;
    /// use smartkafka::health::SmartConfig;
    ///
    /// let config = ProducerConfig::new("k:9092")
    ///     .smart_partitioner(SmartConfig::new("order-processors").topics(["orders"]));
    /// assert_eq!(config.partitioner.smart_config().unwrap().topics, ["orders"]);
    /// ```
    pub fn smart_partitioner(self, smart: SmartConfig) -> Self {
        self.partitioner(PartitionStrategy::smart(smart))
    }

    /// Whether the producer will be idempotent with these settings.
    ///
    /// ```
    /// use smartkafka::{Acks, ProducerConfig};
    /// assert!(ProducerConfig::new("k:9092").is_idempotent());
    /// assert!(!ProducerConfig::new("k:9092").acks(Acks::Leader).is_idempotent());
    /// ```
    pub fn is_idempotent(&self) -> bool {
        if self.transactional_id.is_some() {
            return self.enable_idempotence != Some(false);
        }
        let compatible = self.acks == Acks::All && self.max_in_flight <= 5;
        self.enable_idempotence.unwrap_or(compatible)
    }

    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        self.client.validate()?;
        for (field, value) in [
            ("linger", self.linger),
            ("max_block", self.max_block),
            ("delivery_timeout", self.delivery_timeout),
            ("retry_backoff", self.retry_backoff),
            ("retry_backoff_max", self.retry_backoff_max),
            ("metadata_max_age", self.metadata_max_age),
            ("transaction_timeout", self.transaction_timeout),
        ] {
            crate::client_config::check_duration(field, value)?;
        }
        if let Some((interval, _)) = &self.statistics {
            if interval.is_zero() {
                return Err(Error::config(
                    "statistics_interval",
                    "must be greater than zero",
                ));
            }
            crate::client_config::check_duration("statistics_interval", *interval)?;
        }
        if let Some(smart) = self.partitioner.smart_config() {
            smart.validate()?;
            if smart.fallback.name() == "Smart" {
                return Err(Error::config(
                    "smart.fallback",
                    "must be one of the other strategies, not the smart one",
                ));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", "must be greater than zero"));
        }
        if self.max_request_size < crate::record_batch::BATCH_HEADER_LEN + 64
            || self.max_request_size > i32::MAX as usize
        {
            return Err(Error::config(
                "max_request_size",
                "must be between 125 bytes and 2 GiB - 1",
            ));
        }
        if self.buffer_memory < self.batch_size.min(self.max_request_size) {
            return Err(Error::config(
                "buffer_memory",
                "must hold at least one batch",
            ));
        }
        if let Some(level) = self.compression_level {
            let range = match self.compression {
                Compression::Gzip => 0..=9,
                Compression::Zstd => zstd::compression_level_range(),
                other => {
                    // A level the codec would ignore is a mistake to report,
                    // not to drop silently.
                    return Err(Error::config(
                        "compression_level",
                        format!("{level} was set, but {other:?} has no levels (gzip and zstd do)"),
                    ));
                }
            };
            if !range.contains(&level) {
                return Err(Error::config(
                    "compression_level",
                    format!(
                        "{level} is outside {:?}'s levels ({}..={})",
                        self.compression,
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        if self.max_in_flight == 0 {
            return Err(Error::config("max_in_flight", "must be at least 1"));
        }
        if let Some(id) = &self.transactional_id {
            if id.is_empty() {
                return Err(Error::config("transactional_id", "must not be empty"));
            }
            if self.enable_idempotence == Some(false) {
                return Err(Error::config(
                    "idempotence",
                    "a transactional producer is idempotent; do not turn idempotence off",
                ));
            }
            let ms = self.transaction_timeout.as_millis();
            if ms == 0 || ms > i32::MAX as u128 {
                return Err(Error::config(
                    "transaction_timeout",
                    "must be between 1 ms and i32::MAX ms",
                ));
            }
        }
        if self.enable_idempotence == Some(true) || self.transactional_id.is_some() {
            if self.acks != Acks::All {
                return Err(Error::config(
                    "acks",
                    "idempotence needs acks = all (or turn idempotence off)",
                ));
            }
            if self.max_in_flight > 5 {
                return Err(Error::config(
                    "max_in_flight",
                    "idempotence allows at most 5 requests in flight (or turn idempotence off)",
                ));
            }
        }
        if self.retry_backoff.is_zero() || self.retry_backoff_max < self.retry_backoff {
            return Err(Error::config(
                "retry_backoff_max",
                "retry_backoff must be positive and at most retry_backoff_max",
            ));
        }
        if self.metadata_max_age.is_zero() {
            return Err(Error::config(
                "metadata_max_age",
                "must be greater than zero",
            ));
        }
        let floor = self.linger + self.client.request_timeout;
        if self.delivery_timeout < floor {
            return Err(Error::config(
                "delivery_timeout",
                format!(
                    "{:?} is less than linger + request_timeout ({floor:?})",
                    self.delivery_timeout
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            acks: self.acks,
            linger: self.linger,
            batch_size: self.batch_size,
            buffer_memory: self.buffer_memory,
            // The buffer gate charges records before they reach the engine.
            buffer_owner: BufferOwner::Caller,
            max_request_size: self.max_request_size,
            max_block: self.max_block,
            delivery_timeout: self.delivery_timeout,
            request_timeout: self.client.request_timeout,
            retry_backoff: self.retry_backoff,
            retry_backoff_max: self.retry_backoff_max,
            max_in_flight: self.max_in_flight,
            compression: self.compression,
            compression_level: self.compression_level,
            // Compressed by the dispatch tasks, off the producer's task.
            compress_at: CompressAt::Dispatch,
            metadata_max_age: self.metadata_max_age,
            partitioner: self.partitioner.recipe(),
            seed: self.seed.unwrap_or_else(os_seed),
            idempotence: self.is_idempotent(),
            transactional_id: self.transactional_id.clone(),
            transaction_timeout: self.transaction_timeout,
        }
    }
}

/// A seed from the operating system's randomness: std seeds each
/// `RandomState` from it (and makes every later one on a thread differ).
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Durations past i32::MAX ms are refused with the field named, before
    /// any arithmetic on them (`linger + request_timeout` used to overflow).
    #[test]
    fn absurd_durations_are_refused_naming_the_field() {
        let huge = Duration::from_secs(u64::MAX / 2);
        let base = || ProducerConfig::new("a:1");
        let cases: [(ProducerConfig, &str); 9] = [
            (base().linger(huge), "linger"),
            (base().max_block(huge), "max_block"),
            (base().delivery_timeout(huge), "delivery_timeout"),
            (base().retry_backoff(huge), "retry_backoff"),
            (base().retry_backoff_max(huge), "retry_backoff_max"),
            (base().metadata_max_age(huge), "metadata_max_age"),
            (base().transaction_timeout(huge), "transaction_timeout"),
            (base().request_timeout(huge), "request_timeout"),
            (base().connect_timeout(huge), "connect_timeout"),
        ];
        for (config, field) in cases {
            let e = config.validate().expect_err(field);
            assert_eq!(e.kind(), &ErrorKind::Config { field }, "{e}");
        }
        // The bound itself is allowed.
        let longest = crate::client_config::MAX_DURATION;
        let config = base()
            .linger(longest / 2)
            .max_block(longest)
            .delivery_timeout(longest);
        assert!(config.validate().is_ok());
    }

    /// Each producer draws its own seed unless one is set.
    #[test]
    fn seeds_come_from_the_os_unless_set() {
        let drawn: std::collections::BTreeSet<u64> = (0..8)
            .map(|_| ProducerConfig::new("a:1").engine_config().seed)
            .collect();
        assert_eq!(drawn.len(), 8, "{drawn:?}");
        let set = ProducerConfig::new("a:1").seed(42);
        assert_eq!(set.engine_config().seed, 42);
        assert_eq!(set.clone().engine_config().seed, 42);
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = || ProducerConfig::new("a:1");
        let txn = || base().transactional_id("t");
        let cases: [(ProducerConfig, &str); 14] = [
            (base().transactional_id(""), "transactional_id"),
            (txn().idempotence(false), "idempotence"),
            (txn().acks(Acks::Leader), "acks"),
            (txn().max_in_flight(6), "max_in_flight"),
            (
                txn().transaction_timeout(Duration::ZERO),
                "transaction_timeout",
            ),
            (base().idempotence(true).acks(Acks::Leader), "acks"),
            (base().idempotence(true).max_in_flight(6), "max_in_flight"),
            (
                base().compression(Compression::Gzip).compression_level(10),
                "compression_level",
            ),
            (
                base().compression(Compression::Zstd).compression_level(23),
                "compression_level",
            ),
            (base().batch_size(0), "batch_size"),
            (base().max_in_flight(0), "max_in_flight"),
            (base().max_request_size(10), "max_request_size"),
            (
                base().delivery_timeout(Duration::from_secs(30)),
                "delivery_timeout",
            ),
            (base().buffer_memory(10), "buffer_memory"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Config { field }, "{err}");
        }
        base().validate().unwrap();
        // A level for a codec without levels is refused, not ignored.
        for codec in [Compression::Lz4, Compression::Snappy, Compression::None] {
            let e = base()
                .compression(codec)
                .compression_level(99)
                .validate()
                .expect_err("no levels");
            assert_eq!(
                e.kind(),
                &ErrorKind::Config {
                    field: "compression_level"
                },
                "{e}"
            );
        }
        base()
            .compression(Compression::Zstd)
            .compression_level(-5)
            .validate()
            .unwrap();
    }
}
