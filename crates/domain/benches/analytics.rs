//! Criterion benchmark of `domain::time_in_state`: 1,000 extensions over 30 days, about 5
//! million history entries (status, call, pause and presence changes, a restart every midnight and a
//! PBX outage every six hours), answered in one pass. `docs/analytics.md` has the numbers.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::CpuTime;
use domain::{
    Department, ExtensionNumber, HistoryEntry, HistoryEvent, TimeInStateQuery, TimeRange,
    Timestamp, time_in_state,
};

const EXTENSIONS: u32 = 1_000;
const DAYS: i64 = 30;
const ENTRIES: i64 = 5_000_000;
const DEPARTMENTS: [&str; 4] = ["Sales", "Support", "Billing", "Front desk"];
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
const REASONS: [&str; 4] = ["lunch", "break", "training", "wrap-up"];
const CODES: [i32; 7] = [0, 0, 1, 1, 8, 16, 4];

/// A small deterministic generator, so every run benchmarks the same history.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn number(i: usize) -> ExtensionNumber {
    ExtensionNumber::parse(&(10_000 + i).to_string()).expect("number")
}

/// The history, sorted by time, and the extension → department map.
fn history(start: Timestamp) -> (Vec<HistoryEntry>, BTreeMap<ExtensionNumber, Department>) {
    let n = EXTENSIONS as usize;
    let numbers: Vec<ExtensionNumber> = (0..n).map(number).collect();
    let departments = numbers
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let d = Department::parse(DEPARTMENTS[i % DEPARTMENTS.len()]).expect("department");
            (e.clone(), d)
        })
        .collect();
    let span_ms = DAYS * 86_400_000;
    let step_ms = span_ms / ENTRIES;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut on_call = vec![false; n];
    let mut paused = vec![[false; 3]; n];
    let mut out = Vec::with_capacity(ENTRIES as usize + 1_000);
    out.push(HistoryEntry::new(start, HistoryEvent::ServerStart));
    out.push(HistoryEntry::new(start, HistoryEvent::PbxLinkUp));
    for i in 1..ENTRIES {
        let at = start + chrono::Duration::milliseconds(i * step_ms);
        let ms = i * step_ms;
        // A restart every midnight (20 s down) and a one-minute PBX outage every six hours.
        if ms % 86_400_000 < step_ms {
            out.push(HistoryEntry::new(at, HistoryEvent::ServerStop));
            let later = at + chrono::Duration::seconds(20);
            out.push(HistoryEntry::new(later, HistoryEvent::ServerStart));
            out.push(HistoryEntry::new(later, HistoryEvent::PbxLinkUp));
        } else if ms % 21_600_000 < step_ms {
            out.push(HistoryEntry::new(at, HistoryEvent::PbxLinkDown));
        } else if ms % 21_600_000 < step_ms + 60_000 && ms % 21_600_000 >= 60_000 {
            out.push(HistoryEntry::new(at, HistoryEvent::PbxLinkUp));
        }
        let x = rng.below(n);
        let extension = numbers[x].clone();
        let event = match rng.below(20) {
            0..=9 => HistoryEvent::Status {
                extension,
                previous_code: 0,
                code: CODES[rng.below(CODES.len())],
            },
            10..=15 => {
                on_call[x] = !on_call[x];
                HistoryEvent::Call {
                    extension,
                    on_call: on_call[x],
                    queue: Some(QUEUES[rng.below(QUEUES.len())].to_owned()),
                }
            }
            16..=18 => {
                let q = rng.below(QUEUES.len());
                paused[x][q] = !paused[x][q];
                HistoryEvent::Pause {
                    extension,
                    queue: QUEUES[q].to_owned(),
                    paused: paused[x][q],
                    reason: paused[x][q].then(|| REASONS[rng.below(REASONS.len())].to_owned()),
                }
            }
            _ => HistoryEvent::Presence {
                extension,
                state: "away".to_owned(),
                subtype: None,
                message: None,
            },
        };
        out.push(HistoryEntry::new(at, event));
    }
    // The restarts' later entries were pushed early; the stores hand entries sorted by time.
    out.sort_by_key(|e| e.at);
    (out, departments)
}

fn wall(c: &mut Criterion) {
    bench(c, "time_in_state");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "time_in_state_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let start: Timestamp = "2026-11-01T00:00:00Z".parse().expect("time");
    let (entries, departments) = history(start);
    let range =
        TimeRange::new(start, start + chrono::Duration::days(DAYS)).expect("a 30-day range");
    let query = TimeInStateQuery {
        range,
        now: range.to(),
        department: None,
        extensions: &departments,
        prior: &[],
    };
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.bench_function("1000_extensions_30_days", |b| {
        b.iter(|| black_box(time_in_state(&query, black_box(&entries))))
    });
    let sales = Department::parse("Sales").expect("department");
    let one = TimeInStateQuery {
        department: Some(&sales),
        ..query
    };
    group.bench_function("1000_extensions_30_days_one_department", |b| {
        b.iter(|| black_box(time_in_state(&one, black_box(&entries))))
    });
    // The floor: reading every entry's time and extension number once, which any pass over
    // the history pays, so the numbers above can be judged on a loaded machine.
    group.bench_function("read_entries_only", |b| {
        b.iter(|| {
            black_box(&entries).iter().fold(0i64, |acc, e| {
                acc ^ e.at.timestamp_millis() ^ e.extension().map_or(0, |n| n.as_str().len() as i64)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(CpuTime::thread());
    targets = cpu
}
criterion_main!(benches, cpu_benches);
