//! Drain: turning ready batches into Produce requests, one per broker, with
//! the per-partition in-flight limits, a rotating start partition, and the
//! producer id, epoch and sequences stamped at drain time.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::identity::identity_of;
use super::interface::{Acks, Transmit};
use super::outcome::records_error;
use super::{Engine, InFlight, InFlightBatch, earliest_after};
use crate::engine::accumulator::{PartitionQueue, PendingRecord, Stamp};
use crate::engine::idempotence::ProducerIdentity;
use crate::record::Topic;

impl Engine {
    pub(super) fn is_in_flight_batch(
        &self,
        topic: &str,
        partition: i32,
        records: &[PendingRecord],
    ) -> bool {
        let Some(first) = records.first() else {
            return false;
        };
        self.in_flight.values().any(|r| {
            r.batches.iter().any(|b| {
                b.topic == topic
                    && b.partition == partition
                    && b.batch.records.first().map(|r| r.token) == Some(first.token)
            })
        })
    }

    /// What may be drained now: `None` nothing; otherwise the identity to
    /// stamp batches with (none without idempotence) and whether only
    /// possibly-persisted batches stamped under it may go (an epoch bump
    /// waits for them).
    pub(super) fn drain_mode(&self) -> Option<(Option<ProducerIdentity>, bool)> {
        match &self.idempotence {
            None => Some((None, false)),
            Some(idem) => match (idem.ready(), idem.resolving()) {
                (Some(id), _) => Some((Some(id), false)),
                (None, Some(old)) => Some((Some(old), true)),
                (None, None) => None,
            },
        }
    }

    /// Batches of one partition allowed in flight at once: one without
    /// idempotence (so retries cannot reorder), up to `max_in_flight` (at
    /// most 5, the broker's duplicate window) with it.
    pub(super) fn partition_in_flight_limit(&self) -> usize {
        if self.idempotence.is_some() {
            self.config.max_in_flight.clamp(1, 5)
        } else {
            1
        }
    }

    /// Sends what is ready, and leaves in [`Deadlines::send`](super::Deadlines)
    /// when the first partition left behind becomes ready by time: the
    /// partitions not ready now are measured in the same walk, the ones
    /// drained once their batches are taken.
    pub(super) fn drain(&mut self, now: Instant) {
        let Some((identity, resolving_only)) = self.drain_mode() else {
            self.deadlines.send = self.send_deadline_by_scan();
            self.backlog.clear();
            return;
        };
        self.backlog.start();
        let hurry = self.buffer_blocked;
        let limit = self.partition_in_flight_limit();
        let linger = self.config.linger;
        let transactional = self.txn.is_some();
        let mut ready: BTreeMap<i32, Vec<(Topic, i32)>> = BTreeMap::new();
        let mut leaderless = false;
        let mut send_at: Option<Instant> = None;
        let mut emptied: Vec<(Topic, usize)> = Vec::new();
        for (topic, tq) in &self.topics {
            let Some(info) = self.metadata.topic(topic) else {
                for (_, pq) in tq.active() {
                    send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                }
                continue;
            };
            for (p, pq) in tq.active() {
                if pq.is_empty() {
                    emptied.push((topic.clone(), p));
                    continue;
                }
                if let Some(leader) = info.leader(p as i32) {
                    self.backlog.partition(leader, pq.unsent_bytes());
                }
                if let Err(at) = pq.readiness(now, linger, self.flush_mark, hurry, limit) {
                    send_at = earliest_after(now, send_at, at);
                    continue;
                }
                // A transaction's partition sends once the coordinator added it.
                if let Some(txn) = &self.txn
                    && !txn.may_send(topic, p as i32)
                {
                    send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                    continue;
                }
                // While a bump waits, only partitions holding a possibly
                // written batch under the old identity send, in order, to
                // learn its outcome.
                if resolving_only
                    && !(pq
                        .queue
                        .front()
                        .is_some_and(|b| b.stamp.map(identity_of) == identity)
                        && pq
                            .queue
                            .iter()
                            .any(|b| b.maybe_persisted && b.stamp.map(identity_of) == identity))
                {
                    send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                    continue;
                }
                let partition = p as i32;
                match info.leader(partition) {
                    Some(leader) => ready
                        .entry(leader)
                        .or_default()
                        .push((topic.clone(), partition)),
                    None => {
                        send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                        leaderless = true;
                    }
                }
            }
        }
        if leaderless {
            self.metadata.want_leader();
            self.poll_metadata(now);
        }
        for (topic, p) in emptied {
            if let Some(tq) = self.topics.get_mut(&topic) {
                tq.active.remove(p);
            }
        }
        let drained: Vec<(Topic, i32)> = ready.values().flatten().cloned().collect();
        for (node, candidates) in ready {
            let Some(addr) = self.metadata.broker_address(node).map(str::to_string) else {
                self.metadata.request_refresh();
                continue;
            };
            let mut taken = vec![false; candidates.len()];
            loop {
                let in_flight = self.node_in_flight.get(&node).copied().unwrap_or(0);
                if in_flight >= self.config.max_in_flight || taken.iter().all(|t| *t) {
                    break;
                }
                // Start after the partition the previous request started
                // with, so that none starves when requests fill up.
                let start = self.drain_cursor.get(&node).map_or(0, |last| {
                    candidates.iter().position(|c| c > last).unwrap_or(0)
                });
                let start = (start..candidates.len())
                    .chain(0..start)
                    .find(|i| !taken[*i])
                    .unwrap_or(start);
                self.drain_cursor.insert(node, candidates[start].clone());
                let mut size = 64usize;
                let mut batches: Vec<InFlightBatch> = Vec::new();
                for k in 0..candidates.len() {
                    let i = (start + k) % candidates.len();
                    if taken[i] {
                        continue;
                    }
                    let (topic, partition) = &candidates[i];
                    let Some(pq) = self
                        .topics
                        .get_mut(topic)
                        .and_then(|tq| tq.partitions.get_mut(*partition as usize))
                    else {
                        taken[i] = true;
                        continue;
                    };
                    let next = pq.next_size() + topic.len() + 32;
                    if !batches.is_empty() && size + next > self.config.max_request_size {
                        continue;
                    }
                    taken[i] = true;
                    let unsent = pq.unsent_bytes();
                    let next = pq.take_next(now);
                    // What left the partition's unsent records, sent or
                    // failed, no longer waits.
                    self.backlog.sent(unsent.saturating_sub(pq.unsent_bytes()));
                    match next {
                        Ok(Some(mut batch)) => {
                            if let Some(identity) = identity {
                                stamp_batch(&mut batch, &mut pq.sequences, identity, transactional);
                            }
                            size += batch.sealed.len() + topic.len() + 32;
                            pq.sent(batch.order);
                            batches.push(InFlightBatch {
                                topic: topic.clone(),
                                partition: *partition,
                                batch,
                                resolved: false,
                            });
                        }
                        Ok(None) => {}
                        Err((records, e)) => {
                            let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
                            let (topic, partition) = (topic.clone(), *partition);
                            self.release(&topic, partition, bytes);
                            self.fail_records(&topic, partition, &records, &records_error(e));
                        }
                    }
                }
                if batches.is_empty() {
                    continue;
                }
                self.send_produce(now, node, &addr, batches);
            }
        }
        for (topic, partition) in drained {
            if let Some(pq) = self
                .topics
                .get(&topic)
                .and_then(|tq| tq.partitions.get(partition as usize))
            {
                send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
            }
        }
        self.deadlines.send = send_at;
        let idle = self.is_idle();
        self.backlog.finish(
            now,
            idle,
            self.config.batch_size,
            self.config.max_request_size,
        );
    }

    pub(super) fn send_produce(
        &mut self,
        now: Instant,
        node: i32,
        addr: &str,
        mut batches: Vec<InFlightBatch>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for b in &mut batches {
            b.batch.attempts += 1;
            let data = PartitionProduceData::default()
                .with_index(b.partition)
                .with_records(Some(b.batch.sealed.bytes().clone()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == b.topic) {
                Some(t) => t.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(b.topic.to_string())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let timeout_ms = i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let request =
            ProduceRequest::default()
                .with_transactional_id(self.txn.as_ref().map(|t| {
                    TransactionalId(StrBytes::from_string(t.transactional_id().to_string()))
                }))
                .with_acks(self.config.acks.as_i16())
                .with_timeout_ms(timeout_ms)
                .with_topic_data(topics);
        *self.node_in_flight.entry(node).or_insert(0) += 1;
        let bytes = batches.iter().map(|b| b.batch.sealed.len()).sum();
        self.stats.request_sent(node, bytes);
        self.in_flight.insert(
            id,
            InFlight {
                node,
                sent_at: now,
                batches,
            },
        );
        self.transmits.push_back(Transmit::Produce {
            id,
            node,
            addr: addr.to_string(),
            request,
            expects_response: self.config.acks != Acks::None,
        });
    }

    /// A partition's queue, to put a batch back into: the partition
    /// counts as active (its batches are drained and expired) until a
    /// drain pass finds it empty.
    pub(super) fn partition_queue_to_refill(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Option<&mut PartitionQueue> {
        let tq = self.topics.get_mut(topic)?;
        let index = usize::try_from(partition).ok()?;
        let pq = tq.partitions.get_mut(index)?;
        tq.active.insert(index);
        Some(pq)
    }

    /// A partition's queue, for what takes nothing and adds nothing to its
    /// records (a batch settled, its sequences acknowledged): a partition
    /// holding records is active already, and an empty one need not be
    /// (marking it would cost an insert and a removal per delivered batch).
    pub(super) fn partition_queue(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Option<&mut PartitionQueue> {
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)
    }
}

/// Stamps a drained batch for idempotence: it keeps its sequences when it
/// was stamped under `identity` already (a retry), and takes the
/// partition's next ones otherwise (a first attempt, or a retry after an
/// epoch bump). Stamping rewrites only the header; the records are not
/// encoded again.
pub(super) fn stamp_batch(
    batch: &mut crate::engine::accumulator::Batch,
    sequences: &mut crate::engine::idempotence::PartitionSequences,
    identity: ProducerIdentity,
    transactional: bool,
) {
    let base_sequence = match batch.stamp {
        Some(s) if identity_of(s) == identity => s.base_sequence,
        _ => sequences.assign(batch.sealed.record_count()),
    };
    batch.sealed.stamp(
        identity.producer_id,
        identity.epoch,
        base_sequence,
        transactional,
    );
    batch.stamp = Some(Stamp {
        producer_id: identity.producer_id,
        epoch: identity.epoch,
        base_sequence,
    });
}
