//! Typed views for call-center state: queues (`QueueParams`, `QueueMember`, `QueueEntry`, the
//! `QueueMember*` and `QueueCaller*` events), queue calls (`Agent*`), presence
//! (`PresenceStateChange`, `PresenceStatus`) and channels (`Newchannel`, `Newstate`, `Hangup`,
//! `DialBegin`, `DialEnd`, `BridgeEnter`, `CoreShowChannel`).
//!
//! Like [`crate::views`], a view borrows its packet, copies nothing that is valid UTF-8 and
//! ignores headers it does not know. A header that is present but malformed (a number that is
//! not one) is an error naming the header; a missing optional header takes the value older
//! Asterisk versions imply. [`CallCenterEvent::classify`] sorts a packet into these views.
//!
//! Wire facts the views rely on (checked on the Asterisk 20 captures in `fixtures/ami/real/`,
//! scenarios `j`, `l` and `m`):
//!
//! * `QueueMember*` events name the member `MemberName` / `Interface`; the `QueueMember` list
//!   item of `QueueStatus` names it `Name` / `Location`. Both give [`QueueMemberState`].
//! * The pause reason is `PausedReason` everywhere (the action header is `Reason`), sent empty
//!   when there is none.
//! * `PresenceStateChange` C-escapes `Subtype` and `Message`; `PresenceStatus` sends them raw.
//!   Both carry the decoded text of a base64 (`e` option) presence, never the base64 itself.
//! * `CallerIDName` and `ConnectedLineName` are C-escaped (Asterisk 13.5 and later); the views
//!   unescape them.

use std::borrow::Cow;
use std::str::FromStr;

use crate::error::ViewError;
use crate::packet::{Kind, Packet};

fn text<'a>(packet: &'a Packet, header: &'static str) -> Result<Cow<'a, str>, ViewError> {
    packet
        .get(header)
        .ok_or(ViewError::MissingHeader { header })
}

/// A header that must be present and not blank.
fn required<'a>(packet: &'a Packet, header: &'static str) -> Result<Cow<'a, str>, ViewError> {
    let value = text(packet, header)?;
    if value.trim().is_empty() {
        return Err(ViewError::MissingHeader { header });
    }
    Ok(value)
}

/// An optional header: `None` when absent or empty.
fn optional<'a>(packet: &'a Packet, header: &str) -> Option<Cow<'a, str>> {
    packet.get(header).filter(|v| !v.is_empty())
}

/// An optional number: `None` when absent or empty, an error naming the header when malformed.
fn number<T: FromStr>(packet: &Packet, header: &'static str) -> Result<Option<T>, ViewError> {
    match packet.get(header) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ViewError::InvalidNumber {
                header,
                value: v.into_owned(),
            }),
    }
}

/// A number that must be present.
fn required_number<T: FromStr>(packet: &Packet, header: &'static str) -> Result<T, ViewError> {
    number(packet, header)?.ok_or(ViewError::MissingHeader { header })
}

/// A `0`/`1` flag as app_queue writes it (`%d`); any other non-zero number is true.
fn flag(packet: &Packet, header: &'static str) -> Result<Option<bool>, ViewError> {
    Ok(number::<i64>(packet, header)?.map(|n| n != 0))
}

fn expect_event(packet: &Packet, names: &[&str], expected: &'static str) -> Result<(), ViewError> {
    if names.iter().any(|n| packet.is(Kind::Event, n)) {
        Ok(())
    } else {
        Err(ViewError::WrongMessage { expected })
    }
}

/// Undoes Asterisk's `ast_escape_c` (`\n`, `\r`, `\t`, `\\`, `\"`, `\'`, `\?`, `\a`, `\b`, `\f`,
/// `\v`). An unknown escape is kept as written. Borrowed when there is nothing to undo.
pub fn unescape_c(raw: Cow<'_, str>) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return raw;
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(c @ ('\\' | '"' | '\'' | '?')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// The header names of one channel snapshot: plain (`Channel`, `Uniqueid`...) or with the
/// `Dest` prefix the second channel of `Dial*` and `Agent*` events carries.
struct SnapshotKeys {
    channel: &'static str,
    state: &'static str,
    state_desc: &'static str,
    caller_id_num: &'static str,
    caller_id_name: &'static str,
    connected_line_num: &'static str,
    connected_line_name: &'static str,
    context: &'static str,
    exten: &'static str,
    uniqueid: &'static str,
    linkedid: &'static str,
}

const PLAIN: SnapshotKeys = SnapshotKeys {
    channel: "Channel",
    state: "ChannelState",
    state_desc: "ChannelStateDesc",
    caller_id_num: "CallerIDNum",
    caller_id_name: "CallerIDName",
    connected_line_num: "ConnectedLineNum",
    connected_line_name: "ConnectedLineName",
    context: "Context",
    exten: "Exten",
    uniqueid: "Uniqueid",
    linkedid: "Linkedid",
};

const DEST: SnapshotKeys = SnapshotKeys {
    channel: "DestChannel",
    state: "DestChannelState",
    state_desc: "DestChannelStateDesc",
    caller_id_num: "DestCallerIDNum",
    caller_id_name: "DestCallerIDName",
    connected_line_num: "DestConnectedLineNum",
    connected_line_name: "DestConnectedLineName",
    context: "DestContext",
    exten: "DestExten",
    uniqueid: "DestUniqueid",
    linkedid: "DestLinkedid",
};

/// One channel as a channel event describes it (`ast_manager_build_channel_state_string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSnapshot<'a> {
    /// `Channel`, e.g. `PJSIP/1001-0000002a` or `Local/1001@agents-ring-00000001;1`.
    pub channel: Cow<'a, str>,
    /// `ChannelState`: Asterisk's `ast_channel_state` (4 = Ring, 5 = Ringing, 6 = Up...).
    pub state: Option<u8>,
    /// `ChannelStateDesc`, e.g. `Ringing`, `Up`.
    pub state_desc: Option<Cow<'a, str>>,
    /// `CallerIDNum`; `None` when empty or `<unknown>`.
    pub caller_id_num: Option<Cow<'a, str>>,
    /// `CallerIDName`, unescaped; `None` when empty or `<unknown>`.
    pub caller_id_name: Option<Cow<'a, str>>,
    /// `ConnectedLineNum`; `None` when empty or `<unknown>`.
    pub connected_line_num: Option<Cow<'a, str>>,
    /// `ConnectedLineName`, unescaped; `None` when empty or `<unknown>`.
    pub connected_line_name: Option<Cow<'a, str>>,
    /// `Context`.
    pub context: Option<Cow<'a, str>>,
    /// `Exten`.
    pub exten: Option<Cow<'a, str>>,
    /// `Uniqueid`: the channel's id, stable for its life.
    pub uniqueid: Cow<'a, str>,
    /// `Linkedid`: the id shared by every channel of one call.
    pub linkedid: Option<Cow<'a, str>>,
}

/// Caller ID as Asterisk prints it: `<unknown>` (or nothing) means none.
fn caller_id<'a>(packet: &'a Packet, header: &str) -> Option<Cow<'a, str>> {
    optional(packet, header).filter(|v| v != "<unknown>")
}

impl<'a> ChannelSnapshot<'a> {
    fn read(packet: &'a Packet, keys: &SnapshotKeys) -> Result<ChannelSnapshot<'a>, ViewError> {
        Ok(ChannelSnapshot {
            channel: required(packet, keys.channel)?,
            state: number(packet, keys.state)?,
            state_desc: optional(packet, keys.state_desc),
            caller_id_num: caller_id(packet, keys.caller_id_num),
            caller_id_name: caller_id(packet, keys.caller_id_name).map(unescape_c),
            connected_line_num: caller_id(packet, keys.connected_line_num),
            connected_line_name: caller_id(packet, keys.connected_line_name).map(unescape_c),
            context: optional(packet, keys.context),
            exten: optional(packet, keys.exten),
            uniqueid: required(packet, keys.uniqueid)?,
            linkedid: optional(packet, keys.linkedid),
        })
    }

    /// The snapshot when the packet has its `Channel` (or `DestChannel`) header, else `None`.
    fn read_if_present(
        packet: &'a Packet,
        keys: &SnapshotKeys,
    ) -> Result<Option<ChannelSnapshot<'a>>, ViewError> {
        if optional(packet, keys.channel).is_none() {
            return Ok(None);
        }
        Self::read(packet, keys).map(Some)
    }

    /// True when the channel is up (`ChannelState: 6`).
    pub fn is_up(&self) -> bool {
        self.state == Some(6)
    }
}

/// `QueueParams`: one queue's counters, a list item of `QueueStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueParams<'a> {
    /// `Queue`.
    pub queue: Cow<'a, str>,
    /// `Max` callers (0 = unlimited).
    pub max: u32,
    /// `Strategy`, e.g. `ringall`.
    pub strategy: Option<Cow<'a, str>>,
    /// `Calls` waiting now.
    pub calls: u32,
    /// `Holdtime`: average hold time in seconds.
    pub hold_time: u64,
    /// `TalkTime`: average talk time in seconds.
    pub talk_time: u64,
    /// `Completed` calls since the queue was loaded or reset.
    pub completed: u64,
    /// `Abandoned` calls.
    pub abandoned: u64,
    /// `ServiceLevel`: the service-level threshold in seconds (0 = none configured).
    pub service_level: u64,
    /// `ServicelevelPerf`: percentage of completed calls answered within the threshold.
    pub service_level_perf: Option<f64>,
    /// `ServicelevelPerf2`: the same counted over completed and abandoned calls.
    pub service_level_perf2: Option<f64>,
    /// `Weight`.
    pub weight: i32,
}

impl<'a> QueueParams<'a> {
    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<QueueParams<'a>, ViewError> {
        expect_event(packet, &["QueueParams"], "QueueParams event")?;
        Ok(QueueParams {
            queue: required(packet, "Queue")?,
            max: number(packet, "Max")?.unwrap_or(0),
            strategy: optional(packet, "Strategy"),
            calls: required_number(packet, "Calls")?,
            hold_time: number(packet, "Holdtime")?.unwrap_or(0),
            talk_time: number(packet, "TalkTime")?.unwrap_or(0),
            completed: required_number(packet, "Completed")?,
            abandoned: required_number(packet, "Abandoned")?,
            service_level: number(packet, "ServiceLevel")?.unwrap_or(0),
            service_level_perf: number(packet, "ServicelevelPerf")?,
            service_level_perf2: number(packet, "ServicelevelPerf2")?,
            weight: number(packet, "Weight")?.unwrap_or(0),
        })
    }
}

/// One queue member: the `QueueMember` list item of `QueueStatus` and the `QueueMemberAdded`,
/// `QueueMemberRemoved`, `QueueMemberStatus`, `QueueMemberPause` and `QueueMemberPenalty`
/// events, which carry the same facts under partly different names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMemberState<'a> {
    /// `Queue`.
    pub queue: Cow<'a, str>,
    /// `MemberName` (events) or `Name` (list item); `None` when empty.
    pub member_name: Option<Cow<'a, str>>,
    /// `Interface` (events) or `Location` (list item): what the queue dials.
    pub interface: Cow<'a, str>,
    /// `StateInterface`: the device whose state the queue watches; `None` when empty.
    pub state_interface: Option<Cow<'a, str>>,
    /// `Membership`: `dynamic`, `static` or `realtime`.
    pub membership: Option<Cow<'a, str>>,
    /// `Penalty`.
    pub penalty: i32,
    /// `CallsTaken`.
    pub calls_taken: u64,
    /// `LastCall`: epoch seconds of the end of the last call, 0 = never.
    pub last_call: i64,
    /// `LastPause`: epoch seconds of the last pause, 0 = never (stays set after unpausing).
    pub last_pause: i64,
    /// `LoginTime`: epoch seconds when the member was added.
    pub login_time: i64,
    /// `InCall`: the member is on a queue call.
    pub in_call: bool,
    /// `Status`: an `ast_device_state` number (1 = NOT_INUSE, 2 = INUSE, 6 = RINGING...).
    pub status: Option<i32>,
    /// `Paused`.
    pub paused: bool,
    /// `PausedReason`; `None` when empty.
    pub paused_reason: Option<Cow<'a, str>>,
    /// `Wrapuptime` in seconds.
    pub wrapup_time: u64,
    /// `Ringinuse` (events only).
    pub ring_in_use: Option<bool>,
}

impl<'a> QueueMemberState<'a> {
    /// The event names this view reads, the list item first.
    pub const EVENTS: [&'static str; 6] = [
        "QueueMember",
        "QueueMemberAdded",
        "QueueMemberRemoved",
        "QueueMemberStatus",
        "QueueMemberPause",
        "QueueMemberPenalty",
    ];

    /// Builds the view from the list item or one of the member events.
    pub fn from_packet(packet: &'a Packet) -> Result<QueueMemberState<'a>, ViewError> {
        expect_event(packet, &Self::EVENTS, "QueueMember or QueueMember* event")?;
        let list_item = packet.is(Kind::Event, "QueueMember");
        let (name_key, interface_key) = if list_item {
            ("Name", "Location")
        } else {
            ("MemberName", "Interface")
        };
        Ok(QueueMemberState {
            queue: required(packet, "Queue")?,
            member_name: optional(packet, name_key),
            interface: required(packet, interface_key)?,
            state_interface: optional(packet, "StateInterface"),
            membership: optional(packet, "Membership"),
            penalty: number(packet, "Penalty")?.unwrap_or(0),
            calls_taken: number(packet, "CallsTaken")?.unwrap_or(0),
            last_call: number(packet, "LastCall")?.unwrap_or(0),
            last_pause: number(packet, "LastPause")?.unwrap_or(0),
            login_time: number(packet, "LoginTime")?.unwrap_or(0),
            in_call: flag(packet, "InCall")?.unwrap_or(false),
            status: number(packet, "Status")?,
            paused: flag(packet, "Paused")?.ok_or(ViewError::MissingHeader { header: "Paused" })?,
            paused_reason: optional(packet, "PausedReason"),
            wrapup_time: number(packet, "Wrapuptime")?.unwrap_or(0),
            ring_in_use: flag(packet, "Ringinuse")?,
        })
    }

    /// The device that decides which extension the member is: `StateInterface`, or when it
    /// has none, `Interface`.
    pub fn device(&self) -> &str {
        self.state_interface.as_deref().unwrap_or(&self.interface)
    }
}

/// `QueueEntry`: one caller waiting in a queue, a list item of `QueueStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry<'a> {
    /// `Queue`.
    pub queue: Cow<'a, str>,
    /// `Position` in the queue, from 1.
    pub position: u32,
    /// `Channel` of the caller.
    pub channel: Cow<'a, str>,
    /// `Uniqueid` of the caller's channel.
    pub uniqueid: Option<Cow<'a, str>>,
    /// `CallerIDNum`; `None` when empty or `<unknown>`.
    pub caller_id_num: Option<Cow<'a, str>>,
    /// `CallerIDName`, unescaped; `None` when empty or `<unknown>`.
    pub caller_id_name: Option<Cow<'a, str>>,
    /// `Wait`: seconds the caller has waited so far.
    pub wait: u64,
    /// `Priority` of the caller in the queue.
    pub priority: i32,
}

impl<'a> QueueEntry<'a> {
    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<QueueEntry<'a>, ViewError> {
        expect_event(packet, &["QueueEntry"], "QueueEntry event")?;
        Ok(QueueEntry {
            queue: required(packet, "Queue")?,
            position: required_number(packet, "Position")?,
            channel: required(packet, "Channel")?,
            uniqueid: optional(packet, "Uniqueid"),
            caller_id_num: caller_id(packet, "CallerIDNum"),
            caller_id_name: caller_id(packet, "CallerIDName").map(unescape_c),
            wait: required_number(packet, "Wait")?,
            priority: number(packet, "Priority")?.unwrap_or(0),
        })
    }
}

/// `QueueCallerJoin`, `QueueCallerLeave` or `QueueCallerAbandon`: a caller entered a queue,
/// left it (answered or gone elsewhere), or hung up while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCaller<'a> {
    /// The caller's channel.
    pub caller: ChannelSnapshot<'a>,
    /// `Queue`.
    pub queue: Cow<'a, str>,
    /// `Position` (on join: where the caller was put; on leave/abandon: where it was).
    pub position: Option<u32>,
    /// `Count`: callers in the queue after the event (join and leave only).
    pub count: Option<u32>,
    /// `OriginalPosition` (abandon only).
    pub original_position: Option<u32>,
    /// `HoldTime` in seconds (abandon only).
    pub hold_time: Option<u64>,
}

impl<'a> QueueCaller<'a> {
    /// The event names this view reads.
    pub const EVENTS: [&'static str; 3] =
        ["QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon"];

    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<QueueCaller<'a>, ViewError> {
        expect_event(packet, &Self::EVENTS, "QueueCaller* event")?;
        Ok(QueueCaller {
            caller: ChannelSnapshot::read(packet, &PLAIN)?,
            queue: required(packet, "Queue")?,
            position: number(packet, "Position")?,
            count: number(packet, "Count")?,
            original_position: number(packet, "OriginalPosition")?,
            hold_time: number(packet, "HoldTime")?,
        })
    }
}

/// `AgentCalled`, `AgentConnect`, `AgentComplete`, `AgentRingNoAnswer` or `AgentDump`: a queue
/// call offered to, answered by, finished by, missed by or dropped by a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent<'a> {
    /// The caller's channel (`Channel`...); absent in some `AgentDump` events.
    pub caller: Option<ChannelSnapshot<'a>>,
    /// The member's channel (`DestChannel`...), when the event carries it.
    pub agent: Option<ChannelSnapshot<'a>>,
    /// `Queue`.
    pub queue: Cow<'a, str>,
    /// `MemberName`; `None` when empty.
    pub member_name: Option<Cow<'a, str>>,
    /// `Interface`: the member's interface, as in `QueueMember*` events.
    pub interface: Cow<'a, str>,
    /// `HoldTime` in seconds (connect, complete).
    pub hold_time: Option<u64>,
    /// `RingTime` in seconds (connect, ring-no-answer).
    pub ring_time: Option<u64>,
    /// `TalkTime` in seconds (complete).
    pub talk_time: Option<u64>,
    /// `Reason` (complete): `caller`, `agent` or `transfer`.
    pub reason: Option<Cow<'a, str>>,
}

impl<'a> AgentEvent<'a> {
    /// The event names this view reads.
    pub const EVENTS: [&'static str; 5] = [
        "AgentCalled",
        "AgentConnect",
        "AgentComplete",
        "AgentRingNoAnswer",
        "AgentDump",
    ];

    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<AgentEvent<'a>, ViewError> {
        expect_event(packet, &Self::EVENTS, "Agent* queue event")?;
        Ok(AgentEvent {
            caller: ChannelSnapshot::read_if_present(packet, &PLAIN)?,
            agent: ChannelSnapshot::read_if_present(packet, &DEST)?,
            queue: required(packet, "Queue")?,
            member_name: optional(packet, "MemberName"),
            interface: required(packet, "Interface")?,
            hold_time: number(packet, "HoldTime")?,
            ring_time: number(packet, "RingTime")?,
            talk_time: number(packet, "TalkTime")?,
            reason: optional(packet, "Reason"),
        })
    }
}

/// `PresenceStateChange`: a presentity (`CustomPresence:1201`) was written. Sent for every
/// write, changed or not; also the list item of `PresenceStateList`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceStateChange<'a> {
    /// `Presentity`, e.g. `CustomPresence:1201`.
    pub presentity: Cow<'a, str>,
    /// `Status`: `not_set`, `unavailable`, `available`, `away`, `xa`, `chat` or `dnd`.
    pub status: Cow<'a, str>,
    /// `Subtype`, unescaped (this event C-escapes it); `None` when empty.
    pub subtype: Option<Cow<'a, str>>,
    /// `Message`, unescaped; `None` when empty.
    pub message: Option<Cow<'a, str>>,
}

impl<'a> PresenceStateChange<'a> {
    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<PresenceStateChange<'a>, ViewError> {
        expect_event(
            packet,
            &["PresenceStateChange"],
            "PresenceStateChange event",
        )?;
        Ok(PresenceStateChange {
            presentity: required(packet, "Presentity")?,
            status: required(packet, "Status")?,
            subtype: optional(packet, "Subtype").map(unescape_c),
            message: optional(packet, "Message").map(unescape_c),
        })
    }
}

/// `PresenceStatus`: the presence part of a hint really changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceStatus<'a> {
    /// `Exten`.
    pub exten: Cow<'a, str>,
    /// `Context`.
    pub context: Option<Cow<'a, str>>,
    /// `Hint`, e.g. `Custom:1201,CustomPresence:1201`.
    pub hint: Option<Cow<'a, str>>,
    /// `Status`, as in [`PresenceStateChange::status`].
    pub status: Cow<'a, str>,
    /// `Subtype`, raw (this event does not escape it); `None` when empty.
    pub subtype: Option<Cow<'a, str>>,
    /// `Message`, raw; `None` when empty.
    pub message: Option<Cow<'a, str>>,
}

impl<'a> PresenceStatus<'a> {
    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<PresenceStatus<'a>, ViewError> {
        expect_event(packet, &["PresenceStatus"], "PresenceStatus event")?;
        Ok(PresenceStatus {
            exten: required(packet, "Exten")?,
            context: optional(packet, "Context"),
            hint: optional(packet, "Hint"),
            status: required(packet, "Status")?,
            subtype: optional(packet, "Subtype"),
            message: optional(packet, "Message"),
        })
    }

    /// The presence provider of the hint (the part after the comma), e.g.
    /// `CustomPresence:1201`.
    pub fn presentity(&self) -> Option<&str> {
        self.hint
            .as_deref()
            .and_then(|h| h.split_once(','))
            .map(|(_, p)| p.trim())
            .filter(|p| !p.is_empty())
    }
}

/// `Newchannel`, `Newstate` or `Hangup`: a channel appeared, changed state, or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEvent<'a> {
    /// The channel.
    pub channel: ChannelSnapshot<'a>,
    /// `Cause` (hangup only): the Q.850 cause code.
    pub cause: Option<i32>,
    /// `Cause-txt` (hangup only).
    pub cause_txt: Option<Cow<'a, str>>,
}

impl<'a> ChannelEvent<'a> {
    /// The event names this view reads.
    pub const EVENTS: [&'static str; 3] = ["Newchannel", "Newstate", "Hangup"];

    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<ChannelEvent<'a>, ViewError> {
        expect_event(
            packet,
            &Self::EVENTS,
            "Newchannel, Newstate or Hangup event",
        )?;
        Ok(ChannelEvent {
            channel: ChannelSnapshot::read(packet, &PLAIN)?,
            cause: number(packet, "Cause")?,
            cause_txt: optional(packet, "Cause-txt"),
        })
    }
}

/// `DialBegin` or `DialEnd`: a channel dials another (the `Dest` channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial<'a> {
    /// The calling channel; absent when nothing dials (an originate).
    pub caller: Option<ChannelSnapshot<'a>>,
    /// The dialled channel.
    pub dest: ChannelSnapshot<'a>,
    /// `DialString` (begin).
    pub dial_string: Option<Cow<'a, str>>,
    /// `DialStatus` (end): `ANSWER`, `BUSY`, `NOANSWER`, `CANCEL`...
    pub dial_status: Option<Cow<'a, str>>,
}

impl<'a> Dial<'a> {
    /// The event names this view reads.
    pub const EVENTS: [&'static str; 2] = ["DialBegin", "DialEnd"];

    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<Dial<'a>, ViewError> {
        expect_event(packet, &Self::EVENTS, "DialBegin or DialEnd event")?;
        Ok(Dial {
            caller: ChannelSnapshot::read_if_present(packet, &PLAIN)?,
            dest: ChannelSnapshot::read(packet, &DEST)?,
            dial_string: optional(packet, "DialString"),
            dial_status: optional(packet, "DialStatus"),
        })
    }
}

/// `BridgeEnter`: a channel joined a bridge (a call is connected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeEnter<'a> {
    /// `BridgeUniqueid`.
    pub bridge_uniqueid: Cow<'a, str>,
    /// `BridgeNumChannels` after the join.
    pub bridge_num_channels: Option<u32>,
    /// The channel that joined.
    pub channel: ChannelSnapshot<'a>,
}

impl<'a> BridgeEnter<'a> {
    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<BridgeEnter<'a>, ViewError> {
        expect_event(packet, &["BridgeEnter"], "BridgeEnter event")?;
        Ok(BridgeEnter {
            bridge_uniqueid: required(packet, "BridgeUniqueid")?,
            bridge_num_channels: number(packet, "BridgeNumChannels")?,
            channel: ChannelSnapshot::read(packet, &PLAIN)?,
        })
    }
}

/// `CoreShowChannel`: one live channel, a list item of `CoreShowChannels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreShowChannel<'a> {
    /// The channel.
    pub channel: ChannelSnapshot<'a>,
    /// `Application` running now, e.g. `Queue`, `AppQueue`, `Dial`.
    pub application: Option<Cow<'a, str>>,
    /// `ApplicationData`, e.g. `sales,,,,30`.
    pub application_data: Option<Cow<'a, str>>,
    /// `Duration` in seconds (the wire writes `HH:MM:SS`).
    pub duration_s: Option<u64>,
    /// `BridgeId`; `None` when the channel is in no bridge.
    pub bridge_id: Option<Cow<'a, str>>,
}

impl<'a> CoreShowChannel<'a> {
    /// Builds the view, or says which header is wrong.
    pub fn from_packet(packet: &'a Packet) -> Result<CoreShowChannel<'a>, ViewError> {
        expect_event(packet, &["CoreShowChannel"], "CoreShowChannel event")?;
        let duration_s = match packet.get("Duration") {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(hms(&v).ok_or_else(|| ViewError::InvalidNumber {
                header: "Duration",
                value: v.clone().into_owned(),
            })?),
        };
        Ok(CoreShowChannel {
            channel: ChannelSnapshot::read(packet, &PLAIN)?,
            application: optional(packet, "Application"),
            application_data: optional(packet, "ApplicationData"),
            duration_s,
            bridge_id: optional(packet, "BridgeId"),
        })
    }
}

/// `HH:MM:SS` (hours may exceed 99) to seconds.
fn hms(v: &str) -> Option<u64> {
    let mut parts = v.trim().split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (h, m, s): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    if m >= 60 || s >= 60 {
        return None;
    }
    h.checked_mul(3600)?.checked_add(m * 60 + s)
}

/// A packet sorted into the call-center events this project acts on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallCenterEvent<'a> {
    /// `QueueParams` list item.
    QueueParams(QueueParams<'a>),
    /// `QueueMember` list item.
    QueueMember(QueueMemberState<'a>),
    /// `QueueEntry` list item.
    QueueEntry(QueueEntry<'a>),
    /// `QueueMemberAdded`.
    QueueMemberAdded(QueueMemberState<'a>),
    /// `QueueMemberRemoved`.
    QueueMemberRemoved(QueueMemberState<'a>),
    /// `QueueMemberStatus`.
    QueueMemberStatus(QueueMemberState<'a>),
    /// `QueueMemberPause`.
    QueueMemberPause(QueueMemberState<'a>),
    /// `QueueMemberPenalty`.
    QueueMemberPenalty(QueueMemberState<'a>),
    /// `QueueCallerJoin`.
    QueueCallerJoin(QueueCaller<'a>),
    /// `QueueCallerLeave`.
    QueueCallerLeave(QueueCaller<'a>),
    /// `QueueCallerAbandon`.
    QueueCallerAbandon(QueueCaller<'a>),
    /// `AgentCalled`.
    AgentCalled(AgentEvent<'a>),
    /// `AgentConnect`.
    AgentConnect(AgentEvent<'a>),
    /// `AgentComplete`.
    AgentComplete(AgentEvent<'a>),
    /// `AgentRingNoAnswer`.
    AgentRingNoAnswer(AgentEvent<'a>),
    /// `AgentDump`.
    AgentDump(AgentEvent<'a>),
    /// `PresenceStateChange` (event or `PresenceStateList` item).
    PresenceStateChange(PresenceStateChange<'a>),
    /// `PresenceStatus`.
    PresenceStatus(PresenceStatus<'a>),
    /// `Newchannel`.
    Newchannel(ChannelEvent<'a>),
    /// `Newstate`.
    Newstate(ChannelEvent<'a>),
    /// `Hangup`.
    Hangup(ChannelEvent<'a>),
    /// `DialBegin`.
    DialBegin(Dial<'a>),
    /// `DialEnd`.
    DialEnd(Dial<'a>),
    /// `BridgeEnter`.
    BridgeEnter(BridgeEnter<'a>),
    /// `CoreShowChannel` list item.
    CoreShowChannel(CoreShowChannel<'a>),
}

impl<'a> CallCenterEvent<'a> {
    /// Every event name [`CallCenterEvent::classify`] recognises.
    pub const NAMES: [&'static str; 25] = [
        "QueueParams",
        "QueueMember",
        "QueueEntry",
        "QueueMemberAdded",
        "QueueMemberRemoved",
        "QueueMemberStatus",
        "QueueMemberPause",
        "QueueMemberPenalty",
        "QueueCallerJoin",
        "QueueCallerLeave",
        "QueueCallerAbandon",
        "AgentCalled",
        "AgentConnect",
        "AgentComplete",
        "AgentRingNoAnswer",
        "AgentDump",
        "PresenceStateChange",
        "PresenceStatus",
        "Newchannel",
        "Newstate",
        "Hangup",
        "DialBegin",
        "DialEnd",
        "BridgeEnter",
        "CoreShowChannel",
    ];

    /// Sorts `packet`: `None` when it is none of these events, `Some(Err)` when it is one but a
    /// header is missing or malformed (the error names the header).
    pub fn classify(packet: &'a Packet) -> Option<Result<CallCenterEvent<'a>, ViewError>> {
        if packet.kind() != Kind::Event {
            return None;
        }
        let name = packet.name_bytes()?;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        use CallCenterEvent as E;
        let member = |wrap: fn(QueueMemberState<'a>) -> E<'a>| {
            QueueMemberState::from_packet(packet).map(wrap)
        };
        let caller =
            |wrap: fn(QueueCaller<'a>) -> E<'a>| QueueCaller::from_packet(packet).map(wrap);
        let agent = |wrap: fn(AgentEvent<'a>) -> E<'a>| AgentEvent::from_packet(packet).map(wrap);
        let channel =
            |wrap: fn(ChannelEvent<'a>) -> E<'a>| ChannelEvent::from_packet(packet).map(wrap);
        let dial = |wrap: fn(Dial<'a>) -> E<'a>| Dial::from_packet(packet).map(wrap);
        Some(if is("QueueParams") {
            QueueParams::from_packet(packet).map(E::QueueParams)
        } else if is("QueueMember") {
            member(E::QueueMember)
        } else if is("QueueEntry") {
            QueueEntry::from_packet(packet).map(E::QueueEntry)
        } else if is("QueueMemberAdded") {
            member(E::QueueMemberAdded)
        } else if is("QueueMemberRemoved") {
            member(E::QueueMemberRemoved)
        } else if is("QueueMemberStatus") {
            member(E::QueueMemberStatus)
        } else if is("QueueMemberPause") {
            member(E::QueueMemberPause)
        } else if is("QueueMemberPenalty") {
            member(E::QueueMemberPenalty)
        } else if is("QueueCallerJoin") {
            caller(E::QueueCallerJoin)
        } else if is("QueueCallerLeave") {
            caller(E::QueueCallerLeave)
        } else if is("QueueCallerAbandon") {
            caller(E::QueueCallerAbandon)
        } else if is("AgentCalled") {
            agent(E::AgentCalled)
        } else if is("AgentConnect") {
            agent(E::AgentConnect)
        } else if is("AgentComplete") {
            agent(E::AgentComplete)
        } else if is("AgentRingNoAnswer") {
            agent(E::AgentRingNoAnswer)
        } else if is("AgentDump") {
            agent(E::AgentDump)
        } else if is("PresenceStateChange") {
            PresenceStateChange::from_packet(packet).map(E::PresenceStateChange)
        } else if is("PresenceStatus") {
            PresenceStatus::from_packet(packet).map(E::PresenceStatus)
        } else if is("Newchannel") {
            channel(E::Newchannel)
        } else if is("Newstate") {
            channel(E::Newstate)
        } else if is("Hangup") {
            channel(E::Hangup)
        } else if is("DialBegin") {
            dial(E::DialBegin)
        } else if is("DialEnd") {
            dial(E::DialEnd)
        } else if is("BridgeEnter") {
            BridgeEnter::from_packet(packet).map(E::BridgeEnter)
        } else if is("CoreShowChannel") {
            CoreShowChannel::from_packet(packet).map(E::CoreShowChannel)
        } else {
            return None;
        })
    }
}

#[cfg(test)]
mod tests;
