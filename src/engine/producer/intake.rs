//! Intake: records on their way into the accumulator. `append` puts a
//! record in the waiting queue; it leaves it once its topic's metadata is
//! known and buffer space is free (`process_waiting`, `accept`), or fails
//! at its deadline (`expire`). Metadata answers and refreshes live here
//! too, since they are what waiting records wait for.

use std::time::Instant;

use super::deadline_after;
use super::hot_topics::TopicSlots;
use super::identity::identity_of;
use super::interface::{BufferOwner, Event, Transmit};
use super::outcome::records_error;
use super::{Engine, TopicQueues, Waiting, earliest, earliest_after, sticky_switch_due};
use crate::engine::accumulator::{Incoming, PartitionQueue, PendingRecord, Stamp};
use crate::engine::idempotence::BumpReason;
use crate::engine::partitioner::{PartitionView, Partitioner, check_explicit};
use crate::engine::txn::Transactions;
use crate::error::{Error, ErrorKind};
use crate::metadata::ClusterMetadata;
use crate::record::{Record, Topic};
use crate::record_batch::BATCH_HEADER_LEN;

impl Engine {
    /// Takes a record. `token` identifies it in events and must grow with
    /// every call (flush relies on it). `timestamp_now` (ms since the Unix
    /// epoch) stamps records without a timestamp. The record may wait for
    /// its topic's metadata and for buffer space until `deadline`, or
    /// without one for `max_block` from `now` (a fresh producer does not
    /// fail records only because their metadata is on its way, as
    /// librdkafka holds them). Its acceptance is reported
    /// ([`Event::Accepted`]).
    #[cfg_attr(not(test), allow(dead_code))] // the driver defers; tests and the simulation do not
    pub(crate) fn append(
        &mut self,
        now: Instant,
        timestamp_now: i64,
        record: Record,
        token: u64,
        deadline: Option<Instant>,
    ) {
        self.append_deferred(now, timestamp_now, &record, token, deadline, true);
        self.pump(now);
    }

    /// [`append`](Self::append) without the pass that acts on it: the
    /// record is encoded into its batch at once when it can be (nothing
    /// waits before it, its topic is known, it fits), or joins the waiting
    /// line; either way nothing is sent until the next input or
    /// [`handle_timeout`](Self::handle_timeout), so a run of appends costs
    /// one pass over the partitions. With `report_acceptance`, acceptance
    /// is reported with [`Event::Accepted`] (only a caller that waits for
    /// it asks: an event per record would cost memory for nothing).
    ///
    /// The record is borrowed: it is encoded and left to the caller, which
    /// drops it where it was made (only a record that has to wait is
    /// copied, its payloads shared).
    ///
    /// `now` may be when the record was sent rather than when it is
    /// appended (its linger starts then); time does not go back for the
    /// engine, though: an instant before the engine's last input counts as
    /// that input's.
    pub(crate) fn append_deferred(
        &mut self,
        now: Instant,
        timestamp_now: i64,
        record: &Record,
        token: u64,
        deadline: Option<Instant>,
        report_acceptance: bool,
    ) {
        let now = self.now.map_or(now, |last| last.max(now));
        self.now = Some(now);
        self.last_token = self.last_token.max(token);
        let reserved = record.estimated_size();
        if let Some(error) = &self.fatal_error {
            let error = error.clone_shallow().with_possibly_persisted(false);
            self.fail_record(token, reserved, error);
            return;
        }
        if let Some(Err(error)) = self.txn.as_ref().map(Transactions::check_send) {
            self.fail_record(token, reserved, error);
            return;
        }
        if let Err(error) = check_size(
            reserved,
            self.config.max_request_size,
            self.config.buffer_memory,
        ) {
            self.fail_record(token, reserved, error);
            return;
        }
        if let Some(error) = self.illegal_topic(&record.topic) {
            self.fail_record(token, reserved, error);
            return;
        }
        let timestamp = record.timestamp.unwrap_or(timestamp_now);
        let incoming = Incoming {
            token,
            timestamp,
            reserved,
        };
        // Nothing waits before it and it fits: taken now if its topic is
        // known (the usual case, found with one lookup), as the next pass
        // would take it first, without a stop in the waiting line (a copy,
        // and memory, per record).
        if self.waiting.is_empty() && self.has_room_for(reserved) {
            self.held_records += 1;
            if self.accept(now, record, incoming, report_acceptance) {
                return;
            }
            self.held_records -= 1;
        }
        // It waits: for its topic's metadata, or behind the others.
        if !self.knows_topic(&record.topic)
            && let Some(error) = &self.unreachable
        {
            let error = error.clone_shallow().with_possibly_persisted(false);
            self.fail_record(token, reserved, error);
            return;
        }
        self.held_records += 1;
        let deadline = deadline.unwrap_or_else(|| deadline_after(now, self.config.max_block));
        self.waiting.push_back(Waiting {
            token,
            record: record.clone(),
            timestamp,
            reserved,
            deadline,
            report_acceptance,
        });
    }

    /// A Metadata request finished.
    pub(crate) fn handle_metadata_response(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<ClusterMetadata, Error>,
    ) {
        // Leaders may have moved, and topics become known or unknown.
        self.walk_all = true;
        if self.metadata.is_in_flight(id) {
            match result {
                Ok(metadata) => {
                    self.unreachable = None;
                    self.metadata.apply(now, &metadata);
                    self.fail_unusable_topics(&metadata);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata refresh failed");
                    self.metadata.fail(now);
                }
            }
        }
        self.pump(now);
    }

    /// Test hook: asks for a metadata refresh now.
    #[cfg(test)]
    pub(crate) fn request_metadata(&mut self, now: Instant) {
        self.metadata.request_refresh();
        self.pump(now);
    }

    pub(super) fn poll_metadata(&mut self, now: Instant) {
        let id = self.next_id;
        if let Some((topics, node)) = self.metadata.poll_request(now, id) {
            self.next_id += 1;
            // Missing topics are created where the broker allows it, as
            // the Java producer's `allow.auto.create.topics` (default
            // true) asks.
            self.transmits.push_back(Transmit::Metadata {
                id,
                node,
                topics,
                allow_auto_topic_creation: true,
            });
        }
    }

    /// The network layer found every bootstrap server unreachable outright
    /// at start-up (refused or not resolved, twice): records waiting for
    /// their topic's metadata fail now with `error` instead of waiting out
    /// `max_block`, and so do later ones for topics not known, until a
    /// metadata answer arrives (the cluster may still come up: metadata
    /// requests go on as before).
    pub(crate) fn cluster_unreachable(&mut self, now: Instant, error: Error) {
        self.now = Some(now);
        self.walk_all = true;
        let mut i = 0;
        while i < self.waiting.len() {
            if self.knows_topic(&self.waiting[i].record.topic.clone()) {
                i += 1;
                continue;
            }
            if let Some(w) = self.waiting.remove(i) {
                self.held_records -= 1;
                let err = error.clone_shallow().with_possibly_persisted(false);
                self.fail_record(w.token, w.reserved, err);
            }
        }
        self.unreachable = Some(error);
    }

    /// Fails waiting records whose topic can never be produced to.
    pub(super) fn fail_unusable_topics(&mut self, metadata: &ClusterMetadata) {
        let mut i = 0;
        while i < self.waiting.len() {
            let code = metadata
                .topic(&self.waiting[i].record.topic)
                .and_then(|t| t.error)
                .filter(|c| !c.is_retriable());
            match code {
                Some(code) => {
                    if let Some(w) = self.waiting.remove(i) {
                        self.held_records -= 1;
                        let err = Error::broker(code, format_args!("topic `{}`", w.record.topic));
                        self.fail_record(w.token, w.reserved, err);
                    }
                }
                None => i += 1,
            }
        }
    }

    /// Whether `reserved` more bytes fit in `buffer_memory`, when the
    /// engine is the one that enforces it.
    fn has_room_for(&self, reserved: usize) -> bool {
        match self.config.buffer_owner {
            BufferOwner::Engine => self.buffer_used + reserved <= self.config.buffer_memory,
            BufferOwner::Caller => true,
        }
    }

    pub(super) fn process_waiting(&mut self, now: Instant) {
        self.buffer_blocked = false;
        let mut i = 0;
        while i < self.waiting.len() {
            let topic = self.waiting[i].record.topic.clone();
            let known = self.knows_topic(&topic);
            let w = &self.waiting[i];
            let fits = self.has_room_for(w.reserved);
            if known && fits && !self.buffer_blocked {
                if let Some(w) = self.waiting.remove(i) {
                    let incoming = Incoming {
                        token: w.token,
                        timestamp: w.timestamp,
                        reserved: w.reserved,
                    };
                    // Its topic is known: taken.
                    let _ = self.accept(now, &w.record, incoming, w.report_acceptance);
                }
                continue;
            }
            let expired = now >= w.deadline;
            // A waiter about to give up does not hold back those behind it.
            if known && !fits && !expired {
                self.buffer_blocked = true;
            }
            if expired {
                if let Some(w) = self.waiting.remove(i) {
                    self.held_records -= 1;
                    let err = if !known {
                        Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "topic `{}` not present in metadata within max_block",
                                w.record.topic
                            ),
                        )
                    } else {
                        Error::new(
                            ErrorKind::BufferExhausted,
                            format!(
                                "no buffer space for {} bytes (buffer_memory {}, {} in use)",
                                w.reserved, self.config.buffer_memory, self.buffer_used
                            ),
                        )
                    };
                    self.fail_record(w.token, w.reserved, err);
                }
                continue;
            }
            i += 1;
        }
    }

    /// Where `topic` is in the metadata cache and the queues, when the
    /// cache holds it (as the hot topics remember it, or found by name and
    /// then remembered; a topic not found registers interest). The
    /// engine's name for a topic is the cache's own: the queues are keyed
    /// by it, and the batches and delivery reports share it rather than
    /// the caller's, whose count other threads keep changing. A record for
    /// a topic remembered touches no reference count and searches nothing
    /// by name.
    #[inline]
    fn remember_topic(&mut self, topic: &Topic) -> Option<TopicSlots> {
        match self.hot_topics.get(topic) {
            Some(slots) => Some(slots),
            None => self.find_topic(topic),
        }
    }

    /// [`remember_topic`](Self::remember_topic) for a topic not
    /// remembered: found by name.
    #[cold]
    fn find_topic(&mut self, topic: &Topic) -> Option<TopicSlots> {
        self.metadata.add_interest(topic);
        let (key, metadata) = self.metadata.key(topic)?;
        let queues = self.topics.find(key).map(|(_, slot, _)| slot);
        let slots = TopicSlots { metadata, queues };
        self.hot_topics.insert(topic, key, slots);
        Some(slots)
    }

    /// Why `topic` can never be produced to, when its name breaks Kafka's
    /// rules: such a record fails at once rather than wait for metadata.
    /// Only a name the engine does not hold yet is checked.
    pub(super) fn illegal_topic(&self, topic: &Topic) -> Option<Error> {
        if self.hot_topics.knows(topic) || self.metadata.key(topic).is_some() {
            return None;
        }
        crate::topic_name::validate(topic).err()
    }

    /// Whether `topic`'s partitions are known, so that a record for it can
    /// be accepted (see [`remember_topic`](Self::remember_topic)).
    pub(super) fn knows_topic(&mut self, topic: &Topic) -> bool {
        self.remember_topic(topic)
            .is_some_and(|slots| self.metadata.topic_at(slots.metadata).is_some())
    }

    /// Takes `record` into its partition's batch (or fails it, for a
    /// partition the topic does not have) and says so; `false`, with
    /// nothing changed but the topic remembered (as
    /// [`knows_topic`](Self::knows_topic) does), when its topic's
    /// partitions are not known. The caller counts the record as held
    /// before. The topic's metadata and queues are found by the slots the
    /// hot topics remember.
    pub(super) fn accept(
        &mut self,
        now: Instant,
        record: &Record,
        incoming: Incoming,
        report_acceptance: bool,
    ) -> bool {
        let Incoming {
            token, reserved, ..
        } = incoming;
        let Some(slots) = self.remember_topic(&record.topic) else {
            return false;
        };
        let Some((key, info)) = self.metadata.topic_at(slots.metadata) else {
            return false;
        };
        let count = info.partitions.len();
        let in_flight_limit = self.partition_in_flight_limit();
        let tq = match slots.queues.and_then(|slot| self.topics.at_mut(slot)) {
            Some(tq) => tq,
            None => {
                // The topic's first record (or the first with this shared
                // name since another made the queues): its queues are found
                // or made, remembered, and it is taken as any other.
                let queues = self
                    .topics
                    .slot_or_insert_with(key, || TopicQueues::new(slots.metadata));
                let slots = TopicSlots {
                    queues: Some(queues),
                    ..slots
                };
                self.hot_topics.insert(&record.topic, key, slots);
                return self.accept(now, record, incoming, report_acceptance);
            }
        };
        if tq.partitions.len() < count {
            tq.partitions.resize_with(count, PartitionQueue::default);
            tq.held.resize(count, 0);
            tq.leader_latency_us.resize(count, 0);
            tq.keyless_bytes.resize(count, 0);
        }
        let view = PartitionView::new(&record.topic, count as u32, &info.available)
            .with_queued_bytes(&tq.held)
            .with_leader_latency(&tq.leader_latency_us);
        let chosen = match record.partition {
            Some(p) => check_explicit(p, &view),
            None => self
                .partitioner
                .partition(record.key.as_deref(), record.value.as_deref(), &view)
                .and_then(|p| check_explicit(p, &view)),
        };
        let partition = match chosen {
            Ok(p) => p,
            Err(e) => {
                self.held_records -= 1;
                self.fail_record(
                    token,
                    reserved,
                    Error::new(
                        ErrorKind::InvalidPartition,
                        format!("topic `{}`: {e}", record.topic),
                    ),
                );
                return true;
            }
        };
        let index = partition as usize;
        let pq = &mut tq.partitions[index];
        if pq.is_empty() {
            tq.active.insert(index);
            // The batch this record opens is the partition's oldest.
            self.deadlines.oldest_batch = earliest(self.deadlines.oldest_batch, Some(now));
        }
        let keyless = record.partition.is_none() && record.key.is_none();
        let at_batch_boundary = !pq.has_open_batch();
        let opened_before = pq.open_created();
        let unsent_before = pq.unsent_bytes();
        let mut lost = None;
        match pq.append(
            self.batch_config,
            now,
            record,
            incoming,
            &mut self.spare_buffers,
            &mut lost,
        ) {
            Ok(sealed_full) => {
                // A batch opened here lingers from now on.
                self.deadlines.send = earliest_after(
                    now,
                    self.deadlines.send,
                    pq.ready_at(self.config.linger, in_flight_limit),
                );
                if let Some(created) = pq.open_created()
                    && opened_before != Some(created)
                {
                    tq.ready.opened(created + self.config.linger, index);
                }
                // Full, or flushed already (a record that waited for its
                // topic or for room can be older than a flush): it may go.
                if sealed_full || token <= self.flush_mark {
                    tq.ready.mark(index);
                }
                if let Some(leader) = info.leader(partition) {
                    let unsent = pq.unsent_bytes();
                    self.backlog.appended(
                        leader,
                        unsent.saturating_sub(unsent_before),
                        unsent_before == 0 && unsent > 0,
                    );
                }
                if let Some(txn) = self.txn.as_mut() {
                    txn.record_partition(&record.topic, partition);
                }
                tq.held[index] += reserved as u64;
                self.buffer_used += reserved;
                if report_acceptance {
                    self.events.push_back(Event::Accepted { token });
                }
                if keyless {
                    let produced = &mut tq.keyless_bytes[index];
                    *produced += reserved as u64;
                    let batch_size = self.batch_config.max_batch_bytes as u64;
                    if sticky_switch_due(*produced, batch_size, at_batch_boundary || sealed_full) {
                        *produced = 0;
                        let view = PartitionView::new(&record.topic, count as u32, &info.available)
                            .with_queued_bytes(&tq.held)
                            .with_leader_latency(&tq.leader_latency_us);
                        self.partitioner.on_new_batch(partition, &view);
                    }
                }
                if let Some((records, e)) = lost {
                    // The count of unsent records is redone by a walk.
                    self.walk_all = true;
                    let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
                    self.release(&record.topic, partition, bytes);
                    self.fail_records(&record.topic, partition, &records, &records_error(e));
                }
            }
            Err(e) => {
                self.held_records -= 1;
                self.fail_record(token, reserved, records_error(e));
            }
        }
        true
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let Some(cutoff) = now.checked_sub(self.config.delivery_timeout) else {
            return;
        };
        // Nothing was created early enough to expire: no pass needed.
        if self.deadlines.oldest_batch.is_none_or(|c| c > cutoff) {
            return;
        }
        let mut expired: Vec<(Topic, i32, Vec<PendingRecord>, bool)> = Vec::new();
        let mut holes: Vec<Stamp> = Vec::new();
        for (topic, _, tq) in self.topics.iter_mut() {
            for p in tq.active.iter() {
                let Some(pq) = tq.partitions.get_mut(p) else {
                    continue;
                };
                while let Some((records, maybe, stamp)) = pq.expire_front(cutoff) {
                    holes.extend(stamp);
                    expired.push((topic.clone(), p as i32, records, maybe));
                }
            }
        }
        // A queued retry that expires leaves its sequences unused (scenario
        // 14 holds only for batches never stamped): a new epoch renumbers.
        for stamp in holes {
            if Some(identity_of(stamp)) == self.stamped_identity {
                self.request_bump(Some(identity_of(stamp)), BumpReason::SequenceHole);
            }
        }
        for request in self.in_flight.values_mut() {
            for b in request.batches.iter_mut().filter(|b| !b.resolved) {
                if b.batch.created <= cutoff {
                    b.resolved = true;
                    expired.push((b.topic.clone(), b.partition, b.batch.records.to_vec(), true));
                }
            }
        }
        self.deadlines.oldest_batch = self.oldest_batch_by_scan();
        if !expired.is_empty() {
            self.walk_all = true;
        }
        for (topic, partition, records, maybe) in expired {
            // In-flight batches keep their buffer bytes until the response.
            if !maybe || !self.is_in_flight_batch(&topic, partition, &records) {
                let bytes: usize = records.iter().map(PendingRecord::reserved).sum();
                self.release(&topic, partition, bytes);
            }
            let err = Error::new(
                ErrorKind::DeliveryTimeout,
                format!(
                    "{} record(s) for {topic}-{partition} expired: not acknowledged within delivery_timeout ({:?})",
                    records.len(),
                    self.config.delivery_timeout
                ),
            )
            .with_possibly_persisted(maybe);
            self.fail_records(&topic, partition, &records, &err);
        }
    }
}

/// Refuses a record of about `reserved` bytes that can never be sent: it
/// exceeds `max_request_size` (with a batch header) or `buffer_memory`.
pub(crate) fn check_size(
    reserved: usize,
    max_request_size: usize,
    buffer_memory: usize,
) -> Result<(), Error> {
    let limit = if reserved.saturating_add(BATCH_HEADER_LEN) > max_request_size {
        ("max_request_size", max_request_size)
    } else if reserved > buffer_memory {
        ("buffer_memory", buffer_memory)
    } else {
        return Ok(());
    };
    Err(Error::new(
        ErrorKind::RecordTooLarge,
        format!(
            "a record of about {reserved} bytes exceeds {} ({})",
            limit.0, limit.1
        ),
    ))
}
