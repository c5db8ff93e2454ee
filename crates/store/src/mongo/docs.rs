//! Every filter, update and command document the MongoDB backend sends, built by pure
//! functions so that tests can check them exactly without a server.
//!
//! User text only ever becomes a BSON *string value* under a key this module names; nothing a
//! user typed is parsed as a document or used as a key, and only classic update operators are
//! used (never aggregation-pipeline updates, where a string starting with `$` would be read as a
//! field path). So `{"$ne": ""}` as an agent name is stored as exactly that text.

use std::collections::BTreeMap;
use std::str::FromStr;

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Document, doc};
use domain::callcenter::CallCenterView;
use domain::{
    AgentName, AgentPresence, CallInfo, CallState, Department, DeviceState, Extension,
    ExtensionFilter, ExtensionNumber, ExtensionPatch, ExtensionState, HistoryEntry, HistoryEvent,
    Observation, Presence, QueueMembership, RecordId, Source, Timestamp,
};

use crate::error::StoreError;

/// The records collection.
pub const EXTENSIONS: &str = "extensions";
/// The status history collection.
pub const HISTORY: &str = "extension_status_history";
/// The most update statements sent in one `update` command.
pub const MAX_STATEMENTS: usize = 10_000;

/// A time as BSON stores it (milliseconds, UTC).
pub fn date(at: Timestamp) -> Bson {
    Bson::DateTime(DateTime::from_chrono(at))
}

fn optional_date(at: Option<Timestamp>) -> Bson {
    at.map_or(Bson::Null, date)
}

/// The ObjectId a record id spells.
pub fn object_id(id: &RecordId) -> ObjectId {
    ObjectId::from_bytes(id.to_bytes())
}

/// The whole record, as inserted, with the field names of the public interface.
pub fn record(r: &Extension) -> Document {
    doc! {
        "_id": object_id(&r.id),
        "extension": r.extension.as_str(),
        "agent_name": r.agent_name.as_str(),
        "department": r.department.as_str(),
        "status_code": r.status_code,
        "device_state": r.device_state.as_str(),
        "status": r.status.as_str(),
        "last_status_change": optional_date(r.last_status_change),
        "last_seen": optional_date(r.last_seen),
        "queues": queues(&r.queues),
        "presence": presence(r.presence.as_deref()),
        "call": call(r.call.as_deref()),
        "is_active": r.is_active,
        "createdAt": date(r.created_at),
        "updatedAt": date(r.updated_at),
    }
}

fn optional_text(s: Option<&str>) -> Bson {
    s.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

/// The `queues` array of a record: one document per membership, PBX text as string values.
pub fn queues(q: &[QueueMembership]) -> Bson {
    Bson::Array(
        q.iter()
            .map(|m| {
                Bson::Document(doc! {
                    "queue": m.queue.as_str(),
                    "paused": m.paused,
                    "paused_reason": optional_text(m.paused_reason.as_deref()),
                    "paused_since": optional_date(m.paused_since),
                    "penalty": m.penalty,
                    "calls_taken": i64::from(m.calls_taken),
                    "last_call": optional_date(m.last_call),
                    "in_call": m.in_call,
                })
            })
            .collect(),
    )
}

/// The `presence` member of a record: a document, or null.
pub fn presence(p: Option<&AgentPresence>) -> Bson {
    p.map_or(Bson::Null, |p| {
        Bson::Document(doc! {
            "state": p.state.as_str(),
            "subtype": optional_text(p.subtype.as_deref()),
            "message": optional_text(p.message.as_deref()),
        })
    })
}

/// The `call` member of a record: a document, or null.
pub fn call(c: Option<&CallInfo>) -> Bson {
    c.map_or(Bson::Null, |c| {
        let state = match c.state {
            CallState::Ringing => "ringing",
            CallState::Up => "up",
        };
        Bson::Document(doc! {
            "state": state,
            "peer_number": optional_text(c.peer_number.as_deref()),
            "peer_name": optional_text(c.peer_name.as_deref()),
            "queue": optional_text(c.queue.as_deref()),
            "since": date(c.since),
        })
    })
}

/// Matches the extension only while one of its call-center fields differs from `view`, so
/// that a view already stored writes nothing. A document written before the fields existed
/// reads as `[]`, null, null, and matches only when `view` differs from that.
pub fn call_center_filter(ext: &ExtensionNumber, view: &CallCenterView) -> Document {
    let queues_differ = if view.queues.is_empty() {
        doc! { "queues.0": { "$exists": true } }
    } else {
        doc! { "queues": { "$ne": queues(&view.queues) } }
    };
    doc! {
        "extension": ext.as_str(),
        "$or": [
            queues_differ,
            { "presence": { "$ne": presence(view.presence.as_ref()) } },
            { "call": { "$ne": call(view.call.as_ref()) } },
        ],
    }
}

/// Sets the three call-center fields in one `$set`.
pub fn call_center_update(view: &CallCenterView) -> Document {
    doc! {
        "$set": {
            "queues": queues(&view.queues),
            "presence": presence(view.presence.as_ref()),
            "call": call(view.call.as_ref()),
        }
    }
}

/// Matches one record by id.
pub fn by_id(id: &RecordId) -> Document {
    doc! { "_id": object_id(id) }
}

/// Matches one record by extension number.
pub fn by_extension(ext: &ExtensionNumber) -> Document {
    doc! { "extension": ext.as_str() }
}

/// The list filter: every given condition is an equality on a string or bool value.
pub fn list_filter(f: &ExtensionFilter) -> Document {
    let mut d = Document::new();
    if let Some(dept) = &f.department {
        d.insert("department", dept.as_str());
    }
    if let Some(status) = f.status {
        d.insert("status", status.as_str());
    }
    if let Some(active) = f.is_active {
        d.insert("is_active", active);
    }
    d
}

/// Matches the record only while the patch would change something, so that an edit that
/// changes nothing writes nothing and leaves `updatedAt` alone.
pub fn patch_filter(id: &RecordId, patch: &ExtensionPatch) -> Document {
    let mut differs = Vec::new();
    if let Some(name) = &patch.agent_name {
        differs.push(Bson::Document(
            doc! { "agent_name": { "$ne": name.as_str() } },
        ));
    }
    if let Some(dept) = &patch.department {
        differs.push(Bson::Document(
            doc! { "department": { "$ne": dept.as_str() } },
        ));
    }
    if let Some(active) = patch.is_active {
        differs.push(Bson::Document(doc! { "is_active": { "$ne": active } }));
    }
    doc! { "_id": object_id(id), "$or": differs }
}

/// Sets the patched user fields and `updatedAt`.
pub fn patch_update(patch: &ExtensionPatch, at: Timestamp) -> Document {
    let mut set = Document::new();
    if let Some(name) = &patch.agent_name {
        set.insert("agent_name", name.as_str());
    }
    if let Some(dept) = &patch.department {
        set.insert("department", dept.as_str());
    }
    if let Some(active) = patch.is_active {
        set.insert("is_active", active);
    }
    set.insert("updatedAt", date(at));
    doc! { "$set": set }
}

/// Matches the extension only while its stored code differs from the observed one and nothing
/// newer is stored: the one conditional update of a status change. Two writers cannot both
/// apply the same change, and an old observation cannot overwrite a newer one.
pub fn status_filter(ext: &ExtensionNumber, obs: &Observation) -> Document {
    let at = date(domain::record::truncate(obs.at));
    doc! {
        "extension": ext.as_str(),
        "status_code": { "$ne": obs.code },
        "last_seen": { "$not": { "$gt": at.clone() } },
        "last_status_change": { "$not": { "$gt": at } },
    }
}

/// Sets the status fields (and, for a reported observation, `last_seen`) of a status change.
pub fn status_update(obs: &Observation) -> Document {
    let at = date(domain::record::truncate(obs.at));
    let state = ExtensionState::from_code(obs.code);
    let mut set = doc! {
        "status_code": obs.code,
        "device_state": state.device_state().as_str(),
        "status": state.presence().as_str(),
        "last_status_change": at.clone(),
    };
    if obs.source == Source::Reported {
        set.insert("last_seen", at);
    }
    doc! { "$set": set }
}

/// One history entry. A status change keeps the shape the status-only history had
/// (`extension`, `previous_code`, `new_code`, `at`) plus `kind`, so both read alike; the
/// other kinds carry the members of their JSON form (see `domain::history`). `at` is a BSON
/// date, which the TTL index expires.
pub fn history_entry(e: &HistoryEntry) -> Result<Document, StoreError> {
    let mut d = doc! { "kind": e.event.kind(), "at": date(e.at) };
    let text = |v: &Option<String>| v.as_deref().map_or(Bson::Null, |s| Bson::String(s.into()));
    match &e.event {
        HistoryEvent::Status {
            extension,
            previous_code,
            code,
        } => {
            d.insert("extension", extension.as_str());
            d.insert("previous_code", *previous_code);
            d.insert("new_code", *code);
        }
        HistoryEvent::Pause {
            extension,
            queue,
            paused,
            reason,
        } => {
            d.insert("extension", extension.as_str());
            d.insert("queue", queue.as_str());
            d.insert("paused", *paused);
            d.insert("reason", text(reason));
        }
        HistoryEvent::Presence {
            extension,
            state,
            subtype,
            message,
        } => {
            d.insert("extension", extension.as_str());
            d.insert("state", state.as_str());
            d.insert("subtype", text(subtype));
            d.insert("message", text(message));
        }
        HistoryEvent::Call {
            extension,
            on_call,
            queue,
        } => {
            d.insert("extension", extension.as_str());
            d.insert("on_call", *on_call);
            d.insert("queue", text(queue));
        }
        HistoryEvent::PbxLinkDown
        | HistoryEvent::PbxLinkUp
        | HistoryEvent::ServerStart
        | HistoryEvent::ServerStop => {}
        other => {
            return Err(StoreError::internal(format!(
                "history kind {} has no MongoDB mapping",
                other.kind()
            )));
        }
    }
    Ok(d)
}

/// Entries before `before`, for pruning and for the state at a window's start.
pub fn history_before(before: Timestamp) -> Document {
    doc! { "at": { "$lt": date(before) } }
}

/// The state at `from`: the last entry before it per kind, extension and queue (a pause's
/// queue; null for the other kinds and for markers, whose extension is null too).
pub fn history_prior_pipeline(from: Timestamp) -> Vec<Document> {
    vec![
        doc! { "$match": history_before(from) },
        doc! { "$sort": { "at": -1, "_id": -1 } },
        doc! { "$group": {
            "_id": {
                "kind": { "$ifNull": ["$kind", "status"] },
                "extension": { "$ifNull": ["$extension", null] },
                "queue": { "$cond": [{ "$eq": ["$kind", "pause"] }, "$queue", null] },
            },
            "entry": { "$first": "$$ROOT" },
        } },
        doc! { "$replaceRoot": { "newRoot": "$entry" } },
        doc! { "$sort": { "at": 1, "_id": 1 } },
    ]
}

/// The history from `from` to `to`, both inclusive, of one extension (with the markers) or of
/// all.
pub fn history_filter(ext: Option<&ExtensionNumber>, from: Timestamp, to: Timestamp) -> Document {
    let mut d = Document::new();
    if let Some(ext) = ext {
        // The extension's own entries and the markers, which have no extension.
        d.insert(
            "$or",
            vec![
                Bson::Document(doc! { "extension": ext.as_str() }),
                Bson::Document(doc! { "extension": { "$exists": false } }),
            ],
        );
    }
    d.insert("at", doc! { "$gte": date(from), "$lte": date(to) });
    d
}

/// History order: by time, then in the order written (ObjectIds from one process rise).
pub fn history_sort() -> Document {
    doc! { "at": 1, "_id": 1 }
}

/// The `update` commands that write one `last_seen` batch: one statement per distinct time,
/// each raising `last_seen` (never lowering it, as `$max` does) of every extension seen then.
/// One command is one multi-document write; only a batch with more than
/// [`MAX_STATEMENTS`] distinct times needs more than one.
pub fn last_seen_commands(batch: &[(ExtensionNumber, Timestamp)]) -> Vec<Document> {
    let mut by_time: BTreeMap<Timestamp, Vec<Bson>> = BTreeMap::new();
    for (ext, at) in batch {
        by_time
            .entry(*at)
            .or_default()
            .push(Bson::String(ext.as_str().to_owned()));
    }
    let statements: Vec<Bson> = by_time
        .into_iter()
        .map(|(at, exts)| {
            Bson::Document(doc! {
                "q": { "extension": { "$in": exts } },
                "u": { "$max": { "last_seen": date(at) } },
                "multi": true,
            })
        })
        .collect();
    statements
        .chunks(MAX_STATEMENTS)
        .map(|chunk| {
            doc! {
                "update": EXTENSIONS,
                "updates": chunk.to_vec(),
                "ordered": false,
            }
        })
        .collect()
}

/// One index to create: the collection, the key pattern, and whether it is unique. Indexes get
/// the server's default names (`extension_1`, `extension_1_at_1`, ...), the names `mongosh`'s
/// `createIndex` gives, so that creating them again over a database prepared by hand is a
/// no-op rather than a name conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexSpec {
    /// The collection.
    pub collection: &'static str,
    /// The key pattern.
    pub keys: Document,
    /// Whether values must be unique.
    pub unique: bool,
    /// Documents expire this long after the indexed time (a TTL index).
    pub expire_after: Option<std::time::Duration>,
}

/// The indexes created at start; with a history retention, the history's index on `at` is a
/// TTL index that expires entries that much after their time.
pub fn indexes(history_retention: Option<std::time::Duration>) -> Vec<IndexSpec> {
    let spec = |collection, keys, unique| IndexSpec {
        collection,
        keys,
        unique,
        expire_after: None,
    };
    vec![
        spec(EXTENSIONS, doc! { "extension": 1 }, true),
        spec(EXTENSIONS, doc! { "status": 1 }, false),
        spec(EXTENSIONS, doc! { "department": 1 }, false),
        spec(EXTENSIONS, doc! { "is_active": 1 }, false),
        spec(EXTENSIONS, doc! { "last_status_change": 1 }, false),
        spec(HISTORY, doc! { "extension": 1, "at": 1 }, false),
        IndexSpec {
            expire_after: history_retention,
            ..spec(HISTORY, doc! { "at": 1 }, false)
        },
    ]
}

fn corrupt(id: &str, field: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        detail: format!("extensions document {id}: {field}: {what}"),
    }
}

fn read_time(d: &Document, id: &str, field: &str) -> Result<Option<Timestamp>, StoreError> {
    read_time_as(d, id, field, field)
}

/// Reads the time under `key`, naming it `field` in errors (e.g. `queues[0].last_call`).
fn read_time_as(
    d: &Document,
    id: &str,
    key: &str,
    field: &str,
) -> Result<Option<Timestamp>, StoreError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::DateTime(t)) => Ok(Some(t.to_chrono())),
        // Tolerated for documents written by hand or by other tools.
        Some(Bson::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(domain::record::truncate(t.with_timezone(&chrono::Utc))))
            .map_err(|e| corrupt(id, field, e)),
        Some(other) => Err(corrupt(id, field, format!("not a date: {other}"))),
    }
}

fn read_text<'d>(d: &'d Document, id: &str, field: &str) -> Result<&'d str, StoreError> {
    d.get_str(field).map_err(|e| corrupt(id, field, e))
}

fn read_code(d: &Document, id: &str) -> Result<i32, StoreError> {
    match d.get("status_code") {
        Some(Bson::Int32(c)) => Ok(*c),
        Some(Bson::Int64(c)) => i32::try_from(*c).map_err(|e| corrupt(id, "status_code", e)),
        // A shell that seeds `status_code: -1` stores a double.
        Some(Bson::Double(c)) if c.fract() == 0.0 && c.abs() <= f64::from(i32::MAX) =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(*c as i32)
        }
        None | Some(Bson::Null) => Ok(ExtensionState::INITIAL.code()),
        Some(other) => Err(corrupt(
            id,
            "status_code",
            format!("not an integer: {other}"),
        )),
    }
}

/// Reads a record back, validating every user field as the domain types do. `device_state` and
/// `status` are derived from `status_code` when missing; a missing `is_active` means true; a
/// missing `createdAt` is taken from the ObjectId.
pub fn read_record(d: &Document) -> Result<Extension, StoreError> {
    let oid = d.get_object_id("_id").map_err(|e| corrupt("?", "_id", e))?;
    let id = RecordId::from_bytes(oid.bytes());
    let ids = id.as_str();
    let field = |e: domain::FieldError| StoreError::Corrupt {
        detail: format!("extensions document {ids}: {e}"),
    };
    let extension = ExtensionNumber::parse(read_text(d, ids, "extension")?).map_err(field)?;
    let agent_name = AgentName::parse(read_text(d, ids, "agent_name")?).map_err(field)?;
    let department = Department::parse(read_text(d, ids, "department")?).map_err(field)?;
    let status_code = read_code(d, ids)?;
    let state = ExtensionState::from_code(status_code);
    let device_state = d
        .get_str("device_state")
        .ok()
        .and_then(|s| DeviceState::from_str(s).ok())
        .unwrap_or_else(|| state.device_state());
    let status = d
        .get_str("status")
        .ok()
        .and_then(|s| Presence::from_str(s).ok())
        .unwrap_or_else(|| state.presence());
    let is_active = match d.get("is_active") {
        None | Some(Bson::Null) => true,
        Some(Bson::Boolean(b)) => *b,
        Some(other) => return Err(corrupt(ids, "is_active", format!("not a bool: {other}"))),
    };
    let created_at = read_time(d, ids, "createdAt")?.unwrap_or_else(|| oid.timestamp().to_chrono());
    let updated_at = read_time(d, ids, "updatedAt")?.unwrap_or(created_at);
    let last_status_change = read_time(d, ids, "last_status_change")?;
    let last_seen = read_time(d, ids, "last_seen")?;
    let (queues, presence, call) = read_call_center(d, ids)?;
    Ok(Extension {
        id,
        extension,
        agent_name,
        department,
        status_code,
        device_state,
        status,
        last_status_change,
        last_seen,
        queues,
        presence,
        call,
        is_active,
        created_at,
        updated_at,
    })
}

/// Reads a sub-document member: its text, null (or absent) as `None`.
fn sub_text(d: &Document, id: &str, field: &str, key: &str) -> Result<Option<String>, StoreError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(corrupt(
            id,
            &format!("{field}.{key}"),
            format!("not a string: {other}"),
        )),
    }
}

fn sub_int(d: &Document, id: &str, field: &str, key: &str) -> Result<i64, StoreError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(0),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Double(n)) if n.fract() == 0.0 && n.abs() <= f64::from(i32::MAX) =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(*n as i64)
        }
        Some(other) => Err(corrupt(
            id,
            &format!("{field}.{key}"),
            format!("not an integer: {other}"),
        )),
    }
}

fn sub_bool(d: &Document, id: &str, field: &str, key: &str) -> Result<bool, StoreError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(false),
        Some(Bson::Boolean(b)) => Ok(*b),
        Some(other) => Err(corrupt(
            id,
            &format!("{field}.{key}"),
            format!("not a bool: {other}"),
        )),
    }
}

fn sub_doc<'d>(d: &'d Document, id: &str, field: &str) -> Result<Option<&'d Document>, StoreError> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(inner)) => Ok(Some(inner)),
        Some(other) => Err(corrupt(id, field, format!("not a document: {other}"))),
    }
}

/// Reads `queues`, `presence` and `call`; a document written before they existed has none of
/// them and reads as `[]`, null, null.
#[allow(clippy::type_complexity)]
fn read_call_center(
    d: &Document,
    id: &str,
) -> Result<
    (
        Vec<QueueMembership>,
        Option<Box<AgentPresence>>,
        Option<Box<CallInfo>>,
    ),
    StoreError,
> {
    let queues = match d.get("queues") {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let field = format!("queues[{i}]");
                let Bson::Document(m) = item else {
                    return Err(corrupt(id, &field, format!("not a document: {item}")));
                };
                let queue = sub_text(m, id, &field, "queue")?
                    .ok_or_else(|| corrupt(id, &format!("{field}.queue"), "missing"))?;
                let number = |key: &str| -> Result<i64, StoreError> { sub_int(m, id, &field, key) };
                let penalty = i32::try_from(number("penalty")?)
                    .map_err(|e| corrupt(id, &format!("{field}.penalty"), e))?;
                let calls_taken = u32::try_from(number("calls_taken")?)
                    .map_err(|e| corrupt(id, &format!("{field}.calls_taken"), e))?;
                Ok(QueueMembership {
                    queue,
                    paused: sub_bool(m, id, &field, "paused")?,
                    paused_reason: sub_text(m, id, &field, "paused_reason")?,
                    // Missing in documents written before the field existed: null.
                    paused_since: read_time_as(
                        m,
                        id,
                        "paused_since",
                        &format!("{field}.paused_since"),
                    )?,
                    penalty,
                    calls_taken,
                    last_call: read_time_as(m, id, "last_call", &format!("{field}.last_call"))?,
                    in_call: sub_bool(m, id, &field, "in_call")?,
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(corrupt(id, "queues", format!("not an array: {other}"))),
    };
    let presence = match sub_doc(d, id, "presence")? {
        None => None,
        Some(p) => Some(Box::new(AgentPresence {
            state: sub_text(p, id, "presence", "state")?
                .ok_or_else(|| corrupt(id, "presence.state", "missing"))?,
            subtype: sub_text(p, id, "presence", "subtype")?,
            message: sub_text(p, id, "presence", "message")?,
        })),
    };
    let call = match sub_doc(d, id, "call")? {
        None => None,
        Some(c) => {
            let state = match sub_text(c, id, "call", "state")?.as_deref() {
                Some("ringing") => CallState::Ringing,
                Some("up") => CallState::Up,
                other => {
                    return Err(corrupt(
                        id,
                        "call.state",
                        format!("not ringing or up: {other:?}"),
                    ));
                }
            };
            let since = read_time_as(c, id, "since", "call.since")?
                .ok_or_else(|| corrupt(id, "call.since", "missing"))?;
            Some(Box::new(CallInfo {
                state,
                peer_number: sub_text(c, id, "call", "peer_number")?,
                peer_name: sub_text(c, id, "call", "peer_name")?,
                queue: sub_text(c, id, "call", "queue")?,
                since,
            }))
        }
    };
    Ok((queues, presence, call))
}

/// Reads a history entry back; a document without `kind` is a status change of the
/// status-only history.
pub fn read_history_entry(d: &Document) -> Result<HistoryEntry, StoreError> {
    let bad = |field: &str, what: String| StoreError::Corrupt {
        detail: format!(
            "{HISTORY} document{}: {field}: {what}",
            d.get("_id").map_or_else(String::new, |v| format!(" {v}"))
        ),
    };
    let extension = || {
        d.get_str("extension")
            .map_err(|e| bad("extension", e.to_string()))
            .and_then(|s| ExtensionNumber::parse(s).map_err(|e| bad("extension", e.to_string())))
    };
    let code = |field: &str| match d.get(field) {
        Some(Bson::Int32(c)) => Ok(*c),
        Some(Bson::Int64(c)) => i32::try_from(*c).map_err(|e| bad(field, e.to_string())),
        other => Err(bad(field, format!("not an integer: {other:?}"))),
    };
    let flag = |field: &str| d.get_bool(field).map_err(|e| bad(field, e.to_string()));
    let text = |field: &str| match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(field, format!("not a string: {other}"))),
    };
    let required = |field: &str| text(field)?.ok_or_else(|| bad(field, "missing".into()));
    let at = d
        .get_datetime("at")
        .map_err(|e| bad("at", e.to_string()))?
        .to_chrono();
    let kind = match d.get("kind") {
        None => "status",
        Some(Bson::String(k)) => k.as_str(),
        Some(other) => return Err(bad("kind", format!("not a string: {other}"))),
    };
    let event = match kind {
        "status" => HistoryEvent::Status {
            extension: extension()?,
            previous_code: code("previous_code")?,
            code: code("new_code")?,
        },
        "pause" => HistoryEvent::Pause {
            extension: extension()?,
            queue: required("queue")?,
            paused: flag("paused")?,
            reason: text("reason")?,
        },
        "presence" => HistoryEvent::Presence {
            extension: extension()?,
            state: required("state")?,
            subtype: text("subtype")?,
            message: text("message")?,
        },
        "call" => HistoryEvent::Call {
            extension: extension()?,
            on_call: flag("on_call")?,
            queue: text("queue")?,
        },
        "pbx_link_down" => HistoryEvent::PbxLinkDown,
        "pbx_link_up" => HistoryEvent::PbxLinkUp,
        "server_start" => HistoryEvent::ServerStart,
        "server_stop" => HistoryEvent::ServerStop,
        other => return Err(bad("kind", format!("unknown kind {other:?}"))),
    };
    Ok(HistoryEntry::new(at, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::NewExtension;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn ext(s: &str) -> ExtensionNumber {
        ExtensionNumber::parse(s).expect("ext")
    }

    fn id() -> RecordId {
        RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id")
    }

    fn oid() -> ObjectId {
        ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").expect("oid")
    }

    fn dt(s: &str) -> Bson {
        Bson::DateTime(DateTime::from_chrono(t(s)))
    }

    fn sample(name: &str, dept: &str) -> Extension {
        Extension::create(
            id(),
            NewExtension {
                extension: ext("1001"),
                agent_name: AgentName::parse(name).expect("name"),
                department: Department::parse(dept).expect("dept"),
                is_active: true,
            },
            t("2026-11-30T12:00:00.123Z"),
        )
    }

    #[test]
    fn record_document_uses_the_interface_field_names() {
        let r = sample("Alice", "Sales");
        assert_eq!(
            record(&r),
            doc! {
                "_id": oid(),
                "extension": "1001",
                "agent_name": "Alice",
                "department": "Sales",
                "status_code": -1,
                "device_state": "UNKNOWN",
                "status": "unknown",
                "last_status_change": Bson::Null,
                "last_seen": Bson::Null,
                "queues": [],
                "presence": Bson::Null,
                "call": Bson::Null,
                "is_active": true,
                "createdAt": dt("2026-11-30T12:00:00.123Z"),
                "updatedAt": dt("2026-11-30T12:00:00.123Z"),
            }
        );
        assert_eq!(read_record(&record(&r)).expect("read back"), r);
    }

    #[test]
    fn call_center_fields_round_trip_and_default() {
        let mut r = sample("Alice", "Sales");
        r.queues = vec![
            QueueMembership {
                queue: "sales".into(),
                paused: true,
                paused_reason: Some("Lunch".into()),
                paused_since: Some(t("2026-11-30T11:45:00Z")),
                penalty: 1,
                calls_taken: 7,
                last_call: Some(t("2026-11-30T12:00:01.5Z")),
                in_call: false,
            },
            QueueMembership {
                queue: "$support".into(),
                paused: false,
                paused_reason: None,
                paused_since: None,
                penalty: 0,
                calls_taken: 0,
                last_call: None,
                in_call: true,
            },
        ];
        r.presence = Some(Box::new(AgentPresence {
            state: "away".into(),
            subtype: Some("Lunch break".into()),
            message: None,
        }));
        r.call = Some(Box::new(CallInfo {
            state: CallState::Up,
            peer_number: Some("5559876".into()),
            peer_name: Some("Customer".into()),
            queue: Some("sales".into()),
            since: t("2026-11-30T12:00:02Z"),
        }));
        let d = record(&r);
        assert_eq!(
            d.get("queues"),
            Some(&bson::bson!([
                {
                    "queue": "sales", "paused": true, "paused_reason": "Lunch",
                    "paused_since": dt("2026-11-30T11:45:00Z"), "penalty": 1,
                    "calls_taken": 7_i64, "last_call": dt("2026-11-30T12:00:01.5Z"), "in_call": false,
                },
                {
                    "queue": "$support", "paused": false, "paused_reason": Bson::Null,
                    "paused_since": Bson::Null, "penalty": 0,
                    "calls_taken": 0_i64, "last_call": Bson::Null, "in_call": true,
                },
            ]))
        );
        assert_eq!(
            d.get("call"),
            Some(&bson::bson!({
                "state": "up", "peer_number": "5559876", "peer_name": "Customer",
                "queue": "sales", "since": dt("2026-11-30T12:00:02Z"),
            }))
        );
        assert_eq!(read_record(&d).expect("read back"), r);

        // A document written before these fields existed reads as [], null, null.
        let mut old = record(&sample("Alice", "Sales"));
        for field in ["queues", "presence", "call"] {
            old.remove(field);
        }
        assert_eq!(read_record(&old).expect("old"), sample("Alice", "Sales"));
        // A membership written before `paused_since` existed reads it as null.
        let mut old = record(&r);
        if let Some(Bson::Array(queues)) = old.get_mut("queues") {
            for q in queues.iter_mut() {
                if let Bson::Document(q) = q {
                    q.remove("paused_since");
                }
            }
        }
        let back = read_record(&old).expect("old membership");
        assert_eq!(back.queues[0].paused_since, None);
        assert_eq!(back.queues[0].paused_reason.as_deref(), Some("Lunch"));

        let base = record(&sample("Alice", "Sales"));
        let rows = [
            ("queues", bson::bson!("x"), "queues: not an array: \"x\""),
            (
                "queues",
                bson::bson!([{"paused": true}]),
                "queues[0].queue: missing",
            ),
            (
                "queues",
                bson::bson!([{"queue": "q", "penalty": "high"}]),
                "queues[0].penalty: not an integer: \"high\"",
            ),
            (
                "presence",
                bson::bson!({"subtype": "x"}),
                "presence.state: missing",
            ),
            (
                "call",
                bson::bson!({"state": "held", "since": dt("2026-11-30T12:00:02Z")}),
                "call.state: not ringing or up: Some(\"held\")",
            ),
            ("call", bson::bson!({"state": "up"}), "call.since: missing"),
        ];
        for (field, value, want) in rows {
            let mut d = base.clone();
            d.insert(field, value);
            let err = read_record(&d).expect_err(want);
            assert_eq!(
                err.to_string(),
                format!(
                    "the stored data is corrupt: extensions document 65a1b2c3d4e5f60718293a4b: {want}"
                )
            );
        }
    }

    #[test]
    fn operator_like_user_text_stays_a_string_value() {
        // Text that looks like an operator or a document: a plain string, never a query.
        let r = sample("{\"$ne\": \"\"}", "$gt");
        let d = record(&r);
        assert_eq!(
            d.get("agent_name"),
            Some(&Bson::String("{\"$ne\": \"\"}".into()))
        );
        assert_eq!(d.get("department"), Some(&Bson::String("$gt".into())));
        assert_eq!(read_record(&d).expect("read back"), r);

        let filter = ExtensionFilter {
            department: Some(Department::parse("$ne").expect("dept")),
            ..Default::default()
        };
        assert_eq!(list_filter(&filter), doc! { "department": "$ne" });
        // The value under "department" is a string, not a document: equality, not `$ne`.
        assert!(matches!(
            list_filter(&filter).get("department"),
            Some(Bson::String(_))
        ));

        let patch = ExtensionPatch {
            agent_name: Some(AgentName::parse("$where").expect("name")),
            department: Some(Department::parse("{\"$gt\": 1}").expect("dept")),
            is_active: None,
        };
        let update = patch_update(&patch, t("2026-11-30T12:00:01Z"));
        assert_eq!(
            update,
            doc! { "$set": {
                "agent_name": "$where",
                "department": "{\"$gt\": 1}",
                "updatedAt": dt("2026-11-30T12:00:01Z"),
            } }
        );
        // Every key the backend sends is its own: user text appears only as string values.
        fn keys(d: &Document, out: &mut Vec<String>) {
            for (k, v) in d {
                out.push(k.clone());
                match v {
                    Bson::Document(inner) => keys(inner, out),
                    Bson::Array(items) => {
                        for item in items {
                            if let Bson::Document(inner) = item {
                                keys(inner, out);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut all = Vec::new();
        keys(&update, &mut all);
        keys(&patch_filter(&id(), &patch), &mut all);
        keys(&record(&r), &mut all);
        let allowed = [
            "$set",
            "$or",
            "$ne",
            "_id",
            "extension",
            "agent_name",
            "department",
            "status_code",
            "device_state",
            "status",
            "last_status_change",
            "last_seen",
            "queues",
            "presence",
            "call",
            "is_active",
            "createdAt",
            "updatedAt",
        ];
        for k in all {
            assert!(allowed.contains(&k.as_str()), "unexpected key {k}");
        }
    }

    #[test]
    fn list_filters() {
        let rows = [
            (ExtensionFilter::default(), doc! {}),
            (
                ExtensionFilter {
                    department: Some(Department::parse("Sales").expect("d")),
                    status: Some(Presence::Online),
                    is_active: Some(false),
                },
                doc! { "department": "Sales", "status": "online", "is_active": false },
            ),
            (
                ExtensionFilter {
                    status: Some(Presence::Unknown),
                    ..Default::default()
                },
                doc! { "status": "unknown" },
            ),
        ];
        for (filter, want) in rows {
            assert_eq!(list_filter(&filter), want, "{filter:?}");
        }
    }

    #[test]
    fn user_edit_documents() {
        assert_eq!(by_id(&id()), doc! { "_id": oid() });
        assert_eq!(by_extension(&ext("1001")), doc! { "extension": "1001" });
        let patch = ExtensionPatch {
            agent_name: Some(AgentName::parse("Bob").expect("name")),
            department: None,
            is_active: Some(false),
        };
        assert_eq!(
            patch_filter(&id(), &patch),
            doc! { "_id": oid(), "$or": [
                { "agent_name": { "$ne": "Bob" } },
                { "is_active": { "$ne": false } },
            ] }
        );
        assert_eq!(
            patch_update(&patch, t("2026-11-30T12:00:01.5Z")),
            doc! { "$set": {
                "agent_name": "Bob",
                "is_active": false,
                "updatedAt": dt("2026-11-30T12:00:01.500Z"),
            } }
        );
    }

    #[test]
    fn status_change_is_one_conditional_update() {
        let at = t("2026-11-30T12:00:05.123999Z");
        let obs = Observation::reported(1, at);
        assert_eq!(
            status_filter(&ext("1001"), &obs),
            doc! {
                "extension": "1001",
                "status_code": { "$ne": 1 },
                "last_seen": { "$not": { "$gt": dt("2026-11-30T12:00:05.123Z") } },
                "last_status_change": { "$not": { "$gt": dt("2026-11-30T12:00:05.123Z") } },
            }
        );
        assert_eq!(
            status_update(&obs),
            doc! { "$set": {
                "status_code": 1,
                "device_state": "INUSE",
                "status": "online",
                "last_status_change": dt("2026-11-30T12:00:05.123Z"),
                "last_seen": dt("2026-11-30T12:00:05.123Z"),
            } }
        );
        // Absent from a full list: unknown, and not seen.
        assert_eq!(
            status_update(&Observation::absent(at)),
            doc! { "$set": {
                "status_code": -1,
                "device_state": "UNKNOWN",
                "status": "unknown",
                "last_status_change": dt("2026-11-30T12:00:05.123Z"),
            } }
        );
    }

    #[test]
    fn status_update_agrees_with_decide() {
        // The conditional update writes exactly what the domain's change function decides for
        // any stored state the filter lets through.
        for code in [-2, -1, 0, 1, 2, 4, 8, 9, 16, 17, 42] {
            for source in [Source::Reported, Source::AbsentFromList] {
                let obs = Observation {
                    code: if source == Source::AbsentFromList {
                        -1
                    } else {
                        code
                    },
                    at: t("2026-11-30T12:00:05Z"),
                    source,
                };
                let view = domain::StatusView {
                    status_code: obs.code + 1000,
                    last_status_change: Some(t("2026-11-30T12:00:01Z")),
                    last_seen: Some(t("2026-11-30T12:00:05Z")),
                };
                let write = domain::decide(&view, &obs).expect("a change");
                let change = write.change.expect("a change");
                let mut want = doc! {
                    "status_code": change.status_code,
                    "device_state": change.device_state.as_str(),
                    "status": change.status.as_str(),
                    "last_status_change": date(change.at),
                };
                if let Some(seen) = write.last_seen {
                    want.insert("last_seen", date(seen));
                }
                assert_eq!(status_update(&obs), doc! { "$set": want }, "{obs:?}");
            }
        }
    }

    #[test]
    fn history_documents() {
        let e = HistoryEntry::new(
            t("2026-11-30T12:00:05.123Z"),
            HistoryEvent::Status {
                extension: ext("1001"),
                previous_code: -1,
                code: 0,
            },
        );
        let d = history_entry(&e).expect("status");
        assert_eq!(
            d,
            doc! {
                "kind": "status",
                "at": dt("2026-11-30T12:00:05.123Z"),
                "extension": "1001",
                "previous_code": -1,
                "new_code": 0,
            }
        );
        assert_eq!(read_history_entry(&d).expect("read back"), e);
        // The status-only history wrote no kind.
        let old = doc! {
            "extension": "1001", "previous_code": -1, "new_code": 0,
            "at": dt("2026-11-30T12:00:05.123Z"),
        };
        assert_eq!(read_history_entry(&old).expect("old shape"), e);
        let at = t("2026-11-30T12:00:06Z");
        for event in [
            HistoryEvent::Pause {
                extension: ext("1001"),
                queue: "sales".into(),
                paused: true,
                reason: Some("lunch".into()),
            },
            HistoryEvent::Presence {
                extension: ext("1001"),
                state: "away".into(),
                subtype: None,
                message: Some("back soon".into()),
            },
            HistoryEvent::Call {
                extension: ext("1001"),
                on_call: true,
                queue: None,
            },
            HistoryEvent::PbxLinkDown,
            HistoryEvent::PbxLinkUp,
            HistoryEvent::ServerStart,
            HistoryEvent::ServerStop,
        ] {
            let e = HistoryEntry::new(at, event);
            let d = history_entry(&e).expect("write");
            assert_eq!(read_history_entry(&d).expect("read back"), e);
        }
        let bad = doc! { "kind": "pause", "at": dt("2026-11-30T12:00:05Z"), "extension": "1001" };
        let err = read_history_entry(&bad).expect_err("no queue");
        assert!(err.to_string().contains("queue: missing"), "{err}");
        let (from, to) = (t("2026-11-30T12:00:00Z"), t("2026-11-30T13:00:00Z"));
        assert_eq!(
            history_filter(Some(&ext("1001")), from, to),
            doc! { "$or": [{ "extension": "1001" }, { "extension": { "$exists": false } }], "at": {
                "$gte": dt("2026-11-30T12:00:00Z"), "$lte": dt("2026-11-30T13:00:00Z"),
            } }
        );
        assert_eq!(
            history_filter(None, from, to),
            doc! { "at": {
                "$gte": dt("2026-11-30T12:00:00Z"), "$lte": dt("2026-11-30T13:00:00Z"),
            } }
        );
        assert_eq!(history_sort(), doc! { "at": 1, "_id": 1 });
    }

    #[test]
    fn last_seen_batch_is_one_update_command() {
        let (t1, t2) = (t("2026-11-30T12:00:01Z"), t("2026-11-30T12:00:02Z"));
        let batch = [(ext("1001"), t2), (ext("1002"), t1), (ext("1003"), t2)];
        assert_eq!(
            last_seen_commands(&batch),
            vec![doc! {
                "update": "extensions",
                "updates": [
                    {
                        "q": { "extension": { "$in": ["1002"] } },
                        "u": { "$max": { "last_seen": dt("2026-11-30T12:00:01Z") } },
                        "multi": true,
                    },
                    {
                        "q": { "extension": { "$in": ["1001", "1003"] } },
                        "u": { "$max": { "last_seen": dt("2026-11-30T12:00:02Z") } },
                        "multi": true,
                    },
                ],
                "ordered": false,
            }]
        );
        assert!(last_seen_commands(&[]).is_empty());
        // Only more distinct times than one command may hold split the batch.
        let base = t("2026-11-30T12:00:00Z");
        let many: Vec<_> = (0..MAX_STATEMENTS + 1)
            .map(|i| {
                let i = i64::try_from(i).expect("small");
                (
                    ext(&format!("{:05}", i)),
                    base + chrono::Duration::milliseconds(i),
                )
            })
            .collect();
        let commands = last_seen_commands(&many);
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[1].get_array("updates").expect("updates").len(), 1);
    }

    #[test]
    fn index_specs() {
        let ttl = std::time::Duration::from_secs(93 * 86_400);
        let specs = indexes(Some(ttl));
        assert_eq!(specs.last().and_then(|i| i.expire_after), Some(ttl));
        assert!(indexes(None).iter().all(|i| i.expire_after.is_none()));
        let got: Vec<(&str, Document, bool)> = specs
            .into_iter()
            .map(|i| (i.collection, i.keys, i.unique))
            .collect();
        assert_eq!(
            got,
            vec![
                ("extensions", doc! { "extension": 1 }, true),
                ("extensions", doc! { "status": 1 }, false),
                ("extensions", doc! { "department": 1 }, false),
                ("extensions", doc! { "is_active": 1 }, false),
                ("extensions", doc! { "last_status_change": 1 }, false),
                (
                    "extension_status_history",
                    doc! { "extension": 1, "at": 1 },
                    false
                ),
                ("extension_status_history", doc! { "at": 1 }, false),
            ]
        );
    }

    #[test]
    fn documents_written_by_other_tools_are_read_leniently() {
        // As a mongosh seed script writes them: numbers as doubles, no derived fields.
        let d = doc! {
            "_id": oid(),
            "extension": "1001",
            "agent_name": "Alice",
            "department": "Sales",
            "status_code": 4.0,
            "last_seen": "2026-11-30T12:00:00.5+01:00",
            "createdAt": dt("2026-11-30T10:00:00Z"),
        };
        let r = read_record(&d).expect("lenient");
        assert_eq!(r.status_code, 4);
        assert_eq!(r.device_state, DeviceState::Unavailable);
        assert_eq!(r.status, Presence::Offline);
        assert!(r.is_active);
        assert_eq!(r.last_seen, Some(t("2026-11-30T11:00:00.5Z")));
        assert_eq!(r.updated_at, r.created_at);

        let rows = [
            (
                doc! { "_id": oid(), "extension": "1", "agent_name": "A", "department": "B" },
                "extensions document 65a1b2c3d4e5f60718293a4b: extension must be at least 2 characters, got 1",
            ),
            (
                doc! { "_id": oid(), "extension": "1001", "agent_name": { "$ne": "" }, "department": "B" },
                "extensions document 65a1b2c3d4e5f60718293a4b: agent_name: field does not have the expected type",
            ),
            (
                doc! { "_id": oid(), "extension": "1001", "agent_name": "A", "department": "B", "is_active": "yes" },
                "extensions document 65a1b2c3d4e5f60718293a4b: is_active: not a bool: \"yes\"",
            ),
        ];
        for (d, want) in rows {
            let err = read_record(&d).expect_err("corrupt");
            assert_eq!(
                err.to_string(),
                format!("the stored data is corrupt: {want}")
            );
        }
    }
}
