//! Runs the producer's delivery callback off the driver when there is much
//! to report, so that the work a callback does never holds up the driver
//! (which encodes, sends and reads answers). The driver collects the
//! reports of each of its passes; a large run goes in one message to a
//! thread of its own, which calls the callback for each, in order. A few
//! reports while that thread is idle are made by the driver itself, which
//! saves the hop to another thread (the latency of a lightly loaded
//! producer); the callback is never called from both at once, and reports
//! never overtake each other.
//!
//! Completions that callers expect to see after their records' reports
//! (`flush`, `close`, transactional calls) go through the same stream, so
//! a `flush` returns only once the callback has seen every record sent
//! before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::engine::DeliveredBatch;
use crate::error::Error;
use crate::producer::{DeliveryCallback, DeliveryFuture};
use crate::record::RecordMetadata;

enum Report {
    /// A tagged record's outcome.
    Outcome(u64, Result<RecordMetadata, Error>),
    /// Tagged records of one batch, delivered: `first` is the metadata of
    /// the batch's first record; each record's tag, index in the batch
    /// and timestamp (see [`Reporter::delivered`]).
    Delivered {
        first: RecordMetadata,
        records: Vec<(u64, u32, i64)>,
    },
    /// A batch delivered whose records are all tagged, as the engine
    /// reported it, with each record's tag in place of its token.
    Batch(TaggedBatch),
    /// A completion to signal once the reports before it are done.
    Signal(oneshot::Sender<()>),
    /// A result to hand over once the reports before it are done.
    Answer(oneshot::Sender<Result<(), Error>>, Result<(), Error>),
}

/// A delivered batch whose records' tokens the driver has replaced with
/// the caller's tags (each had one): the batch goes to the callback as the
/// engine reported it, so a batch of hundreds of records costs no list of
/// its reports.
pub(crate) struct TaggedBatch(DeliveredBatch);

impl TaggedBatch {
    /// `batch`, whose every record's token is now its tag.
    pub(crate) fn new(batch: DeliveredBatch) -> TaggedBatch {
        TaggedBatch(batch)
    }
}

/// Records in a pass that the driver reports itself when the thread is idle.
const INLINE_MAX: usize = 64;

/// The driver's end of the report stream.
pub(crate) struct Reporter {
    tx: mpsc::Sender<Vec<Report>>,
    batch: Vec<Report>,
    /// Records reported in `batch`.
    queued_records: usize,
    callback: DeliveryCallback,
    /// Batches sent to the thread and not yet done.
    outstanding: Arc<AtomicUsize>,
}

fn deliver(callback: &DeliveryCallback, report: Report) {
    match report {
        Report::Outcome(tag, result) => callback.report(tag, result.as_ref()),
        Report::Delivered { first, records } => {
            // One metadata value for the whole batch, updated in place.
            let base = first.offset;
            let mut metadata = first;
            for (tag, index, timestamp) in records {
                metadata.offset = if base >= 0 {
                    base + i64::from(index)
                } else {
                    -1
                };
                metadata.timestamp = timestamp;
                callback.report(tag, Ok(&metadata));
            }
        }
        Report::Batch(TaggedBatch(batch)) => {
            let mut metadata = batch.metadata(0);
            for (i, r) in batch.records.iter().enumerate() {
                metadata.offset = batch.offset(i);
                metadata.timestamp = batch.timestamp(r);
                callback.report(r.token, Ok(&metadata));
            }
        }
        Report::Signal(done) => {
            let _ = done.send(());
        }
        Report::Answer(done, result) => {
            let _ = done.send(result);
        }
    }
}

impl Reporter {
    /// Starts the thread that calls `callback`. Fails only if the thread
    /// cannot be spawned.
    pub(crate) fn start(callback: DeliveryCallback) -> std::io::Result<Reporter> {
        let (tx, rx) = mpsc::channel::<Vec<Report>>();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let (thread_callback, done) = (callback.clone(), Arc::clone(&outstanding));
        std::thread::Builder::new()
            .name("smartkafka-delivery".into())
            .spawn(move || {
                // Ends when the driver drops its end, after the last batch.
                for batch in rx {
                    for report in batch {
                        deliver(&thread_callback, report);
                    }
                    // After the batch's last report: the driver may report
                    // itself again.
                    done.fetch_sub(1, Ordering::Release);
                }
            })?;
        Ok(Reporter {
            tx,
            batch: Vec::new(),
            queued_records: 0,
            callback,
            outstanding,
        })
    }

    /// Queues a tagged record's outcome.
    pub(crate) fn outcome(&mut self, tag: u64, result: Result<RecordMetadata, Error>) {
        self.queued_records += 1;
        self.batch.push(Report::Outcome(tag, result));
    }

    /// Queues the outcomes of a batch's tagged records, delivered:
    /// `first` is the metadata of the batch's first record (offsets count
    /// on from it), `records` each record's tag, index in the batch and
    /// timestamp.
    pub(crate) fn delivered(&mut self, first: RecordMetadata, records: Vec<(u64, u32, i64)>) {
        self.queued_records += records.len();
        self.batch.push(Report::Delivered { first, records });
    }

    /// Queues the outcomes of a delivered batch whose records are all
    /// tagged (see [`TaggedBatch`]).
    pub(crate) fn delivered_tagged(&mut self, batch: TaggedBatch) {
        self.queued_records += batch.0.records.len();
        self.batch.push(Report::Batch(batch));
    }

    /// Signals `done` after the outcomes queued so far.
    pub(crate) fn signal(&mut self, done: oneshot::Sender<()>) {
        self.batch.push(Report::Signal(done));
    }

    /// Hands `result` to `done` after the outcomes queued so far.
    pub(crate) fn answer(
        &mut self,
        done: oneshot::Sender<Result<(), Error>>,
        result: Result<(), Error>,
    ) {
        self.batch.push(Report::Answer(done, result));
    }

    /// Makes the queued reports: here when they are few and the thread has
    /// nothing left to do, else on the thread.
    pub(crate) fn submit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.queued_records);
        if records <= INLINE_MAX && self.outstanding.load(Ordering::Acquire) == 0 {
            for report in std::mem::take(&mut self.batch) {
                deliver(&self.callback, report);
            }
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::SendError(batch)) = self.tx.send(batch) {
            // The thread is gone (it cannot be, short of an abort): report
            // here instead.
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
            for report in batch {
                deliver(&self.callback, report);
            }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.submit();
    }
}

/// Where the driver sends one record's outcome.
pub(crate) enum DeliveryReply {
    /// The record's [`DeliveryFuture`].
    Future(oneshot::Sender<Result<RecordMetadata, Error>>),
    /// The producer's callback, with the record's tag (dropped when no
    /// callback is set).
    Tagged(u64),
}

impl DeliveryReply {
    /// A reply for a new [`DeliveryFuture`].
    pub(crate) fn future() -> (DeliveryReply, DeliveryFuture) {
        let (tx, rx) = oneshot::channel();
        (DeliveryReply::Future(tx), DeliveryFuture::new(rx))
    }

    /// Reports `result`: to the future, or through `reporter` to the
    /// callback (none: dropped).
    pub(crate) fn send(
        self,
        result: Result<RecordMetadata, Error>,
        reporter: Option<&mut Reporter>,
    ) {
        match self {
            DeliveryReply::Future(tx) => {
                let _ = tx.send(result);
            }
            DeliveryReply::Tagged(tag) => {
                if let Some(reporter) = reporter {
                    reporter.outcome(tag, result);
                }
            }
        }
    }
}
