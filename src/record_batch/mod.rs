//! Kafka record batches (magic v2): encoding on the produce path, reading on
//! the fetch path.
//!
//! This module owns the wire format of the `records` field of Produce and Fetch
//! requests and responses: [`BatchBuilder`] encodes records straight into a
//! batch as they are appended and [`SealedBatch`] holds the finished bytes,
//! stamped with producer id, epoch and sequence when they are sent;
//! [`BatchReader`] walks the batches of a buffer, checks them and yields their
//! records. The codecs themselves live in [`crate::compression`].
//!
//! # Batch layout (magic v2)
//!
//! All integers are big-endian. Offsets are from the start of the batch.
//!
//! ```text
//!  offset  size  field
//! +------+-----+-----------------------+
//! |    0 |   8 | base offset           |  0 when produced; the broker assigns it
//! |    8 |   4 | batch length          |  bytes after this field (total - 12)
//! +------+-----+-----------------------+
//! |   12 |   4 | partition leader epoch|  -1 when produced
//! |   16 |   1 | magic                 |  2
//! |   17 |   4 | CRC-32C               |  over bytes 21 .. end of batch
//! +======+=====+=======================+  <- CRC coverage starts here
//! |   21 |   2 | attributes            |  see below
//! |   23 |   4 | last offset delta     |  record count - 1
//! |   27 |   8 | base timestamp        |
//! |   35 |   8 | max timestamp         |
//! |   43 |   8 | producer id           |  -1 unless idempotent / transactional
//! |   51 |   2 | producer epoch        |  -1 unless idempotent / transactional
//! |   53 |   4 | base sequence         |  -1 unless idempotent / transactional
//! |   57 |   4 | record count          |
//! +------+-----+-----------------------+
//! |   61 | ... | records               |  compressed as one unit if codec != 0
//! +------+-----+-----------------------+
//!
//! attributes (int16):
//!   bits 0-2  compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)
//!   bit  3    timestamp type (0 create time, 1 log append time)
//!   bit  4    transactional
//!   bit  5    control batch (transaction markers)
//!   bit  6    delete horizon set (compacted topics)
//!
//! record (varint = zigzag varint, varlong = zigzag varlong):
//!   length           varint   bytes of the record after this field
//!   attributes       int8     unused, 0
//!   timestamp delta  varlong  timestamp - base timestamp
//!   offset delta     varint   offset - base offset
//!   key length       varint   -1 for a null key
//!   key              bytes
//!   value length     varint   -1 for a null value
//!   value            bytes
//!   header count     varint
//!   headers          header key length varint, key (UTF-8),
//!                    header value length varint (-1 for null), value
//! ```
//!
//! Control batches carry one control record whose key is a version (int16)
//! and a type (int16: 0 abort, 1 commit), and whose value for transaction
//! markers is a version (int16) and the coordinator epoch (int32).

mod builder;
mod compress;
mod crc;
mod pool;
mod reader;
mod varint;

pub(crate) use builder::Crc;
pub use builder::{AppendOutcome, BatchBuilder, BatchConfig, SealedBatch};
#[cfg(feature = "tokio-runtime")]
pub(crate) use compress::compress_batch;
pub(crate) use pool::BufferPool;
#[cfg(test)]
pub(crate) use pool::TRIM_EVERY;
pub use reader::{
    Batch, BatchHeader, BatchReader, ControlRecord, ControlRecordType, HeaderView, Headers,
    ReadOptions, RecordView, Records,
};

use crate::compression::{Compression, CompressionError};

/// Size of the batch header that precedes the records.
pub const BATCH_HEADER_LEN: usize = 61;

/// Bytes before the batch length field's coverage begins (base offset and the
/// length itself).
pub const LOG_OVERHEAD: usize = 12;

/// The record batch format version this module reads and writes.
pub const MAGIC_V2: i8 = 2;

/// Byte offsets of the header fields, as in the layout above.
pub(crate) mod offsets {
    /// Base offset (int64).
    pub const BASE_OFFSET: usize = 0;
    /// Batch length (int32).
    pub const BATCH_LENGTH: usize = 8;
    /// Partition leader epoch (int32).
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    /// Magic (int8).
    pub const MAGIC: usize = 16;
    /// CRC-32C (uint32).
    pub const CRC: usize = 17;
    /// Attributes (int16); the CRC covers from here to the end.
    pub const ATTRIBUTES: usize = 21;
    /// Last offset delta (int32).
    pub const LAST_OFFSET_DELTA: usize = 23;
    /// Base timestamp (int64).
    pub const BASE_TIMESTAMP: usize = 27;
    /// Max timestamp (int64).
    pub const MAX_TIMESTAMP: usize = 35;
    /// Producer id (int64).
    pub const PRODUCER_ID: usize = 43;
    /// Producer epoch (int16).
    pub const PRODUCER_EPOCH: usize = 51;
    /// Base sequence (int32).
    pub const BASE_SEQUENCE: usize = 53;
    /// Record count (int32).
    pub const RECORD_COUNT: usize = 57;
    /// First record.
    pub const RECORDS: usize = 61;
}

/// Attribute bits of a batch.
pub(crate) mod attributes {
    /// Bits holding the compression codec id.
    pub const COMPRESSION_MASK: i16 = 0x07;
    /// Set when timestamps are log append times.
    pub const TIMESTAMP_TYPE: i16 = 0x08;
    /// Set for batches of a transaction.
    pub const TRANSACTIONAL: i16 = 0x10;
    /// Set for control batches.
    pub const CONTROL: i16 = 0x20;
    /// Set when the batch carries a delete horizon.
    pub const DELETE_HORIZON: i16 = 0x40;
}

/// What a record timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer when the record was created.
    CreateTime,
    /// Set by the broker when the batch was appended to the log; every record
    /// then has the batch's max timestamp.
    LogAppendTime,
}

/// Why a batch could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The input ended inside the named field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A varint in the named field ran past its maximum length.
    #[error("malformed varint in {0}")]
    InvalidVarint(&'static str),
    /// The batch length field is smaller than a batch header.
    #[error("invalid batch length {0}")]
    InvalidBatchLength(i32),
    /// The batch is not magic v2 (message sets v0 and v1 are not supported).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The CRC stored in the batch does not match its contents.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The attributes name a codec no Kafka version defines.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
    /// A length or count field holds a value that cannot be right.
    #[error("invalid {field} {value}")]
    InvalidLength {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// The records section holds fewer records than the header declares.
    #[error("batch declares {declared} records but holds {found}")]
    CountMismatch {
        /// The record count in the header.
        declared: i32,
        /// The records found.
        found: i32,
    },
    /// Bytes remain after the last field of the named structure.
    #[error("{count} unexpected trailing bytes after {field}")]
    TrailingBytes {
        /// The structure.
        field: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A control record's key or value is malformed.
    #[error("invalid control record: {0}")]
    InvalidControlRecord(&'static str),
    /// Compressing or decompressing failed, including a decompressed size past
    /// the configured limit.
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// A record does not fit in a batch even on its own.
    #[error("record of {size} bytes makes a batch larger than the limit of {limit} bytes")]
    RecordTooLarge {
        /// The size of a batch holding only this record.
        size: usize,
        /// The hard limit.
        limit: usize,
    },
    /// A batch with no records cannot be sealed.
    #[error("cannot seal a batch without records")]
    EmptyBatch,
    /// A record's timestamp is so far from the batch's base timestamp that
    /// the difference does not fit the 64-bit timestamp delta.
    #[error(
        "timestamp {timestamp} is out of range for a batch with base timestamp {base_timestamp}"
    )]
    TimestampOutOfRange {
        /// The record's timestamp.
        timestamp: i64,
        /// The batch's base timestamp.
        base_timestamp: i64,
    },
}

impl RecordsError {
    /// Whether the error is the decompressed size passing its limit.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            RecordsError::Compression(CompressionError::OutputTooLarge { .. })
        )
    }
}

/// The compression codec named by a batch's attributes.
pub fn compression_of(attributes: i16) -> Result<Compression, RecordsError> {
    let id = (attributes & attributes::COMPRESSION_MASK) as u8;
    Compression::from_codec_id(id).ok_or(RecordsError::UnknownCompression(id))
}

#[inline]
pub(crate) fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(bytes)
}
