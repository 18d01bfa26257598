//! LZ4 (codec id 3): the standard LZ4 frame format, which is what magic v2
//! record batches carry.
//!
//! Frames are written by hand around the block compressor so that one hash
//! table is reused for every batch:
//!
//! ```text
//! 04 22 4D 18   magic (little-endian 0x184D2204)
//! 60            FLG: version 01, independent blocks, no checksums, no content size
//! 40            BD: 64 KiB maximum block size
//! 82            header checksum (second byte of xxh32 over FLG and BD)
//! [size u32 LE][block] ...   high bit of size set = block stored uncompressed
//! 00 00 00 00   end mark
//! ```
//!
//! Reading accepts any frame the format allows except dictionary ids: every
//! block size, dependent blocks, block and content checksums (skipped, not
//! verified; the record batch CRC already covers the data), a content size,
//! and several frames in a row.

use lz4_flex::block::{
    CompressTable, DecompressError, compress_into_with_table, decompress_into,
    decompress_into_with_dict, get_maximum_output_size,
};

use super::{Compression, CompressionError};

const MAGIC: [u8; 4] = 0x184D_2204_u32.to_le_bytes();
const HEADER: [u8; 7] = [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], 0x60, 0x40, 0x82];
const BLOCK_SIZE: usize = 64 * 1024;
const UNCOMPRESSED_FLAG: u32 = 0x8000_0000;
/// LZ4 back-references reach at most this far, so a dependent block needs no
/// more of the previous output than this.
const WINDOW: usize = 64 * 1024;

fn corrupt(detail: impl std::fmt::Display) -> CompressionError {
    CompressionError::corrupt(Compression::Lz4, detail)
}

/// Compresses `input` as an lz4 frame appended to `out`. Each block is
/// compressed into `room` (grown to the worst case once, then reused), so
/// `out` receives only the bytes written.
pub(super) fn compress_frame(
    table: &mut CompressTable,
    room: &mut Vec<u8>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    out.extend_from_slice(&HEADER);
    for block in input.chunks(BLOCK_SIZE) {
        let bound = get_maximum_output_size(block.len());
        if room.len() < bound {
            room.resize(bound, 0);
        }
        let written = compress_into_with_table(block, &mut room[..bound], table)
            .map_err(|e| CompressionError::failed(Compression::Lz4, e))?;
        // Blocks are at most 64 KiB, so these lengths fit in 31 bits.
        if written < block.len() {
            out.extend_from_slice(&(written as u32).to_le_bytes());
            out.extend_from_slice(&room[..written]);
        } else {
            out.extend_from_slice(&(block.len() as u32 | UNCOMPRESSED_FLAG).to_le_bytes());
            out.extend_from_slice(block);
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(())
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], CompressionError> {
    if input.len() < n {
        return Err(corrupt(format_args!("truncated {what}")));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn take_u32(input: &mut &[u8], what: &str) -> Result<u32, CompressionError> {
    let bytes = take(input, 4, what)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

pub(super) fn decompress_frame(
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let start = out.len();
    let result = decompress_frames(input, start, max_output, out);
    if result.is_err() {
        out.truncate(start.min(out.len()));
    }
    result
}

fn decompress_frames(
    mut input: &[u8],
    start: usize,
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    if input.is_empty() {
        return Err(corrupt("empty input"));
    }
    while !input.is_empty() {
        decompress_one(&mut input, start, max_output, out)?;
    }
    Ok(())
}

fn decompress_one(
    input: &mut &[u8],
    start: usize,
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    if take_u32(input, "frame magic")? != u32::from_le_bytes(MAGIC) {
        return Err(corrupt("bad frame magic"));
    }
    let descriptor = take(input, 2, "frame descriptor")?;
    let (flg, bd) = (descriptor[0], descriptor[1]);
    if flg >> 6 != 0b01 {
        return Err(corrupt(format_args!(
            "unsupported frame version {}",
            flg >> 6
        )));
    }
    let independent = flg & 0x20 != 0;
    let block_checksums = flg & 0x10 != 0;
    let content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    if flg & 0x01 != 0 {
        return Err(corrupt("frames with a dictionary id are not supported"));
    }
    let block_max = match (bd >> 4) & 0x07 {
        4 => 64 * 1024,
        5 => 256 * 1024,
        6 => 1024 * 1024,
        7 => 4 * 1024 * 1024,
        code => return Err(corrupt(format_args!("bad block size code {code}"))),
    };
    if content_size {
        take(input, 8, "content size")?;
    }
    take(input, 1, "header checksum")?;
    let frame_start = out.len();
    // Bytes written so far; `out` may hold zeroes past it, left from the
    // room given to the last block, so that each block zero-fills only what
    // the block before it did not use (not its whole maximum size again).
    let mut filled = out.len();
    let result = decompress_blocks(
        input,
        block_max,
        independent,
        block_checksums,
        (start, frame_start),
        max_output,
        out,
        &mut filled,
    );
    out.truncate(filled);
    result?;
    if content_checksum {
        take(input, 4, "content checksum")?;
    }
    Ok(())
}

/// The blocks of one frame, up to its end mark, written into `out` from
/// `filled` on (see [`decompress_one`]); `start` and `frame_start` are where
/// the whole output and this frame begin in `out`.
#[allow(clippy::too_many_arguments)]
fn decompress_blocks(
    input: &mut &[u8],
    block_max: usize,
    independent: bool,
    block_checksums: bool,
    (start, frame_start): (usize, usize),
    max_output: usize,
    out: &mut Vec<u8>,
    filled: &mut usize,
) -> Result<(), CompressionError> {
    loop {
        let size = take_u32(input, "block size")?;
        if size == 0 {
            break;
        }
        let stored = size & UNCOMPRESSED_FLAG != 0;
        let len = (size & !UNCOMPRESSED_FLAG) as usize;
        if len > block_max {
            return Err(corrupt(format_args!(
                "block of {len} bytes exceeds the frame's maximum of {block_max}"
            )));
        }
        let block = take(input, len, "block")?;
        if block_checksums {
            take(input, 4, "block checksum")?;
        }
        let budget = max_output - (*filled - start);
        let too_large = CompressionError::OutputTooLarge {
            codec: Compression::Lz4,
            limit: max_output,
        };
        if stored {
            if len > budget {
                return Err(too_large);
            }
            out.truncate(*filled);
            out.extend_from_slice(block);
            *filled = out.len();
            continue;
        }
        let room = block_max.min(budget);
        let at = *filled;
        if out.len() < at + room {
            out.resize(at + room, 0);
        }
        let result = if independent {
            decompress_into(block, &mut out[at..at + room])
        } else {
            let (before, after) = out.split_at_mut(at);
            let dict = &before[frame_start.max(at.saturating_sub(WINDOW))..];
            decompress_into_with_dict(block, &mut after[..room], dict)
        };
        match result {
            Ok(written) => *filled = at + written,
            Err(DecompressError::OutputTooSmall { .. }) if room < block_max => {
                return Err(too_large);
            }
            Err(e) => return Err(corrupt(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn text(n: usize) -> Vec<u8> {
        crate::compression::sample_text(n, 7)
    }

    /// A frame written by lz4_flex's own frame encoder.
    fn their_frame(data: &[u8], block: lz4_flex::frame::BlockSize, linked: bool) -> Vec<u8> {
        let mut info = lz4_flex::frame::FrameInfo::new()
            .block_size(block)
            .content_checksum(true);
        if linked {
            info = info.block_mode(lz4_flex::frame::BlockMode::Linked);
        }
        let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn frames_of_another_encoder_decode_whatever_their_blocks() {
        use lz4_flex::frame::BlockSize;
        for n in [1, 1000, 65_536, 65_537, 300_000] {
            let data = text(n);
            for block in [BlockSize::Max64KB, BlockSize::Max256KB, BlockSize::Max4MB] {
                for linked in [false, true] {
                    let frame = their_frame(&data, block, linked);
                    let mut out = Vec::new();
                    decompress_frame(&frame, 1 << 20, &mut out).unwrap();
                    assert_eq!(out, data, "{n} bytes, {block:?}, linked {linked}");
                }
            }
        }
    }

    #[test]
    fn our_frames_and_concatenated_frames_round_trip() {
        let (a, b) = (text(150_000), text(70_000));
        let mut table = CompressTable::default();
        let mut room = Vec::new();
        let mut frames = Vec::new();
        compress_frame(&mut table, &mut room, &a, &mut frames).unwrap();
        compress_frame(&mut table, &mut room, &b, &mut frames).unwrap();
        let mut out = Vec::new();
        decompress_frame(&frames, 1 << 20, &mut out).unwrap();
        assert_eq!(out, [a, b].concat());
    }

    #[test]
    fn the_output_limit_holds_to_the_byte() {
        let data = text(200_000);
        let frame = their_frame(&data, lz4_flex::frame::BlockSize::Max64KB, true);
        let mut out = Vec::new();
        decompress_frame(&frame, data.len(), &mut out).unwrap();
        assert_eq!(out, data);
        let mut out = vec![1, 2, 3];
        let refused = decompress_frame(&frame, data.len() - 1, &mut out);
        assert!(matches!(
            refused,
            Err(CompressionError::OutputTooLarge { .. })
        ));
        // What was there before is kept; nothing of the frame is.
        assert_eq!(out, [1, 2, 3]);
    }
}
