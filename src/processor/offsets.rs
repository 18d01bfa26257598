//! [`OffsetTracker`]: which offset of one partition may be committed when
//! records finish out of order.
//!
//! Records of different keys finish in any order, but Kafka commits one
//! position per partition: everything before it counts as processed. The
//! tracker therefore commits up to the lowest offset still unfinished (or
//! just past the highest offset seen when nothing is unfinished), so no
//! record is ever committed before it is finished (at-least-once).
//!
//! ```text
//!   seen:      10 11 12 13 14
//!   finished:  ✓  ✓     ✓  ✓
//!   committable position: 12   (12 is still running)
//! ```

use std::collections::BTreeSet;

/// The unfinished offsets of one partition and the highest one seen.
#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetTracker {
    unfinished: BTreeSet<i64>,
    highest: Option<i64>,
}

impl OffsetTracker {
    /// A record at `offset` was received and is not finished yet.
    pub(crate) fn track(&mut self, offset: i64) {
        self.unfinished.insert(offset);
        self.highest = Some(self.highest.map_or(offset, |h| h.max(offset)));
    }

    /// The record at `offset` is finished (processed, or handed to a retry
    /// or dead-letter topic).
    pub(crate) fn finish(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    /// The position that may be committed: the lowest unfinished offset,
    /// else one past the highest offset seen; `None` before any record.
    pub(crate) fn committable(&self) -> Option<i64> {
        match self.unfinished.first() {
            Some(lowest) => Some(*lowest),
            None => self.highest.map(|h| h + 1),
        }
    }

    /// How many records are unfinished.
    #[cfg(test)]
    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_seen_commits_nothing() {
        assert_eq!(OffsetTracker::default().committable(), None);
    }

    #[test]
    fn commits_up_to_the_lowest_unfinished_offset() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.track(o);
        }
        assert_eq!(t.committable(), Some(10));
        t.finish(11);
        t.finish(13);
        t.finish(14);
        assert_eq!(t.committable(), Some(10), "10 is still running");
        t.finish(10);
        assert_eq!(t.committable(), Some(12));
        t.finish(12);
        assert_eq!(t.committable(), Some(15));
        assert_eq!(t.unfinished(), 0);
    }

    #[test]
    fn gaps_in_offsets_are_skipped() {
        // Compacted topics and transaction markers leave gaps.
        let mut t = OffsetTracker::default();
        t.track(3);
        t.track(7);
        t.finish(3);
        assert_eq!(t.committable(), Some(7));
        t.finish(7);
        assert_eq!(t.committable(), Some(8));
    }

    #[test]
    fn finishing_twice_or_unknown_offsets_changes_nothing() {
        let mut t = OffsetTracker::default();
        t.track(1);
        t.track(2);
        t.finish(5);
        t.finish(2);
        t.finish(2);
        assert_eq!(t.committable(), Some(1));
    }
}
