//! Zstandard (codec id 4): one frame with its content size on write, one or
//! more frames on read.

use std::io::Cursor;

use super::{Compression, CompressionError, read_capped};

/// Level used when none is configured (the Java client's default).
pub(super) const DEFAULT_LEVEL: i32 = 3;

/// The largest window (as a power of two) a frame may require to be read:
/// 2^24 bytes (16 MiB), or the next power of two above the output limit when
/// that is larger, and never more than zstd's own default limit of 2^27. Frames
/// written by any level up to 19 need at most 2^23, so this refuses only frames
/// that ask a reader for more memory than their output could ever need.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 24;

/// zstd's default maximum window for decompression.
const ZSTD_WINDOW_LOG_LIMIT: u32 = 27;

pub(super) fn clamp_level(level: Option<i32>) -> i32 {
    let range = zstd::compression_level_range();
    level
        .unwrap_or(DEFAULT_LEVEL)
        .clamp(*range.start(), *range.end())
}

/// A zstd compression context kept between batches.
pub(super) struct ZstdState {
    level: i32,
    compressor: zstd::bulk::Compressor<'static>,
}

impl ZstdState {
    pub(super) fn new(level: i32) -> Result<Self, CompressionError> {
        let compressor = zstd::bulk::Compressor::new(level)
            .map_err(|e| CompressionError::failed(Compression::Zstd, e))?;
        Ok(ZstdState { level, compressor })
    }

    pub(super) fn level(&self) -> i32 {
        self.level
    }

    pub(super) fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        out.reserve(zstd::zstd_safe::compress_bound(input.len()));
        let at = out.len() as u64;
        let mut cursor = Cursor::new(out);
        cursor.set_position(at);
        self.compressor
            .compress_to_buffer(input, &mut cursor)
            .map_err(|e| CompressionError::failed(Compression::Zstd, e))?;
        Ok(())
    }
}

pub(super) fn decompress(
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let corrupt = |e: std::io::Error| CompressionError::corrupt(Compression::Zstd, e);
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
    let needed = usize::BITS - max_output.saturating_sub(1).leading_zeros();
    let window_log = needed.clamp(MAX_ZSTD_WINDOW_LOG, ZSTD_WINDOW_LOG_LIMIT);
    decoder.window_log_max(window_log).map_err(corrupt)?;
    read_capped(Compression::Zstd, decoder, max_output, out)
}
