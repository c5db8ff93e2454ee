//! The client task: the reconnect loop (supervisor), login, and the per-connection loop that
//! reads packets, matches them to pending actions and keeps the link alive.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    ActionResponse, AuthMethod, ClientConfig, ClientError, ClientEvent, Command, DisconnectReason,
    EventListResult, LinkState, Sequenced,
};
use crate::views::Response;
use crate::{Action, Decoder, Frame, Kind, Packet};

/// Bytes requested from the socket per read when the buffer runs low.
const READ_CHUNK: usize = 64 * 1024;
/// How long a clean shutdown waits for `Response: Goodbye`.
const LOGOFF_GRACE: Duration = Duration::from_secs(1);

/// Why a connection attempt did not produce a logged-in connection.
enum AttemptError {
    LoginFailed(String),
    Failed(DisconnectReason),
}

/// Delivers events to the owner without ever making the socket reader wait.
struct EventSink {
    tx: mpsc::Sender<ClientEvent>,
    dropped: u64,
}

impl EventSink {
    /// Queues `event` if there is room, otherwise drops and counts it (see the module docs of
    /// `client` on flow control).
    fn push(&mut self, event: ClientEvent) {
        if self.dropped > 0 {
            match self.tx.try_send(ClientEvent::Lagged {
                dropped: self.dropped,
            }) {
                Ok(()) => self.dropped = 0,
                Err(TrySendError::Full(_)) => {
                    self.dropped += 1;
                    return;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped == 0 {
                    warn!("event consumer is behind; dropping events until it catches up");
                }
                self.dropped += 1;
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Queues a rare control notice (connected, disconnected, login failed). These are sent
    /// while no socket is being read, so waiting for room is harmless; a shutdown stops waiting.
    async fn notify(&mut self, event: ClientEvent, cancel: &CancellationToken) {
        let mut pending = Vec::with_capacity(2);
        if self.dropped > 0 {
            pending.push(ClientEvent::Lagged {
                dropped: self.dropped,
            });
            self.dropped = 0;
        }
        pending.push(event);
        for event in pending {
            tokio::select! {
                permit = self.tx.reserve() => {
                    if let Ok(permit) = permit {
                        permit.send(event);
                    }
                }
                _ = cancel.cancelled() => drop(self.tx.try_send(event)),
            }
        }
    }
}

/// Owns everything that outlives one connection and runs the reconnect loop.
pub(crate) struct Supervisor {
    config: Arc<ClientConfig>,
    cancel: CancellationToken,
    commands: mpsc::Receiver<Command>,
    /// False once every handle is gone; then the command branch is switched off.
    commands_open: bool,
    events: EventSink,
    link: watch::Sender<LinkState>,
    generation: u64,
    ever_connected: bool,
}

impl Supervisor {
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        cancel: CancellationToken,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<ClientEvent>,
        link: watch::Sender<LinkState>,
    ) -> Supervisor {
        Supervisor {
            config,
            cancel,
            commands,
            commands_open: true,
            events: EventSink {
                tx: events,
                dropped: 0,
            },
            link,
            generation: 0,
            ever_connected: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = self.config.backoff_initial;
        loop {
            if self.cancel.is_cancelled() || (!self.commands_open && self.events.tx.is_closed()) {
                break;
            }
            self.generation += 1;
            let generation = self.generation;
            let Some(attempt) = self
                .idle(connect_and_login(self.config.clone(), generation))
                .await
            else {
                break;
            };
            match attempt {
                Ok(conn) => {
                    let reconnected = self.ever_connected;
                    self.ever_connected = true;
                    backoff = self.config.backoff_initial;
                    info!(generation, reconnected, addr = %self.config.addr, "AMI connected and logged in");
                    self.set_link(true);
                    let banner = conn.banner.clone();
                    self.events
                        .notify(
                            ClientEvent::Connected {
                                generation,
                                reconnected,
                                banner,
                            },
                            &self.cancel,
                        )
                        .await;
                    let reason = self.serve(conn).await;
                    self.set_link(false);
                    let shutdown = reason == DisconnectReason::Shutdown;
                    if shutdown {
                        info!(generation, "AMI connection closed for shutdown");
                    } else {
                        warn!(generation, %reason, "AMI connection lost");
                    }
                    self.events
                        .notify(
                            ClientEvent::Disconnected { generation, reason },
                            &self.cancel,
                        )
                        .await;
                    if shutdown {
                        break;
                    }
                }
                Err(AttemptError::LoginFailed(message)) => {
                    warn!(generation, %message, "AMI login refused");
                    self.events
                        .notify(ClientEvent::LoginFailed { message }, &self.cancel)
                        .await;
                }
                Err(AttemptError::Failed(reason)) => {
                    warn!(generation, %reason, addr = %self.config.addr, "AMI connection attempt failed");
                    self.events
                        .notify(ClientEvent::ConnectFailed { reason }, &self.cancel)
                        .await;
                }
            }
            let delay = jitter(backoff);
            backoff = backoff.saturating_mul(2).min(self.config.backoff_max);
            debug!(?delay, "waiting before the next AMI connection attempt");
            if self.idle(tokio::time::sleep(delay)).await.is_none() {
                break;
            }
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            command.fail(ClientError::Shutdown);
        }
    }

    fn set_link(&self, connected: bool) {
        self.link.send_replace(LinkState {
            connected,
            since: SystemTime::now(),
            generation: self.generation,
        });
    }

    /// Drives `fut` while no connection is up, refusing actions at once instead of letting them
    /// queue. Returns `None` when the client is cancelled.
    async fn idle<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                out = &mut fut => return Some(out),
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => command.fail(ClientError::NotConnected),
                    None => self.commands_open = false,
                },
            }
        }
    }

    /// Runs one logged-in connection until it ends, and says why.
    async fn serve(&mut self, conn: Conn) -> DisconnectReason {
        let Conn {
            mut reader,
            writer,
            mut buf,
            mut decoder,
            generation,
            mut wire_seq,
            next_action,
            early,
            ..
        } = conn;
        let (write_tx, write_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        // Writes happen on their own task so that a slow write never stops the reads: Asterisk
        // drops a session whose reader stalls for 100 ms.
        let mut writer_task = tokio::spawn(write_loop(writer, write_rx));
        let mut session = Session::new(generation, next_action);
        for packet in early {
            session.dispatch(packet, &mut self.events);
        }
        // Packets that arrived in the same read as the login answer (FullyBooted follows it
        // at once) are already in the buffer; deliver them now instead of after the next read,
        // which may be a keepalive interval away.
        drain(
            &mut session,
            &mut buf,
            &mut decoder,
            &mut wire_seq,
            &mut self.events,
        );
        let interval = self.config.ping_interval.max(Duration::from_millis(1));
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);

        // A second sender, so that waiting for room does not borrow `self.events`, which the
        // other branches need mutably.
        let lag_tx = self.events.tx.clone();
        let reason = loop {
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let deadline = session.ping_deadline;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    logoff(&mut session, &mut reader, &mut buf, &mut decoder, &mut wire_seq, &write_tx, &mut self.events)
                        .await;
                    break DisconnectReason::Shutdown;
                }
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => break drain_eof(&mut session, &mut buf, &mut decoder, &mut wire_seq, &mut self.events),
                    Ok(_) => drain(&mut session, &mut buf, &mut decoder, &mut wire_seq, &mut self.events),
                    Err(e) => break DisconnectReason::Io(e.to_string()),
                },
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => session.start(command, &write_tx),
                    None => self.commands_open = false,
                },
                // Tells the owner about dropped events as soon as it has made room, even if no
                // further event arrives to carry the notice.
                permit = lag_tx.reserve(), if self.events.dropped > 0 => {
                    if let Ok(permit) = permit {
                        permit.send(ClientEvent::Lagged { dropped: self.events.dropped });
                    }
                    self.events.dropped = 0;
                }
                _ = ping.tick() => {
                    if session.ping_deadline.is_none() {
                        session.send_ping(&write_tx);
                        session.ping_deadline = Some(Instant::now() + self.config.ping_timeout);
                    }
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => break DisconnectReason::KeepaliveTimeout,
                joined = &mut writer_task => {
                    break match joined {
                        Ok(Err(e)) => DisconnectReason::Io(e.to_string()),
                        _ => DisconnectReason::Io("the socket writer stopped".to_owned()),
                    };
                }
            }
        };
        session.fail_all(&reason);
        drop(write_tx);
        if reason == DisconnectReason::Shutdown {
            // Let the writer flush and half-close the socket; it ends once the channel is closed.
            let _ = tokio::time::timeout(LOGOFF_GRACE, &mut writer_task).await;
        }
        writer_task.abort();
        reason
    }
}

/// Sleeps until `deadline`; the caller only polls this when a deadline is set.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Equal jitter: half of `backoff` plus a random part of the other half, so that many clients
/// restarted together do not reconnect in lockstep.
fn jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::random::<f64>())
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(bytes) = rx.recv().await {
        writer.write_all(&bytes).await?;
    }
    writer.shutdown().await
}

/// Decodes every complete frame in `buf` and dispatches it.
fn drain(
    session: &mut Session,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    wire_seq: &mut u64,
    events: &mut EventSink,
) {
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => session.frame(frame, wire_seq, events),
            Ok(None) => return,
            Err(error) => {
                warn!(%error, "skipping a bad AMI packet");
                events.push(ClientEvent::ProtocolError {
                    generation: session.generation,
                    error,
                });
            }
        }
    }
}

/// Like [`drain`] at end of stream; returns how the connection ended.
fn drain_eof(
    session: &mut Session,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    wire_seq: &mut u64,
    events: &mut EventSink,
) -> DisconnectReason {
    loop {
        match decoder.decode_eof(buf) {
            Ok(Some(frame)) => session.frame(frame, wire_seq, events),
            Ok(None) => return DisconnectReason::Closed,
            Err(error) if error.is_end_of_stream() => {
                return DisconnectReason::ClosedMidPacket(error);
            }
            Err(error) => events.push(ClientEvent::ProtocolError {
                generation: session.generation,
                error,
            }),
        }
    }
}

/// Sends `Logoff` and waits briefly for `Goodbye` (or the server closing), so that Asterisk
/// logs a clean logoff rather than a dropped connection.
async fn logoff(
    session: &mut Session,
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    wire_seq: &mut u64,
    write_tx: &mpsc::UnboundedSender<Vec<u8>>,
    events: &mut EventSink,
) {
    if !session.send_internal(Action::logoff(), Pending::Logoff, write_tx) {
        return;
    }
    let wait = async {
        while !session.goodbye {
            buf.reserve(READ_CHUNK);
            match reader.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => drain(session, buf, decoder, wire_seq, events),
            }
        }
    };
    let _ = tokio::time::timeout(LOGOFF_GRACE, wait).await;
}

/// An action waiting for its answer.
enum Pending {
    Single(oneshot::Sender<Result<ActionResponse, ClientError>>),
    List {
        reply: oneshot::Sender<Result<EventListResult, ClientError>>,
        response: Option<Sequenced<Packet>>,
        items: Vec<Sequenced<Packet>>,
    },
    Ping,
    Logoff,
}

impl Pending {
    /// True when the caller gave up (timed out) before anything of the answer arrived.
    fn is_abandoned(&self) -> bool {
        match self {
            Pending::Single(reply) => reply.is_closed(),
            Pending::List {
                reply,
                response: None,
                ..
            } => reply.is_closed(),
            _ => false,
        }
    }
}

/// Per-connection correlation state.
struct Session {
    generation: u64,
    /// `es-<generation>-`: every ActionID this connection sends starts with it.
    prefix: String,
    next_action: u64,
    pending: HashMap<u64, Pending>,
    ping_deadline: Option<Instant>,
    goodbye: bool,
}

impl Session {
    fn new(generation: u64, next_action: u64) -> Session {
        Session {
            generation,
            prefix: format!("es-{generation}-"),
            next_action,
            pending: HashMap::new(),
            ping_deadline: None,
            goodbye: false,
        }
    }

    /// Registers `command` and hands its bytes to the writer.
    fn start(&mut self, command: Command, write_tx: &mpsc::UnboundedSender<Vec<u8>>) {
        let (action, pending) = match command {
            Command::Send { action, reply } => (action, Pending::Single(reply)),
            Command::SendList { action, reply } => (
                action,
                Pending::List {
                    reply,
                    response: None,
                    items: Vec::new(),
                },
            ),
        };
        self.pending.retain(|_, p| !p.is_abandoned());
        self.send_internal(action, pending, write_tx);
    }

    fn send_ping(&mut self, write_tx: &mpsc::UnboundedSender<Vec<u8>>) {
        self.send_internal(Action::ping(), Pending::Ping, write_tx);
    }

    /// Encodes `action` with the next ActionID, registers `pending` under it and queues the
    /// bytes. Returns false (after failing `pending`) when that is impossible.
    fn send_internal(
        &mut self,
        action: Action,
        pending: Pending,
        write_tx: &mpsc::UnboundedSender<Vec<u8>>,
    ) -> bool {
        self.next_action += 1;
        let number = self.next_action;
        let id = format!("{}{number}", self.prefix);
        let mut bytes = Vec::with_capacity(128);
        if let Err(e) = action.encode_with_action_id(&id, &mut bytes) {
            fail(pending, ClientError::Encode(e));
            return false;
        }
        // Registered before the bytes leave, so the answer can never arrive first.
        self.pending.insert(number, pending);
        if write_tx.send(bytes).is_err() {
            if let Some(pending) = self.pending.remove(&number) {
                fail(
                    pending,
                    ClientError::ConnectionLost(DisconnectReason::Io(
                        "the socket writer stopped".into(),
                    )),
                );
            }
            return false;
        }
        true
    }

    /// Numbers every frame and dispatches packets.
    fn frame(&mut self, frame: Frame, wire_seq: &mut u64, events: &mut EventSink) {
        let seq = *wire_seq;
        *wire_seq += 1;
        if let Frame::Packet(item) = frame {
            self.dispatch(
                Sequenced {
                    generation: self.generation,
                    wire_seq: seq,
                    item,
                },
                events,
            );
        }
    }

    /// The correlation algorithm of ami-reference §3: a response with a known ActionID settles
    /// its action; an event with the ActionID of a started list is an item (or its end);
    /// everything else is an event for the owner.
    fn dispatch(&mut self, packet: Sequenced<Packet>, events: &mut EventSink) {
        let Some(number) = self.our_action(&packet.item) else {
            events.push(ClientEvent::Event(packet));
            return;
        };
        match packet.kind() {
            Kind::Response => {
                let Some(pending) = self.pending.remove(&number) else {
                    events.push(ClientEvent::Event(packet));
                    return;
                };
                self.settle(number, pending, packet, events);
            }
            Kind::Event => match self.pending.get_mut(&number) {
                Some(Pending::List {
                    response: Some(_),
                    items,
                    ..
                }) => {
                    if packet.has("EventList", "Complete") {
                        if let Some(Pending::List {
                            reply,
                            response: Some(response),
                            items,
                            ..
                        }) = self.pending.remove(&number)
                        {
                            let result = EventListResult {
                                generation: self.generation,
                                response: response.item,
                                response_wire_seq: response.wire_seq,
                                items,
                                complete_wire_seq: packet.wire_seq,
                                complete: packet.item,
                            };
                            let _ = reply.send(Ok(result));
                        }
                    } else {
                        items.push(packet);
                    }
                }
                _ => events.push(ClientEvent::Event(packet)),
            },
            _ => events.push(ClientEvent::Event(packet)),
        }
    }

    /// Handles the response to the pending action `number`.
    fn settle(
        &mut self,
        number: u64,
        pending: Pending,
        packet: Sequenced<Packet>,
        events: &mut EventSink,
    ) {
        match pending {
            Pending::Single(reply) => drop(reply.send(Ok(packet))),
            Pending::Ping => self.ping_deadline = None,
            Pending::Logoff => self.goodbye = true,
            Pending::List {
                reply,
                response: None,
                items,
            } => {
                let Some(view) = Response::from_packet(&packet.item) else {
                    return;
                };
                if view.is_list_start() {
                    self.pending.insert(
                        number,
                        Pending::List {
                            reply,
                            response: Some(packet),
                            items,
                        },
                    );
                } else if view.is_error() {
                    let message = view.message().map(|m| m.into_owned()).unwrap_or_default();
                    let _ = reply.send(Err(ClientError::ActionFailed { message }));
                } else {
                    let _ = reply.send(Err(ClientError::NotAList));
                }
            }
            list @ Pending::List {
                response: Some(_), ..
            } => {
                // A second response for a list that already started is not ours to interpret.
                self.pending.insert(number, list);
                events.push(ClientEvent::Event(packet));
            }
        }
    }

    /// The number of our ActionID in `packet`, if it carries one of this connection's.
    fn our_action(&self, packet: &Packet) -> Option<u64> {
        let id = packet.get_bytes("ActionID")?;
        let digits = id.strip_prefix(self.prefix.as_bytes())?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    fn fail_all(&mut self, reason: &DisconnectReason) {
        let error = match reason {
            DisconnectReason::Shutdown => ClientError::Shutdown,
            other => ClientError::ConnectionLost(other.clone()),
        };
        for (_, pending) in self.pending.drain() {
            fail(pending, error.clone());
        }
    }
}

fn fail(pending: Pending, error: ClientError) {
    match pending {
        Pending::Single(reply) => drop(reply.send(Err(error))),
        Pending::List { reply, .. } => drop(reply.send(Err(error))),
        Pending::Ping | Pending::Logoff => {}
    }
}

/// One TCP connection from connect to the end of login.
struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    decoder: Decoder,
    generation: u64,
    wire_seq: u64,
    next_action: u64,
    banner: Option<String>,
    /// Packets that arrived during login; they are dispatched after `Connected`.
    early: Vec<Sequenced<Packet>>,
}

async fn connect_and_login(
    config: Arc<ClientConfig>,
    generation: u64,
) -> Result<Conn, AttemptError> {
    let stream = match tokio::time::timeout(
        config.connect_timeout,
        TcpStream::connect(config.addr.as_str()),
    )
    .await
    {
        Err(_) => return Err(AttemptError::Failed(DisconnectReason::ConnectTimeout)),
        Ok(Err(e)) => return Err(AttemptError::Failed(DisconnectReason::Io(e.to_string()))),
        Ok(Ok(stream)) => stream,
    };
    // Actions are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut conn = Conn {
        reader,
        writer,
        buf: BytesMut::with_capacity(READ_CHUNK),
        decoder: Decoder::with_max_packet_size(config.max_packet_size),
        generation,
        wire_seq: 0,
        next_action: 0,
        banner: None,
        early: Vec::new(),
    };
    match tokio::time::timeout(config.action_timeout, conn.login(&config)).await {
        Err(_) => Err(AttemptError::Failed(DisconnectReason::LoginTimeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(conn),
    }
}

impl Conn {
    /// Reads the banner and logs in. The secret only ever goes into the encoded bytes.
    async fn login(&mut self, config: &ClientConfig) -> Result<(), AttemptError> {
        let (seq, first) = self.next_frame().await.map_err(AttemptError::Failed)?;
        match first {
            Frame::Banner(banner) => self.banner = Some(banner.line().to_owned()),
            Frame::Packet(item) => self.early.push(Sequenced {
                generation: self.generation,
                wire_seq: seq,
                item,
            }),
        }
        let login = match config.auth {
            AuthMethod::Plain => Action::login(&config.username, &config.secret),
            AuthMethod::Md5 => {
                let answer = self.request(Action::challenge_md5()).await?;
                match answer.get("Challenge") {
                    Some(challenge) if !answer.is(Kind::Response, "Error") => {
                        Action::login_md5(&config.username, &challenge, &config.secret)
                    }
                    _ => return Err(AttemptError::LoginFailed(refusal(&answer))),
                }
            }
        };
        let login = if config.events.is_empty() {
            login
        } else {
            login.header("Events", config.events.as_str())
        };
        let answer = self.request(login).await?;
        match Response::from_packet(&answer) {
            Some(view) if view.is_success() => Ok(()),
            _ => Err(AttemptError::LoginFailed(refusal(&answer))),
        }
    }

    /// Sends `action` and waits for the response with its ActionID; other packets are kept for
    /// later delivery.
    async fn request(&mut self, action: Action) -> Result<Packet, AttemptError> {
        self.next_action += 1;
        let id = format!("es-{}-{}", self.generation, self.next_action);
        let mut bytes = Vec::with_capacity(128);
        action
            .encode_with_action_id(&id, &mut bytes)
            .map_err(|e| AttemptError::Failed(DisconnectReason::Protocol(e.to_string())))?;
        self.writer
            .write_all(&bytes)
            .await
            .map_err(|e| AttemptError::Failed(DisconnectReason::Io(e.to_string())))?;
        loop {
            let (seq, frame) = self.next_frame().await.map_err(AttemptError::Failed)?;
            let Frame::Packet(item) = frame else { continue };
            if item.kind() == Kind::Response && item.get_bytes("ActionID") == Some(id.as_bytes()) {
                return Ok(item);
            }
            self.early.push(Sequenced {
                generation: self.generation,
                wire_seq: seq,
                item,
            });
        }
    }

    /// The next frame and its wire position. Bad packets are skipped (the decoder stays in sync).
    async fn next_frame(&mut self) -> Result<(u64, Frame), DisconnectReason> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => return Ok((self.take_seq(), frame)),
                Ok(None) => {}
                Err(error) => {
                    warn!(%error, "skipping a bad AMI packet during login");
                    continue;
                }
            }
            self.buf.reserve(READ_CHUNK);
            let n = self
                .reader
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| DisconnectReason::Io(e.to_string()))?;
            if n == 0 {
                return match self.decoder.decode_eof(&mut self.buf) {
                    Ok(Some(frame)) => Ok((self.take_seq(), frame)),
                    Ok(None) => Err(DisconnectReason::Closed),
                    Err(error) => Err(DisconnectReason::ClosedMidPacket(error)),
                };
            }
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.wire_seq;
        self.wire_seq += 1;
        seq
    }
}

/// The server's reason for refusing a login step.
fn refusal(answer: &Packet) -> String {
    answer
        .get("Message")
        .map(|m| m.into_owned())
        .unwrap_or_else(|| format!("unexpected answer {}", answer.name().unwrap_or_default()))
}
