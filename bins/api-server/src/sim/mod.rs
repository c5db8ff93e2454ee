//! A built-in AMI simulator: a loopback TCP server that speaks exactly the formats of the real
//! Asterisk 20.20.1 captures (`fixtures/ami/real/`) and moves agents through realistic call
//! cycles, so the dashboard moves on a machine without Asterisk (`api-server --demo`, `ami-sim`).
//!
//! What it answers: `Login` (plain and MD5 challenge), `Challenge`, `Logoff`, `Ping`, `Events`,
//! `ExtensionStateList`, `DeviceStateList`, `ExtensionState` and `Setvar DEVICE_STATE(...)`;
//! any other action gets Asterisk's "Invalid/unknown command" error. Live `ExtensionStatus` and
//! `DeviceStateChange` events go to every logged-in session that reads `call` events.
//!
//! What it deliberately does not do: dialplan, channels, queues, `Command`, presence, TLS, the
//! HTTP flavours of AMI, or per-user permissions (the one configured user may do everything).
//! The lists are always consistent with the events: a list reflects every change whose events
//! the session received before it, and none whose events come after it.

mod agents;
mod model;
mod session;
mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain::{DeviceState, ExtensionNumber, ExtensionState, NewExtension};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use agents::sample_agents;

use model::{AgentSpec, Board, Change};

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
    pub extension: ExtensionNumber,
    /// The hint's devices, joined with `&` in `Hint:`. The first one is the agent's phone,
    /// which the call model drives; further devices only change through `Setvar`.
    pub devices: Vec<String>,
    /// Starting device states, one per device. `None`: the phone starts in a random state of
    /// the call cycle (from the seed) and further devices start `NOT_INUSE`.
    pub initial: Option<Vec<DeviceState>>,
}

impl SimAgent {
    /// An agent whose hint is `Custom:<extension>`, like every hint in the real captures.
    pub fn custom(extension: ExtensionNumber) -> SimAgent {
        let device = format!("Custom:{}", extension.as_str());
        SimAgent {
            extension,
            devices: vec![device],
            initial: None,
        }
    }

    /// An agent whose hint is a SIP phone, `PJSIP/<extension>`.
    pub fn pjsip(extension: ExtensionNumber) -> SimAgent {
        let device = format!("PJSIP/{}", extension.as_str());
        SimAgent {
            extension,
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

impl From<&NewExtension> for SimAgent {
    fn from(ext: &NewExtension) -> SimAgent {
        SimAgent::custom(ext.extension.clone())
    }
}

/// Everything the simulator needs; only binaries read it from flags.
#[derive(Clone)]
pub struct SimConfig {
    /// The manager user name (compared without regard to case, as Asterisk does).
    pub username: String,
    /// The manager secret, for plain and MD5 logins.
    pub secret: String,
    /// The hinted extensions, in the order the lists report them.
    pub agents: Vec<SimAgent>,
    /// Call-cycle changes per second across all agents; 0 keeps every agent still (changes
    /// then only come from `Setvar` or [`Simulator::step`]).
    pub rate_per_sec: f64,
    /// The seed of the call model; `None` picks one at random (see [`Simulator::seed`]).
    pub seed: Option<u64>,
    /// The dialplan context of the hints.
    pub context: String,
    /// How long a failed login waits before its error answer (Asterisk: 1 s).
    pub auth_failure_delay: Duration,
}

impl SimConfig {
    /// A configuration with one change per second, a random seed, context `agents` and
    /// Asterisk's one-second delay after a failed login.
    pub fn new(
        username: impl Into<String>,
        secret: impl Into<String>,
        agents: Vec<SimAgent>,
    ) -> SimConfig {
        SimConfig {
            username: username.into(),
            secret: secret.into(),
            agents,
            rate_per_sec: 1.0,
            seed: None,
            context: DEFAULT_CONTEXT.to_owned(),
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
            .field("agents", &self.agents.len())
            .field("rate_per_sec", &self.rate_per_sec)
            .field("seed", &self.seed)
            .field("context", &self.context)
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

/// One applied change, rendered once for every session that reads events.
#[derive(Debug)]
pub(crate) struct Emitted {
    /// The board's change counter after this change.
    pub(crate) seq: u64,
    /// The event packets, in wire order.
    pub(crate) bytes: Vec<u8>,
}

/// What every session and the event timer share.
pub(crate) struct Shared {
    pub(crate) username: String,
    pub(crate) secret: ami_proto::Secret,
    pub(crate) auth_failure_delay: Duration,
    pub(crate) started: Instant,
    rate: f64,
    seed: u64,
    board: Mutex<Board>,
    events: broadcast::Sender<Arc<Emitted>>,
    next_session: AtomicU64,
}

impl Shared {
    /// Locks the board. No code panics while holding it, so a poisoned lock still holds a
    /// consistent board and is used as is.
    pub(crate) fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver for the events of every change applied from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Emitted>> {
        self.events.subscribe()
    }

    /// A fresh number for `SuccessfulAuth`'s `SessionID`.
    pub(crate) fn session_number(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies changes and broadcasts their events while still holding the board, so the
    /// order of events on the channel is the order of `seq`, and a list snapshot taken under
    /// the same lock splits the events cleanly into "before" and "after".
    fn apply(&self, f: impl FnOnce(&mut Board) -> Vec<Change>) -> usize {
        let mut board = self.board();
        let changes = f(&mut board);
        let n = changes.len();
        for change in changes {
            let bytes = render(&board, change);
            if !bytes.is_empty() {
                // No receiver is not an error: nobody is listening yet.
                let _ = self.events.send(Arc::new(Emitted {
                    seq: board.seq,
                    bytes,
                }));
            }
        }
        n
    }

    /// Sets a device by name; false when no hint holds it.
    pub(crate) fn set_device(&self, device: &str, state: DeviceState) -> bool {
        self.apply(|b| b.set_device(device, state)) > 0
    }
}

/// The events one change causes: `ExtensionStatus` when the hint's state changed,
/// `DeviceStateChange` when the device's state changed, in the change's order.
fn render(board: &Board, change: Change) -> Vec<u8> {
    let agent = &board.agents[change.agent];
    let device = &agent.devices[change.device];
    let mut out = Vec::with_capacity(256);
    let ext = |out: &mut Vec<u8>| {
        if change.extension_changed {
            let hinted = wire::Hinted {
                exten: &agent.extension,
                context: &board.context,
                hint: &agent.hint,
                state: agent.state,
            };
            wire::extension_status(out, &hinted);
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
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("seed", &self.shared.seed)
            .field("rate", &self.shared.rate)
            .finish_non_exhaustive()
    }
}

fn validate(config: &SimConfig) -> Result<(), SimError> {
    let bad = |m: String| Err(SimError::Config(m));
    let has_break = |s: &str| s.contains(['\r', '\n']);
    if config.username.trim().is_empty() || has_break(&config.username) {
        return bad("the user name must be non-empty and on one line".into());
    }
    if config.secret.is_empty() || has_break(&config.secret) {
        return bad("the secret must be non-empty and on one line".into());
    }
    if config.context.trim().is_empty() || has_break(&config.context) {
        return bad("the context must be non-empty and on one line".into());
    }
    if !config.rate_per_sec.is_finite() || !(0.0..=MAX_RATE).contains(&config.rate_per_sec) {
        return bad(format!(
            "the rate must be between 0 and {MAX_RATE} changes per second, got {}",
            config.rate_per_sec
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for agent in &config.agents {
        let ext = agent.extension.as_str();
        if !seen.insert(ext) {
            return bad(format!("extension {ext} is listed twice"));
        }
        if agent.devices.is_empty() {
            return bad(format!("extension {ext} has a hint without devices"));
        }
        if let Some(d) = agent
            .devices
            .iter()
            .find(|d| d.is_empty() || has_break(d) || d.contains('&') || d.contains(','))
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
    Ok(())
}

impl Simulator {
    /// Builds the simulated PBX. Nothing listens and nothing moves until [`Simulator::serve`].
    pub fn new(config: SimConfig) -> Result<Simulator, SimError> {
        validate(&config)?;
        let seed = config.seed.unwrap_or_else(rand::random);
        let specs = config
            .agents
            .into_iter()
            .map(|a| AgentSpec {
                extension: a.extension.as_str().to_owned(),
                devices: a.devices,
                initial: a.initial,
            })
            .collect();
        let board = Board::new(config.context, specs, seed);
        // Enough room for a few seconds of events at the configured rate; a session that
        // falls further behind is closed, as Asterisk closes a session whose writes stall.
        let capacity = (config.rate_per_sec * 4.0).clamp(1024.0, 262_144.0) as usize;
        let (events, _) = broadcast::channel(capacity);
        Ok(Simulator {
            shared: Arc::new(Shared {
                username: config.username,
                secret: ami_proto::Secret::new(config.secret),
                auth_failure_delay: config.auth_failure_delay,
                started: Instant::now(),
                rate: config.rate_per_sec,
                seed,
                board: Mutex::new(board),
                events,
                next_session: AtomicU64::new(0x5644_0e9d_e620),
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
    }
}
