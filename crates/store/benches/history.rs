//! Time in state on the embedded store: 1,000 extensions over 30 days of history (about
//! 5,000,000 entries: status changes, calls, pauses in three queues with four reasons,
//! presence, a restart every midnight and a one-minute PBX outage every six hours), read from
//! the `history_entries` table and passed to `domain::analytics::time_in_state` in one go; and
//! the same 30-day window with another 30 days of history before it (the state at `from`
//! comes from one backward scan, cached by the store for the next window with the same start;
//! the `_cold_start` variant moves the start each time so the cache never serves). Each in
//! wall time (`store_time_in_state`) and in the CPU time of the whole process
//! (`store_time_in_state_cpu`), which neighbours on a shared machine cannot inflate.
//!
//! Run with `cargo bench -p store --bench history`; the numbers are in `docs/performance.md`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group};
use domain::{Department, ExtensionNumber, TimeRange, Timestamp};
use store::{EmbeddedStore, Repository, StoreOptions, TimeInStateRequest};
use tokio::runtime::Runtime;

#[path = "../../domain/benches/support/cpu_time.rs"]
mod cpu_time;

use cpu_time::CpuTime;

#[path = "support/history_gen.rs"]
mod history_gen;

const EXTENSIONS: usize = 1_000;
const FIRST: u32 = 10_000;
const DAY_MS: i64 = 86_400_000;

fn start() -> Timestamp {
    "2026-10-01T00:00:00Z".parse().expect("time")
}

fn at(ms: i64) -> Timestamp {
    start() + chrono::Duration::milliseconds(ms)
}

fn numbers() -> Vec<ExtensionNumber> {
    history_gen::numbers(FIRST, EXTENSIONS)
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A store holding `days` days of generated history, in its own temporary folder.
struct Seeded {
    dir: tempfile::TempDir,
    store: Arc<EmbeddedStore>,
}

fn seeded(days: i64) -> Seeded {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(EmbeddedStore::open(dir.path(), StoreOptions::default()))
        .expect("open");
    let entries = history_gen::history(start(), days, &numbers());
    eprintln!("{days} days: {} entries", entries.len());
    for chunk in entries.chunks(200_000) {
        rt.block_on(store.append_history(chunk)).expect("append");
    }
    Seeded {
        dir,
        store: Arc::new(store),
    }
}

/// The 30-day and 60-day stores, each seeded once for both measurements (and only when a
/// benchmark that reads it runs).
static STORES: [OnceLock<Seeded>; 2] = [OnceLock::new(), OnceLock::new()];

fn store(days: i64) -> &'static Seeded {
    let i = usize::from(days != 30);
    STORES[i].get_or_init(|| seeded(days))
}

fn request(from_day: i64, days: i64) -> TimeInStateRequest {
    let sales = Department::parse("Sales").expect("dept");
    TimeInStateRequest {
        range: TimeRange::new(at(from_day * DAY_MS), at((from_day + days) * DAY_MS))
            .expect("range"),
        now: at(1_000 * DAY_MS),
        department: None,
        extensions: numbers()
            .into_iter()
            .map(|n| (n, sales.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let rt = runtime();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("1000_extensions_30_days", |b| {
        let thirty = store(30);
        b.iter(|| {
            rt.block_on(thirty.store.time_in_state(request(0, 30)))
                .expect("time in state")
        });
    });
    group.bench_function("1000_extensions_last_30_of_60_days", |b| {
        let sixty = store(60);
        b.iter(|| {
            rt.block_on(sixty.store.time_in_state(request(30, 30)))
                .expect("time in state")
        });
    });
    // The same window starting one millisecond later each time: the store's cached state at
    // the start never serves, so each answer scans the 30 days before it too.
    group.bench_function("1000_extensions_last_30_of_60_days_cold_start", |b| {
        let sixty = store(60);
        let mut shift = 0;
        b.iter(|| {
            shift += 1;
            let mut r = request(30, 30);
            r.range = TimeRange::new(
                r.range.from() + chrono::Duration::milliseconds(shift),
                r.range.to(),
            )
            .expect("range");
            rt.block_on(sixty.store.time_in_state(r))
                .expect("time in state")
        });
    });
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "store_time_in_state");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "store_time_in_state_cpu");
}

criterion_group!(benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(CpuTime::process());
    targets = cpu
}
fn main() {
    benches();
    cpu_benches();
    Criterion::default().configure_from_args().final_summary();
    // The stores live in statics, which are never dropped: remove their folders here.
    for seeded in STORES.iter().filter_map(OnceLock::get) {
        let _ = std::fs::remove_dir_all(seeded.dir.path());
    }
}
