//! The CRC-32C (Castagnoli) of record batches: the checksum itself, and the
//! checksum of a concatenation from the checksums of its parts.
//!
//! The checksum comes from `crc-fast`, which folds the input with carry-less
//! multiplication where the CPU has it (and uses the `crc32` instructions
//! otherwise). On 64 KiB batches it runs at about twice the speed of the
//! `crc32` instructions alone, and every byte a consumer reads or a producer
//! sends goes through it once.
//!
//! Combining takes a few hundred nanoseconds whatever the length:
//! `crc(A ‖ B)` is `crc(A)` multiplied by `x^(8·|B|)` modulo the CRC
//! polynomial, plus `crc(B)`.
//!
//! A batch's CRC covers its header fields from the attributes on and all of
//! its records. Sealing computes the CRC of the records part once; stamping
//! the producer fields later (a first send, a retry under a new epoch) then
//! costs the CRC of 36 header bytes and one combination, not another pass
//! over the records.
//!
//! Polynomials are held reflected, as the CRC itself is computed: bit 31 is
//! the coefficient of `x^0`, bit 0 that of `x^31`. The powers `x^(8·2^k)`
//! are computed at compile time, so a combination is one multiplication
//! per set bit of the length.

/// The CRC-32C of `bytes`.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    // A 32-bit CRC, returned in a u64 by the crate's generic interface.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// The CRC-32C (Castagnoli) polynomial, reflected.
const POLY: u32 = 0x82F6_3B78;

/// `a · b` modulo [`POLY`], both reflected.
const fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut i = 0;
    while i < 32 {
        // Bit 31 - i of `a` is its coefficient of x^i; `b` is now b·x^i.
        if a & (1 << (31 - i)) != 0 {
            product ^= b;
        }
        // b·x: a right shift, reduced when x^31 moves out.
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        i += 1;
    }
    product
}

/// `x^(8·2^k)` modulo [`POLY`] for every bit `k` of a length.
const BYTE_SHIFTS: [u32; 64] = {
    let mut table = [0u32; 64];
    // x^8: the coefficient of x^8 is bit 31 - 8.
    table[0] = 1 << (31 - 8);
    let mut k = 1;
    while k < 64 {
        table[k] = mul_mod(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

/// The CRC-32C of `A ‖ B` from `crc_a` (of `A`), `crc_b` (of `B`) and the
/// length of `B`; the same value as `crc32c::crc32c_combine`.
pub(crate) fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    let mut shift = 1 << 31; // x^0
    let mut len = len_b as u64;
    let mut k = 0;
    while len != 0 {
        if len & 1 != 0 {
            shift = mul_mod(BYTE_SHIFTS[k], shift);
        }
        len >>= 1;
        k += 1;
    }
    mul_mod(crc_a, shift) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn combines_like_a_single_pass() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0, 1, 7, 61, 4096, 65_487, 65_536, 199_999, 200_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(
                crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
                crc32c::crc32c(&data),
                "split at {split}"
            );
        }
    }

    #[test]
    fn checks_the_standard_test_vector() {
        // The CRC-32C check value (RFC 3720, appendix B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    proptest! {
        #[test]
        fn the_checksum_agrees_with_the_crc32c_crate(data in proptest::collection::vec(any::<u8>(), 0..70_000),
                                                     start in 0usize..64) {
            // Every length and alignment, up to more than one 64 KiB batch.
            let data = &data[start.min(data.len())..];
            prop_assert_eq!(crc32c(data), crc32c::crc32c(data));
        }

        #[test]
        fn agrees_with_the_crate(a in proptest::collection::vec(any::<u8>(), 0..300),
                                 b in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let (ca, cb) = (crc32c::crc32c(&a), crc32c::crc32c(&b));
            let whole = [a.as_slice(), b.as_slice()].concat();
            prop_assert_eq!(crc32c_combine(ca, cb, b.len()), crc32c::crc32c(&whole));
            prop_assert_eq!(crc32c_combine(ca, cb, b.len()), crc32c::crc32c_combine(ca, cb, b.len()));
        }
    }
}
