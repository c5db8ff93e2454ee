//! One simulated AMI session: banner, login window, actions, and live events, on one socket.
//!
//! Like Asterisk's session thread, it writes queued events before it handles each request and
//! right after each answer, so an answer and the list items it writes are contiguous on the
//! wire, and events can arrive before or after them but never inside.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ami_proto::{DecodeError, Decoder, Frame, Packet};
use bytes::BytesMut;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::states::{DeviceState, ExtensionState};
use crate::wire::{self, Hinted};
use crate::{Audience, Emitted, Fault, Shared};

/// Asterisk reads at most 128 header lines of at most 1024 bytes per request.
const MAX_REQUEST: usize = 128 * 1026;

/// How long a session may take to say goodbye once the simulator shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Event classes, with Asterisk's bit numbers (`EVENT_FLAG_*` in `manager.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mask(u32);

impl Mask {
    const SYSTEM: u32 = 1 << 0;
    const CALL: u32 = 1 << 1;
    pub(crate) const AGENT: u32 = 1 << 5;
    const SECURITY: u32 = 1 << 18;
    const ALL: Mask = Mask(u32::MAX);
    const NONE: Mask = Mask(0);
    /// Every class name Asterisk knows, with its bit.
    const NAMES: [(&'static str, u32); 19] = [
        ("system", 1 << 0),
        ("call", 1 << 1),
        ("log", 1 << 2),
        ("verbose", 1 << 3),
        ("command", 1 << 4),
        ("agent", 1 << 5),
        ("user", 1 << 6),
        ("config", 1 << 7),
        ("dtmf", 1 << 8),
        ("reporting", 1 << 9),
        ("cdr", 1 << 10),
        ("dialplan", 1 << 11),
        ("originate", 1 << 12),
        ("agi", 1 << 13),
        ("cc", 1 << 15),
        ("aoc", 1 << 16),
        ("test", 1 << 17),
        ("security", 1 << 18),
        ("message", 1 << 19),
    ];

    pub(crate) fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// The classes both masks allow.
    fn and(self, other: Mask) -> Mask {
        Mask(self.0 & other.0)
    }

    /// Reads an `Events:` / `EventMask:` value the way `strings_to_mask()` does: all digits is
    /// a raw bit mask (so `1` is `system` only), then the false words, then the true words,
    /// then a comma list of lower-case class names. `None` for an empty value.
    pub(crate) fn parse(value: &str) -> Option<Mask> {
        let v = value.trim();
        if v.is_empty() {
            return None;
        }
        if v.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Mask(v.parse().unwrap_or(u32::MAX)));
        }
        let word = v.to_ascii_lowercase();
        if ["no", "false", "n", "f", "0", "off"].contains(&word.as_str()) {
            return Some(Mask::NONE);
        }
        if ["yes", "true", "y", "t", "1", "on"].contains(&word.as_str()) {
            return Some(Mask::ALL);
        }
        // Class names are compared case-sensitively, as `ast_instring()` does.
        let words: Vec<&str> = v.split(',').map(str::trim).collect();
        if words.contains(&"all") {
            return Some(Mask::ALL);
        }
        let bits = Mask::NAMES
            .iter()
            .filter(|(name, _)| words.contains(name))
            .fold(0, |acc, (_, bit)| acc | bit);
        Some(Mask(bits))
    }
}

/// What the caller does after a request.
enum Flow {
    Continue,
    /// Write what is queued, then close the socket.
    Close,
    /// Wait the configured delay, answer `Authentication failed`, then close.
    AuthFailed(Option<String>),
}

struct Session {
    shared: Arc<Shared>,
    out: BufWriter<OwnedWriteHalf>,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    authenticated: bool,
    challenge: Option<String>,
    mask: Mask,
    events: Option<broadcast::Receiver<Arc<Emitted>>>,
    faults: broadcast::Receiver<Fault>,
    /// An event taken off the channel that belongs after the list being written.
    held: Option<Arc<Emitted>>,
    /// The board counter a list in `reply` reflects: events up to it go before the list.
    snapshot_seq: Option<u64>,
    /// Scratch buffer for answers.
    reply: Vec<u8>,
    /// The rest of a held list (`ListFault::Hold`), written after the answer that started it.
    tail_next: Option<Vec<u8>>,
    /// The rest of a held list, written after the next event this session writes.
    list_tail: Option<Vec<u8>>,
    /// The action of the request being answered, recorded once its answer is written (or
    /// dropped, while silent), so a test that waits for it sees its answer settled.
    received: Option<String>,
}

/// Runs one session until the client logs off or disconnects, or `cancel` fires.
pub(crate) async fn run(shared: Arc<Shared>, stream: TcpStream, cancel: CancellationToken) {
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (l, r),
        _ => return,
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    shared.connection_opened();
    let mut session = Session {
        faults: shared.faults(),
        shared,
        out: BufWriter::new(wr),
        local,
        remote,
        authenticated: false,
        challenge: None,
        mask: Mask::NONE,
        events: None,
        held: None,
        snapshot_seq: None,
        received: None,
        reply: Vec::with_capacity(4096),
        tail_next: None,
        list_tail: None,
    };
    // On shutdown a session has a moment to write `Shutdown`; one whose client stopped
    // reading would otherwise block in a write forever and hold up the server's exit.
    let grace = async {
        cancel.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = session.serve(&mut rd, &cancel) => match result {
            Ok(()) => tracing::debug!(peer = %remote, "ami-sim: session closed"),
            Err(e) => tracing::debug!(peer = %remote, error = %e, "ami-sim: session ended"),
        },
        () = grace => tracing::debug!(peer = %remote, "ami-sim: session dropped at shutdown"),
    }
    let _ = session.out.shutdown().await;
    session.shared.connection_closed();
}

impl Session {
    async fn serve(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        cancel: &CancellationToken,
    ) -> io::Result<()> {
        self.put(wire::BANNER).await?;
        self.out.flush().await?;
        let mut decoder = Decoder::with_max_packet_size(MAX_REQUEST);
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    if self.authenticated && self.mask.has(Mask::SYSTEM) {
                        self.drain_events(None).await?;
                        wire::shutdown(&mut self.reply);
                        self.write_reply().await?;
                    }
                    return self.out.flush().await;
                }
                fault = self.faults.recv() => {
                    let fault = match fault {
                        Ok(f) => f,
                        // Faults are rare; a missed one still means "close".
                        Err(broadcast::error::RecvError::Lagged(_)) => Fault::Close,
                        Err(broadcast::error::RecvError::Closed) => return self.out.flush().await,
                    };
                    // What happened before the fault still goes out first.
                    self.drain_events(None).await?;
                    if fault == Fault::CloseMidPacket {
                        let mut partial = Vec::new();
                        if let Some(agent) = self.shared.board().agents.first() {
                            crate::status_event(&mut partial, agent);
                        }
                        partial.truncate(partial.len() / 2);
                        self.put(&partial).await?;
                    }
                    return self.out.flush().await;
                }
                event = next_event(&mut self.events) => {
                    match event {
                        Ok(e) => self.write_event(&e).await?,
                        Err(broadcast::error::RecvError::Closed) => self.events = None,
                        Err(broadcast::error::RecvError::Lagged(n)) => return Err(lagged(n)),
                    }
                    self.drain_events(None).await?;
                    self.out.flush().await?;
                }
                read = rd.read_buf(&mut buf) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    loop {
                        let flow = match decoder.decode(&mut buf) {
                            Ok(None) => break,
                            Ok(Some(Frame::Packet(request))) => {
                                // Queued events go out before the next request is handled.
                                self.drain_events(None).await?;
                                self.handle(&request)
                            }
                            // A client never sends a banner; a line that looks like one is a
                            // line without a colon, so the request has no action.
                            Ok(Some(Frame::Banner(_))) => {
                                wire::error(&mut self.reply, None, "Missing action in request");
                                Flow::Continue
                            }
                            Err(e) => self.decode_error(&e),
                        };
                        match flow {
                            Flow::Continue => {}
                            Flow::Close => {
                                self.write_reply().await?;
                                self.record_received();
                                return self.out.flush().await;
                            }
                            Flow::AuthFailed(action_id) => {
                                self.record_received();
                                self.out.flush().await?;
                                tokio::select! {
                                    () = cancel.cancelled() => return Ok(()),
                                    () = tokio::time::sleep(self.shared.auth_failure_delay) => {}
                                }
                                wire::error(
                                    &mut self.reply,
                                    action_id.as_deref(),
                                    "Authentication failed",
                                );
                                self.write_reply().await?;
                                return self.out.flush().await;
                            }
                        }
                        // Events of changes the list already reflects go before it.
                        if let Some(seq) = self.snapshot_seq.take() {
                            self.drain_events(Some(seq)).await?;
                        }
                        self.write_reply().await?;
                        if let Some(tail) = self.tail_next.take() {
                            self.list_tail = Some(tail);
                        }
                        self.record_received();
                        // Events caused by the answer (Setvar) and newer ones follow it at once.
                        self.drain_events(None).await?;
                    }
                    self.out.flush().await?;
                }
            }
        }
    }

    fn decode_error(&mut self, e: &DecodeError) -> Flow {
        let message = match e {
            DecodeError::PacketTooLarge { .. } => "Failed to parse message: line too long",
            _ => "Missing action in request",
        };
        wire::error(&mut self.reply, None, message);
        Flow::Continue
    }

    fn record_received(&mut self) {
        if let Some(action) = self.received.take() {
            self.shared.record_action(&action);
        }
    }

    /// Writes bytes unless the PBX has gone silent, in which case they are lost.
    async fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() || self.shared.is_silent() {
            return Ok(());
        }
        self.out.write_all(bytes).await
    }

    async fn write_reply(&mut self) -> io::Result<()> {
        let reply = std::mem::take(&mut self.reply);
        self.put(&reply).await?;
        self.reply = reply;
        self.reply.clear();
        Ok(())
    }

    /// Writes an event if the session's mask lets it through.
    async fn write_event(&mut self, event: &Emitted) -> io::Result<()> {
        let wanted = match event.audience {
            Audience::CallReaders => self.mask.has(Mask::CALL),
            Audience::AgentReaders => self.mask.has(Mask::AGENT),
            Audience::Everyone => true,
        };
        if wanted {
            self.put(&event.bytes).await?;
            if let Some(tail) = self.list_tail.take() {
                self.put(&tail).await?;
            }
        }
        Ok(())
    }

    /// Writes the events already on the channel. With `upto`, stops before the first event
    /// newer than that board counter and keeps it for the next call.
    async fn drain_events(&mut self, upto: Option<u64>) -> io::Result<()> {
        loop {
            let event = match self.held.take() {
                Some(e) => e,
                None => {
                    let Some(rx) = self.events.as_mut() else {
                        return Ok(());
                    };
                    match rx.try_recv() {
                        Ok(e) => e,
                        Err(TryRecvError::Empty) => return Ok(()),
                        Err(TryRecvError::Closed) => {
                            self.events = None;
                            return Ok(());
                        }
                        Err(TryRecvError::Lagged(n)) => return Err(lagged(n)),
                    }
                }
            };
            if upto.is_some_and(|limit| event.seq > limit) {
                self.held = Some(event);
                return Ok(());
            }
            self.write_event(&event).await?;
        }
    }

    /// Answers one request into `self.reply`.
    fn handle(&mut self, request: &Packet) -> Flow {
        // Asterisk echoes the first ActionID without its leading blanks, and none when empty.
        let action_id = request
            .get("ActionID")
            .map(|v| v.trim_start().to_owned())
            .filter(|v| !v.is_empty());
        let id = action_id.as_deref();
        let action = request
            .get("Action")
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        self.received = Some(action.clone());
        if action.is_empty() {
            wire::error(&mut self.reply, id, "Missing action in request");
            return Flow::Continue;
        }
        let lower = action.to_ascii_lowercase();
        let open = matches!(lower.as_str(), "login" | "challenge" | "logoff");
        if !self.authenticated && !open {
            wire::error(&mut self.reply, id, "Permission denied");
            return Flow::Continue;
        }
        if !open && let Some(refusal) = self.shared.refusal(&lower) {
            match refusal {
                crate::Refusal::UnknownCommand => {
                    wire::unknown_action(&mut self.reply, id, &action)
                }
                crate::Refusal::PermissionDenied => {
                    wire::error(&mut self.reply, id, "Permission denied");
                }
            }
            return Flow::Continue;
        }
        match lower.as_str() {
            "login" => return self.login(request, action_id),
            "challenge" => self.challenge(request, id),
            "logoff" => {
                wire::goodbye(&mut self.reply, id);
                return Flow::Close;
            }
            "ping" => wire::pong(&mut self.reply, id, SystemTime::now()),
            "events" => self.events_action(request, id),
            "extensionstatelist" => self.extension_list(id),
            "devicestatelist" => self.device_list(id),
            "extensionstate" => self.extension_state(request, id),
            "setvar" => self.setvar(request, id),
            "presencestate" => {
                let provider = request
                    .get("Provider")
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default();
                if provider.is_empty() {
                    wire::error(&mut self.reply, id, "No provider specified");
                } else {
                    let shared = self.shared.clone();
                    crate::center::presence_state_reply(&shared, &provider, id, &mut self.reply);
                }
            }
            "getvar" => self.getvar(request, id),
            _ => {
                let shared = self.shared.clone();
                let before = self.reply.len();
                let seq = crate::center::answer(&shared, &lower, request, id, &mut self.reply);
                if seq.is_some() {
                    self.snapshot_seq = seq;
                } else if self.reply.len() == before {
                    wire::unknown_action(&mut self.reply, id, &action);
                }
            }
        }
        Flow::Continue
    }

    fn login(&mut self, request: &Packet, action_id: Option<String>) -> Flow {
        let id = action_id.as_deref();
        if self.authenticated {
            wire::success(&mut self.reply, id, "Already authenticated");
            return Flow::Continue;
        }
        let user_ok = request
            .get("Username")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case(&self.shared.username));
        let md5 = request
            .get("AuthType")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("md5"));
        let secret_ok = if md5 {
            match (&self.challenge, request.get("Key")) {
                (Some(challenge), Some(key)) => key
                    .trim()
                    .eq_ignore_ascii_case(&ami_proto::md5_key(challenge, &self.shared.secret)),
                _ => false,
            }
        } else {
            self.shared.plain_login
                && request
                    .get("Secret")
                    .is_some_and(|s| s.trim_start() == self.shared.secret.expose())
        };
        if !(user_ok && secret_ok) {
            return Flow::AuthFailed(action_id);
        }
        self.authenticated = true;
        self.mask = request
            .get("Events")
            .and_then(|v| Mask::parse(&v))
            .unwrap_or(Mask::ALL)
            .and(self.shared.read);
        wire::success(&mut self.reply, id, "Authentication accepted");
        if self.mask.has(Mask::SYSTEM) {
            wire::fully_booted(&mut self.reply, self.shared.started.elapsed());
        }
        if self.mask.has(Mask::SECURITY) {
            let info = wire::AuthInfo {
                username: &self.shared.username,
                session_id: self.shared.session_number(),
                local: self.local,
                remote: self.remote,
                now: chrono::Utc::now(),
            };
            wire::successful_auth(&mut self.reply, &info);
        }
        // Every logged-in session listens; the mask filters what it writes.
        self.events = Some(self.shared.subscribe());
        self.shared.record_login();
        Flow::Continue
    }

    fn challenge(&mut self, request: &Packet, id: Option<&str>) {
        let md5 = request
            .get("AuthType")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("md5"));
        if !md5 {
            wire::error(&mut self.reply, id, "Must specify AuthType");
            return;
        }
        // One challenge per session, printed like `ast_random()` with `%ld`.
        let challenge = self
            .challenge
            .get_or_insert_with(|| rand::rng().random_range(0..=0x7fff_ffff_u32).to_string());
        wire::challenge(&mut self.reply, id, challenge);
    }

    fn events_action(&mut self, request: &Packet, id: Option<&str>) {
        match request.get("EventMask").and_then(|v| Mask::parse(&v)) {
            Some(mask) => {
                self.mask = mask.and(self.shared.read);
                wire::events_reply(&mut self.reply, id, mask != Mask::NONE);
            }
            None => wire::error(&mut self.reply, id, "Invalid event mask"),
        }
    }

    /// The list and the board counter it reflects, taken under one lock.
    fn extension_list(&mut self, id: Option<&str>) {
        let shared = self.shared.clone();
        let mut board = shared.board();
        // Changes a script cued for this moment: before the snapshot, then after it.
        shared.apply_cues(&mut board, true);
        let fault = shared.take_list_fault();
        let first = match fault {
            Some(crate::ListFault::Stall { items } | crate::ListFault::Hold { items }) => items,
            Some(crate::ListFault::Short { missing }) => board.agents.len().saturating_sub(missing),
            None => board.agents.len(),
        };
        wire::list_start(&mut self.reply, id, "Extension Statuses will follow");
        let mut tail = Vec::new();
        for (i, agent) in board.agents.iter().enumerate() {
            let hinted = Hinted {
                exten: &agent.extension,
                context: &agent.context,
                hint: &agent.hint,
                state: agent.state,
            };
            if i < first {
                wire::extension_status_item(&mut self.reply, id, &hinted);
            } else if matches!(fault, Some(crate::ListFault::Hold { .. })) {
                wire::extension_status_item(&mut tail, id, &hinted);
            }
        }
        match fault {
            Some(crate::ListFault::Stall { .. }) => {}
            Some(crate::ListFault::Hold { .. }) => {
                let n = board.agents.len();
                wire::list_complete(&mut tail, "ExtensionStateListComplete", id, n);
                self.tail_next = Some(tail);
            }
            _ => wire::list_complete(
                &mut self.reply,
                "ExtensionStateListComplete",
                id,
                board.agents.len(),
            ),
        }
        self.snapshot_seq = Some(board.seq);
        shared.apply_cues(&mut board, false);
    }

    fn device_list(&mut self, id: Option<&str>) {
        let board = self.shared.board();
        wire::list_start(&mut self.reply, id, "Device State Changes will follow");
        // A device held by several hints is still one entry of the device state cache.
        let mut seen = std::collections::HashSet::new();
        let mut items = 0;
        for device in board.agents.iter().flat_map(|a| &a.devices) {
            if seen.insert(device.name.to_ascii_lowercase()) {
                wire::device_state_item(&mut self.reply, id, &device.name, device.state);
                items += 1;
            }
        }
        wire::list_complete(&mut self.reply, "DeviceStateListComplete", id, items);
        self.snapshot_seq = Some(board.seq);
    }

    fn extension_state(&mut self, request: &Packet, id: Option<&str>) {
        let Some(exten) = request
            .get("Exten")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        else {
            wire::error(&mut self.reply, id, "Extension not specified");
            return;
        };
        let context = request
            .get("Context")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let board = self.shared.board();
        let (hint, state) = match board.find(&exten, &context) {
            Some(agent) => (agent.hint.as_str(), agent.state),
            None => ("", ExtensionState::DEACTIVATED),
        };
        let hinted = Hinted {
            exten: &exten,
            context: &context,
            hint,
            state,
        };
        wire::extension_state_reply(&mut self.reply, id, &hinted);
        self.snapshot_seq = Some(board.seq);
    }

    /// `Setvar DEVICE_STATE(Custom:x)` drives the simulated devices, as it drove the real PBX
    /// in the captures; any other variable is accepted and has no effect.
    fn setvar(&mut self, request: &Packet, id: Option<&str>) {
        let Some(variable) = request
            .get("Variable")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        else {
            wire::error(&mut self.reply, id, "No variable specified");
            return;
        };
        let value = request.get("Value").map(|v| v.trim().to_owned());
        if let Some((provider, _)) = crate::center::presence_target(&variable) {
            let shared = self.shared.clone();
            if crate::center::write_presence(&shared, provider, value.as_deref().unwrap_or("")) {
                wire::success(&mut self.reply, id, "Variable Set");
            } else {
                wire::error(&mut self.reply, id, "Variable not set");
            }
            return;
        }
        if let Some(device) = device_state_target(&variable) {
            let state = DeviceState::parse_lenient(value.as_deref().unwrap_or(""));
            // func_devstate writes only Custom: devices and refuses UNKNOWN.
            let custom = device
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("Custom:"));
            if !custom || state == DeviceState::Unknown {
                wire::error(&mut self.reply, id, "Variable not set");
                return;
            }
            self.shared.set_device(device, state);
        }
        wire::success(&mut self.reply, id, "Variable Set");
    }
}

impl Session {
    /// `Getvar` without a channel: `PRESENCE_STATE(<provider>,<field>)` and
    /// `DEVICE_STATE(<device>)` are read from the PBX; other variables are empty. The answer
    /// has `Variable` and `Value` and no `Message`.
    fn getvar(&mut self, request: &Packet, id: Option<&str>) {
        let Some(variable) = request
            .get("Variable")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        else {
            wire::error(&mut self.reply, id, "No variable specified");
            return;
        };
        let value = if let Some((provider, field)) = crate::center::presence_target(&variable) {
            crate::center::presence_field(&self.shared, provider, field)
        } else if let Some(device) = device_state_target(&variable) {
            let board = self.shared.board();
            board
                .agents
                .iter()
                .flat_map(|a| &a.devices)
                .find(|d| d.name.eq_ignore_ascii_case(device))
                .map_or(DeviceState::Unknown, |d| d.state)
                .as_str()
                .to_owned()
        } else {
            String::new()
        };
        let mut p = wire::Packet::response(&mut self.reply, "Success", id);
        p.header("Variable", &variable);
        p.header("Value", &value);
        p.end();
    }
}

/// The device inside `DEVICE_STATE(<device>)`, if that is the variable.
fn device_state_target(variable: &str) -> Option<&str> {
    let open = variable.find('(')?;
    let name = &variable[..open];
    if !name.trim().eq_ignore_ascii_case("DEVICE_STATE") {
        return None;
    }
    variable[open + 1..].strip_suffix(')').map(str::trim)
}

/// The next event, or never when the session does not read events.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<Emitted>>>,
) -> Result<Arc<Emitted>, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn lagged(n: u64) -> io::Error {
    // Asterisk closes a session whose writes stall (writetimeout); the simulator does the same
    // when a client falls so far behind that events would be lost.
    tracing::warn!(missed = n, "ami-sim: client too slow, closing its session");
    io::Error::other(format!("client fell {n} events behind"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_masks_like_strings_to_mask() {
        let rows: &[(&str, Option<Mask>)] = &[
            ("", None),
            ("on", Some(Mask::ALL)),
            ("YES", Some(Mask::ALL)),
            ("off", Some(Mask::NONE)),
            ("false", Some(Mask::NONE)),
            ("1", Some(Mask(1))),
            ("2", Some(Mask(2))),
            ("0", Some(Mask(0))),
            ("call", Some(Mask(Mask::CALL))),
            ("system,call", Some(Mask(Mask::SYSTEM | Mask::CALL))),
            ("CALL", Some(Mask(0))),
            ("all", Some(Mask::ALL)),
            ("security", Some(Mask(Mask::SECURITY))),
        ];
        for (value, want) in rows {
            assert_eq!(Mask::parse(value), *want, "{value:?}");
        }
    }

    #[test]
    fn device_state_variables() {
        let rows = [
            ("DEVICE_STATE(Custom:1001)", Some("Custom:1001")),
            ("device_state(Custom:1099a)", Some("Custom:1099a")),
            ("DEVICE_STATE(Custom:1001", None),
            ("GLOBAL(x)", None),
            ("x", None),
        ];
        for (variable, want) in rows {
            assert_eq!(device_state_target(variable), want, "{variable}");
        }
    }
}
