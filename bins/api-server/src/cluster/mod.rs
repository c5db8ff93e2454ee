//! Several api-server instances over one MongoDB database (cluster mode; issue #15). On with
//! the MongoDB store, off with the embedded one (which belongs to one process and runs none of
//! this).
//!
//! * [`lease`]: the AMI lease as a pure state machine. Only the holder runs the AMI client and
//!   the pipeline, and it stops before any other instance may take over.
//! * [`task`]: runs the machine against the store: renews, watches, takes over (markers, the
//!   link announced down, then connect and resync), hands over on a graceful stop.
//! * [`follower`]: every instance reads the change log and publishes each entry into its hub
//!   under the log's number, merged by field group, so all hubs publish the same records under
//!   the same numbers and a `?resume=N` works on any instance.
//!
//! * [`remote`]: what only the holder knows in memory, for the others: its queue statistics
//!   (a shared document) and pauses asked on another instance (commands the holder runs).
//!
//! The writer ([`crate::writer`]) appends instead of publishing, and checks the lease's
//! [`Fence`] before every PBX write and append.

pub mod follower;
pub mod lease;
pub mod remote;
pub mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The cluster as request handlers see it: this instance's status and the shared state.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    /// This instance's view of the lease and the log.
    pub status: Arc<ClusterStatus>,
    /// The shared state in the database.
    pub store: Arc<dyn store::cluster::Cluster>,
}

/// The lease holder's deadline, as the writer reads it before every PBX write: an instant on
/// this process's monotonic clock, or none when this instance does not hold the lease.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` until which PBX writes are allowed; 0: not the holder.
    until: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl Fence {
    /// Sets the deadline (`None`: not the holder).
    pub fn set(&self, until: Option<Instant>) {
        let nanos = until.map_or(0, |u| {
            u64::try_from(u.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1)
        });
        self.until.store(nanos, Relaxed);
    }

    /// Whether PBX writes are allowed now.
    pub fn valid_now(&self) -> bool {
        let until = self.until.load(Relaxed);
        let now =
            u64::try_from(Instant::now().duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        until != 0 && now < until
    }
}

/// What `/readyz` and `/metrics` say about the cluster.
#[derive(Debug, Default)]
pub struct ClusterStatus {
    /// This instance's name.
    pub instance: String,
    holder: AtomicBool,
    holder_id: Mutex<Option<String>>,
    /// The last number this instance's hub published from the log (the follower sends it;
    /// the writer waits on it so that an edit is answered once its own board shows it).
    published: tokio::sync::watch::Sender<u64>,
    log_end: AtomicU64,
    poll_errors: AtomicU64,
    append_errors: AtomicU64,
    fenced: AtomicU64,
    takeovers: AtomicU64,
    holes: AtomicU64,
}

/// A copy of [`ClusterStatus`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterReport {
    /// This instance's name (`--instance-id`).
    pub instance: String,
    /// Whether this instance holds the AMI lease (runs the PBX link).
    pub holder: bool,
    /// The holder as this instance last read it, or null when none.
    pub holder_id: Option<String>,
    /// The last change-log number this instance's hub published.
    pub last_seq: u64,
    /// Change-log entries not read yet (the log's end, read every second, minus `last_seq`).
    pub lag: u64,
    /// Failed reads of the change log.
    pub poll_errors: u64,
    /// Appends to the change log that failed after retries.
    pub append_errors: u64,
    /// PBX changes not appended because the lease had run out.
    pub fenced_changes: u64,
    /// Times this instance took the lease.
    pub takeovers: u64,
    /// Holes found in the change log (every client resynced).
    pub holes: u64,
}

impl ClusterStatus {
    /// The status of instance `instance`.
    pub fn new(instance: String) -> Self {
        Self {
            instance,
            ..Self::default()
        }
    }

    fn holder_id(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A plain value, replaced whole.
        self.holder_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_holder(&self, ours: bool, holder: Option<String>) {
        self.holder.store(ours, Relaxed);
        *self.holder_id() = holder;
    }

    pub(crate) fn took_over(&self) {
        self.takeovers.fetch_add(1, Relaxed);
    }

    pub(crate) fn read_up_to(&self, seq: u64) {
        self.published.send_if_modified(|last| {
            let moved = *last != seq;
            *last = seq;
            moved
        });
    }

    /// Waits until this instance's hub has published number `seq` (or a later one), at most
    /// `limit`; answers whether it has.
    pub(crate) async fn published(&self, seq: u64, limit: Duration) -> bool {
        let mut rx = self.published.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|last| *last >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub(crate) fn log_end(&self, seq: u64) {
        self.log_end.store(seq, Relaxed);
    }

    pub(crate) fn poll_failed(&self) {
        self.poll_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn append_failed(&self) {
        self.append_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn fenced(&self, n: u64) {
        self.fenced.fetch_add(n, Relaxed);
    }

    pub(crate) fn hole(&self) {
        self.holes.fetch_add(1, Relaxed);
    }

    /// Whether this instance holds the lease.
    pub fn is_holder(&self) -> bool {
        self.holder.load(Relaxed)
    }

    /// A copy of the counters.
    pub fn report(&self) -> ClusterReport {
        let last_seq = *self.published.borrow();
        ClusterReport {
            instance: self.instance.clone(),
            holder: self.holder.load(Relaxed),
            holder_id: self.holder_id().clone(),
            last_seq,
            lag: self.log_end.load(Relaxed).saturating_sub(last_seq),
            poll_errors: self.poll_errors.load(Relaxed),
            append_errors: self.append_errors.load(Relaxed),
            fenced_changes: self.fenced.load(Relaxed),
            takeovers: self.takeovers.load(Relaxed),
            holes: self.holes.load(Relaxed),
        }
    }
}

/// The default `--instance-id`: the host name and the port this server listens on.
pub fn default_instance_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_holds_until_its_deadline_only() {
        let fence = Fence::default();
        assert!(!fence.valid_now(), "not the holder");
        fence.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(fence.valid_now());
        fence.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!fence.valid_now(), "past its deadline");
        fence.set(None);
        assert!(!fence.valid_now());
    }

    #[test]
    fn the_default_instance_id_names_the_port() {
        let id = default_instance_id(8080);
        assert!(id.ends_with(":8080") && id.len() > 5, "{id}");
    }
}
