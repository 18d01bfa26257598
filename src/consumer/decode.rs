//! Turning the `records` bytes of one partition in one Fetch response into
//! [`ConsumedRecord`]s and a new position.
//!
//! This module owns the per-batch rules of the fetch path, without I/O:
//!
//! - batches that end before the position are skipped (a broker answers
//!   from the start of the batch holding the fetch offset), and so are the
//!   records before the position inside a batch (a compressed batch is
//!   fetched whole);
//! - control batches and, in read_committed, the batches of aborted
//!   transactions (see [`super::aborted`]) are skipped, and the position
//!   moves past them all the same;
//! - a partial batch at the end is left for the next fetch;
//! - a malformed batch delivers nothing: the records decoded before it are
//!   kept, the position stops at its start, and the error is reported so the
//!   next fetch, which begins with that batch, fails at once;
//! - decoding stops between batches once the records decoded weigh more
//!   than the caller's byte budget, so one response cannot make the reader
//!   hold more than the budget plus one (bounded) batch.

use bytes::Bytes;

use super::aborted::{AbortedFilter, BatchInfo, Marker, Verdict};
use super::consumed::ConsumedRecord;
use crate::error::{Error, ErrorKind};
use crate::record::{Header, Topic};
use crate::record_batch::{Batch, BatchReader, ControlRecordType, ReadOptions, RecordsError};

/// The result of decoding one partition's records.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The records to deliver, in offset order.
    pub(crate) records: Vec<ConsumedRecord>,
    /// Where the next fetch of the partition starts.
    pub(crate) next_position: i64,
    /// Approximate memory held by `records`.
    pub(crate) bytes: usize,
    /// A malformed batch at `next_position`, if one was met.
    pub(crate) error: Option<Error>,
}

/// The approximate memory of one record: its fields plus its payload.
fn weight(record: &ConsumedRecord) -> usize {
    std::mem::size_of::<ConsumedRecord>()
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + record
            .headers
            .iter()
            .map(|h| {
                std::mem::size_of::<Header>() + h.key.len() + h.value.as_ref().map_or(0, Bytes::len)
            })
            .sum::<usize>()
}

fn corrupt(topic: &str, partition: i32, offset: i64, problem: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("{topic}-{partition}: malformed record batch at offset {offset}: {problem}"),
    )
}

/// Decodes `records` (the bytes a Fetch returned for `topic`/`partition`,
/// fetched at `position`) through `filter`, stopping between batches once
/// `budget` bytes of records are decoded.
///
/// Keys, values and header values are not copied: they are slices of
/// `records` for an uncompressed batch, and of the batch's decompressed
/// bytes (one buffer per batch) for a compressed one.
pub(crate) fn decode_partition(
    topic: &Topic,
    partition: i32,
    position: i64,
    records: &Bytes,
    filter: &mut AbortedFilter,
    options: ReadOptions,
    budget: usize,
) -> Decoded {
    let mut out = Decoded {
        records: Vec::new(),
        next_position: position,
        bytes: 0,
        error: None,
    };
    let mut scratch = Vec::new();
    for batch in BatchReader::with_options(records, options) {
        if out.bytes >= budget && out.next_position > position {
            break;
        }
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                out.error = Some(corrupt(topic, partition, out.next_position, &e).with_source(e));
                break;
            }
        };
        let before = out.records.len();
        match decode_batch(
            topic,
            partition,
            out.next_position,
            &batch,
            records,
            filter,
            &mut scratch,
            &mut out.records,
        ) {
            Ok(Some(next)) => {
                out.bytes += out.records[before..].iter().map(weight).sum::<usize>();
                out.next_position = next;
            }
            Ok(None) => {}
            Err(e) => {
                // A malformed batch delivers nothing.
                out.records.truncate(before);
                out.error = Some(e);
                break;
            }
        }
    }
    out
}

/// One batch: `None` if it ends before `position`; otherwise the position
/// after it, its records at or after `position` (none when skipped) added
/// to `out`. On an error, some of the batch's records may have been added.
#[allow(clippy::too_many_arguments)]
fn decode_batch(
    topic: &Topic,
    partition: i32,
    position: i64,
    batch: &Batch<'_>,
    input: &Bytes,
    filter: &mut AbortedFilter,
    scratch: &mut Vec<u8>,
    out: &mut Vec<ConsumedRecord>,
) -> Result<Option<i64>, Error> {
    let header = *batch.header();
    let fail = |problem: &dyn std::fmt::Display| corrupt(topic, partition, position, problem);
    if header.base_offset < 0 || header.last_offset_delta < 0 {
        return Err(fail(&format_args!(
            "base offset {} with last offset delta {}",
            header.base_offset, header.last_offset_delta
        )));
    }
    let last_offset = header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .filter(|last| *last < i64::MAX)
        .ok_or_else(|| fail(&"last offset overflows"))?;
    if last_offset < position {
        return Ok(None);
    }
    let next = last_offset + 1;
    if header.record_count == 0 {
        // Kept by log compaction to preserve producer state: nothing to read.
        return Ok(Some(next));
    }
    let control = if header.is_control() {
        let record = batch
            .control_record(scratch)
            .map_err(|e: RecordsError| fail(&e).with_source(e))?;
        Some(match record.map(|r| r.kind) {
            Some(ControlRecordType::Abort) => Marker::Abort,
            _ => Marker::Other,
        })
    } else {
        None
    };
    let verdict = filter.verdict(&BatchInfo {
        producer_id: header.producer_id,
        last_offset,
        transactional: header.is_transactional(),
        control,
    });
    if verdict != Verdict::Deliver {
        return Ok(Some(next));
    }
    let leader_epoch =
        (header.partition_leader_epoch >= 0).then_some(header.partition_leader_epoch);
    let timestamp_type = header.timestamp_type();
    // A compressed batch is decompressed into a buffer of its own, which
    // its records then share; an uncompressed one is read where it lies.
    let compressed = header.compression != crate::compression::Compression::None;
    let backing = if compressed {
        let mut decompressed = Vec::new();
        batch
            .decompress_into(&mut decompressed)
            .map_err(|e| fail(&e).with_source(e))?;
        Bytes::from(decompressed)
    } else {
        input.clone()
    };
    let data = if compressed {
        &backing[..]
    } else {
        batch.records_section()
    };
    // Room for the records the batch declares, bounded by what its bytes
    // can hold (a record takes at least 7 bytes), so a hostile count
    // reserves nothing it could not fill.
    let declared = usize::try_from(header.record_count).unwrap_or(0);
    out.reserve(declared.min(data.len() / 7));
    let piece = |bytes: &[u8]| piece_of(&backing, bytes);
    for record in batch.records_in(data) {
        let record = record.map_err(|e| fail(&e).with_source(e))?;
        let offset = record.offset();
        if offset < header.base_offset || offset > last_offset {
            return Err(fail(&format_args!(
                "record offset {offset} outside the batch's {}..={last_offset}",
                header.base_offset
            )));
        }
        if offset < position {
            continue;
        }
        out.push(ConsumedRecord {
            topic: topic.clone(),
            partition,
            offset,
            timestamp: record.timestamp(),
            timestamp_type,
            key: record.key().map(piece),
            value: record.value().map(piece),
            headers: record
                .headers()
                .map(|h| Header {
                    key: String::from_utf8_lossy(h.key).into_owned(),
                    value: h.value.map(piece),
                })
                .collect(),
            leader_epoch,
        });
    }
    Ok(Some(next))
}

/// `part` as a slice of `backing` when it lies inside it (what the record
/// reader yields), else a copy.
fn piece_of(backing: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).checked_sub(backing.as_ptr() as usize);
    match start {
        Some(at)
            if at
                .checked_add(part.len())
                .is_some_and(|end| end <= backing.len()) =>
        {
            backing.slice(at..at + part.len())
        }
        _ => Bytes::copy_from_slice(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use crate::consumer::aborted::AbortedTransaction;
    use crate::record_batch::{AppendOutcome, BatchBuilder, BatchConfig};

    fn batch(base_offset: i64, count: usize, compression: Compression) -> Vec<u8> {
        let mut config = BatchConfig::new(compression);
        config.max_batch_bytes = 1 << 20;
        let mut builder = BatchBuilder::new(config, 1_700_000_000_000);
        for i in 0..count {
            let key = format!("k{i}");
            let value = format!("value {i}");
            let outcome = builder
                .try_append(
                    1_700_000_000_000 + i as i64,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[("h", Some(b"x".as_slice()))],
                )
                .unwrap();
            assert_eq!(outcome, AppendOutcome::Appended);
        }
        let sealed = builder.seal().unwrap();
        let mut bytes = sealed.bytes().to_vec();
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes
    }

    fn decode(records: &[u8], position: i64) -> Decoded {
        decode_partition(
            &Topic::from("t"),
            0,
            position,
            &Bytes::copy_from_slice(records),
            &mut AbortedFilter::read_uncommitted(),
            ReadOptions::default(),
            usize::MAX,
        )
    }

    #[test]
    fn records_before_the_position_inside_a_batch_are_skipped() {
        for codec in [Compression::None, Compression::Zstd] {
            let mut bytes = batch(10, 5, codec);
            bytes.extend(batch(15, 3, codec));
            let decoded = decode(&bytes, 12);
            let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [12, 13, 14, 15, 16, 17], "{codec:?}");
            assert_eq!(decoded.next_position, 18);
            assert!(decoded.error.is_none());
            let first = &decoded.records[0];
            assert_eq!(first.key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(first.value.as_deref(), Some(&b"value 2"[..]));
            assert_eq!(first.headers, [Header::new("h", "x")]);
        }
    }

    #[test]
    fn a_partial_last_batch_is_left_for_the_next_fetch() {
        let mut bytes = batch(0, 2, Compression::None);
        let second = batch(2, 2, Compression::None);
        bytes.extend_from_slice(&second[..second.len() - 3]);
        let decoded = decode(&bytes, 0);
        assert_eq!(decoded.records.len(), 2);
        assert_eq!(decoded.next_position, 2);
        assert!(decoded.error.is_none());
    }

    #[test]
    fn keys_and_values_are_shared_slices_of_the_batch() {
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let input = Bytes::from(batch(0, 3, compression));
            let decoded = decode_partition(
                &Topic::from("t"),
                0,
                0,
                &input,
                &mut AbortedFilter::read_uncommitted(),
                ReadOptions::default(),
                usize::MAX,
            );
            assert_eq!(decoded.records.len(), 3, "{compression:?}");
            let first = decoded.records[0].value.as_ref().unwrap().as_ptr() as usize;
            for (i, r) in decoded.records.iter().enumerate() {
                let value = r.value.as_ref().unwrap();
                assert_eq!(
                    &value[..],
                    format!("value {i}").as_bytes(),
                    "{compression:?}"
                );
                assert_eq!(&r.key.as_ref().unwrap()[..], format!("k{i}").as_bytes());
                assert_eq!(r.headers[0].key, "h");
                assert_eq!(r.headers[0].value.as_deref(), Some(&b"x"[..]));
                // One buffer for the batch: the values lie close together.
                let at = value.as_ptr() as usize;
                assert!(at.abs_diff(first) < 256, "{compression:?}: values apart");
            }
            if compression == Compression::None {
                let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
                for r in &decoded.records {
                    assert!(range.contains(&(r.value.as_ref().unwrap().as_ptr() as usize)));
                }
            }
        }
    }

    #[test]
    fn the_budget_stops_decoding_between_batches() {
        let mut bytes = Vec::new();
        for b in 0..4 {
            bytes.extend(batch(b * 10, 10, Compression::None));
        }
        let decoded = decode_partition(
            &Topic::from("t"),
            0,
            0,
            &Bytes::from(bytes.clone()),
            &mut AbortedFilter::read_uncommitted(),
            ReadOptions::default(),
            1,
        );
        assert_eq!(decoded.records.len(), 10, "one batch, then the budget");
        assert_eq!(decoded.next_position, 10);
    }

    /// A transactional batch of producer `pid`, or its marker.
    fn txn_batch(pid: i64, base_offset: i64, count: usize, marker: Option<bool>) -> Vec<u8> {
        let mut bytes = match marker {
            None => batch(base_offset, count, Compression::None),
            Some(commit) => {
                let mut builder = BatchBuilder::new(BatchConfig::default(), 0);
                let key = [0u8, 0, 0, u8::from(commit)];
                let value = [0u8, 0, 0, 0, 0, 5];
                let outcome = builder
                    .try_append(0, Some(&key), Some(&value), &[])
                    .unwrap();
                assert_eq!(outcome, AppendOutcome::Appended);
                let mut bytes = builder.seal().unwrap().bytes().to_vec();
                bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
                bytes
            }
        };
        let mut attributes = i16::from_be_bytes([bytes[21], bytes[22]]);
        attributes |= crate::record_batch::attributes::TRANSACTIONAL;
        if marker.is_some() {
            attributes |= crate::record_batch::attributes::CONTROL;
        }
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        bytes[43..51].copy_from_slice(&pid.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn read_committed_drops_aborted_batches_and_moves_past_markers() {
        let mut bytes = Vec::new();
        bytes.extend(txn_batch(1, 0, 2, None)); // 0, 1 committed
        bytes.extend(txn_batch(2, 2, 2, None)); // 2, 3 aborted
        bytes.extend(txn_batch(2, 4, 1, Some(false))); // abort marker
        bytes.extend(txn_batch(1, 5, 1, Some(true))); // commit marker
        let committed = decode_partition(
            &Topic::from("t"),
            0,
            0,
            &Bytes::from(bytes.clone()),
            &mut AbortedFilter::read_committed([AbortedTransaction {
                producer_id: 2,
                first_offset: 2,
            }]),
            ReadOptions::default(),
            usize::MAX,
        );
        let offsets: Vec<i64> = committed.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1]);
        assert_eq!(committed.next_position, 6);
        let uncommitted = decode(&bytes, 0);
        let offsets: Vec<i64> = uncommitted.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 3]);
        assert_eq!(uncommitted.next_position, 6);
    }

    #[test]
    fn a_corrupt_batch_is_an_error_after_the_good_ones() {
        let mut bytes = batch(0, 3, Compression::None);
        let mut bad = batch(3, 3, Compression::Lz4);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        bytes.extend(bad);
        let decoded = decode(&bytes, 0);
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.next_position, 3);
        let err = decoded.error.expect("a CRC mismatch");
        assert_eq!(err.kind(), &ErrorKind::Protocol);
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("t-0"), "{err}");
        // Fetched again from its start, the corrupt batch fails at once.
        let good_len = batch(0, 3, Compression::None).len();
        let again = decode(&bytes[good_len..], 3);
        assert!(again.records.is_empty() && again.error.is_some());
    }

    #[test]
    fn garbage_with_a_valid_crc_is_an_error_not_a_panic() {
        // A header that checks out, over a records section of garbage.
        let mut bytes = batch(0, 4, Compression::None);
        for (i, b) in bytes[61..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode(&bytes, 0);
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_position, 0);
        assert_eq!(
            decoded.error.expect("malformed records").kind(),
            &ErrorKind::Protocol
        );

        // A batch length below the header size, and a wrong magic.
        let mut short = batch(0, 1, Compression::None);
        short[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(decode(&short, 0).error.is_some());
        let mut magic = batch(0, 1, Compression::None);
        magic[16] = 1;
        assert!(decode(&magic, 0).error.is_some());
    }

    #[test]
    fn a_batch_decompressing_past_the_limit_is_an_error() {
        // 20 records of 2 KiB of zeros: tiny compressed, 40 KiB inflated.
        let mut config = BatchConfig::new(Compression::Zstd);
        config.max_batch_bytes = 1 << 20;
        let mut builder = BatchBuilder::new(config, 0);
        let zeros = vec![0u8; 2048];
        for _ in 0..20 {
            let outcome = builder.try_append(0, None, Some(&zeros), &[]).unwrap();
            assert_eq!(outcome, AppendOutcome::Appended);
        }
        let bytes = builder.seal().unwrap().bytes().to_vec();
        assert!(bytes.len() < 4096, "compressed to {} bytes", bytes.len());
        let options = ReadOptions {
            max_decompressed_bytes: 16 * 1024,
            verify_crc: true,
        };
        let decoded = decode_partition(
            &Topic::from("t"),
            0,
            0,
            &Bytes::from(bytes.clone()),
            &mut AbortedFilter::read_uncommitted(),
            options,
            usize::MAX,
        );
        assert!(decoded.records.is_empty());
        let err = decoded.error.expect("over the decompression limit");
        assert_eq!(err.kind(), &ErrorKind::Protocol);
        let decoded = decode(&bytes, 0);
        assert_eq!(decoded.records.len(), 20, "within the default limit");
    }

    #[test]
    fn random_bytes_never_panic_and_never_move_the_position_back() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = batch(100, 5, Compression::Snappy);
        for round in 0..3_000 {
            let mut bytes = valid.clone();
            // Flip a few bytes, sometimes fixing up the CRC so that the
            // damage reaches the record parser.
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if round % 2 == 0 {
                let crc = crc32c::crc32c(&bytes[21..]);
                bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            }
            let decoded = decode(&bytes, 100);
            assert!(decoded.next_position >= 100);
            assert!(decoded.records.iter().all(|r| r.offset >= 100));
        }
    }
}
