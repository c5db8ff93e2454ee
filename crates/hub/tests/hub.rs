//! The hub's behaviour through its public API: ordering, snapshots, resume, filters, slow
//! subscribers, wake-ups, and seeded and threaded stress tests of the delivery invariant.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use domain::{
    AgentName, Department, Extension, ExtensionNumber, ExtensionState, NewExtension, RecordId,
    Timestamp,
};
use hub::{
    Change, Delivery, Hub, HubConfig, PbxLink, Resume, SequencedChange, ServerMessage, Snapshot,
    Subscription,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEPARTMENTS: [&str; 3] = ["Sales", "Support", "Billing"];

fn dept(name: &str) -> Department {
    Department::parse(name).expect("department")
}

fn time(secs: i64) -> Timestamp {
    Timestamp::from_timestamp(1_780_000_000 + secs, 0).expect("time")
}

/// Extension number `n` (as `1000 + n`) in department `d`, with a stable id derived from `n`.
fn ext(n: u32, d: &str) -> Extension {
    let mut id = [0u8; 12];
    id[8..].copy_from_slice(&n.to_be_bytes());
    Extension::create(
        RecordId::from_bytes(id),
        NewExtension {
            extension: ExtensionNumber::parse(&(1000 + n).to_string()).expect("number"),
            agent_name: AgentName::parse(&format!("Agent {n}")).expect("name"),
            department: dept(d),
            is_active: true,
        },
        time(0),
    )
}

/// The record with a new status code reported at `at`.
fn with_status(mut e: Extension, code: i32, at: Timestamp) -> Extension {
    let state = ExtensionState::from_code(code);
    e.status_code = state.code();
    e.device_state = state.device_state();
    e.status = state.presence();
    e.last_status_change = Some(at);
    e.last_seen = Some(at);
    e
}

fn config(ring_capacity: usize, subscriber_queue: usize) -> HubConfig {
    HubConfig {
        ring_capacity,
        ring_bytes: usize::MAX,
        subscriber_queue,
    }
}

fn seqs(changes: &[Arc<SequencedChange>]) -> Vec<u64> {
    changes.iter().map(|c| c.seq()).collect()
}

/// The test's own account of what the hub should hold: the view, the link, and every change
/// published with the department its extension was in before.
struct Model {
    view: BTreeMap<RecordId, Extension>,
    link: PbxLink,
    start: u64,
    log: Vec<(Change, Option<Department>)>,
}

impl Model {
    fn new(initial: &[Extension], start: u64) -> Self {
        Self {
            view: initial.iter().map(|e| (e.id.clone(), e.clone())).collect(),
            link: PbxLink::unknown(),
            start,
            log: Vec::new(),
        }
    }

    fn last_seq(&self) -> u64 {
        self.start + self.log.len() as u64
    }

    fn publish(&mut self, hub: &Hub, change: Change) -> u64 {
        let previous = match &change {
            Change::Deleted { id, .. } => self.view.remove(id).map(|e| e.department),
            Change::PbxLink(link) => {
                self.link = link.clone();
                None
            }
            Change::StatusUpdated(e) | Change::Created(e) | Change::Updated(e) => self
                .view
                .insert(e.id.clone(), e.clone())
                .map(|old| old.department),
        };
        self.log.push((change.clone(), previous));
        let seq = hub.publish(change);
        assert_eq!(seq, self.last_seq(), "sequence numbers rise by exactly one");
        seq
    }

    /// The change with sequence number `seq`.
    fn change(&self, seq: u64) -> &(Change, Option<Department>) {
        let i = usize::try_from(seq - self.start - 1).expect("index");
        &self.log[i]
    }

    /// Whether a subscriber limited to `filter` must see change `seq`.
    fn concerns(&self, seq: u64, filter: Option<&Department>) -> bool {
        let (change, previous) = self.change(seq);
        match (filter, change.department()) {
            (None, _) | (_, None) => true,
            (Some(f), Some(d)) => d == f || previous.as_ref() == Some(f),
        }
    }

    fn view_of(&self, filter: Option<&Department>) -> BTreeMap<RecordId, Extension> {
        self.view
            .iter()
            .filter(|(_, e)| filter.is_none_or(|f| e.department == *f))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A subscriber as a browser would be: a view built from a snapshot and the deltas after it,
/// checking on every delivery that nothing was skipped or repeated.
struct Client {
    sub: Subscription,
    filter: Option<Department>,
    /// The last sequence number applied (the snapshot's, or a change's).
    last: u64,
    view: BTreeMap<RecordId, Extension>,
    link: PbxLink,
    resyncs: usize,
    changes_seen: usize,
}

impl Client {
    fn new(snapshot: Snapshot, sub: Subscription) -> Self {
        let filter = sub.filter().cloned();
        let mut client = Self {
            sub,
            filter,
            last: 0,
            view: BTreeMap::new(),
            link: PbxLink::unknown(),
            resyncs: 0,
            changes_seen: 0,
        };
        client.load(snapshot);
        client
    }

    fn subscribe(hub: &Hub, filter: Option<Department>) -> Self {
        let (snapshot, sub) = hub.subscribe(filter);
        Self::new(snapshot, sub)
    }

    fn load(&mut self, snapshot: Snapshot) {
        assert!(snapshot.seq >= self.last, "a snapshot never goes back");
        if let Some(f) = &self.filter {
            assert!(snapshot.extensions.iter().all(|e| e.department == *f));
        }
        // The snapshot's text is what the client would parse.
        let ServerMessage::Snapshot {
            seq,
            extensions,
            pbx_link,
        } = serde_json::from_str(&snapshot.to_json()).expect("snapshot parses")
        else {
            panic!("not a snapshot");
        };
        assert_eq!(seq, snapshot.seq);
        self.last = seq;
        self.view = extensions.into_iter().map(|e| (e.id.clone(), e)).collect();
        self.link = pbx_link;
    }

    /// Applies one delivery; `model` checks that a filtered client skipped only changes that
    /// are not its business.
    fn apply(&mut self, delivery: Delivery, model: Option<&Model>) {
        match delivery {
            Delivery::Resync(snapshot) => {
                self.resyncs += 1;
                self.load(snapshot);
            }
            Delivery::Changes(changes) => {
                assert!(!changes.is_empty(), "a delivery holds at least one change");
                self.apply_changes(&changes, model);
            }
        }
    }

    fn apply_changes(&mut self, changes: &[Arc<SequencedChange>], model: Option<&Model>) {
        for c in changes {
            let seq = c.seq();
            assert!(seq > self.last, "duplicate or reordered change {seq}");
            if self.filter.is_none() {
                assert_eq!(seq, self.last + 1, "gap before change {seq}");
            }
            if let Some(model) = model {
                for skipped in self.last + 1..seq {
                    assert!(
                        !model.concerns(skipped, self.filter.as_ref()),
                        "change {skipped} was lost by a client filtered to {:?}",
                        self.filter
                    );
                }
                assert!(model.concerns(seq, self.filter.as_ref()));
            }
            assert!(c.concerns(self.filter.as_ref()));
            self.apply_message(serde_json::from_str(c.json()).expect("change parses"));
        }
    }

    fn apply_message(&mut self, message: ServerMessage) {
        self.changes_seen += 1;
        self.last = message.seq();
        match message {
            ServerMessage::ExtensionStatusUpdated { extension, .. }
            | ServerMessage::ExtensionCreated { extension, .. }
            | ServerMessage::ExtensionUpdated { extension, .. } => {
                // A filtered client drops a record that moved out of its department.
                if self
                    .filter
                    .as_ref()
                    .is_none_or(|f| extension.department == *f)
                {
                    self.view.insert(extension.id.clone(), extension);
                } else {
                    self.view.remove(&extension.id);
                }
            }
            ServerMessage::ExtensionDeleted { id, .. } => {
                self.view.remove(&id);
            }
            ServerMessage::PbxLink {
                connected, since, ..
            } => self.link = PbxLink { connected, since },
            ServerMessage::Snapshot { .. } => panic!("snapshots come as Resync"),
        }
    }

    /// Reads everything available now.
    fn drain(&mut self, model: Option<&Model>) {
        while let Some(delivery) = self.sub.try_recv() {
            self.apply(delivery, model);
        }
    }

    fn assert_matches(&self, model: &Model) {
        assert_eq!(self.view, model.view_of(self.filter.as_ref()));
        assert_eq!(self.link, model.link);
    }
}

fn initial(n: u32) -> Vec<Extension> {
    (0..n)
        .map(|i| ext(i, DEPARTMENTS[i as usize % DEPARTMENTS.len()]))
        .collect()
}

#[test]
fn subscribe_then_every_change_in_order() {
    let start = initial(6);
    let hub = Hub::starting_at(HubConfig::default(), start.clone(), PbxLink::unknown(), 100);
    let mut model = Model::new(&start, 100);
    model.publish(&hub, Change::PbxLink(PbxLink::at(true, time(1))));
    let mut client = Client::subscribe(&hub, None);
    assert_eq!(client.last, 101);
    client.assert_matches(&model);

    let changes = [
        Change::StatusUpdated(with_status(ext(1, "Support"), 1, time(2))),
        Change::Created(ext(10, "Sales")),
        Change::Updated(ext(2, "Sales")),
        Change::Deleted {
            id: ext(3, "Sales").id,
            department: dept("Sales"),
        },
        Change::PbxLink(PbxLink::at(false, time(3))),
    ];
    for change in changes {
        model.publish(&hub, change);
    }
    let Some(Delivery::Changes(batch)) = client.sub.try_recv() else {
        panic!("changes expected");
    };
    assert_eq!(seqs(&batch), [102, 103, 104, 105, 106]);
    client.apply_changes(&batch, Some(&model));
    client.assert_matches(&model);
    assert!(client.sub.try_recv().is_none());
    assert_eq!(hub.last_seq(), 106);
    assert_eq!(hub.pbx_link(), PbxLink::at(false, time(3)));
    let m = hub.metrics();
    assert_eq!((m.subscribers, m.published, m.last_seq), (1, 6, 106));
}

#[test]
fn snapshots_are_ordered_filtered_and_carry_the_link() {
    let hub = Hub::starting_at(HubConfig::default(), initial(7), PbxLink::unknown(), 0);
    hub.publish(Change::PbxLink(PbxLink::at(true, time(5))));
    let (all, _sub) = hub.subscribe(None);
    let numbers: Vec<&str> = all
        .extensions
        .iter()
        .map(|e| e.extension.as_str())
        .collect();
    assert_eq!(
        numbers,
        ["1000", "1001", "1002", "1003", "1004", "1005", "1006"]
    );
    assert_eq!(all.pbx_link, PbxLink::at(true, time(5)));
    assert_eq!(all.seq, 1);
    let (support, sub) = hub.subscribe(Some(dept("Support")));
    let numbers: Vec<&str> = support
        .extensions
        .iter()
        .map(|e| e.extension.as_str())
        .collect();
    assert_eq!(numbers, ["1001", "1004"]);
    assert_eq!(support.pbx_link, all.pbx_link);
    assert_eq!(sub.filter(), Some(&dept("Support")));
    assert_eq!(hub.snapshot(None), all);
}

#[test]
fn batches_respect_the_limit() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let (_, mut sub) = hub.subscribe(None);
    sub.set_max_batch(4);
    for i in 0..10 {
        hub.publish(Change::StatusUpdated(with_status(
            ext(0, "Sales"),
            1,
            time(i),
        )));
    }
    let mut sizes = Vec::new();
    while let Some(Delivery::Changes(batch)) = sub.try_recv() {
        sizes.push(batch.len());
    }
    assert_eq!(sizes, [4, 4, 2]);
}

#[test]
fn department_filters_see_moves_from_both_sides() {
    let start = initial(3);
    let hub = Hub::starting_at(HubConfig::default(), start.clone(), PbxLink::unknown(), 0);
    let mut model = Model::new(&start, 0);
    let mut clients: Vec<Client> = [None, Some("Sales"), Some("Support"), Some("Billing")]
        .into_iter()
        .map(|d| Client::subscribe(&hub, d.map(dept)))
        .collect();
    // Extension 0 moves from Sales to Support, then Support gets a status, Billing a
    // deletion, and everyone a link change.
    model.publish(&hub, Change::Updated(ext(0, "Support")));
    model.publish(
        &hub,
        Change::StatusUpdated(with_status(ext(0, "Support"), 4, time(1))),
    );
    model.publish(
        &hub,
        Change::Deleted {
            id: ext(2, "Billing").id,
            department: dept("Billing"),
        },
    );
    model.publish(&hub, Change::PbxLink(PbxLink::at(true, time(2))));
    let mut seen = Vec::new();
    for client in &mut clients {
        let before = client.changes_seen;
        client.drain(Some(&model));
        client.assert_matches(&model);
        seen.push(client.changes_seen - before);
    }
    // all: 4; Sales: the move away and the link; Support: the move in, the status, the link;
    // Billing: the deletion and the link.
    assert_eq!(seen, [4, 2, 3, 2]);
}

#[test]
fn a_status_update_racing_a_move_reaches_the_old_department() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let (_, mut sales) = hub.subscribe(Some(dept("Sales")));
    // The record arrives in a status update already in its new department, without an edit
    // message first (an AMI write that read the record after the edit): the hub still knows
    // it was in Sales.
    hub.publish(Change::StatusUpdated(with_status(
        ext(0, "Support"),
        1,
        time(1),
    )));
    let Some(Delivery::Changes(batch)) = sales.try_recv() else {
        panic!("Sales must hear that its extension left");
    };
    assert_eq!(batch[0].previous_department(), Some(&dept("Sales")));
}

/// (resume after, filter, expected: `Some(seqs)` for changes, `None` for a snapshot).
type ResumeRow<'a> = (u64, Option<&'a str>, Option<Vec<u64>>);

#[test]
fn resume_inside_and_outside_the_ring() {
    let start = initial(3);
    let hub = Hub::starting_at(config(8, 4), start.clone(), PbxLink::unknown(), 1000);
    let mut model = Model::new(&start, 1000);
    for i in 0..20 {
        let n = u32::try_from(i % 3).expect("small");
        model.publish(
            &hub,
            Change::StatusUpdated(with_status(
                ext(n, DEPARTMENTS[n as usize]),
                i32::from(i % 2 == 0),
                time(i),
            )),
        );
    }
    let last = model.last_seq();
    assert_eq!(last, 1020);
    let rows: Vec<ResumeRow<'_>> = vec![
        (last, None, Some(vec![])),
        (last - 3, None, Some(vec![1018, 1019, 1020])),
        // The ring holds 8: resuming after the 8th newest change is the oldest that works,
        // even though it is more than the subscriber queue (4) behind.
        (last - 8, None, Some((1013..=1020).collect())),
        (last - 9, None, None),
        (0, None, None),
        (1000, None, None),
        // A number the hub never issued (a client of an earlier server run).
        (last + 1, None, None),
        (u64::MAX, None, None),
        // Filtered: only Support's changes (extension 1, every third one).
        (last - 8, Some("Support"), Some(vec![1014, 1017, 1020])),
        (last - 9, Some("Support"), None),
    ];
    let mut from_ring = 0;
    let mut with_snapshot = 0;
    for (after, filter, want) in rows {
        let filter = filter.map(dept);
        let resume = hub.resume(after, filter.clone());
        assert_eq!(resume.is_snapshot(), want.is_none(), "after {after}");
        match (resume, want) {
            (Resume::Changes(changes, sub), Some(want)) => {
                from_ring += 1;
                assert_eq!(seqs(&changes), want, "after {after}");
                assert_eq!(sub.next_seq(), last + 1);
                // The changes are the very ones that were published, in order.
                let mut client = Client {
                    sub,
                    filter: filter.clone(),
                    last: after,
                    view: BTreeMap::new(),
                    link: PbxLink::unknown(),
                    resyncs: 0,
                    changes_seen: 0,
                };
                client.apply_changes(&changes, Some(&model));
            }
            (Resume::Snapshot(snapshot, sub), None) => {
                with_snapshot += 1;
                let client = Client::new(snapshot, sub);
                assert_eq!(client.last, last);
                client.assert_matches(&model);
            }
            (got, want) => panic!("after {after}: got {got:?}, want {want:?}"),
        }
    }
    let m = hub.metrics();
    assert_eq!(m.resumes_from_ring, from_ring);
    assert_eq!(m.resumes_with_snapshot, with_snapshot);
    assert_eq!(m.subscribers, 0, "every subscription was dropped");
}

#[test]
fn a_resumed_subscription_goes_on_after_the_changes() {
    let hub = Hub::starting_at(config(16, 16), initial(2), PbxLink::unknown(), 0);
    hub.publish(Change::PbxLink(PbxLink::at(true, time(1))));
    hub.publish(Change::PbxLink(PbxLink::at(false, time(2))));
    let Resume::Changes(changes, mut sub) = hub.resume(1, None) else {
        panic!("the ring holds change 2");
    };
    assert_eq!(seqs(&changes), [2]);
    assert!(sub.try_recv().is_none());
    hub.publish(Change::PbxLink(PbxLink::at(true, time(3))));
    let Some(Delivery::Changes(next)) = sub.try_recv() else {
        panic!("change 3 expected");
    };
    assert_eq!(seqs(&next), [3]);
}

#[test]
fn a_new_hub_numbers_from_the_clock() {
    // Sequence numbers start at the Unix time in microseconds, so a restarted server's numbers
    // lie beyond those of the run before, and a client's old number gets a snapshot.
    let before = domain::now().timestamp_micros();
    let hub = Hub::new(HubConfig::default(), initial(1), PbxLink::unknown());
    let after = domain::now().timestamp_micros();
    let start = i64::try_from(hub.last_seq()).expect("fits");
    assert!(
        (before..=after).contains(&start),
        "{before} <= {start} <= {after}"
    );
    assert!(hub.last_seq() < 1 << 53, "JavaScript reads it exactly");
    assert!(hub.resume(hub.last_seq() - 1, None).is_snapshot());
    assert!(hub.resume(1_000, None).is_snapshot());
    assert!(!hub.resume(hub.last_seq(), None).is_snapshot());
}

#[test]
fn lag_limit_is_the_smaller_of_queue_and_ring() {
    // (ring, queue, changes published while not reading, resynced)
    let rows = [
        (16, 4, 4, false),
        (16, 4, 5, true),
        (4, 16, 4, false),
        (4, 16, 5, true),
        (0, 0, 1, false),
        (0, 0, 2, true),
    ];
    for (ring, queue, published, resynced) in rows {
        let hub = Hub::starting_at(config(ring, queue), initial(1), PbxLink::unknown(), 0);
        let (_, mut sub) = hub.subscribe(None);
        for i in 0..published {
            hub.publish(Change::PbxLink(PbxLink::at(true, time(i))));
        }
        let got = sub.try_recv().expect("something to deliver");
        assert_eq!(
            matches!(got, Delivery::Resync(_)),
            resynced,
            "ring {ring}, queue {queue}, published {published}"
        );
        assert_eq!(hub.metrics().lag_resyncs, u64::from(resynced));
    }
}

#[test]
fn the_ring_holds_at_most_its_bytes_and_always_the_latest_change() {
    let link = |i: i64| Change::PbxLink(PbxLink::at(true, time(i)));
    // Every link message of these times and numbers (101 to 110) has the same length.
    let probe = Hub::starting_at(config(64, 64), initial(1), PbxLink::unknown(), 100);
    let (_, mut sub) = probe.subscribe(None);
    probe.publish(link(0));
    let Some(Delivery::Changes(one)) = sub.try_recv() else {
        panic!("a change expected");
    };
    let size = one[0].text_len();
    assert_eq!(size, one[0].json().len());

    // (byte budget, changes published, oldest resumable)
    let rows = [
        (3 * size, 10, 108),
        (3 * size + size / 2, 10, 108),
        (3 * size - 1, 10, 109),
        // Less than one change: the latest is kept anyway.
        (1, 10, 110),
        (usize::MAX, 10, 101),
    ];
    for (ring_bytes, published, oldest) in rows {
        let cfg = HubConfig {
            ring_capacity: 64,
            ring_bytes,
            subscriber_queue: 64,
        };
        let hub = Hub::starting_at(cfg, initial(1), PbxLink::unknown(), 100);
        let (_, mut idle) = hub.subscribe(None);
        for i in 0..published {
            hub.publish(link(i));
        }
        let Resume::Changes(changes, _) = hub.resume(oldest - 1, None) else {
            panic!("budget {ring_bytes}: the ring holds {oldest}..");
        };
        assert_eq!(
            seqs(&changes),
            (oldest..=110).collect::<Vec<_>>(),
            "budget {ring_bytes}"
        );
        if oldest > 101 {
            assert!(
                hub.resume(oldest - 2, None).is_snapshot(),
                "budget {ring_bytes}: {} was evicted",
                oldest - 1
            );
        }
        // A subscriber whose unread changes left the ring is resynced, whatever its queue.
        let got = idle.try_recv().expect("something to deliver");
        assert_eq!(
            matches!(got, Delivery::Resync(_)),
            oldest > 101,
            "budget {ring_bytes}"
        );
    }
}

/// One subscriber never reads while ten others read everything: the publisher finishes, the
/// readers see every change, and the idle one is cut over to a snapshot when it finally reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_subscriber_among_fast_ones() {
    const READERS: usize = 10;
    const BURST: u64 = 48;
    const ROUNDS: u64 = 30;
    let start = initial(30);
    let hub = Hub::starting_at(config(256, 64), start, PbxLink::unknown(), 0);
    let (slow_snapshot, slow) = hub.subscribe(None);
    let barrier = Arc::new(tokio::sync::Barrier::new(READERS + 1));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (snapshot, sub) = hub.subscribe(None);
        let barrier = barrier.clone();
        readers.push(tokio::spawn(async move {
            let mut client = Client::new(snapshot, sub);
            for round in 1..=ROUNDS {
                while client.last < round * BURST {
                    let delivery = client.sub.recv().await;
                    client.apply(delivery, None);
                }
                barrier.wait().await;
            }
            client
        }));
    }
    // The publisher goes in bursts smaller than the queue and waits for the fast readers (not
    // the slow one) between bursts, so that the fast ones cannot fall behind by chance.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..ROUNDS {
        for _ in 0..BURST {
            let n = rng.random_range(0..30u32);
            let code = [0, 1, 2, 4, 8][rng.random_range(0..5)];
            let record = with_status(
                ext(n, DEPARTMENTS[n as usize % 3]),
                code,
                time(i64::from(n)),
            );
            hub.publish(Change::StatusUpdated(record));
        }
        barrier.wait().await;
    }
    let last = hub.last_seq();
    assert_eq!(last, ROUNDS * BURST);
    let current: BTreeMap<_, _> = hub
        .snapshot(None)
        .extensions
        .iter()
        .map(|e| (e.id.clone(), (**e).clone()))
        .collect();
    for reader in readers {
        let client = reader.await.expect("reader");
        assert_eq!(client.resyncs, 0);
        assert_eq!(client.changes_seen as u64, last);
        assert_eq!(client.view, current);
    }
    assert_eq!(hub.metrics().lag_resyncs, 0);

    // The slow one finally reads: one resync to the current view, then live again.
    let mut slow = Client::new(slow_snapshot, slow);
    let delivery = slow.sub.recv().await;
    assert!(matches!(delivery, Delivery::Resync(_)));
    slow.apply(delivery, None);
    assert_eq!((slow.last, slow.resyncs), (last, 1));
    assert_eq!(slow.view, current);
    assert_eq!(hub.metrics().lag_resyncs, 1);
    hub.publish(Change::PbxLink(PbxLink::at(true, time(99))));
    let delivery = slow.sub.recv().await;
    slow.apply(delivery, None);
    assert_eq!((slow.last, slow.resyncs), (last + 1, 1));
}

/// Counts how often it was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_parked_subscriber_is_woken_once_until_it_polls_again() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let counters: Vec<Arc<CountingWaker>> = (0..3).map(|_| Arc::default()).collect();
    let mut subs: Vec<Subscription> = (0..4).map(|_| hub.subscribe(None).1).collect();
    let poll = |sub: &mut Subscription, counter: &Arc<CountingWaker>| {
        let waker = Waker::from(counter.clone());
        sub.poll_recv(&mut Context::from_waker(&waker))
    };
    // Three subscribers park (one of them polls twice); the fourth never polls.
    for (sub, counter) in subs.iter_mut().zip(&counters) {
        assert!(poll(sub, counter).is_pending());
    }
    assert!(poll(&mut subs[0], &counters[0]).is_pending());
    hub.publish(Change::PbxLink(PbxLink::at(true, time(1))));
    hub.publish(Change::PbxLink(PbxLink::at(false, time(2))));
    let woken: Vec<usize> = counters
        .iter()
        .map(|c| c.0.load(Ordering::SeqCst))
        .collect();
    assert_eq!(woken, [1, 1, 1], "each parked subscriber is woken once");
    // Polling again delivers both changes at once, then parks again.
    for (sub, counter) in subs.iter_mut().zip(&counters) {
        let Poll::Ready(Delivery::Changes(batch)) = poll(sub, counter) else {
            panic!("changes expected");
        };
        assert_eq!(seqs(&batch), [1, 2]);
        assert!(poll(sub, counter).is_pending());
    }
    hub.publish(Change::PbxLink(PbxLink::at(true, time(3))));
    let woken: Vec<usize> = counters
        .iter()
        .map(|c| c.0.load(Ordering::SeqCst))
        .collect();
    assert_eq!(woken, [2, 2, 2]);
    let Some(Delivery::Changes(batch)) = subs[3].try_recv() else {
        panic!("the idle subscriber still has everything");
    };
    assert_eq!(seqs(&batch), [1, 2, 3]);
}

#[test]
fn a_watch_is_ready_once_per_run_of_publishes_and_woken_once() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 10);
    hub.publish(Change::PbxLink(PbxLink::at(true, time(1))));
    // Made after change 11: only later ones make it ready.
    let mut watch = hub.watch();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(watch.poll_published(&mut cx).is_pending());
    assert!(watch.poll_published(&mut cx).is_pending(), "listed once");
    hub.publish(Change::PbxLink(PbxLink::at(false, time(2))));
    hub.publish(Change::PbxLink(PbxLink::at(true, time(3))));
    assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken once for both");
    assert_eq!(watch.poll_published(&mut cx), Poll::Ready(13));
    assert!(watch.poll_published(&mut cx).is_pending());
    hub.publish(Change::PbxLink(PbxLink::at(false, time(4))));
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    assert_eq!(watch.poll_published(&mut cx), Poll::Ready(14));
    // A watch is not a subscriber, and a dropped one is no longer woken.
    assert!(watch.poll_published(&mut cx).is_pending());
    assert_eq!(hub.metrics().subscribers, 0);
    drop(watch);
    hub.publish(Change::PbxLink(PbxLink::at(true, time(5))));
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
}

#[test]
fn a_subscription_polled_from_another_task_wakes_that_task() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let (_, mut sub) = hub.subscribe(None);
    let (first, second) = (
        Arc::new(CountingWaker::default()),
        Arc::new(CountingWaker::default()),
    );
    for counter in [&first, &second] {
        let waker = Waker::from(counter.clone());
        assert!(sub.poll_recv(&mut Context::from_waker(&waker)).is_pending());
    }
    hub.publish(Change::PbxLink(PbxLink::at(true, time(1))));
    assert_eq!(
        first.0.load(Ordering::SeqCst),
        0,
        "the old waker was replaced"
    );
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
}

#[test]
fn subscribers_that_leave_while_parked_are_forgotten() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let stay = Arc::new(CountingWaker::default());
    let (_, mut staying) = hub.subscribe(None);
    let waker = Waker::from(stay.clone());
    assert!(
        staying
            .poll_recv(&mut Context::from_waker(&waker))
            .is_pending()
    );
    // Many subscribers park and leave while nothing is published. The hub compacts its list
    // by waking the ones still there, which park again.
    for _ in 0..1000 {
        let (_, mut sub) = hub.subscribe(None);
        assert!(
            sub.poll_recv(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        drop(sub);
        if stay.0.load(Ordering::SeqCst) > 0 {
            stay.0.store(0, Ordering::SeqCst);
            assert!(
                staying
                    .poll_recv(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
    }
    assert_eq!(hub.metrics().subscribers, 1);
    hub.publish(Change::PbxLink(PbxLink::at(true, time(1))));
    assert_eq!(stay.0.load(Ordering::SeqCst), 1);
    assert!(matches!(staying.try_recv(), Some(Delivery::Changes(_))));
}

#[tokio::test]
async fn recv_wakes_on_publish() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let (_, mut sub) = hub.subscribe(None);
    let reader = tokio::spawn(async move {
        match sub.recv().await {
            Delivery::Changes(batch) => seqs(&batch),
            Delivery::Resync(_) => panic!("no resync expected"),
        }
    });
    // Let the reader park before publishing.
    tokio::task::yield_now().await;
    hub.publish(Change::PbxLink(PbxLink::at(true, time(1))));
    assert_eq!(reader.await.expect("reader"), [1]);
}

#[tokio::test(start_paused = true)]
async fn recv_is_cancel_safe() {
    let hub = Hub::starting_at(HubConfig::default(), initial(1), PbxLink::unknown(), 0);
    let (_, mut sub) = hub.subscribe(None);
    for round in 1..=3 {
        // A recv abandoned by a timeout (as in a select! with a shutdown signal) loses nothing.
        let timed_out = tokio::time::timeout(Duration::from_secs(30), sub.recv()).await;
        assert!(timed_out.is_err());
        hub.publish(Change::PbxLink(PbxLink::at(true, time(round))));
        let Delivery::Changes(batch) = sub.recv().await else {
            panic!("changes expected");
        };
        assert_eq!(seqs(&batch), [u64::try_from(round).expect("small")]);
    }
}

/// A random change to the model's current view.
fn random_change(rng: &mut StdRng, model: &Model, next_ext: &mut u32) -> Change {
    let depts = DEPARTMENTS;
    let existing: Vec<&Extension> = model.view.values().collect();
    let pick = rng.random_range(0..100);
    let at = time(rng.random_range(0..100_000));
    if existing.is_empty() || (pick < 6 && existing.len() < 40) {
        *next_ext += 1;
        return Change::Created(ext(*next_ext, depts[rng.random_range(0..3)]));
    }
    let e = existing[rng.random_range(0..existing.len())].clone();
    match pick {
        6..=13 => {
            let mut moved = e;
            moved.department = dept(depts[rng.random_range(0..3)]);
            Change::Updated(moved)
        }
        14..=18 => Change::Deleted {
            department: e.department.clone(),
            id: e.id,
        },
        19..=22 => Change::PbxLink(PbxLink::at(rng.random_bool(0.5), at)),
        _ => Change::StatusUpdated(with_status(
            e,
            [0, 1, 2, 4, 8, 16][rng.random_range(0..6)],
            at,
        )),
    }
}

/// Publish, subscribe, read, resume and leave, interleaved by a seeded generator in one
/// thread: every subscriber sees a gap-free, duplicate-free sequence (or, filtered, loses no
/// change of its department) unless it is explicitly resynced, every snapshot is the model's
/// view, and at the end every subscriber's view is the hub's.
#[test]
fn seeded_interleavings_keep_every_subscriber_exact() {
    for seed in [1, 2, 3, 4] {
        let mut rng = StdRng::seed_from_u64(seed);
        let ring = rng.random_range(8..64);
        let queue = rng.random_range(2..ring + 8);
        let start = initial(12);
        let hub = Hub::starting_at(config(ring, queue), start.clone(), PbxLink::unknown(), 50);
        let mut model = Model::new(&start, 50);
        let mut clients: Vec<Client> = Vec::new();
        let mut next_ext = 100;
        let (mut resyncs, mut resumes_from_ring, mut resumes_with_snapshot) = (0, 0, 0);
        let filters = [None, Some("Sales"), Some("Support"), Some("Billing")];
        for _ in 0..10_000 {
            match rng.random_range(0..100) {
                0..=44 => {
                    let change = random_change(&mut rng, &model, &mut next_ext);
                    model.publish(&hub, change);
                }
                45..=84 if !clients.is_empty() => {
                    let i = rng.random_range(0..clients.len());
                    let before = clients[i].resyncs;
                    if let Some(delivery) = clients[i].sub.try_recv() {
                        clients[i].apply(delivery, Some(&model));
                    }
                    if clients[i].resyncs > before {
                        resyncs += 1;
                        clients[i].assert_matches(&model);
                        assert_eq!(clients[i].last, model.last_seq());
                    }
                }
                // The number of clients stays small enough to keep the checks quick.
                85..=89 if clients.len() < 24 => {
                    let filter = filters[rng.random_range(0..filters.len())].map(dept);
                    let client = Client::subscribe(&hub, filter);
                    assert_eq!(client.last, model.last_seq());
                    client.assert_matches(&model);
                    clients.push(client);
                }
                90..=94 if !clients.is_empty() => {
                    // A client reconnects: it drops its subscription and resumes after the
                    // last change it applied.
                    let i = rng.random_range(0..clients.len());
                    let old = clients.swap_remove(i);
                    let (filter, last) = (old.filter.clone(), old.last);
                    let held = last >= model.last_seq().saturating_sub(ring as u64);
                    let (view, link) = (old.view.clone(), old.link.clone());
                    drop(old);
                    match hub.resume(last, filter.clone()) {
                        Resume::Changes(changes, sub) => {
                            assert!(held, "resume after {last} should have been a snapshot");
                            resumes_from_ring += 1;
                            let mut client = Client {
                                sub,
                                filter,
                                last,
                                view,
                                link,
                                resyncs: 0,
                                changes_seen: 0,
                            };
                            client.apply_changes(&changes, Some(&model));
                            client.assert_matches(&model);
                            clients.push(client);
                        }
                        Resume::Snapshot(snapshot, sub) => {
                            assert!(!held, "resume after {last} should have been changes");
                            resumes_with_snapshot += 1;
                            let client = Client::new(snapshot, sub);
                            client.assert_matches(&model);
                            clients.push(client);
                        }
                    }
                }
                95..=96 if !clients.is_empty() => {
                    let i = rng.random_range(0..clients.len());
                    clients.swap_remove(i);
                }
                97..=99 => {
                    // A resume with a number from nowhere.
                    let bogus = model.last_seq() + rng.random_range(1..1000);
                    assert!(hub.resume(bogus, None).is_snapshot());
                    resumes_with_snapshot += 1;
                }
                _ => {}
            }
        }
        for client in &mut clients {
            let before = client.resyncs;
            client.drain(Some(&model));
            resyncs += client.resyncs - before;
            client.assert_matches(&model);
        }
        let m = hub.metrics();
        assert_eq!(m.published as usize, model.log.len(), "seed {seed}");
        assert_eq!(m.subscribers as usize, clients.len(), "seed {seed}");
        assert_eq!(m.lag_resyncs, resyncs as u64, "seed {seed}");
        assert_eq!(m.resumes_from_ring, resumes_from_ring, "seed {seed}");
        assert_eq!(
            m.resumes_with_snapshot, resumes_with_snapshot,
            "seed {seed}"
        );
        // The run must have exercised every path.
        assert!(resyncs > 0 && resumes_from_ring > 0, "seed {seed}");
        let hub_view: BTreeMap<_, _> = hub
            .snapshot(None)
            .extensions
            .iter()
            .map(|e| (e.id.clone(), (**e).clone()))
            .collect();
        assert_eq!(hub_view, model.view, "seed {seed}");
    }
}

/// Real threads: three publishers and six readers (two of them filtered, one of them slow and
/// resuming now and then) race. Whatever the interleaving, each reader sees every change or an
/// explicit resync, and ends with the hub's view.
#[test]
fn threads_publishing_and_reading_at_once() {
    const PUBLISHERS: u32 = 3;
    const PER_PUBLISHER: u32 = 10_000;
    let start = initial(30);
    let hub = Hub::starting_at(config(512, 128), start, PbxLink::unknown(), 0);
    let done = Arc::new(AtomicBool::new(false));
    let final_seq = Arc::new(AtomicU64::new(u64::MAX));
    let finished: Arc<Mutex<Vec<Client>>> = Arc::default();
    let readers: Vec<_> = [
        (None, 0),
        (None, 0),
        (None, 7),
        (Some("Sales"), 0),
        (Some("Billing"), 3),
        (None, 1),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (filter, slowness))| {
        let hub = hub.clone();
        let done = done.clone();
        let final_seq = final_seq.clone();
        let finished = finished.clone();
        std::thread::spawn(move || {
            let mut client = Client::subscribe(&hub, filter.map(dept));
            let mut rng = StdRng::seed_from_u64(i as u64);
            let mut reads = 0u64;
            loop {
                if slowness > 0 && rng.random_range(0..slowness) == 0 {
                    for _ in 0..rng.random_range(0..2000) {
                        std::hint::spin_loop();
                    }
                }
                match client.sub.try_recv() {
                    Some(delivery) => {
                        reads += 1;
                        client.apply(delivery, None);
                        // Now and then the slowest reader reconnects and resumes.
                        if slowness == 7 && reads.is_multiple_of(50) {
                            let last = client.last;
                            let resume = hub.resume(last, client.filter.clone());
                            match resume {
                                Resume::Changes(changes, sub) => {
                                    client.sub = sub;
                                    client.apply_changes(&changes, None);
                                }
                                Resume::Snapshot(snapshot, sub) => {
                                    client.sub = sub;
                                    client.resyncs += 1;
                                    client.load(snapshot);
                                }
                            }
                        }
                    }
                    None if done.load(Ordering::SeqCst)
                        && client.sub.next_seq() > final_seq.load(Ordering::SeqCst) =>
                    {
                        break;
                    }
                    None => std::thread::yield_now(),
                }
            }
            finished.lock().expect("lock").push(client);
        })
    })
    .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + u64::from(p));
                let mut last = 0;
                // Each publisher owns ten extensions, so their records stay consistent.
                for i in 0..PER_PUBLISHER {
                    let n = p * 10 + rng.random_range(0..10);
                    let d = DEPARTMENTS[rng.random_range(0..3)];
                    let record = with_status(ext(n, d), [0, 1, 4][rng.random_range(0..3)], time(0));
                    let change = if i.is_multiple_of(97) {
                        Change::Updated(record)
                    } else {
                        Change::StatusUpdated(record)
                    };
                    let seq = hub.publish(change);
                    assert!(seq > last, "a publisher's own changes are ordered");
                    last = seq;
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().expect("publisher");
    }
    final_seq.store(hub.last_seq(), Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().expect("reader");
    }
    let expected = u64::from(PUBLISHERS * PER_PUBLISHER);
    assert_eq!(hub.last_seq(), expected);
    for client in finished.lock().expect("lock").iter() {
        let view: BTreeMap<_, _> = hub
            .snapshot(client.filter.as_ref())
            .extensions
            .iter()
            .map(|e| (e.id.clone(), (**e).clone()))
            .collect();
        assert_eq!(client.view, view, "filter {:?}", client.filter);
        if client.filter.is_none() && client.resyncs == 0 {
            assert_eq!(client.changes_seen as u64, expected);
        }
    }
}

/// Readers awaiting `recv` on a multi-threaded runtime while publishers run: every reader ends
/// with the hub's view, which exercises parking and waking under real concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_readers_keep_up_or_resync() {
    const READERS: usize = 50;
    let hub = Hub::starting_at(config(256, 64), initial(20), PbxLink::unknown(), 0);
    let end = PbxLink::at(true, time(1_000_000));
    let mut tasks = Vec::new();
    for i in 0..READERS {
        let (snapshot, sub) = hub.subscribe(None);
        let end = end.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(snapshot, sub);
            client.sub.set_max_batch(1 + i % 8);
            while client.link != end {
                let delivery = client.sub.recv().await;
                client.apply(delivery, None);
            }
            client
        }));
    }
    let publishers: Vec<_> = (0..2u32)
        .map(|p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..5_000u32 {
                    let n = p * 10 + i % 10;
                    let record = with_status(ext(n, "Sales"), i32::from(i % 3 == 0), time(0));
                    hub.publish(Change::StatusUpdated(record));
                    if i.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    // The last change tells the readers to stop.
    hub.publish(Change::PbxLink(end));
    let current = hub.snapshot(None);
    for task in tasks {
        let client = task.await.expect("reader");
        assert_eq!(client.last, current.seq);
        let view: BTreeMap<_, _> = current
            .extensions
            .iter()
            .map(|e| (e.id.clone(), (**e).clone()))
            .collect();
        assert_eq!(client.view, view);
    }
    assert_eq!(hub.metrics().subscribers, 0);
}

/// The next changes of `sub`, which must have some.
fn changes(sub: &mut Subscription) -> Vec<Arc<SequencedChange>> {
    match sub.try_recv() {
        Some(Delivery::Changes(batch)) => batch,
        other => panic!("changes expected, got {other:?}"),
    }
}

#[test]
fn subscribers_at_the_same_cursor_share_one_frame() {
    let hub = Hub::starting_at(HubConfig::default(), initial(6), PbxLink::unknown(), 0);
    let (_, mut a) = hub.subscribe(None);
    let (_, mut b) = hub.subscribe(None);
    let (_, mut sales) = hub.subscribe(Some(dept("Sales")));
    let (_, mut support) = hub.subscribe(Some(dept("Support")));
    let (_, mut late) = hub.subscribe(None);
    hub.publish(Change::StatusUpdated(with_status(
        ext(0, "Sales"),
        1,
        time(1),
    )));
    // `late` reads the first change alone: a single change is its own shared text.
    let first = changes(&mut late);
    let frame = late.frame(&first);
    assert_eq!(frame, first[0].json());
    assert_eq!(frame.as_ptr(), first[0].json().as_ptr());
    for i in 1..6 {
        let d = DEPARTMENTS[i as usize % DEPARTMENTS.len()];
        hub.publish(Change::StatusUpdated(with_status(ext(i, d), 1, time(1))));
    }

    let (batch_a, batch_b) = (changes(&mut a), changes(&mut b));
    assert_eq!(seqs(&batch_a), [1, 2, 3, 4, 5, 6]);
    let (frame_a, frame_b) = (a.frame(&batch_a), b.frame(&batch_b));
    assert_eq!(frame_a, hub::render_frame(&batch_a));
    assert_eq!(frame_a.as_ptr(), frame_b.as_ptr(), "built once, shared");
    assert_eq!(hub.metrics().frames_shared, 1);

    // Other changes or another filter never get that frame.
    let rest = changes(&mut late);
    assert_eq!(seqs(&rest), [2, 3, 4, 5, 6]);
    assert_eq!(late.frame(&rest), hub::render_frame(&rest));
    let (batch_sales, batch_support) = (changes(&mut sales), changes(&mut support));
    assert_eq!(seqs(&batch_sales), [1, 4]);
    assert_eq!(seqs(&batch_support), [2, 5]);
    assert_eq!(sales.frame(&batch_sales), hub::render_frame(&batch_sales));
    assert_eq!(
        support.frame(&batch_support),
        hub::render_frame(&batch_support)
    );
    assert_eq!(hub.metrics().frames_shared, 1);
    let parsed = ServerMessage::parse_frame(&frame_a).expect("frame parses");
    assert_eq!(parsed.len(), 6);
}

/// `publish_at` takes only the next number; anything else publishes nothing and says what the
/// hub expected.
#[test]
fn publish_at_takes_only_the_next_number() {
    let hub = Hub::starting_at(HubConfig::default(), initial(3), PbxLink::unknown(), 50);
    let (_, mut sub) = hub.subscribe(None);
    let link = Change::PbxLink(PbxLink::at(true, time(1)));
    for wrong in [50, 52, 0, u64::MAX] {
        let e = hub
            .publish_at(wrong, link.clone())
            .expect_err("not the next number");
        assert_eq!((e.given, e.last), (wrong, 50));
        assert!(e.to_string().contains(&wrong.to_string()), "{e}");
    }
    assert!(sub.try_recv().is_none(), "nothing was published");
    assert_eq!(hub.publish_at(51, link), Ok(51));
    let changed = with_status(ext(1, "Support"), 2, time(2));
    assert_eq!(
        hub.publish_at(52, Change::StatusUpdated(changed.clone())),
        Ok(52)
    );
    let Some(Delivery::Changes(batch)) = sub.try_recv() else {
        panic!("changes expected");
    };
    assert_eq!(seqs(&batch), [51, 52]);
    assert_eq!(hub.record(&changed.id).as_deref(), Some(&changed));
    assert!(hub.record(&ext(99, "Sales").id).is_none());
    // Publishing on after `publish_at` goes on from its number.
    assert_eq!(hub.publish(Change::Created(ext(7, "Sales"))), 53);
}

/// `reset` starts the history over: every subscriber, however far it was, gets a snapshot of
/// the new view next, and so does any resume from before; a number not above the last is
/// refused and changes nothing.
#[test]
fn reset_cuts_every_subscriber_over_to_the_new_view() {
    let hub = Hub::starting_at(HubConfig::default(), initial(4), PbxLink::unknown(), 10);
    let (_, mut behind) = hub.subscribe(None);
    hub.publish(Change::Created(ext(20, "Sales")));
    let (_, mut current) = hub.subscribe(None);
    let (_, mut filtered) = hub.subscribe(Some(dept("Billing")));
    assert_eq!(hub.last_seq(), 11);

    let refused = hub.reset(11, initial(1), PbxLink::unknown());
    assert!(refused.is_err());
    assert_eq!(hub.snapshot(None).extensions.len(), 5, "nothing changed");

    let link = PbxLink::at(true, time(9));
    hub.reset(1_000, initial(2), link.clone())
        .expect("above the last number");
    assert_eq!(hub.last_seq(), 1_000);
    assert_eq!(hub.pbx_link(), link);
    for sub in [&mut behind, &mut current, &mut filtered] {
        let Some(Delivery::Resync(snapshot)) = sub.try_recv() else {
            panic!("a snapshot expected");
        };
        assert_eq!(snapshot.seq, 1_000);
        assert_eq!(snapshot.pbx_link, link);
        assert!(sub.try_recv().is_none());
    }
    assert!(hub.resume(11, None).is_snapshot());
    assert!(hub.resume(5, None).is_snapshot());
    // Changes go on from the new number and a resume from it works.
    assert_eq!(
        hub.publish_at(1_001, Change::Created(ext(30, "Sales"))),
        Ok(1_001)
    );
    let Resume::Changes(missed, _) = hub.resume(1_000, None) else {
        panic!("the ring holds 1001");
    };
    assert_eq!(seqs(&missed), [1_001]);
    let Some(Delivery::Changes(batch)) = current.try_recv() else {
        panic!("the change after the reset");
    };
    assert_eq!(seqs(&batch), [1_001]);
    let m = hub.metrics();
    assert_eq!((m.resets, m.last_seq), (1, 1_001));
    assert_eq!(hub.snapshot(None).extensions.len(), 3);
}

#[test]
fn subscribers_given_the_same_snapshot_share_one_text() {
    let hub = Hub::starting_at(HubConfig::default(), initial(6), PbxLink::unknown(), 0);
    let (snap_a, a) = hub.subscribe(None);
    let (snap_b, b) = hub.subscribe(None);
    let text_a = a.snapshot_text(&snap_a);
    let text_b = b.snapshot_text(&snap_b);
    assert_eq!(text_a, snap_a.to_json());
    assert_eq!(text_a.as_ptr(), text_b.as_ptr(), "built once, shared");
    assert_eq!(hub.metrics().snapshots_shared, 1);

    // Another filter, or the board after another change, is its own text.
    let (snap_sales, sales) = hub.subscribe(Some(dept("Sales")));
    let text_sales = sales.snapshot_text(&snap_sales);
    assert_eq!(text_sales, snap_sales.to_json());
    assert_ne!(text_sales, text_a);
    hub.publish(Change::StatusUpdated(with_status(
        ext(0, "Sales"),
        1,
        time(1),
    )));
    let (snap_c, c) = hub.subscribe(None);
    let text_c = c.snapshot_text(&snap_c);
    assert_eq!(text_c, snap_c.to_json());
    assert_ne!(text_c, text_a);
    assert_eq!(hub.metrics().snapshots_shared, 1);
    let Ok(parsed) = serde_json::from_str::<ServerMessage>(&text_c) else {
        panic!("a snapshot message");
    };
    assert_eq!(parsed.seq(), 1);
}
