//! `ami-sim`: a simulated Asterisk 20.20.1 manager interface, the one fake Asterisk of the
//! workspace. A loopback TCP server that speaks exactly the formats of the real captures
//! (`fixtures/ami/real/`), moves agents through realistic call cycles for `api-server --demo`
//! and the `ami-sim` binary, and takes scripted cues and faults from the end-to-end tests.
//!
//! Layout: [`states`] (Asterisk's state numbers and hint arithmetic), `model` (the board of
//! hints and devices, pure), `cycle` (the call-cycle script, pure), `callcenter` (queues,
//! members, waiting callers, presence and queued calls, pure), `shift` (the call-center script
//! of the demo, pure, seeded), [`wire`] (every byte the PBX writes), `session` (one AMI
//! session on one socket), `center` (the call center on the shared PBX: its hooks, answers
//! and events), and this module (the shared PBX, the event timer, and the scripting hooks on
//! [`Simulator`]).
//!
//! What it answers: `Login` (plain and MD5 challenge), `Challenge`, `Logoff`, `Ping`, `Events`,
//! `ExtensionStateList`, `DeviceStateList`, `ExtensionState`, `Setvar DEVICE_STATE(...)` and
//! `PRESENCE_STATE(...)`, `Getvar` of both, `PresenceState`, `QueueStatus`, `QueueSummary`,
//! `QueueAdd`, `QueueRemove`, `QueuePause`, `QueuePenalty` (these four need the user's
//! `write=` class `agent`), `PresenceStateList` and
//! `CoreShowChannels`; any other action gets Asterisk's "Invalid/unknown command" error. Live
//! `ExtensionStatus`, `DeviceStateChange`, presence and channel events go to every logged-in
//! session that reads `call` events; `QueueMember*`, `QueueCaller*` and `Agent*` events to
//! those that read `agent` events.
//!
//! Call-center hooks for tests: [`Simulator::add_queue`], [`Simulator::add_queue_member`],
//! [`Simulator::remove_queue_member`], [`Simulator::pause_queue_member`],
//! [`Simulator::set_presence`], [`Simulator::add_presence_to_hint`],
//! [`Simulator::queue_call`] and [`Simulator::queue_call_step`]; each takes a [`Delivery`]:
//! with events, or silently (the PBX changed while the link was down; the next list shows it).
//!
//! What it deliberately does not do: dialplan, `Command`, `Originate`, `Status`, TLS, the
//! HTTP flavours of AMI, or per-action permissions beyond `write=agent` for the queue
//! actions. Queued calls are modelled with two channels (the caller's `;1` in `Queue` and
//! the member's `;1` in `AppQueue`), not the four of a real `Local` channel pair.
//! The lists are always consistent with the events: a list reflects every change whose events
//! the session received before it, and none whose events come after it.

mod callcenter;
mod center;
mod cycle;
mod model;
mod roster;
mod session;
mod shift;
pub mod states;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use callcenter::{PRESENCE_STATES, QueueError};
pub use center::{CallStep, Delivery, SimMember};
pub use roster::{SampleAgent, sample_agents};
pub use states::{DeviceState, ExtensionState};

use model::{AgentSpec, Board, Change};
use session::Mask;

/// The dialplan context of the simulated hints, as in the real captures.
pub const DEFAULT_CONTEXT: &str = "agents";

/// How many changes the event timer applies at most in one tick; a stalled timer drops the
/// backlog instead of flooding clients with a burst.
const MAX_BURST: u64 = 100_000;

/// The shortest timer period. Higher rates apply several changes per tick.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// The highest accepted rate, in changes per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// One simulated extension and its hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAgent {
    /// The extension number (`Exten:`).
    pub extension: String,
    /// The dialplan context of the hint; `None` is the configured [`SimConfig::context`].
    pub context: Option<String>,
    /// The hint's devices, joined with `&` in `Hint:`. The first one is the agent's phone,
    /// which the call model drives; further devices only change through `Setvar`.
    pub devices: Vec<String>,
    /// Starting device states, one per device. `None`: the phone starts in a random state of
    /// the call cycle (from the seed) and further devices start `NOT_INUSE`.
    pub initial: Option<Vec<DeviceState>>,
}

impl SimAgent {
    /// An agent whose hint is `Custom:<extension>`, like every hint in the real captures.
    pub fn custom(extension: impl Into<String>) -> SimAgent {
        let extension = extension.into();
        let device = format!("Custom:{extension}");
        SimAgent {
            extension,
            context: None,
            devices: vec![device],
            initial: None,
        }
    }

    /// An agent whose hint is a SIP phone, `PJSIP/<extension>`.
    pub fn pjsip(extension: impl Into<String>) -> SimAgent {
        let extension = extension.into();
        let device = format!("PJSIP/{extension}");
        SimAgent {
            extension,
            context: None,
            devices: vec![device],
            initial: None,
        }
    }

    /// The same agent with fixed starting device states (one per device).
    pub fn starting_in(mut self, states: Vec<DeviceState>) -> SimAgent {
        self.initial = Some(states);
        self
    }
}

/// The hints of the `d_state_lists` capture, in its (hash) order and with its device states:
/// 1001 to 1010 as `Custom:<ext>` and 1099 as `Custom:1099a&Custom:1099b`, context `agents`.
/// A client that logs in and asks for `ExtensionStateList` gets the captured list.
pub fn captured_agents() -> Vec<SimAgent> {
    use DeviceState::*;
    let single = [
        ("1010", NotInUse),
        ("1004", Busy),
        ("1005", Unavailable),
        ("1006", NotInUse),
        ("1007", RingInUse),
        ("1001", InUse),
        ("1002", Ringing),
        ("1003", OnHold),
        ("1008", Invalid),
        ("1009", InUse),
    ];
    let mut agents: Vec<SimAgent> = single
        .iter()
        .map(|(n, s)| SimAgent::custom(*n).starting_in(vec![*s]))
        .collect();
    agents.push(SimAgent {
        extension: "1099".to_owned(),
        context: None,
        devices: vec!["Custom:1099a".into(), "Custom:1099b".into()],
        initial: Some(vec![InUse, Ringing]),
    });
    agents
}

/// Everything the simulator needs; only binaries read it from flags.
#[derive(Clone)]
pub struct SimConfig {
    /// The manager user name (compared without regard to case, as Asterisk does).
    pub username: String,
    /// The manager secret, for plain and MD5 logins.
    pub secret: String,
    /// The user's `read=` classes in `manager.conf` (`all`, or e.g. `call`): a session gets
    /// only events of classes both these and its `Events:` allow. Without `system` there is
    /// no `FullyBooted`.
    pub read: String,
    /// The user's `write=` classes: `QueuePause`, `QueueAdd` and `QueueRemove` need `agent`
    /// (otherwise `Permission denied`).
    pub write: String,
    /// Whether a plain `Secret` login is accepted; false allows only the MD5 challenge login.
    pub plain_login: bool,
    /// The hinted extensions, in the order the lists report them.
    pub agents: Vec<SimAgent>,
    /// Call-cycle changes per second across all agents; 0 keeps every agent still (changes
    /// then only come from `Setvar` or the scripting hooks of [`Simulator`]).
    pub rate_per_sec: f64,
    /// The seed of the call model; `None` picks one at random (see [`Simulator::seed`]).
    pub seed: Option<u64>,
    /// The dialplan context of the hints that do not name one.
    pub context: String,
    /// Whether the call center plays along with the call cycle (when `rate_per_sec` > 0):
    /// the agents become members of the queues of their departments (`sales`, `support`,
    /// `billing`, `retention`), their hints gain `CustomPresence:<ext>`, and the event timer
    /// also runs the call-center script (customers calling in, pauses, presence changes).
    /// With `rate_per_sec = 0` it has no effect: nothing moves, queues start empty.
    pub call_center: bool,
    /// How long a failed login waits before its error answer (Asterisk: 1 s).
    pub auth_failure_delay: Duration,
}

impl SimConfig {
    /// A configuration with one change per second, a random seed, context `agents`, a user
    /// that reads everything and may log in either way, and Asterisk's one-second delay after
    /// a failed login.
    pub fn new(
        username: impl Into<String>,
        secret: impl Into<String>,
        agents: Vec<SimAgent>,
    ) -> SimConfig {
        SimConfig {
            username: username.into(),
            secret: secret.into(),
            read: "all".to_owned(),
            write: "all".to_owned(),
            plain_login: true,
            agents,
            rate_per_sec: 1.0,
            seed: None,
            context: DEFAULT_CONTEXT.to_owned(),
            call_center: true,
            auth_failure_delay: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed, so a config can be logged.
        f.debug_struct("SimConfig")
            .field("username", &self.username)
            .field("secret", &"***")
            .field("read", &self.read)
            .field("write", &self.write)
            .field("plain_login", &self.plain_login)
            .field("agents", &self.agents.len())
            .field("rate_per_sec", &self.rate_per_sec)
            .field("seed", &self.seed)
            .field("context", &self.context)
            .field("call_center", &self.call_center)
            .field("auth_failure_delay", &self.auth_failure_delay)
            .finish()
    }
}

/// Why the simulator could not start or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration cannot work; the message says which part.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// Binding or reading the listening socket failed.
    #[error("simulator socket: {0}")]
    Io(#[from] std::io::Error),
}

impl SimError {
    /// True when the configuration is at fault (nothing to retry).
    pub fn is_config(&self) -> bool {
        matches!(self, SimError::Config(_))
    }
}

/// A fault a test injects into every open session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the socket between packets, after what is already queued.
    Close,
    /// Write the first half of an `ExtensionStatus` event, then close: the stream ends inside
    /// a packet.
    CloseMidPacket,
}

/// How the PBX mangles an `ExtensionStateList` answer a test names (see
/// [`Simulator::fault_next_list`]): what a PBX under load, or a path that breaks mid-list,
/// looks like from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFault {
    /// The list starts and this many items follow, then nothing: no `Complete` event ever
    /// comes for it (events go on as usual).
    Stall {
        /// Items sent before the list stops.
        items: usize,
    },
    /// The list starts and this many items follow; the other items (as the board was when the
    /// list was asked for) and the `Complete` event follow only the next event the session
    /// writes, so that event sits inside the list on the wire, after the items sent first.
    Hold {
        /// Items sent before the event.
        items: usize,
    },
    /// The list is cut short: the last `missing` items are left out, but the `Complete` event
    /// still announces every item in `ListItems`.
    Short {
        /// Items left out at the end.
        missing: usize,
    },
}

/// How the PBX refuses an action a test names (see [`Simulator::refuse_action`]), with the
/// exact answer Asterisk gives (`fixtures/ami/real/g_errors.recv.ami`,
/// `i_limited_user.recv.ami`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The module that provides the action is not loaded (`app_queue` for `QueueStatus`):
    /// `Response: Error` with `Message: Invalid/unknown command: <Action>. Use Action:
    /// ListCommands to show available commands.`
    UnknownCommand,
    /// The manager user lacks the action's class (`call`/`reporting` for
    /// `PresenceStateList`, `system`/`reporting` for `CoreShowChannels`): `Response: Error`
    /// with `Message: Permission denied`.
    PermissionDenied,
}

/// Which sessions get an emitted packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Logged-in sessions that read `call` events.
    CallReaders,
    /// Logged-in sessions that read `agent` events (queue members, queue callers).
    AgentReaders,
    /// Every logged-in session, whatever its event mask.
    Everyone,
}

/// One applied change (or scripted packet), rendered once for every session that gets it.
#[derive(Debug)]
pub(crate) struct Emitted {
    /// The board's change counter after this change.
    pub(crate) seq: u64,
    /// Who gets it.
    pub(crate) audience: Audience,
    /// The packets, in wire order.
    pub(crate) bytes: Vec<u8>,
}

/// What the sessions did, for tests to wait on.
#[derive(Debug, Default)]
struct Journal {
    logins: usize,
    actions: Vec<String>,
    /// The sessions open after every open and close, with when it happened.
    connections: Vec<(std::time::Instant, usize)>,
}

/// What every session and the event timer share.
pub(crate) struct Shared {
    pub(crate) username: String,
    pub(crate) secret: ami_proto::Secret,
    pub(crate) read: Mask,
    pub(crate) write: Mask,
    /// The epoch second the simulator started (the prefix of channel unique ids).
    pub(crate) started_epoch: u64,
    pub(crate) plain_login: bool,
    pub(crate) auth_failure_delay: Duration,
    pub(crate) started: Instant,
    rate: f64,
    seed: u64,
    /// Whether the event timer runs the call-center script.
    call_center: bool,
    board: Mutex<Board>,
    events: broadcast::Sender<Arc<Emitted>>,
    faults: broadcast::Sender<Fault>,
    next_session: AtomicU64,
    /// While set, sessions write nothing at all.
    silent: AtomicBool,
    /// While set, new connections are closed at once.
    refuse: AtomicBool,
    /// Lower-case action name → how it is refused.
    refused_actions: Mutex<HashMap<String, Refusal>>,
    /// How the next `ExtensionStateList` answers are mangled, first one first.
    list_faults: Mutex<std::collections::VecDeque<ListFault>>,
    connections: AtomicUsize,
    journal: Mutex<Journal>,
    /// Bumped after every login and every request, to wake waiters.
    progress: watch::Sender<u64>,
}

impl Shared {
    /// Locks the board. No code panics while holding it, so a poisoned lock still holds a
    /// consistent board and is used as is.
    pub(crate) fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault of the next `ExtensionStateList` answer, if a test cued one (taken).
    pub(crate) fn take_list_fault(&self) -> Option<ListFault> {
        self.list_faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// How `action` (lower-case) is refused, when a test said so.
    pub(crate) fn refusal(&self, action: &str) -> Option<Refusal> {
        self.refused_actions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(action)
            .copied()
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver for the events of every change applied from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Emitted>> {
        self.events.subscribe()
    }

    /// A receiver for the faults injected from now on.
    pub(crate) fn faults(&self) -> broadcast::Receiver<Fault> {
        self.faults.subscribe()
    }

    /// A fresh number for `SuccessfulAuth`'s `SessionID`.
    pub(crate) fn session_number(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Relaxed)
    }

    pub(crate) fn connection_opened(&self) {
        // Counted and recorded under the journal's lock, so the history is in the counts' order.
        let mut journal = self.journal();
        let open = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        journal.connections.push((std::time::Instant::now(), open));
    }

    pub(crate) fn connection_closed(&self) {
        let mut journal = self.journal();
        let open = self.connections.fetch_sub(1, Ordering::Relaxed) - 1;
        journal.connections.push((std::time::Instant::now(), open));
    }

    /// Records a request's action (before it is answered).
    pub(crate) fn record_action(&self, action: &str) {
        self.journal().actions.push(action.to_owned());
        self.progress.send_modify(|n| *n += 1);
    }

    /// Records a successful login.
    pub(crate) fn record_login(&self) {
        self.journal().logins += 1;
        self.progress.send_modify(|n| *n += 1);
    }

    /// Applies changes and broadcasts their events while still holding the board, so the
    /// order of events on the channel is the order of `seq`, and a list snapshot taken under
    /// the same lock splits the events cleanly into "before" and "after".
    fn apply(&self, f: impl FnOnce(&mut Board) -> Vec<Change>) -> usize {
        let mut board = self.board();
        let changes = f(&mut board);
        let n = changes.len();
        self.publish(&board, changes);
        n
    }

    /// Broadcasts the events of changes just applied to `board` (whose lock the caller holds).
    pub(crate) fn publish(&self, board: &Board, changes: Vec<Change>) {
        for change in changes {
            let bytes = render(board, change);
            self.send(board, Audience::CallReaders, bytes);
            // A member whose state interface changed reports it (`QueueMemberStatus`).
            let device = &board.agents[change.agent].devices[change.device];
            if change.device_changed {
                let bytes = center::member_status_events(board, &device.name);
                self.send(board, Audience::AgentReaders, bytes);
            }
        }
    }

    /// Broadcasts packets; the caller holds the board's lock.
    pub(crate) fn send(&self, board: &Board, audience: Audience, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            // No receiver is not an error: nobody is listening yet.
            let _ = self.events.send(Arc::new(Emitted {
                seq: board.seq,
                audience,
                bytes,
            }));
        }
    }

    /// Sets a device by name; false when no hint holds it.
    pub(crate) fn set_device(&self, device: &str, state: DeviceState) -> bool {
        self.apply(|b| b.set_device(device, state)) > 0
    }

    /// Applies the changes cued for the next list (`before` or `after` it); the caller holds
    /// the board's lock.
    pub(crate) fn apply_cues(&self, board: &mut Board, before: bool) {
        let cued = if before {
            std::mem::take(&mut board.cues.before)
        } else {
            std::mem::take(&mut board.cues.after)
        };
        for (extension, state) in cued {
            let change = board.set_extension_state(&extension, state);
            self.publish(board, vec![change]);
        }
    }
}

/// The `ExtensionStatus` event of an agent, with its current state.
pub(crate) fn status_event(out: &mut Vec<u8>, agent: &model::Agent) {
    let hinted = wire::Hinted {
        exten: &agent.extension,
        context: &agent.context,
        hint: &agent.hint,
        state: agent.state,
    };
    wire::extension_status(out, &hinted);
}

/// The events one change causes: `ExtensionStatus` when the hint's state changed,
/// `DeviceStateChange` when the device's state changed, in the change's order.
pub(crate) fn render(board: &Board, change: Change) -> Vec<u8> {
    let agent = &board.agents[change.agent];
    let device = &agent.devices[change.device];
    let mut out = Vec::with_capacity(256);
    let ext = |out: &mut Vec<u8>| {
        if change.extension_changed {
            status_event(out, agent);
        }
    };
    let dev = |out: &mut Vec<u8>| {
        if change.device_changed {
            wire::device_state_change(out, &device.name, device.state);
        }
    };
    if change.extension_first {
        ext(&mut out);
        dev(&mut out);
    } else {
        dev(&mut out);
        ext(&mut out);
    }
    out
}

/// A running (or ready to run) simulated PBX. Cloning shares the same PBX.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("seed", &self.shared.seed)
            .field("rate", &self.shared.rate)
            .finish_non_exhaustive()
    }
}

/// A value that goes on one header line: not empty, no line break.
fn one_line(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains(['\r', '\n'])
}

fn validate(config: &SimConfig) -> Result<(Mask, Mask), SimError> {
    let bad = |m: String| Err(SimError::Config(m));
    if !one_line(&config.username) {
        return bad("the user name must be non-empty and on one line".into());
    }
    if config.secret.is_empty() || config.secret.contains(['\r', '\n']) {
        return bad("the secret must be non-empty and on one line".into());
    }
    if !one_line(&config.context) {
        return bad("the context must be non-empty and on one line".into());
    }
    let Some(read) = Mask::parse(&config.read).filter(|_| one_line(&config.read)) else {
        return bad(format!(
            "the read classes must be `all`, `on`, `off` or a comma list such as `system,call`, got {:?}",
            config.read
        ));
    };
    let Some(write) = Mask::parse(&config.write).filter(|_| one_line(&config.write)) else {
        return bad(format!(
            "the write classes must be `all`, `on`, `off` or a comma list such as `call,agent`, got {:?}",
            config.write
        ));
    };
    if !config.rate_per_sec.is_finite() || !(0.0..=MAX_RATE).contains(&config.rate_per_sec) {
        return bad(format!(
            "the rate must be between 0 and {MAX_RATE} changes per second, got {}",
            config.rate_per_sec
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for agent in &config.agents {
        let ext = agent.extension.as_str();
        if !one_line(ext) {
            return bad(format!(
                "extension {ext:?} must be non-empty and on one line"
            ));
        }
        let context = agent.context.as_deref().unwrap_or(&config.context);
        if !one_line(context) {
            return bad(format!(
                "extension {ext} has an invalid context {context:?}"
            ));
        }
        if !seen.insert((ext, context.to_ascii_lowercase())) {
            return bad(format!(
                "extension {ext} is listed twice in context {context}"
            ));
        }
        if agent.devices.is_empty() {
            return bad(format!("extension {ext} has a hint without devices"));
        }
        if let Some(d) = agent
            .devices
            .iter()
            .find(|d| d.is_empty() || d.contains(['\r', '\n', '&', ',']))
        {
            return bad(format!("extension {ext} has an invalid device name {d:?}"));
        }
        if let Some(states) = &agent.initial
            && states.len() != agent.devices.len()
        {
            return bad(format!(
                "extension {ext} has {} devices but {} starting states",
                agent.devices.len(),
                states.len()
            ));
        }
    }
    Ok((read, write))
}

impl Simulator {
    /// Builds the simulated PBX. Nothing listens and nothing moves until [`Simulator::serve`].
    pub fn new(config: SimConfig) -> Result<Simulator, SimError> {
        let (read, write) = validate(&config)?;
        let seed = config.seed.unwrap_or_else(rand::random);
        let default_context = config.context;
        let specs = config
            .agents
            .into_iter()
            .map(|a| AgentSpec {
                extension: a.extension,
                context: a.context.unwrap_or_else(|| default_context.clone()),
                devices: a.devices,
                initial: a.initial,
            })
            .collect();
        let mut board = Board::new(default_context, specs, seed);
        if config.call_center && config.rate_per_sec > 0.0 {
            center::staff(&mut board);
        }
        // Enough room for a few seconds of events at the configured rate; a session that
        // falls further behind is closed, as Asterisk closes a session whose writes stall.
        let capacity = (config.rate_per_sec * 4.0).clamp(1024.0, 262_144.0) as usize;
        let (events, _) = broadcast::channel(capacity);
        let (faults, _) = broadcast::channel(64);
        Ok(Simulator {
            shared: Arc::new(Shared {
                username: config.username,
                secret: ami_proto::Secret::new(config.secret),
                read,
                write,
                started_epoch: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                plain_login: config.plain_login,
                auth_failure_delay: config.auth_failure_delay,
                started: Instant::now(),
                rate: config.rate_per_sec,
                seed,
                call_center: config.call_center && config.rate_per_sec > 0.0,
                board: Mutex::new(board),
                events,
                faults,
                next_session: AtomicU64::new(0x5644_0e9d_e620),
                silent: AtomicBool::new(false),
                refuse: AtomicBool::new(false),
                refused_actions: Mutex::new(HashMap::new()),
                list_faults: Mutex::new(std::collections::VecDeque::new()),
                connections: AtomicUsize::new(0),
                journal: Mutex::new(Journal::default()),
                progress: watch::Sender::new(0),
            }),
        })
    }

    /// The seed of the call model (the configured one, or the one picked at random), so a run
    /// can be replayed with `--seed`.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Every extension's current state, in list order: what `ExtensionStateList` would say now.
    pub fn extension_states(&self) -> Vec<(String, ExtensionState)> {
        let board = self.shared.board();
        board
            .agents
            .iter()
            .map(|a| (a.extension.clone(), a.state))
            .collect()
    }

    /// Moves one random agent one step along its call cycle now, with its events.
    pub fn step(&self) {
        self.shared.apply(|b| b.step().into_iter().collect());
    }

    /// Sets a device's state now, as `Setvar DEVICE_STATE(<device>)` would, with its events.
    /// False when no hint holds the device.
    pub fn set_device_state(&self, device: &str, state: DeviceState) -> bool {
        self.shared.set_device(device, state)
    }

    /// Makes an extension's hint report `state` now, with its events: `ExtensionStatus` when
    /// the reported state changes, then `DeviceStateChange` when its phone's device state
    /// changes (as in `e_device_states`); nothing when it already reports `state`. Any code is
    /// reported as given, even one the hint arithmetic never produces. An unknown extension
    /// gets a new hint `Custom:<extension>` in the default context, announced at once.
    pub fn set_extension_state(&self, extension: &str, state: ExtensionState) {
        self.shared
            .apply(|b| vec![b.set_extension_state(extension, state)]);
    }

    /// Like [`Simulator::set_extension_state`] without any event: a change that happened while
    /// the client was not connected; only the next list shows it.
    pub fn set_extension_state_silently(&self, extension: &str, state: ExtensionState) {
        self.shared.board().set_extension_state(extension, state);
    }

    /// Adds a hint after the existing ones, silently (as a dialplan reload does): extension
    /// `extension` in `context`, on device `device`, reporting `state`.
    pub fn add_hint(&self, extension: &str, context: &str, device: &str, state: ExtensionState) {
        self.shared.board().add(extension, context, device, state);
    }

    /// Removes every hint of `extension`. Asterisk sends no event for this; the extension just
    /// disappears from the next list.
    pub fn remove_hint(&self, extension: &str) {
        self.shared.board().remove(extension);
    }

    /// Replaces every hint, silently, with `Custom:<extension>` hints in the default context,
    /// in the order given.
    pub fn replace_hints(&self, hints: &[(&str, ExtensionState)]) {
        let mut board = self.shared.board();
        let extensions: Vec<String> = board.agents.iter().map(|a| a.extension.clone()).collect();
        for extension in extensions {
            board.remove(&extension);
        }
        for (extension, state) in hints {
            board.set_extension_state(extension, *state);
        }
    }

    /// Sends an `ExtensionStatus` event with `state` to the sessions that read `call` events
    /// without changing what the lists report: a stray or repeated event. An unknown extension
    /// is reported with hint `Custom:<extension>` in the default context.
    pub fn emit_extension_status(&self, extension: &str, state: ExtensionState) {
        let board = self.shared.board();
        let default_hint = format!("Custom:{extension}");
        let (context, hint) = board
            .agents
            .iter()
            .find(|a| a.extension == extension)
            .map_or(
                (board.default_context.as_str(), default_hint.as_str()),
                |a| (a.context.as_str(), a.hint.as_str()),
            );
        let mut out = Vec::new();
        let hinted = wire::Hinted {
            exten: extension,
            context,
            hint,
            state,
        };
        wire::extension_status(&mut out, &hinted);
        self.shared.send(&board, Audience::CallReaders, out);
    }

    /// Writes raw bytes to every logged-in session, whatever its event mask.
    pub fn emit_raw(&self, bytes: &[u8]) {
        let board = self.shared.board();
        self.shared.send(&board, Audience::Everyone, bytes.to_vec());
    }

    /// Cues a change for the next `ExtensionStateList`: its events go out just before the list
    /// answer, and the list already shows the new state.
    pub fn cue_before_next_list(&self, extension: &str, state: ExtensionState) {
        let mut board = self.shared.board();
        board.cues.before.push((extension.to_owned(), state));
    }

    /// Cues a change right after the next `ExtensionStateList` answer: the list shows the old
    /// state and the events follow the list.
    pub fn cue_after_next_list(&self, extension: &str, state: ExtensionState) {
        let mut board = self.shared.board();
        board.cues.after.push((extension.to_owned(), state));
    }

    /// Injects a fault into every session open now.
    pub fn inject(&self, fault: Fault) {
        // No receiver: no session to break.
        let _ = self.shared.faults.send(fault);
    }

    /// While true, new connections are accepted and closed at once, before the banner.
    pub fn refuse_connections(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::Relaxed);
    }

    /// From now on every session answers `action` (compared without regard to case) with
    /// `refusal`, as Asterisk does without the module or the rights, instead of running it;
    /// `None` runs it again. `Login`, `Challenge` and `Logoff` are never refused this way (see
    /// [`SimConfig`]'s credentials and [`Simulator::refuse_connections`]).
    pub fn refuse_action(&self, action: &str, refusal: Option<Refusal>) {
        let mut map = self
            .shared
            .refused_actions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = action.trim().to_ascii_lowercase();
        match refusal {
            Some(r) => map.insert(key, r),
            None => map.remove(&key),
        };
    }

    /// Mangles the next `ExtensionStateList` answer (of any session) with `fault`; several
    /// calls cue faults for that many answers, in order. Answers after them are whole again.
    pub fn fault_next_list(&self, fault: ListFault) {
        self.shared
            .list_faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(fault);
    }

    /// While true the PBX writes nothing at all (no banner, no answer, no event), as over a
    /// dead network path; requests are still read and recorded, and stay unanswered.
    pub fn go_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::Relaxed);
    }

    /// Successful logins so far, over all sessions.
    pub fn logins(&self) -> usize {
        self.shared.journal().logins
    }

    /// The `Action` of every request received so far, over all sessions, in arrival order.
    pub fn actions_received(&self) -> Vec<String> {
        self.shared.journal().actions.clone()
    }

    /// Sessions open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The number of sessions open after every open and close so far, with when, in order:
    /// exact where sampling [`Simulator::connections`] could miss a short overlap.
    pub fn connection_history(&self) -> Vec<(std::time::Instant, usize)> {
        self.shared.journal().connections.clone()
    }

    /// Waits until at least `n` logins have succeeded. It has no deadline of its own: wrap it
    /// in the caller's timeout.
    pub async fn wait_for_login(&self, n: usize) {
        self.wait_until(|j| j.logins >= n).await;
    }

    /// Waits until `action` (compared without regard to case) has been received at least `n`
    /// times. No deadline of its own.
    pub async fn wait_for_action(&self, action: &str, n: usize) {
        self.wait_until(|j| {
            j.actions
                .iter()
                .filter(|a| a.eq_ignore_ascii_case(action))
                .count()
                >= n
        })
        .await;
    }

    async fn wait_until(&self, done: impl Fn(&Journal) -> bool) {
        let mut rx = self.shared.progress.subscribe();
        loop {
            // Marking the current value seen before checking means no bump can slip between
            // the check and the wait.
            rx.borrow_and_update();
            if done(&self.shared.journal()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Serves AMI sessions on `listener` and runs the call model until `cancel` fires; then
    /// every session gets `Event: Shutdown` (when it reads `system` events), is closed, and
    /// this returns. Call it once per simulator.
    pub async fn serve(
        &self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), SimError> {
        // A child token stops the sessions and the timer when serving ends for any reason,
        // without cancelling the caller's token.
        let cancel = cancel.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(drive(self.shared.clone(), cancel.clone()));
        let result = loop {
            let accepted = tokio::select! {
                biased;
                () = cancel.cancelled() => break Ok(()),
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) if self.shared.refuse.load(Ordering::Relaxed) => drop(stream),
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "ami-sim: connection");
                    tasks.spawn(session::run(self.shared.clone(), stream, cancel.clone()));
                }
                Err(e) if is_transient_accept_error(&e) => {
                    // Out of file descriptors and similar: wait a little instead of spinning.
                    tracing::warn!(error = %e, "ami-sim: accept failed, retrying");
                    tokio::select! {
                        () = cancel.cancelled() => break Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                Err(e) => break Err(SimError::Io(e)),
            }
            // Reap finished sessions so the set does not grow with every connection.
            while tasks.try_join_next().is_some() {}
        };
        cancel.cancel();
        while tasks.join_next().await.is_some() {}
        result
    }

    /// Binds `addr` (port 0 picks a free one), serves in a background task, and returns the
    /// address clients should connect to.
    pub async fn spawn(
        &self,
        addr: SocketAddr,
        cancel: CancellationToken,
    ) -> Result<(SocketAddr, JoinHandle<Result<(), SimError>>), SimError> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let sim = self.clone();
        let handle = tokio::spawn(async move { sim.serve(listener, cancel).await });
        Ok((local, handle))
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | OutOfMemory
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23) // EMFILE, ENFILE
}

/// Serves a simulator built from `config` on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    cancel: CancellationToken,
) -> Result<(), SimError> {
    Simulator::new(config)?.serve(listener, cancel).await
}

/// Binds `addr`, serves a simulator built from `config` in a background task until `cancel`
/// fires, and returns the bound address and the simulator (to inspect or drive it).
pub async fn spawn(
    config: SimConfig,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<(SocketAddr, Simulator, JoinHandle<Result<(), SimError>>), SimError> {
    let sim = Simulator::new(config)?;
    let (local, handle) = sim.spawn(addr, cancel).await?;
    Ok((local, sim, handle))
}

/// The event timer: applies `rate` changes per second on average, several per tick at high
/// rates, so the count over any stretch of time follows the clock rather than the tick count.
async fn drive(shared: Arc<Shared>, cancel: CancellationToken) {
    let rate = shared.rate;
    if rate <= 0.0 {
        return;
    }
    let period = Duration::from_secs_f64((1.0 / rate).clamp(MIN_PERIOD.as_secs_f64(), 86_400.0));
    let start = Instant::now();
    let mut ticks = tokio::time::interval_at(start + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut done: u64 = 0;
    // The call center moves at a quarter of the cycle's pace (at least one move every four
    // seconds, at most 20 a second), so a viewer can follow a call from queue to hang-up.
    let shift_rate = (rate / 4.0).clamp(0.25, 20.0);
    let mut shift_done: u64 = 0;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // The float-to-integer cast saturates, and elapsed time is finite and positive.
        let due = (start.elapsed().as_secs_f64() * rate).floor() as u64;
        let n = due.saturating_sub(done).min(MAX_BURST);
        done = due;
        shared.apply(|b| (0..n).filter_map(|_| b.step()).collect());
        if shared.call_center {
            let due = (start.elapsed().as_secs_f64() * shift_rate).floor() as u64;
            for _ in 0..due.saturating_sub(shift_done).min(100) {
                shared.cc_change(center::Delivery::Events, |b, p| {
                    center::play(b, p, shared.started_epoch);
                });
            }
            shift_done = due;
        }
    }
}
