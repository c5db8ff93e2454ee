//! Time in state on the embedded store: 1,000 extensions over 30 days of history (about
//! 5,000,000 entries: status changes, calls, pauses in three queues with four reasons,
//! presence, a restart every midnight and a one-minute PBX outage every six hours), read from
//! the `history_entries` table and passed to `domain::analytics::time_in_state` in one go; and
//! the same 30-day window with another 30 days of history before it (the state at `from`
//! comes from one backward scan).
//!
//! Run with `cargo bench -p store --bench history`; the numbers are in `docs/analytics.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use domain::{Department, ExtensionNumber, HistoryEntry, HistoryEvent, TimeRange, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store::{EmbeddedStore, Repository, StoreOptions, TimeInStateRequest};
use tokio::runtime::Runtime;

const EXTENSIONS: usize = 1_000;
const DAY_MS: i64 = 86_400_000;
/// One entry per extension every 518 s on average: 5,000 per extension in 30 days.
const MEAN_GAP_MS: i64 = 518_400;
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
const REASONS: [&str; 4] = ["lunch", "break", "training", "admin"];

fn start() -> Timestamp {
    "2026-10-01T00:00:00Z".parse().expect("time")
}

fn at(ms: i64) -> Timestamp {
    start() + chrono::Duration::milliseconds(ms)
}

fn numbers() -> Vec<ExtensionNumber> {
    (0..EXTENSIONS)
        .map(|i| ExtensionNumber::parse(&format!("{}", 10_000 + i)).expect("ext"))
        .collect()
}

/// The generated history of `days` days, in time order.
fn history(days: i64) -> Vec<HistoryEntry> {
    let mut rng = StdRng::seed_from_u64(7);
    let end = days * DAY_MS;
    let mut out: Vec<(i64, HistoryEvent)> = Vec::new();
    for day in 0..days {
        let midnight = day * DAY_MS;
        if day > 0 {
            out.push((midnight, HistoryEvent::ServerStop));
        }
        out.push((midnight + 1, HistoryEvent::ServerStart));
        out.push((midnight + 2_000, HistoryEvent::PbxLinkUp));
        for six in 1..4 {
            let t = midnight + six * DAY_MS / 4;
            out.push((t, HistoryEvent::PbxLinkDown));
            out.push((t + 60_000, HistoryEvent::PbxLinkUp));
        }
    }
    for n in numbers() {
        let mut t = rng.random_range(0..MEAN_GAP_MS);
        let mut code = 0;
        let mut on_call = false;
        while t < end {
            let roll = rng.random_range(0..100);
            let event = if roll < 50 {
                let previous = code;
                code = if code == 0 { 1 } else { 0 };
                HistoryEvent::Status {
                    extension: n.clone(),
                    previous_code: previous,
                    code,
                }
            } else if roll < 75 {
                on_call = !on_call;
                HistoryEvent::Call {
                    extension: n.clone(),
                    on_call,
                    queue: on_call.then(|| QUEUES[rng.random_range(0..3)].to_owned()),
                }
            } else if roll < 90 {
                let paused = rng.random_bool(0.5);
                HistoryEvent::Pause {
                    extension: n.clone(),
                    queue: QUEUES[rng.random_range(0..3)].to_owned(),
                    paused,
                    reason: paused.then(|| REASONS[rng.random_range(0..4)].to_owned()),
                }
            } else {
                HistoryEvent::Presence {
                    extension: n.clone(),
                    state: ["available", "away", "dnd"][rng.random_range(0..3)].to_owned(),
                    subtype: None,
                    message: None,
                }
            };
            out.push((t, event));
            t += rng.random_range(1..2 * MEAN_GAP_MS);
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out.into_iter()
        .map(|(t, e)| HistoryEntry::new(at(t), e))
        .collect()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A store holding `days` days of generated history.
fn seeded(rt: &Runtime, days: i64) -> (tempfile::TempDir, Arc<EmbeddedStore>, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt
        .block_on(EmbeddedStore::open(dir.path(), StoreOptions::default()))
        .expect("open");
    let entries = history(days);
    let count = entries.len();
    for chunk in entries.chunks(200_000) {
        rt.block_on(store.append_history(chunk)).expect("append");
    }
    (dir, Arc::new(store), count)
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

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store_time_in_state");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let (_dir, store, count) = seeded(&rt, 30);
    eprintln!("30 days: {count} entries");
    group.bench_function("1000_extensions_30_days", |b| {
        b.iter(|| {
            rt.block_on(store.time_in_state(request(0, 30)))
                .expect("time in state")
        });
    });
    drop(store);

    let (_dir2, store, count) = seeded(&rt, 60);
    eprintln!("60 days: {count} entries");
    group.bench_function("1000_extensions_last_30_of_60_days", |b| {
        b.iter(|| {
            rt.block_on(store.time_in_state(request(30, 30)))
                .expect("time in state")
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
