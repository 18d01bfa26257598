//! Unit tests of partition logs: idempotent producer state, sequence
//! wrap-around, expiry and record deletion.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;

const CURRENT: ProducerStateRules = ProducerStateRules::Current;
const LEGACY: ProducerStateRules = ProducerStateRules::Legacy;

fn batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> ValidBatch {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Patched below: the encoder splits batches whose record
            // sequences wrap, though the wire format (one base sequence)
            // allows it.
            sequence: if base_sequence < 0 { -1 } else { i as i32 },
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(format!("{base_sequence}+{i}"))),
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
    .expect("encode batch");
    buf[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    validate_batch(&buf.freeze()).expect("valid batch")
}

fn append(
    log: &mut PartitionLog,
    producer_id: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> Result<AppendOutcome, i16> {
    log.append(batch(producer_id, epoch, seq, count), 0, CURRENT)
}

const OUT_OF_ORDER: i16 = ResponseError::OutOfOrderSequenceNumber.code();

#[test]
fn each_of_the_last_five_batches_is_a_duplicate() {
    let mut log = PartitionLog::default();
    for i in 0..6 {
        assert_eq!(
            append(&mut log, 7, 0, i * 2, 2),
            Ok(AppendOutcome::Appended(i64::from(i) * 2))
        );
    }
    // Batches 1..=5 are remembered: each retry gets its original offset.
    for i in 1..6 {
        assert_eq!(
            append(&mut log, 7, 0, i * 2, 2),
            Ok(AppendOutcome::Duplicate(i64::from(i) * 2)),
            "batch {i}"
        );
    }
    assert_eq!(log.duplicates(), 5);
    // Batch 0 fell out of the window: it is out of order, not a duplicate.
    assert_eq!(append(&mut log, 7, 0, 0, 2), Err(OUT_OF_ORDER));
    // A batch overlapping a remembered one without matching its range.
    assert_eq!(append(&mut log, 7, 0, 10, 1), Err(OUT_OF_ORDER));
    assert_eq!(log.duplicates(), 5);
    assert_eq!(log.high_watermark(), 12);
    assert_eq!(
        append(&mut log, 7, 0, 12, 1),
        Ok(AppendOutcome::Appended(12))
    );
}

#[test]
fn gaps_and_stale_epochs_are_rejected() {
    let mut log = PartitionLog::default();
    assert_eq!(append(&mut log, 7, 3, 0, 3), Ok(AppendOutcome::Appended(0)));
    assert_eq!(append(&mut log, 7, 3, 4, 1), Err(OUT_OF_ORDER), "gap");
    assert_eq!(
        append(&mut log, 7, 2, 3, 1),
        Err(ResponseError::InvalidProducerEpoch.code()),
        "older epoch"
    );
    assert_eq!(
        append(&mut log, 7, 4, 3, 1),
        Err(OUT_OF_ORDER),
        "new epoch must start at 0"
    );
    assert_eq!(append(&mut log, 7, 4, 0, 1), Ok(AppendOutcome::Appended(3)));
    // The bump forgot the old epoch's batches: no duplicate across epochs.
    assert_eq!(
        append(&mut log, 7, 3, 0, 3),
        Err(ResponseError::InvalidProducerEpoch.code())
    );
    assert_eq!(append(&mut log, 7, 4, 1, 1), Ok(AppendOutcome::Appended(4)));
    // Other producers and non-idempotent batches are independent.
    assert_eq!(append(&mut log, 8, 0, 0, 1), Ok(AppendOutcome::Appended(5)));
    assert_eq!(
        append(&mut log, -1, -1, -1, 1),
        Ok(AppendOutcome::Appended(6))
    );
    assert_eq!(
        append(&mut log, -1, -1, -1, 1),
        Ok(AppendOutcome::Appended(7))
    );
    assert_eq!(log.duplicates(), 0);
    assert_eq!(log.producer_ids(), vec![7, 8]);
}

#[test]
fn sequence_wraps_from_max_to_zero() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(increment_sequence(5, 3), 8);

    let mut log = PartitionLog::default();
    let start = i32::MAX - 3;
    assert_eq!(
        append(&mut log, 9, 0, start, 2),
        Ok(AppendOutcome::Appended(0))
    );
    // This batch runs across the wrap: MAX-1, MAX, 0, 1.
    let across = batch(9, 0, i32::MAX - 1, 4);
    assert_eq!(across.header.last_sequence(), 1);
    assert_eq!(
        log.append(across, 0, CURRENT),
        Ok(AppendOutcome::Appended(2))
    );
    let sequences: Vec<i32> = log
        .batches()
        .iter()
        .flat_map(|b| b.records.iter().map(|r| r.sequence))
        .collect();
    assert_eq!(
        sequences,
        vec![start, start + 1, i32::MAX - 1, i32::MAX, 0, 1]
    );
    // The batch across the wrap is remembered and deduplicated.
    assert_eq!(
        append(&mut log, 9, 0, i32::MAX - 1, 4),
        Ok(AppendOutcome::Duplicate(2))
    );
    assert_eq!(append(&mut log, 9, 0, 3, 1), Err(OUT_OF_ORDER));
    assert_eq!(append(&mut log, 9, 0, 2, 1), Ok(AppendOutcome::Appended(6)));

    // Ending exactly at MAX: the next batch starts at 0.
    let mut log = PartitionLog::default();
    assert_eq!(
        append(&mut log, 9, 0, i32::MAX - 1, 2),
        Ok(AppendOutcome::Appended(0))
    );
    assert_eq!(append(&mut log, 9, 0, 1, 1), Err(OUT_OF_ORDER));
    assert_eq!(append(&mut log, 9, 0, 0, 1), Ok(AppendOutcome::Appended(2)));
}

#[test]
fn unknown_producers_follow_the_rules() {
    let mut log = PartitionLog::default();
    // Current (Kafka 2.5+): a producer without state may start anywhere.
    assert_eq!(
        log.append(batch(5, 2, 40, 1), 0, CURRENT),
        Ok(AppendOutcome::Appended(0))
    );
    assert_eq!(
        log.append(batch(5, 2, 41, 1), 0, CURRENT),
        Ok(AppendOutcome::Appended(1))
    );
    // Legacy (before 2.4): only at sequence 0.
    assert_eq!(
        log.append(batch(6, 0, 40, 1), 0, LEGACY),
        Err(ResponseError::UnknownProducerId.code())
    );
    assert_eq!(
        log.append(batch(6, 0, 0, 1), 0, LEGACY),
        Ok(AppendOutcome::Appended(2))
    );
    assert_eq!(
        log.append(batch(6, 0, 1, 1), 0, LEGACY),
        Ok(AppendOutcome::Appended(3))
    );
}

#[test]
fn expired_producers_are_forgotten() {
    let mut log = PartitionLog::default();
    assert_eq!(append(&mut log, 7, 0, 0, 2), Ok(AppendOutcome::Appended(0)));
    assert_eq!(append(&mut log, 7, 0, 2, 2), Ok(AppendOutcome::Appended(2)));
    log.expire_producers();
    assert!(log.producer_ids().is_empty());
    assert_eq!(
        log.append(batch(7, 0, 4, 1), 0, LEGACY),
        Err(ResponseError::UnknownProducerId.code())
    );
    // Under the current rules the producer just carries on; the price is
    // that a retry of a batch written before expiry is no longer recognised.
    assert_eq!(
        log.append(batch(7, 0, 4, 1), 0, CURRENT),
        Ok(AppendOutcome::Appended(4))
    );
    assert_eq!(log.append(batch(7, 0, 2, 2), 0, CURRENT), Err(OUT_OF_ORDER));
    log.expire_producers();
    assert_eq!(
        log.append(batch(7, 0, 2, 2), 0, CURRENT),
        Ok(AppendOutcome::Appended(5))
    );
    assert_eq!(log.duplicates(), 0);
}

#[test]
fn delete_records_raises_the_log_start_offset() {
    let mut log = PartitionLog::default();
    for seq in [0, 3, 6] {
        append(&mut log, 7, 0, seq, 3).expect("append");
    }
    append(&mut log, 8, 0, 0, 1).expect("append");
    assert_eq!(log.high_watermark(), 10);
    assert_eq!(
        log.delete_records(11, CURRENT),
        Err(ResponseError::OffsetOutOfRange.code())
    );
    assert_eq!(
        log.delete_records(-2, CURRENT),
        Err(ResponseError::OffsetOutOfRange.code())
    );
    // Offset 4 is inside the second batch (3..=5).
    assert_eq!(log.delete_records(4, CURRENT), Ok(4));
    assert_eq!(log.log_start_offset(), 4);
    let offsets: Vec<i64> = log
        .batches()
        .iter()
        .flat_map(|b| b.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (4..10).collect::<Vec<_>>());
    assert_eq!(log.batches().len(), 3, "the straddling batch stays whole");
    assert_eq!(log.delete_records(2, CURRENT), Ok(4), "never lowered");
    // Current rules keep producer state: the retry is still a duplicate.
    assert_eq!(log.delete_records(-1, CURRENT), Ok(10));
    assert!(log.batches().is_empty());
    assert_eq!(log.producer_ids(), vec![7, 8]);
    assert_eq!(
        append(&mut log, 7, 0, 6, 3),
        Ok(AppendOutcome::Duplicate(6))
    );
    assert_eq!(log.high_watermark(), 10);
}

#[test]
fn legacy_delete_records_forgets_producers_with_no_batch_left() {
    let mut log = PartitionLog::default();
    append(&mut log, 7, 0, 0, 2).expect("append"); // 0..=1
    append(&mut log, 8, 0, 0, 2).expect("append"); // 2..=3
    append(&mut log, 7, 0, 2, 2).expect("append"); // 4..=5
    assert_eq!(log.delete_records(4, LEGACY), Ok(4));
    assert_eq!(log.producer_ids(), vec![7]);
    // Producer 7's first batch is gone from its window, its second is not.
    assert_eq!(log.append(batch(7, 0, 0, 2), 0, LEGACY), Err(OUT_OF_ORDER));
    assert_eq!(
        log.append(batch(7, 0, 2, 2), 0, LEGACY),
        Ok(AppendOutcome::Duplicate(4))
    );
    assert_eq!(
        log.append(batch(8, 0, 2, 1), 0, LEGACY),
        Err(ResponseError::UnknownProducerId.code())
    );
}
