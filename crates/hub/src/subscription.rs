//! A subscriber's side of the hub: a cursor into the shared ring, read at the subscriber's own
//! pace, with a cut-over to a fresh snapshot when it falls too far behind.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};

use bytestring::ByteString;
use domain::Department;

use crate::change::SequencedChange;
use crate::hub::{FrameCache, ParkedAt, Shared, SnapshotCache, SnapshotParts, wake_all};
use crate::message::{Snapshot, render_frame};

/// The most changes one [`Delivery::Changes`] holds unless [`Subscription::set_max_batch`]
/// says otherwise.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// What one [`Subscription::recv`] hands over.
#[derive(Debug)]
pub enum Delivery {
    /// The next changes for this subscriber, in sequence order, at least one. Unfiltered, they
    /// are gap-free and follow on from the previous delivery; filtered, the gaps are other
    /// departments' changes.
    Changes(Vec<Arc<SequencedChange>>),
    /// The subscriber fell behind (more unread changes than its queue allows, or out of the
    /// ring): everything unread was dropped, and it continues from this fresh snapshot. The
    /// WebSocket layer sends it as a `snapshot` message.
    Resync(Snapshot),
}

/// How [`crate::Hub::resume`] answered.
#[derive(Debug)]
pub enum Resume {
    /// The ring still held everything after the client's number: here are exactly those
    /// changes (filtered, possibly none), and the subscription goes on after them.
    Changes(Vec<Arc<SequencedChange>>, Subscription),
    /// It did not: a fresh snapshot to start over from, and the subscription after it.
    Snapshot(Snapshot, Subscription),
}

impl Resume {
    /// Whether the client has to start over from a snapshot.
    pub fn is_snapshot(&self) -> bool {
        matches!(self, Resume::Snapshot(..))
    }

    /// The subscription, whichever way the resume went.
    pub fn into_subscription(self) -> Subscription {
        match self {
            Resume::Changes(_, s) | Resume::Snapshot(_, s) => s,
        }
    }
}

/// One step of reading, decided under the lock.
pub(crate) enum Step {
    /// A fresh snapshot (to be built outside the lock); the cursor now follows it.
    Resync(SnapshotParts),
    /// The next changes, not yet filtered, at least one.
    Batch(Vec<Arc<SequencedChange>>),
    /// Nothing new.
    UpToDate,
}

/// A subscriber's stream of changes. Dropping it unsubscribes.
///
/// It holds only a cursor: the changes live once, in the hub's shared ring, and nothing is
/// pushed to a subscription, so a subscriber that does not read costs the publisher nothing.
/// When it reads and finds itself more than the configured queue bound behind, it is handed a
/// fresh snapshot instead of the backlog (and counted in
/// [`crate::HubMetrics::lag_resyncs`]).
pub struct Subscription {
    shared: Arc<Shared>,
    /// The sequence number of the next change to read.
    next: u64,
    filter: Option<Department>,
    parked: ParkedAt,
    max_batch: usize,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("next_seq", &self.next)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, next: u64, filter: Option<Department>) -> Self {
        shared.counters.subscribers.fetch_add(1, Relaxed);
        Self {
            shared,
            next,
            filter,
            parked: None,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }

    /// The sequence number of the next change this subscription will look at.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The department this subscription is limited to, if any.
    pub fn filter(&self) -> Option<&Department> {
        self.filter.as_ref()
    }

    /// Sets the most changes one delivery holds (at least 1).
    pub fn set_max_batch(&mut self, max: usize) {
        self.max_batch = max.max(1);
    }

    /// Waits for the next delivery: every change available (up to the batch limit), or a
    /// fresh snapshot when this subscriber fell behind.
    ///
    /// Cancel-safe: a `recv` dropped before it completes has consumed nothing, so it can sit
    /// in a `select!` next to a shutdown signal.
    pub async fn recv(&mut self) -> Delivery {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next delivery if one is ready now, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.next_delivery(None)
    }

    /// The text frame of `batch`, a [`Delivery::Changes`] this subscription handed over (or the
    /// changes of its [`Resume::Changes`]): [`render_frame`]'s text, but built once for every
    /// subscriber that reads the same changes. Subscribers at the same cursor are woken by the
    /// same publish and read the same changes, so at 500 clients one builds the array and the
    /// others clone shared bytes. A single change is its own shared text anyway.
    pub fn frame(&self, batch: &[Arc<SequencedChange>]) -> ByteString {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return render_frame(batch);
        };
        if batch.len() == 1 {
            return first.json_shared();
        }
        let (first, last) = (first.seq(), last.seq());
        let same = |c: &FrameCache| c.first == first && c.last == last && c.filter == self.filter;
        if let Some(cached) = self.shared.frame_cache().as_ref().filter(|c| same(c)) {
            self.shared.counters.frames_shared.fetch_add(1, Relaxed);
            return cached.frame.clone();
        }
        // Built outside the cache's lock, so a subscriber with other changes never waits.
        let frame = render_frame(batch);
        *self.shared.frame_cache() = Some(FrameCache {
            first,
            last,
            filter: self.filter.clone(),
            frame: frame.clone(),
        });
        frame
    }

    /// The text of `snapshot` (one this subscription was handed: at subscribe, resume or
    /// resync), as [`Snapshot::to_json`] writes it, built once for every subscriber that gets
    /// the snapshot of the same change with the same filter. When 500 clients connect between
    /// two changes, or a burst resyncs many at once, one renders the board and the others
    /// clone shared bytes.
    pub fn snapshot_text(&self, snapshot: &Snapshot) -> ByteString {
        let same = |c: &SnapshotCache| c.seq == snapshot.seq && c.filter == self.filter;
        if let Some(cached) = self.shared.snapshot_cache().as_ref().filter(|c| same(c)) {
            self.shared.counters.snapshots_shared.fetch_add(1, Relaxed);
            return cached.text.clone();
        }
        // Built outside the cache's lock, so a subscriber with another snapshot never waits.
        let text = ByteString::from(snapshot.to_json());
        *self.shared.snapshot_cache() = Some(SnapshotCache {
            seq: snapshot.seq,
            filter: self.filter.clone(),
            text: text.clone(),
        });
        text
    }

    /// The poll form of [`Subscription::recv`], for hand-written futures and streams.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Delivery> {
        match self.next_delivery(Some(cx.waker())) {
            Some(delivery) => Poll::Ready(delivery),
            None => Poll::Pending,
        }
    }

    /// Reads until something passes the filter, or until up to date (then lists `waker`, under
    /// the same lock hold that saw nothing new, so no publish can slip between).
    fn next_delivery(&mut self, waker: Option<&Waker>) -> Option<Delivery> {
        loop {
            match self.read_or_park(self.shared.lag_limit, waker) {
                Step::Resync(parts) => {
                    let snapshot = parts.build(self.filter.as_ref());
                    self.shared.counters.lag_resyncs.fetch_add(1, Relaxed);
                    return Some(Delivery::Resync(snapshot));
                }
                Step::Batch(mut batch) => {
                    if let Some(d) = &self.filter {
                        batch.retain(|c| c.concerns(Some(d)));
                    }
                    if !batch.is_empty() {
                        return Some(Delivery::Changes(batch));
                    }
                }
                Step::UpToDate => return None,
            }
        }
    }

    /// One read under the lock, with the given lag bound; used by resume with no bound but
    /// the ring's.
    pub(crate) fn read(&mut self, lag_limit: u64) -> Step {
        self.read_or_park(lag_limit, None)
    }

    fn read_or_park(&mut self, lag_limit: u64, waker: Option<&Waker>) -> Step {
        let mut state = self.shared.lock();
        let step = state.read(&mut self.next, lag_limit, self.max_batch);
        if let (Step::UpToDate, Some(waker)) = (&step, waker) {
            state.parked.register(&mut self.parked, waker);
        }
        step
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.counters.subscribers.fetch_sub(1, Relaxed);
        if self.parked.is_some() {
            let wakers = self.shared.lock().parked.unregister(self.parked);
            wake_all(wakers);
        }
    }
}
