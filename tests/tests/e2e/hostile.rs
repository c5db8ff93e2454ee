//! The hostile-request corpus (`tests/fixtures/hostile/requests.jsonl`, written by `generate.py`
//! beside it) replayed byte for byte over raw TCP against a real server, on the embedded store
//! and, with `TEST_MONGODB_URI`, on MongoDB. Every entry must get the answer it names: never a
//! 5xx, a refusal in the JSON error shape with the security headers, and afterwards every
//! record and the store's write counters exactly as before. Every failing entry is reported by
//! name, not just the first.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use api_server::config::SecurityConfig;
use reqwest::Method;
use serde_json::{Value, json};
use tests::server::{Options, TestServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CORPUS: &str = include_str!("../../fixtures/hostile/requests.jsonl");
const ADMIN: &str = "hostile-admin-token-x";
const VIEWER: &str = "hostile-viewer-token";
/// How long one entry may take before it counts as a hang.
const PER_REQUEST: Duration = Duration::from_secs(20);

/// One parsed answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Standard base64 (the corpus's `body_b64`), padding optional.
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| anyhow!("{c:?} is not base64"))?;
        acc = (acc << 6) | u32::try_from(v)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff)?);
        }
    }
    Ok(out)
}

/// The body of an entry, as bytes.
fn body_of(entry: &Value) -> anyhow::Result<Vec<u8>> {
    if let Some(text) = entry["body"].as_str() {
        return Ok(text.as_bytes().to_vec());
    }
    if let Some(b64) = entry["body_b64"].as_str() {
        return base64_decode(b64);
    }
    if let Some(fill) = entry.get("body_fill") {
        let text = |k: &str| fill[k].as_str().unwrap_or_default();
        let len = usize::try_from(fill["len"].as_u64().unwrap_or(0))?;
        let mut body = text("prefix").as_bytes().to_vec();
        body.extend(std::iter::repeat_n(
            text("fill").bytes().next().unwrap_or(b'a'),
            len,
        ));
        body.extend_from_slice(text("suffix").as_bytes());
        return Ok(body);
    }
    Ok(Vec::new())
}

/// The request bytes of an entry: its request line and headers as written, the host, a token
/// (unless it brings its own or asks for none), `Connection: close` and the body's framing.
fn request_bytes(entry: &Value, host: &str, id: &str) -> anyhow::Result<Vec<u8>> {
    let method = entry["method"].as_str().context("method")?;
    let path = entry["path"].as_str().context("path")?.replace("{id}", id);
    let headers: Vec<(String, String)> =
        serde_json::from_value(entry["headers"].clone()).context("headers")?;
    let body = body_of(entry)?;
    let chunked = entry["chunked"].as_bool().unwrap_or(false);
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    let own_auth = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    let token = match entry["auth"].as_str().unwrap_or("admin") {
        "none" => None,
        "viewer" => Some(VIEWER),
        _ => Some(ADMIN),
    };
    if let (false, Some(token)) = (own_auth, token) {
        out.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    for (k, v) in &headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n");
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for piece in body.chunks(64 * 1024) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }
    Ok(out)
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = std::str::from_utf8(&raw[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).context("chunk shorter than its size")?);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

/// Sends raw bytes and reads the answer until the server closes. The body is written while the
/// answer is read, so a server that refuses early (413) is heard even if it stops reading.
async fn send(addr: std::net::SocketAddr, bytes: Vec<u8>) -> anyhow::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        // The server may close before it read everything; what it answered is what counts.
        let _ = writer.write_all(&bytes).await;
        let _ = writer.flush().await;
        writer
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived (the server closed with unread body bytes).
            Err(e) if !raw.is_empty() => {
                tracing::debug!(error = %e, "connection reset after the answer");
                break;
            }
            Err(e) => return Err(e).context("reading the answer"),
        }
    }
    write.abort();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no complete answer: {:?}", String::from_utf8_lossy(&raw)))?;
    let head = std::str::from_utf8(&raw[..head_end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// What is wrong with an answer to `entry`, if anything.
fn judge(entry: &Value, answer: &Answer) -> Option<String> {
    let status = answer.status;
    let body = String::from_utf8_lossy(&answer.body);
    let short: String = body.chars().take(200).collect();
    if status >= 500 {
        return Some(format!("answered {status}, a server error: {short}"));
    }
    let expected = &entry["expect"];
    let status_ok = match expected {
        Value::String(s) if s == "4xx" => (400..500).contains(&status),
        Value::Number(n) => n.as_u64() == Some(u64::from(status)),
        other => {
            return Some(format!(
                "the entry's expect {other} is not a status or \"4xx\""
            ));
        }
    };
    if !status_ok {
        return Some(format!("answered {status}, expected {expected}: {short}"));
    }
    let plain = entry["plain"].as_bool().unwrap_or(false);
    if (200..300).contains(&status) {
        if entry["empty"].as_bool().unwrap_or(false)
            && serde_json::from_slice::<Value>(&answer.body).ok() != Some(json!([]))
        {
            return Some(format!("the filter matched records: {short}"));
        }
        return None;
    }
    if plain {
        return None;
    }
    let json_type = answer
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"));
    let Ok(v) = serde_json::from_slice::<Value>(&answer.body) else {
        return Some(format!("the {status} answer is not JSON: {short:?}"));
    };
    let (Some(code), Some(_message)) =
        (v["error"]["code"].as_str(), v["error"]["message"].as_str())
    else {
        return Some(format!(
            "the {status} answer is not the error shape: {short}"
        ));
    };
    if !json_type {
        return Some(format!(
            "the {status} answer has Content-Type {:?}",
            answer.header("content-type")
        ));
    }
    if let Some(want) = entry["allow"].as_str()
        && answer.header("allow") != Some(want)
    {
        return Some(format!(
            "Allow header {:?}, expected {want:?}",
            answer.header("allow")
        ));
    }
    if let Some(want) = entry["code"].as_str()
        && code != want
    {
        return Some(format!("error code {code:?}, expected {want:?}: {short}"));
    }
    if let Some(field) = entry["field"].as_str()
        && v["error"]["fields"].get(field).is_none()
    {
        return Some(format!("error.fields does not name {field:?}: {short}"));
    }
    if answer.header("x-content-type-options") != Some("nosniff") {
        return Some("no X-Content-Type-Options: nosniff".to_owned());
    }
    if !answer
        .header("content-security-policy")
        .is_some_and(|p| p.contains("frame-ancestors 'none'"))
    {
        return Some("no Content-Security-Policy with frame-ancestors 'none'".to_owned());
    }
    None
}

/// Every record (full JSON) and the store's write counters, to compare before and after.
async fn state_of(s: &TestServer) -> anyhow::Result<(Value, Vec<String>)> {
    let records = s
        .request(Method::GET, "/api/extensions", None, Some(ADMIN))
        .await?;
    anyhow::ensure!(records.status == 200, "listing failed: {}", records.text);
    let metrics = s
        .request(Method::GET, "/metrics", None, Some(ADMIN))
        .await?;
    anyhow::ensure!(metrics.status == 200, "metrics failed: {}", metrics.text);
    let counters: Vec<String> = metrics
        .text
        .lines()
        .filter(|l| {
            l.starts_with("extstatus_store_writes_total")
                || l.starts_with("extstatus_changes_total")
        })
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        !counters.is_empty(),
        "/metrics has no write counters:\n{}",
        metrics.text
    );
    Ok((records.json, counters))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_corpus_is_refused_cleanly_and_changes_nothing() -> anyhow::Result<()> {
    replay(Options::default()).await
}

/// [`the_hostile_corpus_is_refused_cleanly_and_changes_nothing`] on a fresh MongoDB database
/// (skipped without `TEST_MONGODB_URI`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_corpus_is_refused_cleanly_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    replay(base).await
}

async fn replay(base: Options) -> anyhow::Result<()> {
    let entries: Vec<Value> = CORPUS
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("corpus line {}", i + 1)))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        entries.len() >= 200,
        "the corpus has {} entries",
        entries.len()
    );
    let s = TestServer::start(
        Options {
            admin_token: Some(ADMIN.to_owned()),
            viewer_token: Some(VIEWER.to_owned()),
            // The replay writes faster than any person; the limit has its own tests.
            security: Some(SecurityConfig::unlimited()),
            ..Options::default()
        }
        .seeded(&["6001", "6002"], "Sales")
        .on_store_of(&base),
    )
    .await?;
    let (records, before_counters) = state_of(&s).await?;
    let id = records[0]["_id"]
        .as_str()
        .context("a seeded record's id")?
        .to_owned();

    let host = s.addr.to_string();
    let mut failures = Vec::new();
    for entry in &entries {
        let name = entry["name"].as_str().unwrap_or("(unnamed)");
        let bytes = request_bytes(entry, &host, &id)?;
        let outcome = tokio::time::timeout(PER_REQUEST, send(s.addr, bytes)).await;
        let problem = match outcome {
            Err(_) => Some(format!("no answer within {PER_REQUEST:?}")),
            Ok(Err(e)) => Some(format!("{e:#}")),
            Ok(Ok(answer)) => judge(entry, &answer),
        };
        if let Some(problem) = problem {
            failures.push(format!("{name}: {problem}"));
        }
    }

    let (after, after_counters) = state_of(&s).await?;
    if after != records {
        failures.push(format!(
            "the records changed:\nbefore {records}\nafter  {after}"
        ));
    }
    if after_counters != before_counters {
        failures.push(format!(
            "the store's write counters moved:\nbefore {before_counters:?}\nafter  {after_counters:?}"
        ));
    }
    s.stop().await?;
    if !failures.is_empty() {
        bail!(
            "{} of {} hostile requests were not handled as expected:\n{}",
            failures.len(),
            entries.len(),
            failures.join("\n")
        );
    }
    Ok(())
}
