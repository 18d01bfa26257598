//! Record batches (magic v2) against implementations we did not write.
//!
//! * Batches from [`BatchBuilder`], with every codec, stamped and not, decode
//!   with kafka-protocol's `RecordBatchDecoder` to the records appended;
//!   uncompressed ones are byte for byte what kafka-protocol's encoder writes.
//! * Batches from kafka-protocol's `RecordBatchEncoder`, with every codec it
//!   has, decode with our [`BatchReader`]; so do snappy payloads in both forms
//!   Kafka clients write (xerial-framed and a single raw block), built by hand.
//! * Batches librdkafka (through rust-rdkafka) produced to the fake cluster in
//!   `protocol-tests/`, taken as the raw bytes the broker stored and serves to
//!   Fetch, decode with our reader to every record rdkafka sent.
//! * Property tests: random records (null and empty keys, values and header
//!   values, up to 20 headers, extreme timestamps) round-trip through
//!   builder, seal, stamp and reader for every codec, with the CRC checked;
//!   timestamps whose delta overflows are refused, not wrapped.
//! * Malformed input: truncated batches, bad CRCs, bad magic, counts and
//!   lengths larger than the bytes, decompression bombs. Each is a
//!   [`RecordsError`], never a panic.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KpTimestampType,
};
use proptest::collection::vec;
use proptest::prelude::*;
use protocol_tests::FakeCluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use smartkafka::compression::{Compression, CompressionError, XERIAL_MAGIC};
use smartkafka::record_batch::{
    AppendOutcome, BATCH_HEADER_LEN, BatchBuilder, BatchConfig, BatchHeader, BatchReader,
    ReadOptions, RecordsError, SealedBatch, TimestampType,
};

/// Byte offsets of the batch header fields, written down here from the
/// protocol guide rather than taken from the crate under test.
mod offsets {
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const RECORD_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
}

// ---------------------------------------------------------------------------
// The record model every implementation is compared in.

type HeaderList = Vec<(String, Option<Vec<u8>>)>;

/// A record as a user hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: HeaderList,
}

/// A record as a reader returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    offset: i64,
    rec: Rec,
}

/// The producer fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Producer {
    id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
}

const UNSTAMPED: Producer = Producer {
    id: -1,
    epoch: -1,
    base_sequence: -1,
    transactional: false,
};

/// Every codec, in our naming and kafka-protocol's.
const CODECS: [(Compression, KpCompression); 5] = [
    (Compression::None, KpCompression::None),
    (Compression::Gzip, KpCompression::Gzip),
    (Compression::Snappy, KpCompression::Snappy),
    (Compression::Lz4, KpCompression::Lz4),
    (Compression::Zstd, KpCompression::Zstd),
];

const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

fn h(key: &str, value: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
    (key.to_owned(), value.map(<[u8]>::to_vec))
}

/// Records covering the field edge cases: null and empty keys and values,
/// null and empty header values, no headers, many headers, UTF-8 header
/// names, timestamps before and after the first one. Header names are unique
/// within a record, because kafka-protocol keeps headers in a map.
fn edge_records() -> Vec<Rec> {
    let json = |i: usize| {
        format!(
            r#"{{"event":"page_view","user":{i},"path":"/items/{}","ms":{}}}"#,
            i * 7,
            i * 13
        )
        .into_bytes()
    };
    let mut out = vec![
        Rec {
            timestamp: BASE_TIMESTAMP,
            key: Some(b"user-1".to_vec()),
            value: Some(json(1)),
            headers: vec![
                h("trace-id", Some(b"abc-123")),
                h("null", None),
                h("empty", Some(b"")),
            ],
        },
        Rec {
            timestamp: BASE_TIMESTAMP + 5,
            key: None,
            value: Some(json(2)),
            headers: vec![],
        },
        Rec {
            timestamp: BASE_TIMESTAMP - 3,
            key: Some(Vec::new()),
            value: None,
            headers: vec![h("only-null", None)],
        },
        Rec {
            timestamp: BASE_TIMESTAMP + 1_000_000,
            key: Some(b"user-4".to_vec()),
            value: Some(Vec::new()),
            headers: vec![
                h("", Some(b"empty name")),
                h("grüße", Some("ünïcödé".as_bytes())),
            ],
        },
        Rec {
            timestamp: BASE_TIMESTAMP,
            key: None,
            value: None,
            headers: (0..20)
                .map(|i| h(&format!("h{i}"), (i % 3 != 0).then_some(&b"v"[..])))
                .collect(),
        },
    ];
    for i in 5..40 {
        out.push(Rec {
            timestamp: BASE_TIMESTAMP + i as i64,
            key: Some(format!("user-{}", i % 7).into_bytes()),
            value: Some(json(i)),
            headers: vec![h("seq", Some(i.to_string().as_bytes()))],
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Our side.

/// A config that applies `codec` even when it does not pay (so every codec
/// is exercised), with room for large batches.
fn config(codec: Compression) -> BatchConfig {
    BatchConfig {
        max_batch_bytes: 8 << 20,
        hard_max_bytes: 8 << 20,
        uncompressed_fallback: false,
        ..BatchConfig::new(codec)
    }
}

fn header_refs(headers: &HeaderList) -> Vec<(&str, Option<&[u8]>)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect()
}

fn build(codec: Compression, base_timestamp: i64, records: &[Rec]) -> SealedBatch {
    let mut builder = BatchBuilder::new(config(codec), base_timestamp);
    for (i, r) in records.iter().enumerate() {
        let outcome = builder
            .try_append(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &header_refs(&r.headers),
            )
            .unwrap_or_else(|e| panic!("append record {i}: {e}"));
        assert_eq!(outcome, AppendOutcome::Appended, "record {i}");
    }
    let sealed = builder.seal().expect("seal");
    assert_eq!(sealed.compression(), codec, "the codec is applied");
    sealed
}

fn stamp(batch: &mut SealedBatch, p: Producer) {
    batch.stamp(p.id, p.epoch, p.base_sequence, p.transactional);
}

/// Reads every batch and record in `data` with our reader.
fn try_read_ours(
    data: &[u8],
    options: ReadOptions,
) -> Result<Vec<(BatchHeader, Vec<Read>)>, RecordsError> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for batch in BatchReader::with_options(data, options) {
        let batch = batch?;
        let mut records = Vec::new();
        for record in batch.records(&mut scratch)? {
            let record = record?;
            let headers = record
                .headers()
                .map(|h| {
                    // Lossless for the UTF-8 names every test writes; mutated
                    // input may hold anything.
                    let key = String::from_utf8_lossy(h.key).into_owned();
                    (key, h.value.map(<[u8]>::to_vec))
                })
                .collect::<HeaderList>();
            assert_eq!(headers.len(), record.header_count());
            records.push(Read {
                offset: record.offset(),
                rec: Rec {
                    timestamp: record.timestamp(),
                    key: record.key().map(<[u8]>::to_vec),
                    value: record.value().map(<[u8]>::to_vec),
                    headers,
                },
            });
        }
        out.push((*batch.header(), records));
    }
    Ok(out)
}

/// Reads a buffer that must be whole and valid.
fn read_ours(data: &[u8]) -> Vec<(BatchHeader, Vec<Read>)> {
    let batches = try_read_ours(data, ReadOptions::default()).expect("our reader reads the batch");
    let mut reader = BatchReader::new(data);
    reader.by_ref().for_each(drop);
    assert!(reader.remaining().is_empty(), "nothing left unread");
    batches
}

/// What a reader should return for `records` stored from `base_offset` on.
fn expected(records: &[Rec], base_offset: i64) -> Vec<Read> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Read {
            offset: base_offset + i as i64,
            rec: r.clone(),
        })
        .collect()
}

fn assert_producer(header: &BatchHeader, p: Producer) {
    assert_eq!(header.producer_id, p.id, "producer id");
    assert_eq!(header.producer_epoch, p.epoch, "producer epoch");
    assert_eq!(header.base_sequence, p.base_sequence, "base sequence");
    assert_eq!(
        header.is_transactional(),
        p.transactional,
        "transactional bit"
    );
}

// ---------------------------------------------------------------------------
// kafka-protocol's side.

fn kp_decode(data: &[u8]) -> Vec<kafka_protocol::records::RecordSet> {
    let mut buf = Bytes::copy_from_slice(data);
    RecordBatchDecoder::decode_all(&mut buf).expect("kafka-protocol decodes the batch")
}

fn kp_read(r: &KpRecord) -> Read {
    Read {
        offset: r.offset,
        rec: Rec {
            timestamp: r.timestamp,
            key: r.key.as_ref().map(|b| b.to_vec()),
            value: r.value.as_ref().map(|b| b.to_vec()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec())))
                .collect(),
        },
    }
}

/// kafka-protocol records for `records` from `base_offset` on. Sequences
/// count from the base sequence (kafka-protocol groups records into one
/// batch only while offset minus sequence stays the same).
fn kp_records(records: &[Rec], base_offset: i64, p: Producer) -> Vec<KpRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| KpRecord {
            transactional: p.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: p.id,
            producer_epoch: p.epoch,
            timestamp_type: KpTimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: p.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                .collect(),
        })
        .collect()
}

fn kp_encode(records: &[KpRecord], codec: KpCompression) -> BytesMut {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("kafka-protocol encodes");
    buf
}

/// Checks kafka-protocol's view of a batch we built: one batch holding
/// `records` with the producer fields of `p`.
fn assert_kp_decodes(bytes: &[u8], codec: KpCompression, records: &[Rec], p: Producer) {
    let sets = kp_decode(bytes);
    assert_eq!(sets.len(), 1, "one batch");
    let set = &sets[0];
    assert_eq!(set.version, 2);
    assert_eq!(set.compression, codec);
    let got: Vec<Read> = set.records.iter().map(kp_read).collect();
    assert_eq!(got, expected(records, 0));
    for (i, r) in set.records.iter().enumerate() {
        assert_eq!(r.producer_id, p.id, "record {i} producer id");
        assert_eq!(r.producer_epoch, p.epoch, "record {i} producer epoch");
        assert_eq!(
            r.sequence,
            p.base_sequence.wrapping_add(i as i32),
            "record {i} sequence"
        );
        assert_eq!(r.transactional, p.transactional, "record {i} transactional");
        assert!(!r.control, "record {i} is not a control record");
        assert_eq!(r.timestamp_type, KpTimestampType::Creation);
        assert_eq!(r.partition_leader_epoch, -1);
    }
}

// ---------------------------------------------------------------------------
// Byte surgery on batches.

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Rewrites the batch length and CRC after an edit.
fn fix_up(batch: &mut [u8]) {
    let length = (batch.len() - 12) as i32;
    batch[offsets::BATCH_LENGTH..offsets::PARTITION_LEADER_EPOCH]
        .copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[offsets::ATTRIBUTES..]);
    batch[offsets::CRC..offsets::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
}

/// The header of `template` (codec bits replaced by `codec_id`) followed by
/// `section`, with length and CRC made consistent.
fn with_section(template: &[u8], codec_id: u8, section: &[u8]) -> Vec<u8> {
    let mut batch = template[..BATCH_HEADER_LEN].to_vec();
    let attrs = i16::from_be_bytes([batch[21], batch[22]]) & !0x07 | i16::from(codec_id);
    batch[offsets::ATTRIBUTES..offsets::LAST_OFFSET_DELTA].copy_from_slice(&attrs.to_be_bytes());
    batch.extend_from_slice(section);
    fix_up(&mut batch);
    batch
}

fn set_record_count(batch: &mut [u8], count: i32) {
    batch[offsets::RECORD_COUNT..offsets::RECORDS].copy_from_slice(&count.to_be_bytes());
    fix_up(batch);
}

/// Frames `data` as xerial snappy by hand: the 16-byte header (magic
/// `\x82SNAPPY\0`, version 1, compatible version 1), then a big-endian
/// length and a raw snappy block for each chunk of the given sizes (the
/// last size repeats).
fn xerial(data: &[u8], chunk_sizes: &[usize]) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\0".to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    let mut rest = data;
    let mut sizes = chunk_sizes.iter().copied();
    let mut size = sizes.next().expect("a chunk size");
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        let block = encoder.compress_vec(chunk).expect("snappy compresses");
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&block);
        rest = tail;
        size = sizes.next().unwrap_or(size);
    }
    out
}

fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

// ---------------------------------------------------------------------------
// Our batches through kafka-protocol's decoder.

#[test]
fn our_batches_decode_with_kafka_protocol_every_codec() {
    let records = edge_records();
    for (codec, kp_codec) in CODECS {
        let mut batch = build(codec, BASE_TIMESTAMP, &records);
        assert_kp_decodes(batch.bytes(), kp_codec, &records, UNSTAMPED);

        let idempotent = Producer {
            id: 4242,
            epoch: 7,
            base_sequence: 100,
            transactional: false,
        };
        stamp(&mut batch, idempotent);
        assert_kp_decodes(batch.bytes(), kp_codec, &records, idempotent);

        // A retry under a new epoch in a transaction: re-stamped in place.
        let transactional = Producer {
            id: 4242,
            epoch: 8,
            base_sequence: i32::MAX - 10,
            transactional: true,
        };
        stamp(&mut batch, transactional);
        assert_kp_decodes(batch.bytes(), kp_codec, &records, transactional);

        // Our own reader agrees, header included.
        let ours = read_ours(batch.bytes());
        assert_eq!(ours.len(), 1);
        let (header, got) = &ours[0];
        assert_eq!(got, &expected(&records, 0), "{codec}");
        assert_producer(header, transactional);
        assert_eq!(header.compression, codec);
        assert_eq!(header.record_count, records.len() as i32);
        assert_eq!(header.last_offset_delta, records.len() as i32 - 1);
        assert_eq!(header.base_timestamp, BASE_TIMESTAMP);
        assert_eq!(
            header.max_timestamp,
            records.iter().map(|r| r.timestamp).max().unwrap()
        );
        assert_eq!(header.partition_leader_epoch, -1);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(!header.is_control());
    }
}

/// Batches past 64 KiB are re-stamped by combining CRCs instead of rescanning
/// the batch; kafka-protocol recomputes the CRC from scratch, so it checks
/// the combination.
#[test]
fn large_restamped_batches_decode_with_kafka_protocol() {
    let records: Vec<Rec> = (0..48)
        .map(|i| Rec {
            timestamp: BASE_TIMESTAMP + i,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(incompressible(3000, i as u64)),
            headers: vec![h("n", Some(i.to_string().as_bytes()))],
        })
        .collect();
    for (codec, kp_codec) in CODECS {
        let mut batch = build(codec, BASE_TIMESTAMP, &records);
        assert!(batch.len() > 128 * 1024, "{codec}: {} bytes", batch.len());
        for (n, p) in [
            Producer {
                id: 1,
                epoch: 0,
                base_sequence: 0,
                transactional: false,
            },
            Producer {
                id: 1,
                epoch: 1,
                base_sequence: 0,
                transactional: true,
            },
            Producer {
                id: i64::MAX,
                epoch: i16::MAX,
                base_sequence: 77,
                transactional: false,
            },
        ]
        .into_iter()
        .enumerate()
        {
            stamp(&mut batch, p);
            assert_eq!(
                batch.crc(),
                crc32c::crc32c(&batch.bytes()[offsets::ATTRIBUTES..]),
                "stamp {n}"
            );
            assert_kp_decodes(batch.bytes(), kp_codec, &records, p);
            assert_eq!(read_ours(batch.bytes())[0].1, expected(&records, 0));
        }
        // A clone still in flight keeps its stamp; the re-stamp copies.
        let in_flight = batch.clone();
        let next = Producer {
            id: 2,
            epoch: 0,
            base_sequence: 5,
            transactional: false,
        };
        stamp(&mut batch, next);
        assert_eq!(in_flight.producer_id(), i64::MAX);
        assert_kp_decodes(
            in_flight.bytes(),
            kp_codec,
            &records,
            Producer {
                id: i64::MAX,
                epoch: i16::MAX,
                base_sequence: 77,
                transactional: false,
            },
        );
        assert_kp_decodes(batch.bytes(), kp_codec, &records, next);
    }
}

/// Without compression there is one right encoding, and both encoders write
/// it: header, record framing and CRC.
#[test]
fn uncompressed_batches_are_byte_identical_to_kafka_protocol() {
    let records = edge_records();
    // kafka-protocol takes the smallest timestamp as the base.
    let base = records.iter().map(|r| r.timestamp).min().unwrap();
    for p in [
        UNSTAMPED,
        Producer {
            id: 9,
            epoch: 3,
            base_sequence: 41,
            transactional: false,
        },
        Producer {
            id: 9,
            epoch: 4,
            base_sequence: 0,
            transactional: true,
        },
    ] {
        let mut ours = build(Compression::None, base, &records);
        if p != UNSTAMPED {
            stamp(&mut ours, p);
        }
        let theirs = kp_encode(&kp_records(&records, 0, p), KpCompression::None);
        assert_eq!(ours.bytes()[..], theirs[..], "{p:?}");
    }
}

// ---------------------------------------------------------------------------
// kafka-protocol's batches through our reader.

#[test]
fn kafka_protocol_batches_decode_with_our_reader_every_codec() {
    let records = edge_records();
    let p = Producer {
        id: 99,
        epoch: 2,
        base_sequence: 5,
        transactional: true,
    };
    for (codec, kp_codec) in CODECS {
        let bytes = kp_encode(&kp_records(&records, 1000, p), kp_codec);
        let batches = read_ours(&bytes);
        assert_eq!(batches.len(), 1, "{codec}");
        let (header, got) = &batches[0];
        assert_eq!(got, &expected(&records, 1000), "{codec}");
        assert_eq!(header.compression, codec);
        assert_eq!(header.base_offset, 1000);
        assert_eq!(header.next_offset(), 1000 + records.len() as i64);
        assert_producer(header, p);
        assert_eq!(header.record_count, records.len() as i32);
        assert_eq!(
            header.base_timestamp,
            records.iter().map(|r| r.timestamp).min().unwrap()
        );
        assert_eq!(
            header.max_timestamp,
            records.iter().map(|r| r.timestamp).max().unwrap()
        );
        if codec == Compression::Snappy {
            let batch = BatchReader::new(&bytes).next().unwrap().unwrap();
            assert!(
                batch.records_section().starts_with(&XERIAL_MAGIC),
                "kafka-protocol writes xerial-framed snappy"
            );
        }
    }
}

/// A fetch returns several batches back to back, in different codecs and
/// from different producers; the reader walks them all.
#[test]
fn kafka_protocol_multi_batch_buffer_decodes_with_our_reader() {
    let records = edge_records();
    let (first, second) = records.split_at(17);
    let mut buf = BytesMut::new();
    let mut want = Vec::new();
    let mut offset = 0i64;
    for (n, (codec, kp_codec)) in CODECS.iter().copied().enumerate() {
        let part = if n % 2 == 0 { first } else { second };
        let p = Producer {
            id: 10 + n as i64,
            epoch: 0,
            base_sequence: 0,
            transactional: n % 2 == 1,
        };
        buf.extend_from_slice(&kp_encode(&kp_records(part, offset, p), kp_codec));
        want.push((codec, p, expected(part, offset)));
        offset += part.len() as i64;
    }
    let batches = read_ours(&buf);
    assert_eq!(batches.len(), want.len());
    for ((header, got), (codec, p, records)) in batches.iter().zip(&want) {
        assert_eq!(header.compression, *codec);
        assert_producer(header, *p);
        assert_eq!(got, records, "{codec}");
    }
}

/// Snappy written as one raw block (as librdkafka writes it), produced here
/// through kafka-protocol's encoder with a custom compressor.
#[test]
fn raw_snappy_block_from_kafka_protocol_decodes() {
    let records = edge_records();
    let p = Producer {
        id: 5,
        epoch: 1,
        base_sequence: 0,
        transactional: false,
    };
    let kp = kp_records(&records, 0, p);
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: KpCompression::Snappy,
    };
    RecordBatchEncoder::encode_with_custom_compression(
        &mut buf,
        &kp,
        &options,
        Some(
            |section: &mut BytesMut, out: &mut BytesMut, _: KpCompression| {
                let block = snap::raw::Encoder::new()
                    .compress_vec(&section[..])
                    .expect("snappy compresses");
                out.put_slice(&block);
                Ok(())
            },
        ),
    )
    .expect("kafka-protocol encodes");

    let batch = BatchReader::new(&buf).next().unwrap().unwrap();
    assert!(
        !batch.records_section().starts_with(&XERIAL_MAGIC),
        "a raw block"
    );
    let batches = read_ours(&buf);
    assert_eq!(batches[0].0.compression, Compression::Snappy);
    assert_eq!(batches[0].1, expected(&records, 0));
    // kafka-protocol reads the raw form too.
    let got: Vec<Read> = kp_decode(&buf)[0].records.iter().map(kp_read).collect();
    assert_eq!(got, expected(&records, 0));
}

/// Both snappy forms built by hand from the same records section: xerial
/// framing with uneven chunks (not only the 32 KiB blocks the Java client
/// writes) and a single raw block.
#[test]
fn hand_built_snappy_both_forms_decode() {
    let records: Vec<Rec> = (0..800)
        .map(|i| Rec {
            timestamp: BASE_TIMESTAMP + i,
            key: Some(format!("user-{}", i % 13).into_bytes()),
            value: Some(
                format!(
                    r#"{{"n":{i},"payload":"{}"}}"#,
                    "abcdefghij".repeat(1 + (i as usize % 20))
                )
                .into_bytes(),
            ),
            headers: vec![h("i", Some(i.to_string().as_bytes())), h("nil", None)],
        })
        .collect();
    let plain = build(Compression::None, BASE_TIMESTAMP, &records);
    let section = &plain.bytes()[BATCH_HEADER_LEN..];
    assert!(section.len() > 64 * 1024, "several 32 KiB blocks");

    let forms = [
        ("xerial, 32 KiB chunks", xerial(section, &[32 * 1024])),
        (
            "xerial, uneven chunks",
            xerial(section, &[1, 1000, 7 * 1024, 32 * 1024, 50_000]),
        ),
        ("xerial, one chunk", xerial(section, &[section.len()])),
        (
            "raw block",
            snap::raw::Encoder::new().compress_vec(section).unwrap(),
        ),
    ];
    for (name, payload) in forms {
        assert_eq!(
            payload.starts_with(&XERIAL_MAGIC),
            name.starts_with("xerial")
        );
        let batch = with_section(plain.bytes(), Compression::Snappy.codec_id(), &payload);
        let ours = read_ours(&batch);
        assert_eq!(ours[0].0.compression, Compression::Snappy, "{name}");
        assert_eq!(ours[0].1, expected(&records, 0), "{name}");
        let theirs: Vec<Read> = kp_decode(&batch)[0].records.iter().map(kp_read).collect();
        assert_eq!(
            theirs,
            expected(&records, 0),
            "{name}: kafka-protocol agrees"
        );
    }
}

// ---------------------------------------------------------------------------
// librdkafka's batches, as the broker stored them.

fn rd_records(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            timestamp: BASE_TIMESTAMP + (i as i64) * 3,
            key: match i % 5 {
                0 => None,
                _ => Some(format!("customer-{}", i % 17).into_bytes()),
            },
            value: match i % 11 {
                3 => None,
                7 => Some(Vec::new()),
                _ => Some(
                    format!(
                        r#"{{"order":{i},"customer":{},"items":[{}],"note":"{}"}}"#,
                        i % 17,
                        (0..i % 6)
                            .map(|n| (n * 31).to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        "thank you ".repeat(i % 9)
                    )
                    .into_bytes(),
                ),
            },
            headers: match i % 4 {
                0 => vec![],
                1 => vec![h("index", Some(i.to_string().as_bytes()))],
                2 => vec![h("null", None), h("empty", Some(b""))],
                _ => vec![
                    h("index", Some(i.to_string().as_bytes())),
                    h("origin", Some(b"rdkafka")),
                    h("index", Some(b"duplicate name")),
                ],
            },
        })
        .collect()
}

const RD_TOPIC: &str = "compat";

/// Produces `records` with librdkafka to a one-partition topic of the fake
/// cluster and reads the stored batches, as Fetch serves them, with our
/// reader.
async fn rdkafka_round_trip(compression: &str, codec: Compression) {
    let records = rd_records(600);
    let cluster = FakeCluster::builder().topic(RD_TOPIC, 1).build().await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression)
        .set("linger.ms", "20")
        .set("batch.num.messages", "150")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("create producer");

    let mut pending = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(RdHeader {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut fr = FutureRecord::<[u8], [u8]>::to(RD_TOPIC)
            .partition(0)
            .timestamp(r.timestamp)
            .headers(headers);
        if let Some(key) = &r.key {
            fr = fr.key(key);
        }
        if let Some(value) = &r.value {
            fr = fr.payload(value);
        }
        match producer.send_result(fr) {
            Ok(future) => pending.push((i, future)),
            Err((e, _)) => panic!("enqueue record {i}: {e}"),
        }
    }
    for (i, future) in pending {
        let delivery = tokio::time::timeout(Duration::from_secs(30), future)
            .await
            .expect("delivery in time")
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("record {i} failed: {e}"));
        assert_eq!(
            (delivery.partition, delivery.offset),
            (0, i as i64),
            "record {i} in order"
        );
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let stored = cluster.raw_batches(RD_TOPIC, 0);
    assert!(
        stored.len() > 1,
        "{compression}: several batches ({})",
        stored.len()
    );
    let fetched: Vec<u8> = stored.iter().flat_map(|b| b.iter().copied()).collect();
    let batches = read_ours(&fetched);
    assert_eq!(batches.len(), stored.len());

    let mut got = Vec::new();
    let mut compressed = 0;
    for ((header, batch_records), raw) in batches.iter().zip(&stored) {
        assert_eq!(header.size(), raw.len());
        assert_eq!(
            header.base_offset,
            got.len() as i64,
            "batches are contiguous"
        );
        assert!(header.producer_id >= 0, "idempotent producer id");
        assert_eq!(
            i64::from(header.base_sequence),
            header.base_offset,
            "one producer from 0"
        );
        assert!(!header.is_transactional());
        if header.compression == codec {
            compressed += 1;
        } else {
            // librdkafka sends a batch uncompressed when the codec does not
            // make it smaller.
            assert_eq!(header.compression, Compression::None);
        }
        if codec == Compression::Snappy && header.compression == codec {
            let section = &raw[BATCH_HEADER_LEN..];
            assert!(
                !section.starts_with(&XERIAL_MAGIC),
                "librdkafka writes raw snappy"
            );
        }
        got.extend(batch_records.iter().cloned());
    }
    assert!(compressed > 0, "{compression}: no batch was compressed");
    assert_eq!(got.len(), records.len());
    for (i, (g, want)) in got.iter().zip(expected(&records, 0)).enumerate() {
        assert_eq!(g, &want, "{compression}: record {i}");
    }

    // The fake cluster decoded the same records with kafka-protocol.
    let theirs = cluster.records(RD_TOPIC, 0);
    for (g, s) in got.iter().zip(&theirs) {
        assert_eq!(g.offset, s.offset);
        assert_eq!(g.rec.key.as_deref(), s.key.as_deref());
        assert_eq!(g.rec.value.as_deref(), s.value.as_deref());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_batches_decode_with_our_reader_none() {
    rdkafka_round_trip("none", Compression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_batches_decode_with_our_reader_gzip() {
    rdkafka_round_trip("gzip", Compression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_batches_decode_with_our_reader_snappy() {
    rdkafka_round_trip("snappy", Compression::Snappy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_batches_decode_with_our_reader_lz4() {
    rdkafka_round_trip("lz4", Compression::Lz4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_batches_decode_with_our_reader_zstd() {
    rdkafka_round_trip("zstd", Compression::Zstd).await;
}

// ---------------------------------------------------------------------------
// Timestamps at the edges of the delta range.

#[test]
fn extreme_timestamps_within_the_delta_range_round_trip() {
    let rec = |timestamp| Rec {
        timestamp,
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers: vec![],
    };
    // (base, timestamps): every delta fits an i64, the largest ones exactly.
    let cases: [(i64, &[i64]); 5] = [
        (0, &[0, i64::MIN, i64::MAX]),
        (i64::MIN, &[i64::MIN, -1, i64::MIN + 1]),
        (i64::MAX, &[i64::MAX, -1, 0]),
        (-1, &[i64::MIN, i64::MAX - 1, -1]),
        (
            BASE_TIMESTAMP,
            &[BASE_TIMESTAMP, i64::MAX, BASE_TIMESTAMP + i64::MIN],
        ),
    ];
    for (base, timestamps) in cases {
        let records: Vec<Rec> = timestamps.iter().map(|&t| rec(t)).collect();
        for (codec, kp_codec) in CODECS {
            let batch = build(codec, base, &records);
            let ours = read_ours(batch.bytes());
            assert_eq!(ours[0].1, expected(&records, 0), "base {base}, {codec}");
            assert_eq!(ours[0].0.max_timestamp, *timestamps.iter().max().unwrap());
            assert_kp_decodes(batch.bytes(), kp_codec, &records, UNSTAMPED);
        }
    }
}

#[test]
fn timestamp_deltas_that_overflow_are_refused_not_wrapped() {
    for (base, timestamp) in [
        (1, i64::MIN),
        (BASE_TIMESTAMP, i64::MIN),
        (i64::MAX, i64::MIN),
        (i64::MAX, -2),
        (-1, i64::MAX),
        (i64::MIN, 0),
        (i64::MIN, i64::MAX),
    ] {
        assert!(timestamp.checked_sub(base).is_none());
        let mut builder = BatchBuilder::new(config(Compression::None), base);
        assert_eq!(
            builder.try_append(base, Some(b"first"), None, &[]),
            Ok(AppendOutcome::Appended),
            "the base timestamp itself fits"
        );
        let size = builder.estimated_size();
        let err = builder
            .try_append(timestamp, Some(b"k"), Some(b"v"), &[])
            .unwrap_err();
        assert_eq!(
            err,
            RecordsError::TimestampOutOfRange {
                timestamp,
                base_timestamp: base
            }
        );
        assert_eq!(builder.estimated_size(), size, "nothing written");
        assert_eq!(builder.record_count(), 1);
        // The batch holds only the first record, intact.
        let batch = builder.seal().expect("seal");
        let ours = read_ours(batch.bytes());
        assert_eq!(ours[0].1.len(), 1);
        assert_eq!(ours[0].1[0].rec.timestamp, base);
        assert_eq!(ours[0].0.max_timestamp, base);
        // The record fits a batch of its own.
        let mut fresh = BatchBuilder::new(config(Compression::None), timestamp);
        assert_eq!(
            fresh.try_append(timestamp, Some(b"k"), Some(b"v"), &[]),
            Ok(AppendOutcome::Appended)
        );
    }
}

// ---------------------------------------------------------------------------
// Property tests.

fn nullable_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        3 => vec(any::<u8>(), 0..max).prop_map(Some),
        // Runs and repeated text, which the codecs do compress.
        2 => (any::<u8>(), 0..max * 2).prop_map(|(b, n)| Some(vec![b; n])),
        2 => ("[a-z]{1,8}", 0..max / 4).prop_map(|(s, n)| Some(s.repeat(n).into_bytes())),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(i64::MIN),
        1 => Just(i64::MIN + 1),
        1 => Just(-1i64),
        1 => Just(0i64),
        1 => Just(i64::MAX - 1),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
        4 => BASE_TIMESTAMP - 1_000_000..BASE_TIMESTAMP + 1_000_000,
    ]
}

fn record() -> impl Strategy<Value = Rec> {
    (
        timestamp(),
        nullable_bytes(64),
        nullable_bytes(300),
        vec(("\\PC{0,10}", nullable_bytes(24)), 0..20),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers,
        })
}

fn producer() -> impl Strategy<Value = Option<Producer>> {
    proptest::option::of(
        (0..i64::MAX, 0..i16::MAX, 0..i32::MAX, any::<bool>()).prop_map(
            |(id, epoch, base_sequence, transactional)| Producer {
                id,
                epoch,
                base_sequence,
                transactional,
            },
        ),
    )
}

/// One case: a base timestamp, records, and an optional stamp.
fn batch_case() -> impl Strategy<Value = (i64, Vec<Rec>, Option<Producer>)> {
    (
        prop_oneof![timestamp(), Just(BASE_TIMESTAMP)],
        vec(record(), 1..24),
        producer(),
    )
}

fn round_trip(
    codec: Compression,
    (base, records, stamp_with): (i64, Vec<Rec>, Option<Producer>),
) -> Result<(), TestCaseError> {
    let mut builder = BatchBuilder::new(config(codec), base);
    let mut appended = Vec::new();
    for r in &records {
        let headers = header_refs(&r.headers);
        let size_before = builder.estimated_size();
        let predicted =
            builder.record_size(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
        let outcome =
            builder.try_append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
        if r.timestamp.checked_sub(base).is_some() {
            prop_assert_eq!(outcome, Ok(AppendOutcome::Appended));
            prop_assert_eq!(builder.estimated_size(), size_before + predicted);
            appended.push(r.clone());
        } else {
            prop_assert_eq!(
                outcome,
                Err(RecordsError::TimestampOutOfRange {
                    timestamp: r.timestamp,
                    base_timestamp: base
                })
            );
            prop_assert_eq!(builder.estimated_size(), size_before);
        }
        prop_assert_eq!(builder.record_count() as usize, appended.len());
    }
    if appended.is_empty() {
        prop_assert_eq!(builder.seal().unwrap_err(), RecordsError::EmptyBatch);
        return Ok(());
    }
    let size = builder.estimated_size();
    let mut batch = builder.seal().expect("seal");
    prop_assert_eq!(batch.uncompressed_size(), size);
    prop_assert_eq!(batch.compression(), codec);
    if codec == Compression::None {
        prop_assert_eq!(batch.len(), size);
    }
    let p = match stamp_with {
        Some(p) => {
            stamp(&mut batch, p);
            p
        }
        None => UNSTAMPED,
    };
    let bytes = batch.bytes();
    prop_assert_eq!(batch.crc(), crc32c::crc32c(&bytes[offsets::ATTRIBUTES..]));

    let batches = try_read_ours(bytes, ReadOptions::default())
        .map_err(|e| TestCaseError::fail(format!("read back: {e}")))?;
    prop_assert_eq!(batches.len(), 1);
    let (header, got) = &batches[0];
    prop_assert_eq!(got, &expected(&appended, 0));
    prop_assert_eq!(header.crc, crc32c::crc32c(&bytes[offsets::ATTRIBUTES..]));
    prop_assert_eq!(header.base_timestamp, base);
    prop_assert_eq!(
        header.max_timestamp,
        appended.iter().map(|r| r.timestamp).max().unwrap()
    );
    prop_assert_eq!(header.record_count as usize, appended.len());
    prop_assert_eq!(header.last_offset_delta as usize, appended.len() - 1);
    prop_assert_eq!(header.compression, codec);
    prop_assert_eq!(header.producer_id, p.id);
    prop_assert_eq!(header.producer_epoch, p.epoch);
    prop_assert_eq!(header.base_sequence, p.base_sequence);
    prop_assert_eq!(header.is_transactional(), p.transactional);
    prop_assert_eq!(header.size(), bytes.len());
    Ok(())
}

/// Flips bytes of a valid batch. With the CRC check off, so that the flips
/// reach the fields it protects, the reader returns records or errors and
/// never panics; with it on, any change to the bytes it covers is caught.
fn mutated(
    codec: Compression,
    (base, records, _): (i64, Vec<Rec>, Option<Producer>),
    flips: Vec<(usize, u8)>,
) {
    let mut builder = BatchBuilder::new(config(codec), base);
    for r in &records {
        let headers = header_refs(&r.headers);
        let _ = builder.try_append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    let Ok(batch) = builder.seal() else { return };
    let original = batch.bytes();
    let mut bytes = original.to_vec();
    for (at, xor) in flips {
        let at = at % bytes.len();
        bytes[at] ^= xor.max(1);
    }
    let unchecked = ReadOptions {
        max_decompressed_bytes: 1 << 20,
        verify_crc: false,
    };
    let _ = try_read_ours(&bytes, unchecked);
    if bytes[..offsets::ATTRIBUTES] == original[..offsets::ATTRIBUTES] && bytes != original[..] {
        let err = BatchReader::new(&bytes)
            .next()
            .expect("an item")
            .unwrap_err();
        assert!(matches!(err, RecordsError::CrcMismatch { .. }), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip_none(case in batch_case()) {
        round_trip(Compression::None, case)?;
    }

    #[test]
    fn prop_round_trip_gzip(case in batch_case()) {
        round_trip(Compression::Gzip, case)?;
    }

    #[test]
    fn prop_round_trip_snappy(case in batch_case()) {
        round_trip(Compression::Snappy, case)?;
    }

    #[test]
    fn prop_round_trip_lz4(case in batch_case()) {
        round_trip(Compression::Lz4, case)?;
    }

    #[test]
    fn prop_round_trip_zstd(case in batch_case()) {
        round_trip(Compression::Zstd, case)?;
    }

    #[test]
    fn prop_mutated_batches_never_panic(
        codec in prop::sample::select(Compression::ALL.to_vec()),
        case in batch_case(),
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        mutated(codec, case, flips);
    }
}

// ---------------------------------------------------------------------------
// Malformed input.

/// A small valid batch per codec.
fn sample_batches() -> Vec<(Compression, Vec<u8>)> {
    let records: Vec<Rec> = edge_records().into_iter().take(8).collect();
    Compression::ALL
        .iter()
        .map(|&codec| {
            let mut batch = build(codec, BASE_TIMESTAMP, &records);
            stamp(
                &mut batch,
                Producer {
                    id: 3,
                    epoch: 1,
                    base_sequence: 10,
                    transactional: false,
                },
            );
            (codec, batch.bytes().to_vec())
        })
        .collect()
}

/// A batch cut short at the end of a buffer is what a broker returns when a
/// fetch reaches its size limit: the reader stops before it and leaves it in
/// `remaining`. Parsing the cut header directly is an error.
#[test]
fn truncated_batch_at_the_end_is_left_unread() {
    for (codec, batch) in sample_batches() {
        for cut in 0..batch.len() {
            let data = &batch[..cut];
            let mut reader = BatchReader::new(data);
            assert!(reader.next().is_none(), "{codec}: cut at {cut}");
            assert_eq!(reader.remaining(), data, "{codec}: cut at {cut}");
            if cut < BATCH_HEADER_LEN {
                assert!(matches!(
                    BatchHeader::parse(data),
                    Err(RecordsError::Truncated(_))
                ));
            }
            // After a whole batch, the partial one is left over.
            let mut two = batch.clone();
            two.extend_from_slice(data);
            let mut reader = BatchReader::new(&two);
            assert!(reader.next().unwrap().is_ok());
            assert!(reader.next().is_none());
            assert_eq!(reader.remaining(), data);
        }
    }
}

/// A batch whose length and CRC are consistent but whose records section is
/// cut short (a broken producer, or a bug in a proxy) is an error from the
/// records or the codec.
#[test]
fn truncated_records_section_is_an_error() {
    for (codec, batch) in sample_batches() {
        let section_len = batch.len() - BATCH_HEADER_LEN;
        for keep in 0..section_len {
            let cut = with_section(&batch, codec.codec_id(), &batch[BATCH_HEADER_LEN..][..keep]);
            match try_read_ours(&cut, ReadOptions::default()) {
                Err(RecordsError::Truncated(_) | RecordsError::CountMismatch { .. }) => {}
                Err(RecordsError::Compression(CompressionError::Corrupt { codec: c, .. })) => {
                    assert_eq!(c, codec);
                }
                other => panic!("{codec}: records section cut to {keep} bytes: {other:?}"),
            }
        }
    }
}

#[test]
fn bad_crc_is_refused() {
    for (codec, batch) in sample_batches() {
        let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        for at in [
            17,
            20,
            21,
            30,
            45,
            57,
            BATCH_HEADER_LEN,
            batch.len() / 2,
            batch.len() - 1,
        ] {
            let mut bad = batch.clone();
            bad[at] ^= 0x40;
            let mut reader = BatchReader::new(&bad);
            let err = reader.next().expect("an item").unwrap_err();
            let (want_stored, computed) = if at < offsets::ATTRIBUTES {
                (u32::from_be_bytes(bad[17..21].try_into().unwrap()), stored)
            } else {
                (stored, crc32c::crc32c(&bad[offsets::ATTRIBUTES..]))
            };
            assert_eq!(
                err,
                RecordsError::CrcMismatch {
                    stored: want_stored,
                    computed
                },
                "{codec} at {at}"
            );
            assert!(reader.next().is_none(), "the reader stops after an error");
            // kafka-protocol refuses it as well.
            let mut buf = Bytes::from(bad);
            assert!(RecordBatchDecoder::decode(&mut buf).is_err());
        }
    }
}

#[test]
fn bad_magic_is_refused() {
    for (codec, batch) in sample_batches() {
        for magic in [0i8, 1, 3, -1, i8::MAX] {
            let mut bad = batch.clone();
            bad[offsets::MAGIC] = magic as u8;
            let err = BatchReader::new(&bad).next().unwrap().unwrap_err();
            assert_eq!(err, RecordsError::UnsupportedMagic(magic), "{codec}");
            assert_eq!(
                BatchHeader::parse(&bad).unwrap_err(),
                RecordsError::UnsupportedMagic(magic)
            );
        }
    }
}

#[test]
fn bad_batch_length_and_codec_are_refused() {
    let (_, batch) = sample_batches().remove(0);
    for length in [i32::MIN, -1, 0, 48] {
        let mut bad = batch.clone();
        bad[8..12].copy_from_slice(&length.to_be_bytes());
        let err = BatchReader::new(&bad).next().unwrap().unwrap_err();
        assert_eq!(err, RecordsError::InvalidBatchLength(length));
    }
    for id in 5..=7u8 {
        let bad = with_section(&batch, id, &batch[BATCH_HEADER_LEN..]);
        let err = BatchReader::new(&bad).next().unwrap().unwrap_err();
        assert_eq!(err, RecordsError::UnknownCompression(id));
    }
}

#[test]
fn record_count_larger_than_the_bytes_is_refused() {
    for (codec, batch) in sample_batches() {
        let real = i32::from_be_bytes(batch[57..61].try_into().unwrap());
        for declared in [real + 1, 1000, i32::MAX] {
            let mut bad = batch.clone();
            set_record_count(&mut bad, declared);
            let mut scratch = Vec::new();
            let b = BatchReader::new(&bad)
                .next()
                .unwrap()
                .expect("the header is fine");
            let results: Vec<_> = b.records(&mut scratch).expect("decompresses").collect();
            assert_eq!(
                results.len(),
                real as usize + 1,
                "{codec}: stops at the first error"
            );
            assert!(results[..real as usize].iter().all(Result::is_ok));
            assert_eq!(
                results[real as usize],
                Err(RecordsError::CountMismatch {
                    declared,
                    found: real
                }),
                "{codec}"
            );
        }
        // Fewer declared than present: the rest is trailing garbage.
        let mut bad = batch.clone();
        set_record_count(&mut bad, real - 1);
        assert!(matches!(
            try_read_ours(&bad, ReadOptions::default()),
            Err(RecordsError::TrailingBytes { .. })
        ));
        let mut bad = batch.clone();
        set_record_count(&mut bad, -1);
        assert_eq!(
            BatchReader::new(&bad).next().unwrap().unwrap_err(),
            RecordsError::InvalidLength {
                field: "record count",
                value: -1
            }
        );
    }
}

/// Lengths and counts inside a record that claim more than the bytes hold.
#[test]
fn record_fields_larger_than_the_bytes_are_refused() {
    let (_, template) = sample_batches().remove(0);
    // attributes, timestamp delta, offset delta, then the given fields.
    let record = |fields: &[i64], tail: &[u8]| {
        let mut body = vec![0u8];
        put_varlong(&mut body, 0);
        put_varlong(&mut body, 0);
        for &f in fields {
            put_varlong(&mut body, f);
        }
        body.extend_from_slice(tail);
        let mut rec = Vec::new();
        put_varlong(&mut rec, body.len() as i64);
        rec.extend_from_slice(&body);
        rec
    };
    let huge = i64::from(i32::MAX);
    let cases: Vec<(&str, Vec<u8>, RecordsError)> = vec![
        (
            "key length",
            record(&[huge], b"abc"),
            RecordsError::Truncated("key"),
        ),
        (
            "value length",
            record(&[-1, huge], b"abc"),
            RecordsError::Truncated("value"),
        ),
        (
            "negative key length",
            record(&[-2], b""),
            RecordsError::InvalidLength {
                field: "key",
                value: -2,
            },
        ),
        (
            "header count",
            record(&[-1, -1, huge], b"abcd"),
            RecordsError::InvalidLength {
                field: "header count",
                value: huge,
            },
        ),
        (
            "header key length",
            record(&[-1, -1, 1, huge], b"abcd"),
            RecordsError::Truncated("header key"),
        ),
        (
            "record length",
            {
                let mut r = Vec::new();
                put_varlong(&mut r, huge);
                r.extend_from_slice(&[0; 16]);
                r
            },
            RecordsError::Truncated("record"),
        ),
        (
            "overlong varint",
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            RecordsError::InvalidVarint("record length"),
        ),
    ];
    for (name, section, want) in cases {
        let mut batch = with_section(&template, 0, &section);
        set_record_count(&mut batch, 1);
        assert_eq!(
            try_read_ours(&batch, ReadOptions::default()).unwrap_err(),
            want,
            "{name}"
        );
    }
}

/// A records section that decompresses to far more than the limit: the
/// reader stops at the limit, for every codec.
#[test]
fn decompression_bomb_over_the_cap_is_refused() {
    const CAP: usize = 256 * 1024;
    let bomb = Rec {
        timestamp: BASE_TIMESTAMP,
        key: None,
        value: Some(vec![0; 2 << 20]),
        headers: vec![],
    };
    let capped = ReadOptions {
        max_decompressed_bytes: CAP,
        verify_crc: true,
    };
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = build(codec, BASE_TIMESTAMP, std::slice::from_ref(&bomb));
        assert!(
            batch.len() < CAP,
            "{codec}: the bomb is small ({} bytes)",
            batch.len()
        );
        let err = try_read_ours(batch.bytes(), capped).unwrap_err();
        assert!(err.is_too_large(), "{codec}: {err}");
        assert_eq!(
            err,
            RecordsError::Compression(CompressionError::OutputTooLarge { codec, limit: CAP })
        );
        // Under the default limit the same batch is valid.
        assert_eq!(
            read_ours(batch.bytes())[0].1,
            expected(std::slice::from_ref(&bomb), 0)
        );
    }

    // Hand-made payloads that declare a huge size: refused before anything
    // that size is allocated.
    let (_, template) = sample_batches().remove(0);
    // A raw snappy block's preamble (an unsigned varint) declaring 2^32 - 1 bytes.
    let mut raw_claim = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    raw_claim.extend_from_slice(&[0; 8]);
    let mut xerial_claim = xerial(&[0; 16], &[16]);
    xerial_claim.truncate(16);
    xerial_claim.extend_from_slice(&u32::MAX.to_be_bytes());
    xerial_claim.extend_from_slice(&[0; 8]);
    let mut lz4_claim = vec![0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82];
    lz4_claim.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    lz4_claim.extend_from_slice(&[0; 8]);
    for (codec, payload) in [
        (Compression::Snappy, raw_claim),
        (Compression::Snappy, xerial_claim),
        (Compression::Lz4, lz4_claim),
    ] {
        let batch = with_section(&template, codec.codec_id(), &payload);
        let err = try_read_ours(&batch, capped).unwrap_err();
        assert!(
            matches!(err, RecordsError::Compression(_)),
            "{codec}: {err}"
        );
    }
}
