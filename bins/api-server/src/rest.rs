//! The REST API on `/api/extensions`: list with filters, get, create, update, delete. Bodies are
//! checked here (media type, size, JSON, members) and by `domain` (field rules); writes go
//! through the [`crate::writer::Writer`], which publishes each change after the store holds it.
//!
//! The call-center routes: `GET /api/queues` reads the pipeline's tracker; pausing and resuming
//! an agent (`POST`/`DELETE /api/extensions/{id}/pause`) are PBX actions (`QueuePause`), allowed
//! only with `--ami-actions`, and answered once the PBX has said `Response: Success` and the
//! pipeline has stored the state the PBX then reports, so the PBX stays the truth.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};

use actix_web::dev::Payload;
use actix_web::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ContentType, VARY};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use domain::{
    Department, ExtensionFilter, ExtensionPatch, NewExtension, PauseReason, Presence, RecordId,
};
use futures_util::StreamExt as _;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorBody};
use crate::openapi::{ExtensionBody, NewExtensionBody, PatchBody, PauseBody};
use crate::state::AppState;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// A request body that is a JSON object: `Content-Type: application/json` (else 415), at most
/// [`MAX_BODY`] bytes (else 413), valid UTF-8 JSON (else 400) and an object (else 400).
pub struct JsonObject(pub Map<String, Value>);

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

async fn read_object(req: HttpRequest, mut payload: Payload) -> Result<JsonObject, ApiError> {
    if !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // The body is read as sent: a compressed one would be refused as "not JSON", and an
    // uncompressed one labelled compressed would be taken as if the label were absent.
    if let Some(encoding) = req.headers().get(actix_web::http::header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes());
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            let shown: String = encoding.chars().take(40).collect();
            return Err(ApiError::UnsupportedEncoding(shown));
        }
    }
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("The request body could not be read: {e}."),
            )
        })?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    let body: domain::JsonObject = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    match body {
        domain::JsonObject::Object { map, duplicates } if duplicates.is_empty() => {
            Ok(JsonObject(map))
        }
        // A member given twice is ambiguous: a proxy or a log may have read the other value.
        domain::JsonObject::Object { duplicates, .. } => Err(ApiError::BadRequest {
            code: "invalid_json",
            message: "The request body gives a member more than once.".to_owned(),
            fields: duplicates
                .into_iter()
                .map(|name| (name, "is given more than once".to_owned()))
                .collect(),
        }),
        domain::JsonObject::Other(_) => Err(ApiError::bad_request(
            "invalid_json",
            "The request body must be a JSON object.",
        )),
    }
}

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        Box::pin(read_object(req.clone(), payload.take()))
    }
}

/// Reads the filters of a list request. Unknown parameters, repeated ones and bad values are
/// refused; an empty value means "no filter" (what an HTML form sends for "any").
pub fn parse_filter(query: &str) -> Result<ExtensionFilter, ApiError> {
    let pairs = query_pairs(query)?;
    let mut filter = ExtensionFilter::default();
    let mut fields = BTreeMap::new();
    let mut seen = Vec::new();
    for (key, value) in pairs {
        if seen.contains(&key) {
            fields.insert(key, "is given more than once".to_owned());
            continue;
        }
        seen.push(key.clone());
        if value.is_empty() && ["department", "status", "is_active"].contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "department" => match Department::parse(&value) {
                Ok(d) => filter.department = Some(d),
                Err(e) => {
                    fields.insert(key, e.rule.to_string());
                }
            },
            "status" => match value.parse::<Presence>() {
                Ok(p) => filter.status = Some(p),
                Err(_) => {
                    fields.insert(key, "must be online, offline or unknown".to_owned());
                }
            },
            "is_active" => match value.as_str() {
                "true" => filter.is_active = Some(true),
                "false" => filter.is_active = Some(false),
                _ => {
                    fields.insert(key, "must be true or false".to_owned());
                }
            },
            _ => {
                fields.insert(key, "is not a known filter".to_owned());
            }
        }
    }
    if fields.is_empty() {
        Ok(filter)
    } else {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        Err(ApiError::BadRequest {
            code: "invalid_filter",
            message: format!("The filter is not valid: {}.", names.join(", ")),
            fields,
        })
    }
}

/// The decoded `name=value` pairs of a query string. Percent-encoded bytes that are not UTF-8
/// are refused, naming the parameter, rather than silently replaced by U+FFFD.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    for part in query.split('&') {
        let mut bytes = Vec::with_capacity(part.len());
        let raw = part.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            match (
                raw[i],
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(hi), Some(lo)) => {
                    bytes.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 3;
                }
                (b, _, _) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        if std::str::from_utf8(&bytes).is_err() {
            let name =
                domain::fields::shown_name(part.split('=').next().unwrap_or(part).to_owned());
            let mut fields = BTreeMap::new();
            fields.insert(
                name.to_owned(),
                "is not valid UTF-8 once percent-decoded".to_owned(),
            );
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "The query parameter {name:?} is not valid UTF-8 once percent-decoded."
                ),
                fields,
            });
        }
    }
    web::Query::<Vec<(String, String)>>::from_query(query)
        .map(|pairs| {
            pairs
                .into_inner()
                .into_iter()
                .map(|(name, value)| (domain::fields::shown_name(name), value))
                .collect()
        })
        .map_err(|_| ApiError::bad_request("invalid_query", "The query string is malformed."))
}

fn parse_id(raw: &str) -> Result<RecordId, ApiError> {
    // An id that cannot exist is simply not found, as for any other unknown id.
    RecordId::parse(raw).map_err(|_| ApiError::no_such_extension(raw))
}

/// Lists extensions, filtered.
#[utoipa::path(
    get,
    path = "/api/extensions",
    tag = "extensions",
    params(
        ("department" = Option<String>, Query, description = "Only this department (exact match)"),
        ("status" = Option<String>, Query, description = "Only this presence: online, offline or unknown"),
        ("is_active" = Option<bool>, Query, description = "Only active (true) or inactive (false) extensions"),
    ),
    responses(
        (status = 200, description = "The matching records, ordered by extension number", body = Vec<ExtensionBody>),
        (status = 400, description = "A bad or unknown filter", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let filter = parse_filter(req.query_string())?;
    if filter != ExtensionFilter::default() {
        let records = state
            .store
            .list(&filter)
            .await
            .map_err(|e| state.store_failed(&e))?;
        return Ok(HttpResponse::Ok().json(records));
    }
    let body = state.list_cache.body(&state).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(ContentType::json())
        .insert_header((VARY, "Accept-Encoding"));
    if accepts_gzip(&req) {
        let gzip = body.gzip().await?;
        response.insert_header((CONTENT_ENCODING, "gzip"));
        Ok(response.body(gzip))
    } else {
        Ok(response.body(body.plain.clone()))
    }
}

/// Whether the request's `Accept-Encoding` lists `gzip` (or `*`) with a non-zero weight.
pub(crate) fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// The unfiltered list body, serialized once per change of the hub's sequence number (and
/// compressed once, when a client first asks for gzip), instead of once per request: with
/// 10,000 extensions it is 3 MB of JSON.
///
/// Every store write is published to the hub after the store has it (see
/// [`crate::writer`]), so a body read from the store after the hub's number was `N` holds at
/// least every change up to `N`; it is served until the number moves.
#[derive(Default)]
pub struct ListCache {
    current: std::sync::Mutex<Option<Arc<ListBody>>>,
    /// One rebuild at a time: requests that miss together wait for one body.
    building: tokio::sync::Mutex<()>,
}

/// One built body.
pub struct ListBody {
    seq: u64,
    plain: Bytes,
    gzip: tokio::sync::OnceCell<Bytes>,
}

impl ListCache {
    fn cached(&self, seq: u64) -> Option<Arc<ListBody>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|b| b.seq == seq).cloned()
    }

    async fn body(&self, state: &AppState) -> Result<Arc<ListBody>, ApiError> {
        let seq = state.hub.last_seq();
        if let Some(body) = self.cached(seq) {
            return Ok(body);
        }
        let _one = self.building.lock().await;
        // The number is read before the records, so a change made meanwhile can only make the
        // body newer than its number says, never older.
        let seq = state.hub.last_seq();
        if let Some(body) = self.cached(seq) {
            return Ok(body);
        }
        let records = state
            .store
            .list(&ExtensionFilter::default())
            .await
            .map_err(|e| state.store_failed(&e))?;
        let plain = web::block(move || serde_json::to_vec(&records))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
        let body = Arc::new(ListBody {
            seq,
            plain: Bytes::from(plain),
            gzip: tokio::sync::OnceCell::new(),
        });
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(body.clone());
        Ok(body)
    }
}

impl ListBody {
    /// The body gzip-compressed, once (concurrent first askers wait for the one compression).
    async fn gzip(&self) -> Result<Bytes, ApiError> {
        let plain = self.plain.clone();
        self.gzip
            .get_or_try_init(|| async move {
                web::block(move || gzip(&plain))
                    .await
                    .map_err(|e| ApiError::internal(&e))?
                    .map_err(|e| ApiError::internal(&e))
            })
            .await
            .cloned()
    }
}

/// Compresses with a fast level: the body is compressed once per change and served many
/// times, and list bodies (repetitive JSON) shrink about tenfold even so.
pub(crate) fn gzip(plain: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(plain)?;
    Ok(Bytes::from(encoder.finish()?))
}

/// Gets one extension.
#[utoipa::path(
    get,
    path = "/api/extensions/{id}",
    tag = "extensions",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    responses(
        (status = 200, description = "The record", body = ExtensionBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = state.record(&id, id.as_str()).await?;
    Ok(HttpResponse::Ok().json(record))
}

/// Creates an extension.
#[utoipa::path(
    post,
    path = "/api/extensions",
    tag = "extensions",
    request_body(content = NewExtensionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ExtensionBody),
        (status = 400, description = "Invalid body; `fields` names each field at fault", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 409, description = "The extension number is taken", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn create(
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let new = NewExtension::from_json(&body.0).map_err(|e| ApiError::invalid_fields(&e))?;
    let record = state.writer.create(new).await?;
    // The PBX only reports changes; ask for the list so the new record gets its live state.
    state.created.notify_one();
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/extensions/{}", record.id),
        ))
        .json(record))
}

/// Edits an extension's agent name, department or active flag.
#[utoipa::path(
    put,
    path = "/api/extensions/{id}",
    tag = "extensions",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    request_body(content = PatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The record after the edit", body = ExtensionBody),
        (status = 400, description = "Invalid body, or status fields or `extension` present", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn update(
    path: web::Path<String>,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let patch = ExtensionPatch::from_json(&body.0).map_err(|e| ApiError::invalid_fields(&e))?;
    let id = parse_id(&path)?;
    let record = state.writer.update(id, patch).await?;
    Ok(HttpResponse::Ok().json(record))
}

/// Deletes an extension.
#[utoipa::path(
    delete,
    path = "/api/extensions/{id}",
    tag = "extensions",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn delete(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    state.writer.delete(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One queue as `GET /api/queues` lists it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Queue)]
pub struct QueueBody {
    /// The queue's name.
    #[schema(example = "sales")]
    pub queue: String,
    /// Callers waiting now.
    pub calls_waiting: u32,
    /// How long the longest-waiting caller has waited, in seconds (0 when none waits).
    pub longest_wait_s: u64,
    /// Completed calls, as the PBX counts them.
    pub completed: u64,
    /// Abandoned calls, as the PBX counts them.
    pub abandoned: u64,
    /// The service level the PBX computed, in percent; null when the queue has none.
    pub service_level_pct: Option<f64>,
    /// Members that belong to a known extension, in extension order.
    pub members: Vec<QueueMemberBody>,
}

/// One member of a queue.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = QueueMember)]
pub struct QueueMemberBody {
    /// The member's extension number.
    #[schema(example = "1001")]
    pub extension: String,
    /// Paused in this queue.
    pub paused: bool,
    /// The pause reason the PBX reports, or null.
    pub paused_reason: Option<String>,
    /// Since when paused (RFC 3339 UTC, as the record's `queues[].paused_since`), or null.
    pub paused_since: Option<String>,
    /// On a call from this queue now.
    pub in_call: bool,
}

/// Lists the queues the PBX reports, with callers waiting, counters and members.
#[utoipa::path(
    get,
    path = "/api/queues",
    tag = "call-center",
    responses(
        (status = 200, description = "Every queue, in name order", body = Vec<QueueBody>),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn queues(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    no_query(req.query_string())?;
    // Cluster mode: only the lease holder's tracker is fed; the others answer with what it
    // shared last.
    if let Some(cluster) = &state.cluster
        && !cluster.status.is_holder()
    {
        let shared = cluster
            .store
            .get_shared(crate::cluster::remote::QUEUES_KEY)
            .await
            .map_err(|e| state.store_failed(&e))?;
        let body = shared.map_or_else(|| "[]".to_owned(), |(json, _)| json);
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(body));
    }
    Ok(HttpResponse::Ok().json(queue_bodies(&state.callcenter)))
}

/// The queues as `GET /api/queues` answers them, from this instance's tracker.
pub(crate) fn queue_bodies(callcenter: &crate::callcenter::CallCenter) -> Vec<QueueBody> {
    callcenter
        .queue_stats(domain::now())
        .into_iter()
        .map(|q| QueueBody {
            queue: q.queue,
            calls_waiting: q.calls_waiting,
            longest_wait_s: q.longest_wait_s,
            completed: q.completed,
            abandoned: q.abandoned,
            service_level_pct: q.service_level_pct,
            members: q
                .members
                .into_iter()
                .map(|m| QueueMemberBody {
                    extension: m.extension.to_string(),
                    paused: m.paused,
                    paused_reason: m.paused_reason,
                    paused_since: m.paused_since.as_ref().map(domain::format_rfc3339),
                    in_call: m.in_call,
                })
                .collect(),
        })
        .collect()
}

/// A queue name a user gives: not empty, no control characters, at most 128 characters.
fn parse_queue(field: &str, value: &str) -> Result<String, ApiError> {
    let bad = |why: &str| {
        let mut fields = BTreeMap::new();
        fields.insert(field.to_owned(), why.to_owned());
        ApiError::BadRequest {
            code: "validation_failed",
            message: format!("The request is not valid: {field} {why}."),
            fields,
        }
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(bad("must not be empty"));
    }
    if trimmed.chars().count() > 128 {
        return Err(bad("must be at most 128 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Reads `{"reason": string, "queue"?: string}`; any other member is refused by name.
fn pause_body(body: &Map<String, Value>) -> Result<(PauseReason, Option<String>), ApiError> {
    let mut fields = BTreeMap::new();
    for key in body.keys() {
        if key != "reason" && key != "queue" {
            fields.insert(
                domain::fields::shown_name(key.clone()),
                "is not a member of a pause request".to_owned(),
            );
        }
    }
    let reason = match body.get("reason") {
        Some(Value::String(r)) => match PauseReason::parse(r) {
            Ok(r) => Some(r),
            Err(e) => {
                fields.insert(PauseReason::FIELD.to_owned(), e.rule.to_string());
                None
            }
        },
        Some(_) => {
            fields.insert("reason".to_owned(), "must be a string".to_owned());
            None
        }
        None => {
            fields.insert("reason".to_owned(), "is required".to_owned());
            None
        }
    };
    let queue = match body.get("queue") {
        None | Some(Value::Null) => None,
        Some(Value::String(q)) => match parse_queue("queue", q) {
            Ok(q) => Some(q),
            Err(ApiError::BadRequest { fields: f, .. }) => {
                fields.extend(f);
                None
            }
            Err(e) => return Err(e),
        },
        Some(_) => {
            fields.insert("queue".to_owned(), "must be a string".to_owned());
            None
        }
    };
    match reason {
        Some(reason) if fields.is_empty() => Ok((reason, queue)),
        _ => {
            // Each problem in full, as every other validation message says it; past a few
            // (a body of thousands of unknown members), the rest are only in `fields`.
            use domain::edit::SAID;
            let mut problems: Vec<String> = fields
                .iter()
                .take(SAID)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if fields.len() > SAID {
                problems.push(format!("and {} more (see fields)", fields.len() - SAID));
            }
            Err(ApiError::BadRequest {
                code: "validation_failed",
                message: format!("The pause request is not valid: {}.", problems.join("; ")),
                fields,
            })
        }
    }
}

/// A pause takes its reason and queue in the body. A query parameter is refused, not ignored:
/// `?queue=sales`, as the unpause takes it, would otherwise pause the agent in every queue.
fn pause_query(query: &str) -> Result<(), ApiError> {
    match query_pairs(query)?.into_iter().next() {
        None => Ok(()),
        Some((key, _)) => {
            let mut fields = BTreeMap::new();
            fields.insert(
                key.clone(),
                "is not a query parameter of a pause; give reason and queue in the JSON body"
                    .to_owned(),
            );
            Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "The query parameter {key:?} is not known: a pause takes its reason and \
                     queue in the JSON body, e.g. {{\"reason\": \"Lunch\", \"queue\": \"sales\"}}."
                ),
                fields,
            })
        }
    }
}

/// Reads the optional `?queue=` of an unpause; any other parameter is refused by name.
fn resume_query(query: &str) -> Result<Option<String>, ApiError> {
    let pairs = query_pairs(query)?;
    let mut queue = None;
    for (key, value) in pairs {
        match key.as_str() {
            "queue" if queue.is_none() => queue = Some(parse_queue("queue", &value)?),
            "queue" => {
                let mut fields = BTreeMap::new();
                fields.insert(key, "is given more than once".to_owned());
                return Err(ApiError::BadRequest {
                    code: "invalid_query",
                    message: "The query string gives queue more than once.".to_owned(),
                    fields,
                });
            }
            _ => {
                let mut fields = BTreeMap::new();
                fields.insert(key.clone(), "is not a known parameter".to_owned());
                return Err(ApiError::BadRequest {
                    code: "invalid_query",
                    message: format!("The query parameter {key:?} is not known."),
                    fields,
                });
            }
        }
    }
    Ok(queue)
}

/// Pauses an agent in one queue, or in all its queues.
#[utoipa::path(
    post,
    path = "/api/extensions/{id}/pause",
    tag = "call-center",
    params(("id" = String, Path, description = "The record id (24 hex characters)")),
    request_body(content = PauseBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The record once the PBX reports the agent paused", body = ExtensionBody),
        (status = 400, description = "Invalid body; `fields` names each field at fault", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 409, description = "The agent is in no queue (or not in `queue`)", body = ErrorBody),
        (status = 503, description = "PBX actions are off (--ami-actions), the PBX refused (its message is given) or did not confirm in time", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn pause(
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    pause_query(req.query_string())?;
    let (reason, queue) = pause_body(&body.0)?;
    set_paused(&state, &path, Some(reason), queue).await
}

/// Resumes (unpauses) an agent in one queue, or in all its queues.
#[utoipa::path(
    delete,
    path = "/api/extensions/{id}/pause",
    tag = "call-center",
    params(
        ("id" = String, Path, description = "The record id (24 hex characters)"),
        ("queue" = Option<String>, Query, description = "Only this queue; by default every queue of the agent"),
    ),
    responses(
        (status = 200, description = "The record once the PBX reports the agent unpaused", body = ExtensionBody),
        (status = 400, description = "A bad or unknown query parameter", body = ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 409, description = "The agent is in no queue (or not in `queue`)", body = ErrorBody),
        (status = 503, description = "PBX actions are off (--ami-actions), the PBX refused (its message is given) or did not confirm in time", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn resume(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = resume_query(req.query_string())?;
    set_paused(&state, &path, None, queue).await
}

/// Whether `record` shows the agent as asked in every queue of `queues`: paused with `reason`
/// (a pause that only changes the reason of one already paused is confirmed by the new
/// reason), or not paused.
fn confirmed(record: &domain::Extension, queues: &[String], reason: Option<&str>) -> bool {
    queues.iter().all(|q| {
        record.queues.iter().any(|m| {
            &m.queue == q
                && match reason {
                    None => !m.paused,
                    Some(asked) => {
                        m.paused
                            && m.paused_reason
                                .as_deref()
                                .is_some_and(|r| same_reason(r, asked))
                    }
                }
        })
    })
}

/// The longest pause reason Asterisk keeps, in bytes (`reason_paused[80]` in `app_queue.c`,
/// with its NUL); a longer one (a 64-character reason of accented letters) comes back cut.
const PBX_REASON_BYTES: usize = 79;

/// Whether the PBX's `reported` reason is the `asked` one: the same text, or, for one longer
/// than the PBX keeps, its start (cut on a byte, so a last character the cut split reads as
/// U+FFFD).
fn same_reason(reported: &str, asked: &str) -> bool {
    if reported == asked {
        return true;
    }
    let kept = reported.trim_end_matches(char::REPLACEMENT_CHARACTER);
    asked.len() > PBX_REASON_BYTES && kept.len() + 3 >= PBX_REASON_BYTES && asked.starts_with(kept)
}

/// Pauses or resumes here, or (cluster mode, on an instance that does not hold the AMI lease)
/// has the holder do it and answers what it answered.
async fn set_paused(
    state: &AppState,
    raw_id: &str,
    reason: Option<PauseReason>,
    queue: Option<String>,
) -> Result<HttpResponse, ApiError> {
    if let Some(cluster) = &state.cluster
        && !cluster.status.is_holder()
        && state.ami_actions.allowed()
    {
        let id = parse_id(raw_id)?;
        state.record(&id, raw_id).await?;
        return crate::cluster::remote::forward_pause(
            cluster,
            raw_id,
            reason.as_ref(),
            queue,
            state.action_timeout,
        )
        .await;
    }
    set_paused_here(state, raw_id, reason, queue).await
}

/// Sends `QueuePause` for the agent (pause with `reason`, resume without), then waits until the
/// store holds the state the PBX reports.
pub(crate) async fn set_paused_here(
    state: &AppState,
    raw_id: &str,
    reason: Option<PauseReason>,
    queue: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let paused = reason.is_some();
    let id = parse_id(raw_id)?;
    // The request is checked whole (id, body, record) before the PBX is asked, so a bad one is
    // a 4xx whether or not actions are on.
    let record = state.record(&id, raw_id).await?;
    let Some(client) = state.ami_actions.get() else {
        return Err(ApiError::Unavailable(
            "PBX actions are off: the server must run with --ami-actions and a PBX to send \
             them to (--ami-user, a manager user with write = agent) to pause and resume agents."
                .to_owned(),
        ));
    };
    let mut members = state.callcenter.memberships(&record.extension);
    if let Some(q) = &queue {
        members.retain(|(mq, _)| mq == q);
    }
    if members.is_empty() {
        let mut fields = BTreeMap::new();
        let message = match &queue {
            Some(q) => {
                fields.insert(
                    "queue".to_owned(),
                    "the agent is not a member of it".to_owned(),
                );
                format!(
                    "Extension {} is not a member of queue {q:?}.",
                    record.extension
                )
            }
            None => format!("Extension {} is in no queue.", record.extension),
        };
        return Err(ApiError::Conflict { message, fields });
    }
    let queues: Vec<String> = members.iter().map(|(q, _)| q.clone()).collect();
    let mut interfaces: Vec<&str> = members.iter().map(|(_, i)| i.as_str()).collect();
    interfaces.sort_unstable();
    interfaces.dedup();
    // Subscribed before the actions, so no confirming write can slip by unseen.
    let mut written = state.callcenter.subscribe();
    for interface in interfaces {
        // Without `Queue`, Asterisk pauses the interface in every queue it is a member of.
        let mut action = ami_proto::Action::new("QueuePause")
            .header("Interface", interface)
            .header("Paused", if paused { "true" } else { "false" });
        if let Some(q) = &queue {
            action.push_header("Queue", q.as_str());
        }
        if let Some(r) = &reason {
            action.push_header("Reason", r.as_str());
        }
        let answer = client.send(action).await.map_err(|e| {
            state.metrics.ami_error();
            ApiError::Unavailable(format!("The PBX did not take the request: {e}."))
        })?;
        let response = ami_proto::views::Response::from_packet(&answer);
        if !response.is_some_and(|r| r.is_success()) {
            let message = response
                .and_then(|r| r.message())
                .map_or_else(|| "no message".to_owned(), |m| m.into_owned());
            tracing::warn!(extension = %record.extension, interface, %message, "the PBX refused QueuePause");
            return Err(ApiError::Unavailable(format!(
                "The PBX refused the request: {message}"
            )));
        }
    }
    let deadline = tokio::time::Instant::now() + state.action_timeout;
    loop {
        written.borrow_and_update();
        let now = state.record(&id, raw_id).await?;
        if confirmed(&now, &queues, reason.as_ref().map(PauseReason::as_str)) {
            return Ok(HttpResponse::Ok().json(now));
        }
        match tokio::time::timeout_at(deadline, written.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                // Another pause of the agent for another reason, sent at the same moment and
                // applied after this one, leaves it paused as asked but with the newer reason
                // (the two may even have been stored as one change): that is the PBX's truth.
                let paused_anyhow = queues
                    .iter()
                    .all(|q| now.queues.iter().any(|m| &m.queue == q && m.paused));
                if paused && paused_anyhow {
                    return Ok(HttpResponse::Ok().json(now));
                }
                return Err(ApiError::Unavailable(format!(
                    "The PBX accepted the request but did not report the agent {} within {} s.",
                    if paused { "paused" } else { "unpaused" },
                    state.action_timeout.as_secs()
                )));
            }
        }
    }
}

/// Mounts the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::error::not_allowed;
    cfg.service(
        web::resource("/api/extensions")
            .route(read().to(list))
            .route(web::post().to(create))
            .default_service(not_allowed("GET, HEAD, POST")),
    )
    .service(
        web::resource("/api/extensions/{id}")
            .route(read().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete))
            .default_service(not_allowed("GET, HEAD, PUT, DELETE")),
    )
    .service(
        web::resource("/api/extensions/{id}/pause")
            .route(web::post().to(pause))
            .route(web::delete().to(resume))
            .default_service(not_allowed("POST, DELETE")),
    )
    .service(
        web::resource("/api/queues")
            .route(read().to(queues))
            .default_service(not_allowed("GET, HEAD")),
    );
}

/// The route of a read: GET, and HEAD (the same answer without its body, which actix leaves
/// out), so a monitor or a proxy that probes with HEAD gets what GET would.
pub(crate) fn read() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Refuses any query parameter: the endpoint takes none.
pub(crate) fn no_query(query: &str) -> Result<(), ApiError> {
    match query_pairs(query)?.into_iter().next() {
        None => Ok(()),
        Some((key, _)) => {
            let mut fields = BTreeMap::new();
            fields.insert(key.clone(), "is not a known parameter".to_owned());
            Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!("The query parameter {key:?} is not known."),
                fields,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_parameter_name_is_shown_by_its_start() {
        let long = "é".repeat(10_000);
        let Err(ApiError::BadRequest {
            message, fields, ..
        }) = no_query(&format!("{long}=1"))
        else {
            panic!("refused");
        };
        let shown = format!("{}…", "é".repeat(domain::fields::SHOWN_NAME));
        assert!(fields.contains_key(&shown), "{fields:?}");
        assert!(message.chars().count() < 200, "{message}");
        let Err(ApiError::BadRequest { fields, .. }) =
            no_query(&format!("{}%FF=1", "a".repeat(500)))
        else {
            panic!("refused");
        };
        assert!(fields.keys().all(|k| k.len() < 100), "{fields:?}");
        assert_eq!(
            query_pairs("queue=sales").ok(),
            Some(vec![("queue".to_owned(), "sales".to_owned())])
        );
    }

    #[test]
    fn a_refused_pause_says_what_is_wrong_with_each_member() {
        let body = serde_json::json!({"reason": "x".repeat(65), "queue": "", "extra": 1});
        let Some(body) = body.as_object() else {
            panic!("an object");
        };
        let Err(ApiError::BadRequest {
            code,
            message,
            fields,
        }) = pause_body(body)
        else {
            panic!("refused");
        };
        assert_eq!(code, "validation_failed");
        assert_eq!(
            message,
            "The pause request is not valid: extra is not a member of a pause request; queue \
             must not be empty; reason must be at most 64 characters, got 65."
        );
        assert_eq!(fields.len(), 3, "{fields:?}");
    }

    #[test]
    fn a_pause_with_thousands_of_unknown_members_says_a_few_and_counts_the_rest() {
        let mut body = Map::new();
        body.insert("reason".into(), Value::from("Lunch"));
        for i in 0..10_000 {
            body.insert(format!("k{i:05}"), Value::from(1));
        }
        let Err(ApiError::BadRequest {
            message, fields, ..
        }) = pause_body(&body)
        else {
            panic!("refused");
        };
        assert_eq!(fields.len(), 10_000);
        assert!(message.len() < 500, "{message}");
        assert!(
            message.ends_with("; and 9992 more (see fields)."),
            "{message}"
        );
    }

    #[test]
    fn a_pause_is_confirmed_by_its_reason_or_the_start_asterisk_keeps() {
        assert!(same_reason("Lunch", "Lunch"));
        assert!(!same_reason("Lunch", "Break"));
        assert!(
            !same_reason("Lunch", "Lunch break"),
            "a short reason is kept whole"
        );
        // 64 two-byte letters are 128 bytes; Asterisk keeps 79, splitting the 40th letter.
        let long = "é".repeat(64);
        let cut = String::from_utf8_lossy(&long.as_bytes()[..79]).into_owned();
        assert!(cut.ends_with(char::REPLACEMENT_CHARACTER), "{cut}");
        assert!(same_reason(&cut, &long));
        assert!(same_reason(&long[..78], &long));
        assert!(!same_reason(&long[..40], &long), "too short to be the cut");
        assert!(!same_reason(&"è".repeat(39), &long));
    }

    #[test]
    fn gzip_is_accepted_only_when_asked_for() {
        let accepts = |values: &[&str]| {
            let mut req = actix_web::test::TestRequest::default();
            for v in values {
                req = req.append_header((ACCEPT_ENCODING, *v));
            }
            accepts_gzip(&req.to_http_request())
        };
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["gzip, deflate, br"]));
        assert!(accepts(&["br", "GZIP;q=0.5"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["deflate, br"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["x-gzip2"]));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let plain = br#"[{"extension":"1001"},{"extension":"1002"}]"#.repeat(100);
        let zipped = gzip(&plain).expect("gzip");
        assert!(zipped.len() < plain.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, plain);
    }

    #[test]
    fn filters() {
        let ok = |q: &str| parse_filter(q).expect(q);
        assert_eq!(ok(""), ExtensionFilter::default());
        assert_eq!(
            ok("status=&department=&is_active="),
            ExtensionFilter::default()
        );
        let f = ok("department=Sales&status=offline&is_active=false");
        assert_eq!(f.department.as_ref().map(Department::as_str), Some("Sales"));
        assert_eq!(f.status, Some(Presence::Offline));
        assert_eq!(f.is_active, Some(false));

        let rows = [
            (
                "status=bogus",
                "status",
                "must be online, offline or unknown",
            ),
            ("is_active=maybe", "is_active", "must be true or false"),
            ("colour=red", "colour", "is not a known filter"),
            (
                "status=online&status=offline",
                "status",
                "is given more than once",
            ),
            (
                "department=%07",
                "department",
                "must not contain control characters",
            ),
        ];
        for (q, field, problem) in rows {
            match parse_filter(q) {
                Err(ApiError::BadRequest { code, fields, .. }) => {
                    assert_eq!(code, "invalid_filter", "{q}");
                    assert_eq!(fields.get(field).map(String::as_str), Some(problem), "{q}");
                }
                other => panic!("{q}: {:?}", other.map(|_| ())),
            }
        }
        // Percent-encoded bytes that are not UTF-8 are refused, not replaced.
        match parse_filter("department=%FF%FE") {
            Err(ApiError::BadRequest { code, fields, .. }) => {
                assert_eq!(code, "invalid_query");
                assert!(fields.contains_key("department"), "{fields:?}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(parse_filter("department=Caf%C3%A9").is_ok());
        assert!(
            parse_filter("department=%E2%80%AESales").is_err(),
            "a bidi override"
        );
    }
}
