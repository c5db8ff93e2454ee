//! The framer: finds packet boundaries in a growing byte buffer and hands each line to the nom
//! parsers, in one pass, without IO.
//!
//! The caller appends whatever it read to a `BytesMut` and calls [`Decoder::decode`] until it
//! answers `Ok(None)` ("need more bytes"). The decoder remembers how far it has scanned, so a
//! packet that arrives one byte at a time is still scanned once, not once per byte.

use bytes::{Buf, BytesMut};
use memchr::{memchr, memmem, memrchr};

use crate::error::DecodeError;
use crate::packet::{Field, Kind, Packet};
use crate::parse::{self, Line};
use crate::scan::find_byte;

/// The default cap on one packet, closing blank line included: 1 MiB.
///
/// The largest real packets are `Command` answers and `Status` lists with every channel
/// variable, a few tens of KiB; a megabyte means the peer is not speaking AMI.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1 << 20;

/// The marker that ends the body of a legacy `Response: Follows` packet.
const END_COMMAND: &[u8] = b"--END COMMAND--";

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The greeting line `Asterisk Call Manager/x.y.z` that starts a server stream.
    Banner(Banner),
    /// Any packet.
    Packet(Packet),
}

/// The greeting line of an AMI session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    line: String,
    version_start: usize,
}

impl Banner {
    /// The whole line, e.g. `Asterisk Call Manager/9.0.0`.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// The AMI version (not the Asterisk version), e.g. `9.0.0`.
    pub fn version(&self) -> &str {
        self.line.get(self.version_start..).unwrap_or("")
    }
}

/// Where the decoder is inside the current packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading `Key: Value` lines until a blank line.
    Headers,
    /// After `Response: Follows`: reading the `Privilege`/`ActionID` lines before the CLI text.
    FollowsHeaders,
    /// Inside the raw CLI text of a `Response: Follows` packet, looking for `--END COMMAND--`.
    FollowsBody {
        body_start: usize,
        search_from: usize,
    },
    /// After an oversized packet: dropping bytes up to the next blank line.
    Skipping { has_content: bool },
}

/// The result of one step of the state machine.
enum Step {
    NeedMore,
    Frame(Frame),
    /// The state changed; run the next step on the same bytes.
    Continue,
}

/// Outcome of checking the bytes after `--END COMMAND--`.
enum Terminator {
    Complete(usize),
    NeedMore,
    NotHere,
}

/// Incremental AMI decoder for one direction of one connection.
///
/// Between calls the caller may only append to the buffer: the decoder keeps offsets into the
/// not yet consumed part of it.
#[derive(Debug)]
pub struct Decoder {
    max_packet_size: usize,
    /// Stream offset of `buf[0]`.
    offset: u64,
    banner_possible: bool,
    state: State,
    /// Start of the next unparsed line of the current packet, relative to `buf[0]`.
    scan: usize,
    /// Where to resume the search for the next line end (`>= scan`).
    search: usize,
    fields: Vec<Field>,
    kind: Kind,
    kind_index: u32,
    /// Offset of the first line without a colon in the current packet.
    malformed: Option<u64>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default 1 MiB packet cap.
    pub fn new() -> Decoder {
        Decoder::with_max_packet_size(DEFAULT_MAX_PACKET_SIZE)
    }

    /// A decoder that refuses packets longer than `max` bytes (clamped to `16..=u32::MAX`,
    /// because header offsets are stored as `u32`).
    pub fn with_max_packet_size(max: usize) -> Decoder {
        Decoder {
            max_packet_size: max.clamp(16, u32::MAX as usize),
            offset: 0,
            banner_possible: true,
            state: State::Headers,
            scan: 0,
            search: 0,
            fields: Vec::with_capacity(32),
            kind: Kind::Unknown,
            kind_index: 0,
            malformed: None,
        }
    }

    /// The packet cap in bytes.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Stream offset of the first byte not yet consumed (the start of the current packet).
    pub fn stream_offset(&self) -> u64 {
        self.offset
    }

    /// Treats the first line like any other, for byte strings known not to start with a banner.
    pub(crate) fn skip_banner_detection(&mut self) {
        self.banner_possible = false;
    }

    /// Takes the next frame out of `buf`.
    ///
    /// `Ok(None)` means "need more bytes". After an error the bad packet is gone from `buf` and
    /// the decoder is in sync again, so the caller may go on calling `decode`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        loop {
            let step = match self.state {
                State::Skipping { .. } => {
                    if self.skip(buf) {
                        Step::Continue
                    } else {
                        Step::NeedMore
                    }
                }
                State::Headers => self.headers(buf)?,
                State::FollowsHeaders => self.follows_headers(buf)?,
                State::FollowsBody {
                    body_start,
                    search_from,
                } => self.follows_body(buf, body_start, search_from)?,
            };
            match step {
                Step::NeedMore => return Ok(None),
                Step::Frame(frame) => return Ok(Some(frame)),
                Step::Continue => {}
            }
        }
    }

    /// Like [`Decoder::decode`], for the end of the stream: once no frame is left, bytes that
    /// are not blank lines are reported as a truncated (or malformed) packet and dropped.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        let leftover_is_blank = buf.iter().all(|&b| b == b'\r' || b == b'\n');
        let in_packet = matches!(
            self.state,
            State::Headers | State::FollowsHeaders | State::FollowsBody { .. }
        );
        let packet_offset = self.offset;
        let malformed = self.malformed;
        let n = buf.len();
        self.consume(buf, n);
        self.reset();
        if !in_packet || leftover_is_blank {
            // Either the oversized packet being skipped was already reported, or only a stray
            // CR of a blank line is left.
            return Ok(None);
        }
        Err(match malformed {
            Some(offset) => DecodeError::MalformedLine {
                offset,
                packet_offset,
            },
            None => DecodeError::Truncated {
                offset: packet_offset,
            },
        })
    }

    fn consume(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.offset += n as u64;
    }

    fn reset(&mut self) {
        self.state = State::Headers;
        self.scan = 0;
        self.search = 0;
        self.fields.clear();
        self.kind = Kind::Unknown;
        self.kind_index = 0;
        self.malformed = None;
    }

    /// Reads header lines of an ordinary packet up to its closing blank line.
    fn headers(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        if self.scan == 0 && !self.skip_blank_lines(buf) {
            return Ok(Step::NeedMore);
        }
        let mut pos = self.scan;
        // One shared borrow for the whole loop; going through `BytesMut`'s `Deref` for every
        // index costs measurably at two million packets a second.
        let data: &[u8] = buf;
        // After "need more", the bytes up to `search` are known to hold no line end: look only
        // at the new ones, so a long line arriving in small reads is not rescanned each time.
        if self.search > pos && find_byte(&data[self.search..], b'\n').is_none() {
            self.search = data.len();
            return self.need_more(buf);
        }
        loop {
            let rest = &data[pos..];
            match parse::line(rest) {
                Line::Incomplete => {
                    self.scan = pos;
                    self.search = data.len();
                    return self.need_more(buf);
                }
                Line::Blank { next } => return self.finish(buf, pos + next, None),
                Line::NoColon { end, next } => {
                    if self.banner_possible
                        && let Some(version) = parse::banner_line(&rest[..end])
                    {
                        let line_text = String::from_utf8_lossy(&rest[..end]).into_owned();
                        let version_start =
                            line_text.len() - String::from_utf8_lossy(version).len();
                        self.consume(buf, next);
                        self.reset();
                        self.banner_possible = false;
                        return Ok(Step::Frame(Frame::Banner(Banner {
                            line: line_text,
                            version_start,
                        })));
                    }
                    self.banner_possible = false;
                    if self.malformed.is_none() {
                        self.malformed = Some(self.offset + pos as u64);
                    }
                    pos += next;
                }
                Line::Header {
                    key_len,
                    value_start,
                    value_end,
                    next,
                } => {
                    self.banner_possible = false;
                    let index = self.fields.len();
                    // Offsets fit in u32: a packet longer than the cap (at most u32::MAX) is
                    // refused in `finish` before these offsets are ever used.
                    self.fields.push(Field {
                        key_start: pos as u32,
                        key_end: (pos + key_len) as u32,
                        value_start: (pos + value_start) as u32,
                        value_end: (pos + value_end) as u32,
                    });
                    if self.kind == Kind::Unknown
                        && let Some(kind) = Kind::of_key(&rest[..key_len])
                    {
                        self.kind = kind;
                        self.kind_index = index as u32;
                        if index == 0
                            && kind == Kind::Response
                            && rest[value_start..value_end].eq_ignore_ascii_case(b"Follows")
                        {
                            self.scan = pos + next;
                            self.search = pos + next;
                            self.state = State::FollowsHeaders;
                            return Ok(Step::Continue);
                        }
                    }
                    pos += next;
                }
            }
        }
    }

    /// Drops blank lines before a packet. Returns false when the buffer ran out.
    fn skip_blank_lines(&mut self, buf: &mut BytesMut) -> bool {
        let mut skip = 0;
        let more = loop {
            match buf.get(skip) {
                Some(b'\n') => skip += 1,
                Some(b'\r') => match buf.get(skip + 1) {
                    Some(b'\n') => skip += 2,
                    Some(_) => break true,
                    None => break false,
                },
                Some(_) => break true,
                None => break false,
            }
        };
        if skip > 0 {
            self.consume(buf, skip);
            self.search = 0;
        }
        more
    }

    /// After `Response: Follows`, keeps the `Privilege` and `ActionID` lines as headers; the
    /// first other line starts the raw CLI text.
    fn follows_headers(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        loop {
            let Some(rel) = memchr(b'\n', &buf[self.search..]) else {
                self.search = buf.len();
                return self.need_more(buf);
            };
            let pos = self.scan;
            let nl = self.search + rel;
            let end = if nl > pos && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            let line = &buf[pos..end];
            match parse::header_line(line) {
                Some((key_len, value_start))
                    if line[..key_len].eq_ignore_ascii_case(b"Privilege")
                        || line[..key_len].eq_ignore_ascii_case(b"ActionID") =>
                {
                    self.fields.push(Field {
                        key_start: pos as u32,
                        key_end: (pos + key_len) as u32,
                        value_start: (pos + value_start) as u32,
                        value_end: end as u32,
                    });
                    self.scan = nl + 1;
                    self.search = nl + 1;
                }
                _ => {
                    self.state = State::FollowsBody {
                        body_start: pos,
                        search_from: pos,
                    };
                    return Ok(Step::Continue);
                }
            }
        }
    }

    /// Looks for `--END COMMAND--` followed by a line end and a blank line.
    fn follows_body(
        &mut self,
        buf: &mut BytesMut,
        body_start: usize,
        mut search_from: usize,
    ) -> Result<Step, DecodeError> {
        loop {
            let Some(rel) = memmem::find(&buf[search_from..], END_COMMAND) else {
                // The marker may be split across reads, so keep its possible prefix.
                let keep = END_COMMAND.len() - 1;
                search_from = buf.len().saturating_sub(keep).max(body_start);
                self.state = State::FollowsBody {
                    body_start,
                    search_from,
                };
                return self.need_more(buf);
            };
            let marker = search_from + rel;
            match terminator(&buf[marker + END_COMMAND.len()..]) {
                Terminator::Complete(n) => {
                    let end = marker + END_COMMAND.len() + n;
                    return self.finish(buf, end, Some((body_start, marker)));
                }
                Terminator::NeedMore => {
                    self.state = State::FollowsBody {
                        body_start,
                        search_from: marker,
                    };
                    return self.need_more(buf);
                }
                Terminator::NotHere => search_from = marker + 1,
            }
        }
    }

    /// Answers "need more", unless the unfinished packet is already over the cap.
    fn need_more(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        if buf.len() <= self.max_packet_size {
            return Ok(Step::NeedMore);
        }
        let err = DecodeError::PacketTooLarge {
            offset: self.offset,
            limit: self.max_packet_size,
        };
        // Every complete line is dropped now; the partial last line is handled by `skip`.
        // No complete line of an ordinary packet is blank, so nothing that would end the
        // packet is thrown away here.
        let drop = memrchr(b'\n', buf).map_or(0, |i| i + 1);
        self.consume(buf, drop);
        self.reset();
        self.state = State::Skipping { has_content: false };
        Err(err)
    }

    /// Emits the packet that ends at `end`, or the error it earned.
    fn finish(
        &mut self,
        buf: &mut BytesMut,
        end: usize,
        body: Option<(usize, usize)>,
    ) -> Result<Step, DecodeError> {
        let packet_offset = self.offset;
        // The cap wins over a malformed line, so the error does not depend on read sizes.
        let err = if end > self.max_packet_size {
            Some(DecodeError::PacketTooLarge {
                offset: packet_offset,
                limit: self.max_packet_size,
            })
        } else {
            self.malformed.map(|offset| DecodeError::MalformedLine {
                offset,
                packet_offset,
            })
        };
        if let Some(err) = err {
            self.consume(buf, end);
            self.reset();
            return Err(err);
        }
        let data = buf.split_to(end).freeze();
        self.offset += end as u64;
        let packet = Packet::from_parts(
            data,
            self.fields.as_slice().into(),
            self.kind,
            self.kind_index,
            body.map(|(s, e)| (s as u32, e as u32)),
        );
        self.reset();
        Ok(Step::Frame(Frame::Packet(packet)))
    }

    /// Drops bytes up to and including the next blank line. Returns true once it is found.
    fn skip(&mut self, buf: &mut BytesMut) -> bool {
        let mut has_content = matches!(self.state, State::Skipping { has_content: true });
        loop {
            match memchr(b'\n', buf) {
                Some(i) => {
                    let blank = !has_content && (i == 0 || (i == 1 && buf[0] == b'\r'));
                    self.consume(buf, i + 1);
                    if blank {
                        self.reset();
                        return true;
                    }
                    has_content = false;
                }
                None => {
                    let only_cr = !has_content && buf[..] == b"\r"[..];
                    if !buf.is_empty() && !only_cr {
                        has_content = true;
                        let n = buf.len();
                        self.consume(buf, n);
                    }
                    self.state = State::Skipping { has_content };
                    return false;
                }
            }
        }
    }
}

/// Checks for a line end and a blank line (`\r\n\r\n`, `\n\n` or a mix) at the start of `rest`.
fn terminator(rest: &[u8]) -> Terminator {
    let mut i = 0;
    for _ in 0..2 {
        match rest.get(i) {
            Some(b'\n') => i += 1,
            Some(b'\r') => match rest.get(i + 1) {
                Some(b'\n') => i += 2,
                Some(_) => return Terminator::NotHere,
                None => return Terminator::NeedMore,
            },
            Some(_) => return Terminator::NotHere,
            None => return Terminator::NeedMore,
        }
    }
    Terminator::Complete(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test expects from one frame or error, written compactly.
    #[derive(Debug, PartialEq)]
    enum Out {
        Banner(String),
        /// Kind, then the headers as `key=value`.
        Packet(Kind, Vec<String>),
        Body(String),
        Err(DecodeError),
    }

    fn describe(frame: Frame) -> Vec<Out> {
        match frame {
            Frame::Banner(b) => vec![Out::Banner(b.line().to_owned())],
            Frame::Packet(p) => {
                let headers = p
                    .headers()
                    .map(|h| format!("{}={}", h.key(), h.value()))
                    .collect();
                let mut out = vec![Out::Packet(p.kind(), headers)];
                if let Some(body) = p.follows_body() {
                    out.push(Out::Body(String::from_utf8_lossy(body).into_owned()));
                }
                out
            }
        }
    }

    /// Feeds `input` in reads of `chunk` bytes and collects everything the decoder says.
    fn run(input: &[u8], chunk: usize, max: usize) -> Vec<Out> {
        let mut decoder = Decoder::with_max_packet_size(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => out.extend(describe(frame)),
                    Ok(None) => break,
                    Err(e) => out.push(Out::Err(e)),
                }
            }
        }
        loop {
            match decoder.decode_eof(&mut buf) {
                Ok(Some(frame)) => out.extend(describe(frame)),
                Ok(None) => break,
                Err(e) => out.push(Out::Err(e)),
            }
        }
        out
    }

    /// Runs `input` at several read sizes and checks that all of them agree with `expected`.
    fn check(input: &[u8], max: usize, expected: &[Out]) {
        for chunk in [usize::MAX, 1, 2, 3, 7, 64] {
            let got = run(input, chunk, max);
            assert_eq!(
                got,
                expected,
                "chunk size {chunk}, input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    fn p(kind: Kind, headers: &[&str]) -> Out {
        Out::Packet(kind, headers.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn framing_table() {
        use Kind::*;
        let big = 160;
        let cases: Vec<(&[u8], Vec<Out>)> = vec![
            (b"", vec![]),
            (b"\r\n\r\n\n", vec![]),
            (
                b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\n",
                vec![Out::Banner("Asterisk Call Manager/9.0.0".into()), p(Response, &["Response=Success", "ActionID=1"])],
            ),
            (
                b"Event: A\nX: 1\n\nEvent: B\r\n\r\n\r\n\nEvent: C\r\n\n",
                vec![p(Event, &["Event=A", "X=1"]), p(Event, &["Event=B"]), p(Event, &["Event=C"])],
            ),
            (
                b"Response: Success\r\nOutput: \r\nOutput:    x\r\nOutput:\r\n\r\n",
                vec![p(Response, &["Response=Success", "Output=", "Output=   x", "Output="])],
            ),
            (
                b"Event: A\r\nbroken line\r\nX: 1\r\n\r\nEvent: B\r\n\r\n",
                vec![
                    Out::Err(DecodeError::MalformedLine { offset: 10, packet_offset: 0 }),
                    p(Event, &["Event=B"]),
                ],
            ),
            (b"Event: A\r\nX: 1\r\n", vec![Out::Err(DecodeError::Truncated { offset: 0 })]),
            (
                b"Event: A\r\n\r\nEvent: B\r\nX",
                vec![p(Event, &["Event=A"]), Out::Err(DecodeError::Truncated { offset: 12 })],
            ),
            (
                b"Event: A\r\n\r\nnope",
                vec![p(Event, &["Event=A"]), Out::Err(DecodeError::Truncated { offset: 12 })],
            ),
            (
                b"Event: A\r\n\r\nnope\r\n",
                vec![
                    p(Event, &["Event=A"]),
                    Out::Err(DecodeError::MalformedLine { offset: 12, packet_offset: 12 }),
                ],
            ),
            // The banner is only recognised on the first line of the stream.
            (
                b"Event: A\r\n\r\nAsterisk Call Manager/1.0\r\n\r\n",
                vec![p(Event, &["Event=A"]), Out::Err(DecodeError::MalformedLine { offset: 12, packet_offset: 12 })],
            ),
            // Oversized packets are reported at their first byte and skipped up to the blank line.
            (
                b"Event: A\r\n\r\nEvent: Big\r\nData: 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\nEvent: C\r\n\r\n",
                vec![
                    p(Event, &["Event=A"]),
                    Out::Err(DecodeError::PacketTooLarge { offset: 12, limit: big }),
                    p(Event, &["Event=C"]),
                ],
            ),
            // The legacy Command answer: raw CLI text with colons and blank lines.
            (
                b"Response: Follows\r\nPrivilege: Command\r\nActionID: f-1\r\nName: value\n\nline 2\n--END COMMAND--\r\n\r\nEvent: X\r\n\r\n",
                vec![
                    p(Response, &["Response=Follows", "Privilege=Command", "ActionID=f-1"]),
                    Out::Body("Name: value\n\nline 2\n".into()),
                    p(Event, &["Event=X"]),
                ],
            ),
            // The marker glued to the last line, and an empty body.
            (
                b"Response: Follows\r\nPrivilege: Command\r\nno newline--END COMMAND--\r\n\r\nResponse: Follows\nPrivilege: Command\n--END COMMAND--\n\n",
                vec![
                    p(Response, &["Response=Follows", "Privilege=Command"]),
                    Out::Body("no newline".into()),
                    p(Response, &["Response=Follows", "Privilege=Command"]),
                    Out::Body(String::new()),
                ],
            ),
            // A marker that is not followed by the blank line is part of the text.
            (
                b"Response: Follows\r\nPrivilege: Command\r\n--END COMMAND-- x\n--END COMMAND--\nmore\n--END COMMAND--\r\n\r\n",
                vec![
                    p(Response, &["Response=Follows", "Privilege=Command"]),
                    Out::Body("--END COMMAND-- x\n--END COMMAND--\nmore\n".into()),
                ],
            ),
            (
                b"Response: Follows\r\nPrivilege: Command\r\ntext\n--END COMMAND--\r\n",
                vec![Out::Err(DecodeError::Truncated { offset: 0 })],
            ),
        ];
        for (input, expected) in cases {
            check(input, big, &expected);
        }
    }

    #[test]
    fn oversized_packet_without_line_ends_keeps_sync() {
        let mut input = b"Event: A\r\n\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 500));
        input.extend_from_slice(b"\r\n\r\nEvent: B\r\n\r\n");
        check(
            &input,
            64,
            &[
                p(Kind::Event, &["Event=A"]),
                Out::Err(DecodeError::PacketTooLarge {
                    offset: 12,
                    limit: 64,
                }),
                p(Kind::Event, &["Event=B"]),
            ],
        );
    }

    #[test]
    fn offsets_keep_counting_across_packets() {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::from(&b"Asterisk Call Manager/9.0.0\r\nEvent: A\r\n\r\n"[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Frame::Banner(_)))
        ));
        assert_eq!(decoder.stream_offset(), 29);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Frame::Packet(_)))
        ));
        assert_eq!(decoder.stream_offset(), 41);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn banner_version() {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::from(&b"Asterisk Call Manager/9.0.0\r\n"[..]);
        let Ok(Some(Frame::Banner(b))) = decoder.decode(&mut buf) else {
            panic!("no banner");
        };
        assert_eq!(b.version(), "9.0.0");
        assert_eq!(b.line(), "Asterisk Call Manager/9.0.0");
    }
}
