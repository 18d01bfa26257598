//! The record accumulator: one queue of batches per partition, built with
//! [`BatchBuilder`] as records arrive, and the rules for when a partition's
//! next batch is ready to go.
//!
//! A batch's life (one partition). Without idempotence at most one batch of
//! a partition is in flight, so order holds through retries. With it, up to
//! `max_in_flight` are, each stamped with its sequence numbers; a retried
//! batch goes back to its place by creation order, and a partition whose
//! head is a retry sends one batch at a time until it is resolved.
//!
//! ```text
//!   append ──► Open (in the partition's BatchBuilder)
//!                │ full, or linger passed / flush / close / buffer waiters
//!                ▼
//!              Sealed (queue, FIFO) ◄──────────────┐
//!                │ drained into a Produce request  │ retriable error:
//!                ▼                                 │ back to the head,
//!              InFlight ───────────────────────────┘ after a backoff
//!                │ acknowledged          │ fatal error / delivery timeout
//!                ▼                       ▼
//!              Delivered               Failed (not persisted, or
//!                                              possibly persisted once sent)
//! ```
//!
//! Full batches are sealed at once (and the partitioner told, KIP-794);
//! a part-full batch is sealed only when it is drained.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::idempotence::PartitionSequences;
use super::in_flight_orders::InFlightOrders;
use super::stats::PartitionCounts;
use crate::record::Record;
use crate::record_batch::{
    AppendOutcome, BatchBuilder, BatchConfig, BatchReader, BufferPool, Crc, ReadOptions,
    RecordsError, SealedBatch,
};

/// A record accepted into a batch, waiting for its outcome: 16 bytes,
/// kept for every buffered record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingRecord {
    /// The caller's token for delivery reports.
    pub(crate) token: u64,
    /// The record's timestamp as encoded, less its batch's base timestamp
    /// (a record further than an `i32` of milliseconds, about 24 days,
    /// from the batch's first starts a batch of its own).
    timestamp_delta: i32,
    /// Buffer bytes reserved for it (no record is larger than
    /// `max_request_size`, an `i32`).
    reserved: u32,
}

impl PendingRecord {
    /// Buffer bytes reserved for it.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved as usize
    }

    /// Its timestamp, in a batch whose base timestamp is `base`.
    pub(crate) fn timestamp(&self, base: i64) -> i64 {
        base.saturating_add(i64::from(self.timestamp_delta))
    }
}

/// The records of a batch, in offset order, open or sealed. Over thousands
/// of partitions most batches hold a single record: kept inline, it needs
/// no list of its own (an allocation, a free once the batch is delivered,
/// often on the delivery thread, and a cache miss at each end). An empty
/// `Many` without room is the empty list.
#[derive(Debug, Clone)]
pub(crate) enum BatchRecords {
    One(PendingRecord),
    Many(Vec<PendingRecord>),
}

impl Default for BatchRecords {
    fn default() -> Self {
        BatchRecords::Many(Vec::new())
    }
}

impl BatchRecords {
    /// Adds a record: the first goes inline, unless a list with room
    /// waits for it.
    fn push(&mut self, record: PendingRecord) {
        match self {
            BatchRecords::Many(list) if list.capacity() == 0 => *self = BatchRecords::One(record),
            BatchRecords::Many(list) => list.push(record),
            BatchRecords::One(first) => {
                let mut list = Vec::with_capacity(SMALL_OPEN);
                list.push(*first);
                list.push(record);
                *self = BatchRecords::Many(list);
            }
        }
    }

    /// Takes the records of an open batch to seal it, leaving an empty list
    /// for the next: with room for as many as these when there were several
    /// (the next batch likely holds as many, and its list need not grow
    /// and copy from empty), inline room otherwise.
    fn take_for_seal(&mut self) -> BatchRecords {
        let next = match &**self {
            [] | [_] => BatchRecords::default(),
            several => BatchRecords::Many(Vec::with_capacity(several.len())),
        };
        match std::mem::replace(self, next) {
            BatchRecords::Many(list) if list.len() == 1 => BatchRecords::One(list[0]),
            taken => taken,
        }
    }

    /// The records of `list`, inline if there is one.
    pub(crate) fn from_slice(list: &[PendingRecord]) -> BatchRecords {
        match list {
            [one] => BatchRecords::One(*one),
            _ => BatchRecords::Many(list.to_vec()),
        }
    }

    /// The records as a list of their own.
    pub(crate) fn into_vec(self) -> Vec<PendingRecord> {
        match self {
            BatchRecords::One(one) => vec![one],
            BatchRecords::Many(list) => list,
        }
    }
}

impl std::ops::Deref for BatchRecords {
    type Target = [PendingRecord];

    fn deref(&self) -> &[PendingRecord] {
        match self {
            BatchRecords::One(one) => std::slice::from_ref(one),
            BatchRecords::Many(list) => list,
        }
    }
}

impl std::ops::DerefMut for BatchRecords {
    fn deref_mut(&mut self) -> &mut [PendingRecord] {
        match self {
            BatchRecords::One(one) => std::slice::from_mut(one),
            BatchRecords::Many(list) => list,
        }
    }
}

/// A record as the engine hands it to its partition's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming {
    /// The caller's token for delivery reports.
    pub(crate) token: u64,
    /// Its timestamp (ms since the Unix epoch).
    pub(crate) timestamp: i64,
    /// Buffer bytes reserved for it.
    pub(crate) reserved: usize,
}

/// An expired unsent batch: its records, whether an earlier attempt may
/// have been persisted, and the stamp of that attempt.
pub(crate) type Expired = (Vec<PendingRecord>, bool, Option<Stamp>);

/// Records whose batch could not be sealed, with the reason.
pub(crate) type Unsealable = (Vec<PendingRecord>, RecordsError);

/// The idempotence stamp a batch was last sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) base_sequence: i32,
}

/// A sealed batch with the records it carries.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) sealed: SealedBatch,
    pub(crate) records: BatchRecords,
    /// Buffer bytes reserved for its records, summed once at sealing: the
    /// batch is taken to send and acknowledged long after its records
    /// were written down, and over thousands of partitions its list of
    /// records has left the cache by then.
    reserved: u64,
    /// Creation order within its partition: retries go back to this place.
    pub(crate) order: u64,
    /// Producer id, epoch and base sequence of the last attempt (idempotence).
    pub(crate) stamp: Option<Stamp>,
    /// When its first record was appended: the delivery timeout runs from here.
    pub(crate) created: Instant,
    /// Attempts sent so far.
    pub(crate) attempts: u32,
    /// Whether an earlier attempt may have been written to the log.
    pub(crate) maybe_persisted: bool,
    /// Not to be sent again before this instant (retry backoff).
    pub(crate) retry_at: Option<Instant>,
    /// Its size as last written, when the network layer compressed it on
    /// the way out (the stats count bytes on the wire).
    pub(crate) wire_len: Option<usize>,
}

impl Batch {
    /// Buffer bytes reserved for its records.
    pub(crate) fn reserved(&self) -> usize {
        usize::try_from(self.reserved).unwrap_or(usize::MAX)
    }
}

impl Batch {
    /// Splits a batch the broker refused as too large (MESSAGE_TOO_LARGE) in
    /// two halves by record count, re-encoded from its own bytes, so the
    /// records need not be kept elsewhere. Each half keeps the batch's place
    /// and delivery clock; with a stamp, the halves take the same sequence
    /// range (the first half from the base, the second after it), so later
    /// batches keep theirs. `None` for a single record or unreadable bytes.
    pub(crate) fn split(&self, config: BatchConfig) -> Option<(Batch, Batch)> {
        let n = self.records.len();
        if n < 2 {
            return None;
        }
        let options = ReadOptions {
            max_decompressed_bytes: config.hard_max_bytes.saturating_mul(4),
            verify_crc: false,
        };
        let batch = BatchReader::with_options(self.sealed.bytes(), options)
            .next()?
            .ok()?;
        let mut scratch = Vec::new();
        let records = batch.records(&mut scratch).ok()?;
        let first_half = n / 2;
        // Both halves keep the batch's base timestamp, so the records'
        // timestamp deltas hold as they are.
        let base = self.sealed.base_timestamp();
        let mut halves = [
            BatchBuilder::new(config, base),
            BatchBuilder::new(config, base),
        ];
        for (i, record) in records.enumerate() {
            let record = record.ok()?;
            let half = usize::from(i >= first_half);
            let key_strs: Vec<(String, Option<&[u8]>)> = record
                .headers()
                .map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value))
                .collect();
            let headers: Vec<(&str, Option<&[u8]>)> =
                key_strs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            match halves[half]
                .try_append(record.timestamp(), record.key(), record.value(), &headers)
                .ok()?
            {
                AppendOutcome::Appended => {}
                // Half of a batch that fitted always fits.
                AppendOutcome::Full => return None,
            }
        }
        let [mut a, mut b] = halves;
        let (a, b) = (a.seal().ok()?, b.seal().ok()?);
        if a.record_count() as usize != first_half || b.record_count() as usize != n - first_half {
            return None;
        }
        let half = |sealed: SealedBatch, records: &[PendingRecord], stamp: Option<Stamp>| Batch {
            sealed,
            records: BatchRecords::from_slice(records),
            reserved: reserved_by(records),
            order: self.order,
            stamp,
            created: self.created,
            attempts: self.attempts,
            maybe_persisted: false,
            retry_at: None,
            wire_len: None,
        };
        let second_stamp = self.stamp.map(|s| Stamp {
            base_sequence: super::idempotence::add_sequence(s.base_sequence, first_half as i32),
            ..s
        });
        Some((
            half(a, &self.records[..first_half], self.stamp),
            half(b, &self.records[first_half..], second_stamp),
        ))
    }
}

/// Buffer bytes reserved for `records`.
fn reserved_by(records: &[PendingRecord]) -> u64 {
    records.iter().map(|r| u64::from(r.reserved)).sum()
}

/// Room of the list an open batch's records move to when a second joins
/// the first.
const SMALL_OPEN: usize = 4;

/// Headers per record viewed from the stack when appending (more take an
/// allocation).
const FEW_HEADERS: usize = 8;

/// One partition's queue.
#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    builder: Option<BatchBuilder>,
    /// The open batch's records (the first inline).
    open: BatchRecords,
    open_created: Option<Instant>,
    /// Sealed batches, oldest first.
    pub(crate) queue: VecDeque<Batch>,
    /// The `order` of each batch in flight, with a count per order.
    in_flight_orders: InFlightOrders,
    /// The `order` of the next batch sealed.
    next_order: u64,
    /// Buffer bytes of the records not sent (the open batch and the queue).
    unsent_bytes: u64,
    /// Idempotent producer sequences of this partition.
    pub(crate) sequences: PartitionSequences,
    /// The partition's counters for the producer's statistics (counted
    /// through the engine's `StatsBook`).
    pub(crate) counts: PartitionCounts,
}

impl PartitionQueue {
    /// Whether nothing waits to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.open.is_empty()
    }

    /// Whether records wait in a batch that is still open (not sealed).
    pub(crate) fn has_open_batch(&self) -> bool {
        !self.open.is_empty()
    }

    /// When the open batch was created (its linger starts then).
    pub(crate) fn open_created(&self) -> Option<Instant> {
        self.open_created
    }

    /// Whether sealed batches wait (the head one may wait out a backoff).
    pub(crate) fn has_sealed(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Buffer bytes of the records waiting to be sent (not in flight).
    pub(crate) fn unsent_bytes(&self) -> u64 {
        self.unsent_bytes
    }

    /// Records that reserved `bytes` leave the unsent ones (sent, failed
    /// or expired).
    fn unsent_less(&mut self, bytes: u64) {
        self.unsent_bytes = self.unsent_bytes.saturating_sub(bytes);
    }

    /// Appends a record. Returns whether a full batch was sealed to make
    /// room (a batch boundary for the sticky partitioner); records that had
    /// to be failed because their batch could not be sealed go to `lost`
    /// (a rare outcome, kept out of the returned value, which the caller
    /// reads for every record).
    pub(crate) fn append(
        &mut self,
        config: BatchConfig,
        now: Instant,
        record: &Record,
        incoming: Incoming,
        pool: &mut BufferPool,
        lost: &mut Option<Unsealable>,
    ) -> Result<bool, RecordsError> {
        let Incoming {
            token,
            timestamp,
            reserved,
        } = incoming;
        let reserved = u32::try_from(reserved).unwrap_or(u32::MAX);
        let builder = self
            .builder
            .get_or_insert_with(|| BatchBuilder::new(config, timestamp));
        if builder.is_empty() {
            builder.reset_from(timestamp, Some(pool));
        }
        // The builder takes the headers as views; a record's few are
        // gathered on the stack, not in an allocation per record.
        let mut few = [("", None); FEW_HEADERS];
        let many: Vec<(&str, Option<&[u8]>)>;
        let headers: &[(&str, Option<&[u8]>)] = if record.headers.len() <= FEW_HEADERS {
            for (view, h) in few.iter_mut().zip(&record.headers) {
                *view = (h.key.as_str(), h.value.as_deref());
            }
            &few[..record.headers.len()]
        } else {
            many = record
                .headers
                .iter()
                .map(|h| (h.key.as_str(), h.value.as_deref()))
                .collect();
            &many
        };
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        // A timestamp too far from the open batch's first one for a delta
        // (in the format, or in the record's entry here): it starts a batch
        // of its own, where the delta is 0.
        let delta = timestamp
            .checked_sub(builder.base_timestamp())
            .and_then(|d| i32::try_from(d).ok());
        // With a delta, the builder's own (an `i64`) cannot overflow.
        let outcome = match delta {
            None => AppendOutcome::Full,
            Some(_) => builder.try_append(timestamp, key, value, headers)?,
        };
        match outcome {
            AppendOutcome::Appended => {
                self.open.push(PendingRecord {
                    token,
                    timestamp_delta: delta.unwrap_or(0),
                    reserved,
                });
                self.unsent_bytes += u64::from(reserved);
                self.open_created.get_or_insert(now);
                Ok(false)
            }
            AppendOutcome::Full => {
                match self.seal_open(now, Crc::Now) {
                    Ok(Some(batch)) => self.queue.push_back(batch),
                    Ok(None) => {}
                    Err(unsealable) => {
                        self.unsent_less(reserved_by(&unsealable.0));
                        *lost = Some(unsealable);
                    }
                }
                let builder = self
                    .builder
                    .get_or_insert_with(|| BatchBuilder::new(config, timestamp));
                builder.reset_from(timestamp, Some(pool));
                // A fresh batch takes any record up to the hard limit.
                match builder.try_append(timestamp, key, value, headers)? {
                    AppendOutcome::Appended | AppendOutcome::Full => {}
                }
                self.open.push(PendingRecord {
                    token,
                    timestamp_delta: 0,
                    reserved,
                });
                self.unsent_bytes += u64::from(reserved);
                self.open_created = Some(now);
                Ok(true)
            }
        }
    }

    /// Seals the open batch, if any. On a codec failure the open records are
    /// returned for failing and the builder is emptied.
    fn seal_open(&mut self, now: Instant, crc: Crc) -> Result<Option<Batch>, Unsealable> {
        let Some(builder) = self.builder.as_mut() else {
            return Ok(None);
        };
        if self.open.is_empty() {
            return Ok(None);
        }
        let created = self.open_created.take();
        let records = self.open.take_for_seal();
        let order = self.next_order;
        match builder.seal_with(crc) {
            Ok(sealed) => Ok(Some(Batch {
                sealed,
                reserved: reserved_by(&records),
                records,
                order: {
                    self.next_order += 1;
                    order
                },
                stamp: None,
                created: created.unwrap_or(now),
                attempts: 0,
                maybe_persisted: false,
                retry_at: None,
                wire_len: None,
            })),
            Err(e) => {
                let base = builder.base_timestamp();
                builder.reset(base);
                Err((records.into_vec(), e))
            }
        }
    }

    /// Puts a batch back to be sent again, at its place by creation order
    /// (responses can come back out of order across connections).
    pub(crate) fn requeue(&mut self, batch: Batch) {
        self.unsent_bytes += batch.reserved;
        let at = self
            .queue
            .iter()
            .position(|b| b.order > batch.order)
            .unwrap_or(self.queue.len());
        self.queue.insert(at, batch);
    }

    /// Batches of this partition in flight.
    fn in_flight(&self) -> usize {
        self.in_flight_orders.count()
    }

    /// A batch of this partition went out.
    pub(crate) fn sent(&mut self, order: u64) {
        self.in_flight_orders.sent(order);
    }

    /// A batch of this partition is no longer in flight.
    pub(crate) fn settled(&mut self, order: u64) {
        self.in_flight_orders.settled(order);
    }

    /// Whether the partition may have another batch in flight: fewer than
    /// `max_in_flight` are, a retry at the head goes out alone, and the next
    /// batch is within `max_in_flight` batches of the oldest one still in
    /// flight. The last rule keeps that oldest batch inside the broker's
    /// window of recent batches (five) even when later ones complete first,
    /// so its retry is recognised as a duplicate if it was written.
    ///
    /// Until the broker has acknowledged a first batch of the partition
    /// under the producer's current identity, one batch goes at a time: a
    /// broker since Kafka 2.5 accepts any sequence from a producer it holds
    /// no state for, so a second batch overtaking a failed first one would
    /// be written, leaving a gap the first can never fill.
    fn may_send(&self, max_in_flight: usize) -> bool {
        let max_in_flight = if self.sequences.has_acked() {
            max_in_flight
        } else {
            1
        };
        match self.queue.front() {
            Some(front) if front.attempts > 0 => self.in_flight_orders.is_empty(),
            next => {
                let next_order = next.map_or(self.next_order, |b| b.order);
                self.in_flight() < max_in_flight
                    && self.in_flight_orders.oldest().is_none_or(|oldest| {
                        next_order.saturating_sub(oldest) < max_in_flight as u64
                    })
            }
        }
    }

    /// Whether the partition's next batch may be sent at `now`, with at
    /// most `max_in_flight` batches of the partition in flight: `Ok` if so,
    /// and otherwise, in the same look, what [`ready_at`](Self::ready_at)
    /// says (the drain pass asks both of every partition it walks). A
    /// linger ending by `soon` (at or after `now`) counts as ended; a
    /// retry's backoff must have ended by `now`.
    pub(crate) fn readiness(
        &self,
        now: Instant,
        soon: Instant,
        linger: Duration,
        flush_mark: u64,
        hurry: bool,
        max_in_flight: usize,
    ) -> Result<(), Option<Instant>> {
        if !self.may_send(max_in_flight) {
            return Err(None);
        }
        if let Some(front) = self.queue.front() {
            return match front.retry_at {
                Some(t) if now < t => Err(Some(t)),
                _ => Ok(()),
            };
        }
        let ready_at = self.open_created.map(|c| c + linger);
        match (self.open.first(), ready_at) {
            (Some(first), Some(at)) if hurry || first.token <= flush_mark || soon >= at => Ok(()),
            _ => Err(ready_at),
        }
    }

    /// When the partition's next batch becomes ready by time alone.
    pub(crate) fn ready_at(&self, linger: Duration, max_in_flight: usize) -> Option<Instant> {
        if !self.may_send(max_in_flight) {
            return None;
        }
        if let Some(front) = self.queue.front() {
            return front.retry_at;
        }
        self.open_created.map(|c| c + linger)
    }

    /// When the oldest unsent batch was created (its delivery clock).
    pub(crate) fn oldest_created(&self) -> Option<Instant> {
        self.queue
            .front()
            .map(|b| b.created)
            .or(self.open_created.filter(|_| !self.open.is_empty()))
    }

    /// Takes the next batch to send, sealing the open one if it is next.
    /// With [`Crc::AtStamp`] the caller stamps the batch it gets before
    /// sending it (a batch sealed before, when it filled, has its CRC).
    pub(crate) fn take_next(
        &mut self,
        now: Instant,
        crc: Crc,
    ) -> Result<Option<Batch>, Unsealable> {
        let taken = match self.queue.pop_front() {
            Some(batch) => Ok(Some(batch)),
            None => self.seal_open(now, crc),
        };
        match &taken {
            Ok(Some(batch)) => self.unsent_less(batch.reserved),
            Ok(None) => {}
            Err((lost, _)) => self.unsent_less(reserved_by(lost)),
        }
        taken
    }

    /// Size in bytes of the next batch (the open one counted uncompressed).
    pub(crate) fn next_size(&self) -> usize {
        match self.queue.front() {
            Some(b) => b.sealed.len(),
            None => self
                .builder
                .as_ref()
                .map_or(0, BatchBuilder::estimated_size),
        }
    }

    /// Removes the oldest unsent batch's records if it was created at or
    /// before `cutoff`.
    pub(crate) fn expire_front(&mut self, cutoff: Instant) -> Option<Expired> {
        if let Some(front) = self.queue.front() {
            if front.created <= cutoff {
                let batch = self.queue.pop_front()?;
                self.unsent_less(batch.reserved);
                return Some((batch.records.into_vec(), batch.maybe_persisted, batch.stamp));
            }
            return None;
        }
        if self.open_created.is_some_and(|c| c <= cutoff) && !self.open.is_empty() {
            self.open_created = None;
            if let Some(b) = self.builder.as_mut() {
                let base = b.base_timestamp();
                b.reset(base);
            }
            let records = std::mem::take(&mut self.open).into_vec();
            self.unsent_less(reserved_by(&records));
            return Some((records, false, None));
        }
        None
    }

    /// Removes everything unsent: per batch, its records and whether it may
    /// have been persisted, oldest first.
    pub(crate) fn take_all(&mut self) -> Vec<(Vec<PendingRecord>, bool)> {
        self.unsent_bytes = 0;
        let mut out: Vec<(Vec<PendingRecord>, bool)> = self
            .queue
            .drain(..)
            .map(|b| (b.records.into_vec(), b.maybe_persisted))
            .collect();
        if !self.open.is_empty() {
            out.push((std::mem::take(&mut self.open).into_vec(), false));
            self.open_created = None;
            if let Some(b) = self.builder.as_mut() {
                let base = b.base_timestamp();
                b.reset(base);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Crc, Incoming, PartitionQueue};
    use crate::record::Record;
    use crate::record_batch::{BatchConfig, BufferPool};

    fn append(pq: &mut PartitionQueue, config: BatchConfig, now: Instant, token: u64) {
        let record = Record::new("t").value(vec![7u8; 100]);
        let incoming = Incoming {
            token,
            timestamp: 1_700_000_000_000,
            reserved: 150,
        };
        pq.append(
            config,
            now,
            &record,
            incoming,
            &mut BufferPool::default(),
            &mut None,
        )
        .unwrap();
    }

    /// The unsent bytes follow the records in and out: appended, sealed
    /// into the queue, taken to send, put back for a retry, expired.
    #[test]
    fn unsent_bytes_count_what_waits_to_be_sent() {
        let now = crate::clock::now();
        let config = BatchConfig {
            max_batch_bytes: 1000,
            ..BatchConfig::default()
        };
        let mut pq = PartitionQueue::default();
        for token in 0..12 {
            append(&mut pq, config, now, token);
        }
        assert_eq!(pq.unsent_bytes(), 12 * 150);
        assert!(!pq.queue.is_empty(), "a full batch was sealed");
        let first = pq.take_next(now, Crc::Now).unwrap().unwrap();
        let sent = first.reserved() as u64;
        assert_eq!(pq.unsent_bytes(), 12 * 150 - sent);
        pq.sent(first.order);
        pq.settled(first.order);
        pq.requeue(first);
        assert_eq!(pq.unsent_bytes(), 12 * 150);
        while let Some(batch) = pq.take_next(now, Crc::Now).unwrap() {
            drop(batch);
        }
        assert_eq!(pq.unsent_bytes(), 0);
        append(&mut pq, config, now, 12);
        assert_eq!(pq.unsent_bytes(), 150);
        assert!(pq.expire_front(now + Duration::from_secs(1)).is_some());
        assert_eq!(pq.unsent_bytes(), 0);
        append(&mut pq, config, now, 13);
        pq.take_all();
        assert_eq!(pq.unsent_bytes(), 0);
    }

    /// The drain pass's one look answers as `ready_at` does whenever the
    /// partition cannot send yet: lingering, held back by its flush mark,
    /// hurried, waiting out a retry's backoff, at its in-flight limit.
    #[test]
    fn readiness_agrees_with_ready_at() {
        let now = crate::clock::now();
        let linger = Duration::from_millis(5);
        let config = BatchConfig::default();
        let mut pq = PartitionQueue::default();
        assert_eq!(
            pq.readiness(now, now, linger, 0, false, 5),
            Err(None),
            "empty"
        );
        append(&mut pq, config, now, 7);
        let at = pq.ready_at(linger, 5);
        assert_eq!(at, Some(now + linger));
        assert_eq!(pq.readiness(now, now, linger, 0, false, 5), Err(at));
        assert_eq!(
            pq.readiness(now + linger, now + linger, linger, 0, false, 5),
            Ok(())
        );
        assert_eq!(
            pq.readiness(now, now, linger, 0, true, 5),
            Ok(()),
            "hurried"
        );
        assert_eq!(
            pq.readiness(now, now, linger, 7, false, 5),
            Ok(()),
            "flushed"
        );
        assert_eq!(
            pq.readiness(now, now + linger, linger, 0, false, 5),
            Ok(()),
            "its linger ends by `soon`"
        );
        let batch = pq.take_next(now, Crc::Now).unwrap().unwrap();
        pq.sent(batch.order);
        append(&mut pq, config, now, 8);
        // The first batch is in flight and nothing was acknowledged yet:
        // one at a time.
        assert_eq!(pq.ready_at(linger, 5), None);
        assert_eq!(
            pq.readiness(now + linger, now + linger, linger, 0, true, 5),
            Err(None)
        );
        pq.settled(batch.order);
        let mut retry = batch;
        retry.retry_at = Some(now + Duration::from_millis(100));
        pq.requeue(retry);
        let at = pq.ready_at(linger, 5);
        assert_eq!(at, Some(now + Duration::from_millis(100)));
        assert_eq!(
            pq.readiness(now + linger, now + linger, linger, 0, true, 5),
            Err(at)
        );
        let retry_at = now + Duration::from_millis(100);
        assert_eq!(
            pq.readiness(now, retry_at, linger, 0, true, 5),
            Err(at),
            "a backoff is waited out to `now`, not to `soon`"
        );
        assert_eq!(
            pq.readiness(
                now + Duration::from_millis(100),
                now + Duration::from_millis(100),
                linger,
                0,
                false,
                5
            ),
            Ok(())
        );
    }

    /// A batch of one record keeps it inline, open and sealed, with no
    /// list of its own; a batch of many takes its list, and the next
    /// starts with room for as many; a single record after them goes back
    /// to inline and the larger room is not kept.
    #[test]
    fn single_records_are_kept_inline_and_busy_lists_not_kept() {
        use super::BatchRecords;

        let now = crate::clock::now();
        let config = BatchConfig::default();
        let mut pq = PartitionQueue::default();
        append(&mut pq, config, now, 1);
        assert!(matches!(pq.open, BatchRecords::One(r) if r.token == 1));
        let one = pq.take_next(now, Crc::Now).unwrap().unwrap();
        assert!(matches!(one.records, BatchRecords::One(r) if r.token == 1));
        assert_eq!(one.reserved(), 150);
        assert!(matches!(&pq.open, BatchRecords::Many(l) if l.capacity() == 0));
        for token in 2..12 {
            append(&mut pq, config, now, token);
        }
        let many = pq.take_next(now, Crc::Now).unwrap().unwrap();
        let tokens: Vec<u64> = many.records.iter().map(|r| r.token).collect();
        assert_eq!(tokens, (2..12).collect::<Vec<_>>());
        assert!(matches!(many.records, BatchRecords::Many(_)));
        assert_eq!(many.reserved(), 10 * 150);
        assert!(matches!(&pq.open, BatchRecords::Many(l) if l.is_empty() && l.capacity() >= 10));
        append(&mut pq, config, now, 12);
        let single = pq.take_next(now, Crc::Now).unwrap().unwrap();
        assert!(matches!(single.records, BatchRecords::One(r) if r.token == 12));
        assert!(
            matches!(&pq.open, BatchRecords::Many(l) if l.capacity() == 0),
            "the busy list went with its batch"
        );
        assert_eq!(pq.unsent_bytes(), 0);
        // Two records leave inline for a list; either form reads as the
        // same list, and gives it up as one.
        append(&mut pq, config, now, 13);
        append(&mut pq, config, now, 14);
        assert_eq!(
            pq.open.iter().map(|r| r.token).collect::<Vec<_>>(),
            [13, 14]
        );
        assert_eq!(single.records.into_vec()[0].token, 12);
        assert_eq!(BatchRecords::from_slice(&many.records).into_vec().len(), 10);
    }

    /// Every partition of every topic written to has one of these, so a
    /// producer over 10,000 partitions holds 10,000 of them, and touches
    /// one for each record, mostly out of the cache: codec state and other
    /// large parts belong behind a box, allocated when used, and the rest
    /// stays within four and a half cache lines (the statistics counters
    /// live here, beside the sequences an acknowledgement reads with them).
    #[test]
    fn a_partitions_state_stays_small() {
        let size = std::mem::size_of::<PartitionQueue>();
        assert!(size <= 4 * 64 + 32, "PartitionQueue is {size} bytes");
    }
}
