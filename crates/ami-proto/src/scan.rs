//! Byte search tuned for AMI lines, which are short (a header line averages 20 to 30 bytes).
//!
//! `memchr` is fastest on long haystacks, but on a 25-byte line its dispatch and set-up cost more
//! than the search itself. Here the first 64 bytes are searched eight at a time in a plain `u64`
//! (SWAR, no `unsafe`), and only longer haystacks are handed to `memchr`.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// How many bytes are searched with SWAR before falling back to `memchr`.
const SWAR_SPAN: usize = 64;

/// Position of the first `needle` in `hay`.
#[inline(always)]
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pattern = u64::from_ne_bytes([needle; 8]);
    let span = hay.len().min(SWAR_SPAN);
    let mut i = 0;
    while let Some(word) = hay[i..span].first_chunk::<8>() {
        let x = u64::from_le_bytes(*word) ^ pattern;
        // A byte of `x` is zero where `hay` holds `needle`. This classic test can also flag a
        // byte *above* a real match (borrow propagation), never below one, so the lowest flagged
        // byte is always a real match.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if hay.len() > SWAR_SPAN {
        return memchr::memchr(needle, &hay[i..]).map(|j| i + j);
    }
    hay[i..].iter().position(|&b| b == needle).map(|j| i + j)
}

/// Position of the first `a` or `b` in `hay`.
#[inline(always)]
pub(crate) fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let pattern_a = u64::from_ne_bytes([a; 8]);
    let pattern_b = u64::from_ne_bytes([b; 8]);
    let span = hay.len().min(SWAR_SPAN);
    let mut i = 0;
    while let Some(word) = hay[i..span].first_chunk::<8>() {
        let w = u64::from_le_bytes(*word);
        let (xa, xb) = (w ^ pattern_a, w ^ pattern_b);
        // The lowest flagged byte of each mask is exact (see `find_byte`), so the lowest of the
        // two is the first occurrence of either byte.
        let found = ((xa.wrapping_sub(LO) & !xa) | (xb.wrapping_sub(LO) & !xb)) & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if hay.len() > SWAR_SPAN {
        return memchr::memchr2(a, b, &hay[i..]).map(|j| i + j);
    }
    hay[i..]
        .iter()
        .position(|&x| x == a || x == b)
        .map(|j| i + j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edge_cases() {
        let cases: &[(&[u8], u8, Option<usize>)] = &[
            (b"", b'\n', None),
            (b"\n", b'\n', Some(0)),
            (b"abcdefg\n", b'\n', Some(7)),
            (b"abcdefgh\n", b'\n', Some(8)),
            (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80:", b':', Some(9)),
            (b"\x00\x00\x0b\x0a", b'\n', Some(3)),
            (b"a\x0b\x0a", b'\n', Some(2)),
        ];
        for (hay, needle, want) in cases {
            assert_eq!(find_byte(hay, *needle), *want, "{hay:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_memchr(hay in proptest::collection::vec(any::<u8>(), 0..200), needle in any::<u8>()) {
            prop_assert_eq!(find_byte(&hay, needle), memchr::memchr(needle, &hay));
        }

        #[test]
        fn either_agrees_with_memchr2(hay in "[a-z\n:\r \u{80}-\u{ff}]{0,150}") {
            prop_assert_eq!(find_either(hay.as_bytes(), b':', b'\n'), memchr::memchr2(b':', b'\n', hay.as_bytes()));
        }

        #[test]
        fn agrees_with_memchr_on_sparse_text(hay in "[a-z\n:\r ]{0,150}") {
            for needle in [b'\n', b':'] {
                prop_assert_eq!(find_byte(hay.as_bytes(), needle), memchr::memchr(needle, hay.as_bytes()));
            }
        }
    }
}
