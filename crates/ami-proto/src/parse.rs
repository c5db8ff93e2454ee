//! nom parsers for the two line shapes of AMI: the banner and a `Key: Value` header.
//!
//! The framer finds line ends; these parsers only ever see one line without its line end.
//! They are crate-private so that nom never shows up in a public signature.

use nom::bytes::complete::tag;
use nom::combinator::{opt, rest};
use nom::error::{Error, ErrorKind};
use nom::{IResult, Needed, Parser};

use crate::scan::{find_byte, find_either};

/// The fixed prefix of the greeting Asterisk writes as the first line of every session.
pub(crate) const BANNER_PREFIX: &[u8] = b"Asterisk Call Manager/";

/// Splits `Key: Value` into the key and the value, dropping at most one space after the colon.
///
/// The key is everything before the first colon, so keys such as
/// `ChanVariable(Local/1@ctx-0001;1)` survive, and values may contain further colons.
#[inline]
fn header(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (input, key) = key.parse(input)?;
    let (input, _) = colon.parse(input)?;
    let (input, _) = opt(space).parse(input)?;
    let (input, value) = rest.parse(input)?;
    Ok((input, (key, value)))
}

/// The bytes before the first colon.
///
/// Keys are short, so this uses the SWAR search of [`crate::scan`]. It is written out rather than
/// taken from `nom::bytes` because those generic helpers are not inlined across the crate
/// boundary, and this runs for every header line.
#[inline]
fn key(input: &[u8]) -> IResult<&[u8], &[u8]> {
    match find_byte(input, b':') {
        Some(i) => Ok((&input[i..], &input[..i])),
        None => Err(nom::Err::Error(Error::new(input, ErrorKind::TakeTill1))),
    }
}

/// Exactly one byte `byte`.
#[inline]
fn byte(byte: u8) -> impl Fn(&[u8]) -> IResult<&[u8], u8> {
    move |input: &[u8]| match input.split_first() {
        Some((&b, rest)) if b == byte => Ok((rest, b)),
        _ => Err(nom::Err::Error(Error::new(input, ErrorKind::Char))),
    }
}

#[inline]
fn colon(input: &[u8]) -> IResult<&[u8], u8> {
    byte(b':')(input)
}

#[inline]
fn space(input: &[u8]) -> IResult<&[u8], u8> {
    byte(b' ')(input)
}

/// What the line at the start of a buffer is; offsets are relative to that start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// `Key: Value`. `next` is where the following line starts.
    Header {
        key_len: usize,
        value_start: usize,
        value_end: usize,
        next: usize,
    },
    /// An empty line (`\r\n` or `\n`): the end of a packet.
    Blank { next: usize },
    /// A complete line without a colon; `end` excludes the line end.
    NoColon { end: usize, next: usize },
    /// No line end yet.
    Incomplete,
}

/// The key of a line in a buffer: bytes up to the first `:` or line end, whichever comes first.
/// Streaming: without either, more input is needed.
#[inline]
fn key_in_buffer(input: &[u8]) -> IResult<&[u8], &[u8]> {
    match find_either(input, b':', b'\n') {
        Some(i) => Ok((&input[i..], &input[..i])),
        None => Err(nom::Err::Incomplete(Needed::Unknown)),
    }
}

/// The rest of a line up to its line end, which is consumed; a CR before the LF is dropped.
#[inline]
fn rest_of_line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    match find_byte(input, b'\n') {
        Some(i) => {
            let value = &input[..i];
            Ok((&input[i + 1..], value.strip_suffix(b"\r").unwrap_or(value)))
        }
        None => Err(nom::Err::Incomplete(Needed::Unknown)),
    }
}

/// Streaming form of [`header`] over the unread part of a buffer: key, colon, at most one space,
/// value, line end. Returns `(key_len, value_start, value_end)`.
#[inline]
fn header_in_buffer(input: &[u8]) -> IResult<&[u8], (usize, usize, usize)> {
    let (rest, key) = key_in_buffer(input)?;
    let (rest, _) = colon.parse(rest)?;
    let (rest, _) = opt(space).parse(rest)?;
    let value_start = input.len() - rest.len();
    let (rest, value) = rest_of_line(rest)?;
    Ok((rest, (key.len(), value_start, value_start + value.len())))
}

/// Reads the line at the start of `input` (the unread part of the buffer) in one pass: the key
/// bytes are scanned once for `:` or a line end, the value bytes once for the line end.
#[inline]
pub(crate) fn line(input: &[u8]) -> Line {
    match header_in_buffer(input) {
        Ok((rest, (key_len, value_start, value_end))) => Line::Header {
            key_len,
            value_start,
            value_end,
            next: input.len() - rest.len(),
        },
        Err(nom::Err::Incomplete(_)) => Line::Incomplete,
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            // The colon parser stopped at the line end: a complete line without a colon.
            let nl = input.len() - e.input.len();
            let end = if nl > 0 && input[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end == 0 {
                Line::Blank { next: nl + 1 }
            } else {
                Line::NoColon { end, next: nl + 1 }
            }
        }
    }
}

/// Parses one header line and returns `(key_len, value_start)` as offsets into `line`, or `None`
/// when the line has no colon.
#[inline]
pub(crate) fn header_line(line: &[u8]) -> Option<(usize, usize)> {
    match header(line) {
        Ok((_, (key, value))) => Some((key.len(), line.len() - value.len())),
        Err(_) => None,
    }
}

/// Parses the banner `Asterisk Call Manager/<version>` and returns the version bytes.
fn banner(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, _) = tag(BANNER_PREFIX).parse(input)?;
    rest.parse(input)
}

/// Returns the version part when `line` is the AMI banner. A line holding a colon is a header,
/// never a banner, so a client-side stream starting with `Action: Login` is not mistaken for one.
pub(crate) fn banner_line(line: &[u8]) -> Option<&[u8]> {
    if memchr::memchr(b':', line).is_some() {
        return None;
    }
    banner(line).ok().map(|(_, version)| version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Option<(&str, &str)>) {
        let got = header_line(line.as_bytes()).map(|(k, v)| (&line[..k], &line[v..]));
        assert_eq!(got, expected, "line {line:?}");
    }

    #[test]
    fn header_lines() {
        check("Event: ExtensionStatus", Some(("Event", "ExtensionStatus")));
        check("action:ping", Some(("action", "ping")));
        check("Output: ", Some(("Output", "")));
        check("Output:", Some(("Output", "")));
        check("Output:    x  ", Some(("Output", "   x  ")));
        check("Hint: Custom:1001", Some(("Hint", "Custom:1001")));
        check(
            "ChanVariable(Local/1@ctx-0001;1): A=b",
            Some(("ChanVariable(Local/1@ctx-0001;1)", "A=b")),
        );
        check(": value", Some(("", "value")));
        check("no colon here", None);
        check("", None);
    }

    #[test]
    fn lines_in_a_buffer() {
        let cases: &[(&str, Line)] = &[
            (
                "Event: X\r\nNext",
                Line::Header {
                    key_len: 5,
                    value_start: 7,
                    value_end: 8,
                    next: 10,
                },
            ),
            (
                "Output:\n",
                Line::Header {
                    key_len: 6,
                    value_start: 7,
                    value_end: 7,
                    next: 8,
                },
            ),
            (
                "Output: \r\n",
                Line::Header {
                    key_len: 6,
                    value_start: 8,
                    value_end: 8,
                    next: 10,
                },
            ),
            (
                "Hint: a:b\n",
                Line::Header {
                    key_len: 4,
                    value_start: 6,
                    value_end: 9,
                    next: 10,
                },
            ),
            ("\r\nEvent", Line::Blank { next: 2 }),
            ("\nEvent", Line::Blank { next: 1 }),
            ("garbage\r\n", Line::NoColon { end: 7, next: 9 }),
            ("\r\r\n", Line::NoColon { end: 1, next: 3 }),
            ("Event: X", Line::Incomplete),
            ("Event", Line::Incomplete),
            ("", Line::Incomplete),
            ("\r", Line::Incomplete),
        ];
        for (input, want) in cases {
            assert_eq!(line(input.as_bytes()), *want, "{input:?}");
        }
    }

    #[test]
    fn banners() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Asterisk Call Manager/9.0.0", Some("9.0.0")),
            ("Asterisk Call Manager/1.0", Some("1.0")),
            ("Asterisk Call Manager/", Some("")),
            ("Action: Login", None),
            ("Asterisk Call Manager/1.0: x", None),
            ("Asterisk", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                banner_line(line.as_bytes()),
                want.map(str::as_bytes),
                "{line:?}"
            );
        }
    }
}
