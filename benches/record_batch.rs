//! Encode-path benchmark: full RecordBatch v2 bytes (CRC included) built from
//! the same user records by our [`BatchBuilder`] and by kafka-protocol's
//! `RecordBatchEncoder`, at 100 B and 1 KiB values, uncompressed and with
//! every codec; and, for each codec, the raw codec library compressing the
//! same records section on its own.
//!
//! * Ours: append N records into a reused builder, seal.
//! * kafka-protocol: build its `Record` structs from the user data (copying
//!   key and value into `Bytes`), encode into a fresh buffer. This is what a
//!   client built on kafka-protocol has to do for every batch.
//! * Raw codec: lz4_flex, snap, zstd and flate2 (deflate) compressing the
//!   uncompressed records section of the same batch, with their state and
//!   output buffer reused: the speed the codec itself allows.
//!
//! Before anything is measured, both encoders' batches are decoded with both
//! our reader and kafka-protocol's decoder and checked to hold the same
//! records (and, uncompressed, to be byte-identical). Allocations are counted
//! with a counting global allocator and printed per appended record.
//!
//! Payloads are a pool of distinct JSON-like events (not one repeated buffer,
//! which would flatter the compressors); each batch takes the next N events.
//!
//! `cargo bench --bench record_batch`; see `benches/README.md` for the
//! settings and the latest results.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KpTimestampType,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smartkafka::compression::Compression;
use smartkafka::record_batch::{
    AppendOutcome, BATCH_HEADER_LEN, BatchBuilder, BatchConfig, BatchReader, SealedBatch,
};

// ---------------------------------------------------------------------------
// Allocation counting.

/// Forwards to the system allocator and, while [`COUNTING`] is set, counts
/// allocations (reallocations included).
///
/// Implementing `GlobalAlloc` takes `unsafe impl`; the library itself is
/// `#![forbid(unsafe_code)]`, but this benchmark is a separate crate, and the
/// impl only forwards each call unchanged to [`System`].
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[inline]
fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; counting touches only atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// User data.

/// One record as the application hands it over.
struct UserRecord {
    timestamp: i64,
    key: Vec<u8>,
    value: Vec<u8>,
}

const POOL: usize = 4096;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

const WORDS: &[&str] = &[
    "checkout",
    "cart",
    "search",
    "product",
    "details",
    "shipping",
    "express",
    "standard",
    "discount",
    "summer",
    "sale",
    "blue",
    "large",
    "cotton",
    "shirt",
    "shoes",
    "running",
    "gift",
    "card",
    "returned",
    "delivered",
    "warehouse",
    "berlin",
    "lisbon",
    "osaka",
    "toronto",
    "mobile",
    "desktop",
    "tablet",
    "android",
    "ios",
    "chrome",
    "firefox",
    "safari",
    "campaign",
    "newsletter",
];
const EVENTS: &[&str] = &[
    "page_view",
    "add_to_cart",
    "purchase",
    "search",
    "click",
    "login",
];

/// A JSON-like event of exactly `len` bytes.
fn event(rng: &mut StdRng, i: usize, len: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"id":"{:016x}","user":{},"type":"{}","ts":{},"path":"/p/{}","amount":{}.{:02},"tags":""#,
        rng.random::<u64>(),
        rng.random_range(1..1_000_000),
        EVENTS[rng.random_range(0..EVENTS.len())],
        BASE_TIMESTAMP + i as i64,
        rng.random_range(1..100_000),
        rng.random_range(0..500),
        rng.random_range(0..100),
    );
    while s.len() < len {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(' ');
    }
    s.truncate(len.saturating_sub(2));
    s.push_str("\"}");
    s.truncate(len);
    s.into_bytes()
}

fn pool(value_len: usize, seed: u64) -> Vec<UserRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..POOL)
        .map(|i| UserRecord {
            timestamp: BASE_TIMESTAMP + i as i64,
            key: format!("user-{}", rng.random_range(0..100_000)).into_bytes(),
            value: event(&mut rng, i, value_len),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The two encoders.

const CODECS: [(Compression, KpCompression); 5] = [
    (Compression::None, KpCompression::None),
    (Compression::Gzip, KpCompression::Gzip),
    (Compression::Snappy, KpCompression::Snappy),
    (Compression::Lz4, KpCompression::Lz4),
    (Compression::Zstd, KpCompression::Zstd),
];

/// Batches of up to 128 KiB; the record counts below stay under it.
const MAX_BATCH_BYTES: usize = 128 * 1024;

fn our_config(codec: Compression) -> BatchConfig {
    BatchConfig {
        max_batch_bytes: MAX_BATCH_BYTES,
        ..BatchConfig::new(codec)
    }
}

/// Appends `records` to a reused builder. Returns nothing; sealing is apart
/// so allocations of the append path alone can be counted.
#[inline]
fn append_all(builder: &mut BatchBuilder, records: &[UserRecord]) {
    builder.reset(records[0].timestamp);
    for r in records {
        let outcome = builder.try_append(r.timestamp, Some(&r.key), Some(&r.value), &[]);
        debug_assert_eq!(outcome, Ok(AppendOutcome::Appended));
        black_box(outcome).ok();
    }
}

fn ours(builder: &mut BatchBuilder, records: &[UserRecord]) -> SealedBatch {
    append_all(builder, records);
    builder.seal().expect("seal")
}

fn peer(records: &[UserRecord], codec: KpCompression) -> BytesMut {
    let records: Vec<KpRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| KpRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KpTimestampType::Creation,
            offset: i as i64,
            sequence: (i as i32).wrapping_sub(1),
            timestamp: r.timestamp,
            key: Some(Bytes::copy_from_slice(&r.key)),
            value: Some(Bytes::copy_from_slice(&r.value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("kafka-protocol encodes");
    buf
}

/// The raw codec compressing `section` with state and output kept.
struct RawCodec {
    codec: Compression,
    out: Vec<u8>,
    snappy: snap::raw::Encoder,
    zstd: zstd::bulk::Compressor<'static>,
    deflate: flate2::Compress,
}

impl RawCodec {
    fn new(codec: Compression) -> Self {
        RawCodec {
            codec,
            out: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            // The levels our builder uses by default: zstd 3, gzip 6.
            zstd: zstd::bulk::Compressor::new(3).expect("zstd context"),
            deflate: flate2::Compress::new(flate2::Compression::new(6), false),
        }
    }

    fn compress(&mut self, section: &[u8]) -> usize {
        let out = &mut self.out;
        match self.codec {
            Compression::None => unreachable!("no raw codec for none"),
            Compression::Lz4 => {
                out.resize(lz4_flex::block::get_maximum_output_size(section.len()), 0);
                lz4_flex::block::compress_into(section, out).expect("lz4")
            }
            Compression::Snappy => {
                out.resize(snap::raw::max_compress_len(section.len()), 0);
                self.snappy.compress(section, out).expect("snappy")
            }
            Compression::Zstd => {
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(section.len()));
                self.zstd.compress_to_buffer(section, out).expect("zstd")
            }
            Compression::Gzip => {
                out.clear();
                out.reserve(section.len() + section.len() / 1000 + 64);
                self.deflate.reset();
                let status = self
                    .deflate
                    .compress_vec(section, out, flate2::FlushCompress::Finish)
                    .expect("deflate");
                assert_eq!(status, flate2::Status::StreamEnd);
                out.len()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Checks before measuring.

/// (offset, timestamp, key, value) of every record, by our reader.
type Decoded = Vec<(i64, i64, Option<Vec<u8>>, Option<Vec<u8>>)>;

fn decode_ours(bytes: &[u8]) -> Decoded {
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    for batch in BatchReader::new(bytes) {
        let batch = batch.expect("our reader reads the batch");
        for r in batch.records(&mut scratch).expect("records") {
            let r = r.expect("record");
            out.push((
                r.offset(),
                r.timestamp(),
                r.key().map(<[u8]>::to_vec),
                r.value().map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

fn decode_peer(bytes: &[u8]) -> Decoded {
    let mut buf = Bytes::copy_from_slice(bytes);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("kafka-protocol decodes the batch")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            (
                r.offset,
                r.timestamp,
                r.key.map(|b| b.to_vec()),
                r.value.map(|b| b.to_vec()),
            )
        })
        .collect()
}

fn check_equivalent(records: &[UserRecord], codec: Compression, kp: KpCompression) {
    let want: Decoded = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i as i64,
                r.timestamp,
                Some(r.key.clone()),
                Some(r.value.clone()),
            )
        })
        .collect();
    let mut builder = BatchBuilder::new(our_config(codec), records[0].timestamp);
    let ours = ours(&mut builder, records);
    let theirs = peer(records, kp);
    assert_eq!(
        ours.compression(),
        codec,
        "the codec pays off on these payloads"
    );
    for bytes in [ours.bytes().as_ref(), theirs.as_ref()] {
        assert_eq!(decode_ours(bytes), want);
        assert_eq!(decode_peer(bytes), want);
    }
    if codec == Compression::None {
        assert_eq!(
            ours.bytes()[..],
            theirs[..],
            "uncompressed batches are byte-identical"
        );
    }
}

// ---------------------------------------------------------------------------
// The benchmark.

struct Scenario {
    name: &'static str,
    value_len: usize,
    /// Records per batch.
    records: usize,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "100B",
        value_len: 100,
        records: 512,
    },
    Scenario {
        name: "1KiB",
        value_len: 1024,
        records: 64,
    },
];

/// Prints allocations per record for both encoders, measured over `rounds`
/// batches after a warm-up batch.
fn report_allocations(s: &Scenario, pool: &[UserRecord], codec: Compression, kp: KpCompression) {
    const ROUNDS: usize = 50;
    let batches: Vec<&[UserRecord]> = pool.chunks_exact(s.records).collect();
    let mut builder = BatchBuilder::new(our_config(codec), BASE_TIMESTAMP);
    drop(ours(&mut builder, batches[0]));
    let records = (ROUNDS * s.records) as f64;
    let mut sealed = Vec::with_capacity(ROUNDS);
    let append = allocations(|| {
        for i in 0..ROUNDS {
            append_all(&mut builder, batches[i % batches.len()]);
            black_box(&mut builder);
            // Not counted: the seal.
            COUNTING.store(false, Ordering::SeqCst);
            sealed.push(builder.seal().expect("seal"));
            COUNTING.store(true, Ordering::SeqCst);
        }
    });
    sealed.clear();
    let with_seal = allocations(|| {
        for i in 0..ROUNDS {
            black_box(ours(&mut builder, batches[i % batches.len()]));
        }
    });
    let theirs = allocations(|| {
        for i in 0..ROUNDS {
            black_box(peer(batches[i % batches.len()], kp));
        }
    });
    let size_ours = ours(&mut builder, batches[0]).len();
    let size_peer = peer(batches[0], kp).len();
    println!(
        "allocations/record {:>5} {:>6}: smartkafka append {:.4}, append+seal {:.4}; \
         kafka-protocol {:.3}   (batch bytes: ours {size_ours}, kafka-protocol {size_peer})",
        s.name,
        codec.name(),
        append as f64 / records,
        with_seal as f64 / records,
        theirs as f64 / records,
    );
}

fn encode(c: &mut Criterion) {
    for s in &SCENARIOS {
        let pool = pool(s.value_len, s.value_len as u64);
        let batches: Vec<&[UserRecord]> = pool.chunks_exact(s.records).collect();
        let user_bytes = batches[0]
            .iter()
            .map(|r| r.key.len() + r.value.len())
            .sum::<usize>();
        for (codec, kp) in CODECS {
            for b in &batches {
                check_equivalent(b, codec, kp);
            }
            report_allocations(s, &pool, codec, kp);

            let mut group = c.benchmark_group(format!("encode/{}/{}", s.name, codec.name()));
            group.throughput(Throughput::Bytes(user_bytes as u64));
            let mut builder = BatchBuilder::new(our_config(codec), BASE_TIMESTAMP);
            let mut next = 0;
            group.bench_function(BenchmarkId::new("smartkafka", s.records), |b| {
                b.iter(|| {
                    next = (next + 1) % batches.len();
                    ours(&mut builder, batches[next])
                })
            });
            group.bench_function(BenchmarkId::new("kafka-protocol", s.records), |b| {
                b.iter(|| {
                    next = (next + 1) % batches.len();
                    peer(batches[next], kp)
                })
            });
            if codec != Compression::None {
                let sections: Vec<Bytes> = batches
                    .iter()
                    .map(|b| {
                        let mut plain =
                            BatchBuilder::new(our_config(Compression::None), BASE_TIMESTAMP);
                        ours(&mut plain, b).into_bytes().slice(BATCH_HEADER_LEN..)
                    })
                    .collect();
                let mut raw = RawCodec::new(codec);
                group.bench_function(BenchmarkId::new("raw-codec", s.records), |b| {
                    b.iter(|| {
                        next = (next + 1) % sections.len();
                        raw.compress(&sections[next])
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // Modest settings, so that five alternated runs fit in a few minutes;
    // command-line flags (--warm-up-time, --measurement-time) override them.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20);
    targets = encode
}
criterion_main!(benches);
