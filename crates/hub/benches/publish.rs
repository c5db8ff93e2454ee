//! Criterion benchmarks of the hub: the publisher's cost per change with 1 to 10,000
//! subscribers that never read, and with readers awaiting `recv` on another thread; and the
//! cost of a subscription's snapshot. `docs/performance.md` has the numbers.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use domain::{
    AgentName, Department, Extension, ExtensionNumber, ExtensionState, NewExtension, RecordId,
};
use hub::{Change, Delivery, Hub, HubConfig, PbxLink, render_frame};

const DEPARTMENTS: [&str; 4] = ["Sales", "Support", "Billing", "Front desk"];

/// `n` extensions with realistic field sizes, spread over the departments.
fn extensions(n: u32) -> Vec<Extension> {
    let at = "2026-11-30T12:00:00.123Z".parse().expect("time");
    (0..n)
        .map(|i| {
            let mut id = [0x65u8; 12];
            id[8..].copy_from_slice(&i.to_be_bytes());
            Extension::create(
                RecordId::from_bytes(id),
                NewExtension {
                    extension: ExtensionNumber::parse(&(10_000 + i).to_string()).expect("number"),
                    agent_name: AgentName::parse(&format!("Agent Number {i}")).expect("name"),
                    department: Department::parse(DEPARTMENTS[i as usize % DEPARTMENTS.len()])
                        .expect("department"),
                    is_active: true,
                },
                at,
            )
        })
        .collect()
}

/// Status updates cycling over the extensions and a few states, as the AMI pipeline sends.
fn status_changes(records: &[Extension]) -> Vec<Change> {
    let at = "2026-11-30T12:00:01.456Z".parse().expect("time");
    records
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let state = ExtensionState::from_code([0, 1, 2, 4, 8][i % 5]);
            let mut e = e.clone();
            e.status_code = state.code();
            e.device_state = state.device_state();
            e.status = state.presence();
            e.last_status_change = Some(at);
            e.last_seen = Some(at);
            Change::StatusUpdated(e)
        })
        .collect()
}

/// Publishes the changes in turn; the clone of the change is set-up, not measured.
fn bench_publishing(b: &mut criterion::Bencher<'_>, hub: &Hub, changes: &[Change]) {
    let mut i = 0;
    b.iter_batched(
        || {
            i = (i + 1) % changes.len();
            changes[i].clone()
        },
        |change| hub.publish(change),
        BatchSize::SmallInput,
    );
}

fn idle_subscribers(c: &mut Criterion) {
    let records = extensions(1_000);
    let changes = status_changes(&records);
    let mut group = c.benchmark_group("publish/idle_subscribers");
    group.throughput(Throughput::Elements(1));
    for n in [0usize, 1, 100, 1_000, 10_000] {
        let hub = Hub::new(HubConfig::default(), records.clone(), PbxLink::unknown());
        // A quarter of them filtered by department, as dashboards for one team would be.
        let subscriptions: Vec<_> = (0..n)
            .map(|i| {
                let filter = (i % 4 == 0).then(|| Department::parse("Sales").expect("dept"));
                hub.subscribe(filter).1
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            bench_publishing(b, &hub, &changes);
        });
        drop(subscriptions);
    }
    group.finish();
}

/// Readers on a tokio worker thread (the machine's other core) await `recv` and render every
/// delivery as the WebSocket layer would, while the benchmark thread publishes.
fn active_readers(c: &mut Criterion) {
    let records = extensions(1_000);
    let changes = status_changes(&records);
    let mut group = c.benchmark_group("publish/active_readers");
    group.throughput(Throughput::Elements(1));
    for n in [1usize, 100, 1_000, 10_000] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let hub = Hub::new(HubConfig::default(), records.clone(), PbxLink::unknown());
        for _ in 0..n {
            let (_, mut subscription) = hub.subscribe(None);
            runtime.spawn(async move {
                loop {
                    match subscription.recv().await {
                        Delivery::Changes(batch) => black_box(render_frame(&batch).len()),
                        Delivery::Resync(snapshot) => black_box(snapshot.to_json().len()),
                    };
                }
            });
        }
        let before = hub.metrics();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            bench_publishing(b, &hub, &changes);
        });
        let after = hub.metrics();
        let published = after.published - before.published;
        let resyncs = after.lag_resyncs - before.lag_resyncs;
        // Criterion runs the set-up even for benchmarks its filter leaves out.
        if published == 0 {
            runtime.shutdown_background();
            continue;
        }
        println!(
            "publish/active_readers/{n}: {published} changes published, {resyncs} lag resyncs \
             ({:.4} per reader per 1,000 changes)",
            resyncs as f64 * 1_000.0 / (published.max(1) as f64 * n as f64)
        );
        runtime.shutdown_background();
    }
    group.finish();
}

/// Another thread subscribes (takes a snapshot) in a loop, as during a reconnect storm, while
/// the benchmark thread publishes: the snapshots' share of the lock is one pointer copy per 64
/// records, so the publisher barely notices, even with 10,000 extensions.
fn while_subscribing(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish/while_subscribing");
    group.throughput(Throughput::Elements(1));
    for n in [1_000u32, 10_000] {
        let records = extensions(n);
        let changes = status_changes(&records);
        let hub = Hub::new(HubConfig::default(), records, PbxLink::unknown());
        let stop = Arc::new(AtomicBool::new(false));
        let storm = {
            let (hub, stop) = (hub.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut snapshots = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    black_box(hub.subscribe(None));
                    snapshots += 1;
                }
                snapshots
            })
        };
        let before = hub.metrics().published;
        group.bench_with_input(BenchmarkId::new("extensions", n), &n, |b, _| {
            bench_publishing(b, &hub, &changes);
        });
        stop.store(true, Ordering::Relaxed);
        let snapshots = storm.join().expect("storm thread");
        let published = hub.metrics().published - before;
        if published > 0 {
            println!(
                "publish/while_subscribing/extensions/{n}: {published} changes published \
                 while {snapshots} snapshots were taken"
            );
        }
    }
    group.finish();
}

/// The cost of `subscribe` (and so of a resync): one pointer copy per 64 records under the
/// lock, then flattening, filtering and sorting outside it.
fn subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe");
    for n in [1_000u32, 10_000] {
        let hub = Hub::new(HubConfig::default(), extensions(n), PbxLink::unknown());
        group.bench_with_input(BenchmarkId::new("extensions", n), &n, |b, _| {
            b.iter(|| black_box(hub.subscribe(None)));
        });
        let sales = Department::parse("Sales").expect("dept");
        group.bench_with_input(BenchmarkId::new("one_department_of", n), &n, |b, _| {
            b.iter(|| black_box(hub.subscribe(Some(sales.clone()))));
        });
    }
    group.finish();
}

/// Serializing a snapshot of 1,000 extensions, which a (re)subscribing WebSocket client costs
/// its own task, not the publisher.
fn snapshot_json(c: &mut Criterion) {
    let hub = Hub::new(HubConfig::default(), extensions(1_000), PbxLink::unknown());
    let snapshot = Arc::new(hub.snapshot(None));
    c.bench_function("snapshot_json/1000", |b| {
        b.iter(|| black_box(snapshot.to_json()));
    });
}

fn config() -> Criterion {
    // The machine has two cores shared with builds; shorter runs keep the whole suite to a
    // few minutes while criterion's statistics still settle.
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = idle_subscribers, active_readers, while_subscribing, subscribe, snapshot_json
}
criterion_main!(benches);
