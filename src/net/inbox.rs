//! The queue from producer handles to the driver task: commands in the
//! order they were sent, taken by the driver all at once.
//!
//! A `send` is one uncontended lock and a push; the driver is woken only
//! when the queue goes from empty to non-empty, and swaps the whole queue
//! out in one step, so a burst of records costs one wake-up and no
//! per-record channel bookkeeping. The two vectors trade places, so in a
//! steady state nothing is allocated.
//!
//! Like a channel it closes from either side: when the last sender is
//! dropped the receiver sees the end after the last command, and once the
//! receiver is gone `send` hands the command back.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Woken on empty to non-empty, and when the last sender leaves.
    ready: Notify,
}

struct State<T> {
    items: Vec<T>,
    senders: usize,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

/// A new inbox with one sender.
pub(crate) fn inbox<T>() -> (InboxSender<T>, InboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: Vec::new(),
            senders: 1,
            receiver_alive: true,
        }),
        ready: Notify::new(),
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
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            return Err(item);
        }
        let was_empty = state.items.is_empty();
        state.items.push(item);
        drop(state);
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
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
    /// Moves everything queued into `into` (which should be empty) and
    /// returns `true`; waits while the queue is empty. Returns `false`
    /// once every sender is gone and nothing is left.
    ///
    /// Cancel-safe: commands are moved only in the poll that returns.
    pub(crate) async fn recv_all(&mut self, into: &mut Vec<T>) -> bool {
        loop {
            // Registered before looking, so a send in between is not missed.
            let notified = self.shared.ready.notified();
            {
                let mut state = self.shared.lock();
                if !state.items.is_empty() {
                    std::mem::swap(into, &mut state.items);
                    return true;
                }
                if state.senders == 0 {
                    return false;
                }
            }
            notified.await;
        }
    }
}

impl<T> Drop for InboxReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        let left = std::mem::take(&mut state.items);
        drop(state);
        // Dropped outside the lock: a command's drop may send on it.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_across_senders_and_ends_after_the_last() {
        let (tx, mut rx) = inbox::<u32>();
        let tx2 = tx.clone();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        tx2.send(5).unwrap();
        let mut got = Vec::new();
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        got.clear();
        drop(tx);
        tx2.send(6).unwrap();
        drop(tx2);
        // What was queued before the last sender left still arrives.
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, vec![6]);
        got.clear();
        assert!(!rx.recv_all(&mut got).await);
    }

    #[tokio::test]
    async fn wakes_a_waiting_receiver_and_refuses_after_it_is_gone() {
        let (tx, mut rx) = inbox::<String>();
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            let more = rx.recv_all(&mut got).await;
            (more, got)
        });
        tokio::task::yield_now().await;
        tx.send("a".into()).unwrap();
        let (more, got) = waiter.await.unwrap();
        assert!(more);
        assert_eq!(got, vec!["a".to_string()]);
        // The receiver was dropped with the task: the command comes back.
        assert_eq!(tx.send("b".into()), Err("b".to_string()));
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_nothing() {
        let (tx, mut rx) = inbox::<u8>();
        let mut got = Vec::new();
        let timed_out =
            tokio::time::timeout(std::time::Duration::from_millis(5), rx.recv_all(&mut got)).await;
        assert!(timed_out.is_err());
        tx.send(7).unwrap();
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, vec![7]);
    }
}
