//! `last_seen` coalescing, shared by every backend: refreshes collect in memory and are written
//! at most once per extension per interval, in one multi-document write per batch.
//!
//! `last_seen` is soft state (the PBX repeats it all the time), so a refresh may wait up to one
//! interval before it is written. Readers never see that lag: every backend lays the pending
//! values over what it reads, and the status-change decision takes them into account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use domain::{Extension, ExtensionNumber, Timestamp};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;
use crate::error::StoreError;

/// One batch: each extension once, with the newest time it was seen, sorted by extension.
pub(crate) type LastSeenBatch = Vec<(ExtensionNumber, Timestamp)>;

/// The refreshes not yet written.
#[derive(Debug)]
pub(crate) struct LastSeenBatcher {
    pending: Mutex<HashMap<ExtensionNumber, Timestamp>>,
    counters: Arc<Counters>,
}

/// A backend that can write a batch; the flusher task and `Repository::flush` drive it.
#[async_trait]
pub(crate) trait LastSeenSink: Send + Sync + 'static {
    /// The batcher whose batches this sink writes.
    fn batcher(&self) -> &LastSeenBatcher;

    /// Writes one batch as one multi-document write and returns how many records it actually
    /// changed, as the backend counted them. It must never move a `last_seen` backwards (a
    /// status change may have written a newer one meanwhile), and it ignores extensions that no
    /// longer exist; neither is counted.
    async fn write_last_seen(
        &self,
        batch: &[(ExtensionNumber, Timestamp)],
    ) -> Result<u64, StoreError>;
}

impl LastSeenBatcher {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ExtensionNumber, Timestamp>> {
        // The map stays consistent even if a holder panicked: every update is a single insert.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `ext` was seen at `at`; an older time than the pending one changes nothing.
    pub(crate) fn touch(&self, ext: &ExtensionNumber, at: Timestamp) {
        self.touch_many(std::iter::once(ext), at);
    }

    /// Records that every extension of `exts` was seen at `at`.
    pub(crate) fn touch_many<'a>(
        &self,
        exts: impl IntoIterator<Item = &'a ExtensionNumber>,
        at: Timestamp,
    ) {
        let mut n = 0;
        let mut pending = self.lock();
        for ext in exts {
            n += 1;
            match pending.get_mut(ext) {
                Some(t) => *t = (*t).max(at),
                None => {
                    pending.insert(ext.clone(), at);
                }
            }
        }
        drop(pending);
        self.counters.last_seen_coalesced(n);
    }

    /// The pending `last_seen` of `ext`, if any.
    pub(crate) fn pending(&self, ext: &ExtensionNumber) -> Option<Timestamp> {
        self.lock().get(ext).copied()
    }

    /// Lays the pending `last_seen` over a record read from the backend.
    pub(crate) fn overlay(&self, record: &mut Extension) {
        if let Some(at) = self.pending(&record.extension) {
            record.last_seen = record.last_seen.max(Some(at));
        }
    }

    /// Lays the pending values over many records, taking the lock once.
    pub(crate) fn overlay_all(&self, records: &mut [Extension]) {
        let pending = self.lock();
        if pending.is_empty() {
            return;
        }
        for record in records {
            if let Some(at) = pending.get(&record.extension) {
                record.last_seen = record.last_seen.max(Some(*at));
            }
        }
    }

    /// Drops the pending refresh of `ext` when a status change has written `last_seen = at`
    /// or newer, so the batch does not write it again.
    pub(crate) fn settle(&self, ext: &ExtensionNumber, at: Timestamp) {
        let mut pending = self.lock();
        if pending.get(ext).is_some_and(|t| *t <= at) {
            pending.remove(ext);
        }
    }

    /// Forgets an extension that was deleted.
    pub(crate) fn forget(&self, ext: &ExtensionNumber) {
        self.lock().remove(ext);
    }

    /// Takes everything pending as one batch.
    fn take(&self) -> LastSeenBatch {
        let mut batch: LastSeenBatch = std::mem::take(&mut *self.lock()).into_iter().collect();
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        batch
    }

    /// Puts a batch that could not be written back, keeping any newer refresh.
    fn restore(&self, batch: LastSeenBatch) {
        let mut pending = self.lock();
        for (ext, at) in batch {
            let slot = pending.entry(ext).or_insert(at);
            *slot = (*slot).max(at);
        }
    }

    /// How many extensions wait for a write.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Writes everything pending through `sink` now, as one batch. On failure the batch stays
/// pending, so the next flush tries again.
pub(crate) async fn flush<S: LastSeenSink + ?Sized>(sink: &S) -> Result<(), StoreError> {
    let batcher = sink.batcher();
    let batch = batcher.take();
    if batch.is_empty() {
        return Ok(());
    }
    match sink.write_last_seen(&batch).await {
        Ok(written) => {
            batcher.counters.last_seen_batch(written);
            Ok(())
        }
        Err(e) => {
            batcher.restore(batch);
            Err(e)
        }
    }
}

/// Starts the task that flushes every `interval`, and once more when `shutdown` is cancelled.
/// It holds the sink only weakly, so dropping the store ends it.
pub(crate) fn spawn_flusher<S: LastSeenSink>(
    sink: Weak<S>,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; nothing is pending yet.
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    if let Some(sink) = sink.upgrade()
                        && let Err(e) = flush(&*sink).await
                    {
                        tracing::warn!(error = %e, "final last_seen flush failed");
                    }
                    break;
                }
                _ = tick.tick() => {
                    let Some(sink) = sink.upgrade() else { break };
                    if let Err(e) = flush(&*sink).await {
                        tracing::warn!(error = %e, "last_seen flush failed; will retry");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeSink {
        batcher: LastSeenBatcher,
        written: Mutex<Vec<Vec<(String, i64)>>>,
        fail_next: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl LastSeenSink for FakeSink {
        fn batcher(&self) -> &LastSeenBatcher {
            &self.batcher
        }

        async fn write_last_seen(
            &self,
            batch: &[(ExtensionNumber, Timestamp)],
        ) -> Result<u64, StoreError> {
            if self
                .fail_next
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(StoreError::unavailable("down"));
            }
            let rows = batch
                .iter()
                .map(|(e, t)| (e.to_string(), t.timestamp()))
                .collect();
            self.written.lock().expect("lock").push(rows);
            Ok(u64::try_from(batch.len()).expect("small batch"))
        }
    }

    fn ext(s: &str) -> ExtensionNumber {
        ExtensionNumber::parse(s).expect("ext")
    }

    fn t(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    fn sink() -> (Arc<FakeSink>, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let sink = Arc::new(FakeSink {
            batcher: LastSeenBatcher::new(counters.clone()),
            written: Mutex::new(Vec::new()),
            fail_next: false.into(),
        });
        (sink, counters)
    }

    fn written(sink: &FakeSink) -> Vec<Vec<(String, i64)>> {
        sink.written.lock().expect("lock").clone()
    }

    fn row(e: &str, secs: i64) -> (String, i64) {
        (e.to_owned(), t(secs).timestamp())
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_one_write_per_extension_per_interval() {
        let (sink, counters) = sink();
        let shutdown = CancellationToken::new();
        let task = spawn_flusher(
            Arc::downgrade(&sink),
            Duration::from_secs(1),
            shutdown.clone(),
        );
        let ms = Duration::from_millis;

        // Many refreshes inside the first interval: one batch, each extension once, newest time.
        for i in 0..50 {
            sink.batcher.touch(&ext("1001"), t(i % 7));
        }
        sink.batcher.touch_many([&ext("1002"), &ext("1003")], t(3));
        tokio::time::sleep(ms(900)).await;
        assert!(
            written(&sink).is_empty(),
            "nothing before the interval ends"
        );
        tokio::time::sleep(ms(200)).await;
        assert_eq!(
            written(&sink),
            vec![vec![row("1001", 6), row("1002", 3), row("1003", 3)]]
        );

        // An older time never replaces a newer pending one.
        sink.batcher.touch(&ext("1001"), t(9));
        sink.batcher.touch(&ext("1001"), t(8));
        tokio::time::sleep(ms(1000)).await;
        assert_eq!(written(&sink).len(), 2);
        assert_eq!(written(&sink)[1], vec![row("1001", 9)]);

        // An interval with nothing pending writes nothing.
        tokio::time::sleep(ms(3000)).await;
        assert_eq!(written(&sink).len(), 2);

        // Shutdown flushes what is left, then the task ends.
        sink.batcher.touch(&ext("1004"), t(10));
        shutdown.cancel();
        task.await.expect("task");
        assert_eq!(written(&sink)[2], vec![row("1004", 10)]);
        let c = counters.snapshot();
        assert_eq!(c.last_seen_batches, 3);
        assert_eq!(c.last_seen_records, 5);
        assert_eq!(c.last_seen_coalesced, 55);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_is_retried_with_newer_values_kept() {
        let (sink, counters) = sink();
        sink.batcher.touch(&ext("1001"), t(5));
        sink.fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(flush(&*sink).await.expect_err("fails").is_transient());
        assert_eq!(sink.batcher.len(), 1);
        sink.batcher.touch(&ext("1001"), t(4));
        sink.batcher.touch(&ext("1002"), t(6));
        flush(&*sink).await.expect("flush");
        assert_eq!(written(&sink), vec![vec![row("1001", 5), row("1002", 6)]]);
        assert_eq!(counters.snapshot().last_seen_batches, 1);
        // Nothing pending: no write at all.
        flush(&*sink).await.expect("flush");
        assert_eq!(written(&sink).len(), 1);
    }

    #[test]
    fn settle_overlay_and_forget() {
        let (sink, _) = sink();
        let b = &sink.batcher;
        b.touch(&ext("1001"), t(5));
        b.touch(&ext("1002"), t(5));
        // A status change that wrote an older last_seen leaves the newer refresh pending.
        b.settle(&ext("1001"), t(4));
        assert_eq!(b.pending(&ext("1001")), Some(t(5)));
        b.settle(&ext("1001"), t(5));
        assert_eq!(b.pending(&ext("1001")), None);
        b.forget(&ext("1002"));
        assert_eq!(b.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_sink_ends_the_task() {
        let (sink, _) = sink();
        let task = spawn_flusher(
            Arc::downgrade(&sink),
            Duration::from_secs(1),
            CancellationToken::new(),
        );
        drop(sink);
        task.await.expect("task ends without a shutdown signal");
    }
}
