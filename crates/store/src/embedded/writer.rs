//! The embedded store's single writer thread: every mutation is decided here, against the
//! in-memory state, and whatever queued up meanwhile is committed in one transaction (group
//! commit), in arrival order.
//!
//! A group holding a user edit (or history markers) is committed durably (fsynced) before it
//! is answered, and the cache changes only after that commit succeeded, so no reader sees such
//! a write while it could still fail. Status changes, call-center views and `last_seen`
//! batches are soft state, which the PBX re-derives after any restart (its lists after every
//! reconnect): a group of only those is decided, applied to the cache and answered at once, and written to the file
//! later, together with the ones after it ([`Unwritten`]): at most [`SOFT_WRITE_DELAY`] after
//! the first, within the next group that commits anyway, before a history read (a
//! [`Edit::Barrier`]) and when the writer stops. A commit of a few hundred rows costs about
//! what one of a single row does, so a stream of single status changes no longer pays a
//! transaction each. They become durable at the latest [`DURABLE_EVERY`] after the first was
//! answered: an empty durable commit made after the group that found it due was answered (or
//! when the thread wakes for it), and when the writer stops. redb holds a non-durable commit
//! only in this process's memory, so a crash already lost up to a second of soft state; the
//! delay adds nothing to that. A `ping` proves that the disk takes durable commits: it is
//! committed durably unless a durable commit succeeded within [`PING_COVERED`], so a stream of
//! statuses costs one fsync a second, not one for the timer and one for the health probe.
//!
//! One thread owning every write keeps the decisions race-free without a lock held across an
//! await. The thread locks the writer's state for each job; while it has nothing queued and
//! its lock is free, a group of status observations is decided, applied and answered on the
//! caller's own thread instead (`Writer::try_soft`: no hand-over to the thread and back, no
//! IO, the same order), and the thread is told only when that moved its next timer earlier.
//!
//! After a failed commit (a full disk, a failing device) redb refuses every later write until
//! the file is reopened. The writer then answers every write with the failure at once, and
//! reopens the file itself, with backoff ([`REOPEN_FIRST`] doubling up to [`REOPEN_MAX`]): it
//! drops its `Database` (so the file's lock is released), opens the same path again, and
//! rewrites every record's status and call-center rows from the cache in one durable commit,
//! which brings back the soft commits the failure may have lost. Only then does it take writes
//! again. Nothing acknowledged is lost: user edits were durable before they were answered, and
//! their cache changes only after their commit succeeded; soft writes answered before a failed
//! commit are in the cache, and the rewrite brings them back (with the history entries of
//! those not yet written).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use domain::callcenter::CallCenterView;
use domain::{
    Extension, ExtensionNumber, ExtensionPatch, HistoryEntry, HistoryEvent, NewExtension,
    Observation, RecordId, Timestamp, decide,
};
use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;

use super::history::{self as entries, ENTRIES};
use super::tables::{self, CALLCENTER, Cache, RECORDS, STATUS, millis};
use crate::batcher::LastSeenBatcher;
use crate::counters::Counters;
use crate::error::StoreError;
use crate::{StatusEffect, StatusOutcome, UpdateOutcome, id};

/// Queued requests are gathered into one commit until they hold this many observations, so
/// that one transaction stays small and the first caller is not kept waiting too long. (One
/// `apply_statuses` call is never split: its observations commit together.)
const MAX_GROUP: usize = 8192;

/// Non-durable status commits are made durable at least this often, so that a crash loses at
/// most this much soft state (which the next `ExtensionStateList` repairs anyway).
pub(super) const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// A `ping` within this long after a successful durable commit is answered from it, without a
/// durable commit of its own.
const PING_COVERED: Duration = Duration::from_secs(2);

/// Soft writes (status changes and `last_seen` batches) answered before they are written wait
/// at most this long for the file...
pub(super) const SOFT_WRITE_DELAY: Duration = Duration::from_millis(50);

/// ...or until this many rows wait.
const SOFT_WRITE_MAX: usize = 4096;

/// After a failed commit, the first attempt to reopen the file waits this long (meanwhile
/// every write and `ping` fails at once, so `/readyz` reports the outage)...
pub(super) const REOPEN_FIRST: Duration = Duration::from_millis(500);

/// ...and each failed attempt doubles the wait, up to this.
pub(super) const REOPEN_MAX: Duration = Duration::from_secs(5);

/// The open database, shared by the writer thread and the history reads. Empty while the
/// writer reopens the file after a failed commit.
pub(super) type DbSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// Takes the database out of the slot, or says why there is none.
pub(super) fn current_db(slot: &DbSlot) -> Result<Arc<Database>, StoreError> {
    slot.read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or_else(|| StoreError::unavailable("the embedded store is reopening its file"))
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One request to the writer thread.
pub(super) enum Job {
    /// A user edit or status observations: decided in order and group-committed.
    Edit(Edit),
    /// A `last_seen` batch: written on its own, touching only the fixed-width status rows.
    LastSeen {
        batch: Vec<(ExtensionNumber, Timestamp)>,
        /// Answered with the number of records written.
        reply: Reply<u64>,
    },
    /// Soft writes were taken on a caller's thread (`Writer::try_soft`) and moved a timer
    /// earlier: look at the timers again.
    Wake,
}

/// A request decided against the staged state of its group.
pub(super) enum Edit {
    Create {
        new: NewExtension,
        at: Timestamp,
        reply: Reply<Extension>,
    },
    Update {
        id: RecordId,
        patch: ExtensionPatch,
        at: Timestamp,
        reply: Reply<UpdateOutcome>,
    },
    Delete {
        id: RecordId,
        reply: Reply<Extension>,
    },
    Status {
        items: Vec<(ExtensionNumber, Observation)>,
        reply: oneshot::Sender<Vec<Result<StatusOutcome, StoreError>>>,
    },
    CallCenter {
        items: Vec<(ExtensionNumber, CallCenterView)>,
        reply: oneshot::Sender<Vec<Result<UpdateOutcome, StoreError>>>,
    },
    /// History entries to append (markers, call-center changes), after everything queued
    /// before them.
    History {
        entries: Vec<HistoryEntry>,
        reply: Reply<()>,
    },
    Ping {
        reply: Reply<()>,
    },
    /// Answered once every soft write answered before it is in the file (committed, not
    /// necessarily durable): what a history read asks first, so it sees every entry whose
    /// change was published.
    Barrier {
        reply: Reply<()>,
    },
}

impl Edit {
    fn weight(&self) -> usize {
        match self {
            Edit::Status { items, .. } => items.len(),
            Edit::CallCenter { items, .. } => items.len(),
            Edit::History { entries, .. } => entries.len(),
            _ => 1,
        }
    }

    /// Whether it must be durable before it is answered: everything but the PBX's state
    /// (statuses and call-center views: soft state, re-derived from the PBX's lists after
    /// every reconnect), barriers and a ping covered by a recent durable commit.
    fn needs_fsync(&self, ping_covered: bool) -> bool {
        match self {
            Edit::Status { .. } | Edit::CallCenter { .. } | Edit::Barrier { .. } => false,
            Edit::Ping { .. } => !ping_covered,
            _ => true,
        }
    }

    /// Whether it can be answered before anything is written: the PBX's state, and a ping
    /// that needs no durable commit.
    fn is_soft(&self, ping_covered: bool) -> bool {
        match self {
            Edit::Status { .. } | Edit::CallCenter { .. } => true,
            Edit::Ping { .. } => ping_covered,
            _ => false,
        }
    }
}

/// The handle the store keeps: a queue into the thread, the writer's state (which the thread
/// locks for each job, and a caller may take for a group of soft writes while the thread has
/// nothing queued), and the thread to join on drop so that the file is closed (and its lock
/// released) when the store is gone.
pub(super) struct Writer {
    tx: Option<Sender<Job>>,
    state: Arc<Mutex<WriterState>>,
    /// Jobs sent and not yet finished by the thread (decremented under the state's lock).
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn spawn(state: WriterState) -> Result<Self, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let state = Arc::new(Mutex::new(state));
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = {
            let state = Arc::clone(&state);
            let queued = Arc::clone(&queued);
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || run(&state, &rx, &queued))
                .map_err(|e| StoreError::Internal {
                    cause: crate::error::cause(e),
                })?
        };
        Ok(Self {
            tx: Some(tx),
            state,
            queued,
            thread: Some(thread),
        })
    }

    pub(super) fn send(&self, job: Job) -> Result<(), StoreError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self.tx.as_ref().and_then(|tx| tx.send(job).ok());
        if sent.is_none() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent.ok_or_else(stopped)
    }

    /// Decides, applies and answers status observations on the caller's thread, without the
    /// hand-over to the writer thread and back, when that changes nothing but the cost: the
    /// thread is not busy (its lock is free), nothing sent before is still queued (so nothing
    /// is overtaken), and the file is not broken. Soft writes do no IO here: their rows wait
    /// for the thread, which is woken when they move its next timer earlier. Otherwise the
    /// observations are handed back, to go through the queue.
    #[allow(clippy::type_complexity, reason = "the items back, or their answers")]
    pub(super) fn try_soft(
        &self,
        items: Vec<(ExtensionNumber, Observation)>,
    ) -> Result<Vec<Result<StatusOutcome, StoreError>>, Vec<(ExtensionNumber, Observation)>> {
        let Ok(mut state) = self.state.try_lock() else {
            return Err(items);
        };
        if self.queued.load(Ordering::SeqCst) != 0 || state.broken.is_some() {
            return Err(items);
        }
        let before = state.next_timer();
        let (reply, mut answer) = oneshot::channel();
        state.process(vec![Edit::Status { items, reply }]);
        let after = state.next_timer();
        let full = state.unwritten.len() >= SOFT_WRITE_MAX;
        drop(state);
        // `None` is "never": an earlier deadline, or a first one, is news to the thread, and
        // so are rows enough to be written now.
        if full || after.is_some_and(|a| before.is_none_or(|b| a < b)) {
            // A store whose thread is gone answers the next call with the error.
            let _ = self.send(Job::Wake);
        }
        Ok(answer.try_recv().unwrap_or_else(|_| Vec::new()))
    }
}

/// The writer thread: takes the jobs in order, gathers what queued up behind the first into
/// one group, and wakes for its timers.
fn run(state: &Mutex<WriterState>, rx: &Receiver<Job>, queued: &AtomicUsize) {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    // A `last_seen` batch met while gathering a group waits for the next round, so that it
    // is written on its own and after everything queued before it.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => {
                let timer = {
                    let mut s = lock();
                    s.reopen_if_due();
                    s.next_timer()
                };
                match timer {
                    None => match rx.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    },
                    Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => {
                            lock().write_if_due();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                }
            }
        };
        let mut s = lock();
        // A job that arrives while the file is due to be reopened finds it reopened.
        s.reopen_if_due();
        let first = match first {
            Job::LastSeen { batch, reply } => {
                s.write_last_seen(&batch, reply);
                s.write_if_due();
                queued.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            Job::Wake => {
                s.write_if_due();
                queued.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            Job::Edit(edit) => edit,
        };
        let mut weight = first.weight();
        let mut group = vec![first];
        while weight < MAX_GROUP {
            match rx.try_recv() {
                Ok(Job::Edit(edit)) => {
                    weight += edit.weight();
                    group.push(edit);
                }
                Ok(Job::Wake) => {
                    queued.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(last_seen) => {
                    carried = Some(last_seen);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            };
        }
        let n = group.len();
        s.process(group);
        s.write_if_due();
        queued.fetch_sub(n, Ordering::SeqCst);
    }
    let mut s = lock();
    if s.soft_since.is_some() || s.broken.is_some() || !s.unwritten.is_empty() {
        s.reopen_if_due_now();
        s.persist();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after it has finished what is queued.
        self.tx.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the embedded store's writer thread panicked");
        }
    }
}

/// The error a caller sees when the writer is gone (the store is closing, or it crashed).
pub(super) fn stopped() -> StoreError {
    StoreError::unavailable("the embedded store's writer has stopped")
}

/// Everything the writer thread owns or shares.
pub(super) struct WriterState {
    pub(super) db: DbSlot,
    /// The database file, reopened after a failed commit.
    pub(super) file: PathBuf,
    /// Set by a failed commit, cleared once the file is reopened and rewritten.
    pub(super) broken: Option<Broken>,
    pub(super) cache: Arc<RwLock<Cache>>,
    pub(super) batcher: Arc<LastSeenBatcher>,
    pub(super) counters: Arc<Counters>,
    pub(super) next_seq: u64,
    /// Soft writes answered but not yet in the file.
    pub(super) unwritten: Unwritten,
    /// Since when soft writes (answered, in the file or not) are waiting for a durable
    /// commit, if any are.
    pub(super) soft_since: Option<Instant>,
    /// When the last durable commit succeeded, since the file was (re)opened.
    pub(super) last_durable: Option<Instant>,
    /// Told (after the commit) when history is written before the table's end, so a cached
    /// state at a window's start is not used again.
    pub(super) prior_cache: Arc<entries::PriorCache>,
}

/// The writer after a failed commit: every write is refused with `error` until the file is
/// reopened.
pub(super) struct Broken {
    error: StoreError,
    /// When to try to reopen next.
    next_try: Instant,
    /// How long to wait after the next failed attempt.
    backoff: Duration,
}

/// Soft writes decided, applied to the cache and answered, but not yet written to the file:
/// the next commit writes them, whatever else it holds.
#[derive(Default)]
pub(super) struct Unwritten {
    /// Records whose status row is to be written, from the cache.
    status: HashSet<RecordId>,
    /// Records whose call-center row is to be written, from the cache.
    callcenter: HashSet<RecordId>,
    history: Vec<HistoryRow>,
    /// When the first of them was answered.
    since: Option<Instant>,
}

impl Unwritten {
    fn is_empty(&self) -> bool {
        self.status.is_empty() && self.callcenter.is_empty() && self.history.is_empty()
    }

    fn len(&self) -> usize {
        self.status.len() + self.callcenter.len() + self.history.len()
    }

    fn due(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= SOFT_WRITE_DELAY)
    }
}

/// A history entry to write.
struct HistoryRow {
    at: i64,
    seq: u64,
    event: HistoryEvent,
}

/// Which parts of a staged record must be written: user edits touch the `extensions` row,
/// status changes and `last_seen` batches only the fixed-width `status` row, call-center
/// changes only the `callcenter` row.
#[derive(Clone, Copy, Debug, Default)]
struct Dirty {
    user: bool,
    status: bool,
    callcenter: bool,
}

const USER: Dirty = Dirty {
    user: true,
    status: false,
    callcenter: false,
};
const STATUS_ONLY: Dirty = Dirty {
    user: false,
    status: true,
    callcenter: false,
};
const CALLCENTER_ONLY: Dirty = Dirty {
    user: false,
    status: false,
    callcenter: true,
};

/// A record as the group leaves it: `None` when deleted.
struct Staged {
    record: Option<Extension>,
    dirty: Dirty,
}

/// The group's changes on top of the committed cache.
struct Stage<'c> {
    cache: &'c Cache,
    by_id: HashMap<RecordId, Staged>,
    by_extension: HashMap<ExtensionNumber, Option<RecordId>>,
    history: Vec<HistoryRow>,
}

impl<'c> Stage<'c> {
    fn new(cache: &'c Cache) -> Self {
        Self {
            cache,
            by_id: HashMap::new(),
            by_extension: HashMap::new(),
            history: Vec::new(),
        }
    }

    fn get(&self, id: &RecordId) -> Option<&Extension> {
        match self.by_id.get(id) {
            Some(staged) => staged.record.as_ref(),
            None => self.cache.by_id.get(id),
        }
    }

    fn id_of(&self, ext: &ExtensionNumber) -> Option<&RecordId> {
        match self.by_extension.get(ext) {
            Some(staged) => staged.as_ref(),
            None => self.cache.by_extension.get(ext),
        }
    }

    fn by_extension(&self, ext: &ExtensionNumber) -> Option<&Extension> {
        self.id_of(ext).and_then(|id| self.get(id))
    }

    /// Stages a changed record whose extension number stays what it was.
    fn put(&mut self, record: Extension, parts: Dirty) {
        match self.by_id.get_mut(&record.id) {
            Some(staged) => {
                staged.record = Some(record);
                staged.dirty.user |= parts.user;
                staged.dirty.status |= parts.status;
                staged.dirty.callcenter |= parts.callcenter;
            }
            None => {
                self.by_id.insert(
                    record.id.clone(),
                    Staged {
                        record: Some(record),
                        dirty: parts,
                    },
                );
            }
        }
    }

    /// Stages a new record, taking its extension number.
    fn create(&mut self, record: Extension) {
        self.by_extension
            .insert(record.extension.clone(), Some(record.id.clone()));
        self.put(record, USER);
    }

    fn remove(&mut self, record: &Extension) {
        self.by_extension.insert(record.extension.clone(), None);
        self.by_id.insert(
            record.id.clone(),
            Staged {
                record: None,
                dirty: Dirty::default(),
            },
        );
    }

    fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.history.is_empty()
    }
}

/// Who waits for a record: a creation or deletion wants the record, an update also whether it
/// changed anything (which is whether it wrote).
enum RecordReply {
    Record(Reply<Extension>),
    Update(Reply<UpdateOutcome>),
}

impl RecordReply {
    fn send(self, result: Result<Extension, StoreError>, wrote: bool) {
        // A caller that stopped waiting is no concern of the writer.
        match self {
            RecordReply::Record(reply) => drop(reply.send(result)),
            RecordReply::Update(reply) => drop(reply.send(result.map(|record| UpdateOutcome {
                record,
                changed: wrote,
            }))),
        }
    }
}

/// An answer held back until the group is committed.
enum Pending {
    Record {
        reply: RecordReply,
        result: Result<Extension, StoreError>,
        wrote: bool,
    },
    Status {
        reply: oneshot::Sender<Vec<Result<StatusOutcome, StoreError>>>,
        results: Vec<Result<StatusOutcome, StoreError>>,
    },
    CallCenter {
        reply: oneshot::Sender<Vec<Result<UpdateOutcome, StoreError>>>,
        results: Vec<Result<UpdateOutcome, StoreError>>,
    },
    Unit {
        reply: Reply<()>,
        result: Result<(), StoreError>,
    },
}

/// What the group will count once it is committed.
#[derive(Default)]
struct Tally {
    user_edits: u64,
    status_changes: u64,
    call_center_changes: u64,
    settled: Vec<(ExtensionNumber, Timestamp)>,
    deleted: Vec<ExtensionNumber>,
}

impl WriterState {
    /// When the thread must wake without a job: to write the soft writes waiting for the
    /// file, to make soft commits durable, or to reopen the file after a failed commit.
    fn next_timer(&self) -> Option<Instant> {
        match &self.broken {
            Some(broken) => Some(broken.next_try),
            None => {
                let write = self.unwritten.since.map(|since| since + SOFT_WRITE_DELAY);
                let persist = self.soft_since.map(|since| since + DURABLE_EVERY);
                write.into_iter().chain(persist).min()
            }
        }
    }

    /// The database to write to, or the failure that stops every write until the file is
    /// reopened.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        match &self.broken {
            Some(broken) => Err(broken.error.clone()),
            None => current_db(&self.db),
        }
    }

    /// Notes a failed commit: redb refuses every later write until the file is reopened,
    /// which is tried after [`REOPEN_FIRST`] and then with backoff.
    fn failed(&mut self, error: &StoreError) {
        self.last_durable = None;
        if self.broken.is_none() {
            tracing::warn!(error = %error, file = %self.file.display(),
                "embedded store: a commit failed; refusing writes until the file is reopened");
            self.broken = Some(Broken {
                error: StoreError::unavailable(format!(
                    "a write to the embedded store failed ({error}); it reopens its file and \
                     takes writes again once the disk does"
                )),
                next_try: Instant::now() + REOPEN_FIRST,
                backoff: REOPEN_FIRST * 2,
            });
        }
    }

    /// Reopens the file if a commit failed and the backoff has passed.
    fn reopen_if_due(&mut self) {
        if self
            .broken
            .as_ref()
            .is_some_and(|b| b.next_try <= Instant::now())
        {
            self.reopen();
        }
    }

    /// One last attempt when the writer stops, whatever the backoff.
    fn reopen_if_due_now(&mut self) {
        if self.broken.is_some() {
            self.reopen();
        }
    }

    /// Drops the database, opens the same file again and rewrites every record's status and
    /// call-center rows from the cache in one durable commit. On failure, waits longer before
    /// the next try.
    fn reopen(&mut self) {
        // Dropping the last handle closes the file and releases its lock; a history read that
        // still holds one makes the open below fail as locked, and it is tried again later.
        self.db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match self.reopen_and_rewrite() {
            Ok((db, next_seq)) => {
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                // What a failed commit left is not known: nothing cached is trusted.
                self.prior_cache.history_rewritten();
                self.next_seq = self.next_seq.max(next_seq);
                self.broken = None;
                // Every status and call-center row was rewritten from the cache, the unwritten
                // history with them.
                self.committed(true);
                tracing::info!(file = %self.file.display(),
                    "embedded store: file reopened after a failed commit; writes resume");
            }
            Err(e) => {
                if let Some(broken) = &mut self.broken {
                    tracing::warn!(error = %e, retry_in = ?broken.backoff,
                        "embedded store: reopening the file failed");
                    broken.error = StoreError::unavailable(format!(
                        "a write to the embedded store failed and reopening its file failed \
                         ({e}); it tries again in {:?}",
                        broken.backoff
                    ));
                    broken.next_try = Instant::now() + broken.backoff;
                    broken.backoff = (broken.backoff * 2).min(REOPEN_MAX);
                }
            }
        }
    }

    fn reopen_and_rewrite(&self) -> Result<(Database, u64), StoreError> {
        use tables::storage_error as e;
        let dir = self.file.parent().unwrap_or(&self.file);
        let opened = tables::open(dir, &self.file)?;
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        // User edits are durable before they are answered, so the file holds exactly the
        // records the cache has; anything else is a bug worth a loud line.
        if opened.cache.by_id.len() != cache.by_id.len()
            || !cache
                .by_id
                .keys()
                .all(|id| opened.cache.by_id.contains_key(id))
        {
            tracing::error!(
                file = %self.file.display(),
                in_file = opened.cache.by_id.len(),
                in_memory = cache.by_id.len(),
                "embedded store: after reopening, the file's records differ from memory"
            );
        }
        let mut txn = opened.db.begin_write().map_err(e)?;
        txn.set_durability(Durability::Immediate).map_err(e)?;
        {
            let mut status = txn.open_table(STATUS).map_err(e)?;
            let mut callcenter = txn.open_table(CALLCENTER).map_err(e)?;
            for (id, record) in &cache.by_id {
                status
                    .insert(id.as_str(), tables::encode_status(record))
                    .map_err(e)?;
                let bytes = tables::encode_callcenter(record)?;
                callcenter
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(e)?;
            }
            // The history of soft writes that were answered but never reached the file.
            if !self.unwritten.history.is_empty() {
                let mut history = txn.open_table(ENTRIES).map_err(e)?;
                insert_history(&mut history, &self.unwritten.history)?;
            }
        }
        txn.commit().map_err(e)?;
        self.counters.commit();
        Ok((opened.db, opened.next_seq))
    }

    /// Whether soft commits have waited long enough for a durable one.
    fn durable_due(&self) -> bool {
        self.soft_since
            .is_some_and(|t| t.elapsed() >= DURABLE_EVERY)
    }

    /// Writes the soft writes that have waited long enough, durably when soft writes have
    /// waited long enough for that: called after the answers of a group went out, so no
    /// status waits for the commit it triggers, and when the thread wakes for it.
    fn write_if_due(&mut self) {
        if self.broken.is_some() {
            return;
        }
        if self.durable_due() {
            self.persist();
        } else if self.unwritten.due() || self.unwritten.len() >= SOFT_WRITE_MAX {
            self.write_unwritten(false);
        }
    }

    /// Whether a ping can be answered from the last durable commit.
    fn ping_covered(&self) -> bool {
        self.broken.is_none()
            && self
                .last_durable
                .is_some_and(|t| t.elapsed() < PING_COVERED)
    }

    /// Notes a successful commit, which wrote whatever soft writes were unwritten: a durable
    /// one persists every soft one before it.
    fn committed(&mut self, durable: bool) {
        self.unwritten = Unwritten::default();
        if durable {
            self.soft_since = None;
            self.last_durable = Some(Instant::now());
            self.counters.durable_commit();
        } else if self.soft_since.is_none() {
            self.soft_since = Some(Instant::now());
        }
    }

    /// A durable commit of whatever soft writes are still unwritten (empty when none are),
    /// which persists every soft write before it.
    fn persist(&mut self) {
        self.write_unwritten(true);
    }

    /// Commits the unwritten soft writes on their own, durably when asked.
    fn write_unwritten(&mut self, durable: bool) {
        let cache = Arc::clone(&self.cache);
        let guard = cache.read().unwrap_or_else(PoisonError::into_inner);
        let result = self.commit(&Stage::new(&guard), durable);
        drop(guard);
        match result {
            Ok(()) => self.committed(durable),
            // Kept (as soft) until the file is reopened, which rewrites every status and
            // call-center row and the unwritten history.
            Err(e) => {
                tracing::error!(error = %e, durable, "embedded store: writing soft writes failed");
                self.soft_since = Some(Instant::now());
                self.failed(&e);
            }
        }
    }

    /// Takes rows that are now in the cache and answered as soft writes to be written.
    fn defer(
        &mut self,
        status: impl IntoIterator<Item = RecordId>,
        callcenter: impl IntoIterator<Item = RecordId>,
        history: Vec<HistoryRow>,
    ) {
        let before = self.unwritten.len();
        self.unwritten.status.extend(status);
        self.unwritten.callcenter.extend(callcenter);
        self.unwritten.history.extend(history);
        if self.unwritten.len() > before {
            let now = Instant::now();
            self.unwritten.since.get_or_insert(now);
            self.soft_since.get_or_insert(now);
        }
    }

    /// Takes a `last_seen` batch: the times of records whose time in the cache is older go
    /// into the cache and their status rows are written with the next commit. No record is
    /// cloned or re-encoded here. Refused, like every write, while the file is broken.
    fn write_last_seen(&mut self, batch: &[(ExtensionNumber, Timestamp)], reply: Reply<u64>) {
        let result = self.db().map(|_| {
            let mut written = Vec::new();
            let mut guard = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            let cache = &mut *guard;
            for (ext, at) in batch {
                let Some(id) = cache.by_extension.get(ext) else {
                    continue;
                };
                if let Some(record) = cache.by_id.get_mut(id) {
                    // A status change may already have taken a newer time.
                    if record.last_seen < Some(*at) {
                        record.last_seen = Some(*at);
                        written.push(id.clone());
                    }
                }
            }
            written
        });
        let result = result.map(|written| {
            let n = u64::try_from(written.len()).unwrap_or(u64::MAX);
            self.defer(written, [], Vec::new());
            n
        });
        let _ = reply.send(result);
    }

    fn process(&mut self, group: Vec<Edit>) {
        let cache = Arc::clone(&self.cache);
        let guard = cache.read().unwrap_or_else(PoisonError::into_inner);
        let mut stage = Stage::new(&guard);
        let mut tally = Tally::default();
        let covered = self.ping_covered();
        let durable = group.iter().any(|edit| edit.needs_fsync(covered));
        // A group of soft writes is answered before it is written, unless the file is broken:
        // then it is refused, like every write, by the commit that cannot be made.
        let deferred = self.broken.is_none() && group.iter().all(|edit| edit.is_soft(covered));
        let answers: Vec<Pending> = group
            .into_iter()
            .map(|job| self.decide(job, &mut stage, &mut tally))
            .collect();

        // Whatever commits writes the unwritten soft writes with it. A ping proves the disk
        // takes a durable commit, even when nothing else is written.
        let writes = !deferred && (durable || !stage.is_empty() || !self.unwritten.is_empty());
        let committed = if writes {
            self.commit(&stage, durable)
        } else {
            Ok(())
        };
        let Stage {
            by_id,
            by_extension,
            history,
            ..
        } = stage;
        drop(guard);

        if committed.is_ok() && writes {
            self.committed(durable);
        }
        match committed {
            Ok(()) => {
                let (mut status_rows, mut callcenter_rows) = (Vec::new(), Vec::new());
                if !by_id.is_empty() {
                    let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
                    for (id, staged) in by_id {
                        match staged.record {
                            Some(record) => {
                                if deferred && staged.dirty.status {
                                    status_rows.push(id.clone());
                                }
                                if deferred && staged.dirty.callcenter {
                                    callcenter_rows.push(id.clone());
                                }
                                cache.by_id.insert(id, record)
                            }
                            None => cache.by_id.remove(&id),
                        };
                    }
                    for (ext, id) in by_extension {
                        match id {
                            Some(id) => cache.by_extension.insert(ext, id),
                            None => cache.by_extension.remove(&ext),
                        };
                    }
                }
                for (ext, at) in &tally.settled {
                    self.batcher.settle(ext, *at);
                }
                for ext in &tally.deleted {
                    self.batcher.forget(ext);
                }
                self.counters.user_edits(tally.user_edits);
                self.counters.status_changes(tally.status_changes);
                self.counters.call_center_changes(tally.call_center_changes);
                if deferred {
                    self.defer(status_rows, callcenter_rows, history);
                }
                for answer in answers {
                    self.answer(answer, None);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store commit failed");
                self.failed(&e);
                for answer in answers {
                    self.answer(answer, Some(&e));
                }
            }
        }
    }

    /// Sends one answer; after a failed commit, every answer that depended on a write becomes
    /// that error. A caller that stopped waiting is no concern of the writer.
    fn answer(&self, answer: Pending, failed: Option<&StoreError>) {
        match answer {
            Pending::Record {
                reply,
                result,
                wrote,
            } => {
                let result = match (failed, wrote) {
                    (Some(e), true) => Err(e.clone()),
                    _ => result.map(|mut r| {
                        self.batcher.overlay(&mut r);
                        r
                    }),
                };
                reply.send(result, wrote);
            }
            Pending::Status { reply, results } => {
                let results = results
                    .into_iter()
                    .map(|r| match (failed, r) {
                        (Some(e), Ok(o)) if o.is_change() => Err(e.clone()),
                        (_, r) => r.map(|mut o| {
                            self.batcher.overlay(&mut o.record);
                            o
                        }),
                    })
                    .collect();
                let _ = reply.send(results);
            }
            Pending::CallCenter { reply, results } => {
                let results = results
                    .into_iter()
                    .map(|r| match (failed, r) {
                        (Some(e), Ok(o)) if o.changed => Err(e.clone()),
                        (_, r) => r.map(|mut o| {
                            self.batcher.overlay(&mut o.record);
                            o
                        }),
                    })
                    .collect();
                let _ = reply.send(results);
            }
            Pending::Unit { reply, result } => {
                let result = match failed {
                    Some(e) => Err(e.clone()),
                    None => result,
                };
                let _ = reply.send(result);
            }
        }
    }

    fn decide(&mut self, edit: Edit, stage: &mut Stage<'_>, tally: &mut Tally) -> Pending {
        match edit {
            Edit::Create { new, at, reply } => {
                let (result, wrote) = match stage.id_of(&new.extension) {
                    Some(_) => (
                        Err(StoreError::Conflict {
                            extension: new.extension,
                        }),
                        false,
                    ),
                    None => {
                        // Ids carry 5 random bytes and a counter, so a clash with a record
                        // from an earlier process is next to impossible; it would overwrite
                        // that record, so it is checked all the same.
                        let mut record_id = id::new_id(at);
                        while stage.get(&record_id).is_some() {
                            record_id = id::new_id(at);
                        }
                        let record = Extension::create(record_id, new, at);
                        stage.create(record.clone());
                        tally.user_edits += 1;
                        (Ok(record), true)
                    }
                };
                Pending::Record {
                    reply: RecordReply::Record(reply),
                    result,
                    wrote,
                }
            }
            Edit::Update {
                id,
                patch,
                at,
                reply,
            } => {
                let (result, wrote) = match stage.get(&id) {
                    None => (Err(StoreError::NotFound), false),
                    Some(current) => {
                        let mut record = current.clone();
                        let changed = record.apply_patch(&patch, at);
                        if changed {
                            stage.put(record.clone(), USER);
                            tally.user_edits += 1;
                        }
                        (Ok(record), changed)
                    }
                };
                Pending::Record {
                    reply: RecordReply::Update(reply),
                    result,
                    wrote,
                }
            }
            Edit::Delete { id, reply } => {
                let (result, wrote) = match stage.get(&id).cloned() {
                    None => (Err(StoreError::NotFound), false),
                    Some(record) => {
                        stage.remove(&record);
                        tally.user_edits += 1;
                        tally.deleted.push(record.extension.clone());
                        (Ok(record), true)
                    }
                };
                Pending::Record {
                    reply: RecordReply::Record(reply),
                    result,
                    wrote,
                }
            }
            Edit::Status { items, reply } => {
                let results = items
                    .into_iter()
                    .map(|(ext, obs)| self.decide_status(&ext, obs, stage, tally))
                    .collect();
                Pending::Status { reply, results }
            }
            Edit::CallCenter { items, reply } => {
                let results = items
                    .into_iter()
                    .map(|(ext, view)| {
                        let current = stage.by_extension(&ext).ok_or(StoreError::NotFound)?;
                        if CallCenterView::of(current) == view {
                            return Ok(UpdateOutcome {
                                record: current.clone(),
                                changed: false,
                            });
                        }
                        let mut record = current.clone();
                        view.apply_to(&mut record);
                        // Pause, presence and call changes are history, in the same commit.
                        let entries = domain::history::call_center_changes(
                            &ext,
                            &CallCenterView::of(current),
                            &view,
                            domain::now(),
                        );
                        for entry in entries {
                            stage.history.push(HistoryRow {
                                at: millis(entry.at),
                                seq: self.next_seq,
                                event: entry.event,
                            });
                            self.next_seq += 1;
                        }
                        stage.put(record.clone(), CALLCENTER_ONLY);
                        tally.call_center_changes += 1;
                        Ok(UpdateOutcome {
                            record,
                            changed: true,
                        })
                    })
                    .collect();
                Pending::CallCenter { reply, results }
            }
            Edit::History { entries, reply } => {
                for entry in entries {
                    stage.history.push(HistoryRow {
                        at: millis(entry.at),
                        seq: self.next_seq,
                        event: entry.event,
                    });
                    self.next_seq += 1;
                }
                Pending::Unit {
                    reply,
                    result: Ok(()),
                }
            }
            Edit::Ping { reply } | Edit::Barrier { reply } => Pending::Unit {
                reply,
                result: Ok(()),
            },
        }
    }

    fn decide_status(
        &mut self,
        ext: &ExtensionNumber,
        obs: Observation,
        stage: &mut Stage<'_>,
        tally: &mut Tally,
    ) -> Result<StatusOutcome, StoreError> {
        let current = stage.by_extension(ext).ok_or(StoreError::NotFound)?.clone();
        let mut view = current.status_view();
        view.last_seen = view.last_seen.max(self.batcher.pending(ext));
        match decide(&view, &obs) {
            Err(no_write) => Ok(StatusOutcome {
                effect: StatusEffect::Ignored(no_write),
                record: current,
            }),
            Ok(write) => match write.change {
                None => {
                    if let Some(seen) = write.last_seen {
                        self.batcher.touch(ext, seen);
                    }
                    Ok(StatusOutcome {
                        effect: StatusEffect::SeenOnly,
                        record: current,
                    })
                }
                Some(change) => {
                    let mut record = current;
                    record.apply_status(&write);
                    stage.history.push(HistoryRow {
                        at: millis(change.at),
                        seq: self.next_seq,
                        event: HistoryEvent::Status {
                            extension: ext.clone(),
                            previous_code: change.previous_code,
                            code: change.status_code,
                        },
                    });
                    self.next_seq += 1;
                    stage.put(record.clone(), STATUS_ONLY);
                    tally.status_changes += 1;
                    if let Some(seen) = write.last_seen {
                        tally.settled.push((ext.clone(), seen));
                    }
                    Ok(StatusOutcome {
                        effect: StatusEffect::Changed {
                            previous_code: change.previous_code,
                        },
                        record,
                    })
                }
            },
        }
    }

    /// Writes the unwritten soft writes, then the staged records and history, in one
    /// transaction, durable when it returns if `durable`.
    fn commit(&self, stage: &Stage<'_>, durable: bool) -> Result<(), StoreError> {
        use tables::storage_error as e;
        let db = self.db()?;
        let mut rewrites = false;
        let mut txn = db.begin_write().map_err(e)?;
        txn.set_durability(durability(durable)).map_err(e)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(e)?;
            let mut status = txn.open_table(STATUS).map_err(e)?;
            let mut callcenter = txn.open_table(CALLCENTER).map_err(e)?;
            // First, so that a record the stage writes again or deletes ends as the stage
            // leaves it (the cache already holds every unwritten status).
            for id in &self.unwritten.status {
                if let Some(record) = stage.cache.by_id.get(id) {
                    status
                        .insert(id.as_str(), tables::encode_status(record))
                        .map_err(e)?;
                }
            }
            for id in &self.unwritten.callcenter {
                if let Some(record) = stage.cache.by_id.get(id) {
                    let bytes = tables::encode_callcenter(record)?;
                    callcenter
                        .insert(id.as_str(), bytes.as_slice())
                        .map_err(e)?;
                }
            }
            for (id, staged) in &stage.by_id {
                let key = id.as_str();
                match &staged.record {
                    Some(record) => {
                        let dirty = staged.dirty;
                        if dirty.user {
                            let bytes = tables::encode_user(record)?;
                            records.insert(key, bytes.as_slice()).map_err(e)?;
                        }
                        if dirty.status {
                            status
                                .insert(key, tables::encode_status(record))
                                .map_err(e)?;
                        }
                        if dirty.callcenter {
                            let bytes = tables::encode_callcenter(record)?;
                            callcenter.insert(key, bytes.as_slice()).map_err(e)?;
                        }
                    }
                    None => {
                        records.remove(key).map_err(e)?;
                        status.remove(key).map_err(e)?;
                        callcenter.remove(key).map_err(e)?;
                    }
                }
            }
            let rows = || self.unwritten.history.iter().chain(&stage.history);
            if rows().next().is_some() {
                let mut history = txn.open_table(ENTRIES).map_err(e)?;
                // An entry before the table's end changes what was known at earlier times.
                let end = history.last().map_err(e)?.map(|(k, _)| k.value().0);
                rewrites = end.is_some_and(|end| rows().any(|h| h.at < end));
                insert_history(&mut history, rows())?;
            }
        }
        txn.commit().map_err(e)?;
        self.counters.commit();
        if rewrites {
            self.prior_cache.history_rewritten();
        }
        Ok(())
    }
}

/// Inserts history rows, encoded in place. A row that cannot be encoded (a value longer than
/// the format holds, a kind it has no encoding for) is dropped and logged: history is a
/// record of what happened, and one unwritable entry must never fail the commit that carries
/// status changes, call-center views and other entries with it.
fn insert_history<'r>(
    table: &mut redb::Table<'_, (i64, u64), &[u8]>,
    rows: impl IntoIterator<Item = &'r HistoryRow>,
) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(64);
    for h in rows {
        buf.clear();
        if let Err(error) = entries::encode(&h.event, &mut buf) {
            tracing::warn!(
                %error,
                kind = h.event.kind(),
                "a history entry the embedded store cannot encode was dropped; the rest of \
                 the commit is written"
            );
            continue;
        }
        table
            .insert((h.at, h.seq), buf.as_slice())
            .map_err(tables::storage_error)?;
    }
    Ok(())
}

fn durability(durable: bool) -> Durability {
    if durable {
        Durability::Immediate
    } else {
        Durability::None
    }
}
