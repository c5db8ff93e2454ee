//! Time in state: how long each extension (and each department) spent in each status, device
//! state, pause reason and on calls over a window, computed from the history in one pass.
//!
//! The rules (`docs/analytics.md` writes them for users):
//! * the window is half-open, `[from, to)`; a `to` after `now` is clipped to `now`; every
//!   interval is clipped to the window;
//! * time is *known* only while the server runs and the PBX link is up. Unknown time counts as
//!   status `unknown` and device state `UNKNOWN`, and never as paused or on a call;
//! * a `server_start` makes the link count as down until the next `pbx_link_up`; a
//!   `server_start` with no `server_stop` before it (a crash) means the server was not running
//!   from the last entry before the start (the last thing known) until the start. Before the
//!   first `server_start` of the history nothing is known;
//! * an extension with no status entry yet has code -1 (`unknown`, `UNKNOWN`), as a new record;
//! * paused time counts once per reason however many queues share it, and once in total.
//!
//! Internally everything is integer milliseconds; the JSON output is seconds as numbers with
//! millisecond precision (`f64`, e.g. `1800.5`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeStruct, Serializer};

use crate::fields::{Department, ExtensionNumber};
use crate::history::{HistoryEntry, HistoryEvent, TimeRange};
use crate::record::{Timestamp, format_rfc3339};
use crate::status::{DeviceState, ExtensionState, Presence};

/// What to compute: the window, the clock, and whose time.
#[derive(Clone, Copy, Debug)]
pub struct TimeInStateQuery<'a> {
    /// The window `[from, to)`.
    pub range: TimeRange,
    /// The current time; a window reaching past it is clipped to it.
    pub now: Timestamp,
    /// Only extensions of this department, when given.
    pub department: Option<&'a Department>,
    /// Every extension to report and its department. Entries of other extensions are skipped
    /// (they still count as signs that the server was running).
    pub extensions: &'a BTreeMap<ExtensionNumber, Department>,
    /// What was known at `from`: for each extension the last entry before `from` of each kind
    /// (of each queue, for pauses), and the last of each of the four markers before `from`; in
    /// any order. [`prior_entries`] reduces a history to exactly this.
    pub prior: &'a [HistoryEntry],
}

/// Milliseconds spent in each state by one extension, or summed over a department.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateTimes {
    /// By [`Presence`], in [`Presence::ALL`] order.
    status: [u64; 3],
    /// By [`DeviceState`] number.
    device_state: [u64; 9],
    /// Paused in at least one queue.
    paused: u64,
    /// Paused with each reason (`None`: no reason given), in at least one queue.
    paused_by_reason: Vec<(Option<String>, u64)>,
    /// On a call.
    on_call: u64,
    /// Every millisecond of the window in exactly one [`Availability`], by its index.
    availability: [u64; 5],
}

/// Where an agent's time went, each millisecond counted once, in this order of precedence:
/// `unknown` (the status is unknown, or nothing is known), `unavailable` (status offline),
/// `on_call`, `paused` (in at least one queue, not on a call), `available` (the rest). What
/// the dashboard's comparison bars show; the sum is the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Online, not on a call, paused in no queue.
    Available,
    /// On a call (ringing or talking) while online.
    OnCall,
    /// Paused in at least one queue while online and not on a call.
    Paused,
    /// Status offline.
    Unavailable,
    /// Status unknown, or not known at all (server not running, PBX link down).
    Unknown,
}

impl Availability {
    /// Every category, in the JSON's order.
    pub const ALL: [Availability; 5] = [
        Availability::Available,
        Availability::OnCall,
        Availability::Paused,
        Availability::Unavailable,
        Availability::Unknown,
    ];

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::OnCall => "on_call",
            Availability::Paused => "paused",
            Availability::Unavailable => "unavailable",
            Availability::Unknown => "unknown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn presence_index(p: Presence) -> usize {
    match p {
        Presence::Online => 0,
        Presence::Offline => 1,
        Presence::Unknown => 2,
    }
}

impl StateTimes {
    /// Milliseconds with status `p`.
    pub fn status_ms(&self, p: Presence) -> u64 {
        self.status[presence_index(p)]
    }

    /// Milliseconds in device state `d`.
    pub fn device_state_ms(&self, d: DeviceState) -> u64 {
        self.device_state[usize::from(d.number())]
    }

    /// Milliseconds paused in at least one queue, whatever the reason.
    pub fn paused_ms(&self) -> u64 {
        self.paused
    }

    /// Milliseconds paused with `reason` (`None`: paused without a reason) in at least one queue.
    pub fn paused_by_reason_ms(&self, reason: Option<&str>) -> u64 {
        self.paused_by_reason
            .iter()
            .find(|(r, _)| r.as_deref() == reason)
            .map_or(0, |(_, ms)| *ms)
    }

    /// Every pause reason with its milliseconds, sorted by reason (no reason first).
    pub fn paused_reasons(&self) -> &[(Option<String>, u64)] {
        &self.paused_by_reason
    }

    /// Milliseconds on a call.
    pub fn on_call_ms(&self) -> u64 {
        self.on_call
    }

    /// Milliseconds in availability category `a`; the five add up to the window.
    pub fn availability_ms(&self, a: Availability) -> u64 {
        self.availability[a.index()]
    }

    fn add(&mut self, other: &StateTimes) {
        add_each(&mut self.status, &other.status);
        add_each(&mut self.device_state, &other.device_state);
        add_each(&mut self.availability, &other.availability);
        self.paused += other.paused;
        for (reason, ms) in &other.paused_by_reason {
            add_keyed(&mut self.paused_by_reason, reason, *ms);
        }
        self.on_call += other.on_call;
    }

    fn write_fields<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        let status = Presence::ALL.map(Presence::as_str);
        let devices = DeviceState::ALL.map(DeviceState::as_str);
        let availability = Availability::ALL.map(Availability::as_str);
        st.serialize_field("status_seconds", &NamedSeconds(&status, &self.status))?;
        st.serialize_field(
            "device_state_seconds",
            &NamedSeconds(&devices, &self.device_state),
        )?;
        st.serialize_field("paused_seconds", &seconds(self.paused))?;
        st.serialize_field("paused_by_reason", &ReasonSeconds(&self.paused_by_reason))?;
        st.serialize_field("on_call_seconds", &seconds(self.on_call))?;
        st.serialize_field(
            "availability_seconds",
            &NamedSeconds(&availability, &self.availability),
        )
    }
}

/// Adds `other` to `sums`, element by element.
fn add_each(sums: &mut [u64], other: &[u64]) {
    for (a, b) in sums.iter_mut().zip(other) {
        *a += b;
    }
}

/// Adds `ms` to the row of `key`, appending the row when there is none yet.
fn add_keyed<K: PartialEq + Clone>(rows: &mut Vec<(K, u64)>, key: &K, ms: u64) {
    match rows.iter_mut().find(|(k, _)| k == key) {
        Some((_, total)) => *total += ms,
        None => rows.push((key.clone(), ms)),
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A JSON object of seconds: each name with the milliseconds at the same index.
struct NamedSeconds<'a>(&'a [&'static str], &'a [u64]);

impl Serialize for NamedSeconds<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, ms) in self.0.iter().zip(self.1) {
            m.serialize_entry(name, &seconds(*ms))?;
        }
        m.end()
    }
}

struct ReasonSeconds<'a>(&'a [(Option<String>, u64)]);

impl Serialize for ReasonSeconds<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            reason: Option<&'a str>,
            seconds: f64,
        }
        s.collect_seq(self.0.iter().map(|(reason, ms)| Row {
            reason: reason.as_deref(),
            seconds: seconds(*ms),
        }))
    }
}

/// One extension's times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionTimes {
    /// The extension.
    pub extension: ExtensionNumber,
    /// Its department.
    pub department: Department,
    /// Its times.
    pub times: StateTimes,
}

impl Serialize for ExtensionTimes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_row(
            s,
            ("extension", &self.extension),
            ("department", &self.department),
            &self.times,
        )
    }
}

/// One row of the answer: two naming fields, then the times.
fn serialize_row<S: Serializer, A: Serialize, B: Serialize>(
    s: S,
    (a_name, a): (&'static str, &A),
    (b_name, b): (&'static str, &B),
    times: &StateTimes,
) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("Times", 8)?;
    st.serialize_field(a_name, a)?;
    st.serialize_field(b_name, b)?;
    times.write_fields(&mut st)?;
    st.end()
}

/// One department's times: the sum over its extensions (agent-seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepartmentTimes {
    /// The department.
    pub department: Department,
    /// How many extensions were summed.
    pub extensions: usize,
    /// The summed times.
    pub times: StateTimes,
}

impl Serialize for DepartmentTimes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_row(
            s,
            ("department", &self.department),
            ("extensions", &self.extensions),
            &self.times,
        )
    }
}

/// The answer of [`time_in_state`].
///
/// JSON: `{"from","to","window_seconds","department","extensions":[{"extension","department",
/// "status_seconds":{"online","offline","unknown"},"device_state_seconds":{"NOT_INUSE",...},
/// "paused_seconds","paused_by_reason":[{"reason","seconds"}],"on_call_seconds"}],
/// "departments":[{"department","extensions",...the same times}]}`, all times in seconds with
/// millisecond precision; `to` is the window's end after clipping to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeInState {
    /// The window's start.
    pub from: Timestamp,
    /// The window's end, clipped to now.
    pub to: Timestamp,
    /// The department filter, if one was given.
    pub department: Option<Department>,
    /// Per extension, sorted by extension number.
    pub extensions: Vec<ExtensionTimes>,
    /// Per department, sorted by name.
    pub departments: Vec<DepartmentTimes>,
}

impl TimeInState {
    /// The window's length after clipping, in milliseconds.
    pub fn window_ms(&self) -> u64 {
        u64::try_from((self.to - self.from).num_milliseconds()).unwrap_or(0)
    }

    /// The times of one extension, if it was reported.
    pub fn extension(&self, n: &str) -> Option<&StateTimes> {
        self.extensions
            .iter()
            .find(|e| e.extension.as_str() == n)
            .map(|e| &e.times)
    }

    /// The times of one department, if it was reported.
    pub fn department(&self, name: &str) -> Option<&DepartmentTimes> {
        self.departments
            .iter()
            .find(|d| d.department.as_str() == name)
    }
}

impl Serialize for TimeInState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TimeInState", 6)?;
        st.serialize_field("from", &format_rfc3339(&self.from))?;
        st.serialize_field("to", &format_rfc3339(&self.to))?;
        st.serialize_field("window_seconds", &seconds(self.window_ms()))?;
        st.serialize_field("department", &self.department)?;
        st.serialize_field("extensions", &self.extensions)?;
        st.serialize_field("departments", &self.departments)?;
        st.end()
    }
}

/// The pass's hasher: FNV-1a for the interned queue and reason texts, a multiply-and-fold for
/// the integer keys of extension numbers. SipHash's protection against chosen keys would cost
/// more than the rest of the work per entry and buys nothing here (the keys are stored
/// extension numbers, queue names and reasons).
#[derive(Default)]
struct FastHash(u64);

impl Hasher for FastHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn write_u64(&mut self, x: u64) {
        let h = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The table takes its bucket from the low bits: fold the well-mixed high bits in.
        self.0 = h ^ (h >> 32);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHash>>;

/// The id of `text` in `table`, adding it when new. Ids start at 1; 0 means "none".
fn intern(table: &mut FastMap<String, u32>, names: &mut Vec<Option<String>>, text: &str) -> u32 {
    if let Some(id) = table.get(text) {
        return *id;
    }
    let id = u32::try_from(names.len()).unwrap_or(u32::MAX);
    names.push(Some(text.to_owned()));
    table.insert(text.to_owned(), id);
    id
}

/// One extension's state while the pass runs.
struct Track {
    /// Up to when its time has been counted.
    since: i64,
    presence: usize,
    device: usize,
    /// The queues it is paused in, with their reasons, as interned ids.
    paused: Vec<(u32, u32)>,
    on_call: bool,
    times: StateTimes,
    /// Paused milliseconds by interned reason id.
    reason_ms: Vec<(u32, u64)>,
}

impl Track {
    fn new(since: i64) -> Self {
        let initial = ExtensionState::INITIAL;
        Self {
            since,
            presence: presence_index(initial.presence()),
            device: usize::from(initial.device_state().number()),
            paused: Vec::new(),
            on_call: false,
            times: StateTimes::default(),
            reason_ms: Vec::new(),
        }
    }

    /// Counts the time from `since` to `t` in the current state.
    fn flush(&mut self, t: i64, known: bool) {
        let Ok(dt) = u64::try_from(t - self.since) else {
            return;
        };
        self.since = t;
        if dt == 0 {
            return;
        }
        let times = &mut self.times;
        if !known {
            times.status[presence_index(Presence::Unknown)] += dt;
            times.device_state[usize::from(DeviceState::Unknown.number())] += dt;
            times.availability[Availability::Unknown.index()] += dt;
            return;
        }
        times.status[self.presence] += dt;
        times.device_state[self.device] += dt;
        let availability = if self.presence == presence_index(Presence::Unknown) {
            Availability::Unknown
        } else if self.presence == presence_index(Presence::Offline) {
            Availability::Unavailable
        } else if self.on_call {
            Availability::OnCall
        } else if !self.paused.is_empty() {
            Availability::Paused
        } else {
            Availability::Available
        };
        times.availability[availability.index()] += dt;
        if !self.paused.is_empty() {
            times.paused += dt;
            for (i, &(_, reason)) in self.paused.iter().enumerate() {
                // A reason shared by several queues counts once.
                if self.paused[..i].iter().any(|&(_, r)| r == reason) {
                    continue;
                }
                add_keyed(&mut self.reason_ms, &reason, dt);
            }
        }
        if self.on_call {
            times.on_call += dt;
        }
    }
}

/// A history event borrowed from wherever it is stored: what the pass reads of an entry, so a
/// store can feed it straight from its encoded bytes without allocating (see
/// [`TimeInStatePass::push`]). [`EventRef::of`] gives one for an owned event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventRef<'a> {
    /// The extension state code changed.
    Status {
        /// The extension's digits (ASCII).
        extension: &'a [u8],
        /// The new code.
        code: i32,
    },
    /// Paused or unpaused in a queue.
    Pause {
        /// The extension's digits (ASCII).
        extension: &'a [u8],
        /// The queue.
        queue: &'a str,
        /// Paused or not.
        paused: bool,
        /// The reason, when paused with one.
        reason: Option<&'a str>,
    },
    /// The presence changed (it does not count in time in state, but shows the server ran).
    Presence {
        /// The extension's digits (ASCII).
        extension: &'a [u8],
    },
    /// A call started or ended.
    Call {
        /// The extension's digits (ASCII).
        extension: &'a [u8],
        /// On a call or not.
        on_call: bool,
    },
    /// The PBX link was lost.
    PbxLinkDown,
    /// The PBX link is up (logged in).
    PbxLinkUp,
    /// The server started.
    ServerStart,
    /// The server stopped cleanly.
    ServerStop,
}

impl<'a> EventRef<'a> {
    /// The borrowed form of an owned event.
    pub fn of(event: &'a HistoryEvent) -> Self {
        match event {
            HistoryEvent::Status {
                extension, code, ..
            } => EventRef::Status {
                extension: extension.as_str().as_bytes(),
                code: *code,
            },
            HistoryEvent::Pause {
                extension,
                queue,
                paused,
                reason,
            } => EventRef::Pause {
                extension: extension.as_str().as_bytes(),
                queue,
                paused: *paused,
                reason: reason.as_deref(),
            },
            HistoryEvent::Presence { extension, .. } => EventRef::Presence {
                extension: extension.as_str().as_bytes(),
            },
            HistoryEvent::Call {
                extension, on_call, ..
            } => EventRef::Call {
                extension: extension.as_str().as_bytes(),
                on_call: *on_call,
            },
            HistoryEvent::PbxLinkDown => EventRef::PbxLinkDown,
            HistoryEvent::PbxLinkUp => EventRef::PbxLinkUp,
            HistoryEvent::ServerStart => EventRef::ServerStart,
            HistoryEvent::ServerStop => EventRef::ServerStop,
        }
    }
}

/// The one pass over the history.
struct Pass {
    from: i64,
    to: i64,
    /// Track index by [`ExtensionNumber::order_key`], unique per extension number.
    index: FastMap<u64, usize>,
    tracks: Vec<Track>,
    queues: FastMap<String, u32>,
    queue_names: Vec<Option<String>>,
    reasons: FastMap<String, u32>,
    /// Reason texts by id; id 0 is "no reason".
    reason_names: Vec<Option<String>>,
    running: bool,
    link_up: bool,
    /// The (clipped) time of the last entry seen, of any kind or extension.
    last_at: Option<i64>,
}

impl Pass {
    fn known(&self) -> bool {
        self.running && self.link_up
    }

    fn flush_all(&mut self, t: i64) {
        let known = self.known();
        for track in &mut self.tracks {
            track.flush(t, known);
        }
    }

    /// Sets the global flags at `t`, counting everyone's time first when that changes what is
    /// known.
    fn set_flags(&mut self, t: i64, running: bool, link_up: bool) {
        if (running && link_up) != self.known() {
            self.flush_all(t);
        }
        self.running = running;
        self.link_up = link_up;
    }

    /// A server start while the server is thought to be running: it crashed after the last
    /// entry, so it was not running from then on.
    fn crash_before_start(&mut self) {
        if self.running {
            let since = self.last_at.unwrap_or(self.from);
            self.set_flags(since, false, false);
        }
    }

    /// Applies one entry at `t`, already clipped to the window and not before `last_at`.
    fn apply(&mut self, t: i64, event: EventRef<'_>) {
        match event {
            EventRef::PbxLinkDown => self.set_flags(t, self.running, false),
            EventRef::PbxLinkUp => self.set_flags(t, self.running, true),
            EventRef::ServerStop => self.set_flags(t, false, false),
            EventRef::ServerStart => {
                self.crash_before_start();
                self.set_flags(t, true, false);
            }
            EventRef::Status { extension, code } => {
                if let Some(track) = self.track(extension, t) {
                    let state = ExtensionState::from_code(code);
                    track.presence = presence_index(state.presence());
                    track.device = usize::from(state.device_state().number());
                }
            }
            EventRef::Pause {
                extension,
                queue,
                paused,
                reason,
            } => {
                // Interning first: the track borrows the whole pass.
                let selected = ExtensionNumber::order_key_of(extension)
                    .is_some_and(|key| self.index.contains_key(&key));
                let q = if selected {
                    intern(&mut self.queues, &mut self.queue_names, queue)
                } else {
                    0
                };
                let r = match (selected && paused, reason) {
                    (true, Some(reason)) => {
                        intern(&mut self.reasons, &mut self.reason_names, reason)
                    }
                    _ => 0,
                };
                if let Some(track) = self.track(extension, t) {
                    let slot = track.paused.iter().position(|&(tq, _)| tq == q);
                    match (slot, paused) {
                        (Some(i), true) => {
                            if let Some(entry) = track.paused.get_mut(i) {
                                entry.1 = r;
                            }
                        }
                        (Some(i), false) => {
                            track.paused.swap_remove(i);
                        }
                        (None, true) => track.paused.push((q, r)),
                        (None, false) => {}
                    }
                }
            }
            EventRef::Call { extension, on_call } => {
                if let Some(track) = self.track(extension, t) {
                    track.on_call = on_call;
                }
            }
            EventRef::Presence { .. } => {}
        }
        self.last_at = Some(t);
    }

    /// The track of `extension` with its time counted up to `t`; `None` when it is not
    /// reported.
    fn track(&mut self, extension: &[u8], t: i64) -> Option<&mut Track> {
        let known = self.known();
        let key = ExtensionNumber::order_key_of(extension)?;
        let track = self.tracks.get_mut(*self.index.get(&key)?)?;
        track.flush(t, known);
        Some(track)
    }
}

/// Where a window's counting ends: its `to`, clipped to `now` (never before its `from`). The
/// pass stops at the first entry at or after it, so a store reading ahead need read no
/// further.
pub fn window_end(range: TimeRange, now: Timestamp) -> Timestamp {
    range.to().min(now).max(range.from())
}

/// Time in state computed one entry at a time: [`TimeInStatePass::new`] applies the state at
/// `from`, [`TimeInStatePass::push`] takes the entries from `from` on in time order (as
/// borrowed [`EventRef`]s, so a store can decode them without allocating), and
/// [`TimeInStatePass::finish`] gives the answer. [`time_in_state`] does the same from owned
/// entries.
pub struct TimeInStatePass<'q> {
    pass: Pass,
    selected: Vec<(&'q ExtensionNumber, &'q Department)>,
    from: Timestamp,
    to: Timestamp,
    department: Option<&'q Department>,
    /// The first entry at or after `to` was seen: nothing more counts.
    done: bool,
}

impl<'q> TimeInStatePass<'q> {
    /// Starts the pass for `query`, with what was known at its `from`.
    pub fn new(query: &TimeInStateQuery<'q>) -> Self {
        let from_ts = query.range.from();
        let to_ts = window_end(query.range, query.now);
        let (from, to) = (from_ts.timestamp_millis(), to_ts.timestamp_millis());
        let selected: Vec<(&'q ExtensionNumber, &'q Department)> = query
            .extensions
            .iter()
            .filter(|(_, d)| query.department.is_none_or(|want| want == *d))
            .collect();
        let mut pass = Pass {
            from,
            to,
            index: selected
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.order_key(), i))
                .collect(),
            tracks: selected.iter().map(|_| Track::new(from)).collect(),
            queues: FastMap::default(),
            queue_names: vec![None],
            reasons: FastMap::default(),
            reason_names: vec![None],
            running: false,
            link_up: false,
            last_at: None,
        };
        let mut prior: Vec<&HistoryEntry> = query.prior.iter().collect();
        prior.sort_by_key(|e| order_key(e));
        for entry in prior {
            pass.apply(from, EventRef::of(&entry.event));
        }
        Self {
            pass,
            selected,
            from: from_ts,
            to: to_ts,
            department: query.department,
            done: false,
        }
    }

    /// Takes the next entry, at `at_ms` milliseconds since the epoch. Entries before `from`
    /// count as of `from`; an entry out of order counts at the latest time already seen.
    /// Answers false once the entry at or after the window's (clipped) end has been seen:
    /// nothing after it can change the answer, so the caller may stop reading. That first
    /// entry after the window is still wanted: when it is a `server_start` after a crash, the
    /// time from the last entry in the window on counts as unknown, as it will after the
    /// restart.
    pub fn push(&mut self, at_ms: i64, event: EventRef<'_>) -> bool {
        if self.done {
            return false;
        }
        let pass = &mut self.pass;
        if at_ms >= pass.to {
            if matches!(event, EventRef::ServerStart) {
                pass.crash_before_start();
            }
            self.done = true;
            return false;
        }
        let t = at_ms.max(pass.from).max(pass.last_at.unwrap_or(pass.from));
        pass.apply(t, event);
        true
    }

    /// Counts the time up to the window's end and gives the answer.
    pub fn finish(self) -> TimeInState {
        let mut pass = self.pass;
        pass.flush_all(pass.to);
        let reasons = std::mem::take(&mut pass.reason_names);

        let mut departments: BTreeMap<&Department, DepartmentTimes> = BTreeMap::new();
        let extensions: Vec<ExtensionTimes> = self
            .selected
            .iter()
            .zip(pass.tracks)
            .map(|((n, d), mut track)| {
                track.times.paused_by_reason = track
                    .reason_ms
                    .iter()
                    .map(|&(id, ms)| {
                        let name = usize::try_from(id)
                            .ok()
                            .and_then(|i| reasons.get(i))
                            .cloned()
                            .flatten();
                        (name, ms)
                    })
                    .collect();
                track.times.paused_by_reason.sort();
                let sum = departments.entry(d).or_insert_with(|| DepartmentTimes {
                    department: (*d).clone(),
                    extensions: 0,
                    times: StateTimes::default(),
                });
                sum.extensions += 1;
                sum.times.add(&track.times);
                ExtensionTimes {
                    extension: (*n).clone(),
                    department: (*d).clone(),
                    times: track.times,
                }
            })
            .collect();
        let departments = departments
            .into_values()
            .map(|mut d| {
                d.times.paused_by_reason.sort();
                d
            })
            .collect();
        TimeInState {
            from: self.from,
            to: self.to,
            department: self.department.cloned(),
            extensions,
            departments,
        }
    }
}

/// Computes the time in state over `query.range` from `query.prior` and `entries`.
///
/// `entries` are the history entries from `from` on, sorted by time (as the stores return
/// them), optionally followed by the first entry at or after `to`: when that one is a
/// `server_start` after a crash, the time from the last entry in the window on counts as
/// unknown, as it will after the restart. Entries before `from` are applied as of `from`;
/// entries out of order are taken as happening at the latest time already seen.
///
/// One pass, O(entries + extensions × markers): global markers count every extension's time;
/// everything else touches one extension.
pub fn time_in_state<I>(query: &TimeInStateQuery<'_>, entries: I) -> TimeInState
where
    I: IntoIterator,
    I::Item: Borrow<HistoryEntry>,
{
    let mut pass = TimeInStatePass::new(query);
    for entry in entries {
        let entry = entry.borrow();
        if !pass.push(entry.at.timestamp_millis(), EventRef::of(&entry.event)) {
            break;
        }
    }
    pass.finish()
}

/// Reduces a history to what [`TimeInStateQuery::prior`] needs for a window starting at
/// `from`: among the entries before `from`, the last one per extension and kind (per queue, for
/// pauses) and the last one of each marker kind. What a store does with indexed queries, done in
/// memory.
pub fn prior_entries<'a, I>(entries: I, from: Timestamp) -> Vec<HistoryEntry>
where
    I: IntoIterator<Item = &'a HistoryEntry>,
{
    let mut last: HashMap<(&'static str, Option<&'a str>, Option<&'a str>), &'a HistoryEntry> =
        HashMap::new();
    for entry in entries {
        if entry.at >= from {
            continue;
        }
        let queue = match &entry.event {
            HistoryEvent::Pause { queue, .. } => Some(queue.as_str()),
            _ => None,
        };
        let key = (
            entry.event.kind(),
            entry.extension().map(ExtensionNumber::as_str),
            queue,
        );
        let slot = last.entry(key).or_insert(entry);
        if entry.at >= slot.at {
            *slot = entry;
        }
    }
    let mut out: Vec<HistoryEntry> = last.into_values().cloned().collect();
    out.sort_by_key(order_key);
    out
}

/// Orders prior entries by time and, within one millisecond, markers in the order they can
/// happen (a stop, a start, the link lost, the link back) before everything else.
fn order_key(e: &HistoryEntry) -> (Timestamp, u8) {
    let rank = match e.event {
        HistoryEvent::ServerStop => 0,
        HistoryEvent::ServerStart => 1,
        HistoryEvent::PbxLinkDown => 2,
        HistoryEvent::PbxLinkUp => 3,
        _ => 4,
    };
    (e.at, rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: &str = "2026-12-01T";

    /// A time of the test day, `HH:MM:SS`.
    fn at(hms: &str) -> Timestamp {
        format!("{DAY}{hms}Z").parse().expect("time")
    }

    fn ext(n: &str) -> ExtensionNumber {
        ExtensionNumber::parse(n).expect("extension")
    }

    fn status(t: &str, n: &str, code: i32) -> HistoryEntry {
        HistoryEntry::new(
            at(t),
            HistoryEvent::Status {
                extension: ext(n),
                previous_code: -1,
                code,
            },
        )
    }

    fn pause(t: &str, n: &str, queue: &str, reason: Option<&str>) -> HistoryEntry {
        HistoryEntry::new(
            at(t),
            HistoryEvent::Pause {
                extension: ext(n),
                queue: queue.into(),
                paused: true,
                reason: reason.map(Into::into),
            },
        )
    }

    fn unpause(t: &str, n: &str, queue: &str) -> HistoryEntry {
        HistoryEntry::new(
            at(t),
            HistoryEvent::Pause {
                extension: ext(n),
                queue: queue.into(),
                paused: false,
                reason: None,
            },
        )
    }

    fn call(t: &str, n: &str, on_call: bool) -> HistoryEntry {
        HistoryEntry::new(
            at(t),
            HistoryEvent::Call {
                extension: ext(n),
                on_call,
                queue: None,
            },
        )
    }

    fn marker(t: &str, event: HistoryEvent) -> HistoryEntry {
        HistoryEntry::new(at(t), event)
    }

    /// The server started at 08:00 and logged in to the PBX at 08:00:01.
    fn boot() -> Vec<HistoryEntry> {
        vec![
            marker("08:00:00", HistoryEvent::ServerStart),
            marker("08:00:01", HistoryEvent::PbxLinkUp),
        ]
    }

    fn departments(rows: &[(&str, &str)]) -> BTreeMap<ExtensionNumber, Department> {
        rows.iter()
            .map(|(n, d)| (ext(n), Department::parse(d).expect("department")))
            .collect()
    }

    /// Computes a window the way the server will: the prior state reduced from the entries
    /// before `from`, then the entries in the window and the first one after it.
    fn window_with(
        history: &[HistoryEntry],
        exts: &BTreeMap<ExtensionNumber, Department>,
        department: Option<&Department>,
        (from, to): (&str, &str),
        now: Timestamp,
    ) -> TimeInState {
        let range = TimeRange::new(at(from), at(to)).expect("range");
        let prior = prior_entries(history, range.from());
        let mut rest = history.iter().filter(|e| e.at >= range.from());
        let in_window: Vec<&HistoryEntry> =
            rest.by_ref().take_while(|e| e.at < range.to()).collect();
        let next = history.iter().find(|e| e.at >= range.to());
        let query = TimeInStateQuery {
            range,
            now,
            department,
            extensions: exts,
            prior: &prior,
        };
        let got = time_in_state(&query, in_window.into_iter().chain(next));
        // The whole history in one stream gives the same answer.
        let whole = time_in_state(
            &TimeInStateQuery {
                prior: &[],
                ..query
            },
            history,
        );
        assert_eq!(got, whole, "prior reduction changes the answer");
        got
    }

    fn window(history: &[HistoryEntry], exts: &[&str], span: (&str, &str)) -> TimeInState {
        let rows: Vec<(&str, &str)> = exts.iter().map(|n| (*n, "Sales")).collect();
        window_with(history, &departments(&rows), None, span, at("23:59:59"))
    }

    /// Checks one extension's whole seconds: status (online, offline, unknown), paused,
    /// on call.
    fn check(got: &TimeInState, n: &str, status: [u64; 3], paused: u64, on_call: u64) {
        let times = got.extension(n).expect("extension reported");
        let s = |ms: u64| {
            assert_eq!(ms % 1000, 0, "{n}: {ms} ms is not whole seconds");
            ms / 1000
        };
        let want = (status, paused, on_call);
        let have = (
            [
                s(times.status_ms(Presence::Online)),
                s(times.status_ms(Presence::Offline)),
                s(times.status_ms(Presence::Unknown)),
            ],
            s(times.paused_ms()),
            s(times.on_call_ms()),
        );
        assert_eq!(
            have, want,
            "{n}: ([online, offline, unknown], paused, on call)"
        );
        let total: u64 = times.status.iter().sum();
        assert_eq!(
            total,
            got.window_ms(),
            "{n}: status seconds sum to the window"
        );
        let devices: u64 = times.device_state.iter().sum();
        assert_eq!(
            devices,
            got.window_ms(),
            "{n}: device seconds sum to the window"
        );
        let availability: u64 = times.availability.iter().sum();
        assert_eq!(
            availability,
            got.window_ms(),
            "{n}: availability seconds sum to the window"
        );
    }

    /// One extension's availability in whole seconds: available, on call, paused, unavailable,
    /// unknown.
    fn availability_s(got: &TimeInState, n: &str) -> [u64; 5] {
        let t = got.extension(n).expect("extension");
        Availability::ALL.map(|a| t.availability_ms(a) / 1000)
    }

    fn device_s(got: &TimeInState, n: &str, d: DeviceState) -> u64 {
        got.extension(n).expect("extension").device_state_ms(d) / 1000
    }

    #[test]
    fn windows_cut_intervals() {
        let mut h = boot();
        h.extend([
            status("08:30:00", "1001", 0),
            status("09:10:00", "1001", 1),
            status("09:40:00", "1001", 0),
            status("10:20:00", "1001", 4),
        ]);
        let got = window(&h, &["1001"], ("09:00:00", "10:00:00"));
        check(&got, "1001", [3600, 0, 0], 0, 0);
        assert_eq!(device_s(&got, "1001", DeviceState::NotInUse), 1800);
        assert_eq!(device_s(&got, "1001", DeviceState::InUse), 1800);

        let got = window(&h, &["1001"], ("10:00:00", "11:00:00"));
        check(&got, "1001", [1200, 2400, 0], 0, 0);
        assert_eq!(device_s(&got, "1001", DeviceState::Unavailable), 2400);

        // A window inside one interval.
        let got = window(&h, &["1001"], ("09:15:00", "09:16:30"));
        check(&got, "1001", [90, 0, 0], 0, 0);
        assert_eq!(device_s(&got, "1001", DeviceState::InUse), 90);

        // Milliseconds survive: 09:10:00 to 09:10:00.250 in use.
        let range = TimeRange::new(
            at("09:09:59"),
            at("09:10:00") + chrono::Duration::milliseconds(250),
        )
        .expect("range");
        let exts = departments(&[("1001", "Sales")]);
        let prior = prior_entries(&h, range.from());
        let q = TimeInStateQuery {
            range,
            now: at("23:00:00"),
            department: None,
            extensions: &exts,
            prior: &prior,
        };
        let got = time_in_state(&q, h.iter().filter(|e| e.at >= range.from()));
        let t = got.extension("1001").expect("1001");
        assert_eq!(t.device_state_ms(DeviceState::NotInUse), 1000);
        assert_eq!(t.device_state_ms(DeviceState::InUse), 250);
    }

    #[test]
    fn a_clean_restart_in_the_middle() {
        let mut h = boot();
        h.extend([
            status("08:30:00", "1001", 0),
            marker("09:20:00", HistoryEvent::ServerStop),
            marker("09:30:00", HistoryEvent::ServerStart),
            marker("09:30:05", HistoryEvent::PbxLinkUp),
        ]);
        let got = window(&h, &["1001"], ("09:00:00", "10:00:00"));
        // Online 09:00-09:20 and 09:30:05-10:00; unknown while stopped and until logged in.
        check(&got, "1001", [1200 + 1795, 0, 605], 0, 0);
        assert_eq!(device_s(&got, "1001", DeviceState::Unknown), 605);
        // A window inside the outage, and one that starts in it.
        check(
            &window(&h, &["1001"], ("09:21:00", "09:29:00")),
            "1001",
            [0, 0, 480],
            0,
            0,
        );
        check(
            &window(&h, &["1001"], ("09:25:00", "09:35:00")),
            "1001",
            [295, 0, 305],
            0,
            0,
        );
    }

    #[test]
    fn a_crash_counts_from_the_last_thing_known() {
        let mut h = boot();
        h.extend([
            status("08:30:00", "1001", 0),
            status("09:15:30", "1002", 1),
            // No stop: the server crashed some time after 09:15:30.
            marker("09:45:00", HistoryEvent::ServerStart),
            marker("09:45:10", HistoryEvent::PbxLinkUp),
        ]);
        let got = window(&h, &["1001", "1002"], ("09:00:00", "10:00:00"));
        check(&got, "1001", [930 + 890, 0, 1780], 0, 0);
        // 1002 was unknown (-1) until 09:15:30; its own change is the last thing known, so it
        // was never known in use before the crash.
        check(&got, "1002", [890, 0, 930 + 1780], 0, 0);

        // The last entry before the crash is before the window: unknown from the window's start.
        let got = window(&h, &["1001"], ("09:20:00", "10:00:00"));
        check(&got, "1001", [890, 0, 1510], 0, 0);

        // A crash shows in a window that ends before the restart, from the entry after it.
        let got = window(&h, &["1001"], ("09:00:00", "09:40:00"));
        check(&got, "1001", [930, 0, 1470], 0, 0);
    }

    #[test]
    fn a_pbx_outage_in_the_middle() {
        let mut h = boot();
        h.extend([
            status("08:55:00", "1001", 1),
            call("08:55:00", "1001", true),
            pause("08:56:00", "1001", "sales", Some("wrap-up")),
            marker("09:10:00", HistoryEvent::PbxLinkDown),
            marker("09:25:00", HistoryEvent::PbxLinkUp),
            call("09:40:00", "1001", false),
            status("09:40:00", "1001", 0),
        ]);
        let got = window(&h, &["1001"], ("09:00:00", "10:00:00"));
        // Known 09:00-09:10 and 09:25-10:00; on a call and paused only while known.
        check(&got, "1001", [2700, 0, 900], 600 + 2100, 600 + 900);
        assert_eq!(device_s(&got, "1001", DeviceState::InUse), 1500);
        assert_eq!(device_s(&got, "1001", DeviceState::NotInUse), 1200);
        assert_eq!(device_s(&got, "1001", DeviceState::Unknown), 900);
        let t = got.extension("1001").expect("1001");
        assert_eq!(t.paused_by_reason_ms(Some("wrap-up")), 2_700_000);
        // On a call (and paused) while known until 09:40, then paused only; unknown in the
        // outage.
        assert_eq!(availability_s(&got, "1001"), [0, 1500, 1200, 0, 900]);
    }

    #[test]
    fn a_pause_that_overlaps_calls() {
        let mut h = boot();
        h.extend([
            status("08:00:02", "1001", 0),
            pause("09:05:00", "1001", "sales", Some("lunch")),
            call("09:20:00", "1001", true),
            status("09:20:00", "1001", 1),
            unpause("09:35:00", "1001", "sales"),
            call("09:50:00", "1001", false),
            status("09:50:00", "1001", 0),
        ]);
        let got = window(&h, &["1001"], ("09:00:00", "10:00:00"));
        check(&got, "1001", [3600, 0, 0], 1800, 1800);
        let t = got.extension("1001").expect("1001");
        assert_eq!(t.paused_by_reason_ms(Some("lunch")), 1_800_000);
        assert_eq!(t.paused_reasons().len(), 1);
        // A call wins over the pause it overlaps: paused only 09:05-09:20.
        assert_eq!(availability_s(&got, "1001"), [300 + 600, 1800, 900, 0, 0]);
        let json = serde_json::to_value(&got).expect("serialize");
        assert_eq!(
            json["extensions"][0]["availability_seconds"],
            serde_json::json!({"available": 900.0, "on_call": 1800.0, "paused": 900.0,
                "unavailable": 0.0, "unknown": 0.0})
        );
    }

    #[test]
    fn paused_in_two_queues_with_the_same_reason_counts_once() {
        let mut h = boot();
        h.extend([
            status("08:00:02", "1001", 0),
            pause("09:00:00", "1001", "sales", Some("lunch")),
            pause("09:10:00", "1001", "support", Some("lunch")),
            pause("09:20:00", "1001", "billing", Some("training")),
            unpause("09:25:00", "1001", "billing"),
            unpause("09:30:00", "1001", "sales"),
            unpause("09:40:00", "1001", "support"),
            // No reason given, in one queue, after the others.
            pause("09:50:00", "1001", "sales", None),
        ]);
        let got = window(&h, &["1001"], ("09:00:00", "10:00:00"));
        check(&got, "1001", [3600, 0, 0], 2400 + 600, 0);
        let t = got.extension("1001").expect("1001");
        assert_eq!(t.paused_by_reason_ms(Some("lunch")), 2_400_000);
        assert_eq!(t.paused_by_reason_ms(Some("training")), 300_000);
        assert_eq!(t.paused_by_reason_ms(None), 600_000);
        let json = serde_json::to_value(&got).expect("serialize");
        assert_eq!(
            json["extensions"][0]["paused_by_reason"],
            serde_json::json!([
                {"reason": null, "seconds": 600.0},
                {"reason": "lunch", "seconds": 2400.0},
                {"reason": "training", "seconds": 300.0},
            ])
        );
    }

    #[test]
    fn an_empty_window() {
        let mut h = boot();
        h.extend([status("08:30:00", "1001", 4), status("11:00:00", "1001", 0)]);
        // No entry inside: the state at the start holds throughout.
        let got = window(&h, &["1001"], ("09:00:00", "10:00:00"));
        check(&got, "1001", [0, 3600, 0], 0, 0);
        // A window in the future is clipped to now and has no length.
        let exts = departments(&[("1001", "Sales")]);
        let got = window_with(&h, &exts, None, ("12:00:00", "13:00:00"), at("11:30:00"));
        assert_eq!(got.window_ms(), 0);
        assert_eq!(got.to, got.from);
        check(&got, "1001", [0, 0, 0], 0, 0);
        // A window reaching past now ends at now.
        let got = window_with(&h, &exts, None, ("10:30:00", "13:00:00"), at("11:30:00"));
        assert_eq!(got.to, at("11:30:00"));
        check(&got, "1001", [1800, 1800, 0], 0, 0);
        // No history at all: nothing is known.
        check(
            &window(&[], &["1001"], ("09:00:00", "10:00:00")),
            "1001",
            [0, 0, 3600],
            0,
            0,
        );
    }

    #[test]
    fn a_department_filter() {
        let mut h = boot();
        h.extend([
            status("08:30:00", "1001", 0),
            status("08:30:00", "1002", 4),
            status("08:30:00", "2001", 1),
            call("09:30:00", "2001", true),
        ]);
        let exts = departments(&[("1001", "Sales"), ("1002", "Sales"), ("2001", "Support")]);
        let sales = Department::parse("Sales").expect("department");
        let got = window_with(
            &h,
            &exts,
            Some(&sales),
            ("09:00:00", "10:00:00"),
            at("23:00:00"),
        );
        let names: Vec<&str> = got
            .extensions
            .iter()
            .map(|e| e.extension.as_str())
            .collect();
        assert_eq!(names, ["1001", "1002"]);
        assert_eq!(got.departments.len(), 1);
        let d = got.department("Sales").expect("Sales");
        assert_eq!(d.extensions, 2);
        assert_eq!(d.times.status_ms(Presence::Online), 3_600_000);
        assert_eq!(d.times.status_ms(Presence::Offline), 3_600_000);
        assert_eq!(d.times.on_call_ms(), 0);
        assert_eq!(d.times.availability_ms(Availability::Available), 3_600_000);
        assert_eq!(
            d.times.availability_ms(Availability::Unavailable),
            3_600_000
        );

        let all = window_with(&h, &exts, None, ("09:00:00", "10:00:00"), at("23:00:00"));
        assert_eq!(all.departments.len(), 2);
        let support = all.department("Support").expect("Support");
        assert_eq!(support.times.on_call_ms(), 1_800_000);
        let json = serde_json::to_value(&all).expect("serialize");
        assert_eq!(json["window_seconds"], 3600.0);
        assert_eq!(json["departments"][1]["department"], "Support");
        assert_eq!(json["departments"][1]["on_call_seconds"], 1800.0);
        assert_eq!(json["departments"][0]["status_seconds"]["offline"], 3600.0);
        assert_eq!(
            json["extensions"][2]["device_state_seconds"]["INUSE"],
            3600.0
        );
    }

    #[test]
    fn an_extension_created_mid_window() {
        let mut h = boot();
        h.extend([status("09:30:00", "1003", 0)]);
        let got = window(&h, &["1003"], ("09:00:00", "10:00:00"));
        check(&got, "1003", [1800, 0, 1800], 0, 0);
        assert_eq!(device_s(&got, "1003", DeviceState::Unknown), 1800);
    }

    fn arb_entry() -> impl Strategy<Value = HistoryEntry> {
        let exts = prop::sample::select(vec!["1001", "1002", "1003"]);
        let event = prop_oneof![
            4 => (exts.clone(), prop::sample::select(vec![-1, 0, 1, 2, 4, 8, 9, 16, 17, 3]))
                .prop_map(|(n, code)| HistoryEvent::Status { extension: ext(n), previous_code: 0, code }),
            2 => (exts.clone(), prop::sample::select(vec!["q1", "q2"]), any::<bool>(),
                  prop::option::of(prop::sample::select(vec!["lunch", "break"])))
                .prop_map(|(n, q, paused, reason)| HistoryEvent::Pause {
                    extension: ext(n), queue: q.into(), paused,
                    reason: if paused { reason.map(Into::into) } else { None },
                }),
            2 => (exts, any::<bool>())
                .prop_map(|(n, on_call)| HistoryEvent::Call { extension: ext(n), on_call, queue: None }),
            1 => prop::sample::select(vec![
                HistoryEvent::PbxLinkDown, HistoryEvent::PbxLinkUp,
                HistoryEvent::ServerStart, HistoryEvent::ServerStop,
            ]),
        ];
        // Times over four hours from 08:00, in whole seconds or odd milliseconds.
        (0i64..14_400_000, event).prop_map(|(ms, event)| {
            HistoryEntry::new(at("08:00:00") + chrono::Duration::milliseconds(ms), event)
        })
    }

    proptest! {
        #[test]
        fn status_seconds_always_sum_to_the_window(
            mut history in prop::collection::vec(arb_entry(), 0..60),
            from_ms in 0i64..14_400_000,
            len_ms in 1i64..14_400_000,
        ) {
            history.sort_by_key(|e| e.at);
            let from = at("08:00:00") + chrono::Duration::milliseconds(from_ms);
            let range = TimeRange::new(from, from + chrono::Duration::milliseconds(len_ms))
                .expect("range");
            let exts = departments(&[("1001", "Sales"), ("1002", "Sales"), ("1003", "Support")]);
            let prior = prior_entries(&history, range.from());
            let q = TimeInStateQuery {
                range,
                now: at("23:00:00"),
                department: None,
                extensions: &exts,
                prior: &prior,
            };
            let got = time_in_state(&q, history.iter().filter(|e| e.at >= range.from()));
            let whole = time_in_state(&TimeInStateQuery { prior: &[], ..q }, &history);
            prop_assert_eq!(&got, &whole);
            let window = u64::try_from(len_ms).expect("positive");
            for e in &got.extensions {
                let t = &e.times;
                prop_assert_eq!(t.status.iter().sum::<u64>(), window);
                prop_assert_eq!(t.device_state.iter().sum::<u64>(), window);
                prop_assert_eq!(t.availability.iter().sum::<u64>(), window);
                prop_assert_eq!(
                    t.availability[Availability::Unknown.index()],
                    t.status[presence_index(Presence::Unknown)]
                );
                prop_assert_eq!(
                    t.availability[Availability::Unavailable.index()],
                    t.status[presence_index(Presence::Offline)]
                );
                prop_assert!(t.availability[Availability::OnCall.index()] <= t.on_call);
                prop_assert!(t.availability[Availability::Paused.index()] <= t.paused);
                prop_assert!(t.paused <= window && t.on_call <= window);
                prop_assert!(t.paused_by_reason.iter().all(|(_, ms)| *ms <= t.paused));
            }
            let sum: u64 = got.departments.iter().map(|d| d.times.status.iter().sum::<u64>()).sum();
            prop_assert_eq!(sum, window * 3);
        }
    }
}
