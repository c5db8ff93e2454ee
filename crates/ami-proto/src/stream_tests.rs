//! Whole-stream tests: the real Asterisk 20.20.1 captures in `fixtures/ami/real`, read sizes
//! from one byte to the whole file, UTF-8 split across reads, and arbitrary bytes.

use bytes::BytesMut;
use proptest::prelude::*;

use crate::views::{ExtensionStatus, ListComplete, Response, command_output};
use crate::{DecodeError, Decoder, Frame, Kind, Packet};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/ami/real");

/// Everything one decoding run produced.
#[derive(Debug, Default, PartialEq)]
struct Decoded {
    banner: Option<String>,
    packets: Vec<Packet>,
    errors: Vec<DecodeError>,
    end_offset: u64,
}

/// Feeds `input` in reads whose sizes come from `sizes`, then ends the stream.
fn decode(input: &[u8], max: usize, mut sizes: impl FnMut() -> usize) -> Decoded {
    let mut decoder = Decoder::with_max_packet_size(max);
    let mut buf = BytesMut::new();
    let mut out = Decoded::default();
    let mut take = |frame| match frame {
        Frame::Banner(b) => {
            assert!(
                out.banner.is_none() && out.packets.is_empty(),
                "banner only first"
            );
            out.banner = Some(b.line().to_owned());
        }
        Frame::Packet(p) => out.packets.push(p),
    };
    let mut rest = input;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => take(frame),
                Ok(None) => break,
                Err(e) => out.errors.push(e),
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => take(frame),
            Ok(None) => break,
            Err(e) => out.errors.push(e),
        }
    }
    out.end_offset = decoder.stream_offset();
    out
}

/// A small deterministic generator (64-bit LCG) for read sizes, so failures reproduce.
fn lcg(seed: u64, max: usize) -> impl FnMut() -> usize {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + ((state >> 33) as usize % max)
    }
}

fn whole() -> usize {
    usize::MAX
}

/// What one capture must give, written from its bytes.
struct Expect {
    file: &'static str,
    banner: bool,
    /// Packets per kind: events, responses, actions, unknown.
    kinds: [usize; 4],
    /// `(name, how many)` for names worth pinning down.
    names: &'static [(&'static str, usize)],
    /// Further checks on specific packets.
    extra: fn(&[Packet]),
}

fn check(expect: &Expect) {
    let path = format!("{FIXTURES}/{}", expect.file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let got = decode(&bytes, crate::DEFAULT_MAX_PACKET_SIZE, whole);
    assert_eq!(got.errors, [], "{}", expect.file);
    assert_eq!(got.end_offset, bytes.len() as u64, "{}", expect.file);
    assert_eq!(
        got.banner.as_deref(),
        expect.banner.then_some("Asterisk Call Manager/9.0.0"),
        "{}",
        expect.file
    );
    let count = |k| got.packets.iter().filter(|p| p.kind() == k).count();
    let kinds = [
        count(Kind::Event),
        count(Kind::Response),
        count(Kind::Action),
        count(Kind::Unknown),
    ];
    assert_eq!(
        kinds, expect.kinds,
        "{}: events, responses, actions, unknown",
        expect.file
    );
    for (name, n) in expect.names {
        let seen = got
            .packets
            .iter()
            .filter(|p| p.name().as_deref() == Some(*name))
            .count();
        assert_eq!(seen, *n, "{}: packets named {name}", expect.file);
    }
    // Every byte is accounted for: the banner line plus every packet's wire bytes.
    let banner_len = if expect.banner {
        "Asterisk Call Manager/9.0.0\r\n".len()
    } else {
        0
    };
    let packet_bytes: usize = got.packets.iter().map(|p| p.as_bytes().len()).sum();
    // g_errors.sent holds one lone blank line (an empty request), which frames to nothing.
    let stray_blank = if expect.file == "g_errors.sent.ami" {
        2
    } else {
        0
    };
    assert_eq!(
        banner_len + packet_bytes + stray_blank,
        bytes.len(),
        "{}",
        expect.file
    );
    (expect.extra)(&got.packets);

    // The same stream in 1-byte reads and in random reads (fixed seeds) gives the same result.
    let one = decode(&bytes, crate::DEFAULT_MAX_PACKET_SIZE, || 1);
    assert_eq!(one, got, "{}: 1-byte reads", expect.file);
    for seed in [1, 7, 5038] {
        let random = decode(&bytes, crate::DEFAULT_MAX_PACKET_SIZE, lcg(seed, 97));
        assert_eq!(random, got, "{}: random reads, seed {seed}", expect.file);
    }
}

fn response(p: &Packet) -> Response<'_> {
    Response::from_packet(p).expect("a response")
}

fn nothing(_: &[Packet]) {}

const CAPTURES: &[Expect] = &[
    Expect {
        file: "a_login_ping_logoff.recv.ami",
        banner: true,
        kinds: [2, 3, 0, 0],
        names: &[
            ("FullyBooted", 1),
            ("SuccessfulAuth", 1),
            ("Success", 2),
            ("Goodbye", 1),
        ],
        extra: |p| {
            assert_eq!(
                response(&p[0]).message().as_deref(),
                Some("Authentication accepted")
            );
            assert_eq!(p[1].get("Status").as_deref(), Some("Fully Booted"));
            assert_eq!(p[2].get("Service").as_deref(), Some("AMI"));
            assert_eq!(p[3].get("Ping").as_deref(), Some("Pong"));
            assert_eq!(
                p[4].get("Message").as_deref(),
                Some("Thanks for all the fish.")
            );
        },
    },
    Expect {
        file: "a_login_ping_logoff.sent.ami",
        banner: false,
        kinds: [0, 0, 3, 0],
        names: &[("Login", 1), ("Ping", 1), ("Logoff", 1)],
        extra: |p| {
            assert_eq!(p[0].get("Username").as_deref(), Some("monitor"));
            assert_eq!(
                p[0].get("Events"),
                None,
                "a logs in without an Events header"
            );
        },
    },
    Expect {
        file: "b_login_failure.recv.ami",
        banner: true,
        kinds: [0, 1, 0, 0],
        names: &[("Error", 1)],
        extra: |p| {
            let r = response(&p[0]);
            assert!(r.is_error());
            assert_eq!(r.message().as_deref(), Some("Authentication failed"));
        },
    },
    Expect {
        file: "b_login_failure.sent.ami",
        banner: false,
        kinds: [0, 0, 1, 0],
        names: &[("Login", 1)],
        extra: nothing,
    },
    Expect {
        file: "c_md5_challenge_login.recv.ami",
        banner: true,
        kinds: [0, 4, 0, 0],
        names: &[("Success", 3), ("Goodbye", 1)],
        extra: |p| assert_eq!(p[0].get("Challenge").as_deref(), Some("139199246")),
    },
    Expect {
        file: "c_md5_challenge_login.sent.ami",
        banner: false,
        kinds: [0, 0, 4, 0],
        names: &[("Challenge", 1), ("Login", 1), ("Ping", 1), ("Logoff", 1)],
        extra: |p| {
            assert_eq!(p[0].get("AuthType").as_deref(), Some("MD5"));
            assert!(p[1].has("AuthType", "md5"));
            let key = crate::md5_key("139199246", &crate::Secret::new("monitorpass"));
            assert_eq!(p[1].get("Key").as_deref(), Some(key.as_str()));
        },
    },
    Expect {
        file: "d_state_lists.recv.ami",
        banner: true,
        kinds: [25, 4, 0, 0],
        names: &[
            ("ExtensionStatus", 11),
            ("ExtensionStateListComplete", 1),
            ("DeviceStateChange", 12),
            ("DeviceStateListComplete", 1),
        ],
        extra: |p| {
            let start = response(&p[1]);
            assert!(start.is_list_start());
            assert_eq!(start.action_id().as_deref(), Some("d-2"));
            let items: Vec<_> = p
                .iter()
                .filter(|p| p.is(Kind::Event, "ExtensionStatus"))
                .map(ExtensionStatus::from_packet)
                .collect();
            assert!(items.iter().all(|i| i.is_ok()), "{items:?}");
            assert!(
                p.iter()
                    .filter(|p| p.is(Kind::Event, "ExtensionStatus"))
                    .all(|p| p.get("Privilege").is_none())
            );
            let first = ExtensionStatus::from_packet(&p[2]).expect("list item");
            assert_eq!(
                (
                    first.exten.as_ref(),
                    first.status,
                    p[2].action_id().as_deref()
                ),
                ("1010", 0, Some("d-2"))
            );
            let done = p
                .iter()
                .find_map(ListComplete::from_packet)
                .expect("list complete");
            assert_eq!(
                (done.name().as_ref(), done.list_items()),
                ("ExtensionStateListComplete", Some(11))
            );
            let dev = p
                .iter()
                .filter_map(ListComplete::from_packet)
                .nth(1)
                .expect("device list complete");
            assert_eq!(
                (dev.name().as_ref(), dev.list_items()),
                ("DeviceStateListComplete", Some(12))
            );
            let combined = p.iter().find(|p| p.has("Exten", "1099")).expect("1099");
            assert_eq!(
                combined.get("Hint").as_deref(),
                Some("Custom:1099a&Custom:1099b")
            );
        },
    },
    Expect {
        file: "d_state_lists.sent.ami",
        banner: false,
        kinds: [0, 0, 4, 0],
        names: &[("ExtensionStateList", 1), ("DeviceStateList", 1)],
        extra: nothing,
    },
    Expect {
        file: "e_device_states.recv.ami",
        banner: true,
        kinds: [38, 25, 0, 0],
        names: &[
            ("ExtensionStatus", 17),
            ("DeviceStateChange", 19),
            ("Error", 1),
        ],
        extra: |p| {
            let statuses: Vec<i32> = p
                .iter()
                .filter(|p| p.is(Kind::Event, "ExtensionStatus"))
                .map(|p| ExtensionStatus::from_packet(p).expect("valid").status)
                .collect();
            assert!(
                statuses.contains(&9) && statuses.contains(&16),
                "{statuses:?}"
            );
            let refused = p
                .iter()
                .find(|p| p.is(Kind::Response, "Error"))
                .expect("the UNKNOWN write");
            assert_eq!(refused.get("Message").as_deref(), Some("Variable not set"));
        },
    },
    Expect {
        file: "e_device_states.sent.ami",
        banner: false,
        kinds: [0, 0, 25, 0],
        names: &[("Setvar", 21), ("ExtensionState", 2)],
        extra: nothing,
    },
    Expect {
        file: "f_command_output.recv.ami",
        banner: true,
        kinds: [0, 5, 0, 0],
        names: &[("Success", 3), ("Error", 1), ("Goodbye", 1)],
        extra: |p| {
            let hints = command_output(&p[1]);
            assert_eq!(hints.len(), 15);
            assert_eq!(
                hints[0], "",
                "`Output: ` with a trailing space is an empty line"
            );
            assert_eq!(
                hints[1], "    -= Registered Asterisk Dial Plan Hints =-",
                "indentation survives"
            );
            assert!(hints[2].starts_with("1010@agents                   : Custom:1010 "));
            assert_eq!(hints[14], "- 11 hints registered");
            assert_eq!(p[1].get_all("Output").count(), 15);
            assert!(command_output(&p[2])[0].starts_with("Asterisk 20.20.1 built by root"));
            let failed = response(&p[3]);
            assert!(failed.is_error());
            assert_eq!(failed.message().as_deref(), Some("Command output follows"));
            assert!(
                command_output(&p[3])[0].starts_with("No such command 'core show nosuchthing'")
            );
            assert!(
                p.iter().all(|p| p.follows_body().is_none()),
                "Asterisk 20 never sends Follows"
            );
        },
    },
    Expect {
        file: "f_command_output.sent.ami",
        banner: false,
        kinds: [0, 0, 5, 0],
        names: &[("Command", 3)],
        extra: |p| assert_eq!(p[1].get("Command").as_deref(), Some("core show hints")),
    },
    Expect {
        file: "g_errors.recv.ami",
        banner: true,
        kinds: [0, 11, 0, 0],
        names: &[("Error", 7), ("Success", 3), ("Goodbye", 1)],
        extra: |p| {
            let ids: Vec<Option<String>> = p
                .iter()
                .map(|p| p.action_id().map(|s| s.into_owned()))
                .collect();
            let want = [
                Some("g-1"),
                Some("g-2"),
                Some("g-3"),
                None,
                Some("g-4"),
                None,
                Some("g-5"),
                Some("g-6"),
                Some("g-7"),
                Some("g-8"),
                Some("g-9"),
            ];
            assert_eq!(ids, want.map(|w| w.map(str::to_owned)));
            assert_eq!(
                p[5].get("Message").as_deref(),
                Some("Missing action in request")
            );
            assert_eq!(p[7].get("Ping").as_deref(), Some("Pong"));
            assert!(
                p[3].get("Message")
                    .is_some_and(|m| m.starts_with("Invalid/unknown command: AlsoNoSuchAction."))
            );
        },
    },
    Expect {
        file: "g_errors.sent.ami",
        banner: false,
        kinds: [0, 0, 9, 1],
        names: &[("Login", 2), ("ping", 1), ("", 1)],
        extra: |p| {
            // `ActionID: g-4` / `Exten: 1001` after a blank line is a packet without Action.
            assert_eq!(p[4].kind(), Kind::Unknown);
            assert_eq!(p[4].name(), None);
            assert_eq!(p[4].action_id().as_deref(), Some("g-4"));
            // `Action: ` with an empty value is still an action, named "".
            assert_eq!(
                (p[5].kind(), p[5].name().as_deref()),
                (Kind::Action, Some(""))
            );
            // `action:ping` without a space: key kept as written, compared without case.
            let h: Vec<_> = p[6]
                .headers()
                .map(|h| (h.key().into_owned(), h.value().into_owned()))
                .collect();
            assert_eq!(
                h,
                [
                    ("action".to_owned(), "ping".to_owned()),
                    ("actionid".to_owned(), "g-6".to_owned())
                ]
            );
            assert_eq!(p[6].action_id().as_deref(), Some("g-6"));
        },
    },
    Expect {
        file: "i_limited_user.recv.ami",
        banner: true,
        kinds: [5, 5, 0, 0],
        names: &[
            ("FullyBooted", 1),
            ("ExtensionStatus", 2),
            ("DeviceStateChange", 2),
            ("Error", 2),
        ],
        extra: |p| {
            // Events caused elsewhere arrive between the login answer and the next answer.
            let order: Vec<_> = p
                .iter()
                .map(|p| p.name().unwrap_or_default().into_owned())
                .collect();
            assert_eq!(
                order,
                [
                    "Success",
                    "FullyBooted",
                    "ExtensionStatus",
                    "DeviceStateChange",
                    "ExtensionStatus",
                    "DeviceStateChange",
                    "Error",
                    "Error",
                    "Success",
                    "Goodbye"
                ]
            );
            assert_eq!(p[6].get("Message").as_deref(), Some("Permission denied"));
        },
    },
    Expect {
        file: "i_limited_user.sent.ami",
        banner: false,
        kinds: [0, 0, 5, 0],
        names: &[("Command", 1), ("Setvar", 1)],
        extra: nothing,
    },
    Expect {
        file: "j_queue_members.recv.ami",
        banner: true,
        kinds: [43, 20, 0, 0],
        names: &[
            ("QueueMember", 7),
            ("QueueParams", 4),
            ("QueueStatusComplete", 3),
            ("QueueMemberPause", 2),
        ],
        extra: |p| {
            let paused = p
                .iter()
                .find(|p| p.is(Kind::Event, "QueueMemberPause"))
                .expect("pause event");
            assert_eq!(paused.get("PausedReason").as_deref(), Some("Lunch"));
            // The QueueMember list item carries its ActionID last.
            let member = p
                .iter()
                .find(|p| p.is(Kind::Event, "QueueMember"))
                .expect("member");
            assert!(member.headers().last().is_some_and(|h| h.is("ActionID")));
        },
    },
    Expect {
        file: "j_queue_members.sent.ami",
        banner: false,
        kinds: [0, 0, 20, 0],
        names: &[("QueueAdd", 4), ("QueueRemove", 4)],
        extra: nothing,
    },
    Expect {
        file: "l_presence.recv.ami",
        banner: true,
        kinds: [30, 24, 0, 0],
        names: &[
            ("PresenceStateChange", 14),
            ("PresenceStatus", 9),
            ("PresenceStateListComplete", 1),
        ],
        extra: |p| {
            // The PresenceState answer carries two Message headers; both are kept in order.
            let answer = p
                .iter()
                .find(|p| p.get("PresenceMessage").is_some())
                .expect("PresenceState answer");
            let messages: Vec<_> = answer.get_all("Message").collect();
            assert_eq!(messages.len(), 2, "{answer:?}");
            assert_eq!(messages[0], "Presence State");
            assert_eq!(answer.get("Message").as_deref(), Some("Presence State"));
            let escaped = p.iter().any(|p| {
                p.get("Message")
                    .is_some_and(|m| m.contains("Room \\\"B\\\" \\\\ 2nd floor"))
            });
            assert!(escaped, "C-escaped message kept verbatim");
        },
    },
    Expect {
        file: "l_presence.sent.ami",
        banner: false,
        kinds: [0, 0, 24, 0],
        names: &[("Setvar", 15), ("PresenceState", 3)],
        extra: nothing,
    },
    Expect {
        file: "m_channels_list.recv.ami",
        banner: true,
        kinds: [13, 6, 0, 0],
        names: &[
            ("CoreShowChannel", 4),
            ("CoreShowChannelsComplete", 2),
            ("Status", 5),
            ("StatusComplete", 2),
        ],
        extra: |p| {
            let empty = p
                .iter()
                .find_map(ListComplete::from_packet)
                .expect("first list");
            assert_eq!(empty.list_items(), Some(0));
            let var = p
                .iter()
                .find(|p| p.get("Variable").is_some())
                .expect("AllVariables");
            assert_eq!(
                var.get("Variable").as_deref(),
                Some("DIALEDPEERNUMBER=1001@agents-ring")
            );
        },
    },
    Expect {
        file: "m_channels_list.sent.ami",
        banner: false,
        kinds: [0, 0, 6, 0],
        names: &[("CoreShowChannels", 2), ("Status", 2)],
        extra: nothing,
    },
];

#[test]
fn every_capture_gives_the_expected_packets() {
    for expect in CAPTURES {
        check(expect);
    }
}

#[test]
fn every_capture_file_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixture directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".ami"))
        .collect();
    files.sort();
    let mut covered: Vec<String> = CAPTURES.iter().map(|e| e.file.to_owned()).collect();
    covered.sort();
    assert_eq!(files, covered);
}

#[test]
fn legacy_follows_stream_in_any_read_size() {
    // An Asterisk 13 session: the CLI text has colons, a blank line and bare LF line ends.
    let stream = b"Asterisk Call Manager/2.10.6\r\nResponse: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\nResponse: Follows\r\nPrivilege: Command\r\nActionID: 2\r\n1001@agents : Custom:1001 State:Idle\n\n- 1 hints registered\n--END COMMAND--\r\n\r\nEvent: FullyBooted\r\nStatus: Fully Booted\r\n\r\n";
    let got = decode(stream, crate::DEFAULT_MAX_PACKET_SIZE, whole);
    assert_eq!(got.errors, []);
    assert_eq!(got.packets.len(), 3);
    let follows = &got.packets[1];
    assert_eq!(follows.action_id().as_deref(), Some("2"));
    assert_eq!(
        command_output(follows),
        [
            "1001@agents : Custom:1001 State:Idle",
            "",
            "- 1 hints registered"
        ]
    );
    assert!(got.packets[2].is(Kind::Event, "FullyBooted"));
    assert_eq!(decode(stream, crate::DEFAULT_MAX_PACKET_SIZE, || 1), got);
    assert_eq!(
        decode(stream, crate::DEFAULT_MAX_PACKET_SIZE, lcg(3, 13)),
        got
    );
}

#[test]
fn utf8_split_across_reads_is_never_garbled() {
    let name = "Zoë Müller 李小龙 Mañana Café ☕";
    let stream = format!("Event: Newchannel\r\nCallerIDName: {name}\r\nExten: 1001\r\n\r\n");
    let bytes = stream.as_bytes();
    // Split at every position, including inside each multi-byte character.
    for split in 1..bytes.len() {
        let mut sizes = [split, usize::MAX].into_iter();
        let got = decode(bytes, crate::DEFAULT_MAX_PACKET_SIZE, || {
            sizes.next().unwrap_or(usize::MAX)
        });
        assert_eq!(got.errors, [], "split at {split}");
        assert_eq!(got.packets.len(), 1, "split at {split}");
        assert_eq!(
            got.packets[0].get("CallerIDName").as_deref(),
            Some(name),
            "split at {split}"
        );
        assert_eq!(
            got.packets[0].get_bytes("CallerIDName"),
            Some(name.as_bytes())
        );
    }
}

#[test]
fn latin1_values_are_kept_as_bytes() {
    let got = decode(
        b"Event: X\r\nCallerIDName: Fran\xe7ois\r\n\r\n",
        1 << 20,
        || 1,
    );
    assert_eq!(
        got.packets[0].get_bytes("CallerIDName"),
        Some(&b"Fran\xe7ois"[..])
    );
    assert_eq!(
        got.packets[0].get("CallerIDName").as_deref(),
        Some("Fran\u{e7}ois")
    );
}

/// Byte soup biased towards what matters to the framer: line ends, colons, the banner prefix
/// and the legacy marker.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b": ".to_vec()),
        Just(b"Event: X\r\n".to_vec()),
        Just(b"Response: Follows\r\n".to_vec()),
        Just(b"Privilege: Command\r\n".to_vec()),
        Just(b"--END COMMAND--".to_vec()),
        Just(b"Asterisk Call Manager/1.0".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes, in any read sizes: no panic, every byte consumed, error offsets inside the
    /// stream and rising, and the same frames whatever the read sizes.
    #[test]
    fn arbitrary_bytes_never_panic_and_agree(input in soup(), seed in any::<u64>()) {
        let got = decode(&input, crate::DEFAULT_MAX_PACKET_SIZE, whole);
        prop_assert_eq!(got.end_offset, input.len() as u64);
        let offsets: Vec<u64> = got.errors.iter().map(DecodeError::offset).collect();
        prop_assert!(offsets.iter().all(|&o| o < input.len() as u64));
        prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{:?}", offsets);
        let packet_bytes: usize = got.packets.iter().map(|p| p.as_bytes().len()).sum();
        prop_assert!(packet_bytes <= input.len());
        prop_assert_eq!(&decode(&input, crate::DEFAULT_MAX_PACKET_SIZE, || 1), &got);
        prop_assert_eq!(&decode(&input, crate::DEFAULT_MAX_PACKET_SIZE, lcg(seed, 17)), &got);
    }

    /// With a tiny size cap the skipping path runs too: still no panic and every byte consumed.
    #[test]
    fn tiny_cap_never_panics(input in soup(), seed in any::<u64>()) {
        for got in [decode(&input, 16, whole), decode(&input, 16, lcg(seed, 9))] {
            prop_assert_eq!(got.end_offset, input.len() as u64);
            prop_assert!(got.errors.iter().all(|e| e.offset() < input.len() as u64));
            prop_assert!(got.packets.iter().all(|p| p.as_bytes().len() <= 16));
        }
    }
}
