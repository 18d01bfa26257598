//! Which of a topic's partitions the drain pass looks at, so that a pass
//! over thousands of partitions reads the few that may send instead of
//! every one holding records.
//!
//! A partition holding records becomes sendable in one of three ways:
//!
//! - **By time**: its open batch's linger ends, or its head batch's retry
//!   backoff does. Batches open in time order and linger is fixed, so
//!   linger ends arrive in the order batches opened: a queue in opening
//!   order holds them without sorting. Backoffs (retries only) are few and
//!   kept sorted.
//! - **By an event on the partition**: a batch sealed full, a batch in
//!   flight settled (the partition may send again), a batch drained (the
//!   next may follow). These mark the partition due.
//! - **By an event on the producer**: a flush, new metadata, a new
//!   producer id, a failed request, a retry. Those are rarer, and the
//!   engine then walks every partition holding records instead (see
//!   `Engine::walk_all`), as every pass did before this index.
//!
//! The index may hold partitions that turn out not to be sendable (a
//! batch drained early because it filled leaves its linger end behind);
//! looking at them costs a check. It forgets the linger ends of a
//! partition the drain left without an open batch ([`closed`]), as over
//! thousands of partitions most batches go before their linger ends
//! (drained with their broker's others) and most partitions are empty
//! after: without that, each such end would cost a look at a partition's
//! state out of the cache. What it must never do is miss one: the
//! engine's tests compare each pass that uses the index with a walk over
//! every partition.
//!
//! [`closed`]: ReadyIndex::closed

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use super::partition_set::PartitionSet;

/// One topic's partitions that may become sendable, by time or by an event.
#[derive(Debug, Default)]
pub(super) struct ReadyIndex {
    /// Partitions to look at in the next pass whatever the time; may hold
    /// one more than once.
    due: Vec<u32>,
    /// (linger end, partition) of each batch opened, in opening order.
    lingering: VecDeque<(Instant, u32)>,
    /// Partitions that may have an open batch whose linger end is in
    /// `lingering`; an end of a partition not in it is passed over.
    open: PartitionSet,
    /// (end of backoff, partition) of partitions whose head batch waits to
    /// be retried.
    backoff: BTreeSet<(Instant, u32)>,
}

impl ReadyIndex {
    /// A batch of `partition` opened; its linger ends at `ready_at`, which
    /// is never before the linger end of a batch opened earlier.
    pub(super) fn opened(&mut self, ready_at: Instant, partition: usize) {
        debug_assert!(self.lingering.back().is_none_or(|(t, _)| *t <= ready_at));
        self.lingering.push_back((ready_at, index(partition)));
        self.open.insert(partition);
    }

    /// `partition` has no open batch any more (the drain took it): the
    /// linger ends kept for its earlier batches need no look.
    pub(super) fn closed(&mut self, partition: usize) {
        self.open.remove(partition);
    }

    /// `partition` should be looked at in the next pass.
    pub(super) fn mark(&mut self, partition: usize) {
        self.due.push(index(partition));
    }

    /// `partition`'s head batch may be retried at `at`.
    pub(super) fn backoff(&mut self, at: Instant, partition: usize) {
        self.backoff.insert((at, index(partition)));
    }

    /// Marks due the partitions whose backoff ended by `now` and those
    /// whose linger ends by `soon` (at or after `now`).
    pub(super) fn advance(&mut self, now: Instant, soon: Instant) {
        while let Some(&(at, p)) = self.lingering.front() {
            if at > soon {
                break;
            }
            self.lingering.pop_front();
            if self.open.contains(p as usize) {
                self.due.push(p);
            }
        }
        while let Some(&(at, p)) = self.backoff.first() {
            if at > now {
                break;
            }
            self.backoff.pop_first();
            self.due.push(p);
        }
    }

    /// The earliest linger or backoff end still ahead (may be early: the
    /// batch it was kept for may have gone already).
    pub(super) fn next_time(&self) -> Option<Instant> {
        super::earliest(
            self.lingering.front().map(|(t, _)| *t),
            self.backoff.first().map(|(t, _)| *t),
        )
    }

    /// Moves the due partitions into `into` (cleared first), in ascending
    /// order without repeats, and forgets them.
    pub(super) fn take_due(&mut self, into: &mut Vec<u32>) {
        into.clear();
        std::mem::swap(&mut self.due, into);
        into.sort_unstable();
        into.dedup();
    }

    /// Forgets the due partitions (a pass is looking at every partition).
    pub(super) fn clear_due(&mut self) {
        self.due.clear();
    }
}

/// A partition index as the index keeps it (a topic has fewer than 2^31
/// partitions: the protocol counts them in an `i32`).
fn index(partition: usize) -> u32 {
    u32::try_from(partition).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ReadyIndex;

    #[test]
    fn time_and_marks_make_partitions_due_once_each_in_order() {
        // An origin for the test's instants; the index reads no clock.
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        let mut index = ReadyIndex::default();
        assert_eq!(index.next_time(), None);
        index.opened(t0 + ms(5), 7);
        index.opened(t0 + ms(5), 3);
        index.opened(t0 + ms(6), 9);
        index.backoff(t0 + ms(100), 4);
        index.backoff(t0 + ms(2), 8);
        assert_eq!(index.next_time(), Some(t0 + ms(2)));
        index.mark(9);
        let mut due = vec![42];
        index.advance(t0 + ms(1), t0 + ms(1));
        index.take_due(&mut due);
        assert_eq!(due, vec![9], "only the mark before any end");
        index.advance(t0 + ms(5), t0 + ms(5));
        index.mark(3);
        index.take_due(&mut due);
        assert_eq!(due, vec![3, 7, 8], "sorted, each once");
        assert_eq!(index.next_time(), Some(t0 + ms(6)));
        index.advance(t0 + ms(100), t0 + ms(100));
        index.take_due(&mut due);
        assert_eq!(due, vec![4, 9]);
        assert_eq!(index.next_time(), None);
        index.mark(1);
        index.clear_due();
        index.take_due(&mut due);
        assert!(due.is_empty());
    }

    /// A partition the drain left without an open batch has its earlier
    /// linger ends passed over; once a batch opens there again, its ends
    /// count (the earlier ones too: a look too many, never one too few).
    #[test]
    fn the_linger_ends_of_a_closed_partition_are_passed_over() {
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        let mut index = ReadyIndex::default();
        let mut due = Vec::new();
        index.opened(t0 + ms(5), 1);
        index.opened(t0 + ms(5), 2);
        index.closed(1);
        index.advance(t0 + ms(5), t0 + ms(5));
        index.take_due(&mut due);
        assert_eq!(due, vec![2], "1's batch went before its linger ended");
        index.opened(t0 + ms(6), 3);
        index.closed(3);
        index.opened(t0 + ms(7), 3);
        index.advance(t0 + ms(6), t0 + ms(6));
        index.take_due(&mut due);
        assert_eq!(due, vec![3], "3 has an open batch again");
        index.advance(t0 + ms(7), t0 + ms(7));
        index.take_due(&mut due);
        assert_eq!(due, vec![3]);
        index.mark(1);
        index.take_due(&mut due);
        assert_eq!(due, vec![1], "a mark counts whatever the linger ends");
    }
}
