//! snappy (codec id 2): xerial framing on write; xerial framing or a single raw
//! block on read.
//!
//! The xerial framing, as written by the Java client's `SnappyOutputStream`:
//!
//! ```text
//! +-----------------+-------------+------------------+
//! | "\x82SNAPPY\0"  | version i32 | compatible i32   |   16-byte header, big-endian
//! +-----------------+-------------+------------------+
//! | length u32 (BE) | raw snappy block (<= 32 KiB of input) |  repeated
//! +-----------------+---------------------------------------+
//! ```

use snap::raw::{Decoder, Encoder, decompress_len, max_compress_len};

use super::{Compression, CompressionError};

/// The first eight bytes of a xerial-framed snappy stream.
pub const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\0";

/// Full header written: magic, version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = *b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01";

/// Input bytes per block, as the Java client writes them.
const BLOCK_SIZE: usize = 32 * 1024;

/// Snappy cannot expand a block by more than this factor (a 3-byte copy
/// element yields at most 64 bytes); larger declared lengths are corrupt and
/// are refused before any allocation.
const MAX_EXPANSION: usize = 32;

fn corrupt(detail: impl std::fmt::Display) -> CompressionError {
    CompressionError::corrupt(Compression::Snappy, detail)
}

/// Compresses `input` in xerial framing appended to `out`. Each block is
/// compressed into `room` (grown to the worst case once, then reused), so
/// `out` receives only the bytes written.
pub(super) fn compress_xerial(
    encoder: &mut Encoder,
    room: &mut Vec<u8>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    out.extend_from_slice(&XERIAL_HEADER);
    for block in input.chunks(BLOCK_SIZE) {
        let bound = max_compress_len(block.len());
        if room.len() < bound {
            room.resize(bound, 0);
        }
        let written = encoder
            .compress(block, &mut room[..bound])
            .map_err(|e| CompressionError::failed(Compression::Snappy, e))?;
        // A block holds at most 32 KiB of input, so its compressed length fits.
        let len = u32::try_from(written).map_err(|_| corrupt("block too long"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&room[..written]);
    }
    Ok(())
}

pub(super) fn decompress(
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let start = out.len();
    let mut decoder = Decoder::new();
    let result = if input.starts_with(&XERIAL_MAGIC) {
        decompress_xerial(&mut decoder, input, max_output, out)
    } else {
        decompress_block(&mut decoder, input, max_output, out).map(|_| ())
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decompress_xerial(
    decoder: &mut Decoder,
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let mut rest = input
        .get(XERIAL_HEADER.len()..)
        .ok_or_else(|| corrupt("truncated xerial header"))?;
    let mut budget = max_output;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated xerial block length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len == 0 || len > tail.len() {
            return Err(corrupt(format_args!(
                "xerial block length {len} with {} bytes left",
                tail.len()
            )));
        }
        let (block, tail) = tail.split_at(len);
        budget -= decompress_block(decoder, block, budget, out).map_err(|e| match e {
            CompressionError::OutputTooLarge { codec, .. } => CompressionError::OutputTooLarge {
                codec,
                limit: max_output,
            },
            other => other,
        })?;
        rest = tail;
    }
    Ok(())
}

/// Decompresses one raw snappy block, returning the number of bytes appended.
fn decompress_block(
    decoder: &mut Decoder,
    block: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    let len = decompress_len(block).map_err(corrupt)?;
    if len > max_output {
        return Err(CompressionError::OutputTooLarge {
            codec: Compression::Snappy,
            limit: max_output,
        });
    }
    if len > block.len().saturating_mul(MAX_EXPANSION).saturating_add(64) {
        return Err(corrupt(format_args!(
            "declared length {len} impossible for a {}-byte block",
            block.len()
        )));
    }
    let at = out.len();
    out.resize(at + len, 0);
    let written = decoder.decompress(block, &mut out[at..]).map_err(corrupt)?;
    if written != len {
        return Err(corrupt("block shorter than its declared length"));
    }
    Ok(len)
}
