//! The raw AMI packet: one shared buffer holding the wire bytes plus an offset table of its
//! header lines, in wire order with duplicates kept.
//!
//! A packet costs one heap allocation of its own (the offset table); the bytes are a
//! reference-counted slice of the reader's buffer, so they are never copied after the socket read.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// Offsets of one header line inside [`Packet::as_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) key_start: u32,
    pub(crate) key_end: u32,
    pub(crate) value_start: u32,
    pub(crate) value_end: u32,
}

/// What a packet is, after the first header (in wire order) named `Event`, `Response` or
/// `Action`, compared without regard to case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An `Event:` packet: an asynchronous event, a list item or a list-complete marker.
    Event,
    /// A `Response:` packet: the answer to an action.
    Response,
    /// An `Action:` packet: what a client sends.
    Action,
    /// None of the three headers is present.
    Unknown,
}

impl Kind {
    /// The lower-case name used by `ami-dump`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Response => "response",
            Kind::Action => "action",
            Kind::Unknown => "unknown",
        }
    }

    /// Classifies a header key, or returns `None` when it does not decide the kind.
    #[inline]
    pub(crate) fn of_key(key: &[u8]) -> Option<Kind> {
        // Checking the length first keeps the common case (any other key) to one comparison.
        match key.len() {
            5 if key.eq_ignore_ascii_case(b"Event") => Some(Kind::Event),
            6 if key.eq_ignore_ascii_case(b"Action") => Some(Kind::Action),
            8 if key.eq_ignore_ascii_case(b"Response") => Some(Kind::Response),
            _ => None,
        }
    }
}

/// One header line of a packet, borrowed from it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

impl<'a> Header<'a> {
    /// The key as written on the wire (case kept).
    pub fn key_bytes(&self) -> &'a [u8] {
        self.key
    }

    /// The value bytes, exactly as received after the colon and at most one space.
    pub fn value_bytes(&self) -> &'a [u8] {
        self.value
    }

    /// The key as text; invalid UTF-8 is replaced, never an error.
    pub fn key(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.key)
    }

    /// The value as text, borrowed when it is valid UTF-8; other bytes are read as
    /// Windows-1252 (what Latin-1 PBXs send), never an error.
    pub fn value(&self) -> Cow<'a, str> {
        crate::text::decode(self.value)
    }

    /// True when the key equals `key` without regard to ASCII case.
    pub fn is(&self, key: &str) -> bool {
        self.key.eq_ignore_ascii_case(key.as_bytes())
    }
}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_sensitive(self.key) {
            write!(f, "{}: ***", self.key())
        } else {
            write!(f, "{}: {:?}", self.key(), self.value())
        }
    }
}

/// Keys whose values must not end up in logs: a plain `Secret` and the MD5 `Key`.
pub(crate) fn is_sensitive(key: &[u8]) -> bool {
    key.eq_ignore_ascii_case(b"Secret") || key.eq_ignore_ascii_case(b"Key")
}

/// One AMI packet (event, response, action or unknown), as received.
///
/// Header order and duplicates are kept. Lookups compare keys without regard to case and return
/// the first match, like Asterisk does.
#[derive(Clone)]
pub struct Packet {
    data: Bytes,
    fields: Box<[Field]>,
    kind: Kind,
    /// Index of the header that decided `kind`; meaningless when `kind` is `Unknown`.
    kind_index: u32,
    /// The raw CLI text of a legacy `Response: Follows` packet, as `(start, end)` offsets.
    body: Option<(u32, u32)>,
}

impl Packet {
    pub(crate) fn from_parts(
        data: Bytes,
        fields: Box<[Field]>,
        kind: Kind,
        kind_index: u32,
        body: Option<(u32, u32)>,
    ) -> Packet {
        Packet {
            data,
            fields,
            kind,
            kind_index,
            body,
        }
    }

    /// Parses exactly one packet from `bytes` (the closing blank line may be omitted).
    ///
    /// Convenient for tests and for callers that already framed the bytes; streams should use
    /// [`crate::Decoder`]. A banner line is not a packet and is refused as malformed.
    pub fn parse(bytes: &[u8]) -> Result<Packet, crate::DecodeError> {
        let mut buf = bytes::BytesMut::from(bytes);
        if !(buf.ends_with(b"\n\n") || buf.ends_with(b"\n\r\n")) {
            if !buf.ends_with(b"\n") {
                buf.extend_from_slice(b"\r\n");
            }
            buf.extend_from_slice(b"\r\n");
        }
        let mut decoder = crate::Decoder::new();
        decoder.skip_banner_detection();
        match decoder.decode_eof(&mut buf)? {
            Some(crate::Frame::Packet(packet)) => Ok(packet),
            _ => Err(crate::DecodeError::Truncated { offset: 0 }),
        }
    }

    /// The packet kind, from the first `Event`/`Response`/`Action` header in wire order.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The value of the header that decided the kind (`ExtensionStatus`, `Success`, `Ping`...),
    /// or `None` for an unknown packet.
    pub fn name(&self) -> Option<Cow<'_, str>> {
        self.name_bytes().map(String::from_utf8_lossy)
    }

    /// Like [`Packet::name`], as bytes.
    pub fn name_bytes(&self) -> Option<&[u8]> {
        if self.kind == Kind::Unknown {
            return None;
        }
        self.fields
            .get(self.kind_index as usize)
            .map(|f| self.value_of(f))
    }

    /// True when the kind is `kind` and the name equals `name` without regard to case.
    pub fn is(&self, kind: Kind, name: &str) -> bool {
        self.kind == kind
            && self
                .name_bytes()
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The first `ActionID` header, if any.
    pub fn action_id(&self) -> Option<Cow<'_, str>> {
        self.get("ActionID")
    }

    /// The first value of `key` (case-insensitive) as text; invalid UTF-8 is replaced.
    pub fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get_bytes(key).map(crate::text::decode)
    }

    /// The first value of `key` (case-insensitive) as bytes.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        let key = key.as_bytes();
        self.fields
            .iter()
            .find(|f| self.key_of(f).eq_ignore_ascii_case(key))
            .map(|f| self.value_of(f))
    }

    /// Every value of `key` (case-insensitive), in wire order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        self.get_all_bytes(key).map(crate::text::decode)
    }

    /// Every value of `key` (case-insensitive) as bytes, in wire order.
    pub fn get_all_bytes<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers().filter(move |h| h.is(key)).map(|h| h.value)
    }

    /// True when `key` is present and its first value equals `value` without regard to case.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.get_bytes(key)
            .is_some_and(|v| v.eq_ignore_ascii_case(value.as_bytes()))
    }

    /// All headers in wire order.
    pub fn headers(&self) -> Headers<'_> {
        Headers {
            packet: self,
            next: 0,
        }
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the packet has no header lines (the decoder never produces such a packet).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The raw CLI text of a legacy `Response: Follows` packet (Asterisk 13 and older), without
    /// the `--END COMMAND--` marker. `None` for every other packet.
    pub fn follows_body(&self) -> Option<&[u8]> {
        self.body.map(|(s, e)| &self.data[s as usize..e as usize])
    }

    /// The packet exactly as it was on the wire, closing blank line included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    #[inline]
    fn key_of(&self, f: &Field) -> &[u8] {
        &self.data[f.key_start as usize..f.key_end as usize]
    }

    #[inline]
    fn value_of(&self, f: &Field) -> &[u8] {
        &self.data[f.value_start as usize..f.value_end as usize]
    }
}

impl PartialEq for Packet {
    /// Two packets are equal when their headers and legacy body are equal; the line endings they
    /// were written with do not matter.
    fn eq(&self, other: &Packet) -> bool {
        self.headers().eq(other.headers()) && self.follows_body() == other.follows_body()
    }
}

impl Eq for Packet {}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Packet");
        d.field("kind", &self.kind)
            .field("headers", &self.headers().collect::<Vec<_>>());
        if let Some(body) = self.follows_body() {
            d.field("body", &String::from_utf8_lossy(body));
        }
        d.finish()
    }
}

/// Iterator over the headers of a [`Packet`], in wire order.
#[derive(Clone)]
pub struct Headers<'a> {
    packet: &'a Packet,
    next: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        let f = self.packet.fields.get(self.next)?;
        self.next += 1;
        Some(Header {
            key: self.packet.key_of(f),
            value: self.packet.value_of(f),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.packet.fields.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Headers<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_keep_order() {
        let p = Packet::parse(
            b"Response: Success\r\nactionid: x-1\r\nMessage: a\r\nmessage: b\r\nOutput: \r\n",
        )
        .expect("valid packet");
        assert_eq!(p.kind(), Kind::Response);
        assert_eq!(p.name().as_deref(), Some("Success"));
        assert_eq!(p.action_id().as_deref(), Some("x-1"));
        assert_eq!(p.get("MESSAGE").as_deref(), Some("a"));
        assert_eq!(p.get_all("Message").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.get("Output").as_deref(), Some(""));
        assert_eq!(p.get("Missing"), None);
        let keys: Vec<_> = p.headers().map(|h| h.key().into_owned()).collect();
        assert_eq!(
            keys,
            ["Response", "actionid", "Message", "message", "Output"]
        );
        assert!(p.has("message", "A"));
        assert!(p.is(Kind::Response, "success"));
    }

    #[test]
    fn kind_comes_from_the_first_deciding_header() {
        let cases: &[(&str, Kind, Option<&str>)] = &[
            (
                "Event: OriginateResponse\nResponse: Success\n",
                Kind::Event,
                Some("OriginateResponse"),
            ),
            (
                "Privilege: x\nresponse: Error\n",
                Kind::Response,
                Some("Error"),
            ),
            ("ACTION: Ping\n", Kind::Action, Some("Ping")),
            ("Message: Missing\nFoo: bar\n", Kind::Unknown, None),
            ("Events: on\nActions: x\n", Kind::Unknown, None),
        ];
        for (raw, kind, name) in cases {
            let p = Packet::parse(raw.as_bytes()).expect("valid packet");
            assert_eq!(p.kind(), *kind, "{raw:?}");
            assert_eq!(p.name().as_deref(), *name, "{raw:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_read_as_latin1_not_fatal() {
        let p = Packet::parse(b"Event: X\r\nCallerIDName: Jos\xe9\r\n").expect("valid packet");
        assert_eq!(p.get("CallerIDName").as_deref(), Some("Jos\u{e9}"));
        assert_eq!(p.get_bytes("CallerIDName"), Some(&b"Jos\xe9"[..]));
    }

    #[test]
    fn debug_hides_secrets() {
        let p = Packet::parse(b"Action: Login\r\nUsername: u\r\nSecret: hunter2\r\nKey: abc\r\n")
            .expect("valid packet");
        let text = format!("{p:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("abc"), "{text}");
        assert!(text.contains("Username"), "{text}");
    }
}
