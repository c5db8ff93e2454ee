//! The sans-IO client session: one manager connection, from the banner through login, action
//! correlation, event lists and keepalive to logoff, as a state machine with no IO and no clock.
//!
//! The owner feeds it what the socket delivered ([`Session::receive`], [`Session::receive_eof`],
//! or already decoded frames with [`Session::receive_frame`]) and the current time, asks it to
//! send actions ([`Session::request`]), wakes it at [`Session::poll_timeout`] with
//! [`Session::handle_timeout`], and takes what it decided from [`Session::poll_output`]: bytes
//! to write, finished action answers, finished event lists, notices for the application, and
//! finally why the connection is over. The tokio supervisor in `conn.rs` is one such owner; the
//! unit tests below are another.
//!
//! Every frame read gets a `wire_seq` that rises by one (the banner is 0), so list items and
//! live events can be merged in exact wire order. Every ActionID this session sends is
//! `es-<generation>-<n>`; a packet carrying any other ActionID is not ours and goes to the
//! application as an event.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{
    ActionResponse, AuthMethod, ClientConfig, ClientError, ClientEvent, DisconnectReason,
    EventListResult, Sequenced,
};
use crate::views::Response;
use crate::{Action, DecodeError, Decoder, Frame, Kind, Packet};

/// How long a logoff waits for `Response: Goodbye` before the session ends anyway.
pub const LOGOFF_GRACE: Duration = Duration::from_secs(1);

/// How every Asterisk manager greets (ami-reference §2).
const BANNER_PREFIX: &[u8] = b"Asterisk Call Manager/";

/// At most this many bytes of a non-AMI peer's greeting are quoted in errors and logs.
const GREETING_QUOTE: usize = 64;

/// A bounded, printable piece of what a peer that is not an Asterisk manager sent: its first
/// line, at most [`GREETING_QUOTE`] bytes, control characters escaped (it ends up in logs and
/// `/readyz`, so it must not carry terminal escapes or line breaks).
fn quote_greeting(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let cut = line.len().min(GREETING_QUOTE);
    let mut out = String::with_capacity(cut + 3);
    for c in String::from_utf8_lossy(&line[..cut]).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut < line.len() {
        out.push_str("...");
    }
    out
}

/// Names one action sent through [`Session::request`]; its answer comes back with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    generation: u64,
    number: u64,
}

impl RequestId {
    /// The connection the action was sent on.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ActionID it carries on the wire, e.g. `es-1-3`.
    pub fn action_id(&self) -> String {
        format!("es-{}-{}", self.generation, self.number)
    }
}

/// What answer an action is awaited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The `Response` packet with the action's ActionID, whatever its status.
    Response,
    /// An event list: `Response: Success` with `EventList: start`, the items, and the event
    /// with `EventList: Complete` (`ExtensionStateList`, `QueueStatus`, `CoreShowChannels`...).
    List,
}

/// What the session decided; take these with [`Session::poll_output`] after every input.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Bytes to write to the socket, in this order.
    Transmit(Vec<u8>),
    /// The login was accepted; actions may be sent now. Events that arrived during the login
    /// follow this output.
    LoggedIn {
        /// The banner line, e.g. `Asterisk Call Manager/9.0.0`.
        banner: Option<String>,
    },
    /// The server refused the login. The session is over: this is its last output.
    LoginFailed {
        /// The server's `Message`.
        message: String,
    },
    /// The answer to a [`Expect::Response`] request.
    Response {
        /// The request it answers.
        request: RequestId,
        /// The response packet, or why there is none.
        result: Result<ActionResponse, ClientError>,
    },
    /// The answer to an [`Expect::List`] request.
    List {
        /// The request it answers.
        request: RequestId,
        /// The whole list, or why there is none.
        result: Result<EventListResult, ClientError>,
    },
    /// For the application: an event (or a response that answers none of our actions), or a
    /// packet that could not be decoded.
    Notice(ClientEvent),
    /// The session is over (pending requests have been answered with an error just before).
    /// This is its last output.
    Closed {
        /// Why.
        reason: DisconnectReason,
    },
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected, waiting for the banner (the first frame starts the login).
    Greeting,
    /// `Challenge` or `Login` sent, waiting for the answer.
    LoggingIn,
    /// Logged in: actions may be sent.
    Ready,
    /// `Logoff` sent, waiting for `Goodbye`; answers to earlier actions are still delivered.
    LoggingOff,
    /// Over; nothing more happens.
    Closed,
}

/// Why an ActionID of ours is awaited.
#[derive(Debug)]
enum Purpose {
    /// A caller's action awaiting its response.
    Response,
    /// A caller's list action; `response` is set once `EventList: start` arrived.
    List {
        response: Option<Sequenced<Packet>>,
        items: Vec<Sequenced<Packet>>,
    },
    Challenge,
    Login,
    Ping,
    Logoff,
}

#[derive(Debug)]
struct Pending {
    purpose: Purpose,
    /// When a caller's action gives up; internal actions have their own timers.
    deadline: Option<Instant>,
}

/// One AMI connection as a state machine. See the module docs.
pub struct Session {
    config: Arc<ClientConfig>,
    generation: u64,
    prefix: String,
    phase: Phase,
    decoder: Decoder,
    buf: BytesMut,
    wire_seq: u64,
    next_action: u64,
    pending: HashMap<u64, Pending>,
    /// Caller actions that timed out, and what they awaited: their late answers are dropped
    /// instead of being passed on as events.
    expired: HashMap<u64, Expect>,
    banner: Option<String>,
    /// Notices that arrived during the login; released after `LoggedIn`.
    early: Vec<ClientEvent>,
    outputs: VecDeque<Output>,
    /// The login deadline (greeting, logging in) or the logoff deadline (logging off).
    phase_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    ping_deadline: Option<Instant>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("generation", &self.generation)
            .field("phase", &self.phase)
            .field("wire_seq", &self.wire_seq)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for a connection that has just been made; `generation` numbers the
    /// connection. The banner and login must finish within `config.action_timeout` of `now`.
    pub fn new(config: Arc<ClientConfig>, generation: u64, now: Instant) -> Session {
        let decoder = Decoder::with_max_packet_size(config.max_packet_size);
        let login_deadline = now.checked_add(config.action_timeout);
        Session {
            config,
            generation,
            prefix: format!("es-{generation}-"),
            phase: Phase::Greeting,
            decoder,
            buf: BytesMut::new(),
            wire_seq: 0,
            next_action: 0,
            pending: HashMap::new(),
            expired: HashMap::new(),
            banner: None,
            early: Vec::new(),
            outputs: VecDeque::new(),
            phase_deadline: login_deadline,
            next_ping: None,
            ping_deadline: None,
        }
    }

    /// The connection's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where the session is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The next output, in order; `None` once all were taken.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Bytes read from the socket.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.phase == Phase::Greeting && !self.greeting_may_be_banner() {
            let quoted = quote_greeting(&self.buf);
            self.close(DisconnectReason::NotAmi(quoted));
            return;
        }
        while self.phase != Phase::Closed {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => self.receive_frame(frame, now),
                Ok(None) => break,
                Err(error) => self.protocol_error(error),
            }
        }
    }

    /// Whether the bytes received so far, before any frame, can still be the start of an
    /// `Asterisk Call Manager/` banner. A peer that sends anything else first (an SSH server's
    /// `SSH-2.0-...`, an HTTP answer, garbage) is not an Asterisk manager, which is better said
    /// at once than after the login deadline.
    fn greeting_may_be_banner(&self) -> bool {
        let n = self.buf.len().min(BANNER_PREFIX.len());
        self.buf[..n] == BANNER_PREFIX[..n]
    }

    /// The socket reached end of stream: the rest of the buffer is decoded, then the session
    /// closes (`ClosedMidPacket` when the stream ended inside a packet).
    pub fn receive_eof(&mut self, now: Instant) {
        if self.phase == Phase::Greeting
            && !self.buf.is_empty()
            && !self.buf.starts_with(BANNER_PREFIX)
        {
            let quoted = quote_greeting(&self.buf);
            self.close(DisconnectReason::NotAmi(quoted));
            return;
        }
        while self.phase != Phase::Closed {
            match self.decoder.decode_eof(&mut self.buf) {
                Ok(Some(frame)) => self.receive_frame(frame, now),
                Ok(None) => {
                    let reason = if self.phase == Phase::LoggingOff {
                        DisconnectReason::Shutdown
                    } else {
                        DisconnectReason::Closed
                    };
                    self.close(reason);
                }
                Err(error) if error.is_end_of_stream() => {
                    let reason = if self.phase == Phase::LoggingOff {
                        DisconnectReason::Shutdown
                    } else {
                        DisconnectReason::ClosedMidPacket(error)
                    };
                    self.close(reason);
                }
                Err(error) => self.protocol_error(error),
            }
        }
    }

    /// One decoded frame, for an owner that runs its own [`Decoder`]: it is numbered and
    /// handled exactly like a frame decoded from [`Session::receive`].
    pub fn receive_frame(&mut self, frame: Frame, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let wire_seq = self.wire_seq;
        self.wire_seq += 1;
        if self.phase == Phase::Greeting {
            match &frame {
                Frame::Banner(banner) => self.banner = Some(banner.line().to_owned()),
                Frame::Packet(packet) => {
                    // Only an Asterisk manager greets first with its banner; whatever else
                    // talks first is not one, and logging in to it would only wait for the
                    // login deadline.
                    let quoted = quote_greeting(packet.as_bytes());
                    self.close(DisconnectReason::NotAmi(quoted));
                    return;
                }
            }
            self.start_login();
        }
        if let Frame::Packet(item) = frame {
            self.dispatch(
                Sequenced {
                    generation: self.generation,
                    wire_seq,
                    item,
                },
                now,
            );
        }
    }

    /// Sends `action` with a fresh ActionID; its answer comes out as [`Output::Response`] or
    /// [`Output::List`] (per `expect`) with the returned id, at the latest after
    /// `action_timeout`. Refused unless the session is logged in.
    pub fn request(
        &mut self,
        action: Action,
        expect: Expect,
        now: Instant,
    ) -> Result<RequestId, ClientError> {
        match self.phase {
            Phase::Ready => {}
            Phase::LoggingOff => return Err(ClientError::Shutdown),
            Phase::Greeting | Phase::LoggingIn | Phase::Closed => {
                return Err(ClientError::NotConnected);
            }
        }
        let purpose = match expect {
            Expect::Response => Purpose::Response,
            Expect::List => Purpose::List {
                response: None,
                items: Vec::new(),
            },
        };
        let deadline = now.checked_add(self.config.action_timeout);
        let number = self.transmit(&action, purpose, deadline)?;
        Ok(RequestId {
            generation: self.generation,
            number,
        })
    }

    /// Starts a clean logoff: sends `Logoff` and closes with [`DisconnectReason::Shutdown`] on
    /// `Goodbye`, on end of stream or after [`LOGOFF_GRACE`]. Before the login is done there is
    /// nothing to log off from and the session closes at once.
    pub fn logoff(&mut self, now: Instant) {
        match self.phase {
            Phase::Ready => {
                self.next_ping = None;
                self.ping_deadline = None;
                self.phase = Phase::LoggingOff;
                self.phase_deadline = now.checked_add(LOGOFF_GRACE);
                if self
                    .transmit(&Action::logoff(), Purpose::Logoff, None)
                    .is_err()
                {
                    self.close(DisconnectReason::Shutdown);
                }
            }
            Phase::Greeting | Phase::LoggingIn => self.close(DisconnectReason::Shutdown),
            Phase::LoggingOff | Phase::Closed => {}
        }
    }

    /// Ends the session for a reason found outside it (a socket error...): every pending
    /// request is answered with an error, then [`Output::Closed`]. Does nothing once closed.
    pub fn close(&mut self, reason: DisconnectReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.phase_deadline = None;
        self.next_ping = None;
        self.ping_deadline = None;
        self.early.clear();
        let error = match &reason {
            DisconnectReason::Shutdown => ClientError::Shutdown,
            other => ClientError::ConnectionLost(other.clone()),
        };
        let mut pending: Vec<(u64, Pending)> = self.pending.drain().collect();
        pending.sort_unstable_by_key(|(number, _)| *number);
        for (number, pending) in pending {
            self.answer_error(number, pending.purpose, error.clone());
        }
        self.outputs.push_back(Output::Closed { reason });
    }

    /// The next instant at which [`Session::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let actions = self.pending.values().filter_map(|p| p.deadline);
        [self.phase_deadline, self.next_ping, self.ping_deadline]
            .into_iter()
            .flatten()
            .chain(actions)
            .min()
    }

    /// Acts on every timer that is due at `now`: the login or logoff deadline, the keepalive
    /// (send `Ping`; no answer in `ping_timeout` closes with `KeepaliveTimeout`) and caller
    /// actions that got no (complete) answer in `action_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        match self.phase {
            Phase::Closed => return,
            Phase::Greeting if due(self.phase_deadline) => {
                let reason = if self.buf.is_empty() {
                    DisconnectReason::NoBanner
                } else {
                    DisconnectReason::NotAmi(quote_greeting(&self.buf))
                };
                self.close(reason);
                return;
            }
            Phase::LoggingIn if due(self.phase_deadline) => {
                self.close(DisconnectReason::LoginTimeout);
                return;
            }
            Phase::LoggingOff if due(self.phase_deadline) => {
                self.close(DisconnectReason::Shutdown);
                return;
            }
            _ => {}
        }
        if due(self.ping_deadline) {
            self.close(DisconnectReason::KeepaliveTimeout);
            return;
        }
        self.expire_actions(now);
        if self.phase == Phase::Ready && due(self.next_ping) {
            self.next_ping = now.checked_add(self.ping_interval());
            if self.ping_deadline.is_none()
                && self.transmit(&Action::ping(), Purpose::Ping, None).is_ok()
            {
                self.ping_deadline = now.checked_add(self.config.ping_timeout);
            }
        }
    }

    fn ping_interval(&self) -> Duration {
        self.config.ping_interval.max(Duration::from_millis(1))
    }

    /// Answers every caller action whose deadline has passed with `Timeout`.
    fn expire_actions(&mut self, now: Instant) {
        let mut due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(number, _)| *number)
            .collect();
        due.sort_unstable();
        for number in due {
            let Some(pending) = self.pending.remove(&number) else {
                continue;
            };
            let expect = match pending.purpose {
                Purpose::List { .. } => Expect::List,
                _ => Expect::Response,
            };
            self.expired.insert(number, expect);
            self.answer_error(
                number,
                pending.purpose,
                ClientError::Timeout(self.config.action_timeout),
            );
        }
    }

    /// Answers a caller's pending action with `error`; internal actions need no answer.
    fn answer_error(&mut self, number: u64, purpose: Purpose, error: ClientError) {
        let request = RequestId {
            generation: self.generation,
            number,
        };
        let output = match purpose {
            Purpose::Response => Output::Response {
                request,
                result: Err(error),
            },
            Purpose::List { .. } => Output::List {
                request,
                result: Err(error),
            },
            Purpose::Challenge | Purpose::Login | Purpose::Ping | Purpose::Logoff => return,
        };
        self.outputs.push_back(output);
    }

    /// Encodes `action` with the next ActionID, registers `purpose` under it and queues the
    /// bytes. Registered before the bytes leave, so the answer can never arrive first.
    fn transmit(
        &mut self,
        action: &Action,
        purpose: Purpose,
        deadline: Option<Instant>,
    ) -> Result<u64, ClientError> {
        let number = self.next_action + 1;
        let id = format!("{}{number}", self.prefix);
        let mut bytes = Vec::with_capacity(128);
        action.encode_with_action_id(&id, &mut bytes)?;
        self.next_action = number;
        self.pending.insert(number, Pending { purpose, deadline });
        self.outputs.push_back(Output::Transmit(bytes));
        Ok(number)
    }

    /// The first frame arrived: log in (with a `Challenge` first for MD5).
    fn start_login(&mut self) {
        self.phase = Phase::LoggingIn;
        let sent = match self.config.auth {
            AuthMethod::Plain => {
                let login =
                    self.login_action(Action::login(&self.config.username, &self.config.secret));
                self.transmit(&login, Purpose::Login, None)
            }
            AuthMethod::Md5 => self.transmit(&Action::challenge_md5(), Purpose::Challenge, None),
        };
        if let Err(error) = sent {
            self.close(DisconnectReason::Protocol(format!(
                "cannot encode the login: {error}"
            )));
        }
    }

    /// Adds the configured `Events` header to a login action.
    fn login_action(&self, login: Action) -> Action {
        if self.config.events.is_empty() {
            login
        } else {
            login.header("Events", self.config.events.as_str())
        }
    }

    /// The correlation algorithm of ami-reference §3: a response with a known ActionID settles
    /// its action; an event with the ActionID of a started list is an item (or its end);
    /// everything else is an event for the application.
    fn dispatch(&mut self, packet: Sequenced<Packet>, now: Instant) {
        let Some(number) = self.our_action(&packet.item) else {
            self.notice(ClientEvent::Event(packet));
            return;
        };
        match packet.kind() {
            Kind::Response => match self.pending.remove(&number) {
                Some(pending) => self.settle(number, pending, packet, now),
                None => self.late(number, packet),
            },
            Kind::Event => match self.pending.get_mut(&number) {
                Some(Pending {
                    purpose:
                        Purpose::List {
                            response: Some(_),
                            items,
                        },
                    ..
                }) => {
                    if packet.has("EventList", "Complete") {
                        self.complete_list(number, packet);
                    } else {
                        items.push(packet);
                    }
                }
                Some(_) => self.notice(ClientEvent::Event(packet)),
                None => self.late(number, packet),
            },
            _ => self.notice(ClientEvent::Event(packet)),
        }
    }

    /// A packet with one of our ActionIDs that nothing awaits: the late answer of an action that
    /// timed out is dropped; anything else is passed on as an event.
    fn late(&mut self, number: u64, packet: Sequenced<Packet>) {
        match self.expired.get(&number) {
            Some(Expect::Response) => {
                self.expired.remove(&number);
            }
            Some(Expect::List) => {
                let list_goes_on = match packet.kind() {
                    Kind::Response => {
                        Response::from_packet(&packet.item).is_some_and(|r| r.is_list_start())
                    }
                    _ => !packet.has("EventList", "Complete"),
                };
                if !list_goes_on {
                    self.expired.remove(&number);
                }
            }
            None => self.notice(ClientEvent::Event(packet)),
        }
    }

    fn complete_list(&mut self, number: u64, complete: Sequenced<Packet>) {
        let Some(Pending {
            purpose:
                Purpose::List {
                    response: Some(response),
                    items,
                },
            ..
        }) = self.pending.remove(&number)
        else {
            return;
        };
        self.outputs.push_back(Output::List {
            request: RequestId {
                generation: self.generation,
                number,
            },
            result: Ok(EventListResult {
                generation: self.generation,
                response: response.item,
                response_wire_seq: response.wire_seq,
                items,
                complete_wire_seq: complete.wire_seq,
                complete: complete.item,
            }),
        });
    }

    /// Handles the response to our pending action `number`.
    fn settle(&mut self, number: u64, pending: Pending, packet: Sequenced<Packet>, now: Instant) {
        let request = RequestId {
            generation: self.generation,
            number,
        };
        match pending.purpose {
            Purpose::Response => self.outputs.push_back(Output::Response {
                request,
                result: Ok(packet),
            }),
            Purpose::List {
                response: None,
                items,
            } => {
                let view = Response::from_packet(&packet.item);
                if view.as_ref().is_some_and(|v| v.is_list_start()) {
                    self.pending.insert(
                        number,
                        Pending {
                            purpose: Purpose::List {
                                response: Some(packet),
                                items,
                            },
                            deadline: pending.deadline,
                        },
                    );
                    return;
                }
                let error = match view {
                    Some(view) if view.is_error() => ClientError::ActionFailed {
                        message: view.message().map(|m| m.into_owned()).unwrap_or_default(),
                    },
                    _ => ClientError::NotAList,
                };
                self.outputs.push_back(Output::List {
                    request,
                    result: Err(error),
                });
            }
            list @ Purpose::List {
                response: Some(_), ..
            } => {
                // A second response for a list that already started is not ours to interpret.
                self.pending.insert(
                    number,
                    Pending {
                        purpose: list,
                        deadline: pending.deadline,
                    },
                );
                self.notice(ClientEvent::Event(packet));
            }
            Purpose::Challenge => self.on_challenge(&packet.item),
            Purpose::Login => self.on_login(&packet.item, now),
            Purpose::Ping => self.ping_deadline = None,
            Purpose::Logoff => self.close(DisconnectReason::Shutdown),
        }
    }

    /// The answer to `Challenge`: log in with the MD5 key, or give up.
    fn on_challenge(&mut self, answer: &Packet) {
        let challenge = match answer.get("Challenge") {
            Some(challenge) if !answer.is(Kind::Response, "Error") => challenge.into_owned(),
            _ => return self.login_failed(answer),
        };
        let login = self.login_action(Action::login_md5(
            &self.config.username,
            &challenge,
            &self.config.secret,
        ));
        if let Err(error) = self.transmit(&login, Purpose::Login, None) {
            self.close(DisconnectReason::Protocol(format!(
                "cannot encode the login: {error}"
            )));
        }
    }

    /// The answer to `Login`.
    fn on_login(&mut self, answer: &Packet, now: Instant) {
        // Only `Success` logs in (`Response::is_success` would also take `Goodbye`).
        if !answer.is(Kind::Response, "Success") {
            return self.login_failed(answer);
        }
        self.phase = Phase::Ready;
        self.phase_deadline = None;
        self.next_ping = now.checked_add(self.ping_interval());
        self.outputs.push_back(Output::LoggedIn {
            banner: self.banner.clone(),
        });
        for notice in std::mem::take(&mut self.early) {
            self.outputs.push_back(Output::Notice(notice));
        }
    }

    fn login_failed(&mut self, answer: &Packet) {
        self.phase = Phase::Closed;
        self.phase_deadline = None;
        self.pending.clear();
        self.early.clear();
        let message = answer
            .get("Message")
            .map(|m| m.into_owned())
            .unwrap_or_else(|| format!("unexpected answer {}", answer.name().unwrap_or_default()));
        self.outputs.push_back(Output::LoginFailed { message });
    }

    /// Passes a notice on, or holds it until the login is done.
    fn notice(&mut self, notice: ClientEvent) {
        match self.phase {
            Phase::Greeting | Phase::LoggingIn => self.early.push(notice),
            Phase::Ready | Phase::LoggingOff => self.outputs.push_back(Output::Notice(notice)),
            Phase::Closed => {}
        }
    }

    fn protocol_error(&mut self, error: DecodeError) {
        self.notice(ClientEvent::ProtocolError {
            generation: self.generation,
            error,
        });
    }

    /// The number of our ActionID in `packet`, if it carries one of this connection's.
    fn our_action(&self, packet: &Packet) -> Option<u64> {
        let id = packet.get_bytes("ActionID")?;
        let digits = id.strip_prefix(self.prefix.as_bytes())?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
