//! The transactional API of [`Producer`]: `init_transactions`,
//! `begin_transaction`, `send_offsets_to_transaction`,
//! `commit_transaction`, `abort_transaction`, and a [`Transaction`] guard
//! that aborts when dropped uncommitted. The state machine behind them is
//! in `engine::txn`.
//!
//! Errors say what to do next:
//!
//! | error | meaning | what to do |
//! |---|---|---|
//! | [`Error::is_retriable`] (e.g. a timeout) | the call did not finish in `max_block`, or a commit's outcome is unknown | call the same method again; it resumes |
//! | [`Error::is_abortable`] | the transaction cannot commit (a record or a transactional request failed) | `abort_transaction`, then start a new one |
//! | [`Error::is_fatal`] (e.g. [`ErrorKind::Fenced`]) | another producer took over the transactional id, or it is not authorised | drop the producer |
//! | [`ErrorKind::InvalidTransactionState`] | a call in the wrong order | fix the calling code |

use tokio::sync::oneshot;

use super::{Producer, closed};
use crate::consumer::{ConsumerGroupMetadata, OffsetToCommit};
use crate::engine::TxnOp;
use crate::error::{Error, ErrorKind};
use crate::producer::runtime::driver::Command;

impl Producer {
    /// Finds the transaction coordinator and takes the producer id of this
    /// producer's `transactional_id`, fencing any older producer with the
    /// same id and aborting a transaction it left open. Call once, before
    /// the first transaction. Waits up to `max_block`; a timeout is
    /// retriable (call it again to resume).
    pub async fn init_transactions(&self) -> Result<(), Error> {
        self.txn_call(TxnOp::Init).await
    }

    /// Starts a transaction: records sent from now on commit or abort
    /// together. Fails if a transaction is already open.
    pub async fn begin_transaction(&self) -> Result<(), Error> {
        self.txn_call(TxnOp::Begin).await
    }

    /// Commits consumer positions as part of the open transaction (the
    /// offsets of the *next* records to read), so that they become visible
    /// only if the transaction commits: the consume-transform-produce loop
    /// of exactly-once pipelines (KIP-98, KIP-447).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: Vec<OffsetToCommit>,
        group: ConsumerGroupMetadata,
    ) -> Result<(), Error> {
        self.txn_call(TxnOp::SendOffsets { offsets, group }).await
    }

    /// Sends every record of the transaction, waits for them, and commits.
    /// A record that failed makes this fail as abortable (then call
    /// [`abort_transaction`](Self::abort_transaction)). If the commit's
    /// outcome is unknown (lost connection, timeout), this fails as
    /// retriable, and only calling it again completes the transaction.
    pub async fn commit_transaction(&self) -> Result<(), Error> {
        self.txn_call(TxnOp::Commit).await
    }

    /// Aborts the open transaction: records not sent yet fail with
    /// [`ErrorKind::TransactionAborted`], records already written are
    /// discarded for `read_committed` readers.
    pub async fn abort_transaction(&self) -> Result<(), Error> {
        self.txn_call(TxnOp::Abort).await
    }

    /// Begins a transaction and returns a guard for it: commit it with
    /// [`Transaction::commit`]; dropped without a commit, it aborts.
    ///
    /// ```no_run
    /// # async fn demo(producer: smartkafka::Producer) -> Result<(), smartkafka::Error> {
    /// use smartkafka::Record;
    /// producer.init_transactions().await?;
    /// let txn = producer.transaction().await?;
    /// producer.send(Record::new("payments").value("debit")).await?;
    /// producer.send(Record::new("ledger").value("credit")).await?;
    /// txn.commit().await?; // both records, or neither
    /// # Ok(()) }
    /// ```
    pub async fn transaction(&self) -> Result<Transaction, Error> {
        self.begin_transaction().await?;
        Ok(Transaction {
            producer: Some(self.clone()),
        })
    }

    async fn txn_call(&self, call: TxnOp) -> Result<(), Error> {
        let what = call.name();
        let (done, rx) = oneshot::channel();
        self.shared
            .driver
            .commands
            .send(Command::Txn { call, done })
            .map_err(|_| closed())?;
        let max_block = self.shared.config.max_block;
        match tokio::time::timeout(max_block, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{what} did not finish within max_block ({max_block:?}); call it again to resume"
                ),
            )),
        }
    }
}

/// An open transaction ([`Producer::transaction`]): commit it, abort it,
/// or drop it to abort.
///
/// ```no_run
/// # async fn demo(producer: smartkafka::Producer) -> Result<(), smartkafka::Error> {
/// use smartkafka::Record;
/// // The producer was built with a transactional id and
/// // `init_transactions` has run.
/// let txn = producer.transaction().await?;
/// let _a = producer.send(Record::new("ledger").key("alice").value("-10")).await?;
/// let _b = producer.send(Record::new("ledger").key("bob").value("+10")).await?;
/// txn.commit().await?; // both records, or (dropped without commit) neither
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a transaction dropped without commit() aborts"]
pub struct Transaction {
    producer: Option<Producer>,
}

impl Transaction {
    /// Commits the transaction ([`Producer::commit_transaction`]). On an
    /// abortable error the transaction is aborted before this returns; on
    /// a retriable one (unknown outcome) call
    /// [`Producer::commit_transaction`] again.
    pub async fn commit(mut self) -> Result<(), Error> {
        let Some(producer) = self.producer.take() else {
            return Ok(());
        };
        let result = producer.commit_transaction().await;
        if let Err(e) = &result
            && e.is_abortable()
        {
            producer.abort_transaction().await?;
        }
        result
    }

    /// Aborts the transaction ([`Producer::abort_transaction`]).
    pub async fn abort(mut self) -> Result<(), Error> {
        match self.producer.take() {
            Some(producer) => producer.abort_transaction().await,
            None => Ok(()),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            // Nobody waits for the result: the next call on the producer
            // sees the abort's outcome.
            let (done, _) = oneshot::channel();
            let _ = producer.shared.driver.commands.send(Command::Txn {
                call: TxnOp::Abort,
                done,
            });
        }
    }
}
