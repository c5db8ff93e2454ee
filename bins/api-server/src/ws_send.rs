//! The sending half of a `/ws` connection: a response body that takes the hub's next changes
//! only when the socket has taken the previous ones, so a slow client lags in the hub's shared
//! ring (and is cut over to a snapshot by the hub's lag limit), never in a private buffer.
//!
//! actix-web polls a response body for more bytes only while the connection's write buffer
//! holds less than its limit (32 KiB) and writes that buffer out before asking again. This body
//! reads the [`Subscription`] inside that poll, so the bytes one client holds in this process
//! are bounded by that write buffer plus one frame (at most [`hub::DEFAULT_MAX_BATCH`] changes,
//! or a snapshot). Sending through `actix_ws::Session` instead queued up to 32 frames per
//! client in its channel, 32 more in its encoder and a copy in the write buffer, without bound in
//! bytes: 500 slow clients grew the server past 3 GB.
//!
//! Control frames (pings, pongs, the close frame) still go through the `Session`: actix-ws's own
//! body is polled first, and its end (after a close frame, or when the connection task has
//! dropped its `Session`) ends this body, so nothing follows a close frame. A frame's text is
//! sent as it is (shared bytes), after its own small header: no copy but the write buffer's.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use hub::{ByteString, Delivery, Subscription};

/// The body of a `/ws` response (after the `101 Switching Protocols` head).
pub(crate) struct LiveBody {
    /// actix-ws's body: the control frames the connection task sends through its `Session`.
    control: BoxBody,
    subscription: Subscription,
    /// A frame to send before reading the subscription: the snapshot or the resumed changes.
    first: Option<ByteString>,
    /// The text of the frame whose header went out last; it goes out next, before anything else.
    payload: Option<Bytes>,
    /// The control body ended: so does this one.
    done: bool,
}

impl LiveBody {
    pub(crate) fn new(
        control: BoxBody,
        subscription: Subscription,
        first: Option<ByteString>,
    ) -> Self {
        Self {
            control,
            subscription,
            first,
            payload: None,
            done: false,
        }
    }

    /// The next frame's text, if one is ready: the first frame, then the hub's next delivery.
    /// Reading the subscription is what moves this client's cursor, so it happens only here,
    /// when the connection has room for more bytes.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<ByteString> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(first);
        }
        self.subscription
            .poll_recv(cx)
            .map(|delivery| match delivery {
                // Shared bytes: the subscribers at the same cursor send one frame's text.
                Delivery::Changes(batch) => self.subscription.frame(&batch),
                Delivery::Resync(snapshot) => {
                    tracing::debug!("websocket client fell behind; sending a fresh snapshot");
                    snapshot.to_json().into()
                }
            })
    }
}

impl MessageBody for LiveBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // A frame's payload follows its header with nothing in between.
        if let Some(payload) = this.payload.take() {
            return Poll::Ready(Some(Ok(payload)));
        }
        match Pin::new(&mut this.control).poll_next(cx) {
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk)),
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        this.poll_frame(cx).map(|text| {
            let payload = text.into_bytes();
            let header = text_frame_header(payload.len());
            this.payload = Some(payload);
            Some(Ok(header))
        })
    }
}

/// The header of an unmasked, final text frame of `len` bytes (RFC 6455, section 5.2).
fn text_frame_header(len: usize) -> Bytes {
    const FIN_TEXT: u8 = 0x80 | 0x1;
    let mut header = [FIN_TEXT, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let used = match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short < 126 => {
            header[1] = short;
            2
        }
        (_, Ok(medium)) => {
            header[1] = 126;
            header[2..4].copy_from_slice(&medium.to_be_bytes());
            4
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    Bytes::copy_from_slice(&header[..used])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        let check =
            |len: usize, want: &[u8]| assert_eq!(&text_frame_header(len)[..], want, "{len}");
        check(0, &[0x81, 0]);
        check(125, &[0x81, 125]);
        check(126, &[0x81, 126, 0, 126]);
        check(65_535, &[0x81, 126, 0xff, 0xff]);
        check(65_536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        check(3_000_000, &[0x81, 127, 0, 0, 0, 0, 0, 0x2d, 0xc6, 0xc0]);
    }
}
