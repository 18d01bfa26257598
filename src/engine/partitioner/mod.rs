//! Partitioners: which partition of a topic a record goes to.
//!
//! This module owns the [`Partitioner`] trait, the [`PartitionView`] a
//! partitioner chooses from, the [`PartitionStrategy`] used in configuration,
//! [`PartitionError`], and the built-in strategies, one file each:
//!
//! | strategy | type | keyed records | keyless records |
//! |---|---|---|---|
//! | [`PartitionStrategy::Default`] | [`DefaultPartitioner`] | `murmur2(key)` over all partitions (Java client) | sticky, weighted by queue size (KIP-794) |
//! | [`PartitionStrategy::Murmur2Random`] | [`Murmur2RandomPartitioner`] | `murmur2(key)` (librdkafka `murmur2_random`) | sticky, uniform |
//! | [`PartitionStrategy::Consistent`] | [`ConsistentPartitioner`] | `crc32(key)` (librdkafka `consistent`) | partition 0 (`crc32` of no bytes, as librdkafka does) |
//! | [`PartitionStrategy::ConsistentRandom`] | [`ConsistentRandomPartitioner`] | `crc32(key)`, empty keys sticky (librdkafka `consistent_random`) | sticky, uniform |
//! | [`PartitionStrategy::RoundRobin`] | [`RoundRobinPartitioner`] | ignored: next available partition (Java `RoundRobinPartitioner`) | next available partition |
//! | [`PartitionStrategy::Custom`] | any `Box<dyn Partitioner>` | yours | yours |
//!
//! A record that names its partition bypasses the partitioner altogether; the
//! engine only checks the number with [`check_explicit`].
//!
//! Keyed records map to the same partition as the Java client (and
//! librdkafka's `murmur2_random`) or librdkafka's `consistent` partitioners
//! for the same partition count, so producers written against different
//! clients can share a topic and keep per-key ordering.
//!
//! Everything here is deterministic: partitioners that need randomness own a
//! small seeded generator, so the same seed and the same calls give the same
//! choices. Nothing here reads the clock.

#![forbid(unsafe_code)]

mod crc32;
mod default;
mod manual;
mod murmur2;
mod round_robin;
mod sticky;

use std::fmt;
use std::sync::Arc;

pub use crc32::{ConsistentPartitioner, ConsistentRandomPartitioner, crc32, crc32_partition};
pub use default::DefaultPartitioner;
pub use manual::check_explicit;
pub use murmur2::{Murmur2RandomPartitioner, murmur2, murmur2_partition, to_positive};
pub use round_robin::RoundRobinPartitioner;

/// Why no partition could be chosen for a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// The topic has no partitions (yet): there is nothing to choose from.
    #[error("the topic has no partitions")]
    NoPartitions,
    /// An explicit partition, or one returned by a custom partitioner, does
    /// not exist.
    #[error("partition {partition} does not exist: the topic has {partition_count} partitions")]
    OutOfRange {
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        partition_count: u32,
    },
    /// The partition count does not fit Kafka's 32-bit signed partition ids.
    #[error("a partition count of {partition_count} exceeds the largest partition id Kafka allows")]
    TooManyPartitions {
        /// The partition count that was given.
        partition_count: u32,
    },
    /// A custom partitioner refused the record.
    #[error("the partitioner refused the record: {0}")]
    Custom(String),
}

/// What a partitioner may look at when choosing a partition.
///
/// The engine builds one of these per record from its metadata cache and
/// accumulator, borrowing everything, so building it costs nothing.
///
/// Beyond the partition count it carries the signals a load-aware
/// partitioner needs: which partitions have a leader right now, how many
/// bytes are queued in this producer per partition, and health reported from
/// outside the producer (such as consumer lag). The built-in strategies use
/// the first two; the health signals exist for custom partitioners. The type
/// is `#[non_exhaustive]` so further signals can be added without breaking
/// partitioners written against it: construct it with [`PartitionView::new`]
/// and the `with_*` methods.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::PartitionView;
///
/// let available = [0, 1, 3];
/// let queued = [0, 16_384, 0, 512];
/// let view = PartitionView::new("events", 4, &available).with_queued_bytes(&queued);
/// assert!(view.is_available(3));
/// assert!(!view.is_available(2));
/// assert_eq!(view.checked_count(), Ok(4));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PartitionView<'a> {
    /// The topic the record is for.
    pub topic: &'a str,
    /// How many partitions the topic has. Keyed records hash over all of
    /// them, whether or not they currently have a leader, so a key keeps its
    /// partition through a leader election.
    pub partition_count: u32,
    /// Partitions that currently have a leader, ascending and without
    /// duplicates. Keyless records go to one of these when the list is not
    /// empty; when it is empty every partition is a candidate.
    pub available: &'a [i32],
    /// Bytes queued in this producer per partition (index = partition), if
    /// the engine tracks them. A missing entry counts as nothing queued.
    pub queued_bytes: Option<&'a [u64]>,
    /// Health per partition (index = partition) reported from outside the
    /// producer, if anything reports it. The built-in strategies ignore it.
    pub health: Option<&'a [PartitionHealth]>,
}

impl<'a> PartitionView<'a> {
    /// A view of `topic` with `partition_count` partitions, of which those in
    /// `available` (ascending) have a leader; no load or health signals.
    pub fn new(topic: &'a str, partition_count: u32, available: &'a [i32]) -> Self {
        PartitionView {
            topic,
            partition_count,
            available,
            queued_bytes: None,
            health: None,
        }
    }

    /// The same view with bytes queued per partition (index = partition).
    #[must_use]
    pub fn with_queued_bytes(mut self, queued_bytes: &'a [u64]) -> Self {
        self.queued_bytes = Some(queued_bytes);
        self
    }

    /// The same view with health reported from outside (index = partition).
    #[must_use]
    pub fn with_health(mut self, health: &'a [PartitionHealth]) -> Self {
        self.health = Some(health);
        self
    }

    /// The partition count, checked: an error for zero partitions (nothing
    /// to choose from) and for counts beyond Kafka's `i32` partition ids, so
    /// every `partition < count` fits in an `i32`.
    pub fn checked_count(&self) -> Result<u32, PartitionError> {
        checked_count(self.partition_count)
    }

    /// Whether `partition` is in the topic and currently has a leader.
    pub fn is_available(&self, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|p| p < self.partition_count)
            && self.available.binary_search(&partition).is_ok()
    }

    /// Bytes queued for `partition`, zero when unknown.
    pub fn queued(&self, partition: i32) -> u64 {
        let queued = self.queued_bytes.unwrap_or_default();
        usize::try_from(partition)
            .ok()
            .and_then(|p| queued.get(p))
            .copied()
            .unwrap_or(0)
    }
}

/// Health of one partition as reported from outside the producer, for
/// partitioners that steer load by it.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::PartitionHealth;
///
/// let lagging = PartitionHealth::new().with_consumer_lag(250_000);
/// assert_eq!(lagging.consumer_lag, Some(250_000));
/// assert!(!lagging.degraded);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionHealth {
    /// How many records the consumers of this partition are behind its end,
    /// when something measures it.
    pub consumer_lag: Option<u64>,
    /// Set when an outside signal (say, a broker being drained) asks that new
    /// keyless records avoid this partition.
    pub degraded: bool,
}

impl PartitionHealth {
    /// Nothing known: no lag figure, not degraded.
    pub const fn new() -> Self {
        PartitionHealth {
            consumer_lag: None,
            degraded: false,
        }
    }

    /// The same health with a consumer lag figure.
    #[must_use]
    pub const fn with_consumer_lag(mut self, records: u64) -> Self {
        self.consumer_lag = Some(records);
        self
    }

    /// The same health, marked degraded or not.
    #[must_use]
    pub const fn with_degraded(mut self, degraded: bool) -> Self {
        self.degraded = degraded;
        self
    }
}

/// Chooses the partition of records that do not name one.
///
/// The engine owns one partitioner for all topics and calls it with a
/// [`PartitionView`] of the record's topic; a partitioner that keeps state
/// keeps it per topic (`view.topic`). Calls come from one thread at a time,
/// hence `&mut self` and no locking.
///
/// A partitioner must return a partition in `0..view.partition_count`; the
/// engine checks the answer with [`check_explicit`] and fails the record
/// with [`PartitionError::OutOfRange`] otherwise.
///
/// # Custom partitioners
///
/// Any type implementing this trait can be configured through
/// [`PartitionStrategy::Custom`]. This one sends records whose key starts
/// with `tenant-a/` to partition 0 and hashes the rest over the remaining
/// partitions the way the Java client would:
///
/// ```
/// use std::sync::Arc;
/// use smartkafka::partitioner::{
///     PartitionError, PartitionStrategy, PartitionView, Partitioner, murmur2, to_positive,
/// };
///
/// struct TenantPartitioner;
///
/// impl Partitioner for TenantPartitioner {
///     fn partition(
///         &mut self,
///         key: Option<&[u8]>,
///         _value: Option<&[u8]>,
///         view: &PartitionView<'_>,
///     ) -> Result<i32, PartitionError> {
///         let count = view.checked_count()?;
///         let key = key.ok_or_else(|| PartitionError::Custom("records need a key".into()))?;
///         if key.starts_with(b"tenant-a/") || count == 1 {
///             return Ok(0);
///         }
///         let rest = (count - 1) as i32;
///         Ok(1 + to_positive(murmur2(key)) % rest)
///     }
/// }
///
/// let strategy = PartitionStrategy::custom(|_seed| Box::new(TenantPartitioner));
/// let mut partitioner = strategy.build(42);
/// let all = [0, 1, 2, 3];
/// let view = PartitionView::new("orders", 4, &all);
/// assert_eq!(partitioner.partition(Some(b"tenant-a/17"), None, &view), Ok(0));
/// assert_ne!(partitioner.partition(Some(b"tenant-b/17"), None, &view), Ok(0));
/// assert!(partitioner.partition(None, None, &view).is_err());
/// ```
pub trait Partitioner: Send {
    /// Chooses a partition for a record with this key and value.
    ///
    /// `None` is a record without a key; `Some(&[])` is a record whose key is
    /// empty, which most strategies treat as a key like any other.
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError>;

    /// Tells the partitioner that the batch being filled on `previous` in
    /// `view.topic` is complete, so a sticky choice should move on (KIP-480,
    /// KIP-794). The default does nothing.
    ///
    /// For KIP-794's even spread the engine calls this once `batch.size`
    /// bytes of keyless records (their estimated size) have gone to the
    /// partition since the previous call, however many batches carried
    /// them: `linger.ms` sending batches part full does not hold the switch
    /// back, and switching on every send (which gives more records to the
    /// partitions whose brokers are slow) does not happen either. Like the
    /// Java client, the engine switches at a batch boundary (no open batch
    /// on the partition, or a full one just sealed), and at twice
    /// `batch.size` in any case.
    ///
    /// The engine may call this for any partition; a sticky partitioner moves
    /// only when `previous` is its current choice for the topic.
    fn on_new_batch(&mut self, previous: i32, view: &PartitionView<'_>) {
        let _ = (previous, view);
    }
}

impl<P: Partitioner + ?Sized> Partitioner for Box<P> {
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        (**self).partition(key, value, view)
    }

    fn on_new_batch(&mut self, previous: i32, view: &PartitionView<'_>) {
        (**self).on_new_batch(previous, view);
    }
}

/// Builds a custom partitioner from the engine's seed.
pub type PartitionerFactory = Arc<dyn Fn(u64) -> Box<dyn Partitioner> + Send + Sync>;

/// Which partitioner a producer uses: the configuration-side choice.
///
/// The names follow the clients users know: [`Default`](Self::Default) is
/// the Java client's built-in partitioner; the others are librdkafka's
/// `partitioner` settings of the same name, plus Java's round-robin.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{PartitionStrategy, PartitionView};
///
/// let strategy = PartitionStrategy::from_name("murmur2_random").unwrap();
/// let mut partitioner = strategy.build(7);
/// let all = [0, 1, 2, 3, 4, 5];
/// let view = PartitionView::new("t", 6, &all);
/// // Same answer as the Java client and librdkafka for this key.
/// assert_eq!(partitioner.partition(Some(b"kafka"), None, &view), Ok(4));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum PartitionStrategy {
    /// The Java client's partitioner: murmur2 for keyed records, adaptive
    /// sticky for keyless ones. See [`DefaultPartitioner`].
    #[default]
    Default,
    /// librdkafka's `murmur2_random`: murmur2 for keyed records (the same
    /// partitions as the Java client), sticky for keyless ones. See
    /// [`Murmur2RandomPartitioner`].
    Murmur2Random,
    /// librdkafka's `consistent`: CRC-32 of the key, missing keys hashed as
    /// empty. See [`ConsistentPartitioner`].
    Consistent,
    /// librdkafka's `consistent_random`, librdkafka's own default: CRC-32 of
    /// non-empty keys, sticky for the rest. See
    /// [`ConsistentRandomPartitioner`].
    ConsistentRandom,
    /// The Java client's `RoundRobinPartitioner`. See
    /// [`RoundRobinPartitioner`].
    RoundRobin,
    /// A partitioner of your own, built from the engine's seed. See
    /// [`PartitionStrategy::custom`].
    Custom(PartitionerFactory),
}

impl PartitionStrategy {
    /// A custom strategy from a factory that builds the partitioner from the
    /// engine's seed (use the seed for any randomness, to stay
    /// deterministic).
    pub fn custom<F>(factory: F) -> Self
    where
        F: Fn(u64) -> Box<dyn Partitioner> + Send + Sync + 'static,
    {
        PartitionStrategy::Custom(Arc::new(factory))
    }

    /// The strategy a configuration name stands for: `default` (also
    /// `murmur2`, the Java client's default), and librdkafka's
    /// `murmur2_random`, `consistent`, `consistent_random`, plus
    /// `round_robin`. `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "default" | "murmur2" => PartitionStrategy::Default,
            "murmur2_random" => PartitionStrategy::Murmur2Random,
            "consistent" => PartitionStrategy::Consistent,
            "consistent_random" => PartitionStrategy::ConsistentRandom,
            "round_robin" | "roundrobin" => PartitionStrategy::RoundRobin,
            _ => return None,
        })
    }

    /// Builds a partitioner for this strategy. `seed` seeds its random
    /// choices; the same seed and the same calls give the same partitions.
    pub fn build(&self, seed: u64) -> Box<dyn Partitioner> {
        match self {
            PartitionStrategy::Default => Box::new(DefaultPartitioner::new(seed)),
            PartitionStrategy::Murmur2Random => Box::new(Murmur2RandomPartitioner::new(seed)),
            PartitionStrategy::Consistent => Box::new(ConsistentPartitioner::new()),
            PartitionStrategy::ConsistentRandom => Box::new(ConsistentRandomPartitioner::new(seed)),
            PartitionStrategy::RoundRobin => Box::new(RoundRobinPartitioner::new()),
            PartitionStrategy::Custom(factory) => factory(seed),
        }
    }
}

impl fmt::Debug for PartitionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionStrategy::Default => "Default",
            PartitionStrategy::Murmur2Random => "Murmur2Random",
            PartitionStrategy::Consistent => "Consistent",
            PartitionStrategy::ConsistentRandom => "ConsistentRandom",
            PartitionStrategy::RoundRobin => "RoundRobin",
            PartitionStrategy::Custom(_) => "Custom(..)",
        })
    }
}

/// A partition count checked to be in `1..=i32::MAX`.
fn checked_count(partition_count: u32) -> Result<u32, PartitionError> {
    if partition_count == 0 {
        Err(PartitionError::NoPartitions)
    } else if i32::try_from(partition_count).is_err() {
        Err(PartitionError::TooManyPartitions { partition_count })
    } else {
        Ok(partition_count)
    }
}

/// `value % count` as a partition id; `count` comes from [`checked_count`],
/// so the remainder is below `i32::MAX`.
fn modulo(value: u32, count: u32) -> i32 {
    i32::try_from(value % count).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_oversized_partition_counts_are_errors() {
        let view = PartitionView::new("t", 0, &[]);
        assert_eq!(view.checked_count(), Err(PartitionError::NoPartitions));
        let huge = PartitionView::new("t", u32::MAX, &[]);
        assert_eq!(
            huge.checked_count(),
            Err(PartitionError::TooManyPartitions {
                partition_count: u32::MAX
            })
        );
        assert_eq!(checked_count(i32::MAX as u32), Ok(i32::MAX as u32));
    }

    #[test]
    fn every_strategy_refuses_a_topic_without_partitions() {
        let view = PartitionView::new("t", 0, &[]);
        for strategy in [
            PartitionStrategy::Default,
            PartitionStrategy::Murmur2Random,
            PartitionStrategy::Consistent,
            PartitionStrategy::ConsistentRandom,
            PartitionStrategy::RoundRobin,
        ] {
            let mut p = strategy.build(1);
            assert_eq!(
                p.partition(Some(b"k"), None, &view),
                Err(PartitionError::NoPartitions),
                "{strategy:?}"
            );
            assert_eq!(
                p.partition(None, None, &view),
                Err(PartitionError::NoPartitions),
                "{strategy:?}"
            );
            // Must not panic either.
            p.on_new_batch(0, &view);
        }
    }

    #[test]
    fn names_map_to_strategies() {
        for (name, expected) in [
            ("default", "Default"),
            ("murmur2", "Default"),
            ("murmur2_random", "Murmur2Random"),
            ("consistent", "Consistent"),
            ("consistent_random", "ConsistentRandom"),
            ("round_robin", "RoundRobin"),
        ] {
            let strategy = PartitionStrategy::from_name(name).unwrap();
            assert_eq!(format!("{strategy:?}"), expected);
        }
        assert!(PartitionStrategy::from_name("fnv1a").is_none());
        assert_eq!(format!("{:?}", PartitionStrategy::default()), "Default");
    }

    #[test]
    fn view_helpers_tolerate_missing_and_negative_entries() {
        let queued = [5, 6];
        let view = PartitionView::new("t", 4, &[0, 2]).with_queued_bytes(&queued);
        assert_eq!(view.queued(1), 6);
        assert_eq!(view.queued(3), 0);
        assert_eq!(view.queued(-1), 0);
        assert!(!view.is_available(-1));
        assert!(!view.is_available(7));
        let health = [PartitionHealth::new().with_degraded(true)];
        let view = view.with_health(&health);
        assert!(view.health.unwrap()[0].degraded);
    }

    #[test]
    fn builds_are_deterministic_per_seed() {
        let all: Vec<i32> = (0..12).collect();
        let view = PartitionView::new("t", 12, &all);
        let run = |seed| {
            let mut p = PartitionStrategy::Default.build(seed);
            (0..50)
                .map(|_| {
                    let chosen = p.partition(None, None, &view).unwrap();
                    p.on_new_batch(chosen, &view);
                    chosen
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
