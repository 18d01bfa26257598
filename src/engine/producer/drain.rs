//! Drain: turning ready batches into Produce requests, one per broker, with
//! the per-partition in-flight limits, a rotating start partition, and the
//! producer id, epoch and sequences stamped at drain time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::identity::identity_of;
use super::interface::{Acks, Transmit};
use super::outcome::records_error;
use super::{Engine, InFlight, InFlightBatch, earliest_after};
use crate::engine::accumulator::{PartitionQueue, PendingRecord, Stamp};
use crate::engine::idempotence::ProducerIdentity;
use crate::engine::topic_table::TopicSlot;
use crate::record::Topic;
use crate::record_batch::Crc;

/// A partition found ready to send: the engine's name for its topic, the
/// topic's slot in the engine's queues (found again without a search by
/// name) and its number. Ordered by topic and partition, as requests list
/// them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReadyPartition {
    topic: Topic,
    partition: i32,
    slot: TopicSlot,
}

impl ReadyPartition {
    fn new(topic: &Topic, slot: TopicSlot, partition: i32) -> ReadyPartition {
        ReadyPartition {
            topic: topic.clone(),
            partition,
            slot,
        }
    }
}

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
    /// when the first partition left behind becomes ready by time.
    ///
    /// A pass looks at the partitions its topics' ready indexes name (see
    /// [`ready_index`](super::ready_index)), and at every partition holding
    /// records after an input the index does not follow (`walk_all`) and
    /// while the buffer is short, a transaction runs or an epoch bump waits.
    /// Those it looks at and finds not ready give the next deadline, with
    /// the indexes' linger and backoff ends; the ones drained give theirs
    /// once their batches are taken.
    pub(super) fn drain(&mut self, now: Instant) {
        let Some((identity, resolving_only)) = self.drain_mode() else {
            self.deadlines.send = self.send_deadline_by_scan();
            self.backlog.clear();
            self.walk_all = true;
            return;
        };
        let hurry = self.buffer_blocked;
        let limit = self.partition_in_flight_limit();
        let linger = self.config.linger;
        let transactional = self.txn.is_some();
        let walk = std::mem::take(&mut self.walk_all) || hurry || transactional || resolving_only;
        // A linger ending within this of now counts as ended: the pass that
        // goes now takes its batch, instead of a wake-up of its own a moment
        // later. (A retry's backoff is a least wait: never shortened.)
        let soon = now + (linger / 10).min(Duration::from_millis(1));
        let rules = Rules {
            now,
            soon,
            linger,
            flush_mark: self.flush_mark,
            hurry,
            limit,
            resolving: resolving_only.then_some(identity),
        };
        #[cfg(test)]
        let walked = (!walk).then(|| self.check_index(&rules));
        if walk {
            self.backlog.start();
        } else {
            self.backlog.carry_on();
        }
        let mut ready: BTreeMap<i32, Vec<ReadyPartition>> = BTreeMap::new();
        let mut leaderless = false;
        let mut send_at: Option<Instant> = None;
        let mut look_at = std::mem::take(&mut self.due_scratch);
        let mut spare = std::mem::take(&mut self.spare_lists);
        for (topic, slot, tq) in self.topics.iter_mut() {
            tq.ready.advance(now, soon);
            if walk {
                tq.ready.clear_due();
                look_at.clear();
                look_at.extend(tq.active.iter().filter_map(|p| u32::try_from(p).ok()));
            } else {
                tq.ready.take_due(&mut look_at);
                send_at = earliest_after(now, send_at, tq.ready.next_time());
            }
            let Some((_, info)) = self.metadata.topic_at(tq.metadata) else {
                for p in &look_at {
                    if let Some(pq) = tq.partitions.get(*p as usize) {
                        send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                    }
                }
                continue;
            };
            for &p in &look_at {
                let index = p as usize;
                let Some(pq) = tq.partitions.get(index) else {
                    continue;
                };
                if pq.is_empty() {
                    tq.active.remove(index);
                    continue;
                }
                let partition = p as i32;
                if walk && let Some(leader) = info.leader(partition) {
                    self.backlog.partition(leader, pq.unsent_bytes());
                }
                let waits_for_txn = self
                    .txn
                    .as_ref()
                    .is_some_and(|txn| !txn.may_send(topic, partition));
                match rules.look(pq, waits_for_txn) {
                    Look::Later(at) => {
                        send_at = earliest_after(now, send_at, at);
                        // A head batch waiting out its backoff; linger ends
                        // are in the index from when their batches opened.
                        if let Some(at) = at
                            && pq.has_sealed()
                        {
                            tq.ready.backoff(at, index);
                        }
                    }
                    Look::Ready => match info.leader(partition) {
                        Some(leader) => ready
                            .entry(leader)
                            .or_insert_with(|| spare.take())
                            .push(ReadyPartition::new(topic, slot, partition)),
                        None => {
                            send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                            leaderless = true;
                        }
                    },
                }
            }
        }
        self.due_scratch = look_at;
        #[cfg(test)]
        if let Some(walked) = walked {
            assert_eq!(ready, walked, "the ready index missed or added partitions");
        }
        if leaderless {
            self.metadata.want_leader();
            self.poll_metadata(now);
        }
        // Hurried or without linger, every partition holding records that
        // may send was ready already.
        if !ready.is_empty() && !hurry && !linger.is_zero() {
            self.join_ready_brokers(&rules, &mut ready);
        }
        let mut drained = spare.take();
        drained.extend(ready.values().flatten().cloned());
        for (node, candidates) in ready {
            match self.metadata.broker_address(node).map(str::to_string) {
                Some(addr) => {
                    self.drain_broker(now, node, &addr, &candidates, identity, transactional);
                }
                None => self.metadata.request_refresh(),
            }
            spare.keep(candidates);
        }
        // Every partition found ready and still holding records is looked
        // at again by the next pass: one drained may have more to send, one
        // left for a later request (its broker at its limit, the request
        // full, the broker's address unknown) is still ready. One drained
        // empty leaves the active set now, rather than costing the next
        // pass a look (over thousands of partitions, most batches carry a
        // record or two, and most partitions drained are empty after).
        for ReadyPartition {
            slot, partition, ..
        } in drained.drain(..)
        {
            let index = partition as usize;
            if let Some(tq) = self.topics.at_mut(slot)
                && let Some(pq) = tq.partitions.get(index)
            {
                if !pq.has_open_batch() {
                    tq.ready.closed(index);
                }
                if pq.is_empty() {
                    tq.active.remove(index);
                } else {
                    send_at = earliest_after(now, send_at, pq.ready_at(linger, limit));
                    tq.ready.mark(index);
                }
            }
        }
        spare.keep(drained);
        self.spare_lists = spare;
        self.deadlines.send = send_at;
        let idle = self.is_idle();
        self.backlog.finish(
            now,
            idle,
            self.config.batch_size,
            self.config.max_request_size,
        );
    }

    /// Sends `node` its ready partitions' next batches (`candidates`, in
    /// topic and partition order), in as many requests as its in-flight
    /// limit allows and the request size needs, each starting after the
    /// partition the previous one started with.
    fn drain_broker(
        &mut self,
        now: Instant,
        node: i32,
        addr: &str,
        candidates: &[ReadyPartition],
        identity: Option<ProducerIdentity>,
        transactional: bool,
    ) {
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
            let mut batches = self.spare_batch_lists.take();
            for k in 0..candidates.len() {
                let i = (start + k) % candidates.len();
                if taken[i] {
                    continue;
                }
                let ReadyPartition {
                    topic,
                    slot,
                    partition,
                } = &candidates[i];
                let Some(pq) = self
                    .topics
                    .at_mut(*slot)
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
                // Stamped below when there is an identity: the stamp
                // writes the CRC.
                let crc = if identity.is_some() {
                    Crc::AtStamp
                } else {
                    Crc::Now
                };
                let next = pq.take_next(now, crc);
                // What left the partition's unsent records, sent or
                // failed, no longer waits.
                self.backlog.sent(unsent.saturating_sub(pq.unsent_bytes()));
                if unsent > 0 && pq.unsent_bytes() == 0 {
                    self.backlog.emptied(node);
                }
                match next {
                    Ok(Some(mut batch)) => {
                        if let Some(identity) = identity {
                            stamp_batch(&mut batch, &mut pq.sequences, identity, transactional);
                        }
                        size += batch.sealed.len() + topic.len() + 32;
                        pq.sent(batch.order);
                        batches.push(InFlightBatch {
                            topic: topic.clone(),
                            slot: *slot,
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
                self.spare_batch_lists.keep(batches);
                continue;
            }
            self.send_produce(now, node, addr, batches);
        }
    }

    /// Adds to each broker's ready partitions the others it leads that
    /// hold records and may send but have not reached their linger: a
    /// request goes to the broker anyway, and what it carries now need not
    /// wait for a request of its own (as the Java client drains a ready
    /// node). Partitions led by one broker fall into step: their batches
    /// open together after a drain and end their lingers together, so a
    /// broker gets about one request per linger instead of one per
    /// partition.
    fn join_ready_brokers(&self, rules: &Rules, ready: &mut BTreeMap<i32, Vec<ReadyPartition>>) {
        let eager = Rules {
            hurry: true,
            ..*rules
        };
        let mut joined = false;
        for (topic, slot, tq) in self.topics.iter() {
            let Some((_, info)) = self.metadata.topic_at(tq.metadata) else {
                continue;
            };
            for (p, pq) in tq.active() {
                let partition = p as i32;
                let Some(leader) = info.leader(partition) else {
                    continue;
                };
                let Some(candidates) = ready.get_mut(&leader) else {
                    continue;
                };
                if pq.is_empty() {
                    continue;
                }
                let waits_for_txn = self
                    .txn
                    .as_ref()
                    .is_some_and(|txn| !txn.may_send(topic, partition));
                if let Look::Ready = eager.look(pq, waits_for_txn) {
                    candidates.push(ReadyPartition::new(topic, slot, partition));
                    joined = true;
                }
            }
        }
        if joined {
            for candidates in ready.values_mut() {
                candidates.sort_unstable();
                candidates.dedup();
            }
        }
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
        for b in &mut batches {
            b.batch.attempts += 1;
        }
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for (n, b) in batches.iter().enumerate() {
            let data = PartitionProduceData::default()
                .with_index(b.partition)
                .with_records(Some(b.batch.sealed.bytes().clone()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == b.topic) {
                Some(t) => t.partition_data.push(data),
                None => {
                    // Sized once for all of the topic's batches here.
                    let of_topic = batches[n..].iter().filter(|o| o.topic == b.topic);
                    let mut partition_data = Vec::with_capacity(of_topic.count());
                    partition_data.push(data);
                    topics.push(
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(b.topic.to_string())))
                            .with_partition_data(partition_data),
                    );
                }
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

    /// A partition's queue, for what takes nothing and adds nothing to its
    /// records (its queued batches marked, its failed records counted): a
    /// partition holding records is active already, and an empty one need
    /// not be.
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

/// What a drain pass asks of every partition it looks at.
#[derive(Clone, Copy)]
struct Rules {
    now: Instant,
    /// Lingers ending by this instant count as ended.
    soon: Instant,
    linger: Duration,
    flush_mark: u64,
    /// Buffer space is short: every open batch goes.
    hurry: bool,
    /// Batches of a partition in flight at once.
    limit: usize,
    /// While an epoch bump waits: the identity whose possibly written
    /// batches alone may go.
    resolving: Option<Option<ProducerIdentity>>,
}

/// What a pass finds of a partition holding records.
enum Look {
    /// Its next batch may go now.
    Ready,
    /// Not now: sendable by time alone at the instant, if any.
    Later(Option<Instant>),
}

impl Rules {
    /// Whether `pq`'s next batch may go now: the partition's own readiness
    /// (in-flight limit, backoff, linger, flush, hurry), then a running
    /// transaction (`waits_for_txn`: the coordinator has not added the
    /// partition yet) and a waiting epoch bump (only partitions holding a
    /// possibly written batch under the old identity send, in order, to
    /// learn its outcome).
    fn look(&self, pq: &PartitionQueue, waits_for_txn: bool) -> Look {
        let later = || Look::Later(pq.ready_at(self.linger, self.limit));
        if let Err(at) = pq.readiness(
            self.now,
            self.soon,
            self.linger,
            self.flush_mark,
            self.hurry,
            self.limit,
        ) {
            return Look::Later(at);
        }
        if waits_for_txn {
            return later();
        }
        if let Some(identity) = self.resolving
            && !(pq
                .queue
                .front()
                .is_some_and(|b| b.stamp.map(identity_of) == identity)
                && pq
                    .queue
                    .iter()
                    .any(|b| b.maybe_persisted && b.stamp.map(identity_of) == identity))
        {
            return later();
        }
        Look::Ready
    }
}

#[cfg(test)]
impl Engine {
    /// Tests: before a pass that looks only at what the ready indexes name,
    /// the partitions a walk over every partition holding records finds
    /// ready, per leader, in the order the pass finds them; and the
    /// count of unsent records the pass carries on is the one a walk would
    /// make.
    fn check_index(&self, rules: &Rules) -> BTreeMap<i32, Vec<ReadyPartition>> {
        let mut ready: BTreeMap<i32, Vec<ReadyPartition>> = BTreeMap::new();
        let mut fresh = super::backlog::Backlog::default();
        let mut carried = self.backlog.clone();
        carried.carry_on();
        for (topic, slot, tq) in self.topics.iter() {
            let Some((_, info)) = self.metadata.topic_at(tq.metadata) else {
                continue;
            };
            for (p, pq) in tq.active() {
                let partition = p as i32;
                if pq.is_empty() {
                    continue;
                }
                if let Some(leader) = info.leader(partition) {
                    fresh.partition(leader, pq.unsent_bytes());
                }
                if let (Look::Ready, Some(leader)) = (rules.look(pq, false), info.leader(partition))
                {
                    ready
                        .entry(leader)
                        .or_default()
                        .push(ReadyPartition::new(topic, slot, partition));
                }
            }
        }
        assert_eq!(
            carried.counted(),
            fresh.counted(),
            "the unsent records counted as they came and went differ from a walk's count"
        );
        ready
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
