//! Partition logs and record batch validation.
//!
//! `validate_batch` checks a produced record set the way a broker does before
//! appending it: exactly one v2 batch, consistent lengths, a correct CRC32C,
//! a record count and last offset delta that match the records, and a record
//! layout that parses to the last byte. The records are then decoded with
//! kafka-protocol's own [`RecordBatchDecoder`] and cross-checked against the
//! layout walk, so the fake cluster never trusts the encoder it is testing.
//!
//! `PartitionLog` keeps the appended batches (re-stamped with their assigned
//! base offset and leader epoch), the decoded records, and the idempotent
//! producer state used to detect duplicate and out-of-order batches.
//!
//! Producer state follows Kafka's `ProducerStateManager`: per producer id the
//! epoch and the last five batches are remembered. A batch is checked in this
//! order:
//!
//! 1. Same epoch and the exact sequence range of a remembered batch: a
//!    duplicate, answered with success and the original base offset.
//! 2. An epoch older than the producer's: `INVALID_PRODUCER_EPOCH`, at every
//!    Produce version, as Kafka answers it (`PRODUCER_FENCED`, added by
//!    KIP-588 in 2.7, is only ever an InitProducerId or transactional-API
//!    error).
//! 3. A newer epoch: accepted only at sequence 0, else
//!    `OUT_OF_ORDER_SEQUENCE_NUMBER`.
//! 4. The same epoch: accepted only at the sequence after the last batch's
//!    (after `i32::MAX` comes 0), else `OUT_OF_ORDER_SEQUENCE_NUMBER`; that
//!    covers gaps and retries of batches older than the five remembered.
//!
//! A producer the partition has no state for (never seen, expired, or removed
//! with its records) is treated as [`ProducerStateRules`] says.
//!
//! Transactions: a partition tracks the first offset of every open
//! transaction (for the last stable offset), the commit and abort
//! [markers](ControlMarker) the coordinator writes, and the aborted
//! transactions Fetch reports to read_committed consumers.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

/// Size of the fixed part of a v2 record batch, up to and including the record count.
const BATCH_HEADER_LEN: usize = 61;
/// Offset of the attributes field: everything from here on is covered by the CRC.
const CRC_START: usize = 21;
/// How many recent batches per producer are remembered for duplicate detection.
const PRODUCER_BATCH_CACHE: usize = 5;

/// How a partition treats producers it holds no state for, and whether
/// deleting records forgets producers. The two variants follow two
/// generations of Kafka brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProducerStateRules {
    /// Kafka 2.5 and later. Producer state outlives the producer's records
    /// (KAFKA-7190): deleting records never forgets a producer, only expiry
    /// does (`producer.id.expiration.ms`, or
    /// [`FakeCluster::expire_producers`](crate::FakeCluster::expire_producers)).
    /// A producer without state may write at any epoch and sequence
    /// (KIP-360), so such a broker never answers a Produce with
    /// `UNKNOWN_PRODUCER_ID`.
    #[default]
    Current,
    /// Kafka 0.11 to 2.3. A producer is forgotten once its last batch is below
    /// the log start offset, and a producer without state gets
    /// `UNKNOWN_PRODUCER_ID` for any batch not at sequence 0. (Kafka 2.4
    /// mixes the two: it keeps state like `Current` but answers unknown
    /// producers like `Legacy`.)
    Legacy,
}

/// The sequence `delta` records after `sequence`, wrapping from `i32::MAX`
/// to 0 as Kafka's `DefaultRecordBatch.incrementSequence` does.
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// One record as stored by the fake cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The offset assigned by the fake broker.
    pub offset: i64,
    /// The record timestamp (batch first timestamp plus the record delta).
    pub timestamp: i64,
    /// The record key.
    pub key: Option<Bytes>,
    /// The record value.
    pub value: Option<Bytes>,
    /// The record headers, in wire order (duplicate keys preserved).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Producer id of the batch (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch of the batch (-1 when not idempotent).
    pub producer_epoch: i16,
    /// Sequence number of this record (batch base sequence plus offset delta), or -1.
    pub sequence: i32,
    /// Whether the batch was transactional.
    pub transactional: bool,
    /// Compression codec of the batch as produced.
    pub compression: Compression,
}

/// Error found while validating a produced record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// The Kafka error code to answer with.
    pub code: i16,
    /// A human-readable reason, sent as the partition error message.
    pub message: String,
}

impl BatchError {
    fn corrupt(message: impl Into<String>) -> Self {
        Self {
            code: ResponseError::CorruptMessage.code(),
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ResponseError::InvalidRecord.code(),
            message: message.into(),
        }
    }
}

/// The header fields of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Base offset as written by the producer (normally 0).
    pub base_offset: i64,
    /// Partition leader epoch as written by the producer.
    pub partition_leader_epoch: i32,
    /// Raw attributes.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub first_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record (-1 when not idempotent).
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Whether the transactional bit is set.
    pub fn is_transactional(&self) -> bool {
        self.attributes & (1 << 4) != 0
    }

    /// Whether the control bit is set.
    pub fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }

    /// Sequence of the last record (wrapping from `i32::MAX` to 0).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            self.base_sequence
        } else {
            increment_sequence(self.base_sequence, self.last_offset_delta)
        }
    }
}

/// A record batch that passed validation, ready to append.
#[derive(Debug, Clone)]
pub(crate) struct ValidBatch {
    pub raw: Bytes,
    pub header: BatchHeader,
    pub compression: Compression,
    pub records: Vec<WalkedRecord>,
}

/// A record as read by the layout walk (offsets and timestamps are deltas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalkedRecord {
    timestamp_delta: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
}

fn get_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn get_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parses the fixed header of the batch at the start of `b` (which must hold
/// at least [`BATCH_HEADER_LEN`] bytes).
fn parse_header(b: &[u8]) -> BatchHeader {
    BatchHeader {
        base_offset: get_i64(b, 0),
        partition_leader_epoch: get_i32(b, 12),
        attributes: get_i16(b, 21),
        last_offset_delta: get_i32(b, 23),
        first_timestamp: get_i64(b, 27),
        max_timestamp: get_i64(b, 35),
        producer_id: get_i64(b, 43),
        producer_epoch: get_i16(b, 51),
        base_sequence: get_i32(b, 53),
        record_count: get_i32(b, 57),
    }
}

/// Validates a produced record set, which must be exactly one v2 record batch.
pub(crate) fn validate_batch(records: &Bytes) -> Result<ValidBatch, BatchError> {
    let b = records.as_ref();
    if b.len() < BATCH_HEADER_LEN {
        return Err(BatchError::corrupt(format!(
            "record set of {} bytes is shorter than a batch header",
            b.len()
        )));
    }
    let batch_length = get_i32(b, 8);
    if batch_length < (BATCH_HEADER_LEN - 12) as i32 {
        return Err(BatchError::corrupt(format!(
            "batch length {batch_length} is too small"
        )));
    }
    let total = 12 + batch_length as usize;
    if total > b.len() {
        return Err(BatchError::corrupt(format!(
            "batch length {batch_length} runs past the {} bytes sent",
            b.len()
        )));
    }
    if total < b.len() {
        return Err(BatchError::invalid(format!(
            "produce data must hold exactly one batch ({} trailing bytes)",
            b.len() - total
        )));
    }
    let magic = b[16] as i8;
    if magic != 2 {
        return Err(BatchError::corrupt(format!("unsupported magic {magic}")));
    }
    let stored_crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
    let actual_crc = crc32c::crc32c(&b[CRC_START..total]);
    if stored_crc != actual_crc {
        return Err(BatchError::corrupt(format!(
            "CRC32C mismatch: batch says {stored_crc:#010x}, content is {actual_crc:#010x}"
        )));
    }
    let header = parse_header(b);
    if header.is_control() {
        return Err(BatchError::invalid(
            "producers may not write control batches",
        ));
    }
    if header.record_count <= 0 {
        return Err(BatchError::invalid(format!(
            "batch record count {} must be positive",
            header.record_count
        )));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::corrupt(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    let compression = match header.attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => {
            return Err(BatchError::corrupt(format!(
                "unknown compression codec {other}"
            )));
        }
    };
    let mut payload = records.slice(BATCH_HEADER_LEN..total);
    let decompressed = decompress(&mut payload, compression)
        .map_err(|e| BatchError::corrupt(format!("{compression:?} decompression failed: {e}")))?;
    let walked = walk_records(&decompressed, header.record_count)?;
    let max_delta = walked.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
    let expected_max = header.first_timestamp.wrapping_add(max_delta);
    if header.max_timestamp != expected_max {
        return Err(BatchError::corrupt(format!(
            "max timestamp {} differs from the records' maximum {expected_max}",
            header.max_timestamp
        )));
    }

    // Independent decode with kafka-protocol; it must agree with the walk.
    let mut raw = records.clone();
    let inflated = decompressed.clone();
    let decoded = RecordBatchDecoder::decode_with_custom_compression(
        &mut raw,
        Some(move |_: &mut Bytes, _: Compression| Ok(inflated.clone())),
    )
    .map_err(|e| BatchError::corrupt(format!("batch does not decode: {e}")))?;
    if decoded.records.len() != walked.len() {
        return Err(BatchError::corrupt(
            "decoded record count differs from layout",
        ));
    }
    for (i, (d, w)) in decoded.records.iter().zip(&walked).enumerate() {
        if d.key != w.key || d.value != w.value || d.offset != header.base_offset + i as i64 {
            return Err(BatchError::corrupt(format!(
                "record {i} decodes inconsistently"
            )));
        }
    }

    Ok(ValidBatch {
        raw: records.clone(),
        header,
        compression,
        records: walked,
    })
}

fn decompress(payload: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let out = |b: &mut Bytes| Ok(b.clone());
    match compression {
        Compression::None => Ok(payload.clone()),
        Compression::Gzip => Gzip::decompress(payload, out),
        Compression::Snappy => Snappy::decompress(payload, out),
        Compression::Lz4 => Lz4::decompress(payload, out),
        Compression::Zstd => Zstd::decompress(payload, out),
    }
}

fn read_varint(buf: &mut Bytes) -> Result<i64, BatchError> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(BatchError::corrupt("truncated varint in record"));
        }
        let byte = buf.get_u8();
        if shift == 63 && byte > 1 {
            return Err(BatchError::corrupt("varint overflows 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(BatchError::corrupt("varint too long"))
}

fn read_varint32(buf: &mut Bytes, what: &str) -> Result<i32, BatchError> {
    let v = read_varint(buf)?;
    i32::try_from(v).map_err(|_| BatchError::corrupt(format!("{what} {v} out of range")))
}

fn read_nullable(buf: &mut Bytes, what: &str) -> Result<Option<Bytes>, BatchError> {
    let len = read_varint32(buf, what)?;
    if len == -1 {
        return Ok(None);
    }
    if len < 0 || len as usize > buf.remaining() {
        return Err(BatchError::corrupt(format!(
            "{what} length {len} is invalid"
        )));
    }
    Ok(Some(buf.split_to(len as usize)))
}

/// Walks `count` records in the (decompressed) records section, checking that
/// every record's length matches its fields, that offset deltas count up from
/// zero, and that nothing is left over.
fn walk_records(data: &Bytes, count: i32) -> Result<Vec<WalkedRecord>, BatchError> {
    let mut buf = data.clone();
    let mut out = Vec::new();
    for i in 0..count {
        let len = read_varint32(&mut buf, "record length")?;
        if len <= 0 || len as usize > buf.remaining() {
            return Err(BatchError::corrupt(format!(
                "record {i} length {len} is invalid ({} bytes left)",
                buf.remaining()
            )));
        }
        let mut rec = buf.split_to(len as usize);
        if !rec.has_remaining() {
            return Err(BatchError::corrupt("empty record"));
        }
        let _attributes = rec.get_i8();
        let timestamp_delta = read_varint(&mut rec)?;
        let offset_delta = read_varint32(&mut rec, "offset delta")?;
        if offset_delta != i {
            return Err(BatchError::corrupt(format!(
                "record {i} has offset delta {offset_delta}"
            )));
        }
        let key = read_nullable(&mut rec, "key")?;
        let value = read_nullable(&mut rec, "value")?;
        let header_count = read_varint32(&mut rec, "header count")?;
        if header_count < 0 || header_count as usize > rec.remaining() {
            return Err(BatchError::corrupt(format!(
                "record {i} header count {header_count} is invalid"
            )));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let name = read_nullable(&mut rec, "header key")?
                .ok_or_else(|| BatchError::corrupt("null header key"))?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| BatchError::corrupt("header key is not UTF-8"))?;
            let value = read_nullable(&mut rec, "header value")?;
            headers.push((name, value));
        }
        if rec.has_remaining() {
            return Err(BatchError::corrupt(format!(
                "record {i} has {} bytes after its headers",
                rec.remaining()
            )));
        }
        out.push(WalkedRecord {
            timestamp_delta,
            key,
            value,
            headers,
        });
    }
    if buf.has_remaining() {
        return Err(BatchError::corrupt(format!(
            "{} bytes after the last of {count} records",
            buf.remaining()
        )));
    }
    Ok(out)
}

/// One appended batch.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub last_offset: i64,
    pub raw: Bytes,
    /// The data records (empty for a control batch).
    pub records: Vec<StoredRecord>,
    /// The marker, for a control batch written by the transaction coordinator.
    pub control: Option<ControlMarker>,
}

/// A recent batch of one producer, for duplicate detection.
#[derive(Debug, Clone, Copy)]
struct ProducerBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

/// Idempotent producer state for one partition.
#[derive(Debug, Clone, Default)]
struct ProducerState {
    epoch: i16,
    recent: VecDeque<ProducerBatch>,
}

/// How an append went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendOutcome {
    /// Appended at this base offset.
    Appended(i64),
    /// A retry of a batch already in the log at this base offset.
    Duplicate(i64),
}

/// The log of one partition.
#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    batches: Vec<StoredBatch>,
    log_start_offset: i64,
    next_offset: i64,
    producers: HashMap<i64, ProducerState>,
    duplicates: u64,
    /// First offset of each producer's open transaction on this partition.
    ongoing: HashMap<i64, i64>,
    /// Transactions ended by an abort marker.
    aborted: Vec<AbortedTxn>,
}

impl PartitionLog {
    /// Offset of the next record to be appended (also the high watermark:
    /// every write is immediately fully replicated in the fake cluster).
    pub fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// How many produced batches were recognised as retries of stored ones.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// All stored batches.
    pub fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }

    /// Checks the idempotent producer sequence of `batch`: `Ok(Some(base))`
    /// for a duplicate of the remembered batch at `base`, `Ok(None)` to
    /// append, or the error code to answer with.
    fn check_sequence(
        &self,
        h: &BatchHeader,
        rules: ProducerStateRules,
    ) -> Result<Option<i64>, i16> {
        if h.producer_id < 0 {
            return Ok(None);
        }
        let Some(state) = self.producers.get(&h.producer_id) else {
            return match rules {
                ProducerStateRules::Current => Ok(None),
                ProducerStateRules::Legacy if h.base_sequence == 0 => Ok(None),
                ProducerStateRules::Legacy => Err(ResponseError::UnknownProducerId.code()),
            };
        };
        let duplicate = state
            .recent
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence());
        if let Some(dup) = duplicate.filter(|_| h.producer_epoch == state.epoch) {
            return Ok(Some(dup.base_offset));
        }
        if h.producer_epoch < state.epoch {
            return Err(ResponseError::InvalidProducerEpoch.code());
        }
        if h.producer_epoch > state.epoch {
            return if h.base_sequence == 0 {
                Ok(None)
            } else {
                Err(ResponseError::OutOfOrderSequenceNumber.code())
            };
        }
        let in_sequence = state
            .recent
            .back()
            .is_none_or(|b| increment_sequence(b.last_seq, 1) == h.base_sequence);
        if !in_sequence {
            return Err(ResponseError::OutOfOrderSequenceNumber.code());
        }
        Ok(None)
    }

    /// Appends a validated batch, assigning offsets and stamping the leader
    /// epoch. Returns an error code for producer-state violations.
    pub fn append(
        &mut self,
        batch: ValidBatch,
        leader_epoch: i32,
        rules: ProducerStateRules,
    ) -> Result<AppendOutcome, i16> {
        let h = batch.header;
        if let Some(base) = self.check_sequence(&h, rules)? {
            self.duplicates += 1;
            return Ok(AppendOutcome::Duplicate(base));
        }
        let base_offset = self.next_offset;
        let mut raw = BytesMut::from(batch.raw.as_ref());
        raw[0..8].copy_from_slice(&base_offset.to_be_bytes());
        raw[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
        let records: Vec<StoredRecord> = batch
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| StoredRecord {
                offset: base_offset + i as i64,
                timestamp: h.first_timestamp.wrapping_add(r.timestamp_delta),
                key: r.key,
                value: r.value,
                headers: r.headers,
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                sequence: if h.base_sequence < 0 {
                    -1
                } else {
                    increment_sequence(h.base_sequence, i as i32)
                },
                transactional: h.is_transactional(),
                compression: batch.compression,
            })
            .collect();
        let last_offset = base_offset + i64::from(h.last_offset_delta);
        self.batches.push(StoredBatch {
            last_offset,
            raw: raw.freeze(),
            records,
            control: None,
        });
        self.next_offset = last_offset + 1;
        if h.is_transactional() && h.producer_id >= 0 {
            self.note_transactional(h.producer_id, base_offset);
        }
        if h.producer_id >= 0 {
            let state = self.producers.entry(h.producer_id).or_default();
            if state.epoch != h.producer_epoch {
                state.epoch = h.producer_epoch;
                state.recent.clear();
            }
            state.recent.push_back(ProducerBatch {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                base_offset,
                last_offset,
            });
            while state.recent.len() > PRODUCER_BATCH_CACHE {
                state.recent.pop_front();
            }
        }
        Ok(AppendOutcome::Appended(base_offset))
    }

    /// Forgets every producer, as a broker does once producers have been idle
    /// longer than `producer.id.expiration.ms`.
    pub fn expire_producers(&mut self) {
        self.producers.clear();
    }

    /// Producer ids the partition holds state for, in ascending order.
    pub fn producer_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Raises the log start offset to `before` (-1 means the high watermark),
    /// as DeleteRecords does: batches wholly below it are dropped, records
    /// below it leave the batch that straddles it (whose bytes are still
    /// served whole, like a broker's segment). Under
    /// [`ProducerStateRules::Legacy`] remembered batches below the new start
    /// are forgotten, and producers left without any are removed. Returns the
    /// new log start offset, or `OFFSET_OUT_OF_RANGE` past the high watermark.
    pub fn delete_records(&mut self, before: i64, rules: ProducerStateRules) -> Result<i64, i16> {
        let before = if before == -1 {
            self.next_offset
        } else {
            before
        };
        if before < 0 || before > self.next_offset {
            return Err(ResponseError::OffsetOutOfRange.code());
        }
        if before <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = before;
        self.batches.retain(|b| b.last_offset >= before);
        if let Some(first) = self.batches.first_mut() {
            first.records.retain(|r| r.offset >= before);
        }
        if rules == ProducerStateRules::Legacy {
            self.producers.retain(|_, state| {
                state.recent.retain(|b| b.last_offset >= before);
                !state.recent.is_empty()
            });
        }
        Ok(before)
    }

    /// First offset whose timestamp is at least `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        self.batches
            .iter()
            .flat_map(|b| &b.records)
            .find(|r| r.timestamp >= timestamp)
            .map(|r| (r.offset, r.timestamp))
    }

    /// Offset and timestamp of the record with the largest timestamp.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.batches
            .iter()
            .flat_map(|b| &b.records)
            .max_by_key(|r| (r.timestamp, -r.offset))
            .map(|r| (r.offset, r.timestamp))
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

#[path = "log_txn.rs"]
mod txn;

use txn::AbortedTxn;
pub use txn::ControlMarker;
