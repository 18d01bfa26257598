//! The queue from producer handles to the driver task: commands in the
//! order they were sent, taken by the driver a run at a time.
//!
//! A `send` is one uncontended lock and a push; the driver is woken only
//! when the queue goes from empty to non-empty, and takes up to
//! [`TAKE_SEGMENTS`] segments in one step, so a burst of records costs one
//! wake-up and no per-record channel bookkeeping.
//!
//! Commands are kept in fixed-size segments rather than one growing
//! vector: what the queue holds is what it uses (no doubling slack, no
//! copying as it grows), and segments the driver is done with come back
//! for reuse. As the driver takes a bounded run and hands it back before
//! the next, a backlog flows through the same few segments (fresh memory
//! costs page faults), and the driver gets back to its other work between
//! runs. The driver may leave what it is done with in a segment it hands
//! back (a record it encoded): the sender that reuses the segment drops
//! it, outside the lock, on its own thread, where the record's memory was
//! allocated and is cheapest to free. Each command
//! may carry a charge (the bytes of `buffer_memory` it takes while
//! queued): the receiver learns the total of what it takes, and senders
//! can read the total still queued consistently with it.
//!
//! A limit on the charges queued keeps the inbox a hand-off, not a second
//! buffer: past it, a shared flag says so (the buffer gate reads it and
//! makes senders wait in line), and the receiver's next take clears it.
//! Without it, a sender faster than the driver would fill all of
//! `buffer_memory` with queued commands, which take more memory than the
//! records they carry once encoded.
//!
//! Like a channel it closes from either side: when the last sender is
//! dropped the receiver sees the end after the last command, and once the
//! receiver is gone `send` hands the command back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Commands per segment.
const SEGMENT: usize = 256;
/// Segments the receiver takes at most in one step.
pub(crate) const TAKE_SEGMENTS: usize = 4;
/// Emptied segments kept for reuse (beyond them, segments are freed).
const SPARE_SEGMENTS: usize = 2 * TAKE_SEGMENTS;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken on empty to non-empty, and when the last sender leaves.
    ready: Notify,
    /// The charges queued past which [`over`](Self::over) is set.
    limit: usize,
    /// Whether the charges queued are at or past `limit`; written only
    /// under the lock, as the charges change.
    over: Arc<AtomicBool>,
}

/// A run of commands with the total of their charges.
struct Segment<T> {
    items: Vec<T>,
    charge: usize,
}

struct State<T> {
    segments: VecDeque<Segment<T>>,
    spare: Vec<Vec<T>>,
    /// The charges of the queued commands.
    charged: usize,
    senders: usize,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `over` from the charges now queued (under the lock, so the
    /// flag follows the changes in their order).
    fn flag(&self, state: &State<T>) {
        let over = state.charged >= self.limit;
        if self.over.load(Ordering::Relaxed) != over {
            self.over.store(over, Ordering::SeqCst);
        }
    }
}

/// The sending side; cloning it adds a sender.
pub(crate) struct InboxSender<T> {
    shared: Arc<Shared<T>>,
}

/// The driver's side.
pub(crate) struct InboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A new inbox with one sender and no limit on the charges queued.
#[cfg(test)]
pub(crate) fn inbox<T>() -> (InboxSender<T>, InboxReceiver<T>) {
    inbox_limited(usize::MAX, Arc::default())
}

/// A new inbox with one sender that sets `over` while the charges queued
/// are at or past `limit`, and clears it when they fall below.
pub(crate) fn inbox_limited<T>(
    limit: usize,
    over: Arc<AtomicBool>,
) -> (InboxSender<T>, InboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            segments: VecDeque::new(),
            spare: Vec::new(),
            charged: 0,
            senders: 1,
            receiver_alive: true,
        }),
        ready: Notify::new(),
        limit,
        over,
    });
    (
        InboxSender {
            shared: Arc::clone(&shared),
        },
        InboxReceiver { shared },
    )
}

impl<T> InboxSender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        self.send_charged(item, 0)
    }

    /// Queues `item`, counting `charge` bytes for it until the receiver
    /// takes it.
    pub(crate) fn send_charged(&self, item: T, charge: usize) -> Result<(), T> {
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            return Err(item);
        }
        let full = |state: &State<T>| {
            state
                .segments
                .back()
                .is_none_or(|s| s.items.len() == SEGMENT)
        };
        if full(&state) {
            let mut items = state
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(SEGMENT));
            if !items.is_empty() {
                // What the receiver left in a reused segment is dropped on
                // this thread, outside the lock.
                drop(state);
                items.clear();
                state = self.shared.lock();
                if !state.receiver_alive {
                    return Err(item);
                }
            }
            if full(&state) {
                state.segments.push_back(Segment { items, charge: 0 });
            } else if state.spare.len() < SPARE_SEGMENTS {
                // Another sender opened a segment meanwhile.
                state.spare.push(items);
            }
        }
        let was_empty = state.segments.len() == 1 && state.segments[0].items.is_empty();
        if let Some(segment) = state.segments.back_mut() {
            segment.items.push(item);
            segment.charge += charge;
        }
        state.charged += charge;
        if charge > 0 {
            self.shared.flag(&state);
        }
        drop(state);
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Runs `read` with the charges of the commands queued now, under the
    /// lock that `recv_run`'s `on_take` runs under: what `read` sees is
    /// consistent with what `on_take` changed.
    pub(crate) fn with_charged<R>(&self, read: impl FnOnce(usize) -> R) -> R {
        read(self.shared.lock().charged)
    }
}

impl<T> Clone for InboxSender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        InboxSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for InboxSender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let last = state.senders == 0;
        drop(state);
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl<T> InboxReceiver<T> {
    /// Moves the oldest queued segments, up to [`TAKE_SEGMENTS`] of them,
    /// in order, into `into` (which should be empty) and returns `true`;
    /// waits while the queue is empty. Returns `false` once every sender is
    /// gone and nothing is left.
    ///
    /// `on_take` gets the total charge of what was taken, under the lock
    /// (so it must not send on this inbox).
    ///
    /// Cancel-safe: commands are moved only in the poll that returns.
    pub(crate) async fn recv_run(
        &mut self,
        into: &mut Vec<Vec<T>>,
        mut on_take: impl FnMut(usize),
    ) -> bool {
        loop {
            // Registered before looking, so a send in between is not missed.
            let notified = self.shared.ready.notified();
            {
                let mut state = self.shared.lock();
                if !state.segments.is_empty() {
                    let mut taken = 0;
                    for _ in 0..TAKE_SEGMENTS {
                        let Some(segment) = state.segments.pop_front() else {
                            break;
                        };
                        taken += segment.charge;
                        into.push(segment.items);
                    }
                    state.charged -= taken;
                    self.shared.flag(&state);
                    on_take(taken);
                    // More left: the receiver comes back without a wake-up.
                    if !state.segments.is_empty() {
                        drop(state);
                        self.shared.ready.notify_one();
                    }
                    return true;
                }
                if state.senders == 0 {
                    return false;
                }
            }
            notified.await;
        }
    }

    /// Gives segments the receiver is done with back for reuse
    /// (`segments` is left empty). What the receiver left in them is
    /// dropped by the sender that reuses the segment, outside the lock;
    /// segments beyond the spare limit are dropped here, with what they
    /// hold, after the lock is let go of.
    pub(crate) fn recycle(&self, segments: &mut Vec<Vec<T>>) {
        let mut state = self.shared.lock();
        let mut extra = Vec::new();
        for segment in segments.drain(..) {
            if state.spare.len() < SPARE_SEGMENTS {
                state.spare.push(segment);
            } else {
                extra.push(segment);
            }
        }
        drop(state);
        drop(extra);
    }
}

impl<T> Drop for InboxReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        let left: Vec<Segment<T>> = state.segments.drain(..).collect();
        drop(state);
        // Dropped outside the lock: a command's drop may send on it.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn take(rx: &mut InboxReceiver<u32>) -> Option<Vec<u32>> {
        let mut segments = Vec::new();
        if !rx.recv_run(&mut segments, |_| {}).await {
            return None;
        }
        let items = segments.iter_mut().flat_map(|s| s.drain(..)).collect();
        rx.recycle(&mut segments);
        Some(items)
    }

    #[tokio::test]
    async fn keeps_order_across_senders_and_ends_after_the_last() {
        let (tx, mut rx) = inbox::<u32>();
        let tx2 = tx.clone();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        tx2.send(5).unwrap();
        assert_eq!(take(&mut rx).await, Some(vec![0, 1, 2, 3, 4, 5]));
        drop(tx);
        tx2.send(6).unwrap();
        drop(tx2);
        // What was queued before the last sender left still arrives.
        assert_eq!(take(&mut rx).await, Some(vec![6]));
        assert_eq!(take(&mut rx).await, None);
    }

    #[tokio::test]
    async fn many_segments_keep_order_and_are_reused() {
        let (tx, mut rx) = inbox::<u32>();
        let n = (SEGMENT * 5 + 7) as u32;
        for round in 0..3 {
            for i in 0..n {
                tx.send_charged(i, 2).unwrap();
            }
            assert_eq!(tx.with_charged(|c| c), 2 * n as usize);
            let mut got = Vec::new();
            let mut taken = 0;
            let mut runs = 0;
            while got.len() < n as usize {
                let mut segments = Vec::new();
                assert!(rx.recv_run(&mut segments, |c| taken += c).await);
                assert!(segments.len() <= TAKE_SEGMENTS, "a bounded run");
                got.extend(segments.iter_mut().flat_map(|s| s.drain(..)));
                rx.recycle(&mut segments);
                assert_eq!(tx.with_charged(|c| c), 2 * (n as usize - got.len()));
                runs += 1;
            }
            assert_eq!(taken, 2 * n as usize);
            assert_eq!(runs, 6usize.div_ceil(TAKE_SEGMENTS));
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "round {round}");
            let state = rx.shared.lock();
            assert_eq!(
                state.spare.len(),
                6.min(SPARE_SEGMENTS),
                "emptied segments kept for reuse"
            );
        }
    }

    #[tokio::test]
    async fn flags_charges_at_the_limit_until_a_take_brings_them_below() {
        let over = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = inbox_limited::<u32>(10, Arc::clone(&over));
        for i in 0..4 {
            tx.send_charged(i, 3).unwrap();
            assert_eq!(
                over.load(Ordering::SeqCst),
                i == 3,
                "{} queued",
                3 * (i + 1)
            );
        }
        // Uncharged commands change nothing.
        tx.send(9).unwrap();
        assert!(over.load(Ordering::SeqCst));
        assert_eq!(take(&mut rx).await, Some(vec![0, 1, 2, 3, 9]));
        assert!(!over.load(Ordering::SeqCst));
        // Past the limit with more than one run queued: the take that
        // leaves less than the limit clears it.
        let (tx, mut rx) = inbox_limited::<u32>(2 * SEGMENT + 1, Arc::clone(&over));
        let n = SEGMENT * (TAKE_SEGMENTS + 2);
        for i in 0..n {
            tx.send_charged(i as u32, 1).unwrap();
        }
        assert!(over.load(Ordering::SeqCst));
        let mut segments = Vec::new();
        assert!(rx.recv_run(&mut segments, |_| {}).await);
        assert!(!over.load(Ordering::SeqCst), "{} left", 2 * SEGMENT);
        assert_eq!(segments.len(), TAKE_SEGMENTS);
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver_and_refuses_after_it_is_gone() {
        let (tx, mut rx) = inbox::<u32>();
        let waiter = tokio::spawn(async move { take(&mut rx).await });
        tokio::task::yield_now().await;
        tx.send(1).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(vec![1]));
        // The receiver was dropped with the task: the command comes back.
        assert_eq!(tx.send(2), Err(2));
    }

    /// Counts drops, by the thread that dropped.
    #[derive(Debug)]
    struct Tracked(Arc<Mutex<Vec<std::thread::ThreadId>>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(std::thread::current().id());
        }
    }

    #[test]
    fn what_the_receiver_leaves_is_dropped_by_the_sender_that_reuses_the_segment() {
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = inbox::<Tracked>();
        for _ in 0..SEGMENT {
            tx.send(Tracked(Arc::clone(&dropped))).unwrap();
        }
        // The receiver takes the full segment on its own thread, looks at
        // the commands in place, and hands the segment back with them.
        let receiver = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut segments = Vec::new();
            assert!(runtime.block_on(rx.recv_run(&mut segments, |_| {})));
            assert_eq!(segments[0].len(), SEGMENT);
            rx.recycle(&mut segments);
            rx
        });
        let rx = receiver.join().unwrap();
        assert!(dropped.lock().unwrap().is_empty(), "kept for the sender");
        // The next send reuses the segment: what it held is dropped here.
        tx.send(Tracked(Arc::clone(&dropped))).unwrap();
        let here = std::thread::current().id();
        let drops = dropped.lock().unwrap().clone();
        assert_eq!(drops.len(), SEGMENT);
        assert!(drops.iter().all(|id| *id == here));
        assert_eq!(rx.shared.lock().spare.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_nothing() {
        let (tx, mut rx) = inbox::<u32>();
        let mut segments = Vec::new();
        let timed_out = tokio::time::timeout(
            std::time::Duration::from_millis(5),
            rx.recv_run(&mut segments, |_| {}),
        )
        .await;
        assert!(timed_out.is_err());
        tx.send(7).unwrap();
        assert_eq!(take(&mut rx).await, Some(vec![7]));
    }
}
