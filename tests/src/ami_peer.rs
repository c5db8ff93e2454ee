//! A scriptable loopback AMI peer built from the real Asterisk 20.20.1 captures.
//!
//! Every packet it writes is a packet of `fixtures/ami/real/*.recv.ami`, header for header,
//! with only the values that must differ filled in: the client's `ActionID`, the extension
//! fields of status events and list items, the Ping timestamp. The initial hints and their
//! states are those of `d_state_lists` (1001..1010 and 1099 in context `agents`), so a client
//! that logs in and asks for `ExtensionStateList` gets exactly the captured bytes.
//!
//! A test drives it: change states with or without events, emit raw bytes, drop connections
//! (cleanly or in the middle of a packet), refuse new ones, go silent, and wait for logins or
//! actions. It stops when the [`AmiPeer`] is dropped.
//!
//! What it deliberately does not do: `Command`, `Setvar`, queues, presence, and per-user
//! permissions; an action it does not know gets Asterisk's "Invalid/unknown command" answer.
//! A failed login is answered at once, not after Asterisk's one-second pause.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ami_proto::{Decoder, Frame, Packet, Secret};
use bytes::BytesMut;
use domain::{DeviceState, ExtensionState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
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
    /// after a login with events on. When false the peer acts like a user without `system`
    /// read rights, which never gets `FullyBooted`.
    pub send_fully_booted: bool,
}

impl Default for PeerConfig {
    /// The user of the captures: `monitor` / `monitorpass`, plain login, `FullyBooted` sent.
    fn default() -> Self {
        PeerConfig {
            username: "monitor".to_owned(),
            secret: "monitorpass".to_owned(),
            md5: false,
            send_fully_booted: true,
        }
    }
}

/// The capture files, read at compile time so the peer needs nothing at run time.
mod captured {
    pub(super) const A: &[u8] =
        include_bytes!("../../fixtures/ami/real/a_login_ping_logoff.recv.ami");
    pub(super) const B: &[u8] = include_bytes!("../../fixtures/ami/real/b_login_failure.recv.ami");
    pub(super) const C: &[u8] =
        include_bytes!("../../fixtures/ami/real/c_md5_challenge_login.recv.ami");
    pub(super) const D: &[u8] = include_bytes!("../../fixtures/ami/real/d_state_lists.recv.ami");
    pub(super) const E: &[u8] = include_bytes!("../../fixtures/ami/real/e_device_states.recv.ami");
    pub(super) const G: &[u8] = include_bytes!("../../fixtures/ami/real/g_errors.recv.ami");
}

/// One captured packet: its header lines in wire order.
#[derive(Clone, Debug)]
struct Template(Vec<(String, String)>);

impl Template {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Writes the packet with `ActionID` set to `action_id` (dropped when `None`) and the
    /// headers named in `values` replaced; every other byte is the captured one.
    fn render(&self, out: &mut Vec<u8>, action_id: Option<&str>, values: &[(&str, &str)]) {
        for (key, value) in &self.0 {
            let value = if key == "ActionID" {
                match action_id {
                    Some(id) => id,
                    None => continue,
                }
            } else {
                values
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(value.as_str(), |(_, v)| v)
            };
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Splits a `.recv.ami` capture into its banner line and packets.
fn split(capture: &[u8]) -> (Vec<u8>, Vec<Template>) {
    let text = std::str::from_utf8(capture).expect("invariant: the captures are ASCII");
    let (banner, rest) = text
        .split_once("\r\n")
        .expect("invariant: a capture starts with the banner");
    let packets = rest
        .split("\r\n\r\n")
        .filter(|p| !p.is_empty())
        .map(|p| {
            Template(
                p.split("\r\n")
                    .map(|line| {
                        let (k, v) = line
                            .split_once(": ")
                            .expect("invariant: captured header lines have a colon");
                        (k.to_owned(), v.to_owned())
                    })
                    .collect(),
            )
        })
        .collect();
    (format!("{banner}\r\n").into_bytes(), packets)
}

/// The packets the peer writes, each taken from a capture.
struct Templates {
    banner: Vec<u8>,
    login_ok: Template,
    already_authenticated: Template,
    login_failed: Template,
    fully_booted: Template,
    successful_auth: Template,
    challenge: Template,
    pong: Template,
    goodbye: Template,
    permission_denied: Template,
    unknown_action: Template,
    missing_action: Template,
    list_start: Template,
    status_item: Template,
    status_complete: Template,
    device_list_start: Template,
    device_item: Template,
    device_complete: Template,
    status_event: Template,
    device_event: Template,
    extension_state: Template,
    /// The hints of `d_state_lists`, in its (hash) order.
    hints: Vec<Hint>,
    /// The device state cache of `d_state_lists`, in its (hash) order.
    devices: Vec<(String, DeviceState)>,
}

fn find(packets: &[Template], first: (&str, &str), with: (&str, &str)) -> Template {
    packets
        .iter()
        .find(|p| {
            p.0.first()
                .is_some_and(|(k, v)| k == first.0 && v == first.1)
                && p.get(with.0) == Some(with.1)
        })
        .cloned()
        .unwrap_or_else(|| panic!("invariant: the captures hold a {first:?} packet with {with:?}"))
}

impl Templates {
    fn load() -> Templates {
        let (banner, a) = split(captured::A);
        let (_, b) = split(captured::B);
        let (_, c) = split(captured::C);
        let (_, d) = split(captured::D);
        let (_, e) = split(captured::E);
        let (_, g) = split(captured::G);
        let ev = |name| ("Event", name);
        let devices = d
            .iter()
            .filter(|p| p.get("Event") == Some("DeviceStateChange"))
            .filter_map(|p| {
                Some((
                    p.get("Device")?.to_owned(),
                    DeviceState::parse_lenient(p.get("State")?),
                ))
            })
            .collect();
        let hints = d
            .iter()
            .filter(|p| p.get("Event") == Some("ExtensionStatus"))
            .filter_map(|p| {
                Some(Hint {
                    exten: p.get("Exten")?.to_owned(),
                    context: p.get("Context")?.to_owned(),
                    hint: p.get("Hint")?.to_owned(),
                    code: p.get("Status")?.parse().ok()?,
                })
            })
            .collect();
        Templates {
            banner,
            login_ok: find(
                &a,
                ("Response", "Success"),
                ("Message", "Authentication accepted"),
            ),
            already_authenticated: find(
                &g,
                ("Response", "Success"),
                ("Message", "Already authenticated"),
            ),
            login_failed: find(
                &b,
                ("Response", "Error"),
                ("Message", "Authentication failed"),
            ),
            fully_booted: find(&a, ev("FullyBooted"), ("Privilege", "system,all")),
            successful_auth: find(&a, ev("SuccessfulAuth"), ("Service", "AMI")),
            challenge: find(&c, ("Response", "Success"), ("ActionID", "c-1")),
            pong: find(&a, ("Response", "Success"), ("Ping", "Pong")),
            goodbye: find(&a, ("Response", "Goodbye"), ("ActionID", "a-3")),
            permission_denied: find(&g, ("Response", "Error"), ("Message", "Permission denied")),
            unknown_action: find(&g, ("Response", "Error"), ("ActionID", "g-3")),
            missing_action: find(&g, ("Response", "Error"), ("ActionID", "g-4")),
            list_start: find(&d, ("Response", "Success"), ("ActionID", "d-2")),
            status_item: find(&d, ev("ExtensionStatus"), ("ActionID", "d-2")),
            status_complete: find(&d, ev("ExtensionStateListComplete"), ("ActionID", "d-2")),
            device_list_start: find(&d, ("Response", "Success"), ("ActionID", "d-3")),
            device_item: find(&d, ev("DeviceStateChange"), ("ActionID", "d-3")),
            device_complete: find(&d, ev("DeviceStateListComplete"), ("ActionID", "d-3")),
            status_event: find(&e, ev("ExtensionStatus"), ("Privilege", "call,all")),
            device_event: find(&e, ev("DeviceStateChange"), ("Privilege", "call,all")),
            devices,
            extension_state: find(&e, ("Response", "Success"), ("Message", "Extension Status")),
            hints,
        }
    }
}

/// One hinted extension of the peer's dialplan.
#[derive(Clone, Debug)]
struct Hint {
    exten: String,
    context: String,
    hint: String,
    code: i32,
}

impl Hint {
    /// The device `set_state` moves: the first one of the hint.
    fn first_device(&self) -> &str {
        self.hint.split('&').next().unwrap_or(&self.hint)
    }
}

/// What goes to one connection, in order.
enum Out {
    Bytes(Vec<u8>),
    /// Write these bytes (a packet cut short), then close.
    CloseAfter(Vec<u8>),
}

struct Conn {
    tx: mpsc::UnboundedSender<Out>,
    logged_in: bool,
    /// The session reads `call` events (ExtensionStatus, DeviceStateChange).
    call_events: bool,
    challenge: Option<String>,
}

#[derive(Default)]
struct State {
    hints: Vec<Hint>,
    /// The device state cache, which `DeviceStateList` reports.
    devices: Vec<(String, DeviceState)>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    refuse: bool,
    silent: bool,
    before_list: Vec<(String, i32)>,
    after_list: Vec<(String, i32)>,
    actions: Vec<String>,
    logins: usize,
}

struct Inner {
    config: PeerConfig,
    secret: Secret,
    t: Templates,
    state: Mutex<State>,
    /// Bumped after every login and every received action, to wake waiters.
    progress: watch::Sender<u64>,
}

/// The fixed challenge of `c_md5_challenge_login`, so its captured key logs in.
const CHALLENGE: &str = "139199246";

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    fn status_event(&self, out: &mut Vec<u8>, h: &Hint) {
        let code = h.code.to_string();
        let text = ExtensionState::from_code(h.code).status_text();
        let values = [
            ("Exten", h.exten.as_str()),
            ("Context", h.context.as_str()),
            ("Hint", h.hint.as_str()),
            ("Status", code.as_str()),
            ("StatusText", text),
        ];
        self.t.status_event.render(out, None, &values);
    }

    fn device_event(&self, out: &mut Vec<u8>, device: &str, state: DeviceState) {
        self.t
            .device_event
            .render(out, None, &[("Device", device), ("State", state.as_str())]);
    }

    /// Sends `bytes` to every logged-in connection that reads call events.
    fn broadcast(&self, state: &State, bytes: &[u8]) {
        if state.silent || bytes.is_empty() {
            return;
        }
        for conn in state
            .conns
            .values()
            .filter(|c| c.logged_in && c.call_events)
        {
            let _ = conn.tx.send(Out::Bytes(bytes.to_vec()));
        }
    }

    /// Changes a hint's state (adding the hint when it is new) and returns the events Asterisk
    /// would send: `ExtensionStatus`, then `DeviceStateChange` when the device changed. Nothing
    /// when the state is unchanged, as Asterisk sends nothing for a repeated state.
    fn change(&self, state: &mut State, exten: &str, code: i32) -> Vec<u8> {
        let device_state = ExtensionState::from_code(code).device_state();
        let index = match state.hints.iter().position(|h| h.exten == exten) {
            Some(i) => i,
            None => {
                state.hints.push(Hint {
                    exten: exten.to_owned(),
                    context: "agents".to_owned(),
                    hint: format!("Custom:{exten}"),
                    // A new hint is always announced, whatever its state.
                    code: i32::MIN,
                });
                state.hints.len() - 1
            }
        };
        let hint = &mut state.hints[index];
        let mut out = Vec::new();
        if hint.code == code {
            return out;
        }
        hint.code = code;
        let hint = hint.clone();
        let device = hint.first_device();
        // Asterisk's device state cache lists every device ever set, hints or not.
        let device_changed = match state.devices.iter_mut().find(|(d, _)| d == device) {
            Some((_, s)) => std::mem::replace(s, device_state) != device_state,
            None => {
                state.devices.push((device.to_owned(), device_state));
                true
            }
        };
        self.status_event(&mut out, &hint);
        if device_changed {
            self.device_event(&mut out, device, device_state);
        }
        out
    }

    fn send(&self, state: &State, conn: u64, out: Out) {
        if let Some(c) = state.conns.get(&conn) {
            let _ = c.tx.send(out);
        }
    }

    /// Answers one request; everything it writes goes through the connection's queue while
    /// the state is locked, so answers and events keep the order they happened in.
    fn handle(&self, conn: u64, request: &Packet) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let action = request
            .get("Action")
            .map(|a| a.trim().to_owned())
            .unwrap_or_default();
        state.actions.push(action.clone());
        let id = request
            .get("ActionID")
            .map(|v| v.trim_start().to_owned())
            .filter(|v| !v.is_empty());
        let id = id.as_deref();
        let silent = state.silent;
        let mut out = Vec::new();
        let mut close = false;
        let lower = action.to_ascii_lowercase();
        let logged_in = state.conns.get(&conn).is_some_and(|c| c.logged_in);
        let t = &self.t;
        if action.is_empty() {
            t.missing_action.render(&mut out, id, &[]);
        } else if !logged_in && !matches!(lower.as_str(), "login" | "challenge" | "logoff") {
            t.permission_denied.render(&mut out, id, &[]);
        } else {
            match lower.as_str() {
                "login" if logged_in => t.already_authenticated.render(&mut out, id, &[]),
                "login" => {
                    if self.login(state, conn, request, id, &mut out) {
                        state.logins += 1;
                    } else {
                        close = true;
                    }
                }
                "challenge" => {
                    if let Some(c) = state.conns.get_mut(&conn) {
                        c.challenge = Some(CHALLENGE.to_owned());
                    }
                    t.challenge
                        .render(&mut out, id, &[("Challenge", CHALLENGE)]);
                }
                "logoff" => {
                    t.goodbye.render(&mut out, id, &[]);
                    close = true;
                }
                "ping" => t.pong.render(&mut out, id, &[("Timestamp", &timestamp())]),
                "extensionstatelist" => {
                    // A change that happened before the list: its event first, then a list
                    // that already shows it.
                    for (exten, code) in std::mem::take(&mut state.before_list) {
                        let events = self.change(state, &exten, code);
                        self.broadcast(state, &events);
                    }
                    let mut list = Vec::new();
                    t.list_start.render(&mut list, id, &[]);
                    for h in &state.hints {
                        let code = h.code.to_string();
                        let text = ExtensionState::from_code(h.code).status_text();
                        let values = [
                            ("Exten", h.exten.as_str()),
                            ("Context", h.context.as_str()),
                            ("Hint", h.hint.as_str()),
                            ("Status", code.as_str()),
                            ("StatusText", text),
                        ];
                        t.status_item.render(&mut list, id, &values);
                    }
                    let n = state.hints.len().to_string();
                    t.status_complete
                        .render(&mut list, id, &[("ListItems", &n)]);
                    if !silent {
                        self.send(state, conn, Out::Bytes(list));
                    }
                    // A change right after the list: the list shows the old state.
                    for (exten, code) in std::mem::take(&mut state.after_list) {
                        let events = self.change(state, &exten, code);
                        self.broadcast(state, &events);
                    }
                }
                "devicestatelist" => {
                    t.device_list_start.render(&mut out, id, &[]);
                    let mut n = 0;
                    for (device, s) in &state.devices {
                        let values = [("Device", device.as_str()), ("State", s.as_str())];
                        t.device_item.render(&mut out, id, &values);
                        n += 1;
                    }
                    let n = n.to_string();
                    t.device_complete.render(&mut out, id, &[("ListItems", &n)]);
                }
                "extensionstate" => {
                    let exten = request
                        .get("Exten")
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_default();
                    let context = request
                        .get("Context")
                        .map(|v| v.trim().to_owned())
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| "default".to_owned());
                    let found = state
                        .hints
                        .iter()
                        .find(|h| h.exten == exten && h.context == context);
                    let (hint, code) = found.map_or(("", -1), |h| (h.hint.as_str(), h.code));
                    let code_text = code.to_string();
                    let values = [
                        ("Exten", exten.as_str()),
                        ("Context", context.as_str()),
                        ("Hint", hint),
                        ("Status", code_text.as_str()),
                        ("StatusText", ExtensionState::from_code(code).status_text()),
                    ];
                    t.extension_state.render(&mut out, id, &values);
                }
                _ => {
                    let message = format!(
                        "Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
                    );
                    t.unknown_action
                        .render(&mut out, id, &[("Message", &message)]);
                }
            }
        }
        if !silent {
            if close {
                self.send(state, conn, Out::CloseAfter(out));
            } else if !out.is_empty() {
                self.send(state, conn, Out::Bytes(out));
            }
        }
        drop(guard);
        self.bump();
    }

    /// Checks a Login and writes its answer; false when it failed (the caller closes).
    fn login(
        &self,
        state: &mut State,
        conn: u64,
        request: &Packet,
        id: Option<&str>,
        out: &mut Vec<u8>,
    ) -> bool {
        let t = &self.t;
        let Some(c) = state.conns.get_mut(&conn) else {
            return false;
        };
        let user_ok = request
            .get("Username")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case(&self.config.username));
        let md5 = request
            .get("AuthType")
            .is_some_and(|a| a.trim().eq_ignore_ascii_case("md5"));
        let secret_ok = if md5 {
            match (&c.challenge, request.get("Key")) {
                (Some(challenge), Some(key)) => key
                    .trim()
                    .eq_ignore_ascii_case(&ami_proto::md5_key(challenge, &self.secret)),
                _ => false,
            }
        } else {
            !self.config.md5
                && request
                    .get("Secret")
                    .is_some_and(|s| s.trim_start() == self.config.secret)
        };
        if !(user_ok && secret_ok) {
            t.login_failed.render(out, id, &[]);
            return false;
        }
        let (system, call) = event_classes(request.get("Events").as_deref());
        c.logged_in = true;
        c.call_events = call;
        t.login_ok.render(out, id, &[]);
        if system && self.config.send_fully_booted {
            t.fully_booted.render(out, None, &[]);
            t.successful_auth
                .render(out, None, &[("AccountID", &self.config.username)]);
        }
        true
    }
}

/// Which of the `system` and `call` classes an `Events:` value turns on: missing or empty
/// means all, `off`-like words none, digits a bit mask (1 = system, 2 = call), and otherwise
/// a comma list of lower-case class names.
fn event_classes(value: Option<&str>) -> (bool, bool) {
    let v = value.unwrap_or("").trim();
    if v.is_empty() {
        return (true, true);
    }
    if let Ok(bits) = v.parse::<u32>() {
        return (bits & 1 != 0, bits & 2 != 0);
    }
    match v.to_ascii_lowercase().as_str() {
        "no" | "false" | "n" | "f" | "off" => return (false, false),
        "yes" | "true" | "y" | "t" | "on" => return (true, true),
        _ => {}
    }
    let words: Vec<&str> = v.split(',').map(str::trim).collect();
    let all = words.contains(&"all");
    (
        all || words.contains(&"system"),
        all || words.contains(&"call"),
    )
}

fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

/// A loopback AMI peer on 127.0.0.1 and a random port. Dropping it stops the listener and
/// closes every connection.
pub struct AmiPeer {
    inner: Arc<Inner>,
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

impl AmiPeer {
    /// Binds 127.0.0.1:0 and starts serving. Panics when no loopback port can be bound (the
    /// test cannot run then); [`AmiPeer::try_start`] returns the error instead.
    pub async fn start(config: PeerConfig) -> AmiPeer {
        AmiPeer::try_start(config)
            .await
            .expect("bind a loopback port for the AMI peer")
    }

    /// Like [`AmiPeer::start`], returning the bind error.
    pub async fn try_start(config: PeerConfig) -> std::io::Result<AmiPeer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let t = Templates::load();
        let state = State {
            hints: t.hints.clone(),
            devices: t.devices.clone(),
            ..State::default()
        };
        let inner = Arc::new(Inner {
            secret: Secret::new(config.secret.clone()),
            config,
            t,
            state: Mutex::new(state),
            progress: watch::Sender::new(0),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(inner.clone(), listener, cancel.clone()));
        Ok(AmiPeer {
            inner,
            addr,
            cancel,
        })
    }

    /// The address to give the AMI client.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the peer now (dropping it does the same).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Sets an extension's state: the next `ExtensionStateList` reports it, and every
    /// connected session with events on gets `ExtensionStatus` (then `DeviceStateChange` when
    /// the hint's first device changes), as in `e_device_states`. An unknown extension gets a
    /// new hint `Custom:<exten>` in context `agents`. Setting the current state again sends
    /// nothing, as Asterisk does.
    pub fn set_state(&self, exten: &str, code: i32) {
        let mut state = self.inner.lock();
        let events = self.inner.change(&mut state, exten, code);
        self.inner.broadcast(&state, &events);
    }

    /// Changes only what the next list reports, with no event: a change that happened while
    /// the client was disconnected.
    pub fn set_state_silently(&self, exten: &str, code: i32) {
        let mut state = self.inner.lock();
        self.inner.change(&mut state, exten, code);
    }

    /// Replaces every hint and the device state cache, silently, with `Custom:<exten>` hints in
    /// context `agents`, in the order given.
    pub fn replace_hints(&self, hints: &[(&str, i32)]) {
        let mut state = self.inner.lock();
        state.hints.clear();
        state.devices.clear();
        for (exten, code) in hints {
            self.inner.change(&mut state, exten, *code);
        }
    }

    /// Adds a hint for `exten` in another dialplan context (as a second tenant of a shared PBX
    /// would have), in state `code`. It shows in the next list, after the existing hints.
    pub fn add_hint_in_context(&self, exten: &str, context: &str, code: i32) {
        self.inner.lock().hints.push(Hint {
            exten: exten.to_owned(),
            context: context.to_owned(),
            hint: format!("Custom:{context}-{exten}"),
            code,
        });
    }

    /// Removes a hint. Asterisk sends no event for this; the extension just disappears from
    /// the next list.
    pub fn remove_hint(&self, exten: &str) {
        self.inner.lock().hints.retain(|h| h.exten != exten);
    }

    /// Sends an `ExtensionStatus` event without changing what the list reports: a stray or
    /// repeated event.
    pub fn emit_status_event(&self, exten: &str, code: i32) {
        let state = self.inner.lock();
        let hint = state
            .hints
            .iter()
            .find(|h| h.exten == exten)
            .cloned()
            .unwrap_or_else(|| Hint {
                exten: exten.to_owned(),
                context: "agents".to_owned(),
                hint: format!("Custom:{exten}"),
                code,
            });
        let mut out = Vec::new();
        self.inner.status_event(&mut out, &Hint { code, ..hint });
        self.inner.broadcast(&state, &out);
    }

    /// Writes raw bytes to every logged-in connection, whatever its event mask.
    pub fn emit_raw(&self, bytes: &[u8]) {
        let state = self.inner.lock();
        if state.silent {
            return;
        }
        for conn in state.conns.values().filter(|c| c.logged_in) {
            let _ = conn.tx.send(Out::Bytes(bytes.to_vec()));
        }
    }

    /// Makes the next `ExtensionStateList` start with this change: its event goes out just
    /// before the list answer, and the list already shows the new state.
    pub fn queue_event_before_next_list(&self, exten: &str, code: i32) {
        self.inner.lock().before_list.push((exten.to_owned(), code));
    }

    /// Makes this change happen right after the next `ExtensionStateList` answer: the list
    /// shows the old state and the event follows the list.
    pub fn queue_event_after_next_list(&self, exten: &str, code: i32) {
        self.inner.lock().after_list.push((exten.to_owned(), code));
    }

    /// Closes every connection now, between packets.
    pub fn drop_connections(&self) {
        self.close_all(false);
    }

    /// Closes every connection in the middle of a packet: each gets the first half of an
    /// `ExtensionStatus` event, then the socket closes.
    pub fn drop_connections_mid_packet(&self) {
        self.close_all(true);
    }

    fn close_all(&self, mid_packet: bool) {
        let state = self.inner.lock();
        let mut partial = Vec::new();
        if mid_packet && let Some(h) = state.hints.first() {
            self.inner.status_event(&mut partial, h);
            partial.truncate(partial.len() / 2);
        }
        for conn in state.conns.values() {
            let _ = conn.tx.send(Out::CloseAfter(partial.clone()));
        }
    }

    /// While true, new connections are accepted and closed at once, before the banner.
    pub fn refuse_connections(&self, refuse: bool) {
        self.inner.lock().refuse = refuse;
    }

    /// While true the peer writes nothing at all (no banner, no answer, no event), as over a
    /// dead network path; requests are still read and recorded, and stay unanswered.
    pub fn go_silent(&self, silent: bool) {
        self.inner.lock().silent = silent;
    }

    /// Successful logins so far, over all connections.
    pub fn logins(&self) -> usize {
        self.inner.lock().logins
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Waits until at least `n` logins have succeeded. It has no deadline of its own: wrap it
    /// in the test's timeout.
    pub async fn wait_for_login(&self, n: usize) {
        self.wait_until(|s| s.logins >= n).await;
    }

    /// The `Action` names received so far, over all connections, in arrival order.
    pub fn actions_received(&self) -> Vec<String> {
        self.inner.lock().actions.clone()
    }

    /// Waits until `action` (compared without regard to case) has been received at least `n`
    /// times. No deadline of its own.
    pub async fn wait_for_action(&self, action: &str, n: usize) {
        self.wait_until(|s| {
            s.actions
                .iter()
                .filter(|a| a.eq_ignore_ascii_case(action))
                .count()
                >= n
        })
        .await;
    }

    /// What the next `ExtensionStateList` would report, in list order.
    pub fn states(&self) -> Vec<(String, i32)> {
        self.inner
            .lock()
            .hints
            .iter()
            .map(|h| (h.exten.clone(), h.code))
            .collect()
    }

    async fn wait_until(&self, done: impl Fn(&State) -> bool) {
        let mut rx = self.inner.progress.subscribe();
        loop {
            // Marking the current value seen before checking means no bump can slip between
            // the check and the wait.
            rx.borrow_and_update();
            if done(&self.inner.lock()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            // Transient accept errors (out of descriptors) pass; the client retries.
            tokio::task::yield_now().await;
            continue;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut state = inner.lock();
            if state.refuse {
                drop(stream);
                continue;
            }
            let id = state.next_conn;
            state.next_conn += 1;
            if !state.silent {
                let _ = tx.send(Out::Bytes(inner.t.banner.clone()));
            }
            state.conns.insert(
                id,
                Conn {
                    tx,
                    logged_in: false,
                    call_events: false,
                    challenge: None,
                },
            );
            id
        };
        tokio::spawn(connection(inner.clone(), stream, id, rx, cancel.clone()));
    }
}

async fn connection(
    inner: Arc<Inner>,
    stream: TcpStream,
    id: u64,
    mut rx: mpsc::UnboundedReceiver<Out>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            out = rx.recv() => match out {
                Some(Out::Bytes(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Out::CloseAfter(b)) => {
                    let _ = wr.write_all(&b).await;
                    break;
                }
                None => break,
            },
            read = rd.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(Frame::Packet(p))) => inner.handle(id, &p),
                        Ok(Some(Frame::Banner(_))) | Err(_) => {
                            let mut out = Vec::new();
                            inner.t.missing_action.render(&mut out, None, &[]);
                            let state = inner.lock();
                            if !state.silent {
                                inner.send(&state, id, Out::Bytes(out));
                            }
                        }
                        Ok(None) => break,
                    }
                }
            }
        }
    }
    inner.lock().conns.remove(&id);
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/a_login_ping_logoff.sent.ami");
    const B_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/b_login_failure.sent.ami");
    const C_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/c_md5_challenge_login.sent.ami");
    const D_SENT: &[u8] = include_bytes!("../../fixtures/ami/real/d_state_lists.sent.ami");

    /// Blanks the Ping timestamp, the one value that differs from the capture.
    fn blank_timestamps(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).expect("ASCII");
        text.split_inclusive("\r\n")
            .map(|line| match line.strip_prefix("Timestamp: ") {
                Some(v) => {
                    let v = v.trim_end();
                    let (s, us) = v.split_once('.').expect("sec.usec");
                    assert!(
                        s.bytes().all(|b| b.is_ascii_digit()) && us.len() == 6,
                        "{v}"
                    );
                    "Timestamp: *\r\n".to_owned()
                }
                None => line.to_owned(),
            })
            .collect()
    }

    async fn transcript(peer: &AmiPeer, sent: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(peer.addr()).await.expect("connect");
        stream.write_all(sent).await.expect("send");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.expect("read");
        got
    }

    #[tokio::test]
    async fn replays_the_captures_byte_for_byte() {
        let peer = AmiPeer::start(PeerConfig::default()).await;
        // The MD5 login of c works because the peer hands out the captured challenge.
        let rows: [(&[u8], &[u8]); 4] = [
            (A_SENT, captured::A),
            (B_SENT, captured::B),
            (C_SENT, captured::C),
            (D_SENT, captured::D),
        ];
        for (sent, want) in rows {
            let got = transcript(&peer, sent).await;
            assert_eq!(blank_timestamps(&got), blank_timestamps(want));
        }
        assert_eq!(peer.logins(), 3, "a, c and d logged in, b did not");
        assert_eq!(
            peer.actions_received(),
            [
                "Login",
                "Ping",
                "Logoff",
                "Login",
                "Challenge",
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
        let text = std::str::from_utf8(captured::E).expect("ASCII");
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
        let got = transcript(&peer, C_SENT).await;
        assert_eq!(blank_timestamps(&got), blank_timestamps(captured::C));
        assert_eq!(peer.logins(), 1);
    }

    #[test]
    fn events_header_classes() {
        let rows = [
            (None, (true, true)),
            (Some(""), (true, true)),
            (Some("on"), (true, true)),
            (Some("off"), (false, false)),
            (Some("1"), (true, false)),
            (Some("2"), (false, true)),
            (Some("system,call"), (true, true)),
            (Some("call"), (false, true)),
            (Some("all"), (true, true)),
        ];
        for (value, want) in rows {
            assert_eq!(event_classes(value), want, "{value:?}");
        }
    }
}
