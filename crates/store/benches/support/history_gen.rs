//! The generated history of the benchmarks: per extension one entry every 518 s on average
//! (5,000 per extension in 30 days: status changes, calls, pauses in three queues with four
//! reasons, presence), a restart every midnight and a one-minute PBX outage every six hours.
//! Seeded, so every run writes the same entries. Shared by `benches/history.rs` and
//! `examples/seed_history.rs` (`#[path]`).

use domain::{ExtensionNumber, HistoryEntry, HistoryEvent, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DAY_MS: i64 = 86_400_000;
/// One entry per extension every 518 s on average: 5,000 per extension in 30 days.
const MEAN_GAP_MS: i64 = 518_400;
const QUEUES: [&str; 3] = ["sales", "support", "billing"];
const REASONS: [&str; 4] = ["lunch", "break", "training", "admin"];

/// About how many entries [`history`] writes per extension and day.
#[allow(dead_code, reason = "the benchmark sizes its history in days")]
pub const ENTRIES_PER_EXTENSION_DAY: f64 = DAY_MS as f64 / MEAN_GAP_MS as f64;

/// `count` extension numbers from `first` on.
pub fn numbers(first: u32, count: usize) -> Vec<ExtensionNumber> {
    (first..)
        .take(count)
        .map(|n| ExtensionNumber::parse(&n.to_string()).expect("a generated extension number"))
        .collect()
}

/// The history of `days` days from `start` for `extensions`, in time order.
pub fn history(start: Timestamp, days: i64, extensions: &[ExtensionNumber]) -> Vec<HistoryEntry> {
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
    for n in extensions {
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
        .map(|(t, e)| HistoryEntry::new(start + chrono::Duration::milliseconds(t), e))
        .collect()
}
