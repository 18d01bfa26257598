//! What the transaction coordinator does to the cluster state: where each
//! transactional id is coordinated, ending a transaction (markers into every
//! added partition, pending offsets applied or dropped), and aborting the
//! transactions that outlived their timeout. The types it works on and the
//! behaviour it follows are described in [`crate::txn`].

use std::time::Duration;

use tokio::time::Instant;

use crate::state::ClusterState;
use crate::txn::{
    CompletedTransaction, EndCause, TransactionOutcome, TransactionState, TransactionStatus,
    epoch_exhausted,
};

impl ClusterState {
    /// The broker coordinating transactional id `txn` and its coordinator
    /// epoch (bumped each time the coordinator moves).
    pub fn txn_coordinator(&self, txn: &str) -> (i32, i32) {
        match self.txn_coordinators.get(txn) {
            Some(&placed) => placed,
            None => (self.coordinator_for(txn).id, 0),
        }
    }

    /// Starts ending the transaction of `txn` with `outcome`. When `fence`
    /// is set the producer epoch is bumped first (coordinator-initiated
    /// aborts). Writes the markers at once unless a marker delay is set.
    /// Returns whether anything was appended to a log.
    pub fn end_transaction(
        &mut self,
        txn: &str,
        outcome: TransactionOutcome,
        cause: EndCause,
        fence: bool,
        now: Instant,
    ) -> bool {
        if fence && let Some(producer) = self.transactional_ids.get_mut(txn) {
            if !epoch_exhausted(producer.epoch) {
                producer.epoch += 1;
            }
            producer.last_epoch = -1;
        }
        let delay = self.marker_delay;
        let Some(t) = self.transactions.get_mut(txn) else {
            return false;
        };
        t.status = match outcome {
            TransactionOutcome::Commit => TransactionStatus::PrepareCommit,
            TransactionOutcome::Abort => TransactionStatus::PrepareAbort,
        };
        t.ending = cause;
        if delay.is_zero() {
            self.write_markers(txn)
        } else {
            // A delay too long to represent never completes on its own.
            t.completes_at = Some(
                now.checked_add(delay)
                    .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            );
            false
        }
    }

    /// Writes the markers of a `Prepare*` transaction and completes it.
    fn write_markers(&mut self, txn: &str) -> bool {
        let Some(producer) = self.transactional_ids.get(txn).copied() else {
            return false;
        };
        let (_, coordinator_epoch) = self.txn_coordinator(txn);
        let Some(t) = self.transactions.get_mut(txn) else {
            return false;
        };
        let commit = t.status == TransactionStatus::PrepareCommit;
        let partitions = std::mem::take(&mut t.partitions);
        let groups = std::mem::take(&mut t.groups);
        let offsets = std::mem::take(&mut t.pending_offsets);
        t.status = if commit {
            TransactionStatus::CompleteCommit
        } else {
            TransactionStatus::CompleteAbort
        };
        t.started = None;
        t.completes_at = None;
        t.history.push(CompletedTransaction {
            producer_id: producer.producer_id,
            producer_epoch: producer.epoch,
            outcome: if commit {
                TransactionOutcome::Commit
            } else {
                TransactionOutcome::Abort
            },
            cause: t.ending,
            partitions: partitions.clone(),
            groups,
        });
        let mut appended = false;
        for (topic, index) in &partitions {
            if let Some(part) = self.partition_mut(topic, *index) {
                let leader_epoch = part.leader_epoch;
                part.log.append_marker(
                    producer.producer_id,
                    producer.epoch,
                    commit,
                    coordinator_epoch,
                    leader_epoch,
                );
                appended = true;
            }
        }
        if commit {
            for (group, topic, partition, offset) in offsets {
                self.committed.insert((group, topic, partition), offset);
            }
        }
        appended
    }

    /// Completes due `Prepare*` transactions and aborts timed-out ones.
    /// Returns whether anything was appended to a log.
    pub fn tick_transactions(&mut self, now: Instant) -> bool {
        let mut due = Vec::new();
        let mut expired = Vec::new();
        for (id, t) in &self.transactions {
            if t.is_completing() && t.completes_at.is_some_and(|at| at <= now) {
                due.push(id.clone());
            } else if t.status == TransactionStatus::Ongoing
                && t.started.is_some_and(|s| {
                    let timeout = Duration::from_millis(u64::try_from(t.timeout_ms).unwrap_or(0));
                    s.checked_add(timeout)
                        .is_some_and(|deadline| now >= deadline)
                })
            {
                expired.push(id.clone());
            }
        }
        let mut appended = false;
        for id in due {
            appended |= self.write_markers(&id);
        }
        for id in expired {
            appended |=
                self.end_transaction(&id, TransactionOutcome::Abort, EndCause::Timeout, true, now);
        }
        appended
    }

    /// Whether an open transaction holds a pending offset for the partition.
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.transactions.values().any(|t| {
            t.pending_offsets
                .iter()
                .any(|(g, tp, p, _)| g == group && tp == topic && *p == partition)
        })
    }

    /// Checks that `(producer_id, epoch)` is the current producer of `txn`:
    /// `INVALID_PRODUCER_ID_MAPPING` for an unknown id or another producer
    /// id, `fenced` for another epoch.
    pub fn check_txn_producer(
        &self,
        txn: &str,
        producer_id: i64,
        epoch: i16,
        fenced: i16,
    ) -> Result<(), i16> {
        let mapping = kafka_protocol::ResponseError::InvalidProducerIdMapping.code();
        let Some(current) = self.transactional_ids.get(txn) else {
            return Err(mapping);
        };
        if !self.transactions.contains_key(txn) || current.producer_id != producer_id {
            return Err(mapping);
        }
        if current.epoch != epoch {
            return Err(fenced);
        }
        Ok(())
    }

    /// A snapshot of transactional id `txn`.
    pub fn transaction_snapshot(&self, txn: &str) -> Option<TransactionState> {
        let producer = self.transactional_ids.get(txn)?;
        let t = self.transactions.get(txn)?;
        Some(TransactionState {
            producer_id: producer.producer_id,
            producer_epoch: producer.epoch,
            status: t.status,
            timeout: Duration::from_millis(u64::try_from(t.timeout_ms).unwrap_or(0)),
            partitions: t.partitions.clone(),
            groups: t.groups.clone(),
            pending_offsets: t
                .pending_offsets
                .iter()
                .map(|(g, tp, p, c)| (g.clone(), tp.clone(), *p, c.offset))
                .collect(),
            coordinator: self.txn_coordinator(txn).0,
            history: t.history.clone(),
        })
    }
}
