//! The tokio AMI client (feature `tokio`): one background task per manager connection that
//! connects, logs in, correlates actions with their answers by ActionID, collects event lists,
//! streams every other packet as an event, pings, and reconnects with backoff.
//!
//! Two layers: [`session::Session`] is the protocol as a sans-IO state machine (bytes and the
//! current time in; bytes to write, action answers, finished lists and notices out; login,
//! correlation, list collection and keepalive decisions all live there), and `conn.rs` is the
//! thin tokio supervisor around it (socket, timers, reconnect with capped exponential backoff
//! and jitter, delivery to the owner). Any action can be sent and awaited the same way: its
//! `Response` with [`ClientHandle::send`], its whole event list with
//! [`ClientHandle::send_list`] (`ExtensionStateList`, `QueueStatus`, `CoreShowChannels`...).
//!
//! Every packet read from a connection gets a `wire_seq` that rises by one per packet, and every
//! connection gets a new `generation`. Events and list results carry both, so a consumer can
//! merge an `ExtensionStateList` snapshot with the live events around it in exact wire order.
//!
//! Flow control: the socket reader never waits on the consumer. Events go into a bounded channel
//! (`ClientConfig::event_buffer`, 65 536 by default) with `try_send`; if the consumer falls that
//! far behind, further events are dropped and counted, and a `ClientEvent::Lagged` notice is
//! queued as soon as there is room again, so the consumer knows it must resync. Blocking the
//! reader instead would make Asterisk drop the session after its 100 ms `writetimeout`
//! (ami-reference P17), which loses events just the same and also the connection; an unbounded
//! channel would turn a stuck consumer into unbounded memory.

mod conn;
pub mod session;

pub use session::{Expect, RequestId, Session};

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{Action, DecodeError, EncodeError, Packet, Secret};

/// How the client proves its identity at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// `Login` with a plain `Secret` header.
    #[default]
    Plain,
    /// `Challenge` then `Login` with `Key` = MD5(challenge ‖ secret); the secret never crosses
    /// the wire.
    Md5,
}

/// Everything the client needs to know. Build it with [`ClientConfig::new`] and adjust fields.
///
/// `Debug` prints the secret as `***`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the manager interface, e.g. `127.0.0.1:5038`.
    pub addr: String,
    /// The `manager.conf` user.
    pub username: String,
    /// Its secret.
    pub secret: Secret,
    /// Plain or MD5 login.
    pub auth: AuthMethod,
    /// The `Events` login header (`on`, `off`, `call,system`...). Empty sends no header, which
    /// leaves the server's default (all classes the user may read).
    pub events: String,
    /// Limit for the TCP connect.
    pub connect_timeout: Duration,
    /// Limit for each action's answer (a whole list for `send_list`), and for the login exchange.
    pub action_timeout: Duration,
    /// How often to send `Ping` on an idle or busy connection.
    pub ping_interval: Duration,
    /// How long to wait for the `Pong` before declaring the connection dead.
    pub ping_timeout: Duration,
    /// First reconnect delay; doubles after each failed attempt.
    pub backoff_initial: Duration,
    /// Cap on the reconnect delay.
    pub backoff_max: Duration,
    /// Capacity of the event channel (see the module docs on flow control).
    pub event_buffer: usize,
    /// Size cap on one received packet.
    pub max_packet_size: usize,
}

impl ClientConfig {
    /// A configuration with the defaults: plain login, `Events: on`, connect timeout 5 s,
    /// action timeout 10 s, ping every 20 s with a 5 s deadline, backoff 0.5 s doubling to 30 s.
    pub fn new(
        addr: impl Into<String>,
        username: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> ClientConfig {
        ClientConfig {
            addr: addr.into(),
            username: username.into(),
            secret: secret.into(),
            auth: AuthMethod::Plain,
            events: "on".to_owned(),
            connect_timeout: Duration::from_secs(5),
            action_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            event_buffer: 65_536,
            max_packet_size: crate::DEFAULT_MAX_PACKET_SIZE,
        }
    }
}

/// A value together with its place on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced<T> {
    /// The connection it was read on; rises by one per TCP connection attempt.
    pub generation: u64,
    /// Its position among all packets read on that connection (the banner is 0).
    pub wire_seq: u64,
    /// The value.
    pub item: T,
}

impl<T> Deref for Sequenced<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.item
    }
}

/// The answer to [`ClientHandle::send`]: the `Response` packet, whatever its status.
pub type ActionResponse = Sequenced<Packet>;

/// The answer to [`ClientHandle::send_list`]: the opening response, the items, and the
/// `EventList: Complete` event, each with its wire position.
#[derive(Debug, Clone)]
pub struct EventListResult {
    /// The connection the list was read on.
    pub generation: u64,
    /// `Response: Success` with `EventList: start`.
    pub response: Packet,
    /// Wire position of `response`.
    pub response_wire_seq: u64,
    /// The list items in wire order.
    pub items: Vec<Sequenced<Packet>>,
    /// The closing event, e.g. `ExtensionStateListComplete`.
    pub complete: Packet,
    /// Wire position of `complete`.
    pub complete_wire_seq: u64,
}

impl EventListResult {
    /// The `ListItems` count the server announced in the closing event.
    pub fn declared_items(&self) -> Option<u64> {
        crate::views::ListComplete::from_packet(&self.complete).and_then(|c| c.list_items())
    }
}

/// What the client tells its owner, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Logged in. `reconnected` is true for every login after the first: events were missed
    /// while the link was down, so the owner should resync.
    Connected {
        /// The new connection's generation.
        generation: u64,
        /// True when an earlier connection of this client had logged in.
        reconnected: bool,
        /// The banner line, e.g. `Asterisk Call Manager/9.0.0`.
        banner: Option<String>,
    },
    /// A logged-in connection ended; pending actions have failed with `ConnectionLost`.
    Disconnected {
        /// The generation that ended.
        generation: u64,
        /// Why.
        reason: DisconnectReason,
    },
    /// A connection attempt failed before login (refused, timed out...). Retried with backoff.
    ConnectFailed {
        /// Why.
        reason: DisconnectReason,
    },
    /// The server refused the login (`Authentication failed`...). Retried with backoff.
    LoginFailed {
        /// The server's `Message`.
        message: String,
    },
    /// A packet that is not the answer to a pending action: an asynchronous event, or a stray
    /// response without a known ActionID.
    Event(Sequenced<Packet>),
    /// A received packet was malformed or oversized and was skipped; the connection goes on.
    ProtocolError {
        /// The connection it happened on.
        generation: u64,
        /// What was wrong, with its byte offset.
        error: DecodeError,
    },
    /// The owner fell behind and `dropped` events were discarded; resync.
    Lagged {
        /// How many events were lost.
        dropped: u64,
    },
}

/// Why a connection ended or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server closed the connection at a packet boundary.
    #[error("the server closed the connection")]
    Closed,
    /// The server closed the connection inside a packet.
    #[error("the server closed the connection inside a packet: {0}")]
    ClosedMidPacket(DecodeError),
    /// A socket error.
    #[error("I/O error: {0}")]
    Io(String),
    /// The TCP connect did not finish in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The banner and login exchange did not finish in time.
    #[error("login timed out")]
    LoginTimeout,
    /// The peer greeted with something other than an `Asterisk Call Manager/x.y` banner (an
    /// HTTP or SSH server, or garbage): it is not an Asterisk manager. Holds a bounded,
    /// sanitized piece of what it sent.
    #[error(
        "the peer is not an Asterisk manager: it greeted with \"{0}\" instead of an \"Asterisk Call Manager/x.y\" banner"
    )]
    NotAmi(String),
    /// The peer accepted the connection but sent no banner before the login deadline (an
    /// HTTP server waits for a request; an Asterisk manager greets at once).
    #[error(
        "the peer sent no \"Asterisk Call Manager/x.y\" banner in time: it is not an Asterisk manager, or it is stuck"
    )]
    NoBanner,
    /// No `Pong` arrived before the keepalive deadline: the peer is silent or the path is dead.
    #[error("no answer to Ping before the deadline")]
    KeepaliveTimeout,
    /// The server answered the login in a way the client does not understand.
    #[error("unexpected login answer: {0}")]
    Protocol(String),
    /// The client was shut down.
    #[error("the client shut down")]
    Shutdown,
}

/// Why an action did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// There is no logged-in connection right now.
    #[error("not connected to the manager")]
    NotConnected,
    /// The connection ended before the answer arrived.
    #[error("the connection was lost before the answer arrived: {0}")]
    ConnectionLost(DisconnectReason),
    /// No (complete) answer within the action timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// `send_list`: the server answered `Response: Error`, so no list follows.
    #[error("the server refused the action: {message}")]
    ActionFailed {
        /// The server's `Message`.
        message: String,
    },
    /// `send_list`: the server answered without `EventList: start`.
    #[error("the action did not start an event list")]
    NotAList,
    /// The action cannot be encoded (line break in a value...).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The client task has stopped.
    #[error("the client has shut down")]
    Shutdown,
}

impl ClientError {
    /// True when trying again later may succeed (no connection, lost connection, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::NotConnected | ClientError::ConnectionLost(_) | ClientError::Timeout(_)
        )
    }
}

/// The state of the link to the PBX, published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// True while a logged-in connection is up.
    pub connected: bool,
    /// When `connected` last changed (the client's start, before the first login).
    pub since: SystemTime,
    /// The current or last connection's generation (0 before the first attempt).
    pub generation: u64,
}

/// A request from a handle to the client task.
pub(crate) enum Command {
    Send {
        action: Action,
        reply: oneshot::Sender<Result<ActionResponse, ClientError>>,
    },
    SendList {
        action: Action,
        reply: oneshot::Sender<Result<EventListResult, ClientError>>,
    },
}

impl Command {
    pub(crate) fn fail(self, error: ClientError) {
        // The caller may have timed out and gone; then nobody needs the error.
        match self {
            Command::Send { reply, .. } => drop(reply.send(Err(error))),
            Command::SendList { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// A cheap, cloneable handle for sending actions to the client task.
#[derive(Clone)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    link: watch::Receiver<LinkState>,
    action_timeout: Duration,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle")
            .field("link", &*self.link.borrow())
            .finish_non_exhaustive()
    }
}

impl ClientHandle {
    /// Sends `action` with a fresh ActionID and returns its `Response` packet, success or error.
    ///
    /// For list actions use [`ClientHandle::send_list`]; with `send`, their items would arrive
    /// on the event stream.
    pub async fn send(&self, action: Action) -> Result<ActionResponse, ClientError> {
        action.validate()?;
        let (reply, answer) = oneshot::channel();
        self.request(Command::Send { action, reply }, answer).await
    }

    /// Sends a list action (`ExtensionStateList`, `DeviceStateList`...) and returns the whole
    /// list once its `EventList: Complete` event has arrived.
    pub async fn send_list(&self, action: Action) -> Result<EventListResult, ClientError> {
        action.validate()?;
        let (reply, answer) = oneshot::channel();
        self.request(Command::SendList { action, reply }, answer)
            .await
    }

    async fn request<T>(
        &self,
        command: Command,
        answer: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let exchange = async {
            self.commands
                .send(command)
                .await
                .map_err(|_| ClientError::Shutdown)?;
            answer.await.map_err(|_| ClientError::Shutdown)?
        };
        tokio::time::timeout(self.action_timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.action_timeout))?
    }

    /// A receiver of the link state, for health reports and the dashboard's PBX indicator.
    pub fn link(&self) -> watch::Receiver<LinkState> {
        self.link.clone()
    }

    /// True while a logged-in connection is up.
    pub fn is_connected(&self) -> bool {
        self.link.borrow().connected
    }

    /// Waits until the client task has stopped (after its cancellation token fired and the
    /// `Logoff` went out).
    pub async fn stopped(&self) {
        let mut link = self.link.clone();
        while link.changed().await.is_ok() {}
    }
}

/// The entry point: spawns the client task.
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Spawns the client task on the current tokio runtime. It runs until `cancel` fires, then
    /// sends `Logoff` if connected and stops. Must be called inside a runtime.
    pub fn spawn(
        config: ClientConfig,
        cancel: CancellationToken,
    ) -> (ClientHandle, mpsc::Receiver<ClientEvent>) {
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer.max(16));
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let (link_tx, link_rx) = watch::channel(LinkState {
            connected: false,
            since: SystemTime::now(),
            generation: 0,
        });
        let handle = ClientHandle {
            commands: commands_tx,
            link: link_rx,
            action_timeout: config.action_timeout,
        };
        let supervisor =
            conn::Supervisor::new(Arc::new(config), cancel, commands_rx, events_tx, link_tx);
        tokio::spawn(supervisor.run());
        (handle, events_rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_secret() {
        let config = ClientConfig::new("127.0.0.1:5038", "monitor", "s3cr3t-value");
        let text = format!("{config:?}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("***"), "{text}");
        assert!(text.contains("monitor"), "{text}");
    }

    #[test]
    fn transient_errors() {
        assert!(ClientError::NotConnected.is_transient());
        assert!(ClientError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(ClientError::ConnectionLost(DisconnectReason::Closed).is_transient());
        assert!(!ClientError::Shutdown.is_transient());
        assert!(!ClientError::NotAList.is_transient());
    }
}
