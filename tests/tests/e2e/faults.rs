//! Fault tests: a real server (in this process, or the `api-server` binary as a child) against
//! an `ami-sim` peer that misbehaves through its hooks — a close in the middle of a packet, a
//! silent peer, a PBX restart with other states, a refused login, a flood of events — and
//! clients and signals that misbehave: WebSockets that never read, 10,000 connect/disconnect
//! cycles, SIGTERM and `kill -9` in the middle of a burst of edits. `docs/reliability.md`
//! lists what each proves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use hub::ServerMessage;
use serde_json::{Value, json};
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::process::ServerProcess;
use tests::server::{Options, PATIENCE, TestServer, WsClient, captured_logs, eventually};
use tokio::io::AsyncWriteExt as _;

/// The extensions hinted on the peer at start.
const HINTED: [&str; 11] = [
    "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1099",
];

/// The state codes the floods cycle through.
const CODES: [i32; 7] = [0, 1, 2, 4, 8, 16, 9];

/// Ends a flood with a last change to the ten agents' extensions that gives them the codes
/// `CODES[2k mod 7]` side by side: a board no flood round (which moves the extensions in
/// step, or shifted by one code each) passes through, so a board or client that shows it has
/// taken in the end of the flood, not a look-alike moment in its middle. Returns the number
/// of changes made.
fn settle(peer: &AmiPeer) -> usize {
    let now: HashMap<String, i32> = peer.states().into_iter().collect();
    let mut changes = 0;
    for (k, exten) in HINTED[..10].iter().enumerate() {
        let code = CODES[(2 * k) % CODES.len()];
        if now.get(*exten) != Some(&code) {
            peer.set_state(exten, code);
            changes += 1;
        }
    }
    changes
}

/// A peer with the captured hints and a server seeded with every hinted extension.
async fn start(
    peer_config: PeerConfig,
    mut options: Options,
) -> anyhow::Result<(AmiPeer, TestServer)> {
    let peer = AmiPeer::start(peer_config.clone()).await;
    options.ami = Some((peer.addr(), peer_config.username, peer_config.secret));
    let server = TestServer::start(options.seeded(&HINTED, "Agents")).await?;
    Ok((peer, server))
}

/// The stored `status_code` of every record, by extension number, from `GET /api/extensions`
/// at `base` (`http://host:port`).
async fn board(http: &reqwest::Client, base: &str) -> anyhow::Result<HashMap<String, i64>> {
    let all: Value = http
        .get(format!("{base}/api/extensions"))
        .send()
        .await?
        .json()
        .await?;
    all.as_array()
        .ok_or_else(|| anyhow!("GET /api/extensions is not an array: {all}"))?
        .iter()
        .map(|r| {
            Ok((
                r["extension"].as_str().unwrap_or_default().to_owned(),
                r["status_code"]
                    .as_i64()
                    .ok_or_else(|| anyhow!("no status_code in {r}"))?,
            ))
        })
        .collect()
}

/// Waits until the board at `base` shows exactly the peer's states for every hinted extension
/// (and `-1`, unknown, for each of `gone`); on timeout, names every extension that differs.
async fn board_equals_peer(base: &str, peer: &AmiPeer, gone: &[&str]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let want: Vec<(String, i64)> = peer
            .states()
            .into_iter()
            .map(|(e, c)| (e, i64::from(c)))
            .chain(gone.iter().map(|e| ((*e).to_owned(), -1)))
            .collect();
        let have = board(&http, base).await?;
        let wrong: Vec<String> = want
            .iter()
            .filter(|(e, c)| have.get(e) != Some(c))
            .map(|(e, c)| format!("{e}: board {:?}, PBX {c}", have.get(e)))
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the board never matched the PBX: {}", wrong.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `/readyz`'s `ami` object.
async fn ami_readiness(s: &TestServer) -> anyhow::Result<Value> {
    Ok(s.get("/readyz").await?.json["ami"].clone())
}

/// Waits for a `pbx_link` message with this state.
async fn pbx_link(ws: &mut WsClient, connected: bool) -> anyhow::Result<ServerMessage> {
    ws.until(
        &format!("pbx_link connected={connected}"),
        |m| matches!(m, ServerMessage::PbxLink { connected: c, .. } if *c == connected),
    )
    .await
}

/// How many times `action` is in the peer's journal.
fn count(peer: &AmiPeer, action: &str) -> usize {
    peer.actions_received()
        .iter()
        .filter(|a| a.eq_ignore_ascii_case(action))
        .count()
}

#[tokio::test]
async fn a_close_in_the_middle_of_a_packet_is_repaired_by_the_resync() -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    let base = s.url("");
    board_equals_peer(&base, &peer, &[]).await?;
    // While the link dies, states change with no event: only the next list can tell.
    peer.set_state_silently("1001", 0);
    peer.set_state_silently("1004", 16);
    peer.drop_connections_mid_packet();
    tokio::time::timeout(PATIENCE, peer.wait_for_login(2))
        .await
        .context("the server logs in again after a close mid-packet")?;
    board_equals_peer(&base, &peer, &[]).await?;
    // Events flow again on the new connection.
    peer.set_state("1002", 1);
    s.wait_for_code("1002", 1).await?;
    assert_eq!(ami_readiness(&s).await?["connected"], true);
    s.stop().await
}

#[tokio::test]
async fn a_silent_peer_is_noticed_by_the_keepalive_and_the_link_comes_back() -> anyhow::Result<()> {
    let ping = Duration::from_millis(400);
    let timing = api_server::config::Timing {
        ami_ping_interval: ping,
        ..Options::fast_timing()
    };
    let (peer, s) = start(
        PeerConfig::default(),
        Options {
            timing: Some(timing),
            ..Options::default()
        },
    )
    .await?;
    board_equals_peer(&s.url(""), &peer, &[]).await?;
    let mut ws = s.ws("").await?;
    ws.next().await?;

    let pings_before = count(&peer, "Ping");
    let logins_before = peer.logins();
    let silent_at = std::time::Instant::now();
    peer.go_silent(true);
    // `/readyz` reports the link down with its reason, and the WebSocket clients hear it
    // after the grace. (The link state flips as the client gives up; the pipeline notes the
    // reason a moment later, when it takes the client's event.)
    let ami = eventually("/readyz to report the AMI link down", || async {
        let ami = ami_readiness(&s).await?;
        Ok((ami["connected"] == false && !ami["last_error"].is_null()).then_some(ami))
    })
    .await?;
    let noticed_after = silent_at.elapsed();
    assert!(
        ami["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Ping")),
        "the keepalive is named as the reason: {ami}"
    );
    // Noticed within two ping intervals: at most one Ping went unanswered before the client
    // gave up (one to notice, one deadline to wait out), not a long series.
    let unanswered = count(&peer, "Ping") - pings_before;
    assert!(
        (1..=2).contains(&unanswered),
        "{unanswered} Pings went unanswered before the link was declared dead"
    );
    pbx_link(&mut ws, false).await?;
    println!(
        "silent peer noticed after {noticed_after:?} (ping interval {ping:?}), {unanswered} unanswered Ping"
    );

    // The path comes back: the connection hung in its login is reset, and a new one logs in.
    peer.go_silent(false);
    peer.drop_connections();
    tokio::time::timeout(PATIENCE, peer.wait_for_login(logins_before + 1))
        .await
        .context("the server reconnects once the peer answers again")?;
    pbx_link(&mut ws, true).await?;
    eventually("/readyz to report the AMI link up", || async {
        Ok((ami_readiness(&s).await?["connected"] == true).then_some(()))
    })
    .await?;
    peer.set_state("1005", 2);
    s.wait_for_code("1005", 2).await?;
    s.stop().await
}

#[tokio::test]
async fn a_pbx_restart_with_other_states_is_corrected_by_the_resync() -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    let base = s.url("");
    board_equals_peer(&base, &peer, &[]).await?;
    // The call center before the restart: 1001 and 1002 in sales (1002 paused), 1003 in
    // support, 1001 away and 1002 on do-not-disturb.
    for (queue, exten) in [("sales", "1001"), ("sales", "1002"), ("support", "1003")] {
        assert!(peer.add_member(queue, exten, &format!("Agent {exten}"), false));
    }
    assert!(peer.pause("1002", Some("Lunch"), false));
    for (exten, state) in [("1001", "away"), ("1002", "dnd")] {
        assert!(peer.add_presence_to_hint(exten));
        assert!(peer.set_presence(exten, state, "", false));
    }
    // A state event carries the new hint (with its presence provider) to the server.
    peer.set_state("1001", 2);
    peer.set_state("1002", 2);
    let before = HashMap::from([
        ("1001", (json!([sales(false, None, None)]), json!("away"))),
        (
            "1002",
            (json!([sales(true, Some("Lunch"), None)]), json!("dnd")),
        ),
        (
            "1003",
            (
                json!([member_of("support", false, None, None)]),
                Value::Null,
            ),
        ),
    ]);
    call_center_equals(&s, &before).await?;
    // The PBX goes down: connections close, new ones are refused while it boots.
    peer.refuse_connections(true);
    peer.drop_connections();
    eventually("/readyz to report the AMI link down", || async {
        Ok((ami_readiness(&s).await?["connected"] == false).then_some(()))
    })
    .await?;
    // It comes back with every state different and one hint gone.
    let restarted: Vec<(&str, i32)> = HINTED
        .iter()
        .filter(|e| **e != "1099")
        .enumerate()
        .map(|(i, e)| (*e, [0, 1, 2, 4, 8, 16, 9][(i + 3) % 7]))
        .collect();
    peer.replace_hints(&restarted);
    // ...and another call center, which it announces to nobody: 1003 left support, 1004
    // joined sales, 1002 is back, 1001 went to a training that began ten minutes ago, 1001 is
    // available again and 1002 extended away.
    assert!(peer.remove_member("support", "1003", true));
    assert!(peer.add_member("sales", "1004", "Agent 1004", true));
    assert!(peer.pause("1002", None, true));
    let training = domain::now().timestamp() - 600;
    assert!(peer.pause_since("1001", "Training", u64::try_from(training)?, true));
    for (exten, state) in [("1001", "available"), ("1002", "xa")] {
        assert!(peer.add_presence_to_hint(exten));
        assert!(peer.set_presence(exten, state, "", true));
    }
    peer.refuse_connections(false);
    tokio::time::timeout(PATIENCE, peer.wait_for_login(2))
        .await
        .context("the server logs in to the restarted PBX")?;
    board_equals_peer(&base, &peer, &["1099"]).await?;
    let since = domain::Timestamp::from_timestamp(training, 0).context("epoch")?;
    let since = domain::format_rfc3339(&since);
    let after = HashMap::from([
        (
            "1001",
            (
                json!([sales(true, Some("Training"), Some(&since))]),
                json!("available"),
            ),
        ),
        ("1002", (json!([sales(false, None, None)]), json!("xa"))),
        ("1003", (json!([]), Value::Null)),
        ("1004", (json!([sales(false, None, None)]), Value::Null)),
    ]);
    call_center_equals(&s, &after).await?;
    s.stop().await
}

/// A queue membership as the record shows it, for a member who took no call.
fn member_of(queue: &str, paused: bool, reason: Option<&str>, since: Option<&str>) -> Value {
    json!({
        "queue": queue, "paused": paused, "paused_reason": reason, "paused_since": since,
        "penalty": 0, "calls_taken": 0, "last_call": null, "in_call": false,
    })
}

fn sales(paused: bool, reason: Option<&str>, since: Option<&str>) -> Value {
    member_of("sales", paused, reason, since)
}

/// Waits until every record's `queues` and presence state are the PBX's: `want` by extension
/// (`[]` and null for every other one). A pause's start is checked where `want` names one,
/// and only that it is set where it does not. On timeout, names every record that differs.
async fn call_center_equals(
    s: &TestServer,
    want: &HashMap<&str, (Value, Value)>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let all = s.get("/api/extensions").await?.json;
        let mut wrong = Vec::new();
        for r in all.as_array().into_iter().flatten() {
            let exten = r["extension"].as_str().unwrap_or_default();
            let (queues, presence) = want.get(exten).cloned().unwrap_or((json!([]), Value::Null));
            let mut have = r["queues"].clone();
            // A pause seen live starts when the PBX says; the test knows only that it is set.
            for (h, w) in have
                .as_array_mut()
                .into_iter()
                .flatten()
                .zip(queues.as_array().into_iter().flatten())
            {
                if w["paused"] == true
                    && w["paused_since"].is_null()
                    && h["paused_since"].is_string()
                {
                    h["paused_since"] = Value::Null;
                }
            }
            let state = r["presence"]["state"].clone();
            if have != queues || state != presence {
                wrong.push(format!(
                    "{exten}: board {have} / {state}, PBX {queues} / {presence}"
                ));
            }
        }
        if wrong.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the call-center state never matched the PBX: {}",
                wrong.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_refused_login_is_reported_and_retried_with_backoff() -> anyhow::Result<()> {
    let peer = AmiPeer::start(PeerConfig::default()).await;
    let s = TestServer::start(
        Options::with_ami(peer.addr(), "monitor", "not-the-secret-7a1f").seeded(&HINTED, "Agents"),
    )
    .await?;
    let ami = eventually("/readyz to name the refused login", || async {
        let ami = ami_readiness(&s).await?;
        Ok(ami["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("login refused"))
            .then_some(ami))
    })
    .await?;
    assert!(
        ami["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("authentication failed")),
        "wrong credentials are named as such: {ami}"
    );
    assert!(
        s.metric("extstatus_ami_failures_total{reason=\"auth_failed\"}")
            .await?
            >= 1.0
    );
    assert_eq!(
        s.metric("extstatus_ami_failures_total{reason=\"login_timeout\"}")
            .await?,
        0.0
    );
    assert_eq!(ami["connected"], false, "{ami}");
    assert!(
        ami["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Authentication failed")),
        "the PBX's own words are kept: {ami}"
    );
    let logs = captured_logs();
    assert!(logs.contains("AMI login refused"), "the refusal is logged");
    assert!(
        !logs.contains("not-the-secret-7a1f"),
        "the secret is never logged"
    );

    // No tight loop: over a window of two seconds the attempts follow the doubling backoff
    // (0.5 s, 1 s, 2 s... each with jitter down to half), so at most 4 more, where a loop
    // without backoff against a peer that refuses at once would make hundreds.
    let window = Duration::from_secs(2);
    let before = count(&peer, "Login");
    tokio::time::sleep(window).await;
    let attempts = count(&peer, "Login") - before;
    println!("refused login: {attempts} attempts in {window:?}");
    assert!(attempts <= 5, "{attempts} login attempts in {window:?}");
    assert_eq!(peer.logins(), 0);
    assert_eq!(s.get("/healthz").await?.status, 200);
    s.stop().await
}

/// A peer at `--ami` that is not an Asterisk manager (an SSH server, an HTTP server that waits
/// for a request, garbage) is named as such in `/readyz`, the logs and `/metrics`, quoting a
/// bounded, escaped piece of what it sent, not as a login that timed out.
#[tokio::test]
async fn a_peer_that_is_not_an_asterisk_manager_is_named() -> anyhow::Result<()> {
    // (what the peer sends on connect, what /readyz must quote)
    let cases: [(&[u8], &str); 3] = [
        (
            b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n",
            "SSH-2.0-OpenSSH_9.6p1",
        ),
        (
            b"\x1b[31mHELLO\x07 world\r\n",
            "\\u{1b}[31mHELLO\\u{7} world",
        ),
        (b"", "no \"Asterisk Call Manager/x.y\" banner"),
    ];
    for (greeting, quote) in cases {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let peer = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(greeting).await;
                // Like an SSH or HTTP server: it waits for the client, which never speaks.
                held.push(socket);
            }
        });
        // The silent peer is given up at the login deadline, the action timeout.
        let s = TestServer::start(Options {
            timing: Some(api_server::config::Timing {
                ami_action_timeout: Duration::from_millis(500),
                ..Options::fast_timing()
            }),
            ..Options::with_ami(addr, "monitor", "monitorpass")
        })
        .await?;
        let ami = eventually("/readyz to name a peer that is not AMI", || async {
            let ami = ami_readiness(&s).await?;
            Ok(ami["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not an Asterisk manager"))
                .then_some(ami))
        })
        .await?;
        let error = ami["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(quote), "{quote:?} quoted: {error}");
        assert!(!error.contains("login timed out"), "{error}");
        assert!(!error.contains('\u{1b}'), "escaped: {error}");
        assert_eq!(ami["connected"], false);
        assert!(
            s.metric("extstatus_ami_failures_total{reason=\"not_ami\"}")
                .await?
                >= 1.0
        );
        assert!(captured_logs().contains("not an Asterisk manager"));
        s.stop().await?;
        peer.abort();
    }
    Ok(())
}

/// `ExtensionStatus` events the server counted (the metric appears with the first one).
async fn status_events(s: &TestServer) -> f64 {
    s.metric("extstatus_ami_events_total{event=\"ExtensionStatus\"}")
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_flood_of_100000_events_ends_with_the_peers_final_states() -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    let base = s.url("");
    board_equals_peer(&base, &peer, &[]).await?;
    let events_before = status_events(&s).await;
    let resyncs_before = s.metric("extstatus_resyncs_total").await?;

    // A prober asks /healthz over and over while the flood runs.
    let done = Arc::new(tokio::sync::Notify::new());
    let prober = {
        let (url, http, done) = (s.url("/healthz"), s.http.clone(), done.clone());
        tokio::spawn(async move {
            let mut answered = 0usize;
            loop {
                let status = http.get(&url).send().await.map(|r| r.status().as_u16());
                if !matches!(status, Ok(200)) {
                    return Err(anyhow!("/healthz answered {status:?} during the flood"));
                }
                answered += 1;
                tokio::select! {
                    () = done.notified() => return Ok(answered),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        })
    };
    // 100,000 real changes (each one differs from the extension's state before it), written
    // as fast as the simulator takes them.
    let codes = CODES;
    let hinted = &HINTED[..10];
    let mut current: HashMap<String, i32> = peer.states().into_iter().collect();
    let mut changes = 0usize;
    let mut i = 0usize;
    while changes < 100_000 {
        let exten = hinted[i % hinted.len()];
        let code = codes[(i / hinted.len()) % codes.len()];
        i += 1;
        if current.insert(exten.to_owned(), code) == Some(code) {
            continue;
        }
        peer.set_state(exten, code);
        changes += 1;
        if changes.is_multiple_of(512) {
            // Let the simulator's session and the server run.
            tokio::task::yield_now().await;
        }
    }
    changes += settle(&peer);
    board_equals_peer(&base, &peer, &[]).await?;
    done.notify_one();
    let answered = prober.await??;
    let events = status_events(&s).await - events_before;
    let logins = peer.logins();
    let resyncs = s.metric("extstatus_resyncs_total").await? - resyncs_before;
    let lagged = captured_logs().contains("AMI events were dropped; resyncing");
    println!(
        "flood: {changes} changes, {events} ExtensionStatus events processed over {logins} \
         login(s), {resyncs} resyncs, /healthz answered {answered} times"
    );
    // Either every event was processed, or the server fell behind, dropped events rather than
    // block the socket reader, and a resync (not the dropped events) set the final states.
    if events < 100_000.0 {
        assert!(
            resyncs >= 1.0 && (lagged || logins > 1),
            "{events} of 100000 events processed but no resync after a lag or reconnect"
        );
    } else {
        assert_eq!(events, changes as f64, "no event is processed twice");
    }
    assert_eq!(s.get("/healthz").await?.status, 200);
    s.stop().await
}

/// Opens `/ws` on `addr` with a raw handshake and never reads a byte.
async fn deaf_client(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    Ok(stream)
}

/// `ws_clients` of `/readyz` at `base`.
async fn ws_clients(http: &reqwest::Client, base: &str) -> anyhow::Result<i64> {
    let r: Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    r["ws_clients"]
        .as_i64()
        .ok_or_else(|| anyhow!("no ws_clients in /readyz: {r}"))
}

/// Reads a WebSocket at `url` until its view shows `want` for every extension; handles
/// snapshots (the first, and any cut-over after falling behind) and status updates.
async fn read_until_board(url: &str, want: &HashMap<String, i64>) -> anyhow::Result<()> {
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await?;
    let mut view: HashMap<String, i64> = HashMap::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while want.iter().any(|(e, c)| view.get(e) != Some(c)) {
        let frame = tokio::time::timeout_at(deadline, stream.next())
            .await
            .context("the reading client never saw the final board")?
            .ok_or_else(|| anyhow!("websocket ended"))??;
        let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
            continue;
        };
        for msg in ServerMessage::parse_frame(text.as_str())? {
            match msg {
                ServerMessage::Snapshot { extensions, .. } => {
                    view = extensions
                        .iter()
                        .map(|e| (e.extension.to_string(), i64::from(e.status_code)))
                        .collect();
                }
                ServerMessage::ExtensionStatusUpdated { extension, .. } => {
                    view.insert(
                        extension.extension.to_string(),
                        i64::from(extension.status_code),
                    );
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The `api-server` binary connected to `peer`, with a fast WebSocket heartbeat, its store
/// seeded with the hinted extensions.
async fn server_process(peer: &AmiPeer, dir: &std::path::Path) -> anyhow::Result<ServerProcess> {
    server_process_with(peer, dir, &[]).await
}

/// [`server_process`] with more arguments.
async fn server_process_with(
    peer: &AmiPeer,
    dir: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<ServerProcess> {
    let seeded = TestServer::start(Options::default().seeded(&HINTED, "Agents")).await?;
    // The seed goes through a server of this process, whose data directory is then reused.
    let data = seeded.stop_keeping_data().await?;
    std::fs::remove_dir_all(dir).ok();
    std::fs::rename(data.path(), dir)
        .or_else(|_| copy_dir(data.path(), dir))
        .context("move the seeded store")?;
    let ami = peer.server_args();
    let mut args: Vec<&str> = ami.iter().map(String::as_str).collect();
    args.extend([
        "--ws-ping-interval",
        "200ms",
        "--ws-timeout",
        "1s",
        "--log",
        "warn,api_server=info,store=info",
    ]);
    args.extend_from_slice(extra);
    ServerProcess::start(dir, &args)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_that_never_read_and_10000_connect_cycles_keep_memory_bounded()
-> anyhow::Result<()> {
    let peer = AmiPeer::start(PeerConfig::default()).await;
    let tmp = tempfile::tempdir()?;
    let server = server_process(&peer, &tmp.path().join("data")).await?;
    let base = server.url("");
    let ws_url = format!("ws://{}/ws", server.addr);
    let http = reqwest::Client::new();
    board_equals_peer(&base, &peer, &[]).await?;

    // Twenty clients that never read, then a flood of changes the server must push at them.
    let mut deaf = Vec::new();
    for _ in 0..20 {
        deaf.push(deaf_client(server.addr).await?);
    }
    eventually("the deaf clients to be counted", || async {
        Ok((ws_clients(&http, &base).await? >= 20).then_some(()))
    })
    .await?;
    let rss_start = server.rss_kib()?;
    for i in 0..20_000usize {
        peer.set_state(HINTED[i % 10], CODES[(i / 10 + i) % CODES.len()]);
        if i.is_multiple_of(512) {
            tokio::task::yield_now().await;
        }
    }
    settle(&peer);
    // A client that reads still gets the final board while the deaf ones hold their sockets.
    let want: HashMap<String, i64> = peer
        .states()
        .into_iter()
        .map(|(e, c)| (e, i64::from(c)))
        .collect();
    read_until_board(&ws_url, &want).await?;
    board_equals_peer(&base, &peer, &[]).await?;
    // The deaf clients answer no ping: the heartbeat closes every one of them.
    eventually("the deaf clients to be closed", || async {
        Ok((ws_clients(&http, &base).await? == 0).then_some(()))
    })
    .await?;
    let rss_flood = server.rss_kib()?;
    drop(deaf);

    // 10,000 connect/disconnect cycles, four at a time; each takes its snapshot and leaves.
    let cycle = |n: usize| {
        let url = ws_url.clone();
        async move {
            for _ in 0..n {
                let (mut stream, _) = tokio_tungstenite::connect_async(&url).await?;
                stream
                    .next()
                    .await
                    .ok_or_else(|| anyhow!("no snapshot"))??;
                stream.close(None).await.ok();
            }
            anyhow::Ok(())
        }
    };
    let run = |total: usize| async move {
        let workers: Vec<_> = (0..4).map(|_| tokio::spawn(cycle(total / 4))).collect();
        for w in workers {
            w.await??;
        }
        anyhow::Ok(())
    };
    run(1_000).await?; // warm-up: allocator pools and buffers reach their working size
    let rss_warm = server.rss_kib()?;
    run(10_000).await?;
    eventually("every cycled client to be gone", || async {
        Ok((ws_clients(&http, &base).await? == 0).then_some(()))
    })
    .await?;
    let rss_end = server.rss_kib()?;
    println!(
        "server RSS: {rss_start} KiB before the flood with 20 deaf clients, {rss_flood} KiB after; \
         {rss_warm} KiB after 1,000 warm-up cycles, {rss_end} KiB after 10,000 more"
    );
    assert!(
        rss_flood < rss_start + 32 * 1024,
        "the deaf clients grew the server from {rss_start} to {rss_flood} KiB"
    );
    assert!(
        rss_end < rss_warm + 16 * 1024,
        "10,000 connect/disconnect cycles grew the server from {rss_warm} to {rss_end} KiB"
    );
    // Still serving.
    read_until_board(&ws_url, &want).await?;
    let stopped = server.signal_and_wait("TERM")?;
    assert_eq!(stopped, Some(0));
    Ok(())
}

/// A `/ws` client on a raw socket that reads slowly, and what it has read: the board its
/// stream shows, checked message by message (each change follows the one before it by one, or
/// comes after an explicit resync snapshot).
#[derive(Default)]
struct SlowReader {
    upgraded: bool,
    /// Bytes read and not yet consumed as whole frames.
    buf: Vec<u8>,
    last_seq: Option<u64>,
    view: HashMap<String, i64>,
    /// Snapshots after the first: the server cut this client over instead of buffering for it.
    resyncs: u64,
}

impl SlowReader {
    /// Takes in `bytes` and reads every whole frame they complete.
    fn consume(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        if !self.upgraded {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            anyhow::ensure!(
                self.buf.starts_with(b"HTTP/1.1 101"),
                "the upgrade was refused: {}",
                String::from_utf8_lossy(&self.buf[..end])
            );
            self.upgraded = true;
            at = end + 4;
        }
        // Server frames: unmasked, unfragmented (RFC 6455, section 5.2).
        loop {
            let rest = &self.buf[at..];
            let (Some(&b0), Some(&b1)) = (rest.first(), rest.get(1)) else {
                break;
            };
            anyhow::ensure!(b1 & 0x80 == 0, "a masked frame from the server");
            let (len, head) = match b1 & 0x7f {
                126 if rest.len() >= 4 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
                127 if rest.len() >= 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&rest[2..10]);
                    (usize::try_from(u64::from_be_bytes(n))?, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if rest.len() < head + len {
                break;
            }
            anyhow::ensure!(b0 & 0x80 != 0, "a fragmented frame from the server");
            let payload = &rest[head..head + len];
            match b0 & 0x0f {
                1 => {
                    let text = std::str::from_utf8(payload)?.to_owned();
                    self.text(&text)?;
                }
                9 | 10 => {}
                8 => bail!("the server closed the connection"),
                op => bail!("unexpected frame opcode {op}"),
            }
            at += head + len;
        }
        self.buf.drain(..at);
        Ok(())
    }

    fn text(&mut self, text: &str) -> anyhow::Result<()> {
        for msg in ServerMessage::parse_frame(text)? {
            let seq = msg.seq();
            match msg {
                ServerMessage::Snapshot { extensions, .. } => {
                    if self.last_seq.is_some() {
                        self.resyncs += 1;
                    }
                    self.view = extensions
                        .iter()
                        .map(|e| (e.extension.to_string(), i64::from(e.status_code)))
                        .collect();
                }
                other => {
                    anyhow::ensure!(
                        self.last_seq.is_some_and(|last| seq == last + 1),
                        "change {seq} after {:?}: a gap without a resync",
                        self.last_seq
                    );
                    if let ServerMessage::ExtensionStatusUpdated { extension, .. } = other {
                        self.view.insert(
                            extension.extension.to_string(),
                            i64::from(extension.status_code),
                        );
                    }
                }
            }
            self.last_seq = Some(seq);
        }
        Ok(())
    }

    fn shows(&self, want: &HashMap<String, i64>) -> bool {
        want.iter().all(|(e, c)| self.view.get(e) == Some(c))
    }
}

/// Opens `/ws` on `addr` with a small receive buffer and reads at most [`SLOW_READ`] bytes
/// every 100 ms until `go` holds the final board, then as fast as the bytes come until its
/// stream shows that board. Answers how many times the server resynced it.
async fn slow_reader(
    addr: std::net::SocketAddr,
    mut go: tokio::sync::watch::Receiver<Option<HashMap<String, i64>>>,
) -> anyhow::Result<u64> {
    use tokio::io::AsyncReadExt as _;
    let socket = tokio::net::TcpSocket::new_v4()?;
    // So that the kernel does not absorb megabytes for the client: what it does not take
    // stays with the server.
    socket.set_recv_buffer_size(16 * 1024)?;
    let mut stream = socket.connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut reader = SlowReader::default();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let fast = go.borrow().is_some();
        if !fast {
            tokio::select! {
                _ = go.changed() => continue,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let limit = if fast { chunk.len() } else { SLOW_READ };
        let n = tokio::select! {
            n = stream.read(&mut chunk[..limit]) => n?,
            _ = go.changed(), if !fast => continue,
        };
        if n == 0 {
            bail!("the server closed the connection");
        }
        reader.consume(&chunk[..n])?;
        if let Some(want) = go.borrow().as_ref()
            && reader.shows(want)
        {
            return Ok(reader.resyncs);
        }
    }
}

/// What a slow client reads per 100 ms: 320 KB/s, a fraction of what a flood sends each
/// client (a never-reading client is closed by the heartbeat instead, and one reading a few
/// bytes a second holds the server's buffers still; this one keeps them turning over).
const SLOW_READ: usize = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_that_read_slowly_lag_in_the_ring_not_in_server_memory()
-> anyhow::Result<()> {
    const CLIENTS: usize = 40;
    const FLOOD: usize = 30_000;
    let peer = AmiPeer::start(PeerConfig::default()).await;
    // Seeded through a server of this process, whose data directory the child then uses. A
    // slow client takes long to reach a ping behind megabytes of changes, so the
    // heartbeat's timeout is long here: the slow clients stay connected throughout.
    let seeded = TestServer::start(Options::default().seeded(&HINTED, "Agents")).await?;
    let data = seeded.stop_keeping_data().await?;
    let mut args = peer.server_args();
    args.extend(
        [
            "--ws-timeout",
            "10m",
            "--log",
            "warn,api_server=info,store=info",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(data.path(), &args)?;
    let base = server.url("");
    let http = reqwest::Client::new();
    board_equals_peer(&base, &peer, &[]).await?;

    let (go, ready) = tokio::sync::watch::channel(None);
    let readers: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(slow_reader(server.addr, ready.clone())))
        .collect();
    eventually("the slow clients to be counted", || async {
        Ok((ws_clients(&http, &base).await? >= CLIENTS as i64).then_some(()))
    })
    .await?;
    let rss_start = server.rss_kib()?;
    let mut rss_peak = rss_start;
    let published_before = child_metric(&base, "extstatus_hub_published_total").await?;
    let flood_started = std::time::Instant::now();
    for i in 0..FLOOD {
        peer.set_state(HINTED[i % 10], CODES[(i / 10 + i) % CODES.len()]);
        // About 5,000 changes a second: what a debug build keeps up with, so that the flood
        // reaches the hub change by change rather than through a resync of the PBX link.
        if i.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i.is_multiple_of(512) {
            rss_peak = rss_peak.max(server.rss_kib()?);
        }
    }
    settle(&peer);
    board_equals_peer(&base, &peer, &[]).await?;
    let flood_took = flood_started.elapsed();
    let published = child_metric(&base, "extstatus_hub_published_total").await? - published_before;
    // The server has published the whole flood; give the sockets a moment to take what they
    // take, while the clients still read slowly.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_peak = rss_peak.max(server.rss_kib()?);
    }
    // Now every client reads at full speed and must reach the final board: each got every
    // change in order, or an explicit resync.
    let want: HashMap<String, i64> = peer
        .states()
        .into_iter()
        .map(|(e, c)| (e, i64::from(c)))
        .collect();
    go.send_replace(Some(want.clone()));
    let catch_up = std::time::Instant::now();
    let mut resyncs = 0;
    for r in readers {
        resyncs += tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .context("a slow client never caught up with the final board")???;
    }
    let lag_resyncs = child_metric(&base, "extstatus_ws_lag_resyncs_total").await?;
    println!(
        "server RSS: {rss_start} KiB with {CLIENTS} slow clients, at most {rss_peak} KiB during \
         and after a flood of {FLOOD} changes ({published} published in {flood_took:?}); the \
         clients caught up in {:?} and took {resyncs} resyncs (the server counted {lag_resyncs})",
        catch_up.elapsed()
    );
    assert!(
        published >= FLOOD as f64 / 2.0,
        "only {published} changes of the flood reached the hub: the clients were not flooded"
    );
    assert!(
        rss_peak < rss_start + 64 * 1024,
        "{CLIENTS} clients reading slowly grew the server from {rss_start} to {rss_peak} KiB"
    );
    read_until_board(&format!("ws://{}/ws", server.addr), &want).await?;
    let stopped = server.signal_and_wait("TERM")?;
    assert_eq!(stopped, Some(0));
    Ok(())
}

/// What a worker knows about one extension it edits: the record as last acknowledged, and
/// the request in flight, whose outcome is unknown.
#[derive(Clone, Debug, Default)]
struct Edits {
    id: Option<String>,
    /// The acknowledged record (`None`: absent, e.g. deleted).
    acked: Option<Value>,
    /// The outcome the request in flight would have if it landed.
    in_flight: Option<Option<Value>>,
}

/// The user-visible fields of a record.
fn user_fields(r: &Value) -> Value {
    json!({
        "_id": r["_id"], "extension": r["extension"], "agent_name": r["agent_name"],
        "department": r["department"], "is_active": r["is_active"],
    })
}

/// A burst of concurrent creates, updates and deletes against `base`; every acknowledged
/// outcome is recorded in `book` before the next request of that worker starts.
async fn edit_burst(
    base: String,
    worker: usize,
    book: Arc<std::sync::Mutex<HashMap<String, Edits>>>,
    acked: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let set = |ext: &str, f: &dyn Fn(&mut Edits)| {
        let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
        f(b.entry(ext.to_owned()).or_default());
    };
    for round in 0usize.. {
        let ext = format!("{}", 3000 + worker * 1000 + round % 200);
        let current = book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ext)
            .cloned()
            .unwrap_or_default();
        let (req, expect) = match (&current.acked, &current.id) {
            (None, _) => {
                let body = json!({"extension": ext, "agent_name": format!("Agent {ext} r{round}"), "department": "Burst"});
                (
                    http.post(format!("{base}/api/extensions")).json(&body),
                    None,
                )
            }
            (Some(_), Some(id)) if round % 3 == 0 => (
                http.delete(format!("{base}/api/extensions/{id}")),
                Some(None),
            ),
            (Some(rec), Some(id)) => {
                let name = format!("Agent {ext} r{round}");
                let mut after = rec.clone();
                after["agent_name"] = json!(name);
                (
                    http.put(format!("{base}/api/extensions/{id}"))
                        .json(&json!({"agent_name": name})),
                    Some(Some(after)),
                )
            }
            (Some(_), None) => bail!("{ext}: a record without an id"),
        };
        // Until answered, either outcome may be what the store holds.
        let landing = expect.clone().unwrap_or_else(|| {
            Some(json!({"extension": ext, "agent_name": format!("Agent {ext} r{round}"), "department": "Burst"}))
        });
        set(&ext, &|e| e.in_flight = Some(landing.clone()));
        let Ok(res) = req.send().await else {
            // The server is gone: this request's fate is open, the test checks both.
            return Ok(());
        };
        let status = res.status().as_u16();
        let Ok(text) = res.text().await else {
            return Ok(());
        };
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            201 => set(&ext, &|e| {
                e.id = body["_id"].as_str().map(str::to_owned);
                e.acked = Some(user_fields(&body));
                e.in_flight = None;
            }),
            200 => set(&ext, &|e| {
                e.acked = Some(user_fields(&body));
                e.in_flight = None;
            }),
            204 => set(&ext, &|e| {
                e.acked = None;
                e.id = None;
                e.in_flight = None;
            }),
            // Refused while shutting down: not acknowledged, so nothing is promised.
            503 => return Ok(()),
            other => bail!("{ext}: unexpected {other} {body}"),
        }
        acked.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// Whether the stored record `have` is the acknowledged state or the in-flight outcome.
fn matches_acked(e: &Edits, have: Option<&Value>) -> bool {
    let same = |want: &Option<Value>| match (want, have) {
        (None, None) => true,
        (Some(w), Some(h)) => {
            let h = user_fields(h);
            ["extension", "agent_name", "department"]
                .iter()
                .all(|k| w[*k] == h[*k])
                && (w["_id"].is_null() || w["_id"] == h["_id"])
        }
        _ => false,
    };
    same(&e.acked) || e.in_flight.as_ref().is_some_and(same)
}

async fn edits_survive(signal: &str) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let server = ServerProcess::start(
        &dir,
        &["--log", "warn,api_server=info", "--rate-limit", "0"],
    )?;
    let base = server.url("");
    let book = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let acked = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..6)
        .map(|w| tokio::spawn(edit_burst(base.clone(), w, book.clone(), acked.clone())))
        .collect();
    eventually("300 acknowledged edits", || async {
        Ok((acked.load(Ordering::SeqCst) >= 300).then_some(()))
    })
    .await?;
    let kill_at = std::time::Instant::now();
    let code = tokio::task::spawn_blocking({
        let signal = signal.to_owned();
        move || server.signal_and_wait(&signal)
    })
    .await??;
    println!(
        "SIG{signal}: the server ended after {:?}",
        kill_at.elapsed()
    );
    for w in workers {
        w.await??;
    }
    if signal == "TERM" {
        assert_eq!(code, Some(0), "SIGTERM is a graceful shutdown");
    }
    let restart_at = std::time::Instant::now();
    let restarted = ServerProcess::start(&dir, &["--log", "warn,api_server=info"])?;
    println!("restart took {:?}", restart_at.elapsed());
    let all: Value = reqwest::get(restarted.url("/api/extensions"))
        .await?
        .json()
        .await?;
    let stored: HashMap<String, Value> = all
        .as_array()
        .ok_or_else(|| anyhow!("not an array: {all}"))?
        .iter()
        .map(|r| {
            (
                r["extension"].as_str().unwrap_or_default().to_owned(),
                r.clone(),
            )
        })
        .collect();
    let book = book.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let wrong: Vec<String> = book
        .iter()
        .filter(|(ext, e)| !matches_acked(e, stored.get(*ext)))
        .map(|(ext, e)| {
            format!(
                "{ext}: acknowledged {:?}, stored {:?}",
                e.acked,
                stored.get(ext)
            )
        })
        .collect();
    println!(
        "SIG{signal}: {} acknowledged edits over {} extensions, {} records after restart",
        acked.load(Ordering::SeqCst),
        book.len(),
        stored.len()
    );
    assert!(wrong.is_empty(), "after SIG{signal}: {}", wrong.join("\n"));
    drop(restarted);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_edit_survives_sigterm_in_a_burst() -> anyhow::Result<()> {
    edits_survive("TERM").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_edit_survives_kill_9_in_a_burst() -> anyhow::Result<()> {
    edits_survive("KILL").await
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped. The embedded store
/// lives in it; filling it to capacity makes every write fail with "no space left", which
/// stops root too (chmod does not).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts it, or says why it cannot.
    fn mount() -> Result<SmallFs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallFs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Takes every free byte with a filler file.
    fn fill(&self) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.path().join("filler"))?;
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e.into()),
            }
        }
        // What is left is less than a block; take it byte by byte.
        while f.write_all(&[0]).is_ok() {}
        Ok(())
    }

    /// Frees the space again.
    fn free(&self) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.path().join("filler"))?)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The binary on a store in a tmpfs that is then filled: returns the peer, the file system and
/// the server, with the board equal to the peer's before the fill; `None` (with the reason
/// printed) when no tmpfs can be mounted here.
async fn server_on_a_full_disk(
    extra: &[&str],
) -> anyhow::Result<Option<(AmiPeer, SmallFs, ServerProcess)>> {
    let fs = match SmallFs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED: the store's file system cannot be made unwritable here: {why}");
            return Ok(None);
        }
    };
    let peer = AmiPeer::start(PeerConfig::default()).await;
    let server = server_process_with(&peer, &fs.path().join("data"), extra).await?;
    board_equals_peer(&server.url(""), &peer, &[]).await?;
    fs.fill()?;
    Ok(Some((peer, fs, server)))
}

/// A metric of the child server (0 when it has no sample yet).
async fn child_metric(base: &str, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Creates extensions 4000, 4001... on `base` until three are refused (or 500 tried); returns
/// the acknowledged and the refused numbers. Every answer is 201 or a 503 naming the store.
async fn create_until_refused(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for n in 0..500 {
        let ext = format!("{}", 4000 + n);
        let r = http
            .post(format!("{base}/api/extensions"))
            .json(&json!({"extension": ext, "agent_name": "Full Disk", "department": "Ops"}))
            .send()
            .await?;
        match r.status().as_u16() {
            201 => acked.push(ext),
            503 => {
                let body = r.text().await?;
                assert!(body.contains("unavailable"), "{body}");
                refused.push(ext);
                if refused.len() == 3 {
                    break;
                }
            }
            other => bail!("creating {ext} on a full disk: {other} {}", r.text().await?),
        }
    }
    Ok((acked, refused))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_loudly_and_never_acknowledges_an_edit() -> anyhow::Result<()> {
    let Some((peer, fs, server)) = server_on_a_full_disk(&[]).await? else {
        return Ok(());
    };
    let base = server.url("");
    let http = reqwest::Client::new();
    let errors_before = child_metric(&base, "extstatus_store_errors_total").await?;

    // User edits go on until the store needs room it cannot get (redb first fills pages it
    // already has). Each answers 201 and is stored, or 503 and leaves nothing: never a false
    // success. The failures are counted.
    let (acked, refused) = create_until_refused(&http, &base).await?;
    assert!(!refused.is_empty(), "a full disk never refused an edit");
    let all: Value = http
        .get(format!("{base}/api/extensions"))
        .send()
        .await?
        .json()
        .await?;
    for ext in &refused {
        assert!(
            !all.to_string().contains(&format!("\"{ext}\"")),
            "refused create {ext} must not appear"
        );
    }
    assert!(child_metric(&base, "extstatus_store_errors_total").await? > errors_before);

    // Status changes meanwhile: each is stored, or fails and is counted (redb may reuse pages
    // it already has, so some land even on a full disk). Whatever the board shows must be what
    // the store holds: checked below by reading the store back after a restart.
    let writes = |base: String| async move {
        let events = child_metric(&base, "extstatus_store_writes_total{cause=\"event\"}").await?;
        let errors = child_metric(&base, "extstatus_store_errors_total").await?;
        anyhow::Ok(events + errors)
    };
    let settled_before = writes(base.clone()).await?;
    for (i, exten) in HINTED[..5].iter().enumerate() {
        peer.set_state(exten, CODES[(i + 3) % CODES.len()]);
    }
    eventually(
        "the status changes to be stored or counted as failed",
        || async { Ok((writes(base.clone()).await? > settled_before).then_some(())) },
    )
    .await?;
    let r = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(r.status().as_u16(), 200, "the process keeps serving");
    let shown = board(&http, &base).await?;
    let errors = child_metric(&base, "extstatus_store_errors_total").await? - errors_before;
    println!(
        "full disk: {} creates acknowledged, then {} refused with 503; {errors} failed store \
         operations counted",
        acked.len(),
        refused.len()
    );

    // Stop, free the space, and read the store back with a server that has no PBX: it holds
    // exactly the statuses that were shown, and no trace of the refused create.
    let _ = server.signal_and_wait("KILL")?;
    fs.free()?;
    let restarted =
        ServerProcess::start(&fs.path().join("data"), &["--log", "warn,api_server=info"])?;
    let stored = board(&http, &restarted.url("")).await?;
    assert_eq!(stored, shown, "the board showed only what the store had");
    creates_kept_as_answered(&stored, &acked, &refused);
    Ok(())
}

/// Every acknowledged create is in `stored`, and no refused one.
fn creates_kept_as_answered<'a>(
    stored: &HashMap<String, i64>,
    acked: impl IntoIterator<Item = &'a String>,
    refused: &[String],
) {
    for ext in acked {
        assert!(
            stored.contains_key(ext),
            "acknowledged create {ext} is stored"
        );
    }
    for ext in refused {
        assert!(
            !stored.contains_key(ext),
            "refused create {ext} is not stored"
        );
    }
}

/// `/readyz`: its status code and whether the body says the store is ok.
async fn readiness(http: &reqwest::Client, base: &str) -> anyhow::Result<(u16, bool)> {
    let r = http.get(format!("{base}/readyz")).send().await?;
    let code = r.status().as_u16();
    let body: Value = r.json().await?;
    let ok = body["store"]["ok"]
        .as_bool()
        .ok_or_else(|| anyhow!("/readyz has no store.ok: {body}"))?;
    Ok((code, ok))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_disk_has_room_again_the_server_recovers() -> anyhow::Result<()> {
    // A short resync period: statuses whose writes failed during the outage are repaired by a
    // list taken once the store writes again.
    let Some((peer, fs, server)) = server_on_a_full_disk(&["--resync-interval", "1s"]).await?
    else {
        return Ok(());
    };
    let base = server.url("");
    let http = reqwest::Client::new();
    let (acked, refused) = create_until_refused(&http, &base).await?;
    assert!(!refused.is_empty(), "a full disk never refused an edit");

    // While the store cannot write, /readyz says so (a ping is a durable write, refused while
    // the store has not reopened its file).
    eventually(
        "/readyz to report the store not ok on a full disk",
        || async {
            let (code, ok) = readiness(&http, &base).await?;
            Ok((code == 503 && !ok).then_some(()))
        },
    )
    .await?;

    // Statuses change during the outage: their writes fail (or land in pages redb already
    // has); either way the board must end equal to the PBX.
    for (i, exten) in HINTED[..5].iter().enumerate() {
        peer.set_state(exten, CODES[(i + 2) % CODES.len()]);
    }

    fs.free()?;
    // The store reopens its file by itself: /readyz is ready again, an edit is accepted.
    eventually("/readyz to report the store ok again", || async {
        let (code, ok) = readiness(&http, &base).await?;
        Ok((code == 200 && ok).then_some(()))
    })
    .await?;
    eventually("an edit to be accepted again", || async {
        let r = http
            .post(format!("{base}/api/extensions"))
            .json(&json!({"extension": "4999", "agent_name": "Room Again", "department": "Ops"}))
            .send()
            .await?;
        Ok((r.status().as_u16() == 201).then_some(()))
    })
    .await?;
    // Every status changed during the outage is repaired, and later changes are stored.
    board_equals_peer(&base, &peer, &[]).await?;
    peer.set_state("1003", 4);
    board_equals_peer(&base, &peer, &[]).await?;
    let shown = board(&http, &base).await?;

    // Nothing acknowledged was lost and nothing refused was half-written: a restarted server
    // with no PBX reads back exactly what was shown.
    let _ = server.signal_and_wait("TERM")?;
    let restarted =
        ServerProcess::start(&fs.path().join("data"), &["--log", "warn,api_server=info"])?;
    let stored = board(&http, &restarted.url("")).await?;
    assert_eq!(stored, shown, "the store holds what the board showed");
    let last = "4999".to_owned();
    creates_kept_as_answered(&stored, acked.iter().chain([&last]), &refused);
    Ok(())
}
