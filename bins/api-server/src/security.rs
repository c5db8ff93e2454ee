//! Browser-facing protections, in one middleware and two helpers for `/ws`: security headers on
//! every answer, CORS for an explicit allow-list only, cross-origin writes refused, a per-client
//! token bucket on writes, and the WebSocket origin check and connection limit.
//!
//! * **Headers.** Every response carries `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and a Content-Security-Policy with
//!   `frame-ancestors 'none'` (the dashboard page sets its own, stricter-for-scripts policy,
//!   which is kept).
//! * **CORS** is off unless `--cors-origins` lists exact origins. A preflight from a listed
//!   origin is answered 204 with the allowed methods and headers; from any other origin it is
//!   refused with 403 and no CORS header, so the browser blocks the real request.
//! * **Writes** (POST, PUT, PATCH, DELETE) that a browser sends from an origin that is neither
//!   the server's own (the `Host` header) nor listed are refused with 403: a page elsewhere
//!   cannot make a supervisor's browser edit the board. Clients that send no `Origin` (curl,
//!   the seeder) are not browsers and pass.
//! * **Rate limit.** Each client address (an IPv6 client by its /64) has a token bucket for
//!   writes: `--rate-limit` per second, `--rate-limit-burst` at once; over it the answer is 429
//!   with `Retry-After`. The address is the TCP peer, never a forwarded header a client could
//!   forge.
//! * **Headers over [`MAX_HEADER_BYTES`]** in total are answered 431 in the JSON error shape.
//! * **`/ws`**: [`Security::check_ws_origin`] applies the origin rule to the upgrade (a browser
//!   from elsewhere gets 403; a client without `Origin` is allowed, it cannot be a cross-site
//!   request), and [`Security::ws_slot`] caps the connections served at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::config::SecurityConfig;
use crate::error::ApiError;

/// The policy of every response that does not set its own (the API's JSON, errors, `/metrics`):
/// it loads nothing and may not be framed.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Methods a listed origin may use, as the preflight answer names them.
const CORS_METHODS: &str = "GET, HEAD, POST, PUT, DELETE";
/// Request headers a listed origin may send.
const CORS_HEADERS: [&str; 2] = ["authorization", "content-type"];
/// How long a browser may cache a preflight answer, in seconds.
const CORS_MAX_AGE: &str = "600";

/// The most header bytes (names and values) a request may carry. Browsers send a few KiB; a
/// token is under 100 bytes. The HTTP layer itself stops at 128 KiB or 96 headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most client addresses whose buckets are remembered; past it, full (idle) buckets are
/// forgotten, which changes nothing for their clients.
const MAX_TRACKED_CLIENTS: usize = 65_536;

/// The protections, shared by every worker.
#[derive(Debug)]
pub struct Security {
    cors_origins: Vec<String>,
    limiter: Option<RateLimiter>,
    ws_max_connections: usize,
    ws_open: Arc<AtomicUsize>,
    ws_max_message: usize,
}

impl Security {
    /// The protections of a configuration.
    pub fn new(config: &SecurityConfig) -> Self {
        Self {
            cors_origins: config.cors_origins.clone(),
            limiter: (config.rate_limit > 0).then(|| {
                RateLimiter::new(
                    f64::from(config.rate_limit),
                    f64::from(config.rate_limit_burst.max(1)),
                )
            }),
            ws_max_connections: config.ws_max_connections,
            ws_open: Arc::new(AtomicUsize::new(0)),
            ws_max_message: config.ws_max_message,
        }
    }

    /// The largest WebSocket message a client may send, in bytes.
    pub fn ws_max_message(&self) -> usize {
        self.ws_max_message
    }

    fn listed(&self, origin: &str) -> bool {
        let origin = normalize_origin(origin);
        self.cors_origins.contains(&origin)
    }

    /// Whether a browser on `origin` may act on this server: the server's own origin (the
    /// `Host` it was reached at) or one of the listed ones.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        self.listed(origin) || same_origin(origin, host)
    }

    /// Refuses a WebSocket upgrade that a browser sends from a foreign origin.
    pub fn check_ws_origin(&self, req: &HttpRequest) -> Result<(), ApiError> {
        match origin_of(req.headers()) {
            None => Ok(()),
            Some(origin) if self.origin_allowed(&origin, host_of(req.headers())) => Ok(()),
            Some(origin) => Err(foreign_origin(&origin)),
        }
    }

    /// Takes one of the `--ws-max-connections` places, held until the slot is dropped, or
    /// answers 503 when all are taken.
    pub fn ws_slot(&self) -> Result<WsSlot, ApiError> {
        let taken = self
            .ws_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.ws_max_connections).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(WsSlot(self.ws_open.clone())),
            Err(_) => {
                tracing::warn!(
                    limit = self.ws_max_connections,
                    "websocket connection refused: the connection limit is reached"
                );
                Err(ApiError::Unavailable(format!(
                    "The server already serves {} live connections, its limit; try again later.",
                    self.ws_max_connections
                )))
            }
        }
    }
}

/// One WebSocket connection's place under the connection limit; dropping it frees the place.
#[derive(Debug)]
pub struct WsSlot(Arc<AtomicUsize>);

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn foreign_origin(origin: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "Requests from the origin {origin:?} are not allowed; the server accepts browsers \
         only from its own origin and those listed in --cors-origins."
    ))
}

/// The `Origin` header, when there is exactly one and it is text.
fn origin_of(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(header::ORIGIN);
    let first = values.next()?;
    if values.next().is_some() {
        // Two origins: not something a browser sends; treat it as the foreign one it may be.
        return Some("(several Origin headers)".to_owned());
    }
    Some(
        first
            .to_str()
            .unwrap_or("(an Origin that is not text)")
            .to_owned(),
    )
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// An origin as browsers write it, lower-case and without a trailing slash.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `host[:port]` without the scheme's default port, lower-case.
fn authority(scheme: &str, authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    match a.strip_suffix(default) {
        Some(bare) if !default.is_empty() => bare.to_owned(),
        _ => a,
    }
}

/// Whether `origin` names the host the request was sent to. The scheme is not compared: behind
/// a TLS-terminating proxy the server cannot know it, and the host and port already pin the
/// site.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let origin = normalize_origin(origin);
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" || rest.contains(['/', '?', '#', '@']) {
        return false;
    }
    let theirs = authority(scheme, rest);
    theirs == authority(scheme, host.trim()) || theirs == host.trim().to_ascii_lowercase()
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// A preflight: `OPTIONS` with an `Origin` and `Access-Control-Request-Method`.
fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight: 204 with the CORS headers for a listed origin asking for an allowed
/// method and headers, 403 without any CORS header otherwise.
fn preflight(security: &Security, req: &ServiceRequest) -> HttpResponse {
    let origin = origin_of(req.headers()).unwrap_or_default();
    let method_ok = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| CORS_METHODS.split(", ").any(|allowed| allowed == m.trim()));
    let headers_ok = req
        .headers()
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .all(|v| {
            v.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .all(|h| h.is_empty() || CORS_HEADERS.contains(&h.as_str()))
            })
        });
    if !security.listed(&origin) {
        return foreign_origin(&origin).error_response();
    }
    if !method_ok || !headers_ok {
        return ApiError::Forbidden(format!(
            "A cross-origin request may use the methods {CORS_METHODS} and the headers {}.",
            CORS_HEADERS.join(", ")
        ))
        .error_response();
    }
    HttpResponse::NoContent()
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            normalize_origin(&origin),
        ))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            CORS_HEADERS.join(", "),
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, CORS_MAX_AGE))
        .insert_header((header::VARY, "Origin"))
        .finish()
}

/// Sets a header unless the handler set it already.
fn default_header(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Adds the security headers, and the CORS headers for a listed origin.
fn finish(headers: &mut HeaderMap, cors_origin: Option<&str>, cors_on: bool) {
    default_header(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    default_header(headers, header::REFERRER_POLICY, "no-referrer");
    default_header(headers, header::X_FRAME_OPTIONS, "DENY");
    default_header(headers, header::CONTENT_SECURITY_POLICY, API_CSP);
    if let Some(origin) = cors_origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After, ETag"),
        );
    }
    if cors_on {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The middleware: preflights, the cross-origin write check, the write rate limit, and the
/// headers on every answer (errors of inner middleware included).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(security) = req.app_data::<web::Data<Security>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let cors_on = !security.cors_origins.is_empty();
    let origin = origin_of(req.headers());
    let cors_origin = origin
        .as_deref()
        .filter(|o| security.listed(o))
        .map(normalize_origin);

    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let refusal = if header_bytes > MAX_HEADER_BYTES {
        Some(
            ApiError::HeadersTooLarge {
                limit: MAX_HEADER_BYTES,
            }
            .error_response(),
        )
    } else if is_preflight(&req) {
        Some(preflight(&security, &req))
    } else if is_write(req.method())
        && origin
            .as_deref()
            .is_some_and(|o| !security.origin_allowed(o, host_of(req.headers())))
    {
        Some(foreign_origin(origin.as_deref().unwrap_or_default()).error_response())
    } else if is_write(req.method()) {
        security.limiter.as_ref().and_then(|limiter| {
            let ip = req.peer_addr().map(|a| a.ip())?;
            limiter
                .take(ip, Instant::now())
                .err()
                .map(|retry_after| ApiError::TooManyRequests { retry_after }.error_response())
        })
    } else {
        None
    };
    if let Some(mut res) = refusal {
        let is_cors_answer = res.status() == StatusCode::NO_CONTENT;
        finish(res.headers_mut(), None, cors_on && !is_cors_answer);
        return Ok(req.into_response(res).map_into_right_body());
    }

    match next.call(req).await {
        Ok(mut res) => {
            finish(res.headers_mut(), cors_origin.as_deref(), cors_on);
            Ok(res.map_into_left_body())
        }
        // An inner refusal (a missing token) leaves as an error; its answer gets the headers too.
        Err(e) => {
            let mut res = e.error_response();
            finish(res.headers_mut(), cors_origin.as_deref(), cors_on);
            Err(actix_web::error::InternalError::from_response(e, res).into())
        }
    }
}

/// The write rate: one token bucket per client address.
#[derive(Debug)]
struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The key of a client: an IPv4 address, or the /64 network of an IPv6 one (one host
/// commonly holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimiter {
    fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`, or answers how many whole seconds until one is there.
    fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst
            });
        }
        let bucket = buckets.entry(client_key(ip)).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_sec;
            // At least one second: Retry-After counts whole seconds.
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, test as web_test};
    use std::time::Duration;

    fn security(origins: &[&str], rate: u32, burst: u32) -> Security {
        Security::new(&SecurityConfig {
            cors_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            rate_limit: rate,
            rate_limit_burst: burst,
            ws_max_connections: 2,
            ws_max_message: 4096,
        })
    }

    #[test]
    fn origins() {
        let s = security(&["https://wall.example.com"], 0, 1);
        let rows = [
            ("https://wall.example.com", Some("api.local:8080"), true),
            ("https://WALL.example.com/", None, true),
            ("https://wall.example.com:8443", Some("x"), false),
            ("http://api.local:8080", Some("api.local:8080"), true),
            ("https://api.local", Some("api.local:443"), true),
            ("http://api.local", Some("api.local:80"), true),
            ("http://api.local", Some("api.local:8080"), false),
            ("http://evil.example", Some("api.local:8080"), false),
            (
                "http://api.local:8080.evil.example",
                Some("api.local:8080"),
                false,
            ),
            ("http://user@api.local:8080", Some("api.local:8080"), false),
            ("null", Some("api.local:8080"), false),
            ("", Some("api.local:8080"), false),
            ("http://api.local:8080", None, false),
        ];
        for (origin, host, want) in rows {
            assert_eq!(s.origin_allowed(origin, host), want, "{origin} {host:?}");
        }
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(ip, t0), Ok(()));
        }
        assert_eq!(limiter.take(ip, t0), Err(1));
        // Another client has its own bucket.
        assert_eq!(limiter.take(other, t0), Ok(()));
        // Half a second at 2/s gives one token back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take(ip, t1), Ok(()));
        assert!(limiter.take(ip, t1).is_err());
        // Idle time refills up to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take(ip, t2), Ok(()));
        }
        assert!(limiter.take(ip, t2).is_err());
        // A slow rate asks for a longer wait.
        let slow = RateLimiter::new(0.25, 1.0);
        assert_eq!(slow.take(ip, t0), Ok(()));
        assert_eq!(slow.take(ip, t0), Err(4));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(client_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn websocket_slots_are_capped_and_given_back() {
        let s = security(&[], 0, 1);
        let a = s.ws_slot().expect("first");
        let _b = s.ws_slot().expect("second");
        let refused = s.ws_slot().expect_err("over the limit");
        assert_eq!(refused.code(), "unavailable");
        drop(a);
        s.ws_slot().expect("a freed place");
    }

    async fn call(
        security: Security,
        req: web_test::TestRequest,
    ) -> actix_web::dev::ServiceResponse<impl MessageBody> {
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(security))
                .wrap(actix_web::middleware::from_fn(middleware))
                .route(
                    "/api/things",
                    web::route().to(|| async { HttpResponse::Ok().json(serde_json::json!([])) }),
                ),
        )
        .await;
        web_test::call_service(
            &app,
            req.peer_addr("10.1.2.3:5555".parse().expect("addr"))
                .to_request(),
        )
        .await
    }

    fn header<'a>(
        res: &'a actix_web::dev::ServiceResponse<impl MessageBody>,
        name: &str,
    ) -> Option<&'a str> {
        res.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[actix_web::test]
    async fn headers_cors_and_cross_origin_writes() {
        let listed = "https://wall.example.com";
        // Every answer carries the security headers; no CORS without an Origin.
        let res = call(
            security(&[listed], 0, 1),
            web_test::TestRequest::get().uri("/api/things"),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&res, "referrer-policy"), Some("no-referrer"));
        assert!(
            header(&res, "content-security-policy")
                .is_some_and(|v| v.contains("frame-ancestors 'none'"))
        );
        assert_eq!(header(&res, "access-control-allow-origin"), None);

        // A listed origin gets its CORS header on reads and a full preflight answer.
        let res = call(
            security(&[listed], 0, 1),
            web_test::TestRequest::get()
                .uri("/api/things")
                .insert_header(("origin", listed)),
        )
        .await;
        assert_eq!(header(&res, "access-control-allow-origin"), Some(listed));
        let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
            web_test::TestRequest::default()
                .method(Method::OPTIONS)
                .uri("/api/things")
                .insert_header(("origin", origin))
                .insert_header(("access-control-request-method", method))
                .insert_header(("access-control-request-headers", headers))
        };
        let res = call(
            security(&[listed], 0, 1),
            preflight(listed, "PUT", "Content-Type, Authorization"),
        )
        .await;
        assert_eq!(res.status(), 204);
        assert_eq!(header(&res, "access-control-allow-origin"), Some(listed));
        assert!(header(&res, "access-control-allow-methods").is_some_and(|m| m.contains("PUT")));
        assert!(
            header(&res, "access-control-allow-headers")
                .is_some_and(|h| h.contains("authorization"))
        );
        // Anyone else, or an odd method or header, gets a 403 and nothing CORS.
        for req in [
            preflight("https://evil.example", "PUT", "content-type"),
            preflight(listed, "PATCH", "content-type"),
            preflight(listed, "PUT", "x-custom"),
        ] {
            let res = call(security(&[listed], 0, 1), req).await;
            assert_eq!(res.status(), 403);
            assert_eq!(header(&res, "access-control-allow-origin"), None);
        }
        // CORS off: even a would-be listed origin gets nothing.
        let res = call(security(&[], 0, 1), preflight(listed, "GET", "")).await;
        assert_eq!(res.status(), 403);
        assert_eq!(header(&res, "access-control-allow-origin"), None);

        // A write from a foreign page is refused; from the own origin, a listed one or a
        // non-browser client it goes through.
        let write = |origin: Option<&'static str>| {
            let req = web_test::TestRequest::post()
                .uri("/api/things")
                .insert_header(("host", "api.local:8080"));
            match origin {
                Some(o) => req.insert_header(("origin", o)),
                None => req,
            }
        };
        let res = call(
            security(&[listed], 0, 1),
            write(Some("https://evil.example")),
        )
        .await;
        assert_eq!(res.status(), 403);
        for origin in [Some("http://api.local:8080"), Some(listed), None] {
            let res = call(security(&[listed], 0, 1), write(origin)).await;
            assert_eq!(res.status(), 200, "{origin:?}");
        }
    }

    #[actix_web::test]
    async fn writes_over_the_rate_are_answered_429_with_retry_after() {
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(security(&[], 1, 2)))
                .wrap(actix_web::middleware::from_fn(middleware))
                .route("/api/things", web::route().to(HttpResponse::Ok)),
        )
        .await;
        let peer = "10.9.9.9:4000".parse().expect("addr");
        let send = |m: Method| {
            web_test::TestRequest::default()
                .method(m)
                .uri("/api/things")
                .peer_addr(peer)
                .to_request()
        };
        assert_eq!(
            web_test::call_service(&app, send(Method::POST))
                .await
                .status(),
            200
        );
        assert_eq!(
            web_test::call_service(&app, send(Method::DELETE))
                .await
                .status(),
            200
        );
        let res = web_test::call_service(&app, send(Method::PUT)).await;
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "retry-after"), Some("1"));
        let body: serde_json::Value = web_test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "rate_limited");
        // Reads are never limited.
        for _ in 0..5 {
            assert_eq!(
                web_test::call_service(&app, send(Method::GET))
                    .await
                    .status(),
                200
            );
        }
    }
}
