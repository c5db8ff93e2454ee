//! The embedded backend: one redb file, `<data-dir>/extstatus.redb`, owned by one process.
//!
//! Reads are served from an in-memory copy of the records (10,000 records are a few megabytes),
//! so listing and the status decision never touch the disk. Every mutation goes to one writer
//! thread, which commits whatever has queued up in one transaction (group commit): durably
//! (fsynced), and before answering, when it holds a user edit; status changes alone are soft
//! state, answered once decided, written to the file within 50 ms (before any history read)
//! and made durable within a second. `last_seen` refreshes go through the shared batcher and
//! are written at most once per extension per interval.

mod history;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use async_trait::async_trait;
use domain::analytics::TimeInState;
use domain::callcenter::CallCenterView;
use domain::{
    Extension, ExtensionFilter, ExtensionNumber, ExtensionPatch, HistoryEntry, NewExtension,
    Observation, RecordId, TimeRange, Timestamp,
};
use tokio::sync::oneshot;
use tokio_util::sync::DropGuard;

use self::tables::Cache;
use self::writer::{DbSlot, Edit, Job, Writer, WriterState, current_db, stopped};
use crate::batcher::{self, LastSeenBatcher, LastSeenSink};
use crate::counters::{Counters, WriteCounters};
use crate::error::{StoreError, cause};
use crate::{
    HistoryWindow, Repository, StatusOutcome, StoreOptions, TimeInStateRequest, UpdateOutcome,
    sort_records,
};

/// Runs a blocking read (or a short prune) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal { cause: cause(e) })?
}

/// The name of the database file inside the data directory.
pub const DB_FILE_NAME: &str = "extstatus.redb";

/// The embedded store. Cloning is cheap and shares the same open file; the file is closed (and
/// its lock released) when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    file: PathBuf,
    db: DbSlot,
    cache: Arc<RwLock<Cache>>,
    batcher: Arc<LastSeenBatcher>,
    counters: Arc<Counters>,
    prior_cache: Arc<history::PriorCache>,
    writer: Writer,
    // Stops the flusher task when the store is dropped without a shutdown signal.
    _stop_flusher: DropGuard,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("file", &self.inner.file)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, creating the directory if needed, and loads
    /// every record. An unusable directory or file is [`StoreError::InvalidPath`]; a file that
    /// another process (or another store in this process) holds open is
    /// [`StoreError::Locked`]; both name the path. Must run inside a tokio runtime.
    pub async fn open(
        data_dir: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let dir = data_dir.as_ref().to_path_buf();
        let file = dir.join(DB_FILE_NAME);
        let opened = {
            let file = file.clone();
            tokio::task::spawn_blocking(move || tables::open(&dir, &file))
                .await
                .map_err(|e| StoreError::Internal { cause: cause(e) })??
        };
        let db: DbSlot = Arc::new(RwLock::new(Some(Arc::new(opened.db))));
        let cache = Arc::new(RwLock::new(opened.cache));
        let counters = Arc::new(Counters::default());
        let batcher = Arc::new(LastSeenBatcher::new(counters.clone()));
        let prior_cache = Arc::new(history::PriorCache::default());
        let writer = Writer::spawn(WriterState {
            db: db.clone(),
            file: file.clone(),
            broken: None,
            cache: cache.clone(),
            batcher: batcher.clone(),
            counters: counters.clone(),
            next_seq: opened.next_seq,
            unwritten: Default::default(),
            soft_since: None,
            last_durable: None,
            prior_cache: prior_cache.clone(),
        })?;
        let stop = options.shutdown.child_token();
        let inner = Arc::new(Inner {
            file,
            db,
            cache,
            batcher,
            counters,
            prior_cache,
            writer,
            _stop_flusher: stop.clone().drop_guard(),
        });
        batcher::spawn_flusher(Arc::downgrade(&inner), options.last_seen_interval, stop);
        tracing::info!(file = %inner.file.display(), "embedded store open");
        Ok(Self { inner })
    }

    /// Every record of the store in `data_dir`, in [`domain::ExtensionNumber`]'s order, read
    /// without creating or changing anything (for `seeder --dry-run`): a missing directory or
    /// file holds no records and is not created, the file is opened read-only and an older
    /// layout is not upgraded. A file another process holds open is [`StoreError::Locked`].
    pub async fn read_records(data_dir: impl AsRef<Path>) -> Result<Vec<Extension>, StoreError> {
        let file = data_dir.as_ref().join(DB_FILE_NAME);
        let cache = tokio::task::spawn_blocking(move || tables::read_only(&file))
            .await
            .map_err(|e| StoreError::Internal { cause: cause(e) })??;
        let mut records: Vec<Extension> = cache.by_id.into_values().collect();
        crate::sort_records(&mut records);
        Ok(records)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.file
    }
}

impl Inner {
    fn cache(&self) -> RwLockReadGuard<'_, Cache> {
        // Only the writer thread writes, and it leaves the cache consistent at every step.
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    async fn call<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(job(tx))?;
        rx.await.map_err(|_| stopped())
    }

    /// Status observations, decided on this thread when the writer is idle
    /// ([`Writer::try_soft`]), else through its queue.
    async fn statuses(
        &self,
        items: Vec<(ExtensionNumber, Observation)>,
    ) -> Result<Vec<Result<StatusOutcome, StoreError>>, StoreError> {
        match self.writer.try_soft(items) {
            Ok(results) => Ok(results),
            Err(items) => {
                self.call(|reply| Job::Edit(Edit::Status { items, reply }))
                    .await
            }
        }
    }

    /// Waits until every soft write answered so far is in the file, so that a history read
    /// after it sees the entries of every change already published.
    async fn barrier(&self) -> Result<(), StoreError> {
        self.call(|reply| Job::Edit(Edit::Barrier { reply }))
            .await?
    }

    fn overlaid(&self, record: Option<Extension>) -> Option<Extension> {
        record.map(|mut r| {
            self.batcher.overlay(&mut r);
            r
        })
    }
}

#[async_trait]
impl LastSeenSink for Inner {
    fn batcher(&self) -> &LastSeenBatcher {
        &self.batcher
    }

    async fn write_last_seen(
        &self,
        batch: &[(ExtensionNumber, Timestamp)],
    ) -> Result<u64, StoreError> {
        let batch = batch.to_vec();
        self.call(|reply| Job::LastSeen { batch, reply }).await?
    }
}

#[async_trait]
impl Repository for EmbeddedStore {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .call(|reply| Job::Edit(Edit::Ping { reply }))
            .await?
    }

    async fn list(&self, filter: &ExtensionFilter) -> Result<Vec<Extension>, StoreError> {
        let mut records: Vec<Extension> = self
            .inner
            .cache()
            .by_id
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        self.inner.batcher.overlay_all(&mut records);
        sort_records(&mut records);
        Ok(records)
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Extension>, StoreError> {
        let record = self.inner.cache().by_id.get(id).cloned();
        Ok(self.inner.overlaid(record))
    }

    async fn get_by_extension(
        &self,
        extension: &ExtensionNumber,
    ) -> Result<Option<Extension>, StoreError> {
        let record = self.inner.cache().by_extension(extension).cloned();
        Ok(self.inner.overlaid(record))
    }

    async fn create(&self, new: NewExtension) -> Result<Extension, StoreError> {
        let at = domain::now();
        self.inner
            .call(|reply| Job::Edit(Edit::Create { new, at, reply }))
            .await?
    }

    async fn update(
        &self,
        id: &RecordId,
        patch: ExtensionPatch,
    ) -> Result<UpdateOutcome, StoreError> {
        let at = domain::now();
        let id = id.clone();
        self.inner
            .call(|reply| {
                Job::Edit(Edit::Update {
                    id,
                    patch,
                    at,
                    reply,
                })
            })
            .await?
    }

    async fn delete(&self, id: &RecordId) -> Result<Extension, StoreError> {
        let id = id.clone();
        self.inner
            .call(|reply| Job::Edit(Edit::Delete { id, reply }))
            .await?
    }

    async fn apply_status(
        &self,
        extension: &ExtensionNumber,
        observation: Observation,
    ) -> Result<StatusOutcome, StoreError> {
        let mut results = self
            .inner
            .statuses(vec![(extension.clone(), observation)])
            .await?;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::internal("the writer returned no outcome")))
    }

    async fn apply_statuses(
        &self,
        observations: &[(ExtensionNumber, Observation)],
    ) -> Vec<Result<StatusOutcome, StoreError>> {
        if observations.is_empty() {
            return Vec::new();
        }
        match self.inner.statuses(observations.to_vec()).await {
            Ok(results) => results,
            Err(e) => observations.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn set_call_center(
        &self,
        extension: &ExtensionNumber,
        view: &CallCenterView,
    ) -> Result<UpdateOutcome, StoreError> {
        let items = vec![(extension.clone(), view.clone())];
        let mut results = self
            .inner
            .call(|reply| Job::Edit(Edit::CallCenter { items, reply }))
            .await?;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::internal("the writer returned no outcome")))
    }

    async fn set_call_centers(
        &self,
        views: &[(ExtensionNumber, CallCenterView)],
    ) -> Vec<Result<UpdateOutcome, StoreError>> {
        if views.is_empty() {
            return Vec::new();
        }
        let items = views.to_vec();
        match self
            .inner
            .call(|reply| Job::Edit(Edit::CallCenter { items, reply }))
            .await
        {
            Ok(results) => results,
            Err(e) => views.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn touch_last_seen(
        &self,
        extensions: &[ExtensionNumber],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let at = domain::record::truncate(at);
        let known: Vec<&ExtensionNumber> = {
            let cache = self.inner.cache();
            extensions
                .iter()
                .filter(|e| cache.by_extension.contains_key(*e))
                .collect()
        };
        self.inner.batcher.touch_many(known, at);
        Ok(())
    }

    async fn history(
        &self,
        extension: Option<&ExtensionNumber>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_limited(extension, from, to, usize::MAX).await
    }

    async fn history_limited(
        &self,
        extension: Option<&ExtensionNumber>,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.barrier().await?;
        let db = current_db(&self.inner.db)?;
        let extension = extension.cloned();
        blocking(move || history::read(&db, extension.as_ref(), from, to, limit)).await
    }

    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.inner
            .call(|reply| Job::Edit(Edit::History { entries, reply }))
            .await?
    }

    async fn history_window(&self, range: TimeRange) -> Result<HistoryWindow, StoreError> {
        self.inner.barrier().await?;
        let db = current_db(&self.inner.db)?;
        blocking(move || history::window(&db, range)).await
    }

    async fn time_in_state(&self, request: TimeInStateRequest) -> Result<TimeInState, StoreError> {
        self.inner.barrier().await?;
        let db = current_db(&self.inner.db)?;
        let prior_cache = self.inner.prior_cache.clone();
        blocking(move || {
            history::time_in_state_from(
                &db,
                &prior_cache,
                request.range,
                request.now,
                request.department.as_ref(),
                &request.extensions,
            )
        })
        .await
    }

    async fn prune_history(&self, before: Timestamp, batch: usize) -> Result<u64, StoreError> {
        let db = current_db(&self.inner.db)?;
        let deleted = blocking(move || history::prune(&db, before, batch.max(1))).await?;
        if deleted > 0 {
            // What was known at a time may have gone with the deleted entries.
            self.inner.prior_cache.history_rewritten();
        }
        Ok(deleted)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        batcher::flush(&*self.inner).await
    }

    fn counters(&self) -> WriteCounters {
        self.inner.counters.snapshot()
    }
}
