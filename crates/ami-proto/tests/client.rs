//! The tokio client against a scripted AMI peer on a loopback TCP port: login failure, event
//! lists with interleaved events, a connection dropped mid-packet, a silent peer, reconnection,
//! backpressure and clean shutdown. The protocol decisions themselves (plain and MD5 login,
//! correlation, list collection, keepalive and action timeouts) are unit-tested without sockets
//! next to the session, in `src/client/session_tests.rs`; these tests prove the supervisor
//! around it: socket IO, timers, reconnection, delivery and the handle.
//!
//! These tests run on real time, not paused time: tokio's auto-advance of a paused clock can
//! fire while a loopback socket has data ready (a task woken by the IO driver during the
//! runtime's park does not count as work), which would make timeouts fire spuriously. Instead the
//! intervals that a test waits for are a few tens of milliseconds, every other timer is far away,
//! and nothing asserts on durations.

use std::time::Duration;

use ami_proto::client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientHandle, DisconnectReason,
};
use ami_proto::{Action, Decoder, Frame, Kind, Packet};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BANNER: &str = "Asterisk Call Manager/9.0.0\r\n";
/// Limit for anything a test waits for; reaching it means the client is stuck.
const PATIENCE: Duration = Duration::from_secs(30);

/// One server-side connection of the scripted peer.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    /// Answer `Ping` actions automatically (true), or stay silent.
    pong: bool,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (mut stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
            .await
            .expect("client connects")
            .expect("accept");
        stream.write_all(BANNER.as_bytes()).await.expect("banner");
        Peer {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(),
            pong: true,
        }
    }

    /// The next action the client sent, answering pings on the way; `None` at EOF.
    async fn action(&mut self) -> Option<Packet> {
        loop {
            match self
                .decoder
                .decode(&mut self.buf)
                .expect("client sends valid AMI")
            {
                Some(Frame::Packet(p)) if p.is(Kind::Action, "Ping") && self.pong => {
                    let id = p.action_id().expect("ActionID").into_owned();
                    self.write(&format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1.0\r\n\r\n"))
                        .await;
                }
                Some(Frame::Packet(p)) => return Some(p),
                Some(Frame::Banner(_)) => panic!("clients send no banner"),
                None => {
                    let n = tokio::time::timeout(PATIENCE, self.stream.read_buf(&mut self.buf))
                        .await
                        .expect("client writes")
                        .unwrap_or(0);
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
    }

    async fn expect_action(&mut self, name: &str) -> Packet {
        let p = self
            .action()
            .await
            .unwrap_or_else(|| panic!("connection closed while waiting for {name}"));
        assert!(p.is(Kind::Action, name), "expected {name}, got {p:?}");
        let id = p.action_id().expect("every action carries an ActionID");
        assert!(
            id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()),
            "{id:?}"
        );
        p
    }

    async fn write(&mut self, text: &str) {
        // The client may already have closed its end; the test's assertions say what matters.
        let _ = self.stream.write_all(text.as_bytes()).await;
    }

    /// Waits for the client's Logoff and answers it as Asterisk does.
    async fn goodbye(mut self) {
        let logoff = self.expect_action("Logoff").await;
        let id = logoff.action_id().expect("ActionID").into_owned();
        self.write(&format!(
            "Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n"
        ))
        .await;
    }

    /// Accepts a plain login with `Response: Success` and returns the Login action.
    async fn login_ok(&mut self) -> Packet {
        let login = self.expect_action("Login").await;
        let id = login.action_id().expect("ActionID").into_owned();
        self.write(&format!(
            "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
        ))
        .await;
        login
    }
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

/// Short backoff so reconnects happen at once; pings far away unless a test wants them.
fn config(addr: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(addr, "monitor", "monitorpass");
    cfg.backoff_initial = Duration::from_millis(10);
    cfg.backoff_max = Duration::from_millis(50);
    cfg.ping_interval = Duration::from_secs(3600);
    cfg.action_timeout = PATIENCE;
    cfg
}

async fn next_event(events: &mut mpsc::Receiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event in time")
        .expect("client alive")
}

/// The next event that is not a packet (Connected, Disconnected, LoginFailed...).
async fn next_notice(events: &mut mpsc::Receiver<ClientEvent>) -> ClientEvent {
    loop {
        match next_event(events).await {
            ClientEvent::Event(_) => {}
            other => return other,
        }
    }
}

async fn connected(events: &mut mpsc::Receiver<ClientEvent>) -> (u64, bool) {
    match next_notice(events).await {
        ClientEvent::Connected {
            generation,
            reconnected,
            banner,
        } => {
            assert_eq!(banner.as_deref(), Some("Asterisk Call Manager/9.0.0"));
            (generation, reconnected)
        }
        other => panic!("expected Connected, got {other:?}"),
    }
}

async fn shutdown(cancel: CancellationToken, handle: &ClientHandle) {
    cancel.cancel();
    tokio::time::timeout(PATIENCE, handle.stopped())
        .await
        .expect("client stops");
}

#[tokio::test]
async fn refused_login_is_reported_and_retried_with_backoff() {
    let (listener, addr) = listener().await;
    let cancel = CancellationToken::new();
    let (handle, mut events) = Client::spawn(config(&addr), cancel.clone());

    for attempt in 0..2 {
        let mut peer = Peer::accept(&listener).await;
        let login = peer.expect_action("Login").await;
        assert_eq!(login.get("Secret").as_deref(), Some("monitorpass"));
        assert_eq!(login.get("Events").as_deref(), Some("on"));
        // Like fixture b: the error answer without ActionID echo check, then the server hangs up.
        let id = login.action_id().expect("ActionID").into_owned();
        peer.write(&format!(
            "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"
        ))
        .await;
        drop(peer);
        match next_notice(&mut events).await {
            ClientEvent::LoginFailed { message } => {
                assert_eq!(message, "Authentication failed", "attempt {attempt}")
            }
            other => panic!("expected LoginFailed, got {other:?}"),
        }
        assert!(!handle.is_connected());
        assert_eq!(
            handle.send(Action::ping()).await.map(|_| ()),
            Err(ClientError::NotConnected)
        );
    }
    shutdown(cancel, &handle).await;
}

#[tokio::test]
async fn list_results_and_live_events_carry_wire_order() {
    let (listener, addr) = listener().await;
    let cancel = CancellationToken::new();
    let (handle, mut events) = Client::spawn(config(&addr), cancel.clone());
    let mut peer = Peer::accept(&listener).await;
    peer.login_ok().await;
    let (generation, _) = connected(&mut events).await;

    let list = tokio::spawn({
        let handle = handle.clone();
        async move { handle.send_list(Action::extension_state_list()).await }
    });
    let action = peer.expect_action("ExtensionStateList").await;
    let id = action.action_id().expect("ActionID").into_owned();
    // Before the answer, inside the list (which Asterisk never does, but a client must survive
    // it), a stray response without ActionID, and after the list.
    let stream = format!(
        "Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1001\r\nContext: agents\r\nHint: Custom:1001\r\nStatus: 1\r\nStatusText: InUse\r\n\r\n\
         Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Extension Statuses will follow\r\n\r\n\
         Event: ExtensionStatus\r\nActionID: {id}\r\nExten: 1001\r\nContext: agents\r\nHint: Custom:1001\r\nStatus: 0\r\nStatusText: Idle\r\n\r\n\
         Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: Custom:1002\r\nState: INUSE\r\n\r\n\
         Event: ExtensionStatus\r\nActionID: {id}\r\nExten: 1002\r\nContext: agents\r\nHint: Custom:1002\r\nStatus: 1\r\nStatusText: InUse\r\n\r\n\
         Response: Error\r\nMessage: Missing action in request\r\n\r\n\
         Event: ExtensionStateListComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 2\r\n\r\n\
         Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1001\r\nContext: agents\r\nHint: Custom:1001\r\nStatus: 8\r\nStatusText: Ringing\r\n\r\n"
    );
    // Written in small pieces, as a socket may deliver it.
    for piece in stream.as_bytes().chunks(37) {
        peer.stream.write_all(piece).await.expect("write");
        tokio::task::yield_now().await;
    }

    let result = list.await.expect("task").expect("list result");
    assert_eq!(result.generation, generation);
    assert_eq!(result.items.len(), 2);
    assert_eq!(result.declared_items(), Some(2));
    assert!(result.response.has("EventList", "start"));
    assert!(
        result
            .complete
            .is(Kind::Event, "ExtensionStateListComplete")
    );
    let item_seqs: Vec<u64> = result.items.iter().map(|i| i.wire_seq).collect();
    assert!(result.response_wire_seq < item_seqs[0]);
    assert!(item_seqs[0] < item_seqs[1]);
    assert!(item_seqs[1] < result.complete_wire_seq);
    assert_eq!(result.items[1].get("Exten").as_deref(), Some("1002"));

    let mut live = Vec::new();
    while live.len() < 4 {
        if let ClientEvent::Event(e) = next_event(&mut events).await {
            live.push(e);
        }
    }
    assert!(live.iter().all(|e| e.generation == generation));
    assert!(
        live.windows(2).all(|w| w[0].wire_seq < w[1].wire_seq),
        "events in wire order"
    );
    assert!(
        live[0].has("Status", "1") && live[0].wire_seq < result.response_wire_seq,
        "before the list"
    );
    assert!(live[1].is(Kind::Event, "DeviceStateChange"));
    assert!(
        item_seqs[0] < live[1].wire_seq && live[1].wire_seq < item_seqs[1],
        "inside the list"
    );
    assert!(
        live[2].is(Kind::Response, "Error"),
        "a response without ActionID is an event"
    );
    assert!(
        live[3].has("Status", "8") && live[3].wire_seq > result.complete_wire_seq,
        "after the list"
    );

    // A plain action still resolves by ActionID, even after an unrelated response came first.
    let answer = tokio::spawn({
        let handle = handle.clone();
        async move { handle.send(Action::extension_state("1001", "agents")).await }
    });
    let action = peer.expect_action("ExtensionState").await;
    let id = action.action_id().expect("ActionID").into_owned();
    peer.write("Response: Error\r\nActionID: someone-else\r\nMessage: not yours\r\n\r\n")
        .await;
    peer.write(&format!(
        "Response: Success\r\nActionID: {id}\r\nMessage: Extension Status\r\nExten: 1001\r\nContext: agents\r\nHint: Custom:1001\r\nStatus: 8\r\nStatusText: Ringing\r\n\r\n"
    ))
    .await;
    let answer = answer.await.expect("task").expect("answer");
    assert_eq!(answer.get("Status").as_deref(), Some("8"));
    match next_event(&mut events).await {
        ClientEvent::Event(e) => assert_eq!(e.action_id().as_deref(), Some("someone-else")),
        other => panic!("expected the foreign response as an event, got {other:?}"),
    }

    // A refused list action is a typed error, not a hang.
    let refused = tokio::spawn({
        let handle = handle.clone();
        async move { handle.send_list(Action::device_state_list()).await }
    });
    let action = peer.expect_action("DeviceStateList").await;
    let id = action.action_id().expect("ActionID").into_owned();
    peer.write(&format!(
        "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"
    ))
    .await;
    assert_eq!(
        refused.await.expect("task").map(|_| ()),
        Err(ClientError::ActionFailed {
            message: "Permission denied".into()
        })
    );

    let server = tokio::spawn(async move { peer.expect_action("Logoff").await });
    shutdown(cancel, &handle).await;
    server.await.expect("peer saw the Logoff");
}

#[tokio::test]
async fn connection_dropped_mid_packet_fails_pending_and_reconnects() {
    let (listener, addr) = listener().await;
    let cancel = CancellationToken::new();
    let (handle, mut events) = Client::spawn(config(&addr), cancel.clone());
    let mut peer = Peer::accept(&listener).await;
    peer.login_ok().await;
    assert_eq!(connected(&mut events).await, (1, false));

    let pending = tokio::spawn({
        let handle = handle.clone();
        async move { handle.send(Action::command("core show hints")).await }
    });
    let action = peer.expect_action("Command").await;
    let id = action.action_id().expect("ActionID").into_owned();
    peer.write(&format!(
        "Response: Success\r\nActionID: {id}\r\nMessage: Command outp"
    ))
    .await;
    drop(peer);

    let result = pending.await.expect("task");
    assert!(
        matches!(
            result,
            Err(ClientError::ConnectionLost(
                DisconnectReason::ClosedMidPacket(_)
            ))
        ),
        "{result:?}"
    );
    match next_notice(&mut events).await {
        ClientEvent::Disconnected {
            generation: 1,
            reason: DisconnectReason::ClosedMidPacket(e),
        } => {
            assert!(e.is_end_of_stream());
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(!handle.link().borrow().connected);

    let mut peer = Peer::accept(&listener).await;
    peer.login_ok().await;
    let (generation, reconnected) = connected(&mut events).await;
    assert!(reconnected && generation > 1);
    let link = handle.link().borrow().clone();
    assert!(link.connected && link.generation == generation);

    let server = tokio::spawn(async move { peer.expect_action("Logoff").await });
    shutdown(cancel, &handle).await;
    server.await.expect("peer saw the Logoff");
}

#[tokio::test]
async fn silent_peer_is_declared_dead_then_the_client_reconnects() {
    let (listener, addr) = listener().await;
    let cancel = CancellationToken::new();
    let mut cfg = config(&addr);
    cfg.ping_interval = Duration::from_millis(30);
    cfg.ping_timeout = Duration::from_millis(30);
    let (handle, mut events) = Client::spawn(cfg, cancel.clone());
    let mut peer = Peer::accept(&listener).await;
    peer.login_ok().await;
    assert_eq!(connected(&mut events).await, (1, false));

    // The peer keeps the socket open and reads, but never answers again.
    peer.pong = false;
    let silent = tokio::spawn(async move {
        let ping = peer.expect_action("Ping").await;
        (peer, ping)
    });
    match next_notice(&mut events).await {
        ClientEvent::Disconnected {
            generation: 1,
            reason,
        } => assert_eq!(reason, DisconnectReason::KeepaliveTimeout),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    let (_silent_peer, ping) = silent.await.expect("peer task");
    assert!(ping.action_id().is_some());

    let mut peer = Peer::accept(&listener).await;
    peer.login_ok().await;
    let (generation, reconnected) = connected(&mut events).await;
    assert!(reconnected);
    assert_eq!(generation, 2);
    let server = tokio::spawn(async move { peer.goodbye().await });
    shutdown(cancel, &handle).await;
    server.await.expect("peer saw the Logoff");
    match next_notice(&mut events).await {
        ClientEvent::Disconnected { reason, .. } => assert_eq!(reason, DisconnectReason::Shutdown),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_consumer_gets_a_lagged_notice_instead_of_blocking_the_reader() {
    let (listener, addr) = listener().await;
    let cancel = CancellationToken::new();
    let mut cfg = config(&addr);
    cfg.event_buffer = 16;
    let (handle, mut events) = Client::spawn(cfg, cancel.clone());
    let mut peer = Peer::accept(&listener).await;
    peer.login_ok().await;
    assert_eq!(connected(&mut events).await, (1, false));

    let burst: String = (0..100)
        .map(|i| format!("Event: DeviceStateChange\r\nDevice: Custom:{i}\r\nState: INUSE\r\n\r\n"))
        .collect();
    peer.write(&burst).await;
    // The reader keeps going: an action sent after the burst is answered although nobody has
    // read a single event yet.
    let answer = tokio::spawn({
        let handle = handle.clone();
        async move { handle.send(Action::new("CoreSettings")).await }
    });
    let action = peer.expect_action("CoreSettings").await;
    let id = action.action_id().expect("ActionID").into_owned();
    peer.write(&format!(
        "Response: Success\r\nActionID: {id}\r\nAMIversion: 9.0.0\r\n\r\n"
    ))
    .await;
    let answer = answer.await.expect("task").expect("answer");
    assert!(answer.has("AMIversion", "9.0.0"));

    // The answer came after the whole burst, so the reader has seen all of it: the channel
    // holds 16 events, the other 84 were counted, and the notice follows once there is room.
    for i in 0..16 {
        match next_event(&mut events).await {
            ClientEvent::Event(e) => {
                assert_eq!(e.get("Device"), Some(format!("Custom:{i}").into()))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    match next_event(&mut events).await {
        ClientEvent::Lagged { dropped } => assert_eq!(dropped, 84),
        other => panic!("expected Lagged, got {other:?}"),
    }
    peer.write("Event: DeviceStateChange\r\nDevice: Custom:last\r\nState: INUSE\r\n\r\n")
        .await;
    match next_event(&mut events).await {
        ClientEvent::Event(e) => assert_eq!(e.get("Device").as_deref(), Some("Custom:last")),
        other => panic!("unexpected {other:?}"),
    }
    let server = tokio::spawn(async move { peer.expect_action("Logoff").await });
    shutdown(cancel, &handle).await;
    server.await.expect("peer saw the Logoff");
}

#[tokio::test]
async fn an_event_in_the_same_read_as_the_login_answer_is_delivered_at_once() {
    let (listener, addr) = listener().await;
    let cancel = CancellationToken::new();
    let (handle, mut events) = Client::spawn(config(&addr), cancel.clone());
    let mut peer = Peer::accept(&listener).await;
    let login = peer.expect_action("Login").await;
    let id = login.action_id().expect("ActionID").into_owned();
    // One write, as Asterisk sends it: the answer and FullyBooted right behind it. Nothing else
    // follows, so the event must come out of the bytes already read.
    peer.write(&format!(
        "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n\
         Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 5\r\nLastReload: 5\r\nStatus: Fully Booted\r\n\r\n"
    ))
    .await;
    assert_eq!(connected(&mut events).await, (1, false));
    match next_event(&mut events).await {
        ClientEvent::Event(packet) => assert!(packet.is(Kind::Event, "FullyBooted")),
        other => panic!("expected FullyBooted, got {other:?}"),
    }
    let server = tokio::spawn(async move { peer.goodbye().await });
    shutdown(cancel, &handle).await;
    server.await.expect("peer saw the Logoff");
}
