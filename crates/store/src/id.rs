//! Record ids for the embedded backend, laid out like MongoDB ObjectIds so that records can move
//! between backends with their ids unchanged.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use domain::{RecordId, Timestamp};

/// The per-process part of every id: five random bytes, drawn once, and a counter that starts at
/// a random value (as the ObjectId specification asks) so that two processes started in the same
/// second do not collide.
struct Process {
    random: [u8; 5],
    counter: AtomicU32,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| Process {
        random: rand::random(),
        counter: AtomicU32::new(rand::random::<u32>() & 0x00ff_ffff),
    })
}

/// A new id: 4 bytes of seconds since the epoch (big-endian), 5 per-process random bytes and a
/// 3-byte counter, exactly as an ObjectId.
pub(crate) fn new_id(at: Timestamp) -> RecordId {
    let p = process();
    let count = p.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    RecordId::from_bytes(layout(at, p.random, count))
}

fn layout(at: Timestamp, random: [u8; 5], count: u32) -> [u8; 12] {
    // An ObjectId holds the seconds as an unsigned 32-bit number; times outside that range
    // (before 1970 or after 2106) are clamped rather than wrapped.
    let secs = u32::try_from(at.timestamp().max(0)).unwrap_or(u32::MAX);
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&secs.to_be_bytes());
    out[4..9].copy_from_slice(&random);
    out[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_object_ids() {
        let at: Timestamp = "2024-01-12T20:00:03Z".parse().expect("time");
        let bytes = layout(at, [1, 2, 3, 4, 5], 0x00ab_cdef);
        assert_eq!(
            RecordId::from_bytes(bytes).as_str(),
            format!("{:08x}0102030405abcdef", at.timestamp())
        );
    }

    #[test]
    fn ids_are_unique_and_sortable_by_time() {
        let at = domain::now();
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| new_id(at)).collect();
        assert_eq!(ids.len(), 10_000);
        let later = new_id(at + chrono::Duration::seconds(2));
        assert!(ids.iter().all(|id| id < &later));
    }
}
