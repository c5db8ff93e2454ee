//! Maps the call-center AMI views (`ami_proto::callcenter`) to the inputs of the pure tracker
//! (`domain::callcenter`), so that `domain` stays free of AMI and the tracker is fed from one
//! place.
//!
//! Only the translation lives here, and [`CallCenter`], the tracker as the server shares it:
//! which packets to ask for, when to resync and where the tracker's output goes belong to the
//! pipeline.

use std::sync::{Mutex, PoisonError};

use ami_proto::callcenter::{
    AgentEvent, CallCenterEvent, ChannelSnapshot, CoreShowChannel, QueueCaller, QueueMemberState,
};
use ami_proto::views::ExtensionStatus;
use domain::callcenter::{
    AgentInput, CallerInput, ChannelInput, Input, ListKind, MemberInput, PresenceInput,
    QueueParamsInput, QueueStats, Tracker, WaitingInput,
};
use domain::{ExtensionNumber, Timestamp};
use tokio::sync::watch;

/// The call-center tracker as the server shares it: the pipeline feeds it, `GET /api/queues`
/// and the pause handlers read it. The lock is a plain mutex held only for one step of the
/// tracker, never across an `.await`. Every store write of call-center fields the pipeline
/// finishes bumps a counter that handlers waiting for the PBX's confirmation watch.
#[derive(Debug)]
pub struct CallCenter {
    tracker: Mutex<Tracker>,
    written: watch::Sender<u64>,
}

impl Default for CallCenter {
    fn default() -> Self {
        Self {
            tracker: Mutex::new(Tracker::new()),
            written: watch::Sender::new(0),
        }
    }
}

impl CallCenter {
    /// Runs `f` on the tracker.
    pub fn with<R>(&self, f: impl FnOnce(&mut Tracker) -> R) -> R {
        // A panic in a tracker step leaves it as consistent as any step does; go on with it.
        let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut tracker)
    }

    /// Queue statistics as of `now`.
    pub fn queue_stats(&self, now: Timestamp) -> Vec<QueueStats> {
        self.with(|t| t.queue_stats(now))
    }

    /// The (queue, member interface) pairs of `extension`.
    pub fn memberships(&self, extension: &ExtensionNumber) -> Vec<(String, String)> {
        self.with(|t| t.memberships(extension))
    }

    /// A receiver that sees every finished call-center write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Called by the pipeline after call-center fields were written to the store.
    pub fn note_written(&self) {
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The tracker input for one call-center event, or `None` for an event the tracker does not
/// use (a `PresenceStatus` whose hint names no presence provider).
pub fn to_input(event: &CallCenterEvent<'_>) -> Option<Input> {
    use CallCenterEvent as E;
    Some(match event {
        E::QueueParams(p) => Input::QueueParams(QueueParamsInput {
            queue: p.queue.to_string(),
            completed: p.completed,
            abandoned: p.abandoned,
            service_level_pct: if p.service_level > 0 {
                p.service_level_perf
            } else {
                None
            },
        }),
        E::QueueMemberAdded(m) => Input::MemberAdded(member(m)),
        E::QueueMember(m)
        | E::QueueMemberStatus(m)
        | E::QueueMemberPause(m)
        | E::QueueMemberPenalty(m) => Input::MemberUpdated(member(m)),
        E::QueueMemberRemoved(m) => Input::MemberRemoved {
            queue: m.queue.to_string(),
            interface: m.interface.to_string(),
        },
        E::QueueEntry(e) => Input::CallerWaiting(WaitingInput {
            queue: e.queue.to_string(),
            caller_uniqueid: e.uniqueid.as_deref().unwrap_or(&e.channel).to_owned(),
            wait_s: e.wait,
        }),
        E::QueueCallerJoin(c) => Input::CallerJoined(caller(c)),
        E::QueueCallerLeave(c) => Input::CallerLeft(caller(c)),
        E::QueueCallerAbandon(c) => Input::CallerAbandoned(caller(c)),
        E::AgentCalled(a) => Input::AgentCalled(agent(a)),
        E::AgentConnect(a) => Input::AgentConnected(agent(a)),
        E::AgentComplete(a) => Input::AgentCompleted(agent(a)),
        E::AgentRingNoAnswer(a) => Input::AgentRingNoAnswer(agent(a)),
        E::AgentDump(a) => Input::AgentDumped(agent(a)),
        E::PresenceStateChange(p) => Input::Presence(PresenceInput {
            presentity: p.presentity.to_string(),
            state: p.status.to_string(),
            subtype: p.subtype.as_deref().map(str::to_owned),
            message: p.message.as_deref().map(str::to_owned),
        }),
        E::PresenceStatus(p) => Input::Presence(PresenceInput {
            presentity: p.presentity()?.to_owned(),
            state: p.status.to_string(),
            subtype: p.subtype.as_deref().map(str::to_owned),
            message: p.message.as_deref().map(str::to_owned),
        }),
        E::Newchannel(c) | E::Newstate(c) => Input::Channel(channel(&c.channel, None, None)),
        E::Hangup(c) => Input::Hangup {
            uniqueid: c.channel.uniqueid.to_string(),
        },
        // The dialled channel is the one that rings; its connected line is the caller.
        E::DialBegin(d) | E::DialEnd(d) => Input::Channel(channel(&d.dest, None, None)),
        E::BridgeEnter(b) => Input::Channel(channel(&b.channel, None, None)),
        E::CoreShowChannel(c) => Input::Channel(core_show_channel(c)),
        // A new event kind the tracker does not know yet.
        _ => return None,
    })
}

/// The tracker input for an `ExtensionStatus` (event or list item): the extension's hint.
/// `None` when `Exten` is not a valid extension number (the status pipeline reports those).
pub fn hint_input(status: &ExtensionStatus<'_>) -> Option<Input> {
    let extension = ExtensionNumber::parse(&status.exten).ok()?;
    Some(Input::Hint {
        extension,
        hint: status.hint.to_string(),
    })
}

/// The list a `Complete` event closes, from its name (`QueueStatusComplete`...).
pub fn list_kind(complete_event: &str) -> Option<ListKind> {
    let is = |n: &str| complete_event.eq_ignore_ascii_case(n);
    if is("QueueStatusComplete") {
        Some(ListKind::QueueStatus)
    } else if is("PresenceStateListComplete") {
        Some(ListKind::PresenceStateList)
    } else if is("CoreShowChannelsComplete") {
        Some(ListKind::CoreShowChannels)
    } else {
        None
    }
}

/// An epoch time as app_queue writes it (`LastCall`); 0 means never.
fn epoch(secs: i64) -> Option<Timestamp> {
    (secs > 0)
        .then(|| Timestamp::from_timestamp(secs, 0))
        .flatten()
}

fn member(m: &QueueMemberState<'_>) -> MemberInput {
    MemberInput {
        queue: m.queue.to_string(),
        interface: m.interface.to_string(),
        state_interface: m.state_interface.as_deref().map(str::to_owned),
        paused: m.paused,
        paused_reason: m.paused_reason.as_deref().map(str::to_owned),
        penalty: m.penalty,
        calls_taken: u32::try_from(m.calls_taken).unwrap_or(u32::MAX),
        last_call: epoch(m.last_call),
        last_pause: epoch(m.last_pause),
        in_call: m.in_call,
    }
}

fn caller(c: &QueueCaller<'_>) -> CallerInput {
    CallerInput {
        queue: c.queue.to_string(),
        caller_uniqueid: c.caller.uniqueid.to_string(),
    }
}

fn agent(a: &AgentEvent<'_>) -> AgentInput {
    let caller = a.caller.as_ref();
    AgentInput {
        queue: a.queue.to_string(),
        interface: a.interface.to_string(),
        caller_uniqueid: caller.map(|c| c.uniqueid.to_string()),
        agent_uniqueid: a.agent.as_ref().map(|c| c.uniqueid.to_string()),
        peer_number: caller.and_then(|c| c.caller_id_num.as_deref().map(str::to_owned)),
        peer_name: caller.and_then(|c| c.caller_id_name.as_deref().map(str::to_owned)),
    }
}

fn channel(c: &ChannelSnapshot<'_>, in_queue: Option<String>, age_s: Option<u64>) -> ChannelInput {
    ChannelInput {
        uniqueid: c.uniqueid.to_string(),
        channel: c.channel.to_string(),
        state: c.state.unwrap_or(0),
        peer_number: c.connected_line_num.as_deref().map(str::to_owned),
        peer_name: c.connected_line_name.as_deref().map(str::to_owned),
        linkedid: c.linkedid.as_deref().map(str::to_owned),
        in_queue,
        age_s,
    }
}

fn core_show_channel(c: &CoreShowChannel<'_>) -> ChannelInput {
    // A caller waiting in a queue runs `Queue(sales,,,,30)`: the queue is the first argument.
    let in_queue = c
        .application
        .as_deref()
        .filter(|app| app.eq_ignore_ascii_case("Queue"))
        .and(c.application_data.as_deref())
        .and_then(|data| data.split([',', '|']).next())
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned);
    channel(&c.channel, in_queue, c.duration_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami_proto::{Decoder, Frame, Kind, Packet};
    use bytes::BytesMut;
    use domain::callcenter::{
        CallCenterView, ListSnapshot, Live, RejectKind, Tracker, Update, WirePos,
    };
    use domain::{AgentPresence, CallState};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/ami/real");

    fn capture(name: &str) -> Vec<Packet> {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}.recv.ami")).expect("capture");
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode_eof(&mut buf).expect("valid capture") {
            if let Frame::Packet(p) = frame {
                out.push(p);
            }
        }
        out
    }

    fn at(sec: i64) -> Timestamp {
        Timestamp::from_timestamp(1_795_469_500 + sec, 0).expect("time")
    }

    fn ext(s: &str) -> ExtensionNumber {
        ExtensionNumber::parse(s).expect("ext")
    }

    /// A tracker that knows the captures' hints (1001..1002 and the presence extension 1201).
    fn tracker() -> Tracker {
        let mut t = Tracker::new();
        for (e, hint) in [
            ("1001", "Custom:1001"),
            ("1002", "Custom:1002"),
            ("1201", "Custom:1201,CustomPresence:1201"),
        ] {
            let hint = ExtensionStatus {
                exten: e.into(),
                context: "agents".into(),
                hint: hint.into(),
                status: 0,
                status_text: None,
            };
            t.apply(Live {
                pos: WirePos {
                    generation: 1,
                    seq: 0,
                },
                at: at(0),
                input: hint_input(&hint).expect("hint"),
            });
        }
        t
    }

    /// Feeds a capture's live call-center events (not list items) in wire order.
    fn feed(t: &mut Tracker, packets: &[Packet]) -> Vec<Update> {
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if p.action_id().is_some() {
                continue;
            }
            let Some(event) = CallCenterEvent::classify(p) else {
                continue;
            };
            let input = to_input(&event.expect("valid")).expect("mapped");
            out.push(t.apply(Live {
                pos: WirePos {
                    generation: 1,
                    seq: u64::try_from(i).expect("small"),
                },
                at: at(i64::try_from(i).expect("small")),
                input,
            }));
        }
        out
    }

    /// The items of the list answered to `action_id`, mapped.
    fn list_items(packets: &[Packet], action_id: &str) -> Vec<Input> {
        packets
            .iter()
            .filter(|p| p.kind() == Kind::Event && p.action_id().as_deref() == Some(action_id))
            .filter_map(CallCenterEvent::classify)
            .map(|e| to_input(&e.expect("valid")).expect("mapped"))
            .collect()
    }

    #[test]
    fn every_call_center_event_of_the_captures_maps() {
        for name in ["j_queue_members", "l_presence", "m_channels_list"] {
            for p in capture(name) {
                if let Some(event) = CallCenterEvent::classify(&p) {
                    let event = event.expect("valid");
                    assert!(to_input(&event).is_some(), "{name}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn queue_members_capture_drives_the_tracker() {
        let packets = capture("j_queue_members");
        let mut t = tracker();
        let updates = feed(&mut t, &packets);
        // Track 1001's sales membership through the events: added, paused for lunch,
        // unpaused, and removed at the end.
        let states: Vec<Option<(bool, Option<String>)>> = updates
            .iter()
            .flat_map(|u| u.changed.iter())
            .filter(|c| c.extension == ext("1001"))
            .map(|c| {
                c.view
                    .queues
                    .iter()
                    .find(|q| q.queue == "sales")
                    .map(|q| (q.paused, q.paused_reason.clone()))
            })
            .collect();
        assert_eq!(
            states,
            [
                Some((false, None)),
                Some((true, Some("Lunch".to_owned()))),
                Some((false, None)),
                None,
            ]
        );
        // Bob's penalty in support went to 5 before he left.
        let bob_penalties: Vec<i32> = updates
            .iter()
            .flat_map(|u| u.changed.iter())
            .filter(|c| c.extension == ext("1002"))
            .filter_map(|c| c.view.queues.iter().find(|q| q.queue == "support"))
            .map(|q| q.penalty)
            .collect();
        assert_eq!(bob_penalties.last(), Some(&5));
        assert!(updates.iter().all(|u| u.rejects.is_empty()));
        assert_eq!(t.view(&ext("1001")), CallCenterView::default());

        // The QueueStatus answered to j-9 shows Alice paused in sales.
        let mut t = tracker();
        let u = t.resync(
            ListSnapshot {
                kind: list_kind("QueueStatusComplete").expect("kind"),
                response: WirePos {
                    generation: 1,
                    seq: 1,
                },
                at: at(10),
                items: list_items(&packets, "j-9"),
            },
            vec![],
        );
        let alice = u
            .changed
            .iter()
            .find(|c| c.extension == ext("1001"))
            .expect("1001 changed");
        assert_eq!(alice.view.queues.len(), 1);
        assert_eq!(alice.view.queues[0].paused_reason.as_deref(), Some("Lunch"));
        // Paused since the capture's LastPause, not since the list was read.
        let last_pause: Timestamp = "2026-11-23T21:31:50Z".parse().expect("time");
        assert_eq!(alice.view.queues[0].paused_since, Some(last_pause));
        let stats = t.queue_stats(at(10));
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].queue, "sales");
        assert_eq!(stats[0].members.len(), 2);
        assert_eq!(stats[0].service_level_pct, None, "ServiceLevel 0: none");
    }

    #[test]
    fn presence_capture_drives_the_tracker() {
        let packets = capture("l_presence");
        let mut t = tracker();
        let updates = feed(&mut t, &packets);
        let walk: Vec<String> = updates
            .iter()
            .flat_map(|u| u.changed.iter())
            .filter_map(|c| c.view.presence.as_ref().map(|p| p.state.clone()))
            .collect();
        // Each change once, though two events report it; the repeated chat write is no change.
        assert_eq!(
            walk,
            [
                "away",
                "dnd",
                "available",
                "unavailable",
                "xa",
                "chat",
                "away",
                "dnd",
                "available"
            ]
        );
        // The base64 step arrives decoded; the C-escaped one is unescaped and equals the raw.
        let messages: Vec<Option<String>> = updates
            .iter()
            .flat_map(|u| u.changed.iter())
            .filter_map(|c| c.view.presence.as_ref().map(|p| p.message.clone()))
            .collect();
        assert_eq!(messages[6].as_deref(), Some("Room 3, back at 15:00"));
        assert_eq!(messages[7].as_deref(), Some("Room \"B\" \\ 2nd floor"));
        // The busy write was refused by Asterisk, so nothing malformed reached the tracker.
        assert!(
            updates
                .iter()
                .all(|u| !u.rejects.contains_key(&RejectKind::MalformedPresence))
        );

        // PresenceStateList: 1201 is available.
        let mut t = tracker();
        t.resync(
            ListSnapshot {
                kind: list_kind("PresenceStateListComplete").expect("kind"),
                response: WirePos {
                    generation: 1,
                    seq: 1,
                },
                at: at(1),
                items: list_items(&packets, "l-23"),
            },
            vec![],
        );
        assert_eq!(
            t.view(&ext("1201")).presence,
            Some(AgentPresence {
                state: "available".into(),
                subtype: None,
                message: None,
            })
        );
    }

    #[test]
    fn channels_capture_restores_the_queue_call() {
        let packets = capture("m_channels_list");
        let mut t = tracker();
        // Alice was put into sales before the capture, unrecorded.
        let alice = ami_proto::Packet::parse(
            b"Event: QueueMemberAdded\r\nQueue: sales\r\nMemberName: Alice\r\n\
Interface: Local/1001@agents-ring\r\nStateInterface: Custom:1001\r\nPaused: 0\r\n",
        )
        .expect("packet");
        for input in [
            Input::QueueParams(QueueParamsInput {
                queue: "sales".into(),
                completed: 0,
                abandoned: 0,
                service_level_pct: None,
            }),
            to_input(
                &CallCenterEvent::classify(&alice)
                    .expect("ours")
                    .expect("valid"),
            )
            .expect("mapped"),
        ] {
            t.apply(Live {
                pos: WirePos {
                    generation: 1,
                    seq: 1,
                },
                at: at(1),
                input,
            });
        }
        let resync = |t: &mut Tracker, action_id: &str| {
            t.resync(
                ListSnapshot {
                    kind: ListKind::CoreShowChannels,
                    response: WirePos {
                        generation: 1,
                        seq: 2,
                    },
                    at: at(30),
                    items: list_items(&packets, action_id),
                },
                vec![],
            )
        };
        // m-2: no channels, no call.
        assert!(resync(&mut t, "m-2").changed.is_empty());
        // m-3: the customer is in the queue and Alice's Local channels are up.
        let u = resync(&mut t, "m-3");
        assert_eq!(u.changed.len(), 1);
        let call = u.changed[0].view.call.clone().expect("a call");
        assert_eq!(u.changed[0].extension, ext("1001"));
        assert_eq!(call.state, CallState::Up);
        assert_eq!(call.peer_number.as_deref(), Some("5559876"));
        assert_eq!(call.peer_name.as_deref(), Some("Customer 5559876"));
        assert_eq!(call.queue.as_deref(), Some("sales"));
        assert_eq!(call.since, at(29), "Duration 00:00:01");
        // Back to m-2 (the call ended): cleared.
        let u = resync(&mut t, "m-2");
        assert_eq!(u.changed[0].view.call, None);
    }

    #[test]
    fn list_kinds_and_epochs() {
        assert_eq!(
            list_kind("queuestatuscomplete"),
            Some(ListKind::QueueStatus)
        );
        assert_eq!(
            list_kind("CoreShowChannelsComplete"),
            Some(ListKind::CoreShowChannels)
        );
        assert_eq!(list_kind("ExtensionStateListComplete"), None);
        assert_eq!(epoch(0), None);
        assert_eq!(epoch(1_795_469_510), Some(at(10)));
    }
}
