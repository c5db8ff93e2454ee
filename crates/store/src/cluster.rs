//! What several api-server instances share through one database: the AMI lease, the change log
//! that gives every change one order for all instances, small shared documents, and AMI
//! commands handed to the lease holder.
//!
//! The types are backend-neutral; only the MongoDB backend implements [`Cluster`]
//! ([`crate::Repository::cluster`] answers `None` for the embedded store, which belongs to one
//! process).
//!
//! Correctness never depends on clocks agreeing between instances: every lease write bumps
//! [`LeaseState::version`], and an instance decides that a holder is gone by watching the
//! version stay the same for the lease time on its own monotonic clock. The times stored
//! (`since`, `renewed_at`, `at`) are for people reading the database, and for the TTL indexes.

use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use domain::Timestamp;
use futures_util::stream::BoxStream;

use crate::StoreError;

/// The AMI lease as stored: who holds it, under which term, and a version bumped by every write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The instance that holds the lease; `None` after it was released (anyone may take it).
    pub holder: Option<String>,
    /// Rises by one with every take, so an old holder's renewals are refused.
    pub term: u64,
    /// Rises by one with every write (take, renewal, release): the one thing an instance
    /// watches to decide whether the holder is alive.
    pub version: u64,
    /// When the current term began, by the clock of the instance that took it.
    pub since: Timestamp,
    /// When the lease was last written, by the clock of the instance that wrote it.
    pub renewed_at: Timestamp,
}

/// One change-log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedChange {
    /// The entry's place in the one order all instances share.
    pub seq: u64,
    /// When it was appended, by the appender's clock (what the TTL index expires it by).
    pub at: Timestamp,
    /// The instance that appended it.
    pub instance: String,
    /// What the appender wrote, untouched.
    pub payload: String,
}

/// How a backend runs the shared state of several instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// How long change-log entries are kept (a TTL index on their time). Pending AMI commands
    /// expire after the same time.
    pub change_log_retention: Duration,
    /// The name of the lease document (`"ami"`).
    pub lease_name: String,
}

impl Default for ClusterOptions {
    /// One day of change log, and the lease `"ami"`.
    fn default() -> Self {
        Self {
            change_log_retention: Duration::from_secs(24 * 3600),
            lease_name: "ami".into(),
        }
    }
}

/// The state several api-server instances share. Every write is acknowledged by a majority of
/// the replica set (journaled), so a failover never loses a lease or a change an instance was
/// told about.
#[async_trait]
pub trait Cluster: Send + Sync + std::fmt::Debug {
    /// The lease as stored; `None` before anyone ever took it.
    async fn lease_state(&self) -> Result<Option<LeaseState>, StoreError>;

    /// Takes the lease for `instance` only if it still is exactly as `seen` (same version;
    /// `None` = no lease document yet). The new term is the old term + 1 (1 for the first).
    /// `Ok(None)`: someone else moved first.
    async fn take_lease(
        &self,
        instance: &str,
        seen: Option<&LeaseState>,
    ) -> Result<Option<LeaseState>, StoreError>;

    /// Renews: succeeds (`Ok(Some(new state))`) only while `holder == instance` and the term
    /// is `term`; bumps `version`. `Ok(None)`: the lease is no longer ours.
    async fn renew_lease(
        &self,
        instance: &str,
        term: u64,
    ) -> Result<Option<LeaseState>, StoreError>;

    /// Gives the lease up if still ours (holder `None`, version bumped) so another instance can
    /// take it at once. Says whether it was ours.
    async fn release_lease(&self, instance: &str, term: u64) -> Result<bool, StoreError>;

    /// Appends `payloads`, in their order, under sequence numbers that the database orders
    /// (a unique `_id`), and returns the numbers of the first and the last. The log as a whole
    /// never has a hole or a duplicate, even with concurrent appenders; the payloads of one
    /// call follow each other in their order, consecutively unless another appender raced this
    /// one (then its entries may sit between them, and the range is longer than `payloads`).
    /// When the log is empty the first number is the current time in microseconds, so numbers
    /// never restart after the log was pruned. An empty `payloads` is an error.
    async fn append_changes(
        &self,
        instance: &str,
        payloads: Vec<String>,
    ) -> Result<RangeInclusive<u64>, StoreError>;

    /// Entries with `seq > after`, ascending, at most `limit`.
    async fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedChange>, StoreError>;

    /// The highest and the lowest sequence numbers held, in that order; `None` when the log is
    /// empty.
    async fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError>;

    /// A wake-up stream when the server has change streams (a MongoDB replica set): each item
    /// means "new entries may be there, read them with [`Cluster::changes_after`]". The stream
    /// ends when the server breaks it; watch again or poll then. `Ok(None)` when the server
    /// has none (DocumentDB, a standalone mongod): the caller polls.
    async fn watch_changes(&self) -> Result<Option<BoxStream<'static, ()>>, StoreError>;

    /// Writes a small shared document (e.g. the holder's queue statistics for `/api/queues` on
    /// the other instances), replacing what `key` held.
    async fn put_shared(&self, key: &str, json: String) -> Result<(), StoreError>;

    /// The shared document under `key` and when it was written (by the writer's clock).
    async fn get_shared(&self, key: &str) -> Result<Option<(String, Timestamp)>, StoreError>;

    /// Queues an AMI command asked on an instance that does not hold the link (e.g. a pause),
    /// for the holder to run; returns its id.
    async fn submit_command(&self, instance: &str, payload: String) -> Result<String, StoreError>;

    /// Claims up to `limit` pending commands for `instance`, oldest first, as `(id, payload)`.
    /// Each command is claimed once, by one instance, atomically.
    async fn claim_commands(
        &self,
        instance: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Stores the result of a claimed command. [`StoreError::NotFound`] for an unknown (or
    /// expired) id; completing a command nobody claimed is an error.
    async fn complete_command(&self, id: &str, result: String) -> Result<(), StoreError>;

    /// The result of a command: `None` while it is pending or running,
    /// [`StoreError::NotFound`] for an unknown (or expired) id.
    async fn command_result(&self, id: &str) -> Result<Option<String>, StoreError>;
}
