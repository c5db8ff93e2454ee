//! End-to-end tests: the WebSocket stream — snapshot then deltas, the department filter,
//! resume after a reconnect, the heartbeat, and the close frame on shutdown. The snapshot/delta
//! and resume tests also run on MongoDB when `TEST_MONGODB_URI` is set.

use std::time::Duration;

use hub::ServerMessage;
use reqwest::Method;
use serde_json::json;
use tests::server::{Options, PATIENCE, TestServer, WsEnd};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn ext_numbers(msg: &ServerMessage) -> Vec<String> {
    match msg {
        ServerMessage::Snapshot { extensions, .. } => {
            extensions.iter().map(|e| e.extension.to_string()).collect()
        }
        other => panic!("not a snapshot: {other:?}"),
    }
}

#[tokio::test]
async fn snapshot_then_every_user_edit_in_seq_order() -> anyhow::Result<()> {
    snapshot_then_every_user_edit_in_seq_order_on(Options::default()).await
}

/// [`snapshot_then_every_user_edit_in_seq_order`] on a fresh MongoDB database (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn snapshot_then_every_user_edit_in_seq_order_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    snapshot_then_every_user_edit_in_seq_order_on(base).await
}

async fn snapshot_then_every_user_edit_in_seq_order_on(base: Options) -> anyhow::Result<()> {
    let s = TestServer::start(base).await?;
    s.create("1001", "Alice", "Sales").await?;
    s.create("1002", "Bob", "Support").await?;
    let mut ws = s.ws("").await?;
    let first = ws.next().await?;
    assert_eq!(ext_numbers(&first), ["1001", "1002"]);
    let ServerMessage::Snapshot { seq, pbx_link, .. } = first else {
        unreachable!()
    };
    assert!(!pbx_link.connected, "no PBX configured");
    assert_eq!(pbx_link.since, None);

    let created = s.create("1003", "Carol", "Sales").await?;
    let id = created["_id"].as_str().expect("id").to_owned();
    let r = s
        .request(
            Method::PUT,
            &format!("/api/extensions/{id}"),
            Some(&json!({"agent_name": "Carol King"})),
            None,
        )
        .await?;
    assert_eq!(r.status, 200);
    // An edit that changes nothing is not news.
    s.request(
        Method::PUT,
        &format!("/api/extensions/{id}"),
        Some(&json!({"agent_name": "Carol King"})),
        None,
    )
    .await?;
    let r = s
        .request(Method::DELETE, &format!("/api/extensions/{id}"), None, None)
        .await?;
    assert_eq!(r.status, 204);

    match ws.next().await? {
        ServerMessage::ExtensionCreated { seq: n, extension } => {
            assert_eq!(n, seq + 1);
            assert_eq!(extension.extension.as_str(), "1003");
        }
        other => panic!("expected extension_created, got {other:?}"),
    }
    match ws.next().await? {
        ServerMessage::ExtensionUpdated { seq: n, extension } => {
            assert_eq!(n, seq + 2);
            assert_eq!(extension.agent_name.as_str(), "Carol King");
        }
        other => panic!("expected extension_updated, got {other:?}"),
    }
    match ws.next().await? {
        ServerMessage::ExtensionDeleted { seq: n, id: gone } => {
            assert_eq!(n, seq + 3);
            assert_eq!(gone.as_str(), id);
        }
        other => panic!("expected extension_deleted, got {other:?}"),
    }
    ws.close().await?;
    s.stop().await
}

#[tokio::test]
async fn department_filter_keeps_global_seq() -> anyhow::Result<()> {
    let s = TestServer::start(Options::default()).await?;
    s.create("1001", "Alice", "Sales").await?;
    s.create("1002", "Bob", "Support").await?;
    let mut sales = s.ws("?department=Sales").await?;
    let snap = sales.next().await?;
    assert_eq!(ext_numbers(&snap), ["1001"]);
    let base = snap.seq();
    s.create("1003", "Carol", "Support").await?;
    s.create("1004", "Dan", "Sales").await?;
    match sales.next().await? {
        ServerMessage::ExtensionCreated { seq, extension } => {
            assert_eq!(extension.extension.as_str(), "1004");
            assert_eq!(seq, base + 2, "the Support change is a gap, not a loss");
        }
        other => panic!("expected 1004 created, got {other:?}"),
    }
    let r = s.get("/ws?department=%07").await?;
    assert_eq!((r.status, r.error_code()), (400, "invalid_query"));
    let r = s.get("/ws?resume=abc").await?;
    assert_eq!((r.status, r.error_code()), (400, "invalid_query"));
    sales.close().await?;
    s.stop().await
}

#[tokio::test]
async fn resume_after_reconnect_gets_exactly_the_missed_changes() -> anyhow::Result<()> {
    resume_after_reconnect_gets_exactly_the_missed_changes_on(Options::default()).await
}

/// [`resume_after_reconnect_gets_exactly_the_missed_changes`] on a fresh MongoDB database (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn resume_after_reconnect_gets_exactly_the_missed_changes_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    resume_after_reconnect_gets_exactly_the_missed_changes_on(base).await
}

async fn resume_after_reconnect_gets_exactly_the_missed_changes_on(
    base: Options,
) -> anyhow::Result<()> {
    let s = TestServer::start(base).await?;
    s.create("1001", "Alice", "Sales").await?;
    let mut ws = s.ws("").await?;
    let seen = ws.next().await?.seq();
    ws.close().await?;

    // Changes made while the client was away.
    s.create("1002", "Bob", "Sales").await?;
    s.create("1003", "Carol", "Support").await?;

    let mut again = s.ws(&format!("?resume={seen}")).await?;
    let m1 = again.next().await?;
    let m2 = again.next().await?;
    assert!(
        matches!(&m1, ServerMessage::ExtensionCreated { extension, .. } if extension.extension.as_str() == "1002"),
        "{m1:?}"
    );
    assert!(
        matches!(&m2, ServerMessage::ExtensionCreated { extension, .. } if extension.extension.as_str() == "1003"),
        "{m2:?}"
    );
    assert_eq!((m1.seq(), m2.seq()), (seen + 1, seen + 2));
    // And it goes on live.
    s.create("1004", "Dan", "Sales").await?;
    assert_eq!(again.next().await?.seq(), seen + 3);
    again.close().await?;

    // Resuming filtered skips other departments' changes.
    let mut sales = s.ws(&format!("?resume={seen}&department=Sales")).await?;
    let got: Vec<u64> = vec![sales.next().await?.seq(), sales.next().await?.seq()];
    assert_eq!(got, [seen + 1, seen + 3]);
    sales.close().await?;

    // A number the server never issued gets a fresh snapshot.
    let mut stranger = s.ws(&format!("?resume={}", seen + 1000)).await?;
    assert_eq!(ext_numbers(&stranger.next().await?).len(), 4);
    stranger.close().await?;
    s.stop().await
}

#[tokio::test]
async fn shutdown_sends_a_close_frame() -> anyhow::Result<()> {
    let s = TestServer::start(Options::default()).await?;
    let mut ws = s.ws("").await?;
    ws.next().await?;
    let stopping = tokio::spawn(s.stop());
    assert_eq!(
        ws.end().await?,
        WsEnd::Closed(1001),
        "close code: going away"
    );
    stopping.await??;
    Ok(())
}

/// A client that completes the handshake and then never answers a ping is closed by the
/// heartbeat. It is a raw socket because WebSocket libraries answer pings by themselves.
#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed() -> anyhow::Result<()> {
    let mut timing = Options::fast_timing();
    timing.ws_ping_interval = Duration::from_millis(100);
    timing.ws_timeout = Duration::from_millis(400);
    let s = TestServer::start(Options {
        timing: Some(timing),
        ..Options::default()
    })
    .await?;
    let mut sock = raw_ws(&s).await?;
    assert_eq!(
        close_code(&mut sock).await?,
        1008,
        "policy violation: no pong within the timeout"
    );
    s.stop().await
}

/// A client that stops reading (its receive window shut) is let go within about
/// `--ws-timeout`: its socket, its subscription and its place under `--ws-max-connections`
/// are given back. Without a deadline on the socket, actix waited for it for as long as the
/// peer kept the TCP connection open, and the heartbeat's close frame could not get through.
/// The client fills the server's socket by sending pings and never reading the pongs.
#[tokio::test]
async fn a_client_that_stops_reading_is_let_go() -> anyhow::Result<()> {
    let mut timing = Options::fast_timing();
    timing.ws_ping_interval = Duration::from_millis(200);
    timing.ws_timeout = Duration::from_millis(1500);
    let s = TestServer::start(Options {
        timing: Some(timing),
        ..Options::default()
    })
    .await?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut sock = socket.connect(s.addr).await?;
    upgrade(&mut sock, s.addr).await?;
    let mut head = [0u8; 512];
    let n = sock.read(&mut head).await?;
    assert!(head[..n].starts_with(b"HTTP/1.1 101"), "{:?}", &head[..n]);
    let subscribers = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("extstatus_hub_subscribers "))
            .map(str::to_owned)
    };
    let metrics = s.get("/metrics").await?;
    assert_eq!(subscribers(&metrics.text).as_deref(), Some("1"));
    // A masked ping with a 125-byte payload (the mask is zero, so the payload is as written).
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    let mut sent = 0usize;
    while sent < 400_000 {
        match tokio::time::timeout(Duration::from_millis(300), sock.write_all(&ping)).await {
            Ok(written) => written?,
            Err(_) => break,
        }
        sent += 1;
    }
    assert!(
        sent < 400_000,
        "the server kept reading: {sent} pings taken"
    );
    // The stuck client is dropped: nothing of it is left in the server.
    let left = tokio::time::timeout(PATIENCE, async {
        loop {
            let text = s.get("/metrics").await?.text;
            if subscribers(&text).as_deref() == Some("0")
                && text.contains("\nextstatus_ws_clients 0\n")
            {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        left.is_ok(),
        "a client that stopped reading is still held after {PATIENCE:?}"
    );
    drop(sock);
    s.stop().await
}

/// A raw `/ws` connection, past the handshake.
async fn raw_ws(s: &TestServer) -> anyhow::Result<tokio::net::TcpStream> {
    let mut sock = tokio::net::TcpStream::connect(s.addr).await?;
    upgrade(&mut sock, s.addr).await?;
    Ok(sock)
}

/// Sends a `/ws` upgrade request on a raw connection.
async fn upgrade(
    sock: &mut tokio::net::TcpStream,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    sock.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    Ok(())
}

/// Reads until a close frame; its code.
async fn close_code(sock: &mut tokio::net::TcpStream) -> anyhow::Result<u16> {
    tokio::time::timeout(PATIENCE, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = sock.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection ended without a close frame");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(code) = find_close(&buf) {
                return Ok(code);
            }
        }
    })
    .await?
}

/// A client frame (masked with a zero key, so the payload is as written).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// `--ws-max-message` (4,096 bytes by default) is applied to a frame's header, before its
/// payload is read: a client that declares a 4 GB frame is closed with 1009 at once, not
/// buffered (it grew the server by hundreds of megabytes until the heartbeat closed it). A
/// message sent in small fragments counts as a whole.
#[tokio::test]
async fn a_client_message_over_the_limit_is_refused_at_its_header() -> anyhow::Result<()> {
    let s = TestServer::start(Options::default()).await?;
    let mut sock = raw_ws(&s).await?;
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&4_000_000_000u64.to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    sock.write_all(&huge).await?;
    // Some of the payload: the server must not wait for the rest.
    let _ =
        tokio::time::timeout(Duration::from_secs(1), sock.write_all(&vec![b'x'; 1 << 20])).await;
    assert_eq!(close_code(&mut sock).await?, 1009);

    let mut sock = raw_ws(&s).await?;
    let piece = [b'y'; 1000];
    let mut fragments = client_frame(0x01, &piece);
    for _ in 0..5 {
        fragments.extend(client_frame(0x00, &piece));
    }
    fragments.extend(client_frame(0x80, &piece));
    sock.write_all(&fragments).await?;
    assert_eq!(close_code(&mut sock).await?, 1009);

    // A WebSocket version other than 13: 426 naming 13 (RFC 6455 4.4), as JSON.
    let mut sock = tokio::net::TcpStream::connect(s.addr).await?;
    sock.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            s.addr
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, sock.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 426"), "{answer}");
    assert!(answer.contains("sec-websocket-version: 13\r\n"), "{answer}");
    assert!(answer.contains("\"websocket_version\""), "{answer}");

    // Text that is not UTF-8 is closed with 1007 (RFC 6455 7.4.1), not as a protocol error.
    let mut sock = raw_ws(&s).await?;
    sock.write_all(&client_frame(0x81, b"\xff\xfe")).await?;
    assert_eq!(close_code(&mut sock).await?, 1007);
    s.stop().await
}

/// Skips the HTTP response head, then walks the frames; returns the code of a close frame.
fn find_close(buf: &[u8]) -> Option<u16> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut at = head_end;
    loop {
        let b0 = *buf.get(at)?;
        let b1 = *buf.get(at + 1)?;
        let (len, skip) = match b1 & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([*buf.get(at + 2)?, *buf.get(at + 3)?])),
                4,
            ),
            127 => {
                let bytes: [u8; 8] = buf.get(at + 2..at + 10)?.try_into().ok()?;
                (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
            }
            n => (usize::from(n), 2),
        };
        let payload = buf.get(at + skip..at + skip + len)?;
        if b0 & 0x0f == 0x8 {
            return Some(
                payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])),
            );
        }
        at += skip + len;
    }
}

#[tokio::test]
async fn a_burst_of_concurrent_creations_is_stored_and_broadcast_once_each_in_seq_order()
-> anyhow::Result<()> {
    let s = TestServer::start(Options::default()).await?;
    let mut ws = s.ws("").await?;
    let ServerMessage::Snapshot { seq: start, .. } = ws.next().await? else {
        anyhow::bail!("the first message is a snapshot");
    };
    // 120 requests at once for 100 numbers: the writer groups what queues up, and each number
    // must still be created exactly once, with a 409 for every repeat.
    let numbers: Vec<String> = (0..120).map(|i| format!("{}", 3000 + i % 100)).collect();
    let bodies: Vec<serde_json::Value> = numbers
        .iter()
        .map(|n| json!({"extension": n, "agent_name": format!("Agent {n}"), "department": "Burst"}))
        .collect();
    let replies = futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| s.request(Method::POST, "/api/extensions", Some(body), None)),
    )
    .await;
    let mut created = 0;
    let mut conflicts = 0;
    for r in replies {
        match r?.status {
            201 => created += 1,
            409 => conflicts += 1,
            other => anyhow::bail!("unexpected status {other}"),
        }
    }
    assert_eq!((created, conflicts), (100, 20));
    let mut seen = std::collections::BTreeSet::new();
    let mut next = start + 1;
    while seen.len() < 100 {
        match ws.next().await? {
            ServerMessage::ExtensionCreated { seq, extension } => {
                assert_eq!(seq, next, "gap-free, in order");
                next += 1;
                assert!(
                    seen.insert(extension.extension.to_string()),
                    "broadcast once"
                );
            }
            other => anyhow::bail!("expected extension_created, got {other:?}"),
        }
    }
    let stored = s.get("/api/extensions?department=Burst").await?.json;
    assert_eq!(stored.as_array().map(Vec::len), Some(100));
    ws.close().await?;
    s.stop().await
}

/// The `TCP_NODELAY` option of this process's socket whose peer is `peer` (the server's end of
/// a test connection), read through a duplicate of it taken with `pidfd_getfd`; `None` when no
/// such socket is open, `Err` when this system refuses `pidfd_getfd` (a kernel before 5.6, or
/// a sandbox that filters it).
fn nodelay_of_the_end_facing(
    peer: std::net::SocketAddr,
    known: std::os::fd::RawFd,
) -> Result<Option<bool>, rustix::io::Errno> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let this = pidfd_open(getpid(), PidfdFlags::empty())?;
    // A descriptor that is surely open: if this fails, the system refuses the call itself.
    pidfd_getfd(&this, known, PidfdGetfdFlags::empty())?;
    let fds = std::fs::read_dir("/proc/self/fd").map_err(|_| rustix::io::Errno::NOENT)?;
    for entry in fds.flatten() {
        let Ok(n) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // Gone meanwhile (the listing's own descriptor), or not a socket.
        let Ok(fd) = pidfd_getfd(&this, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let Ok(Some(addr)) = rustix::net::getpeername(&fd) else {
            continue;
        };
        if std::net::SocketAddr::try_from(addr).ok() == Some(peer) {
            return Ok(Some(rustix::net::sockopt::tcp_nodelay(&fd)?));
        }
    }
    Ok(None)
}

/// A change is a small frame right behind the last one: with Nagle's algorithm on, the kernel
/// would hold it until the browser acknowledged the one before, which a browser delays by up
/// to 40 ms (200 ms on some systems). On this harness that was a p99 of 30 ms at 1000 x 100,
/// 6 to 14 ms without it (docs/performance.md). So the server's sockets have it off.
#[tokio::test]
async fn the_server_sends_each_frame_at_once_not_after_the_last_ack() -> anyhow::Result<()> {
    let s = TestServer::start(Options::default()).await?;
    let mut client = tokio::net::TcpStream::connect(s.addr).await?;
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await?;
    let mut status = [0; 12];
    tokio::time::timeout(PATIENCE, client.read_exact(&mut status)).await??;
    assert_eq!(&status, b"HTTP/1.1 101", "upgraded");
    let known = std::os::fd::AsRawFd::as_raw_fd(&client);
    let nodelay = match nodelay_of_the_end_facing(client.local_addr()?, known) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("skipped: this system refuses pidfd_getfd ({e})");
            return s.stop().await;
        }
    };
    assert_eq!(
        nodelay,
        Some(true),
        "TCP_NODELAY on the server's end of /ws"
    );
    s.stop().await
}
