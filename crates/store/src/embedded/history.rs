//! The embedded store's history: a compact binary value per [`HistoryEntry`] in the
//! `history_entries` table, keyed by (milliseconds since the epoch, sequence), so a time range
//! is one ordered scan and an entry decodes without a parser.
//!
//! Value layout (integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 1 | kind: 1 status, 2 pause, 3 presence, 4 call, 5 link down, 6 link up, 7 server start, 8 server stop |
//! | 1 + n | extension: length, then the digits (kinds 1 to 4 only) |
//! | ... | status: previous code `i32`, code `i32`; pause: queue, paused `u8`, reason; presence: state, subtype, message; call: on call `u8`, queue |
//!
//! A string is a `u16` length then UTF-8 bytes; an absent optional string is length `0xFFFF`.
//! The pause queue comes right after the extension, so (kind, extension, queue) is a prefix:
//! [`state_key`] reads it without decoding the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use domain::analytics::{EventRef, TimeInState, TimeInStatePass, TimeInStateQuery};
use domain::{Department, ExtensionNumber, HistoryEntry, HistoryEvent, TimeRange, Timestamp};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use super::tables::{HISTORY, millis, storage_error};
use crate::HistoryWindow;
use crate::error::StoreError;

/// Every history entry: (milliseconds since the epoch, sequence) to the encoded entry.
pub(super) const ENTRIES: TableDefinition<'_, (i64, u64), &[u8]> =
    TableDefinition::new("history_entries");

const STATUS: u8 = 1;
const PAUSE: u8 = 2;
const PRESENCE: u8 = 3;
const CALL: u8 = 4;
const LINK_DOWN: u8 = 5;
const LINK_UP: u8 = 6;
const SERVER_START: u8 = 7;
const SERVER_STOP: u8 = 8;
const NONE: u16 = u16::MAX;

/// Encodes one event, appending to `out`.
pub(super) fn encode(event: &HistoryEvent, out: &mut Vec<u8>) -> Result<(), StoreError> {
    match event {
        HistoryEvent::Status {
            extension,
            previous_code,
            code,
        } => {
            out.push(STATUS);
            put_extension(out, extension);
            out.extend_from_slice(&previous_code.to_le_bytes());
            out.extend_from_slice(&code.to_le_bytes());
        }
        HistoryEvent::Pause {
            extension,
            queue,
            paused,
            reason,
        } => {
            out.push(PAUSE);
            put_extension(out, extension);
            put_str(out, Some(queue), "queue")?;
            out.push(u8::from(*paused));
            put_str(out, reason.as_deref(), "reason")?;
        }
        HistoryEvent::Presence {
            extension,
            state,
            subtype,
            message,
        } => {
            out.push(PRESENCE);
            put_extension(out, extension);
            put_str(out, Some(state), "state")?;
            put_str(out, subtype.as_deref(), "subtype")?;
            put_str(out, message.as_deref(), "message")?;
        }
        HistoryEvent::Call {
            extension,
            on_call,
            queue,
        } => {
            out.push(CALL);
            put_extension(out, extension);
            out.push(u8::from(*on_call));
            put_str(out, queue.as_deref(), "queue")?;
        }
        HistoryEvent::PbxLinkDown => out.push(LINK_DOWN),
        HistoryEvent::PbxLinkUp => out.push(LINK_UP),
        HistoryEvent::ServerStart => out.push(SERVER_START),
        HistoryEvent::ServerStop => out.push(SERVER_STOP),
        other => {
            return Err(StoreError::internal(format!(
                "history kind {} has no embedded encoding",
                other.kind()
            )));
        }
    }
    Ok(())
}

fn put_extension(out: &mut Vec<u8>, extension: &ExtensionNumber) {
    let bytes = extension.as_str().as_bytes();
    // At most `ExtensionNumber::MAX_LEN` (10) bytes, so the length fits in one byte.
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, value: Option<&str>, what: &str) -> Result<(), StoreError> {
    match value {
        None => out.extend_from_slice(&NONE.to_le_bytes()),
        Some(s) => {
            let len = u16::try_from(s.len())
                .ok()
                .filter(|&n| n != NONE)
                .ok_or_else(|| {
                    StoreError::internal(format!(
                        "history {what} is {} bytes long; at most {} can be stored",
                        s.len(),
                        NONE - 1
                    ))
                })?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    Ok(())
}

/// Reads an encoded value.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    ms: i64,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt {
            detail: format!(
                "history entry at {} ms: {what} (byte {} of {})",
                self.ms,
                self.pos,
                self.bytes.len()
            ),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.saturating_add(n);
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.corrupt("value ends early"))?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, StoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt("a flag is neither 0 nor 1")),
        }
    }

    fn i32(&mut self) -> Result<i32, StoreError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn raw_str(&mut self) -> Result<Option<&'a [u8]>, StoreError> {
        let b = self.take(2)?;
        let len = u16::from_le_bytes([b[0], b[1]]);
        if len == NONE {
            return Ok(None);
        }
        self.take(usize::from(len)).map(Some)
    }

    fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.raw_str()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| self.corrupt("a string is not UTF-8")),
        }
    }

    fn string(&mut self) -> Result<String, StoreError> {
        self.opt_string()?
            .ok_or_else(|| self.corrupt("a required string is absent"))
    }

    fn extension_bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    fn str_ref(&mut self, bytes: &'a [u8]) -> Result<&'a str, StoreError> {
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("a string is not UTF-8"))
    }

    fn extension(&mut self) -> Result<ExtensionNumber, StoreError> {
        let bytes = self.extension_bytes()?;
        let raw = std::str::from_utf8(bytes).map_err(|_| self.corrupt("extension not UTF-8"))?;
        ExtensionNumber::parse(raw).map_err(|e| self.corrupt(&e.to_string()))
    }
}

fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        detail: format!("history time {ms} is out of range"),
    })
}

/// Decodes one stored entry.
pub(super) fn decode(ms: i64, bytes: &[u8]) -> Result<HistoryEntry, StoreError> {
    let mut r = Reader { bytes, pos: 0, ms };
    let event = match r.u8()? {
        STATUS => HistoryEvent::Status {
            extension: r.extension()?,
            previous_code: r.i32()?,
            code: r.i32()?,
        },
        PAUSE => HistoryEvent::Pause {
            extension: r.extension()?,
            queue: r.string()?,
            paused: r.bool()?,
            reason: r.opt_string()?,
        },
        PRESENCE => HistoryEvent::Presence {
            extension: r.extension()?,
            state: r.string()?,
            subtype: r.opt_string()?,
            message: r.opt_string()?,
        },
        CALL => HistoryEvent::Call {
            extension: r.extension()?,
            on_call: r.bool()?,
            queue: r.opt_string()?,
        },
        LINK_DOWN => HistoryEvent::PbxLinkDown,
        LINK_UP => HistoryEvent::PbxLinkUp,
        SERVER_START => HistoryEvent::ServerStart,
        SERVER_STOP => HistoryEvent::ServerStop,
        other => return Err(r.corrupt(&format!("unknown kind {other}"))),
    };
    if r.pos != bytes.len() {
        return Err(r.corrupt("bytes left after the entry"));
    }
    Ok(HistoryEntry {
        at: timestamp(ms)?,
        event,
    })
}

/// Decodes what time in state reads of one stored entry, borrowing its strings from `bytes`:
/// no allocation, no time conversion, and the extension's digits stay bytes (the pass checks
/// them as it looks them up among the reported extensions). Fields the pass does not read (a status's
/// previous code, a presence's texts, a call's queue) are not decoded.
pub(super) fn decode_ref(ms: i64, bytes: &[u8]) -> Result<EventRef<'_>, StoreError> {
    let mut r = Reader { bytes, pos: 0, ms };
    let kind = r.u8()?;
    let mut extension = || r.extension_bytes();
    Ok(match kind {
        STATUS => {
            let extension = extension()?;
            r.take(4)?;
            EventRef::Status {
                extension,
                code: r.i32()?,
            }
        }
        PAUSE => {
            let extension = extension()?;
            let queue = r
                .raw_str()?
                .ok_or_else(|| r.corrupt("a required string is absent"))?;
            let queue = r.str_ref(queue)?;
            let paused = r.bool()?;
            let reason = match r.raw_str()? {
                Some(b) => Some(r.str_ref(b)?),
                None => None,
            };
            EventRef::Pause {
                extension,
                queue,
                paused,
                reason,
            }
        }
        PRESENCE => EventRef::Presence {
            extension: extension()?,
        },
        CALL => {
            let extension = extension()?;
            EventRef::Call {
                extension,
                on_call: r.bool()?,
            }
        }
        LINK_DOWN => EventRef::PbxLinkDown,
        LINK_UP => EventRef::PbxLinkUp,
        SERVER_START => EventRef::ServerStart,
        SERVER_STOP => EventRef::ServerStop,
        other => return Err(r.corrupt(&format!("unknown kind {other}"))),
    })
}

/// The extension digits of an encoded entry; `None` for a marker.
fn extension_of(ms: i64, bytes: &[u8]) -> Result<Option<&[u8]>, StoreError> {
    let mut r = Reader { bytes, pos: 0, ms };
    match r.u8()? {
        STATUS | PAUSE | PRESENCE | CALL => r.extension_bytes().map(Some),
        _ => Ok(None),
    }
}

/// The prefix that says which state an entry sets: kind and extension, and the queue for a
/// pause. The last entry before a time with each prefix is the state at that time.
pub(super) fn state_key(ms: i64, bytes: &[u8]) -> Result<&[u8], StoreError> {
    let mut r = Reader { bytes, pos: 0, ms };
    match r.u8()? {
        STATUS | PRESENCE | CALL => {
            r.extension_bytes()?;
        }
        PAUSE => {
            r.extension_bytes()?;
            r.raw_str()?;
        }
        _ => {}
    }
    Ok(&bytes[..r.pos])
}

/// Moves the rows of the status-only `history` table of layout 1 into `history_entries`
/// (same keys, so the order is kept) and deletes that table. Part of opening the store.
pub(super) fn migrate(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let old_exists = txn
        .list_tables()
        .map_err(storage_error)?
        .any(|t| t.name() == HISTORY.name());
    if !old_exists {
        return Ok(0);
    }
    let mut moved = 0u64;
    {
        let old = txn.open_table(HISTORY).map_err(storage_error)?;
        let mut new = txn.open_table(ENTRIES).map_err(storage_error)?;
        let mut buf = Vec::new();
        for row in old.iter().map_err(storage_error)? {
            let (key, value) = row.map_err(storage_error)?;
            let (ms, seq) = key.value();
            let (ext, previous_code, code) = value.value();
            let extension = ExtensionNumber::parse(ext).map_err(|e| StoreError::Corrupt {
                detail: format!("status history entry at {ms} ms: {e}"),
            })?;
            buf.clear();
            encode(
                &HistoryEvent::Status {
                    extension,
                    previous_code,
                    code,
                },
                &mut buf,
            )?;
            new.insert((ms, seq), buf.as_slice())
                .map_err(storage_error)?;
            moved += 1;
        }
    }
    txn.delete_table(HISTORY).map_err(storage_error)?;
    Ok(moved)
}

/// The history from `from` to `to`, both inclusive, of one extension (with the markers) or of
/// all. Blocking.
pub(super) fn read(
    db: &Database,
    extension: Option<&ExtensionNumber>,
    from: Timestamp,
    to: Timestamp,
    limit: usize,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let (from, to) = (millis(from), millis(to));
    if from > to || limit == 0 {
        return Ok(Vec::new());
    }
    let txn = db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let wanted = extension.map(|e| e.as_str().as_bytes());
    let mut out = Vec::new();
    for row in table
        .range((from, 0u64)..=(to, u64::MAX))
        .map_err(storage_error)?
    {
        let (key, value) = row.map_err(storage_error)?;
        let (ms, _) = key.value();
        let bytes = value.value();
        if let Some(wanted) = wanted
            && extension_of(ms, bytes)?.is_some_and(|e| e != wanted)
        {
            continue;
        }
        out.push(decode(ms, bytes)?);
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}

/// For each state key, the last entry before `from`: one backward scan that decodes only the
/// first entry of each key.
fn prior(
    table: &impl ReadableTable<(i64, u64), &'static [u8]>,
    from: i64,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut seen: HashMap<Vec<u8>, ()> = HashMap::new();
    let mut out = Vec::new();
    for row in table.range(..(from, 0u64)).map_err(storage_error)?.rev() {
        let (key, value) = row.map_err(storage_error)?;
        let (ms, _) = key.value();
        let bytes = value.value();
        let state = state_key(ms, bytes)?;
        if seen.contains_key(state) {
            continue;
        }
        seen.insert(state.to_vec(), ());
        out.push(decode(ms, bytes)?);
    }
    out.reverse();
    Ok(out)
}

/// The state at a window's start (what [`prior`] finds), kept for the next window with the same
/// start. Finding it scans every entry before the start, which for a window at the end of a
/// long history costs more than the window itself; the dashboard asks for "today" all day long,
/// always from the same midnight. What was known at a time changes only when an entry is
/// written before the table's end or entries are deleted: the writer and the pruner say so
/// ([`PriorCache::history_rewritten`]) after their commit, and every cached state from before
/// is dropped. A state is cached only when the table already held an entry at or after the
/// start, so that entries appended later (at the end) cannot belong before it.
#[derive(Default)]
pub(super) struct PriorCache {
    rewrites: AtomicU64,
    /// Newest last.
    states: Mutex<Vec<CachedStart>>,
}

/// A cached state: (start in ms, [`PriorCache::rewrites`] when it was read, the state).
type CachedStart = (i64, u64, Arc<Vec<HistoryEntry>>);

/// How many window starts are kept (a few time zones, or today and yesterday).
const PRIOR_CACHE_STARTS: usize = 4;

impl PriorCache {
    /// Entries were written before the table's end, or deleted: nothing cached holds.
    pub(super) fn history_rewritten(&self) {
        self.rewrites.fetch_add(1, Ordering::SeqCst);
    }

    fn get(&self, from: i64) -> Option<Arc<Vec<HistoryEntry>>> {
        let now = self.rewrites.load(Ordering::SeqCst);
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states
            .iter()
            .find(|(start, seen, _)| *start == from && *seen == now)
            .map(|(_, _, state)| Arc::clone(state))
    }

    fn put(&self, from: i64, seen: u64, state: Arc<Vec<HistoryEntry>>) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states.retain(|(start, old, _)| *start != from && *old == seen);
        if states.len() >= PRIOR_CACHE_STARTS {
            states.remove(0);
        }
        states.push((from, seen, state));
    }
}

/// What `time_in_state` needs for `range`, collected. Blocking.
pub(super) fn window(db: &Database, range: TimeRange) -> Result<HistoryWindow, StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let from = millis(range.from());
    let prior = prior(&table, from)?;
    let mut entries = Vec::new();
    let to = millis(range.to());
    for row in table.range((from, 0u64)..).map_err(storage_error)? {
        let (key, value) = row.map_err(storage_error)?;
        let (ms, _) = key.value();
        entries.push(decode(ms, value.value())?);
        if ms >= to {
            break;
        }
    }
    Ok(HistoryWindow { prior, entries })
}

/// How many entries the read-ahead thread hands over at a time.
const READ_AHEAD_ROWS: usize = 4_096;
/// How many handed-over chunks may wait for the pass.
const READ_AHEAD_CHUNKS: usize = 8;

/// Entries copied out of the table as they are stored: their encoded values end to end in
/// `bytes`, and for each its time and where its value ends.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    rows: Vec<(i64, usize)>,
}

/// The read-ahead half of [`time_in_state_from`]: walks the table from `from` on, in key order,
/// and hands the raw entries over in chunks, up to and including the first at or after `to`.
/// Stops early when the pass has hung up. Chunks the pass is done with come back on `spent`
/// for reuse.
fn read_ahead(
    table: &redb::ReadOnlyTable<(i64, u64), &'static [u8]>,
    from: i64,
    to: i64,
    out: &std::sync::mpsc::SyncSender<Result<Chunk, StoreError>>,
    spent: &std::sync::mpsc::Receiver<Chunk>,
) {
    let mut chunk = Chunk::default();
    let rows = match table.range((from, 0u64)..) {
        Ok(rows) => rows,
        Err(e) => {
            let _ = out.send(Err(storage_error(e)));
            return;
        }
    };
    for row in rows {
        let (key, value) = match row {
            Ok(row) => row,
            Err(e) => {
                let _ = out.send(Err(storage_error(e)));
                return;
            }
        };
        let (ms, _) = key.value();
        chunk.bytes.extend_from_slice(value.value());
        chunk.rows.push((ms, chunk.bytes.len()));
        let last = ms >= to;
        if last || chunk.rows.len() == READ_AHEAD_ROWS {
            let mut next = spent.try_recv().unwrap_or_default();
            next.bytes.clear();
            next.rows.clear();
            if out.send(Ok(std::mem::replace(&mut chunk, next))).is_err() || last {
                return;
            }
        }
    }
    if !chunk.rows.is_empty() {
        let _ = out.send(Ok(chunk));
    }
}

/// Computes time in state straight from the table, on two threads: one walks the table and
/// copies each stored value out as it is (what [`read_ahead`] does), the other decodes each in
/// place (borrowed, [`decode_ref`]) and feeds it to the one sequential pass. The profile of a
/// 30-day window split the work about one third (the table walk) to two thirds (decoding and
/// the pass); see "History: time in state" in `docs/performance.md`. The state at the start is
/// found while the walk has already begun. Blocking.
pub(super) fn time_in_state_from(
    db: &Database,
    cache: &PriorCache,
    range: TimeRange,
    now: Timestamp,
    department: Option<&Department>,
    extensions: &BTreeMap<ExtensionNumber, Department>,
) -> Result<TimeInState, StoreError> {
    // Read before the snapshot: a rewrite committed after it makes what is cached below stale,
    // and its count, bumped after its commit, is then newer than this one.
    let seen = cache.rewrites.load(Ordering::SeqCst);
    let txn = db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let from = millis(range.from());
    // The walk need go no further than the clipped end the pass stops at.
    let to = millis(domain::analytics::window_end(range, now));
    std::thread::scope(|scope| {
        let (out, chunks) = std::sync::mpsc::sync_channel(READ_AHEAD_CHUNKS);
        let (give_back, spent) = std::sync::mpsc::channel();
        let walker = &table;
        scope.spawn(move || read_ahead(walker, from, to, &out, &spent));
        let prior = match cache.get(from) {
            Some(state) => state,
            None => {
                let state = Arc::new(prior(&table, from)?);
                let end = table
                    .last()
                    .map_err(storage_error)?
                    .map(|(k, _)| k.value().0);
                if end.is_some_and(|end| end >= from) {
                    cache.put(from, seen, Arc::clone(&state));
                }
                state
            }
        };
        let query = TimeInStateQuery {
            range,
            now,
            department,
            extensions,
            prior: &prior,
        };
        let mut pass = TimeInStatePass::new(&query);
        'chunks: for chunk in chunks {
            let chunk = chunk?;
            let mut start = 0;
            for &(ms, end) in &chunk.rows {
                let value = chunk.bytes.get(start..end).unwrap_or_default();
                start = end;
                if !pass.push(ms, decode_ref(ms, value)?) {
                    break 'chunks;
                }
            }
            let _ = give_back.send(chunk);
        }
        // Leaving the loop drops the receiver: a walker still reading stops at its next chunk.
        Ok(pass.finish())
    })
}

/// Deletes at most `batch` entries older than `before`, oldest first, in one short write
/// transaction. Returns how many it deleted. Blocking.
pub(super) fn prune(db: &Database, before: Timestamp, batch: usize) -> Result<u64, StoreError> {
    let before = millis(before);
    let txn = db.begin_write().map_err(storage_error)?;
    let mut deleted = 0u64;
    {
        let mut table = txn.open_table(ENTRIES).map_err(storage_error)?;
        let keys: Vec<(i64, u64)> = table
            .range(..(before, 0u64))
            .map_err(storage_error)?
            .take(batch)
            .map(|row| row.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(storage_error)?;
        for key in keys {
            table.remove(key).map_err(storage_error)?;
            deleted += 1;
        }
    }
    txn.commit().map_err(storage_error)?;
    Ok(deleted)
}

/// How many entries the table holds. Blocking.
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn count(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    table.len().map_err(storage_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(n: &str) -> ExtensionNumber {
        ExtensionNumber::parse(n).expect("extension")
    }

    fn every_kind() -> Vec<HistoryEvent> {
        vec![
            HistoryEvent::Status {
                extension: ext("1001"),
                previous_code: -1,
                code: 8,
            },
            HistoryEvent::Pause {
                extension: ext("1001"),
                queue: "sales".into(),
                paused: true,
                reason: Some("lunch".into()),
            },
            HistoryEvent::Pause {
                extension: ext("1001"),
                queue: "support".into(),
                paused: false,
                reason: None,
            },
            HistoryEvent::Presence {
                extension: ext("22"),
                state: "away".into(),
                subtype: None,
                message: Some("back at 2 ✓".into()),
            },
            HistoryEvent::Call {
                extension: ext("1234567890"),
                on_call: true,
                queue: Some("sales".into()),
            },
            HistoryEvent::Call {
                extension: ext("10"),
                on_call: false,
                queue: None,
            },
            HistoryEvent::PbxLinkDown,
            HistoryEvent::PbxLinkUp,
            HistoryEvent::ServerStart,
            HistoryEvent::ServerStop,
        ]
    }

    /// A window far longer than one read-ahead chunk, cut anywhere (a start inside the
    /// history, an end with many entries after it, which stops the walk early): the answer is
    /// the in-memory pass's over the same entries.
    #[tokio::test]
    async fn a_window_over_many_chunks_answers_as_the_pass_in_memory() {
        use crate::{EmbeddedStore, Repository, StoreOptions, TimeInStateRequest};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), StoreOptions::default())
            .await
            .expect("open");
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().expect("time");
        let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
        let numbers = ["1001", "1002", "1003", "2001"];
        // A fixed linear congruential sequence: the same history every run.
        let mut seed = 0x2545_f491_u64;
        let mut draw = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut entries = vec![
            HistoryEntry::new(at(0), HistoryEvent::ServerStart),
            HistoryEntry::new(at(0), HistoryEvent::PbxLinkUp),
        ];
        let mut ms = 0;
        let rows = 3 * READ_AHEAD_ROWS + 123;
        for _ in 0..rows {
            ms += i64::try_from(draw(900)).expect("small");
            let extension = ext(numbers[usize::try_from(draw(4)).expect("small")]);
            let event = match draw(20) {
                0 => HistoryEvent::PbxLinkDown,
                1 => HistoryEvent::PbxLinkUp,
                2 => HistoryEvent::ServerStart,
                3..=5 => HistoryEvent::Pause {
                    extension,
                    queue: ["sales", "support"][usize::try_from(draw(2)).expect("small")].into(),
                    paused: draw(2) == 0,
                    reason: [None, Some("lunch".into()), Some("training".into())]
                        [usize::try_from(draw(3)).expect("small")]
                    .clone(),
                },
                6..=8 => HistoryEvent::Call {
                    extension,
                    on_call: draw(2) == 0,
                    queue: None,
                },
                _ => HistoryEvent::Status {
                    extension,
                    previous_code: 0,
                    code: [0, 1, 2, 4, 8, 9, 16][usize::try_from(draw(7)).expect("small")],
                },
            };
            entries.push(HistoryEntry::new(at(ms), event));
        }
        for chunk in entries.chunks(5_000) {
            store.append_history(chunk).await.expect("append");
        }
        let departments: BTreeMap<ExtensionNumber, Department> = numbers
            .iter()
            .map(|n| (ext(n), Department::parse("Sales").expect("department")))
            .collect();
        let end = ms;
        for (from, to) in [
            (0, end + 1),
            (end / 3, end + 1_000),
            (end / 5, end / 2),
            (end / 2 + 7, end / 2 + 60_000),
        ] {
            let range = TimeRange::new(at(from), at(to)).expect("range");
            let prior = domain::analytics::prior_entries(&entries, at(from));
            let query = TimeInStateQuery {
                range,
                now: at(end + 10_000),
                department: None,
                extensions: &departments,
                prior: &prior,
            };
            let in_window = entries.iter().filter(|e| e.at >= at(from));
            let expected = domain::analytics::time_in_state(&query, in_window);
            let answer = store
                .time_in_state(TimeInStateRequest {
                    range,
                    now: query.now,
                    department: None,
                    extensions: departments.clone(),
                })
                .await
                .expect("time in state");
            assert_eq!(answer, expected, "window {from}..{to} ms");
        }
    }

    /// The state at a window's start is cached, and dropped when an entry is written before
    /// the table's end or entries are pruned: the answers are those of a store without a cache.
    #[tokio::test]
    async fn a_cached_start_state_follows_late_entries_and_pruning() {
        use crate::{EmbeddedStore, Repository, StoreOptions, TimeInStateRequest};
        use domain::Presence;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), StoreOptions::default())
            .await
            .expect("open");
        let t0: Timestamp = "2026-12-01T09:00:00Z".parse().expect("time");
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let status = |s: i64, code: i32| {
            HistoryEntry::new(
                at(s),
                HistoryEvent::Status {
                    extension: ext("1001"),
                    previous_code: 0,
                    code,
                },
            )
        };
        store
            .append_history(&[
                HistoryEntry::new(at(0), HistoryEvent::ServerStart),
                HistoryEntry::new(at(0), HistoryEvent::PbxLinkUp),
                status(1, 0),
                status(10, 4),
            ])
            .await
            .expect("append");
        let sales = Department::parse("Sales").expect("department");
        let ask = || TimeInStateRequest {
            range: TimeRange::new(at(5), at(20)).expect("range"),
            now: at(3600),
            department: None,
            extensions: [(ext("1001"), sales.clone())].into_iter().collect(),
        };
        let seconds =
            |t: &TimeInState, p: Presence| t.extension("1001").expect("1001").status_ms(p) / 1000;
        let first = store.time_in_state(ask()).await.expect("first");
        assert_eq!(seconds(&first, Presence::Online), 5);
        assert_eq!(store.time_in_state(ask()).await.expect("again"), first);

        // A late entry before the window's start: offline from 00:03, so at the start too.
        store
            .append_history(&[status(3, 4)])
            .await
            .expect("late entry");
        let late = store
            .time_in_state(ask())
            .await
            .expect("after the late entry");
        assert_eq!(seconds(&late, Presence::Online), 0);
        assert_eq!(seconds(&late, Presence::Offline), 15);

        // Pruning the start and the link: nothing is known before the window any more.
        assert_eq!(store.prune_history(at(4), 100).await.expect("prune"), 4);
        let pruned = store.time_in_state(ask()).await.expect("after pruning");
        assert_eq!(seconds(&pruned, Presence::Unknown), 15);
    }

    #[test]
    fn every_kind_round_trips() {
        for (i, event) in every_kind().into_iter().enumerate() {
            let mut buf = Vec::new();
            encode(&event, &mut buf).expect("encode");
            let ms = 1_700_000_000_000 + i64::try_from(i).expect("small");
            let back = decode(ms, &buf).expect("decode");
            assert_eq!(back.event, event);
            assert_eq!(back.at.timestamp_millis(), ms);
            // What time in state reads, borrowed, is the same event.
            assert_eq!(
                decode_ref(ms, &buf).expect("decode_ref"),
                EventRef::of(&event)
            );
        }
    }

    #[test]
    fn state_keys_separate_kinds_extensions_and_queues() {
        let keys: Vec<Vec<u8>> = every_kind()
            .iter()
            .map(|e| {
                let mut buf = Vec::new();
                encode(e, &mut buf).expect("encode");
                state_key(0, &buf).expect("key").to_vec()
            })
            .collect();
        let unique: std::collections::HashSet<&Vec<u8>> = keys.iter().collect();
        // The two calls are of different extensions: every key differs.
        assert_eq!(unique.len(), keys.len());
    }

    #[test]
    fn damaged_values_are_named() {
        let mut buf = Vec::new();
        encode(&every_kind()[1], &mut buf).expect("encode");
        let err = decode(5, &buf[..buf.len() - 1]).expect_err("short");
        assert!(err.to_string().contains("history entry at 5 ms"), "{err}");
        let err = decode(5, &[42]).expect_err("kind");
        assert!(err.to_string().contains("unknown kind 42"), "{err}");
        let err = decode_ref(5, &buf[..buf.len() - 1]).expect_err("short, borrowed");
        assert!(err.to_string().contains("history entry at 5 ms"), "{err}");
        let err = decode_ref(5, &[42]).expect_err("kind, borrowed");
        assert!(err.to_string().contains("unknown kind 42"), "{err}");
        buf.push(0);
        let err = decode(5, &buf).expect_err("long");
        assert!(err.to_string().contains("bytes left"), "{err}");
    }

    #[test]
    fn status_history_of_layout_1_is_moved_and_reads() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("extstatus.redb");
        {
            let db = Database::create(&file).expect("create");
            let txn = db.begin_write().expect("txn");
            {
                let mut old = txn.open_table(HISTORY).expect("old table");
                old.insert((1_000i64, 0u64), ("1001", -1, 0)).expect("row");
                old.insert((2_000i64, 1u64), ("1002", 0, 1)).expect("row");
            }
            txn.commit().expect("commit");
        }
        let opened = super::super::tables::open(dir.path(), &file).expect("open");
        assert_eq!(opened.next_seq, 2);
        assert_eq!(count(&opened.db).expect("count"), 2);
        let t = |ms| chrono::DateTime::from_timestamp_millis(ms).expect("time");
        let all = read(&opened.db, None, t(0), t(5_000), usize::MAX).expect("read");
        // A limit stops the read at the oldest entries.
        let first = read(&opened.db, None, t(0), t(5_000), 1).expect("read");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].at, t(1_000));
        assert!(
            read(&opened.db, None, t(0), t(5_000), 0)
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            all,
            vec![
                HistoryEntry::new(
                    t(1_000),
                    HistoryEvent::Status {
                        extension: ext("1001"),
                        previous_code: -1,
                        code: 0
                    }
                ),
                HistoryEntry::new(
                    t(2_000),
                    HistoryEvent::Status {
                        extension: ext("1002"),
                        previous_code: 0,
                        code: 1
                    }
                ),
            ]
        );
        let txn = opened.db.begin_read().expect("read");
        let names: Vec<String> = txn
            .list_tables()
            .expect("tables")
            .map(|t| t.name().to_owned())
            .collect();
        assert!(!names.iter().any(|n| n == "history"), "{names:?}");
    }

    #[test]
    fn a_string_too_long_is_refused() {
        let event = HistoryEvent::Presence {
            extension: ext("10"),
            state: "x".repeat(70_000),
            subtype: None,
            message: None,
        };
        let err = encode(&event, &mut Vec::new()).expect_err("too long");
        assert!(err.to_string().contains("state is 70000 bytes"), "{err}");
    }
}
