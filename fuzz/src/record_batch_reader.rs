// Logic of the `record_batch_reader` fuzz target, shared with the corpus
// replay test (`tests/fuzz_corpus.rs`), which `include!`s this file.
//
// Input layout: byte 0 holds flags (bit 0 set: skip the CRC check, so that
// mutations reach the fields the CRC protects), the rest is a records
// buffer as a Fetch response carries it. Every batch and record is read,
// decompressed within a small cap, and every field is touched.

use smartkafka::record_batch::{BatchReader, ReadOptions};

/// The decompressed-size cap while fuzzing.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024;

/// What one input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Batches read.
    pub batches: usize,
    /// Records read, over all batches.
    pub records: usize,
    /// Header entries read, over all records.
    pub headers: usize,
    /// Control records parsed.
    pub control_records: usize,
    /// Errors met (a batch, its records or a control record refused).
    pub errors: usize,
}

/// Runs one input through the reader. Never panics on any input.
pub fn run(data: &[u8]) -> Outcome {
    let [flags, buffer @ ..] = data else {
        return Outcome::default();
    };
    let options = ReadOptions {
        max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
        verify_crc: flags & 1 == 0,
    };

    let mut outcome = Outcome::default();
    let mut scratch = Vec::new();
    let mut reader = BatchReader::with_options(buffer, options);
    for batch in reader.by_ref() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(_) => {
                outcome.errors += 1;
                continue;
            }
        };
        outcome.batches += 1;
        let h = *batch.header();
        std::hint::black_box((
            h.base_offset,
            h.batch_length,
            h.partition_leader_epoch,
            h.magic,
            h.crc,
            h.attributes,
            h.last_offset_delta,
            h.base_timestamp,
            h.max_timestamp,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            h.record_count,
            h.compression,
        ));
        std::hint::black_box((
            h.timestamp_type(),
            h.is_transactional(),
            h.is_control(),
            h.has_delete_horizon(),
            h.last_offset(),
            h.next_offset(),
        ));
        assert_eq!(h.size(), batch.as_bytes().len(), "batch size and bytes disagree");
        std::hint::black_box(batch.records_section());

        match batch.records(&mut scratch) {
            Ok(records) => {
                for record in records {
                    let record = match record {
                        Ok(record) => record,
                        Err(_) => {
                            outcome.errors += 1;
                            break;
                        }
                    };
                    outcome.records += 1;
                    std::hint::black_box((
                        record.offset(),
                        record.timestamp(),
                        record.offset_delta(),
                        record.timestamp_delta(),
                        record.attributes(),
                        record.key(),
                        record.value(),
                    ));
                    let headers = record.headers();
                    assert_eq!(headers.len(), record.header_count(), "header count");
                    for header in headers {
                        outcome.headers += 1;
                        std::hint::black_box((header.key, header.value, header.key_str().is_ok()));
                    }
                    if h.is_control() {
                        match record.control() {
                            Ok(control) => {
                                outcome.control_records += 1;
                                std::hint::black_box((
                                    control.version,
                                    control.kind,
                                    control.coordinator_epoch,
                                ));
                            }
                            Err(_) => outcome.errors += 1,
                        }
                    }
                }
            }
            Err(_) => outcome.errors += 1,
        }
        assert!(scratch.len() <= MAX_DECOMPRESSED_BYTES, "decompressed past the cap");
        match batch.control_record(&mut scratch) {
            Ok(control) => {
                std::hint::black_box(control);
            }
            Err(_) => outcome.errors += 1,
        }
    }
    std::hint::black_box(reader.remaining());
    outcome
}
