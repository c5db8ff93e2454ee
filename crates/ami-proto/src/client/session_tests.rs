//! Unit tests of the sans-IO session: bytes and times in, outputs out, no socket and no runtime.
//! The login, list and logoff exchanges replay the real Asterisk 20 captures in
//! `fixtures/ami/real/`, with the capture's ActionIDs replaced by the ones the session chose.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Expect, LOGOFF_GRACE, Output, Phase, RequestId, Session};
use crate::client::{
    ActionResponse, AuthMethod, ClientConfig, ClientError, ClientEvent, DisconnectReason,
    EventListResult, Sequenced,
};
use crate::{Action, Decoder, Frame, Kind, Packet};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/ami/real");
const BANNER: &str = "Asterisk Call Manager/9.0.0\r\n";
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A capture: what the recording client sent and what it read, as text.
struct Capture {
    sent: String,
    recv: String,
}

fn capture(name: &str) -> Capture {
    let read = |suffix: &str| {
        let path = format!("{FIXTURES}/{name}.{suffix}.ami");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    Capture {
        sent: read("sent"),
        recv: read("recv"),
    }
}

impl Capture {
    /// The sent action whose ActionID is `id`, parsed.
    fn sent_action(&self, id: &str) -> Packet {
        self.sent
            .split("\r\n\r\n")
            .map(|block| Packet::parse(block.as_bytes()).expect("the capture parses"))
            .find(|p| p.action_id().as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no sent action {id}"))
    }

    /// The received bytes with every `ActionID: <from>` replaced by `ActionID: <to>`.
    fn recv_as(&self, ids: &[(&str, &RequestId)]) -> String {
        let mut text = self.recv.clone();
        for (from, to) in ids {
            text = text.replace(
                &format!("ActionID: {from}\r\n"),
                &format!("ActionID: {}\r\n", to.action_id()),
            );
        }
        text
    }
}

fn config(auth: AuthMethod, secret: &str, events: &str) -> Arc<ClientConfig> {
    let mut config = ClientConfig::new("127.0.0.1:5038", "monitor", secret);
    config.auth = auth;
    config.events = events.to_owned();
    config.action_timeout = ACTION_TIMEOUT;
    config.ping_interval = PING_INTERVAL;
    config.ping_timeout = PING_TIMEOUT;
    Arc::new(config)
}

fn plain() -> Arc<ClientConfig> {
    config(AuthMethod::Plain, "monitorpass", "off")
}

fn drain(session: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

/// Parses the bytes of every `Transmit` in `outputs`.
fn transmitted(outputs: &[Output]) -> Vec<Packet> {
    let mut decoder = Decoder::new();
    let mut buf = bytes::BytesMut::new();
    for output in outputs {
        if let Output::Transmit(bytes) = output {
            buf.extend_from_slice(bytes);
        }
    }
    let mut packets = Vec::new();
    while let Some(frame) = decoder
        .decode(&mut buf)
        .expect("the session writes valid AMI")
    {
        match frame {
            Frame::Packet(p) => packets.push(p),
            Frame::Banner(b) => panic!("a client never sends a banner: {b:?}"),
        }
    }
    assert!(buf.is_empty(), "only whole packets are written");
    packets
}

/// The one action `outputs` sends, with nothing else in them.
fn only_action(outputs: &[Output]) -> Packet {
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let mut sent = transmitted(outputs);
    assert_eq!(sent.len(), 1, "{outputs:?}");
    sent.remove(0)
}

/// The headers of `p` as (key, value) text, with the ActionID left out.
fn headers(p: &Packet) -> Vec<(String, String)> {
    p.headers()
        .filter(|h| !h.is("ActionID"))
        .map(|h| {
            let value = h.value().into_owned();
            // `AuthType` is case-insensitive on the server; the capture's client wrote `md5`.
            let value = if h.is("AuthType") {
                value.to_ascii_uppercase()
            } else {
                value
            };
            (h.key().into_owned(), value)
        })
        .collect()
}

/// `ours` is the capture's action `id`, header for header, apart from the ActionID.
fn assert_same_action(ours: &Packet, capture: &Capture, id: &str) {
    assert_eq!(
        headers(ours),
        headers(&capture.sent_action(id)),
        "action {id}"
    );
}

/// The RequestId of the action in `p` (its ActionID is `es-<generation>-<number>`).
fn request_of(p: &Packet) -> RequestId {
    let id = p.action_id().expect("every action carries an ActionID");
    let (generation, number) = id
        .strip_prefix("es-")
        .and_then(|rest| rest.split_once('-'))
        .unwrap_or_else(|| panic!("unexpected ActionID {id}"));
    RequestId {
        generation: generation.parse().expect("generation"),
        number: number.parse().expect("number"),
    }
}

fn event(output: &Output) -> &Sequenced<Packet> {
    match output {
        Output::Notice(ClientEvent::Event(packet)) => packet,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn response(output: &Output) -> (RequestId, &Result<ActionResponse, ClientError>) {
    match output {
        Output::Response { request, result } => (*request, result),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn list(output: &Output) -> (RequestId, &Result<EventListResult, ClientError>) {
    match output {
        Output::List { request, result } => (*request, result),
        other => panic!("expected a list, got {other:?}"),
    }
}

fn closed(output: &Output) -> &DisconnectReason {
    match output {
        Output::Closed { reason } => reason,
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// A session of generation 1 that has logged in (plain) at the returned instant.
fn logged_in(config: Arc<ClientConfig>) -> (Session, Instant) {
    let t0 = Instant::now();
    let mut session = Session::new(config, 1, t0);
    session.receive(BANNER.as_bytes(), t0);
    let login = only_action(&drain(&mut session));
    let id = login.action_id().expect("ActionID").into_owned();
    session.receive(
        format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n")
            .as_bytes(),
        t0,
    );
    let out = drain(&mut session);
    assert!(
        matches!(out.as_slice(), [Output::LoggedIn { .. }]),
        "{out:?}"
    );
    assert_eq!(session.phase(), Phase::Ready);
    (session, t0)
}

/// Sends `action` expecting `expect` and returns its id and the action as written.
fn request(session: &mut Session, action: Action, expect: Expect, now: Instant) -> RequestId {
    let id = session.request(action, expect, now).expect("logged in");
    let sent = only_action(&drain(session));
    assert_eq!(request_of(&sent), id);
    id
}

#[test]
fn plain_login_ping_and_logoff_replay_the_real_capture() {
    let capture = capture("a_login_ping_logoff");
    let t0 = Instant::now();
    let mut session = Session::new(config(AuthMethod::Plain, "monitorpass", ""), 1, t0);
    assert_eq!(session.phase(), Phase::Greeting);
    assert_eq!(
        session.poll_timeout(),
        Some(t0 + ACTION_TIMEOUT),
        "login deadline"
    );

    // The login goes out once the banner is in.
    session.receive(b"Asterisk Call Manager/9.0", t0);
    assert!(drain(&mut session).is_empty());
    session.receive(b".0\r\n", t0);
    let login = only_action(&drain(&mut session));
    assert_same_action(&login, &capture, "a-1");
    assert_eq!(session.phase(), Phase::LoggingIn);
    assert_eq!(
        session
            .request(Action::ping(), Expect::Response, t0)
            .map(|_| ()),
        Err(ClientError::NotConnected),
        "no action before the login is done"
    );

    // The server's bytes up to the Pong, fed one byte at a time.
    let ping = RequestId {
        generation: 1,
        number: 2,
    };
    let logoff = RequestId {
        generation: 1,
        number: 3,
    };
    let recv = capture.recv_as(&[
        ("a-1", &request_of(&login)),
        ("a-2", &ping),
        ("a-3", &logoff),
    ]);
    let (before_pong, rest) = recv.split_at(
        recv.find("Response: Success\r\nActionID: es-1-2")
            .expect("pong"),
    );
    let after_banner = before_pong.strip_prefix(BANNER).expect("banner first");
    let mut out = Vec::new();
    for byte in after_banner.as_bytes().chunks(1) {
        session.receive(byte, t0);
        out.extend(drain(&mut session));
    }
    match out.first() {
        Some(Output::LoggedIn { banner }) => {
            assert_eq!(banner.as_deref(), Some("Asterisk Call Manager/9.0.0"))
        }
        other => panic!("expected LoggedIn, got {other:?}"),
    }
    let names: Vec<_> = out[1..]
        .iter()
        .map(|o| event(o).name().unwrap_or_default().into_owned())
        .collect();
    assert_eq!(names, ["FullyBooted", "SuccessfulAuth"]);
    let seqs: Vec<u64> = out[1..].iter().map(|o| event(o).wire_seq).collect();
    assert_eq!(seqs, [2, 3], "banner 0, login answer 1");
    assert_eq!(session.phase(), Phase::Ready);

    // Keepalive: the Ping is due one interval after the login.
    assert_eq!(session.poll_timeout(), Some(t0 + PING_INTERVAL));
    let t1 = t0 + PING_INTERVAL;
    session.handle_timeout(t1);
    let sent = only_action(&drain(&mut session));
    assert_same_action(&sent, &capture, "a-2");
    assert_eq!(request_of(&sent), ping);
    let (pong, goodbye) = rest.split_at(rest.find("Response: Goodbye").expect("goodbye"));
    session.receive(pong.as_bytes(), t1);
    assert!(drain(&mut session).is_empty(), "the Pong is not an event");
    assert_eq!(
        session.poll_timeout(),
        Some(t1 + PING_INTERVAL),
        "no deadline left"
    );

    session.logoff(t1);
    let sent = only_action(&drain(&mut session));
    assert_same_action(&sent, &capture, "a-3");
    assert_eq!(session.phase(), Phase::LoggingOff);
    session.receive(goodbye.as_bytes(), t1);
    let out = drain(&mut session);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(closed(&out[0]), &DisconnectReason::Shutdown);
    assert_eq!(session.phase(), Phase::Closed);
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn md5_login_replays_the_real_capture_and_never_sends_the_secret() {
    let capture = capture("c_md5_challenge_login");
    let t0 = Instant::now();
    let mut session = Session::new(config(AuthMethod::Md5, "monitorpass", "off"), 1, t0);
    session.receive(BANNER.as_bytes(), t0);
    let challenge = only_action(&drain(&mut session));
    assert_same_action(&challenge, &capture, "c-1");

    let answer = capture.recv_as(&[("c-1", &request_of(&challenge))]);
    let answer = &answer[BANNER.len()..answer.find("ActionID: c-2").expect("login answer")];
    let answer = &answer[..answer.rfind("Response:").expect("response")];
    session.receive(answer.as_bytes(), t0);
    let login = only_action(&drain(&mut session));
    assert_same_action(&login, &capture, "c-2");
    assert_eq!(
        login.get("Key").as_deref(),
        Some("d9ef8250de2451aec579721b4f8e6763")
    );
    assert_eq!(login.get("Secret"), None);
    let sent = String::from_utf8_lossy(login.as_bytes()).into_owned();
    assert!(!sent.contains("monitorpass"), "{sent}");

    session.receive(
        format!(
            "Response: Success\r\nActionID: {}\r\nMessage: Authentication accepted\r\n\r\n",
            login.action_id().expect("ActionID")
        )
        .as_bytes(),
        t0,
    );
    let out = drain(&mut session);
    assert!(
        matches!(out.as_slice(), [Output::LoggedIn { .. }]),
        "{out:?}"
    );
}

#[test]
fn refused_login_replays_the_real_capture_and_ends_the_session() {
    let capture = capture("b_login_failure");
    let t0 = Instant::now();
    let mut session = Session::new(config(AuthMethod::Plain, "wrong-secret", "off"), 1, t0);
    session.receive(BANNER.as_bytes(), t0);
    let login = only_action(&drain(&mut session));
    assert_same_action(&login, &capture, "b-1");

    let recv = capture.recv_as(&[("b-1", &request_of(&login))]);
    session.receive(&recv.as_bytes()[BANNER.len()..], t0);
    let out = drain(&mut session);
    match out.as_slice() {
        [Output::LoginFailed { message }] => assert_eq!(message, "Authentication failed"),
        other => panic!("expected LoginFailed, got {other:?}"),
    }
    assert_eq!(session.phase(), Phase::Closed);
    assert_eq!(session.poll_timeout(), None);
    // The server hangs up next; the session has nothing more to say.
    session.receive_eof(t0);
    assert!(drain(&mut session).is_empty());
}

#[test]
fn refused_challenge_and_login_answers() {
    // (auth, the answer to the first action, the expected LoginFailed message)
    let cases = [
        (
            AuthMethod::Md5,
            "Response: Error\r\nActionID: {id}\r\nMessage: Must specify AuthType\r\n\r\n",
            "Must specify AuthType",
        ),
        (
            AuthMethod::Md5,
            "Response: Success\r\nActionID: {id}\r\n\r\n",
            "unexpected answer Success",
        ),
        (
            AuthMethod::Plain,
            "Response: Goodbye\r\nActionID: {id}\r\n\r\n",
            "unexpected answer Goodbye",
        ),
    ];
    for (auth, answer, expected) in cases {
        let t0 = Instant::now();
        let mut session = Session::new(config(auth, "monitorpass", "on"), 1, t0);
        session.receive(BANNER.as_bytes(), t0);
        let first = only_action(&drain(&mut session));
        let id = first.action_id().expect("ActionID").into_owned();
        session.receive(answer.replace("{id}", &id).as_bytes(), t0);
        match drain(&mut session).as_slice() {
            [Output::LoginFailed { message }] => assert_eq!(message, expected, "{answer}"),
            other => panic!("{answer}: expected LoginFailed, got {other:?}"),
        }
    }
}

#[test]
fn events_during_the_login_are_held_until_logged_in_and_a_silent_server_times_out() {
    let t0 = Instant::now();
    let mut session = Session::new(plain(), 1, t0);
    session.receive(BANNER.as_bytes(), t0);
    let login = only_action(&drain(&mut session));
    let id = login.action_id().expect("ActionID").into_owned();
    session.receive(
        b"Event: DeviceStateChange\r\nDevice: Custom:1001\r\nState: INUSE\r\n\r\n",
        t0,
    );
    assert!(
        drain(&mut session).is_empty(),
        "held back until the login is done"
    );
    session.receive(
        format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n")
            .as_bytes(),
        t0,
    );
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(out[0], Output::LoggedIn { .. }));
    assert_eq!(event(&out[1]).wire_seq, 1, "its place on the wire is kept");

    // A server that never sends its banner is given up at the login deadline, not before,
    // and said to have sent no banner (an HTTP server waits silently for a request).
    let mut silent = Session::new(plain(), 2, t0);
    silent.handle_timeout(t0 + ACTION_TIMEOUT - Duration::from_millis(1));
    assert!(drain(&mut silent).is_empty());
    silent.handle_timeout(t0 + ACTION_TIMEOUT);
    let out = drain(&mut silent);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(closed(&out[0]), &DisconnectReason::NoBanner);

    // One that greets but never answers the login timed out in the login.
    let mut mute = Session::new(plain(), 3, t0);
    mute.receive(BANNER.as_bytes(), t0);
    drain(&mut mute);
    mute.handle_timeout(t0 + ACTION_TIMEOUT);
    let out = drain(&mut mute);
    assert_eq!(closed(&out[0]), &DisconnectReason::LoginTimeout);
}

#[test]
fn a_peer_that_does_not_greet_as_an_asterisk_manager_is_named_at_once() {
    // (what the peer sends first, in reads, and the quote the error carries)
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"],
            "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13",
        ),
        (
            &[b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"],
            "HTTP/1.1 400 Bad Request",
        ),
        (
            &[b"Asterisk", b" Call Manglr/1.0\r\n"],
            "Asterisk Call Manglr/1.0",
        ),
        (&[b"\x1b[2J\x00\xff"], "\\u{1b}[2J\\u{0}\u{fffd}"),
        (&[b"Response: Success\r\n\r\n"], "Response: Success"),
        (
            &[&[b'x'; 500]],
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...",
        ),
    ];
    for (reads, quote) in cases {
        let t0 = Instant::now();
        let mut session = Session::new(plain(), 1, t0);
        for read in *reads {
            session.receive(read, t0);
        }
        let out = drain(&mut session);
        assert_eq!(out.len(), 1, "{reads:?}: {out:?}");
        assert_eq!(
            closed(&out[0]),
            &DisconnectReason::NotAmi((*quote).to_owned()),
            "{reads:?}"
        );
        assert_eq!(session.phase(), Phase::Closed);
        assert!(
            closed(&out[0])
                .to_string()
                .contains("not an Asterisk manager"),
            "{}",
            closed(&out[0])
        );
    }
    // A greeting cut short and then closed, or stuck without a line end, is named the same way.
    let t0 = Instant::now();
    let mut session = Session::new(plain(), 1, t0);
    session.receive(b"220 smtp.example.com ESMTP", t0);
    assert!(matches!(
        drain(&mut session).as_slice(),
        [Output::Closed { reason: DisconnectReason::NotAmi(q) }] if q == "220 smtp.example.com ESMTP"
    ));
    let mut stuck = Session::new(plain(), 2, t0);
    stuck.receive(b"Asterisk Call", t0);
    assert!(drain(&mut stuck).is_empty(), "may still become a banner");
    stuck.handle_timeout(t0 + ACTION_TIMEOUT);
    assert!(matches!(
        drain(&mut stuck).as_slice(),
        [Output::Closed { reason: DisconnectReason::NotAmi(q) }] if q == "Asterisk Call"
    ));
    // The real banner, even one byte at a time, logs in.
    let mut slow = Session::new(plain(), 3, t0);
    for b in BANNER.as_bytes() {
        slow.receive(std::slice::from_ref(b), t0);
    }
    only_action(&drain(&mut slow));
    assert_eq!(slow.phase(), Phase::LoggingIn);
}

#[test]
fn action_ids_correlate_answers_among_interleaved_events_and_foreign_responses() {
    let (mut session, t0) = logged_in(plain());
    let a = request(
        &mut session,
        Action::command("core show hints"),
        Expect::Response,
        t0,
    );
    let b = request(
        &mut session,
        Action::extension_state("1001", "agents"),
        Expect::Response,
        t0,
    );
    assert_ne!(a, b);
    assert_eq!(a.generation(), 1);
    let (a_id, b_id) = (a.action_id(), b.action_id());
    let stream = format!(
        "Event: ExtensionStatus\r\nExten: 1001\r\nContext: agents\r\nStatus: 1\r\n\r\n\
         Response: Success\r\nActionID: {b_id}\r\nExten: 1001\r\nStatus: 1\r\n\r\n\
         Event: Hangup\r\nActionID: {a_id}\r\nChannel: Local/1001\r\n\r\n\
         Response: Error\r\nActionID: someone-else\r\nMessage: not yours\r\n\r\n\
         Response: Error\r\nMessage: Missing action in request\r\n\r\n\
         Response: Follows\r\nActionID: {a_id}\r\nOutput: 1001@agents\r\n--END COMMAND--\r\n\r\n"
    );
    session.receive(stream.as_bytes(), t0);
    let out = drain(&mut session);
    assert_eq!(out.len(), 6, "{out:?}");
    assert!(event(&out[0]).is(Kind::Event, "ExtensionStatus"));
    let (id, answer) = response(&out[1]);
    assert_eq!(id, b);
    let answer = answer.as_ref().expect("answered");
    assert!(answer.has("Status", "1"));
    assert!(
        event(&out[2]).is(Kind::Event, "Hangup"),
        "an event with the ActionID of a plain action is still an event"
    );
    assert_eq!(event(&out[3]).action_id().as_deref(), Some("someone-else"));
    assert!(
        event(&out[4]).is(Kind::Response, "Error"),
        "no ActionID: an event"
    );
    let (id, answer) = response(&out[5]);
    assert_eq!(id, a);
    let answer = answer.as_ref().expect("answered");
    assert_eq!(answer.wire_seq, 7, "banner, login answer, then six packets");
    assert_eq!(answer.generation, 1);
    let seqs: Vec<u64> = out[..5]
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if i == 1 {
                response(o).1.as_ref().map(|r| r.wire_seq).unwrap_or(0)
            } else {
                event(o).wire_seq
            }
        })
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6], "wire order");
}

#[test]
fn a_response_to_an_unknown_action_id_is_an_event() {
    let (mut session, t0) = logged_in(plain());
    let pending = request(&mut session, Action::ping(), Expect::Response, t0);
    // Our prefix with a number never sent, another connection's prefix, a non-number, and our
    // pending ActionID with a suffix: none of them settles the pending action.
    let ids = [
        "es-1-99".to_owned(),
        "es-2-1".to_owned(),
        "es-1-x".to_owned(),
        format!("{}0", pending.action_id()),
    ];
    for id in &ids {
        session.receive(
            format!("Response: Success\r\nActionID: {id}\r\n\r\n").as_bytes(),
            t0,
        );
    }
    let out = drain(&mut session);
    let seen: Vec<String> = out
        .iter()
        .map(|o| event(o).action_id().expect("kept").into_owned())
        .collect();
    assert_eq!(seen, ids);
    assert_eq!(
        session.poll_timeout(),
        Some(t0 + ACTION_TIMEOUT),
        "still pending"
    );
}

#[test]
fn state_lists_replay_the_real_capture_in_wire_order() {
    let capture = capture("d_state_lists");
    let (mut session, t0) = logged_in(plain());
    let extensions = request(
        &mut session,
        Action::extension_state_list(),
        Expect::List,
        t0,
    );
    let devices = request(&mut session, Action::device_state_list(), Expect::List, t0);
    session.logoff(t0);
    let logoff = request_of(&only_action(&drain(&mut session)));

    let recv = capture.recv_as(&[("d-2", &extensions), ("d-3", &devices), ("d-4", &logoff)]);
    // Skip the banner and the capture's own login answer; feed the rest in 7-byte reads.
    let start = recv
        .find("Response: Success\r\nActionID: es-1-")
        .expect("first list");
    let mut out = Vec::new();
    for piece in recv.as_bytes()[start..].chunks(7) {
        session.receive(piece, t0);
        out.extend(drain(&mut session));
    }
    assert_eq!(out.len(), 3, "two lists and the end: {out:?}");

    let expected = [
        (
            extensions,
            "ExtensionStatus",
            "ExtensionStateListComplete",
            11,
        ),
        (devices, "DeviceStateChange", "DeviceStateListComplete", 12),
    ];
    let mut last_seq = 1;
    for (output, (id, item, complete, count)) in out.iter().zip(expected) {
        let (got, result) = list(output);
        assert_eq!(got, id);
        let result = result.as_ref().expect("a whole list");
        assert_eq!(result.generation, 1);
        assert!(result.response.has("EventList", "start"));
        assert!(result.complete.is(Kind::Event, complete));
        assert_eq!(result.items.len(), count, "{item}");
        assert_eq!(result.declared_items(), Some(count as u64));
        assert!(
            result.items.iter().all(|i| i.is(Kind::Event, item)),
            "{item}"
        );
        let mut seqs = vec![result.response_wire_seq];
        seqs.extend(result.items.iter().map(|i| i.wire_seq));
        seqs.push(result.complete_wire_seq);
        assert!(seqs[0] > last_seq);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "contiguous on the wire: {seqs:?}"
        );
        last_seq = result.complete_wire_seq;
    }
    let (_, first) = list(&out[0]);
    let first = first.as_ref().expect("list");
    assert_eq!(first.items.len(), 11);
    assert_eq!(
        first.items[0].get("Exten").as_deref(),
        Some("1010"),
        "the capture's order"
    );
    assert_eq!(closed(&out[2]), &DisconnectReason::Shutdown);
}

#[test]
fn any_list_action_is_collected_the_same_way() {
    // CoreShowChannels (empty, then four channels) and Status (four, then one), from a real
    // capture: the session knows nothing about these actions.
    let capture = capture("m_channels_list");
    let (mut session, t0) = logged_in(plain());
    let ids: Vec<RequestId> = ["m-2", "m-3", "m-4", "m-5"]
        .iter()
        .map(|id| {
            let sent = capture.sent_action(id);
            let mut action = Action::new(sent.name().expect("name").into_owned());
            for h in sent.headers().skip(2) {
                action.push_header(h.key().into_owned(), h.value().into_owned());
            }
            request(&mut session, action, Expect::List, t0)
        })
        .collect();
    let recv = capture.recv_as(&[
        ("m-2", &ids[0]),
        ("m-3", &ids[1]),
        ("m-4", &ids[2]),
        ("m-5", &ids[3]),
    ]);
    let start = recv.find("ActionID: es-1-").expect("first list");
    let start = recv[..start].rfind("Response:").expect("response");
    let end = recv.find("Response: Goodbye").expect("goodbye");
    session.receive(&recv.as_bytes()[start..end], t0);
    let out = drain(&mut session);
    let counts: Vec<(RequestId, usize, Option<u64>)> = out
        .iter()
        .map(|o| {
            let (id, result) = list(o);
            let result = result.as_ref().expect("a whole list");
            (id, result.items.len(), result.declared_items())
        })
        .collect();
    assert_eq!(
        counts,
        [
            (ids[0], 0, Some(0)),
            (ids[1], 4, Some(4)),
            (ids[2], 4, Some(4)),
            (ids[3], 1, Some(1)),
        ]
    );
}

#[test]
fn list_items_and_live_events_keep_their_wire_positions() {
    let (mut session, t0) = logged_in(plain());
    let id = request(
        &mut session,
        Action::extension_state_list(),
        Expect::List,
        t0,
    );
    let a = id.action_id();
    let stream = format!(
        "Event: ExtensionStatus\r\nExten: 1001\r\nStatus: 1\r\n\r\n\
         Response: Success\r\nActionID: {a}\r\nEventList: start\r\n\r\n\
         Event: ExtensionStatus\r\nActionID: {a}\r\nExten: 1001\r\nStatus: 0\r\n\r\n\
         Event: DeviceStateChange\r\nDevice: Custom:1002\r\nState: INUSE\r\n\r\n\
         Response: Success\r\nActionID: {a}\r\nMessage: a second answer\r\n\r\n\
         Event: ExtensionStatus\r\nActionID: {a}\r\nExten: 1002\r\nStatus: 1\r\n\r\n\
         Event: ExtensionStateListComplete\r\nActionID: {a}\r\nEventList: Complete\r\nListItems: 2\r\n\r\n\
         Event: ExtensionStatus\r\nExten: 1001\r\nStatus: 8\r\n\r\n"
    );
    session.receive(stream.as_bytes(), t0);
    let out = drain(&mut session);
    assert_eq!(out.len(), 5, "{out:?}");
    assert_eq!(event(&out[0]).wire_seq, 2, "before the list");
    assert_eq!(event(&out[1]).wire_seq, 5, "inside the list");
    assert_eq!(
        event(&out[2]).wire_seq,
        6,
        "a second response to a started list is an event"
    );
    let (got, result) = list(&out[3]);
    assert_eq!(got, id);
    let result = result.as_ref().expect("the list");
    assert_eq!(result.response_wire_seq, 3);
    let items: Vec<(u64, String)> = result
        .items
        .iter()
        .map(|i| (i.wire_seq, i.get("Exten").unwrap_or_default().into_owned()))
        .collect();
    assert_eq!(items, [(4, "1001".to_owned()), (7, "1002".to_owned())]);
    assert_eq!(result.complete_wire_seq, 8);
    assert_eq!(event(&out[4]).wire_seq, 9, "after the list");
}

#[test]
fn a_list_action_that_starts_no_list_is_a_typed_error() {
    let (mut session, t0) = logged_in(plain());
    let refused = request(&mut session, Action::device_state_list(), Expect::List, t0);
    let plain_answer = request(&mut session, Action::new("CoreSettings"), Expect::List, t0);
    session.receive(
        format!(
            "Response: Error\r\nActionID: {}\r\nMessage: Permission denied\r\n\r\n\
             Response: Success\r\nActionID: {}\r\nAMIversion: 9.0.0\r\n\r\n",
            refused.action_id(),
            plain_answer.action_id()
        )
        .as_bytes(),
        t0,
    );
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    let failed = ClientError::ActionFailed {
        message: "Permission denied".into(),
    };
    assert_eq!(list(&out[0]).0, refused);
    assert_eq!(list(&out[0]).1.as_ref().map(|_| ()), Err(&failed));
    assert_eq!(list(&out[1]).0, plain_answer);
    assert_eq!(
        list(&out[1]).1.as_ref().map(|_| ()),
        Err(&ClientError::NotAList)
    );
}

#[test]
fn a_disconnect_interrupts_a_list_and_fails_every_pending_action() {
    // (the bytes after the list's second item, whether the stream ends inside a packet)
    let cases = [
        ("", false),
        ("Event: ExtensionStatus\r\nActionID: {a}\r\nExten: 10", true),
    ];
    for (tail, mid_packet) in cases {
        let (mut session, t0) = logged_in(plain());
        let id = request(
            &mut session,
            Action::extension_state_list(),
            Expect::List,
            t0,
        );
        let single = request(&mut session, Action::ping(), Expect::Response, t0);
        let a = id.action_id();
        let stream = format!(
            "Response: Success\r\nActionID: {a}\r\nEventList: start\r\n\r\n\
             Event: ExtensionStatus\r\nActionID: {a}\r\nExten: 1001\r\nStatus: 0\r\n\r\n\
             Event: ExtensionStatus\r\nActionID: {a}\r\nExten: 1002\r\nStatus: 0\r\n\r\n{}",
            tail.replace("{a}", &a)
        );
        session.receive(stream.as_bytes(), t0);
        assert!(
            drain(&mut session).is_empty(),
            "nothing is delivered before the list ends"
        );
        session.receive_eof(t0);
        let out = drain(&mut session);
        assert_eq!(out.len(), 3, "{out:?}");
        let reason = closed(&out[2]);
        match reason {
            DisconnectReason::ClosedMidPacket(e) if mid_packet => {
                assert!(e.is_end_of_stream(), "{e:?}")
            }
            DisconnectReason::Closed if !mid_packet => {}
            other => panic!("mid_packet {mid_packet}: unexpected {other:?}"),
        }
        let lost = ClientError::ConnectionLost(reason.clone());
        assert_eq!(list(&out[0]).0, id, "in the order they were sent");
        assert_eq!(list(&out[0]).1.as_ref().map(|_| ()), Err(&lost));
        assert_eq!(response(&out[1]), (single, &Err(lost.clone())));
        assert_eq!(session.phase(), Phase::Closed);
        assert_eq!(
            session
                .request(Action::ping(), Expect::Response, t0)
                .map(|_| ()),
            Err(ClientError::NotConnected)
        );
    }
}

#[test]
fn keepalive_pings_once_per_interval_and_gives_up_without_a_pong() {
    let (mut session, t0) = logged_in(plain());
    assert_eq!(session.poll_timeout(), Some(t0 + PING_INTERVAL));
    session.handle_timeout(t0 + PING_INTERVAL - Duration::from_millis(1));
    assert!(drain(&mut session).is_empty(), "not due yet");

    // Answered: the next Ping one interval later.
    let t1 = t0 + PING_INTERVAL;
    session.handle_timeout(t1);
    let ping = only_action(&drain(&mut session));
    assert!(ping.is(Kind::Action, "Ping"));
    assert_eq!(
        session.poll_timeout(),
        Some(t1 + PING_TIMEOUT),
        "the Pong deadline"
    );
    session.receive(
        format!(
            "Response: Success\r\nActionID: {}\r\nPing: Pong\r\nTimestamp: 1.0\r\n\r\n",
            ping.action_id().expect("ActionID")
        )
        .as_bytes(),
        t1 + Duration::from_secs(1),
    );
    assert!(drain(&mut session).is_empty());
    assert_eq!(session.poll_timeout(), Some(t1 + PING_INTERVAL));

    // Unanswered: closed at the deadline, and the outstanding Ping is not repeated meanwhile.
    let t2 = t1 + PING_INTERVAL;
    session.handle_timeout(t2);
    let ping = only_action(&drain(&mut session));
    assert!(ping.is(Kind::Action, "Ping"));
    session.handle_timeout(t2 + PING_TIMEOUT - Duration::from_millis(1));
    assert!(drain(&mut session).is_empty());
    // Traffic is not a Pong: only the answer to the Ping proves the path works both ways.
    session.receive(
        b"Event: DeviceStateChange\r\nDevice: Custom:1\r\nState: INUSE\r\n\r\n",
        t2,
    );
    assert_eq!(drain(&mut session).len(), 1);
    session.handle_timeout(t2 + PING_TIMEOUT);
    let out = drain(&mut session);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(closed(&out[0]), &DisconnectReason::KeepaliveTimeout);
}

#[test]
fn a_ping_interval_shorter_than_the_pong_deadline_sends_no_second_ping() {
    let mut config = ClientConfig::clone(&plain());
    config.ping_interval = Duration::from_secs(1);
    config.ping_timeout = Duration::from_secs(5);
    let (mut session, t0) = logged_in(Arc::new(config));
    session.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(transmitted(&drain(&mut session)).len(), 1);
    for s in 2..6 {
        session.handle_timeout(t0 + Duration::from_secs(s));
        assert!(drain(&mut session).is_empty(), "second {s}");
    }
    session.handle_timeout(t0 + Duration::from_secs(6));
    let out = drain(&mut session);
    assert_eq!(closed(&out[0]), &DisconnectReason::KeepaliveTimeout);
}

#[test]
fn an_action_without_an_answer_times_out_and_its_late_answer_is_dropped() {
    let (mut session, t0) = logged_in(plain());
    let single = request(&mut session, Action::ping(), Expect::Response, t0);
    let t1 = t0 + Duration::from_secs(1);
    let listed = request(
        &mut session,
        Action::extension_state_list(),
        Expect::List,
        t1,
    );
    assert_eq!(session.poll_timeout(), Some(t0 + ACTION_TIMEOUT));
    session.handle_timeout(t0 + ACTION_TIMEOUT);
    let out = drain(&mut session);
    assert_eq!(
        response(&out[0]),
        (single, &Err(ClientError::Timeout(ACTION_TIMEOUT)))
    );
    assert_eq!(out.len(), 1, "the list has one more second: {out:?}");
    session.handle_timeout(t1 + ACTION_TIMEOUT);
    let out = drain(&mut session);
    assert_eq!(list(&out[0]).0, listed);
    assert_eq!(
        list(&out[0]).1.as_ref().map(|_| ()),
        Err(&ClientError::Timeout(ACTION_TIMEOUT))
    );

    let (s, l) = (single.action_id(), listed.action_id());
    session.receive(
        format!(
            "Response: Success\r\nActionID: {s}\r\nPing: Pong\r\n\r\n\
             Response: Success\r\nActionID: {l}\r\nEventList: start\r\n\r\n\
             Event: ExtensionStatus\r\nActionID: {l}\r\nExten: 1001\r\n\r\n\
             Event: ExtensionStateListComplete\r\nActionID: {l}\r\nEventList: Complete\r\n\r\n\
             Event: ExtensionStatus\r\nExten: 1001\r\nStatus: 8\r\n\r\n\
             Response: Success\r\nActionID: {s}\r\nPing: Pong\r\n\r\n"
        )
        .as_bytes(),
        t1 + ACTION_TIMEOUT,
    );
    let out = drain(&mut session);
    assert_eq!(
        out.len(),
        2,
        "late answers are dropped, the rest is not: {out:?}"
    );
    assert!(event(&out[0]).has("Status", "8"));
    assert_eq!(
        event(&out[1]).action_id().as_deref(),
        Some(s.as_str()),
        "a second late answer is nobody's and passed on"
    );
}

#[test]
fn logoff_refuses_new_actions_and_ends_at_goodbye_eof_or_grace() {
    // (how the logoff ends: Goodbye, end of stream, or the grace period)
    for ending in ["goodbye", "eof", "grace"] {
        let (mut session, t0) = logged_in(plain());
        let pending = request(&mut session, Action::ping(), Expect::Response, t0);
        session.logoff(t0);
        let logoff = only_action(&drain(&mut session));
        assert!(logoff.is(Kind::Action, "Logoff"));
        assert_eq!(
            session
                .request(Action::ping(), Expect::Response, t0)
                .map(|_| ()),
            Err(ClientError::Shutdown)
        );
        session.logoff(t0);
        assert!(drain(&mut session).is_empty(), "one Logoff only");
        match ending {
            "goodbye" => session.receive(
                format!(
                    "Response: Goodbye\r\nActionID: {}\r\nMessage: Thanks for all the fish.\r\n\r\n",
                    logoff.action_id().expect("ActionID")
                )
                .as_bytes(),
                t0,
            ),
            "eof" => session.receive_eof(t0),
            _ => {
                assert_eq!(session.poll_timeout(), Some(t0 + LOGOFF_GRACE));
                session.handle_timeout(t0 + LOGOFF_GRACE);
            }
        }
        let out = drain(&mut session);
        assert_eq!(out.len(), 2, "{ending}: {out:?}");
        assert_eq!(response(&out[0]), (pending, &Err(ClientError::Shutdown)));
        assert_eq!(closed(&out[1]), &DisconnectReason::Shutdown, "{ending}");
    }

    // Before the login is done there is nothing to log off from.
    let t0 = Instant::now();
    let mut session = Session::new(plain(), 1, t0);
    session.logoff(t0);
    let out = drain(&mut session);
    assert_eq!(closed(&out[0]), &DisconnectReason::Shutdown);
    assert!(transmitted(&out).is_empty());
}

#[test]
fn a_bad_packet_is_reported_and_the_session_goes_on() {
    let mut config = ClientConfig::clone(&plain());
    config.max_packet_size = 256;
    let (mut session, t0) = logged_in(Arc::new(config));
    let big = format!("Event: Big\r\nData: {}\r\n\r\n", "x".repeat(1000));
    session.receive(big.as_bytes(), t0);
    session.receive(
        b"Event: DeviceStateChange\r\nDevice: Custom:1\r\nState: INUSE\r\n\r\n",
        t0,
    );
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    match &out[0] {
        Output::Notice(ClientEvent::ProtocolError { generation, error }) => {
            assert_eq!(*generation, 1);
            assert!(error.to_string().contains("256"), "{error}");
        }
        other => panic!("expected ProtocolError, got {other:?}"),
    }
    assert!(event(&out[1]).is(Kind::Event, "DeviceStateChange"));
    assert_eq!(session.phase(), Phase::Ready);
}

#[test]
fn decoded_frames_can_be_fed_directly() {
    let t0 = Instant::now();
    let mut session = Session::new(plain(), 3, t0);
    let mut decoder = Decoder::new();
    let mut buf = bytes::BytesMut::from(BANNER.as_bytes());
    let banner = decoder.decode(&mut buf).expect("valid").expect("a frame");
    session.receive_frame(banner, t0);
    let login = only_action(&drain(&mut session));
    assert_eq!(login.action_id().as_deref(), Some("es-3-1"));
    let answer = Packet::parse(b"Response: Success\r\nActionID: es-3-1\r\n").expect("packet");
    session.receive_frame(Frame::Packet(answer), t0);
    let event_packet =
        Packet::parse(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n").expect("packet");
    session.receive_frame(Frame::Packet(event_packet), t0);
    let out = drain(&mut session);
    assert!(matches!(out[0], Output::LoggedIn { banner: Some(_) }));
    let booted = event(&out[1]);
    assert_eq!((booted.generation, booted.wire_seq), (3, 2));
}
