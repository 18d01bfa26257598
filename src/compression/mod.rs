//! Compression codecs for the records section of Kafka record batches.
//!
//! This module owns the five codecs a magic v2 record batch can carry in the low
//! three bits of its attributes, and both directions of each:
//!
//! | codec             | id | written as                                   | read as                                  |
//! |-------------------|----|----------------------------------------------|------------------------------------------|
//! | [`Compression::None`]   | 0 | the records as they are                 | the records as they are                  |
//! | [`Compression::Gzip`]   | 1 | one gzip member (RFC 1952)               | one or more gzip members                 |
//! | [`Compression::Snappy`] | 2 | xerial framing of raw snappy blocks      | xerial framing, or a single raw block    |
//! | [`Compression::Lz4`]    | 3 | one LZ4 frame (independent 64 KiB blocks)| one LZ4 frame, any block size or mode    |
//! | [`Compression::Zstd`]   | 4 | one zstd frame with its content size     | one or more zstd frames                  |
//!
//! # Snappy framing
//!
//! The Java client writes snappy through `SnappyOutputStream`, which frames raw
//! snappy blocks as `\x82SNAPPY\0`, a big-endian version and compatible-version
//! (both 1), then for every block of at most 32 KiB of input a 4-byte big-endian
//! length and the raw snappy data. The Java reader (`SnappyInputStream`) falls
//! back to a single raw block when that magic is absent, and librdkafka writes a
//! single raw block and reads both forms. This module writes the xerial framing,
//! which every Kafka reader accepts, including the broker's own validation, and
//! reads both forms.
//!
//! # Levels
//!
//! A level is an `Option<i32>`; `None` picks the codec's default:
//!
//! * gzip: 0 (store) to 9 (best); default 6, the level the Java client and zlib
//!   use when none is configured. Out-of-range values are clamped.
//! * zstd: zstd's range (negative "fast" levels up to 22); default 3, as in the
//!   Java client. Out-of-range values are clamped.
//! * lz4: the fast LZ4 compressor has no levels (the producer refuses one).
//! * snappy and none: no levels (the producer refuses one).
//!
//! # Bounded decompression
//!
//! Every decompressor takes a maximum output size and fails with
//! [`CompressionError::OutputTooLarge`] as soon as the output would pass it.
//! Output buffers grow with the data actually produced, never from a size the
//! input declares unless that size is already within the limit, so a hostile
//! payload (a "zip bomb", a bogus length prefix) costs at most the limit in
//! memory. The zstd window a frame may ask for is capped as well (see
//! [`MAX_ZSTD_WINDOW_LOG`]).
//!
//! # Reuse
//!
//! [`Compressor`] keeps each codec's working state (hash tables, deflate and
//! zstd contexts) between calls, so compressing one batch after another
//! allocates nothing but the output. The free function [`compress`] is the
//! one-shot form.

mod gzip;
mod lz4;
mod snappy;
mod zstd_codec;

use std::fmt;
use std::str::FromStr;

pub use snappy::XERIAL_MAGIC;
pub use zstd_codec::MAX_ZSTD_WINDOW_LOG;

/// The compression codec of a record batch, as stored in bits 0-2 of its
/// attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Compression {
    /// No compression (codec id 0).
    #[default]
    None = 0,
    /// gzip (codec id 1).
    Gzip = 1,
    /// snappy (codec id 2).
    Snappy = 2,
    /// LZ4 frame format (codec id 3).
    Lz4 = 3,
    /// Zstandard (codec id 4).
    Zstd = 4,
}

impl Compression {
    /// Every codec, in codec id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec id written in a record batch's attributes.
    pub const fn codec_id(self) -> u8 {
        self as u8
    }

    /// The codec for an attribute codec id, or `None` for an id no Kafka
    /// version defines (5-7).
    pub const fn from_codec_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's name as Kafka's `compression.type` setting spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when none is given: 6 for gzip, 3 for zstd, `None` for
    /// codecs without levels.
    pub const fn default_level(self) -> Option<i32> {
        match self {
            Compression::Gzip => Some(gzip::DEFAULT_LEVEL),
            Compression::Zstd => Some(zstd_codec::DEFAULT_LEVEL),
            _ => None,
        }
    }

    /// The level that compressing with `level` actually uses: the default when
    /// `level` is `None`, clamped to the codec's range otherwise, and `None` for
    /// codecs without levels.
    pub fn effective_level(self, level: Option<i32>) -> Option<i32> {
        match self {
            Compression::Gzip => Some(gzip::clamp_level(level)),
            Compression::Zstd => Some(zstd_codec::clamp_level(level)),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = CompressionError;

    /// Parses a `compression.type` value (`none`, `gzip`, `snappy`, `lz4`,
    /// `zstd`), ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CompressionError::UnknownCodecName(s.to_owned()))
    }
}

/// Why compressing or decompressing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    /// The attribute codec id is not one Kafka defines.
    #[error("unknown compression codec id {0}")]
    UnknownCodec(u8),
    /// The codec name is not one Kafka defines.
    #[error("unknown compression codec {0:?}")]
    UnknownCodecName(String),
    /// Decompressing would produce more than the allowed number of bytes.
    #[error("decompressed {codec} data exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// The codec being decompressed.
        codec: Compression,
        /// The limit that was passed.
        limit: usize,
    },
    /// The compressed data is malformed.
    #[error("corrupt {codec} data: {detail}")]
    Corrupt {
        /// The codec being decompressed.
        codec: Compression,
        /// What was wrong with it.
        detail: String,
    },
    /// The compressor itself failed (it does not, for in-memory data, unless
    /// the codec library reports an internal error).
    #[error("{codec} compression failed: {detail}")]
    CompressFailed {
        /// The codec compressing.
        codec: Compression,
        /// The library's report.
        detail: String,
    },
}

impl CompressionError {
    pub(crate) fn corrupt(codec: Compression, detail: impl fmt::Display) -> Self {
        CompressionError::Corrupt {
            codec,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn failed(codec: Compression, detail: impl fmt::Display) -> Self {
        CompressionError::CompressFailed {
            codec,
            detail: detail.to_string(),
        }
    }
}

/// Reusable compression state for every codec.
///
/// Each codec's state is created the first time that codec is used and kept
/// for later calls, so a producer compressing batch after batch with one
/// `Compressor` allocates only the output it appends to.
#[derive(Default)]
pub struct Compressor {
    gzip: Option<gzip::GzipState>,
    /// Boxed like lz4's table: the encoder holds a 2 KiB table inline, and
    /// a compressor is made for every batch builder that compresses.
    snappy: Option<Box<snap::raw::Encoder>>,
    lz4: Option<Box<lz4_flex::block::CompressTable>>,
    zstd: Option<zstd_codec::ZstdState>,
    /// Output room for one lz4 or snappy block. It only grows, so the
    /// worst-case size is zeroed once rather than before every block.
    block: Vec<u8>,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("gzip", &self.gzip.is_some())
            .field("snappy", &self.snappy.is_some())
            .field("lz4", &self.lz4.is_some())
            .field("zstd", &self.zstd.is_some())
            .finish()
    }
}

impl Compressor {
    /// A compressor with no codec state yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compresses `input` with `codec` at `level` (see the module docs for
    /// levels) and appends the result to `out`. [`Compression::None`] appends
    /// `input` unchanged.
    pub fn compress(
        &mut self,
        codec: Compression,
        level: Option<i32>,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        match codec {
            Compression::None => {
                out.extend_from_slice(input);
                Ok(())
            }
            Compression::Gzip => {
                let level = gzip::clamp_level(level);
                let state = match &mut self.gzip {
                    Some(state) if state.level() == level => state,
                    slot => slot.insert(gzip::GzipState::new(level)),
                };
                state.compress(input, out)
            }
            Compression::Snappy => {
                let encoder = self
                    .snappy
                    .get_or_insert_with(|| Box::new(snap::raw::Encoder::new()));
                snappy::compress_xerial(encoder, &mut self.block, input, out)
            }
            Compression::Lz4 => {
                let table = self
                    .lz4
                    .get_or_insert_with(|| Box::new(lz4_flex::block::CompressTable::default()));
                lz4::compress_frame(table, &mut self.block, input, out)
            }
            Compression::Zstd => {
                let level = zstd_codec::clamp_level(level);
                let state = match &mut self.zstd {
                    Some(state) if state.level() == level => state,
                    slot => slot.insert(zstd_codec::ZstdState::new(level)?),
                };
                state.compress(input, out)
            }
        }
    }
}

/// Compresses `input` with `codec` at `level` and appends the result to `out`,
/// using fresh codec state. Prefer a kept [`Compressor`] on hot paths.
pub fn compress(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    Compressor::new().compress(codec, level, input, out)
}

/// Decompresses `input`, compressed with `codec`, appending the output to
/// `out`.
///
/// Fails with [`CompressionError::OutputTooLarge`] if the output would be longer
/// than `max_output` bytes; `out` then holds what it held before plus an
/// unspecified prefix of the output, at most `max_output` bytes long. Memory use
/// is bounded by `max_output` (plus the codec's fixed working state), whatever
/// the input declares.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match codec {
        Compression::None => {
            if input.len() > max_output {
                return Err(CompressionError::OutputTooLarge {
                    codec,
                    limit: max_output,
                });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => gzip::decompress(input, max_output, out),
        Compression::Snappy => snappy::decompress(input, max_output, out),
        Compression::Lz4 => lz4::decompress_frame(input, max_output, out),
        Compression::Zstd => zstd_codec::decompress(input, max_output, out),
    }
}

/// Reads everything `reader` produces into `out`, failing once the output
/// passes `max_output` bytes. The vector grows with the data read, so memory is
/// bounded by the limit.
fn read_capped(
    codec: Compression,
    reader: impl std::io::Read,
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    use std::io::Read as _;
    let start = out.len();
    let limit = u64::try_from(max_output)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    match reader.take(limit).read_to_end(out) {
        Ok(_) if out.len() - start > max_output => {
            out.truncate(start + max_output);
            Err(CompressionError::OutputTooLarge {
                codec,
                limit: max_output,
            })
        }
        Ok(_) => Ok(()),
        Err(e) => Err(CompressionError::corrupt(codec, e)),
    }
}

/// Text about as compressible as JSON events (letters of a small alphabet
/// in a pseudo-random order), for the codecs' tests.
#[cfg(test)]
pub(crate) fn sample_text(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            b"abcdefghij{}:,\" 0123"[(x >> 16) as usize % 20]
        })
        .collect()
}
