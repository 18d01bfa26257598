//! Identity: the producer id and epoch (idempotence, KIP-360 bumps) and
//! the transactional state machine's requests and answers, plus the fatal
//! state the producer enters when either cannot go on.

use std::time::Instant;

use super::Engine;
use super::interface::{Event, Transmit};
use crate::engine::accumulator::Stamp;
use crate::engine::idempotence::ProducerIdentity;
use crate::engine::txn::{Transactions, TxnAnswer, TxnEffect, TxnOp};
use crate::error::{Error, ErrorKind};

impl Engine {
    /// An InitProducerId request finished: `(error code, producer id,
    /// epoch)`, or why it got no answer.
    pub(crate) fn handle_init_producer_id_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<(i16, i64, i16), Error>,
    ) {
        self.now = Some(now);
        // A producer id lets partitions send, and an epoch bump changes
        // which may.
        self.walk_all = true;
        let Some(idem) = self.idempotence.as_mut() else {
            return;
        };
        if !idem.is_request(id) {
            self.pump(now);
            return;
        }
        match idem.handle_response(now, result) {
            Some(identity) => self.adopt_identity(identity),
            None => {
                if let Some(error) = idem.fatal().map(Error::clone_shallow) {
                    self.go_fatal(now, error);
                }
            }
        }
        self.pump(now);
    }

    /// Batches go out under `identity` from now on.
    pub(super) fn adopt_identity(&mut self, identity: ProducerIdentity) {
        if self.stamped_identity != Some(identity) {
            // A new identity: every partition numbers from 0 again.
            for tq in self.topics.values_mut() {
                for pq in &mut tq.partitions {
                    pq.sequences.reset();
                }
            }
            self.stamped_identity = Some(identity);
        }
        if let Some(idem) = self.idempotence.as_mut() {
            idem.adopt(identity);
        }
        if !self.initialised {
            self.initialised = true;
            self.events.push_back(Event::Initialised);
        }
    }

    /// A transactional call (`init_transactions`, `begin_transaction`,
    /// `send_offsets_to_transaction`, `commit_transaction`,
    /// `abort_transaction`); `Event::TxnDone` with `op` reports its result.
    pub(crate) fn transaction(&mut self, now: Instant, op: u64, call: TxnOp) {
        self.now = Some(now);
        self.walk_all = true;
        let Some(txn) = self.txn.as_mut() else {
            let error = Error::config(
                "transactional_id",
                "transactional calls need a producer built with a transactional id",
            );
            self.events.push_back(Event::TxnDone {
                op,
                result: Err(error),
            });
            return;
        };
        if matches!(call, TxnOp::Commit) {
            // A commit sends everything now, linger or not.
            self.flush_mark = self.flush_mark.max(self.last_token);
        }
        txn.start(op, call);
        self.pump(now);
    }

    /// An abort that started fails the records not sent yet (those in
    /// flight finish; the abort waits for them).
    pub(super) fn fail_unsent_on_abort(&mut self) {
        if !self
            .txn
            .as_mut()
            .is_some_and(Transactions::take_abort_started)
        {
            return;
        }
        let reason = Error::new(
            ErrorKind::TransactionAborted,
            "the transaction was aborted before the record was sent",
        );
        if self.fail_unsent(&reason)
            && let Some(txn) = self.txn.as_mut()
        {
            txn.sequences_broken();
        }
    }

    /// A transactional request finished (`Err`: no answer).
    pub(crate) fn handle_txn_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<TxnAnswer, Error>,
    ) {
        self.now = Some(now);
        self.walk_all = true;
        if let Some(txn) = self.txn.as_mut() {
            match txn.handle_answer(now, id, result) {
                TxnEffect::None => {}
                TxnEffect::Identity(identity) => self.adopt_identity(identity),
                TxnEffect::Fatal => {
                    let error = txn.fatal().map(Error::clone_shallow);
                    if let Some(error) = error {
                        self.go_fatal(now, error);
                    }
                }
            }
        }
        self.pump(now);
    }

    /// Sends the transactional request the state machine wants, if any,
    /// and reports completed calls.
    pub(super) fn poll_transactions(&mut self, now: Instant) {
        loop {
            let Some(txn) = self.txn.as_mut() else {
                return;
            };
            txn.start_queued();
            self.fail_unsent_on_abort();
            let settled = self.held_records == 0 && self.in_flight.is_empty();
            let id = self.next_id;
            let Some(txn) = self.txn.as_mut() else {
                return;
            };
            if let Some(out) = txn.poll_request(now, settled, id) {
                self.next_id += 1;
                self.transmits.push_back(Transmit::Txn {
                    id,
                    node: out.node,
                    transactional_id: txn.transactional_id().to_string(),
                    request: out.request,
                });
            }
            let more = txn.has_startable_call();
            self.report_txn_calls();
            if !more {
                return;
            }
        }
    }

    pub(super) fn report_txn_calls(&mut self) {
        if let Some(txn) = self.txn.as_mut() {
            while let Some((op, result)) = txn.poll_done() {
                self.events.push_back(Event::TxnDone { op, result });
            }
        }
    }

    /// Sends InitProducerId when the idempotence state machine wants one: at
    /// start, after a retriable failure, or for an epoch bump once nothing
    /// is in flight and nothing possibly persisted waits to be resolved.
    pub(super) fn poll_producer_id(&mut self, now: Instant) {
        let Some(idem) = self.idempotence.as_ref() else {
            return;
        };
        if self.txn.is_some() {
            // The transaction coordinator hands out the producer id.
            return;
        }
        let quiet = self.in_flight.is_empty()
            && idem
                .resolving()
                .is_none_or(|old| !self.awaits_resolution(old));
        let id = self.next_id;
        let Some(idem) = self.idempotence.as_mut() else {
            return;
        };
        if let Some(request) = idem.poll_request(now, quiet, id) {
            self.next_id += 1;
            let node = self.metadata.pick_broker();
            self.transmits.push_back(Transmit::InitProducerId {
                id,
                node,
                producer_id: request.producer_id,
                epoch: request.epoch,
            });
        }
    }

    /// Whether a queued batch stamped under `old` may have been written:
    /// it must be resolved under that identity before the epoch moves on.
    pub(super) fn awaits_resolution(&self, old: ProducerIdentity) -> bool {
        self.topics.values().any(|tq| {
            tq.partitions.iter().any(|pq| {
                pq.queue
                    .iter()
                    .any(|b| b.maybe_persisted && b.stamp.is_some_and(|s| identity_of(s) == old))
            })
        })
    }

    /// The producer cannot go on: everything held fails with `error`, and
    /// so does every later record.
    pub(super) fn go_fatal(&mut self, now: Instant, error: Error) {
        tracing::error!(%error, "producer failed fatally");
        if let Some(idem) = self.idempotence.as_mut()
            && idem.fatal().is_none()
        {
            idem.set_fatal(error.clone_shallow());
        }
        self.fatal_error = Some(error.clone_shallow());
        if let Some(txn) = self.txn.as_mut() {
            txn.fail(error.clone_shallow());
        }
        self.abort(now, &error);
        self.events.push_back(Event::Fatal { error });
        self.report_txn_calls();
    }
}

pub(super) fn identity_of(stamp: Stamp) -> ProducerIdentity {
    ProducerIdentity {
        producer_id: stamp.producer_id,
        epoch: stamp.epoch,
    }
}
