//! `/healthz` (the process serves), `/readyz` (the store answers; the body tells the AMI link,
//! event rate and error counts) and `/metrics` (Prometheus text).
//!
//! `/readyz` never waits on the store: [`StoreProbe`] pings it in the background every
//! [`PROBE_INTERVAL`] with a short timeout, and the handler answers from that cached health,
//! with its age. The writer and the pipeline read the same health ([`StoreHealth`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use ami_proto::client::LinkState;
use chrono::SubsecRound as _;
use domain::{Timestamp, format_rfc3339};
use serde::Serialize;
use store::Repository;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
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
    /// Whether a PBX is configured at all.
    configured: bool,
    /// The current client's link state; `None` when no PBX is configured, or (several
    /// instances) while this instance does not hold the AMI lease.
    link: Mutex<Option<watch::Receiver<LinkState>>>,
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
            configured: link.is_some(),
            link: Mutex::new(link),
            observed: Mutex::default(),
        }
    }

    /// The status of a configured link whose client comes and goes (several instances: only
    /// the lease holder runs one); down until [`LinkStatus::follow`] names a client.
    pub fn switchable() -> Self {
        Self {
            configured: true,
            link: Mutex::new(None),
            observed: Mutex::default(),
        }
    }

    /// Follows this client's link from now on (`None`: no client runs here now).
    pub fn follow(&self, link: Option<watch::Receiver<LinkState>>) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = link;
    }

    /// The current client's state, if one runs.
    fn state(&self) -> Option<LinkState> {
        self.link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.borrow().clone())
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
        self.configured
    }

    /// Whether a logged-in connection is up now.
    pub fn is_connected(&self) -> bool {
        self.state().is_some_and(|s| s.connected)
    }

    /// Since when the link has been up or down, or `None` before the first login.
    pub fn since(&self) -> Option<Timestamp> {
        let state = self.state()?;
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
        // The error may quote the PBX (a refusal's `Message`): bounded and without control
        // characters, as everything the PBX says that reaches an operator.
        let e = domain::pbx_text::clean_for_log(&e.to_string(), 400);
        self.observe(|s| s.last_error = Some(e));
    }
}

/// How often the store is pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The store's health as the last probe found it.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    /// Whether the last ping answered in time.
    pub ok: bool,
    /// When the last ping finished.
    pub checked: Option<Instant>,
    /// When it finished, as wall time, for the body.
    pub checked_at: Option<Timestamp>,
    /// How long the last ping took.
    pub latency: Duration,
    /// Why the last ping failed.
    pub error: Option<String>,
}

/// Pings the store in the background and publishes what it finds.
pub struct StoreProbe;

impl StoreProbe {
    /// Pings the store once (so the health is known before the server serves), then starts
    /// the probe: a ping every [`PROBE_INTERVAL`], each bounded by `timeout` (at most the
    /// interval). The task ends when `cancel` fires.
    pub async fn start(
        store: Arc<dyn Repository>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> (watch::Receiver<StoreHealth>, tokio::task::JoinHandle<()>) {
        let timeout = timeout.min(PROBE_INTERVAL);
        let first = probe(store.as_ref(), timeout).await;
        if let Some(e) = &first.error {
            tracing::warn!(error = %e, "the store does not answer");
        }
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(async move {
            let start = Instant::now() + PROBE_INTERVAL;
            let mut tick = tokio::time::interval_at(start, PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let health = probe(store.as_ref(), timeout).await;
                let was_ok = tx.borrow().ok;
                match &health.error {
                    None if !was_ok => tracing::info!("the store answers again"),
                    Some(e) if was_ok => tracing::warn!(error = %e, "the store does not answer"),
                    _ => {}
                }
                tx.send_replace(health);
            }
        });
        (rx, task)
    }
}

/// One ping, bounded by `timeout`.
async fn probe(store: &dyn Repository, timeout: Duration) -> StoreHealth {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the store did not answer a ping within {} ms",
            timeout.as_millis()
        )),
    };
    StoreHealth {
        ok: result.is_ok(),
        checked: Some(Instant::now()),
        checked_at: Some(domain::now()),
        latency: started.elapsed(),
        error: result.err(),
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
    /// With several instances on MongoDB: whether this one holds the AMI lease, the holder,
    /// and how far its board is behind the change log. Absent with the embedded store.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<crate::cluster::ClusterReport>,
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
    /// Call-center lists the PBX refuses on this connection (`QueueStatus`,
    /// `PresenceStateList`, `CoreShowChannels`): statuses work, that part stays empty.
    lists_refused: Vec<&'static str>,
}

/// The store part of `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct StoreReadiness {
    /// `embedded` or `mongodb`.
    backend: String,
    /// Whether it answered the last background ping.
    ok: bool,
    /// When that ping finished (RFC 3339), null before the first.
    checked_at: Option<String>,
    /// How long ago that was, in milliseconds, null before the first.
    age_ms: Option<u64>,
    /// How long that ping took, in milliseconds.
    latency_ms: u64,
    /// Why it failed, if it did.
    error: Option<String>,
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

/// Readiness: 200 when the store answered its last background ping, else 503; the body reports
/// that ping and its age, and the AMI link. Never waits on the store.
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
    let health = state.store_health.borrow().clone();
    let store_ok = health.ok;
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
            lists_refused: m.lists_refused(),
        },
        store: StoreReadiness {
            backend: state.store_backend.clone(),
            ok: store_ok,
            checked_at: health.checked_at.as_ref().map(format_rfc3339),
            age_ms: health
                .checked
                .map(|c| u64::try_from(c.elapsed().as_millis()).unwrap_or(u64::MAX)),
            latency_ms: u64::try_from(health.latency.as_millis()).unwrap_or(u64::MAX),
            error: health.error,
            errors: m.store_errors(),
        },
        ws_clients: m.ws_clients(),
        cluster: state.cluster.as_ref().map(|c| c.status.report()),
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
    if let Some(cluster) = &state.cluster {
        crate::metrics::render_cluster(&mut text, &cluster.status.report());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Mounts the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::error::not_allowed;
    use crate::rest::read;
    cfg.service(
        web::resource("/healthz")
            .route(read().to(healthz))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/readyz")
            .route(read().to(readyz))
            .default_service(not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/metrics")
            .route(read().to(metrics))
            .default_service(not_allowed("GET, HEAD")),
    );
}
