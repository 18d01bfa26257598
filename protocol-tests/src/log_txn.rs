//! The transactional side of a partition log.
//!
//! A partition remembers, per producer id, the first offset of the
//! transaction that producer has open on it; the smallest of those is the
//! last stable offset (LSO), below which read_committed consumers may read.
//! The coordinator ends a transaction by appending a control batch (a commit
//! or abort marker) for the producer; an abort is remembered as an aborted
//! transaction `(producer id, first offset, marker offset)` so that Fetch can
//! list the aborted transactions overlapping what it returns. As in Kafka,
//! the broker never filters aborted records out: read_committed clients drop
//! them using that list and the markers.

use bytes::{BufMut, Bytes, BytesMut};

use super::{PartitionLog, StoredBatch, StoredRecord};

/// A commit or abort marker stored in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMarker {
    /// Offset of the control record.
    pub offset: i64,
    /// The producer whose transaction it ends.
    pub producer_id: i64,
    /// The producer epoch it was written with.
    pub producer_epoch: i16,
    /// `true` for a commit marker, `false` for an abort marker.
    pub commit: bool,
    /// The coordinator epoch in the marker's value.
    pub coordinator_epoch: i32,
}

/// An aborted transaction on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Encodes a v2 control batch holding one end-transaction marker.
pub(crate) fn control_batch(
    base_offset: i64,
    leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    // Control record key: version 0, type (0 abort, 1 commit); value:
    // version 0, coordinator epoch.
    let mut key = BytesMut::new();
    key.put_i16(0);
    key.put_i16(i16::from(commit));
    let mut value = BytesMut::new();
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let mut record = BytesMut::new();
    record.put_i8(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, key.len() as i64);
    record.extend_from_slice(&key);
    put_varint(&mut record, value.len() as i64);
    record.extend_from_slice(&value);
    put_varint(&mut record, 0); // headers
    let mut records = BytesMut::new();
    put_varint(&mut records, record.len() as i64);
    records.extend_from_slice(&record);

    // Everything from the attributes on is covered by the CRC.
    let mut tail = BytesMut::new();
    tail.put_i16(0x30); // transactional | control, no compression
    tail.put_i32(0); // last offset delta
    tail.put_i64(timestamp);
    tail.put_i64(timestamp);
    tail.put_i64(producer_id);
    tail.put_i16(producer_epoch);
    tail.put_i32(-1); // base sequence
    tail.put_i32(1); // record count
    tail.extend_from_slice(&records);
    let crc = crc32c::crc32c(&tail);

    let mut out = BytesMut::with_capacity(21 + tail.len());
    out.put_i64(base_offset);
    out.put_i32((4 + 1 + 4 + tail.len()) as i32); // epoch, magic, crc, rest
    out.put_i32(leader_epoch);
    out.put_i8(2);
    out.put_u32(crc);
    out.extend_from_slice(&tail);
    out.freeze()
}

impl PartitionLog {
    /// Notes that `producer_id` wrote transactional data at `offset`: the
    /// first such offset opens its transaction on this partition.
    pub(crate) fn note_transactional(&mut self, producer_id: i64, offset: i64) {
        self.ongoing.entry(producer_id).or_insert(offset);
    }

    /// The last stable offset: the first offset of the earliest open
    /// transaction, or the high watermark when none is open (never below
    /// the log start offset).
    pub fn last_stable_offset(&self) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
            .clamp(self.log_start_offset, self.next_offset)
    }

    /// Appends a commit or abort marker for `producer_id`, closing its
    /// transaction here. The producer's epoch in the partition's producer
    /// state is raised to `producer_epoch` (so a fenced producer's later
    /// batches get `INVALID_PRODUCER_EPOCH`). Returns the marker's offset.
    pub(crate) fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> i64 {
        let offset = self.next_offset;
        // The marker carries the latest record timestamp in the log (a real
        // broker uses its clock; this keeps markers deterministic).
        let timestamp = self
            .batches
            .iter()
            .rev()
            .find_map(|b| b.records.iter().map(|r| r.timestamp).max())
            .unwrap_or(0);
        let raw = control_batch(
            offset,
            leader_epoch,
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            timestamp,
        );
        self.batches.push(StoredBatch {
            last_offset: offset,
            raw,
            records: Vec::new(),
            control: Some(ControlMarker {
                offset,
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
            }),
        });
        self.next_offset = offset + 1;
        if let Some(first_offset) = self.ongoing.remove(&producer_id)
            && !commit
        {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: offset,
            });
        }
        let state = self.producers.entry(producer_id).or_default();
        if producer_epoch > state.epoch {
            state.epoch = producer_epoch;
            state.recent.clear();
        }
        offset
    }

    /// Every control marker in the log, in offset order.
    pub fn control_markers(&self) -> Vec<ControlMarker> {
        self.batches.iter().filter_map(|b| b.control).collect()
    }

    /// Aborted transactions that overlap `[from, to)`: `(producer id, first
    /// offset)` ordered by first offset, as Fetch lists them.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = self
            .aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .map(|a| (a.producer_id, a.first_offset))
            .collect();
        out.sort_by_key(|(_, first)| *first);
        out
    }

    /// Concatenated raw batches starting with the one holding `offset`, up to
    /// roughly `max_bytes`, never including a batch that starts at or past
    /// `limit`. Returns the bytes and the offset after the last batch.
    pub(crate) fn read_until(&self, offset: i64, max_bytes: usize, limit: i64) -> (Bytes, i64) {
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = BytesMut::new();
        let mut end = offset;
        for batch in &self.batches[start..] {
            let base = batch.base_offset();
            if base >= limit || (!out.is_empty() && out.len() + batch.raw.len() > max_bytes) {
                break;
            }
            out.extend_from_slice(&batch.raw);
            end = batch.last_offset + 1;
        }
        (out.freeze(), end)
    }

    /// The data records a read_committed consumer reading from the log start
    /// sees: below the last stable offset, without control records and
    /// without records of aborted transactions, in offset order.
    pub fn committed_records(&self) -> Vec<StoredRecord> {
        let lso = self.last_stable_offset();
        // Walk backwards so each transactional batch meets the marker that
        // ends its producer's transaction first.
        let mut fate: std::collections::HashMap<i64, bool> = std::collections::HashMap::new();
        let mut visible: Vec<&StoredBatch> = Vec::new();
        for batch in self.batches.iter().rev() {
            if let Some(marker) = batch.control {
                fate.insert(marker.producer_id, marker.commit);
                continue;
            }
            if batch.base_offset() >= lso {
                continue;
            }
            let Some(first) = batch.records.first() else {
                continue;
            };
            if !first.transactional || fate.get(&first.producer_id) == Some(&true) {
                visible.push(batch);
            }
        }
        visible
            .into_iter()
            .rev()
            .flat_map(|b| b.records.iter().cloned())
            .collect()
    }
}

impl StoredBatch {
    /// The batch's base offset, as stamped in its bytes.
    pub(crate) fn base_offset(&self) -> i64 {
        match self.raw.get(0..8) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                i64::from_be_bytes(a)
            }
            None => self.last_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::super::{BatchHeader, ProducerStateRules, validate_batch};
    use super::*;

    /// Appends `values` as one batch of `producer_id` (transactional when
    /// asked), with sequences starting at `seq`.
    fn append(
        log: &mut PartitionLog,
        producer_id: i64,
        seq: i32,
        transactional: bool,
        values: &[&str],
    ) {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        let batch = validate_batch(&buf.freeze()).expect("valid");
        log.append(batch, 0, ProducerStateRules::Current)
            .expect("append");
    }

    fn values(records: &[StoredRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().expect("value").to_vec()).expect("utf8"))
            .collect()
    }

    #[test]
    fn interleaved_transactions_resolve_by_their_markers() {
        let mut log = PartitionLog::default();
        append(&mut log, -1, -1, false, &["plain-0"]); // 0
        append(&mut log, 7, 0, true, &["a-1", "a-2"]); // 1-2
        append(&mut log, 8, 0, true, &["b-3"]); // 3
        append(&mut log, -1, -1, false, &["plain-4"]); // 4
        append(&mut log, 7, 2, true, &["a-5"]); // 5
        assert_eq!(log.last_stable_offset(), 1, "producer 7 opened first");
        assert_eq!(values(&log.committed_records()), vec!["plain-0"]);

        // Producer 8 aborts: the LSO still waits for producer 7.
        assert_eq!(log.append_marker(8, 0, false, 0, 0), 6);
        assert_eq!(log.last_stable_offset(), 1);
        assert_eq!(log.aborted_between(0, 7), vec![(8, 3)]);
        assert_eq!(log.aborted_between(4, 7), vec![(8, 3)], "ends after 4");
        assert!(log.aborted_between(7, 9).is_empty());
        assert!(log.aborted_between(0, 3).is_empty(), "starts at 3");

        // Producer 7 commits: everything is stable, its records and the
        // plain ones are visible in offset order, producer 8's are not.
        assert_eq!(log.append_marker(7, 0, true, 0, 0), 7);
        assert_eq!(log.last_stable_offset(), 8);
        assert_eq!(
            values(&log.committed_records()),
            vec!["plain-0", "a-1", "a-2", "plain-4", "a-5"]
        );
        let markers = log.control_markers();
        assert_eq!(
            markers
                .iter()
                .map(|m| (m.offset, m.producer_id, m.commit))
                .collect::<Vec<_>>(),
            vec![(6, 8, false), (7, 7, true)]
        );
        // read_committed reads stop before batches at or past the limit.
        let (_, end) = log.read_until(0, usize::MAX, 3);
        assert_eq!(end, 3);
        let (bytes, end) = log.read_until(6, usize::MAX, 8);
        assert_eq!(end, 8);
        let mut buf = bytes;
        let mut offsets = Vec::new();
        while !buf.is_empty() {
            let b = RecordBatchDecoder::decode(&mut buf).expect("decode");
            offsets.extend(b.records.iter().map(|r| (r.offset, r.control)));
        }
        assert_eq!(offsets, vec![(6, true), (7, true)]);

        // A new transaction of producer 8 after its abort is tracked afresh.
        append(&mut log, 8, 1, true, &["b-8"]);
        assert_eq!(log.last_stable_offset(), 8);
        assert_eq!(log.append_marker(8, 0, true, 0, 0), 9);
        assert_eq!(
            values(&log.committed_records()).last().map(String::as_str),
            Some("b-8")
        );
    }

    #[test]
    fn markers_raise_the_producer_epoch() {
        let mut log = PartitionLog::default();
        append(&mut log, 7, 0, true, &["a"]);
        // A coordinator-initiated abort under a bumped epoch fences epoch 0.
        log.append_marker(7, 1, false, 0, 0);
        let h = epoch_zero_header(7);
        assert_eq!(
            log.check_sequence(&h, ProducerStateRules::Current),
            Err(kafka_protocol::ResponseError::InvalidProducerEpoch.code())
        );
    }

    /// The header of a transactional batch of `producer_id` at epoch 0.
    fn epoch_zero_header(producer_id: i64) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            partition_leader_epoch: 0,
            attributes: 0x10,
            last_offset_delta: 0,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 1,
            record_count: 1,
        }
    }

    #[test]
    fn control_batches_decode_as_markers() {
        for commit in [false, true] {
            let raw = control_batch(42, 3, 1000, 7, commit, 5, 1_700_000_000_000);
            let mut buf = raw.clone();
            let decoded = RecordBatchDecoder::decode(&mut buf).expect("decodes");
            assert_eq!(decoded.records.len(), 1);
            let r = &decoded.records[0];
            assert!(r.control && r.transactional);
            assert_eq!((r.offset, r.producer_id, r.producer_epoch), (42, 1000, 7));
            let key = r.key.clone().expect("key");
            assert_eq!(key.as_ref(), &[0, 0, 0, u8::from(commit)]);
            let value = r.value.clone().expect("value");
            assert_eq!(value.as_ref(), &[0, 0, 0, 0, 0, 5]);
            let crc = u32::from_be_bytes([raw[17], raw[18], raw[19], raw[20]]);
            assert_eq!(crc, crc32c::crc32c(&raw[21..]));
            let len = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
            assert_eq!(len as usize + 12, raw.len());
        }
    }
}
