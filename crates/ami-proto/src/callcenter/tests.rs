//! Tests of the call-center views: every such packet of the real captures (`j_queue_members`,
//! `l_presence`, `m_channels_list`) parses, with values checked against the bytes; events the
//! captures do not hold are checked on packets written in the field order of Asterisk 20's
//! `apps/app_queue.c` and `main/manager_channels.c`.

use std::collections::BTreeMap;

use bytes::BytesMut;

use super::*;
use crate::{Decoder, Frame};

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

fn packet(raw: &str) -> Packet {
    Packet::parse(raw.as_bytes()).expect("valid packet")
}

fn event_name(e: &CallCenterEvent<'_>) -> &'static str {
    use CallCenterEvent as E;
    match e {
        E::QueueParams(_) => "QueueParams",
        E::QueueMember(_) => "QueueMember",
        E::QueueEntry(_) => "QueueEntry",
        E::QueueMemberAdded(_) => "QueueMemberAdded",
        E::QueueMemberRemoved(_) => "QueueMemberRemoved",
        E::QueueMemberStatus(_) => "QueueMemberStatus",
        E::QueueMemberPause(_) => "QueueMemberPause",
        E::QueueMemberPenalty(_) => "QueueMemberPenalty",
        E::QueueCallerJoin(_) => "QueueCallerJoin",
        E::QueueCallerLeave(_) => "QueueCallerLeave",
        E::QueueCallerAbandon(_) => "QueueCallerAbandon",
        E::AgentCalled(_) => "AgentCalled",
        E::AgentConnect(_) => "AgentConnect",
        E::AgentComplete(_) => "AgentComplete",
        E::AgentRingNoAnswer(_) => "AgentRingNoAnswer",
        E::AgentDump(_) => "AgentDump",
        E::PresenceStateChange(_) => "PresenceStateChange",
        E::PresenceStatus(_) => "PresenceStatus",
        E::Newchannel(_) => "Newchannel",
        E::Newstate(_) => "Newstate",
        E::Hangup(_) => "Hangup",
        E::DialBegin(_) => "DialBegin",
        E::DialEnd(_) => "DialEnd",
        E::BridgeEnter(_) => "BridgeEnter",
        E::CoreShowChannel(_) => "CoreShowChannel",
    }
}

#[test]
fn every_call_center_packet_of_the_captures_parses() {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for name in [
        "a_login_ping_logoff",
        "d_state_lists",
        "e_device_states",
        "i_limited_user",
        "j_queue_members",
        "l_presence",
        "m_channels_list",
    ] {
        for p in capture(name) {
            let is_ours = p.kind() == Kind::Event
                && CallCenterEvent::NAMES.iter().any(|n| p.is(Kind::Event, n));
            match CallCenterEvent::classify(&p) {
                None => assert!(!is_ours, "{name}: not classified: {p:?}"),
                Some(Ok(e)) => {
                    assert!(is_ours, "{name}: {p:?}");
                    assert_eq!(Some(event_name(&e)), p.name().as_deref(), "{name}");
                    *counts.entry(event_name(&e)).or_default() += 1;
                }
                Some(Err(e)) => panic!("{name}: {e} in {p:?}"),
            }
        }
    }
    // The counts of the captures' README ("Event types and header names observed").
    let want: BTreeMap<&str, usize> = [
        ("CoreShowChannel", 4),
        ("PresenceStateChange", 14),
        ("PresenceStatus", 9),
        ("QueueMember", 7),
        ("QueueMemberAdded", 3),
        ("QueueMemberPause", 2),
        ("QueueMemberPenalty", 1),
        ("QueueMemberRemoved", 3),
        ("QueueMemberStatus", 2),
        ("QueueParams", 4),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want);
}

fn classify(p: &Packet) -> CallCenterEvent<'_> {
    CallCenterEvent::classify(p)
        .expect("a call-center event")
        .expect("valid")
}

#[test]
fn queue_members_from_the_capture() {
    let packets = capture("j_queue_members");
    let events: Vec<CallCenterEvent<'_>> = packets
        .iter()
        .filter_map(|p| CallCenterEvent::classify(p).map(|r| r.expect("valid")))
        .collect();

    // The first QueueAdd: Alice into sales, penalty 1, StateInterface Custom:1001.
    let CallCenterEvent::QueueMemberAdded(alice) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(
        alice,
        &QueueMemberState {
            queue: "sales".into(),
            member_name: Some("Alice".into()),
            interface: "Local/1001@agents-ring".into(),
            state_interface: Some("Custom:1001".into()),
            membership: Some("dynamic".into()),
            penalty: 1,
            calls_taken: 0,
            last_call: 0,
            last_pause: 0,
            login_time: 1_795_469_507,
            in_call: false,
            status: Some(1),
            paused: false,
            paused_reason: None,
            wrapup_time: 0,
            ring_in_use: Some(false),
        }
    );
    assert_eq!(alice.device(), "Custom:1001");

    // QueueStatus (all queues): support's params come first (hash order), then its member.
    let CallCenterEvent::QueueParams(support) = &events[3] else {
        panic!("{:?}", events[3]);
    };
    assert_eq!(
        (
            support.queue.as_ref(),
            support.max,
            support.strategy.as_deref(),
            support.calls,
            support.completed,
            support.abandoned,
            support.service_level,
            support.service_level_perf,
            support.weight,
        ),
        ("support", 0, Some("ringall"), 0, 0, 0, 0, Some(0.0), 0)
    );
    let CallCenterEvent::QueueMember(bob) = &events[4] else {
        panic!("{:?}", events[4]);
    };
    // The list item names the member `Name` / `Location` and has no Ringinuse.
    assert_eq!(
        (
            bob.queue.as_ref(),
            bob.member_name.as_deref(),
            bob.interface.as_ref(),
            bob.device(),
            bob.penalty,
            bob.ring_in_use,
        ),
        (
            "support",
            Some("Bob"),
            "Local/1002@agents-ring",
            "Custom:1002",
            2,
            None
        )
    );

    // The pause with a reason, as event and as list item.
    let pauses: Vec<&QueueMemberState<'_>> = events
        .iter()
        .filter_map(|e| match e {
            CallCenterEvent::QueueMemberPause(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(pauses.len(), 2);
    assert!(pauses[0].paused);
    assert_eq!(pauses[0].paused_reason.as_deref(), Some("Lunch"));
    assert_eq!(pauses[0].last_pause, 1_795_469_510);
    assert!(!pauses[1].paused);
    assert_eq!(pauses[1].paused_reason, None);
    assert_eq!(pauses[1].last_pause, 1_795_469_510, "kept after unpausing");
    let paused_item = events
        .iter()
        .find_map(|e| match e {
            CallCenterEvent::QueueMember(m) if m.paused => Some(m),
            _ => None,
        })
        .expect("the paused list item");
    assert_eq!(
        (
            paused_item.member_name.as_deref(),
            paused_item.paused_reason.as_deref()
        ),
        (Some("Alice"), Some("Lunch"))
    );

    // QueueMemberStatus follows Custom:1001: INUSE (2) then NOT_INUSE (1).
    let statuses: Vec<Option<i32>> = events
        .iter()
        .filter_map(|e| match e {
            CallCenterEvent::QueueMemberStatus(m) => Some(m.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [Some(2), Some(1)]);
    let penalty = events
        .iter()
        .find_map(|e| match e {
            CallCenterEvent::QueueMemberPenalty(m) => Some(m),
            _ => None,
        })
        .expect("penalty");
    assert_eq!((penalty.queue.as_ref(), penalty.penalty), ("support", 5));
    let removed: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            CallCenterEvent::QueueMemberRemoved(m) => {
                Some((m.queue.as_ref(), m.member_name.as_deref().unwrap_or("")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        removed,
        [("sales", "Alice"), ("sales", "Bob"), ("support", "Bob")]
    );
}

#[test]
fn presence_from_the_capture() {
    let packets = capture("l_presence");
    let mut changes = Vec::new();
    let mut statuses = Vec::new();
    for p in &packets {
        match CallCenterEvent::classify(p) {
            Some(Ok(CallCenterEvent::PresenceStateChange(c))) => changes.push((
                p.action_id().is_some(),
                c.presentity.into_owned(),
                c.status.into_owned(),
                c.subtype.map(Cow::into_owned),
                c.message.map(Cow::into_owned),
            )),
            Some(Ok(CallCenterEvent::PresenceStatus(s))) => {
                assert_eq!(s.presentity(), Some("CustomPresence:1201"));
                assert_eq!(
                    (s.exten.as_ref(), s.context.as_deref()),
                    ("1201", Some("agents"))
                );
                statuses.push((
                    s.status.into_owned(),
                    s.subtype.map(Cow::into_owned),
                    s.message.map(Cow::into_owned),
                ));
            }
            _ => {}
        }
    }
    let s = |v: &str| Some(v.to_owned());
    let p1201 = "CustomPresence:1201".to_owned();
    let p1001 = "CustomPresence:1001".to_owned();
    let room_b = s("Room \"B\" \\ 2nd floor");
    // The base64 write (`e` option) arrives decoded; the C-escaped message is unescaped.
    assert_eq!(
        changes,
        vec![
            (
                false,
                p1201.clone(),
                "away".into(),
                s("Lunch break"),
                s("Back at 14:00")
            ),
            (false, p1201.clone(), "dnd".into(), None, None),
            (false, p1201.clone(), "available".into(), None, None),
            (
                false,
                p1201.clone(),
                "unavailable".into(),
                None,
                s("Gone home")
            ),
            (
                false,
                p1201.clone(),
                "xa".into(),
                s("Vacation"),
                s("Back on Monday")
            ),
            (false, p1201.clone(), "chat".into(), None, s("Free to chat")),
            (false, p1201.clone(), "chat".into(), None, s("Free to chat")),
            (
                false,
                p1201.clone(),
                "away".into(),
                s("Meeting"),
                s("Room 3, back at 15:00")
            ),
            (
                false,
                p1201.clone(),
                "dnd".into(),
                s("Meeting"),
                room_b.clone()
            ),
            (false, p1201.clone(), "available".into(), None, None),
            (
                false,
                p1001.clone(),
                "away".into(),
                s("Lunch break"),
                s("Back at 14:00")
            ),
            (false, p1001.clone(), "dnd".into(), None, s("In a meeting")),
            (true, p1001, "dnd".into(), None, s("In a meeting")),
            (true, p1201, "available".into(), None, None),
        ]
    );
    // PresenceStatus: only real changes of the hinted presentity, raw text.
    assert_eq!(statuses.len(), 9);
    assert_eq!(statuses[7], ("dnd".to_owned(), s("Meeting"), room_b));
}

#[test]
fn channels_from_the_capture() {
    let packets = capture("m_channels_list");
    let items: Vec<CoreShowChannel<'_>> = packets
        .iter()
        .filter_map(|p| match CallCenterEvent::classify(p) {
            Some(Ok(CallCenterEvent::CoreShowChannel(c))) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(items.len(), 4);
    let queue_leg = &items[1];
    assert_eq!(
        queue_leg.channel,
        ChannelSnapshot {
            channel: "Local/5559876@customers-00000000;1".into(),
            state: Some(6),
            state_desc: Some("Up".into()),
            caller_id_num: Some("5559876".into()),
            caller_id_name: Some("Customer 5559876".into()),
            connected_line_num: Some("5559876".into()),
            connected_line_name: Some("Customer 5559876".into()),
            context: Some("callers".into()),
            exten: Some("2000".into()),
            uniqueid: "1795469530.2".into(),
            linkedid: Some("1795469530.2".into()),
        }
    );
    assert!(queue_leg.channel.is_up());
    assert_eq!(
        (
            queue_leg.application.as_deref(),
            queue_leg.application_data.as_deref(),
            queue_leg.duration_s,
            queue_leg.bridge_id.as_deref(),
        ),
        (
            Some("Queue"),
            Some("sales,,,,30"),
            Some(1),
            Some("a7fbe6cb-0a07-4b6a-8978-5719ef2a8320")
        )
    );
    let agent = &items[2];
    assert_eq!(agent.channel.channel, "Local/1001@agents-ring-00000001;1");
    assert_eq!(agent.application.as_deref(), Some("AppQueue"));
    assert_eq!(agent.bridge_id, queue_leg.bridge_id);
    // An empty BridgeId means no bridge.
    assert_eq!(items[0].bridge_id, None);
}

/// `AgentCalled` as app_queue 20 writes it: the caller's snapshot, the member channel's
/// snapshot with the `Dest` prefix, then Queue, Interface, MemberName.
const AGENT_CALLED: &str = "Event: AgentCalled\r\nPrivilege: agent,all\r\n\
Channel: PJSIP/trunk-00000010\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n\
CallerIDNum: 5559876\r\nCallerIDName: O\\'Brien \\\"Pat\\\"\r\nConnectedLineNum: <unknown>\r\n\
ConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\nContext: callers\r\n\
Exten: 2000\r\nPriority: 1\r\nUniqueid: 1795469530.16\r\nLinkedid: 1795469530.16\r\n\
DestChannel: PJSIP/1001-0000002a\r\nDestChannelState: 5\r\nDestChannelStateDesc: Ringing\r\n\
DestCallerIDNum: 1001\r\nDestCallerIDName: Alice\r\nDestConnectedLineNum: 5559876\r\n\
DestConnectedLineName: O\\'Brien\r\nDestLanguage: en\r\nDestAccountCode: \r\n\
DestContext: agents\r\nDestExten: 2000\r\nDestPriority: 1\r\nDestUniqueid: 1795469530.17\r\n\
DestLinkedid: 1795469530.16\r\nQueue: sales\r\nInterface: PJSIP/1001\r\nMemberName: Alice\r\n";

#[test]
fn agent_events() {
    let p = packet(AGENT_CALLED);
    let CallCenterEvent::AgentCalled(e) = classify(&p) else {
        panic!("AgentCalled");
    };
    let caller = e.caller.expect("caller");
    assert_eq!(caller.channel, "PJSIP/trunk-00000010");
    assert_eq!(caller.caller_id_num.as_deref(), Some("5559876"));
    assert_eq!(caller.caller_id_name.as_deref(), Some("O'Brien \"Pat\""));
    assert_eq!(caller.connected_line_num, None, "<unknown> is none");
    let agent = e.agent.expect("agent");
    assert_eq!(
        (agent.channel.as_ref(), agent.state, agent.uniqueid.as_ref()),
        ("PJSIP/1001-0000002a", Some(5), "1795469530.17")
    );
    assert_eq!(
        (
            e.queue.as_ref(),
            e.interface.as_ref(),
            e.member_name.as_deref()
        ),
        ("sales", "PJSIP/1001", Some("Alice"))
    );
    assert_eq!((e.hold_time, e.ring_time, e.talk_time), (None, None, None));

    let complete = AGENT_CALLED.replace("AgentCalled", "AgentComplete")
        + "HoldTime: 12\r\nTalkTime: 95\r\nReason: agent\r\n";
    let p = packet(&complete);
    let CallCenterEvent::AgentComplete(e) = classify(&p) else {
        panic!("AgentComplete");
    };
    assert_eq!(
        (e.hold_time, e.talk_time, e.reason.as_deref()),
        (Some(12), Some(95), Some("agent"))
    );

    let p = packet(
        "Event: AgentDump\r\nPrivilege: agent,all\r\nQueue: sales\r\nInterface: PJSIP/1001\r\nMemberName: Alice\r\n",
    );
    let CallCenterEvent::AgentDump(e) = classify(&p) else {
        panic!("AgentDump");
    };
    assert!(e.caller.is_none() && e.agent.is_none());

    for name in ["AgentConnect", "AgentRingNoAnswer"] {
        let p = packet(&(AGENT_CALLED.replace("AgentCalled", name) + "RingTime: 3\r\n"));
        let e = classify(&p);
        assert_eq!(event_name(&e), name);
    }
}

#[test]
fn queue_callers_and_entries() {
    let join = "Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nChannel: PJSIP/trunk-00000010\r\n\
ChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: 5559876\r\nCallerIDName: Customer\r\n\
Uniqueid: 1795469530.16\r\nLinkedid: 1795469530.16\r\nQueue: sales\r\nPosition: 1\r\nCount: 1\r\n";
    let p = packet(join);
    let CallCenterEvent::QueueCallerJoin(c) = classify(&p) else {
        panic!("join");
    };
    assert_eq!(
        (
            c.queue.as_ref(),
            c.position,
            c.count,
            c.caller.uniqueid.as_ref()
        ),
        ("sales", Some(1), Some(1), "1795469530.16")
    );
    let abandon = join
        .replace("QueueCallerJoin", "QueueCallerAbandon")
        .replace("Count: 1\r\n", "OriginalPosition: 1\r\nHoldTime: 42\r\n");
    let p = packet(&abandon);
    let CallCenterEvent::QueueCallerAbandon(c) = classify(&p) else {
        panic!("abandon");
    };
    assert_eq!(
        (c.original_position, c.hold_time, c.count),
        (Some(1), Some(42), None)
    );
    let p = packet(&join.replace("QueueCallerJoin", "QueueCallerLeave"));
    assert!(matches!(classify(&p), CallCenterEvent::QueueCallerLeave(_)));

    let entry = packet(
        "Event: QueueEntry\r\nQueue: sales\r\nPosition: 2\r\nChannel: PJSIP/trunk-00000011\r\n\
Uniqueid: 1795469530.18\r\nCallerIDNum: 5550000\r\nCallerIDName: <unknown>\r\n\
ConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nWait: 17\r\nPriority: 0\r\nActionID: q-1\r\n",
    );
    let CallCenterEvent::QueueEntry(e) = classify(&entry) else {
        panic!("entry");
    };
    assert_eq!(
        (
            e.queue.as_ref(),
            e.position,
            e.wait,
            e.caller_id_num.as_deref(),
            e.caller_id_name
        ),
        ("sales", 2, 17, Some("5550000"), None)
    );
}

#[test]
fn channel_events() {
    let snapshot = "Channel: PJSIP/1001-0000002a\r\nChannelState: 5\r\nChannelStateDesc: Ringing\r\n\
CallerIDNum: 1001\r\nCallerIDName: Alice\r\nConnectedLineNum: 1002\r\nConnectedLineName: Bob\r\n\
Language: en\r\nAccountCode: \r\nContext: agents\r\nExten: 1002\r\nPriority: 1\r\n\
Uniqueid: 1795469531.20\r\nLinkedid: 1795469531.19\r\n";
    for name in ["Newchannel", "Newstate", "Hangup"] {
        let raw = format!(
            "Event: {name}\r\nPrivilege: call,all\r\n{snapshot}Cause: 16\r\nCause-txt: Normal Clearing\r\n"
        );
        let p = packet(&raw);
        let e = classify(&p);
        assert_eq!(event_name(&e), name);
        let (CallCenterEvent::Newchannel(c)
        | CallCenterEvent::Newstate(c)
        | CallCenterEvent::Hangup(c)) = e
        else {
            panic!("{name}");
        };
        assert_eq!(
            (
                c.channel.channel.as_ref(),
                c.channel.state,
                c.cause,
                c.cause_txt.as_deref()
            ),
            (
                "PJSIP/1001-0000002a",
                Some(5),
                Some(16),
                Some("Normal Clearing")
            )
        );
        assert_eq!(c.channel.linkedid.as_deref(), Some("1795469531.19"));
    }

    let dest = snapshot.replace("\r\n", "\r\nDest");
    let dest = format!("Dest{}", dest.trim_end_matches("Dest"));
    let begin =
        format!("Event: DialBegin\r\nPrivilege: call,all\r\n{snapshot}{dest}DialString: 1002\r\n");
    let p = packet(&begin);
    let CallCenterEvent::DialBegin(d) = classify(&p) else {
        panic!("DialBegin");
    };
    assert_eq!(
        d.caller.as_ref().map(|c| c.channel.as_ref()),
        Some("PJSIP/1001-0000002a")
    );
    assert_eq!(d.dest.uniqueid, "1795469531.20");
    assert_eq!(d.dial_string.as_deref(), Some("1002"));
    // An originate dials from nothing: no caller snapshot.
    let end = format!("Event: DialEnd\r\nPrivilege: call,all\r\n{dest}DialStatus: ANSWER\r\n");
    let p = packet(&end);
    let CallCenterEvent::DialEnd(d) = classify(&p) else {
        panic!("DialEnd");
    };
    assert!(d.caller.is_none());
    assert_eq!(d.dial_status.as_deref(), Some("ANSWER"));

    let bridge = format!(
        "Event: BridgeEnter\r\nPrivilege: call,all\r\nBridgeUniqueid: 1b2c\r\nBridgeType: basic\r\n\
BridgeTechnology: simple_bridge\r\nBridgeCreator: <unknown>\r\nBridgeName: <unknown>\r\n\
BridgeNumChannels: 2\r\nBridgeVideoSourceMode: none\r\n{snapshot}"
    );
    let p = packet(&bridge);
    let CallCenterEvent::BridgeEnter(b) = classify(&p) else {
        panic!("BridgeEnter");
    };
    assert_eq!(
        (
            b.bridge_uniqueid.as_ref(),
            b.bridge_num_channels,
            b.channel.exten.as_deref()
        ),
        ("1b2c", Some(2), Some("1002"))
    );
}

#[test]
fn malformed_fields_name_the_header() {
    let rows: &[(&str, ViewError)] = &[
        (
            "Event: QueueMemberPause\nQueue: sales\nInterface: PJSIP/1001\nPaused: yes\n",
            ViewError::InvalidNumber {
                header: "Paused",
                value: "yes".into(),
            },
        ),
        (
            "Event: QueueMemberAdded\nQueue: sales\nInterface: PJSIP/1001\nPenalty: high\nPaused: 0\n",
            ViewError::InvalidNumber {
                header: "Penalty",
                value: "high".into(),
            },
        ),
        (
            "Event: QueueMember\nQueue: sales\nInterface: PJSIP/1001\nPaused: 0\n",
            ViewError::MissingHeader { header: "Location" },
        ),
        (
            "Event: QueueMemberStatus\nInterface: PJSIP/1001\nPaused: 0\n",
            ViewError::MissingHeader { header: "Queue" },
        ),
        (
            "Event: QueueMemberStatus\nQueue: sales\nInterface: PJSIP/1001\n",
            ViewError::MissingHeader { header: "Paused" },
        ),
        (
            "Event: QueueParams\nQueue: sales\nCalls: 0\nCompleted: 1\nAbandoned: 0\nServicelevelPerf: lots\n",
            ViewError::InvalidNumber {
                header: "ServicelevelPerf",
                value: "lots".into(),
            },
        ),
        (
            "Event: QueueEntry\nQueue: sales\nPosition: 1\nChannel: X/1\nWait: -\n",
            ViewError::InvalidNumber {
                header: "Wait",
                value: "-".into(),
            },
        ),
        (
            "Event: PresenceStateChange\nPresentity: CustomPresence:1\nStatus: \n",
            ViewError::MissingHeader { header: "Status" },
        ),
        (
            "Event: Hangup\nChannel: PJSIP/1001-1\nChannelState: up\nUniqueid: 1.1\n",
            ViewError::InvalidNumber {
                header: "ChannelState",
                value: "up".into(),
            },
        ),
        (
            "Event: Newchannel\nChannel: PJSIP/1001-1\n",
            ViewError::MissingHeader { header: "Uniqueid" },
        ),
        (
            "Event: DialBegin\nChannel: PJSIP/1001-1\nUniqueid: 1.1\n",
            ViewError::MissingHeader {
                header: "DestChannel",
            },
        ),
        (
            "Event: AgentConnect\nQueue: sales\nInterface: PJSIP/1001\nDestChannel: PJSIP/1001-2\nDestUniqueid: 1.2\nHoldTime: x\n",
            ViewError::InvalidNumber {
                header: "HoldTime",
                value: "x".into(),
            },
        ),
        (
            "Event: CoreShowChannel\nChannel: PJSIP/1001-1\nUniqueid: 1.1\nDuration: 00:61:00\n",
            ViewError::InvalidNumber {
                header: "Duration",
                value: "00:61:00".into(),
            },
        ),
        (
            "Event: BridgeEnter\nChannel: PJSIP/1001-1\nUniqueid: 1.1\n",
            ViewError::MissingHeader {
                header: "BridgeUniqueid",
            },
        ),
    ];
    for (raw, want) in rows {
        let p = packet(raw);
        let got = CallCenterEvent::classify(&p).expect("one of ours");
        assert_eq!(got.expect_err(raw), *want, "{raw:?}");
    }
    // Not one of ours: untouched.
    for raw in [
        "Event: ExtensionStatus\nExten: 1\n",
        "Response: Success\nQueue: sales\n",
    ] {
        assert!(CallCenterEvent::classify(&packet(raw)).is_none(), "{raw}");
    }
    // A view refuses a packet of another kind.
    assert_eq!(
        QueueParams::from_packet(&packet("Event: QueueMember\nQueue: q\n")),
        Err(ViewError::WrongMessage {
            expected: "QueueParams event"
        })
    );
}

#[test]
fn unescaping_and_durations() {
    let rows = [
        ("plain", "plain"),
        ("a\\\\b", "a\\b"),
        ("\\\"q\\\" \\'s\\' \\?", "\"q\" 's' ?"),
        ("l1\\nl2\\tx", "l1\nl2\tx"),
        ("keep \\z", "keep \\z"),
        ("trailing \\", "trailing \\"),
    ];
    for (raw, want) in rows {
        assert_eq!(unescape_c(Cow::Borrowed(raw)), want, "{raw}");
    }
    assert!(matches!(unescape_c(Cow::Borrowed("x")), Cow::Borrowed(_)));
    assert_eq!(hms("00:00:01"), Some(1));
    assert_eq!(hms("101:02:03"), Some(101 * 3600 + 2 * 60 + 3));
    for bad in ["", "1:2", "a:00:00", "00:00:60", "1:2:3:4"] {
        assert_eq!(hms(bad), None, "{bad}");
    }
}
