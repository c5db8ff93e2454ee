//! End-to-end tests of store outages on a real MongoDB-wire server: the server is stopped under
//! load (AMI events from the peer, user edits) and started again, and a server starts while it
//! is down. Each test runs its own private MongoDB-wire server (it stops and starts it), on a
//! free port and in its own temporary folder; without the server's start script beside the
//! repository the tests say so in one line and pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use api_server::config::{AmiConfig, Config, Secret, StoreConfig};
use hub::ServerMessage;
use reqwest::Method;
use serde_json::{Value, json};
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::server::{Options, StoreKind, TestServer, eventually};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How many free ports a private server is tried on (another program may take one between the
/// look and the start).
const PORT_ATTEMPTS: usize = 3;

/// Up to this long is "fast" for `/readyz` (it answers from a cached probe; before, it waited
/// out the driver's 5 s server selection). A bound that tells the two designs apart, not a
/// benchmark: the measured times are printed and kept in `docs/reliability.md`.
const READYZ_BOUND: Duration = Duration::from_secs(1);
/// Up to this long is "quick" for an edit refused during an outage (the store timeout is
/// 1.5 s; a refusal once the probe noticed the outage is immediate).
const EDIT_BOUND: Duration = Duration::from_millis(2500);

/// Where a private MongoDB-wire server lives: its scripts, its folder and its port.
#[derive(Clone)]
struct Place {
    scripts: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Place {
    /// Starts (or restarts) the server; answers its URI.
    fn up(&self) -> anyhow::Result<String> {
        let out = std::process::Command::new(self.scripts.join("start"))
            .arg(&self.dir)
            .arg(self.port.to_string())
            .output()
            .context("running the MongoDB-wire start script")?;
        if !out.status.success() {
            bail!(
                "MongoDB-wire start on port {} failed: {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let uri = String::from_utf8(out.stdout)?.trim().to_owned();
        ensure!(uri.starts_with("mongodb://"), "start printed {uri:?}");
        Ok(uri)
    }

    /// Stops the server (its data stays).
    fn down(&self) -> anyhow::Result<()> {
        let out = std::process::Command::new(self.scripts.join("stop"))
            .arg(&self.dir)
            .output()
            .context("running the MongoDB-wire stop script")?;
        ensure!(
            out.status.success(),
            "MongoDB-wire stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// A private MongoDB-wire server in a temporary folder, stopped and removed when dropped.
struct MongoWire {
    place: Place,
    uri: String,
}

impl MongoWire {
    /// The folder of the MongoDB-wire server's scripts, beside the repository, if there.
    fn scripts() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/mongo-wire");
        dir.join("start").is_file().then_some(dir)
    }

    /// Starts a private server on a free port, or `None` (said in one line) without the
    /// scripts.
    fn start(test: &str) -> anyhow::Result<Option<MongoWire>> {
        let Some(scripts) = Self::scripts() else {
            println!("{test}: skipped, no MongoDB-wire server scripts beside the repository");
            return Ok(None);
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let dir = std::env::temp_dir().join(format!(
                "extstatus-outage-{port}-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            let place = Place {
                scripts: scripts.clone(),
                dir,
                port,
            };
            match place.up() {
                Ok(uri) => return Ok(Some(MongoWire { place, uri })),
                Err(e) => {
                    // A start that failed at the gateway may have left PostgreSQL running.
                    let _ = place.down();
                    let _ = std::fs::remove_dir_all(&place.dir);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt to start MongoDB-wire")))
    }

    /// Starts it again (same data), off the async runtime's threads.
    async fn up(&self) -> anyhow::Result<String> {
        let place = self.place.clone();
        tokio::task::spawn_blocking(move || place.up()).await?
    }

    /// Stops it (the data stays), off the async runtime's threads.
    async fn down(&self) -> anyhow::Result<()> {
        let place = self.place.clone();
        tokio::task::spawn_blocking(move || place.down()).await?
    }
}

impl Drop for MongoWire {
    fn drop(&mut self) {
        let _ = self.place.down();
        let _ = std::fs::remove_dir_all(&self.place.dir);
    }
}

/// A port nothing listens on now, in the range the start script accepts.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if (1024..=64000).contains(&port) {
            return Ok(port);
        }
    }
    bail!("no free port from 1024 to 64000")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `GET path` on `addr`, with how long the answer took.
async fn timed_get(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    path: &str,
) -> anyhow::Result<(u16, Value, Duration)> {
    let started = Instant::now();
    let res = http.get(format!("http://{addr}{path}")).send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        started.elapsed(),
    ))
}

/// Every record's status code by extension number, as `GET /api/extensions` answers; `None`
/// while the store does not answer.
async fn stored_codes(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Option<BTreeMap<String, i64>>> {
    let (status, body, _) = timed_get(http, addr, "/api/extensions").await?;
    if status != 200 {
        return Ok(None);
    }
    let records = body.as_array().context("a list")?;
    Ok(Some(
        records
            .iter()
            .map(|r| {
                (
                    r["extension"].as_str().unwrap_or_default().to_owned(),
                    r["status_code"].as_i64().unwrap_or(i64::MIN),
                )
            })
            .collect(),
    ))
}

/// The peer's status codes by extension number.
fn peer_codes(peer: &AmiPeer) -> BTreeMap<String, i64> {
    peer.states()
        .into_iter()
        .map(|(e, c)| (e, i64::from(c)))
        .collect()
}

/// Waits until the REST API and a new WebSocket client's snapshot both show every status of
/// the peer.
async fn statuses_match_the_peer(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    peer: &AmiPeer,
) -> anyhow::Result<()> {
    let want = peer_codes(peer);
    eventually("the stored statuses to equal the peer's", || async {
        Ok(stored_codes(http, addr)
            .await?
            .filter(|got| *got == want)
            .map(|_| ()))
    })
    .await?;
    eventually("a board's snapshot to equal the peer's", || async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
        use futures_util::StreamExt as _;
        let Some(frame) = ws.next().await else {
            return Ok(None);
        };
        let text = frame?.into_text()?;
        let messages = ServerMessage::parse_frame(text.as_str())?;
        let Some(ServerMessage::Snapshot { extensions, .. }) = messages.into_iter().next() else {
            bail!("the first message is not a snapshot: {text}");
        };
        let got: BTreeMap<String, i64> = extensions
            .iter()
            .map(|e| (e.extension.to_string(), i64::from(e.status_code)))
            .collect();
        Ok((got == want).then_some(()))
    })
    .await
}

/// The edits a client made to one record: the last acknowledged name, and the names sent since
/// whose outcome is unknown (a 503 that says the edit may still be applied).
#[derive(Default, Debug)]
struct Edits {
    acknowledged: Option<String>,
    maybe: Vec<String>,
}

/// What the edit loop saw.
#[derive(Default, Debug)]
struct EditLog {
    by_id: HashMap<String, Edits>,
    refused: usize,
    slowest_refusal: Duration,
    successes: usize,
}

/// Renames the records in turn until `stop` fires, noting every answer.
async fn edit_loop(
    http: reqwest::Client,
    addr: std::net::SocketAddr,
    ids: Vec<String>,
    stop: CancellationToken,
) -> anyhow::Result<EditLog> {
    let mut log = EditLog::default();
    let mut n = 0u64;
    while !stop.is_cancelled() {
        for id in &ids {
            n += 1;
            let name = format!("Agent edit {n}");
            let started = Instant::now();
            let res = http
                .put(format!("http://{addr}/api/extensions/{id}"))
                .json(&json!({ "agent_name": name }))
                .send()
                .await?;
            let took = started.elapsed();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let edits = log.by_id.entry(id.clone()).or_default();
            match status {
                200 => {
                    ensure!(body["agent_name"] == name.as_str(), "200 with {body}");
                    edits.acknowledged = Some(name);
                    edits.maybe.clear();
                    log.successes += 1;
                }
                503 => {
                    let message = body["error"]["message"].as_str().unwrap_or_default();
                    if message.contains("Reload to see whether") {
                        edits.maybe.push(name);
                    }
                    log.refused += 1;
                    log.slowest_refusal = log.slowest_refusal.max(took);
                }
                other => bail!("an edit answered {other}: {body}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(log)
}

/// Moves the peer's phones until `stop` fires: every change is an `ExtensionStatus` event.
async fn status_loop(peer: &AmiPeer, stop: CancellationToken) {
    const CODES: [i32; 4] = [0, 1, 8, 16];
    let extensions = ["1001", "1002", "1003", "1004", "1006", "1009", "1010"];
    let mut n = 0usize;
    while !stop.is_cancelled() {
        let ext = extensions[n % extensions.len()];
        peer.set_state(ext, CODES[(n / extensions.len()) % CODES.len()]);
        n += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_under_load_is_repaired_once_it_is_back() -> anyhow::Result<()> {
    let Some(mongo) = MongoWire::start("outage under load")? else {
        return Ok(());
    };
    let peer = AmiPeer::start(PeerConfig::default()).await;
    let config = PeerConfig::default();
    let extensions: Vec<String> = peer.states().into_iter().map(|(e, _)| e).collect();
    let refs: Vec<&str> = extensions.iter().map(String::as_str).collect();
    let options = Options {
        ami: Some((peer.addr(), config.username, config.secret)),
        store: StoreKind::MongoDb {
            uri: mongo.uri.clone(),
        },
        ..Options::default()
    }
    .seeded(&refs, "Agents");
    let s = TestServer::start(options).await?;
    let http = reqwest::Client::new();
    statuses_match_the_peer(&http, s.addr, &peer).await?;
    let listed = s.get("/api/extensions").await?.json;
    let ids: Vec<String> = listed
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|r| r["_id"].as_str().map(str::to_owned))
        .take(4)
        .collect();
    ensure!(ids.len() == 4, "records to edit: {listed}");

    // Load: phones moving and supervisors editing, through the whole outage.
    let stop_load = CancellationToken::new();
    let edits = tokio::spawn(edit_loop(http.clone(), s.addr, ids, stop_load.clone()));
    let statuses = status_loop(&peer, stop_load.clone());
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stopped = Instant::now();
        mongo.down().await?;
        // `/readyz` says so quickly, and stays fast while the store is down.
        let mut slowest = Duration::ZERO;
        let mut noticed = None;
        while stopped.elapsed() < Duration::from_secs(8) {
            let (status, body, took) = timed_get(&http, s.addr, "/readyz").await?;
            slowest = slowest.max(took);
            if status == 503 && noticed.is_none() {
                ensure!(body["store"]["ok"] == false, "{body}");
                ensure!(body["store"]["error"].is_string(), "{body}");
                ensure!(body["store"]["age_ms"].as_u64().is_some(), "{body}");
                noticed = Some(stopped.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let noticed = noticed.context("/readyz never said 503 while MongoDB was down")?;
        // An agent's phone goes busy while the store is down.
        peer.set_state("1005", 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        mongo.up().await?;
        let restarted = Instant::now();
        eventually("/readyz to say ready again", || async {
            let (status, _, _) = timed_get(&http, s.addr, "/readyz").await?;
            Ok((status == 200).then_some(()))
        })
        .await?;
        println!(
            "outage under load: /readyz said 503 {} ms after the stop began (the stop takes \
             about 4 s), slowest /readyz {} ms, ready {} ms after the restart",
            noticed.as_millis(),
            slowest.as_millis(),
            restarted.elapsed().as_millis()
        );
        ensure!(slowest < READYZ_BOUND, "/readyz took {slowest:?}");
        stop_load.cancel();
        anyhow::Ok(())
    };
    let (outage, ()) = tokio::join!(outage, statuses);
    stop_load.cancel();
    outage?;
    let log = edits.await??;
    println!(
        "outage under load: {} edits acknowledged, {} refused with 503, slowest refusal {} ms",
        log.successes,
        log.refused,
        log.slowest_refusal.as_millis()
    );
    ensure!(
        log.refused > 0,
        "no edit was refused during the outage: {log:?}"
    );
    ensure!(
        log.slowest_refusal < EDIT_BOUND,
        "an edit took {:?} to be refused",
        log.slowest_refusal
    );

    // Every status equals the peer's, in the store and on every board; every acknowledged edit
    // is there.
    let restarted = Instant::now();
    statuses_match_the_peer(&http, s.addr, &peer).await?;
    println!(
        "outage under load: statuses equal the peer's {} ms after /readyz said ready",
        restarted.elapsed().as_millis()
    );
    for (id, edits) in &log.by_id {
        let Some(acknowledged) = &edits.acknowledged else {
            continue;
        };
        let record = s.get(&format!("/api/extensions/{id}")).await?.json;
        let name = record["agent_name"].as_str().unwrap_or_default();
        ensure!(
            name == acknowledged || edits.maybe.iter().any(|m| m == name),
            "record {id} has {name:?}; acknowledged {acknowledged:?}, maybe {:?}",
            edits.maybe
        );
    }
    s.stop().await?;
    drop(mongo);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_without_mongodb_and_recovers_when_it_comes() -> anyhow::Result<()> {
    let Some(mongo) = MongoWire::start("start without MongoDB")? else {
        return Ok(());
    };
    let peer = AmiPeer::start(PeerConfig::default()).await;
    let peer_config = PeerConfig::default();
    // Records stored before the outage.
    let database = format!("extstatus_outage_{}_{}", std::process::id(), rand_suffix());
    let mongo_config = store::MongoConfig::new(mongo.uri.clone(), database.clone());
    {
        let token = CancellationToken::new();
        let seeding = store::MongoStore::connect(
            &mongo_config,
            store::StoreOptions {
                shutdown: token.clone(),
                ..store::StoreOptions::default()
            },
        )
        .await?;
        use store::Repository as _;
        for (ext, _) in peer.states() {
            seeding
                .create(domain::NewExtension {
                    extension: domain::ExtensionNumber::parse(&ext)?,
                    agent_name: domain::AgentName::parse(&format!("Agent {ext}"))?,
                    department: domain::Department::parse("Agents")?,
                    is_active: true,
                })
                .await?;
        }
        token.cancel();
    }
    mongo.down().await?;

    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        store: StoreConfig::Mongo {
            uri: Secret::new(mongo.uri.clone()),
            database,
        },
        ami: AmiConfig {
            addr: peer.addr().to_string(),
            username: Some(peer_config.username.clone()),
            secret: Some(Secret::new(peer_config.secret.clone())),
            md5: false,
            context: None,
            actions: false,
        },
        timing: Options::fast_timing(),
        ..Config::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let shutdown = CancellationToken::new();
    let running = api_server::start(config, listener, shutdown.clone())
        .await
        .context("the server must start without MongoDB")?;
    let addr = running.addr;
    let http = reqwest::Client::new();

    let (status, _, _) = timed_get(&http, addr, "/healthz").await?;
    ensure!(status == 200, "/healthz {status}");
    let (status, body, took) = timed_get(&http, addr, "/readyz").await?;
    ensure!(status == 503, "/readyz {status}: {body}");
    ensure!(body["store"]["ok"] == false, "{body}");
    ensure!(took < READYZ_BOUND, "/readyz took {took:?}");
    let page = http.get(format!("http://{addr}/")).send().await?;
    ensure!(
        page.status().as_u16() == 200,
        "the dashboard page: {}",
        page.status()
    );
    let started = Instant::now();
    let res = http
        .request(Method::POST, format!("http://{addr}/api/extensions"))
        .json(&json!({"extension": "3000", "agent_name": "New", "department": "Agents"}))
        .send()
        .await?;
    let took = started.elapsed();
    ensure!(res.status().as_u16() == 503, "POST {}", res.status());
    ensure!(took < EDIT_BOUND, "POST took {took:?}");
    println!(
        "start without MongoDB: /readyz 503, a POST refused in {} ms",
        took.as_millis()
    );

    // MongoDB comes: indexes, records and statuses follow by themselves.
    peer.set_state("1001", 2);
    mongo.up().await?;
    let up = Instant::now();
    eventually("/readyz to say ready", || async {
        let (status, _, _) = timed_get(&http, addr, "/readyz").await?;
        Ok((status == 200).then_some(()))
    })
    .await?;
    statuses_match_the_peer(&http, addr, &peer).await?;
    println!(
        "start without MongoDB: statuses equal the peer's {} ms after MongoDB started",
        up.elapsed().as_millis()
    );
    // Edits work again.
    let res = http
        .request(Method::POST, format!("http://{addr}/api/extensions"))
        .json(&json!({"extension": "3000", "agent_name": "New", "department": "Agents"}))
        .send()
        .await?;
    ensure!(
        res.status().as_u16() == 201,
        "POST after recovery {}",
        res.status()
    );

    shutdown.cancel();
    running.wait().await?;
    let cleanup = store::MongoStore::connect(&mongo_config, store::StoreOptions::default()).await?;
    cleanup.drop_collections().await?;
    drop(mongo);
    Ok(())
}
