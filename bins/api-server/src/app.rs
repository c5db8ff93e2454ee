//! Start-up and shutdown: opens the store, seeds and starts the simulator in demo mode, builds
//! the hub, the writer, the AMI pipeline and the HTTP server on a listener the caller bound
//! (port 0 in tests), and tears them down in order when the shutdown token fires.
//!
//! A MongoDB server that does not answer at start-up does not stop the server: it serves
//! (503 on what needs the store), the store creates its indexes once MongoDB answers, the
//! records are then loaded into the hub, and the pipeline resyncs.
//!
//! On MongoDB the server runs in cluster mode ([`crate::cluster`]): the hub is fed from the
//! shared change log, and the AMI link runs only while this instance holds the lease. With the
//! embedded store it runs exactly as one instance always did.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use ami_proto::client::{Client, ClientConfig, ClientHandle};
use domain::{AgentName, Department, ExtensionFilter, ExtensionNumber, HistoryEvent, NewExtension};
use hub::{Hub, HubConfig, PbxLink};
use store::{Repository, StoreOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Tokens;
use crate::cluster::{ClusterStatus, Fence};
use crate::config::{Config, StoreConfig};
use crate::health::{LinkStatus, StoreProbe};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::state::AppState;
use crate::writer::Writer;

/// Why the server could not start or stopped with an error.
///
/// The message includes the cause's, so the cause is not also given as a source (a printer of
/// the whole chain, like the binary's `{:#}`, would say it twice).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(store::StoreError),
    /// The listener or the HTTP server failed.
    #[error("http server: {0}")]
    Io(std::io::Error),
    /// The demo simulator could not start.
    #[error("demo simulator: {0}")]
    Simulator(String),
}

impl From<store::StoreError> for ServerError {
    fn from(e: store::StoreError) -> Self {
        ServerError::Store(e)
    }
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        ServerError::Io(e)
    }
}

/// A started server.
pub struct RunningServer {
    /// The HTTP address it serves.
    pub addr: SocketAddr,
    /// The simulator's AMI address in demo mode.
    pub demo_ami: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Waits until the server has stopped (after the shutdown token fired).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Io(std::io::Error::other(format!(
                "the server task failed: {e}"
            )))),
        }
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Starts the server and serves until `shutdown` fires, then shuts down gracefully.
pub async fn run(
    config: Config,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    start(config, listener, shutdown).await?.wait().await
}

/// The store backend the configuration names. MongoDB's server selection is bounded by the
/// store timeout (unless the URI sets its own), and the server starts without MongoDB.
fn backend(config: &StoreConfig, store_timeout: Duration) -> store::Backend {
    match config {
        StoreConfig::Embedded { data_dir } => store::Backend::Embedded {
            data_dir: data_dir.clone(),
        },
        StoreConfig::Mongo { uri, database } => {
            let mut mongo = store::MongoConfig::new(uri.expose(), database.clone());
            mongo.server_selection_timeout = store_timeout;
            mongo.start_unreachable = true;
            store::Backend::MongoDb(mongo)
        }
    }
}

/// Status changes per second the demo's simulator makes across all agents.
const DEMO_RATE_PER_SEC: f64 = 4.0;

/// The sample agents of `ami-sim` as records to seed, or which one is not a valid record.
fn demo_agents() -> Result<Vec<NewExtension>, ServerError> {
    ami_sim::sample_agents()
        .map(|a| {
            let invalid = |what: &str, e: &dyn std::fmt::Display| {
                ServerError::Simulator(format!("sample agent {}: invalid {what}: {e}", a.extension))
            };
            Ok(NewExtension {
                extension: ExtensionNumber::parse(a.extension)
                    .map_err(|e| invalid("extension", &e))?,
                agent_name: AgentName::parse(a.name).map_err(|e| invalid("name", &e))?,
                department: Department::parse(a.department)
                    .map_err(|e| invalid("department", &e))?,
                is_active: true,
            })
        })
        .collect()
}

/// Demo mode: the sample agents if the store is empty, and the simulator on loopback.
async fn start_demo(
    store: &Arc<dyn Repository>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, String, String), ServerError> {
    let samples = demo_agents()?;
    let stored = store.list(&ExtensionFilter::default()).await.map_err(|e| {
        ServerError::Simulator(format!(
            "the {} store does not answer, so the sample agents cannot be seeded: {e}",
            store.backend_name()
        ))
    })?;
    if stored.is_empty() {
        for new in &samples {
            match store.create(new.clone()).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(count = samples.len(), "demo: seeded sample agents");
    }
    // The simulator serves the agents the store holds, so edits made in an earlier demo run
    // (new extensions, deleted ones) still get live states.
    let agents = store
        .list(&ExtensionFilter::default())
        .await?
        .into_iter()
        .map(|r| ami_sim::SimAgent::custom(r.extension.as_str()))
        .collect();
    let username = "demo".to_owned();
    let secret = format!("demo-{:016x}", rand::random::<u64>());
    let mut sim_config = ami_sim::SimConfig::new(username.clone(), secret.clone(), agents);
    // About one change every ten seconds per agent: a board that visibly lives, without the
    // churn of a load test.
    sim_config.rate_per_sec = DEMO_RATE_PER_SEC;
    let (addr, _sim, _task) =
        ami_sim::spawn(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)), cancel)
            .await
            .map_err(|e| ServerError::Simulator(e.to_string()))?;
    tracing::info!(%addr, "demo: AMI simulator listening on loopback");
    Ok((addr, username, secret))
}

/// Starts everything and returns once the HTTP server accepts connections on `listener`.
pub async fn start(
    config: Config,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    tracing::info!(?config, "starting");
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;

    let store_token = CancellationToken::new();
    let store = store::open(
        &backend(&config.store, config.timing.store_timeout),
        StoreOptions {
            last_seen_interval: config.timing.last_seen_interval,
            shutdown: store_token.clone(),
            history_retention: Some(config.history_retention()),
        },
    )
    .await?;
    let store_backend = store.backend_name().to_owned();
    tracing::info!(backend = %store_backend, "store open");
    // Cluster mode on MongoDB: the change log, the lease, and this instance's name in them.
    let cluster = match &config.store {
        StoreConfig::Mongo { .. } => store.cluster(store::cluster::ClusterOptions {
            change_log_retention: config.cluster.change_log_retention,
            lease_name: "ami".to_owned(),
        }),
        StoreConfig::Embedded { .. } => None,
    };
    let instance = config
        .cluster
        .instance_id
        .clone()
        .unwrap_or_else(|| crate::cluster::default_instance_id(addr.port()));
    if cluster.is_some() {
        tracing::info!(%instance, lease_ms = config.cluster.lease_time.as_millis(), "cluster mode: the AMI link runs on the lease holder only");
    } else {
        // Before anything else is recorded: what follows is known only from this start on.
        // (In cluster mode the lease holder writes the markers.)
        crate::analytics::record_marker(&*store, HistoryEvent::ServerStart, domain::now()).await;
    }
    let prune_token = CancellationToken::new();
    let prune_task = crate::analytics::spawn_pruner(
        store.clone(),
        config.history_retention(),
        crate::analytics::PRUNE_INTERVAL,
        prune_token.clone(),
    );
    let probe_token = CancellationToken::new();
    let (store_health, probe_task) = StoreProbe::start(
        store.clone(),
        config.timing.store_timeout,
        probe_token.clone(),
    )
    .await;

    let sim_token = CancellationToken::new();
    let mut ami = config.ami.clone();
    let mut demo_ami = None;
    if config.demo {
        let (sim_addr, user, secret) = start_demo(&store, sim_token.clone()).await?;
        ami.addr = sim_addr.to_string();
        ami.username = Some(user);
        ami.secret = Some(crate::config::Secret::new(secret));
        demo_ami = Some(sim_addr);
    }

    // Without the store, the hub starts empty and is filled once the store answers.
    let (records, loaded) = match store.list(&ExtensionFilter::default()).await {
        Ok(records) => (records, true),
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "the store does not answer; serving without records until it does");
            (Vec::new(), false)
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(extensions = records.len(), "records loaded");
    let newest_stored = crate::pipeline::newest_observation(&records);
    let (hub, hub_loaded) = match &cluster {
        Some(c) => {
            drop(records);
            crate::cluster::follower::start_hub(
                &**c,
                &*store,
                HubConfig::default(),
                config.timing.store_timeout,
                &instance,
            )
            .await
        }
        None => (
            Hub::new(HubConfig::default(), records, PbxLink::unknown()),
            loaded,
        ),
    };
    let metrics = Arc::new(Metrics::default());
    let cluster_status = Arc::new(ClusterStatus::new(instance.clone()));
    let fence = Arc::new(Fence::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    let log = cluster.as_ref().map(|c| crate::writer::LogSink {
        cluster: c.clone(),
        instance: instance.clone(),
        fence: fence.clone(),
        wake: wake.clone(),
        status: cluster_status.clone(),
    });
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        hub.clone(),
        metrics.clone(),
        config.timing.last_seen_interval,
        store_health.clone(),
        config.timing.store_timeout,
        log,
    );
    let created = Arc::new(tokio::sync::Notify::new());
    let follower_token = CancellationToken::new();
    let follower_task = cluster.as_ref().map(|c| {
        let follower = crate::cluster::follower::Follower {
            cluster: c.clone(),
            store: store.clone(),
            hub: hub.clone(),
            status: cluster_status.clone(),
            wake: wake.clone(),
            poll: config.cluster.change_log_poll,
            timeout: config.timing.store_timeout,
            created: created.clone(),
            loaded: hub_loaded,
        };
        tokio::spawn(follower.run(follower_token.clone()))
    });
    if !loaded && cluster.is_none() {
        tokio::spawn(load_when_up(
            writer.clone(),
            store_health.clone(),
            probe_token.clone(),
        ));
    }
    let callcenter = Arc::new(crate::callcenter::CallCenter::default());
    let mut action_timeout = std::time::Duration::from_secs(10);

    // The AMI client and the pipeline: at once with one instance, while holding the lease in
    // cluster mode.
    let link = Arc::new(if ami.username.is_some() {
        LinkStatus::switchable()
    } else {
        LinkStatus::new(None)
    });
    // Pauses are offered only when they can work: allowed, and a PBX to ask.
    let actions = Arc::new(crate::state::ActionClient::new(
        ami.actions && ami.username.is_some(),
    ));
    let mut ami_run = None;
    let mut lease_task = None;
    let lease_token = CancellationToken::new();
    let ami_parts = match &ami.username {
        Some(user) => {
            let secret = ami.secret.as_ref().map(|s| s.expose()).unwrap_or_default();
            let mut client_config = ClientConfig::new(ami.addr.clone(), user.clone(), secret);
            client_config.ping_interval = config.timing.ami_ping_interval;
            client_config.action_timeout = config.timing.ami_action_timeout;
            client_config.ping_timeout = client_config
                .ping_timeout
                .min(config.timing.ami_ping_interval);
            // agent: queue member, queue caller and agent events (call-center state).
            client_config.events = "call,system,agent".to_owned();
            if ami.md5 {
                client_config.auth = ami_proto::client::AuthMethod::Md5;
            }
            action_timeout = client_config.action_timeout;
            Some(Arc::new(AmiParts {
                client_config,
                store: store.clone(),
                writer: writer.clone(),
                hub: hub.clone(),
                metrics: metrics.clone(),
                link: link.clone(),
                timing: config.timing,
                created: created.clone(),
                context: ami.context.clone(),
                callcenter: callcenter.clone(),
                store_health: store_health.clone(),
                shutdown_timeout: config.timing.shutdown_timeout,
                actions: actions.clone(),
            }))
        }
        None => {
            tracing::warn!("no --ami-user: not connecting to a PBX; statuses will not move");
            if ami.actions {
                tracing::warn!(
                    "--ami-actions without --ami-user: there is no PBX to pause agents in, so \
                     pausing stays off"
                );
            }
            None
        }
    };
    match &cluster {
        None => {
            if let Some(parts) = &ami_parts {
                ami_run = Some(parts.spawn(newest_stored));
            }
        }
        Some(c) => {
            let start_link = ami_parts.clone().map(|parts| {
                let start: crate::cluster::task::StartLink = Box::new(move || {
                    let parts = parts.clone();
                    Box::pin(async move {
                        // Where the pipeline's clock starts: what the store holds now.
                        let newest = match tokio::time::timeout(
                            parts.timing.store_timeout,
                            parts.store.list(&ExtensionFilter::default()),
                        )
                        .await
                        {
                            Ok(Ok(records)) => crate::pipeline::newest_observation(&records),
                            _ => None,
                        };
                        Box::new(parts.spawn(newest)) as Box<dyn crate::cluster::task::RunningLink>
                    })
                });
                start
            });
            let task = crate::cluster::task::LeaseTask {
                cluster: c.clone(),
                store: store.clone(),
                writer: writer.clone(),
                lease: crate::cluster::lease::Lease::new(
                    instance.clone(),
                    config.cluster.lease_time,
                ),
                fence: fence.clone(),
                status: cluster_status.clone(),
                start_link,
                stop_timeout: config
                    .timing
                    .shutdown_timeout
                    .min(config.cluster.lease_time / 5),
            };
            lease_task = Some(tokio::spawn(task.run(lease_token.clone())));
        }
    }

    // The HTTP server.
    let ws_token = CancellationToken::new();
    let state = web::Data::new(AppState {
        store: store.clone(),
        store_backend,
        store_health,
        hub: hub.clone(),
        writer: writer.clone(),
        metrics: metrics.clone(),
        link,
        timing: config.timing,
        shutdown: ws_token.clone(),
        created,
        list_cache: crate::rest::ListCache::default(),
        callcenter: callcenter.clone(),
        ami_actions: actions,
        action_timeout,
        cluster: cluster.as_ref().map(|c| crate::cluster::ClusterHandle {
            status: cluster_status.clone(),
            store: c.clone(),
        }),
        analytics: crate::analytics::AnalyticsGate::default(),
    });
    // Cluster mode: the holder shares its queue statistics and runs the pauses asked
    // elsewhere.
    let remote_token = CancellationToken::new();
    if let Some(handle) = state.cluster.clone() {
        tokio::spawn(crate::cluster::remote::share_queues(
            handle.clone(),
            callcenter.clone(),
            remote_token.clone(),
        ));
        tokio::spawn(crate::cluster::remote::run_commands(
            state.clone(),
            handle,
            remote_token.clone(),
        ));
    }
    let tokens = web::Data::new(Tokens::new(config.auth.clone()));
    // The page offers pause and resume only when they can work: allowed, and a PBX to ask.
    let ui_settings = web::Data::new(crate::dashboard::UiSettings {
        ami_actions: state.ami_actions.allowed(),
        ..crate::dashboard::UiSettings::from_config(&config)
    });
    let metrics_data = web::Data::from(metrics.clone());
    let security = web::Data::new(crate::security::Security::new(&config.security));
    let user_timeout_ms = u32::try_from(config.timing.ws_timeout.as_millis()).unwrap_or(u32::MAX);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(tokens.clone())
            .app_data(metrics_data.clone())
            .app_data(ui_settings.clone())
            .app_data(security.clone())
            .wrap(from_fn(crate::auth::middleware))
            .wrap(from_fn(crate::security::middleware))
            .wrap(from_fn(crate::metrics::middleware))
            .configure(crate::rest::configure)
            .configure(crate::analytics::configure)
            .configure(crate::openapi::configure)
            .configure(crate::health::configure)
            .service(
                web::resource("/ws")
                    .route(web::get().to(crate::ws::upgrade))
                    .default_service(crate::error::not_allowed("GET")),
            )
            .configure(crate::dashboard::configure)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    // A change is a small frame right behind the last one: with Nagle's algorithm the kernel
    // holds it until the browser acknowledges the one before, which a browser may delay by
    // 40 to 200 ms (docs/performance.md, "Fourth round").
    .tcp_nodelay(true)
    .on_connect(move |conn, _| {
        if let Some(socket) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let_go_of_stuck_peers(socket, user_timeout_ms);
        }
    })
    .shutdown_timeout(config.timing.shutdown_timeout.as_secs().max(1))
    .listen(listener)?
    .run();
    let http = server.handle();
    let http_task = tokio::spawn(server);
    tracing::info!(%addr, "listening");

    let stop = Shutdown {
        http,
        http_task,
        ws_token,
        metrics,
        ami_run,
        lease_token,
        lease_task,
        follower_token,
        follower_task,
        remote_token,
        cluster_mode: cluster.is_some(),
        writer,
        writer_task,
        store,
        store_token,
        probe_token,
        probe_task,
        sim_token,
        prune_token,
        prune_task,
        timeout: config.timing.shutdown_timeout,
    };
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        token.cancelled().await;
        stop.run().await
    });
    Ok(RunningServer {
        addr,
        demo_ami,
        shutdown,
        task,
    })
}

/// What starting the AMI client and the pipeline takes.
struct AmiParts {
    client_config: ClientConfig,
    store: Arc<dyn Repository>,
    writer: Writer,
    hub: Hub,
    metrics: Arc<Metrics>,
    link: Arc<LinkStatus>,
    timing: crate::config::Timing,
    created: Arc<tokio::sync::Notify>,
    context: Option<String>,
    callcenter: Arc<crate::callcenter::CallCenter>,
    store_health: tokio::sync::watch::Receiver<crate::health::StoreHealth>,
    shutdown_timeout: Duration,
    actions: Arc<crate::state::ActionClient>,
}

impl AmiParts {
    /// Starts the client and the pipeline; `newest_stored` is where the pipeline's clock starts.
    fn spawn(&self, newest_stored: Option<domain::Timestamp>) -> AmiRun {
        tracing::info!(addr = %self.client_config.addr, user = %self.client_config.username, "connecting to the Asterisk manager interface");
        let ami_token = CancellationToken::new();
        let pipeline_token = CancellationToken::new();
        let (handle, events) = Client::spawn(self.client_config.clone(), ami_token.clone());
        self.link.follow(Some(handle.link()));
        self.actions.set(Some(handle.clone()));
        let pipeline = Pipeline {
            client: handle.clone(),
            events,
            store: self.store.clone(),
            writer: self.writer.clone(),
            hub: self.hub.clone(),
            metrics: self.metrics.clone(),
            link: self.link.clone(),
            timing: self.timing,
            created: self.created.clone(),
            context: self.context.clone(),
            newest_stored,
            callcenter: self.callcenter.clone(),
            store_health: self.store_health.clone(),
        };
        AmiRun {
            client: handle,
            pipeline_task: tokio::spawn(pipeline.run(pipeline_token.clone())),
            pipeline_token,
            ami_token,
            timeout: self.shutdown_timeout,
            actions: self.actions.clone(),
        }
    }
}

/// A running AMI client and pipeline.
struct AmiRun {
    client: ClientHandle,
    pipeline_task: JoinHandle<()>,
    pipeline_token: CancellationToken,
    ami_token: CancellationToken,
    timeout: Duration,
    actions: Arc<crate::state::ActionClient>,
}

impl AmiRun {
    /// Stops the pipeline between two writes, then logs off and closes the socket.
    async fn stop_now(self) {
        self.actions.set(None);
        self.pipeline_token.cancel();
        let _ = self.pipeline_task.await;
        self.ami_token.cancel();
        let _ = tokio::time::timeout(self.timeout, self.client.stopped()).await;
    }
}

impl crate::cluster::task::RunningLink for AmiRun {
    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.stop_now())
    }
}

/// For a server that started without its store: once the probe finds the store answering,
/// publishes its records to the hub (through the writer, so in order with status writes);
/// tries again at the next probe when that read fails.
async fn load_when_up(
    writer: Writer,
    mut health: tokio::sync::watch::Receiver<crate::health::StoreHealth>,
    cancel: CancellationToken,
) {
    loop {
        if health.borrow_and_update().ok {
            match writer.load_missing().await {
                Ok(n) => {
                    tracing::info!(extensions = n, "the store answers: records loaded");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "loading the records failed; retrying"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = health.changed() => if changed.is_err() { return },
        }
    }
}

async fn not_found() -> actix_web::HttpResponse {
    crate::error::json_not_found()
}

/// Everything shutdown stops, in the order it stops them.
struct Shutdown {
    http: actix_web::dev::ServerHandle,
    http_task: JoinHandle<std::io::Result<()>>,
    ws_token: CancellationToken,
    metrics: Arc<Metrics>,
    /// One instance: the AMI link, run from the start.
    ami_run: Option<AmiRun>,
    /// Cluster mode: the lease task (which runs the AMI link while holding the lease).
    lease_token: CancellationToken,
    lease_task: Option<JoinHandle<()>>,
    follower_token: CancellationToken,
    follower_task: Option<JoinHandle<()>>,
    remote_token: CancellationToken,
    cluster_mode: bool,
    writer: Writer,
    writer_task: JoinHandle<()>,
    store: Arc<dyn Repository>,
    store_token: CancellationToken,
    probe_token: CancellationToken,
    probe_task: JoinHandle<()>,
    sim_token: CancellationToken,
    prune_token: CancellationToken,
    prune_task: JoinHandle<()>,
    timeout: Duration,
}

impl Shutdown {
    async fn run(self) -> Result<(), ServerError> {
        tracing::info!("shutting down");
        // WebSocket clients get a close frame first, while the server still runs their tasks.
        self.ws_token.cancel();
        let deadline = tokio::time::Instant::now() + self.timeout.min(Duration::from_secs(2));
        while self.metrics.ws_clients() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // In-flight requests finish (up to the shutdown timeout); no new ones are accepted.
        self.http.stop(true).await;
        let http_result = self.http_task.await;
        // The pipeline stops between two writes; the client logs off.
        if let Some(run) = self.ami_run {
            run.stop_now().await;
        }
        self.remote_token.cancel();
        // Cluster mode: the holder logs off, announces the link down, writes `server_stop`
        // and releases the lease, so another instance takes over at once.
        self.lease_token.cancel();
        if let Some(task) = self.lease_task {
            let _ = task.await;
        }
        self.follower_token.cancel();
        if let Some(task) = self.follower_task {
            let _ = task.await;
        }
        // Queued writes finish; then the pending last_seen refreshes are written.
        drop(self.writer);
        if tokio::time::timeout(self.timeout, self.writer_task)
            .await
            .is_err()
        {
            tracing::warn!("writes still queued at the shutdown timeout");
        }
        self.prune_token.cancel();
        let _ = self.prune_task.await;
        // The last entry: nothing is known from here until the next start. (In cluster mode
        // the lease holder wrote it when it released the lease.)
        if !self.cluster_mode {
            crate::analytics::record_marker(&*self.store, HistoryEvent::ServerStop, domain::now())
                .await;
        }
        self.probe_token.cancel();
        let _ = self.probe_task.await;
        let flushed = self.store.flush().await;
        self.store_token.cancel();
        self.sim_token.cancel();
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "flushing the store failed");
        }
        tracing::info!("stopped");
        match http_result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(std::io::Error::other(e.to_string()).into()),
        }
        flushed.map_err(Into::into)
    }
}

/// Sets `TCP_USER_TIMEOUT` on an accepted socket: the kernel drops the connection when what
/// was sent stays unacknowledged, or the peer's receive window stays shut, for that long. A
/// client that stops reading (a frozen tab, a hostile script) would otherwise keep its socket,
/// its subscription and its place under `--ws-max-connections` for as long as it keeps the TCP
/// connection open: actix waits for the socket to take the bytes without a deadline, and the
/// heartbeat's close frame cannot get through a full socket either. The timeout is
/// `--ws-timeout`, the silence after which the heartbeat gives up on a client anyway.
fn let_go_of_stuck_peers(socket: &actix_web::rt::net::TcpStream, timeout_ms: u32) {
    if let Err(e) = rustix::net::sockopt::set_tcp_user_timeout(socket, timeout_ms) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT on an accepted socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_seeds_forty_valid_agents_in_four_departments() {
        let agents = demo_agents().expect("the sample roster is valid");
        assert_eq!(agents.len(), 40);
        assert_eq!(agents[0].extension.as_str(), "1001");
        assert_eq!(agents[39].extension.as_str(), "1040");
        let departments: std::collections::BTreeSet<&str> =
            agents.iter().map(|a| a.department.as_str()).collect();
        assert_eq!(departments.len(), 4);
        assert!(agents.iter().all(|a| a.is_active));
    }

    /// `(extension, status_code)` of every record, over plain HTTP/1.0 (no chunking).
    async fn codes(addr: SocketAddr) -> anyhow::Result<Vec<(String, i64)>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /api/extensions HTTP/1.0\r\nHost: demo\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let (_, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no body in {response:?}"))?;
        let records: Vec<serde_json::Value> = serde_json::from_str(body)?;
        Ok(records
            .iter()
            .map(|r| {
                let ext = r["extension"].as_str().unwrap_or_default().to_owned();
                (ext, r["status_code"].as_i64().unwrap_or(i64::MIN))
            })
            .collect())
    }

    /// Polls `codes` until `done` accepts them; the patience only bounds a hang.
    async fn until(
        addr: SocketAddr,
        what: &str,
        done: impl Fn(&[(String, i64)]) -> bool,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let patience = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = codes(addr).await?;
            if done(&now) {
                return Ok(now);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < patience,
                "gave up waiting for {what}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `--demo` with a MongoDB URI seeds and serves MongoDB (skipped without
    /// `TEST_MONGODB_URI`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_mode_on_mongodb_seeds_the_sample_agents_there() -> anyhow::Result<()> {
        let Some(uri) = std::env::var("TEST_MONGODB_URI")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(());
        };
        let database = format!(
            "extstatus_demo_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let config = Config {
            listen: "127.0.0.1:0".to_owned(),
            store: StoreConfig::Mongo {
                uri: crate::config::Secret::new(uri.clone()),
                database: database.clone(),
            },
            demo: true,
            ..Config::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let shutdown = CancellationToken::new();
        let running = start(config, listener, shutdown.clone()).await?;
        let addr = running.addr;
        until(addr, "40 agents with live states", |c| {
            c.len() == 40 && c.iter().all(|(_, code)| *code >= 0)
        })
        .await?;
        shutdown.cancel();
        running.wait().await?;
        // The agents are in MongoDB, not in an embedded store.
        let mongo = store::MongoStore::connect(
            &store::MongoConfig::new(uri, database),
            StoreOptions::default(),
        )
        .await?;
        let stored = mongo.list(&ExtensionFilter::default()).await?;
        mongo.drop_collections().await?;
        assert_eq!(stored.len(), 40);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_mode_seeds_the_sample_agents_and_the_simulator_moves_them() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let config = Config {
            listen: "127.0.0.1:0".to_owned(),
            store: StoreConfig::Embedded {
                data_dir: dir.path().to_path_buf(),
            },
            demo: true,
            ..Config::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let shutdown = CancellationToken::new();
        let running = start(config, listener, shutdown.clone()).await?;
        assert!(running.demo_ami.is_some_and(|a| a.ip().is_loopback()));
        let addr = running.addr;
        // The first list from the simulator gives every sample agent a live state.
        let first = until(addr, "40 agents with live states", |c| {
            c.len() == 40 && c.iter().all(|(_, code)| *code >= 0)
        })
        .await?;
        assert_eq!(first[0].0, "1001");
        // Then the call cycle moves the board.
        until(addr, "a status change", |c| c != first.as_slice()).await?;
        shutdown.cancel();
        running.wait().await?;
        Ok(())
    }
}
