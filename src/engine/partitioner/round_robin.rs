//! Round-robin: the Java client's `RoundRobinPartitioner`.
//!
//! Every record, keyed or not, goes to the next partition in turn, one
//! counter per topic, cycling over the partitions that have a leader (over
//! all partitions when none has one). Keys are ignored, so per-key ordering
//! is lost: use it to spread load evenly record by record, at the cost of
//! smaller batches than sticky partitioning gives.
//!
//! Java's implementation skipped partitions when a new batch was created
//! (KAFKA-9965) because the partitioner was called twice for such records;
//! the engine calls a partitioner once per record, so the cycle here has no
//! gaps.

use std::collections::BTreeMap;

use super::{PartitionError, PartitionView, Partitioner};

/// Sends each record to the next available partition of its topic in turn.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{PartitionView, Partitioner, RoundRobinPartitioner};
///
/// let mut partitioner = RoundRobinPartitioner::new();
/// let available = [0, 2, 3];
/// let view = PartitionView::new("t", 4, &available);
/// let chosen: Vec<i32> = (0..5)
///     .map(|_| partitioner.partition(Some(b"same key"), None, &view).unwrap())
///     .collect();
/// assert_eq!(chosen, [0, 2, 3, 0, 2]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RoundRobinPartitioner {
    /// Records partitioned so far, per topic.
    counters: BTreeMap<String, u64>,
}

impl RoundRobinPartitioner {
    /// A round-robin partitioner starting every topic at its first
    /// available partition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next value of `topic`'s counter.
    fn next(&mut self, topic: &str) -> u64 {
        match self.counters.get_mut(topic) {
            Some(counter) => {
                let value = *counter;
                *counter = value.wrapping_add(1);
                value
            }
            None => {
                self.counters.insert(topic.to_owned(), 1);
                0
            }
        }
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &mut self,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        let count = view.checked_count()?;
        let turn = self.next(view.topic);
        let available = view.available;
        if !available.is_empty() {
            let index = turn % available.len() as u64;
            if let Some(&partition) = usize::try_from(index).ok().and_then(|i| available.get(i))
                && u32::try_from(partition).is_ok_and(|p| p < count)
            {
                return Ok(partition);
            }
        }
        // `count` is at most i32::MAX, so the remainder fits.
        Ok(i32::try_from(turn % u64::from(count)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_over_available_partitions() {
        let mut p = RoundRobinPartitioner::new();
        let available = [1, 2, 5];
        let view = PartitionView::new("t", 6, &available);
        let chosen: Vec<i32> = (0..9)
            .map(|i| {
                let key = if i % 2 == 0 { None } else { Some(&b"k"[..]) };
                p.partition(key, None, &view).unwrap()
            })
            .collect();
        assert_eq!(chosen, [1, 2, 5, 1, 2, 5, 1, 2, 5]);
    }

    #[test]
    fn cycles_over_all_partitions_when_none_has_a_leader() {
        let mut p = RoundRobinPartitioner::new();
        let view = PartitionView::new("t", 3, &[]);
        let chosen: Vec<i32> = (0..7)
            .map(|_| p.partition(None, None, &view).unwrap())
            .collect();
        assert_eq!(chosen, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn counters_are_per_topic_and_follow_leadership_changes() {
        let mut p = RoundRobinPartitioner::new();
        let all = [0, 1, 2, 3];
        let a = PartitionView::new("a", 4, &all);
        let b = PartitionView::new("b", 4, &all);
        assert_eq!(p.partition(None, None, &a), Ok(0));
        assert_eq!(p.partition(None, None, &a), Ok(1));
        assert_eq!(p.partition(None, None, &b), Ok(0));
        // Partition 2 loses its leader: the cycle continues over the rest.
        let fewer = [0, 1, 3];
        let a = PartitionView::new("a", 4, &fewer);
        assert_eq!(p.partition(None, None, &a), Ok(3));
        assert_eq!(p.partition(None, None, &a), Ok(0));
        // Batches completing do not disturb the cycle.
        p.on_new_batch(0, &a);
        assert_eq!(p.partition(None, None, &a), Ok(1));
    }

    #[test]
    fn stale_available_entries_fall_back_to_all_partitions() {
        let mut p = RoundRobinPartitioner::new();
        let stale = [7];
        let view = PartitionView::new("t", 2, &stale);
        assert_eq!(p.partition(None, None, &view), Ok(0));
        assert_eq!(p.partition(None, None, &view), Ok(1));
    }
}
