//! A set of a topic's partition indices, one bit each: the partitions that
//! may hold records, and those that may have a batch lingering (see
//! `ready_index`).
//!
//! Over thousands of partitions a producer's batches hold a record or two,
//! so a partition joins the set and leaves it about once per batch: with
//! one bit per partition that is a store, where a tree set searched,
//! allocated and rebalanced. Walking the set in partition order reads a
//! word per 64 partitions (157 words for 10,000).

/// Partition indices, in ascending order when walked.
#[derive(Debug, Default, Clone)]
pub(super) struct PartitionSet {
    words: Vec<u64>,
}

impl PartitionSet {
    /// Adds `partition`.
    pub(super) fn insert(&mut self, partition: usize) {
        let (word, bit) = (partition / 64, partition % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << bit;
    }

    /// Removes `partition` (nothing if it is not in the set).
    pub(super) fn remove(&mut self, partition: usize) {
        if let Some(word) = self.words.get_mut(partition / 64) {
            *word &= !(1 << (partition % 64));
        }
    }

    /// Whether `partition` is in the set.
    pub(super) fn contains(&self, partition: usize) -> bool {
        self.words
            .get(partition / 64)
            .is_some_and(|word| word & (1 << (partition % 64)) != 0)
    }

    /// The partitions in the set, in ascending order.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::PartitionSet;

    proptest! {
        #[test]
        fn holds_what_a_tree_set_holds_in_the_same_order(
            ops in proptest::collection::vec((any::<bool>(), 0usize..700), 0..400)
        ) {
            let mut set = PartitionSet::default();
            let mut model = BTreeSet::new();
            for (add, partition) in ops {
                if add {
                    set.insert(partition);
                    model.insert(partition);
                } else {
                    set.remove(partition);
                    model.remove(&partition);
                }
                prop_assert_eq!(set.contains(partition), add);
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_edges_of_a_word() {
        let mut set = PartitionSet::default();
        for p in [0, 63, 64, 127, 10_000] {
            set.insert(p);
        }
        set.remove(5_000_000); // beyond the words held: nothing to do
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 63, 64, 127, 10_000]);
        set.remove(63);
        set.remove(10_000);
        assert!(!set.contains(63));
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 64, 127]);
    }
}
