//! Spawning an api-server on port 0 with a temporary store, and REST/WebSocket clients.
//!
//! The store is a fresh embedded one by default; [`Options::mongodb`] gives a server on a fresh
//! database of the MongoDB server named by `TEST_MONGODB_URI`, dropped again when the server
//! stops.
//!
//! Nothing here sleeps for a fixed time to let something happen: tests wait for conditions
//! with [`eventually`], which polls until a bounded timeout.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use api_server::config::{
    AmiConfig, AuthConfig, Config, Secret, SecurityConfig, StoreConfig, Timing, UiConfig,
};
use futures_util::{SinkExt as _, StreamExt as _};
use hub::ServerMessage;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or fails after [`PATIENCE`] naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {PATIENCE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The environment variable that names a MongoDB server for the tests.
pub const MONGODB_URI_VAR: &str = "TEST_MONGODB_URI";

/// The MongoDB URI of `TEST_MONGODB_URI`, if set and not blank.
pub fn mongodb_uri() -> Option<String> {
    std::env::var(MONGODB_URI_VAR)
        .ok()
        .filter(|uri| !uri.trim().is_empty())
}

/// Which store a test server runs on.
#[derive(Clone, Debug, Default)]
pub enum StoreKind {
    /// A fresh embedded store in a temporary directory.
    #[default]
    Embedded,
    /// A fresh database, named when the server starts, on this MongoDB server.
    MongoDb {
        /// The connection string.
        uri: String,
    },
}

/// A database name no other test server of any process uses: the process id, a counter and
/// the time, within MongoDB's 63-byte limit.
fn fresh_database_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("extstatus_e2e_{}_{n}_{stamp}", std::process::id())
}

/// What a test server is started with.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The AMI peer to connect to, with its user and secret.
    pub ami: Option<(SocketAddr, String, String)>,
    /// The admin token.
    pub admin_token: Option<String>,
    /// The viewer token.
    pub viewer_token: Option<String>,
    /// Timer overrides; `None` uses [`Options::fast_timing`].
    pub timing: Option<Timing>,
    /// Log in to the AMI peer with the MD5 challenge.
    pub ami_md5: bool,
    /// Follow only this dialplan context (`--ami-context`).
    pub ami_context: Option<String>,
    /// Allow PBX actions (`--ami-actions`: pause and resume from the API).
    pub ami_actions: bool,
    /// The dashboard's settings (`--pause-reasons`, `--queue-wait-amber`, `--queue-wait-red`).
    pub ui: Option<UiConfig>,
    /// Records (extension, agent, department) put into the store before the server starts,
    /// so that the first `ExtensionStateList` already finds them.
    pub seed: Vec<(String, String, String)>,
    /// The store to run on.
    pub store: StoreKind,
    /// CORS, write rate and WebSocket limits; `None` uses the server's defaults without the
    /// write rate limit, since tests that seed a thousand records through the API write far
    /// faster than a person (the limit has its own tests).
    pub security: Option<SecurityConfig>,
}

impl Options {
    /// Default options on a fresh MongoDB database, or `None` when `TEST_MONGODB_URI` is not
    /// set (`cargo xtask ci` says once that the MongoDB runs were skipped).
    pub fn mongodb() -> Option<Self> {
        mongodb_uri().map(|uri| Self {
            store: StoreKind::MongoDb { uri },
            ..Self::default()
        })
    }

    /// These options on the store of `base` (the embedded store, or a MongoDB server).
    pub fn on_store_of(self, base: &Options) -> Self {
        Self {
            store: base.store.clone(),
            ..self
        }
    }

    /// Timers short enough for tests: no long waits for `FullyBooted`, a short grace before a
    /// link drop is announced, and a quick WebSocket heartbeat.
    pub fn fast_timing() -> Timing {
        Timing {
            fully_booted_wait: Duration::from_millis(300),
            pbx_grace: Duration::from_millis(300),
            ws_ping_interval: Duration::from_secs(1),
            ws_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            last_seen_interval: Duration::from_millis(100),
            ..Timing::default()
        }
    }

    /// A server connected to the AMI peer at `addr`.
    pub fn with_ami(addr: SocketAddr, user: &str, secret: &str) -> Self {
        Self {
            ami: Some((addr, user.to_owned(), secret.to_owned())),
            ..Self::default()
        }
    }

    /// Adds records to seed, all in one department.
    pub fn seeded(mut self, extensions: &[&str], department: &str) -> Self {
        self.seed.extend(
            extensions
                .iter()
                .map(|e| ((*e).to_owned(), format!("Agent {e}"), department.to_owned())),
        );
        self
    }
}

/// Opens the embedded store in `dir` directly (while no server holds it). Cancel the token to
/// close it.
pub async fn open_store(
    dir: &std::path::Path,
) -> anyhow::Result<(Arc<dyn store::Repository>, CancellationToken)> {
    open_backend(&store::Backend::Embedded {
        data_dir: dir.to_path_buf(),
    })
    .await
}

/// Opens a store as a test's own client, beside (or before) the server. Cancel the token to
/// close it.
async fn open_backend(
    backend: &store::Backend,
) -> anyhow::Result<(Arc<dyn store::Repository>, CancellationToken)> {
    let token = CancellationToken::new();
    let store = store::open(
        backend,
        store::StoreOptions {
            shutdown: token.clone(),
            ..store::StoreOptions::default()
        },
    )
    .await?;
    Ok((store, token))
}

/// Writes `records` into a fresh store, then closes it.
async fn seed(
    backend: &store::Backend,
    records: &[(String, String, String)],
) -> anyhow::Result<()> {
    let (store, token) = open_backend(backend).await?;
    for (extension, agent, department) in records {
        store
            .create(domain::NewExtension {
                extension: domain::ExtensionNumber::parse(extension)?,
                agent_name: domain::AgentName::parse(agent)?,
                department: domain::Department::parse(department)?,
                is_active: true,
            })
            .await?;
    }
    store.flush().await?;
    token.cancel();
    Ok(())
}

/// A running server with its own temporary data directory.
pub struct TestServer {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The REST client.
    pub http: reqwest::Client,
    /// The admin token, sent on writes by the helpers.
    pub admin_token: Option<String>,
    shutdown: CancellationToken,
    running: Option<api_server::RunningServer>,
    /// The MongoDB database the server runs on, dropped when it stops.
    mongodb: Option<store::MongoConfig>,
    _dir: TempDir,
}

/// An HTTP answer: status and body (JSON when it parses).
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The content type.
    pub content_type: String,
    /// The body parsed as JSON, or `Value::Null`.
    pub json: Value,
    /// The raw body.
    pub text: String,
}

impl Reply {
    /// The `error.code` of an error body.
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with a fresh store of the kind `options.store` names.
    pub async fn start(options: Options) -> anyhow::Result<TestServer> {
        Self::start_in(options, tempfile::tempdir()?).await
    }

    /// Starts a server on 127.0.0.1:0 whose embedded store is in `dir` (a restart on the data
    /// a stopped server left, see [`TestServer::stop_keeping_data`]).
    pub async fn start_in(options: Options, dir: TempDir) -> anyhow::Result<TestServer> {
        install_log_capture();
        let (backend, store_config, mongodb) = match &options.store {
            StoreKind::Embedded => (
                store::Backend::Embedded {
                    data_dir: dir.path().to_path_buf(),
                },
                StoreConfig::Embedded {
                    data_dir: dir.path().to_path_buf(),
                },
                None,
            ),
            StoreKind::MongoDb { uri } => {
                let database = fresh_database_name();
                let config = store::MongoConfig::new(uri.clone(), database.clone());
                (
                    store::Backend::MongoDb(config.clone()),
                    StoreConfig::Mongo {
                        uri: Secret::new(uri.clone()),
                        database,
                    },
                    Some(config),
                )
            }
        };
        if !options.seed.is_empty() {
            seed(&backend, &options.seed).await?;
        }
        let (ami_addr, user, secret) = match &options.ami {
            Some((addr, user, secret)) => (
                addr.to_string(),
                Some(user.clone()),
                Some(Secret::new(secret.clone())),
            ),
            None => ("127.0.0.1:9".to_owned(), None, None),
        };
        let config = Config {
            listen: "127.0.0.1:0".to_owned(),
            store: store_config,
            ami: AmiConfig {
                addr: ami_addr,
                username: user,
                secret,
                md5: options.ami_md5,
                context: options.ami_context.clone(),
                actions: options.ami_actions,
            },
            auth: AuthConfig {
                admin_token: options.admin_token.clone().map(Secret::new),
                viewer_token: options.viewer_token.clone().map(Secret::new),
            },
            timing: options.timing.unwrap_or_else(Options::fast_timing),
            ui: options.ui.clone().unwrap_or_default(),
            security: options
                .security
                .clone()
                .unwrap_or_else(SecurityConfig::unlimited),
            ..Config::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let shutdown = CancellationToken::new();
        // The seeding store may take a moment to release its file after closing.
        let running = eventually("the store to open", || {
            let (config, listener, shutdown) =
                (config.clone(), listener.try_clone(), shutdown.clone());
            async move {
                match api_server::start(config, listener?, shutdown).await {
                    Ok(running) => Ok(Some(running)),
                    Err(api_server::ServerError::Store(e))
                        if e.to_string().contains("already open") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        })
        .await?;
        Ok(TestServer {
            addr: running.addr,
            http: reqwest::Client::new(),
            admin_token: options.admin_token,
            shutdown,
            running: Some(running),
            mongodb,
            _dir: dir,
        })
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server gracefully and waits for it; a MongoDB database is dropped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await?;
        }
        if let Some(config) = self.mongodb.take() {
            let store = store::MongoStore::connect(&config, store::StoreOptions::default())
                .await
                .context("connecting to drop the test database")?;
            store
                .drop_collections()
                .await
                .context("dropping the test database")?;
        }
        Ok(())
    }

    /// Stops the server gracefully and hands over its data directory, to look at what it left
    /// in the store. Only for a server on the embedded store.
    pub async fn stop_keeping_data(mut self) -> anyhow::Result<TempDir> {
        if self.mongodb.is_some() {
            bail!("stop_keeping_data is for the embedded store; this server runs on MongoDB");
        }
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await?;
        }
        let placeholder = tempfile::tempdir()?;
        Ok(std::mem::replace(&mut self._dir, placeholder))
    }

    /// Sends a request; `body` is sent as JSON when given; `token` as a bearer token.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body)?);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        reply(req.send().await?).await
    }

    /// Sends a raw request (any content type, any bytes).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let mut req = self.http.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(token) = &self.admin_token {
            req = req.bearer_auth(token);
        }
        reply(req.send().await?).await
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.request(reqwest::Method::GET, path, None, None).await
    }

    /// `POST /api/extensions` with the admin token; fails unless 201.
    pub async fn create(
        &self,
        extension: &str,
        agent: &str,
        department: &str,
    ) -> anyhow::Result<Value> {
        let body = serde_json::json!({
            "extension": extension, "agent_name": agent, "department": department
        });
        let r = self
            .request(
                reqwest::Method::POST,
                "/api/extensions",
                Some(&body),
                self.admin_token.as_deref(),
            )
            .await?;
        if r.status != 201 {
            bail!("creating {extension}: {} {}", r.status, r.text);
        }
        Ok(r.json)
    }

    /// The stored record of an extension number, via `GET /api/extensions`.
    pub async fn record(&self, extension: &str) -> anyhow::Result<Value> {
        self.record_as(extension, None).await
    }

    /// [`TestServer::record`] with a bearer token.
    pub async fn record_as(&self, extension: &str, token: Option<&str>) -> anyhow::Result<Value> {
        let r = self
            .request(reqwest::Method::GET, "/api/extensions", None, token)
            .await?;
        r.json
            .as_array()
            .and_then(|all| all.iter().find(|e| e["extension"] == extension))
            .cloned()
            .ok_or_else(|| anyhow!("no record for {extension}: {}", r.text))
    }

    /// The `/metrics` value of a sample line starting with `name` (labels included).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.get("/metrics").await?.text;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .ok_or_else(|| anyhow!("no metric {name}"))?
            .trim()
            .parse()
            .map_err(Into::into)
    }

    /// Waits until `extension` has `status_code` in the REST API.
    pub async fn wait_for_code(&self, extension: &str, code: i64) -> anyhow::Result<Value> {
        eventually(
            &format!("{extension} to have status_code {code}"),
            || async {
                let rec = self.record(extension).await?;
                Ok((rec["status_code"] == code).then_some(rec))
            },
        )
        .await
    }

    /// Opens `/ws` with a query string (e.g. `"?resume=5"`).
    pub async fn ws(&self, query: &str) -> anyhow::Result<WsClient> {
        WsClient::connect(self.addr, query).await
    }
}

impl TestServer {
    /// Opens `/ws{query}` with extra request headers (an `Origin`, say): the client, or the
    /// HTTP status the server refused the upgrade with.
    pub async fn ws_with_headers(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Result<WsClient, u16>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = format!("ws://{}/ws{query}", self.addr).into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().append(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
                value.parse()?,
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(Ok(WsClient {
                stream,
                pending: Vec::new(),
            })),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Ok(Err(res.status().as_u16())),
            Err(e) => Err(e).context("websocket connect"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that failed before `stop` still stops its server.
        self.shutdown.cancel();
    }
}

async fn reply(res: reqwest::Response) -> anyhow::Result<Reply> {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        content_type,
        json,
        text,
    })
}

/// A WebSocket client that reads the server's messages one by one, unpacking array frames.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: Vec<ServerMessage>,
}

/// What ended a WebSocket stream.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEnd {
    /// A close frame with this code.
    Closed(u16),
    /// The connection ended without a close frame.
    Dropped,
}

impl WsClient {
    /// Opens `/ws{query}` on the server at `addr` (a child process's, say).
    pub async fn connect(addr: SocketAddr, query: &str) -> anyhow::Result<WsClient> {
        let url = format!("ws://{addr}/ws{query}");
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .context("websocket connect")?;
        Ok(WsClient {
            stream,
            pending: Vec::new(),
        })
    }

    /// The next server message, waiting at most [`PATIENCE`].
    pub async fn next(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let frame = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .context("no websocket message in time")?
                .ok_or_else(|| anyhow!("websocket ended"))??;
            match frame {
                WsMessage::Text(text) => {
                    self.pending = ServerMessage::parse_frame(text.as_str())
                        .with_context(|| format!("bad frame {text}"))?;
                }
                WsMessage::Close(c) => bail!("websocket closed: {c:?}"),
                // Pings are answered by tungstenite itself.
                _ => {}
            }
        }
    }

    /// Reads messages until one satisfies `pred`, returning it (and dropping the rest).
    pub async fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ServerMessage) -> bool,
    ) -> anyhow::Result<ServerMessage> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.next())
                .await
                .with_context(|| format!("waiting for {what}"))??;
            if pred(&msg) {
                return Ok(msg);
            }
        }
    }

    /// Reads messages until one satisfies `pred`, returning all of them, that one last; at
    /// most twice [`PATIENCE`] in all.
    pub async fn collect_until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ServerMessage) -> bool,
    ) -> anyhow::Result<Vec<ServerMessage>> {
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        let mut seen = Vec::new();
        loop {
            let msg = tokio::time::timeout_at(deadline, self.next())
                .await
                .with_context(|| format!("waiting for {what}; saw {seen:?}"))??;
            let done = pred(&msg);
            seen.push(msg);
            if done {
                return Ok(seen);
            }
        }
    }

    /// Reads until the server ends the stream and says how.
    pub async fn end(&mut self) -> anyhow::Result<WsEnd> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .context("the server did not end the stream in time")?;
            match frame {
                Some(Ok(WsMessage::Close(c))) => {
                    return Ok(WsEnd::Closed(c.map_or(1005, |c| u16::from(c.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(WsEnd::Dropped),
            }
        }
    }

    /// Sends a text message to the server.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.stream.send(WsMessage::Text(text.into())).await?;
        Ok(())
    }

    /// Closes the connection from the client side.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.stream.send(WsMessage::Close(None)).await.ok();
        Ok(())
    }
}

/// Everything every test server logged, for the check that secrets never appear.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global subscriber that records every log line at debug
/// level into memory.
pub fn install_log_capture() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let result = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        if result.is_err() {
            // Another subscriber was installed first; say so, since the log checks then see
            // nothing.
            let _ = writeln!(std::io::stderr(), "log capture not installed");
        }
        buf
    });
}

/// Everything logged so far by every server in this test binary.
pub fn captured_logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned())
        .unwrap_or_default()
}
