//! Zigzag variable-length integers as record fields use them (the protobuf
//! encoding: seven bits per byte, low groups first, high bit set on every byte
//! but the last).

use super::RecordsError;

/// Most bytes an `i32` varint takes.
pub(crate) const MAX_VARINT_LEN: usize = 5;
/// Most bytes an `i64` varlong takes.
pub(crate) const MAX_VARLONG_LEN: usize = 10;

#[inline]
const fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes `v` takes as a varlong (also right for any `i32` as a varint).
#[inline]
pub(crate) const fn varlong_len(v: i64) -> usize {
    let z = zigzag64(v);
    // 1 byte for 0..=127, then one more per 7 bits: ceil(bits / 7), computed
    // as (highest bit index * 9 + 73) / 64, which is exact for 1 to 64 bits
    // and avoids a division on the append path.
    let highest = 63 - (z | 1).leading_zeros() as usize;
    (highest * 9 + 73) / 64
}

/// Bytes a length (or -1 for null) takes as a varint.
#[inline]
pub(crate) const fn len_varint_len(len: usize) -> usize {
    // Lengths past i64::MAX cannot exist in memory; saturate for safety.
    let v = if len > i64::MAX as usize {
        i64::MAX
    } else {
        len as i64
    };
    varlong_len(v)
}

/// Encodes `v` as a varlong into `buf`, returning the number of bytes used.
#[inline]
pub(crate) fn encode_varlong(v: i64, buf: &mut [u8; MAX_VARLONG_LEN]) -> usize {
    let mut z = zigzag64(v);
    let mut i = 0;
    while z >= 0x80 {
        buf[i] = (z as u8) | 0x80;
        z >>= 7;
        i += 1;
    }
    buf[i] = z as u8;
    i + 1
}

/// Encodes `v` as a varlong into `buf` from `at` on, returning the number of
/// bytes used. Panics if `buf` has fewer than [`varlong_len`] bytes from `at`.
#[inline]
pub(crate) fn encode_varlong_at(v: i64, buf: &mut [u8], at: usize) -> usize {
    let mut z = zigzag64(v);
    let mut i = at;
    while z >= 0x80 {
        buf[i] = (z as u8) | 0x80;
        z >>= 7;
        i += 1;
    }
    buf[i] = z as u8;
    i + 1 - at
}

/// Reads a zigzag varint (at most 5 bytes) from the front of `input`.
#[inline]
pub(crate) fn read_varint(input: &mut &[u8], field: &'static str) -> Result<i32, RecordsError> {
    let mut raw: u32 = 0;
    for i in 0..MAX_VARINT_LEN {
        let Some((&b, rest)) = input.split_first() else {
            return Err(RecordsError::Truncated(field));
        };
        *input = rest;
        raw |= u32::from(b & 0x7f).wrapping_shl(7 * i as u32);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err(RecordsError::InvalidVarint(field))
}

/// Reads a zigzag varlong (at most 10 bytes) from the front of `input`.
#[inline]
pub(crate) fn read_varlong(input: &mut &[u8], field: &'static str) -> Result<i64, RecordsError> {
    let mut raw: u64 = 0;
    for i in 0..MAX_VARLONG_LEN {
        let Some((&b, rest)) = input.split_first() else {
            return Err(RecordsError::Truncated(field));
        };
        *input = rest;
        raw |= u64::from(b & 0x7f).wrapping_shl(7 * i as u32);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(RecordsError::InvalidVarint(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lengths_agree() {
        let samples = [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
            1 << 35,
            -(1 << 35),
        ];
        for v in samples {
            let mut buf = [0u8; MAX_VARLONG_LEN];
            let n = encode_varlong(v, &mut buf);
            assert_eq!(n, varlong_len(v), "{v}");
            let mut at = [0u8; MAX_VARLONG_LEN + 3];
            assert_eq!(encode_varlong_at(v, &mut at, 3), n, "{v}");
            assert_eq!(at[3..3 + n], buf[..n], "{v}");
            let mut input = &buf[..n];
            assert_eq!(read_varlong(&mut input, "t").unwrap(), v);
            assert!(input.is_empty());
            if let Ok(v32) = i32::try_from(v) {
                let mut input = &buf[..n];
                assert_eq!(read_varint(&mut input, "t").unwrap(), v32);
            }
        }
    }

    #[test]
    fn lengths_match_seven_bits_per_byte_at_every_width() {
        for bits in 1..=64u32 {
            let z = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            for z in [z, z >> 1 | 1 << (bits - 1)] {
                // zigzag is a bijection; invert it to get the signed value.
                let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
                assert_eq!(varlong_len(v), (bits as usize).div_ceil(7), "{bits} bits");
            }
        }
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        let mut input: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(matches!(
            read_varint(&mut input, "t"),
            Err(RecordsError::InvalidVarint(_))
        ));
        let mut input: &[u8] = &[0x80, 0x80];
        assert!(matches!(
            read_varint(&mut input, "t"),
            Err(RecordsError::Truncated(_))
        ));
        let mut input: &[u8] = &[0xff; 11];
        assert!(matches!(
            read_varlong(&mut input, "t"),
            Err(RecordsError::InvalidVarint(_))
        ));
    }
}
