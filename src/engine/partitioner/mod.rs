//! Partitioners: which partition of a topic a record goes to.
//!
//! This module owns the [`Partitioner`] trait, the [`PartitionView`] a
//! partitioner chooses from, [`PartitionError`], the built-in partitioners,
//! one file each, and [`PartitionerRecipe`], the form in which the engine
//! takes its partitioner. The strategy users configure,
//! [`PartitionStrategy`](crate::partitioner::PartitionStrategy), lives in
//! `crate::partitioner`, which re-exports this module: it can name the
//! smart partitioner of `crate::health`, which builds on this module, so
//! nothing here depends on health.
//!
//! A record that names its partition bypasses the partitioner altogether; the
//! engine only checks the number with [`check_explicit`].
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
use std::time::Duration;

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
/// bytes are queued in this producer per partition, how long each
/// partition's leader takes to answer, and health reported from outside
/// the producer (such as consumer lag). The built-in strategies use the
/// first two (the smart partitioner the leader latency too, when asked to);
/// the health signals exist for custom partitioners. The type
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
    /// Per partition (index = partition), how long its leader took to
    /// answer this producer's Produce requests lately, in microseconds (a
    /// moving average), if the engine tracks it. 0 or a missing entry:
    /// not known yet.
    pub leader_latency_us: Option<&'a [u32]>,
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
            leader_latency_us: None,
            health: None,
        }
    }

    /// The same view with bytes queued per partition (index = partition).
    #[must_use]
    pub fn with_queued_bytes(mut self, queued_bytes: &'a [u64]) -> Self {
        self.queued_bytes = Some(queued_bytes);
        self
    }

    /// The same view with each partition's leader latency in microseconds
    /// (index = partition; 0 for not known).
    #[must_use]
    pub fn with_leader_latency(mut self, leader_latency_us: &'a [u32]) -> Self {
        self.leader_latency_us = Some(leader_latency_us);
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

    /// How long `partition`'s leader took to answer this producer's
    /// Produce requests lately (a moving average), `None` when not known.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smartkafka::partitioner::PartitionView;
    ///
    /// let all = [0, 1, 2];
    /// let latency = [1_500, 0, 200_000];
    /// let view = PartitionView::new("events", 3, &all).with_leader_latency(&latency);
    /// assert_eq!(view.leader_latency(0), Some(Duration::from_micros(1_500)));
    /// assert_eq!(view.leader_latency(1), None);
    /// assert_eq!(view.leader_latency(7), None);
    /// ```
    pub fn leader_latency(&self, partition: i32) -> Option<Duration> {
        let latency = self.leader_latency_us.unwrap_or_default();
        usize::try_from(partition)
            .ok()
            .and_then(|p| latency.get(p))
            .filter(|us| **us > 0)
            .map(|us| Duration::from_micros(u64::from(*us)))
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
/// [`PartitionStrategy::Custom`](crate::partitioner::PartitionStrategy::Custom). This one sends records whose key starts
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

/// A partitioner to be built from a seed, with the name of its strategy:
/// what a configured [`PartitionStrategy`](crate::partitioner::PartitionStrategy)
/// turns into, and what the engine and the smart partitioner's fallback
/// take. Every strategy converts into one (`PartitionStrategy::into`).
#[derive(Clone)]
pub struct PartitionerRecipe {
    name: &'static str,
    factory: PartitionerFactory,
}

impl PartitionerRecipe {
    /// A partitioner called `name` (for debugging) built by `factory`.
    pub(crate) fn new(name: &'static str, factory: PartitionerFactory) -> Self {
        PartitionerRecipe { name, factory }
    }

    /// The strategy's name (`Default`, `RoundRobin`, `Smart`, `Custom(..)`,
    /// ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Builds the partitioner from a seed (the same seed and the same calls
    /// give the same partitions).
    pub fn build(&self, seed: u64) -> Box<dyn Partitioner> {
        (self.factory)(seed)
    }

    /// The factory alone.
    pub(crate) fn factory(&self) -> PartitionerFactory {
        Arc::clone(&self.factory)
    }
}

impl Default for PartitionerRecipe {
    /// The Java client's partitioner.
    fn default() -> Self {
        PartitionerRecipe::new(
            "Default",
            Arc::new(|seed| Box::new(DefaultPartitioner::new(seed))),
        )
    }
}

impl fmt::Debug for PartitionerRecipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
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
}
