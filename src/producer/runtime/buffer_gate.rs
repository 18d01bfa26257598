//! The producer's buffer memory as `send` sees it: a byte budget handed out
//! in strict arrival order. A record takes its share before it goes to the
//! producer's task and gives it back when it settles (delivered or failed),
//! so the buffer cap holds exactly and waiters are served first come, first
//! served: a large waiter is not overtaken by later small ones, and a waiter
//! whose space comes free is handed to the producer's task at that moment,
//! in line. A `send` that finds room needs no round trip to the task.
//!
//! A waiting `send` is also refused room while the producer task's inbox
//! holds as many queued records as it may (a flag the inbox sets and
//! clears), and `try_send` while it holds its cap, a higher mark: a sender
//! faster than the task then waits in line here, or is told to retry,
//! instead of filling the buffer with queued commands. And while the
//! brokers deliver, waiting sends spend a room the producer's task sets
//! after each pass: what the brokers' next requests can carry beyond the
//! records already waiting (see the engine's `backlog`). Once it is spent
//! they wait in line for the next pass, so a producer faster than its
//! brokers holds a few requests' worth of records instead of a full buffer
//! of them, which would only have waited longer. `try_send`, which cannot
//! wait, is not paced: it is refused only by a full buffer or an inbox at
//! its cap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

/// What a granted waiter does with its share: hand its record on.
pub(crate) type OnGrant = Box<dyn FnOnce(Reservation) + Send>;

struct Waiter {
    id: u64,
    size: usize,
    on_grant: OnGrant,
    granted: oneshot::Sender<()>,
}

struct State {
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

/// Why a sender that cannot wait found no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The buffer is full, or others wait in line before it.
    BufferFull,
    /// The producer holds its `max_buffered_records`: queued for its task,
    /// or taken and not yet settled.
    RecordLimit,
}

/// A byte budget with a FIFO queue of waiters.
///
/// The budget itself is an atomic counter, so a reservation that fits while
/// nobody waits, and a release while nobody waits, take no lock. The line
/// of waiters is behind the lock. Both sides use sequentially consistent
/// operations on `used` and `queued`: a release that does not see a new
/// waiter happened before the waiter's own re-check, which then sees the
/// freed space.
pub(crate) struct BufferGate {
    capacity: usize,
    used: AtomicUsize,
    /// Waiters in line (the length of `state.waiters`).
    queued: AtomicUsize,
    /// Set while the inbox is full (see [`inbox_flag`](Self::inbox_flag)).
    inbox_full: Arc<AtomicBool>,
    /// Set while the producer holds its `max_buffered_records` (see
    /// [`inbox_cap_flag`](Self::inbox_cap_flag)).
    inbox_at_cap: Arc<AtomicBool>,
    /// The mark of `used` up to which waiting sends may take before the
    /// producer's task looks again (see [`set_pacing`](Self::set_pacing));
    /// `usize::MAX` for no limit. Kept as a mark on `used` rather than a
    /// room of its own, so that a waiting send takes its bytes with one
    /// atomic update, as `try_send` does; bytes given back lower it by as
    /// much, so that returns do not widen the room.
    pacing_limit: AtomicUsize,
    state: Mutex<State>,
}

/// A share of the budget granted to a waiter; returned when dropped,
/// unless its holder takes it over with [`into_held`](Self::into_held).
pub(crate) struct Reservation {
    gate: Arc<BufferGate>,
    size: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.size > 0 {
            self.gate.release(self.size);
        }
    }
}

impl Reservation {
    /// Turns the reservation into a plain count of bytes, which the caller
    /// now holds and returns with [`BufferGate::release`] (or in part with
    /// [`BufferGate::give_back`]). Saves keeping a reservation per record.
    pub(crate) fn into_held(mut self) -> usize {
        std::mem::take(&mut self.size)
    }
}

impl BufferGate {
    pub(crate) fn new(capacity: usize) -> Arc<BufferGate> {
        Arc::new(BufferGate {
            capacity,
            used: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            inbox_full: Arc::default(),
            inbox_at_cap: Arc::default(),
            pacing_limit: AtomicUsize::new(usize::MAX),
            state: Mutex::new(State {
                waiters: VecDeque::new(),
                next_id: 0,
            }),
        })
    }

    /// The flag that refuses room while set: given to the inbox, which
    /// sets it while it is full and clears it as the task takes commands
    /// (the task then calls [`serve_waiters`](Self::serve_waiters)).
    pub(crate) fn inbox_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.inbox_full)
    }

    /// The flag that refuses room to senders that cannot wait while set:
    /// given to the inbox, which sets it while the records queued in it
    /// and those the producer's task holds reach its cap
    /// (`max_buffered_records`), a higher mark than the one of
    /// [`inbox_flag`](Self::inbox_flag).
    pub(crate) fn inbox_cap_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.inbox_at_cap)
    }

    /// Adds `size` to the budget in use if it fits, and while the budget in
    /// use is under `limit`.
    fn take(&self, size: usize, limit: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < limit && used.saturating_add(size) <= self.capacity).then(|| used + size)
            })
            .is_ok()
    }

    /// Subtracts `size` from the budget in use, and from the pacing mark.
    fn untake(&self, size: usize) {
        self.used.fetch_sub(size, Ordering::SeqCst);
        let _ = self
            .pacing_limit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |limit| {
                (limit != usize::MAX).then(|| limit.saturating_sub(size))
            });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is complete before the guard drops; a panic elsewhere
        // cannot leave the state half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the producer holds its `max_buffered_records` now (the
    /// flag of [`inbox_cap_flag`](Self::inbox_cap_flag)).
    pub(crate) fn at_record_limit(&self) -> bool {
        self.inbox_at_cap.load(Ordering::SeqCst)
    }

    /// Bytes handed out and not yet returned.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Takes `size` bytes now, if they are free and nobody waits before us.
    /// The caller holds them (no reservation, no reference to the gate:
    /// this is the path of every record that finds room) and returns them
    /// with [`release`](Self::release).
    ///
    /// Refused too while the producer holds its `max_buffered_records`
    /// (the inbox's cap): a sender faster than the producer's task would
    /// otherwise fill the buffer with commands not yet taken, which hold
    /// more memory than their records once encoded and only wait longer.
    /// (A sender that can wait waits there too, and from the lower mark of
    /// a full inbox: see [`try_take_paced`](Self::try_take_paced).)
    pub(crate) fn try_take(&self, size: usize) -> Result<(), Refusal> {
        if self.at_record_limit() {
            return Err(Refusal::RecordLimit);
        }
        if self.queued.load(Ordering::SeqCst) == 0 && self.take(size, usize::MAX) {
            Ok(())
        } else {
            Err(Refusal::BufferFull)
        }
    }

    /// [`try_take`](Self::try_take) for a sender that can wait: refused
    /// from the inbox's lower mark (a full inbox), while the producer holds
    /// its `max_buffered_records`, and while the pacing room is spent.
    pub(crate) fn try_take_paced(&self, size: usize) -> bool {
        self.queued.load(Ordering::SeqCst) == 0 && self.take_paced(size)
    }

    /// [`take`](Self::take) unless the inbox is full, the producer holds
    /// its `max_buffered_records` or the pacing room is spent (each flag is
    /// cleared by the producer's task, which then serves the waiters): how
    /// a sender that can wait, or a waiter in line, gets its
    /// room. A record larger than what is left of the pacing room takes the
    /// rest, so that no record waits for a room that never grows that far.
    fn take_paced(&self, size: usize) -> bool {
        !self.inbox_full.load(Ordering::SeqCst)
            && !self.at_record_limit()
            && self.take(size, self.pacing_limit.load(Ordering::SeqCst))
    }

    /// The room waiting sends may take until the producer's task looks
    /// again (`None`: no limit), as its last pass found; waiters in line are
    /// served from it.
    pub(crate) fn set_pacing(self: &Arc<Self>, room: Option<u64>) {
        let limit = room.map_or(usize::MAX, |room| {
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            self.used().saturating_add(room).min(usize::MAX - 1)
        });
        self.pacing_limit.store(limit, Ordering::SeqCst);
        if room != Some(0) {
            self.serve_waiters();
        }
    }

    /// `size` bytes, waiting in line up to `timeout`. When the space comes
    /// (at once, or when earlier records settle), `on_grant` runs with it,
    /// in line order. Returns whether it ran; after a timeout it never will.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        size: usize,
        timeout: Duration,
        on_grant: OnGrant,
    ) -> bool {
        let (id, granted) = {
            let mut state = self.lock();
            if state.waiters.is_empty() && self.take_paced(size) {
                drop(state);
                on_grant(Reservation {
                    gate: Arc::clone(self),
                    size,
                });
                return true;
            }
            let id = state.next_id;
            state.next_id += 1;
            let (tx, rx) = oneshot::channel();
            state.waiters.push_back(Waiter {
                id,
                size,
                on_grant,
                granted: tx,
            });
            self.queued.fetch_add(1, Ordering::SeqCst);
            (id, rx)
        };
        // Space freed between the check above and joining the line was
        // released without seeing us: look again.
        self.grant_waiters();
        if let Ok(Ok(())) = tokio::time::timeout(timeout, granted).await {
            return true;
        }
        let removed = {
            let mut state = self.lock();
            let removed = match state.waiters.iter().position(|w| w.id == id) {
                Some(at) => state.waiters.remove(at),
                None => None,
            };
            if removed.is_some() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
            }
            removed
        };
        match removed {
            // Never granted; the line behind may move now.
            Some(waiter) => {
                drop(waiter);
                self.grant_waiters();
                false
            }
            // Granted just as the time ran out.
            None => true,
        }
    }

    /// Returns `size` held bytes (the part that covered records while they
    /// were queued), without serving waiters: call [`serve_waiters`](Self::serve_waiters)
    /// afterwards (this may run under a lock that a grant would need).
    pub(crate) fn give_back(&self, size: usize) {
        self.untake(size);
    }

    /// Serves waiters after [`give_back`](Self::give_back).
    pub(crate) fn serve_waiters(self: &Arc<Self>) {
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.grant_waiters();
        }
    }

    /// Returns `size` held bytes (see [`try_take`](Self::try_take) and
    /// [`Reservation::into_held`]) and serves waiters.
    pub(crate) fn release(self: &Arc<Self>, size: usize) {
        if size == 0 {
            return;
        }
        self.untake(size);
        // Nobody waits (the common case): no lock.
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.grant_waiters();
        }
    }

    /// Hands space to waiters in order while the first one fits. Each grant
    /// runs outside the lock (it may drop a reservation, which locks).
    fn grant_waiters(self: &Arc<Self>) {
        loop {
            let waiter = {
                let mut state = self.lock();
                match state.waiters.front() {
                    Some(front) if self.take_paced(front.size) => {
                        self.queued.fetch_sub(1, Ordering::SeqCst);
                        state.waiters.pop_front()
                    }
                    _ => None,
                }
            };
            let Some(waiter) = waiter else {
                return;
            };
            let reservation = Reservation {
                gate: Arc::clone(self),
                size: waiter.size,
            };
            (waiter.on_grant)(reservation);
            let _ = waiter.granted.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    fn keep(into: &Arc<StdMutex<Vec<(u32, Reservation)>>>, tag: u32) -> OnGrant {
        let into = Arc::clone(into);
        Box::new(move |r| into.lock().unwrap().push((tag, r)))
    }

    /// A waiter for `size` bytes, in line for up to 5 s, whose grant lands
    /// in `held` under `tag`.
    fn wait_in_line(
        gate: &Arc<BufferGate>,
        held: &Arc<StdMutex<Vec<(u32, Reservation)>>>,
        size: usize,
        tag: u32,
    ) -> tokio::task::JoinHandle<bool> {
        let (gate, held) = (Arc::clone(gate), Arc::clone(held));
        tokio::spawn(async move {
            gate.reserve(size, Duration::from_secs(5), keep(&held, tag))
                .await
        })
    }

    #[tokio::test]
    async fn a_full_inbox_refuses_room_until_its_flag_clears() {
        let gate = BufferGate::new(100);
        let full = gate.inbox_flag();
        full.store(true, Ordering::SeqCst);
        assert!(!gate.try_take_paced(1), "room while the inbox is full");
        let held = Arc::new(StdMutex::new(Vec::new()));
        let waiter = wait_in_line(&gate, &held, 10, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(held.lock().unwrap().is_empty(), "granted past a full inbox");
        assert_eq!(gate.used(), 0);
        // The task took a run: the flag clears and it serves the line.
        full.store(false, Ordering::SeqCst);
        gate.serve_waiters();
        assert!(waiter.await.unwrap());
        assert_eq!(gate.used(), 10);
        assert!(gate.try_take_paced(5));
        // A sender that cannot wait goes on past a full inbox, and is
        // refused by one at its cap, and told why.
        full.store(true, Ordering::SeqCst);
        assert_eq!(gate.try_take(1), Ok(()));
        let cap = gate.inbox_cap_flag();
        cap.store(true, Ordering::SeqCst);
        assert_eq!(gate.try_take(1), Err(Refusal::RecordLimit));
        cap.store(false, Ordering::SeqCst);
        assert_eq!(gate.try_take(84), Ok(()));
        assert_eq!(gate.try_take(1), Err(Refusal::BufferFull));
    }

    #[tokio::test]
    async fn waiting_sends_spend_the_pacing_room_and_wait_for_the_next() {
        let gate = BufferGate::new(1000);
        gate.set_pacing(Some(25));
        assert!(gate.try_take_paced(10));
        assert!(gate.try_take_paced(10));
        // Larger than what is left: takes the rest rather than waiting for
        // a room that may never grow that far.
        assert!(gate.try_take_paced(10));
        assert!(!gate.try_take_paced(1), "room spent");
        assert_eq!(gate.try_take(1), Ok(()), "try_send is not paced");
        let held = Arc::new(StdMutex::new(Vec::new()));
        let waiter = wait_in_line(&gate, &held, 10, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(held.lock().unwrap().is_empty(), "granted past a spent room");
        // The next pass finds room: the line is served from it.
        gate.set_pacing(Some(15));
        assert!(waiter.await.unwrap());
        assert!(gate.try_take_paced(5));
        assert!(!gate.try_take_paced(1));
        // No limit (the brokers stalled): only the buffer counts.
        gate.set_pacing(None);
        assert!(gate.try_take_paced(900));
        assert!(!gate.try_take_paced(100), "the buffer is full");
    }

    #[test]
    fn bytes_given_back_do_not_widen_the_pacing_room() {
        let gate = BufferGate::new(1000);
        gate.set_pacing(Some(25));
        assert!(gate.try_take_paced(20));
        // Records settle (or leave the inbox) before the next pass: the
        // buffer has room again, the pass's room is what it was.
        gate.release(15);
        gate.give_back(2);
        assert_eq!(gate.used(), 3);
        assert!(gate.try_take_paced(4));
        assert!(
            gate.try_take_paced(4),
            "the last of the room takes the rest"
        );
        assert!(!gate.try_take_paced(1), "room spent");
        // A pass with no room refuses at once; a sender that cannot wait
        // is not paced.
        gate.set_pacing(Some(0));
        assert!(!gate.try_take_paced(1));
        assert_eq!(gate.try_take(1), Ok(()));
    }

    #[tokio::test]
    async fn waiters_are_granted_in_order_and_never_overtaken() {
        let gate = BufferGate::new(100);
        let held = Arc::new(StdMutex::new(Vec::new()));
        assert!(
            gate.reserve(80, Duration::from_secs(1), keep(&held, 0))
                .await
        );
        let big = wait_in_line(&gate, &held, 50, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let small = wait_in_line(&gate, &held, 10, 2);
        tokio::time::sleep(Duration::from_millis(40)).await;
        // 20 bytes are free, but the waiter before needs 50.
        assert_eq!(
            gate.try_take(10),
            Err(Refusal::BufferFull),
            "a later small record overtook a waiter"
        );
        assert_eq!(held.lock().unwrap().len(), 1);
        assert_eq!(gate.used(), 80);
        let first = held.lock().unwrap().remove(0);
        drop(first);
        assert!(big.await.unwrap());
        assert!(small.await.unwrap());
        let order: Vec<u32> = held.lock().unwrap().iter().map(|(t, _)| *t).collect();
        assert_eq!(order, vec![1, 2], "granted in line order");
        assert_eq!(gate.used(), 60);
        held.lock().unwrap().clear();
        assert_eq!(gate.used(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_timeout_and_lets_the_line_move() {
        let gate = BufferGate::new(100);
        assert_eq!(gate.try_take(90), Ok(()));
        let ran = Arc::new(StdMutex::new(Vec::new()));
        let started = tokio::time::Instant::now();
        assert!(
            !gate
                .reserve(50, Duration::from_millis(50), keep(&ran, 1))
                .await
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(gate.try_take(10), Ok(()));
        assert_eq!(gate.used(), 100);
        gate.release(90);
        gate.release(10);
        assert_eq!(gate.used(), 0);
        assert!(
            ran.lock().unwrap().is_empty(),
            "a timed-out waiter is never granted"
        );
    }
}
