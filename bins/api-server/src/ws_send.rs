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
//! Wake-ups go through one relay task per server thread ([`ThreadWake`]): the relay waits on a
//! [`hub::Watch`] and wakes the bodies of its own thread, which then read their subscriptions
//! without registering with the hub. The publisher (on another runtime) so wakes one task per
//! server thread instead of every client's: each cross-thread wake-up is a system call, and at
//! 500 clients they were most of what a publish cost.
//!
//! A body gives up its thread after [`TURN_BYTES`] in one turn. actix's dispatcher asks the body
//! for more for as long as the socket takes the bytes, and tokio stops a task only after 128
//! socket writes (4 MiB here): with hundreds of clients behind, each task's turn copied megabytes
//! into its socket, a round of a thread's tasks took seconds, and a new connection (a `/healthz`
//! probe, a browser) waits for a few rounds: 2.3 s at 5000 x 500 (docs/performance.md). A turn
//! can end inside a frame: the rest of its text goes first in the next turn (nothing can come
//! between), so frames keep their size (fewer, larger frames are what slow clients read
//! fastest) while a turn stays small.
//!
//! Control frames (pings, pongs, the close frame) still go through the `Session`: actix-ws's own
//! body is polled first, and its end (after a close frame, or when the connection task has
//! dropped its `Session`) ends this body, so nothing follows a close frame. A frame's text is
//! sent as it is (shared bytes), after its own small header: no copy but the write buffer's.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use hub::{ByteString, Delivery, Hub, Subscription};

/// The bytes a body hands its connection in one turn of its task before it yields the thread
/// to the others (it wakes itself, so it is polled again after them): one of actix's 32 KiB
/// write buffers, so one send a turn. At 5000 x 500, `/healthz` took up to 2.3 s without
/// turns, up to 180 ms with 64 KiB turns that ended only after a whole frame, and up to 51 ms
/// with these (docs/performance.md). 16 KiB gave no faster `/healthz` (49 ms).
const TURN_BYTES: usize = 32 * 1024;

/// The bodies of one server thread waiting for the hub's next change, and whether the relay
/// task that wakes them is running.
#[derive(Default)]
struct ThreadWake {
    waiting: RefCell<Vec<Option<Waker>>>,
    /// Entries emptied by bodies dropped while listed.
    dead: Cell<usize>,
    /// Bumped each time the relay takes the list: a body listed in the current round only
    /// refreshes its entry.
    round: Cell<u64>,
    relay_alive: Cell<bool>,
}

thread_local! {
    /// Per hub (a test process may run several servers), this thread's waiting bodies.
    static THREAD_WAKE: RefCell<Vec<(Hub, Rc<ThreadWake>)>> = const { RefCell::new(Vec::new()) };
}

impl ThreadWake {
    /// This thread's list for `hub`, with its relay task running (started on first use, and
    /// again if the runtime it ran on was dropped).
    fn for_hub(hub: &Hub) -> Rc<ThreadWake> {
        let wake = THREAD_WAKE.with(|all| {
            let mut all = all.borrow_mut();
            if let Some((_, wake)) = all.iter().find(|(h, _)| h.same(hub)) {
                return wake.clone();
            }
            let wake = Rc::new(ThreadWake::default());
            all.push((hub.clone(), wake.clone()));
            wake
        });
        if !wake.relay_alive.get() {
            wake.relay_alive.set(true);
            actix_web::rt::spawn(relay(hub.watch(), wake.clone()));
        }
        wake
    }

    /// Lists `waker` for the next publish; `listed` is the round the body listed itself in.
    fn wait(&self, listed: &mut Option<(u64, usize)>, waker: &Waker) {
        let mut waiting = self.waiting.borrow_mut();
        if let Some((round, i)) = *listed
            && round == self.round.get()
            && let Some(Some(w)) = waiting.get_mut(i)
        {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
            return;
        }
        *listed = Some((self.round.get(), waiting.len()));
        waiting.push(Some(waker.clone()));
    }

    /// Takes the whole list, for waking, and starts a new round.
    fn take(&self) -> Vec<Option<Waker>> {
        self.round.set(self.round.get() + 1);
        self.dead.set(0);
        std::mem::take(&mut *self.waiting.borrow_mut())
    }

    /// A dropped body's entry is emptied, so its waker does not keep the connection's task
    /// alive until the next publish. When most of the list is dead (many clients left while
    /// nothing was published), the live ones are woken (they list themselves anew) and the
    /// list starts over.
    fn forget(&self, listed: Option<(u64, usize)>) {
        let Some((round, i)) = listed else { return };
        if round != self.round.get() {
            return;
        }
        let emptied = self
            .waiting
            .borrow_mut()
            .get_mut(i)
            .is_some_and(|w| w.take().is_some());
        if emptied {
            self.dead.set(self.dead.get() + 1);
            let len = self.waiting.borrow().len();
            if self.dead.get() > 64 && self.dead.get() * 2 > len {
                wake_all(self.take());
            }
        }
    }
}

fn wake_all(wakers: Vec<Option<Waker>>) {
    for waker in wakers.into_iter().flatten() {
        waker.wake();
    }
}

/// Marks the relay stopped however its task ends (its runtime dropped it).
struct RelayAlive(Rc<ThreadWake>);

impl Drop for RelayAlive {
    fn drop(&mut self) {
        self.0.relay_alive.set(false);
    }
}

/// Waits for the hub's next publish and wakes the bodies of this thread that were waiting.
/// A body reads up to the hub's latest change before it lists itself, and the relay runs on
/// the same thread: every listed body is woken by the first round after its read, and a round
/// follows every publish at once. (Spacing the rounds at least 1 ms apart, to pack a
/// millisecond's changes into one frame, put 13 ms on the median at 1000 x 100 on a quiet
/// machine: docs/performance.md.)
async fn relay(mut watch: hub::Watch, wake: Rc<ThreadWake>) {
    let _alive = RelayAlive(wake.clone());
    loop {
        watch.published().await;
        wake_all(wake.take());
    }
}

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
    /// Bytes handed out since this body last returned `Pending` (see [`TURN_BYTES`]).
    turn: usize,
    /// This thread's waiting list, and where this body is listed in it.
    wake: Rc<ThreadWake>,
    listed: Option<(u64, usize)>,
    /// What the connection holds while it is open (its place under `--ws-max-connections`
    /// and its count in the client gauge): this body lives as long as actix keeps the
    /// connection, which can be longer than the connection task (a client that stopped
    /// reading keeps its socket until the kernel gives up on it).
    _held: Box<dyn std::any::Any>,
}

impl LiveBody {
    /// Made on the server thread that polls it (the connection's), whose relay wakes it.
    pub(crate) fn new(
        control: BoxBody,
        hub: &Hub,
        subscription: Subscription,
        first: Option<ByteString>,
        held: Box<dyn std::any::Any>,
    ) -> Self {
        Self {
            control,
            subscription,
            first,
            payload: None,
            done: false,
            turn: 0,
            wake: ThreadWake::for_hub(hub),
            listed: None,
            _held: held,
        }
    }

    /// The next frame's text, if one is ready: the first frame, then the hub's next delivery.
    /// Reading the subscription is what moves this client's cursor, so it happens only here,
    /// when the connection has room for more bytes.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<ByteString> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(first);
        }
        match self.subscription.try_recv() {
            // Shared bytes: the subscribers at the same cursor send one frame's text.
            Some(Delivery::Changes(batch)) => Poll::Ready(self.subscription.frame(&batch)),
            Some(Delivery::Resync(snapshot)) => {
                tracing::debug!("websocket client fell behind; sending a fresh snapshot");
                Poll::Ready(self.subscription.snapshot_text(&snapshot))
            }
            None => {
                self.wake.wait(&mut self.listed, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl Drop for LiveBody {
    fn drop(&mut self) {
        self.wake.forget(self.listed);
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
        if this.turn >= TURN_BYTES {
            this.turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // A frame's payload follows its header with nothing in between, a turn's worth at a
        // time (the slices share the frame's bytes).
        if let Some(mut piece) = this.payload.take() {
            let room = TURN_BYTES - this.turn;
            if piece.len() > room {
                this.payload = Some(piece.split_off(room));
            }
            this.turn += piece.len();
            return Poll::Ready(Some(Ok(piece)));
        }
        match Pin::new(&mut this.control).poll_next(cx) {
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk)),
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        match this.poll_frame(cx) {
            Poll::Ready(text) => {
                let payload = text.into_bytes();
                let header = text_frame_header(payload.len());
                this.payload = Some(payload);
                this.turn += header.len();
                Poll::Ready(Some(Ok(header)))
            }
            Poll::Pending => {
                this.turn = 0;
                Poll::Pending
            }
        }
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_thread_lists_each_body_once_per_round_and_forgets_dropped_ones() {
        let wake = ThreadWake::default();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut listed = None;
        wake.wait(&mut listed, &waker);
        wake.wait(&mut listed, &waker);
        assert_eq!(wake.waiting.borrow().len(), 1, "listed once per round");
        wake_all(wake.take());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(wake.waiting.borrow().is_empty());
        // A new round lists it anew; a listing from an old round is left alone.
        let stale = listed;
        wake.wait(&mut listed, &waker);
        assert_ne!(listed, stale);
        wake.forget(stale);
        assert_eq!(wake.waiting.borrow().iter().flatten().count(), 1);

        // Bodies dropped while listed are emptied out, so their wakers do not keep their
        // tasks alive; when most of the list is dead the live ones are woken and it restarts.
        let mut gone = Vec::new();
        for _ in 0..65 {
            let mut slot = None;
            wake.wait(&mut slot, Waker::noop());
            gone.push(slot);
        }
        for slot in gone {
            wake.forget(slot);
        }
        assert!(wake.waiting.borrow().is_empty(), "restarted");
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "the live one was woken");
    }

    /// A control body with nothing to send, ever.
    struct Silent;

    impl MessageBody for Silent {
        type Error = std::convert::Infallible;

        fn size(&self) -> BodySize {
            BodySize::Stream
        }

        fn poll_next(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Bytes, Self::Error>>> {
            Poll::Pending
        }
    }

    fn status(n: usize) -> hub::Change {
        let number = format!("{}", 1000 + n);
        let record = domain::Extension::create(
            domain::RecordId::parse(&format!("65a1b2c3d4e5f6071829{n:04x}")).expect("id"),
            domain::NewExtension {
                extension: domain::ExtensionNumber::parse(&number).expect("number"),
                agent_name: domain::AgentName::parse(&format!("Agent {number}")).expect("name"),
                department: domain::Department::parse("Sales").expect("department"),
                is_active: true,
            },
            "2026-12-03T12:00:00.000Z".parse().expect("time"),
        );
        hub::Change::StatusUpdated(record)
    }

    /// Polls `body` until it is pending; the chunks it gave and the bytes they held.
    fn one_turn(body: &mut LiveBody, cx: &mut Context<'_>) -> (Vec<Bytes>, usize) {
        let mut chunks = Vec::new();
        while let Poll::Ready(chunk) = Pin::new(&mut *body).poll_next(cx) {
            chunks.push(chunk.expect("the body goes on").expect("no error"));
        }
        let bytes = chunks.iter().map(Bytes::len).sum();
        (chunks, bytes)
    }

    /// Splits a stream of unmasked server frames into their payloads.
    fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !stream.is_empty() {
            assert_eq!(stream[0], 0x81, "a final text frame");
            let (len, at) = match stream[1] {
                126 => (usize::from(u16::from_be_bytes([stream[2], stream[3]])), 4),
                127 => {
                    let mut n = [0; 8];
                    n.copy_from_slice(&stream[2..10]);
                    (usize::try_from(u64::from_be_bytes(n)).expect("len"), 10)
                }
                short => (usize::from(short), 2),
            };
            out.push(&stream[at..at + len]);
            stream = &stream[at + len..];
        }
        out
    }

    #[actix_web::test]
    async fn a_body_far_behind_gives_up_its_thread_after_a_turn_and_loses_nothing() {
        let hub = Hub::new(
            hub::HubConfig::default(),
            Vec::new(),
            hub::PbxLink::unknown(),
        );
        let (_snapshot, subscription) = hub.subscribe(None);
        let published = 1_000;
        let first = hub.publish(status(0));
        for n in 1..published {
            hub.publish(status(n));
        }
        let mut body = LiveBody::new(BoxBody::new(Silent), &hub, subscription, None, Box::new(()));
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        let mut stream = Vec::new();
        let mut turns = 0;
        loop {
            let before = count.0.load(Ordering::SeqCst);
            let (chunks, bytes) = one_turn(&mut body, &mut cx);
            let woke_itself = count.0.load(Ordering::SeqCst) > before;
            turns += 1;
            stream.extend(chunks.iter().flat_map(|c| c.iter().copied()));
            if !woke_itself {
                assert!(bytes < TURN_BYTES, "a turn that ran out of changes");
                break;
            }
            // A turn ends once it has handed out the budget (a frame's header may pass it).
            assert!(
                (TURN_BYTES..TURN_BYTES + 10).contains(&bytes),
                "yielded after {bytes} bytes"
            );
        }
        let mut seqs = Vec::new();
        let mut largest = 0;
        for payload in frames(&stream) {
            let messages = match serde_json::from_slice(payload).expect("a frame is JSON") {
                serde_json::Value::Array(all) => all,
                one => vec![one],
            };
            largest = largest.max(messages.len());
            seqs.extend(messages.iter().map(|m| m["seq"].as_u64().expect("seq")));
        }
        let want: Vec<u64> = (first..first + published as u64).collect();
        assert_eq!(seqs, want, "every change once, in order, across the turns");
        assert_eq!(largest, hub::DEFAULT_MAX_BATCH, "frames keep their size");
        assert!(turns > 10, "{turns} turns: the test spans many");
    }

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
