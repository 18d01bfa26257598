//! The read_committed filter: which batches of one Fetch response belong to
//! aborted transactions.
//!
//! This module owns the rule alone, with no I/O and no record decoding, so
//! it can be tested batch by batch. The broker cannot drop aborted data from
//! the log, so it returns it and tells the consumer which transactions
//! overlapping the fetched range were aborted: for each, the producer id and
//! the offset of its first batch. Walking the batches in offset order, a
//! consumer then
//!
//! 1. marks a producer as *aborting* once the walk reaches the first offset
//!    of one of its aborted transactions (an entry whose first offset is at
//!    or before the batch's last offset),
//! 2. skips every transactional data batch of an aborting producer,
//! 3. clears the mark at that producer's abort marker (a control batch with
//!    an ABORT record), because the transaction ends there and the
//!    producer's next transaction may commit,
//! 4. skips every control batch, whatever the isolation level.
//!
//! Non-transactional batches are always delivered. The aborted list of one
//! response covers every aborted transaction that overlaps its range,
//! including one that began before the fetch offset, so a fresh filter per
//! response is enough: a transaction spanning fetches is listed in each.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

/// One entry of a Fetch response's `aborted_transactions` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AbortedTransaction {
    /// The first offset of the aborted transaction in this partition.
    pub(crate) first_offset: i64,
    /// The producer that aborted it.
    pub(crate) producer_id: i64,
}

/// The kind of a control batch, as far as the filter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// An ABORT transaction marker.
    Abort,
    /// A COMMIT marker or any other control record.
    Other,
}

/// What the filter needs to know about one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchInfo {
    pub(crate) producer_id: i64,
    pub(crate) last_offset: i64,
    pub(crate) transactional: bool,
    /// `Some` for a control batch.
    pub(crate) control: Option<Marker>,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand its records to the application.
    Deliver,
    /// Skip it: a data batch of an aborted transaction.
    Aborted,
    /// Skip it: a control batch (transaction marker).
    Control,
}

/// The filter for one Fetch response of one partition.
#[derive(Debug, Default)]
pub(crate) struct AbortedFilter {
    /// Aborted transactions not reached yet, earliest first.
    pending: BinaryHeap<Reverse<AbortedTransaction>>,
    /// Producers whose current transaction is aborted.
    aborting: HashSet<i64>,
    /// Whether to filter at all (read_committed).
    enabled: bool,
}

impl AbortedFilter {
    /// A filter for read_committed with the response's aborted list.
    pub(crate) fn read_committed(aborted: impl IntoIterator<Item = AbortedTransaction>) -> Self {
        AbortedFilter {
            pending: aborted.into_iter().map(Reverse).collect(),
            aborting: HashSet::new(),
            enabled: true,
        }
    }

    /// A filter for read_uncommitted: only control batches are skipped.
    pub(crate) fn read_uncommitted() -> Self {
        AbortedFilter::default()
    }

    /// The verdict for the next batch, in offset order.
    pub(crate) fn verdict(&mut self, batch: &BatchInfo) -> Verdict {
        if !self.enabled {
            return match batch.control {
                Some(_) => Verdict::Control,
                None => Verdict::Deliver,
            };
        }
        if batch.transactional {
            while let Some(Reverse(next)) = self.pending.peek() {
                if next.first_offset > batch.last_offset {
                    break;
                }
                self.aborting.insert(next.producer_id);
                self.pending.pop();
            }
        }
        match batch.control {
            Some(marker) => {
                if batch.transactional && marker == Marker::Abort {
                    self.aborting.remove(&batch.producer_id);
                }
                Verdict::Control
            }
            None if batch.transactional && self.aborting.contains(&batch.producer_id) => {
                Verdict::Aborted
            }
            None => Verdict::Deliver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch as (producer id, base offset, last offset, transactional,
    /// control marker).
    type Spec = (i64, i64, i64, bool, Option<Marker>);

    const DATA: Option<Marker> = None;
    const ABORT: Option<Marker> = Some(Marker::Abort);
    const COMMIT: Option<Marker> = Some(Marker::Other);

    fn aborted(list: &[(i64, i64)]) -> Vec<AbortedTransaction> {
        list.iter()
            .map(|&(producer_id, first_offset)| AbortedTransaction {
                first_offset,
                producer_id,
            })
            .collect()
    }

    /// The base offsets of the batches delivered, and the verdicts.
    fn run(filter: &mut AbortedFilter, batches: &[Spec]) -> (Vec<i64>, Vec<Verdict>) {
        let mut delivered = Vec::new();
        let mut verdicts = Vec::new();
        for &(producer_id, base, last, transactional, control) in batches {
            let verdict = filter.verdict(&BatchInfo {
                producer_id,
                last_offset: last,
                transactional,
                control,
            });
            if verdict == Verdict::Deliver {
                delivered.push(base);
            }
            verdicts.push(verdict);
        }
        (delivered, verdicts)
    }

    #[test]
    fn an_aborted_transaction_is_skipped_up_to_and_including_its_marker() {
        let batches = [
            (7, 0, 2, true, DATA),
            (7, 3, 4, true, DATA),
            (7, 5, 5, true, ABORT),
            (-1, 6, 6, false, DATA),
        ];
        let mut filter = AbortedFilter::read_committed(aborted(&[(7, 0)]));
        let (delivered, verdicts) = run(&mut filter, &batches);
        assert_eq!(delivered, [6]);
        assert_eq!(
            verdicts,
            [
                Verdict::Aborted,
                Verdict::Aborted,
                Verdict::Control,
                Verdict::Deliver
            ]
        );
    }

    #[test]
    fn read_uncommitted_delivers_aborted_data_and_skips_only_markers() {
        let batches = [
            (7, 0, 2, true, DATA),
            (7, 3, 3, true, ABORT),
            (8, 4, 4, true, DATA),
            (8, 5, 5, true, COMMIT),
        ];
        let mut filter = AbortedFilter::read_uncommitted();
        let (delivered, verdicts) = run(&mut filter, &batches);
        assert_eq!(delivered, [0, 4]);
        assert_eq!(verdicts[1], Verdict::Control);
        assert_eq!(verdicts[3], Verdict::Control);
    }

    #[test]
    fn interleaved_transactions_of_two_producers_one_aborted_one_committed() {
        // Producer 1 commits offsets 0, 2, 4 (marker 6); producer 2 aborts
        // 1, 3 (marker 5); producer 2 then commits 7 (marker 8).
        let batches = [
            (1, 0, 0, true, DATA),
            (2, 1, 1, true, DATA),
            (1, 2, 2, true, DATA),
            (2, 3, 3, true, DATA),
            (1, 4, 4, true, DATA),
            (2, 5, 5, true, ABORT),
            (1, 6, 6, true, COMMIT),
            (2, 7, 7, true, DATA),
            (2, 8, 8, true, COMMIT),
        ];
        let mut filter = AbortedFilter::read_committed(aborted(&[(2, 1)]));
        let (delivered, _) = run(&mut filter, &batches);
        assert_eq!(delivered, [0, 2, 4, 7]);
    }

    #[test]
    fn both_producers_aborting_with_transactions_listed_out_of_order() {
        let batches = [
            (1, 10, 11, true, DATA),
            (2, 12, 12, true, DATA),
            (1, 13, 13, true, ABORT),
            (3, 14, 14, true, DATA),
            (2, 15, 15, true, DATA),
            (2, 16, 16, true, ABORT),
            (3, 17, 17, true, COMMIT),
            (1, 18, 18, true, DATA),
            (1, 19, 19, true, ABORT),
        ];
        // The broker's list need not be sorted.
        let mut filter = AbortedFilter::read_committed(aborted(&[(1, 18), (2, 12), (1, 10)]));
        let (delivered, _) = run(&mut filter, &batches);
        assert_eq!(delivered, [14]);
    }

    #[test]
    fn a_producer_that_aborts_then_commits_has_its_second_transaction_delivered() {
        let batches = [
            (5, 0, 3, true, DATA),
            (5, 4, 4, true, ABORT),
            (5, 5, 6, true, DATA),
            (5, 7, 7, true, COMMIT),
        ];
        let mut filter = AbortedFilter::read_committed(aborted(&[(5, 0)]));
        let (delivered, _) = run(&mut filter, &batches);
        assert_eq!(delivered, [5]);
    }

    #[test]
    fn an_aborted_transaction_spanning_two_fetches_is_skipped_in_both() {
        // The transaction of producer 4 runs from offset 100 to its marker
        // at 130. The first response ends before the marker; the second
        // starts after the transaction's first offset, and the broker lists
        // the transaction again because it overlaps the fetched range.
        let first_fetch = [
            (4, 100, 109, true, DATA),
            (-1, 110, 110, false, DATA),
            (4, 111, 119, true, DATA),
        ];
        let second_fetch = [
            (4, 120, 129, true, DATA),
            (4, 130, 130, true, ABORT),
            (4, 131, 131, true, DATA),
            (4, 132, 132, true, COMMIT),
        ];
        let mut filter = AbortedFilter::read_committed(aborted(&[(4, 100)]));
        assert_eq!(run(&mut filter, &first_fetch).0, [110]);
        let mut filter = AbortedFilter::read_committed(aborted(&[(4, 100)]));
        assert_eq!(run(&mut filter, &second_fetch).0, [131]);
    }

    #[test]
    fn a_committed_transaction_spanning_fetches_is_delivered_in_both() {
        let mut filter = AbortedFilter::read_committed(Vec::new());
        assert_eq!(
            run(&mut filter, &[(9, 0, 4, true, DATA), (9, 5, 9, true, DATA)]).0,
            [0, 5]
        );
        let mut filter = AbortedFilter::read_committed(Vec::new());
        assert_eq!(
            run(
                &mut filter,
                &[(9, 10, 14, true, DATA), (9, 15, 15, true, COMMIT)]
            )
            .0,
            [10]
        );
    }

    #[test]
    fn an_aborted_entry_is_reached_only_at_its_first_offset() {
        // Producer 3 committed a transaction at 0..=1 and aborted the next
        // one, which starts at 3: the first must still be delivered.
        let batches = [
            (3, 0, 1, true, DATA),
            (3, 2, 2, true, COMMIT),
            (3, 3, 4, true, DATA),
            (3, 5, 5, true, ABORT),
        ];
        let mut filter = AbortedFilter::read_committed(aborted(&[(3, 3)]));
        assert_eq!(run(&mut filter, &batches).0, [0]);
    }

    #[test]
    fn non_transactional_batches_of_an_aborting_producer_id_are_delivered() {
        let batches = [(6, 0, 0, true, DATA), (6, 1, 1, false, DATA)];
        let mut filter = AbortedFilter::read_committed(aborted(&[(6, 0)]));
        assert_eq!(run(&mut filter, &batches).0, [1]);
    }
}
