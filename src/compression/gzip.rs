//! gzip (codec id 1): a single RFC 1952 member on write, one or more members on
//! read.
//!
//! Writing frames a raw deflate stream by hand (10-byte header, deflate data,
//! CRC-32 and length trailer) so that one deflate state can be reset and reused
//! for every batch instead of being allocated per batch.

use flate2::{Compress, FlushCompress, Status};

use super::{Compression, CompressionError, read_capped};

/// Level used when none is configured (zlib's and the Java client's default).
pub(super) const DEFAULT_LEVEL: i32 = 6;

/// Header of a gzip member: magic, deflate method, no flags, no modification
/// time, no extra flags, unknown operating system.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

pub(super) fn clamp_level(level: Option<i32>) -> i32 {
    level.unwrap_or(DEFAULT_LEVEL).clamp(0, 9)
}

/// A deflate state kept between batches.
pub(super) struct GzipState {
    level: i32,
    deflate: Compress,
}

impl GzipState {
    pub(super) fn new(level: i32) -> Self {
        let level = level.clamp(0, 9);
        // The clamp above keeps the conversion in range.
        let flate_level = flate2::Compression::new(u32::try_from(level).unwrap_or(6));
        GzipState {
            level,
            deflate: Compress::new(flate_level, false),
        }
    }

    pub(super) fn level(&self) -> i32 {
        self.level
    }

    pub(super) fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        self.deflate.reset();
        out.extend_from_slice(&HEADER);
        // Deflate's worst case is a little over the input; start there.
        out.reserve(input.len() + input.len() / 1000 + 64);
        loop {
            let consumed = usize::try_from(self.deflate.total_in()).unwrap_or(usize::MAX);
            let rest = input.get(consumed..).unwrap_or(&[]);
            let status = self
                .deflate
                .compress_vec(rest, out, FlushCompress::Finish)
                .map_err(|e| CompressionError::failed(Compression::Gzip, e))?;
            match status {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => out.reserve(out.capacity().max(64)),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32.
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Ok(())
    }
}

pub(super) fn decompress(
    input: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let decoder = flate2::bufread::MultiGzDecoder::new(input);
    read_capped(Compression::Gzip, decoder, max_output, out)
}
