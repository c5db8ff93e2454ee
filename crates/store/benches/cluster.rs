//! The change log and the lease on MongoDB (issue #15): appending 1 and 100 entries (and 1 by
//! each of 4 instances at once), reading 100 entries and polling when nothing is new
//! (`changes_after`), and renewing the lease, against a real server.
//!
//! Needs a server: `TEST_MONGODB_URI=... cargo bench -p store --features mongodb --bench
//! cluster`; without the variable it says so and measures nothing. It works in its own
//! database and drops it at the end. The numbers are in `docs/performance.md`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use store::cluster::{Cluster, ClusterOptions};
use store::{MongoConfig, MongoStore, Repository, StoreOptions};
use tokio::runtime::Runtime;

/// The read benchmarks run on a log of at least this many entries.
const LOG_ENTRIES: u64 = 100_000;

/// About what a status change weighs as the server logs it.
fn payload(i: usize) -> String {
    format!(
        "{{\"type\":\"status\",\"extension\":\"{}\",\"status\":\"busy\",\"status_code\":2,\
         \"device_state\":\"INUSE\",\"last_status_change\":\"2026-12-03T16:00:00.000Z\",\
         \"agent_name\":\"Agent {i}\",\"department\":\"Sales\",\"queues\":[],\"presence\":null,\
         \"call\":{{\"state\":\"talking\",\"queue\":\"sales\"}}}}",
        10_000 + i % 1_000
    )
}

fn main() {
    let Some(uri) = std::env::var("TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!("cluster benchmarks skipped: TEST_MONGODB_URI is not set");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let database = format!("extstatus_bench_cluster_{}", std::process::id());
    let config = MongoConfig::new(&uri, &database);
    let store = rt
        .block_on(MongoStore::connect(&config, StoreOptions::default()))
        .expect("MongoDB answers");
    let cluster = store
        .cluster(ClusterOptions::default())
        .expect("MongoDB has a cluster");

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    benches(&mut c, &rt, &store, &cluster);
    c.final_summary();

    rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&uri).await?;
        client.database(&database).drop().await
    })
    .expect("dropping the bench database");
}

fn benches(c: &mut Criterion, rt: &Runtime, store: &MongoStore, cluster: &Arc<dyn Cluster>) {
    let mut group = c.benchmark_group("change_log");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("append_1", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(cluster.append_changes("bench", vec![payload(i)]))
                .expect("append")
        });
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("append_100", |b| {
        b.iter(|| {
            let batch: Vec<String> = (0..100).map(|k| payload(i + k)).collect();
            i += 100;
            rt.block_on(cluster.append_changes("bench", batch))
                .expect("append")
        });
    });
    // Four instances (each with its own cache of the last number) append one entry each at
    // the same time: all but one collide at least once and read the last number again.
    let instances: Vec<Arc<dyn Cluster>> = (0..4)
        .map(|_| store.cluster(ClusterOptions::default()).expect("cluster"))
        .collect();
    group.throughput(Throughput::Elements(4));
    group.bench_function("append_1_by_4_instances_at_once", |b| {
        b.iter(|| {
            i += 4;
            rt.block_on(futures_util::future::try_join_all(
                instances
                    .iter()
                    .enumerate()
                    .map(|(k, c)| c.append_changes("bench", vec![payload(i + k)])),
            ))
            .expect("append")
        });
    });
    group.throughput(Throughput::Elements(100));
    // Reads from a log of at least LOG_ENTRIES that no longer grows.
    let held = rt
        .block_on(cluster.change_bounds())
        .expect("bounds")
        .map_or(0, |(highest, lowest)| highest - lowest + 1);
    let mut missing = LOG_ENTRIES.saturating_sub(held);
    while missing > 0 {
        let n = missing.min(1_000);
        let batch: Vec<String> = (0..n).map(|k| payload(i + k as usize)).collect();
        i += n as usize;
        rt.block_on(cluster.append_changes("bench", batch))
            .expect("append");
        missing -= n;
    }
    let (highest, lowest) = rt
        .block_on(cluster.change_bounds())
        .expect("bounds")
        .expect("entries");
    eprintln!("reading a log of {} entries", highest - lowest + 1);
    let middle = lowest + (highest - lowest) / 2;
    group.bench_function("changes_after_100", |b| {
        b.iter(|| {
            let got = rt
                .block_on(cluster.changes_after(middle, 100))
                .expect("read");
            assert_eq!(got.len(), 100);
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("changes_after_nothing_new", |b| {
        b.iter(|| {
            let got = rt
                .block_on(cluster.changes_after(highest, 100))
                .expect("read");
            assert!(got.is_empty());
        });
    });
    group.bench_function("change_bounds", |b| {
        b.iter(|| rt.block_on(cluster.change_bounds()).expect("bounds"));
    });
    group.finish();

    let mut group = c.benchmark_group("lease");
    let state = rt
        .block_on(cluster.take_lease("bench", None))
        .expect("take")
        .expect("nobody else");
    group.bench_function("renew", |b| {
        b.iter(|| {
            rt.block_on(cluster.renew_lease("bench", state.term))
                .expect("renew")
                .expect("still ours")
        });
    });
    group.finish();
}
