//! The call-center tracker: a pure state machine that turns what the PBX says about queues,
//! presence and channels into each extension's `queues`, `presence` and `call`, and into queue
//! statistics.
//!
//! It does no IO and reads no clock: every input carries its wire position and the time it was
//! read. It knows nothing of AMI framing either; `api-server` maps the AMI views to [`Input`].
//!
//! How things are matched to extensions (as `shared/interfaces.md` says):
//!
//! * Each extension's hint (`PJSIP/1001&Custom:1001,CustomPresence:1001`) gives its devices
//!   (before the comma, split on `&`) and its presence provider (after the comma). Devices are
//!   compared without regard to case, as Asterisk compares interfaces.
//! * A queue member belongs to the extension whose hint holds its `StateInterface`, or when it
//!   has none, its `Interface`. A member that matches no hint is a reject
//!   ([`RejectKind::UnmatchedMember`]) but is still kept, so it appears once its hint does.
//! * A channel (`PJSIP/1001-0000002a`, `Local/1001@agents-ring-00000001;1`) stands for its
//!   device (`PJSIP/1001`, `Local/1001@agents-ring`). The device belongs to the extension whose
//!   hint holds it or, failing that, to the extension of the queue member that dials it (the
//!   member's `Interface`), so the Local channels app_queue creates are found too.
//! * A queue call (`Agent*` events) belongs to the extension of its member.
//!
//! Presence text: `PresenceStateChange` and `PresenceStatus` carry the decoded text of a presence
//! written with the base64 option (`e`) — Asterisk's `CustomPresence` provider decodes before
//! publishing, as the capture `fixtures/ami/real/l_presence.recv.ami` shows — so the tracker
//! decodes nothing; decoding again would garble a message that merely looks like base64.
//!
//! Resync: after every (re)connect the lists `QueueStatus`, `PresenceStateList` and
//! `CoreShowChannels` are the truth. [`Tracker::resync`] takes one list and the live inputs read
//! while it was collected, and applies them as `api-server`'s pipeline does for
//! `ExtensionStateList`: inputs before the list's response on the wire first, then the list
//! (what it no longer shows is cleared), then the rest, in wire order.
//!
//! Pause times: a paused membership's `paused_since` is the PBX's `LastPause` (the time of the
//! last pause; Asterisk keeps it after unpausing, so it is read only while paused). When the
//! PBX sends none (0 or no header), a pause already known keeps its start (from the tracker,
//! or from what the store held), and a new one starts when it was seen.
//!
//! A list the PBX refuses ([`Tracker::list_refused`]) clears what it would have been the truth
//! for, so no value from before stays shown as if it were current.
//!
//! The output of every step is an [`Update`]: the extensions whose call-center view changed,
//! with their new view (nothing when nothing changed), whether queue statistics changed, and
//! rejected inputs counted by kind so the caller can log each kind once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::agent::{AgentPresence, CallInfo, CallState, QueueMembership};
use crate::fields::ExtensionNumber;
use crate::record::{Extension, Timestamp, truncate};

/// Where an input was on the wire: the connection (`generation`) and the packet's number in
/// it. Ordered as the wire was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WirePos {
    /// The connection the packet was read on; rises with every reconnect.
    pub generation: u64,
    /// The packet's number on that connection.
    pub seq: u64,
}

/// A queue member as the PBX reports it (`QueueMember` list item, `QueueMember*` events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInput {
    /// The queue.
    pub queue: String,
    /// What the queue dials (`Interface` / `Location`).
    pub interface: String,
    /// The device the queue watches (`StateInterface`), when it has one.
    pub state_interface: Option<String>,
    /// Paused in this queue.
    pub paused: bool,
    /// `PausedReason`, when not empty.
    pub paused_reason: Option<String>,
    /// `Penalty`.
    pub penalty: i32,
    /// `CallsTaken`.
    pub calls_taken: u32,
    /// `LastCall` (epoch 0 means never, i.e. `None`).
    pub last_call: Option<Timestamp>,
    /// `LastPause`: when the member was last paused (epoch 0, or no header, is `None`). It
    /// stays set after unpausing, so it means something only while `paused`.
    pub last_pause: Option<Timestamp>,
    /// `InCall`.
    pub in_call: bool,
}

/// A queue's counters (`QueueParams`).
#[derive(Clone, Debug, PartialEq)]
pub struct QueueParamsInput {
    /// The queue.
    pub queue: String,
    /// `Completed` calls.
    pub completed: u64,
    /// `Abandoned` calls.
    pub abandoned: u64,
    /// `ServicelevelPerf` when the queue has a service level (`ServiceLevel` > 0), else `None`.
    pub service_level_pct: Option<f64>,
}

/// A caller entering or leaving a queue (`QueueCaller*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerInput {
    /// The queue.
    pub queue: String,
    /// The caller channel's `Uniqueid`.
    pub caller_uniqueid: String,
}

/// A caller waiting in a queue (`QueueEntry` list item).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingInput {
    /// The queue.
    pub queue: String,
    /// The caller channel's `Uniqueid` (or its channel name when Asterisk gave none).
    pub caller_uniqueid: String,
    /// Seconds waited so far (`Wait`).
    pub wait_s: u64,
}

/// A queue call event for one member (`Agent*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInput {
    /// The queue.
    pub queue: String,
    /// The member's `Interface`.
    pub interface: String,
    /// The caller channel's `Uniqueid`.
    pub caller_uniqueid: Option<String>,
    /// The member channel's `Uniqueid` (`DestUniqueid`).
    pub agent_uniqueid: Option<String>,
    /// The caller's number.
    pub peer_number: Option<String>,
    /// The caller's name.
    pub peer_name: Option<String>,
}

/// A presentity's state (`PresenceStateChange`, `PresenceStatus`, `PresenceStateList` items).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceInput {
    /// The provider, e.g. `CustomPresence:1201`.
    pub presentity: String,
    /// The state as sent (lower-cased by the tracker).
    pub state: String,
    /// The subtype, when not empty.
    pub subtype: Option<String>,
    /// The message, when not empty.
    pub message: Option<String>,
}

/// A channel as it is now (`Newchannel`, `Newstate`, `CoreShowChannel`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInput {
    /// `Uniqueid`.
    pub uniqueid: String,
    /// The channel name, e.g. `PJSIP/1001-0000002a`.
    pub channel: String,
    /// `ChannelState` (5 = Ringing, 6 = Up).
    pub state: u8,
    /// The other party's number (`ConnectedLineNum`).
    pub peer_number: Option<String>,
    /// The other party's name (`ConnectedLineName`).
    pub peer_name: Option<String>,
    /// `Linkedid`: shared by every channel of one call.
    pub linkedid: Option<String>,
    /// The queue when this channel is waiting in the `Queue` application (the first part of its
    /// application data).
    pub in_queue: Option<String>,
    /// How long the channel has existed, when the PBX says (`CoreShowChannel` `Duration`).
    pub age_s: Option<u64>,
}

/// One thing the PBX said.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Input {
    /// An extension's hint (`Hint` of `ExtensionStatus`); an empty hint removes it.
    Hint {
        /// The extension.
        extension: ExtensionNumber,
        /// The raw hint.
        hint: String,
    },
    /// A member joined a queue (`QueueMemberAdded`).
    MemberAdded(MemberInput),
    /// A member's state (`QueueMember` item, `QueueMemberStatus`/`Pause`/`Penalty`).
    MemberUpdated(MemberInput),
    /// A member left a queue (`QueueMemberRemoved`).
    MemberRemoved {
        /// The queue.
        queue: String,
        /// The member's `Interface`.
        interface: String,
    },
    /// A queue's counters (`QueueParams`).
    QueueParams(QueueParamsInput),
    /// `QueueCallerJoin`.
    CallerJoined(CallerInput),
    /// `QueueCallerLeave`.
    CallerLeft(CallerInput),
    /// `QueueCallerAbandon`.
    CallerAbandoned(CallerInput),
    /// `QueueEntry` list item.
    CallerWaiting(WaitingInput),
    /// `AgentCalled`: the member is being rung.
    AgentCalled(AgentInput),
    /// `AgentConnect`: the member answered.
    AgentConnected(AgentInput),
    /// `AgentComplete`: the queue call ended.
    AgentCompleted(AgentInput),
    /// `AgentRingNoAnswer`: the member did not answer in time.
    AgentRingNoAnswer(AgentInput),
    /// `AgentDump`: the member hung up while the caller heard an announcement.
    AgentDumped(AgentInput),
    /// A presentity's state.
    Presence(PresenceInput),
    /// A channel appeared or changed.
    Channel(ChannelInput),
    /// A channel ended (`Hangup`).
    Hangup {
        /// Its `Uniqueid`.
        uniqueid: String,
    },
}

/// One input read live, with where and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// Wire position.
    pub pos: WirePos,
    /// When it was read.
    pub at: Timestamp,
    /// What it said.
    pub input: Input,
}

/// Which list a snapshot comes from; it decides what the list is the truth for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `QueueStatus`: queue counters, members and waiting callers.
    QueueStatus,
    /// `PresenceStateList`: presences.
    PresenceStateList,
    /// `CoreShowChannels`: channels, and so the calls.
    CoreShowChannels,
}

/// A complete list taken after a (re)connect.
#[derive(Clone, Debug, PartialEq)]
pub struct ListSnapshot {
    /// Which list.
    pub kind: ListKind,
    /// Wire position of the list's response (`EventList: start`).
    pub response: WirePos,
    /// When the list was read.
    pub at: Timestamp,
    /// Its items, in wire order.
    pub items: Vec<Input>,
}

/// Why an input was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectKind {
    /// A queue event for a queue neither `QueueParams` nor a member has named.
    UnknownQueue,
    /// A queue member (or queue call) whose device is in no extension's hint.
    UnmatchedMember,
    /// A presence whose state is empty or not a lower-case word.
    MalformedPresence,
}

impl RejectKind {
    /// A short snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::UnknownQueue => "unknown_queue",
            RejectKind::UnmatchedMember => "unmatched_member",
            RejectKind::MalformedPresence => "malformed_presence",
        }
    }
}

/// The call-center part of one record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallCenterView {
    /// `queues`, ordered by queue name.
    pub queues: Vec<QueueMembership>,
    /// `presence`.
    pub presence: Option<AgentPresence>,
    /// `call`.
    pub call: Option<CallInfo>,
}

impl CallCenterView {
    /// The view a record holds now.
    pub fn of(record: &Extension) -> Self {
        Self {
            queues: record.queues.clone(),
            presence: record.presence.as_deref().cloned(),
            call: record.call.as_deref().cloned(),
        }
    }

    /// Writes the view into a record.
    pub fn apply_to(&self, record: &mut Extension) {
        record.queues.clone_from(&self.queues);
        record.presence = self.presence.clone().map(Box::new);
        record.call = self.call.clone().map(Box::new);
    }
}

/// One extension whose view changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionChange {
    /// The extension.
    pub extension: ExtensionNumber,
    /// Its new view.
    pub view: CallCenterView,
}

/// What one step changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Extensions whose view changed, in extension order.
    pub changed: Vec<ExtensionChange>,
    /// Whether [`Tracker::queue_stats`] may now answer differently (members, callers, counters).
    pub queues_changed: bool,
    /// Inputs not used, counted by kind.
    pub rejects: BTreeMap<RejectKind, u64>,
}

impl Update {
    /// True when nothing changed and nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && !self.queues_changed && self.rejects.is_empty()
    }
}

/// One member of a queue as `GET /api/queues` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMemberSummary {
    /// The member's extension.
    pub extension: ExtensionNumber,
    /// Paused in this queue.
    pub paused: bool,
    /// The pause reason.
    pub paused_reason: Option<String>,
    /// Since when it is paused (as the record's `paused_since`); `None` when not paused.
    pub paused_since: Option<Timestamp>,
    /// On a call from this queue.
    pub in_call: bool,
}

/// One queue's statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Callers waiting now.
    pub calls_waiting: u32,
    /// How long the longest-waiting caller has waited, in seconds (0 when none waits).
    pub longest_wait_s: u64,
    /// Completed calls (from `QueueParams`, counted up by live `AgentComplete`s).
    pub completed: u64,
    /// Abandoned calls (from `QueueParams`, counted up by live `QueueCallerAbandon`s).
    pub abandoned: u64,
    /// The service level the PBX computed at the last `QueueStatus`, when the queue has one.
    pub service_level_pct: Option<f64>,
    /// Members that belong to a known extension, in extension order.
    pub members: Vec<QueueMemberSummary>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct QueueRec {
    completed: u64,
    abandoned: u64,
    service_level_pct: Option<f64>,
    /// Caller uniqueid → when it joined.
    waiting: HashMap<String, Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MemberRec {
    interface: String,
    /// Lower-case `StateInterface`, or `Interface` when it has none.
    device: String,
    paused: bool,
    paused_reason: Option<String>,
    /// Since when it is paused (`None` when not paused).
    paused_since: Option<Timestamp>,
    penalty: i32,
    calls_taken: u32,
    last_call: Option<Timestamp>,
    in_call: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct QueueCallRec {
    queue: String,
    /// Lower-case member interface.
    interface: String,
    caller_uniqueid: Option<String>,
    agent_uniqueid: Option<String>,
    state: CallState,
    peer_number: Option<String>,
    peer_name: Option<String>,
    since: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ChannelRec {
    /// Lower-case device.
    device: String,
    state: u8,
    peer_number: Option<String>,
    peer_name: Option<String>,
    linkedid: Option<String>,
    in_queue: Option<String>,
    since: Timestamp,
}

impl ChannelRec {
    fn call_state(&self) -> Option<CallState> {
        match self.state {
            5 => Some(CallState::Ringing),
            6 => Some(CallState::Up),
            _ => None,
        }
    }
}

/// [`ListKind`] as an ordered set key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ListKindKey {
    Queues,
    Presence,
    Channels,
}

impl From<ListKind> for ListKindKey {
    fn from(k: ListKind) -> Self {
        match k {
            ListKind::QueueStatus => ListKindKey::Queues,
            ListKind::PresenceStateList => ListKindKey::Presence,
            ListKind::CoreShowChannels => ListKindKey::Channels,
        }
    }
}

/// Which extensions to re-project after a step.
#[derive(Debug, Default)]
enum Dirty {
    #[default]
    None,
    Some(BTreeSet<ExtensionNumber>),
    All,
}

impl Dirty {
    fn add(&mut self, ext: Option<ExtensionNumber>) {
        let Some(ext) = ext else { return };
        match self {
            Dirty::None => *self = Dirty::Some(BTreeSet::from([ext])),
            Dirty::Some(set) => {
                set.insert(ext);
            }
            Dirty::All => {}
        }
    }
}

/// The tracker. See the module documentation.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Extension → its raw hint.
    hints: HashMap<ExtensionNumber, String>,
    /// Lower-case device → extension.
    devices: HashMap<String, ExtensionNumber>,
    /// Lower-case presentity → extensions whose hint names it.
    presentities: HashMap<String, BTreeSet<ExtensionNumber>>,
    queues: BTreeMap<String, QueueRec>,
    /// (queue, lower-case interface) → member.
    members: BTreeMap<(String, String), MemberRec>,
    /// Lower-case presentity → presence.
    presences: HashMap<String, AgentPresence>,
    queue_calls: Vec<QueueCallRec>,
    /// Uniqueid → channel.
    channels: HashMap<String, ChannelRec>,
    /// The last view reported (or remembered) per extension.
    views: HashMap<ExtensionNumber, CallCenterView>,
    /// What the store held at start, shown for each part until the list that is the truth for
    /// it has been applied once (a live event alone cannot say a stored call is over).
    carried: HashMap<ExtensionNumber, CallCenterView>,
    /// Which lists have been applied at least once.
    seen: BTreeSet<ListKindKey>,
    dirty: Dirty,
    queues_changed: bool,
    rejects: BTreeMap<RejectKind, u64>,
    /// The PBX refused `PresenceStateList` on this connection: a hinted provider it reports
    /// nothing for is then unknown (null), not `not_set`.
    presence_refused: bool,
}

/// The device a channel stands for: `PJSIP/1001-0000002a` → `pjsip/1001`,
/// `Local/1001@agents-ring-00000001;1` → `local/1001@agents-ring` (lower-cased).
pub fn channel_device(channel: &str) -> String {
    let mut name = channel;
    if let Some((head, tail)) = name.rsplit_once(';')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        name = head;
    }
    if let Some((head, tail)) = name.rsplit_once('-')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_hexdigit())
        && head.contains('/')
    {
        name = head;
    }
    name.to_ascii_lowercase()
}

/// A hint's devices (lower-cased) and presence provider (lower-cased).
fn parse_hint(hint: &str) -> (Vec<String>, Option<String>) {
    let (devices, presence) = match hint.split_once(',') {
        Some((d, p)) => (d, Some(p)),
        None => (hint, None),
    };
    let devices = devices
        .split('&')
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    let presence = presence
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty());
    (devices, presence)
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what the store holds for `extension` (call it at start, before any input). Each
    /// part stays shown until the list that is the truth for it has been applied once, and the
    /// first step that finds otherwise (a resync that no longer shows a call) reports the change.
    pub fn remember(&mut self, extension: ExtensionNumber, view: CallCenterView) {
        self.carried.insert(extension.clone(), view.clone());
        self.views.insert(extension, view);
    }

    /// Forgets an extension (deleted by a user): its hint and remembered view.
    pub fn forget(&mut self, extension: &ExtensionNumber) {
        if self.hints.contains_key(extension) {
            self.set_hint(extension, None);
            // Nothing is reported for a forgotten extension.
            if let Dirty::Some(set) = &mut self.dirty {
                set.remove(extension);
            }
        }
        self.views.remove(extension);
        self.carried.remove(extension);
    }

    /// The current view of `extension`.
    pub fn view(&self, extension: &ExtensionNumber) -> CallCenterView {
        self.project(extension)
    }

    /// The queue memberships of `extension` as the PBX names them: (queue, member `Interface`),
    /// in queue order. What a `QueuePause` for this agent must name.
    pub fn memberships(&self, extension: &ExtensionNumber) -> Vec<(String, String)> {
        self.members
            .iter()
            .filter(|(_, m)| self.devices.get(&m.device) == Some(extension))
            .map(|((queue, _), m)| (queue.clone(), m.interface.clone()))
            .collect()
    }

    /// Applies one live input.
    pub fn apply(&mut self, live: Live) -> Update {
        self.step(crate::pbx_text::bound_input(live.input), live.at);
        self.finish()
    }

    /// Applies a list taken after a (re)connect, with the live inputs read while it was being
    /// collected: those before the list's response on the wire first, then the list (what it
    /// no longer shows is cleared), then the rest in wire order.
    pub fn resync(&mut self, mut list: ListSnapshot, drained: Vec<Live>) -> Update {
        use crate::pbx_text::bound_input;
        if list.kind == ListKind::PresenceStateList {
            self.presence_refused = false;
        }
        let (before, after): (Vec<Live>, Vec<Live>) =
            drained.into_iter().partition(|l| l.pos < list.response);
        for live in before {
            self.step(bound_input(live.input), live.at);
        }
        list.items = list.items.into_iter().map(bound_input).collect();
        self.apply_list(list);
        for live in after {
            self.step(bound_input(live.input), live.at);
        }
        self.finish()
    }

    /// A list the PBX refused (`Response: Error`: no `app_queue`, a manager user without the
    /// rights). What the list is the truth for is then unknown: that part of every view is
    /// cleared (what the store held from an earlier run, what an earlier connection showed)
    /// and only live inputs set it from now on. Call it once per connection, at the first
    /// refusal, so live inputs on the same connection are not cleared at every resync.
    pub fn list_refused(&mut self, kind: ListKind, at: Timestamp) -> Update {
        if kind == ListKind::PresenceStateList {
            self.presence_refused = true;
        }
        self.apply_list(ListSnapshot {
            kind,
            response: WirePos {
                generation: 0,
                seq: 0,
            },
            at,
            items: Vec::new(),
        });
        self.finish()
    }

    /// Queue statistics as of `now`, in queue order.
    pub fn queue_stats(&self, now: Timestamp) -> Vec<QueueStats> {
        self.queues
            .iter()
            .map(|(name, q)| {
                let longest_wait_s = q
                    .waiting
                    .values()
                    .min()
                    .map(|joined| u64::try_from((now - *joined).num_seconds()).unwrap_or(0))
                    .unwrap_or(0);
                let mut members: Vec<QueueMemberSummary> = self
                    .members
                    .iter()
                    .filter(|((queue, _), _)| queue == name)
                    .filter_map(|(_, m)| {
                        self.devices.get(&m.device).map(|ext| QueueMemberSummary {
                            extension: ext.clone(),
                            paused: m.paused,
                            paused_reason: m.paused_reason.clone(),
                            paused_since: if m.paused { m.paused_since } else { None },
                            in_call: m.in_call,
                        })
                    })
                    .collect();
                members.sort_by(|a, b| a.extension.cmp(&b.extension));
                QueueStats {
                    queue: name.clone(),
                    calls_waiting: u32::try_from(q.waiting.len()).unwrap_or(u32::MAX),
                    longest_wait_s,
                    completed: q.completed,
                    abandoned: q.abandoned,
                    service_level_pct: q.service_level_pct,
                    members,
                }
            })
            .collect()
    }

    fn reject(&mut self, kind: RejectKind) {
        *self.rejects.entry(kind).or_default() += 1;
    }

    /// Sets (or, with `None`, removes) `extension`'s hint and updates the device and presentity
    /// indexes in place, marking only the extensions whose devices moved: a list of 10,000
    /// hints costs 10,000 small steps, not 10,000 rebuilds.
    fn set_hint(&mut self, extension: &ExtensionNumber, hint: Option<String>) {
        let old = match hint {
            Some(h) => self.hints.insert(extension.clone(), h),
            None => self.hints.remove(extension),
        };
        self.dirty.add(Some(extension.clone()));
        if let Some(old) = old {
            let (devices, presence) = parse_hint(&old);
            for d in devices {
                if self.devices.get(&d) != Some(extension) {
                    continue;
                }
                self.devices.remove(&d);
                // Another hint naming the same device takes it over.
                let heir = self
                    .hints
                    .iter()
                    .filter(|(e, _)| *e != extension)
                    .find(|(_, h)| parse_hint(h).0.contains(&d))
                    .map(|(e, _)| e.clone());
                if let Some(heir) = heir {
                    self.devices.insert(d, heir.clone());
                    self.dirty.add(Some(heir));
                }
            }
            if let Some(p) = presence
                && let Some(set) = self.presentities.get_mut(&p)
            {
                set.remove(extension);
                if set.is_empty() {
                    self.presentities.remove(&p);
                }
            }
        }
        if let Some(hint) = self.hints.get(extension) {
            let (devices, presence) = parse_hint(hint);
            for d in devices {
                if let Some(previous) = self.devices.insert(d, extension.clone())
                    && previous != *extension
                {
                    self.dirty.add(Some(previous));
                }
            }
            if let Some(p) = presence {
                self.presentities
                    .entry(p)
                    .or_default()
                    .insert(extension.clone());
            }
        }
    }

    /// The extension a lower-case device belongs to: by hint, or through the queue member that
    /// dials it.
    fn ext_of_device(&self, device: &str) -> Option<ExtensionNumber> {
        if let Some(ext) = self.devices.get(device) {
            return Some(ext.clone());
        }
        self.members
            .iter()
            .find(|((_, iface), _)| iface == device)
            .and_then(|(_, m)| self.devices.get(&m.device).cloned())
    }

    fn ext_of_member_iface(&self, queue: &str, iface: &str) -> Option<ExtensionNumber> {
        match self.members.get(&(queue.to_owned(), iface.to_owned())) {
            Some(m) => self.devices.get(&m.device).cloned(),
            None => self.ext_of_device(iface),
        }
    }

    fn mark_member(&mut self, queue: &str, iface: &str) {
        let ext = self.ext_of_member_iface(queue, iface);
        self.dirty.add(ext);
    }

    fn mark_channel(&mut self, uniqueid: &str) {
        let Some(c) = self.channels.get(uniqueid) else {
            return;
        };
        // A channel in the Queue application names the queue of every channel of its call.
        let linked: Vec<String> = match &c.linkedid {
            Some(l) if c.in_queue.is_some() => self
                .channels
                .values()
                .filter(|o| o.linkedid.as_ref() == Some(l))
                .map(|o| o.device.clone())
                .collect(),
            _ => vec![c.device.clone()],
        };
        for d in linked {
            let ext = self.ext_of_device(&d);
            self.dirty.add(ext);
        }
    }

    fn mark_queue_calls(&mut self, pred: impl Fn(&QueueCallRec) -> bool) {
        let hit: Vec<(String, String)> = self
            .queue_calls
            .iter()
            .filter(|c| pred(c))
            .map(|c| (c.queue.clone(), c.interface.clone()))
            .collect();
        for (q, i) in hit {
            self.mark_member(&q, &i);
        }
    }

    /// Since when a member that the PBX reports paused without a usable `LastPause` has been
    /// paused: since the pause we already knew of (the tracker's member, or the last view of its
    /// extension, which at start is what the store holds), or else since `at`, when it was
    /// seen paused.
    fn pause_start(&self, key: &(String, String), device: &str, at: Timestamp) -> Timestamp {
        let known = self
            .members
            .get(key)
            .filter(|old| old.paused)
            .and_then(|old| old.paused_since);
        let remembered = || {
            let ext = self.devices.get(device)?;
            let view = self.views.get(ext)?;
            view.queues
                .iter()
                .find(|q| q.queue == key.0 && q.paused)
                .and_then(|q| q.paused_since)
        };
        known.or_else(remembered).unwrap_or(at)
    }

    fn upsert_member(&mut self, m: MemberInput, at: Timestamp) {
        let iface = lower(&m.interface);
        let device = lower(m.state_interface.as_deref().unwrap_or(&m.interface));
        if !self.devices.contains_key(&device) {
            self.reject(RejectKind::UnmatchedMember);
        }
        let key = (m.queue.clone(), iface.clone());
        let paused_since = m.paused.then(|| match m.last_pause {
            Some(t) => truncate(t),
            None => self.pause_start(&key, &device, at),
        });
        self.mark_member(&key.0, &key.1);
        self.queues.entry(m.queue.clone()).or_default();
        self.members.insert(
            key.clone(),
            MemberRec {
                interface: m.interface,
                device,
                paused: m.paused,
                paused_reason: m.paused_reason.filter(|r| !r.is_empty()),
                paused_since,
                penalty: m.penalty,
                calls_taken: m.calls_taken,
                last_call: m.last_call.map(truncate),
                in_call: m.in_call,
            },
        );
        self.mark_member(&key.0, &key.1);
        self.queues_changed = true;
    }

    fn known_queue(&mut self, queue: &str) -> bool {
        if self.queues.contains_key(queue) {
            true
        } else {
            self.reject(RejectKind::UnknownQueue);
            false
        }
    }

    fn step(&mut self, input: Input, at: Timestamp) {
        let at = truncate(at);
        match input {
            Input::Hint { extension, hint } => {
                let hint = hint.trim().to_owned();
                let old = self.hints.get(&extension);
                if old.map(String::as_str) == Some(hint.as_str())
                    || (old.is_none() && hint.is_empty())
                {
                    return;
                }
                let hint = (!hint.is_empty()).then_some(hint);
                self.set_hint(&extension, hint);
                self.queues_changed = true;
            }
            Input::MemberAdded(m) | Input::MemberUpdated(m) => self.upsert_member(m, at),
            Input::MemberRemoved { queue, interface } => {
                let iface = lower(&interface);
                self.mark_member(&queue, &iface);
                if self
                    .members
                    .remove(&(queue.clone(), iface.clone()))
                    .is_some()
                {
                    self.queues_changed = true;
                }
                self.queue_calls
                    .retain(|c| !(c.queue == queue && c.interface == iface));
            }
            Input::QueueParams(p) => {
                let q = self.queues.entry(p.queue).or_default();
                q.completed = p.completed;
                q.abandoned = p.abandoned;
                q.service_level_pct = p.service_level_pct;
                self.queues_changed = true;
            }
            Input::CallerJoined(c) => {
                if self.known_queue(&c.queue) {
                    if let Some(q) = self.queues.get_mut(&c.queue) {
                        q.waiting.entry(c.caller_uniqueid).or_insert(at);
                    }
                    self.queues_changed = true;
                }
            }
            Input::CallerWaiting(w) => {
                if self.known_queue(&w.queue) {
                    let joined =
                        at - chrono::Duration::seconds(i64::try_from(w.wait_s).unwrap_or(0));
                    if let Some(q) = self.queues.get_mut(&w.queue) {
                        q.waiting.insert(w.caller_uniqueid, joined);
                    }
                    self.queues_changed = true;
                }
            }
            Input::CallerLeft(c) => self.caller_gone(c, false),
            Input::CallerAbandoned(c) => self.caller_gone(c, true),
            Input::AgentCalled(a) => self.agent_call(a, CallState::Ringing, at),
            Input::AgentConnected(a) => self.agent_call(a, CallState::Up, at),
            Input::AgentCompleted(a) => self.agent_end(a, true, at),
            Input::AgentRingNoAnswer(a) | Input::AgentDumped(a) => self.agent_end(a, false, at),
            Input::Presence(p) => {
                let state = p.state.trim().to_ascii_lowercase();
                if state.is_empty()
                    || !state
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                {
                    self.reject(RejectKind::MalformedPresence);
                    return;
                }
                let key = lower(p.presentity.trim());
                let presence = AgentPresence {
                    state,
                    subtype: p.subtype.filter(|s| !s.is_empty()),
                    message: p.message.filter(|s| !s.is_empty()),
                };
                self.presences.insert(key.clone(), presence);
                self.mark_presentity(&key);
            }
            Input::Channel(c) => {
                let since = match c.age_s {
                    Some(age) => at - chrono::Duration::seconds(i64::try_from(age).unwrap_or(0)),
                    None => at,
                };
                let rec = ChannelRec {
                    device: channel_device(&c.channel),
                    state: c.state,
                    peer_number: c.peer_number.filter(|s| !s.is_empty()),
                    peer_name: c.peer_name.filter(|s| !s.is_empty()),
                    linkedid: c.linkedid,
                    in_queue: c.in_queue.filter(|s| !s.is_empty()),
                    since,
                };
                self.mark_channel(&c.uniqueid);
                let rec = match self.channels.get(&c.uniqueid) {
                    // The call's time moves only when its state does.
                    Some(old) if old.call_state() == rec.call_state() => ChannelRec {
                        since: old.since,
                        ..rec
                    },
                    _ => rec,
                };
                self.channels.insert(c.uniqueid.clone(), rec);
                self.mark_channel(&c.uniqueid);
            }
            Input::Hangup { uniqueid } => {
                self.mark_channel(&uniqueid);
                self.channels.remove(&uniqueid);
                let gone = |c: &QueueCallRec| {
                    c.caller_uniqueid.as_deref() == Some(uniqueid.as_str())
                        || c.agent_uniqueid.as_deref() == Some(uniqueid.as_str())
                };
                self.mark_queue_calls(gone);
                self.queue_calls.retain(|c| !gone(c));
            }
        }
    }

    fn mark_presentity(&mut self, key: &str) {
        let exts: Vec<ExtensionNumber> = self
            .presentities
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for e in exts {
            self.dirty.add(Some(e));
        }
    }

    fn caller_gone(&mut self, c: CallerInput, abandoned: bool) {
        if !self.known_queue(&c.queue) {
            return;
        }
        if let Some(q) = self.queues.get_mut(&c.queue) {
            q.waiting.remove(&c.caller_uniqueid);
            if abandoned {
                q.abandoned += 1;
            }
        }
        self.queues_changed = true;
        // Members still rung for a caller who left the queue are no longer rung (ringall sends
        // no AgentRingNoAnswer to the members that lost the race).
        let stale = |q: &QueueCallRec| {
            q.state == CallState::Ringing
                && q.queue == c.queue
                && q.caller_uniqueid.as_deref() == Some(c.caller_uniqueid.as_str())
        };
        self.mark_queue_calls(stale);
        self.queue_calls.retain(|q| !stale(q));
    }

    fn agent_call(&mut self, a: AgentInput, state: CallState, at: Timestamp) {
        if !self.known_queue(&a.queue) {
            return;
        }
        let iface = lower(&a.interface);
        if self.ext_of_member_iface(&a.queue, &iface).is_none() {
            self.reject(RejectKind::UnmatchedMember);
        }
        let same = |c: &QueueCallRec| {
            c.queue == a.queue && c.interface == iface && c.caller_uniqueid == a.caller_uniqueid
        };
        if state == CallState::Up {
            // The member that answers wins; the others rung for the same caller stop ringing.
            let losers = |c: &QueueCallRec| {
                !same(c) && a.caller_uniqueid.is_some() && c.caller_uniqueid == a.caller_uniqueid
            };
            self.mark_queue_calls(losers);
            self.queue_calls.retain(|c| !losers(c));
            if let Some(m) = self.members.get_mut(&(a.queue.clone(), iface.clone())) {
                m.in_call = true;
                self.queues_changed = true;
            }
        }
        let rec = QueueCallRec {
            queue: a.queue.clone(),
            interface: iface.clone(),
            caller_uniqueid: a.caller_uniqueid.clone(),
            agent_uniqueid: a.agent_uniqueid.clone(),
            state,
            peer_number: a.peer_number.clone().filter(|s| !s.is_empty()),
            peer_name: a.peer_name.clone().filter(|s| !s.is_empty()),
            since: at,
        };
        match self.queue_calls.iter_mut().find(|c| same(c)) {
            Some(existing) if existing.state == state => {
                existing.agent_uniqueid = rec.agent_uniqueid.or(existing.agent_uniqueid.take());
            }
            Some(existing) => *existing = rec,
            None => self.queue_calls.push(rec),
        }
        self.mark_member(&a.queue, &iface);
    }

    fn agent_end(&mut self, a: AgentInput, completed: bool, at: Timestamp) {
        if !self.known_queue(&a.queue) {
            return;
        }
        let iface = lower(&a.interface);
        self.mark_member(&a.queue, &iface);
        self.queue_calls.retain(|c| {
            !(c.queue == a.queue && c.interface == iface && c.caller_uniqueid == a.caller_uniqueid)
        });
        if completed {
            if let Some(q) = self.queues.get_mut(&a.queue) {
                q.completed += 1;
            }
            if let Some(m) = self.members.get_mut(&(a.queue.clone(), iface)) {
                m.in_call = false;
                m.calls_taken = m.calls_taken.saturating_add(1);
                m.last_call = Some(at);
            }
            self.queues_changed = true;
        }
    }

    fn apply_list(&mut self, list: ListSnapshot) {
        self.seen.insert(list.kind.into());
        self.dirty = Dirty::All;
        self.queues_changed = true;
        match list.kind {
            ListKind::QueueStatus => {
                self.queues.clear();
                self.members.clear();
                // Queue calls of members the list no longer shows end with them.
            }
            ListKind::PresenceStateList => self.presences.clear(),
            ListKind::CoreShowChannels => self.channels.clear(),
        }
        for item in list.items {
            self.step(item, list.at);
        }
        match list.kind {
            ListKind::QueueStatus => {
                let members = &self.members;
                self.queue_calls
                    .retain(|c| members.contains_key(&(c.queue.clone(), c.interface.clone())));
            }
            ListKind::CoreShowChannels => {
                // A queue call survives only while its channels do.
                let channels = &self.channels;
                let alive =
                    |id: &Option<String>| id.as_ref().is_none_or(|u| channels.contains_key(u));
                self.queue_calls.retain(|c| {
                    c.caller_uniqueid.is_some()
                        && alive(&c.caller_uniqueid)
                        && alive(&c.agent_uniqueid)
                });
            }
            ListKind::PresenceStateList => {}
        }
        self.dirty = Dirty::All;
    }

    /// The view of one extension from the raw state.
    fn project(&self, ext: &ExtensionNumber) -> CallCenterView {
        let mine = |device: &str| self.devices.get(device) == Some(ext);
        let mut queues: Vec<QueueMembership> = self
            .members
            .iter()
            .filter(|(_, m)| mine(&m.device))
            .map(|((queue, _), m)| QueueMembership {
                queue: queue.clone(),
                paused: m.paused,
                paused_reason: if m.paused {
                    m.paused_reason.clone()
                } else {
                    None
                },
                paused_since: if m.paused { m.paused_since } else { None },
                penalty: m.penalty,
                calls_taken: m.calls_taken,
                last_call: m.last_call,
                in_call: m.in_call,
            })
            .collect();
        let carried = self.carried.get(ext);
        let carry = |part: ListKindKey| carried.filter(|_| !self.seen.contains(&part));
        if let Some(c) = carry(ListKindKey::Queues) {
            for q in &c.queues {
                if !queues.iter().any(|m| m.queue == q.queue) {
                    queues.push(q.clone());
                }
            }
        }
        queues.sort_by(|a, b| a.queue.cmp(&b.queue));

        let provider = self.hints.get(ext).and_then(|h| parse_hint(h).1);
        let presence = provider
            .as_ref()
            .and_then(|p| self.presences.get(p).cloned())
            .or_else(|| carry(ListKindKey::Presence).and_then(|c| c.presence.clone()))
            // A hinted provider the PBX reports nothing for has no presence set: Asterisk
            // itself answers `not_set` for it (ami-reference, "PresenceState action reply"),
            // and `PresenceStateList` lists only presentities that were ever written. Null
            // stays for "no provider hinted", before that list was first taken, and for a PBX
            // that refuses it.
            .or_else(|| {
                (provider.is_some()
                    && self.seen.contains(&ListKindKey::Presence)
                    && !self.presence_refused)
                    .then(AgentPresence::not_set)
            });

        // Candidates: queue calls of this extension's members, then its channels' calls.
        let mut best: Option<(u8, CallInfo)> = None;
        let mut offer = |rank: u8, call: CallInfo| {
            let better = match &best {
                None => true,
                Some((r, b)) => {
                    let key = |state: CallState, rank: u8| (state == CallState::Up, rank);
                    key(call.state, rank) > key(b.state, *r)
                        || (key(call.state, rank) == key(b.state, *r) && call.since < b.since)
                }
            };
            if better {
                best = Some((rank, call));
            }
        };
        for c in &self.queue_calls {
            if self.ext_of_member_iface(&c.queue, &c.interface).as_ref() == Some(ext) {
                offer(
                    2,
                    CallInfo {
                        state: c.state,
                        peer_number: c.peer_number.clone(),
                        peer_name: c.peer_name.clone(),
                        queue: Some(c.queue.clone()),
                        since: c.since,
                    },
                );
            }
        }
        for c in self.channels.values() {
            let Some(state) = c.call_state() else {
                continue;
            };
            if self.ext_of_device(&c.device).as_ref() != Some(ext) {
                continue;
            }
            let queue = c.in_queue.clone().or_else(|| {
                c.linkedid.as_ref().and_then(|l| {
                    self.channels
                        .values()
                        .find(|o| o.linkedid.as_ref() == Some(l) && o.in_queue.is_some())
                        .and_then(|o| o.in_queue.clone())
                })
            });
            offer(
                u8::from(queue.is_some()),
                CallInfo {
                    state,
                    peer_number: c.peer_number.clone(),
                    peer_name: c.peer_name.clone(),
                    queue,
                    since: c.since,
                },
            );
        }
        CallCenterView {
            queues,
            presence,
            call: best
                .map(|(_, c)| c)
                .or_else(|| carry(ListKindKey::Channels).and_then(|c| c.call.clone())),
        }
    }

    /// Re-projects the dirty extensions and reports those whose view changed.
    fn finish(&mut self) -> Update {
        let dirty = std::mem::take(&mut self.dirty);
        let exts: BTreeSet<ExtensionNumber> = match dirty {
            Dirty::None => BTreeSet::new(),
            Dirty::Some(set) => set,
            Dirty::All => self
                .hints
                .keys()
                .chain(self.views.keys())
                .cloned()
                .collect(),
        };
        let mut changed = Vec::new();
        for ext in exts {
            let view = self.project(&ext);
            let old = self.views.get(&ext);
            let same = match old {
                Some(old) => *old == view,
                None => view == CallCenterView::default(),
            };
            if !same {
                changed.push(ExtensionChange {
                    extension: ext.clone(),
                    view: view.clone(),
                });
            }
            if view == CallCenterView::default() && !self.hints.contains_key(&ext) {
                self.views.remove(&ext);
            } else {
                self.views.insert(ext, view);
            }
        }
        Update {
            changed,
            queues_changed: std::mem::take(&mut self.queues_changed),
            rejects: std::mem::take(&mut self.rejects),
        }
    }
}

#[cfg(test)]
mod tests;
