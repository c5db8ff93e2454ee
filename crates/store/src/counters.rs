//! Counters of store writes by cause, for `/metrics`: they show how much the coalescing saves.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the write counters since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounters {
    /// Records written because their status code really changed (one each, with its history
    /// entry).
    pub status_changes: u64,
    /// Batched `last_seen` writes (one multi-document write each).
    pub last_seen_batches: u64,
    /// Records written by those batches.
    pub last_seen_records: u64,
    /// `last_seen` refreshes accepted into the batcher instead of being written at once (every
    /// same-code observation and every `touch_last_seen` entry). The difference to
    /// `last_seen_records` is what coalescing saved.
    pub last_seen_coalesced: u64,
    /// User edits written: creates, updates that changed something, deletes.
    pub user_edits: u64,
    /// Records whose call-center fields (`queues`, `presence`, `call`) changed (one write
    /// each).
    pub call_center_changes: u64,
    /// Durable (fsynced) commits: user edits, health pings not covered by a recent one, and
    /// the one a second that makes soft commits (statuses, call-center views) durable. The
    /// embedded store only; MongoDB's durability is the server's, and this stays 0.
    pub durable_commits: u64,
    /// Commits of the embedded store, durable or not: a stream of soft status writes shares
    /// one every 50 ms instead of taking one each. The embedded store only; 0 on MongoDB.
    pub commits: u64,
}

/// The live counters; cheap to bump from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    status_changes: AtomicU64,
    last_seen_batches: AtomicU64,
    last_seen_records: AtomicU64,
    last_seen_coalesced: AtomicU64,
    user_edits: AtomicU64,
    call_center_changes: AtomicU64,
    durable_commits: AtomicU64,
    commits: AtomicU64,
}

impl Counters {
    pub(crate) fn status_changes(&self, n: u64) {
        self.status_changes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn last_seen_batch(&self, records: u64) {
        self.last_seen_batches.fetch_add(1, Ordering::Relaxed);
        self.last_seen_records.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn last_seen_coalesced(&self, n: u64) {
        self.last_seen_coalesced.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn user_edits(&self, n: u64) {
        self.user_edits.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn call_center_changes(&self, n: u64) {
        self.call_center_changes.fetch_add(n, Ordering::Relaxed);
    }

    #[cfg_attr(
        not(feature = "embedded"),
        allow(dead_code, reason = "only the embedded store makes durable commits")
    )]
    pub(crate) fn durable_commit(&self) {
        self.durable_commits.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(
        not(feature = "embedded"),
        allow(dead_code, reason = "only the embedded store counts its commits")
    )]
    pub(crate) fn commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WriteCounters {
        WriteCounters {
            status_changes: self.status_changes.load(Ordering::Relaxed),
            last_seen_batches: self.last_seen_batches.load(Ordering::Relaxed),
            last_seen_records: self.last_seen_records.load(Ordering::Relaxed),
            last_seen_coalesced: self.last_seen_coalesced.load(Ordering::Relaxed),
            user_edits: self.user_edits.load(Ordering::Relaxed),
            call_center_changes: self.call_center_changes.load(Ordering::Relaxed),
            durable_commits: self.durable_commits.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_adds_up() {
        let c = Counters::default();
        c.status_changes(2);
        c.last_seen_batch(10);
        c.last_seen_batch(5);
        c.last_seen_coalesced(40);
        c.user_edits(1);
        c.call_center_changes(3);
        c.durable_commit();
        c.commit();
        c.commit();
        assert_eq!(
            c.snapshot(),
            WriteCounters {
                status_changes: 2,
                last_seen_batches: 2,
                last_seen_records: 15,
                last_seen_coalesced: 40,
                user_edits: 1,
                call_center_changes: 3,
                durable_commits: 1,
                commits: 2,
            }
        );
    }
}
