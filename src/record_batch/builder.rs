//! Encoding record batches: [`BatchBuilder`] appends records straight into the
//! batch's bytes, and [`SealedBatch`] is the finished batch, stamped with the
//! producer's identity when it is sent.
//!
//! Appending a record writes its final encoding at once into a buffer the
//! builder keeps: there is no intermediate record value and no allocation per
//! record. The builder tracks the exact size of the uncompressed batch, so a
//! record that would make the batch pass its size limit is refused before
//! anything is written.
//!
//! Sealing fills in the 61-byte header (see the [module layout](super)) and,
//! when a codec is configured, compresses the records section. Producer id,
//! epoch, base sequence and the transactional bit are left unset (-1, -1, -1,
//! clear) until [`SealedBatch::stamp`] patches them in place, which only has to
//! recompute the CRC: the records are neither re-encoded nor recompressed, so a
//! batch can be re-stamped cheaply for a retry under a new epoch.

use bytes::{BufMut, Bytes, BytesMut};

use super::BufferPool;
use super::varint::{
    MAX_VARLONG_LEN, encode_varlong, encode_varlong_at, len_varint_len, varlong_len,
};
use super::{
    BATCH_HEADER_LEN, MAGIC_V2, RecordsError, attributes, be_i16, be_i32, be_i64, offsets,
};
use crate::compression::{Compression, Compressor};

/// The largest batch the format can describe: the batch length field is an
/// int32 counting the bytes after the first 12.
const FORMAT_MAX_BATCH: usize = i32::MAX as usize + super::LOG_OVERHEAD;

/// Settings of a [`BatchBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Codec for the records section.
    pub compression: Compression,
    /// Codec level; `None` for the codec's default (see [`crate::compression`]).
    pub level: Option<i32>,
    /// Size limit of a batch holding more than one record (the producer's
    /// `batch.size`), counted as the uncompressed batch: header plus records.
    pub max_batch_bytes: usize,
    /// Hard limit for any batch, including one whose single record is larger
    /// than `max_batch_bytes` (the producer's `max.request.size`). A record that
    /// cannot fit in a batch of this size is refused with
    /// [`RecordsError::RecordTooLarge`].
    pub hard_max_bytes: usize,
    /// Send the records uncompressed when the codec does not make them
    /// smaller. This guarantees that a sealed batch is never larger than the
    /// builder's [`BatchBuilder::estimated_size`], and so never larger than the
    /// limits above.
    pub uncompressed_fallback: bool,
}

impl BatchConfig {
    /// Default `max_batch_bytes`: 16 KiB, the Java client's `batch.size`.
    pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 * 1024;
    /// Default `hard_max_bytes`: 1 MiB, the Java client's `max.request.size`.
    pub const DEFAULT_HARD_MAX_BYTES: usize = 1024 * 1024;

    /// A configuration with `compression` at its default level and the default
    /// limits, with the uncompressed fallback on.
    pub const fn new(compression: Compression) -> Self {
        BatchConfig {
            compression,
            level: None,
            max_batch_bytes: Self::DEFAULT_MAX_BATCH_BYTES,
            hard_max_bytes: Self::DEFAULT_HARD_MAX_BYTES,
            uncompressed_fallback: true,
        }
    }

    /// The hard limit the builder enforces: `hard_max_bytes`, but no more than
    /// the format allows and no less than a header.
    fn hard_limit(&self) -> usize {
        self.hard_max_bytes
            .clamp(BATCH_HEADER_LEN, FORMAT_MAX_BATCH)
    }

    /// The limit for batches of several records: `max_batch_bytes`, no more
    /// than the hard limit.
    fn soft_limit(&self) -> usize {
        self.max_batch_bytes.min(self.hard_limit())
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig::new(Compression::None)
    }
}

/// What [`BatchBuilder::try_append`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum AppendOutcome {
    /// The record is in the batch.
    Appended,
    /// The record would make the batch larger than `max_batch_bytes`; nothing
    /// was written. Seal this batch and append the record to a new one.
    Full,
}

/// Encodes records into a magic v2 record batch as they are appended.
///
/// ```text
/// new(config, base_timestamp) -> try_append ... -> seal -> SealedBatch
///                  ^                                  |
///                  +------ reset(base_timestamp) -----+
/// ```
///
/// Sealing empties the builder; [`reset`](Self::reset) then sets the base
/// timestamp of the next batch. For compressed batches the records buffer is
/// kept and reused. For uncompressed batches the buffer itself becomes the
/// sealed batch (no copy), so the next batch starts a new buffer.
pub struct BatchBuilder {
    config: BatchConfig,
    /// Header placeholder followed by the encoded records.
    buf: BytesMut,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
    /// The codec's state and the compressed output of the last sealed
    /// batch, reused between batches: made at the first compressed seal.
    /// Boxed, as most builders never compress (a producer compresses when
    /// it sends, not here), and a producer over thousands of partitions
    /// keeps a builder per partition: without its 136 bytes a builder's
    /// fields sit in fewer cache lines, which a record's append touches.
    compression: Option<Box<(Compressor, Vec<u8>)>>,
    /// Uncompressed size of the last batch sealed (0 before the first):
    /// the next batch's buffer starts at twice this, so a partition that
    /// sends small batches holds small buffers. A `u32` (saturating), beside
    /// the `i32` record count, as a builder's bytes count over thousands of
    /// partitions.
    last_size: u32,
}

/// Room a builder asks for its first batch (or after small ones); the
/// buffer grows as records arrive, up to the batch size. Small, as over
/// thousands of partitions a batch holds a record or two, and each
/// partition's buffer stays about twice its last batch.
const START_CAPACITY: usize = 512;

/// An empty buffer of `capacity` bytes, made shared (reference-counted)
/// from the start. A batch leaves its builder as the very buffer it was
/// encoded into, frozen; the buffer is taken back to be stamped, frozen
/// again, and taken back into the spare pool once acknowledged. A plain
/// vector's buffer allocates a reference count at each freeze and frees
/// it at each take: four allocator calls per batch, which over thousands
/// of partitions (a batch per record or two) showed in the profile. Made
/// shared once, the buffer goes through all of them without one.
fn shared_buffer(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(capacity);
    // Splitting off an empty front makes the handle shared; the front,
    // dropped, leaves it the only one.
    drop(buf.split_to(0));
    buf
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("config", &self.config)
            .field("base_timestamp", &self.base_timestamp)
            .field("max_timestamp", &self.max_timestamp)
            .field("record_count", &self.record_count)
            .field("estimated_size", &self.estimated_size())
            .finish()
    }
}

impl BatchBuilder {
    /// An empty builder whose records' timestamps are stored relative to
    /// `base_timestamp` (normally the first record's timestamp).
    pub fn new(config: BatchConfig, base_timestamp: i64) -> Self {
        let mut builder = BatchBuilder {
            config,
            buf: BytesMut::new(),
            base_timestamp,
            max_timestamp: base_timestamp,
            record_count: 0,
            compression: None,
            last_size: 0,
        };
        builder.reset(base_timestamp);
        builder
    }

    /// The builder's configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Drops any appended records and starts a new batch with `base_timestamp`.
    /// Keeps the records buffer when it is still the builder's own.
    pub fn reset(&mut self, base_timestamp: i64) {
        self.reset_from(base_timestamp, None);
    }

    /// [`reset`](Self::reset), taking the buffer for the new batch from
    /// `pool` when the builder's own went out with the last sealed batch.
    ///
    /// The room asked for follows the batches this builder sealed: twice
    /// the last one's size, at least 512 bytes, at most the batch size. A
    /// producer over thousands of partitions, each sealing a few records
    /// per linger, then holds kilobytes per partition rather than a whole
    /// batch size each; a busy partition's batches fill the batch size and
    /// get full-size buffers from the second batch on.
    pub fn reset_from(&mut self, base_timestamp: i64, pool: Option<&mut BufferPool>) {
        let wanted = self.config.soft_limit().min(
            (self.last_size as usize)
                .saturating_mul(2)
                .max(START_CAPACITY),
        );
        if self.buf.capacity() < wanted {
            match pool.and_then(|pool| pool.take(wanted)) {
                Some(buf) => self.buf = buf,
                None => self.buf = shared_buffer(wanted),
            }
        }
        self.restart(base_timestamp);
    }

    /// Empties the buffer down to the header placeholder, without asking for
    /// room: the next `reset` does, once the next batch starts. A buffer
    /// that went out with the sealed batch leaves none to empty: the
    /// placeholder then waits for the next buffer (see
    /// [`ensure_header`](Self::ensure_header)), so that sealing allocates
    /// nothing.
    fn restart(&mut self, base_timestamp: i64) {
        self.buf.clear();
        if self.buf.capacity() >= BATCH_HEADER_LEN {
            self.buf.put_bytes(0, BATCH_HEADER_LEN);
        }
        self.base_timestamp = base_timestamp;
        self.max_timestamp = base_timestamp;
        self.record_count = 0;
    }

    /// Makes room for `size` more bytes. A buffer that has to grow at least
    /// doubles, up to the batch size: one that fills grows in a few steps
    /// to exactly the batch size, the size the spare pool keeps.
    fn make_room(&mut self, size: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= size {
            return;
        }
        let needed = len.saturating_add(size);
        let mut grown = self.buf.capacity().max(1);
        while grown < needed {
            grown = grown.saturating_mul(2);
        }
        self.buf
            .reserve(grown.min(self.config.soft_limit()).max(needed) - len);
    }

    /// Writes the header placeholder if the buffer does not hold it yet.
    fn ensure_header(&mut self) {
        if self.buf.is_empty() {
            self.buf.put_bytes(0, BATCH_HEADER_LEN);
        }
    }

    /// The exact size in bytes of the batch as it stands, uncompressed: the
    /// header plus every appended record.
    pub fn estimated_size(&self) -> usize {
        self.buf.len().max(BATCH_HEADER_LEN)
    }

    /// Records appended so far.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Whether no record has been appended.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// The base timestamp of the batch being built.
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// The size in bytes a record would add to the batch if appended now
    /// (saturating at `usize::MAX` for impossible sizes).
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> usize {
        let body = body_len(
            timestamp.wrapping_sub(self.base_timestamp),
            i64::from(self.record_count),
            key,
            value,
            headers,
        );
        len_varint_len(body).saturating_add(body)
    }

    /// Appends a record if it fits.
    ///
    /// Returns [`AppendOutcome::Full`], having written nothing, when the batch
    /// already holds records and this one would take it past
    /// `max_batch_bytes`. The first record of a batch is accepted up to
    /// `hard_max_bytes`; a record that would pass `hard_max_bytes` even alone
    /// fails with [`RecordsError::RecordTooLarge`], also without writing
    /// anything. Timestamps may be earlier than the base timestamp, but no
    /// further from it than an `i64` can count: a record whose difference
    /// overflows fails with [`RecordsError::TimestampOutOfRange`], again
    /// without writing anything.
    pub fn try_append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<AppendOutcome, RecordsError> {
        // The format stores `timestamp - base timestamp` as a signed 64-bit
        // delta. When the difference overflows (i64::MIN against a positive
        // base, say), a wrapped delta decodes to the right timestamp only in
        // readers that happen to wrap on overflow; others fail (kafka-protocol
        // panics in debug builds) or read a different timestamp. Refuse the
        // record instead.
        let Some(timestamp_delta) = timestamp.checked_sub(self.base_timestamp) else {
            return Err(RecordsError::TimestampOutOfRange {
                timestamp,
                base_timestamp: self.base_timestamp,
            });
        };
        let offset_delta = self.record_count;
        let body = body_len(
            timestamp_delta,
            i64::from(offset_delta),
            key,
            value,
            headers,
        );
        let size = len_varint_len(body).saturating_add(body);

        let alone = BATCH_HEADER_LEN.saturating_add(size);
        let hard = self.config.hard_limit();
        if alone > hard {
            return Err(RecordsError::RecordTooLarge {
                size: alone,
                limit: hard,
            });
        }
        if self.record_count > 0
            && (self.buf.len() + size > self.config.soft_limit() || offset_delta == i32::MAX)
        {
            return Ok(AppendOutcome::Full);
        }

        // Every length below is bounded by the hard limit, which fits in i32.
        self.ensure_header();
        self.make_room(size);
        // The five varint fields before the key are gathered on the stack and
        // copied in at once: one buffer call instead of five, which is most
        // of the cost of a small record.
        let mut head = VarintRun::new();
        head.push(body as i64);
        head.push(0); // record attributes (one zero byte, as a varint)
        head.push(timestamp_delta);
        head.push(i64::from(offset_delta));
        head.push(key.map_or(-1, |k| k.len() as i64));
        self.buf.extend_from_slice(head.as_bytes());
        if let Some(key) = key {
            self.buf.extend_from_slice(key);
        }
        put_nullable(&mut self.buf, value);
        put_varlong(&mut self.buf, headers.len() as i64);
        for (name, header_value) in headers {
            put_varlong(&mut self.buf, name.len() as i64);
            self.buf.extend_from_slice(name.as_bytes());
            put_nullable(&mut self.buf, *header_value);
        }

        if self.record_count == 0 || timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        self.record_count += 1;
        Ok(AppendOutcome::Appended)
    }

    /// Finishes the batch: compresses the records section if configured, writes
    /// the header and returns the batch, leaving the builder empty (call
    /// [`reset`](Self::reset) to set the next base timestamp).
    ///
    /// Fails with [`RecordsError::EmptyBatch`] if no record was appended, and
    /// with a compression error if the codec fails; the records stay in the
    /// builder in both cases.
    pub fn seal(&mut self) -> Result<SealedBatch, RecordsError> {
        self.seal_with(Crc::Now)
    }

    /// [`seal`](Self::seal) for a batch that will be stamped
    /// ([`SealedBatch::stamp`]) before it is sent: its CRC, which the stamp
    /// writes anyway, is left unwritten (a large batch keeps the CRC of its
    /// records, which the stamp combines with the header's). The bytes of
    /// the batch this returns are not a valid record batch until stamped.
    pub fn seal_to_stamp(&mut self) -> Result<SealedBatch, RecordsError> {
        self.seal_with(Crc::AtStamp)
    }

    /// [`seal`](Self::seal) or [`seal_to_stamp`](Self::seal_to_stamp), by
    /// `crc`.
    pub(crate) fn seal_with(&mut self, crc: Crc) -> Result<SealedBatch, RecordsError> {
        if self.record_count == 0 {
            return Err(RecordsError::EmptyBatch);
        }
        let uncompressed_size = self.buf.len();
        self.last_size = u32::try_from(uncompressed_size).unwrap_or(u32::MAX);
        let mut codec = self.config.compression;
        let mut bytes = None;
        if codec != Compression::None {
            let (compressor, scratch) = &mut **self
                .compression
                .get_or_insert_with(|| Box::new((Compressor::new(), Vec::new())));
            scratch.clear();
            scratch.resize(BATCH_HEADER_LEN, 0);
            compressor.compress(
                codec,
                self.config.level,
                &self.buf[BATCH_HEADER_LEN..],
                scratch,
            )?;
            if !self.config.uncompressed_fallback || scratch.len() < uncompressed_size {
                // An exact-size copy, so the in-flight batch holds no slack;
                // the records buffer and the scratch stay for the next batch.
                bytes = Some(BytesMut::from(&scratch[..]));
            }
        }
        let mut bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                // Hand the records buffer over as the batch; the next batch
                // gets a new one.
                codec = Compression::None;
                std::mem::take(&mut self.buf)
            }
        };
        let header = HeaderFields {
            attributes: i16::from(codec.codec_id()),
            last_offset_delta: self.record_count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            record_count: self.record_count,
        };
        header.write(&mut bytes);
        let records_crc = match crc {
            Crc::Now => write_crc(&mut bytes),
            Crc::AtStamp => records_crc(&bytes),
        };
        let sealed = SealedBatch {
            bytes: bytes.freeze(),
            records_crc,
            uncompressed_size,
            record_count: self.record_count,
            base_timestamp: self.base_timestamp,
        };
        let base_timestamp = self.base_timestamp;
        self.restart(base_timestamp);
        Ok(sealed)
    }
}

/// Length of a record after its length prefix.
#[inline]
fn body_len(
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> usize {
    let mut len = 1 + varlong_len(timestamp_delta) + varlong_len(offset_delta);
    len = len
        .saturating_add(nullable_len(key))
        .saturating_add(nullable_len(value))
        .saturating_add(len_varint_len(headers.len()));
    for (name, header_value) in headers {
        len = len
            .saturating_add(len_varint_len(name.len()))
            .saturating_add(name.len())
            .saturating_add(nullable_len(*header_value));
    }
    len
}

#[inline]
fn nullable_len(field: Option<&[u8]>) -> usize {
    match field {
        None => 1,
        Some(b) => len_varint_len(b.len()).saturating_add(b.len()),
    }
}

#[inline]
fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut scratch = [0u8; MAX_VARLONG_LEN];
    // Most lengths and counts take one or two bytes. A slice of known length
    // compiles to plain stores; a variable one to a copy call (and `put_u8`
    // goes through a call that copies too).
    match encode_varlong(v, &mut scratch) {
        1 => buf.extend_from_slice(&[scratch[0]]),
        2 => buf.extend_from_slice(&[scratch[0], scratch[1]]),
        n => buf.extend_from_slice(&scratch[..n]),
    }
}

#[inline]
fn put_nullable(buf: &mut BytesMut, field: Option<&[u8]>) {
    match field {
        None => buf.extend_from_slice(&[1]), // zigzag(-1)
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

/// Varints gathered on the stack: the record length, attributes, timestamp
/// delta, offset delta and key length take at most 5 + 1 + 10 + 5 + 5 bytes.
struct VarintRun {
    bytes: [u8; VarintRun::CAPACITY],
    len: usize,
}

impl VarintRun {
    const CAPACITY: usize = 32;

    #[inline]
    fn new() -> Self {
        VarintRun {
            bytes: [0; Self::CAPACITY],
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, v: i64) {
        self.len += encode_varlong_at(v, &mut self.bytes, self.len);
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Header fields fixed at sealing time.
struct HeaderFields {
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
}

impl HeaderFields {
    /// Writes the full header into the first 61 bytes of `batch`, producer
    /// fields unset, all but the CRC.
    fn write(&self, batch: &mut [u8]) {
        let len = batch.len();
        let batch_length = (len - super::LOG_OVERHEAD) as i32;
        let h = &mut batch[..BATCH_HEADER_LEN];
        h[offsets::BASE_OFFSET..offsets::BATCH_LENGTH].copy_from_slice(&0i64.to_be_bytes());
        h[offsets::BATCH_LENGTH..offsets::PARTITION_LEADER_EPOCH]
            .copy_from_slice(&batch_length.to_be_bytes());
        h[offsets::PARTITION_LEADER_EPOCH..offsets::MAGIC].copy_from_slice(&(-1i32).to_be_bytes());
        h[offsets::MAGIC] = MAGIC_V2 as u8;
        h[offsets::ATTRIBUTES..offsets::LAST_OFFSET_DELTA]
            .copy_from_slice(&self.attributes.to_be_bytes());
        h[offsets::LAST_OFFSET_DELTA..offsets::BASE_TIMESTAMP]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        h[offsets::BASE_TIMESTAMP..offsets::MAX_TIMESTAMP]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[offsets::MAX_TIMESTAMP..offsets::PRODUCER_ID]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[offsets::PRODUCER_ID..offsets::PRODUCER_EPOCH].copy_from_slice(&(-1i64).to_be_bytes());
        h[offsets::PRODUCER_EPOCH..offsets::BASE_SEQUENCE].copy_from_slice(&(-1i16).to_be_bytes());
        h[offsets::BASE_SEQUENCE..offsets::RECORD_COUNT].copy_from_slice(&(-1i32).to_be_bytes());
        h[offsets::RECORD_COUNT..offsets::RECORDS]
            .copy_from_slice(&self.record_count.to_be_bytes());
    }
}

/// Batches at least this long keep the CRC of their records part (from the
/// record count on), and their CRC is the combination of it with the CRC of
/// the header fields (see [`super::crc`]): stamping them does not
/// read the records again. A combination costs about what rescanning 5 KiB
/// does (half a microsecond), so shorter batches are simply rescanned.
const COMBINE_THRESHOLD: usize = 8 * 1024;

/// When a sealed batch's CRC is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crc {
    /// At sealing.
    Now,
    /// By the stamp the sealer gives it before sending it (idempotence):
    /// the CRC is not computed twice.
    AtStamp,
}

/// Writes the CRC of a batch whose header is complete; returns the CRC of
/// its records part when it is kept (see [`COMBINE_THRESHOLD`]).
fn write_crc(batch: &mut [u8]) -> Option<u32> {
    let records_crc = records_crc(batch);
    match records_crc {
        Some(records_crc) => write_combined_crc(batch, records_crc),
        None => write_full_crc(batch),
    }
    records_crc
}

/// The CRC of the bytes from the record count on, for a batch of at least
/// [`COMBINE_THRESHOLD`] bytes.
fn records_crc(batch: &[u8]) -> Option<u32> {
    (batch.len() >= COMBINE_THRESHOLD).then(|| super::crc::crc32c(&batch[offsets::RECORD_COUNT..]))
}

/// Computes the CRC over bytes 21 to the end and stores it.
fn write_full_crc(batch: &mut [u8]) {
    let crc = super::crc::crc32c(&batch[offsets::ATTRIBUTES..]);
    batch[offsets::CRC..offsets::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
}

/// Recomputes the batch CRC from the header fields it covers and the CRC of
/// the bytes from the record count on.
fn write_combined_crc(batch: &mut [u8], records_crc: u32) {
    let head = super::crc::crc32c(&batch[offsets::ATTRIBUTES..offsets::RECORD_COUNT]);
    let crc = super::crc::crc32c_combine(head, records_crc, batch.len() - offsets::RECORD_COUNT);
    batch[offsets::CRC..offsets::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
}

/// A finished record batch, ready to be stamped and sent.
///
/// The bytes are a [`Bytes`], so handing them to a request (and keeping them
/// for a retry) costs a reference count, not a copy.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    bytes: Bytes,
    /// CRC-32C of the bytes from the record count on, kept at sealing for
    /// a batch of at least [`COMBINE_THRESHOLD`] bytes (see `write_crc`).
    records_crc: Option<u32>,
    uncompressed_size: usize,
    /// The header's record count and base timestamp, kept beside the bytes:
    /// an acknowledgement reads them long after the bytes left the cache.
    record_count: i32,
    base_timestamp: i64,
}

impl SealedBatch {
    /// The batch's wire bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The batch's wire bytes, consuming the batch.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Size of the batch on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a sealed batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Size the batch had before compression (header plus records), which is
    /// what the builder accounted.
    pub fn uncompressed_size(&self) -> usize {
        self.uncompressed_size
    }

    /// Number of records.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Offset delta of the last record (record count - 1).
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(&self.bytes, offsets::LAST_OFFSET_DELTA)
    }

    /// The codec the records section is actually compressed with (none when
    /// the uncompressed fallback applied).
    pub fn compression(&self) -> Compression {
        Compression::from_codec_id(self.attributes() as u8 & 0x07).unwrap_or_default()
    }

    /// Attributes as stored in the header.
    pub fn attributes(&self) -> i16 {
        be_i16(&self.bytes, offsets::ATTRIBUTES)
    }

    /// Base timestamp.
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// Largest record timestamp.
    pub fn max_timestamp(&self) -> i64 {
        be_i64(&self.bytes, offsets::MAX_TIMESTAMP)
    }

    /// Producer id (-1 until stamped).
    pub fn producer_id(&self) -> i64 {
        be_i64(&self.bytes, offsets::PRODUCER_ID)
    }

    /// Producer epoch (-1 until stamped).
    pub fn producer_epoch(&self) -> i16 {
        be_i16(&self.bytes, offsets::PRODUCER_EPOCH)
    }

    /// Sequence number of the first record (-1 until stamped).
    pub fn base_sequence(&self) -> i32 {
        be_i32(&self.bytes, offsets::BASE_SEQUENCE)
    }

    /// Whether the transactional bit is set.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & attributes::TRANSACTIONAL != 0
    }

    /// The CRC-32C stored in the header.
    pub fn crc(&self) -> u32 {
        be_i32(&self.bytes, offsets::CRC) as u32
    }

    /// Sets producer id, producer epoch, base sequence and the transactional
    /// bit, and updates the CRC. May be called again (a retry under a new
    /// epoch or sequence) with the same cost.
    ///
    /// Works in place when no clone of [`bytes`](Self::bytes) is alive;
    /// otherwise the batch is copied once and the clones keep the old stamp.
    pub fn stamp(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        transactional: bool,
    ) {
        let bytes = std::mem::take(&mut self.bytes);
        let mut batch = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let mut attrs = be_i16(&batch, offsets::ATTRIBUTES);
        if transactional {
            attrs |= attributes::TRANSACTIONAL;
        } else {
            attrs &= !attributes::TRANSACTIONAL;
        }
        batch[offsets::ATTRIBUTES..offsets::LAST_OFFSET_DELTA]
            .copy_from_slice(&attrs.to_be_bytes());
        batch[offsets::PRODUCER_ID..offsets::PRODUCER_EPOCH]
            .copy_from_slice(&producer_id.to_be_bytes());
        batch[offsets::PRODUCER_EPOCH..offsets::BASE_SEQUENCE]
            .copy_from_slice(&producer_epoch.to_be_bytes());
        batch[offsets::BASE_SEQUENCE..offsets::RECORD_COUNT]
            .copy_from_slice(&base_sequence.to_be_bytes());
        match self.records_crc {
            Some(records_crc) => write_combined_crc(&mut batch, records_crc),
            None => write_full_crc(&mut batch),
        }
        self.bytes = batch.freeze();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::BatchReader;

    fn values(sealed: &SealedBatch) -> Vec<Vec<u8>> {
        let batch = BatchReader::new(sealed.bytes()).next().unwrap().unwrap();
        let mut scratch = Vec::new();
        batch
            .records(&mut scratch)
            .unwrap()
            .map(|r| r.unwrap().value().unwrap().to_vec())
            .collect()
    }

    /// An uncompressed batch leaves with the builder's buffer, and sealing
    /// asks for no new one: the next batch writes its header into whatever
    /// buffer it gets (appended to directly, or after a reset), and reads
    /// back whole.
    #[test]
    fn sealing_hands_the_buffer_over_and_allocates_nothing() {
        let t = 1_700_000_000_000;
        let mut builder = BatchBuilder::new(BatchConfig::new(Compression::None), t);
        let appended = builder.try_append(t, None, Some(b"first"), &[]);
        assert!(matches!(appended, Ok(AppendOutcome::Appended)));
        let first = builder.seal().unwrap();
        assert_eq!(builder.buf.capacity(), 0, "the buffer went with the batch");
        assert!(builder.is_empty());
        assert_eq!(builder.estimated_size(), BATCH_HEADER_LEN);
        // Appended to without a reset: the header comes first.
        let appended = builder.try_append(t + 1, None, Some(b"second"), &[]);
        assert!(matches!(appended, Ok(AppendOutcome::Appended)));
        let second = builder.seal().unwrap();
        // Reset first, as the producer does.
        builder.reset(t + 2);
        let appended = builder.try_append(t + 2, None, Some(b"third"), &[]);
        assert!(matches!(appended, Ok(AppendOutcome::Appended)));
        let appended = builder.try_append(t + 3, None, Some(b"fourth"), &[]);
        assert!(matches!(appended, Ok(AppendOutcome::Appended)));
        let third = builder.seal().unwrap();
        assert_eq!(values(&first), [b"first".to_vec()]);
        assert_eq!(values(&second), [b"second".to_vec()]);
        assert_eq!(values(&third), [b"third".to_vec(), b"fourth".to_vec()]);
    }

    /// A partition sending a record or two per batch holds a small buffer;
    /// one whose batches fill grows its buffer to exactly the batch size
    /// (the size the spare pool keeps), whatever the records' sizes.
    #[test]
    fn buffers_start_small_and_grow_to_exactly_the_batch_size() {
        let t = 1_700_000_000_000;
        let mut config = BatchConfig::new(Compression::None);
        config.max_batch_bytes = 16_384;
        let mut builder = BatchBuilder::new(config, t);
        builder.reset(t);
        let appended = builder.try_append(t, None, Some(&[7u8; 100]), &[]);
        assert!(matches!(appended, Ok(AppendOutcome::Appended)));
        // A batch of one small record sits in half a kilobyte, not more.
        assert_eq!(builder.buf.capacity(), 512);
        let small = builder.seal().unwrap();
        builder.reset(t);
        assert_eq!(
            builder.buf.capacity(),
            512,
            "twice a small batch, at least 512 bytes"
        );
        // Records of an odd size until the batch is full.
        let mut appended = 0;
        while let Ok(AppendOutcome::Appended) =
            builder.try_append(t, None, Some(&[1u8; 1_234]), &[])
        {
            appended += 1;
        }
        assert_eq!(appended, 13);
        assert_eq!(builder.buf.capacity(), 16_384);
        let full = builder.seal().unwrap();
        assert_eq!(values(&small), [vec![7u8; 100]]);
        assert_eq!(values(&full), vec![vec![1u8; 1_234]; 13]);
    }

    /// A batch sealed to be stamped gets the same bytes from the stamp as
    /// one sealed whole and stamped, small (CRC rescanned) and large (CRC
    /// combined), compressed or not; its count and base timestamp are
    /// those of its header.
    #[test]
    fn a_batch_sealed_to_be_stamped_gets_its_crc_from_the_stamp() {
        let t = 1_700_000_000_000;
        for (codec, records) in [
            (Compression::None, 1),
            (Compression::None, 200),
            (Compression::Lz4, 3),
            (Compression::Lz4, 400),
        ] {
            let mut config = BatchConfig::new(codec);
            config.max_batch_bytes = 1 << 20;
            let fill = |builder: &mut BatchBuilder| {
                for i in 0..records {
                    let value = format!("value {i} {}", "x".repeat(i % 64));
                    let appended =
                        builder.try_append(t + i as i64, None, Some(value.as_bytes()), &[]);
                    assert!(matches!(appended, Ok(AppendOutcome::Appended)));
                }
            };
            let mut whole = BatchBuilder::new(config, t);
            fill(&mut whole);
            let mut whole = whole.seal().unwrap();
            let mut deferred = BatchBuilder::new(config, t);
            fill(&mut deferred);
            let mut deferred = deferred.seal_to_stamp().unwrap();
            assert_eq!(deferred.record_count(), i32::try_from(records).unwrap());
            assert_eq!(deferred.base_timestamp(), t);
            let header = |b: &SealedBatch| {
                (
                    be_i32(b.bytes(), offsets::RECORD_COUNT),
                    be_i64(b.bytes(), offsets::BASE_TIMESTAMP),
                )
            };
            assert_eq!(header(&deferred), (deferred.record_count(), t));
            assert_ne!(
                whole.bytes(),
                deferred.bytes(),
                "{codec:?} {records}: no CRC yet"
            );
            whole.stamp(7, 3, 100, false);
            deferred.stamp(7, 3, 100, false);
            assert_eq!(whole.bytes(), deferred.bytes(), "{codec:?} {records}");
            // The reader checks the CRC.
            let batch = BatchReader::new(deferred.bytes()).next().unwrap().unwrap();
            assert_eq!(batch.header().record_count, i32::try_from(records).unwrap());
        }
    }
}
