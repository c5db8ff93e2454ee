//! The history and analytics endpoints (`/api/extensions/{id}/history`,
//! `/api/analytics/time-in-state`, `/api/departments`), the server and PBX-link markers the
//! history records, and the background task that prunes history older than `--history-days`.
//!
//! The counting rules are `domain::analytics`'s and are written for users in
//! `docs/analytics.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use domain::{
    Department, DeviceState, Extension, ExtensionFilter, HistoryEntry, HistoryEvent, Presence,
    RangeError, RecordId, TimeRange, Timestamp, format_rfc3339,
};
use serde::Serialize;
use store::{Repository, TimeInStateRequest};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Entries deleted per prune transaction: small, so a status write waits for at most one.
pub const PRUNE_BATCH: usize = 1_000;
/// How often history older than the retention is looked for.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// The pause between two prune batches, which lets queued status writes through.
const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// How many history and time-in-state requests are computed at once. Each reads up to
/// [`domain::TimeRange::MAX_DAYS`] of history and, for time in state, builds and serializes an
/// answer for every extension (about 450 bytes each: 4.5 MB for 10,000); more at once would
/// only share the same cores while holding more memory.
pub const ANALYTICS_CONCURRENCY: usize = 2;
/// How many more may wait for their turn; beyond that a request is refused with 503
/// `unavailable` (and `Retry-After`), so a burst costs a bounded amount of memory and work.
pub const ANALYTICS_QUEUE: usize = 32;

/// Bounds the history and time-in-state work running and waiting at once (see
/// [`ANALYTICS_CONCURRENCY`] and [`ANALYTICS_QUEUE`]).
#[derive(Debug)]
pub struct AnalyticsGate {
    permits: tokio::sync::Semaphore,
    admitted: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl Default for AnalyticsGate {
    fn default() -> Self {
        Self::new(ANALYTICS_CONCURRENCY, ANALYTICS_QUEUE)
    }
}

/// A request's turn: while it lives the request counts as running.
pub struct AnalyticsTurn<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    _admitted: Admitted<'a>,
}

/// Counts an admitted request until dropped (also when its future is dropped while waiting).
pub struct Admitted<'a>(&'a AnalyticsGate);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0
            .admitted
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AnalyticsGate {
    /// `running` at once, `queue` more waiting.
    pub fn new(running: usize, queue: usize) -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(running.max(1)),
            admitted: std::sync::atomic::AtomicUsize::new(0),
            limit: running.max(1) + queue,
        }
    }

    /// Waits for a turn; a 503 when the queue is full.
    pub async fn enter(&self) -> Result<AnalyticsTurn<'_>, ApiError> {
        use std::sync::atomic::Ordering;
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(self);
        if before >= self.limit {
            return Err(ApiError::Unavailable(format!(
                "Too many history and time-in-state requests at once (at most {ANALYTICS_CONCURRENCY} \
                 are computed and {ANALYTICS_QUEUE} wait); retry in a moment."
            )));
        }
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(format!("analytics gate closed: {e}")))?;
        Ok(AnalyticsTurn {
            _permit: permit,
            _admitted: admitted,
        })
    }
}

/// Serializes a large answer on a blocking thread, so the HTTP worker keeps serving other
/// requests meanwhile; gzip-compressed there too when the client accepts it (a time in state
/// over 10,000 extensions is 4.5 MB of JSON, a tenth of that compressed).
async fn json_off_worker<T: Serialize + Send + 'static>(
    req: &HttpRequest,
    value: T,
) -> Result<HttpResponse, ApiError> {
    let gzip = crate::rest::accepts_gzip(req);
    let failed =
        |e: &dyn std::fmt::Display| ApiError::Internal(format!("serializing an answer: {e}"));
    let body = web::block(move || -> std::io::Result<bytes::Bytes> {
        let plain = serde_json::to_vec(&value)?;
        if gzip {
            crate::rest::gzip(&plain)
        } else {
            Ok(bytes::Bytes::from(plain))
        }
    })
    .await
    .map_err(|e| failed(&e))?
    .map_err(|e| failed(&e))?;
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/json")
        .insert_header((actix_web::http::header::VARY, "Accept-Encoding"));
    if gzip {
        response.insert_header((actix_web::http::header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response.body(body))
}

/// Records a server or PBX-link marker; a failure is logged, never fatal (the history then
/// misses a bound, which the analytics rules treat as the last thing known).
pub async fn record_marker(store: &dyn Repository, event: HistoryEvent, at: Timestamp) {
    let kind = event.kind();
    if let Err(e) = store.append_history(&[HistoryEntry::new(at, event)]).await {
        tracing::error!(kind, error = %e, "history marker not written");
    }
}

/// Deletes history older than `retention` now, in batches of [`PRUNE_BATCH`], and says how
/// many entries went.
pub async fn prune_once(
    store: &dyn Repository,
    retention: Duration,
    now: Timestamp,
    stop: &CancellationToken,
) -> Result<u64, store::StoreError> {
    // A retention longer than the calendar reaches back keeps everything.
    let Some(before) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
    else {
        return Ok(0);
    };
    let mut total = 0;
    while !stop.is_cancelled() {
        let deleted = store.prune_history(before, PRUNE_BATCH).await?;
        total += deleted;
        if deleted < PRUNE_BATCH as u64 {
            break;
        }
        tokio::time::sleep(PRUNE_PAUSE).await;
    }
    Ok(total)
}

/// The background pruning task: at start and then every `interval`, until `stop`.
pub fn spawn_pruner(
    store: Arc<dyn Repository>,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match prune_once(&*store, retention, domain::now(), &stop).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "old history pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning old history failed; retrying later"),
            }
        }
    })
}

/// The query parameters of a history or analytics request: only `allowed`, each at most once.
fn params(
    req: &HttpRequest,
    allowed: &[&'static str],
) -> Result<BTreeMap<String, String>, ApiError> {
    // Percent-encoded bytes that are not UTF-8 are refused by name, never replaced by U+FFFD.
    let pairs = crate::rest::query_pairs(req.query_string())?;
    let mut out = BTreeMap::new();
    let mut fields = BTreeMap::new();
    for (key, value) in pairs {
        if !allowed.contains(&key.as_str()) {
            fields.insert(key, "is not a known parameter".to_owned());
        } else if out.insert(key.clone(), value).is_some() {
            fields.insert(key, "is given more than once".to_owned());
        }
    }
    if fields.is_empty() {
        Ok(out)
    } else {
        // Names quoted: an unknown one may be empty or hold spaces.
        let problems: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?} {v}")).collect();
        Err(ApiError::BadRequest {
            code: "invalid_query",
            message: format!(
                "The query is not valid: {} (the parameters are {}).",
                problems.join("; "),
                allowed.join(", ")
            ),
            fields,
        })
    }
}

/// The validated `[from, to)` of a request; a 400 naming `from` or `to` otherwise.
fn range(params: &BTreeMap<String, String>) -> Result<TimeRange, ApiError> {
    TimeRange::parse(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
    )
    .map_err(|e: RangeError| ApiError::BadRequest {
        code: "invalid_range",
        message: format!("The time range is not valid: {e}."),
        fields: BTreeMap::from([(e.field().to_owned(), e.to_string())]),
    })
}

/// The optional `department` parameter, validated as everywhere else (empty means all).
fn department(params: &BTreeMap<String, String>) -> Result<Option<Department>, ApiError> {
    match params.get("department").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(raw) => Department::parse(raw)
            .map(Some)
            .map_err(|e| ApiError::BadRequest {
                code: "invalid_query",
                message: format!("The query is not valid: department {}.", e.rule),
                fields: BTreeMap::from([("department".to_owned(), e.rule.to_string())]),
            }),
    }
}

/// The history of one extension.
#[derive(Serialize, ToSchema)]
pub struct HistoryBody {
    /// The extension number.
    #[schema(example = "1001")]
    pub extension: String,
    /// The window's start (inclusive), RFC 3339 UTC.
    pub from: String,
    /// The window's end (exclusive), RFC 3339 UTC.
    pub to: String,
    /// The entries, oldest first: the extension's own (`status`, `pause`, `presence`, `call`)
    /// and the markers that bound what is known for everyone (`pbx_link_down`, `pbx_link_up`,
    /// `server_start`, `server_stop`). Each is a flat object with `at` and `kind`; see
    /// `docs/analytics.md`.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<HistoryEntry>,
    /// Null when `entries` is the whole window. Otherwise the window held more than
    /// [`MAX_HISTORY_ENTRIES`] entries: these are the oldest (whole milliseconds of them), and
    /// the rest is asked for with this as `from` (and the same `to`).
    pub next_from: Option<String>,
}

/// The most entries one history answer holds (about 150 bytes each in JSON); a window with
/// more is answered in pages (`next_from`).
pub const MAX_HISTORY_ENTRIES: usize = 50_000;

/// Cuts `entries` (read with a limit of `max + 1`) to at most `max`, at a millisecond
/// boundary, and says where the rest starts: `None` when nothing was left out.
fn page(entries: &mut Vec<HistoryEntry>, max: usize) -> Option<Timestamp> {
    let first_left = entries.get(max)?.at;
    entries.truncate(max);
    let kept = entries
        .iter()
        .rposition(|e| e.at < first_left)
        .map_or(0, |i| i + 1);
    if kept == 0 {
        // More than `max` entries in one millisecond: the rest of it is left out.
        return Some(first_left + chrono::Duration::milliseconds(1));
    }
    entries.truncate(kept);
    Some(first_left)
}

/// The history of one extension over `[from, to)`.
#[utoipa::path(
    get,
    path = "/api/extensions/{id}/history",
    tag = "analytics",
    params(
        ("id" = String, Path, description = "The record id (24 hex characters)"),
        ("from" = String, Query, description = "Start, RFC 3339 (inclusive)"),
        ("to" = String, Query, description = "End, RFC 3339 (exclusive); after from, at most 93 days later"),
    ),
    responses(
        (status = 200, description = "The entries, oldest first; at most 50,000, with `next_from` to ask for the rest", body = HistoryBody),
        (status = 400, description = "A missing or bad from/to; `fields` names it", body = crate::error::ErrorBody),
        (status = 404, description = "No such record", body = crate::error::ErrorBody),
        (status = 401, description = "Token missing or wrong", body = crate::error::ErrorBody),
        (status = 503, description = "Too many history and time-in-state requests at once; retry (Retry-After)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn history(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The query is checked first, whatever the id, so a bad range is a 400 for a malformed id
    // as for a well-formed unknown one (and as a bad body is on the other routes).
    let params = params(&req, &["from", "to"])?;
    let range = range(&params)?;
    let raw = path.into_inner();
    let id = RecordId::parse(&raw).map_err(|_| ApiError::no_such_extension(&raw))?;
    let record = state.record(&id, id.as_str()).await?;
    let _turn = state.analytics.enter().await?;
    // The store's bounds are both inclusive; the window is half-open.
    let last = range.to() - chrono::Duration::milliseconds(1);
    let mut entries = state
        .store
        .history_limited(
            Some(&record.extension),
            range.from(),
            last,
            MAX_HISTORY_ENTRIES + 1,
        )
        .await
        .map_err(|e| state.store_failed(&e))?;
    let next_from = page(&mut entries, MAX_HISTORY_ENTRIES);
    json_off_worker(
        &req,
        HistoryBody {
            extension: record.extension.as_str().to_owned(),
            from: format_rfc3339(&range.from()),
            to: format_rfc3339(&range.to()),
            entries,
            next_from: next_from.as_ref().map(format_rfc3339),
        },
    )
    .await
}

/// Time in each state over `[from, to)`, per extension and per department.
#[utoipa::path(
    get,
    path = "/api/analytics/time-in-state",
    tag = "analytics",
    params(
        ("from" = String, Query, description = "Start, RFC 3339 (inclusive)"),
        ("to" = String, Query, description = "End, RFC 3339 (exclusive); after from, at most 93 days later; clipped to now"),
        ("department" = Option<String>, Query, description = "Only this department (exact match)"),
    ),
    responses(
        (status = 200, description = "Seconds in each status, device state, paused (by reason), on a call, and the window split into availability parts, per extension that exists now and per department; see docs/analytics.md", body = Object),
        (status = 400, description = "A missing or bad from/to or department; `fields` names it", body = crate::error::ErrorBody),
        (status = 401, description = "Token missing or wrong", body = crate::error::ErrorBody),
        (status = 503, description = "Too many history and time-in-state requests at once; retry (Retry-After)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn time_in_state(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = params(&req, &["from", "to", "department"])?;
    let range = range(&params)?;
    let department = department(&params)?;
    // One of a bounded number at a time: the answer has a part per extension.
    let _turn = state.analytics.enter().await?;
    // Extensions that exist now; a deleted extension's history stays until it is pruned, but
    // it is reported for no one (its department is gone with it).
    let records = state
        .store
        .list(&ExtensionFilter::default())
        .await
        .map_err(|e| state.store_failed(&e))?;
    let extensions = records
        .into_iter()
        .map(|r| (r.extension, r.department))
        .collect();
    let result = state
        .store
        .time_in_state(TimeInStateRequest {
            range,
            now: domain::now(),
            department,
            extensions,
        })
        .await
        .map_err(|e| state.store_failed(&e))?;
    json_off_worker(&req, result).await
}

/// The agent of a department who has been idle the longest.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct IdleAgent {
    /// The extension number.
    pub extension: String,
    /// The agent's name.
    pub agent_name: String,
    /// Idle since (RFC 3339 UTC): the later of the last status change and the end of the last
    /// queue call.
    pub since: String,
}

/// One department right now.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct DepartmentNow {
    /// The department.
    pub department: String,
    /// Extensions in it (active or not).
    pub extensions: usize,
    /// Extensions per status: `online`, `offline`, `unknown`.
    pub status: BTreeMap<String, usize>,
    /// Extensions paused in at least one queue.
    pub paused: usize,
    /// Extensions on a call (ringing or talking).
    pub on_call: usize,
    /// Who has been idle the longest: online, device `NOT_INUSE`, not paused in any queue
    /// and on no call; null when nobody is.
    pub longest_idle: Option<IdleAgent>,
}

/// Idle now: online, device not in use, not paused anywhere, on no call. The time it has been
/// so: the later of the last status change and the end of the last queue call.
fn idle_since(r: &Extension) -> Option<Timestamp> {
    let idle = r.status == Presence::Online
        && r.device_state == DeviceState::NotInUse
        && !r.queues.iter().any(|q| q.paused)
        && r.call.is_none();
    if !idle {
        return None;
    }
    let last_call = r.queues.iter().filter_map(|q| q.last_call).max();
    r.last_status_change.max(last_call).or(r.last_status_change)
}

/// The longest idle agent of a department so far, with the time it has been idle.
type Idle<'a> = Option<(Timestamp, &'a Extension)>;

/// The department summaries of `records`, in department order.
pub fn departments_now(records: &[Extension]) -> Vec<DepartmentNow> {
    let mut out: BTreeMap<&Department, (DepartmentNow, Idle<'_>)> = BTreeMap::new();
    for r in records {
        let (d, idle) = out.entry(&r.department).or_insert_with(|| {
            (
                DepartmentNow {
                    department: r.department.as_str().to_owned(),
                    extensions: 0,
                    status: [Presence::Online, Presence::Offline, Presence::Unknown]
                        .iter()
                        .map(|p| (p.as_str().to_owned(), 0))
                        .collect(),
                    paused: 0,
                    on_call: 0,
                    longest_idle: None,
                },
                None,
            )
        });
        d.extensions += 1;
        *d.status.entry(r.status.as_str().to_owned()).or_default() += 1;
        d.paused += usize::from(r.queues.iter().any(|q| q.paused));
        d.on_call += usize::from(r.call.is_some());
        if let Some(since) = idle_since(r)
            && idle.is_none_or(|(best, _)| since < best)
        {
            *idle = Some((since, r));
        }
    }
    out.into_values()
        .map(|(mut d, idle)| {
            d.longest_idle = idle.map(|(since, r)| IdleAgent {
                extension: r.extension.as_str().to_owned(),
                agent_name: r.agent_name.as_str().to_owned(),
                since: format_rfc3339(&since),
            });
            d
        })
        .collect()
}

/// Every department right now: counts per status, paused, on a call, and the longest idle
/// agent.
#[utoipa::path(
    get,
    path = "/api/departments",
    tag = "analytics",
    responses(
        (status = 200, description = "One summary per department, by name", body = Vec<DepartmentNow>),
        (status = 401, description = "Token missing or wrong", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn departments(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::rest::no_query(req.query_string())?;
    let records = state
        .store
        .list(&ExtensionFilter::default())
        .await
        .map_err(|e| state.store_failed(&e))?;
    Ok(HttpResponse::Ok().json(departments_now(&records)))
}

/// Mounts the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/extensions/{id}/history")
            .route(crate::rest::read().to(history))
            .default_service(crate::error::not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/api/analytics/time-in-state")
            .route(crate::rest::read().to(time_in_state))
            .default_service(crate::error::not_allowed("GET, HEAD")),
    )
    .service(
        web::resource("/api/departments")
            .route(crate::rest::read().to(departments))
            .default_service(crate::error::not_allowed("GET, HEAD")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AgentName, CallInfo, CallState, ExtensionNumber, NewExtension, QueueMembership};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn record(n: &str, dept: &str, code: i32, changed: &str) -> Extension {
        let mut r = Extension::create(
            RecordId::parse(&format!("{:0>24}", n)).expect("id"),
            NewExtension {
                extension: ExtensionNumber::parse(n).expect("ext"),
                agent_name: AgentName::parse(&format!("Agent {n}")).expect("name"),
                department: Department::parse(dept).expect("dept"),
                is_active: true,
            },
            t("2026-12-01T08:00:00Z"),
        );
        let state = domain::ExtensionState::from_code(code);
        r.status_code = code;
        r.device_state = state.device_state();
        r.status = state.presence();
        r.last_status_change = Some(t(changed));
        r
    }

    fn membership(paused: bool, last_call: Option<&str>) -> QueueMembership {
        QueueMembership {
            queue: "sales".into(),
            paused,
            paused_reason: None,
            paused_since: None,
            penalty: 0,
            calls_taken: 0,
            last_call: last_call.map(t),
            in_call: false,
        }
    }

    #[test]
    fn a_history_page_ends_on_a_whole_millisecond() {
        let at = |ms: i64| t("2026-12-01T00:00:00Z") + chrono::Duration::milliseconds(ms);
        let entries = |times: &[i64]| -> Vec<HistoryEntry> {
            times
                .iter()
                .map(|&ms| HistoryEntry::new(at(ms), HistoryEvent::ServerStart))
                .collect()
        };
        let mut all = entries(&[1, 2, 3]);
        assert_eq!(page(&mut all, 3), None);
        assert_eq!(all.len(), 3);
        let mut more = entries(&[1, 2, 3, 4]);
        assert_eq!(page(&mut more, 3), Some(at(4)));
        assert_eq!(more.len(), 3);
        // The third and the first left out share a millisecond: the page ends before it.
        let mut shared = entries(&[1, 2, 2, 2]);
        assert_eq!(page(&mut shared, 3), Some(at(2)));
        assert_eq!(shared.len(), 1);
        let mut one_ms = entries(&[5, 5, 5, 5]);
        assert_eq!(page(&mut one_ms, 3), Some(at(6)));
        assert_eq!(one_ms.len(), 3);
    }

    #[tokio::test]
    async fn the_gate_runs_a_few_queues_a_few_and_refuses_the_rest() {
        let gate = AnalyticsGate::new(1, 1);
        let first = gate.enter().await.expect("runs");
        let mut second = Box::pin(gate.enter());
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut second).await;
        assert!(waited.is_err(), "waits its turn");
        let third = gate.enter().await.err().expect("refused");
        assert!(matches!(third, ApiError::Unavailable(_)), "{third:?}");
        drop(first);
        let second = second.await.expect("its turn came");
        // A refused or finished request gives its place back.
        drop(second);
        let again = gate.enter().await.expect("room again");
        let waiting = gate.enter();
        drop(waiting);
        drop(again);
        assert_eq!(gate.admitted.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn departments_count_and_find_the_longest_idle() {
        let mut paused = record("1003", "Sales", 0, "2026-12-01T08:00:00Z");
        paused.queues = vec![membership(true, None)];
        let mut calling = record("1004", "Sales", 0, "2026-12-01T08:00:00Z");
        calling.call = Some(Box::new(CallInfo {
            state: CallState::Up,
            peer_number: None,
            peer_name: None,
            queue: None,
            since: t("2026-12-01T09:00:00Z"),
        }));
        let mut after_call = record("1005", "Sales", 0, "2026-12-01T08:00:00Z");
        after_call.queues = vec![membership(false, Some("2026-12-01T09:30:00Z"))];
        let records = vec![
            record("1001", "Sales", 0, "2026-12-01T09:00:00Z"),
            record("1002", "Sales", 1, "2026-12-01T07:00:00Z"),
            paused,
            calling,
            after_call,
            record("2001", "Support", 4, "2026-12-01T07:00:00Z"),
            record("2002", "Support", -1, "2026-12-01T07:00:00Z"),
        ];
        let got = departments_now(&records);
        assert_eq!(got.len(), 2);
        let sales = &got[0];
        assert_eq!(sales.department, "Sales");
        assert_eq!(sales.extensions, 5);
        assert_eq!(sales.status["online"], 5);
        assert_eq!(sales.paused, 1);
        assert_eq!(sales.on_call, 1);
        // 1002 is in use, 1003 paused, 1004 on a call; 1005 idled at its call's end (09:30),
        // after 1001 (09:00).
        let idle = sales.longest_idle.as_ref().expect("someone idles");
        assert_eq!(idle.extension, "1001");
        assert_eq!(idle.since, "2026-12-01T09:00:00.000Z");
        let support = &got[1];
        assert_eq!(support.status["offline"], 1);
        assert_eq!(support.status["unknown"], 1);
        assert_eq!(support.longest_idle, None);
    }
}
