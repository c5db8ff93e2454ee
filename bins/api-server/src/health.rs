//! `/healthz` (the process serves), `/readyz` (the store answers; the body tells the AMI link,
//! event rate and error counts) and `/metrics` (Prometheus text).

use std::sync::Mutex;

use actix_web::{HttpResponse, web};
use ami_proto::client::LinkState;
use chrono::SubsecRound as _;
use domain::{Timestamp, format_rfc3339};
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::state::AppState;

/// The AMI link as `/readyz`, `/metrics` and the pipeline see it.
///
/// Whether the link is up, and since when, has one source: the AMI client's [`LinkState`]
/// watch, which this only reads. What the pipeline adds is what the client does not know: when
/// the last event arrived and the latest failure in words. (The hub's `PbxLink` is a different
/// fact: what browsers have been told, which the pipeline derives from this after a grace
/// period.)
#[derive(Debug, Default)]
pub struct LinkStatus {
    /// The client's link state; `None` when no PBX is configured.
    link: Option<watch::Receiver<LinkState>>,
    observed: Mutex<Observed>,
}

/// What the pipeline observed about the link.
#[derive(Debug, Default, Clone)]
struct Observed {
    last_event: Option<Timestamp>,
    last_error: Option<String>,
}

impl LinkStatus {
    /// The status of a link followed through the client's watch; `None` when the server is not
    /// configured to reach a PBX.
    pub fn new(link: Option<watch::Receiver<LinkState>>) -> Self {
        Self {
            link,
            observed: Mutex::default(),
        }
    }

    fn observed(&self) -> Observed {
        // A poisoned lock holds plain data that is still valid.
        self.observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn observe(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut self.observed.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Whether the server is configured to reach a PBX at all.
    pub fn is_configured(&self) -> bool {
        self.link.is_some()
    }

    /// Whether a logged-in connection is up now.
    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.borrow().connected)
    }

    /// Since when the link has been up or down, or `None` before the first login.
    pub fn since(&self) -> Option<Timestamp> {
        let link = self.link.as_ref()?;
        let state = link.borrow();
        // Generation 0 and down: no connection has logged in yet, so `since` is only the
        // client's start.
        (state.connected || state.generation > 0)
            .then(|| Timestamp::from(state.since).trunc_subsecs(3))
    }

    /// An event arrived at `at`.
    pub fn event_at(&self, at: Timestamp) {
        self.observe(|s| s.last_event = Some(at));
    }

    /// The latest AMI failure, for operators (never holds a secret: callers pass error
    /// messages of the client, which does not print credentials).
    pub fn set_error(&self, e: impl std::fmt::Display) {
        let e = e.to_string();
        self.observe(|s| s.last_error = Some(e));
    }
}

/// `/healthz` body.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `/readyz` body.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when the store answers, else `not_ready`.
    status: &'static str,
    /// The AMI link.
    ami: AmiReadiness,
    /// The store.
    store: StoreReadiness,
    /// Connected WebSocket clients.
    ws_clients: i64,
}

/// The AMI part of `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct AmiReadiness {
    /// Whether a PBX is configured (a manager user, or demo mode).
    configured: bool,
    /// Whether the AMI link is up.
    connected: bool,
    /// Since when it has been up or down (RFC 3339), null before the first attempt.
    since: Option<String>,
    /// When the last event arrived (RFC 3339), or null.
    last_event_at: Option<String>,
    /// Events received over the last minute.
    events_per_minute: u64,
    /// Reconnects after a lost link.
    reconnects: u64,
    /// Failed connects, logins and actions.
    errors: u64,
    /// The latest failure, if any.
    last_error: Option<String>,
    /// Extensions reported by the PBX that the store does not have.
    unknown_extensions: u64,
}

/// The store part of `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct StoreReadiness {
    /// `embedded` or `mongodb`.
    backend: String,
    /// Whether it answered just now.
    ok: bool,
    /// Failed store operations so far.
    errors: u64,
}

/// Liveness: 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: 200 when the store answers, else 503; the body reports the AMI link too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = Readiness),
        (status = 503, description = "The store does not answer", body = Readiness),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store_ok = match state.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            false
        }
    };
    let link = &state.link;
    let observed = link.observed();
    let m = &state.metrics;
    let body = Readiness {
        status: if store_ok { "ready" } else { "not_ready" },
        ami: AmiReadiness {
            configured: link.is_configured(),
            connected: link.is_connected(),
            since: link.since().as_ref().map(format_rfc3339),
            last_event_at: observed.last_event.as_ref().map(format_rfc3339),
            events_per_minute: m.ami_events_per_minute(),
            reconnects: m.ami_reconnects(),
            errors: m.ami_errors(),
            last_error: observed.last_error,
            unknown_extensions: m.unknown_extensions(),
        },
        store: StoreReadiness {
            backend: state.store_backend.clone(),
            ok: store_ok,
            errors: m.store_errors(),
        },
        ws_clients: m.ws_clients(),
    };
    if store_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"),
        (status = 401, description = "Token missing or wrong", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state
        .metrics
        .render(state.link.is_connected(), &state.store.counters());
    crate::metrics::render_hub(&mut text, &state.hub.metrics());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Mounts the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}
