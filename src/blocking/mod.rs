//! Blocking clients for code without an async runtime: a
//! [`Producer`] and a group [`Consumer`] with the same methods as the async
//! ones, each run on a small runtime it owns (one worker thread).
//!
//! Call them from plain threads or from `tokio::task::spawn_blocking`.
//! Called from asynchronous code (a tokio task or `block_on`), whose thread
//! they would block, a blocking method returns
//! [`ErrorKind::BlockingInAsyncContext`] instead; the methods that never
//! block (`try_send`, `try_send_tagged`, `stats`, and the consumer's
//! accessors) work anywhere.
//!
//! ```no_run
//! use smartkafka::{ProducerConfig, Record};
//! let producer = smartkafka::blocking::Producer::new(ProducerConfig::new("localhost:9092"))?;
//! let metadata = producer.send_and_wait(Record::new("events").value("hello"))?;
//! println!("offset {}", metadata.offset);
//! producer.close(std::time::Duration::from_secs(5))?;
//! # Ok::<(), smartkafka::Error>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::error::{Error, ErrorKind};

mod consumer;
mod producer;

pub use consumer::Consumer;
pub use producer::{DeliveryHandle, Producer};

/// How many units of tokio's cooperative budget a task starts a poll with.
const TOKIO_TASK_BUDGET: usize = 128;

/// Whether this thread is running asynchronous code of a tokio runtime (a
/// task, or the future of `block_on`), which a blocking call would stall.
///
/// Tokio gives such code a cooperative budget that runs out after
/// [`TOKIO_TASK_BUDGET`] operations; a blocking-pool thread
/// (`spawn_blocking`, `block_in_place`) and a plain thread have none, so
/// their operations never run out. Code a caller explicitly made
/// `unconstrained` is let through: it then blocks its thread, as any
/// blocking call would, but the work happens on the client's own runtime.
pub(super) fn in_async_context() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let mut cx = Context::from_waker(Waker::noop());
    (0..=TOKIO_TASK_BUDGET).any(|_| {
        let probe = std::pin::pin!(tokio::task::consume_budget());
        probe.poll(&mut cx).is_pending()
    })
}

pub(super) fn not_in_async_context() -> Result<(), Error> {
    if in_async_context() {
        return Err(Error::new(
            ErrorKind::BlockingInAsyncContext,
            "a smartkafka::blocking client was called from asynchronous code, whose thread \
             it would block; use the async client there, or tokio::task::spawn_blocking",
        ));
    }
    Ok(())
}

/// Wakes the thread that [`block_on`] parked.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking it while the future
/// waits; its timers and I/O are driven by the client's runtime. Unlike
/// tokio's `block_on` this works on a `spawn_blocking` thread of another
/// runtime and never panics.
pub(super) fn block_on<F: Future>(runtime: &tokio::runtime::Handle, future: F) -> F::Output {
    let _context = runtime.enter();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
