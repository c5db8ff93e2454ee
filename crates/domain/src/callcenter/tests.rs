//! Tests of the call-center tracker: membership and pauses, queue calls from ringing to
//! hang-up, presence through every state, resync after an outage, and matching by hint.

use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().expect("time")
}

fn at(sec: u32) -> Timestamp {
    t("2026-12-03T10:00:00Z") + chrono::Duration::seconds(i64::from(sec))
}

fn ext(s: &str) -> ExtensionNumber {
    ExtensionNumber::parse(s).expect("ext")
}

/// Feeds inputs as live events on connection 1, numbering them from `first`.
struct Feed {
    tracker: Tracker,
    seq: u64,
}

impl Feed {
    fn new() -> Self {
        let mut tracker = Tracker::new();
        for (e, hint) in [
            ("1001", "PJSIP/1001&Custom:1001,CustomPresence:1001"),
            ("1002", "Custom:1002"),
            ("1099", "Custom:1099a&Custom:1099b"),
        ] {
            let u = tracker.apply(Live {
                pos: WirePos {
                    generation: 1,
                    seq: 0,
                },
                at: at(0),
                input: Input::Hint {
                    extension: ext(e),
                    hint: hint.into(),
                },
            });
            assert!(u.changed.is_empty(), "a hint alone changes no view");
        }
        Self { tracker, seq: 1 }
    }

    fn live(&mut self, sec: u32, input: Input) -> Live {
        self.seq += 1;
        Live {
            pos: WirePos {
                generation: 1,
                seq: self.seq,
            },
            at: at(sec),
            input,
        }
    }

    fn send(&mut self, sec: u32, input: Input) -> Update {
        let live = self.live(sec, input);
        self.tracker.apply(live)
    }
}

fn member(queue: &str, iface: &str, state_iface: Option<&str>) -> MemberInput {
    MemberInput {
        queue: queue.into(),
        interface: iface.into(),
        state_interface: state_iface.map(Into::into),
        paused: false,
        paused_reason: None,
        penalty: 0,
        calls_taken: 0,
        last_call: None,
        last_pause: None,
        in_call: false,
    }
}

/// `QueueMemberAdded` of agent `ext` as the captures' queues have it: interface
/// `Local/<ext>@agents-ring`, state interface `Custom:<ext>`.
fn agent_member(queue: &str, ext: &str) -> Input {
    Input::MemberAdded(member(
        queue,
        &format!("Local/{ext}@agents-ring"),
        Some(&format!("Custom:{ext}")),
    ))
}

fn params(queue: &str) -> Input {
    Input::QueueParams(QueueParamsInput {
        queue: queue.into(),
        completed: 0,
        abandoned: 0,
        service_level_pct: None,
    })
}

fn membership(queue: &str) -> QueueMembership {
    QueueMembership {
        queue: queue.into(),
        paused: false,
        paused_reason: None,
        paused_since: None,
        penalty: 0,
        calls_taken: 0,
        last_call: None,
        in_call: false,
    }
}

/// A view in `sales` (not paused) with presence `state`, no call.
fn in_sales_with_presence(state: &str) -> CallCenterView {
    CallCenterView {
        queues: vec![membership("sales")],
        presence: Some(AgentPresence {
            state: state.into(),
            subtype: None,
            message: None,
        }),
        call: None,
    }
}

fn changed(u: &Update) -> Vec<(&str, &CallCenterView)> {
    u.changed
        .iter()
        .map(|c| (c.extension.as_str(), &c.view))
        .collect()
}

fn agent(queue: &str, iface: &str, caller: &str, dest: Option<&str>) -> AgentInput {
    AgentInput {
        queue: queue.into(),
        interface: iface.into(),
        caller_uniqueid: Some(caller.into()),
        agent_uniqueid: dest.map(Into::into),
        peer_number: Some("5559876".into()),
        peer_name: Some("Customer".into()),
    }
}

#[test]
fn hints_and_channel_devices() {
    let rows = [
        ("PJSIP/1001-0000002a", "pjsip/1001"),
        (
            "Local/1001@agents-ring-00000001;1",
            "local/1001@agents-ring",
        ),
        (
            "Local/1001@agents-ring-00000001;2",
            "local/1001@agents-ring",
        ),
        ("SIP/trunk-provider-0000000f", "sip/trunk-provider"),
        ("DAHDI/1-1", "dahdi/1"),
        ("Custom:1001", "custom:1001"),
    ];
    for (channel, device) in rows {
        assert_eq!(channel_device(channel), device, "{channel}");
    }
    assert_eq!(
        parse_hint("PJSIP/1001&Custom:1001,CustomPresence:1001"),
        (
            vec!["pjsip/1001".to_owned(), "custom:1001".to_owned()],
            Some("custompresence:1001".to_owned())
        )
    );
    assert_eq!(
        parse_hint("Custom:1099a&Custom:1099b"),
        (
            vec!["custom:1099a".to_owned(), "custom:1099b".to_owned()],
            None
        )
    );
}

#[test]
fn membership_and_pause_round_trip() {
    let mut f = Feed::new();
    assert!(f.send(1, params("sales")).changed.is_empty());
    // StateInterface decides, case-insensitively (`custom:1001` in the hint is `Custom:1001`).
    let alice = member("sales", "Local/1001@agents-ring", Some("CUSTOM:1001"));
    let u = f.send(2, Input::MemberAdded(alice.clone()));
    assert_eq!(
        changed(&u),
        [(
            "1001",
            &CallCenterView {
                queues: vec![QueueMembership {
                    penalty: 0,
                    ..membership("sales")
                }],
                ..Default::default()
            }
        )]
    );
    assert!(u.queues_changed && u.rejects.is_empty());

    let paused = MemberInput {
        paused: true,
        paused_reason: Some("Lunch".into()),
        ..alice.clone()
    };
    let u = f.send(3, Input::MemberUpdated(paused.clone()));
    let q = &u.changed[0].view.queues[0];
    assert!(q.paused);
    assert_eq!(q.paused_reason.as_deref(), Some("Lunch"));
    // The same state again changes nothing.
    assert!(f.send(4, Input::MemberUpdated(paused)).changed.is_empty());
    // Unpaused: the reason goes too (Asterisk sends an empty PausedReason).
    let u = f.send(5, Input::MemberUpdated(alice.clone()));
    assert_eq!(u.changed[0].view.queues, vec![membership("sales")]);

    let stats = f.tracker.queue_stats(at(5));
    assert_eq!(stats.len(), 1);
    assert_eq!(
        stats[0].members,
        vec![QueueMemberSummary {
            extension: ext("1001"),
            paused: false,
            paused_reason: None,
            paused_since: None,
            in_call: false,
        }]
    );

    // A second queue, listed in name order; then removal.
    f.send(6, params("support"));
    let u = f.send(
        7,
        Input::MemberAdded(MemberInput {
            penalty: 2,
            ..member("support", "PJSIP/1001", None)
        }),
    );
    let names: Vec<&str> = u.changed[0]
        .view
        .queues
        .iter()
        .map(|q| q.queue.as_str())
        .collect();
    assert_eq!(names, ["sales", "support"]);
    let u = f.send(
        8,
        Input::MemberRemoved {
            queue: "sales".into(),
            interface: "local/1001@AGENTS-RING".into(),
        },
    );
    assert_eq!(u.changed[0].view.queues.len(), 1);
    let u = f.send(
        9,
        Input::MemberRemoved {
            queue: "support".into(),
            interface: "PJSIP/1001".into(),
        },
    );
    assert_eq!(changed(&u), [("1001", &CallCenterView::default())]);
}

#[test]
fn a_member_whose_state_interface_matches_no_hint() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    // StateInterface Custom:2001 is in no hint; its Interface PJSIP/1001 is, but the
    // StateInterface decides, as Asterisk watches that device.
    let stranger = member("sales", "PJSIP/1001", Some("Custom:2001"));
    let u = f.send(2, Input::MemberAdded(stranger));
    assert!(u.changed.is_empty());
    assert_eq!(
        u.rejects,
        BTreeMap::from([(RejectKind::UnmatchedMember, 1)])
    );
    assert!(f.tracker.queue_stats(at(2))[0].members.is_empty());
    // Once an extension's hint holds the device, the member is that extension's.
    let u = f.send(
        3,
        Input::Hint {
            extension: ext("2001"),
            hint: "Custom:2001".into(),
        },
    );
    assert_eq!(
        changed(&u),
        [(
            "2001",
            &CallCenterView {
                queues: vec![membership("sales")],
                ..Default::default()
            }
        )]
    );
}

#[test]
fn unknown_queues_and_malformed_presence_are_counted() {
    let mut f = Feed::new();
    let u = f.send(
        1,
        Input::CallerJoined(CallerInput {
            queue: "nosuch".into(),
            caller_uniqueid: "1.1".into(),
        }),
    );
    assert_eq!(u.rejects, BTreeMap::from([(RejectKind::UnknownQueue, 1)]));
    let u = f.send(
        2,
        Input::AgentCalled(agent("nosuch", "PJSIP/1001", "1.1", None)),
    );
    assert_eq!(u.rejects, BTreeMap::from([(RejectKind::UnknownQueue, 1)]));
    assert!(u.changed.is_empty());
    for bad in ["", "  ", "Away now", "dnd!"] {
        let u = f.send(
            3,
            Input::Presence(PresenceInput {
                presentity: "CustomPresence:1001".into(),
                state: bad.into(),
                subtype: None,
                message: None,
            }),
        );
        assert_eq!(
            u.rejects,
            BTreeMap::from([(RejectKind::MalformedPresence, 1)]),
            "{bad:?}"
        );
        assert!(u.changed.is_empty());
    }
    assert_eq!(RejectKind::UnmatchedMember.as_str(), "unmatched_member");
}

#[test]
fn a_queued_call_from_ringing_to_hang_up() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(2, agent_member("sales", "1001"));
    f.send(2, agent_member("sales", "1002"));
    let u = f.send(
        10,
        Input::CallerJoined(CallerInput {
            queue: "sales".into(),
            caller_uniqueid: "c.1".into(),
        }),
    );
    assert!(u.changed.is_empty() && u.queues_changed);
    let stats = &f.tracker.queue_stats(at(25))[0];
    assert_eq!((stats.calls_waiting, stats.longest_wait_s), (1, 15));

    // ringall: both members are rung.
    let u = f.send(
        12,
        Input::AgentCalled(agent("sales", "Local/1001@agents-ring", "c.1", Some("a.1"))),
    );
    let ringing = CallInfo {
        state: CallState::Ringing,
        peer_number: Some("5559876".into()),
        peer_name: Some("Customer".into()),
        queue: Some("sales".into()),
        since: at(12),
    };
    assert_eq!(u.changed.len(), 1);
    assert_eq!(u.changed[0].view.call.as_ref(), Some(&ringing));
    let u = f.send(
        12,
        Input::AgentCalled(agent("sales", "Local/1002@agents-ring", "c.1", Some("a.2"))),
    );
    assert_eq!(changed(&u)[0].0, "1002");

    // 1001 answers: it is up, 1002 stops ringing (ringall sends it nothing else).
    let u = f.send(
        14,
        Input::AgentConnected(agent("sales", "Local/1001@agents-ring", "c.1", Some("a.1"))),
    );
    let got = changed(&u);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "1001");
    let call = got[0].1.call.as_ref().expect("a call");
    assert_eq!((call.state, call.since), (CallState::Up, at(14)));
    assert!(got[0].1.queues[0].in_call);
    assert_eq!(
        got[1],
        (
            "1002",
            &CallCenterView {
                queues: vec![membership("sales")],
                ..Default::default()
            }
        )
    );
    let u = f.send(
        14,
        Input::CallerLeft(CallerInput {
            queue: "sales".into(),
            caller_uniqueid: "c.1".into(),
        }),
    );
    assert!(u.changed.is_empty(), "the answered call stays");
    assert_eq!(f.tracker.queue_stats(at(20))[0].calls_waiting, 0);

    // The call ends: no call, one more call taken, last call now.
    let u = f.send(
        60,
        Input::AgentCompleted(agent("sales", "Local/1001@agents-ring", "c.1", Some("a.1"))),
    );
    let view = &changed(&u)[0].1;
    assert_eq!(view.call, None);
    assert_eq!(
        view.queues,
        vec![QueueMembership {
            calls_taken: 1,
            last_call: Some(at(60)),
            ..membership("sales")
        }]
    );
    assert_eq!(f.tracker.queue_stats(at(60))[0].completed, 1);
    assert!(
        f.send(
            61,
            Input::Hangup {
                uniqueid: "c.1".into()
            }
        )
        .changed
        .is_empty()
    );
}

#[test]
fn direct_calls_come_from_channels() {
    let mut f = Feed::new();
    let chan = |state: u8| ChannelInput {
        uniqueid: "u.7".into(),
        channel: "PJSIP/1001-0000002a".into(),
        state,
        peer_number: Some("1002".into()),
        peer_name: Some("Bob".into()),
        linkedid: Some("u.6".into()),
        in_queue: None,
        age_s: None,
    };
    // Down (0) is no call yet.
    assert!(f.send(1, Input::Channel(chan(0))).changed.is_empty());
    let u = f.send(2, Input::Channel(chan(5)));
    let call = u.changed[0].view.call.clone().expect("ringing");
    assert_eq!(
        call,
        CallInfo {
            state: CallState::Ringing,
            peer_number: Some("1002".into()),
            peer_name: Some("Bob".into()),
            queue: None,
            since: at(2),
        }
    );
    // A repeated state keeps its time.
    assert!(f.send(3, Input::Channel(chan(5))).changed.is_empty());
    let u = f.send(4, Input::Channel(chan(6)));
    let call = u.changed[0].view.call.clone().expect("up");
    assert_eq!((call.state, call.since), (CallState::Up, at(4)));
    let u = f.send(
        9,
        Input::Hangup {
            uniqueid: "u.7".into(),
        },
    );
    assert_eq!(changed(&u), [("1001", &CallCenterView::default())]);
    // A channel of a device in no hint changes nothing.
    let mut other = chan(6);
    other.channel = "PJSIP/3003-00000001".into();
    assert!(f.send(10, Input::Channel(other)).changed.is_empty());
}

#[test]
fn a_presence_walk_through_every_state() {
    let mut f = Feed::new();
    let p = |state: &str, subtype: Option<&str>, message: Option<&str>| {
        Input::Presence(PresenceInput {
            presentity: "CustomPresence:1001".into(),
            state: state.into(),
            subtype: subtype.map(Into::into),
            message: message.map(Into::into),
        })
    };
    let walk = [
        ("away", Some("Lunch break"), Some("Back at 14:00")),
        ("dnd", None, None),
        ("available", None, None),
        ("unavailable", None, Some("Gone home")),
        ("xa", Some("Vacation"), Some("Back on Monday")),
        ("chat", None, Some("Free to chat")),
        ("away", Some("Meeting"), Some("Room 3, back at 15:00")),
        ("not_set", None, None),
    ];
    for (i, (state, subtype, message)) in walk.into_iter().enumerate() {
        let u = f.send(u32::try_from(i).expect("small"), p(state, subtype, message));
        assert_eq!(
            changed(&u),
            [(
                "1001",
                &CallCenterView {
                    presence: Some(AgentPresence {
                        state: state.into(),
                        subtype: subtype.map(Into::into),
                        message: message.map(Into::into),
                    }),
                    ..Default::default()
                }
            )],
            "{state}"
        );
    }
    // Every state Asterisk defines was walked.
    for known in AgentPresence::KNOWN_STATES {
        assert!(walk.iter().any(|(s, ..)| *s == known), "{known}");
    }
    // Written again unchanged (PresenceStateChange is sent for every write): nothing.
    assert!(f.send(20, p("not_set", None, None)).changed.is_empty());
    // Upper case from another provider is lower-cased; empty texts are none.
    let u = f.send(21, p("DND", Some(""), Some("")));
    assert_eq!(
        u.changed[0]
            .view
            .presence
            .as_ref()
            .map(|p| p.state.as_str()),
        Some("dnd")
    );
    assert_eq!(
        u.changed[0]
            .view
            .presence
            .as_ref()
            .and_then(|p| p.message.clone()),
        None
    );
    // A presentity no hint names is kept but shown nowhere.
    let u = f.send(
        22,
        Input::Presence(PresenceInput {
            presentity: "CustomPresence:1201".into(),
            state: "away".into(),
            subtype: None,
            message: None,
        }),
    );
    assert!(u.is_empty());
    // Once a hint names it, it shows.
    let u = f.send(
        23,
        Input::Hint {
            extension: ext("1201"),
            hint: "Custom:1201,CustomPresence:1201".into(),
        },
    );
    assert_eq!(changed(&u)[0].0, "1201");
}

fn list(kind: ListKind, seq: u64, sec: u32, items: Vec<Input>) -> ListSnapshot {
    ListSnapshot {
        kind,
        response: WirePos { generation: 2, seq },
        at: at(sec),
        items,
    }
}

#[test]
fn resync_clears_a_call_that_ended_while_the_link_was_down() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(2, agent_member("sales", "1001"));
    f.send(
        3,
        Input::AgentConnected(agent("sales", "Local/1001@agents-ring", "c.1", Some("a.1"))),
    );
    f.send(
        3,
        Input::Channel(ChannelInput {
            uniqueid: "d.1".into(),
            channel: "PJSIP/1001-00000003".into(),
            state: 6,
            peer_number: Some("1002".into()),
            peer_name: None,
            linkedid: Some("d.0".into()),
            in_queue: None,
            age_s: None,
        }),
    );
    assert!(f.tracker.view(&ext("1001")).call.is_some());

    // The link drops; the call ends unseen. After reconnecting, CoreShowChannels is empty.
    let u = f
        .tracker
        .resync(list(ListKind::CoreShowChannels, 5, 100, vec![]), vec![]);
    let got = changed(&u);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "1001");
    assert_eq!(got[0].1.call, None);
    // The membership's in_call is the queue list's to correct.
    let item = Input::MemberUpdated(member(
        "sales",
        "Local/1001@agents-ring",
        Some("Custom:1001"),
    ));
    let u = f.tracker.resync(
        list(ListKind::QueueStatus, 9, 101, vec![params("sales"), item]),
        vec![],
    );
    assert_eq!(u.changed.len(), 1);
    assert!(!u.changed[0].view.queues[0].in_call);
}

#[test]
fn resync_drops_what_the_list_no_longer_shows_and_keeps_wire_order() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(1, params("support"));
    f.send(2, Input::MemberAdded(member("sales", "Custom:1001", None)));
    f.send(
        2,
        Input::MemberAdded(member("support", "Custom:1002", None)),
    );
    f.send(
        3,
        Input::Presence(PresenceInput {
            presentity: "CustomPresence:1001".into(),
            state: "away".into(),
            subtype: None,
            message: None,
        }),
    );
    // Remembered from the store: 1002 had a call before the restart.
    f.tracker.remember(
        ext("1002"),
        CallCenterView {
            queues: vec![membership("support")],
            presence: None,
            call: Some(CallInfo {
                state: CallState::Up,
                peer_number: None,
                peer_name: None,
                queue: None,
                since: at(0),
            }),
        },
    );

    // QueueStatus after reconnect shows only sales, with 1001 paused. A live pause of 1001 was
    // read before the list's response (seq 9 < 10) and an unpause after it (seq 11): the list
    // overrides the first, the second overrides the list.
    let paused = |p: bool| MemberInput {
        paused: p,
        paused_reason: p.then(|| "Break".to_owned()),
        ..member("sales", "Custom:1001", None)
    };
    let live = |seq: u64, input: Input| Live {
        pos: WirePos { generation: 2, seq },
        at: at(50),
        input,
    };
    let drained = vec![
        live(9, Input::MemberUpdated(paused(false))),
        live(11, Input::MemberUpdated(paused(false))),
    ];
    let snapshot = list(
        ListKind::QueueStatus,
        10,
        50,
        vec![params("sales"), Input::MemberUpdated(paused(true))],
    );
    let u = f.tracker.resync(snapshot, drained);
    let got = changed(&u);
    // 1001 ends unpaused (the live event after the list wins): same as before, so no change.
    // 1002 lost its support membership (support is gone) and, with the channels list still
    // to come, keeps its remembered call.
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "1002");
    assert!(got[0].1.queues.is_empty());
    assert!(got[0].1.call.is_some());
    let names: Vec<String> = f
        .tracker
        .queue_stats(at(50))
        .into_iter()
        .map(|q| q.queue)
        .collect();
    assert_eq!(names, ["sales"]);

    // Now the other way round: the pause after the list wins.
    let u = f.tracker.resync(
        list(
            ListKind::QueueStatus,
            20,
            60,
            vec![params("sales"), Input::MemberUpdated(paused(false))],
        ),
        vec![live(21, Input::MemberUpdated(paused(true)))],
    );
    assert_eq!(
        u.changed[0].view.queues[0].paused_reason.as_deref(),
        Some("Break")
    );

    // PresenceStateList without CustomPresence:1001: its presence is not set any more (the
    // hint still names a provider, so not null).
    let u = f
        .tracker
        .resync(list(ListKind::PresenceStateList, 30, 70, vec![]), vec![]);
    let got = changed(&u);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].0, got[0].1.presence.as_ref()),
        ("1001", Some(&AgentPresence::not_set()))
    );

    // CoreShowChannels: the remembered call of 1002 is gone.
    let u = f
        .tracker
        .resync(list(ListKind::CoreShowChannels, 40, 80, vec![]), vec![]);
    assert_eq!(changed(&u), [("1002", &CallCenterView::default())]);
    // Nothing more to say after that.
    assert!(
        f.tracker
            .resync(list(ListKind::CoreShowChannels, 50, 90, vec![]), vec![])
            .changed
            .is_empty()
    );
}

#[test]
fn a_queue_call_is_restored_from_the_channel_list() {
    // As in the capture m_channels_list: the agent's Local channel is found through the
    // member's Interface, and the queue through the caller channel of the same call.
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(2, agent_member("sales", "1001"));
    let channel = |uniqueid: &str, name: &str, in_queue: Option<&str>| {
        Input::Channel(ChannelInput {
            uniqueid: uniqueid.into(),
            channel: name.into(),
            state: 6,
            peer_number: Some("5559876".into()),
            peer_name: Some("Customer 5559876".into()),
            linkedid: Some("1795469530.2".into()),
            in_queue: in_queue.map(Into::into),
            age_s: Some(1),
        })
    };
    let items = vec![
        channel("1795469530.3", "Local/5559876@customers-00000000;2", None),
        channel(
            "1795469530.2",
            "Local/5559876@customers-00000000;1",
            Some("sales"),
        ),
        channel("1795469530.4", "Local/1001@agents-ring-00000001;1", None),
        channel("1795469530.5", "Local/1001@agents-ring-00000001;2", None),
    ];
    let u = f
        .tracker
        .resync(list(ListKind::CoreShowChannels, 3, 30, items), vec![]);
    assert_eq!(
        changed(&u),
        [(
            "1001",
            &CallCenterView {
                queues: vec![membership("sales")],
                presence: None,
                call: Some(CallInfo {
                    state: CallState::Up,
                    peer_number: Some("5559876".into()),
                    peer_name: Some("Customer 5559876".into()),
                    queue: Some("sales".into()),
                    since: at(29),
                }),
            }
        )]
    );
}

#[test]
fn views_round_trip_through_records() {
    let mut record = Extension::create(
        crate::RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
        crate::NewExtension {
            extension: ext("1001"),
            agent_name: crate::AgentName::parse("Alice").expect("name"),
            department: crate::Department::parse("Sales").expect("dept"),
            is_active: true,
        },
        at(0),
    );
    assert_eq!(CallCenterView::of(&record), CallCenterView::default());
    let view = in_sales_with_presence("away");
    view.apply_to(&mut record);
    assert_eq!(CallCenterView::of(&record), view);
    assert_eq!(record.queues.len(), 1);
}

#[test]
fn memberships_name_what_a_queue_pause_must_name() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(1, params("support"));
    f.send(
        2,
        Input::MemberAdded(member("support", "PJSIP/1001", Some("PJSIP/1001"))),
    );
    f.send(2, agent_member("sales", "1001"));
    f.send(3, agent_member("sales", "1002"));
    // A member of no known extension belongs to nobody.
    f.send(4, Input::MemberAdded(member("sales", "PJSIP/7777", None)));
    assert_eq!(
        f.tracker.memberships(&ext("1001")),
        [
            ("sales".to_owned(), "Local/1001@agents-ring".to_owned()),
            ("support".to_owned(), "PJSIP/1001".to_owned()),
        ]
    );
    assert_eq!(
        f.tracker.memberships(&ext("1002")),
        [("sales".to_owned(), "Local/1002@agents-ring".to_owned())]
    );
    assert!(f.tracker.memberships(&ext("1099")).is_empty());
    f.send(
        5,
        Input::MemberRemoved {
            queue: "support".into(),
            interface: "pjsip/1001".into(),
        },
    );
    assert_eq!(f.tracker.memberships(&ext("1001")).len(), 1);
}

#[test]
fn a_device_that_moves_between_hints_takes_its_membership_along() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(2, agent_member("sales", "1002"));
    assert_eq!(f.tracker.view(&ext("1002")).queues.len(), 1);
    let hint = |e: &str, h: &str| Input::Hint {
        extension: ext(e),
        hint: h.into(),
    };
    // 1099's newer hint names the device too: it takes the device, and the membership.
    let u = f.send(3, hint("1099", "Custom:1099a&Custom:1002"));
    let mut got: Vec<&str> = changed(&u).iter().map(|(e, _)| *e).collect();
    got.sort_unstable();
    assert_eq!(got, ["1002", "1099"]);
    assert!(f.tracker.view(&ext("1002")).queues.is_empty());
    assert_eq!(f.tracker.view(&ext("1099")).queues.len(), 1);
    // 1099 drops it again: 1002's hint, which still names it, takes it back.
    let u = f.send(4, hint("1099", "Custom:1099a"));
    let mut got: Vec<&str> = changed(&u).iter().map(|(e, _)| *e).collect();
    got.sort_unstable();
    assert_eq!(got, ["1002", "1099"]);
    assert_eq!(f.tracker.view(&ext("1002")).queues.len(), 1);
    let u = f.send(5, hint("1099", "Custom:1099a&Custom:1002"));
    assert_eq!(changed(&u).len(), 2);
    // 1002 no longer names it and 1099's hint is removed: the device belongs to nobody.
    let u = f.send(6, hint("1002", "Custom:1002-new"));
    assert!(changed(&u).is_empty());
    let u = f.send(7, hint("1099", ""));
    assert_eq!(changed(&u).len(), 1);
    assert!(f.tracker.view(&ext("1099")).queues.is_empty());
    assert_eq!(
        *u.rejects.get(&RejectKind::UnmatchedMember).unwrap_or(&0),
        0
    );
}

/// Alice (1001) in `sales`, paused or not, as `QueueMemberStatus` / a `QueueMember` item
/// reports her, with `LastPause` when given.
fn alice(paused: bool, last_pause: Option<Timestamp>) -> MemberInput {
    MemberInput {
        paused,
        paused_reason: paused.then(|| "Lunch".to_owned()),
        last_pause,
        ..member("sales", "Local/1001@agents-ring", Some("Custom:1001"))
    }
}

fn paused_since(u: &Update) -> Option<Timestamp> {
    u.changed[0].view.queues[0].paused_since
}

#[test]
fn paused_since_is_the_pbx_last_pause_or_when_the_pause_was_seen() {
    let mut f = Feed::new();
    f.send(1, params("sales"));
    f.send(2, agent_member("sales", "1001"));
    let long_ago = t("2026-12-03T09:48:00Z");

    // Paused before we looked: LastPause says since when (not when we saw it).
    let u = f.send(3, Input::MemberUpdated(alice(true, Some(long_ago))));
    assert_eq!(paused_since(&u), Some(long_ago));
    assert_eq!(
        f.tracker.queue_stats(at(3))[0].members[0].paused_since,
        Some(long_ago),
        "GET /api/queues says the same"
    );
    // A later report of the same pause without LastPause keeps its start.
    let u = f.send(4, Input::MemberUpdated(alice(true, None)));
    assert!(u.changed.is_empty(), "{u:?}");
    assert_eq!(
        f.tracker.view(&ext("1001")).queues[0].paused_since,
        Some(long_ago)
    );
    // Resumed: Asterisk keeps LastPause, the record says not paused, so no start.
    let u = f.send(5, Input::MemberUpdated(alice(false, Some(long_ago))));
    assert_eq!(u.changed[0].view.queues, vec![membership("sales")]);
    // A pause seen live from a PBX that sends no LastPause starts when it was seen.
    let u = f.send(6, Input::MemberUpdated(alice(true, None)));
    assert_eq!(paused_since(&u), Some(at(6)));
    // A new pause with LastPause: the PBX's time (milliseconds dropped like every time).
    let u = f.send(
        7,
        Input::MemberUpdated(alice(
            true,
            Some(at(7) + chrono::Duration::microseconds(1500)),
        )),
    );
    assert_eq!(
        paused_since(&u),
        Some(at(7) + chrono::Duration::milliseconds(1))
    );
    // Only while paused: a LastPause on an unpaused member is no pause time.
    let u = f.send(8, Input::MemberUpdated(alice(false, Some(at(7)))));
    assert_eq!(u.changed[0].view.queues[0].paused_since, None);
}

#[test]
fn paused_since_survives_a_resync_and_a_restart_without_last_pause() {
    // The server restarts: the store held Alice paused since 09:48.
    let long_ago = t("2026-12-03T09:48:00Z");
    let stored = CallCenterView {
        queues: vec![QueueMembership {
            paused: true,
            paused_reason: Some("Lunch".into()),
            paused_since: Some(long_ago),
            ..membership("sales")
        }],
        ..Default::default()
    };
    let mut f = Feed::new();
    f.tracker.remember(ext("1001"), stored.clone());
    // A QueueStatus whose member has no LastPause keeps the stored start.
    let items = vec![params("sales"), Input::MemberUpdated(alice(true, None))];
    let u = f
        .tracker
        .resync(list(ListKind::QueueStatus, 10, 20, items), Vec::new());
    assert!(u.changed.is_empty(), "{u:?}");
    assert_eq!(f.tracker.view(&ext("1001")), stored);
    // The next list, with the PBX's LastPause, is the truth.
    let items = vec![
        params("sales"),
        Input::MemberUpdated(alice(true, Some(at(15)))),
    ];
    let u = f
        .tracker
        .resync(list(ListKind::QueueStatus, 20, 30, items), Vec::new());
    assert_eq!(paused_since(&u), Some(at(15)));
    // A list without LastPause again keeps the start the tracker knows.
    let items = vec![params("sales"), Input::MemberUpdated(alice(true, None))];
    let u = f
        .tracker
        .resync(list(ListKind::QueueStatus, 30, 40, items), Vec::new());
    assert!(u.changed.is_empty(), "{u:?}");
    assert_eq!(
        f.tracker.view(&ext("1001")).queues[0].paused_since,
        Some(at(15))
    );
}

#[test]
fn a_refused_list_clears_what_it_would_have_said() {
    let mut f = Feed::new();
    let stored = in_sales_with_presence("dnd");
    f.tracker.remember(ext("1001"), stored.clone());
    // QueueStatus refused (no app_queue): the stored memberships go, the presence stays
    // until its own list says otherwise.
    let u = f.tracker.list_refused(ListKind::QueueStatus, at(1));
    assert_eq!(
        changed(&u),
        [(
            "1001",
            &CallCenterView {
                queues: Vec::new(),
                ..stored.clone()
            }
        )]
    );
    assert!(f.tracker.queue_stats(at(1)).is_empty());
    // PresenceStateList refused too: nothing stale is left.
    let u = f.tracker.list_refused(ListKind::PresenceStateList, at(2));
    assert_eq!(changed(&u), [("1001", &CallCenterView::default())]);
    // Live events still count after a refusal.
    f.send(3, params("sales"));
    let u = f.send(4, agent_member("sales", "1001"));
    assert_eq!(changed(&u)[0].1.queues, vec![membership("sales")]);
    let u = f.send(
        5,
        Input::Presence(PresenceInput {
            presentity: "CustomPresence:1001".into(),
            state: "away".into(),
            subtype: None,
            message: None,
        }),
    );
    assert_eq!(
        changed(&u)[0].1.presence.as_ref().map(|p| p.state.as_str()),
        Some("away")
    );
}

#[test]
fn a_hinted_provider_without_a_presence_is_not_set_and_null_only_without_one() {
    let mut f = Feed::new();
    // Before PresenceStateList was taken nothing is known yet.
    assert_eq!(f.tracker.view(&ext("1001")).presence, None);
    let presence = |state: &str| {
        Input::Presence(PresenceInput {
            presentity: "CustomPresence:1001".into(),
            state: state.into(),
            subtype: None,
            message: None,
        })
    };
    // The list lists nothing for it: not_set. 1002 hints no provider: null.
    let u = f.tracker.resync(
        ListSnapshot {
            kind: ListKind::PresenceStateList,
            response: WirePos {
                generation: 1,
                seq: 10,
            },
            at: at(10),
            items: vec![],
        },
        vec![],
    );
    assert_eq!(
        changed(&u),
        [(
            "1001",
            &CallCenterView {
                presence: Some(AgentPresence::not_set()),
                ..CallCenterView::default()
            }
        )]
    );
    assert_eq!(f.tracker.view(&ext("1002")).presence, None);
    // A reported `not_set` reads the same; `away` and back.
    f.send(11, presence("away"));
    assert_eq!(
        f.tracker.view(&ext("1001")).presence.map(|p| p.state),
        Some("away".to_owned())
    );
    f.send(12, presence("not_set"));
    assert_eq!(
        f.tracker.view(&ext("1001")).presence,
        Some(AgentPresence::not_set())
    );
    // A PBX that refuses the list: unknown, so null.
    f.tracker.list_refused(ListKind::PresenceStateList, at(13));
    assert_eq!(f.tracker.view(&ext("1001")).presence, None);
}
