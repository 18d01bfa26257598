//! Zstandard (codec id 4): one frame with its content size on write, one or
//! more frames on read.
//!
//! Reading reuses one decompression context per thread. A frame that
//! declares its content size (ours, and any producer that compresses whole
//! batches at once) is decompressed in one call into a buffer of that size;
//! others (librdkafka and the Java client write streams) are decompressed as
//! a stream into a buffer that grows with the output.

use std::io::Cursor;

use super::{Compression, CompressionError};

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

/// How much larger than its compressed bytes a frame's declared content may
/// be for it to be decompressed in one call into a buffer of exactly that
/// size. Above it (or with no size declared) the output grows as it is
/// produced instead, so a short hostile frame declaring a huge size costs
/// no more than what it really decompresses to.
const MAX_TRUSTED_RATIO: usize = 64;

thread_local! {
    /// A decompression context per thread, reused for every batch: creating
    /// one (and its buffers) for each batch cost more than decompressing a
    /// batch of a few dozen records.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// The same for frames decompressed as a stream.
    static STREAM_DECODER: std::cell::RefCell<Option<zstd::stream::raw::Decoder<'static>>> =
        const { std::cell::RefCell::new(None) };
}

pub(super) fn decompress(
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    if out.is_empty() && decompress_sized(input, max_output, out) {
        return Ok(());
    }
    out.clear();
    decompress_streaming(input, max_output, out)
}

/// Decompresses a frame that declares its content size (as every producer
/// writing whole batches does) in one call into a buffer of that size, with
/// this thread's reused context. False if the frame declares no size or too
/// large a one, or if the output is not exactly that size: the caller then
/// decompresses it as a stream, which also reports the error of a corrupt
/// frame.
fn decompress_sized(input: &[u8], max_output: usize, out: &mut Vec<u8>) -> bool {
    let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(input) else {
        return false;
    };
    let Ok(declared) = usize::try_from(declared) else {
        return false;
    };
    if declared > max_output || declared > input.len().saturating_mul(MAX_TRUSTED_RATIO) {
        return false;
    }
    out.reserve_exact(declared);
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        let Some(decompressor) = slot.as_mut() else {
            return false;
        };
        // The context keeps no state between frames that matters here;
        // on any failure it is dropped so the next batch starts afresh.
        match decompressor.decompress_to_buffer(input, out) {
            Ok(written) if written == declared && out.len() == declared => true,
            _ => {
                *slot = None;
                false
            }
        }
    })
}

/// Decompresses one or more frames as a stream, with this thread's reused
/// context, the output growing with what is produced (by at most what was
/// produced so far, at least 64 KiB) and never past `max_output`.
fn decompress_streaming(
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let needed = usize::BITS - max_output.saturating_sub(1).leading_zeros();
    let window_log = needed.clamp(MAX_ZSTD_WINDOW_LOG, ZSTD_WINDOW_LOG_LIMIT);
    STREAM_DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let result = stream_with(&mut slot, input, window_log, max_output, out);
        if result.is_err() {
            // Start the next batch from a fresh context.
            *slot = None;
        }
        result
    })
}

fn stream_with(
    slot: &mut Option<zstd::stream::raw::Decoder<'static>>,
    input: &[u8],
    window_log: u32,
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    let corrupt = |e: std::io::Error| CompressionError::corrupt(Compression::Zstd, e);
    let decoder = match slot {
        Some(decoder) => {
            decoder.reinit().map_err(corrupt)?;
            decoder
        }
        None => slot.insert(zstd::stream::raw::Decoder::new().map_err(corrupt)?),
    };
    decoder
        .set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(window_log))
        .map_err(corrupt)?;
    let start = out.len();
    let mut src = InBuffer::around(input);
    // Whether the decoder is between frames (nothing begun and unfinished).
    let mut between_frames = true;
    loop {
        let produced = out.len() - start;
        if out.len() == out.capacity() {
            // One byte past the limit is enough to tell it was passed.
            let room = (max_output + 1 - produced).min(produced.max(64 * 1024));
            out.reserve(room);
        }
        let len = out.len();
        let mut dst = OutBuffer::around_pos(out, len);
        let before = src.pos();
        let hint = decoder.run(&mut src, &mut dst).map_err(corrupt)?;
        let full = dst.pos() == dst.capacity();
        if out.len() - start > max_output {
            out.truncate(start + max_output);
            return Err(CompressionError::OutputTooLarge {
                codec: Compression::Zstd,
                limit: max_output,
            });
        }
        if src.pos() > before {
            between_frames = false;
        }
        if hint == 0 {
            between_frames = true;
        }
        if src.pos() == input.len() && !full {
            if between_frames {
                return Ok(());
            }
            return Err(corrupt(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the input ends inside a frame",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressed(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ZstdState::new(DEFAULT_LEVEL)
            .unwrap()
            .compress(data, &mut out)
            .unwrap();
        out
    }

    fn text(n: usize) -> Vec<u8> {
        crate::compression::sample_text(n, 12345)
    }

    #[test]
    fn a_sized_frame_and_a_stream_give_the_same_bytes() {
        for n in [0, 1, 1000, 65_536, 300_000] {
            let data = text(n);
            let frame = compressed(&data);
            let mut sized = Vec::new();
            assert!(
                n == 0 || decompress_sized(&frame, 1 << 20, &mut sized),
                "{n} bytes"
            );
            let mut streamed = Vec::new();
            decompress_streaming(&frame, 1 << 20, &mut streamed).unwrap();
            let mut out = Vec::new();
            decompress(&frame, 1 << 20, &mut out).unwrap();
            assert_eq!(out, data);
            assert_eq!(streamed, data);
            if n > 0 {
                assert_eq!(sized, data);
            }
        }
    }

    #[test]
    fn two_frames_and_highly_compressible_data_fall_back_to_the_stream() {
        let (a, b) = (text(5000), text(7000));
        let mut frames = compressed(&a);
        frames.extend(compressed(&b));
        let mut out = Vec::new();
        decompress(&frames, 1 << 20, &mut out).unwrap();
        assert_eq!(out, [a, b].concat());

        // 1 MiB of zeros compresses far more than the trusted ratio.
        let zeros = vec![0u8; 1 << 20];
        let frame = compressed(&zeros);
        assert!(!decompress_sized(&frame, 2 << 20, &mut Vec::new()));
        let mut out = Vec::new();
        decompress(&frame, 2 << 20, &mut out).unwrap();
        assert_eq!(out, zeros);
    }

    #[test]
    fn a_frame_asking_for_a_larger_window_than_allowed_is_refused() {
        // A stream with no content size and a 128 MiB window.
        let data = text(200_000);
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder
            .set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        std::io::Write::write_all(&mut encoder, &data).unwrap();
        let frame = encoder.finish().unwrap();
        assert!(decompress(&frame, 1 << 20, &mut Vec::new()).is_err());
        // Allowed when the output limit itself needs such a window.
        let mut out = Vec::new();
        decompress(&frame, 1 << 27, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn limits_and_corruption_are_reported_on_the_sized_path_too() {
        let data = text(100_000);
        let frame = compressed(&data);
        assert!(decompress(&frame, 99_999, &mut Vec::new()).is_err());
        let mut broken = frame.clone();
        let middle = broken.len() / 2;
        broken[middle] ^= 0xff;
        broken.truncate(broken.len() - 3);
        assert!(decompress(&broken, 1 << 20, &mut Vec::new()).is_err());
        // The thread's context still works after a failure.
        let mut out = Vec::new();
        decompress(&frame, 1 << 20, &mut out).unwrap();
        assert_eq!(out, data);
    }
}
