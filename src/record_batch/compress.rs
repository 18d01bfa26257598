//! Compressing a finished uncompressed batch: the records section is
//! compressed, the codec set in the attributes, and the length and CRC
//! rewritten. Every other header field (producer id, epoch, sequence,
//! timestamps, count) is kept as stamped.
//!
//! This lets a producer encode and stamp batches uncompressed on one task
//! and compress them on another, right before they are written, so that
//! compression runs in parallel with encoding instead of after it.

use bytes::Bytes;

use super::{BATCH_HEADER_LEN, LOG_OVERHEAD, RecordsError, attributes, be_i16, offsets};
use crate::compression::{Compression, Compressor};

/// Compresses the uncompressed batch `batch` with `codec` at `level`.
///
/// Returns `None` (send `batch` as it is) when `codec` is
/// [`Compression::None`], when `batch` is not exactly one uncompressed
/// batch, or when compression would not make it smaller (the uncompressed
/// fallback of [`super::BatchConfig`]). `scratch` is reused between calls.
// Used by the tokio layer's compression workers.
#[cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]
pub fn compress_batch(
    batch: &[u8],
    codec: Compression,
    level: Option<i32>,
    compressor: &mut Compressor,
    scratch: &mut Vec<u8>,
) -> Result<Option<Bytes>, RecordsError> {
    if codec == Compression::None || batch.len() <= BATCH_HEADER_LEN {
        return Ok(None);
    }
    let declared = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
    let attrs = be_i16(batch, offsets::ATTRIBUTES);
    if usize::try_from(declared).ok() != Some(batch.len() - LOG_OVERHEAD)
        || attrs & attributes::COMPRESSION_MASK != 0
    {
        return Ok(None);
    }
    scratch.clear();
    scratch.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    compressor.compress(codec, level, &batch[BATCH_HEADER_LEN..], scratch)?;
    if scratch.len() >= batch.len() {
        return Ok(None);
    }
    let attrs = (attrs & !attributes::COMPRESSION_MASK) | i16::from(codec.codec_id());
    scratch[offsets::ATTRIBUTES..offsets::LAST_OFFSET_DELTA].copy_from_slice(&attrs.to_be_bytes());
    let length = i32::try_from(scratch.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    scratch[offsets::BATCH_LENGTH..offsets::PARTITION_LEADER_EPOCH]
        .copy_from_slice(&length.to_be_bytes());
    let crc = super::crc::crc32c(&scratch[offsets::ATTRIBUTES..]);
    scratch[offsets::CRC..offsets::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(Bytes::copy_from_slice(scratch)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{BatchBuilder, BatchConfig, BatchReader};

    fn batch(codec: Compression) -> SealedBatchBytes {
        let mut builder = BatchBuilder::new(BatchConfig::new(codec), 1_700_000_000_000);
        for i in 0..50 {
            let value = format!("{{\"event\":\"click\",\"n\":{i},\"path\":\"/products/item\"}}");
            let _ = builder
                .try_append(
                    1_700_000_000_000 + i,
                    Some(b"key"),
                    Some(value.as_bytes()),
                    &[],
                )
                .unwrap();
        }
        let mut sealed = builder.seal().unwrap();
        sealed.stamp(7, 3, 100, false);
        SealedBatchBytes(sealed.bytes().clone())
    }

    struct SealedBatchBytes(Bytes);

    /// (timestamp, key, value) of each record.
    type Records = Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)>;

    fn records_of(bytes: &[u8]) -> Records {
        let batch = BatchReader::new(bytes).next().unwrap().unwrap();
        let mut scratch = Vec::new();
        batch
            .records(&mut scratch)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (
                    r.timestamp(),
                    r.key().map(<[u8]>::to_vec),
                    r.value().map(<[u8]>::to_vec),
                )
            })
            .collect()
    }

    #[test]
    fn a_compressed_batch_reads_back_as_the_same_records_and_stamp() {
        let plain = batch(Compression::None).0;
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut compressor = Compressor::new();
            let mut scratch = Vec::new();
            let compressed = compress_batch(&plain, codec, None, &mut compressor, &mut scratch)
                .unwrap()
                .expect("smaller");
            assert!(compressed.len() < plain.len(), "{codec:?}");
            assert_eq!(records_of(&compressed), records_of(&plain), "{codec:?}");
            // The stamp and the header fields after the attributes survive.
            assert_eq!(
                compressed[offsets::LAST_OFFSET_DELTA..BATCH_HEADER_LEN],
                plain[offsets::LAST_OFFSET_DELTA..BATCH_HEADER_LEN]
            );
            // And it is what the builder itself makes with that codec (same
            // records section, same header once stamped alike).
            let direct = batch(codec).0;
            assert_eq!(compressed, direct, "{codec:?}");
        }
    }

    #[test]
    fn batches_that_do_not_shrink_or_are_already_compressed_are_left_alone() {
        let mut compressor = Compressor::new();
        let mut scratch = Vec::new();
        let lz4 = batch(Compression::Lz4).0;
        assert!(
            compress_batch(&lz4, Compression::Zstd, None, &mut compressor, &mut scratch)
                .unwrap()
                .is_none()
        );
        let plain = batch(Compression::None).0;
        assert!(
            compress_batch(
                &plain,
                Compression::None,
                None,
                &mut compressor,
                &mut scratch
            )
            .unwrap()
            .is_none()
        );
        assert!(
            compress_batch(
                &plain[..40],
                Compression::Lz4,
                None,
                &mut compressor,
                &mut scratch
            )
            .unwrap()
            .is_none()
        );
    }
}
