//! CPU time as a criterion measurement, for benchmarks on a machine shared with other work:
//! wall time counts the time other processes held the cores, CPU time only the time the
//! measured code ran. Shared by the `domain` and `store` benchmarks (`#[path]`).

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// CPU time in nanoseconds, read by `read` before and after each sample.
pub struct CpuTime {
    read: fn() -> u64,
}

static WALL: WallTime = WallTime;

impl CpuTime {
    /// The CPU time of the benchmarking thread (`/proc/thread-self/schedstat`): for code that
    /// runs on it.
    #[allow(
        dead_code,
        reason = "not every benchmark that includes this module uses both"
    )]
    pub fn thread() -> Self {
        Self {
            read: || schedstat("/proc/thread-self/schedstat"),
        }
    }

    /// The CPU time of the whole process (`CLOCK_PROCESS_CPUTIME_ID`): for code that runs on
    /// other threads, such as a store's blocking pool and the threads it starts. Threads that
    /// ended during the sample count too (summing `/proc/self/task/*` would miss them).
    #[allow(
        dead_code,
        reason = "not every benchmark that includes this module uses both"
    )]
    pub fn process() -> Self {
        Self {
            read: || {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
                u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
                    + u64::try_from(t.tv_nsec).unwrap_or(0)
            },
        }
    }
}

/// The first number of a `schedstat` file: nanoseconds on a CPU.
fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        (self.read)()
    }

    fn end(&self, start: u64) -> u64 {
        (self.read)().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, as wall time: the same formatting applies.
        WALL.formatter()
    }
}
