//! Murmur2, the Java client's key hash, and librdkafka's `murmur2_random`
//! strategy built on it.
//!
//! The hash is the 32-bit MurmurHash2 variant of the Java client's
//! `Utils.murmur2` (seed `0x9747b28c`, little-endian 4-byte blocks), which
//! librdkafka's `rd_murmur2` reproduces. A keyed record goes to
//! `to_positive(murmur2(key)) % partition_count`, so the same key lands on the
//! same partition whichever of these clients produced it.

use super::sticky::Sticky;
use super::{PartitionError, PartitionView, Partitioner, checked_count};

const SEED: u32 = 0x9747_b28c;
const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// The Java client's murmur2 hash of `data`, as the `int` Java returns.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::murmur2;
///
/// // Vectors from the Java client's own tests.
/// assert_eq!(murmur2(b"21"), -973_932_308);
/// assert_eq!(murmur2(b"abc"), 479_470_107);
/// ```
pub fn murmur2(data: &[u8]) -> i32 {
    // Java hashes an int length; longer inputs cannot occur there, and
    // wrapping keeps the function total here.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's `Utils.toPositive`: clears the sign bit (it is not
/// `abs`, which would overflow on `i32::MIN`).
///
/// ```
/// use smartkafka::partitioner::to_positive;
///
/// assert_eq!(to_positive(-1), i32::MAX);
/// assert_eq!(to_positive(i32::MIN), 0);
/// assert_eq!(to_positive(17), 17);
/// ```
pub const fn to_positive(value: i32) -> i32 {
    value & 0x7fff_ffff
}

/// The partition the Java client (and librdkafka's `murmur2` and
/// `murmur2_random`) gives a keyed record: `to_positive(murmur2(key)) %
/// partition_count`, over all partitions whether or not they have a leader.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{PartitionError, murmur2_partition};
///
/// assert_eq!(murmur2_partition(b"kafka", 6), Ok(4));
/// assert_eq!(murmur2_partition(b"kafka", 0), Err(PartitionError::NoPartitions));
/// ```
pub fn murmur2_partition(key: &[u8], partition_count: u32) -> Result<i32, PartitionError> {
    let count = checked_count(partition_count)?;
    Ok(super::modulo(
        to_positive(murmur2(key)).unsigned_abs(),
        count,
    ))
}

/// librdkafka's `murmur2_random` partitioner: keyed records (empty keys
/// included) by [`murmur2_partition`], the same partitions as the Java
/// client; records without a key stick to a uniformly drawn available
/// partition until its batch completes.
///
/// librdkafka switches the sticky partition of keyless records on a timer
/// (`sticky.partitioning.linger.ms`); here it switches when the batch is
/// complete, as the Java client does. Unlike [`DefaultPartitioner`], the
/// draw is not weighted by queue sizes.
///
/// [`DefaultPartitioner`]: super::DefaultPartitioner
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{Murmur2RandomPartitioner, PartitionView, Partitioner};
///
/// let mut partitioner = Murmur2RandomPartitioner::new(1);
/// let all = [0, 1, 2, 3, 4, 5];
/// let view = PartitionView::new("t", 6, &all);
/// assert_eq!(partitioner.partition(Some(b"kafka"), None, &view), Ok(4));
/// let keyless = partitioner.partition(None, None, &view).unwrap();
/// assert_eq!(partitioner.partition(None, None, &view), Ok(keyless));
/// ```
#[derive(Debug, Clone)]
pub struct Murmur2RandomPartitioner {
    sticky: Sticky,
}

impl Murmur2RandomPartitioner {
    /// A partitioner whose keyless draws are seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Murmur2RandomPartitioner {
            sticky: Sticky::new(seed, false),
        }
    }

    /// The partition keyless records of `topic` currently stick to, if any
    /// was chosen yet.
    pub fn sticky_partition(&self, topic: &str) -> Option<i32> {
        self.sticky.current(topic)
    }
}

impl Partitioner for Murmur2RandomPartitioner {
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        match key {
            Some(key) => murmur2_partition(key, view.partition_count),
            None => self.sticky.partition(view),
        }
    }

    fn on_new_batch(&mut self, previous: i32, view: &PartitionView<'_>) {
        self.sticky.on_new_batch(previous, view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of the Java client's `UtilsTest.testMurmur2`.
    #[test]
    fn matches_the_java_client_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{:?}", String::from_utf8_lossy(key));
        }
    }

    /// The vectors of librdkafka's `unittest_murmur2`, which it states are
    /// the Java client's results (covering every tail length and unaligned
    /// input).
    #[test]
    fn matches_the_librdkafka_test_vectors() {
        let cases: [(&[u8], u32); 11] = [
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"234", 0xe7c0_09ca),
            (b"34", 0x8739_30da),
            (b"4", 0x5a4b_5ca1),
            (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
            (b"reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
            (b"eAmbleWillBeRemoved,ThePrePartThatIs", 0xe0e4_e09e),
            (b"AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
            (b"", 0x106e_08d9),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key) as u32,
                expected,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    /// Vectors from a second, independent implementation: kafka-python
    /// 3.0.12's `kafka.partitioner.default.murmur2`, run over keys drawn by
    /// Python's `random.Random(20240601)` with lengths 0..=8, 15, 16, 17, 31
    /// and 64 (its unsigned results converted to `i32`).
    #[test]
    fn matches_kafka_python_on_random_keys() {
        let cases: [(&[u8], i32); 14] = [
            (b"", 275_646_681),
            (b"\x3c", -1_525_307_800),
            (b"\xe9\xd7", 1_642_660_034),
            (b"\xf3\x84\x79", -762_836_069),
            (b"\xd9\xa2\x67\xde", 1_340_083_860),
            (b"\xc1\x27\xb6\xd4\x95", -454_109_580),
            (b"\xac\x19\x41\x80\x40\x9e", 1_465_888_753),
            (b"\x26\xbd\x85\x17\xd3\x6b\xec", 1_796_993_245),
            (b"\x19\xf3\x86\x9c\x68\x2c\x88\x46", 697_106_418),
            (
                b"\x73\xaf\xcf\x1b\xd4\x94\x4a\x90\x36\x80\xa0\xdd\x09\x21\x6a",
                -1_767_764_410,
            ),
            (
                b"\x74\xc1\xd4\xf0\x64\xa3\x2f\xda\x74\x7e\x8d\xc5\xd7\xfa\xc5\x5a",
                1_748_857_526,
            ),
            (
                b"\x4d\x21\xa8\xc2\xd3\x81\xaf\x6c\x5e\xc6\x81\x5c\x74\xc5\x49\xed\xa5",
                1_388_376_515,
            ),
            (
                b"\xfa\x2d\xb9\xce\x65\x1c\xcb\x8a\xac\xe2\x9a\xee\x38\x06\x10\x8e\
                  \xfa\x44\x17\x2e\x2b\xe8\x29\x6a\xec\xba\xb1\xba\x44\x49\xc6",
                67_256_335,
            ),
            (
                b"\x08\xfc\x3a\xf1\x69\xb4\x06\xa1\xa3\x63\xf0\x2a\x3c\x75\x4d\xcb\
                  \x97\xa8\x33\xbf\xa1\x1c\x4b\xe2\x58\xb6\x32\x12\x70\x30\x53\x3a\
                  \x5e\xc7\x92\x99\x71\xbd\xea\x52\xa5\x0e\x55\x7e\xd9\x5a\xc9\x6c\
                  \x87\x9e\xc8\x26\x91\xb8\xe3\xb7\xd4\x9c\x6f\xff\xe4\x8e\xeb\xa2",
                -559_748_282,
            ),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "key of {} bytes", key.len());
        }
    }

    #[test]
    fn keyed_partitions_follow_java_to_positive_modulo() {
        // to_positive(0xd067cf64) = 0x5067cf64 = 1_348_980_580
        assert_eq!(murmur2_partition(b"kafka", 6), Ok(1_348_980_580 % 6));
        assert_eq!(murmur2_partition(b"kafka", 7), Ok(1_348_980_580 % 7));
        assert_eq!(murmur2_partition(b"kafka", 1), Ok(0));
        assert_eq!(murmur2_partition(b"", 1000), Ok(0x106e_08d9 % 1000));
        assert_eq!(
            murmur2_partition(b"k", u32::MAX),
            Err(PartitionError::TooManyPartitions {
                partition_count: u32::MAX
            })
        );
    }

    #[test]
    fn empty_keys_are_keys_and_missing_keys_are_sticky() {
        let mut p = Murmur2RandomPartitioner::new(3);
        // Partitions 0..6 but only 5 has a leader: keyed records ignore
        // leadership, keyless ones do not.
        let view = PartitionView::new("t", 6, &[5]);
        assert_eq!(
            p.partition(Some(b""), None, &view),
            murmur2_partition(b"", 6)
        );
        assert_eq!(p.partition(None, None, &view), Ok(5));
        assert_eq!(p.sticky_partition("t"), Some(5));
    }
}
