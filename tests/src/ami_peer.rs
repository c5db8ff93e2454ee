//! The end-to-end tests' stand-in for Asterisk: the simulated PBX of the `ami-sim` crate, held
//! still (no call cycle), started on the hints of the `d_state_lists` capture (1001..1010 and
//! 1099 in context `agents`, with their captured states) for the user of the captures, and
//! driven by the test through the simulator's scripting hooks.
//!
//! Every byte it writes comes from `ami-sim`'s wire module, which its own tests compare with the
//! real Asterisk 20.20.1 captures; this module writes no AMI itself. What it adds is the
//! vocabulary the tests speak: raw `Status:` codes (`set_state("1001", 9)`) instead of typed
//! states, and a peer that stops when it is dropped.
//!
//! A test drives it: change states with or without events, emit stray or raw events, cue
//! changes around the next list, drop connections (cleanly or in the middle of a packet),
//! refuse new ones, go silent, and wait for logins or actions; and play the call center (queue
//! members, pauses with reasons, presence, queued calls), with events or silently.

use std::net::SocketAddr;
use std::time::Duration;

use ami_sim::{ExtensionState, Fault, SimConfig, Simulator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How the peer behaves as a manager user.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The manager user name (compared without regard to case, as Asterisk does).
    pub username: String,
    /// The manager secret.
    pub secret: String,
    /// Accept only the MD5 challenge login; a plain `Secret` login then fails.
    pub md5: bool,
    /// Send `FullyBooted` (and `SuccessfulAuth`, like the `read=all` user of the captures)
    /// after a login with events on. When false the user may read `call` events only, like a
    /// user without `system` read rights, which never gets `FullyBooted`.
    pub send_fully_booted: bool,
    /// The user's `write=` classes; without `agent`, `QueuePause` is refused with
    /// `Permission denied`, as for a read-only manager user.
    pub write: String,
}

impl Default for PeerConfig {
    /// The user of the captures: `monitor` / `monitorpass`, plain login, `FullyBooted` sent.
    fn default() -> Self {
        PeerConfig {
            username: "monitor".to_owned(),
            secret: "monitorpass".to_owned(),
            md5: false,
            send_fully_booted: true,
            write: "all".to_owned(),
        }
    }
}

impl PeerConfig {
    /// The simulator configuration this peer runs: the captured hints, no call cycle, and a
    /// failed login answered at once instead of after Asterisk's one-second pause.
    pub fn sim_config(&self) -> SimConfig {
        let mut config = SimConfig::new(
            self.username.clone(),
            self.secret.clone(),
            ami_sim::captured_agents(),
        );
        config.rate_per_sec = 0.0;
        config.seed = Some(1);
        config.auth_failure_delay = Duration::ZERO;
        config.plain_login = !self.md5;
        config.write.clone_from(&self.write);
        if !self.send_fully_booted {
            config.read = "call".to_owned();
        }
        config
    }
}

/// A loopback AMI peer on 127.0.0.1 and a random port. Dropping it stops the listener and
/// closes every connection.
pub struct AmiPeer {
    sim: Simulator,
    addr: SocketAddr,
    cancel: CancellationToken,
}

impl std::fmt::Debug for AmiPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmiPeer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for AmiPeer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn state(code: i32) -> ExtensionState {
    ExtensionState::from_code(code)
}

impl AmiPeer {
    /// Binds 127.0.0.1:0 and starts serving. Panics when no loopback port can be bound (the
    /// test cannot run then); [`AmiPeer::try_start`] returns the error instead.
    pub async fn start(config: PeerConfig) -> AmiPeer {
        AmiPeer::try_start(config)
            .await
            .expect("bind a loopback port for the AMI peer")
    }

    /// Like [`AmiPeer::start`], returning the error.
    pub async fn try_start(config: PeerConfig) -> std::io::Result<AmiPeer> {
        let sim = Simulator::new(config.sim_config()).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let serving = sim.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = serving.serve(listener, token).await {
                tracing::warn!(error = %e, "AMI peer stopped serving");
            }
        });
        Ok(AmiPeer { sim, addr, cancel })
    }

    /// The address to give the AMI client.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The flags that point an `api-server` process at this peer (the default user), with the
    /// short PBX timings the tests use: `FullyBooted` awaited and the link's grace 300 ms each.
    pub fn server_args(&self) -> Vec<String> {
        let config = PeerConfig::default();
        [
            "--ami",
            &self.addr.to_string(),
            "--ami-user",
            &config.username,
            "--ami-secret",
            &config.secret,
            "--fully-booted-wait",
            "300ms",
            "--pbx-grace",
            "300ms",
        ]
        .map(str::to_owned)
        .into()
    }

    /// The simulator itself, for hooks this wrapper does not spell out.
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// Stops the peer now (dropping it does the same).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Sets an extension's state code: the next `ExtensionStateList` reports it, and every
    /// session with `call` events gets `ExtensionStatus` (then `DeviceStateChange` when the
    /// hint's phone changes), as in `e_device_states`. Any code is reported as given. An
    /// unknown extension gets a new hint `Custom:<exten>` in context `agents`, announced at
    /// once. Setting the current state again sends nothing, as Asterisk does.
    pub fn set_state(&self, exten: &str, code: i32) {
        self.sim.set_extension_state(exten, state(code));
    }

    /// Changes only what the next list reports, with no event: a change that happened while
    /// the client was disconnected.
    pub fn set_state_silently(&self, exten: &str, code: i32) {
        self.sim.set_extension_state_silently(exten, state(code));
    }

    /// Replaces every hint, silently, with `Custom:<exten>` hints in context `agents`, in the
    /// order given.
    pub fn replace_hints(&self, hints: &[(&str, i32)]) {
        let hints: Vec<(&str, ExtensionState)> =
            hints.iter().map(|(e, c)| (*e, state(*c))).collect();
        self.sim.replace_hints(&hints);
    }

    /// Adds a hint `Custom:<context>-<exten>` for `exten` in another dialplan context (as a
    /// second tenant of a shared PBX would have), in state `code`. It shows in the next list,
    /// after the existing hints.
    pub fn add_hint_in_context(&self, exten: &str, context: &str, code: i32) {
        let device = format!("Custom:{context}-{exten}");
        self.sim.add_hint(exten, context, &device, state(code));
    }

    /// Removes a hint. Asterisk sends no event for this; the extension just disappears from
    /// the next list.
    pub fn remove_hint(&self, exten: &str) {
        self.sim.remove_hint(exten);
    }

    /// Sends an `ExtensionStatus` event without changing what the list reports: a stray or
    /// repeated event.
    pub fn emit_status_event(&self, exten: &str, code: i32) {
        self.sim.emit_extension_status(exten, state(code));
    }

    /// Writes raw bytes to every logged-in session, whatever its event mask.
    pub fn emit_raw(&self, bytes: &[u8]) {
        self.sim.emit_raw(bytes);
    }

    /// Makes the next `ExtensionStateList` start with this change: its event goes out just
    /// before the list answer, and the list already shows the new state.
    pub fn queue_event_before_next_list(&self, exten: &str, code: i32) {
        self.sim.cue_before_next_list(exten, state(code));
    }

    /// Mangles the next `ExtensionStateList` answer (see [`ami_sim::ListFault`]).
    pub fn fault_next_list(&self, fault: ami_sim::ListFault) {
        self.sim.fault_next_list(fault);
    }

    /// Makes this change happen right after the next `ExtensionStateList` answer: the list
    /// shows the old state and the event follows the list.
    pub fn queue_event_after_next_list(&self, exten: &str, code: i32) {
        self.sim.cue_after_next_list(exten, state(code));
    }

    /// Closes every connection now, between packets.
    pub fn drop_connections(&self) {
        self.sim.inject(Fault::Close);
    }

    /// Closes every connection in the middle of a packet: each gets the first half of an
    /// `ExtensionStatus` event, then the socket closes.
    pub fn drop_connections_mid_packet(&self) {
        self.sim.inject(Fault::CloseMidPacket);
    }

    /// While true, new connections are accepted and closed at once, before the banner.
    pub fn refuse_connections(&self, refuse: bool) {
        self.sim.refuse_connections(refuse);
    }

    /// While true the peer writes nothing at all (no banner, no answer, no event), as over a
    /// dead network path; requests are still read and recorded, and stay unanswered.
    pub fn go_silent(&self, silent: bool) {
        self.sim.go_silent(silent);
    }

    /// Successful logins so far, over all connections.
    pub fn logins(&self) -> usize {
        self.sim.logins()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.sim.connections()
    }

    /// The number of connections open after every open and close so far, with when, in order.
    pub fn connection_history(&self) -> Vec<(std::time::Instant, usize)> {
        self.sim.connection_history()
    }

    /// Waits until at least `n` logins have succeeded. It has no deadline of its own: wrap it
    /// in the test's timeout.
    pub async fn wait_for_login(&self, n: usize) {
        self.sim.wait_for_login(n).await;
    }

    /// The `Action` names received so far, over all connections, in arrival order.
    pub fn actions_received(&self) -> Vec<String> {
        self.sim.actions_received()
    }

    /// Waits until `action` (compared without regard to case) has been received at least `n`
    /// times. No deadline of its own.
    pub async fn wait_for_action(&self, action: &str, n: usize) {
        self.sim.wait_for_action(action, n).await;
    }

    /// What the next `ExtensionStateList` would report, in list order.
    pub fn states(&self) -> Vec<(String, i32)> {
        self.sim
            .extension_states()
            .into_iter()
            .map(|(e, s)| (e, s.code()))
            .collect()
    }

    // Call center: thin wrappers over the simulator's hooks in the captures' vocabulary
    // (member `Local/<exten>@agents-ring`, state interface `Custom:<exten>`). `silent: true`
    // is a change made while the link was down: only the next list shows it.

    /// Adds agent `exten` (member name `name`) to `queue`, as `QueueAdd` does. False when it
    /// is a member already.
    pub fn add_member(&self, queue: &str, exten: &str, name: &str, silent: bool) -> bool {
        let member = ami_sim::SimMember::agent(queue, exten, name);
        self.sim.add_queue_member(&member, delivery(silent)).is_ok()
    }

    /// Removes agent `exten` from `queue` (`QueueMemberRemoved`). False when not a member.
    pub fn remove_member(&self, queue: &str, exten: &str, silent: bool) -> bool {
        let interface = format!("Local/{exten}@agents-ring");
        self.sim
            .remove_queue_member(queue, &interface, delivery(silent))
            .is_ok()
    }

    /// Pauses agent `exten` in every queue with `reason` (`Some("Lunch")`), or resumes it
    /// (`None`): `QueueMemberPause` per queue. False when it is in no queue.
    pub fn pause(&self, exten: &str, reason: Option<&str>, silent: bool) -> bool {
        let interface = format!("Local/{exten}@agents-ring");
        self.sim
            .pause_queue_member(
                &interface,
                None,
                reason.is_some(),
                reason.unwrap_or(""),
                delivery(silent),
            )
            .is_ok()
    }

    /// Pauses agent `exten` in every queue with `reason`, as if the pause had begun at `since`
    /// (epoch seconds; the PBX's `LastPause`). False when it is in no queue.
    pub fn pause_since(&self, exten: &str, reason: &str, since: u64, silent: bool) -> bool {
        let interface = format!("Local/{exten}@agents-ring");
        self.sim
            .pause_queue_member_since(&interface, None, reason, since, delivery(silent))
            .is_ok()
    }

    /// Adds the presence provider `CustomPresence:<exten>` to the hint of `exten`, silently
    /// (as a dialplan reload does): the next list, or the next state event, shows it.
    pub fn add_presence_to_hint(&self, exten: &str) -> bool {
        self.sim
            .add_presence_to_hint(exten, &format!("CustomPresence:{exten}"))
    }

    /// From now on the PBX answers `action` with `refusal` (Asterisk's exact error), or runs it
    /// again with `None`.
    pub fn refuse_action(&self, action: &str, refusal: Option<ami_sim::Refusal>) {
        self.sim.refuse_action(action, refusal);
    }

    /// Writes `CustomPresence:<exten>` (`state` as `away`, `dnd`...; `PresenceStateChange`).
    pub fn set_presence(&self, exten: &str, state: &str, message: &str, silent: bool) -> bool {
        let provider = format!("CustomPresence:{exten}");
        self.sim
            .set_presence(&provider, state, "", message, delivery(silent))
    }

    /// A customer call from `number` enters `queue`; returns its id for [`AmiPeer::call_step`].
    pub fn queued_call(&self, queue: &str, number: &str, name: &str, silent: bool) -> u64 {
        self.sim.queue_call(queue, number, name, delivery(silent))
    }

    /// Moves a queued call one step (ring `Local/<exten>@agents-ring`, answer, hang up,
    /// abandon...). False when the call cannot take that step.
    pub fn call_step(&self, call: u64, step: ami_sim::CallStep, silent: bool) -> bool {
        self.sim
            .queue_call_step(call, step, delivery(silent))
            .is_ok()
    }
}

fn delivery(silent: bool) -> ami_sim::Delivery {
    if silent {
        ami_sim::Delivery::Silently
    } else {
        ami_sim::Delivery::Events
    }
}

#[cfg(test)]
mod tests {
    use ami_proto::{Action, Decoder, Frame, Packet, Secret};
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const A_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/a_login_ping_logoff.sent.ami");
    const B_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/b_login_failure.sent.ami");
    const D_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/d_state_lists.sent.ami");
    const D_RECV: &[u8] = include_bytes!("../../fixtures/ami/real/d_state_lists.recv.ami");
    const E_RECV: &[u8] = include_bytes!("../../fixtures/ami/real/e_device_states.recv.ami");

    async fn transcript(peer: &AmiPeer, sent: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(peer.addr()).await.expect("connect");
        stream.write_all(sent).await.expect("send");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.expect("read");
        got
    }

    /// The bytes of `text` from the first occurrence of `from` through the next blank line
    /// after the first occurrence of `to`.
    fn section<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
        let start = text.find(from).expect("start marker");
        let end = start + text[start..].find(to).expect("end marker");
        let end = end + text[end..].find("\r\n\r\n").expect("packet end") + 4;
        &text[start..end]
    }

    #[tokio::test]
    async fn the_captured_list_and_a_journal_of_logins_and_actions() {
        let peer = AmiPeer::start(PeerConfig::default()).await;
        // The failed login is answered at once, and the socket closed.
        let got = transcript(&peer, B_SENT).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "Asterisk Call Manager/9.0.0\r\nResponse: Error\r\nActionID: b-1\r\nMessage: Authentication failed\r\n\r\n"
        );
        transcript(&peer, A_SENT).await;
        // The peer starts on the hints of `d_state_lists`: its list is the captured one.
        let got = transcript(&peer, D_SENT).await;
        let got = String::from_utf8(got).expect("ASCII");
        let want = std::str::from_utf8(D_RECV).expect("ASCII");
        let list = |text| section(text, "Response: Success\r\nActionID: d-2", "ListItems: 11");
        assert_eq!(list(&got), list(want));
        assert_eq!(peer.logins(), 2, "a and d logged in, b did not");
        assert_eq!(
            peer.actions_received(),
            [
                "Login",
                "Login",
                "Ping",
                "Logoff",
                "Login",
                "ExtensionStateList",
                "DeviceStateList",
                "Logoff"
            ]
        );
    }

    #[tokio::test]
    async fn call_center_hooks_reach_the_wire() {
        let peer = AmiPeer::start(PeerConfig::default()).await;
        // Made while the link was down: only the list shows it.
        assert!(peer.add_member("sales", "1001", "Alice", true));
        assert!(peer.pause("1001", Some("Lunch"), true));
        assert!(!peer.add_member("sales", "1001", "Alice", true));
        let mut c = Client::login(&peer, "call,agent").await;
        c.send("Action: QueueStatus\r\nActionID: q\r\n\r\n").await;
        assert_eq!(
            c.packet().await.get("Message").as_deref(),
            Some("Queue status will follow")
        );
        assert_eq!(c.packet().await.get("Queue").as_deref(), Some("sales"));
        let member = c.packet().await;
        assert_eq!(member.get("Name").as_deref(), Some("Alice"));
        assert_eq!(member.get("PausedReason").as_deref(), Some("Lunch"));
        assert_eq!(c.packet().await.get("ListItems").as_deref(), Some("2"));
        // Live: resuming sends the pause device and QueueMemberPause.
        assert!(peer.pause("1001", None, false));
        assert_eq!(
            c.packet().await.get("Device").as_deref(),
            Some("Queue:sales_pause_Local/1001@agents-ring")
        );
        let pause = c.packet().await;
        assert_eq!(pause.get("Event").as_deref(), Some("QueueMemberPause"));
        assert_eq!(pause.get("Paused").as_deref(), Some("0"));
        // Someone can take calls again.
        let avail = c.packet().await;
        assert_eq!(avail.get("Device").as_deref(), Some("Queue:sales_avail"));
        assert_eq!(avail.get("State").as_deref(), Some("NOT_INUSE"));
        // A queued call rings Alice: her phone follows.
        let call = peer.queued_call("sales", "5559876", "Customer 5559876", false);
        assert_eq!(c.packet().await.get("Event").as_deref(), Some("Newchannel"));
        assert_eq!(
            c.packet().await.get("Event").as_deref(),
            Some("QueueCallerJoin")
        );
        let ring = ami_sim::CallStep::Ring("Local/1001@agents-ring".into());
        assert!(peer.call_step(call, ring, false));
        assert!(
            !peer.call_step(call, ami_sim::CallStep::HangUp, false),
            "not connected yet"
        );
        assert!(peer.call_step(call, ami_sim::CallStep::Answer, false));
        assert!(peer.call_step(call, ami_sim::CallStep::HangUp, false));
        assert_eq!(
            peer.states()[5],
            ("1001".to_owned(), 0),
            "idle after the call"
        );
        assert!(peer.set_presence("1001", "away", "Back at 14:00", false));
    }

    /// A client that reads packets with ami-proto's decoder.
    struct Client {
        stream: TcpStream,
        buf: BytesMut,
        decoder: Decoder,
    }

    impl Client {
        async fn login(peer: &AmiPeer, events: &str) -> Client {
            let mut c = Client {
                stream: TcpStream::connect(peer.addr()).await.expect("connect"),
                buf: BytesMut::new(),
                decoder: Decoder::new(),
            };
            c.send(&format!(
                "Action: Login\r\nActionID: 1\r\nUsername: monitor\r\nSecret: monitorpass\r\nEvents: {events}\r\n\r\n"
            ))
            .await;
            assert!(matches!(c.frame().await, Some(Frame::Banner(_))));
            let p = c.packet().await;
            assert_eq!(p.get("Message").as_deref(), Some("Authentication accepted"));
            c
        }

        async fn send(&mut self, text: &str) {
            self.stream.write_all(text.as_bytes()).await.expect("send");
        }

        /// The next frame, or `None` at a clean end of stream.
        async fn frame(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.decoder.decode(&mut self.buf).expect("well-formed") {
                    return Some(f);
                }
                if self.stream.read_buf(&mut self.buf).await.expect("read") == 0 {
                    return self.decoder.decode_eof(&mut self.buf).expect("clean end");
                }
            }
        }

        async fn packet(&mut self) -> Packet {
            match self.frame().await {
                Some(Frame::Packet(p)) => p,
                other => panic!("expected a packet, got {other:?}"),
            }
        }

        /// Reads a whole `ExtensionStateList` answer (after sending the request).
        async fn list(&mut self, id: &str) -> Vec<(String, i32)> {
            self.send(&format!(
                "Action: ExtensionStateList\r\nActionID: {id}\r\n\r\n"
            ))
            .await;
            let start = self.packet().await;
            assert!(start.has("EventList", "start"), "{start:?}");
            let mut items = Vec::new();
            loop {
                let p = self.packet().await;
                assert_eq!(p.action_id().as_deref(), Some(id));
                if p.has("EventList", "Complete") {
                    assert_eq!(
                        p.get("ListItems").as_deref(),
                        Some(&*items.len().to_string())
                    );
                    return items;
                }
                let code = p.get("Status").expect("Status").parse().expect("number");
                items.push((p.get("Exten").expect("Exten").into_owned(), code));
            }
        }
    }

    fn e_packets() -> Vec<String> {
        let text = std::str::from_utf8(E_RECV).expect("ASCII");
        text.split_inclusive("\r\n\r\n")
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn state_changes_with_and_without_events() {
        let peer = AmiPeer::start(PeerConfig::default()).await;
        let mut c = Client::login(&peer, "on").await;
        assert_eq!(c.packet().await.name().as_deref(), Some("FullyBooted"));
        assert_eq!(c.packet().await.name().as_deref(), Some("SuccessfulAuth"));
        let initial = c.list("l1").await;
        assert_eq!(initial.len(), 11);
        assert_eq!(initial[0], ("1010".to_owned(), 0));

        // 1001 goes from InUse (1) to InUse&Ringing (9): the very bytes of capture e, step e-7.
        peer.set_state("1001", 9);
        let e = e_packets();
        let want_status = e
            .iter()
            .find(|p| {
                p.contains("Privilege: call,all")
                    && p.contains("Status: 9\r\n")
                    && p.contains("Exten: 1001")
            })
            .expect("captured");
        let want_device = e
            .iter()
            .find(|p| p.contains("Device: Custom:1001\r\nState: RINGINUSE"))
            .expect("captured");
        assert_eq!(c.packet().await.as_bytes(), want_status.as_bytes());
        assert_eq!(c.packet().await.as_bytes(), want_device.as_bytes());

        // The same state again: no event. A silent change: no event either, but the list
        // shows it; the next packet is the list answer.
        peer.set_state("1001", 9);
        peer.set_state_silently("1002", 4);
        peer.remove_hint("1099");
        let list = c.list("l2").await;
        assert!(list.contains(&("1001".to_owned(), 9)));
        assert!(list.contains(&("1002".to_owned(), 4)));
        assert!(!list.iter().any(|(e, _)| e == "1099"));
        assert_eq!(peer.states(), list);

        // A new extension is announced and listed at the end.
        peer.set_state("2001", 16);
        let p = c.packet().await;
        assert_eq!(p.get("Exten").as_deref(), Some("2001"));
        assert_eq!(p.get("Hint").as_deref(), Some("Custom:2001"));
        assert_eq!(p.get("StatusText").as_deref(), Some("Hold"));
        assert_eq!(c.packet().await.get("State").as_deref(), Some("ONHOLD"));

        // A stray event and raw bytes reach the client; the list is untouched.
        peer.emit_status_event("1003", 0);
        let p = c.packet().await;
        assert_eq!(
            (p.get("Exten").as_deref(), p.get("Status").as_deref()),
            (Some("1003"), Some("0"))
        );
        peer.emit_raw(
            b"Event: Reload\r\nPrivilege: system,all\r\nModule: All\r\nStatus: 0\r\n\r\n",
        );
        assert_eq!(c.packet().await.name().as_deref(), Some("Reload"));
        assert!(peer.states().contains(&("1003".to_owned(), 16)));
    }

    #[tokio::test]
    async fn events_around_the_list_keep_wire_order() {
        let peer = AmiPeer::start(PeerConfig::default()).await;
        let mut c = Client::login(&peer, "call").await;
        peer.queue_event_before_next_list("1004", 0);
        peer.queue_event_after_next_list("1005", 8);
        c.send("Action: ExtensionStateList\r\nActionID: x\r\n\r\n")
            .await;
        // Before: the event, then a list that shows it.
        let p = c.packet().await;
        assert_eq!(
            (p.get("Exten").as_deref(), p.get("Status").as_deref()),
            (Some("1004"), Some("0"))
        );
        assert_eq!(
            c.packet().await.get("Device").as_deref(),
            Some("Custom:1004")
        );
        let mut items = Vec::new();
        loop {
            let p = c.packet().await;
            if p.name().as_deref() == Some("ExtensionStatus") {
                items.push((
                    p.get("Exten").expect("Exten").into_owned(),
                    p.get("Status").expect("Status").into_owned(),
                ));
            }
            if p.has("EventList", "Complete") {
                break;
            }
        }
        assert!(items.contains(&("1004".into(), "0".into())));
        assert!(
            items.contains(&("1005".into(), "4".into())),
            "the list shows the old state"
        );
        // After: the event follows the list.
        let p = c.packet().await;
        assert!(p.action_id().is_none());
        assert_eq!(
            (p.get("Exten").as_deref(), p.get("Status").as_deref()),
            (Some("1005"), Some("8"))
        );
    }

    #[tokio::test]
    async fn connection_faults() {
        let peer = AmiPeer::start(PeerConfig {
            send_fully_booted: false,
            ..PeerConfig::default()
        })
        .await;
        let mut c = Client::login(&peer, "on").await;
        // Without `system` rights there is no FullyBooted: the next packet answers the Ping.
        c.send("Action: Ping\r\nActionID: p1\r\n\r\n").await;
        assert_eq!(c.packet().await.action_id().as_deref(), Some("p1"));

        // Silent: the first Ping stays unanswered; after waking, the second one is answered.
        peer.go_silent(true);
        c.send("Action: Ping\r\nActionID: p2\r\n\r\n").await;
        peer.wait_for_action("ping", 2).await;
        peer.go_silent(false);
        c.send("Action: Ping\r\nActionID: p3\r\n\r\n").await;
        assert_eq!(c.packet().await.action_id().as_deref(), Some("p3"));

        // A clean drop: end of stream on a packet boundary.
        peer.drop_connections();
        assert!(c.frame().await.is_none());

        // A drop in the middle of a packet: the stream ends inside one.
        let mut c = Client::login(&peer, "on").await;
        peer.drop_connections_mid_packet();
        let mut rest = Vec::new();
        c.stream.read_to_end(&mut rest).await.expect("read");
        c.buf.extend_from_slice(&rest);
        assert!(
            c.decoder
                .decode(&mut c.buf)
                .expect("no error yet")
                .is_none()
        );
        let err = c.decoder.decode_eof(&mut c.buf).expect_err("truncated");
        assert!(err.is_end_of_stream(), "{err}");

        // Refused: the connection closes before the banner.
        peer.refuse_connections(true);
        let got = transcript(&peer, b"").await;
        assert!(got.is_empty());
        peer.refuse_connections(false);
        peer.wait_for_login(2).await;
        assert_eq!(peer.logins(), 2);

        // Before login only Login, Challenge and Logoff are allowed.
        let got = transcript(
            &peer,
            b"Action: Ping\r\nActionID: 9\r\n\r\nAction: Logoff\r\n\r\n",
        )
        .await;
        assert!(
            String::from_utf8_lossy(&got).contains("ActionID: 9\r\nMessage: Permission denied\r\n")
        );

        // Dropping the peer closes its connections.
        let mut c = Client::login(&peer, "off").await;
        drop(peer);
        assert!(c.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_plain_login_fails_when_md5_is_required() {
        let peer = AmiPeer::start(PeerConfig {
            md5: true,
            ..PeerConfig::default()
        })
        .await;
        let got = transcript(&peer, A_SENT).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "Asterisk Call Manager/9.0.0\r\nResponse: Error\r\nActionID: a-1\r\nMessage: Authentication failed\r\n\r\n"
        );
        // The MD5 challenge login works, with the key computed by ami-proto's encoder.
        let mut stream = TcpStream::connect(peer.addr()).await.expect("connect");
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let challenge = Action::challenge_md5().to_bytes().expect("encodes");
        stream.write_all(&challenge).await.expect("send");
        let mut packets = Vec::new();
        while packets.is_empty() {
            stream.read_buf(&mut buf).await.expect("read");
            while let Some(frame) = decoder.decode(&mut buf).expect("well-formed") {
                if let Frame::Packet(p) = frame {
                    packets.push(p);
                }
            }
        }
        let challenge = packets[0]
            .get("Challenge")
            .expect("a challenge")
            .into_owned();
        let login = Action::login_md5("monitor", &challenge, &Secret::new("monitorpass"));
        stream
            .write_all(&login.to_bytes().expect("encodes"))
            .await
            .expect("send");
        while packets.len() < 2 {
            stream.read_buf(&mut buf).await.expect("read");
            while let Some(Frame::Packet(p)) = decoder.decode(&mut buf).expect("well-formed") {
                packets.push(p);
            }
        }
        assert_eq!(
            packets[1].get("Message").as_deref(),
            Some("Authentication accepted")
        );
        assert_eq!(peer.logins(), 1);
    }

    /// The simulator plays the PBX with its own copy of Asterisk's state tables; the board
    /// reads them with `domain`'s. Both must agree on every number and string.
    #[test]
    fn the_simulator_and_the_domain_agree_on_asterisk_states() {
        for code in -3..=20 {
            let sim = ami_sim::ExtensionState::from_code(code);
            let dom = domain::ExtensionState::from_code(code);
            assert_eq!(
                sim.status_text(),
                dom.status_text(),
                "status text of {code}"
            );
            assert_eq!(
                sim.device_state().as_str(),
                dom.device_state().as_str(),
                "device state of {code}"
            );
        }
        for sim in ami_sim::DeviceState::ALL {
            let dom = domain::DeviceState::from_number(sim.number()).expect("same numbers");
            assert_eq!(sim.as_str(), dom.as_str());
            assert_eq!(
                sim.to_extension_state().code(),
                dom.to_extension_state().code(),
                "{sim}"
            );
            assert_eq!(ami_sim::DeviceState::parse_lenient(dom.as_str()), sim);
        }
    }
}
