//! Tests of the simulator over real TCP on 127.0.0.1: its answers are compared with the real
//! Asterisk 20.20.1 captures byte for byte, after blanking the values that change from run to
//! run (uptime, timestamps, the MD5 challenge, session ids and addresses).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ami_proto::{Decoder, Frame, Packet};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::*;

fn capture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../../fixtures/ami/real", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The user of the captures, no agents moving by themselves, no delay after a failed login.
fn config(agents: Vec<SimAgent>) -> SimConfig {
    let mut c = SimConfig::new("monitor", "monitorpass", agents);
    c.rate_per_sec = 0.0;
    c.seed = Some(1);
    c.auth_failure_delay = Duration::ZERO;
    c
}

/// Agents 1001..1010 and 1099 in the order and with the device states of `d_state_lists`.
fn d_agents() -> Vec<SimAgent> {
    captured_agents()
}

struct Running {
    addr: SocketAddr,
    sim: Simulator,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), SimError>>,
}

impl Running {
    async fn start(config: SimConfig) -> Running {
        let cancel = CancellationToken::new();
        let (addr, sim, handle) =
            spawn(config, "127.0.0.1:0".parse().expect("addr"), cancel.clone())
                .await
                .expect("simulator starts");
        Running {
            addr,
            sim,
            cancel,
            handle,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.handle
            .await
            .expect("serve task")
            .expect("serve ends cleanly");
    }

    /// Sends `sent` in one write and returns every byte the simulator wrote until it closed.
    async fn transcript(&self, sent: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(sent).await.expect("send");
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.expect("read");
        received
    }
}

/// A client that reads packets one at a time.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let mut c = Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            decoder: Decoder::new(),
        };
        match c.frame().await {
            Frame::Banner(b) => assert_eq!(b.line(), "Asterisk Call Manager/9.0.0"),
            other => panic!("expected the banner, got {other:?}"),
        }
        c
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).expect("well-formed") {
                return frame;
            }
            let n = self.stream.read_buf(&mut self.buf).await.expect("read");
            assert!(n > 0, "the simulator closed the connection");
        }
    }

    async fn packet(&mut self) -> Packet {
        match self.frame().await {
            Frame::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.expect("send");
    }

    async fn login(&mut self, events: &str) {
        self.send(&format!(
            "Action: Login\r\nActionID: l\r\nUsername: monitor\r\nSecret: monitorpass\r\nEvents: {events}\r\n\r\n"
        ))
        .await;
        let p = self.packet().await;
        assert_eq!(p.get("Message").as_deref(), Some("Authentication accepted"));
    }
}

/// Splits a transcript into the banner and packets (each with its closing blank line).
fn packets(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).expect("ASCII transcript");
    let (banner, rest) = text.split_once("\r\n").expect("banner line");
    let mut out = vec![format!("{banner}\r\n")];
    out.extend(
        rest.split_inclusive("\r\n\r\n")
            .map(str::to_owned)
            .filter(|p| !p.is_empty()),
    );
    out
}

/// Checks the shape of a value that differs between runs.
type Shape = fn(&str) -> bool;

/// Headers whose values differ between runs, with the shape each value must have.
const VARIABLE: [(&str, Shape); 9] = [
    ("Uptime", all_digits),
    ("LastReload", all_digits),
    ("Challenge", all_digits),
    ("Timestamp", is_timestamp),
    ("EventTV", is_event_tv),
    ("SessionTV", is_event_tv),
    ("SessionID", |v| v.starts_with("0x") && v.len() > 2),
    ("LocalAddress", |v| v.starts_with("IPV4/TCP/127.0.0.1/")),
    ("RemoteAddress", |v| v.starts_with("IPV4/TCP/127.0.0.1/")),
];

fn all_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn is_timestamp(v: &str) -> bool {
    matches!(v.split_once('.'), Some((s, us)) if all_digits(s) && us.len() == 6 && all_digits(us))
}

fn is_event_tv(v: &str) -> bool {
    // 2026-11-23T20:03:20.127+0000
    v.len() == 28 && v.ends_with("+0000") && v.as_bytes()[10] == b'T' && v.as_bytes()[19] == b'.'
}

/// Blanks the run-dependent values after checking their shape.
fn normalize(packet: &str) -> String {
    packet
        .split_inclusive("\r\n")
        .map(|line| {
            for (key, shape) in VARIABLE {
                if let Some(value) = line
                    .strip_prefix(key)
                    .and_then(|r| r.strip_prefix(": "))
                    .and_then(|r| r.strip_suffix("\r\n"))
                {
                    assert!(shape(value), "{key}: {value:?} has the wrong shape");
                    return format!("{key}: *\r\n");
                }
            }
            line.to_owned()
        })
        .collect()
}

/// Sorts runs of consecutive packets that `sortable` accepts: the order of list items (hash
/// order) and of the events of one change is not fixed by Asterisk, so it is not compared.
fn sort_runs(packets: &mut [String], sortable: impl Fn(&str) -> bool) {
    let mut i = 0;
    while i < packets.len() {
        let mut j = i;
        while j < packets.len() && sortable(&packets[j]) {
            j += 1;
        }
        packets[i..j].sort();
        i = j.max(i + 1);
    }
}

fn is_call_event(p: &str) -> bool {
    p.starts_with("Event: ExtensionStatus\r\nPrivilege:")
        || p.starts_with("Event: DeviceStateChange\r\nPrivilege:")
}

fn is_device_item(p: &str) -> bool {
    p.starts_with("Event: DeviceStateChange\r\nActionID:")
}

/// Compares two transcripts packet by packet, so a failure names the first differing packet.
fn assert_same(got: &[u8], want: &[u8], sortable: impl Fn(&str) -> bool + Copy) {
    let mut got: Vec<String> = packets(got).iter().map(|p| normalize(p)).collect();
    let mut want: Vec<String> = packets(want).iter().map(|p| normalize(p)).collect();
    sort_runs(&mut got, sortable);
    sort_runs(&mut want, sortable);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "packet #{i} differs");
    }
    assert_eq!(got.len(), want.len(), "packet count");
}

#[tokio::test]
async fn plain_login_ping_logoff_matches_capture_a() {
    let sim = Running::start(config(vec![])).await;
    let got = sim
        .transcript(&capture("a_login_ping_logoff.sent.ami"))
        .await;
    assert_same(&got, &capture("a_login_ping_logoff.recv.ami"), |_| false);
    sim.stop().await;
}

#[tokio::test]
async fn failed_login_matches_capture_b_and_closes() {
    let sim = Running::start(config(vec![])).await;
    // `transcript` reads to EOF, so this also proves the socket is closed after the error.
    let got = sim.transcript(&capture("b_login_failure.sent.ami")).await;
    assert_same(&got, &capture("b_login_failure.recv.ami"), |_| false);
    sim.stop().await;
}

#[tokio::test]
async fn md5_login_matches_capture_c() {
    let sim = Running::start(config(vec![])).await;
    let sent = String::from_utf8(capture("c_md5_challenge_login.sent.ami")).expect("ASCII");
    let (challenge_request, rest) = sent.split_once("\r\n\r\n").expect("two packets");
    let mut stream = TcpStream::connect(sim.addr).await.expect("connect");
    stream
        .write_all(format!("{challenge_request}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    // Banner plus the challenge answer: read until its blank line.
    let mut received = Vec::new();
    while received.windows(4).filter(|w| w == b"\r\n\r\n").count() < 1 {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed early");
        received.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(received.clone()).expect("ASCII");
    let challenge = text
        .lines()
        .find_map(|l| l.strip_prefix("Challenge: "))
        .expect("a challenge");
    let key = ami_proto::md5_key(challenge, &ami_proto::Secret::new("monitorpass"));
    // The captured Key belongs to the captured challenge; swap in the one for ours.
    let rest = rest.replace("d9ef8250de2451aec579721b4f8e6763", &key);
    stream.write_all(rest.as_bytes()).await.expect("send");
    stream.read_to_end(&mut received).await.expect("read");
    assert_same(
        &received,
        &capture("c_md5_challenge_login.recv.ami"),
        |_| false,
    );
    sim.stop().await;
}

#[tokio::test]
async fn md5_login_with_a_wrong_key_fails() {
    let sim = Running::start(config(vec![])).await;
    let got = sim
        .transcript(
            b"Action: Challenge\r\nActionID: 1\r\nAuthType: MD5\r\n\r\n\
              Action: Login\r\nActionID: 2\r\nAuthType: MD5\r\nUsername: monitor\r\nKey: 00000000000000000000000000000000\r\n\r\n",
        )
        .await;
    let got = packets(&got);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2],
        "Response: Error\r\nActionID: 2\r\nMessage: Authentication failed\r\n\r\n"
    );
    // A Challenge without AuthType is refused.
    let got = sim
        .transcript(b"Action: Challenge\r\nActionID: 1\r\n\r\nAction: Logoff\r\n\r\n")
        .await;
    assert_eq!(
        packets(&got)[1],
        "Response: Error\r\nActionID: 1\r\nMessage: Must specify AuthType\r\n\r\n"
    );
    sim.stop().await;
}

#[tokio::test]
async fn state_lists_match_capture_d() {
    let sim = Running::start(config(d_agents())).await;
    let got = sim.transcript(&capture("d_state_lists.sent.ami")).await;
    // Asterisk lists devices in hash order; the simulator in hint order.
    assert_same(&got, &capture("d_state_lists.recv.ami"), is_device_item);
    sim.stop().await;
}

#[tokio::test]
async fn device_state_changes_match_capture_e() {
    let mut agents = vec![SimAgent::custom("1001").starting_in(vec![DeviceState::Invalid])];
    agents.push(SimAgent {
        extension: "1099".to_owned(),
        context: None,
        devices: vec!["Custom:1099a".into(), "Custom:1099b".into()],
        initial: Some(vec![DeviceState::NotInUse, DeviceState::NotInUse]),
    });
    let sim = Running::start(config(agents)).await;
    let got = sim.transcript(&capture("e_device_states.sent.ami")).await;
    // The capture itself has both orders of the two events of one change.
    assert_same(&got, &capture("e_device_states.recv.ami"), is_call_event);
    sim.stop().await;
}

#[tokio::test]
async fn error_replies_match_capture_g() {
    let sim = Running::start(config(d_agents())).await;
    let got = sim.transcript(&capture("g_errors.sent.ami")).await;
    // One deliberate difference: ami-proto's framer skips blank lines between packets, so the
    // lone empty line the capture sends gets no `Missing action in request` answer here.
    let want = capture("g_errors.recv.ami");
    let lone = b"Response: Error\r\nMessage: Missing action in request\r\n\r\n";
    let at = want
        .windows(lone.len())
        .position(|w| w == lone)
        .expect("the capture answers the lone blank line");
    let mut want_without = want[..at].to_vec();
    want_without.extend_from_slice(&want[at + lone.len()..]);
    assert_same(&got, &want_without, |_| false);
    sim.stop().await;
}

#[tokio::test]
async fn extension_state_of_an_unknown_extension() {
    let sim = Running::start(config(d_agents())).await;
    let got = sim
        .transcript(
            b"Action: Login\r\nUsername: MONITOR\r\nSecret: monitorpass\r\nEvents: off\r\n\r\n\
              Action: ExtensionState\r\nActionID: x\r\nExten: 4711\r\nContext: agents\r\n\r\n\
              Action: ExtensionState\r\nActionID: y\r\n\r\n\
              Action: Events\r\nActionID: z\r\nEventMask: call\r\n\r\n\
              Action: Logoff\r\n\r\n",
        )
        .await;
    let got = packets(&got);
    assert_eq!(
        got[1],
        "Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
    );
    assert_eq!(
        got[2],
        "Response: Success\r\nActionID: x\r\nMessage: Extension Status\r\nExten: 4711\r\nContext: agents\r\nHint: \r\nStatus: -1\r\nStatusText: Unknown\r\n\r\n"
    );
    assert_eq!(
        got[3],
        "Response: Error\r\nActionID: y\r\nMessage: Extension not specified\r\n\r\n"
    );
    assert_eq!(
        got[4],
        "Response: Success\r\nActionID: z\r\nEvents: On\r\n\r\n"
    );
    assert_eq!(got.len(), 6);
    sim.stop().await;
}

/// Reads one `ExtensionStateList` answer that starts with the already-read `start` packet.
async fn read_list(
    client: &mut Client,
    events: &mut BTreeMap<String, i32>,
) -> BTreeMap<String, i32> {
    let mut list = BTreeMap::new();
    loop {
        let p = client.packet().await;
        match p.name().as_deref() {
            Some("ExtensionStatus") if p.action_id().is_some() => {
                let code = p.get("Status").expect("Status").parse().expect("number");
                list.insert(p.get("Exten").expect("Exten").into_owned(), code);
            }
            Some("ExtensionStateListComplete") => {
                assert_eq!(
                    p.get("ListItems").as_deref(),
                    Some(&*list.len().to_string())
                );
                return list;
            }
            // A live event cannot sit between the items of a list.
            other => panic!("unexpected {other:?} inside a list (events so far {events:?})"),
        }
    }
}

#[tokio::test]
async fn lists_always_agree_with_the_events_before_them() {
    let agents: Vec<SimAgent> = sample_agents()
        .map(|a| SimAgent::custom(a.extension))
        .collect();
    let mut cfg = config(agents);
    cfg.seed = Some(42);
    let sim = Running::start(cfg).await;
    let mut client = Client::connect(sim.addr).await;
    client.login("on").await;
    assert_eq!(client.packet().await.name().as_deref(), Some("FullyBooted"));
    assert_eq!(
        client.packet().await.name().as_deref(),
        Some("SuccessfulAuth")
    );

    // The model the client builds: the first list, then every event in wire order.
    let mut model = BTreeMap::new();
    let mut lists = 0;
    client
        .send("Action: ExtensionStateList\r\nActionID: list-0\r\n\r\n")
        .await;
    let changer = {
        let sim = sim.sim.clone();
        tokio::spawn(async move {
            for _ in 0..3_000 {
                sim.step();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut changer = Some(changer);
    loop {
        let p = client.packet().await;
        match (p.name().as_deref(), p.action_id()) {
            (Some("Success"), Some(_)) => {
                assert!(p.has("EventList", "start"));
                let list = read_list(&mut client, &mut model).await;
                if lists > 0 {
                    assert_eq!(
                        list, model,
                        "list #{lists} disagrees with the events before it"
                    );
                }
                model = list;
                lists += 1;
                if let Some(task) = changer.take_if(|t| t.is_finished()) {
                    task.await.expect("changer");
                    break;
                }
                client
                    .send(&format!(
                        "Action: ExtensionStateList\r\nActionID: list-{lists}\r\n\r\n"
                    ))
                    .await;
            }
            (Some("ExtensionStatus"), None) => {
                assert!(p.has("Privilege", "call,all"));
                let code: i32 = p.get("Status").expect("Status").parse().expect("number");
                assert!([0, 1, 2, 4, 8, 9, 16].contains(&code), "code {code}");
                model.insert(p.get("Exten").expect("Exten").into_owned(), code);
            }
            (Some("DeviceStateChange"), None) => {}
            other => panic!("unexpected packet {other:?}"),
        }
    }
    // After the changes stopped, one more list equals the model and the simulator's own view.
    client
        .send("Action: ExtensionStateList\r\nActionID: last\r\n\r\n")
        .await;
    loop {
        let p = client.packet().await;
        if p.name().as_deref() == Some("Success") && p.action_id().as_deref() == Some("last") {
            break;
        }
        if p.name().as_deref() == Some("ExtensionStatus") {
            let code = p.get("Status").expect("Status").parse().expect("number");
            model.insert(p.get("Exten").expect("Exten").into_owned(), code);
        }
    }
    let list = read_list(&mut client, &mut model).await;
    assert_eq!(list, model);
    let direct: BTreeMap<String, i32> = sim
        .sim
        .extension_states()
        .into_iter()
        .map(|(e, s)| (e, s.code()))
        .collect();
    assert_eq!(list, direct);
    assert!(lists >= 2, "at least one list was taken while agents moved");
    sim.stop().await;
}

#[tokio::test]
async fn every_logged_in_client_gets_the_events_and_only_then() {
    let sim = Running::start(config(d_agents())).await;
    let mut a = Client::connect(sim.addr).await;
    let mut b = Client::connect(sim.addr).await;
    let mut quiet = Client::connect(sim.addr).await;
    a.login("call").await;
    b.login("on").await;
    quiet.login("off").await;
    // `b` reads system and security events: FullyBooted and SuccessfulAuth come first.
    assert_eq!(b.packet().await.name().as_deref(), Some("FullyBooted"));
    assert_eq!(b.packet().await.name().as_deref(), Some("SuccessfulAuth"));
    assert!(
        sim.sim
            .set_device_state("Custom:1006", DeviceState::Ringing)
    );
    for client in [&mut a, &mut b] {
        let p = client.packet().await;
        assert_eq!(
            p.as_bytes(),
            b"Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1006\r\nContext: agents\r\nHint: Custom:1006\r\nStatus: 8\r\nStatusText: Ringing\r\n\r\n"
        );
        let p = client.packet().await;
        assert_eq!(
            p.as_bytes(),
            b"Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: Custom:1006\r\nState: RINGING\r\n\r\n"
        );
    }
    // The quiet session gets no event: its next packet is the answer to its Ping.
    quiet.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let p = quiet.packet().await;
    assert_eq!(p.action_id().as_deref(), Some("p"));
    assert!(p.has("Ping", "Pong"));
    // Not logged in: only Login, Challenge and Logoff are allowed.
    let got = sim
        .transcript(b"Action: ExtensionStateList\r\nActionID: n\r\n\r\nAction: Logoff\r\nActionID: o\r\n\r\n")
        .await;
    assert_eq!(
        packets(&got)[1],
        "Response: Error\r\nActionID: n\r\nMessage: Permission denied\r\n\r\n"
    );
    // Shutting down tells system readers and closes every socket.
    sim.cancel.cancel();
    assert_eq!(b.packet().await.name().as_deref(), Some("Shutdown"));
    let mut rest = Vec::new();
    a.stream.read_to_end(&mut rest).await.expect("read");
    assert!(
        rest.is_empty(),
        "a reads no system events, so it gets no Shutdown"
    );
    sim.handle.await.expect("task").expect("clean end");
}

/// Reads packets until one named `name` (by `Event:` or `Response:`), returning the names of
/// those before it.
async fn skip_to(client: &mut Client, name: &str) -> (Vec<String>, Packet) {
    let mut before = Vec::new();
    loop {
        let p = client.packet().await;
        let got = p.name().map(|n| n.into_owned()).unwrap_or_default();
        if got == name {
            return (before, p);
        }
        before.push(got);
    }
}

#[tokio::test]
async fn scripted_states_and_cues_keep_wire_order() {
    let sim = Running::start(config(d_agents())).await;
    let mut c = Client::connect(sim.addr).await;
    c.login("call").await;
    // A scripted state the hint arithmetic never gives is reported as is, with the phone's
    // device event after it.
    sim.sim
        .set_extension_state("1001", ExtensionState::INUSE_ONHOLD);
    let p = c.packet().await;
    assert_eq!(
        p.as_bytes(),
        b"Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1001\r\nContext: agents\r\nHint: Custom:1001\r\nStatus: 17\r\nStatusText: InUse&Hold\r\n\r\n"
    );
    // 1001 was INUSE already: no device event. A silent change and a removed hint send
    // nothing; a stray event changes nothing; the next packet is the stray one.
    sim.sim
        .set_extension_state_silently("1002", ExtensionState::UNAVAILABLE);
    sim.sim.remove_hint("1099");
    sim.sim
        .emit_extension_status("1003", ExtensionState::NOT_INUSE);
    let p = c.packet().await;
    assert_eq!(
        (p.get("Exten").as_deref(), p.get("Status").as_deref()),
        (Some("1003"), Some("0"))
    );
    // Cues around the next list: before (shown by it), after (not shown, follows it).
    sim.sim
        .cue_before_next_list("1004", ExtensionState::NOT_INUSE);
    sim.sim.cue_after_next_list("1005", ExtensionState::RINGING);
    c.send("Action: ExtensionStateList\r\nActionID: l\r\n\r\n")
        .await;
    let (before, _) = skip_to(&mut c, "Success").await;
    assert_eq!(before, ["ExtensionStatus", "DeviceStateChange"]);
    let mut list = BTreeMap::new();
    let mut events = BTreeMap::new();
    let listed = read_list(&mut c, &mut events).await;
    list.extend(listed);
    assert_eq!(list.get("1004"), Some(&0));
    assert_eq!(list.get("1005"), Some(&4), "the list shows the old state");
    assert_eq!(list.get("1001"), Some(&17));
    assert_eq!(list.get("1002"), Some(&4));
    assert_eq!(list.get("1003"), Some(&16), "a stray event changes nothing");
    assert!(!list.contains_key("1099"));
    let p = c.packet().await;
    assert!(p.action_id().is_none());
    assert_eq!(
        (p.get("Exten").as_deref(), p.get("Status").as_deref()),
        (Some("1005"), Some("8"))
    );
    let p = c.packet().await;
    assert_eq!(
        (p.get("Device").as_deref(), p.get("State").as_deref()),
        (Some("Custom:1005"), Some("RINGING"))
    );
    // A new extension is added at the end and announced.
    sim.sim.set_extension_state("5555", ExtensionState::ONHOLD);
    let p = c.packet().await;
    assert_eq!(p.get("Hint").as_deref(), Some("Custom:5555"));
    let states = sim.sim.extension_states();
    assert_eq!(
        states.last(),
        Some(&("5555".to_owned(), ExtensionState::ONHOLD))
    );
    sim.stop().await;
}

#[tokio::test]
async fn faults_silence_refusal_and_the_journal() {
    let mut cfg = config(d_agents());
    cfg.read = "call".to_owned();
    cfg.plain_login = false;
    let sim = Running::start(cfg).await;
    // Only the MD5 login is accepted.
    let got = sim
        .transcript(
            b"Action: Login\r\nActionID: 1\r\nUsername: monitor\r\nSecret: monitorpass\r\n\r\n",
        )
        .await;
    assert_eq!(
        packets(&got)[1],
        "Response: Error\r\nActionID: 1\r\nMessage: Authentication failed\r\n\r\n"
    );
    let mut c = Client::connect(sim.addr).await;
    c.send("Action: Challenge\r\nAuthType: MD5\r\n\r\n").await;
    let challenge = c
        .packet()
        .await
        .get("Challenge")
        .expect("challenge")
        .into_owned();
    let key = ami_proto::md5_key(&challenge, &ami_proto::Secret::new("monitorpass"));
    c.send(&format!(
        "Action: Login\r\nAuthType: MD5\r\nUsername: monitor\r\nKey: {key}\r\nEvents: on\r\n\r\n"
    ))
    .await;
    assert_eq!(
        c.packet().await.get("Message").as_deref(),
        Some("Authentication accepted")
    );
    // read=call: no FullyBooted, no SuccessfulAuth; raw bytes reach every logged-in session.
    sim.sim
        .emit_raw(b"Event: Reload\r\nPrivilege: system,all\r\nStatus: 0\r\n\r\n");
    assert_eq!(c.packet().await.name().as_deref(), Some("Reload"));
    // Silent: the answer is lost; the action is still recorded.
    sim.sim.go_silent(true);
    c.send("Action: Ping\r\nActionID: p1\r\n\r\n").await;
    sim.sim.wait_for_action("PING", 1).await;
    sim.sim.go_silent(false);
    c.send("Action: Ping\r\nActionID: p2\r\n\r\n").await;
    assert_eq!(c.packet().await.action_id().as_deref(), Some("p2"));
    assert_eq!(sim.sim.logins(), 1);
    assert_eq!(
        sim.sim.actions_received(),
        ["Login", "Challenge", "Login", "Ping", "Ping"]
    );
    assert_eq!(sim.sim.connections(), 1);
    // Every open and close so far (the refused login's and this one), in the counts' order.
    let counts: Vec<usize> = sim
        .sim
        .connection_history()
        .into_iter()
        .map(|(_, open)| open)
        .collect();
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert_eq!(counts.last(), Some(&1), "{counts:?}");
    // A drop in the middle of a packet: half an ExtensionStatus, then the end of the stream.
    sim.sim.inject(Fault::CloseMidPacket);
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).await.expect("read");
    assert!(rest.starts_with(b"Event: ExtensionStatus\r\n"), "{rest:?}");
    c.buf.extend_from_slice(&rest);
    assert!(
        c.decoder
            .decode(&mut c.buf)
            .expect("no error yet")
            .is_none()
    );
    assert!(c.decoder.decode_eof(&mut c.buf).is_err(), "truncated");
    // Refused: closed before the banner.
    sim.sim.refuse_connections(true);
    assert!(sim.transcript(b"").await.is_empty());
    sim.sim.refuse_connections(false);
    // The banner is written after the session listens for faults.
    let mut c = Client::connect(sim.addr).await;
    // A clean drop: the stream ends on a packet boundary.
    sim.sim.inject(Fault::Close);
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).await.expect("read");
    assert!(rest.is_empty());
    sim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_timer_applies_the_configured_rate() {
    let agents: Vec<SimAgent> = sample_agents()
        .map(|a| SimAgent::custom(a.extension))
        .collect();
    let mut cfg = config(agents);
    cfg.rate_per_sec = 4.0;
    cfg.seed = Some(9);
    // The call cycle alone (the call center has its own test).
    cfg.call_center = false;
    let run = |cfg: SimConfig| async move {
        let sim = Simulator::new(cfg).expect("valid");
        let mut rx = sim.shared.subscribe();
        let cancel = CancellationToken::new();
        let timer = tokio::spawn(drive(sim.shared.clone(), cancel.clone()));
        tokio::time::sleep(Duration::from_millis(10_001)).await;
        cancel.cancel();
        timer.await.expect("timer");
        let mut bytes = Vec::new();
        while let Ok(e) = rx.try_recv() {
            bytes.extend_from_slice(&e.bytes);
        }
        let n = sim.shared.board().seq;
        (n, bytes)
    };
    let (n, first) = run(cfg.clone()).await;
    assert_eq!(n, 40, "4 changes per second for 10 virtual seconds");
    let (_, again) = run(cfg.clone()).await;
    assert!(!first.is_empty());
    assert_eq!(first, again, "the same seed gives the same events");
    cfg.rate_per_sec = 250.0;
    let (n, _) = run(cfg).await;
    assert_eq!(n, 2_500, "high rates apply several changes per tick");
}

#[test]
fn bad_configurations_are_refused() {
    let base = || config(vec![SimAgent::custom("1001")]);
    let mut rate = base();
    rate.rate_per_sec = f64::NAN;
    let mut dup = base();
    dup.agents.push(SimAgent::custom("1001"));
    let mut states = base();
    states.agents[0].initial = Some(vec![]);
    let mut device = base();
    device.agents[0].devices = vec!["Custom:1&Custom:2".into()];
    let mut user = base();
    user.username = "a\r\nb".into();
    let mut read = base();
    read.read = String::new();
    let mut empty = base();
    empty.agents.push(SimAgent::custom(""));
    for (cfg, what) in [
        (rate, "rate"),
        (dup, "twice"),
        (states, "starting states"),
        (device, "device name"),
        (user, "user name"),
        (read, "read classes"),
        (empty, "extension \"\""),
    ] {
        let err = Simulator::new(cfg).expect_err(what);
        assert!(err.is_config());
        assert!(err.to_string().contains(what), "{err}");
    }
    let debug = format!("{:?}", base());
    assert!(
        !debug.contains("monitorpass"),
        "the secret is never printed"
    );
}

// ---- Call center: queues, pauses, presence, queued calls (captures j, l, m) ----

/// A packet's text with its closing blank line.
fn text(p: &Packet) -> String {
    let mut s = String::from_utf8(p.as_bytes().to_vec()).expect("ASCII");
    while !s.ends_with("\r\n\r\n") {
        s.push_str("\r\n");
    }
    s
}

fn is_cc_sortable(p: &str) -> bool {
    is_call_event(p) || p.starts_with("Event: QueueMemberStatus\r\n")
}

/// Blanks the epoch-second fields of queue members after checking their shape.
fn blank_times(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).expect("ASCII");
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let blanked = ["LoginTime: ", "LastPause: ", "LastCall: "]
            .iter()
            .find_map(|k| {
                let v = line.strip_prefix(k)?.strip_suffix("\r\n")?;
                assert!(all_digits(v), "{k}{v:?}");
                Some(format!("{k}{}\r\n", if v == "0" { "0" } else { "*" }))
            });
        out.push_str(&blanked.unwrap_or_else(|| line.to_owned()));
    }
    out.into_bytes()
}

/// Every call-center packet parses with ami-proto's views.
fn assert_cc_parses(bytes: &[u8]) -> usize {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(bytes);
    let mut n = 0;
    while let Some(frame) = decoder.decode(&mut buf).expect("frames") {
        if let Frame::Packet(p) = frame
            && let Some(view) = ami_proto::callcenter::CallCenterEvent::classify(&p)
        {
            view.unwrap_or_else(|e| panic!("{e}: {p:?}"));
            n += 1;
        }
    }
    n
}

fn queue_agents() -> Vec<SimAgent> {
    vec![
        SimAgent::custom("1001").starting_in(vec![DeviceState::NotInUse]),
        SimAgent::custom("1002").starting_in(vec![DeviceState::NotInUse]),
        SimAgent::custom("1201").starting_in(vec![DeviceState::NotInUse]),
    ]
}

#[tokio::test]
async fn queue_actions_match_capture_j() {
    let sim = Running::start(config(queue_agents())).await;
    // queues.conf defines both; Asterisk lists them in hash order, support first.
    sim.sim.add_queue("support");
    sim.sim.add_queue("sales");
    let got = sim.transcript(&capture("j_queue_members.sent.ami")).await;
    let want = capture("j_queue_members.recv.ami");
    assert_same(&blank_times(&got), &blank_times(&want), is_cc_sortable);
    assert!(assert_cc_parses(&got) > 20);
    assert_eq!(
        sim.sim
            .actions_received()
            .iter()
            .filter(|a| *a == "QueuePause")
            .count(),
        3,
        "the journal records QueuePause"
    );
    sim.stop().await;
}

/// The packets of a capture that contain `needle`.
fn captured(name: &str, needle: &str) -> Vec<String> {
    packets(&capture(name))
        .into_iter()
        .filter(|p| p.contains(needle))
        .collect()
}

#[tokio::test]
async fn presence_events_and_list_match_capture_l() {
    let sim = Running::start(config(queue_agents())).await;
    assert!(sim.sim.add_presence_to_hint("1201", "CustomPresence:1201"));
    let mut client = Client::connect(sim.addr).await;
    client.login("call,agent").await;
    let p = "CustomPresence:1201";
    assert!(
        sim.sim
            .set_presence(p, "away", "Lunch break", "Back at 14:00", Delivery::Events)
    );
    let a = text(&client.packet().await);
    let b = text(&client.packet().await);
    let want = captured(
        "l_presence.recv.ami",
        "Lunch break\r\nMessage: Back at 14:00",
    );
    assert_eq!(vec![a, b], want[..2].to_vec());
    // Escaping differs between the two events.
    assert!(sim.sim.set_presence(
        p,
        "dnd",
        "Meeting",
        "Room \"B\" \\ 2nd floor",
        Delivery::Events
    ));
    let a = text(&client.packet().await);
    let b = text(&client.packet().await);
    let want = captured("l_presence.recv.ami", "2nd floor");
    assert_eq!(vec![a, b], want);
    // The same value again: PresenceStateChange only.
    assert!(sim.sim.set_presence(
        p,
        "dnd",
        "Meeting",
        "Room \"B\" \\ 2nd floor",
        Delivery::Events
    ));
    assert!(text(&client.packet().await).starts_with("Event: PresenceStateChange\r\n"));
    assert!(!sim.sim.set_presence(p, "busy", "", "", Delivery::Events));
    // Silently, as while the link was down: only the list shows it.
    sim.sim
        .set_presence(p, "available", "", "", Delivery::Silently);
    sim.sim.set_presence(
        "CustomPresence:1001",
        "dnd",
        "",
        "In a meeting",
        Delivery::Silently,
    );
    client
        .send("Action: PresenceStateList\r\nActionID: l-23\r\n\r\n")
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(text(&client.packet().await));
    }
    let all = packets(&capture("l_presence.recv.ami"));
    let start = all
        .iter()
        .position(|p| p.contains("Presence State Changes will follow"))
        .expect("list in capture");
    assert_eq!(got, all[start..start + 4].to_vec());
    assert_eq!(assert_cc_parses(got.concat().as_bytes()), 2);
    sim.stop().await;
}

/// The answer to a list action: the packets from its `Response` to `last`, skipping events
/// that were on the wire before it.
async fn read_answer(client: &mut Client, last: &str) -> Vec<String> {
    let mut got = read_until(client, last).await;
    let start = got
        .iter()
        .position(|p| p.starts_with("Response: "))
        .expect("a response");
    got.drain(..start);
    got
}

async fn read_until(client: &mut Client, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let p = text(&client.packet().await);
        let done = p.contains(last);
        got.push(p);
        if done {
            return got;
        }
    }
}

#[tokio::test]
async fn a_queued_call_rings_connects_and_ends_with_parsable_events() {
    let sim = Running::start(config(queue_agents())).await;
    let alice = SimMember::agent("sales", "1001", "Alice").with_penalty(1);
    sim.sim
        .add_queue_member(&alice, Delivery::Silently)
        .expect("added");
    let mut client = Client::connect(sim.addr).await;
    client.login("call,agent").await;
    // No call: an empty channel list, as in m_channels_list.
    client
        .send("Action: CoreShowChannels\r\nActionID: m-2\r\n\r\n")
        .await;
    let got = read_answer(&mut client, "CoreShowChannelsComplete").await;
    let all = packets(&capture("m_channels_list.recv.ami"));
    assert_eq!(got, all[2..4].to_vec());

    let call = sim
        .sim
        .queue_call("sales", "5559876", "Customer 5559876", Delivery::Events);
    let got = read_until(&mut client, "QueueCallerJoin").await;
    assert!(got[0].starts_with("Event: Newchannel\r\n"));
    assert!(
        got[1].contains("CallerIDNum: 5559876\r\n")
            && got[1].contains("Position: 1\r\nCount: 1\r\n")
    );
    client
        .send("Action: QueueStatus\r\nActionID: q\r\n\r\n")
        .await;
    let list = read_answer(&mut client, "QueueStatusComplete").await;
    assert!(
        list.iter()
            .any(|p| p.starts_with("Event: QueueEntry\r\n") && p.contains("CallerIDNum: 5559876"))
    );
    assert!(list.last().expect("complete").contains("ListItems: 3\r\n"));
    assert_cc_parses(list.concat().as_bytes());

    let iface = "Local/1001@agents-ring".to_owned();
    sim.sim
        .queue_call_step(call, CallStep::Ring(iface), Delivery::Events)
        .expect("ring");
    let got = read_until(&mut client, "Status: 8\r\n").await;
    assert!(got.iter().any(|p| p.starts_with("Event: AgentCalled\r\n")));
    sim.sim
        .queue_call_step(call, CallStep::Answer, Delivery::Events)
        .expect("answer");
    let got = read_until(&mut client, "Status: 1\r\nStatusText: InUse").await;
    assert!(got.iter().any(|p| p.starts_with("Event: AgentConnect\r\n")));
    assert!(
        got.iter()
            .any(|p| p.starts_with("Event: QueueCallerLeave\r\n"))
    );
    assert_eq!(
        got.iter()
            .filter(|p| p.starts_with("Event: BridgeEnter\r\n"))
            .count(),
        2
    );
    assert_cc_parses(got.concat().as_bytes());
    client
        .send("Action: CoreShowChannels\r\nActionID: m-3\r\n\r\n")
        .await;
    let list = read_answer(&mut client, "CoreShowChannelsComplete").await;
    assert!(list.last().expect("complete").contains("ListItems: 2\r\n"));
    assert!(list[1].contains("Application: Queue\r\nApplicationData: sales,,,,30\r\n"));
    assert_cc_parses(list.concat().as_bytes());
    sim.sim
        .queue_call_step(call, CallStep::HangUp, Delivery::Events)
        .expect("hang up");
    let got = read_until(&mut client, "Status: 0\r\nStatusText: Idle").await;
    let complete = got
        .iter()
        .find(|p| p.starts_with("Event: AgentComplete\r\n"))
        .expect("AgentComplete");
    assert!(complete.contains("Reason: caller\r\n"));
    assert_cc_parses(got.concat().as_bytes());
    assert!(sim.sim.queue_calls().is_empty());
    assert!(
        sim.sim
            .queue_call_step(call, CallStep::HangUp, Delivery::Events)
            .is_err()
    );

    // An abandoned call counts as abandoned; the member took one call.
    let call = sim.sim.queue_call("sales", "5550001", "", Delivery::Events);
    sim.sim
        .queue_call_step(call, CallStep::Abandon, Delivery::Events)
        .expect("abandon");
    let got = read_until(&mut client, "QueueCallerAbandon").await;
    assert_cc_parses(got.concat().as_bytes());
    client
        .send("Action: QueueStatus\r\nQueue: sales\r\n\r\n")
        .await;
    let list = read_answer(&mut client, "QueueStatusComplete").await;
    assert!(
        list[1].contains("Completed: 1\r\nAbandoned: 1\r\n"),
        "{}",
        list[1]
    );
    assert!(list[2].contains("CallsTaken: 1\r\n"), "{}", list[2]);
    sim.stop().await;
}

#[tokio::test]
async fn silent_pauses_show_in_the_next_list_and_write_needs_agent() {
    let mut c = config(queue_agents());
    c.write = "call".to_owned();
    let sim = Running::start(c).await;
    let bob = SimMember::agent("support", "1002", "Bob");
    sim.sim
        .add_queue_member(&bob, Delivery::Silently)
        .expect("added");
    assert_eq!(
        sim.sim.add_queue_member(&bob, Delivery::Silently),
        Err(QueueError::AlreadyThere)
    );
    sim.sim
        .pause_queue_member(&bob.interface, None, true, "Training", Delivery::Silently)
        .expect("paused");
    let mut client = Client::connect(sim.addr).await;
    client.login("call,agent").await;
    client
        .send("Action: QueueStatus\r\nMember: Bob\r\n\r\n")
        .await;
    let list = read_answer(&mut client, "QueueStatusComplete").await;
    assert!(
        list[2].contains("Paused: 1\r\nPausedReason: Training\r\n"),
        "{}",
        list[2]
    );
    // This user lacks write=agent.
    client
        .send("Action: QueuePause\r\nInterface: Local/1002@agents-ring\r\nPaused: false\r\n\r\n")
        .await;
    assert_eq!(
        text(&client.packet().await),
        "Response: Error\r\nMessage: Permission denied\r\n\r\n"
    );
    sim.stop().await;
}

/// The lines of a transcript that do not depend on the clock.
fn timeless(bytes: &[u8]) -> Vec<String> {
    const KEYS: [&str; 12] = [
        "Event",
        "Queue",
        "Interface",
        "MemberName",
        "Paused",
        "PausedReason",
        "Presentity",
        "Status",
        "CallerIDNum",
        "Exten",
        "Device",
        "State",
    ];
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter(|l| {
            KEYS.iter()
                .any(|k| l.strip_prefix(k).is_some_and(|r| r.starts_with(": ")))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_demo_plays_the_call_center_deterministically() {
    let agents: Vec<SimAgent> = sample_agents()
        .map(|a| SimAgent::custom(a.extension))
        .collect();
    let mut cfg = config(agents);
    cfg.rate_per_sec = 4.0;
    cfg.seed = Some(3);
    let run = |cfg: SimConfig| async move {
        let sim = Simulator::new(cfg).expect("valid");
        let mut rx = sim.shared.subscribe();
        let cancel = CancellationToken::new();
        let timer = tokio::spawn(drive(sim.shared.clone(), cancel.clone()));
        let mut bytes = Vec::new();
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            loop {
                match rx.try_recv() {
                    Ok(e) => bytes.extend_from_slice(&e.bytes),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        cancel.cancel();
        timer.await.expect("timer");
        bytes
    };
    let first = run(cfg.clone()).await;
    assert_eq!(
        timeless(&first),
        timeless(&run(cfg).await),
        "a seed replays the shift"
    );
    let text = String::from_utf8_lossy(&first);
    // Every kind of call-center event occurs, and all of them parse.
    for event in [
        "QueueMemberPause",
        "QueueMemberStatus",
        "QueueCallerJoin",
        "QueueCallerLeave",
        "QueueCallerAbandon",
        "AgentCalled",
        "AgentConnect",
        "AgentComplete",
        "PresenceStateChange",
        "PresenceStatus",
        "BridgeEnter",
        "Hangup",
    ] {
        assert!(text.contains(&format!("Event: {event}\r\n")), "{event}");
    }
    for reason in ["Lunch", "Break", "Training", "After call work", "Meeting"] {
        assert!(
            text.contains(&format!("PausedReason: {reason}\r\n")),
            "{reason}"
        );
    }
    assert!(
        text.contains("Hint: Custom:1001,CustomPresence:1001\r\n") || text.contains("Exten: 1001")
    );
    assert!(assert_cc_parses(&first) > 100);
}

#[tokio::test]
async fn presence_writes_match_capture_l() {
    let sim = Running::start(config(queue_agents())).await;
    assert!(sim.sim.add_presence_to_hint("1201", "CustomPresence:1201"));
    // The capture's unrecorded baseline.
    for p in ["CustomPresence:1201", "CustomPresence:1001"] {
        assert!(
            sim.sim
                .set_presence(p, "not_set", "", "", Delivery::Silently)
        );
    }
    let got = sim.transcript(&capture("l_presence.sent.ami")).await;
    let want = capture("l_presence.recv.ami");
    // PresenceStatus and PresenceStateChange of one write come in either order in the capture.
    let sortable = |p: &str| {
        p.starts_with("Event: PresenceStatus\r\n")
            || p.starts_with("Event: PresenceStateChange\r\nPrivilege")
            || is_call_event(p)
    };
    assert_same(&got, &want, sortable);
    assert!(assert_cc_parses(&got) > 20);
    sim.stop().await;
}

#[tokio::test]
async fn refused_actions_get_asterisks_exact_errors_and_a_pause_keeps_its_start() {
    let sim = Running::start(config(queue_agents())).await;
    let alice = SimMember::agent("sales", "1001", "Alice");
    sim.sim
        .add_queue_member(&alice, Delivery::Silently)
        .expect("added");
    sim.sim
        .pause_queue_member_since(
            &alice.interface,
            None,
            "Lunch",
            1_795_469_510,
            Delivery::Silently,
        )
        .expect("paused");
    sim.sim
        .refuse_action("QueueStatus", Some(Refusal::UnknownCommand));
    sim.sim
        .refuse_action("presencestatelist", Some(Refusal::PermissionDenied));
    let mut client = Client::connect(sim.addr).await;
    client.login("off").await;
    client
        .send("Action: QueueStatus\r\nActionID: r-1\r\n\r\n")
        .await;
    assert_eq!(
        text(&client.packet().await),
        "Response: Error\r\nActionID: r-1\r\nMessage: Invalid/unknown command: QueueStatus. \
         Use Action: ListCommands to show available commands.\r\n\r\n"
    );
    client.send("Action: PresenceStateList\r\n\r\n").await;
    assert_eq!(
        text(&client.packet().await),
        "Response: Error\r\nMessage: Permission denied\r\n\r\n"
    );
    // Other actions still run, and a refusal can be lifted.
    client.send("Action: Ping\r\n\r\n").await;
    assert!(text(&client.packet().await).contains("Ping: Pong"));
    sim.sim.refuse_action("QUEUESTATUS", None);
    client.send("Action: QueueStatus\r\n\r\n").await;
    let list = read_answer(&mut client, "QueueStatusComplete").await;
    let alice_item = list
        .iter()
        .find(|p| p.contains("Name: Alice"))
        .expect("Alice listed");
    assert!(
        alice_item.contains("LastPause: 1795469510\r\n") && alice_item.contains("Paused: 1\r\n"),
        "{alice_item}"
    );
    sim.stop().await;
}
