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
//! Limits on the charges queued keep the inbox a hand-off, not a second
//! buffer: past each, a shared flag says so, and the receiver's next take
//! clears it. The buffer gate reads them: past the first, senders that can
//! wait wait in line; past the second, higher one (the cap), senders that
//! cannot wait are refused. Without them, a sender faster than the driver
//! would fill all of `buffer_memory` with queued commands, which take more
//! memory than the records they carry once encoded. The cap also counts what
//! the receiver says it still holds of the commands it took (the driver: its
//! records not yet delivered), so that it bounds everything sent and not yet
//! settled, as librdkafka's `queue.buffering.max.messages` does.
//!
//! Like a channel it closes from either side: when the last sender is
//! dropped the receiver sees the end after the last command, and once the
//! receiver is gone `send` hands the command back.
//!
//! The receiver may wait *quietly* ([`Quiet`]): records then gather without
//! waking it until the first one sent at or after a given instant (the
//! receiver's next deadline), until they add up to a given size or to
//! [`QUIET_RECORDS`]; any other command wakes it at once. Records
//! paced in small bursts would otherwise wake the receiver once per burst,
//! and the wake-ups cost more than the records. The sender reads the clock
//! for the comparison, so the receiver hears of its deadline on time while
//! records flow (finer than the runtime's timer), and the record carries
//! the instant it was sent, so the receiver can take it as of then.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Instant;

use tokio::sync::Notify;

/// Commands per segment.
const SEGMENT: usize = 256;
/// Segments the receiver takes at most in one step.
pub(crate) const TAKE_SEGMENTS: usize = 4;
/// Emptied segments kept for reuse (beyond them, segments are freed).
const SPARE_SEGMENTS: usize = 2 * TAKE_SEGMENTS;
/// Commands that may gather while the receiver waits quietly: the one
/// that brings the queue to this many wakes it. The receiver handles what
/// gathered before anything else (a batch whose linger ended waits for
/// the records sent before it ended), so a long run would hold up the
/// next send; a few dozen records already make the wake-up a small part
/// of their cost.
const QUIET_RECORDS: usize = 64;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken on empty to non-empty, and when the last sender leaves.
    ready: Notify,
    /// The charges queued past which [`over`](Self::over) is set.
    limit: usize,
    /// Whether the charges queued are at or past `limit`; written only
    /// under the lock, as the charges change.
    over: Arc<AtomicBool>,
    /// A second limit with its own flag (the buffer gate refuses senders
    /// that cannot wait past it), usually higher. It counts the commands
    /// the receiver took and still holds too (see [`held`](Self::held)).
    cap: usize,
    at_cap: Arc<AtomicBool>,
    /// Charges of commands the receiver has taken and not yet let go of,
    /// as it last said ([`InboxReceiver::set_held`]): counted against
    /// `cap` only. Written by the receiver alone.
    held: AtomicUsize,
    /// Whether the receiver waits quietly; follows `State::quiet`, written
    /// only under the lock, read without it (see [`InboxSender::is_quiet`]).
    quiet: AtomicBool,
}

/// How a waiting receiver may let records gather before it is woken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quiet {
    /// A record sent at or after this instant wakes the receiver.
    pub(crate) until: Instant,
    /// The record that brings the bytes gathered to this wakes it.
    pub(crate) bytes: usize,
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
    /// Set while the receiver waits quietly, with the bytes still allowed
    /// to gather; cleared by the command that wakes it and by a take.
    quiet: Option<Quiet>,
}

impl<T> State<T> {
    /// The commands queued.
    fn queued(&self) -> usize {
        self.segments.back().map_or(0, |last| {
            (self.segments.len() - 1) * SEGMENT + last.items.len()
        })
    }
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
        let at_cap = state
            .charged
            .saturating_add(self.held.load(Ordering::Relaxed))
            >= self.cap;
        if self.at_cap.load(Ordering::Relaxed) != at_cap {
            self.at_cap.store(at_cap, Ordering::SeqCst);
        }
    }

    /// Sets or clears the quiet wait (under the lock).
    fn set_quiet(&self, state: &mut State<T>, quiet: Option<Quiet>) {
        if state.quiet.is_some() != quiet.is_some() {
            self.quiet.store(quiet.is_some(), Ordering::Relaxed);
        }
        state.quiet = quiet;
    }
}

/// How a command asks for the receiver's attention.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arrival {
    /// Wakes a waiting receiver, quiet or not (any command, and a record
    /// sent without seeing the receiver quiet).
    Loud,
    /// A record of `bytes`, sent at `at` (read by the sender when it saw
    /// the receiver quiet): it may gather unseen while the receiver waits
    /// quietly.
    Quiet { at: Instant, bytes: usize },
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
    inbox_limited(Limit::none(), Limit::none())
}

/// A limit on the charges an inbox queues: `flag` is set while they are
/// at or past `charges`, and cleared when they fall below.
pub(crate) struct Limit {
    pub(crate) charges: usize,
    pub(crate) flag: Arc<AtomicBool>,
}

impl Limit {
    /// No limit: the flag is never set.
    #[cfg(test)]
    pub(crate) fn none() -> Limit {
        Limit {
            charges: usize::MAX,
            flag: Arc::default(),
        }
    }
}

/// A new inbox with one sender and two limits on the charges queued:
/// `limit`, which also wakes a receiver that waits quietly, and `cap`
/// (usually higher), which also counts what the receiver holds.
pub(crate) fn inbox_limited<T>(limit: Limit, cap: Limit) -> (InboxSender<T>, InboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            segments: VecDeque::new(),
            spare: Vec::new(),
            charged: 0,
            senders: 1,
            receiver_alive: true,
            quiet: None,
        }),
        ready: Notify::new(),
        limit: limit.charges,
        over: limit.flag,
        cap: cap.charges,
        at_cap: cap.flag,
        held: AtomicUsize::new(0),
        quiet: AtomicBool::new(false),
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
    /// takes it; wakes a waiting receiver.
    pub(crate) fn send_charged(&self, item: T, charge: usize) -> Result<(), T> {
        self.send_as(item, charge, Arrival::Loud)
    }

    /// Whether the receiver waits quietly, as last seen: a record sent now
    /// should carry the instant it was sent (see [`Arrival::Quiet`]). A
    /// stale answer costs a wake-up, never a lost one: a record sent as
    /// [`Arrival::Loud`] wakes a quiet receiver.
    pub(crate) fn is_quiet(&self) -> bool {
        self.shared.quiet.load(Ordering::Relaxed)
    }

    /// Queues `item`, counting `charge` bytes for it until the receiver
    /// takes it; wakes a waiting receiver unless it waits quietly and
    /// `arrival` is a record it lets gather.
    pub(crate) fn send_as(&self, item: T, charge: usize, arrival: Arrival) -> Result<(), T> {
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
        let wake = match state.quiet.as_mut() {
            None => was_empty,
            Some(quiet) => match arrival {
                Arrival::Loud => true,
                Arrival::Quiet { at, bytes } => {
                    quiet.bytes = quiet.bytes.saturating_sub(bytes);
                    at >= quiet.until
                        || quiet.bytes == 0
                        || state.queued() >= QUIET_RECORDS
                        || state.charged >= self.shared.limit
                }
            },
        };
        if wake && state.quiet.is_some() {
            self.shared.set_quiet(&mut state, None);
        }
        drop(state);
        if wake {
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
    /// Says how much of the commands it took the receiver still holds (in
    /// charges, as they were queued): counted with the queued ones against
    /// the cap. A take adds what it takes, so a receiver that never calls
    /// this holds everything it took. Less than before clears the cap's
    /// flag at once when it no longer applies (senders refused at the cap
    /// send nothing that would), and says so: `true` when it cleared the
    /// flag, so the caller can serve the senders that wait for it. More is
    /// seen by the next command queued.
    pub(crate) fn set_held(&self, charges: usize) -> bool {
        let before = self.shared.held.load(Ordering::Relaxed);
        if before == charges {
            return false;
        }
        self.shared.held.store(charges, Ordering::Relaxed);
        if charges < before && self.shared.at_cap.load(Ordering::SeqCst) {
            let state = self.shared.lock();
            self.shared.flag(&state);
            return !self.shared.at_cap.load(Ordering::SeqCst);
        }
        false
    }

    /// Moves the oldest queued segments, up to [`TAKE_SEGMENTS`] of them,
    /// in order, into `into` (which should be empty) and returns `true`;
    /// waits while the queue is empty. Returns `false` once every sender is
    /// gone and nothing is left.
    ///
    /// `on_take` gets the total charge of what was taken, under the lock
    /// (so it must not send on this inbox). With `quiet`, the wait is quiet
    /// (see [`Quiet`]); a take ends it. Each poll of the future looks at
    /// the queue, so whatever wakes the caller's task takes what gathered.
    ///
    /// Cancel-safe: commands are moved only in the poll that returns.
    pub(crate) async fn recv_run(
        &mut self,
        into: &mut Vec<Vec<T>>,
        mut on_take: impl FnMut(usize),
        quiet: Option<Quiet>,
    ) -> bool {
        let mut notified = pin!(self.shared.ready.notified());
        // Looks at every poll, not only after a wake-up: records that
        // gathered quietly are taken whenever the receiver's task runs.
        poll_fn(|cx| {
            loop {
                // Registered before looking, so a send in between is not
                // missed.
                notified.as_mut().enable();
                match self.take(into, &mut on_take, quiet) {
                    Take::Taken => return Poll::Ready(true),
                    Take::Ended => return Poll::Ready(false),
                    Take::Empty => {}
                }
                match notified.as_mut().poll(cx) {
                    Poll::Ready(()) => notified.set(self.shared.ready.notified()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }

    /// Whether the receiver's last wait was quiet and nothing has woken it
    /// since: records may have gathered.
    pub(crate) fn waiting_quietly(&self) -> bool {
        self.shared.quiet.load(Ordering::Relaxed)
    }

    /// What [`recv_run`](Self::recv_run) does without waiting: `true` when
    /// it took a run (an ended or empty queue gives `false`).
    pub(crate) fn try_recv_run(
        &mut self,
        into: &mut Vec<Vec<T>>,
        mut on_take: impl FnMut(usize),
    ) -> bool {
        matches!(self.take(into, &mut on_take, None), Take::Taken)
    }

    /// Takes a run if there is one; else starts the wait as `quiet` says.
    fn take(
        &self,
        into: &mut Vec<Vec<T>>,
        on_take: &mut impl FnMut(usize),
        quiet: Option<Quiet>,
    ) -> Take {
        let mut state = self.shared.lock();
        if state.segments.is_empty() {
            if state.senders == 0 {
                return Take::Ended;
            }
            self.shared.set_quiet(&mut state, quiet);
            return Take::Empty;
        }
        self.shared.set_quiet(&mut state, None);
        let mut taken = 0;
        for _ in 0..TAKE_SEGMENTS {
            let Some(segment) = state.segments.pop_front() else {
                break;
            };
            taken += segment.charge;
            into.push(segment.items);
        }
        state.charged -= taken;
        // Held by the receiver now, until it says otherwise (`set_held`):
        // a take leaves the count against the cap as it was.
        let held = self.shared.held.load(Ordering::Relaxed);
        self.shared
            .held
            .store(held.saturating_add(taken), Ordering::Relaxed);
        self.shared.flag(&state);
        on_take(taken);
        // More left: the receiver comes back without a wake-up.
        if !state.segments.is_empty() {
            drop(state);
            self.shared.ready.notify_one();
        }
        Take::Taken
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

/// What a look at the queue found.
enum Take {
    Taken,
    Empty,
    Ended,
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
        if !rx.recv_run(&mut segments, |_| {}, None).await {
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
                assert!(rx.recv_run(&mut segments, |c| taken += c, None).await);
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

    /// An inbox whose limit is 10 charges and whose cap is 15, with their
    /// flags (`over`, `at_cap`).
    fn limited_10_and_15() -> (
        InboxSender<u32>,
        InboxReceiver<u32>,
        Arc<AtomicBool>,
        Arc<AtomicBool>,
    ) {
        let over = Arc::new(AtomicBool::new(false));
        let at_cap = Arc::new(AtomicBool::new(false));
        let (tx, rx) = inbox_limited::<u32>(
            Limit {
                charges: 10,
                flag: Arc::clone(&over),
            },
            Limit {
                charges: 15,
                flag: Arc::clone(&at_cap),
            },
        );
        (tx, rx, over, at_cap)
    }

    /// What the receiver holds of the commands it took counts against the
    /// cap (not the lower limit) with what is queued; holding less clears
    /// the cap's flag at once, with nothing sent.
    #[tokio::test]
    async fn the_cap_counts_what_the_receiver_holds() {
        let (tx, mut rx, over, at_cap) = limited_10_and_15();
        for i in 0..3 {
            tx.send_charged(i, 3).unwrap();
        }
        assert_eq!(take(&mut rx).await, Some(vec![0, 1, 2]));
        assert_eq!(
            rx.shared.held.load(Ordering::SeqCst),
            9,
            "a take holds what it took"
        );
        // 9 held and 3 queued: under the cap; 6 queued: at it.
        tx.send_charged(3, 3).unwrap();
        assert!(!at_cap.load(Ordering::SeqCst));
        tx.send_charged(4, 3).unwrap();
        assert!(at_cap.load(Ordering::SeqCst), "9 held and 6 queued");
        assert!(
            !over.load(Ordering::SeqCst),
            "the lower limit counts queued only"
        );
        // Records settle: the flag clears without a send or a take.
        assert!(rx.set_held(3), "the flag cleared");
        assert!(!at_cap.load(Ordering::SeqCst), "3 held and 6 queued");
        // Holding more is seen by the next command queued.
        assert!(!rx.set_held(12));
        assert!(!at_cap.load(Ordering::SeqCst));
        tx.send_charged(5, 0).unwrap();
        assert!(
            !at_cap.load(Ordering::SeqCst),
            "an uncharged command sets nothing"
        );
        tx.send_charged(6, 1).unwrap();
        assert!(at_cap.load(Ordering::SeqCst), "12 held and 7 queued");
    }

    #[tokio::test]
    async fn flags_charges_at_the_limit_until_a_take_brings_them_below() {
        let (tx, mut rx, over, at_cap) = limited_10_and_15();
        for i in 0..5 {
            tx.send_charged(i, 3).unwrap();
            let queued = 3 * (i + 1);
            assert_eq!(over.load(Ordering::SeqCst), queued >= 10, "{queued} queued");
            assert_eq!(
                at_cap.load(Ordering::SeqCst),
                queued >= 15,
                "{queued} queued"
            );
        }
        // Uncharged commands change nothing.
        tx.send(9).unwrap();
        assert!(over.load(Ordering::SeqCst) && at_cap.load(Ordering::SeqCst));
        assert_eq!(take(&mut rx).await, Some(vec![0, 1, 2, 3, 4, 9]));
        assert!(!over.load(Ordering::SeqCst));
        assert!(
            at_cap.load(Ordering::SeqCst),
            "what the receiver took counts against the cap until it lets go"
        );
        assert!(rx.set_held(0));
        assert!(!at_cap.load(Ordering::SeqCst));
        // Past the limit with more than one run queued: the take that
        // leaves less than the limit clears it.
        let (tx, mut rx) = inbox_limited::<u32>(
            Limit {
                charges: 2 * SEGMENT + 1,
                flag: Arc::clone(&over),
            },
            Limit::none(),
        );
        let n = SEGMENT * (TAKE_SEGMENTS + 2);
        for i in 0..n {
            tx.send_charged(i as u32, 1).unwrap();
        }
        assert!(over.load(Ordering::SeqCst));
        let mut segments = Vec::new();
        assert!(rx.recv_run(&mut segments, |_| {}, None).await);
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
            assert!(runtime.block_on(rx.recv_run(&mut segments, |_| {}, None)));
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
            rx.recv_run(&mut segments, |_| {}, None),
        )
        .await;
        assert!(timed_out.is_err());
        tx.send(7).unwrap();
        assert_eq!(take(&mut rx).await, Some(vec![7]));
    }

    /// A receiver waiting quietly until an hour from now for up to
    /// `bytes`, with the records it may let gather.
    fn quiet_receiver(bytes: usize) -> (InboxSender<u32>, InboxReceiver<u32>, Quiet) {
        let (tx, rx) = inbox::<u32>();
        let quiet = Quiet {
            until: crate::clock::now() + std::time::Duration::from_secs(3600),
            bytes,
        };
        let mut segments = Vec::new();
        let mut on_take = |_| {};
        assert!(matches!(
            rx.take(&mut segments, &mut on_take, Some(quiet)),
            Take::Empty
        ));
        assert!(tx.is_quiet());
        (tx, rx, quiet)
    }

    fn record_at(at: Instant, bytes: usize) -> Arrival {
        Arrival::Quiet { at, bytes }
    }

    #[test]
    fn records_before_the_deadline_gather_quietly_and_the_first_after_it_wakes() {
        let (tx, rx, quiet) = quiet_receiver(1 << 20);
        let before = quiet.until - std::time::Duration::from_millis(1);
        for i in 0..3 {
            tx.send_as(i, 0, record_at(before, 10)).unwrap();
        }
        assert!(tx.is_quiet(), "still quiet");
        tx.send_as(3, 0, record_at(quiet.until, 10)).unwrap();
        assert!(!tx.is_quiet(), "woken");
        assert!(rx.shared.lock().quiet.is_none());
    }

    #[test]
    fn the_record_that_brings_the_bytes_to_the_limit_wakes() {
        let (tx, _rx, quiet) = quiet_receiver(25);
        let now = crate::clock::now();
        assert!(now < quiet.until);
        tx.send_as(0, 0, record_at(now, 10)).unwrap();
        tx.send_as(1, 0, record_at(now, 10)).unwrap();
        assert!(tx.is_quiet());
        tx.send_as(2, 0, record_at(now, 10)).unwrap();
        assert!(!tx.is_quiet(), "30 of 25 bytes");
    }

    #[test]
    fn the_record_that_brings_the_count_to_the_limit_wakes() {
        let (tx, _rx, _) = quiet_receiver(usize::MAX);
        let now = crate::clock::now();
        for i in 0..QUIET_RECORDS - 1 {
            tx.send_as(i as u32, 0, record_at(now, 1)).unwrap();
        }
        assert!(tx.is_quiet());
        tx.send_as(0, 0, record_at(now, 1)).unwrap();
        assert!(!tx.is_quiet(), "{QUIET_RECORDS} records");
    }

    #[test]
    fn any_other_command_and_a_record_without_its_instant_wake() {
        // A record sent without its instant goes as `Loud` too.
        let (tx, _rx, _) = quiet_receiver(usize::MAX);
        tx.send_as(1, 0, Arrival::Loud).unwrap();
        assert!(!tx.is_quiet());
    }

    #[test]
    fn a_take_ends_the_quiet_wait_and_the_next_wait_is_as_asked() {
        let (tx, rx, _) = quiet_receiver(usize::MAX);
        tx.send_as(1, 0, record_at(crate::clock::now(), 1)).unwrap();
        assert!(tx.is_quiet());
        let mut segments = Vec::new();
        let mut on_take = |_| {};
        assert!(matches!(
            rx.take(&mut segments, &mut on_take, None),
            Take::Taken
        ));
        assert!(!tx.is_quiet());
        // Looking again without a quiet wait: the next record wakes.
        assert!(matches!(
            rx.take(&mut segments, &mut on_take, None),
            Take::Empty
        ));
        assert!(!tx.is_quiet());
        assert!(rx.shared.lock().quiet.is_none());
    }

    #[tokio::test]
    async fn records_that_gathered_quietly_are_taken_at_the_next_poll_whatever_woke_it() {
        let (tx, mut rx) = inbox::<u32>();
        let quiet = Quiet {
            until: crate::clock::now() + std::time::Duration::from_secs(3600),
            bytes: usize::MAX,
        };
        let (poke, mut poked) = tokio::sync::mpsc::unbounded_channel::<()>();
        let receiver = tokio::spawn(async move {
            let mut segments = Vec::new();
            let mut wakes = 0;
            // The same wait, polled again when another source wakes the
            // task (as the driver's responses do): it must look, though
            // nothing notified it.
            {
                let mut waiting = pin!(rx.recv_run(&mut segments, |_| {}, Some(quiet)));
                loop {
                    tokio::select! {
                        biased;
                        Some(()) = poked.recv() => wakes += 1,
                        more = &mut waiting => {
                            assert!(more);
                            break;
                        }
                    }
                }
            }
            (segments.concat(), wakes)
        });
        while !tx.is_quiet() {
            tokio::task::yield_now().await;
        }
        tx.send_as(7, 0, record_at(crate::clock::now(), 1)).unwrap();
        assert!(tx.is_quiet(), "gathered without a wake-up");
        poke.send(()).unwrap();
        let (got, wakes) = tokio::time::timeout(std::time::Duration::from_secs(10), receiver)
            .await
            .expect("taken at the poll after the other wake-up")
            .unwrap();
        assert_eq!(got, vec![7]);
        assert_eq!(wakes, 1);
    }
}
