//! The hub itself: the current view, the ring of recent changes, and the publish, subscribe
//! and resume operations over them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytestring::ByteString;
use domain::{Department, Extension};

use crate::change::{Change, Encoded, PbxLink, SequencedChange};
use crate::message::Snapshot;
use crate::subscription::{Resume, Step, Subscription};
use crate::view::{Chunk, View, flatten};
use crate::watch::Watch;

/// How much history the hub keeps and how far a subscriber may fall behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// How many of the most recent changes the ring holds, for resuming and for subscribers
    /// that are behind. At least 1 is used.
    pub ring_capacity: usize,
    /// How many bytes of message text the ring holds at most (the oldest changes are evicted
    /// first; the latest change is always kept). This is the ring's memory bound.
    pub ring_bytes: usize,
    /// How many unread changes a subscriber may have before it is cut over to a fresh snapshot
    /// (its bounded queue). At least 1 is used, and never more than `ring_capacity`. A
    /// subscriber whose unread changes have left the ring (by count or by bytes) is cut over
    /// too.
    pub subscriber_queue: usize,
}

impl Default for HubConfig {
    /// A subscriber may fall as far behind as the ring reaches: 262,144 changes or 96 MiB of
    /// their text, whichever is less (about 220,000 status updates of ~450 bytes: 11 s at
    /// 20,000 changes/s; the ring's entries take about 140 MB then). A client that is slow for
    /// a while catches up instead of being handed a snapshot; only one that stays behind
    /// that long is resynced.
    fn default() -> Self {
        Self {
            ring_capacity: 262_144,
            ring_bytes: 96 << 20,
            subscriber_queue: 262_144,
        }
    }
}

/// The hub's counters, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubMetrics {
    /// Subscriptions alive now (a gauge).
    pub subscribers: u64,
    /// Changes published since the hub was made.
    pub published: u64,
    /// Times a subscriber fell behind and was cut over to a fresh snapshot.
    pub lag_resyncs: u64,
    /// Resumes answered with the changes the client missed.
    pub resumes_from_ring: u64,
    /// Resumes answered with a fresh snapshot because the ring no longer held what was
    /// missed (or the client's number was not one of ours).
    pub resumes_with_snapshot: u64,
    /// Multi-change frames handed out as the text another subscriber at the same cursor had
    /// already built (see [`crate::Subscription::frame`]).
    pub frames_shared: u64,
    /// Snapshot texts handed out as the text another subscriber given the same snapshot had
    /// already built (see [`crate::Subscription::snapshot_text`]).
    pub snapshots_shared: u64,
    /// The sequence number of the latest change.
    pub last_seq: u64,
    /// Times the history was started over ([`Hub::reset`]): every subscriber resynced.
    pub resets: u64,
}

/// A number [`Hub::publish_at`] or [`Hub::reset`] cannot take: not the next one (or, for a
/// reset, not above the last one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sequence number {given} does not follow the hub's last number {last}")]
pub struct OutOfSequence {
    /// The number given.
    pub given: u64,
    /// The hub's last number.
    pub last: u64,
}

/// The broadcast hub: one ordered history of changes, a current view, and any number of
/// subscribers reading at their own pace.
///
/// Cloning is cheap and every clone is the same hub. All operations take `&self`, are
/// thread-safe, and never wait on a subscriber: the lock they take is held for a few pointer
/// moves and copies, never across an `.await`.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// What the hub and its subscriptions share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The last multi-change frame built, for the subscribers that read the same changes.
    frame: Mutex<Option<FrameCache>>,
    /// The last snapshot text built, for the subscribers handed the same snapshot.
    snapshot: Mutex<Option<SnapshotCache>>,
    /// The effective bound on a subscriber's unread changes.
    pub(crate) lag_limit: u64,
    ring_capacity: usize,
    ring_bytes: usize,
    pub(crate) counters: Counters,
}

/// Counters kept outside the lock, so that reading them never contends with publishing.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) subscribers: AtomicU64,
    published: AtomicU64,
    pub(crate) lag_resyncs: AtomicU64,
    resumes_from_ring: AtomicU64,
    resumes_with_snapshot: AtomicU64,
    pub(crate) frames_shared: AtomicU64,
    pub(crate) snapshots_shared: AtomicU64,
    resets: AtomicU64,
}

/// A multi-change frame and what identifies its changes: the first and last sequence numbers of
/// a delivery and the department filter that chose them. (The changes between two numbers that
/// a filter lets through are always the same: the history never changes.)
pub(crate) struct FrameCache {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) filter: Option<Department>,
    pub(crate) frame: ByteString,
}

/// A snapshot's text and what identifies it: the change it was taken after and the filter.
/// (The view after a given change is always the same.)
pub(crate) struct SnapshotCache {
    pub(crate) seq: u64,
    pub(crate) filter: Option<Department>,
    pub(crate) text: ByteString,
}

/// Everything behind the lock.
pub(crate) struct State {
    /// The current record of every extension.
    view: View,
    pbx_link: PbxLink,
    /// The most recent changes, oldest first, without gaps, ending with `last_seq`.
    ring: VecDeque<Arc<SequencedChange>>,
    /// The bytes of message text the ring holds.
    ring_text: usize,
    last_seq: u64,
    pub(crate) parked: Parked,
}

impl State {
    /// The sequence number of the latest change.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The sequence number of the oldest change the ring holds (one past `last_seq` when it
    /// is empty).
    fn first_seq(&self) -> u64 {
        self.last_seq + 1 - self.ring.len() as u64
    }

    /// The view as of `last_seq`: one pointer copy per chunk of records. The caller builds the
    /// snapshot after releasing the lock.
    fn snapshot(&self) -> SnapshotParts {
        SnapshotParts {
            seq: self.last_seq,
            chunks: self.view.share(),
            pbx_link: self.pbx_link.clone(),
        }
    }

    /// Reads from `next` on: a fresh snapshot when `next` has fallen out of the ring or more
    /// than `lag_limit` behind, otherwise up to `max` changes (unfiltered), or nothing when the
    /// reader is up to date. Advances `next` past whatever it returns.
    pub(crate) fn read(&self, next: &mut u64, lag_limit: u64, max: usize) -> Step {
        if *next > self.last_seq {
            return Step::UpToDate;
        }
        let unread = self.last_seq + 1 - *next;
        let first = self.first_seq();
        if *next < first || unread > lag_limit {
            let snapshot = self.snapshot();
            *next = snapshot.seq + 1;
            return Step::Resync(snapshot);
        }
        // `next` lies within the ring, so the index fits.
        let start = usize::try_from(*next - first).unwrap_or(usize::MAX);
        let end = start.saturating_add(max).min(self.ring.len());
        let batch: Vec<_> = self.ring.range(start..end).cloned().collect();
        *next += batch.len() as u64;
        Step::Batch(batch)
    }
}

/// A snapshot as taken under the lock: the shared chunks of the view, not yet flattened.
pub(crate) struct SnapshotParts {
    seq: u64,
    chunks: Vec<Arc<Chunk>>,
    pbx_link: PbxLink,
}

impl SnapshotParts {
    /// Flattens, filters and orders the records; runs outside the lock.
    pub(crate) fn build(self, filter: Option<&Department>) -> Snapshot {
        let mut snapshot = Snapshot {
            seq: self.seq,
            extensions: flatten(&self.chunks, filter),
            pbx_link: self.pbx_link,
        };
        snapshot.sort();
        snapshot
    }
}

/// The wakers of subscribers waiting for the next change.
///
/// Each waiting subscriber is listed at most once per *epoch*; a publish that finds anyone
/// listed takes the whole list (one swap) and starts a new epoch. So a publish wakes only the
/// subscribers that are actually parked, each once until it polls again, and a subscriber that
/// is busy or never reads costs the publisher nothing.
#[derive(Default)]
pub(crate) struct Parked {
    wakers: Vec<Option<Waker>>,
    epoch: u64,
    /// Entries emptied by subscriptions dropped while parked.
    dead: usize,
}

/// Where a subscription's waker is listed: the epoch and the index in that epoch's list.
pub(crate) type ParkedAt = Option<(u64, usize)>;

impl Parked {
    /// Lists `waker` for the next publish, or refreshes the listing made earlier in this epoch.
    pub(crate) fn register(&mut self, at: &mut ParkedAt, waker: &Waker) {
        if let Some((epoch, i)) = *at
            && epoch == self.epoch
            && let Some(Some(listed)) = self.wakers.get_mut(i)
        {
            if !listed.will_wake(waker) {
                *listed = waker.clone();
            }
            return;
        }
        *at = Some((self.epoch, self.wakers.len()));
        self.wakers.push(Some(waker.clone()));
    }

    /// Takes every listed waker, to be woken after the lock is released.
    fn take(&mut self) -> Vec<Option<Waker>> {
        if self.wakers.is_empty() {
            return Vec::new();
        }
        self.epoch += 1;
        self.dead = 0;
        std::mem::take(&mut self.wakers)
    }

    /// Removes a dropped subscription's listing. When most of the list is dead (many
    /// subscribers left while nothing was published), the whole list is handed back to be
    /// woken: the live ones poll again and list themselves anew, and the list stays bounded.
    pub(crate) fn unregister(&mut self, at: ParkedAt) -> Vec<Option<Waker>> {
        if let Some((epoch, i)) = at
            && epoch == self.epoch
            && let Some(listed) = self.wakers.get_mut(i)
            && listed.take().is_some()
        {
            self.dead += 1;
            if self.dead > 64 && self.dead * 2 > self.wakers.len() {
                return self.take();
            }
        }
        Vec::new()
    }
}

/// Wakes the given wakers; called with no lock held, since waking may run scheduler code.
pub(crate) fn wake_all(wakers: Vec<Option<Waker>>) {
    for waker in wakers.into_iter().flatten() {
        waker.wake();
    }
}

impl Shared {
    /// Takes the lock. A panic while it was held (which the short, allocation-only critical
    /// sections make a matter of running out of memory) leaves every structure whole, so a
    /// poisoned lock is used as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The snapshot text cache; like the frame cache, only ever replaced whole.
    pub(crate) fn snapshot_cache(&self) -> MutexGuard<'_, Option<SnapshotCache>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The frame cache. A panic while it was held cannot leave it half-written: it is only
    /// ever replaced whole.
    pub(crate) fn frame_cache(&self) -> MutexGuard<'_, Option<FrameCache>> {
        self.frame.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Hub {
    /// A hub holding `initial` as its view and `pbx_link` as the link state.
    ///
    /// Sequence numbers start at the current Unix time in microseconds rather than at zero,
    /// so that a client resuming with a number from before a server restart is always told
    /// to take a fresh snapshot instead of being handed unrelated changes under numbers it
    /// has already seen. (That holds while the server published fewer than a million changes
    /// per second on average before the restart; the numbers stay below 2^53, so JavaScript
    /// reads them exactly, until the year 2255.)
    pub fn new(config: HubConfig, initial: Vec<Extension>, pbx_link: PbxLink) -> Self {
        let start = u64::try_from(domain::now().timestamp_micros()).unwrap_or(0);
        Self::starting_at(config, initial, pbx_link, start)
    }

    /// A hub whose initial snapshot has sequence number `start_seq` (the first change gets
    /// `start_seq + 1`). For tests and tools that want small, predictable numbers.
    pub fn starting_at(
        config: HubConfig,
        initial: Vec<Extension>,
        pbx_link: PbxLink,
        start_seq: u64,
    ) -> Self {
        let ring_capacity = config.ring_capacity.max(1);
        let lag_limit = config.subscriber_queue.clamp(1, ring_capacity) as u64;
        let state = State {
            view: View::new(initial),
            pbx_link,
            ring: VecDeque::new(),
            ring_text: 0,
            // Keeps `last_seq + 1` from overflowing whatever the caller passed.
            last_seq: start_seq.min(u64::MAX / 2),
            parked: Parked::default(),
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                frame: Mutex::new(None),
                snapshot: Mutex::new(None),
                lag_limit,
                ring_capacity,
                ring_bytes: config.ring_bytes,
                counters: Counters::default(),
            }),
        }
    }

    /// Publishes a change: gives it the next sequence number, applies it to the view and
    /// appends it to the ring, all under one lock hold, then wakes the subscribers that were
    /// waiting. Returns the sequence number.
    ///
    /// The hub trusts its publishers: a record is stored as given (an upsert), and deleting an
    /// unknown id still publishes the deletion. The JSON is serialized here, once, before the
    /// lock is taken. Never waits on a subscriber, whatever their number or speed.
    pub fn publish(&self, change: Change) -> u64 {
        match self.publish_inner(None, change) {
            Ok(seq) | Err(OutOfSequence { last: seq, .. }) => seq,
        }
    }

    /// Publishes a change under a number someone else assigned (the cluster's change log):
    /// exactly like [`Hub::publish`], but only when `seq` is the very next number
    /// (`last_seq + 1`); otherwise nothing is published and the error says what the hub
    /// expected. A follower that finds a hole in its source calls [`Hub::reset`] instead.
    pub fn publish_at(&self, seq: u64, change: Change) -> Result<u64, OutOfSequence> {
        self.publish_inner(Some(seq), change)
    }

    fn publish_inner(&self, wanted: Option<u64>, change: Change) -> Result<u64, OutOfSequence> {
        let mut encoded = Encoded::new(&change);
        let record = change.record().map(|e| Arc::new(e.clone()));
        let department = change.department().cloned();
        let (seq, replaced, evicted, wakers) = {
            let mut state = self.shared.lock();
            let seq = state.last_seq + 1;
            if let Some(wanted) = wanted
                && wanted != seq
            {
                return Err(OutOfSequence {
                    given: wanted,
                    last: state.last_seq,
                });
            }
            let replaced = match (&change, record) {
                (Change::Deleted { id, .. }, _) => state.view.remove(id),
                (_, Some(record)) => state.view.upsert(record),
                (_, None) => None,
            };
            if let Change::PbxLink(link) = &change {
                state.pbx_link = link.clone();
            }
            let previous_department = match (&replaced, &department) {
                (Some(old), Some(new)) if old.department != *new => Some(old.department.clone()),
                _ => None,
            };
            let sealed = Arc::new(encoded.seal(seq, department, previous_department));
            state.ring_text += sealed.text_len();
            state.ring.push_back(sealed);
            // Usually one change leaves as one comes in; freed after the lock is released.
            let mut evicted = Vec::new();
            while state.ring.len() > 1
                && (state.ring.len() > self.shared.ring_capacity
                    || state.ring_text > self.shared.ring_bytes)
            {
                if let Some(old) = state.ring.pop_front() {
                    state.ring_text -= old.text_len();
                    evicted.push(old);
                }
            }
            state.last_seq = seq;
            let wakers = state.parked.take();
            (seq, replaced, evicted, wakers)
        };
        // Freeing the replaced record, the evicted changes and the change handed in happens
        // here, outside the lock.
        drop((replaced, evicted, change));
        self.shared.counters.published.fetch_add(1, Relaxed);
        wake_all(wakers);
        Ok(seq)
    }

    /// Starts the history over: the view becomes `records` and `pbx_link` as of sequence
    /// number `seq`, the ring is emptied, and every subscriber is cut over to a fresh snapshot
    /// on its next read (counted in [`HubMetrics::lag_resyncs`] like any resync), as is any
    /// resume from before. For a follower that found a hole in the history it copies (entries
    /// pruned while it lagged): it cannot tell what it missed, so everyone starts over.
    ///
    /// `seq` must be above the current `last_seq`, so that every cursor falls out of the
    /// (empty) ring; a lower one is refused and nothing changes.
    pub fn reset(
        &self,
        seq: u64,
        records: Vec<Extension>,
        pbx_link: PbxLink,
    ) -> Result<(), OutOfSequence> {
        // The new view is built before the lock is taken.
        let view = View::new(records);
        let (old_view, old_ring, wakers) = {
            let mut state = self.shared.lock();
            if seq <= state.last_seq || seq > u64::MAX / 2 {
                return Err(OutOfSequence {
                    given: seq,
                    last: state.last_seq,
                });
            }
            let old_view = std::mem::replace(&mut state.view, view);
            let old_ring = std::mem::take(&mut state.ring);
            state.ring_text = 0;
            state.pbx_link = pbx_link;
            state.last_seq = seq;
            (old_view, old_ring, state.parked.take())
        };
        drop((old_view, old_ring));
        self.shared.counters.resets.fetch_add(1, Relaxed);
        wake_all(wakers);
        Ok(())
    }

    /// The current record with this id, if the view holds one.
    pub fn record(&self, id: &domain::RecordId) -> Option<Arc<Extension>> {
        self.shared.lock().view.get(id)
    }

    /// Subscribes: the current (filtered) view and a subscription that delivers every change
    /// after it. Both come from one lock hold, so no change falls between them.
    pub fn subscribe(&self, filter: Option<Department>) -> (Snapshot, Subscription) {
        let parts = self.shared.lock().snapshot();
        let snapshot = parts.build(filter.as_ref());
        let subscription = Subscription::new(self.shared.clone(), snapshot.seq + 1, filter);
        (snapshot, subscription)
    }

    /// Resumes a stream that had seen every change up to `after_seq`: exactly the (filtered)
    /// changes after it when the ring still holds them all, otherwise a fresh snapshot
    /// (counted, and said so by the variant). A number the hub never issued (from a server
    /// that has since restarted) also gets a snapshot.
    pub fn resume(&self, after_seq: u64, filter: Option<Department>) -> Resume {
        let counters = &self.shared.counters;
        let target = {
            let state = self.shared.lock();
            if after_seq > state.last_seq || after_seq < state.first_seq() - 1 {
                let parts = state.snapshot();
                drop(state);
                return self.resume_with(parts, filter);
            }
            state.last_seq
        };
        let mut subscription = Subscription::new(self.shared.clone(), after_seq + 1, filter);
        let mut changes = Vec::new();
        // The missed changes are gathered in batches, one short lock hold each, so that a
        // resume of thousands of changes does not hold up publishers.
        while subscription.next_seq() <= target {
            match subscription.read(u64::MAX) {
                Step::Batch(batch) => changes.extend(batch),
                Step::Resync(parts) => {
                    // The ring moved past the client while the changes were being gathered.
                    let snapshot = parts.build(subscription.filter());
                    counters.resumes_with_snapshot.fetch_add(1, Relaxed);
                    return Resume::Snapshot(snapshot, subscription);
                }
                Step::UpToDate => break,
            }
        }
        if let Some(d) = subscription.filter() {
            changes.retain(|c| c.concerns(Some(d)));
        }
        counters.resumes_from_ring.fetch_add(1, Relaxed);
        Resume::Changes(changes, subscription)
    }

    fn resume_with(&self, parts: SnapshotParts, filter: Option<Department>) -> Resume {
        let snapshot = parts.build(filter.as_ref());
        let subscription = Subscription::new(self.shared.clone(), snapshot.seq + 1, filter);
        self.shared
            .counters
            .resumes_with_snapshot
            .fetch_add(1, Relaxed);
        Resume::Snapshot(snapshot, subscription)
    }

    /// Whether `other` is this very hub (a clone of it), not merely an equal one.
    pub fn same(&self, other: &Hub) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// A [`Watch`] that is ready once something is published after now.
    pub fn watch(&self) -> Watch {
        let seen = self.shared.lock().last_seq;
        Watch::new(self.shared.clone(), seen)
    }

    /// The current (filtered) view, without subscribing.
    pub fn snapshot(&self, filter: Option<&Department>) -> Snapshot {
        let parts = self.shared.lock().snapshot();
        parts.build(filter)
    }

    /// The sequence number of the latest change (of the initial snapshot before any).
    pub fn last_seq(&self) -> u64 {
        self.shared.lock().last_seq
    }

    /// The current PBX link state.
    pub fn pbx_link(&self) -> PbxLink {
        self.shared.lock().pbx_link.clone()
    }

    /// The counters, for `/metrics`.
    pub fn metrics(&self) -> HubMetrics {
        let c = &self.shared.counters;
        HubMetrics {
            subscribers: c.subscribers.load(Relaxed),
            published: c.published.load(Relaxed),
            lag_resyncs: c.lag_resyncs.load(Relaxed),
            resumes_from_ring: c.resumes_from_ring.load(Relaxed),
            resumes_with_snapshot: c.resumes_with_snapshot.load(Relaxed),
            frames_shared: c.frames_shared.load(Relaxed),
            snapshots_shared: c.snapshots_shared.load(Relaxed),
            last_seq: self.last_seq(),
            resets: c.resets.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waker_is_listed_once_per_epoch_and_the_list_stays_bounded() {
        let mut parked = Parked::default();
        let mut at: ParkedAt = None;
        for _ in 0..100 {
            parked.register(&mut at, Waker::noop());
        }
        assert_eq!((parked.wakers.len(), at), (1, Some((0, 0))));
        assert_eq!(parked.take().len(), 1);
        assert!(parked.take().is_empty(), "nothing listed, nothing taken");
        parked.register(&mut at, Waker::noop());
        assert_eq!(at, Some((1, 0)), "a new epoch lists it anew");

        // Subscribers that leave while listed are emptied out; when most of the list is dead,
        // it is handed back whole to be woken, and starts again empty.
        let mut leaving = Vec::new();
        for _ in 0..65 {
            let mut slot = None;
            parked.register(&mut slot, Waker::noop());
            leaving.push(slot);
        }
        let mut handed_back = Vec::new();
        for slot in leaving {
            handed_back.extend(parked.unregister(slot));
        }
        assert_eq!(
            handed_back.iter().flatten().count(),
            1,
            "only the live one is left"
        );
        assert!(parked.wakers.is_empty());
        assert_eq!(parked.epoch, 2);
        // A stale listing (from an earlier epoch) is left alone.
        assert!(parked.unregister(at).is_empty());
    }

    #[test]
    fn publishing_applies_each_kind_of_change_to_the_view() {
        use domain::{AgentName, ExtensionNumber, NewExtension, RecordId};
        let record = |dept: &str, name: &str| {
            Extension::create(
                RecordId::from_bytes([7; 12]),
                NewExtension {
                    extension: ExtensionNumber::parse("1001").expect("ext"),
                    agent_name: AgentName::parse(name).expect("name"),
                    department: Department::parse(dept).expect("dept"),
                    is_active: true,
                },
                domain::now(),
            )
        };
        let hub = Hub::starting_at(HubConfig::default(), Vec::new(), PbxLink::unknown(), 0);
        let view = |hub: &Hub| -> Vec<(String, String)> {
            hub.snapshot(None)
                .extensions
                .iter()
                .map(|e| (e.department.to_string(), e.agent_name.to_string()))
                .collect()
        };
        let link = PbxLink::at(true, domain::now());
        // (change, view after, previous department recorded)
        let rows = [
            (
                Change::Created(record("Sales", "A")),
                vec![("Sales", "A")],
                None,
            ),
            (
                Change::Updated(record("Sales", "B")),
                vec![("Sales", "B")],
                None,
            ),
            (
                Change::Updated(record("Support", "B")),
                vec![("Support", "B")],
                Some("Sales"),
            ),
            (
                Change::StatusUpdated(record("Support", "B")),
                vec![("Support", "B")],
                None,
            ),
            (Change::PbxLink(link.clone()), vec![("Support", "B")], None),
            (
                Change::Deleted {
                    id: RecordId::from_bytes([7; 12]),
                    department: Department::parse("Support").expect("dept"),
                },
                vec![],
                None,
            ),
            // Deleting what is not there still publishes, and changes nothing.
            (
                Change::Deleted {
                    id: RecordId::from_bytes([7; 12]),
                    department: Department::parse("Support").expect("dept"),
                },
                vec![],
                None,
            ),
        ];
        let (_, mut sub) = hub.subscribe(None);
        for (i, (change, want, previous)) in rows.into_iter().enumerate() {
            let seq = hub.publish(change);
            assert_eq!(seq, i as u64 + 1);
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(d, n)| (d.to_owned(), n.to_owned()))
                .collect();
            assert_eq!(view(&hub), want, "row {i}");
            let Some(crate::Delivery::Changes(batch)) = sub.try_recv() else {
                panic!("row {i}: a change expected");
            };
            assert_eq!(
                batch[0].previous_department().map(Department::as_str),
                previous,
                "row {i}"
            );
        }
        assert_eq!(hub.pbx_link(), link);
    }
}
