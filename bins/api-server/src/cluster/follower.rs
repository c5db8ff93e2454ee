//! The follower: every instance (the lease holder too) reads the change log and publishes each
//! entry into its hub under the log's sequence number.
//!
//! Entries are merged by field group ([`merge`]) onto the hub's current record, so the result
//! does not depend on which of two racing instances appended first: a status entry brings only
//! the PBX's fields, a user edit only the user's (and only when it is not older than what the
//! hub holds), and an entry for a record the view no longer holds is published as its deletion
//! again. Every instance applies the same rule to the same log.
//!
//! It is woken by the local writer's appends, by the server's change stream when there is one,
//! and otherwise polls every `--change-log-poll`. A hole (the next entry is not the next
//! number: pruned while this instance lagged, or a log that was empty when the hub started)
//! reloads the view from the store and starts the hub's history over there ([`Hub::reset`]):
//! every client gets a snapshot. So does an anchor entry ([`ANCHOR`]): another instance found
//! the log empty at its start and fixed where the numbers go on from.

use std::sync::Arc;
use std::time::Duration;

use domain::{Extension, ExtensionFilter};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use hub::{Change, Hub, HubConfig, PbxLink};
use store::cluster::{Cluster, LoggedChange};
use store::{Repository, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ClusterStatus;

/// At most this many entries are read at once.
const BATCH: usize = 1024;

/// The payload of an anchor entry: appended by an instance that starts on an empty log, so that
/// its hub's numbers start where the log's do. Not a change; a follower that reads one starts
/// over at its number.
pub const ANCHOR: &str = r#"{"kind":"anchor"}"#;

/// How often the log's end is read for the lag figure.
const BOUNDS_EVERY: Duration = Duration::from_secs(1);

/// Merges a logged change onto the hub's current record of the same id (`None`: the view does
/// not hold it) and answers what to publish.
pub fn merge(current: Option<&Extension>, change: Change) -> Change {
    match change {
        Change::StatusUpdated(entry) => match current {
            None => deleted(&entry),
            Some(current) => Change::StatusUpdated(pbx_fields_onto(current, entry)),
        },
        Change::Updated(entry) => match current {
            None => deleted(&entry),
            Some(current) => Change::Updated(user_fields_onto(current, &entry)),
        },
        // A creation (in a replay at start, the view may hold it already).
        Change::Created(entry) => match current {
            None => Change::Created(entry),
            Some(current) => Change::Created(user_fields_onto(current, &entry)),
        },
        other @ (Change::Deleted { .. } | Change::PbxLink(_)) => other,
    }
}

fn deleted(entry: &Extension) -> Change {
    Change::Deleted {
        id: entry.id.clone(),
        department: entry.department.clone(),
    }
}

/// The entry's PBX fields (status, call-center fields, times) with the current user fields.
fn pbx_fields_onto(current: &Extension, mut entry: Extension) -> Extension {
    entry.extension = current.extension.clone();
    entry.agent_name = current.agent_name.clone();
    entry.department = current.department.clone();
    entry.is_active = current.is_active;
    entry.created_at = current.created_at;
    entry.updated_at = current.updated_at;
    entry
}

/// The current record with the entry's user fields, when the entry's edit is not older than
/// the current one's; the current record unchanged otherwise.
fn user_fields_onto(current: &Extension, entry: &Extension) -> Extension {
    let mut record = current.clone();
    if entry.updated_at >= current.updated_at {
        record.agent_name = entry.agent_name.clone();
        record.department = entry.department.clone();
        record.is_active = entry.is_active;
        record.updated_at = entry.updated_at;
    }
    record
}

/// Follows the change log into the hub.
pub struct Follower {
    /// The shared log.
    pub cluster: Arc<dyn Cluster>,
    /// Where the view is reloaded from after a hole.
    pub store: Arc<dyn Repository>,
    /// The hub it publishes into (the only publisher in cluster mode).
    pub hub: Hub,
    /// Counters for `/readyz` and `/metrics`.
    pub status: Arc<ClusterStatus>,
    /// Woken by the local writer after each append.
    pub wake: Arc<Notify>,
    /// The polling period without change streams.
    pub poll: Duration,
    /// Bounds every read.
    pub timeout: Duration,
    /// Notified for every creation read from the log, so that the pipeline (on the lease
    /// holder) takes a list for a record created on another instance, as for a local one.
    pub created: Arc<Notify>,
    /// Whether [`start_hub`] loaded the view; if not, the first read of an empty log loads it.
    pub loaded: bool,
}

/// Why the follower starts the hub over ([`Follower::restart`]).
enum Restart {
    /// The view is loaded where the log starts (the hub had nothing yet).
    Loaded,
    /// Another instance started the log anew: an anchor entry (on an empty or pruned log).
    Anchor,
    /// Entries after `last` are gone (pruned while this instance lagged).
    Hole { last: u64 },
    /// An entry could not be published (a payload this version cannot read).
    Skipped,
}

/// Why one round of reading stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store did not answer within {0} ms")]
    Timeout(u128),
}

/// The hub of an instance in cluster mode, ready to serve: the view read from the store, and
/// the ring filled with the log's last entries (up to its capacity), so that a client coming
/// from another instance with `?resume=N` gets exactly what it missed while the log holds it.
///
/// Without the store (MongoDB not answering at start) the hub starts empty at 0 and the answer
/// says it is not loaded: the follower loads the view once the store answers (its first read
/// of a log with entries finds a hole; of an empty log, it loads the view itself).
pub async fn start_hub(
    cluster: &dyn Cluster,
    store: &dyn Repository,
    config: HubConfig,
    timeout: Duration,
    instance: &str,
) -> (Hub, bool) {
    let empty = || Hub::starting_at(config, Vec::new(), PbxLink::unknown(), 0);
    match tokio::time::timeout(timeout * 4, prepare(cluster, store, config, instance)).await {
        Ok(Ok(hub)) => (hub, true),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the change log or the store does not answer; the board fills once they do");
            (empty(), false)
        }
        Err(_) => {
            tracing::warn!(
                "the change log or the store did not answer in time; the board fills once they do"
            );
            (empty(), false)
        }
    }
}

async fn prepare(
    cluster: &dyn Cluster,
    store: &dyn Repository,
    config: HubConfig,
    instance: &str,
) -> Result<Hub, StoreError> {
    // The bounds first: the view read after them holds every change up to the end read.
    let bounds = cluster.change_bounds().await?;
    let Some((last, first)) = bounds else {
        // An empty log numbers its first entry from the clock: an anchor entry fixes where
        // this hub's numbers start, so the first real change follows its snapshot directly.
        let at = *cluster
            .append_changes(instance, vec![ANCHOR.to_owned()])
            .await?
            .end();
        let records = store.list(&ExtensionFilter::default()).await?;
        return Ok(Hub::starting_at(config, records, PbxLink::unknown(), at));
    };
    let records = store.list(&ExtensionFilter::default()).await?;
    let keep = config.ring_capacity.max(1) as u64;
    let mut start = first.saturating_sub(1).max(last.saturating_sub(keep));
    let mut entries = cluster.changes_after(start, BATCH).await?;
    // Leading anchors only say where the numbers start.
    let anchors = entries
        .iter()
        .zip(start + 1..)
        .take_while(|(e, seq)| e.seq == *seq && e.payload == ANCHOR)
        .count();
    start += anchors as u64;
    entries.drain(..anchors);
    let hub = Hub::starting_at(config, records, PbxLink::unknown(), start);
    let mut after = start;
    'replay: while let Some(next) = entries.first() {
        if next.seq != after + 1 {
            // Pruned meanwhile: the follower's first read restarts from the store.
            break;
        }
        for entry in entries {
            after = entry.seq;
            if apply(&hub, entry, None).is_err() {
                break 'replay;
            }
        }
        if after >= last {
            break;
        }
        entries = cluster.changes_after(after, BATCH).await?;
    }
    tracing::info!(
        first = start + 1,
        last = hub.last_seq(),
        "hub filled from the change log"
    );
    Ok(hub)
}

/// Publishes one entry under its number; `Err` when it cannot be (not the next number, or a
/// payload this version cannot read).
fn apply(hub: &Hub, entry: LoggedChange, created: Option<&Notify>) -> Result<(), ()> {
    if entry.payload == ANCHOR {
        // Not a change: the follower starts over at its number.
        return Err(());
    }
    let change: Change = match serde_json::from_str(&entry.payload) {
        Ok(change) => change,
        Err(e) => {
            tracing::error!(seq = entry.seq, instance = %entry.instance, error = %e, "unreadable change-log entry");
            return Err(());
        }
    };
    if let (Change::Created(_), Some(created)) = (&change, created) {
        created.notify_one();
    }
    let current = change.record_id().and_then(|id| hub.record(id));
    let merged = merge(current.as_deref(), change);
    hub.publish_at(entry.seq, merged)
        .map(|_| ())
        .map_err(|_| ())
}

impl Follower {
    /// Reads and publishes until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut watch = self.watch().await;
        let mut bounds_at = Instant::now();
        loop {
            let full = match self.round().await {
                Ok(full) => full,
                Err(e) => {
                    self.status.poll_failed();
                    tracing::warn!(error = %e, "reading the change log failed; retrying");
                    false
                }
            };
            if bounds_at.elapsed() >= BOUNDS_EVERY {
                bounds_at = Instant::now();
                if let Ok(Ok(Some((last, _)))) =
                    tokio::time::timeout(self.timeout, self.cluster.change_bounds()).await
                {
                    self.status.log_end(last);
                }
            }
            if full {
                // More is waiting.
                continue;
            }
            let poll = if watch.is_some() {
                // With change streams the poll is only a safety net.
                self.poll.max(Duration::from_secs(1))
            } else {
                self.poll
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                woke = next_wake(&mut watch) => {
                    if !woke {
                        tracing::info!("the change stream ended; polling the change log");
                        watch = None;
                    }
                }
            }
        }
    }

    async fn watch(&self) -> Option<BoxStream<'static, ()>> {
        match tokio::time::timeout(self.timeout, self.cluster.watch_changes()).await {
            Ok(Ok(Some(stream))) => {
                tracing::info!("following the change log with a change stream");
                Some(stream)
            }
            Ok(Ok(None)) => {
                tracing::info!(
                    poll_ms = self.poll.as_millis(),
                    "the server has no change streams; polling the change log"
                );
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot watch the change log; polling it");
                None
            }
            Err(_) => None,
        }
    }

    /// One read: publishes what follows the hub's last number. Answers whether the read was
    /// full (more may be waiting).
    async fn round(&mut self) -> Result<bool, ReadError> {
        let last = self.hub.last_seq();
        let entries = self
            .bounded(self.cluster.changes_after(last, BATCH))
            .await?;
        let full = entries.len() >= BATCH;
        let Some(first) = entries.first() else {
            if !self.loaded && last == 0 {
                // Started without the store, and the log is empty: load the view now.
                self.restart(1, Restart::Loaded).await?;
            }
            self.loaded = true;
            self.status.read_up_to(self.hub.last_seq());
            return Ok(false);
        };
        self.loaded = true;
        // An anchor first starts over at its own number below.
        if first.seq != last + 1 && first.payload != ANCHOR {
            let why = if last == 0 {
                Restart::Loaded
            } else {
                Restart::Hole { last }
            };
            self.restart(first.seq - 1, why).await?;
        }
        for entry in entries {
            let seq = entry.seq;
            if seq <= self.hub.last_seq() {
                continue;
            }
            if entry.payload == ANCHOR {
                self.restart(seq, Restart::Anchor).await?;
            } else if apply(&self.hub, entry, Some(&self.created)).is_err() {
                // Cannot be published under its number: everyone starts over after it.
                self.restart(seq, Restart::Skipped).await?;
            }
        }
        self.status.read_up_to(self.hub.last_seq());
        Ok(full)
    }

    /// Reloads the view and starts the hub over at `at` (every client gets a snapshot).
    async fn restart(&self, at: u64, why: Restart) -> Result<(), ReadError> {
        let records = self
            .bounded(self.store.list(&ExtensionFilter::default()))
            .await?;
        if self.hub.reset(at, records, self.hub.pbx_link()).is_ok() {
            self.status.hole();
            match why {
                Restart::Loaded => tracing::info!(
                    seq = at,
                    "the change log starts here; board loaded from the store"
                ),
                Restart::Anchor => tracing::info!(
                    seq = at,
                    "another instance started the change log anew; every client gets a fresh snapshot"
                ),
                Restart::Hole { last } => tracing::warn!(
                    last,
                    next = at + 1,
                    "a hole in the change log (entries pruned while this instance lagged); every client gets a fresh snapshot"
                ),
                Restart::Skipped => tracing::warn!(
                    seq = at,
                    "a change-log entry could not be published; every client gets a fresh snapshot"
                ),
            }
        }
        Ok(())
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ReadError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ReadError::Timeout(self.timeout.as_millis())),
        }
    }
}

/// Waits for the stream's next wake-up; `false` when it ended. Never resolves without one.
async fn next_wake(watch: &mut Option<BoxStream<'static, ()>>) -> bool {
    match watch {
        Some(stream) => stream.next().await.is_some(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AgentName, Department, ExtensionNumber, NewExtension, RecordId};

    fn record(name: &str, dept: &str, edited: &str) -> Extension {
        let mut e = Extension::create(
            RecordId::from_bytes([3; 12]),
            NewExtension {
                extension: ExtensionNumber::parse("1001").expect("ext"),
                agent_name: AgentName::parse(name).expect("name"),
                department: Department::parse(dept).expect("dept"),
                is_active: true,
            },
            "2026-12-01T10:00:00Z".parse().expect("time"),
        );
        e.updated_at = edited.parse().expect("time");
        e
    }

    fn with_code(mut e: Extension, code: i32, at: &str) -> Extension {
        let state = domain::ExtensionState::from_code(code);
        let at = at.parse().expect("time");
        e.status_code = state.code();
        e.device_state = state.device_state();
        e.status = state.presence();
        e.last_status_change = Some(at);
        e.last_seen = Some(at);
        e
    }

    /// A status write and a user edit of the same record, appended by two instances in either
    /// order, end in the same record: each brings its own fields only.
    #[test]
    fn racing_status_and_edit_merge_the_same_in_either_order() {
        let base = record("Alice", "Sales", "2026-12-01T10:00:00Z");
        // The holder wrote a status onto the record as it was before the edit.
        let status = with_code(base.clone(), 1, "2026-12-01T10:05:00Z");
        // Another instance renamed and moved it, onto the record before the status.
        let edit = record("Alicia", "Support", "2026-12-01T10:05:01Z");
        let apply = |first: &Change, second: &Change| {
            let one = merge(Some(&base), first.clone());
            let after_one = one.record().cloned().expect("a record");
            merge(Some(&after_one), second.clone())
                .record()
                .cloned()
                .expect("a record")
        };
        let s = Change::StatusUpdated(status);
        let u = Change::Updated(edit);
        let a = apply(&s, &u);
        let b = apply(&u, &s);
        assert_eq!(a, b);
        assert_eq!(a.agent_name.as_str(), "Alicia");
        assert_eq!(a.department.as_str(), "Support");
        assert_eq!(a.status_code, 1);
    }

    #[test]
    fn an_older_edit_does_not_overwrite_a_newer_one() {
        let current = record("Newer", "Sales", "2026-12-01T11:00:00Z");
        let older = record("Older", "Billing", "2026-12-01T10:30:00Z");
        let Change::Updated(kept) = merge(Some(&current), Change::Updated(older)) else {
            panic!("an update");
        };
        assert_eq!(kept, current);
        // The same time is not older: taken.
        let same = record("Same", "Billing", "2026-12-01T11:00:00Z");
        let Change::Updated(taken) = merge(Some(&current), Change::Updated(same)) else {
            panic!("an update");
        };
        assert_eq!(taken.agent_name.as_str(), "Same");
    }

    #[test]
    fn entries_for_a_deleted_record_publish_the_deletion_again() {
        let gone = with_code(
            record("Bob", "Sales", "2026-12-01T10:00:00Z"),
            2,
            "2026-12-01T10:01:00Z",
        );
        for change in [
            Change::StatusUpdated(gone.clone()),
            Change::Updated(gone.clone()),
        ] {
            assert_eq!(
                merge(None, change),
                Change::Deleted {
                    id: gone.id.clone(),
                    department: gone.department.clone()
                }
            );
        }
        // Creations, deletions and the link pass as they are.
        assert_eq!(
            merge(None, Change::Created(gone.clone())),
            Change::Created(gone.clone())
        );
        let link = Change::PbxLink(PbxLink::unknown());
        assert_eq!(merge(None, link.clone()), link);
        // A creation replayed onto a view that has the record keeps its statuses.
        let stored = with_code(gone.clone(), 1, "2026-12-01T10:02:00Z");
        let Change::Created(kept) = merge(
            Some(&stored),
            Change::Created(record("Bob", "Sales", "2026-12-01T10:00:00Z")),
        ) else {
            panic!("a creation");
        };
        assert_eq!(kept.status_code, 1);
    }
}
