//! `store`: where extension records live, behind one [`Repository`] contract with two backends.
//!
//! * [`EmbeddedStore`] (feature `embedded`, the default): one redb file under a data
//!   directory; every user edit is durable when its call returns, status changes (soft
//!   state) within a second.
//! * [`MongoStore`] (feature `mongodb`): the official driver, the `extensions` and
//!   `extension_status_history` collections; status changes are single conditional updates.
//!   Only [`MongoStore`] and [`MongoConfig`] are public: the documents it sends are private,
//!   so no `bson` type is part of this crate's API.
//!
//! Both decide status changes with [`domain::decide`], write status changes at once and in
//! order, and coalesce `last_seen` refreshes through one shared batcher (at most one write per
//! extension per interval). [`WriteCounters`] count writes by cause.
//!
//! [`cluster`] is what several api-server instances share through one MongoDB (the AMI lease,
//! the change log that orders every change for all of them, shared documents, commands for the
//! lease holder): [`Repository::cluster`] answers it on MongoDB, and `None` on the embedded
//! store, which belongs to one process.
//!
//! With feature `cli`, [`cli::StoreArgs`] declares the store's flags, environment variables
//! and file keys once, for the binaries to flatten; [`Secret`] is the workspace's one type for a
//! value that must never be printed.
//!
//! This crate deliberately does not read configuration or environment variables, install a
//! tracing subscriber, validate user input (the `domain` types arrive validated), speak HTTP, or
//! know about AMI; callers pass explicit config structs and a shutdown token.

mod batcher;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
mod counters;
#[cfg(feature = "embedded")]
mod embedded;
mod error;
mod id;
#[cfg(feature = "mongodb")]
mod mongo;
mod secret;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::analytics::{TimeInState, TimeInStateQuery};
use domain::callcenter::CallCenterView;
use domain::{
    Department, Extension, ExtensionFilter, ExtensionNumber, ExtensionPatch, HistoryEntry,
    NewExtension, NoWrite, Observation, RecordId, TimeRange, Timestamp,
};
use tokio_util::sync::CancellationToken;

pub use counters::WriteCounters;
#[cfg(feature = "embedded")]
pub use embedded::{DB_FILE_NAME, EmbeddedStore};
pub use error::{Cause, OutcomeUnknown, StoreError};
#[cfg(feature = "mongodb")]
pub use mongo::{MongoConfig, MongoStore, check_database_name, check_uri};
pub use secret::Secret;

/// What applying one observation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusEffect {
    /// The status code really changed: the status fields, `last_status_change` and (for a
    /// reported observation) `last_seen` were written, with one history entry.
    Changed {
        /// The code before the change.
        previous_code: i32,
    },
    /// Same code as stored: only `last_seen` moves, through the coalescing batcher.
    SeenOnly,
    /// Nothing to write: the observation was older than the stored state, or the extension was
    /// already unknown.
    Ignored(NoWrite),
}

/// The result of [`Repository::apply_status`]: what happened, and the record as it now stands
/// (what a server broadcasts after a change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusOutcome {
    /// What was written.
    pub effect: StatusEffect,
    /// The record after the observation, with any pending `last_seen` laid over it.
    pub record: Extension,
}

impl StatusOutcome {
    /// Whether the status code really changed (and so must be broadcast as a status update).
    pub fn is_change(&self) -> bool {
        matches!(self.effect, StatusEffect::Changed { .. })
    }
}

/// The result of [`Repository::update`]: the record as it now stands, and whether the edit
/// changed anything. An edit that sets the values already stored writes nothing, leaves
/// `updatedAt` alone, and is no news to broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// The record after the edit.
    pub record: Extension,
    /// Whether a field really changed (and so the record was written and `updatedAt` moved).
    pub changed: bool,
}

/// The repository contract every backend fulfils, and the one test suite checks.
///
/// Object safe, so a server picks the backend at run time and holds an
/// `Arc<dyn Repository>`.
#[async_trait]
pub trait Repository: Send + Sync {
    /// `"embedded"` or `"mongodb"`, for health reports and metrics labels.
    fn backend_name(&self) -> &'static str;

    /// Checks that the backend answers and takes writes: the embedded store answers with a
    /// durable commit, and fails while its writer is refusing writes after a failed commit
    /// (until it has reopened the file), so `/readyz` reports that outage.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every record that passes `filter`, sorted by extension number in [`ExtensionNumber`]'s
    /// order (by value, so `999` comes before `1001`).
    async fn list(&self, filter: &ExtensionFilter) -> Result<Vec<Extension>, StoreError>;

    /// The record with this id.
    async fn get(&self, id: &RecordId) -> Result<Option<Extension>, StoreError>;

    /// The record with this extension number.
    async fn get_by_extension(
        &self,
        extension: &ExtensionNumber,
    ) -> Result<Option<Extension>, StoreError>;

    /// Creates a record (status unknown until the PBX reports). A taken extension number is
    /// [`StoreError::Conflict`]. Durable when it returns.
    async fn create(&self, new: NewExtension) -> Result<Extension, StoreError>;

    /// Changes the user-editable fields and says whether anything changed; `updatedAt` moves
    /// only then. [`StoreError::NotFound`] when there is no such record. Durable when it
    /// returns.
    async fn update(
        &self,
        id: &RecordId,
        patch: ExtensionPatch,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Deletes a record and returns it as it was. Its status history stays.
    /// [`StoreError::NotFound`] when there is no such record. Durable when it returns.
    async fn delete(&self, id: &RecordId) -> Result<Extension, StoreError>;

    /// Applies one observation of the PBX: [`domain::decide`] says what changes; a status
    /// change is written at once (record and history entry), a same-code observation only
    /// refreshes `last_seen` through the batcher. [`StoreError::NotFound`] for an extension
    /// the store does not hold.
    async fn apply_status(
        &self,
        extension: &ExtensionNumber,
        observation: Observation,
    ) -> Result<StatusOutcome, StoreError>;

    /// Applies many observations in order, as [`Repository::apply_status`] does one by one.
    /// A backend may write them together (the embedded one commits them in one transaction),
    /// which makes a full state list or a burst of events much cheaper.
    async fn apply_statuses(
        &self,
        observations: &[(ExtensionNumber, Observation)],
    ) -> Vec<Result<StatusOutcome, StoreError>> {
        let mut out = Vec::with_capacity(observations.len());
        for (extension, observation) in observations {
            out.push(self.apply_status(extension, *observation).await);
        }
        out
    }

    /// Sets the call-center fields of an extension (`queues`, `presence`, `call`) to what the
    /// PBX says now. Only those fields are written, in one write, and only when they differ
    /// from what is stored: `changed` says whether they did. The status fields,
    /// `last_status_change` and `updatedAt` stay as they are. [`StoreError::NotFound`] for an
    /// extension the store does not hold. Durable when it returns.
    async fn set_call_center(
        &self,
        extension: &ExtensionNumber,
        view: &CallCenterView,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Sets the call-center fields of many extensions, in order, as
    /// [`Repository::set_call_center`] does one by one. A backend may write them together
    /// (the embedded one commits them in one transaction).
    async fn set_call_centers(
        &self,
        views: &[(ExtensionNumber, CallCenterView)],
    ) -> Vec<Result<UpdateOutcome, StoreError>> {
        let mut out = Vec::with_capacity(views.len());
        for (extension, view) in views {
            out.push(self.set_call_center(extension, view).await);
        }
        out
    }

    /// Records that the PBX reported these extensions at `at`, without a status change. The
    /// writes are coalesced: at most one per extension per interval. Extensions the store does
    /// not hold are ignored, and `last_seen` never moves backwards.
    async fn touch_last_seen(
        &self,
        extensions: &[ExtensionNumber],
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Appends history entries that are not status changes (those are written with the change
    /// itself): the PBX-link and server markers and the call-center changes. They are ordered
    /// after every write queued before them. Durable when it returns.
    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError>;

    /// The history from `from` to `to` (both inclusive), of one extension (with the markers,
    /// which bound what is known for every extension) or of all, oldest first (entries of the same
    /// millisecond in the order they were written). An empty list when `from` is after `to`.
    async fn history(
        &self,
        extension: Option<&ExtensionNumber>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Like [`Repository::history`], but at most `limit` entries, the oldest: what an answer can
    /// hold. The default reads them all and cuts; a backend may stop reading at the limit.
    async fn history_limited(
        &self,
        extension: Option<&ExtensionNumber>,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut entries = self.history(extension, from, to).await?;
        entries.truncate(limit);
        Ok(entries)
    }

    /// What [`domain::analytics::time_in_state`] needs for `range`: the state at its start
    /// (for each extension and kind, and each queue for pauses, the last entry before `from`,
    /// and the last of each marker kind) and the entries from `from` on, oldest first, up to
    /// and including the first one at or after `to`.
    async fn history_window(&self, range: TimeRange) -> Result<HistoryWindow, StoreError>;

    /// Time in state over `request.range`, computed from the stored history. The default reads
    /// [`Repository::history_window`] and makes the pass on a blocking thread (it takes up to
    /// a second for millions of entries, which would hold up every other request of the
    /// caller's thread); a backend may stream the entries instead.
    async fn time_in_state(&self, request: TimeInStateRequest) -> Result<TimeInState, StoreError> {
        let window = self.history_window(request.range).await?;
        tokio::task::spawn_blocking(move || {
            let query = TimeInStateQuery {
                range: request.range,
                now: request.now,
                department: request.department.as_ref(),
                extensions: &request.extensions,
                prior: &window.prior,
            };
            domain::analytics::time_in_state(&query, &window.entries)
        })
        .await
        .map_err(|e| StoreError::internal(format!("the time-in-state pass failed: {e}")))
    }

    /// Deletes at most `batch` history entries older than `before`, oldest first, in one short
    /// write, and says how many it deleted; call it again until it answers less than `batch`.
    /// A status write never waits for more than one batch.
    async fn prune_history(&self, before: Timestamp, batch: usize) -> Result<u64, StoreError>;

    /// Writes the pending `last_seen` refreshes now (call it on graceful shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    /// The write counters so far.
    fn counters(&self) -> WriteCounters;

    /// What several api-server instances share through this store (the AMI lease, the change
    /// log, shared documents, commands for the lease holder), or `None` when the backend
    /// belongs to one process (the embedded store). Makes no round trip: the backend prepares
    /// what it needs on first use.
    fn cluster(&self, options: cluster::ClusterOptions) -> Option<Arc<dyn cluster::Cluster>> {
        let _ = options;
        None
    }
}

/// The history around a window, as [`Repository::history_window`] returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryWindow {
    /// The state at the window's start: the last entry before `from` of each extension, kind
    /// and queue, and of each marker kind, oldest first.
    pub prior: Vec<HistoryEntry>,
    /// The entries from `from` on, oldest first, up to and including the first at or after
    /// `to`.
    pub entries: Vec<HistoryEntry>,
}

/// What [`Repository::time_in_state`] computes: an owned [`TimeInStateQuery`] without the
/// prior entries, which the store reads.
#[derive(Clone, Debug)]
pub struct TimeInStateRequest {
    /// The window `[from, to)`.
    pub range: TimeRange,
    /// The current time; a window reaching past it is clipped to it.
    pub now: Timestamp,
    /// Only extensions of this department, when given.
    pub department: Option<Department>,
    /// Every extension to report and its department.
    pub extensions: BTreeMap<ExtensionNumber, Department>,
}

/// Settings every backend shares.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How often pending `last_seen` refreshes are written (at most one write per extension
    /// per interval). Default one second.
    pub last_seen_interval: Duration,
    /// When cancelled, the store writes what is pending one last time and stops its background
    /// task. Dropping the store stops the task as well.
    pub shutdown: CancellationToken,
    /// How long history is kept, when the backend expires it itself (MongoDB: a TTL index on
    /// the entry's time). `None` keeps it until [`Repository::prune_history`] deletes it.
    pub history_retention: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            last_seen_interval: Duration::from_secs(1),
            shutdown: CancellationToken::new(),
            history_retention: None,
        }
    }
}

/// Which backend to open, as a binary's configuration chooses it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Backend {
    /// The embedded store, in `<data_dir>/extstatus.redb`.
    #[cfg(feature = "embedded")]
    Embedded {
        /// The data directory; created if missing.
        data_dir: std::path::PathBuf,
    },
    /// A MongoDB server.
    #[cfg(feature = "mongodb")]
    MongoDb(MongoConfig),
}

/// Opens the chosen backend. Must be called inside a tokio runtime (it starts the batcher
/// task).
pub async fn open(
    backend: &Backend,
    options: StoreOptions,
) -> Result<Arc<dyn Repository>, StoreError> {
    match backend {
        #[cfg(feature = "embedded")]
        Backend::Embedded { data_dir } => {
            let store = EmbeddedStore::open(data_dir, options).await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mongodb")]
        Backend::MongoDb(config) => {
            let store = MongoStore::connect(config, options).await?;
            Ok(Arc::new(store))
        }
        #[allow(unreachable_patterns)]
        _ => Err(StoreError::internal("no backend is compiled in")),
    }
}

/// Every record of the chosen backend, read without creating or writing anything (no data
/// directory, file, collection or index): what `seeder --dry-run` compares its input with.
/// A store that does not exist yet holds no records.
pub async fn read_records(backend: &Backend) -> Result<Vec<Extension>, StoreError> {
    match backend {
        #[cfg(feature = "embedded")]
        Backend::Embedded { data_dir } => EmbeddedStore::read_records(data_dir).await,
        #[cfg(feature = "mongodb")]
        Backend::MongoDb(config) => MongoStore::read_records(config).await,
        #[allow(unreachable_patterns)]
        _ => Err(StoreError::internal("no backend is compiled in")),
    }
}

/// Sorts records by extension number, in [`ExtensionNumber`]'s order.
pub(crate) fn sort_records(records: &mut [Extension]) {
    records.sort_unstable_by(|a, b| a.extension.cmp(&b.extension));
}
