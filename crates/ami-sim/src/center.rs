//! The call center on the shared PBX: the queue, presence and queued-call hooks of
//! [`Simulator`], the answers to `QueueStatus`, `QueueAdd`, `QueueRemove`, `QueuePause`,
//! `PresenceStateList` and `CoreShowChannels`, and the events each change sends, in the
//! formats of the `j_queue_members`, `l_presence` and `m_channels_list` captures.
//!
//! Every change is made and its events are published under the board's lock, like the hint
//! changes, so lists and events stay consistent.

use std::time::{SystemTime, UNIX_EPOCH};

use ami_proto::Packet;

use crate::callcenter::{Call, CallCenter, CallPhase, Channel, Member, Presence, QueueError};
use crate::model::Board;
use crate::states::DeviceState;
use crate::wire::{self, ChannelFields, MemberFields, PresenceFields, QueueFields};
use crate::{Audience, Shared, Simulator};

/// Whether a hook's change is announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// With its events, as the PBX sends them live.
    Events,
    /// Without any event: the PBX changed while the client's link was down; only the next
    /// list (`QueueStatus`, `PresenceStateList`, `CoreShowChannels`) shows it.
    Silently,
}

/// A queue member to add: `QueueAdd` with `Queue`, `Interface`, `StateInterface`,
/// `MemberName` and `Penalty`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMember {
    /// The queue (created when it does not exist yet).
    pub queue: String,
    /// The member's interface, e.g. `Local/1001@agents-ring`.
    pub interface: String,
    /// The device whose state is the member's status, e.g. `Custom:1001`.
    pub state_interface: String,
    /// `MemberName`, e.g. `Alice`.
    pub name: String,
    /// `Penalty`.
    pub penalty: u32,
}

impl SimMember {
    /// The member of the captures for agent `extension`: interface
    /// `Local/<extension>@agents-ring`, state interface `Custom:<extension>`, penalty 0.
    pub fn agent(queue: impl Into<String>, extension: &str, name: impl Into<String>) -> SimMember {
        SimMember {
            queue: queue.into(),
            interface: format!("Local/{extension}@agents-ring"),
            state_interface: format!("Custom:{extension}"),
            name: name.into(),
            penalty: 0,
        }
    }

    /// The same member with another penalty.
    pub fn with_penalty(mut self, penalty: u32) -> SimMember {
        self.penalty = penalty;
        self
    }
}

/// One step of a queued call (see [`Simulator::queue_call`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallStep {
    /// Ring the member with this interface (`AgentCalled`, `DialBegin`; its phone rings).
    Ring(String),
    /// The rung member does not answer (`AgentRingNoAnswer`, `DialEnd NOANSWER`); the caller
    /// keeps waiting.
    NoAnswer,
    /// The rung member answers (`DialEnd ANSWER`, `QueueCallerLeave`, `AgentConnect`,
    /// `BridgeEnter` twice; its phone is in use).
    Answer,
    /// The connected call ends (`AgentComplete`, `Hangup` of both channels; the phone is idle).
    HangUp,
    /// The caller hangs up while waiting or ringing (`QueueCallerAbandon`, `Hangup`).
    Abandon,
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Events collected under the lock, by audience, in wire order.
#[derive(Default)]
pub(crate) struct Parts(Vec<(Audience, Vec<u8>)>);

impl Parts {
    fn push(&mut self, audience: Audience, f: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::new();
        f(&mut out);
        self.0.push((audience, out));
    }

    fn call(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        self.push(Audience::CallReaders, f);
    }

    fn agent(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        self.push(Audience::AgentReaders, f);
    }
}

/// The state of a device as the PBX knows it (`NOT_INUSE` for one no hint holds).
fn device_state(board: &Board, name: &str) -> DeviceState {
    board
        .agents
        .iter()
        .flat_map(|a| &a.devices)
        .find(|d| d.name.eq_ignore_ascii_case(name))
        .map_or(DeviceState::NotInUse, |d| d.state)
}

fn member_fields<'a>(board: &Board, queue: &'a str, m: &'a Member) -> MemberFields<'a> {
    MemberFields {
        queue,
        name: &m.name,
        interface: &m.interface,
        state_interface: &m.state_interface,
        penalty: m.penalty,
        calls_taken: m.calls_taken,
        last_call: m.last_call,
        last_pause: m.last_pause,
        login_time: m.login_time,
        in_call: m.in_call,
        status: device_state(board, &m.state_interface),
        paused: m.paused,
        reason: &m.reason,
    }
}

fn member_event(board: &Board, parts: &mut Parts, event: &str, queue: &str, interface: &str) {
    if let Some(m) = board.cc.queue(queue).and_then(|q| q.member(interface)) {
        let f = member_fields(board, queue, m);
        parts.agent(|o| wire::queue_member_event(o, event, &f));
    }
}

/// `QueueMemberStatus` of every membership whose state interface is `device`.
pub(crate) fn member_status_events(board: &Board, device: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !board.cc.is_member_device(device) {
        return out;
    }
    for q in &board.cc.queues {
        for m in &q.members {
            if m.state_interface.eq_ignore_ascii_case(device) {
                let f = member_fields(board, &q.name, m);
                wire::queue_member_event(&mut out, "QueueMemberStatus", &f);
            }
        }
    }
    out
}

fn channel_fields(c: &Channel) -> ChannelFields<'_> {
    ChannelFields {
        channel: &c.name,
        state: c.state,
        caller_num: &c.caller_num,
        caller_name: &c.caller_name,
        connected_num: &c.connected_num,
        connected_name: &c.connected_name,
        context: &c.context,
        exten: &c.exten,
        priority: c.priority,
        uniqueid: &c.uniqueid,
        linkedid: &c.linkedid,
    }
}

fn avail_event(cc: &mut CallCenter, parts: &mut Parts, queue: &str) {
    if let Some(avail) = cc.update_avail(queue) {
        let device = format!("Queue:{queue}_avail");
        let state = if avail {
            DeviceState::NotInUse
        } else {
            DeviceState::InUse
        };
        parts.call(|o| wire::device_state_change(o, &device, state));
    }
}

fn pause_device_event(parts: &mut Parts, queue: &str, interface: &str, paused: bool) {
    let device = format!("Queue:{queue}_pause_{interface}");
    let state = if paused {
        DeviceState::InUse
    } else {
        DeviceState::NotInUse
    };
    parts.call(|o| wire::device_state_change(o, &device, state));
}

/// Sets a hint device and collects its events (ExtensionStatus, DeviceStateChange,
/// QueueMemberStatus).
fn set_device(board: &mut Board, parts: &mut Parts, device: &str, state: DeviceState) {
    let changes = board.set_device(device, state);
    for change in changes {
        let bytes = crate::render(board, change);
        parts.0.push((Audience::CallReaders, bytes));
        if change.device_changed {
            let name = board.agents[change.agent].devices[change.device]
                .name
                .clone();
            let bytes = member_status_events(board, &name);
            parts.0.push((Audience::AgentReaders, bytes));
        }
    }
}

pub(crate) fn add_member(
    board: &mut Board,
    parts: &mut Parts,
    m: &SimMember,
    create: bool,
    now: u64,
) -> Result<(), QueueError> {
    let member = Member {
        interface: m.interface.clone(),
        state_interface: m.state_interface.clone(),
        name: m.name.clone(),
        penalty: m.penalty,
        paused: false,
        reason: String::new(),
        calls_taken: 0,
        last_call: 0,
        last_pause: 0,
        login_time: now,
        in_call: false,
    };
    board.cc.add_member(&m.queue, member, create)?;
    let queue = board
        .cc
        .queue(&m.queue)
        .map_or_else(|| m.queue.clone(), |q| q.name.clone());
    pause_device_event(parts, &queue, &m.interface, false);
    member_event(board, parts, "QueueMemberAdded", &queue, &m.interface);
    avail_event(&mut board.cc, parts, &queue);
    Ok(())
}

pub(crate) fn remove_member(
    board: &mut Board,
    parts: &mut Parts,
    queue: &str,
    interface: &str,
) -> Result<(), QueueError> {
    let name = board
        .cc
        .queue(queue)
        .map_or_else(|| queue.to_owned(), |q| q.name.clone());
    let m = board.cc.remove_member(queue, interface)?;
    let f = member_fields(board, &name, &m);
    parts.agent(|o| wire::queue_member_event(o, "QueueMemberRemoved", &f));
    avail_event(&mut board.cc, parts, &name);
    Ok(())
}

pub(crate) fn pause(
    board: &mut Board,
    parts: &mut Parts,
    interface: &str,
    queue: Option<&str>,
    paused: bool,
    reason: &str,
    now: u64,
) -> Result<(), QueueError> {
    let queues = board.cc.pause(interface, queue, paused, reason, now)?;
    for q in queues {
        pause_device_event(parts, &q, interface, paused);
        member_event(board, parts, "QueueMemberPause", &q, interface);
        avail_event(&mut board.cc, parts, &q);
    }
    Ok(())
}

pub(crate) fn set_presence(board: &mut Board, parts: &mut Parts, provider: &str, value: Presence) {
    let changed = board.cc.set_presence(provider, value.clone());
    let v = PresenceFields {
        state: &value.state,
        subtype: &value.subtype,
        message: &value.message,
    };
    if changed {
        // Hints that include the provider (`Custom:1201,CustomPresence:1201`).
        for a in &board.agents {
            let has = a
                .hint
                .split(',')
                .skip(1)
                .any(|p| p.eq_ignore_ascii_case(provider));
            if has {
                parts.call(|o| wire::presence_status(o, &a.extension, &a.context, &a.hint, &v));
            }
        }
    }
    parts.call(|o| wire::presence_state_change(o, provider, &v));
}

/// The caller's and the member's channel of a call, and the member's name and extension.
fn member_of<'a>(cc: &'a CallCenter, call: &Call, interface: &str) -> Option<&'a Member> {
    cc.queue(&call.queue).and_then(|q| q.member(interface))
}

fn step(
    board: &mut Board,
    parts: &mut Parts,
    id: u64,
    step: &CallStep,
    now: u64,
    epoch: u64,
) -> Result<(), QueueError> {
    let call = board.cc.call(id).cloned().ok_or(QueueError::NoSuchCall)?;
    match step {
        CallStep::Ring(interface) => {
            let m = member_of(&board.cc, &call, interface)
                .cloned()
                .ok_or(QueueError::InterfaceNotFound)?;
            let exten = m
                .interface
                .strip_prefix("Local/")
                .and_then(|s| s.split('@').next())
                .unwrap_or(&m.name)
                .to_owned();
            board.cc.ring(id, interface, &exten, now, epoch)?;
            let call = board.cc.call(id).cloned().ok_or(QueueError::NoSuchCall)?;
            if let Some(agent) = &call.agent {
                let c = channel_fields(&call.caller);
                let a = channel_fields(agent);
                parts.call(|o| wire::channel_event(o, "Newchannel", &a, None));
                parts.call(|o| {
                    wire::dial_event(o, "DialBegin", &c, &a, ("DialString", &m.interface))
                });
                parts.agent(|o| {
                    wire::agent_event(
                        o,
                        "AgentCalled",
                        &c,
                        &a,
                        &call.queue,
                        (&m.interface, &m.name),
                        &[],
                    )
                });
            }
            set_device(board, parts, &m.state_interface, DeviceState::Ringing);
        }
        CallStep::NoAnswer => {
            let (interface, since, agent) = board.cc.no_answer(id)?;
            let m = member_of(&board.cc, &call, &interface).cloned();
            let c = channel_fields(&call.caller);
            let a = channel_fields(&agent);
            let name = m.as_ref().map_or("", |m| m.name.as_str());
            let ring = now.saturating_sub(since).to_string();
            parts.call(|o| wire::dial_event(o, "DialEnd", &c, &a, ("DialStatus", "NOANSWER")));
            parts.agent(|o| {
                wire::agent_event(
                    o,
                    "AgentRingNoAnswer",
                    &c,
                    &a,
                    &call.queue,
                    (&interface, name),
                    &[("RingTime", ring)],
                )
            });
            parts.call(|o| wire::channel_event(o, "Hangup", &a, Some((16, "Normal Clearing"))));
            if let Some(m) = m {
                set_device(board, parts, &m.state_interface, DeviceState::NotInUse);
            }
        }
        CallStep::Answer => {
            let CallPhase::Ringing { interface, since } = call.phase.clone() else {
                return Err(QueueError::NoSuchCall);
            };
            let (position, count) = board.cc.position(id).ok_or(QueueError::NoSuchCall)?;
            let bridge = format!("{:08x}-0000-4000-8000-{:012x}", call.id, epoch);
            board.cc.answer(id, now, bridge.clone())?;
            let call = board.cc.call(id).cloned().ok_or(QueueError::NoSuchCall)?;
            let m = member_of(&board.cc, &call, &interface).cloned();
            let name = m.as_ref().map_or("", |m| m.name.as_str());
            if let Some(agent) = &call.agent {
                let c = channel_fields(&call.caller);
                let a = channel_fields(agent);
                parts.call(|o| wire::channel_event(o, "Newstate", &a, None));
                parts.call(|o| wire::dial_event(o, "DialEnd", &c, &a, ("DialStatus", "ANSWER")));
                let left = [
                    ("Count", u64::from(count - 1)),
                    ("Position", u64::from(position)),
                ];
                parts.agent(|o| {
                    wire::queue_caller_event(o, "QueueCallerLeave", &c, &call.queue, &left)
                });
                let hold = now.saturating_sub(call.joined).to_string();
                let ring = now.saturating_sub(since).to_string();
                parts.agent(|o| {
                    wire::agent_event(
                        o,
                        "AgentConnect",
                        &c,
                        &a,
                        &call.queue,
                        (&interface, name),
                        &[("HoldTime", hold), ("RingTime", ring)],
                    )
                });
                parts.call(|o| wire::bridge_enter(o, &bridge, 1, &c));
                parts.call(|o| wire::bridge_enter(o, &bridge, 2, &a));
            }
            if let Some(m) = m {
                set_device(board, parts, &m.state_interface, DeviceState::InUse);
            }
        }
        CallStep::HangUp => {
            let done = board.cc.complete(id, now)?;
            let CallPhase::Connected { interface, since } = &done.phase else {
                return Err(QueueError::NoSuchCall);
            };
            let m = member_of(&board.cc, &done, interface).cloned();
            let name = m.as_ref().map_or("", |m| m.name.as_str());
            if let Some(agent) = &done.agent {
                let c = channel_fields(&done.caller);
                let a = channel_fields(agent);
                let tail = [
                    ("HoldTime", since.saturating_sub(done.joined).to_string()),
                    ("TalkTime", now.saturating_sub(*since).to_string()),
                    ("Reason", "caller".to_owned()),
                ];
                parts.agent(|o| {
                    wire::agent_event(
                        o,
                        "AgentComplete",
                        &c,
                        &a,
                        &done.queue,
                        (interface, name),
                        &tail,
                    )
                });
                parts.call(|o| wire::channel_event(o, "Hangup", &c, Some((16, "Normal Clearing"))));
                parts.call(|o| wire::channel_event(o, "Hangup", &a, Some((16, "Normal Clearing"))));
            }
            if let Some(m) = m {
                set_device(board, parts, &m.state_interface, DeviceState::NotInUse);
            }
        }
        CallStep::Abandon => {
            let ringing = match &call.phase {
                CallPhase::Ringing { interface, since } => Some((interface.clone(), *since)),
                CallPhase::Waiting => None,
                CallPhase::Connected { .. } => return Err(QueueError::NoSuchCall),
            };
            let (done, position) = board.cc.abandon(id, now)?;
            let c = channel_fields(&done.caller);
            if let (Some((interface, _)), Some(agent)) = (&ringing, &done.agent) {
                let a = channel_fields(agent);
                parts.call(|o| wire::dial_event(o, "DialEnd", &c, &a, ("DialStatus", "CANCEL")));
                parts.call(|o| wire::channel_event(o, "Hangup", &a, Some((16, "Normal Clearing"))));
                if let Some(m) = board
                    .cc
                    .queue(&done.queue)
                    .and_then(|q| q.member(interface))
                {
                    let si = m.state_interface.clone();
                    set_device(board, parts, &si, DeviceState::NotInUse);
                }
            }
            let tail = [
                ("Position", u64::from(position)),
                ("OriginalPosition", u64::from(done.original_position)),
                ("HoldTime", now.saturating_sub(done.joined)),
            ];
            parts.agent(|o| {
                wire::queue_caller_event(o, "QueueCallerAbandon", &c, &done.queue, &tail)
            });
            parts.call(|o| wire::channel_event(o, "Hangup", &c, Some((16, "Normal Clearing"))));
        }
    }
    Ok(())
}

/// Puts the first 200 agents into the queues of their departments (the sample roster's, or
/// round-robin for other extensions; every fourth agent also helps in `support` with
/// penalty 2), adds `CustomPresence:<ext>` to their hints and makes them `available`,
/// silently: the demo's call center at the start of the shift.
pub(crate) fn staff(board: &mut Board) {
    const STAFF_MAX: usize = 200;
    const QUEUES: [&str; 4] = ["sales", "support", "billing", "retention"];
    for q in QUEUES {
        board.cc.ensure_queue(q);
    }
    let now = epoch_now();
    let agents: Vec<(String, String)> = board
        .agents
        .iter()
        .map(|a| {
            let device = a
                .devices
                .first()
                .map_or_else(String::new, |d| d.name.clone());
            (a.extension.clone(), device)
        })
        .collect();
    let mut parts = Parts::default();
    // A load test's 100,000 agents are not all on shift: the first few hundred staff the
    // queues, the others only move through the call cycle.
    for (i, (ext, device)) in agents.iter().take(STAFF_MAX).enumerate() {
        let sample = crate::sample_agents().find(|s| s.extension == ext.as_str());
        let name = sample.map_or_else(|| format!("Agent {ext}"), |s| s.name.to_owned());
        let queue = sample
            .map(|s| s.department.to_ascii_lowercase())
            .filter(|d| QUEUES.contains(&d.as_str()))
            .unwrap_or_else(|| QUEUES[i % QUEUES.len()].to_owned());
        let mut member = SimMember::agent(queue.clone(), ext, name);
        member.state_interface = device.clone();
        // Refusals (a duplicate extension) leave the roster as it is.
        let _ = add_member(board, &mut parts, &member, true, now);
        if i % 4 == 3 && queue != "support" {
            member.queue = "support".to_owned();
            member.penalty = 2;
            let _ = add_member(board, &mut parts, &member, true, now);
        }
        let provider = format!("CustomPresence:{ext}");
        if let Some(agent) = board.agents.get_mut(i)
            && !agent.hint.contains(',')
        {
            agent.hint.push(',');
            agent.hint.push_str(&provider);
        }
        let available = Presence {
            state: "available".to_owned(),
            subtype: String::new(),
            message: String::new(),
        };
        board.cc.set_presence(&provider, available);
    }
}

/// One move of the call-center script (`shift`), with its events.
pub(crate) fn play(board: &mut Board, parts: &mut Parts, epoch: u64) {
    use crate::shift::Move;
    let providers: Vec<String> = board.cc.presence.keys().cloned().collect();
    let mut rng = board.shift_rng.clone();
    let mv = crate::shift::next(
        &board.cc,
        &providers,
        |si| device_state(board, si) == DeviceState::NotInUse,
        &mut rng,
    );
    board.shift_rng = rng;
    let now = epoch_now();
    // A move the model refuses (the state moved under it) is skipped; the next tick picks
    // again from the current state.
    let _ = match mv {
        None => Ok(()),
        Some(Move::Pause { interface, reason }) => {
            pause(board, parts, &interface, None, true, &reason, now)
        }
        Some(Move::Resume { interface }) => pause(board, parts, &interface, None, false, "", now),
        Some(Move::Presence {
            provider,
            state,
            message,
        }) => {
            let value = Presence {
                state,
                subtype: String::new(),
                message,
            };
            set_presence(board, parts, &provider, value);
            Ok(())
        }
        Some(Move::NewCall {
            queue,
            number,
            name,
        }) => {
            join(board, parts, &queue, &number, &name, now, epoch);
            Ok(())
        }
        Some(Move::Ring { call, interface }) => {
            step(board, parts, call, &CallStep::Ring(interface), now, epoch)
        }
        Some(Move::NoAnswer { call }) => step(board, parts, call, &CallStep::NoAnswer, now, epoch),
        Some(Move::Answer { call }) => step(board, parts, call, &CallStep::Answer, now, epoch),
        Some(Move::HangUp { call }) => step(board, parts, call, &CallStep::HangUp, now, epoch),
        Some(Move::Abandon { call }) => step(board, parts, call, &CallStep::Abandon, now, epoch),
    };
}

fn join(
    board: &mut Board,
    parts: &mut Parts,
    queue: &str,
    number: &str,
    name: &str,
    now: u64,
    epoch: u64,
) -> u64 {
    let id = board.cc.join(queue, number, name, now, epoch);
    if let (Some(call), Some((position, count))) = (board.cc.call(id), board.cc.position(id)) {
        let c = channel_fields(&call.caller);
        parts.call(|o| wire::channel_event(o, "Newchannel", &c, None));
        let tail = [
            ("Position", u64::from(position)),
            ("Count", u64::from(count)),
        ];
        parts.agent(|o| wire::queue_caller_event(o, "QueueCallerJoin", &c, &call.queue, &tail));
    }
    id
}

impl Shared {
    /// Runs a call-center change under the board's lock and publishes its events (unless
    /// silent), all with one new board counter.
    pub(crate) fn cc_change<T>(
        &self,
        delivery: Delivery,
        f: impl FnOnce(&mut Board, &mut Parts) -> T,
    ) -> T {
        let mut board = self.board();
        let mut parts = Parts::default();
        let result = f(&mut board, &mut parts);
        if !parts.0.is_empty() {
            board.seq += 1;
        }
        if delivery == Delivery::Events {
            for (audience, bytes) in parts.0 {
                self.send(&board, audience, bytes);
            }
        }
        result
    }
}

impl Simulator {
    /// Adds a queue member (creating the queue), as `QueueAdd` does: `DeviceStateChange` of
    /// `Queue:<queue>_pause_<interface>`, `QueueMemberAdded`, and `Queue:<queue>_avail` when
    /// the queue had nobody to take calls. `Err(AlreadyThere)` when it is a member already.
    pub fn add_queue_member(
        &self,
        member: &SimMember,
        delivery: Delivery,
    ) -> Result<(), QueueError> {
        let now = epoch_now();
        self.shared
            .cc_change(delivery, |b, p| add_member(b, p, member, true, now))
    }

    /// Removes a queue member, as `QueueRemove` does (`QueueMemberRemoved`).
    pub fn remove_queue_member(
        &self,
        queue: &str,
        interface: &str,
        delivery: Delivery,
    ) -> Result<(), QueueError> {
        self.shared
            .cc_change(delivery, |b, p| remove_member(b, p, queue, interface))
    }

    /// Pauses (with `reason`, e.g. `Lunch`) or resumes a member in `queue`, or in every queue
    /// it belongs to when `queue` is `None`, as `QueuePause` does (`QueueMemberPause` per
    /// queue). `Err(InterfaceNotFound)` when it is no member there.
    pub fn pause_queue_member(
        &self,
        interface: &str,
        queue: Option<&str>,
        paused: bool,
        reason: &str,
        delivery: Delivery,
    ) -> Result<(), QueueError> {
        let now = epoch_now();
        self.shared.cc_change(delivery, |b, p| {
            pause(b, p, interface, queue, paused, reason, now)
        })
    }

    /// Pauses a member as [`Simulator::pause_queue_member`] does, but as if the pause had
    /// begun at `since` (epoch seconds): its `LastPause`, e.g. a pause that began long before
    /// a client connected.
    pub fn pause_queue_member_since(
        &self,
        interface: &str,
        queue: Option<&str>,
        reason: &str,
        since: u64,
        delivery: Delivery,
    ) -> Result<(), QueueError> {
        self.shared.cc_change(delivery, |b, p| {
            pause(b, p, interface, queue, true, reason, since)
        })
    }

    /// Writes a presence, as `Setvar PRESENCE_STATE(<provider>)` with
    /// `<state>,<subtype>,<message>` does: `PresenceStatus` for each hint that includes the
    /// provider (only when the value changed), then `PresenceStateChange` (always). `state` is
    /// one of [`PRESENCE_STATES`](crate::PRESENCE_STATES); false (and nothing changes) otherwise.
    pub fn set_presence(
        &self,
        provider: &str,
        state: &str,
        subtype: &str,
        message: &str,
        delivery: Delivery,
    ) -> bool {
        if !crate::PRESENCE_STATES.contains(&state) || state == "not_set" && provider.is_empty() {
            return false;
        }
        let value = Presence {
            state: state.to_owned(),
            subtype: subtype.to_owned(),
            message: message.to_owned(),
        };
        self.shared
            .cc_change(delivery, |b, p| set_presence(b, p, provider, value));
        true
    }

    /// Adds a presence provider to the hint of `extension` (`Custom:1201` becomes
    /// `Custom:1201,CustomPresence:1201`), silently, as a dialplan reload would. False when no
    /// hint has that extension.
    pub fn add_presence_to_hint(&self, extension: &str, provider: &str) -> bool {
        let mut board = self.shared.board();
        let Some(agent) = board.agents.iter_mut().find(|a| a.extension == extension) else {
            return false;
        };
        if !agent.hint.split(',').skip(1).any(|p| p == provider) {
            agent.hint.push(',');
            agent.hint.push_str(provider);
        }
        true
    }

    /// A customer call from `number` (caller name `name`) enters `queue` (created when
    /// missing): `Newchannel` and `QueueCallerJoin`. Returns the call's id for
    /// [`Simulator::queue_call_step`].
    pub fn queue_call(&self, queue: &str, number: &str, name: &str, delivery: Delivery) -> u64 {
        let now = epoch_now();
        let epoch = self.shared.started_epoch;
        self.shared
            .cc_change(delivery, |b, p| join(b, p, queue, number, name, now, epoch))
    }

    /// Moves a queued call one step: ring a member, no answer, answer, hang up, or abandon.
    /// The member's phone (its state interface, when a hint holds it) follows: ringing, in
    /// use, idle. `Err` when the call does not exist or cannot take that step now.
    pub fn queue_call_step(
        &self,
        call: u64,
        next: CallStep,
        delivery: Delivery,
    ) -> Result<(), QueueError> {
        let now = epoch_now();
        let epoch = self.shared.started_epoch;
        self.shared
            .cc_change(delivery, |b, p| step(b, p, call, &next, now, epoch))
    }

    /// Defines a queue (as `queues.conf` does), with no members; nothing is announced. Queues
    /// must exist before `QueueAdd` can add to them; the hooks create them as needed.
    /// `QueueStatus` lists queues in the order they were defined.
    pub fn add_queue(&self, name: &str) {
        self.shared.board().cc.ensure_queue(name);
    }

    /// The ids of the live queued calls, oldest first.
    pub fn queue_calls(&self) -> Vec<u64> {
        self.shared.board().cc.calls.iter().map(|c| c.id).collect()
    }
}

/// The actions of this module, answered into `reply`; `None` when `action` is not one of
/// them. Returns the board counter the answer reflects.
pub(crate) fn answer(
    shared: &Shared,
    action: &str,
    request: &Packet,
    id: Option<&str>,
    reply: &mut Vec<u8>,
) -> Option<u64> {
    let get = |k: &str| {
        request
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let needs_agent = matches!(
        action,
        "queuepause" | "queueadd" | "queueremove" | "queuepenalty"
    );
    if needs_agent && !shared.write.has(crate::session::Mask::AGENT) {
        wire::error(reply, id, "Permission denied");
        return Some(shared.board().seq);
    }
    let now = epoch_now();
    match action {
        "queuestatus" => {
            let board = shared.board();
            queue_status(&board, get("Queue"), get("Member"), id, reply, now);
            Some(board.seq)
        }
        "queuesummary" => {
            let board = shared.board();
            let filter = get("Queue");
            wire::list_start(reply, id, "Queue summary will follow");
            let mut items = 0;
            for q in &board.cc.queues {
                if filter
                    .as_deref()
                    .is_some_and(|f| !q.name.eq_ignore_ascii_case(f))
                {
                    continue;
                }
                let states: Vec<DeviceState> = q
                    .members
                    .iter()
                    .map(|m| device_state(&board, &m.state_interface))
                    .collect();
                let logged_in = states
                    .iter()
                    .filter(|s| !matches!(s, DeviceState::Unavailable | DeviceState::Invalid))
                    .count();
                let available = q
                    .members
                    .iter()
                    .zip(&states)
                    .filter(|(m, s)| !m.paused && !m.in_call && **s == DeviceState::NotInUse)
                    .count();
                let longest = q
                    .waiting
                    .first()
                    .map_or(0, |w| now.saturating_sub(w.joined));
                let counts = [
                    ("LoggedIn", logged_in as u64),
                    ("Available", available as u64),
                    ("Callers", q.waiting.len() as u64),
                    ("HoldTime", q.holdtime),
                    ("TalkTime", q.talktime),
                    ("LongestHoldTime", longest),
                ];
                wire::queue_summary_item(reply, id, &q.name, &counts);
                items += 1;
            }
            wire::list_complete(reply, "QueueSummaryComplete", id, items);
            Some(board.seq)
        }
        "presencestatelist" => {
            let board = shared.board();
            wire::list_start(reply, id, "Presence State Changes will follow");
            for (name, v) in &board.cc.presence {
                let f = PresenceFields {
                    state: &v.state,
                    subtype: &v.subtype,
                    message: &v.message,
                };
                wire::presence_state_item(reply, id, name, &f);
            }
            wire::list_complete(
                reply,
                "PresenceStateListComplete",
                id,
                board.cc.presence.len(),
            );
            Some(board.seq)
        }
        "coreshowchannels" => {
            let board = shared.board();
            wire::list_start(reply, id, "Channels will follow");
            let mut items = 0;
            for call in &board.cc.calls {
                for c in std::iter::once(&call.caller).chain(call.agent.as_ref()) {
                    let f = channel_fields(c);
                    let app = (c.application.as_str(), c.data.as_str());
                    wire::core_show_channel_item(
                        reply,
                        id,
                        &f,
                        app,
                        now.saturating_sub(c.created),
                        &c.bridge,
                    );
                    items += 1;
                }
            }
            wire::list_complete(reply, "CoreShowChannelsComplete", id, items);
            Some(board.seq)
        }
        "queuepause" => {
            let (Some(interface), Some(paused)) = (get("Interface"), get("Paused")) else {
                wire::error(reply, id, "Need 'Interface' and 'Paused' parameters.");
                return Some(shared.board().seq);
            };
            let paused = ["yes", "true", "y", "t", "1", "on"]
                .contains(&paused.to_ascii_lowercase().as_str());
            let queue = get("Queue");
            let reason = get("Reason").unwrap_or_default();
            let r = shared.cc_change(Delivery::Events, |b, p| {
                pause(b, p, &interface, queue.as_deref(), paused, &reason, now)
            });
            // The answer goes first: the events were queued and follow it.
            match r {
                Ok(()) if paused => wire::success(reply, id, "Interface paused successfully"),
                Ok(()) => wire::success(reply, id, "Interface unpaused successfully"),
                Err(e) => wire::error(reply, id, &e.to_string()),
            }
            None
        }
        "queueadd" => {
            let (Some(queue), Some(interface)) = (get("Queue"), get("Interface")) else {
                wire::error(reply, id, "'Queue' and 'Interface' not specified.");
                return None;
            };
            let member = SimMember {
                state_interface: get("StateInterface").unwrap_or_else(|| interface.clone()),
                name: get("MemberName").unwrap_or_else(|| interface.clone()),
                penalty: get("Penalty").and_then(|p| p.parse().ok()).unwrap_or(0),
                queue,
                interface,
            };
            let r = shared.cc_change(Delivery::Events, |b, p| {
                add_member(b, p, &member, false, now)
            });
            match r {
                Ok(()) => wire::success(reply, id, "Added interface to queue"),
                Err(e) => wire::error(reply, id, &e.to_string()),
            }
            None
        }
        "queuepenalty" => {
            let (Some(interface), Some(penalty)) = (
                get("Interface"),
                get("Penalty").and_then(|p| p.parse::<u32>().ok()),
            ) else {
                wire::error(reply, id, "Need 'Interface' and 'Penalty' parameters.");
                return None;
            };
            let queue = get("Queue");
            let r = shared.cc_change(Delivery::Events, |b, p| {
                let queues = b.cc.set_penalty(&interface, queue.as_deref(), penalty)?;
                for q in queues {
                    member_event(b, p, "QueueMemberPenalty", &q, &interface);
                }
                Ok::<(), QueueError>(())
            });
            match r {
                Ok(()) => wire::success(reply, id, "Interface penalty set successfully"),
                Err(_) => wire::error(reply, id, "Invalid interface, queuename or penalty"),
            }
            None
        }
        "queueremove" => {
            let (Some(queue), Some(interface)) = (get("Queue"), get("Interface")) else {
                wire::error(reply, id, "Need 'Queue' and 'Interface' parameters.");
                return None;
            };
            let r = shared.cc_change(Delivery::Events, |b, p| {
                remove_member(b, p, &queue, &interface)
            });
            match r {
                Ok(()) => wire::success(reply, id, "Removed interface from queue"),
                Err(e) => wire::error(reply, id, &e.to_string()),
            }
            None
        }
        _ => None,
    }
}

/// The provider inside `PRESENCE_STATE(<provider>)` (and the field after a comma), if that
/// is the variable.
pub(crate) fn presence_target(variable: &str) -> Option<(&str, Option<&str>)> {
    let open = variable.find('(')?;
    if !variable[..open]
        .trim()
        .eq_ignore_ascii_case("PRESENCE_STATE")
    {
        return None;
    }
    let inner = variable[open + 1..].strip_suffix(')')?.trim();
    Some(match inner.split_once(',') {
        Some((p, field)) => (p.trim(), Some(field.trim())),
        None => (inner, None),
    })
}

/// Decodes standard base64 (option `e` of a presence write); `None` when malformed.
fn base64(text: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for b in text.bytes().filter(|b| *b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// `Setvar PRESENCE_STATE(CustomPresence:x)` with `state[,subtype[,message[,options]]]`
/// (option `e`: subtype and message are base64), as `func_presencestate` writes it. False
/// (`Variable not set`) for another provider or an unknown state.
pub(crate) fn write_presence(shared: &Shared, provider: &str, value: &str) -> bool {
    let custom = provider
        .get(..15)
        .is_some_and(|p| p.eq_ignore_ascii_case("CustomPresence:"));
    let mut fields = value.splitn(4, ',');
    let state = fields.next().unwrap_or("").trim().to_owned();
    let mut subtype = fields.next().unwrap_or("").to_owned();
    let mut message = fields.next().unwrap_or("").to_owned();
    if fields.next().is_some_and(|o| o.contains('e')) {
        match (base64(&subtype), base64(&message)) {
            (Some(s), Some(m)) => (subtype, message) = (s, m),
            _ => return false,
        }
    }
    if !custom || !crate::PRESENCE_STATES.contains(&state.as_str()) {
        return false;
    }
    let value = Presence {
        state,
        subtype,
        message,
    };
    shared.cc_change(Delivery::Events, |b, p| set_presence(b, p, provider, value));
    true
}

/// The answer to `PresenceState` (`Provider`): `State`, and only when non-empty `Subtype` and
/// a second `Message` with the presence message followed by `PresenceMessage`.
pub(crate) fn presence_state_reply(
    shared: &Shared,
    provider: &str,
    id: Option<&str>,
    reply: &mut Vec<u8>,
) {
    let board = shared.board();
    let v = board.cc.presence.get(provider);
    let mut p = wire::Packet::response(reply, "Success", id);
    p.header("Message", "Presence State");
    p.header("State", v.map_or("not_set", |v| v.state.as_str()));
    if let Some(v) = v {
        if !v.subtype.is_empty() {
            p.header("Subtype", &v.subtype);
        }
        if !v.message.is_empty() {
            p.header("Message", &v.message);
            p.header("PresenceMessage", &v.message);
        }
    }
    p.end();
}

/// `Getvar PRESENCE_STATE(<provider>,value|subtype|message)`: the field, empty when unknown.
pub(crate) fn presence_field(shared: &Shared, provider: &str, field: Option<&str>) -> String {
    let board = shared.board();
    let Some(v) = board.cc.presence.get(provider) else {
        return if field.is_none_or(|f| f.eq_ignore_ascii_case("value")) {
            "not_set".to_owned()
        } else {
            String::new()
        };
    };
    match field.map(str::to_ascii_lowercase).as_deref() {
        Some("subtype") => v.subtype.clone(),
        Some("message") => v.message.clone(),
        _ => v.state.clone(),
    }
}

fn queue_status(
    board: &Board,
    queue: Option<String>,
    member: Option<String>,
    id: Option<&str>,
    reply: &mut Vec<u8>,
    now: u64,
) {
    wire::list_start(reply, id, "Queue status will follow");
    let mut items = 0;
    for q in &board.cc.queues {
        if queue
            .as_deref()
            .is_some_and(|f| !q.name.eq_ignore_ascii_case(f))
        {
            continue;
        }
        let f = QueueFields {
            queue: &q.name,
            strategy: &q.strategy,
            calls: q.waiting.len(),
            holdtime: q.holdtime,
            talktime: q.talktime,
            completed: q.completed,
            abandoned: q.abandoned,
            service_level: q.service_level,
            sl_perf: q.sl_perf(),
            sl_perf2: q.sl_perf2(),
        };
        wire::queue_params_item(reply, id, &f);
        items += 1;
        for m in &q.members {
            let wanted = member
                .as_deref()
                .is_none_or(|f| m.interface == f || m.name.eq_ignore_ascii_case(f));
            if wanted {
                wire::queue_member_item(reply, id, &member_fields(board, &q.name, m));
                items += 1;
            }
        }
        for (i, w) in q.waiting.iter().enumerate() {
            if let Some(call) = board.cc.call(w.call) {
                let c = channel_fields(&call.caller);
                let wait = now.saturating_sub(w.joined);
                wire::queue_entry_item(reply, id, &q.name, i as u32 + 1, &c, wait);
                items += 1;
            }
        }
    }
    wire::list_complete(reply, "QueueStatusComplete", id, items);
}
