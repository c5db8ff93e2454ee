//! End-to-end tests of the browser-facing protections on a real server: the WebSocket origin
//! check, message-size close and connection limit; CORS for listed origins only; the security
//! headers of the page and the API; and the per-client write rate limit.

use api_server::config::SecurityConfig;
use reqwest::Method;
use serde_json::json;
use tests::server::{Options, TestServer, WsEnd, eventually};

const LISTED: &str = "https://wall.example.com";

fn options(security: SecurityConfig) -> Options {
    Options {
        security: Some(security),
        ..Options::default()
    }
}

#[tokio::test]
async fn websocket_origins_are_checked_and_limits_hold() -> anyhow::Result<()> {
    let s = TestServer::start(options(SecurityConfig {
        cors_origins: vec![LISTED.to_owned()],
        ws_max_connections: 3,
        ..SecurityConfig::default()
    }))
    .await?;
    let own = format!("http://{}", s.addr);

    // A browser on a foreign page is refused; the own origin, a listed one and a client
    // without Origin (not a browser) are served.
    let refused = s
        .ws_with_headers("", &[("Origin", "https://evil.example")])
        .await?;
    assert_eq!(refused.err(), Some(403));
    let mut open = Vec::new();
    for headers in [
        vec![("Origin", own.as_str())],
        vec![("Origin", LISTED)],
        vec![],
    ] {
        let mut ws = s
            .ws_with_headers("", &headers)
            .await?
            .map_err(|status| anyhow::anyhow!("{headers:?} refused with {status}"))?;
        ws.next().await?;
        open.push(ws);
    }

    // The limit is reached: the next client is answered 503 until a place is free.
    assert_eq!(s.ws_with_headers("", &[]).await?.err(), Some(503));
    let mut first = open.remove(0);
    // A message under the limit is fine; one over it closes the socket with 1009.
    first.send_text("x".repeat(4000)).await?;
    first.send_text("x".repeat(5000)).await?;
    assert_eq!(first.end().await?, WsEnd::Closed(1009));
    let mut again = eventually("a freed connection place", || async {
        Ok(s.ws_with_headers("", &[]).await?.ok())
    })
    .await?;
    again.next().await?;
    s.stop().await
}

#[tokio::test]
async fn cors_only_for_listed_origins_and_headers_everywhere() -> anyhow::Result<()> {
    let s = TestServer::start(options(SecurityConfig {
        cors_origins: vec![LISTED.to_owned()],
        ..SecurityConfig::default()
    }))
    .await?;
    let http = reqwest::Client::new();
    let preflight = |origin: &str| {
        http.request(Method::OPTIONS, s.url("/api/extensions"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type, authorization",
            )
            .send()
    };
    let res = preflight(LISTED).await?;
    assert_eq!(res.status(), 204);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], LISTED);
    assert!(h["access-control-allow-methods"].to_str()?.contains("POST"));
    assert!(
        h["access-control-allow-headers"]
            .to_str()?
            .contains("content-type")
    );
    let res = preflight("https://evil.example").await?;
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let res = http
        .get(s.url("/api/extensions"))
        .header("Origin", LISTED)
        .send()
        .await?;
    assert_eq!(res.headers()["access-control-allow-origin"], LISTED);
    let res = http
        .get(s.url("/api/extensions"))
        .header("Origin", "https://evil.example")
        .send()
        .await?;
    assert!(res.headers().get("access-control-allow-origin").is_none());

    // The page: a policy without inline script or style, and no inline script or style in it.
    let page = http.get(s.url("/")).send().await?;
    let csp = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.headers().contains_key("referrer-policy"));
    let html = page.text().await?.to_ascii_lowercase();
    for inline in ["<style", " style=", " onclick=", " onload=", "javascript:"] {
        assert!(!html.contains(inline), "the page has inline {inline}");
    }
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..html[i..].find('>').map_or(html.len(), |e| i + e)];
        assert!(tag.contains(" src="), "an inline script: {tag}");
    }
    // The API and its errors carry the headers too.
    for path in ["/api/extensions", "/api/nothing-here", "/healthz"] {
        let res = http.get(s.url(path)).send().await?;
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(
            res.headers()["content-security-policy"]
                .to_str()?
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(res.headers()["referrer-policy"], "no-referrer", "{path}");
    }
    s.stop().await
}

#[tokio::test]
async fn writes_over_the_client_rate_get_429_and_change_nothing() -> anyhow::Result<()> {
    let s = TestServer::start(options(SecurityConfig {
        rate_limit: 1,
        rate_limit_burst: 3,
        ..SecurityConfig::default()
    }))
    .await?;
    for n in 0..3 {
        let body = json!({"extension": format!("80{n}"), "agent_name": "A", "department": "D"});
        let r = s
            .request(Method::POST, "/api/extensions", Some(&body), None)
            .await?;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let res = reqwest::Client::new()
        .post(s.url("/api/extensions"))
        .json(&json!({"extension": "809", "agent_name": "A", "department": "D"}))
        .send()
        .await?;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"].to_str()?.parse()?;
    assert!(retry >= 1);
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["error"]["code"], "rate_limited");
    // Reads are not limited, and the refused write left nothing behind.
    for _ in 0..10 {
        let r = s.get("/api/extensions").await?;
        assert_eq!(r.status, 200);
        assert_eq!(r.json.as_array().map(Vec::len), Some(3));
    }
    s.stop().await
}
