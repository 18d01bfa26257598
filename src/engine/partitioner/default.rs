//! The default partitioner: the Java client's built-in partitioner, with
//! uniform sticky partitioning of keyless records
//! ([KIP-794](https://cwiki.apache.org/confluence/display/KAFKA/KIP-794%3A+Strictly+Uniform+Sticky+Partitioner)).
//!
//! Keyed records go to `to_positive(murmur2(key)) % partition_count` over all
//! partitions, exactly as the Java client's `BuiltInPartitioner` places them,
//! so a key keeps its partition across clients and through leader changes.
//!
//! Keyless records are *sticky*: they all go to one partition until about a
//! batch worth of them has gone there, then to another. One full batch to
//! one partition batches far better than a record to each, so latency and
//! broker load drop (KIP-480 introduced this). KIP-480 switched whenever a
//! new batch was created for the partition, and that favoured slow brokers:
//! where a broker keeps up, batches leave at `linger.ms` half empty and the
//! partition is left early; where it lags, batches wait and fill up, so the
//! partition keeps its turn longer and gets more records. KIP-794 makes the
//! switch depend on the bytes sent to the partition instead, one batch size
//! each, so every partition gets the same share. Here the engine tells the
//! partitioner that moment through [`Partitioner::on_new_batch`] (once
//! `batch.size` bytes went to the sticky partition, whether one full batch
//! or many part-full ones that `linger.ms` sent carried them), and the next
//! partition is drawn:
//!
//! * among the partitions with a leader (all of them when none has one),
//! * other than the one just left, when there is a choice,
//! * and, with adaptive partitioning (on by default, like the Java client's
//!   `partitioner.adaptive.partitioning.enable`), with probability
//!   proportional to `max_queued - queued + 1` over the candidates, using the
//!   bytes the engine has queued per partition
//!   ([`PartitionView::queued_bytes`]). Partitions whose broker keeps up
//!   get more keyless records than ones whose queue grows. Without queue figures, or when every candidate has
//!   the same queue, the draw is uniform.
//!
//! Differences from the Java client, all in keyless records: Java weighs
//! partitions by the number of queued *batches*, this by queued bytes (finer;
//! the partition with the longest queue is then all but never drawn, where
//! Java still gives it a weight of one batch); Java may draw
//! the partition it is leaving again; and Java's
//! `partitioner.availability.timeout.ms` (excluding partitions whose broker
//! has not drained a batch for that long) is left to load-aware custom
//! partitioners, which see the same view.

use super::murmur2::murmur2_partition;
use super::sticky::Sticky;
use super::{PartitionError, PartitionView, Partitioner};

/// The Java client's default partitioner: murmur2 for keyed records,
/// adaptive uniform sticky (KIP-794) for keyless ones.
///
/// An empty key is a key (it hashes like any other); only `None` is keyless.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{DefaultPartitioner, PartitionView, Partitioner};
///
/// let mut partitioner = DefaultPartitioner::new(42);
/// let all = [0, 1, 2, 3, 4, 5];
/// let view = PartitionView::new("t", 6, &all);
///
/// // Keyed: where the Java client puts it.
/// assert_eq!(partitioner.partition(Some(b"kafka"), None, &view), Ok(4));
///
/// // Keyless: one partition until its batch is complete.
/// let first = partitioner.partition(None, None, &view).unwrap();
/// assert_eq!(partitioner.partition(None, None, &view), Ok(first));
/// partitioner.on_new_batch(first, &view);
/// assert_ne!(partitioner.partition(None, None, &view), Ok(first));
/// ```
#[derive(Debug, Clone)]
pub struct DefaultPartitioner {
    sticky: Sticky,
    ignore_keys: bool,
}

impl DefaultPartitioner {
    /// A default partitioner, adaptive, whose keyless draws are seeded with
    /// `seed`.
    pub fn new(seed: u64) -> Self {
        DefaultPartitioner {
            sticky: Sticky::new(seed, true),
            ignore_keys: false,
        }
    }

    /// Whether keyless draws are weighted by queued bytes (the Java client's
    /// `partitioner.adaptive.partitioning.enable`, on by default). Off, the
    /// draw is uniform among available partitions.
    #[must_use]
    pub fn adaptive(mut self, enabled: bool) -> Self {
        self.sticky.set_adaptive(enabled);
        self
    }

    /// Whether to treat every record as keyless (the Java client's
    /// `partitioner.ignore.keys`, off by default).
    #[must_use]
    pub fn ignore_keys(mut self, ignore: bool) -> Self {
        self.ignore_keys = ignore;
        self
    }

    /// The partition keyless records of `topic` currently stick to, if any
    /// was chosen yet.
    pub fn sticky_partition(&self, topic: &str) -> Option<i32> {
        self.sticky.current(topic)
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        match key {
            Some(key) if !self.ignore_keys => murmur2_partition(key, view.partition_count),
            _ => self.sticky.partition(view),
        }
    }

    fn on_new_batch(&mut self, previous: i32, view: &PartitionView<'_>) {
        self.sticky.on_new_batch(previous, view);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Fills `batches` batches of keyless records, `per_batch` records each,
    /// and counts the records per partition.
    fn fill(
        p: &mut DefaultPartitioner,
        view: &PartitionView<'_>,
        batches: usize,
        per_batch: usize,
    ) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for _ in 0..batches {
            let chosen = p.partition(None, None, view).unwrap();
            for _ in 0..per_batch {
                assert_eq!(p.partition(None, Some(b"v"), view), Ok(chosen));
            }
            *counts.entry(chosen).or_default() += per_batch + 1;
            p.on_new_batch(chosen, view);
        }
        counts
    }

    #[test]
    fn keyless_records_stick_until_the_batch_is_complete_then_move() {
        let all = [0, 1, 2, 3, 4, 5];
        let view = PartitionView::new("t", 6, &all);
        let mut p = DefaultPartitioner::new(1);
        let mut previous = p.partition(None, None, &view).unwrap();
        for _ in 0..200 {
            for _ in 0..10 {
                assert_eq!(p.partition(None, None, &view), Ok(previous));
            }
            // A keyed record in between changes nothing.
            p.partition(Some(b"key"), None, &view).unwrap();
            assert_eq!(p.sticky_partition("t"), Some(previous));
            p.on_new_batch(previous, &view);
            let next = p.partition(None, None, &view).unwrap();
            assert_ne!(next, previous);
            previous = next;
        }
    }

    #[test]
    fn sticky_choices_are_kept_per_topic() {
        let all = [0, 1, 2, 3, 4, 5, 6, 7];
        let a = PartitionView::new("a", 8, &all);
        let b = PartitionView::new("b", 8, &all);
        let mut p = DefaultPartitioner::new(2);
        let on_a = p.partition(None, None, &a).unwrap();
        let on_b = p.partition(None, None, &b).unwrap();
        p.on_new_batch(on_b, &b);
        assert_eq!(p.partition(None, None, &a), Ok(on_a));
        assert_ne!(p.partition(None, None, &b), Ok(on_b));
    }

    #[test]
    fn keyless_distribution_is_uniform_over_many_batches() {
        let all = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let view = PartitionView::new("t", 10, &all);
        let mut p = DefaultPartitioner::new(0x5eed);
        let batches = 20_000;
        let counts = fill(&mut p, &view, batches, 4);
        assert_eq!(counts.len(), 10);
        let expected = (batches * 5 / 10) as f64;
        for (partition, &n) in &counts {
            let deviation = (n as f64 - expected).abs() / expected;
            assert!(deviation < 0.05, "partition {partition}: {n} vs {expected}");
        }
    }

    #[test]
    fn only_partitions_with_a_leader_take_keyless_records() {
        let available = [1, 4, 6];
        let view = PartitionView::new("t", 8, &available);
        let mut p = DefaultPartitioner::new(3);
        let counts = fill(&mut p, &view, 3_000, 1);
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), vec![1, 4, 6]);
        for &n in counts.values() {
            assert!((1_800..2_200).contains(&n), "{counts:?}");
        }
        // Keyed records still hash over all partitions.
        assert_eq!(p.partition(Some(b"kafka"), None, &view), Ok(4));
        assert_eq!(p.partition(Some(b"abc"), None, &view), Ok(479_470_107 % 8));
    }

    #[test]
    fn with_no_leaders_at_all_every_partition_is_a_candidate() {
        let view = PartitionView::new("t", 3, &[]);
        let mut p = DefaultPartitioner::new(4);
        let counts = fill(&mut p, &view, 300, 0);
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn adaptive_draws_prefer_less_loaded_partitions() {
        // Partition 0 has a long queue, 1 a medium one, 2 and 3 none.
        let all = [0, 1, 2, 3];
        let queued = [30_000, 10_000, 0, 0];
        let view = PartitionView::new("t", 4, &all).with_queued_bytes(&queued);
        let mut p = DefaultPartitioner::new(5);
        let mut counts = BTreeMap::<i32, usize>::new();
        for _ in 0..40_000 {
            let chosen = p.partition(None, None, &view).unwrap();
            *counts.entry(chosen).or_default() += 1;
            p.on_new_batch(chosen, &view);
        }
        // Weights max - q + 1 are 1 : 20_001 : 30_001 : 30_001 over the
        // candidates other than the partition just left, which gives long-run
        // shares of about 0, 2/7, 5/14 and 5/14.
        let share = |p: i32| counts.get(&p).copied().unwrap_or(0) as f64 / 40_000.0;
        assert!(share(0) < 0.001, "{counts:?}");
        assert!(share(1) > 0.25 && share(1) < 0.32, "{counts:?}");
        assert!(share(2) > 0.33 && share(3) > 0.33, "{counts:?}");
        assert!(share(2) > share(1) && share(3) > share(1), "{counts:?}");
    }

    #[test]
    fn without_adaptive_the_queue_is_ignored() {
        let all = [0, 1, 2, 3];
        let queued = [30_000, 10_000, 0, 0];
        let view = PartitionView::new("t", 4, &all).with_queued_bytes(&queued);
        let mut p = DefaultPartitioner::new(5).adaptive(false);
        let counts = fill(&mut p, &view, 40_000, 0);
        for &n in counts.values() {
            assert!((9_000..11_000).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn equal_queues_draw_uniformly() {
        let all = [0, 1, 2, 3, 4];
        let queued = [700; 5];
        let view = PartitionView::new("t", 5, &all).with_queued_bytes(&queued);
        let mut p = DefaultPartitioner::new(6);
        let counts = fill(&mut p, &view, 50_000, 0);
        for &n in counts.values() {
            assert!((9_400..10_600).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn ignore_keys_makes_keyed_records_sticky() {
        let all = [0, 1, 2, 3, 4, 5];
        let view = PartitionView::new("t", 6, &all);
        let mut p = DefaultPartitioner::new(7).ignore_keys(true);
        let sticky = p.partition(None, None, &view).unwrap();
        for key in [&b"a"[..], b"b", b"c", b"kafka", b""] {
            assert_eq!(p.partition(Some(key), None, &view), Ok(sticky));
        }
    }

    #[test]
    fn empty_keys_hash_like_java() {
        let all = [0, 1, 2, 3, 4, 5, 6];
        let view = PartitionView::new("t", 7, &all);
        let mut p = DefaultPartitioner::new(8);
        // murmur2 of no bytes is 0x106e08d9 = 275_646_681.
        assert_eq!(p.partition(Some(b""), None, &view), Ok(275_646_681 % 7));
    }
}
