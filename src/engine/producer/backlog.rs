//! How many more bytes of records the brokers' next requests can carry:
//! the room a waiting send may take before the producer's task looks again.
//!
//! A Produce request carries at most one batch per partition, so the most a
//! broker takes from the queue in one request is a full batch of every
//! partition it leads that has records, and never more than
//! `max_request_size`. Records queued beyond a few such requests cannot
//! leave sooner for being queued early: while the producer is faster than
//! its brokers they only add waiting time and memory (a full 64 MiB buffer
//! of 1 KiB records is tens of milliseconds of waiting, and its size in
//! resident memory). Each drain pass knows, per leader, the partitions with
//! unsent records and their bytes, and leaves as room what
//! [`REQUESTS_AHEAD`] requests of every leader could carry beyond them. The
//! producer's waiting sends spend that room and wait once it is spent,
//! until a later pass finds more; `try_send` still fills the whole buffer.
//!
//! A pass that walks every partition holding records counts them afresh
//! ([`start`](Backlog::start), [`partition`](Backlog::partition)); between
//! such walks the count follows the records: appends add to it
//! ([`appended`](Backlog::appended)), drains take from it
//! ([`sent`](Backlog::sent), [`emptied`](Backlog::emptied)), and a pass
//! that looks only at the partitions that may send carries it on
//! ([`carry_on`](Backlog::carry_on)). Either way a pass's room counts the
//! partitions that held records when it began.
//!
//! Partitions without a known leader are not counted: their records cannot
//! leave until metadata says where to, and holding every sender back for
//! them would stop the topics that can go on. Nor is there a limit while
//! the brokers deliver nothing: when no batch was delivered for [`STALL`]
//! since the producer last had work (a broker down, a partition moving),
//! the buffer absorbs what is sent, as `buffer_memory` is there to, instead
//! of every waiting send blocking until the brokers are back. An idle
//! producer leaves room for [`REQUESTS_AHEAD`] full batches, so that a
//! burst is paced from its first records.

use std::time::{Duration, Instant};

/// Requests' worth of unsent records per broker that the room allows. A
/// trade measured with a waiting send flat out (3 brokers, 6 partitions,
/// 64 KiB batches): at 1 KiB records, 4 gave a p99 of 4-8 ms and 24-30 MiB
/// peak RSS, 8 gave 8-13 ms and 32-33 MiB (a full buffer: 62-65 ms and 87
/// MiB), both at the full buffer's rate; at 100 B, 4 cost 11-15 % of the
/// records per second, 8 about 4 %.
pub(super) const REQUESTS_AHEAD: u64 = 8;

/// How long the brokers may deliver nothing and still count as taking
/// records at their own pace.
pub(super) const STALL: Duration = Duration::from_millis(250);

/// A drain pass's count of unsent records (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct Backlog {
    /// When a batch was last delivered.
    delivered_at: Option<Instant>,
    /// When the producer last went from idle to holding records.
    busy_since: Option<Instant>,
    /// Whether the last pass found the producer idle.
    was_idle: bool,
    /// Buffer bytes of unsent records in partitions with a known leader.
    unsent: u64,
    /// Per leader: partitions with unsent records when the pass began.
    leaders: Vec<(i32, u64)>,
    /// Per leader: partitions the pass emptied, taken off `leaders` when
    /// the next pass carries the count on.
    emptied: Vec<(i32, u64)>,
    /// The room the last complete pass left; `None` for no limit.
    room: Option<u64>,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            delivered_at: None,
            busy_since: None,
            was_idle: true,
            unsent: 0,
            leaders: Vec::new(),
            emptied: Vec::new(),
            room: None,
        }
    }
}

impl Backlog {
    /// Starts a pass that counts every partition afresh.
    pub(super) fn start(&mut self) {
        self.unsent = 0;
        self.leaders.clear();
        self.emptied.clear();
    }

    /// A partition led by `leader` holds `unsent` bytes of unsent records.
    pub(super) fn partition(&mut self, leader: i32, unsent: u64) {
        if unsent == 0 {
            return;
        }
        self.unsent += unsent;
        bump(&mut self.leaders, leader);
    }

    /// Starts a pass that keeps the count the appends and drains since the
    /// last one left.
    pub(super) fn carry_on(&mut self) {
        for (leader, gone) in self.emptied.drain(..) {
            if let Some((_, partitions)) = self.leaders.iter_mut().find(|(id, _)| *id == leader) {
                *partitions = partitions.saturating_sub(gone);
            }
        }
        self.leaders.retain(|(_, partitions)| *partitions > 0);
    }

    /// Records of `bytes` joined a partition led by `leader`, which held no
    /// unsent records before if `first`.
    pub(super) fn appended(&mut self, leader: i32, bytes: u64, first: bool) {
        self.unsent += bytes;
        if first {
            bump(&mut self.leaders, leader);
        }
    }

    /// Records of `bytes` were taken into a request in the same pass.
    pub(super) fn sent(&mut self, bytes: u64) {
        self.unsent = self.unsent.saturating_sub(bytes);
    }

    /// The pass took the last unsent records of a partition led by
    /// `leader` (it still counts for this pass's room).
    pub(super) fn emptied(&mut self, leader: i32) {
        bump(&mut self.emptied, leader);
    }

    /// Tests: what the count holds, as a fresh count would give it: the
    /// unsent bytes and, per leader in order, the partitions holding some.
    #[cfg(test)]
    pub(super) fn counted(&self) -> (u64, Vec<(i32, u64)>) {
        let mut leaders: Vec<(i32, u64)> = self
            .leaders
            .iter()
            .copied()
            .filter(|(_, partitions)| *partitions > 0)
            .collect();
        leaders.sort_unstable();
        (self.unsent, leaders)
    }

    /// A batch was delivered at `now`: the brokers are taking records.
    pub(super) fn delivered(&mut self, now: Instant) {
        self.delivered_at = Some(now);
    }

    /// Ends a pass at `now`, with the producer `idle` (nothing queued or in
    /// flight) or not: the room is what [`REQUESTS_AHEAD`] requests of
    /// every leader could carry beyond the records unsent (a request counts
    /// at least one full batch, so that a first record finds room), unless
    /// the brokers delivered nothing within [`STALL`] of the later of the
    /// last delivery and the producer's last start from idle: no limit then.
    pub(super) fn finish(
        &mut self,
        now: Instant,
        idle: bool,
        batch_size: usize,
        max_request_size: usize,
    ) {
        if idle {
            self.was_idle = true;
        } else if std::mem::take(&mut self.was_idle) {
            self.busy_since = Some(now);
        }
        let progressing = idle
            || self
                .delivered_at
                .max(self.busy_since)
                .is_some_and(|at| now.saturating_duration_since(at) < STALL);
        if !progressing {
            self.room = None;
            return;
        }
        let per_request: u64 = self
            .leaders
            .iter()
            .map(|(_, partitions)| {
                partitions
                    .saturating_mul(batch_size as u64)
                    .min(max_request_size as u64)
            })
            .sum::<u64>()
            .max(batch_size as u64);
        let allowance = per_request.saturating_mul(REQUESTS_AHEAD);
        let room = allowance.saturating_sub(self.unsent);
        // Less than a request's worth is no room yet: waiting senders are
        // woken for a good part of the allowance at a time, not a few
        // records.
        self.room = Some(if room < per_request { 0 } else { room });
    }

    /// A pass that could not send at all (no producer id yet): no limit.
    pub(super) fn clear(&mut self) {
        self.start();
        self.room = None;
    }

    /// The room the last pass left; `None` for no limit.
    pub(super) fn room(&self) -> Option<u64> {
        self.room
    }

    /// While there is a limit and records wait unsent, when the limit
    /// lapses unless another batch is delivered: time alone then has work
    /// to do. (With nothing unsent, the next delivery or the next record
    /// brings a pass of its own.)
    pub(super) fn recheck_at(&self) -> Option<Instant> {
        if self.room.is_none() || self.unsent == 0 {
            return None;
        }
        Some(self.delivered_at.max(self.busy_since)? + STALL)
    }
}

/// Adds one to `leader`'s count in `counts`.
fn bump(counts: &mut Vec<(i32, u64)>, leader: i32) {
    match counts.iter_mut().find(|(id, _)| *id == leader) {
        Some((_, n)) => *n += 1,
        None => counts.push((leader, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const BATCH: usize = 64 * 1024;
    const REQUEST: usize = 1 << 20;

    /// The room after one pass over `partitions` (leader, unsent bytes),
    /// less `sent`, just after a delivery.
    fn pass(partitions: &[(i32, u64)], sent: u64) -> Option<u64> {
        let now = crate::clock::now();
        let mut b = Backlog::default();
        b.delivered(now);
        b.start();
        for &(leader, unsent) in partitions {
            b.partition(leader, unsent);
        }
        b.sent(sent);
        b.finish(now, false, BATCH, REQUEST);
        b.room()
    }

    #[test]
    fn room_is_requests_ahead_of_full_batches_per_leader_less_the_unsent() {
        // Two leaders, two partitions each: a request carries at most two
        // 64 KiB batches.
        let allowance = REQUESTS_AHEAD * 2 * 128 * KIB;
        let each = allowance / 4;
        let four = |extra: u64| [(1, each), (1, each), (2, each), (2, each + extra)];
        assert_eq!(pass(&four(0), 0), Some(0), "exactly the allowance");
        assert_eq!(pass(&four(1), 0), Some(0), "over it");
        let request = 2 * 128 * KIB;
        assert_eq!(pass(&four(0), request), Some(request), "what was sent");
        assert_eq!(
            pass(&four(0), 10 * KIB),
            Some(0),
            "less than a request's worth is no room yet"
        );
        assert_eq!(
            pass(&[(1, KIB), (1, KIB), (2, KIB), (2, KIB)], 0),
            Some(allowance - 4 * KIB)
        );
    }

    #[test]
    fn a_request_is_capped_at_the_request_size() {
        // 1,000 partitions on one leader: one request carries 1 MiB, not
        // 1,000 full batches.
        let allowance = REQUESTS_AHEAD * REQUEST as u64;
        assert_eq!(pass(&[(7, KIB); 1000], 0), Some(allowance - 1000 * KIB));
    }

    #[test]
    fn empty_partitions_do_not_widen_it_and_a_batch_is_always_allowed() {
        let allowance = REQUESTS_AHEAD * BATCH as u64;
        let mut partitions = vec![(1, KIB)];
        partitions.extend(std::iter::repeat_n((1, 0), 100));
        assert_eq!(pass(&partitions, 0), Some(allowance - KIB));
        assert_eq!(pass(&[], 0), Some(allowance), "nothing unsent");
    }

    #[test]
    fn partitions_of_another_leader_widen_it() {
        let allowance = REQUESTS_AHEAD * BATCH as u64;
        assert_eq!(pass(&[(1, allowance)], 0), Some(0));
        assert_eq!(pass(&[(1, allowance), (2, 1)], 0), Some(allowance - 1));
    }

    /// Appends and drains between walks keep the count a walk would make,
    /// and a pass's room counts the partitions it began with.
    #[test]
    fn a_count_carried_on_is_the_count_a_walk_makes() {
        let now = crate::clock::now();
        let mut b = Backlog::default();
        b.delivered(now);
        // A walk: two partitions of leader 1, one of leader 2.
        b.start();
        for (leader, unsent) in [(1, 10 * KIB), (1, KIB), (2, 5 * KIB)] {
            b.partition(leader, unsent);
        }
        // The pass drains leader 2's partition whole and part of another.
        b.sent(5 * KIB);
        b.emptied(2);
        b.sent(4 * KIB);
        b.finish(now, false, BATCH, REQUEST);
        let allowance = REQUESTS_AHEAD * (2 * BATCH + BATCH) as u64;
        assert_eq!(b.room(), Some(allowance - 7 * KIB), "leader 2 still counts");
        // Then: more records for a partition of leader 1 that held some,
        // and a first one for a partition of leader 3.
        b.appended(1, KIB, false);
        b.appended(3, 2 * KIB, true);
        b.carry_on();
        let mut walk = Backlog::default();
        for (leader, unsent) in [(1, 6 * KIB), (1, 2 * KIB), (3, 2 * KIB)] {
            walk.partition(leader, unsent);
        }
        assert_eq!(b.counted(), walk.counted());
        assert_eq!(b.counted(), (10 * KIB, vec![(1, 2), (3, 1)]));
        b.finish(now, false, BATCH, REQUEST);
        assert_eq!(b.room(), Some(allowance - 10 * KIB));
    }

    #[test]
    fn brokers_that_deliver_nothing_set_no_limit() {
        let t0 = crate::clock::now();
        let ms = Duration::from_millis;
        let mut b = Backlog::default();
        let room = |b: &mut Backlog, at: Instant| {
            b.start();
            b.partition(1, 100 * REQUEST as u64);
            b.finish(at, false, BATCH, REQUEST);
            b.room()
        };
        // A first start from idle: paced while the brokers have had less
        // than STALL to deliver.
        assert_eq!(room(&mut b, t0), Some(0));
        assert_eq!(b.recheck_at(), Some(t0 + STALL));
        assert_eq!(room(&mut b, t0 + STALL - ms(1)), Some(0));
        assert_eq!(
            room(&mut b, t0 + STALL),
            None,
            "stalled: the buffer absorbs"
        );
        assert_eq!(b.recheck_at(), None);
        // A delivery: paced again, for STALL from it.
        let t1 = t0 + 2 * STALL;
        b.delivered(t1);
        assert_eq!(room(&mut b, t1), Some(0));
        assert_eq!(b.recheck_at(), Some(t1 + STALL));
        assert_eq!(room(&mut b, t1 + STALL), None);
        // Idle: room for a burst's first batches, and the burst is paced
        // from its start, long after the last delivery.
        let t2 = t1 + 10 * STALL;
        b.start();
        b.finish(t2, true, BATCH, REQUEST);
        assert_eq!(b.room(), Some(REQUESTS_AHEAD * BATCH as u64));
        assert_eq!(b.recheck_at(), None);
        assert_eq!(room(&mut b, t2 + ms(1)), Some(0));
        assert_eq!(b.recheck_at(), Some(t2 + ms(1) + STALL));
        b.clear();
        assert_eq!(b.room(), None, "a pass that could not send sets no limit");
    }
}
