//! How a record's outcome reaches the caller: a [`DeliveryFuture`] per
//! record (`send`), or one [`DeliveryCallback`] for the whole producer
//! that receives the report of every record sent with a tag
//! (`send_tagged`), the fire-and-forget path with no per-record
//! allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind};
use crate::record::RecordMetadata;

/// The outcome of one record, resolved when the broker acknowledges it or
/// it fails.
///
/// Dropping it does not cancel the send.
///
/// ```no_run
/// # async fn demo(producer: smartkafka::Producer) -> Result<(), smartkafka::Error> {
/// use smartkafka::Record;
/// // `send` resolves once the record is buffered; the future it returns
/// // resolves once the broker has it (or it failed).
/// let delivery = producer.send(Record::new("events").value("hi")).await?;
/// match delivery.await {
///     Ok(metadata) => println!("partition {} offset {}", metadata.partition, metadata.offset),
///     Err(e) if e.possibly_persisted() => eprintln!("unknown outcome: {e}"),
///     Err(e) => eprintln!("not stored: {e}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a DeliveryFuture does nothing unless awaited; dropping it does not cancel the send"]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata, Error>>,
}

impl DeliveryFuture {
    /// The future of the outcome that `rx` will carry.
    pub(crate) fn new(rx: oneshot::Receiver<Result<RecordMetadata, Error>>) -> DeliveryFuture {
        DeliveryFuture { rx }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Closed,
                    "the producer stopped before reporting the delivery",
                )
                .with_possibly_persisted(true))
            })
        })
    }
}

type Report = dyn Fn(u64, Result<&RecordMetadata, &Error>) + Send + Sync;

/// Receives the delivery report of every record sent with
/// [`Producer::send_tagged`](crate::Producer::send_tagged) or
/// [`try_send_tagged`](crate::Producer::try_send_tagged): the record's tag
/// and where it was written, or why it failed. Set it with
/// [`ProducerBuilder::on_delivery`](crate::ProducerBuilder::on_delivery).
///
/// It is called once per record, in `send` order within a partition, never
/// from two threads at once: by the producer's task for a few reports at a
/// time, and by a thread of the producer's own (`smartkafka-delivery`) for
/// larger runs, so the time it takes does not slow sending under load.
/// Reports queue up behind a slow callback, and `flush`, `close` and
/// transactional calls return only once it has seen the records sent
/// before them. A panic in it is caught and logged; the producer goes on.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use smartkafka::DeliveryCallback;
///
/// let failed = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&failed);
/// let callback = DeliveryCallback::new(move |_tag, result| {
///     if result.is_err() {
///         counter.fetch_add(1, Ordering::Relaxed);
///     }
/// });
/// # let _ = callback;
/// ```
#[derive(Clone)]
pub struct DeliveryCallback(Arc<Report>);

impl DeliveryCallback {
    /// Wraps `report`, called with each record's tag and outcome.
    pub fn new(
        report: impl Fn(u64, Result<&RecordMetadata, &Error>) + Send + Sync + 'static,
    ) -> DeliveryCallback {
        DeliveryCallback(Arc::new(report))
    }

    /// Calls the callback; a panic is logged, not propagated into the
    /// producer's task.
    pub(crate) fn report(&self, tag: u64, result: Result<&RecordMetadata, &Error>) {
        let call = std::panic::AssertUnwindSafe(|| (self.0)(tag, result));
        if std::panic::catch_unwind(call).is_err() {
            tracing::error!(tag, "the delivery callback panicked");
        }
    }
}

impl std::fmt::Debug for DeliveryCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryCallback")
    }
}
