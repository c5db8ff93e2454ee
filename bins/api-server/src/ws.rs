//! `GET /ws`: the live stream. A snapshot (or, with `?resume=N`, exactly the missed changes)
//! followed by the hub's deltas, several per frame under load; `?department=` filtering; a
//! ping/pong heartbeat that closes silent clients; and a clean close frame on shutdown.

use std::time::Duration;

use std::pin::Pin;

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{FromRequest as _, HttpRequest, HttpResponse, dev, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use domain::Department;
use futures_util::Stream;
use hub::Resume;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::security::{Security, WsSlot};
use crate::state::AppState;
use crate::ws_limit::{Limited, Overflowed};
use crate::ws_send::LiveBody;

/// The query parameters of `/ws`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WsQuery {
    /// Start after this sequence number.
    pub resume: Option<u64>,
    /// Only this department's extensions.
    pub department: Option<Department>,
}

impl WsQuery {
    /// Reads the query string; unknown parameters and bad values are refused, so a typo
    /// does not silently give an unfiltered stream.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = crate::rest::query_pairs(query)?;
        let mut out = WsQuery::default();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in pairs {
            // A repeat is ambiguous (which department, which token?): refused, as on REST.
            if !seen.insert(key.clone()) {
                return Err(invalid_param(&key, "is given more than once"));
            }
            match key.as_str() {
                "resume" => {
                    let n = value.trim().parse::<u64>().map_err(|_| {
                        invalid_param("resume", "must be a sequence number (a whole number)")
                    })?;
                    out.resume = Some(n);
                }
                // An empty value means "no filter", as it does for `GET /api/extensions`, so a
                // client can build both URLs the same way.
                "department" if value.trim().is_empty() => {}
                "department" => {
                    let d = Department::parse(&value)
                        .map_err(|e| invalid_param("department", &e.rule.to_string()))?;
                    out.department = Some(d);
                }
                "token" => {}
                _ => return Err(invalid_param(&key, "is not a known parameter here")),
            }
        }
        Ok(out)
    }
}

fn invalid_param(name: &str, problem: &str) -> ApiError {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(name.to_owned(), problem.to_owned());
    ApiError::BadRequest {
        code: "invalid_query",
        message: format!("The query parameter {name:?} {problem}."),
        fields,
    }
}

/// Upgrades the request and hands the connection to its own task.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "live",
    params(
        ("resume" = Option<u64>, Query, description = "Start with exactly the changes after this sequence number when the server still holds them (then no snapshot)"),
        ("department" = Option<String>, Query, description = "Only this department's extensions (seq stays global)"),
        ("token" = Option<String>, Query, description = "Viewer or admin token, where one is required"),
    ),
    responses(
        (status = 101, description = "WebSocket stream: a snapshot, then deltas with seq"),
        (status = 400, description = "Bad query parameter, or not a WebSocket request", body = crate::error::ErrorBody),
        (status = 401, description = "Token missing or wrong", body = crate::error::ErrorBody),
        (status = 403, description = "A browser from an origin that is neither the server's own nor in --cors-origins", body = crate::error::ErrorBody),
        (status = 426, description = "A Sec-WebSocket-Version other than 13 (the answer names 13)", body = crate::error::ErrorBody),
        (status = 503, description = "--ws-max-connections clients are already connected", body = crate::error::ErrorBody),
    )
)]
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    security: web::Data<Security>,
) -> Result<HttpResponse, actix_web::Error> {
    let query = WsQuery::parse(req.query_string())?;
    security.check_ws_origin(&req)?;
    // A version this server does not speak: 426 naming the one it does (RFC 6455 4.4).
    if let Some(version) = req.headers().get("sec-websocket-version")
        && version.as_bytes() != b"13"
    {
        let shown: String = String::from_utf8_lossy(version.as_bytes())
            .chars()
            .take(20)
            .collect();
        let mut res = actix_web::ResponseError::error_response(&ApiError::bad_request(
            "websocket_version",
            format!("WebSocket version {shown:?} is not supported; this server speaks 13."),
        ));
        *res.status_mut() = actix_web::http::StatusCode::UPGRADE_REQUIRED;
        res.headers_mut().insert(
            actix_web::http::header::SEC_WEBSOCKET_VERSION,
            actix_web::http::header::HeaderValue::from_static("13"),
        );
        return Ok(res);
    }
    let slot = security.ws_slot()?;
    // Client messages are small (pings, pongs, an occasional text we ignore): what the client
    // sends is cut off at the first frame header (or fragments) over the limit, before actix-ws
    // buffers it (`ws_limit`), and the socket is closed with 1009.
    let (limited, overflowed) = Limited::new(body, security.ws_max_message());
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(limited);
    let body = web::Payload::from_request(&req, &mut dev::Payload::from(boxed)).await?;
    // A plain GET (no upgrade headers) gets the JSON error every other route gives, not
    // actix's empty 400.
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::bad_request(
            "websocket_required",
            format!("/ws is a WebSocket endpoint: {e}."),
        )
    })?;
    let stream = stream.max_frame_size(security.ws_max_message());
    let (first, subscription) = match query.resume {
        Some(after) => match state.hub.resume(after, query.department) {
            Resume::Changes(changes, sub) => {
                let first = (!changes.is_empty()).then(|| sub.frame(&changes));
                (first, sub)
            }
            Resume::Snapshot(snapshot, sub) => (Some(sub.snapshot_text(&snapshot)), sub),
        },
        None => {
            let (snapshot, sub) = state.hub.subscribe(query.department);
            (Some(sub.snapshot_text(&snapshot)), sub)
        }
    };
    // The changes go out through the response body, which reads the subscription only when the
    // socket has room (`ws_send`); the connection task keeps the control frames.
    // The connection's place and its count in the gauge last as long as the body, which actix
    // keeps for as long as the TCP connection is open.
    state.metrics.ws_clients_add(1);
    let held = Box::new(Held {
        _slot: slot,
        _gauge: ClientGauge(state.metrics.clone()),
    });
    let response = response
        .map_body(|_, control| LiveBody::new(control, &state.hub, subscription, first, held))
        .map_into_boxed_body();
    let conn = Connection {
        session,
        stream,
        overflowed,
        shutdown: state.shutdown.clone(),
        ping_interval: state.timing.ws_ping_interval,
        timeout: state.timing.ws_timeout,
    };
    actix_web::rt::spawn(conn.run());
    Ok(response)
}

/// One client connection's receiving side and heartbeat; the changes are sent by its
/// response body ([`LiveBody`]).
struct Connection {
    session: Session,
    stream: MessageStream,
    /// Set when the client sent a frame or message over `--ws-max-message`.
    overflowed: Overflowed,
    shutdown: CancellationToken,
    ping_interval: Duration,
    timeout: Duration,
}

/// What an open connection holds: its place under `--ws-max-connections` and its count in the
/// client gauge, both given back when the connection is gone.
struct Held {
    _slot: WsSlot,
    _gauge: ClientGauge,
}

/// Decrements the client gauge however the connection ends.
struct ClientGauge(std::sync::Arc<Metrics>);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.ws_clients_add(-1);
    }
}

/// The end of a client that sent a frame or message over `--ws-max-message`.
fn too_big() -> End {
    tracing::debug!("websocket client message over --ws-max-message; closing");
    End::Close(CloseReason {
        code: CloseCode::Size,
        description: Some("message too big".to_owned()),
    })
}

/// Why a connection ended, and what close frame (if any) is still owed to the client.
enum End {
    /// Send this close frame.
    Close(CloseReason),
    /// The client closed first; echo its close frame.
    Echo(Option<CloseReason>),
    /// The connection is gone; nothing can be sent.
    Gone,
}

impl Connection {
    async fn run(mut self) {
        let end = self.pump().await;
        let reason = match end {
            End::Close(reason) => Some(reason),
            End::Echo(reason) => reason,
            End::Gone => return,
        };
        // The client may already be gone; there is nothing more to do about it then.
        let _ = self.session.close(reason).await;
    }

    async fn pump(&mut self) -> End {
        let mut ticker =
            tokio::time::interval_at(Instant::now() + self.ping_interval, self.ping_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    return End::Close(CloseReason {
                        code: CloseCode::Away,
                        description: Some("server shutting down".to_owned()),
                    });
                }
                msg = self.stream.recv() => match msg {
                    Some(Ok(Message::Ping(bytes))) => {
                        last_heard = Instant::now();
                        if self.session.pong(&bytes).await.is_err() {
                            return End::Gone;
                        }
                    }
                    Some(Ok(Message::Close(reason))) => return End::Echo(reason),
                    // Pongs, texts and anything else prove the client is alive; their content
                    // means nothing to this server.
                    Some(Ok(_)) => last_heard = Instant::now(),
                    Some(Err(actix_ws::ProtocolError::Overflow)) => return too_big(),
                    Some(Err(_)) if self.overflowed.get() => return too_big(),
                    Some(Err(actix_ws::ProtocolError::Io(e)))
                        if e.kind() == std::io::ErrorKind::InvalidData =>
                    {
                        // A text frame that is not UTF-8 (RFC 6455 7.4.1: 1007).
                        tracing::debug!("websocket client sent text that is not UTF-8; closing");
                        return End::Close(CloseReason {
                            code: CloseCode::Invalid,
                            description: Some("text is not UTF-8".to_owned()),
                        });
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket protocol error");
                        return End::Close(CloseReason {
                            code: CloseCode::Protocol,
                            description: Some("protocol error".to_owned()),
                        });
                    }
                    None => return End::Gone,
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() >= self.timeout {
                        tracing::debug!("websocket client silent too long; closing");
                        return End::Close(CloseReason {
                            code: CloseCode::Policy,
                            description: Some("no pong within the timeout".to_owned()),
                        });
                    }
                    if self.session.ping(b"").await.is_err() {
                        return End::Gone;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let ok = |q: &str| WsQuery::parse(q).expect(q);
        assert_eq!(ok(""), WsQuery::default());
        assert_eq!(
            ok("resume=42&token=abc&department=Sales%20EU"),
            WsQuery {
                resume: Some(42),
                department: Some(Department::parse("Sales EU").expect("dept")),
            }
        );
        assert_eq!(ok("department="), WsQuery::default());
        for bad in [
            "resume=x",
            "resume=-1",
            "department=%07",
            "colour=red",
            "department=%FF",
            "department=Sales&department=Support",
            "token=a&token=b",
            "resume=1&resume=1",
        ] {
            let e = WsQuery::parse(bad).expect_err(bad);
            assert_eq!(e.code(), "invalid_query", "{bad}");
        }
    }
}
