//! History and analytics end to end: a scripted timeline through the loopback AMI peer, with a
//! PBX outage and a server restart on the same data in the middle; the history records both,
//! and time in state for a window gives the same numbers before and after the restart.

use std::time::Duration;

use domain::Timestamp;
use serde_json::Value;
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::server::{Options, TestServer, eventually};

fn rfc3339(t: Timestamp) -> String {
    domain::format_rfc3339(&t)
}

/// `from`/`to` as URL query values (`+` would need escaping; UTC `Z` does not).
fn window(from: Timestamp, to: Timestamp) -> String {
    format!("from={}&to={}", rfc3339(from), rfc3339(to))
}

async fn id_of(s: &TestServer, extension: &str) -> anyhow::Result<String> {
    let record = s.record(extension).await?;
    Ok(record["_id"].as_str().unwrap_or_default().to_owned())
}

async fn kinds(s: &TestServer, id: &str, range: &str) -> anyhow::Result<Vec<String>> {
    let reply = s
        .get(&format!("/api/extensions/{id}/history?{range}"))
        .await?;
    anyhow::ensure!(reply.status == 200, "{}", reply.text);
    Ok(reply.json["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default())
}

async fn link_is(s: &TestServer, connected: bool) -> anyhow::Result<()> {
    eventually("the AMI link state", || async {
        let ready = s.get("/readyz").await?.json;
        Ok((ready["ami"]["connected"] == connected).then_some(()))
    })
    .await
}

fn seconds(v: &Value, status: &str) -> f64 {
    v["status_seconds"][status].as_f64().unwrap_or(-1.0)
}

#[tokio::test]
async fn the_numbers_of_a_window_survive_an_outage_and_a_restart() -> anyhow::Result<()> {
    let config = PeerConfig::default();
    let peer = AmiPeer::start(config.clone()).await;
    let options = Options::with_ami(peer.addr(), &config.username, &config.secret);
    let before_start = domain::now() - Duration::from_secs(1);
    let s = TestServer::start(options.clone().seeded(&["1001", "1006"], "Sales")).await?;
    s.wait_for_code("1001", 1).await?;
    let id = id_of(&s, "1001").await?;

    // The timeline: a change, a PBX outage, a change seen after it.
    peer.set_state("1001", 0);
    s.wait_for_code("1001", 0).await?;
    peer.refuse_connections(true);
    peer.drop_connections();
    link_is(&s, false).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.set_state_silently("1001", 1);
    peer.refuse_connections(false);
    link_is(&s, true).await?;
    s.wait_for_code("1001", 1).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let end = domain::now();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let range = window(before_start, end);
    let got = kinds(&s, &id, &range).await?;
    let want = [
        "server_start",
        "pbx_link_up",
        "status",
        "status",
        "pbx_link_down",
        "pbx_link_up",
        "status",
    ];
    assert_eq!(got, want, "{got:?}");

    let path = format!("/api/analytics/time-in-state?{range}&department=Sales");
    let first = s.get(&path).await?;
    assert_eq!(first.status, 200, "{}", first.text);
    let ext = &first.json["extensions"][0];
    assert_eq!(ext["extension"], "1001");
    let total: f64 = ["online", "offline", "unknown"]
        .iter()
        .map(|k| seconds(ext, k))
        .sum();
    let window_seconds = first.json["window_seconds"].as_f64().unwrap_or(0.0);
    assert!((total - window_seconds).abs() < 1e-6, "{}", first.text);
    // Unknown: before the start, until the first login, and the outage (at least 300 ms).
    assert!(seconds(ext, "unknown") >= 1.3, "{}", first.text);
    assert!(seconds(ext, "online") > 0.0, "{}", first.text);
    assert_eq!(first.json["departments"][0]["department"], "Sales");
    assert_eq!(first.json["departments"][0]["extensions"], 2);

    // A restart on the same data: the window's numbers do not change.
    let dir = s.stop_keeping_data().await?;
    let s = TestServer::start_in(options, dir).await?;
    link_is(&s, true).await?;
    let second = s.get(&path).await?;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(first.json, second.json);
    // The history now shows the clean stop and the new start.
    let later = window(before_start, domain::now() + Duration::from_secs(1));
    let got = kinds(&s, &id, &later).await?;
    let stop_at = got.iter().position(|k| k == "server_stop");
    let start_at = got.iter().rposition(|k| k == "server_start");
    assert!(stop_at.is_some() && stop_at < start_at, "{got:?}");
    s.stop().await
}

#[tokio::test]
async fn bad_ranges_and_unknown_ids_are_refused_with_json() -> anyhow::Result<()> {
    let s = TestServer::start(Options::default().seeded(&["1001"], "Sales")).await?;
    let id = id_of(&s, "1001").await?;
    let base = format!("/api/extensions/{id}/history");
    let cases = [
        (format!("{base}?to=2026-12-02T00:00:00Z"), "from"),
        (format!("{base}?from=2026-12-02T00:00:00Z"), "to"),
        (format!("{base}?from=yesterday&to=2026-12-02T00:00:00Z"), "from"),
        (
            format!("{base}?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z"),
            "to",
        ),
        (
            format!("{base}?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z"),
            "to",
        ),
        (
            "/api/analytics/time-in-state?from=2026-12-02T00:00:00Z&to=2026-12-02T00:00:00Z"
                .to_owned(),
            "to",
        ),
        (
            format!("/api/analytics/time-in-state?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z&department={}", "x".repeat(60)),
            "department",
        ),
        (
            "/api/analytics/time-in-state?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z&dept=Sales"
                .to_owned(),
            "dept",
        ),
    ];
    for (path, field) in cases {
        let reply = s.get(&path).await?;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert!(
            reply.json["error"]["fields"][field].is_string(),
            "{path}: {}",
            reply.text
        );
    }
    // A parameter without a name is named as such (the message read "The query is not valid:
    // is not a known parameter."), and the message lists the parameters there are.
    let nameless = s
        .get(&format!(
            "{base}?=x&from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z"
        ))
        .await?;
    assert_eq!(nameless.status, 400, "{}", nameless.text);
    assert!(
        nameless.json["error"]["fields"][""].is_string(),
        "{}",
        nameless.text
    );
    assert_eq!(
        nameless.json["error"]["message"],
        "The query is not valid: \"\" is not a known parameter (the parameters are from, to).",
        "{}",
        nameless.text
    );
    let missing = s
        .get("/api/extensions/65a1b2c3d4e5f60718293a4b/history?from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z")
        .await?;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(missing.error_code(), "not_found");
    // An empty history is an empty list, not an error.
    let empty = s
        .get(&format!(
            "{base}?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z"
        ))
        .await?;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.json["entries"], serde_json::json!([]));
    // A leap second is answered as the next minute's start (it was echoed as 23:59:60, which
    // JavaScript's Date cannot read).
    let leap = s
        .get(&format!(
            "{base}?from=2016-12-31T23:59:60Z&to=2017-01-01T00:00:01Z"
        ))
        .await?;
    assert_eq!(leap.status, 200, "{}", leap.text);
    assert_eq!(
        leap.json["from"], "2017-01-01T00:00:00.000Z",
        "{}",
        leap.text
    );
    s.stop().await
}

#[tokio::test]
async fn departments_count_statuses_right_now() -> anyhow::Result<()> {
    let config = PeerConfig::default();
    let peer = AmiPeer::start(config.clone()).await;
    let options = Options::with_ami(peer.addr(), &config.username, &config.secret)
        .seeded(&["1001", "1006", "1010"], "Sales")
        .seeded(&["1005"], "Support");
    let s = TestServer::start(options).await?;
    // 1001 in use, 1006 and 1010 idle, 1005 unavailable (offline).
    s.wait_for_code("1001", 1).await?;
    s.wait_for_code("1005", 4).await?;
    s.wait_for_code("1006", 0).await?;
    s.wait_for_code("1010", 0).await?;
    let reply = s.get("/api/departments").await?;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let sales = &reply.json[0];
    assert_eq!(sales["department"], "Sales", "{}", reply.text);
    assert_eq!(sales["extensions"], 3);
    assert_eq!(sales["status"]["online"], 3);
    assert_eq!(sales["paused"], 0);
    let idle = sales["longest_idle"]["extension"].as_str().unwrap_or("");
    assert!(idle == "1006" || idle == "1010", "{}", reply.text);
    let support = &reply.json[1];
    assert_eq!(support["status"]["offline"], 1, "{}", reply.text);
    assert_eq!(support["longest_idle"], Value::Null);
    s.stop().await
}

/// Time in state answers a part per extension (4.5 MB for 10,000). A burst of such requests
/// once serialized every answer on the HTTP workers, unbounded: `/healthz` and record reads
/// waited seconds behind them. Now at most two are computed at once, off the workers, a few
/// dozen more wait, and the rest get 503 `unavailable` with `Retry-After`.
#[tokio::test]
async fn a_burst_of_time_in_state_over_10000_extensions_leaves_the_server_responsive()
-> anyhow::Result<()> {
    let numbers: Vec<String> = (20_000..30_000).map(|n| n.to_string()).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let s = TestServer::start(Options::default().seeded(&refs, "Big")).await?;
    let to = domain::now();
    let from = to - Duration::from_secs(93 * 86_400);
    let url = s.url(&format!(
        "/api/analytics/time-in-state?{}",
        window(from, to)
    ));
    let http = reqwest::Client::new();
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let reply = http.get(&url).send().await?;
                let status = reply.status().as_u16();
                let retry_after = reply.headers().contains_key("retry-after");
                // Parsed later: parsing 4.5 MB here would hold up this test's probes.
                let body = reply.bytes().await?;
                anyhow::Ok((status, retry_after, body))
            })
        })
        .collect();
    // While the burst runs, the server answers everything else at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        for path in ["/healthz", "/api/extensions/000000000000000000000000"] {
            let started = std::time::Instant::now();
            let reply = s.get(path).await?;
            anyhow::ensure!(
                reply.status == 200 || reply.status == 404,
                "{path}: {}",
                reply.text
            );
            slowest = slowest.max(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_millis(1_000),
        "a request waited {slowest:?} behind the burst"
    );
    // Every body is read before any is parsed: a connection left unread for the server's
    // `TCP_USER_TIMEOUT` (the WebSocket timeout, 5 s here) is dropped by the kernel.
    let mut replies = Vec::new();
    for task in burst {
        replies.push(task.await??);
    }
    let mut answered = 0;
    for (status, retry_after, body) in replies {
        let body: Value = serde_json::from_slice(&body)?;
        match status {
            200 => {
                answered += 1;
                let extensions = body["extensions"].as_array().map_or(0, Vec::len);
                assert_eq!(extensions, 10_000);
                let window_seconds = body["window_seconds"].as_f64().unwrap_or(-1.0);
                let ext = &body["extensions"][0];
                let total: f64 = ["online", "offline", "unknown"]
                    .iter()
                    .map(|k| seconds(ext, k))
                    .sum();
                assert!((total - window_seconds).abs() < 1e-6, "{ext}");
            }
            503 => {
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                assert!(retry_after, "a 503 without Retry-After: {body}");
            }
            other => anyhow::bail!("time in state answered {other}: {body}"),
        }
    }
    assert!(answered >= 2, "only {answered} of the burst were answered");
    s.stop().await
}

/// A history answer was the whole window, however many entries it held (a phone that flaps
/// all day for 93 days is millions). Now an answer holds at most 50,000, the oldest, ending on a
/// whole millisecond, and `next_from` asks for the rest; the pages add up to the window.
#[tokio::test]
async fn a_long_history_comes_in_pages_that_add_up_to_the_window() -> anyhow::Result<()> {
    const WRITTEN: usize = 60_000;
    let s = TestServer::start(Options::default().seeded(&["1001", "1002"], "Sales")).await?;
    let id = id_of(&s, "1001").await?;
    let dir = s.stop_keeping_data().await?;
    // 60,000 status changes of 1001 a millisecond apart, two per millisecond at the page's
    // end, and one of 1002 among them.
    let start: Timestamp = "2026-11-01T00:00:00Z".parse()?;
    let ext = |n: &str| domain::ExtensionNumber::parse(n);
    let mut entries = Vec::new();
    for i in 0..WRITTEN {
        let ms = i64::try_from(i)? - i64::from(i >= 50_000);
        let at = start + Duration::from_millis(u64::try_from(ms)?);
        let code = i32::from(i % 2 == 1);
        let event = domain::HistoryEvent::Status {
            extension: ext("1001")?,
            previous_code: 1 - code,
            code,
        };
        entries.push(domain::HistoryEntry::new(at, event));
    }
    entries.push(domain::HistoryEntry::new(
        start,
        domain::HistoryEvent::Status {
            extension: ext("1002")?,
            previous_code: -1,
            code: 0,
        },
    ));
    entries.sort_by_key(|e| e.at);
    {
        let (store, token) = tests::server::open_store(dir.path()).await?;
        store.append_history(&entries).await?;
        token.cancel();
    }
    let s = TestServer::start_in(Options::default(), dir).await?;
    let to = "2026-11-02T00:00:00.000Z";
    let mut from = "2026-11-01T00:00:00.000Z".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let reply = s
            .get(&format!("/api/extensions/{id}/history?from={from}&to={to}"))
            .await?;
        assert_eq!(reply.status, 200, "{}", reply.text);
        pages += 1;
        let got = reply.json["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(got.len() <= 50_000, "{} entries in one answer", got.len());
        if pages == 1 {
            // The 50,000th and the 50,001st share a millisecond: the page ends before them.
            assert_eq!(got.len(), 49_999);
        }
        seen.extend(got.into_iter().filter(|e| e["kind"] == "status"));
        match reply.json["next_from"].as_str() {
            Some(next) => from = next.to_owned(),
            None => break,
        }
        anyhow::ensure!(pages < 10, "no end to the pages");
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), WRITTEN, "every entry once");
    let times: Vec<&str> = seen.iter().filter_map(|e| e["at"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert!(seen.iter().all(|e| e["extension"] == "1001"));
    s.stop().await
}

/// Time in state and history are large answers (4.5 MB for 10,000 extensions): a client that
/// accepts gzip gets them compressed, the same JSON; one that refuses it gets them plain.
#[tokio::test]
async fn time_in_state_and_history_come_gzipped_when_accepted() -> anyhow::Result<()> {
    use std::io::Read as _;
    let s = TestServer::start(Options::default().seeded(&["1001", "1002"], "Sales")).await?;
    let id = id_of(&s, "1001").await?;
    let to = "2026-12-02T00:00:00Z";
    let paths = [
        format!("/api/analytics/time-in-state?from=2026-12-01T00:00:00Z&to={to}"),
        format!("/api/extensions/{id}/history?from=2026-12-01T00:00:00Z&to={to}"),
    ];
    let client = reqwest::Client::new();
    for path in paths {
        let plain = s.get(&path).await?;
        assert_eq!(plain.status, 200, "{}", plain.text);
        let zipped = client
            .get(s.url(&path))
            .header("Accept-Encoding", "br, gzip")
            .send()
            .await?;
        assert_eq!(zipped.status(), 200);
        let encoding = zipped.headers().get("content-encoding").cloned();
        assert_eq!(
            encoding.as_ref().map(|v| v.as_bytes()),
            Some(&b"gzip"[..]),
            "{path}"
        );
        let bytes = zipped.bytes().await?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        let unzipped: Value = serde_json::from_str(&text)?;
        assert_eq!(plain.json, unzipped, "{path}");
        let refused = client
            .get(s.url(&path))
            .header("Accept-Encoding", "gzip;q=0")
            .send()
            .await?;
        assert!(
            refused.headers().get("content-encoding").is_none(),
            "{path}"
        );
    }
    s.stop().await
}
