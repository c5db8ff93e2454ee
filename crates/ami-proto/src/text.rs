//! Turning a header value's raw bytes into text.
//!
//! Asterisk never transcodes (ami-reference §1): a caller name typed into a Latin-1 phone or
//! dialplan reaches the manager as the bytes `M\xfcller`. Valid UTF-8 is borrowed as is (the one
//! check `String::from_utf8_lossy` does too, so valid text costs nothing more); anything else
//! is read as Windows-1252, the superset of Latin-1 that such systems write, so `M\xfcller`
//! reads `Müller` instead of `M�ller`. Every byte maps to some character, so this never fails.

use std::borrow::Cow;

/// Windows-1252 bytes 0x80..=0x9F. The five bytes it leaves undefined (0x81, 0x8D, 0x8F, 0x90,
/// 0x9D) map to the C1 control of the same number, as the WHATWG encoding standard does.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// The text of a value: borrowed when it is valid UTF-8, otherwise decoded as Windows-1252.
#[inline]
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(decode_cp1252(bytes)),
    }
}

#[cold]
fn decode_cp1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"M\xfcller", "M\u{fc}ller", false),
            (b"Fran\xe7ois", "Fran\u{e7}ois", false),
            (
                b"\x80 5, \x93quoted\x94",
                "\u{20ac} 5, \u{201c}quoted\u{201d}",
                false,
            ),
            (b"\x81\x8d", "\u{81}\u{8d}", false),
            ("Müller".as_bytes(), "Müller", true),
            (b"plain", "plain", true),
            (b"", "", true),
        ];
        for (raw, want, borrowed) in cases {
            let got = decode(raw);
            assert_eq!(got, *want, "{raw:?}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), *borrowed, "{raw:?}");
        }
    }
}
