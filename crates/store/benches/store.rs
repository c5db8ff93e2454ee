//! Embedded store throughput with 10,000 extensions: status changes (concurrent callers, one
//! batch call, one caller at a time), `last_seen` refreshes with their batched write, and
//! creating 10,000 records as the seeder does.
//!
//! Run with `cargo bench -p store`; the numbers are recorded in `docs/performance.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::{AgentName, Department, ExtensionNumber, NewExtension, Observation, Timestamp};
use futures_util::future::join_all;
use store::{EmbeddedStore, Repository, StoreOptions};
use tokio::runtime::Runtime;

const EXTENSIONS: usize = 10_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn numbers() -> Vec<ExtensionNumber> {
    (0..EXTENSIONS)
        .map(|i| ExtensionNumber::parse(&format!("{}", 100_000 + i)).expect("ext"))
        .collect()
}

fn new_ext(n: &ExtensionNumber) -> NewExtension {
    NewExtension {
        extension: n.clone(),
        agent_name: AgentName::parse(&format!("Agent {n}")).expect("name"),
        department: Department::parse("Sales").expect("dept"),
        is_active: true,
    }
}

/// A store with 10,000 extensions in a fresh directory. The flusher interval is long: the
/// benchmarks flush explicitly so that the write is inside the measured time.
fn seeded(rt: &Runtime) -> (tempfile::TempDir, Arc<EmbeddedStore>, Vec<ExtensionNumber>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exts = numbers();
    let store = rt.block_on(async {
        let options = StoreOptions {
            last_seen_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        };
        let store = Arc::new(
            EmbeddedStore::open(dir.path(), options)
                .await
                .expect("open"),
        );
        let creates = exts.iter().map(|n| store.create(new_ext(n)));
        for r in join_all(creates).await {
            r.expect("create");
        }
        store
    });
    (dir, store, exts)
}

/// A clock that only moves forward, so every observation is newer than the last.
struct Clock(AtomicI64);

impl Clock {
    fn new() -> Self {
        Self(AtomicI64::new(domain::now().timestamp_millis()))
    }

    fn tick(&self) -> Timestamp {
        let ms = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        chrono::DateTime::from_timestamp_millis(ms).expect("time")
    }
}

fn status_changes(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store, exts) = seeded(&rt);
    let clock = Clock::new();
    let code = AtomicI64::new(0);
    let mut group = c.benchmark_group("status_changes_10k_extensions");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(EXTENSIONS as u64));

    // Every extension changes once per iteration; the codes alternate so each is a change.
    let next_code = || {
        if code.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            1
        } else {
            0
        }
    };

    group.bench_function("concurrent_callers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let c = next_code();
                let at = clock.tick();
                let start = Instant::now();
                rt.block_on(async {
                    let calls = exts
                        .iter()
                        .map(|n| store.apply_status(n, Observation::reported(c, at)));
                    for r in join_all(calls).await {
                        assert!(r.expect("apply").is_change());
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });

    group.bench_function("one_batch_call", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let c = next_code();
                let at = clock.tick();
                let batch: Vec<_> = exts
                    .iter()
                    .map(|n| (n.clone(), Observation::reported(c, at)))
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    for r in store.apply_statuses(&batch).await {
                        assert!(r.expect("apply").is_change());
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();

    // One caller awaiting each change: bounded by one durable commit (an fsync) per change.
    let mut group = c.benchmark_group("status_changes_one_caller");
    group.sample_size(10);
    group.throughput(Throughput::Elements(500));
    group.bench_function("sequential", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let c = next_code();
                let start = Instant::now();
                rt.block_on(async {
                    for n in &exts[..500] {
                        let out = store
                            .apply_status(n, Observation::reported(c, clock.tick()))
                            .await
                            .expect("apply");
                        assert!(out.is_change());
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn last_seen(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store, exts) = seeded(&rt);
    let clock = Clock::new();
    let mut group = c.benchmark_group("last_seen_10k_extensions");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EXTENSIONS as u64));

    // One refresh per extension, one call each (as events arrive), then the batch write.
    group.bench_function("touch_each_then_flush", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                rt.block_on(async {
                    for n in &exts {
                        store
                            .touch_last_seen(std::slice::from_ref(n), clock.tick())
                            .await
                            .expect("touch");
                    }
                    store.flush().await.expect("flush");
                });
                total += start.elapsed();
            }
            total
        });
    });

    // Same-code observations (the PBX repeating a state): decided by the writer thread, no
    // commit, then one batch write.
    rt.block_on(async {
        let at = clock.tick();
        for n in &exts {
            store
                .apply_status(n, Observation::reported(0, at))
                .await
                .expect("apply");
        }
    });
    group.bench_function("same_code_observations_then_flush", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let at = clock.tick();
                let batch: Vec<_> = exts
                    .iter()
                    .map(|n| (n.clone(), Observation::reported(0, at)))
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    for r in store.apply_statuses(&batch).await {
                        assert!(!r.expect("apply").is_change());
                    }
                    store.flush().await.expect("flush");
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn seeding(c: &mut Criterion) {
    let rt = runtime();
    let exts = numbers();
    let mut group = c.benchmark_group("create_10k_records");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EXTENSIONS as u64));
    // What the seeder does: up to 64 creates in flight, each durable when answered.
    group.bench_function("64_in_flight", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let start = Instant::now();
                rt.block_on(async {
                    use futures_util::StreamExt as _;
                    let store = EmbeddedStore::open(dir.path(), StoreOptions::default())
                        .await
                        .expect("open");
                    let store = &store;
                    let results: Vec<_> = futures_util::stream::iter(&exts)
                        .map(|n| async move { store.create(new_ext(n)).await })
                        .buffer_unordered(64)
                        .collect()
                        .await;
                    assert!(results.iter().all(Result::is_ok));
                });
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, status_changes, last_seen, seeding);
criterion_main!(benches);
