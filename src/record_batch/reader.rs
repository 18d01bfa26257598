//! Reading record batches: [`BatchReader`] walks the batches in a buffer (the
//! `records` field of a Fetch response, or any concatenation of batches),
//! checking each one, and [`Batch::records`] iterates a batch's records.
//!
//! Everything here treats its input as hostile. Every length and count is
//! checked against the bytes actually present before it is used; nothing is
//! allocated from a count (records and headers are parsed lazily, in place);
//! decompression is capped by [`ReadOptions::max_decompressed_bytes`]. A
//! malformed input yields a [`RecordsError`], never a panic.
//!
//! A batch cut short at the end of the buffer is not an error: brokers return
//! a partial last batch when a fetch reaches its size limit. The reader stops
//! before it, and [`BatchReader::remaining`] shows the unread bytes.

use super::varint::{read_varint, read_varlong};
use super::{
    BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, RecordsError, TimestampType, attributes, be_i16,
    be_i32, be_i64, compression_of, offsets,
};
use crate::compression::{self, Compression};

/// Limits and checks applied while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Largest records section a compressed batch may decompress to.
    pub max_decompressed_bytes: usize,
    /// Check each batch's CRC-32C.
    pub verify_crc: bool,
}

impl ReadOptions {
    /// Default decompression limit: 64 MiB.
    pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_decompressed_bytes: Self::DEFAULT_MAX_DECOMPRESSED_BYTES,
            verify_crc: true,
        }
    }
}

/// Iterates the record batches in a buffer.
///
/// Yields each complete batch, checked (length, magic, CRC, codec id); stops
/// quietly at a partial batch at the end; yields one error and then stops at a
/// malformed batch.
#[derive(Debug, Clone)]
pub struct BatchReader<'a> {
    data: &'a [u8],
    options: ReadOptions,
    failed: bool,
}

impl<'a> BatchReader<'a> {
    /// A reader over `data` with the default [`ReadOptions`].
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_options(data, ReadOptions::default())
    }

    /// A reader over `data` with the given options.
    pub fn with_options(data: &'a [u8], options: ReadOptions) -> Self {
        BatchReader {
            data,
            options,
            failed: false,
        }
    }

    /// The bytes not read yet: after the iterator is done, the partial batch
    /// at the end (empty if there was none), or the batch that failed.
    pub fn remaining(&self) -> &'a [u8] {
        self.data
    }

    fn read_batch(&mut self) -> Result<Option<Batch<'a>>, RecordsError> {
        let data = self.data;
        if data.len() < LOG_OVERHEAD {
            return Ok(None);
        }
        let batch_length = be_i32(data, offsets::BATCH_LENGTH);
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(RecordsError::InvalidBatchLength(batch_length));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        let Some(bytes) = data.get(..total) else {
            return Ok(None);
        };
        // The magic says where the CRC is; check it, then the CRC, and only
        // then trust the other fields.
        let magic = bytes[offsets::MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordsError::UnsupportedMagic(magic));
        }
        if self.options.verify_crc {
            let stored = be_i32(bytes, offsets::CRC) as u32;
            let computed = super::crc::crc32c(&bytes[offsets::ATTRIBUTES..]);
            if computed != stored {
                return Err(RecordsError::CrcMismatch { stored, computed });
            }
        }
        let header = BatchHeader::parse(bytes)?;
        self.data = &data[total..];
        Ok(Some(Batch {
            header,
            bytes,
            max_decompressed_bytes: self.options.max_decompressed_bytes,
        }))
    }
}

impl<'a> Iterator for BatchReader<'a> {
    type Item = Result<Batch<'a>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.read_batch() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for BatchReader<'_> {}

/// The header fields of a record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batch length field.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Format version (always 2 here).
    pub magic: i8,
    /// CRC-32C as stored.
    pub crc: u32,
    /// Raw attributes.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Base timestamp.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records declared.
    pub record_count: i32,
    /// Codec of the records section.
    pub compression: Compression,
}

impl BatchHeader {
    /// Parses and checks (magic, codec id, record count) the header at the
    /// start of `batch`, which must hold at least the 61 header bytes.
    pub fn parse(batch: &[u8]) -> Result<BatchHeader, RecordsError> {
        if batch.len() < BATCH_HEADER_LEN {
            // A partial header: say which part is missing.
            let field = if batch.len() <= offsets::MAGIC {
                "batch header before magic"
            } else {
                "batch header"
            };
            return Err(RecordsError::Truncated(field));
        }
        let magic = batch[offsets::MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordsError::UnsupportedMagic(magic));
        }
        let attributes = be_i16(batch, offsets::ATTRIBUTES);
        let compression = compression_of(attributes)?;
        let record_count = be_i32(batch, offsets::RECORD_COUNT);
        if record_count < 0 {
            return Err(RecordsError::InvalidLength {
                field: "record count",
                value: i64::from(record_count),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(batch, offsets::BASE_OFFSET),
            batch_length: be_i32(batch, offsets::BATCH_LENGTH),
            partition_leader_epoch: be_i32(batch, offsets::PARTITION_LEADER_EPOCH),
            magic,
            crc: be_i32(batch, offsets::CRC) as u32,
            attributes,
            last_offset_delta: be_i32(batch, offsets::LAST_OFFSET_DELTA),
            base_timestamp: be_i64(batch, offsets::BASE_TIMESTAMP),
            max_timestamp: be_i64(batch, offsets::MAX_TIMESTAMP),
            producer_id: be_i64(batch, offsets::PRODUCER_ID),
            producer_epoch: be_i16(batch, offsets::PRODUCER_EPOCH),
            base_sequence: be_i32(batch, offsets::BASE_SEQUENCE),
            record_count,
            compression,
        })
    }

    /// What the record timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & attributes::TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    /// Whether the batch carries a delete horizon (compacted topics).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & attributes::DELETE_HORIZON != 0
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Offset after the last record (where the next fetch continues).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// Total size of the batch in bytes.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
}

/// One checked record batch, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
    max_decompressed_bytes: usize,
}

impl<'a> Batch<'a> {
    /// The header fields.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch as it appeared in the buffer.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records section as stored (compressed if the codec is not none).
    pub fn records_section(&self) -> &'a [u8] {
        &self.bytes[BATCH_HEADER_LEN..]
    }

    /// The batch's records. An uncompressed batch is read in place; a
    /// compressed one is first decompressed into `scratch` (cleared first,
    /// and reusable across batches), within the reader's decompression limit.
    pub fn records<'s>(&'s self, scratch: &'s mut Vec<u8>) -> Result<Records<'s>, RecordsError> {
        let data: &'s [u8] = match self.header.compression {
            Compression::None => self.records_section(),
            _ => {
                self.decompress_into(scratch)?;
                scratch
            }
        };
        Ok(self.records_in(data))
    }

    /// Decompresses the records section into `out` (cleared first), within
    /// the reader's decompression limit; nothing for an uncompressed batch.
    pub(crate) fn decompress_into(&self, out: &mut Vec<u8>) -> Result<(), RecordsError> {
        out.clear();
        match self.header.compression {
            Compression::None => Ok(()),
            codec => Ok(compression::decompress(
                codec,
                self.records_section(),
                self.max_decompressed_bytes,
                out,
            )?),
        }
    }

    /// The records parsed from `data`: the records section if uncompressed,
    /// else what [`decompress_into`](Self::decompress_into) wrote.
    pub(crate) fn records_in<'s>(&self, data: &'s [u8]) -> Records<'s> {
        Records {
            data,
            header: self.header,
            index: 0,
            done: false,
        }
    }

    /// For a control batch, its control record; `None` for other batches.
    pub fn control_record(
        &self,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<ControlRecord>, RecordsError> {
        if !self.header.is_control() {
            return Ok(None);
        }
        let mut records = self.records(scratch)?;
        match records.next() {
            Some(record) => record?.control().map(Some),
            None => Err(RecordsError::InvalidControlRecord(
                "control batch without records",
            )),
        }
    }
}

/// Iterates the records of a batch, parsing each in place.
///
/// Yields exactly the declared number of records, then checks that nothing is
/// left over. Yields one error and stops at the first malformed record.
#[derive(Debug, Clone)]
pub struct Records<'s> {
    data: &'s [u8],
    header: BatchHeader,
    index: i32,
    done: bool,
}

impl<'s> Records<'s> {
    fn fail(&mut self, e: RecordsError) -> Option<Result<RecordView<'s>, RecordsError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'s> Iterator for Records<'s> {
    type Item = Result<RecordView<'s>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.header.record_count {
            self.done = true;
            if !self.data.is_empty() {
                return Some(Err(RecordsError::TrailingBytes {
                    field: "last record",
                    count: self.data.len(),
                }));
            }
            return None;
        }
        if self.data.is_empty() {
            let found = self.index;
            return self.fail(RecordsError::CountMismatch {
                declared: self.header.record_count,
                found,
            });
        }
        match RecordView::parse(&mut self.data, &self.header) {
            Ok(record) => {
                self.index += 1;
                Some(Ok(record))
            }
            Err(e) => self.fail(e),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let left = (self.header.record_count - self.index) as usize;
        // A malformed record may end the iteration early, and the final check
        // may add an error.
        (0, Some(left + 1))
    }
}

impl std::iter::FusedIterator for Records<'_> {}

/// One record, borrowed from the batch (or its decompressed records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'s> {
    offset: i64,
    timestamp: i64,
    offset_delta: i32,
    timestamp_delta: i64,
    attributes: i8,
    key: Option<&'s [u8]>,
    value: Option<&'s [u8]>,
    header_count: i32,
    headers: &'s [u8],
}

fn read_nullable<'s>(
    input: &mut &'s [u8],
    field: &'static str,
) -> Result<Option<&'s [u8]>, RecordsError> {
    let len = read_varint(input, field)?;
    if len == -1 {
        return Ok(None);
    }
    if len < 0 {
        return Err(RecordsError::InvalidLength {
            field,
            value: i64::from(len),
        });
    }
    let len = len as usize;
    if len > input.len() {
        return Err(RecordsError::Truncated(field));
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Ok(Some(bytes))
}

impl<'s> RecordView<'s> {
    fn parse(input: &mut &'s [u8], batch: &BatchHeader) -> Result<RecordView<'s>, RecordsError> {
        let len = read_varint(input, "record length")?;
        if len < 0 {
            return Err(RecordsError::InvalidLength {
                field: "record length",
                value: i64::from(len),
            });
        }
        let len = len as usize;
        if len > input.len() {
            return Err(RecordsError::Truncated("record"));
        }
        let (mut body, rest) = input.split_at(len);
        *input = rest;

        let (&attributes, tail) = body
            .split_first()
            .ok_or(RecordsError::Truncated("record attributes"))?;
        body = tail;
        let timestamp_delta = read_varlong(&mut body, "timestamp delta")?;
        let offset_delta = read_varint(&mut body, "offset delta")?;
        let key = read_nullable(&mut body, "key")?;
        let value = read_nullable(&mut body, "value")?;
        let header_count = read_varint(&mut body, "header count")?;
        // Each header takes at least two bytes (two length varints).
        if header_count < 0 || header_count as usize > body.len() / 2 {
            return Err(RecordsError::InvalidLength {
                field: "header count",
                value: i64::from(header_count),
            });
        }
        let headers = body;
        for _ in 0..header_count {
            match read_nullable(&mut body, "header key")? {
                Some(_) => {}
                None => {
                    return Err(RecordsError::InvalidLength {
                        field: "header key length",
                        value: -1,
                    });
                }
            }
            read_nullable(&mut body, "header value")?;
        }
        if !body.is_empty() {
            return Err(RecordsError::TrailingBytes {
                field: "record",
                count: body.len(),
            });
        }

        let timestamp = match batch.timestamp_type() {
            TimestampType::LogAppendTime => batch.max_timestamp,
            TimestampType::CreateTime => batch.base_timestamp.wrapping_add(timestamp_delta),
        };
        Ok(RecordView {
            offset: batch.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            offset_delta,
            timestamp_delta,
            attributes: attributes as i8,
            key,
            value,
            header_count,
            headers,
        })
    }

    /// The record's offset (base offset plus offset delta).
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp: base timestamp plus delta for create time, the
    /// batch's max timestamp for log append time.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Offset relative to the batch's base offset.
    pub fn offset_delta(&self) -> i32 {
        self.offset_delta
    }

    /// Timestamp relative to the batch's base timestamp, as stored.
    pub fn timestamp_delta(&self) -> i64 {
        self.timestamp_delta
    }

    /// The record attributes byte (unused by current Kafka versions).
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// The key, `None` if null.
    pub fn key(&self) -> Option<&'s [u8]> {
        self.key
    }

    /// The value, `None` if null (a tombstone on compacted topics).
    pub fn value(&self) -> Option<&'s [u8]> {
        self.value
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The headers, in order.
    pub fn headers(&self) -> Headers<'s> {
        Headers {
            data: self.headers,
            left: self.header_count,
        }
    }

    /// Reads this record as a control record (for records of control batches).
    pub fn control(&self) -> Result<ControlRecord, RecordsError> {
        ControlRecord::parse(self.key, self.value)
    }
}

/// Iterates a record's headers (already checked when the record was read).
#[derive(Debug, Clone)]
pub struct Headers<'s> {
    data: &'s [u8],
    left: i32,
}

impl<'s> Iterator for Headers<'s> {
    type Item = HeaderView<'s>;

    fn next(&mut self) -> Option<HeaderView<'s>> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        // The record parser checked every header, so these cannot fail; stop
        // rather than panic if they somehow do.
        let key = read_nullable(&mut self.data, "header key").ok().flatten();
        let value = read_nullable(&mut self.data, "header value").ok();
        match (key, value) {
            (Some(key), Some(value)) => Some(HeaderView { key, value }),
            _ => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.left.max(0) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Headers<'_> {}
impl std::iter::FusedIterator for Headers<'_> {}

/// A record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'s> {
    /// The key as stored (UTF-8 when written by a conforming client).
    pub key: &'s [u8],
    /// The value, `None` if null.
    pub value: Option<&'s [u8]>,
}

impl<'s> HeaderView<'s> {
    /// The key as a string, if it is valid UTF-8.
    pub fn key_str(&self) -> Result<&'s str, std::str::Utf8Error> {
        std::str::from_utf8(self.key)
    }
}

/// The type of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    /// A transaction was aborted (type 0).
    Abort,
    /// A transaction was committed (type 1).
    Commit,
    /// Another control type (KRaft metadata records and later additions).
    Other(i16),
}

/// A control record: the key's version and type, and for transaction markers
/// the coordinator epoch from the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// Version of the control record key.
    pub version: i16,
    /// What the record marks.
    pub kind: ControlRecordType,
    /// Epoch of the transaction coordinator, for commit and abort markers
    /// whose value carries it.
    pub coordinator_epoch: Option<i32>,
}

impl ControlRecord {
    /// Parses a control record from its key and value.
    pub fn parse(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self, RecordsError> {
        let key = key.ok_or(RecordsError::InvalidControlRecord("null key"))?;
        if key.len() < 4 {
            return Err(RecordsError::InvalidControlRecord(
                "key shorter than 4 bytes",
            ));
        }
        let version = be_i16(key, 0);
        if version < 0 {
            return Err(RecordsError::InvalidControlRecord("negative key version"));
        }
        let kind = match be_i16(key, 2) {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            other => ControlRecordType::Other(other),
        };
        let coordinator_epoch = match (kind, value) {
            (ControlRecordType::Abort | ControlRecordType::Commit, Some(v)) if v.len() >= 6 => {
                Some(be_i32(v, 2))
            }
            _ => None,
        };
        Ok(ControlRecord {
            version,
            kind,
            coordinator_epoch,
        })
    }
}
