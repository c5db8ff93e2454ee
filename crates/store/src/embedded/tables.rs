//! The redb file layout of the embedded store: table definitions, the record encoding, opening
//! with path-naming errors, and loading the in-memory cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use domain::{
    AgentName, AgentPresence, CallInfo, Department, Extension, ExtensionNumber, ExtensionState,
    QueueMembership, RecordId, Timestamp,
};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
};
use serde::{Deserialize, Serialize};

use super::history;
use crate::error::{StoreError, cause};

/// The user part of each record by id (24 hex characters), as JSON with the field names of the
/// public interface, so the file is readable with any redb tool. Written only by user edits.
pub(super) const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("extensions");
/// The status part of each record by id: (status code, `last_status_change`, `last_seen`) with
/// times in milliseconds ([`NO_TIME`] for none). Fixed width, so status changes and `last_seen`
/// batches write a few bytes per record and never re-encode the user fields. `device_state`
/// and `status` are functions of the code and are derived on load.
pub(super) const STATUS: TableDefinition<'_, &str, (i32, i64, i64)> =
    TableDefinition::new("status");
/// The call-center part of each record by id (`queues`, `presence`, `call`), as JSON with the
/// field names of the public interface. Written only from the PBX; a record without a row
/// (every record written before call-center state existed) has none: `[]`, null, null.
pub(super) const CALLCENTER: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("callcenter");
/// Stands for "no time" in the status table.
const NO_TIME: i64 = i64::MIN;
/// The status-only history of layout 1: (milliseconds since the epoch, sequence) to
/// (extension, previous code, new code). Opening the store moves its rows into
/// `history::ENTRIES` (same keys) and deletes it. The history of layout 2 is keyed the same
/// way: new entries append at the end of the tree, so a commit writes only the last pages.
/// There is deliberately no second index by extension: it would scatter every commit over the
/// whole history; a per-extension query reads the time range and filters.
pub(super) const HISTORY: TableDefinition<'_, (i64, u64), (&str, i32, i32)> =
    TableDefinition::new("history");
/// Small settings: the layout version.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// redb's page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The layout this code writes; a file with a higher version was written by a newer program.
const LAYOUT_VERSION: u64 = 2;

/// The records in memory, as last committed. Only the writer thread changes it.
#[derive(Debug, Default)]
pub(super) struct Cache {
    pub(super) by_id: HashMap<RecordId, Extension>,
    pub(super) by_extension: HashMap<ExtensionNumber, RecordId>,
}

impl Cache {
    pub(super) fn by_extension(&self, ext: &ExtensionNumber) -> Option<&Extension> {
        self.by_extension.get(ext).and_then(|id| self.by_id.get(id))
    }
}

/// What opening the file yields.
pub(super) struct Opened {
    pub(super) db: Database,
    pub(super) cache: Cache,
    pub(super) next_seq: u64,
}

/// Maps a redb storage error: IO failures may pass (a full disk is freed, a flaky device
/// recovers), corruption does not.
pub(super) fn storage_error(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => StoreError::Unavailable { cause: cause(io) },
        redb::Error::Corrupted(detail) => StoreError::Corrupt { detail },
        redb::Error::PreviousIo => {
            StoreError::unavailable("an earlier write failed; reopen the store to recover")
        }
        other => StoreError::Internal {
            cause: cause(other),
        },
    }
}

/// Creates the data directory and opens (or creates) the database file in it, then loads every
/// record. Blocking.
pub(super) fn open(dir: &Path, file: &Path) -> Result<Opened, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::InvalidPath {
        path: dir.to_path_buf(),
        cause: cause(e),
    })?;
    // Records are served from memory; redb's page cache only needs the recently written
    // pages, so it is bounded well below redb's 1 GiB default.
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(file)
        .map_err(|e| open_error(file, e))?;
    init(&db).map_err(|e| with_path(file, e))?;
    let (cache, next_seq) = load(&db).map_err(|e| with_path(file, e))?;
    Ok(Opened {
        db,
        cache,
        next_seq,
    })
}

fn open_error(file: &Path, e: DatabaseError) -> StoreError {
    let path = file.to_path_buf();
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        DatabaseError::Storage(StorageError::Io(io)) => StoreError::InvalidPath {
            path,
            cause: cause(io),
        },
        other => StoreError::InvalidPath {
            path,
            cause: cause(other),
        },
    }
}

/// Adds the file name to errors met while initialising or loading, so the message says which
/// file is bad.
fn with_path(file: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Corrupt { detail } => StoreError::Corrupt {
            detail: format!("{}: {detail}", file.display()),
        },
        StoreError::Unavailable { cause } | StoreError::Internal { cause } => {
            StoreError::InvalidPath {
                path: PathBuf::from(file),
                cause,
            }
        }
        other => other,
    }
}

/// Creates the tables on first use and checks the layout version.
fn init(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(storage_error)?;
    {
        let mut meta = txn.open_table(META).map_err(storage_error)?;
        let version = meta
            .get("layout_version")
            .map_err(storage_error)?
            .map(|v| v.value());
        match version {
            None => {
                meta.insert("layout_version", LAYOUT_VERSION)
                    .map_err(storage_error)?;
            }
            Some(v) if v > LAYOUT_VERSION => {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "layout version {v} was written by a newer program (this one reads up \
                         to {LAYOUT_VERSION})"
                    ),
                });
            }
            Some(_) => {}
        }
        if version.is_some_and(|v| v < LAYOUT_VERSION) {
            meta.insert("layout_version", LAYOUT_VERSION)
                .map_err(storage_error)?;
        }
        txn.open_table(RECORDS).map_err(storage_error)?;
        txn.open_table(STATUS).map_err(storage_error)?;
        txn.open_table(CALLCENTER).map_err(storage_error)?;
        txn.open_table(history::ENTRIES).map_err(storage_error)?;
    }
    let moved = history::migrate(&txn)?;
    if moved > 0 {
        tracing::info!(
            entries = moved,
            "status history moved to the history_entries table"
        );
    }
    txn.commit().map_err(storage_error)
}

/// Reads every record into memory and finds the next history sequence number.
fn load(db: &Database) -> Result<(Cache, u64), StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let cache = read_cache(&txn)?;
    let history = txn.open_table(history::ENTRIES).map_err(storage_error)?;
    let next_seq = match history.last().map_err(storage_error)? {
        Some((key, _)) => key.value().1.saturating_add(1),
        None => 0,
    };
    Ok((cache, next_seq))
}

/// Every record of the store file `file`, read without changing anything: a missing
/// directory or file holds no records (and is not created), the file is opened read-only, and
/// a file of an older layout is read as it is, not upgraded. Blocking.
pub(super) fn read_only(file: &Path) -> Result<Cache, StoreError> {
    match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cache::default()),
        Err(e) => {
            return Err(StoreError::InvalidPath {
                path: file.to_path_buf(),
                cause: cause(e),
            });
        }
        Ok(_) => {}
    }
    let db = redb::ReadOnlyDatabase::open(file).map_err(|e| open_error(file, e))?;
    let read = || {
        let txn = db.begin_read().map_err(storage_error)?;
        if let Some(meta) = optional(txn.open_table(META))?
            && let Some(v) = meta.get("layout_version").map_err(storage_error)?
            && v.value() > LAYOUT_VERSION
        {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "layout version {} was written by a newer program (this one reads up to \
                     {LAYOUT_VERSION})",
                    v.value()
                ),
            });
        }
        read_cache(&txn)
    };
    read().map_err(|e| with_path(file, e))
}

/// A table, or `None` when the file has none of that name (a new or an older file).
fn optional<T>(table: Result<T, redb::TableError>) -> Result<Option<T>, StoreError> {
    match table {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(storage_error(e)),
    }
}

/// Reads every record of a read transaction into a cache.
fn read_cache(txn: &redb::ReadTransaction) -> Result<Cache, StoreError> {
    let mut cache = Cache::default();
    let Some(records) = optional(txn.open_table(RECORDS))? else {
        return Ok(cache);
    };
    let status = optional(txn.open_table(STATUS))?;
    let callcenter = optional(txn.open_table(CALLCENTER))?;
    for row in records.iter().map_err(storage_error)? {
        let (key, value) = row.map_err(storage_error)?;
        let key = key.value();
        let stored = match &status {
            Some(status) => status.get(key).map_err(storage_error)?.map(|v| v.value()),
            None => None,
        };
        let mut record = decode(key, value.value(), stored)?;
        if let Some(callcenter) = &callcenter
            && let Some(row) = callcenter.get(key).map_err(storage_error)?
        {
            decode_callcenter(key, row.value(), &mut record)?;
        }
        if let Some(other) = cache
            .by_extension
            .insert(record.extension.clone(), record.id.clone())
        {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "records {} and {other} both hold extension {}",
                    record.id, record.extension
                ),
            });
        }
        cache.by_id.insert(record.id.clone(), record);
    }
    Ok(cache)
}

/// The user part of a record as the `extensions` table holds it.
#[derive(Serialize, Deserialize)]
struct UserFields {
    #[serde(rename = "_id")]
    id: RecordId,
    extension: ExtensionNumber,
    agent_name: AgentName,
    department: Department,
    is_active: bool,
    #[serde(rename = "createdAt", with = "domain::record::rfc3339")]
    created_at: Timestamp,
    #[serde(rename = "updatedAt", with = "domain::record::rfc3339")]
    updated_at: Timestamp,
}

/// Encodes the user part of a record for the `extensions` table.
pub(super) fn encode_user(r: &Extension) -> Result<Vec<u8>, StoreError> {
    let user = UserFields {
        id: r.id.clone(),
        extension: r.extension.clone(),
        agent_name: r.agent_name.clone(),
        department: r.department.clone(),
        is_active: r.is_active,
        created_at: r.created_at,
        updated_at: r.updated_at,
    };
    serde_json::to_vec(&user).map_err(|e| StoreError::Internal { cause: cause(e) })
}

/// The call-center part of a record as the `callcenter` table holds it.
#[derive(Serialize, Deserialize)]
struct CallCenterFields {
    #[serde(default)]
    queues: Vec<QueueMembership>,
    #[serde(default)]
    presence: Option<Box<AgentPresence>>,
    #[serde(default)]
    call: Option<Box<CallInfo>>,
}

/// Encodes the call-center part of a record for the `callcenter` table.
pub(super) fn encode_callcenter(r: &Extension) -> Result<Vec<u8>, StoreError> {
    let fields = CallCenterFields {
        queues: r.queues.clone(),
        presence: r.presence.clone(),
        call: r.call.clone(),
    };
    serde_json::to_vec(&fields).map_err(|e| StoreError::Internal { cause: cause(e) })
}

/// Lays a `callcenter` row over a record decoded from the other two tables.
pub(super) fn decode_callcenter(
    key: &str,
    row: &[u8],
    record: &mut Extension,
) -> Result<(), StoreError> {
    let fields: CallCenterFields =
        serde_json::from_slice(row).map_err(|e| StoreError::Corrupt {
            detail: format!("call-center row of record {key}: {e}"),
        })?;
    record.queues = fields.queues;
    record.presence = fields.presence;
    record.call = fields.call;
    Ok(())
}

/// Encodes the status part of a record for the `status` table.
pub(super) fn encode_status(r: &Extension) -> (i32, i64, i64) {
    let ms = |t: Option<Timestamp>| t.map_or(NO_TIME, millis);
    (r.status_code, ms(r.last_status_change), ms(r.last_seen))
}

/// Decodes a record from its two parts, checking that it is stored under its own id. Decoding
/// re-validates every field, so a damaged record is reported instead of served. A record
/// without a status row has never been reported on.
pub(super) fn decode(
    key: &str,
    user: &[u8],
    status: Option<(i32, i64, i64)>,
) -> Result<Extension, StoreError> {
    let user: UserFields = serde_json::from_slice(user).map_err(|e| StoreError::Corrupt {
        detail: format!("record {key}: {e}"),
    })?;
    if user.id.as_str() != key {
        return Err(StoreError::Corrupt {
            detail: format!("record {} is stored under key {key}", user.id),
        });
    }
    let (code, changed, seen) =
        status.unwrap_or((ExtensionState::INITIAL.code(), NO_TIME, NO_TIME));
    let time = |ms: i64| {
        if ms == NO_TIME {
            Ok(None)
        } else {
            from_millis(ms).map(Some)
        }
    };
    let state = ExtensionState::from_code(code);
    Ok(Extension {
        id: user.id,
        extension: user.extension,
        agent_name: user.agent_name,
        department: user.department,
        status_code: code,
        device_state: state.device_state(),
        status: state.presence(),
        last_status_change: time(changed)?,
        last_seen: time(seen)?,
        queues: Vec::new(),
        presence: None,
        call: None,
        is_active: user.is_active,
        created_at: user.created_at,
        updated_at: user.updated_at,
    })
}

/// A time as the history keys hold it.
pub(super) fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        detail: format!("time {ms} is out of range"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{NewExtension, Observation};

    fn sample() -> Extension {
        Extension::create(
            RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
            NewExtension {
                extension: ExtensionNumber::parse("1001").expect("ext"),
                agent_name: AgentName::parse("Zoë \"Z\" Müller").expect("name"),
                department: Department::parse("Sales").expect("dept"),
                is_active: false,
            },
            "2026-11-30T12:00:00.123Z".parse().expect("time"),
        )
    }

    #[test]
    fn records_round_trip_through_both_tables() {
        let fresh = sample();
        let key = fresh.id.as_str().to_owned();
        let user = encode_user(&fresh).expect("encode");
        // A record never reported on has no status row.
        assert_eq!(decode(&key, &user, None).expect("decode"), fresh);
        assert_eq!(encode_status(&fresh), (-1, NO_TIME, NO_TIME));

        let mut seen = fresh.clone();
        let at = "2026-11-30T12:00:05.5Z".parse().expect("time");
        let write =
            domain::decide(&seen.status_view(), &Observation::reported(16, at)).expect("a change");
        seen.apply_status(&write);
        let status = encode_status(&seen);
        assert_eq!(status, (16, millis(at), millis(at)));
        let back = decode(&key, &user, Some(status)).expect("decode");
        assert_eq!(back, seen);
        assert_eq!(back.device_state.as_str(), "ONHOLD");

        let json: serde_json::Value = serde_json::from_slice(&user).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "_id": "65a1b2c3d4e5f60718293a4b",
                "extension": "1001",
                "agent_name": "Zoë \"Z\" Müller",
                "department": "Sales",
                "is_active": false,
                "createdAt": "2026-11-30T12:00:00.123Z",
                "updatedAt": "2026-11-30T12:00:00.123Z",
            })
        );
    }

    #[test]
    fn call_center_rows_round_trip_and_are_optional() {
        let mut r = sample();
        let key = r.id.as_str().to_owned();
        r.queues = vec![QueueMembership {
            queue: "sales".into(),
            paused: true,
            paused_reason: Some("Lunch".into()),
            paused_since: Some("2026-11-30T11:45:00Z".parse().expect("time")),
            penalty: 1,
            calls_taken: 2,
            last_call: Some("2026-11-30T12:00:01.5Z".parse().expect("time")),
            in_call: false,
        }];
        r.presence = Some(Box::new(AgentPresence {
            state: "dnd".into(),
            subtype: None,
            message: Some("In a meeting".into()),
        }));
        r.call = Some(Box::new(CallInfo {
            state: domain::CallState::Ringing,
            peer_number: Some("5559876".into()),
            peer_name: None,
            queue: Some("sales".into()),
            since: "2026-11-30T12:00:02Z".parse().expect("time"),
        }));
        let row = encode_callcenter(&r).expect("encode");
        let json: serde_json::Value = serde_json::from_slice(&row).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "queues": [{
                    "queue": "sales", "paused": true, "paused_reason": "Lunch",
                    "paused_since": "2026-11-30T11:45:00.000Z", "penalty": 1,
                    "calls_taken": 2, "last_call": "2026-11-30T12:00:01.500Z", "in_call": false,
                }],
                "presence": {"state": "dnd", "subtype": null, "message": "In a meeting"},
                "call": {
                    "state": "ringing", "peer_number": "5559876", "peer_name": null,
                    "queue": "sales", "since": "2026-11-30T12:00:02.000Z",
                },
            })
        );
        let user = encode_user(&r).expect("encode");
        let mut back = decode(&key, &user, None).expect("decode");
        // No call-center row (a record written before it existed): [], null, null.
        assert_eq!(back, sample());
        decode_callcenter(&key, &row, &mut back).expect("decode row");
        assert_eq!(back, r);
        // A row written before `paused_since` existed reads it as null.
        let old = br#"{"queues":[{"queue":"sales","paused":true,"paused_reason":"Lunch","penalty":1,"calls_taken":2,"last_call":null,"in_call":false}]}"#;
        decode_callcenter(&key, old, &mut back).expect("old row");
        assert_eq!(back.queues[0].paused_since, None);
        assert!(back.queues[0].paused);
        // An empty object is a row with nothing in it.
        decode_callcenter(&key, b"{}", &mut back).expect("empty row");
        assert_eq!(back, sample());
        match decode_callcenter(&key, b"{\"call\":{\"state\":\"held\"}}", &mut back) {
            Err(StoreError::Corrupt { detail }) => assert!(
                detail.starts_with(
                    "call-center row of record 65a1b2c3d4e5f60718293a4b: unknown variant `held`"
                ),
                "{detail}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_rows_are_reported() {
        let user = encode_user(&sample()).expect("encode");
        let rows: [(&str, &[u8], &str); 3] = [
            (
                "65a1b2c3d4e5f60718293a4c",
                &user,
                "record 65a1b2c3d4e5f60718293a4b is stored under key 65a1b2c3d4e5f60718293a4c",
            ),
            (
                "65a1b2c3d4e5f60718293a4b",
                b"{\"_id\":\"65a1b2c3d4e5f60718293a4b\",\"extension\":\"1\"}",
                "record 65a1b2c3d4e5f60718293a4b: extension must be at least 2 characters, got 1 at line 1 column 50",
            ),
            (
                "65a1b2c3d4e5f60718293a4b",
                b"not json",
                "record 65a1b2c3d4e5f60718293a4b: expected ident at line 1 column 2",
            ),
        ];
        for (key, bytes, want) in rows {
            match decode(key, bytes, None) {
                Err(StoreError::Corrupt { detail }) => assert_eq!(detail, want),
                other => panic!("{other:?}"),
            }
        }
    }
}
