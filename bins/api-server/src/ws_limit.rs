//! The size limit on what a `/ws` client sends (`--ws-max-message`), applied to the frame
//! headers as the bytes arrive.
//!
//! actix's WebSocket codec checks a frame's length only once the whole frame is in its buffer,
//! and actix-ws reads everything the socket offers into that buffer first: a client that
//! declares a 4 GB frame and streams it was buffered in memory (283 MB for one connection in an
//! outside audit) until the heartbeat closed it. A message split into many small fragments was
//! never checked at all. [`Limited`] sits between the request's payload and actix-ws: it follows
//! the frame boundaries in the raw bytes (a few bytes of state), and ends the stream with an
//! error as soon as a header declares a frame, or the fragments of one message add up to, more
//! than the limit; the connection task then closes with 1009 (`message too big`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Set when [`Limited`] stopped a client for sending too much; read by the connection task to
/// choose the close code.
#[derive(Clone, Default)]
pub(crate) struct Overflowed(Rc<Cell<bool>>);

impl Overflowed {
    pub(crate) fn get(&self) -> bool {
        self.0.get()
    }
}

/// Where the client's byte stream is.
enum At {
    /// In a frame header: the bytes of it read so far.
    Header { bytes: [u8; 14], have: usize },
    /// In a frame's payload: the bytes of it still to come.
    Payload(u64),
}

/// The request payload of a `/ws` connection, cut off at the first frame over the limit.
pub(crate) struct Limited<S> {
    inner: S,
    max: u64,
    at: At,
    /// The data bytes of the message being received (its fragments so far).
    message: u64,
    overflowed: Overflowed,
    failed: bool,
}

impl<S> Limited<S> {
    pub(crate) fn new(inner: S, max: usize) -> (Self, Overflowed) {
        let overflowed = Overflowed::default();
        let limited = Self {
            inner,
            max: u64::try_from(max).unwrap_or(u64::MAX),
            at: At::Header {
                bytes: [0; 14],
                have: 0,
            },
            message: 0,
            overflowed: overflowed.clone(),
            failed: false,
        };
        (limited, overflowed)
    }

    /// Follows `chunk` through the frames; false when a frame or message is over the limit.
    fn follow(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            match &mut self.at {
                At::Payload(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    chunk = &chunk[n..];
                    *left -= n as u64;
                    if *left == 0 {
                        self.at = At::Header {
                            bytes: [0; 14],
                            have: 0,
                        };
                    }
                }
                At::Header { bytes, have } => {
                    bytes[*have] = chunk[0];
                    *have += 1;
                    chunk = &chunk[1..];
                    let Some(length) = frame_length(&bytes[..*have]) else {
                        continue;
                    };
                    let (first, opcode) = (bytes[0], bytes[0] & 0x0f);
                    if opcode & 0x08 == 0 {
                        // A data frame: a text or binary frame starts a message, a continuation
                        // adds to it; control frames (at most 125 bytes, which actix checks) may
                        // come between fragments and count for nothing.
                        self.message = if opcode == 0 {
                            self.message.saturating_add(length)
                        } else {
                            length
                        };
                        if self.message > self.max {
                            return false;
                        }
                        if first & 0x80 != 0 {
                            self.message = 0;
                        }
                    } else if length > self.max {
                        return false;
                    }
                    self.at = if length == 0 {
                        At::Header {
                            bytes: [0; 14],
                            have: 0,
                        }
                    } else {
                        At::Payload(length)
                    };
                }
            }
        }
        true
    }
}

/// The payload length of a frame whose header is `header` (or its start): `None` until the
/// whole header (2 to 14 bytes: extended length and mask key included) is there.
fn frame_length(header: &[u8]) -> Option<u64> {
    let second = *header.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (length, extended) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?])),
            2,
        ),
        127 => {
            let bytes: [u8; 8] = header.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 8)
        }
        n => (u64::from(n), 0),
    };
    (header.len() == 2 + extended + mask).then_some(length)
}

impl<S> Stream for Limited<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.follow(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.failed = true;
                    self.overflowed.0.set(true);
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    /// A masked client frame header for a payload of `len` bytes.
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut h = vec![first];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            h.push(0x80 | 126);
            h.extend_from_slice(&short.to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(first: u8, len: usize) -> Vec<u8> {
        let mut f = header(first, len as u64);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    /// Feeds `bytes` in chunks of `size`; the chunks that got through, and whether it overflowed.
    fn run(bytes: &[u8], size: usize, max: usize) -> (usize, bool) {
        let chunks: Vec<Result<Bytes, PayloadError>> = bytes
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let (mut limited, overflowed) = Limited::new(stream::iter(chunks), max);
        let mut passed = 0;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // The chunks are all there: every poll is ready.
        while let Poll::Ready(Some(item)) = Pin::new(&mut limited).poll_next(&mut cx) {
            match item {
                Ok(c) => passed += c.len(),
                Err(_) => break,
            }
        }
        (passed, overflowed.get())
    }

    #[test]
    fn frames_within_the_limit_pass_untouched_however_they_are_split() {
        let mut bytes = frame(0x81, 4096);
        bytes.extend(frame(0x89, 125)); // a ping
        bytes.extend(frame(0x01, 3000)); // a text message in two fragments...
        bytes.extend(frame(0x8a, 0)); // ...with a pong between them
        bytes.extend(frame(0x80, 1096));
        bytes.extend(frame(0x82, 0));
        for size in [1, 2, 3, 7, 100, 5000, bytes.len()] {
            assert_eq!(run(&bytes, size, 4096), (bytes.len(), false), "size {size}");
        }
    }

    #[test]
    fn a_header_over_the_limit_stops_the_stream_before_its_payload() {
        // 4 GB declared: stopped at the header, whatever follows is never read.
        let mut bytes = header(0x81, 4_000_000_000);
        bytes.extend(std::iter::repeat_n(b'x', 10_000));
        let (passed, overflowed) = run(&bytes, 1000, 4096);
        assert!(overflowed);
        assert_eq!(passed, 0);
        // One byte over, with a 16-bit and a 7-bit length.
        assert!(run(&frame(0x82, 4097), 64, 4096).1);
        assert!(run(&frame(0x81, 101), 64, 100).1);
    }

    #[test]
    fn fragments_that_add_up_to_more_than_the_limit_are_stopped() {
        let mut bytes = frame(0x01, 1000);
        for _ in 0..4 {
            bytes.extend(frame(0x00, 1000));
        }
        bytes.extend(frame(0x80, 1000));
        let (passed, overflowed) = run(&bytes, 512, 4096);
        assert!(overflowed);
        assert!(passed < bytes.len());
        // The count starts again with each message.
        let mut ok = Vec::new();
        for _ in 0..5 {
            ok.extend(frame(0x01, 2000));
            ok.extend(frame(0x80, 2000));
        }
        assert_eq!(run(&ok, 512, 4096), (ok.len(), false));
    }

    #[test]
    fn a_control_frame_over_the_limit_is_stopped() {
        assert!(run(&frame(0x89, 125), 10, 100).1);
    }
}
