//! CRC-32 of the key: librdkafka's `consistent` and `consistent_random`
//! strategies.
//!
//! The checksum is the standard CRC-32 of zlib and Ethernet (reflected
//! polynomial `0xEDB88320`, initial value and final xor `0xFFFFFFFF`), which
//! is what librdkafka's `rd_crc32` computes; it is not the CRC-32C of record
//! batches. A keyed record goes to `crc32(key) % partition_count`.
//!
//! How librdkafka treats empty and missing keys, and so how these
//! strategies do:
//!
//! | key | `consistent` | `consistent_random` |
//! |---|---|---|
//! | non-empty | `crc32(key) % n` | `crc32(key) % n` |
//! | empty (`Some(&[])`) | `crc32("") % n`, that is partition 0 | sticky |
//! | none | partition 0, like an empty key | sticky |
//!
//! (librdkafka exempts `consistent` from its sticky partitioning, so there a
//! missing key is hashed as no bytes.)

use super::sticky::Sticky;
use super::{PartitionError, PartitionView, Partitioner, checked_count};

/// The lookup table for one byte of the reflected CRC-32, built at compile
/// time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The standard (zlib, IEEE 802.3) CRC-32 of `data`.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::crc32;
///
/// assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
/// assert_eq!(crc32(b""), 0);
/// ```
pub fn crc32(data: &[u8]) -> u32 {
    let crc = data.iter().fold(0xffff_ffff_u32, |crc, &byte| {
        TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    });
    !crc
}

/// The partition librdkafka's `consistent` partitioner gives a key:
/// `crc32(key) % partition_count`.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::crc32_partition;
///
/// assert_eq!(crc32_partition(b"123456789", 7), Ok((0xcbf4_3926_u32 % 7) as i32));
/// assert_eq!(crc32_partition(b"", 7), Ok(0));
/// ```
pub fn crc32_partition(key: &[u8], partition_count: u32) -> Result<i32, PartitionError> {
    let count = checked_count(partition_count)?;
    Ok(super::modulo(crc32(key), count))
}

/// librdkafka's `consistent` partitioner: [`crc32_partition`] of the key,
/// where a missing key hashes like an empty one: both go to partition 0.
///
/// Fully deterministic; it needs no seed.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{ConsistentPartitioner, PartitionView, Partitioner, crc32_partition};
///
/// let mut partitioner = ConsistentPartitioner::new();
/// let all = [0, 1, 2, 3, 4, 5];
/// let view = PartitionView::new("t", 6, &all);
/// assert_eq!(partitioner.partition(Some(b"user-1"), None, &view), crc32_partition(b"user-1", 6));
/// assert_eq!(partitioner.partition(Some(b""), None, &view), Ok(0));
/// assert_eq!(partitioner.partition(None, None, &view), Ok(0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConsistentPartitioner {
    _private: (),
}

impl ConsistentPartitioner {
    /// The `consistent` partitioner.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Partitioner for ConsistentPartitioner {
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        crc32_partition(key.unwrap_or_default(), view.partition_count)
    }
}

/// librdkafka's `consistent_random` partitioner (librdkafka's default):
/// [`crc32_partition`] of non-empty keys; records with an empty key or none
/// stick to a uniformly drawn available partition until its batch
/// completes.
///
/// # Examples
///
/// ```
/// use smartkafka::partitioner::{
///     ConsistentRandomPartitioner, PartitionView, Partitioner, crc32_partition,
/// };
///
/// let mut partitioner = ConsistentRandomPartitioner::new(1);
/// let all = [0, 1, 2, 3, 4, 5];
/// let view = PartitionView::new("t", 6, &all);
/// assert_eq!(partitioner.partition(Some(b"user-1"), None, &view), crc32_partition(b"user-1", 6));
/// // Empty and missing keys share the sticky partition.
/// let sticky = partitioner.partition(None, None, &view).unwrap();
/// assert_eq!(partitioner.partition(Some(b""), None, &view), Ok(sticky));
/// ```
#[derive(Debug, Clone)]
pub struct ConsistentRandomPartitioner {
    sticky: Sticky,
}

impl ConsistentRandomPartitioner {
    /// A partitioner whose draws for empty and missing keys are seeded with
    /// `seed`.
    pub fn new(seed: u64) -> Self {
        ConsistentRandomPartitioner {
            sticky: Sticky::new(seed, false),
        }
    }

    /// The partition records of `topic` with an empty or no key currently
    /// stick to, if any was chosen yet.
    pub fn sticky_partition(&self, topic: &str) -> Option<i32> {
        self.sticky.current(topic)
    }
}

impl Partitioner for ConsistentRandomPartitioner {
    fn partition(
        &mut self,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        view: &PartitionView<'_>,
    ) -> Result<i32, PartitionError> {
        match key {
            Some(key) if !key.is_empty() => crc32_partition(key, view.partition_count),
            _ => self.sticky.partition(view),
        }
    }

    fn on_new_batch(&mut self, previous: i32, view: &PartitionView<'_>) {
        self.sticky.on_new_batch(previous, view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_values() {
        // The catalogue check value of CRC-32/ISO-HDLC, and values zlib's
        // crc32() gives (Python's zlib.crc32).
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xe8b7_be43);
        assert_eq!(crc32(b"abc"), 0x3524_41c2);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
        assert_eq!(crc32(&[0u8; 32]), 0x190a_55ad);
        assert_eq!(crc32(&[0xffu8; 32]), 0xff6c_ab0b);
    }

    #[test]
    fn the_table_starts_and_ends_like_zlibs() {
        assert_eq!(TABLE[0], 0);
        assert_eq!(TABLE[1], 0x7707_3096);
        assert_eq!(TABLE[128], 0xedb8_8320);
        assert_eq!(TABLE[255], 0x2d02_ef8d);
    }

    #[test]
    fn consistent_partitions_by_crc32_of_the_key() {
        // 0xcbf43926 = 3_421_780_262, taken modulo as unsigned like librdkafka:
        // 3_421_780_262 % 7 = 5 and 3_421_780_262 % 6 = 2.
        let all = [0, 1, 2, 3, 4, 5, 6];
        let view = PartitionView::new("t", 7, &all);
        let mut p = ConsistentPartitioner::new();
        assert_eq!(p.partition(Some(b"123456789"), None, &view), Ok(5));
        assert_eq!(p.partition(Some(b""), None, &view), Ok(0));
        // Keyed records ignore leadership.
        let view = PartitionView::new("t", 7, &[6]);
        assert_eq!(p.partition(Some(b"123456789"), None, &view), Ok(5));
        assert_eq!(p.partition(None, None, &view), Ok(0));
    }

    #[test]
    fn consistent_random_sends_empty_and_missing_keys_to_the_sticky_partition() {
        let all = [0, 1, 2, 3, 4, 5];
        let view = PartitionView::new("t", 6, &all);
        let mut p = ConsistentRandomPartitioner::new(8);
        assert_eq!(p.partition(Some(b"123456789"), None, &view), Ok(2));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..60 {
            let sticky = p.partition(None, None, &view).unwrap();
            assert_eq!(p.partition(Some(b""), None, &view), Ok(sticky));
            seen.insert(sticky);
            p.on_new_batch(sticky, &view);
        }
        assert_eq!(seen.len(), 6, "empty keys are spread, not pinned: {seen:?}");
    }
}
