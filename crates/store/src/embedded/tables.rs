//! The redb file layout of the embedded store: table definitions, the record encoding, opening
//! with path-naming errors, and loading the in-memory cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use domain::{Extension, ExtensionNumber, RecordId, StatusHistoryEntry, Timestamp};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
};

use crate::error::{StoreError, cause};

/// Records by id (24 hex characters); the value is the record as JSON, with the field names of
/// the public interface, so the file is readable with any redb tool.
pub(super) const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("extensions");
/// History in time order: (milliseconds since the epoch, sequence) to (extension, previous
/// code, new code).
pub(super) const HISTORY: TableDefinition<'_, (i64, u64), (&str, i32, i32)> =
    TableDefinition::new("history_by_time");
/// History per extension: (extension, milliseconds, sequence) to (previous code, new code).
pub(super) const HISTORY_BY_EXTENSION: TableDefinition<'_, (&str, i64, u64), (i32, i32)> =
    TableDefinition::new("history_by_extension");
/// Small settings: the layout version.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The layout this code writes; a file with a higher version was written by a newer program.
const LAYOUT_VERSION: u64 = 1;

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
    let db = Database::create(file).map_err(|e| open_error(file, e))?;
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
        txn.open_table(RECORDS).map_err(storage_error)?;
        txn.open_table(HISTORY).map_err(storage_error)?;
        txn.open_table(HISTORY_BY_EXTENSION)
            .map_err(storage_error)?;
    }
    txn.commit().map_err(storage_error)
}

/// Reads every record into memory and finds the next history sequence number.
fn load(db: &Database) -> Result<(Cache, u64), StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let records = txn.open_table(RECORDS).map_err(storage_error)?;
    let mut cache = Cache::default();
    for row in records.iter().map_err(storage_error)? {
        let (key, value) = row.map_err(storage_error)?;
        let record = decode(key.value(), value.value())?;
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
    let history = txn.open_table(HISTORY).map_err(storage_error)?;
    let next_seq = match history.last().map_err(storage_error)? {
        Some((key, _)) => key.value().1.saturating_add(1),
        None => 0,
    };
    Ok((cache, next_seq))
}

/// Encodes a record for the `extensions` table.
pub(super) fn encode(record: &Extension) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Internal { cause: cause(e) })
}

/// Decodes a record, checking that it is stored under its own id. Decoding re-validates every
/// field, so a damaged record is reported instead of served.
pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Extension, StoreError> {
    let record: Extension = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        detail: format!("record {key}: {e}"),
    })?;
    if record.id.as_str() != key {
        return Err(StoreError::Corrupt {
            detail: format!("record {} is stored under key {key}", record.id),
        });
    }
    Ok(record)
}

/// A time as the history keys hold it.
pub(super) fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        detail: format!("history time {ms} is out of range"),
    })
}

fn history_extension(raw: &str) -> Result<ExtensionNumber, StoreError> {
    ExtensionNumber::parse(raw).map_err(|e| StoreError::Corrupt {
        detail: format!("history entry: {e}"),
    })
}

/// Reads the history from `from` to `to`, both inclusive. Blocking.
pub(super) fn read_history(
    db: &Database,
    extension: Option<&ExtensionNumber>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<StatusHistoryEntry>, StoreError> {
    let (from, to) = (millis(from), millis(to));
    if from > to {
        return Ok(Vec::new());
    }
    let txn = db.begin_read().map_err(storage_error)?;
    let mut out = Vec::new();
    match extension {
        Some(ext) => {
            let table = txn
                .open_table(HISTORY_BY_EXTENSION)
                .map_err(storage_error)?;
            let range = (ext.as_str(), from, 0u64)..=(ext.as_str(), to, u64::MAX);
            for row in table.range(range).map_err(storage_error)? {
                let (key, value) = row.map_err(storage_error)?;
                let (_, ms, _) = key.value();
                let (previous_code, new_code) = value.value();
                out.push(StatusHistoryEntry {
                    extension: ext.clone(),
                    previous_code,
                    new_code,
                    at: from_millis(ms)?,
                });
            }
        }
        None => {
            let table = txn.open_table(HISTORY).map_err(storage_error)?;
            for row in table
                .range((from, 0u64)..=(to, u64::MAX))
                .map_err(storage_error)?
            {
                let (key, value) = row.map_err(storage_error)?;
                let (ms, _) = key.value();
                let (ext, previous_code, new_code) = value.value();
                out.push(StatusHistoryEntry {
                    extension: history_extension(ext)?,
                    previous_code,
                    new_code,
                    at: from_millis(ms)?,
                });
            }
        }
    }
    Ok(out)
}
