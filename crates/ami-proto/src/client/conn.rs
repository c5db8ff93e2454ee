//! The client task: a thin tokio supervisor around the sans-IO [`Session`]. It owns the socket
//! (reads, and a writer task so a slow write never stops the reads), the timers the session asks
//! for, the reconnect loop with capped exponential backoff and jitter, the handles' commands and
//! the delivery of notices to the owner.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::session::{Expect, LOGOFF_GRACE, Output, RequestId, Session};
use super::{
    ActionResponse, ClientConfig, ClientError, ClientEvent, Command, DisconnectReason,
    EventListResult, LinkState,
};

/// Bytes read from the socket at most per read.
const READ_CHUNK: usize = 64 * 1024;

/// How one connection attempt ended.
enum Attempt {
    /// The TCP connect, the banner or the login exchange failed.
    ConnectFailed(DisconnectReason),
    /// The server refused the login.
    LoginFailed(String),
    /// A logged-in connection ended.
    Ended(DisconnectReason),
    /// The client was cancelled before the login was done.
    Cancelled,
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
            let Some(connected) = self.idle(connect(self.config.clone())).await else {
                break;
            };
            let attempt = match connected {
                Ok(stream) => self.serve(stream, generation).await,
                Err(reason) => Attempt::ConnectFailed(reason),
            };
            match attempt {
                Attempt::Ended(reason) => {
                    backoff = self.config.backoff_initial;
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
                Attempt::LoginFailed(message) => {
                    warn!(generation, %message, "AMI login refused");
                    self.events
                        .notify(ClientEvent::LoginFailed { message }, &self.cancel)
                        .await;
                }
                Attempt::ConnectFailed(reason) => {
                    warn!(generation, %reason, addr = %self.config.addr, "AMI connection attempt failed");
                    self.events
                        .notify(ClientEvent::ConnectFailed { reason }, &self.cancel)
                        .await;
                }
                Attempt::Cancelled => break,
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

    /// Runs one connection, from the banner to its end, by feeding its session.
    async fn serve(&mut self, stream: TcpStream, generation: u64) -> Attempt {
        let (mut reader, writer) = stream.into_split();
        let (write_tx, write_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        // Writes happen on their own task so that a slow write never stops the reads: Asterisk
        // drops a session whose reader stalls for 100 ms.
        let mut writer_task = Some(tokio::spawn(write_loop(writer, write_rx)));
        let mut session = Session::new(self.config.clone(), generation, now());
        let mut waiters = Waiters::default();
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut logged_in = false;
        let mut logging_off = false;
        // A second sender, so that waiting for room does not borrow `self.events`, which the
        // other branches need mutably.
        let lag_tx = self.events.tx.clone();
        let attempt = 'conn: loop {
            while let Some(output) = session.poll_output() {
                match output {
                    // A stopped writer is noticed by the writer branch below.
                    Output::Transmit(bytes) => drop(write_tx.send(bytes)),
                    Output::LoggedIn { banner } => {
                        logged_in = true;
                        let reconnected = self.ever_connected;
                        self.ever_connected = true;
                        info!(generation, reconnected, addr = %self.config.addr, "AMI connected and logged in");
                        self.set_link(true);
                        let connected = ClientEvent::Connected {
                            generation,
                            reconnected,
                            banner,
                        };
                        self.events.notify(connected, &self.cancel).await;
                    }
                    Output::LoginFailed { message } => break 'conn Attempt::LoginFailed(message),
                    Output::Response { request, result } => waiters.answer(request, result),
                    Output::List { request, result } => waiters.answer_list(request, result),
                    Output::Notice(notice) => {
                        if let ClientEvent::ProtocolError { error, .. } = &notice {
                            warn!(generation, %error, "skipping a bad AMI packet");
                        }
                        self.events.push(notice);
                    }
                    Output::Closed { reason } => {
                        break 'conn match reason {
                            reason if logged_in => Attempt::Ended(reason),
                            DisconnectReason::Shutdown => Attempt::Cancelled,
                            reason => Attempt::ConnectFailed(reason),
                        };
                    }
                }
            }
            let timer = session.poll_timeout();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled(), if !logging_off => {
                    logging_off = true;
                    session.logoff(now());
                }
                read = reader.read(&mut chunk) => match read {
                    Ok(0) => session.receive_eof(now()),
                    Ok(n) => session.receive(chunk.get(..n).unwrap_or_default(), now()),
                    Err(e) => session.close(DisconnectReason::Io(e.to_string())),
                },
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => waiters.start(&mut session, command),
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
                _ = sleep_until(timer), if timer.is_some() => session.handle_timeout(now()),
                joined = join_opt(&mut writer_task), if writer_task.is_some() => {
                    writer_task = None;
                    let reason = match joined {
                        Ok(Err(e)) => DisconnectReason::Io(e.to_string()),
                        _ => DisconnectReason::Io("the socket writer stopped".to_owned()),
                    };
                    session.close(reason);
                }
            }
        };
        // Anything still waiting (none after `Closed`) learns that this connection is gone.
        waiters.fail_all();
        drop(write_tx);
        if let Some(mut task) = writer_task {
            if matches!(attempt, Attempt::Ended(DisconnectReason::Shutdown)) {
                // Let the writer flush the Logoff and half-close the socket; it ends once the
                // channel is closed.
                let _ = tokio::time::timeout(LOGOFF_GRACE, &mut task).await;
            }
            task.abort();
        }
        attempt
    }
}

/// The callers waiting for answers on the current connection, by request.
#[derive(Default)]
struct Waiters {
    responses: HashMap<RequestId, oneshot::Sender<Result<ActionResponse, ClientError>>>,
    lists: HashMap<RequestId, oneshot::Sender<Result<EventListResult, ClientError>>>,
}

impl Waiters {
    /// Hands a caller's action to the session and remembers whom to answer.
    fn start(&mut self, session: &mut Session, command: Command) {
        match command {
            Command::Send { action, reply } => {
                match session.request(action, Expect::Response, now()) {
                    Ok(request) => drop(self.responses.insert(request, reply)),
                    Err(error) => drop(reply.send(Err(error))),
                }
            }
            Command::SendList { action, reply } => {
                match session.request(action, Expect::List, now()) {
                    Ok(request) => drop(self.lists.insert(request, reply)),
                    Err(error) => drop(reply.send(Err(error))),
                }
            }
        }
    }

    // The caller may have timed out and gone; then nobody needs the answer.
    fn answer(&mut self, request: RequestId, result: Result<ActionResponse, ClientError>) {
        if let Some(reply) = self.responses.remove(&request) {
            drop(reply.send(result));
        }
    }

    fn answer_list(&mut self, request: RequestId, result: Result<EventListResult, ClientError>) {
        if let Some(reply) = self.lists.remove(&request) {
            drop(reply.send(result));
        }
    }

    fn fail_all(&mut self) {
        for (_, reply) in self.responses.drain() {
            drop(reply.send(Err(ClientError::NotConnected)));
        }
        for (_, reply) in self.lists.drain() {
            drop(reply.send(Err(ClientError::NotConnected)));
        }
    }
}

/// The session's clock: tokio's, so that a paused test clock drives it too.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `deadline`; the caller only polls this when a deadline is set.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// Awaits the writer task; the caller only polls this while the task exists.
async fn join_opt<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Equal jitter: half of `backoff` plus a random part of the other half, so that many clients
/// restarted together do not reconnect in lockstep.
fn jitter(backoff: std::time::Duration) -> std::time::Duration {
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

/// The TCP connect, within `connect_timeout`.
async fn connect(config: Arc<ClientConfig>) -> Result<TcpStream, DisconnectReason> {
    let stream = match tokio::time::timeout(
        config.connect_timeout,
        TcpStream::connect(config.addr.as_str()),
    )
    .await
    {
        Err(_) => return Err(DisconnectReason::ConnectTimeout),
        Ok(Err(e)) => return Err(DisconnectReason::Io(e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    // Actions are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
