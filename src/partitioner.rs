//! Partitioners: which partition of a topic a record goes to.
//!
//! This module owns [`PartitionStrategy`], the choice a producer is
//! configured with, and re-exports the [`Partitioner`] trait, the
//! [`PartitionView`] a partitioner chooses from, [`PartitionError`] and the
//! built-in partitioners:
//!
//! | strategy | type | keyed records | keyless records |
//! |---|---|---|---|
//! | [`PartitionStrategy::Default`] | [`DefaultPartitioner`] | `murmur2(key)` over all partitions (Java client) | sticky, weighted by queue size (KIP-794) |
//! | [`PartitionStrategy::Murmur2Random`] | [`Murmur2RandomPartitioner`] | `murmur2(key)` (librdkafka `murmur2_random`) | sticky, uniform |
//! | [`PartitionStrategy::Consistent`] | [`ConsistentPartitioner`] | `crc32(key)` (librdkafka `consistent`) | partition 0 (`crc32` of no bytes, as librdkafka does) |
//! | [`PartitionStrategy::ConsistentRandom`] | [`ConsistentRandomPartitioner`] | `crc32(key)`, empty keys sticky (librdkafka `consistent_random`) | sticky, uniform |
//! | [`PartitionStrategy::RoundRobin`] | [`RoundRobinPartitioner`] | ignored: next available partition (Java `RoundRobinPartitioner`) | next available partition |
//! | [`PartitionStrategy::Smart`] | [`SmartPartitioner`](crate::health::SmartPartitioner) | the fallback's hash (or, opt-in, a healthy partition kept per key) | sticky among the partitions whose consumers keep up, by consumer lag (see [`crate::health`]) |
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

use std::fmt;
use std::sync::Arc;

pub use crate::engine::partitioner::{
    ConsistentPartitioner, ConsistentRandomPartitioner, DefaultPartitioner,
    Murmur2RandomPartitioner, PartitionError, PartitionHealth, PartitionView, Partitioner,
    PartitionerFactory, PartitionerRecipe, RoundRobinPartitioner, check_explicit, crc32,
    crc32_partition, murmur2, murmur2_partition, to_positive,
};
#[cfg(feature = "tokio-runtime")]
use crate::health::HealthManager;
use crate::health::{HealthTable, RoutingCounters, SmartConfig};

/// Which partitioner a producer uses: the configuration-side choice.
///
/// The names follow the clients users know: [`Default`](Self::Default) is
/// the Java client's built-in partitioner; the others are librdkafka's
/// `partitioner` settings of the same name, plus Java's round-robin, and
/// this client's own lag-aware [`Smart`](Self::Smart) strategy.
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
///
/// The smart strategy, named like the others:
///
/// ```no_run
/// # async fn demo() -> Result<(), smartkafka::Error> {
/// use smartkafka::health::SmartConfig;
/// use smartkafka::partitioner::PartitionStrategy;
/// use smartkafka::Producer;
///
/// let producer = Producer::builder()
///     .bootstrap_servers("localhost:9092")
///     .partitioner(PartitionStrategy::smart(
///         SmartConfig::new("order-processors").topics(["orders"]),
///     ))
///     .build()
///     .await?;
/// # let _ = producer; Ok(()) }
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
    /// Lag-aware partitioning (see [`crate::health`]): a producer configured
    /// with it watches the consumer group's lag (or reads it from a shared
    /// cache) in the background and sends keyless records to the partitions
    /// whose consumers keep up, and to its fallback strategy without usable
    /// health data. Build it with [`PartitionStrategy::smart`];
    /// [`ProducerBuilder::smart_partitioner`](crate::ProducerBuilder::smart_partitioner)
    /// is a shorthand. Its fallback must not be smart itself.
    ///
    /// [`build`](Self::build) outside a producer has no health manager
    /// behind it: the partitioner has no health data and places every
    /// record by the fallback. Share one monitor's health between
    /// producers with [`PartitionStrategy::shared`].
    Smart(Box<SmartConfig>),
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

    /// The smart (lag-aware) strategy with `config`.
    ///
    /// ```
    /// use smartkafka::health::SmartConfig;
    /// use smartkafka::partitioner::PartitionStrategy;
    ///
    /// let strategy = PartitionStrategy::smart(SmartConfig::new("readers").topics(["orders"]));
    /// assert_eq!(strategy.smart_config().unwrap().group, "readers");
    /// assert!(PartitionStrategy::RoundRobin.smart_config().is_none());
    /// ```
    pub fn smart(config: SmartConfig) -> Self {
        PartitionStrategy::Smart(Box::new(config))
    }

    /// The settings of the smart strategy; `None` for the others.
    pub fn smart_config(&self) -> Option<&SmartConfig> {
        match self {
            PartitionStrategy::Smart(config) => Some(config),
            _ => None,
        }
    }

    /// The strategy a configuration name stands for: `default` (also
    /// `murmur2`, the Java client's default), and librdkafka's
    /// `murmur2_random`, `consistent`, `consistent_random`, plus
    /// `round_robin`. `None` for anything else; the smart strategy needs its
    /// settings ([`PartitionStrategy::smart`], or the `partitioner=smart`
    /// and `smart.*` properties of [`ProducerConfig::set`](crate::ProducerConfig::set)).
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
            PartitionStrategy::Smart(config) => config
                .recipe(HealthTable::new(), RoutingCounters::new())
                .build(seed),
        }
    }

    /// A strategy routing by `monitor`'s health table and counting into its
    /// routing counters: for producers sharing one monitor instead of
    /// collecting lag each.
    #[cfg(feature = "tokio-runtime")]
    pub fn shared(monitor: &HealthManager) -> Self {
        PartitionStrategy::Custom(monitor.recipe().factory())
    }

    /// The strategy as the engine takes it.
    pub(crate) fn recipe(&self) -> PartitionerRecipe {
        let name = self.name();
        let strategy = self.clone();
        PartitionerRecipe::new(name, Arc::new(move |seed| strategy.build(seed)))
    }

    fn name(&self) -> &'static str {
        match self {
            PartitionStrategy::Default => "Default",
            PartitionStrategy::Murmur2Random => "Murmur2Random",
            PartitionStrategy::Consistent => "Consistent",
            PartitionStrategy::ConsistentRandom => "ConsistentRandom",
            PartitionStrategy::RoundRobin => "RoundRobin",
            PartitionStrategy::Custom(_) => "Custom(..)",
            PartitionStrategy::Smart(_) => "Smart",
        }
    }
}

impl fmt::Debug for PartitionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionStrategy::Smart(config) => f.debug_tuple("Smart").field(config).finish(),
            other => f.write_str(other.name()),
        }
    }
}

impl From<PartitionStrategy> for PartitionerRecipe {
    fn from(strategy: PartitionStrategy) -> Self {
        strategy.recipe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_refuses_a_topic_without_partitions() {
        let view = PartitionView::new("t", 0, &[]);
        for strategy in [
            PartitionStrategy::Default,
            PartitionStrategy::Murmur2Random,
            PartitionStrategy::Consistent,
            PartitionStrategy::ConsistentRandom,
            PartitionStrategy::RoundRobin,
            PartitionStrategy::smart(SmartConfig::new("g").topics(["t"])),
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
            assert_eq!(format!("{:?}", strategy.recipe()), expected);
        }
        assert!(PartitionStrategy::from_name("fnv1a").is_none());
        assert!(PartitionStrategy::from_name("smart").is_none());
        assert_eq!(format!("{:?}", PartitionStrategy::default()), "Default");
        let smart = PartitionStrategy::smart(SmartConfig::new("readers"));
        assert!(format!("{smart:?}").starts_with("Smart(SmartConfig {"));
        assert_eq!(format!("{:?}", smart.recipe()), "Smart");
    }

    #[test]
    fn builds_are_deterministic_per_seed() {
        let all: Vec<i32> = (0..12).collect();
        let view = PartitionView::new("t", 12, &all);
        let run = |strategy: &PartitionStrategy, seed| {
            let mut p = strategy.recipe().build(seed);
            (0..50)
                .map(|_| {
                    let chosen = p.partition(None, None, &view).unwrap();
                    p.on_new_batch(chosen, &view);
                    chosen
                })
                .collect::<Vec<_>>()
        };
        let default = PartitionStrategy::Default;
        assert_eq!(run(&default, 3), run(&default, 3));
        assert_ne!(run(&default, 3), run(&default, 4));
    }

    #[test]
    fn smart_without_health_places_by_its_fallback() {
        let all: Vec<i32> = (0..6).collect();
        let view = PartitionView::new("t", 6, &all);
        let smart = PartitionStrategy::smart(
            SmartConfig::new("g")
                .topics(["t"])
                .fallback(PartitionStrategy::RoundRobin),
        );
        let mut p = smart.build(9);
        let mut round_robin = PartitionStrategy::RoundRobin.build(9);
        for _ in 0..12 {
            assert_eq!(
                p.partition(None, None, &view),
                round_robin.partition(None, None, &view)
            );
        }
    }
}
