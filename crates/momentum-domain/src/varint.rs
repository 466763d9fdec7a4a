//! LEB128 varints, the compact numbers of the stored ledger log and of
//! binary trend totals: seven bits a byte, low bits first, the top bit set
//! on every byte but the last; signed numbers zigzag-encoded first, so that
//! small negative numbers stay short. Reading is strict: a number cut short
//! or one beyond 64 bits is an error, so damage never reads as a value.
//!
//! Written by hand rather than taken from a crate: the crates measured
//! wrote several times slower (docs/decisions/0015-hand-written-or-crate.md).

/// Appends `value` as a varint.
pub fn write_u64(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// Appends `value` zigzag-encoded as a varint.
pub fn write_i64(bytes: &mut Vec<u8>, value: i64) {
    write_u64(bytes, ((value << 1) ^ (value >> 63)) as u64);
}

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The bytes ended inside the number.
    #[error("cut short")]
    CutShort,
    /// The number has more than 64 bits.
    #[error("a number beyond 64 bits")]
    Overflow,
}

/// Reads the varint at the start of `bytes`: the number and the bytes after it.
pub fn read_u64(bytes: &[u8]) -> Result<(u64, &[u8]), VarintError> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().enumerate() {
        let shift = 7 * index as u32;
        // The tenth byte carries the 64th bit only: anything more, a
        // continuation included, is not a u64.
        if shift == 63 && *byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[index + 1..]));
        }
    }
    Err(VarintError::CutShort)
}

/// Reads a zigzag-encoded varint at the start of `bytes`.
pub fn read_i64(bytes: &[u8]) -> Result<(i64, &[u8]), VarintError> {
    let (zigzag, rest) = read_u64(bytes)?;
    Ok(((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64), rest))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_number_reads_back_whole_and_leaves_what_follows(unsigned in any::<u64>(), signed in any::<i64>()) {
            let mut bytes = Vec::new();
            write_u64(&mut bytes, unsigned);
            write_i64(&mut bytes, signed);
            bytes.push(0xab);
            let (read_unsigned, rest) = read_u64(&bytes).unwrap();
            let (read_signed, rest) = read_i64(rest).unwrap();
            prop_assert_eq!((read_unsigned, read_signed, rest), (unsigned, signed, &[0xab][..]));
        }

        #[test]
        fn a_number_cut_anywhere_is_cut_short(value in 128u64..) {
            let mut bytes = Vec::new();
            write_u64(&mut bytes, value);
            for end in 0..bytes.len() {
                prop_assert_eq!(read_u64(&bytes[..end]), Err(VarintError::CutShort));
            }
        }
    }

    #[test]
    fn small_numbers_take_one_byte_and_signed_ones_zigzag() {
        let mut bytes = Vec::new();
        write_u64(&mut bytes, 127);
        write_i64(&mut bytes, -1);
        write_i64(&mut bytes, 1);
        assert_eq!(bytes, [0x7f, 0x01, 0x02]);
    }

    #[test]
    fn numbers_beyond_64_bits_are_refused() {
        let mut tenth_too_big = vec![0xff; 9];
        tenth_too_big.push(0x02);
        assert_eq!(read_u64(&tenth_too_big), Err(VarintError::Overflow));
        let mut eleven_bytes = vec![0xff; 10];
        eleven_bytes.push(0x01);
        assert_eq!(read_u64(&eleven_bytes), Err(VarintError::Overflow));
        let mut largest = vec![0xff; 9];
        largest.push(0x01);
        assert_eq!(read_u64(&largest), Ok((u64::MAX, &[][..])));
    }
}
